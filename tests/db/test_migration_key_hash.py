"""Migration 0009: handled_keys.request_hash, the fingerprint of the request a key came with,
on SQLite and PostgreSQL; the keys recorded before it keep working as retries; the
repository records and reads the fingerprint; downgrade drops the column."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from alembic import command

from exobot.core.intents import Comment, OpenTicket, Origin
from exobot.core.model import Actor
from exobot.core.service import AlreadyHandled, KeyReused, ServiceSettings, TicketService
from exobot.db.engine import create_engine, sync_url
from exobot.db.migrate import alembic_config, upgrade
from exobot.db.repository import SqlRepository
from exobot.mail.msgid import MessageIds

T0 = datetime(2027, 3, 15, 10, 0, tzinfo=UTC)
OPERATOR = Actor.operator("@anna:example.org")


def _columns(url: str) -> set[str]:
    engine = sa.create_engine(sync_url(url))
    try:
        return {c["name"] for c in sa.inspect(engine).get_columns("handled_keys")}
    finally:
        engine.dispose()


def _seed_old_key(url: str) -> None:
    """A key recorded at revision 0008 (no fingerprint): a ticket and an API key on it."""
    engine = sa.create_engine(sync_url(url))
    sqlite = engine.dialect.name == "sqlite"
    when = T0.isoformat() if sqlite else T0
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO tickets (id, title, requestor, queue, status, language,"
                " created_at, updated_at) VALUES (1, 'No va', 'marta@example.net',"
                " 'suport', 'open', 'ca', :n, :n)"
            ),
            {"n": when},
        )
        conn.execute(
            sa.text(
                "INSERT INTO handled_keys (key, handled_at, ticket_id) VALUES ('api:a:old', :n, 1)"
            ),
            {"n": when},
        )
    engine.dispose()


async def test_old_keys_have_no_fingerprint_and_stay_retries(db_url):
    await asyncio.to_thread(upgrade, db_url, "0008")
    assert "request_hash" not in await asyncio.to_thread(_columns, db_url)
    await asyncio.to_thread(_seed_old_key, db_url)
    await asyncio.to_thread(upgrade, db_url)
    assert "request_hash" in await asyncio.to_thread(_columns, db_url)

    engine = create_engine(db_url)
    repo = SqlRepository(engine)
    service = TicketService(
        repo, MessageIds("secret" * 4, "example.org"), ServiceSettings(own_address="s@e.org")
    )
    try:
        assert await repo.read(lambda view: view.handled_request("api:a:old")) == (1, None)
        # A fingerprinted request repeating the old key is a retry, as before the migration.
        with pytest.raises(AlreadyHandled) as again:
            await service.apply(OPERATOR, Comment(1, "x"), Origin("api:a:old", None, "f" * 64))
        assert again.value.params["ticket"] == 1
        assert [e.kind.value for e in await repo.history(1)] == []
    finally:
        await engine.dispose()


async def test_the_fingerprint_is_recorded_and_compared(db_url):
    await asyncio.to_thread(upgrade, db_url)
    engine = create_engine(db_url)
    repo = SqlRepository(engine)
    service = TicketService(
        repo, MessageIds("secret" * 4, "example.org"), ServiceSettings(own_address="s@e.org")
    )
    try:
        assert await repo.read(lambda view: view.handled_request("api:a:k")) is None
        assert await repo.run(lambda uow: uow.claim("api:a:k", request_hash="a" * 64)) is True
        assert await repo.run(lambda uow: uow.claim("api:a:k", request_hash="b" * 64)) is False
        assert await repo.run(lambda uow: uow.claim("chat:$e1")) is True
        assert await repo.read(lambda view: view.handled_request("api:a:k")) == (None, "a" * 64)
        assert await repo.read(lambda view: view.handled_request("chat:$e1")) == (None, None)

        outcome = await service.apply(
            OPERATOR,
            OpenTicket("pere@example.net", "Quota", "Hola"),
            Origin("api:a:open", None, "c" * 64),
        )
        number = outcome.ticket
        with pytest.raises(KeyReused) as reused:
            await service.apply(
                OPERATOR, Comment(number, "x"), Origin("api:a:open", None, "d" * 64)
            )
        assert reused.value.code == "key_reused"
        with pytest.raises(AlreadyHandled):  # the same request, or one without a fingerprint
            await service.apply(
                OPERATOR, Comment(number, "x"), Origin("api:a:open", None, "c" * 64)
            )
        with pytest.raises(AlreadyHandled):
            await service.apply(OPERATOR, Comment(number, "x"), Origin("api:a:open"))
        assert await repo.count_tickets() == 1
        assert [e.kind.value for e in await repo.history(number)].count("comment") == 1
    finally:
        await engine.dispose()


async def test_migration_downgrades(db_url):
    await asyncio.to_thread(upgrade, db_url)
    await asyncio.to_thread(command.downgrade, alembic_config(db_url), "0008")
    columns = await asyncio.to_thread(_columns, db_url)
    assert "request_hash" not in columns
    assert {"key", "handled_at", "ticket_id"} <= columns
