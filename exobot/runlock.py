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

import contextlib
import errno
import fcntl
import os
from pathlib import Path

from sqlalchemy import Connection, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from exobot.db.engine import ensure_sqlite_dir, is_sqlite, sqlite_file, sync_url

LOCK_SUFFIX = ".lock"
# The advisory lock key of "an exobot runs on this database" (advisory locks are per
# database). Any fixed 64-bit number does; this one spells "exobotRN".
RUNNING_KEY = 0x65786F626F74524E


class LockHeld(Exception):
    """Another process holds the lock: exobot runs (or a restore is under way)."""


def lock_path(url: str) -> Path:
    """The lock file of an SQLite database: its path plus `.lock`."""
    path = sqlite_file(url)
    if path is None:
        raise ValueError("an in-memory SQLite database has no lock file")
    return path.with_name(path.name + LOCK_SUFFIX)


class RunLock:
    """The lock on one database; `acquire(shared=…)` raises LockHeld when another holds it,
    `release()` lets it go. Blocking calls (quick: no waiting, only try)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._fd: int | None = None
        self._conn: Connection | None = None
        self._engine = None

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
        if sqlite_file(self.url) is None:
            return  # a private in-memory database: no other process can reach it
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
        self._engine = create_engine(sync_url(self.url), poolclass=NullPool)
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
