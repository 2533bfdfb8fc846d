"""Turn the raw bytes of an inbound mail into a :class:`ParsedMail`.

Everything here is a pure function: no network, no database, no clock. Inbound mail is
hostile or simply broken more often than one would hope (lying charsets, raw 8-bit
headers, missing boundaries, absurd nesting), so the rule throughout is *degrade, never
raise*: the only exception that leaves :func:`parse_mail` is :class:`MailParseError`, for
bytes that carry no header at all.

The structural parse uses the stdlib ``email`` package with the ``compat32`` policy. Its
header access hands back the raw header text (8-bit bytes kept as surrogate escapes), which
lets us decode headers ourselves: ``policy.default`` would replace 8-bit bytes with U+FFFD
and its structured header classes can raise on malformed input.
"""

from __future__ import annotations

import binascii
import codecs
import html
import mimetypes
import re
from collections.abc import Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from email._policybase import Compat32
from email.message import Message
from email.parser import BytesParser
from email.utils import collapse_rfc2231_value, getaddresses, parsedate_to_datetime
from types import MappingProxyType

import charset_normalizer
import html2text

from exobot.core.addresses import BadAddress, normalize_address
from exobot.core.html_tokens import html_tokens
from exobot.core.sensitive import find_sensitive, mask_findings
from exobot.core.text import safe_filename, unescape_html
from exobot.mail.bounds import bound_structure
from exobot.mail.language import detect_language
from exobot.mail.language import warm_up as warm_up_language

# Deeper MIME trees than this are not walked further; real mail stays far below it.
MAX_DEPTH = 256
# Bound on the number of MIME parts visited, so a "part bomb" cannot stall the worker.
MAX_PARTS = 10_000
# How many levels of attached messages we look into when the outer mail has no text.
MAX_FORWARD_HOPS = 3
# Longest body kept (characters); the raw mail is stored whole, so nothing is lost.
MAX_BODY_CHARS = 100_000
# Inline text parts joined into one body at most.
MAX_TEXT_PARTS = 100


class _RawHeaderPolicy(Compat32):
    """compat32, except that header values keep their 8-bit bytes (as surrogate escapes)
    instead of becoming U+FFFD: this module decodes them itself (a raw UTF-8 file name must
    come out right), and a boundary with a non-ASCII character must match its delimiter
    lines, which keep their bytes too."""

    def header_fetch_parse(self, name: str, value: str) -> str:
        """The stored value as it is."""
        return value


