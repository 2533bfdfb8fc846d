"""The connectivity plugin's own page, ``GET /plugins/connectivity/`` (in the web's main menu):
every target probed now, per ticket (its reference, title and page), with its latest round
(when, loss) and its graph; then the reference targets. A target whose latest round is old
shows how old (a prober that stopped), as the ticket page's panel does.

An operator's session, like every page; nothing on it acts (the actions are on the ticket's
page and in chat), so it has no form.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from exobot.web.deps import PageOperator
from exobot.web.templating import language as reader_language
from exobot_connectivity import store
from exobot_connectivity.web import DEFAULT_PERIOD, graph_url

__all__ = ["MonitorRow", "register_pages"]

TEMPLATE = "connectivity_monitors.html"


def N_(msgid: str) -> str:
    """Marks a message id for extraction; translated where it is shown."""
    return msgid


#: The menu entry's words (a message id of the plugin's domain).
MENU_LABEL = N_("Connectivity")


@dataclass(frozen=True)
class MonitorRow:
    """One probed target as the page lists it. `ticket` is None for a reference target;
    `latest` its newest round (None: none yet); `loss` that round's loss in the reader's
    numbers ("12,5"); `graph` the ticket's graph page, None for a reference target."""

    ticket: int | None
    title: str
    target: str
    latest: store.StoredRound | None
    loss: str
    graph: str | None


def _loss(latest: store.StoredRound | None, language: str) -> str:
    if latest is None:
        return ""
    text = f"{latest.loss * 100:.1f}"
    return text.replace(".", ",") if language in ("ca", "es") else text


async def read_rows(reader: Any, language: str) -> list[MonitorRow]:
    """The running monitors, the tickets' by ticket number then the reference targets, each
    with its newest round (whatever its age), read through one read view."""
    grouped = await store.by_ticket(reader.conn)
    numbers = sorted(number for number in grouped if number is not None)
    titles = {ticket.number: ticket.title for ticket in await reader.tickets(numbers)}
    rows = []
    for number in [*numbers, None]:
        for monitor in grouped.get(number) or ():
            latest = await store.latest_round(reader.conn, monitor.id)
            rows.append(
                MonitorRow(
                    number,
                    titles.get(number, "") if number is not None else "",
                    monitor.target,
                    latest,
                    _loss(latest, language),
                    graph_url(number, DEFAULT_PERIOD) if number is not None else None,
                )
            )
    return rows


def register_pages(ctx: Any) -> None:
    """Mount the page under /plugins/connectivity/ and add it to the web's main menu."""
    pages = APIRouter()

    @pages.get("/")
    async def monitors_page(request: Request, operator: PageOperator) -> Response:
        """The targets probed now, per ticket, and the reference targets."""
        async with ctx.reading() as reader:
            rows = await read_rows(reader, reader_language(request))
        return ctx.render_page(
            request,
            TEMPLATE,
            operator=operator,
            prefix=ctx.settings.prefix,
            tickets=[row for row in rows if row.ticket is not None],
            references=[row for row in rows if row.ticket is None],
        )

    ctx.web_router(pages)
    ctx.add_menu_entry(MENU_LABEL, "/")
