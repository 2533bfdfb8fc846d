"""The mails a member receives, built as the outbox worker builds them from what the service
queued (SQLite, the migrations, the packaged templates): the Subject and the «…» quote are
the subject the member opened the ticket with, whatever volunteers renamed it to; a ticket
opened without a subject says so in the member's language and quotes nothing; their client's
"RE: FW:" is not repeated back; "reply and resolve" is one mail that says how to reopen."""

from __future__ import annotations

import itertools
from email.message import EmailMessage

import pytest
from clocks import FakeClock
from sqlalchemy import select

from exobot.core import intents as i
from exobot.core.model import Actor, IncomingMail, Status
from exobot.core.service import PLACEHOLDER_TITLE, ServiceSettings, TicketService
from exobot.db.tables import OutboxRow
from exobot.mail.compose import TemplateRenderer
from exobot.mail.msgid import MessageIds
from exobot.mail.outbound import MailSender, SmtpSettings

O = OutboxRow.__table__  # noqa: E741
OWN = "suport@example.org"
MEMBER = "nuria@example.net"
OPERATOR = Actor.operator("@anna:example.org")
RENAME = "Router LOS vermell, veí diu que no paga"
# How each language's mails quote the subject, and say there is none.
QUOTED = {"ca": "«{}»", "es": "«{}»", "en": '"{}"'}
NO_SUBJECT = {"ca": "(sense assumpte)", "es": "(sin asunto)", "en": "(no subject)"}
# The sentence a reply that resolved the ticket ends with.
RESOLVED = {
    "ca": "Hem marcat aquest tiquet com a resolt. Si el problema continua, respon a aquest "
    "correu mantenint [suport#1] a l'assumpte i el tornarem a obrir.",
    "es": "Hemos marcado esta incidencia como resuelta. Si el problema persiste, responde a "
    "este correo manteniendo [suport#1] en el asunto y la volveremos a abrir.",
    "en": "We have marked this ticket as resolved. If the problem persists, reply to this "
    "email keeping [suport#1] in the subject and we will reopen it.",
}
_ids = itertools.count(1)


class Desk:
    """The service on a migrated SQLite database, and the worker that builds its mails."""

    def __init__(self, repo) -> None:  # noqa: ANN001
        self.repo = repo
        ids = MessageIds("secret" * 4, "example.org")
        self.clock = FakeClock()
        self.service = TicketService(repo, ids, ServiceSettings(own_address=OWN), clock=self.clock)
        self.sender = MailSender(
            repo,
            self.service,
            SmtpSettings("127.0.0.1", 25),
            TemplateRenderer("ca"),
            from_address=OWN,
            from_name="Suport eXO",
            loop_marker=ids.loop_marker(),
            clock=self.clock,
        )

    async def receive(self, subject: str, language: str = "ca", name: str = "Núria") -> int:
        mail = IncomingMail(
            message_id=f"<{next(_ids)}@example.net>",
            sender=MEMBER,
            sender_name=name,
            requestor=MEMBER,
            subject=subject,
            body="Bon dia, no tinc connexió.",
            language=language,
        )
        intent = i.ReceiveMail(mail, i.MailClass.MEMBER, acknowledge=True)
        return (await self.service.apply(Actor.member(MEMBER), intent)).ticket

    async def op(self, intent: i.Intent) -> None:
        self.clock.advance(minutes=1)
        await self.service.apply(OPERATOR, intent)

    async def mails(self) -> list[EmailMessage]:
        """Every mail queued so far, built as the worker sends it."""
        async with self.repo.connection() as conn:
            rows = await conn.execute(
                select(O.c.payload).where(O.c.kind == "mail").order_by(O.c.id)
            )
            return [self.sender.build(payload) for (payload,) in rows]


def body(message: EmailMessage) -> str:
    return message.get_content()


@pytest.fixture
def desk(repo) -> Desk:  # noqa: ANN001
    return Desk(repo)


