"""A digest's posts record the tickets whose titles they showed (chat_posts.tickets), so that
erasing a member redacts the digests that named their tickets; a digest retried after its
first room's post records them with each post. On SQLite and PostgreSQL, with the chat worker and a homeserver that records."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import insert, select
from stack_fixtures import app_repository

from exobot.core.actions import new_registry
from exobot.core.model import Status
from exobot.core.service import CHAT
from exobot.db.chat import CP
from exobot.db.outbox import O
from exobot.matrix.poster import ChatSender
from exobot.matrix.render import Renderer
from exobot.matrix.rooms import QueueRooms
from tests.matrix.test_move_retry import (
    ROOMS,
    Homeserver,
    open_ticket,
    retry,
    service,
    state_of,
)


@pytest.fixture
async def repo(db_url):  # noqa: ANN001, ANN201 - the App's repository, on SQLite and PostgreSQL
    async with app_repository(db_url) as repository:
        yield repository


@pytest.fixture
def homeserver() -> Homeserver:
    return Homeserver()


@pytest.fixture
def sender(repo, homeserver: Homeserver) -> ChatSender:  # noqa: ANN001
    """The chat worker, in both queue rooms (joined already)."""
    rooms = QueueRooms(ROOMS)
    rooms._room_of = dict(ROOMS)
    renderer = Renderer("ca", "suport", ZoneInfo("Europe/Madrid"), new_registry())
    return ChatSender(repo, homeserver, rooms, renderer, default_queue="suport")  # type: ignore[arg-type]


async def queue_digest(repo) -> int:  # noqa: ANN001
    now = datetime.now(UTC)
    async with repo.connection() as conn:
        return (
            await conn.execute(
                insert(O)
                .values(
                    kind=CHAT, ticket_id=None, payload={"type": "digest", "date": "2026-12-03"},
                    state="pending", attempts=0, next_try_at=now, created_at=now,
                )
                .returning(O.c.id)
            )
        ).scalar_one()  # fmt: skip


async def shown_by_post(repo, row: int) -> list[list[int] | None]:  # noqa: ANN001
    """The tickets each of the row's posts recorded, by part."""
    async with repo.connection() as conn:
        rows = await conn.execute(
            select(CP.c.tickets).where(CP.c.outbox_id == row).order_by(CP.c.part)
        )
        return [tickets for (tickets,) in rows]


async def test_a_digest_records_the_tickets_it_listed(repo, sender, homeserver):
    svc = service(repo, announce=False)
    waiting = await open_ticket(svc)
    row = await queue_digest(repo)
    await sender.deliver_due()
    assert await state_of(repo, row) == "sent"
    assert {post.room for post in homeserver.of_row(row).values()} == set(ROOMS.values())
    assert await shown_by_post(repo, row) == [[waiting], [waiting]]


async def test_a_digest_retried_after_its_first_post_records_them_once(repo, sender, homeserver):
    svc = service(repo, announce=False)
    waiting = await open_ticket(svc)
    async with repo.connection() as conn:  # a stalled ticket is listed too
        await conn.exec_driver_sql(
            f"UPDATE tickets SET status = '{Status.STALLED.value}' WHERE id = {waiting}"
        )
    row = await queue_digest(repo)
    homeserver.failing.add(f"exobot-{row}-2")  # the second room's post fails once
    await sender.deliver_due()
    assert await state_of(repo, row) == "pending"
    assert await shown_by_post(repo, row) == [[waiting]]  # with the first post
    await retry(repo, sender, row)
    assert await state_of(repo, row) == "sent"
    assert len(homeserver.of_row(row)) == 2
    assert await shown_by_post(repo, row) == [[waiting], [waiting]]


async def test_a_digest_listing_nothing_records_nothing(repo, sender, homeserver):
    row = await queue_digest(repo)
    await sender.deliver_due()
    assert await state_of(repo, row) == "sent"
    assert await shown_by_post(repo, row) == [None, None]
