"""TicketService: Notify (a notice to the requestor only, status and owner untouched) and
ClearFlag (an operator clears a plugin's flag), and active_flags over a history."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fakes import FakeClock, FakeMessageIds, FakeRepository
from test_service import ANNA, MEMBER, NEIGHBOUR, OPERATOR, SETTINGS, World, mail

from exobot.core import intents as i
from exobot.core.flags import ActiveFlag, active_flags
from exobot.core.hooks import NewMail
from exobot.core.model import Actor, Entry, EntryKind, Status
from exobot.core.service import AlreadyHandled, InvalidRequest, NotAllowed, TicketService

PLUGIN = Actor.system("procedures")


@pytest.fixture
def world() -> World:
    return World()


async def flagged_world(*flags: tuple[str, str]) -> tuple[World, int]:
    """A world whose mail hook flags every new ticket with `flags` (code, note)."""
    world = World()

    async def hook(new: NewMail) -> None:
        if new.created:
            new.source = "members"  # what the plugin manager's scoped view sets
            for code, note in flags:
                new.flag(code, note)

    world.service.mail_hook = hook
    number = await world.new_ticket(cc=(NEIGHBOUR,))
    return world, number


# --- Notify ------------------------------------------------------------------------------


@pytest.mark.parametrize("actor", [OPERATOR, PLUGIN], ids=["operator", "system"])
@pytest.mark.parametrize("status", [Status.NEW, Status.STALLED, Status.RESOLVED])
async def test_notify_mails_the_requestor_only_and_changes_nothing_else(world, actor, status):
    number = await world.ticket_in(status, cc=(NEIGHBOUR,))
    chain = world.repo.message_ids(number)
    before = world.repo.ticket(number)
    outcome = await world.service.apply(actor, i.Notify(number, "  El tràmit P-3 està fet.\n"))
    [row] = [r for r in world.repo.outbox(number) if r.template == "reply"]
    assert outcome.outbox == [row.id]
    assert (row.template, row.recipient) == ("reply", MEMBER)
    payload = row.payload
    assert payload["to"] == [MEMBER] and payload["cc"] == []  # no copy to the neighbour
    assert payload["text"] == "El tràmit P-3 està fet."
    assert payload["reference"] == f"suport#{number}"
    assert payload["in_reply_to"] == chain[0]  # the member's mail, not our resolved notice
    # Up to the parent: our resolved notice, sent after it, is no ancestor of it.
    assert payload["references"] == chain[:1]
    assert payload["auto_submitted"] is (actor is PLUGIN)
    after = world.repo.ticket(number)
    assert (after.status, after.owner) == (before.status, before.owner) == (status, None)
    [entry] = [e for e in world.repo.entries(number, "mail_out") if e.data.get("notice")]
    assert (entry.actor, entry.body) == (actor.id, "El tràmit P-3 està fet.")
    assert [e.kind for e in outcome.entries] == [EntryKind.MAIL_OUT]


async def test_notify_is_refused_to_members(world):
    number = await world.new_ticket()
    with pytest.raises(NotAllowed):
        await world.service.apply(Actor.member(MEMBER), i.Notify(number, "Hola"))
    assert world.repo.outbox(number) == []


async def test_notify_without_text_is_refused(world):
    number = await world.new_ticket()
    with pytest.raises(InvalidRequest) as refused:
        await world.op(i.Notify(number, " \n"))
    assert refused.value.code == "missing_text"


async def test_notify_to_an_unusable_requestor_is_refused(world):
    number = await world.new_ticket()
    world.repo.state.tickets[number].requestor = "marta@localhost"  # stored by an older version
    with pytest.raises(InvalidRequest) as refused:
        await world.service.apply(PLUGIN, i.Notify(number, "Hola"))
    assert refused.value.code == "unusable_requestor"
    assert refused.value.params["address"] == "marta@localhost"
    assert world.repo.outbox(number) == []
    assert world.repo.entries(number, "mail_out") == []


async def test_notify_with_an_origin_key_mails_once(world):
    number = await world.new_ticket()
    origin = i.Origin(key="procedures:7:notify")
    await world.service.apply(PLUGIN, i.Notify(number, "Fet"), origin)
    with pytest.raises(AlreadyHandled) as again:
        await world.service.apply(PLUGIN, i.Notify(number, "Fet"), origin)
    assert again.value.params["ticket"] == number
    assert len(world.repo.outbox(number)) == 1


async def test_notify_is_announced_in_chat():
    repo = FakeRepository()
    service = TicketService(
        repo,
        FakeMessageIds(),
        SETTINGS.__class__(**{**SETTINGS.__dict__, "announce": True}),
        clock=FakeClock(),
    )
    number = (
        await service.apply(Actor.member(MEMBER), i.ReceiveMail(mail(), i.MailClass.MEMBER))
    ).ticket
    await service.apply(PLUGIN, i.Notify(number, "Fet"))
    chat = [r for r in repo.outbox(number) if r.kind == "chat" and "entries" in r.payload]
    [notice] = repo.entries(number, "mail_out")
    assert chat[-1].payload["entries"] == [notice.id]


# --- flags -------------------------------------------------------------------------------


async def test_a_hook_flag_is_active_until_an_operator_clears_it():
    world, number = await flagged_world(("non-member", "Not a member's address"))
    flags = active_flags(world.repo.entries(number, "flag"))
    assert [(f.code, f.note, f.source) for f in flags] == [
        ("non-member", "Not a member's address", "members")
    ]
    world.clock.advance(timedelta(minutes=5))
    outcome = await world.op(i.ClearFlag(number, "non-member", "  member 1234 \n"))
    [entry] = outcome.entries
    assert entry.kind is EntryKind.FLAG
    assert entry.data == {"code": "non-member", "source": ANNA, "cleared": True}
    assert entry.body == "member 1234"
    assert active_flags(world.repo.entries(number, "flag")) == []
    ticket = world.repo.ticket(number)
    assert (ticket.status, ticket.owner) == (Status.NEW, None)


async def test_clearing_a_flag_that_is_not_active_is_refused():
    world, number = await flagged_world(("non-member", ""))
    with pytest.raises(InvalidRequest) as refused:
        await world.op(i.ClearFlag(number, "other"))
    assert (refused.value.code, refused.value.params["flag"]) == ("no_flag", "other")
    await world.op(i.ClearFlag(number, "non-member"))
    with pytest.raises(InvalidRequest) as again:
        await world.op(i.ClearFlag(number, "non-member"))
    assert again.value.code == "no_flag"
    assert len(world.repo.entries(number, "flag")) == 2


async def test_clear_flag_is_for_operators_only():
    world, number = await flagged_world(("non-member", ""))
    for actor in (Actor.member(MEMBER), PLUGIN):
        with pytest.raises(NotAllowed):
            await world.service.apply(actor, i.ClearFlag(number, "non-member"))
    assert len(active_flags(world.repo.entries(number, "flag"))) == 1


def _flag(code: str, at: int, note: str = "", *, cleared: bool = False) -> Entry:
    data = {"code": code, "source": "p"} | ({"cleared": True} if cleared else {})
    moment = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(hours=at)
    return Entry(1, EntryKind.FLAG, "x", moment, body=note or None, data=data)


def test_active_flags_follows_sets_and_clears_in_order():
    comment = Entry(1, EntryKind.COMMENT, "x", datetime(2026, 1, 1, tzinfo=UTC), body="hi")
    entries = [
        _flag("a", 0, "first"),
        comment,
        _flag("b", 1),
        _flag("a", 2, "again"),  # set again while active: first time kept, newer note
        _flag("b", 3, cleared=True),
        _flag("c", 4, "c note"),
        _flag("b", 5, "back"),
    ]
    start = datetime(2026, 1, 1, tzinfo=UTC)
    assert active_flags(entries) == [
        ActiveFlag("a", "again", "p", start),
        ActiveFlag("c", "c note", "p", start + timedelta(hours=4)),
        ActiveFlag("b", "back", "p", start + timedelta(hours=5)),
    ]
    assert active_flags([]) == []
