"""Memory busy and at rest: `exobot run` with Matrix, the web server and the bundled plugins,
after a few mails, as RSS and PSS summed over the exobot process and its children.

    .venv/bin/python bench/bench_memory.py [--mails N] [--idle-seconds S]

Starts its own stack (Dovecot, the SMTP relay, Synapse) in a temporary directory on free ports
and stops it at the end (`make bench` runs this through bench_e2e.py, on that stack). exobot runs
as its own process, `exobot run -c CONFIG` (SQLite, Matrix room, web on, plugins enabled as in
bench_e2e.py, privacy masking on, `mail.parse_idle_seconds` S, default 10). N member mails
are sent through SMTP. The resident memory of the exobot process and of every process below it
(the multiprocessing fork server and resource tracker, the parse workers) is read from
/proc/PID/smaps_rollup twice:

- busy: once every ticket is committed and every acknowledgement and chat post delivered (the
  parse workers still run);
- at rest: once the parse workers, the fork server and the resource tracker have stopped (S
  seconds without mail), and a few seconds more.

Between the two, one mail is sent while the workers run, and one more after the rest: the time
from sending each to its ticket (the same IMAP and database path) says what the first mail
after a rest pays for starting the workers.

- RSS counts every page a process has in memory, shared ones included (the goal is on RSS);
- PSS divides each shared page among the processes that map it, so its sum is what the
  processes together cost the machine.

Goal: < 150 MB RSS summed at rest. Exit code 0 when measured, 1 when the run fails, 130 on
Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from bench_e2e import UNDELIVERED_SQL, production_config
from bench_mail import SMTP_POLICY, MailFactory
from common import (
    ROOT,
    BenchError,
    connect_db,
    memory_kb,
    process_roles,
    run_with_stack,
    scalar,
)

from devstack.matrix_setup import setup_matrix
from devstack.stack import Stack

GOAL_MB = 150.0
READY_TIMEOUT = 90.0  # exobot started, every mail handled (generous: a busy machine)
IDLE_SECONDS = 10.0  # mail.parse_idle_seconds for the run
REST_TIMEOUT = 120.0  # beyond the idle time: the workers and the fork server have stopped
SETTLE_SECONDS = 5.0  # "at rest": after the children stopped, before reading memory
STOP_TIMEOUT = 30.0
POLL_SECONDS = 0.2
MAIL_POLL_SECONDS = 0.02  # when timing one mail


@dataclass
class ProcessMemory:
    """One process's resident memory, in kB."""

    pid: int
    role: str
    rss: int
    pss: int


@dataclass
class MemoryResult:
    """The processes of one exobot at rest."""

    processes: list[ProcessMemory] = field(default_factory=list)

    @property
    def rss_mb(self) -> float:
        """RSS summed over the processes, in MB (2^20 bytes)."""
        return sum(p.rss for p in self.processes) / 1024

    @property
    def pss_mb(self) -> float:
        """PSS summed over the processes, in MB."""
        return sum(p.pss for p in self.processes) / 1024

    @property
    def main_rss_mb(self) -> float:
        """RSS of the exobot process alone, in MB."""
        return sum(p.rss for p in self.processes if p.role == "exobot run") / 1024

    def summary(self) -> str:
        """RSS and PSS summed, and how many processes."""
        return (
            f"{self.rss_mb:.0f} MB RSS summed over {len(self.processes)} processes "
            f"(PSS {self.pss_mb:.0f} MB; exobot run alone {self.main_rss_mb:.0f} MB RSS)"
        )

    def detail_lines(self) -> list[str]:
        """One line per process."""
        return [
            f"  {p.role:<18} pid {p.pid:>7}: RSS {p.rss / 1024:6.1f} MB, PSS {p.pss / 1024:6.1f} MB"
            for p in self.processes
        ]


