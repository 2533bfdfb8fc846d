"""Health rules with a fake clock: states, stalls after two minutes of work without progress,
the database check, and the report's status code."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from clocks import FakeClock

from exobot.health import FAILING, IDLE, OFF, OK, Component, Health


def test_a_component_is_idle_until_it_succeeds_then_ok_then_failing_after_a_failure():
    clock = FakeClock()
    part = Component("smtp", clock, critical=True)
    assert part.state(clock.now()) == IDLE
    part.succeeded()
    assert part.state(clock.now()) == OK
    clock.advance(seconds=5)
    part.failed()
    assert part.state(clock.now()) == FAILING
    clock.advance(seconds=5)
    part.succeeded()
    assert part.state(clock.now()) == OK
    part.enabled = False
    assert part.state(clock.now()) == OFF
    assert part.describe(clock.now())["state"] == OFF


def test_work_waiting_stalls_after_two_minutes_without_progress():
    clock = FakeClock()
    part = Component("smtp", clock, critical=True)
    part.succeeded()
    clock.advance(minutes=10)  # a long quiet time is not a stall: there was nothing to do
    assert not part.stalled(clock.now())
    part.waiting(True)
    since = part.waiting_since
    clock.advance(seconds=119)
    part.waiting(True)  # still waiting: the start of the wait is kept
    assert part.waiting_since == since
    assert not part.stalled(clock.now())
    clock.advance(seconds=1)
    assert part.stalled(clock.now())
    assert part.state(clock.now()) == FAILING
    part.succeeded()  # progress (one item delivered) while more is waiting
    assert not part.stalled(clock.now())
    clock.advance(minutes=2)
    assert part.stalled(clock.now())
    part.waiting(False)  # the backlog is empty
    assert not part.stalled(clock.now())
    assert part.describe(clock.now()) == {
        "state": OK,
        "last_success": part.last_success.isoformat(timespec="seconds"),
        "waiting_since": None,
        "stalled": False,
    }


async def _report(health: Health):
    return await health.report()


async def test_report_is_503_only_for_the_database_or_a_stalled_critical_part():
    clock = FakeClock()
    health = Health(clock)
    health.cache_seconds = 0
    reachable = True

    async def check() -> None:
        if not reachable:
            raise ConnectionError("gone")

    health.database_check = check
    intake = health.component("imap", critical=True)
    scheduler = health.component("scheduler")  # not critical: told, never fatal
    health.probes["plugins"] = lambda: {"state": OFF, "last_success": None}
    intake.succeeded()
    report = await _report(health)
    assert report.status_code == 200
    assert report.body["status"] == OK
    assert set(report.body["components"]) == {"database", "imap", "scheduler", "plugins"}
    assert report.body["components"]["database"]["state"] == OK
    assert report.body["components"]["scheduler"]["state"] == IDLE

    scheduler.waiting(True)
    scheduler.failed()
    clock.advance(minutes=5)
    report = await _report(health)
    assert report.status_code == 200
    assert report.body["components"]["scheduler"]["state"] == FAILING

    intake.waiting(True)  # the connection is lost
    clock.advance(minutes=1, seconds=59)
    assert (await _report(health)).status_code == 200
    clock.advance(seconds=1)
    report = await _report(health)
    assert report.status_code == 503
    assert report.body["status"] == FAILING
    assert report.body["components"]["imap"]["stalled"] is True
    intake.succeeded()
    intake.waiting(False)
    assert (await _report(health)).status_code == 200

    reachable = False
    report = await _report(health)
    assert report.status_code == 503
    assert report.body["components"]["database"]["state"] == FAILING
    reachable = True
    assert (await _report(health)).status_code == 200


async def test_a_database_that_does_not_answer_in_time_is_unreachable(monkeypatch):
    health = Health(FakeClock())
    health.cache_seconds = 0
    monkeypatch.setattr("exobot.health.DATABASE_TIMEOUT_SECONDS", 0.05)

    async def hangs() -> None:
        await asyncio.Event().wait()

    health.database_check = hangs
    assert (await health.report()).status_code == 503


async def test_a_failing_probe_is_told_not_raised():
    health = Health(FakeClock())

    def broken() -> dict:
        raise RuntimeError("boom")

    health.probes["plugins"] = broken
    report = await health.report()
    assert report.status_code == 200
    assert report.body["components"]["plugins"]["state"] == FAILING


async def test_reports_are_cached_briefly():
    health = Health(FakeClock())
    calls = 0

    async def check() -> None:
        nonlocal calls
        calls += 1

    health.database_check = check
    await asyncio.gather(*(health.report() for _ in range(20)))
    assert calls == 1


@pytest.mark.parametrize("waiting", [True, False])
def test_an_off_component_never_stalls(waiting):
    clock = FakeClock()
    part = Component("matrix", clock, critical=True)
    part.waiting(waiting)
    part.enabled = False
    clock.advance(hours=1)
    assert not part.stalled(clock.now(), timedelta(minutes=2))
