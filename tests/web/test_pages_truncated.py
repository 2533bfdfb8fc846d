"""A mail whose body the parser cut carries a visible note on the ticket page."""

from __future__ import annotations

from tests.web.test_pages import browser as browser  # noqa: F401 - fixture
from tests.web.test_pages import ctx as ctx  # noqa: F401 - fixture
from tests.web.test_pages import receive
from tests.web.test_pages import retrier as retrier  # noqa: F401 - fixture
from tests.web.test_pages import service as service  # noqa: F401 - fixture

NOTE = "(Missatge retallat: el correu sencer es conserva com a original.)"


async def test_the_ticket_page_notes_a_cut_body(browser, service):
    number = await receive(service, body="Inici del text llarg", body_truncated=True)
    await receive(service, number, body="Un correu curt")
    page = (await browser.get(f"/tickets/{number}")).text
    assert page.count(f'<p class="note">{NOTE}</p>') == 1
    # The note follows the text it is about, not the short mail.
    assert page.index("Inici del text llarg") < page.index(NOTE) < page.index("Un correu curt")
