"""Ticket threads in chat rooms: which root message is a ticket's, and which ticket a root is.

The chat worker runs these for every post, so the statements are built once and bound per
execution (no statement built, compiled or expanded per call)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import bindparam, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from exobot.core.model import Entry, EntryKind
from exobot.db.repository import entry_from_row
from exobot.db.tables import ChatPostRow, ChatThreadRow, EntryRow, ImportedRecordRow

C = ChatThreadRow.__table__
CP = ChatPostRow.__table__
E = EntryRow.__table__
IR = ImportedRecordRow.__table__

_CURRENT_THREAD = (
    select(C).where(C.c.ticket_id == bindparam("ticket")).order_by(C.c.id.desc()).limit(1)
)
# The thread a retried row started from: the ticket's newest root with none of the row's own
# roots at or before it (a NOT EXISTS over the row's posts: no list of event ids to expand).
_OWN = C.alias("own")
_THREAD_BEFORE = (
    select(C)
    .where(
        C.c.ticket_id == bindparam("ticket"),
        ~select(_OWN.c.id)
        .join(CP, (CP.c.room_id == _OWN.c.room_id) & (CP.c.event_id == _OWN.c.root_event_id))
        .where(
            CP.c.outbox_id == bindparam("outbox_id"),
            _OWN.c.ticket_id == C.c.ticket_id,
            _OWN.c.id <= C.c.id,
        )
        .exists(),
    )
    .order_by(C.c.id.desc())
    .limit(1)
)
_POSTED_THREAD = (
    select(C)
    .join(CP, (CP.c.room_id == C.c.room_id) & (CP.c.event_id == C.c.root_event_id))
    .where(CP.c.outbox_id == bindparam("outbox_id"), CP.c.part == bindparam("part"))
)
_THREAD_BY_ROOT = select(C).where(
    C.c.room_id == bindparam("room_id"), C.c.root_event_id == bindparam("root_event_id")
)
_POSTED = select(CP.c.part, CP.c.event_id).where(CP.c.outbox_id == bindparam("outbox_id"))
# ON CONFLICT DO NOTHING in each dialect: a retried post or thread records nothing twice.
_RECORD_THREAD = {
    name: insert(C).on_conflict_do_nothing(index_elements=[C.c.room_id, C.c.root_event_id])
    for name, insert in (("sqlite", sqlite_insert), ("postgresql", pg_insert))
}
_RECORD_POST = {
    name: insert(CP).on_conflict_do_nothing(index_elements=[CP.c.outbox_id, CP.c.part])
    for name, insert in (("sqlite", sqlite_insert), ("postgresql", pg_insert))
}
# What a ticket's root shows besides the ticket row (equalities, not IN: an IN list is expanded
# at every execution).
_FIRST_QUOTED = (
    select(E)
    .where(
        E.c.ticket_id == bindparam("ticket"),
        or_(E.c.kind == EntryKind.MAIL_IN.value, E.c.kind == EntryKind.COMMENT.value),
    )
    .order_by(E.c.id)
    .limit(1)
)
_FLAGS = (
    select(E)
    .where(E.c.ticket_id == bindparam("ticket"), E.c.kind == EntryKind.FLAG.value)
    .order_by(E.c.id)
)
_LAST_STATUS = (
    select(E)
    .where(E.c.ticket_id == bindparam("ticket"), E.c.kind == EntryKind.STATUS.value)
    .order_by(E.c.id.desc())
    .limit(1)
)
_IMPORT_SOURCE = (
    select(IR.c.source).where(IR.c.ticket_id == bindparam("ticket"), IR.c.kind == "ticket").limit(1)
)
_ENTRY_RANGE = select(E).where(E.c.id.between(bindparam("low"), bindparam("high"))).order_by(E.c.id)
# A row's entries come from one transaction, so their ids are (nearly) consecutive: read as
# a range, unless it is wider than this (then the repository's IN list).
ENTRY_RANGE_MAX = 64

@dataclass(frozen=True)
class Thread:
    """A ticket's root message in a room."""

    ticket: int
    queue: str
    room_id: str
    root_event_id: str


def _thread(row) -> Thread:  # noqa: ANN001 - a result row
    return Thread(row.ticket_id, row.queue, row.room_id, row.root_event_id)


async def current_thread(conn: AsyncConnection, ticket: int) -> Thread | None:
    """The ticket's newest root message (the one its posts go to), or None."""
    row = (await conn.execute(_CURRENT_THREAD, {"ticket": ticket})).first()
    return _thread(row) if row else None


