"""What the web audit of 2026-12-03 found, mended: a form sent after the session ended comes
back to its page (no 405); titles lose bidi overrides and invisible characters and are
isolated (<bdi>); the member's mail is never folded away behind changes; the plugins' pages
are in the main menu; refusals in the web's own words; flag names and file sizes in the
reader's language; error pages keep the menu of a logged-in reader; the dashboard says which
age it shows."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import pytest
from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo

from exobot import i18n
from exobot.core.intents import Move, OpenTicket, SetStatus, SetTitle, Take
from exobot.core.model import Actor, AttachmentInfo, Status
from exobot.web.menu import MenuEntry, menu_of
from exobot.web.pages import RECENT_ENTRIES
from exobot.web.templating import LANGUAGE_COOKIE, size_in
from tests.web.test_pages import VOL, alert, quarantined, receive
from tests.web.test_pages import anonymous as anonymous  # noqa: F401 - fixture
from tests.web.test_pages import browser as browser  # noqa: F401 - fixture
from tests.web.test_pages import ctx as ctx  # noqa: F401 - fixture
from tests.web.test_pages import retrier as retrier  # noqa: F401 - fixture
from tests.web.test_pages import service as service  # noqa: F401 - fixture
from tests.web.test_pages_reveal import masked_ticket

RLO = "\u202e"
MENU_DOMAIN = "menutest"
HIDDEN = "\u200b\u2066\u061c\ufeff"


def history_parts(page: str) -> tuple[str, str]:
    """The folded part of a ticket page's history and the part shown open."""
    history = page[page.index('id="history"') : page.index('id="reply-title"')]
    if '<details class="older"' not in history:
        return "", history
    end = history.index("</details>")
    return history[:end], history[end:]


# ------------------------------------------------------------- 2. a session that ended


@pytest.mark.parametrize(
    ("form", "page"),
    [
        ("/tickets/{n}/reply", "/tickets/{n}"),
        ("/tickets/{n}/entries/1/reveal", "/tickets/{n}"),
        ("/tickets/new", "/tickets/new"),
        ("/quarantine/5/retry", "/quarantine"),
    ],
)
async def test_a_form_sent_without_a_session_comes_back_to_its_page(
    anonymous,
    service,
    form,
    page,  # noqa: F811
):
    number = await receive(service)
    sent = await anonymous.post(form.format(n=number), data={"text": "Hola", "nonce": "x" * 20})
    assert sent.status_code == 303
    location = sent.headers["location"]
    assert urlsplit(location).path == "/login"
    target = parse_qs(urlsplit(location).query)["next"][0]
    assert target == page.format(n=number)
    # Where the login then goes is a page (GET), not the form's address (405 before).
    assert (await anonymous.get(target)).status_code == 303  # still logged out: login again


async def test_after_the_login_a_form_sent_logged_out_lands_on_its_ticket(
    browser,
    anonymous,
    service,  # noqa: F811
):
    number = await receive(service)
    sent = await anonymous.post(f"/tickets/{number}/comment", data={"text": "Nota"})
    target = parse_qs(urlsplit(sent.headers["location"]).query)["next"][0]
    landed = await browser.get(target)
    assert landed.status_code == 200
    assert 'id="reply-text"' in landed.text


# ------------------------------------------------------------- 3. titles that reorder


async def test_titles_lose_bidi_overrides_and_invisible_characters(browser, service):  # noqa: F811
    number = await receive(service, subject=f"Factura {RLO}FDP.exe{HIDDEN} urgent")
    await browser.act(number, "title", title=f"Nou {RLO}títol{HIDDEN}")  # and a renamed one
    opened = await service.apply(
        Actor.operator(VOL), OpenTicket("pere@example.net", f"Trucada {RLO}x{HIDDEN}", "", None)
    )
    for path in ("/", "/tickets", f"/tickets/{number}", f"/tickets/{opened.ticket}"):
        page = (await browser.get(path)).text
        assert RLO not in page, path
        assert not set(HIDDEN) & set(page), path
    page = (await browser.get("/tickets")).text
    assert "<bdi>Nou títol</bdi>" in page
    assert "<bdi>Trucada x</bdi>" in page


