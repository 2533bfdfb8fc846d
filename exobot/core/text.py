"""The one way to show mail text: every piece of mail text reaching Matrix, the web and the
logs goes through `mail_text` (trimming quotes and signatures now, masking sensitive data
later), so a protection added here covers every place."""

from __future__ import annotations

import html
import re
import unicodedata

ELLIPSIS = "…"

# Characters that show nothing but change what the text around them looks like: bidi marks,
# embeddings, overrides and isolates ("\u202egnp.exe" shows as "exe.png"), zero-width spaces
# and joiners of words, the soft hyphen, the BOM, interlinear annotations. A name, a title or a
# reference can hide behind them ("sup\u200bort#3" is no reference). The zero-width joiner and
# non-joiner stay: emoji sequences and several scripts need them.
INVISIBLE = (
    "\u00ad\u061c\u180e\u200b\u200e\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff\ufff9-\ufffb"
)
# What str.splitlines takes for a line break besides "\n" and "\r": some mail software and
# chat clients break lines there too, so the text shows them as "\n".
OTHER_LINE_BREAKS = "\v\f\x1c\x1d\x1e\x85\u2028\u2029"
_LINE_BREAK = re.compile("\r\n?|[" + OTHER_LINE_BREAKS + "]")
# Control characters (C0 other than newline and tab, DEL, C1) and INVISIBLE: dropped.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f" + INVISIBLE + "]")
_INVISIBLE = re.compile("[" + INVISIBLE + "]")


def visible_text(text: str) -> str:
    """text without control characters (other than newline and tab) and without INVISIBLE
    ones, every line break written "\n"."""
    return _CONTROL.sub("", _LINE_BREAK.sub("\n", text))


def without_invisible(text: str) -> str:
    """text without its INVISIBLE characters (controls and line breaks kept)."""
    return _INVISIBLE.sub("", text)


# A line that opens the quoted copy of the mail being answered; everything from it is dropped.
_REPLY_HEADERS = [
    re.compile(r"^\s*On\b.{0,300}\bwrote:\s*$", re.IGNORECASE),
    re.compile(r"^\s*El\b.{0,300}\bva escriure\s*:\s*$", re.IGNORECASE),
    re.compile(r"^\s*El\b.{0,300}\bescribi[óo]\s*:\s*$", re.IGNORECASE),
    re.compile(r"^\s*Le\b.{0,300}\ba écrit\s*:\s*$", re.IGNORECASE),
    re.compile(
        r"^\s*-{2,}\s*(?:Original Message|Mensaje original|Missatge original|"
        r"Forwarded message|Mensaje reenviado|Missatge reenviat)\s*-{2,}\s*$",
        re.IGNORECASE,
    ),
]
# Outlook's block: "From: …" then, within a few lines, "Sent: …" (or its translations).
_OUTLOOK_FROM = re.compile(r"^\s*\*?(?:From|De)\s*:\*?\s*\S", re.IGNORECASE)
_OUTLOOK_SENT = re.compile(
    r"^\s*\*?(?:Sent|Date|Enviado(?: el)?|Enviat(?: el)?|Fecha|Data)\s*:\*?\s*\S", re.IGNORECASE
)
_UNDERSCORES = re.compile(r"^\s*_{10,}\s*$")
# Gmail wraps a long attribution: "On Mon, 1 Jan 2024 at 10:00, Name <" / "a@b.org> wrote:".
_WRAPPED_START = re.compile(r"^\s*(?:On|El)\s\S", re.IGNORECASE)


def _reply_header_at(lines: list[str], index: int) -> int | None:
    """If a reply header starts at `index`, where the quoted part starts; else None."""
    line = lines[index]
    if any(pattern.match(line) for pattern in _REPLY_HEADERS):
        return index
    if _WRAPPED_START.match(line) and index + 1 < len(lines):
        joined = f"{line} {lines[index + 1].strip()}"
        if any(pattern.match(joined) for pattern in _REPLY_HEADERS[:4]):
            return index
    if _OUTLOOK_FROM.match(line) and any(
        _OUTLOOK_SENT.match(following) for following in lines[index + 1 : index + 4]
    ):
        if index > 0 and _UNDERSCORES.match(lines[index - 1]):
            return index - 1
        return index
    return None


def _cut_reply(lines: list[str]) -> list[str]:
    """Drop everything from the first reply header on, unless nothing would be left."""
    for index in range(len(lines)):
        start = _reply_header_at(lines, index)
        if start is not None:
            kept = lines[:start]
            return kept if any(line.strip() for line in kept) else lines
    return lines


def _cut_trailing_quote(lines: list[str]) -> list[str]:
    """Drop the `>` quoted lines (and blank lines) at the end of the mail."""
    end = len(lines)
    while end > 0 and (not lines[end - 1].strip() or lines[end - 1].lstrip().startswith(">")):
        end -= 1
    kept = lines[:end]
    return kept if any(line.strip() for line in kept) else lines


def _cut_signature(lines: list[str]) -> list[str]:
    """Drop the signature: everything after a line that is exactly `-- `."""
    for index, line in enumerate(lines):
        if line == "-- ":
            kept = lines[:index]
            return kept if any(item.strip() for item in kept) else lines
    return lines


