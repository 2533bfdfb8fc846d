"""Received mail as raw bytes: stored before parsing, then processed, quarantined or discarded."""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from datetime import UTC, datetime

from sqlalchemy import bindparam, func, or_, select, true, update
from sqlalchemy.ext.asyncio import AsyncConnection

from exobot.core.references import is_stored_id
from exobot.db.engine import upsert_insert
from exobot.db.state import get_state, set_state
from exobot.db.tables import InboundMailRow

I = InboundMailRow.__table__  # noqa: E741

RECEIVED = "received"
QUARANTINED = "quarantined"
FINAL_STATES = ("done", "duplicate", "dropped", "ignored", "discarded")
STATES = (RECEIVED, QUARANTINED, *FINAL_STATES)


@dataclass(frozen=True)
class ImapPosition:
    """Where intake stands in one mailbox: only (mailbox, UIDVALIDITY, UID) names a message."""

    uidvalidity: int
    last_uid: int


@dataclass(frozen=True)
class InboundSummary:
    """One stored raw mail, without its bytes."""

    id: int
    mailbox: str
    uidvalidity: int
    uid: int
    size: int
    message_id: str | None
    subject: str | None
    sender: str | None
    state: str
    ticket_id: int | None
    error: str | None
    attempts: int
    received_at: datetime


def _position_key(mailbox: str) -> str:
    return f"imap-position:{mailbox}"


async def get_position(conn: AsyncConnection, mailbox: str) -> ImapPosition | None:
    """The saved IMAP position of a mailbox, or None when intake never ran on it."""
    value = await get_state(conn, _position_key(mailbox))
    if value is None:
        return None
    data = json.loads(value)
    return ImapPosition(int(data["uidvalidity"]), int(data["last_uid"]))


async def set_position(conn: AsyncConnection, mailbox: str, position: ImapPosition) -> None:
    """Save the IMAP position of a mailbox."""
    value = json.dumps({"uidvalidity": position.uidvalidity, "last_uid": position.last_uid})
    await set_state(conn, _position_key(mailbox), value)


async def store_many(
    conn: AsyncConnection,
    mailbox: str,
    uidvalidity: int,
    messages: list[tuple],
    now: datetime | None = None,
) -> None:
    """Store received messages and advance the position past them, in the caller's transaction.

    Each message is (UID, raw bytes), or (UID, header bytes, real size) for a mail too big to
    fetch whole: only its header is stored (see `PendingMail.header_only`).
    A (mailbox, UIDVALIDITY, UID) stored before is left as it is. `now` (the caller's clock;
    None: the system's) is stamped as the time they were received.
    """
    if not messages:
        return
    now = now or datetime.now(UTC)
    rows = [
        {"mailbox": mailbox, "uidvalidity": uidvalidity, "uid": uid, "raw": raw,
         "size": size[0] if size else len(raw), "state": RECEIVED, "attempts": 0,
         "received_at": now}
        for uid, raw, *size in messages
    ]  # fmt: skip
    await conn.execute(
        upsert_insert(conn, I).on_conflict_do_nothing(
            index_elements=[I.c.mailbox, I.c.uidvalidity, I.c.uid]
        ),
        rows,
    )
    last_uid = max(message[0] for message in messages)
    position = await get_position(conn, mailbox)
    if position is None or position.uidvalidity != uidvalidity or position.last_uid < last_uid:
        await set_position(conn, mailbox, ImapPosition(uidvalidity, last_uid))


async def pending(conn: AsyncConnection, limit: int = 20) -> list[tuple[int, bytes]]:
    """Stored mails not processed yet, oldest first, with their raw bytes."""
    rows = await conn.execute(
        select(I.c.id, I.c.raw).where(I.c.state == RECEIVED).order_by(I.c.id).limit(limit)
    )
    return [(r[0], bytes(r[1])) for r in rows]


@dataclass(frozen=True)
class PendingMail:
    """A stored mail to process: its bytes and what processing needs to know about them."""

    id: int
    raw: bytes
    size: int  # the mail's real size (RFC822.SIZE for a header-only row)
    attempts: int  # processing passes started on it (see `begin_attempts`)

    @property
    def header_only(self) -> bool:
        """Only the header was fetched: the mail was over the size limit."""
        return self.size > len(self.raw)


_PENDING_COLUMNS = (I.c.id, I.c.raw, I.c.size, I.c.attempts)


def _pending_mail(row) -> PendingMail:  # noqa: ANN001 - a result row
    return PendingMail(row[0], bytes(row[1]), row[2], row[3])


