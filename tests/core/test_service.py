"""TicketService: every intent, its history, its outbox rows, permissions and events."""

from __future__ import annotations

import copy
import itertools
from datetime import timedelta

import pytest
from fakes import FakeClock, FakeMessageIds, FakeRepository, InboundMark, InjectedFailure

from exobot.core import intents as i
from exobot.core.events import EventBus, OutboxQueued, TicketEvent
from exobot.core.model import Actor, AttachmentInfo, EntryKind, IncomingMail, Status
from exobot.core.service import (
    MAX_REFERENCES,
    PLACEHOLDER_TITLE,
    InvalidRequest,
    NotAllowed,
    ServiceSettings,
    TicketNotFound,
    TicketService,
)

OWN = "suport@example.org"
MEMBER = "marta@example.net"
NEIGHBOUR = "veina@example.net"
STRANGER = "desconegut@example.com"
ANNA = "@anna:example.org"
PERE = "@pere:example.org"
OPERATOR = Actor.operator(ANNA)
MAIL_SYSTEM = Actor.system("mail")

SETTINGS = ServiceSettings(
    prefix="suport",
    default_queue="suport",
    queues=frozenset({"suport", "tresoreria"}),
    own_address=OWN,
    new_after=timedelta(hours=4),
)

_message_numbers = itertools.count(1)


def mail(
    sender: str = MEMBER,
    *,
    subject: str = "No em funciona internet",
    body: str = "Hola, des d'ahir no tinc connexió.",
    cc: tuple[str, ...] = (),
    requestor: str | None = None,
    **extra,
) -> IncomingMail:
    """An incoming mail with a unique Message-ID."""
    return IncomingMail(
        message_id=f"<m{next(_message_numbers)}@example.net>",
        sender=sender,
        sender_name="Marta",
        requestor=requestor or sender,
        subject=subject,
        body=body,
        cc=cc,
        **extra,
    )


class World:
    """A service on in-memory fakes, recording the events it emits."""

    def __init__(self) -> None:
        self.repo = FakeRepository()
        self.ids = FakeMessageIds()
        self.clock = FakeClock()
        self.bus = EventBus()
        self.service = TicketService(self.repo, self.ids, SETTINGS, self.bus, self.clock)
        self.events: list[TicketEvent] = []
        self.bus.subscribe(TicketEvent, self.events.append)

    async def op(self, intent, actor: Actor = OPERATOR):
        return await self.service.apply(actor, intent)

    async def receive(
        self,
        incoming: IncomingMail,
        mail_class: i.MailClass = i.MailClass.MEMBER,
        *,
        ticket: int | None = None,
        acknowledge: bool = False,
        queue: str | None = None,
    ):
        actor = MAIL_SYSTEM if mail_class is i.MailClass.BOUNCE else Actor.member(incoming.sender)
        intent = i.ReceiveMail(incoming, mail_class, ticket, acknowledge, queue)
        return await self.service.apply(actor, intent)

    async def new_ticket(self, **mail_args) -> int:
        return (await self.receive(mail(**mail_args))).ticket

    async def ticket_in(self, status: Status, **mail_args) -> int:
        number = await self.new_ticket(**mail_args)
        if status is not Status.NEW:
            await self.op(i.SetStatus(number, status))
        assert self.repo.ticket(number).status is status
        return number

    def snapshot(self):
        return copy.deepcopy(self.repo.state)


@pytest.fixture
def world() -> World:
    return World()


REOPENABLE = [Status.STALLED, Status.RESOLVED, Status.REJECTED]


# --- a new mail opens a ticket -----------------------------------------------------------------


async def test_new_mail_opens_ticket_one_in_status_new(world):
    outcome = await world.receive(mail(subject="No em  funciona\n internet"))
    ticket = world.repo.ticket(1)
    assert (outcome.ticket, outcome.created, outcome.status) == (1, True, Status.NEW)
    assert ticket.status is Status.NEW
    assert ticket.title == "No em funciona internet"
    assert ticket.requestor == MEMBER
    assert ticket.queue == "suport"
    assert ticket.owner is None
    assert ticket.created_at == ticket.last_member_mail_at == world.clock.now()
    assert ticket.next_alert_at == world.clock.now() + timedelta(hours=4)


async def test_ticket_numbers_increase(world):
    assert [await world.new_ticket() for _ in range(3)] == [1, 2, 3]


async def test_new_mail_participants_are_requestor_sender_and_cc_but_not_us(world):
    incoming = mail("Pare@Example.net", requestor="Marta@Example.net", cc=(NEIGHBOUR, OWN.upper()))
    number = (await world.receive(incoming)).ticket
    assert world.repo.ticket(number).requestor == MEMBER
    assert world.repo.participants(number) == {MEMBER, "pare@example.net", NEIGHBOUR}


