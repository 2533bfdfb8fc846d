"""Reading what operators type: the `!procedure` line (TYPE, MEMBER, SERVICE, note), a
procedure reference (`P-12`; a bare number is a ticket, so it is refused), the filter of
`!procedures`, and the refusal of notes that hold an IBAN, a card or an identity number.

Pure functions over the configuration; the errors carry a code and parameters, worded by the
plugin in the operator's language.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from exobot_procedures.config import ProceduresConfig, ProcedureType, fold

MAX_SERVICE = 200
_TOKEN = re.compile(r"\S+")
_REF = re.compile(r"[Pp]-?([0-9]{1,10})")
_TRAILING = ".,;:"
#: Words of `!procedures` that ask for the pending ones (the default), or every state.
PENDING_WORDS = frozenset({"pending", "pendent", "pendents", "pendiente", "pendientes"})
ALL_WORDS = frozenset({"all", "tots", "totes", "todos", "todas"})


class ParseError(ValueError):
    """What an operator typed cannot be read: `code` names the problem, `params` fill the
    message the plugin shows."""

    def __init__(self, code: str, **params: object) -> None:
        super().__init__(code, params)
        self.code = code
        self.params = params


@dataclass(frozen=True)
class ParsedProcedure:
    """A `!procedure` line read: the type's name, the member (None: the requestor's address,
    for a join), the service reference and the note (line breaks kept)."""

    type: str
    member: str | None
    service: str | None
    note: str


def find_type(config: ProceduresConfig, word: str) -> str | None:
    """The type a word names (its name or any of its words, case and accents ignored)."""
    wanted = fold(word)
    for name, kind in config.types.items():
        if wanted == fold(name) or any(wanted == fold(w) for w in kind.all_words()):
            return name
    return None


def type_words(config: ProceduresConfig, language: str) -> list[str]:
    """The words a language uses for the types (its first word per type; English, else the
    type's name, where it has none), in configuration order."""
    shown = []
    for name, kind in config.types.items():
        words = kind.words.get(language) or kind.words.get("en") or [name]
        shown.append(words[0])
    return shown


def is_member_number(config: ProceduresConfig, text: str) -> bool:
    """Whether `text` is written like a member number."""
    return config.member_regex().fullmatch(text) is not None


def _next(text: str) -> tuple[str | None, str]:
    """The first word of `text` and what follows it (line breaks kept)."""
    match = _TOKEN.search(text)
    if match is None:
        return None, ""
    return match.group(), text[match.end() :]


def parse_procedure(config: ProceduresConfig, text: str) -> ParsedProcedure:
    """Read `TYPE MEMBER [SERVICE] [note…]`; for a join MEMBER may be left out (the note then
    starts at once). ParseError: missing_type, unknown_type, missing_member, bad_member,
    missing_service, service_too_long."""
    word, rest = _next(text)
    if word is None:
        raise ParseError("missing_type")
    name = find_type(config, word)
    if name is None:
        raise ParseError("unknown_type", word=word[:40])
    kind: ProcedureType = config.types[name]
    member: str | None = None
    candidate, after = _next(rest)
    if candidate is not None and is_member_number(config, candidate):
        member, rest = candidate, after
    elif kind.directory != "join":
        if candidate is None:
            raise ParseError("missing_member", type=word)
        raise ParseError("bad_member", word=candidate[:40], type=word)
    service: str | None = None
    if kind.service:
        service, rest = _next(rest)
        if service is None:
            raise ParseError("missing_service", type=word)
        if len(service) > MAX_SERVICE:
            raise ParseError("service_too_long", limit=MAX_SERVICE)
    return ParsedProcedure(name, member, service, rest.strip())


def parse_ref(text: str) -> int:
    """`P-12` (or `p-12`, `P12`) → 12. ParseError: `bare_number` for a number alone (that is a
    ticket's reference), `bad_ref` for anything else."""
    word = text.strip().rstrip(_TRAILING)
    match = _REF.fullmatch(word)
    if match is not None and int(match.group(1)) > 0:
        return int(match.group(1))
    if word.lstrip("#").isdigit():
        raise ParseError("bare_number", number=word.lstrip("#")[:12])
    raise ParseError("bad_ref", word=word[:40])


def split_ref(text: str) -> tuple[int, str]:
    """The procedure reference opening `text` and the rest (the note, line breaks kept).
    ParseError: missing_ref, bare_number, bad_ref."""
    word, rest = _next(text)
    if word is None:
        raise ParseError("missing_ref")
    return parse_ref(word), rest.strip()


@dataclass(frozen=True)
class ListFilter:
    """What `!procedures` asks for: pending ones (the default), a member's, a type's, a
    ticket's, or all of them."""

    state: str | None = "pending"
    member: str | None = None
    type: str | None = None
    ticket: int | None = None


def parse_filter(config: ProceduresConfig, text: str, prefix: str) -> ListFilter:
    """Read `[pending|MEMBER|TYPE|suport#N|all]`. ParseError `bad_filter` otherwise."""
    from exobot.core.references import parse_reference

    word = " ".join(text.split())
    if not word or fold(word) in PENDING_WORDS:
        return ListFilter()
    if fold(word) in ALL_WORDS:
        return ListFilter(state=None)
    if is_member_number(config, word):
        return ListFilter(state=None, member=word)
    name = find_type(config, word)
    if name is not None:
        return ListFilter(state=None, type=name)
    # A ticket only when written as one: a bare number is a member number above.
    if not word.isdigit():
        number = parse_reference(word, prefix)
        if number is not None:
            return ListFilter(state=None, ticket=number)
    raise ParseError("bad_filter", word=word[:40])


def sensitive_in(text: str) -> list[str]:
    """The kinds of sensitive numbers (IBAN, card, identity) found in `text`, in order."""
    from exobot.core.sensitive import SensitiveKind, find_sensitive

    wanted = {SensitiveKind.IBAN, SensitiveKind.CARD, SensitiveKind.IDENTITY}
    found = find_sensitive(text or "", wanted)
    return list(dict.fromkeys(str(finding.kind) for finding in found))
