"""What the retention job leaves of personal data, on SQLite and PostgreSQL: a purged entry
keeps neither the sender's display name nor its attachments' file names (entries purged by an
older version that kept them were mended once, by migration 0012: see
tests/db/test_migration_mend_purged.py), and a delivered outbox row keeps no subject, sender,
error or greeting name (a quarantine notice, the too-big notice, a reply)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from clocks import FakeClock
from sqlalchemy import insert, select

from exobot.core.intents import MailClass, ReceiveMail, Reply, SetStatus
from exobot.core.model import Actor, AttachmentInfo, EntryKind, IncomingMail, Status
from exobot.core.service import ServiceSettings, TicketService
from exobot.db import outbox
from exobot.db.engine import create_engine
from exobot.db.migrate import upgrade_async
from exobot.db.repository import SqlRepository
from exobot.db.tables import EntryRow, OutboxRow
from exobot.mail.msgid import MessageIds
from exobot.retention import Retention

E = EntryRow.__table__
O = OutboxRow.__table__  # noqa: E741
MEMBER = "anna.puig@example.org"
NAME = "Anna Puig Ferrer"
FILENAME = "DNI Anna Puig 12345678Z.pdf"
SUBJECT = "La meva baixa per malaltia (Carla Vidal)"
OPERATOR = Actor.operator("@volunteer:example.org")
SETTINGS = ServiceSettings(
    prefix="suport", queues=frozenset({"suport"}), own_address="suport@example.org"
)
RETAIN = timedelta(days=730)
RAW = timedelta(days=30)


@pytest.fixture
async def world(db_url: str):
    await upgrade_async(db_url)
    engine = create_engine(db_url)
    repo = SqlRepository(engine)
    clock = FakeClock(datetime(2024, 1, 10, 9, 0, tzinfo=UTC))
    service = TicketService(repo, MessageIds("s" * 32, "example.org"), SETTINGS, clock=clock)
    job = Retention(repo, retention=RETAIN, raw_mail_retention=RAW, clock=clock)
    yield repo, service, clock, job
    await engine.dispose()


async def closed_ticket_with_attachment(service, clock, message_id: str = "<m1@x>") -> int:
    mail = IncomingMail(
        message_id, MEMBER, NAME, MEMBER, "Alta soci", "Adjunto mi DNI",
        attachments=(AttachmentInfo(FILENAME, "application/pdf", b"%PDF secret"),),
        received_at=clock.now(),
    )  # fmt: skip
    number = (await service.apply(Actor.member(MEMBER), ReceiveMail(mail, MailClass.MEMBER))).ticket
    await service.apply(OPERATOR, SetStatus(number, Status.RESOLVED))
    return number


async def entry_data(repo, number: int) -> list[dict]:
    async with repo.connection() as conn:
        return [
            r[0]
            for r in await conn.execute(
                select(E.c.data)
                .where(E.c.ticket_id == number, E.c.kind == EntryKind.MAIL_IN.value)
                .order_by(E.c.id)
            )
        ]


async def test_a_purge_drops_the_senders_name_and_the_attachments_file_names(world):
    repo, service, clock, job = world
    number = await closed_ticket_with_attachment(service, clock)
    [before] = await entry_data(repo, number)
    assert before["from_name"] == NAME and before["attachments"][0]["filename"] == FILENAME

    clock.advance(RETAIN + timedelta(days=1))
    assert (await job.run_once()).purged == [number]
    [after] = await entry_data(repo, number)
    assert NAME not in str(after) and FILENAME not in str(after)
    assert after["attachments"] == [{"content_type": "application/pdf", "size": 11}]
    assert (after["from"], after["message_id"], after["purged"]) == (MEMBER, "<m1@x>", True)
    assert not await job.run_once()


async def test_delivered_notices_lose_their_subject_sender_error_and_greeting(world):
    repo, service, clock, job = world
    number = await closed_ticket_with_attachment(service, clock)
    await service.apply(OPERATOR, Reply(number, "Rebut"))  # greets the member by name
    now = clock.now()
    async with repo.connection() as conn:
        for kind, payload, recipient in (
            ("chat", {"type": "quarantine", "inbound_id": 7, "sender": "carla@example.org",
                      "subject": SUBJECT, "error": f"too big: 30 MB ({SUBJECT})"}, None),
            ("mail", {"template": "too_big", "language": "ca", "to": ["carla@example.org"],
                      "subject": SUBJECT, "size": 1, "limit": 1, "message_id": "<x@y>",
                      "in_reply_to": None, "references": [], "auto_submitted": True},
             "carla@example.org"),
        ):  # fmt: skip
            await conn.execute(
                insert(O).values(
                    kind=kind, ticket_id=None, payload=payload, state="pending", attempts=0,
                    next_try_at=now, created_at=now, recipient=recipient,
                    template=payload.get("template"),
                )
            )  # fmt: skip
        rows = (await conn.execute(select(O.c.id, O.c.kind, O.c.payload))).all()
        reply = next(r for r in rows if r.kind == "mail" and r.payload.get("text") == "Rebut")
        assert reply.payload["name"] == NAME
        for row in rows:
            await outbox.mark_sent(conn, row.id, now)
    # One still to send keeps what it needs.
    async with repo.connection() as conn:
        await conn.execute(
            insert(O).values(
                kind="chat", ticket_id=None, state="pending", attempts=0, next_try_at=now,
                created_at=now, payload={"type": "quarantine", "inbound_id": 8, "subject": SUBJECT},
            )
        )  # fmt: skip

    clock.advance(RAW + timedelta(days=1))
    assert (await job.run_once()).outbox_rows >= 3
    async with repo.connection() as conn:
        rows = (await conn.execute(select(O.c.state, O.c.payload).order_by(O.c.id))).all()
    delivered = [p for state, p in rows if state == "sent"]
    assert delivered and all(
        SUBJECT not in str(p) and NAME not in str(p) and "carla@example.org" not in str(p.get("sender"))
        for p in delivered
    )
    quarantine = next(p for p in delivered if p.get("type") == "quarantine")
    assert (quarantine["inbound_id"], quarantine["purged"]) == (7, True)
    too_big = next(p for p in delivered if p.get("template") == "too_big")
    assert too_big["to"] == ["carla@example.org"] and too_big["message_id"] == "<x@y>"
    [waiting] = [p for state, p in rows if state == "pending"]
    assert waiting["subject"] == SUBJECT
    assert not await job.run_once()
