"""The bot's own rules, on a real SQLite database with a stand-in for the Matrix connection:
who is an operator (joined, not invited; never from a room anybody can join), what an open
queue room is told, mention pills read only for operators and in linear time, and `!search`
with a NUL byte answered like any other error (issue 9, sections 4 and 5)."""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass, field
from types import SimpleNamespace

import nio
import pytest
from sqlalchemy import select

from exobot.core.intents import MailClass, ReceiveMail
from exobot.core.model import Actor, IncomingMail
from exobot.core.service import ServiceSettings, TicketService
from exobot.db.repository import SqlRepository
from exobot.db.tables import OutboxRow
from exobot.i18n import say
from exobot.mail.msgid import MessageIds
from exobot.matrix import bot as bot_module
from exobot.matrix.bot import BotSettings, MatrixBot, pills
from exobot.matrix.render import Renderer
from exobot.matrix.rooms import QueueRooms

BOT = "@exobot:example.org"
ANNA = "@anna:example.org"  # joined the queue room
PERE = "@pere:example.org"  # only invited
ROOM = "!suport:example.org"
_events = itertools.count(1)


@dataclass
class FakeNio:
    """What the bot reads from nio: rooms; what it sends: recorded."""

    rooms: dict[str, nio.MatrixRoom] = field(default_factory=dict)
    sent: list[tuple[str, dict]] = field(default_factory=list)

    async def room_send(self, room_id, event_type, content, **kwargs):  # noqa: ANN001
        self.sent.append((room_id, content))
        return SimpleNamespace(event_id=f"$sent{len(self.sent)}")


class FakeClient:
    def __init__(self) -> None:
        self.user_id = BOT
        self.nio = FakeNio()
        self.synced = True
        self.on_event = None
        self.on_invite = None

    async def send(self, room_id, event_type, content, tx_id=None):  # noqa: ANN001
        return await self.nio.room_send(room_id, event_type, content, tx_id=tx_id)


def make_bot(repo: SqlRepository, join_rule: str = "invite", operators=()) -> MatrixBot:
    client = FakeClient()
    room = nio.MatrixRoom(ROOM, BOT)
    room.join_rule = join_rule
    room.add_member(BOT, "exobot", None)
    room.add_member(ANNA, "Anna", None)
    room.add_member(PERE, "Pere", None, invited=True)
    client.nio.rooms[ROOM] = room
    rooms = QueueRooms({"suport": ROOM})
    rooms._room_of["suport"] = ROOM  # joined, as ensure_joined() would record it
    service = TicketService(
        repo,
        MessageIds("secret" * 4, "example.org"),
        ServiceSettings(queues=frozenset({"suport"}), own_address="suport@example.org"),
    )
    settings = BotSettings(
        prefix="suport",
        queues=frozenset({"suport"}),
        operators=frozenset(operators),
        support_address="suport@example.org",
    )
    return MatrixBot(client, rooms, service, repo, Renderer("ca"), settings)


def message(sender: str, body: str, formatted: str | None = None) -> nio.RoomMessageText:
    content = {"msgtype": "m.text", "body": body}
    if formatted is not None:
        content |= {"format": "org.matrix.custom.html", "formatted_body": formatted}
    return nio.RoomMessageText.from_dict(
        {
            "type": "m.room.message",
            "event_id": f"$e{next(_events)}",
            "sender": sender,
            "origin_server_ts": 1,
            "content": content,
        }
    )


async def answers(repo: SqlRepository) -> list[str]:
    """The bodies of the answers the bot queued, oldest first."""
    table = OutboxRow.__table__
    async with repo.connection() as conn:
        rows = await conn.execute(select(table.c.payload).order_by(table.c.id))
    return [r[0]["body"] for r in rows if r[0].get("type") == "answer"]


async def open_ticket(repo: SqlRepository, bot: MatrixBot) -> int:
    mail = IncomingMail(
        message_id="<m1@example.net>",
        sender="marta@example.net",
        sender_name="Marta",
        requestor="marta@example.net",
        subject="No tinc internet",
        body="Des d'ahir.",
    )
    outcome = await bot.service.apply(
        Actor.member(mail.sender), ReceiveMail(mail, MailClass.MEMBER)
    )
    return outcome.ticket


# --- who is an operator -------------------------------------------------------------------


