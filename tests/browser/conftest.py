"""Browser tests: Debian's Chromium driven by Playwright (async API) against the real stack.

One browser for the whole session, a fresh context per test. Each test gets `web`: an exobot
in-process with Matrix and the web server on, its own rooms and volunteer, and helpers to log
in, send member mails and follow the ticket's thread in Matrix.

    async def test_something(web):
        page = await web.logged_in_page()
        number, member = await web.mail_ticket(subject="Hola")
        await page.goto(web.ticket_url(number))
"""

from __future__ import annotations

from pathlib import Path

import pytest
from browser_harness import CHROMIUM, CHROMIUM_ARGS, Web
from playwright.async_api import async_playwright


@pytest.fixture(scope="session")
async def browser():
    """One headless Chromium (Debian's, installed by `make stack`) for the whole session."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed (run `make stack`)")
    playwright = await async_playwright().start()
    try:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            await browser.close()
    finally:
        await playwright.stop()


@pytest.fixture
async def web(browser, make_instance, matrix_setup, matrix_login):
    """A running exobot with Matrix and the web server on, and a browser to drive it."""
    setup = matrix_setup()
    inst = make_instance(matrix=setup, web=True)
    await inst.start()
    helper = Web(inst, setup, browser, matrix_login)
    try:
        yield helper
    finally:
        await helper.close()
