"""What the service queues for the member's mails: the subject they opened the ticket with
(never a volunteer's rename), a title without the reply prefixes of their client, and "reply
and resolve" as one change that queues one mail."""

from __future__ import annotations

import pytest
from fakes import InjectedFailure
from test_service import MEMBER, OPERATOR, World, mail

from exobot.core import intents as i
from exobot.core.model import EntryKind, Status
from exobot.core.service import PLACEHOLDER_TITLE, AlreadyHandled

RENAME = "Router LOS vermell, veí diu que no paga"


@pytest.fixture
def world() -> World:
    return World()


async def test_a_rename_is_the_volunteers_and_the_member_keeps_their_subject(world):
    number = (await world.receive(mail(subject="No em funciona internet"), acknowledge=True)).ticket
    await world.op(i.SetTitle(number, RENAME))
    await world.op(i.SetTitle(number, "Router LOS vermell"))
    await world.op(i.Reply(number, "Prova de reiniciar-lo."))
    await world.op(i.Notify(number, "Tràmit registrat."))
    await world.op(i.SetStatus(number, Status.RESOLVED))
    assert world.repo.ticket(number).title == "Router LOS vermell"  # the volunteers' title
    rows = world.repo.outbox(number)
    assert [r.payload["template"] for r in rows] == ["ack", "reply", "reply", "resolved"]
    assert {r.payload["subject"] for r in rows} == {"No em funciona internet"}


async def test_a_ticket_opened_by_an_operator_keeps_the_title_it_was_opened_with(world):
    number = (await world.op(i.OpenTicket(MEMBER, "Alta de fibra", "Trucada"))).ticket
    await world.op(i.SetTitle(number, "Alta fibra: falta l'IBAN"))
    await world.op(i.Reply(number, "Ens cal el número de compte per un altre canal."))
    [reply] = world.repo.outbox(number)
    assert reply.payload["subject"] == "Alta de fibra"


async def test_reply_prefixes_are_not_part_of_the_title(world):
    subject = "RE: RE: FW: Alta de servei [Ticket#555]"
    number = (await world.receive(mail(subject=subject), acknowledge=True)).ticket
    assert world.repo.ticket(number).title == "Alta de servei [Ticket#555]"
    [ack] = world.repo.outbox(number)
    assert ack.payload["subject"] == "Alta de servei [Ticket#555]"
    # The history keeps the mail as it came.
    [received] = world.repo.entries(number, EntryKind.MAIL_IN.value)
    assert received.data["subject"] == subject


@pytest.mark.parametrize("subject", ["", "   ", "RE: Fwd:"])
async def test_no_subject_is_no_subject_for_the_member(world, subject):
    number = (await world.receive(mail(subject=subject), acknowledge=True)).ticket
    assert world.repo.ticket(number).title == PLACEHOLDER_TITLE  # volunteers see a placeholder
    await world.op(i.SetTitle(number, "Sense connexió"))
    await world.op(i.Reply(number, "Hola"))
    # Said in each mail's own language when it is built; the service gives none.
    assert [r.payload["subject"] for r in world.repo.outbox(number)] == ["", ""]


# --- reply and resolve --------------------------------------------------------------------


@pytest.mark.parametrize("status", [Status.NEW, Status.OPEN, Status.STALLED])
async def test_reply_and_resolve_queues_one_mail_and_resolves(world, status):
    number = await world.ticket_in(status)
    before = len(world.repo.outbox(number))
    outcome = await world.op(i.Reply(number, "Fet: ja teniu el servei.", resolve=True))
    assert world.repo.ticket(number).status is Status.RESOLVED
    assert outcome.status is Status.RESOLVED
    [mail_row] = world.repo.outbox(number)[before:]
    assert mail_row.payload["template"] == "reply"
    assert mail_row.payload["resolved"] is True
    assert mail_row.payload["text"] == "Fet: ja teniu el servei."
    assert outcome.outbox == [mail_row.id]
    # The reply first, then the change of status: one entry, straight to resolved.
    kinds = world.repo.kinds(number)
    assert kinds[-2:] == ["mail_out", "status"]
    last = world.repo.entries(number, EntryKind.STATUS.value)[-1]
    assert last.data == {"from": status.value, "to": "resolved"}


async def test_a_reply_without_resolve_says_nothing_of_it(world):
    number = await world.new_ticket()
    await world.op(i.Reply(number, "Hola"))
    [reply] = world.repo.outbox(number)
    assert "resolved" not in reply.payload
    assert world.repo.ticket(number).status is Status.OPEN


async def test_reply_and_resolve_on_a_resolved_ticket_still_replies(world):
    # Someone resolved it while the form was open: the reply goes, saying it is resolved.
    number = await world.ticket_in(Status.RESOLVED)
    statuses = len(world.repo.entries(number, EntryKind.STATUS.value))
    before = len(world.repo.outbox(number))
    await world.op(i.Reply(number, "Ja està.", resolve=True))
    [reply] = world.repo.outbox(number)[before:]
    assert reply.payload["resolved"] is True
    assert len(world.repo.entries(number, EntryKind.STATUS.value)) == statuses
    assert world.repo.ticket(number).status is Status.RESOLVED


async def test_reply_and_resolve_happens_once_per_key(world):
    number = await world.new_ticket()
    intent = i.Reply(number, "Fet.", resolve=True)
    await world.service.apply(OPERATOR, intent, i.Origin("form:1"))
    with pytest.raises(AlreadyHandled):
        await world.service.apply(OPERATOR, intent, i.Origin("form:1"))
    assert len(world.repo.outbox(number)) == 1
    assert len(world.repo.entries(number, EntryKind.STATUS.value)) == 1


@pytest.mark.parametrize("failing", ["queue_outbox", "add_entry", "update_ticket"])
async def test_reply_and_resolve_is_all_or_nothing(world, failing):
    number = await world.new_ticket()
    before = world.snapshot()
    world.events.clear()
    world.repo.fail_on.add(failing)
    with pytest.raises(InjectedFailure):
        await world.op(i.Reply(number, "Fet.", resolve=True))
    assert world.repo.state == before  # neither the mail nor the status change
    assert world.events == []
