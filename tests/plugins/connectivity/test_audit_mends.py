"""Mends of the connectivity plugin's audit: one running monitor per reference target even
with two instances starting at once (SQLite and PostgreSQL, the migration that stops the
duplicates already running), a literal reference target outside allowed_networks refused by
the configuration, the resolve summary and the data export summed by the database and
decoded off the event loop, `!monitor` and `!graph` delivered again with the same
`ActionCall.key` answered as the first time without writing or posting again, and the API's
figures of a ticket's target that is also a reference target."""

from __future__ import annotations

import asyncio
import json
import threading
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from alembic import command
from clocks import FakeClock
from exobot_connectivity import Connectivity, ConnectivityConfig, store
from exobot_connectivity.scheduler import MonitorScheduler
from harness import DEADLINE
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection
from stack_fixtures import fresh_database_url
from test_notes import Ctx
from test_plugin import problems
from test_store_scheduler import BRANCHES, FakeProber
from test_web import _monitor, _ticket, world  # noqa: F401  (world: test_web's fixture)

from exobot import i18n
from exobot.core.actions import ActionCall, ActionRefused, Channel
from exobot.core.events import TicketEvent
from exobot.core.model import EntryKind
from exobot.core.service import TicketService
from exobot.db.engine import create_engine, sync_url
from exobot.db.migrate import alembic_config, upgrade, upgrade_async
from exobot.db.repository import SqlRepository
from exobot.mail.msgid import MessageIds
from exobot.plugins import DataSubject

LOCALE = Connectivity.locale
START = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
STEP = timedelta(minutes=5)
REFERENCE = "198.51.100.1"


# --- A: one running monitor per reference target ------------------------------------------


def _plugin_over(engine, config: ConnectivityConfig) -> Connectivity:
    """One instance's plugin (its own engine), enough for sync_references."""
    plugin = Connectivity()
    plugin.ctx = Ctx(SqlRepository(engine), FakeClock(START))  # type: ignore[assignment]
    plugin.config = config
    return plugin


async def _running_references(engine) -> list[tuple]:
    async with engine.begin() as conn:
        query = sa.select(store.monitors.c.id, store.monitors.c.target).where(
            store.monitors.c.ticket.is_(None), store.monitors.c.stopped_at.is_(None)
        )
        return [tuple(row) for row in await conn.execute(query.order_by(store.monitors.c.id))]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_the_database_refuses_a_second_running_reference(backend, tmp_path, request):
    url = fresh_database_url(request, backend, tmp_path)
    await upgrade_async(url, BRANCHES)
    engine = create_engine(url)
    try:
        await _plugin_over(engine, ConnectivityConfig(reference_targets=[REFERENCE])).sync_references()
        with pytest.raises(IntegrityError):
            async with engine.begin() as conn:
                await conn.execute(
                    sa.insert(store.monitors).values(
                        ticket=None, target=REFERENCE, kind="icmp", host=REFERENCE,
                        started_by="config", started_at=START,
                    )
                )
        # A ticket may still probe the same address, and a stopped reference start again.
        async with engine.begin() as conn:
            await store.start(conn, ticket=7, target=REFERENCE, kind="icmp", host=REFERENCE,
                              port=None, by="@op:test", now=START)
            await store.stop(conn, ticket=None, target=REFERENCE, reason="config", now=START)
            await store.start(conn, ticket=None, target=REFERENCE, kind="icmp", host=REFERENCE,
                              port=None, by="config", now=START)
        assert len(await _running_references(engine)) == 1
    finally:
        await engine.dispose()


