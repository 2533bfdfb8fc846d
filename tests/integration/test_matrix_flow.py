"""Volunteers operate tickets from Matrix: real Synapse, Dovecot and SMTP, exobot in-process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

import nio
import pytest
from clocks import ShiftedClock
from harness import Instance, member_mail, unique, wait_until
from matrix_harness import (
    MatrixUser,
    body_of,
    is_edit,
    is_room_notice,
    reply_to_of,
    sender_of,
    thread_root_of,
)

from exobot.i18n import say
from exobot.matrix import client as matrix_client
from exobot.matrix.render import Renderer

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
        return [
            e
            for e in self.vol.events(self.room(queue))[after:]
            if sender_of(e) == self.bot_id
            and e.get("type") == "m.room.message"
            and not is_room_notice(e)  # the unencrypted room's warning, said at start
            and not is_edit(e)  # a root message kept current, not a new message
        ]

    async def bot_says(
        self, predicate, queue: str = "suport", after: int = 0, what: str = ""
    ) -> dict:
        """Wait for a bot message in the queue's room satisfying predicate."""
        return await self.vol.wait_for(
            self.room(queue),
            lambda e: (
                sender_of(e) == self.bot_id
                and e.get("type") == "m.room.message"
                and not is_room_notice(e)
                and not is_edit(e)
                and predicate(e)
            ),
            after=after,
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
        await self.settle()
        return number, root["event_id"], member

    async def settle(self) -> None:
        """Wait until exobot has posted everything it queued for chat and the volunteer's
        client has received it. On a busy machine a ticket's later posts (the text of a mail
        or of `!new`) can arrive after the root: without this, they would land after the
        next command's mark and pass for its answer."""
        rooms = set(self.setup.rooms.values()) & set(self.vol.client.rooms)

        async def delivered() -> bool:
            await asyncio.to_thread(self.hurry_root_edits)
            pending = "SELECT count(*) FROM outbox WHERE kind = 'chat' AND state = 'pending'"
            if self.inst.scalar(pending):
                return False
            seen = {e["event_id"] for room in rooms for e in self.vol.events(room)}
            posts = self.inst.query("SELECT room_id, event_id FROM chat_posts")
            return all(event in seen for room, event in posts if room in rooms)

        await wait_until(delivered, what="exobot's chat posts to reach the volunteer")

    def hurry_root_edits(self) -> None:
        """Make the pending root edits (due 5 s after a ticket's last change) due now, so a
        settled room also shows them before the next command's mark."""
        self.inst.query(
            "UPDATE outbox SET next_try_at = created_at"
            " WHERE kind = 'chat' AND state = 'pending' AND template LIKE 'later:%'"
        )
        if self.inst.app is not None and self.inst.app.poster is not None:
            self.inst.app.poster.wake.set()

    async def command(self, text: str, *, thread: str | None = None, queue: str = "suport"):
        """Send a command; returns (event id, mark) where mark precedes the bot's answers
        (and follows everything exobot posted before, while it runs)."""
        if self.inst.app is not None:
            await self.settle()
        mark = self.vol.mark(self.room(queue))
        event_id = await self.vol.send(self.room(queue), text, thread_root=thread)
        return event_id, mark

    def ticket(self, number: int) -> tuple:
        return self.inst.query(
            "SELECT status, owner, queue, title FROM tickets WHERE id = :n", n=number
        )[0]

    async def wait_ticket(self, number: int, status: str, owner: str | None) -> None:
        """Wait until the ticket has this status and owner. A bot message in the thread is
        not proof of a change: on a busy machine an earlier post (the text of `!new`) may
        arrive after the command was sent."""

        async def settled() -> bool:
            return self.ticket(number)[:2] == (status, owner)

        await wait_until(settled, what=f"suport#{number} to be {status}, owner {owner}")


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
    # Named by display name (Synapse's default: the localpart), not by the raw id.
    assert chat.setup.volunteer_user_id.split(":")[0][1:] in body_of(taken)
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
        e for e in chat.bot_events() if e["event_id"] != root and e.get("type") == "m.room.message"
    ]  # (the root's edits are not posts: bot_events leaves them out)
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
    assert f"suport#{number}" in body_of(pointer)
    new_root = await chat.bot_says(
        lambda e: thread_root_of(e) is None and f"suport#{number}" in body_of(e),
        queue="tresoreria",
        after=mark_tres,
        what="the new root in tresoreria",
    )
    assert "Vull donar-me de baixa" in body_of(new_root)
    assert chat.ticket(number)[2] == "tresoreria"
    # Later posts go to the new root's thread; the command works there without reference.
    _, mark = await chat.command(
        "!comment ho mira tresoreria", thread=new_root["event_id"], queue="tresoreria"
    )
    await chat.bot_says(in_thread(new_root["event_id"]), queue="tresoreria", after=mark)


