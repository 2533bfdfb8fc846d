"""`exobot privacy erase` beside a running exobot on the real stack: the bot's Matrix posts
about the person's ticket are redacted on Synapse, once, and the volunteer's client sees them
redacted; a second run finds nothing."""

from __future__ import annotations

import asyncio

import pytest
from harness import member_mail, unique, wait_until
from matrix_harness import body_of, sender_of, thread_root_of

pytestmark = pytest.mark.asyncio

PHRASE = "purple giraffe under the stairs"


def redacts(event: dict) -> str | None:
    """The event a redaction event redacts (top level before room v11, in content after)."""
    return event.get("redacts") or (event.get("content") or {}).get("redacts")


async def test_erase_redacts_the_bots_posts_once(make_instance, matrix_setup, volunteer):
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
        lambda e: sender_of(e) == setup.bot_user_id and thread_root_of(e) is None
        and "suport#1" in (body_of(e) or ""),
        what="the root message",
    )
    assert root["event_id"] in events
    await vol.wait_for(
        room, lambda e: PHRASE in (body_of(e) or ""), what="the mail text in the thread"
    )

    result = await asyncio.to_thread(inst.run_cli, "privacy", "erase", member)
    assert result.returncode == 0, result.stderr
    assert f"matrix posts: {len(events)}" in result.stdout, result.stdout

    # The running bot carries the redact row out (its chat worker polls the outbox).
    for event_id in events:
        await vol.wait_for(
            room,
            lambda e, event_id=event_id: e.get("type") == "m.room.redaction"
            and redacts(e) == event_id,
            what=f"the redaction of {event_id}",
        )
    response = await vol.client.room_get_event(room, root["event_id"])
    source = response.event.source
    assert source["unsigned"].get("redacted_because"), source
    assert not source.get("content"), source
    reasons = {
        (e.get("content") or {}).get("reason")
        for e in vol.events(room)
        if e.get("type") == "m.room.redaction"
    }
    assert reasons == {"Eliminat a petició de la persona a qui feia referència (protecció de dades)."}

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
    inst.app.poster.wake.set()
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
