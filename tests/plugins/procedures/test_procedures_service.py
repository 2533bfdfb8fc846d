"""Procedures through the plugin's one path (service.py), on the real TicketService and a
migrated SQLite database with a fake clock: creating one moves the ticket to tresoreria and
mails the requestor a notice (recorded as outgoing, [suport#N]), exactly once even when the
effects are applied again after a crash; refusals in the operator's language; done and cancel
never change the ticket's status; a join done adds the member and links the ticket, a leave
ends the membership; the settling job; the pending digest; the members-only scope on new
mail; and the chat handlers' answers."""

from __future__ import annotations

from datetime import timedelta

import pytest
from exobot_procedures import effects, service, store
from exobot_procedures.service import ProcedureRefused
from exobot_procedures.store import MemberRow

from exobot import i18n
from exobot.config import ConfigError
from exobot.core.model import EntryKind, Status

TREASURER = "@treasurer:example.org"
IBAN = "ES91 2100 0418 4502 0005 1332"


def words(language: str, msgid: str, **params: object) -> str:
    return i18n.say(language, msgid, domain="procedures", **params)


async def create(world, ticket: int, type: str = "banc", member: str | None = "1234", **kw):
    values = {"service": None, "note": "dades a l'eina de gestió", "actor": TREASURER,
              "language": "ca"} | kw
    return await service.create_procedure(
        world.plugin, ticket=ticket, type=type, member=member, **values
    )


def notices(history) -> list:
    return [e for e in history if e.kind is EntryKind.MAIL_OUT and e.data.get("notice")]


async def test_create_moves_and_notifies_once(make_world):
    world = await make_world()
    number = await world.mail("ona@example.org")
    procedure = await create(world, number)
    assert (procedure.ref, procedure.type, procedure.state) == ("P-1", "bank", "pending")
    ticket = await world.ticket(number)
    assert (ticket.queue, ticket.status) == ("tresoreria", Status.NEW)
    history = await world.history(number)
    [notice] = notices(history)
    assert "P-1" in notice.body and "canvi de dades bancàries" in notice.body
    assert "pendent" in notice.body and "eina de gestió" not in notice.body  # never the note
    [moved] = [e for e in history if e.kind is EntryKind.QUEUE]
    assert moved.data == {"from": "suport", "to": "tresoreria"} and moved.actor == TREASURER
    async with world.repository.reading() as reader:
        [event] = await store.history(reader.conn, procedure.id)
    assert event.effects == ("move", "notify") and event.settled_at == world.clock.now()
    # Applied again (a crash before settling): nothing is moved or mailed twice.
    unsettled = store.ProcedureEvent(**{**event.__dict__, "settled_at": None})
    assert await effects.apply_effects(world.plugin, unsettled)
    again = await world.history(number)
    assert len(notices(again)) == 1 and len(again) == len(history)
    # A second procedure on the ticket, already in tresoreria: no move, one more notice.
    await create(world, number, "servei-alta", service="FTTH-9", note="")
    assert len([e for e in await world.history(number) if e.kind is EntryKind.QUEUE]) == 1
    assert len(notices(await world.history(number))) == 2


async def test_refusals_say_what_is_wrong(make_world):
    world = await make_world()
    number = await world.mail("ona@example.org")
    cases = [
        (dict(type="hipoteca"), "unknown_type",
         words("ca", "Unknown procedure type “{word}”. Known types: {known}.", word="hipoteca",
               known="alta, baixa, correu, banc, servei-alta, servei-baixa")),
        (dict(type="baixa", member=None), "missing_member", None),
        (dict(member="soci1"), "bad_member", None),
        (dict(type="servei-baixa"), "missing_service", None),
        (dict(note=f"IBAN {IBAN}"), "sensitive_note",
         words("ca", service.SENSITIVE, what=words("ca", "an IBAN"))),
        (dict(note="DNI 12345678Z"), "sensitive_note", None),
        (dict(note="targeta 4111-1111-1111-1111"), "sensitive_note", None),
        (dict(ticket=999), "not_found", None),
    ]
    for kwargs, code, message in cases:
        ticket = kwargs.pop("ticket", number)
        with pytest.raises(ProcedureRefused) as caught:
            await create(world, ticket, **kwargs)
        assert caught.value.code == code, kwargs
        if message is not None:
            assert caught.value.message == message
    assert "guarda-ho a l'eina de gestió" in words(
        "ca", service.SENSITIVE, what="x"
    )
    async with world.repository.reading() as reader:
        assert await store.search(reader.conn, store.ProcedureFilter()) == []
    assert (await world.ticket(number)).queue == "suport"  # nothing moved


