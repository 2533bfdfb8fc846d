"""Which ticket a chat command acts on, and where its answer shows (the chat audit's cases).

A command typed in ticket A's thread that names ticket B is answered in A's thread too (the
volunteer reads A's thread, not B's); one that would mail B's member (a reply, resolving, a
saved reply) is refused there, changing nothing. Inside a thread `#N` opening a reply's text
is text. A command after a mention of the bot (`exobot: !take`, as a client's pill writes it)
or written `! take` is a command, not a comment with a ✅. The real MatrixBot and ChatSender,
a stand-in homeserver and SQLite, on a fake clock."""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import nio
import pytest
from clocks import FakeClock

from exobot.core import intents
from exobot.core.actions import ActionSpec, ArgKind, Argument, TicketUse, new_registry
from exobot.core.intents import MailClass, ReceiveMail
from exobot.core.model import Actor, EntryKind, IncomingMail, Status
from exobot.core.service import ServiceSettings, TicketService
from exobot.i18n import say
from exobot.mail.msgid import MessageIds
from exobot.matrix.bot import BotSettings, MatrixBot
from exobot.matrix.poster import REACTION_DONE, ChatSender
from exobot.matrix.render import Renderer
from exobot.matrix.rooms import QueueRooms
from exobot.wording import ERRORS

BOT = "@exobot:example.org"
ANNA = "@anna:example.org"
ROOM = "!suport:example.org"
_events = itertools.count(1)


class Homeserver:
    """The bot's and the poster's Matrix connection: each send gets a new event id and is
    recorded with its content."""

    def __init__(self) -> None:
        self.user_id = BOT
        self.nio = SimpleNamespace(user_id=BOT, rooms={})
        self.synced = True
        self.on_event = self.on_invite = self.on_undecryptable = None
        self.sent: list[SimpleNamespace] = []

    async def send(self, room_id: str, event_type: str, content: dict, tx_id: str | None = None):  # noqa: ANN201
        event_id = f"$out{len(self.sent) + 1}"
        self.sent.append(SimpleNamespace(room=room_id, type=event_type, content=content))
        return nio.RoomSendResponse(event_id, room_id)


async def _canned(call):  # noqa: ANN001, ANN202 - a saved reply, as the saved-replies plugin
    return intents.Reply(call.ticket, "Text desat")


@pytest.fixture
async def chat(repo):  # noqa: ANN001, ANN201
    """A bot and its poster on `repo`, in Catalan, with one queue room."""
    clock = FakeClock()
    homeserver = Homeserver()
    room = nio.MatrixRoom(ROOM, BOT)
    room.join_rule = "invite"
    room.add_member(BOT, "exobot", None)
    room.add_member(ANNA, "Anna", None)
    homeserver.nio.rooms[ROOM] = room
    rooms = QueueRooms({"suport": ROOM})
    rooms._room_of["suport"] = ROOM  # joined, as ensure_joined() would record it
    settings = ServiceSettings(
        queues=frozenset({"suport"}), own_address="suport@example.org", announce=True
    )
    service = TicketService(repo, MessageIds("secret" * 4, "example.org"), settings, clock=clock)
    registry = new_registry()
    registry.register(
        ActionSpec(
            "canned",
            "!canned {ref} name",
            "a saved reply",
            arguments=(Argument("name", ArgKind.WORD),),
            ticket=TicketUse.OPTIONAL,
            handler=_canned,
        )
    )
    renderer = Renderer("ca", "suport", registry=registry)
    bot_settings = BotSettings(
        prefix="suport",
        queues=frozenset({"suport"}),
        operators=frozenset(),
        support_address="suport@example.org",
    )
    bot = MatrixBot(homeserver, rooms, service, repo, renderer, bot_settings, registry=registry)
    service.may_own = bot.is_operator
    sender = ChatSender(
        repo, homeserver, rooms, renderer, default_queue="suport", clock=clock, service=service
    )
    return SimpleNamespace(bot=bot, sender=sender, homeserver=homeserver, repo=repo)