async def test_new_mail_records_created_and_mail_in(world):
    incoming = mail(cc=(NEIGHBOUR,))
    outcome = await world.receive(incoming)
    created, mail_in = world.repo.entries(1)
    assert created.kind is EntryKind.CREATED
    assert created.data == {"queue": "suport", "requestor": MEMBER}
    assert mail_in.kind is EntryKind.MAIL_IN
    assert mail_in.body == incoming.body
    assert mail_in.actor == MEMBER
    assert mail_in.data["from"] == MEMBER
    assert mail_in.data["message_id"] == incoming.message_id
    assert mail_in.data["cc"] == [NEIGHBOUR]
    assert [e.id for e in outcome.entries] == [created.id, mail_in.id]
    assert world.repo.message_ids(1) == [incoming.message_id]


async def test_new_mail_without_acknowledge_queues_nothing(world):
    outcome = await world.receive(mail(), acknowledge=False)
    assert outcome.outbox == []
    assert world.repo.outbox() == []
    assert "mail_out" not in world.repo.kinds(1)


async def test_new_mail_with_acknowledge_queues_the_ack(world):
    incoming = mail()
    outcome = await world.receive(incoming, acknowledge=True)
    [row] = world.repo.outbox(1)
    assert outcome.outbox == [row.id]
    assert (row.kind, row.template, row.recipient) == ("mail", "ack", MEMBER)
    assert row.payload["to"] == [MEMBER]
    assert row.payload["message_id"] == "<exobot.1.1@example.org>" == world.ids.minted[0]
    assert row.payload["in_reply_to"] == incoming.message_id
    assert row.payload["reference"] == "suport#1"
    assert row.payload["auto_submitted"] is True
    mail_out = world.repo.entries(1, "mail_out")[-1]
    assert mail_out.data["message_id"] == row.payload["message_id"]
    assert mail_out.data["outbox_id"] == row.id
    assert world.repo.message_ids(1) == [incoming.message_id, row.payload["message_id"]]


async def test_ack_is_addressed_to_the_requestor_not_the_sender(world):
    await world.receive(mail("pare@example.net", requestor=MEMBER), acknowledge=True)
    [row] = world.repo.outbox(1)
    assert row.payload["to"] == [MEMBER]


async def test_ack_goes_to_the_requestor_as_stored_on_the_ticket(world):
    await world.receive(mail("Marta@Example.NET"), acknowledge=True)
    [row] = world.repo.outbox(1)
    assert world.repo.ticket(1).requestor == MEMBER
    assert (row.recipient, row.payload["to"]) == (MEMBER, [MEMBER])


async def test_new_mail_marks_its_inbound_row_done(world):
    await world.receive(mail(inbound_id=42))
    assert world.repo.state.inbound == {42: InboundMark("done", 1, None)}


async def test_mail_without_inbound_row_marks_nothing(world):
    await world.receive(mail())
    assert world.repo.state.inbound == {}


@pytest.mark.parametrize("subject", ["", "   ", "\n\t"])
async def test_empty_subject_gets_the_placeholder_title(world, subject):
    number = await world.new_ticket(subject=subject)
    assert world.repo.ticket(number).title == PLACEHOLDER_TITLE


async def test_long_subject_is_cut(world):
    number = await world.new_ticket(subject="x" * 500)
    assert len(world.repo.ticket(number).title) == 200


async def test_new_mail_goes_to_the_requested_queue(world):
    outcome = await world.receive(mail(), queue="tresoreria")
    assert world.repo.ticket(outcome.ticket).queue == "tresoreria"


async def test_new_mail_to_an_unknown_queue_is_refused_and_stores_nothing(world):
    with pytest.raises(InvalidRequest, match="unknown queue"):
        await world.receive(mail(), queue="nowhere")
    assert world.repo.state.tickets == {}


async def test_attachments_are_stored_and_listed(world):
    pdf = AttachmentInfo("factura.pdf", "application/pdf", b"%PDF-1.4")
    await world.receive(mail(attachments=(pdf,)))
    mail_in = world.repo.entries(1, "mail_in")[0]
    assert mail_in.data["attachments"] == [
        {"filename": "factura.pdf", "content_type": "application/pdf", "size": 8}
    ]
    assert world.repo.state.attachments == [(1, mail_in.id, pdf)]


# --- mail to an existing ticket ------------------------------------------------------------------


@pytest.mark.parametrize("status", REOPENABLE)
async def test_member_mail_reopens(world, status):
    number = await world.ticket_in(status)
    world.clock.advance(days=2)
    outcome = await world.receive(mail(), ticket=number)
    ticket = world.repo.ticket(number)
    assert outcome.status is ticket.status is Status.OPEN
    assert world.repo.entries(number, "status")[-1].data == {"from": status.value, "to": "open"}
    assert ticket.last_member_mail_at == world.clock.now()


