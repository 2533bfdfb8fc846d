"""The per-sender hourly limit through the real processor and database: the 11th new ticket of
one sender is held as "flood", announced once per sender and hour, and an operator's retry
lets it through; replies of participants are never held."""

from __future__ import annotations

import itertools
from email.message import EmailMessage

import pytest
from sqlalchemy import select

from exobot.core.service import ServiceSettings, TicketService
from exobot.db import inbound
from exobot.db.tables import InboundMailRow, OutboxRow
from exobot.mail.msgid import MessageIds
from exobot.mail.processor import MailProcessor, MailSettings
from exobot.mail.sandbox import MB, ParseSandbox, SandboxSettings

OWN = "suport@example.org"
I = InboundMailRow.__table__  # noqa: E741
O = OutboxRow.__table__  # noqa: E741
_uids = itertools.count(1)


def mail(subject: str, sender: str) -> bytes:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, OWN, subject
    msg["Message-ID"] = f"<flood{next(_uids)}@example.net>"
    msg.set_content("Hola")
    return bytes(msg)


@pytest.fixture
async def processor(repo):
    ids = MessageIds("secret" * 4, "example.org")
    service = TicketService(repo, ids, ServiceSettings(own_address=OWN, announce=True))
    settings = MailSettings(
        own_address=OWN,
        prefix="suport",
        ack_limit_per_day=5,
        message_ids=ids,
        announce=True,
        new_tickets_per_sender_per_hour=3,
    )
    sandbox = ParseSandbox(SandboxSettings(timeout=30.0, memory=512 * MB, workers=1))
    yield MailProcessor(repo, service, settings, parser=sandbox)
    await sandbox.close()


async def store_and_process(repo, processor, *raws: bytes) -> list[tuple[str, str | None]]:
    uids = [next(_uids) for _ in raws]
    async with repo.connection() as conn:
        await inbound.store_many(conn, "INBOX", 1, list(zip(uids, raws, strict=True)))
    await processor.process_pending()
    async with repo.connection() as conn:
        found = await conn.execute(
            select(I.c.id, I.c.state, I.c.error).where(I.c.uid.in_(uids)).order_by(I.c.uid)
        )
        return [tuple(row) for row in found]


async def flood_posts(repo) -> int:
    async with repo.connection() as conn:
        rows = (await conn.execute(select(O.c.payload).where(O.c.kind == "chat"))).all()
    return sum(1 for (payload,) in rows if "flood" in str(payload.get("error")))


async def test_a_flood_is_held_announced_once_and_let_through_by_a_retry(repo, processor):
    flooder, member = "robot@example.net", "marta@example.net"
    results = await store_and_process(
        repo,
        processor,
        *(mail(f"Oferta {n}", flooder) for n in range(5)),
        mail("No em funciona internet", member),
    )
    states = [state for _id, state, _error in results]
    assert states == ["done", "done", "done", "quarantined", "quarantined", "done"]
    assert "flood" in results[3][2] and flooder in results[3][2]
    assert await flood_posts(repo) == 1  # not one per held mail

    # A member's reply to her own ticket is never held, whatever she sent before.
    number = 4
    replies = [mail(f"Re: [suport#{number}] No em funciona internet", member) for _ in range(4)]
    assert {state for _id, state, _ in await store_and_process(repo, processor, *replies)} == {
        "done"
    }

    held = results[3][0]
    assert await processor.retry(held) == "done"
    assert await processor.retry(results[4][0]) == "done"


async def test_a_sender_no_mail_can_be_written_to_is_held_with_the_reason(repo, processor):
    raw = (
        "From: José <josé@example.org>\r\nTo: suport@example.org\r\nSubject: No va\r\n"
        "Message-ID: <smtputf8-1@example.org>\r\nContent-Type: text/plain; charset=utf-8\r\n"
        "\r\nNo em funciona internet\r\n"
    ).encode()
    [(held, state, error)] = await store_and_process(repo, processor, raw)
    assert state == "quarantined"
    assert error.startswith("sender address cannot be written to: josé@example.org (")
    async with repo.connection() as conn:
        posts = (await conn.execute(select(O.c.payload).where(O.c.kind == "chat"))).all()
    assert [payload["error"] for (payload,) in posts] == [error]  # announced, once
    # An operator who retries it knowingly gets a ticket (with nobody to mail).
    assert await processor.retry(held) == "done"
