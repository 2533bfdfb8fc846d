"""Two `exobot run` processes on one PostgreSQL database, on the real stack: one leads, both
serve the web and the API; the leader killed with SIGKILL is replaced within 30 s and nothing
is lost or done twice; a kill during an SMTP send costs at most one duplicate with the same
Message-ID. A second `run` on SQLite refuses to start."""

from __future__ import annotations

import asyncio
import copy
import os
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
import yaml
from harness import (
    DEADLINE,
    ROOT,
    create_token_cli,
    free_port,
    instance_config,
    member_mail,
    unique,
    wait_until,
)
from matrix_harness import body_of, is_edit, reply_to_of, sender_of
from sqlalchemy import create_engine, text

from devstack.processes import forkservers
from exobot.db.engine import sync_url

pytestmark = pytest.mark.integration

FAILOVER_LIMIT_SECONDS = 30.0  # the promise
SETTLE_SECONDS = 3.0  # a duplicate (mail, answer) would show up within this after the first


class Runner:
    """One `exobot run` (or tests/crash_runner.py POINT) process with its own web port."""

    def __init__(self, name: str, config: Path, web_url: str, log: Path) -> None:
        self.name, self.config, self.web_url, self.log = name, config, web_url, log
        self.proc: subprocess.Popen | None = None

    def start(self, crash_point: str | None = None) -> None:
        command = [sys.executable, "-m", "exobot.cli", "run", "-c", str(self.config)]
        if crash_point is not None:
            command = [sys.executable, str(ROOT / "tests" / "crash_runner.py"), crash_point]
            command.append(str(self.config))
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                command,
                cwd=ROOT,
                env={**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'tests'}"},
                stdout=subprocess.DEVNULL,
                stderr=log,
            )

    def tail(self) -> str:
        return f"--- {self.name} ---\n" + self.log.read_text(errors="replace")[-4000:]

    async def health(self) -> dict | None:
        """/healthz's body, or None while the process does not answer."""
        try:
            async with httpx.AsyncClient(timeout=10) as client:
                response = await client.get(self.web_url + "/healthz")
        except httpx.HTTPError:
            return None
        return response.json() if response.status_code in (200, 503) else None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait()

    def stop(self) -> None:
        """SIGTERM, then SIGKILL when it does not end in time."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Pair:
    """Two instances with the same configuration (bar the web port) on one PostgreSQL."""

    def __init__(self, stack, tmp: Path, matrix=None, operators: list[str] | None = None) -> None:
        self.stack = stack
        self.url = stack.postgres_url()
        data = instance_config(stack, tmp, matrix=matrix, web="127.0.0.1:1")
        data["database"]["url"] = self.url
        if matrix is not None:
            # One store for both, as a shared volume would be: only the leader opens it.
            data["matrix"]["store_path"] = str(tmp / "matrix")
            # A follower has no Matrix sync to learn the queue rooms' members from.
            data["matrix"]["operators"] = operators or []
        self.address = data["mail"]["address"]
        self.runners: list[Runner] = []
        for name in ("a", "b"):
            port = free_port()
            config = copy.deepcopy(data)
            config["web"]["listen"] = f"127.0.0.1:{port}"
            path = tmp / f"config-{name}.yaml"
            path.write_text(yaml.safe_dump(config))
            self.runners.append(Runner(name, path, f"http://127.0.0.1:{port}", tmp / f"{name}.log"))
        self.engine = create_engine(sync_url(self.url))

    def scalar(self, sql: str, **params: object) -> object:
        with self.engine.connect() as conn:
            return conn.execute(text(sql), params).scalar()

    def query(self, sql: str, **params: object) -> list:
        with self.engine.connect() as conn:
            return list(conn.execute(text(sql), params))

    async def leaders(self) -> dict[str, bool] | None:
        """Each live runner's `leader` field, once every live one answers /healthz."""
        found = {}
        for runner in self.runners:
            if runner.proc is None or runner.proc.poll() is not None:
                continue
            body = await runner.health()
            if body is None:
                return None
            found[runner.name] = body["leader"]
        return found

    async def wait_one_leader(self, what: str) -> Runner:
        """Wait until exactly one live runner says it leads; returns it."""

        async def one() -> Runner | None:
            found = await self.leaders()
            if not found or sum(found.values()) != 1:
                return None
            return next(r for r in self.runners if found.get(r.name))

        return await wait_until(one, what=what)

    def other(self, runner: Runner) -> Runner:
        return next(r for r in self.runners if r is not runner)

    def tails(self) -> str:
        return "\n".join(r.tail() for r in self.runners)

    def close(self) -> None:
        for runner in self.runners:
            runner.stop()
        self.engine.dispose()


