"""Queue rooms configured by alias, on a real SQLite database with a stand-in for nio: the
last resolved room id of each alias is remembered in the state table and serves the queue
while the homeserver's directory fails; with nothing remembered, the queue stays unjoined
and messages from a room that may be it are logged, not dropped silently."""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass, field
from types import SimpleNamespace

import nio

from exobot.core.service import ServiceSettings, TicketService
from exobot.db.repository import SqlRepository
from exobot.db.state import get_state, set_state
from exobot.mail.msgid import MessageIds
from exobot.matrix.bot import BotSettings, MatrixBot
from exobot.matrix.render import Renderer
from exobot.matrix.rooms import ALIAS_KEY, QueueRooms
from tests.matrix.test_bot import open_ticket

BOT = "@exobot:example.org"
ANNA = "@anna:example.org"
ALIAS = "#suport:example.org"
ROOM = "!suport:example.org"
MOVED = "!suport2:example.org"
_events = itertools.count(1)


@dataclass
class FakeNio:
    """The directory answers `directory[alias]`, or a 502 when the alias is missing there."""

    directory: dict[str, str] = field(default_factory=dict)
    rooms: dict[str, nio.MatrixRoom] = field(default_factory=dict)
    joinable: bool = True
    joins: list[str] = field(default_factory=list)
    sent: list[tuple[str, dict]] = field(default_factory=list)

    async def room_resolve_alias(self, alias: str):  # noqa: ANN201
        if alias in self.directory:
            return nio.RoomResolveAliasResponse(alias, self.directory[alias], ["example.org"])
        return nio.RoomResolveAliasError("502 Bad Gateway", "502")

    async def join(self, room_id: str):  # noqa: ANN201
        self.joins.append(room_id)
        if not self.joinable:
            return nio.JoinError("not invited", "M_FORBIDDEN")
        self.rooms[room_id] = joined_room(room_id)
        return nio.JoinResponse(room_id)

    async def room_send(self, room_id, event_type, content, **kwargs):  # noqa: ANN001, ANN201
        self.sent.append((room_id, content))
        return SimpleNamespace(event_id=f"$sent{len(self.sent)}")


class FakeClient:
    def __init__(self, fake: FakeNio) -> None:
        self.user_id = BOT
        self.nio = fake
        self.synced = True
        self.on_event = None
        self.on_invite = None

    async def send(self, room_id, event_type, content, tx_id=None):  # noqa: ANN001, ANN201
        return await self.nio.room_send(room_id, event_type, content, tx_id=tx_id)


def joined_room(room_id: str) -> nio.MatrixRoom:
    """A room the bot sits in with Anna, a volunteer."""
    room = nio.MatrixRoom(room_id, BOT)
    room.join_rule = "invite"
    room.add_member(BOT, "exobot", None)
    room.add_member(ANNA, "Anna", None)
    return room


def make_bot(repo: SqlRepository, client: FakeClient, rooms: QueueRooms) -> MatrixBot:
    service = TicketService(
        repo,
        MessageIds("secret" * 4, "example.org"),
        ServiceSettings(queues=frozenset({"suport"}), own_address="suport@example.org"),
    )
    settings = BotSettings(
        prefix="suport",
        queues=frozenset({"suport"}),
        operators=frozenset(),
        support_address="suport@example.org",
    )
    return MatrixBot(client, rooms, service, repo, Renderer("ca"), settings)


def message(sender: str, body: str) -> nio.RoomMessageText:
    return nio.RoomMessageText.from_dict(
        {
            "type": "m.room.message",
            "event_id": f"$e{next(_events)}",
            "sender": sender,
            "origin_server_ts": 1,
            "content": {"msgtype": "m.text", "body": body},
        }
    )


async def remembered(repo: SqlRepository, alias: str) -> str | None:
    async with repo.connection() as conn:
        return await get_state(conn, ALIAS_KEY + alias)


def lines(caplog, level: int) -> list[str]:  # noqa: ANN001
    return [r.getMessage() for r in caplog.records if r.levelno == level]


async def test_a_remembered_alias_serves_the_queue_while_the_directory_fails(repo, caplog):
    # First run: the alias resolves, and its room id is remembered.
    first = FakeNio(directory={ALIAS: ROOM})
    assert await QueueRooms({"suport": ALIAS}, repo).ensure_joined(FakeClient(first))
    assert await remembered(repo, ALIAS) == ROOM

    # Next start: the directory answers 502; the bot still sits in the room from before.
    down = FakeNio(rooms={ROOM: joined_room(ROOM)})
    client = FakeClient(down)
    rooms = QueueRooms({"suport": ALIAS}, repo)
    with caplog.at_level(logging.WARNING, logger="exobot.matrix.rooms"):
        assert not await rooms.ensure_joined(client)  # the alias is tried again later
    assert rooms.room_for("suport") == ROOM
    assert rooms.queue_of(ROOM) == "suport"
    assert rooms.is_queue_room(ROOM)
    assert rooms.unjoined() == []
    assert down.joins == []  # joined already
    [warning] = lines(caplog, logging.WARNING)
    assert ALIAS in warning and "502 Bad Gateway" in warning and ROOM in warning
    assert lines(caplog, logging.ERROR) == []

    # A volunteer's command in the room is handled, not dropped.
    bot = make_bot(repo, client, rooms)
    number = await open_ticket(repo, bot)
    await bot.handle_event(down.rooms[ROOM], message(ANNA, f"!take suport#{number}"))
    assert (await repo.get_ticket(number)).owner == ANNA

    # Still down at the retry: no new warning, still incomplete.
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="exobot.matrix.rooms"):
        assert not await rooms.ensure_joined(client)
    assert caplog.records == []
    assert rooms.room_for("suport") == ROOM