@pytest.mark.parametrize("language", ["ca", "es", "en"])
async def test_every_mail_keeps_the_members_subject_after_a_rename(desk, language):
    number = await desk.receive("No em funciona internet", language)
    await desk.op(i.SetTitle(number, RENAME))
    await desk.op(i.Reply(number, "Prova de reiniciar el router."))
    await desk.op(i.Notify(number, "Tràmit TR-2024-0007 registrat."))  # a plugin's notice
    await desk.op(i.SetStatus(number, Status.RESOLVED))
    mails = await desk.mails()
    assert len(mails) == 4  # acknowledgement, reply, notice, resolved notice
    for message in mails:
        assert message["Subject"] == "[suport#1] No em funciona internet"
        assert "veí diu" not in body(message)
    resolved = mails[-1]
    assert QUOTED[language].format("No em funciona internet") in body(resolved)


@pytest.mark.parametrize("language", ["ca", "es", "en"])
async def test_no_subject_is_said_in_the_members_language_and_not_quoted(desk, language):
    number = await desk.receive("", language)
    await desk.op(i.SetStatus(number, Status.RESOLVED))
    ack, resolved = await desk.mails()
    for message in (ack, resolved):
        assert message["Subject"] == f"[suport#1] {NO_SUBJECT[language]}"
        text = body(message)
        assert PLACEHOLDER_TITLE not in text and NO_SUBJECT[language] not in text
        assert "«" not in text and '"' not in text.split("\n\n")[1]
    # The sentence reads on without the quote.
    received = {"ca": "missatge i hem obert", "es": "mensaje y hemos abierto"}
    assert received.get(language, "message and opened") in body(ack)


async def test_the_reply_prefixes_of_the_members_client_are_not_repeated(desk):
    await desk.receive("RE: RE: FW: Alta de servei [Ticket#555]")
    [ack] = await desk.mails()
    assert ack["Subject"] == "[suport#1] Alta de servei [Ticket#555]"
    assert "«Alta de servei [Ticket#555]»" in body(ack)


async def test_a_name_in_capitals_is_greeted_as_written_in_catalan(desk):
    await desk.receive("Consulta", name="NÚRIA COLL I GIL·LA")
    [ack] = await desk.mails()
    assert body(ack).startswith("Hola, Núria Coll i Gil·la,\n")


@pytest.mark.parametrize("language", ["ca", "es", "en"])
async def test_reply_and_resolve_is_one_mail_that_says_how_to_reopen(desk, language):
    number = await desk.receive("No em funciona internet", language)
    await desk.op(i.Reply(number, "Ja està arreglat.", resolve=True))
    ack, reply = await desk.mails()  # and no resolved notice
    text = body(reply)
    assert text.startswith(f"Ja està arreglat.\n\n{RESOLVED[language]}\n\n-- \n")
    assert reply["Subject"] == "[suport#1] No em funciona internet"
    assert reply["Auto-Submitted"] is None  # a person's reply, as any other
    assert (await desk.repo.get_ticket(number)).status is Status.RESOLVED


async def test_a_mail_queued_before_the_subject_was_shows_its_title_without_prefixes(desk):
    # Rows an earlier version queued carry only the title: built as they were, less the
    # prefixes, and no placeholder in another language.
    payload = {
        "template": "ack",
        "language": "es",
        "to": [MEMBER],
        "reference": "suport#7",
        "number": 7,
        "title": "RE: Alta",
        "text": None,
        "message_id": "<exobot.7.1@example.org>",
        "in_reply_to": None,
        "references": [],
        "auto_submitted": True,
    }
    assert desk.sender.build(payload)["Subject"] == "[suport#7] Alta"
    placeholder = desk.sender.build(payload | {"title": PLACEHOLDER_TITLE})
    assert placeholder["Subject"] == "[suport#7] (sin asunto)"
    assert "«" not in body(placeholder)
