"""Composition of outbound mail: member-facing texts and safe RFC 5322 messages."""

from __future__ import annotations

import base64
import functools
import re
import unicodedata
from collections.abc import Iterable
from datetime import UTC, datetime
from email.headerregistry import Address, BaseHeader, HeaderRegistry
from email.message import EmailMessage
from email.policy import EmailPolicy
from email.utils import format_datetime, getaddresses, parseaddr, quote
from pathlib import Path

from jinja2 import ChoiceLoader, Environment, FileSystemLoader, PackageLoader, StrictUndefined

from exobot.core.addresses import normalize_address
from exobot.core.languages import LANGUAGES
from exobot.core.text import without_invisible

TEMPLATE_NAMES = ("ack", "reply", "resolved", "too_big", "advice")
MAX_REFERENCES = 20

_ATEXT = r"-A-Za-z0-9!#$%&'*+/=?^_`{|}~"  # RFC 5322 atom characters ("-" first: literal)
# Our own Message-ID must be a proper <dot-atom@dot-atom>.
_OWN_MSGID_RE = re.compile(rf"<[{_ATEXT}.]+@[{_ATEXT}.]+>")
# Foreign ids (In-Reply-To, References) come from arbitrary clients, some of which omit the '@'
# or use odd characters; any printable ASCII between angle brackets is fine for threading.
_FOREIGN_MSGID_RE = re.compile(r"<[!-;=?-~]+>")
_TOKEN_RE = re.compile(r"[!-~]+")
_LANGUAGE_TAG_RE = re.compile(r"[A-Za-z]{2,8}(?:-[A-Za-z0-9]{1,8})*")
_MAX_MSGID_LEN = 250
# A display name made only of atoms needs no quoting.
_ATOMS_RE = re.compile(rf"[{_ATEXT}]+(?: [{_ATEXT}]+)*")


class TemplateRenderer:
    """Renders member-facing mail texts from packaged templates, overridable by the administrator.

    Templates live in ``<lang>/<name>.txt.j2``; a file with the same relative path under
    ``override_dir`` takes precedence over the packaged one.
    """

    def __init__(self, language: str = "ca", override_dir: Path | None = None):
        self.language = _check_language(language)
        loaders = [PackageLoader("exobot.mail", "templates")]
        if override_dir is not None:
            loaders.insert(0, FileSystemLoader(str(override_dir)))
        self._env = Environment(
            loader=ChoiceLoader(loaders),
            # The output is text/plain: HTML escaping would only corrupt "<", "&" and quotes.
            autoescape=False,
            # A typo in an administrator's override must fail loudly, not send a blank.
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )

    def render(self, name: str, language: str | None = None, **variables) -> str:
        """Render template ``name`` in ``language`` (default: the renderer's language).

        Raises ValueError for an unknown name or language and ``jinja2.UndefinedError`` when the
        template uses a variable that was not passed.
        """
        if name not in TEMPLATE_NAMES:
            raise ValueError(f"unknown template {name!r}; expected one of {TEMPLATE_NAMES}")
        lang = self.language if language is None else _check_language(language)
        text = self._env.get_template(f"{lang}/{name}.txt.j2").render(**variables)
        # Overrides written by hand end in any number of blank lines; normalise to exactly one.
        return text.rstrip() + "\n"


def header_safe(text: str, limit: int = 200) -> str:
    """Collapse CR, LF, tabs and other control chars to single spaces, strip, truncate to `limit`
    chars (with '…').

    Unicode line/paragraph separators count as control characters too: some mail software
    treats them as line breaks.
    """
    if limit < 1:
        raise ValueError("limit must be positive")
    cleaned = _collapse(text)
    if len(cleaned) > limit:
        cleaned = cleaned[: limit - 1].rstrip() + "…"
    return cleaned


