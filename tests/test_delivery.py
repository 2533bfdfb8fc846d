"""The outbox worker's retries and stamps follow the injected clock: a test moves time past a
backoff instead of waiting for it; an item under way when the worker stops is finished, not
cut off. On SQLite and on PostgreSQL, with the repository as the app builds it (its writer
thread, and on PostgreSQL the side threads where a claim's statements run)."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from clocks import FakeClock
from sqlalchemy import select

from exobot import delivery
from exobot.cancelling import cancel_and_wait
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


@pytest.fixture
def repo(app_repo):  # noqa: ANN001, ANN201 - the repository as the App builds it, both backends
    return app_repo


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


class PayloadWorker(OutboxWorker):
    """Raises a KeyError, either while reading the payload or while sending."""

    kind = CHAT

    def __init__(self, repository, clock, reading: bool) -> None:  # noqa: ANN001
        super().__init__(repository, POLICY, clock)
        self.reading = reading
        self.given_up: list[str] = []

    async def send(self, item: outbox.OutboxItem) -> None:
        if self.reading:
            with delivery.reading_payload():
                item.payload["body"]  # noqa: B018 - the notice has none
        raise KeyError("!room:example.org")  # as nio's race raised it (exobot.matrix.room_keys)

    async def failed(self, item: outbox.OutboxItem, error: str) -> None:
        self.given_up.append(error)


async def test_a_payload_that_cannot_be_read_is_given_up_at_once(repo, clock):
    item_id = await queue_one(repo, clock)
    worker = PayloadWorker(repo, clock, reading=True)
    await worker.deliver_due()
    stored = await row(repo, item_id)
    assert (stored.state, stored.attempts, aware(stored.done_at)) == ("failed", 1, T0)
    assert worker.given_up == ["cannot deliver it: KeyError: 'body'"]


async def test_the_same_error_while_sending_is_retried_and_its_traceback_logged(
    repo, clock, caplog
):
    item_id = await queue_one(repo, clock)
    worker = PayloadWorker(repo, clock, reading=False)
    with caplog.at_level("WARNING", logger="exobot.outbox"):
        await worker.deliver_due()
    stored = await row(repo, item_id)
    assert (stored.state, stored.attempts) == ("pending", 1)
    assert aware(stored.next_try_at) == T0 + POLICY.base
    assert worker.given_up == []
    [warning] = [r for r in caplog.records if "not delivered" in r.getMessage()]
    assert warning.exc_info and warning.exc_info[0] is KeyError  # a bug shows where it is
    for _ in range(POLICY.max_attempts - 1):
        clock.advance(POLICY.maximum)
        await worker.deliver_due()
    assert (await row(repo, item_id)).state == "failed"
    attempts = POLICY.max_attempts
    assert worker.given_up == [f"gave up after {attempts} attempts: '!room:example.org'"]


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


# ------------------------------------------------------------------------------------ lanes


class LaneWorker(OutboxWorker):
    """Records the order of its sends and how many were in flight at once; each send yields to
    the loop a few times, so lanes running side by side overlap."""

    kind = CHAT

    def __init__(
        self,
        repository,  # noqa: ANN001
        clock: FakeClock,
        concurrency: int,
        broken: int | None = None,
        together: bool = False,
    ) -> None:
        super().__init__(repository, POLICY, clock)
        self.concurrency = concurrency
        # The first sends wait until `concurrency` of them are in flight at once (a claim's
        # statements take real time on PostgreSQL, so lanes start apart).
        self.all_in_flight = asyncio.Event()
        if not together:
            self.all_in_flight.set()
        self.broken = broken  # the ticket whose lane stops (its row cannot be marked)
        self.flaky = set[int]()  # tickets whose sends fail for a while
        self.sent: list[tuple[int | None, str]] = []
        self.in_flight = 0
        self.most = 0

    async def deliver(self, item: outbox.OutboxItem) -> bool:
        if item.ticket_id is not None and item.ticket_id == self.broken:
            raise RuntimeError("the database went away")
        return await super().deliver(item)

    async def send(self, item: outbox.OutboxItem) -> None:
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        if self.in_flight == self.concurrency:
            self.all_in_flight.set()
        try:
            await asyncio.wait_for(self.all_in_flight.wait(), 60)
            for _ in range(5):
                await asyncio.sleep(0)
            if item.ticket_id in self.flaky:
                raise ConnectionError("homeserver away")
        finally:
            self.in_flight -= 1
        self.sent.append((item.ticket_id, item.payload["name"]))


async def queue_rows(repo, clock: FakeClock, rows: list[tuple[int | None, str, bool]]) -> None:  # noqa: ANN001
    """Queue (ticket, name, later) rows in that order; `later` rows are due at once."""

    async def work(uow) -> None:  # noqa: ANN001
        for ticket, name, later in rows:
            if later:
                await uow.queue_later(CHAT, ticket, {"name": name}, key=name, due=clock.now())
            else:
                await uow.queue_outbox(CHAT, ticket, {"name": name})

    await repo.run(work, now=clock.now())


def names_of(sent: list[tuple[int | None, str]], ticket: int | None) -> list[str]:
    return [name for number, name in sent if number == ticket]


async def test_lanes_keep_each_tickets_order_and_the_limit(repo, clock):
    rows = []
    for n in range(3):
        for ticket in range(1, 7):
            rows.append((ticket, f"t{ticket}-{n}", False))
        rows.append((2, f"t2-later{n}", True))  # waits for earlier rows, yields to the rest
        rows.append((None, f"free{n}", False))
    await queue_rows(repo, clock, rows)
    worker = LaneWorker(repo, clock, concurrency=3, together=True)

    assert await worker.deliver_due() == len(rows)
    assert worker.most == 3  # side by side, never more than the limit
    for ticket in range(1, 7):
        expected = [f"t{ticket}-{n}" for n in range(3)]
        if ticket == 2:
            # A row queued for later waits for its ticket's earlier rows, then yields to the
            # rows due with it (exobot.db.outbox.due): t2-later0 comes due with t2-1.
            expected = ["t2-0", "t2-1", "t2-later0", "t2-2", "t2-later1", "t2-later2"]
        assert names_of(worker.sent, ticket) == expected
    assert names_of(worker.sent, None) == ["free0", "free1", "free2"]  # one lane, in order


async def test_one_worker_at_a_time_when_the_limit_is_one(repo, clock):
    await queue_rows(repo, clock, [(t, f"t{t}", False) for t in range(1, 5)])
    worker = LaneWorker(repo, clock, concurrency=1)
    assert await worker.deliver_due() == 4
    assert worker.most == 1 and [name for _t, name in worker.sent] == ["t1", "t2", "t3", "t4"]


async def test_a_failing_lane_does_not_stop_the_others(repo, clock):
    await queue_rows(repo, clock, [(t, f"t{t}-{n}", False) for n in range(2) for t in (1, 2, 3)])
    worker = LaneWorker(repo, clock, concurrency=2, broken=2)
    worker.flaky = {3}

    with pytest.raises(RuntimeError, match="database went away"):
        await worker.deliver_due()  # the pass fails with the stopped lane's error
    # Ticket 1 went on (both rows, in order); ticket 3's send failed and waits its backoff;
    # ticket 2's row is still pending, nothing after it was tried.
    assert worker.sent == [(1, "t1-0"), (1, "t1-1")]
    async with repo.connection() as conn:
        pending = (
            await conn.execute(
                select(O.c.ticket_id, O.c.attempts).where(O.c.state == "pending").order_by(O.c.id)
            )
        ).all()
    assert [tuple(r) for r in pending] == [(2, 0), (3, 1), (2, 0), (3, 0)]

    worker.broken, worker.flaky = None, set()
    clock.advance(POLICY.base)
    assert await worker.deliver_due() == 4
    assert names_of(worker.sent, 2) == ["t2-0", "t2-1"]
    assert names_of(worker.sent, 3) == ["t3-0", "t3-1"]


async def test_rows_of_no_ticket_go_first_when_the_worker_says_so(repo, clock):
    await queue_rows(repo, clock, [(1, "t1", False), (2, "t2", False), (None, "answer", False)])
    worker = LaneWorker(repo, clock, concurrency=1)
    worker.unattached_first = True
    await worker.deliver_due()
    assert [name for _t, name in worker.sent] == ["answer", "t1", "t2"]


@pytest.mark.parametrize(
    "interruption",
    [
        # The database goes away between the server's acceptance and the mark.
        ConnectionError("the database went away"),
        # The leader steps down (its parts are cancelled) in the mark's commit: seen as a
        # member's second acknowledgement through a PostgreSQL restart.
        asyncio.CancelledError(),
    ],
    ids=["database-gone", "cancelled"],
)
async def test_an_item_sent_whose_mark_failed_is_marked_next_pass_not_sent_again(
    repo, clock, monkeypatch, interruption
):
    """The mark after the server's acceptance does not commit: the next pass marks the item
    before anything else and never sends it a second time."""
    item_id = await queue_one(repo, clock)
    worker = FlakyWorker(repo, clock, failures=0)
    real_mark = outbox.mark_sent
    broken = {"times": 1}

    async def mark_then_fail(conn, item, now=None):  # noqa: ANN001, ANN202
        if broken["times"]:
            broken["times"] -= 1
            raise interruption
        await real_mark(conn, item, now)

    monkeypatch.setattr(outbox, "mark_sent", mark_then_fail)
    with pytest.raises(type(interruption)):
        await worker.deliver_due()
    assert worker.sent == [item_id] and (await row(repo, item_id)).state == outbox.PENDING

    assert await worker.deliver_due() == 1  # the mark, not a second send
    assert worker.sent == [item_id]
    assert (await row(repo, item_id)).state == outbox.SENT
    assert await worker.deliver_due() == 0 and worker.sent == [item_id]


class HandingWorker(FlakyWorker):
    """Hands its first batch over (as the mail worker to its send helper), which sends it
    all but cannot mark it, and says so."""

    handed = False

    async def hand_over(self, items: list[outbox.OutboxItem]) -> int | None:
        if self.handed:
            return None
        self.handed = True
        for item in items:
            self.sent_unmarked(item.id, self.clock.now())
        return 0


async def test_what_a_hand_over_sent_but_did_not_mark_is_marked_here_not_sent_again(repo, clock):
    item_id = await queue_one(repo, clock)
    worker = HandingWorker(repo, clock, failures=0)
    assert await worker.deliver_due() == 1  # marked here, before anything was sent
    assert worker.sent == []
    assert (await row(repo, item_id)).state == outbox.SENT
    assert aware((await row(repo, item_id)).done_at) == T0
    assert worker.unmarked == {}


class SlowWorker(OutboxWorker):
    """Sends each item only when told: a server slow to say it took the mail."""

    kind = CHAT

    def __init__(self, repository, clock) -> None:  # noqa: ANN001
        super().__init__(repository, POLICY, clock)
        self.started, self.release = asyncio.Event(), asyncio.Event()
        self.sent: list[int] = []

    async def send(self, item: outbox.OutboxItem) -> None:
        self.started.set()
        await self.release.wait()
        self.sent.append(item.id)


async def stop_mid_send(worker: SlowWorker) -> asyncio.Task:
    """Start a pass, cancel it while its item is being sent (the leader stepping down),
    and let the cancellation reach the item before the server answers."""
    task = asyncio.create_task(worker.deliver_due())
    await asyncio.wait_for(worker.started.wait(), 60)
    task.cancel()
    for _ in range(20):  # a few turns of the loop: the cancellation arrives in `deliver`
        await asyncio.sleep(0)
    return task


async def test_an_item_under_way_when_the_worker_stops_is_sent_and_marked_once(repo, clock):
    """Cut off mid-send, a mail the SMTP server took would be sent again by whoever
    delivers next (a duplicate acknowledgement after every step-down or SIGTERM)."""
    item_id = await queue_one(repo, clock)
    worker = SlowWorker(repo, clock)
    task = await stop_mid_send(worker)
    worker.release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert worker.sent == [item_id]
    assert (await row(repo, item_id)).state == "sent"


async def test_an_item_that_does_not_finish_in_the_grace_is_cut_off_and_kept(
    repo, clock, monkeypatch
):
    monkeypatch.setattr(delivery, "FINISH_SECONDS", 0.05)
    item_id = await queue_one(repo, clock)
    worker = SlowWorker(repo, clock)
    task = await stop_mid_send(worker)  # never released: a hung server
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 60)
    assert worker.sent == []
    stored = await row(repo, item_id)
    assert (stored.state, stored.attempts) == ("pending", 0)  # tried again at the next pass


# ---------------------------------------------------------------------------------- backoff


@pytest.mark.parametrize(
    ("policy", "reached"),
    [
        (RetryPolicy(), 8),  # 30 s doubled: a timedelta overflowed at attempt 43
        # The longest way to the largest wait there is: 1 µs doubled 66 times is not yet it.
        (RetryPolicy(base=timedelta(microseconds=1), maximum=timedelta.max), 68),
    ],
    ids=["default", "extremes"],
)
def test_the_backoff_is_bounded_for_any_number_of_attempts(policy, reached):
    for attempts in (reached, reached + 1, 100, 1000, 10**6):
        assert policy.delay(attempts) == policy.maximum
    assert policy.delay(reached - 1) < policy.maximum
    # The usual doubling is unchanged.
    assert [policy.delay(n) for n in (0, 1, 2, 3)] == [policy.base * m for m in (1, 1, 2, 4)]


def test_the_default_backoff_doubles_up_to_its_maximum():
    policy = RetryPolicy()
    waits = [policy.delay(n).total_seconds() for n in range(1, 10)]
    assert waits == [30, 60, 120, 240, 480, 960, 1920, 3600, 3600]
    assert policy.delay(43) == policy.delay(44) == policy.maximum  # were OverflowError


async def test_a_row_failing_past_attempt_43_is_retried_then_given_up(repo, clock):
    """The row's 43rd failure is marked for a retry at `maximum` (not a pass failing before
    the mark, the row sent again at every pass); at max_attempts it is given up."""
    item_id = await queue_one(repo, clock)
    await repo.write(lambda conn: conn.execute(O.update().values(attempts=42)))
    worker = FlakyWorker(repo, clock, failures=99)
    worker.retry = RetryPolicy(max_attempts=45, base=timedelta(seconds=30))

    assert await worker.deliver_due() == 0
    stored = await row(repo, item_id)
    assert (stored.state, stored.attempts) == ("pending", 43)
    assert aware(stored.next_try_at) == T0 + timedelta(hours=1)
    assert await worker.deliver_due() == 0 and worker.failures == 98  # waits its backoff

    clock.advance(hours=1)
    await worker.deliver_due()
    assert (await row(repo, item_id)).attempts == 44
    clock.advance(hours=1)
    await worker.deliver_due()
    stored = await row(repo, item_id)
    assert (stored.state, stored.attempts) == ("failed", 45)
    assert worker.given_up == ["gave up after 45 attempts: homeserver away"]
    assert worker.failures == 96  # one send per attempt, none more


# ------------------------------------------------------------------ rows held by another session


class HeldElsewhere:
    """A PostgreSQL repository whose one due row another session holds: `due` gives it at
    every pass, `claim` never gets it (SKIP LOCKED), `next_due_at` says it is overdue."""

    sqlite = False

    def __init__(self, clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
        self.clock = clock
        self.passes = 0
        self.on_pass = lambda _number: None  # what a test does during a pass
        overdue = clock.now() - timedelta(seconds=5)

        async def due(conn, kind, now, unattached_first=False):  # noqa: ANN001, ANN202
            self.passes += 1
            self.on_pass(self.passes)
            return [outbox.OutboxItem(1, kind, 7, {}, 0)]

        async def next_due_at(conn, kind):  # noqa: ANN001, ANN202
            return overdue

        async def claim(conn, item_id):  # noqa: ANN001, ANN202
            return False

        async def unreported(conn, kind, since, after=0, limit=100):  # noqa: ANN001, ANN202
            return []  # no give-up left to report at the worker's start

        monkeypatch.setattr(outbox, "due", due)
        monkeypatch.setattr(outbox, "unreported", unreported)
        monkeypatch.setattr(outbox, "next_due_at", next_due_at)
        monkeypatch.setattr(outbox, "claim", claim)

    async def write(self, work):  # noqa: ANN001, ANN201
        return await work(None)

    async def read(self, work):  # noqa: ANN001, ANN201
        return await work(SimpleNamespace(conn=None))

    @contextlib.asynccontextmanager
    async def holding(self):  # noqa: ANN201
        yield object()


class Stop(Exception):
    """Ends a worker's run in a test."""