async def test_stalled_then_member_mail_reopens(chat: Chat):
    number, root, member = await chat.mail_ticket()
    _, mark = await chat.command("!status stalled", thread=root)
    await chat.bot_says(in_thread(root), after=mark, what="the status change")
    assert chat.ticket(number)[0] == "stalled"
    mark = chat.vol.mark(chat.room())
    await chat.inst.send(
        member_mail(
            member,
            chat.inst.address,
            subject=f"Re: [suport#{number}] hola",
            body="Encara no funciona",
        )
    )
    await chat.bot_says(
        lambda e: in_thread(root)(e) and "Encara no funciona" in body_of(e), after=mark
    )
    # The mail's post is written in the transaction that reopened the ticket.
    assert chat.ticket(number)[0] == "open"


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
        "resolved",
        chat.setup.volunteer_user_id,
        "Router de la Marta sense connexió",
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
            lambda e, event_id=event_id: reply_to_of(e) == event_id,
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
    assert body_of(refusal) == say(
        "ca", "Sorry, only the support team's operators can use exobot's commands."
    )
    _, mark = await chat.command("una nota qualsevol", thread=root)
    await asyncio.sleep(1.5)
    assert chat.ticket(number)[:2] == ("new", None)
    assert chat.inst.query("SELECT count(*) FROM entries WHERE kind = 'comment'") == [(0,)]


async def test_plain_messages_in_a_thread_become_comments_and_edits_do_nothing(chat: Chat):
    number, root, _ = await chat.mail_ticket()
    event_id, mark = await chat.command("el veí diu que també li passa", thread=root)
    await chat.vol.wait_for(
        chat.room(),
        lambda e: (
            e.get("type") == "m.reaction" and e["content"]["m.relates_to"]["event_id"] == event_id
        ),
        after=mark,
        what="the reaction to the comment",
    )
    rows = chat.inst.query("SELECT body FROM entries WHERE kind = 'comment'")
    assert rows == [("el veí diu que també li passa",)]
    # An edit of a command is never run.
    show_id, mark = await chat.command(f"!show suport#{number}")
    await chat.bot_says(lambda e: True, after=mark)
    mark = chat.vol.mark(chat.room())
    await chat.vol.edit(chat.room(), show_id, f"!take suport#{number}")
    _, probe = await chat.command(f"!show suport#{number}")
    await chat.bot_says(lambda e: True, after=probe)
    assert chat.ticket(number)[1] is None


async def test_restart_reruns_nothing_and_the_next_command_works(chat: Chat):
    number, root, _ = await chat.mail_ticket()
    _, mark = await chat.command("!comment abans de reiniciar", thread=root)
    await chat.bot_says(in_thread(root), after=mark)
    device = chat.inst.app.matrix.session.device_id
    posts_before = len(chat.bot_events())
    await chat.inst.stop()
    # Written while exobot is down: handled once after the restart, not lost.
    _, mark = await chat.command("!comment mentre estava aturat", thread=root)
    await chat.inst.start()
    await chat.bot_says(in_thread(root), after=mark, what="the answer to the missed command")
    assert chat.inst.app.matrix.session.device_id == device  # no new device per start
    _, mark = await chat.command("!comment després de reiniciar", thread=root)
    await chat.bot_says(in_thread(root), after=mark)
    await asyncio.sleep(1)
    comments = [r[0] for r in chat.inst.query("SELECT body FROM entries WHERE kind='comment'")]
    assert comments == ["abans de reiniciar", "mentre estava aturat", "després de reiniciar"]
    assert len(chat.bot_events()) == posts_before + 2  # nothing old posted or answered again


