"""Runs `exobot run` but kills itself with SIGKILL at a chosen point, to test crash safety.

Usage: python crash_runner.py POINT CONFIG, POINT being
  after-ticket-commit  right after the transaction that created/updated a ticket committed
  after-store          right after intake committed a raw mail, before it is processed
"""

from __future__ import annotations

import os
import signal
import sys

from exobot.cli import main
from exobot.core.service import TicketService
from exobot.mail.intake import ImapIntake


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def install(point: str) -> None:
    """Patch the crash into the running code."""
    if point == "after-ticket-commit":
        original = TicketService.apply

        async def apply_then_die(self, actor, intent):  # noqa: ANN001
            await original(self, actor, intent)
            _die()

        TicketService.apply = apply_then_die
    elif point == "after-store":
        original_fetch = ImapIntake.fetch_new

        async def fetch_then_die(self, client, uidvalidity):  # noqa: ANN001
            stored = await original_fetch(self, client, uidvalidity)
            if stored:
                _die()
            return stored

        ImapIntake.fetch_new = fetch_then_die
    else:
        raise SystemExit(f"unknown crash point {point!r}")


if __name__ == "__main__":
    install(sys.argv[1])
    sys.exit(main(["run", "-c", sys.argv[2]]))
