"""Fixtures of the procedures plugin's tests: a migrated database (the core's schema and the
plugin's Alembic branch; SQLite, or PostgreSQL when the stack has it) behind the real
repository, and a fake clock."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa
from clocks import FakeClock
from procedures_settings import BRANCHES, MINIMAL, START

from exobot.app import service_settings
from exobot.config import parse_config
from exobot.core import intents
from exobot.core.actions import ActionCall, Channel, new_registry
from exobot.core.events import EventBus
from exobot.core.model import Actor, IncomingMail
from exobot.core.service import TicketService
from exobot.db.engine import create_engine
from exobot.db.migrate import upgrade_async
from exobot.db.repository import SqlRepository
from exobot.mail.msgid import MessageIds
from exobot.plugins.manager import Host, PluginManager


@pytest.fixture
def clock():
    """A fake clock at START."""
    return FakeClock(START)


@pytest.fixture
async def repository(db_url):
    """The real repository over a database migrated with the plugin's branch, on SQLite and
    (when the stack runs it) PostgreSQL."""
    await upgrade_async(db_url, BRANCHES)
    engine = create_engine(db_url)
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


@dataclass
class World:
    """The plugin started by the real PluginManager over the real TicketService and
    repository (a migrated SQLite database), with a fake clock and no chat."""

    repository: SqlRepository
    service: TicketService
    manager: PluginManager
    clock: FakeClock
    plugin: Any

    async def mail(self, sender: str, subject: str = "Vull canviar el compte",
                   body: str = "Hola, vull canviar les dades bancàries.") -> int:
        """A member's mail opening a ticket (acknowledged); returns its number."""
        incoming = IncomingMail(
            message_id=f"<m{uuid.uuid4().hex}@example.net>",
            sender=sender,
            sender_name="Marta",
            requestor=sender,
            subject=subject,
            body=body,
        )
        outcome = await self.service.apply(
            Actor.member(sender),
            intents.ReceiveMail(incoming, intents.MailClass.MEMBER, acknowledge=True),
        )
        return outcome.ticket

    async def ticket(self, number: int):
        async with self.repository.reading() as reader:
            return await reader.get_ticket(number)

    async def history(self, number: int):
        async with self.repository.reading() as reader:
            return await reader.history(number)

    async def query(self, sql: str, **params: object) -> list:
        async with self.repository.connection() as conn:
            return list(await conn.execute(sa.text(sql), params))

    def call(self, action: str, *, ticket: int | None = None, language: str = "en",
             actor: str = "@treasurer:example.org", key: str | None = None,
             **args: object) -> ActionCall:
        return ActionCall(action, actor, ticket, args, language, Channel.CHAT, key=key)


def world_config(settings: dict | None = None, **top: object):
    """A parsed configuration with both queues and the plugin enabled with `settings`."""
    return parse_config(MINIMAL | top | {"plugins": {"procedures": settings or {}}}, env={})


@pytest.fixture
async def make_world(tmp_path):
    """Factory: a World with the plugin's `settings`; stopped at the end."""
    made: list[tuple[PluginManager, Any]] = []

    async def make(
        settings: dict | None = None, language: str = "ca", url: str | None = None
    ) -> World:
        """`url`: an empty database of the test's (`db_url`), else a new SQLite file."""
        config = world_config(settings, language=language)
        url = url or f"sqlite:///{tmp_path / f'exobot-{len(made)}.db'}"
        await upgrade_async(url, BRANCHES)
        engine = create_engine(url)
        repository = SqlRepository(engine)
        clock = FakeClock(START)
        events = EventBus()
        service = TicketService(
            repository, MessageIds("k" * 32, "example.org"), service_settings(config),
            events=events, clock=clock,
        )
        manager = PluginManager(config, Host(
            service=service, repository=repository, clock=clock, actions=new_registry(),
            events=events, language=config.language,
        ))
        service.mail_hook = manager.run_mail_hooks
        await manager.start()
        assert manager.enabled == ["procedures"], manager.disabled
        made.append((manager, engine))
        plugin = manager._runs["procedures"].plugin
        return World(repository, service, manager, clock, plugin)

    yield make
    for manager, engine in made:
        await manager.stop()
        await engine.dispose()
