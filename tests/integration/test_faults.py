"""Faults on the real servers: Synapse, Dovecot and PostgreSQL restarted under a running exobot.

Each test restarts a server of a *private* stack (this module's `stack` fixture overrides the
session's): the other tests of the session share the session stack and must never see its
servers go away. Every wait is on a condition with the suite's generous deadline; the only
timed figures asserted are the goals of the issue (IMAP IDLE back within 60 s of Dovecot
being up) and a short grace in which a duplicate would show.
"""

from __future__ import annotations

import asyncio
import logging
import os
import smtplib
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from harness import (
    DEADLINE,
    Instance,
    free_port,
    instance_config,
    member_mail,
    operator_clients,
    unique,
    wait_until,
)
from matrix_harness import body_of, is_edit, is_room_notice, reply_to_of, sender_of, thread_root_of
from stack_fixtures import RUN_LOCK_HOLDERS, STACK_READY_SECONDS, private_stack

from devstack import Stack
from exobot.config import load_config

pytestmark = pytest.mark.integration

# The goal: IMAP IDLE is back within this long after Dovecot is up again.
IDLE_BACK_SECONDS = 60.0
# A duplicate post or mail would show up within this after the first (as in test_matrix_crash).
DUPLICATE_GRACE_SECONDS = 3.0
# Retries of the outboxes: enough to outlast any restart here (the test config's default, 30
# attempts 2 s apart, would give up on a Synapse that takes a minute to start on a busy machine).
OUTBOX = {"retry_base": "1s", "retry_max": "2s", "max_attempts": 1000}
# Private stacks start here (the session's start at 20000 + PID-derived offsets below 10000).
PRIVATE_BASE_PORT = 30000


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    """A private stack for this module (Dovecot, SMTP, Synapse unless EXOBOT_STACK_SYNAPSE=0,
    PostgreSQL when installed): its servers are restarted by the tests."""
    with private_stack("exobot-faults-", PRIVATE_BASE_PORT + (os.getpid() % 1000) * 10) as started:
        yield started


@pytest.fixture(autouse=True)
def _every_server_up(stack: Stack) -> Iterator[None]:
    """Each test starts and ends with every server of the private stack running (a test that
    failed half-way through a restart must not break the next one)."""
    yield
    for name in Stack.RESTARTABLE:
        if name in stack.pids:
            stack.start_service(name, STACK_READY_SECONDS)


# ---------------------------------------------------------------------------- helpers


class PgInstance(Instance):
    """An Instance on a PostgreSQL database: `query` through a short-lived connection."""

    def query(self, sql: str, **params: object) -> list[tuple]:
        """Run SQL on the instance's database (a fresh connection each time, so one made before
        a server restart is never reused)."""
        from sqlalchemy import create_engine, text
        from sqlalchemy.pool import NullPool

        from exobot.db.engine import sync_url

        engine = create_engine(sync_url(self.config.database.url), poolclass=NullPool)
        try:
            with engine.begin() as conn:
                result = conn.execute(text(sql), params)
                return [tuple(row) for row in result] if result.returns_rows else []
        finally:
            engine.dispose()


def make_config(stack: Stack, tmp: Path, *, matrix=None, web: bool = True, **mail) -> Path:
    """A config file for a fresh mailbox on the private stack, with patient outboxes."""
    listen = f"127.0.0.1:{free_port()}" if web else None
    data = instance_config(
        stack, tmp, matrix=matrix, web=listen, outbox=OUTBOX, **mail
    )  # fmt: skip
    if matrix is not None:
        data["matrix"]["store_path"] = str(tmp / "matrix")
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def instance(stack: Stack, tmp: Path, database_url: str | None = None, **kwargs) -> Instance:
    """An Instance (not started) on SQLite in `tmp`, or on `database_url` (PostgreSQL)."""
    path = make_config(stack, tmp, **kwargs)
    data = yaml.safe_load(path.read_text())
    if database_url is not None:
        data["database"]["url"] = database_url
        path.write_text(yaml.safe_dump(data))
    cls = PgInstance if database_url is not None else Instance
    return cls(stack, path, load_config(path, env={}), data["mail"]["address"], tmp / "exobot.db")


