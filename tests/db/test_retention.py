"""The retention job on SQLite and PostgreSQL, driven by a fake clock: closed tickets lose their
texts after `privacy.retention`, raw mails and outbox texts after `privacy.raw_mail_retention`;
what must stay stays, a reopened ticket is spared, a second run does nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from clocks import FakeClock
from sqlalchemy import func, select, text

from exobot.core.intents import Comment, MailClass, ReceiveMail, Reply, SetStatus, SetTitle
from exobot.core.model import Actor, AttachmentInfo, EntryKind, IncomingMail, Status
from exobot.core.service import ServiceSettings, TicketService
from exobot.db import inbound, outbox
from exobot.db.repository import SqlRepository
from exobot.db.tables import (
    AttachmentRow,
    EntryRow,
    InboundMailRow,
    MailMessageRow,
    OutboxRow,
    ParticipantRow,
)
from exobot.mail.msgid import MessageIds
from exobot.retention import Retention

E = EntryRow.__table__
A = AttachmentRow.__table__
I = InboundMailRow.__table__  # noqa: E741
O = OutboxRow.__table__  # noqa: E741
M = MailMessageRow.__table__
P = ParticipantRow.__table__
MEMBER = "marta@example.net"
OPERATOR = Actor.operator("@anna:example.org")
SETTINGS = ServiceSettings(
    prefix="suport", queues=frozenset({"suport"}), own_address="suport@example.org"
)
RETAIN = timedelta(days=730)
RAW = timedelta(days=30)
SECRET = "frambuesa-azul"  # a distinctive phrase of the member's mail


@pytest.fixture
async def world(repo: SqlRepository):
    clock = FakeClock(datetime(2024, 1, 10, 9, 0, tzinfo=UTC))
    service = TicketService(repo, MessageIds("s" * 32, "example.org"), SETTINGS, clock=clock)
    job = Retention(repo, retention=RETAIN, raw_mail_retention=RAW, clock=clock)
    return repo, service, clock, job


async def receive(repo, service, clock, n: int, ticket: int | None = None, body: str = "") -> int:
    """A member's mail stored raw (as intake would) and applied; returns its ticket."""
    raw = f"Subject: router {n}\r\nMessage-ID: <m{n}@x>\r\n\r\n{body or SECRET}\r\n".encode()
    async with repo.connection() as conn:
        await inbound.store_many(conn, "INBOX", 1, [(n, raw)], now=clock.now())
        [pending] = await inbound.pending_mails(conn)
    mail = IncomingMail(
        f"<m{n}@x>", MEMBER, "Marta", MEMBER, f"router {n}", body or f"Hola, {SECRET}",
        attachments=(AttachmentInfo("foto.png", "image/png", b"\x89PNG" + SECRET.encode()),),
        received_at=clock.now(), inbound_id=pending.id,
    )  # fmt: skip
    intent = ReceiveMail(mail, MailClass.MEMBER, ticket=ticket)
    return (await service.apply(Actor.member(MEMBER), intent)).ticket


async def close(service, number: int, status: Status = Status.RESOLVED) -> None:
    await service.apply(OPERATOR, SetStatus(number, status))


async def send_all(repo, clock) -> None:
    """The mail worker's part: every pending outbox row delivered now."""
    async with repo.connection() as conn:
        for item in await outbox.due(conn, "mail", clock.now()):
            await outbox.mark_sent(conn, item.id, clock.now())


async def count(repo, query) -> int:
    async with repo.connection() as conn:
        return (await conn.execute(query)).scalar_one()


async def texts_of(repo, number: int) -> str:
    """Every text the database keeps about a ticket, joined (entries, index, raw, outbox)."""
    async with repo.connection() as conn:
        parts = [
            str(r)
            for r in await conn.execute(select(E.c.body, E.c.data).where(E.c.ticket_id == number))
        ]
        parts += [
            str(r)
            for r in await conn.execute(select(I.c.raw, I.c.subject).where(I.c.ticket_id == number))
        ]
        parts += [
            str(r) for r in await conn.execute(select(O.c.payload).where(O.c.ticket_id == number))
        ]
        parts += [
            str(r) for r in await conn.execute(select(A.c.data).where(A.c.ticket_id == number))
        ]
        parts += [
            str(r)
            for r in await conn.execute(
                text("SELECT content FROM search_index WHERE ticket_id = :t"), {"t": number}
            )
        ]
        parts += [
            str(r)
            for r in await conn.execute(
                text("SELECT body, subject FROM entry_originals WHERE ticket_id = :t"),
                {"t": number},
            )
        ]
    return "\n".join(parts)


