"""Finding and masking sensitive values in free text: IBANs, payment cards, Spanish identity
numbers and credentials written after a password word.

Pure and bounded: every pattern is a bounded regular expression without nested ambiguous
quantifiers, candidates are checked with python-stdnum's validators (a look-alike failing its
checksum is left alone), and at most the first SCAN_LIMIT characters are scanned, so the time
is linear in min(len(text), SCAN_LIMIT).

The patterns run on a normalized copy of the text of the same length (see _normalized): Unicode
spaces (no-break, narrow, thin, ideographic, tab…) read as " ", other line breaks as "\n", any
decimal digit (full-width "９", Arabic-Indic…) as its ASCII digit and full-width ASCII forms
("ＥＳ", "：") as ASCII, so a span found in the copy is the same span of the text, whose
original characters masking replaces. Characters nobody sees (zero-width spaces and joiners,
soft hyphens, direction marks, combining marks) are taken out of the copy, so that they cannot
hide a value between its digits; the spans found are moved back to the text's (see _Visible).
"""

from __future__ import annotations

import bisect
import functools
import re
import unicodedata
from collections.abc import Collection
from dataclasses import dataclass
from enum import StrEnum

from stdnum import iban as stdnum_iban
from stdnum import luhn, numdb
from stdnum.es import nif as stdnum_nif

from exobot.core.text import OTHER_LINE_BREAKS

# Mail bodies beyond this are not scanned (a bound on time; callers cap what they keep anyway).
SCAN_LIMIT = 1 << 20


class SensitiveKind(StrEnum):
    """What kind of value a finding is."""

    IBAN = "iban"
    CARD = "card"
    IDENTITY = "identity"
    CREDENTIAL = "credential"


ALL_KINDS: frozenset[SensitiveKind] = frozenset(SensitiveKind)


@dataclass(frozen=True)
class Finding:
    """A sensitive value: its kind and its span [start, end) in the scanned text."""

    kind: SensitiveKind
    start: int
    end: int


# Every decimal digit is below this (the last, U+1FBF9, ends the segmented digits; the planes
# above hold ideographs and tags): scanning the rest of the 1.1 million code points in every
# parse worker would cost some 50 ms for nothing. A test checks it for the running Python.
DECIMALS_END = 0x20000


# Characters nobody sees, or sees only on the one before them: format characters (U+200B
# zero-width space, U+00AD soft hyphen, U+2060, U+FEFF, direction marks) and nonspacing or
# enclosing marks. They are below DECIMALS_END but for the tags and variation selectors of
# plane 14. A test checks it for the running Python.
INVISIBLE_PLANES = ((0, DECIMALS_END), (0xE0000, 0xE1000))
_INVISIBLE_CATEGORIES = frozenset({"Cf", "Mn", "Me"})
_HIDDEN = "\x00"  # what _normalized reads each invisible character as (NUL too)


@functools.cache
def _normalizing_table() -> dict[int, int]:
    """The str.translate table of _normalized: one character for one character. Built on first
    use (a pass over the first two planes and plane 14, some 30 ms), not at import."""
    table = {ord(c): ord("\n") for c in OTHER_LINE_BREAKS}  # read as "\n"
    for code in range(0x3001):  # every str.isspace character is below U+3001
        char = chr(code)
        if char.isspace() and char not in "\n\r " and code not in table:
            table[code] = ord(" ")
    for code in range(0xFF01, 0xFF5F):  # full-width ASCII forms: "Ｅ", "：", "＝"
        table[code] = code - 0xFEE0
    for low, high in INVISIBLE_PLANES:
        for code in range(max(low, 128), high):
            char = chr(code)
            if char.isdecimal():
                table[code] = ord("0") + unicodedata.decimal(char)
            elif unicodedata.category(char) in _INVISIBLE_CATEGORIES:
                table[code] = ord(_HIDDEN)  # taken out of the copy the patterns read: _Visible
    return table


