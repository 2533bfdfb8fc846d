"""Parsing mail where a runaway cannot hold the helpdesk: small worker processes, each bounded
in time and memory per mail.

Parsing is CPU work on attacker-sized input, and `re` and html2text hold the GIL: a thread does
not keep the event loop running, a process does (and puts a second core to work). Each worker
parses one mail at a time under `RLIMIT_AS`; a worker that runs past the time limit is killed
and replaced, one that runs out of memory reports it and is replaced. The caller gets either the
parsed mail or a :class:`ParseRefused` whose text says why ("parsing took longer than 10 s").

Workers are forked from a fork server (started with the parser and the language models
preloaded) rather than from this process, which runs threads and an event loop: a fork server
child starts in a few milliseconds and inherits nothing but the imports.

The processes run only while there is mail: the first mail starts the fork server and the
workers (about a second on a small machine), and once no mail was parsed for
`SandboxSettings.idle_seconds` the workers, the fork server and multiprocessing's resource
tracker are stopped, leaving exobot alone at rest. An instance that never parses (a follower)
never starts them.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import io
import logging
import multiprocessing
import os
import pickle
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from multiprocessing.connection import Connection
from types import MappingProxyType
from typing import Any

from exobot.core.clock import Clock, SystemClock
from exobot.core.text import format_size
from exobot.mail.parse import MailParseError, ParsedMail

log = logging.getLogger("exobot.mail.sandbox")

PARSER = "exobot.mail.parse:parse_mail"
MB = 1024 * 1024
# A worker is replaced after this many mails: whatever a parse leaked or fragmented is returned
# to the system now and then, at the cost of one fork (milliseconds).
MAX_TASKS_PER_WORKER = 500
# Exit status of a worker that ran out of memory even while reporting it.
_EXIT_OUT_OF_MEMORY = 3
_KILL_WAIT_SECONDS = 2.0
# Generous: a worker starts in milliseconds, but a busy machine may take its time.
_START_WAIT_SECONDS = 60.0
# How often a wait for an answer looks whether the sandbox was closed meanwhile.
_WAIT_SLICE_SECONDS = 0.5
# How soon an idle check that found a mail being parsed looks again.
_IDLE_RECHECK_SECONDS = 1.0
_READY = b"ready"


class ParseRefused(Exception):
    """The mail could not be parsed within the limits (or the worker died); `reason` says why
    in one line, for the quarantine."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# The language models (exobot.mail.language) load as a worker starts. Measured with lingua's
# low-accuracy mode and fastText's lite model: 142 MB of address space at the peak for the
# whole worker (the interpreter and the parser 33 MB, lingua's library 100 MB mapped: it embeds
# every language's model), of which 44 MB resident; the reserve leaves room above that.
WARM_UP = "exobot.mail.parse:warm_up"
WARM_UP_RESERVE = 160 * MB
# Imported by the fork server when workers warm up: it loads those models there once.
LANGUAGE_PRELOAD = "exobot.mail.language_preload"
# Imported first by the fork server: the workers skip re-running exobot's main module.
FORKSERVER_PRELOAD = "exobot.mail.forkserver_preload"


class SandboxUnavailable(Exception):
    """No parsing process could be started (the system's fault, not the mail's)."""


@dataclass(frozen=True)
class SandboxSettings:
    """The per-mail limits and how many workers parse at once."""

    timeout: float = 10.0  # seconds per mail
    memory: int = 512 * MB  # bytes of address space per worker for a mail
    workers: int = 2
    parser: str = PARSER  # "module:function" taking raw bytes (tests swap in a slow one)
    # Run once as a worker starts ("module:function"; None: nothing), and the address space
    # what it loads takes, on top of `memory` so that a mail keeps all of that.
    warm_up: str | None = WARM_UP
    reserve: int = WARM_UP_RESERVE
    # Workers, fork server and resource tracker stop once no mail was parsed for this long;
    # the next mail starts them again. 0: they run until close().
    idle_seconds: float = 60.0

    @property
    def address_space(self) -> int:
        """The limit set on a worker: a mail's memory and the warm-up's reserve."""
        return self.memory + (self.reserve if self.warm_up else 0)


def _format_seconds(seconds: float) -> str:
    return f"{seconds:g} s"


