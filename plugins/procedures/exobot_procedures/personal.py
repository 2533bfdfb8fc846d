"""The procedures plugin's part of `exobot privacy export|erase ADDRESS`.

- `related(address)`: the member's two addresses, so an erasure covers both.
- `export(subject)`: the member's directory entry, its changes and the procedures about the
  member (by number, or by the address for a join done before the member had a number).
- `erase(subject)`: the directory entry loses its addresses; in the append-only record an
  address becomes "erased on DATE" (the member number stays), and the erasure is itself
  recorded: an `erased` change of the directory entry, an `erased` event of each procedure
  that named the address. Nothing is deleted.
"""

from __future__ import annotations

import re
from typing import Any

import sqlalchemy as sa

from exobot.plugins import DataSubject, PluginContext, address_pattern, like_any
from exobot_procedures import store

ACTOR = "exobot"


def _erased(row: Any, columns: tuple[str, ...], pattern: re.Pattern[str], erased: str) -> dict:
    """The new values of the `columns` of `row` that name the address (empty: none does;
    the row is then left alone, as an UPDATE with nothing to set is invalid SQL)."""
    return {
        column: pattern.sub(erased, getattr(row, column))
        for column in columns
        if getattr(row, column) and pattern.search(getattr(row, column))
    }


async def related(ctx: PluginContext, address: str) -> set[str]:
    """The addresses of the member one of whose addresses is `address` (empty: no member)."""
    async with ctx.reading() as reader:
        member = await store.member_by_address(reader.conn, address)
    return set(member.addresses) if member is not None else set()


async def export(ctx: PluginContext, subject: DataSubject) -> dict[str, Any] | None:
    """What the plugin holds about the person at `subject.address` (None: nothing)."""
    if not subject.address:
        return None
    address = subject.address.strip().lower()
    async with ctx.reading() as reader:
        conn = reader.conn
        member = await store.member_by_address(conn, address)
        keys = [address] + ([member.number] if member is not None else [])
        rows = await conn.execute(
            sa.select(store.procedures)
            .where(store.procedures.c.member.in_(keys))
            .order_by(store.procedures.c.id)
        )
        procedures = []
        for row in rows:
            events = await store.history(conn, row.id)
            procedures.append(
                {
                    "reference": f"P-{row.id}",
                    "type": row.type,
                    "member": row.member,
                    "service": row.service,
                    "ticket": row.ticket,
                    "state": row.state,
                    "asked_at": row.asked_at.isoformat(),
                    "processed_at": row.processed_at.isoformat() if row.processed_at else None,
                    "note": row.note or "",
                    "history": [
                        {"at": e.at.isoformat(), "kind": e.kind, "note": e.note} for e in events
                    ],
                }
            )
        result: dict[str, Any] = {}
        if member is not None:
            changes = await store.member_history(conn, member.number)
            result["member"] = {
                "number": member.number,
                "addresses": list(member.addresses),
                "active": member.active,
                "since": member.since.isoformat() if member.since else None,
                "until": member.until.isoformat() if member.until else None,
                "changes": [
                    {"at": c.at.isoformat(), "change": c.change, "detail": c.detail}
                    for c in changes
                ],
            }
        if procedures:
            result["procedures"] = procedures
    return result or None


async def erase(ctx: PluginContext, subject: DataSubject) -> int:
    """Remove `subject.address` from the plugin's tables (see the module's text); returns the
    rows changed or added. A second run finds the address nowhere and changes nothing."""
    if not subject.address:
        return 0  # a ticket alone: the procedures' record of it is kept
    address = subject.address.strip().lower()
    now = ctx.clock.now()
    erased = f"erased on {now.date().isoformat()}"
    # In any case, but not inside a longer address: erasing ann@ leaves joann@'s records.
    pattern = address_pattern({address})
    changed = 0
    p, e, m, mc = store.procedures, store.events, store.members, store.member_changes
    async with ctx.connection() as conn:
        for row in (
            await conn.execute(sa.select(m).where(sa.or_(m.c.address == address, m.c.address2 == address)))
        ).all():
            values = {
                column: None for column in ("address", "address2") if getattr(row, column) == address
            }
            await conn.execute(
                sa.update(m).where(m.c.number == row.number).values(**values, updated_at=now)
            )
            await conn.execute(
                sa.insert(mc).values(
                    number=row.number, at=now, actor=ACTOR, change="erased", detail="privacy erase"
                )
            )
            changed += 2
        # Procedures known by the address (a join before the member had a number), or whose
        # free texts name it.
        rows = (
            await conn.execute(
                sa.select(p).where(
                    sa.or_(
                        sa.func.lower(p.c.member) == address,
                        like_any(p.c.note, {address}),
                        like_any(p.c.asked_by, {address}),
                        like_any(p.c.processed_by, {address}),
                    )
                )
            )
        ).all()
        for row in rows:
            values = _erased(row, ("member", "note", "asked_by", "processed_by"), pattern, erased)
            if not values:
                # ILIKE matched text the pattern does not: a longer address containing this
                # one, or the database's case folding. Another person's record: left alone.
                continue
            await conn.execute(sa.update(p).where(p.c.id == row.id).values(**values))
            await conn.execute(
                sa.insert(e).values(
                    procedure_id=row.id,
                    at=now,
                    actor=ACTOR,
                    kind="erased",
                    note="",
                    effects="[]",
                    settled_at=now,
                    member=None,
                )
            )
            changed += 2
        for table, columns in ((e, ("note", "actor", "member")), (mc, ("detail", "actor"))):
            condition = sa.or_(*(like_any(table.c[c], {address}) for c in columns))
            for row in (await conn.execute(sa.select(table).where(condition))).all():
                values = _erased(row, columns, pattern, erased)
                if not values:
                    continue
                await conn.execute(sa.update(table).where(table.c.id == row.id).values(**values))
                changed += 1
    return changed
