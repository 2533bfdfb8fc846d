"""The outbox survives an SMTP outage; the operator's CLI handles quarantine and config."""

from __future__ import annotations

import asyncio
import re
import socket

import pytest
from harness import member_mail, unique, wait_until
from sandbox_harness import start_with_parser

from exobot.core.intents import OpenTicket, Reply
from exobot.core.model import Actor

pytestmark = pytest.mark.integration


async def test_reply_queued_while_smtp_is_down_is_delivered_once(bot, stack):
    member = unique("member")
    await bot.send(member_mail(member, bot.address, subject="Cau la connexió"))
    await bot.wait_mailbox(member, 1)  # the acknowledgement
    stack.stop_smtp()
    try:
        await bot.app.service.apply(
            Actor.operator("@anna:example.org"), Reply(1, "Hem reiniciat el node, prova-ho ara.")
        )

        async def retried() -> bool:
            return bot.app.sender.failed_attempts >= 2

        await wait_until(retried, what="the reply to be retried")
        # The relay away is no attempt of the mail's: it waits however long that lasts.
        assert bot.query("SELECT state, attempts FROM outbox WHERE template = 'reply'") == [
            ("pending", 0)
        ]
        assert (
            "connect"
            in bot.scalar("SELECT last_error FROM outbox WHERE template = 'reply'").lower()
        )
    finally:
        stack.start_smtp()
    await bot.wait_mailbox(member, 2)
    await asyncio.sleep(2.5)  # a second delivery would arrive within the retry period
    mails = bot.mailbox(member)
    assert len(mails) == 2
    reply = mails[1]
    assert reply["Subject"] == "[suport#1] Cau la connexió"
    assert "Hem reiniciat el node" in reply.get_content()
    assert reply["Auto-Submitted"] is None
    member_id = bot.scalar("SELECT message_id FROM mail_messages WHERE direction = 'in'")
    assert reply["In-Reply-To"] == member_id  # it answers the member's mail
    # Only what came before the parent: our ack, sent after it, is no ancestor of it.
    assert reply["References"].split() == [member_id]
    assert mails[0]["Message-ID"] not in reply["References"]
    assert bot.scalar("SELECT state FROM outbox WHERE template = 'reply'") == "sent"
    assert bot.scalar("SELECT status FROM tickets WHERE id = 1") == "open"


async def test_permanent_refusal_marks_failed_and_records_it(bot):
    await bot.app.service.apply(
        Actor.operator("@anna:example.org"),
        OpenTicket("ningu@nowhere.example", "Trucada: sense connexió"),
    )
    await bot.app.service.apply(Actor.operator("@anna:example.org"), Reply(1, "Hola"))

    async def failed() -> bool:
        return bot.scalar("SELECT state FROM outbox") == "failed"

    await wait_until(failed, what="the mail to fail")
    assert "550" in bot.scalar("SELECT last_error FROM outbox")
    assert bot.scalar("SELECT count(*) FROM entries WHERE kind = 'delivery_failed'") == 1