# --------------------------------------------------------------------------- the worker side


def _read_only(mapping: dict) -> MappingProxyType:
    return MappingProxyType(mapping)


class _Pickler(pickle.Pickler):
    """ParsedMail holds a read-only MappingProxyType, which pickle refuses: send it as the dict
    it wraps and wrap it again on the other side."""

    def reducer_override(self, obj: Any) -> Any:
        if type(obj) is MappingProxyType:
            return _read_only, (dict(obj),)
        return NotImplemented


def dumps(value: Any) -> bytes:
    """Pickle a parse result (ParsedMail included)."""
    buffer = io.BytesIO()
    _Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(value)
    return buffer.getvalue()


def _load_parser(path: str) -> Any:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def _warm_up(path: str | None) -> None:
    """Run the warm-up (`module:function`; the language models load there) before the worker
    says it is ready, so the first mail pays no start-up cost. A warm-up that fails leaves its
    work to the first mail (language detection then falls back on its own)."""
    if path:
        with contextlib.suppress(Exception):
            _load_parser(path)()


def _worker_main(
    conn: Connection, memory: int, parser_path: str, warm_up_path: str | None = None
) -> None:
    """One worker: parse each mail received on `conn`, answer with ("ok", ParsedMail),
    ("not-mail", text), ("memory", None) or ("error", text)."""
    # Ctrl-C reaches the whole process group; the parent decides when workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    parse = _load_parser(parser_path)
    _warm_up(warm_up_path)
    conn.send_bytes(_READY)
    while True:
        try:
            raw = conn.recv_bytes()
        except (EOFError, OSError):
            return  # the parent closed the pipe: stop
        try:
            result: tuple = ("ok", parse(raw))
        except MailParseError as error:
            result = ("not-mail", str(error))
        except MemoryError:
            result = None  # drop whatever the parse held before answering
        except RecursionError:
            result = ("error", "the mail is nested too deeply")
        except Exception as error:  # a parser bug: reported, and the next mail still parses
            result = ("error", f"{type(error).__name__}: {error}"[:500])
        del raw
        if result is None:
            with contextlib.suppress(BaseException):
                conn.send_bytes(dumps(("memory", None)))
            os._exit(_EXIT_OUT_OF_MEMORY)  # a fresh worker, not a fragmented one, parses next
        try:
            conn.send_bytes(dumps(result))
        except MemoryError:
            os._exit(_EXIT_OUT_OF_MEMORY)


# --------------------------------------------------------------------------- the parent side

# The fork server and the resource tracker are multiprocessing's, one per process, shared by
# every sandbox of it (tests make several): they are stopped only when no worker of any sandbox
# is alive or starting. A worker holds the fork server's "alive" pipe, so stopping the server
# under a live worker would wait for that worker; this count, under this lock, rules it out.
_SERVER_LOCK = threading.Lock()
_server_users = 0


def _use_server(delta: int) -> None:
    global _server_users
    with _SERVER_LOCK:
        _server_users += delta


def _stop_fork_server() -> bool:
    """Stop multiprocessing's fork server and resource tracker if no worker uses them (True
    when they were stopped). Both start again by themselves with the next worker. Their
    `_stop()` is private API (the standard library's own tests use it; Python 3.11 to 3.14 have
    it): when it is missing, the processes are left running, which costs memory, never mail."""
    from multiprocessing import forkserver, resource_tracker

    with _SERVER_LOCK:
        if _server_users:
            return False
        stopped = False
        server = getattr(forkserver, "_forkserver", None)
        if getattr(server, "_forkserver_pid", None) is not None and hasattr(server, "_stop"):
            server._stop()
            stopped = True
        # The tracker after the server: the server holds the tracker's pipe too. Nothing of
        # exobot registers resources with it (no named semaphore, no shared memory).
        tracker = getattr(resource_tracker, "_resource_tracker", None)
        if getattr(tracker, "_fd", None) is not None and hasattr(tracker, "_stop"):
            tracker._stop()
            stopped = True
        return stopped


