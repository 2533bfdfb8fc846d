"""Audit fixes of the procedures plugin: a join done with another active member's number is
refused (chat, web, API) with nothing written; after a crash the requestor's notices still
arrive in order ("pending" before "done"); the digest and the settling job read bounded
batches (the digest's total stays right, a backlog is settled over several passes, and
events that keep failing do not hold back the others)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from exobot_procedures import effects, service, store
from exobot_procedures.plugin import DIGEST_LISTED
from exobot_procedures.service import ProcedureRefused
from exobot_procedures.store import MemberRow
from markupsafe import escape
from web_world import TREASURER, web_world_fixture  # noqa: F401  (the fixture)

from exobot import i18n
from exobot.core.model import EntryKind

TAKEN = (
    "Number {number} already belongs to another active member: give the new member's own "
    "number."
)


def words(language: str, msgid: str, **params: object) -> str:
    return i18n.say(language, msgid, domain="procedures", **params)


def notices(history) -> list:
    return [e for e in history if e.kind is EntryKind.MAIL_OUT and e.data.get("notice")]


async def import_anna(world) -> None:
    """The directory: member 100 is anna@example.org, active."""
    async with world.repository.connection() as conn:
        await store.import_members(conn, [MemberRow("100", "anna@example.org")],
                                   actor="cli:test", now=world.clock.now())


async def join(world, ticket: int, member: str | None = None):
    return await service.create_procedure(
        world.plugin, ticket=ticket, type="join", member=member, service=None, note="",
        actor=TREASURER, language="ca",
    )


async def crashed_create(world, ticket: int, member: str = "1234", effects=("move", "notify")):
    """A procedure's creation committed as service.create_procedure writes it, the process
    dying before its effects are applied."""
    async with world.repository.connection() as conn:
        procedure, _ = await store.create(
            conn, type="bank", member=member, service=None, ticket=ticket, actor=TREASURER,
            note="", now=world.clock.now(), effects=list(effects),
        )
    return procedure


# --- 1. a join done with a number that is another active member's -----------------------------


async def test_a_join_done_with_another_members_number_is_refused_in_chat(make_world):
    world = await make_world()
    await import_anna(world)
    number = await world.mail("nou@example.org", subject="Vull fer-me soci")
    procedure = await join(world, number)
    with pytest.raises(ProcedureRefused) as caught:
        await world.plugin.done(world.call("done", text=f"{procedure.ref} 100", language="ca"))
    assert caught.value.code == "number_taken"
    assert caught.value.message == words("ca", TAKEN, number="100")
    assert caught.value.message == (
        "El número 100 ja és d'un altre soci actiu: indica el número del nou soci."
    )
    assert "anna" not in caught.value.message  # never the other member's address
    async with world.repository.reading() as reader:
        assert (await store.get(reader.conn, procedure.id)).state == "pending"
        assert [e.kind for e in await store.history(reader.conn, procedure.id)] == ["created"]
        assert await store.ticket_member(reader.conn, number) is None
        member = await store.get_member(reader.conn, "100")
        assert (member.address, member.active) == ("anna@example.org", True)
        assert [c.change for c in await store.member_history(reader.conn, "100")] == ["added"]
    # With the new member's own number it is done, and their mail is a member's.
    done = await world.plugin.done(world.call("done", text=f"{procedure.ref} 200", language="ca"))
    assert "200" in done.body
    async with world.repository.reading() as reader:
        assert (await store.get_member(reader.conn, "200")).address == "nou@example.org"
        assert await store.ticket_member(reader.conn, number) == "200"
        assert not await store.is_stranger(reader.conn, "nou@example.org")


async def test_the_same_members_join_done_again_is_fine(make_world):
    world = await make_world()
    await import_anna(world)
    number = await world.mail("Anna@Example.org", subject="Alta")
    procedure = await join(world, number)
    done = await service.finish_procedure(
        world.plugin, procedure.id, state="done", note="", actor=TREASURER, language="ca",
        member_number="100",
    )
    assert (done.state, done.member) == ("done", "100")
    # A join registered with the number from the start, on that member's own ticket.
    again = await join(world, number, member="100")
    done = await service.finish_procedure(
        world.plugin, again.id, state="done", note="", actor=TREASURER, language="ca",
    )
    assert done.state == "done"
    async with world.repository.reading() as reader:
        assert (await store.get_member(reader.conn, "100")).address == "anna@example.org"


async def test_a_taken_number_is_refused_on_the_web_and_in_the_api(web_world):
    world = web_world
    await import_anna(world)
    number = await world.mail("nou@example.org")
    first = await join(world, number)
    page = await world.client.post(
        f"/plugins/procedures/P-{first.id}/done",
        data={"csrf": world.csrf, "member_number": "100", "note": ""},
    )
    assert page.status_code == 400
    assert str(escape(words("ca", TAKEN, number="100"))) in page.text
    answer = await world.api.post(f"/api/v1/plugins/procedures/{first.id}/done",
                                  json={"member_number": "100"})
    assert answer.status_code == 409, answer.text
    assert answer.json()["error"] == "number_taken"
    assert answer.json()["message"] == words("en", TAKEN, number="100")
    async with world.repository.reading() as reader:
        assert (await store.get(reader.conn, first.id)).state == "pending"
        assert (await store.get_member(reader.conn, "100")).address == "anna@example.org"


# --- 2. the notices' order after a crash ----------------------------------------------------


async def test_after_a_crash_pending_is_mailed_before_done(make_world):
    world = await make_world()
    number = await world.mail("ona@example.org")
    procedure = await crashed_create(world, number)
    world.clock.advance(seconds=5)  # within the job's grace: only the done request acts
    await service.finish_procedure(world.plugin, procedure.id, state="done", note="",
                                   actor=TREASURER, language="ca")
    history = await world.history(number)
    sent = notices(history)
    assert len(sent) == 2
    assert "pendent" in sent[0].body and "feta" in sent[1].body
    # The ticket moved before the done notice, as it would have without the crash.
    [moved] = [e for e in history if e.kind is EntryKind.QUEUE]
    assert history.index(moved) < history.index(sent[1])
    world.clock.advance(seconds=60)
    assert await world.plugin.settle() == 0  # both were settled by the done request
    assert len(notices(await world.history(number))) == 2


async def test_done_waits_while_the_earlier_notice_cannot_be_sent(make_world, monkeypatch):
    world = await make_world()
    number = await world.mail("ona@example.org")
    procedure = await crashed_create(world, number, effects=("notify",))
    async with world.repository.reading() as reader:
        [created] = await store.history(reader.conn, procedure.id)
    real_apply = world.service.apply

    async def failing_for_created(actor, intent, origin=None, *args, **kwargs):
        if origin is not None and origin.key == effects.origin_key(created, "notify"):
            raise ConnectionError("the database went away")
        return await real_apply(actor, intent, origin, *args, **kwargs)

    monkeypatch.setattr(world.service, "apply", failing_for_created)
    await service.finish_procedure(world.plugin, procedure.id, state="done", note="",
                                   actor=TREASURER, language="ca")
    assert notices(await world.history(number)) == []  # "done" waits for "pending"
    monkeypatch.setattr(world.service, "apply", real_apply)
    world.clock.advance(effects.SETTLE_GRACE)
    assert await world.plugin.settle() == 2
    sent = notices(await world.history(number))
    assert ["pendent" in n.body for n in sent] == [True, False]
    assert "feta" in sent[1].body


# --- 3. bounded reads -----------------------------------------------------------------------


async def test_the_digest_reads_its_lines_and_says_the_total(make_world, monkeypatch):
    world = await make_world({"pending_after": "7d"})
    number = await world.mail("ona@example.org")
    many = DIGEST_LISTED + 5
    async with world.repository.connection() as conn:
        for i in range(many):
            await store.create(conn, type="bank", member=str(1000 + i), service=None,
                               ticket=number, actor=TREASURER, note="", now=world.clock.now(),
                               effects=())
    world.clock.advance(days=8)
    real = store._procedure
    built = []

    def counting(row):
        built.append(row.id)
        return real(row)

    monkeypatch.setattr(store, "_procedure", counting)
    lines = await world.plugin.digest_lines("ca")
    assert lines[0] == f"⏳ Tràmits pendents fa més de 7 d: {many}"
    assert len(lines) == 1 + DIGEST_LISTED + 1
    assert lines[1].startswith("• P-1 ") and lines[DIGEST_LISTED].startswith(
        f"• P-{DIGEST_LISTED} ")
    assert lines[-1] == words("ca", "… and more: the web page lists them all.")
    assert len(built) <= DIGEST_LISTED + 1  # not every late procedure


async def test_a_backlog_is_settled_in_batches_over_passes(make_world, monkeypatch):
    world = await make_world()
    monkeypatch.setattr(effects, "SETTLE_BATCH", 3)
    number = await world.mail("ona@example.org")
    for i in range(7):
        await crashed_create(world, number, member=str(1000 + i), effects=("notify",))
    world.clock.advance(effects.SETTLE_GRACE)
    assert [await world.plugin.settle() for _ in range(4)] == [3, 3, 1, 0]
    assert len(notices(await world.history(number))) == 7
    async with world.repository.reading() as reader:
        assert await store.unsettled(reader.conn) == []


async def test_events_that_keep_failing_do_not_hold_back_the_others(make_world, monkeypatch):
    world = await make_world()
    monkeypatch.setattr(effects, "SETTLE_BATCH", 2)
    stuck = await world.mail("ona@example.org")
    fine = await world.mail("pau@example.org")
    for i in range(2):
        await crashed_create(world, stuck, member=str(1000 + i), effects=("notify",))
    for i in range(3):
        await crashed_create(world, fine, member=str(2000 + i), effects=("notify",))
    real_apply = world.service.apply

    async def failing_for_stuck(actor, intent, *args, **kwargs):
        if getattr(intent, "ticket", None) == stuck:
            raise ConnectionError("the ticket service failed")
        return await real_apply(actor, intent, *args, **kwargs)

    monkeypatch.setattr(world.service, "apply", failing_for_stuck)
    world.clock.advance(effects.SETTLE_GRACE)
    passes = [await world.plugin.settle() for _ in range(4)]
    assert sum(passes) == 3 and len(notices(await world.history(fine))) == 3
    monkeypatch.setattr(world.service, "apply", real_apply)
    for _ in range(3):
        await world.plugin.settle()
    assert len(notices(await world.history(stuck))) == 2
    async with world.repository.reading() as reader:
        assert await store.unsettled(reader.conn) == []


async def test_the_store_reads_unsettled_events_in_bounded_batches(make_world):
    world = await make_world()
    number = await world.mail("ona@example.org")
    made = [await crashed_create(world, number, member=str(1000 + i), effects=("notify",))
            for i in range(5)]
    async with world.repository.reading() as reader:
        conn = reader.conn
        first = await store.unsettled(conn, limit=2)
        rest = await store.unsettled(conn, after=first[-1].id, limit=10)
        young = await store.unsettled(conn, before=world.clock.now() - timedelta(seconds=1))
    assert [e.procedure_id for e in first + rest] == [p.id for p in made]
    assert young == []
