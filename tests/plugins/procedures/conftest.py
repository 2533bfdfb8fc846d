"""Fixtures of the procedures plugin's tests: a migrated database (the core's schema and the
plugin's Alembic branch; SQLite, or PostgreSQL when the stack has it) behind the real
repository, and a fake clock."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import exobot_procedures
import pytest
from clocks import FakeClock

from exobot.db.engine import create_engine
from exobot.db.migrate import upgrade_async
from exobot.db.repository import SqlRepository

HERE = Path(exobot_procedures.__file__).parent
BRANCHES = {"procedures": HERE / "migrations"}
START = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


@pytest.fixture
def clock():
    """A fake clock at START."""
    return FakeClock(START)


@pytest.fixture(params=["sqlite", "postgresql"])
async def repository(request, tmp_path):
    """The real repository over a database migrated with the plugin's branch, on SQLite and
    (when the stack runs it) PostgreSQL."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'exobot.db'}"
    else:
        stack = request.getfixturevalue("stack")
        if stack.postgres_port is None:
            pytest.skip("the test stack runs without PostgreSQL")
        url = stack.postgres_url(f"t_{uuid.uuid4().hex[:16]}")
    await upgrade_async(url, BRANCHES)
    engine = create_engine(url)
    yield SqlRepository(engine)
    await engine.dispose()


@pytest.fixture
async def sqlite_repository(tmp_path):
    """The real repository over a migrated SQLite database."""
    url = f"sqlite:///{tmp_path / 'exobot.db'}"
    await upgrade_async(url, BRANCHES)
    engine = create_engine(url)
    yield SqlRepository(engine)
    await engine.dispose()