async def test_every_title_is_isolated_from_what_follows(browser, service):  # noqa: F811
    number = await receive(service, subject="שלום עולם")  # a right-to-left title
    await service.apply(Actor.operator(VOL), Take(number))
    dashboard = (await browser.get("/")).text
    assert '<bdi class="title">שלום עולם</bdi>' in dashboard
    assert re.search(rf'>suport#{number}</a>\s+<bdi class="title">', dashboard)  # a space between
    assert '<bdi class="title">שלום עולם</bdi>' in (await browser.get(f"/tickets/{number}")).text
    assert "<bdi>שלום עולם</bdi>" in (await browser.get("/tickets")).text


# ------------------------------------------------------------- 4. the member's mail in view


async def test_changes_never_fold_the_members_mail_away(browser, service):  # noqa: F811
    number = await receive(service, body="Hola, el router no s'encén.")
    operator = Actor.operator(VOL)
    await service.apply(operator, Take(number))
    await service.apply(operator, Move(number, "tresoreria"))
    await service.apply(operator, SetStatus(number, Status.STALLED))
    await service.apply(operator, SetStatus(number, Status.OPEN))
    await service.apply(operator, SetTitle(number, "El router no s'encén"))
    folded, shown = history_parts((await browser.get(f"/tickets/{number}")).text)
    assert "el router no s&#39;encén" in shown
    assert "el router no s&#39;encén" not in folded


async def test_mails_and_comments_still_fold_on_a_long_ticket(browser, service):  # noqa: F811
    number = await receive(service, body="El primer correu")
    for n in range(RECENT_ENTRIES):
        await browser.act(number, "comment", text=f"Nota {n}")
        await service.apply(Actor.operator(VOL), SetStatus(number, Status.STALLED))
        await service.apply(Actor.operator(VOL), SetStatus(number, Status.OPEN))
    folded, shown = history_parts((await browser.get(f"/tickets/{number}")).text)
    assert "El primer correu" in folded
    assert all(f"Nota {n}" in shown for n in range(RECENT_ENTRIES))


# ------------------------------------------------------------- 5. the plugins' pages


@pytest.fixture
def menu_domain(tmp_path):
    """A plugin's catalogs holding its menu label (a plugin ships its own)."""
    words = {"ca": "Respostes desades", "es": "Respuestas guardadas", "en": "Saved replies"}
    for language, text in words.items():
        catalog = Catalog(locale=language, domain=MENU_DOMAIN)
        catalog.add("Saved replies", text)
        folder = tmp_path / language / "LC_MESSAGES"
        folder.mkdir(parents=True)
        with open(folder / f"{MENU_DOMAIN}.mo", "wb") as out:
            write_mo(out, catalog)
    i18n.add_domain(MENU_DOMAIN, tmp_path)
    yield
    i18n.remove_domain(MENU_DOMAIN)


async def test_the_menu_links_the_pages_plugins_register(
    browser,
    service,
    menu_domain,  # noqa: F811
):
    app = browser.client._transport.app
    entry = MenuEntry("Saved replies", "/plugins/menutest/", MENU_DOMAIN)
    remove = menu_of(app).add(entry)
    number = await receive(service)
    for path in ("/", f"/tickets/{number}", "/no-such-page"):
        page = (await browser.get(path)).text
        nav = page[page.index("<nav") : page.index("</nav>")]
        assert re.search(r'<a href="/plugins/menutest/"\s*>Respostes desades</a>', nav), path
    browser.client.cookies.set(LANGUAGE_COOKIE, "es")
    assert "Respuestas guardadas" in (await browser.get("/")).text
    remove()  # a plugin that stops takes its entry away
    assert "/plugins/menutest/" not in (await browser.get("/")).text


