"""The member's language, end to end on the real mail stack (and Synapse for `!idioma`):
a new ticket speaks the language of its first mail, acknowledgement first; an operator changes
it with `!idioma`; the mails greet the member by the name their mail gave (issue 14)."""

from __future__ import annotations

import pytest
from harness import member_mail, unique
from test_chat_answers import answer_to, ca
from test_matrix_flow import Chat

pytestmark = pytest.mark.integration

# (language, From name, subject, body, a sentence only that language's acknowledgement has,
# the greeting it opens with)
FIRST_MAILS = [
    (
        "es",
        "Lucía Fernández",
        "No me funciona internet",
        "Hola, desde ayer por la noche no tengo conexión. He reiniciado el router y nada.",
        "Normalmente respondemos en un máximo de dos días laborables.",
        "Hola, Lucía Fernández:",
    ),
    (
        "ca",
        "Jordi Vila",
        "Sense connexió",
        "Bon dia, fa dos dies que la connexió va i ve. Què puc fer? Gràcies",
        "Normalment responem en un màxim de dos dies feiners.",
        "Hola, Jordi Vila,",
    ),
    (
        "en",
        "Sam Taylor",
        "Internet not working",
        "Hi, since last night I have no connection. I restarted the router and nothing.",
        "We usually answer within two working days.",
        "Hello Sam Taylor,",
    ),
]


@pytest.mark.parametrize(
    ("language", "name", "subject", "body", "sentence", "greeting"), FIRST_MAILS
)
async def test_the_acknowledgement_speaks_the_language_of_the_first_mail(
    bot, language, name, subject, body, sentence, greeting
):
    member = unique("member")
    await bot.send(member_mail(f"{name} <{member}>", bot.address, subject=subject, body=body))
    await bot.wait_tickets(1)
    assert bot.scalar("SELECT language FROM tickets WHERE id = 1") == language
    [ack] = await bot.wait_mailbox(member, 1)
    text = ack.get_content().replace("\r\n", "\n")
    assert ack["Content-Language"] == language
    assert text.startswith(greeting + "\n")
    assert sentence in text
    assert "suport#1" in text
    # The name is body text only: the headers carry none of it.
    assert name.split()[0] not in str(ack["To"]) + str(ack["Subject"])


async def test_an_unclear_first_mail_keeps_the_configured_language(bot):
    member = unique("member")
    await bot.send(member_mail(member, bot.address, subject="urgent", body="router"))
    await bot.wait_tickets(1)
    assert bot.scalar("SELECT language FROM tickets WHERE id = 1") == "ca"
    [ack] = await bot.wait_mailbox(member, 1)
    text = ack.get_content().replace("\r\n", "\n")
    assert text.startswith("Hola,\n")  # a bare address: no name to greet
    assert "tiquet de suport 1" in text


@pytest.fixture
async def chat(make_instance, matrix_setup, volunteer) -> Chat:
    setup = matrix_setup()
    inst = make_instance(matrix=setup)
    await inst.start()
    return Chat(inst, setup, await volunteer(setup))


async def test_idioma_changes_the_language_of_the_next_mails(chat: Chat):
    member = unique("membre")
    number, root, _ = await chat.mail_ticket(
        member=member,
        subject="Canvi de domicili",
        body="Ens traslladem a Vic el mes que ve. Es pot portar la connexió al pis nou?",
    )
    ref = f"suport#{number}"
    [ack] = await chat.inst.wait_mailbox(member, 1)
    assert ack["Content-Language"] == "ca"

    answer = await answer_to(chat, "!idioma castellano", root)
    assert answer == ca(
        "{actor} set the language of the mails of {ticket} to {lang}",
        actor=answer.split(" ")[0],
        ticket=ref,
        lang=ca("Spanish"),
    )
    assert chat.inst.scalar(f"SELECT language FROM tickets WHERE id = {number}") == "es"
    again = await answer_to(chat, f"!idioma {ref} es", root)
    assert again == ca(
        "{ticket} is already mailed in {lang}.", ticket=ref, lang=ca("Spanish")
    )
    unknown = await answer_to(chat, "!idioma francès", root)
    assert unknown == ca(
        "There is no language “{lang}”: use one of {known}.",
        lang="francès",
        known="ca, es, en",
    )

    await answer_to(chat, "!respon Hola, sí: lo movemos el día 3.", root)
    [_, reply] = await chat.inst.wait_mailbox(member, 2)
    assert reply["Content-Language"] == "es"
    assert "incidencia de soporte" in reply.get_content()
