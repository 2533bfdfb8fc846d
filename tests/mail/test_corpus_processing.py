"""Every real-world mail of the corpus and every sample, through the real processor and its
parsing sandbox: each ends as a ticket, an entry or a quarantine item, never `received`."""

from __future__ import annotations

from pathlib import Path

from test_processor_limits import OWN, rows, store

from exobot.core.service import ServiceSettings, TicketService
from exobot.mail.msgid import MessageIds
from exobot.mail.processor import MailProcessor, MailSettings
from exobot.mail.sandbox import ParseSandbox, SandboxSettings

HERE = Path(__file__).parent
MAILS = sorted((HERE / "corpus").glob("*.eml")) + sorted((HERE / "samples").glob("*.eml"))
FINAL = ("done", "duplicate", "dropped", "ignored", "quarantined")


async def test_every_corpus_mail_ends_somewhere(repo):
    message_ids = MessageIds("secret" * 4, "example.org")
    service = TicketService(repo, message_ids, ServiceSettings(own_address=OWN))
    # A high per-sender limit: the corpus repeats a few senders, and flood is not the subject.
    settings = MailSettings(
        own_address=OWN,
        prefix="suport",
        ack_limit_per_day=5,
        message_ids=message_ids,
        new_tickets_per_sender_per_hour=1000,
    )
    sandbox = ParseSandbox(SandboxSettings(timeout=10.0, workers=2))
    processor = MailProcessor(repo, service, settings, parser=sandbox)
    try:
        ids = await store(repo, *(path.read_bytes() for path in MAILS))
        await processor.process_pending()
    finally:
        await sandbox.close()
    states = dict(zip([p.name for p in MAILS], await rows(repo, ids), strict=True))
    stuck = {name: row for name, row in states.items() if row[0] not in FINAL}
    assert not stuck
    quarantined = {name: row[1] for name, row in states.items() if row[0] == "quarantined"}
    # Only mails that are no mail at all, or whose sender no mail can be written to, may end
    # in quarantine; each says why.
    reasons = ("not a mail", "sender address cannot be written to:")
    assert all(error.startswith(reasons) for error in quarantined.values()), quarantined
    # Mails of the corpus share Message-IDs (duplicates) or are bounces of nothing of ours
    # (ignored): still, most become tickets.
    done = sum(1 for row in states.values() if row[0] == "done")
    assert done >= 0.8 * len(MAILS), {name: row[:2] for name, row in states.items()}