def build_message(
    *,
    from_address: str,
    from_name: str,
    to: list[str],
    cc: list[str] = (),
    subject_tag: str | None,
    title: str,
    body: str,
    message_id: str,
    in_reply_to: str | None = None,
    references: list[str] = (),
    auto_submitted: bool = False,
    loop_marker: str,
    date: datetime | None = None,
    language: str = "ca",
) -> EmailMessage:
    """Build a text/plain UTF-8 message ready for SMTP (CRLF line endings).

    The subject is ``[<subject_tag>] <title>`` unless the title already carries the tag (just
    the title without a tag: a notice about no ticket).
    References is ``references`` (oldest first) up to ``in_reply_to``, then ``in_reply_to``,
    deduplicated and capped to ``MAX_REFERENCES`` ids: the first, then the last ones. Every
    user-provided value is either sanitised with :func:`header_safe` (names, title) or
    validated (addresses, ids, tokens); invalid values raise ValueError, so no header can
    ever gain a CR or LF.
    """
    if not to:
        raise ValueError("at least one recipient is required")
    tag = None if subject_tag is None else _check_token(subject_tag, "subject tag")
    if tag is not None and ("[" in tag or "]" in tag):
        raise ValueError(f"invalid subject tag {subject_tag!r}")
    if date is None:
        date = datetime.now(UTC)
    elif date.tzinfo is None:
        # A naive datetime would be serialised as "-0000" (unknown zone): almost always a bug.
        raise ValueError("date must be timezone-aware")
    if not _LANGUAGE_TAG_RE.fullmatch(language):
        raise ValueError(f"invalid language tag {language!r}")

    msg = EmailMessage(policy=SMTP_POLICY)
    msg["From"] = _from_header(from_name, from_address)
    msg["To"] = [_parse_address(a) for a in to]
    if cc:
        msg["Cc"] = [_parse_address(a) for a in cc]
    subject = header_safe(title) if tag is None else _subject(tag, header_safe(title))
    if "=?" in subject:
        # Given as encoded-words: the registry decodes any it finds in a str, which would
        # decode a second time a "=?utf-8?…?=" the member wrote (and we decoded once).
        subject = " ".join(_text_tokens(subject))
    msg["Subject"] = subject
    msg["Date"] = format_datetime(date)
    msg["Message-ID"] = _check_msgid(message_id, _OWN_MSGID_RE)
    if in_reply_to is not None:
        msg["In-Reply-To"] = _check_msgid(in_reply_to, _FOREIGN_MSGID_RE)
    chain = _reference_chain(references, in_reply_to)
    if chain:
        msg["References"] = " ".join(chain)
    if auto_submitted:
        msg["Auto-Submitted"] = _fixed_header("Auto-Submitted", "auto-replied")
    msg["X-Exobot-Loop"] = _fixed_header("X-Exobot-Loop", _check_token(loop_marker, "loop marker"))
    # Quoted-printable keeps every line 7-bit and short, so it survives relays without
    # 8BITMIME and members' long unwrapped paragraphs; set_content also adds MIME-Version.
    msg.set_content(body, subtype="plain", charset="utf-8", cte="quoted-printable")
    # Only now: set_content() deletes every existing Content-* header, this one included.
    msg["Content-Language"] = _fixed_header("Content-Language", language)
    return msg


# The headers every message of an instance shares are parsed once (parsing a header is most of
# the cost of building a message); header objects are immutable, so messages can share them.


@functools.lru_cache(maxsize=64)
def _from_header(from_name: str, from_address: str) -> BaseHeader:
    # Address objects rather than formataddr() strings: the string would be re-parsed, and a
    # name such as "Núria <x@y>" came out as a bare second address in the serialised header.
    address = Address(header_safe(from_name), addr_spec=_check_addr_spec(from_address))
    return SMTP_POLICY.header_factory("From", address)


@functools.lru_cache(maxsize=64)
def _fixed_header(name: str, value: str) -> BaseHeader:
    """The header object for a value checked already (no line break can be in it)."""
    return SMTP_POLICY.header_factory(name, value)


def _check_language(language: str) -> str:
    if language not in LANGUAGES:
        raise ValueError(f"unsupported language {language!r}; expected one of {LANGUAGES}")
    return language


def _is_control(ch: str) -> bool:
    return unicodedata.category(ch) in ("Cc", "Zl", "Zp")


def _collapse(text: str) -> str:
    """text on one line: controls and line breaks as spaces, spaces collapsed, and no
    invisible character (a bidi override turns "gnp.exe" into "exe.png" in a subject)."""
    spaced = "".join(" " if _is_control(ch) else ch for ch in text)
    return " ".join(without_invisible(spaced).split())