async def test_more_commands_while_away_than_a_sync_brings_all_run_once(chat: Chat, monkeypatch):
    """A sync brings at most TIMELINE_LIMIT events a room; the homeserver leaves older ones
    out ("limited"). Those are fetched page by page, so every command said while exobot was
    stopped runs, once and in order (here 11 commands against a limit of 3, pages of 4)."""
    monkeypatch.setattr(matrix_client, "TIMELINE_LIMIT", 3)
    monkeypatch.setattr(matrix_client, "MISSED_PAGE", 4)
    number, root, _ = await chat.mail_ticket()
    _, mark = await chat.command("!comment abans", thread=root)
    await chat.bot_says(in_thread(root), after=mark)
    await chat.settle()

    def answers() -> int:
        return len([e for e in chat.bot_events() if in_thread(root)(e)])

    answers_before = answers()
    await chat.inst.stop()
    said = [f"nota {i}" for i in range(11)]
    for text in said:
        await chat.command(f"!comment {text}", thread=root)
    await chat.inst.start()

    async def all_answered() -> bool:
        return answers() >= answers_before + len(said)

    await wait_until(all_answered, what="an answer to each command said while away")
    await chat.settle()
    comments = [r[0] for r in chat.inst.query("SELECT body FROM entries WHERE kind='comment'")]
    assert comments == ["abans", *said]
    assert answers() == answers_before + len(said)  # none answered twice


async def test_alert_for_a_new_ticket_and_none_after_take(make_instance, matrix_setup, volunteer):
    setup = matrix_setup()
    clock = ShiftedClock()  # hours pass when the test says so, not by waiting
    inst = make_instance(
        matrix=setup,
        alerts={"new_after": "4h", "repeat_every": "8h", "sweep_every": "1s"},
        clock=clock,
    )
    await inst.start()
    chat = Chat(inst, setup, await volunteer(setup))
    number, root, _ = await chat.mail_ticket()
    clock.advance(hours=4, minutes=1)
    await chat.bot_says(
        lambda e: in_thread(root)(e) and "⚠" in body_of(e), what="the alert in the thread"
    )
    await chat.bot_says(
        lambda e: (
            thread_root_of(e) is None
            and e["event_id"] != root
            and f"suport#{number}" in body_of(e)
            and "⚠" in body_of(e)
        ),
        what="the alert line in the room",
    )
    other, other_root, _ = await chat.mail_ticket()
    _, mark = await chat.command("!take", thread=other_root)
    await chat.bot_says(in_thread(other_root), after=mark)
    # A witness opened after it and left new: once its alert is raised, a sweep has passed
    # the taken ticket's old due time too.
    witness, _, _ = await chat.mail_ticket()
    clock.advance(hours=4, minutes=1)

    async def witness_alerted() -> bool:
        query = "SELECT 1 FROM entries WHERE kind = 'alert' AND ticket_id = :n"
        return bool(inst.query(query, n=witness))

    await wait_until(witness_alerted, what="the alert of the ticket left new")
    alerts = inst.query("SELECT ticket_id FROM entries WHERE kind = 'alert'")
    assert (number,) in alerts and (other,) not in alerts


@pytest.fixture
async def encrypted_chat(make_instance, matrix_setup, volunteer) -> Chat:
    """exobot with an encrypted queue room, and a volunteer who has seen the bot join it."""
    setup = matrix_setup(encrypted={"suport"})
    inst = make_instance(matrix=setup)
    await inst.start()
    vol = await volunteer(setup)
    await vol.wait_member(setup.rooms["suport"], setup.bot_user_id)
    return Chat(inst, setup, vol)


async def test_an_encrypted_queue_room_works_end_to_end(encrypted_chat: Chat):
    chat = encrypted_chat
    inst, setup, vol, room = chat.inst, chat.setup, chat.vol, chat.room()
    state = await asyncio.to_thread(_room_state, inst.stack, setup, room)
    assert any(e["type"] == "m.room.encryption" for e in state)
    number, root, _ = await chat.mail_ticket(subject="Xifrat")
    assert vol.wire_type(root) == "m.room.encrypted"
    assert "Xifrat" in body_of(vol.event(root))  # the volunteer's client decrypted it
    # The bot decrypts the volunteer's encrypted command too.
    command, mark = await chat.command("!take", thread=root)
    await vol.wait_for(room, lambda e: e["event_id"] == command, what="the command's echo")
    assert vol.wire_type(command) == "m.room.encrypted"
    answer = await chat.bot_says(in_thread(root), after=mark, what="the answer in the thread")
    assert vol.wire_type(answer["event_id"]) == "m.room.encrypted"
    assert chat.ticket(number)[:2] == ("open", setup.volunteer_user_id)


