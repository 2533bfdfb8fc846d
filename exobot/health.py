"""Component health: each running part records its last success and whether it has work
waiting; the App owns one `Health` registry that turns them into a report (`/healthz`).

The parts know nothing of HTTP: they hold a `Component` and call `succeeded()`, `failed()`
and `waiting(...)`. Times come from the part's clock, the one the App gives every part, so a
test drives "no progress for two minutes" by moving a fake clock.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from exobot.core.clock import Clock, SystemClock

log = logging.getLogger("exobot.health")

# A part that had work and made no progress for this long makes the whole process unhealthy.
STALL_AFTER = timedelta(minutes=2)
# The database check's own bound: an answer slower than this counts as unreachable.
DATABASE_TIMEOUT_SECONDS = 3.0
# A report is computed at most this often; /healthz needs no login, so it must stay cheap.
REPORT_CACHE_SECONDS = 1.0

OK, FAILING, IDLE, OFF = "ok", "failing", "idle", "off"


class Component:
    """What one part reports about itself.

    `succeeded()`: the part did its job (delivered an item, synced, is connected);
    `failed()`: the latest attempt failed; `waiting(True)`: it has work it has not done yet
    (a backlog, a lost connection to get back), from now until `waiting(False)`. A `critical`
    part (intake, outbox, sync) waiting with no progress for `STALL_AFTER` is *stalled*.
    """

    def __init__(self, name: str, clock: Clock | None = None, *, critical: bool = False) -> None:
        self.name = name
        self.clock = clock or SystemClock()
        self.critical = critical
        self.enabled = True
        self.last_success: datetime | None = None
        self.last_failure: datetime | None = None
        self.waiting_since: datetime | None = None

    def succeeded(self) -> None:
        """The part did its job just now."""
        self.last_success = self.clock.now()

    def failed(self) -> None:
        """The part's latest attempt failed just now."""
        self.last_failure = self.clock.now()

    def waiting(self, waiting: bool = True) -> None:
        """Whether the part has work it has not done yet (kept from the first `True`)."""
        if not waiting:
            self.waiting_since = None
        elif self.waiting_since is None:
            self.waiting_since = self.clock.now()

    def stalled(self, now: datetime, stall_after: timedelta = STALL_AFTER) -> bool:
        """Waiting, and no progress since the work appeared or the last success, for
        `stall_after` or longer."""
        if not self.enabled or self.waiting_since is None:
            return False
        progress = max(self.waiting_since, self.last_success or self.waiting_since)
        return now - progress >= stall_after

    def state(self, now: datetime, stall_after: timedelta = STALL_AFTER) -> str:
        """off (not running), failing (stalled, or its latest attempt failed), idle (running,
        nothing done yet) or ok."""
        if not self.enabled:
            return OFF
        if self.stalled(now, stall_after):
            return FAILING
        if self.last_failure is not None and (
            self.last_success is None or self.last_failure > self.last_success
        ):
            return FAILING
        if self.last_success is None:
            return IDLE
        return OK

    def describe(self, now: datetime, stall_after: timedelta = STALL_AFTER) -> dict[str, Any]:
        """The component's part of the report (no error texts: /healthz is public)."""
        return {
            "state": self.state(now, stall_after),
            "last_success": _iso(self.last_success),
            "waiting_since": _iso(self.waiting_since),
            "stalled": self.stalled(now, stall_after),
        }


@dataclass(frozen=True)
class Report:
    """One health report: the HTTP status it calls for and its JSON body."""

    healthy: bool
    body: dict[str, Any]

    @property
    def status_code(self) -> int:
        """200, or 503 when unhealthy."""
        return 200 if self.healthy else 503


class Health:
    """The registry the App owns: its parts' components, a database check, and the report.

    Unhealthy (503) exactly when the database is unreachable or a critical component is
    stalled; everything else (an idle scheduler, a failing plugin) is told, not fatal.
    """

    def __init__(self, clock: Clock | None = None, stall_after: timedelta = STALL_AFTER) -> None:
        self.clock = clock or SystemClock()
        self.stall_after = stall_after
        self.components: dict[str, Component] = {}
        # Extra components computed when asked (e.g. the plugins), by name.
        self.probes: dict[str, Callable[[], dict[str, Any]]] = {}
        self.database_check: Callable[[], Awaitable[None]] | None = None
        self.database = Component("database", self.clock)
        # Whether this instance leads (exobot.leader); a lone instance always does.
        self.is_leader: Callable[[], bool] = lambda: True
        self.cache_seconds = REPORT_CACHE_SECONDS
        self._cached: tuple[float, Report] | None = None
        self._lock = asyncio.Lock()

    def add(self, component: Component, name: str | None = None) -> Component:
        """Register a part's component under `name` (default: its own), replacing any."""
        if name is not None:
            component.name = name
        self.components[component.name] = component
        return component

    def component(self, name: str, *, critical: bool = False) -> Component:
        """A new registered component on the registry's clock."""
        return self.add(Component(name, self.clock, critical=critical))

    async def check_database(self) -> bool:
        """Run the database check within its time bound; records the outcome."""
        if self.database_check is None:
            return True
        try:
            await asyncio.wait_for(self.database_check(), DATABASE_TIMEOUT_SECONDS)
        except Exception as error:  # unreachable, refused, timed out: all the same here
            log.warning("health: the database is unreachable: %r", error)
            self.database.failed()
            return False
        self.database.succeeded()
        return True

    async def report(self) -> Report:
        """The current report (computed at most once per `REPORT_CACHE_SECONDS`)."""
        loop = asyncio.get_running_loop()
        async with self._lock:  # a burst of requests waits for one check, not one each
            if self._cached is not None and loop.time() - self._cached[0] < self.cache_seconds:
                return self._cached[1]
            report = await self._compute()
            self._cached = (loop.time(), report)
            return report

    async def _compute(self) -> Report:
        database_ok = await self.check_database()
        now = self.clock.now()
        components: dict[str, Any] = {
            "database": {
                "state": OK if database_ok else FAILING,
                "last_success": _iso(self.database.last_success),
            }
        }
        stalled = []
        for name, component in self.components.items():
            components[name] = component.describe(now, self.stall_after)
            if component.critical and component.stalled(now, self.stall_after):
                stalled.append(name)
        for name, probe in self.probes.items():
            try:
                components[name] = probe()
            except Exception:  # a probe is information; it must not break the report
                log.exception("health: the %s probe failed", name)
                components[name] = {"state": FAILING, "last_success": None}
        healthy = database_ok and not stalled
        body = {
            "status": OK if healthy else FAILING,
            "leader": bool(self.is_leader()),
            "components": components,
        }
        return Report(healthy, body)


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat(timespec="seconds") if moment is not None else None
