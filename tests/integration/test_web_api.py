"""The JSON API on the real stack: a token made by the CLI, a member's mail listed, a reply
made through the API mailed to the member; requests without a valid token refused."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from harness import Instance, member_mail, unique

from exobot import cli

pytestmark = pytest.mark.integration


async def create_token(inst: Instance, capsys, name: str, user: str) -> str:
    """`exobot token create` against the instance's config (in a thread: it runs its own loop);
    returns the token it printed."""
    args = ["token", "create", name, "--user", user, "-c", str(inst.config_path)]
    capsys.readouterr()
    assert await asyncio.to_thread(cli.main, args) == 0
    out = capsys.readouterr().out
    assert "cannot be shown again" in out
    [token] = [line for line in out.splitlines() if line.startswith("exo_")]
    return token


async def test_a_reply_through_the_api_reaches_the_member(
    make_instance, matrix_setup, volunteer, capsys
):
    setup = matrix_setup()
    inst: Instance = make_instance(matrix=setup, web=True)
    await inst.start()
    await volunteer(setup)  # the operator: a member of the queue rooms
    token = await create_token(inst, capsys, "t1", setup.volunteer_user_id)

    member = unique("membre")
    await inst.send(member_mail(member, inst.address, subject="No puc entrar al correu"))
    await inst.wait_tickets(1)
    number = inst.scalar("SELECT max(id) FROM tickets")
    [ack] = await inst.wait_mailbox(member, 1)

    api = f"{inst.web_url}/api/v1"
    async with httpx.AsyncClient(
        base_url=api, headers={"Authorization": f"Bearer {token}"}, timeout=30
    ) as client:
        me = await client.get("/me")
        assert me.json() == {"user_id": setup.volunteer_user_id, "via": "token:t1"}

        listed = await client.get("/tickets", params={"status": "new"})
        assert listed.status_code == 200, listed.text
        [ticket] = listed.json()["tickets"]
        assert (ticket["number"], ticket["requestor"]) == (number, member)
        assert ticket["title"] == "No puc entrar al correu"

        text = "Hola,\nprova de tornar a posar la contrasenya."
        replied = await client.post(
            f"/tickets/{number}/actions/reply",
            json={"text": text},
            headers={"Idempotency-Key": "reply-1"},
        )
        assert replied.status_code == 200, replied.text
        assert replied.json()["status"] == "open"
        [sent] = [e for e in replied.json()["history"] if e["kind"] == "mail_out"][-1:]
        assert (sent["actor"], sent["body"]) == (setup.volunteer_user_id, text)

        # A retry of the same request (a lost answer) does not mail the member twice.
        retried = await client.post(
            f"/tickets/{number}/actions/reply",
            json={"text": text},
            headers={"Idempotency-Key": "reply-1"},
        )
        assert retried.status_code == 200
        assert retried.json()["history"] == replied.json()["history"]

    mails = await inst.wait_mailbox(member, 2)
    [answer] = [m for m in mails if m["Message-ID"] != ack["Message-ID"]]
    assert f"[suport#{number}]" in answer["Subject"]
    assert "prova de tornar a posar la contrasenya" in answer.get_content()
    await inst.wait_outbox_idle()
    assert len(inst.mailbox(member)) == 2
    assert (
        inst.scalar(
            "SELECT count(*) FROM outbox WHERE ticket_id = :n AND template = 'reply'", n=number
        )
        == 1
    )

    async with httpx.AsyncClient(base_url=api, timeout=30) as anonymous:
        missing = await anonymous.get("/tickets")
        assert missing.status_code == 401
        assert missing.json()["error"] == "unauthorized"
        wrong = await anonymous.get("/tickets", headers={"Authorization": "Bearer exo_wrong"})
        assert wrong.status_code == 401
        assert wrong.json()["error"] == "unauthorized"
        schema = await anonymous.get("/openapi.json")
        assert "/tickets/{n}/actions/reply" in schema.json()["paths"]

    listed = await asyncio.to_thread(cli.main, ["token", "list", "-c", str(inst.config_path)])
    assert listed == 0
    out = capsys.readouterr().out
    assert "t1" in out and setup.volunteer_user_id in out
    assert token not in out
