"""How long a text a request may carry: the API refuses a text over MAX_TEXT_CHARS with its
usual 422 and the pages refuse it too, writing and mailing nothing; a form too large for the
server to read (or any error without words of its own) is the error page, in the reader's
language, never the framework's bare English."""

from __future__ import annotations

import pytest

from exobot.web.schemas import MAX_TEXT_CHARS
from exobot.web.templating import LANGUAGE_COOKIE
from tests.web.test_api import anna as anna  # noqa: F401 - fixture
from tests.web.test_api import assert_error
from tests.web.test_api import world as world  # noqa: F401 - fixture
from tests.web.test_pages import browser as browser  # noqa: F401 - fixture
from tests.web.test_pages import ctx as ctx  # noqa: F401 - fixture
from tests.web.test_pages import kinds, receive
from tests.web.test_pages import retrier as retrier  # noqa: F401 - fixture
from tests.web.test_pages import service as service  # noqa: F401 - fixture

TOO_LONG = "x" * (MAX_TEXT_CHARS + 1)


def test_the_limit_is_far_above_a_reply_and_within_what_a_page_form_carries():
    assert 50_000 <= MAX_TEXT_CHARS <= 1024 * 1024  # Starlette reads form fields up to 1 MB


# --- the API -------------------------------------------------------------------------------


@pytest.mark.parametrize("action", ["reply", "comment"])
async def test_the_api_refuses_a_text_over_the_limit(world, anna, action):
    number = await world.mail()
    before = (await world.client.get(f"/tickets/{number}", headers=anna)).json()["history"]
    answer = await world.client.post(
        f"/tickets/{number}/actions/{action}", json={"text": TOO_LONG}, headers=anna
    )
    message = assert_error(answer, 422, "invalid_request")
    assert "text" in message and str(MAX_TEXT_CHARS) in message
    assert len(answer.content) < 1000  # the text is not echoed back
    assert await world.outbox(number) == []  # no mail queued
    after = (await world.client.get(f"/tickets/{number}", headers=anna)).json()["history"]
    assert after == before


@pytest.mark.parametrize("action", ["reply", "comment"])
async def test_the_api_takes_a_text_at_the_limit(world, anna, action):
    number = await world.mail()
    at_limit = "y" * MAX_TEXT_CHARS
    answer = await world.client.post(
        f"/tickets/{number}/actions/{action}", json={"text": at_limit}, headers=anna
    )
    assert answer.status_code == 200, answer.text[:300]


async def test_the_api_refuses_a_first_note_over_the_limit(world, anna):
    body = {"requestor": "pere@example.net", "title": "Trucada", "text": TOO_LONG}
    answer = await world.client.post("/tickets", json=body, headers=anna)
    assert_error(answer, 422, "invalid_request")
    listed = (await world.client.get("/tickets", headers=anna)).json()
    assert listed["total"] == 0


async def test_the_schema_says_the_limit(world):
    schema = (await world.client.get("/openapi.json")).json()["components"]["schemas"]
    assert schema["TextIn"]["properties"]["text"]["maxLength"] == MAX_TEXT_CHARS
    assert schema["OpenTicketIn"]["properties"]["text"]["maxLength"] == MAX_TEXT_CHARS


# --- the pages -----------------------------------------------------------------------------


def error_page(answer, status: int) -> str:
    """The answer is the HTML error page with this status; returns its text."""
    assert answer.status_code == status, answer.text[:300]
    assert answer.headers["content-type"].startswith("text/html")
    assert '<p class="alert" role="alert">' in answer.text
    return answer.text


@pytest.mark.parametrize("action", ["reply", "comment"])
async def test_a_page_form_over_the_limit_is_refused_like_the_api(browser, service, repo, action):
    number = await receive(service)
    before = await kinds(repo, number)
    answer = await browser.post(
        f"/tickets/{number}/{action}", {"nonce": "n" * 20, "text": TOO_LONG}
    )
    page = error_page(answer, 413)
    assert "No s&#39;ha pogut fer (413)." in page  # the default language, Catalan
    assert await kinds(repo, number) == before


async def test_a_form_too_large_to_read_is_the_error_page_in_the_readers_language(
    browser, service, repo
):
    number = await receive(service)
    before = await kinds(repo, number)
    browser.client.cookies.set(LANGUAGE_COOKIE, "es")
    answer = await browser.post(
        f"/tickets/{number}/comment", {"nonce": "n" * 20, "text": "x" * (1024 * 1024 + 1)}
    )
    page = error_page(answer, 400)
    assert "No se ha podido hacer (400)." in page
    assert "Field exceeded" not in page
    assert await kinds(repo, number) == before


async def test_an_error_without_words_of_its_own_is_the_error_page(browser, service):
    number = await receive(service)
    answer = await browser.get(f"/tickets/{number}/take")  # a form's address, not a page
    page = error_page(answer, 405)
    assert "(405)" in page
    assert answer.headers["allow"] == "POST"
