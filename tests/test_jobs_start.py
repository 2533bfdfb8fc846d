"""When the scheduled jobs start: APScheduler is given real times whatever clock was injected;
with chat, only the alert sweep (alerts and the digest, for the queue rooms) waits for Matrix,
while retention, housekeeping and plugins' jobs run from the moment the instance leads, even
with the homeserver unreachable since the start."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import yaml
from apscheduler.schedulers.base import STATE_RUNNING
from clocks import ShiftedClock
from harness import free_port, wait_until

from devstack.exobot_config import exobot_config
from exobot.app import App
from exobot.config import load_config
from exobot.jobs import SWEEP, Scheduler


class Counted:
    """An async job that counts its runs."""

    def __init__(self) -> None:
        self.runs = 0

    async def __call__(self) -> None:
        self.runs += 1


def scheduler_with(clock, *, wait_for_chat: bool = False):  # noqa: ANN001, ANN201
    """A Scheduler with a counted sweep, housekeeping and plugin job (first run at once)."""
    sweep = SimpleNamespace(clock=clock, run_once=Counted())
    housekeeping, plugin = Counted(), Counted()
    every = timedelta(minutes=1)
    scheduler = Scheduler(sweep, every, housekeeping, wait_for_chat=wait_for_chat)  # type: ignore[arg-type]
    scheduler.add_job(plugin, timedelta(hours=1), "plugin:test:probe", first_after=timedelta(0))
    return scheduler, sweep.run_once, housekeeping, plugin


def due_in(scheduler: Scheduler, job_id: str) -> timedelta | None:
    """How long from the real now until the job runs next (None: paused)."""
    when = scheduler.scheduler.get_job(job_id).next_run_time
    return None if when is None else when - datetime.now(UTC)


async def test_first_runs_are_due_in_real_time_whatever_the_injected_clock():
    """A clock two days ahead (a test that jumped time) does not put the first sweep and
    housekeeping two days into APScheduler's real future."""
    clock = ShiftedClock()
    clock.advance(days=2)
    scheduler, sweep, housekeeping, plugin = scheduler_with(clock)
    scheduler.start()
    try:
        assert due_in(scheduler, SWEEP) < timedelta(minutes=1)
        assert due_in(scheduler, "housekeeping") < timedelta(minutes=1)
        await wait_until(lambda: sweep.runs and housekeeping.runs and plugin.runs, what="jobs")
    finally:
        scheduler.stop()


async def test_with_chat_only_the_sweep_waits_for_it_also_after_a_step_down():
    scheduler, sweep, housekeeping, plugin = scheduler_with(ShiftedClock(), wait_for_chat=True)
    scheduler.start()  # this instance leads; Matrix not connected yet
    try:
        await wait_until(lambda: housekeeping.runs and plugin.runs, what="the other jobs")
        assert due_in(scheduler, SWEEP) is None and sweep.runs == 0

        scheduler.resume_chat_jobs()  # connected, rooms joined
        await wait_until(lambda: sweep.runs == 1, what="the first sweep")
        assert due_in(scheduler, SWEEP) > timedelta(seconds=30)  # then every minute

        scheduler.pause()  # a step-down: every job paused, then chat stops
        scheduler.pause_chat_jobs()
        scheduler.start()  # leading again, Matrix not connected yet
        assert scheduler.scheduler.state == STATE_RUNNING and scheduler.health.enabled
        assert due_in(scheduler, SWEEP) is None
        scheduler.resume_chat_jobs()
        await wait_until(lambda: sweep.runs == 2, what="the sweep once chat is back")
    finally:
        scheduler.stop()


async def test_retention_and_plugin_jobs_run_while_the_homeserver_is_unreachable(tmp_path):
    """An App whose homeserver (and mail servers) nobody answers for: as leader it runs
    retention and plugins' jobs all the same; only the alert sweep waits for chat."""
    nobody = SimpleNamespace(
        host="127.0.0.1", imap_port=free_port(), smtp_port=free_port(), password="x"
    )
    matrix = SimpleNamespace(
        homeserver=f"http://127.0.0.1:{free_port()}",
        bot_user_id="@exobot:example.org",
        bot_password="a-password-nobody-checks",
        aliases={"suport": "#suport:example.org"},
    )
    data = exobot_config(
        nobody,
        address="suport@example.org",
        database_url=f"sqlite:///{tmp_path / 'exobot.db'}",
        matrix=matrix,
        alerts={"digest_at": None},
    )
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    app = App(load_config(path, env={}))
    await app.build()
    plugin = Counted()  # as a plugin schedules it, when plugins start (before the leader's parts)
    app.scheduler.add_job(plugin, timedelta(hours=1), "plugin:test:probe", first_after=timedelta(0))
    retained = asyncio.Event()

    async def retain():  # noqa: ANN202
        retained.set()

    app.retention.run_once = retain
    await app.start()
    try:
        await wait_until(
            lambda: app.matrix.health.last_failure is not None, what="a refused connection"
        )
        scheduler = app.scheduler
        assert scheduler.scheduler.state == STATE_RUNNING and scheduler.health.enabled
        assert not app.chat_ready.is_set()
        assert due_in(scheduler, "retention") <= timedelta(minutes=5)
        await wait_until(lambda: plugin.runs, what="the plugin's job")
        scheduler.scheduler.modify_job("retention", next_run_time=datetime.now(UTC))
        await wait_until(retained.is_set, what="the retention pass")
        assert due_in(scheduler, SWEEP) is None  # the sweep waits for chat
    finally:
        await app.stop()
