"""A privacy erasure's redactions where the homeserver forbids some: the others are made, the
row is given up at once naming how many were refused (the posts still show), and a retry
redacts only what is left, each post once. On SQLite and on PostgreSQL (where a row is
claimed while it is sent and its parts are recorded beside the claim)."""

from __future__ import annotations

from types import SimpleNamespace

import nio
import pytest
from sqlalchemy import select

from exobot.core.service import CHAT, REDACT
from exobot.db import outbox
from exobot.db.chat import CP
from exobot.db.outbox import O
from exobot.matrix.poster import ChatSender

ALLOWED, FORBIDDEN = "!allowed:hs", "!forbidden:hs"
PAIRS = [[ALLOWED, "$one"], [FORBIDDEN, "$two"], [ALLOWED, "$three"]]


class Homeserver:
    """Redacts in the rooms it allows, refuses with M_FORBIDDEN elsewhere; records each call."""

    def __init__(self) -> None:
        self.allowed = {ALLOWED}
        self.calls: list[str] = []

    async def room_redact(self, room_id: str, event_id: str, *, reason, tx_id):  # noqa: ANN001, ANN201
        self.calls.append(event_id)
        if room_id in self.allowed:
            return nio.RoomRedactResponse(f"$redaction-of-{event_id[1:]}", room_id)
        return nio.RoomRedactError("You don't have permission to redact events", "M_FORBIDDEN")


@pytest.fixture
def repo(app_repo):  # noqa: ANN001, ANN201 - the repository as the App builds it, both backends
    return app_repo


async def state_of(repo, item: int) -> tuple:  # noqa: ANN001
    async with repo.connection() as conn:
        row = (await conn.execute(select(O).where(O.c.id == item))).one()
        parts = await conn.execute(select(CP.c.part, CP.c.event_id).where(CP.c.outbox_id == item))
        return row.state, row.attempts, row.last_error, sorted(parts)


async def test_forbidden_redactions_are_given_up_at_once_and_only_they_are_retried(repo):
    homeserver = Homeserver()
    client = SimpleNamespace(nio=homeserver)
    sender = ChatSender(repo, client, None, None, default_queue="suport")  # type: ignore[arg-type]

    async def work(uow) -> int:  # noqa: ANN001
        return await uow.queue_outbox(CHAT, None, {"type": REDACT, "event_ids": PAIRS})

    item = await repo.run(work)
    await sender.deliver_due()
    state, attempts, error, parts = await state_of(repo, item)
    assert homeserver.calls == ["$one", "$two", "$three"]  # the refusal stops none of the others
    assert (state, attempts) == ("failed", 1)  # no retry mends a permission
    assert error == (
        "the homeserver refused to redact 1 of 3 posts: "
        "You don't have permission to redact events (M_FORBIDDEN)"
    )
    assert parts == [(1, "$redaction-of-one"), (3, "$redaction-of-three")]  # not part 2

    homeserver.allowed.add(FORBIDDEN)  # a moderator gave the bot the power
    homeserver.calls.clear()
    async with repo.connection() as conn:
        assert await outbox.retry_failed(conn, item, sender.clock.now()) is not None
    await sender.deliver_due()
    state, _attempts, _error, parts = await state_of(repo, item)
    assert homeserver.calls == ["$two"]  # what was left, once
    assert state == "sent"
    assert [part for part, _event in parts] == [1, 2, 3]
