"""A mail whose body the parser cut is recorded with that flag (shown as a note later)."""

from __future__ import annotations

from datetime import UTC, datetime

from test_service import World, mail

from exobot.mail.parse import parse_mail
from exobot.mail.processor import incoming_from

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


async def test_cut_body_is_flagged_in_the_mail_entry() -> None:
    world = World()
    number = (await world.receive(mail(body="x" * 10, body_truncated=True))).ticket
    await world.receive(mail(body="curt"), ticket=number)
    first, second = world.repo.entries(number, "mail_in")
    assert first.data["body_truncated"] is True
    assert "body_truncated" not in second.data


def test_the_processor_carries_the_parser_flag() -> None:
    raw = b"From: a@example.org\r\nSubject: x\r\n\r\n" + b"paraula " * 20_000
    incoming = incoming_from(parse_mail(raw), raw, inbound_id=1, received_at=T0)
    assert incoming.body_truncated and incoming.received_at == T0
    short = b"From: a@example.org\r\nSubject: x\r\n\r\nhola\r\n"
    assert not incoming_from(parse_mail(short), short, 2, T0).body_truncated
