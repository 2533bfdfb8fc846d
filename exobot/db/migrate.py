"""Schema migrations with Alembic, applied by `exobot migrate` and at start.

The core's revisions form one chain in `migrations/versions`; each enabled plugin adds its
own branch (its first revision has `branch_labels=(NAME,)` and `down_revision=None`) from its
own folder. An upgrade brings the core's chain and every given plugin's branch to their heads.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.script import ScriptDirectory

from exobot.db.engine import ensure_sqlite_dir, sync_url
from exobot.db.numbering import apply_first_number_blocking

MIGRATIONS = Path(__file__).parent / "migrations"
CORE_VERSIONS = MIGRATIONS / "versions"


def alembic_config(url: str, plugins: Mapping[str, Path] | None = None) -> AlembicConfig:
    """An Alembic configuration over the packaged migrations, the given plugins' branches
    (name → their migrations folder) and the given database."""
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", sync_url(url).replace("%", "%%"))
    # Every installed plugin's branch is known, enabled or not: a plugin enabled once and
    # disabled since left its revision in the database, which Alembic must be able to find.
    branches = {**installed_branches(), **(plugins or {})}
    if branches:
        folders = [str(CORE_VERSIONS), *dict.fromkeys(str(Path(f)) for f in branches.values())]
        # os.pathsep keeps a folder name with spaces whole.
        cfg.set_main_option("path_separator", "os")
        cfg.set_main_option("version_locations", os.pathsep.join(folders).replace("%", "%%"))
    return cfg


def installed_branches() -> dict[str, Path]:
    """The migrations folder of every installed plugin that has one, by name."""
    from exobot.plugins.discovery import installed  # the plugins import the database layer

    return {
        name: Path(entry.cls.migrations)
        for name, entry in installed().items()
        if entry.cls is not None and entry.cls.migrations is not None
    }


def core_head(cfg: AlembicConfig) -> str:
    """The head revision of the core's own chain (plugins' branches left aside)."""
    script = ScriptDirectory.from_config(cfg)
    heads = [
        rev
        for rev in script.get_revisions("heads")
        if rev is not None and Path(rev.path).parent.resolve() == CORE_VERSIONS.resolve()
    ]
    if len(heads) != 1:
        raise RuntimeError(f"the core's migrations have {len(heads)} heads, expected one")
    return heads[0].revision


def upgrade(
    url: str,
    revision: str = "head",
    plugins: Mapping[str, Path] | None = None,
    first_number: int | None = None,
) -> None:
    """Bring the database at `url` up to `revision` of the core ("head": the newest) and, with
    `plugins`, every plugin's branch to its head (blocking: run it in a thread). With
    `first_number` (tickets.first_number), a database with no ticket yet numbers its first
    ticket so."""
    ensure_sqlite_dir(url)
    cfg = alembic_config(url, plugins)
    if cfg.get_main_option("version_locations") is None:
        command.upgrade(cfg, revision)  # no plugin installed: the core's chain alone
    else:
        command.upgrade(cfg, core_head(cfg) if revision == "head" else revision)
        for name in plugins or ():
            command.upgrade(cfg, f"{name}@head")
    if first_number:
        engine = sa.create_engine(sync_url(url))
        try:
            with engine.begin() as conn:
                apply_first_number_blocking(conn, first_number)
        finally:
            engine.dispose()


async def upgrade_async(
    url: str, plugins: Mapping[str, Path] | None = None, first_number: int | None = None
) -> None:
    """Apply pending migrations (the core's and the given plugins') without blocking the loop
    (and tickets.first_number, as `upgrade`)."""
    await asyncio.to_thread(upgrade, url, "head", plugins, first_number)
