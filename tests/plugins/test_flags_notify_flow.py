"""Flags, notices and per-queue digest lines on the real stack (Synapse, SMTP/IMAP, web):
the sample plugin flags a new mail; the flag shows in the ticket's root message, on its web
page and in the API; an operator clears it; a plugin's Notify mails the requestor once with
the reference and the thread's References, leaving the status alone; a digest line meant for
one queue reaches only that queue's room."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from harness import Instance, member_mail, operator_clients, unique, wait_until
from matrix_harness import body_of, sender_of

from exobot.core import intents as i
from exobot.core.model import Actor
from exobot.core.service import AlreadyHandled, InvalidRequest

pytestmark = pytest.mark.integration


async def test_flag_shown_cleared_and_a_notice_mailed_once(
    sample_installed, make_plugin_instance, matrix_setup, volunteer
):
    setup = matrix_setup()
    inst: Instance = make_plugin_instance(
        {"sample": {"digest_queue": "tresoreria"}},
        matrix=setup,
        web=True,
        alerts={"digest_at": "00:00"},  # due at once: the first sweep posts it
    )
    app = await inst.start()
    assert app.plugins.enabled == ["sample"], app.plugins.disabled
    vol = await volunteer(setup)
    suport, tresoreria = setup.rooms["suport"], setup.rooms["tresoreria"]

    # The digest: the line for every room in both, the tresoreria line only in its room.
    def digest_in(room: str):  # noqa: ANN202
        return vol.wait_for(
            room,
            lambda e: sender_of(e) == setup.bot_user_id
            and "sample digest line" in (body_of(e) or ""),
            what=f"the digest in {room}",
        )

    treasury_digest = body_of(await digest_in(tresoreria))
    support_digest = body_of(await digest_in(suport))
    assert "sample digest line for tresoreria only" in treasury_digest
    assert "sample digest line for tresoreria only" not in support_digest

    # A new mail the plugin flags: the root message carries the flag's line.
    member = unique("membre")
    mark = vol.mark(suport)
    first = member_mail(member, inst.address, subject="Sense connexió, urgent <b>")
    await inst.send(first)
    await inst.wait_tickets(1)
    number = inst.scalar("SELECT max(id) FROM tickets")
    reference = f"{inst.config.tickets.prefix}#{number}"
    root = await vol.wait_for(
        suport,
        lambda e: sender_of(e) == setup.bot_user_id and reference in (body_of(e) or ""),
        after=mark,
        what="the ticket's root message",
    )
    assert "🚩 the subject says urgent" in body_of(root)
    [ack] = await inst.wait_mailbox(member, 1)

    # The web page's badge and the API's flags.
    web, api, _session = await operator_clients(inst, setup.volunteer_user_id, "flags")
    async with web, api:
        page = await web.get(f"/tickets/{number}")
        assert page.status_code == 200, page.text
        # The badge: the flag's icon (inline SVG) and its note.
        assert re.search(
            r'<li class="flag" data-code="sample-urgent"><svg[^>]*>.*?</svg> '
            r"the subject says urgent</li>",
            page.text,
            re.S,
        ), page.text
        detail = (await api.get(f"/tickets/{number}")).json()
        [flag] = detail["flags"]
        assert (flag["code"], flag["note"], flag["source"]) == (
            "sample-urgent",
            "the subject says urgent",
            "sample",
        )
        assert datetime.fromisoformat(flag["since"]) <= datetime.now(UTC)

        # An operator clears it: gone from the page and the API, said in the thread.
        operator = Actor.operator(setup.volunteer_user_id)
        mark = vol.mark(suport)
        await app.service.apply(operator, i.ClearFlag(number, "sample-urgent", "not urgent"))
        await vol.wait_for(
            suport,
            lambda e: "🏳️" in (body_of(e) or "") and "not urgent" in body_of(e),
            after=mark,
            what="the cleared flag in the thread",
        )
        assert (await api.get(f"/tickets/{number}")).json()["flags"] == []
        assert 'class="flag"' not in (await web.get(f"/tickets/{number}")).text
        with pytest.raises(InvalidRequest):
            await app.service.apply(operator, i.ClearFlag(number, "sample-urgent"))

        # A plugin's notice: mailed to the requestor once, threaded, the status left alone.
        origin = i.Origin(key=f"sample:{number}:notice")
        system = Actor.system("sample")
        await app.service.apply(system, i.Notify(number, "El vostre tràmit està fet."), origin)
        with pytest.raises(AlreadyHandled):  # a retry with the same key sends nothing
            await app.service.apply(system, i.Notify(number, "El vostre tràmit està fet."), origin)
        mails = await inst.wait_mailbox(member, 2)
        notice = mails[1]
        assert f"[{reference}]" in notice["Subject"]
        assert notice["In-Reply-To"] == first["Message-ID"]  # the member's mail
        # Only what came before the parent: our ack, sent after it, is no ancestor of it.
        assert notice["References"].split() == [first["Message-ID"]]
        assert ack["Message-ID"] not in notice["References"]
        assert "El vostre tràmit està fet." in notice.get_content()
        assert notice["Cc"] is None
        await inst.wait_outbox_idle()
        assert len(inst.mailbox(member)) == 2  # once, whatever the retry did
        assert inst.scalar("SELECT status FROM tickets WHERE id = :n", n=number) == "new"
        detail = (await api.get(f"/tickets/{number}")).json()
        assert detail["status"] == "new" and detail["owner"] is None
        [entry] = [e for e in detail["history"] if e["data"].get("notice")]
        assert (entry["kind"], entry["actor"]) == ("mail_out", "sample")

    async def notice_in_thread() -> bool:
        return any("📣" in (body_of(e) or "") for e in vol.events(suport))

    await wait_until(notice_in_thread, what="the notice posted in the ticket's thread")
