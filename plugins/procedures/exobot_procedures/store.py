"""The procedures, their append-only history, and the member directory (SQLAlchemy Core on the
plugin's own MetaData; the tables are created by the plugin's Alembic branch, `migrations/`).

Every function takes `conn`, anything with an awaitable `execute`: an AsyncConnection from
`ctx.connection()` / `ctx.reading()`, or the connection of a new mail's transaction (the
mail hook), so the same code serves both. Times come from the caller (the one clock).

Append-only: a procedure's state changes only together with a new event row, in the same
statement's transaction, and only from `pending` (a conditional UPDATE, so two operators
finishing it at once cannot both succeed); events and directory changes are never deleted or
edited (an event's `settled_at` only records that its effects were applied). Nothing refers
to the core's `tickets` table by foreign key: the record survives a ticket's purge.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from exobot.db.tables import UtcDateTime

metadata = sa.MetaData()

STATES = ("pending", "done", "cancelled")
EVENT_KINDS = ("created", "done", "cancelled")
MEMBER_CHANGES = ("added", "updated", "deactivated", "reactivated", "linked")
MAX_NOTE = 1000

procedures = sa.Table(
    "procedures",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("type", sa.String(64), nullable=False),
    # A member number, or the requestor's address for a join of someone without one yet.
    sa.Column("member", sa.String(254), nullable=False),
    sa.Column("service", sa.String(200), nullable=True),
    sa.Column("ticket", sa.Integer, nullable=False),  # no foreign key: survives a purge
    sa.Column("state", sa.String(12), nullable=False),
    sa.Column("asked_by", sa.String(255), nullable=False),
    sa.Column("asked_at", UtcDateTime(), nullable=False),
    sa.Column("processed_by", sa.String(255), nullable=True),
    sa.Column("processed_at", UtcDateTime(), nullable=True),
    sa.Column("note", sa.Text, nullable=False, default=""),
    sa.Index("ix_procedures_ticket", "ticket"),
    sa.Index("ix_procedures_member", "member"),
    sa.Index("ix_procedures_state_asked", "state", "asked_at"),
    sa.Index("ix_procedures_asked", "asked_at"),
)

events = sa.Table(
    "procedures_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("procedure_id", sa.Integer, sa.ForeignKey("procedures.id"), nullable=False),
    sa.Column("at", UtcDateTime(), nullable=False),
    sa.Column("actor", sa.String(255), nullable=False),
    sa.Column("kind", sa.String(12), nullable=False),
    sa.Column("note", sa.Text, nullable=False, default=""),
    # The effects still to apply through the ticket service ("move", "notify"), as JSON.
    sa.Column("effects", sa.Text, nullable=False, default="[]"),
    sa.Column("settled_at", UtcDateTime(), nullable=True),
    # The member number given at this step (a join done for a requestor without one).
    sa.Column("member", sa.String(254), nullable=True),
    # The idempotency key of the request that wrote it (`ActionCall.key`), recorded in the
    # same transaction so a request delivered again finds it (migration procedures_0002).
    sa.Column("request_key", sa.String(), nullable=True),
    # The fingerprint of that request when the channel has one (the API's: sha256 of its
    # method, path and body), so the key sent again with another request is refused instead
    # of taken for a retry; None for chat's and the forms' keys and the events written before
    # migration procedures_0003.
    sa.Column("request_hash", sa.String(), nullable=True),
    sa.Index("ix_procedures_events_procedure", "procedure_id"),
    sa.Index("ix_procedures_events_settled", "settled_at"),
    sa.Index("ux_procedures_events_request_key", "request_key", unique=True),
)

members = sa.Table(
    "procedures_members",
    metadata,
    sa.Column("number", sa.String(64), primary_key=True),
    sa.Column("address", sa.String(254), nullable=True),  # lower case
    sa.Column("address2", sa.String(254), nullable=True),
    sa.Column("active", sa.Boolean, nullable=False),
    sa.Column("since", UtcDateTime(), nullable=True),
    sa.Column("until", UtcDateTime(), nullable=True),
    sa.Column("updated_at", UtcDateTime(), nullable=False),
    sa.Index("ix_procedures_members_address", "address"),
    sa.Index("ix_procedures_members_address2", "address2"),
)

member_changes = sa.Table(
    "procedures_member_changes",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("number", sa.String(64), nullable=False),
    sa.Column("at", UtcDateTime(), nullable=False),
    sa.Column("actor", sa.String(255), nullable=False),
    sa.Column("change", sa.String(12), nullable=False),
    sa.Column("detail", sa.String(500), nullable=False, default=""),
    sa.Index("ix_procedures_member_changes_number", "number"),
)

ticket_members = sa.Table(
    "procedures_ticket_members",
    metadata,
    sa.Column("ticket", sa.Integer, primary_key=True),
    sa.Column("member", sa.String(64), nullable=False),
    sa.Column("linked_by", sa.String(255), nullable=False),
    sa.Column("linked_at", UtcDateTime(), nullable=False),
)


@dataclass(frozen=True)
class Procedure:
    """One procedure: what was asked for whom, on which ticket, and where it stands."""

    id: int
    type: str
    member: str
    service: str | None
    ticket: int
    state: str  # "pending" | "done" | "cancelled"
    asked_by: str
    asked_at: datetime
    processed_by: str | None
    processed_at: datetime | None
    note: str

    @property
    def ref(self) -> str:
        """Its public reference, `P-12`."""
        return f"P-{self.id}"


@dataclass(frozen=True)
class ProcedureEvent:
    """One line of a procedure's history: created, done or cancelled, by whom and when, with
    the effects (`move`, `notify`) that were still to apply and when they were."""

    id: int
    procedure_id: int
    at: datetime
    actor: str
    kind: str  # "created" | "done" | "cancelled"
    note: str
    effects: tuple[str, ...]
    settled_at: datetime | None
    member: str | None = None  # the member number given at this step, if any
    request_key: str | None = None  # the idempotency key of the request that wrote it
    request_hash: str | None = None  # that request's fingerprint, when its channel has one


@dataclass(frozen=True)
class Member:
    """One entry of the member directory."""

    number: str
    address: str | None
    address2: str | None
    active: bool
    since: datetime | None
    until: datetime | None
    updated_at: datetime

    @property
    def addresses(self) -> tuple[str, ...]:
        """Its addresses that are set."""
        return tuple(a for a in (self.address, self.address2) if a)


@dataclass(frozen=True)
class MemberChange:
    """One change of the directory: which member, when, who, what (field names, never values,
    or the procedure reference / ticket that caused it)."""

    number: str
    at: datetime
    actor: str
    change: str  # "added" | "updated" | "deactivated" | "reactivated" | "linked"
    detail: str


@dataclass(frozen=True)
class ProcedureFilter:
    """What `search` selects; `since` ≤ asked_at < `until`."""

    type: str | None = None
    state: str | None = None
    member: str | None = None
    ticket: int | None = None
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True)
class MemberRow:
    """One member as an import reads it (addresses already checked and in lower case; `active`
    None when the export has no such column)."""

    number: str
    address: str | None
    address2: str | None = None
    active: bool | None = None


@dataclass
class ImportSummary:
    """What an import changed, by member number; `fields` names what changed per number."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    deactivated: list[str] = field(default_factory=list)
    reactivated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    fields: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        """Whether anything changed."""
        return bool(self.added or self.updated or self.deactivated or self.reactivated)


