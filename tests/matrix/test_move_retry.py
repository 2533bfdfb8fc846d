"""A chat row retried after some of its parts were posted: its later parts go to the thread
the row started from, never to one its own first part opened. A move's new root is recorded
as the ticket's newest thread by the first attempt; the retry must still put the pointer in
the old thread and edit the old root, and leave the new root alone. A row that opened a
ticket's first thread (a late root) keeps posting into it, in the room it went to, even when
the ticket moved to another queue in between. Each part is posted once overall."""

from __future__ import annotations

from types import SimpleNamespace
from zoneinfo import ZoneInfo

import nio
import pytest
from sqlalchemy import select
from stack_fixtures import app_repository

from exobot.core import intents as i
from exobot.core.actions import new_registry
from exobot.core.model import Actor, IncomingMail
from exobot.core.service import CHAT, ServiceSettings, TicketService
from exobot.db import outbox
from exobot.db.chat import C
from exobot.db.outbox import O
from exobot.mail.msgid import MessageIds
from exobot.matrix.poster import ChatSender
from exobot.matrix.render import Renderer
from exobot.matrix.rooms import QueueRooms

ROOMS = {"suport": "!suport:hs", "tresoreria": "!tresoreria:hs"}
A, B = ROOMS["suport"], ROOMS["tresoreria"]


class Homeserver:
    """Takes the bot's sends, each with a new event id, and records them; a send whose
    transaction id is in `failing` raises once instead (the homeserver was away)."""

    def __init__(self) -> None:
        self.nio = SimpleNamespace(user_id="@exobot:hs", rooms={})
        self.failing: set[str] = set()
        self.sent: list[SimpleNamespace] = []

    async def send(self, room_id: str, event_type: str, content: dict, tx_id: str | None = None):  # noqa: ANN201
        if tx_id in self.failing:
            self.failing.discard(tx_id)
            raise ConnectionError("the homeserver is away (test)")
        event_id = f"$event{len(self.sent) + 1}"
        relates = content.get("m.relates_to") or {}
        self.sent.append(
            SimpleNamespace(
                tx_id=tx_id,
                room=room_id,
                event=event_id,
                rel=relates.get("rel_type"),
                to=relates.get("event_id"),
            )
        )
        return nio.RoomSendResponse(event_id, room_id)

    def of_row(self, row: int) -> dict[int, SimpleNamespace]:
        """The row's posts by part number; a part posted twice fails the test."""
        prefix = f"exobot-{row}-"
        posts = [post for post in self.sent if post.tx_id.startswith(prefix)]
        parts = [int(post.tx_id.removeprefix(prefix)) for post in posts]
        assert len(parts) == len(set(parts)), f"a part of row {row} was posted twice: {parts}"
        return dict(zip(parts, posts, strict=True))


@pytest.fixture
async def repo(db_url):  # noqa: ANN001, ANN201 - the App's repository, on SQLite and PostgreSQL
    async with app_repository(db_url) as repository:
        yield repository


def service(repo, *, announce: bool) -> TicketService:  # noqa: ANN001
    settings = ServiceSettings(queues=frozenset(ROOMS), announce=announce)
    return TicketService(repo, MessageIds("s" * 32, "example.org"), settings)


@pytest.fixture
def homeserver() -> Homeserver:
    return Homeserver()


@pytest.fixture
def sender(repo, homeserver) -> ChatSender:  # noqa: ANN001
    rooms = QueueRooms(ROOMS)
    rooms._room_of = dict(ROOMS)  # joined already (QueueRooms.ensure_joined)
    renderer = Renderer("ca", "suport", ZoneInfo("Europe/Madrid"), new_registry())
    return ChatSender(repo, homeserver, rooms, renderer, default_queue="suport")  # type: ignore[arg-type]


async def open_ticket(svc: TicketService) -> int:
    mail = IncomingMail(
        message_id="<m1@example.net>",
        sender="marta@example.net",
        sender_name="Marta",
        requestor="marta@example.net",
        subject="Internet",
        body="Hola, no tinc connexió.",
    )
    result = await svc.apply(Actor.member(mail.sender), i.ReceiveMail(mail, i.MailClass.MEMBER))
    return result.ticket


async def pending_ticket_rows(repo) -> list[int]:  # noqa: ANN001
    """The chat rows waiting to be posted, root edits (due later) left out."""
    async with repo.connection() as conn:
        rows = await conn.execute(
            select(O.c.id, O.c.payload).where(O.c.kind == CHAT, O.c.state == "pending")
        )
        return [row_id for row_id, payload in rows if payload.get("type") != "root_edit"]


