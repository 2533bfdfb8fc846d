"""A mail queued with a Cc address no mail can be written to (queued by an older version) is
sent to the others, and the left-out address is noted on the ticket once, however often the
mail is retried. A payload no mail can be built from is refused for good, before any send."""

from __future__ import annotations

import pytest

from exobot.core.model import Actor
from exobot.db.outbox import OutboxItem
from exobot.delivery import PermanentFailure
from exobot.mail.compose import TemplateRenderer
from exobot.mail.outbound import MailSender, SmtpSettings, usable_cc

PAYLOAD = {
    "template": "reply",
    "language": "ca",
    "to": ["marta@example.net"],
    "cc": ["josé@example.org", "vei@example.net", "a@b"],
    "reference": "suport#3",
    "number": 3,
    "title": "Router",
    "text": "Hola",
    "requestor": "marta@example.net",
    "message_id": "<exobot.3.1@example.org>",
    "in_reply_to": None,
    "references": [],
    "auto_submitted": False,
}


class RecordingService:
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    async def apply(self, actor, intent, origin=None):
        self.calls.append((actor, intent, origin))


def sender(service, repo=None, clock=None) -> MailSender:  # noqa: ANN001
    """A mail worker whose SMTP server accepts every mail (kept in `worker.sent`)."""
    worker = MailSender(
        repo,
        service,
        SmtpSettings("127.0.0.1", 1),
        TemplateRenderer(),
        from_address="suport@example.org",
        from_name="Suport eXO",
        loop_marker="exobot-test",
        clock=clock,
    )
    worker.sent = []

    async def fake_send(message):
        worker.sent.append(message)

    worker._send = fake_send
    return worker


def test_usable_cc_splits_by_the_one_address_rule():
    good, bad = usable_cc(PAYLOAD)
    assert good == ["vei@example.net"]
    assert [address for address, _why in bad] == ["josé@example.org", "a@b"]


async def test_the_mail_goes_out_without_the_bad_cc_and_each_is_noted_once_per_mail():
    service = RecordingService()
    worker = sender(service)
    item = OutboxItem(id=7, kind="mail", ticket_id=3, payload=PAYLOAD, attempts=0)
    await worker.send(item)
    [message] = worker.sent
    assert message["To"] == "marta@example.net" and message["Cc"] == "vei@example.net"
    notes = [(intent.recipient, intent.skipped, origin.key) for _a, intent, origin in service.calls]
    assert notes == [
        ("josé@example.org", True, "mail-skipped-cc:7:josé@example.org"),
        ("a@b", True, "mail-skipped-cc:7:a@b"),
    ]
    assert all(actor == Actor.system("mail") for actor, _i, _o in service.calls)


async def test_a_payload_no_mail_can_be_built_from_is_refused_for_good_before_any_send():
    worker = sender(RecordingService())
    payload = {key: value for key, value in PAYLOAD.items() if key != "to"}
    item = OutboxItem(id=8, kind="mail", ticket_id=3, payload=payload, attempts=0)
    with pytest.raises(PermanentFailure, match="cannot deliver it: KeyError: 'to'"):
        await worker.send(item)
    assert worker.sent == []


async def test_the_same_error_from_the_smtp_side_is_not_taken_for_the_payloads():
    worker = sender(RecordingService())

    async def racing_send(message):
        raise KeyError("a library's own bug")  # retried by the worker, not given up

    worker._send = racing_send
    item = OutboxItem(id=9, kind="mail", ticket_id=3, payload=PAYLOAD, attempts=0)
    with pytest.raises(KeyError):
        await worker.send(item)