class FakeTimeWorker(OutboxWorker):
    """Its waits between passes take fake time: each moves the clock on by what it was asked
    to wait, unless a wake ends it at once; it stops once `until` is reached."""

    kind = CHAT

    def __init__(self, repository, clock: FakeClock, until: datetime) -> None:  # noqa: ANN001
        super().__init__(repository, POLICY, clock)
        self.idle_wait = delivery.OTHER_PROCESS_WAIT_SECONDS  # as on PostgreSQL (exobot.app)
        self.until = until
        self.waits: list[float] = []

    async def send(self, item: outbox.OutboxItem) -> None:
        raise AssertionError("never claimed, never sent")

    async def pause(self, seconds: float) -> None:
        self.waits.append(seconds)
        if self.wake.is_set():
            return
        self.clock.advance(seconds=seconds)
        if self.clock.now() >= self.until:
            raise Stop


async def test_rows_another_session_holds_are_looked_at_once_a_second_not_in_a_spin(
    clock, monkeypatch
):
    """A dead leader's connection holds a due row for hours: passes come as often as for
    other processes' work (OTHER_PROCESS_WAIT_SECONDS), not ~100 a second."""
    held = HeldElsewhere(clock, monkeypatch)
    worker = FakeTimeWorker(held, clock, until=T0 + timedelta(seconds=10))
    with pytest.raises(Stop):
        await worker.run()
    assert held.passes <= 11  # one at the start, then one per fake second
    assert worker.waits and min(worker.waits) >= delivery.OTHER_PROCESS_WAIT_SECONDS