@pytest.fixture
def pair(stack, tmp_path):
    if stack.postgres_port is None:
        pytest.skip("the test stack runs without PostgreSQL")
    made: list[Pair] = []

    def make(**kwargs) -> Pair:
        made.append(Pair(stack, tmp_path, **kwargs))
        return made[-1]

    yield make
    for p in made:
        p.close()


def mailbox(stack, user: str) -> list:
    import email
    import email.policy

    return [
        email.message_from_bytes(raw, policy=email.policy.default)
        for _uid, raw in stack.fetch_all(user)
    ]


async def wait_mails(stack, user: str, count: int, timeout: float = DEADLINE) -> list:
    async def arrived() -> list | None:
        mails = await asyncio.to_thread(mailbox, stack, user)
        return mails if len(mails) >= count else None

    return await wait_until(arrived, timeout, f"{count} mail(s) for {user}")


async def send(stack, address: str, msg) -> None:
    import email.policy

    raw = msg.as_bytes(policy=email.policy.SMTP)
    await asyncio.to_thread(stack.send_mail, raw, msg["From"], [address])


async def test_the_follower_takes_over_a_killed_leader_and_nothing_is_lost_or_doubled(
    pair, stack, matrix_setup, volunteer
):
    setup = matrix_setup()
    vol = await volunteer(setup)
    room, bot = setup.rooms["suport"], setup.bot_user_id
    two = pair(matrix=setup, operators=[setup.volunteer_user_id])
    first, second = two.runners
    first.start()
    try:
        leader = await two.wait_one_leader("the first instance to lead")
        assert leader is first
        second.start()
        found = await wait_until(two.leaders, what="both instances answering /healthz")
        assert found == {"a": True, "b": False}, two.tails()
        follower = second
        body = await follower.health()
        assert body["status"] == "ok" and body["components"]["imap"]["state"] == "off"

        # A mail opens a ticket (the leader); a reply through the follower's API is mailed
        # by the leader.
        member = unique("member")
        await send(stack, two.address, member_mail(member, two.address, subject="Abans"))
        [ack] = await wait_mails(stack, member, 1)
        number = two.scalar("SELECT max(id) FROM tickets")
        token = await create_token_cli(follower.config, setup.volunteer_user_id)
        async with httpx.AsyncClient(
            base_url=follower.web_url + "/api/v1",
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        ) as api:
            asked = time.monotonic()
            replied = await api.post(
                f"/tickets/{number}/actions/reply", json={"text": "Resposta pel seguidor"}
            )
            assert replied.status_code == 200, replied.text
        mails = await wait_mails(stack, member, 2)
        print(f"reply through the follower mailed in {time.monotonic() - asked:.1f} s")
        [answer] = [m for m in mails if m["Message-ID"] != ack["Message-ID"]]
        assert "Resposta pel seguidor" in answer.get_content()
        # Parse workers start with the first mail: the leader has them, the follower never.
        assert forkservers(first.proc.pid) and not forkservers(follower.proc.pid)

        # The leader is killed while mails keep arriving and the volunteer sends commands.
        members = [unique("member") for _ in range(8)]
        commands: list[str] = []

        async def mails_arrive() -> None:
            for i, who in enumerate(members):
                await send(stack, two.address, member_mail(who, two.address, subject=f"M{i}"))
                await asyncio.sleep(0.7)

        async def commands_sent() -> None:
            for _ in range(6):
                commands.append(await vol.send(room, f"!show suport#{number}"))
                await asyncio.sleep(1.0)

        writers = asyncio.gather(mails_arrive(), commands_sent())
        await asyncio.sleep(1.5)  # some handled by the first leader, some left for the next
        killed = time.monotonic()
        first.kill()
        new_leader = await two.wait_one_leader("the follower to lead")
        led = time.monotonic() - killed
        assert new_leader is second
        # A mail sent the moment the follower leads: how long until the member has its
        # acknowledgement (IMAP login, processing, SMTP), counted from the kill.
        late = unique("member")
        await send(stack, two.address, member_mail(late, two.address, subject="Després"))
        await wait_mails(stack, late, 1)
        handled = time.monotonic() - killed
        await writers
        print(
            f"failover: kill -9 -> follower leads in {led:.1f} s; -> a new mail acknowledged"
            f" after {handled:.1f} s"
        )
        assert led < FAILOVER_LIMIT_SECONDS, two.tails()

        # Nothing lost, nothing done twice.
        for who in members:
            await wait_mails(stack, who, 1)

        async def answered() -> bool:
            replies = Counter(
                reply_to_of(e)
                for e in vol.events(room)
                if sender_of(e) == bot and not is_edit(e) and reply_to_of(e) in commands
            )
            return all(replies[c] >= 1 for c in commands)

        await wait_until(answered, what="an answer to every command")

        async def outbox_done() -> bool:
            return two.scalar("SELECT count(*) FROM outbox WHERE state = 'pending'") == 0

        await wait_until(outbox_done, what="the outbox to empty")
        await asyncio.sleep(SETTLE_SECONDS)
        replies = Counter(
            reply_to_of(e)
            for e in vol.events(room)
            if sender_of(e) == bot and not is_edit(e) and reply_to_of(e) in commands
        )
        assert all(replies[c] == 1 for c in commands), (replies, commands)
        assert all("Abans" in body_of(e) for e in vol.events(room) if reply_to_of(e) in commands)
        doubled = []
        for who in [*members, late]:
            got = await asyncio.to_thread(mailbox, stack, who)
            if len(got) == 2 and got[0]["Message-ID"] == got[1]["Message-ID"]:
                doubled.append(who)  # the kill fell inside that one SMTP exchange
            else:
                assert len(got) == 1, (who, [m["Subject"] for m in got])
        assert len(doubled) <= 1, doubled  # one send was under way at most
        subjects = [row[0] for row in two.query("SELECT title FROM tickets ORDER BY id")]
        assert sorted(subjects) == sorted(["Abans", *(f"M{i}" for i in range(8)), "Després"])
        mail_in = two.scalar("SELECT count(*) FROM entries WHERE kind = 'mail_in'")
        assert mail_in == 10  # each mail in exactly one ticket, once
        assert two.scalar("SELECT count(*) FROM outbox WHERE state != 'sent'") == 0
        assert two.scalar("SELECT count(*) FROM outbox WHERE attempts != 1") == 0, two.query(
            "SELECT id, kind, attempts, last_error FROM outbox WHERE attempts != 1"
        )
    except BaseException:
        print(two.tails())
        raise