async def test_two_instances_starting_together_run_one_reference_on_postgresql(
    request, tmp_path, monkeypatch
):
    """Two processes start at once: both pass the duplicate check before either inserts (a
    barrier in front of the insert's savepoint); the unique index refuses the second, which
    store.start says as Refused and sync_references takes as done."""
    url = fresh_database_url(request, "postgresql", tmp_path)
    await upgrade_async(url, BRANCHES)
    config = ConnectivityConfig(reference_targets=[REFERENCE])
    engines = [create_engine(url), create_engine(url)]
    barrier = asyncio.Barrier(2)
    real = AsyncConnection.begin_nested

    class AfterBarrier:
        def __init__(self, conn: AsyncConnection) -> None:
            self.conn = conn

        async def __aenter__(self):
            await barrier.wait()
            self.savepoint = real(self.conn)
            return await self.savepoint.__aenter__()

        async def __aexit__(self, *exc):
            return await self.savepoint.__aexit__(*exc)

    monkeypatch.setattr(AsyncConnection, "begin_nested", lambda conn: AfterBarrier(conn))
    try:
        async with asyncio.timeout(DEADLINE):
            await asyncio.gather(*(_plugin_over(e, config).sync_references() for e in engines))
        monkeypatch.undo()
        assert [target for _id, target in await _running_references(engines[0])] == [REFERENCE]
    finally:
        for engine in engines:
            await engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_the_migration_stops_the_duplicate_references_keeping_the_oldest(
    backend, tmp_path, request
):
    url = fresh_database_url(request, backend, tmp_path)
    cfg = alembic_config(url, BRANCHES)
    await asyncio.to_thread(upgrade, url)
    await asyncio.to_thread(command.upgrade, cfg, "connectivity_0001")
    sync = sa.create_engine(sync_url(url))
    table = sa.table(
        "connectivity_monitors", *(sa.column(name) for name in (
            "id", "ticket", "target", "kind", "host", "started_by", "started_at", "stopped_at",
            "stop_reason"))
    )
    rows = [  # (ticket, target, started minutes after START)
        (None, REFERENCE, 10), (None, REFERENCE, 0), (None, REFERENCE, 5),
        (None, "gw.example.org", 0), (7, REFERENCE, 0), (8, REFERENCE, 0),
    ]
    try:
        with sync.begin() as conn:
            for ticket, target, minutes in rows:
                conn.execute(sa.insert(table).values(
                    ticket=ticket, target=target, kind="icmp", host=target, started_by="x",
                    started_at=START + timedelta(minutes=minutes)))
        await upgrade_async(url, BRANCHES)
        await upgrade_async(url, BRANCHES)  # twice: nothing left to do
        query = sa.select(table.c.id, table.c.stop_reason).order_by(table.c.id)
        with sync.connect() as conn:
            assert [tuple(row) for row in conn.execute(query)] == [
                (1, "config"), (2, None), (3, "config"), (4, None), (5, None), (6, None)
            ]
        # Back to connectivity_0001 and up again.
        await asyncio.to_thread(command.downgrade, cfg, "connectivity_0001")
        await upgrade_async(url, BRANCHES)
    finally:
        sync.dispose()
    engine = create_engine(url)
    try:
        with pytest.raises(IntegrityError):
            async with engine.begin() as conn:
                await conn.execute(sa.insert(store.monitors).values(
                    ticket=None, target="gw.example.org", kind="icmp", host="gw.example.org",
                    started_by="config", started_at=START))
    finally:
        await engine.dispose()


# --- B: a reference target outside allowed_networks ----------------------------------------


def test_a_reference_target_outside_allowed_networks_is_a_configuration_problem():
    assert problems({"reference_targets": ["192.0.2.1"], "allowed_networks": ["10.0.0.0/8"]}) == [
        "plugins.connectivity.reference_targets: 192.0.2.1 is outside allowed_networks "
        "(10.0.0.0/8)"
    ]
    assert problems(
        {"reference_targets": ["10.0.0.1", "2001:db8::1 tcp:443"],
         "allowed_networks": ["10.0.0.0/8"]}
    ) == [
        "plugins.connectivity.reference_targets: 2001:db8::1 tcp:443 is outside "
        "allowed_networks (10.0.0.0/8)"
    ]
    # Inside, without allowed_networks, or a host name (checked at each round): accepted.
    config = ConnectivityConfig(
        reference_targets=["10.0.0.1", "gw.example.org tcp:443"], allowed_networks=["10.0.0.0/8"]
    )
    assert config.reference_targets == ["10.0.0.1", "gw.example.org tcp:443"]
    assert ConnectivityConfig(reference_targets=["192.0.2.1"]).reference_targets == ["192.0.2.1"]


# --- the plugin over a migrated SQLite database, with tickets ------------------------------


