"""The sample plugin with Matrix (real Synapse) and the web: its lines in the daily digest
and in a ticket's root message, its failure reported once in the queue room, its panel on the ticket page, its own
page in the core layout, and its API route behind a bearer token."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from harness import Instance, member_mail, unique, wait_until
from matrix_harness import body_of, sender_of

from exobot.db import web as records
from exobot.web.auth import SESSION_COOKIE

pytestmark = pytest.mark.integration


async def test_root_line_failure_notice_panel_page_and_api(
    sample_installed, make_plugin_instance, matrix_setup, volunteer
):
    setup = matrix_setup()
    # A digest due at once: the first sweep posts it, with the plugin's line.
    inst: Instance = make_plugin_instance(
        {"sample": {}}, matrix=setup, web=True, alerts={"digest_at": "00:00"}
    )
    app = await inst.start()
    assert app.plugins.enabled == ["sample"], app.plugins.disabled
    vol = await volunteer(setup)
    room = setup.rooms["suport"]

    async def operator_known() -> bool:
        return app.bot.is_operator(setup.volunteer_user_id)

    await wait_until(operator_known, what="the volunteer known as an operator")
    await vol.wait_for(
        room,
        lambda e: sender_of(e) == setup.bot_user_id
        and "sample digest line" in (body_of(e) or ""),
        what="the digest with the plugin's line",
    )

    # The root message of a new ticket carries the plugin's line, escaped.
    mark = vol.mark(room)
    member = unique("membre")
    await inst.send(member_mail(member, inst.address, subject="Sense connexió, urgent"))
    await inst.wait_tickets(1)
    number = inst.scalar("SELECT max(id) FROM tickets")
    root = await vol.wait_for(
        room,
        lambda e: sender_of(e) == setup.bot_user_id
        and f"sample root line for #{number}" in (body_of(e) or ""),
        after=mark,
        what="the root with the plugin's line",
    )
    html = root["content"].get("formatted_body", "")
    assert f"sample root line for #{number} &lt;b&gt;" in html

    # A failing event handler: the change stands, and the room hears of it once.
    sample_installed.FAIL.add("event")
    mark = vol.mark(room)
    await vol.send(room, f"!comenta {inst.config.tickets.prefix}#{number} primer")
    await vol.send(room, f"!comenta {inst.config.tickets.prefix}#{number} segon")

    async def two_comments() -> bool:
        return inst.scalar("SELECT count(*) FROM entries WHERE kind = 'comment'") == 2

    await wait_until(two_comments, what="both comments stored")
    notice = await vol.wait_for(
        room,
        lambda e: sender_of(e) == setup.bot_user_id and "sample" in (body_of(e) or "")
        and "⚠️" in (body_of(e) or ""),
        after=mark,
        what="the plugin's failure notice",
    )
    assert "RuntimeError" in body_of(notice)
    await inst.wait_outbox_idle()
    notices = [
        e for e in vol.events(room)[mark:] if "⚠️" in (body_of(e) or "") and "sample" in body_of(e)
    ]
    assert len(notices) == 1, [body_of(e) for e in notices]
    assert app.plugins.enabled == ["sample"]  # two failures are not five
    sample_installed.FAIL.clear()

    # The web: the panel on the ticket page and the plugin's own page, for an operator.
    now = datetime.now(UTC)
    async with app.repository.connection() as conn:
        cookie, _session = await records.create_session(
            conn, setup.volunteer_user_id, timedelta(hours=1), now
        )
        token = await records.create_api_token(conn, "sample", setup.volunteer_user_id, now)
    async with httpx.AsyncClient(
        base_url=inst.web_url, cookies={SESSION_COOKIE: cookie}, timeout=30
    ) as web:
        page = await web.get(f"/tickets/{number}")
        assert page.status_code == 200, page.text
        assert "Sample &lt;panel&gt;" in page.text
        assert "Sense connexió, urgent sample-panel-body" in page.text
        # The flag the new-mail hook set is in the history, in the reader's language.
        # (the web shows it with its own icon, not the chat's emoji)
        assert "Marca sample-urgent: the subject says urgent" in page.text
        own = await web.get("/plugins/sample/")
        assert own.status_code == 200, own.text
        assert f"sample page for {setup.volunteer_user_id}" in own.text
        assert "<nav" in own.text or "<header" in own.text  # in the core layout
    async with httpx.AsyncClient(base_url=inst.web_url + "/api/v1", timeout=30) as api:
        assert (await api.get("/plugins/sample/hello")).status_code == 401
        hello = await api.get(
            "/plugins/sample/hello", headers={"Authorization": f"Bearer {token}"}
        )
        assert hello.status_code == 200, hello.text
        assert hello.json() == {"hello": setup.volunteer_user_id, "greeting": "Hola"}
