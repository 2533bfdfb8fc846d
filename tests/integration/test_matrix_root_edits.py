"""Root messages kept current on the real Synapse: a burst of changes makes one edit
(m.replace), due the configured delay after the last one, showing the final state; a reopened ticket is
marked; a root edit delivered again (a crash before it was recorded) edits nothing twice;
`!move` says who moved the ticket and links the new root."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime, timedelta

import pytest
from harness import member_mail, wait_until
from matrix_harness import body_of, is_edit, sender_of
from test_matrix_flow import Chat, in_thread

from exobot.i18n import say

pytestmark = pytest.mark.asyncio

BURST_DELAY = timedelta(minutes=10)


@pytest.fixture
async def chat(make_instance, matrix_setup, volunteer) -> Chat:
    setup = matrix_setup()
    inst = make_instance(matrix=setup)
    await inst.start()
    vol = await volunteer(setup)
    return Chat(inst, setup, vol)


def edits_of(chat: Chat, root: str, queue: str = "suport", after: int = 0) -> list[dict]:
    """The bot's edits of `root` in the queue's room, oldest first."""
    return [
        e
        for e in chat.vol.events(chat.room(queue))[after:]
        if sender_of(e) == chat.bot_id
        and is_edit(e)
        and e["content"]["m.relates_to"]["event_id"] == root
    ]


def shown(edit: dict) -> str:
    """What a client shows for the edited message."""
    return edit["content"]["m.new_content"]["body"]


def root_edit_rows(chat: Chat, number: int) -> list[tuple]:
    return chat.inst.query(
        "SELECT id, state FROM outbox WHERE kind = 'chat' AND ticket_id = :n"
        " AND template = 'later:root_edit' ORDER BY id",
        n=number,
    )


async def wait_edits(chat: Chat, root: str, count: int, queue: str = "suport") -> list[dict]:
    async def arrived() -> list[dict] | None:
        edits = edits_of(chat, root, queue)
        return edits if len(edits) >= count else None

    return await wait_until(arrived, what=f"{count} edit(s) of the root {root}")


def _stamp(value: str) -> datetime:
    when = datetime.fromisoformat(value)
    return when if when.tzinfo else when.replace(tzinfo=UTC)


async def test_a_burst_of_five_changes_makes_one_edit_with_the_final_state(chat: Chat):
    # The delay made long here, so that however slowly a busy machine answers the five
    # commands, none of them finds the edit already due: the test then makes it due itself.
    # That the default is 5 s after the last change is tested with the fake clock
    # (tests/core/test_service_chat.py).
    service = chat.inst.app.service
    service.settings = dataclasses.replace(service.settings, root_edit_after=BURST_DELAY)
    number, root, _member = await chat.mail_ticket(subject="Sense connexió")
    first = body_of(chat.vol.event(root))
    assert f"⏳ {say('ca', 'waiting for us')}" in first  # nothing answered yet
    assert f"{say('ca', 'nobody')}" in first

    # Five commands typed in a row, without waiting for the answers in between.
    mark = chat.vol.mark(chat.room())
    for text in (
        "!take",
        "!title Fibra caiguda a Gràcia",
        "!reply Hola, ho mirem avui mateix.",
        "!stall",
        "!open",
    ):
        await chat.vol.send(chat.room(), text, thread_root=root)

    async def answered() -> bool:
        return len([e for e in chat.bot_events(after=mark) if in_thread(root)(e)]) >= 5

    await wait_until(answered, what="the five answers")

    # One row stands for all five changes, due BURST_DELAY after the last one.
    [(row_id, state)] = root_edit_rows(chat, number)
    assert state == "pending" and edits_of(chat, root) == []
    last_change = _stamp(
        chat.inst.scalar("SELECT max(created_at) FROM entries WHERE ticket_id = :n", n=number)
    )
    due = _stamp(chat.inst.scalar("SELECT next_try_at FROM outbox WHERE id = :r", r=row_id))
    assert due == last_change + BURST_DELAY

    await chat.settle()  # makes it due now and waits for it
    [edit] = edits_of(chat, root)
    assert [state for _id, state in root_edit_rows(chat, number)] == ["sent"]
    body = shown(edit)
    assert body.startswith(f"suport#{number} · Fibra caiguda a Gràcia")
    status, owner_queue_waiting = body.split("\n")[1].split(" · ", 1)
    assert say("ca", "open") in status and "🔄" not in status
    assert chat.setup.volunteer_user_id.split(":")[0][1:] in owner_queue_waiting
    assert f"✉️ {say('ca', 'waiting for the member')}" in owner_queue_waiting
    assert edit["content"]["m.mentions"] == {}
    assert edit["content"]["m.new_content"]["m.mentions"] == {}


async def test_a_reopened_ticket_is_marked_and_a_resent_edit_edits_nothing_twice(chat: Chat):
    number, root, member = await chat.mail_ticket(subject="El router parpelleja")
    _, mark = await chat.command("!resolve", thread=root)
    await chat.bot_says(in_thread(root), after=mark, what="the resolve confirmation")
    await chat.settle()  # the root edit made due now and delivered
    [resolved] = edits_of(chat, root)
    assert f"✅ {say('ca', 'resolved')}" in shown(resolved)
    assert "⏳" not in shown(resolved) and "✉️" not in shown(resolved)

    # The member writes again: the ticket reopens, its root says so and that it is our move.
    await chat.inst.send(
        member_mail(
            member,
            chat.inst.address,
            subject=f"Re: [suport#{number}] El router parpelleja",
            body="Torna a passar.",
        )
    )

    async def reopened_now() -> bool:
        return chat.ticket(number)[0] == "open"

    await wait_until(reopened_now, what="the reopening")
    await chat.settle()
    reopened = edits_of(chat, root)[-1]
    assert f"🔄 {say('ca', 'reopened')}" in shown(reopened)
    assert f"⏳ {say('ca', 'waiting for us')}" in shown(reopened)
    assert len(edits_of(chat, root)) == 2

    # The last edit's row delivered again as after a crash before its post was recorded: the
    # same transaction id makes Synapse return the first event, so nothing is edited twice.
    row_id = root_edit_rows(chat, number)[-1][0]
    [(event_id,)] = chat.inst.query(
        "SELECT event_id FROM chat_posts WHERE outbox_id = :i", i=row_id
    )
    assert event_id == reopened["event_id"]
    await asyncio.to_thread(
        chat.inst.query, "DELETE FROM chat_posts WHERE outbox_id = :i", i=row_id
    )
    await asyncio.to_thread(
        chat.inst.query, "UPDATE outbox SET state = 'pending' WHERE id = :i", i=row_id
    )
    chat.inst.app.poster.wake.set()
    await chat.settle()
    assert chat.inst.query("SELECT event_id FROM chat_posts WHERE outbox_id = :i", i=row_id) == [
        (event_id,)
    ]
    mark = chat.vol.mark(chat.room())
    await chat.command("!show", thread=root)  # a later message proves the sync caught up
    await chat.bot_says(in_thread(root), after=mark, what="the answer to !show")
    assert len(edits_of(chat, root)) == 2


async def test_move_says_who_and_links_the_new_root(chat: Chat):
    number, root, _ = await chat.mail_ticket(subject="Canvi de quota")
    mark_tres = chat.vol.mark(chat.room("tresoreria"))
    _, mark = await chat.command(f"!move suport#{number} tresoreria", thread=root)
    new_root = await chat.bot_says(
        lambda e: f"suport#{number}" in body_of(e) and "m.relates_to" not in e["content"],
        queue="tresoreria",
        after=mark_tres,
        what="the new root in tresoreria",
    )
    pointer = await chat.bot_says(
        lambda e: in_thread(root)(e) and "matrix.to" in body_of(e), after=mark, what="pointer"
    )
    new_id = new_root["event_id"]
    via = chat.bot_id.partition(":")[2]
    assert f"/{new_id}?via={via}" in body_of(pointer)
    assert (
        f'<a href="https://matrix.to/#/{chat.room("tresoreria")}/{new_id}'
        in (pointer["content"]["formatted_body"])
    )
    assert chat.setup.volunteer_user_id.split(":")[0][1:] in body_of(pointer)  # who moved it
    [old_root] = await wait_edits(chat, root, 1)
    assert f"/{new_id}?via={via}" in shown(old_root)  # the old room says where it went
    assert "tresoreria" in shown(old_root)
