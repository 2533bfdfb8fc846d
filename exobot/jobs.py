"""Scheduled jobs on APScheduler: one sweep a minute raises the alerts that are due and posts
the daily digest.

Nothing is scheduled per ticket: each ticket carries its own "next alert at" time, and the
sweep asks the ticket service to raise the alerts whose time has come (the service re-plans
the next one in the same transaction). The digest is keyed by its local date, recorded with
its outbox row. So a restart repeats nothing, and whatever fell due while exobot was down
is raised at the first sweep after it starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime, time, timedelta
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.schedulers.base import STATE_PAUSED, STATE_RUNNING
from apscheduler.triggers.interval import IntervalTrigger

from exobot.cancelling import cancel
from exobot.core.clock import Clock, SystemClock
from exobot.core.events import OutboxQueued
from exobot.core.intents import RaiseAlert
from exobot.core.model import Actor
from exobot.core.service import CHAT, ServiceError, TicketService
from exobot.db.repository import SqlRepository
from exobot.health import Component

T = TypeVar("T")
log = logging.getLogger("exobot.jobs")

ALERTS = Actor.system("alerts")


class AlertSweep:
    """Raises due alerts and the daily digest; `run_once()` is one sweep."""

    def __init__(
        self,
        repository: SqlRepository,
        service: TicketService,
        *,
        digest_at: time | None,
        timezone: ZoneInfo,
        clock: Clock | None = None,
    ) -> None:
        self.repository = repository
        self.service = service
        self.digest_at = digest_at
        self.timezone = timezone
        self.clock = clock or service.clock

    async def run_once(self) -> int:
        """One sweep; returns how many alerts and digests were queued."""
        now = self.clock.now()
        raised = 0
        due = await self.repository.read(lambda view: view.due_alerts(now))
        for number in due:
            try:
                outcome = await self.service.apply(ALERTS, RaiseAlert(number))
            except ServiceError as error:
                log.warning("alert for ticket %s not raised: %s", number, error)
                continue
            raised += bool(outcome.entries)
        if self.digest_at is not None and await self._digest(now):
            raised += 1
        return raised

    async def _digest(self, now: datetime) -> bool:
        local = now.astimezone(self.timezone)
        if local.time() < self.digest_at:
            return False
        key = f"digest:{local.date().isoformat()}"

        async def work(uow) -> bool:  # noqa: ANN001 - the service's unit of work
            if not await uow.claim(key):
                return False
            await uow.queue_outbox(CHAT, None, {"type": "digest", "date": local.date().isoformat()})
            return True

        queued = await self.repository.run(work, now=now)
        if queued:
            log.info("daily digest of %s queued", local.date())
            await self.service.events.emit(OutboxQueued(CHAT))
        return queued


SWEEP = "alert-sweep"


class Scheduler:
    """The process's APScheduler, owning the sweep job (when chat is on) and plugins' jobs.

    APScheduler runs on the system's time: the times it is given (when a job runs next) are
    real ones, whatever clock was injected; the jobs themselves read the injected clock.
    """

    def __init__(
        self,
        sweep: AlertSweep | None,
        every: timedelta,
        housekeeping: Callable[[], Awaitable[object]] | None = None,
        clock: Clock | None = None,
        *,
        wait_for_chat: bool = False,
    ) -> None:
        self.sweep = sweep
        self.every = every
        self.housekeeping = housekeeping  # hourly: forget expired web sessions and links
        self.clock = clock or (sweep.clock if sweep is not None else SystemClock())
        self.scheduler = AsyncIOScheduler(timezone=UTC)
        # The sweep's alerts and digest are for the queue rooms: with `wait_for_chat` it runs
        # only between resume_chat_jobs() and pause_chat_jobs(). The other jobs (retention,
        # housekeeping, plugins') run from start() on, whether the homeserver answers or not.
        self._chat_ready = not wait_for_chat
        # The jobs running now: pause() cancels them, so that an instance that stopped leading
        # does not go on beside the one that leads now.
        self._running: set[asyncio.Task] = set()
        # Health: a job that ran is progress; off until started (exobot.health).
        self.health = Component("scheduler", self.clock)
        self.health.enabled = False

    def add_job(
        self,
        fn: Callable[[], Awaitable[object]],
        every: timedelta,
        job_id: str,
        *,
        first_after: timedelta | None = None,
    ) -> Callable[[], None]:
        """Run `await fn()` every `every` (first after one interval, or after `first_after`),
        never two at once; returns the function that removes the job. `fn` handles its own
        failures."""
        job = self._cancellable(self._recorded(fn), job_id)
        first = {}
        if first_after is not None:
            # A daily job must not wait a whole day after each restart: it might never run.
            first["next_run_time"] = datetime.now(UTC) + first_after
        self.scheduler.add_job(
            job,
            IntervalTrigger(seconds=every.total_seconds()),
            id=job_id,
            name=job_id,  # APScheduler's log lines name it
            max_instances=1,
            coalesce=True,
            misfire_grace_time=None,
            **first,
        )

        def remove() -> None:
            with contextlib.suppress(JobLookupError):
                self.scheduler.remove_job(job_id)

        return remove

    def _recorded(self, fn: Callable[[], Awaitable[object]]) -> Callable[[], Awaitable[None]]:
        """`fn` with its outcome recorded in the scheduler's health."""

        async def job() -> None:
            try:
                await fn()
            except Exception:
                self.health.failed()
                raise  # APScheduler logs it
            self.health.succeeded()

        return job

    def start_task(self, work: Coroutine[Any, Any, T], *, name: str) -> asyncio.Task[T]:
        """Run `work` as a task that pause() cancels like a job under way: the work a job
        starts without waiting for it (the connectivity plugin's probing rounds), so that an
        instance that stopped leading does not finish it beside the new leader."""
        task = asyncio.create_task(work, name=name)
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        return task

    def _cancellable(
        self, fn: Callable[[], Awaitable[None]], job_id: str
    ) -> Callable[[], Awaitable[None]]:
        """`fn` as a job that pause() or a stop can cancel; so cancelled, it ends with a line
        in the log instead of APScheduler's error and traceback (what it committed stays: a
        job's changes are transactions)."""

        async def job() -> None:
            task = asyncio.current_task()
            self._running.add(task)
            try:
                await fn()
            except asyncio.CancelledError:
                why = "this instance no longer leads"
                if self.scheduler.state != STATE_PAUSED:
                    why = "exobot is stopping"
                log.info("job %s cancelled: %s", job_id, why)
            finally:
                self._running.discard(task)

        return job

    def start(self) -> None:
        """Run the jobs: housekeeping now and hourly, plugins' jobs and retention on their
        intervals, and the sweep now and every `every` (with `wait_for_chat`, from
        resume_chat_jobs() on); a job still running is never doubled. After `pause()` (an
        instance that stopped leading leads again) the jobs resume, the sweep only if chat
        is ready."""
        if self.scheduler.state == STATE_PAUSED:
            self.scheduler.resume()
            self.health.enabled = True
            return
        if self.sweep is not None:
            self.scheduler.add_job(
                self._cancellable(self._sweep, SWEEP),
                IntervalTrigger(seconds=self.every.total_seconds()),
                id=SWEEP,
                name=SWEEP,
                # None: added paused, until chat is ready.
                next_run_time=datetime.now(UTC) if self._chat_ready else None,
                max_instances=1,
                coalesce=True,
                misfire_grace_time=None,
            )
        if self.housekeeping is not None:
            self.scheduler.add_job(
                self._cancellable(self._housekeeping, "housekeeping"),
                IntervalTrigger(hours=1),
                id="housekeeping",
                name="housekeeping",
                next_run_time=datetime.now(UTC),
                max_instances=1,
                coalesce=True,
                misfire_grace_time=None,
            )
        self.scheduler.start()
        self.health.enabled = True

    def resume_chat_jobs(self) -> None:
        """Chat is ready (Matrix connected, rooms joined): sweep now, then every `every`
        (whatever fell due meanwhile is raised by this first sweep)."""
        self._chat_ready = True
        if self.scheduler.get_job(SWEEP) is not None:
            self.scheduler.modify_job(SWEEP, next_run_time=datetime.now(UTC))

    def pause_chat_jobs(self) -> None:
        """Chat stopped: no sweep until resume_chat_jobs(); the other jobs go on."""
        self._chat_ready = False
        with contextlib.suppress(JobLookupError):
            self.scheduler.pause_job(SWEEP)

    async def _housekeeping(self) -> None:
        try:
            await self.housekeeping()
        except Exception:  # the next hour tries again
            log.exception("housekeeping failed")
            self.health.failed()
        else:
            self.health.succeeded()

    async def _sweep(self) -> None:
        try:
            await self.sweep.run_once()
        except Exception:  # a database hiccup: the next sweep tries again
            log.exception("alert sweep failed")
            self.health.failed()
        else:
            self.health.succeeded()

    def pause(self) -> None:
        """Run no job until `start()` again (this instance no longer leads); the jobs running
        now are cancelled (what each committed stays: a job's changes are transactions)."""
        if self.scheduler.state == STATE_RUNNING:
            self.scheduler.pause()
        cancel(self._running)
        self.health.enabled = False

    def stop(self) -> None:
        """Stop the scheduler without waiting for a running sweep."""
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        self.health.enabled = False
