"""The connectivity monitor on the web: a panel on the ticket page and the graph routes.

- The panel (``ctx.add_panel``) shows the ticket's graph for the last 24 hours, the period
  as plain links (3 h · 24 h · 7 d, no JavaScript: each opens the graph for that period)
  and, per target, the latest figures as text (loss, median, last answer) so that screen
  readers get what the image shows; a target without a round in those 24 hours says when
  its last round was (a prober that stopped), and one no longer probed says so.
- ``GET /plugins/connectivity/tickets/{n}/graph.png?period=…[&target=…]`` (an operator's
  session) and the same under ``/api/v1/plugins/connectivity/…`` (a bearer token): the PNG,
  rendered in a worker thread so the event loop never waits for matplotlib.
- ``GET /api/v1/plugins/connectivity/tickets/{n}/monitors``: the targets, whether each
  still runs, and their latest figures as JSON.

A ticket that never had a monitor (or does not exist) is a 404 on every route.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, HTTPException, Request
from markupsafe import escape
from starlette.responses import Response

from exobot.core.languages import LANGUAGES
from exobot.plugins import Panel
from exobot.web.deps import ApiOperator, PageOperator
from exobot.web.templating import language as reader_language
from exobot.wording import format_ago
from exobot_connectivity import store
from exobot_connectivity.graph import (
    GraphLabels,
    Point,
    Series,
    graph_size,
    latest_figures,
    render_graph,
)

__all__ = [
    "DEFAULT_PERIOD",
    "PERIODS",
    "Latest",
    "ReadLatest",
    "ReadRounds",
    "graph_labels",
    "latest_reader",
    "read_latest",
    "register_web",
    "store_reader",
]

BASE = "/plugins/connectivity"
PERIODS: dict[str, timedelta] = {
    "3h": timedelta(hours=3),
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
}
DEFAULT_PERIOD = "24h"


def N_(msgid: str) -> str:
    """Marks a message id for extraction; translated where it is shown."""
    return msgid


# How each period is named in links and titles (msgids of the plugin's domain).
PERIOD_NAMES = {"3h": N_("3 hours"), "24h": N_("24 hours"), "7d": N_("7 days")}

#: ``await read_rounds(ticket, target, since)`` → the ticket's series (only ``target`` when
#: given) followed by the reference targets' series, each with its rounds since ``since``.
ReadRounds = Callable[[int | None, str | None, datetime], Awaitable[list[Series]]]


@dataclass(frozen=True)
class Latest:
    """A target's newest round whatever its age (None: it never had one) and whether it is
    still probed."""

    round: store.StoredRound | None
    running: bool


#: ``await read_latest(ticket)`` → ``Latest`` by (target, is a reference target), for the
#: ticket's targets and the running reference targets.
ReadLatest = Callable[[int], Awaitable[dict[tuple[str, bool], Latest]]]


def _points(rounds: Sequence[store.StoredRound]) -> list[Point]:
    return [Point(r.at, r.sent, r.received, r.rtts) for r in rounds]


async def read_series(
    conn: Any, ticket: int | None, target: str | None, since: datetime
) -> list[Series]:
    """A ticket's series (all its targets, or the one named) since `since`, then the
    reference targets'. A target started, stopped and started again is one series (its
    monitors' rounds together). References are the running reference targets."""
    mine = await store.ticket_monitors(conn, ticket) if ticket is not None else []
    if target is not None:
        mine = [m for m in mine if m.target == target]
    by_target: dict[str, list[Point]] = {}
    for monitor in mine:
        rounds = await store.rounds_between(conn, monitor.id, since)
        by_target.setdefault(monitor.target, []).extend(_points(rounds))
    series = [
        Series(name, sorted(points, key=lambda p: p.at)) for name, points in by_target.items()
    ]
    for monitor in await store.references(conn):
        rounds = await store.rounds_between(conn, monitor.id, since)
        series.append(Series(monitor.target, _points(rounds), reference=True))
    return series


async def read_latest(conn: Any, ticket: int) -> dict[tuple[str, bool], Latest]:
    """The newest round of each of a ticket's targets (over all its monitors: started,
    stopped, started again) and of each running reference target, whatever its age."""
    found: dict[tuple[str, bool], Latest] = {}
    mine = await store.ticket_monitors(conn, ticket)
    for monitor in [*mine, *await store.references(conn)]:
        key = (monitor.target, monitor.reference)
        newest = await store.latest_round(conn, monitor.id)
        known = found.get(key) or Latest(None, False)
        if newest is None or (known.round is not None and known.round.at > newest.at):
            newest = known.round
        found[key] = Latest(newest, monitor.running or known.running)
    return found