def test_a_menu_entry_is_current_on_its_pages_only(menu_domain):
    class App:
        class state:  # noqa: N801 - stands in for Starlette's app.state
            pass

    menu = menu_of(App)
    menu.add(MenuEntry("Saved replies", "/plugins/saved-replies/", MENU_DOMAIN))
    current = {
        path: menu.links("ca", path)[0].current
        for path in ("/plugins/saved-replies/", "/plugins/saved-replies/3", "/plugins/saved", "/")
    }
    assert current == {
        "/plugins/saved-replies/": True,
        "/plugins/saved-replies/3": True,
        "/plugins/saved": False,
        "/": False,
    }
    with pytest.raises(ValueError):
        menu.add(MenuEntry("Elsewhere", "//evil.example/"))


# ------------------------------------------------------------- 8. the web's own words


@pytest.mark.parametrize("action", ["reply", "comment"])
async def test_a_missing_text_is_said_the_webs_way(browser, service, action):  # noqa: F811
    number = await receive(service)
    refused = await browser.act(number, action, text="   ")
    assert refused.status_code == 400
    assert alert(refused.text) == "Falta el text: escriu-lo al quadre."
    assert "referència" not in alert(refused.text)  # chat's: "after the ticket reference"


# ------------------------------------------------------------- 9. words and sizes


async def test_a_flag_is_named_in_the_readers_language(browser, service):  # noqa: F811
    number = await masked_ticket(service)
    page = (await browser.get(f"/tickets/{number}")).text
    assert "Marca dades sensibles" in page
    assert "Marca sensitive" not in page  # the flag's code (the history's entry)
    browser.client.cookies.set(LANGUAGE_COOKIE, "es")
    assert "datos sensibles" in (await browser.get(f"/tickets/{number}")).text


@pytest.mark.parametrize(
    ("size", "ca", "en"),
    [
        (1, "1 byte", "1 byte"),
        (13, "13 bytes", "13 bytes"),
        (4000, "4,0\u00a0kB", "4.0\u00a0kB"),
        (250_003, "250,0\u00a0kB", "250.0\u00a0kB"),
        (1_234_567, "1,2\u00a0MB", "1.2\u00a0MB"),
    ],
)
def test_sizes_are_said_in_the_readers_language(size, ca, en):
    assert size_in("ca", size) == ca
    assert size_in("es", size) == ca
    assert size_in("en", size) == en


async def test_attachment_and_quarantine_sizes_are_localized(browser, service, repo):  # noqa: F811
    files = (AttachmentInfo("petit.txt", "text/plain", b"x" * 13),
             AttachmentInfo("gran.bin", "application/octet-stream", b"x" * 4000))  # fmt: skip
    number = await receive(service, attachments=files)
    page = (await browser.get(f"/tickets/{number}")).text
    assert "(13 bytes)" in page
    assert "(4,0\u00a0kB)" in page
    assert "Bytes" not in page
    await quarantined(repo)
    listed = (await browser.get("/quarantine")).text
    assert re.search(r"<td data-label=\"Mida\">\d+ bytes</td>", listed)


# ------------------------------------------------------------- 12. error pages


@pytest.mark.parametrize(("path", "status"), [("/no-such-page", 404), ("/tickets/1/reply", 405)])
async def test_an_error_page_keeps_the_menu_of_a_logged_in_reader(
    browser,
    anonymous,
    path,
    status,  # noqa: F811
):
    page = await browser.get(path)
    assert page.status_code == status
    assert 'aria-label="Navegació principal"' in page.text or "<nav" in page.text
    assert 'action="/logout"' in page.text
    assert 'href="/quarantine"' in page.text
    logged_out = await anonymous.get("/no-such-page")
    assert logged_out.status_code == 404
    assert 'action="/logout"' not in logged_out.text


# ------------------------------------------------------------- 13. the dashboard's ages


async def test_the_dashboard_says_which_age_it_shows(browser, service):  # noqa: F811
    number = await receive(service)
    await service.apply(Actor.operator(VOL), Take(number))
    page = (await browser.get("/")).text
    ages = re.findall(r'<span class="age">(.*?)<time', page, re.S)
    assert [age.strip() for age in ages] == ["actualitzat", "creat"], ages
    assert "actualitzat <time datetime=" in page  # the time element itself, not its escaped text