def _collapse_blank_lines(lines: list[str]) -> list[str]:
    """Strip leading and trailing blank lines and keep at most one blank line in a row."""
    result: list[str] = []
    for line in lines:
        if not line and (not result or not result[-1]):
            continue
        result.append(line)
    while result and not result[-1]:
        result.pop()
    return result


def _truncate(text: str, max_chars: int) -> str:
    """Cut `text` to at most `max_chars` characters, ending in `…`, at a word if one is near."""
    if max_chars <= 0:
        return ""
    if len(text) <= max_chars:
        return text
    cut = text[: max_chars - 1]
    space = max(cut.rfind(" "), cut.rfind("\n"))
    if space >= max_chars * 3 // 4:
        cut = cut[:space]
    return cut.rstrip() + ELLIPSIS


def mail_text(
    body: str | None, *, max_lines: int | None = None, max_chars: int | None = None
) -> str:
    """Mail text as shown anywhere: quotes and signature trimmed, blank runs collapsed, cut."""
    if not body:
        return ""
    text = visible_text(body)
    lines = text.split("\n")
    lines = _cut_signature(lines)  # before stripping: the marker is exactly "-- "
    lines = [line.rstrip() for line in lines]
    lines = _cut_reply(lines)
    lines = _cut_trailing_quote(lines)
    lines = _collapse_blank_lines(lines)
    truncated = False
    if max_lines is not None and len(lines) > max_lines:
        lines = lines[: max(max_lines, 0)]
        while lines and not lines[-1]:
            lines.pop()
        truncated = True
    result = "\n".join(lines)
    if max_chars is not None and len(result) > max_chars:
        return _truncate(result, max_chars)
    if truncated:
        if max_chars is not None and len(result) + 1 > max_chars:
            return _truncate(result + " " + ELLIPSIS, max_chars)
        return result + ELLIPSIS
    return result


def one_line(text: str | None, max_chars: int) -> str:
    """`text` on one line: whitespace collapsed, cut to `max_chars` with `…`."""
    if not text:
        return ""
    return _truncate(" ".join(visible_text(text).split()), max_chars)


# One reply or forward prefix a mail client puts before a subject, in the languages members'
# clients speak: Re, Fw, Fwd; Outlook's Spanish RV and Portuguese Enc (forwarded); German AW
# and WG; French TR; Italian R and Rif; Nordic SV and VS. Any case, with an optional
# count ("Re[2]:", "Re(2):"), the colon ASCII or full-width. Every quantifier is bounded or
# followed by a fixed character, and it is only ever matched at one position: linear time.
_REPLY_PREFIX = re.compile(
    r"(?:re|fwd?|rv|enc|aw|wg|tr|r|rif|sv|vs)"
    r"[ \t]{0,8}(?:[\[(][0-9]{1,6}[\])])?[ \t]{0,8}[:\uff1a]\s*",
    re.IGNORECASE,
)


def without_reply_prefixes(subject: str) -> str:
    """`subject` without the reply and forward prefixes clients piled up at its start
    ("RE: RE: FW: Alta de servei" → "Alta de servei"); what follows them is kept as it is.
    Linear in the length of the subject, however many prefixes it has."""
    position = len(subject) - len(subject.lstrip())
    while (found := _REPLY_PREFIX.match(subject, position)) is not None:
        position = found.end()
    return subject[position:]


# Longest attachment file name we hand on (file systems commonly cap names at 255 bytes).
MAX_FILENAME = 200


def safe_filename(name: str) -> str:
    """An attachment's file name as we store and show it, from a mail or from Request
    Tracker: no path ("..\\..\\x/pay.html" is "pay.html"), no control or format character
    (bidi overrides disguise "exe" as "pdf"), on one line, no leading dots, at most
    MAX_FILENAME characters (its extension kept). "" when nothing is left."""
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch) not in ("Cc", "Cf", "Cs"))
    name = " ".join(name.split()).lstrip(". ")
    if len(name) > MAX_FILENAME:
        stem, dot, ext = name.rpartition(".")
        keep = ext if dot and len(ext) <= 16 else ""
        name = name[: MAX_FILENAME - len(keep) - 1] + "." + keep if keep else name[:MAX_FILENAME]
    return name


_MB = 1024 * 1024


def format_size(size: int, language: str = "en") -> str:
    """A size for people: "25 MB", "30.5 MB" ("30,5 MB" in ca and es), "1 GB", "64 KB"
    (binary units)."""
    if size % (1024 * _MB) == 0:
        return f"{size // (1024 * _MB)} GB"
    if size % _MB == 0:
        return f"{size // _MB} MB"
    if size < _MB:
        return f"{size // 1024} KB"
    text = f"{size / _MB:.1f} MB"
    return text.replace(".", ",") if language in ("ca", "es") else text


#: A display name longer than this is not used to greet (a company's, a slogan, a spammer's).
MAX_GREETING_NAME = 40
# Characters no person's name has, but addresses, links and tricks do.
_NOT_IN_NAMES = re.compile(r"[@<>/\\:;=|{}\[\]#$%&*+~^\"`]|\d")