@pytest.mark.parametrize("status", [Status.NEW, Status.OPEN])
async def test_member_mail_keeps_new_and_open(world, status):
    number = await world.ticket_in(status)
    statuses_before = len(world.repo.entries(number, "status"))
    await world.receive(mail(), ticket=number)
    assert world.repo.ticket(number).status is status
    assert len(world.repo.entries(number, "status")) == statuses_before


async def test_member_mail_adds_its_cc_as_participants(world):
    number = await world.new_ticket()
    await world.receive(mail(cc=(NEIGHBOUR, OWN)), ticket=number)
    assert world.repo.participants(number) == {MEMBER, NEIGHBOUR}
    assert world.repo.kinds(number)[-1] == "mail_in"


@pytest.mark.parametrize("status", list(Status))
async def test_automatic_mail_changes_nothing(world, status):
    number = await world.ticket_in(status)
    last_member_mail = world.repo.ticket(number).last_member_mail_at
    world.clock.advance(hours=1)
    outcome = await world.receive(mail(cc=(NEIGHBOUR,)), i.MailClass.AUTOMATIC, ticket=number)
    ticket = world.repo.ticket(number)
    assert outcome.status is ticket.status is status
    assert world.repo.kinds(number)[-1] == "automatic_in"
    assert ticket.last_member_mail_at == last_member_mail
    assert NEIGHBOUR not in world.repo.participants(number)


@pytest.mark.parametrize("status", list(Status))
async def test_unverified_mail_changes_nothing(world, status):
    number = await world.ticket_in(status)
    participants = world.repo.participants(number)
    outbox = len(world.repo.outbox())
    incoming = mail(STRANGER, cc=(NEIGHBOUR,), inbound_id=7)
    outcome = await world.receive(incoming, i.MailClass.UNVERIFIED, ticket=number)
    assert outcome.status is world.repo.ticket(number).status is status
    assert outcome.outbox == []
    assert len(world.repo.outbox()) == outbox
    assert world.repo.participants(number) == participants
    unverified = world.repo.entries(number)[-1]
    assert unverified.kind is EntryKind.UNVERIFIED_IN
    assert unverified.data["from"] == STRANGER
    assert world.repo.state.inbound[7] == InboundMark("done", number, None)


async def test_a_bounce_never_opens_a_ticket(world):
    bounce = mail("mailer-daemon@example.net", inbound_id=3, bounce_status="5.1.1")
    with pytest.raises(InvalidRequest, match="bounce"):
        await world.receive(bounce, i.MailClass.BOUNCE)
    assert world.repo.state.tickets == {}
    assert world.repo.state.inbound == {}


@pytest.mark.parametrize("status", [Status.OPEN, Status.RESOLVED])
async def test_a_bounce_is_appended_to_its_ticket(world, status):
    number = await world.ticket_in(status)
    participants = world.repo.participants(number)
    bounce = mail("mailer-daemon@example.net", bounce_status="5.1.1", bounce_recipients=(MEMBER,))
    await world.receive(bounce, i.MailClass.BOUNCE, ticket=number)
    entry = world.repo.entries(number)[-1]
    assert entry.kind is EntryKind.BOUNCE
    assert entry.actor == "mail"
    assert entry.data["status"] == "5.1.1"
    assert entry.data["recipients"] == [MEMBER]
    assert world.repo.ticket(number).status is status
    assert world.repo.participants(number) == participants


# --- owner: take, give, untake ----------------------------------------------------------------


async def test_take_makes_me_owner_and_opens_a_new_ticket(world):
    number = await world.new_ticket()
    outcome = await world.op(i.Take(number))
    ticket = world.repo.ticket(number)
    assert ticket.owner == ANNA
    assert outcome.status is ticket.status is Status.OPEN
    owner, status = world.repo.entries(number)[-2:]
    assert (owner.kind, owner.actor, owner.data) == (
        EntryKind.OWNER,
        ANNA,
        {"from": None, "to": ANNA},
    )
    assert (status.kind, status.data) == (EntryKind.STATUS, {"from": "new", "to": "open"})
    assert ticket.next_alert_at is None


@pytest.mark.parametrize("status", [Status.OPEN, *REOPENABLE])
async def test_take_keeps_other_statuses(world, status):
    number = await world.ticket_in(status)
    await world.op(i.Take(number))
    assert world.repo.ticket(number).status is status
    assert world.repo.ticket(number).owner == ANNA


async def test_taking_my_own_ticket_again_is_said_and_records_nothing(world):
    number = await world.new_ticket()
    await world.op(i.Take(number))
    entries = len(world.repo.entries(number))
    with pytest.raises(InvalidRequest) as refused:
        await world.op(i.Take(number))
    assert (refused.value.code, refused.value.params) == ("already_yours", {"ticket": "suport#1"})
    assert len(world.repo.entries(number)) == entries