class _Worker:
    """One worker process and the parent's end of its pipe."""

    def __init__(self, context: Any, settings: SandboxSettings) -> None:
        _use_server(+1)  # counted from before its start: the fork server is not stopped now
        self._counted = True
        self.process: Any = None
        self.conn: Connection | None = None
        self.tasks = 0
        try:
            parent_end, child_end = context.Pipe(duplex=True)
            self.conn = parent_end
            self.process = context.Process(
                target=_worker_main,
                args=(child_end, settings.address_space, settings.parser, settings.warm_up),
                name="exobot-parse",
                daemon=True,  # never outlives exobot, even when it dies without stopping us
            )
            self.process.start()
            child_end.close()
            # Ready only once it has loaded the parser: a mail never waits for a start.
            if not parent_end.poll(_START_WAIT_SECONDS) or parent_end.recv_bytes(16) != _READY:
                raise RuntimeError(f"no answer within {_START_WAIT_SECONDS:g} s")
        except BaseException:
            self.kill()
            raise

    def kill(self) -> None:
        """Stop the process now and reap it (twice is harmless: close() and a job thread may
        both stop the same worker, and a closed process object refuses even `join`)."""
        with contextlib.suppress(Exception):
            self.process.kill()
        # ValueError: closed already; AssertionError: it never started (its start failed).
        with contextlib.suppress(ValueError, AssertionError, AttributeError):
            self.process.join(_KILL_WAIT_SECONDS)
        with contextlib.suppress(Exception):
            self.conn.close()
        with contextlib.suppress(Exception):
            self.process.close()
        with _SERVER_LOCK:
            counted, self._counted = self._counted, False
        if counted:
            _use_server(-1)


