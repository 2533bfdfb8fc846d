"""Who is an operator, on the real Synapse: an invited user who has not joined is no operator
anywhere (web session, password login, API token) until they join, and a queue room anybody
can join grants nobody rights and says so (issue 9, section 4). Also: the bot's Matrix store
is private after a real login (section 6)."""

from __future__ import annotations

import os
import re
import stat
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from harness import Instance, wait_until
from matrix_harness import body_of, sender_of, unique_tag

from devstack.matrix_setup import _call, _quote, invite
from exobot.db import web as records
from exobot.i18n import say

pytestmark = pytest.mark.asyncio

_CSRF = re.compile(r'name="csrf" value="([^"]+)"')
PASSWORD = "pere-contrasenya"


async def _password_login(browser: httpx.AsyncClient, inst: Instance, user: str, password: str):
    form = await browser.get(inst.web_url + "/login")
    fields = {"user": user, "password": password, "csrf": _CSRF.search(form.text).group(1)}
    return await browser.post(inst.web_url + "/login", data=fields)


async def test_an_invited_user_is_no_operator_until_they_join(
    make_instance, matrix_setup, matrix_login, stack
):
    setup = matrix_setup()
    room = setup.rooms["suport"]
    pere = stack.register_matrix_user(f"pere{unique_tag()}", PASSWORD)["user_id"]
    invite(stack, setup.volunteer_access_token, room, pere)
    inst = make_instance(matrix=setup, web=True)
    app = await inst.start()

    async def pere_invited() -> bool:
        nio_room = app.matrix.nio.rooms.get(room)
        return nio_room is not None and pere in nio_room.invited_users

    await wait_until(pere_invited, what="the bot to see Pere's invitation")
    assert app.bot.is_operator(setup.volunteer_user_id)
    async with app.repository.connection() as conn:
        session, _ = await records.create_session(conn, pere, timedelta(hours=1), datetime.now(UTC))
        token = await records.create_api_token(conn, "pere", pere, datetime.now(UTC))
    api = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient() as browser:
        refused = await _password_login(browser, inst, pere, PASSWORD)
        assert refused.status_code == 403, refused.text
        assert pere in refused.text
        answer = await browser.get(inst.web_url + "/api/v1/me", headers=api)
        assert answer.status_code == 403 and answer.json()["error"] == "not_operator"
    async with httpx.AsyncClient(cookies={"exobot_session": session}) as browser:
        assert (await browser.get(inst.web_url + "/")).status_code == 303  # to the login page

    # Once Pere joins, the same session, token and password work.
    user = await matrix_login(pere, PASSWORD, setup.homeserver)
    await user.join(room)
    await wait_until(lambda: _async(app.bot.is_operator(pere)), what="the bot to see Pere join")
    async with httpx.AsyncClient(cookies={"exobot_session": session}) as browser:
        assert (await browser.get(inst.web_url + "/")).status_code == 200
        assert (await browser.get(inst.web_url + "/api/v1/me", headers=api)).status_code == 200
    async with httpx.AsyncClient() as browser:
        assert (await _password_login(browser, inst, pere, PASSWORD)).status_code == 303

    # The bot's store (device keys, access token) is private after its real login.
    store = inst.config.matrix.store_path
    assert stat.S_IMODE(os.stat(store).st_mode) == 0o700
    files = [p for p in store.rglob("*") if p.is_file()]
    assert any(p.name != "session.json" for p in files)  # nio's own database is there
    assert {stat.S_IMODE(os.stat(p).st_mode) for p in files} == {0o600}


async def _async(value: object) -> object:
    return value


async def test_a_public_queue_room_makes_nobody_an_operator_and_says_so(
    make_instance, matrix_setup, volunteer, stack
):
    setup = matrix_setup()
    room = setup.rooms["suport"]
    for queue_room in setup.rooms.values():  # every queue room: none grants anything then
        _call(
            stack,
            "PUT",
            f"/_matrix/client/v3/rooms/{_quote(queue_room)}/state/m.room.join_rules/",
            setup.volunteer_access_token,
            {"join_rule": "public"},
        )
    vol = await volunteer(setup)
    inst = make_instance(matrix=setup, web=True)
    await inst.start()
    warning = say("ca", "⚠️ This room is open (join rule “{rule}”): anybody can join it, so being a member gives nobody operator rights. Make it invite-only (or knock), or list the operators in matrix.operators.", rule="public")
    await vol.wait_for(
        room,
        lambda e: sender_of(e) == setup.bot_user_id and body_of(e) == warning,
        what="the bot's warning that the room is open",
    )
    mark = vol.mark(room)
    await vol.send(room, "!llista")
    refusal = await vol.wait_for(
        room,
        lambda e: sender_of(e) == setup.bot_user_id and e.get("type") == "m.room.message",
        what="the answer to !llista",
        after=mark,
    )
    assert body_of(refusal) == say("ca", "Sorry, only the support team's operators can use exobot's commands.")
    assert not inst.app.bot.is_operator(setup.volunteer_user_id)
