"""The send helper's sender leaves what it cannot send to the leader's worker, untouched:
no attempt counted, no error or retry time written, not tried again by the same helper; a
mail with a Cc address to note on the ticket is left without being sent. On SQLite and on
PostgreSQL, with the repository as the App builds it."""

from __future__ import annotations

import copy

from sqlalchemy import select

from exobot.db.tables import OutboxRow
from exobot.mail.compose import TemplateRenderer
from exobot.mail.outbound import SmtpSettings
from exobot.mail.send_helper import HelperSender
from tests.mail.test_outbound_cc import PAYLOAD as CC_PAYLOAD

O = OutboxRow.__table__  # noqa: E741
# The Cc test's mail without its Cc.
PAYLOAD = {key: value for key, value in CC_PAYLOAD.items() if key != "cc"}


def payload(**changes) -> dict:
    return copy.deepcopy(PAYLOAD) | changes


def helper_sender(repo):  # noqa: ANN001, ANN201
    worker = HelperSender(
        repo,
        None,  # no service: the helper never changes a ticket
        SmtpSettings("127.0.0.1", 1),
        TemplateRenderer(),
        from_address="suport@example.org",
        from_name="Suport eXO",
        loop_marker="exobot-test",
    )
    worker.tried = []

    async def fake_send(message) -> None:  # noqa: ANN001
        worker.tried.append(message["To"])
        if message["To"] == "away@example.net":
            raise ConnectionError("the relay is away")

    worker._send = fake_send
    return worker


async def queue(repo, *payloads: dict) -> list[int]:  # noqa: ANN001
    async def work(uow) -> list[int]:  # noqa: ANN001
        return [await uow.queue_outbox("mail", None, p) for p in payloads]

    return await repo.run(work)


async def rows(repo) -> dict[int, object]:  # noqa: ANN001
    async with repo.connection() as conn:
        return {r.id: r for r in await conn.execute(select(O))}


async def test_a_mail_it_cannot_send_is_left_untouched_and_the_others_go(app_repo):
    away, fine = await queue(
        app_repo, payload(to=["away@example.net"]), payload(message_id="<exobot.3.2@x.org>")
    )
    before = await rows(app_repo)
    worker = helper_sender(app_repo)
    assert await worker.deliver_due() == 1
    assert worker.tried == ["away@example.net", "marta@example.net"]
    after = await rows(app_repo)
    assert after[fine].state == "sent"
    left = after[away]
    assert (left.state, left.attempts, left.last_error) == ("pending", 0, None)
    assert left.next_try_at == before[away].next_try_at
    assert worker.left == {away}
    # The next pass does not try it again: it waits for the leader's worker.
    assert await worker.deliver_due() == 0
    assert worker.tried == ["away@example.net", "marta@example.net"]


async def test_a_mail_with_a_cc_to_note_is_left_without_being_sent(app_repo):
    [with_cc] = await queue(app_repo, payload(cc=["a@b"]))
    worker = helper_sender(app_repo)
    assert await worker.deliver_due() == 0
    assert worker.tried == []
    row = (await rows(app_repo))[with_cc]
    assert (row.state, row.attempts) == ("pending", 0)
    assert worker.left == {with_cc}
