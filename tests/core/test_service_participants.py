"""Participants: who a mail may bring in (verified From only, at most 10 from one Cc), what
operators change with `!cc`, what `!accept` lists, and replies that skip unusable addresses."""

from __future__ import annotations

import pytest
from test_service import MEMBER, NEIGHBOUR, OWN, STRANGER, World, mail

from exobot.core import intents as i
from exobot.core.model import EntryKind
from exobot.core.service import MAX_CC_PARTICIPANTS, InvalidRequest

SPY = "spy@evil.example"


@pytest.fixture
def world() -> World:
    return World()


async def test_a_spoofed_reply_brings_no_participant_and_changes_nothing(world):
    number = await world.new_ticket()
    spoofed = mail("attacker@evil.example", requestor=MEMBER, cc=(SPY,))
    before = world.repo.ticket(number)
    await world.receive(spoofed, i.MailClass.UNVERIFIED, ticket=number)
    assert world.repo.participants(number) == {MEMBER}
    assert world.repo.ticket(number).status is before.status
    assert world.repo.ticket(number).last_member_mail_at == before.last_member_mail_at
    await world.op(i.Reply(number, "Hola Marta"))
    [reply] = [row for row in world.repo.outbox(number) if row.template == "reply"]
    assert (reply.payload["to"], reply.payload["cc"]) == ([MEMBER], [])


async def test_at_most_ten_participants_from_one_mails_cc(world):
    number = await world.new_ticket()
    cc = tuple(f"veí{n}@example.net" if n == 3 else f"vei{n}@example.net" for n in range(13))
    await world.receive(mail(cc=cc), ticket=number)
    participants = world.repo.participants(number)
    assert len(participants - {MEMBER}) == MAX_CC_PARTICIPANTS
    [entry] = world.repo.entries(number, "mail_in")[1:]
    left_out = entry.data["cc_not_added"]
    assert "veí3@example.net" in left_out  # not an address we can write to
    assert len(left_out) == 3 and not set(left_out) & participants


async def test_a_new_ticket_from_an_unverified_sender_takes_only_the_requestor(world):
    incoming = mail(STRANGER, cc=(SPY,))
    number = (await world.receive(incoming, i.MailClass.UNVERIFIED)).ticket
    assert world.repo.participants(number) == {STRANGER}
    assert world.repo.kinds(number) == ["created", "unverified_in"]
    assert world.repo.ticket(number).last_member_mail_at is None


async def test_accept_adds_the_sender_and_lists_the_cc_it_did_not_add(world):
    number = await world.new_ticket(cc=(NEIGHBOUR,))
    await world.receive(mail(STRANGER, cc=(SPY, NEIGHBOUR, OWN)), i.MailClass.UNVERIFIED, ticket=number)
    await world.op(i.AcceptUnverified(number))
    assert world.repo.participants(number) == {MEMBER, NEIGHBOUR, STRANGER}
    [accepted] = world.repo.entries(number, "accepted")
    assert accepted.data["cc_not_added"] == [SPY]


async def test_operators_add_and_remove_participants(world):
    number = await world.new_ticket(cc=(NEIGHBOUR,))
    outcome = await world.op(i.ChangeParticipants(number, add=("Germa@Example.net",), remove=(NEIGHBOUR,)))
    assert world.repo.participants(number) == {MEMBER, "germa@example.net"}
    [entry] = outcome.entries
    assert entry.kind is EntryKind.PARTICIPANTS
    assert entry.data == {"added": ["germa@example.net"], "removed": [NEIGHBOUR]}
    assert entry.actor == "@anna:example.org"


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"remove": (MEMBER,)}, "requestor_stays"),
        ({"add": (OWN,)}, "own_address_participant"),
        ({"add": ("joan@example.org.",)}, "bad_address"),
        ({"add": ("josé@example.org",)}, "bad_address"),
        ({"add": (MEMBER,), "remove": ("nobody@example.net",)}, "participants_unchanged"),
        ({"add": (SPY,), "remove": (SPY,)}, "add_and_remove"),
        ({}, "missing_participants"),
        ({"add": tuple(f"a{n}@example.net" for n in range(21))}, "too_many_participants"),
    ],
)
async def test_bad_participant_changes_are_refused_and_change_nothing(world, change, code):
    number = await world.new_ticket()
    before = world.snapshot()
    with pytest.raises(InvalidRequest) as refused:
        await world.op(i.ChangeParticipants(number, **change))
    assert refused.value.code == code
    assert world.repo.state == before


async def test_a_reply_skips_an_unusable_participant_and_says_so(world):
    number = await world.new_ticket(cc=(NEIGHBOUR,))
    # Stored before the one address rule existed (the parser used to accept these).
    world.repo.state.participants[number]["josé@example.org"] = "cc"
    await world.op(i.Reply(number, "Ho mirem."))
    [reply] = [row for row in world.repo.outbox(number) if row.template == "reply"]
    assert (reply.payload["to"], reply.payload["cc"]) == ([MEMBER], [NEIGHBOUR])
    [note] = world.repo.entries(number, "delivery_failed")
    assert note.data["recipient"] == "josé@example.org" and note.data["skipped"] is True
    assert note.data["outbox_id"] == reply.id and "@-sign" in note.body
    # The note says how to remove it, and that works although no mail can go there.
    await world.op(i.ChangeParticipants(number, remove=("José@example.org",)))
    assert "josé@example.org" not in world.repo.participants(number)
