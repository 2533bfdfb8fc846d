"""An Idempotency-Key belongs to the request it came with (method, path, body): used again for
a different request it is refused with 422 `key_reused` and nothing is done, while a true
retry (the same request, or a key recorded without a fingerprint: before migration 0009)
is answered as before. On SQLite and PostgreSQL, through the whole web app."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest
from sqlalchemy import insert, select

from exobot.core.actions import ActionCall, ActionSpec, Answer, ArgKind, Argument, new_registry
from exobot.core.intents import Comment
from exobot.core.service import ServiceSettings, TicketService
from exobot.db.engine import create_engine, create_sync_engine
from exobot.db.migrate import upgrade_async
from exobot.db.repository import SqlRepository
from exobot.db.tables import HandledKeyRow
from exobot.mail.msgid import MessageIds
from exobot.web.app import create_app
from exobot.web.context import WebContext, WebSettings
from tests.web.test_api import ANNA, BERNAT, OWN, QUEUES, World, assert_error

H = HandledKeyRow.__table__
REUSED = "this Idempotency-Key was already used for a different request"


@pytest.fixture
def stamps() -> list[ActionCall]:
    """The calls the plugin action's handler got."""
    return []


@pytest.fixture
async def world(db_url: str, stamps: list[ActionCall]):
    """test_api's world over a fresh SQLite or PostgreSQL database, with a plugin's action
    done by a handler (`stamp`: an answer, or with the word "note" a comment to add)."""

    async def stamp(call: ActionCall) -> Answer | Comment:
        stamps.append(call)
        word = call.args["word"]
        if word == "note":
            return Comment(call.ticket, f"stamped by {call.actor}")
        return Answer(f"Stamp {word} on #{call.ticket}")

    registry = new_registry()
    registry.register(
        ActionSpec(
            "stamp",
            "!stamp {ref} word",
            "Stamps the ticket.",
            arguments=(Argument("word", ArgKind.WORD),),
            handler=stamp,
            owner="test",
        )
    )
    await upgrade_async(db_url)
    repo = SqlRepository(create_engine(db_url), create_sync_engine(db_url))
    service = TicketService(
        repo,
        MessageIds("secret" * 4, "example.org"),
        ServiceSettings(queues=frozenset(QUEUES), own_address=OWN),
    )

    async def retry_mail(inbound_id: int) -> str:
        return "done"

    context = WebContext(
        WebSettings(root="http://test", secure=False, queues=QUEUES, support_address=OWN),
        repo,
        service,
        is_operator=lambda user: user in {ANNA, BERNAT},
        retry_mail=retry_mail,
        actions=registry,
    )
    app = create_app(context)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test/api/v1") as client:
        yield World(db_url, repo, service, context, app, client)
    await repo.close()


@pytest.fixture
async def anna(world: World) -> dict[str, str]:
    return await world.token("anna")


def comments(ticket: dict) -> list[str]:
    return [e["body"] for e in ticket["history"] if e["kind"] == "comment"]


async def history(world: World, anna: dict[str, str], number: int) -> list[dict]:
    return (await world.client.get(f"/tickets/{number}", headers=anna)).json()["history"]


async def test_a_key_reused_for_another_request_is_422_and_does_nothing(world, anna):
    first, second = await world.mail(), await world.mail()
    headers = anna | {"Idempotency-Key": "k"}
    done = await world.client.post(
        f"/tickets/{first}/actions/comment", json={"text": "first"}, headers=headers
    )
    assert done.status_code == 200, done.text
    assert comments(done.json()) == ["first"]
    before = {n: await history(world, anna, n) for n in (first, second)}

    # Another ticket, another text, another action: each refused, nothing written.
    for path, body in (
        (f"/tickets/{second}/actions/comment", {"text": "second"}),
        (f"/tickets/{first}/actions/comment", {"text": "second"}),
        (f"/tickets/{first}/actions/reply", {"text": "first"}),
        (f"/tickets/{first}/actions/take", None),
    ):
        refused = await world.client.post(path, json=body, headers=headers)
        assert assert_error(refused, 422, "key_reused") == REUSED
    assert {n: await history(world, anna, n) for n in (first, second)} == before
    assert not [r for r in await world.outbox(first) if r.template == "reply"]

    # The same request again is a retry, answered as before and done once.
    again = await world.client.post(
        f"/tickets/{first}/actions/comment", json={"text": "first"}, headers=headers
    )
    assert again.status_code == 200, again.text
    assert comments(again.json()) == ["first"]


