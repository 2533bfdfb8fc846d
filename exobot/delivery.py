"""The shape every outbox worker shares: wake up, deliver what is due in order, retry with
backoff, and give up visibly. Mail (SMTP) and chat (Matrix) workers fill in the sending."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from exobot.cancelling import cancel_and_wait
from exobot.core.clock import Clock, SystemClock
from exobot.db import outbox
from exobot.db.repository import SqlRepository
from exobot.health import Component

IDLE_WAIT_SECONDS = 30.0
# Another process may queue outbox rows: on PostgreSQL another instance (a follower serving
# the web and the API) and the CLI, so the leader's workers look for due rows at least this
# often (one cheap query each); on SQLite the CLI, whose commits a watch sees as often
# (exobot.db.commits). How soon `exobot outbox retry` and the like take effect (exobot.app).
OTHER_PROCESS_WAIT_SECONDS = 1.0
# Items given up this recently whose give-up their ticket does not tell are reported when a
# worker starts (see OutboxWorker.report_given_up): bounded, so an upgrade does not report
# old history again, and long enough for a host down over a long weekend.
REPORT_GIVEN_UP_WITHIN = timedelta(days=7)


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff between attempts, up to a number of attempts."""

    max_attempts: int = 10
    base: timedelta = timedelta(seconds=30)
    maximum: timedelta = timedelta(hours=1)

    def delay(self, attempts: int) -> timedelta:
        """The wait after the `attempts`-th failed attempt: `base` doubled at each attempt,
        never more than `maximum`, for any number of attempts."""
        # In whole microseconds, compared before it becomes a timedelta again: `base * 2**n`
        # overflows a timedelta long before attempts run out (30 s at attempt 43), and the
        # error raised before the retry's mark left the row due, sent again at every pass.
        # The exponent stops at the maximum's bit length: any `base` of 1 µs or more doubled
        # that often has passed it, so the integers stay small however many attempts.
        base = self.base // _MICROSECOND
        maximum = self.maximum // _MICROSECOND
        doublings = min(max(0, attempts - 1), maximum.bit_length())
        return timedelta(microseconds=min(maximum, base << doublings))


_MICROSECOND = timedelta(microseconds=1)


def unreachable_delay(retry: RetryPolicy, waited: timedelta) -> timedelta:
    """The wait after an attempt that found the receiving side unreachable (`Unreachable`):
    as long as the item has waited since it was queued, so the waits double as the
    attempts' backoff does, never shorter than `retry.base` nor longer than `retry.maximum`.

    Measured by the item's age rather than its count of attempts, which such a failure does
    not raise (see OutboxWorker): an outage of days costs a mail nothing of its limit."""
    return min(retry.maximum, max(retry.base, waited))


# How many unreported items one query gives (exobot.db.outbox.unreported's default).
_UNREPORTED_PAGE = 100


# An item under way when the worker is stopped (the leader stepping down, SIGTERM) is given
# this long to be sent, marked and committed: cut off mid-send, a mail the server accepted
# would be sent again by whoever delivers next.
FINISH_SECONDS = 5.0


class PermanentFailure(Exception):
    """The receiving side refused the item for good, or its payload cannot be delivered:
    retrying cannot help."""


class Unreachable(Exception):
    """The receiving side could not be reached (connection refused, unknown host, timed out,
    connection lost before it answered the item, "service not available" as it greeted):
    not the item's fault. The item waits, with a backoff, until the other side is back,
    and the attempt does not count against `RetryPolicy.max_attempts`."""


# What a payload that does not hold what its kind needs raises while it is read or built.
PAYLOAD_ERRORS = (ValueError, KeyError, TypeError)


@contextlib.contextmanager
def reading_payload() -> Iterator[None]:
    """Around the reading and building of an item from its payload (no I/O inside): an error
    there is the payload's, the same at every attempt, so the item is given up at once.

    Only there: the same exception types raised while sending (a library's race, a bug)
    are retried like any other failure, and given up only after the last attempt, with the
    traceback in the log: no mail or post is lost at the first hiccup."""
    try:
        yield
    except PAYLOAD_ERRORS as error:
        raise PermanentFailure(f"cannot deliver it: {type(error).__name__}: {error}") from error


