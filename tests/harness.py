"""pytest plugin: exobot instances wired to the session's real stack, and mail helpers."""

from __future__ import annotations

import asyncio
import email
import email.policy
import inspect
import itertools
import os
import random
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

import pytest
import yaml

from devstack.exobot_config import exobot_config
from exobot.app import App
from exobot.config import Config, load_config
from exobot.core.clock import Clock

ROOT = Path(__file__).resolve().parent.parent
_counter = itertools.count(1)

# How long a test waits for something that crosses a real server (the mail stack, Synapse)
# before it fails. A wait returns as soon as its condition holds, so a generous deadline costs
# nothing on a fast machine and keeps a busy one (2 cores, other work going on) from failing a
# test that would have passed a few seconds later. EXOBOT_TEST_DEADLINE overrides it.
DEADLINE = float(os.environ.get("EXOBOT_TEST_DEADLINE", "90"))


def unique(prefix: str) -> str:
    """A fresh address on the stack's domain (every address is a mailbox there)."""
    return f"{prefix}-{next(_counter)}-{uuid.uuid4().hex[:6]}@example.org"


async def wait_until(
    condition: Callable[[], Awaitable[object] | object],
    timeout: float = DEADLINE,
    what: str = "condition",
) -> object:
    """Poll a condition (plain or async) until it is truthy; fail the test with `what` on
    timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.05)


def member_mail(
    sender: str,
    to: str,
    subject: str = "No em funciona internet",
    body: str = "Hola, des d'ahir no tinc connexió.",
    **headers: str,
) -> EmailMessage:
    """A plain member mail with a fresh Message-ID; extra headers as keyword arguments."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = make_msgid(domain="member.example.org")
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content(body)
    return msg


