"""The ticket page built around acting, and the lists that say who has the next move.

A 12-entry ticket: at 1280×900 the take button and the reply box are in the viewport as
loaded; at 375×812 both start within two screens; older entries are folded; after a reply the
newest entry is in view. "Reply and resolve" in one step (and a refused second step shown);
"waiting for us / for the member" in the list and the dashboard; "my tickets"; unverified mail
visible from the list and the dashboard; axe clean on these pages. Screenshots at 1280 and
375 px go to $EXOBOT_SCREENSHOTS when set, else to the test's temporary folder.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from axe_playwright_python.async_playwright import Axe
from browser_harness import LANGUAGE, Web, say
from harness import member_mail, unique, wait_until
from playwright.async_api import Page, expect

from exobot import i18n
from exobot.core.intents import Comment, Reply, SetStatus, SetTitle, Take
from exobot.core.model import Status

pytestmark = pytest.mark.asyncio

DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 375, "height": 812}

MEMBER_TEXT = (
    "Bon dia,\n\ndes de dilluns la connexió va i ve: a la tarda el router perd la llum verda\n"
    "i s'ha de reiniciar. Ja he canviat el cable de corrent i continua igual.\n\nGràcies, Marta"
)
REPLIES = [
    "Hola Marta,\n\nhem mirat el node i veiem talls curts a la tarda.\n"
    "Podeu mirar si l'antena té el cable ben connectat?\n\nSalut",
    "Hola de nou,\n\nhem canviat el canal del node. Digueu-nos si millora.\n\nSalut",
    "Hola,\n\nsi torna a passar, apunteu l'hora exacta, així ho creuem amb les gràfiques.",
]
COMMENTS = [
    "El node de la plaça té pèrdues des de dilluns; pot ser el mateix.",
    "Parlat amb en Pere: hi anirà dijous si cal.",
    "Les gràfiques del node són netes des del canvi de canal.",
]


def shots(tmp_path: Path) -> Path:
    """Where screenshots go."""
    return Path(os.environ.get("EXOBOT_SCREENSHOTS") or tmp_path)


async def twelve_entries(web: Web) -> tuple[int, str]:
    """A ticket with at least 12 history entries, the member writing last; not owned."""
    number, member = await web.mail_ticket(subject="La connexió va i ve", body=MEMBER_TEXT)
    await web.act(Comment(number, COMMENTS[0]))
    await web.act(Reply(number, REPLIES[0]))
    await web.act(SetTitle(number, "Talls a la tarda (router perd la llum verda)"))
    await web.act(Comment(number, COMMENTS[1]))
    await web.act(Reply(number, REPLIES[1]))
    await web.act(SetStatus(number, Status.STALLED))
    await web.act(Comment(number, COMMENTS[2]))
    await web.act(SetStatus(number, Status.OPEN))
    await web.act(Reply(number, REPLIES[2]))
    await member_says(web, number, member, "Avui ha tornat a passar a les 18:40.\nMarta")
    entries = web.inst.scalar("SELECT count(*) FROM entries WHERE ticket_id = :n", n=number)
    assert entries >= 12, entries
    return number, member


async def member_says(web: Web, number: int, member: str, body: str) -> None:
    """The member answers by mail (the reference in the subject); wait until it is stored."""
    sql = "SELECT count(*) FROM entries WHERE ticket_id = :n"
    before = web.inst.scalar(sql, n=number)
    mail = member_mail(member, web.inst.address, subject=f"Re: [suport#{number}] Talls", body=body)
    await web.inst.deliver_raw(bytes(mail), member)

    async def stored() -> bool:
        return web.inst.scalar(sql, n=number) > before

    await wait_until(stored, what="the member's answer in the history")


async def mail_arrives(web: Web, member: str, text: str) -> None:
    """Wait until a mail holding `text` is in the member's mailbox."""

    async def arrived() -> bool:
        mails = await asyncio.to_thread(web.inst.mailbox, member)
        return any(text in m.get_content() for m in mails)

    await wait_until(arrived, what=f"a mail with {text!r} for {member}")


async def box(page: Page, selector: str) -> dict:
    """The bounding box of the one element `selector` names, in viewport pixels."""
    found = await page.locator(selector).bounding_box()
    assert found is not None, f"{selector} is not shown"
    return found


