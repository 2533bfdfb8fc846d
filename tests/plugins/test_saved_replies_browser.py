"""The saved-replies pages in Debian's Chromium (Playwright): a saved reply added and edited
through the forms as an operator would, the pages fit 375 px without sideways scroll and at
1280 px, and axe-core finds no serious or critical violation. Screenshots go to
$EXOBOT_SCREENSHOTS when set (to look at them), else to the test's tmp dir."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import yaml
from axe_playwright_python.async_playwright import Axe
from harness import Instance
from playwright.async_api import async_playwright, expect

from exobot.config import load_config
from exobot.i18n import say

# The browser tests' helpers (their folder is on sys.path only while pytest collects it).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "browser"))
from browser_harness import CHROMIUM, CHROMIUM_ARGS, Web  # noqa: E402
from test_web_ui_layout import serious, sideways  # noqa: E402

pytestmark = pytest.mark.integration

DOMAIN = "saved_replies"
PHONE = {"width": 375, "height": 800}
DESKTOP = {"width": 1280, "height": 900}
LONG_WORD = "Supercalifragilisticexpialidocious" * 6
TEXT = f"Hola {{nom}},\nhem rebut el vostre missatge ({{ticket}}).\n{LONG_WORD}\nSalutacions"


def t(msgid: str, **params: object) -> str:
    return say("ca", msgid, domain=DOMAIN, **params)


@pytest.fixture
async def chromium():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed (run `make stack`)")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        await browser.close()


async def test_the_pages_work_and_fit(
    chromium, make_instance, matrix_setup, matrix_login, tmp_path
):
    shots = Path(os.environ.get("EXOBOT_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    setup = matrix_setup()
    inst: Instance = make_instance(matrix=setup, web=True)
    data = yaml.safe_load(inst.config_path.read_text())
    data["plugins"] = {"saved-replies": {}}
    inst.config_path.write_text(yaml.safe_dump(data))
    inst.config = load_config(inst.config_path, env={})
    await inst.start()
    web = Web(inst, setup, chromium, matrix_login)
    try:
        base = f"{web.url}/plugins/saved-replies"
        page = await web.logged_in_page(viewport=DESKTOP)
        await page.goto(f"{base}/")
        await page.get_by_role("link", name=t("Add a saved reply")).click()
        await page.get_by_label(t("Name"), exact=True).fill("benvinguda")
        await page.get_by_label(t("Language of the text")).select_option("ca")
        await page.get_by_label(t("Text"), exact=True).fill(TEXT)
        await page.get_by_role("button", name=t("Save"), exact=True).click()
        await expect(page).to_have_url(f"{base}/")
        await expect(page.locator("main ul.saved-replies")).to_contain_text("benvinguda")
        await page.screenshot(path=shots / "saved-replies-list-1280.png", full_page=True)

        # A refused form at 1280, then every page at 375 px.
        await page.goto(f"{base}/new")
        await page.get_by_label(t("Name"), exact=True).fill("dues paraules")
        await page.get_by_label(t("Text"), exact=True).fill("x")
        await page.get_by_role("button", name=t("Save"), exact=True).click()
        await expect(page.get_by_role("alert")).to_contain_text(
            t("The name must be one word in lower case: letters a-z, digits, - and _ (at most 40).")
        )
        await page.screenshot(path=shots / "saved-replies-refused-1280.png", full_page=True)

        reply_id = inst.scalar("SELECT id FROM saved_replies")
        phone = await web.logged_in_page(viewport=PHONE)
        failures = {}
        axe = Axe()
        reports = {}
        for label, path in (("list", "/"), ("new", "/new"), ("edit", f"/{reply_id}")):
            response = await phone.goto(base + path)
            assert response.ok, f"{path}: HTTP {response.status}"
            failures[path] = await sideways(phone)
            await phone.screenshot(path=shots / f"saved-replies-{label}-375.png", full_page=True)
            found = serious(await axe.run(phone))
            if found:
                reports[path] = [f"{v['id']}: {v['help']}" for v in found]
        assert not {p: why for p, why in failures.items() if why}, failures
        assert not reports, reports

        # Editing from the phone: the change is saved.
        await phone.get_by_label(t("Language of the text")).select_option("es")
        await phone.get_by_role("button", name=t("Save"), exact=True).click()
        await expect(phone).to_have_url(f"{base}/")
        assert inst.scalar("SELECT language FROM saved_replies") == "es"
    finally:
        await web.close()
