"""The homeserver away for days while exobot runs: the sweep goes on queueing an alert every
`repeat_every` and a digest every day. When it is back, the chat worker posts only what still
holds: one alert per ticket still waiting (the newest), none about a ticket taken or resolved
meanwhile or stalled anew since, and one digest (today's, titled with its own date). What it
skips is done like what it posts (state `sent`, never in `exobot outbox list`), and skipping is
decided so that a retry neither posts a skipped alert nor leaves a begun one half posted. On
SQLite and PostgreSQL, with the real sweep, a fake clock and a homeserver that records."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import nio
import pytest
from clocks import FakeClock
from sqlalchemy import select
from stack_fixtures import app_repository

from exobot.core import intents as i
from exobot.core.actions import new_registry
from exobot.core.model import Actor, IncomingMail, Status
from exobot.core.service import CHAT, ServiceSettings, TicketService
from exobot.db import outbox
from exobot.db.outbox import O
from exobot.jobs import AlertSweep
from exobot.mail.msgid import MessageIds
from exobot.matrix.poster import ChatSender
from exobot.matrix.render import Renderer
from exobot.matrix.rooms import QueueRooms

MADRID = ZoneInfo("Europe/Madrid")
ROOMS = {"suport": "!suport:hs", "tresoreria": "!tresoreria:hs"}
SETTINGS = ServiceSettings(
    queues=frozenset(ROOMS),
    new_after=timedelta(hours=4),
    repeat_every=timedelta(hours=4),
    stalled_every=timedelta(days=7),
    announce=True,
)
ANNA = Actor.operator("@anna:example.org")
NINE = time(9, 0)


class Homeserver:
    """Records every post (room, whether in a thread, text, transaction id); a send whose
    transaction id is in `failing` raises once instead (the homeserver went away again)."""

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
                room=room_id,
                threaded=relates.get("rel_type") == "m.thread",
                body=content.get("body", ""),
                tx_id=tx_id,
            )
        )
        return nio.RoomSendResponse(event_id, room_id)

    def since(self, count: int) -> list[SimpleNamespace]:
        return self.sent[count:]


@pytest.fixture
async def repo(db_url):  # noqa: ANN001, ANN201 - the App's repository, on SQLite and PostgreSQL
    async with app_repository(db_url) as repository:
        yield repository


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2026, 11, 23, 8, 0, tzinfo=UTC))  # Monday, 09:00 in Madrid


@pytest.fixture
def service(repo, clock) -> TicketService:  # noqa: ANN001
    return TicketService(repo, MessageIds("s" * 32, "example.org"), SETTINGS, clock=clock)


@pytest.fixture
def homeserver() -> Homeserver:
    return Homeserver()


@pytest.fixture
def sender(repo, clock, homeserver) -> ChatSender:  # noqa: ANN001
    rooms = QueueRooms(ROOMS)
    rooms._room_of = dict(ROOMS)  # joined already (QueueRooms.ensure_joined)
    renderer = Renderer("ca", "suport", MADRID, new_registry())
    return ChatSender(  # type: ignore[arg-type]
        repo, homeserver, rooms, renderer, default_queue="suport", clock=clock
    )


def sweep(repo, service, clock, digest_at: time | None = None) -> AlertSweep:  # noqa: ANN001
    return AlertSweep(repo, service, digest_at=digest_at, timezone=MADRID, clock=clock)


async def new_ticket(service: TicketService, n: int) -> int:
    sender = f"member{n}@example.net"
    mail = IncomingMail(f"<m{n}@x>", sender, "Marta", sender, f"Hola {n}", "No tinc internet")
    return (
        await service.apply(Actor.member(sender), i.ReceiveMail(mail, i.MailClass.MEMBER))
    ).ticket


async def away(sweeper: AlertSweep, clock: FakeClock, hours: int) -> None:
    """The homeserver is away for `hours`: the sweep runs every 10 minutes, nothing is posted."""
    for _ in range(hours * 6):
        clock.advance(minutes=10)
        await sweeper.run_once()


async def deliver_all(repo, sender: ChatSender) -> None:  # noqa: ANN001
    """The homeserver is back: deliver until no chat row is due (root edits come later)."""
    for _ in range(100):
        if not await sender.deliver_due():
            return
    raise AssertionError("the chat rows never ran out")


async def chat_rows(repo, kind: str | None = None) -> dict[int, str]:  # noqa: ANN001
    """Chat rows (of one payload type) and their states, by id."""
    async with repo.connection() as conn:
        rows = await conn.execute(select(O.c.id, O.c.payload, O.c.state).where(O.c.kind == CHAT))
        return {
            row_id: state
            for row_id, payload, state in rows
            if kind is None or payload.get("type") == kind
        }


def alert_lines(posts: list[SimpleNamespace], number: int) -> list[str]:
    """The alerts about ticket `number` in the rooms' timelines."""
    return [
        p.body
        for p in posts
        if not p.threaded and p.body.startswith(("⚠️", "⏰")) and f"suport#{number} " in p.body
    ]