async def test_a_command_the_bot_cannot_decrypt_is_answered_and_never_runs(
    encrypted_chat: Chat, monkeypatch
):
    # The volunteer's room key is made not to reach the bot, as when its to-device message is
    # lost: the key stays in use, so every message in it is unreadable until the sender
    # discards it (Element's /discardsession, the answer's advice). No real half-minute wait.
    monkeypatch.setattr(matrix_client, "UNDECRYPTED_NOTICE_SECONDS", 0.0)
    monkeypatch.setattr(matrix_client, "UNDECRYPTED_RETRY_SECONDS", 0.5)
    chat = encrypted_chat
    setup, vol, room = chat.setup, chat.vol, chat.room()
    number, root, _ = await chat.mail_ticket(subject="Sense clau")
    olm = vol.client.olm
    bot_devices = list(vol.client.device_store.active_user_devices(setup.bot_user_id))
    assert bot_devices, "the volunteer's client knows the bot's device"
    for device in bot_devices:
        olm.blacklist_device(device)
    vol.client.invalidate_outbound_session(room)  # the next message starts a key without it
    commands = []

    async def unreadable_answer() -> None:
        command, mark = await chat.command("!take", thread=root)
        commands.append(command)
        notice = await chat.bot_says(
            lambda e: reply_to_of(e) == command, after=mark, what="the unreadable command's answer"
        )
        assert thread_root_of(notice) == root
        assert body_of(notice).endswith(Renderer("ca").undecryptable().body)

    await unreadable_answer()
    for device in bot_devices:
        olm.unblacklist_device(device)  # too late for the key in use: it never reaches the bot
    await unreadable_answer()
    assert chat.ticket(number)[:2] == ("new", None)

    vol.client.invalidate_outbound_session(room)  # /discardsession: a new key, for the bot too
    again, mark = await chat.command("!take", thread=root)
    commands.append(again)
    await chat.wait_ticket(number, "open", setup.volunteer_user_id)
    await chat.bot_says(lambda e: reply_to_of(e) == again, after=mark, what="the last answer")
    await chat.settle()
    answers = [reply_to_of(e) for e in chat.bot_events() if reply_to_of(e) in commands]
    assert sorted(answers) == sorted(commands)  # each answered once; the unreadable never ran


async def _new_device(chat: Chat, matrix_login) -> MatrixUser:  # noqa: ANN001
    """The volunteer logs in on a new device (a phone); returns it once the bot knows it."""
    setup = chat.setup
    phone = await matrix_login(setup.volunteer_user_id, setup.volunteer_password, setup.homeserver)
    bot = chat.inst.app.matrix.nio

    async def bot_knows_the_phone() -> bool:
        devices = bot.device_store.active_user_devices(setup.volunteer_user_id)
        return phone.device_id in {device.id for device in devices}

    await wait_until(bot_knows_the_phone, what="the bot to learn of the volunteer's new device")
    return phone


async def _readable(user: MatrixUser, room: str, event_id: str, what: str) -> None:
    """Wait until `user`'s client has the event and has decrypted it."""
    await user.wait_for(room, lambda e: e["event_id"] == event_id, what=f"{what} to arrive")

    async def decrypted() -> bool:
        return user.event(event_id).get("type") == "m.room.message"

    await wait_until(decrypted, what=f"{what} to be decrypted")


async def test_a_volunteers_new_device_reads_the_bots_next_posts(
    encrypted_chat: Chat, matrix_login
):
    # A volunteer logs in on a new phone while the bot's room key is in use: the bot learns
    # of the device (its key query after a sync) and its next post is readable there (nio
    # starts a new key when a member's devices change; it shares a key in use with nobody new).
    chat = encrypted_chat
    vol, room = chat.vol, chat.room()
    _, before, _ = await chat.mail_ticket(subject="Abans del mòbil nou")
    phone = await _new_device(chat, matrix_login)
    number, root, _ = await chat.mail_ticket(subject="Després del mòbil nou")
    await _readable(phone, room, root, f"the root of suport#{number}")
    assert "Després del mòbil nou" in body_of(phone.event(root))
    assert "Després del mòbil nou" in body_of(vol.event(root))  # and the first device still
    session = vol.raw_event(root)["content"]["session_id"]
    assert session != vol.raw_event(before)["content"]["session_id"]