@pytest.fixture
async def instances(tmp_path_factory) -> Iterator[list[Instance]]:
    """Instances a test made; stopped at the end whatever happened."""
    made: list[Instance] = []
    yield made
    for inst in made:
        await inst.stop()


async def healthz(inst: Instance) -> httpx.Response | None:
    """GET /healthz (None when the web server does not answer at all)."""
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            return await client.get(inst.web_url + "/healthz")
    except httpx.HTTPError:
        return None


async def wait_healthy(inst: Instance, *components: str) -> dict:
    """Wait until /healthz answers 200 "ok" with each named component "ok"; returns the body."""

    async def healthy() -> dict | None:
        response = await healthz(inst)
        if response is None or response.status_code != 200:
            return None
        body = response.json()
        states = body["components"]
        if body["status"] != "ok" or any(states[c]["state"] != "ok" for c in components):
            return None
        return body

    return await wait_until(healthy, what=f"/healthz ok with {components} ok")


async def wait_component(inst: Instance, component: str, state: str) -> None:
    """Wait until /healthz shows `component` in `state` (the outage seen, not assumed)."""

    async def shown() -> bool:
        response = await healthz(inst)
        return response is not None and response.json()["components"][component]["state"] == state

    await wait_until(shown, what=f"/healthz to show {component} {state}")


def mta_send(stack: Stack, raw: bytes, sender: str, rcpt: str, timeout: float = DEADLINE) -> None:
    """Send like an MTA with a queue: a refused or failed attempt (the relay cannot reach
    Dovecot's LMTP while it restarts) is retried until the message is accepted."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            stack.send_mail(raw, sender, [rcpt])
            return
        except (smtplib.SMTPException, OSError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def raw_mail(msg) -> bytes:
    import email.policy

    return msg.as_bytes(policy=email.policy.SMTP)


async def titles(inst: Instance) -> list[str]:
    """Every ticket's title (one per mail in these tests), sorted."""
    return sorted(r[0] for r in await asyncio.to_thread(inst.query, "SELECT title FROM tickets"))


def intake_failures(caplog) -> int:
    """How many times IMAP intake has lost its connection or failed to reconnect so far."""
    return sum(
        1
        for r in caplog.records
        if r.name == "exobot.mail.intake" and "reconnecting in" in r.getMessage()
    )


# ----------------------------------------------------------------------------- Dovecot


async def test_dovecot_restarted_idle_back_within_60s_and_no_mail_missed(
    stack: Stack, tmp_path, instances, caplog
):
    """Dovecot (IMAP and LMTP) restarted twice: mail that an MTA holds during the outage,
    mail delivered before exobot reconnects and mail after each restart each become one
    ticket; IDLE is back within 60 s of Dovecot being up, the second time as fast as the
    first (a long outage must not leave the reconnection backoff high)."""
    caplog.set_level(logging.WARNING, logger="exobot.mail.intake")
    # Polling every 10 minutes: a mail processed within seconds came by IDLE.
    inst = instance(stack, tmp_path, web=True, imap={"poll_interval": "600s"})
    instances.append(inst)
    await inst.start()
    intake = inst.app.intake
    expected: list[str] = []

    async def mail(tag: str) -> None:
        member = unique("membre")
        subject = f"Avaria {tag}"
        expected.append(subject)
        msg = member_mail(member, inst.address, subject=subject)
        await asyncio.to_thread(mta_send, stack, raw_mail(msg), member, inst.address)

    await mail("abans")
    await inst.wait_tickets(1)
    # Round 1: down long enough for five failed attempts (backoff 1+2+4+8 s); round 2: three.
    for round_, failures in ((1, 5), (2, 3)):
        before = intake_failures(caplog)
        await asyncio.to_thread(stack.stop_service, "dovecot")

        async def failed(before=before, failures=failures) -> bool:
            return intake_failures(caplog) >= before + failures

        await wait_until(failed, what=f"{failures} failed IMAP reconnections (round {round_})")
        assert not intake.connected.is_set()
        await wait_component(inst, "imap", "failing")
        # Accepted by "the MTA" now, delivered by it once LMTP answers again.
        held = asyncio.create_task(mail(f"retinguda {round_}"))
        await asyncio.sleep(0)
        await asyncio.to_thread(stack.start_service, "dovecot", STACK_READY_SECONDS)
        up = time.monotonic()
        await held
        if not intake.connected.is_set():
            await mail(f"abans de reconnectar {round_}")  # lands before exobot is back
        await asyncio.wait_for(intake.connected.wait(), DEADLINE)
        reconnected = time.monotonic() - up
        assert reconnected < IDLE_BACK_SECONDS, f"IMAP back {reconnected:.0f} s after Dovecot"
        await inst.wait_tickets(len(expected))
        # Every earlier mail is in: this one can only come by an IDLE push (polling is 600 s).
        await mail(f"després {round_}")
        await inst.wait_tickets(len(expected), timeout=IDLE_BACK_SECONDS)
        processed = time.monotonic() - up
        assert processed < IDLE_BACK_SECONDS + 30, f"mail after restart took {processed:.0f} s"
        print(f"round {round_}: IMAP back {reconnected:.1f} s, IDLE mail in {processed:.1f} s")

    await asyncio.sleep(DUPLICATE_GRACE_SECONDS)
    assert await titles(inst) == sorted(expected)  # every mail once, none twice
    states = inst.query("SELECT state, count(*) FROM inbound_mail GROUP BY state")
    assert states == [("done", len(expected))], states
    await wait_healthy(inst, "imap")


