"""The outbox worker's retries and stamps follow the injected clock: a test moves time past a
backoff instead of waiting for it (on a real SQLite database)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from clocks import FakeClock
from sqlalchemy import select

from exobot.core.intents import OpenTicket
from exobot.core.model import Actor
from exobot.core.service import CHAT, ServiceSettings, TicketService
from exobot.db import outbox
from exobot.db.tables import OutboxRow
from exobot.delivery import OutboxWorker, PermanentFailure, RetryPolicy
from exobot.mail.msgid import MessageIds

O = OutboxRow.__table__  # noqa: E741
T0 = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
POLICY = RetryPolicy(max_attempts=3, base=timedelta(minutes=10), maximum=timedelta(hours=1))


class FlakyWorker(OutboxWorker):
    """Fails each item as often as told, then delivers it."""

    kind = CHAT

    def __init__(self, repository, clock, failures: int, permanent: bool = False) -> None:  # noqa: ANN001
        super().__init__(repository, POLICY, clock)
        self.failures = failures
        self.permanent = permanent
        self.sent: list[int] = []
        self.given_up: list[str] = []

    async def send(self, item: outbox.OutboxItem) -> None:
        if self.failures:
            self.failures -= 1
            if self.permanent:
                raise PermanentFailure("refused for good")
            raise ConnectionError("homeserver away")
        self.sent.append(item.id)

    async def failed(self, item: outbox.OutboxItem, error: str) -> None:
        self.given_up.append(error)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


async def queue_one(repo, clock: FakeClock) -> int:  # noqa: ANN001
    async def work(uow) -> int:  # noqa: ANN001
        return await uow.queue_outbox(CHAT, None, {"type": "notice"})

    return await repo.run(work, now=clock.now())


async def row(repo, item_id: int):  # noqa: ANN001, ANN201
    async with repo.connection() as conn:
        return (await conn.execute(select(O).where(O.c.id == item_id))).one()


def aware(value: datetime) -> datetime:
    """SQLite gives back naive UTC datetimes."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


async def test_a_failed_item_waits_its_backoff_on_the_clock(repo, clock):
    item_id = await queue_one(repo, clock)
    worker = FlakyWorker(repo, clock, failures=2)

    assert await worker.deliver_due() == 0  # first attempt fails: retry in 10 min
    stored = await row(repo, item_id)
    assert (stored.attempts, aware(stored.next_try_at)) == (1, T0 + timedelta(minutes=10))
    clock.advance(minutes=9, seconds=59)
    assert await worker.deliver_due() == 0 and worker.failures == 1  # not due: not tried

    clock.advance(seconds=1)
    assert await worker.deliver_due() == 0  # second attempt fails: backoff doubles
    assert aware((await row(repo, item_id)).next_try_at) == clock.now() + timedelta(minutes=20)
    clock.advance(minutes=20)
    assert await worker.deliver_due() == 1
    stored = await row(repo, item_id)
    assert (stored.state, stored.attempts, aware(stored.done_at)) == ("sent", 3, clock.now())
    assert worker.sent == [item_id]


async def test_the_worker_gives_up_after_the_last_attempt_at_the_clocks_time(repo, clock):
    item_id = await queue_one(repo, clock)
    worker = FlakyWorker(repo, clock, failures=99)
    for _ in range(POLICY.max_attempts):
        await worker.deliver_due()
        clock.advance(POLICY.maximum)
    stored = await row(repo, item_id)
    assert (stored.state, stored.attempts) == ("failed", POLICY.max_attempts)
    assert aware(stored.done_at) == clock.now() - POLICY.maximum
    assert worker.given_up == [f"gave up after {POLICY.max_attempts} attempts: homeserver away"]


async def test_a_permanent_refusal_is_not_retried(repo, clock):
    item_id = await queue_one(repo, clock)
    worker = FlakyWorker(repo, clock, failures=1, permanent=True)
    await worker.deliver_due()
    stored = await row(repo, item_id)
    assert (stored.state, stored.attempts, aware(stored.done_at)) == ("failed", 1, T0)
    assert worker.given_up == ["refused for good"]


async def test_the_service_stamps_its_rows_with_its_clock(repo, clock):
    service = TicketService(
        repo,
        MessageIds("s" * 32, "example.org"),
        ServiceSettings(announce=True),
        clock=clock,
    )
    outcome = await service.apply(
        Actor.operator("@anna:example.org"), OpenTicket("marta@example.net", "Trucada")
    )
    ticket = await repo.get_ticket(outcome.ticket)
    assert aware(ticket.created_at) == T0
    async with repo.connection() as conn:
        stamps = (await conn.execute(select(O.c.created_at, O.c.next_try_at))).all()
    assert stamps and {aware(s) for pair in stamps for s in pair} == {T0}
