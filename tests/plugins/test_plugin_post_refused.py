"""A chat post the homeserver refuses for good is given up at once and recorded on its ticket.

A plugin's note longer than Synapse's event limit (64 KiB) can never be posted: the refusal
(M_TOO_LARGE) gives the row up at its first attempt instead of retrying it ten times over 43
minutes. The loss is recorded on the ticket, where volunteers see it (the web page,
`!history`), and, like any change, announced in the ticket's thread. A report that is given up
in turn is only logged, never reported again (that could go round for ever). On the real stack:
Synapse, the bot, the outbox.
"""

from __future__ import annotations

import json

import pytest
from harness import member_mail, unique, wait_until
from matrix_harness import body_of, sender_of, thread_root_of

from exobot.delivery import PermanentFailure

pytestmark = pytest.mark.integration

# Over Synapse's 65,536 bytes for a whole event, whatever its envelope.
TOO_LONG = "pèrdua de paquets a 10.1.2.3 " * 3000


def _chat_rows(inst, number: int) -> list[tuple[int, str, int, str | None, dict]]:  # noqa: ANN001
    rows = inst.query(
        "SELECT id, state, attempts, last_error, payload FROM outbox"
        " WHERE kind = 'chat' AND ticket_id = :n ORDER BY id",
        n=number,
    )
    return [(i, s, a, e, json.loads(p) if isinstance(p, str) else p) for i, s, a, e, p in rows]


def _failures(inst, number: int) -> list[tuple[str, str, dict]]:  # noqa: ANN001
    rows = inst.query(
        "SELECT actor, body, data FROM entries"
        " WHERE ticket_id = :n AND kind = 'delivery_failed' ORDER BY id",
        n=number,
    )
    return [(a, b, json.loads(d) if isinstance(d, str) else d) for a, b, d in rows]


async def _ticket_in_chat(make_plugin_instance, matrix_setup, volunteer):  # noqa: ANN001, ANN202
    """exobot with the sample plugin and Matrix, a volunteer in #suport, and a member's ticket
    whose root is posted there: (setup, instance, app, plugin context, volunteer, ticket
    number, root event id)."""
    setup = matrix_setup()
    inst = make_plugin_instance({"sample": {}}, matrix=setup)
    app = await inst.start()
    ctx = app.plugins.context("sample")
    assert ctx is not None, app.plugins.disabled
    vol = await volunteer(setup)
    subject = unique("Sense connexió")
    await inst.send(member_mail(unique("membre"), inst.address, subject=subject))
    await inst.wait_tickets(1)
    number = inst.scalar("SELECT max(id) FROM tickets")
    root = await vol.wait_for(
        setup.rooms["suport"],
        lambda e: sender_of(e) == setup.bot_user_id and subject in (body_of(e) or ""),
        what="the ticket's root",
    )
    await inst.wait_outbox_idle()
    return setup, inst, app, ctx, vol, number, root["event_id"]


async def test_a_post_the_homeserver_refuses_is_given_up_at_once_and_shown_on_its_ticket(
    sample_installed, make_plugin_instance, matrix_setup, volunteer
):
    setup, inst, _app, ctx, vol, number, root = await _ticket_in_chat(
        make_plugin_instance, matrix_setup, volunteer
    )
    room, bot = setup.rooms["suport"], setup.bot_user_id

    def in_thread(e: dict) -> bool:
        return sender_of(e) == bot and thread_root_of(e) == root

    mark = vol.mark(room)
    await ctx.post_to_thread(number, TOO_LONG)
    report = await vol.wait_for(
        room,
        lambda e: in_thread(e) and "M_TOO_LARGE" in (body_of(e) or ""),
        after=mark,
        what="the report of the refused note in the ticket's thread",
    )
    await inst.wait_outbox_idle()

    # Given up at its first attempt, with the homeserver's reason.
    [note] = [r for r in _chat_rows(inst, number) if r[4].get("type") == "thread_post"]
    _, state, attempts, error, _ = note
    assert (state, attempts) == ("failed", 1), note[:4]
    assert error.startswith("the homeserver refused the message:") and "(M_TOO_LARGE)" in error

    # Recorded once on the ticket, by exobot's chat worker, naming the row and the room.
    [(actor, body, data)] = _failures(inst, number)
    assert actor == "chat"
    assert body == error
    assert data == {"outbox_id": note[0], "recipient": room, "channel": "chat"}

    # Announced in the thread (in Catalan, the deployment's language), pinging nobody; the
    # too-long note itself never reached the room.
    text = body_of(report)
    assert text.startswith(f"⚠️ No s'ha pogut publicar al xat un missatge sobre suport#{number}:")
    assert report["content"].get("m.mentions", {}) == {}
    assert not any("pèrdua de paquets" in (body_of(e) or "") for e in vol.events(room)[mark:])

    # `!history` lists it among the ticket's changes.
    mark = vol.mark(room)
    await vol.send(room, f"!history suport#{number}", thread_root=root)
    history = await vol.wait_for(
        room,
        lambda e: sender_of(e) == bot and "M_TOO_LARGE" in (body_of(e) or ""),
        after=mark,
        what="the history listing the report",
    )
    assert "No s'ha pogut publicar al xat" in body_of(history)


async def test_a_report_that_is_given_up_in_turn_is_not_reported_again(
    sample_installed, make_plugin_instance, matrix_setup, volunteer
):
    _setup, inst, app, ctx, _vol, number, _root = await _ticket_in_chat(
        make_plugin_instance, matrix_setup, volunteer
    )

    # Every post about this ticket is now refused for good, the report's too.
    poster = app.poster
    real_post_part = poster._post_part
    refused: list[int] = []

    async def refuse(part, number_, room_id, event_type, content, **also):  # noqa: ANN001, ANN003
        refused.append(part.row)
        raise PermanentFailure("the homeserver refused the message: refused (M_TOO_LARGE)")

    poster._post_part = refuse
    try:
        await ctx.post_to_thread(number, "una nota")

        async def settled() -> bool:
            rows = _chat_rows(inst, number)
            return len(rows) >= 3 and all(r[1] == "failed" for r in rows[-2:])

        await wait_until(settled, what="the note and its report both given up")
        await inst.wait_outbox_idle()
    finally:
        poster._post_part = real_post_part

    rows = _chat_rows(inst, number)
    note, report = rows[-2], rows[-1]
    assert note[4]["type"] == "thread_post" and report[4]["type"] == "ticket"
    assert refused == [note[0], report[0]]
    # One report on the ticket, of the note; the report's own loss is only in the log.
    [(_, _, data)] = _failures(inst, number)
    assert data["outbox_id"] == note[0]
    assert len(_chat_rows(inst, number)) == len(rows)
