"""What the web audit of 2026-12-03 found in a real browser, mended: Back after a reply never
offers the sent text again (Chromium refilled the box of the page loaded again, and a second
click mailed the member twice); a reply written while the session ended survives the login;
the stalled ticket's page fits a phone; the quarantine's headings keep their words whole; the
"give it to" choice shows a long name whole; the plugins' pages are in the main menu."""

from __future__ import annotations

import asyncio

import pytest
import yaml
from browser_harness import Web, say
from harness import Instance, member_mail, unique
from playwright.async_api import Page, expect

from exobot import i18n
from exobot.config import load_config
from exobot.core.intents import Reply, SetStatus, Take
from exobot.core.model import Status

pytestmark = pytest.mark.asyncio

DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 375, "height": 800}
REPLY = "Hola Pere,\net truquem demà al matí per mirar el router."
MAILS_OUT = "SELECT count(*) FROM entries WHERE ticket_id = :n AND kind = 'mail_out'"
LONG_WORD = "Supercalifragilisticexpialidocious" * 9


def mails_out(web: Web, number: int) -> int:
    return web.inst.scalar(MAILS_OUT, n=number)


async def send_reply(page: Page) -> None:
    async with page.expect_navigation():
        await (
            page.locator("#action-reply")
            .get_by_role("button", name=say("Send the reply"), exact=True)
            .click()
        )


async def test_back_after_a_reply_never_mails_it_twice(web: Web):
    number, _ = await web.mail_ticket(subject="Canvi de router", body="Voldria canviar-lo.")
    before = mails_out(web, number)
    page = await web.logged_in_page(viewport=PHONE)
    await page.goto(web.ticket_url(number))
    await page.locator("#reply-text").fill(REPLY)
    await send_reply(page)
    await expect(page.locator("#done")).to_have_text(
        say("Reply saved: it will be emailed right away.")
    )
    assert mails_out(web, number) == before + 1

    await page.go_back()
    await page.wait_for_load_state()
    assert page.url == web.ticket_url(number)
    left = await page.locator("#reply-text").input_value()
    if left.strip():  # what a volunteer would do with the text back in the box: send it
        await send_reply(page)
    assert left == "", "the sent text came back in the reply box"
    assert mails_out(web, number) == before + 1


async def test_a_reply_written_while_the_session_ended_survives_the_login(web: Web):
    number, _ = await web.mail_ticket(subject="Talls", body="Es talla cada vespre.")
    before = mails_out(web, number)
    page = await web.logged_in_page(viewport=DESKTOP)
    await page.goto(web.ticket_url(number))
    await page.locator("#reply-text").fill(REPLY)
    # The session ends while the reply is being written (expired, or logged out elsewhere).
    await asyncio.to_thread(web.inst.query, "DELETE FROM web_sessions")
    await send_reply(page)
    assert page.url.startswith(f"{web.url}/login?")
    assert mails_out(web, number) == before

    # The login form of that page (it knows where to come back to).
    await page.get_by_label(say("Matrix user")).fill(web.setup.volunteer_user_id)
    await page.get_by_label(say("Password")).fill(web.setup.volunteer_password)
    async with page.expect_navigation():
        await page.locator("main form").get_by_role("button", name=say("Log in")).click()
    assert page.url == web.ticket_url(number), "not back on the ticket (a 405 before)"
    await expect(page.locator("#reply-text")).to_have_value(REPLY)

    await send_reply(page)
    assert mails_out(web, number) == before + 1
    # Sent: it is not offered again on the ticket's page.
    await page.goto(web.ticket_url(number))
    await expect(page.locator("#reply-text")).to_have_value("")


async def sideways(page: Page) -> list[str]:
    """What sticks out to the right of the viewport (empty: the page fits)."""
    return await page.evaluate(
        """() => [...document.querySelectorAll("body *")]
            .filter((e) => e.getBoundingClientRect().right > window.innerWidth + 0.5)
            .map((e) => e.tagName.toLowerCase() + "." + (e.className || "")
                 + " right=" + Math.round(e.getBoundingClientRect().right))"""
    )


async def test_the_stalled_ticket_page_fits_a_phone(web: Web):
    number, _ = await web.mail_ticket(subject="Canvi de router", body="Voldria canviar-lo.")
    await web.act(Take(number))
    await web.act(Reply(number, "Quin model tens ara?"))
    await web.act(SetStatus(number, Status.STALLED))  # the member's move: a badge in the status
    page = await web.logged_in_page(viewport=PHONE)
    await page.goto(web.ticket_url(number))
    await expect(page.locator("dl.meta .waiting")).to_be_visible()
    # An owner as long as the audit's (a Matrix id for a name: the test server's are short),
    # and someone with a long name to give it to.
    await page.locator("dd.owner .person").evaluate(
        "(person) => { person.textContent = '@voluntari.de.guardia:example.org'; }"
    )
    await page.locator("#give-owner").evaluate(
        """(select) => select.add(new Option(
            "Anna Puig i Ferrer (@anna.puig.ferrer:example.org)", "@anna:example.org"))"""
    )
    widths = await page.evaluate("() => [document.documentElement.scrollWidth, innerWidth]")
    assert widths[0] <= widths[1], f"scrolls sideways: {widths}; {await sideways(page)}"