async def test_quarantine_list_show_retry_discard(make_instance):
    inst = make_instance()
    member = unique("member")
    for n in range(2):
        await inst.send(
            member_mail(member, inst.address, subject=f"Trencat {n}", X_Trigger_Parser_Bug="yes")
        )
    await inst.send(member_mail(member, inst.address, subject="Sa"))
    await start_with_parser(inst, "parse_hooks:buggy")  # the parsing workers have a bug
    await inst.wait_inbound_done(3)
    await inst.stop()
    assert inst.scalar("SELECT count(*) FROM inbound_mail WHERE state = 'quarantined'") == 2
    assert inst.scalar("SELECT title FROM tickets") == "Sa"  # the next mail was not blocked
    ids = [r[0] for r in inst.query("SELECT id FROM inbound_mail WHERE state = 'quarantined'")]

    listed = inst.run_cli("quarantine", "list")
    assert listed.returncode == 0, listed.stderr
    assert all(f"{i:>6}" in listed.stdout for i in ids)
    assert "simulated parser bug" in listed.stdout
    assert "stored mail: done 1, quarantined 2" in listed.stdout
    # the acknowledgement of "Sa", sent or not yet, depending on when exobot stopped
    assert re.search(r"^outbox: mail (pending|sent) 1$", listed.stdout, re.MULTILINE)

    shown = inst.run_cli("quarantine", "show", str(ids[0]))
    assert shown.returncode == 0 and "Subject: Trencat 0" in shown.stdout

    # The CLI runs without the bug: a retry now makes the ticket.
    retried = inst.run_cli("quarantine", "retry", str(ids[0]))
    assert retried.returncode == 0 and "done" in retried.stdout, retried.stdout + retried.stderr
    assert inst.scalar("SELECT count(*) FROM tickets WHERE title = 'Trencat 0'") == 1

    discarded = inst.run_cli("quarantine", "discard", str(ids[1]))
    assert discarded.returncode == 0
    assert inst.scalar("SELECT state FROM inbound_mail WHERE id = :i", i=ids[1]) == "discarded"

    again = inst.run_cli("quarantine", "retry", str(ids[1]))
    assert again.returncode == 1 and "no quarantined mail" in again.stdout
    assert inst.scalar("SELECT count(*) FROM tickets") == 2
    twice = inst.run_cli("quarantine", "discard", str(ids[1]))
    assert (twice.returncode, twice.stdout) == (1, f"no quarantined mail with id {ids[1]}\n")
    # An id given to `list`, or none to the others, is said, not ignored.
    for misused in (("list", str(ids[0])), ("show",), ("retry",), ("discard",)):
        refused = inst.run_cli("quarantine", *misused)
        assert refused.returncode == 2, misused
        assert refused.stderr.startswith(f"quarantine {misused[0]}: "), refused.stderr


async def test_garbage_bytes_do_not_stop_intake(bot):
    member = unique("member")
    await bot.deliver_raw(b"\x00\x01 not a mail at all \xff")
    await bot.send(member_mail(member, bot.address, subject="Després de la brossa"))
    await bot.wait_inbound_done(2)
    states = [r[0] for r in bot.query("SELECT state FROM inbound_mail ORDER BY id")]
    assert all(s in ("done", "quarantined") for s in states)
    assert bot.scalar("SELECT count(*) FROM tickets WHERE title = 'Després de la brossa'") == 1


def test_check_config_reports_problems_one_per_line(tmp_path, make_instance):
    inst = make_instance()
    ok = inst.run_cli("check-config")
    assert ok.returncode == 0 and ok.stdout.strip() == "OK"
    broken = tmp_path / "broken.yaml"
    broken.write_text(
        "mail:\n  address: not-an-address\n  imap: {host: x, port: 99999, username: u, "
        "password: '…'}\n  smtp: {host: y, security: tls}\nalerts: {new_after: 4 hours}\n"
    )
    for command in ("check-config", "run"):  # `run` refuses to start the same way
        bad = inst.run_cli(command, config=broken)
        assert bad.returncode == 2
        lines = bad.stderr.strip().splitlines()
        assert any("mail.address" in line for line in lines)
        assert any("mail.imap.port" in line for line in lines)
        assert any("mail.imap.password" in line and "placeholder" in line for line in lines)
        assert any("mail.smtp.security" in line for line in lines)
        assert any("alerts.new_after" in line for line in lines)
        assert "Traceback" not in bad.stderr


def test_run_refuses_a_busy_web_port_with_one_line(make_instance):
    inst = make_instance(web=True)
    with socket.socket() as busy:
        busy.bind((inst.config.web.host, inst.config.web.port))
        busy.listen(1)
        refused = inst.run_cli("run", timeout=60)
    assert refused.returncode == 1
    assert f"web.listen: cannot listen on {inst.config.web.host}:{inst.config.web.port}" in (
        refused.stderr
    )
    assert "Traceback" not in refused.stderr