async def test_done_and_cancel_never_change_the_status(make_world):
    world = await make_world()
    number = await world.mail("ona@example.org")
    bank = await create(world, number)
    email = await create(world, number, "correu")
    world.clock.advance(hours=3)
    done = await service.finish_procedure(
        world.plugin, bank.id, state="done", note="mandat signat", actor=TREASURER, language="ca"
    )
    assert (done.state, done.processed_by) == ("done", TREASURER)
    with pytest.raises(ProcedureRefused) as caught:
        await service.finish_procedure(world.plugin, email.id, state="cancelled", note="  ",
                                       actor=TREASURER, language="ca")
    assert caught.value.code == "missing_reason"
    cancelled = await service.finish_procedure(
        world.plugin, email.id, state="cancelled", note="duplicat de P-1", actor=TREASURER,
        language="en",
    )
    assert cancelled.state == "cancelled"
    for procedure_id, code in [(bank.id, "not_pending"), (99, "unknown_procedure")]:
        with pytest.raises(ProcedureRefused) as caught:
            await service.finish_procedure(world.plugin, procedure_id, state="done", note="",
                                           actor=TREASURER, language="en")
        assert caught.value.code == code
    assert caught.value.message == "There is no procedure P-99."
    with pytest.raises(ProcedureRefused) as caught:
        await service.finish_procedure(world.plugin, bank.id, state="cancelled", note="x",
                                       actor=TREASURER, language="en")
    assert caught.value.message == f"P-1 is not pending: it was done by {TREASURER}."
    ticket = await world.ticket(number)
    assert ticket.status is Status.NEW  # neither done nor cancel touched it
    bodies = [e.body for e in notices(await world.history(number))]
    assert len(bodies) == 4
    assert "Estat: feta." in bodies[2] and "Estat: anul·lada." in bodies[3]
    assert "duplicat" not in bodies[3]
    async with world.repository.reading() as reader:
        events = await store.history(reader.conn, email.id)
    assert [(e.kind, e.note, e.actor) for e in events] == [
        ("created", "dades a l'eina de gestió", TREASURER),
        ("cancelled", "duplicat de P-1", TREASURER),
    ]


async def test_join_and_leave_change_the_directory(make_world):
    world = await make_world()
    number = await world.mail("nova@example.org", subject="Vull fer-me sòcia")
    join = await create(world, number, "alta", member=None, note="")
    assert join.member == "nova@example.org"
    with pytest.raises(ProcedureRefused) as caught:
        await service.finish_procedure(world.plugin, join.id, state="done", note="",
                                       actor=TREASURER, language="ca")
    assert caught.value.code == "missing_number"
    done = await service.finish_procedure(world.plugin, join.id, state="done", note="",
                                          actor=TREASURER, language="ca", member_number="4321")
    assert done.member == "4321"
    async with world.repository.reading() as reader:
        member = await store.get_member(reader.conn, "4321")
        assert (member.address, member.active) == ("nova@example.org", True)
        assert await store.ticket_member(reader.conn, number) == "4321"
        [_created, finished] = await store.history(reader.conn, join.id)
        assert finished.member == "4321"
        assert [(c.change, c.detail) for c in await store.member_history(reader.conn, "4321")] == [
            ("added", "P-1"), ("linked", f"suport#{number}")
        ]
    leave = await create(world, number, "baixa", member="4321", note="")
    await service.finish_procedure(world.plugin, leave.id, state="done", note="", actor=TREASURER,
                                   language="ca")
    async with world.repository.reading() as reader:
        assert (await store.get_member(reader.conn, "4321")).active is False


async def test_the_job_settles_what_a_crash_left(make_world, monkeypatch):
    world = await make_world()
    number = await world.mail("ona@example.org")
    real_apply = world.service.apply
    calls = {"n": 0}

    async def crashing(*args, **kwargs):
        calls["n"] += 1
        raise ConnectionError("the database went away")

    monkeypatch.setattr(world.service, "apply", crashing)
    procedure = await create(world, number)
    assert calls["n"] == 1 and (await world.ticket(number)).queue == "suport"
    monkeypatch.setattr(world.service, "apply", real_apply)
    assert await world.plugin.settle() == 0  # too young: the request itself may still apply it
    world.clock.advance(effects.SETTLE_GRACE)
    assert await world.plugin.settle() == 1
    assert (await world.ticket(number)).queue == "tresoreria"
    assert len(notices(await world.history(number))) == 1
    assert await world.plugin.settle() == 0
    async with world.repository.reading() as reader:
        assert await store.unsettled(reader.conn) == []
        assert (await store.get(reader.conn, procedure.id)).state == "pending"


