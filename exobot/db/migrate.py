"""Schema migrations with Alembic, applied by `exobot migrate` and at start."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig

from exobot.db.engine import ensure_sqlite_dir, sync_url

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> AlembicConfig:
    """An Alembic configuration pointing at the packaged migrations and the given database."""
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", sync_url(url).replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database at `url` up to `revision` (blocking: run it in a thread)."""
    ensure_sqlite_dir(url)
    command.upgrade(alembic_config(url), revision)


async def upgrade_async(url: str) -> None:
    """Apply pending migrations without blocking the event loop."""
    await asyncio.to_thread(upgrade, url)