async def pending_mails(
    conn: AsyncConnection, limit: int = 20, max_bytes: int | None = None
) -> list[PendingMail]:
    """Stored mails not processed yet, oldest first: at most `limit` of them and, with
    `max_bytes`, only as many as fit in it together (the first one always, whatever its size):
    a backlog of big mails must not all be held in memory at once."""
    oldest = (
        select(I.c.id, I.c.size).where(I.c.state == RECEIVED).order_by(I.c.id).limit(limit)
    ).subquery()
    running = select(
        oldest.c.id,
        func.sum(oldest.c.size).over(order_by=oldest.c.id).label("total"),
        func.row_number().over(order_by=oldest.c.id).label("place"),
    ).subquery()
    fits = true() if max_bytes is None else or_(running.c.place == 1, running.c.total <= max_bytes)
    rows = await conn.execute(
        select(*_PENDING_COLUMNS).join(running, running.c.id == I.c.id).where(fits).order_by(I.c.id)
    )
    return [_pending_mail(r) for r in rows]


async def load_mail(conn: AsyncConnection, inbound_id: int) -> PendingMail | None:
    """One stored mail, in whatever state."""
    row = (await conn.execute(select(*_PENDING_COLUMNS).where(I.c.id == inbound_id))).first()
    return _pending_mail(row) if row else None


async def begin_attempts(conn: AsyncConnection, inbound_ids: list[int]) -> None:
    """Count a processing pass started on received mails, before it starts: a mail whose
    passes never finish (the process died while handling it) is recognised by its count."""
    if inbound_ids:
        await conn.execute(
            update(I)
            .where(I.c.id.in_(inbound_ids), I.c.state == RECEIVED)
            .values(attempts=I.c.attempts + 1)
        )


async def undo_attempts(conn: AsyncConnection, inbound_ids: list[int]) -> None:
    """Un-count passes that were stopped on purpose (exobot stopping): they were not the
    mail's fault."""
    if inbound_ids:
        await conn.execute(
            update(I)
            .where(I.c.id.in_(inbound_ids), I.c.state == RECEIVED, I.c.attempts > 0)
            .values(attempts=I.c.attempts - 1)
        )


async def load_raw(conn: AsyncConnection, inbound_id: int) -> tuple[bytes, str] | None:
    """The raw bytes and state of one stored mail."""
    row = (await conn.execute(select(I.c.raw, I.c.state).where(I.c.id == inbound_id))).first()
    return (bytes(row[0]), row[1]) if row else None


_MARK_INBOUND = update(I).where(I.c.id == bindparam("_inbound_id"))


async def mark_inbound(
    conn: AsyncConnection,
    inbound_id: int,
    state: str,
    *,
    ticket: int | None = None,
    error: str | None = None,
    message_id: str | None = None,
    subject: str | None = None,
    sender: str | None = None,
    now: datetime | None = None,
) -> None:
    """Record what became of a stored mail, at `now` (the caller's clock; None: the system's)."""
    values: dict = {"state": state, "processed_at": now or datetime.now(UTC), "error": error}
    if ticket is not None:
        values["ticket_id"] = ticket
    for name, value in (("message_id", message_id), ("subject", subject), ("sender", sender)):
        if value is not None:
            values[name] = value[:500]
    if state == QUARANTINED:
        values["attempts"] = I.c.attempts + 1
        await conn.execute(update(I).where(I.c.id == inbound_id).values(**values))
        return
    # Every processed mail comes here: the statement is built once, the values bound to it.
    await conn.execute(_MARK_INBOUND, {"_inbound_id": inbound_id, **values})


async def discard(conn: AsyncConnection, inbound_id: int, now: datetime | None = None) -> bool:
    """Set a quarantined mail aside for good (kept, never processed), at `now` (None: the
    system's time); False when there is no quarantined mail with that id. One conditional
    UPDATE: a retry running at the same time cannot be undone by it."""
    if not is_stored_id(inbound_id):
        return False
    result = await conn.execute(
        update(I)
        .where(I.c.id == inbound_id, I.c.state == QUARANTINED)
        .values(state="discarded", processed_at=now or datetime.now(UTC))
    )
    return bool(result.rowcount)


async def list_inbound(
    conn: AsyncConnection, state: str | None = QUARANTINED, limit: int = 100
) -> list[InboundSummary]:
    """Stored mails in a state (quarantine by default), newest first."""
    query = select(*[c for c in I.c if c.name != "raw"]).order_by(I.c.id.desc()).limit(limit)
    if state is not None:
        query = query.where(I.c.state == state)
    return [_summary(r) for r in await conn.execute(query)]


async def get_inbound(conn: AsyncConnection, inbound_id: int) -> InboundSummary | None:
    """One stored mail's summary (None for an id no row can have)."""
    if not is_stored_id(inbound_id):
        return None
    query = select(*[c for c in I.c if c.name != "raw"]).where(I.c.id == inbound_id)
    row = (await conn.execute(query)).first()
    return _summary(row) if row else None


async def count_by_state(conn: AsyncConnection) -> dict[str, int]:
    """How many stored mails are in each state."""
    rows = await conn.execute(select(I.c.state, func.count()).group_by(I.c.state))
    return {state: count for state, count in rows}


def _summary(row) -> InboundSummary:  # noqa: ANN001 - a result row
    return InboundSummary(**{f.name: getattr(row, f.name) for f in fields(InboundSummary)})
