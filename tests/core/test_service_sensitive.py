"""Sensitive data in mail and in operators' texts: stored masked with the original aside, the
ticket flagged once, the sender advised once per ticket (never for automatic or unverified
mail, nor over the daily cap); the parser's findings turned into IncomingMail fields."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest
from fakes import FakeRepository
from test_service import MEMBER, NEIGHBOUR, OPERATOR, SETTINGS, World

from exobot.core import intents as i
from exobot.core.flags import active_flags
from exobot.core.model import Actor, EntryKind
from exobot.core.service import InvalidRequest, NotAllowed, TicketService
from exobot.mail.parse import parse_mail
from exobot.mail.processor import incoming_from

IBAN = "ES91 2100 0418 4502 0005 1332"
MASKED_IBAN = "ES91 **** **** **** **** 1332"
T0 = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)
_numbers = iter(range(1, 10**6))


def raw_mail(subject: str, body: str, sender: str = MEMBER, headers: str = "") -> bytes:
    number = next(_numbers)
    return (
        f"From: Marta <{sender}>\r\nTo: suport@example.org\r\nSubject: {subject}\r\n"
        f"Message-ID: <s{number}@example.net>\r\n{headers}"
        "Content-Type: text/plain; charset=utf-8\r\n\r\n"
        f"{body}\r\n"
    ).encode()


def incoming(subject: str, body: str, *, mask: bool = True, **kwargs):
    raw = raw_mail(subject, body, **kwargs)
    mail = incoming_from(parse_mail(raw), raw, inbound_id=None, received_at=T0, mask=mask)
    # The parser ends a body with a newline; the tests compare the text alone.
    originals = mail.originals and tuple(t.rstrip("\n") if t else t for t in mail.originals)
    return replace(mail, body=mail.body.rstrip("\n"), originals=originals)


@pytest.fixture
def world() -> World:
    return World()


def test_incoming_mail_carries_masked_texts_and_originals():
    mail = incoming(f"Compte {IBAN}", f"El meu DNI és 12345678Z i el compte {IBAN}.")
    assert mail.subject == f"Compte {MASKED_IBAN}"
    assert mail.body == f"El meu DNI és ****678Z i el compte {MASKED_IBAN}."
    assert mail.sensitive == ("iban", "identity")
    assert mail.originals == (
        f"El meu DNI és 12345678Z i el compte {IBAN}.",
        f"Compte {IBAN}",
    )
    plain = incoming("Hola", "res de sensible, truca'm al 600 123 456")
    assert (plain.sensitive, plain.originals) == ((), None)
    assert plain.body == "res de sensible, truca'm al 600 123 456"
    off = incoming("Compte", f"compte {IBAN}", mask=False)
    assert (off.body, off.sensitive, off.originals) == (f"compte {IBAN}", (), None)
    only_body = incoming("Canvi de compte", f"compte {IBAN}")
    assert only_body.originals == (f"compte {IBAN}", None)  # the subject had nothing to hide


async def test_mail_with_an_iban_is_stored_masked_flagged_and_advised_once(world):
    outcome = await world.receive(incoming(f"Compte {IBAN}", f"El compte és {IBAN}"))
    number = outcome.ticket
    ticket = world.repo.ticket(number)
    assert ticket.title == f"Compte {MASKED_IBAN}"
    [entry] = world.repo.entries(number, "mail_in")
    assert entry.body == f"El compte és {MASKED_IBAN}"
    assert entry.data["subject"] == f"Compte {MASKED_IBAN}"
    original = world.repo.state.originals[entry.id]
    assert (original.body, original.subject, original.kinds) == (
        f"El compte és {IBAN}",
        f"Compte {IBAN}",
        ("iban",),
    )
    [flag] = active_flags(world.repo.entries(number))
    assert flag.code == "sensitive"
    assert flag.note == "sensitive data in a mail: IBAN"
    assert "2100" not in repr(world.repo.state.entries)
    [advice] = [r for r in world.repo.outbox(number) if r.template == "advice"]
    assert advice.recipient == MEMBER and advice.payload["auto_submitted"] is True
    assert advice.id in outcome.outbox
    assert "2100" not in repr(advice.payload)

    # A second mail with sensitive data in the same ticket: masked and kept, no second flag
    # nor advice.
    await world.receive(incoming("Re: compte", "la targeta 4111 1111 1111 1111"), ticket=number)
    assert len(world.repo.state.originals) == 2
    assert world.repo.entries(number, "mail_in")[-1].body == "la targeta **** **** **** 1111"
    assert len(world.repo.entries(number, "flag")) == 1
    assert len([r for r in world.repo.outbox(number) if r.template == "advice"]) == 1


async def test_flag_is_set_again_after_an_operator_cleared_it(world):
    number = (await world.receive(incoming("Compte", f"compte {IBAN}"))).ticket
    await world.op(i.ClearFlag(number, "sensitive", "vist"))
    assert active_flags(world.repo.entries(number)) == []
    await world.receive(incoming("Re: clau", "contrasenya: gat123"), ticket=number)
    [flag] = active_flags(world.repo.entries(number))
    assert flag.note == "sensitive data in a mail: password"
    assert len([r for r in world.repo.outbox(number) if r.template == "advice"]) == 1


@pytest.mark.parametrize(
    "mail_class", [i.MailClass.AUTOMATIC, i.MailClass.UNVERIFIED], ids=["automatic", "unverified"]
)
async def test_no_flag_nor_advice_for_automatic_or_unverified_mail(world, mail_class):
    number = await world.new_ticket()
    sender = NEIGHBOUR if mail_class is i.MailClass.UNVERIFIED else MEMBER
    mail = incoming("Re", f"compte {IBAN}", sender=sender)
    await world.receive(mail, mail_class, ticket=number)
    stored = world.repo.entries(number)[-1]
    assert stored.body == f"compte {MASKED_IBAN}"  # masked all the same
    assert world.repo.entries(number, "flag") == []
    assert [r for r in world.repo.outbox(number) if r.template == "advice"] == []


async def test_advice_counts_against_the_daily_cap_of_acknowledgements():
    world = World()
    world.service = TicketService(
        world.repo, world.ids, replace(SETTINGS, ack_limit_per_day=1), world.bus, world.clock
    )
    await world.receive(incoming("Hola", "primer"), acknowledge=True)  # one ack today
    number = (await world.receive(incoming("Compte", f"compte {IBAN}"))).ticket
    assert [r for r in world.repo.outbox(number) if r.template == "advice"] == []
    assert [e.kind for e in world.repo.entries(number) if e.kind is EntryKind.FLAG]


async def test_operator_texts_are_stored_masked_with_the_original_aside(world):
    outcome = await world.op(
        i.OpenTicket(MEMBER, f"Trucada: compte {IBAN}", text="DNI 12345678Z per telèfon")
    )
    number = outcome.ticket
    assert world.repo.ticket(number).title == f"Trucada: compte {MASKED_IBAN}"
    [created] = world.repo.entries(number, "created")
    [comment] = world.repo.entries(number, "comment")
    assert comment.body == "DNI ****678Z per telèfon"
    originals = world.repo.state.originals
    assert originals[created.id].subject == f"Trucada: compte {IBAN}"
    assert originals[comment.id].body == "DNI 12345678Z per telèfon"
    await world.op(i.SetTitle(number, "clau: secreta"))
    [title] = world.repo.entries(number, "title")
    assert title.data["to"] == "clau: ********"
    assert originals is not world.repo.state.originals  # committed anew
    assert world.repo.state.originals[title.id].subject == "clau: secreta"
    assert "secreta" not in repr(world.repo.state.tickets)
    # Nothing sensitive: nothing kept aside.
    before = len(world.repo.state.originals)
    await world.op(i.Comment(number, "trucat, tot bé"))
    assert len(world.repo.state.originals) == before


async def test_masking_off_stores_operator_texts_as_typed():
    world = World()
    world.service = TicketService(
        FakeRepository(), world.ids, replace(SETTINGS, mask=False), world.bus, world.clock
    )
    world.repo = world.service.repository
    number = (await world.op(i.OpenTicket(MEMBER, "Trucada", text=f"compte {IBAN}"))).ticket
    assert world.repo.entries(number, "comment")[0].body == f"compte {IBAN}"
    assert world.repo.state.originals == {}


async def test_reveal_is_recorded_without_the_text_and_refused_without_an_original(world):
    number = (await world.receive(incoming("Compte", f"compte {IBAN}"))).ticket
    [mail_in] = world.repo.entries(number, "mail_in")
    outcome = await world.op(i.RevealOriginal(number, mail_in.id))
    [reveal] = world.repo.entries(number, "reveal")
    assert [e.kind for e in outcome.entries] == [EntryKind.REVEAL]
    assert (reveal.actor, reveal.body, reveal.data) == (OPERATOR.id, None, {"entry": mail_in.id})
    [created] = world.repo.entries(number, "created")
    with pytest.raises(InvalidRequest) as refused:
        await world.op(i.RevealOriginal(number, created.id))
    assert refused.value.code == "no_original"
    with pytest.raises(NotAllowed):
        await world.service.apply(Actor.member(MEMBER), i.RevealOriginal(number, mail_in.id))
    assert len(world.repo.entries(number, "reveal")) == 1
