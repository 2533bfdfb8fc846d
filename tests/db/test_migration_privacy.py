"""Migration 0005: sensitive values stored before masking existed are masked in place, their
originals kept in entry_originals, and the search index rebuilt over the masked text; on SQLite
and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import sqlalchemy as sa

from exobot.db.engine import create_engine, sync_url
from exobot.db.migrate import upgrade
from exobot.db.repository import SqlRepository, search_rowid

IBAN = "ES91 2100 0418 4502 0005 1332"
MASKED = "ES91 **** **** **** **** 1332"
NOW = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)


def _seed(url: str) -> None:
    """A database at revision 0004 holding an IBAN in a title, a subject and a body (and a
    title change, and the subject listed for the received mail)."""
    engine = sa.create_engine(sync_url(url))
    sqlite = engine.dialect.name == "sqlite"
    stamp = NOW.isoformat() if sqlite else NOW
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO tickets (id, title, requestor, queue, status, language,"
                " created_at, updated_at) VALUES (1, :t, 'marta@example.net', 'suport', 'new',"
                " 'ca', :n, :n)"
            ),
            {"t": f"Canvi de compte {IBAN}", "n": stamp},
        )
        entries = [
            (1, "mail_in", f"El meu compte nou és {IBAN}, gràcies", {"subject": f"Compte {IBAN}"}),
            (2, "comment", "res de sensible aquí", {}),
            (3, "title", None, {"from": f"Compte {IBAN}", "to": f"Canvi de compte {IBAN}"}),
        ]
        for entry_id, kind, body, data in entries:
            conn.execute(
                sa.text(
                    "INSERT INTO entries (id, ticket_id, kind, actor, created_at, body, data)"
                    " VALUES (:i, 1, :k, 'marta@example.net', :n, :b, :d)"
                ),
                {"i": entry_id, "k": kind, "n": stamp, "b": body, "d": json.dumps(data)},
            )
        index = [
            (0, f"Canvi de compte {IBAN}"),
            (1, f"Compte {IBAN} El meu compte nou és {IBAN}, gràcies"),
            (2, "res de sensible aquí"),
        ]
        for entry_id, content in index:
            if sqlite:
                conn.execute(
                    sa.text(
                        "INSERT INTO search_index (rowid, ticket_id, entry_id, content)"
                        " VALUES (:r, 1, :e, :c)"
                    ),
                    {"r": search_rowid(1, entry_id), "e": entry_id, "c": content},
                )
            else:
                conn.execute(
                    sa.text(
                        "INSERT INTO search_index (ticket_id, entry_id, content) VALUES (1, :e, :c)"
                    ),
                    {"e": entry_id, "c": content.lower()},
                )
        conn.execute(
            sa.text(
                "INSERT INTO inbound_mail (mailbox, uidvalidity, uid, raw, size, subject, state,"
                " attempts, received_at) VALUES ('INBOX', 1, 1, :raw, 3, :s, 'done', 1, :n)"
            ),
            {"raw": b"raw", "s": f"Compte {IBAN}", "n": stamp},
        )
    engine.dispose()


async def test_migration_masks_titles_subjects_and_bodies_and_keeps_originals(db_url):
    await asyncio.to_thread(upgrade, db_url, "0004")
    await asyncio.to_thread(_seed, db_url)
    await asyncio.to_thread(upgrade, db_url)

    engine = create_engine(db_url)
    repo = SqlRepository(engine)
    try:
        ticket = await repo.get_ticket(1)
        assert ticket.title == f"Canvi de compte {MASKED}"
        history = await repo.history(1)
        assert history[0].body == f"El meu compte nou és {MASKED}, gràcies"
        assert history[0].data["subject"] == f"Compte {MASKED}"
        assert history[1].body == "res de sensible aquí"
        assert history[2].data == {"from": f"Compte {MASKED}", "to": f"Canvi de compte {MASKED}"}

        async with repo.reading() as view:
            assert await view.masked_entries(1) == {1}
            original = await view.original(1, 1)
            assert await view.original(1, 2) is None
        assert original.body == f"El meu compte nou és {IBAN}, gràcies"
        assert original.subject == f"Compte {IBAN}"
        assert original.kinds == ("iban",)

        # The search index holds the masked text only: the IBAN's digits find nothing, the
        # words around them still find the ticket.
        assert await repo.search("0418") == []
        assert await repo.search("2100") == []
        assert await repo.search("gràcies") == [1]
        assert await repo.search("canvi") == [1]
        assert await repo.search("sensible") == [1]

        async with engine.connect() as conn:
            dump = []
            for table in ("tickets", "entries", "search_index", "inbound_mail"):
                rows = (await conn.execute(sa.text(f"SELECT * FROM {table}"))).all()
                dump.append(repr(rows))
        assert "0418" not in "".join(dump)
    finally:
        await engine.dispose()