class ChatCtx(Ctx):
    """test_notes' stand-in, with a read view, the time zone and images in thread posts."""

    def __init__(self, repository: SqlRepository, clock: FakeClock) -> None:
        super().__init__(repository, clock)
        self.timezone = ZoneInfo("Europe/Madrid")
        self.images: list[int] = []

    async def post_to_thread(
        self, ticket: int, body: str, *, key: str | None = None, **image: object
    ) -> bool:
        if not self._first(key):
            return False
        self.threads.append((ticket, body))
        if image:
            self.images.append(ticket)
        return True


@pytest.fixture
async def chat(tmp_path):
    """A plugin (fake clock and prober) over a migrated database with one open ticket."""
    i18n.add_domain("connectivity", LOCALE)
    url = f"sqlite:///{tmp_path / 'exobot.db'}"
    await upgrade_async(url, BRANCHES)
    engine = create_engine(url)
    repository = SqlRepository(engine)
    clock = FakeClock(START)
    plugin = Connectivity()
    plugin.ctx = ChatCtx(repository, clock)  # type: ignore[assignment]
    plugin.config = ConnectivityConfig(step=STEP, reference_targets=[REFERENCE])
    plugin.scheduler = MonitorScheduler(repository.connection, FakeProber(), clock, STEP, 20,
                                        on_round=plugin.on_round)
    await plugin.sync_references()
    service = TicketService(repository, MessageIds("secret" * 4, "example.org"),
                            plugin.ctx.settings)
    number = await _ticket(service)
    yield SimpleNamespace(plugin=plugin, ctx=plugin.ctx, clock=clock, repository=repository,
                          number=number)
    await engine.dispose()
    i18n.remove_domain("connectivity")


def _call(action: str, number: int, text: str, key: str | None) -> ActionCall:
    return ActionCall(action, "@op:test", number, {"target": text}, "en", Channel.CHAT, key=key)


# --- C: the resolve summary and the export off the event loop ------------------------------


async def test_the_summary_and_the_export_are_computed_off_the_event_loop(chat, monkeypatch):
    """The figures are those of every stored round of the monitor's period summed by hand
    (lost rounds included, a round before the period left out): the counts come from the
    database and the RTTs are decoded in a worker thread, never on the loop's."""
    plugin, number = chat.plugin, chat.number
    async with chat.repository.connection() as conn:
        monitor = await store.start(conn, ticket=number, target="192.0.2.10", kind="icmp",
                                    host="192.0.2.10", port=None, by="@op:test", now=START)
        figures = [(20, [31.0, 30.5]), (20, []), (10, [12.25, 40.0, 33.0]), (20, [30.0])]
        for i, (sent, rtts) in enumerate(figures):
            await store.record_round(conn, monitor.id, at=START + STEP * i, sent=sent,
                                     received=len(rtts), rtts=rtts)
        await store.record_round(conn, monitor.id, at=START - STEP, sent=20, received=20,
                                 rtts=[900.0] * 20)  # before it started: not its history
        expected = tuple(await store.summary(conn, monitor.id, START))
    assert expected == (4, pytest.approx(64 / 70), 30.75)

    decoded_in: list[int] = []

    def loads(text: str):
        decoded_in.append(threading.get_ident())
        return json.loads(text)

    monkeypatch.setattr(store, "json", SimpleNamespace(loads=loads, dumps=json.dumps))
    chat.clock.advance(STEP * 4)
    await plugin.on_event(
        TicketEvent(number, EntryKind.STATUS, "@op:test", {"from": "open", "to": "resolved"})
    )
    assert chat.ctx.threads[-1] == (
        number,
        f"Probing stopped: suport#{number} is closed. Summary:\n"
        "• 192.0.2.10: 4 rounds, loss 91 %, median 30.8 ms",
    )
    assert decoded_in and threading.get_ident() not in decoded_in

    decoded_in.clear()
    exported = await plugin.export(DataSubject(ticket=number))
    [mine] = exported["monitors"]
    assert mine["rounds"] == [
        {"at": (START + STEP * i).isoformat(), "sent": sent, "received": len(rtts),
         "rtts": sorted(rtts), "error": None}
        for i, (sent, rtts) in enumerate(figures)
    ]
    assert decoded_in and threading.get_ident() not in decoded_in


# --- D: requests delivered again ------------------------------------------------------------


