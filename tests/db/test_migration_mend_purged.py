"""Migration 0012: entries purged by an older version that kept the sender's display name and
the attachments' file names lose them, on SQLite and PostgreSQL; entries not purged, and
those purged as now, are left as they were; downgrade leaves the data alone."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import command
from alembic.script import ScriptDirectory

from exobot.db.engine import sync_url
from exobot.db.migrate import alembic_config, upgrade

NOW = datetime(2027, 3, 15, 10, 0, tzinfo=UTC)
MEMBER = "anna.puig@example.org"
NAME = "Anna Puig Ferrer"
FILENAME = "DNI Anna Puig 12345678Z.pdf"
PDF = {"filename": FILENAME, "content_type": "application/pdf", "size": 11}

# What the older version left of a purged mail: its subject gone, the rest untouched.
OLD_PURGED = {"from": MEMBER, "from_name": NAME, "message_id": "<m1@x>", "attachments": [PDF],
              "purged": True}  # fmt: skip
MENDED = {"from": MEMBER, "message_id": "<m1@x>",
          "attachments": [{"content_type": "application/pdf", "size": 11}], "purged": True}  # fmt: skip
# A mail of an open ticket, not purged: its name and file name stay until the policy purges it.
UNPURGED = {"from": MEMBER, "from_name": NAME, "subject": "Alta soci", "message_id": "<m2@x>",
            "attachments": [PDF]}  # fmt: skip
# A comment purged as now, and the PURGE entry (not a text: its counts are no name).
PURGED_NOW = {"purged": True}
PURGE_COUNTS = {"entries": 2, "attachments": 1, "raw_mails": 0, "outbox": 0}

_entries = sa.table("entries", sa.column("id", sa.Integer), sa.column("data", sa.JSON))


def _batch(url: str) -> int:
    """The migration's own batch size (its module is loaded the way Alembic loads it)."""
    return ScriptDirectory.from_config(alembic_config(url)).get_revision("0012").module.BATCH


def _seed(url: str, entries: list[tuple[int, int, str, dict]]) -> None:
    """At revision 0011: ticket 1 resolved, ticket 2 open, and these (id, ticket, kind, data)
    entries."""
    engine = sa.create_engine(sync_url(url))
    when = NOW.isoformat() if engine.dialect.name == "sqlite" else NOW
    with engine.begin() as conn:
        for number, status in ((1, "resolved"), (2, "open")):
            conn.execute(
                sa.text(
                    "INSERT INTO tickets (id, title, requestor, queue, status, language,"
                    " created_at, updated_at) VALUES (:i, 'Alta soci', :m, 'suport', :s, 'ca',"
                    " :n, :n)"
                ),
                {"i": number, "m": MEMBER, "s": status, "n": when},
            )
        conn.execute(
            sa.text(
                "INSERT INTO entries (id, ticket_id, kind, actor, created_at, body, data)"
                " VALUES (:i, :t, :k, :m, :n, NULL, :d)"
            ),
            [
                {"i": i, "t": t, "k": k, "m": MEMBER, "n": when, "d": json.dumps(d)}
                for i, t, k, d in entries
            ],
        )
    engine.dispose()


def _data(url: str) -> dict[int, dict]:
    engine = sa.create_engine(sync_url(url))
    try:
        with engine.connect() as conn:
            return dict(conn.execute(sa.select(_entries.c.id, _entries.c.data)).all())
    finally:
        engine.dispose()


async def test_entries_purged_by_an_older_version_lose_names_and_file_names(db_url):
    await asyncio.to_thread(upgrade, db_url, "0011")
    seeded = [
        (1, 1, "mail_in", OLD_PURGED),
        (2, 1, "comment", PURGED_NOW),
        (3, 1, "purge", PURGE_COUNTS),
        (4, 2, "mail_in", UNPURGED),
    ]
    await asyncio.to_thread(_seed, db_url, seeded)

    await asyncio.to_thread(upgrade, db_url)
    data = await asyncio.to_thread(_data, db_url)
    assert data[1] == MENDED
    assert NAME not in json.dumps(data[1]) and FILENAME not in json.dumps(data[1])
    assert (data[2], data[3], data[4]) == (PURGED_NOW, PURGE_COUNTS, UNPURGED)


async def test_every_batch_is_mended(db_url):
    """More entries than one batch, the unpurged among them: each purged one is mended."""
    await asyncio.to_thread(upgrade, db_url, "0011")
    count = await asyncio.to_thread(_batch, db_url) * 2 + 3
    seeded = [
        (i, 1, "mail_in", OLD_PURGED) if i % 3 else (i, 2, "mail_in", UNPURGED)
        for i in range(1, count + 1)
    ]
    await asyncio.to_thread(_seed, db_url, seeded)

    await asyncio.to_thread(upgrade, db_url)
    data = await asyncio.to_thread(_data, db_url)
    assert data == {i: MENDED if i % 3 else UNPURGED for i in range(1, count + 1)}


async def test_the_downgrade_leaves_the_data_alone(db_url):
    await asyncio.to_thread(upgrade, db_url, "0011")
    await asyncio.to_thread(
        _seed, db_url, [(1, 1, "mail_in", OLD_PURGED), (2, 2, "mail_in", UNPURGED)]
    )
    await asyncio.to_thread(upgrade, db_url)
    await asyncio.to_thread(command.downgrade, alembic_config(db_url), "0011")
    assert await asyncio.to_thread(_data, db_url) == {1: MENDED, 2: UNPURGED}
    await asyncio.to_thread(upgrade, db_url)  # and up again: nothing left to mend
    assert await asyncio.to_thread(_data, db_url) == {1: MENDED, 2: UNPURGED}
