"""The send helper on the real stack (PostgreSQL, the SMTP relay, Dovecot): a burst of
outgoing mail goes from a second process, each mail once; the helper stops when the burst is
over, when its leader is killed, and leaves what it cannot send to the leader's worker."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from harness import DEADLINE, ROOT, free_port, instance_config, unique, wait_until
from sqlalchemy import create_engine, text

from devstack.processes import send_helpers
from exobot.app import App
from exobot.config import parse_config
from exobot.core.intents import OpenTicket, Reply
from exobot.core.model import Actor
from exobot.db.engine import sync_url
from exobot.mail import send_helper
from exobot.mail.outbound import SMTP_CONNECTIONS

pytestmark = pytest.mark.integration

OPERATOR = Actor.operator("@anna:example.org")
BURST = 60  # tickets with a reply each: more than the worker's batch of 50, a burst


@pytest.fixture
def pg_config(stack, tmp_path):
    """A configuration (as data) on a fresh PostgreSQL database, and that database's engine."""
    if stack.postgres_port is None:
        pytest.skip("the test stack runs without PostgreSQL")
    data = instance_config(stack, tmp_path, web=f"127.0.0.1:{free_port()}")
    data["database"]["url"] = stack.postgres_url()
    engine = create_engine(sync_url(data["database"]["url"]))
    yield data, engine
    engine.dispose()


@pytest.fixture
async def pg_app(pg_config):
    """exobot built (migrated, its parts wired, nothing started) on `pg_config`; stopped at
    the end."""
    app = App(parse_config(pg_config[0], env={}))
    await app.build()
    yield app
    await app.stop()


def execute(engine, sql: str) -> None:
    with engine.begin() as conn:
        conn.execute(text(sql))


def scalar(engine, sql: str) -> object:
    with engine.connect() as conn:
        return conn.execute(text(sql)).scalar()


async def queue_replies(app: App, member: str, count: int) -> set[str]:
    """`count` tickets for `member`, each with a reply queued (no worker runs yet); returns
    the Message-IDs of every mail queued."""
    for n in range(count):
        await app.service.apply(OPERATOR, OpenTicket(member, f"Avaria {n}"))
        await app.service.apply(OPERATOR, Reply(n + 1, f"Resposta {n}."))
    async with app.repository.reading() as view:
        rows = await view.conn.execute(text("SELECT payload FROM outbox WHERE kind = 'mail'"))
        return {row.payload["message_id"] for row in rows}


async def wait_all_sent(engine) -> None:
    async def all_sent() -> bool:
        return scalar(engine, "SELECT count(*) FROM outbox WHERE state = 'pending'") == 0

    await wait_until(all_sent, DEADLINE, "every mail marked sent")


def mailbox_ids(stack, member: str) -> list[str]:
    import email
    import email.policy

    return [
        email.message_from_bytes(raw, policy=email.policy.default)["Message-ID"]
        for _uid, raw in stack.fetch_all(member)
    ]


async def wait_ids(stack, member: str, count: int) -> list[str]:
    async def arrived() -> list[str] | None:
        ids = await asyncio.to_thread(mailbox_ids, stack, member)
        return ids if len(ids) >= count else None

    return await wait_until(arrived, DEADLINE, f"{count} mails for {member}")


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


async def test_a_burst_goes_from_the_helper_each_mail_once_and_the_helper_stops(
    stack, pg_config, pg_app
):
    engine = pg_config[1]
    member = unique("member")
    queued = await queue_replies(pg_app, member, BURST)
    assert len(queued) >= BURST
    helper = pg_app.sender.helper
    assert helper is not None
    pids: set[int] = set()
    await pg_app.start()

    async def sent_and_stopped() -> bool:
        if helper.pid is not None:
            pids.add(helper.pid)
        pending = scalar(engine, "SELECT count(*) FROM outbox WHERE state = 'pending'")
        return pending == 0 and helper.runs >= 1 and helper.pid is None

    await wait_until(sent_and_stopped, DEADLINE, "the burst sent and the helper stopped")
    # Each mail is marked sent once the relay has delivered it: the mailbox is complete.
    ids = await asyncio.to_thread(mailbox_ids, stack, member)
    # The first pass saw the whole backlog: the helper sent every mail, each once.
    assert helper.runs == 1
    assert helper.sent == len(queued)
    assert Counter(ids) == Counter(queued)
    assert scalar(engine, "SELECT count(*) FROM outbox WHERE state = 'sent'") == len(queued)
    assert pids and not any(alive(pid) for pid in pids)
    metric = pg_app.metrics.registry.get_sample_value
    assert metric("exobot_send_helper_runs_total") == 1
    assert metric("exobot_send_helper_mails_total") == len(queued)


