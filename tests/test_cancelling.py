"""Cancelling tasks once, on the stack's PostgreSQL: a lane cancelled while its query runs
lets psycopg cancel the query in the server, with no warning and no closed connection; a task
that swallows a cancellation is asked again after the grace time."""

from __future__ import annotations

import asyncio
import logging
import uuid

import pytest
from harness import wait_until
from sqlalchemy import text

from exobot.cancelling import cancel, cancel_and_wait
from exobot.db.engine import create_engine

INTERRUPTED = "query cancellation interrupted"


@pytest.fixture
async def pg_engine(stack):
    if stack.postgres_port is None:
        pytest.skip("the test stack runs without PostgreSQL (EXOBOT_STACK_POSTGRES / install)")
    engine = create_engine(stack.postgres_url(f"t_{uuid.uuid4().hex[:16]}"))
    yield engine
    await engine.dispose()


async def _waiting(engine, marker: str) -> int:
    """How many queries carrying `marker` the server is running now."""
    async with engine.connect() as conn:
        found = await conn.execute(
            text("SELECT count(*) FROM pg_stat_activity WHERE query LIKE :q AND state = 'active'"),
            {"q": f"%{marker}%"},
        )
        return found.scalar_one()


async def test_lanes_cancelled_with_their_worker_cancel_their_queries_cleanly(pg_engine, caplog):
    """A worker waiting on its lanes (as the outbox worker does) is cancelled: the lanes are
    asked once, their queries end in the server, and psycopg warns of nothing."""
    caplog.set_level(logging.WARNING, logger="psycopg")
    marker = f"lane_{uuid.uuid4().hex[:8]}"
    key = uuid.uuid4().int % 2**31
    # The test holds an advisory lock; each lane's query waits for it until it is cancelled.
    holder = await pg_engine.connect()
    await holder.execute(text("SELECT pg_advisory_lock(:key)"), {"key": key})

    async def lane() -> None:
        async with pg_engine.connect() as conn:
            await conn.execute(text(f"SELECT '{marker}', pg_advisory_lock({key})"))

    lanes = [asyncio.create_task(lane()) for _ in range(3)]

    async def worker() -> None:
        try:
            await asyncio.gather(*lanes)
        except BaseException:
            await cancel_and_wait(lanes)
            raise

    running = asyncio.create_task(worker())
    try:

        async def all_waiting() -> bool:
            return await _waiting(pg_engine, marker) == 3

        await wait_until(all_waiting, what="the three lanes' queries waiting in the server")
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
        assert all(task.cancelled() for task in lanes)
        assert INTERRUPTED not in caplog.text

        async def none_left() -> bool:  # cancelled in the server, not left waiting
            return await _waiting(pg_engine, marker) == 0

        await wait_until(none_left, what="the lanes' queries cancelled in the server")
    finally:
        await holder.close()


async def test_cancel_asks_a_running_task_once_and_leaves_done_ones():
    async def forever() -> None:
        await asyncio.Event().wait()

    done = asyncio.create_task(asyncio.sleep(0))
    await done
    running = asyncio.create_task(forever())
    await asyncio.sleep(0)
    cancel([done, running])
    cancel([running])  # already stopping: not asked twice
    assert running.cancelling() == 1
    with pytest.raises(asyncio.CancelledError):
        await running
    assert not done.cancelled()


async def test_a_task_that_swallows_a_cancellation_is_asked_again_after_the_grace():
    asked = 0

    async def stubborn() -> None:
        nonlocal asked
        while True:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                asked += 1
                if asked == 1:
                    continue  # swallowed, as a racing wait_for can
                raise

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    await asyncio.wait_for(cancel_and_wait([task], grace=0.2), 60)
    assert task.cancelled() and asked == 2
