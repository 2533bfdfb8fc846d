"""TicketService: chat announcements, idempotency keys, alerts and error codes."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from fakes import FakeClock, FakeMessageIds, FakeRepository
from test_service import ANNA, MEMBER, OPERATOR, SETTINGS, mail

from exobot.core import intents as i
from exobot.core.model import Actor, EntryKind, Status
from exobot.core.service import (
    CHAT,
    ROOT_EDIT,
    AlreadyHandled,
    InvalidRequest,
    NotAllowed,
    TicketNotFound,
    TicketService,
)

SYSTEM = Actor.system("alerts")


class ChatWorld:
    """A service that announces changes in chat, on in-memory fakes."""

    def __init__(self, **settings) -> None:
        self.repo = FakeRepository()
        self.clock = FakeClock()
        self.service = TicketService(
            self.repo,
            FakeMessageIds(),
            replace(SETTINGS, **({"announce": True} | settings)),
            clock=self.clock,
        )

    async def new_ticket(self) -> int:
        intent = i.ReceiveMail(mail(), i.MailClass.MEMBER, acknowledge=True)
        return (await self.service.apply(Actor.member(MEMBER), intent)).ticket

    def posts(self, number: int | None = None):
        """The ticket's chat posts (not the root edits queued for later)."""
        return [
            row
            for row in self.repo.outbox(number)
            if row.kind == CHAT and row.payload.get("type") != ROOT_EDIT
        ]

    def root_edits(self, number: int | None = None):
        """The rows that will edit the ticket's root message."""
        return [
            row
            for row in self.repo.outbox(number)
            if row.kind == CHAT and row.payload.get("type") == ROOT_EDIT
        ]


@pytest.fixture
def world() -> ChatWorld:
    return ChatWorld()


async def test_a_new_ticket_queues_one_post_with_all_its_entries(world):
    number = await world.new_ticket()
    [post] = world.posts(number)
    entries = world.repo.entries(number)
    assert post.payload == {
        "type": "ticket",
        "entries": [e.id for e in entries],
        "created": True,
        "origin": None,
    }
    assert [e.kind for e in entries] == [EntryKind.CREATED, EntryKind.MAIL_IN, EntryKind.MAIL_OUT]


async def test_each_change_queues_one_post_carrying_the_origin(world):
    number = await world.new_ticket()
    origin = i.Origin(key="matrix:$e1", reply={"room": "!r:x", "event": "$e1"})
    await world.service.apply(OPERATOR, i.Take(number), origin)
    post = world.posts(number)[-1]
    owner, status = world.repo.entries(number)[-2:]
    assert (owner.kind, status.kind) == (EntryKind.OWNER, EntryKind.STATUS)
    assert post.payload == {
        "type": "ticket",
        "entries": [owner.id, status.id],
        "created": False,
        "origin": {"room": "!r:x", "event": "$e1"},
    }


async def test_without_announcements_no_chat_rows_are_queued():
    world = ChatWorld(announce=False)
    number = await world.new_ticket()
    await world.service.apply(OPERATOR, i.Take(number))
    assert world.posts() == []


async def test_a_refused_change_queues_nothing(world):
    number = await world.new_ticket()
    before = len(world.posts())
    with pytest.raises(InvalidRequest):
        await world.service.apply(OPERATOR, i.Comment(number, "   "))
    assert len(world.posts()) == before


async def test_an_origin_key_takes_effect_once(world):
    number = await world.new_ticket()
    origin = i.Origin(key="matrix:$same")
    await world.service.apply(OPERATOR, i.Comment(number, "primer"), origin)
    with pytest.raises(AlreadyHandled):
        await world.service.apply(OPERATOR, i.Comment(number, "primer"), origin)
    assert [e.body for e in world.repo.entries(number, "comment")] == ["primer"]


async def test_a_retried_key_names_the_ticket_the_first_request_opened(world):
    origin = i.Origin(key="web:form-1")
    opened = await world.service.apply(
        OPERATOR, i.OpenTicket("pere@example.net", "Trucada"), origin
    )
    with pytest.raises(AlreadyHandled) as again:
        await world.service.apply(OPERATOR, i.OpenTicket("pere@example.net", "Trucada"), origin)
    assert again.value.params["ticket"] == opened.ticket
    assert opened.ticket + 1 not in world.repo.state.tickets


async def test_a_failed_change_does_not_burn_its_key(world):
    origin = i.Origin(key="matrix:$retry")
    with pytest.raises(TicketNotFound):
        await world.service.apply(OPERATOR, i.Take(999), origin)
    number = await world.new_ticket()
    await world.service.apply(OPERATOR, i.Take(number), origin)
    assert world.repo.ticket(number).owner == ANNA


async def test_a_new_ticket_alerts_when_due_and_then_repeats(world):
    number = await world.new_ticket()
    assert world.repo.ticket(number).next_alert_at == world.clock.now() + timedelta(hours=4)
    outcome = await world.service.apply(SYSTEM, i.RaiseAlert(number))
    assert outcome.entries == []  # not due yet
    world.clock.advance(hours=4, minutes=1)
    await world.service.apply(SYSTEM, i.RaiseAlert(number))
    [alert] = world.repo.entries(number, "alert")
    assert alert.data["reason"] == "new"
    assert world.repo.ticket(number).next_alert_at == world.clock.now() + SETTINGS.repeat_every
    assert world.repo.ticket(number).status is Status.NEW
    assert world.posts(number)[-1].payload["entries"] == [alert.id]
    # Asked again right away (a second sweep, a restart): nothing more.
    await world.service.apply(SYSTEM, i.RaiseAlert(number))
    assert len(world.repo.entries(number, "alert")) == 1


