"""The monitors, their rounds and their alert state (SQLAlchemy Core on the plugin's own
MetaData); the tables are created by the plugin's Alembic branch (`migrations/`).

A monitor is one target probed for one ticket, or a reference target (`ticket` None) probed
all the time. Each round is one burst of pings: sent, received, the sorted RTTs in ms
(compact JSON) and their median. Queries take `now` from their caller (the one clock).
"""

from __future__ import annotations

import asyncio
import json
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from exobot.db.tables import UtcDateTime

metadata = sa.MetaData()

PER_TICKET_LIMIT = 5
TOTAL_LIMIT = 100

#: Why a monitor stopped: an operator's `stop`, the ticket resolved or rejected, or a
#: reference target no longer in the configuration.
STOP_REASONS = ("operator", "resolved", "rejected", "config")

monitors = sa.Table(
    "connectivity_monitors",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("ticket", sa.Integer, nullable=True),  # None: a reference target
    sa.Column("target", sa.String(300), nullable=False),  # as the operator wrote it
    sa.Column("kind", sa.String(8), nullable=False),  # "icmp" or "tcp"
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("port", sa.Integer, nullable=True),
    sa.Column("started_by", sa.String(255), nullable=False),
    sa.Column("started_at", UtcDateTime(), nullable=False),
    sa.Column("stopped_at", UtcDateTime(), nullable=True),
    sa.Column("stop_reason", sa.String(20), nullable=True),
    sa.Column("last_round_at", UtcDateTime(), nullable=True),
    # The idempotency keys of the requests that started and stopped it (ActionCall.key).
    sa.Column("request_key", sa.String, nullable=True),
    sa.Column("stop_key", sa.String, nullable=True),
    # The post key of the closing summary still owed for it: set in the same UPDATE that stops
    # it for a closed ticket, cleared once the summary is queued (see stop, owed_summaries).
    sa.Column("summary_key", sa.String, nullable=True),
    sa.Index("ux_connectivity_monitors_request_key", "request_key", unique=True),
    sa.Index("ix_connectivity_monitors_stop_key", "stop_key"),
    # Only the few monitors whose summary is owed are indexed: the look for them stays one
    # index probe however long the history of stopped monitors.
    sa.Index(
        "ix_connectivity_monitors_summary_key",
        "summary_key",
        sqlite_where=sa.text("summary_key IS NOT NULL"),
        postgresql_where=sa.text("summary_key IS NOT NULL"),
    ),
)

# One running monitor per target and ticket, even with two operators (or two instances
# starting their reference targets) at once: the reference targets' NULL ticket counts as 0,
# since NULLs are distinct in a unique index.
sa.Index(
    "uq_connectivity_monitors_running_target",
    sa.func.coalesce(monitors.c.ticket, 0),
    monitors.c.target,
    unique=True,
    sqlite_where=sa.text("stopped_at IS NULL"),
    postgresql_where=sa.text("stopped_at IS NULL"),
)

#: The `!graph` requests that posted a graph, by idempotency key (a replay posts nothing).
graph_requests = sa.Table(
    "connectivity_graph_requests",
    metadata,
    sa.Column("request_key", sa.String, primary_key=True),
    sa.Column("ticket", sa.Integer, nullable=False),
    sa.Column("period", sa.String(8), nullable=False),
    sa.Column("at", UtcDateTime(), nullable=False),
)