def greeting_name(display_name: str | None) -> str | None:
    """The name a member gave in their mail's From, fit to greet them with ("Hola Anna
    Puig,"), or None: no name, one that looks like an address, a link, a number or a word
    joined by dots (a mailbox name), or one longer than MAX_GREETING_NAME. A name in capitals
    is written as a name. Plain text: it goes into a mail's body, never a header."""
    if not display_name:
        return None
    name = " ".join(display_name.split()).strip("'\"\u2018\u2019\u201c\u201d ")
    if not name or len(name) > MAX_GREETING_NAME or _NOT_IN_NAMES.search(name):
        return None
    if not any(c.isalpha() for c in name):
        return None
    if " " not in name and ("." in name or "_" in name):
        return None  # "marta.puig", "info_exo": a mailbox, not a name
    if not all(c.isprintable() for c in name):
        return None
    family, comma, given = name.partition(",")
    if comma:
        if "," in given or not family.strip() or not given.strip():
            return None
        name = f"{given.strip()} {family.strip()}"  # "Puig Garcia, Anna": a directory's order
    if name.isupper():
        name = name_case(name)
    return name


# Words of a name written in lower case unless they begin it: Catalan, Spanish, Portuguese,
# Italian, Dutch and German particles ("Núria Coll i Gil·la", "José de la Peña y García",
# "Ludwig van Beethoven"). Single letters other than these are initials and stay capitals.
NAME_PARTICLES = frozenset(
    {"i", "y", "de", "del", "dels", "la", "les", "las", "los", "el", "els", "da", "das", "do",
     "dos", "di", "du", "van", "von", "der", "den", "ter", "ten", "zu"}
)  # fmt: skip
_APOSTROPHES = "'\u2019"
# After these a name starts a new capital: "Jean-Pierre", "O'Brien". Not after "·": the
# Catalan "l·l" is inside a word ("Gil·la").
_NAME_BREAKS = "-" + _APOSTROPHES


def _capitalised(word: str) -> str:
    """`word` in lower case with a capital at its start and after each of _NAME_BREAKS."""
    out = []
    start = True
    for ch in word:
        upper = ch.upper()
        # "ß".upper() is "SS": a letter whose capital is longer stays as it is.
        out.append((upper if len(upper) == 1 else ch) if start else ch.lower())
        start = ch in _NAME_BREAKS
    return "".join(out)


def name_case(name: str) -> str:
    """A name written in capitals, written as a name: each word with a capital, also after a
    hyphen or an apostrophe, the particles in lower case unless they begin the name
    ("NÚRIA COLL I GIL·LA" → "Núria Coll i Gil·la", "MARIA DE L'ÀNGEL" → "Maria de l'Àngel").
    Not str.title(), which capitalises after any non-letter ("Gil·La") and knows no
    particles."""
    words = []
    for index, word in enumerate(name.split(" ")):
        cased = _capitalised(word)
        lower = word.lower()
        if index > 0 and lower in NAME_PARTICLES:
            cased = lower
        elif index > 0 and len(word) > 2 and word[1] in _APOSTROPHES and lower[0] in "dl":
            cased = lower[:2] + cased[2:]  # elided particles: "d'Ors", "l'Àngel"
        words.append(cased)
    return " ".join(words)


# A numeric character reference as html.unescape reads it (decimal digits after "&#", hex
# digits after "&#x"), leading zeros apart. html.unescape converts the digits with int(),
# which raises past 4,300 decimal digits (zeros included), so references are rewritten
# before it sees them: zeros dropped, and more digits than any code point has (0x10FFFF is
# 6 hex, 1114111 is 7 decimal digits) made U+FFFD, which is what html.unescape gives for
# any reference beyond 0x10FFFF. Possessive and starting at "&#": linear time.
_NUMERIC_CHARREF = re.compile(r"&#(?:([xX])(0*+)([0-9a-fA-F]*+)|(0*+)([0-9]*+))(;?)")
_MAX_HEX_DIGITS = 6
_MAX_DECIMAL_DIGITS = 7


def _bounded_charref(match: re.Match[str]) -> str:
    """A numeric character reference without leading zeros, or U+FFFD when it has more
    significant digits than any code point."""
    hex_mark, hex_zeros, hex_digits, zeros, digits, semicolon = match.groups()
    limit = _MAX_DECIMAL_DIGITS
    if hex_mark:
        zeros, digits, limit = hex_zeros, hex_digits, _MAX_HEX_DIGITS
    if len(digits) > limit:
        return "\ufffd"
    if not zeros:
        return match.group(0)
    # Only zeros: still a reference (to U+0000, which html.unescape makes U+FFFD).
    return f"&#{hex_mark or ''}{digits or '0'}{semicolon}"


def unescape_html(text: str) -> str:
    """Decode the character references of untrusted text (a mail's HTML, a chat message's
    formatted body) as html.unescape does, but never raising and in linear time."""
    if "&" not in text:
        return text
    if "&#" in text:
        text = _NUMERIC_CHARREF.sub(_bounded_charref, text)
    return html.unescape(text)