class StateError(Exception):
    """Finishing a procedure that is not pending; `procedure` is the one as it stands."""

    def __init__(self, procedure: Procedure) -> None:
        super().__init__(f"{procedure.ref} is {procedure.state}, not pending")
        self.procedure = procedure


# --- rows ------------------------------------------------------------------------------------


def _procedure(row: Any) -> Procedure:
    return Procedure(
        row.id,
        row.type,
        row.member,
        row.service,
        row.ticket,
        row.state,
        row.asked_by,
        row.asked_at,
        row.processed_by,
        row.processed_at,
        row.note or "",
    )


def _event(row: Any) -> ProcedureEvent:
    return ProcedureEvent(
        row.id,
        row.procedure_id,
        row.at,
        row.actor,
        row.kind,
        row.note or "",
        tuple(json.loads(row.effects or "[]")),
        row.settled_at,
        row.member,
        row.request_key,
        row.request_hash,
    )


def _member(row: Any) -> Member:
    return Member(
        row.number,
        row.address,
        row.address2,
        bool(row.active),
        row.since,
        row.until,
        row.updated_at,
    )


async def _insert_event(
    conn: Any,
    procedure_id: int,
    *,
    kind: str,
    actor: str,
    note: str,
    now: datetime,
    effects: Sequence[str],
    member: str | None = None,
    request_key: str | None = None,
    request_hash: str | None = None,
) -> ProcedureEvent:
    values = {
        "procedure_id": procedure_id,
        "at": now,
        "actor": actor,
        "kind": kind,
        "note": note,
        "effects": json.dumps(list(effects)),
        "settled_at": None if effects else now,
        "member": member,
        "request_key": request_key,
        "request_hash": request_hash,
    }
    result = await conn.execute(sa.insert(events).values(**values))
    event_id = int(result.inserted_primary_key[0])
    return ProcedureEvent(
        event_id, procedure_id, now, actor, kind, note, tuple(effects), values["settled_at"],
        member, request_key, request_hash,
    )