async def test_the_ticket_page_puts_acting_first(web: Web, tmp_path):
    number, member = await twelve_entries(web)
    entries = web.inst.scalar("SELECT count(*) FROM entries WHERE ticket_id = :n", n=number)
    folder = shots(tmp_path)

    # 1280×900: the take button and the whole reply box are on the first screen.
    page = await web.logged_in_page(viewport=DESKTOP)
    await page.goto(web.ticket_url(number))
    take = await box(page, "#action-take button")
    reply = await box(page, "#reply-text")
    assert take["y"] >= 0 and take["y"] + take["height"] <= 900, take
    assert reply["y"] >= 0 and reply["y"] + reply["height"] <= 900, reply
    await page.screenshot(path=folder / "ticket-1280.png")
    await page.screenshot(path=folder / "ticket-1280-full.png", full_page=True)

    # The older entries are folded (no JavaScript needed), the last three mails and comments
    # shown with the changes among them (here the reopening); newest last.
    older = page.locator("details.older")
    await expect(older).to_have_count(1)
    assert await older.get_attribute("open") is None
    await expect(older.locator("summary")).to_have_text(
        i18n.say_plural(
            LANGUAGE, "Show {count} earlier entry", "Show {count} earlier entries", entries - 4
        )
    )
    shown = page.locator("section.history > article.entry")
    await expect(shown).to_have_count(4)
    await expect(shown.last).to_contain_text("18:40")
    first_mail = older.locator("article.entry").filter(has_text="canviat el cable de corrent")
    await expect(first_mail).not_to_be_visible()
    await older.locator("summary").click()
    await expect(first_mail).to_be_visible()

    # The side column says where it stands: status, owner, queue, whose move it is.
    side = page.locator("aside.side")
    await expect(side.locator(".status")).to_have_text(say("open"))
    await expect(side.locator(".waiting")).to_have_text(say("Waiting for us"))
    await expect(side.locator("dd.owner")).to_have_text(say("nobody"))

    # 375×812: both start within two screens of the top.
    phone = await web.logged_in_page(viewport=PHONE)
    await phone.goto(web.ticket_url(number))
    await phone.screenshot(path=folder / "ticket-375.png", full_page=True)
    take = await box(phone, "#action-take button")
    reply = await box(phone, "#reply-text")
    assert take["y"] < 2 * 812, take
    assert reply["y"] < 2 * 812, reply
    widths = await phone.evaluate("() => [document.documentElement.scrollWidth, innerWidth]")
    assert widths[0] <= widths[1], f"sideways scroll at 375 px: {widths}"

    # A reply from the page: back on the page with the newest entry (the reply) in view.
    text = "Gràcies, Marta. Hi anirem dijous a la tarda a mirar l'antena."
    await page.locator("#reply-text").fill(text)
    async with page.expect_navigation():
        await page.get_by_role("button", name=say("Send the reply"), exact=True).click()
    assert page.url.endswith("?done=reply#done"), page.url
    newest = page.locator("section.history > article.entry").last
    await expect(newest).to_contain_text("Hi anirem dijous")
    await expect(newest).to_be_in_viewport()
    await expect(page.get_by_role("status")).to_be_in_viewport()
    await mail_arrives(web, member, "Hi anirem dijous")


async def test_reply_and_resolve_in_one_step(web: Web):
    number, member = await web.mail_ticket(subject="Alta de servei", body="Voldria fibra.")
    page = await web.logged_in_page()
    await page.goto(web.ticket_url(number))
    await page.locator("#reply-text").fill("Fet: ja teniu el servei donat d'alta.")
    async with page.expect_navigation():
        await page.get_by_role("button", name=say("Send and resolve")).click()
    await expect(page.get_by_role("status")).to_have_text(
        say("Reply saved and the ticket resolved.")
    )
    assert web.ticket(number)[0] == "resolved"
    history = web.inst.query(
        "SELECT kind, coalesce(body, ''), data FROM entries WHERE ticket_id = :n ORDER BY id",
        n=number,
    )
    replied = next(i for i, (k, b, _) in enumerate(history) if "ja teniu el servei" in b)
    resolved = next(i for i, (k, _, d) in enumerate(history) if k == "status" and "resolved" in d)
    assert replied < resolved, history  # the reply first, then the status change
    await mail_arrives(web, member, "ja teniu el servei")
    await expect(page.locator("aside.side .status")).to_have_text(say("resolved"))
    # A resolved ticket offers no "send and resolve" again; "send and stall" stays.
    await expect(page.get_by_role("button", name=say("Send and resolve"))).to_have_count(0)
    await expect(page.get_by_role("button", name=say("Send and stall"))).to_have_count(1)


async def test_a_refused_second_step_is_shown_and_the_reply_stays_sent(web: Web):
    number, member = await web.mail_ticket(subject="Canvi de quota", body="Puc pagar trimestral?")
    page = await web.logged_in_page()
    await page.goto(web.ticket_url(number))
    # Someone else stalls it while this page is open: "send and stall" then stalls nothing.
    await web.act(SetStatus(number, Status.STALLED))
    await page.locator("#reply-text").fill("Sí, ho podeu demanar a tresoreria.")
    async with page.expect_navigation():
        await page.get_by_role("button", name=say("Send and stall")).click()
    alert = page.get_by_role("alert")
    await expect(alert).to_contain_text(
        say("The reply was sent, but the status was not changed: {reason}", reason="")
    )
    await expect(page.locator("section.history > article.entry").last).to_contain_text(
        "ho podeu demanar a tresoreria"
    )
    await mail_arrives(web, member, "ho podeu demanar a tresoreria")  # the reply went out
    assert web.ticket(number)[0] == "stalled"


