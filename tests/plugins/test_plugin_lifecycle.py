"""The sample plugin in a real exobot on the real mail stack: everything it registers works
and is gone after stop; its failures are isolated (start failure disables it; a failing hook
is logged and dropped while the mail still becomes a ticket; five failures in a row disable
it); its job runs; its command line runs."""

from __future__ import annotations

import logging
import subprocess
import sys
from zoneinfo import ZoneInfo

import httpx
import pytest
from harness import ROOT, Instance, member_mail, unique, wait_until

from exobot.core.events import TicketEvent
from exobot.plugins import DataSubject
from exobot.plugins.manager import MAX_CONSECUTIVE_FAILURES

pytestmark = pytest.mark.integration


async def _status(inst: Instance, path: str) -> int:
    async with httpx.AsyncClient(base_url=inst.web_url, timeout=30) as client:
        return (await client.get(path, follow_redirects=False)).status_code


async def test_everything_registered_works_and_is_removed_at_stop(
    sample_installed, make_plugin_instance
):
    inst: Instance = make_plugin_instance({"sample": {"greeting": "Bon dia"}}, web=True)
    app = await inst.start()
    assert app.plugins.enabled == ["sample"], app.plugins.disabled
    assert "samplehello" in app.actions
    assert app.actions.get("samplehello").owner == "sample"
    assert app.actions.get("samplehello").domain == "sample"
    assert app.scheduler.scheduler.get_job("plugin:sample:tick") is not None
    # Its page wants a logged-in operator (sent to /login); its API route a bearer token.
    assert await _status(inst, "/plugins/sample/") == 303
    assert await _status(inst, "/api/v1/plugins/sample/hello") == 401

    # A new mail: the hook wrote its row in the mail's transaction, flagged the ticket and
    # added a paragraph to the acknowledgement the member receives.
    member = unique("membre")
    await inst.send(member_mail(member, inst.address, subject="URGENT: no tinc connexió"))
    await inst.wait_tickets(1)
    number = inst.scalar("SELECT max(id) FROM tickets")
    assert inst.query("SELECT ticket, what FROM sample_seen") == [(number, "mail")]
    assert inst.query("SELECT body, data FROM entries WHERE kind = 'flag'") == [
        ("the subject says urgent", '{"code": "sample-urgent", "source": "sample"}')
    ]
    [ack] = await inst.wait_mailbox(member, 1)
    text = ack.get_content()
    assert "Bon dia: we saw it is <urgent> & act fast." in text
    assert text.index("act fast") < text.index("Salutacions")
    await wait_until(
        lambda: any(c[0] == "event-seen" for c in sample_installed.CALLS),
        what="the plugin's event handler",
    )

    ticket = await app.repository.get_ticket(number)
    assert await app.plugins.root_lines(ticket, "ca") == [
        f"sample root line for #{number} <b>"
    ]
    [panel] = await app.plugins.panels(ticket, "ca")
    assert panel.title == "Sample <panel>"
    assert await app.plugins.digest_lines("ca") == ["sample digest line"]
    subject = DataSubject(address=member, ticket=number)
    assert await app.plugins.export(subject) == {"sample": {"ticket": number, "address": member}}
    assert await app.plugins.erase(subject) == {"sample": 1}
    assert await app.plugins.backup() == {"sample": {"rows": 0}}

    # Its mail template, in the ticket's language or else exobot's, as plain text.
    ctx = app.plugins.context("sample")
    note = "Hola Núria,\n\nAixò és una nota del connector <sample> & prou.\n"
    assert ctx.render_mail("note", "ca", name="Núria") == note
    assert ctx.render_mail("note", "es", name="Núria") == note  # no es/ file: exobot's ca
    with pytest.raises(LookupError):
        ctx.render_mail("nosuch", "ca")

    handlers_before = len(app.events._handlers[TicketEvent])
    await app.plugins.stop()
    assert app.plugins.enabled == []
    assert ("stop",) in sample_installed.CALLS
    assert "samplehello" not in app.actions
    assert app.scheduler.scheduler.get_job("plugin:sample:tick") is None
    assert await _status(inst, "/plugins/sample/") == 404
    assert await _status(inst, "/api/v1/plugins/sample/hello") == 404
    assert len(app.events._handlers[TicketEvent]) == handlers_before - 1
    assert await app.plugins.root_lines(ticket, "ca") == []
    assert await app.plugins.panels(ticket, "ca") == []
    assert await app.plugins.digest_lines("ca") == []
    assert await app.plugins.export(subject) == {}

    # Without the plugin a new mail is a plain ticket: no hook ran.
    other = unique("membre")
    await inst.send(member_mail(other, inst.address, subject="urgent també"))
    await inst.wait_tickets(2)
    [ack] = await inst.wait_mailbox(other, 1)
    assert "act fast" not in ack.get_content()
    assert inst.scalar("SELECT count(*) FROM sample_seen") == 1


