"""An SMTP server that cannot be reached is no refusal of the mail: the mail waits, with the
capped backoff, however long the outage, and is sent once when the server is back; a refusal of
the mail itself (5xx, a 4xx repeated) is still given up after the attempts it is allowed.

Against a scriptable SMTP server on 127.0.0.1 (real connections, the real aiosmtplib client),
with the fake clock for the waits; on SQLite and on PostgreSQL, with the repository as the App
builds it. The send helper follows the same rule: it leaves such a mail untouched and tries no
other one."""

from __future__ import annotations

import asyncio
import copy
import socket
from datetime import UTC, datetime, timedelta

import aiosmtplib
import pytest
from clocks import FakeClock
from sqlalchemy import select

from exobot.db.tables import OutboxRow
from exobot.delivery import RetryPolicy, Unreachable
from exobot.health import FAILING, OK
from exobot.mail.compose import TemplateRenderer
from exobot.mail.outbound import MailSender, SmtpSettings
from exobot.mail.send_helper import HelperSender
from tests.mail.test_outbound_cc import PAYLOAD as CC_PAYLOAD

O = OutboxRow.__table__  # noqa: E741
T0 = datetime(2026, 11, 23, 19, 0, tzinfo=UTC)
# The configuration's defaults (mail.outbox): 10 attempts, 30 s doubling up to an hour.
POLICY = RetryPolicy(10, timedelta(seconds=30), timedelta(hours=1))
PAYLOAD = {key: value for key, value in CC_PAYLOAD.items() if key != "cc"}
DROP = "drop"  # a reply that is no reply: the server closes the connection without a word


class Relay:
    """A scriptable SMTP server. `replies` maps a step (CONNECT for the greeting, a command's
    verb, DOT for the end of a mail's data) to the reply to give, or DROP; the others are
    accepted. `accepted` holds the mails it answered 250 to after their data."""

    def __init__(self) -> None:
        self.replies: dict[str, str] = {}
        self.connections = 0
        self.accepted: list[bytes] = []
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        """Listen (again, on the same port once it has one)."""
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Close the port and every connection: connecting is refused from now on."""
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        await self._server.wait_closed()

    async def _answer(self, writer: asyncio.StreamWriter, step: str, default: str) -> bool:
        reply = self.replies.get(step, default)
        if reply == DROP:
            return False
        writer.write(f"{reply}\r\n".encode())
        await writer.drain()
        return not reply.startswith("421")  # "closing transmission channel"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        try:
            if not await self._answer(writer, "CONNECT", "220 relay.test ESMTP"):
                return
            while line := await reader.readline():
                verb = line[:4].decode("ascii", "replace").upper()
                if verb == "QUIT":
                    writer.write(b"221 bye\r\n")
                    return
                default = {
                    "EHLO": "250-relay.test\r\n250-8BITMIME\r\n250 SMTPUTF8",
                    "DATA": "354 go ahead",
                }.get(verb, "250 ok")
                if not await self._answer(writer, verb, default):
                    return
                if verb == "DATA":
                    data = b""
                    while (chunk := await reader.readline()) not in (b".\r\n", b""):
                        data += chunk
                    reply = self.replies.get("DOT", "250 queued")
                    if reply.startswith("250"):
                        self.accepted.append(data)
                    if not await self._answer(writer, "DOT", reply):
                        return
        finally:
            writer.close()
            self._writers.discard(writer)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def repo(app_repo):  # noqa: ANN001, ANN201 - the repository as the App builds it, both backends
    return app_repo


@pytest.fixture
async def relay():  # noqa: ANN201
    server = Relay()
    await server.start()
    yield server
    if server._server is not None and server._server.is_serving():
        await server.stop()


def mail_worker(repo, relay: Relay, clock: FakeClock, cls: type = MailSender):  # noqa: ANN001, ANN201
    """The mail worker as the configuration's defaults set it up, sending to `relay`."""
    return cls(
        repo,
        None,  # its mails are of no ticket: nothing to record on one
        SmtpSettings("127.0.0.1", relay.port, security="none", timeout=30),
        TemplateRenderer(),
        from_address="suport@example.org",
        from_name="Suport eXO",
        loop_marker="exobot-test",
        retry=POLICY,
        clock=clock,
    )


async def queue(repo, clock: FakeClock, count: int = 1) -> list[int]:  # noqa: ANN001
    """Queue `count` mails (of no ticket, each its own Message-ID) at the clock's time."""

    async def work(uow) -> list[int]:  # noqa: ANN001
        ids = []
        for n in range(count):
            payload = copy.deepcopy(PAYLOAD) | {"message_id": f"<exobot.3.{n}@example.org>"}
            ids.append(await uow.queue_outbox("mail", None, payload))
        return ids

    return await repo.run(work, now=clock.now())


