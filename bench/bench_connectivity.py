"""The cost of the connectivity monitor: N monitored targets probed for a few rounds.

Real probes, real storage: N loopback addresses (127.0.0.1 … 127.0.0.N) are started as
monitors (5 per ticket, as the default limit allows) in a migrated SQLite database, and the
plugin's `MonitorScheduler` runs their rounds with the real ICMP probe (`fping -C`, COUNT pings
per round) and stores them through `store.py`. Time is a fake clock moved one step per round,
so the rounds follow each other at once; the pings inside a burst are spaced by a short
interval instead of SmokePing's 1 s (fping's work per ping does not depend on the spacing).

Printed: CPU seconds (exobot's process plus its fping children, user + system) per round of
N targets, what that is as a share of one core at the default 5-minute step, and the peak
RSS of the process. Goal: under 5 % of a core.

    .venv/bin/python bench/bench_connectivity.py                # 100 targets, 5 rounds
    .venv/bin/python bench/bench_connectivity.py --targets 20 --rounds 2   # smoke
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import exobot_connectivity
from common import BenchError
from exobot_connectivity import probes, store
from exobot_connectivity.scheduler import MonitorScheduler
from exobot_connectivity.targets import parse_target

from exobot.db.engine import create_engine
from exobot.db.migrate import upgrade_async
from exobot.db.repository import SqlRepository

DEFAULT_STEP = timedelta(minutes=5)
GOAL_PERCENT = 5.0
PER_TICKET = 5


class SteppedClock:
    """A clock that only moves when told (one step per round)."""

    def __init__(self) -> None:
        self.at = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self.at


def _cpu() -> float:
    """CPU seconds so far of this process and its waited-for children (fping)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


async def run(targets: int, rounds: int, count: int, interval: float) -> int:
    """The benchmark; returns the exit status (1 when the probing itself failed)."""
    if probes.fping_path() is None:
        raise BenchError("fping is not installed (make stack installs it)")
    if not 1 <= targets <= 254:
        raise BenchError("--targets must be 1..254 (one loopback address each)")
    with tempfile.TemporaryDirectory(prefix="bench-connectivity-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'exobot.db'}"
        migrations = Path(exobot_connectivity.__file__).parent / "migrations"
        await upgrade_async(url, {"connectivity": migrations})
        repo = SqlRepository(create_engine(url))
        clock = SteppedClock()
        async with repo.connection() as conn:
            for i in range(targets):
                address = f"127.0.0.{i + 1}"
                await store.start(conn, ticket=1 + i // PER_TICKET, target=address, kind="icmp",
                                  host=address, port=None, by="@bench:example.org",
                                  now=clock.now(), total=max(targets, store.TOTAL_LIMIT))

        async def prober(target: str, kind: str, host: str, port: int | None) -> probes.Round:
            return await probes.probe(parse_target(target), host, count=count, interval=interval)

        scheduler = MonitorScheduler(repo.connection, prober, clock, DEFAULT_STEP, count)
        per_round: list[tuple[float, float]] = []
        try:
            for _ in range(rounds):
                cpu, wall = _cpu(), time.perf_counter()
                await scheduler.run_due()
                await scheduler.drain()
                per_round.append((_cpu() - cpu, time.perf_counter() - wall))
                clock.at += DEFAULT_STEP
            async with repo.connection() as conn:
                stored = [await store.latest_round(conn, m.id) for m in await store.running(conn)]
        finally:
            await scheduler.close()
            await repo.close()

    answered = sum(1 for r in stored if r is not None and r.received == count)
    cpu_round = sorted(c for c, _ in per_round)[len(per_round) // 2]  # the median round
    percent = 100 * cpu_round / DEFAULT_STEP.total_seconds()
    own_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"connectivity: {targets} targets × {count} pings, {rounds} rounds "
          f"(pings {interval * 1000:.0f} ms apart)")
    for i, (cpu, wall) in enumerate(per_round, 1):
        print(f"  round {i}: {cpu:.3f} s CPU, {wall:.2f} s wall")
    print(f"CPU per round of {targets} targets (median): {cpu_round:.3f} s")
    print(f"at the default {DEFAULT_STEP.total_seconds() / 60:.0f}-minute step: "
          f"{percent:.2f} % of one core (goal < {GOAL_PERCENT:.0f} %: "
          f"{'met' if percent < GOAL_PERCENT else 'MISSED'})")
    # fping's own memory is tiny; RUSAGE_CHILDREN's maxrss would count the forked Python's
    # pages before exec, so it is not shown.
    print(f"peak RSS: {own_rss:.0f} MiB (the whole process: Python, SQLAlchemy, the plugin)")
    print(f"last round fully answered: {answered}/{targets} targets")
    if answered < targets:
        print("error: some loopback targets did not answer every ping", file=sys.stderr)
        return 1
    return 0


def main() -> int:
    """Parse the options and run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--pings", type=int, default=20, help="pings per round (default 20)")
    parser.add_argument("--interval", type=float, default=0.02,
                        help="seconds between the pings of a burst (default 0.02)")
    args = parser.parse_args()
    try:
        return asyncio.run(run(args.targets, args.rounds, args.pings, args.interval))
    except BenchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
