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
    from exobot.app import hmac_secret, service_settings
    from exobot.core.actions import new_registry
    from exobot.core.events import EventBus
    from exobot.core.service import TicketService
    from exobot.db.engine import create_engine, create_sync_engine
    from exobot.db.migrate import upgrade_async
    from exobot.mail.msgid import MessageIds
    from exobot.plugins.manager import Host

    clock = clock or SystemClock()
    manager = PluginManager(config)
    await upgrade_async(config.database.url, manager.migration_branches())
    repository = SqlRepository(
        create_engine(config.database.url), create_sync_engine(config.database.url)
    )
    try:
        secret = await hmac_secret(
            repository,
            config.mail.hmac_secret.get_secret_value() if config.mail.hmac_secret else None,
        )
        events = EventBus()
        service = TicketService(
            repository,
            MessageIds(secret, config.mail.address.rpartition("@")[2]),
            service_settings(config),
            events=events,
            clock=clock,
        )
        manager.host = Host(
            service=service,
            repository=repository,
            clock=clock,
            actions=new_registry(),
            events=events,
            language=config.language,
            timezone=config.alerts.tzinfo,
        )
        await manager.start()
        try:
            yield PrivacySession(config, repository, manager, clock)
        finally:
            await manager.stop()
    finally:
        await repository.close()
