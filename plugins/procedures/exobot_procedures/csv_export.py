"""The procedures as CSV for the treasury's spreadsheet, escaped against formula injection.

A spreadsheet runs a cell that starts with `=`, `+`, `-` or `@` (and, in some, a tab or a
carriage return) as a formula: a note typed by a person, or copied from a member's mail, could
then fetch a URL or run a command on the treasurer's computer. Such a cell gets a leading `'`
(OWASP's advice), which spreadsheets show as text. Every cell is escaped the same way, so an
operator's Matrix id (`@anna:…`) reads `'@anna:…`.

A spreadsheet may also split a cell where the file does not: Excel in Catalan or Spanish
splits a `.csv` on `;`, and a line break or tab can start a new cell on a paste. So inside a
cell a formula starter after `;`, `,`, a tab or a line break (spaces between allowed) gets the
same `'`, and every cell is quoted; the text is otherwise kept as typed.

The header row names the columns in English (stable for scripts); dates are ISO 8601 in the
configured time zone; the type's shown name is in the reader's language.
"""

from __future__ import annotations

import asyncio
import csv
import io
import re
from collections.abc import Iterable, Sequence
from datetime import datetime, tzinfo
from typing import TYPE_CHECKING

from starlette.responses import Response

from exobot_procedures import store
from exobot_procedures.service import type_name
from exobot_procedures.store import Procedure, ProcedureFilter

if TYPE_CHECKING:
    from exobot_procedures.plugin import Procedures

__all__ = ["COLUMNS", "MAX_ROWS", "escape_cell", "procedures_csv", "response"]

#: The header row.
COLUMNS = (
    "reference",
    "type",
    "type_name",
    "member",
    "service",
    "ticket",
    "state",
    "asked_by",
    "asked_at",
    "processed_by",
    "processed_at",
    "note",
)
#: At most this many procedures in one export (newest first): memory stays bounded.
MAX_ROWS = 20_000
_BATCH = 1000
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
#: A formula starter where a spreadsheet splitting on `;`, `,`, tabs or lines starts a cell.
_INNER_FORMULA = re.compile(r"([;,\t\r\n][ \t]*)(?=[=+\-@])")


def escape_cell(value: object) -> str:
    """A cell's text, with a `'` before each formula starter a spreadsheet could read: at its
    start, or after a separator inside it."""
    text = "" if value is None else str(value)
    # Most cells hold no starter at all: `in` is far quicker than the regex on ~240,000 cells.
    if "=" in text or "+" in text or "-" in text or "@" in text:
        text = _INNER_FORMULA.sub(r"\1'", text)
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def _iso(value: datetime | None, zone: tzinfo) -> str:
    return value.astimezone(zone).isoformat(timespec="seconds") if value is not None else ""


def procedures_csv(
    plugin: Procedures, procedures: Iterable[Procedure], language: str
) -> str:
    """The CSV text (header row first, CRLF line ends as RFC 4180 says)."""
    zone = plugin.ctx.timezone
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n", quoting=csv.QUOTE_ALL)
    writer.writerow(COLUMNS)
    for p in procedures:
        cells: Sequence[object] = (
            p.ref,
            p.type,
            type_name(plugin, p.type, language),
            p.member,
            p.service or "",
            plugin.reference(p.ticket),
            p.state,
            p.asked_by,
            _iso(p.asked_at, zone),
            p.processed_by or "",
            _iso(p.processed_at, zone),
            p.note,
        )
        writer.writerow([escape_cell(cell) for cell in cells])
    return out.getvalue()


async def read_all(plugin: Procedures, where: ProcedureFilter) -> list[Procedure]:
    """The procedures `where` selects, newest first, at most MAX_ROWS."""
    found: list[Procedure] = []
    async with plugin.ctx.reading() as reader:
        while len(found) < MAX_ROWS:
            batch = await store.search(
                reader.conn, where, limit=min(_BATCH, MAX_ROWS - len(found)), offset=len(found)
            )
            found.extend(batch)
            if len(batch) < _BATCH:
                break
    return found


def _body(plugin: Procedures, procedures: list[Procedure], language: str) -> bytes:
    """The file's bytes: UTF-8 with a byte order mark, with which spreadsheets read the
    accents right."""
    return ("\ufeff" + procedures_csv(plugin, procedures, language)).encode("utf-8")


async def response(plugin: Procedures, where: ProcedureFilter, language: str) -> Response:
    """The export as a download: `text/csv; charset=utf-8`, attachment, not cached."""
    found = await read_all(plugin, where)
    # Up to MAX_ROWS rows (about 20 MB): written and encoded off the event loop, which would
    # otherwise stall for most of a second.
    body = await asyncio.to_thread(_body, plugin, found, language)
    stamp = plugin.ctx.clock.now().astimezone(plugin.ctx.timezone).strftime("%Y%m%d-%H%M")
    return Response(
        body,
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="procedures-{stamp}.csv"',
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        },
    )