async def test_a_leader_killed_during_an_smtp_send_mails_at_most_one_duplicate(pair, stack):
    two = pair()
    first, second = two.runners
    first.start(crash_point="during-smtp-send")
    try:
        assert await two.wait_one_leader("the crashing instance to lead") is first
        second.start()
        assert await wait_until(two.leaders, what="both answering") == {"a": True, "b": False}
        member = unique("member")
        await send(stack, two.address, member_mail(member, two.address, subject="Doble?"))

        async def died() -> bool:
            return first.proc.poll() is not None

        await wait_until(died, what="the leader to die during its SMTP send")
        assert first.proc.returncode == -9, two.tails()
        assert await two.wait_one_leader("the follower to lead") is second

        async def outbox_done() -> bool:
            return two.scalar("SELECT count(*) FROM outbox WHERE state = 'pending'") == 0

        await wait_until(outbox_done, what="the acknowledgement marked sent")
        await asyncio.sleep(SETTLE_SECONDS)
        mails = await asyncio.to_thread(mailbox, stack, member)
        # The SMTP server took the first copy before the kill, the new leader sent the row
        # again: at most twice, the same Message-ID (the member's client shows it once).
        assert len(mails) == 2, [m["Subject"] for m in mails]
        assert len({m["Message-ID"] for m in mails}) == 1
        assert two.scalar("SELECT count(*) FROM tickets") == 1
        assert two.scalar("SELECT state FROM outbox WHERE kind = 'mail'") == "sent"
    except BaseException:
        print(two.tails())
        raise


