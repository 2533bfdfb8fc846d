"""Mends of three weaknesses of the connectivity plugin, against a real migrated database
(SQLite; PostgreSQL for the migration when the stack has it) with the real MonitorScheduler,
a fake clock and a fake prober (test_notes' world, test_alert_lifecycle's stand-in context):

- one definition of a period's figures (store.summary): the loss note's look at the
  reference targets and the closing summary give the same numbers on the same rounds,
  all lost and mixed unanswered rounds included;
- the tick's look for tickets closed while their event was missed runs at the first tick,
  then at most every `sweep_every`, and still stops such a ticket within that bound, also
  when another instance handled (and lost) the event;
- the closing summary is owed from the stop's own commit: a crash at any step of the close
  ends, after a restart, with exactly one summary.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
import sqlalchemy as sa
from alembic import command
from clocks import FakeClock
from exobot_connectivity import Connectivity, ConnectivityConfig, store
from exobot_connectivity.plugin import TICK
from exobot_connectivity.scheduler import MonitorScheduler
from stack_fixtures import fresh_database_url
from test_alert_lifecycle import CLOSED_SUMMARY, LifeCtx, life, notes  # noqa: F401
from test_notes import MEMBER, REFERENCE, START, STEP, world  # noqa: F401
from test_store_scheduler import BRANCHES, FakeProber

from exobot.core.events import TicketEvent
from exobot.core.model import EntryKind
from exobot.db.engine import create_engine, sync_url
from exobot.db.migrate import alembic_config, upgrade_async
from exobot.db.tables import TicketRow

RESOLVED = TicketEvent(7, EntryKind.STATUS, "@op:test", {"from": "open", "to": "resolved"})


async def monitors_of(plugin) -> tuple[store.Monitor, store.Monitor]:
    """Ticket 7's member target and the reference target (test_notes' world)."""
    async with plugin.ctx.connection() as conn:
        [member] = await store.ticket_running(conn, 7)
        [reference] = await store.references(conn)
    return member, reference


async def close_ticket_7(plugin, status: str = "resolved") -> None:
    """Ticket 7 as the core leaves it when closed: its row with the closed status."""
    async with plugin.ctx.connection() as conn:
        await conn.execute(
            sa.insert(TicketRow.__table__).values(
                id=7, title="t", requestor="m@example.org", queue="suport", status=status,
                language="ca", created_at=START, updated_at=START,
            )
        )


def summaries(ctx: LifeCtx) -> list[str]:
    """The closing summaries posted in ticket 7's thread."""
    return [body for kind, (_t, body) in zip(notes(ctx), ctx.threads, strict=True)
            if kind == "summary"]


def restarted(plugin: Connectivity, prober: FakeProber, clock: FakeClock) -> Connectivity:
    """The same exobot after a restart: a new plugin and scheduler, nothing kept in memory;
    the database and the outbox's claimed keys (the stand-in context) are what survive."""
    again = Connectivity()
    again.ctx = plugin.ctx
    again.config = plugin.config
    again.scheduler = MonitorScheduler(
        plugin.ctx.connection, prober, clock, STEP, 20, loss_alert=0.2, alert_rounds=2,
        on_round=again.on_round,
    )
    return again


# --- one definition of the figures ------------------------------------------------------------

