"""Shared fixtures: the real server stack (one per session) and exobot instances on it."""

import pytest

from exobot import i18n
from exobot.db.engine import create_engine
from exobot.db.migrate import upgrade_async
from exobot.db.repository import SqlRepository

pytest_plugins = ["stack_fixtures", "harness", "matrix_harness"]


@pytest.fixture(autouse=True)
def _strict_messages(monkeypatch):
    """A message without a translation, or missing a parameter, fails the test instead of
    falling back to English."""
    monkeypatch.setattr(i18n, "STRICT", True)


@pytest.fixture
async def repo(tmp_path):
    """A fresh, migrated SQLite database behind a repository (tests/db/ has its own, on
    SQLite and PostgreSQL)."""
    url = f"sqlite:///{tmp_path / 'exobot.db'}"
    await upgrade_async(url)
    engine = create_engine(url)
    yield SqlRepository(engine)
    await engine.dispose()
