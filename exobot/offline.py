"""exobot's parts without chat, web or scheduler, for the command lines that work on the
database beside (or without) a running exobot: `exobot NAME …` of a plugin and
`exobot privacy …`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from exobot.config import Config
from exobot.core.clock import Clock, SystemClock
from exobot.plugins.manager import PluginManager


@asynccontextmanager
async def offline_plugins(config: Config, clock: Clock | None = None) -> AsyncIterator[PluginManager]:
    """Migrate (the core and every enabled plugin's branch), open the real repository and
    ticket service, and yield a PluginManager whose `host` has them (no plugin started:
    the caller starts what it needs); the database is closed at the end."""
    from exobot.app import hmac_secret, service_settings
    from exobot.core.actions import new_registry
    from exobot.core.events import EventBus
    from exobot.core.service import TicketService
    from exobot.db.engine import create_engine, create_sync_engine
    from exobot.db.migrate import upgrade_async
    from exobot.db.repository import SqlRepository
    from exobot.mail.msgid import MessageIds
    from exobot.plugins.manager import Host

    clock = clock or SystemClock()
    manager = PluginManager(config)
    await upgrade_async(
        config.database.url, manager.migration_branches(), config.tickets.first_number
    )
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
        yield manager
    finally:
        await repository.close()
