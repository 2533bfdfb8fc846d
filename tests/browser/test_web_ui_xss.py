"""Hostile mail shown in the pages: markup in a subject, a body, a sender's name, and a 1 MB
subject, checked twice: with the Content-Security-Policy on (nothing runs), and with it off
(Playwright's bypass_csp), where escaping alone must keep every payload inert text."""

from __future__ import annotations

import email.policy
from dataclasses import dataclass
from email.message import EmailMessage, Message
from email.utils import make_msgid

import pytest
from browser_harness import Web, say
from harness import unique
from playwright.async_api import Locator, Page

pytestmark = pytest.mark.asyncio

SCRIPT_SUBJECT = "<script>window.__xss=1</script>"
IMG_BODY = '<img src=x onerror="window.__xss=1">\n<svg onload=window.__xss=1>'
SVG_SUBJECT = "<svg onload=window.__xss=1>"
LINK_BODY = 'javascript:alert(1)\n<a href="javascript:alert(1)">javascript:alert(1)</a>'
EVIL_NAME = "<b onmouseover=alert(1)>Evil</b>"
QUARANTINED_SUBJECT = "<img src=x onerror=alert(1)> en quarantena"
BIG_UNIT = "<svg onload=window.__xss=1><script>window.__xss=1</script> "
BIG_SUBJECT = (BIG_UNIT * (1_000_000 // len(BIG_UNIT) + 1))[:1_000_000]

# What must never appear in <main>: elements or attributes made from a mail's text.
INJECTED = {
    "img[src=x]": "main img[src=x]",
    "inline script": "main script:not([src])",
    # The pages' own icons are inline SVG (class "icon icon-NAME"); any other is the mail's.
    "svg": 'main svg:not([class^="icon icon-"])',
    "event handler attribute": "main [onerror], main [onload], main [onmouseover]",
    "javascript: URL": 'main [href^="javascript:" i], main [src^="javascript:" i]',
    "<b> from a name": 'main b:has-text("Evil")',
}


@dataclass
class Hostile:
    """The tickets and the quarantined mail the hostile mails made."""

    script: int  # subject SCRIPT_SUBJECT, body IMG_BODY, sender named EVIL_NAME
    link: int  # subject SVG_SUBJECT, body LINK_BODY
    big: int  # the 1 MB subject
    big_title: str  # the title exobot kept of it (the first 200 characters)
    quarantined: int  # a stored mail with QUARANTINED_SUBJECT, from EVIL_NAME


def hostile_mail(web: Web, sender: str, subject: str, body: str, name: str = "") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = f'"{name}" <{sender}>' if name else sender
    msg["To"] = web.inst.address
    msg["Subject"] = subject
    msg["Message-ID"] = make_msgid(domain="member.example.org")
    msg.set_content(body)
    return msg


async def send_hostile_mails(web: Web, monkeypatch) -> Hostile:
    sender = unique("evil")
    script = await web.deliver(
        hostile_mail(web, sender, SCRIPT_SUBJECT, IMG_BODY, name=EVIL_NAME), sender
    )
    sender = unique("membre")
    link = await web.deliver(hostile_mail(web, sender, SVG_SUBJECT, LINK_BODY), sender)

    # compat32 folds a 1 MB header at its spaces in a blink (the default policy takes
    # seconds); every line stays under 78 characters, as RFC 5322 wants.
    policy = email.policy.compat32.clone(linesep="\r\n")
    big_mail = Message(policy=policy)
    sender = unique("membre")
    big_mail["From"] = sender
    big_mail["To"] = web.inst.address
    big_mail["Subject"] = BIG_SUBJECT
    big_mail["Message-ID"] = make_msgid(domain="member.example.org")
    big_mail["Content-Type"] = "text/plain; charset=utf-8"
    big_mail.set_payload("Un assumpte molt llarg.\n")
    raw = big_mail.as_bytes(policy=policy)
    assert len(raw) > 1_000_000
    assert max(len(line) for line in raw.split(b"\r\n")) <= 78
    big = await web.deliver(raw, sender)
    big_title = web.ticket(big)[3]
    assert big_title and BIG_SUBJECT.startswith(big_title), big_title[:100]

    sender = unique("evil")
    quarantined = await web.quarantine(
        hostile_mail(web, sender, QUARANTINED_SUBJECT, IMG_BODY, name=EVIL_NAME),
        sender,
        monkeypatch,
    )
    return Hostile(script, link, big, big_title, quarantined)


def watch_dialogs(page: Page) -> list[str]:
    """Every dialog the page opens (alert, confirm…), dismissed and recorded."""
    seen: list[str] = []

    async def record(dialog) -> None:
        seen.append(f"{dialog.type}: {dialog.message}")
        await dialog.dismiss()

    page.on("dialog", record)
    return seen


async def assert_inert(page: Page, dialogs: list[str], where: str) -> None:
    """Nothing ran: no flag set, no dialog, even with the pointer over the hostile name."""
    for element in await page.locator("main :text('Evil')").all():
        if await element.is_visible():
            await element.hover()
    assert await page.evaluate("window.__xss") is None, f"a payload ran on {where}"
    assert dialogs == [], f"dialogs on {where}: {dialogs}"


async def assert_no_injected_elements(page: Page, where: str) -> None:
    found = {}
    for name, selector in INJECTED.items():
        count = await page.locator(selector).count()
        if count:
            found[name] = count
    assert not found, f"elements made from mail on {where}: {found}"


async def text_of(locator: Locator, where: str) -> str:
    count = await locator.count()
    assert count == 1, f"{where}: {count} elements match {locator}"
    return await locator.text_content() or ""


async def assert_text(locator: Locator, expected: str, where: str) -> None:
    """The element shows exactly `expected` as text (white space at the ends aside)."""
    shown = await text_of(locator, where)
    assert shown.strip() == expected.strip(), f"{where}: shows {shown[:300]!r}"


async def assert_contains(locator: Locator, expected: str, where: str) -> None:
    """The element's text holds `expected` verbatim (its markup shown, not interpreted)."""
    shown = await text_of(locator, where)
    assert expected in shown, f"{where}: {expected!r} not in {shown[:300]!r}"


def row_of(page: Page, number: int) -> Locator:
    """The ticket list's row of one ticket."""
    return page.locator("main tbody tr").filter(has=page.locator(f'a[href="/tickets/{number}"]'))


async def test_hostile_mail_is_inert_with_the_csp(web: Web, monkeypatch):
    hostile = await send_hostile_mails(web, monkeypatch)
    page = await web.logged_in_page()
    dialogs = watch_dialogs(page)
    pages = [
        ("the dashboard", f"{web.url}/"),
        ("the ticket list", f"{web.url}/tickets"),
        ("the quarantine", f"{web.url}/quarantine"),
        *[(f"ticket {n}", web.ticket_url(n)) for n in (hostile.script, hostile.link, hostile.big)],
    ]
    for where, url in pages:
        response = await page.goto(url)
        assert response.ok, f"{where}: HTTP {response.status}"
        assert "script-src 'self'" in response.headers["content-security-policy"]
        await assert_inert(page, dialogs, where)


async def test_hostile_mail_is_escaped_without_the_csp(web: Web, monkeypatch):
    hostile = await send_hostile_mails(web, monkeypatch)
    page = await web.logged_in_page(bypass_csp=True)
    dialogs = watch_dialogs(page)

    where = "the ticket list (no CSP)"
    await page.goto(f"{web.url}/tickets")
    await assert_inert(page, dialogs, where)
    await assert_no_injected_elements(page, where)
    for number, title in (
        (hostile.script, SCRIPT_SUBJECT),
        (hostile.link, SVG_SUBJECT),
        (hostile.big, hostile.big_title),
    ):
        await assert_text(row_of(page, number).locator(".title"), title, f"{where}, {number}")

    where = "the dashboard (no CSP)"
    await page.goto(f"{web.url}/")
    await assert_inert(page, dialogs, where)
    await assert_no_injected_elements(page, where)
    oldest = page.locator("main li").filter(
        has=page.locator(f'a[href="/tickets/{hostile.script}"]')
    )
    await assert_text(oldest.locator(".title"), SCRIPT_SUBJECT, where)

    where = "the quarantine (no CSP)"
    await page.goto(f"{web.url}/quarantine")
    await assert_inert(page, dialogs, where)
    await assert_no_injected_elements(page, where)
    row = page.locator(f"main tr#mail-{hostile.quarantined}")
    subject_cell = row.locator(f'td[data-label="{say("Subject")}"]')
    await assert_text(subject_cell, QUARANTINED_SUBJECT, where)
    await assert_contains(row.locator(".error-text"), QUARANTINED_SUBJECT, where)

    where = f"ticket {hostile.script} (no CSP)"
    await page.goto(web.ticket_url(hostile.script))
    await assert_inert(page, dialogs, where)
    await assert_no_injected_elements(page, where)
    assert await page.title() == f"suport#{hostile.script} · {say('eXO support')}"
    await assert_text(page.locator("main h1 .title"), SCRIPT_SUBJECT, f"{where}, title")
    mail = page.locator("main article.kind-mail_in")
    await assert_text(mail.locator(".body"), IMG_BODY, f"{where}, mail text")
    await assert_contains(mail.locator(".head"), EVIL_NAME, f"{where}, sender's name")
    await assert_contains(mail.locator(".subject"), SCRIPT_SUBJECT, f"{where}, subject")
    title_field = page.locator('main form[action$="/title"] input[name=title]')
    assert await title_field.input_value() == SCRIPT_SUBJECT

    where = f"ticket {hostile.link} (no CSP)"
    await page.goto(web.ticket_url(hostile.link))
    await assert_inert(page, dialogs, where)
    await assert_no_injected_elements(page, where)
    await assert_text(page.locator("main h1 .title"), SVG_SUBJECT, f"{where}, title")
    await assert_text(
        page.locator("main article.kind-mail_in .body"), LINK_BODY, f"{where}, mail text"
    )
    # The text `javascript:alert(1)` is never made a link.
    assert await page.locator("main a").filter(has_text="javascript:").count() == 0

    where = f"ticket {hostile.big} (no CSP)"
    await page.goto(web.ticket_url(hostile.big))
    await assert_inert(page, dialogs, where)
    await assert_no_injected_elements(page, where)
    await assert_text(page.locator("main h1 .title"), hostile.big_title, f"{where}, title")
    subject = await text_of(page.locator("main article.kind-mail_in .subject"), where)
    assert BIG_UNIT.strip() in subject and len(subject) < 1000, subject[:400]