async def thread_before(conn: AsyncConnection, ticket: int, outbox_id: int) -> Thread | None:
    """The thread outbox row `outbox_id` started from, for a retry: the ticket's newest root
    message older than every root the row posted itself (`current_thread` would be the row's
    own new root after a move), or None when the ticket had none then."""
    row = (await conn.execute(_THREAD_BEFORE, {"ticket": ticket, "outbox_id": outbox_id})).first()
    return _thread(row) if row else None


async def posted_thread(conn: AsyncConnection, outbox_id: int, part: int) -> Thread | None:
    """The thread whose root is part `part` of outbox row `outbox_id`, or None."""
    row = (await conn.execute(_POSTED_THREAD, {"outbox_id": outbox_id, "part": part})).first()
    return _thread(row) if row else None


async def thread_by_root(conn: AsyncConnection, room_id: str, root_event_id: str) -> Thread | None:
    """The ticket whose root message this is (an old root of a moved ticket too), or None."""
    params = {"room_id": room_id, "root_event_id": root_event_id}
    row = (await conn.execute(_THREAD_BY_ROOT, params)).first()
    return _thread(row) if row else None


async def record_thread(conn: AsyncConnection, thread: Thread, now: datetime | None = None) -> None:
    """Remember a root message, at `now` (the caller's clock; None: the system's); recording
    the same root twice (a retried post) is harmless."""
    await conn.execute(
        _RECORD_THREAD[conn.dialect.name],
        {
            "ticket_id": thread.ticket,
            "queue": thread.queue,
            "room_id": thread.room_id,
            "root_event_id": thread.root_event_id,
            "created_at": now or datetime.now(UTC),
        },
    )


async def note_listed(
    conn: AsyncConnection, outbox_id: int, event_id: str, tickets: Sequence[int]
) -> None:
    """Record on a post just recorded (record_post) the tickets it showed besides its row's
    own (a digest's): an erasure redacts the posts that showed a ticket it erases. The
    post's row, not the outbox row, which its worker holds claimed while it posts."""
    await conn.execute(
        update(CP)
        .where(CP.c.outbox_id == outbox_id, CP.c.event_id == event_id)
        .values(tickets=sorted(set(tickets)))
    )


async def posted(conn: AsyncConnection, outbox_id: int) -> dict[int, str]:
    """The parts of an outbox row already posted: part number → event id."""
    rows = await conn.execute(_POSTED, {"outbox_id": outbox_id})
    return {part: event_id for part, event_id in rows}


async def record_post(
    conn: AsyncConnection,
    outbox_id: int,
    part: int,
    room_id: str,
    event_id: str,
    now: datetime | None = None,
    addresses: Sequence[str] | None = None,
) -> None:
    """Remember that a part of an outbox row was posted as `event_id`, at `now` (None: the
    system's time), with the digests of the addresses it showed (exobot.privacy.concerns.shown_addresses; None for
    what shows nothing written, a redaction)."""
    await conn.execute(
        _RECORD_POST[conn.dialect.name],
        {
            "outbox_id": outbox_id,
            "part": part,
            "room_id": room_id,
            "event_id": event_id,
            "created_at": now or datetime.now(UTC),
            "addresses": None if addresses is None else list(addresses),
        },
    )


async def entries(conn: AsyncConnection, ids: Sequence[int]) -> list[Entry] | None:
    """These history entries, oldest first, read as the range of their ids; None when the
    range is too wide for that (the caller asks the repository)."""
    if not ids:
        return []
    low, high = min(ids), max(ids)
    if high - low > ENTRY_RANGE_MAX:
        return None
    wanted = set(ids)
    rows = await conn.execute(_ENTRY_RANGE, {"low": low, "high": high})
    return [entry_from_row(r) for r in rows if r.id in wanted]


async def first_quoted(conn: AsyncConnection, ticket: int) -> Entry | None:
    """The entry a ticket's root quotes: its first mail or comment."""
    row = (await conn.execute(_FIRST_QUOTED, {"ticket": ticket})).first()
    return entry_from_row(row) if row else None


async def flag_entries(conn: AsyncConnection, ticket: int) -> list[Entry]:
    """The ticket's flag entries, oldest first (exobot.core.flags.active_flags reads them)."""
    return [entry_from_row(r) for r in await conn.execute(_FLAGS, {"ticket": ticket})]


async def last_status(conn: AsyncConnection, ticket: int) -> Entry | None:
    """The ticket's newest status change."""
    row = (await conn.execute(_LAST_STATUS, {"ticket": ticket})).first()
    return entry_from_row(row) if row else None


async def import_source(conn: AsyncConnection, ticket: int) -> str | None:
    """The other helpdesk the ticket was imported from, or None."""
    return (await conn.execute(_IMPORT_SOURCE, {"ticket": ticket})).scalar_one_or_none()
