"""Migration 0006: tickets.last_answer_at is added and filled from the history (the latest
reply or notice; acknowledgements and resolved notices do not count), on SQLite and
PostgreSQL; the repository reads and writes it."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import command

from exobot.db.engine import create_engine, sync_url
from exobot.db.migrate import alembic_config, upgrade
from exobot.db.repository import SqlRepository

T0 = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)


def _seed(url: str) -> None:
    """Three tickets at revision 0005: one answered twice, one only acknowledged, one with
    no mail out at all."""
    engine = sa.create_engine(sync_url(url))
    sqlite = engine.dialect.name == "sqlite"

    def stamp(minutes: int):
        when = T0 + timedelta(minutes=minutes)
        return when.isoformat() if sqlite else when

    with engine.begin() as conn:
        for number in (1, 2, 3):
            conn.execute(
                sa.text(
                    "INSERT INTO tickets (id, title, requestor, queue, status, language,"
                    " created_at, updated_at) VALUES (:i, 'No va', 'marta@example.net',"
                    " 'suport', 'open', 'ca', :n, :n)"
                ),
                {"i": number, "n": stamp(0)},
            )
        entries = [
            (1, 1, "mail_out", 1, "ack"),
            (2, 1, "mail_out", 10, "reply"),
            (3, 1, "mail_out", 30, "reply"),
            (4, 1, "mail_out", 40, "resolved"),
            (5, 1, "mail_in", 50, None),
            (6, 2, "mail_out", 1, "ack"),
            (7, 3, "comment", 5, None),
        ]
        for entry_id, ticket, kind, minutes, template in entries:
            conn.execute(
                sa.text(
                    "INSERT INTO entries (id, ticket_id, kind, actor, created_at, body, data)"
                    " VALUES (:i, :t, :k, 'x', :n, NULL, :d)"
                ),
                {
                    "i": entry_id,
                    "t": ticket,
                    "k": kind,
                    "n": stamp(minutes),
                    "d": json.dumps({"template": template} if template else {}),
                },
            )
    engine.dispose()


async def test_migration_fills_last_answer_from_replies_only(db_url):
    await asyncio.to_thread(upgrade, db_url, "0005")
    await asyncio.to_thread(_seed, db_url)
    await asyncio.to_thread(upgrade, db_url)

    engine = create_engine(db_url)
    repo = SqlRepository(engine)
    try:
        answered = await repo.get_ticket(1)
        assert answered.last_answer_at == T0 + timedelta(minutes=30)
        assert (await repo.get_ticket(2)).last_answer_at is None
        assert (await repo.get_ticket(3)).last_answer_at is None

        # Written back like every other column.
        answered.last_answer_at = T0 + timedelta(hours=2)

        async def work(uow):
            await uow.update_ticket(answered, title_changed=False)

        await repo.run(work, now=T0)
        assert (await repo.get_ticket(1)).last_answer_at == T0 + timedelta(hours=2)
    finally:
        await engine.dispose()


async def test_migration_downgrades(db_url):
    await asyncio.to_thread(upgrade, db_url)
    await asyncio.to_thread(command.downgrade, alembic_config(db_url), "0005")
    engine = sa.create_engine(sync_url(db_url))
    try:
        columns = {c["name"] for c in sa.inspect(engine).get_columns("tickets")}
    finally:
        engine.dispose()
    assert "last_answer_at" not in columns
    assert "last_member_mail_at" in columns