async def row(repo, item_id: int):  # noqa: ANN001, ANN201
    async with repo.connection() as conn:
        return (await conn.execute(select(O).where(O.c.id == item_id))).one()


def aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


async def one_pass(worker: MailSender) -> int:
    """One pass of the worker, its kept connections closed after it (each pass connects)."""
    delivered = await worker.deliver_due()
    await worker.close()
    return delivered


async def until_due(repo, clock: FakeClock, item_id: int):  # noqa: ANN001, ANN201
    """Move the clock to the row's next try; returns the row as it was."""
    current = await row(repo, item_id)
    clock.advance(max(timedelta(0), aware(current.next_try_at) - clock.now()))
    return current


async def test_three_days_unreachable_then_the_mail_goes_once(repo, relay, clock):  # noqa: ANN001
    await relay.stop()  # the relay is down: its port refuses connections
    worker = mail_worker(repo, relay, clock)
    [mail] = await queue(repo, clock)
    waits = []
    while clock.now() < T0 + timedelta(days=3):
        tried_at = clock.now()
        assert await one_pass(worker) == 0
        current = await until_due(repo, clock, mail)
        assert (current.state, current.attempts) == ("pending", 0), current.last_error
        assert current.last_error.startswith("the SMTP server could not be reached")
        waits.append(aware(current.next_try_at) - tried_at)
        # An administrator sees it: the worker is failing, and stays so (before: "ok" again
        # once the mail was given up, after about three hours, the server still away).
        assert worker.health.state(clock.now()) == FAILING
    # Backoff doubling from 30 s to its cap, never beyond: about one try an hour.
    assert max(waits) == timedelta(hours=1) and min(waits) == timedelta(seconds=30)
    assert 72 <= len(waits) <= 90, len(waits)
    assert worker.failed_attempts == len(waits)

    await relay.start()  # back, on the same port
    await until_due(repo, clock, mail)
    assert await one_pass(worker) == 1
    done = await row(repo, mail)
    assert (done.state, done.attempts) == ("sent", 1)
    assert len(relay.accepted) == 1 and b"exobot.3.0@example.org" in relay.accepted[0]
    assert worker.health.state(clock.now()) == OK
    clock.advance(hours=2)
    assert await one_pass(worker) == 0 and len(relay.accepted) == 1  # once


async def test_a_550_refusal_is_still_given_up_at_once_after_an_outage(repo, relay, clock):  # noqa: ANN001
    worker = mail_worker(repo, relay, clock)
    [mail] = await queue(repo, clock)
    relay.replies["CONNECT"] = "421 4.3.2 service not available, try later"
    for _ in range(15):  # more tries than the attempts allowed
        assert await one_pass(worker) == 0
        await until_due(repo, clock, mail)
    assert (await row(repo, mail)).attempts == 0
    relay.replies = {"RCPT": "550 5.1.1 no such user"}
    assert await one_pass(worker) == 0
    given_up = await row(repo, mail)
    assert (given_up.state, given_up.attempts) == ("failed", 1)
    assert "550" in given_up.last_error and relay.accepted == []


async def test_a_4xx_about_the_recipient_repeated_is_given_up_after_the_last_attempt(
    repo, relay, clock
):
    worker = mail_worker(repo, relay, clock)
    [mail] = await queue(repo, clock)
    relay.replies["CONNECT"] = DROP  # connection lost before the greeting: unreachable
    for _ in range(12):
        await one_pass(worker)
        await until_due(repo, clock, mail)
    relay.replies = {"RCPT": "452 4.2.2 mailbox full"}
    for attempt in range(1, POLICY.max_attempts):
        await one_pass(worker)
        current = await until_due(repo, clock, mail)
        assert (current.state, current.attempts) == ("pending", attempt)
    await one_pass(worker)
    given_up = await row(repo, mail)
    assert (given_up.state, given_up.attempts) == ("failed", POLICY.max_attempts)
    assert given_up.last_error.startswith(f"gave up after {POLICY.max_attempts} attempts")


