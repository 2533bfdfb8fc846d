"""How the import's plan finds RT's merged numbers: by probing the numbers its search skipped
where they are few, by reading the histories where they are many (an RT whose numbers are
mostly shredded, or in queues the import account cannot see). A counting stand-in for RT
shows the requests each way takes; test_import_rt.py runs both on the real RT 5."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from exobot.importer.rt_mapping import MappingRules
from exobot.importer.rt_source import RtGap, RtSource, RtTicket, RtTransaction
from exobot.importer.runner import PROBE_BUDGET, plan

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
RULES = MappingRules("rt:rt.example.org", {"General": "suport"})


class CountingRt(RtSource):
    """Tickets `listed` (number → queue); `merged` number → survivor; counts the requests."""

    api = "test"

    def __init__(self, listed: dict[int, str], merged: dict[int, int]) -> None:
        super().__init__()
        self.listed, self.merged = listed, merged
        self.probes = self.histories = 0

    def ticket_list(self, since: datetime | None) -> list[RtTicket]:
        return [
            RtTicket(n, queue, "s", "open", "Nobody", ("a@example.net",), (), T0, T0)
            for n, queue in sorted(self.listed.items())
        ]

    def history(self, ticket: RtTicket, skip=(), parts: bool = True) -> None:
        self.histories += 1
        numbers = [ticket.id, *(n for n, s in self.merged.items() if s == ticket.id)]
        ticket.transactions = [
            RtTransaction(i, n, "Create", "", "", "", "root", T0) for i, n in enumerate(numbers)
        ]

    def probe(self, number: int) -> RtGap | None:
        self.probes += 1
        survivor = self.merged.get(number)
        return None if survivor is None else RtGap(number, "resolved", survivor)


def test_sparse_numbers_are_not_probed_one_by_one():
    # Three tickets up to #160000: probing made 160,017 requests (about 93 minutes).
    rt = CountingRt({1: "General", 2: "General", 160_000: "General"}, {159_000: 160_000})
    wanted, report = asyncio.run(plan(rt, RULES, None))
    assert [t.id for t in wanted] == [1, 2, 160_000]
    assert (rt.probes, rt.histories) == (0, 3)
    assert report.merged == {159_000: 160_000}
    assert all(not t.transactions for t in wanted)  # read again, with parts, when imported


def test_numbers_mostly_listed_are_probed():
    listed = {n: "General" for n in range(1, 51) if n not in (6, 8)}
    rt = CountingRt(listed, {6: 7, 8: 7, 52: 3})
    _, report = asyncio.run(plan(rt, RULES, None))
    assert rt.histories == 0
    assert rt.probes == 2 + 22  # 6 and 8, then 51 to 72: twenty unknown after the highest
    assert report.merged == {6: 7, 8: 7, 52: 3}


def test_the_budget_is_weighed_against_the_tickets_to_import():
    # Over the budget but fewer than the tickets to import: probing costs less.
    many = {n: "General" for n in range(1, 3000, 2)}  # 1,500 tickets, 1,499 gaps
    assert PROBE_BUDGET < 1499 < 1500
    rt = CountingRt(many, {})
    asyncio.run(plan(rt, RULES, None))
    assert (rt.histories, rt.probes) == (0, 1499 + 20)
    # The same numbers with most tickets in a queue not imported: the histories of the few.
    skipped = {n: ("General" if n < 100 else "Other") for n in many}
    rt = CountingRt(skipped, {})
    asyncio.run(plan(rt, RULES, None))
    assert (rt.histories, rt.probes) == (50, 0)


def test_an_incremental_run_reads_histories_whatever_the_numbers():
    rt = CountingRt({n: "General" for n in range(1, 11)}, {12: 3})
    _, report = asyncio.run(plan(rt, RULES, T0))
    assert (rt.probes, rt.histories) == (0, 10)
    assert report.merged == {12: 3}
