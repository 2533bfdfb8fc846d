"""The processor's batches of stored mails: oldest first, at most so many, and no more bytes
together than allowed (the first mail always, however big), on SQLite and PostgreSQL."""

from __future__ import annotations

from sqlalchemy import update

from exobot.db import inbound
from exobot.db.repository import SqlRepository
from exobot.db.tables import InboundMailRow

I = InboundMailRow.__table__  # noqa: E741


def raw(n: int, size: int) -> bytes:
    head = f"Subject: {n}\r\nMessage-ID: <m{n}@x>\r\n\r\n".encode()
    return head + b"x" * (size - len(head))


async def test_a_batch_holds_no_more_bytes_than_allowed(repo: SqlRepository):
    sizes = [1000, 1000, 1000, 5000, 1000, 500, 500]
    async with repo.connection() as conn:
        await inbound.store_many(conn, "INBOX", 1, [(n, raw(n, s)) for n, s in enumerate(sizes)])
        # A header-only row (a mail over the size limit) counts with its real size.
        await inbound.store_many(conn, "INBOX", 1, [(99, raw(99, 200), 4000)])

        batches = []
        while batch := await inbound.pending_mails(conn, limit=3, max_bytes=2500):
            batches.append([len(mail.raw) if not mail.header_only else mail.size for mail in batch])
            done = [mail.id for mail in batch]
            await conn.execute(update(I).where(I.c.id.in_(done)).values(state="done"))

    assert batches == [[1000, 1000], [1000], [5000], [1000, 500, 500], [4000]]


async def test_without_a_byte_limit_only_the_count_bounds_a_batch(repo: SqlRepository):
    async with repo.connection() as conn:
        await inbound.store_many(conn, "INBOX", 1, [(n, raw(n, 3000)) for n in range(5)])
        batch = await inbound.pending_mails(conn, limit=4)
    assert [len(mail.raw) for mail in batch] == [3000] * 4
    assert [mail.id for mail in batch] == sorted(mail.id for mail in batch)
