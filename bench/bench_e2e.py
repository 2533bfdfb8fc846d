"""End-to-end mail benchmark: a full mailbox until every acknowledgement is accepted by SMTP.

    .venv/bin/python bench/bench_e2e.py [--mails N] [--variants mail-sqlite,matrix-postgresql,...]
                                        [--no-memory]

Starts its own stack (Dovecot IMAP + LMTP, the SMTP relay, Synapse and a private PostgreSQL) in a
temporary directory on free ports, and stops it at the end, also on error, Ctrl-C or SIGTERM.

For each variant (mail-only or with Matrix, on SQLite or on PostgreSQL) N member mails
(bench_mail.py's workload) are delivered by LMTP into a fresh support mailbox *before* exobot
starts. exobot then runs in-process as configured for production: the bundled plugins enabled
(connectivity, saved replies, procedures), privacy masking on, the web server on, and in the
Matrix variants an end-to-end encrypted queue room in Synapse. The clock starts at
`App.start()` (migrations before it are not counted) and reads:

- commit-only: every stored mail has left the `received` state (its ticket committed);
- end-to-end: that, and every acknowledgement accepted by the SMTP server (no outbox `mail` row
  pending) and, with Matrix, every chat post sent (no `chat` row pending, apart from the root
  edits deliberately queued for later); what a member and a volunteer experience.

CPU seconds per mail are printed for the exobot process (this process: the benchmark's own
polling is a few queries per 50 ms) and for its parse workers (the fork server and its children,
read from /proc), as on a busy machine the wall figures say little. The relay's log tells how
many messages the SMTP server accepted from the support address.

Then, unless --no-memory, memory at rest (bench_memory.py) on the same stack.

Exit code 0 when the runs complete (a missed goal is not a failure: it is a measurement); 1 when
a run fails (e.g. not every mail processed within the timeout); 130 when interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import resource
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

# bench/ modules (bench_mail imports common, which puts the repository root on sys.path).
from bench_mail import deliver_lmtp, make_workload
from common import (
    BenchError,
    cpu_seconds,
    db_time,
    parse_worker_cpu,
    run_with_stack,
    send_helpers,
    tree_cpu,
)
from sqlalchemy import create_engine, text

from devstack.exobot_config import exobot_config
from devstack.matrix_setup import setup_matrix
from devstack.stack import Stack, port_is_free
from exobot.app import App
from exobot.config import parse_config

log = logging.getLogger("bench")

MAIL_GOAL = 100.0  # mails/s end to end, mail-only
MATRIX_GOAL = 50.0  # mails/s end to end, with a root message per ticket in Matrix
POLL_SECONDS = 0.05
QUEUE = "suport"
VARIANTS = ("mail-sqlite", "mail-postgresql", "matrix-sqlite", "matrix-postgresql")
LATER = "later:"  # exobot.db.outbox.LATER: rows deliberately due later (root edits)

PROCESSED_SQL = "SELECT count(*) FROM inbound_mail WHERE state != 'received'"
# Outbox rows still to deliver now: acknowledgements, chat posts; not the deferred root edits.
UNDELIVERED_SQL = (
    "SELECT count(*) FROM outbox WHERE state = 'pending' "
    f"AND (template IS NULL OR template NOT LIKE '{LATER}%')"
)


# ------------------------------------------------------------------------------ configuration


def plugin_settings(stack: Stack) -> dict[str, Any]:
    """The bundled plugins, enabled as the image check does (a TCP probe of the IMAP port)."""
    return {
        "connectivity": {
            "reference_targets": [f"127.0.0.1 tcp:{stack.imap_port}"],
            "pings": 3,
            "step": "1m",
        },
        "saved-replies": {},
        "procedures": {"queue": "tresoreria"},
    }


def free_port(start: int) -> int:
    """A free loopback port for exobot's web server, from `start` on."""
    for port in range(start, start + 1000):
        if port_is_free(port):
            return port
    raise BenchError("no free port for the web server")


