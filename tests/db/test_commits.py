"""The SQLite commit watch: what another connection (another process: the CLI) commits wakes
the running exobot's workers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from exobot.db.commits import SqliteCommitWatch
from exobot.db.engine import sqlite_file

DEADLINE = 90.0  # generous: the machine may be busy; the watch asks every 10 ms here


def make_database(path: Path) -> None:
    """A WAL database with one table, as exobot's is."""
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE IF NOT EXISTS t (x INTEGER)")
    conn.close()


def commit_elsewhere(path: Path) -> None:
    """One commit by another connection, as `exobot outbox retry` makes."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("INSERT INTO t VALUES (1)")
    finally:
        conn.close()


@contextlib.asynccontextmanager
async def watching(watch: SqliteCommitWatch) -> AsyncIterator[Callable[[int], Awaitable[None]]]:
    """Run the watch, counting its questions; yields a wait until it has asked `n` times.
    Cancelled at the end, it must end by that cancellation."""
    asks = 0
    changed = watch.changed

    def counted() -> bool:
        nonlocal asks
        asks += 1
        return changed()

    watch.changed = counted

    async def asked(n: int) -> None:
        async def enough() -> None:
            while asks < n:
                await asyncio.sleep(0.01)

        await asyncio.wait_for(enough(), DEADLINE)

    task = asyncio.create_task(watch.run())
    try:
        yield asked
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def test_only_the_file_of_an_sqlite_url_is_watched(tmp_path):
    assert sqlite_file(f"sqlite:///{tmp_path}/exobot.db") == tmp_path / "exobot.db"
    assert sqlite_file("sqlite:///relative/exobot.db") == Path("relative/exobot.db")
    for unseen in ("sqlite://", "sqlite:///:memory:", "postgresql://u@localhost/exobot"):
        assert sqlite_file(unseen) is None, unseen


def test_changed_says_whether_another_connection_committed(tmp_path):
    path = tmp_path / "exobot.db"
    make_database(path)
    watch = SqliteCommitWatch(path, on_commit=lambda: None, interval=1.0)
    try:
        assert watch.changed() is False  # the first answer only learns where it stands
        assert watch.changed() is False  # nothing committed meanwhile
        commit_elsewhere(path)
        assert watch.changed() is True
        assert watch.changed() is False  # told once
        with sqlite3.connect(path) as reader:  # a read is no commit
            reader.execute("SELECT count(*) FROM t").fetchone()
        reader.close()
        assert watch.changed() is False
        commit_elsewhere(path)
        commit_elsewhere(path)
        assert watch.changed() is True
    finally:
        watch.close()


async def test_a_commit_elsewhere_calls_on_commit(tmp_path):
    path = tmp_path / "exobot.db"
    make_database(path)
    woken = asyncio.Event()
    watch = SqliteCommitWatch(path, on_commit=woken.set, interval=0.01)
    async with watching(watch) as asked:
        await asked(3)  # it has learnt where the database stands and asked again
        assert not woken.is_set()  # no commit, no wake
        await asyncio.to_thread(commit_elsewhere, path)
        await asyncio.wait_for(woken.wait(), DEADLINE)
    assert watch._conn is None  # closed when cancelled


async def test_an_unreadable_database_is_logged_once_and_a_readable_one_wakes(tmp_path, caplog):
    """No file yet (moved away, a disk not mounted): one warning however long it lasts, no new
    empty database made; once it can be read, the workers are woken, since whatever was
    committed meanwhile was not seen."""
    path = tmp_path / "exobot.db"
    woken = asyncio.Event()
    watch = SqliteCommitWatch(path, on_commit=woken.set, interval=0.01)
    async with watching(watch) as asked:
        with caplog.at_level(logging.WARNING, logger="exobot.db"):
            await asked(5)
        assert not path.exists()
        warnings = [r.getMessage() for r in caplog.records if r.name == "exobot.db"]
        assert len(warnings) == 1, warnings
        assert warnings[0].startswith(f"cannot tell whether {path} changed: ")
        assert not woken.is_set()
        await asyncio.to_thread(make_database, path)
        await asyncio.wait_for(woken.wait(), DEADLINE)
