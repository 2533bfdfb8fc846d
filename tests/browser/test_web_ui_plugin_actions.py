"""A plugin's action on the ticket page, in Debian's Chromium on the real stack: with saved
replies enabled, a volunteer picks a saved reply from the suggestions of the "more actions"
form and sends it; the member gets it by mail and the ticket's history shows it. An unknown
name is refused at that form. The page fits 375 px without sideways scroll and axe-core finds
no serious violation. Screenshots go to $EXOBOT_SCREENSHOTS when set, else to the test's
tmp dir."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from axe_playwright_python.async_playwright import Axe
from browser_harness import Web, say
from harness import Instance
from playwright.async_api import expect
from test_web_ui_layout import serious, sideways

from exobot import i18n
from exobot.config import load_config

pytestmark = pytest.mark.integration

PLUGIN = "saved-replies"
DOMAIN = "saved_replies"
PHONE = {"width": 375, "height": 800}
DESKTOP = {"width": 1280, "height": 900}
WELCOME = "Hola,\nhem rebut el vostre missatge ({ticket}) i us direm alguna cosa aviat.\nSalut"


def plugin_label(msgid: str) -> str:
    """A field's label as the form shows it: the plugin's words, with a capital."""
    text = i18n.say("ca", msgid, domain=DOMAIN)
    return text[:1].upper() + text[1:]


@pytest.fixture
async def web(browser, make_instance, matrix_setup, matrix_login):
    """An exobot with Matrix, the web and the saved-replies plugin on; two saved replies."""
    setup = matrix_setup()
    inst: Instance = make_instance(matrix=setup, web=True)
    data = yaml.safe_load(inst.config_path.read_text())
    data["plugins"] = {PLUGIN: {}}
    inst.config_path.write_text(yaml.safe_dump(data))
    inst.config = load_config(inst.config_path, env={})
    app = await inst.start()
    assert app.plugins.enabled == [PLUGIN], app.plugins.disabled
    from exobot_saved_replies import store

    ctx = app.plugins.context(PLUGIN)
    async with ctx.connection() as conn:
        for name, language, text in (
            ("tancament", "ca", "Tanquem la consulta. Salut"),
            ("benvinguda", "ca", WELCOME),
            ("tancament", "es", "Cerramos la consulta."),
        ):
            await store.save(
                conn,
                reply_id=None,
                name=name,
                language=language,
                text=text,
                by=setup.volunteer_user_id,
                now=ctx.clock.now(),
            )
    helper = Web(inst, setup, browser, matrix_login)
    try:
        yield helper
    finally:
        await helper.close()


async def test_a_volunteer_sends_a_saved_reply_from_the_ticket_page(web: Web, tmp_path):
    shots = Path(os.environ.get("EXOBOT_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    number, member = await web.mail_ticket(subject="Com em dono d'alta?", body="Hola, bon dia.")
    reference = f"{web.inst.config.tickets.prefix}#{number}"

    page = await web.logged_in_page(viewport=DESKTOP)
    await page.goto(web.ticket_url(number))
    section = page.get_by_role("region", name=say("More actions"))
    await expect(section).to_be_visible()
    form = section.locator(f'form[action="/tickets/{number}/template"]')
    field = form.get_by_label(plugin_label("the saved reply's name"))
    # The suggestions are the saved replies' names, each once, alphabetically.
    suggestions = page.locator(f"datalist#{await field.get_attribute('list')} option")
    assert [await o.get_attribute("value") for o in await suggestions.all()] == [
        "benvinguda",
        "tancament",
    ]
    await page.screenshot(path=shots / "ticket-more-actions-1280.png", full_page=True)

    # An unknown name: refused at the form, what was typed kept.
    await field.fill("benvinguts")
    async with page.expect_navigation():
        await form.get_by_role("button", name=plugin_label("Send to the member")).click()
    alert = form.get_by_role("alert")
    await expect(alert).to_contain_text("benvinguts")
    await expect(alert).to_contain_text("benvinguda, tancament")
    await expect(field).to_have_value("benvinguts")
    await expect(field).to_have_attribute("aria-invalid", "true")
    await page.screenshot(path=shots / "ticket-more-actions-refused-1280.png", full_page=True)

    # Picked from the suggestions and sent: the reply is mailed and in the history.
    await field.fill("benvinguda")
    async with page.expect_navigation():
        await form.get_by_role("button", name=plugin_label("Send to the member")).click()
    await expect(page.locator("#done")).to_have_text(say("Done: {action}.", action="plantilla"))
    # The history: the acknowledgement, then the saved reply as mailed (its {ticket} filled).
    sent = page.locator("#history article.kind-mail_out")
    await expect(sent).to_have_count(2)
    await expect(sent.last.locator(".body")).to_contain_text(f"missatge ({reference}) i us")
    mails = await web.inst.wait_mailbox(member, 2)  # the acknowledgement, then the reply
    text = mails[-1].get_content()
    assert "hem rebut el vostre missatge" in text
    assert f"({reference})" in text  # {ticket} filled in

    # On a phone: the section fits, and the page has no serious accessibility violation.
    phone = await web.logged_in_page(viewport=PHONE)
    await phone.goto(web.ticket_url(number))
    await expect(phone.get_by_role("region", name=say("More actions"))).to_be_visible()
    assert await sideways(phone) is None, await sideways(phone)
    await phone.screenshot(path=shots / "ticket-more-actions-375.png", full_page=True)
    await phone.locator("#more-actions").screenshot(path=shots / "more-actions-section-375.png")
    found = serious(await Axe().run(phone))
    assert not found, [f"{v['id']}: {v['help']}" for v in found]
