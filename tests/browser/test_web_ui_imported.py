"""A ticket imported from Request Tracker, as a volunteer sees it in the browser.

Written through the service's `ImportTicket` as `exobot import rt` does: the member's mail
with an attachment whose name is not ASCII, answers and a comment by staff the owners file
did not name ("rt:nuria") and by one it mapped to a Matrix id, status, owner and queue
changes, all with their 2025 dates, and a number merged into it. The ticket page at 1280 and
375 px shows the original authors (an unmapped RT user as "nuria (Request Tracker)") and
dates; the attachment downloads with its bytes; the merged number opens the survivor; the
list and the search find it; axe finds nothing serious. Screenshots go to
$EXOBOT_SCREENSHOTS when set, else to the test's temporary folder.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from axe_playwright_python.async_playwright import Axe
from browser_harness import Web, say
from harness import unique
from playwright.async_api import expect

from exobot.core.imports import ImportedEntry, ImportedMessageId, ImportedTicket
from exobot.core.intents import ImportTicket
from exobot.core.model import Actor, AttachmentInfo, EntryKind, Status

pytestmark = pytest.mark.asyncio

DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 375, "height": 812}
SOURCE = "rt:https://rt.example.org"
T0 = datetime(2025, 3, 4, 9, 12, tzinfo=UTC)
FILE_NAME = "Factura març 2025 – còpia.pdf"
FILE_BYTES = b"%PDF-1.4\n% factura\n" + bytes(range(256)) * 8


def shots(tmp_path: Path) -> Path:
    """Where screenshots go."""
    return Path(os.environ.get("EXOBOT_SCREENSHOTS") or tmp_path)


def rt_ticket(member: str, operator: str) -> ImportedTicket:
    """RT's #310 (#305 was merged into it), opened by `member` in RT's "Altes" queue."""

    def at(hours: float) -> datetime:
        return T0 + timedelta(hours=hours)

    entries = (
        ImportedEntry("8001", EntryKind.CREATED, member, at(0),
                      data={"queue": "altes", "requestor": member}),
        ImportedEntry(
            "8002", EntryKind.MAIL_IN, member, at(0),
            body="Bon dia,\n\nus adjunto la factura de març: el cobrament surt duplicat.\n\nAnna",
            data={"from": member, "from_name": "Anna Serra", "subject": "Rebut duplicat"},
            attachments=(AttachmentInfo(FILE_NAME, "application/pdf", FILE_BYTES),),
            message_ids=(ImportedMessageId("<first-310@member.example.org>"),),
        ),
        ImportedEntry("8003", EntryKind.QUEUE, "rt:nuria", at(1),
                      data={"from": "altes", "to": "suport"}),
        ImportedEntry("8004", EntryKind.STATUS, "rt:nuria", at(1.5),
                      data={"from": "new", "to": "open"}),
        ImportedEntry(
            "8005", EntryKind.MAIL_OUT, "rt:nuria", at(2),
            body="Hola Anna,\n\nho mirem amb tresoreria i et diem alguna cosa.\n\nNúria",
            message_ids=(ImportedMessageId("<rt-310-8005@rt.example.org>", "out"),),
        ),
        ImportedEntry("8006", EntryKind.COMMENT, "rt:nuria", at(2.5),
                      body="Tresoreria diu que és un error del banc: cal retornar-lo."),
        ImportedEntry("8007", EntryKind.OWNER, operator, at(26),
                      data={"from": None, "to": operator}),
        ImportedEntry(
            "8008", EntryKind.MAIL_OUT, operator, at(27),
            body="Hola Anna,\n\nja hem retornat el cobrament duplicat.\n\nSalut",
            message_ids=(ImportedMessageId("<rt-310-8008@rt.example.org>", "out"),),
        ),
        ImportedEntry("8009", EntryKind.STATUS, operator, at(27),
                      data={"from": "open", "to": "resolved"}),
    )  # fmt: skip
    return ImportedTicket(
        source=SOURCE,
        external_id="310",
        number=310,
        title="Rebut duplicat",
        requestor=member,
        queue="suport",
        status=Status.RESOLVED,
        created_at=T0,
        updated_at=at(27),
        owner=operator,
        participants=(member,),
        entries=entries,
        merged=(305,),
    )


async def test_an_imported_ticket_reads_with_its_authors_and_dates(web: Web, tmp_path):
    member = unique("anna")
    operator = web.setup.volunteer_user_id
    outcome = await web.inst.app.service.apply(
        Actor.system("import"), ImportTicket(rt_ticket(member, operator))
    )
    assert (outcome.ticket, outcome.created) == (310, True)
    folder = shots(tmp_path)

    page = await web.logged_in_page(viewport=DESKTOP)
    await page.goto(web.ticket_url(310))
    await page.screenshot(path=folder / "imported-1280.png", full_page=True)
    # Every history entry is shown, the older ones unfolded, to read them all.
    for older in await page.locator("details.older").all():
        await older.locator("summary").click()
    history = page.locator("section.history")
    text = await history.inner_text()
    # The unmapped RT user is named as such, never as a bare "rt:nuria".
    assert "nuria (Request Tracker)" in text
    assert "rt:nuria" not in text
    # The original dates, in the configured time zone's local form.
    for moment in (T0, T0 + timedelta(hours=2), T0 + timedelta(hours=27)):
        shown = moment.astimezone(web.inst.app.config.alerts.tzinfo).strftime("%Y-%m-%d %H:%M")
        await expect(history.locator(f"time[datetime='{moment.isoformat()}']").first).to_have_text(
            shown
        )
    for body in ("el cobrament surt duplicat", "ho mirem amb tresoreria", "error del banc",
                 "ja hem retornat"):  # fmt: skip
        assert body in text, body
    await page.screenshot(path=folder / "imported-1280-open.png", full_page=True)

    # The attachment downloads, its name and bytes intact.
    link = page.get_by_role("link", name=FILE_NAME)
    async with page.expect_download() as info:
        await link.click()
    download = await info.value
    assert download.suggested_filename == FILE_NAME
    assert Path(await download.path()).read_bytes() == FILE_BYTES
    # The same file through the merged number (a link kept from before the merge).
    href = await link.get_attribute("href")
    assert href is not None and href.startswith("/tickets/310/attachments/")
    merged = await page.request.get(web.url + href.replace("/310/", "/305/", 1))
    assert merged.status == 200
    assert await merged.body() == FILE_BYTES

    # The merged number lands on the survivor.
    await page.goto(web.ticket_url(305))
    await expect(page).to_have_url(web.ticket_url(310))
    await expect(page.locator("main h1")).to_contain_text("Rebut duplicat")
    # ... and the survivor's details say where it came from and which number was merged in.
    await expect(page.locator(".meta .imported dd")).to_have_text("Request Tracker")
    await expect(page.locator(".meta .merged dd")).to_have_text("suport#305")
    await expect(page.locator(".meta .merged dt")).to_have_text(say("Merged into this one"))

    # The list (every status) and the search find it.
    await page.goto(f"{web.url}/tickets?status=resolved")
    await expect(page.locator('main table a[href="/tickets/310"]')).to_have_count(1)
    filters = page.get_by_role("search")
    await filters.get_by_label(say("Search words")).fill("tresoreria")
    async with page.expect_navigation():
        await filters.get_by_role("button", name=say("Filter")).click()
    await expect(page.locator('main table a[href="/tickets/310"]')).to_have_count(1)

    # 375 px: the page fits the screen's width.
    phone = await web.logged_in_page(viewport=PHONE)
    await phone.goto(web.ticket_url(310))
    width = await phone.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"the imported ticket is {width} px wide at 375 px"
    await phone.screenshot(path=folder / "imported-375.png", full_page=True)

    # axe-core finds nothing serious on the ticket page.
    await page.goto(web.ticket_url(310))
    results = await Axe().run(page)
    found = [
        f"{v['id']}: {v['help']} {[n['target'] for n in v['nodes'][:3]]}"
        for v in results.response["violations"]
        if v.get("impact") in ("serious", "critical")
    ]
    assert not found, found