async def test_taking_someone_elses_ticket_records_whose_it_was(world):
    number = await world.new_ticket()
    await world.op(i.Give(number, PERE))
    await world.op(i.Take(number))
    assert world.repo.ticket(number).owner == ANNA
    assert world.repo.entries(number, "owner")[-1].data == {"from": PERE, "to": ANNA}


async def test_give_only_to_whom_the_operators_rule_allows(world):
    world.service.may_own = {ANNA}.__contains__
    number = await world.new_ticket()
    before = world.snapshot()
    with pytest.raises(InvalidRequest) as refused:
        await world.op(i.Give(number, PERE))
    assert (refused.value.code, refused.value.params) == ("owner_not_operator", {"owner": PERE})
    assert world.snapshot() == before
    await world.op(i.Give(number, ANNA))
    assert world.repo.ticket(number).owner == ANNA


async def test_give_assigns_someone_else_and_opens_a_new_ticket(world):
    number = await world.new_ticket()
    await world.op(i.Give(number, f" {PERE} "))
    assert world.repo.ticket(number).owner == PERE
    assert world.repo.ticket(number).status is Status.OPEN
    assert world.repo.entries(number, "owner")[-1].data == {"from": None, "to": PERE}


async def test_give_from_one_owner_to_another(world):
    number = await world.new_ticket()
    await world.op(i.Take(number))
    await world.op(i.Give(number, PERE))
    assert world.repo.entries(number, "owner")[-1].data == {"from": ANNA, "to": PERE}


async def test_give_to_nobody_or_to_the_same_owner_is_refused(world):
    number = await world.new_ticket()
    await world.op(i.Give(number, PERE))
    with pytest.raises(InvalidRequest):
        await world.op(i.Give(number, "  "))
    with pytest.raises(InvalidRequest, match="already belongs"):
        await world.op(i.Give(number, PERE))
    assert world.repo.ticket(number).owner == PERE


@pytest.mark.parametrize("status", [Status.OPEN, *REOPENABLE])
async def test_untake_leaves_no_owner_and_keeps_the_status(world, status):
    number = await world.ticket_in(status)
    await world.op(i.Take(number))
    await world.op(i.Untake(number))
    assert world.repo.ticket(number).owner is None
    assert world.repo.ticket(number).status is status
    assert world.repo.entries(number, "owner")[-1].data == {"from": ANNA, "to": None}


async def test_untake_without_owner_is_refused(world):
    number = await world.new_ticket()
    with pytest.raises(InvalidRequest, match="no owner"):
        await world.op(i.Untake(number))
    assert world.repo.ticket(number).status is Status.NEW


# --- reply, comment ---------------------------------------------------------------------------


async def test_reply_mails_the_requestor_and_cc_the_other_participants(world):
    number = await world.new_ticket(cc=(NEIGHBOUR, "Avi@Example.net"))
    world.repo.state.participants[number][OWN] = "operator"  # even if we ended up a participant
    chain = world.repo.message_ids(number)
    outcome = await world.op(i.Reply(number, "  Prova de reiniciar el router.\n"))
    [row] = world.repo.outbox(number)
    assert outcome.outbox == [row.id]
    assert (row.template, row.recipient) == ("reply", MEMBER)
    payload = row.payload
    assert payload["text"] == "Prova de reiniciar el router."
    assert payload["to"] == [MEMBER]
    assert payload["cc"] == ["avi@example.net", NEIGHBOUR]
    assert OWN not in payload["cc"]
    assert payload["in_reply_to"] == chain[-1]
    assert payload["references"] == chain
    assert payload["auto_submitted"] is False
    assert payload["message_id"] == world.ids.minted[-1]
    assert world.repo.message_ids(number) == [*chain, payload["message_id"]]
    mail_out = world.repo.entries(number, "mail_out")[-1]
    assert (mail_out.actor, mail_out.body) == (ANNA, "Prova de reiniciar el router.")


async def test_reply_threads_under_the_last_message_of_the_ticket(world):
    number = (await world.receive(mail(), acknowledge=True)).ticket
    later = mail()
    await world.receive(later, ticket=number)
    await world.op(i.Reply(number, "D'acord"))
    payload = world.repo.outbox(number)[-1].payload
    ack_id = world.repo.outbox(number)[0].payload["message_id"]
    assert payload["in_reply_to"] == later.message_id
    assert payload["references"][-2:] == [ack_id, later.message_id]


async def test_reply_references_are_capped(world):
    number = await world.new_ticket()
    for _ in range(MAX_REFERENCES + 5):
        await world.receive(mail(), ticket=number)
    chain = world.repo.message_ids(number)
    await world.op(i.Reply(number, "Hola"))
    references = world.repo.outbox(number)[-1].payload["references"]
    # The middle is trimmed: the thread's first mail, then the latest (RFC 5537 §3.4.4).
    assert references == [chain[0], *chain[-(MAX_REFERENCES - 1) :]]


async def test_reply_opens_a_new_ticket(world):
    number = await world.new_ticket()
    outcome = await world.op(i.Reply(number, "Hola"))
    assert outcome.status is world.repo.ticket(number).status is Status.OPEN


