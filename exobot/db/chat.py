"""Ticket threads in chat rooms: which root message is a ticket's, and which ticket a root is."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from exobot.db.engine import upsert_insert
from exobot.db.tables import ChatPostRow, ChatThreadRow

C = ChatThreadRow.__table__
CP = ChatPostRow.__table__


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
    row = (
        await conn.execute(
            select(C).where(C.c.ticket_id == ticket).order_by(C.c.id.desc()).limit(1)
        )
    ).first()
    return _thread(row) if row else None


async def thread_by_root(conn: AsyncConnection, room_id: str, root_event_id: str) -> Thread | None:
    """The ticket whose root message this is (an old root of a moved ticket too), or None."""
    row = (
        await conn.execute(
            select(C).where(C.c.room_id == room_id, C.c.root_event_id == root_event_id)
        )
    ).first()
    return _thread(row) if row else None


async def record_thread(conn: AsyncConnection, thread: Thread, now: datetime | None = None) -> None:
    """Remember a root message, at `now` (the caller's clock; None: the system's); recording
    the same root twice (a retried post) is harmless."""
    await conn.execute(
        upsert_insert(conn, C)
        .values(
            ticket_id=thread.ticket,
            queue=thread.queue,
            room_id=thread.room_id,
            root_event_id=thread.root_event_id,
            created_at=now or datetime.now(UTC),
        )
        .on_conflict_do_nothing(index_elements=[C.c.room_id, C.c.root_event_id])
    )


async def posted(conn: AsyncConnection, outbox_id: int) -> dict[int, str]:
    """The parts of an outbox row already posted: part number → event id."""
    rows = await conn.execute(select(CP.c.part, CP.c.event_id).where(CP.c.outbox_id == outbox_id))
    return {part: event_id for part, event_id in rows}


async def record_post(
    conn: AsyncConnection,
    outbox_id: int,
    part: int,
    room_id: str,
    event_id: str,
    now: datetime | None = None,
) -> None:
    """Remember that a part of an outbox row was posted as `event_id`, at `now` (None: the
    system's time)."""
    await conn.execute(
        upsert_insert(conn, CP)
        .values(
            outbox_id=outbox_id,
            part=part,
            room_id=room_id,
            event_id=event_id,
            created_at=now or datetime.now(UTC),
        )
        .on_conflict_do_nothing(index_elements=[CP.c.outbox_id, CP.c.part])
    )
