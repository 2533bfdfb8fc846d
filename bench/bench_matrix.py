"""Matrix benchmark: command → bot answer, and mail → ticket root message, as a volunteer sees them.

    .venv/bin/python bench/bench_matrix.py [--commands N] [--mails M]

Starts its own stack (Dovecot IMAP + LMTP, the SMTP relay and Synapse) in a temporary directory
on free ports, and stops it at the end, also on error, Ctrl-C or SIGTERM. Registers a bot and a
volunteer with their queue rooms (devstack.matrix_setup, a unique tag), runs exobot in-process
(SQLite in the temporary directory) and logs the volunteer in with a small matrix-nio client
that timestamps every timeline event the moment its sync response arrives.

1. Mail: M new requests are sent one at a time through SMTP to the support address; each is
   timed from the SMTP send returning until the volunteer's sync delivers the bot's root message
   of the new ticket (an m.notice without relation whose body names `suport#<number>`).
2. Commands: in the thread of the first ticket, N commands alternate `!show suport#K` and
   `!comment suport#K …`; each is timed from just before room_send until the volunteer's sync
   delivers the bot's m.notice whose m.in_reply_to is that command's event.

Exit code 0 when the run completes (it is a measurement); 1 when it fails, e.g. an answer does
not arrive within the timeout or the stack does not start; 130 when interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
import os
import platform
import re
import sqlite3
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formataddr, formatdate, make_msgid
from pathlib import Path

import nio

# bench/common.py (bench/ is on sys.path as the script's directory); it also puts the repository
# root on sys.path, so it comes before devstack and exobot.
from common import BenchError, connect_db, db_time, percentile, run_with_stack, scalar

from devstack.exobot_config import exobot_config
from devstack.matrix_setup import MatrixSetup, setup_matrix
from devstack.stack import Stack
from exobot.app import App
from exobot.config import Config, parse_config

log = logging.getLogger("bench")

QUEUE = "suport"
WAIT_TIMEOUT_SECONDS = 20.0  # for one answer or one root message
READY_TIMEOUT_SECONDS = 60.0  # exobot connected to Matrix and in its rooms
IDLE_TIMEOUT_SECONDS = 20.0  # the outbox drained between mail samples
COMMAND_GAP_SECONDS = 0.05
MAIL_GAP_SECONDS = 0.1
POLL_SECONDS = 0.01
SYNC_TIMEOUT_MS = 30_000


# -------------------------------------------------------------------------- the volunteer


@dataclass
class Seen:
    """A timeline event and the perf_counter time the volunteer's sync delivered it."""

    room_id: str
    source: dict
    at: float


