"""The PostgreSQL run lock ("an exobot runs on this database", held shared by every `run`, taken
exclusively by `restore`) lives in a session of its own. A restart of the server or a cut
connection ends that session and the lock with it; it used to stay lost, so `exobot restore`
could then replace the database under running instances. Now a running exobot takes it again
within seconds, and stops when a restore took it in between."""

from __future__ import annotations

import asyncio

import pytest
from harness import DEADLINE, wait_until
from sqlalchemy import create_engine, text
from stack_fixtures import RUN_LOCK_HOLDERS
from test_keepalives import EXPECTED, pg_url, server_settings

from exobot.db.engine import sync_url
from exobot.runlock import LockHeld, RunLock, keep_run_lock

__all__ = ["pg_url"]  # the fixture, used by name

EVERY = 0.05  # the keeper's round in these tests (10 s in production)


@pytest.fixture
def admin(pg_url):
    engine = create_engine(sync_url(pg_url))
    yield engine
    engine.dispose()


def holders(admin) -> list[tuple[int, str]]:  # noqa: ANN001
    with admin.connect() as conn:
        return [tuple(row) for row in conn.execute(text(RUN_LOCK_HOLDERS))]


def end_session(admin, pid: int) -> None:  # noqa: ANN001
    """What a restart of the server or a cut connection does to the lock's session."""
    with admin.connect() as conn:
        assert conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar()


def test_the_run_locks_session_has_keepalives(pg_url):
    lock = RunLock(pg_url)
    try:
        lock.acquire(shared=True)
        assert server_settings(lock._conn) == EXPECTED
    finally:
        lock.release()


async def test_a_lost_run_lock_is_taken_again_and_a_restore_is_refused_after(pg_url, admin):
    lock = RunLock(pg_url)
    lock.acquire(shared=True)
    keeper = asyncio.create_task(keep_run_lock(lock, every=EVERY))
    try:
        [(first, mode)] = holders(admin)
        assert mode == "ShareLock"
        end_session(admin, first)

        async def held_anew() -> bool:
            now = holders(admin)
            return len(now) == 1 and now[0][0] != first

        await wait_until(held_anew, what="the run lock to be taken again")
        with pytest.raises(LockHeld):  # what `exobot restore` asks
            RunLock(pg_url).acquire()
        assert not keeper.done()
    finally:
        keeper.cancel()
        await asyncio.gather(keeper, return_exceptions=True)
        lock.release()


async def test_a_restore_that_took_the_lost_lock_stops_the_instance(pg_url, admin):
    lock = RunLock(pg_url)
    lock.acquire(shared=True)
    [(pid, _)] = holders(admin)
    end_session(admin, pid)
    restore = RunLock(pg_url)
    await wait_until(lambda: holders(admin) == [], what="the lost session to end")
    restore.acquire()  # exclusively, as `exobot restore` does, before the keeper looks again
    try:
        keeper = asyncio.create_task(keep_run_lock(lock, every=EVERY))
        with pytest.raises(LockHeld, match="a restore is under way"):
            await asyncio.wait_for(keeper, DEADLINE)
        assert [mode for _, mode in holders(admin)] == ["ExclusiveLock"]
    finally:
        restore.release()
        lock.release()


async def test_a_held_lock_is_left_as_it_is(pg_url, admin):
    lock = RunLock(pg_url)
    lock.acquire(shared=True)
    [(pid, _)] = holders(admin)
    keeper = asyncio.create_task(keep_run_lock(lock, every=EVERY))
    try:
        checked = 0
        check = lock.check

        def counted() -> None:
            nonlocal checked
            check()
            checked += 1

        lock.check = counted
        await wait_until(lambda: checked >= 3, what="three checks")
        assert holders(admin) == [(pid, "ShareLock")]  # the same session all along
    finally:
        keeper.cancel()
        await asyncio.gather(keeper, return_exceptions=True)
        lock.release()