@contextlib.contextmanager
def _room_keys_lost(chat: Chat, count: int, request=nio.ShareGroupSessionResponse):
    """The next `count` requests that carry the bot's room keys (or, with `request`, another
    of the requests that sharing a key makes) fail, as when the homeserver restarts or times
    out, from a new key on; yields the list of the failed ones. nio marks a key shared even
    when its to-device requests failed."""
    bot = chat.inst.app.matrix.nio
    bot.invalidate_outbound_session(chat.room())  # the next post starts a new key
    failed = []
    send = bot._send

    async def losing(response_class, *args, **kwargs):
        if response_class is request and len(failed) < count:
            failed.append(args)
            raise TimeoutError("the homeserver did not answer")
        return await send(response_class, *args, **kwargs)

    bot._send = losing
    try:
        yield failed
    finally:
        bot._send = send


async def root_attempts(inst: Instance, tickets: str, count: int, **params) -> list[int]:
    """The attempts of the `count` tickets' root posts (`tickets`: an SQL condition on
    ticket_id), once each row is marked sent: a root reaches the volunteer before that."""

    def marked() -> list[int] | None:
        rows = inst.query(
            f"SELECT attempts FROM outbox WHERE kind = 'chat' AND state = 'sent' AND {tickets}"
            " AND payload LIKE '%\"created\": true%' ORDER BY id",
            **params,
        )
        return [attempts for (attempts,) in rows] if len(rows) == count else None

    return await wait_until(marked, what=f"{count} root post(s) marked sent")


async def test_a_room_key_the_homeserver_did_not_take_is_shared_again(encrypted_chat: Chat, caplog):
    # Without more, every post in a key that missed the volunteer's device would be
    # unreadable there until the key changes (100 messages). The post's first attempt shares
    # a new key three times, all lost, and fails; its retry gets one through.
    chat = encrypted_chat
    with _room_keys_lost(chat, 4) as failed:
        number, root, _ = await chat.mail_ticket(subject="Clau perduda")
    assert len(failed) == 4
    assert "Clau perduda" in body_of(chat.vol.event(root))  # the volunteer's client decrypted it
    attempts = await root_attempts(chat.inst, "ticket_id = :n", 1, n=number)
    assert attempts == [2]  # the attempt whose three keys were lost, then the one that posted
    assert caplog.text.count("did not reach 1 device(s) (") == 4  # a new key after each


async def test_posts_at_once_wait_for_one_room_key_that_reached_everyone(encrypted_chat: Chat):
    # A burst: several tickets' roots go out side by side (one lane each) while the first key
    # is lost. Only one key is shared at a time (nio refuses two), the others' posts wait
    # for it, and none goes out in the lost one.
    chat = encrypted_chat
    inst = chat.inst
    subjects = [f"Ràfega {n}" for n in range(6)]
    before = inst.scalar("SELECT count(*) FROM tickets")
    with _room_keys_lost(chat, 1) as failed:
        for subject in subjects:
            await inst.send(member_mail(unique("membre"), inst.address, subject=subject))
        await inst.wait_tickets(before + len(subjects))
        for subject in subjects:
            await chat.bot_says(
                lambda e, s=subject: s in (body_of(e) or "") and thread_root_of(e) is None,
                what=f"the readable root of {subject!r}",
            )
    assert len(failed) == 1
    # Each root posted at its first attempt: none tried to share a key of its own meanwhile.
    attempts = await root_attempts(inst, "ticket_id > :n", len(subjects), n=before)
    assert attempts == [1] * len(subjects)


async def test_a_failed_key_claim_does_not_hold_the_rooms_posts(encrypted_chat: Chat, matrix_login):
    # A volunteer's new device has no Olm session with the bot yet, so sharing the next room
    # key first claims one of its one-time keys; that request fails. nio then raises before
    # clearing its "a key is being shared" mark, and every later post in the room would wait
    # on it forever. The post fails instead, and its retry (5 s later) goes out readable.
    chat = encrypted_chat
    room = chat.room()
    phone = await _new_device(chat, matrix_login)
    with _room_keys_lost(chat, 1, request=nio.KeysClaimResponse) as failed:
        number, root, _ = await chat.mail_ticket(subject="Sense sessió")
    assert failed, "the key claim was made to fail"
    await _readable(phone, room, root, f"the root of suport#{number}")
    assert "Sense sessió" in body_of(chat.vol.event(root))


