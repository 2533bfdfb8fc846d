"""Volunteers operate tickets from Matrix: real Synapse, Dovecot and SMTP, exobot in-process."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest
from harness import Instance, member_mail, unique, wait_until
from matrix_harness import MatrixUser, body_of, sender_of, thread_root_of

pytestmark = pytest.mark.asyncio


@dataclass
class Chat:
    """One exobot with Matrix, its rooms and a logged-in volunteer."""

    inst: Instance
    setup: object
    vol: MatrixUser

    @property
    def bot_id(self) -> str:
        return self.setup.bot_user_id

    def room(self, queue: str = "suport") -> str:
        return self.setup.rooms[queue]

    def bot_events(self, queue: str = "suport", after: int = 0) -> list[dict]:
        return [e for e in self.vol.events(self.room(queue))[after:] if sender_of(e) == self.bot_id]

    async def bot_says(self, predicate, queue: str = "suport", after: int = 0, what: str = "") -> dict:
        """Wait for a bot message in the queue's room satisfying predicate."""
        return await self.vol.wait_for(
            self.room(queue),
            lambda e: sender_of(e) == self.bot_id and e.get("type") == "m.room.message"
            and predicate(e),
            after=after,
            timeout=20,
            what=what or "a bot message",
        )

    async def mail_ticket(self, member: str | None = None, **mail) -> tuple[int, str, str]:
        """A member's mail becomes a ticket; returns its number, its root event id and the
        member's address."""
        member = member or unique("membre")
        before = self.inst.scalar("SELECT count(*) FROM tickets")
        await self.inst.send(member_mail(member, self.inst.address, **mail))
        await self.inst.wait_tickets(before + 1)
        number = self.inst.scalar("SELECT max(id) FROM tickets")
        root = await self.bot_says(
            lambda e: f"suport#{number}" in (body_of(e) or "") and thread_root_of(e) is None,
            what=f"the root message of suport#{number}",
        )
        return number, root["event_id"], member

    async def command(self, text: str, *, thread: str | None = None, queue: str = "suport"):
        """Send a command; returns (event id, mark) where mark precedes the bot's answers."""
        mark = self.vol.mark(self.room(queue))
        event_id = await self.vol.send(self.room(queue), text, thread_root=thread)
        return event_id, mark

    def ticket(self, number: int) -> tuple:
        return self.inst.query(
            "SELECT status, owner, queue, title FROM tickets WHERE id = :n", n=number
        )[0]


@pytest.fixture
async def chat(make_instance, matrix_setup, volunteer) -> Chat:
    setup = matrix_setup()
    inst = make_instance(matrix=setup)
    await inst.start()
    vol = await volunteer(setup)
    return Chat(inst, setup, vol)


def in_thread(root: str):
    return lambda e: thread_root_of(e) == root


async def test_the_whole_loop(chat: Chat):
    number, root, member = await chat.mail_ticket(
        subject="No em funciona internet", body="Hola, des d'ahir no tinc connexió."
    )
    root_event = chat.vol.event(root)
    assert "No em funciona internet" in body_of(root_event)
    assert member in body_of(root_event)
    assert "des d'ahir no tinc connexió" in body_of(root_event)
    assert root_event["content"]["msgtype"] == "m.notice"

    # !take in the room's main timeline: owner, open, announced in the thread.
    _, mark = await chat.command(f"!take suport#{number}")
    taken = await chat.bot_says(in_thread(root), after=mark, what="the take announcement")
    assert chat.setup.volunteer_user_id in body_of(taken)
    assert chat.ticket(number)[:2] == ("open", chat.setup.volunteer_user_id)

    # !reply (multi-line) from inside the thread: the member gets it with [suport#N].
    _, mark = await chat.command("!reply Hola,\nja està arreglat.\nSalut", thread=root)
    await chat.bot_says(in_thread(root), after=mark, what="the reply confirmation")
    mails = await chat.inst.wait_mailbox(member, 2)  # the acknowledgement and the reply
    reply = next(m for m in mails if "ja està arreglat" in m.get_content())
    assert f"[suport#{number}]" in reply["Subject"]
    assert "Hola,\nja està arreglat.\nSalut" in reply.get_content().replace("\r\n", "\n")

    # The member answers: it shows in the thread.
    mark = chat.vol.mark(chat.room())
    answer = member_mail(
        member,
        chat.inst.address,
        subject=f"Re: {reply['Subject']}",
        body="Gràcies! Ara funciona.",
        In_Reply_To=reply["Message-ID"],
    )
    await chat.inst.send(answer)
    seen = await chat.bot_says(
        lambda e: in_thread(root)(e) and "Ara funciona" in body_of(e),
        after=mark,
        what="the member's answer in the thread",
    )
    assert seen["content"]["m.mentions"] == {}

    # !comment is never emailed.
    _, mark = await chat.command("!comment nota interna: router canviat", thread=root)
    await chat.bot_says(in_thread(root), after=mark, what="the comment confirmation")
    await chat.inst.wait_outbox_idle()
    assert not any("router canviat" in m.get_content() for m in chat.inst.mailbox(member))
    comments = chat.inst.query("SELECT body FROM entries WHERE kind = 'comment'")
    assert ("nota interna: router canviat",) in comments

    # Every bot post about the ticket after its root is in the root's thread.
    posts = [
        e for e in chat.bot_events()
        if e["event_id"] != root and e.get("type") == "m.room.message"
    ]
    assert len(posts) >= 4
    for post in posts:
        relates = post["content"]["m.relates_to"]
        assert (relates["rel_type"], relates["event_id"]) == ("m.thread", root)


