"""The "exobot is running" lock: `exobot run` holds it for its whole life, `restore` tests it.

- SQLite: an `flock` on a file next to the database (`exobot.db.lock` beside `exobot.db`).
  `run` takes it exclusively, so a second `run` on the same database refuses to start (two
  processes would both fetch the same mailbox and race on the outbox); `restore` takes it
  exclusively too, so neither overlaps the other. The kernel drops an flock when its process
  dies, even by SIGKILL: a stale lock file never blocks a start.
- PostgreSQL: a session advisory lock on a connection of its own, kept open while exobot
  runs. `run` holds it *shared* (several instances may run on one database; which of them
  leads is another key, exobot.leader.LEADER_KEY), `restore` needs it exclusively.
  PostgreSQL drops it when the session ends, a killed process included.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import logging
import os
from pathlib import Path

from sqlalchemy import Connection, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from exobot.db.engine import (
    check_sqlite_file,
    ensure_sqlite_dir,
    is_sqlite,
    pg_connect_args,
    sqlite_file,
    sync_url,
)

log = logging.getLogger("exobot.runlock")

LOCK_SUFFIX = ".lock"
# The advisory lock key of "an exobot runs on this database" (advisory locks are per
# database). Any fixed 64-bit number does; this one spells "exobotRN".
RUNNING_KEY = 0x65786F626F74524E
# How often a running exobot makes sure its session still holds the PostgreSQL run lock, and
# how long one such check may take.
CHECK_SECONDS = 10.0
CHECK_TIMEOUT_SECONDS = 10.0


class LockHeld(Exception):
    """Another process holds the lock: exobot runs (or a restore is under way)."""


def lock_path(url: str) -> Path:
    """The lock file of an SQLite database: its path plus `.lock`."""
    path = sqlite_file(url)
    if path is None:
        raise ValueError("an in-memory SQLite database has no lock file")
    return path.with_name(path.name + LOCK_SUFFIX)


def advisory_held(conn: Connection, key: int) -> bool:
    """Whether this connection's session holds the advisory lock `key` (shared or not)."""
    held = conn.execute(
        text(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
            " AND pid = pg_backend_pid() AND classid::bigint = :high"
            " AND objid::bigint = :low AND objsubid = 1"
        ),
        {"high": key >> 32, "low": key & 0xFFFFFFFF},
    ).scalar()
    conn.commit()
    return bool(held)


class RunLock:
    """The lock on one database; `acquire(shared=…)` raises LockHeld when another holds it,
    `release()` lets it go. Blocking calls (quick: no waiting, only try)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._fd: int | None = None
        self._conn: Connection | None = None
        self._engine = None
        self._shared = False

    @property
    def where(self) -> str:
        """What the lock is, for messages: the lock file, or the database's advisory lock."""
        if is_sqlite(self.url):
            return str(lock_path(self.url))
        parsed = make_url(self.url)
        return f"advisory lock {RUNNING_KEY} on database {parsed.database} at {parsed.host}"

    def acquire(self, shared: bool = False) -> None:
        """Take the lock without waiting (`shared` only matters on PostgreSQL)."""
        if is_sqlite(self.url):
            self._acquire_file()
        else:
            self._acquire_advisory(shared)

    def _acquire_file(self) -> None:
        database = sqlite_file(self.url)
        if database is None:
            return  # a private in-memory database: no other process can reach it
        if database.exists():  # no lock file beside what is no database (/etc/passwd.lock)
            check_sqlite_file(database)
        ensure_sqlite_dir(self.url)
        path = lock_path(self.url)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            os.close(fd)
            if error.errno in (errno.EWOULDBLOCK, errno.EACCES, errno.EAGAIN):
                raise LockHeld(self._holder_text(path)) from None
            raise
        # Who holds it, for the refusal of the next one (information only: the flock decides).
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    @staticmethod
    def _holder_text(path: Path) -> str:
        with contextlib.suppress(OSError, ValueError):
            pid = int(path.read_text().split()[0])
            return f"{path} is held by process {pid}"
        return f"{path} is held by another process"

    def _acquire_advisory(self, shared: bool) -> None:
        from sqlalchemy import create_engine

        # A connection of its own, outside any pool: the lock lives as long as this session.
        # With the keepalives a session whose peer died ends within about 25 s (exobot.leader).
        self._shared = shared
        self._engine = create_engine(
            sync_url(self.url), poolclass=NullPool, connect_args=pg_connect_args(self.url)
        )
        conn = self._engine.connect()
        function = "pg_try_advisory_lock_shared" if shared else "pg_try_advisory_lock"
        got = conn.execute(text(f"SELECT {function}(:key)"), {"key": RUNNING_KEY}).scalar()
        conn.commit()  # the session lock outlives the transaction; leave none open
        if not got:
            conn.close()
            self._engine.dispose()
            self._engine = None
            raise LockHeld(f"the {self.where} is held by another session")
        self._conn = conn

    def check(self) -> None:
        """Raise ConnectionError unless the lock is still held: on PostgreSQL a restart of the
        server or a cut connection ends the session, and the lock with it (an flock is never
        lost while its file stays open)."""
        if self._fd is not None:
            return
        if self._conn is None:
            raise ConnectionError("the run lock is not held")
        if not advisory_held(self._conn, RUNNING_KEY):
            raise ConnectionError("the run lock's session no longer holds it")

    def retake(self) -> None:
        """Take the lock again as it was taken, in a new session (LockHeld: another session
        took it exclusively meanwhile)."""
        shared = self._shared
        self.release()
        self.acquire(shared)

    def release(self) -> None:
        """Let the lock go (closing the file or the session is what frees it)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock now."""
        return self._fd is not None or self._conn is not None

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.release()


def running_message(error: LockHeld) -> str:
    """The line a refused command prints."""
    return f"exobot is already running on this database ({error}): stop it first"


async def keep_run_lock(lock: RunLock, every: float = CHECK_SECONDS) -> None:
    """Make sure, every `every` seconds, that a running exobot still holds its PostgreSQL run
    lock, and take it again when its session was lost (a restart of the server, a cut
    connection): without it `exobot restore` could replace the database under this instance.
    Runs until cancelled; raises LockHeld when another session took the lock exclusively in
    between (a restore under way), for the instance to stop."""
    lost = False
    while True:
        await asyncio.sleep(every)
        try:
            await asyncio.wait_for(asyncio.to_thread(lock.check), CHECK_TIMEOUT_SECONDS)
            continue
        except Exception as error:
            if not lost:
                log.warning("the run lock is lost (%s): taking it again", error)
            lost = True
        try:
            await asyncio.wait_for(asyncio.to_thread(lock.retake), CHECK_TIMEOUT_SECONDS)
        except LockHeld as held:
            raise LockHeld(f"{held}: a restore is under way, this exobot must stop") from None
        except Exception as error:  # the database is still away: the next round tries again
            log.debug("cannot take the run lock again yet: %s", error)
        else:
            log.info("the run lock is held again")
            lost = False