# --- procedures ------------------------------------------------------------------------------


async def create(
    conn: Any,
    *,
    type: str,
    member: str,
    service: str | None,
    ticket: int,
    actor: str,
    note: str,
    now: datetime,
    effects: Sequence[str],
    request_key: str | None = None,
    request_hash: str | None = None,
) -> tuple[Procedure, ProcedureEvent]:
    """A new pending procedure and its `created` event (with the effects still to apply and
    the request's idempotency key, if any: IntegrityError when an event already has it; and
    that request's fingerprint, if known)."""
    note = note.strip()[:MAX_NOTE]
    result = await conn.execute(
        sa.insert(procedures).values(
            type=type,
            member=member,
            service=service,
            ticket=ticket,
            state="pending",
            asked_by=actor,
            asked_at=now,
            processed_by=None,
            processed_at=None,
            note=note,
        )
    )
    procedure_id = int(result.inserted_primary_key[0])
    event = await _insert_event(
        conn, procedure_id, kind="created", actor=actor, note=note, now=now, effects=effects,
        request_key=request_key, request_hash=request_hash,
    )
    procedure = Procedure(
        procedure_id, type, member, service, ticket, "pending", actor, now, None, None, note
    )
    return procedure, event


async def finish(
    conn: Any,
    procedure_id: int,
    *,
    state: str,
    actor: str,
    note: str,
    now: datetime,
    effects: Sequence[str],
    member: str | None = None,
    request_key: str | None = None,
    request_hash: str | None = None,
) -> tuple[Procedure, ProcedureEvent]:
    """Mark a pending procedure `done` or `cancelled` with its event (and the request's
    idempotency key and fingerprint, if any); `member` (a join done for a requestor known by
    address) becomes its member number. StateError when it is not pending, LookupError when there is
    no such procedure, IntegrityError when an event already has the key."""
    if state not in ("done", "cancelled"):
        raise ValueError(f"a procedure finishes done or cancelled, not {state!r}")
    values: dict[str, Any] = {"state": state, "processed_by": actor, "processed_at": now}
    if member is not None:
        values["member"] = member
    result = await conn.execute(
        sa.update(procedures)
        .where(procedures.c.id == procedure_id, procedures.c.state == "pending")
        .values(**values)
    )
    current = await get(conn, procedure_id)
    if current is None:
        raise LookupError(f"no procedure P-{procedure_id}")
    if not result.rowcount:
        raise StateError(current)
    event = await _insert_event(
        conn,
        procedure_id,
        kind=state,
        actor=actor,
        note=note.strip()[:MAX_NOTE],
        now=now,
        effects=effects,
        member=member,
        request_key=request_key,
        request_hash=request_hash,
    )
    return current, event


