"""Leadership's state changes, with a fake lock (and the real advisory lock on PostgreSQL)."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from exobot.leader import AdvisoryLock, Leadership

WAIT = 30.0  # generous: each change happens within a few of the (short) intervals below


class FakeLock:
    """A lock another session may hold (`taken_elsewhere`) and whose connection may fail."""

    def __init__(self) -> None:
        self.taken_elsewhere = True
        self.held = False
        self.broken = False
        self.tries = 0
        self.releases = 0

    def try_acquire(self) -> bool:
        self.tries += 1
        if self.taken_elsewhere:
            return False
        self.held, self.broken = True, False
        return True

    def check(self) -> None:
        if self.broken:
            raise ConnectionError("server closed the connection unexpectedly")

    def release(self) -> None:
        self.releases += 1
        self.held = False


def fast(lock: FakeLock) -> Leadership:
    return Leadership(lock, retry_seconds=0.01, check_seconds=0.01, check_timeout=5)


async def test_without_a_lock_the_instance_always_leads():
    leadership = Leadership.for_database("sqlite:///x.db")
    assert leadership.is_leader and leadership.elected.is_set()
    assert not leadership.deposed.is_set()
    task = asyncio.create_task(leadership.run())
    await asyncio.sleep(0.05)
    assert leadership.is_leader and not task.done()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert leadership.is_leader  # nothing to step down from


async def test_a_follower_leads_once_the_lock_is_free_and_steps_down_when_it_breaks():
    lock = FakeLock()
    leadership = fast(lock)
    assert not leadership.is_leader and leadership.deposed.is_set()
    task = asyncio.create_task(leadership.run())
    try:
        while lock.tries < 3:  # it keeps trying while another session holds the lock
            await asyncio.sleep(0.01)
        assert not leadership.is_leader and not lock.held

        lock.taken_elsewhere = False  # the leader died: its session and lock are gone
        await asyncio.wait_for(leadership.elected.wait(), WAIT)
        assert leadership.is_leader and not leadership.deposed.is_set() and lock.held
        assert leadership.changes == 1

        lock.taken_elsewhere = True  # meanwhile another instance will win the lock
        lock.broken = True  # the lock's connection fails: step down at once
        await asyncio.wait_for(leadership.deposed.wait(), WAIT)
        assert not leadership.is_leader and not leadership.elected.is_set()
        assert leadership.changes == 2

        async def released() -> None:
            while lock.releases == 0:
                await asyncio.sleep(0.01)

        await asyncio.wait_for(released(), WAIT)  # its session closed: the lock is free
        tries = lock.tries
        while lock.tries < tries + 2:  # and it is a follower again, trying
            await asyncio.sleep(0.01)
        assert not leadership.is_leader

        lock.taken_elsewhere = False
        await asyncio.wait_for(leadership.elected.wait(), WAIT)
        assert leadership.changes == 3
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert not leadership.is_leader  # stopping lets the lock go


async def test_a_database_away_is_retried_not_fatal():
    lock = FakeLock()
    lock.taken_elsewhere = False
    calls = 0
    original = lock.try_acquire

    def flaky() -> bool:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ConnectionError("connection refused")
        return original()

    lock.try_acquire = flaky
    leadership = fast(lock)
    task = asyncio.create_task(leadership.run())
    try:
        await asyncio.wait_for(leadership.elected.wait(), WAIT)
        assert calls == 3
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def test_the_advisory_lock_is_held_by_one_session_and_freed_when_it_ends(stack):
    if stack.postgres_port is None:
        pytest.skip("the test stack runs without PostgreSQL")
    import psycopg
    from sqlalchemy.engine import make_url

    url = stack.postgres_url(f"t_{uuid.uuid4().hex[:16]}")
    first, second = AdvisoryLock(url), AdvisoryLock(url)
    try:
        assert first.try_acquire()
        first.check()
        assert not second.try_acquire()
        with pytest.raises(ConnectionError):
            second.check()  # a lock it does not hold
        # The leader's session ends as a killed process's would: the lock goes with it.
        admin = make_url(url).set(drivername="postgresql", database="postgres")
        with psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True) as c:
            c.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_locks"
                " WHERE locktype = 'advisory' AND objid = %s",
                (AdvisoryLock(url).key & 0xFFFFFFFF,),
            )
        with pytest.raises(Exception):  # noqa: B017 - whatever the driver raises
            first.check()
        assert second.try_acquire()
        second.check()
    finally:
        first.release()
        second.release()
