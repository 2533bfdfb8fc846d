"""The daily retention pass over the outbox, on SQLite and PostgreSQL: only the delivered rows
still holding a text are read, so a pass after the one that stripped them reads no row again
(rows stripped on earlier days, and digests or ticket posts that never held a text, pile up
over the years)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from clocks import FakeClock
from sqlalchemy import event, insert, select

from exobot.db.repository import SqlRepository
from exobot.db.tables import OutboxRow
from exobot.retention import BATCH, Retention

O = OutboxRow.__table__  # noqa: E741
RAW = timedelta(days=30)

# Payloads _without_texts() has nothing to drop from: never read again.
WITHOUT_TEXT = [
    {"type": "digest", "date": "2023-01-01"},
    {"type": "ticket", "entries": [1]},
    {"type": "reply", "text": None, "message_id": "<a@x>", "purged": True},  # stripped before
    {"type": "reply", "text": "", "paragraphs": [], "image": {}},
    {"type": "notice", "subject": False, "name": 0},
]
# Payloads holding a text under each key _without_texts() drops, in each JSON shape.
WITH_TEXT = [
    {"type": "reply", "text": "Hola Marta", "message_id": "<b@x>"},
    {"type": "reply", "paragraphs": ["Un paràgraf"]},
    {"type": "chat", "body": "Resposta", "html": "<p>Resposta</p>"},
    {"type": "quarantine", "subject": "0", "sender": "marta@example.net", "error": "x"},
    {"type": "reply", "name": "Marta"},
    {"type": "reply", "image": {"url": "mxc://hs/abc"}},
    {"type": "reply", "text": True},
]


def row(payload: dict, at: datetime, state: str = "sent") -> dict:
    return {
        "kind": "mail", "ticket_id": None, "state": state, "attempts": 1, "next_try_at": at,
        "created_at": at, "done_at": at if state == "sent" else None, "payload": payload,
    }  # fmt: skip


async def test_a_second_pass_reads_no_outbox_row_again(repo: SqlRepository):
    clock = FakeClock(datetime(2026, 11, 25, 3, 0, tzinfo=UTC))
    old, recent = clock.now() - RAW - timedelta(days=400), clock.now() - timedelta(days=1)
    without = [row(WITHOUT_TEXT[n % len(WITHOUT_TEXT)], old) for n in range(2 * BATCH + 100)]
    with_text = [row(WITH_TEXT[n % len(WITH_TEXT)], old) for n in range(BATCH + 20)]
    kept = [row(WITH_TEXT[0], recent), row(WITH_TEXT[0], old, state="pending")]
    async with repo.connection() as conn:
        await conn.execute(insert(O), [*without, *with_text, *kept])
    job = Retention(repo, retention=timedelta(days=730), raw_mail_retention=RAW, clock=clock)
    selects = 0

    def count(conn, cursor, statement, parameters, context, executemany) -> None:  # noqa: ANN001
        nonlocal selects
        if statement.lstrip().upper().startswith("SELECT") and "FROM outbox" in statement:
            selects += 1

    event.listen(repo.engine.sync_engine, "after_cursor_execute", count)
    try:
        first = await job.run_once()
        assert first.outbox_rows == len(with_text)  # in batches, every one of them
        selects = 0
        second = await job.run_once()
        assert second.outbox_rows == 0
        assert selects == 1, f"{selects} queries on the outbox for a pass with nothing to do"
    finally:
        event.remove(repo.engine.sync_engine, "after_cursor_execute", count)

    async with repo.connection() as conn:
        payloads = [r[0] for r in await conn.execute(select(O.c.payload).order_by(O.c.id))]
    stripped = payloads[len(without) : len(without) + len(with_text)]
    assert all(p["purged"] is True for p in stripped)
    assert not any(p.get(k) for p in stripped for k in ("text", "paragraphs", "body", "name"))
    assert stripped[3]["subject"] is None and stripped[5]["image"] is None  # "0" and a dict
    assert stripped[0]["message_id"] == "<b@x>"  # the record stays
    assert payloads[: len(without)] == [r["payload"] for r in without]  # untouched
    assert [p["text"] for p in payloads[-2:]] == ["Hola Marta", "Hola Marta"]  # not due yet
