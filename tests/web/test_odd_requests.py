"""Odd requests answer 400 or 404 in the usual shape, never 500: a NUL byte in the search
words, a page or a ticket number too big for the database's integers (issue 9, section 5)."""

from __future__ import annotations

import pytest

from tests.web.test_api import ANNA, assert_error
from tests.web.test_api import anna as anna  # noqa: F401 - fixture
from tests.web.test_api import world as world  # noqa: F401 - fixture
from tests.web.test_pages import alert, receive
from tests.web.test_pages import browser as browser  # noqa: F401 - fixture
from tests.web.test_pages import ctx as ctx  # noqa: F401 - fixture
from tests.web.test_pages import retrier as retrier  # noqa: F401 - fixture
from tests.web.test_pages import service as service  # noqa: F401 - fixture

HUGE = 10**19  # over 2**63 - 1, the database's largest integer
NUL = "\x00"


@pytest.mark.parametrize("words", [f"internet{NUL}", NUL, f"a {NUL}b"])
async def test_api_search_with_a_nul_byte_is_400(world, anna, words):
    await world.mail(subject="No tinc internet")
    for path in ("/search", "/tickets"):
        response = await world.client.get(path, params={"q": words}, headers=anna)
        message = assert_error(response, 400, "bad_search")
        assert "search" in message.lower()
    # A good search still works after a bad one.
    response = await world.client.get("/search", params={"q": "internet"}, headers=anna)
    assert response.status_code == 200
    assert [t["number"] for t in response.json()["tickets"]] == [1]


@pytest.mark.parametrize("path", ["/tickets", "/search?q=internet"])
async def test_api_a_page_too_far_is_400(world, anna, path):
    await world.mail(subject="No tinc internet")
    sep = "&" if "?" in path else "?"
    response = await world.client.get(f"{path}{sep}page={HUGE}", headers=anna)
    assert "page" in assert_error(response, 400, "bad_page")
    response = await world.client.get(f"{path}{sep}page=1000000", headers=anna)
    assert response.status_code == 200 and response.json()["tickets"] == []


async def test_api_a_ticket_number_too_big_is_404(world, anna):
    await world.mail()
    for number in (HUGE, 2**63, 2**63 - 1, 10**12):
        response = await world.client.get(f"/tickets/{number}", headers=anna)
        assert_error(response, 404, "not_found")
        response = await world.client.post(f"/tickets/{number}/actions/take", headers=anna)
        assert_error(response, 404, "not_found")
        response = await world.client.get(f"/tickets/{number}/attachments/1", headers=anna)
        assert_error(response, 404, "not_found")
        response = await world.client.get(f"/tickets/1/attachments/{number}", headers=anna)
        assert_error(response, 404, "attachment_not_found")
    response = await world.client.post(f"/quarantine/{HUGE}/retry", headers=anna)
    assert_error(response, 404, "mail_not_found")
    response = await world.client.post(f"/quarantine/{HUGE}/discard", headers=anna)
    assert_error(response, 404, "mail_not_found")
    # Nothing changed: the real ticket is still new and unowned.
    response = await world.client.get("/tickets/1", headers=anna)
    assert response.json()["status"] == "new" and response.json()["owner"] is None
    assert ANNA  # the token's operator


async def test_pages_search_with_a_nul_byte_is_400(browser, service):
    await receive(service, subject="No tinc internet")
    page = await browser.get("/tickets", params={"q": f"internet{NUL}"})
    assert page.status_code == 400
    assert "cerca" in alert(page.text).lower()
    assert (await browser.get("/tickets", params={"q": "internet"})).status_code == 200


async def test_pages_a_page_too_far_is_400_and_a_big_number_404(browser, service):
    number = await receive(service)
    page = await browser.get(f"/tickets?page={HUGE}")
    assert page.status_code == 400
    assert "pàgina" in alert(page.text).lower()
    for huge in (HUGE, 2**63, 10**12):
        assert (await browser.get(f"/tickets/{huge}")).status_code == 404
        response = await browser.act(huge, "take")
        assert response.status_code == 404
        assert (await browser.get(f"/tickets/{huge}/attachments/1")).status_code == 404
        assert (await browser.get(f"/tickets/{number}/attachments/{huge}")).status_code == 404
    assert (await browser.post(f"/quarantine/{HUGE}/retry")).status_code in (303, 404)
    assert (await browser.post(f"/quarantine/{HUGE}/discard")).status_code in (303, 404)
