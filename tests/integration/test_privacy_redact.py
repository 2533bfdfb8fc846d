"""`exobot privacy erase` beside a running exobot on the real stack: the bot's Matrix posts
about the person's ticket are redacted on Synapse, once, and the volunteer's client sees them
redacted; a second run finds nothing."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import pytest
from harness import member_mail, unique, wait_until
from matrix_harness import body_of, sender_of, thread_root_of

pytestmark = pytest.mark.asyncio

PHRASE = "purple giraffe under the stairs"


def redacts(event: dict) -> str | None:
    """The event a redaction event redacts (top level before room v11, in content after)."""
    return event.get("redacts") or (event.get("content") or {}).get("redacts")


async def all_redacted(vol, room: str, events: set[str]) -> None:  # noqa: ANN001
    """Wait until the volunteer's client has seen a redaction of each of `events`."""
    for event_id in events:
        await vol.wait_for(
            room,
            lambda e, event_id=event_id: (
                e.get("type") == "m.room.redaction" and redacts(e) == event_id
            ),
            what=f"the redaction of {event_id}",
        )


@dataclass
class InChat:
    """A member's ticket whose posts are all in the chat, as a volunteer sees them."""

    inst: Any
    setup: Any
    vol: Any
    room: str
    member: str
    events: set[str]  # the bot's posts about the ticket
    root: dict


async def ticket_in_chat(make_instance, matrix_setup, volunteer) -> InChat:  # noqa: ANN001
    """Start exobot, have a member write, and wait until its posts are all in the room."""
    setup = matrix_setup()
    inst = make_instance(matrix=setup)
    await inst.start()
    vol = await volunteer(setup)
    room = setup.rooms["suport"]
    member = unique("membre")
    await inst.send(member_mail(member, inst.address, subject="Router giraffe", body=PHRASE))
    await inst.wait_tickets(1)
    posts_done = "SELECT count(*) FROM outbox WHERE kind = 'chat' AND state = 'pending'"

    async def posted() -> list[tuple]:
        if inst.scalar(posts_done):
            return []
        return inst.query("SELECT room_id, event_id FROM chat_posts")

    posts = await wait_until(posted, what="the ticket's posts")
    events = {event for _room, event in posts}
    root = await vol.wait_for(
        room,
        lambda e: (
            sender_of(e) == setup.bot_user_id
            and thread_root_of(e) is None
            and "suport#1" in (body_of(e) or "")
        ),
        what="the root message",
    )
    assert root["event_id"] in events
    await vol.wait_for(
        room, lambda e: PHRASE in (body_of(e) or ""), what="the mail text in the thread"
    )
    # Nothing due: the chat worker would now sleep past the tests' deadlines unless the commit
    # watch wakes it, when `exobot privacy erase` or `outbox retry` (another process) commits.
    inst.app.poster.idle_wait = 3600.0
    inst.app.poster.wake.set()  # its wait under way ends; the next is an hour
    return InChat(inst, setup, vol, room, member, events, root)


async def test_erase_redacts_the_bots_posts_once(make_instance, matrix_setup, volunteer):
    chat = await ticket_in_chat(make_instance, matrix_setup, volunteer)
    inst, vol, room, member, events, root = (
        chat.inst,
        chat.vol,
        chat.room,
        chat.member,
        chat.events,
        chat.root,
    )

    result = await asyncio.to_thread(inst.run_cli, "privacy", "erase", member)
    assert result.returncode == 0, result.stderr
    assert f"matrix posts: {len(events)}" in result.stdout, result.stdout

    # The running bot carries the redact row out (the commit watch wakes its chat worker).
    await all_redacted(vol, room, events)
    response = await vol.client.room_get_event(room, root["event_id"])
    source = response.event.source
    assert source["unsigned"].get("redacted_because"), source
    assert not source.get("content"), source
    reasons = {
        (e.get("content") or {}).get("reason")
        for e in vol.events(room)
        if e.get("type") == "m.room.redaction"
    }
    assert reasons == {
        "Eliminat a petició de la persona a qui feia referència (protecció de dades)."
    }

    async def redact_sent() -> bool:
        rows = inst.query(
            "SELECT state FROM outbox WHERE kind = 'chat' AND payload LIKE '%\"redact\"%'"
        )
        return rows == [("sent",)]

    await wait_until(redact_sent, what="the redact row to be sent")
    (redact_id,) = inst.query(
        "SELECT id FROM outbox WHERE kind = 'chat' AND payload LIKE '%\"redact\"%'"
    )[0]
    parts = inst.query("SELECT part, event_id FROM chat_posts WHERE outbox_id = :i", i=redact_id)
    assert len(parts) == len(events) and all(event for _part, event in parts)
    # Exactly once: the row delivered again (a crash before it was marked sent) finds every
    # part recorded and sends nothing.
    await asyncio.to_thread(
        inst.query, "UPDATE outbox SET state = 'pending' WHERE id = :i", i=redact_id
    )
    await wait_until(redact_sent, what="the redact row to be sent again")
    again_parts = inst.query(
        "SELECT part, event_id FROM chat_posts WHERE outbox_id = :i", i=redact_id
    )
    assert sorted(again_parts) == sorted(parts)
    redactions = [e for e in vol.events(room) if e.get("type") == "m.room.redaction"]
    assert len(redactions) == len(events)
    assert inst.scalar("SELECT count(*) FROM tickets WHERE requestor LIKE 'erased-%@invalid'") == 1

    again = await asyncio.to_thread(inst.run_cli, "privacy", "erase", member)
    assert again.returncode == 0, again.stderr
    assert "nothing to erase" in again.stdout