async def test_no_alert_once_the_ticket_is_taken(world):
    number = await world.new_ticket()
    await world.service.apply(OPERATOR, i.Take(number))
    assert world.repo.ticket(number).next_alert_at is None
    world.clock.advance(days=2)
    outcome = await world.service.apply(SYSTEM, i.RaiseAlert(number))
    assert outcome.entries == [] and world.repo.entries(number, "alert") == []


async def test_a_stalled_ticket_is_reminded_every_stalled_every(world):
    number = await world.new_ticket()
    await world.service.apply(OPERATOR, i.SetStatus(number, Status.STALLED))
    stalled_at = world.clock.now()
    assert world.repo.ticket(number).next_alert_at == stalled_at + timedelta(days=7)
    world.clock.advance(days=7)
    await world.service.apply(SYSTEM, i.RaiseAlert(number))
    [alert] = world.repo.entries(number, "alert")
    assert alert.data == {"reason": "stalled", "since": stalled_at.isoformat()}
    assert world.repo.ticket(number).next_alert_at == world.clock.now() + timedelta(days=7)
    await world.service.apply(OPERATOR, i.SetStatus(number, Status.OPEN))
    assert world.repo.ticket(number).next_alert_at is None


async def test_without_stalled_reminders_stalling_plans_nothing():
    world = ChatWorld(stalled_every=None)
    number = await world.new_ticket()
    await world.service.apply(OPERATOR, i.SetStatus(number, Status.STALLED))
    assert world.repo.ticket(number).next_alert_at is None


async def test_only_the_system_raises_alerts(world):
    number = await world.new_ticket()
    with pytest.raises(NotAllowed):
        await world.service.apply(OPERATOR, i.RaiseAlert(number))


@pytest.mark.parametrize(
    ("intent", "code", "params"),
    [
        (lambda n: i.Take(999), "not_found", {"ticket": "suport#999"}),
        (lambda n: i.Untake(n), "already_unowned", {"ticket": "suport#1"}),
        (lambda n: i.Reply(n, " "), "missing_text", {}),
        (lambda n: i.SetTitle(n, ""), "missing_title", {}),
        (lambda n: i.Move(n, "nowhere"), "unknown_queue", {"queue": "nowhere"}),
        (lambda n: i.Move(n, "suport"), "same_queue", {"ticket": "suport#1", "queue": "suport"}),
        (lambda n: i.SetStatus(n, Status.NEW), "back_to_new", {"ticket": "suport#1"}),
        (lambda n: i.AcceptUnverified(n), "no_unverified", {"ticket": "suport#1"}),
        (lambda n: i.OpenTicket("not-an-address", "t"), "bad_address", {}),
    ],
)
async def test_refusals_carry_a_code_and_params(world, intent, code, params):
    number = await world.new_ticket()
    with pytest.raises((InvalidRequest, TicketNotFound)) as raised:
        await world.service.apply(OPERATOR, intent(number))
    assert raised.value.code == code
    assert params.items() <= raised.value.params.items()


async def test_refusing_a_non_operator_has_a_code(world):
    number = await world.new_ticket()
    with pytest.raises(NotAllowed) as raised:
        await world.service.apply(Actor.member(MEMBER), i.Take(number))
    assert raised.value.code == "not_operator"


# -- root edits --------------------------------------------------------------------------


async def test_a_new_ticket_queues_no_root_edit(world):
    number = await world.new_ticket()
    assert world.root_edits(number) == []


async def test_a_burst_of_changes_queues_one_root_edit_due_after_the_last(world):
    number = await world.new_ticket()
    changes = [
        i.Take(number),
        i.SetTitle(number, "Sense connexió a Gràcia"),
        i.Reply(number, "Ho mirem."),
        i.SetStatus(number, Status.STALLED),
        i.SetStatus(number, Status.OPEN),
    ]
    for change in changes:
        world.clock.advance(seconds=1)
        await world.service.apply(OPERATOR, change)
    [edit] = world.root_edits(number)
    assert edit.payload == {"type": ROOT_EDIT}
    assert edit.due == world.clock.now() + SETTINGS.root_edit_after
    assert SETTINGS.root_edit_after == timedelta(seconds=5)
    assert len(world.posts(number)) == 1 + len(changes)  # each change still posted at once


async def test_comments_and_moves_leave_the_root_alone(world):
    number = await world.new_ticket()
    await world.service.apply(OPERATOR, i.Comment(number, "Truco demà"))
    await world.service.apply(OPERATOR, i.Move(number, "tresoreria"))  # posts a new root
    assert world.root_edits(number) == []
    await world.service.apply(
        Actor.member(MEMBER), i.ReceiveMail(mail(), i.MailClass.MEMBER, number)
    )
    assert len(world.root_edits(number)) == 1  # now it waits for us again


async def test_no_root_edit_without_chat():
    world = ChatWorld(announce=False)
    number = await world.new_ticket()
    await world.service.apply(OPERATOR, i.Take(number))
    assert world.root_edits(number) == []
