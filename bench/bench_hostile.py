"""Hostile-mail benchmark: how long the event loop stalls while hostile mails are parsed, and how
long a normal mail queued behind them takes to become a ticket.

    .venv/bin/python bench/bench_hostile.py [--hostile N] [--normal M]

Starts its own mail stack (Dovecot IMAP + LMTP and the SMTP relay, no Synapse) in a temporary
directory on free ports, and stops it at the end, also on error or Ctrl-C.

N hostile mails (by turns: `<ul><li>` nested 2,000 deep, a `<pre>` of 200,000 spaces, multipart
nested 500 deep, 10,000 tiny parts), each followed by a normal member mail, are delivered by LMTP
into a fresh mailbox before exobot starts in-process (SQLite in the temporary directory). While
exobot works through them, a ticker task sleeps 10 ms at a time and records how late it wakes
(the loop lag); M more normal mails are sent through SMTP, one every 0.5 s, each timed from the
send until it is handled (it waits behind whatever is queued). At the end one more normal mail is
timed on the idle helpdesk.

Prints figures, asserts nothing about time. Exit code 0 when it ran; 1 when the run failed (e.g.
not every mail handled within the timeout); 130 when interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import smtplib
import sys
import time
import uuid
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

from bench_mail import SMTP_POLICY, bench_config, db_path, deliver_lmtp
from common import BenchError, connect_db, db_time, percentile, run_with_stack, scalar

from devstack.stack import Stack
from exobot.app import App

TICK_SECONDS = 0.01
LOOP_LAG_GOAL_MS = 100.0  # p99
NORMAL_GOAL_SECONDS = 2.0
SEND_GAP_SECONDS = 0.5
DONE_TIMEOUT_SECONDS = 1800.0
KINDS = ("nested lists", "huge <pre>", "deep multipart", "10,000 tiny parts")


# ----------------------------------------------------------------------------------- workload


def _headers(sender: str, to: str, subject: str) -> str:
    return (
        f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\n"
        f"Message-ID: {make_msgid(domain='hostile.example.net')}\r\nMIME-Version: 1.0\r\n"
    )


def hostile_mail(kind: str, sender: str, to: str, n: int) -> bytes:
    """One hostile mail of `kind`, as raw bytes."""
    head = _headers(sender, to, f"{kind} {n}")
    if kind == "nested lists":
        depth = 2000
        html = "<ul><li>" * depth + "x" + "</li></ul>" * depth
        return (head + "Content-Type: text/html\r\n\r\n" + html).encode()
    if kind == "huge <pre>":
        return (head + "Content-Type: text/html\r\n\r\n<pre>" + " " * 200_000 + "x</pre>").encode()
    if kind == "deep multipart":
        body = "Content-Type: text/plain\r\n\r\nMolt endins"
        for depth in range(500):
            body = (
                f'Content-Type: multipart/mixed; boundary="b{depth}"\r\n\r\n'
                f"--b{depth}\r\n{body}\r\n--b{depth}--"
            )
        return (head + body).encode()
    parts = "".join("--p\r\nContent-Type: text/plain\r\n\r\nx\r\n" for _ in range(10_000))
    return (head + 'Content-Type: multipart/mixed; boundary="p"\r\n\r\n' + parts + "--p--").encode()


def normal_mail(sender: str, to: str, subject: str) -> EmailMessage:
    """A plain member mail."""
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, to, subject
    msg["Message-ID"] = make_msgid(domain="member.example.org")
    msg.set_content("Hola, des d'ahir no tinc connexió. Podeu mirar-ho?")
    return msg


# ------------------------------------------------------------------------------------ measure


class LoopLag:
    """A task that sleeps TICK_SECONDS at a time and records how late each wake-up is."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._task: asyncio.Task | None = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            start = loop.time()
            await asyncio.sleep(TICK_SECONDS)
            self.samples.append(loop.time() - start - TICK_SECONDS)

    def start(self) -> None:
        """Start ticking."""
        self._task = asyncio.create_task(self._run(), name="loop-lag")

    async def stop(self) -> None:
        """Stop ticking."""
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


def _handled(db, message_id: str) -> bool:
    return bool(
        scalar(
            db,
            "SELECT count(*) FROM inbound_mail WHERE message_id = ? AND state != 'received'",
            message_id,
        )
    )


async def time_normal_mail(stack: Stack, db, support: str, sender: str, subject: str) -> float:
    """Send one normal mail through SMTP; seconds until it is handled."""
    msg = normal_mail(sender, support, subject)
    raw = msg.as_bytes(policy=SMTP_POLICY)
    started = time.monotonic()

    def send() -> None:
        with smtplib.SMTP(stack.host, stack.smtp_port, timeout=30) as smtp:
            smtp.sendmail(sender, [support], raw)

    await asyncio.to_thread(send)
    deadline = started + DONE_TIMEOUT_SECONDS
    while not await asyncio.to_thread(_handled, db, msg["Message-ID"]):
        if time.monotonic() > deadline:
            raise BenchError(f"normal mail {subject!r} not handled in {DONE_TIMEOUT_SECONDS} s")
        await asyncio.sleep(0.02)
    return time.monotonic() - started