async def test_connection_lost_before_the_data_costs_no_attempt(repo, relay, clock):  # noqa: ANN001
    worker = mail_worker(repo, relay, clock)
    [mail] = await queue(repo, clock)
    for step in ("EHLO", "MAIL", "RCPT"):
        relay.replies = {step: DROP}
        assert await one_pass(worker) == 0
        current = await until_due(repo, clock, mail)
        assert (current.state, current.attempts) == ("pending", 0), step
    relay.replies = {}
    assert await one_pass(worker) == 1
    assert len(relay.accepted) == 1


@pytest.mark.parametrize("step", ["DOT", "DATA"])
async def test_connection_lost_after_the_final_dot_keeps_its_handling(repo, relay, clock, step):  # noqa: ANN001
    """The server may have taken the mail: a counted attempt, sent again (same Message-ID),
    as before the rule for unreachable servers. So from the DATA command on: the worker does
    not tell how far the data went."""
    worker = mail_worker(repo, relay, clock)
    [mail] = await queue(repo, clock)
    relay.replies = {step: DROP}
    assert await one_pass(worker) == 0
    current = await until_due(repo, clock, mail)
    assert (current.state, current.attempts) == ("pending", 1)
    assert not current.last_error.startswith("the SMTP server could not be reached")
    relay.replies = {}
    assert await one_pass(worker) == 1
    assert (await row(repo, mail)).state == "sent"


async def test_waiting_mails_go_at_once_when_another_gets_through(repo, relay, clock):  # noqa: ANN001
    await relay.stop()
    worker = mail_worker(repo, relay, clock)
    [early] = await queue(repo, clock)
    for _ in range(9):  # its waits have grown to over an hour's worth of backoff
        await one_pass(worker)
        await until_due(repo, clock, early)
    await one_pass(worker)
    assert aware((await row(repo, early)).next_try_at) - clock.now() >= timedelta(minutes=30)
    await relay.start()
    [late] = await queue(repo, clock)  # a new mail, due now: it finds the server back
    assert await one_pass(worker) == 2
    assert [(await row(repo, i)).state for i in (early, late)] == ["sent", "sent"]
    assert len(relay.accepted) == 2


@pytest.mark.parametrize(
    "error",
    [
        aiosmtplib.SMTPConnectError(
            "Error connecting to relay.test on port 25: [Errno -2] Name or service not known"
        ),
        aiosmtplib.SMTPConnectTimeoutError("Timed out connecting to relay.test on port 25"),
        aiosmtplib.SMTPServerDisconnected("Unexpected EOF received"),
        aiosmtplib.SMTPConnectResponseError(421, "4.3.2 shutting down"),
        socket.gaierror(-2, "Name or service not known"),
        ConnectionResetError(104, "Connection reset by peer"),
    ],
    ids=repr,
)
async def test_what_says_the_server_could_not_be_reached(error, monkeypatch, clock):  # noqa: ANN001
    async def connect(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        raise error

    monkeypatch.setattr(aiosmtplib.SMTP, "connect", connect)
    worker = mail_worker(None, Relay(), clock)
    with pytest.raises(Unreachable):
        await worker._send(worker.build(PAYLOAD))


@pytest.mark.parametrize(
    "error",
    [
        aiosmtplib.SMTPConnectResponseError(554, "5.7.1 no service for you"),
        aiosmtplib.SMTPAuthenticationError(535, "5.7.8 bad credentials"),
        aiosmtplib.SMTPException("STARTTLS extension not supported by server"),
    ],
    ids=repr,
)
async def test_what_is_still_counted(error, monkeypatch, clock):  # noqa: ANN001
    async def connect(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        raise error

    monkeypatch.setattr(aiosmtplib.SMTP, "connect", connect)
    worker = mail_worker(None, Relay(), clock)
    with pytest.raises(type(error)):
        await worker._send(worker.build(PAYLOAD))


async def test_the_send_helper_leaves_the_mails_untouched_and_tries_no_more(repo, relay, clock):  # noqa: ANN001
    relay.replies["CONNECT"] = "421 4.3.2 service not available"
    mails = await queue(repo, clock, 3)
    before = {m: await row(repo, m) for m in mails}
    helper = mail_worker(repo, relay, clock, cls=HelperSender)
    assert await one_pass(helper) == 0
    assert relay.connections == 1  # the first mail found it away; the others were not tried
    assert helper.left == set(mails)
    for m in mails:
        after = await row(repo, m)
        assert (after.state, after.attempts, after.last_error) == ("pending", 0, None)
        assert after.next_try_at == before[m].next_try_at
    # The leader's worker, after the helper: the same rule, no attempt used up.
    worker = mail_worker(repo, relay, clock)
    await one_pass(worker)
    assert {(await row(repo, m)).attempts for m in mails} == {0}