async def get(conn: Any, procedure_id: int) -> Procedure | None:
    """One procedure, or None."""
    if not 0 < procedure_id <= 2**31 - 1:
        return None
    row = (await conn.execute(sa.select(procedures).where(procedures.c.id == procedure_id))).first()
    return _procedure(row) if row is not None else None


async def history(conn: Any, procedure_id: int) -> list[ProcedureEvent]:
    """A procedure's events, oldest first."""
    rows = await conn.execute(
        sa.select(events).where(events.c.procedure_id == procedure_id).order_by(events.c.id)
    )
    return [_event(row) for row in rows]


async def get_event(conn: Any, event_id: int) -> ProcedureEvent | None:
    """One event, or None."""
    row = (await conn.execute(sa.select(events).where(events.c.id == event_id))).first()
    return _event(row) if row is not None else None


async def event_by_key(conn: Any, request_key: str) -> ProcedureEvent | None:
    """The event the request with this idempotency key wrote, or None."""
    row = (
        await conn.execute(sa.select(events).where(events.c.request_key == request_key))
    ).first()
    return _event(row) if row is not None else None


async def search(
    conn: Any, where: ProcedureFilter, *, limit: int = 500, offset: int = 0
) -> list[Procedure]:
    """The procedures `where` selects, newest first."""
    c = procedures.c
    query = sa.select(procedures).where(*_conditions(where))
    query = query.order_by(c.asked_at.desc(), c.id.desc()).limit(limit).offset(offset)
    return [_procedure(row) for row in await conn.execute(query)]


async def count(conn: Any, where: ProcedureFilter) -> int:
    """How many procedures `where` selects (the web list's count and paging)."""
    query = sa.select(sa.func.count()).select_from(procedures).where(*_conditions(where))
    return int((await conn.execute(query)).scalar_one())


def _conditions(where: ProcedureFilter) -> list[Any]:
    c = procedures.c
    found: list[Any] = []
    if where.type is not None:
        found.append(c.type == where.type)
    if where.state is not None:
        found.append(c.state == where.state)
    if where.member is not None:
        member = where.member.strip()
        found.append(c.member == (member.lower() if "@" in member else member))
    if where.ticket is not None:
        found.append(c.ticket == where.ticket)
    if where.since is not None:
        found.append(c.asked_at >= where.since)
    if where.until is not None:
        found.append(c.asked_at < where.until)
    return found


async def pending_since(
    conn: Any, cutoff: datetime, *, limit: int | None = None
) -> list[Procedure]:
    """The pending procedures asked before `cutoff`, oldest first (the first `limit`)."""
    c = procedures.c
    query = (
        sa.select(procedures)
        .where(c.state == "pending", c.asked_at < cutoff)
        .order_by(c.asked_at, c.id)
    )
    if limit is not None:
        query = query.limit(limit)
    return [_procedure(row) for row in await conn.execute(query)]


async def count_pending_since(conn: Any, cutoff: datetime) -> int:
    """How many procedures are pending since before `cutoff` (the digest's total)."""
    c = procedures.c
    query = (
        sa.select(sa.func.count())
        .select_from(procedures)
        .where(c.state == "pending", c.asked_at < cutoff)
    )
    return int((await conn.execute(query)).scalar_one())


#: The most events `unsettled` reads at once (a backlog is read in batches).
UNSETTLED_BATCH = 500


async def unsettled(
    conn: Any,
    *,
    before: datetime | None = None,
    after: int = 0,
    limit: int = UNSETTLED_BATCH,
) -> list[ProcedureEvent]:
    """The events whose effects were not all applied yet, oldest first: at most `limit`, of
    those written at or before `before` (when given) with an id above `after` (a batch's
    last, to read the next one)."""
    c = events.c
    query = sa.select(events).where(c.settled_at.is_(None), c.id > after)
    if before is not None:
        query = query.where(c.at <= before)
    rows = await conn.execute(query.order_by(c.id).limit(limit))
    return [_event(row) for row in rows]


