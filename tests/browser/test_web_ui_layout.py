"""Every page fits a phone (no sideways scroll at 375 px), and the main pages pass axe-core
without serious or critical violations."""

from __future__ import annotations

import pytest
from axe_playwright_python.async_playwright import Axe
from browser_harness import Web
from harness import member_mail, unique
from playwright.async_api import Page

from exobot.core.intents import SetStatus
from exobot.core.model import Status

pytestmark = pytest.mark.asyncio

PHONE = {"width": 375, "height": 800}
LONG_WORD = "Supercalifragilisticexpialidocious" * 9  # 306 characters, no break
assert len(LONG_WORD) >= 300

# What overflows to the right of the viewport, to name it in a failure.
OVERFLOWING = """() => [...document.querySelectorAll("body *")]
    .filter((e) => e.getBoundingClientRect().right > window.innerWidth + 0.5)
    .filter((e) => ![...e.children].some(
        (c) => c.getBoundingClientRect().right > window.innerWidth + 0.5))
    .slice(0, 8)
    .map((e) => `${e.tagName.toLowerCase()}${e.id ? "#" + e.id : ""}`
        + `${e.className && typeof e.className === "string" ? "." + e.className.trim()
            .replace(/\\s+/g, ".") : ""} right=${Math.round(e.getBoundingClientRect().right)}`)"""


async def sideways(page: Page) -> str | None:
    """None when the page fits its viewport's width; else what sticks out."""
    widths = await page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
    if widths[0] <= widths[1]:
        return None
    culprits = await page.evaluate(OVERFLOWING)
    return f"scrollWidth {widths[0]} > innerWidth {widths[1]}; sticking out: {culprits}"


async def test_every_page_fits_375_px(web: Web, monkeypatch):
    number, _ = await web.mail_ticket(
        subject=f"Paraula llarga {LONG_WORD}", body=f"Mireu això:\n{LONG_WORD}\nGràcies"
    )
    await web.act(SetStatus(number, Status.STALLED))  # on the dashboard's stalled list too
    await web.mail_ticket(subject=LONG_WORD, body=LONG_WORD)  # on the oldest waiting list
    sender = unique(LONG_WORD[:40].lower())
    await web.quarantine(
        member_mail(sender, web.inst.address, subject=LONG_WORD, body="x"), sender, monkeypatch
    )
    failures = {}

    login = await web.page(viewport=PHONE)
    await login.goto(f"{web.url}/login")
    failures["/login"] = await sideways(login)

    page = await web.logged_in_page(viewport=PHONE)
    for path in ("/", "/tickets", f"/tickets/{number}", "/tickets/new", "/quarantine"):
        response = await page.goto(f"{web.url}{path}")
        assert response.ok, f"{path}: HTTP {response.status}"
        failures[path] = await sideways(page)
    # The long word was on the pages (so the checks above saw it); titles keep 200 characters.
    for path in ("/", "/tickets", f"/tickets/{number}", "/quarantine"):
        await page.goto(f"{web.url}{path}")
        assert LONG_WORD[:200] in (await page.locator("main").text_content() or ""), path
    failures = {path: why for path, why in failures.items() if why}
    assert not failures, f"sideways scroll at 375 px: {failures}"


def serious(results) -> list[dict]:
    return [v for v in results.response["violations"] if v.get("impact") in ("serious", "critical")]


async def test_axe_finds_no_serious_violations(web: Web):
    number, _ = await web.mail_ticket(subject="Accessibilitat", body="Hola,\nprovem-ho.")
    await web.mail_ticket(subject="Un altre ticket", body="Per tenir una llista.")
    page = await web.logged_in_page()
    axe = Axe()
    reports = {}
    for path in ("/", "/tickets", f"/tickets/{number}"):
        response = await page.goto(f"{web.url}{path}")
        assert response.ok, f"{path}: HTTP {response.status}"
        results = await axe.run(page)
        assert results.response["testEngine"]["name"] == "axe-core"
        for violation in results.response["violations"]:  # shown with -rP or on failure
            print(f"{path}: {violation['id']} ({violation['impact']}): {violation['help']}")
        found = serious(results)
        if found:
            reports[path] = "\n".join(
                f"  {v['id']} ({v['impact']}): {v['help']}; "
                + "; ".join(", ".join(node["target"]) for node in v["nodes"][:5])
                for v in found
            )
    assert not reports, "axe-core serious/critical violations:\n" + "\n".join(
        f"{path}:\n{report}" for path, report in reports.items()
    )
