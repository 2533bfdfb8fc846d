"""When each monitor's next round runs, and what happens to its result.

`MonitorScheduler.run_due()` is called every tick (a few seconds) by the plugin's job: it
starts a round for every running monitor whose step has passed (a new one at once), as tasks
bounded by a semaphore, and returns without waiting for them, so the job is never held by a
slow burst and a new monitor's first round starts within one tick. Time comes from the
injected clock; the next round is due `step` after the last one's start, read back from the
database, so probing continues after a restart where it left off.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncConnection

from exobot.core.clock import Clock
from exobot_connectivity import store
from exobot_connectivity.store import Monitor, StoredRound

log = logging.getLogger("exobot.plugins.connectivity.scheduler")

Connect = Callable[[], AbstractAsyncContextManager[AsyncConnection]]


class RoundLike(Protocol):
    """What a probe returns for one burst (`probes.Round` is one); read-only, so a frozen
    dataclass fits."""

    @property
    def sent(self) -> int:
        """Pings sent."""

    @property
    def received(self) -> int:
        """Answers received."""

    @property
    def rtts(self) -> Sequence[float]:
        """Round-trip times in ms."""

    @property
    def error(self) -> str | None:
        """Why the probe could not run, if it could not."""


class Prober(Protocol):
    """Runs one burst against a target, off the event loop (fping or TCP connects)."""

    def __call__(self, target: str, kind: str, host: str, port: int | None) -> Awaitable[RoundLike]:
        """One round's figures for `target`."""


#: Called after each stored round of a running monitor with the monitor, the round and the
#: alert change ("alert", "recovered" or None), for the thread notes. The change is recorded
#: only once it returns: if it raises, the same change comes back with the next round.
OnRound = Callable[[Monitor, StoredRound, str | None], Awaitable[None]]
#: Runs a round as a task: start_task(coroutine, name=…), as asyncio.create_task does.
StartTask = Callable[..., asyncio.Task[Any]]


