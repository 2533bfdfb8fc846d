"""What `exobot privacy …` works with: the database behind the real repository and every
enabled plugin started (their data handlers registered) without chat, web or scheduler."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from exobot.config import Config
from exobot.core.clock import Clock, SystemClock
from exobot.db.repository import SqlRepository
from exobot.plugins.manager import PluginManager


@dataclass
class PrivacySession:
    """The repository, the started plugins and the clock of one `exobot privacy` run."""

    config: Config
    repository: SqlRepository
    plugins: PluginManager
    clock: Clock


@asynccontextmanager
async def privacy_session(
    config: Config, clock: Clock | None = None
) -> AsyncIterator[PrivacySession]:
    """Migrate, open the database and start the enabled plugins the way `exobot NAME …` does
    (no chat, no web, no scheduler: nothing is posted or scheduled); stop them at the end."""
    from exobot.offline import offline_plugins

    clock = clock or SystemClock()
    async with offline_plugins(config, clock) as manager:
        await manager.start()
        try:
            yield PrivacySession(config, manager.host.repository, manager, clock)
        finally:
            await manager.stop()