async def retry(repo, sender: ChatSender, row: int) -> None:  # noqa: ANN001
    """Make the failed row due now (no waiting for its backoff) and deliver again."""
    async with repo.connection() as conn:
        await outbox.hurry(conn, row, sender.clock.now())
    await sender.deliver_due()


async def state_of(repo, row: int) -> str:  # noqa: ANN001
    async with repo.connection() as conn:
        return (await conn.execute(select(O.c.state).where(O.c.id == row))).scalar_one()


async def threads_of(repo, ticket: int) -> list[tuple[str, str]]:  # noqa: ANN001
    async with repo.connection() as conn:
        rows = await conn.execute(
            select(C.c.room_id, C.c.root_event_id).where(C.c.ticket_id == ticket).order_by(C.c.id)
        )
        return [tuple(row) for row in rows]


async def move_with_a_failing_part(repo, sender: ChatSender, homeserver: Homeserver, part: int):  # noqa: ANN001, ANN201
    """A ticket announced in A, then moved to B with part `part` of the move's row failing
    once; returns the ticket, A's root event and the move's row once it was retried."""
    svc = service(repo, announce=True)
    ticket = await open_ticket(svc)
    await sender.deliver_due()
    (a_root,) = homeserver.sent
    assert a_root.room == A
    await svc.apply(Actor.operator("@anna:hs"), i.Move(ticket, "tresoreria"))
    (row,) = await pending_ticket_rows(repo)
    homeserver.failing.add(f"exobot-{row}-{part}")
    await sender.deliver_due()
    assert await state_of(repo, row) == "pending"  # to be retried
    assert not homeserver.failing  # the failure did happen
    await retry(repo, sender, row)
    assert await state_of(repo, row) == "sent"
    return ticket, a_root.event, row


async def assert_moved_once(repo, homeserver: Homeserver, ticket: int, a_root: str, row: int):  # noqa: ANN001
    posts = homeserver.of_row(row)
    assert sorted(posts) == [1, 2, 3]
    new_root, pointer, edit = posts[1], posts[2], posts[3]
    assert (new_root.room, new_root.rel) == (B, None)
    assert (pointer.room, pointer.rel, pointer.to) == (A, "m.thread", a_root)
    assert (edit.room, edit.rel, edit.to) == (A, "m.replace", a_root)
    # B's root is the ticket's thread now, and nothing was said in it or done to it.
    assert not [post for post in homeserver.sent if post.to == new_root.event]
    assert await threads_of(repo, ticket) == [(A, a_root), (B, new_root.event)]


@pytest.mark.parametrize("part", [2, 3], ids=["pointer_failed", "root_edit_failed"])
async def test_a_retried_move_points_from_the_old_thread_and_edits_the_old_root(
    repo,  # noqa: ANN001
    sender: ChatSender,
    homeserver: Homeserver,
    part: int,
) -> None:
    """Part 2 (the pointer in the old thread) or part 3 (the old root's edit) failed once."""
    ticket, a_root, row = await move_with_a_failing_part(repo, sender, homeserver, part=part)
    await assert_moved_once(repo, homeserver, ticket, a_root, row)


@pytest.mark.parametrize("moved_between", [False, True], ids=["same_queue", "moved_between"])
@pytest.mark.parametrize("kind", ["thread_post", "ticket"])
async def test_a_late_root_row_retried_posts_into_the_thread_its_part_1_opened(
    repo,  # noqa: ANN001
    sender: ChatSender,
    homeserver: Homeserver,
    kind: str,
    moved_between: bool,
) -> None:
    quiet = service(repo, announce=False)  # the ticket gets no thread when it is opened
    ticket = await open_ticket(quiet)
    if kind == "thread_post":  # a plugin's note
        row = await repo.run(
            lambda uow: uow.queue_outbox(CHAT, ticket, {"type": "thread_post", "body": "Nota"})
        )
    else:  # a change announced once the ticket's queue has a room: a comment
        loud = service(repo, announce=True)
        await loud.apply(Actor.operator("@anna:hs"), i.Comment(ticket, "Ho miro demà"))
        (row,) = await pending_ticket_rows(repo)
    homeserver.failing.add(f"exobot-{row}-2")
    await sender.deliver_due()
    assert await state_of(repo, row) == "pending"
    if moved_between:
        # Moved before the retry (without announcing it: no row of its own comes first).
        await quiet.apply(Actor.operator("@anna:hs"), i.Move(ticket, "tresoreria"))
    await retry(repo, sender, row)
    assert await state_of(repo, row) == "sent"
    posts = homeserver.of_row(row)
    assert sorted(posts) == [1, 2]
    root, post = posts[1], posts[2]
    assert (root.room, root.rel) == (A, None)
    assert (post.room, post.rel, post.to) == (A, "m.thread", root.event)
    assert await threads_of(repo, ticket) == [(A, root.event)]
