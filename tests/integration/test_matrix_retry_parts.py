"""A chat row that must post the ticket's root first keeps its parts' numbers on a retry.

A row for a ticket without a thread (created before chat was configured, say) posts the root
as its part 1 and the announcement as part 2. When the send of part 2 fails, the retry finds
the thread recorded by the first attempt and posts no root: the announcement must still be
part 2 (part 1 is recorded as done, so numbering it 1 would skip it and lose the
announcement). Tested on Synapse with the send of part 2 failing once.
"""

from __future__ import annotations

import asyncio

import pytest
from harness import member_mail, unique, wait_until
from matrix_harness import body_of, sender_of, thread_root_of

from exobot.core.intents import Comment
from exobot.core.model import Actor

pytestmark = pytest.mark.integration


async def test_the_announcement_after_a_late_root_survives_a_failed_send(
    make_instance, matrix_setup, volunteer
):
    setup = matrix_setup()
    inst = make_instance(matrix=setup)
    app = await inst.start()
    vol = await volunteer(setup)
    room, bot = setup.rooms["suport"], setup.bot_user_id

    await inst.send(member_mail(unique("member"), inst.address, subject="Late root"))
    await inst.wait_tickets(1)
    number = inst.scalar("SELECT id FROM tickets")
    await vol.wait_for(
        room,
        lambda e: sender_of(e) == bot and f"suport#{number}" in (body_of(e) or ""),
        what="the first root",
    )
    await inst.wait_outbox_idle()
    # The ticket as if it had been created before chat was configured: no thread on record.
    await asyncio.to_thread(inst.query, "DELETE FROM chat_threads WHERE ticket_id = :n", n=number)

    poster = app.poster
    real_post_part = poster._post_part
    failed: list[int] = []

    async def fail_part_two_once(part, number_, room_id, event_type, content, **also):  # noqa: ANN001, ANN003
        if number_ == 2 and not failed:
            failed.append(part.row)
            raise ConnectionError("the homeserver went away (test)")
        return await real_post_part(part, number_, room_id, event_type, content, **also)

    poster._post_part = fail_part_two_once
    note = unique("a volunteer's note")
    await app.service.apply(Actor.operator(setup.volunteer_user_id), Comment(number, note))

    announced = await vol.wait_for(
        room,
        lambda e: sender_of(e) == bot and note in (body_of(e) or ""),
        what="the comment's announcement after the retry",
    )
    assert failed, "the send of part 2 never failed: the test did not test the retry"
    row = failed[0]

    async def sent() -> bool:
        return inst.scalar("SELECT state FROM outbox WHERE id = :r", r=row) == "sent"

    await wait_until(sent, what="the row sent")
    roots = inst.query("SELECT root_event_id FROM chat_threads WHERE ticket_id = :n", n=number)
    assert len(roots) == 1
    assert thread_root_of(announced) == roots[0][0]
    parts = inst.query(
        "SELECT part, event_id FROM chat_posts WHERE outbox_id = :r ORDER BY part", r=row
    )
    assert [p for p, _ in parts] == [1, 2]
    assert parts[0][1] == roots[0][0] and parts[1][1] == announced["event_id"]
    shown = [e for e in vol.events(room) if note in (body_of(e) or "")]
    assert len(shown) == 1
