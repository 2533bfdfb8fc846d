"""A backlog of more than a thousand mails (exobot was down for a while) is read whole."""

from __future__ import annotations

import asyncio
import smtplib

from harness import unique, wait_until

from exobot.mail.intake import SIZE_CHUNK

BACKLOG = 1_100  # more lines than one read of a size query may carry (see SIZE_CHUNK)


def deliver_many(stack, address: str, count: int, sender: str) -> None:
    """Deliver `count` tiny mails over one LMTP connection (fast, exactly as given)."""
    with smtplib.LMTP(stack.host, stack.lmtp_port, timeout=60) as lmtp:
        for n in range(count):
            raw = (
                f"From: {sender}\r\nTo: {address}\r\nSubject: backlog {n}\r\n"
                f"Message-ID: <backlog-{n}.{sender}>\r\n\r\nmail {n}\r\n"
            ).encode()
            lmtp.sendmail(sender, [address], raw)


async def test_a_backlog_of_over_a_thousand_mails_is_stored_whole(make_instance, stack):
    assert BACKLOG > 5 * SIZE_CHUNK
    inst = make_instance()
    await asyncio.to_thread(deliver_many, stack, inst.address, BACKLOG, unique("member"))
    await inst.start()

    async def all_stored() -> bool:
        return inst.scalar("SELECT count(*) FROM inbound_mail") >= BACKLOG

    await wait_until(all_stored, 300, f"{BACKLOG} stored mails")
    assert inst.scalar("SELECT count(DISTINCT uid) FROM inbound_mail") == BACKLOG
