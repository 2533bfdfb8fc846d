"""Input that names nothing or cannot be searched is refused cleanly on both databases: a NUL
byte or a lone surrogate in search words, numbers beyond the database's integers."""

from __future__ import annotations

import pytest

from exobot.core.intents import MailClass, ReceiveMail
from exobot.core.model import Actor, IncomingMail
from exobot.core.service import InvalidRequest, ServiceSettings, TicketService
from exobot.db import inbound
from exobot.mail.msgid import MessageIds

HUGE = 10**19


@pytest.fixture
async def number(repo) -> int:
    service = TicketService(
        repo, MessageIds("secret" * 4, "example.org"), ServiceSettings(own_address="s@example.org")
    )
    mail = IncomingMail(
        message_id="<a@example.net>",
        sender="marta@example.net",
        sender_name="Marta",
        requestor="marta@example.net",
        subject="No tinc internet",
        body="Des d'ahir.",
    )
    outcome = await service.apply(Actor.member(mail.sender), ReceiveMail(mail, MailClass.MEMBER))
    return outcome.ticket


@pytest.mark.parametrize("words", ["internet\x00", "\x00", "a \x00b", "\ud800", "x\x07"])
async def test_search_words_with_a_control_character_are_refused(repo, number, words):
    with pytest.raises(InvalidRequest) as refused:
        await repo.search(words)
    assert refused.value.code == "bad_search"
    async with repo.reading() as view:
        with pytest.raises(InvalidRequest):
            await view.list_tickets(words=words)
    # The database is still fine, and a good search finds the ticket.
    assert await repo.search("internet") == [number]


async def test_numbers_beyond_the_database_integers_name_nothing(repo, number):
    for huge in (HUGE, 2**63, 2**63 - 1, 10**12, 2**31, 0, -1):
        assert await repo.get_ticket(huge) is None
        async with repo.reading() as view:
            assert await view.attachment(huge, 1) is None
            assert await view.attachment(number, huge) is None
        async with repo.transaction() as uow:
            assert await uow.get_ticket(huge) is None
        async with repo.connection() as conn:
            assert await inbound.get_inbound(conn, huge) is None
            assert await inbound.discard(conn, huge) is False
    assert (await repo.get_ticket(number)).number == number