def _reject_encoded_words(value: str, what: str) -> str:
    # The header registry decodes RFC 2047 words in any str value it is given, so
    # "=?utf-8?q?=0D=0ABcc:...?=" would turn into a real CR LF inside the header.
    if "=?" in value:
        raise ValueError(f"invalid {what} {value!r}")
    return value


def _check_addr_spec(address: str) -> str:
    """The canonical form of an address we write to, by the one address rule that the parser,
    chat, web, API and service use too (so nothing they accepted is refused here); raises
    ValueError (BadAddress) with the reason."""
    return normalize_address(address)


def _parse_address(raw: str) -> Address:
    """Accept "user@host" or "Name <user@host>"; anything else raises ValueError."""
    if not isinstance(raw, str) or any(_is_control(ch) for ch in raw):
        raise ValueError(f"invalid e-mail address {raw!r}")
    # parseaddr silently keeps only the first of "a@x, b@y"; a list hidden in one entry is an
    # error, not something to half-send.
    if len(getaddresses([raw])) != 1:
        raise ValueError(f"expected a single e-mail address, got {raw!r}")
    name, addr_spec = parseaddr(raw)
    # parseaddr also "repairs" input, e.g. "a@exa mple.org" -> "a@example.org"; refuse instead.
    if addr_spec not in raw:
        raise ValueError(f"invalid e-mail address {raw!r}")
    return Address(display_name=header_safe(name), addr_spec=_check_addr_spec(addr_spec))


def is_threadable_id(value: str) -> bool:
    """Whether a (foreign) Message-ID may go into In-Reply-To/References unchanged."""
    try:
        _check_msgid(value, _FOREIGN_MSGID_RE)
    except ValueError:
        return False
    return True


def _check_msgid(value: str, pattern: re.Pattern[str]) -> str:
    if not isinstance(value, str) or len(value) > _MAX_MSGID_LEN or not pattern.fullmatch(value):
        raise ValueError(f"invalid Message-ID {value!r}")
    return _reject_encoded_words(value, "Message-ID")


def _check_token(value: str, what: str) -> str:
    if not isinstance(value, str) or len(value) > 200 or not _TOKEN_RE.fullmatch(value):
        raise ValueError(f"invalid {what} {value!r}")
    return _reject_encoded_words(value, what)


def _subject(tag: str, title: str) -> str:
    marker = f"[{tag}]"
    # Replies from members come back as "Re: [suport#12] ..."; tagging again would pile up.
    if marker.casefold() in title.casefold():
        return title
    return f"{marker} {title}".rstrip()


def _reference_chain(references: Iterable[str], in_reply_to: str | None) -> list[str]:
    """References (oldest first) up to the parent, then the parent, without duplicates;
    capped to the root and the most recent ids."""
    chain: list[str] = []
    ancestors = True
    for ref in references:
        ref = _check_msgid(ref, _FOREIGN_MSGID_RE)
        # Ids listed after the parent (a later mail of the ticket, in a payload queued by an
        # older version) are no ancestors of it: clients read the order as ancestry, and
        # would show the parent as a reply to them.
        ancestors = ancestors and ref != in_reply_to
        if ancestors and ref not in chain:
            chain.append(ref)
    # The parent goes last: clients rely on the last entry being the direct parent.
    if in_reply_to is not None:
        chain.append(in_reply_to)
    if len(chain) > MAX_REFERENCES:
        # Trim the middle, as RFC 5537 §3.4.4 does: the root, then the nearest ancestors.
        chain = [chain[0], *chain[-(MAX_REFERENCES - 1) :]]
    return chain


# --- Serialisation ---------------------------------------------------------------------------


class _SMTPPolicy(EmailPolicy):
    """``email.policy.SMTP`` that folds the headers we fill with user text by itself.

    CPython's folder (3.11.7 here) has bugs that hit us:
    - it drops the space between adjacent RFC 2047 encoded-words (cpython gh-144156), so
      non-ASCII subjects and names decode with words glued together;
    - it treats In-Reply-To/References as free text and encodes any msg-id longer than a
      line (Outlook's often are), which breaks threading in every client;
    - before 3.11.10 it writes a CR/LF found in a header value as is (CVE-2024-6923).
    Here encoded-words carry their own spaces, msg-ids are never encoded, folding only happens
    between tokens, and every folded header, ours or stock, is checked to be a single header.
    """

    def fold(self, name, value):
        tokens = _header_tokens(name, value)
        folded = super().fold(name, value) if tokens is None else self._fill(name, tokens)
        return _single_header(folded)

    def fold_binary(self, name, value):
        tokens = _header_tokens(name, value)
        if tokens is None:
            return _single_header(super().fold_binary(name, value))
        return _single_header(self._fill(name, tokens)).encode("ascii")

    def _fill(self, name, tokens):
        lines = [f"{name}:"]
        for token in tokens:
            if len(lines[-1]) + 1 + len(token) > self.max_line_length and lines[-1] != f"{name}:":
                lines.append("")
            lines[-1] += " " + token
        return self.linesep.join(lines) + self.linesep