def latest_reader(ctx: Any) -> ReadLatest:
    """A ``ReadLatest`` over ``read_latest`` and ``ctx.connection()``."""

    async def read(ticket: int) -> dict[tuple[str, bool], Latest]:
        async with ctx.connection() as conn:
            return await read_latest(conn, ticket)

    return read


def store_reader(ctx: Any) -> ReadRounds:
    """A ``ReadRounds`` over ``read_series`` and ``ctx.connection()``."""

    async def read(ticket: int | None, target: str | None, since: datetime) -> list[Series]:
        async with ctx.connection() as conn:
            return await read_series(conn, ticket, target, since)

    return read


def graph_labels(ctx: Any, language: str) -> GraphLabels:
    """The texts of the image in ``language`` (the plugin's catalog)."""
    return GraphLabels(
        rtt_axis=ctx.say(language, "RTT (ms)"),
        loss=ctx.say(language, "loss"),
        median=ctx.say(language, "median"),
        reference=ctx.say(language, "reference"),
        no_data=ctx.say(language, "No data for this period"),
        all_lost=ctx.say(language, "all lost"),
        decimal_separator="," if language in ("ca", "es") else ".",  # CLDR's, for these three
    )


def _number(value: float, language: str) -> str:
    text = f"{value:.1f}"
    return text.replace(".", ",") if language in ("ca", "es") else text


def register_web(
    ctx: Any,
    *,
    settings: Any = None,
    read_rounds: ReadRounds | None = None,
    timezone: tzinfo | None = None,
    read_latest: ReadLatest | None = None,
) -> None:
    """Add the ticket-page panel, the page graph route and the API routes to ``ctx``.

    ``settings`` is the plugin's config model (not needed by the pages today, kept so the
    plugin passes what it has); ``read_rounds`` defaults to ``store_reader(ctx)`` and
    ``read_latest`` to ``latest_reader(ctx)``; ``timezone`` is the time axis' and the
    figures' zone (default: ``ctx.timezone``, the configured ``alerts.timezone``).
    """
    read = read_rounds or store_reader(ctx)
    newest = read_latest or latest_reader(ctx)
    zone = timezone or ctx.timezone
    reference = ctx.settings.prefix

    async def series_for(ticket: int, target: str | None, period: str) -> list[Series]:
        if period not in PERIODS:
            raise HTTPException(400, f"period must be one of {', '.join(PERIODS)}")
        since = ctx.clock.now() - PERIODS[period]
        series = await read(ticket, target, since)
        if not any(not s.reference for s in series):
            raise HTTPException(404, "this ticket has no connectivity monitor")
        return series

    async def png(ticket: int, target: str | None, period: str, language: str) -> Response:
        series = await series_for(ticket, target, period)
        end = ctx.clock.now()
        ref = reference + "#" + str(ticket)
        title = ctx.say(language, "{ref}: connectivity, last {period}", ref=ref, period=period)
        image = await asyncio.to_thread(
            render_graph, series, start=end - PERIODS[period], end=end, timezone=zone,
            title=title, labels=graph_labels(ctx, language))
        return Response(image, media_type="image/png",
                        headers={"Cache-Control": "no-store"})

    pages = APIRouter()

    @pages.get("/tickets/{number:int}/graph.png")
    async def page_graph(request: Request, number: int, operator: PageOperator,
                         period: str = DEFAULT_PERIOD, target: str | None = None) -> Response:
        """The ticket's graph as a PNG (an operator's session)."""
        return await png(number, target, period, reader_language(request))

    api = APIRouter()

    @api.get("/tickets/{number:int}/graph.png")
    async def api_graph(number: int, operator: ApiOperator, period: str = DEFAULT_PERIOD,
                        target: str | None = None, lang: str | None = None) -> Response:
        """The ticket's graph as a PNG (a bearer token); ``lang`` picks the labels' language."""
        language = lang if lang in LANGUAGES else ctx.settings.language
        return await png(number, target, period, language)

    @api.get("/tickets/{number:int}/monitors")
    async def api_monitors(number: int, operator: ApiOperator) -> dict[str, Any]:
        """The ticket's targets, whether each runs, and the latest figures of each."""
        async with ctx.connection() as conn:
            monitors = await store.ticket_monitors(conn, number)
        if not monitors:
            raise HTTPException(404, "this ticket has no connectivity monitor")
        series = await read(number, None, ctx.clock.now() - PERIODS[DEFAULT_PERIOD])
        # The ticket's own series only: a reference target may have the same name as one of
        # the ticket's targets, and its figures are not the ticket's.
        figures = {s.name: latest_figures(s.points) for s in series if not s.reference}
        running = {m.target for m in monitors if m.running}
        targets = []
        for name in dict.fromkeys(m.target for m in monitors):
            targets.append({"target": name, "running": name in running,
                            "reference": False, **_json_figures(figures.get(name))})
        for s in series:
            if s.reference:
                targets.append({"target": s.name, "running": True, "reference": True,
                                **_json_figures(latest_figures(s.points))})
        return {"ticket": number, "running": bool(running), "targets": targets}

    async def panel(ticket: Any, language: str) -> Panel | None:
        number = ticket.number
        now = ctx.clock.now()
        series = await read(number, None, now - PERIODS[DEFAULT_PERIOD])
        if not any(not s.reference for s in series):
            return None
        latest = await newest(number)
        return Panel(ctx.say(language, "Connectivity"),
                     _panel_html(ctx, number, series, language, zone, latest=latest, now=now))

    ctx.web_router(pages)
    ctx.api_router(api)
    ctx.add_panel(panel)