async def settle(conn: Any, event_id: int, now: datetime) -> None:
    """Record that an event's effects were applied (once: a settled event stays as it was)."""
    await conn.execute(
        sa.update(events)
        .where(events.c.id == event_id, events.c.settled_at.is_(None))
        .values(settled_at=now)
    )


# --- the member directory --------------------------------------------------------------------


async def directory_size(conn: Any) -> int:
    """How many members the directory holds (active or not); 0: none was ever imported."""
    return int((await conn.execute(sa.select(sa.func.count()).select_from(members))).scalar_one())


def _strangers() -> tuple[Any, Any]:
    """The two forms of the members-only question (no address; an address to look for)."""
    any_member = sa.exists(sa.select(members.c.number))
    address = sa.bindparam("address")
    active_match = sa.exists(
        sa.select(members.c.number).where(
            members.c.active, sa.or_(members.c.address == address, members.c.address2 == address)
        )
    )
    return sa.select(any_member), sa.select(sa.and_(any_member, sa.not_(active_match)))


# Asked in every new mail's transaction: built once (building it cost as much CPU as running it).
_ANY_MEMBER, _STRANGER = _strangers()


async def is_stranger(conn: Any, address: str) -> bool:
    """Whether the directory holds members and no active one has `address` (either of its
    two, any case): the members-only check, in every new mail's transaction, so one
    statement, and EXISTS, which stops at the first row where a count reads the directory."""
    address = address.strip().lower()
    if not address:
        return bool((await conn.execute(_ANY_MEMBER)).scalar_one())
    return bool((await conn.execute(_STRANGER, {"address": address})).scalar_one())


async def member_by_address(conn: Any, address: str) -> Member | None:
    """The member one of whose two addresses is `address` (case-insensitive); an active one
    first when several share it."""
    address = address.strip().lower()
    if not address:
        return None
    row = (
        await conn.execute(
            sa.select(members)
            .where(sa.or_(members.c.address == address, members.c.address2 == address))
            .order_by(members.c.active.desc(), members.c.number)
            .limit(1)
        )
    ).first()
    return _member(row) if row is not None else None


async def get_member(conn: Any, number: str) -> Member | None:
    """One member by number, or None."""
    row = (await conn.execute(sa.select(members).where(members.c.number == number))).first()
    return _member(row) if row is not None else None


async def member_history(conn: Any, number: str) -> list[MemberChange]:
    """A member's directory changes, oldest first."""
    rows = await conn.execute(
        sa.select(member_changes)
        .where(member_changes.c.number == number)
        .order_by(member_changes.c.id)
    )
    return [MemberChange(r.number, r.at, r.actor, r.change, r.detail or "") for r in rows]


async def _change(
    conn: Any, number: str, change: str, *, actor: str, now: datetime, detail: str = ""
) -> None:
    await conn.execute(
        sa.insert(member_changes).values(
            number=number, at=now, actor=actor, change=change, detail=detail[:500]
        )
    )


def _lower(address: str | None) -> str | None:
    address = (address or "").strip().lower()
    return address or None


async def add_member(
    conn: Any,
    number: str,
    address: str | None,
    *,
    actor: str,
    now: datetime,
    detail: str = "",
) -> Member:
    """A join done: the member is added, or an inactive one becomes active again (its address
    kept when none is given); an active member stays as it is."""
    address = _lower(address)
    current = await get_member(conn, number)
    if current is None:
        await conn.execute(
            sa.insert(members).values(
                number=number,
                address=address,
                address2=None,
                active=True,
                since=now,
                until=None,
                updated_at=now,
            )
        )
        await _change(conn, number, "added", actor=actor, now=now, detail=detail)
    elif not current.active:
        values: dict[str, Any] = {"active": True, "since": now, "until": None, "updated_at": now}
        if address and address not in current.addresses:
            values["address"] = address
        await conn.execute(sa.update(members).where(members.c.number == number).values(**values))
        await _change(conn, number, "reactivated", actor=actor, now=now, detail=detail)
    member = await get_member(conn, number)
    assert member is not None
    return member