async def test_mails_given_up_are_listed_and_sent_again_by_the_administrator(make_instance, stack):
    """The relay refused two replies past their last attempt (451 at RCPT: its Dovecot away;
    a relay away altogether would use up no attempt): both are given up and noted on the
    ticket. Once the relay is back, `exobot outbox list` and `show` tell the
    administrator what and why, and `retry ID` and `retry --all` (while exobot runs) have them
    sent, once each, noted on the ticket; a second retry is refused."""
    inst = make_instance(outbox={"max_attempts": 2})
    app = await inst.start()
    member = unique("member")
    await inst.send(member_mail(member, inst.address, subject="Sense connexió"))
    await inst.wait_mailbox(member, 1)  # the acknowledgement
    # Nothing due: the worker would sleep past the test's deadline, unless the commit watch
    # wakes it when the CLI (another process) makes a mail due again.
    app.sender.idle_wait = 3600.0
    anna = Actor.operator("@anna:example.org")
    stack.stop_service("dovecot")
    try:
        await app.service.apply(anna, Reply(1, "Prova-ho ara."))
        await app.service.apply(anna, Reply(1, "I ara?"))

        async def given_up() -> bool:
            states = inst.query("SELECT state FROM outbox WHERE template = 'reply'")
            return [state for (state,) in states] == ["failed", "failed"]

        await wait_until(given_up, what="both replies to be given up")
    finally:
        stack.start_service("dovecot")
    first, second = [i for (i,) in inst.query("SELECT id FROM outbox WHERE template = 'reply'")]
    assert inst.scalar("SELECT count(*) FROM entries WHERE kind = 'delivery_failed'") == 2

    def cli(*args: str):  # noqa: ANN202 - CompletedProcess
        # In a thread: this event loop runs exobot, which goes on beside the command.
        return asyncio.to_thread(inst.run_cli, "outbox", *args)

    listed = await cli("list")
    assert listed.returncode == 0, listed.stderr
    header, *lines = listed.stdout.splitlines()
    assert header.split() == ["id", "given", "up", "(UTC)", "kind", "what", "ticket", "to", "why"]
    assert [line.split()[0] for line in lines] == [str(second), str(first)]  # newest first
    assert re.fullmatch(
        rf"\s*{first}  \S+ \S+  mail  reply\s+suport#1\s+{re.escape(member)}\s+gave up after 2 .*",
        lines[1],
    ), lines[1]
    shown = await cli("show", str(first))
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith(f"mail {first} (reply, suport#1)\nto: {member}\n")
    assert "after 2 attempts\nwhy: gave up after 2 attempts: " in shown.stdout

    retried = await cli("retry", str(first))
    assert retried.returncode == 0, retried.stderr
    assert retried.stdout == (
        f"mail {first} (reply, suport#1) is due again (noted on the ticket)\n"
        "exobot sends it within 1 s while it runs (else at its next start)\n"
    )
    every = await cli("retry", "--all")
    assert every.returncode == 0, every.stderr
    assert every.stdout.startswith(f"mail {second} (reply, suport#1) is due again (noted on")
    [_ack, *replies] = await inst.wait_mailbox(member, 3)
    texts = ("I ara?", "Prova-ho ara.")
    contents = [reply.get_content() for reply in replies]
    assert sorted(text for text in texts for content in contents if text in content) == [*texts]

    async def sent() -> bool:
        states = inst.query("SELECT state FROM outbox WHERE template = 'reply'")
        return [state for (state,) in states] == ["sent", "sent"]

    await wait_until(sent, what="the retried mails marked sent")
    kinds = [r[0] for r in inst.query("SELECT kind FROM entries WHERE ticket_id = 1 ORDER BY id")]
    assert kinds.count("delivery_retried") == 2

    again = await cli("retry", str(first), str(second))
    assert again.returncode == 1
    assert again.stdout.splitlines() == [
        f"no outbox item {first} was given up (see `exobot outbox list`)",
        f"no outbox item {second} was given up (see `exobot outbox list`)",
    ]
    assert (await cli("show", "999999")).returncode == 1
    # An id no row can have is no outbox item either (it overflowed the query: a traceback).
    for action in ("show", "retry"):
        huge = await cli(action, "99999999999999999999")
        assert (huge.returncode, huge.stderr) == (1, ""), huge.stderr
        assert huge.stdout == (
            "no outbox item 99999999999999999999 was given up (see `exobot outbox list`)\n"
        )
    for misused in (("retry",), ("retry", "5", "--all"), ("show",), ("list", "3")):
        refused = await cli(*misused)
        assert refused.returncode == 2 and refused.stderr.startswith("outbox "), misused
    for action in (("list",), ("retry", "--all")):
        empty = await cli(*action)
        assert empty.returncode == 0 and empty.stdout == "no outbox item was given up\n"
    assert len(inst.mailbox(member)) == 3  # each reply sent once