async def test_a_wake_during_a_pass_over_held_rows_brings_the_next_pass_at_once(clock, monkeypatch):
    """Rows queued while a pass met held ones are not kept waiting for the held rows' sake."""
    held = HeldElsewhere(clock, monkeypatch)
    worker = FakeTimeWorker(held, clock, until=T0 + timedelta(seconds=10))
    held.on_pass = lambda number: worker.wake.set() if number == 3 else None
    with pytest.raises(Stop):
        await worker.run()
    assert worker.waits[2] < delivery.OTHER_PROCESS_WAIT_SECONDS  # after the third pass
    assert [w for i, w in enumerate(worker.waits) if i != 2] == [1.0] * (len(worker.waits) - 1)


class PausingWorker(FakeTimeWorker):
    """Waits for real (the worker's own `pause`), saying when it starts to."""

    def __init__(self, repository, clock: FakeClock) -> None:  # noqa: ANN001
        super().__init__(repository, clock, until=datetime.max.replace(tzinfo=UTC))
        self.pausing = asyncio.Event()

    async def pause(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.pausing.set()
        await OutboxWorker.pause(self, seconds)


async def test_a_wake_still_ends_the_wait_over_held_rows_at_once(clock, monkeypatch):
    """Over held rows the worker waits at least OTHER_PROCESS_WAIT_SECONDS (an hour here, so
    only the wake can bring the second pass within the test), and new rows wake it."""
    monkeypatch.setattr(delivery, "OTHER_PROCESS_WAIT_SECONDS", 3600.0)
    held = HeldElsewhere(clock, monkeypatch)
    worker = PausingWorker(held, clock)
    task = asyncio.create_task(worker.run())
    try:
        await asyncio.wait_for(worker.pausing.wait(), 60)
        assert (held.passes, worker.waits) == (1, [3600.0])
        worker.pausing.clear()
        worker.wake.set()  # as the service does when it queues rows
        await asyncio.wait_for(worker.pausing.wait(), 60)
        assert held.passes == 2
    finally:
        await cancel_and_wait([task])