async def test_a_graph_delivered_again_is_posted_once(chat):
    plugin, number = chat.plugin, chat.number
    await plugin.monitor(_call("monitor", number, "192.0.2.10", "matrix:$start"))
    await plugin.scheduler.run_due()
    await plugin.scheduler.drain()
    chat.clock.advance(STEP)

    first = await plugin.graph(_call("graph", number, "3h", "matrix:$graph"))
    again = await plugin.graph(_call("graph", number, "7d", "matrix:$graph"))
    assert again == first
    assert first.body == f"The graph of suport#{number} (3h) is in its thread."
    assert chat.ctx.images == [number]
    # Another request posts again; a request without a key acts as before.
    await plugin.graph(_call("graph", number, "", "matrix:$other"))
    await plugin.graph(_call("graph", number, "", None))
    await plugin.graph(_call("graph", number, "", None))
    assert chat.ctx.images == [number] * 4


async def test_a_graph_posted_but_not_recorded_is_not_posted_again(chat, monkeypatch):
    """A crash between the post and the record of its request: delivered again, the graph is
    drawn again but its post, with the same key, is queued once."""
    plugin, number = chat.plugin, chat.number
    await plugin.monitor(_call("monitor", number, "192.0.2.10", "matrix:$start"))
    await plugin.scheduler.run_due()
    await plugin.scheduler.drain()

    async def crash(*_args, **_kwargs):
        raise RuntimeError("killed before the request was recorded")

    record = store.record_graph_request
    monkeypatch.setattr(store, "record_graph_request", crash)
    with pytest.raises(RuntimeError):
        await plugin.graph(_call("graph", number, "3h", "matrix:$graph"))
    monkeypatch.setattr(store, "record_graph_request", record)
    answer = await plugin.graph(_call("graph", number, "3h", "matrix:$graph"))
    assert answer.body == f"The graph of suport#{number} (3h) is in its thread."
    assert chat.ctx.images == [number]


async def test_a_monitor_start_or_stop_delivered_again_answers_as_the_first_time(chat):
    plugin, number = chat.plugin, chat.number
    first = await plugin.monitor(_call("monitor", number, "192.0.2.55", "matrix:$ev1"))
    assert first.body.startswith(f"Probing 192.0.2.55 for suport#{number}: 20 pings")
    assert await plugin.monitor(_call("monitor", number, "192.0.2.55", "matrix:$ev1")) == first
    async with chat.repository.connection() as conn:
        assert [m.target for m in await store.ticket_monitors(conn, number)] == ["192.0.2.55"]
    # Another request for the same target is a duplicate, as before.
    with pytest.raises(ActionRefused) as refused:
        await plugin.monitor(_call("monitor", number, "192.0.2.55", "matrix:$ev2"))
    assert refused.value.code == "duplicate"

    await plugin.monitor(_call("monitor", number, "192.0.2.56", None))
    stopped = await plugin.monitor(_call("monitor", number, "stop", "matrix:$ev3"))
    assert stopped.body == f"Stopped probing for suport#{number}: 192.0.2.55, 192.0.2.56."
    # Started again in between: the stop delivered again stops nothing, answers the same.
    await plugin.monitor(_call("monitor", number, "192.0.2.55", "matrix:$ev4"))
    assert await plugin.monitor(_call("monitor", number, "stop", "matrix:$ev3")) == stopped
    async with chat.repository.connection() as conn:
        assert [m.target for m in await store.ticket_running(conn, number)] == ["192.0.2.55"]


# --- E: the API's figures when a ticket's target is also a reference target ----------------


async def test_the_api_keeps_a_tickets_figures_apart_from_a_reference_of_the_same_name(world):  # noqa: F811
    client, repo = world["client"], world["repo"]
    number = await _ticket(world["service"])
    await _monitor(repo, number, "10.0.0.1", [(0, 0.0)] * 5)  # the ticket's: all lost
    await _monitor(repo, None, "10.0.0.1", [(20, 2.0)] * 6)  # the reference's: all fine
    body = (await client.get(f"/api/v1/plugins/connectivity/tickets/{number}/monitors",
                             headers=world["bearer"])).json()
    assert [(t["target"], t["reference"], t["rounds"], t["loss_percent"])
            for t in body["targets"]] == [("10.0.0.1", False, 5, 100.0),
                                           ("10.0.0.1", True, 6, 0.0)]