def production_config(
    stack: Stack,
    directory: Path,
    *,
    address: str,
    database_url: str,
    matrix: Any = None,
) -> dict[str, Any]:
    """exobot's configuration as data: plugins, masking, web on, Matrix when given; short
    retry times so that a passing refusal does not dominate the figure."""
    directory.mkdir(parents=True, exist_ok=True)
    data = exobot_config(
        stack,
        address=address,
        database_url=database_url,
        matrix=matrix,
        matrix_store=str(directory / "matrix"),
        alerts={"digest_at": None},
        web=f"127.0.0.1:{free_port(28500 + os.getpid() % 400)}",
        imap={"poll_interval": "5s"},
        smtp={"timeout": "5s"},
        outbox={"retry_base": "1s", "retry_max": "2s", "max_attempts": 30},
    )
    data["plugins"] = plugin_settings(stack)
    data["privacy"] = {"mask": True}
    return data


# ------------------------------------------------------------------------------------ reading


class Reader:
    """A separate synchronous connection on exobot's database (SQLite or PostgreSQL)."""

    def __init__(self, url: str) -> None:
        self.engine = create_engine(url, isolation_level="AUTOCOMMIT")
        self.conn = self.engine.connect()

    def scalar(self, sql: str) -> Any:
        """The first column of the first row."""
        return self.conn.execute(text(sql)).scalar()

    def rows(self, sql: str) -> list[Any]:
        """Every row."""
        return list(self.conn.execute(text(sql)))

    def close(self) -> None:
        """Close the connection and the engine."""
        self.conn.close()
        self.engine.dispose()


def epoch(value: Any) -> float:
    """A timestamp column (a datetime on PostgreSQL, text on SQLite) as epoch seconds."""
    if isinstance(value, datetime):
        return db_time(value.isoformat())
    return db_time(value)


# Set when the run is interrupted: the polling threads stop at once instead of at their
# deadline (an interpreter shutting down waits for them).
STOPPING = threading.Event()


def wait_until(reader: Reader, checks: list[tuple[str, str, int]], deadline: float) -> float:
    """Poll until every (sql, comparison, target) holds; the perf_counter time it did.
    Comparison ">=" or "==". BenchError at the monotonic `deadline` or when STOPPING."""
    while not STOPPING.is_set():
        values = [reader.scalar(sql) or 0 for sql, _, _ in checks]
        if all(
            value >= target if op == ">=" else value == target
            for value, (_, op, target) in zip(values, checks, strict=True)
        ):
            return time.perf_counter()
        if time.monotonic() > deadline:
            have = ", ".join(f"{sql!r}: {v}" for v, (sql, _, _) in zip(values, checks, strict=True))
            raise BenchError(f"timed out ({have})")
        time.sleep(POLL_SECONDS)
    raise BenchError("interrupted")


def relay_accepted(stack: Stack, sender: str) -> int:
    """How many messages the SMTP relay accepted from `sender` (its log, one line each)."""
    try:
        lines = (stack.dir / "logs" / "smtp.log").read_text(errors="replace").splitlines()
    except OSError:
        return -1
    return sum(1 for line in lines if f"DATA from {sender} " in line and "250" in line)


# ---------------------------------------------------------------------------------------- run


@dataclass
class Result:
    """One variant's measurement."""

    variant: str
    mails: int
    tickets: int = 0
    expected_tickets: int = 0
    commit_seconds: float = math.nan
    e2e_seconds: float = math.nan
    exobot_cpu: float = 0.0  # seconds, App.start() until end to end
    worker_cpu: float = 0.0
    helper_cpu: float = 0.0  # the send helpers' (PostgreSQL), same span
    commit_cpu: float = 0.0  # exobot + workers until commit-only
    # The stack's servers (Synapse, PostgreSQL, Dovecot, the relay), App.start() until end to
    # end: they share the machine's cores with exobot, so they bound the figure too.
    server_cpu: dict[str, float] = field(default_factory=dict)
    outbox: dict[str, int] = field(default_factory=dict)  # "kind state" -> rows
    states: dict[str, int] = field(default_factory=dict)
    relay: int = 0  # messages the relay accepted from the support address

    @property
    def commit_rate(self) -> float:
        """Mails per second until every ticket was committed."""
        return self.mails / self.commit_seconds

    @property
    def e2e_rate(self) -> float:
        """Mails per second until every acknowledgement (and chat post) was delivered."""
        return self.mails / self.e2e_seconds


