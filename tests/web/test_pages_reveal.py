"""Showing a masked entry's original on the ticket page: recorded once per form, even when the
form is sent twice (a double click), and never shown unrecorded."""

from __future__ import annotations

import re

from exobot.core.intents import Comment
from exobot.core.model import Actor, EntryKind
from exobot.web.pages import RECENT_ENTRIES
from tests.web.test_pages import VOL, form_nonce, receive
from tests.web.test_pages import browser as browser  # noqa: F401 - fixture
from tests.web.test_pages import ctx as ctx  # noqa: F401 - fixture
from tests.web.test_pages import retrier as retrier  # noqa: F401 - fixture
from tests.web.test_pages import service as service  # noqa: F401 - fixture

IBAN = "ES91 2100 0418 4502 0005 1332"
BODY = f"El meu IBAN és {IBAN}"
MASKED = "ES91 **** **** **** **** 1332"


async def masked_ticket(service) -> int:
    """A ticket whose first mail came masked (as the parser masks it), its original kept."""
    return await receive(
        service, body=BODY.replace(IBAN, MASKED), sensitive=("iban",), originals=(BODY, None)
    )


async def reveals(repo, number: int) -> list:
    return [e for e in await repo.history(number) if e.kind is EntryKind.REVEAL]


async def reveal_form(browser, number: int) -> tuple[str, str]:
    """The reveal form's action and nonce, as the ticket page renders them."""
    page = (await browser.get(f"/tickets/{number}")).text
    match = re.search(r'action="(/tickets/\d+/entries/\d+/reveal)"', page)
    assert match, "no reveal form on the page"
    nonce = form_nonce(page, match.group(1))
    assert nonce, "the reveal form has no nonce"
    return match.group(1), nonce


async def test_a_reveal_sent_twice_is_recorded_once_and_shown_both_times(browser, service, repo):
    number = await masked_ticket(service)
    action, nonce = await reveal_form(browser, number)
    answers = [await browser.post(action, {"nonce": nonce}) for _ in range(2)]
    for answer in answers:
        assert answer.status_code == 200, answer.text[:500]
        assert IBAN in answer.text  # the original, both times
        assert MASKED in answer.text
        assert answer.headers["cache-control"] == "no-store"
    recorded = await reveals(repo, number)
    assert len(recorded) == 1
    assert recorded[0].actor == VOL


async def test_each_reveal_form_is_recorded(browser, service, repo):
    number = await masked_ticket(service)
    for _ in range(2):  # the page loaded again: a new form, a new reveal
        action, nonce = await reveal_form(browser, number)
        assert (await browser.post(action, {"nonce": nonce})).status_code == 200
    assert len(await reveals(repo, number)) == 2


async def test_a_nonce_spent_on_another_form_still_records_the_reveal(browser, service, repo):
    number = await masked_ticket(service)
    action, nonce = await reveal_form(browser, number)
    comment = await browser.post(f"/tickets/{number}/comment", {"nonce": nonce, "text": "Vist"})
    assert comment.status_code == 303
    answer = await browser.post(action, {"nonce": nonce})
    assert answer.status_code == 200
    assert IBAN in answer.text
    assert len(await reveals(repo, number)) == 1  # shown, so recorded


async def test_a_revealed_original_among_the_folded_entries_is_shown_unfolded(
    browser, service, repo
):
    number = await masked_ticket(service)
    for n in range(RECENT_ENTRIES + 1):  # the masked mail is folded among the older entries
        await service.apply(Actor.operator(VOL), Comment(number, f"nota {n}"))
    page = (await browser.get(f"/tickets/{number}")).text
    assert '<details class="older">' in page
    action, nonce = await reveal_form(browser, number)
    answer = await browser.post(action, {"nonce": nonce})
    assert answer.status_code == 200
    assert '<details class="older" open>' in answer.text
    assert answer.text.index('<details class="older" open>') < answer.text.index(IBAN)