# ------------------------------------------------------------------------------ Matrix


class Room:
    """The volunteer's view of one queue room: commands sent and the bot's messages in it."""

    def __init__(self, inst: Instance, setup, vol) -> None:
        self.inst, self.setup, self.vol = inst, setup, vol
        self.id = setup.rooms["suport"]
        self.bot = setup.bot_user_id

    def bot_messages(self) -> list[dict]:
        """The bot's messages (no edits of roots, no room notices)."""
        return [
            e
            for e in self.vol.events(self.id)
            if sender_of(e) == self.bot
            and e.get("type") == "m.room.message"
            and not is_edit(e)
            and not is_room_notice(e)
        ]

    def roots(self, number: int) -> list[dict]:
        """The root messages naming ticket `number` (in the main timeline)."""
        return [
            e
            for e in self.bot_messages()
            if f"suport#{number}" in (body_of(e) or "") and thread_root_of(e) is None
        ]

    def answers(self, command: str) -> list[dict]:
        """The bot's answers to one command (its replies to that event)."""
        return [e for e in self.bot_messages() if reply_to_of(e) == command]

    async def wait_root(self, number: int) -> dict:
        """Wait for ticket `number`'s root message; returns it."""
        return await self.vol.wait_for(
            self.id,
            lambda e: e in self.roots(number),
            what=f"the root message of suport#{number}",
        )

    async def wait_answers(self, commands: list[str]) -> None:
        """Wait until every command has at least one answer."""

        async def answered() -> bool:
            return all(self.answers(c) for c in commands)

        await wait_until(answered, what=f"answers to {len(commands)} command(s)")

    def comments(self) -> list[str]:
        """The bodies of every comment entry, oldest first."""
        return [
            r[0]
            for r in self.inst.query("SELECT body FROM entries WHERE kind = 'comment' ORDER BY id")
        ]


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypted"])
async def test_synapse_restarted_commands_once_and_roots_posted_once(
    stack: Stack, tmp_path, instances, matrix_setup, volunteer, encrypted
):
    """Synapse restarted under a running exobot: commands sent just before the stop (perhaps
    not yet synced by exobot) and just after the start are each handled and answered once;
    a ticket opened by mail while Synapse is down gets its root message once it is back,
    readable in an encrypted room even when the bot needed a new room key during the outage;
    /healthz shows the outage and is ok again after."""
    setup = matrix_setup(encrypted={"suport"} if encrypted else ())
    inst = instance(stack, tmp_path, matrix=setup, web=True)
    instances.append(inst)
    await inst.start()
    vol = await volunteer(setup)
    room = Room(inst, setup, vol)
    if encrypted:
        await vol.wait_member(room.id, setup.bot_user_id)
    first = unique("membre")
    await inst.send(member_mail(first, inst.address, subject="Abans de la caiguda"))
    await inst.wait_tickets(1)
    root = (await room.wait_root(1))["event_id"]
    await wait_healthy(inst, "matrix", "imap")

    commands = [await vol.send(room.id, f"!comment abans {i}", thread_root=root) for i in (1, 2)]
    await asyncio.to_thread(stack.stop_service, "synapse")
    await wait_component(inst, "matrix", "failing")
    if encrypted:
        # The bot's room key is used up just now (nio: after 100 messages or a week): the
        # root below needs a new one, whose to-device requests fail while Synapse is down.
        inst.app.matrix.nio.invalidate_outbound_session(room.id)
    # A member writes while the homeserver is away: the ticket is made, its root must wait.
    second = unique("membre")
    await inst.send(member_mail(second, inst.address, subject="Durant la caiguda"))
    await inst.wait_tickets(2)
    await inst.wait_mailbox(second, 1)  # mail does not wait for Matrix
    await asyncio.to_thread(stack.start_service, "synapse", STACK_READY_SECONDS)
    commands.append(await vol.send(room.id, "!comment després", thread_root=root))

    await room.wait_answers(commands)
    await room.wait_root(2)
    await wait_healthy(inst, "matrix", "imap")
    await inst.wait_outbox_idle()
    await asyncio.sleep(DUPLICATE_GRACE_SECONDS)  # a second answer or root would show now
    assert room.comments() == ["abans 1", "abans 2", "després"]
    for command in commands:
        assert len(room.answers(command)) == 1, [body_of(e) for e in room.answers(command)]
    assert len(room.roots(1)) == 1 and len(room.roots(2)) == 1
    assert inst.query("SELECT state, count(*) FROM outbox GROUP BY state") == [
        ("sent", len(inst.query("SELECT id FROM outbox")))
    ]
    assert len(inst.mailbox(first)) == 1 and len(inst.mailbox(second)) == 1


