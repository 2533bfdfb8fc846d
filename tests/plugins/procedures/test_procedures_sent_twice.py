"""The procedures' own web forms and API routes sent twice: a double click on the ticket
panel's "Record a procedure", or a client retrying `POST /api/v1/plugins/procedures/` with the
same Idempotency-Key, used to record two procedures and mail the member twice. Each form now
carries its nonce and each request its key; the plugin records it with the procedure's event
(test_procedures_redelivery.py covers the chat commands)."""

from __future__ import annotations

import re

from sqlalchemy import select
from web_world import web_world_fixture  # noqa: F401  (the fixture)

from exobot.db.tables import OutboxRow

O = OutboxRow.__table__  # noqa: E741
BASE = "/api/v1/plugins/procedures"


async def member_mails(world, address: str) -> int:
    """Mails queued to `address` apart from the acknowledgement of its first mail."""
    async with world.repository.connection() as conn:
        rows = await conn.execute(select(O.c.payload).where(O.c.kind == "mail"))
        return sum(
            1 for (p,) in rows if p.get("to") == [address] and p.get("template") != "ack"
        )


async def procedures(world) -> list[str]:
    return [p["ref"] for p in (await world.api.get(BASE + "/")).json()]


def nonces(page: str, action: str) -> list[str]:
    """The nonce of each form posting to `action` on the page."""
    forms = re.findall(rf'<form method="post" action="{re.escape(action)}".*?</form>', page, re.S)
    return [re.search(r'name="nonce" value="([^"]+)"', form).group(1) for form in forms]


async def test_the_panels_form_sent_twice_records_one_procedure(web_world):
    world = web_world
    number = await world.mail("ona@example.org")
    page = (await world.client.get(f"/tickets/{number}")).text
    create = f"/plugins/procedures/tickets/{number}/create"
    [nonce] = nonces(page, create)
    form = {"csrf": world.csrf, "nonce": nonce, "type": "bank", "member": "1234", "note": ""}
    first = await world.client.post(create, data=form)
    again = await world.client.post(create, data=form)  # the double click
    assert first.status_code == again.status_code == 303
    assert again.headers["location"] == first.headers["location"]
    assert await procedures(world) == ["P-1"]
    assert await member_mails(world, "ona@example.org") == 1

    # A new form (a new nonce) records another; its done form sent twice finishes it once.
    page = (await world.client.get(f"/tickets/{number}")).text
    [nonce] = nonces(page, create)
    assert nonce != form["nonce"]
    await world.client.post(create, data=form | {"nonce": nonce})
    assert await procedures(world) == ["P-2", "P-1"]
    page = (await world.client.get("/plugins/procedures/P-2")).text
    [done] = nonces(page, "/plugins/procedures/P-2/done")
    finish = {"csrf": world.csrf, "nonce": done, "note": "rebut"}
    first = await world.client.post("/plugins/procedures/P-2/done", data=finish)
    again = await world.client.post("/plugins/procedures/P-2/done", data=finish)
    assert first.status_code == again.status_code == 303  # not "P-2 is not pending"
    assert await member_mails(world, "ona@example.org") == 3  # two recorded, one done


async def test_an_api_request_retried_with_its_key_records_one_procedure(web_world):
    world = web_world
    number = await world.mail("pau@example.org")
    body = {"ticket": number, "type": "bank", "member": "1234"}
    key = {"Idempotency-Key": "alta-1"}
    first = await world.api.post(BASE + "/", json=body, headers=key)
    again = await world.api.post(BASE + "/", json=body, headers=key)
    assert first.status_code == again.status_code == 201
    assert again.json()["id"] == first.json()["id"]
    assert await procedures(world) == ["P-1"]
    assert await member_mails(world, "pau@example.org") == 1
    done = {"Idempotency-Key": "fet-1"}
    first = await world.api.post(BASE + "/1/done", json={}, headers=done)
    again = await world.api.post(BASE + "/1/done", json={}, headers=done)
    assert first.status_code == again.status_code == 200  # not 409
    assert again.json()["state"] == "done"
    assert await member_mails(world, "pau@example.org") == 2

    # Without a key each request acts, as before.
    await world.api.post(BASE + "/", json=body)
    await world.api.post(BASE + "/", json=body)
    assert await procedures(world) == ["P-3", "P-2", "P-1"]
    assert await member_mails(world, "pau@example.org") == 4