async def test_a_plugin_failing_at_start_is_disabled_and_exobot_runs(
    sample_installed, make_plugin_instance, caplog
):
    sample_installed.FAIL.add("start")
    inst: Instance = make_plugin_instance({"sample": {}})
    with caplog.at_level(logging.ERROR, logger="exobot.plugins"):
        app = await inst.start()
    assert app.plugins.enabled == []
    assert app.plugins.disabled["sample"].startswith("failed to start: RuntimeError(")
    assert any(
        r.exc_info and "failed to start" in r.getMessage() for r in caplog.records
    ), "the start failure is logged with its stack"
    member = unique("membre")
    await inst.send(member_mail(member, inst.address, subject="urgent"))
    await inst.wait_tickets(1)
    [ack] = await inst.wait_mailbox(member, 1)
    assert "act fast" not in ack.get_content()


async def test_a_failing_hook_is_dropped_and_five_in_a_row_disable_the_plugin(
    sample_installed, make_plugin_instance, caplog
):
    inst: Instance = make_plugin_instance({"sample": {}})
    app = await inst.start()
    sample_installed.FAIL.add("mail")
    members = [unique("membre") for _ in range(MAX_CONSECUTIVE_FAILURES)]
    with caplog.at_level(logging.WARNING, logger="exobot.plugins"):
        await inst.send(member_mail(members[0], inst.address, subject="urgent 1"))
        await inst.wait_tickets(1)
        # The core's change stands: a ticket, its acknowledgement, without the plugin's part.
        [ack] = await inst.wait_mailbox(members[0], 1)
        assert "act fast" not in ack.get_content()
        assert inst.scalar("SELECT count(*) FROM entries WHERE kind = 'flag'") == 0
        assert inst.scalar("SELECT count(*) FROM sample_seen") == 0
        assert app.plugins.enabled == ["sample"]
        for n, member in enumerate(members[1:], start=2):
            await inst.send(member_mail(member, inst.address, subject=f"urgent {n}"))
            await inst.wait_tickets(n)
        await wait_until(lambda: not app.plugins.enabled, what="the plugin disabled")
        await wait_until(
            lambda: "samplehello" not in app.actions, what="its action removed"
        )
    assert "5 failures in a row" in app.plugins.disabled["sample"]
    failures = [r for r in caplog.records if "new-mail hook failed" in r.getMessage()]
    assert len(failures) == MAX_CONSECUTIVE_FAILURES
    assert all(r.exc_info for r in failures), "each failure is logged with its stack"
    notices = [r.getMessage() for r in caplog.records if r.getMessage().startswith("⚠️")]
    # Reported once for the failing calls, once for the disabling.
    assert len(notices) == 2, notices
    assert "new-mail hook" in notices[0]
    assert "5" in notices[1]


async def test_a_hook_failing_after_a_write_leaves_no_row(sample_installed, make_plugin_instance):
    inst: Instance = make_plugin_instance({"sample": {}})
    await inst.start()
    sample_installed.FAIL.add("mail-after-write")
    member = unique("membre")
    await inst.send(member_mail(member, inst.address, subject="urgent please"))
    await inst.wait_tickets(1)
    await inst.wait_mailbox(member, 1)
    # The hook wrote its row, then failed: the savepoint took the row back, the ticket stands.
    assert ("mail-after-write",) in sample_installed.CALLS
    assert inst.scalar("SELECT count(*) FROM sample_seen") == 0
    assert inst.scalar("SELECT count(*) FROM entries WHERE kind = 'flag'") == 0
    assert inst.scalar("SELECT count(*) FROM tickets") == 1


async def test_a_scheduled_job_runs(sample_installed, make_plugin_instance):
    inst: Instance = make_plugin_instance({"sample": {"every": 1}})
    await inst.start()

    async def ran() -> bool:
        return inst.scalar("SELECT count(*) FROM sample_seen WHERE what = 'job'") >= 2

    await wait_until(ran, what="the plugin's job to run twice")


async def test_a_plugin_sees_the_configured_time_zone(sample_installed, make_plugin_instance):
    inst: Instance = make_plugin_instance(
        {"sample": {}}, alerts={"timezone": "America/Montevideo"}
    )
    app = await inst.start()
    assert app.plugins.context("sample").timezone == ZoneInfo("America/Montevideo")


async def test_a_plugin_command_line(sample_installed, make_plugin_instance):
    inst: Instance = make_plugin_instance({"sample": {"greeting": "Ei"}})

    def exobot(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "exobot.cli", *args],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=ROOT,
        )

    helped = exobot("--help")
    assert "sample" in helped.stdout, helped.stderr
    done = exobot("sample", "count", "-c", str(inst.config_path))
    assert (done.returncode, done.stdout.strip()) == (0, "Ei: 0 rows"), done.stderr