class Volunteer:
    """A plain matrix-nio client (the rooms are unencrypted) with a long-polling sync task that
    records every timeline event of its joined rooms with its arrival time."""

    def __init__(self, client: nio.AsyncClient) -> None:
        self.client = client
        self.user_id = client.user_id
        self.seen: list[Seen] = []
        self.syncs = 0
        self._new = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._error: str | None = None

    @classmethod
    async def login(cls, homeserver: str, user_id: str, password: str) -> Volunteer:
        """Password login (a new device), one initial sync, then the sync task."""
        config = nio.AsyncClientConfig(encryption_enabled=False, max_timeouts=2)
        client = nio.AsyncClient(homeserver, user_id, config=config)
        response = await client.login(password, device_name="bench-volunteer")
        if isinstance(response, nio.LoginError):
            await client.close()
            raise BenchError(f"Matrix login of {user_id} failed: {response.message}")
        user = cls(client)
        try:
            await user._sync(timeout=0, full_state=True, record=False)  # no backlog
        except BaseException:
            await client.close()
            raise
        user._task = asyncio.create_task(user._sync_loop(), name="bench-volunteer-sync")
        return user

    async def _sync(self, timeout: int, full_state: bool = False, record: bool = True) -> None:
        response = await self.client.sync(timeout=timeout, full_state=full_state or None)
        at = time.perf_counter()
        if isinstance(response, nio.SyncError):
            raise BenchError(f"the volunteer's sync failed: {response.message}")
        self.syncs += 1
        if not record:
            return
        for room_id, info in response.rooms.join.items():
            for event in info.timeline.events:
                self.seen.append(Seen(room_id, event.source, at))
        self._new.set()

    async def _sync_loop(self) -> None:
        try:
            while True:
                await self._sync(SYNC_TIMEOUT_MS)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # reported by the waiting side
            self._error = repr(error)
            self._new.set()

    def mark(self) -> int:
        """A position in the recorded events: `wait_for(..., after=mark)` looks past it."""
        return len(self.seen)

    async def wait_for(
        self, predicate: Callable[[Seen], bool], after: int, what: str, timeout: float
    ) -> Seen:
        """The first recorded event past `after` satisfying `predicate`; BenchError on timeout."""
        deadline = time.monotonic() + timeout
        index = after
        while True:
            while index < len(self.seen):
                if predicate(self.seen[index]):
                    return self.seen[index]
                index += 1
            if self._error is not None:
                raise BenchError(f"the volunteer's sync stopped: {self._error}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                last = [
                    f"{s.source.get('sender')} {s.source.get('type')}: "
                    f"{(s.source.get('content') or {}).get('body')!r:.80}"
                    for s in self.seen[after:][-5:]
                ]
                raise BenchError(
                    f"timed out after {timeout:.0f} s waiting for {what}; last events: {last}"
                )
            self._new.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._new.wait(), remaining)

    async def send(self, room_id: str, content: dict) -> str:
        """Send an m.room.message; returns its event id."""
        response = await self.client.room_send(room_id, "m.room.message", content)
        if not isinstance(response, nio.RoomSendResponse):
            raise BenchError(f"the volunteer could not send to {room_id}: {response.message}")
        return response.event_id

    async def close(self) -> None:
        """Stop syncing and close the HTTP session."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        await self.client.close()


def content_of(seen: Seen) -> dict:
    """The event's content (empty for events without one)."""
    return seen.source.get("content") or {}


def is_bot_notice(seen: Seen, bot: str, room_id: str) -> bool:
    """A message of the bot in the room, sent as m.notice (as every bot message is)."""
    return (
        seen.room_id == room_id
        and seen.source.get("sender") == bot
        and seen.source.get("type") == "m.room.message"
        and content_of(seen).get("msgtype") == "m.notice"
    )


def in_reply_to(seen: Seen) -> str | None:
    """The event id in m.relates_to.m.in_reply_to, if any."""
    relates = content_of(seen).get("m.relates_to") or {}
    return (relates.get("m.in_reply_to") or {}).get("event_id")


def thread_message(text: str, root: str) -> dict:
    """An m.text in the thread of `root` (the reply fallback pointing at the root, as clients
    do for a message typed in a thread)."""
    return {
        "msgtype": "m.text",
        "body": text,
        "m.relates_to": {
            "rel_type": "m.thread",
            "event_id": root,
            "is_falling_back": True,
            "m.in_reply_to": {"event_id": root},
        },
    }


# ------------------------------------------------------------------------------- database


async def wait_outbox_idle(conn: sqlite3.Connection) -> None:
    """Until no outbox row (acknowledgement mail, chat post) is pending."""
    deadline = time.monotonic() + IDLE_TIMEOUT_SECONDS
    while scalar(conn, "SELECT count(*) FROM outbox WHERE state = 'pending'"):
        if time.monotonic() > deadline:
            raise BenchError(f"the outbox still has pending rows after {IDLE_TIMEOUT_SECONDS} s")
        await asyncio.sleep(POLL_SECONDS)


# ---------------------------------------------------------------------------- measurements


@dataclass
class MailSample:
    """One mail's way, in seconds from the SMTP send returning."""

    seen: float  # the root message delivered by the volunteer's sync
    stored: float  # raw mail committed by intake (inbound_mail.received_at)
    created: float  # the ticket's created_at
    posted: float  # the chat row done (the root posted to Synapse; outbox.done_at)