@contextlib.contextmanager
def _room_key_discarded_while_shared(chat: Chat):
    """The bot's next room key is discarded once while it is being shared, as nio does when a
    sync shows a member or a device change at that moment: the key's to-device answers have
    marked it shared, and the sync drops it. Yields the list of the discarded ones."""
    bot = chat.inst.app.matrix.nio
    room = chat.room()
    bot.invalidate_outbound_session(room)  # the next post starts a new key
    discarded = []
    send = bot._send

    async def discarding(response_class, *args, **kwargs):
        response = await send(response_class, *args, **kwargs)
        if response_class is nio.ShareGroupSessionResponse and not discarded:
            discarded.append(args)
            bot.invalidate_outbound_session(room)
        return response

    bot._send = discarding
    try:
        yield discarded
    finally:
        bot._send = send


async def test_a_room_key_discarded_while_it_is_shared_is_followed_by_a_new_one(
    encrypted_chat: Chat, caplog
):
    # A volunteer joins, or a member's device changes, while the bot shares a room key: nio
    # drops the key and its own share then fails on it (a KeyError). The post is not given up
    # as undeliverable: a new key is shared and the root goes out, readable, at once.
    chat = encrypted_chat
    caplog.set_level(logging.INFO, logger="exobot.matrix")
    with _room_key_discarded_while_shared(chat) as discarded:
        number, root, _ = await chat.mail_ticket(subject="Clau descartada")
    assert len(discarded) == 1
    assert "Clau descartada" in body_of(chat.vol.event(root))  # the volunteer decrypted it
    assert await root_attempts(chat.inst, "ticket_id = :n", 1, n=number) == [1]
    assert "was discarded while shared: a new one" in caplog.text


def _room_state(stack, setup, room_id: str) -> list[dict]:
    from devstack.matrix_setup import room_state

    return room_state(stack, setup.volunteer_access_token, room_id)


async def test_mail_text_stays_inert_in_the_room(chat: Chat):
    subject = "@room <b>URGENT</b> <a href='https://evil.example'>clica</a>"
    body = "@room hola <script>alert(1)</script>\n<img src=x onerror=alert(2)> @voluntari:localhost"
    number, root, _ = await chat.mail_ticket(subject=subject, body=body)
    content = chat.vol.event(root)["content"]
    assert content["m.mentions"] == {}
    html = content["formatted_body"]
    for raw in ("<b>URGENT", "<a href", "<script>", "<img"):
        assert raw not in html
    assert "&lt;b&gt;URGENT&lt;/b&gt;" in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "@room" in content["body"]


async def test_queries_answer_in_place(chat: Chat):
    number, root, member = await chat.mail_ticket(subject="Antena desalineada")
    cases = {
        f"!show suport#{number}": ["Antena desalineada", member, "suport"],
        f"!mostra {number}": ["Antena desalineada"],
        f"!history suport#{number}": [member],
        "!list": [f"suport#{number}"],
        "!llista suport nou": [f"suport#{number}"],
        "!search antena": [f"suport#{number}"],
        "!cerca paraulainexistent": [],
        "!help": ["!take", "!agafa"],
        "!ajuda reply": ["!reply"],
    }
    for text, expected in cases.items():
        event_id, mark = await chat.command(text)
        answer = await chat.bot_says(
            lambda e, event_id=event_id: reply_to_of(e) == event_id,
            after=mark,
            what=f"the answer to {text!r}",
        )
        for piece in expected:
            assert piece in body_of(answer), (text, body_of(answer))
    assert f"suport#{number}" not in body_of(answer)


