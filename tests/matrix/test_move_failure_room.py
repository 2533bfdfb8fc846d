"""A chat row given up for good is reported on its ticket with the room of the post that could
not be made. A move posts in two rooms: its new root in the new queue's room (part 1), then
the pointer (part 2) and the old root's edit (part 3) in the old thread. Once the new root is
posted it is the ticket's current thread, yet a pointer or an edit given up failed in the old
room; a new root given up failed in the new one. On SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from stack_fixtures import app_repository

from exobot.core import intents as i
from exobot.core.actions import new_registry
from exobot.core.model import Actor, EntryKind
from exobot.db.tables import EntryRow
from exobot.delivery import RetryPolicy
from exobot.matrix.poster import ChatSender
from exobot.matrix.render import Renderer
from exobot.matrix.rooms import QueueRooms
from tests.matrix.test_move_retry import (
    ROOMS,
    Homeserver,
    open_ticket,
    pending_ticket_rows,
    service,
    state_of,
)

E = EntryRow.__table__
A, B = ROOMS["suport"], ROOMS["tresoreria"]
ONE_ATTEMPT = RetryPolicy(max_attempts=1, base=timedelta(seconds=5))


@pytest.fixture
async def repo(db_url):  # noqa: ANN001, ANN201 - the App's repository, on SQLite and PostgreSQL
    async with app_repository(db_url) as repository:
        yield repository


@pytest.fixture
def homeserver() -> Homeserver:
    return Homeserver()


def reporting_sender(repo, homeserver: Homeserver, svc) -> ChatSender:  # noqa: ANN001
    """A chat worker that gives a row up at its first failure and reports it through `svc`."""
    rooms = QueueRooms(ROOMS)
    rooms._room_of = dict(ROOMS)  # joined already (QueueRooms.ensure_joined)
    renderer = Renderer("ca", "suport", ZoneInfo("Europe/Madrid"), new_registry())
    return ChatSender(
        repo,
        homeserver,  # type: ignore[arg-type]
        rooms,
        renderer,
        default_queue="suport",
        retry=ONE_ATTEMPT,
        service=svc,
    )


async def reported_rooms(repo, ticket: int, row: int) -> list[str]:  # noqa: ANN001
    async with repo.connection() as conn:
        rows = await conn.execute(
            select(E.c.data).where(
                E.c.ticket_id == ticket, E.c.kind == EntryKind.DELIVERY_FAILED.value
            )
        )
        return [data["recipient"] for (data,) in rows if data.get("outbox_id") == row]


@pytest.mark.parametrize(
    ("part", "room"),
    [(1, B), (2, A), (3, A)],
    ids=["new_root_failed", "pointer_failed", "old_root_edit_failed"],
)
async def test_a_move_given_up_is_reported_with_the_room_its_failed_post_was_for(
    repo,  # noqa: ANN001
    homeserver: Homeserver,
    part: int,
    room: str,
) -> None:
    svc = service(repo, announce=True)
    sender = reporting_sender(repo, homeserver, svc)
    ticket = await open_ticket(svc)
    await sender.deliver_due()
    (a_root,) = homeserver.sent
    assert a_root.room == A
    await svc.apply(Actor.operator("@anna:hs"), i.Move(ticket, "tresoreria"))
    (row,) = await pending_ticket_rows(repo)
    homeserver.failing.add(f"exobot-{row}-{part}")

    await sender.deliver_due()

    assert not homeserver.failing  # the failure did happen
    assert await state_of(repo, row) == "failed"
    assert sorted(homeserver.of_row(row)) == list(range(1, part))  # the parts before it
    assert await reported_rooms(repo, ticket, row) == [room]


async def test_a_post_in_the_thread_given_up_is_reported_with_the_threads_room(
    repo,  # noqa: ANN001
    homeserver: Homeserver,
) -> None:
    """Not a move: the room is the ticket's thread, as it always was."""
    svc = service(repo, announce=True)
    sender = reporting_sender(repo, homeserver, svc)
    ticket = await open_ticket(svc)
    await sender.deliver_due()
    await svc.apply(Actor.operator("@anna:hs"), i.Comment(ticket, "Ho miro demà"))
    (row,) = await pending_ticket_rows(repo)
    homeserver.failing.add(f"exobot-{row}-2")  # part 1 is the root's number, not taken

    await sender.deliver_due()

    assert await state_of(repo, row) == "failed"
    assert await reported_rooms(repo, ticket, row) == [A]