class ParseSandbox:
    """A small pool of parsing processes; `await parse(raw)` from the event loop.

    Each worker parses one mail at a time. A mail that takes longer than the timeout gets its
    worker killed and replaced; one that needs more memory than allowed ends its worker too.
    Either way the mail is refused with the reason and the next mail gets a healthy worker.
    Workers start on first use and retire after `settings.idle_seconds` without mail (by
    `clock`); `close()` stops them (a parse in progress is refused).
    """

    def __init__(self, settings: SandboxSettings | None = None, clock: Clock | None = None) -> None:
        self.settings = settings or SandboxSettings()
        self.clock = clock or SystemClock()
        self._context = multiprocessing.get_context("forkserver")
        self._idle: asyncio.Queue[_Worker | None] | None = None
        self._threads: ThreadPoolExecutor | None = None
        self._all: set[_Worker] = set()
        self._lock = threading.Lock()  # _all is touched by the job threads too
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._parsing = 0  # parse() calls under way (waiting for a slot included)
        self._last_used = self.clock.now()
        self._retiring = False
        self._idle_watch: asyncio.Task | None = None
        #: How many times the workers retired (for tests and the logs).
        self.retirements = 0

    @property
    def workers(self) -> int:
        """How many mails can be parsed at once."""
        return self.settings.workers

    def _start(self) -> None:
        if self._idle is not None:
            return
        # Preloading makes each worker a fork of a process that already imported the parser,
        # and one that does not import the main module again (see FORKSERVER_PRELOAD).
        module = self.settings.parser.partition(":")[0]
        preload = [FORKSERVER_PRELOAD, *sorted({"exobot.mail.parse", module})]
        if self.settings.warm_up:
            # The language models load once, in the fork server: the workers share its pages
            # (about 20 MB) instead of each loading a copy (the reserve still covers them).
            preload.append(LANGUAGE_PRELOAD)
        self._context.set_forkserver_preload(preload)
        self._loop = asyncio.get_running_loop()
        self._threads = ThreadPoolExecutor(self.workers, thread_name_prefix="exobot-parse")
        self._idle = asyncio.Queue()
        for _ in range(self.workers):
            self._idle.put_nowait(None)  # a slot: its worker starts when first needed

    async def warm_up(self) -> None:
        """Start the fork server and every worker now, off the event loop, so that the next
        mail does not wait for them (about a second on a small machine). exobot itself leaves
        that to its first mail; they retire after `idle_seconds` all the same."""
        self._start()
        slots = [await self._idle.get() for _ in range(self.workers)]
        results = await asyncio.gather(
            *(self._loop.run_in_executor(self._threads, self._started, s) for s in slots),
            return_exceptions=True,
        )
        for result in results:
            # A worker that could not start is left to the first mail, which says why.
            self._idle.put_nowait(result if isinstance(result, _Worker) else None)
        self._last_used = self.clock.now()
        self._watch_idle()  # started without mail, they still retire when none comes

    def _started(self, worker: _Worker | None) -> _Worker:
        """In a job thread: the slot's worker, started if it was not."""
        if worker is not None and worker.process.is_alive():
            return worker
        if worker is not None:
            self._forget(worker)
        return self._spawn()

    async def parse(self, raw: bytes) -> ParsedMail:
        """Parse one mail in a worker. Raises MailParseError (not a mail at all) or
        ParseRefused (over a limit, or the worker died)."""
        if self._closed:
            raise ParseRefused("the helpdesk is stopping")
        self._start()
        self._parsing += 1
        try:
            # While the workers retire, their slots are out of the queue: this waits for them
            # to come back (empty), then starts a fresh worker.
            worker = await self._idle.get()
            # Cancelled while the job thread runs, the thread still finishes (or close() kills
            # its worker) and hands the slot back itself.
            kind, value = await self._loop.run_in_executor(self._threads, self._run, worker, raw)
        finally:
            self._parsing -= 1
            self._last_used = self.clock.now()
            self._watch_idle()
        if kind == "ok":
            return value
        if kind == "not-mail":
            raise MailParseError(value)
        if kind == "error":
            raise ParseRefused(f"parse failed: {value}")
        raise ParseRefused(value)

    def _run(self, worker: _Worker | None, raw: bytes) -> tuple[str, Any]:
        """In a job thread: send the mail to a worker and wait, at most the time limit, for its
        answer. The worker's slot is handed back to the pool here, whatever happens."""
        settings = self.settings
        keep: _Worker | None = None
        try:
            if self._closed:
                return "refused", "the helpdesk is stopping"
            try:
                worker = self._started(worker)
            except Exception as error:
                if self._closed:
                    return "refused", "the helpdesk is stopping"
                raise SandboxUnavailable(f"cannot start a parsing process: {error}") from error
            try:
                worker.conn.send_bytes(raw)
                del raw
                stopping = self._wait_for_answer(worker)
                if stopping is not None:
                    self._forget(worker)
                    return "refused", stopping
                # The answer is bounded by the worker's own memory limit.
                kind, value = pickle.loads(worker.conn.recv_bytes(settings.memory))
            except (EOFError, OSError):
                return "refused", self._death(worker)
            if kind == "memory":
                self._forget(worker)
                return "refused", self._memory_reason()
            worker.tasks += 1
            if worker.tasks >= MAX_TASKS_PER_WORKER:
                self._forget(worker)
            else:
                keep = worker
            return kind, value
        finally:
            self._hand_back(keep)

    def _wait_for_answer(self, worker: _Worker) -> str | None:
        """Wait, at most the time limit, until the worker answers (None) or why not. Checked
        in short slices: a sandbox closed meanwhile, or an interpreter shutting down (which
        joins this thread before it ends any process), must not wait out a long limit."""
        deadline = time.monotonic() + self.settings.timeout
        while True:
            left = deadline - time.monotonic()
            if worker.conn.poll(max(0.0, min(left, _WAIT_SLICE_SECONDS))):
                return None
            if self._closed or not threading.main_thread().is_alive():
                return "the helpdesk is stopping"
            if left <= _WAIT_SLICE_SECONDS:
                return f"parsing took longer than {_format_seconds(self.settings.timeout)}"

    def _spawn(self) -> _Worker:
        worker = _Worker(self._context, self.settings)
        with self._lock:
            if not self._closed:
                self._all.add(worker)
                return worker
        # close() ran while this worker started: it would never be stopped.
        worker.kill()
        raise RuntimeError("the helpdesk is stopping")

    def _forget(self, worker: _Worker) -> None:
        with self._lock:
            self._all.discard(worker)
        worker.kill()

    def _death(self, worker: _Worker) -> str:
        """Why a worker stopped answering (it is reaped and forgotten here)."""
        if self._closed:
            self._forget(worker)
            return "the helpdesk is stopping"
        try:
            worker.process.join(_KILL_WAIT_SECONDS)
            code = worker.process.exitcode
        except ValueError:  # close() reaped it meanwhile: the helpdesk is stopping
            self._forget(worker)
            return "the helpdesk is stopping"
        self._forget(worker)
        if code == _EXIT_OUT_OF_MEMORY:
            return self._memory_reason()
        if code is not None and code < 0:
            name = signal.Signals(-code).name if -code in signal.valid_signals() else -code
            if -code == signal.SIGKILL:
                # The kernel's OOM killer sends SIGKILL; nothing else here does.
                return f"parsing was killed ({name}; out of memory?)"
            return f"parsing crashed ({name})"
        return f"parsing ended unexpectedly (exit status {code})"

    def _memory_reason(self) -> str:
        return f"parsing needed more than {format_size(self.settings.memory)}"

    def _hand_back(self, worker: _Worker | None) -> None:
        """Return a slot to the pool (None: its next user starts a fresh worker). Called from
        a job thread, so through the loop."""
        idle = self._idle
        if idle is None:
            return
        try:
            self._loop.call_soon_threadsafe(idle.put_nowait, worker)
        except RuntimeError:  # the loop is closed: nobody waits for a slot any more
            if worker is not None:
                self._forget(worker)

    # ----------------------------------------------------------------------- retiring when idle

    def _watch_idle(self) -> None:
        """Make sure a task will retire the workers once they are idle long enough."""
        if not self.settings.idle_seconds or self._closed:
            return
        if self._idle_watch is None or self._idle_watch.done():
            self._idle_watch = asyncio.create_task(self._retire_when_idle(), name="parse-idle")

    async def _retire_when_idle(self) -> None:
        """Sleep until the workers have been idle for `idle_seconds`, retire them, end. A mail
        parsed meanwhile moves the deadline; the next mail after a retirement starts this again."""
        idle = timedelta(seconds=self.settings.idle_seconds)
        while not self._closed:
            left = (self._last_used + idle - self.clock.now()).total_seconds()
            if left > 0:
                await asyncio.sleep(left)
            elif not self._parsing and not self._has_processes():
                return  # nothing runs (every worker failed or was replaced by none)
            elif await self.retire_idle():
                return
            else:
                await asyncio.sleep(_IDLE_RECHECK_SECONDS)  # a mail is being parsed

    def _has_processes(self) -> bool:
        """Whether this sandbox has a worker, or this process a fork server, to retire."""
        from multiprocessing import forkserver

        with self._lock:
            if self._all:
                return True
        return (
            getattr(getattr(forkserver, "_forkserver", None), "_forkserver_pid", None) is not None
        )

    async def retire_idle(self) -> bool:
        """Stop the workers (and, when no other sandbox of this process has workers, the fork
        server and the resource tracker) if no mail was parsed for `idle_seconds` and none is
        being parsed; True when they were stopped. A mail that comes meanwhile waits for the
        slots, then starts a fresh worker: it is parsed once, by that worker."""
        idle = self.settings.idle_seconds
        if not idle or self._closed or self._retiring or self._idle is None:
            return False
        # On the event loop: no slot can be taken or handed back between these checks and
        # taking every slot below.
        if self._parsing or self._idle.qsize() < self.workers:
            return False
        if self.clock.now() - self._last_used < timedelta(seconds=idle):
            return False
        if not self._has_processes():
            return False
        self._retiring = True
        slots = [self._idle.get_nowait() for _ in range(self.workers)]
        try:
            await asyncio.shield(self._loop.run_in_executor(None, self._retire, slots))
        finally:
            for _ in slots:
                self._idle.put_nowait(None)  # a mail that waited starts a fresh worker
            self._retiring = False
        self.retirements += 1
        log.info("parse workers retired after %g s without mail", idle)
        return True

    def _retire(self, slots: list[_Worker | None]) -> None:
        """In a thread: stop the slots' workers, then the fork server if nothing uses it."""
        for worker in slots:
            if worker is not None:
                self._forget(worker)
        _stop_fork_server()

    async def close(self) -> None:
        """Stop every worker now; a parse in progress is refused ("stopping")."""
        self._closed = True
        if self._idle_watch is not None:
            self._idle_watch.cancel()
        with self._lock:
            workers = list(self._all)
            self._all.clear()
        for worker in workers:
            await asyncio.to_thread(worker.kill)
        if self._threads is not None:
            self._threads.shutdown(wait=False, cancel_futures=True)