async def test_lists_and_dashboard_say_who_has_the_next_move(web: Web, tmp_path):
    folder = shots(tmp_path)
    volunteer = web.setup.volunteer_user_id
    ours, _ = await web.mail_ticket(subject="Ens toca a nosaltres", body="Hola?")
    theirs, _ = await web.mail_ticket(subject="Esperem el soci", body="Hola!")
    await web.act(Take(theirs))
    await web.act(Reply(theirs, "Ens podeu enviar una foto del router?"))
    unverified, member = await web.mail_ticket(subject="Amb un correu d'un altre", body="Hola")
    stranger = unique("desconegut")
    mail = member_mail(stranger, web.inst.address, subject=f"Re: [suport#{unverified}] x")
    await web.inst.deliver_raw(bytes(mail), stranger)

    async def held() -> bool:
        sql = "SELECT count(*) FROM entries WHERE ticket_id = :n AND kind = 'unverified_in'"
        return bool(web.inst.scalar(sql, n=unverified))

    await wait_until(held, what="the unverified mail")

    page = await web.logged_in_page(viewport=DESKTOP)
    await page.goto(f"{web.url}/tickets")

    def row(number: int):
        return page.locator("main table tbody tr").filter(
            has=page.locator(f'a[href="/tickets/{number}"]')
        )

    await expect(row(ours).locator(".waiting")).to_have_text(say("Waiting for us"))
    await expect(row(theirs).locator(".waiting")).to_have_text(say("Waiting for the member"))
    await expect(row(unverified).locator(".unverified-mark")).to_have_text(say("Unverified mail"))
    await expect(row(ours).locator(".unverified-mark")).to_have_count(0)
    notice = page.locator("main .unverified-list")
    await expect(notice.locator(f'a[href="/tickets/{unverified}"]')).to_have_count(1)
    # The filter panel is one line on a wide screen.
    filters = page.locator("form.filters")
    await page.screenshot(path=folder / "tickets-1280.png")
    height = (await filters.bounding_box())["height"]
    assert height < 90, f"the filter panel is {height} px high"

    await page.goto(f"{web.url}/")
    mine = page.locator("section.mine")
    await expect(mine.locator("h2")).to_have_text(say("My tickets: {count}", count=1))
    await expect(mine.locator(f'a[href="/tickets/{theirs}"]')).to_have_count(1)
    await expect(mine.locator(".waiting")).to_have_text(say("Waiting for the member"))
    waiting = page.locator("section").filter(has=page.locator("#oldest-title"))
    ours_item = waiting.locator("li").filter(has=page.locator(f'a[href="/tickets/{ours}"]'))
    await expect(ours_item.locator(".waiting")).to_have_text(say("Waiting for us"))
    dash_unverified = page.locator("section.unverified-list")
    await expect(dash_unverified.locator(f'a[href="/tickets/{unverified}"]')).to_have_count(1)
    # No underlined zeros in the counts table.
    zero = page.locator("table.counts td.zero a").first
    decoration = await zero.evaluate("(a) => getComputedStyle(a).textDecorationLine")
    assert decoration == "none", decoration
    await page.screenshot(path=folder / "dashboard-1280.png", full_page=True)

    # On a phone: list rows are two lines, the filters folded.
    phone = await web.logged_in_page(viewport=PHONE)
    await phone.goto(f"{web.url}/tickets")
    panel = phone.locator("details.filter-panel")
    assert await panel.get_attribute("open") is None
    await expect(phone.locator("form.filters")).not_to_be_visible()
    await phone.screenshot(path=folder / "tickets-375.png", full_page=True)
    for number in (ours, theirs, unverified):
        # The distinct lines a row's visible cells sit on.
        lines = await phone.evaluate(
            "(n) => { const r = [...document.querySelectorAll('main table tbody tr')]"
            ".find((tr) => tr.querySelector(`a[href='/tickets/${n}']`));"
            " const tops = [...r.children].filter((c) => c.getClientRects().length)"
            ".map((c) => c.getBoundingClientRect().top).sort((a, b) => a - b);"
            " return tops.filter((t, i) => i === 0 || t - tops[i - 1] > 12).length; }",
            number,
        )
        assert lines <= 2, f"suport#{number}: its row takes {lines} lines at 375 px"
    await phone.goto(f"{web.url}/")
    await phone.screenshot(path=folder / "dashboard-375.png", full_page=True)

    # axe-core finds nothing serious on these pages.
    axe = Axe()
    for path in ("/", "/tickets", f"/tickets/{unverified}"):
        await page.goto(f"{web.url}{path}")
        results = await axe.run(page)
        found = [
            f"{v['id']}: {v['help']} {[n['target'] for n in v['nodes'][:3]]}"
            for v in results.response["violations"]
            if v.get("impact") in ("serious", "critical")
        ]
        assert not found, f"{path}: {found}"
    assert volunteer  # the dashboard's "mine" is this volunteer's