async def test_the_alias_moved_while_the_directory_was_down(repo):
    async with repo.connection() as conn:
        await set_state(conn, ALIAS_KEY + ALIAS, ROOM)
    fake = FakeNio(rooms={ROOM: joined_room(ROOM)})
    client = FakeClient(fake)
    rooms = QueueRooms({"suport": ALIAS}, repo)
    assert not await rooms.ensure_joined(client)
    assert rooms.room_for("suport") == ROOM

    fake.directory[ALIAS] = MOVED  # the directory is back, the alias points elsewhere now
    assert await rooms.ensure_joined(client)
    assert fake.joins == [MOVED]
    assert rooms.room_for("suport") == MOVED
    assert rooms.queue_of(ROOM) is None
    assert await remembered(repo, ALIAS) == MOVED
    assert await rooms.ensure_joined(client)  # complete: nothing is tried again
    assert fake.joins == [MOVED]


async def test_a_remembered_room_that_cannot_be_joined_is_retried(repo):
    async with repo.connection() as conn:
        await set_state(conn, ALIAS_KEY + ALIAS, ROOM)
    fake = FakeNio(joinable=False)  # the bot is no longer in the remembered room
    client = FakeClient(fake)
    rooms = QueueRooms({"suport": ALIAS}, repo)
    assert not await rooms.ensure_joined(client)
    assert rooms.room_for("suport") is None
    fake.joinable = True
    assert not await rooms.ensure_joined(client)  # joined; the alias still to resolve
    assert rooms.room_for("suport") == ROOM
    assert fake.joins == [ROOM, ROOM]


async def test_with_nothing_remembered_the_queue_waits_and_its_messages_are_logged(repo, caplog):
    fake = FakeNio(rooms={ROOM: joined_room(ROOM)})  # joined from an earlier run
    client = FakeClient(fake)
    rooms = QueueRooms({"suport": ALIAS}, repo)
    with caplog.at_level(logging.WARNING, logger="exobot.matrix.rooms"):
        assert not await rooms.ensure_joined(client)
    assert rooms.room_for("suport") is None
    assert not rooms.is_queue_room(ROOM)
    assert rooms.unjoined() == [ALIAS]
    [error] = lines(caplog, logging.ERROR)
    assert ALIAS in error and "502 Bad Gateway" in error

    bot = make_bot(repo, client, rooms)
    number = await open_ticket(repo, bot)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="exobot.matrix.bot"):
        await bot.handle_event(fake.rooms[ROOM], message(ANNA, f"!take suport#{number}"))
        await bot.handle_event(fake.rooms[ROOM], message(ANNA, f"!take suport#{number}"))
    [warning] = lines(caplog, logging.WARNING)  # once per room, not per message
    assert ROOM in warning and ALIAS in warning
    assert (await repo.get_ticket(number)).owner is None  # today's behaviour: not handled

    # The directory is back: the room serves the queue, and other rooms are no suspects.
    fake.directory[ALIAS] = ROOM
    assert await rooms.ensure_joined(client)
    assert await remembered(repo, ALIAS) == ROOM
    await bot.handle_event(fake.rooms[ROOM], message(ANNA, f"!take suport#{number}"))
    assert (await repo.get_ticket(number)).owner == ANNA
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="exobot.matrix.bot"):
        await bot.handle_event(joined_room("!other:example.org"), message(ANNA, "hola"))
    assert caplog.records == []


async def test_with_nothing_remembered_a_joined_room_naming_the_alias_serves_the_queue(repo):
    """A first start (or a new database) while the directory fails: the room the bot sits in
    whose canonical alias is the configured one serves the queue."""
    fake = FakeNio(rooms={ROOM: joined_room(ROOM), MOVED: joined_room(MOVED)})
    fake.rooms[ROOM].canonical_alias = ALIAS
    fake.rooms[MOVED].canonical_alias = "#altres:example.org"
    rooms = QueueRooms({"suport": ALIAS}, repo)
    assert not await rooms.ensure_joined(FakeClient(fake))  # the alias is tried again
    assert rooms.room_for("suport") == ROOM
    assert fake.joins == []
