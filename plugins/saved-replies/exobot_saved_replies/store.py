"""The plugin's table and its queries (SQLAlchemy Core on the plugin's own MetaData).

The table is created by the plugin's Alembic branch (`migrations/`), never by `create_all`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from exobot.db.tables import UtcDateTime

metadata = sa.MetaData()

saved_replies = sa.Table(
    "saved_replies",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(40), nullable=False),
    sa.Column("language", sa.String(8), nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("changed_by", sa.String(255), nullable=False),
    sa.Column("changed_at", UtcDateTime(), nullable=False),
    sa.UniqueConstraint("name", "language", name="uq_saved_replies_name_language"),
)


@dataclass(frozen=True)
class SavedReply:
    """One saved reply: a name, one language's text, who changed it last and when."""

    id: int
    name: str
    language: str
    text: str
    changed_by: str
    changed_at: datetime


class NameTaken(Exception):
    """Another saved reply already has this name in this language."""


def _reply(row: Any) -> SavedReply:
    return SavedReply(row.id, row.name, row.language, row.text, row.changed_by, row.changed_at)


async def all_replies(conn: AsyncConnection) -> list[SavedReply]:
    """Every saved reply, by name then language."""
    query = sa.select(saved_replies).order_by(saved_replies.c.name, saved_replies.c.language)
    return [_reply(row) for row in await conn.execute(query)]


async def get(conn: AsyncConnection, reply_id: int) -> SavedReply | None:
    """The saved reply with this id, or None."""
    query = sa.select(saved_replies).where(saved_replies.c.id == reply_id)
    row = (await conn.execute(query)).first()
    return _reply(row) if row is not None else None


async def texts(conn: AsyncConnection, name: str) -> dict[str, str]:
    """The texts of the saved reply `name`, by language ({} when there is none)."""
    query = sa.select(saved_replies.c.language, saved_replies.c.text).where(
        saved_replies.c.name == name
    )
    return {row.language: row.text for row in await conn.execute(query)}


async def save(
    conn: AsyncConnection,
    *,
    reply_id: int | None,
    name: str,
    language: str,
    text: str,
    by: str,
    now: datetime,
) -> int | None:
    """Insert (`reply_id` None) or update a saved reply; returns its id (None: the one to
    update is gone). NameTaken when another one has this name and language."""
    values = {"name": name, "language": language, "text": text, "changed_by": by, "changed_at": now}
    clash = sa.select(saved_replies.c.id).where(
        saved_replies.c.name == name, saved_replies.c.language == language
    )
    if reply_id is not None:
        clash = clash.where(saved_replies.c.id != reply_id)
    if (await conn.execute(clash)).first() is not None:
        raise NameTaken(name, language)
    try:
        if reply_id is None:
            result = await conn.execute(sa.insert(saved_replies).values(**values))
            return int(result.inserted_primary_key[0])
        result = await conn.execute(
            sa.update(saved_replies).where(saved_replies.c.id == reply_id).values(**values)
        )
    except IntegrityError as error:  # two operators saving the same name at once
        raise NameTaken(name, language) from error
    return reply_id if result.rowcount else None


async def delete(conn: AsyncConnection, reply_id: int) -> bool:
    """Delete a saved reply; False when it was already gone."""
    result = await conn.execute(sa.delete(saved_replies).where(saved_replies.c.id == reply_id))
    return bool(result.rowcount)


async def backup(conn: AsyncConnection) -> dict[str, Any]:
    """Every saved reply as plain data, for the production issue's backups."""
    return {
        "saved_replies": [
            {
                "name": reply.name,
                "language": reply.language,
                "text": reply.text,
                "changed_by": reply.changed_by,
                "changed_at": reply.changed_at.isoformat(),
            }
            for reply in await all_replies(conn)
        ]
    }
