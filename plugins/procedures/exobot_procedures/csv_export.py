"""The procedures as CSV for the treasury's spreadsheet, escaped against formula injection.

A spreadsheet runs a cell that starts with `=`, `+`, `-` or `@` (and, in some, a tab or a
carriage return) as a formula: a note typed by a person, or copied from a member's mail, could
then fetch a URL or run a command on the treasurer's computer. Such a cell gets a leading `'`
(OWASP's advice), which spreadsheets show as text. Every cell is escaped the same way, so an
operator's Matrix id (`@anna:…`) reads `'@anna:…`.

The header row names the columns in English (stable for scripts); dates are ISO 8601 in the
configured time zone; the type's shown name is in the reader's language.
"""

from __future__ import annotations

import csv
import io
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


def escape_cell(value: object) -> str:
    """A cell's text, with a leading `'` when a spreadsheet would read it as a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def _iso(value: datetime | None, zone: tzinfo) -> str:
    return value.astimezone(zone).isoformat(timespec="seconds") if value is not None else ""


def procedures_csv(
    plugin: Procedures, procedures: Iterable[Procedure], language: str
) -> str:
    """The CSV text (header row first, CRLF line ends as RFC 4180 says)."""
    zone = plugin.ctx.timezone
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
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


async def response(plugin: Procedures, where: ProcedureFilter, language: str) -> Response:
    """The export as a download: `text/csv; charset=utf-8`, attachment, not cached."""
    text = procedures_csv(plugin, await read_all(plugin, where), language)
    stamp = plugin.ctx.clock.now().astimezone(plugin.ctx.timezone).strftime("%Y%m%d-%H%M")
    return Response(
        # A byte order mark: spreadsheets then read the accents of UTF-8 right.
        ("\ufeff" + text).encode("utf-8"),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="procedures-{stamp}.csv"',
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        },
    )
