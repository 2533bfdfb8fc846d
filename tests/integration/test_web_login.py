"""Logging in to the web with the Matrix identity: the `!login` link and the password."""

from __future__ import annotations

import re
from datetime import timedelta

import httpx
import pytest
from clocks import ShiftedClock
from harness import Instance
from matrix_harness import MatrixUser, body_of, is_room_notice, request_login_link, sender_of

from exobot.web.homeserver import DEVICE_NAME

pytestmark = pytest.mark.asyncio

_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


async def _web_chat(
    make_instance, matrix_setup, volunteer, *, web: bool = True, clock=None, **setup  # noqa: ANN001
):
    setup = matrix_setup(**setup)
    inst: Instance = make_instance(matrix=setup, web=web, clock=clock)
    await inst.start()
    vol: MatrixUser = await volunteer(setup)
    return inst, setup, vol


async def _password_login(
    browser: httpx.AsyncClient, inst: Instance, user: str, password: str, *, csrf: bool = True
) -> httpx.Response:
    """Fill and send the login form (with the token its page gave, unless `csrf` is False)."""
    fields = {"user": user, "password": password}
    if csrf:
        form = await browser.get(inst.web_url + "/login")
        fields["csrf"] = _CSRF.search(form.text).group(1)
    return await browser.post(inst.web_url + "/login", data=fields)


async def _follow_link(client: httpx.AsyncClient, link: str) -> httpx.Response:
    """Open a login link's page and press its button."""
    page = await client.get(link)
    assert page.status_code == 200, page.text
    csrf = _CSRF.search(page.text).group(1)
    return await client.post(link, data={"csrf": csrf})


async def test_login_link_arrives_encrypted_by_direct_message_and_works_once(
    make_instance, matrix_setup, volunteer
):
    inst, setup, vol = await _web_chat(make_instance, matrix_setup, volunteer)
    room = setup.rooms["suport"]
    link, wire = await request_login_link(vol, room, setup.bot_user_id)
    assert link.startswith(inst.web_url + "/login/link/")
    assert wire["type"] == "m.room.encrypted"
    # The answer at the command says where the link went.
    answer = await vol.wait_for(
        room,
        lambda e: sender_of(e) == setup.bot_user_id
        and e.get("type") == "m.room.message"
        and not is_room_notice(e),
        what="the answer to !login",
    )
    assert "missatge directe" in body_of(answer)

    async with httpx.AsyncClient() as browser:
        assert (await browser.get(inst.web_url + "/")).status_code == 303
        logged = await _follow_link(browser, link)
        assert logged.status_code == 303
        assert "exobot_session" in logged.cookies
        dashboard = await browser.get(inst.web_url + "/")
        assert dashboard.status_code == 200
        assert setup.volunteer_user_id in dashboard.text

    async with httpx.AsyncClient() as other_browser:
        again = await other_browser.get(link)
        assert again.status_code == 404  # single use
        assert (await other_browser.get(inst.web_url + "/")).status_code == 303


async def test_an_expired_link_is_refused(make_instance, matrix_setup, volunteer):
    clock = ShiftedClock()
    inst, setup, vol = await _web_chat(make_instance, matrix_setup, volunteer, clock=clock)
    link, _ = await request_login_link(vol, setup.rooms["suport"], setup.bot_user_id)
    clock.advance(inst.config.web.login_link_ttl + timedelta(seconds=1))
    async with httpx.AsyncClient() as browser:
        page = await browser.get(link)
        assert page.status_code == 404
        assert "caducat" in page.text


async def test_login_when_the_web_is_off_says_so(make_instance, matrix_setup, volunteer):
    inst, setup, vol = await _web_chat(make_instance, matrix_setup, volunteer, web=False)
    room = setup.rooms["suport"]
    mark = vol.mark(room)
    await vol.send(room, "!login")
    answer = await vol.wait_for(
        room,
        lambda e: sender_of(e) == setup.bot_user_id and e.get("type") == "m.room.message",
        after=mark,
        what="the answer to !login",
    )
    assert "no està activada" in body_of(answer)
    assert inst.scalar("SELECT count(*) FROM login_links") == 0


async def test_password_login_checks_the_homeserver_and_leaves_no_device(
    make_instance, matrix_setup, volunteer, stack
):
    inst, setup, vol = await _web_chat(make_instance, matrix_setup, volunteer)
    devices_before = await _devices(stack, setup)
    async with httpx.AsyncClient() as browser:
        wrong = await _password_login(browser, inst, setup.volunteer_user_id, "no")
        assert wrong.status_code == 401
        right = await _password_login(
            browser, inst, setup.volunteer_user_id, setup.volunteer_password
        )
        assert right.status_code == 303, right.text
        assert (await browser.get(inst.web_url + "/")).status_code == 200
    # The check's device was logged out at once: the volunteer has the same devices as before.
    devices_after = await _devices(stack, setup)
    assert devices_after == devices_before
    assert DEVICE_NAME not in {name for _, name in devices_after}


async def test_failed_password_logins_are_rate_limited(make_instance, matrix_setup, volunteer):
    inst, setup, _vol = await _web_chat(make_instance, matrix_setup, volunteer)
    async with httpx.AsyncClient() as browser:
        statuses = []
        for _ in range(6):
            answer = await _password_login(browser, inst, setup.volunteer_user_id, "wrong")
            statuses.append(answer.status_code)
        assert statuses == [401] * 5 + [429]
        # Even the right password waits now.
        limited = await _password_login(
            browser, inst, setup.volunteer_user_id, setup.volunteer_password
        )
        assert limited.status_code == 429
        assert "retry-after" in limited.headers


async def test_a_non_operator_cannot_log_in(make_instance, matrix_setup, volunteer):
    inst, setup, _vol = await _web_chat(make_instance, matrix_setup, volunteer)
    stranger = matrix_setup()  # another team's volunteer: in none of this bot's rooms
    async with httpx.AsyncClient() as browser:
        refused = await _password_login(
            browser, inst, stranger.volunteer_user_id, stranger.volunteer_password
        )
        assert refused.status_code == 403
        assert "exobot_session" not in refused.cookies
        assert (await browser.get(inst.web_url + "/")).status_code == 303


async def test_a_login_form_without_its_token_is_refused(make_instance, matrix_setup, volunteer):
    inst, setup, _vol = await _web_chat(make_instance, matrix_setup, volunteer)
    async with httpx.AsyncClient() as browser:
        refused = await _password_login(
            browser, inst, setup.volunteer_user_id, setup.volunteer_password, csrf=False
        )
        assert refused.status_code == 403
        assert "exobot_session" not in refused.cookies


async def _devices(stack, setup) -> list[tuple[str, str | None]]:
    async with httpx.AsyncClient() as http:
        login = await http.post(
            f"{setup.homeserver}/_matrix/client/v3/login",
            json={
                "type": "m.login.password",
                "identifier": {"type": "m.id.user", "user": setup.volunteer_user_id},
                "password": setup.volunteer_password,
                "initial_device_display_name": "device lister",
            },
        )
        token = login.json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        devices = await http.get(f"{setup.homeserver}/_matrix/client/v3/devices", headers=headers)
        await http.post(f"{setup.homeserver}/_matrix/client/v3/logout", headers=headers, json={})
        return sorted(
            (d["device_id"], d.get("display_name"))
            for d in devices.json()["devices"]
            if d.get("display_name") != "device lister"
        )