async def test_an_open_ticket_key_reused_for_another_body_is_422(world, anna):
    headers = anna | {"Idempotency-Key": "open"}
    body = {"requestor": "pere@example.net", "title": "Quota", "queue": "tresoreria"}
    created = await world.client.post("/tickets", json=body, headers=headers)
    assert created.status_code == 201, created.text

    other = body | {"title": "Una altra cosa"}
    refused = await world.client.post("/tickets", json=other, headers=headers)
    assert assert_error(refused, 422, "key_reused") == REUSED
    # The key of an open-ticket request used for an action: another request too.
    number = created.json()["number"]
    refused = await world.client.post(
        f"/tickets/{number}/actions/comment", json={"text": "x"}, headers=headers
    )
    assert_error(refused, 422, "key_reused")
    assert await world.repo.count_tickets() == 1
    assert comments((await world.client.get(f"/tickets/{number}", headers=anna)).json()) == []

    repeated = await world.client.post("/tickets", json=body, headers=headers)
    assert repeated.status_code == 200
    assert repeated.json()["number"] == number


async def test_a_key_recorded_without_a_fingerprint_is_a_retry(world, anna, stamps):
    """Keys recorded before migration 0009 (or by chat and the forms) have no fingerprint:
    a request repeating one is a retry, whatever it asks, as before."""
    number = await world.mail()
    async with world.repo.connection() as conn:
        for key in ("api:anna:old", "api:anna:old-open", "api:anna:old-stamp"):
            await conn.execute(
                insert(H).values(key=key, handled_at=datetime.now(UTC), ticket_id=number)
            )
    before = await history(world, anna, number)

    headers = anna | {"Idempotency-Key": "old"}
    retried = await world.client.post(
        f"/tickets/{number}/actions/comment", json={"text": "new"}, headers=headers
    )
    assert retried.status_code == 200, retried.text
    assert retried.json()["history"] == before

    body = {"requestor": "pere@example.net", "title": "Quota"}
    opened = await world.client.post(
        "/tickets", json=body, headers=anna | {"Idempotency-Key": "old-open"}
    )
    assert opened.status_code == 200, opened.text
    assert opened.json()["number"] == number
    assert await world.repo.count_tickets() == 1

    stamped = await world.client.post(
        f"/tickets/{number}/actions/stamp",
        json={"word": "verd"},
        headers=anna | {"Idempotency-Key": "old-stamp"},
    )
    assert stamped.status_code == 200, stamped.text
    assert stamped.json()["answer"] is None
    assert stamps == []


async def test_a_plugin_action_key_reused_with_other_arguments_is_422(world, anna, stamps):
    number = await world.mail()
    path = f"/tickets/{number}/actions/stamp"
    headers = anna | {"Idempotency-Key": "s"}
    done = await world.client.post(path, json={"word": "verd"}, headers=headers)
    assert done.status_code == 200, done.text
    assert done.json()["answer"] == f"Stamp verd on #{number}"

    refused = await world.client.post(path, json={"word": "blau"}, headers=headers)
    assert assert_error(refused, 422, "key_reused") == REUSED
    assert [call.args["word"] for call in stamps] == ["verd"]  # the handler did not run

    again = await world.client.post(path, json={"word": "verd"}, headers=headers)
    assert again.status_code == 200, again.text
    assert again.json()["answer"] is None  # a retry: not run again (as before)
    assert len(stamps) == 1

    # A handler that gives back an intent: its key is claimed by the service, with the
    # request's fingerprint, and checked the same way.
    headers = anna | {"Idempotency-Key": "n"}
    noted = await world.client.post(path, json={"word": "note"}, headers=headers)
    assert comments(noted.json()["ticket"]) == [f"stamped by {ANNA}"]
    refused = await world.client.post(path, json={"word": "blau"}, headers=headers)
    assert_error(refused, 422, "key_reused")
    assert len(stamps) == 2
    async with world.repo.connection() as conn:
        rows = {
            r.key: r.request_hash for r in await conn.execute(select(H.c.key, H.c.request_hash))
        }
    assert len(rows["api:anna:s"]) == len(rows["api:anna:n"]) == 64
    assert rows["api:anna:s"] != rows["api:anna:n"]
