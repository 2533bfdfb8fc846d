"""Bounds on a mail's MIME structure, applied to the raw bytes before the stdlib parses them.

The stdlib parser builds every part before we can count them, and recurses once per level of
nesting: a mail of 10,000 tiny parts or 500 nested multiparts costs a few hundred milliseconds
of a parsing worker each, which a sender can repeat a hundred times to hold the queue. No real
mail comes near these bounds, so the bytes past them are cut off before parsing (linear scans);
the mail still becomes a ticket with what came before, its body marked as cut, and the whole
raw mail stays stored.
"""

from __future__ import annotations

import re

# Declared multipart containers, i.e. the deepest possible nesting.
MAX_MULTIPARTS = 100
# Boundary lines of those containers, i.e. about the number of parts.
MAX_BOUNDARY_LINES = 1000

_MULTIPART = re.compile(rb"multipart/", re.IGNORECASE)
# The boundary parameter, quoted or not (RFC 2046: at most 70 characters).
_BOUNDARY_PARAM = re.compile(rb"""boundary\s*=\s*(?:"([^"\r\n]{1,200})"|([^\s;"]{1,200}))""", re.I)
_DASH_LINE = re.compile(rb"^--([^\r\n]{0,200})", re.MULTILINE)


def _line_start(data: bytes, offset: int) -> int:
    return data.rfind(b"\n", 0, offset) + 1


def _nesting_cut(raw: bytes) -> int | None:
    """Where the line declaring multipart number MAX_MULTIPARTS + 1 starts, if there is one."""
    for count, match in enumerate(_MULTIPART.finditer(raw), 1):
        if count > MAX_MULTIPARTS:
            return _line_start(raw, match.start())
    return None


def _parts_cut(data: bytes) -> int | None:
    """Where boundary line number MAX_BOUNDARY_LINES + 1 starts, if there is one (only lines
    naming a declared boundary count: a text full of "-----" rules is no part bomb)."""
    boundaries = {
        (match.group(1) or match.group(2)).rstrip() for match in _BOUNDARY_PARAM.finditer(data)
    }
    if not boundaries:
        return None
    count = 0
    for match in _DASH_LINE.finditer(data):
        token = match.group(1).rstrip()
        if token in boundaries or (token.endswith(b"--") and token[:-2] in boundaries):
            count += 1
            if count > MAX_BOUNDARY_LINES:
                return match.start()
    return None


def bound_structure(raw: bytes) -> tuple[bytes, str | None]:
    """The bytes to parse and, when something was cut off, the defect that says why
    ("NestingTooDeep" or "TooManyParts")."""
    cut = _nesting_cut(raw)
    if cut is not None:
        return raw[:cut], "NestingTooDeep"
    cut = _parts_cut(raw)
    if cut is not None:
        return raw[:cut], "TooManyParts"
    return raw, None