async def open_ticket(chat, n: int) -> tuple[int, str]:  # noqa: ANN001
    """A member's new ticket, announced: its number and its thread's root event."""
    mail = IncomingMail(
        message_id=f"<m{n}@example.net>",
        sender=f"marta{n}@example.net",
        sender_name="Marta",
        requestor=f"marta{n}@example.net",
        subject=f"Consulta {n}",
        body="Hola.",
    )
    outcome = await chat.bot.service.apply(
        Actor.member(mail.sender), ReceiveMail(mail, MailClass.MEMBER)
    )
    before = len(chat.homeserver.sent)
    await chat.sender.deliver_due()
    return outcome.ticket, f"$out{before + 1}"


async def say_in(chat, body: str, thread: str | None = None, formatted: str | None = None):  # noqa: ANN001, ANN201
    """Anna's message (in `thread`, else the room's timeline): what the bot posted for it,
    as (thread root or None, body or reaction key)."""
    content: dict = {"msgtype": "m.text", "body": body}
    if formatted is not None:
        content |= {"format": "org.matrix.custom.html", "formatted_body": formatted}
    if thread is not None:
        content["m.relates_to"] = {
            "rel_type": "m.thread",
            "event_id": thread,
            "is_falling_back": True,
            "m.in_reply_to": {"event_id": thread},
        }
    event = nio.RoomMessageText.from_dict(
        {
            "type": "m.room.message",
            "event_id": f"$in{next(_events)}",
            "sender": ANNA,
            "origin_server_ts": 1,
            "content": content,
        }
    )
    before = len(chat.homeserver.sent)
    await chat.bot.handle_event(chat.homeserver.nio.rooms[ROOM], event)
    await chat.sender.deliver_due()
    posted = []
    for sent in chat.homeserver.sent[before:]:
        relates = sent.content.get("m.relates_to") or {}
        if sent.type == "m.reaction":
            posted.append(("reaction", relates.get("key")))
        else:
            root = relates.get("event_id") if relates.get("rel_type") == "m.thread" else None
            posted.append((root, sent.content["body"]))
    return posted


async def ticket(chat, number: int):  # noqa: ANN001, ANN201
    async with chat.repo.reading() as view:
        return await view.get_ticket(number)


async def mails_out(chat, number: int) -> int:  # noqa: ANN001
    async with chat.repo.reading() as view:
        return len(await view.entries_of(number, [EntryKind.MAIL_OUT.value]))


# --- a command in one ticket's thread naming another ----------------------------------------


async def test_a_change_to_another_ticket_is_answered_in_the_thread_it_was_typed_in(chat):  # noqa: ANN001
    a, thread_a = await open_ticket(chat, 1)
    b, thread_b = await open_ticket(chat, 2)

    posted = await say_in(chat, "!agafa suport#2", thread=thread_a)

    assert (await ticket(chat, b)).owner == ANNA
    assert (await ticket(chat, a)).owner is None
    assert [root for root, _ in posted] == [thread_b, thread_a]
    assert "suport#2" in posted[1][1]


async def test_a_comment_on_another_ticket_names_it_in_the_thread_it_was_typed_in(chat):  # noqa: ANN001
    _a, thread_a = await open_ticket(chat, 1)
    _b, thread_b = await open_ticket(chat, 2)

    posted = await say_in(chat, "!comenta suport#2 Ho miro demà", thread=thread_a)

    assert [root for root, _ in posted] == [thread_b, thread_a]
    assert posted[1][1].startswith("suport#2 · ")  # else it would read as suport#1's