# How many lines each heading of a table takes (its text's line boxes).
HEADING_LINES = """(table) => [...document.querySelectorAll(table + " thead th")].map((th) => {
    const range = document.createRange();
    range.selectNodeContents(th);
    const tops = new Set([...range.getClientRects()].map((r) => Math.round(r.top)));
    return [th.textContent.trim(), tops.size];
})"""


async def test_the_quarantine_headings_keep_their_words_whole(web: Web, monkeypatch):
    sender = unique("quarantena")
    subject = "Correu que ha fallat " + "x" * 300
    await web.quarantine(
        member_mail(sender, web.inst.address, subject=subject, body="cos"), sender, monkeypatch
    )
    page = await web.logged_in_page(viewport=DESKTOP)
    await page.goto(f"{web.url}/quarantine")
    lines = dict(await page.evaluate(HEADING_LINES, "table.quarantine"))
    assert lines and all(count == 1 for count in lines.values()), lines
    widths = await page.evaluate("() => [document.documentElement.scrollWidth, innerWidth]")
    assert widths[0] <= widths[1], f"scrolls sideways: {widths}"


async def test_the_give_choice_shows_a_long_name_whole(web: Web):
    number, _ = await web.mail_ticket(subject="Factura", body="No l'he rebuda.")
    page = await web.logged_in_page(viewport=DESKTOP)
    await page.goto(web.ticket_url(number))
    choice = page.locator("#give-owner")
    await expect(choice).to_be_visible()
    # A long display name and Matrix id, chosen (as the audit's "Anna Puig (@anna.pu…").
    room = await choice.evaluate(
        """(select) => {
            select.add(new Option("Anna Puig (@anna.puig:example.org)", "@anna.puig:example.org"), 0);
            select.selectedIndex = 0;
            const style = getComputedStyle(select);
            const context = document.createElement("canvas").getContext("2d");
            context.font = style.font;
            const text = context.measureText(select.options[0].text).width;
            const inner = select.clientWidth - parseFloat(style.paddingLeft)
                - parseFloat(style.paddingRight);
            return [text, inner];
        }"""
    )
    text, inner = room
    # The text and the arrow (about 1.25 em) fit in the box.
    assert inner >= text + 16, f"cut: {text:.0f} px of text in a box of {inner:.0f} px"
    button = await page.locator("#action-give button").bounding_box()
    aside = await page.locator("aside.side").bounding_box()
    assert button["x"] + button["width"] <= aside["x"] + aside["width"] + 0.5


@pytest.fixture
async def plugged(browser, make_instance, matrix_setup, matrix_login):
    """An exobot with Matrix, the web and the procedures and saved-replies plugins on."""
    setup = matrix_setup()
    inst: Instance = make_instance(matrix=setup, web=True)
    data = yaml.safe_load(inst.config_path.read_text())
    data["plugins"] = {"procedures": {}, "saved-replies": {}}
    inst.config_path.write_text(yaml.safe_dump(data))
    inst.config = load_config(inst.config_path, env={})
    app = await inst.start()
    assert sorted(app.plugins.enabled) == ["procedures", "saved-replies"], app.plugins.disabled
    helper = Web(inst, setup, browser, matrix_login)
    try:
        yield helper
    finally:
        await helper.close()


async def test_the_menu_reaches_the_plugins_pages(plugged: Web):
    page = await plugged.logged_in_page(viewport=DESKTOP)
    menu = page.get_by_role("navigation", name=say("Main navigation"))
    for domain, label, path in (
        ("procedures", "Treasury procedures", "/plugins/procedures/"),
        ("saved_replies", "Saved replies", "/plugins/saved-replies/"),
    ):
        words = i18n.say("ca", label, domain=domain)
        link = menu.get_by_role("link", name=words, exact=True)
        await expect(link).to_have_attribute("href", path)
        async with page.expect_navigation():
            await link.click()
        assert page.url == f"{plugged.url}{path}"
        await expect(menu.get_by_role("link", name=words, exact=True)).to_have_attribute(
            "aria-current", "page"
        )
        await expect(page.locator("main h1")).to_have_text(words)