@dataclass
class CommandSample:
    """One command, in seconds from just before room_send."""

    kind: str  # show | comment
    seen: float  # the bot's answer delivered by the volunteer's sync
    sent: float  # room_send returned


@dataclass
class Results:
    """Everything measured."""

    mails: list[MailSample] = field(default_factory=list)
    commands: list[CommandSample] = field(default_factory=list)
    ticket: int = 0
    comments: int = 0
    volunteer_syncs: int = 0


def member_mail(address: str, run_id: str, n: int) -> tuple[bytes, str]:
    """A new request from a fresh member; returns the raw bytes and the sender."""
    sender = f"soci{n:03d}.{run_id}@example.org"
    msg = EmailMessage()
    msg["From"] = formataddr((f"Sòcia {n}", sender))
    msg["To"] = formataddr(("Suport eXO", address))
    msg["Subject"] = f"No em funciona internet ({n})"
    msg["Date"] = formatdate(localtime=True)
    msg["Message-ID"] = make_msgid(domain="member.example.org")
    msg.set_content(
        "Hola,\n\nDes d'ahir al vespre no tinc connexió i el llum del router fa pampallugues.\n"
        f"He reiniciat l'aparell tres vegades.\n\nGràcies,\nSòcia {n}\n"
    )
    return msg.as_bytes(), sender  # Stack.send_mail makes the line endings CRLF


async def measure_mails(
    stack: Stack,
    vol: Volunteer,
    reader: sqlite3.Connection,
    setup: MatrixSetup,
    address: str,
    count: int,
    run_id: str,
) -> tuple[list[MailSample], int, str]:
    """Send `count` new requests one at a time; returns the samples and the first ticket's
    number and root event id."""
    room = setup.rooms[QUEUE]
    samples = []
    first: tuple[int, str] | None = None
    for n in range(1, count + 1):
        number = (scalar(reader, "SELECT max(id) FROM tickets") or 0) + 1
        reference = re.compile(rf"\bsuport#{number}\b")
        raw, sender = member_mail(address, run_id, n)
        mark = vol.mark()
        await asyncio.to_thread(stack.send_mail, raw, sender, [address])
        epoch, started = time.time(), time.perf_counter()
        root = await vol.wait_for(
            lambda s, reference=reference: (
                is_bot_notice(s, setup.bot_user_id, room)
                and "m.relates_to" not in content_of(s)
                and bool(reference.search(content_of(s).get("body") or ""))
            ),
            mark,
            f"the root message of suport#{number}",
            WAIT_TIMEOUT_SECONDS,
        )
        await wait_outbox_idle(reader)  # the acknowledgement sent: the next mail meets idle
        stored = scalar(reader, "SELECT max(received_at) FROM inbound_mail")
        created = scalar(reader, "SELECT created_at FROM tickets WHERE id = ?", number)
        posted = scalar(
            reader, "SELECT min(done_at) FROM outbox WHERE kind = 'chat' AND ticket_id = ?", number
        )
        samples.append(
            MailSample(
                seen=root.at - started,
                stored=db_time(stored) - epoch,
                created=db_time(created) - epoch,
                posted=db_time(posted) - epoch,
            )
        )
        if first is None:
            first = (number, root.source["event_id"])
        await asyncio.sleep(MAIL_GAP_SECONDS)
    assert first is not None
    return samples, first[0], first[1]


