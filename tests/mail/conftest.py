"""Fixtures of the mail tests."""

from __future__ import annotations

import pytest

from exobot.db.engine import create_engine
from exobot.db.migrate import upgrade_async
from exobot.db.repository import SqlRepository


@pytest.fixture
async def repo(tmp_path):
    """A fresh, migrated SQLite database behind a repository."""
    url = f"sqlite:///{tmp_path / 'exobot.db'}"
    await upgrade_async(url)
    engine = create_engine(url)
    yield SqlRepository(engine)
    await engine.dispose()