async def test_closed_ticket_is_purged_after_retention_and_only_once(world):
    repo, service, clock, job = world
    number = await receive(repo, service, clock, 1)
    await service.apply(OPERATOR, Reply(number, f"Prova això: {SECRET}"))
    await service.apply(OPERATOR, Comment(number, f"nota {SECRET}"))
    await service.apply(OPERATOR, SetTitle(number, "Router sense connexió"))
    await send_all(repo, clock)
    await close(service, number)
    before = await repo.history(number)
    mail_entry = before[1].id
    # What masking keeps of a masked mail (written here directly: masking has its own tests).
    await repo.run(lambda uow: uow.add_original(number, mail_entry, SECRET, SECRET, ["iban"]))
    assert SECRET in await texts_of(repo, number)

    clock.advance(RETAIN - timedelta(hours=1))
    report = await job.run_once()
    assert report.tickets == 0
    assert SECRET in await texts_of(repo, number)

    clock.advance(hours=2)
    report = await job.run_once()
    assert (report.tickets, report.purged) == (1, [number])
    assert report.entries == 4  # the mail, the reply, the comment, the resolved notice
    assert report.attachments == 1

    assert SECRET not in (await texts_of(repo, number)).casefold()
    async with repo.connection() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM entry_originals"))).scalar_one() == 0
    assert await repo.search(SECRET) == []
    assert await repo.search("Router sense connexió") == [number]  # the title stays searchable
    ticket = await repo.get_ticket(number)
    assert (ticket.title, ticket.requestor, ticket.status) == (
        "Router sense connexió",
        MEMBER,
        Status.RESOLVED,
    )
    after = await repo.history(number)
    # The history keeps every entry, with who and when; the changes keep their data.
    assert [(e.id, e.kind, e.actor, e.created_at) for e in after[:-1]] == [
        (e.id, e.kind, e.actor, e.created_at) for e in before
    ]
    kept = {EntryKind.STATUS, EntryKind.TITLE, EntryKind.CREATED}
    assert [e.data for e in after if e.kind in kept] == [e.data for e in before if e.kind in kept]
    purge = after[-1]
    assert (purge.kind, purge.actor, purge.body) == (EntryKind.PURGE, "retention", None)
    assert purge.data["entries"] == 4 and purge.data["attachments"] == 1
    mail_in = next(e for e in after if e.kind is EntryKind.MAIL_IN)
    assert mail_in.body is None and "subject" not in mail_in.data
    assert "subject" in next(e for e in before if e.kind is EntryKind.MAIL_IN).data
    assert mail_in.data["message_id"] == "<m1@x>" and mail_in.data["purged"] is True
    # References and participants stay: a later mail still threads, a duplicate is known.
    assert (
        await count(repo, select(func.count()).select_from(M).where(M.c.ticket_id == number)) == 3
    )
    assert await repo.read(lambda v: v.participants(number)) == {MEMBER}
    async with repo.connection() as conn:
        [row] = (await conn.execute(select(I).where(I.c.ticket_id == number))).all()
    assert (bytes(row.raw), row.subject, row.message_id, row.state) == (b"", None, "<m1@x>", "done")

    # Idempotent: a second run (and a later one) purges nothing and records nothing.
    assert not await job.run_once()
    clock.advance(days=400)
    assert not await job.run_once()
    assert len(await repo.history(number)) == len(after)


async def test_reopened_ticket_is_spared_and_counted_from_its_last_closing(world):
    repo, service, clock, job = world
    reopened = await receive(repo, service, clock, 1)
    rejected = await receive(repo, service, clock, 2)
    still_open = await receive(repo, service, clock, 3)
    await close(service, reopened)
    await close(service, rejected, Status.REJECTED)
    clock.advance(days=700)
    await receive(repo, service, clock, 4, ticket=reopened, body="Torna a fallar")  # reopens
    assert (await repo.get_ticket(reopened)).status is Status.OPEN
    clock.advance(days=40)

    report = await job.run_once()
    assert report.purged == [rejected]
    await close(service, reopened)
    clock.advance(RETAIN - timedelta(days=1))
    assert (await job.run_once()).purged == []
    clock.advance(days=2)
    assert (await job.run_once()).purged == [reopened]
    assert SECRET in await texts_of(repo, still_open)
    assert (await repo.get_ticket(still_open)).status is Status.NEW