async def test_new_give_untake_and_accept(chat: Chat, matrix_setup, matrix_login, stack):
    # !new in the room: the new ticket's root answers the command.
    event_id, mark = await chat.command(
        "!new veina@example.org Trucada: sense connexió\nVa trucar."
    )
    root = await chat.bot_says(
        lambda e: reply_to_of(e) == event_id,
        after=mark,
        what="the new ticket's root",
    )
    number = chat.inst.scalar("SELECT max(id) FROM tickets")
    assert f"suport#{number}" in body_of(root) and "Trucada: sense connexió" in body_of(root)
    assert chat.inst.scalar("SELECT requestor FROM tickets WHERE id = :n", n=number) == (
        "veina@example.org"
    )
    # Tickets go to operators only: the other volunteer joins the room first.
    from devstack.matrix_setup import invite

    other_setup = matrix_setup()
    other = other_setup.volunteer_user_id
    invite(stack, chat.setup.volunteer_access_token, chat.room(), other)
    other_client = await matrix_login(other, other_setup.volunteer_password, other_setup.homeserver)
    await other_client.join(chat.room())
    await wait_until(
        lambda: _true(chat.inst.app.bot.is_operator(other)), what="the bot to see them join"
    )
    _, mark = await chat.command(f"!give {other}", thread=root["event_id"])
    await chat.bot_says(in_thread(root["event_id"]), after=mark)
    await chat.wait_ticket(number, "open", other)
    _, mark = await chat.command("!deixa", thread=root["event_id"])
    await chat.bot_says(in_thread(root["event_id"]), after=mark)
    await chat.wait_ticket(number, "open", None)

    # A mail naming the ticket from a stranger: shown as unverified, accepted with !accept.
    mark = chat.vol.mark(chat.room())
    stranger = unique("desconegut")
    await chat.inst.send(
        member_mail(
            stranger, chat.inst.address, subject=f"[suport#{number}] soc el veí", body="Jo també"
        )
    )
    await chat.bot_says(
        lambda e: in_thread(root["event_id"])(e) and "!accepta" in body_of(e),
        after=mark,
        what="the unverified-sender notice",
    )
    _, mark = await chat.command("!accepta", thread=root["event_id"])
    await chat.bot_says(in_thread(root["event_id"]), after=mark)

    async def accepted() -> bool:
        query = "SELECT address FROM participants WHERE ticket_id = :n"
        return (stranger,) in chat.inst.query(query, n=number)

    await wait_until(accepted, what=f"{stranger} to become a participant")


async def test_a_stranger_writing_directly_gets_one_refusal(chat: Chat, matrix_login, stack):
    from devstack.matrix_setup import create_room

    setup = chat.setup
    room_id = await asyncio.to_thread(
        create_room,
        stack,
        setup.volunteer_access_token,
        alias_localpart=None,
        name="DM",
        invite=[setup.bot_user_id],
    )
    await chat.vol.join(room_id)
    refusal = await chat.vol.wait_for(
        room_id,
        lambda e: sender_of(e) == setup.bot_user_id and e.get("type") == "m.room.message",
        what="the polite refusal",
    )
    assert chat.inst.address in body_of(refusal)
    await chat.vol.wait_for(
        room_id,
        lambda e: (
            e.get("type") == "m.room.member"
            and e.get("state_key") == setup.bot_user_id
            and e["content"].get("membership") == "leave"
        ),
        what="the bot leaving",
    )
    before = chat.inst.scalar("SELECT count(*) FROM entries")
    await chat.vol.send(room_id, "!take suport#1")
    await asyncio.sleep(1)
    assert chat.inst.scalar("SELECT count(*) FROM entries") == before


async def test_a_quarantined_mail_is_announced_once(
    make_instance, matrix_setup, volunteer, monkeypatch
):
    from exobot.mail import processor

    real_rules = processor.run_rules

    async def buggy_rules(parsed, context, rules):
        if "X-Trigger" in (parsed.subject or ""):
            raise RuntimeError("simulated rules bug")
        return await real_rules(parsed, context, rules)

    monkeypatch.setattr(processor, "run_rules", buggy_rules)
    setup = matrix_setup()
    inst = make_instance(matrix=setup)
    await inst.start()
    chat = Chat(inst, setup, await volunteer(setup))
    await inst.send(member_mail(unique("membre"), inst.address, subject="X-Trigger <i>trencat</i>"))
    notice = await chat.bot_says(
        lambda e: "(quarantena núm. " in body_of(e), what="the announcement"
    )
    inbound_id = inst.scalar("SELECT id FROM inbound_mail WHERE state = 'quarantined'")
    assert f"(quarantena núm. {inbound_id})" in body_of(notice)
    assert "exobot quarantine" not in body_of(notice)  # worded for a person, no shell commands
    assert "&lt;i&gt;trencat" in notice["content"]["formatted_body"]
    # Retried and quarantined again: not announced again.
    assert await inst.app.processor.process(inbound_id) == "quarantined"
    await asyncio.sleep(1.5)
    announced = [e for e in chat.bot_events() if "(quarantena núm. " in (body_of(e) or "")]
    assert len(announced) == 1