@pytest.mark.parametrize("status", REOPENABLE)
async def test_reply_keeps_other_statuses(world, status):
    number = await world.ticket_in(status)
    await world.op(i.Reply(number, "Hola"))
    assert world.repo.ticket(number).status is status


async def test_empty_reply_is_refused(world):
    number = await world.new_ticket()
    with pytest.raises(InvalidRequest):
        await world.op(i.Reply(number, " \n "))
    assert world.repo.outbox() == []


async def test_comment_is_recorded_and_never_mailed(world):
    number = await world.new_ticket()
    outcome = await world.op(i.Comment(number, " Trucar-la demà "))
    entry = world.repo.entries(number)[-1]
    assert (entry.kind, entry.actor, entry.body) == (EntryKind.COMMENT, ANNA, "Trucar-la demà")
    assert outcome.outbox == [] and world.repo.outbox() == []
    assert world.repo.ticket(number).status is Status.NEW


async def test_empty_comment_is_refused(world):
    number = await world.new_ticket()
    with pytest.raises(InvalidRequest):
        await world.op(i.Comment(number, ""))


# --- title, queue -----------------------------------------------------------------------------


async def test_set_title(world):
    number = await world.new_ticket()
    await world.op(i.SetTitle(number, "  Antena   de Can Roca caiguda "))
    assert world.repo.ticket(number).title == "Antena de Can Roca caiguda"
    assert world.repo.entries(number)[-1].data == {
        "from": "No em funciona internet",
        "to": "Antena de Can Roca caiguda",
    }
    assert world.repo.ticket(number).status is Status.NEW


@pytest.mark.parametrize(
    "title", ["", "   ", "No em funciona internet", " No em  funciona internet"]
)
async def test_empty_or_same_title_is_refused(world, title):
    number = await world.new_ticket()
    with pytest.raises(InvalidRequest):
        await world.op(i.SetTitle(number, title))
    assert world.repo.kinds(number) == ["created", "mail_in"]


async def test_move(world):
    number = await world.new_ticket()
    await world.op(i.Move(number, "Tresoreria"))
    assert world.repo.ticket(number).queue == "tresoreria"
    assert world.repo.entries(number)[-1].data == {"from": "suport", "to": "tresoreria"}
    assert world.repo.ticket(number).status is Status.NEW


async def test_move_to_an_unknown_queue_is_refused(world):
    number = await world.new_ticket()
    with pytest.raises(InvalidRequest, match="unknown queue") as error:
        await world.op(i.Move(number, "compres"))
    assert "tresoreria" in str(error.value)
    assert world.repo.ticket(number).queue == "suport"


async def test_move_to_the_same_queue_is_refused(world):
    number = await world.new_ticket()
    with pytest.raises(InvalidRequest, match="already in suport"):
        await world.op(i.Move(number, "suport"))


# --- explicit status --------------------------------------------------------------------------


async def test_resolving_queues_the_resolved_notice(world):
    number = await world.new_ticket()
    outcome = await world.op(i.SetStatus(number, Status.RESOLVED))
    [row] = world.repo.outbox(number)
    assert outcome.outbox == [row.id]
    assert (row.template, row.recipient, row.payload["to"]) == ("resolved", MEMBER, [MEMBER])
    assert row.payload["auto_submitted"] is True
    assert world.repo.ticket(number).status is Status.RESOLVED
    assert world.repo.entries(number, "status")[-1].data == {"from": "new", "to": "resolved"}


@pytest.mark.parametrize("status", [Status.OPEN, Status.STALLED, Status.REJECTED])
async def test_other_status_changes_queue_nothing(world, status):
    number = await world.new_ticket()
    outcome = await world.op(i.SetStatus(number, status))
    assert outcome.outbox == [] and world.repo.outbox() == []
    assert outcome.status is world.repo.ticket(number).status is status
    expected = world.clock.now() + SETTINGS.stalled_every if status is Status.STALLED else None
    assert world.repo.ticket(number).next_alert_at == expected


@pytest.mark.parametrize("status", [Status.OPEN, *REOPENABLE])
async def test_back_to_new_is_refused(world, status):
    number = await world.ticket_in(status)
    with pytest.raises(InvalidRequest, match="new"):
        await world.op(i.SetStatus(number, Status.NEW))
    assert world.repo.ticket(number).status is status


@pytest.mark.parametrize("status", [Status.OPEN, *REOPENABLE])
async def test_same_status_is_refused(world, status):
    number = await world.ticket_in(status)
    outbox = len(world.repo.outbox())
    with pytest.raises(InvalidRequest, match="already"):
        await world.op(i.SetStatus(number, status))
    assert len(world.repo.outbox()) == outbox


# --- accepting an unverified sender -----------------------------------------------------------