@dataclass(frozen=True)
class _Visible:
    """A normalized text without its invisible characters, and where they were: `hidden` holds,
    for each one taken out, the position in `text` of the character that followed it."""

    text: str
    hidden: tuple[int, ...]

    @classmethod
    def of(cls, text: str) -> _Visible:
        """The normalized text without its invisible characters (read as NUL by _normalized:
        the usual text, without any, costs one search for a character)."""
        if _HIDDEN not in text:
            return cls(text, ())
        hidden = tuple(m.start() - k for k, m in enumerate(re.finditer(_HIDDEN, text)))
        return cls(text.replace(_HIDDEN, ""), hidden)

    def restored(self, finding: Finding) -> Finding:
        """finding's span in the text the invisible characters were taken out of (those between
        its characters are inside it, those around it are not)."""
        if not self.hidden:
            return finding
        start = finding.start + bisect.bisect_right(self.hidden, finding.start)
        last = finding.end - 1
        return Finding(finding.kind, start, last + bisect.bisect_right(self.hidden, last) + 1)


def _normalized(text: str) -> str:
    """text with the same length, read as the patterns expect it: each Unicode space that is no
    line break as " ", each other line break as "\n" ("\r" and "\n" kept), each decimal digit
    as its ASCII digit, each full-width ASCII form as its ASCII character, each invisible
    character as NUL."""
    return text.translate(_normalizing_table())


# Between two groups of an IBAN or a card (in the normalized copy): one to three spaces, dots or
# dashes ("ES91  2100", "4111.1111", "12 - 34"), or one line break with up to two spaces before
# it and up to eight spaces and quoting marks after it (a number wrapped, in a quoted reply too:
# "0418\n> 4502"). It matches no letter or digit and every part is bounded.
_SEPARATOR = r"(?:[ .-]{1,3}|[ ]{0,2}\r?\n[ >]{0,8})"

# A country code, two check digits, then 11–30 letters/digits with at most one separator
# between any two of them. The optional separator cannot match a letter or digit, so each
# repetition has one way to match: linear.
_IBAN = re.compile(
    r"(?<![A-Za-z0-9])[A-Za-z]{2}[0-9]{2}(?:" + _SEPARATOR + r"?[A-Za-z0-9]){11,30}(?![A-Za-z0-9])"
)

_IBAN_DB = numdb.get("iban")

# Runs of digit groups with a separator between two; cards are looked for inside a run.
_DIGIT_RUN = re.compile(r"(?<![A-Za-z0-9])[0-9]+(?:" + _SEPARATOR + r"[0-9]+)*(?![A-Za-z0-9])")

_DIGITS = re.compile(r"[0-9]+")
_PLAIN_DIGIT_RUN = re.compile(r"[0-9]+(?:[ -][0-9]+)*")

# DNI (8 digits + letter, dots allowed as 12.345.678), NIE (X/Y/Z + 7 digits + letter) and the
# K/L/M NIFs of persons; the letter is the checksum stdnum verifies.
_IDENTITY = re.compile(
    r"(?<![A-Za-z0-9])(?:[XYZKLMxyzklm][ -]?)?[0-9]{1,2}\.?[0-9]{3}\.?[0-9]{3}[ -]?[A-Za-z](?![A-Za-z0-9])"
)

# Words after which the rest of the line is a secret (ca/es/en), then up to three more words
# ("contrasenya PPP", "clau wifi", "key del router"), then ':' or '=' and the value: the rest of
# the line, or, when nothing follows on the line, the first word of the next line that is not
# blank (up to two blank lines skipped; quoting marks "> " skipped). The normalized copy is
# scanned, where the only spaces left are " ", "\r" and "\n".
_CREDENTIAL_WORDS = (
    "passwords?",
    "passwd",
    "passphrase",
    "pass",
    "pwd",
    "contrasenyes",
    "contrasenya",
    "contrassenya",
    "contraseñas?",
    "contrasenas?",
    "claus?",
    "claves?",
    "keys?",
    "pin",
    "token",
    "secret",
    "secreto",
)
_CREDENTIAL = re.compile(
    r"(?<![^\W_])(?:" + "|".join(_CREDENTIAL_WORDS) + r")(?![^\W_])"
    r"(?:[^\S\n]{1,10}[^\W_][\w./-]{0,30}){0,3}"
    r"[^\S\n]{0,10}[:=][^\S\n]{0,10}"
    r"(?:(?P<value>[^\s][^\n]*)|\n(?:[ \r>]{0,10}\n){0,2}[ >]{0,10}(?P<next>[^\s>]\S*))",
    re.IGNORECASE,
)

