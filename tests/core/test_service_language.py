"""The member's language on a ticket: taken from the first mail, changed by operators, and the
name the mails greet the member with."""

from __future__ import annotations

from dataclasses import replace

import pytest
from test_service import ANNA, MEMBER, OPERATOR, World, mail

from exobot.core import intents as i
from exobot.core.model import Actor, EntryKind
from exobot.core.service import InvalidRequest, NotAllowed


@pytest.fixture
def world() -> World:
    return World()


@pytest.mark.parametrize("language", ["ca", "es", "en"])
async def test_a_new_ticket_speaks_the_language_of_its_first_mail(world, language):
    await world.receive(mail(language=language), acknowledge=True)
    assert world.repo.ticket(1).language == language
    [ack] = world.repo.outbox(1)
    assert ack.payload["language"] == language


@pytest.mark.parametrize("detected", [None, "fr", ""])
async def test_an_unknown_or_unsure_language_falls_back_to_the_configured_one(world, detected):
    await world.receive(mail(language=detected))
    assert world.repo.ticket(1).language == "ca"


async def test_a_later_mail_in_another_language_changes_nothing(world):
    await world.receive(mail(language="es"))
    await world.receive(mail(language="en"), ticket=1)
    assert world.repo.ticket(1).language == "es"


async def test_an_operator_sets_the_language_and_later_mails_use_it(world):
    await world.receive(mail(language="ca"))
    await world.op(i.SetLanguage(1, "castellano"))
    assert world.repo.ticket(1).language == "es"
    [entry] = world.repo.entries(1, EntryKind.LANGUAGE.value)
    assert (entry.actor, entry.data) == (ANNA, {"from": "ca", "to": "es"})
    await world.op(i.Reply(1, "Hola, ya funciona."))
    [reply] = world.repo.outbox(1)
    assert reply.payload["language"] == "es"


@pytest.mark.parametrize("word", ["es", "ES", "castellà", "Español", "spanish"])
async def test_language_words_in_any_of_our_languages(world, word):
    await world.receive(mail(language="ca"))
    await world.op(i.SetLanguage(1, word))
    assert world.repo.ticket(1).language == "es"


async def test_an_unknown_language_is_refused_naming_the_known_ones(world):
    await world.receive(mail())
    with pytest.raises(InvalidRequest) as refused:
        await world.op(i.SetLanguage(1, "fr"))
    assert refused.value.code == "unknown_language"
    assert refused.value.params == {"lang": "fr", "known": "ca, es, en"}
    assert world.repo.entries(1, EntryKind.LANGUAGE.value) == []


async def test_the_same_language_is_said_not_recorded(world):
    await world.receive(mail(language="es"))
    with pytest.raises(InvalidRequest) as refused:
        await world.op(i.SetLanguage(1, "es"))
    assert refused.value.code == "same_language"
    assert world.repo.entries(1, EntryKind.LANGUAGE.value) == []


async def test_members_cannot_change_the_language(world):
    await world.receive(mail())
    with pytest.raises(NotAllowed):
        await world.service.apply(Actor.member(MEMBER), i.SetLanguage(1, "es"))


# --- the name the member is greeted with ----------------------------------------------------


async def test_the_ack_greets_the_sender_by_the_name_in_their_mail(world):
    await world.receive(mail(), acknowledge=True)  # From: "Marta" <marta@…>
    [ack] = world.repo.outbox(1)
    assert ack.payload["name"] == "Marta"


async def test_a_reply_greets_the_requestor_by_the_name_of_their_latest_mail(world):
    await world.receive(mail())
    await world.op(i.Reply(1, "Prova-ho ara."), OPERATOR)
    await world.op(i.SetStatus(1, "resolved"))
    reply, resolved = world.repo.outbox(1)
    assert reply.payload["name"] == resolved.payload["name"] == "Marta"


async def test_no_name_when_someone_else_wrote_for_the_requestor(world):
    await world.receive(mail("pare@example.net", requestor=MEMBER), acknowledge=True)
    [ack] = world.repo.outbox(1)
    assert ack.payload["name"] is None


async def test_no_name_for_a_ticket_opened_by_an_operator(world):
    await world.op(i.OpenTicket(MEMBER, "Trucada: no va internet"))
    await world.op(i.Reply(1, "Hola, us truquem demà."))
    [reply] = world.repo.outbox(1)
    assert reply.payload["name"] is None


async def test_a_name_unfit_for_a_greeting_is_left_out(world):
    unfit = replace(mail(), sender_name="marta.puig@example.net")
    await world.receive(unfit, acknowledge=True)
    [ack] = world.repo.outbox(1)
    assert ack.payload["name"] is None