#: Rounds as (sent, RTTs answered), one step apart from START, and the figures expected of
#: them: (rounds, lost share, median RTT), and how the closing summary writes them.
CASES = {
    "all lost": ([(20, []), (20, []), (10, [])], (3, 1.0, None), "3 rounds, loss 100 %, median —"),
    # Pooled, not averaged per round: 44 of 50 pings lost (the rounds' mean loss would be
    # 87 %), the median of the 6 answers (the rounds' medians, 6 and 41.5, would give 23.75),
    # the unanswered round (NULL median) adding a lost round and no RTT.
    "mixed unanswered": (
        [(10, [5.0, 7.0]), (20, []), (20, [40.0, 41.0, 42.0, 43.0])],
        (3, 44 / 50, 40.5),
        "3 rounds, loss 88 %, median 40.5 ms",
    ),
    "fine": ([(20, [30.0] * 19), (20, [30.0] * 19)], (2, 2 / 40, 30.0),
             "2 rounds, loss 5 %, median 30.0 ms"),
    "no rounds": ([], (0, None, None), "0 rounds, loss —, median —"),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_the_loss_note_and_the_closing_summary_use_the_same_figures(
    life, monkeypatch, case  # noqa: F811
):
    plugin, _prober, clock = life
    ctx = plugin.ctx
    rounds, expected, written = CASES[case]
    member, reference = await monitors_of(plugin)
    async with ctx.connection() as conn:
        for monitor in (member, reference):
            for i, (sent, rtts) in enumerate(rounds):
                await store.record_round(conn, monitor.id, at=START + STEP * i, sent=sent,
                                         received=len(rtts), rtts=rtts)
        # The member's lossy round that raises the note, after the reference's period.
        last = START + STEP * 3
        stored = await store.record_round(conn, member.id, at=last, sent=20, received=0,
                                          rtts=[])
        assert tuple(await store.summary(conn, reference.id, START)) == pytest.approx(expected)

    used: dict[int, store.Summary] = {}
    figures = store.summary

    async def seen(conn, monitor_id, since, until=None):
        used[monitor_id] = await figures(conn, monitor_id, since, until)
        return used[monitor_id]

    monkeypatch.setattr(store, "summary", seen)
    text = await plugin.alert_text(member, stored, "en")
    # The note judged the reference target by the store's figures of its rounds.
    assert tuple(used[reference.id]) == pytest.approx(expected)
    _rounds, loss, _median = expected
    if loss is None:
        assert text == (
            f"⚠️ {MEMBER} is losing packets: 100 % in the last round, for 2 rounds in a row."
        )
    elif loss > plugin.config.loss_alert:
        assert f"The reference target {REFERENCE} lost packets too" in text
    else:
        assert f"The reference target {REFERENCE} answered normally" in text

    # The closing summary of the member's target, whose rounds are the reference's plus the
    # lossy one: the same definition on the same rows.
    async with ctx.connection() as conn:
        await conn.execute(sa.delete(store.rounds).where(store.rounds.c.at == last,
                                                         store.rounds.c.monitor_id == member.id))
    clock.advance(STEP * 4)
    await plugin.on_event(RESOLVED)
    assert tuple(used[member.id]) == pytest.approx(expected)
    assert summaries(ctx) == [f"{CLOSED_SUMMARY}\n• {MEMBER}: {written}"]


# --- the look for closed tickets: at the first tick, then at most every sweep_every ------------


class CountingCtx(LifeCtx):
    """The stand-in context, counting the looks at the tickets (stop_closed's read)."""

    def __init__(self, repository, clock) -> None:
        super().__init__(repository, clock)
        self.looks: list = []

    async def read(self, work):
        self.looks.append(self.clock.now())
        return await super().read(work)


@pytest.fixture
def counted(life):  # noqa: F811
    plugin, prober, clock = life
    plugin.ctx = CountingCtx(plugin.ctx.repository, clock)
    return plugin, prober, clock


async def ticks_until(plugin, clock: FakeClock, end) -> None:
    """Tick every TICK (the job's interval) until `end`, each tick's rounds stored."""
    while clock.now() <= end:
        await plugin.tick()
        await plugin.scheduler.drain()
        clock.advance(TICK)


async def test_the_look_for_closed_tickets_runs_at_start_then_every_sweep_interval(counted):
    plugin, prober, clock = counted
    ctx = plugin.ctx
    assert plugin.sweep_every == STEP == timedelta(minutes=5)
    await ticks_until(plugin, clock, START + timedelta(minutes=1))
    assert ctx.looks == [START]  # at the first tick, not at the 12 after it
    # Ticket 7 is resolved but its status event is missed.
    closed_at = clock.now()
    await close_ticket_7(plugin)
    await ticks_until(plugin, clock, START + timedelta(minutes=20))
    assert ctx.looks == [START + STEP * n for n in range(5)]  # 5 looks in 241 ticks
    # Still stopped within the bound, and before its second round (due at the same tick).
    async with ctx.connection() as conn:
        [monitor] = await store.ticket_monitors(conn, 7)
    assert monitor.stop_reason == "resolved"
    assert closed_at < monitor.stopped_at <= closed_at + plugin.sweep_every
    assert prober.calls.count(MEMBER) == 1
    assert len(summaries(ctx)) == 1


def test_the_sweep_interval_follows_the_step_within_its_bounds(life):  # noqa: F811
    plugin, _prober, _clock = life
    for step, every in [("1h", timedelta(minutes=5)), ("2m", timedelta(minutes=2)),
                        ("1s", TICK)]:
        plugin.config = ConnectivityConfig(step=step)
        assert plugin.sweep_every == every


async def test_two_instances_a_follower_loses_the_event_the_leader_stops_within_the_bound(
    counted,
):
    """Instance B handles the status event and dies after the stop's commit, before the
    summary; the leader A (which ticks) posts it at its next look. When B leads later, its
    first tick looks at once, and posts nothing more."""
    leader, prober, clock = counted
    ctx = leader.ctx
    follower = restarted(leader, prober, clock)
    await ticks_until(leader, clock, START + timedelta(minutes=1))
    closed_at = clock.now()
    await close_ticket_7(leader)
    ctx.fail_posts = True
    with pytest.raises(RuntimeError):
        await follower.on_event(RESOLVED)
    ctx.fail_posts = False
    assert summaries(ctx) == []
    posted_at = None
    while posted_at is None and clock.now() < START + timedelta(minutes=20):
        await ticks_until(leader, clock, clock.now())  # one tick
        if summaries(ctx):
            posted_at = clock.now() - TICK
    assert posted_at is not None, "the leader never posted the summary"
    assert posted_at <= closed_at + leader.sweep_every
    looks = len(ctx.looks)
    await ticks_until(follower, clock, clock.now() + timedelta(minutes=1))
    assert len(ctx.looks) == looks + 1
    assert len(summaries(ctx)) == 1


# --- the closing summary survives a crash at any step ------------------------------------------


def _crash(*_args, **_kwargs):
    raise RuntimeError("exobot died here")


async def _crash_async(*_args, **_kwargs):
    _crash()


@pytest.mark.parametrize("step", ["stop", "post", "record"])
async def test_a_crash_at_any_step_of_the_close_ends_with_exactly_one_summary(
    life, monkeypatch, step  # noqa: F811
):
    """The close is: stop the monitors and record their summary as owed (one commit), post
    the summary (its own commit, with a key), record it posted. Exobot dies at `step`, then
    starts again: the first tick's look finishes the close, and a status event delivered
    again or later looks add nothing."""
    plugin, prober, clock = life
    ctx = plugin.ctx
    await plugin.tick()
    await plugin.scheduler.drain()
    clock.advance(STEP)
    await close_ticket_7(plugin)
    if step == "stop":  # before the stop's commit: nothing changed
        monkeypatch.setattr(store, "stop", _crash_async)
    elif step == "post":  # stopped and owed, nothing queued
        ctx.fail_posts = True
    else:  # queued, but not recorded as queued
        monkeypatch.setattr(store, "summary_queued", _crash_async)
    with pytest.raises(RuntimeError):
        await plugin.on_event(RESOLVED)
    monkeypatch.undo()
    ctx.fail_posts = False
    assert len(summaries(ctx)) == (1 if step == "record" else 0)

    again = restarted(plugin, prober, clock)
    await again.tick()
    await again.scheduler.drain()
    await again.on_event(RESOLVED)  # the event delivered again after the restart
    clock.advance(STEP)
    await ticks_until(again, clock, clock.now() + STEP * 2)
    assert summaries(ctx) == [f"{CLOSED_SUMMARY}\n• {MEMBER}: 1 round, loss 0 %, median 39.5 ms"]
    assert prober.calls.count(MEMBER) == 1
    async with ctx.connection() as conn:
        assert await store.owed_summaries(conn) == {}
        [monitor] = await store.ticket_monitors(conn, 7)
    assert (monitor.stop_reason, monitor.summary_key) == ("resolved", None)


async def test_a_summary_that_cannot_be_posted_does_not_hold_the_others(life):  # noqa: F811
    """Two tickets owe a summary; the first one's post fails: the second is posted, the first
    stays owed and comes with the next look."""
    plugin, _prober, clock = life
    ctx = plugin.ctx
    async with ctx.connection() as conn:
        await store.start(conn, ticket=8, target=MEMBER, kind="icmp", host=MEMBER, port=None,
                          by="@op:test", now=clock.now())
        for ticket in (7, 8):
            await store.stop(conn, ticket=ticket, target=None, reason="resolved",
                             now=clock.now(), summary=True)
    failing = {7}
    post = LifeCtx.post_to_thread

    async def post_or_fail(self, ticket, body, **options):
        if ticket in failing:
            raise RuntimeError("the outbox could not be written")
        return await post(self, ticket, body, **options)

    ctx.post_to_thread = post_or_fail.__get__(ctx)
    with pytest.raises(RuntimeError):
        await plugin.post_owed_summaries()
    assert [ticket for ticket, _body in ctx.threads] == [8]
    failing.clear()
    await plugin.post_owed_summaries()
    assert [ticket for ticket, _body in ctx.threads] == [8, 7]
    async with ctx.connection() as conn:
        assert await store.owed_summaries(conn) == {}


# --- the migration ------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
@pytest.mark.filterwarnings("ignore:Skipped unsupported reflection of expression-based index")
async def test_the_owed_summary_migration_goes_down_and_up_keeping_the_indexes(
    backend, tmp_path, request
):
    url = fresh_database_url(request, backend, tmp_path)
    await upgrade_async(url, BRANCHES)
    sync = sa.create_engine(sync_url(url))
    try:
        await _downgrade(url, "connectivity_0002")
        columns = {c["name"] for c in sa.inspect(sync).get_columns("connectivity_monitors")}
        assert "summary_key" not in columns and "stop_key" in columns
        await upgrade_async(url, BRANCHES)
        indexes = {i["name"] for i in sa.inspect(sync).get_indexes("connectivity_monitors")}
        assert "ix_connectivity_monitors_summary_key" in indexes
    finally:
        sync.dispose()
    engine = create_engine(url)
    try:  # the running-target index came through both ways: a second reference is refused
        async with engine.begin() as conn:
            values = dict(ticket=None, target=REFERENCE, kind="icmp", host=REFERENCE,
                          started_by="config", started_at=START)
            await conn.execute(sa.insert(store.monitors).values(**values))
        with pytest.raises(sa.exc.IntegrityError):
            async with engine.begin() as conn:
                await conn.execute(sa.insert(store.monitors).values(**values))
    finally:
        await engine.dispose()


async def _downgrade(url: str, revision: str) -> None:
    await asyncio.to_thread(command.downgrade, alembic_config(url, BRANCHES), revision)
