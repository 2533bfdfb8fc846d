"""SqlRepository.holding: a write transaction held open across awaits (an outbox row claimed
while it is sent). On PostgreSQL its statements run in the repository's side threads on a
blocking connection; a block cut off mid-statement still ends cleanly."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select, text
from stack_fixtures import app_repository, fresh_database_url

from exobot.db.repository import SqlRepository
from exobot.db.tables import OutboxRow

O = OutboxRow.__table__  # noqa: E741
LOCK = 4242  # an advisory lock the test holds to keep a statement of the block waiting


@pytest.fixture
async def pg_repo(request: pytest.FixtureRequest, tmp_path: Path):
    async with app_repository(fresh_database_url(request, "postgresql", tmp_path)) as repository:
        yield repository


def a_row(name: str) -> dict:
    now = datetime.now(UTC)
    return {
        "kind": "chat",
        "payload": {"name": name},
        "state": "pending",
        "attempts": 0,
        "next_try_at": now,
        "created_at": now,
    }


async def names(repo: SqlRepository) -> list[str]:
    async with repo.reading() as view:
        rows = await view.conn.execute(select(O.c.payload).order_by(O.c.id))
        return [payload["name"] for (payload,) in rows]


async def test_a_block_commits_at_its_end_and_rolls_back_on_error(app_repo):
    async with app_repo.holding() as conn:
        await conn.execute(insert(O), [a_row("kept")])
        result = await conn.execute(select(O.c.id, O.c.payload))
        assert [r.payload["name"] for r in result] == ["kept"]  # rows readable on the loop
        assert (await conn.execute(select(func.count()).select_from(O))).scalar_one() == 1

    with pytest.raises(RuntimeError):
        async with app_repo.holding() as conn:
            await conn.execute(insert(O), [a_row("undone")])
            raise RuntimeError("the send failed in a way that undoes the block")
    assert await names(app_repo) == ["kept"]


async def test_a_block_cancelled_mid_statement_rolls_back_and_gives_its_connection_back(
    pg_repo,
):
    """The leader steps down while a claim's statement is in flight: the statement runs to its
    end in its thread, then the block is rolled back and the connection goes back to the
    pool (none is left checked out, holding locks)."""
    pool = pg_repo.sync_engine.pool

    async def block() -> None:
        async with pg_repo.holding() as conn:
            await conn.execute(insert(O), [a_row("cut off")])
            await conn.execute(text(f"SELECT pg_advisory_xact_lock({LOCK})"))

    async def block_waits() -> bool:
        async with pg_repo.engine.connect() as conn:  # a fresh snapshot of the activity
            waiting = await conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                    " AND query LIKE 'SELECT pg_advisory_xact_lock%'"
                )
            )
            return bool(waiting.scalar_one())

    async with pg_repo.engine.begin() as holder:  # the lock is let go at its end
        await holder.execute(text(f"SELECT pg_advisory_xact_lock({LOCK})"))
        task = asyncio.create_task(block())
        async with asyncio.timeout(60):
            while not await block_waits():
                await asyncio.sleep(0.02)
        task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 60)

    assert pool.checkedout() == 0
    assert await names(pg_repo) == []
