"""Prometheus metrics on `metrics.listen` (off when the section is absent), names `exobot_*`.

The parts count and time what they do through plain attributes and callbacks (they do not
import this module); `Metrics` turns them into metrics. What the database holds (tickets per
queue and status, the outbox, the quarantine) is read at scrape time by `DatabaseCollector`,
in the metrics server's own thread, through a blocking engine of its own and behind a short
cache: a scrape never runs on the event loop and costs the database a few small aggregate
queries at most every `CACHE_SECONDS`.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine, func, select

from exobot.core.clock import Clock, SystemClock
from exobot.db.engine import READ_ONLY
from exobot.db.tables import InboundMailRow, OutboxRow, TicketRow

log = logging.getLogger("exobot.metrics")

CACHE_SECONDS = 15.0
LAG_INTERVAL_SECONDS = 1.0
# Seconds: a chat command is answered in tens of milliseconds; parsing a big mail takes
# seconds and is cut at mail.parse_timeout.
COMMAND_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
PARSE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    """exobot's metrics in a registry of its own (one per App, so tests may run several)."""

    def __init__(self, clock: Clock | None = None) -> None:
        self.clock = clock or SystemClock()
        self.registry = CollectorRegistry(auto_describe=True)
        self.command_seconds = Histogram(
            "exobot_command_seconds",
            "Time from a chat command's arrival to its answer, by command",
            ["command"],
            buckets=COMMAND_BUCKETS,
            registry=self.registry,
        )
        self.parse_seconds = Histogram(
            "exobot_mail_parse_seconds",
            "Time to parse one incoming mail in the parsing sandbox",
            buckets=PARSE_BUCKETS,
            registry=self.registry,
        )
        self.loop_lag = Gauge(
            "exobot_event_loop_lag_seconds",
            "How late the event loop ran a timer (measured every second)",
            registry=self.registry,
        )
        self.leader = Gauge(
            "exobot_leader",
            "1 while this instance leads (fetches mail, delivers the outbox), else 0",
            registry=self.registry,
        )
        self.counters = _Counters()
        self.registry.register(self.counters)
        self.database: DatabaseCollector | None = None
        self._server: Any = None
        self._thread: threading.Thread | None = None

    # --- what the parts report --------------------------------------------------------

    def watch_intake(self, intake: Any) -> None:
        """Count the messages `intake` stores (its `ingested` attribute)."""
        self.counters.ingested = lambda: intake.ingested

    def watch_worker(self, worker: Any) -> None:
        """Count the failed attempts of an outbox worker, by its kind."""
        self.counters.workers.append(worker)

    def watch_leadership(self, is_leader: Callable[[], bool]) -> None:
        """Read whether this instance leads at scrape time."""
        self.leader.set_function(lambda: 1.0 if is_leader() else 0.0)

    def observe_command(self, command: str, seconds: float) -> None:
        """One chat command answered."""
        self.command_seconds.labels(command=command).observe(seconds)

    def observe_parse(self, seconds: float) -> None:
        """One mail parsed (or refused by the sandbox)."""
        self.parse_seconds.observe(seconds)

    def watch_database(self, engine: Engine) -> None:
        """Read the database's gauges through `engine` (a blocking one) at scrape time."""
        self.database = DatabaseCollector(engine, self.clock)
        self.registry.register(self.database)

    async def watch_loop(self) -> None:
        """Measure the event loop's lag forever: how late a one-second sleep wakes up."""
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            await asyncio.sleep(LAG_INTERVAL_SECONDS)
            self.loop_lag.set(max(0.0, loop.time() - started - LAG_INTERVAL_SECONDS))

    # --- the HTTP server --------------------------------------------------------------

    def serve(self, host: str, port: int) -> int:
        """Serve /metrics on host:port in a thread of its own; returns the bound port."""
        self._server, self._thread = start_http_server(port, addr=host, registry=self.registry)
        return self._server.server_port

    def close(self) -> None:
        """Stop the HTTP server and release the database engine."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self.database is not None:
            self.database.engine.dispose()


class _Counters(Collector):
    """Counters kept by the parts themselves, read when scraped."""

    def __init__(self) -> None:
        self.ingested: Callable[[], int] = lambda: 0
        self.workers: list[Any] = []

    def collect(self) -> Iterable[Metric]:
        """The counters' current values."""
        ingested = CounterMetricFamily(
            "exobot_mails_ingested", "Mails stored from the support mailbox since start"
        )
        ingested.add_metric([], self.ingested())
        yield ingested
        failures = CounterMetricFamily(
            "exobot_outbox_delivery_failures",
            "Failed delivery attempts since start, by outbox kind (mail, chat)",
            labels=["kind"],
        )
        for worker in self.workers:
            failures.add_metric([worker.kind], worker.failed_attempts)
        yield failures
        helpers = [w.helper for w in self.workers if getattr(w, "helper", None) is not None]
        if helpers:  # PostgreSQL (exobot.mail.send_helper)
            runs = CounterMetricFamily(
                "exobot_send_helper_runs", "Send helpers started for a burst of mail since start"
            )
            runs.add_metric([], sum(helper.runs for helper in helpers))
            sent = CounterMetricFamily(
                "exobot_send_helper_mails", "Mails the send helpers sent since start"
            )
            sent.add_metric([], sum(helper.sent for helper in helpers))
            yield runs
            yield sent


