"""An audit found that erasing one address also rewrote the records naming any longer address
containing it: erasing ann@example.org turned Joann's note "new address joann@example.org"
into "new address joerased on …" and recorded an `erased` event on her procedure, for good
(the record is append-only). The erasure now finds an address only where it stands whole."""

from __future__ import annotations

import sqlalchemy as sa
from exobot_procedures import personal, service, store
from exobot_procedures.store import MemberRow
from web_world import TREASURER

from exobot.plugins import DataSubject

ANN, JOANN = "ann@example.org", "joann@example.org"
ERASED = "erased on 2026-12-01"


async def create(world, ticket: int, type: str, member: str | None, note: str = ""):
    """A procedure made by the treasurer, as the web form makes it."""
    return await service.create_procedure(
        world.plugin, ticket=ticket, type=type, member=member, service=None, note=note,
        actor=TREASURER, language="ca",
    )


async def kinds(world, procedure_id: int) -> list[str]:
    async with world.repository.reading() as reader:
        return [e.kind for e in await store.history(reader.conn, procedure_id)]


async def rows(world, table: sa.Table) -> list:
    async with world.repository.reading() as reader:
        return (await reader.conn.execute(sa.select(table).order_by(*table.primary_key))).all()


async def test_erasing_an_address_spares_longer_addresses_containing_it(make_world, db_url):
    world = await make_world(url=db_url)
    async with world.repository.connection() as conn:
        await store.import_members(conn, [MemberRow("42", ANN), MemberRow("43", JOANN)],
                                   actor="cli:x", now=world.clock.now())
    # Ann's own join before she had a number (the member column is her address), and a
    # procedure of hers naming her address in its note.
    ann_join = await create(world, await world.mail(ANN.upper()), "join", None)
    assert ann_join.member == ANN
    ann_note = await create(world, await world.mail(ANN), "email", "42",
                            note=f"abans {ANN.upper()}, ara una altra.")
    # Joann's: her join by address, notes naming only her longer address (whole, and
    # followed by a sub-domain-like tail), and one naming both.
    joann_join = await create(world, await world.mail(JOANN), "join", None)
    joann_note = await create(world, await world.mail(JOANN), "email", "43",
                              note=f"new address {JOANN}; old one ann@example.org.uk")
    both = await create(world, await world.mail(JOANN), "email", "43",
                        note=f"{JOANN} i <{ANN}>")
    async with world.repository.connection() as conn:
        await conn.execute(sa.insert(store.events).values(
            procedure_id=joann_note.id, at=world.clock.now(), actor=JOANN, kind="note",
            note=f"escrit per {JOANN}", effects="[]", settled_at=world.clock.now(), member=None))
        await conn.execute(sa.insert(store.member_changes).values(
            number="43", at=world.clock.now(), actor="cli:x", change="updated",
            detail=f"address: {JOANN}"))
    events_before = [r for r in await rows(world, store.events) if r.procedure_id != both.id]
    changes_before = [r for r in await rows(world, store.member_changes) if r.number == "43"]

    changed = await personal.erase(world.plugin.ctx, DataSubject(address=ANN))

    assert changed > 0
    async with world.repository.reading() as reader:
        get = {p.id: await store.get(reader.conn, p.id)
               for p in (ann_join, ann_note, joann_join, joann_note, both)}
        ann = await store.get_member(reader.conn, "42")
        joann = await store.get_member(reader.conn, "43")
    # Ann's rows are erased and the erasure recorded, as before.
    assert ann.address is None and get[ann_join.id].member == ERASED
    assert get[ann_note.id].note == f"abans {ERASED}, ara una altra."
    assert get[both.id].note == f"{JOANN} i <{ERASED}>"
    for procedure in (ann_join, ann_note, both):
        assert "erased" in await kinds(world, procedure.id)
    # Joann's are untouched, with no `erased` event; her directory entry and changes too.
    assert joann.address == JOANN
    assert get[joann_join.id].member == JOANN
    assert get[joann_note.id].note == f"new address {JOANN}; old one ann@example.org.uk"
    for procedure in (joann_join, joann_note):
        assert "erased" not in await kinds(world, procedure.id)
    events_after = [r for r in await rows(world, store.events) if r.procedure_id != both.id]
    assert [r for r in events_after if r.procedure_id not in (ann_join.id, ann_note.id)] == [
        r for r in events_before if r.procedure_id not in (ann_join.id, ann_note.id)]
    assert [r for r in await rows(world, store.member_changes) if r.number == "43"] == changes_before
    # A second run finds Ann nowhere and changes nothing.
    assert await personal.erase(world.plugin.ctx, DataSubject(address=ANN)) == 0