# -------------------------------------------------------------------------- PostgreSQL


async def api_retrying(
    api: httpx.AsyncClient, path: str, body: dict, key: str, refusals: list[int] | None = None
) -> httpx.Response:
    """POST with an Idempotency-Key until the server answers 2xx (as a careful API client
    does through an outage: the key makes a repeat of a request that did land harmless).
    The status of every answer that was not a success goes to `refusals`."""

    async def answered() -> httpx.Response | None:
        try:
            response = await api.post(path, json=body, headers={"Idempotency-Key": key})
        except httpx.HTTPError:
            return None
        if not response.is_success and refusals is not None:
            refusals.append(response.status_code)
        return response if response.is_success else None

    return await wait_until(answered, timeout=3 * DEADLINE, what=f"POST {path} ({key})")


async def test_postgresql_restarted_exobot_reconnects_and_loses_nothing(
    stack: Stack, tmp_path, instances, matrix_setup, volunteer
):
    """PostgreSQL restarted (fast shutdown, start) while mails arrive, a volunteer gives
    commands and an API client replies: every mail becomes one ticket with one
    acknowledgement, every command is handled and answered once, every API reply is mailed
    once, and /healthz is 200 again."""
    if stack.postgres_port is None:
        pytest.skip("the test stack runs without PostgreSQL")
    setup = matrix_setup()
    inst = instance(stack, tmp_path, database_url=stack.postgres_url(), matrix=setup, web=True)
    instances.append(inst)
    await inst.start()
    vol = await volunteer(setup)
    room = Room(inst, setup, vol)
    first = unique("membre")
    await inst.send(member_mail(first, inst.address, subject="Correu 0"))
    await inst.wait_tickets(1)
    root = (await room.wait_root(1))["event_id"]
    await inst.wait_mailbox(first, 1)
    web, api, _session = await operator_clients(inst, setup.volunteer_user_id, "faults")
    members = [first]

    async def mail(i: int) -> None:
        member = unique("membre")
        members.append(member)
        msg = member_mail(member, inst.address, subject=f"Correu {i}")
        await asyncio.to_thread(mta_send, stack, raw_mail(msg), member, inst.address)

    await asyncio.to_thread(stack.stop_service, "postgres")
    response = await healthz(inst)
    assert response is not None and response.status_code == 503, response
    # A page and an API call meanwhile are told to come back later, not a 500.
    for client in (web, api):
        refused = await client.get("/tickets/1")
        assert refused.status_code == 503 and "retry-after" in refused.headers, refused.text
    # While the database is down: mails arrive, commands are given, an API reply is tried.
    for i in (1, 2, 3):
        await mail(i)
    commands = [await vol.send(room.id, f"!comment caiguda {i}", thread_root=root) for i in (1, 2)]
    refusals: list[int] = []
    replies = [
        asyncio.create_task(
            api_retrying(
                api, "/tickets/1/actions/reply", {"text": "Resposta 1"}, "fault-r1", refusals
            )
        )
    ]
    await asyncio.to_thread(stack.start_service, "postgres", STACK_READY_SECONDS)
    for i in (4, 5):
        await mail(i)
    commands.append(await vol.send(room.id, "!comment tornada", thread_root=root))
    replies.append(
        asyncio.create_task(
            api_retrying(
                api, "/tickets/1/actions/reply", {"text": "Resposta 2"}, "fault-r2", refusals
            )
        )
    )

    await asyncio.gather(*replies)
    # The outage was answered as one: 503 (come back later), never a 500, nor a 403 from
    # an instance that stepped down and forgot who operates.
    assert set(refusals) <= {503}, refusals
    await inst.wait_tickets(6)
    await room.wait_answers(commands)
    body = await wait_healthy(inst, "database", "imap", "matrix")
    # The restart ended the leader lock's session: the instance stepped down and led again.
    assert body["leader"] is True
    assert inst.app.leadership is not None and inst.app.leadership.is_leader
    # It ended the run lock's session too: taken again, so `exobot restore` is refused.
    await wait_until(
        lambda: [mode for _, mode in inst.query(RUN_LOCK_HOLDERS)] == ["ShareLock"],
        what="the run lock to be held again",
    )
    await inst.wait_outbox_idle()
    for number in range(1, 7):
        await room.wait_root(number)
    mails = await inst.wait_mailbox(first, 3)  # the acknowledgement and the two replies
    for member in members[1:]:
        await inst.wait_mailbox(member, 1)
    await asyncio.sleep(DUPLICATE_GRACE_SECONDS)  # a duplicate would show now

    assert await titles(inst) == sorted(f"Correu {i}" for i in range(6))
    assert room.comments() == ["caiguda 1", "caiguda 2", "tornada"]
    for command in commands:
        assert len(room.answers(command)) == 1, [body_of(e) for e in room.answers(command)]
    for number in range(1, 7):
        assert len(room.roots(number)) == 1, number
    mails = inst.mailbox(first)
    texts = sorted(m.get_body(("plain",)).get_content() for m in mails)
    assert len(mails) == 3 and sum("Resposta 1" in t for t in texts) == 1, texts
    assert sum("Resposta 2" in t for t in texts) == 1, texts
    for member in members[1:]:
        assert len(inst.mailbox(member)) == 1, member
    assert inst.query("SELECT DISTINCT state FROM outbox") == [("sent",)]
    await api.aclose()
    await web.aclose()


