"""An item given up for good is told on its ticket exactly once, even when the report did not
follow the mark (the process died, the database failed, the worker was stopped in between):
the worker's first pass, and the pass after a report that raised, report what the ticket does
not tell yet. A give-up reported is never reported again, a row `exobot outbox retry` sent
again and given up once more is reported again, a note of a Cc address left out (which names
the row too) is no report, and old history is left alone. On SQLite and on PostgreSQL, with
the repository as the App builds it."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from clocks import FakeClock
from sqlalchemy import select

from exobot.core import intents as i
from exobot.core.model import Actor, EntryKind
from exobot.core.service import ServiceSettings, TicketService
from exobot.db.tables import EntryRow, OutboxRow
from exobot.delivery import PermanentFailure
from exobot.mail.compose import TemplateRenderer
from exobot.mail.msgid import MessageIds
from exobot.mail.outbound import MailSender, SmtpSettings

O = OutboxRow.__table__  # noqa: E741
E = EntryRow.__table__
T0 = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
PAYLOAD = {
    "template": "reply",
    "language": "ca",
    "to": ["marta@example.net"],
    "reference": "suport#1",
    "number": 1,
    "title": "Router",
    "text": "Hola",
    "requestor": "marta@example.net",
    "message_id": "<exobot.1.1@example.org>",
    "in_reply_to": None,
    "references": [],
    "auto_submitted": False,
}


class Stop(Exception):
    """Ends a worker's run in a test."""


class FlakyReports:
    """The service, whose recording of a delivery failure raises while `broken` is set, as
    when the database goes away between the row's mark and the report."""

    def __init__(self, service: TicketService) -> None:
        self.service = service
        self.broken = False

    async def apply(self, actor, intent, origin=None):  # noqa: ANN001, ANN201
        if self.broken and isinstance(intent, i.RecordDeliveryFailure):
            raise ConnectionError("server closed the connection unexpectedly (test)")
        return await self.service.apply(actor, intent, origin)


class RefusingSender(MailSender):
    """The mail worker, its SMTP server refusing every mail for good; its waits between
    passes take fake time and it stops after `passes` passes of `run`."""

    def __init__(self, repo, service, clock: FakeClock, passes: int = 1) -> None:  # noqa: ANN001
        super().__init__(
            repo,
            service,
            SmtpSettings("127.0.0.1", 1),
            TemplateRenderer(),
            from_address="suport@example.org",
            from_name="Suport eXO",
            loop_marker="exobot-test",
            clock=clock,
        )
        self.passes = passes

    async def _send(self, message) -> None:  # noqa: ANN001
        raise PermanentFailure("550 5.1.1 no such user (test)")

    async def pause(self, seconds: float) -> None:
        self.passes -= 1
        if self.passes <= 0:
            raise Stop
        self.clock.advance(seconds=seconds or 1)

    async def run_passes(self) -> None:
        """`run` (its passes, then Stop), the way the leader starts it."""
        with pytest.raises(Stop):
            await self.run()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def service(app_repo, clock: FakeClock) -> FlakyReports:  # noqa: ANN001
    settings = ServiceSettings(announce=False)
    return FlakyReports(
        TicketService(app_repo, MessageIds("s" * 32, "example.org"), settings, clock=clock)
    )


async def ticket_with_a_mail(repo, service: FlakyReports, clock: FakeClock) -> tuple[int, int]:  # noqa: ANN001
    """A ticket and a mail row of it (due now): (ticket, row)."""
    outcome = await service.apply(
        Actor.operator("@anna:example.org"), i.OpenTicket("marta@example.net", "Router")
    )
    ticket = outcome.ticket

    async def work(uow) -> int:  # noqa: ANN001
        return await uow.queue_outbox("mail", ticket, dict(PAYLOAD, number=ticket))

    return ticket, await repo.run(work, now=clock.now())


async def reports(repo, ticket: int, row: int) -> list[dict]:  # noqa: ANN001
    """The data of the ticket's DELIVERY_FAILED entries naming `row`, oldest first."""
    async with repo.connection() as conn:
        rows = await conn.execute(
            select(E.c.data)
            .where(E.c.ticket_id == ticket, E.c.kind == EntryKind.DELIVERY_FAILED.value)
            .order_by(E.c.id)
        )
        return [data for (data,) in rows if data.get("outbox_id") == row]


async def state_of(repo, row: int) -> str:  # noqa: ANN001
    async with repo.connection() as conn:
        return (await conn.execute(select(O.c.state).where(O.c.id == row))).scalar_one()


async def given_up_unreported(repo, service: FlakyReports, clock: FakeClock) -> tuple[int, int]:  # noqa: ANN001
    """A mail given up for good whose report raised (the database away): (ticket, row)."""
    ticket, row = await ticket_with_a_mail(repo, service, clock)
    service.broken = True
    with pytest.raises(ConnectionError):
        await RefusingSender(repo, service, clock).deliver_due()
    service.broken = False
    assert await state_of(repo, row) == "failed"
    assert await reports(repo, ticket, row) == []  # the ticket does not tell it
    return ticket, row


