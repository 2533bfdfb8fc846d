"""The procedures plugin end to end on the real stack (Synapse, Dovecot, SMTP): the member
directory imported with `exobot members import`; a non-member's mail opens a flagged ticket
whose acknowledgement carries the kind paragraph, a member's second address gets neither;
from chat, `!tràmit` records a procedure, moves the ticket to tresoreria and the member
receives the notice with [suport#N] (read back from their mailbox), a note with an IBAN is
refused, a bare number is refused, `!fet` and `!anul·la` mail the member and leave the
ticket's status alone, `!tràmits` lists, `!soci` links the flagged ticket and clears it."""

from __future__ import annotations

import pytest
from harness import Instance, member_mail, unique, wait_until
from matrix_harness import body_of, sender_of

from exobot.i18n import say

pytestmark = pytest.mark.integration

DOMAIN = "procedures"
IBAN = "ES91 2100 0418 4502 0005 1332"


def words(msgid: str, **params: object) -> str:
    return say("ca", msgid, domain=DOMAIN, **params)


async def test_procedures_from_chat_on_the_real_stack(make_plugin_instance, matrix_setup, volunteer):
    setup = matrix_setup()
    inst: Instance = make_plugin_instance({"procedures": {}}, matrix=setup)
    prefix = inst.config.tickets.prefix
    member, billing, stranger = unique("soci"), unique("factures"), unique("veina")

    # The directory, from the management tool's export, before exobot starts.
    export = inst.config_path.parent / "members.csv"
    export.write_text(f"number,email,email2\n1001,{member},{billing}\n1002,altre@example.org,\n")
    done = inst.run_cli("members", "import", str(export))
    assert done.returncode == 0, done.stderr
    assert "Afegits: 2: 1001, 1002" in done.stdout

    app = await inst.start()
    assert "procedures" in app.plugins.enabled, app.plugins.disabled
    vol = await volunteer(setup)
    room = setup.rooms["suport"]

    async def operator_known() -> bool:
        return app.bot.is_operator(setup.volunteer_user_id)

    await wait_until(operator_known, what="the volunteer known as an operator")

    def from_bot(predicate):
        return lambda e: (
            sender_of(e) == setup.bot_user_id
            and e.get("type") == "m.room.message"
            and predicate(body_of(e) or "")
        )

    async def ask(command: str, expected: str) -> str:
        mark = vol.mark(room)
        await vol.send(room, command)
        answer = await vol.wait_for(
            room, from_bot(lambda b: expected in b), after=mark, what=expected
        )
        return body_of(answer) or ""

    # A member, a stranger and the member's second address write.
    await inst.send(member_mail(member, inst.address, subject="Canvi de compte"))
    await inst.wait_tickets(1)
    await inst.send(member_mail(stranger, inst.address, subject="Com em connecto a guifi?"))
    await inst.wait_tickets(2)
    await inst.send(member_mail(billing, inst.address, subject="Factura"))
    await inst.wait_tickets(3)
    first, flagged, second = (
        inst.scalar("SELECT id FROM tickets WHERE requestor = :a", a=a)
        for a in (member, stranger, billing)
    )
    flags = inst.query("SELECT ticket_id, data FROM entries WHERE kind = 'flag'")
    assert [ticket for ticket, _ in flags] == [flagged], flags
    [ack] = await inst.wait_mailbox(stranger, 1)
    text = ack.get_body(("plain",)).get_content()
    assert "Aquest servei de suport és per als socis de l'eXO" in text
    assert "https://exo.cat/" in text and "guifi.net" in text
    for address in (member, billing):
        [plain] = await inst.wait_mailbox(address, 1)
        assert "socis de l'eXO" not in plain.get_body(("plain",)).get_content()
    root = await vol.wait_for(
        room, from_bot(lambda b: f"{prefix}#{flagged}" in b and "🚩" in b), what="the flag"
    )
    assert words("Not a member: the sender's address is no active member's.") in body_of(root)

    # !tràmit records it, moves the ticket, and the member receives the notice.
    ref = f"{prefix}#{first}"
    await ask(f"!tràmit {ref} banc 1001 dades a l'eina de gestió, soci 1001", "P-1")
    assert inst.scalar("SELECT queue FROM tickets WHERE id = :n", n=first) == "tresoreria"
    mails = await inst.wait_mailbox(member, 2)
    notice = mails[-1]
    assert f"[{ref}]" in notice["Subject"]
    assert notice["In-Reply-To"] and notice["References"]
    body = notice.get_body(("plain",)).get_content()
    assert "P-1" in body and "canvi de dades bancàries" in body and "pendent" in body
    assert "eina de gestió" not in body  # the note stays internal
    assert notice["Cc"] is None

    # Refusals: an IBAN in the note, a bare number, an unknown and a finished procedure.
    sensitive = words(
        "The note holds {what}: keep it in the management tool and write only a reference here "
        "(for example “data in the management tool, member 1234”).",
        what=words("an IBAN"),
    )
    await ask(f"!tràmit {ref} banc 1001 IBAN {IBAN}", sensitive)
    await ask("!fet 1", words(
        "“{number}” alone is a ticket number: write the procedure's reference, like P-{number}.",
        number="1",
    ))
    await ask("!fet P-9", words("There is no procedure P-{number}.", number=9))
    await ask(f"!tràmit {ref} hipoteca 1001", "alta, baixa, correu, banc, servei-alta")

    # !fet: done, mailed, the ticket's status unchanged.
    status = inst.scalar("SELECT status FROM tickets WHERE id = :n", n=first)
    await ask("!fet P-1 mandat signat rebut", words("The ticket's status does not change."))
    mails = await inst.wait_mailbox(member, 3)
    assert "Estat: feta." in mails[-1].get_body(("plain",)).get_content()
    assert f"[{ref}]" in mails[-1]["Subject"]
    await ask("!anul·la P-1 error", words(
        "{ref} is not pending: it was {state} by {who}.",
        ref="P-1", state=words("done"), who=setup.volunteer_user_id,
    ))
    assert inst.scalar("SELECT status FROM tickets WHERE id = :n", n=first) == status

    # !anul·la with its reason.
    await ask(f"!tràmit {ref} correu 1001", "P-2")
    await inst.wait_mailbox(member, 4)
    await ask("!anulla P-2 duplicat", words("{procedure} is cancelled.",
                                            procedure="P-2 (canvi d'adreça de correu, 1001)"))
    mails = await inst.wait_mailbox(member, 5)
    assert "anul·lada" in mails[-1].get_body(("plain",)).get_content()
    listed = await ask("!tràmits 1001", words("Procedures of member {member}:", member="1001"))
    assert "P-1" in listed and "P-2" in listed
    assert inst.query(
        "SELECT kind, actor FROM procedures_events ORDER BY id"
    ) == [("created", setup.volunteer_user_id), ("done", setup.volunteer_user_id),
          ("created", setup.volunteer_user_id), ("cancelled", setup.volunteer_user_id)]

    # !soci links the flagged ticket and clears its flag.
    await ask(f"!soci {prefix}#{flagged} 1001",
              words("The “not a member” flag is cleared."))
    assert inst.scalar(
        "SELECT member FROM procedures_ticket_members WHERE ticket = :n", n=flagged
    ) == "1001"
    assert second != flagged