async def test_move_posts_a_new_root_and_a_pointer(chat: Chat):
    number, root, _ = await chat.mail_ticket(subject="Vull donar-me de baixa")
    mark_tres = chat.vol.mark(chat.room("tresoreria"))
    _, mark = await chat.command(f"!move suport#{number} tresoreria")
    pointer = await chat.bot_says(
        lambda e: in_thread(root)(e) and "tresoreria" in body_of(e), after=mark, what="pointer"
    )
    assert f"suport#{number}" in body_of(pointer) or "tresoreria" in body_of(pointer)
    new_root = await chat.bot_says(
        lambda e: thread_root_of(e) is None and f"suport#{number}" in body_of(e),
        queue="tresoreria",
        after=mark_tres,
        what="the new root in tresoreria",
    )
    assert "Vull donar-me de baixa" in body_of(new_root)
    assert chat.ticket(number)[2] == "tresoreria"
    # Later posts go to the new root's thread; the command works there without reference.
    _, mark = await chat.command("!comment ho mira tresoreria", thread=new_root["event_id"],
                                 queue="tresoreria")
    await chat.bot_says(in_thread(new_root["event_id"]), queue="tresoreria", after=mark)


async def test_stalled_then_member_mail_reopens(chat: Chat):
    number, root, member = await chat.mail_ticket()
    _, mark = await chat.command("!status stalled", thread=root)
    await chat.bot_says(in_thread(root), after=mark, what="the status change")
    assert chat.ticket(number)[0] == "stalled"
    mark = chat.vol.mark(chat.room())
    await chat.inst.send(
        member_mail(member, chat.inst.address, subject=f"Re: [suport#{number}] hola",
                    body="Encara no funciona")
    )
    await chat.bot_says(
        lambda e: in_thread(root)(e) and "Encara no funciona" in body_of(e), after=mark
    )
    await wait_until(
        lambda: asyncio.sleep(0, chat.ticket(number)[0] == "open"), what="the ticket reopened"
    )


async def test_catalan_aliases_and_status_shortcuts(chat: Chat):
    number, root, _ = await chat.mail_ticket()
    _, mark = await chat.command(f"!agafa {number}")
    await chat.bot_says(in_thread(root), after=mark)
    _, mark = await chat.command("!titol Router de la Marta sense connexió", thread=root)
    await chat.bot_says(in_thread(root), after=mark)
    _, mark = await chat.command("!resol", thread=root)
    await chat.bot_says(in_thread(root), after=mark)
    status, owner, _queue, title = chat.ticket(number)
    assert (status, owner, title) == (
        "resolved", chat.setup.volunteer_user_id, "Router de la Marta sense connexió"
    )


async def test_bad_references_and_arguments_are_answered_clearly(chat: Chat):
    number, root, _ = await chat.mail_ticket()
    before = chat.inst.query("SELECT count(*) FROM entries")
    cases = [
        ("!take suport#99999", "suport#99999"),  # unknown ticket
        (f"!status suport#{number} volant", "volant"),  # bad status
        (f"!move suport#{number} enlloc", "enlloc"),  # unknown queue
        (f"!reply suport#{number}", "!"),  # missing text
        ("!take", "!"),  # no reference outside a thread
        ("!vola suport#1", "vola"),  # unknown command
    ]
    for text, expected in cases:
        event_id, mark = await chat.command(text)
        answer = await chat.bot_says(
            lambda e, event_id=event_id: (e["content"].get("m.relates_to") or {})
            .get("m.in_reply_to", {}).get("event_id") == event_id,
            after=mark,
            what=f"the answer to {text!r}",
        )
        assert expected in body_of(answer), (text, body_of(answer))
    assert chat.inst.query("SELECT count(*) FROM entries") == before
    assert chat.ticket(number)[0] == "new"


