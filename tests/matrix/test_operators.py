"""Who operates, seen from an instance without the Matrix client (a follower): the leader's
record in the state table; and chat rows made due when the homeserver answers again."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from clocks import FakeClock
from sqlalchemy import select

from exobot.core.service import CHAT
from exobot.db import outbox
from exobot.db.state import get_state, set_state
from exobot.db.tables import OutboxRow
from exobot.delivery import OutboxWorker, RetryPolicy
from exobot.matrix import client as client_module
from exobot.matrix.catchup import PatientRetry, hurry_chat
from exobot.matrix.client import MatrixClient, MatrixSettings
from exobot.matrix.operators import STATE_KEY, OperatorRecord, decode
from tests.matrix.test_bot import ANNA, BOT, PERE, ROOM, make_bot

T0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)


def follower_of(repo):  # noqa: ANN001, ANN201 - a MatrixBot without a connected client
    bot = make_bot(repo)
    bot.client.nio = None  # a follower never connects
    bot.rooms_live = False
    return bot, OperatorRecord(repo, bot)


async def test_a_follower_answers_from_the_leaders_record_and_loses_a_removed_operator(repo):
    leader = make_bot(repo)
    published = OperatorRecord(repo, leader)
    follower, record = follower_of(repo)
    await record.refresh()
    assert not follower.is_operator(ANNA) and follower.operators() == []  # nothing recorded

    await published.publish()
    await record.refresh()
    assert follower.is_operator(ANNA)
    assert not follower.is_operator(PERE)  # only invited
    assert not follower.is_operator(BOT)
    assert follower.operators() == [(ANNA, "Anna")]
    assert follower.names.display_name(ANNA) == "Anna"  # names too, from the record

    leader.client.nio.rooms[ROOM].remove_member(ANNA)  # kicked: the leader's sync sees it
    await published.publish()
    await record.refresh()
    assert not follower.is_operator(ANNA) and follower.operators() == []


async def test_the_leader_writes_the_record_only_when_its_view_changes(repo):
    leader = make_bot(repo)
    published = OperatorRecord(repo, leader)
    await published.publish()
    async with repo.connection() as conn:
        await set_state(conn, STATE_KEY, "sentinel")  # a write would replace it
    await published.publish()
    async with repo.connection() as conn:
        assert await get_state(conn, STATE_KEY) == "sentinel"
    published.forget()  # stepped down and leads again: written anew
    await published.publish()
    async with repo.connection() as conn:
        assert decode(await get_state(conn, STATE_KEY)) == {ANNA: "Anna"}


async def test_a_leader_that_steps_down_keeps_its_last_view_until_the_record_is_read(repo):
    """Stepping down because the database went away must revoke nobody: the record cannot
    be read then either (seen as 403s on the API through a PostgreSQL restart)."""
    bot = make_bot(repo)
    record = OperatorRecord(repo, bot)
    assert bot.is_operator(ANNA)

    bot.stop_syncing()
    bot.client.nio = None  # the Matrix client closed
    assert not bot.rooms_live
    assert bot.is_operator(ANNA) and not bot.is_operator(PERE)
    assert bot.operators() == [(ANNA, "Anna")]

    # Once the record can be read it says again (here: it was never written, so nobody).
    await record.refresh()
    assert not bot.is_operator(ANNA)


async def test_a_leader_again_answers_from_its_last_view_until_its_first_sync(repo):
    """Elected again (the PostgreSQL restart ended its lock's session), the instance leads
    at once, but its restored Matrix session knows no rooms before its first sync: until
    then its last view answers, not the empty rooms (seen as a 403 on the API)."""
    bot = make_bot(repo)
    bot.stop_syncing()  # stepped down
    connected = bot.client.nio
    connected.rooms = {}  # connected again with a restored session: no rooms yet
    bot.client.synced = False
    bot.rooms_live = True  # leads again
    assert bot.is_operator(ANNA) and not bot.is_operator(PERE)
    assert bot.operators() == [(ANNA, "Anna")]

    bot.client.synced = True  # the first sync brought the rooms: its own view says
    assert not bot.is_operator(ANNA)  # (here: the rooms are still empty)


async def test_configured_operators_win_over_the_record(repo):
    await OperatorRecord(repo, make_bot(repo)).publish()
    follower = make_bot(repo, operators=[PERE])
    follower.client.nio, follower.rooms_live = None, False
    await OperatorRecord(repo, follower).refresh()
    assert follower.is_operator(PERE) and not follower.is_operator(ANNA)


async def test_the_record_is_not_believed_when_unreadable(repo):
    follower, record = follower_of(repo)
    async with repo.connection() as conn:
        await set_state(conn, STATE_KEY, "{not json")
    await record.refresh()
    assert follower.shared_operators == {}
    assert decode('[["@a:x", "A"]]') == {"@a:x": "A"}


class AwayWorker(OutboxWorker):
    """A chat worker whose homeserver is away until told otherwise."""

    kind = CHAT

    def __init__(self, repository, clock) -> None:  # noqa: ANN001
        policy = RetryPolicy(max_attempts=50, base=timedelta(minutes=1), maximum=timedelta(hours=1))
        super().__init__(repository, policy, clock)
        self.away = True
        self.sent: list[int] = []

    async def send(self, item: outbox.OutboxItem) -> None:
        if self.away:
            raise ConnectionError("connection refused")
        self.sent.append(item.id)


async def test_chat_rows_that_backed_off_an_hour_are_due_when_the_homeserver_is_back(repo):
    clock = FakeClock(T0)

    async def queue(kind: str) -> int:
        async def work(uow) -> int:  # noqa: ANN001
            return await uow.queue_outbox(kind, None, {"type": "notice"})

        return await repo.run(work, now=clock.now())

    chat, mail = await queue(CHAT), await queue("mail")
    worker = AwayWorker(repo, clock)
    for _ in range(8):  # a long outage: 1, 2, 4 … minutes, then an hour between attempts
        await worker.deliver_due()
        async with repo.connection() as conn:
            due_at = await outbox.next_due_at(conn, CHAT)
        clock.advance(due_at.replace(tzinfo=UTC) - clock.now())
    await worker.deliver_due()
    async with repo.connection() as conn:
        waits = (await outbox.next_due_at(conn, CHAT)).replace(tzinfo=UTC) - clock.now()
    assert waits == timedelta(hours=1)

    worker.away = False  # the sync works again: without a hurry nothing moves for an hour
    assert await worker.deliver_due() == 0
    assert await hurry_chat(repo, clock.now()) == 1
    async with repo.connection() as conn:
        [item] = await outbox.due(conn, CHAT, clock.now())
    assert item.id == chat and item.attempts == 0  # the outage's attempts do not count
    assert await worker.deliver_due() == 1 and worker.sent == [chat]
    table = OutboxRow.__table__
    async with repo.connection() as conn:
        rows = dict((await conn.execute(select(table.c.id, table.c.state))).all())
    assert rows == {chat: "sent", mail: "pending"}  # other kinds are not touched


async def test_no_chat_row_is_given_up_while_the_homeserver_is_unreachable(repo):
    clock = FakeClock(T0)

    async def work(uow) -> int:  # noqa: ANN001
        return await uow.queue_outbox(CHAT, None, {"type": "notice"})

    item_id = await repo.run(work, now=clock.now())
    worker = AwayWorker(repo, clock)
    sync_failing = True
    policy = RetryPolicy(max_attempts=3, base=timedelta(minutes=1), maximum=timedelta(hours=1))
    worker.retry = PatientRetry(policy, lambda: sync_failing)
    table = OutboxRow.__table__

    async def state() -> tuple[str, int]:
        async with repo.connection() as conn:
            found = await conn.execute(
                select(table.c.state, table.c.attempts).where(table.c.id == item_id)
            )
            return tuple(found.one())

    for _ in range(6):  # twice the policy's attempts: the server is down, the row waits
        clock.advance(hours=1)
        await worker.deliver_due()
    assert await state() == ("pending", 6)
    sync_failing = False  # the server answers, and refuses this row: given up at the third
    assert await hurry_chat(repo, clock.now()) == 1  # the sync recovered: counted anew
    assert await state() == ("pending", 0)
    for _ in range(2):
        await worker.deliver_due()
        clock.advance(hours=1)
    assert await state() == ("pending", 2)
    await worker.deliver_due()
    assert await state() == ("failed", 3)


def client_settings(tmp_path: Path) -> MatrixSettings:
    return MatrixSettings("http://hs", "@exobot:hs", "pw", None, "exobot", tmp_path / "store")


async def test_the_sync_loop_tells_when_it_works_again_after_failing(tmp_path, monkeypatch):
    client = MatrixClient(client_settings(tmp_path))
    outcomes = [None, ConnectionError("refused"), ConnectionError("refused"), None, None]
    calls: list[str] = []

    async def sync_once(**_kwargs) -> None:
        if not outcomes:
            raise asyncio.CancelledError
        outcome = outcomes.pop(0)
        if outcome is not None:
            raise outcome

    async def no_wait(_seconds: float) -> None:
        return None

    async def synced() -> None:
        calls.append("synced")

    async def recovered() -> None:
        calls.append("recovered")
        raise RuntimeError("a broken hook must not stop the sync")

    monkeypatch.setattr(client, "_sync_once", sync_once)
    monkeypatch.setattr(client_module.asyncio, "sleep", no_wait)
    client.on_synced, client.on_recovered = synced, recovered
    with pytest.raises(asyncio.CancelledError):
        await client.run()
    assert calls == ["synced", "recovered", "synced", "synced"]