async def run(stack: Stack, workdir: Path, args: argparse.Namespace) -> str:
    """Deliver the backlog, run exobot through it while measuring, return the report."""
    run_id = uuid.uuid4().hex[:6]
    support = f"suport-hostile-{run_id}@example.org"
    config = bench_config(stack, workdir / "hostile", support)
    if args.parse_timeout:
        config.mail.parse_timeout = args.parse_timeout_delta
    mails = []
    for n in range(args.hostile):
        kind = KINDS[n % len(KINDS)]
        mails.append(
            (
                f"attacker-{n}@example.net",
                hostile_mail(kind, f"attacker-{n}@example.net", support, n),
            )
        )
        normal = normal_mail(f"member-{n}-{run_id}@example.org", support, f"Normal {n}")
        mails.append((normal["From"], normal.as_bytes(policy=SMTP_POLICY)))
    await asyncio.to_thread(deliver_lmtp, stack, support, mails)
    db = connect_db(db_path(config))

    app = App(config)
    lag = LoopLag()
    lag.start()
    started = time.monotonic()
    await app.start()
    queued: list[float] = []
    senders: list[asyncio.Task] = []

    async def one_queued(n: int) -> None:
        sender = f"queued-{n}-{run_id}@example.org"
        queued.append(await time_normal_mail(stack, db, support, sender, f"Queued {n}"))

    try:
        total = len(mails)
        while True:
            done = await asyncio.to_thread(
                scalar, db, "SELECT count(*) FROM inbound_mail WHERE state != 'received'"
            )
            if done >= total:
                break
            if time.monotonic() - started > DONE_TIMEOUT_SECONDS:
                raise BenchError(
                    f"only {done} of {total} mails handled in {DONE_TIMEOUT_SECONDS} s"
                )
            if len(senders) < args.normal:  # one more normal mail joins the queue
                senders.append(asyncio.create_task(one_queued(len(senders))))
            await asyncio.sleep(SEND_GAP_SECONDS)
        backlog_seconds = time.monotonic() - started
        await asyncio.gather(*senders)
        idle = await time_normal_mail(
            stack, db, support, f"idle-{run_id}@example.org", "Idle helpdesk"
        )
    finally:
        for task in senders:
            task.cancel()
        await lag.stop()
        await app.stop()
    holds = hold_times(db, args.hostile)
    states = collections.Counter(
        (state, (error or "").split(":")[0] if state == "quarantined" else "")
        for state, error in db.execute("SELECT state, error FROM inbound_mail")
    )
    db.close()
    return report(args, lag.samples, backlog_seconds, queued, idle, states, holds)


def hold_times(db, hostile: int) -> dict[str, list[float]]:  # noqa: ANN001 - sqlite3
    """Per kind, how long each hostile mail held the queue: from the normal mail before it
    being handled to the normal mail after it being handled (in the order they were stored)."""
    rows = db.execute("SELECT processed_at FROM inbound_mail ORDER BY uid").fetchall()
    times = [db_time(r[0]) for r in rows[: 2 * hostile]]
    holds: dict[str, list[float]] = collections.defaultdict(list)
    for n in range(1, hostile):  # the mail at 2n is hostile, 2n-1 and 2n+1 are normal
        holds[KINDS[n % len(KINDS)]].append(times[2 * n + 1] - times[2 * n - 1])
    return holds


def report(args, samples, backlog_seconds, queued, idle, states, holds) -> str:  # noqa: ANN001
    """The figures, one per line."""
    ms = [s * 1000 for s in samples]
    p99 = percentile(ms, 0.99)
    lines = [
        f"hostile mails: {args.hostile} ({', '.join(KINDS)}, by turns), each followed by a "
        f"normal one; parse timeout {args.parse_timeout or '10s (default)'}",
        f"backlog handled in {backlog_seconds:.1f} s",
        f"event loop lag over {len(ms)} ticks of {TICK_SECONDS * 1000:.0f} ms: "
        f"median {percentile(ms, 0.5):.1f} ms, p99 {p99:.1f} ms, longest stall {max(ms):.1f} ms "
        f"(goal: p99 under {LOOP_LAG_GOAL_MS:.0f} ms: {'met' if p99 < LOOP_LAG_GOAL_MS else 'MISSED'})",
    ]
    for kind in KINDS:
        if holds.get(kind):
            values = holds[kind]
            lines.append(
                f"one {kind} mail holds the queue: median {percentile(values, 0.5):.2f} s, "
                f"max {max(values):.2f} s ({len(values)} mails)"
            )
    if queued:
        lines.append(
            f"normal mails sent every {SEND_GAP_SECONDS} s while the backlog was handled "
            f"({len(queued)}): send → handled "
            f"median {percentile(queued, 0.5):.2f} s, max {max(queued):.2f} s (they wait in "
            "arrival order behind the hostile mails)"
        )
    lines.append(
        f"a normal mail on the idle helpdesk afterwards: {idle:.2f} s "
        f"(goal: under {NORMAL_GOAL_SECONDS:.0f} s: {'met' if idle < NORMAL_GOAL_SECONDS else 'MISSED'})"
    )
    outcome = ", ".join(
        f"{state}{f' ({why})' if why else ''} {count}"
        for (state, why), count in sorted(states.items())
    )
    lines.append(f"stored mails: {outcome}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hostile", type=int, default=100, help="hostile mails (default 100)")
    parser.add_argument(
        "--normal", type=int, default=10, help="normal mails sent during the backlog (default 10)"
    )
    parser.add_argument("--parse-timeout", default=None, help="mail.parse_timeout, e.g. 5s")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("-v", "--verbose", action="store_true", help="exobot's INFO logs too")
    args = parser.parse_args(argv)
    if args.parse_timeout:
        from exobot.config import parse_duration

        args.parse_timeout_delta = parse_duration(args.parse_timeout)
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; 0 when it ran (goals met or not), 1 when it failed, 130 on Ctrl-C."""
    args = parse_args(argv)

    async def measure(stack: Stack, workdir: Path) -> str:
        return await run(stack, workdir, args)

    return run_with_stack(
        args, synapse=False, workdir_prefix="exobot-bench-hostile-", measure=measure
    )


if __name__ == "__main__":
    sys.exit(main())
