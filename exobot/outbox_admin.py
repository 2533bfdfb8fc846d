"""The administrator's view of the outbox items given up: list, show, retry.

An item is given up when no retry can mend it (a mailbox that does not exist, a post the
homeserver refuses) or after its last attempt (a server away for hours). Once the cause is
mended (the relay's credentials, the bot invited back to a room), `retry` makes it due again
through the ticket service, which notes it on the ticket; the running exobot sends it at its
next pass.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime

from exobot.app import SHARED_DATABASE_POLL_SECONDS, App
from exobot.config import Config
from exobot.core.intents import RetryDelivery
from exobot.core.model import Actor
from exobot.core.references import format_reference
from exobot.core.service import InvalidRequest
from exobot.core.text import one_line
from exobot.db import outbox
from exobot.db.engine import is_sqlite
from exobot.delivery import IDLE_WAIT_SECONDS

LISTED = 100  # the newest ones; `show` reaches any
HEADER = f"{'id':>7}  {'given up (UTC)':<16}  kind  {'what':<12}  {'ticket':<14}  {'to':<40}  why"


async def run_outbox(config: Config, action: str, item_id: int | None) -> int:
    """Carry out one outbox action and print its result; returns the exit status."""
    if action != "list" and item_id is None:
        print(
            f"outbox {action}: say which item (its id from `exobot outbox list`)", file=sys.stderr
        )
        return 2
    app = App(config)
    await app.build()
    prefix = config.tickets.prefix
    try:
        if action == "list":
            async with app.repository.connection() as conn:
                items, total = await outbox.given_up(conn, LISTED)
            if not items:
                print("no outbox item was given up")
            else:
                print(HEADER)
            for item in items:
                print(_line(item, prefix))
            if total > len(items):
                print(f"… and {total - len(items)} older ones")
            return 0
        async with app.repository.connection() as conn:
            item = await outbox.given_up_item(conn, item_id)
        if item is None:
            print(f"no outbox item {item_id} was given up (see `exobot outbox list`)")
            return 1
        if action == "show":
            _show(item, prefix)
            return 0
        try:
            await app.service.apply(Actor.system("administrator"), RetryDelivery(item_id))
        except InvalidRequest:  # sent or retried meanwhile
            print(f"no outbox item {item_id} was given up (see `exobot outbox list`)")
            return 1
        # The worker's idle wait: this process cannot wake the running exobot's.
        wait = IDLE_WAIT_SECONDS if is_sqlite(config.database.url) else SHARED_DATABASE_POLL_SECONDS
        within = f"{wait:g} s"
        noted = " (noted on the ticket)" if item.ticket_id is not None else ""
        print(
            f"{_name(item, prefix)} is due again{noted}: the running exobot sends it within {within}"
        )
        return 0
    finally:
        await app.processor.parser.close()
        await app.repository.close()


def _ticket(item: outbox.GivenUp, prefix: str) -> str:
    return format_reference(prefix, item.ticket_id) if item.ticket_id is not None else "-"


def _name(item: outbox.GivenUp, prefix: str) -> str:
    return f"{item.kind} {item.id} ({item.what}, {_ticket(item, prefix)})"


def _line(item: outbox.GivenUp, prefix: str) -> str:
    """One line per item: id, when it was given up, kind, what, ticket, recipient, why."""
    ticket = _ticket(item, prefix)
    when = f"{_utc(item.done_at):%Y-%m-%d %H:%M}" if item.done_at else "?"
    return (
        f"{item.id:>7}  {when}  {item.kind:<4}  {one_line(item.what, 12):<12}  {ticket:<14}  "
        f"{one_line(item.recipient or '-', 40):<40}  {one_line(item.error, 100)}"
    )


def _show(item: outbox.GivenUp, prefix: str) -> None:
    print(_name(item, prefix))
    if item.recipient:
        print(f"to: {one_line(item.recipient, 320)}")
    print(f"queued {_utc(item.created_at):%Y-%m-%d %H:%M:%S} UTC, given up ", end="")
    print(f"{_utc(item.done_at):%Y-%m-%d %H:%M:%S}" if item.done_at else "?", end="")
    print(f" after {item.attempts} attempt{'s' if item.attempts != 1 else ''}")
    print(f"why: {one_line(item.error, 2000)}")


def _utc(moment: datetime) -> datetime:
    """A stored time in UTC (SQLite gives it naive, PostgreSQL with its zone)."""
    return moment.astimezone(UTC) if moment.tzinfo is not None else moment