@dataclass
class Instance:
    """One exobot configuration on the stack: its own support mailbox and database."""

    stack: object
    config_path: Path
    config: Config
    address: str
    db_path: Path
    app: App | None = None
    clock: Clock | None = None  # the App's clock (tests/clocks.py); None: the system's

    @property
    def web_url(self) -> str:
        """The web server's base URL (the config must have `web` on)."""
        return self.config.web.root

    async def start(self) -> App:
        """Start exobot in this event loop and wait until IMAP intake is watching."""
        self.app = App(self.config, clock=self.clock)
        await self.app.start()
        await asyncio.wait_for(self.app.intake.connected.wait(), DEADLINE)
        if self.app.matrix is not None:
            await asyncio.wait_for(self.app.chat_ready.wait(), DEADLINE)
        return self.app

    async def stop(self) -> None:
        """Stop the running exobot, if any."""
        if self.app is not None:
            await self.app.stop()
            self.app = None

    async def send(self, msg: EmailMessage) -> None:
        """Deliver a member's mail to the support address through the SMTP server."""
        raw = msg.as_bytes(policy=email.policy.SMTP)
        await asyncio.to_thread(
            self.stack.send_mail, raw, msg["From"] or "x@example.org", [self.address]
        )

    async def deliver_raw(self, raw: bytes, mail_from: str = "someone@member.example.org") -> None:
        """Deliver raw bytes into the support mailbox (LMTP: exactly as given). Dovecot turns
        the envelope sender into Return-Path; bounces come with an empty one."""
        await asyncio.to_thread(self.stack.deliver_lmtp, raw, self.address, mail_from)

    def query(self, sql: str, **params: object) -> list[tuple]:
        """Run SQL on this instance's database (a separate sync connection). It blocks the
        event loop: a write while exobot runs in this loop belongs in asyncio.to_thread."""
        import sqlite3

        with sqlite3.connect(self.db_path, timeout=30) as conn:
            return conn.execute(sql, params).fetchall()

    def scalar(self, sql: str, **params: object) -> object:
        """The first column of the first row."""
        rows = self.query(sql, **params)
        return rows[0][0] if rows else None

    async def wait_tickets(self, count: int, timeout: float = DEADLINE) -> None:
        """Wait until the database holds `count` tickets."""

        async def enough() -> bool:
            return self.scalar("SELECT count(*) FROM tickets") >= count

        await wait_until(enough, timeout, f"{count} ticket(s)")

    async def wait_inbound_done(self, count: int, timeout: float = DEADLINE) -> None:
        """Wait until `count` stored mails have left the `received` state."""

        async def done() -> bool:
            return (
                self.scalar("SELECT count(*) FROM inbound_mail WHERE state != 'received'") >= count
            )

        await wait_until(done, timeout, f"{count} processed mail(s)")

    async def wait_outbox_idle(self, timeout: float = DEADLINE) -> None:
        """Wait until no mail is pending in the outbox."""

        async def idle() -> bool:
            return self.scalar("SELECT count(*) FROM outbox WHERE state = 'pending'") == 0

        await wait_until(idle, timeout, "the outbox to empty")

    def mailbox(self, user: str) -> list[email.message.EmailMessage]:
        """Every mail in a member's mailbox, parsed."""
        return [
            email.message_from_bytes(raw, policy=email.policy.default)
            for _uid, raw in self.stack.fetch_all(user)
        ]

    async def wait_mailbox(self, user: str, count: int, timeout: float = DEADLINE) -> list:
        """Wait until a member's mailbox holds `count` mails; returns them."""

        async def arrived() -> list | None:
            mails = await asyncio.to_thread(self.mailbox, user)
            return mails if len(mails) >= count else None

        return await wait_until(arrived, timeout, f"{count} mail(s) for {user}")

    def run_cli(
        self, *args: str, config: Path | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess:
        """Run `exobot ARGS -c CONFIG` (this instance's config by default) as a separate process."""
        config = config or self.config_path
        return subprocess.run(
            [sys.executable, "-m", "exobot.cli", *args, "-c", str(config)],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )


def instance_config(
    stack,
    tmp: Path,
    *,
    matrix: object | None = None,
    alerts: dict | None = None,
    web: str | None = None,
    **mail_overrides: object,
) -> dict:
    """A configuration (as data) for a fresh support mailbox on the stack, with short retry
    and poll times so tests run fast; with `matrix` (a devstack MatrixSetup) the bot joins
    its rooms."""
    mail = {
        "imap": {"poll_interval": "5s"},
        "smtp": {"timeout": "5s"},
        "outbox": {"retry_base": "1s", "retry_max": "2s", "max_attempts": 30},
    }
    for key, value in mail_overrides.items():
        if isinstance(value, dict):
            mail.setdefault(key, {}).update(value)
        else:
            mail[key] = value
    # No daily digest unless a test asks: it would post whenever a test runs after 09:00.
    alerts = {"digest_at": None} | (alerts or {})
    return exobot_config(
        stack,
        address=unique("suport"),
        database_url=f"sqlite:///{tmp / 'exobot.db'}",
        matrix=matrix,
        alerts=alerts,
        web=web,
        **mail,
    )


# The tests' own servers (web, metrics) listen on ports below the stack's (devstack: from
# 20000) and below the kernel's range for the local ports of outgoing connections (from
# 32768): a port the kernel chose for us could be taken by any connection opened before the
# test binds it (it happened: "metrics.listen: ... Address already in use").
TEST_PORTS = range(10000, 20000)
_handed_out: set[int] = set()  # never the same port twice in a session


def free_port() -> int:
    """A TCP port nobody listens on right now, from TEST_PORTS."""
    for _ in range(200):
        port = random.choice(TEST_PORTS)
        if port in _handed_out:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free port in {TEST_PORTS}")


@pytest.fixture
async def make_instance(stack, tmp_path_factory):
    """Factory: a new exobot Instance (own mailbox, own database); stopped at the end."""
    made: list[Instance] = []

    def make(
        *,
        matrix: object | None = None,
        alerts: dict | None = None,
        web: bool = False,
        clock: Clock | None = None,
        tickets: dict | None = None,
        **mail_overrides: object,
    ) -> Instance:
        tmp = tmp_path_factory.mktemp("exobot")
        listen = f"127.0.0.1:{free_port()}" if web else None
        data = instance_config(
            stack, tmp, matrix=matrix, alerts=alerts, web=listen, **mail_overrides
        )
        data["tickets"].update(tickets or {})  # e.g. legacy_tags, first_number
        path = tmp / "config.yaml"
        path.write_text(yaml.safe_dump(data))
        inst = Instance(
            stack,
            path,
            load_config(path, env={}),
            data["mail"]["address"],
            tmp / "exobot.db",
            clock=clock,
        )
        made.append(inst)
        return inst

    yield make
    for inst in made:
        await inst.stop()


@pytest.fixture
async def bot(make_instance):
    """A running exobot on a fresh mailbox and database."""
    inst = make_instance()
    await inst.start()
    yield inst
    await inst.stop()


async def operator_clients(inst: Instance, user_id: str, token_name: str):
    """A logged-in web client (session cookie), an API client (bearer token) on the running
    instance's web server, and the session (its CSRF token), for `user_id`."""
    from datetime import UTC, datetime, timedelta

    import httpx

    from exobot.db import web as records
    from exobot.web.auth import SESSION_COOKIE

    now = datetime.now(UTC)
    async with inst.app.repository.connection() as conn:
        cookie, session = await records.create_session(conn, user_id, timedelta(hours=1), now)
        token = await records.create_api_token(conn, token_name, user_id, now)
    web = httpx.AsyncClient(base_url=inst.web_url, cookies={SESSION_COOKIE: cookie}, timeout=30)
    api = httpx.AsyncClient(
        base_url=inst.web_url + "/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=30
    )
    return web, api, session


async def create_token_cli(
    config: Path, user: str, name: str = "t1", env: dict | None = None
) -> str:
    """An API token for `user`, made by `exobot token create` in a subprocess (as an
    administrator would, against the running instance's configuration)."""
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "exobot.cli", "token", "create", name, "--user", user]
        + ["-c", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env=env or {**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stderr
    [token] = [line for line in done.stdout.splitlines() if line.startswith("exo_")]
    return token
