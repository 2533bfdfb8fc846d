"""A `!procedure`, `!done` or `!cancel` delivered again after the plugin's commit and before
the channel recorded its answer (a crash, a database error) runs the handler again with the
same key (`ActionCall.key`): the key, recorded with the procedure's event in the same
transaction, makes it answer as the first time did, with no second procedure, no second
finish and no second mail to the member. A call without a key acts as it always did. On the
real bot over the real TicketService and repository (SQLite), and through the plugin's
handlers on SQLite and PostgreSQL."""

from __future__ import annotations

import nio
import pytest
from exobot_procedures import service, store
from sqlalchemy.exc import OperationalError

from exobot.core.model import EntryKind
from exobot.matrix.bot import BotSettings, MatrixBot
from exobot.matrix.render import Renderer
from exobot.matrix.rooms import QueueRooms
from tests.matrix.test_bot import ANNA, BOT, ROOM, FakeClient, answers, message

MEMBER = "ona@example.org"


def notices(history) -> list:
    return [e for e in history if e.kind is EntryKind.MAIL_OUT and e.data.get("notice")]


async def events(world) -> list[tuple[int, str]]:
    rows = await world.query("SELECT procedure_id, kind FROM procedures_events ORDER BY id")
    return [(row[0], row[1]) for row in rows]


def chat_bot(world) -> MatrixBot:
    """The bot over the world's service, repository and registry (the plugin's actions), with
    Anna in the invite-only suport room and a stand-in for the Matrix connection."""
    client = FakeClient()
    room = nio.MatrixRoom(ROOM, BOT)
    room.join_rule = "invite"
    room.add_member(BOT, "exobot", None)
    room.add_member(ANNA, "Anna", None)
    client.nio.rooms[ROOM] = room
    rooms = QueueRooms({"suport": ROOM})
    rooms._room_of["suport"] = ROOM  # joined, as ensure_joined() would record it
    settings = BotSettings(
        prefix="suport",
        queues=frozenset({"suport", "tresoreria"}),
        operators=frozenset(),
        support_address="suport@example.org",
    )
    return MatrixBot(
        client,
        rooms,
        world.service,
        world.repository,
        Renderer("ca"),
        settings,
        registry=world.manager.host.actions,
    )


