"""Display names: the rooms' member names shown instead of Matrix ids (thread, `!show`,
errors), the one deliberate mention of a former owner, and the operators' list."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import nio

from exobot.core.model import Entry, EntryKind, Status, Ticket
from exobot.matrix.bot import BotSettings, MatrixBot
from exobot.matrix.content import Where, message_content
from exobot.matrix.names import NAME_CHARS, DisplayNames
from exobot.matrix.render import Renderer
from exobot.matrix.rooms import QueueRooms

NOW = datetime(2024, 5, 6, 10, 0, tzinfo=UTC)
ANNA = "@anna:example.org"
PERE = "@pere:example.org"
GONE = "@gone:example.org"


def room(room_id: str, **members: str | None) -> nio.MatrixRoom:
    """A nio room with members (user id → display name)."""
    made = nio.MatrixRoom(room_id, "@exobot:example.org")
    for user_id, name in members.items():
        made.add_member(user_id, name, None)
    return made


def ticket(**changes: object) -> Ticket:
    values: dict[str, object] = {
        "number": 3,
        "title": "No em funciona internet",
        "requestor": "marta@example.net",
        "queue": "suport",
        "status": Status.OPEN,
        "created_at": NOW - timedelta(hours=5),
        "updated_at": NOW,
        "owner": ANNA,
    }
    values.update(changes)
    return Ticket(**values)  # type: ignore[arg-type]


def test_a_name_comes_from_the_first_room_that_has_one_then_is_remembered():
    rooms = [room("!q", **{ANNA: None}), room("!other", **{ANNA: "Anna Puig"})]
    names = DisplayNames(lambda: rooms)
    assert names.display_name(ANNA) == "Anna Puig"
    rooms.clear()  # Anna left every room: the name seen stays
    assert names.name(ANNA) == "Anna Puig"
    assert names.name(PERE) == "pere"  # never seen: the localpart
    assert names.name("marta@example.net") == "marta@example.net"  # not a Matrix id
    assert names.name("exobot") == "exobot"


def test_a_hostile_display_name_is_one_bounded_line():
    names = DisplayNames(lambda: [room("!q", **{ANNA: "Anna\n\u202e@room " + "x" * 500})])
    shown = names.name(ANNA)
    assert "\n" not in shown and "\u202e" not in shown
    assert len(shown) <= NAME_CHARS


def test_the_thread_and_show_use_display_names():
    people = DisplayNames(lambda: [room("!q", **{ANNA: "Anna Puig", PERE: "Pere <b>Vila</b>"})])
    renderer = Renderer("ca", people=people)
    given = Entry(3, EntryKind.OWNER, ANNA, NOW, None, {"from": None, "to": PERE})
    message = renderer.announcement(ticket(owner=PERE), [given])
    assert message.body == "Anna Puig ha assignat suport#3 a Pere <b>Vila</b>"
    assert "Pere &lt;b&gt;Vila&lt;/b&gt;" in message.html
    assert message.mentions == ()
    show = renderer.show(ticket(), NOW)
    assert "Anna Puig (@anna:example.org)" in show.body
    refused = renderer.error("owner_not_operator", {"owner": PERE})
    assert refused.body.startswith("Pere <b>Vila</b> (@pere:example.org) no és operador")


def test_taking_from_someone_mentions_only_them():
    people = DisplayNames(lambda: [room("!q", **{ANNA: "Anna Puig", PERE: "Pere Vila"})])
    renderer = Renderer("en", people=people)
    taken = Entry(3, EntryKind.OWNER, ANNA, NOW, None, {"from": PERE, "to": ANNA})
    message = renderer.announcement(ticket(), [taken])
    assert message.body == "Anna Puig took suport#3 from Pere Vila"
    assert '<a href="https://matrix.to/#/@pere:example.org">Pere Vila</a>' in message.html
    assert message.mentions == (PERE,)
    content = message_content(message, Where("!q", "$root"))
    assert content["m.mentions"] == {"user_ids": [PERE]}
    # The history shows the same words without a ping.
    history = renderer.history(ticket(), [taken], NOW)
    assert "from Pere Vila" in history.body and "matrix.to" not in history.html


def test_a_plain_take_and_every_other_post_mention_nobody():
    renderer = Renderer("en")
    taken = Entry(3, EntryKind.OWNER, ANNA, NOW, None, {"from": None, "to": ANNA})
    message = renderer.announcement(ticket(), [taken])
    assert message.body == f"{ANNA} took suport#3"  # no names known: the id
    assert message_content(message, Where("!q"))["m.mentions"] == {}


class _Client:
    """The bits of MatrixClient the bot reads here."""

    user_id = "@exobot:example.org"

    def __init__(self, rooms: dict[str, nio.MatrixRoom]) -> None:
        self.nio = SimpleNamespace(rooms=rooms)
        self.synced = True  # the rooms are known
        self.on_event = self.on_invite = None


def bot(rooms: dict[str, nio.MatrixRoom], operators: frozenset[str] = frozenset()) -> MatrixBot:
    queue_rooms = QueueRooms({"suport": "#suport:example.org"})
    queue_rooms._room_of["suport"] = "!q"  # as if joined (ensure_joined needs a homeserver)
    settings = BotSettings("suport", frozenset({"suport"}), operators, "suport@example.org")
    renderer = Renderer("ca")
    service = SimpleNamespace(clock=None)
    return MatrixBot(_Client(rooms), queue_rooms, service, None, renderer, settings)


def test_operators_are_the_joined_members_of_closed_queue_rooms_by_name():
    queue = room("!q", **{ANNA: "Zoe Anna", PERE: "Pere Vila", "@exobot:example.org": "bot"})
    queue.join_rule = "invite"
    queue.add_member("@invited:example.org", "Invitada", None, invited=True)
    other = room("!elsewhere", **{"@x:example.org": "X"})
    got = bot({"!q": queue, "!elsewhere": other}).operators()
    assert got == [(PERE, "Pere Vila"), (ANNA, "Zoe Anna")]
    queue.join_rule = "public"  # an open room grants nobody anything
    assert bot({"!q": queue}).operators() == []


def test_configured_operators_are_the_whole_list():
    queue = room("!q", **{ANNA: "Anna Puig"})
    got = bot({"!q": queue}, frozenset({ANNA, GONE})).operators()
    assert got == [(ANNA, "Anna Puig"), (GONE, "gone")]