async def test_texts_written_after_a_purge_are_purged_at_the_next_closing(world):
    repo, service, clock, job = world
    number = await receive(repo, service, clock, 1)
    await close(service, number)
    clock.advance(RETAIN + timedelta(days=1))
    assert (await job.run_once()).purged == [number]
    # An automatic reply or a comment on a closed ticket does not reopen it: its text waits
    # for a new closing only when the ticket is reopened; a comment alone is purged at once
    # because the ticket has been closed long enough.
    await service.apply(OPERATOR, Comment(number, f"després {SECRET}"))
    report = await job.run_once()
    assert (report.purged, report.entries) == ([number], 1)
    kinds = [e.kind for e in await repo.history(number)]
    assert kinds.count(EntryKind.PURGE) == 2
    assert SECRET not in await texts_of(repo, number)


async def test_raw_mails_are_dropped_after_their_retention_and_duplicates_still_recognised(world):
    repo, service, clock, job = world
    number = await receive(repo, service, clock, 1)
    async with repo.connection() as conn:
        await inbound.store_many(conn, "INBOX", 1, [(7, b"Subject: x\r\n\r\nnot parsed yet")])
        [held] = await inbound.pending_mails(conn)
        await inbound.mark_inbound(conn, held.id, inbound.QUARANTINED, error="x", now=clock.now())
    clock.advance(RAW - timedelta(minutes=1))
    assert (await job.run_once()).raw_mails == 0
    clock.advance(minutes=2)
    report = await job.run_once()
    assert (report.raw_mails, report.tickets) == (1, 0)
    async with repo.connection() as conn:
        rows = {r.uid: r for r in await conn.execute(select(I))}
    assert (bytes(rows[1].raw), rows[1].subject, rows[1].message_id) == (b"", None, "<m1@x>")
    assert rows[7].raw.startswith(b"Subject: x")  # quarantined: an operator may retry it
    # The ticket's texts stay (it is open); only the raw copy went.
    assert SECRET in (await repo.history(number))[1].body
    assert not await job.run_once()

    # The same mail delivered again (a new UID) is still known by its Message-ID.
    duplicate = IncomingMail(
        "<m1@x>", MEMBER, "Marta", MEMBER, "router 1", "Hola", received_at=clock.now()
    )
    async with repo.reading() as view:
        assert await view.ticket_for_message(duplicate.message_id) == (number, "in")


async def test_delivered_outbox_texts_go_after_the_raw_mail_retention(world):
    repo, service, clock, job = world
    number = await receive(repo, service, clock, 1)
    await service.apply(OPERATOR, Reply(number, f"Resposta {SECRET}"))
    await send_all(repo, clock)
    await service.apply(OPERATOR, Reply(number, f"Pendent {SECRET}"))  # never delivered
    clock.advance(RAW + timedelta(days=1))
    report = await job.run_once()
    assert report.outbox_rows == 1  # the delivered reply
    async with repo.connection() as conn:
        payloads = [r[0] for r in await conn.execute(select(O.c.payload).order_by(O.c.id))]
    assert payloads[0]["text"] is None and payloads[0]["purged"] is True
    assert payloads[0]["message_id"] and payloads[0]["to"] == [MEMBER]
    assert payloads[1]["text"] == f"Pendent {SECRET}"  # still to send
    # The ticket's history keeps what was said.
    assert any(e.body == f"Resposta {SECRET}" for e in await repo.history(number))
    assert not await job.run_once()


async def test_many_closed_tickets_are_purged_in_batches(world):
    repo, service, clock, job = world
    numbers = []
    for n in range(1, 13):
        numbers.append(await receive(repo, service, clock, n))
        await close(service, numbers[-1])
    clock.advance(RETAIN + timedelta(days=1))
    import exobot.retention as retention

    original, retention.BATCH = retention.BATCH, 5
    try:
        report = await job.run_once()
    finally:
        retention.BATCH = original
    assert report.purged == numbers
    assert await count(repo, select(func.count()).select_from(A)) == 0
