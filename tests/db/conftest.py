"""Fixtures of the database tests: every test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import pytest

from exobot.db.engine import create_engine
from exobot.db.migrate import upgrade_async
from exobot.db.repository import SqlRepository


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