# 42 bytes -> 56 base64 chars -> a 68-char encoded-word, which fits after "Subject: ".
_EW_MAX_BYTES = 42


def _header_tokens(name, value):
    """Foldable ASCII tokens for the headers we fold ourselves, or None for the others."""
    # Only header objects built by build_message; raw source strings of a parsed message (if
    # anyone parses with this policy) are left to the stock code.
    if not hasattr(value, "name"):
        return None
    header = name.lower()
    if header in ("in-reply-to", "references"):
        return str(value).split()
    if header == "subject":
        # The registry has already decoded any encoded-word the title contained.
        return _text_tokens(_collapse(str(value)))
    if header in ("from", "to", "cc") and value.addresses:
        tokens = []
        for address in value.addresses:
            if address.display_name:
                tokens += _phrase_tokens(address.display_name) + [f"<{address.addr_spec}>"]
            else:
                tokens.append(address.addr_spec)
            tokens[-1] += ","
        tokens[-1] = tokens[-1].rstrip(",")
        return tokens
    return None


def _text_tokens(text):
    """Leading plain ASCII words as they are (so "[suport#12]" stays greppable), the rest as
    encoded-words. Spaces between plain words and between a plain word and an encoded-word are
    significant; those between two encoded-words are not, so they carry their own."""
    words = text.split(" ")
    plain = 0
    while plain < len(words) and _is_plain(words[plain]):
        plain += 1
    rest = " ".join(words[plain:])
    return [w for w in words[:plain] if w] + _encoded_words(rest)


def _phrase_tokens(name):
    if not _is_plain(name):
        return _encoded_words(name)
    if _ATOMS_RE.fullmatch(name):
        return name.split(" ")
    return [f'"{quote(name)}"']


def _is_plain(word):
    # A literal "=?" could be decoded as an encoded-word by the recipient, so it gets encoded.
    return all(" " <= ch <= "~" for ch in word) and "=?" not in word


def _encoded_words(text):
    """Split text into base64 UTF-8 encoded-words, never cutting a character in two."""
    chunks = [b""] if text else []
    for char in text:
        encoded = char.encode()
        if len(chunks[-1]) + len(encoded) > _EW_MAX_BYTES:
            chunks.append(b"")
        chunks[-1] += encoded
    return [f"=?utf-8?b?{base64.b64encode(chunk).decode('ascii')}?=" for chunk in chunks]


def _single_header(folded):
    """Raise unless every line after the first is a continuation (starts with a blank)."""
    text = folded.decode("ascii", "surrogateescape") if isinstance(folded, bytes) else folded
    lines = re.split(r"\r\n|\r|\n", text.rstrip("\r\n"))
    if any(line[:1] not in (" ", "\t") for line in lines[1:]):
        raise ValueError(f"refusing to serialise a header with an embedded line break: {text!r}")
    return folded


class _CachedHeaderRegistry(HeaderRegistry):
    """The stdlib registry, except that each header name's class is made once: the stock
    `__getitem__` builds a new class with `type()` on every call (every header set and every
    header folded), which was most of the cost of building an acknowledgement."""

    def __init__(self) -> None:
        super().__init__()
        self._classes: dict[str, type] = {}

    def __getitem__(self, name: str) -> type:
        key = name.lower()
        cls = self._classes.get(key)
        if cls is None:
            cls = self._classes[key] = super().__getitem__(name)
        return cls

    def map_to_type(self, name: str, cls: type) -> None:
        """Register a class for a header name (and forget the one made for it before)."""
        super().map_to_type(name, cls)
        self._classes.pop(name.lower(), None)


SMTP_POLICY = _SMTPPolicy(linesep="\r\n", header_factory=_CachedHeaderRegistry())
