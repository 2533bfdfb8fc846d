"""waiting_on: whose move it is on a ticket (us, the member, nobody), and the service keeping
tickets.last_answer_at (a reply or notice; never the acknowledgement)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fakes import FakeClock, FakeMessageIds, FakeRepository

from exobot.core import intents as i
from exobot.core.model import Actor, IncomingMail, Status, Ticket
from exobot.core.service import ServiceSettings, TicketService
from exobot.core.waiting import Waiting, waiting_on

T0 = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)
LATER = T0 + timedelta(hours=1)


def ticket(status: Status = Status.OPEN, member=None, answer=None) -> Ticket:
    """A ticket with the given status and times."""
    return Ticket(
        1, "No va", "marta@example.net", "suport", status, T0, T0,
        last_member_mail_at=member, last_answer_at=answer,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("status", "member", "answer", "expected"),
    [
        (Status.NEW, T0, None, Waiting.US),  # nothing answered yet
        (Status.NEW, None, None, Waiting.US),  # opened by an operator, nothing said
        (Status.OPEN, T0, LATER, Waiting.MEMBER),  # our reply is the latest
        (Status.OPEN, LATER, T0, Waiting.US),  # the member wrote after our reply
        (Status.OPEN, None, T0, Waiting.MEMBER),  # we wrote first (a phone call)
        (Status.OPEN, T0, T0, Waiting.MEMBER),  # same instant: our answer covers it
        (Status.STALLED, T0, LATER, Waiting.MEMBER),
        (Status.STALLED, LATER, T0, Waiting.US),
        (Status.RESOLVED, LATER, T0, Waiting.NOBODY),
        (Status.REJECTED, T0, None, Waiting.NOBODY),
    ],
)
def test_waiting_on(status, member, answer, expected):
    assert waiting_on(ticket(status), member, answer) is expected
    # The ticket's own times are read when none are passed.
    assert waiting_on(ticket(status, member, answer)) is expected


async def test_service_sets_last_answer_on_reply_and_notice_not_on_the_ack():
    repo, clock = FakeRepository(), FakeClock()
    settings = ServiceSettings(queues=frozenset({"suport"}), own_address="suport@example.org")
    service = TicketService(repo, FakeMessageIds(), settings, clock=clock)
    mail = IncomingMail("<m1@example.net>", "marta@example.net", "Marta", "marta@example.net",
                        "No va", "Hola")  # fmt: skip
    out = await service.apply(Actor.system("mail"), i.ReceiveMail(mail, i.MailClass.MEMBER, acknowledge=True))
    number = out.ticket
    stored = repo.state.tickets[number]
    assert stored.last_answer_at is None  # the acknowledgement is no answer
    assert waiting_on(stored) is Waiting.US

    clock.advance(timedelta(minutes=5))
    await service.apply(Actor.operator("@anna:example.org"), i.Reply(number, "Mirem-ho."))
    stored = repo.state.tickets[number]
    assert stored.last_answer_at == clock.now()
    assert waiting_on(stored) is Waiting.MEMBER

    clock.advance(timedelta(minutes=5))
    again = IncomingMail("<m2@example.net>", "marta@example.net", "Marta", "marta@example.net",
                         "Re: No va", "Encara no va")  # fmt: skip
    await service.apply(Actor.system("mail"), i.ReceiveMail(again, i.MailClass.MEMBER, ticket=number))
    assert waiting_on(repo.state.tickets[number]) is Waiting.US

    clock.advance(timedelta(minutes=5))
    await service.apply(Actor.system("monitor"), i.Notify(number, "Tornem a mesurar."))
    stored = repo.state.tickets[number]
    assert stored.last_answer_at == clock.now()
    assert waiting_on(stored) is Waiting.MEMBER
