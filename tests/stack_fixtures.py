"""pytest plugin: the session-scoped `stack` fixture (real Dovecot, SMTP relay, Synapse and
PostgreSQL).

Enable it with `pytest_plugins = ["tests.stack_fixtures"]` in conftest.py. The fixture is
synchronous on purpose, so it works with or without pytest-asyncio.

Environment variables:

- EXOBOT_STACK_DIR: reuse the stack started with `python -m devstack start --dir DIR`
  when its stack.json describes live servers; such a stack is left running at the end.
- EXOBOT_STACK_BASE_PORT: first base port to try for a new stack (default: 20000 plus a
  PID-derived offset, so parallel sessions, e.g. xdist workers, do not collide).
- EXOBOT_STACK_SYNAPSE=0: start a new stack without Synapse (mail-only runs, faster).
- EXOBOT_STACK_POSTGRES: a new stack gets a private PostgreSQL cluster (`stack.postgres_url`)
  when PostgreSQL is installed; `0` never starts it, `1` requires it (the start fails without
  it). Without PostgreSQL in the stack, tests needing it skip.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from exobot.db.engine import create_engine, create_sync_engine
from exobot.db.migrate import upgrade_async
from exobot.db.repository import SqlRepository
from exobot.runlock import RUNNING_KEY

try:
    from devstack import Stack
    from devstack.postgres import find_bindir
    from devstack.stack import DEFAULT_BASE_PORT, STACK_FILE, find_free_base_port
except ImportError:
    # Whether pytest puts the repository root on sys.path depends on where conftest.py
    # lives; devstack is not an installed package, so add the root ourselves.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from devstack import Stack
    from devstack.postgres import find_bindir
    from devstack.stack import DEFAULT_BASE_PORT, STACK_FILE, find_free_base_port

# How long each server of the stack may take to answer after it is started.
STACK_READY_SECONDS = 180.0
# The sessions holding the run lock of the current PostgreSQL database: (pid, mode), "ShareLock"
# for a running exobot, "ExclusiveLock" for a restore (exobot.runlock).
RUN_LOCK_HOLDERS = (
    "SELECT pid, mode FROM pg_locks WHERE locktype = 'advisory' AND granted"
    " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    f" AND classid::bigint = {RUNNING_KEY >> 32} AND objid::bigint = {RUNNING_KEY & 0xFFFFFFFF}"
)


def _with_postgres() -> bool:
    setting = os.environ.get("EXOBOT_STACK_POSTGRES", "")
    if setting in ("0", "1"):
        return setting == "1"
    return find_bindir() is not None


def _existing_stack() -> Stack | None:
    """The stack named by EXOBOT_STACK_DIR, if it is running."""
    directory = os.environ.get("EXOBOT_STACK_DIR")
    if not directory or not (Path(directory) / STACK_FILE).exists():
        return None
    stack = Stack.load(Path(directory))
    return stack if stack.is_running() else None


def _first_base_port() -> int:
    configured = os.environ.get("EXOBOT_STACK_BASE_PORT")
    if configured:
        return int(configured)
    # Offsets are multiples of 10 and the port offsets differ modulo 10, so two sessions
    # with different PIDs never share a port (find_free_base_port skips busy ones anyway).
    return DEFAULT_BASE_PORT + (os.getpid() % 1000) * 10


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    """A running devstack.Stack for the whole test session (see the module docstring).

    Its directory is not under pytest's temporary root: each new pytest session makes that
    root private again (0700), which would cut Dovecot's mail processes (uid 65534) off from
    the mailboxes of a stack still in use by another session.
    """
    existing = _existing_stack()
    if existing is not None:
        yield existing
        return
    with private_stack("exobot-stack-", _first_base_port()) as started:
        yield started


@contextlib.contextmanager
def private_stack(prefix: str, first_base_port: int) -> Iterator[Stack]:
    """A new stack in a fresh directory (Synapse unless EXOBOT_STACK_SYNAPSE=0, PostgreSQL
    when installed), stopped and removed at the end."""
    with_synapse = os.environ.get("EXOBOT_STACK_SYNAPSE", "1") != "0"
    base_port = find_free_base_port(first_base_port)
    directory = Path(tempfile.mkdtemp(prefix=prefix))
    started = Stack.start(
        directory,
        base_port=base_port,
        synapse=with_synapse,
        postgres=_with_postgres(),
        # Synapse (and its first database) can take long to start on a busy machine; each
        # server is polled, so a generous limit costs nothing when it is quick.
        timeout=STACK_READY_SECONDS,
    )
    try:
        yield started
    finally:
        started.stop()
        shutil.rmtree(directory, ignore_errors=True)


def fresh_database_url(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> str:
    """A fresh, empty database: an SQLite file under `tmp_path`, or a new database in the
    stack's PostgreSQL (the test is skipped when the stack runs without one)."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'exobot.db'}"
    stack = request.getfixturevalue("stack")
    if stack.postgres_port is None:
        pytest.skip("the test stack runs without PostgreSQL (EXOBOT_STACK_POSTGRES / install)")
    return stack.postgres_url(f"t_{uuid.uuid4().hex[:16]}")


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database, once on SQLite and once on PostgreSQL."""
    return fresh_database_url(request, request.param, tmp_path)


@contextlib.asynccontextmanager
async def app_repository(url: str) -> AsyncIterator[SqlRepository]:
    """The repository as the App builds it (its writer thread, and on PostgreSQL its side
    threads, on a blocking engine) over the database at `url`, migrated; closed at the end."""
    await upgrade_async(url)
    repository = SqlRepository(create_engine(url), create_sync_engine(url))
    try:
        yield repository
    finally:
        await repository.close()


@pytest.fixture
async def app_repo(db_url: str) -> AsyncIterator[SqlRepository]:
    """`app_repository` over a fresh database, once on SQLite and once on PostgreSQL."""
    async with app_repository(db_url) as repository:
        yield repository
