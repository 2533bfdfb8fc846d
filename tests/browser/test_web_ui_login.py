"""Logging in with the Matrix user and password, and out, in a real browser."""

from __future__ import annotations

import pytest
from browser_harness import Web, say
from matrix_harness import request_login_link
from playwright.async_api import expect

pytestmark = pytest.mark.asyncio


async def test_password_login_lands_on_the_dashboard_and_logout_ends_it(web: Web):
    page = await web.page()
    # Not logged in: the dashboard sends to the login page.
    await page.goto(f"{web.url}/")
    assert page.url.startswith(f"{web.url}/login")

    await web.login(page)
    assert page.url == f"{web.url}/"
    await expect(page.get_by_role("heading", level=1)).to_have_text(say("Dashboard"))
    # Named as a person reads it (Synapse's display name: the localpart), the id on hover.
    name = web.setup.volunteer_user_id.split(":")[0][1:]
    who = say("Logged in as {user}", user=name)
    await expect(page.get_by_text(who)).to_be_visible()
    await expect(page.locator(".who")).to_have_attribute("title", web.setup.volunteer_user_id)

    await page.get_by_role("button", name=say("Log out")).click()
    await page.wait_for_url(f"{web.url}/login")
    await page.goto(f"{web.url}/")
    assert page.url.startswith(f"{web.url}/login"), page.url
    await expect(page.get_by_text(who)).to_have_count(0)


async def test_a_wrong_password_shows_the_error_and_stays_out(web: Web):
    page = await web.page()
    await web.login(page, password="not-the-password")
    assert page.url.startswith(f"{web.url}/login")
    await expect(page.get_by_role("alert")).to_have_text(say("The user or the password is not right."))
    # The user stays filled in, the password does not.
    await expect(page.get_by_label(say("Matrix user"))).to_have_value(
        web.setup.volunteer_user_id
    )
    await expect(page.get_by_label(say("Password"))).to_have_value("")
    await page.goto(f"{web.url}/")
    assert page.url.startswith(f"{web.url}/login"), page.url


async def test_a_matrix_user_outside_the_queue_rooms_is_refused(web: Web, matrix_setup):
    other = matrix_setup()  # its volunteer has a right password but none of our rooms
    page = await web.page()
    await web.login(page, user=other.volunteer_user_id, password=other.volunteer_password)
    assert page.url.startswith(f"{web.url}/login")
    await expect(page.get_by_role("alert")).to_have_text(
        say("{user} is not in the support team.", user=other.volunteer_user_id)
    )
    await page.goto(f"{web.url}/")
    assert page.url.startswith(f"{web.url}/login"), page.url


async def test_login_returns_to_the_page_asked_for(web: Web):
    number, _ = await web.mail_ticket(subject="Enllaç des del xat")
    page = await web.page()
    await page.goto(web.ticket_url(number))
    assert page.url == f"{web.url}/login?next=/tickets/{number}", page.url
    await page.get_by_label(say("Matrix user")).fill(web.setup.volunteer_user_id)
    await page.get_by_label(say("Password")).fill(web.setup.volunteer_password)
    async with page.expect_navigation():
        await page.get_by_label(say("Password")).press("Enter")
    assert page.url == web.ticket_url(number)
    await expect(page.locator("main h1 .title")).to_have_text("Enllaç des del xat")


async def test_the_chat_link_logs_in_once(web: Web):
    vol = await web.volunteer()
    link, _wire = await request_login_link(vol, web.room(), web.setup.bot_user_id)
    page = await web.page()
    await page.goto(link)
    confirm = say("You will log in as {user}.", user=web.setup.volunteer_user_id)
    await expect(page.get_by_text(confirm)).to_be_visible()
    await page.get_by_role("button", name=say("Log in")).click()
    await page.wait_for_url(f"{web.url}/")
    await expect(page.get_by_role("heading", level=1)).to_have_text(say("Dashboard"))
    # The same link in another browser: spent.
    other = await web.page()
    await other.goto(link)
    await expect(other.get_by_role("alert")).to_have_text(say("This link is not valid: it was already used or it expired. Ask for another one by typing !login in the support room."))
    await other.goto(f"{web.url}/")
    assert other.url.startswith(f"{web.url}/login"), other.url
