"""The JSON API under /api/v1 and the `exobot token` CLI, in process over a real SQLite file.

The whole web app is served through httpx's ASGI transport; tickets change through a real
TicketService on a migrated database, exactly as in production (only the mail and chat
workers are absent: their outbox rows are checked instead).
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import yaml
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, OperationalError

from exobot import cli
from exobot.core import intents
from exobot.core.model import Actor, AttachmentInfo, IncomingMail
from exobot.core.service import ServiceSettings, TicketService
from exobot.db import inbound
from exobot.db import web as records
from exobot.db.engine import create_engine, create_sync_engine
from exobot.db.migrate import upgrade_async
from exobot.db.repository import SqlRepository
from exobot.db.tables import HandledKeyRow, OutboxRow
from exobot.mail.msgid import MessageIds
from exobot.web import actions
from exobot.web.app import create_app
from exobot.web.context import WebContext, WebSettings

ANNA = "@anna:example.org"
BERNAT = "@bernat:example.org"
OUTSIDER = "@outsider:example.org"
MEMBER = "marta@example.net"
OWN = "suport@example.org"
QUEUES = ("suport", "tresoreria")
_ids = itertools.count(1)


@dataclass
class World:
    """A web app over a fresh database, its client, and ways to make tickets and tokens."""

    url: str
    repo: SqlRepository
    service: TicketService
    context: WebContext
    app: object
    client: httpx.AsyncClient
    retried: list[int] = field(default_factory=list)

    async def token(self, name: str, user: str = ANNA) -> dict[str, str]:
        """The Authorization header of a new token called `name` acting as `user`."""
        async with self.repo.connection() as conn:
            secret = await records.create_api_token(conn, name, user, datetime.now(UTC))
        return {"Authorization": f"Bearer {secret}"}

    async def mail(self, sender: str = MEMBER, ticket: int | None = None, **kw: object) -> int:
        """A member's mail: opens a ticket, or (with `ticket`) is added to it."""
        mail_class = kw.pop("mail_class", intents.MailClass.MEMBER)
        message = IncomingMail(
            message_id=f"<m{next(_ids)}@example.net>",
            sender=sender,
            sender_name="Marta",
            requestor=sender,
            subject=str(kw.pop("subject", "No em funciona internet")),
            body=str(kw.pop("body", "Hola, des d'ahir no tinc connexió.")),
            **kw,
        )
        outcome = await self.service.apply(
            Actor.member(sender), intents.ReceiveMail(message, mail_class, ticket=ticket)
        )
        return outcome.ticket

    async def act(self, user: str, intent: intents.Intent) -> None:
        """A change made elsewhere (chat), as `user`."""
        await self.service.apply(Actor.operator(user), intent)

    async def outbox(self, number: int) -> list:
        async with self.repo.connection() as conn:
            rows = await conn.execute(
                select(OutboxRow.__table__).where(OutboxRow.__table__.c.ticket_id == number)
            )
            return list(rows)


@pytest.fixture
async def world(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'exobot.db'}"
    await upgrade_async(url)
    repo = SqlRepository(create_engine(url), create_sync_engine(url))
    service = TicketService(
        repo,
        MessageIds("secret" * 4, "example.org"),
        ServiceSettings(queues=frozenset(QUEUES), own_address=OWN),
    )
    retried: list[int] = []

    async def retry_mail(inbound_id: int) -> str:
        retried.append(inbound_id)
        return "done"

    context = WebContext(
        WebSettings(root="http://test", secure=False, queues=QUEUES, support_address=OWN),
        repo,
        service,
        is_operator=lambda user: user in {ANNA, BERNAT},
        retry_mail=retry_mail,
    )
    app = create_app(context)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test/api/v1") as client:
        yield World(url, repo, service, context, app, client, retried)
    await repo.close()


@pytest.fixture
async def anna(world: World) -> dict[str, str]:
    """Anna's token header."""
    return await world.token("anna")