def answer_fails_once(bot: MatrixBot, monkeypatch) -> list:  # noqa: ANN001
    """The first answer's transaction fails (the database went away after the handler's own
    commit): the event was not recorded as handled and is delivered again."""
    answer = bot._answer
    failures = [OperationalError("INSERT", {}, Exception("database is locked"))]

    async def failing_once(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        if failures:
            raise failures.pop()
        return await answer(*args, **kwargs)

    monkeypatch.setattr(bot, "_answer", failing_once)
    return failures


async def test_a_procedure_command_delivered_again_records_one_procedure_and_one_mail(
    make_world, monkeypatch
):
    world = await make_world()
    number = await world.mail(MEMBER)
    bot = chat_bot(world)
    room = bot.client.nio.rooms[ROOM]
    command = message(ANNA, f"!tramit suport#{number} banc 1234 dades a l'eina de gestió")
    failures = answer_fails_once(bot, monkeypatch)
    with pytest.raises(OperationalError):
        await bot.handle_event(room, command)
    assert not failures
    await bot.handle_event(room, command)  # the same event, delivered again
    assert await events(world) == [(1, "created")]
    assert len(notices(await world.history(number))) == 1
    [said] = await answers(world.repository)
    # The answer of the first time: recorded, moved (it was in suport), the member told.
    assert said.startswith("P-1 ") and "El ticket passa a tresoreria." in said, said
    # Delivered once more, now answered: nothing at all (the bot's own look-up).
    await bot.handle_event(room, command)
    assert len(await answers(world.repository)) == 1
    # Another command, its own event: a second procedure, as always.
    await bot.handle_event(room, message(ANNA, f"!tramit suport#{number} correu 1234"))
    assert await events(world) == [(1, "created"), (2, "created")]
    assert len(notices(await world.history(number))) == 2


@pytest.mark.parametrize(
    ("command", "kind", "word"),
    [
        ("!fet P-1 mandat signat", "done", "feta"),
        ("!anulla P-1 duplicat", "cancelled", "anul·lada"),
    ],
)
async def test_a_finish_delivered_again_finishes_and_mails_once_without_a_refusal(
    make_world, monkeypatch, command, kind, word
):
    world = await make_world()
    number = await world.mail(MEMBER)
    await service.create_procedure(
        world.plugin,
        ticket=number,
        type="banc",
        member="1234",
        service=None,
        note="",
        actor=ANNA,
        language="ca",
    )
    bot = chat_bot(world)
    room = bot.client.nio.rooms[ROOM]
    event = message(ANNA, command)
    answer_fails_once(bot, monkeypatch)
    with pytest.raises(OperationalError):
        await bot.handle_event(room, event)
    await bot.handle_event(room, event)
    assert await events(world) == [(1, "created"), (1, kind)]
    mailed = notices(await world.history(number))
    assert len(mailed) == 2 and word in mailed[-1].body
    [said] = await answers(world.repository)
    assert said.startswith("P-1 ") and "no és pendent" not in said, said
    # Another operator's later !fet/!anul·la (its own event) is still refused.
    await bot.handle_event(room, message(ANNA, command))
    assert await events(world) == [(1, "created"), (1, kind)]
    assert len(await answers(world.repository)) == 2


async def test_the_handler_called_again_with_the_same_key_acts_once(make_world, db_url):
    """Through the plugin's registered handler (as every channel calls it), on SQLite and
    PostgreSQL; calls without a key each act, as they always did."""
    world = await make_world(url=db_url)
    number = await world.mail(MEMBER)
    spec = world.manager.host.actions.get("procedure")
    text = "banc 1234 dades a l'eina de gestió"
    keyed = world.call("procedure", ticket=number, text=text, key="matrix:$once")
    first = await spec.handler(keyed)
    again = await spec.handler(keyed)
    assert again == first and "P-1" in first.body
    assert len(notices(await world.history(number))) == 1
    # Old-style calls, no key: two calls, two procedures, two mails.
    for _ in range(2):
        await spec.handler(world.call("procedure", ticket=number, text=text))
    assert await events(world) == [(1, "created"), (2, "created"), (3, "created")]
    assert len(notices(await world.history(number))) == 3
    # A finish with its key, twice: one done event, one more mail, the same answer.
    done = world.manager.host.actions.get("done").handler
    finish = world.call("done", text="P-1 signat", key="web:finish")
    assert await done(finish) == await done(finish)
    assert (await events(world))[-1] == (1, "done") and len(await events(world)) == 4
    assert len(notices(await world.history(number))) == 4


async def test_a_request_creating_it_meanwhile_is_answered_with_its_procedure(
    make_world, db_url, monkeypatch
):
    """The look-up misses (the same request, delivered again, is still running), then its
    insert meets the key already recorded: the transaction is rolled back and the procedure
    the other one created is the answer, on SQLite and PostgreSQL."""
    world = await make_world(url=db_url)
    number = await world.mail(MEMBER)
    values = dict(
        ticket=number,
        type="banc",
        member="1234",
        service=None,
        note="",
        actor=ANNA,
        language="ca",
        key="matrix:$race",
    )
    first = await service.create_procedure(world.plugin, **values)
    lookup = store.event_by_key
    missed: list[str] = []

    async def missing_once(conn, key):  # noqa: ANN001, ANN202
        if not missed:
            missed.append(key)
            return None
        return await lookup(conn, key)

    monkeypatch.setattr(store, "event_by_key", missing_once)
    again = await service.create_procedure(world.plugin, **values)
    assert missed == ["matrix:$race"]
    assert again == first
    assert await events(world) == [(1, "created")]
    assert len(notices(await world.history(number))) == 1