async def test_accept_unverified_turns_the_mail_into_correspondence(world):
    number = await world.ticket_in(Status.RESOLVED)
    world.clock.advance(days=1)
    await world.receive(mail(STRANGER), i.MailClass.UNVERIFIED, ticket=number)
    assert world.repo.ticket(number).status is Status.RESOLVED
    unverified = world.repo.entries(number, "unverified_in")[-1]
    outcome = await world.op(i.AcceptUnverified(number))
    accepted = next(e for e in world.repo.entries(number) if e.id == unverified.id)
    assert accepted.kind is EntryKind.MAIL_IN
    assert accepted.data["accepted_by"] == ANNA
    assert accepted.data["from"] == STRANGER
    assert world.repo.entries(number, "unverified_in") == []
    assert STRANGER in world.repo.participants(number)
    assert world.repo.entries(number, "accepted")[-1].data == {
        "entry": unverified.id,
        "from": STRANGER,
    }
    assert outcome.status is world.repo.ticket(number).status is Status.OPEN
    assert world.repo.ticket(number).last_member_mail_at == world.clock.now()


async def test_accept_takes_the_last_unverified_mail(world):
    number = await world.new_ticket()
    await world.receive(mail(STRANGER), i.MailClass.UNVERIFIED, ticket=number)
    await world.receive(mail(NEIGHBOUR), i.MailClass.UNVERIFIED, ticket=number)
    await world.op(i.AcceptUnverified(number))
    [still_unverified] = world.repo.entries(number, "unverified_in")
    assert still_unverified.data["from"] == STRANGER
    assert NEIGHBOUR in world.repo.participants(number)
    assert STRANGER not in world.repo.participants(number)


async def test_accept_without_unverified_mail_is_refused(world):
    number = await world.new_ticket()
    with pytest.raises(InvalidRequest, match=f"suport#{number}"):
        await world.op(i.AcceptUnverified(number))
    assert world.repo.kinds(number) == ["created", "mail_in"]


# --- opening a ticket on a member's behalf ----------------------------------------------------


async def test_open_ticket_on_behalf(world):
    intent = i.OpenTicket(" Marta@Example.NET ", "Trucada: no va", "Ha trucat a les 10")
    outcome = await world.op(intent)
    ticket = world.repo.ticket(outcome.ticket)
    assert outcome.created and ticket.status is Status.NEW
    assert (ticket.requestor, ticket.title, ticket.queue) == (MEMBER, "Trucada: no va", "suport")
    assert world.repo.participants(ticket.number) == {MEMBER}
    assert world.repo.kinds(ticket.number) == ["created", "comment"]
    assert world.repo.entries(ticket.number)[-1].actor == ANNA
    assert world.repo.outbox() == []


async def test_open_ticket_without_text_adds_no_comment(world):
    outcome = await world.op(i.OpenTicket(MEMBER, "Alta", queue="tresoreria"))
    assert world.repo.kinds(outcome.ticket) == ["created"]
    assert world.repo.ticket(outcome.ticket).queue == "tresoreria"


@pytest.mark.parametrize(
    "address",
    [
        "",
        "marta",
        "marta@",
        "@example.net",
        "marta@localhost",
        "marta @example.net",
        "<marta@example.net>",
        "a@example.net, b@example.net",
    ],
)
async def test_open_ticket_with_a_bad_address_is_refused(world, address):
    with pytest.raises(InvalidRequest, match="not a usable email address") as refused:
        await world.op(i.OpenTicket(address, "Trucada"))
    assert refused.value.code == "bad_address" and refused.value.params["reason"]
    assert world.repo.state.tickets == {}


# --- permissions, unknown tickets -------------------------------------------------------------


@pytest.mark.parametrize("actor", [Actor.member(MEMBER), Actor.system()])
async def test_only_operators_act_on_tickets(world, actor):
    number = await world.new_ticket()
    before = world.snapshot()
    for intent in (
        i.Take(number),
        i.Reply(number, "x"),
        i.SetStatus(number, Status.RESOLVED),
        i.OpenTicket(MEMBER, "x"),
    ):
        with pytest.raises(NotAllowed):
            await world.op(intent, actor)
    assert world.repo.state == before


async def test_an_operator_cannot_inject_mail(world):
    with pytest.raises(NotAllowed):
        await world.op(i.ReceiveMail(mail(), i.MailClass.MEMBER))
    number = await world.new_ticket()
    with pytest.raises(NotAllowed):
        await world.op(i.RecordDeliveryFailure(number, 1, MEMBER, "550"))
    assert list(world.repo.state.tickets) == [number]


async def test_a_delivery_failure_is_recorded(world):
    number = await world.new_ticket()
    await world.op(i.RecordDeliveryFailure(number, 5, MEMBER, "550 no such user"), MAIL_SYSTEM)
    entry = world.repo.entries(number)[-1]
    assert (entry.kind, entry.body) == (EntryKind.DELIVERY_FAILED, "550 no such user")
    assert entry.data == {"outbox_id": 5, "recipient": MEMBER}
    assert world.repo.ticket(number).status is Status.NEW


