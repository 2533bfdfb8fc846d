"""The connectivity plugin's thread and room notes, against a real migrated database (SQLite)
with rounds run by the real MonitorScheduler and written through store.py (a fake clock and a
fake prober): a ticket's target losing packets while the reference targets were fine (the
member's link) or lost too (likely ours), the recovery note, one room note for a reference
target's own loss, and the reopen offer. What the plugin posts is captured by a small
stand-in for the PluginContext (the real posting path is tested in test_plugin_thread_posts)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import exobot_connectivity
import pytest
from clocks import FakeClock
from exobot_connectivity import Connectivity, ConnectivityConfig, store
from exobot_connectivity.scheduler import MonitorScheduler
from test_store_scheduler import FakeProber

from exobot import i18n
from exobot.core.events import TicketEvent
from exobot.core.model import EntryKind
from exobot.core.service import ServiceSettings
from exobot.db.engine import create_engine
from exobot.db.migrate import upgrade_async
from exobot.db.repository import SqlRepository

HERE = Path(exobot_connectivity.__file__).parent
START = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
STEP = timedelta(minutes=5)
REFERENCE = "198.51.100.1"
MEMBER = "192.0.2.10"


class Ctx:
    """What the notes use of a PluginContext: the database, the clock, the words, and the
    two posting methods (recorded instead of queued, once per key as the outbox does)."""

    def __init__(self, repository: SqlRepository, clock: FakeClock) -> None:
        self.connection = repository.connection
        self.reading = repository.reading
        self.clock = clock
        self.settings = ServiceSettings(language="en")
        self.threads: list[tuple[int, str]] = []
        self.rooms: list[tuple[str | None, str]] = []
        self.keys: set[str] = set()  # the keys of the posts queued

    def say(self, language: str, msgid: str, **params: object) -> str:
        return i18n.say(language, msgid, domain="connectivity", **params)

    def translator(self, language: str) -> i18n.Translator:
        return i18n.translator(language, "connectivity")

    def _first(self, key: str | None) -> bool:
        """Whether a post with this key is queued (PluginContext's: once per key)."""
        if key in self.keys:
            return False
        if key is not None:
            self.keys.add(key)
        return True

    async def post_to_thread(
        self, ticket: int, body: str, *, key: str | None = None, **image: object
    ) -> bool:
        assert not image
        if not self._first(key):
            return False
        self.threads.append((ticket, body))
        return True

    async def post_to_room(self, queue: str | None, body: str, *, key: str | None = None) -> bool:
        if not self._first(key):
            return False
        self.rooms.append((queue, body))
        return True


@pytest.fixture
async def world(tmp_path):
    """A plugin over a migrated database with one reference target and a fake prober."""
    i18n.add_domain("connectivity", HERE / "locale")
    url = f"sqlite:///{tmp_path / 'exobot.db'}"
    await upgrade_async(url, {"connectivity": HERE / "migrations"})
    engine = create_engine(url)
    repository = SqlRepository(engine)
    clock = FakeClock(START)
    prober = FakeProber()
    plugin = Connectivity()
    plugin.ctx = Ctx(repository, clock)  # type: ignore[assignment]
    plugin.config = ConnectivityConfig(
        step=STEP, reference_targets=[REFERENCE], loss_alert=0.2, alert_rounds=2
    )
    plugin.scheduler = MonitorScheduler(
        repository.connection, prober, clock, STEP, 20,
        loss_alert=0.2, alert_rounds=2, on_round=plugin.on_round,
    )
    await plugin.sync_references()
    async with repository.connection() as conn:
        await store.start(conn, ticket=7, target=MEMBER, kind="icmp", host=MEMBER, port=None,
                          by="@op:test", now=clock.now())
    yield plugin, prober, clock
    await engine.dispose()
    i18n.remove_domain("connectivity")


async def rounds(plugin: Connectivity, clock: FakeClock, count: int) -> None:
    """`count` rounds of every running monitor, one step apart."""
    for _ in range(count):
        await plugin.scheduler.run_due()
        await plugin.scheduler.drain()
        clock.advance(STEP)


async def test_loss_while_the_references_were_fine_is_the_members_link_then_recovery(world):
    plugin, prober, clock = world
    ctx = plugin.ctx
    prober.loss = {MEMBER: 10}
    await rounds(plugin, clock, 1)
    assert ctx.threads == []  # one lossy round is not enough
    await rounds(plugin, clock, 3)  # the alert at the second, nothing more while it lasts
    assert ctx.threads == [
        (7, f"⚠️ {MEMBER} is losing packets: 50 % in the last round, for 2 rounds in a row. "
            f"The reference target {REFERENCE} answered normally in the same period: the "
            "fault is probably on the member's link.")
    ]
    prober.loss = {}
    await rounds(plugin, clock, 2)
    assert ctx.threads[1:] == [
        (7, f"✅ {MEMBER} answers normally again (loss 0 % in the last round).")
    ]
    assert ctx.rooms == []  # the reference never lost anything


async def test_loss_while_a_reference_lost_too_is_likely_ours_and_the_room_is_told_once(world):
    plugin, prober, clock = world
    ctx = plugin.ctx
    prober.loss = {MEMBER: 10, REFERENCE: 8}
    await rounds(plugin, clock, 4)
    assert ctx.threads == [
        (7, f"⚠️ {MEMBER} is losing packets: 50 % in the last round, for 2 rounds in a row. "
            f"The reference target {REFERENCE} lost packets too in the same period: the fault "
            "is likely ours.")
    ]
    # The reference's own loss: one note in the default queue's room, not one per round.
    assert ctx.rooms == [
        (None, f"⚠️ The reference target {REFERENCE} is losing packets (40 % in the last "
               "round): tickets' targets may be affected by our own network.")
    ]
    prober.loss = {MEMBER: 10}
    await rounds(plugin, clock, 2)
    assert ctx.rooms[1:] == [
        (None, f"✅ The reference target {REFERENCE} answers normally again.")
    ]
    assert len(ctx.threads) == 1  # the member's target still loses: no new note


async def test_a_reference_loss_long_before_is_not_blamed(world):
    plugin, prober, clock = world
    ctx = plugin.ctx
    prober.loss = {REFERENCE: 8}
    await rounds(plugin, clock, 3)
    prober.loss = {}
    await rounds(plugin, clock, 6)  # the reference has been fine for a while
    prober.loss = {MEMBER: 20}
    await rounds(plugin, clock, 2)
    assert ctx.threads == [
        (7, f"⚠️ {MEMBER} is losing packets: 100 % in the last round, for 2 rounds in a row. "
            f"The reference target {REFERENCE} answered normally in the same period: the "
            "fault is probably on the member's link.")
    ]


async def test_a_reopened_ticket_is_offered_the_command_and_probing_does_not_restart(world):
    plugin, prober, clock = world
    ctx = plugin.ctx
    await rounds(plugin, clock, 1)
    resolved = TicketEvent(7, EntryKind.STATUS, "@op:test", {"from": "open", "to": "resolved"})
    await plugin.on_event(resolved)
    [(ticket, summary)] = ctx.threads
    assert ticket == 7
    assert summary.startswith("Probing stopped: suport#7 is closed. Summary:\n")
    assert f"• {MEMBER}: 1 round, loss 0 %" in summary
    reopened = TicketEvent(7, EntryKind.STATUS, "@op:test", {"from": "resolved", "to": "open"})
    await plugin.on_event(reopened)
    assert ctx.threads[1:] == [
        (7, "suport#7 is open again; probing does not restart by itself. To probe again: "
            f"!monitor suport#7 {MEMBER}")
    ]
    # Nothing probes the ticket's target any more; only the reference goes on.
    calls = len(prober.calls)
    await rounds(plugin, clock, 2)
    assert prober.calls[calls:] == [REFERENCE, REFERENCE]
    async with plugin.ctx.connection() as conn:
        assert await store.ticket_running(conn, 7) == []


@pytest.mark.parametrize(
    ("language", "one", "two"),
    [
        ("en", "1 round, loss 0 %", "2 rounds, loss 0 %"),
        ("ca", "1 ronda, pèrdua 0 %", "2 rondes, pèrdua 0 %"),
        ("es", "1 ronda, pérdida 0 %", "2 rondas, pérdida 0 %"),
    ],
)
async def test_the_summary_counts_rounds_in_the_singular_and_the_plural(world, language, one, two):
    plugin, _prober, clock = world
    ctx = plugin.ctx
    ctx.settings = ServiceSettings(language=language)
    await rounds(plugin, clock, 1)
    async with ctx.connection() as conn:  # ticket 8's target misses ticket 7's first round
        await store.start(conn, ticket=8, target="192.0.2.11", kind="icmp", host="192.0.2.11",
                          port=None, by="@op:test", now=clock.now())
    await rounds(plugin, clock, 1)
    for ticket in (7, 8):
        await plugin.on_event(TicketEvent(ticket, EntryKind.STATUS, "@op:test",
                                          {"from": "open", "to": "resolved"}))
    (seven, summary7), (eight, summary8) = ctx.threads
    assert (seven, eight) == (7, 8)
    assert f"• {MEMBER}: {two}" in summary7
    assert f"• 192.0.2.11: {one}" in summary8


async def test_with_alert_rounds_at_1_the_note_does_not_count_rounds(world):
    plugin, prober, clock = world
    ctx = plugin.ctx
    plugin.config = plugin.config.model_copy(update={"alert_rounds": 1})
    plugin.scheduler = MonitorScheduler(
        ctx.connection, prober, clock, STEP, 20,
        loss_alert=0.2, alert_rounds=1, on_round=plugin.on_round,
    )
    prober.loss = {MEMBER: 10}
    await rounds(plugin, clock, 1)
    assert ctx.threads == [
        (7, f"⚠️ {MEMBER} is losing packets: 50 % in the last round. "
            f"The reference target {REFERENCE} answered normally in the same period: the "
            "fault is probably on the member's link.")
    ]