async def test_a_second_run_on_sqlite_refuses_to_start(make_instance):
    inst = make_instance()
    await inst.start()
    done = await asyncio.to_thread(inst.run_cli, "run", timeout=120)
    assert done.returncode != 0
    assert "exobot is already running on this database" in done.stderr, done.stderr
    assert inst.app.leadership.is_leader  # on SQLite the one instance always leads


async def test_the_leaders_parts_start_on_election_and_stop_on_step_down(make_instance):
    """One App whose leader lock is a fake (tests/test_leader.py): nothing is fetched while it
    follows, everything runs once elected, and stepping down stops intake and the workers."""
    from test_leader import FakeLock

    from exobot.app import App
    from exobot.leader import Leadership

    inst = make_instance(web=True)
    lock = FakeLock()
    inst.app = app = App(inst.config)
    app.leadership = Leadership(lock, retry_seconds=0.05, check_seconds=0.05)
    await app.start()
    member = unique("member")
    await inst.send(member_mail(member, inst.address, subject="Qui llegeix?"))

    async def health() -> dict:
        async with httpx.AsyncClient(timeout=30) as client:
            return (await client.get(inst.web_url + "/healthz")).json()

    body = await health()
    assert body["leader"] is False and body["components"]["imap"]["state"] == "off"
    assert app._leader_tasks == [] and not app.intake.connected.is_set()
    await asyncio.sleep(1.0)  # a follower fetching the mail would store it by now
    assert inst.scalar("SELECT count(*) FROM inbound_mail") == 0

    lock.taken_elsewhere = False  # the leader went away
    await asyncio.wait_for(app.intake.connected.wait(), DEADLINE)
    await wait_mails(inst.stack, member, 1)  # fetched, processed, acknowledged

    async def leads() -> bool:
        body = await health()
        return body["leader"] and body["components"]["imap"]["state"] != "off"

    await wait_until(leads, what="/healthz to say it leads")

    lock.taken_elsewhere, lock.broken = True, True  # its lock connection failed

    async def followed() -> bool:  # the parts' health is turned off once they have stopped
        stopped = not app.leadership.is_leader and not app._leader_tasks
        return stopped and app.sender.health.enabled is False

    await wait_until(followed, what="the leader's parts stopped")
    assert not app.intake.connected.is_set()
    assert not any(task.done() for task in app.tasks)  # web and the rest go on

    async def says_follower() -> bool:  # the report is cached for a second
        body = await health()
        return body["leader"] is False and body["components"]["imap"]["state"] == "off"

    await wait_until(says_follower, what="/healthz to say it follows")

    lock.taken_elsewhere = False  # elected again: the same parts start anew
    await asyncio.wait_for(app.intake.connected.wait(), DEADLINE)
    again = unique("member")
    await inst.send(member_mail(again, inst.address, subject="Altra vegada"))
    await wait_mails(inst.stack, again, 1)
    assert app.scheduler.health.enabled  # resumed
    assert len(inst.mailbox(member)) == 1  # nothing sent twice


