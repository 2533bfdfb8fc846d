"""A form without the session's CSRF token is refused and changes nothing."""

from __future__ import annotations

import pytest
from browser_harness import Web

pytestmark = pytest.mark.asyncio


async def test_a_form_without_csrf_token_is_refused(web: Web):
    number, _ = await web.mail_ticket(subject="Protegit", body="Res a fer.")
    page = await web.logged_in_page()
    await page.goto(web.ticket_url(number))
    request = page.request  # shares the page's cookies: the session is there
    take = f"{web.ticket_url(number)}/take"

    response = await request.post(take, form={}, max_redirects=0)
    assert response.status == 403
    response = await request.post(take, form={"csrf": "not-the-token"}, max_redirects=0)
    assert response.status == 403
    response = await request.post(
        f"{web.ticket_url(number)}/reply", form={"text": "no hauria d'arribar"}, max_redirects=0
    )
    assert response.status == 403
    assert web.ticket(number)[:2] == ("new", None)
    changes = web.inst.query(
        "SELECT kind, body FROM entries WHERE ticket_id = :n AND (kind IN ('owner', 'status',"
        " 'comment') OR body LIKE '%no hauria%')",
        n=number,
    )
    assert changes == []

    # The same request with the page's token goes through: the token was the only problem.
    token = await page.locator('main form[action$="/take"] input[name=csrf]').input_value()
    response = await request.post(take, form={"csrf": token}, max_redirects=0)
    assert response.status == 303
    assert web.ticket(number)[:2] == ("open", web.setup.volunteer_user_id)


async def test_the_login_form_without_its_token_is_refused(web: Web):
    page = await web.page()
    await page.goto(f"{web.url}/login")  # sets the pre-login cookie
    response = await page.request.post(
        f"{web.url}/login",
        form={"user": web.setup.volunteer_user_id, "password": web.setup.volunteer_password},
        max_redirects=0,
    )
    assert response.status == 403
    await page.goto(f"{web.url}/")
    assert page.url.startswith(f"{web.url}/login"), page.url