async def test_the_digest_lists_old_pending_procedures(make_world):
    world = await make_world({"pending_after": "7d"})
    number = await world.mail("ona@example.org")
    first = await create(world, number)
    world.clock.advance(days=2)
    await create(world, number, "correu")
    assert await world.plugin.digest_lines("ca") == []
    world.clock.advance(days=5, seconds=1)
    lines = await world.plugin.digest_lines("ca")
    assert lines[0] == "⏳ Tràmits pendents fa més de 7 d: 1"
    assert lines[1].startswith(f"• P-{first.id} (canvi de dades bancàries, 1234) a suport#{number}")
    world.clock.advance(days=2)
    assert len(await world.plugin.digest_lines("en")) == 3
    await service.finish_procedure(world.plugin, first.id, state="done", note="", actor=TREASURER,
                                   language="ca")
    assert len(await world.plugin.digest_lines("en")) == 2


async def ack_paragraphs(world, number: int) -> list[str]:
    rows = await world.query(
        "SELECT payload FROM outbox WHERE ticket_id = :n AND template = 'ack'", n=number
    )
    import json

    [(payload,)] = rows
    payload = json.loads(payload) if isinstance(payload, str) else payload
    return payload.get("paragraphs", [])


async def test_the_members_only_scope(make_world):
    world = await make_world({"join_url": "https://exo.cat/fes-te-soci"})
    # No directory yet: nothing is flagged.
    number = await world.mail("qualsevol@example.org")
    assert [e for e in await world.history(number) if e.kind is EntryKind.FLAG] == []
    assert await ack_paragraphs(world, number) == []
    async with world.repository.connection() as conn:
        await store.import_members(
            conn,
            [MemberRow("1", "ona@example.org", "factures.ona@example.org"),
             MemberRow("2", "pau@example.org", None, active=False)],
            actor="cli:admin", now=world.clock.now(),
        )
    stranger = await world.mail("algu@guifi.example.org", subject="Com connecto el node?")
    [flag] = [e for e in await world.history(stranger) if e.kind is EntryKind.FLAG]
    assert flag.data["code"] == "non-member" and flag.data["source"] == "procedures"
    [paragraph] = await ack_paragraphs(world, stranger)
    assert "https://exo.cat/fes-te-soci" in paragraph and "guifi.net" in paragraph
    assert paragraph.startswith("Aquest servei de suport és per als socis de l'eXO")
    # An inactive member is not a member; a member's second address is.
    inactive = await world.mail("pau@example.org")
    assert [e.kind for e in await world.history(inactive)].count(EntryKind.FLAG) == 1
    second = await world.mail("Factures.Ona@example.org")
    assert EntryKind.FLAG not in [e.kind for e in await world.history(second)]
    assert await ack_paragraphs(world, second) == []
    # A reply to the flagged ticket does not flag it again.
    # !member links the ticket and clears the flag.
    answer = await world.plugin.member(world.call("member", ticket=stranger, number="1"))
    assert answer.body == (
        f"suport#{stranger} is linked to member 1. The “not a member” flag is cleared."
    )
    cleared = [e for e in await world.history(stranger) if e.kind is EntryKind.FLAG][-1]
    assert cleared.data.get("cleared") is True and cleared.actor == TREASURER
    async with world.repository.reading() as reader:
        assert await store.ticket_member(reader.conn, stranger) == "1"
    # Again: linked, nothing left to clear; an unknown number is refused.
    answer = await world.plugin.member(world.call("member", ticket=stranger, number="1"))
    assert answer.body == f"suport#{stranger} is linked to member 1."
    with pytest.raises(ProcedureRefused) as caught:
        await world.plugin.member(world.call("member", ticket=stranger, number="77"))
    assert caught.value.message == "There is no member 77 in the directory."


async def test_a_configured_notice_replaces_the_catalogs(make_world):
    world = await make_world({"non_member_notice": {"ca": "Només per a socis."}})
    async with world.repository.connection() as conn:
        await store.import_members(conn, [MemberRow("1", "ona@example.org", None)],
                                   actor="cli:admin", now=world.clock.now())
    number = await world.mail("algu@example.org")
    assert await ack_paragraphs(world, number) == ["Només per a socis."]