async def test_a_command_seen_while_postgresql_refuses_connections_is_handled_once_after(
    stack: Stack, tmp_path, instances, matrix_setup, volunteer, caplog
):
    """The few seconds of a PostgreSQL restart before the leader notices, made long: the
    database refuses new connections and ends every session but the instance's lock sessions
    (so it stays leader and its Matrix client keeps syncing). A command synced meanwhile
    cannot be handled; it must not be dropped as a bad event but handled, once, when the
    database is back."""
    if stack.postgres_port is None:
        pytest.skip("the test stack runs without PostgreSQL")
    import psycopg
    from sqlalchemy.engine import make_url

    caplog.set_level(logging.WARNING, logger="exobot.matrix")
    url = stack.postgres_url()
    dbname = make_url(url).database
    admin_dsn = make_url(url).set(drivername="postgresql", database="postgres")

    def admin(sql: str) -> None:
        with psycopg.connect(admin_dsn.render_as_string(hide_password=False), autocommit=True) as c:
            c.execute(sql)

    setup = matrix_setup()
    inst = instance(stack, tmp_path, database_url=url, matrix=setup, web=True)
    instances.append(inst)
    await inst.start()
    vol = await volunteer(setup)
    room = Room(inst, setup, vol)
    await inst.send(member_mail(unique("membre"), inst.address, subject="Refusada"))
    await inst.wait_tickets(1)
    root = (await room.wait_root(1))["event_id"]

    def sync_failures() -> int:
        return sum(
            1
            for r in caplog.records
            if r.name == "exobot.matrix" and "sync failed" in r.getMessage()
        )

    before = sync_failures()
    await asyncio.to_thread(admin, f'ALTER DATABASE "{dbname}" ALLOW_CONNECTIONS false')
    try:
        await asyncio.to_thread(
            admin,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            f" WHERE datname = '{dbname}'"
            " AND pid NOT IN (SELECT pid FROM pg_locks WHERE locktype = 'advisory')",
        )
        command = await vol.send(room.id, "!comment sense base de dades", thread_root=root)

        def dropped() -> list[str]:
            return [
                r.getMessage()
                for r in caplog.records
                if "handling a Matrix event failed" in r.getMessage()
            ]

        async def tried() -> bool:
            return sync_failures() > before or bool(dropped())

        await wait_until(tried, what="exobot to fail handling the command's sync")
        assert not dropped(), "the command was dropped as a bad event"
        # Still the leader (its lock session was spared): the Matrix client never stopped.
        assert inst.app.leadership is not None and inst.app.leadership.is_leader
    finally:
        await asyncio.to_thread(admin, f'ALTER DATABASE "{dbname}" ALLOW_CONNECTIONS true')
    await room.wait_answers([command])
    await inst.wait_outbox_idle()
    await asyncio.sleep(DUPLICATE_GRACE_SECONDS)
    assert room.comments() == ["sense base de dades"]
    assert len(room.answers(command)) == 1, [body_of(e) for e in room.answers(command)]
    await wait_healthy(inst, "database", "matrix")


