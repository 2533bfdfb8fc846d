"""The administrator's view of the outbox items given up: list, show, retry.

An item is given up when no retry can mend it (a mailbox that does not exist, a post the
homeserver refuses) or after its last attempt (a server away for hours). Once the cause is
mended (the relay's credentials, the bot invited back to a room), `retry` makes it due again
through the ticket service, which notes it on the ticket; a running exobot sends it within a
second (see exobot.delivery.OTHER_PROCESS_WAIT_SECONDS), a stopped one at its next start.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from exobot.app import App
from exobot.config import Config
from exobot.core.clock import utc
from exobot.core.intents import RetryDelivery
from exobot.core.model import Actor
from exobot.core.references import format_reference
from exobot.core.service import InvalidRequest
from exobot.core.text import one_line
from exobot.db import outbox
from exobot.delivery import OTHER_PROCESS_WAIT_SECONDS

LISTED = 100  # the newest ones; `show` reaches any
HEADER = f"{'id':>7}  {'given up (UTC)':<16}  kind  {'what':<12}  {'ticket':<14}  {'to':<40}  why"


async def run_outbox(
    config: Config, action: str, ids: Sequence[int] = (), *, every: bool = False
) -> int:
    """Carry out one outbox action and print its result; returns the exit status."""
    problem = _misused(action, ids, every)
    if problem is not None:
        print(f"outbox {action}: {problem}", file=sys.stderr)
        return 2
    app = App(config)
    await app.build()
    try:
        if action == "list":
            return await _list(app)
        if action == "show":
            return await _show(app, ids[0])
        return await _retry(app, ids, every=every)
    finally:
        await app.processor.parser.close()
        await app.repository.close()


def _misused(action: str, ids: Sequence[int], every: bool) -> str | None:
    """What is wrong with the arguments, or None."""
    if action == "list" and (ids or every):
        return "it takes no id"
    if action == "show" and (len(ids) != 1 or every):
        return "say which item (one id from `exobot outbox list`)"
    if action == "retry" and not (bool(ids) ^ every):
        return "say which items (their ids from `exobot outbox list`), or --all for every one"
    return None


async def _list(app: App) -> int:
    async with app.repository.connection() as conn:
        items, total = await outbox.given_up(conn, LISTED)
    if not items:
        print("no outbox item was given up")
        return 0
    print(HEADER)
    prefix = app.config.tickets.prefix
    for item in items:
        print(_line(item, prefix))
    if total > len(items):
        print(f"… and {total - len(items)} older ones")
    return 0


async def _show(app: App, item_id: int) -> int:
    async with app.repository.connection() as conn:
        item = await outbox.given_up_item(conn, item_id)
    if item is None:
        print(_not_given_up(item_id))
        return 1
    print(_name(item, app.config.tickets.prefix))
    if item.recipient:
        print(f"to: {one_line(item.recipient, 320)}")
    print(f"queued {utc(item.created_at):%Y-%m-%d %H:%M:%S} UTC, given up ", end="")
    print(f"{utc(item.done_at):%Y-%m-%d %H:%M:%S}" if item.done_at else "?", end="")
    print(f" after {item.attempts} attempt{'s' if item.attempts != 1 else ''}")
    print(f"why: {one_line(item.error, 2000)}")
    return 0


async def _retry(app: App, ids: Sequence[int], *, every: bool) -> int:
    """Each item due again through the ticket service, one transaction each; exit 1 when one
    of `ids` was not given up (sent or retried meanwhile, or never)."""
    async with app.repository.connection() as conn:
        if every:
            found = (await outbox.given_up(conn, None))[0][::-1]  # oldest first
            pairs = [(item.id, item) for item in found]
        else:
            pairs = [(item_id, await outbox.given_up_item(conn, item_id)) for item_id in ids]
    status, done = 0, 0
    for item_id, item in pairs:
        if item is None or not await _retried(app, item_id):
            print(_not_given_up(item_id))
            status = 1
            continue
        noted = " (noted on the ticket)" if item.ticket_id is not None else ""
        print(f"{_name(item, app.config.tickets.prefix)} is due again{noted}")
        done += 1
    if done:
        wait = OTHER_PROCESS_WAIT_SECONDS  # how soon a running exobot sees what this did
        them = "it" if done == 1 else "them"
        print(f"exobot sends {them} within {wait:g} s while it runs (else at its next start)")
    elif every:
        print("no outbox item was given up")
    return status


async def _retried(app: App, item_id: int) -> bool:
    """Whether the item was made due again (False: sent or retried meanwhile)."""
    try:
        await app.service.apply(Actor.system("administrator"), RetryDelivery(item_id))
    except InvalidRequest:
        return False
    return True


def _not_given_up(item_id: int) -> str:
    return f"no outbox item {item_id} was given up (see `exobot outbox list`)"


def _ticket(item: outbox.GivenUp, prefix: str) -> str:
    return format_reference(prefix, item.ticket_id) if item.ticket_id is not None else "-"


def _name(item: outbox.GivenUp, prefix: str) -> str:
    return f"{item.kind} {item.id} ({item.what}, {_ticket(item, prefix)})"


def _line(item: outbox.GivenUp, prefix: str) -> str:
    """One line per item: id, when it was given up, kind, what, ticket, recipient, why."""
    ticket = _ticket(item, prefix)
    when = f"{utc(item.done_at):%Y-%m-%d %H:%M}" if item.done_at else "?"
    return (
        f"{item.id:>7}  {when}  {item.kind:<4}  {one_line(item.what, 12):<12}  {ticket:<14}  "
        f"{one_line(item.recipient or '-', 40):<40}  {one_line(item.error, 100)}"
    )