async def end_member(
    conn: Any, number: str, *, actor: str, now: datetime, detail: str = ""
) -> Member | None:
    """A leave done: the member becomes inactive (None when the directory has no such
    number; an inactive one stays as it is)."""
    current = await get_member(conn, number)
    if current is None:
        return None
    if current.active:
        await conn.execute(
            sa.update(members)
            .where(members.c.number == number)
            .values(active=False, until=now, updated_at=now)
        )
        await _change(conn, number, "deactivated", actor=actor, now=now, detail=detail)
    return await get_member(conn, number)


async def import_members(
    conn: Any, rows: Sequence[MemberRow], *, actor: str, now: datetime
) -> ImportSummary:
    """Load or refresh the directory from the management tool's export: new numbers are
    added, changed ones updated (never duplicated), members absent from `rows` become
    inactive, and each change is recorded. Numbers must be distinct in `rows`."""
    summary = ImportSummary()
    existing = {row.number: _member(row) for row in await conn.execute(sa.select(members))}
    seen: set[str] = set()
    for row in rows:
        if row.number in seen:
            raise ValueError(f"member {row.number} is listed twice")
        seen.add(row.number)
        address, address2 = _lower(row.address), _lower(row.address2)
        active = True if row.active is None else row.active
        current = existing.get(row.number)
        if current is None:
            await conn.execute(
                sa.insert(members).values(
                    number=row.number,
                    address=address,
                    address2=address2,
                    active=active,
                    since=now if active else None,
                    until=None if active else now,
                    updated_at=now,
                )
            )
            await _change(conn, row.number, "added", actor=actor, now=now, detail="import")
            summary.added.append(row.number)
            continue
        changed = tuple(
            name
            for name, old, new in (
                ("address", current.address, address),
                ("address2", current.address2, address2),
            )
            if old != new
        )
        values: dict[str, Any] = {"address": address, "address2": address2}
        if active and not current.active:
            kind = "reactivated"
            values |= {"active": True, "since": now, "until": None}
        elif current.active and not active:
            kind = "deactivated"
            values |= {"active": False, "until": now}
        elif changed:
            kind = "updated"
        else:
            summary.unchanged.append(row.number)
            continue
        values["updated_at"] = now
        await conn.execute(
            sa.update(members).where(members.c.number == row.number).values(**values)
        )
        detail = ", ".join(changed) if changed else "import"
        await _change(conn, row.number, kind, actor=actor, now=now, detail=detail)
        getattr(summary, kind).append(row.number)
        if changed:
            summary.fields[row.number] = changed
    for number, current in existing.items():
        if number in seen or not current.active:
            continue
        await conn.execute(
            sa.update(members)
            .where(members.c.number == number)
            .values(active=False, until=now, updated_at=now)
        )
        await _change(conn, number, "deactivated", actor=actor, now=now, detail="absent")
        summary.deactivated.append(number)
    return summary


async def link_ticket(
    conn: Any, ticket: int, member: str, *, actor: str, now: datetime, detail: str = ""
) -> None:
    """Link a ticket to a member (a later link replaces it; the change is recorded)."""
    current = (
        await conn.execute(sa.select(ticket_members).where(ticket_members.c.ticket == ticket))
    ).first()
    values = {"member": member, "linked_by": actor, "linked_at": now}
    if current is None:
        await conn.execute(sa.insert(ticket_members).values(ticket=ticket, **values))
    elif current.member != member:
        await conn.execute(
            sa.update(ticket_members).where(ticket_members.c.ticket == ticket).values(**values)
        )
    else:
        return
    await _change(conn, member, "linked", actor=actor, now=now, detail=detail or f"ticket {ticket}")


async def ticket_member(conn: Any, ticket: int) -> str | None:
    """The member a ticket is linked to, or None."""
    return (
        await conn.execute(
            sa.select(ticket_members.c.member).where(ticket_members.c.ticket == ticket)
        )
    ).scalar_one_or_none()
