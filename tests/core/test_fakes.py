"""The in-memory fakes behave like the real ports, so the service tests can trust them."""

from datetime import UTC, datetime, timedelta

import pytest
from fakes import FakeClock, FakeMessageIds, FakeRepository

from exobot.core.model import Entry, EntryKind, Status, Ticket

T0 = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)


def a_ticket(title: str = "No em funciona internet") -> Ticket:
    return Ticket(0, title, "marta@example.net", "suport", Status.NEW, T0, T0)


async def test_a_transaction_commits_when_the_block_succeeds():
    repo = FakeRepository()
    async with repo.transaction() as uow:
        ticket = await uow.create_ticket(a_ticket())
        await uow.add_entry(Entry(ticket.number, EntryKind.CREATED, "x", T0))
    assert repo.ticket(1).title == "No em funciona internet"
    assert repo.kinds(1) == ["created"]
    assert repo.commits == 1


async def test_a_transaction_leaves_no_trace_when_the_block_fails():
    repo = FakeRepository()
    with pytest.raises(ValueError, match="apply failed"):
        async with repo.transaction() as uow:
            ticket = await uow.create_ticket(a_ticket())
            await uow.add_participant(ticket.number, "marta@example.net", "mail")
            await uow.queue_outbox("mail", ticket.number, {"to": ["marta@example.net"]})
            raise ValueError("apply failed")
    assert repo.state.tickets == {}
    assert repo.state.participants == {}
    assert repo.state.outbox == []
    assert repo.rollbacks == 1 and repo.commits == 0


async def test_ticket_numbers_are_never_reused_even_after_a_rollback():
    repo = FakeRepository()
    async with repo.transaction() as uow:
        first = (await uow.create_ticket(a_ticket())).number
    with pytest.raises(RuntimeError):
        async with repo.transaction() as uow:
            await uow.create_ticket(a_ticket())
            raise RuntimeError("boom")
    async with repo.transaction() as uow:
        third = (await uow.create_ticket(a_ticket())).number
    assert (first, third) == (1, 3)
    assert sorted(repo.state.tickets) == [1, 3]


async def test_reads_are_copies_until_written_back():
    repo = FakeRepository()
    async with repo.transaction() as uow:
        await uow.create_ticket(a_ticket())
    async with repo.transaction() as uow:
        ticket = await uow.get_ticket(1)
        ticket.title = "changed but not written"
    assert repo.ticket(1).title == "No em funciona internet"
    async with repo.transaction() as uow:
        ticket = await uow.get_ticket(1)
        ticket.title = "written"
        await uow.update_ticket(ticket)
    assert repo.ticket(1).title == "written"


async def test_participants_are_idempotent_and_last_entry_filters_by_kind():
    repo = FakeRepository()
    async with repo.transaction() as uow:
        await uow.create_ticket(a_ticket())
        await uow.add_participant(1, "a@example.net", "mail")
        await uow.add_participant(1, "a@example.net", "cc")
        first = await uow.add_entry(Entry(1, EntryKind.COMMENT, "x", T0, body="one"))
        await uow.add_entry(Entry(1, EntryKind.STATUS, "x", T0))
        assert (await uow.last_entry(1, ["comment"])).id == first.id
        assert await uow.last_entry(1, ["bounce"]) is None
    assert repo.state.participants[1] == {"a@example.net": "mail"}


async def test_injected_failures_raise():
    repo = FakeRepository()
    repo.fail_on.add("create_ticket")
    with pytest.raises(RuntimeError, match="create_ticket"):
        async with repo.transaction() as uow:
            await uow.create_ticket(a_ticket())


def test_message_ids_count_every_mint():
    ids = FakeMessageIds()
    assert ids.mint(3) == "<exobot.3.1@example.org>"
    assert ids.mint(3) == "<exobot.3.2@example.org>"
    assert ids.mint(7) == "<exobot.7.3@example.org>"
    assert ids.minted == [
        "<exobot.3.1@example.org>",
        "<exobot.3.2@example.org>",
        "<exobot.7.3@example.org>",
    ]


def test_clock_moves_only_when_told():
    clock = FakeClock(T0)
    assert clock.now() == clock.now() == T0
    assert clock.advance(hours=2) == T0 + timedelta(hours=2)
    clock.advance(timedelta(minutes=5))
    assert clock.now() == T0 + timedelta(hours=2, minutes=5)
    assert clock.now().tzinfo is UTC
