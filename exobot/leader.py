"""Leadership: which of several `exobot run` processes on one database does the work that must
happen once (fetching mail, processing it, delivering the outbox, the Matrix client, the
scheduled jobs). Every instance serves the web, the API, /healthz and the metrics.

- SQLite: one process only (the run lock's flock is exclusive), so it is always the leader.
- PostgreSQL: the leader holds the session advisory lock `LEADER_KEY` on a connection of its
  own (no pool). A follower tries `pg_try_advisory_lock` every `LEADER_RETRY_SECONDS`; when the
  leader dies, even by SIGKILL, PostgreSQL ends its session and drops the lock, and the next
  try of a follower wins. The leader checks its lock connection every `LEADER_CHECK_SECONDS`
  and steps down at once when that connection fails (a restarted server, a cut network): an
  instance that cannot prove it holds the lock must not act as the leader.

The App waits on `elected` (set while this instance leads) to start its leader's parts and on
`deposed` (set while it does not) to stop them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from typing import Protocol

from sqlalchemy import Connection, text
from sqlalchemy.pool import NullPool

from exobot.db.engine import is_sqlite, pg_connect_args, sync_url
from exobot.runlock import advisory_held

log = logging.getLogger("exobot.leader")

# The advisory lock key of "the leader on this database"; it spells "exobotLD" (the run lock,
# exobot.runlock.RUNNING_KEY, is another key, held shared by every instance).
LEADER_KEY = 0x65786F626F744C44
# Held (waiting for it) around the migrations at start: two instances started together must
# not both run the same migration. It spells "exobotMG".
MIGRATION_KEY = 0x65786F626F744D47
# How often a follower tries to take the lock: a dead leader's work resumes within this (plus
# the time the leader's parts take to start).
LEADER_RETRY_SECONDS = 2.0
# How often the leader checks that its lock connection still answers, and how long it waits
# for the answer: a leader cut off from the database steps down within the sum.
LEADER_CHECK_SECONDS = 2.0
LEADER_CHECK_TIMEOUT_SECONDS = 10.0


class LeaderLock(Protocol):
    """What Leadership needs from a lock (blocking calls; a test gives a fake one)."""

    def try_acquire(self) -> bool:
        """Take the lock without waiting; False when another session holds it."""

    def check(self) -> None:
        """Raise unless the lock is still held (its connection answers)."""

    def release(self) -> None:
        """Let the lock go (closing its session is what frees it)."""


class AdvisoryLock:
    """A PostgreSQL session advisory lock on a dedicated connection (NullPool: the lock lives
    exactly as long as this session)."""

    def __init__(self, url: str, key: int = LEADER_KEY) -> None:
        self.url = url
        self.key = key
        self._engine = None
        self._conn: Connection | None = None

    def try_acquire(self) -> bool:
        """Open a session and try the lock in it; keep the session only when it got the lock."""
        from sqlalchemy import create_engine

        self.release()
        # With the keepalives, the server notices a leader whose host died (no RST) within
        # about 25 s and ends its session, freeing the lock; the default would be hours.
        self._engine = create_engine(
            sync_url(self.url), poolclass=NullPool, connect_args=pg_connect_args(self.url)
        )
        try:
            conn = self._engine.connect()
            got = conn.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": self.key})
            got = bool(got.scalar())
            conn.commit()  # the session lock outlives the transaction; leave none open
        except BaseException:
            self.release()
            raise
        if not got:
            conn.close()
            self.release()
            return False
        self._conn = conn
        return True

    def check(self) -> None:
        """Ask the lock's own session whether it still holds the lock (raises when the
        connection is gone)."""
        if self._conn is None:
            raise ConnectionError("the leader lock is not held")
        if not advisory_held(self._conn, self.key):
            raise ConnectionError("the leader lock's session no longer holds it")

    def release(self) -> None:
        """Close the session (which frees the lock) and its engine; safe to call twice."""
        conn, self._conn = self._conn, None  # taken first: a second call finds nothing
        engine, self._engine = self._engine, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()
        if engine is not None:
            with contextlib.suppress(Exception):
                engine.dispose()


@contextlib.contextmanager
def migrating_alone(url: str) -> Iterator[None]:
    """PostgreSQL: hold the migration lock for the block, waiting for another instance's
    migrations to end first (blocking). SQLite: nothing (one process only)."""
    if is_sqlite(url):
        yield
        return
    from sqlalchemy import create_engine

    engine = create_engine(sync_url(url), poolclass=NullPool)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_KEY})
            conn.commit()
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_KEY})
                conn.commit()
    finally:
        engine.dispose()


class Leadership:
    """Whether this instance leads, and the loop that takes and keeps the leader lock.

    `is_leader` is the current state; `elected` is set while leading and `deposed` while not
    (exactly one of them is set). `run()` runs until cancelled; on SQLite (no `lock`) the
    instance leads from the start and `run()` has nothing to do.
    """

    def __init__(
        self,
        lock: LeaderLock | None,
        *,
        retry_seconds: float = LEADER_RETRY_SECONDS,
        check_seconds: float = LEADER_CHECK_SECONDS,
        check_timeout: float = LEADER_CHECK_TIMEOUT_SECONDS,
    ) -> None:
        self.lock = lock
        self.retry_seconds = retry_seconds
        self.check_seconds = check_seconds
        self.check_timeout = check_timeout
        self.elected = asyncio.Event()
        self.deposed = asyncio.Event()
        self.changes = 0  # how often the state changed, for the logs and tests
        self._releasing: asyncio.Future | None = None  # a release running off the loop
        if lock is None:
            self.elected.set()
        else:
            self.deposed.set()

    @classmethod
    def for_database(cls, url: str) -> Leadership:
        """Always leader on SQLite; an advisory lock election on PostgreSQL."""
        return cls(None if is_sqlite(url) else AdvisoryLock(url))

    @property
    def is_leader(self) -> bool:
        """Whether this instance leads now."""
        return self.elected.is_set()

    async def run(self) -> None:
        """Try for the lock while following; check it while leading; until cancelled (the
        lock is released then)."""
        if self.lock is None:
            await asyncio.Event().wait()  # always the leader: nothing to watch
        try:
            while True:
                if self.is_leader:
                    await asyncio.sleep(self.check_seconds)
                    await self._check()
                elif not await self._try():
                    await asyncio.sleep(self.retry_seconds)
        finally:
            self._step_down("exobot stops", logging.INFO)  # a normal stop: no warning

    async def _try(self) -> bool:
        if self._releasing is not None:  # the last session must be gone before a new try
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self._releasing), self.check_timeout)
            self._releasing = None
        try:
            got = await asyncio.to_thread(self.lock.try_acquire)
        except Exception as error:  # the database is away: try again later
            log.warning("cannot try the leader lock: %s", error)
            return False
        if got:
            self.changes += 1
            self.deposed.clear()
            self.elected.set()
            log.info("this instance is now the leader")
        return got

    async def _check(self) -> None:
        try:
            await asyncio.wait_for(asyncio.to_thread(self.lock.check), self.check_timeout)
        except Exception as error:
            self._step_down(f"the leader lock's connection failed: {error!r}")

    def _step_down(self, why: str, level: int = logging.WARNING) -> None:
        if self.lock is None:
            return
        was_leader = self.is_leader
        self.elected.clear()
        self.deposed.set()
        # A hung connection may block in close: release it off the loop, never waiting.
        lock = self.lock
        with contextlib.suppress(RuntimeError):  # no running loop at interpreter exit
            self._releasing = asyncio.get_running_loop().run_in_executor(None, lock.release)
        if was_leader:
            self.changes += 1
            log.log(level, "this instance steps down as leader: %s", why)
