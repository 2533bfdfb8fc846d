"""The participants on the ticket page: added and removed through the same service as `!cc`,
refusals said next to the form, and the Cc a mail did not bring in shown on its entry."""

from __future__ import annotations

from exobot.core.intents import MailClass
from tests.web.test_pages import alert, receive, redirect_of
from tests.web.test_pages import browser as browser  # noqa: F401 - fixture
from tests.web.test_pages import ctx as ctx  # noqa: F401 - fixture
from tests.web.test_pages import retrier as retrier  # noqa: F401 - fixture
from tests.web.test_pages import service as service  # noqa: F401 - fixture

MEMBER = "marta@example.net"


async def participants(repo, number: int) -> set[str]:
    async with repo.reading() as view:
        return await view.participants(number)


async def test_participants_are_added_and_removed_from_the_page(browser, service, repo):
    number = await receive(service)
    page = await browser.get(f"/tickets/{number}")
    assert 'id="action-cc"' in page.text and 'name="add"' in page.text

    response = await browser.act(number, "cc", add="Germana@Example.net, pare@example.net")
    assert redirect_of(response) == f"/tickets/{number}?done=cc#done"
    assert await participants(repo, number) == {MEMBER, "germana@example.net", "pare@example.net"}
    page = await browser.get(f"/tickets/{number}?done=cc")
    assert "Participants canviats." in page.text
    assert 'name="remove" value="pare@example.net"' in page.text
    assert 'name="remove" value="marta@example.net"' not in page.text  # the requestor stays

    redirect_of(await browser.act(number, "cc", remove="pare@example.net"))
    assert await participants(repo, number) == {MEMBER, "germana@example.net"}
    history = (await browser.get(f"/tickets/{number}")).text
    assert "ha tret pare@example.net dels participants" in history


async def test_a_bad_address_is_refused_next_to_the_form(browser, service, repo):
    number = await receive(service)
    response = await browser.act(number, "cc", add="joan@example.org.")
    assert response.status_code == 400
    assert "«joan@example.org.» no és una adreça de correu utilitzable" in alert(response.text)
    assert 'value="joan@example.org."' in response.text  # what was typed comes back
    refused = await browser.act(number, "cc", remove=MEMBER)
    assert "és el sol·licitant" in alert(refused.text)
    assert await participants(repo, number) == {MEMBER}


async def test_an_accepted_mails_cc_is_listed_not_added(browser, service, repo):
    number = await receive(service)
    await receive(
        service, number, MailClass.UNVERIFIED, sender="veina@example.net", cc=("spy@evil.example",)
    )
    redirect_of(await browser.act(number, "accept"))
    assert "spy@evil.example" not in await participants(repo, number)
    page = (await browser.get(f"/tickets/{number}")).text
    assert "participants les adreces en còpia: spy@evil.example" in page