class WatchedLock:
    """A FakeLock (tests/test_leader.py), free at first, that notes each time it is let go
    which of the leader's parts (`parts`) were still running."""

    def __init__(self) -> None:
        from test_leader import FakeLock

        self.lock = FakeLock()
        self.lock.taken_elsewhere = False
        self.parts: list[asyncio.Task] = []
        self.running_at_release: list[list[str]] = []

    def try_acquire(self) -> bool:
        return self.lock.try_acquire()

    def check(self) -> None:
        self.lock.check()

    def release(self) -> None:
        # In a thread: a task's done() is only read.
        self.running_at_release.append([t.get_name() for t in self.parts if not t.done()])
        self.lock.release()


async def leading_with(make_instance, lock: WatchedLock, slow_intake: asyncio.Event | None = None):
    """A running App on the stack whose leader lock is `lock`, returned once its parts run;
    with `slow_intake`, its IMAP intake, once cancelled, closes only when that is set."""
    from exobot.app import App
    from exobot.leader import Leadership

    inst = make_instance()
    inst.app = app = App(inst.config)
    app.leadership = Leadership(lock, retry_seconds=0.05, check_seconds=0.05)
    if slow_intake is not None:
        await app.build()
        run = app.intake.run

        async def slow_to_close() -> None:
            try:
                await run()
            finally:  # as with a server slow to answer LOGOUT
                await slow_intake.wait()

        app.intake.run = slow_to_close
    await app.start()

    async def parts_run() -> bool:
        return len(app._leader_tasks) >= 3

    await wait_until(parts_run, what="the leader's parts to start")
    lock.parts = list(app._leader_tasks)
    return inst, app


async def test_a_stopped_leader_lets_the_lock_go_only_once_its_parts_have_stopped(make_instance):
    """SIGTERM (App.stop): the other instance may lead as soon as the lock is free, so the
    leader's parts (intake, processing, the workers) must have ended by then; else two
    processes fetch and apply mail, or open one Matrix session, at once."""
    lock = WatchedLock()
    inst, _app = await leading_with(make_instance, lock)
    await inst.stop()
    assert lock.running_at_release, "the lock was never let go"
    assert all(running == [] for running in lock.running_at_release), lock.running_at_release


async def test_a_stop_during_a_step_down_still_ends_every_leader_part(make_instance):
    """SIGTERM while a step-down stops the leader's parts one by one, the intake slow to
    close: the others are stopped all the same, and stop() returns once every part ended."""
    lock, closed = WatchedLock(), asyncio.Event()
    inst, app = await leading_with(make_instance, lock, slow_intake=closed)
    parts = lock.parts
    intake = next(task for task in parts if task.get_name() == "imap-intake")
    lead = next(task for task in app.tasks if task.get_name() == "leader-parts")
    lock.lock.taken_elsewhere, lock.lock.broken = True, True  # its lock connection failed

    async def intake_closing() -> bool:
        return intake.cancelling() > 0

    await wait_until(intake_closing, what="the step-down to ask the intake to stop")
    stopping = asyncio.create_task(inst.stop())
    try:

        async def step_down_cut_short() -> bool:
            return lead.done()

        await wait_until(step_down_cut_short, what="stop() to cut the step-down short")
        closed.set()
        await asyncio.wait_for(stopping, DEADLINE)
        assert [task.get_name() for task in parts if not task.done()] == []
    finally:
        closed.set()
        for task in parts:  # whatever happened, nothing of this test runs on
            task.cancel()


_CSRF = re.compile(r'name="csrf" value="([^"]+)"')
KICK_LIMIT_SECONDS = 20.0  # the leader's next sync plus a follower's refresh, with room to spare