async def test_a_give_up_reported_twice_is_recorded_once_a_skipped_cc_each_time(world):
    number = await world.new_ticket()
    for _ in range(2):
        await world.op(i.RecordDeliveryFailure(number, 5, MEMBER, "550"), MAIL_SYSTEM)
        await world.op(
            i.RecordDeliveryFailure(number, 5, "cc@example.org", "bad", skipped=True), MAIL_SYSTEM
        )
    kinds = [(e.kind, e.data.get("skipped", False)) for e in world.repo.entries(number)]
    assert kinds.count((EntryKind.DELIVERY_FAILED, False)) == 1
    assert kinds.count((EntryKind.DELIVERY_FAILED, True)) == 2


async def test_a_chat_post_given_up_is_recorded_as_such(world):
    number = await world.new_ticket()
    refused = "the homeserver refused the message: event too large (M_TOO_LARGE)"
    failure = i.RecordDeliveryFailure(number, 6, "!room:hs", refused, channel="chat")
    await world.op(failure, Actor.system("chat"))
    entry = world.repo.entries(number)[-1]
    assert (entry.kind, entry.body) == (EntryKind.DELIVERY_FAILED, refused)
    assert entry.data == {"outbox_id": 6, "recipient": "!room:hs", "channel": "chat"}


async def test_a_redaction_given_up_is_recorded_as_such(world):
    number = await world.new_ticket()
    refused = "the homeserver refused to redact 2 of 2 posts: no (M_FORBIDDEN)"
    failure = i.RecordDeliveryFailure(
        number, 7, "!room:hs", refused, channel="chat", redaction=True
    )
    await world.op(failure, Actor.system("chat"))
    entry = world.repo.entries(number)[-1]
    assert (entry.kind, entry.body) == (EntryKind.DELIVERY_FAILED, refused)
    assert entry.data == {
        "outbox_id": 7,
        "recipient": "!room:hs",
        "channel": "chat",
        "redaction": True,
    }


ADMIN = Actor.system("administrator")


def outbox_state(world: World, item: int) -> str:
    """The committed state of one outbox row (each transaction works on a copy)."""
    [row] = [r for r in world.repo.state.outbox if r.id == item]
    return row.state


def give_up(world: World, item: int) -> None:
    """What the outbox worker does to an item it gives up (the fakes deliver nothing)."""
    [row] = [r for r in world.repo.state.outbox if r.id == item]
    row.state = "failed"


async def test_an_item_given_up_is_sent_again_and_noted_on_its_ticket(world):
    number = await world.new_ticket()
    [item] = (await world.op(i.Reply(number, "Hola"))).outbox
    give_up(world, item)
    await world.op(i.RecordDeliveryFailure(number, item, MEMBER, "550"), MAIL_SYSTEM)
    status = world.repo.ticket(number).status

    with pytest.raises(NotAllowed):
        await world.op(i.RetryDelivery(item))  # an operator: only exobot's CLI does it
    assert outbox_state(world, item) == "failed"
    retried = await world.op(i.RetryDelivery(item), ADMIN)
    assert outbox_state(world, item) == "pending" and retried.outbox == [item]
    entry = world.repo.entries(number)[-1]
    assert (entry.kind, entry.actor) == (EntryKind.DELIVERY_RETRIED, "administrator")
    assert entry.data == {"outbox_id": item, "channel": "mail"}
    assert world.repo.ticket(number).status is status  # nothing else changes
    with pytest.raises(InvalidRequest):  # pending now: not given up
        await world.op(i.RetryDelivery(item), ADMIN)
    with pytest.raises(InvalidRequest):
        await world.op(i.RetryDelivery(999), ADMIN)
    assert world.repo.entries(number)[-1] == entry


async def test_a_redaction_sent_again_is_noted_as_such(world):
    number = await world.new_ticket()

    async def work(uow) -> int:  # noqa: ANN001
        return await uow.queue_outbox("chat", number, {"type": "redact", "event_ids": []})

    item = await world.repo.run(work, now=world.clock.now())
    give_up(world, item)
    await world.op(i.RetryDelivery(item), ADMIN)
    entry = world.repo.entries(number)[-1]
    assert entry.kind is EntryKind.DELIVERY_RETRIED
    assert entry.data == {"outbox_id": item, "channel": "chat", "redaction": True}


async def test_an_item_of_no_ticket_is_sent_again_without_a_note(world):
    number = await world.new_ticket()
    before = world.repo.entries(number)

    async def work(uow) -> int:  # noqa: ANN001
        return await uow.queue_outbox("chat", None, {"type": "digest"})

    item = await world.repo.run(work, now=world.clock.now())
    give_up(world, item)
    retried = await world.op(i.RetryDelivery(item), ADMIN)
    assert (retried.ticket, retried.outbox) == (None, [item])
    assert outbox_state(world, item) == "pending"
    assert world.repo.entries(number) == before