class DatabaseCollector(Collector):
    """Gauges read from the database, at most once per `cache_seconds` (scrapes in between
    get the cached values); a failed read yields `exobot_database_up 0` and no other gauge."""

    def __init__(self, engine: Engine, clock: Clock, cache_seconds: float = CACHE_SECONDS) -> None:
        self.engine = engine
        self.clock = clock
        self.cache_seconds = cache_seconds
        self._lock = threading.Lock()
        self._cached: tuple[float, list[Metric]] | None = None

    def describe(self) -> Iterable[Metric]:
        """Nothing up front: the registry must not read the database when this registers."""
        return []

    def collect(self) -> Iterable[Metric]:
        """The gauges, from the cache or read now."""
        with self._lock:  # the server's threads: one read at a time, the others wait for it
            now = time.monotonic()
            if self._cached is None or now - self._cached[0] >= self.cache_seconds:
                self._cached = (now, self._read())
            return list(self._cached[1])

    def _read(self) -> list[Metric]:
        up = GaugeMetricFamily("exobot_database_up", "Whether the metrics could read the database")
        try:
            metrics = self._query()
        except Exception as error:
            log.warning("metrics: cannot read the database: %r", error)
            up.add_metric([], 0)
            return [up]
        up.add_metric([], 1)
        return [up, *metrics]

    def _query(self) -> list[Metric]:
        tickets = TicketRow.__table__
        inbound = InboundMailRow.__table__
        outbox = OutboxRow.__table__
        with self.engine.connect() as conn:
            # A read-only transaction: on SQLite it never takes or waits for the write lock.
            conn.execution_options(**READ_ONLY)
            per_status = conn.execute(
                select(tickets.c.queue, tickets.c.status, func.count()).group_by(
                    tickets.c.queue, tickets.c.status
                )
            ).all()
            oldest_new = conn.execute(
                select(func.min(tickets.c.created_at)).where(tickets.c.status == "new")
            ).scalar_one_or_none()
            quarantined = conn.execute(
                select(func.count()).select_from(inbound).where(inbound.c.state == "quarantined")
            ).scalar_one()
            per_kind = conn.execute(
                select(outbox.c.kind, outbox.c.state, func.count())
                .where(outbox.c.state.in_(("pending", "failed")))
                .group_by(outbox.c.kind, outbox.c.state)
            ).all()
        ticket_gauge = GaugeMetricFamily(
            "exobot_tickets", "Tickets by queue and status", labels=["queue", "status"]
        )
        for queue, status, count in per_status:
            ticket_gauge.add_metric([queue, status], count)
        age = GaugeMetricFamily(
            "exobot_oldest_new_ticket_age_seconds",
            "Age of the oldest ticket nobody answered yet (0 when there is none)",
        )
        age.add_metric([], _age(oldest_new, self.clock.now()))
        quarantine = GaugeMetricFamily(
            "exobot_quarantine_size", "Mails that could not be processed, waiting for a person"
        )
        quarantine.add_metric([], quarantined)
        backlog = GaugeMetricFamily(
            "exobot_outbox_backlog", "Outbox items waiting for delivery, by kind", labels=["kind"]
        )
        failed = GaugeMetricFamily(
            "exobot_outbox_failed",
            "Outbox items given up for good, by kind (a mail or a chat post about a ticket is "
            "also shown on its ticket)",
            labels=["kind"],
        )
        counts = {(kind, state): count for kind, state, count in per_kind}
        for kind in sorted({kind for kind, _ in counts} | {"mail", "chat"}):
            backlog.add_metric([kind], counts.get((kind, "pending"), 0))
            failed.add_metric([kind], counts.get((kind, "failed"), 0))
        return [ticket_gauge, age, quarantine, backlog, failed]


def _age(moment: datetime | None, now: datetime) -> float:
    if moment is None:
        return 0.0
    if moment.tzinfo is None:  # SQLite hands back naive UTC
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (now - moment).total_seconds())