async def set_redaction_level(vol, room: str, level: int) -> None:  # noqa: ANN001
    """The power a member needs to redact even their own posts (the volunteer is the room's
    admin; the bot has the default 0)."""
    current = await vol.client.room_get_state_event(room, "m.room.power_levels")
    content = dict(current.content)
    content["events"] = {**content.get("events", {}), "m.room.redaction": level}
    response = await vol.client.room_put_state(room, "m.room.power_levels", content)
    assert getattr(response, "event_id", None), response


async def test_redactions_the_homeserver_forbids_are_reported_and_retried(
    make_instance, matrix_setup, volunteer
):
    """The bot may not redact in the room: the erasure's redactions are given up at once and
    said on the ticket (its thread, its history), not marked done as if nothing were left;
    once the bot may, an administrator's retry removes every post."""
    chat = await ticket_in_chat(make_instance, matrix_setup, volunteer)
    inst, vol, room, events = chat.inst, chat.vol, chat.room, chat.events
    bot = chat.setup.bot_user_id
    await set_redaction_level(vol, room, 50)

    mark = vol.mark(room)
    result = await asyncio.to_thread(inst.run_cli, "privacy", "erase", chat.member)
    assert result.returncode == 0, result.stderr
    assert f"matrix posts: {len(events)}" in result.stdout, result.stdout
    assert result.stdout.endswith(
        "any the homeserver forbids it to are said on their ticket and in `exobot outbox list`\n"
    )
    redact_row = (
        "SELECT id, state, attempts, last_error FROM outbox WHERE payload LIKE '%\"redact\"%'"
    )

    async def given_up() -> tuple | None:
        rows = inst.query(redact_row)
        return rows[0] if rows and rows[0][1] == "failed" else None

    row_id, _state, attempts, error = await wait_until(given_up, what="the redactions given up")
    assert attempts == 1  # at once: no retry gives the bot the power
    assert error.startswith(f"the homeserver refused to redact {len(events)} of {len(events)} ")
    assert error.endswith("(M_FORBIDDEN)"), error
    assert inst.scalar("SELECT count(*) FROM chat_posts WHERE outbox_id = :i", i=row_id) == 0
    report = await vol.wait_for(
        room,
        lambda e: (
            sender_of(e) == bot
            and "No s'han pogut eliminar del xat missatges sobre suport#1" in (body_of(e) or "")
        ),
        what="the report in the thread",
        after=mark,
    )
    assert thread_root_of(report) == chat.root["event_id"]
    assert "Un moderador de la sala els pot eliminar a mà." in body_of(report)
    [(data,)] = inst.query("SELECT data FROM entries WHERE kind = 'delivery_failed'")
    assert json.loads(data) == {
        "outbox_id": row_id,
        "recipient": room,
        "channel": "chat",
        "redaction": True,
    }
    assert not [e for e in vol.events(room) if e.get("type") == "m.room.redaction"]

    await set_redaction_level(vol, room, 0)
    retried = await asyncio.to_thread(inst.run_cli, "outbox", "retry", str(row_id))
    assert retried.returncode == 0, retried.stderr
    assert retried.stdout.startswith(f"chat {row_id} (redact, suport#1) is due again"), retried
    await all_redacted(vol, room, events)
    await vol.wait_for(
        room,
        lambda e: (
            sender_of(e) == bot
            and "Es torna a provar d'eliminar del xat els missatges sobre suport#1"
            in (body_of(e) or "")
        ),
        what="the retry's note in the thread",
    )

    async def sent() -> bool:
        return inst.query(redact_row)[0][1] == "sent"

    await wait_until(sent, what="the redactions marked sent")
    assert inst.scalar("SELECT count(*) FROM chat_posts WHERE outbox_id = :i", i=row_id) == len(
        events
    )
