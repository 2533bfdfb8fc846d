"""Noticing what another process committed to an SQLite database.

`exobot outbox retry`, `exobot privacy erase` and plugins' commands run in a process of their
own: what they queue is in the database, but the running exobot's outbox workers sleep until
woken, or until their idle wait ends. SQLite tells a connection whether anyone else committed
since it last asked (`PRAGMA data_version`: a look at the database's header or WAL index; no
table read, no lock held), so one connection of its own asks every second (exobot.app) and
wakes the workers when the answer changes. It cannot tell commits of this process's other
connections from another process's: a busy exobot is woken at most once a second more, for a
pass that finds nothing new. (On PostgreSQL the workers poll the outbox instead: exobot.app.)
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

from exobot.db.engine import connect_existing_sqlite

log = logging.getLogger("exobot.db")


class SqliteCommitWatch:
    """Calls `on_commit` within `interval` seconds of a commit to the SQLite file at `path`
    by any other connection (another process's, or this one's)."""

    def __init__(
        self,
        path: Path,
        on_commit: Callable[[], None],
        interval: float,
    ) -> None:
        self.path = path
        self.on_commit = on_commit
        self.interval = interval
        self._conn: sqlite3.Connection | None = None
        self._version: int | None = None
        # `changed` runs in a worker thread; a cancelled watch closes from the event loop.
        self._lock = threading.Lock()

    def changed(self) -> bool:
        """Whether another connection committed since the last call; blocking (a file read).

        The first call only learns where the database stands (False); the first after a
        failure says True, since a commit may have been missed meanwhile."""
        with self._lock:
            if self._conn is None:
                # Autocommit: the pragma opens no transaction that would pin an old snapshot.
                self._conn = connect_existing_sqlite(
                    self.path, isolation_level=None, check_same_thread=False
                )
            (version,) = self._conn.execute("PRAGMA data_version").fetchone()
        previous, self._version = self._version, version
        return previous is not None and version != previous

    async def run(self) -> None:
        """Watch until cancelled. An unreadable database (a disk error, the file moved away) is
        logged (once until it reads again) and asked again at the next turn: the workers' own
        idle wait still brings them round meanwhile."""
        failing = False
        try:
            while True:
                try:
                    if await asyncio.to_thread(self.changed):
                        self.on_commit()
                    failing = False
                except sqlite3.Error as error:
                    if not failing:
                        log.warning("cannot tell whether %s changed: %s", self.path, error)
                    failing = True
                    self.close()
                    self._version = -1  # a new connection's first answer counts as a change
                await asyncio.sleep(self.interval)
        finally:
            self.close()

    def close(self) -> None:
        """Close the watching connection (the next `changed` opens another)."""
        with self._lock:  # held for a pragma's microseconds at most
            if self._conn is not None:
                self._conn.close()
                self._conn = None
