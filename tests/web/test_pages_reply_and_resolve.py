"""The ticket page's "Send and resolve" is one change: one mail to the member (the reply,
saying the ticket is resolved and how to reopen it) and the ticket resolved, instead of the
reply and the resolved notice a second apart. The same form sent twice does it once."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from exobot.core.intents import SetStatus
from exobot.core.model import Actor, EntryKind, Status
from exobot.db.tables import OutboxRow
from tests.web.test_pages import browser as browser  # noqa: F401 - fixture
from tests.web.test_pages import ctx as ctx  # noqa: F401 - fixture
from tests.web.test_pages import receive, redirect_of, ticket_row
from tests.web.test_pages import retrier as retrier  # noqa: F401 - fixture
from tests.web.test_pages import service as service  # noqa: F401 - fixture

O = OutboxRow.__table__  # noqa: E741


async def mails(repo, number: int) -> list[dict]:  # noqa: ANN001
    async with repo.connection() as conn:
        rows = await conn.execute(
            select(O.c.payload).where(O.c.kind == "mail", O.c.ticket_id == number).order_by(O.c.id)
        )
        return [payload for (payload,) in rows]


async def test_send_and_resolve_mails_the_member_once(browser, service, repo):  # noqa: F811
    number = await receive(service)
    nonce = uuid.uuid4().hex
    form = {"nonce": nonce, "text": "Fet: ja podeu entrar.", "then": "resolved"}
    location = redirect_of(await browser.post(f"/tickets/{number}/reply", form))
    assert location == f"/tickets/{number}?done=reply_resolved#done"
    assert (await ticket_row(repo, number)).status is Status.RESOLVED
    [reply] = await mails(repo, number)
    assert (reply["template"], reply["text"], reply["resolved"]) == (
        "reply",
        "Fet: ja podeu entrar.",
        True,
    )
    history = await repo.history(number)
    assert [e.kind for e in history][-2:] == [EntryKind.MAIL_OUT, EntryKind.STATUS]
    # Sent again (a double click, a reload): nothing more.
    redirect_of(await browser.post(f"/tickets/{number}/reply", form))
    assert len(await mails(repo, number)) == 1
    assert [e.kind for e in await repo.history(number)].count(EntryKind.STATUS) == 1


async def test_send_and_resolve_on_a_ticket_resolved_meanwhile_still_replies(
    browser,  # noqa: F811
    service,  # noqa: F811
    repo,
):
    number = await receive(service)
    await service.apply(Actor.operator("@altra:example.org"), SetStatus(number, Status.RESOLVED))
    form = {"nonce": uuid.uuid4().hex, "text": "Ja està.", "then": "resolved"}
    redirect_of(await browser.post(f"/tickets/{number}/reply", form))
    resolved_notice, reply = await mails(repo, number)
    assert resolved_notice["template"] == "resolved"
    assert (reply["template"], reply["resolved"]) == ("reply", True)
    assert (await ticket_row(repo, number)).status is Status.RESOLVED


async def test_send_and_stall_still_stalls_after_the_reply(browser, service, repo):  # noqa: F811
    number = await receive(service)
    form = {"nonce": uuid.uuid4().hex, "text": "Esperem la vostra resposta.", "then": "stalled"}
    location = redirect_of(await browser.post(f"/tickets/{number}/reply", form))
    assert location == f"/tickets/{number}?done=reply_stalled#done"
    assert (await ticket_row(repo, number)).status is Status.STALLED
    [reply] = await mails(repo, number)
    assert "resolved" not in reply


async def test_send_and_resolve_without_text_does_neither(browser, service, repo):  # noqa: F811
    number = await receive(service)
    form = {"nonce": uuid.uuid4().hex, "text": "  \n ", "then": "resolved"}
    response = await browser.post(f"/tickets/{number}/reply", form)
    assert response.status_code == 400
    assert (await ticket_row(repo, number)).status is Status.NEW
    assert await mails(repo, number) == []
