"""A command event delivered again (a sync batch replayed after a database error, the sync
position a crash did not save, a failover) never acts twice: a plugin's handler, which writes
in its own transactions, runs once and is answered once, as a built-in command always was."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from exobot.core.actions import ActionCall, ActionSpec, Answer, TicketUse, new_registry
from exobot.core.intents import Take
from exobot.core.service import CHAT
from exobot.db.tables import OutboxRow
from tests.matrix.test_bot import ANNA, ROOM, answers, make_bot, message, open_ticket
from tests.matrix.test_session_saves import client_at


def with_graph(bot) -> list[ActionCall]:  # noqa: ANN001 - the MatrixBot of make_bot
    """Give the bot a plugin-like `!graph` action whose handler posts to the ticket's thread
    in its own transaction (as the connectivity plugin does); returns the calls it gets."""
    calls: list[ActionCall] = []

    async def graph(call: ActionCall) -> Answer:
        calls.append(call)

        async def post(uow) -> None:  # noqa: ANN001 - the repository's unit of work
            await uow.queue_outbox(CHAT, call.ticket, {"type": "thread_post", "body": "graph"})

        await bot.repository.run(post)
        return Answer("posted")

    registry = new_registry()  # never the shared default registry: other tests read it
    registry.register(ActionSpec("graph", "!graph {ref}", "a graph", handler=graph))
    bot.registry = registry
    return calls


async def thread_posts(repo) -> int:  # noqa: ANN001 - the test's SqlRepository
    table = OutboxRow.__table__
    async with repo.connection() as conn:
        rows = (await conn.execute(select(table.c.payload))).scalars()
        return sum(1 for payload in rows if payload.get("type") == "thread_post")


async def outbox_size(repo) -> int:  # noqa: ANN001 - the test's SqlRepository
    table = OutboxRow.__table__
    async with repo.connection() as conn:
        return len((await conn.execute(select(table.c.id))).all())


async def test_a_plugin_command_delivered_again_runs_its_handler_once(repo):
    bot = make_bot(repo)
    calls = with_graph(bot)
    number = await open_ticket(repo, bot)
    room = bot.client.nio.rooms[ROOM]
    event = message(ANNA, f"!graph suport#{number}")
    await bot.handle_event(room, event)
    await bot.handle_event(room, event)  # the same event id again
    assert [call.ticket for call in calls] == [number]
    assert await thread_posts(repo) == 1
    assert await answers(repo) == ["posted"]


async def test_a_refused_plugin_command_delivered_again_is_not_run_again(repo):
    """Whatever the first delivery answered (here the handler raised) closes the event."""
    bot = make_bot(repo)
    calls: list[ActionCall] = []

    async def broken(call: ActionCall) -> Answer:
        calls.append(call)
        raise RuntimeError("the probe is away")

    registry = new_registry()
    registry.register(
        ActionSpec("probe", "!probe", "a probe", ticket=TicketUse.NONE, handler=broken)
    )
    bot.registry = registry
    room = bot.client.nio.rooms[ROOM]
    event = message(ANNA, "!probe")
    await bot.handle_event(room, event)
    await bot.handle_event(room, event)
    assert len(calls) == 1
    assert len(await answers(repo)) == 1


async def test_a_sync_replayed_after_a_database_error_does_not_rerun_a_handled_handler(
    repo, tmp_path, monkeypatch
):
    """The database fails on the batch's second event: the sync fails before its position is
    saved and the whole batch comes again; the first event, a plugin command already answered,
    is recognised and its handler does not run again, while the second one now runs."""
    bot = make_bot(repo)
    calls = with_graph(bot)
    number = await open_ticket(repo, bot)
    room = bot.client.nio.rooms[ROOM]
    client = client_at(tmp_path, "s0")
    client.nio.rooms = {ROOM: room}
    client.on_event = bot.handle_event
    batch = [message(ANNA, f"!graph suport#{number}"), message(ANNA, f"!take suport#{number}")]

    async def sync(**_kwargs):  # noqa: ANN003, ANN202 - nio's signature
        timeline = SimpleNamespace(events=batch, limited=False, prev_batch=None)
        join = {ROOM: SimpleNamespace(timeline=timeline)}
        return SimpleNamespace(
            next_batch="s1", rooms=SimpleNamespace(invite={}, join=join), to_device_events=[]
        )

    client.nio.sync = sync
    apply = bot.service.apply
    failures = [OperationalError("UPDATE", {}, Exception("database is locked"))]

    async def failing_once(actor, intent, origin=None):  # noqa: ANN001, ANN202
        if isinstance(intent, Take) and failures:
            raise failures.pop()
        return await apply(actor, intent, origin)

    monkeypatch.setattr(bot.service, "apply", failing_once)
    with pytest.raises(OperationalError):
        await client._sync_once(timeout=0)
    assert client.session.next_batch == "s0"  # not saved: the batch comes again
    await client._sync_once(timeout=0)  # the sync loop's retry
    assert client.session.next_batch == "s1"
    assert len(calls) == 1
    assert await thread_posts(repo) == 1
    assert await answers(repo) == ["posted"]
    assert (await repo.get_ticket(number)).owner == ANNA


async def test_a_built_in_command_delivered_again_acts_once(repo):
    bot = make_bot(repo)
    number = await open_ticket(repo, bot)
    room = bot.client.nio.rooms[ROOM]
    event = message(ANNA, f"!take suport#{number}")
    await bot.handle_event(room, event)
    assert (await repo.get_ticket(number)).owner == ANNA
    queued = await outbox_size(repo)
    history = await repo.history(number)
    await bot.handle_event(room, event)
    assert await outbox_size(repo) == queued
    assert await repo.history(number) == history


async def test_a_handler_run_again_after_its_commit_gets_the_same_key(repo, monkeypatch):
    """The answer's transaction fails after the handler's own commit: the event is delivered
    again and the handler runs again, its call carrying the same key, the event's, which a
    handler whose writes must happen once records with them (ActionCall.key)."""
    bot = make_bot(repo)
    calls = with_graph(bot)
    number = await open_ticket(repo, bot)
    room = bot.client.nio.rooms[ROOM]
    event = message(ANNA, f"!graph suport#{number}")
    answer = bot._answer
    failures = [OperationalError("INSERT", {}, Exception("database is locked"))]

    async def failing_once(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        if failures:
            raise failures.pop()
        return await answer(*args, **kwargs)

    monkeypatch.setattr(bot, "_answer", failing_once)
    with pytest.raises(OperationalError):
        await bot.handle_event(room, event)
    await bot.handle_event(room, event)
    assert [call.key for call in calls] == [f"matrix:{event.event_id}"] * 2
    assert await answers(repo) == ["posted"]
