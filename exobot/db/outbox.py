"""The outbox: outward effects written with the change that caused them, delivered by workers."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, case, exists, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.orm import aliased

from exobot.core.model import EntryKind
from exobot.core.references import is_stored_id
from exobot.db.tables import EntryRow, OutboxRow

O = OutboxRow.__table__  # noqa: E741
E = EntryRow.__table__

PENDING, SENT, FAILED = "pending", "sent", "failed"
# The template of a row queued with `queue_later` starts so: such a row waits for the earlier
# rows of its ticket but never holds back the later ones (a root edit due in 5 s must not
# delay the thread's posts).
LATER = "later:"
# A row queued for later also yields to the rows due now: in a burst the new posts go first
# and the root edits follow, unless one has waited this long past its time (then it goes in
# its turn, so a worker that is never idle still gets to it).
LATER_YIELDS_FOR = timedelta(seconds=30)


@dataclass(frozen=True)
class OutboxItem:
    """One outward effect waiting for delivery."""

    id: int
    kind: str
    ticket_id: int | None
    payload: dict[str, Any]
    attempts: int
    created_at: datetime | None = None  # when the change that queued it was made


def _queued_for_later(table):  # noqa: ANN001, ANN202 - the outbox table or an alias of it
    """True for a row queued with `queue_later` (its template starts with LATER)."""
    return table.c.template.startswith(LATER)


def _head_of_line():  # noqa: ANN202 - an SQL expression
    """True for a pending item with no earlier pending item of the same kind and ticket
    (rows queued for later, LATER, hold nothing back)."""
    earlier = aliased(O)
    return ~exists().where(
        and_(
            earlier.c.state == PENDING,
            earlier.c.kind == O.c.kind,
            earlier.c.ticket_id == O.c.ticket_id,
            earlier.c.id < O.c.id,
            or_(earlier.c.template.is_(None), ~_queued_for_later(earlier)),
        )
    )


@functools.cache
def _due(unattached_first: bool):  # noqa: ANN202 - a statement
    """The statement of `due`, built once per order: the workers ask it at every pass."""
    yielding = and_(_queued_for_later(O), O.c.next_try_at > bindparam("yield_since"))
    order = (case((yielding, 1), else_=0), O.c.id)
    if unattached_first:
        order = (O.c.ticket_id.is_not(None), *order)
    return (
        select(O.c.id, O.c.kind, O.c.ticket_id, O.c.payload, O.c.attempts, O.c.created_at)
        .where(
            O.c.state == PENDING,
            O.c.kind == bindparam("kind"),
            O.c.next_try_at <= bindparam("now"),
            _head_of_line(),
        )
        .order_by(*order)
        .limit(bindparam("limit"))
    )


async def due(
    conn: AsyncConnection,
    kind: str,
    now: datetime,
    limit: int = 50,
    *,
    unattached_first: bool = False,
) -> list[OutboxItem]:
    """Pending items of `kind` whose time has come, oldest first, never overtaking an earlier
    pending item of the same ticket (so a ticket's effects arrive in order).

    Items queued for later (a ticket's root edit) come after the others, unless they have
    waited LATER_YIELDS_FOR past their time: a burst's new posts are not held up by edits of
    what is already shown.

    With `unattached_first`, the items of no ticket (answers to chat commands, login links,
    notices) come before every ticket's, still oldest first among themselves: a volunteer's
    answer does not wait behind a burst of announcements. Each ticket's order is unchanged."""
    params = {"kind": kind, "now": now, "limit": limit, "yield_since": now - LATER_YIELDS_FOR}
    rows = await conn.execute(_due(unattached_first), params)
    return [
        OutboxItem(r.id, r.kind, r.ticket_id, dict(r.payload), r.attempts, r.created_at)
        for r in rows
    ]


# Every item sent on PostgreSQL is claimed: the statement is built once, the id bound per item.
_CLAIM = (
    select(O.c.id)
    .where(O.c.id == bindparam("item_id"), O.c.state == PENDING)
    .with_for_update(key_share=True, skip_locked=True)
)


async def claim(conn: AsyncConnection, item_id: int) -> bool:
    """PostgreSQL: lock a still pending item for the rest of `conn`'s transaction, or return
    False at once when another transaction holds it (SKIP LOCKED) or it is no longer pending.
    The worker keeps that transaction open while it sends and marks the item, so two workers
    (two instances, for a moment both believing they lead) never send the same row.

    FOR NO KEY UPDATE, not FOR UPDATE: it excludes every other claimer and update of the row
    alike, but not the key-share lock a foreign key check takes, so the worker's own records
    that point at the row (chat posts) are written meanwhile in other transactions."""
    row = await conn.execute(_CLAIM, {"item_id": item_id})
    return row.first() is not None


# Asked after every pass of every worker, as `due` is: built once.
_NEXT_DUE_AT = (
    select(O.c.next_try_at)
    .where(O.c.state == PENDING, O.c.kind == bindparam("kind"), _head_of_line())
    .order_by(O.c.next_try_at)
    .limit(1)
)


async def next_due_at(conn: AsyncConnection, kind: str) -> datetime | None:
    """When the next deliverable item of `kind` is due (items waiting behind an earlier one of
    their ticket do not count), or None when there is none."""
    return (await conn.execute(_NEXT_DUE_AT, {"kind": kind})).scalar_one_or_none()


# Every delivered item is marked so: the statement is built once, its values bound per item.
_MARK_SENT = (
    update(O)
    .where(O.c.id == bindparam("_item_id"))
    .values(state=SENT, done_at=bindparam("_done_at"), attempts=O.c.attempts + 1, last_error=None)
)


async def mark_sent(conn: AsyncConnection, item_id: int, now: datetime | None = None) -> None:
    """The effect happened, at `now` (the worker's clock; None: the system's)."""
    await conn.execute(_MARK_SENT, {"_item_id": item_id, "_done_at": now or datetime.now(UTC)})


async def mark_retry(conn: AsyncConnection, item_id: int, error: str, next_try: datetime) -> None:
    """A temporary failure: try again at `next_try`."""
    await conn.execute(
        update(O)
        .where(O.c.id == item_id)
        .values(attempts=O.c.attempts + 1, last_error=error[:2000], next_try_at=next_try)
    )


async def mark_waiting(
    conn: AsyncConnection, item_id: int, error: str, next_try: datetime
) -> None:
    """The other side was unreachable: try again at `next_try`, no attempt counted."""
    await conn.execute(
        update(O).where(O.c.id == item_id).values(last_error=error[:2000], next_try_at=next_try)
    )


async def mark_failed(
    conn: AsyncConnection, item_id: int, error: str, now: datetime | None = None
) -> None:
    """A permanent failure: the item stays, visible, with its error (given up at `now`; None:
    the system's time)."""
    await conn.execute(
        update(O)
        .where(O.c.id == item_id)
        .values(
            state=FAILED,
            attempts=O.c.attempts + 1,
            last_error=error[:2000],
            done_at=now or datetime.now(UTC),
        )
    )


def _entry_about_row(entry, kind: EntryKind):  # noqa: ANN001, ANN202 - an alias; SQL
    """True for an entry of `kind` on the row's ticket that names the row (`outbox_id`)."""
    return and_(
        entry.c.ticket_id == O.c.ticket_id,
        entry.c.kind == kind.value,
        entry.c.data["outbox_id"].as_integer() == O.c.id,
    )


_REPORT = E.alias("report")
_RETRY = E.alias("retry")
# The row's give-up is on its ticket: a DELIVERY_FAILED entry naming it (not a note of a Cc
# address left out, `skipped`, which names a mail that was delivered, or is queued with it)
# with no DELIVERY_RETRIED entry of the row after it (`exobot outbox retry` made the row
# pending again since: a give-up after that one is another, still to be told). Entry ids, not
# times: the entry's stamp is the service's clock, the row's the worker's, and a row retried
# by hand may be given up again within the same second.
_REPORTED = (
    select(_REPORT.c.id)
    .where(
        _entry_about_row(_REPORT, EntryKind.DELIVERY_FAILED),
        _REPORT.c.data["skipped"].as_boolean().is_not(True),
        ~select(_RETRY.c.id)
        .where(_entry_about_row(_RETRY, EntryKind.DELIVERY_RETRIED), _RETRY.c.id > _REPORT.c.id)
        .exists(),
    )
    .exists()
)
_UNREPORTED = (
    select(
        O.c.id, O.c.kind, O.c.ticket_id, O.c.payload, O.c.attempts, O.c.created_at, O.c.last_error
    )
    .where(
        O.c.state == FAILED,
        O.c.kind == bindparam("kind"),
        O.c.ticket_id.is_not(None),
        O.c.done_at >= bindparam("since"),
        O.c.id > bindparam("after"),
        ~_REPORTED,
    )
    .order_by(O.c.id)
    .limit(bindparam("limit"))
)


_GIVE_UP_REPORTED = select(O.c.id).where(O.c.id == bindparam("outbox_id"), _REPORTED)


async def give_up_reported(conn: AsyncConnection, outbox_id: int) -> bool:
    """Whether the ticket of an item already tells its give-up (as `unreported` reads it):
    two workers reporting one give-up (one's report at its start, the other's as it gave up)
    write it once."""
    found = await conn.execute(_GIVE_UP_REPORTED, {"outbox_id": outbox_id})
    return found.first() is not None


async def unreported(
    conn: AsyncConnection, kind: str, since: datetime, after: int = 0, limit: int = 100
) -> list[tuple[OutboxItem, str]]:
    """Items of `kind` about a ticket given up at `since` or later whose give-up the ticket
    does not tell (the process died, or the database failed, between the mark and the
    report), after id `after`, oldest first, at most `limit`: each with its last error."""
    params = {"kind": kind, "since": since, "after": after, "limit": limit}
    rows = await conn.execute(_UNREPORTED, params)
    return [
        (
            OutboxItem(r.id, r.kind, r.ticket_id, dict(r.payload), r.attempts, r.created_at),
            r.last_error or "",
        )
        for r in rows
    ]


@dataclass(frozen=True)
class GivenUp:
    """An item given up for good, as the administrator's `exobot outbox` shows it: what it
    was (a mail's template, a chat row's type) and why it was given up, never its text."""

    id: int
    kind: str
    ticket_id: int | None
    what: str
    recipient: str | None
    attempts: int
    created_at: datetime
    done_at: datetime | None
    error: str


def _given_up(row) -> GivenUp:  # noqa: ANN001 - a result row
    return GivenUp(
        row.id,
        row.kind,
        row.ticket_id,
        (row.what or "?").removeprefix(LATER),
        row.recipient,
        row.attempts,
        row.created_at,
        row.done_at,
        row.last_error or "",
    )


# What an item was, read in the database: a mail's template, a chat row's type (a queued-for-
# later row's template names its key). Never the payload itself, which may be megabytes (a
# plugin's image).
_WHAT = func.coalesce(O.c.template, O.c.payload["type"].as_string()).label("what")
_GIVEN_UP = select(
    O.c.id,
    O.c.kind,
    O.c.ticket_id,
    _WHAT,
    O.c.recipient,
    O.c.attempts,
    O.c.created_at,
    O.c.done_at,
    O.c.last_error,
).where(O.c.state == FAILED)


async def given_up(conn: AsyncConnection, limit: int | None) -> tuple[list[GivenUp], int]:
    """The newest `limit` items given up (None: all), newest first, and how many there are
    in all."""
    total = (
        await conn.execute(select(func.count()).select_from(O).where(O.c.state == FAILED))
    ).scalar_one()
    rows = await conn.execute(_GIVEN_UP.order_by(O.c.id.desc()).limit(limit))
    return [_given_up(row) for row in rows], total


async def given_up_item(conn: AsyncConnection, item_id: int) -> GivenUp | None:
    """One item given up, or None when no item with that id was given up (also for an id no
    row can have: `exobot outbox show 99999999999999999999` overflowed the query)."""
    if not is_stored_id(item_id):
        return None
    row = (await conn.execute(_GIVEN_UP.where(O.c.id == item_id))).first()
    return _given_up(row) if row is not None else None


async def retry_failed(
    conn: AsyncConnection, item_id: int, now: datetime
) -> tuple[str, int | None, str | None] | None:
    """Make a given-up item pending again, due at `now`, its attempts counted anew (its last
    error stays until the next attempt); returns its (kind, ticket, what it is: see _WHAT), or
    None when no item with that id was given up."""
    if not is_stored_id(item_id):
        return None
    row = (
        await conn.execute(
            update(O)
            .where(O.c.id == item_id, O.c.state == FAILED)
            .values(state=PENDING, attempts=0, next_try_at=now, done_at=None)
            .returning(O.c.kind, O.c.ticket_id, _WHAT)
        )
    ).first()
    return (row.kind, row.ticket_id, row.what) if row is not None else None


async def newer_of_type(conn: AsyncConnection, item: OutboxItem, payload_type: str) -> bool:
    """Whether a row of the item's kind and ticket whose payload is of `payload_type` was queued
    after it and not given up: pending, or sent already (the item was put off by an error
    meanwhile). The chat worker drops a digest that a newer one supersedes."""
    same_ticket = (
        O.c.ticket_id.is_(None) if item.ticket_id is None else O.c.ticket_id == item.ticket_id
    )
    found = await conn.execute(
        select(O.c.id)
        .where(
            O.c.id > item.id,
            O.c.kind == item.kind,
            same_ticket,
            O.c.state != FAILED,
            O.c.payload["type"].as_string() == payload_type,
        )
        .limit(1)
    )
    return found.first() is not None


async def counts(conn: AsyncConnection) -> dict[tuple[str, str], int]:
    """How many items there are per (kind, state)."""
    rows = await conn.execute(
        select(O.c.kind, O.c.state, func.count()).group_by(O.c.kind, O.c.state)
    )
    return {(k, s): n for k, s, n in rows}


async def hurry(conn: AsyncConnection, item_id: int, now: datetime) -> None:
    """Make a pending item due now (what it waited for has happened)."""
    await conn.execute(
        update(O).where(O.c.id == item_id, O.c.state == PENDING).values(next_try_at=now)
    )
