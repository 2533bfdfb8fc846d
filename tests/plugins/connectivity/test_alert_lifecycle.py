"""The life of a connectivity alert, against a real migrated database (SQLite) with rounds run
by the real MonitorScheduler (a fake clock and a fake prober; test_notes' world): one alert
and one recovery per outage however the link flaps, a note that could not be queued comes
with the next round, a ticket closed while its event was missed stops at the next tick, a
round's time is when it probed, and a round under way when the ticket closes posts nothing
after the summary."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
import sqlalchemy as sa
from exobot_connectivity import store
from exobot_connectivity.scheduler import MonitorScheduler
from harness import DEADLINE, wait_until
from test_notes import MEMBER, REFERENCE, START, STEP, Ctx, rounds, world  # noqa: F401
from test_store_scheduler import FakeProber

from exobot.core.events import TicketEvent
from exobot.core.model import EntryKind
from exobot.db.tables import TicketRow

ALERT = f"⚠️ {MEMBER} is losing packets"
RECOVERED = f"✅ {MEMBER} answers normally again"
CLOSED_SUMMARY = "Probing stopped: suport#7 is closed. Summary:"


class LifeCtx(Ctx):
    """test_notes' stand-in, with the read API, posts that may fail, and a first thread post
    that may be held until the test lets it go."""

    def __init__(self, repository, clock) -> None:
        super().__init__(repository, clock)
        self.repository = repository
        self.fail_posts = False
        self.hold_next = False
        self.holding = False
        self.released = asyncio.Event()

    async def read(self, work):
        async with self.repository.reading() as view:
            return await work(view)

    async def post_to_thread(self, ticket: int, body: str, **options: object) -> bool:
        if self.fail_posts:
            raise RuntimeError("the outbox could not be written")
        if self.hold_next:
            self.hold_next, self.holding = False, True
            await self.released.wait()
        return await super().post_to_thread(ticket, body, **options)

    async def post_to_room(self, queue: str | None, body: str, **options: object) -> bool:
        if self.fail_posts:
            raise RuntimeError("the outbox could not be written")
        return await super().post_to_room(queue, body, **options)


@pytest.fixture
def life(world):  # noqa: F811
    plugin, prober, clock = world
    plugin.ctx = LifeCtx(plugin.ctx.connection.__self__, clock)
    return plugin, prober, clock


def notes(ctx: LifeCtx) -> list[str]:
    """The thread notes of ticket 7, by kind."""
    kinds = []
    for ticket, body in ctx.threads:
        assert ticket == 7
        kinds.append(
            "alert" if body.startswith(ALERT) else "recovered" if body.startswith(RECOVERED)
            else "summary" if body.startswith(CLOSED_SUMMARY) else body
        )
    return kinds


async def member_in_alert(plugin) -> bool:
    async with plugin.ctx.connection() as conn:
        [monitor] = await store.ticket_running(conn, 7)
        return await store.in_alert(conn, monitor.id)


async def test_a_flapping_link_gets_one_alert_and_one_recovery(life):
    plugin, prober, clock = life
    ctx = plugin.ctx
    for _ in range(8):  # two hours of lossy, lossy, good; the reference flaps too
        prober.loss = {MEMBER: 10, REFERENCE: 10}
        await rounds(plugin, clock, 2)
        prober.loss = {}
        await rounds(plugin, clock, 1)
    assert notes(ctx) == ["alert"]
    assert len(ctx.rooms) == 1 and ctx.rooms[0][1].startswith("⚠️ The reference target")
    await rounds(plugin, clock, 1)  # steady again: the second good round in a row
    assert notes(ctx) == ["alert", "recovered"]
    assert ctx.rooms[1:] == [(None, f"✅ The reference target {REFERENCE} answers normally again.")]


async def test_with_alert_rounds_at_1_alternating_rounds_alert_once(life):
    plugin, prober, clock = life
    ctx = plugin.ctx
    plugin.config = plugin.config.model_copy(update={"alert_rounds": 1})
    plugin.scheduler = MonitorScheduler(
        ctx.connection, prober, clock, STEP, 20,
        loss_alert=0.2, alert_rounds=1, recover_rounds=2, on_round=plugin.on_round,
    )
    for n in range(24):  # two hours
        prober.loss = {MEMBER: 10} if n % 2 == 0 else {}
        await rounds(plugin, clock, 1)
    assert notes(ctx) == ["alert"]


async def test_a_note_that_could_not_be_queued_comes_with_the_next_round(life):
    plugin, prober, clock = life
    ctx = plugin.ctx
    prober.loss = {MEMBER: 10}
    await rounds(plugin, clock, 1)
    ctx.fail_posts = True  # the round that trips the alert cannot queue its note
    await rounds(plugin, clock, 1)
    ctx.fail_posts = False
    assert notes(ctx) == []
    assert not await member_in_alert(plugin)  # not in alert until its note is queued
    await rounds(plugin, clock, 1)
    assert notes(ctx) == ["alert"]
    assert await member_in_alert(plugin)
    await rounds(plugin, clock, 3)  # still losing: nothing more
    assert notes(ctx) == ["alert"]
    # The recovery note fails once too: it comes with the next good round.
    prober.loss = {}
    await rounds(plugin, clock, 1)
    ctx.fail_posts = True
    await rounds(plugin, clock, 1)
    ctx.fail_posts = False
    assert notes(ctx) == ["alert"] and await member_in_alert(plugin)
    await rounds(plugin, clock, 1)
    assert notes(ctx) == ["alert", "recovered"]
    assert not await member_in_alert(plugin)


async def test_a_note_queued_but_not_recorded_is_not_queued_again(life, monkeypatch):
    """A crash between queueing the note and recording the alert: the next round finds the
    same change and posts it with the same key, which the outbox queues once."""
    plugin, prober, clock = life
    ctx = plugin.ctx
    settle = store.settle_alert
    crashing = {"on": True}

    async def settle_or_crash(*args, **kwargs):
        if crashing["on"]:
            raise RuntimeError("killed before the alert state was written")
        return await settle(*args, **kwargs)

    monkeypatch.setattr(store, "settle_alert", settle_or_crash)
    prober.loss = {MEMBER: 10, REFERENCE: 10}
    await rounds(plugin, clock, 4)  # the alert at the second round, found again at each
    assert notes(ctx) == ["alert"] and len(ctx.rooms) == 1
    assert not await member_in_alert(plugin)
    crashing["on"] = False
    await rounds(plugin, clock, 1)
    assert notes(ctx) == ["alert"] and len(ctx.rooms) == 1
    assert await member_in_alert(plugin)
    # The next change is another note (another key), and so is the next outage's alert.
    prober.loss = {}
    await rounds(plugin, clock, 2)
    assert notes(ctx) == ["alert", "recovered"] and len(ctx.rooms) == 2
    prober.loss = {MEMBER: 10}
    await rounds(plugin, clock, 2)
    assert notes(ctx) == ["alert", "recovered", "alert"]


async def test_a_ticket_closed_while_its_event_was_missed_stops_at_the_next_tick(life):
    plugin, prober, clock = life
    ctx = plugin.ctx
    await plugin.tick()
    await plugin.scheduler.drain()
    assert prober.calls.count(MEMBER) == 1
    # Ticket 7 is resolved, but its status event never reached the plugin (a crash after the
    # commit, a failed handler, the plugin disabled then).
    async with ctx.connection() as conn:
        await conn.execute(
            sa.insert(TicketRow.__table__).values(
                id=7, title="t", requestor="m@example.org", queue="suport", status="resolved",
                language="ca", created_at=START, updated_at=START,
            )
        )
    for _ in range(3):
        clock.advance(STEP)
        await plugin.tick()
        await plugin.scheduler.drain()
    assert prober.calls.count(MEMBER) == 1
    assert prober.calls.count(REFERENCE) == 4
    assert notes(ctx) == ["summary"]
    assert f"• {MEMBER}: 1 round, loss 0 %" in ctx.threads[0][1]
    async with ctx.connection() as conn:
        assert await store.ticket_running(conn, 7) == []
        [monitor] = await store.ticket_monitors(conn, 7)
    assert monitor.stop_reason == "resolved"


async def test_a_round_stores_the_time_it_probed_not_the_time_it_waited_for_its_turn(life):
    plugin, _prober, clock = life
    prober = FakeProber(gate=asyncio.Event())
    scheduler = MonitorScheduler(plugin.ctx.connection, prober, clock, STEP, 20, concurrency=1)
    tasks = await scheduler.run_due()  # the member's and the reference's: one at a time
    assert len(tasks) == 2
    await wait_until(lambda: prober.active == 1, what="the first round to probe")
    clock.advance(seconds=30)  # the second round waits for its turn meanwhile
    prober.gate.set()
    await scheduler.drain()
    stored = sorted(task.result().at for task in tasks)
    assert stored == [START, START + timedelta(seconds=30)]


async def test_a_round_under_way_when_the_ticket_closes_posts_no_alert_after_the_summary(life):
    plugin, prober, clock = life
    ctx = plugin.ctx
    prober.loss = {MEMBER: 10}
    await rounds(plugin, clock, 1)  # one lossy round: the next one alerts
    prober.gate = asyncio.Event()
    await plugin.scheduler.run_due()
    await wait_until(lambda: prober.active == 2, what="the rounds to probe")
    resolved = TicketEvent(7, EntryKind.STATUS, "@op:test", {"from": "open", "to": "resolved"})
    await plugin.on_event(resolved)  # while the lossy round still probes
    prober.gate.set()
    await plugin.scheduler.drain()
    assert notes(ctx) == ["summary"]


async def test_a_note_being_queued_when_the_ticket_closes_comes_before_the_summary(life):
    plugin, prober, clock = life
    ctx = plugin.ctx
    prober.loss = {MEMBER: 10}
    await rounds(plugin, clock, 1)
    ctx.hold_next = True  # the alert's post takes its time
    await plugin.scheduler.run_due()
    await wait_until(lambda: ctx.holding, what="the alert to be posting")
    resolved = TicketEvent(7, EntryKind.STATUS, "@op:test", {"from": "open", "to": "resolved"})
    closing = asyncio.create_task(plugin.on_event(resolved))

    async def stopped() -> bool:
        async with ctx.connection() as conn:
            return await store.ticket_running(conn, 7) == []

    await wait_until(stopped, what="the ticket's monitors to stop")
    ctx.released.set()
    await asyncio.wait_for(closing, DEADLINE)
    await plugin.scheduler.drain()
    assert notes(ctx) == ["alert", "summary"]

