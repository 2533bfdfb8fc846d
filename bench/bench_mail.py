"""Mail benchmark: intake throughput of a full mailbox, and SMTP-to-ticket latency.

    .venv/bin/python bench/bench_mail.py [--mails N] [--latency-samples M]

Starts its own mail stack (Dovecot IMAP + LMTP and the SMTP relay, no Synapse) in a temporary
directory on free ports, and stops it at the end, also on error or Ctrl-C.

1. Throughput: N varied member mails (new requests, replies tagged `[suport#K]`, out-of-office
   auto-replies, re-delivered duplicates, HTML-only mails, small attachments) are delivered by
   LMTP into a fresh support mailbox *before* exobot starts. Then exobot starts in-process (SQLite
   in the temporary directory) and the wall time until every stored mail has left the `received`
   state is measured, split into intake (all raw mails stored) and the processing after that.
2. Latency: with exobot idle on another fresh mailbox, M mails are sent one at a time through
   SMTP; each is timed from the SMTP send until its ticket is committed.

Exit code 0 whether or not the goals are met (it is a measurement); 1 when the run itself fails,
e.g. not every mail processed within the timeout; 130 when interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import email.policy
import logging
import math
import random
import smtplib
import sqlite3
import statistics
import sys
import time
import uuid
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formataddr, formatdate, make_msgid
from pathlib import Path

# bench/common.py (bench/ is on sys.path as the script's directory); it also puts the repository
# root on sys.path, so it comes before devstack and exobot.
from common import (
    PARAGRAPHS,
    SUBJECTS,
    BenchError,
    connect_db,
    db_time,
    percentile,
    run_with_stack,
    scalar,
)

from devstack.exobot_config import exobot_config
from devstack.stack import Stack
from exobot.app import App
from exobot.config import Config, parse_config

log = logging.getLogger("bench")

THROUGHPUT_GOAL = 100.0  # mails/s
LATENCY_GOAL_MS = 1000.0  # median, SMTP send → committed ticket
THROUGHPUT_POLL_SECONDS = 0.05
LATENCY_POLL_SECONDS = 0.005
LATENCY_GAP_SECONDS = 0.1
LATENCY_TIMEOUT_SECONDS = 30.0
SMTP_POLICY = email.policy.SMTP  # CRLF line endings, as LMTP and SMTP want them


# ------------------------------------------------------------------------------ configuration


def bench_config(stack: Stack, directory: Path, address: str) -> Config:
    """exobot's configuration for one fresh mailbox, with short retry and poll times."""
    directory.mkdir(parents=True, exist_ok=True)
    data = exobot_config(
        stack,
        address=address,
        database_url=f"sqlite:///{directory / 'exobot.db'}",
        imap={"poll_interval": "5s"},
        smtp={"timeout": "5s"},
        outbox={"retry_base": "1s", "retry_max": "2s", "max_attempts": 30},
    )
    return parse_config(data, env={})


def db_path(config: Config) -> Path:
    """The SQLite file of a configuration made by bench_config."""
    return Path(config.database.url.removeprefix("sqlite:///"))


# ----------------------------------------------------------------------------------- workload

PLACES = ["Gràcia", "Sants", "el Poblenou", "Sant Andreu", "Horta", "Nou Barris", "Sarrià"]
FIRST_NAMES = [
    "Marta",
    "Jordi",
    "Núria",
    "Pau",
    "Laia",
    "Oriol",
    "Montse",
    "Àlex",
    "Carme",
    "Xavier",
    "Mireia",
    "Joan",
    "Aina",
    "Sergi",
    "Roser",
    "Quim",
]
LAST_NAMES = [
    "Puig",
    "Vila",
    "Soler",
    "Ferrer",
    "Casals",
    "Roca",
    "Serra",
    "Bosch",
    "Font",
    "Pujol",
    "Sala",
    "Vidal",
    "Mas",
    "Coll",
    "Riera",
    "Camps",
]
HTML_TEMPLATE = """<html><head><meta charset="utf-8"><style>p {{ margin: 0 }}</style></head>
<body><div dir="ltr"><p>Bon dia,</p><p>&nbsp;</p>{paragraphs}<p>&nbsp;</p>
<p>Salutacions,<br><b>{name}</b><br><span style="color:#888">Enviat des del meu mòbil</span></p>
</div></body></html>
"""


@dataclass
class Original:
    """A mail that opened a ticket: what replies to it need."""

    ticket: int
    sender: str
    name: str
    subject: str
    message_id: str
    raw: bytes


