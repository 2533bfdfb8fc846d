"""The connectivity monitors' storage and scheduling, against a real migrated database (the
core's schema and the plugin's Alembic branch; SQLite here, PostgreSQL for the migration when
the stack has it), with a fake clock and a fake prober: rounds every step, the first one at
once, none for stopped monitors, stop on resolve, resume after a restart, the limits, a
duplicate refused, the alert state and the retention purge."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import exobot_connectivity
import pytest
from clocks import FakeClock
from exobot_connectivity import Connectivity, ConnectivityConfig, store
from exobot_connectivity.scheduler import MonitorScheduler
from harness import DEADLINE, wait_until

from exobot.core.actions import ActionRegistry
from exobot.core.events import EventBus
from exobot.core.service import ServiceSettings
from exobot.db.engine import create_engine
from exobot.db.migrate import upgrade_async
from exobot.db.repository import SqlRepository
from exobot.jobs import Scheduler
from exobot.plugins.context import PluginContext
from exobot.plugins.manager import Host, PluginManager, _Run

MIGRATIONS = Path(exobot_connectivity.__file__).parent / "migrations"
BRANCHES = {"connectivity": MIGRATIONS}
START = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
STEP = timedelta(minutes=5)


@dataclass
class FakeRound:
    sent: int
    received: int
    rtts: list[float]
    error: str | None = None


@dataclass
class FakeProber:
    """Answers every target with 20 pings around 30 ms, losing what `loss` says per host."""

    loss: dict[str, int] = field(default_factory=dict)
    fail: set[str] = field(default_factory=set)
    calls: list[str] = field(default_factory=list)
    gate: asyncio.Event | None = None
    active: int = 0
    most_active: int = 0

    async def __call__(self, target: str, kind: str, host: str, port: int | None) -> FakeRound:
        self.calls.append(target)
        self.active += 1
        self.most_active = max(self.most_active, self.active)
        try:
            if self.gate is not None:
                await self.gate.wait()
            if host in self.fail:
                raise OSError("name does not resolve")
            lost = self.loss.get(host, 0)
            return FakeRound(20, 20 - lost, [30.0 + i for i in range(20 - lost)][::-1])
        finally:
            self.active -= 1


@pytest.fixture
async def repository(tmp_path):
    url = f"sqlite:///{tmp_path / 'exobot.db'}"
    await upgrade_async(url, BRANCHES)
    engine = create_engine(url)
    yield SqlRepository(engine)
    await engine.dispose()


@pytest.fixture
def clock():
    return FakeClock(START)


def scheduler_for(repository, prober, clock, **kwargs) -> MonitorScheduler:
    return MonitorScheduler(repository.connection, prober, clock, STEP, 20, **kwargs)


async def start(repository, clock, ticket, target, **kwargs) -> store.Monitor:
    host, _, port = target.partition(" tcp:")
    async with repository.connection() as conn:
        return await store.start(
            conn,
            ticket=ticket,
            target=target,
            kind="tcp" if port else "icmp",
            host=host,
            port=int(port) if port else None,
            by="@op:test",
            now=clock.now(),
            **kwargs,
        )


async def tick(scheduler: MonitorScheduler) -> list:
    tasks = await scheduler.run_due()
    await scheduler.drain()
    return [task.result() for task in tasks]


async def all_rounds(repository, monitor_id) -> list[store.StoredRound]:
    async with repository.connection() as conn:
        return await store.rounds_between(conn, monitor_id, START - timedelta(days=365))


async def test_first_round_at_once_then_every_step(repository, clock):
    prober = FakeProber()
    scheduler = scheduler_for(repository, prober, clock)
    monitor = await start(repository, clock, 7, "192.0.2.10")
    clock.advance(seconds=3)  # within one tick of the start
    stored = await tick(scheduler)
    assert [(r.monitor_id, r.sent, r.received, r.median) for r in stored] == [
        (monitor.id, 20, 20, 39.5)
    ]
    assert list(stored[0].rtts) == sorted(stored[0].rtts)
    # Not again before the step has passed…
    clock.advance(minutes=4, seconds=56)
    assert await tick(scheduler) == []
    # …and once when it has, however many ticks look.
    for _ in range(10):
        clock.advance(seconds=5)
        await tick(scheduler)
    rounds = await all_rounds(repository, monitor.id)
    assert len(rounds) == 2
    assert STEP <= rounds[1].at - rounds[0].at < STEP + timedelta(seconds=5)  # the next tick
    assert prober.calls == ["192.0.2.10", "192.0.2.10"]
    async with repository.connection() as conn:
        assert (await store.get(conn, monitor.id)).last_round_at == rounds[-1].at


async def test_no_round_for_a_stopped_monitor_and_stop_on_resolve(repository, clock):
    prober = FakeProber()
    scheduler = scheduler_for(repository, prober, clock)
    one = await start(repository, clock, 7, "192.0.2.10")
    two = await start(repository, clock, 7, "gw.example tcp:443")
    other = await start(repository, clock, 8, "192.0.2.10")
    await tick(scheduler)
    async with repository.connection() as conn:
        stopped = await store.stop(
            conn, ticket=7, target="192.0.2.10", reason="operator", now=clock.now()
        )
    assert [(m.id, m.stop_reason, m.running) for m in stopped] == [(one.id, "operator", False)]
    clock.advance(STEP)
    await tick(scheduler)
    assert len(await all_rounds(repository, one.id)) == 1
    assert len(await all_rounds(repository, two.id)) == 2
    # The ticket is resolved: its monitors stop, the other ticket's goes on.
    stopped = await scheduler.stop_for_ticket(7, "resolved")
    assert [(m.id, m.stop_reason) for m in stopped] == [(two.id, "resolved")]
    assert await scheduler.stop_for_ticket(7, "resolved") == []
    clock.advance(STEP)
    await tick(scheduler)
    assert len(await all_rounds(repository, two.id)) == 2
    assert len(await all_rounds(repository, other.id)) == 3
    async with repository.connection() as conn:
        assert await store.ticket_running(conn, 7) == []
        assert [m.id for m in await store.ticket_monitors(conn, 7)] == [one.id, two.id]
        assert list(await store.by_ticket(conn)) == [8]
    with pytest.raises(ValueError):
        await scheduler.stop_for_ticket(8, "bored")


async def test_resume_after_a_restart(repository, clock):
    monitor = await start(repository, clock, 7, "192.0.2.10")
    await tick(scheduler_for(repository, FakeProber(), clock))
    clock.advance(minutes=3)
    # exobot restarts: a new scheduler over the same database waits for the rest of the step.
    prober = FakeProber()
    again = scheduler_for(repository, prober, clock)
    assert await again.due(clock.now()) == []
    clock.advance(minutes=2)
    assert [m.id for m in await again.due(clock.now())] == [monitor.id]
    await tick(again)
    rounds = await all_rounds(repository, monitor.id)
    assert [r.at - START for r in rounds] == [timedelta(), STEP]
    # A long stop (hours): one round when it comes back, not one per missed step.
    clock.advance(hours=3)
    await tick(scheduler_for(repository, FakeProber(), clock))
    assert len(await all_rounds(repository, monitor.id)) == 3


async def test_limits_and_duplicates(repository, clock):
    for n in range(5):
        await start(repository, clock, 7, f"192.0.2.{n}")
    with pytest.raises(store.Refused) as refused:
        await start(repository, clock, 7, "192.0.2.99")
    assert (refused.value.reason, refused.value.limit) == ("ticket_limit", 5)
    with pytest.raises(store.Refused) as refused:
        await start(repository, clock, 8, "192.0.2.1", per_ticket=5)
        await start(repository, clock, 8, "192.0.2.1")
    assert refused.value.reason == "duplicate"
    with pytest.raises(store.Refused) as refused:
        await start(repository, clock, 9, "192.0.2.2", total=6)
    assert (refused.value.reason, refused.value.limit) == ("total_limit", 6)
    # Reference targets count in neither limit; a stopped target may start again.
    await start(repository, clock, None, "gw.exo.cat")
    async with repository.connection() as conn:
        await store.stop(conn, ticket=7, target="192.0.2.0", reason="operator", now=clock.now())
    again = await start(repository, clock, 7, "192.0.2.0")
    async with repository.connection() as conn:
        assert [m.target for m in await store.references(conn)] == ["gw.exo.cat"]
        assert len(await store.ticket_running(conn, 7)) == 5
        assert again in await store.ticket_running(conn, 7)
        assert len(await store.running(conn)) == 7


async def test_the_database_refuses_a_duplicate_too(repository, clock):
    """Two operators at once: the unique index on running targets is the last word."""
    await start(repository, clock, 7, "192.0.2.10")
    import sqlalchemy as sa
    from sqlalchemy.exc import IntegrityError

    with pytest.raises(IntegrityError):
        async with repository.connection() as conn:
            await conn.execute(
                sa.insert(store.monitors).values(
                    ticket=7,
                    target="192.0.2.10",
                    kind="icmp",
                    host="192.0.2.10",
                    started_by="@op2:test",
                    started_at=clock.now(),
                )
            )


async def test_rounds_run_concurrently_within_the_bound(repository, clock):
    prober = FakeProber(gate=asyncio.Event())
    scheduler = scheduler_for(repository, prober, clock, concurrency=3)
    for n in range(5):
        await start(repository, clock, n + 1, f"192.0.2.{n}")
    tasks = await scheduler.run_due()  # returns at once: the probes are still waiting
    assert len(tasks) == 5 and not any(task.done() for task in tasks)
    for _ in range(50):
        if prober.active == 3:
            break
        await asyncio.sleep(0)
    assert prober.active == 3
    assert await scheduler.run_due() == []  # rounds in progress are not started twice
    prober.gate.set()
    await scheduler.drain()
    assert prober.most_active == 3
    assert sorted(prober.calls) == [f"192.0.2.{n}" for n in range(5)]


async def test_a_failing_probe_is_a_lost_round_and_alerts_once(repository, clock):
    prober = FakeProber(fail={"nowhere.invalid"}, loss={"192.0.2.10": 10})
    changes = []

    async def on_round(monitor, stored, change):
        changes.append((monitor.target, stored.loss, change))

    scheduler = scheduler_for(repository, prober, clock, on_round=on_round)
    bad = await start(repository, clock, 7, "nowhere.invalid")
    lossy = await start(repository, clock, 7, "192.0.2.10")
    for _ in range(3):
        await tick(scheduler)
        clock.advance(STEP)
    [first, *_] = await all_rounds(repository, bad.id)
    assert (first.sent, first.received, first.median, first.rtts) == (20, 0, None, ())
    assert "does not resolve" in first.error
    assert [c for c in changes if c[0] == "192.0.2.10"] == [
        ("192.0.2.10", 0.5, None),
        ("192.0.2.10", 0.5, "alert"),
        ("192.0.2.10", 0.5, None),
    ]
    prober.loss.clear()
    await tick(scheduler)
    # Recovered after recover_rounds (2) good rounds in a row, not at the first.
    assert [c for c in changes if c[0] == "192.0.2.10"][-1] == ("192.0.2.10", 0.0, None)
    clock.advance(STEP)
    await tick(scheduler)
    # The two rounds of a tick finish in any order.
    assert [c for c in changes if c[0] == "192.0.2.10"][-1] == ("192.0.2.10", 0.0, "recovered")
    async with repository.connection() as conn:
        assert not await store.in_alert(conn, lossy.id)
        assert await store.in_alert(conn, bad.id)
        latest = await store.latest_round(conn, lossy.id)
    assert (latest.at, latest.loss) == (clock.now(), 0.0)


async def test_retention_and_periods(repository, clock):
    scheduler = scheduler_for(repository, FakeProber(), clock)
    monitor = await start(repository, clock, 7, "192.0.2.10")
    for _ in range(12):  # an hour of rounds
        await tick(scheduler)
        clock.advance(STEP)
    async with repository.connection() as conn:
        window = await store.rounds_between(
            conn, monitor.id, START + timedelta(minutes=30), START + timedelta(minutes=45)
        )
    assert [r.at - START for r in window] == [timedelta(minutes=m) for m in (30, 35, 40)]
    deleted = await scheduler.purge(START + timedelta(days=90, minutes=20), timedelta(days=90))
    assert deleted == 4
    rounds = await all_rounds(repository, monitor.id)
    assert [r.at - START for r in rounds] == [timedelta(minutes=m) for m in range(20, 60, 5)]
    assert await scheduler.purge(START + timedelta(days=90, minutes=20), timedelta(days=90)) == 0


async def test_the_migration_on_postgresql(request):
    stack = request.getfixturevalue("stack")
    if stack.postgres_port is None:
        pytest.skip("the test stack runs without PostgreSQL")
    url = stack.postgres_url(f"t_{uuid.uuid4().hex[:16]}")
    await upgrade_async(url)  # the core alone first, as before the plugin was enabled
    await upgrade_async(url, BRANCHES)
    await upgrade_async(url, BRANCHES)  # twice: nothing left to do
    engine = create_engine(url)
    repository = SqlRepository(engine)
    clock = FakeClock(START)
    try:
        monitor = await start(repository, clock, 7, "192.0.2.10")
        with pytest.raises(store.Refused):
            await start(repository, clock, 7, "192.0.2.10")
        scheduler = scheduler_for(repository, FakeProber(loss={"192.0.2.10": 5}), clock)
        [stored] = await tick(scheduler)
        assert stored.loss == 0.25
        rounds = await all_rounds(repository, monitor.id)
        assert [(r.at, r.received, r.median) for r in rounds] == [(START, 15, 37.0)]
        assert await scheduler.stop_for_ticket(7, "rejected")
    finally:
        await engine.dispose()


async def test_rounds_under_way_are_cancelled_when_the_instance_stops_leading(repository, clock):
    """The plugin starts its rounds through `ctx.start_task`: when this instance stops leading
    (the host's scheduler pauses), a round still probing is cancelled with the jobs, stores
    nothing, and is due again for the new leader (or this one, elected again)."""
    host_scheduler = Scheduler(None, timedelta(hours=1), clock=clock)
    host = Host(
        service=SimpleNamespace(settings=ServiceSettings()),
        repository=repository,
        clock=clock,
        actions=ActionRegistry(),
        events=EventBus(),
        scheduler=host_scheduler,
    )
    manager = PluginManager(SimpleNamespace(plugins={}), host)
    plugin = Connectivity()
    plugin.prober = prober = FakeProber(gate=asyncio.Event())  # type: ignore[method-assign]
    run = _Run("connectivity", plugin)
    ctx = PluginContext(manager, run, ConnectivityConfig(reference_targets=["192.0.2.1"]), host)
    await plugin.start(ctx)
    try:
        await plugin.tick()
        [round_task] = plugin.scheduler._busy.values()
        await wait_until(lambda: prober.active == 1, what="the round to probe")

        host_scheduler.pause()
        await asyncio.wait([round_task], timeout=DEADLINE)
        assert round_task.cancelled()
        async with repository.connection() as conn:
            [reference] = await store.references(conn)
        assert await all_rounds(repository, reference.id) == []
        assert plugin.scheduler._busy == {}
        assert host_scheduler._running == set()

        # Leading again: the round is due at once, and this time it is stored.
        prober.gate.set()
        await plugin.tick()
        await plugin.scheduler.drain()
        assert len(await all_rounds(repository, reference.id)) == 1
    finally:
        await plugin.stop()
        ctx.remove_all()