def alert_notes(posts: list[SimpleNamespace]) -> list[str]:
    """The alerts and reminders in tickets' threads."""
    return [p.body for p in posts if p.threaded and p.body.startswith(("⚠️", "⏰"))]


def digests(posts: list[SimpleNamespace]) -> list[SimpleNamespace]:
    return [p for p in posts if p.body.startswith("📊")]


async def test_after_three_days_away_one_alert_per_waiting_ticket_and_none_for_a_taken_one(
    repo, service, clock, sender, homeserver
):
    waiting = await new_ticket(service, 1)
    taken = await new_ticket(service, 2)
    await deliver_all(repo, sender)  # the roots, while the homeserver is up
    before = len(homeserver.sent)
    await away(sweep(repo, service, clock), clock, hours=36)
    await service.apply(ANNA, i.Take(taken))  # on the web, meanwhile
    await away(sweep(repo, service, clock), clock, hours=36)
    # An alert every repeat_every while each was new: 18 for one, 9 for the other; with the
    # two tickets' openings (posted) and the take.
    assert len(await chat_rows(repo, "ticket")) == 18 + 9 + 3

    await deliver_all(repo, sender)
    posts = homeserver.since(before)
    assert alert_lines(posts, taken) == []
    [line] = alert_lines(posts, waiting)  # the newest: how long it has waited now
    assert "fa 3 dies" in line
    notes = alert_notes(posts)
    assert len(notes) == 1 and "3 dies" in notes[0]
    # Skipped rows are done as posted ones: nothing pending, nothing given up.
    assert set((await chat_rows(repo)).values()) == {"sent"}
    async with repo.connection() as conn:
        assert (await outbox.given_up(conn, None))[1] == 0
    # Delivering again posts nothing more.
    count = len(homeserver.sent)
    await deliver_all(repo, sender)
    assert len(homeserver.sent) == count


async def test_a_reminder_of_an_earlier_stall_is_not_posted(
    repo, service, clock, sender, homeserver
):
    """Stalled, reminded while the homeserver is away, opened and stalled again: the
    reminder was about the first stall; the second one's comes in its time."""
    number = await new_ticket(service, 1)
    await service.apply(ANNA, i.Take(number))
    await service.apply(ANNA, i.SetStatus(number, Status.STALLED))
    await deliver_all(repo, sender)
    before = len(homeserver.sent)
    clock.advance(days=7, minutes=1)
    await sweep(repo, service, clock).run_once()  # the reminder, queued
    await service.apply(ANNA, i.SetStatus(number, Status.OPEN))
    await service.apply(ANNA, i.SetStatus(number, Status.STALLED))
    await deliver_all(repo, sender)
    assert alert_notes(homeserver.since(before)) == []
    assert alert_lines(homeserver.since(before), number) == []

    clock.advance(days=7, minutes=1)
    await sweep(repo, service, clock).run_once()
    await deliver_all(repo, sender)
    [note] = alert_notes(homeserver.since(before))
    assert note.startswith("⏰") and "7 dies" in note


async def test_an_alert_begun_before_the_ticket_was_taken_is_finished(
    repo, service, clock, sender, homeserver
):
    """The alert's note was posted, its room line failed; then the ticket is taken. The retry
    posts the line (the alert is whole, once) and no more."""
    number = await new_ticket(service, 1)
    await deliver_all(repo, sender)
    clock.advance(hours=4, minutes=1)
    await sweep(repo, service, clock).run_once()
    [row] = [r for r, state in (await chat_rows(repo, "ticket")).items() if state == "pending"]
    # Part 1 is the root's number (posted already), 2 the note in the thread, 3 the line.
    homeserver.failing.add(f"exobot-{row}-3")
    await sender.deliver_due()
    assert (await chat_rows(repo))[row] == "pending"
    await service.apply(ANNA, i.Take(number))
    async with repo.connection() as conn:
        await outbox.hurry(conn, row, clock.now())
    await deliver_all(repo, sender)
    assert (await chat_rows(repo))[row] == "sent"
    posted = [p.tx_id for p in homeserver.sent if p.tx_id.startswith(f"exobot-{row}-")]
    assert posted == [f"exobot-{row}-2", f"exobot-{row}-3"]
    assert len(alert_lines(homeserver.sent, number)) == 1