async def measure_commands(
    vol: Volunteer, setup: MatrixSetup, ticket: int, root: str, count: int, run_id: str
) -> list[CommandSample]:
    """Alternate `!show` and `!comment` in the ticket's thread, one at a time."""
    room = setup.rooms[QUEUE]
    samples = []
    for i in range(count):
        if i % 2 == 0:
            kind, text = "show", f"!show suport#{ticket}"
        else:
            kind, text = "comment", f"!comment suport#{ticket} bench {run_id} nota {i}"
        mark = vol.mark()
        started = time.perf_counter()
        event_id = await vol.send(room, thread_message(text, root))
        sent = time.perf_counter() - started
        answer = await vol.wait_for(
            lambda s, event_id=event_id: (
                is_bot_notice(s, setup.bot_user_id, room) and in_reply_to(s) == event_id
            ),
            mark,
            f"the answer to {text!r}",
            WAIT_TIMEOUT_SECONDS,
        )
        samples.append(CommandSample(kind, answer.at - started, sent))
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s -> %r", text, content_of(answer).get("body"))
        await asyncio.sleep(COMMAND_GAP_SECONDS)
    return samples


def bench_config(stack: Stack, directory: Path, address: str, setup: MatrixSetup) -> Config:
    """exobot's configuration: SQLite in `directory`, the setup's bot and rooms, no digest."""
    directory.mkdir(parents=True, exist_ok=True)
    data = exobot_config(
        stack,
        address=address,
        database_url=f"sqlite:///{directory / 'exobot.db'}",
        matrix=setup,
        alerts={"digest_at": None},
        smtp={"timeout": "5s"},
        outbox={"retry_base": "1s", "retry_max": "2s", "max_attempts": 30},
    )
    return parse_config(data, env={})


async def run_all(stack: Stack, workdir: Path, args: argparse.Namespace) -> Results:
    """Set up Matrix, start exobot and the volunteer, measure mails then commands."""
    run_id = uuid.uuid4().hex[:8]
    setup = await asyncio.to_thread(setup_matrix, stack, tag=f"-b{run_id}", queues=(QUEUE,))
    address = f"suport-mx.{run_id}@example.org"
    config = bench_config(stack, workdir / "exobot", address, setup)
    app = App(config)
    results = Results()
    vol: Volunteer | None = None
    reader: sqlite3.Connection | None = None
    print("starting exobot and waiting until it is in its Matrix room ...", flush=True)
    try:
        await app.start()
        ready = asyncio.ensure_future(app.chat_ready.wait())
        done, _ = await asyncio.wait(
            {ready, *app._tasks}, timeout=READY_TIMEOUT_SECONDS, return_when=asyncio.FIRST_COMPLETED
        )
        if ready not in done:
            ready.cancel()
            ended = [t for t in done if t.done()]
            reason = repr(ended[0].exception()) if ended and ended[0].exception() else "timeout"
            raise BenchError(f"exobot did not get ready for Matrix ({reason})")
        await asyncio.wait_for(app.intake.connected.wait(), 15)
        await asyncio.sleep(0.5)  # the first IDLE is set up
        reader = connect_db(Path(config.database.url.removeprefix("sqlite:///")))
        vol = await Volunteer.login(
            setup.homeserver, setup.volunteer_user_id, setup.volunteer_password
        )
        print(f"mail: {args.mails} mails through SMTP to {address}, one at a time ...", flush=True)
        results.mails, ticket, root = await measure_mails(
            stack, vol, reader, setup, address, args.mails, run_id
        )
        results.ticket = ticket
        if args.commands:
            print(
                f"commands: {args.commands} commands in the thread of suport#{ticket}, "
                "one at a time ...",
                flush=True,
            )
            results.commands = await measure_commands(
                vol, setup, ticket, root, args.commands, run_id
            )
            await wait_outbox_idle(reader)
        results.comments = scalar(
            reader,
            "SELECT count(*) FROM entries WHERE kind = 'comment' AND ticket_id = ?",
            ticket,
        )
        results.volunteer_syncs = vol.syncs
    finally:
        if vol is not None:
            await vol.close()
        if reader is not None:
            reader.close()
        await app.stop()
    expected = args.commands // 2
    if results.comments != expected:
        raise BenchError(
            f"{results.comments} comments recorded on suport#{ticket}, expected {expected}"
        )
    return results


# -------------------------------------------------------------------------------- report


