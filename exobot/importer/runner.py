"""The import itself: plan (or dry run), collision check, the loop with its progress line,
numbering, the rooms' summary lines and the final report.

Each ticket goes to the ticket service as one `ImportTicket` (one transaction), so an import
killed at any point leaves whole tickets behind, and running it again skips what is there
(the service records every RT ticket and transaction it wrote; a ticket whose RT update
time has not moved since is not even read again).
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TextIO

from exobot.core.intents import ImportTicket
from exobot.core.model import Actor
from exobot.importer.rt_mapping import MappingRules, map_ticket, owner_of, skip_reason
from exobot.importer.rt_source import RtGap, RtSource, RtTicket

log = logging.getLogger("exobot.importer")

# The progress line is written at most this often (seconds) when stderr is no terminal.
PROGRESS_EVERY = 5.0
# A full run probes up to this many numbers RT's search skipped (one request each, some
# 35 ms) even when reading the histories of fewer tickets would take fewer requests.
PROBE_BUDGET = 1000


class CollisionError(Exception):
    """Numbers to import are taken here by tickets that were not imported from this RT."""

    def __init__(self, numbers: list[int]) -> None:
        super().__init__(f"{len(numbers)} number(s) already taken here: {numbers[:20]}")
        self.numbers = numbers


@dataclass
class ImportReport:
    """What an import (or a dry run) found and did."""

    api: str = ""
    listed: int = 0  # tickets RT listed (merged ones excluded: they live in their survivor)
    planned: int = 0  # tickets to import (not skipped)
    created: int = 0  # tickets new here
    updated: int = 0  # tickets that were here and got new history
    unchanged: int = 0  # tickets that were here with nothing new
    entries: int = 0  # history entries written
    skipped: dict[int, str] = field(default_factory=dict)  # RT number → reason
    unknown_owners: Counter = field(default_factory=Counter)  # RT owner → tickets
    unmapped_queues: Counter = field(default_factory=Counter)  # RT queue → tickets
    too_big: list[str] = field(default_factory=list)
    collisions: list[int] = field(default_factory=list)
    merged: dict[int, int] = field(default_factory=dict)  # merged number → survivor
    per_queue: Counter = field(default_factory=Counter)  # exobot queue → tickets planned
    per_status: Counter = field(default_factory=Counter)
    per_owner: Counter = field(default_factory=Counter)
    done_per_queue: dict[str, Counter] = field(default_factory=dict)
    next_number: int | None = None
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    def lines(self, dry_run: bool = False) -> list[str]:
        """The report, one fact per line; what an administrator checks before the switch-over
        (collisions, unknown owners, unmapped queues, attachments left out) is always said,
        "none" included, so that a missing line is never mistaken for a good one."""
        out = []
        if dry_run:
            out.append("DRY RUN: nothing was written. Without --dry-run the import would do this:")
        out.append(
            f"Request Tracker, REST {self.api}: {_count(self.listed, 'ticket')} listed, "
            f"{self.planned} to import"
        )
        if dry_run:
            for title, counts in (
                ("queue", self.per_queue),
                ("status", self.per_status),
                ("owner", self.per_owner),
            ):
                shown = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
                out.append(f"  per {title}: {shown or '-'}")
        else:
            rate = self.planned / self.seconds if self.seconds else 0.0
            out.append(
                f"imported: {self.created} new, {self.updated} updated, {self.unchanged} "
                f"unchanged; {_count(self.entries, 'history entry', 'history entries')} in "
                f"{self.seconds:.1f} s ({rate:.1f} tickets/s)"
            )
            if self.next_number is not None:
                out.append(f"new tickets here start at {self.next_number}")
        if self.merged:
            out.append(
                "merged numbers (each opens its surviving ticket): "
                + ", ".join(f"{a}→{b}" for a, b in sorted(self.merged.items())[:50])
                + (" …" if len(self.merged) > 50 else "")
            )
        if dry_run or self.collisions:
            out.append(
                (
                    "COLLISIONS (taken here, not imported from this RT): "
                    + ", ".join(map(str, self.collisions[:50]))
                    + (" …" if len(self.collisions) > 50 else "")
                    + "; the import stops before writing anything"
                )
                if self.collisions
                else "collisions: none"
            )
        if self.unmapped_queues:
            out.append(
                "unmapped RT queues (skipped; map them with --queue RTQUEUE=QUEUE): "
                + ", ".join(f"{q} ({n})" for q, n in sorted(self.unmapped_queues.items()))
            )
        else:
            out.append("unmapped RT queues: none")
        if self.unknown_owners:
            out.append(
                "unknown owners (imported unowned; name them in --owners): "
                + ", ".join(f"{o} ({n})" for o, n in sorted(self.unknown_owners.items()))
            )
        else:
            out.append("unknown owners: none")
        reasons = Counter(self.skipped.values())
        if reasons:
            out.append(
                "skipped: "
                + ", ".join(f"{n} {why}" for why, n in sorted(reasons.items()))
                + " ("
                + ", ".join(f"#{k}" for k in sorted(self.skipped)[:30])
                + (" …" if len(self.skipped) > 30 else "")
                + ")"
            )
        else:
            out.append("skipped: none")
        if self.too_big:
            out.append(f"attachments too big, left out ({len(self.too_big)}):")
            out.extend(f"  {item}" for item in self.too_big[:100])
            if len(self.too_big) > 100:
                out.append(f"  … and {len(self.too_big) - 100} more")
        elif not dry_run:  # sizes are only known once the history is read
            out.append("attachments too big: none")
        out.extend(f"problem: {p}" for p in self.problems)
        return out


def _count(n: int, one: str, many: str | None = None) -> str:
    """`n` with its noun in the right number ("1 ticket", "2 tickets")."""
    return f"{n} {one if n == 1 else (many or one + 's')}"


class Progress:
    """Tickets done, rate and time left on stderr: a bar redrawn in place on a terminal,
    else a plain line every few seconds (a log file gets no carriage returns)."""

    WIDTH = 30

    def __init__(self, total: int, stream: TextIO | None = None) -> None:
        self.total = total
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.started = time.monotonic()
        self.last = 0.0
        self.done = 0
        self.drawn = 0  # length of the bar's line on the terminal, to blank what it leaves
        self.closed = False

    def step(self, done: int, force: bool = False) -> None:
        """Report `done` tickets of the total."""
        self.done = done
        now = time.monotonic()
        if not force and not self.tty and now - self.last < PROGRESS_EVERY:
            return
        self.last = now
        elapsed = now - self.started
        if done >= self.total:
            tail = f"done in {_duration(elapsed)}"
        elif done and elapsed > 0:
            rate = done / elapsed
            tail = f"{rate:.1f} tickets/s, about {_duration((self.total - done) / rate)} left"
        else:
            tail = "estimating the time left"
        filled = self.WIDTH * done // self.total if self.total else self.WIDTH
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        line = f"importing [{bar}] {done}/{self.total} tickets, {tail}"
        if self.tty:
            # Pad to the longest line drawn: a shorter line must not leave an old one's end.
            self.stream.write("\r" + line.ljust(self.drawn))
            self.drawn = max(self.drawn, len(line))
            if done >= self.total:
                self.close()
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        """End the bar's line on a terminal (also when the import stops half-way), so what
        is printed next starts on a line of its own."""
        if self.tty and self.drawn and not self.closed:
            self.stream.write("\n")
            self.stream.flush()
        self.closed = True


def _duration(seconds: float) -> str:
    """A duration as people read it: "<1s", "4s", "2m05s", "1h07m"."""
    if seconds < 0.5:
        return "<1s"
    seconds = int(seconds + 0.5)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


async def _in_thread(func: Any, *args: Any, **kwargs: Any) -> Any:
    return await asyncio.to_thread(func, *args, **kwargs)


async def plan(
    source: RtSource, rules: MappingRules, since: datetime | None
) -> tuple[list[RtTicket], ImportReport]:
    """List RT's tickets, find its merged and deleted numbers, and count what would be
    imported (per queue, status, owner), what is skipped and which owners are unknown."""
    report = ImportReport(api=source.api)
    tickets = await _in_thread(source.ticket_list, since)
    report.listed = len(tickets)
    probe = since is None and _probing_pays(tickets, rules)
    gaps: list[RtGap] = await _in_thread(source.gaps, tickets) if probe else []
    for gap in gaps:
        if gap.effective != gap.id:
            report.merged[gap.id] = gap.effective
        elif gap.status.lower() == "deleted":
            report.skipped[gap.id] = "deleted"
    wanted = []
    for ticket in tickets:
        reason = skip_reason(ticket, rules)
        if reason:
            report.skipped[ticket.id] = reason
            if reason.startswith("queue "):
                report.unmapped_queues[ticket.queue] += 1
            continue
        wanted.append(ticket)
        owner, unknown = owner_of(ticket.owner, rules)
        if unknown:
            report.unknown_owners[unknown] += 1
        report.per_queue[f"{ticket.queue}→{rules.queue_for(ticket.queue)}"] += 1
        report.per_status[ticket.status.lower()] += 1
        report.per_owner[owner or (f"{unknown} (unknown)" if unknown else "nobody")] += 1
    report.planned = len(wanted)
    if not probe:
        # Without probing, the numbers merged into the tickets come from their histories (a
        # merge updates the survivor, so it is listed), so that the collision check knows
        # every number the run will write.
        for ticket in wanted:
            await _in_thread(source.history, ticket, (), False)
            for number in ticket.merged:
                report.merged[number] = ticket.id
            ticket.transactions = []  # read again, with their parts, when imported
    # Numbers merged into a skipped ticket are not imported either.
    report.merged = {a: b for a, b in report.merged.items() if b in {t.id for t in wanted}}
    return wanted, report


def _probing_pays(tickets: list[RtTicket], rules: MappingRules) -> bool:
    """Whether to probe the numbers RT's search skipped (one request each) rather than read
    the history of every ticket to import: when they are at most PROBE_BUDGET, or fewer than
    the tickets. Where most numbers are unknown to the search (shredded, or in queues the
    import account cannot see), probing grew with RT's highest number: 160,000 requests
    (an hour and a half) for three tickets."""
    unlisted = max((t.id for t in tickets), default=0) - len(tickets)
    return unlisted <= max(PROBE_BUDGET, sum(1 for t in tickets if not skip_reason(t, rules)))


async def run_import(
    source: RtSource,
    service: Any,
    repository: Any,
    rules: MappingRules,
    *,
    since: datetime | None = None,
    dry_run: bool = False,
    progress: TextIO | None = None,
    announce: bool = False,
    language: str | None = None,
) -> ImportReport:
    """Import RT's tickets into exobot (see the module docstring). Raises CollisionError,
    before writing anything, when numbers to import are taken here."""
    started = time.monotonic()
    if progress is not None:  # listing a big RT takes a while: say what is going on
        progress.write(f"Request Tracker, REST {source.api}: reading the ticket list …\n")
        progress.flush()
    tickets, report = await plan(source, rules, since)
    numbers = [t.id for t in tickets] + list(report.merged)
    report.collisions = await repository.read(
        lambda reader: reader.import_collisions(rules.source, numbers)
    )
    if dry_run:
        return report
    if report.collisions:
        raise CollisionError(report.collisions)
    # The numbers are reserved before the first ticket is written: a ticket exobot opens
    # meanwhile (it may run during the import), or after an import stopped half-way, gets a
    # number after RT's, never one of those still to import (which would stop every later
    # run at the collision check, for good).
    highest = max(numbers, default=0)
    if highest:
        report.next_number = await repository.run(lambda uow: _ensure_next(uow, highest + 1))
    bar = Progress(len(tickets), progress)
    bar.step(0, force=True)
    try:
        for done, ticket in enumerate(tickets, 1):
            await _import_one(source, service, repository, rules, ticket, report)
            bar.step(done, force=done == len(tickets))
    finally:
        bar.close()
    # Numbers merged into a ticket since the plan (its history read now) are reserved too.
    highest = max([*numbers, *report.merged], default=0)
    if highest:
        report.next_number = await repository.run(lambda uow: _ensure_next(uow, highest + 1))
    report.seconds = time.monotonic() - started
    if announce:
        await _summaries(repository, report, language)
    return report


async def _ensure_next(uow: Any, at_least: int) -> int:
    from exobot.db.numbering import ensure_next_number

    return await ensure_next_number(uow.conn, at_least)


async def _import_one(
    source: RtSource,
    service: Any,
    repository: Any,
    rules: MappingRules,
    ticket: RtTicket,
    report: ImportReport,
) -> None:
    external = str(ticket.id)

    async def known(reader: Any) -> tuple[Any, set[str]]:
        here = await reader.imported_ticket(rules.source, external)
        if here is None:
            return None, set()
        return await reader.get_ticket(here, aliases=False), await reader.imported_entry_ids(
            rules.source, external
        )

    existing, done_ids = await repository.read(known)
    counts = report.done_per_queue.setdefault(rules.queue_for(ticket.queue) or "", Counter())
    if existing is not None and _same_time(existing.updated_at, ticket.updated):
        report.unchanged += 1
        counts["unchanged"] += 1
        return
    skip = {int(x.split("/")[0]) for x in done_ids if x.split("/")[0].isdecimal()}
    await _in_thread(source.history, ticket, skip)
    mapped = map_ticket(ticket, rules, source.user, source.queue_name)
    report.too_big.extend(mapped.too_big)
    if mapped.ticket is None:  # the queue or status changed since the plan
        report.skipped[ticket.id] = mapped.skipped or "skipped"
        return
    from exobot.core.service import ImportCollision

    try:
        outcome = await service.apply(Actor.system("import"), ImportTicket(mapped.ticket))
    except ImportCollision as error:
        raise CollisionError([ticket.id]) from error
    report.entries += len(outcome.entries)
    for number in mapped.ticket.merged:
        report.merged[number] = ticket.id
    if outcome.created:
        report.created += 1
        counts["created"] += 1
    elif outcome.entries:
        report.updated += 1
        counts["updated"] += 1
    else:
        report.unchanged += 1
        counts["unchanged"] += 1


def _same_time(here: datetime | None, there: datetime) -> bool:
    if here is None:
        return False
    if here.tzinfo is None:
        from datetime import UTC

        here = here.replace(tzinfo=UTC)
    return abs((here - there).total_seconds()) < 1


async def _summaries(repository: Any, report: ImportReport, language: str | None) -> None:
    """One line per queue in its room, through the chat outbox (posted once by exobot)."""
    from exobot import i18n
    from exobot.core.service import CHAT

    lines = {}
    for queue, counts in sorted(report.done_per_queue.items()):
        total = sum(counts.values())
        if not total:
            continue
        lines[queue] = i18n.say_plural(
            language,
            "Imported from Request Tracker: {count} ticket ({created} new, {updated} with new history).",
            "Imported from Request Tracker: {count} tickets ({created} new, {updated} with new history).",
            total,
            created=counts["created"],
            updated=counts["updated"],
        )

    async def work(uow: Any) -> None:
        for queue, body in lines.items():
            await uow.queue_outbox(CHAT, None, {"type": "room_post", "queue": queue, "body": body})

    if lines:
        await repository.run(work)
