"""Which stored data is about a person, one rule for `exobot privacy export` (what it hands
over) and `exobot privacy erase` (what it erases whole, what it only edits), so the two never
disagree: what the erasure changes is in the export, and nothing else of other people is."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from enum import IntEnum
from typing import Any

import sqlalchemy as sa

from exobot.core.addresses import MAX_ADDRESS_LENGTH
from exobot.core.model import EntryKind

# Mail a person sent (their text), by kind.
THEIR_MAIL = {
    EntryKind.MAIL_IN.value,
    EntryKind.AUTOMATIC_IN.value,
    EntryKind.UNVERIFIED_IN.value,
    EntryKind.BOUNCE.value,
}
# Characters that may stand next to an address inside a longer one (an address's own
# characters); in raw bytes any non-ASCII byte counts too (a UTF-8 letter).
_BEFORE = r"\w.%+"  # and "-", last in each class
_AFTER = r"\w"

# The addresses a post showed (chat_posts.addresses) are found the way `address_pattern`
# finds a given address in a text: no address character (\w . % + -) just before it, and
# after it no \w or - nor a dot followed by one. Each "@" gives one domain (the longest run:
# the pattern's boundary after it) and one candidate per place a local part may start (after
# a character of none of those, such as the "=" of "?to=ann@…" or the "'" of "o'brien@…",
# which the pattern accepts as boundaries).
_ADDRESS_CHAR = re.compile(rf"[{_BEFORE}-]")  # none may stand just before one
_LOCAL_CHAR = re.compile(r"[\w.%+\-!#$&'*/=?^`{|}~]")  # a local part's characters, in any case
_DOMAIN_RUN = re.compile(r"[\w-]+(?:\.[\w-]+)*")
MAX_LOCAL = 64  # RFC 5321's limit on a local part: the scan back from an "@" stops there
# A post records at most this many: only a contrived text shows more (its row's text is
# still searched while the retention policy keeps it), and the record stays small.
MAX_SHOWN = 1000
# Characters a case-blind match (re.IGNORECASE) takes for an ASCII letter whose lower case
# is not that letter.
_FOLD = str.maketrans({"\u0130": "i", "\u0131": "i", "\u017f": "s", "\u212a": "k"})


class Concern(IntEnum):
    """How an entry concerns the person, weakest first."""

    NONE = 0
    MENTIONED = 1  # named in someone else's text or data: exported masked; erasure edits it
    PARTY = 2  # they wrote it, or our mail went to them too: with its original and attachments
    OWN = 3  # their mail, our mail to them alone, a failure of one: the erasure empties it


def address_pattern(addresses: set[str]) -> re.Pattern[str]:
    """The addresses anywhere in a text, in any case, but not inside a longer address."""
    alternatives = "|".join(re.escape(a) for a in sorted(addresses, key=len, reverse=True))
    return re.compile(rf"(?<![{_BEFORE}-])(?:{alternatives})(?!\.?[{_AFTER}-])", re.IGNORECASE)


def address_digest(address: str) -> str:
    """How chat_posts.addresses holds an address: the SHA-256 (hex) of its lower-cased form,
    not the address itself (the record outlives the texts the retention policy drops)."""
    folded = address.translate(_FOLD).lower()
    return hashlib.sha256(folded.encode("utf-8", "surrogatepass")).hexdigest()


def shown_addresses(content: Any) -> list[str]:
    """The digests (`address_digest`) of the addresses in a post's texts (every string of its
    content: body, HTML, an edit's new content, a caption), each once, sorted; at most
    MAX_SHOWN."""
    found: set[str] = set()
    for text in _texts(content):
        for address in _addresses_in(text):
            found.add(address_digest(address))
            if len(found) >= MAX_SHOWN:
                return sorted(found)
    return sorted(found)


def _texts(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _texts(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _texts(item)


def _addresses_in(text: str) -> Iterator[str]:
    """Each address the erasure's pattern would find in `text`, as written there. Linear in
    the text: a domain ends at the next "@", and a local part is looked for no further back
    than MAX_LOCAL characters."""
    at = text.find("@")
    while at != -1:
        domain = _DOMAIN_RUN.match(text, at + 1)
        if domain is not None and "." in domain.group():  # a real domain has a dot
            start = at
            while start > 0 and at - start < MAX_LOCAL and _LOCAL_CHAR.match(text, start - 1):
                start -= 1
            for first in range(start, at):
                if text[first] != "." and (first == 0 or not _ADDRESS_CHAR.match(text, first - 1)):
                    address = text[first : domain.end()]
                    if len(address) <= MAX_ADDRESS_LENGTH:
                        yield address
        at = text.find("@", at + 1)


def id_pattern(addresses: set[str]) -> re.Pattern[str]:
    """The addresses inside a Message-ID or a key, where a dot before one is a separator
    (`<1733.ann@example.org>`, minted by some clients from the sender's address), not part
    of a longer address: `<1733.joann@…>` is still someone else's."""
    alternatives = "|".join(re.escape(a) for a in sorted(addresses, key=len, reverse=True))
    return re.compile(rf"(?<![\w%+-])(?:{alternatives})(?!\.?[{_AFTER}-])", re.IGNORECASE)


def raw_address_pattern(addresses: set[str]) -> re.Pattern[bytes]:
    """`address_pattern` for a raw mail's bytes (ASCII case folding, as in headers)."""
    alternatives = b"|".join(
        re.escape(a.encode("utf-8")) for a in sorted(addresses, key=len, reverse=True)
    )
    before, after = _BEFORE.encode() + rb"\x80-\xff", _AFTER.encode() + rb"\x80-\xff"
    return re.compile(
        rb"(?<![" + before + rb"-])(?:" + alternatives + rb")(?!\.?[" + after + rb"-])",
        re.IGNORECASE,
    )


def like_any(column: Any, addresses: set[str]) -> Any:
    """Rows whose `column` may hold one of the addresses (a case-blind LIKE with `%`, `_`
    and `\\` taken literally): candidates only, to check with `address_pattern`."""
    likes = [f"%{_like_literal(a)}%" for a in sorted(addresses)]
    return sa.or_(*(column.ilike(like, escape="\\") for like in likes))


def _like_literal(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def concern(
    kind: str,
    actor: str | None,
    data: dict,
    body: str | None,
    addresses: set[str],
    pattern: re.Pattern[str],
) -> Concern:
    """How an entry concerns the person at `addresses` (lower case); see `Concern`."""

    def theirs(address: object) -> bool:
        return str(address or "").strip().lower() in addresses

    def only_theirs(values: object) -> bool:
        values = list(values or [])  # type: ignore[call-overload]
        return bool(values) and all(theirs(v) for v in values)

    if kind in THEIR_MAIL and theirs(actor):
        return Concern.OWN
    if kind == EntryKind.MAIL_OUT.value:
        if only_theirs(data.get("to")):
            return Concern.OWN
        if any(theirs(a) for a in [*(data.get("to") or []), *(data.get("cc") or [])]):
            return Concern.PARTY
    if kind == EntryKind.BOUNCE.value and only_theirs(data.get("recipients")):
        return Concern.OWN
    if kind == EntryKind.DELIVERY_FAILED.value and theirs(data.get("recipient")):
        return Concern.OWN
    if theirs(actor) or (
        kind == EntryKind.BOUNCE.value and any(theirs(a) for a in data.get("recipients") or [])
    ):
        return Concern.PARTY
    return Concern.MENTIONED if names([actor, body, data], pattern) else Concern.NONE


def names(value: Any, pattern: re.Pattern[str]) -> bool:
    """Whether a text, or any text inside JSON data, holds one of the addresses."""
    if isinstance(value, str):
        return pattern.search(value) is not None
    if isinstance(value, dict):
        return any(names(v, pattern) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(names(v, pattern) for v in value)
    return False
