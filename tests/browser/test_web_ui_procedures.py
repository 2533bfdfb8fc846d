"""Treasury procedures from the ticket page, in Debian's Chromium on the real stack: with the
procedures plugin on, a volunteer records a bank-details procedure in the ticket's panel (a
note with an IBAN is refused there first, what was typed kept), the ticket moves to
tresoreria, the procedure is marked done from the panel, and the list page shows it done. The
ticket page and the list fit 375 px without sideways scroll, and axe-core finds no serious
violation on them. Screenshots at 1280 and 375 px go to $EXOBOT_SCREENSHOTS when set, else to
the test's tmp dir."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from axe_playwright_python.async_playwright import Axe
from browser_harness import Web
from harness import Instance, wait_until
from playwright.async_api import expect
from test_web_ui_layout import serious, sideways

from exobot import i18n
from exobot.config import load_config

pytestmark = pytest.mark.integration

PLUGIN = "procedures"
PHONE = {"width": 375, "height": 800}
DESKTOP = {"width": 1280, "height": 900}
IBAN = "ES91 2100 0418 4502 0005 1332"


def words(msgid: str, **params: object) -> str:
    """The plugin's words as the pages show them (the instance's language, ca)."""
    return i18n.say("ca", msgid, domain=PLUGIN, **params)


@pytest.fixture
async def web(browser, make_instance, matrix_setup, matrix_login):
    """An exobot with Matrix, the web and the procedures plugin on."""
    setup = matrix_setup()
    inst: Instance = make_instance(matrix=setup, web=True)
    data = yaml.safe_load(inst.config_path.read_text())
    data["plugins"] = {PLUGIN: {}}
    inst.config_path.write_text(yaml.safe_dump(data))
    inst.config = load_config(inst.config_path, env={})
    app = await inst.start()
    assert app.plugins.enabled == [PLUGIN], app.plugins.disabled
    helper = Web(inst, setup, browser, matrix_login)
    try:
        yield helper
    finally:
        await helper.close()


async def test_a_volunteer_records_a_procedure_and_marks_it_done(web: Web, tmp_path):
    shots = Path(os.environ.get("EXOBOT_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    number, member = await web.mail_ticket(
        subject="Canvi de compte bancari", body="Hola, us envio el nou compte per correu."
    )

    page = await web.logged_in_page(viewport=DESKTOP)
    await page.goto(web.ticket_url(number))
    panel = page.get_by_role("region", name=words("Treasury procedures"))
    await expect(panel).to_be_visible()
    await expect(panel).to_contain_text(words("No procedure on this ticket."))
    form = panel.locator("form.procedure-create")
    await form.get_by_label(words("Type")).select_option(label="canvi de dades bancàries")
    await form.get_by_label(words("Member number")).fill("1234")
    note = form.get_by_label(words("Note"), exact=False)

    # A note holding an IBAN: refused in the panel, what was typed kept.
    await note.fill(f"nou compte {IBAN}")
    async with page.expect_navigation():
        await form.get_by_role("button", name=words("Record the procedure")).click()
    form = page.locator("form.procedure-create")
    await expect(form.get_by_role("alert")).to_contain_text(words("an IBAN"))
    await expect(form.get_by_label(words("Member number"))).to_have_value("1234")
    await page.screenshot(path=shots / "procedures-refused-1280.png", full_page=True)

    await form.get_by_label(words("Note"), exact=False).fill(
        "mandat SEPA signat, dades a l'eina de gestió"
    )
    async with page.expect_navigation():
        await form.get_by_role("button", name=words("Record the procedure")).click()
    panel = page.get_by_role("region", name=words("Treasury procedures"))
    await expect(panel.get_by_role("status")).to_have_text(
        words("{procedure} recorded: pending.", procedure="P-1")
    )
    await expect(panel.locator(".procedure-row")).to_contain_text("P-1")
    await expect(panel.locator(".procedure-row")).to_contain_text(words("pending"))

    async def moved() -> bool:
        return web.inst.scalar("SELECT queue FROM tickets WHERE id = :n", n=number) == "tresoreria"

    await wait_until(moved, what="the ticket in tresoreria")
    await page.screenshot(path=shots / "procedures-ticket-1280.png", full_page=True)

    # On a phone: the panel fits; marked done from there.
    phone = await web.logged_in_page(viewport=PHONE)
    await phone.goto(web.ticket_url(number))
    panel = phone.get_by_role("region", name=words("Treasury procedures"))
    await expect(panel).to_be_visible()
    await panel.get_by_text(words("Mark {procedure} done", procedure="P-1")).click()
    assert await sideways(phone) is None, await sideways(phone)
    await phone.screenshot(path=shots / "procedures-ticket-375.png", full_page=True)
    await panel.screenshot(path=shots / "procedures-panel-375.png")
    found = serious(await Axe().run(phone))
    assert not found, [f"{v['id']}: {v['help']}" for v in found]
    done_form = panel.locator('form[action="/plugins/procedures/P-1/done"]')
    await done_form.get_by_label(words("Note"), exact=False).fill("canvi fet a l'eina")
    async with phone.expect_navigation():
        await done_form.get_by_role("button", name=words("Mark done")).click()
    panel = phone.get_by_role("region", name=words("Treasury procedures"))
    await expect(panel.get_by_role("status")).to_have_text(
        words("{procedure} is done.", procedure="P-1")
    )
    await expect(panel.locator(".procedure-row")).to_contain_text(words("done"))
    await expect(panel.locator('form[action="/plugins/procedures/P-1/done"]')).to_have_count(0)

    # The list, on both widths.
    await phone.goto(f"{web.url}/plugins/procedures/")
    await expect(phone.locator("table.procedures tbody tr")).to_have_count(1)
    await expect(phone.locator("table.procedures")).to_contain_text(words("done"))
    assert await sideways(phone) is None, await sideways(phone)
    await phone.screenshot(path=shots / "procedures-list-375.png", full_page=True)
    found = serious(await Axe().run(phone))
    assert not found, [f"{v['id']}: {v['help']}" for v in found]
    await page.goto(f"{web.url}/plugins/procedures/P-1")
    await expect(page.locator(".procedure-history li")).to_have_count(2)
    await page.screenshot(path=shots / "procedures-detail-1280.png", full_page=True)
    await page.goto(f"{web.url}/plugins/procedures/")
    await page.screenshot(path=shots / "procedures-list-1280.png", full_page=True)