UNKNOWN_TICKET_INTENTS = [
    i.Take(99),
    i.Give(99, PERE),
    i.Untake(99),
    i.Reply(99, "Hola"),
    i.Comment(99, "nota"),
    i.SetTitle(99, "títol"),
    i.Move(99, "tresoreria"),
    i.SetStatus(99, Status.RESOLVED),
    i.AcceptUnverified(99),
]


@pytest.mark.parametrize("intent", UNKNOWN_TICKET_INTENTS, ids=lambda x: type(x).__name__)
async def test_unknown_ticket(world, intent):
    await world.new_ticket()
    with pytest.raises(TicketNotFound, match="suport#99"):
        await world.op(intent)


@pytest.mark.parametrize("mail_class", list(i.MailClass))
async def test_mail_to_an_unknown_ticket(world, mail_class):
    with pytest.raises(TicketNotFound, match="suport#99"):
        await world.receive(mail(inbound_id=1), mail_class, ticket=99)
    assert world.repo.state.inbound == {}


# --- timestamps -------------------------------------------------------------------------------


async def test_every_change_updates_updated_at_only(world):
    number = await world.new_ticket()
    created = world.clock.now()
    world.clock.advance(minutes=30)
    await world.op(i.Comment(number, "nota"))
    ticket = world.repo.ticket(number)
    assert (ticket.created_at, ticket.updated_at) == (created, world.clock.now())
    assert world.repo.entries(number)[-1].created_at == world.clock.now()


# --- atomicity and events ---------------------------------------------------------------------


@pytest.mark.parametrize("failing", ["queue_outbox", "record_message", "mark_inbound"])
async def test_a_failing_new_mail_leaves_no_trace(world, failing):
    await world.new_ticket()
    before = world.snapshot()
    events = len(world.events)
    world.repo.fail_on.add(failing)
    with pytest.raises(InjectedFailure):
        await world.receive(mail(cc=(NEIGHBOUR,), inbound_id=9), acknowledge=True)
    assert world.repo.state == before
    assert len(world.events) == events
    world.repo.fail_on.clear()
    assert await world.new_ticket() > 1  # numbers keep increasing after the failure


async def test_a_failing_change_leaves_no_trace_and_emits_nothing(world):
    number = await world.new_ticket()
    before = world.snapshot()
    queued: list[OutboxQueued] = []
    world.bus.subscribe(OutboxQueued, queued.append)
    world.events.clear()
    world.repo.fail_on.add("update_ticket")  # the very last write of every apply
    with pytest.raises(InjectedFailure):
        await world.op(i.SetStatus(number, Status.RESOLVED))
    assert world.repo.state == before
    assert world.events == [] and queued == []
    assert world.repo.rollbacks == 1


async def test_a_refused_change_emits_nothing(world):
    number = await world.new_ticket()
    world.events.clear()
    with pytest.raises(InvalidRequest):
        await world.op(i.Move(number, "compres"))
    assert world.events == []


async def test_events_are_emitted_after_commit(world):
    number = await world.new_ticket()
    seen: list[tuple[str, str | None, int]] = []

    def check(event: TicketEvent) -> None:
        committed = world.repo.ticket(event.ticket)  # what other transactions would see
        seen.append((event.kind.value, committed.owner, world.repo.commits))

    world.bus.subscribe(TicketEvent, check)
    commits = world.repo.commits
    await world.op(i.Take(number))
    assert seen == [("owner", ANNA, commits + 1), ("status", ANNA, commits + 1)]


async def test_events_describe_the_change(world):
    world.events.clear()
    await world.receive(mail())
    await world.op(i.Take(1))
    assert [(e.ticket, e.kind, e.actor) for e in world.events] == [
        (1, EntryKind.CREATED, MEMBER),
        (1, EntryKind.MAIL_IN, MEMBER),
        (1, EntryKind.OWNER, ANNA),
        (1, EntryKind.STATUS, ANNA),
    ]
    assert world.events[-1].data == {"from": "new", "to": "open"}


async def test_queued_mail_emits_outbox_queued(world):
    queued: list[OutboxQueued] = []
    world.bus.subscribe(OutboxQueued, queued.append)
    await world.receive(mail(), acknowledge=False)
    assert queued == []
    await world.receive(mail(), acknowledge=True)
    assert queued == [OutboxQueued("mail")]


async def test_a_failing_listener_does_not_undo_the_change(world):
    number = await world.new_ticket()

    def broken(event: TicketEvent) -> None:
        raise RuntimeError("plugin bug")

    world.bus.subscribe(TicketEvent, broken)
    outcome = await world.op(i.Take(number))
    assert outcome.status is Status.OPEN
    assert world.repo.ticket(number).owner == ANNA