# Card networks by prefix, with the lengths they issue. Maestro and UnionPay span many lengths.
_CARD_NETWORKS: tuple[tuple[tuple[str, ...], frozenset[int]], ...] = (
    (("4",), frozenset({13, 16, 19})),  # Visa
    (tuple(str(p) for p in range(51, 56)), frozenset({16})),  # Mastercard
    (tuple(str(p) for p in range(2221, 2721)), frozenset({16})),  # Mastercard 2-series
    (("34", "37"), frozenset({15})),  # American Express
    (("6011", "65", "644", "645", "646", "647", "648", "649"), frozenset(range(16, 20))),  # Discover
    (("5018", "5020", "5038", "5893", "6304", "6759", "6761", "6762", "6763"), frozenset(range(13, 20))),  # Maestro
    (tuple(str(p) for p in range(3528, 3590)), frozenset(range(16, 20))),  # JCB
    (("300", "301", "302", "303", "304", "305", "36", "38", "39"), frozenset(range(14, 20))),  # Diners
    (("62",), frozenset(range(16, 20))),  # UnionPay
)


@functools.lru_cache(maxsize=4096)
def _card_lengths(prefix: str) -> frozenset[int]:
    """The lengths a card starting with these (4) digits may have; empty: no known network."""
    for prefixes, lengths in _CARD_NETWORKS:
        if prefix.startswith(prefixes):
            return lengths
    return frozenset()


def _find_ibans(text: str) -> list[Finding]:
    """IBANs (any country stdnum knows), written compact or in groups."""
    return [f for f, valid in _iban_shapes(text) if valid]


def _iban_shapes(text: str) -> list[tuple[Finding, bool]]:
    """Everything shaped exactly like an IBAN of a known country (its length, ending before a
    separator), each with whether it is a valid one. An invalid one is a look-alike failing its
    checksum: the digits inside it are no card or identity number either."""
    found: list[tuple[Finding, bool]] = []
    pos = 0
    while (match := _IBAN.search(text, pos)) is not None:
        hit = _longest_iban(text, match.start(), match.end())
        if hit is None:
            # Nothing IBAN-shaped starts here; go on after this position.
            pos = match.start() + 1
            continue
        stop, valid = hit
        found.append((Finding(SensitiveKind.IBAN, match.start(), stop), valid))
        pos = stop
    return found


@functools.lru_cache(maxsize=256)
def _iban_length(country: str) -> int | None:
    """The length of a country's IBANs from stdnum's registry; None for an unknown country."""
    info = _IBAN_DB.info(country)
    bban = info[0][1].get("bban") if info else None
    if not bban:
        return None
    return 4 + sum(int(n) for n in re.findall(r"[0-9]+", bban))


@functools.lru_cache(maxsize=1024)
def _valid_iban(compact: str) -> bool:
    """stdnum's IBAN check (structure and national check digits), after a cheap mod-97 test
    that rejects most look-alikes first."""
    rearranged = compact[4:] + compact[:4]
    if int("".join(str(int(c, 36)) for c in rearranged)) % 97 != 1:
        return False
    return stdnum_iban.is_valid(compact)


def _longest_iban(text: str, start: int, end: int) -> tuple[int, bool] | None:
    """End of the IBAN-shaped text starting at start within [start, end), exactly as long as
    its country's IBANs and ending before a separator or at end, and whether it is a valid
    IBAN; None when nothing there has the shape."""
    length = _iban_length(text[start : start + 2].upper())
    if length is None:
        return None
    count = 0
    for i in range(start, end):
        if text[i].isalnum():
            count += 1
            if count == length:
                stop = i + 1
                if stop < end and text[stop].isalnum():
                    return None
                return stop, _valid_iban(_alphanumerics(text[start:stop]).upper())
    return None


# How cards are printed in groups: a window of groups joined by any other separator than one
# space or dash (a dot, two characters, a line break) is a card only in one of these, and with
# at most one line break (a card wrapped once), so that columns of numbers, dotted amounts and a
# phone number above a reference are none.
_CARD_GROUPINGS = frozenset({(4, 4, 4, 4), (4, 4, 4, 4, 3), (4, 6, 5), (4, 6, 4)})