class MonitorScheduler:
    """Runs the running monitors' rounds every `step` and stores them (see the module)."""

    def __init__(
        self,
        connection: Connect,
        prober: Prober,
        clock: Clock,
        step: timedelta,
        count: int,
        *,
        concurrency: int = 16,
        loss_alert: float = 0.2,
        alert_rounds: int = 2,
        recover_rounds: int = 2,
        on_round: OnRound | None = None,
        start_task: StartTask | None = None,
    ) -> None:
        self.connection = connection
        self.prober = prober
        self.clock = clock
        self.step = step
        self.count = count
        self.loss_alert = loss_alert
        self.alert_rounds = alert_rounds
        self.recover_rounds = recover_rounds
        self.on_round = on_round
        # The plugin passes ctx.start_task: its rounds are then cancelled with the jobs when
        # this instance stops leading.
        self.start_task: StartTask = start_task or asyncio.create_task
        self._bound = asyncio.Semaphore(concurrency)
        self._busy: dict[int, asyncio.Task[StoredRound | None]] = {}
        # The monitors whose round has probed and is being stored and noted: a stop waits
        # for them, so their note cannot come after the stop's summary.
        self._settling: set[int] = set()
        # The status event and the tick's look at closed tickets may stop the same ticket at
        # once: one at a time, the second finds nothing running (and the summary's post key
        # keeps it to one across instances).
        self._stopping = asyncio.Lock()

    async def due(self, now: datetime) -> list[Monitor]:
        """The running monitors whose next round is due at `now` (never run: at once), not
        counting those whose round is still in progress."""
        async with self.connection() as conn:
            candidates = await store.running(conn)
        return [
            monitor
            for monitor in candidates
            if monitor.id not in self._busy
            and (monitor.last_round_at is None or monitor.last_round_at + self.step <= now)
        ]

    async def run_due(self) -> list[asyncio.Task[StoredRound | None]]:
        """Start the due rounds as tasks (at most `concurrency` probing at once) and return
        them without waiting; `drain()` waits for them."""
        started = []
        for monitor in await self.due(self.clock.now()):
            task = self.start_task(self._round(monitor), name=f"round {monitor.id}")
            self._busy[monitor.id] = task
            task.add_done_callback(lambda _t, key=monitor.id: self._busy.pop(key, None))
            started.append(task)
        return started

    async def drain(self) -> None:
        """Wait until every round in progress is stored."""
        while self._busy:
            tasks = list(self._busy.values())
            await asyncio.gather(*tasks, return_exceptions=True)
            for task in tasks:  # the done callbacks may not have run yet
                self._busy = {key: busy for key, busy in self._busy.items() if busy is not task}

    async def close(self) -> None:
        """Cancel the rounds in progress (the plugin stops); nothing half-stored remains."""
        tasks = list(self._busy.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _round(self, monitor: Monitor) -> StoredRound | None:
        """One round of `monitor` (a task of `run_due`)."""
        try:
            return await self._probe_and_store(monitor)
        finally:
            self._settling.discard(monitor.id)

    async def _probe_and_store(self, monitor: Monitor) -> StoredRound | None:
        """Probe, store the round, then hand it to `on_round` unless the monitor stopped."""
        try:
            async with self._bound:
                # The round's time is when it probes, not when it began to wait for its turn.
                at = self.clock.now()
                result = await self.prober(monitor.target, monitor.kind, monitor.host, monitor.port)
            sent, received = result.sent, result.received
            rtts, error = list(result.rtts), result.error
        except asyncio.CancelledError:
            raise
        except Exception as error_raised:  # a probe's failure is a lost round, not a crash
            log.warning("probe of %s failed", monitor.target, exc_info=True)
            sent, received, rtts = self.count, 0, []
            error = f"{type(error_raised).__name__}: {error_raised}"
        self._settling.add(monitor.id)
        try:
            async with self.connection() as conn:
                stored = await store.record_round(
                    conn, monitor.id, at=at, sent=sent, received=received, rtts=rtts, error=error
                )
                # Stopped while probing (the ticket closed): the round is kept, but no note
                # follows the stop's summary.
                if not await store.still_running(conn, monitor.id):
                    return stored
                change = await store.update_alert(
                    conn,
                    monitor.id,
                    lossy=stored.loss > self.loss_alert,
                    rounds_needed=self.alert_rounds,
                    now=at,
                    recover_rounds=self.recover_rounds,
                    loss_alert=self.loss_alert,
                )
                if change is not None and self.on_round is None:
                    await store.settle_alert(conn, monitor.id, change, now=at)
        except Exception:  # e.g. the database is away: the next tick tries again
            log.exception("storing a round of %s failed", monitor.target)
            return None
        if self.on_round is not None:
            await self._note(monitor, stored, change)
        return stored

    async def _note(self, monitor: Monitor, stored: StoredRound, change: str | None) -> None:
        """Run `on_round`, then record the alert change: a note that could not be queued
        leaves the state as it was, so the next round brings the same change again."""
        assert self.on_round is not None
        try:
            await self.on_round(monitor, stored, change)
        except Exception:
            log.exception("handling a round of %s failed", monitor.target)
            return
        if change is None:
            return
        try:
            async with self.connection() as conn:
                await store.settle_alert(conn, monitor.id, change, now=stored.at)
        except Exception:  # the note went out; at worst it goes out once more
            log.exception("recording the alert state of %s failed", monitor.target)

    async def stop_for_ticket(self, ticket: int, reason: str) -> list[Monitor]:
        """Stop every monitor of a closed ticket (resolved or rejected), recording its closing
        summary as owed in the same transaction (store.stop); a round still probing is stored
        without a note, one already stored has its note queued before this returns (so
        before the caller's summary); no further one starts."""
        async with self._stopping, self.connection() as conn:
            stopped = await store.stop(
                conn, ticket=ticket, target=None, reason=reason, now=self.clock.now(),
                summary=True,
            )
        noting = [
            self._busy[monitor.id]
            for monitor in stopped
            if monitor.id in self._settling and monitor.id in self._busy
        ]
        if noting:  # storing and noting take a moment; asyncio.wait does not cancel them
            await asyncio.wait(noting)
        return stopped

    async def purge(self, now: datetime, retention: timedelta) -> int:
        """Delete the rounds older than `retention`; returns how many."""
        async with self.connection() as conn:
            return await store.purge(conn, now - retention)