async def test_a_non_operator_is_refused_and_nothing_changes(chat: Chat, matrix_login, stack):
    number, root, _ = await chat.mail_ticket()
    # A second configured operator list excludes the volunteer: restart with operators set.
    await chat.inst.stop()
    chat.inst.config.matrix.operators = ["@ningu:localhost"]
    await chat.inst.start()
    _, mark = await chat.command(f"!take suport#{number}")
    refusal = await chat.bot_says(lambda e: True, after=mark, what="the refusal")
    assert "operador" in body_of(refusal).lower() or "operator" in body_of(refusal).lower()
    _, mark = await chat.command("una nota qualsevol", thread=root)
    await asyncio.sleep(1.5)
    assert chat.ticket(number)[:2] == ("new", None)
    assert chat.inst.query("SELECT count(*) FROM entries WHERE kind = 'comment'") == [(0,)]


async def test_plain_messages_in_a_thread_become_comments_and_edits_do_nothing(chat: Chat):
    number, root, _ = await chat.mail_ticket()
    event_id, mark = await chat.command("el veí diu que també li passa", thread=root)
    await chat.vol.wait_for(
        chat.room(),
        lambda e: e.get("type") == "m.reaction"
        and e["content"]["m.relates_to"]["event_id"] == event_id,
        after=mark,
        what="the reaction to the comment",
    )
    rows = chat.inst.query("SELECT body FROM entries WHERE kind = 'comment'")
    assert rows == [("el veí diu que també li passa",)]
    # An edit of a command is never run.
    take_id, mark = await chat.command(f"!show suport#{number}")
    await chat.bot_says(lambda e: True, after=mark)
    mark = chat.vol.mark(chat.room())
    await chat.vol.edit(chat.room(), take_id, f"!take suport#{number}")
    _, probe = await chat.command(f"!show suport#{number}")
    await chat.bot_says(lambda e: True, after=probe)
    assert chat.ticket(number)[1] is None


async def test_restart_reruns_nothing_and_the_next_command_works(chat: Chat):
    number, root, _ = await chat.mail_ticket()
    _, mark = await chat.command("!comment abans de reiniciar", thread=root)
    await chat.bot_says(in_thread(root), after=mark)
    devices = chat.inst.query("SELECT count(*) FROM handled_keys")
    await chat.inst.stop()
    await chat.inst.start()
    _, mark = await chat.command("!comment després de reiniciar", thread=root)
    await chat.bot_says(in_thread(root), after=mark)
    comments = [r[0] for r in chat.inst.query("SELECT body FROM entries WHERE kind='comment'")]
    assert comments == ["abans de reiniciar", "després de reiniciar"]
    assert chat.inst.query("SELECT count(*) FROM handled_keys")[0][0] == devices[0][0] + 1


async def test_alert_for_a_new_ticket_and_none_after_take(make_instance, matrix_setup, volunteer):
    setup = matrix_setup()
    inst = make_instance(
        matrix=setup, alerts={"new_after": "2s", "repeat_every": "1h", "sweep_every": "1s"}
    )
    await inst.start()
    chat = Chat(inst, setup, await volunteer(setup))
    number, root, _ = await chat.mail_ticket()
    alert = await chat.bot_says(
        lambda e: in_thread(root)(e) and "⚠" in body_of(e) or "espera" in (body_of(e) or ""),
        what="the alert",
    )
    assert thread_root_of(alert) == root or thread_root_of(alert) is None
    await chat.bot_says(
        lambda e: thread_root_of(e) is None and f"suport#{number}" in body_of(e)
        and e["event_id"] != root,
        what="the alert line in the room",
    )
    other, other_root, _ = await chat.mail_ticket()
    _, mark = await chat.command("!take", thread=other_root)
    await chat.bot_says(in_thread(other_root), after=mark)
    await asyncio.sleep(3.5)
    alerts = inst.query("SELECT ticket_id FROM entries WHERE kind = 'alert'")
    assert (number,) in alerts and (other,) not in alerts
