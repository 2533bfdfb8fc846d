"""Fixtures of the database tests: every test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import uuid

import pytest

from exobot.db.engine import create_engine
from exobot.db.migrate import upgrade_async
from exobot.db.repository import SqlRepository


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path) -> str:
    """A fresh, empty database: an SQLite file, or a new database in the stack's PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'exobot.db'}"
    stack = request.getfixturevalue("stack")
    if stack.postgres_port is None:
        pytest.skip("the test stack runs without PostgreSQL (EXOBOT_STACK_POSTGRES / install)")
    return stack.postgres_url(f"t_{uuid.uuid4().hex[:16]}")


@pytest.fixture
def backend(db_url: str) -> str:
    return "sqlite" if db_url.startswith("sqlite") else "postgresql"


@pytest.fixture
async def engine(db_url: str):
    await upgrade_async(db_url)
    eng = create_engine(db_url)
    yield eng
    await eng.dispose()


@pytest.fixture
def repo(engine) -> SqlRepository:
    return SqlRepository(engine)