async def test_chat_handlers_answer_clearly(make_world):
    world = await make_world()
    plugin = world.plugin
    number = await world.mail("ona@example.org")
    answer = await plugin.procedure(
        world.call("procedure", ticket=number, language="ca",
                   text="banc 1234 dades a l'eina de gestió, soci 1234")
    )
    assert answer.body == (
        f"P-1 (canvi de dades bancàries, 1234) registrat a suport#{number}: pendent. "
        "El ticket passa a tresoreria. El sol·licitant en rep un correu. "
        "Quan estigui fet: !fet P-1"
    )
    refusals = [
        ("procedure", dict(ticket=number, text=""), "missing_type",
         f"Which procedure? Write !procedure suport#{number} TYPE MEMBER [SERVICE] [note]. "
         "Types: join, leave, email, bank, service-add, service-remove."),
        ("procedure", dict(ticket=number, text="bank"), "missing_member",
         f"A bank needs the member number: !procedure suport#{number} bank MEMBER [note]."),
        ("procedure", dict(ticket=number, text="service-add 1234"), "missing_service", None),
        ("procedure", dict(ticket=number, text="mortgage 1"), "unknown_type", None),
        ("procedure", dict(ticket=number, text=f"bank 1234 IBAN {IBAN}"), "sensitive_note",
         None),
        ("done", dict(text="12"), "bare_number",
         "“12” alone is a ticket number: write the procedure's reference, like P-12."),
        ("done", dict(text=""), "missing_ref", None),
        ("done", dict(text="P-44"), "unknown_procedure", "There is no procedure P-44."),
        ("cancel", dict(text="P-1"), "missing_reason", None),
        ("procedures", dict(filter="yesterday"), "bad_filter", None),
        ("member", dict(ticket=number, number="x"), "bad_member", None),
    ]
    for action, args, code, message in refusals:
        handler = getattr(plugin, {"procedures": "procedures"}.get(action, action))
        with pytest.raises(ProcedureRefused) as caught:
            await handler(world.call(action, **args))
        assert caught.value.code == code, (action, args)
        if message is not None:
            assert caught.value.message == message
    listed = await plugin.procedures(world.call("procedures", filter=""))
    assert listed.body.splitlines()[0] == "Pending procedures:"
    assert listed.body.splitlines()[1].startswith(
        f"• P-1 (bank details change, 1234) on suport#{number}, pending, asked on 2026-12-01 by "
    )
    assert "<li>" in listed.html
    done = await plugin.done(world.call("done", text="P-1 mandat rebut"))
    assert done.body == (
        "P-1 (bank details change, 1234) is done. The requestor is told by mail. "
        "The ticket's status does not change."
    )
    with pytest.raises(ProcedureRefused) as caught:
        await plugin.cancel(world.call("cancel", text="P-1 error"))
    assert caught.value.code == "not_pending"
    mine = await plugin.procedures(world.call("procedures", filter="1234"))
    assert "done" in mine.body
    assert (await plugin.procedures(world.call("procedures", filter="pending"))).body == (
        "Pending procedures: none."
    )
    # A join done from chat takes the new member's number before the note.
    join = await plugin.procedure(world.call("procedure", ticket=number, text="join"))
    assert "P-2" in join.body
    done = await plugin.done(world.call("done", text="P-2 5555 alta signada"))
    assert "Member 5555 is in the directory." in done.body
    async with world.repository.reading() as reader:
        [_c, finished] = await store.history(reader.conn, 2)
    assert (finished.member, finished.note) == ("5555", "alta signada")


async def test_an_unknown_queue_is_refused_by_the_configuration(make_world):
    """Said on the key's line when the configuration is read (check-config, every start),
    before the plugin could start without it."""
    with pytest.raises(ConfigError) as refused:
        await make_world({"queue": "comptabilitat"})
    assert refused.value.problems == [
        "plugins.procedures.queue: unknown queue 'comptabilitat' (known: suport, tresoreria) "
        "(got 'comptabilitat')"
    ]


def test_timedelta_text():
    from exobot_procedures.plugin import duration_text

    assert [duration_text(timedelta(days=7)), duration_text(timedelta(hours=36)),
            duration_text(timedelta(seconds=90))] == ["7 d", "36 h", "90 s"]
