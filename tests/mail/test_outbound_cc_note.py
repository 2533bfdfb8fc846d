"""A mail the SMTP server accepted is delivered, whatever happens to the note of a Cc address
left out of it: a note that fails (the database busy or away) is logged with the ticket and
the address, never taken for a failed send, so the mail does not go out again at each retry.
On SQLite and on PostgreSQL, with the repository as the App builds it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from clocks import FakeClock
from sqlalchemy import select
from test_outbound_cc import PAYLOAD as CC_PAYLOAD
from test_outbound_cc import sender

from exobot.core.service import ServiceError
from exobot.db.tables import OutboxRow

O = OutboxRow.__table__  # noqa: E741
T0 = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
TICKET = 3

# test_outbound_cc's mail, with an address that was queued before the one address rule.
PAYLOAD = {**CC_PAYLOAD, "cc": ["vei@example.net", "a@b"], "number": TICKET}


class BrokenNotes:
    """A service whose every change fails as the database does when busy or gone."""

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.calls = 0

    async def apply(self, actor, intent, origin=None):  # noqa: ANN001, ANN201
        self.calls += 1
        raise self.error


async def queue_mail(repo, clock: FakeClock) -> int:  # noqa: ANN001
    """A mail of ticket TICKET (the row alone: no ticket is needed to send it)."""

    async def work(uow) -> int:  # noqa: ANN001
        return await uow.queue_outbox("mail", TICKET, PAYLOAD)

    return await repo.run(work, now=clock.now())


@pytest.mark.parametrize(
    "error",
    [
        RuntimeError("database is locked"),
        ConnectionError("server closed the connection unexpectedly"),
    ],
    ids=["sqlite-busy", "connection-cut"],
)
async def test_a_failing_cc_note_leaves_the_accepted_mail_delivered_once(app_repo, caplog, error):
    clock = FakeClock(T0)
    item_id = await queue_mail(app_repo, clock)
    service = BrokenNotes(error)
    worker = sender(service, app_repo, clock)

    with caplog.at_level("ERROR", logger="exobot.mail.outbound"):
        assert await worker.deliver_due() == 1
    async with app_repo.connection() as conn:
        stored = (await conn.execute(select(O).where(O.c.id == item_id))).one()
    assert (stored.state, stored.attempts, stored.last_error) == ("sent", 1, None)
    assert service.calls == 1  # the note was tried

    clock.advance(timedelta(days=1))  # past any retry's time: nothing goes out again
    assert await worker.deliver_due() == 0
    assert len(worker.sent) == 1

    [record] = [r for r in caplog.records if "could not be noted" in r.getMessage()]
    message = record.getMessage()
    assert f"ticket {TICKET}" in message and "a@b" in message
    assert record.exc_info and record.exc_info[1] is error  # the cause, with its traceback


async def test_a_refused_cc_note_is_logged_with_its_ticket(app_repo, caplog):
    clock = FakeClock(T0)
    await queue_mail(app_repo, clock)
    worker = sender(BrokenNotes(ServiceError("not_found", "no ticket 3")), app_repo, clock)
    with caplog.at_level("ERROR", logger="exobot.mail.outbound"):
        assert await worker.deliver_due() == 1
    [record] = [r for r in caplog.records if "could not note" in r.getMessage()]
    assert f"on ticket {TICKET}" in record.getMessage() and "a@b" in record.getMessage()