async def test_the_helper_logs_at_its_leaders_level(stack, pg_app, caplog, capfd):
    # An embedding process (the benchmarks) logs less than the configuration's INFO: the
    # helper follows it rather than writing a line for every mail to the shared stderr.
    caplog.set_level(logging.WARNING, logger="exobot")
    queued = await queue_replies(pg_app, unique("member"), BURST)
    helper = pg_app.sender.helper
    await pg_app.start()

    async def sent_and_stopped() -> bool:
        return helper.sent == len(queued) and helper.pid is None

    await wait_until(sent_and_stopped, DEADLINE, "the burst sent by the helper")
    # The helper's per-mail INFO line (the leader's own is held back by its level).
    assert " delivered" not in capfd.readouterr().err


async def test_the_helper_leaves_what_it_cannot_send_to_the_leader(stack, pg_config, pg_app):
    engine = pg_config[1]
    member = unique("member")
    queued = await queue_replies(pg_app, member, BURST)
    helper = pg_app.sender.helper
    stack.stop_smtp()
    try:
        await pg_app.start()

        async def left_and_retried() -> bool:
            # The helper sent nothing and stopped; the leader's worker tries them itself.
            return (
                helper.runs == 1
                and helper.pid is None
                and scalar(
                    engine, "SELECT count(*) FROM outbox WHERE kind = 'mail' AND last_error IS NULL"
                )
                == 0
            )

        await wait_until(left_and_retried, DEADLINE, "the leader's worker retrying")
        assert helper.sent == 0
        # The relay away uses up no mail's attempts, the helper's tries nor the leader's.
        assert scalar(engine, "SELECT max(attempts) FROM outbox WHERE kind = 'mail'") == 0
        assert scalar(engine, "SELECT count(*) FROM outbox WHERE state = 'sent'") == 0
        errors = scalar(engine, "SELECT min(last_error) FROM outbox WHERE kind = 'mail'")
        assert "connect" in errors.lower()
    finally:
        stack.start_smtp()
    await wait_ids(stack, member, len(queued))
    await wait_all_sent(engine)
    assert Counter(await asyncio.to_thread(mailbox_ids, stack, member)) == Counter(queued)


# Refuses every mark of a mail sent, as a database gone away between the send and the mark.
REFUSE_MARKS = """
CREATE FUNCTION refuse_marks() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'marks refused by the test'; END $$;
CREATE TRIGGER refuse_marks BEFORE UPDATE ON outbox FOR EACH ROW
WHEN (NEW.state = 'sent' AND OLD.state <> 'sent') EXECUTE FUNCTION refuse_marks();
"""


async def test_what_the_helper_sent_but_could_not_mark_is_marked_by_the_leader_not_resent(
    stack, pg_config, pg_app
):
    engine = pg_config[1]
    member = unique("member")
    queued = await queue_replies(pg_app, member, BURST)
    helper = pg_app.sender.helper
    execute(engine, REFUSE_MARKS)
    try:
        await pg_app.start()

        async def helper_done() -> bool:
            # What it could not mark is reported as it stops (runs counts a helper starting).
            return helper.runs == 1 and helper.pid is None and bool(pg_app.sender.unmarked)

        await wait_until(helper_done, DEADLINE, "the send helper to stop, its marks refused")
        # Every mail of the helper's first pass went out and its mark was refused; each pass
        # after it failed on those marks until the helper stopped, idle.
        sent = await asyncio.to_thread(mailbox_ids, stack, member)
        assert sent and len(pg_app.sender.unmarked) == len(sent)  # all told to the leader
    finally:
        # Off the event loop: the DROP waits for the leader's transactions, which need it.
        await asyncio.to_thread(execute, engine, "DROP TRIGGER refuse_marks ON outbox")
    await wait_all_sent(engine)
    await wait_ids(stack, member, len(queued))
    # The leader marked what the helper had sent before sending anything: each mail once.
    assert Counter(await asyncio.to_thread(mailbox_ids, stack, member)) == Counter(queued)


