"""Runs `exobot run` but kills itself with SIGKILL at a chosen point, to test crash safety.

Usage: python crash_runner.py POINT CONFIG, POINT being
  after-ticket-commit  right after the transaction that created/updated a ticket committed
  after-store          right after intake committed a raw mail, before it is processed
  after-ticket-created right after the transaction that created a ticket committed (and only
                       then): its chat root and acknowledgement are queued, nothing is sent
  before-chat-send     when the chat worker picks up its first row, before it posts anything
  before-post-record   when the homeserver accepted a chat message, before it was recorded
                       (chat_posts): only the Matrix transaction id can prevent a duplicate
  before-thread-record when a root message was posted and recorded as a post, before it was
                       recorded as the ticket's thread (chat_threads)
  during-smtp-send     when the SMTP server accepted a mail (after DATA), before its outbox row
                       is marked sent: the row is sent again by whoever delivers next

The chat points first let the mail worker finish what is pending, so the kill lands inside the
chat worker only (a kill during an SMTP exchange may send a mail twice, which is another story).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time

from sqlalchemy import text

from exobot.cli import main
from exobot.core.service import Outcome, TicketService
from exobot.db import chat
from exobot.mail.intake import ImapIntake
from exobot.mail.outbound import MailSender
from exobot.matrix.poster import ChatSender

MAIL_SETTLE_SECONDS = 90.0  # returns as soon as the mail is out; generous for a busy machine


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


async def _mail_settled(sender: ChatSender) -> None:
    """Wait (bounded) until no mail is pending in the outbox."""
    deadline = time.monotonic() + MAIL_SETTLE_SECONDS
    while time.monotonic() < deadline:
        async with sender.repository.connection() as conn:
            pending = (
                await conn.execute(
                    text("SELECT count(*) FROM outbox WHERE kind = 'mail' AND state = 'pending'")
                )
            ).scalar()
        if not pending:
            return
        await asyncio.sleep(0.05)


def _install_chat(point: str) -> None:
    original_send = ChatSender.send

    async def settle_then_send(self, item):  # noqa: ANN001
        await _mail_settled(self)
        if point == "before-chat-send":
            _die()
        await original_send(self, item)

    ChatSender.send = settle_then_send

    def die_on_entry(*args, **kwargs):  # noqa: ANN002, ANN003
        _die()

    if point == "before-post-record":
        chat.record_post = die_on_entry
    elif point == "before-thread-record":
        chat.record_thread = die_on_entry


def install(point: str) -> None:
    """Patch the crash into the running code."""
    if point == "after-ticket-commit":
        # apply() and apply_decided() (incoming mail) both commit through _apply().
        original = TicketService._apply

        async def apply_then_die(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
            outcome = await original(self, *args, **kwargs)
            if isinstance(outcome, Outcome):  # else nothing was applied (a dropped mail)
                _die()
            return outcome

        TicketService._apply = apply_then_die
    elif point == "after-store":
        original_fetch = ImapIntake.fetch_new

        async def fetch_then_die(self, client, uidvalidity):  # noqa: ANN001
            stored = await original_fetch(self, client, uidvalidity)
            if stored:
                _die()
            return stored

        ImapIntake.fetch_new = fetch_then_die
    elif point == "after-ticket-created":
        original_apply = TicketService._apply

        async def apply_then_die_if_created(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
            outcome = await original_apply(self, *args, **kwargs)
            if isinstance(outcome, Outcome) and outcome.created:
                _die()
            return outcome

        TicketService._apply = apply_then_die_if_created
    elif point == "during-smtp-send":
        original_send = MailSender._send

        async def send_then_die(self, message):  # noqa: ANN001
            await original_send(self, message)  # the server answered 250 to DATA
            _die()

        MailSender._send = send_then_die
    elif point in ("before-chat-send", "before-post-record", "before-thread-record"):
        _install_chat(point)
    else:
        raise SystemExit(f"unknown crash point {point!r}")


if __name__ == "__main__":
    install(sys.argv[1])
    sys.exit(main(["run", "-c", sys.argv[2]]))