def summary(values: list[float]) -> str:
    """median, p95, min and max of seconds, in ms."""
    ms = [v * 1000 for v in values]
    return (
        f"median {statistics.median(ms):.0f} ms, p95 {percentile(ms, 0.95):.0f} ms, "
        f"min {min(ms):.0f} ms, max {max(ms):.0f} ms ({len(ms)} samples)"
    )


def median_ms(values: list[float]) -> str:
    """The median of seconds, in ms (finite values only)."""
    finite = [v for v in values if math.isfinite(v)]
    return f"{statistics.median(finite) * 1000:.0f} ms" if finite else "n/a"


def report(results: Results) -> str:
    """The final block of figures."""
    lines = ["", "=" * 78]
    if results.commands:
        lines.append(
            "command → bot answer seen by the volunteer: "
            + summary([s.seen for s in results.commands])
        )
        for kind in ("show", "comment"):
            values = [s.seen for s in results.commands if s.kind == kind]
            if values:
                lines.append(f"  !{kind}: {summary(values)}")
        lines.append(
            "  of which room_send (until the homeserver accepted the command): median "
            + median_ms([s.sent for s in results.commands])
        )
    if results.mails:
        m = results.mails
        lines.append(
            "mail delivered → root message seen in the room: " + summary([s.seen for s in m])
        )
        lines.append(
            f"  from the SMTP send returning, medians: raw mail stored {median_ms([s.stored for s in m])}, "
            f"ticket created {median_ms([s.created for s in m])}, "
            f"chat row done (the root accepted by Synapse, then recorded) {median_ms([s.posted for s in m])}"
        )
    lines.append(
        f"checks: {results.comments} comments on suport#{results.ticket} (as sent); "
        f"volunteer syncs {results.volunteer_syncs}"
    )
    lines.append("=" * 78)
    return "\n".join(lines)


# ---------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--commands",
        type=int,
        default=100,
        metavar="N",
        help="commands to time, alternating !show and !comment (default 100; 0 skips them)",
    )
    parser.add_argument(
        "--mails",
        type=int,
        default=20,
        metavar="M",
        help="mails to time, one at a time (default 20; at least 1: the commands use the first)",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the temporary directory (stack logs, database)"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="exobot's INFO logs too")
    args = parser.parse_args(argv)
    if args.mails < 1 or args.commands < 0:
        parser.error("--mails must be ≥ 1 and --commands ≥ 0")
    return args


def header(args: argparse.Namespace) -> str:
    """The machine and the settings."""
    return (
        f"bench_matrix: {os.cpu_count()} cores ({platform.machine()}), "
        f"Python {platform.python_version()}, matrix-nio {nio_version()}, {platform.platform()}\n"
        f"settings: --commands {args.commands} --mails {args.mails}; exobot on SQLite, "
        f"unencrypted room; timeout {WAIT_TIMEOUT_SECONDS:.0f} s per answer"
    )


def nio_version() -> str:
    """matrix-nio's installed version."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("matrix-nio")
    except PackageNotFoundError:
        return "?"


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; 0 when it ran, 1 when it failed, 130 on Ctrl-C."""
    args = parse_args(argv)
    if args.verbose:
        log.setLevel(logging.DEBUG)
    print(header(args), flush=True)
    started = time.perf_counter()

    async def measure(stack: Stack, workdir: Path) -> str:
        print(f"stack up in {time.perf_counter() - started:.1f} s", flush=True)
        return report(await run_all(stack, workdir, args))

    try:
        code = run_with_stack(
            args, synapse=True, workdir_prefix="exobot-bench-matrix-", measure=measure
        )
    except Exception as error:  # the stack or the setup failed: still a failed run
        log.exception("benchmark failed")
        print(f"benchmark failed: {error!r}", file=sys.stderr)
        return 1
    if code == 0:
        print(f"total run time {time.perf_counter() - started:.1f} s")
    return code


if __name__ == "__main__":
    sys.exit(main())
