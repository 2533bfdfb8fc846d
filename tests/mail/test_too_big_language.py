"""The too-big notice speaks the member's language (audit of member mails, item 5): it was
always in the configured one, so a Spanish member read "Missatge massa gran: Fotos del
router que no funciona". Now: the language of the sender's latest ticket, else the one the
subject is written in (the detection a new mail's acknowledgement uses), else the configured
one; with the real parser and its language models."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from clocks import FakeClock

from exobot.mail.compose import TemplateRenderer
from exobot.mail.msgid import MessageIds
from exobot.mail.outbound import MailSender, SmtpSettings
from exobot.mail.sandbox import MB, ParseSandbox, SandboxSettings
from tests.mail.test_processor_limits import OWN, header_of, mail, notices, processor_for, store


@pytest.fixture
async def processor(repo, message_ids):
    # The real parser (the default), which detects the language as intake does.
    sandbox = ParseSandbox(SandboxSettings(timeout=60.0, memory=512 * MB, workers=1))
    made = processor_for(repo, message_ids, FakeClock(datetime.now(UTC)), sandbox)
    yield made
    await sandbox.close()


@pytest.fixture
def message_ids() -> MessageIds:
    return MessageIds("secret" * 4, "example.org")


async def test_a_spanish_subject_gets_a_spanish_notice(repo, processor, message_ids):
    big = header_of(mail("Fotos del router que no funciona", "jose@example.net"))
    await store(repo, (big, 40 * MB))
    await processor.process_pending()
    (payload,) = await notices(repo)
    assert payload["language"] == "es"
    sender = MailSender(
        repo,
        processor.service,
        SmtpSettings("127.0.0.1", 25),
        TemplateRenderer("ca"),
        from_address=OWN,
        from_name="Suport eXO",
        loop_marker=message_ids.loop_marker(),
    )
    built = sender.build({k: v for k, v in payload.items() if k != "recipient"})
    assert built["Content-Language"] == "es"
    assert not built["Subject"].startswith("Missatge massa gran")


async def test_the_senders_latest_ticket_says_when_the_subject_does_not(repo, processor):
    # Pilar's ticket speaks English (her first mail was); a one-word subject tells nothing.
    await store(
        repo,
        mail(
            "Internet down",
            "pilar@example.net",
            body="Hello, since yesterday I have had no connection at home. Can you help me?",
        ),
    )
    await processor.process_pending()
    await store(repo, (header_of(mail("Fotos", "Pilar@Example.net")), 30 * MB))
    # Nobody known and nothing to tell: the configured language.
    await store(repo, (header_of(mail("Fotos", "nou@example.net")), 30 * MB))
    await processor.process_pending()
    assert [(n["recipient"], n["language"]) for n in await notices(repo)] == [
        ("pilar@example.net", "en"),
        ("nou@example.net", "ca"),
    ]