def assert_error(response: httpx.Response, status: int, code: str) -> str:
    """The answer is the API's error shape with this status and code; returns the message."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error", "message"}
    assert body["error"] == code
    assert body["message"]
    return body["message"]


# --- authentication ----------------------------------------------------------------------


async def test_a_request_without_a_token_is_401(world):
    response = await world.client.get("/tickets")
    message = assert_error(response, 401, "unauthorized")
    assert "Bearer" in message
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("header", ["Bearer exo_not-a-real-token", "Basic YW5uYTpwdw==", "Bearer"])
async def test_an_unknown_token_or_another_scheme_is_401(world, anna, header):
    response = await world.client.get("/tickets", headers={"Authorization": header})
    assert_error(response, 401, "unauthorized")


async def test_a_revoked_token_is_401_at_once(world, anna):
    assert (await world.client.get("/me", headers=anna)).status_code == 200
    async with world.repo.connection() as conn:
        assert await records.revoke_api_token(conn, "anna", datetime.now(UTC))
    assert_error(await world.client.get("/me", headers=anna), 401, "unauthorized")


async def test_the_token_of_someone_no_longer_an_operator_is_403(world):
    headers = await world.token("old", OUTSIDER)
    response = await world.client.get("/tickets", headers=headers)
    assert OUTSIDER in assert_error(response, 403, "not_operator")
    response = await world.client.post("/tickets/1/actions/take", headers=headers)
    assert_error(response, 403, "not_operator")


async def test_me_says_who_the_token_acts_as(world, anna):
    response = await world.client.get("/me", headers=anna)
    assert response.json() == {"user_id": ANNA, "via": "token:anna"}


# --- reading -----------------------------------------------------------------------------


async def test_a_ticket_comes_with_participants_and_its_whole_history(world, anna):
    number = await world.mail(
        body="Ja ho he provat.\n\nOn Mon, 1 Jan 2024 at 10:00, Suport wrote:\n> old quote\n",
        cc=("veina@example.net",),
    )
    response = await world.client.get(f"/tickets/{number}", headers=anna)
    assert response.status_code == 200
    ticket = response.json()
    assert ticket["number"] == number
    assert ticket["reference"] == f"suport#{number}"
    assert (ticket["status"], ticket["owner"], ticket["queue"]) == ("new", None, "suport")
    assert ticket["participants"] == [MEMBER, "veina@example.net"]
    created, mail_in = ticket["history"]
    assert (created["kind"], mail_in["kind"]) == ("created", "mail_in")
    assert mail_in["actor"] == MEMBER
    # Through mail_text: the quoted copy of our own mail is trimmed.
    assert mail_in["body"] == "Ja ho he provat."
    assert mail_in["data"]["subject"] == "No em funciona internet"
    assert created["body"] is None
    stamp = datetime.fromisoformat(mail_in["created_at"].replace("Z", "+00:00"))
    assert stamp.utcoffset().total_seconds() == 0


async def test_an_attachment_is_listed_and_downloaded_as_a_file(world, anna):
    data = b"%PDF-1.4 not really"
    number = await world.mail(
        attachments=(AttachmentInfo("factura març.pdf", "application/pdf", data),)
    )
    ticket = (await world.client.get(f"/tickets/{number}", headers=anna)).json()
    [attachment] = ticket["history"][1]["attachments"]
    assert attachment["filename"] == "factura març.pdf"
    assert (attachment["content_type"], attachment["size"]) == ("application/pdf", len(data))

    path = f"/tickets/{number}/attachments/{attachment['id']}"
    response = await world.client.get(path, headers=anna)
    assert response.status_code == 200
    assert response.content == data
    assert response.headers["content-type"] == "application/octet-stream"
    disposition = response.headers["content-disposition"]
    assert disposition.startswith("attachment;")
    assert "filename*=UTF-8''factura%20mar%C3%A7.pdf" in disposition

    other = await world.mail("altre@example.net")
    response = await world.client.get(
        f"/tickets/{other}/attachments/{attachment['id']}", headers=anna
    )
    assert_error(response, 404, "attachment_not_found")
    assert (await world.client.get(path)).status_code == 401


async def test_list_filters_by_queue_status_owner_and_words(world, anna):
    first = await world.mail(subject="Impressora encallada")
    second = await world.mail(subject="Factura duplicada")
    third = await world.mail(subject="Router sense llum", body="La impressora també falla")
    await world.act(ANNA, intents.Take(first))
    await world.act(BERNAT, intents.Take(second))
    await world.act(BERNAT, intents.Move(second, "tresoreria"))
    await world.act(ANNA, intents.SetStatus(first, "stalled"))

    async def numbers(**params: object) -> list[int]:
        response = await world.client.get("/tickets", params=params, headers=anna)
        assert response.status_code == 200, response.text
        return [t["number"] for t in response.json()["tickets"]]

    assert await numbers() == [third, second, first]
    assert await numbers(order="oldest") == [first, second, third]
    assert await numbers(queue="tresoreria") == [second]
    assert await numbers(status=["new", "stalled"]) == [third, first]
    assert await numbers(status="open,stalled") == [second, first]
    assert await numbers(owner="mine") == [first]
    assert await numbers(owner=BERNAT) == [second]
    assert await numbers(owner="none") == [third]
    assert await numbers(q="impressora") == [third, first]
    assert await numbers(q="impressora", status="new") == [third]

    response = await world.client.get("/tickets", params={"per_page": 2, "page": 2}, headers=anna)
    page = response.json()
    assert (page["total"], page["page"], page["pages"]) == (3, 2, 2)
    assert [t["number"] for t in page["tickets"]] == [first]
    listed = page["tickets"][0]
    assert (listed["owner"], listed["status"], listed["reference"]) == (
        ANNA,
        "stalled",
        f"suport#{first}",
    )


async def test_search_finds_words_in_titles_and_texts(world, anna):
    printer = await world.mail(subject="Impressora encallada")
    await world.mail(subject="Factura duplicada")
    router = await world.mail(subject="Router", body="Ni la impressora funciona")
    response = await world.client.get("/search", params={"q": "IMPRESSORA"}, headers=anna)
    assert response.status_code == 200
    assert [t["number"] for t in response.json()["tickets"]] == [router, printer]
    assert response.json()["total"] == 2

    response = await world.client.get("/search", params={"q": "  "}, headers=anna)
    assert "search" in assert_error(response, 400, "missing_words")


async def test_the_dashboard_counts_and_shows_what_waits(world, anna):
    waiting = await world.mail()
    stalled = await world.mail()
    await world.act(ANNA, intents.Take(stalled))
    await world.act(ANNA, intents.SetStatus(stalled, "stalled"))
    response = await world.client.get("/dashboard", headers=anna)
    assert response.status_code == 200
    board = response.json()
    assert board["new"] == 1
    assert board["counts"]["suport"]["new"] == 1
    assert board["counts"]["suport"]["stalled"] == 1
    assert board["counts"]["tresoreria"] == {s: 0 for s in board["counts"]["tresoreria"]}
    assert [t["number"] for t in board["oldest_waiting"]] == [waiting]
    assert [t["number"] for t in board["stalled"]] == [stalled]
    assert board["stalled_total"] == 1


# --- changing ----------------------------------------------------------------------------


async def test_every_action_works_and_is_recorded_with_the_tokens_user(world, anna):
    number = await world.mail()
    done: list[str] = []

    async def act(action: str, body: dict | None = None) -> dict:
        path = f"/tickets/{number}/actions/{action}"
        response = await world.client.post(path, json=body, headers=anna)
        assert response.status_code == 200, response.text
        done.append(action)
        return response.json()

    def new_entries(ticket: dict, before: dict) -> list[dict]:
        return ticket["history"][len(before["history"]) :]

    before = (await world.client.get(f"/tickets/{number}", headers=anna)).json()
    steps = [
        ("take", None, ["owner", "status"]),
        ("comment", {"text": "Trucaré dilluns."}, ["comment"]),
        ("reply", {"text": "Hola Marta,\nho mirem."}, ["mail_out"]),
        ("title", {"title": "Internet: sense connexió"}, ["title"]),
        ("move", {"queue": "tresoreria"}, ["queue"]),
        ("status", {"status": "stalled"}, ["status"]),
        ("give", {"owner": BERNAT}, ["owner"]),
        ("untake", None, ["owner"]),
    ]
    for action, body, kinds in steps:
        after = await act(action, body)
        entries = new_entries(after, before)
        assert [e["kind"] for e in entries] == kinds, action
        assert {e["actor"] for e in entries} == {ANNA}, action
        before = after

    assert (before["owner"], before["queue"], before["status"]) == (None, "tresoreria", "stalled")
    assert before["title"] == "Internet: sense connexió"
    comment = next(e for e in before["history"] if e["kind"] == "comment")
    assert comment["body"] == "Trucaré dilluns."
    reply = next(e for e in before["history"] if e["kind"] == "mail_out")
    assert reply["body"] == "Hola Marta,\nho mirem."
    [queued] = [row for row in await world.outbox(number) if row.template == "reply"]
    assert queued.recipient == MEMBER
    assert queued.payload["text"] == "Hola Marta,\nho mirem."

    # Mail from an unknown address naming the ticket waits for an operator to accept it.
    await world.mail("desconegut@example.net", number, mail_class=intents.MailClass.UNVERIFIED)
    after = await act("accept")
    [accepted] = [e for e in new_entries(after, before) if e["kind"] == "accepted"]
    assert accepted["actor"] == ANNA
    assert "desconegut@example.net" in after["participants"]
    before = after

    after = await act("cc", {"add": ["Germana@Example.net"], "remove": ["desconegut@example.net"]})
    [changed] = new_entries(after, before)
    assert (changed["kind"], changed["actor"]) == ("participants", ANNA)
    assert changed["data"] == {
        "added": ["germana@example.net"],
        "removed": ["desconegut@example.net"],
    }
    assert "germana@example.net" in after["participants"]
    assert "desconegut@example.net" not in after["participants"]
    before = after

    # A member's mail with an IBAN flags the ticket `sensitive`; an operator clears the flag.
    await world.mail(MEMBER, number, sensitive=("iban",))
    before = (await world.client.get(f"/tickets/{number}", headers=anna)).json()
    assert [f["code"] for f in before["flags"]] == ["sensitive"]
    after = await act("unflag", {"code": "sensitive", "note": "Dades a la gestió."})
    [cleared] = new_entries(after, before)
    assert (cleared["kind"], cleared["actor"]) == ("flag", ANNA)
    assert cleared["data"]["cleared"] is True and cleared["body"] == "Dades a la gestió."
    assert after["flags"] == []
    before = after

    # The member's language: a code or a name; the mails after it are in that language.
    after = await act("language", {"language": "español"})
    [changed] = new_entries(after, before)
    assert (changed["kind"], changed["data"]) == ("language", {"from": "ca", "to": "es"})
    assert after["language"] == "es"
    same = await world.client.post(
        f"/tickets/{number}/actions/language", json={"language": "es"}, headers=anna
    )
    assert (same.status_code, same.json()["error"]) == (400, "same_language")

    assert sorted(done) == sorted(actions.ACTIONS)


async def test_an_idempotency_key_makes_a_retried_request_act_once(world, anna):
    number = await world.mail()
    path = f"/tickets/{number}/actions/comment"
    headers = anna | {"Idempotency-Key": "k-1"}
    first = await world.client.post(path, json={"text": "Una vegada"}, headers=headers)
    again = await world.client.post(path, json={"text": "Una vegada"}, headers=headers)
    assert first.status_code == again.status_code == 200
    assert again.json()["history"] == first.json()["history"]
    comments = [e for e in again.json()["history"] if e["kind"] == "comment"]
    assert len(comments) == 1

    # Keys belong to their token: another token's same key is another request.
    bernat = await world.token("bernat", BERNAT)
    other = await world.client.post(
        path, json={"text": "Una vegada"}, headers=bernat | {"Idempotency-Key": "k-1"}
    )
    assert len([e for e in other.json()["history"] if e["kind"] == "comment"]) == 2
    async with world.repo.connection() as conn:
        keys = {r.key for r in await conn.execute(select(HandledKeyRow.__table__))}
    assert {"api:anna:k-1", "api:bernat:k-1"} <= keys


async def test_opening_a_ticket_for_a_member(world, anna):
    body = {"requestor": "Pere@Example.net", "title": "Trucada: no rep correu", "text": "Ho diu."}
    response = await world.client.post("/tickets", json=body, headers=anna)
    assert response.status_code == 201, response.text
    ticket = response.json()
    assert response.headers["location"] == f"/api/v1/tickets/{ticket['number']}"
    assert (ticket["requestor"], ticket["title"], ticket["queue"], ticket["status"]) == (
        "pere@example.net",
        "Trucada: no rep correu",
        "suport",
        "new",
    )
    assert ticket["participants"] == ["pere@example.net"]
    assert [(e["kind"], e["actor"]) for e in ticket["history"]] == [
        ("created", ANNA),
        ("comment", ANNA),
    ]
    assert (
        await world.client.get(response.headers["location"].removeprefix("/api/v1"), headers=anna)
    ).json() == ticket

    body = {"requestor": "pere@example.net", "title": "Quota", "queue": "tresoreria"}
    headers = anna | {"Idempotency-Key": "open-1"}
    created = await world.client.post("/tickets", json=body, headers=headers)
    assert created.json()["queue"] == "tresoreria"
    repeated = await world.client.post("/tickets", json=body, headers=headers)
    # The retry gets the ticket the first request opened; nothing more is opened.
    assert repeated.status_code == 200
    assert repeated.json()["number"] == created.json()["number"]
    assert repeated.headers["location"] == created.headers["location"]
    assert await world.repo.count_tickets() == 2


@pytest.mark.parametrize(
    ("action", "body", "code", "words"),
    [
        ("status", {"status": "bogus"}, "bad_status", ["bogus", "stalled"]),
        ("reply", {"text": "   "}, "missing_text", ["text"]),
        ("comment", {"text": ""}, "missing_text", ["text"]),
        ("give", {"owner": "bernat"}, "bad_user", ["bernat", "@name:server"]),
        ("give", {"owner": " "}, "missing_owner", ["Matrix user"]),
        ("move", {"queue": "nowhere"}, "unknown_queue", ["nowhere", "tresoreria"]),
        ("title", {"title": "  "}, "missing_title", ["title"]),
    ],
)
async def test_bad_input_is_400_with_a_clear_message(world, anna, action, body, code, words):
    number = await world.mail()
    response = await world.client.post(
        f"/tickets/{number}/actions/{action}", json=body, headers=anna
    )
    message = assert_error(response, 400, code)
    for word in words:
        assert word in message
    history = (await world.client.get(f"/tickets/{number}", headers=anna)).json()["history"]
    assert [e["kind"] for e in history] == ["created", "mail_in"]


async def test_bad_new_tickets_are_400(world, anna):
    response = await world.client.post(
        "/tickets", json={"requestor": "not an address", "title": "x"}, headers=anna
    )
    assert "not an address" in assert_error(response, 400, "bad_address")
    response = await world.client.post(
        "/tickets", json={"requestor": "p@example.net", "title": " "}, headers=anna
    )
    assert_error(response, 400, "missing_title")
    response = await world.client.post(
        "/tickets", json={"requestor": "p@example.net", "title": "x", "queue": "no"}, headers=anna
    )
    assert_error(response, 400, "unknown_queue")
    assert await world.repo.count_tickets() == 0


async def test_a_change_that_is_already_so_is_409(world, anna):
    number = await world.mail()
    untake = await world.client.post(f"/tickets/{number}/actions/untake", headers=anna)
    assert f"suport#{number}" in assert_error(untake, 409, "already_unowned")
    accept = await world.client.post(f"/tickets/{number}/actions/accept", headers=anna)
    assert_error(accept, 409, "no_unverified")
    await world.act(ANNA, intents.Take(number))
    same = await world.client.post(
        f"/tickets/{number}/actions/status", json={"status": "open"}, headers=anna
    )
    assert_error(same, 409, "same_status")


async def test_malformed_bodies_are_422_in_the_same_shape(world, anna):
    number = await world.mail()
    path = f"/tickets/{number}/actions/reply"
    broken = await world.client.post(
        path, content=b'{"text": ', headers=anna | {"Content-Type": "application/json"}
    )
    assert_error(broken, 422, "invalid_request")
    missing = await world.client.post(path, json={"txt": "hola"}, headers=anna)
    assert "text" in assert_error(missing, 422, "invalid_request")
    wrong_type = await world.client.post(path, json={"text": 7}, headers=anna)
    assert_error(wrong_type, 422, "invalid_request")
    page = await world.client.get("/tickets", params={"page": "x"}, headers=anna)
    assert "page" in assert_error(page, 422, "invalid_request")


async def test_unknown_things_are_404_in_json(world, anna):
    message = assert_error(await world.client.get("/tickets/999", headers=anna), 404, "not_found")
    assert "suport#999" in message
    response = await world.client.post("/tickets/999/actions/take", headers=anna)
    assert "suport#999" in assert_error(response, 404, "not_found")
    response = await world.client.get("/tickets/999/attachments/1", headers=anna)
    assert_error(response, 404, "not_found")
    response = await world.client.post("/tickets/1/actions/fly", headers=anna)
    assert_error(response, 404, "not_found")
    assert_error(await world.client.get("/nothing-here", headers=anna), 404, "not_found")
    response = await world.client.get("/tickets/1/actions/take", headers=anna)
    assert_error(response, 405, "method_not_allowed")


async def test_the_html_app_keeps_its_own_errors(world):
    response = await world.client.get("http://test/no-such-page")
    assert response.status_code == 404
    assert not response.headers["content-type"].startswith("application/json")


async def test_the_openapi_schema_documents_every_endpoint(world):
    response = await world.client.get("/openapi.json")
    assert response.status_code == 200
    schema = response.json()
    paths = schema["paths"]
    for action in actions.ACTIONS:
        assert "post" in paths[f"/tickets/{{n}}/actions/{action}"]
    expected = {
        "/me", "/tickets", "/tickets/{n}", "/tickets/{n}/attachments/{attachment_id}",
        "/dashboard", "/search", "/quarantine", "/quarantine/{mail_id}/retry",
        "/quarantine/{mail_id}/discard",
    }  # fmt: skip
    assert expected <= set(paths)
    assert set(paths["/tickets"]) == {"get", "post"}
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    reply = paths["/tickets/{n}/actions/reply"]["post"]
    assert reply["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/TextIn")
    assert reply["responses"]["400"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/ErrorOut"
    )
    assert "Idempotency-Key" in {p["name"] for p in reply["parameters"]}
    assert (await world.client.get("/docs")).status_code == 404


# --- quarantine ----------------------------------------------------------------------------


async def quarantined(world: World, uid: int, error: str) -> int:
    raw = f"From: x@example.net\r\nSubject: trencat {uid}\r\n\r\n...".encode()
    async with world.repo.connection() as conn:
        await inbound.store_many(conn, "INBOX", 1, [(uid, raw)])
        [item] = [i for i in await inbound.list_inbound(conn, None) if i.uid == uid]
        await inbound.mark_inbound(conn, item.id, inbound.QUARANTINED, error=error)
    return item.id


async def test_quarantine_list_retry_and_discard(world, anna):
    first = await quarantined(world, 1, "parse error")
    second = await quarantined(world, 2, "database busy")
    response = await world.client.get("/quarantine", headers=anna)
    assert response.status_code == 200
    mails = response.json()["mails"]
    assert [(m["id"], m["error"], m["attempts"]) for m in mails] == [
        (second, "database busy", 1),
        (first, "parse error", 1),
    ]
    assert mails[0]["size"] > 0

    retried = await world.client.post(f"/quarantine/{first}/retry", headers=anna)
    assert retried.json() == {"id": first, "state": "done"}
    assert world.retried == [first]

    discarded = await world.client.post(f"/quarantine/{second}/discard", headers=anna)
    assert discarded.json() == {"id": second, "state": "discarded"}
    async with world.repo.connection() as conn:
        assert (await inbound.get_inbound(conn, second)).state == "discarded"
    again = await world.client.post(f"/quarantine/{second}/retry", headers=anna)
    assert_error(again, 404, "mail_not_found")
    assert world.retried == [first]
    assert (await world.client.post(f"/quarantine/{first}/discard")).status_code == 401


async def retry_failing_with(world: World, anna: dict[str, str], error: Exception):
    """A quarantined mail's retry through the API, the retry raising `error`; the answer."""
    mail_id = await quarantined(world, 1, "parse error")

    async def failing(inbound_id: int) -> str:
        raise error

    world.context.retry_mail = failing
    # As a real server: the app answers, then lets the exception go on up to be logged.
    transport = httpx.ASGITransport(app=world.app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test/api/v1") as client:
        return await client.post(f"/quarantine/{mail_id}/retry", headers=anna)


async def test_an_unexpected_failure_is_500_in_the_same_shape(world, anna):
    response = await retry_failing_with(
        world, anna, RuntimeError("mail processing is not available here")
    )
    assert "try again" in assert_error(response, 500, "internal")


async def test_a_database_outage_is_503_with_a_time_to_come_back(world, anna, caplog):
    # What SQLAlchemy raises when the server is restarting (psycopg's words).
    unreachable = OperationalError("SELECT 1", {}, Exception("connection refused"))
    response = await retry_failing_with(world, anna, unreachable)
    assert "try again in a minute" in assert_error(response, 503, "unavailable")
    assert response.headers["retry-after"] == "30"
    # One line in the log, not a traceback per request while the outage lasts.
    (record,) = [r for r in caplog.records if "cannot be reached" in r.getMessage()]
    assert record.exc_info is None and "connection refused" in record.getMessage()


async def test_a_failing_statement_is_still_a_500_not_an_outage(world, anna):
    wrong = IntegrityError("INSERT", {}, Exception("UNIQUE constraint failed"))
    assert_error(await retry_failing_with(world, anna, wrong), 500, "internal")


# --- the token CLI -------------------------------------------------------------------------


def write_config(world: World, tmp_path: Path) -> str:
    data = {
        "mail": {
            "address": OWN,
            "imap": {"host": "imap.example.org", "username": "suport", "password": "pw"},
            "smtp": {"host": "smtp.example.org"},
        },
        "database": {"url": world.url},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


async def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    """`exobot ARGS` in a thread (it runs its own event loop); exit status, stdout, stderr."""
    capsys.readouterr()
    status = await asyncio.to_thread(cli.main, list(args))
    out, err = capsys.readouterr()
    return status, out, err


async def test_cli_creates_lists_and_revokes_tokens(world, tmp_path, capsys):
    config = write_config(world, tmp_path)
    status, out, _ = await run_cli(capsys, "token", "create", "t1", "--user", ANNA, "-c", config)
    assert status == 0
    [secret] = [line for line in out.splitlines() if line.startswith("exo_")]
    assert "cannot be shown again" in out
    headers = {"Authorization": f"Bearer {secret}"}
    assert (await world.client.get("/me", headers=headers)).json()["via"] == "token:t1"

    status, _, err = await run_cli(capsys, "token", "create", "t1", "--user", BERNAT, "-c", config)
    assert status == 1
    assert "already exists" in err
    status, _, err = await run_cli(
        capsys, "token", "create", "t2", "--user", "bernat", "-c", config
    )
    assert status == 2  # written wrong: a usage error, as argparse's
    assert "@name:server" in err

    status, out, _ = await run_cli(capsys, "token", "list", "-c", config)
    assert status == 0
    header, row = out.splitlines()
    assert header.split() == ["NAME", "USER", "CREATED", "LAST", "USED", "REVOKED"]
    assert row.split()[:2] == ["t1", ANNA]
    assert row.rstrip().endswith("-")  # not revoked
    assert "UTC" in row
    assert secret not in out

    status, out, _ = await run_cli(capsys, "token", "revoke", "t1", "-c", config)
    assert status == 0
    assert_error(await world.client.get("/me", headers=headers), 401, "unauthorized")
    status, _, err = await run_cli(capsys, "token", "revoke", "t1", "-c", config)
    assert status == 1
    assert "no live token" in err
    status, out, _ = await run_cli(capsys, "token", "list", "-c", config)
    assert not out.splitlines()[1].rstrip().endswith("-")