async def test_the_helper_stops_when_its_leader_is_killed(stack, pg_config, tmp_path):
    data, engine = pg_config
    app = App(parse_config(data, env={}))
    await app.build()
    member = unique("member")
    try:
        # More than the helper sends in the time its leader takes to be killed.
        queued = await queue_replies(app, member, 4 * BURST)
    finally:
        await app.stop()
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(data))
    log = tmp_path / "exobot.log"

    def start() -> subprocess.Popen:
        with open(log, "ab") as out:
            return subprocess.Popen(
                [sys.executable, "-m", "exobot.cli", "run", "-c", str(config)],
                cwd=ROOT,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
                stdout=subprocess.DEVNULL,
                stderr=out,
            )

    leader = start()
    try:
        helpers = await wait_until(
            lambda: send_helpers(leader.pid), DEADLINE, "the leader to start its send helper"
        )
        leader.send_signal(signal.SIGKILL)
        leader.wait()

        await wait_until(
            lambda: not any(alive(pid) for pid in helpers),
            DEADLINE,
            "the send helper to stop after its leader",
        )
        # It stopped for its leader, not at the end of the burst.
        assert scalar(engine, "SELECT count(*) FROM outbox WHERE state = 'pending'") > 0
        leader = start()  # what was left is sent by the next leader
        await wait_ids(stack, member, len(queued))
        await wait_all_sent(engine)
        ids = await asyncio.to_thread(mailbox_ids, stack, member)
    finally:
        leader.send_signal(signal.SIGTERM)
        try:
            leader.wait(timeout=60)
        except subprocess.TimeoutExpired:
            leader.kill()
            leader.wait()
    text_log = log.read_text(errors="replace")
    assert "send helper" in text_log and "started for a burst" in text_log, text_log[-3000:]
    counts = Counter(ids)
    assert set(counts) == queued  # nothing lost
    # A mail under way when the helper was told to stop is finished, not cut: at most one
    # duplicate per SMTP connection, with the same Message-ID, only if it ran out of time.
    assert all(n <= 2 for n in counts.values())
    assert sum(n - 1 for n in counts.values()) <= SMTP_CONNECTIONS
    assert not send_helpers(leader.pid)


def test_a_burst_is_counted_over_the_passes_of_a_few_seconds(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(send_helper.time, "monotonic", lambda: now[0])
    setup = send_helper.HelperSetup(config=None, loop_marker="x")  # type: ignore[arg-type]
    helper = send_helper.SendHelper(setup, burst=20)
    assert not helper.wants([object()] * 19)
    now[0] += send_helper.BURST_SECONDS + 1  # those 19 are out of the window now
    assert not helper.wants([object()] * 10)
    now[0] += 1
    assert helper.wants([object()] * 10)  # 20 within the window
    assert not helper.wants([object()] * 5)  # counted afresh after a start
    helper._rest()
    assert not helper.wants([object()] * 50)  # resting after a helper that sent nothing
    now[0] += send_helper.REST_SECONDS + 1
    assert helper.wants([object()] * 50)


def test_the_helpers_report_lines_are_read_strictly():
    line = b"unmarked 12 2026-11-30T20:00:00.250000+00:00\n"
    assert send_helper._unmarked(line) == (12, datetime(2026, 11, 30, 20, 0, 0, 250000, UTC))
    assert send_helper._count(line) == 0  # not a count of mails sent
    assert send_helper._count(b"7\n") == 7 and send_helper._unmarked(b"7\n") is None
    for odd in (b"unmarked twelve 2026-11-30", b"unmarked 12 yesterday", b"unmarked 12", b"-3"):
        assert send_helper._unmarked(odd) is None and send_helper._count(odd) == 0


# A stand-in for the helper: it sends 2 mails, and as it stops (its stdin closed) reports one
# it could not mark.
STAND_IN = (
    "import sys; print(2, flush=True); sys.stdin.buffer.read();"
    " print('unmarked 7 2026-11-30T20:00:00+00:00')"
)


async def test_a_helper_told_to_stop_still_reports_what_it_could_not_mark():
    # The leader stepping down (a PostgreSQL restart takes its lock) stops its helper; what
    # the helper sent but could not mark reaches the worker, which marks it when it leads again.
    setup = send_helper.HelperSetup(config=None, loop_marker="x")  # type: ignore[arg-type]
    helper = send_helper.SendHelper(setup)
    helper.command = [sys.executable, "-c", STAND_IN]
    unmarked: list[tuple[int, datetime]] = []
    run = asyncio.create_task(
        helper.run(on_sent=lambda _count: None, on_unmarked=lambda *u: unmarked.append(u))
    )
    await wait_until(lambda: helper.sent == 2, DEADLINE, "the stand-in's first report")
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert unmarked == [(7, datetime(2026, 11, 30, 20, 0, tzinfo=UTC))]
    assert helper.pid is None and helper.sent == 2