@dataclass
class Workload:
    """The mails to deliver, in order, with what they should produce."""

    mails: list[tuple[str, bytes]] = field(default_factory=list)  # (envelope sender, raw)
    kinds: collections.Counter = field(default_factory=collections.Counter)
    new_tickets: int = 0

    def add(self, kind: str, sender: str, raw: bytes) -> None:
        """Append one mail of a kind."""
        self.mails.append((sender, raw))
        self.kinds[kind] += 1


class MailFactory:
    """Makes varied, realistic member mails to one support address (deterministic per seed)."""

    def __init__(self, support: str, run_id: str, members: int, seed: int = 1) -> None:
        self.support = support
        self.rng = random.Random(seed)
        self.members = [
            (
                f"soci{i:04d}.{run_id}@example.org",
                f"{self.rng.choice(FIRST_NAMES)} {self.rng.choice(LAST_NAMES)}",
            )
            for i in range(max(1, members))
        ]

    def _base(self, sender: str, name: str, subject: str) -> EmailMessage:
        msg = EmailMessage()
        msg["From"] = formataddr((name, sender))
        msg["To"] = formataddr(("Suport eXO", self.support))
        msg["Subject"] = subject
        msg["Date"] = formatdate(localtime=True)
        msg["Message-ID"] = make_msgid(domain="member.example.org")
        msg["User-Agent"] = self.rng.choice(["Thunderbird/128.4", "K-9 Mail", "Roundcube 1.6"])
        return msg

    def _text(self, name: str, paragraphs: int) -> str:
        body = "\n\n".join(self.rng.sample(PARAGRAPHS, paragraphs))
        return f"Hola,\n\n{body}\n\nMoltes gràcies,\n{name}\n"

    def _subject(self) -> str:
        subject = self.rng.choice(SUBJECTS)
        roll = self.rng.random()
        if roll < 0.3:
            subject += f" a {self.rng.choice(PLACES)}"
        elif roll < 0.4:
            subject += " (urgent)"
        return subject

    def new_request(self, kind: str) -> tuple[EmailMessage, str, str]:
        """A first mail from a member; kind is plain | html | attachment | alternative."""
        sender, name = self.rng.choice(self.members)
        msg = self._base(sender, name, self._subject())
        if self.rng.random() < 0.1:  # a neighbour in copy
            other, other_name = self.rng.choice(self.members)
            msg["Cc"] = formataddr((other_name, other))
        paragraphs = self.rng.randint(1, 4)
        if kind == "html":
            html = "".join(f"<p>{p}</p>" for p in self.rng.sample(PARAGRAPHS, paragraphs))
            msg.set_content(HTML_TEMPLATE.format(paragraphs=html, name=name), subtype="html")
        else:
            msg.set_content(self._text(name, paragraphs))
            if kind == "alternative":
                html = (
                    f"<html><body><p>{msg.get_content().replace(chr(10), '<br>')}</p></body></html>"
                )
                msg.add_alternative(html, subtype="html")
            elif kind == "attachment":
                size = self.rng.randint(2_000, 40_000)
                maintype, subtype, filename = self.rng.choice(
                    [
                        ("application", "pdf", "factura.pdf"),
                        ("image", "png", "captura de pantalla.png"),
                        ("image", "jpeg", "IMG_2093.jpg"),
                    ]
                )
                msg.add_attachment(
                    self.rng.randbytes(size), maintype=maintype, subtype=subtype, filename=filename
                )
        return msg, sender, name

    def reply(self, original: Original, by_message_id: bool) -> EmailMessage:
        """The member's follow-up to their own ticket: `Re: [suport#K] title`, maybe threaded."""
        msg = self._base(
            original.sender, original.name, f"Re: [suport#{original.ticket}] {original.subject}"
        )
        if by_message_id:
            msg["In-Reply-To"] = original.message_id
            msg["References"] = original.message_id
        quoted = "\n".join("> " + line for line in self._text(original.name, 1).splitlines())
        msg.set_content(f"{self.rng.choice(PARAGRAPHS)}\n\n{original.name}\n\n{quoted}\n")
        return msg

    def auto_reply(self, original: Original) -> EmailMessage:
        """An out-of-office answer to our acknowledgement (RFC 3834 Auto-Submitted)."""
        msg = self._base(
            original.sender,
            original.name,
            f"Resposta automàtica: [suport#{original.ticket}] {original.subject}",
        )
        msg["Auto-Submitted"] = "auto-replied"
        msg.set_content("Sóc fora de l'oficina fins dilluns. Respondré el vostre missatge aviat.\n")
        return msg