_PARSER = BytesParser(policy=_RawHeaderPolicy())
_LINEBREAKS = re.compile(r"\r?\n|\r")
_WHITESPACE = re.compile(r"\s+")
# C0 controls, DEL and the Unicode line/paragraph separators all become plain spaces.
_CONTROLS = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]")
# Lenient: the payload may hold spaces (some mailers do not encode them) and folds (a long
# word folded in its middle); it never holds "?", so the match cannot run past its end.
_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([qQbB])\?([^?]*+)\?=")
_FOLD = re.compile(r"\r?\n[ \t]*")
# Something that looks like an address, for a From header that getaddresses cannot split
# ("Name addr@example.org" without angle brackets).
_LOOSE_ADDRESS = re.compile(r"[^\s<>()\[\],;:\"']+@[^\s<>()\[\],;:\"']+")
# The first <...> span of a header value (bounded: no nested brackets, no backtracking).
_BRACKETED = re.compile(r"<([^<>]*)>")
# A header line: a field name (printable ASCII but ":") and a colon.
_HEADER_LINE = re.compile(rb"[!-9;-~]{1,100}:")
# Non-header lines tolerated before the first header ("---- Original message ----").
MAX_BANNER_LINES = 5
# Header block lines looked at when repairing continuation lines without indentation.
MAX_HEADER_LINES = 1000
# Charsets tried for raw 8-bit header bytes that are not UTF-8 (and not the body's).
_HEADER_CANDIDATES = (
    "gb18030", "big5", "cp932", "euc_jp", "cp949", "cp1251", "koi8_r", "cp1252",
    "iso8859_2", "iso8859_7",
)  # fmt: skip
# Bytes of raw header values looked at to guess their charset.
MAX_HEADER_SAMPLE = 4096
# The charset guessed for this mail's raw 8-bit headers (see _guess_header_codec). A
# context variable keeps parse_mail a pure function while the small helpers read it.
_HEADER_CODEC: ContextVar[str | None] = ContextVar("exobot_header_codec", default=None)
_PLACEHOLDER = re.compile("\ue000(\\d*)\ue001")
_BRACKETED_ID = re.compile(r"<([^<>]*)>")
# Words of a plain alternative that only points at the HTML one.
_STUB_HINT = re.compile(r"html|browser|navegador", re.I)
_DSN_STATUS = re.compile(r"\b[245]\.\d{1,3}\.\d{1,3}\b")
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?([A-Za-z0-9._:-]+)""", re.I)
_BLANK_RUNS = re.compile(r"\n{3,}")
_TAGS = re.compile(r"<[^>]*>")

# Codecs that decode any byte sequence (or nearly so): when a part claims one of these
# but its bytes are valid UTF-8 with non-ASCII in them, the claim is almost surely wrong.
_PERMISSIVE_CODECS = frozenset({"ascii", "iso8859-1", "cp1252", "iso8859-15"})
# Charsets that mailers declare while actually sending a superset (as WHATWG does too).
_SUPERSETS = {"gb2312": "gb18030", "gbk": "gb18030", "euc_kr": "cp949", "shift_jis": "cp932"}
_ENCAPSULATED = frozenset({"message/rfc822", "message/global", "message/news"})
_DSN_TYPES = frozenset({"message/delivery-status", "message/global-delivery-status"})
_DSN_REPORT_TYPES = frozenset({"delivery-status", "global-delivery-status"})


class MailParseError(Exception):
    """Raised only when the bytes are not a mail at all (no headers)."""


@dataclass(frozen=True)
class Attachment:
    """One attached file (or attached message) with its decoded bytes."""

    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True)
class BounceInfo:
    """What a delivery status notification (RFC 3464) tells about the mail that bounced.

    A mail system's bounce in no report format (qmail's "failure notice", plain text from
    MAILER-DAEMON) only quotes the bounced mail: `quoted_ids` holds the ids of our signed form
    found in it, for the rules to verify (the parser has no key)."""

    original_message_id: str | None
    recipients: tuple[str, ...]
    status: str | None
    action: str | None
    diagnostic: str | None
    quoted_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class ParsedMail:
    """A parsed inbound mail: decoded single-line headers, best text body, attachments."""

    message_id: str | None
    in_reply_to: tuple[str, ...]
    references: tuple[str, ...]
    subject: str
    from_addr: str
    from_name: str
    reply_to: str | None
    to: tuple[str, ...]
    cc: tuple[str, ...]
    return_path: str | None
    date: datetime | None
    # A mapping proxy is not hashable, so keep it out of the generated __hash__.
    headers: Mapping[str, tuple[str, ...]] = field(hash=False)
    body: str
    body_source: str
    # True when the body was cut to MAX_BODY_CHARS (or its HTML to MAX_HTML_CHARS).
    body_truncated: bool
    attachments: tuple[Attachment, ...]
    is_report: bool
    bounce: BounceInfo | None
    defects: tuple[str, ...]
    # Sensitive values (exobot.core.sensitive) found in the subject or the body: their kinds,
    # sorted, and the masked text of each part that held one (None: nothing to mask there).
    # Found here, in the parse worker, because detection costs CPU on attacker-sized text.
    sensitive: tuple[str, ...] = ()
    masked_subject: str | None = None
    masked_body: str | None = None
    # The language the text is written in (one of exobot.core.languages.LANGUAGES), None
    # when it does not tell (exobot.mail.language); detected here, off the event loop.
    language: str | None = None


# --------------------------------------------------------------------------- text decoding


def _codec(charset: str | None) -> str | None:
    """Return the Python codec for a MIME charset name, or None when unusable."""
    if not charset:
        return None
    # RFC 2231 allows a language suffix ("utf-8*en"); quotes come from sloppy mailers.
    name = str(charset).split("*", 1)[0].strip().strip("\"'").lower()
    try:
        info = codecs.lookup(name)
    except (LookupError, ValueError, TypeError):
        return None
    # "base64", "zlib" and friends are codecs too, but not text encodings.
    if not getattr(info, "_is_text_encoding", True):
        return None
    return _SUPERSETS.get(info.name, info.name)


def _decode_bytes(data: bytes, charset: str | None) -> str:
    """Decode bytes, trying the declared charset, then UTF-8, then cp1252 (never raises)."""
    declared = _codec(charset)
    if declared is not None and declared.startswith("iso2022_jp"):
        # ISO-2022-JP is 7-bit: UTF-8 would "decode" it into escape sequences.
        try:
            return data.decode(declared)
        except ValueError:
            return _decode_jis(data)
    order = [declared, "utf-8"]
    if declared in _PERMISSIVE_CODECS:
        order.reverse()
    for name in order:
        if name is None:
            continue
        try:
            return data.decode(name)
        except (ValueError, LookupError):  # UnicodeDecodeError is a ValueError
            continue
    return data.decode("cp1252", errors="replace")


def _jis_to_cp932(data: bytes) -> bytes:
    """ISO-2022-JP bytes rewritten as Shift_JIS, so that cp932 (which has the NEC and IBM
    extensions Japanese mailers use: circled digits, Roman numerals) can decode them."""
    out = bytearray()
    mode = "ascii"
    index = 0
    while index < len(data):
        byte = data[index]
        if byte == 0x1B:
            escape = data[index + 1 : index + 3]
            if escape in (b"$B", b"$@"):
                mode = "jis"
            elif escape == b"(I":
                mode = "kana"
            elif escape[:1] == b"(":
                mode = "ascii"
            index += 3
            continue
        if byte in (0x0A, 0x0D) or mode == "ascii":
            out.append(byte)
            index += 1
        elif mode == "kana":
            out.append(byte | 0x80)
            index += 1
        else:
            first, second = byte, data[index + 1] if index + 1 < len(data) else 0x21
            lead = ((first - 0x21) >> 1) + 0x81
            lead += 0x40 if lead > 0x9F else 0
            # Odd rows map to trail bytes 0x40-0x9E (skipping 0x7F), even rows to 0x9F-0xFC.
            trail = second + (0x1F if second < 0x60 else 0x20) if first & 1 else second + 0x7E
            out += bytes((lead & 0xFF, trail & 0xFF))
            index += 2
    return bytes(out)


def _decode_jis(data: bytes) -> str:
    """Text labelled ISO-2022-JP that the strict codec refuses (half-width katakana, NEC
    special characters): the extended codec, else by way of cp932."""
    try:
        return data.decode("iso2022_jp_ext")
    except ValueError:
        return _jis_to_cp932(data).decode("cp932", errors="replace")


def _raw_to_bytes(value: str) -> bytes:
    """Recover the original bytes of a header the parser decoded as ASCII+surrogateescape."""
    return str(value).encode("utf-8", errors="surrogateescape")


def _single_line(text: str) -> str:
    """Replace control characters and line breaks by spaces and collapse whitespace."""
    return _WHITESPACE.sub(" ", _CONTROLS.sub(" ", text)).strip()


def _decode_encoded_word(encoding: str, payload: str) -> bytes | None:
    """Decode the payload of one RFC 2047 encoded word; None when it is not decodable."""
    # A fold inside the word is not part of it; other spaces are taken as spaces.
    raw = _FOLD.sub("", payload).encode("utf-8", errors="surrogateescape")
    if encoding in "qQ":
        return binascii.a2b_qp(raw, header=True)
    raw = raw.rstrip(b"=")
    if len(raw) % 4 == 1:  # one stray character cannot encode anything: drop it
        raw = raw[:-1]
    try:
        return binascii.a2b_base64(raw + b"=" * (-len(raw) % 4))
    except binascii.Error:
        return None


def _decode_rfc2047(text: str) -> str:
    """Decode RFC 2047 encoded words leniently (also inside quotes and mid-word)."""
    out: list[str] = []
    pending = bytearray()
    pending_charset: str | None = None
    position = 0
    previous_was_word = False
    for match in _ENCODED_WORD.finditer(text):
        between = text[position : match.start()]
        decoded = _decode_encoded_word(match.group(2), match.group(3))
        charset = match.group(1).lower()
        # Whitespace between two adjacent encoded words is not part of the text.
        joins = previous_was_word and not between.strip()
        if not joins or decoded is None or charset != pending_charset:
            if pending:
                out.append(_decode_bytes(bytes(pending), pending_charset))
                pending.clear()
            if not joins:
                out.append(_LINEBREAKS.sub("", between))
        if decoded is None:
            out.append(match.group(0))
            previous_was_word = False
        else:
            # Consecutive words of one charset are joined as bytes before decoding,
            # because senders split multi-byte characters across words.
            pending += decoded
            pending_charset = charset
            previous_was_word = True
        position = match.end()
    if pending:
        out.append(_decode_bytes(bytes(pending), pending_charset))
    out.append(_LINEBREAKS.sub("", text[position:]))
    return "".join(out)


def _raw_text(raw: str) -> str:
    """Raw header value -> text with its 8-bit bytes decoded (UTF-8, else the charset
    guessed for this mail's headers, else cp1252); folds kept."""
    data = _raw_to_bytes(raw)
    if data.isascii():
        return str(raw)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    guessed = _HEADER_CODEC.get()
    if guessed:
        try:
            return data.decode(guessed)
        except (UnicodeDecodeError, LookupError):
            pass
    return data.decode("cp1252", errors="replace")


def _unfolded(raw: str) -> str:
    """Raw header value -> text with 8-bit bytes decoded and folding removed."""
    return _LINEBREAKS.sub("", _raw_text(raw))


def _header_text(raw: str) -> str:
    """Fully decode a raw header value into a single line of text."""
    return _single_line(_decode_rfc2047(_raw_text(raw)))


def _declared_charsets(message: Message) -> list[str]:
    """Charsets declared by the first few parts of the mail, top first (bounded walk)."""
    found: list[str] = []
    stack = [message]
    seen = 0
    while stack and seen < 50:
        part = stack.pop()
        seen += 1
        charset = _charset(part)
        if charset:
            found.append(charset)
        payload = part.get_payload()
        if isinstance(payload, list):
            stack.extend(p for p in reversed(payload) if isinstance(p, Message))
    return found


def _guess_header_codec(message: Message) -> str | None:
    """The charset of the raw 8-bit header bytes that are not UTF-8: the body's declared
    charset when it fits them (mailers that send raw headers use the body's), else a guess
    by charset-normalizer over all of them at once (single names are too short to tell)."""
    sample = bytearray()
    for _, value in message.raw_items():
        data = _raw_to_bytes(value)
        if data.isascii():
            continue
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            sample += data + b" "
        if len(sample) >= MAX_HEADER_SAMPLE:
            break
    if not sample:
        return None
    data = bytes(sample[:MAX_HEADER_SAMPLE])
    for charset in _declared_charsets(message):
        codec = _codec(charset)
        if codec and codec not in ("utf-8", "ascii"):
            try:
                data.decode(codec)
            except (UnicodeDecodeError, LookupError):
                continue
            return codec
    best = charset_normalizer.from_bytes(data, cp_isolation=list(_HEADER_CANDIDATES)).best()
    return best.encoding if best is not None else None


# ------------------------------------------------------------------------------- headers


def _raw_values(message: Message, name: str) -> list[str]:
    """All raw values of one header, case-insensitively, in order."""
    wanted = name.lower()
    return [str(value) for key, value in message.raw_items() if str(key).lower() == wanted]


def _decoded_headers(message: Message) -> Mapping[str, tuple[str, ...]]:
    """Every header of the message: lowercased name -> decoded single-line values."""
    collected: dict[str, list[str]] = {}
    for key, value in message.raw_items():
        name = _header_text(str(key)).lower()
        if name:
            collected.setdefault(name, []).append(_header_text(str(value)))
    return MappingProxyType({name: tuple(values) for name, values in collected.items()})


def _address_pairs(raw_values: Iterable[str]) -> list[tuple[str, str]]:
    """(display name, lowercased addr-spec) pairs; names decoded, bad addresses dropped."""
    # Encoded words are swapped for opaque atoms while splitting: a hostile word such as
    # "=?utf-8?q?x=0D=0ABcc:_y@z?=" must not be read as address or group syntax.
    words: list[str] = []

    def hide(match: re.Match[str]) -> str:
        words.append(match.group(0))
        return f"\ue000{len(words) - 1}\ue001"

    # Words are hidden before unfolding: a fold inside a word is removed when decoding it.
    texts = [
        _LINEBREAKS.sub("", _ENCODED_WORD.sub(hide, _PLACEHOLDER.sub("", _raw_text(v))))
        for v in raw_values
    ]
    try:
        pairs = getaddresses(texts)
    except (ValueError, IndexError, TypeError):  # the old address parser is mostly lenient
        return []

    def reveal(text: str) -> str:
        return _PLACEHOLDER.sub(lambda m: words[int(m.group(1))], text)

    result = []
    for name, addr in pairs:
        # The one address rule of exobot: what we could not write to is not an address.
        try:
            canonical = normalize_address(_single_line(reveal(addr)))
        except BadAddress:
            continue
        result.append((_single_line(_decode_rfc2047(reveal(name))), canonical))
    return result


def _recovered_address(raw: str) -> tuple[str, str] | None:
    """(name, addr) from a From value getaddresses cannot split, such as
    "Name addr@example.org" without angle brackets; None when nothing usable is in it."""
    text = _single_line(_decode_rfc2047(_raw_text(raw)))[:2000]
    # What the sender put in angle brackets is the address they gave, whole: when it is not
    # one we can use (`"Name" <a b@example.org>`), a fragment of it ("b@example.org") would
    # be another person's address, so nothing is recovered.
    bracketed = _BRACKETED.search(text)
    if bracketed is not None and "@" in bracketed.group(1):
        try:
            address = normalize_address(bracketed.group(1).strip().strip("."))
        except BadAddress:
            return None
        name = text[: bracketed.start()].strip(" \"'")
        return _single_line(name), address
    for match in _LOOSE_ADDRESS.finditer(text):
        try:
            address = normalize_address(match.group(0).strip(".<>"))
        except BadAddress:
            continue
        name = (text[: match.start()] + text[match.end() :]).strip(" \"'<>()")
        return _single_line(name), address
    return None


def _addresses(message: Message, name: str) -> tuple[str, ...]:
    """Unique lowercased addresses of all headers called ``name``, in order."""
    pairs = _address_pairs(_raw_values(message, name))
    return tuple(dict.fromkeys(addr for _, addr in pairs))


def _first_address(message: Message, name: str) -> tuple[str, str] | None:
    """(display name, addr) of the first usable address of the ``name`` headers: the first
    header that yields one (some mailers send two From headers, the first one empty), also
    read without angle brackets."""
    for value in _raw_values(message, name)[:10]:
        pairs = _address_pairs([value])
        if pairs:
            return pairs[0]
        recovered = _recovered_address(value)
        if recovered is not None:
            return recovered
    return None


def _return_path(message: Message) -> str | None:
    """Envelope sender: None when absent, "" for the null sender "<>" (bounces)."""
    values = _raw_values(message, "return-path")
    if not values:
        return None
    pairs = _address_pairs(values[:1])
    return pairs[0][1] if pairs else ""


def _message_ids(text: str, loose: bool = False) -> list[str]:
    """Normalized ids found in a header value; bare tokens need an "@" unless ``loose``."""
    ids = ["".join(core.split()) for core in _BRACKETED_ID.findall(text)]
    if not ids:
        tokens = text.split()
        ids = tokens if loose and len(tokens) == 1 else [t for t in tokens if "@" in t]
    return [f"<{core}>" for core in ids if core]


def normalize_message_id(value: str) -> str | None:
    """Normalize a Message-ID to "<local@domain>" (angle brackets added), or None."""
    if not value:
        return None
    ids = _message_ids(_header_text(value), loose=True)
    return ids[0] if ids else None


def _id_list(message: Message, name: str) -> tuple[str, ...]:
    """Unique normalized ids of all headers called ``name``, in order."""
    ids: list[str] = []
    for value in _raw_values(message, name):
        ids.extend(_message_ids(_header_text(value)))
    return tuple(dict.fromkeys(ids))


def _parse_date(message: Message) -> datetime | None:
    """Aware datetime of the Date header, or None when absent or unparseable."""
    values = _raw_values(message, "date")
    if not values:
        return None
    try:
        parsed = parsedate_to_datetime(_header_text(values[0]))
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    # "-0000" means "zone unknown" and gives a naive datetime; UTC is the honest reading.
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def header(mail: ParsedMail, name: str) -> str | None:
    """First decoded value of a header of ``mail`` (case-insensitive), or None."""
    values = mail.headers.get(name.lower())
    return values[0] if values else None


# ------------------------------------------------------------------------------ MIME walk


@dataclass
class _Walk:
    """What one walk over the MIME tree found, sorted by role, in depth-first order."""

    plain: list[Message] = field(default_factory=list)
    html: list[Message] = field(default_factory=list)
    named_inline: list[Message] = field(default_factory=list)  # inline text with a file name
    broken: list[Message] = field(default_factory=list)  # multiparts that lost their parts
    attachments: list[Message] = field(default_factory=list)
    reports: list[Message] = field(default_factory=list)
    dsn_parts: list[Message] = field(default_factory=list)
    report_messages: list[Message] = field(default_factory=list)
    report_headers: list[Message] = field(default_factory=list)
    defects: list[str] = field(default_factory=list)


def _content_type(part: Message) -> str:
    """Lowercased content type; stdlib already falls back to text/plain when malformed."""
    try:
        return part.get_content_type()
    except (ValueError, TypeError, AttributeError):
        return "application/octet-stream"


def _disposition(part: Message) -> str | None:
    """Lowercased Content-Disposition value or None."""
    try:
        return part.get_content_disposition()
    except (ValueError, TypeError, AttributeError):
        return None


def _raw_filename(part: Message) -> str:
    """Decoded (RFC 2231 and, leniently, RFC 2047) file name of a part, or ""."""
    try:
        name = part.get_filename()
    except (ValueError, TypeError, LookupError, AttributeError):
        return ""
    if not name:
        return ""
    return _header_text(str(name))


def _is_message_like(part: Message, ctype: str) -> bool:
    """True for message/* parts the stdlib parsed into sub-messages."""
    return ctype.startswith("message/") and part.is_multipart()


def _walk(root: Message) -> _Walk:
    """Sort every MIME part by role, iteratively (no recursion, bounded depth and size)."""
    walk = _Walk()
    stack: list[tuple[Message, int, bool]] = [(root, 0, False)]
    visited = 0
    while stack:
        part, depth, in_report = stack.pop()
        visited += 1
        if visited > MAX_PARTS:
            walk.defects.append("TooManyParts")
            break
        walk.defects.extend(type(defect).__name__ for defect in getattr(part, "defects", ()))
        if depth > MAX_DEPTH:
            walk.defects.append("NestingTooDeep")
            continue
        ctype = _content_type(part)
        if _is_message_like(part, ctype):
            _classify_message(part, ctype, walk, in_report)
        elif part.is_multipart():
            if ctype == "multipart/report":
                walk.reports.append(part)
                in_report = True
            children = [child for child in part.get_payload() if isinstance(child, Message)]
            stack.extend((child, depth + 1, in_report) for child in reversed(children))
        else:
            _classify_leaf(part, ctype, walk, in_report, is_root=depth == 0)
    return walk


def _classify_message(part: Message, ctype: str, walk: _Walk, in_report: bool) -> None:
    """Route a parsed message/* part: report machinery inside reports, else attachment."""
    if not in_report:
        walk.attachments.append(part)
    elif ctype in _DSN_TYPES:
        walk.dsn_parts.append(part)
    elif ctype in _ENCAPSULATED:
        walk.report_messages.append(part)
    # Other message/* inside a report (e.g. disposition-notification) is report data only.


def _classify_leaf(part: Message, ctype: str, walk: _Walk, in_report: bool, is_root: bool) -> None:
    """Route a leaf part: body candidate, attachment, report data, or ignored inline text."""
    maintype, _, subtype = ctype.partition("/")
    if in_report and ctype == "text/rfc822-headers":
        walk.report_headers.append(part)
        return
    if maintype == "multipart":
        # Boundary missing or never found: the stdlib keeps the raw text as the payload.
        walk.broken.append(part)
        return
    disposition = _disposition(part)
    named = bool(_raw_filename(part))
    # A whole single-part mail that names itself is still the body (some phones do this).
    if maintype == "text" and disposition != "attachment" and (is_root or not named):
        if subtype == "plain":
            walk.plain.append(part)
        elif subtype == "html":
            walk.html.append(part)
        # Other inline text (calendar, enriched, ...) is neither body nor attachment.
        return
    if ctype in ("text/plain", "text/html") and disposition in (None, "inline"):
        # Some clients (VM, Apple Mail) send the typed text as a named, non-attached part.
        walk.named_inline.append(part)
    walk.attachments.append(part)


# ---------------------------------------------------------------------------------- HTML
#
# html2text sits on the stdlib HTMLParser, and both have steps that are quadratic on
# hostile markup (unclosed "<" or "<!--" rescanned to the end, runs of whitespace that
# its Markdown escaping rescans from every line start, nested lists indented once per
# level). So the HTML is first read by the linear tokenizer exobot.core.html_tokens and
# rewritten into a small, well-formed subset, with nesting, whitespace runs and size
# capped; only that reaches html2text.

# Normalized HTML fed to html2text at most (characters); the rest is cut and flagged.
MAX_HTML_CHARS = 500_000
# List, quote and table levels beyond this are flattened: each level costs html2text an
# indentation on every line below it.
MAX_HTML_NESTING = 8
# Longest whitespace run kept inside <pre> (longer runs are shortened, not dropped).
MAX_PRE_WHITESPACE = 100
# Attribute text looked at per tag (an href is all we keep).
MAX_ATTRIBUTES = 8192
# Links that keep their target; later ones become their text only. html2text renders
# links as references ("[text][1]", targets listed at the end), the way volunteers read
# mail today, and finds each link's number by scanning every earlier link: quadratic in
# the number of links (26,900 links in 500 KB took 26 s, past the sandbox's 10 s). Inline
# links would avoid the scan but change how every ordinary mail reads, so the number of
# links is capped instead: a few hundred covers any newsletter, and the scan stays small.
MAX_HTML_LINKS = 500

_HREF = re.compile(r"""(?<![\w-])href\s*+=\s*+(?:"([^"]*+)"|'([^']*+)'|([^\s"'<>`]++))""", re.I)
_HTML_SPACE = re.compile(r"[ \t\n\r\f]++")
_ANY_SPACE = re.compile(r"\s++")
# Elements whose content is never shown: dropped together with their content.
_HIDDEN = frozenset({"script", "style", "title", "template", "noscript", "xml"})
# Elements html2text understands, passed on without attributes (an <a> keeps its href).
_KEPT_TAGS = frozenset(
    "a abbr b big blockquote br cite code dd del dfn div dl dt em h1 h2 h3 h4 h5 h6 hr i"  # noqa: SIM905
    " ins kbd li ol p pre q s samp small strike strong sub sup table tbody td tfoot th"
    " thead tr tt u ul var".split()
)
# Block elements html2text does not know: a <div> keeps their line breaks.
_AS_DIV = frozenset(
    "address article aside caption center details figcaption figure footer form header"  # noqa: SIM905
    " main nav section summary".split()
)
_VOID_TAGS = frozenset({"br", "hr"})
_NESTING_TAGS = frozenset({"ul", "ol", "blockquote", "dl", "table"})


def _shorten_space(match: re.Match[str]) -> str:
    """A whitespace run inside <pre>, shortened when absurdly long."""
    run = match.group(0)
    if len(run) <= MAX_PRE_WHITESPACE:
        return run
    lines = run.count("\n")
    tail = run.rpartition("\n")[2] if lines else run
    return "\n" * min(lines, 2) + tail[: MAX_PRE_WHITESPACE // 2]


class _HtmlNormalizer:
    """One linear pass over hostile HTML producing the small well-formed subset above."""

    def __init__(self) -> None:
        self.out: list[str] = []
        self.size = 0
        self.truncated = False
        self.pre = 0
        self.kept_nesting = 0
        # Opened-but-dropped nesting tags per name, so their end tags are dropped too.
        self.dropped: dict[str, int] = {}
        self.open_count: dict[str, int] = {}
        self.links = 0

    def emit(self, piece: str, divisible: bool = False) -> bool:
        """Append output; False (and flagged) once the size cap is reached. Text
        (``divisible``) is cut to what still fits, never inside a character reference."""
        if self.size + len(piece) > MAX_HTML_CHARS:
            self.truncated = True
            if divisible:
                piece = piece[: MAX_HTML_CHARS - self.size]
                amp = piece.rfind("&", -8)
                if amp >= 0 and ";" not in piece[amp:]:
                    piece = piece[:amp]
                self.out.append(piece)
                self.size += len(piece)
            return False
        self.out.append(piece)
        self.size += len(piece)
        return True

    def text(self, raw: str) -> bool:
        """Emit a text run: references decoded, whitespace collapsed, then escaped."""
        if not raw:
            return True
        text = unescape_html(raw)
        # Outside <pre> any whitespace run reads as one space (as a browser shows it).
        text = _ANY_SPACE.sub(_shorten_space, text) if self.pre else _HTML_SPACE.sub(" ", text)
        return self.emit(html.escape(text, quote=False), divisible=True)

    def start(self, name: str, attrs: str) -> bool:
        """Emit a start tag of the kept subset (or nothing)."""
        if name in _AS_DIV:
            name = "div"
        if name not in _KEPT_TAGS:
            return True
        if name in _NESTING_TAGS:
            if self.kept_nesting >= MAX_HTML_NESTING:
                self.dropped[name] = self.dropped.get(name, 0) + 1
                return True
            self.kept_nesting += 1
        if name == "pre":
            self.pre += 1
        if name not in _VOID_TAGS:
            self.open_count[name] = self.open_count.get(name, 0) + 1
        if name == "a" and self.links < MAX_HTML_LINKS:
            match = _HREF.search(attrs[:MAX_ATTRIBUTES])
            if match:
                self.links += 1
                href = unescape_html(next(g for g in match.groups() if g is not None))
                href = _single_line(href)
                return self.emit(f'<a href="{html.escape(href, quote=True)}">')
        return self.emit(f"<{name}>")

    def end(self, name: str) -> bool:
        """Emit the end tag of an element opened before (stray end tags are dropped)."""
        if name in _AS_DIV:
            name = "div"
        if name not in _KEPT_TAGS or name in _VOID_TAGS:
            return True
        if self.dropped.get(name):
            self.dropped[name] -= 1
            return True
        if not self.open_count.get(name):
            return True
        self.open_count[name] -= 1
        if name in _NESTING_TAGS:
            self.kept_nesting -= 1
        if name == "pre":
            self.pre -= 1
        return self.emit(f"</{name}>")

    def run(self, source: str) -> str:
        """Normalize ``source``; every character is looked at a bounded number of times,
        and reading stops once MAX_HTML_CHARS are written."""
        for token in html_tokens(source, _HIDDEN):
            if isinstance(token, str):
                ok = self.text(token)
            else:
                name, closing, attrs = token
                ok = self.end(name) if closing else self.start(name, attrs)
            if not ok:
                break
        return "".join(self.out)


def _normalize_html(source: str) -> tuple[str, bool]:
    """(well-formed small HTML, whether it was cut) for html2text."""
    normalizer = _HtmlNormalizer()
    text = normalizer.run(source)
    return text, normalizer.truncated


def _strip_lines(text: str) -> str:
    """Trailing whitespace removed from every line (per line: no regex backtracking)."""
    return "\n".join(line.rstrip() for line in text.split("\n"))


def _html_to_text(source: str) -> tuple[str, bool]:
    """(readable plain text, whether it was cut): no scripts or styles, links as end
    references, nesting and size capped."""
    normalized, truncated = _normalize_html(source)
    converter = html2text.HTML2Text()
    converter.body_width = 0
    converter.ignore_images = True
    converter.unicode_snob = True
    converter.inline_links = False
    try:
        text = converter.handle(normalized)
    except Exception:  # html2text is third-party code: fall back to the bare text
        text = unescape_html(_TAGS.sub(" ", normalized))
    text = _strip_lines(_clean_body(text))
    return _BLANK_RUNS.sub("\n\n", text).strip("\n"), truncated


def html_to_text(source: str) -> str:
    """Readable plain text of an HTML body (the conversion mail bodies get), size capped."""
    return _html_to_text(source)[0]


# ---------------------------------------------------------------------------------- body


def _payload_bytes(part: Message) -> bytes:
    """Transfer-decoded payload bytes of a leaf part (never raises)."""
    encoding = str(part.get("content-transfer-encoding", "")).strip().lower()
    payload = part.get_payload()
    if encoding in _UU_ENCODINGS and isinstance(payload, str):
        decoded = _uu_part(payload)
        if decoded is not None:
            return decoded
    try:
        data = part.get_payload(decode=True)
    except (ValueError, TypeError, LookupError, binascii.Error, AssertionError):
        data = None
    if isinstance(data, bytes):
        return data
    payload = part.get_payload()
    return payload.encode("utf-8", errors="surrogateescape") if isinstance(payload, str) else b""


def _charset(part: Message) -> str | None:
    """Declared charset parameter of a part, or None."""
    try:
        return part.get_content_charset()
    except (ValueError, TypeError, LookupError, AttributeError):
        return None


def _clean_body(text: str) -> str:
    """Normalize newlines to "\\n" and drop NUL (PostgreSQL text cannot store it)."""
    return _LINEBREAKS.sub("\n", text).replace("\x00", "")


def _plain_text(part: Message) -> str:
    """Decoded text of a text/plain (or broken multipart) part."""
    return _clean_body(_decode_bytes(_payload_bytes(part), _charset(part)))


def _html_charset(part: Message, data: bytes) -> str | None:
    """Charset from the MIME header, else from a <meta charset> in the HTML head."""
    declared = _charset(part)
    if declared:
        return declared
    match = _META_CHARSET.search(data[:4096])
    return match.group(1).decode("ascii") if match else None


def _html_text(part: Message) -> tuple[str, bool]:
    """(converted text, whether it was cut) of a text/html part."""
    data = _payload_bytes(part)
    return _html_to_text(_decode_bytes(data, _html_charset(part, data)))


def _embedded(part: Message) -> Message | None:
    """The message inside a message/* part, if the stdlib parsed one."""
    payload = part.get_payload()
    if isinstance(payload, list) and payload and isinstance(payload[0], Message):
        return payload[0]
    return None


@dataclass
class _Piece:
    """One text part chosen for the body."""

    text: str
    source: str  # "plain" or "html"
    part: Message
    truncated: bool = False
    uu_files: list[Attachment] = field(default_factory=list)


@dataclass
class _Budget:
    """Bounds shared by one body selection: parts visited, text parts and characters."""

    visited: int = 0
    texts: int = 0
    chars: int = 0
    truncated: bool = False


def _is_body_leaf(part: Message, ctype: str, is_root: bool) -> bool:
    """An inline text/plain or text/html part without a file name (or the whole mail)."""
    if ctype not in ("text/plain", "text/html") or _disposition(part) == "attachment":
        return False
    return is_root or not _raw_filename(part)


def _piece(part: Message, ctype: str) -> _Piece | None:
    """The decoded text of one body candidate, or None when it is blank."""
    if ctype == "text/html":
        text, cut = _html_text(part)
        piece = _Piece(text, "html", part, cut)
    else:
        text, files = _split_uuencoded(_plain_text(part))
        piece = _Piece(text, "plain", part, uu_files=files)
    return piece if piece.text.strip() or piece.uu_files else None


def _is_stub(plain: list[_Piece], rich: list[_Piece]) -> bool:
    """Whether a plain alternative only points at its HTML sibling ("read the HTML
    version", "view it in your browser") or is tiny beside it."""
    plain_text = "\n".join(p.text for p in plain).strip()
    rich_size = sum(len(p.text.strip()) for p in rich)
    if not plain_text:
        return True
    size = len(plain_text)
    if size < 500 and rich_size > 2 * size and _STUB_HINT.search(plain_text):
        return True
    return size < 200 and rich_size > 5 * size + 300


def _choose_alternative(options: list[list[_Piece]]) -> list[_Piece]:
    """The plain alternative unless it is a stub; else the (last, richest) HTML one."""
    options = [option for option in options if option]
    if not options:
        return []
    plain = next((o for o in options if all(p.source == "plain" for p in o)), None)
    rich = next((o for o in reversed(options) if any(p.source == "html" for p in o)), None)
    if plain is None:
        return rich or options[-1]
    return rich if rich is not None and _is_stub(plain, rich) else plain


def _pieces(part: Message, depth: int, budget: _Budget) -> list[_Piece]:
    """Body text parts under ``part`` in reading order: every inline text part of a
    mixed multipart (Apple Mail splits the text around pictures), one choice per
    alternative multipart. Bounded in depth, parts and characters."""
    budget.visited += 1
    if depth > MAX_DEPTH or budget.visited > MAX_PARTS:
        return []
    ctype = _content_type(part)
    if _is_message_like(part, ctype):
        return []  # an attached message is an attachment, not text of this mail
    if not part.is_multipart():
        if not _is_body_leaf(part, ctype, depth == 0):
            return []
        if budget.texts >= MAX_TEXT_PARTS or budget.chars > MAX_BODY_CHARS:
            budget.truncated = True
            return []
        piece = _piece(part, ctype)
        if piece is None:
            return []
        budget.texts += 1
        budget.chars += len(piece.text)
        return [piece]
    children = [child for child in part.get_payload() if isinstance(child, Message)]
    if ctype == "multipart/alternative":
        return _choose_alternative([_pieces(child, depth + 1, budget) for child in children])
    return [piece for child in children for piece in _pieces(child, depth + 1, budget)]


def _fallback_piece(walk: _Walk) -> _Piece | None:
    """When no unnamed text part exists: an inline named text part, else the raw text of
    a multipart whose boundary never appeared."""
    candidates = [(part, _content_type(part)) for part in walk.named_inline]
    candidates += [(part, "text/plain") for part in walk.broken]
    for part, ctype in candidates:
        found = _piece(part, ctype)
        if found is not None:
            return found
    return None


@dataclass
class _Body:
    """The selected body: text, where it came from, the parts it used, files found in it."""

    text: str = ""
    source: str = "none"
    parts: list[Message] = field(default_factory=list)
    files: list[Attachment] = field(default_factory=list)
    truncated: bool = False


def _join(pieces: list[_Piece]) -> str:
    """One text from several parts, a blank line between them."""
    if len(pieces) == 1:
        return pieces[0].text
    return "\n\n".join(p.text.strip("\n") for p in pieces if p.text.strip())


def _select_body(root: Message, walk: _Walk, hops: int = 0) -> _Body:
    """The body of the mail; for mail that only forwards an attached message, that
    message's body (its parts are then not un-attached)."""
    budget = _Budget()
    pieces = _pieces(root, 0, budget)
    if not pieces:
        fallback = _fallback_piece(walk)
        pieces = [fallback] if fallback is not None else []
    if pieces:
        return _Body(
            text=_join(pieces),
            source=pieces[0].source,
            parts=[p.part for p in pieces],
            files=[f for p in pieces for f in p.uu_files],
            truncated=budget.truncated or any(p.truncated for p in pieces),
        )
    if hops < MAX_FORWARD_HOPS:
        for attached in walk.attachments:
            inner = _embedded(attached) if _content_type(attached) in _ENCAPSULATED else None
            if inner is not None:
                body = _select_body(inner, _walk(inner), hops + 1)
                if body.source != "none":
                    return _Body(body.text, body.source, [], [], body.truncated)
    return _Body()


def _cap_body(text: str) -> tuple[str, bool]:
    """The body cut to MAX_BODY_CHARS (at a line end when one is near), and whether it was."""
    if len(text) <= MAX_BODY_CHARS:
        return text, False
    cut = text.rfind("\n", MAX_BODY_CHARS - 2000, MAX_BODY_CHARS)
    return text[: cut if cut > 0 else MAX_BODY_CHARS], True


# ------------------------------------------------------------------------------ uuencode
#
# Old clients (and some scanners' forwards) send files uuencoded: either as a part with
# Content-Transfer-Encoding x-uuencode, or as "begin 644 name" ... "end" blocks inside
# the text. Lines are checked strictly (length character against line length), so that
# ordinary text is not mistaken for data.

MAX_UU_FILES = 20
_UU_BEGIN = re.compile(r"^begin[ \t]+[0-7]{3,4}[ \t]+([^\n]*\S)[ \t]*$", re.M)
_UU_LINE = re.compile(r"[\x20-\x60]++")
_UU_ENCODINGS = frozenset({"x-uuencode", "uuencode", "uue", "x-uue"})


def _uu_line(line: str) -> bytes | None:
    """Decoded bytes of one uuencoded line, or None when it is not one."""
    line = line.rstrip("\r")
    if not line or not _UU_LINE.fullmatch(line):
        return None
    count = (ord(line[0]) - 32) & 63
    needed = (count + 2) // 3 * 4
    if not needed <= len(line) - 1 <= needed + 2:  # some encoders add a check character
        return None
    try:
        return binascii.a2b_uu(line[: needed + 1])
    except binascii.Error:
        return None


def _uu_data(text: str, start: int, lenient: bool = False) -> tuple[bytes | None, int]:
    """Decode uuencoded lines from ``start`` up to an "end" line: (data, offset after the
    block), or (None, offset where decoding stopped; -1 when the text ran out first).
    ``lenient`` accepts data that runs to the end of the text without "end"."""
    chunks = []
    position = start
    while position < len(text):
        newline = text.find("\n", position)
        line_end = len(text) if newline < 0 else newline
        line = text[position:line_end].strip()
        position = line_end + 1
        if line == "end":
            return b"".join(chunks), min(position, len(text))
        if line == "`" or not line:
            continue
        data = _uu_line(line)
        if data is None:
            return None, line_end
        chunks.append(data)
    if lenient and chunks:
        return b"".join(chunks), len(text)
    return None, -1


def _split_uuencoded(text: str) -> tuple[str, list[Attachment]]:
    """(text without its uuencoded blocks, the files they hold)."""
    if "begin" not in text:
        return text, []
    files: list[Attachment] = []
    kept: list[str] = []
    position = 0
    skip_to = 0
    for match in _UU_BEGIN.finditer(text):
        if match.start() < skip_to:
            continue
        if len(files) >= MAX_UU_FILES:
            break
        data, end = _uu_data(text, match.end() + 1)
        if end < 0:
            break  # no "end" before the text ran out: no later block can end either
        if data is None:
            skip_to = end  # every "begin" before `end` would stop at the same line
            continue
        kept.append(text[position : match.start()])
        # The blank line that set the block apart goes with it.
        if text.startswith("\n", end) and text[: match.start()].endswith("\n\n"):
            end += 1
        position = skip_to = end
        name = safe_filename(match.group(1)) or f"uuencoded-{len(files) + 1}"
        files.append(Attachment(name, _guess_type(name), data))
    kept.append(text[position:])
    return "".join(kept), files


def _uu_part(payload: str) -> bytes | None:
    """Decoded data of a part sent with a uuencode transfer encoding: the "begin" line
    and the "end" line may both be missing."""
    match = _UU_BEGIN.search(payload, 0, 4096)
    return _uu_data(payload, match.end() + 1 if match else 0, lenient=True)[0]


def _guess_type(filename: str) -> str:
    """Content type guessed from a file name (application/octet-stream when unknown)."""
    guessed, _ = mimetypes.guess_type(filename, strict=False)
    return guessed or "application/octet-stream"


# --------------------------------------------------------------------------- attachments


def _message_bytes(part: Message) -> bytes:
    """Serialized bytes of the message(s) inside a message/* part."""
    chunks = []
    for sub in part.get_payload():
        if isinstance(sub, Message):
            try:
                chunks.append(sub.as_bytes())
            except (RecursionError, ValueError, TypeError, LookupError, UnicodeError):
                chunks.append(b"")
    return b"".join(chunks)


def _attachment(part: Message, index: int) -> Attachment:
    """Build the Attachment for one part; ``index`` (1-based) names anonymous ones."""
    ctype = _content_type(part)
    filename = safe_filename(_raw_filename(part))
    if _is_message_like(part, ctype):
        data = _message_bytes(part)
        inner = _embedded(part)
        if not filename and ctype in _ENCAPSULATED and inner is not None:
            subjects = _raw_values(inner, "subject")
            subject = safe_filename(_header_text(subjects[0])) if subjects else ""
            filename = f"{subject}.eml" if subject else f"attachment-{index}.eml"
    else:
        data = _payload_bytes(part)
    if not filename:
        # A nameless part (often an inline picture) still gets the usual extension.
        extension = mimetypes.guess_extension(ctype, strict=False) or ""
        filename = f"attachment-{index}{extension}"
    return Attachment(filename=filename, content_type=ctype, data=data)


# ---------------------------------------------------------------------------------- DSN


def _field_blocks(text: str) -> list[dict[str, str]]:
    """Parse "Name: value" blocks separated by blank lines (DSN fields, RFC 3464)."""
    blocks: list[dict[str, str]] = [{}]
    last = None
    for line in _LINEBREAKS.split(text):
        if not line.strip():
            if blocks[-1]:
                blocks.append({})
            last = None
        elif line[:1] in " \t" and last:
            blocks[-1][last] += " " + line.strip()
        elif ":" in line:
            name, _, value = line.partition(":")
            last = name.strip().lower()
            blocks[-1].setdefault(last, value.strip())
    return [block for block in blocks if block]


def _dsn_blocks(part: Message) -> list[dict[str, str]]:
    """Field blocks of a delivery-status part, however the stdlib parsed it."""
    if not part.is_multipart():
        return _field_blocks(_plain_text(part))
    blocks = []
    for sub in part.get_payload():
        if not isinstance(sub, Message):
            continue
        block: dict[str, str] = {}
        for key, value in sub.raw_items():
            block.setdefault(str(key).strip().lower(), _header_text(str(value)))
        blocks.append(block)
        # message/global-delivery-status is parsed as one message: more blocks in its body.
        rest = sub.get_payload()
        if isinstance(rest, str):
            blocks.extend(_field_blocks(_decode_bytes(_raw_to_bytes(rest), "utf-8")))
    return blocks


def _dsn_recipient(value: str) -> str:
    """ "rfc822; User@Example.org" -> "user@example.org"."""
    address = value.split(";", 1)[-1]
    return _single_line(address).strip("<> ").lower()


def _dsn_status(value: str) -> str | None:
    """The "X.Y.Z" code of a Status field, else its first word."""
    match = _DSN_STATUS.search(value)
    if match:
        return match.group(0)
    words = value.split()
    return words[0] if words else None


def _original_message_id(walk: _Walk) -> str | None:
    """Message-ID of the bounced mail, from an attached message or its headers."""
    for part in walk.report_messages:
        inner = _embedded(part)
        values = _raw_values(inner, "message-id") if inner is not None else []
        if values and normalize_message_id(values[0]):
            return normalize_message_id(values[0])
    for part in walk.report_headers:
        data = _payload_bytes(part).lstrip(b"\r\n")
        try:
            headers = _PARSER.parsebytes(data, headersonly=True)
        except (ValueError, TypeError, RecursionError):
            continue
        values = _raw_values(headers, "message-id")
        if values and normalize_message_id(values[0]):
            return normalize_message_id(values[0])
    return None


def _bounce(walk: _Walk) -> BounceInfo | None:
    """BounceInfo for a delivery-status report; None for other reports or plain mail."""
    if not walk.reports:
        return None
    report_type = walk.reports[0].get_param("report-type", "")
    report_type = collapse_rfc2231_value(report_type).strip().lower()
    if report_type not in _DSN_REPORT_TYPES and not walk.dsn_parts:
        return None
    blocks = [block for part in walk.dsn_parts for block in _dsn_blocks(part)]
    recipients = [
        _dsn_recipient(block[key])
        for block in blocks
        for key in ("final-recipient", "original-recipient")
        if key in block
    ]
    per_recipient = [b for b in blocks if "status" in b or "action" in b]
    # When recipients fared differently, the failed one is what the helpdesk cares about.
    failed = [b for b in per_recipient if b.get("action", "").lower() == "failed"]
    chosen = (failed or per_recipient or [{}])[0]
    diagnostic = _single_line(chosen.get("diagnostic-code", "")) or None
    return BounceInfo(
        original_message_id=_original_message_id(walk),
        recipients=tuple(dict.fromkeys(r for r in recipients if r)),
        status=_dsn_status(chosen.get("status", "")),
        action=chosen.get("action", "").strip().lower() or None,
        diagnostic=diagnostic,
    )


# Local parts (with "-", "_", "." and any "+tag" left out) of the mail systems' own senders.
DAEMON_SENDERS = ("mailerdaemon", "postmaster")
# A bounce in no report format is searched for our ids in this much of its text at most, and
# in the headers of at most this many attached messages; at most MAX_QUOTED_IDS are kept.
MAX_BOUNCE_SCAN = 64 * 1024
MAX_BOUNCE_ATTACHMENTS = 10
MAX_QUOTED_IDS = 10
# Our signed Message-ID (exobot.mail.msgid), unanchored and bounded: every repetition is
# limited and the domain stops at "<", so a scan is linear in the text.
_OUR_ID = re.compile(r"<exobot\.\d{1,12}\.[0-9a-f]{16}\.[0-9a-f]{16}@[^<>@\s]{1,255}>")


def sender_local_part(address: str) -> str:
    """The local part of `address` lowercased, without "+tag", "-", "_" and "."."""
    local = address.partition("@")[0].partition("+")[0]
    return local.replace("-", "").replace("_", "").replace(".", "").lower()


def is_daemon(address: str) -> bool:
    """Whether `address` is a mail system's own (mailer-daemon@, postmaster@)."""
    return bool(address) and sender_local_part(address) in DAEMON_SENDERS


def _plain_bounce(sender: str, walk: _Walk, text: str) -> BounceInfo | None:
    """BounceInfo for a mail system's mail in no report format (None for anyone else's, or
    when it has a report part): the ids of our form in the Message-ID of attached messages and
    in the first MAX_BOUNCE_SCAN characters of its text. Without any, the rules drop it."""
    if walk.reports or not is_daemon(sender):
        return None
    found: list[str] = []
    for part in walk.attachments[:MAX_BOUNCE_ATTACHMENTS]:
        inner = _embedded(part) if _is_message_like(part, _content_type(part)) else None
        values = _raw_values(inner, "message-id") if inner is not None else []
        found += _OUR_ID.findall(_header_text(values[0][:1000])) if values else []
    for match in _OUR_ID.finditer(text, 0, MAX_BOUNCE_SCAN):
        if len(found) >= MAX_QUOTED_IDS:
            break
        found.append(match.group(0))
    ids = tuple(dict.fromkeys(found))[:MAX_QUOTED_IDS]
    return BounceInfo(None, (), None, None, None, quoted_ids=ids)


# ------------------------------------------------------------------------------- parsing


def _repair_header_block(data: bytes) -> bytes:
    """Fix the two header block faults that lose the subject and sender: a few non-header
    lines before the first header ("---- Original email message ----"), and a line
    continued without indentation (the stdlib then takes it, and every header after it,
    as the body). Only the header block is touched, and only its first lines."""
    spans: list[tuple[int, int]] = []
    position = 0
    while position < len(data) and len(spans) < MAX_HEADER_LINES:
        newline = data.find(b"\n", position)
        end = len(data) if newline < 0 else newline + 1
        if not data[position:end].strip():
            break
        spans.append((position, end))
        position = end
    lines = [data[start:end] for start, end in spans]
    if not lines:
        return data
    is_header = [bool(_HEADER_LINE.match(line)) for line in lines]
    first = 0
    if not is_header[0] and not lines[0].startswith(b"From "):
        first = next((i for i in range(min(len(lines), MAX_BANNER_LINES + 1)) if is_header[i]), -1)
        if first < 0:
            return data  # no header near the top: not ours to guess
    last_header = max((i for i, header in enumerate(is_header) if header), default=-1)
    if last_header < 0:
        return data  # an mbox "From " line alone, no header after it: nothing to repair
    repaired = []
    for index in range(first, len(lines)):
        line = lines[index]
        if index > first and not is_header[index] and line[:1] not in (b" ", b"\t"):
            if index > last_header:
                break  # the body starts here without a blank line: leave it so
            line = b" " + line
        repaired.append(line)
    else:
        index = len(lines)
    rest = data[spans[index][0] :] if index < len(lines) else data[position:]
    return b"".join(repaired) + rest


def _parse_bytes(raw: bytes) -> tuple[Message, list[str]]:
    """Structural parse; absurdly deep nesting falls back to a headers-only parse."""
    # Blank lines or a UTF-8 BOM before the first header would hide every header.
    data = _repair_header_block(raw.removeprefix(b"\xef\xbb\xbf").lstrip(b"\r\n"))
    try:
        return _PARSER.parsebytes(data), []
    except RecursionError:
        return _PARSER.parsebytes(data, headersonly=True), ["NestingTooDeep"]


def parse_mail(raw: bytes) -> ParsedMail:
    """Parse raw RFC 5322 bytes; raises MailParseError only when there are no headers."""
    data, cut = bound_structure(bytes(raw))
    message, defects = _parse_bytes(data)
    if not message.keys():
        raise MailParseError("no mail headers found")
    token = _HEADER_CODEC.set(_guess_header_codec(message))
    try:
        parsed = _parsed(message, defects)
    finally:
        _HEADER_CODEC.reset(token)
    parsed = with_sensitive(parsed)
    parsed = replace(parsed, language=detect_language(parsed.subject, parsed.body))
    if cut is None:
        return parsed
    # What came after the bounds was never parsed: the body says it is cut.
    return replace(parsed, body_truncated=True, defects=(*parsed.defects, cut))


def warm_up() -> None:
    """Load what the first mail would otherwise wait for (the language models); the parse
    worker calls it before it says it is ready."""
    warm_up_language()


def with_sensitive(parsed: ParsedMail) -> ParsedMail:
    """The parsed mail with the sensitive values of its subject and body found and masked."""
    kinds: set[str] = set()
    masked = [_masked(parsed.subject, kinds), _masked(parsed.body, kinds)]
    if not kinds:
        return parsed
    return replace(
        parsed, sensitive=tuple(sorted(kinds)), masked_subject=masked[0], masked_body=masked[1]
    )


def _masked(text: str, kinds: set[str]) -> str | None:
    """text with its sensitive values masked (their kinds added to `kinds`); None when it holds
    none."""
    findings = find_sensitive(text) if text else []
    if not findings:
        return None
    kinds.update(f.kind.value for f in findings)
    return mask_findings(text, findings)


def _parsed(message: Message, defects: list[str]) -> ParsedMail:
    """The ParsedMail of a structurally parsed message."""
    walk = _walk(message) if not defects else _Walk()
    body = _select_body(message, walk) if not defects else _Body()
    text, cut = _cap_body(body.text)
    # Text parts used as the body are not also attachments.
    used = {id(part) for part in body.parts}
    attached = [part for part in walk.attachments if id(part) not in used]
    attachments = [_attachment(p, i) for i, p in enumerate(attached, 1)] + body.files
    sender = _first_address(message, "from")
    reply_to = _first_address(message, "reply-to")
    subjects = _raw_values(message, "subject")
    ids = _raw_values(message, "message-id")
    return ParsedMail(
        message_id=normalize_message_id(ids[0]) if ids else None,
        in_reply_to=_id_list(message, "in-reply-to"),
        references=_id_list(message, "references"),
        subject=_header_text(subjects[0]) if subjects else "",
        from_addr=sender[1] if sender else "",
        from_name=sender[0] if sender else "",
        reply_to=reply_to[1] if reply_to else None,
        to=_addresses(message, "to"),
        cc=_addresses(message, "cc"),
        return_path=_return_path(message),
        date=_parse_date(message),
        headers=_decoded_headers(message),
        body=text,
        body_source=body.source,
        body_truncated=cut or body.truncated,
        attachments=tuple(attachments),
        is_report=bool(walk.reports),
        bounce=_bounce(walk) or _plain_bounce(sender[1] if sender else "", walk, text),
        defects=tuple(dict.fromkeys(defects + walk.defects)),
    )