# A chat row that fails while Synapse is down waits this long before its next attempt: far
# longer than the test's deadline, so only the catch-up after the sync recovers can bring it.
LONG_BACKOFF_MINUTES = 10


async def test_a_root_that_backed_off_long_is_posted_as_soon_as_synapse_is_back(
    stack: Stack, tmp_path, instances, matrix_setup, volunteer
):
    """A ticket opened while Synapse is down: its root's chat row fails and backs off 10
    minutes; once the sync works again the row is made due at once, and the root is posted
    within the deadline (well before its backoff would end)."""
    from datetime import UTC, datetime, timedelta

    from exobot.delivery import RetryPolicy

    long_backoff = timedelta(minutes=LONG_BACKOFF_MINUTES)
    setup = matrix_setup()
    inst = instance(stack, tmp_path, matrix=setup, web=False)
    instances.append(inst)
    await inst.start()
    inst.app.poster.retry = RetryPolicy(max_attempts=1000, base=long_backoff, maximum=long_backoff)
    vol = await volunteer(setup)
    room = Room(inst, setup, vol)
    await asyncio.wait_for(inst.app.chat_ready.wait(), DEADLINE)

    await asyncio.to_thread(stack.stop_service, "synapse")
    member = unique("membre")
    await inst.send(member_mail(member, inst.address, subject="Durant una caiguda llarga"))
    await inst.wait_tickets(1)

    async def backed_off() -> bool:
        rows = inst.query(
            "SELECT attempts FROM outbox WHERE kind = 'chat' AND state = 'pending' AND attempts > 0"
        )
        return bool(rows)

    await wait_until(backed_off, what="the root's chat row to fail and back off")
    [(attempts, next_try)] = inst.query(
        "SELECT attempts, next_try_at FROM outbox WHERE kind = 'chat' AND state = 'pending'"
    )
    assert attempts >= 1
    due_in = datetime.fromisoformat(str(next_try)).replace(tzinfo=UTC) - datetime.now(UTC)
    assert due_in > long_backoff / 2, due_in  # without the catch-up: minutes from now
    await asyncio.to_thread(stack.start_service, "synapse", STACK_READY_SECONDS)
    back = time.monotonic()
    await room.wait_root(1)
    took = time.monotonic() - back
    print(f"root posted {took:.1f} s after Synapse was back (its row was due at {next_try})")
    await inst.wait_outbox_idle()
    assert len(room.roots(1)) == 1