@dataclass
class MemoryReport:
    """Busy and at rest, and what one mail took with the workers running and after the rest."""

    busy: MemoryResult
    rest: MemoryResult
    warm_mail: float  # seconds from sending to its ticket, parse workers running
    cold_mail: float  # the same for the first mail after the rest (workers start)

    def line(self) -> str:
        """The one-line figure `make bench` prints: the goal is on the memory at rest."""
        met = "met" if self.rest.rss_mb < GOAL_MB else "NOT MET"
        return f"memory at rest: {self.rest.summary()}; goal < {GOAL_MB:.0f} MB RSS {met}"

    def detail_lines(self) -> list[str]:
        """Per process, busy and at rest, and the first mail's start-up cost."""
        return [
            f"  busy (right after the last delivery): {self.busy.summary()}",
            *self.busy.detail_lines(),
            "  at rest (parse workers retired):",
            *self.rest.detail_lines(),
            f"  one mail to its ticket: {self.warm_mail:.2f} s with the workers running, "
            f"{self.cold_mail:.2f} s as the first after the rest "
            f"(starting them: +{self.cold_mail - self.warm_mail:.2f} s)",
        ]


def read_memory(main: int) -> MemoryResult:
    """RSS and PSS of `main` and every process below it. The parse workers are forks of the
    fork server, with its command line: they are told apart by their parent."""
    result = MemoryResult()
    for pid, role in process_roles(main):
        rss, pss = memory_kb(pid)
        if rss:
            result.processes.append(ProcessMemory(pid, role, rss, pss))
    return result


def top_mappings(pid: int, count: int = 10) -> list[tuple[str, int, int]]:
    """The `count` largest mapped files (and [heap], anonymous) of a process by RSS:
    (name, RSS kB, PSS kB), from /proc/PID/smaps."""
    totals: dict[str, list[int]] = {}
    name = "?"
    try:
        with open(f"/proc/{pid}/smaps") as file:
            for line in file:
                first = line.split(maxsplit=6)
                if len(first) >= 5 and "-" in first[0] and ":" in first[3]:
                    name = first[5].strip() if len(first) > 5 else "[anonymous]"
                elif first[0] in ("Rss:", "Pss:"):
                    entry = totals.setdefault(name, [0, 0])
                    entry[0 if first[0] == "Rss:" else 1] += int(first[1])
    except OSError:
        return []
    ranked = sorted(totals.items(), key=lambda item: -item[1][0])[:count]
    return [(name, rss, pss) for name, (rss, pss) in ranked]


def exobot_command() -> list[str]:
    """`exobot` of this interpreter's environment."""
    script = Path(sys.executable).parent / "exobot"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from exobot.cli import main; sys.exit(main())"]