def _find_cards(text: str) -> list[Finding]:
    """Card numbers: inside each run of digit groups, the longest valid window of whole groups
    from each group start; a run is scanned once, windows are at most 19 digits. Cards are
    written in groups of 2 or more digits: a lone digit is never part of one (which also keeps
    "4 4 4 …" from costing a window at every character). A window with other separators than
    one space or dash must be grouped as cards are printed (_CARD_GROUPINGS)."""
    found: list[Finding] = []
    for run in _DIGIT_RUN.finditer(text):
        run_text = run.group()
        groups = [(m.start(), m.end()) for m in _DIGITS.finditer(run_text)]
        base = run.start()
        # Most runs have only single spaces or dashes between groups: no separator to look at.
        plain_run = _PLAIN_DIGIT_RUN.fullmatch(run_text) is not None
        i = 0
        while i < len(groups):
            best: int | None = None
            digits = ""
            lengths: frozenset[int] | None = None
            plain = True  # every separator so far one space or dash
            breaks = 0  # line breaks among them
            for j in range(i, len(groups)):
                group_start, group_end = groups[j]
                digits += run_text[group_start:group_end]
                if group_end - group_start < 2 or len(digits) > 19:
                    break
                if j > i and not plain_run:
                    separator = run_text[groups[j - 1][1] : group_start]
                    plain = plain and separator in (" ", "-")
                    breaks += "\n" in separator
                    if breaks > 1:
                        break
                if lengths is None and len(digits) >= 4:
                    lengths = _card_lengths(digits[:4])
                    if not lengths:
                        break  # no network starts so: no card starts at this group
                if (
                    lengths
                    and len(digits) in lengths
                    and luhn.is_valid(digits)
                    and (plain or tuple(e - s for s, e in groups[i : j + 1]) in _CARD_GROUPINGS)
                ):
                    best = j
            if best is None:
                i += 1
                continue
            found.append(Finding(SensitiveKind.CARD, base + groups[i][0], base + groups[best][1]))
            i = best + 1
    return found


def _find_identities(text: str) -> list[Finding]:
    """DNI, NIE and the K/L/M NIFs of persons with a valid control letter."""
    found = []
    for match in _IDENTITY.finditer(text):
        compact = re.sub(r"[ .-]", "", match.group()).upper()
        if len(compact) == 9 and not compact[0].isdigit() and compact[0] not in "XYZKLM":
            continue
        if stdnum_nif.is_valid(compact):
            found.append(Finding(SensitiveKind.IDENTITY, match.start(), match.end()))
    return found


def _alphanumerics(value: str) -> str:
    """The letters and digits of value, without its separators."""
    return "".join(c for c in value if c.isalnum())


def _find_credentials(text: str) -> list[Finding]:
    """The value after a password word and ':' or '=' (rest of the line, trimmed, or the next
    line's first word); a value already masked (only '*') is not one, nor a next line's word
    ending in ':' or '=' (a label: "Contrasenya:\nClau: x" holds "x"). The next line is read
    again from its word on, so a password word there starts a value of its own."""
    found: list[Finding] = []
    pos = 0
    while (match := _CREDENTIAL.search(text, pos)) is not None:
        group = "value" if match.group("value") is not None else "next"
        value = match.group(group).rstrip()
        start = match.start(group)
        pos = match.end() if group == "value" else start
        if not value.strip("*") or (group == "next" and value[-1] in ":="):
            continue
        end = start + len(value)
        if found and start < found[-1].end:  # inside the next-line word found before
            found[-1] = Finding(SensitiveKind.CREDENTIAL, found[-1].start, max(end, found[-1].end))
            continue
        found.append(Finding(SensitiveKind.CREDENTIAL, start, end))
    return found


# Earlier kinds win where numbers overlap (an IBAN's digits are not also a card).
_NUMBER_FINDERS = (
    (SensitiveKind.IBAN, _find_ibans),
    (SensitiveKind.CARD, _find_cards),
    (SensitiveKind.IDENTITY, _find_identities),
)


