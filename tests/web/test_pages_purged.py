"""A ticket whose texts the retention policy purged: its page says so in place of the texts
and keeps the history of changes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from clocks import FakeClock

from exobot.core.intents import SetStatus
from exobot.core.model import Actor, Status
from exobot.retention import Retention
from tests.web.test_pages import VOL, receive
from tests.web.test_pages import browser as browser  # noqa: F401 - fixture
from tests.web.test_pages import ctx as ctx  # noqa: F401 - fixture
from tests.web.test_pages import retrier as retrier  # noqa: F401 - fixture
from tests.web.test_pages import service as service  # noqa: F401 - fixture

PURGED = "(Text esborrat per la política de conservació.)"


async def test_the_page_of_a_purged_ticket_says_so_instead_of_the_texts(browser, service, repo):
    number = await receive(service, body="La meva adreça és Carrer Major 5, 2n 1a")
    await service.apply(Actor.operator(VOL), SetStatus(number, Status.RESOLVED))
    before = (await browser.get(f"/tickets/{number}")).text
    assert "Carrer Major 5" in before and PURGED not in before

    later = FakeClock(datetime.now(UTC) + timedelta(days=731))
    report = await Retention(
        repo, retention=timedelta(days=730), raw_mail_retention=timedelta(days=30), clock=later
    ).run_once()
    assert report.purged == [number]

    page = (await browser.get(f"/tickets/{number}")).text
    assert "Carrer Major 5" not in page
    assert PURGED in page
    # The PURGE line in the history too, after the text it replaced.
    assert page.count("política de conservació") >= 2
    assert "Resolt" in page or "resolt" in page  # the change of status stays
