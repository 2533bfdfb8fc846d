"""The alert sweep on a real SQLite database with a fake clock: due alerts once, repeats,
none after a restart, the daily digest once a day; the scheduler cancels its running jobs
when the instance stops leading."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from clocks import FakeClock
from harness import wait_until
from sqlalchemy import select

from exobot.core.intents import MailClass, ReceiveMail, Take
from exobot.core.model import Actor, IncomingMail
from exobot.core.service import ServiceSettings, TicketService
from exobot.db.engine import create_engine
from exobot.db.migrate import upgrade_async
from exobot.db.repository import SqlRepository
from exobot.db.tables import EntryRow, OutboxRow
from exobot.jobs import AlertSweep, Scheduler
from exobot.mail.msgid import MessageIds

E = EntryRow.__table__
O = OutboxRow.__table__  # noqa: E741
MADRID = ZoneInfo("Europe/Madrid")
SETTINGS = ServiceSettings(
    queues=frozenset({"suport"}),
    new_after=timedelta(hours=4),
    repeat_every=timedelta(hours=2),
    announce=True,
)
OPERATOR = Actor.operator("@anna:example.org")


@pytest.fixture
async def world(tmp_path):
    url = f"sqlite:///{tmp_path / 'exobot.db'}"
    await upgrade_async(url)
    engine = create_engine(url)
    repo = SqlRepository(engine)
    # 06:00 in Madrid (UTC+1 in winter): before the 09:00 digest.
    clock = FakeClock(datetime(2026, 11, 25, 5, 0, tzinfo=UTC))
    service = TicketService(repo, MessageIds("s" * 32, "example.org"), SETTINGS, clock=clock)
    yield repo, service, clock
    await engine.dispose()


def sweep(world, digest_at: time | None = None) -> AlertSweep:
    repo, service, clock = world
    return AlertSweep(repo, service, digest_at=digest_at, timezone=MADRID, clock=clock)


async def new_ticket(service: TicketService, n: int) -> int:
    mail = IncomingMail(
        f"<m{n}@x>", "marta@example.net", "Marta", "marta@example.net", "Hola", "Res"
    )
    return (
        await service.apply(Actor.member(mail.sender), ReceiveMail(mail, MailClass.MEMBER))
    ).ticket


async def alerts(repo: SqlRepository) -> list[tuple[int, str]]:
    """(ticket, reason) of every alert raised, by ticket, oldest first."""
    async with repo.connection() as conn:
        rows = await conn.execute(
            select(E.c.ticket_id, E.c.data)
            .where(E.c.kind == "alert")
            .order_by(E.c.ticket_id, E.c.id)
        )
        return [(ticket, data["reason"]) for ticket, data in rows]


async def chat_rows(repo: SqlRepository, kind: str) -> int:
    """How many chat outbox rows of a type were queued."""
    async with repo.connection() as conn:
        rows = await conn.execute(select(O.c.payload).where(O.c.kind == "chat"))
        return sum(1 for (payload,) in rows if payload["type"] == kind)


async def test_alerts_once_when_due_then_every_repeat_and_not_after_take(world):
    repo, service, clock = world
    first = await new_ticket(service, 1)
    second = await new_ticket(service, 2)
    assert await sweep(world).run_once() == 0
    clock.advance(hours=4, minutes=1)
    assert await sweep(world).run_once() == 2
    assert await sweep(world).run_once() == 0  # the next minute: nothing new
    # A restart is a new sweep object over the same database: nothing repeated.
    assert await sweep(world).run_once() == 0
    await service.apply(OPERATOR, Take(second))
    clock.advance(hours=2)
    assert await sweep(world).run_once() == 1
    assert await alerts(repo) == [(first, "new"), (first, "new"), (second, "new")]


async def test_alerts_missed_while_down_come_once_at_the_next_sweep(world):
    repo, service, clock = world
    number = await new_ticket(service, 1)
    clock.advance(days=2)  # exobot was down for two days
    assert await sweep(world).run_once() == 1
    assert await alerts(repo) == [(number, "new")]


async def test_the_digest_is_posted_once_a_day_after_its_time(world):
    repo, service, clock = world
    nine = time(9, 0)
    assert await sweep(world, nine).run_once() == 0  # 06:00 local
    clock.advance(hours=3, minutes=1)  # 09:01 local
    assert await sweep(world, nine).run_once() == 1
    assert await sweep(world, nine).run_once() == 0
    clock.advance(hours=10)
    assert await sweep(world, nine).run_once() == 0
    clock.advance(hours=14)  # the next day, 09:01
    assert await sweep(world, nine).run_once() == 1
    assert await chat_rows(repo, "digest") == 2


async def test_no_digest_when_disabled(world):
    repo, service, clock = world
    clock.advance(hours=12)
    assert await sweep(world, None).run_once() == 0
    assert await chat_rows(repo, "digest") == 0


async def test_a_job_running_when_the_instance_stops_leading_is_cancelled_quietly(caplog):
    """pause() (the instance was deposed) cancels the job under way, so it does not go on
    beside the new leader's; the scheduler's health records no failure, and start() (it
    leads again) runs jobs again."""
    caplog.set_level(logging.INFO)
    started, cancelled = asyncio.Event(), asyncio.Event()
    runs = 0

    async def slow_job() -> None:
        nonlocal runs
        runs += 1
        started.set()
        try:
            await asyncio.Event().wait()  # never set: only a cancellation ends it
        except asyncio.CancelledError:
            cancelled.set()
            raise

    scheduler = Scheduler(None, timedelta(hours=1))
    scheduler.add_job(slow_job, timedelta(hours=1), "slow", first_after=timedelta(0))
    scheduler.start()
    try:
        await asyncio.wait_for(started.wait(), 60)
        scheduler.pause()
        await asyncio.wait_for(cancelled.wait(), 60)

        # Then the job ends: no longer counted as running (APScheduler would refuse to start
        # it again, max_instances=1, if it were not over).
        async def over() -> bool:
            return not scheduler._running

        await wait_until(over, what="the cancelled job to end")
        assert not scheduler.health.enabled
        assert "job slow cancelled: this instance no longer leads" in caplog.text
        assert "Error running job" not in caplog.text

        started.clear()
        scheduler.start()
        scheduler.scheduler.modify_job("slow", next_run_time=datetime.now(UTC))
        await asyncio.wait_for(started.wait(), 60)
        assert runs == 2
        assert scheduler.health.enabled
    finally:
        scheduler.stop()


async def test_a_job_running_when_exobot_stops_ends_with_a_line_not_an_error(caplog):
    """stop() while a job runs (exobot stopping: a fatal Matrix login, SIGTERM) and the job
    cancelled as the loop winds down: one info line, not APScheduler's error and traceback."""
    caplog.set_level(logging.INFO)
    started = asyncio.Event()

    async def slow_job() -> None:
        started.set()
        await asyncio.Event().wait()  # never set: only a cancellation ends it

    scheduler = Scheduler(None, timedelta(hours=1))
    scheduler.add_job(slow_job, timedelta(hours=1), "slow", first_after=timedelta(0))
    scheduler.start()
    await asyncio.wait_for(started.wait(), 60)
    (task,) = scheduler._running
    scheduler.stop()
    task.cancel()
    await asyncio.wait({task}, timeout=60)
    assert task.done()
    assert "job slow cancelled: exobot is stopping" in caplog.text
    assert "raised an exception" not in caplog.text
    assert "Error running job" not in caplog.text