@pytest.mark.parametrize(
    ("command", "msgid"),
    [
        ("!respon suport#2 Hola Marta, et confirmo la baixa.", ERRORS["other_thread_reply"]),
        ("!resol 2", ERRORS["other_thread_resolve"]),
        ("!estat suport#2 resolt", ERRORS["other_thread_resolve"]),
        ("!canned suport#2 baixa", ERRORS["other_thread_reply"]),
    ],
    ids=["reply", "resolve", "status_resolved", "saved_reply"],
)
async def test_mailing_another_tickets_member_from_a_thread_is_refused(chat, command, msgid):  # noqa: ANN001
    a, thread_a = await open_ticket(chat, 1)
    b, _thread_b = await open_ticket(chat, 2)

    posted = await say_in(chat, command, thread=thread_a)

    refusal = say("ca", msgid, here="suport#1", there="suport#2")
    assert refusal.startswith("Ets al fil de suport#1")
    assert posted == [(thread_a, refusal)]
    for number in (a, b):  # nothing changed, nobody mailed
        assert (await ticket(chat, number)).status is Status.NEW
        assert await mails_out(chat, number) == 0


async def test_mailing_from_the_tickets_own_thread_or_the_room_still_works(chat):  # noqa: ANN001
    a, thread_a = await open_ticket(chat, 1)
    b, _thread_b = await open_ticket(chat, 2)

    await say_in(chat, "!respon suport#1 Hola", thread=thread_a)
    await say_in(chat, "!respon suport#2 Hola")

    assert await mails_out(chat, a) == 1
    assert await mails_out(chat, b) == 1


async def test_hash_number_opening_a_reply_in_a_thread_is_text(chat):  # noqa: ANN001
    a, thread_a = await open_ticket(chat, 1)
    b, _thread_b = await open_ticket(chat, 2)

    posted = await say_in(chat, "!respon #2 routers caiguts a la zona", thread=thread_a)

    assert [root for root, _ in posted] == [thread_a]
    assert await mails_out(chat, a) == 1
    assert await mails_out(chat, b) == 0
    async with chat.repo.reading() as view:
        (mail,) = await view.entries_of(a, [EntryKind.MAIL_OUT.value])
    assert mail.body == "#2 routers caiguts a la zona"


# --- a command not at the very start of the message ------------------------------------------


PILL = '<a href="https://matrix.to/#/@exobot:example.org">exobot</a>'


@pytest.mark.parametrize(
    ("body", "formatted"),
    [
        ("exobot: !agafa", f"{PILL}: !agafa"),
        ("exobot !agafa", f"{PILL} !agafa"),
        ("@exobot:example.org: !agafa", None),
        ("exobot, !agafa", None),
        ("! agafa", None),
        ("exobot: ! agafa", f"{PILL}: ! agafa"),
    ],
    ids=["pill_colon", "pill_space", "user_id", "name_comma", "spaced", "pill_spaced"],
)
async def test_a_command_after_a_mention_of_the_bot_or_a_space_is_a_command(chat, body, formatted):  # noqa: ANN001
    a, thread_a = await open_ticket(chat, 1)

    posted = await say_in(chat, body, thread=thread_a, formatted=formatted)

    assert (await ticket(chat, a)).owner == ANNA
    assert ("reaction", REACTION_DONE) not in posted
    async with chat.repo.reading() as view:
        assert await view.entries_of(a, [EntryKind.COMMENT.value]) == []


async def test_a_spaced_command_in_the_room_is_a_command(chat):  # noqa: ANN001
    a, _thread_a = await open_ticket(chat, 1)

    posted = await say_in(chat, "! agafa suport#1")

    assert (await ticket(chat, a)).owner == ANNA
    assert posted  # answered, not silence


@pytest.mark.parametrize(
    ("body", "formatted"),
    [
        ("exobot: gràcies!", f"{PILL}: gràcies!"),
        ("! ja està", None),
        ("!!!", None),
        ("exobot !agafa", None),  # the bot's name without a pill or a ':' is just a word
    ],
    ids=["mention_no_command", "bang_space_text", "bangs", "bare_name"],
)
async def test_other_messages_in_a_thread_stay_comments(chat, body, formatted):  # noqa: ANN001
    a, thread_a = await open_ticket(chat, 1)

    posted = await say_in(chat, body, thread=thread_a, formatted=formatted)

    assert posted == [("reaction", REACTION_DONE)]
    assert (await ticket(chat, a)).owner is None
    async with chat.repo.reading() as view:
        (comment,) = await view.entries_of(a, [EntryKind.COMMENT.value])
    assert comment.body == body
