"""Public ticket references: `suport#310` and the ways people write it."""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence

MAX_NUMBER = 10**12  # references are read with at most 12 digits
# The largest id every database stores: ids are INTEGER columns, 32 bits on PostgreSQL (SQLite
# takes 64). A larger number names no row; asking the database for it would be an error.
MAX_ID = 2**31 - 1


def is_stored_id(number: int) -> bool:
    """Whether a number fits a database row id, ticket numbers included (a larger one names
    no row, instead of overflowing a query)."""
    return 0 < number <= MAX_ID


def format_reference(prefix: str, number: int) -> str:
    """The canonical reference, e.g. `suport#310`."""
    return f"{prefix}#{number}"


def subject_tag(prefix: str, number: int) -> str:
    """The tag every mail we send carries in its subject, e.g. `[suport#310]`."""
    return f"[{format_reference(prefix, number)}]"


def _reference_pattern(prefix: str) -> re.Pattern[str]:
    p = re.escape(prefix)
    return re.compile(
        rf"^\s*(?:(?:(?:ticket|tiquet)\s+de\s+)?{p}\s*#?\s*|#\s*)?([0-9]{{1,12}})\s*$",
        re.IGNORECASE,
    )


def parse_reference(text: str, prefix: str) -> int | None:
    """Parse a whole reference as operators write it.

    Accepts `suport#310`, `Suport #310`, `suport 310`, `ticket de suport 310` (or `tiquet de
    suport 310`, as TERMCAT writes it), `#310`, `310`.
    Returns the number, or None when `text` is not a reference.
    """
    match = _reference_pattern(prefix).match(text)
    if not match:
        return None
    number = int(match.group(1))
    return number if 0 < number < MAX_NUMBER else None


def find_in_subject(subject: str, prefix: str, legacy: Sequence[str] = ()) -> int | None:
    """Find the reference in a mail subject: `[suport#N]` first, then a bare `suport#N`, then
    the tag of a helpdesk exobot replaced, `[NAME #N]` or `[NAME#N]` for NAME in `legacy`
    (Request Tracker's rtname; case does not matter)."""
    for pattern in _subject_patterns(prefix, tuple(legacy)):
        for match in pattern.finditer(subject):
            number = int(match.group(1))
            if 0 < number < MAX_NUMBER:
                return number
    return None


@functools.lru_cache(maxsize=32)
def _subject_patterns(prefix: str, legacy: tuple[str, ...]) -> tuple[re.Pattern[str], ...]:
    # Each pattern is literal text around bounded runs of spaces and digits: linear time on
    # any subject, however hostile.
    p = re.escape(prefix)
    patterns = [rf"\[\s*{p}\s*#\s*([0-9]{{1,12}})\s*\]", rf"(?<![\w#]){p}#([0-9]{{1,12}})\b"]
    names = [" ".join(name.split()) for name in legacy]
    names = [re.escape(name).replace(r"\ ", r"\s+") for name in names if name]
    if names:
        patterns.append(rf"\[\s*(?:{'|'.join(names)})\s*#\s*([0-9]{{1,12}})\s*\]")
    return tuple(re.compile(pattern, re.IGNORECASE) for pattern in patterns)
