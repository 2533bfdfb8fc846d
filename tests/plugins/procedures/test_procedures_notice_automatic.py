"""A procedure's notice is automatic mail (audit of member mails, item 7; DESIGN.md §3: notices
carry Auto-Submitted). The plugin applies it as the operator who acted, and the service marked
only exobot's own mail automatic, so the member's out-of-office could answer it; the plugin
now says so on the Notify intent. A notice an operator writes stays an ordinary mail."""

from __future__ import annotations

import json

from exobot_procedures import service

from exobot.core import intents
from exobot.core.model import Actor
from exobot.mail.compose import TemplateRenderer
from exobot.mail.outbound import MailSender, SmtpSettings

TREASURER = "@treasurer:example.org"


async def reply_payloads(world, number: int) -> list[dict]:
    rows = await world.query(
        "SELECT payload FROM outbox WHERE ticket_id = :n AND template = 'reply' ORDER BY id",
        n=number,
    )
    return [json.loads(p) if isinstance(p, str) else p for (p,) in rows]


async def test_a_procedures_notice_is_mailed_with_auto_submitted(make_world):
    world = await make_world()
    number = await world.mail("ona@example.org")
    for_state = await service.create_procedure(
        world.plugin, ticket=number, type="banc", member="1234", service=None, note="",
        actor=TREASURER, language="ca",
    )
    await service.finish_procedure(
        world.plugin, for_state.id, state="done", note="", actor=TREASURER, language="ca"
    )
    # An operator's own notice, for comparison: written by a person, no Auto-Submitted.
    await world.service.apply(Actor.operator(TREASURER), intents.Notify(number, "Fet a mà."))
    payloads = await reply_payloads(world, number)
    assert [p["auto_submitted"] for p in payloads] == [True, True, False]
    sender = MailSender(
        world.repository,
        world.service,
        SmtpSettings("127.0.0.1", 25),
        TemplateRenderer("ca"),
        from_address="suport@example.org",
        from_name="Suport eXO",
        loop_marker="x",
        clock=world.clock,
    )
    built = [sender.build(p) for p in payloads]
    assert [m["Auto-Submitted"] for m in built] == ["auto-replied", "auto-replied", None]
    assert "P-1" in built[0].get_content()