def _without_overlaps(findings: list[Finding], blockers: list[Finding]) -> list[Finding]:
    """The findings that overlap none of blockers; both sorted by start and each free of
    overlaps within itself, so one merge pass does it."""
    kept = []
    index = 0
    for finding in findings:
        while index < len(blockers) and blockers[index].end <= finding.start:
            index += 1
        if index < len(blockers) and blockers[index].start < finding.end:
            continue
        kept.append(finding)
    return kept


def find_sensitive(text: str, kinds: Collection[SensitiveKind] = ALL_KINDS) -> list[Finding]:
    """The sensitive values of the given kinds in text (its first SCAN_LIMIT characters),
    non-overlapping, in order of position. A credential's value covers any number inside it
    (so masking hides the whole value); asked without credentials, that number is reported.
    The spans are found in _normalized(text), of the same length, without its invisible
    characters: they are moved back to spans of text."""
    visible = _Visible.of(_normalized(text[:SCAN_LIMIT]))
    return [visible.restored(f) for f in _find_in(visible.text, kinds)]


def _find_in(text: str, kinds: Collection[SensitiveKind]) -> list[Finding]:
    """find_sensitive on a text normalized and without invisible characters."""
    wanted = set(kinds)
    credentials = _find_credentials(text) if SensitiveKind.CREDENTIAL in wanted else []
    numbers: list[Finding] = []
    # IBANs are always looked for: they shadow card and identity look-alikes inside them, and
    # so does an IBAN look-alike failing its checksum (its digits are an account, not a card).
    shapes = _iban_shapes(text)
    numbers = [f for f, valid in shapes if valid]
    blockers = [f for f, _valid in shapes]  # sorted, without overlaps, like numbers
    for kind, finder in _NUMBER_FINDERS:
        if kind is SensitiveKind.IBAN or kind not in wanted:
            continue
        fresh = _without_overlaps(finder(text), blockers)
        numbers = sorted(numbers + fresh, key=lambda f: f.start)
        blockers = sorted(blockers + fresh, key=lambda f: f.start)
    numbers = [f for f in numbers if f.kind in wanted]
    return sorted(credentials + _without_overlaps(numbers, credentials), key=lambda f: f.start)


def _mask(kind: SensitiveKind, value: str) -> str:
    """The masked form of one value (as normalized): enough left to tell which one it was,
    never enough to use."""
    if kind is SensitiveKind.IBAN:
        compact = _alphanumerics(value).upper()
        stars = " ".join(["****"] * -(-(len(compact) - 8) // 4))
        return f"{compact[:4]} {stars} {compact[-4:]}"
    if kind is SensitiveKind.CARD:
        return "**** **** **** " + _alphanumerics(value)[-4:]
    if kind is SensitiveKind.IDENTITY:
        return "****" + _alphanumerics(value).upper()[-4:]
    return "********"


def mask_sensitive(text: str) -> str:
    """text with every value find_sensitive finds replaced by its masked form: IBAN
    "ES91 **** **** **** **** 1332", card "**** **** **** 1234", DNI/NIE "****678Z", a
    credential "********". Text beyond SCAN_LIMIT is kept as it is."""
    return mask_findings(text, find_sensitive(text))


def mask_findings(text: str, findings: list[Finding]) -> str:
    """text with these findings of find_sensitive(text) masked (to mask and learn what was
    found with one scan). The text between them is kept as it is."""
    parts = []
    pos = 0
    for finding in findings:
        parts.append(text[pos : finding.start])
        # Only the value is read as normalized (one character for one: the same span).
        value = _normalized(text[finding.start : finding.end])
        parts.append(_mask(finding.kind, value))
        pos = finding.end
    parts.append(text[pos:])
    return "".join(parts)


def mask_and_kinds(text: str) -> tuple[str, tuple[str, ...]]:
    """text masked (as mask_sensitive) and the kinds of value found in it (SensitiveKind
    values, sorted, unique; empty when nothing was masked). One scan."""
    findings = find_sensitive(text) if text else []
    if not findings:
        return text, ()
    return mask_findings(text, findings), tuple(sorted({f.kind.value for f in findings}))