def make_workload(support: str, run_id: str, count: int, seed: int = 1) -> Workload:
    """`count` mails in delivery order. Ticket numbers are predicted from that order (a fresh
    database numbers tickets 1, 2, ... in the order mails are processed, which is UID order)."""
    factory = MailFactory(support, run_id, members=max(5, count // 4), seed=seed)
    rng = random.Random(seed + 1)
    work = Workload()
    originals: list[Original] = []
    for _ in range(count):
        roll = rng.random()
        if originals and roll < 0.18:
            original = rng.choice(originals)
            by_id = rng.random() < 0.5
            msg = factory.reply(original, by_message_id=by_id)
            work.add(
                "reply (In-Reply-To)" if by_id else "reply (subject tag)",
                original.sender,
                msg.as_bytes(policy=SMTP_POLICY),
            )
        elif originals and roll < 0.20:
            original = rng.choice(originals)
            work.add(
                "auto-reply",
                original.sender,
                factory.auto_reply(original).as_bytes(policy=SMTP_POLICY),
            )
        elif originals and roll < 0.21:
            original = rng.choice(originals)  # the same mail delivered twice
            work.add("duplicate", original.sender, original.raw)
        else:
            kind = (
                "html"
                if roll < 0.29
                else "attachment"
                if roll < 0.34
                else "alternative"
                if roll < 0.38
                else "plain"
            )
            msg, sender, name = factory.new_request(kind)
            raw = msg.as_bytes(policy=SMTP_POLICY)
            work.new_tickets += 1
            originals.append(
                Original(
                    work.new_tickets, sender, name, str(msg["Subject"]), str(msg["Message-ID"]), raw
                )
            )
            work.add(f"new ({kind})", sender, raw)
    return work


def deliver_lmtp(stack: Stack, rcpt: str, mails: list[tuple[str, bytes]]) -> None:
    """Deliver mails in order over one LMTP connection (their UIDs follow that order)."""
    with smtplib.LMTP(stack.host, stack.lmtp_port, timeout=60) as lmtp:
        for sender, raw in mails:
            lmtp.sendmail(sender, [rcpt], raw)


# ------------------------------------------------------------------------------------- polling


def wait_for(
    conn: sqlite3.Connection, sql: str, target: int, interval: float, timeout: float, what: str
) -> float:
    """Poll until `sql` yields at least `target`; returns the perf_counter time it did."""
    deadline = time.monotonic() + timeout
    while True:
        if (scalar(conn, sql) or 0) >= target:
            return time.perf_counter()
        if time.monotonic() > deadline:
            raise BenchError(
                f"timed out after {timeout:.0f} s waiting for {what} "
                f"(have {scalar(conn, sql)} of {target})"
            )
        time.sleep(interval)


# ---------------------------------------------------------------------------------- throughput


@dataclass
class ThroughputResult:
    """What the throughput run measured and produced."""

    mails: int
    kinds: collections.Counter
    expected_tickets: int
    deliver_seconds: float
    startup_seconds: float
    total_seconds: float
    stored_seconds: float
    first_processed_seconds: float
    states: dict[str, int]
    tickets: int
    acks: int
    unverified: int
    outbox: dict[str, int]

    @property
    def rate(self) -> float:
        """Mails per second, start to last processed."""
        return self.mails / self.total_seconds


async def run_throughput(
    stack: Stack, workdir: Path, count: int, timeout: float, run_id: str
) -> ThroughputResult:
    """Fill a fresh mailbox, then start exobot and time it until every mail is processed."""
    address = f"suport-tp.{run_id}@example.org"
    work = make_workload(address, run_id, count)
    print(f"throughput: delivering {count} mails by LMTP to {address} ...", flush=True)
    started = time.perf_counter()
    await asyncio.to_thread(deliver_lmtp, stack, address, work.mails)
    deliver_seconds = time.perf_counter() - started

    config = bench_config(stack, workdir / "throughput", address)
    app = App(config)
    started = time.perf_counter()
    await app.build()  # migrations and wiring: a one-off at process start, not measured
    startup_seconds = time.perf_counter() - started
    reader = connect_db(db_path(config))
    print("throughput: starting exobot and waiting for every mail to be processed ...", flush=True)
    try:
        epoch0, t0 = time.time(), time.perf_counter()
        await app.start()
        done_at = await asyncio.to_thread(
            wait_for,
            reader,
            "SELECT count(*) FROM inbound_mail WHERE state != 'received'",
            count,
            THROUGHPUT_POLL_SECONDS,
            timeout,
            f"{count} processed mails",
        )
    finally:
        await app.stop()
    try:
        received, first, last = reader.execute(
            "SELECT max(received_at), min(processed_at), max(processed_at) FROM inbound_mail"
        ).fetchone()
        states = dict(reader.execute("SELECT state, count(*) FROM inbound_mail GROUP BY state"))
        outbox = dict(reader.execute("SELECT state, count(*) FROM outbox GROUP BY state"))
        tickets = scalar(reader, "SELECT count(*) FROM tickets")
        acks = scalar(reader, "SELECT count(*) FROM outbox WHERE template = 'ack'")
        unverified = scalar(reader, "SELECT count(*) FROM entries WHERE kind = 'unverified_in'")
    finally:
        reader.close()
    # The database's own timestamps are finer than the 50 ms polling; the poll bounds them.
    total = done_at - t0
    if math.isfinite(db_time(last)):
        total = min(total, db_time(last) - epoch0)
    return ThroughputResult(
        mails=count,
        kinds=work.kinds,
        expected_tickets=work.new_tickets,
        deliver_seconds=deliver_seconds,
        startup_seconds=startup_seconds,
        total_seconds=total,
        stored_seconds=db_time(received) - epoch0,
        first_processed_seconds=db_time(first) - epoch0,
        states=states,
        tickets=tickets,
        acks=acks,
        unverified=unverified,
        outbox=outbox,
    )


# ------------------------------------------------------------------------------------- latency


@dataclass
class LatencySample:
    """One mail's way, in seconds from the SMTP send."""

    stored: float  # its raw bytes committed by intake (inbound_mail.received_at)
    committed: float  # its ticket committed


def measure_latencies(
    stack: Stack, db: Path, address: str, samples: int, run_id: str
) -> list[LatencySample]:
    """Send `samples` new requests one at a time; time each from SMTP to ticket."""
    factory = MailFactory(address, f"lat.{run_id}", members=samples, seed=7)
    reader = connect_db(db)
    latencies = []
    try:
        base = scalar(reader, "SELECT count(*) FROM tickets")
        for n in range(1, samples + 1):
            msg, sender, _name = factory.new_request("plain")
            raw = msg.as_bytes(policy=SMTP_POLICY)
            epoch, started = time.time(), time.perf_counter()
            stack.send_mail(raw, sender, [address])
            committed = wait_for(
                reader,
                "SELECT count(*) FROM tickets",
                base + n,
                LATENCY_POLL_SECONDS,
                LATENCY_TIMEOUT_SECONDS,
                f"ticket {n}",
            )
            received = scalar(reader, "SELECT max(received_at) FROM inbound_mail")
            latencies.append(LatencySample(db_time(received) - epoch, committed - started))
            # Let the acknowledgement go out, so the next sample meets an idle exobot.
            deadline = time.monotonic() + LATENCY_TIMEOUT_SECONDS
            while (
                scalar(reader, "SELECT count(*) FROM outbox WHERE state = 'pending'")
                and time.monotonic() < deadline
            ):
                time.sleep(LATENCY_POLL_SECONDS)
            time.sleep(LATENCY_GAP_SECONDS)
    finally:
        reader.close()
    return latencies


async def run_latency(
    stack: Stack, workdir: Path, samples: int, run_id: str
) -> list[LatencySample]:
    """Start exobot on a fresh mailbox, let it settle, then time SMTP → ticket `samples` times."""
    address = f"suport-lat.{run_id}@example.org"
    config = bench_config(stack, workdir / "latency", address)
    app = App(config)
    print(f"latency: {samples} mails through SMTP to {address}, one at a time ...", flush=True)
    try:
        await app.start()
        await asyncio.wait_for(app.intake.connected.wait(), 15)
        await asyncio.sleep(0.5)  # the first IDLE is set up
        return await asyncio.to_thread(
            measure_latencies, stack, db_path(config), address, samples, run_id
        )
    finally:
        await app.stop()


# -------------------------------------------------------------------------------------- report


def report(tp: ThroughputResult, latencies: list[LatencySample]) -> tuple[str, bool]:
    """The final block of figures, and whether every goal is met."""
    kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(tp.kinds.items()))
    states = ", ".join(f"{state} {n}" for state, n in sorted(tp.states.items()))
    outbox = ", ".join(f"{state} {n}" for state, n in sorted(tp.outbox.items())) or "empty"
    process = tp.total_seconds - tp.stored_seconds
    lines = [
        "",
        "=" * 78,
        f"workload: {tp.mails} mails ({kinds})",
        f"  delivered by LMTP in {tp.deliver_seconds:.1f} s before exobot started; "
        f"migrations {tp.startup_seconds:.2f} s (not counted)",
        f"intake throughput: {tp.mails} mails in {tp.total_seconds:.1f} s = {tp.rate:.0f} mails/s "
        f"(store {tp.stored_seconds:.1f} s, process {process:.1f} s more; "
        f"first processed at {tp.first_processed_seconds:.2f} s)",
        f"  result: {tp.tickets} tickets (expected {tp.expected_tickets}), {tp.acks} acks queued, "
        f"{tp.unverified} unverified entries (expected 0)",
        f"  inbound states: {states}; duplicates {tp.states.get('duplicate', 0)}, "
        f"quarantined {tp.states.get('quarantined', 0)}; outbox at stop: {outbox}",
    ]
    tp_ok = tp.rate >= THROUGHPUT_GOAL
    lines.append(f"  goal ≥ {THROUGHPUT_GOAL:.0f} mails/s: {'met' if tp_ok else 'NOT MET'}")
    lat_ok = True
    if latencies:
        ms = [s.committed * 1000 for s in latencies]
        median = statistics.median(ms)
        stored = statistics.median(s.stored * 1000 for s in latencies)
        lines.append(
            f"SMTP delivery → committed ticket: median {median:.0f} ms, "
            f"p95 {percentile(ms, 0.95):.0f} ms, max {max(ms):.0f} ms, min {min(ms):.0f} ms "
            f"({len(ms)} samples)"
        )
        lines.append(f"  of which SMTP send → raw mail stored by intake: median {stored:.0f} ms")
        lat_ok = median < LATENCY_GOAL_MS
        lines.append(
            f"  goal median < {LATENCY_GOAL_MS / 1000:.0f} s: {'met' if lat_ok else 'NOT MET'}"
        )
    lines.append("=" * 78)
    return "\n".join(lines), tp_ok and lat_ok


def sanity_warnings(tp: ThroughputResult) -> list[str]:
    """Signs that the workload did not do what the benchmark assumes."""
    warnings = []
    if tp.tickets != tp.expected_tickets:
        warnings.append(f"{tp.tickets} tickets, expected {tp.expected_tickets}")
    if tp.unverified:
        warnings.append(f"{tp.unverified} replies were not threaded to their sender's ticket")
    if tp.states.get("quarantined"):
        warnings.append(f"{tp.states['quarantined']} mails quarantined")
    return warnings


# ---------------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--mails",
        type=int,
        default=1000,
        metavar="N",
        help="mails for the throughput run (default 1000)",
    )
    parser.add_argument(
        "--latency-samples",
        type=int,
        default=50,
        metavar="M",
        help="mails for the latency run (default 50; 0 skips it)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="seconds to wait for the throughput run (default max(120, N / 5): generous)",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the temporary directory (stack logs, databases)"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="exobot's INFO logs too")
    args = parser.parse_args(argv)
    if args.mails < 1 or args.latency_samples < 0:
        parser.error("--mails must be ≥ 1 and --latency-samples ≥ 0")
    if args.timeout is None:
        args.timeout = max(120.0, args.mails / 5)
    return args


async def run_all(stack: Stack, workdir: Path, args: argparse.Namespace) -> tuple[str, bool]:
    """Both measurements, one after the other; returns the report."""
    run_id = uuid.uuid4().hex[:8]
    tp = await run_throughput(stack, workdir, args.mails, args.timeout, run_id)
    for warning in sanity_warnings(tp):
        log.warning("workload check: %s", warning)
    latencies = []
    if args.latency_samples:
        latencies = await run_latency(stack, workdir, args.latency_samples, run_id)
    return report(tp, latencies)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; 0 when it ran (goals met or not), 1 when it failed, 130 on Ctrl-C."""
    args = parse_args(argv)

    async def measure(stack: Stack, workdir: Path) -> str:
        text, _all_met = await run_all(stack, workdir, args)
        return text

    return run_with_stack(args, synapse=False, workdir_prefix="exobot-bench-", measure=measure)


if __name__ == "__main__":
    sys.exit(main())
