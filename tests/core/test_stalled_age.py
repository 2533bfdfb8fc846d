"""The bot's own reminders are no activity on a ticket: raising an alert (still new, stalled for
long) leaves the ticket's updated_at alone, so whatever measures from it (the digest's oldest
stalled tickets, the lists sorted by last update, the web's "updated …", the API) counts from
the last change a person or a mail made. On SQLite with the real sweep and a fake clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from clocks import FakeClock

from exobot.core.actions import new_registry
from exobot.core.intents import Comment, MailClass, ReceiveMail, SetStatus, Take
from exobot.core.model import Actor, IncomingMail, Status
from exobot.core.service import ServiceSettings, TicketService
from exobot.db.engine import create_engine
from exobot.db.migrate import upgrade_async
from exobot.db.repository import SqlRepository
from exobot.jobs import AlertSweep
from exobot.mail.msgid import MessageIds
from exobot.matrix.render import Renderer

MADRID = ZoneInfo("Europe/Madrid")
SETTINGS = ServiceSettings(
    queues=frozenset({"suport"}),
    new_after=timedelta(hours=4),
    repeat_every=timedelta(hours=4),
    stalled_every=timedelta(days=2),
    announce=True,
)
ANNA = Actor.operator("@anna:example.org")
START = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)


@pytest.fixture
async def world(tmp_path):
    url = f"sqlite:///{tmp_path / 'exobot.db'}"
    await upgrade_async(url)
    engine = create_engine(url)
    repo = SqlRepository(engine)
    clock = FakeClock(START)
    service = TicketService(repo, MessageIds("s" * 32, "example.org"), SETTINGS, clock=clock)
    yield repo, service, clock
    await engine.dispose()


async def new_ticket(service: TicketService, n: int) -> int:
    sender = f"member{n}@example.net"
    mail = IncomingMail(f"<m{n}@x>", sender, "Marta", sender, f"Hola {n}", "No tinc internet")
    return (await service.apply(Actor.member(sender), ReceiveMail(mail, MailClass.MEMBER))).ticket


async def days_of_sweeps(world, days: int) -> int:  # noqa: ANN001
    """Sweep hourly for `days`; returns how many alerts were raised."""
    repo, service, clock = world
    sweep = AlertSweep(repo, service, digest_at=None, timezone=MADRID, clock=clock)
    raised = 0
    for _ in range(days * 24):
        clock.advance(hours=1)
        raised += await sweep.run_once()
    return raised


async def test_reminders_leave_a_stalled_tickets_last_update_alone(world):
    repo, service, clock = world
    number = await new_ticket(service, 1)
    await service.apply(ANNA, Take(number))
    await service.apply(ANNA, SetStatus(number, Status.STALLED))
    stalled_at = clock.now()
    assert await days_of_sweeps(world, 10) == 5  # a reminder every 2 days
    ticket = await repo.get_ticket(number)
    assert ticket.updated_at == stalled_at
    assert ticket.next_alert_at == stalled_at + timedelta(days=10 + 2)  # still re-planned

    # What the digest shows: stalled for 10 days, not since the last reminder.
    async with repo.reading() as view:
        stalled, _ = await view.list_tickets(statuses=[Status.STALLED], oldest_first=True)
    digest = Renderer("ca", "suport", MADRID, new_registry()).digest(
        {("suport", "stalled"): 1}, [], stalled, clock.now()
    )
    [line] = [line for line in digest.body.splitlines() if f"suport#{number} " in line]
    assert line.endswith("10 dies"), line


async def test_alerts_leave_a_new_tickets_last_update_alone(world):
    repo, service, clock = world
    number = await new_ticket(service, 1)
    created = clock.now()
    assert await days_of_sweeps(world, 1) == 6  # at 4 h, then every 4 h
    assert (await repo.get_ticket(number)).updated_at == created


async def test_a_reminder_does_not_bring_a_ticket_up_the_list_of_last_updates(world):
    repo, service, clock = world
    reminded = await new_ticket(service, 1)
    await service.apply(ANNA, Take(reminded))
    await service.apply(ANNA, SetStatus(reminded, Status.STALLED))
    clock.advance(hours=1)
    commented = await new_ticket(service, 2)
    await service.apply(ANNA, Take(commented))
    await service.apply(ANNA, Comment(commented, "Truco dimarts"))
    commented_at = clock.now()
    assert await days_of_sweeps(world, 3) == 1  # the stalled one's reminder
    async with repo.reading() as view:
        tickets, _ = await view.list_tickets(order="updated")
    assert [t.number for t in tickets] == [commented, reminded]
    # A person's change still counts: the comment moved its ticket's last update.
    assert (await repo.get_ticket(commented)).updated_at == commented_at
