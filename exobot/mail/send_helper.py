"""The send helper: a second process that sends a burst's mails on PostgreSQL.

One exobot process runs its event loop, the mails' transactions and the outbox workers under
one interpreter lock, so in a burst (an outage makes dozens of members write within minutes)
the acknowledgements and the mails' transactions take turns on one core. On PostgreSQL, where
each outbox row is claimed while it is sent (exobot.db.outbox.claim), the leader's mail worker
hands a burst to this helper, which sends from a process of its own, on the other core, and
stops once it has found nothing to send for IDLE_SECONDS. At rest there is no such process.

The helper only sends. A mail it cannot send (a refusal, the server away, a Cc address to be
noted on the ticket) is left pending and untouched for the leader's own worker, which retries,
gives up and records as it always did once the helper has stopped: every change to a ticket
still goes through the leader's service. So the leader's rules hold for every mail: a server
that cannot be reached uses up no mail's attempts (exobot.delivery.Unreachable), and once the
helper has found it so, it tries no other mail and stops. The helper reads its settings from
its standard input and stops, finishing the mails under way, when that closes (the leader
stepping down, stopping or killed) or on SIGTERM. A mail the server accepted whose mark could
not be written before the helper stopped (the database away) is reported to the leader as it
stops, also when it was told to stop: the leader's worker marks it before it sends anything
else (after a step-down, when it leads again), so it is not sent twice (unless the leader dies
too, or another instance takes over: then it is sent again, with the same Message-ID, as after
a crash).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pickle
import signal
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from exobot.cancelling import cancel_and_wait
from exobot.db.engine import create_engine, create_sync_engine
from exobot.db.repository import SqlRepository
from exobot.delivery import FINISH_SECONDS, Unreachable
from exobot.mail.outbound import MailSender, mail_sender, usable_cc

if TYPE_CHECKING:
    from exobot.config import Config
    from exobot.db import outbox

log = logging.getLogger("exobot.mail.send_helper")

#: A burst, for the helper: this many mails due within BURST_SECONDS (counted at each pass of
#: the leader's worker). Fewer are sent from the leader within about half a second, sooner
#: than a helper starts (about a second of CPU): with 20, the soak's bursts of 21-44 mails
#: each started one, and its commands' p95 latency on PostgreSQL rose (1,020 ms, against
#: 650-790 before).
BURST_MAILS = 50
BURST_SECONDS = 5.0
#: The helper stops after this long without a mail to send.
IDLE_SECONDS = 2.0
#: How often the helper looks for due mails (the leader's wake-ups do not reach it).
POLL_SECONDS = 0.05
#: After a helper that sent nothing (the server away, every due mail left to the leader),
#: none is started for this long: the leader's worker retries with its backoff meanwhile.
REST_SECONDS = 60.0
#: How long the leader waits for a helper told to stop before it kills it: the mails under
#: way get FINISH_SECONDS to be sent and marked.
STOP_SECONDS = FINISH_SECONDS + 3.0


@dataclass(frozen=True)
class HelperSetup:
    """What the helper process needs to send as the leader would (passed on its stdin)."""

    config: Config
    loop_marker: str  # the X-Loop value of our Message-IDs' secret (exobot.mail.msgid)
    # Set by the leader as it starts a helper, to its own `exobot` logger's level, not the
    # configuration's: an embedding process (the tests, the benchmarks) may log less.
    log_level: int = logging.INFO


class SendHelper:
    """The leader's handle on the helper: started for a burst, waited for until it stops on
    its own, and stopped with the worker (see the module's docstring)."""

    def __init__(self, setup: HelperSetup, *, burst: int = BURST_MAILS) -> None:
        self._setup = setup
        self.burst = burst
        self._seen: deque[tuple[float, int]] = deque()  # (time.monotonic(), mails due)
        self._proc: asyncio.subprocess.Process | None = None
        self._reading: asyncio.Task | None = None  # the running helper's reports being read
        # How a helper is started (the tests start a stand-in).
        self.command = [sys.executable, "-m", __name__]
        self._rest_until: float | None = None  # time.monotonic()
        self.runs = 0  # helpers started since this process started, for the logs and tests
        self.sent = 0  # mails they sent

    @property
    def pid(self) -> int | None:
        """The running helper's process id, or None."""
        proc = self._proc
        return proc.pid if proc is not None and proc.returncode is None else None

    def wants(self, items: list[outbox.OutboxItem]) -> bool:
        """Whether a pass with these due mails makes a burst for the helper (with the mails
        due in the passes of the last BURST_SECONDS)."""
        now = time.monotonic()
        self._seen.append((now, len(items)))
        while self._seen[0][0] < now - BURST_SECONDS:
            self._seen.popleft()
        if self._rest_until is not None and now < self._rest_until:
            return False
        if sum(count for _at, count in self._seen) < self.burst:
            return False
        self._seen.clear()
        return True

    async def run(
        self,
        on_sent: Callable[[int], None],
        on_unmarked: Callable[[int, datetime], None],
    ) -> int:
        """Start the helper and wait until it stops; returns how many mails it sent, each
        batch told to `on_sent` as it is reported, and each mail sent whose mark it could not
        write to `on_unmarked(row id, sent at)`. Cancelled, it stops the helper first."""
        self.runs += 1
        started = time.monotonic()
        try:
            proc = await asyncio.create_subprocess_exec(
                *self.command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
            )
        except OSError as error:
            log.error("the send helper did not start (%s): the mails go from here", error)
            self._rest()
            return 0
        self._proc = proc
        log.info("send helper %d started for a burst of mail", proc.pid)
        # The reports are read until the helper closes its stdout, also while it is being
        # stopped: the mails it could not mark come last, as it stops.
        self._reading = asyncio.create_task(self._read_reports(proc, on_sent, on_unmarked))
        try:
            level = logging.getLogger("exobot").getEffectiveLevel()
            proc.stdin.write(pickle.dumps(replace(self._setup, log_level=level)))
            with contextlib.suppress(ConnectionError):  # it died at once: its exit code tells
                await proc.stdin.drain()
            sent = await asyncio.shield(self._reading)
            code = await proc.wait()
        except BaseException:  # cancelled (the worker stopping), or the pipe broke
            await self.stop()
            raise
        finally:
            if proc.returncode is not None:
                self._proc = self._reading = None
        seconds = time.monotonic() - started
        if code != 0:
            log.error(
                "send helper %d ended with exit code %s after %d mails in %.1f s: "
                "the rest go from here",
                proc.pid,
                code,
                sent,
                seconds,
            )
        else:
            log.info("send helper %d done: %d mails sent in %.1f s", proc.pid, sent, seconds)
        if sent == 0:
            self._rest()
            log.info("no send helper for %.0f s: the mails go from here", REST_SECONDS)
        return sent

    async def stop(self) -> None:
        """Tell a running helper to stop (its stdin closed) and wait for it, its reports read
        to their end; killed when it does not end within STOP_SECONDS."""
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(Exception):
            proc.stdin.close()

        async def ended() -> None:
            if self._reading is not None:
                with contextlib.suppress(Exception):
                    await asyncio.shield(self._reading)
            await proc.wait()

        try:
            await asyncio.wait_for(ended(), STOP_SECONDS)
        except TimeoutError:
            log.error("send helper %d did not stop in %.0f s: killed", proc.pid, STOP_SECONDS)
            proc.kill()
            await proc.wait()
        self._proc = self._reading = None

    async def _read_reports(
        self,
        proc: asyncio.subprocess.Process,
        on_sent: Callable[[int], None],
        on_unmarked: Callable[[int, datetime], None],
    ) -> int:
        """Read a helper's reports until it closes its stdout; returns how many mails it
        sent."""
        sent = 0
        while line := await proc.stdout.readline():
            unmarked = _unmarked(line)
            if unmarked is not None:
                on_unmarked(*unmarked)
                continue
            count = _count(line)
            sent += count
            self.sent += count
            if count:
                on_sent(count)
        return sent

    def _rest(self) -> None:
        self._rest_until = time.monotonic() + REST_SECONDS


def _count(line: bytes) -> int:
    """A report line's number of mails sent (0 for anything else: never trusted further)."""
    try:
        return max(0, int(line.strip() or b"0"))
    except ValueError:
        return 0


def _unmarked(line: bytes) -> tuple[int, datetime] | None:
    """A report line's mail sent but not marked (row id, sent at), or None."""
    match line.split():
        case [b"unmarked", item_id, sent_at]:
            try:
                return int(item_id), datetime.fromisoformat(sent_at.decode())
            except ValueError:
                return None
    return None


# --------------------------------------------------------------------------- the helper's side


class HelperSender(MailSender):
    """The helper's sender: sends what it can and leaves the rest, untouched, to the leader's
    worker (no service: it never changes a ticket)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.left: set[int] = set()  # rows this helper will not try again
        # Why the server could not be reached, once a mail found it so: the other mails are
        # left without a try (each would wait out the same timeout) and the helper stops.
        self.unreachable: Unreachable | None = None

    def lanes(self, items: list[outbox.OutboxItem]) -> list[list[outbox.OutboxItem]]:
        """The due mails it has not left."""
        return super().lanes([item for item in items if item.id not in self.left])

    async def _attempt(self, item: outbox.OutboxItem, claim) -> tuple[bool, str | None]:  # noqa: ANN001
        """Send and mark one mail, or leave it (nothing written) when that fails or when it
        would change its ticket (a Cc address to note), and without a try once the server was
        found unreachable."""
        if usable_cc(item.payload)[1]:
            return self._leave(item, "a Cc address to note on the ticket")
        if self.unreachable is not None:
            return self._leave(item, self.unreachable)
        try:
            await self._send(self.build(item.payload))
        except asyncio.CancelledError:
            raise
        except Unreachable as error:
            self.unreachable = error
            return self._leave(item, error)
        except Exception as error:
            return self._leave(item, error)
        await self._mark_delivered(item, claim)
        return True, None

    def _leave(self, item: outbox.OutboxItem, why: object) -> tuple[bool, None]:
        self.left.add(item.id)
        log.info("%s left to the leader: %s", self.describe(item), why)
        return False, None

    async def serve(self, stop: asyncio.Event, report: Callable[[int], None]) -> None:
        """Send what is due until nothing has been for IDLE_SECONDS, or `stop` is set."""
        loop = asyncio.get_running_loop()
        quiet_since = loop.time()
        while not stop.is_set():
            try:
                sent = await _unless(stop, self.deliver_due())
            except Exception as error:  # the database away: the leader's worker goes on
                log.warning("send helper pass failed: %r", error)
                sent = 0
            if sent:
                report(sent)
                quiet_since = loop.time()
            elif loop.time() - quiet_since >= IDLE_SECONDS:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), POLL_SECONDS)


async def _unless(stop: asyncio.Event, work: Any) -> int:
    """Await `work` (a coroutine) unless `stop` is set first: then it is cancelled (each mail
    under way still gets its FINISH_SECONDS, exobot.delivery) and 0 is returned."""
    task = asyncio.ensure_future(work)
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
    if not task.done():
        await cancel_and_wait([task])
        return 0
    return task.result()


class _Lifeline(asyncio.Protocol):
    """The helper's stdin after its settings: its end (the leader gone) means stop."""

    def __init__(self, stop: asyncio.Event) -> None:
        self.stop = stop

    def connection_lost(self, exc: Exception | None) -> None:
        self.stop.set()


async def _serve(setup: HelperSetup, reports: Any) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    await loop.connect_read_pipe(lambda: _Lifeline(stop), sys.stdin)
    url = setup.config.database.url
    repository = SqlRepository(create_engine(url), create_sync_engine(url))
    sender = mail_sender(setup.config, repository, None, setup.loop_marker, cls=HelperSender)

    def tell(line: str) -> None:
        try:
            reports.write(f"{line}\n")
            reports.flush()
        except OSError:  # the leader is gone (its end of the pipe closed): stop, as for stdin
            stop.set()

    try:
        await sender.serve(stop, lambda count: tell(str(count)))
    finally:
        # Sent, but the database refused their marks until now: the leader marks them.
        for item_id, sent_at in sender.unmarked.items():
            tell(f"unmarked {item_id} {sent_at.isoformat()}")
        await sender.close()
        await repository.close()


def main() -> int:
    """The helper process: settings from stdin, reports (mails sent) on stdout, logs on
    stderr."""
    # Ctrl-C in a terminal reaches the whole process group: the leader stops it (stdin).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    reports = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # anything else written to stdout goes to the log, not into the reports
    try:
        setup: HelperSetup = pickle.load(sys.stdin.buffer)
    except Exception as error:  # noqa: BLE001 - started by hand, or the leader died at once
        print(f"exobot send helper: no settings on stdin ({error!r})", file=sys.stderr)
        return 2
    from exobot.cli import setup_logging  # the leader's log lines: one line, masked

    setup_logging(setup.log_level)
    asyncio.run(_serve(setup, reports))
    return 0


if __name__ == "__main__":
    # Through the module's own name: the settings unpickled and the code run are one module.
    from exobot.mail.send_helper import main as helper_main

    sys.exit(helper_main())