async def test_a_follower_knows_the_queue_rooms_operators_and_forgets_a_kicked_one(
    pair, stack, matrix_setup, volunteer
):
    """No matrix.operators: the leader records the queue rooms' members, so a volunteer who
    joins logs in to the follower's web with the password form and acts through its API; once
    kicked from the room, the follower refuses both within seconds."""
    from urllib.parse import quote

    from devstack.matrix_setup import _call

    setup = matrix_setup()
    await volunteer(setup)
    room = setup.rooms["suport"]
    helper = matrix_setup()  # another volunteer, in none of these rooms yet
    two = pair(matrix=setup)  # no operators configured: the rooms say who operates
    first, second = two.runners
    first.start()
    try:
        assert await two.wait_one_leader("the first instance to lead") is first
        second.start()
        found = await wait_until(two.leaders, what="both instances answering /healthz")
        assert found == {"a": True, "b": False}, two.tails()
        follower = second
        member = unique("member")
        await send(stack, two.address, member_mail(member, two.address, subject="Seguidor"))
        await wait_mails(stack, member, 1)
        number = two.scalar("SELECT max(id) FROM tickets")
        token = await create_token_cli(follower.config, helper.volunteer_user_id)
        headers = {"Authorization": f"Bearer {token}"}

        async with httpx.AsyncClient(timeout=30) as http:

            async def api_status() -> int:
                got = await http.get(f"{follower.web_url}/api/v1/me", headers=headers)
                return got.status_code

            # Not in the room: the follower refuses the token.
            assert await api_status() in (401, 403)

            # Invited and joined: the leader's sync sees it, records it, the follower reads it.
            room_path = quote(room, safe="")
            await asyncio.to_thread(
                _call,
                stack,
                "POST",
                f"/_matrix/client/v3/rooms/{room_path}/invite",
                setup.volunteer_access_token,
                {"user_id": helper.volunteer_user_id},
            )
            await asyncio.to_thread(
                _call,
                stack,
                "POST",
                f"/_matrix/client/v3/join/{room_path}",
                helper.volunteer_access_token,
                {},
            )

            async def accepted() -> bool:
                return await api_status() == 200

            await wait_until(accepted, what="the follower to accept the joined volunteer")
            replied = await http.post(
                f"{follower.web_url}/api/v1/tickets/{number}/actions/reply",
                headers=headers,
                json={"text": "Resposta del voluntari nou"},
            )
            assert replied.status_code == 200, replied.text
            await wait_mails(stack, member, 2)

            # The password form on the follower's web (the homeserver checks the password).
            async with httpx.AsyncClient(timeout=30) as browser:
                form = await browser.get(follower.web_url + "/login")
                fields = {
                    "user": helper.volunteer_user_id,
                    "password": helper.volunteer_password,
                    "csrf": _CSRF.search(form.text).group(1),
                }
                logged = await browser.post(follower.web_url + "/login", data=fields)
                assert logged.status_code == 303, logged.text
                assert (await browser.get(follower.web_url + "/")).status_code == 200

                # Kicked: the follower refuses the session and the token within seconds.
                kicked = time.monotonic()
                await asyncio.to_thread(
                    _call,
                    stack,
                    "POST",
                    f"/_matrix/client/v3/rooms/{room_path}/kick",
                    setup.volunteer_access_token,
                    {"user_id": helper.volunteer_user_id, "reason": "test"},
                )

                async def refused() -> bool:
                    page = await browser.get(follower.web_url + "/")
                    return page.status_code != 200 and await api_status() in (401, 403)

                await wait_until(refused, what="the follower to refuse the kicked volunteer")
                took = time.monotonic() - kicked
                print(f"kicked -> refused by the follower after {took:.1f} s")
                assert took < KICK_LIMIT_SECONDS, two.tails()
                # The record on the database says the same.
                record = two.scalar("SELECT value FROM state WHERE key = 'matrix.operators'")
                assert helper.volunteer_user_id not in record
                assert setup.volunteer_user_id in record
    except BaseException:
        print(two.tails())
        raise