def servers_cpu(stack: Stack) -> dict[str, float]:
    """CPU seconds so far of each server the stack runs, by name."""
    return {name: tree_cpu(pid) for name, pid in stack.pids.items() if pid}


def helper_cpu() -> float:
    """CPU seconds so far of this process's send helpers: those that ended (waited for, the
    only children that end during a run) and those still running."""
    ended = resource.getrusage(resource.RUSAGE_CHILDREN)
    running = sum(cpu_seconds(pid, reaped_children=False) for pid in send_helpers(os.getpid()))
    return ended.ru_utime + ended.ru_stime + running


def self_cpu() -> float:
    """CPU seconds of this process so far (every thread)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def run_variant(
    stack: Stack, workdir: Path, variant: str, count: int, timeout: float, run_id: str
) -> Result:
    """Fill a fresh mailbox, start exobot, time it until commit-only and end to end."""
    chat, backend = variant.split("-")
    tag = f"{chat[:4]}{backend[:2]}"
    address = f"suport-{tag}.{run_id}@example.org"
    directory = workdir / variant
    work = make_workload(address, f"{tag}{run_id}", count)
    result = Result(variant, count, expected_tickets=work.new_tickets)
    print(f"{variant}: delivering {count} mails by LMTP to {address} ...", flush=True)
    await asyncio.to_thread(deliver_lmtp, stack, address, work.mails)
    setup = None
    if chat == "matrix":
        # Encrypted, as a deployment's rooms are (the bot warns about a room that is not).
        setup = await asyncio.to_thread(
            setup_matrix, stack, tag=f"-e{tag}{run_id}", queues=(QUEUE,), encrypted=(QUEUE,)
        )
    if backend == "postgresql":
        url = await asyncio.to_thread(stack.postgres_url, f"exobot_e2e_{tag}_{run_id}")
    else:
        directory.mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{directory / 'exobot.db'}"
    config = parse_config(
        production_config(stack, directory, address=address, database_url=url, matrix=setup),
        env={},
    )
    app = App(config)
    await app.build()  # migrations: once per installation, not counted
    reader = Reader(url)
    relay_before = relay_accepted(stack, address)
    print(f"{variant}: starting exobot, waiting for every ticket and delivery ...", flush=True)
    deadline = time.monotonic() + timeout
    try:
        cpu0, workers0, helpers0 = self_cpu(), parse_worker_cpu(os.getpid()), helper_cpu()
        servers0 = servers_cpu(stack)
        epoch0, t0 = time.time(), time.perf_counter()
        await app.start()
        committed = await asyncio.to_thread(
            wait_until, reader, [(PROCESSED_SQL, ">=", count)], deadline
        )
        result.commit_cpu = (
            self_cpu() - cpu0 + parse_worker_cpu(os.getpid()) - workers0 + helper_cpu() - helpers0
        )
        done = await asyncio.to_thread(
            wait_until, reader, [(PROCESSED_SQL, ">=", count), (UNDELIVERED_SQL, "==", 0)], deadline
        )
        result.exobot_cpu = self_cpu() - cpu0
        result.worker_cpu = parse_worker_cpu(os.getpid()) - workers0
        result.helper_cpu = helper_cpu() - helpers0
        result.server_cpu = {
            name: seconds - servers0.get(name, 0.0) for name, seconds in servers_cpu(stack).items()
        }
    except BaseException:
        STOPPING.set()  # Ctrl-C or SIGTERM: the polling thread must not hold the exit
        raise
    finally:
        await app.stop()
    try:
        # The database's timestamps are finer than the polling; the poll bounds them.
        last_processed = reader.scalar("SELECT max(processed_at) FROM inbound_mail")
        last_done = reader.scalar(
            "SELECT max(done_at) FROM outbox WHERE state = 'sent' "
            f"AND (template IS NULL OR template NOT LIKE '{LATER}%')"
        )
        result.commit_seconds = min(committed - t0, epoch(last_processed) - epoch0)
        e2e = done - t0
        if last_done is not None and math.isfinite(epoch(last_done)):
            e2e = min(e2e, max(epoch(last_done), epoch(last_processed)) - epoch0)
        result.e2e_seconds = e2e
        result.tickets = reader.scalar("SELECT count(*) FROM tickets")
        result.states = {
            row[0]: row[1]
            for row in reader.rows("SELECT state, count(*) FROM inbound_mail GROUP BY state")
        }
        result.outbox = {
            f"{row[0]} {row[1]}": row[2]
            for row in reader.rows("SELECT kind, state, count(*) FROM outbox GROUP BY kind, state")
        }
    finally:
        reader.close()
    result.relay = relay_accepted(stack, address) - relay_before
    return result


# ------------------------------------------------------------------------------------- report


def variant_label(variant: str) -> str:
    """'mail-sqlite' → 'mail-only, sqlite'; 'matrix-postgresql' → 'with Matrix, postgresql'."""
    chat, backend = variant.split("-")
    return f"{'mail-only' if chat == 'mail' else 'with Matrix'}, {backend}"


def report_lines(results: list[Result]) -> list[str]:
    """The figures, one block per variant, and the goals."""
    lines = ["", "=" * 78, f"end to end: {results[0].mails} mails waiting before exobot starts"]
    for r in results:
        goal = MATRIX_GOAL if r.variant.startswith("matrix") else MAIL_GOAL
        met = "met" if r.e2e_rate >= goal else "NOT MET"
        cpu = (r.exobot_cpu + r.worker_cpu + r.helper_cpu) / r.mails * 1000
        lines += [
            f"end-to-end ({variant_label(r.variant)}): {r.e2e_rate:.0f} mails/s "
            f"({r.e2e_seconds:.1f} s); commit-only {r.commit_rate:.0f} mails/s "
            f"({r.commit_seconds:.1f} s); goal ≥ {goal:.0f}/s {met}",
            f"  CPU per mail: {cpu:.1f} ms = exobot process {r.exobot_cpu / r.mails * 1000:.1f} ms"
            f" + send helper {r.helper_cpu / r.mails * 1000:.1f} ms"
            f" + parse workers {r.worker_cpu / r.mails * 1000:.1f} ms "
            f"(until commit-only: {r.commit_cpu / r.mails * 1000:.1f} ms)",
            "  servers' CPU per mail (same cores): "
            + ", ".join(
                f"{name} {seconds / r.mails * 1000:.1f} ms"
                for name, seconds in sorted(r.server_cpu.items(), key=lambda kv: -kv[1])
            ),
            ceiling_line(r),
            f"  {r.tickets} tickets (expected {r.expected_tickets}); inbound "
            + ", ".join(f"{k} {v}" for k, v in sorted(r.states.items()))
            + "; outbox "
            + ", ".join(f"{k} {v}" for k, v in sorted(r.outbox.items()))
            + f"; SMTP relay accepted {r.relay} from the support address",
        ]
    lines.append("=" * 78)
    return lines


def ceiling_line(r: Result) -> str:
    """What the CPU of every process bounds the rate to: all of them share this machine's
    cores, so no run can go faster than cores / (CPU seconds per mail)."""
    cores = len(os.sched_getaffinity(0))
    per_mail = (r.exobot_cpu + r.worker_cpu + r.helper_cpu + sum(r.server_cpu.values())) / r.mails
    ceiling = cores / per_mail if per_mail > 0 else math.inf
    return (
        f"  all processes: {per_mail * 1000:.1f} ms CPU per mail → at most {ceiling:.0f} mails/s"
        f" on this machine's {cores} cores (the figure reaches {r.e2e_rate / ceiling:.0%} of it)"
    )


def sanity_warnings(r: Result) -> list[str]:
    """Signs that a run did not do what the benchmark assumes."""
    warnings = []
    if r.tickets != r.expected_tickets:
        warnings.append(f"{r.variant}: {r.tickets} tickets, expected {r.expected_tickets}")
    if r.states.get("quarantined"):
        warnings.append(f"{r.variant}: {r.states['quarantined']} mails quarantined")
    sent_mail = r.outbox.get("mail sent", 0)
    if r.relay >= 0 and r.relay != sent_mail:
        warnings.append(f"{r.variant}: relay accepted {r.relay}, outbox says {sent_mail} sent")
    failed = {k: v for k, v in r.outbox.items() if k.endswith("failed")}
    if failed:
        warnings.append(f"{r.variant}: outbox rows failed: {json.dumps(failed)}")
    return warnings


# ---------------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mails", type=int, default=1000, metavar="N", help="default 1000")
    parser.add_argument(
        "--variants",
        default=",".join(VARIANTS),
        help=f"comma-separated, of {', '.join(VARIANTS)} (default: all)",
    )
    parser.add_argument(
        "--timeout", type=float, default=None, help="seconds per variant (default max(300, N/2))"
    )
    parser.add_argument("--no-memory", action="store_true", help="skip the memory at rest")
    parser.add_argument("--memory-mails", type=int, default=5, help="mails before measuring")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("-v", "--verbose", action="store_true", help="exobot's INFO logs too")
    args = parser.parse_args(argv)
    args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = set(args.variants) - set(VARIANTS)
    if unknown or not args.variants or args.mails < 1:
        parser.error(f"unknown variants {sorted(unknown)} or --mails < 1")
    if args.timeout is None:
        args.timeout = max(300.0, args.mails / 2)
    return args


def main(argv: list[str] | None = None) -> int:
    """Run every variant on one stack, then the memory at rest; print the figures."""
    args = parse_args(argv)
    synapse = not args.no_memory or any(v.startswith("matrix") for v in args.variants)
    postgres = any(v.endswith("postgresql") for v in args.variants)

    async def measure(stack: Stack, workdir: Path) -> str:
        run_id = uuid.uuid4().hex[:6]
        results = []
        failures = []
        for variant in args.variants:
            # A variant that fails (a timeout) does not lose the others' figures.
            try:
                result = await run_variant(
                    stack, workdir, variant, args.mails, args.timeout, run_id
                )
            except BenchError as error:
                failures.append(f"{variant}: {error}")
                print(f"{variant} FAILED: {error}", flush=True)
                continue
            for warning in sanity_warnings(result):
                log.warning("check: %s", warning)
            results.append(result)
            print("\n".join(report_lines([result])[3:-1]), flush=True)
        lines = report_lines(results) if results else ["", "=" * 78, "=" * 78]
        if not args.no_memory:
            from bench_memory import measure_memory

            memory = await asyncio.to_thread(
                measure_memory, stack, workdir / "memory", args.memory_mails, run_id
            )
            lines.insert(-1, memory.line())
            lines[-1:-1] = memory.detail_lines()
        if failures:
            print("\n".join(lines), flush=True)
            raise BenchError("; ".join(failures))
        return "\n".join(lines)

    return run_with_stack(
        args, synapse=synapse, postgres=postgres, workdir_prefix="exobot-e2e-", measure=measure
    )


if __name__ == "__main__":
    sys.exit(main())