async def test_wrong_matrix_credentials_stop_exobot_with_a_clear_message(
    make_instance, matrix_setup
):
    setup = matrix_setup()
    inst = make_instance(matrix=setup)
    text = inst.config_path.read_text().replace(setup.bot_password, "contrasenya-dolenta")
    inst.config_path.write_text(text)
    result = await asyncio.to_thread(inst.run_cli, "run", timeout=60)
    assert result.returncode == 1
    assert "Matrix refused the bot's credentials" in result.stderr
    assert "contrasenya-dolenta" not in result.stderr


async def test_a_new_bot_skips_the_rooms_backlog(make_instance, matrix_setup, volunteer):
    setup = matrix_setup()
    vol = await volunteer(setup)
    room = setup.rooms["suport"]
    old = await vol.send(room, "!ajuda")  # said before the bot ever ran
    inst = make_instance(matrix=setup)
    await inst.start()
    chat = Chat(inst, setup, vol)
    new, mark = await chat.command("!ajuda")
    await chat.bot_says(
        lambda e: reply_to_of(e) == new,
        after=mark,
        what="the answer to the new command",
    )
    await asyncio.sleep(1)
    answered = [reply_to_of(e) for e in chat.bot_events()]
    assert old not in answered and answered.count(new) == 1


async def test_the_digest_reaches_every_queue_room(make_instance, matrix_setup, volunteer):
    setup = matrix_setup()
    inst = make_instance(matrix=setup, alerts={"digest_at": "00:00", "sweep_every": "1s"})
    await inst.start()
    chat = Chat(inst, setup, await volunteer(setup))
    today = datetime.now(ZoneInfo("Europe/Madrid")).date().isoformat()
    for queue in ("suport", "tresoreria"):
        digest = await chat.bot_says(lambda e: thread_root_of(e) is None, queue=queue)
        assert today in body_of(digest)
    await asyncio.sleep(2.5)  # more sweeps: still one digest a day
    assert len(chat.bot_events("suport")) == 1


async def test_sigterm_stops_cleanly_and_loses_nothing(make_instance, matrix_setup, volunteer):
    import signal
    import subprocess
    import sys

    from harness import ROOT

    setup = matrix_setup()
    inst = make_instance(matrix=setup)
    vol = await volunteer(setup)
    chat = Chat(inst, setup, vol)
    log_path = inst.config_path.parent / "run.log"
    with open(log_path, "w") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "exobot.cli", "run", "-c", str(inst.config_path)],
            cwd=ROOT,
            stderr=log_file,
        )
    try:
        await _until_answered(chat, "!ajuda")
        member = unique("membre")
        await inst.send(member_mail(member, inst.address, subject="Just abans d'aturar"))
        process.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(process.wait, 20) == 0
    finally:
        if process.poll() is None:
            process.kill()
    log = log_path.read_text()
    assert "exobot stopped" in log
    assert "exobot.matrix" in log and "exobot.mail" in log  # lines name their component
    # Whatever the signal interrupted is finished after a restart, exactly once.
    await inst.start()
    await inst.wait_tickets(1)
    await chat.bot_says(lambda e: "Just abans d'aturar" in body_of(e), what="the root message")
    await inst.wait_mailbox(member, 1)
    await inst.wait_outbox_idle()
    await asyncio.sleep(1)
    roots = [e for e in chat.bot_events() if "Just abans d'aturar" in (body_of(e) or "")]
    assert len(roots) == 1 and len(inst.mailbox(member)) == 1


async def _until_answered(chat: Chat, command: str, attempts: int = 10) -> None:
    """Wait for a bot started elsewhere to be ready: a command said before its first sync is
    backlog it rightly skips, so ask again until one is answered."""
    for _ in range(attempts):
        _, mark = await chat.command(command)
        for _ in range(30):
            if chat.bot_events(after=mark):
                return
            await asyncio.sleep(0.1)
    pytest.fail(f"exobot never answered {command}")


async def test_a_command_from_another_room_is_answered_there_too(chat: Chat):
    number, root, _ = await chat.mail_ticket()
    mark_suport = chat.vol.mark(chat.room("suport"))
    event_id, mark = await chat.command(f"!take suport#{number}", queue="tresoreria")
    here = await chat.bot_says(
        lambda e: reply_to_of(e) == event_id,
        queue="tresoreria",
        after=mark,
        what="the answer in the room where the command was typed",
    )
    there = await chat.bot_says(in_thread(root), after=mark_suport, what="the thread post")
    assert body_of(here) == body_of(there)
    assert chat.ticket(number)[:2] == ("open", chat.setup.volunteer_user_id)


async def _true(value: bool) -> bool:
    return value