async def test_after_three_days_away_one_digest_of_today(repo, service, clock, sender, homeserver):
    await away(sweep(repo, service, clock, NINE), clock, hours=3 * 24 + 2)  # Thursday 11:00
    assert len(await chat_rows(repo, "digest")) == 4  # Monday to Thursday
    await deliver_all(repo, sender)
    posted = digests(homeserver.sent)
    assert sorted(p.room for p in posted) == sorted(ROOMS.values())  # once in each room
    assert all(p.body.splitlines()[0].endswith("2026-11-26") for p in posted)
    assert set((await chat_rows(repo, "digest")).values()) == {"sent"}
    async with repo.connection() as conn:
        assert (await outbox.given_up(conn, None))[1] == 0


async def test_yesterdays_digest_is_not_posted_the_next_morning(
    repo, service, clock, sender, homeserver
):
    """Back at 08:00, before today's digest: yesterday's is over; today's comes at 09:00."""
    await away(sweep(repo, service, clock, NINE), clock, hours=23)  # Tuesday 08:00
    assert len(await chat_rows(repo, "digest")) == 1  # Monday's
    await deliver_all(repo, sender)
    assert digests(homeserver.sent) == []
    assert set((await chat_rows(repo, "digest")).values()) == {"sent"}
    await away(sweep(repo, service, clock, NINE), clock, hours=1)
    await deliver_all(repo, sender)
    posted = digests(homeserver.sent)
    assert len(posted) == 2 and all(p.body.splitlines()[0].endswith("2026-11-24") for p in posted)


async def test_a_digest_put_off_while_a_newer_one_was_posted_is_not_posted(
    repo, service, clock, sender, homeserver
):
    """Its first post failed; the next digest went out before its retry (rows of no ticket do
    not wait for each other): the retry posts nothing."""
    sweeper = sweep(repo, service, clock, NINE)
    await sweeper.run_once()  # Monday 09:00
    [monday] = await chat_rows(repo, "digest")
    homeserver.failing.add(f"exobot-{monday}-1")
    await sender.deliver_due()
    assert (await chat_rows(repo))[monday] == "pending"
    # Due again only in a while; meanwhile Tuesday's (in a test: the same day, queued by hand).
    async with repo.connection() as conn:
        await conn.execute(
            O.insert().values(
                kind=CHAT, ticket_id=None, payload={"type": "digest", "date": "2026-11-23"},
                state="pending", attempts=0, next_try_at=clock.now(), created_at=clock.now(),
            )
        )  # fmt: skip
    await sender.deliver_due()
    assert len(digests(homeserver.sent)) == 2  # the newer one, in both rooms
    async with repo.connection() as conn:
        await outbox.hurry(conn, monday, clock.now())
    await deliver_all(repo, sender)
    assert (await chat_rows(repo))[monday] == "sent"
    assert len(digests(homeserver.sent)) == 2
    assert not [p for p in homeserver.sent if p.tx_id.startswith(f"exobot-{monday}-")]


async def test_a_digest_begun_is_finished_even_when_a_newer_one_waits(
    repo, service, clock, sender, homeserver
):
    """Posted in the first room, failed in the second, then outdated: the retry posts it in
    the second room (each digest row reaches every room or none)."""
    sweeper = sweep(repo, service, clock, NINE)
    await sweeper.run_once()
    [monday] = await chat_rows(repo, "digest")
    homeserver.failing.add(f"exobot-{monday}-2")
    await sender.deliver_due()
    await away(sweeper, clock, hours=24)  # Tuesday's queued
    await deliver_all(repo, sender)
    posted = [p.tx_id for p in homeserver.sent if p.tx_id.startswith(f"exobot-{monday}-")]
    assert posted == [f"exobot-{monday}-1", f"exobot-{monday}-2"]
    assert set((await chat_rows(repo, "digest")).values()) == {"sent"}


def test_the_digest_is_titled_with_its_own_date() -> None:
    """Rendered for the day it was queued for, not the day it is delivered."""
    renderer = Renderer("ca", "suport", MADRID, new_registry())
    now = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
    message = renderer.digest({}, [], [], now, day=date(2026, 11, 23))
    assert message.body.splitlines()[0].endswith("2026-11-23")
    assert renderer.digest({}, [], [], now).body.splitlines()[0].endswith("2026-11-26")