rounds = sa.Table(
    "connectivity_rounds",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column(
        "monitor_id",
        sa.Integer,
        sa.ForeignKey("connectivity_monitors.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("at", UtcDateTime(), nullable=False),
    sa.Column("sent", sa.Integer, nullable=False),
    sa.Column("received", sa.Integer, nullable=False),
    sa.Column("rtts", sa.Text, nullable=False),  # JSON list of sorted ms, 0.01 ms precision
    sa.Column("median", sa.Float, nullable=True),  # None: nothing answered
    sa.Column("error", sa.String(300), nullable=True),
    # "The rounds of a monitor in a period", the graph's query.
    sa.Index("ix_connectivity_rounds_monitor_at", "monitor_id", "at"),
    # Retention deletes by age alone.
    sa.Index("ix_connectivity_rounds_at", "at"),
)

alerts = sa.Table(
    "connectivity_alerts",
    metadata,
    sa.Column(
        "monitor_id",
        sa.Integer,
        sa.ForeignKey("connectivity_monitors.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("in_alert", sa.Boolean, nullable=False, default=False),
    sa.Column("lossy_rounds", sa.Integer, nullable=False, default=0),
    sa.Column("changed_at", UtcDateTime(), nullable=False),
)


@dataclass(frozen=True)
class Monitor:
    """One probed target: for a ticket, or a reference target (`ticket` None)."""

    id: int
    ticket: int | None
    target: str
    kind: str
    host: str
    port: int | None
    started_by: str
    started_at: datetime
    stopped_at: datetime | None
    stop_reason: str | None
    last_round_at: datetime | None
    #: The key of the closing summary still owed for it (None: none owed).
    summary_key: str | None = None

    @property
    def running(self) -> bool:
        """Whether it is still probed."""
        return self.stopped_at is None

    @property
    def reference(self) -> bool:
        """Whether it is a reference target (probed for every ticket's comparison)."""
        return self.ticket is None


@dataclass(frozen=True)
class StoredRound:
    """One stored round: a burst's figures at a time."""

    monitor_id: int
    at: datetime
    sent: int
    received: int
    rtts: tuple[float, ...]
    median: float | None
    error: str | None

    @property
    def loss(self) -> float:
        """The lost share, 0.0 … 1.0 (1.0 when nothing was sent)."""
        return 1.0 - self.received / self.sent if self.sent else 1.0


class Refused(Exception):
    """A monitor that may not start; `reason` says which rule ("duplicate", "ticket_limit",
    "total_limit"), `limit` the limit that was reached."""

    def __init__(self, reason: str, limit: int | None = None) -> None:
        super().__init__(reason, limit)
        self.reason = reason
        self.limit = limit


def _monitor(row: Any) -> Monitor:
    return Monitor(
        row.id,
        row.ticket,
        row.target,
        row.kind,
        row.host,
        row.port,
        row.started_by,
        row.started_at,
        row.stopped_at,
        row.stop_reason,
        row.last_round_at,
        row.summary_key,
    )


def _round(row: Any) -> StoredRound:
    return StoredRound(
        row.monitor_id,
        row.at,
        row.sent,
        row.received,
        tuple(json.loads(row.rtts)),
        row.median,
        row.error,
    )


def _running(ticket: int | None) -> sa.ColumnElement[bool]:
    by_ticket = monitors.c.ticket.is_(None) if ticket is None else monitors.c.ticket == ticket
    return sa.and_(by_ticket, monitors.c.stopped_at.is_(None))


async def _count(conn: AsyncConnection, where: sa.ColumnElement[bool]) -> int:
    query = sa.select(sa.func.count()).select_from(monitors).where(where)
    return int((await conn.execute(query)).scalar_one())


async def start(
    conn: AsyncConnection,
    *,
    ticket: int | None,
    target: str,
    kind: str,
    host: str,
    port: int | None,
    by: str,
    now: datetime,
    per_ticket: int = PER_TICKET_LIMIT,
    total: int = TOTAL_LIMIT,
    key: str | None = None,
) -> Monitor:
    """Start probing `target` for `ticket` (None: a reference target, outside the limits).
    Refused when the same target already runs for this ticket, or a limit is reached; also
    "duplicate" when `key` (the request's idempotency key) already started a monitor."""
    running_same = sa.select(monitors.c.id).where(_running(ticket), monitors.c.target == target)
    if (await conn.execute(running_same)).first() is not None:
        raise Refused("duplicate")
    if ticket is not None:
        if await _count(conn, _running(ticket)) >= per_ticket:
            raise Refused("ticket_limit", per_ticket)
        on_tickets = sa.and_(monitors.c.ticket.is_not(None), monitors.c.stopped_at.is_(None))
        if await _count(conn, on_tickets) >= total:
            raise Refused("total_limit", total)
    values = {
        "ticket": ticket,
        "target": target,
        "kind": kind,
        "host": host,
        "port": port,
        "started_by": by,
        "started_at": now,
        "request_key": key,
    }
    try:
        async with conn.begin_nested():
            result = await conn.execute(sa.insert(monitors).values(**values))
    # Another operator (or instance, or the same request delivered again) started it at the
    # same moment: the unique indexes are the last word.
    except IntegrityError as error:
        raise Refused("duplicate") from error
    monitor_id = int(result.inserted_primary_key[0])
    return Monitor(monitor_id, ticket, target, kind, host, port, by, now, None, None, None)


def summary_key(ticket: int, monitor_ids: Sequence[int]) -> str:
    """The post key of the closing summary of the monitors one stop ended: each monitor stops
    once, so the key names that one summary whoever posts it, and whenever."""
    return f"connectivity:summary:{ticket}:{'-'.join(str(i) for i in sorted(monitor_ids))}"


async def stop(
    conn: AsyncConnection,
    *,
    ticket: int | None,
    target: str | None,
    reason: str,
    now: datetime,
    key: str | None = None,
    summary: bool = False,
) -> list[Monitor]:
    """Stop one running target of a ticket (or every one: `target` None); returns what was
    stopped (empty: nothing was running). `key`, the request's idempotency key, is recorded
    on what it stopped. With `summary` (a ticket closed), the closing summary is recorded as
    owed in the same UPDATE, under the post key `summary_key` gives: a crash before it is
    queued cannot lose it (owed_summaries)."""
    if reason not in STOP_REASONS:
        raise ValueError(f"unknown stop reason {reason!r}")
    where = _running(ticket)
    if target is not None:
        where = sa.and_(where, monitors.c.target == target)
    stopping = [_monitor(row) for row in await conn.execute(sa.select(monitors).where(where))]
    if not stopping:
        return []
    ids = [monitor.id for monitor in stopping]
    values: dict[str, Any] = {"stopped_at": now, "stop_reason": reason, "stop_key": key}
    if summary and ticket is not None:
        values["summary_key"] = summary_key(ticket, ids)
    await conn.execute(
        sa.update(monitors)
        .where(monitors.c.id.in_(ids), monitors.c.stopped_at.is_(None))
        .values(**values)
    )
    changed = {"stopped_at": now, "stop_reason": reason, "summary_key": values.get("summary_key")}
    return [Monitor(**{**monitor.__dict__, **changed}) for monitor in stopping]


async def owed_summaries(
    conn: AsyncConnection, ticket: int | None = None
) -> dict[str, list[Monitor]]:
    """The closing summaries stopped monitors still owe (of one ticket, or of all), by post
    key, each with its monitors oldest first."""
    query = sa.select(monitors).where(monitors.c.summary_key.is_not(None))
    if ticket is not None:
        query = query.where(monitors.c.ticket == ticket)
    query = query.order_by(monitors.c.summary_key, monitors.c.started_at, monitors.c.id)
    owed: dict[str, list[Monitor]] = {}
    for row in await conn.execute(query):
        owed.setdefault(row.summary_key, []).append(_monitor(row))
    return owed


async def summary_queued(conn: AsyncConnection, key: str) -> None:
    """Record that the closing summary with post key `key` is queued: no longer owed."""
    await conn.execute(
        sa.update(monitors).where(monitors.c.summary_key == key).values(summary_key=None)
    )


async def running(conn: AsyncConnection) -> list[Monitor]:
    """Every running monitor (tickets' and reference targets), by ticket, then start."""
    return await _running_where(conn, monitors.c.stopped_at.is_(None))


async def ticket_running(conn: AsyncConnection, ticket: int) -> list[Monitor]:
    """A ticket's running monitors, oldest first."""
    return await _running_where(conn, _running(ticket))


async def references(conn: AsyncConnection) -> list[Monitor]:
    """The running reference targets, oldest first."""
    return await _running_where(conn, _running(None))


async def _running_where(conn: AsyncConnection, where: sa.ColumnElement[bool]) -> list[Monitor]:
    query = sa.select(monitors).where(where)
    query = query.order_by(monitors.c.ticket, monitors.c.started_at, monitors.c.id)
    return [_monitor(row) for row in await conn.execute(query)]


async def by_ticket(conn: AsyncConnection) -> dict[int | None, list[Monitor]]:
    """The running monitors grouped by ticket (None: the reference targets), for `!monitors`."""
    grouped: dict[int | None, list[Monitor]] = {}
    for monitor in await running(conn):
        grouped.setdefault(monitor.ticket, []).append(monitor)
    return grouped


async def ticket_monitors(conn: AsyncConnection, ticket: int) -> list[Monitor]:
    """Every monitor a ticket ever had, running or stopped, oldest first (its page, its graph)."""
    query = (
        sa.select(monitors)
        .where(monitors.c.ticket == ticket)
        .order_by(monitors.c.started_at, monitors.c.id)
    )
    return [_monitor(row) for row in await conn.execute(query)]


async def get(conn: AsyncConnection, monitor_id: int) -> Monitor | None:
    """The monitor with this id, or None."""
    row = (await conn.execute(sa.select(monitors).where(monitors.c.id == monitor_id))).first()
    return _monitor(row) if row is not None else None


async def started_by(conn: AsyncConnection, key: str) -> Monitor | None:
    """The monitor that the request with idempotency key `key` started, or None."""
    query = sa.select(monitors).where(monitors.c.request_key == key)
    row = (await conn.execute(query)).first()
    return _monitor(row) if row is not None else None


async def stopped_by(conn: AsyncConnection, key: str) -> list[Monitor]:
    """The monitors that the request with idempotency key `key` stopped, oldest first."""
    query = (
        sa.select(monitors)
        .where(monitors.c.stop_key == key)
        .order_by(monitors.c.started_at, monitors.c.id)
    )
    return [_monitor(row) for row in await conn.execute(query)]


async def graph_request(conn: AsyncConnection, key: str) -> tuple[int, str] | None:
    """The ticket and period of the graph that the request with idempotency key `key`
    posted, or None."""
    query = sa.select(graph_requests.c.ticket, graph_requests.c.period).where(
        graph_requests.c.request_key == key
    )
    row = (await conn.execute(query)).first()
    return (row.ticket, row.period) if row is not None else None


async def record_graph_request(
    conn: AsyncConnection, key: str, *, ticket: int, period: str, now: datetime
) -> None:
    """Record that the request with idempotency key `key` posted a graph (once: a second
    record of the same key is a no-op)."""
    values = {"request_key": key, "ticket": ticket, "period": period, "at": now}
    try:
        async with conn.begin_nested():
            await conn.execute(sa.insert(graph_requests).values(**values))
    except IntegrityError:  # the same request, delivered twice at once, got there first
        pass


def encode_rtts(rtts: Sequence[float]) -> str:
    """Sorted RTTs in ms as compact JSON (0.01 ms is far below what a ping measures)."""
    return json.dumps([round(rtt, 2) for rtt in sorted(rtts)], separators=(",", ":"))


async def record_round(
    conn: AsyncConnection,
    monitor_id: int,
    *,
    at: datetime,
    sent: int,
    received: int,
    rtts: Sequence[float],
    error: str | None = None,
) -> StoredRound:
    """Store one round (at: when it started) and move the monitor's `last_round_at` to it."""
    ordered = tuple(sorted(rtts))
    median = statistics.median(ordered) if ordered else None
    await conn.execute(
        sa.insert(rounds).values(
            monitor_id=monitor_id,
            at=at,
            sent=sent,
            received=received,
            rtts=encode_rtts(ordered),
            median=median,
            error=error[:300] if error else None,
        )
    )
    await conn.execute(
        sa.update(monitors)
        .where(
            monitors.c.id == monitor_id,
            sa.or_(monitors.c.last_round_at.is_(None), monitors.c.last_round_at < at),
        )
        .values(last_round_at=at)
    )
    stored = tuple(json.loads(encode_rtts(ordered)))
    return StoredRound(monitor_id, at, sent, received, stored, median, error)


async def rounds_between(
    conn: AsyncConnection, monitor_id: int, since: datetime, until: datetime | None = None
) -> list[StoredRound]:
    """A monitor's rounds from `since` (included) to `until` (excluded), oldest first."""
    query = sa.select(rounds).where(rounds.c.monitor_id == monitor_id, rounds.c.at >= since)
    if until is not None:
        query = query.where(rounds.c.at < until)
    return [_round(row) for row in await conn.execute(query.order_by(rounds.c.at, rounds.c.id))]


async def latest_round(conn: AsyncConnection, monitor_id: int) -> StoredRound | None:
    """A monitor's newest round, or None."""
    query = (
        sa.select(rounds)
        .where(rounds.c.monitor_id == monitor_id)
        .order_by(rounds.c.at.desc(), rounds.c.id.desc())
        .limit(1)
    )
    row = (await conn.execute(query)).first()
    return _round(row) if row is not None else None


class Summary(NamedTuple):
    """The figures of a monitor's rounds over a period: the one definition, used by the
    closing summary and by the loss note's look at the reference targets."""

    #: Rounds stored, lost or not.
    rounds: int
    #: The lost share of every ping sent in the period (a round of 20 weighs twice one of
    #: 10), 0.0 … 1.0; None when no ping was sent (no rounds).
    loss: float | None
    #: The median of every RTT answered in the period (rounds that lost everything add
    #: none); None when nothing answered.
    median: float | None


async def summary(
    conn: AsyncConnection, monitor_id: int, since: datetime, until: datetime | None = None
) -> Summary:
    """The Summary of a monitor's rounds from `since` (included) to `until` (excluded; None:
    up to now). The counts are summed by the database; the RTTs, the only part that needs
    every row, are decoded in a worker thread so that a long history does not hold the event
    loop."""
    where = [rounds.c.monitor_id == monitor_id, rounds.c.at >= since]
    if until is not None:
        where.append(rounds.c.at < until)
    totals = sa.select(
        sa.func.count(), sa.func.sum(rounds.c.sent), sa.func.sum(rounds.c.received)
    ).where(*where)
    count, sent, received = (await conn.execute(totals)).one()
    result = await conn.execute(sa.select(rounds.c.rtts).where(*where))
    median = await asyncio.to_thread(_median_of_encoded, result)
    # int(): PostgreSQL's SUM of a bigint would be a Decimal.
    loss = (int(sent) - int(received)) / int(sent) if sent else None
    return Summary(int(count), loss, median)


def _median_of_encoded(result: Any) -> float | None:
    """The median of every RTT in the rows' JSON lists (None: no RTT at all), as
    statistics.median of them all would give it. The RTTs are counted by value and only the
    distinct values sorted: one sort of months of RTTs would hold the GIL, so the event loop,
    for as long as it takes (RTTs are stored to 0.01 ms, so they repeat a lot)."""
    counts: Counter[float] = Counter()
    for (text,) in result:
        counts.update(json.loads(text))
    total = counts.total()
    if not total:
        return None
    low_index, high_index = (total - 1) // 2, total // 2  # the middle one, or two
    seen, low = 0, None
    for value in sorted(counts):
        seen += counts[value]
        if low is None and seen > low_index:
            low = value
        if seen > high_index:
            return value if total % 2 else (low + value) / 2
    raise AssertionError("unreachable: the counts add up to total")


async def round_dicts(conn: AsyncConnection, monitor_id: int, since: datetime) -> list[dict]:
    """A monitor's rounds since `since`, oldest first, as plain dicts (the data export); the
    rows are decoded in a worker thread so that a long history does not hold the event loop."""
    query = (
        sa.select(rounds.c.at, rounds.c.sent, rounds.c.received, rounds.c.rtts, rounds.c.error)
        .where(rounds.c.monitor_id == monitor_id, rounds.c.at >= since)
        .order_by(rounds.c.at, rounds.c.id)
    )
    result = await conn.execute(query)
    return await asyncio.to_thread(_round_dicts, result)


def _round_dicts(result: Any) -> list[dict]:
    """The export's form of each row (the RTTs decoded, the time in ISO 8601)."""
    return [
        {
            "at": row.at.isoformat(),
            "sent": row.sent,
            "received": row.received,
            "rtts": json.loads(row.rtts),
            "error": row.error,
        }
        for row in result
    ]


async def purge(conn: AsyncConnection, before: datetime) -> int:
    """Delete the rounds older than `before` (the retention); returns how many."""
    result = await conn.execute(sa.delete(rounds).where(rounds.c.at < before))
    return int(result.rowcount or 0)


async def update_alert(
    conn: AsyncConnection,
    monitor_id: int,
    *,
    lossy: bool,
    rounds_needed: int,
    now: datetime,
    recover_rounds: int = 1,
    loss_alert: float = 0.2,
) -> str | None:
    """Count a round (already recorded) as lossy or not; returns "alert" when the monitor,
    not in alert, has had `rounds_needed` lossy rounds in a row, "recovered" when, in alert,
    its last `recover_rounds` rounds all lost at most `loss_alert`, None otherwise.

    The alert state itself is not flipped here: the caller does it with `settle_alert` once
    the note is queued, so a note that could not be queued is tried again on the next round
    (the same change comes back) instead of being lost with the state already changed."""
    row = (await conn.execute(sa.select(alerts).where(alerts.c.monitor_id == monitor_id))).first()
    in_alert = bool(row.in_alert) if row is not None else False
    lossy_rounds = (row.lossy_rounds if row is not None else 0) + 1 if lossy else 0
    change: str | None = None
    if lossy and not in_alert and lossy_rounds >= rounds_needed:
        change = "alert"
    elif (
        not lossy
        and in_alert
        and await _good_streak(conn, monitor_id, recover_rounds, loss_alert)
    ):
        change = "recovered"
    if row is None:
        values = {"in_alert": False, "lossy_rounds": lossy_rounds, "changed_at": now}
        await conn.execute(sa.insert(alerts).values(monitor_id=monitor_id, **values))
    else:  # changed_at stays the last settled change's: see alert_key
        await conn.execute(
            sa.update(alerts)
            .where(alerts.c.monitor_id == monitor_id)
            .values(lossy_rounds=lossy_rounds)
        )
    return change


async def _good_streak(
    conn: AsyncConnection, monitor_id: int, count: int, loss_alert: float
) -> bool:
    """Whether the monitor's last `count` rounds all lost at most `loss_alert` (read back from
    the rounds, so a link that flaps between lossy and good rounds stays in alert)."""
    query = (
        sa.select(rounds.c.sent, rounds.c.received)
        .where(rounds.c.monitor_id == monitor_id)
        .order_by(rounds.c.at.desc(), rounds.c.id.desc())
        .limit(count)
    )
    latest = (await conn.execute(query)).all()
    losses = [1.0 - row.received / row.sent if row.sent else 1.0 for row in latest]
    return len(losses) >= count and all(loss <= loss_alert for loss in losses)


async def settle_alert(
    conn: AsyncConnection, monitor_id: int, change: str, *, now: datetime
) -> None:
    """Record the alert change `update_alert` returned ("alert": in alert; "recovered": not),
    once its note is queued."""
    values = {"in_alert": change == "alert", "changed_at": now}
    await conn.execute(sa.update(alerts).where(alerts.c.monitor_id == monitor_id).values(**values))


async def alert_key(conn: AsyncConnection, monitor_id: int, change: str) -> str:
    """The key of the note of `change` that update_alert just returned: the same until the
    change is settled (a round that finds it again, after its note was queued but not
    settled, posts nothing more), another for each later change."""
    query = sa.select(alerts.c.changed_at).where(alerts.c.monitor_id == monitor_id)
    since = (await conn.execute(query)).scalar_one()
    return f"connectivity:{change}:{monitor_id}:{since.isoformat()}"


async def in_alert(conn: AsyncConnection, monitor_id: int) -> bool:
    """Whether the monitor is in alert (lost packets for enough rounds, not yet recovered)."""
    query = sa.select(alerts.c.in_alert).where(alerts.c.monitor_id == monitor_id)
    return bool((await conn.execute(query)).scalar())


async def still_running(conn: AsyncConnection, monitor_id: int) -> bool:
    """Whether the monitor is not stopped, read under a row lock (PostgreSQL; SQLite has one
    writer): a stop waits for the round's transaction, or the round sees the stop."""
    query = sa.select(monitors.c.stopped_at).where(monitors.c.id == monitor_id).with_for_update()
    row = (await conn.execute(query)).first()
    return row is not None and row.stopped_at is None