async def test_a_give_up_never_reported_is_reported_once_when_the_worker_starts(
    app_repo, service, clock
):
    ticket, row = await given_up_unreported(app_repo, service, clock)
    clock.advance(hours=2)  # the process restarted later

    await RefusingSender(app_repo, service, clock).run_passes()
    [report] = await reports(app_repo, ticket, row)
    assert report["recipient"] == "marta@example.net"
    assert not report.get("skipped")

    await RefusingSender(app_repo, service, clock).run_passes()  # started again
    assert len(await reports(app_repo, ticket, row)) == 1


async def test_a_report_that_raised_in_a_running_worker_is_told_at_its_next_pass(
    app_repo, service, clock
):
    """The database fails as the report is written, during `run`: the next pass tells it."""
    ticket, row = await ticket_with_a_mail(app_repo, service, clock)
    worker = RefusingSender(app_repo, service, clock, passes=2)
    original = worker.failed

    async def failing_once(item, error):  # noqa: ANN001, ANN202
        worker.failed = original
        raise ConnectionError("the database went away (test)")

    worker.failed = failing_once
    await worker.run_passes()
    assert await state_of(app_repo, row) == "failed"
    assert len(await reports(app_repo, ticket, row)) == 1


async def test_a_give_up_reported_is_not_reported_again(app_repo, service, clock):
    ticket, row = await ticket_with_a_mail(app_repo, service, clock)
    await RefusingSender(app_repo, service, clock).run_passes()  # given up and reported
    assert len(await reports(app_repo, ticket, row)) == 1
    clock.advance(hours=1)
    await RefusingSender(app_repo, service, clock, passes=3).run_passes()
    assert len(await reports(app_repo, ticket, row)) == 1


async def test_a_row_retried_and_given_up_again_is_reported_again_the_first_not_twice(
    app_repo, service, clock
):
    ticket, row = await ticket_with_a_mail(app_repo, service, clock)
    await RefusingSender(app_repo, service, clock).run_passes()  # given up and reported
    await service.apply(Actor.system("cli"), i.RetryDelivery(row))
    assert await state_of(app_repo, row) == "pending"
    service.broken = True  # the second give-up's report raises
    with pytest.raises(ConnectionError):
        await RefusingSender(app_repo, service, clock).deliver_due()
    service.broken = False
    assert len(await reports(app_repo, ticket, row)) == 1  # the first one's only

    await RefusingSender(app_repo, service, clock).run_passes()
    assert len(await reports(app_repo, ticket, row)) == 2
    await RefusingSender(app_repo, service, clock).run_passes()
    assert len(await reports(app_repo, ticket, row)) == 2


async def test_two_workers_reporting_one_give_up_write_it_once(app_repo, service, clock):
    """The worker that gave the row up reports it while another instance's worker, starting,
    finds it unreported and reports it too (before either has committed): one entry."""
    ticket, row = await given_up_unreported(app_repo, service, clock)
    failure = i.RecordDeliveryFailure(ticket, row, "marta@example.net", "550 no such user")
    await asyncio.gather(
        *(service.apply(Actor.system("mail"), failure) for _ in range(4)),
        RefusingSender(app_repo, service, clock).report_given_up(),
    )
    assert len(await reports(app_repo, ticket, row)) == 1
    # Given up again after a retry by hand: that one is told, once.
    await service.apply(Actor.system("cli"), i.RetryDelivery(row))
    await service.apply(Actor.system("mail"), failure)
    await service.apply(Actor.system("mail"), failure)
    assert len(await reports(app_repo, ticket, row)) == 2


async def test_a_note_of_a_cc_left_out_is_not_taken_for_the_report(app_repo, service, clock):
    """A reply's Cc address no mail can be written to is noted on the ticket with the row's
    id (`skipped`) when it is queued or sent: the mail's give-up is still to be told."""
    ticket, row = await ticket_with_a_mail(app_repo, service, clock)
    await service.apply(
        Actor.system("mail"),
        i.RecordDeliveryFailure(ticket, row, "a@b", "not an address", skipped=True),
    )
    service.broken = True
    with pytest.raises(ConnectionError):
        await RefusingSender(app_repo, service, clock).deliver_due()
    service.broken = False

    await RefusingSender(app_repo, service, clock).run_passes()
    notes = await reports(app_repo, ticket, row)
    assert [bool(n.get("skipped")) for n in notes] == [True, False]


async def test_what_was_given_up_long_ago_is_left_alone(app_repo, service, clock):
    """After an upgrade, old history is not reported again: only the last week's."""
    ticket, row = await given_up_unreported(app_repo, service, clock)
    clock.advance(days=8)
    await RefusingSender(app_repo, service, clock).run_passes()
    assert await reports(app_repo, ticket, row) == []