async def test_only_joined_members_of_an_invite_only_room_are_operators(repo):
    bot = make_bot(repo)
    assert bot.is_operator(ANNA)
    assert not bot.is_operator(PERE)  # invited, not joined
    assert not bot.is_operator(BOT)
    assert not bot.is_operator("@stranger:example.org")
    room = bot.client.nio.rooms[ROOM]
    room.handle_membership(  # Pere accepts the invitation
        nio.RoomMemberEvent.from_dict(
            {
                "type": "m.room.member",
                "event_id": "$join",
                "sender": PERE,
                "state_key": PERE,
                "origin_server_ts": 1,
                "content": {"membership": "join"},
            }
        )
    )
    assert bot.is_operator(PERE)


async def test_an_invited_user_gets_the_refusal_and_changes_nothing(repo):
    bot = make_bot(repo)
    number = await open_ticket(repo, bot)
    await bot.handle_event(bot.client.nio.rooms[ROOM], message(PERE, f"!take suport#{number}"))
    assert await answers(repo) == [say("ca", "Sorry, only the support team's operators can use exobot's commands.")]
    assert (await repo.get_ticket(number)).owner is None
    await bot.handle_event(bot.client.nio.rooms[ROOM], message(ANNA, f"!take suport#{number}"))
    assert (await repo.get_ticket(number)).owner == ANNA


@pytest.mark.parametrize("rule", ["public", "restricted", "knock_restricted", "private", ""])
async def test_a_room_anybody_can_join_grants_nobody_rights(repo, rule, caplog):
    bot = make_bot(repo, join_rule=rule)
    assert not bot.is_operator(ANNA)
    number = await open_ticket(repo, bot)
    await bot.handle_event(bot.client.nio.rooms[ROOM], message(ANNA, f"!take suport#{number}"))
    assert (await repo.get_ticket(number)).owner is None
    with caplog.at_level(logging.WARNING, logger="exobot.matrix.bot"):
        await bot.warn_open_rooms()
        await bot.warn_open_rooms()  # once per start
    [(room_id, content)] = bot.client.nio.sent
    assert room_id == ROOM
    assert content["body"] == say("ca", "⚠️ This room is open (join rule “{rule}”): anybody can join it, so being a member gives nobody operator rights. Make it invite-only (or knock), or list the operators in matrix.operators.", rule=rule)
    assert "m.mentions" in content
    [record] = [r for r in caplog.records if ROOM in r.getMessage()]
    assert "not invite-only" in record.getMessage() and "matrix.operators" in record.getMessage()


async def test_a_knock_room_grants_its_joined_members(repo):
    bot = make_bot(repo, join_rule="knock")
    assert bot.is_operator(ANNA) and not bot.is_operator(PERE)
    await bot.warn_open_rooms()
    assert bot.client.nio.sent == []


async def test_a_room_made_public_while_running_is_told_and_closes_at_once(repo):
    bot = make_bot(repo)
    await bot.warn_open_rooms()
    assert bot.client.nio.sent == []
    room = bot.client.nio.rooms[ROOM]
    event = nio.RoomJoinRulesEvent.from_dict(
        {
            "type": "m.room.join_rules",
            "event_id": "$rules",
            "sender": ANNA,
            "state_key": "",
            "origin_server_ts": 1,
            "content": {"join_rule": "public"},
        }
    )
    room.handle_event(event)  # nio applies the state before the bot sees the event
    await bot.handle_event(room, event)
    assert not bot.is_operator(ANNA)
    assert len(bot.client.nio.sent) == 1
    assert "public" in bot.client.nio.sent[0][1]["body"]


async def test_with_an_operator_list_the_rooms_do_not_matter(repo):
    bot = make_bot(repo, join_rule="public", operators=[PERE])
    assert bot.is_operator(PERE) and not bot.is_operator(ANNA)
    await bot.warn_open_rooms()
    assert bot.client.nio.sent == []


# --- mention pills --------------------------------------------------------------------------


async def test_a_strangers_huge_message_is_not_parsed(repo, monkeypatch):
    bot = make_bot(repo)
    calls = []
    monkeypatch.setattr(bot_module, "pills", lambda text: calls.append(len(text)) or [])
    junk = '<a href="https://matrix.to/#/@x:y">' * 2000
    await bot.handle_event(bot.client.nio.rooms[ROOM], message(PERE, "!take 1", junk))
    await bot.handle_event(bot.client.nio.rooms[ROOM], message("@s:evil.example", "hola", junk))
    assert calls == []
    assert await answers(repo) == [say("ca", "Sorry, only the support team's operators can use exobot's commands.")]
    # An operator's message is read (that is what the spy sees).
    await bot.handle_event(bot.client.nio.rooms[ROOM], message(ANNA, "!help", "<b>!help</b>"))
    assert calls == [len("<b>!help</b>")]


