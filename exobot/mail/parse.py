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
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy
from email.message import Message
from email.parser import BytesParser
from email.utils import collapse_rfc2231_value, getaddresses, parsedate_to_datetime
from types import MappingProxyType

import html2text

# Deeper MIME trees than this are not walked further; real mail stays far below it.
MAX_DEPTH = 256
# Bound on the number of MIME parts visited, so a "part bomb" cannot stall the worker.
MAX_PARTS = 10_000
# How many levels of attached messages we look into when the outer mail has no text.
MAX_FORWARD_HOPS = 3
# Longest attachment file name we hand on (file systems commonly cap names at 255 bytes).
MAX_FILENAME = 200

_PARSER = BytesParser(policy=policy.compat32)
_LINEBREAKS = re.compile(r"\r?\n|\r")
_WHITESPACE = re.compile(r"\s+")
# C0 controls, DEL and the Unicode line/paragraph separators all become plain spaces.
_CONTROLS = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]")
_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([qQbB])\?([^?\s]*)\?=")
_PLACEHOLDER = re.compile("\ue000(\\d*)\ue001")
_BRACKETED_ID = re.compile(r"<([^<>]*)>")
_ADDR_SPEC = re.compile(r"^[^\s]+@[^@\s]+$")
_DSN_STATUS = re.compile(r"\b[245]\.\d{1,3}\.\d{1,3}\b")
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?([A-Za-z0-9._:-]+)""", re.I)
_BLANK_RUNS = re.compile(r"\n{3,}")
_TRAILING_SPACE = re.compile(r"[ \t]+\n")
_TAGS = re.compile(r"<[^>]*>")
_SCRIPTS = re.compile(r"<(script|style)\b.*?</\1\s*>", re.I | re.S)

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
    """What a delivery status notification (RFC 3464) tells about the mail that bounced."""

    original_message_id: str | None
    recipients: tuple[str, ...]
    status: str | None
    action: str | None
    diagnostic: str | None


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
    attachments: tuple[Attachment, ...]
    is_report: bool
    bounce: BounceInfo | None
    defects: tuple[str, ...]


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


def _raw_to_bytes(value: str) -> bytes:
    """Recover the original bytes of a header the parser decoded as ASCII+surrogateescape."""
    return str(value).encode("utf-8", errors="surrogateescape")


def _single_line(text: str) -> str:
    """Replace control characters and line breaks by spaces and collapse whitespace."""
    return _WHITESPACE.sub(" ", _CONTROLS.sub(" ", text)).strip()


def _decode_encoded_word(encoding: str, payload: str) -> bytes | None:
    """Decode the payload of one RFC 2047 encoded word; None when it is not decodable."""
    raw = payload.encode("utf-8", errors="surrogateescape")
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
                out.append(between)
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
    out.append(text[position:])
    return "".join(out)


def _unfolded(raw: str) -> str:
    """Raw header value -> text with 8-bit bytes decoded and folding removed."""
    return _LINEBREAKS.sub("", _decode_bytes(_raw_to_bytes(raw), "utf-8"))


def _header_text(raw: str) -> str:
    """Fully decode a raw header value into a single line of text."""
    return _single_line(_decode_rfc2047(_unfolded(raw)))


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

    texts = [_ENCODED_WORD.sub(hide, _PLACEHOLDER.sub("", _unfolded(v))) for v in raw_values]
    try:
        pairs = getaddresses(texts)
    except (ValueError, IndexError, TypeError):  # the old address parser is mostly lenient
        return []

    def reveal(text: str) -> str:
        return _PLACEHOLDER.sub(lambda m: words[int(m.group(1))], text)

    result = []
    for name, addr in pairs:
        addr = _single_line(reveal(addr)).lower()
        if _ADDR_SPEC.match(addr):
            result.append((_single_line(_decode_rfc2047(reveal(name))), addr))
    return result


def _addresses(message: Message, name: str) -> tuple[str, ...]:
    """Unique lowercased addresses of all headers called ``name``, in order."""
    pairs = _address_pairs(_raw_values(message, name))
    return tuple(dict.fromkeys(addr for _, addr in pairs))


def _first_address(message: Message, name: str) -> tuple[str, str] | None:
    """(display name, addr) of the first usable address in the first ``name`` header."""
    values = _raw_values(message, name)
    pairs = _address_pairs(values[:1])
    return pairs[0] if pairs else None


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


# ---------------------------------------------------------------------------------- body


def _payload_bytes(part: Message) -> bytes:
    """Transfer-decoded payload bytes of a leaf part (never raises)."""
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


def _html_to_text(html: str) -> str:
    """Readable plain text from HTML: no scripts or styles, links as end references."""
    converter = html2text.HTML2Text()
    converter.body_width = 0
    converter.ignore_images = True
    converter.unicode_snob = True
    converter.inline_links = False
    try:
        text = converter.handle(html)
    except Exception:  # html2text is third-party code fed hostile markup: fall back
        text = _TAGS.sub(" ", _SCRIPTS.sub(" ", html))
    text = _TRAILING_SPACE.sub("\n", _clean_body(text))
    return _BLANK_RUNS.sub("\n\n", text).strip("\n")


def _html_text(part: Message) -> str:
    """Decoded and converted text of a text/html part."""
    data = _payload_bytes(part)
    return _html_to_text(_decode_bytes(data, _html_charset(part, data)))


def _embedded(part: Message) -> Message | None:
    """The message inside a message/* part, if the stdlib parsed one."""
    payload = part.get_payload()
    if isinstance(payload, list) and payload and isinstance(payload[0], Message):
        return payload[0]
    return None


def _first_text(walk: _Walk) -> tuple[str, str, Message | None]:
    """(text, source, part) of the best non-blank text part of this walk, in order of
    preference: unnamed plain, unnamed html, inline named text, raw broken multipart."""
    tiers = [
        (walk.plain, "plain"),
        (walk.html, "html"),
        (walk.named_inline, "named"),
        (walk.broken, "plain"),
    ]
    for parts, source in tiers:
        for part in parts:
            is_html = _content_type(part) == "text/html"
            text = _html_text(part) if is_html else _plain_text(part)
            if text.strip():
                if source == "named":
                    source = "html" if is_html else "plain"
                return text, source, part
    return "", "none", None


def _select_body(walk: _Walk, hops: int = 0) -> tuple[str, str, Message | None]:
    """(body, source, part): the best text of the walk; for mail that only forwards an
    attached message, that message's body (part is then None: nothing to un-attach)."""
    text, source, part = _first_text(walk)
    if source != "none" or hops >= MAX_FORWARD_HOPS:
        return text, source, part
    for attached in walk.attachments:
        inner = _embedded(attached) if _content_type(attached) in _ENCAPSULATED else None
        if inner is not None:
            text, source, _ = _select_body(_walk(inner), hops + 1)
            if source != "none":
                return text, source, None
    return "", "none", None


# --------------------------------------------------------------------------- attachments


def _sanitize_filename(name: str) -> str:
    """Strip paths, control/format characters and leading dots from a file name."""
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    # Cc are controls; Cf includes bidi overrides used to disguise "exe" as "pdf".
    name = "".join(ch for ch in name if unicodedata.category(ch) not in ("Cc", "Cf", "Cs"))
    name = _single_line(name).lstrip(". ")
    if len(name) > MAX_FILENAME:
        stem, dot, ext = name.rpartition(".")
        keep = ext if dot and len(ext) <= 16 else ""
        name = name[: MAX_FILENAME - len(keep) - 1] + "." + keep if keep else name[:MAX_FILENAME]
    return name


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
    filename = _sanitize_filename(_raw_filename(part))
    if _is_message_like(part, ctype):
        data = _message_bytes(part)
        inner = _embedded(part)
        if not filename and ctype in _ENCAPSULATED and inner is not None:
            subjects = _raw_values(inner, "subject")
            subject = _sanitize_filename(_header_text(subjects[0])) if subjects else ""
            filename = f"{subject}.eml" if subject else f"attachment-{index}.eml"
    else:
        data = _payload_bytes(part)
    return Attachment(filename=filename or f"attachment-{index}", content_type=ctype, data=data)


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


# ------------------------------------------------------------------------------- parsing


def _parse_bytes(raw: bytes) -> tuple[Message, list[str]]:
    """Structural parse; absurdly deep nesting falls back to a headers-only parse."""
    # Blank lines or a UTF-8 BOM before the first header would hide every header.
    data = raw.removeprefix(b"\xef\xbb\xbf").lstrip(b"\r\n")
    try:
        return _PARSER.parsebytes(data), []
    except RecursionError:
        return _PARSER.parsebytes(data, headersonly=True), ["NestingTooDeep"]


def parse_mail(raw: bytes) -> ParsedMail:
    """Parse raw RFC 5322 bytes; raises MailParseError only when there are no headers."""
    message, defects = _parse_bytes(bytes(raw))
    if not message.keys():
        raise MailParseError("no mail headers found")
    walk = _walk(message) if not defects else _Walk()
    body, source, body_part = _select_body(walk)
    # An inline named part chosen as the body is not also an attachment.
    attached = [part for part in walk.attachments if part is not body_part]
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
        body=body,
        body_source=source,
        attachments=tuple(_attachment(p, i) for i, p in enumerate(attached, 1)),
        is_report=bool(walk.reports),
        bounce=_bounce(walk),
        defects=tuple(dict.fromkeys(defects + walk.defects)),
    )