def _json_figures(figures: dict[str, Any] | None) -> dict[str, Any]:
    figures = figures or latest_figures(())
    return {
        "rounds": figures["rounds"],
        "latest_at": figures["at"].isoformat() if figures["at"] else None,
        "loss_percent": figures["loss_percent"],
        "median_ms": figures["median_ms"],
        "last_answer_at": (figures["last_answer_at"].isoformat()
                           if figures["last_answer_at"] else None),
    }


def graph_url(number: int, period: str = DEFAULT_PERIOD, target: str | None = None) -> str:
    """The page route of a ticket's graph."""
    query = {"period": period} | ({"target": target} if target else {})
    return f"{BASE}/tickets/{number}/graph.png?{urlencode(query)}"


def _panel_html(ctx: Any, number: int, series: Sequence[Series], language: str,
                zone: tzinfo, *, latest: Mapping[tuple[str, bool], Latest] | None = None,
                now: datetime | None = None) -> str:
    """The panel: the image, the period links and the figures per target, all escaped;
    `latest` (by target) says when a target without rounds in the period had its last one,
    and whether it is still probed."""
    latest = latest or {}

    def _say(msgid: str, **params: object) -> str:
        return str(escape(ctx.say(language, msgid, **params)))

    width, height = graph_size(len(series))
    mine = [s.name for s in series if not s.reference]
    alt = _say("Latency and packet loss over the last 24 hours: {targets}",
              targets=", ".join(mine))
    links = " · ".join(
        f'<a href="{escape(graph_url(number, period))}">{_say(PERIOD_NAMES[period])}</a>'
        for period in PERIODS
    )
    items = []
    for s in series:
        figures = latest_figures(s.points)
        name = str(escape(s.name))
        if s.reference:
            name += " (" + _say("reference") + ")"
        known = latest.get((s.name, s.reference))
        if not figures["rounds"]:
            last = known.round if known is not None else None
            if last is not None and now is not None:
                # Rounds older than the period: a stopped prober, not a target never probed.
                text = _say("no round in the last 24 hours; last round {ago}",
                            ago=format_ago(now - last.at, language))
            else:
                text = _say("no rounds yet")
        else:
            parts = [_say("loss {percent} %", percent=_number(figures["loss_percent"], language))]
            if figures["median_ms"] is not None:
                parts.append(_say("median {ms} ms", ms=_number(figures["median_ms"], language)))
            else:
                parts.append(_say("no answer in the last round"))
            answered = figures["last_answer_at"]
            parts.append(_say("last answer {when}", when=answered.astimezone(zone)
                             .strftime("%d/%m %H:%M")) if answered else _say("never answered"))
            text = ", ".join(parts)
        if known is not None and not known.running:
            text += "; " + _say("no longer probed")
        items.append(f"<li>{name}: {text}</li>")
    period_label = _say("Period:")
    latest_label = _say("Latest round per target:")
    return (
        '<figure class="connectivity-graph">'
        f'<img src="{escape(graph_url(number))}" alt="{alt}" width="{width}" '
        f'height="{height}">'
        f"<figcaption>{period_label} {links}</figcaption>"
        "</figure>"
        f"<p>{latest_label}</p>"
        f'<ul class="connectivity-figures">{"".join(items)}</ul>'
    )