def test_pills_are_read_from_well_formed_links_only():
    anna = '<a href="https://matrix.to/#/@anna:example.org">Anna <b>G</b></a>'
    assert pills(f"!give 3 {anna}") == [("@anna:example.org", "Anna <b>G</b>")]
    # An unclosed link is no pill, and a pill's label never swallows the next link.
    unclosed = '<a href="https://matrix.to/#/@x:y">x'
    assert pills(unclosed + anna) == [("@anna:example.org", "Anna <b>G</b>")]
    assert pills('<a href="https://matrix.to/#/@x:y" title="a<b">x</a>') == []


def test_sixty_kilobytes_of_unclosed_links_yield_nothing_and_each_scan_is_local():
    one = '<a href="https://matrix.to/#/@x:example.org">nom '
    junk = one * (60_000 // len(one))
    assert len(junk) > 59_000
    assert pills(junk) == []
    # Linear by construction: an attempt from one link can only reach as far as the next one,
    # so a match can never contain two link openings, whatever follows.
    closed = junk + "</a>"
    found = pills(closed)
    assert found == [("@x:example.org", "nom ")]
    assert pills(junk[: len(one) * 2] + "</a>") == found


# --- search --------------------------------------------------------------------------------


async def test_search_with_a_nul_byte_is_a_clear_error(repo):
    bot = make_bot(repo)
    await open_ticket(repo, bot)
    room = bot.client.nio.rooms[ROOM]
    await bot.handle_event(room, message(ANNA, "!cerca internet\x00"))
    await bot.handle_event(room, message(ANNA, "!search suport#99999999999"))
    await bot.handle_event(room, message(ANNA, "!show suport#99999999999"))
    await bot.handle_event(room, message(ANNA, "!search internet"))
    said = await answers(repo)
    assert said[0] == say("ca", "The search holds control characters (such as a NUL character) that cannot be searched: remove them and try again.")
    assert said[2] == say("ca", "There is no ticket {ticket}.", ticket="suport#99999999999")
    assert "suport#1" in said[3]


# --- a message the bot cannot decrypt ------------------------------------------------------


def unreadable(sender: str, relates: dict | None = None) -> nio.MegolmEvent:
    """An encrypted message whose room key never reached the bot (relations stay in clear)."""
    content = {
        "algorithm": "m.megolm.v1.aes-sha2",
        "ciphertext": "AwgA",
        "device_id": "DEV",
        "sender_key": "key",
        "session_id": "sess",
    }
    if relates is not None:
        content["m.relates_to"] = relates
    return nio.MegolmEvent.from_dict(
        {
            "type": "m.room.encrypted",
            "event_id": f"$e{next(_events)}",
            "sender": sender,
            "origin_server_ts": 1,
            "content": content,
        }
    )


async def test_an_operators_unreadable_message_is_answered_in_its_thread_and_never_runs(repo):
    bot = make_bot(repo)
    number = await open_ticket(repo, bot)
    room = bot.client.nio.rooms[ROOM]
    thread = {"rel_type": "m.thread", "event_id": "$root", "is_falling_back": True}
    event = unreadable(ANNA, thread)
    assert await bot.handle_undecryptable(room, event)
    table = OutboxRow.__table__
    async with repo.connection() as conn:
        (payload,) = (await conn.execute(select(table.c.payload))).scalars()
    assert payload["origin"] == {"room": ROOM, "event": event.event_id, "thread": "$root"}
    assert payload["body"] == bot.renderer.undecryptable().body
    assert "/discardsession" in payload["body"] and "torna'l a enviar" in payload["body"]
    # Its key comes after all: the same event, decrypted, is recognised and not run.
    content = {"msgtype": "m.text", "body": f"!take suport#{number}"}
    late = nio.RoomMessageText.from_dict(
        {**event.source, "type": "m.room.message", "content": content}
    )
    await bot.handle_event(room, late)
    assert (await repo.get_ticket(number)).owner is None
    assert len(await answers(repo)) == 1


async def test_unreadable_messages_not_from_an_operator_or_edits_are_not_answered(repo):
    bot = make_bot(repo)
    room = bot.client.nio.rooms[ROOM]
    assert not await bot.handle_undecryptable(room, unreadable(PERE))  # only invited
    assert not await bot.handle_undecryptable(room, unreadable("@stranger:example.org"))
    other = nio.MatrixRoom("!other:example.org", BOT)
    other.add_member(ANNA, "Anna", None)
    assert not await bot.handle_undecryptable(other, unreadable(ANNA))  # not a queue room
    edit = unreadable(ANNA, {"rel_type": "m.replace", "event_id": "$old"})
    assert await bot.handle_undecryptable(room, edit)  # an edit never runs: done, unsaid
    assert await answers(repo) == []
