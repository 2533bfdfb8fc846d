"""Working tickets from the browser: list, filters, search, the ticket page and its actions,
with mail and chat on the other side."""

from __future__ import annotations

import pytest
from browser_harness import Web, say
from harness import wait_until
from matrix_harness import body_of, thread_root_of
from playwright.async_api import Page, expect

from exobot.core.intents import SetStatus
from exobot.core.model import Status
from exobot.core.people import localpart

pytestmark = pytest.mark.asyncio


def row_link(page: Page, number: int):
    """The list's link to one ticket."""
    return page.locator(f'main a[href="/tickets/{number}"]')


async def listed(page: Page) -> set[int]:
    """The ticket numbers the list shows (one link per row)."""
    hrefs = [
        await link.get_attribute("href")
        for link in await page.locator('main table a[href^="/tickets/"]').all()
    ]
    return {
        int(h.removeprefix("/tickets/")) for h in hrefs if h.removeprefix("/tickets/").isdigit()
    }


async def apply_filters(page: Page) -> None:
    """Send the list's filter form (a GET form) and wait for the new list."""
    filters = page.get_by_role("search")
    async with page.expect_navigation():
        await filters.get_by_role("button", name=say("Filter")).click()


async def submit(page: Page, action: str, button: str) -> None:
    """Click the submit button of one of the ticket page's action forms; wait for the answer."""
    form = page.locator(f'main form[action$="/{action}"]')
    async with page.expect_navigation():
        await form.get_by_role("button", name=button).click()


def owner_on_page(page: Page):
    """The ticket page's owner field (the <dd> after the owner's <dt>)."""
    return (
        page.locator("main dl.meta > div")
        .filter(has=page.locator("dt", has_text=say("Owner")))
        .locator("dd")
    )


async def test_list_filter_and_search(web: Web):
    mails = {
        "router": ("El router parpelleja en vermell", "Des d'ahir el llum fa pampallugues."),
        "quota": ("Dubte sobre la quota anual", "Quan es passa el rebut? Gràcies."),
        "correu": ("No puc enviar correu des del mòbil", "Diu que refusa la clau xerricaplà."),
    }
    numbers = {}
    for key, (subject, body) in mails.items():
        numbers[key], _ = await web.mail_ticket(subject=subject, body=body)
    await web.act(SetStatus(numbers["quota"], Status.STALLED))

    page = await web.logged_in_page()
    # The dashboard counts the two new ones, in alarm.
    new_count = page.locator("main .new-count")
    await expect(new_count).to_have_class("new-count alarm")
    await expect(new_count.locator(".number")).to_have_text("2")

    await page.get_by_role("link", name=say("Tickets"), exact=True).click()
    await page.wait_for_url(f"{web.url}/tickets")
    assert await listed(page) == set(numbers.values())
    for subject, _body in mails.values():
        await expect(page.locator("main table")).to_contain_text(subject)

    # Status filter: only the stalled one.
    filters = page.get_by_role("search")
    await filters.get_by_label(say("stalled"), exact=True).check()
    await apply_filters(page)
    assert "status=stalled" in page.url
    assert await listed(page) == {numbers["quota"]}

    # New only: the other two.
    filters = page.get_by_role("search")
    await filters.get_by_label(say("stalled"), exact=True).uncheck()
    await filters.get_by_label(say("new"), exact=True).check()
    await apply_filters(page)
    assert await listed(page) == {numbers["router"], numbers["correu"]}

    # Search a word of one body, in every status: exactly that one.
    filters = page.get_by_role("search")
    await filters.get_by_label(say("new"), exact=True).uncheck()
    await filters.get_by_label(say("Search words")).fill("xerricaplà")
    await apply_filters(page)
    assert await listed(page) == {numbers["correu"]}
    await expect(filters.get_by_label(say("Search words"))).to_have_value("xerricaplà")


async def test_the_ticket_page_shows_the_members_mail(web: Web):
    body = "Bon dia,\n\nel portàtil no troba la xarxa wifi de casa.\nMerci!"
    number, member = await web.mail_ticket(subject="Wifi perduda", body=body)
    page = await web.logged_in_page()
    await page.goto(f"{web.url}/tickets")
    async with page.expect_navigation():
        await row_link(page, number).first.click()
    assert page.url == web.ticket_url(number)
    await expect(page.get_by_role("heading", level=1)).to_have_text(f"suport#{number} Wifi perduda")
    mail = page.locator("main article").filter(has_text="el portàtil no troba la xarxa wifi")
    await expect(mail).to_have_count(1)
    await expect(mail.get_by_role("heading")).to_contain_text(member)
    # The text as written, line breaks kept (shown as text, not joined into one line).
    text = await mail.locator(".body").inner_text()
    assert text.strip() == body, text


async def test_reply_reaches_the_member_and_status_reaches_the_thread(web: Web):
    vol = await web.volunteer()  # syncing before the ticket's root is posted
    number, member = await web.mail_ticket(subject="Factura duplicada", body="Cobrat dos cops.")
    root = await web.root_of(number)
    await web.inst.wait_mailbox(member, 1)  # the acknowledgement
    page = await web.logged_in_page()
    await page.goto(web.ticket_url(number))

    reply = "Hola,\nho hem revisat i us tornem l'import.\nSalut"
    await page.get_by_label(say("Reply: emailed to {to}", to=member)).fill(reply)
    await submit(page, "reply", say("Send the reply"))
    assert page.url.startswith(web.ticket_url(number)), page.url
    await expect(page.get_by_role("status")).to_have_text(say("Reply saved: it will be emailed right away."))
    await expect(page.locator("main article").filter(has_text="us tornem l'import")).to_have_count(
        1
    )

    mails = await web.inst.wait_mailbox(member, 2)
    sent = next(m for m in mails if "us tornem l'import" in m.get_content())
    assert f"[suport#{number}]" in sent["Subject"]
    assert reply in sent.get_content().replace("\r\n", "\n")

    mark = vol.mark(web.room())
    await page.get_by_label(say("New status")).select_option(
        label=say("stalled")
    )
    await submit(page, "status", say("Change"))
    await expect(page.get_by_role("status")).to_have_text(say("Status changed."))
    assert web.ticket(number)[0] == "stalled"
    await expect(page.locator("main dl.meta .status")).to_have_text(say("stalled"))
    await web.bot_says(
        lambda e: thread_root_of(e) == root and say("stalled") in (body_of(e) or ""),
        after=mark,
        what="the status change in the ticket's thread",
    )


async def test_a_take_in_chat_shows_on_the_page_after_reload(web: Web):
    await web.volunteer()  # syncing before the ticket's root is posted
    number, _ = await web.mail_ticket(subject="Canvi de domicili")
    root = await web.root_of(number)
    page = await web.logged_in_page()
    await page.goto(web.ticket_url(number))
    volunteer = web.setup.volunteer_user_id
    await expect(owner_on_page(page)).to_have_text(say("nobody"))

    _, mark = await web.command(f"!take suport#{number}")
    await web.bot_says(lambda e: thread_root_of(e) == root, after=mark, what="the take's post")

    async def taken() -> bool:
        return web.ticket(number)[1] == volunteer

    await wait_until(taken, what="the take from chat")
    await page.reload()
    # By display name (Synapse's default is the localpart), the Matrix id on hover.
    await expect(owner_on_page(page)).to_have_text(localpart(volunteer))
    await expect(owner_on_page(page).locator(".person")).to_have_attribute("title", volunteer)
    await expect(page.locator("main dl.meta .status")).to_have_text(say("open"))