class OutboxWorker:
    """Delivers the pending outbox items of one kind, each ticket's items in order (several
    tickets at once, up to `concurrency`).

    Subclasses implement `send(item)` (raise PermanentFailure for a refusal that retrying
    cannot fix, Unreachable when the other side could not be reached at all, and read the
    payload inside `reading_payload()`; anything else is a temporary failure) and may
    override `failed(item, error)`, `end_pass()` and `describe(item)`. Due times, retries
    and stamps follow `clock`, so a test moves a retry's time forward instead of waiting for
    it.
    """

    kind: str = ""
    log = logging.getLogger("exobot.outbox")
    #: How many lanes (tickets) one pass delivers at once; subclasses set their own.
    concurrency: int = 1
    #: Whether items of no ticket are taken before the tickets' (exobot.db.outbox.due).
    unattached_first: bool = False

    def __init__(
        self,
        repository: SqlRepository,
        retry: RetryPolicy | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.repository = repository
        self.retry = retry or RetryPolicy()
        self.clock = clock or SystemClock()
        self.wake = asyncio.Event()
        # Health: a delivery is progress; pending items are work waiting (exobot.health).
        self.health = Component(self.kind or "outbox", self.clock, critical=True)
        self.failed_attempts = 0  # since start, for the metrics
        # Items the receiving side accepted whose mark did not commit (the database went away
        # between the two): marked before anything else is sent, never sent again by this
        # process (another instance taking over meanwhile may send one of them once more).
        self._sent_unmarked: dict[int, datetime] = {}
        # The longest wait between passes when not woken: another instance on the same
        # PostgreSQL database queues rows this process is never told about (exobot.app).
        self.idle_wait = IDLE_WAIT_SECONDS
        # Due items of the current pass another session held (PostgreSQL), see `run`.
        self.held_elsewhere = 0
        # When `run` next looks for items given up but not reported (None: no need): at its
        # start, and after a report failed (see `report_given_up`).
        self._report_at: datetime | None = None
        self._report_failures = 0  # looks in a row that failed: their backoff
        # Items that last failed because the other side was unreachable: made due at once
        # when a later item gets through (see `_other_side_back`), not an hour later.
        self._waiting_for_other_side: set[int] = set()

    async def send(self, item: outbox.OutboxItem) -> None:
        """Deliver one item."""
        raise NotImplementedError

    async def failed(self, item: outbox.OutboxItem, error: str) -> None:
        """An item was given up (already marked failed); record it where people will see it."""

    async def end_pass(self) -> None:
        """Release what a pass held (e.g. a server connection)."""

    def describe(self, item: outbox.OutboxItem) -> str:
        """How the logs name an item."""
        return f"{self.kind} {item.id} (ticket {item.ticket_id})"

    async def run(self) -> None:
        """Deliver forever: when woken, or when the next retry is due. Only the leader runs
        it: its first pass also reports what was given up but never told (`report_given_up`)."""
        self._report_at = self.clock.now()
        while True:
            await self._report_if_due()
            delivered = 0
            try:
                delivered = await self.deliver_due()
                next_at = await self.repository.write(
                    lambda conn: outbox.next_due_at(conn, self.kind)
                )
            except Exception:  # the database may be briefly unavailable; keep the worker alive
                self.log.exception("%s worker pass failed", self.kind)
                self.health.failed()
                next_at = None
            else:
                self.health.waiting(next_at is not None)
            wait = self.idle_wait
            if next_at is not None:
                wait = min(wait, max(0.0, (next_at - self.clock.now()).total_seconds()))
            if self.held_elsewhere and not delivered and not self.wake.is_set():
                # Due rows another session holds (a second instance's claim, or a dead host's
                # connection PostgreSQL keeps for hours) stay due: looking again at once would
                # be ~100 passes a second for nothing. They are looked at as often as other
                # processes' work; a wake (new rows, also one during this pass) still counts.
                wait = max(wait, OTHER_PROCESS_WAIT_SECONDS)
            self.wake.clear()
            await self.pause(wait or 0.01)

    async def _report_if_due(self) -> None:
        """Run `report_given_up` when its time has come; a failure is logged and the look
        tried again later (with the retry policy's backoff), never in the way of delivery."""
        if self._report_at is None or self.clock.now() < self._report_at:
            return
        self._report_at = None
        try:
            await self.report_given_up()
        except asyncio.CancelledError:
            self._report_at = self.clock.now()
            raise
        except Exception:
            self._report_failures += 1
            self._report_at = self.clock.now() + self.retry.delay(self._report_failures)
            self.log.exception(
                "%s worker: the items given up could not all be reported; trying again at %s",
                self.kind,
                self._report_at.isoformat(timespec="seconds"),
            )
        else:
            self._report_failures = 0

    async def report_given_up(self) -> int:
        """Tell (`failed()`) every item of this kind given up within REPORT_GIVEN_UP_WITHIN
        whose ticket does not say so: the mark and the report are two transactions, and the
        process may have died, the database failed or the worker been stopped in between.
        Each give-up is told once: an item `exobot outbox retry` made pending again and that
        was given up once more is told again (exobot.db.outbox.unreported). Returns how many
        were told; raises, after trying the others, when one of them could not be."""
        since = self.clock.now() - REPORT_GIVEN_UP_WITHIN
        told = 0
        after = 0
        errors: list[Exception] = []
        while True:
            found = await self.repository.read(
                lambda view, after=after: outbox.unreported(
                    view.conn, self.kind, since, after, _UNREPORTED_PAGE
                )
            )
            for item, error in found:
                after = item.id
                self.log.warning("%s was given up, not reported: reporting it", self.describe(item))
                try:
                    await self.failed(item, error)
                except asyncio.CancelledError:
                    raise
                except Exception as problem:  # the others are still told
                    errors.append(problem)
                else:
                    told += 1
            if len(found) < _UNREPORTED_PAGE:
                break
        if errors:
            raise errors[0]
        return told

    async def pause(self, seconds: float) -> None:
        """Wait `seconds` between passes, or less when `wake` is set meanwhile."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wake.wait(), timeout=seconds)

    async def deliver_due(self) -> int:
        """Deliver every item whose time has come; returns how many were delivered.

        A batch of due items is split into lanes (see `lanes`): one ticket's items go one
        after the other in one lane, and up to `concurrency` lanes are delivered at once, so a
        slow server's round trip is paid for several tickets together. A lane that fails (the
        database went away) stops there, the others go on while they progress; the pass then
        fails with its error, as a sequential pass did at once. `held_elsewhere` tells how many
        due items it could not claim (PostgreSQL: another session holds them)."""
        delivered = 0
        errors: list[Exception] = []
        self.held_elsewhere = 0
        while True:
            # Before anything is sent: also what a hand-over reported sent but not marked.
            delivered += await self._mark_unmarked()
            items = await self.repository.write(
                lambda conn: outbox.due(
                    conn, self.kind, self.clock.now(), unattached_first=self.unattached_first
                )
            )
            if not items:
                break
            handed = await self.hand_over(items)
            if handed is not None:  # delivered elsewhere; what it left is due again
                delivered += handed
                if handed:
                    await self._other_side_back()
                continue
            try:
                counts, stopped = await self._deliver_lanes(self.lanes(items))
            finally:
                await self.end_pass()
            delivered += sum(counts)
            errors += stopped
            if not any(counts):
                break
            await self._other_side_back()  # due now: the next round of this pass takes them
        if errors:  # after the other lanes' work: the pass is told as failed (run())
            raise errors[0]
        return delivered

    async def _other_side_back(self) -> None:
        """An item got through: those that waited because the other side was unreachable are
        made due now (their attempts untouched), instead of at the end of a backoff that may
        be an hour. Only the ones this process saw fail: after a restart they wait their
        time, and so they do when this fails (only logged: what was delivered stays so)."""
        if not self._waiting_for_other_side:
            return
        ids = sorted(self._waiting_for_other_side)
        now = self.clock.now()

        async def work(conn) -> None:  # noqa: ANN001 - a connection
            for item_id in ids:
                await outbox.hurry(conn, item_id, now)

        try:
            await self.repository.write(work)
        except Exception:
            self.log.exception("%s: the items waiting for the other side wait on", self.kind)
            return
        self._waiting_for_other_side.difference_update(ids)
        self.log.info("%s: reachable again, %d waiting items due now", self.kind, len(ids))

    async def _mark_unmarked(self) -> int:
        """Mark the items sent whose mark failed earlier (raises while the database is still
        away: the pass fails before anything is sent twice); returns how many were marked."""
        marked = 0
        for item_id, sent_at in list(self._sent_unmarked.items()):
            await self.repository.write(
                lambda conn, item_id=item_id, sent_at=sent_at: outbox.mark_sent(
                    conn, item_id, sent_at
                )
            )
            del self._sent_unmarked[item_id]
            marked += 1
        return marked

    def sent_unmarked(self, item_id: int, sent_at: datetime) -> None:
        """An item delivered elsewhere (a hand-over) whose mark was not written: this worker
        marks it before it sends anything else, and never sends it again."""
        self._sent_unmarked.setdefault(item_id, sent_at)

    @property
    def unmarked(self) -> dict[int, datetime]:
        """The items this worker delivered whose mark is still to be written."""
        return dict(self._sent_unmarked)

    async def hand_over(self, items: list[outbox.OutboxItem]) -> int | None:
        """Have the due `items` (and whatever becomes due meanwhile) delivered elsewhere and
        return how many were, or None to deliver them here (the default). A hand-over that
        delivers nothing must return None for the same items next time, or the pass never
        ends."""
        return None

    def lanes(self, items: list[outbox.OutboxItem]) -> list[list[outbox.OutboxItem]]:
        """The batch as sequential lanes, in the order they start: one per ticket, and one for
        every item of no ticket (delivered one after the other in id order, as they always
        were: such rows, e.g. one volunteer's answers, may depend on each other)."""
        by_ticket: dict[int | None, list[outbox.OutboxItem]] = {}
        for item in items:  # `due` gives them in the order they are to go
            by_ticket.setdefault(item.ticket_id, []).append(item)
        return list(by_ticket.values())

    async def _deliver_lanes(
        self, lanes: list[list[outbox.OutboxItem]]
    ) -> tuple[list[int], list[Exception]]:
        """Deliver `lanes`, at most `concurrency` at once, each started in its turn; returns
        how many items each lane runner delivered and the errors that stopped lanes."""
        waiting = iter(lanes)
        errors: list[Exception] = []

        async def runner() -> int:
            done = 0
            for lane in waiting:  # the shared iterator: each lane is taken by one runner
                try:
                    for item in lane:
                        if await self.deliver(item):
                            done += 1
                except asyncio.CancelledError:
                    raise
                except Exception as error:  # this lane stops; the rest of the batch goes on
                    self.log.warning("%s: its lane stopped: %r", self.describe(lane[0]), error)
                    errors.append(error)
            return done

        width = max(1, min(self.concurrency, len(lanes)))
        if width == 1:
            return [await runner()], errors
        tasks = [asyncio.create_task(runner()) for _ in range(width)]
        try:
            counts = await asyncio.gather(*tasks)
        except BaseException:
            await cancel_and_wait(tasks)  # a cancelled gather asked them already
            raise
        return list(counts), errors

    async def deliver(self, item: outbox.OutboxItem) -> bool:
        """Try one item; returns True when it was delivered.

        Cancelled meanwhile, the item still gets up to FINISH_SECONDS to be sent and marked
        (the SMTP server may have taken it already), then the cancellation goes on."""
        under_way = asyncio.ensure_future(self._deliver(item))
        try:
            return await asyncio.shield(under_way)
        except asyncio.CancelledError:
            try:
                await asyncio.wait({under_way}, timeout=FINISH_SECONDS)
            finally:  # still not done, or cancelled again while waiting: cut it off
                under_way.cancel()
                under_way.add_done_callback(_outcome_seen)  # it no longer matters here
            raise

    async def _deliver(self, item: outbox.OutboxItem) -> bool:
        """`deliver` without the grace when cancelled.

        On PostgreSQL the item is first claimed (exobot.db.outbox.claim) in a transaction that
        stays open while it is sent and marked: a row another worker holds is skipped, and a
        worker killed mid-send leaves its row pending (sent again later, same Message-ID)."""
        if self.repository.sqlite:
            delivered, given_up = await self._attempt(item, None)
        else:
            delivered = False
            try:
                async with self.repository.holding() as claim:
                    if not await outbox.claim(claim, item.id):
                        # Another worker has it, or it was done meanwhile: `run` waits a
                        # while before looking again, should it stay due.
                        self.held_elsewhere += 1
                        return False
                    delivered, given_up = await self._attempt(item, claim)
            except BaseException:  # a failed commit, or cancelled in it (stepping down)
                if delivered:  # sent and marked, but the claim's commit failed
                    self._sent_unmarked.setdefault(item.id, self.clock.now())
                raise
        if given_up is not None:  # told once the row is marked failed for all to see
            try:
                await self.failed(item, given_up)
            except BaseException:  # not told: the next pass looks for what was not
                self._report_at = self.clock.now()
                raise
        return delivered

    async def _mark(self, claim, work) -> None:  # noqa: ANN001 - a connection or None; a callable
        """Run `work(conn)` on the claim's connection, or in a write transaction of its own
        (SQLite: in the repository's writer thread, see SqlRepository.write)."""
        if claim is not None:
            await work(claim)
        else:
            await self.repository.write(work)

    async def _attempt(self, item: outbox.OutboxItem, claim) -> tuple[bool, str | None]:  # noqa: ANN001
        """Send one item and mark it (through `claim` when given); returns whether it was
        delivered and, when it was given up, why."""
        self._waiting_for_other_side.discard(item.id)
        try:
            await self.send(item)
        except asyncio.CancelledError:
            raise
        except PermanentFailure as error:
            self.failed_attempts += 1
            return False, await self._give_up(item, str(error), claim)
        except Unreachable as error:
            # Failing for the administrator to see (health, metrics, log), but no attempt of
            # the item's: however long the outage, it is sent once the other side is back.
            self.health.failed()
            self.failed_attempts += 1
            await self._wait_for_other_side(item, str(error), claim)
            return False, None
        except Exception as error:
            self.health.failed()
            self.failed_attempts += 1
            attempts = item.attempts + 1
            if attempts >= self.retry.max_attempts:
                reason = f"gave up after {attempts} attempts: {error}"
                return False, await self._give_up(item, reason, claim)
            next_try = self.clock.now() + self.retry.delay(attempts)
            self.log.warning(
                "%s not delivered, attempt %d, retry at %s: %s",
                self.describe(item),
                attempts,
                next_try.isoformat(timespec="seconds"),
                error,
                # Not the other side's answer but an error in code: where it came from.
                exc_info=isinstance(error, (*PAYLOAD_ERRORS, AttributeError)),
            )
            reason = str(error)
            await self._mark(claim, lambda conn: outbox.mark_retry(conn, item.id, reason, next_try))
            return False, None
        await self._mark_delivered(item, claim)
        return True, None

    async def _wait_for_other_side(self, item: outbox.OutboxItem, error: str, claim) -> None:  # noqa: ANN001
        """Put off an item the other side was unreachable for (see `unreachable_delay`),
        its count of attempts unchanged."""
        now = self.clock.now()
        waited = now - item.created_at if item.created_at is not None else timedelta(0)
        next_try = now + unreachable_delay(self.retry, waited)
        self.log.warning(
            "%s not delivered, the other side unreachable (not counted as an attempt), "
            "retry at %s: %s",
            self.describe(item),
            next_try.isoformat(timespec="seconds"),
            error,
        )
        await self._mark(claim, lambda conn: outbox.mark_waiting(conn, item.id, error, next_try))
        self._waiting_for_other_side.add(item.id)

    async def _mark_delivered(self, item: outbox.OutboxItem, claim) -> None:  # noqa: ANN001
        """Mark a sent item (through `claim` when given); a mark that fails is kept, to be
        made before anything else is sent."""
        sent_at = self.clock.now()
        try:
            await self._mark(claim, lambda conn: outbox.mark_sent(conn, item.id, sent_at))
        except BaseException:  # also cancelled while marking: the leader stepping down
            self._sent_unmarked[item.id] = sent_at  # marked by the next pass, not sent again
            raise
        self.health.succeeded()
        self.log.info("%s delivered", self.describe(item))

    async def _give_up(self, item: outbox.OutboxItem, error: str, claim) -> str:  # noqa: ANN001
        """Mark the item failed; returns `error`, for `failed()` once the mark is committed."""
        # The item leaves the backlog: the worker moved on, which is progress (the failure
        # itself is told in the ticket and counted in the metrics).
        self.health.succeeded()
        self.log.error("%s failed for good: %s", self.describe(item), error)
        now = self.clock.now()
        await self._mark(claim, lambda conn: outbox.mark_failed(conn, item.id, error, now))
        return error


def _outcome_seen(task: asyncio.Future) -> None:
    """Retrieve a finished task's exception, so that asyncio does not report it as never
    retrieved (what happened to the item is in the log and the outbox row)."""
    if not task.cancelled():
        task.exception()
