"""The procedures' and the member directory's storage on a migrated database (SQLite and,
when the stack runs it, PostgreSQL): a procedure and its events, finishing only from
pending (append-only: a second finish is refused and changes nothing), search filters,
pending ones for the digest, unsettled effects, and the directory: import (new, changed,
absent → inactive, re-import without duplicates), join and leave, addresses matched
case-insensitively on either column, ticket links."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa
from exobot_procedures import store
from exobot_procedures.store import MemberRow, ProcedureFilter
from procedures_settings import START


async def create(repository, clock, **kwargs):
    values = {
        "type": "bank",
        "member": "1234",
        "service": None,
        "ticket": 7,
        "actor": "@op:test",
        "note": "data in the management tool",
        "effects": ("move", "notify"),
    } | kwargs
    async with repository.connection() as conn:
        return await store.create(conn, now=clock.now(), **values)


async def test_a_procedure_and_its_history(repository, clock):
    procedure, event = await create(repository, clock)
    assert procedure.ref == f"P-{procedure.id}"
    assert (procedure.state, procedure.member, procedure.ticket) == ("pending", "1234", 7)
    assert (event.kind, event.effects, event.settled_at) == ("created", ("move", "notify"), None)
    clock.advance(hours=2)
    async with repository.connection() as conn:
        done, finished = await store.finish(
            conn, procedure.id, state="done", actor="@treasurer:test", note="signed",
            now=clock.now(), effects=("notify",),
        )
    assert (done.state, done.processed_by, done.processed_at) == (
        "done", "@treasurer:test", START + timedelta(hours=2)
    )
    # Finishing again is refused and changes nothing: no new event, same state.
    async with repository.connection() as conn:
        with pytest.raises(store.StateError) as caught:
            await store.finish(
                conn, procedure.id, state="cancelled", actor="@other:test", note="no",
                now=clock.now(), effects=(),
            )
    assert caught.value.procedure.state == "done"
    async with repository.reading() as reader:
        events = await store.history(reader.conn, procedure.id)
        again = await store.get(reader.conn, procedure.id)
    assert [(e.kind, e.actor, e.note) for e in events] == [
        ("created", "@op:test", "data in the management tool"),
        ("done", "@treasurer:test", "signed"),
    ]
    assert again == done
    async with repository.connection() as conn:
        with pytest.raises(LookupError):
            await store.finish(conn, 999, state="done", actor="x", note="", now=clock.now(),
                               effects=())
        assert await store.get(conn, 999) is None
        assert await store.get(conn, 10**13) is None


async def test_effects_are_settled_once(repository, clock):
    _p, first = await create(repository, clock)
    _p, nothing = await create(repository, clock, effects=())
    assert nothing.settled_at == clock.now()  # nothing to apply
    async with repository.connection() as conn:
        assert [e.id for e in await store.unsettled(conn)] == [first.id]
        await store.settle(conn, first.id, clock.now())
        clock.advance(minutes=1)
        await store.settle(conn, first.id, clock.now())  # stays as it was
        assert await store.unsettled(conn) == []
        [created] = await store.history(conn, first.procedure_id)
    assert created.settled_at == START


async def test_search_and_pending(repository, clock):
    a, _ = await create(repository, clock, type="join", member="new@example.org", ticket=1)
    clock.advance(days=1)
    b, _ = await create(repository, clock, type="bank", member="1234", ticket=2)
    clock.advance(days=1)
    c, _ = await create(repository, clock, type="service-add", member="1234", service="FTTH-9",
                        ticket=2)
    async with repository.connection() as conn:
        await store.finish(conn, b.id, state="cancelled", actor="@op:test", note="duplicate",
                           now=clock.now(), effects=())
        search = lambda **kw: store.search(conn, ProcedureFilter(**kw))  # noqa: E731
        assert [p.id for p in await search()] == [c.id, b.id, a.id]  # newest first
        assert [p.id for p in await search(member="1234")] == [c.id, b.id]
        assert [p.id for p in await search(member="NEW@example.org")] == [a.id]
        assert [p.id for p in await search(state="pending")] == [c.id, a.id]
        assert [p.id for p in await search(type="bank")] == [b.id]
        assert [p.id for p in await search(ticket=2, state="cancelled")] == [b.id]
        assert [p.id for p in await search(since=START + timedelta(days=1))] == [c.id, b.id]
        assert [p.id for p in await search(until=START + timedelta(days=1))] == [a.id]
        assert [p.id for p in await store.search(conn, ProcedureFilter(), limit=1, offset=1)] == [
            b.id
        ]
        assert [p.id for p in await store.pending_since(conn, clock.now())] == [a.id]
        assert [p.id for p in await store.pending_since(conn, clock.now() + timedelta(1))] == [
            a.id, c.id
        ]


async def test_import_refresh_and_directory_changes(repository, clock):
    rows = [
        MemberRow("1", "one@example.org", "billing@example.org"),
        MemberRow("2", "two@example.org", None),
        MemberRow("3", "three@example.org", None),
    ]
    async with repository.connection() as conn:
        assert await store.directory_size(conn) == 0
        assert not await store.is_stranger(conn, "nobody@example.org")  # no directory
        summary = await store.import_members(conn, rows, actor="cli:admin", now=clock.now())
    assert (summary.added, summary.updated, summary.deactivated) == (["1", "2", "3"], [], [])
    clock.advance(days=30)
    # Re-import: 1 changes its second address, 2 is gone, 3 is unchanged, 4 is new.
    again = [
        MemberRow("1", "one@example.org", "other@example.org"),
        MemberRow("3", "three@example.org", None),
        MemberRow("4", "four@example.org", None, active=False),
    ]
    async with repository.connection() as conn:
        summary = await store.import_members(conn, again, actor="cli:admin", now=clock.now())
        assert summary.added == ["4"] and summary.updated == ["1"]
        assert summary.fields == {"1": ("address2",)}
        assert summary.deactivated == ["2"] and summary.unchanged == ["3"]
        assert await store.directory_size(conn) == 4  # never duplicated
        two = await store.get_member(conn, "2")
        assert (two.active, two.until) == (False, clock.now())
        four = await store.get_member(conn, "4")
        assert (four.active, four.since) == (False, None)
        # Either address, any case; an inactive member is still found (the caller decides).
        assert (await store.member_by_address(conn, "OTHER@example.org")).number == "1"
        assert await store.member_by_address(conn, "billing@example.org") is None
        assert (await store.member_by_address(conn, "two@example.org")).active is False
        # A stranger: no active member has the address (either one, any case).
        assert not await store.is_stranger(conn, " One@Example.org ")
        assert not await store.is_stranger(conn, "OTHER@example.org")
        assert await store.is_stranger(conn, "two@example.org")  # inactive
        assert await store.is_stranger(conn, "nobody@example.org")
        assert await store.is_stranger(conn, "")
        # The same file again changes nothing; 2 comes back as active again.
        clock.advance(days=1)
        back = [*again, MemberRow("2", "two@example.org", None)]
        summary = await store.import_members(conn, back, actor="cli:admin", now=clock.now())
        assert summary.reactivated == ["2"] and summary.unchanged == ["1", "3", "4"]
        assert not summary.deactivated and not summary.added
        two = await store.get_member(conn, "2")
        assert (two.active, two.since, two.until) == (True, clock.now(), None)
        history = await store.member_history(conn, "2")
        assert [(c.change, c.detail) for c in history] == [
            ("added", "import"), ("deactivated", "absent"), ("reactivated", "import")
        ]
        assert [(c.change, c.detail) for c in await store.member_history(conn, "1")] == [
            ("added", "import"), ("updated", "address2")
        ]
        with pytest.raises(ValueError, match="twice"):
            await store.import_members(conn, [rows[0], rows[0]], actor="x", now=clock.now())


async def test_join_leave_and_ticket_links(repository, clock):
    async with repository.connection() as conn:
        added = await store.add_member(conn, "77", "New@Example.org", actor="@op:test",
                                       now=clock.now(), detail="P-1")
        assert (added.address, added.active, added.since) == ("new@example.org", True, START)
        await store.link_ticket(conn, 5, "77", actor="@op:test", now=clock.now(),
                                detail="suport#5")
        await store.link_ticket(conn, 5, "77", actor="@op:test", now=clock.now())  # no-op
        assert await store.ticket_member(conn, 5) == "77"
        assert await store.ticket_member(conn, 6) is None
        clock.advance(days=3)
        ended = await store.end_member(conn, "77", actor="@op:test", now=clock.now(),
                                       detail="P-2")
        assert (ended.active, ended.until) == (False, clock.now())
        assert await store.end_member(conn, "nobody", actor="x", now=clock.now()) is None
        again = await store.add_member(conn, "77", None, actor="@op:test", now=clock.now())
        assert (again.active, again.address, again.until) == (True, "new@example.org", None)
        await store.link_ticket(conn, 5, "78", actor="@op:test", now=clock.now())
        assert await store.ticket_member(conn, 5) == "78"
        assert [(c.change, c.detail) for c in await store.member_history(conn, "77")] == [
            ("added", "P-1"), ("linked", "suport#5"), ("deactivated", "P-2"), ("reactivated", "")
        ]


async def test_no_foreign_key_to_tickets(repository):
    """The record survives a ticket's purge: nothing refers to the core's tickets."""
    async with repository.connection() as conn:
        tables = await conn.run_sync(
            lambda sync: {
                name: sa.inspect(sync).get_foreign_keys(name)
                for name in store.metadata.tables
            }
        )
    referred = {fk["referred_table"] for fks in tables.values() for fk in fks}
    assert referred == {"procedures"}


async def test_a_requests_key_is_recorded_once_with_its_event(repository, clock):
    """An event written with the request's idempotency key is found by it; a second event
    with the same key is refused (the transaction rolled back: no second procedure); events
    without a key are as many as wanted."""
    procedure, created = await create(repository, clock, request_key="matrix:$a")
    assert created.request_key == "matrix:$a"
    with pytest.raises(sa.exc.IntegrityError):
        await create(repository, clock, request_key="matrix:$a")
    await create(repository, clock)
    await create(repository, clock)
    async with repository.connection() as conn:
        await store.finish(conn, procedure.id, state="done", actor="@op:test", note="",
                           now=clock.now(), effects=(), request_key="web:b")
    async with repository.reading() as reader:
        found = await store.event_by_key(reader.conn, "matrix:$a")
        finished = await store.event_by_key(reader.conn, "web:b")
        missing = await store.event_by_key(reader.conn, "matrix:$nothing")
        count = (await reader.conn.execute(sa.text("SELECT count(*) FROM procedures"))).scalar()
    assert found == created and (finished.kind, finished.procedure_id) == ("done", procedure.id)
    assert missing is None and count == 3