def measure_memory(
    stack: Stack,
    directory: Path,
    mails: int,
    run_id: str,
    mappings: bool = False,
    parse_workers: int | None = None,
    idle_seconds: float = IDLE_SECONDS,
) -> MemoryReport:
    """Run exobot with Matrix, web and plugins; read its memory after `mails` mails and again
    at rest, once its parse workers have retired (`idle_seconds`: mail.parse_idle_seconds);
    time one mail before and one after the rest (with `mappings`, print each process's largest
    mappings too; `parse_workers` overrides `mail.parse_workers`)."""
    directory.mkdir(parents=True, exist_ok=True)
    address = f"suport-mem.{run_id}@example.org"
    setup = setup_matrix(stack, tag=f"-m{run_id}", queues=("suport",))
    database = directory / "exobot.db"
    data = production_config(
        stack, directory, address=address, database_url=f"sqlite:///{database}", matrix=setup
    )
    data["logging"] = {"level": "INFO"}  # to its own log file
    if parse_workers is not None:
        data["mail"]["parse_workers"] = parse_workers
    data["mail"]["parse_idle_seconds"] = idle_seconds
    config = directory / "config.yaml"
    config.write_text(yaml.safe_dump(data, allow_unicode=True))
    print(f"memory: exobot run with Matrix, web and plugins; {mails} mails ...", flush=True)
    log = (directory / "exobot.log").open("wb")
    process = subprocess.Popen(
        [*exobot_command(), "run", "-c", str(config)],
        cwd=directory,
        stdout=log,
        stderr=subprocess.STDOUT,
        # This tree's exobot, also when the benchmark runs from a copy of the repository.
        env={**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)},
    )
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while not database.exists() or not _has_tables(database):
            _check_alive(process, deadline, directory)
            time.sleep(POLL_SECONDS)
        factory = MailFactory(address, f"mem{run_id}", members=max(1, mails), seed=11)
        for _ in range(mails):
            msg, sender, _name = factory.new_request("plain")
            stack.send_mail(msg.as_bytes(policy=SMTP_POLICY), sender, [address])
        reader = connect_db(database)
        try:
            while not (
                scalar(reader, "SELECT count(*) FROM tickets") >= mails
                and scalar(reader, UNDELIVERED_SQL) == 0
                and scalar(reader, "SELECT count(*) FROM outbox WHERE kind = 'chat'") >= mails
            ):
                _check_alive(process, deadline, directory)
                time.sleep(POLL_SECONDS)
            busy = read_memory(process.pid)
            if not any(p.role == "parse worker" for p in busy.processes):
                print("memory: the parse workers retired before the busy reading", flush=True)
            _print_mappings(busy, mappings)

            def one_mail() -> float:
                """Seconds from sending one more mail to its ticket."""
                before = scalar(reader, "SELECT count(*) FROM tickets")
                msg, sender, _name = factory.new_request("plain")
                started = time.monotonic()
                stack.send_mail(msg.as_bytes(policy=SMTP_POLICY), sender, [address])
                limit = time.monotonic() + READY_TIMEOUT
                while scalar(reader, "SELECT count(*) FROM tickets") <= before:
                    _check_alive(process, limit, directory)
                    time.sleep(MAIL_POLL_SECONDS)
                return time.monotonic() - started

            warm = one_mail()
            # At rest: every child of exobot (the workers, the fork server, the resource
            # tracker) has stopped by itself.
            limit = time.monotonic() + idle_seconds + REST_TIMEOUT
            while len(process_roles(process.pid)) > 1:
                if time.monotonic() > limit:
                    alive = [role for _pid, role in process_roles(process.pid)[1:]]
                    raise BenchError(
                        f"still running {idle_seconds + REST_TIMEOUT:.0f} s "
                        f"after the last mail: {', '.join(alive)}"
                    )
                _check_alive(process, limit, directory)
                time.sleep(POLL_SECONDS)
            time.sleep(SETTLE_SECONDS)
            _check_alive(process, limit + SETTLE_SECONDS, directory)
            rest = read_memory(process.pid)
            _print_mappings(rest, mappings)
            cold = one_mail()
        finally:
            reader.close()
        return MemoryReport(busy, rest, warm, cold)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _print_mappings(result: MemoryResult, mappings: bool) -> None:
    if mappings:
        for p in result.processes:
            print(f"{p.role} {p.pid}:")
            for name, rss, pss in top_mappings(p.pid):
                print(f"  {rss / 1024:7.1f} MB RSS {pss / 1024:7.1f} MB PSS  {name}")


def _has_tables(database: Path) -> bool:
    conn = connect_db(database)
    try:
        return bool(scalar(conn, "SELECT count(*) FROM sqlite_master WHERE name = 'outbox'"))
    except Exception:
        return False
    finally:
        conn.close()


def _check_alive(process: subprocess.Popen, deadline: float, directory: Path) -> None:
    if process.poll() is not None:
        tail = (directory / "exobot.log").read_text(errors="replace")[-2000:]
        raise BenchError(f"exobot run ended with status {process.returncode}:\n{tail}")
    if time.monotonic() > deadline:
        tail = (directory / "exobot.log").read_text(errors="replace")[-2000:]
        raise BenchError(f"exobot did not handle the mails within {READY_TIMEOUT:.0f} s:\n{tail}")


def main(argv: list[str] | None = None) -> int:
    """Measure once on a fresh stack and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mails", type=int, default=5, metavar="N", help="default 5")
    parser.add_argument(
        "--mappings", action="store_true", help="print each process's largest mappings"
    )
    parser.add_argument(
        "--parse-workers", type=int, default=None, help="mail.parse_workers (default: exobot's)"
    )
    parser.add_argument(
        "--idle-seconds",
        type=float,
        default=IDLE_SECONDS,
        help=f"mail.parse_idle_seconds (default {IDLE_SECONDS:g})",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("-v", "--verbose", action="store_true", help="INFO logs of the bench")
    args = parser.parse_args(argv)

    async def measure(stack: Stack, workdir: Path) -> str:
        import asyncio
        import uuid

        result = await asyncio.to_thread(
            measure_memory,
            stack,
            workdir / "memory",
            max(1, args.mails),
            uuid.uuid4().hex[:6],
            args.mappings,
            args.parse_workers,
            args.idle_seconds,
        )
        return "\n".join([result.line(), *result.detail_lines()])

    return run_with_stack(args, synapse=True, workdir_prefix="exobot-mem-", measure=measure)


if __name__ == "__main__":
    sys.exit(main())
