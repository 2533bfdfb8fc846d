"""`PluginManager`: starts the enabled plugins in order, keeps what they registered, stops them,
and isolates their failures.

A plugin that fails at start is disabled (whatever it registered meanwhile is removed). A
handler, hook, job or contribution that raises is logged with its stack and that one call is
dropped (the core's change stands); after `MAX_CONSECUTIVE_FAILURES` failures in a row of
one registered thing (a hook that keeps failing while the plugin's other handlers work) the
plugin is disabled; a new-mail hook failing again on a mail handled again counts once, and so
does a panel or root-line contribution failing again on the same ticket (a volunteer reloading
a page whose ticket holds text the plugin trips on must not switch the plugin off). Each
of these is reported once per plugin and start in the queue rooms (a chat notice through the
outbox) and in the log; exobot and the other plugins keep running.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from datetime import UTC, tzinfo
from pathlib import Path
from typing import Any

from exobot import i18n
from exobot.config import Config
from exobot.core.actions import ActionCall, ActionRefused, ActionRegistry, Answer
from exobot.core.clock import Clock
from exobot.core.events import EventBus, OutboxQueued
from exobot.core.hooks import NewMail
from exobot.core.languages import N_
from exobot.core.model import Ticket
from exobot.core.service import CHAT, ServiceError, TicketService
from exobot.plugins.base import DataSubject, Panel, Plugin, domain_of
from exobot.plugins.context import PluginContext
from exobot.plugins.discovery import installed, plugin_class

log = logging.getLogger("exobot.plugins")


class ErasureIncomplete(Exception):
    """Plugins whose erase handler failed (or that are disabled): their data about the person
    was not erased."""

    def __init__(self, plugins: list[str]) -> None:
        super().__init__(f"plugin(s) {', '.join(plugins)} could not erase their data")
        self.plugins = plugins


MAX_CONSECUTIVE_FAILURES = 5
# How many mails a new-mail hook's failures are remembered for (more than a group of mails).
RECENT_FAILURES = 64
ERROR_SHOWN = 200  # characters of an error shown in chat

_FAILED = object()  # what a dropped call returns, told apart from any value a plugin gives

# What a plugin can contribute, by kind: ("mail", hook), ("root", fn), ("panel", fn), …
KINDS = ("mail", "root", "panel", "digest", "export", "erase", "backup", "related")


@dataclass
class Host:
    """The parts of exobot the plugins reach (built by the App; some are absent in the CLI)."""

    service: TicketService
    repository: Any  # exobot.db.repository.SqlRepository
    clock: Clock
    actions: ActionRegistry
    events: EventBus
    language: str = "ca"
    scheduler: Any = None  # exobot.jobs.Scheduler (add_job)
    web_app: Any = None  # the FastAPI application
    announce: bool = False  # whether chat notices can be posted (Matrix configured)
    timezone: tzinfo = UTC  # the configured alerts.timezone (the App and the CLI pass it)


@dataclass
class _Run:
    """One plugin while it runs (one per start)."""

    name: str
    plugin: Plugin
    ctx: PluginContext | None = None
    failures: dict[int, int] = field(default_factory=dict)  # consecutive, per registered thing
    # What each contribution failed on lately: a mail handled again (its group of mails was
    # undone by another's failure, or the pass failed before its commit) or a ticket whose
    # page is loaded again counts once.
    failed_on: dict[int, deque[object]] = field(default_factory=dict)
    reported: set[str] = field(default_factory=set)
    disabled: bool = False


class _SavepointOnUse:
    """A new-mail hook's view of the mail's transaction: a savepoint is begun before the
    hook's first statement (when the connection has savepoints), and `end` keeps or undoes
    what the hook did since."""

    _STATEMENTS = frozenset(
        {"execute", "scalar", "scalars", "exec_driver_sql", "stream", "stream_scalars", "run_sync"}
    )

    def __init__(self, connection: Any) -> None:
        self._connection = connection
        self._savepoint: Any = None
        self._begun = False

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._connection, name)
        if name not in self._STATEMENTS or not callable(attribute):
            return attribute

        async def guarded(*args: Any, **kwargs: Any) -> Any:
            if not self._begun:
                self._begun = True
                begin = getattr(self._connection, "begin_nested", None)
                self._savepoint = await begin() if begin is not None else None
            return await attribute(*args, **kwargs)

        return guarded

    async def end(self, *, keep: bool) -> None:
        """Release the savepoint (`keep`) or roll back to it; nothing when none was begun."""
        if self._savepoint is not None:
            await (self._savepoint.commit() if keep else self._savepoint.rollback())


def _mail_key(new: NewMail) -> object:
    """What tells a mail apart when it is handled again: its stored row, else its Message-ID."""
    return new.mail.inbound_id if new.mail.inbound_id is not None else new.mail.message_id


def _described(subject: object) -> str:
    """A failure's subject for the log: the ticket it was about, or the mail handled again."""
    if isinstance(subject, tuple) and subject[:1] == ("ticket",):
        return f"ticket #{subject[1]}"
    return "the same mail (handled again)"


def _failed_before(run: _Run, fn: Callable, subject: object) -> bool:
    """Whether `fn` failed on `subject` (a mail, a ticket) lately; noted if not."""
    if subject is None:
        return False
    recent = run.failed_on.setdefault(id(fn), deque(maxlen=RECENT_FAILURES))
    if subject in recent:
        return True
    recent.append(subject)
    return False


class PluginManager:
    """The enabled plugins of one exobot: `start()`, `stop()`, and what they contribute."""

    def __init__(self, config: Config, host: Host | None = None) -> None:
        self.config = config
        self.host = host
        self.disabled: dict[str, str] = {}  # name → why
        self._runs: dict[str, _Run] = {}
        self._contributions: dict[str, list[tuple[_Run, Callable]]] = {k: [] for k in KINDS}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._background: set[asyncio.Task] = set()

    # --- what is enabled ----------------------------------------------------------------

    @property
    def enabled(self) -> list[str]:
        """The plugins running now, in start order."""
        return [name for name, run in self._runs.items() if not run.disabled]

    def context(self, name: str) -> PluginContext | None:
        """The context of a running plugin (tools, tests), or None."""
        run = self._runs.get(name)
        return run.ctx if run is not None and not run.disabled else None

    def migration_branches(self) -> dict[str, Path]:
        """Each enabled plugin's migrations folder, by name (for `exobot migrate` and start)."""
        return plugin_migrations(self.config)

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Start each enabled plugin in configuration order; one that fails is disabled."""
        if self.host is None:
            raise RuntimeError("the plugin manager has no host to start plugins in")
        self._loop = asyncio.get_running_loop()
        for name, settings in self.config.plugins.items():
            if name in self._runs:
                continue
            try:
                cls = plugin_class(name)
                config = cls.config_model.model_validate(settings)
                plugin = cls()
            except Exception as error:
                self.disabled[name] = f"cannot be loaded: {error!r}"
                log.error("plugin %s cannot be loaded: %r", name, error)
                await self._notice(name, "start", error)
                continue
            run = _Run(name, plugin)
            run.ctx = PluginContext(self, run, config, self.host)
            self._runs[name] = run
            try:
                if cls.locale is not None:
                    domain = domain_of(name)
                    i18n.add_domain(domain, cls.locale)
                    run.ctx._keep(lambda domain=domain: i18n.remove_domain(domain))
                if cls.templates is not None:
                    from exobot.plugins.web import add_templates

                    run.ctx._keep(add_templates(name, cls.templates))
                await plugin.start(run.ctx)
            except Exception as error:
                log.exception("plugin %s failed to start; it is disabled", name)
                await self._teardown(run, f"failed to start: {error!r}", call_stop=True)
                await self._notice(name, "start", error)
                continue
            log.info("plugin %s started", name)

    async def stop(self) -> None:
        """Stop the running plugins in reverse order and remove what they registered."""
        for run in reversed(list(self._runs.values())):
            if not run.disabled:
                await self._teardown(run, None, call_stop=True)
        self._runs.clear()
        for task in list(self._background):
            task.cancel()
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

    async def disable(self, name: str, reason: str) -> None:
        """Stop one plugin now and keep it disabled until exobot restarts."""
        run = self._runs.get(name)
        if run is not None and not run.disabled:
            await self._teardown(run, reason, call_stop=True)

    async def _teardown(self, run: _Run, reason: str | None, *, call_stop: bool) -> None:
        run.disabled = True
        if reason is not None:
            self.disabled[run.name] = reason
        if call_stop:
            try:
                await run.plugin.stop()
            except Exception:
                log.exception("plugin %s failed to stop", run.name)
        errors = run.ctx.remove_all() if run.ctx is not None else []
        for error in errors:
            log.error("plugin %s: a registration could not be removed: %r", run.name, error)
        if reason is None:
            log.info("plugin %s stopped", run.name)

    # --- registrations (through PluginContext) -------------------------------------------

    def add_contribution(self, kind: str, run: _Run, fn: Callable) -> Callable[[], None]:
        """Keep `fn` as one of `run`'s contributions of `kind`; returns its remover."""
        item = (run, fn)
        self._contributions[kind].append(item)
        return lambda: self._contributions[kind].remove(item)

    def wrap_handler(self, run: _Run, handler: Callable) -> Callable:
        """An action handler that drops a failing call: the person gets a short answer."""

        async def isolated(call: ActionCall) -> Any:
            if run.disabled:
                return Answer(
                    i18n.say(call.language, N_("The plugin {name} is disabled."), name=run.name)
                )
            try:
                result = await handler(call)
            except (ServiceError, ActionRefused):
                raise  # a refusal the channel explains: an answer, not a failure
            except Exception as error:
                self._failed(run, handler, f"action {call.action}", error)
                return Answer(
                    i18n.say(
                        call.language,
                        N_("The plugin {name} failed; the error is in exobot's log."),
                        name=run.name,
                    )
                )
            self._succeeded(run, handler)
            return result

        return isolated

    def wrap_suggest(self, run: _Run, suggest: Callable, what: str) -> Callable:
        """An argument's suggestions whose failure is counted against its plugin: the form
        shows without suggestions (`[]`), the failure is logged."""

        async def isolated(ticket: int | None, language: str) -> list[str]:
            found = await self._call(run, what, suggest, ticket, language, default=None)
            if found is None:
                return []
            return [str(value) for value in found]

        return isolated

    def wrap_event_handler(self, run: _Run, handler: Callable) -> Callable:
        """An event handler whose failure is counted against its plugin, not raised."""

        async def isolated(event: object) -> None:
            await self._call(run, f"handler of {type(event).__name__}", handler, event)

        return isolated

    def wrap_job(self, run: _Run, fn: Callable, name: str) -> Callable[[], Awaitable[None]]:
        """A scheduled job whose failure is counted against its plugin, not raised."""

        async def isolated() -> None:
            await self._call(run, f"job {name}", fn)

        return isolated

    # --- what the core asks for ----------------------------------------------------------

    async def run_mail_hooks(self, new: NewMail) -> None:
        """Run every new-mail hook in the mail's transaction (the service calls this), each
        behind a savepoint begun before its first statement: a failing hook's flags,
        paragraphs and statements are undone, and a hook that runs no statement (most look
        only at new tickets) costs no round trip."""
        for run, hook in list(self._contributions["mail"]):
            view = new.scoped(run.name)
            guarded = _SavepointOnUse(new.connection) if new.connection is not None else None
            view.connection = guarded
            outcome = await self._call(
                run, "new-mail hook", hook, view, default=_FAILED, subject=_mail_key(new)
            )
            if guarded is not None:
                await guarded.end(keep=outcome is not _FAILED)
            if outcome is not _FAILED:
                new.merge(view)

    async def root_lines(self, ticket: Ticket, language: str) -> list[str]:
        """The plugins' plain lines for a ticket's root message."""
        return await self._lines("root", ticket, language, subject=("ticket", ticket.number))

    async def digest_lines(self, language: str, queues: Collection[str] | None = None) -> list[str]:
        """The plugins' plain lines for the daily digest: for a room serving `queues`, the
        lines meant for every room and those meant for one of these queues; None: all."""
        return [
            line
            for queue, lines in await self.digest_parts(language)
            if queues is None or queue is None or queue in queues
            for line in lines
        ]

    async def digest_parts(self, language: str) -> list[tuple[str | None, list[str]]]:
        """Each digest contribution's lines with the queue they are for (None: every room),
        each plugin asked once."""
        parts: list[tuple[str | None, list[str]]] = []
        for run, fn in list(self._contributions["digest"]):
            got = await self._call(run, "digest lines", fn, language, default=None)
            if got:
                parts.append((getattr(fn, "queue", None), [str(line) for line in got]))
        return parts

    async def panels(self, ticket: Ticket, language: str) -> list[Panel]:
        """The plugins' panels for a ticket's page."""
        found = []
        for run, fn in list(self._contributions["panel"]):
            panel = await self._call(
                run, "ticket panel", fn, ticket, language, subject=("ticket", ticket.number)
            )
            if isinstance(panel, Panel):
                found.append(panel)
        return found

    async def export(self, subject: DataSubject) -> dict[str, dict]:
        """Each plugin's data about `subject`, by plugin name."""
        return await self._collect("export", subject)

    async def erase(self, subject: DataSubject) -> dict[str, int]:
        """Erase each plugin's data about `subject`; rows erased, by plugin name. Unlike the
        other calls, a failure is not only logged: after every plugin has had its turn,
        ErasureIncomplete names those that failed (or were disabled), whose data stays."""
        result: dict[str, int] = {}
        failed: list[str] = []
        for run, fn in list(self._contributions["erase"]):
            got = await self._call(run, "erase", fn, subject, default=_FAILED)
            if got is _FAILED:
                failed.append(run.name)
            elif got is not None:
                result[run.name] = got
        if failed:
            raise ErasureIncomplete(failed)
        return result

    async def related(self, address: str) -> set[str]:
        """The other addresses the plugins know for the person at `address` (lower case)."""
        found: set[str] = set()
        for got in (await self._collect("related", address)).values():
            found.update(str(a).strip().lower() for a in got or () if str(a).strip())
        return found

    async def backup(self) -> dict[str, dict]:
        """Each plugin's own data for a backup, by plugin name."""
        return await self._collect("backup")

    async def _lines(self, kind: str, *args: Any, subject: object = None) -> list[str]:
        lines: list[str] = []
        for run, fn in list(self._contributions[kind]):
            got = await self._call(run, f"{kind} lines", fn, *args, subject=subject)
            if got:
                lines.extend(str(line) for line in got)
        return lines

    async def _collect(self, kind: str, *args: Any) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for run, fn in list(self._contributions[kind]):
            got = await self._call(run, kind, fn, *args, default=None)
            if got is not None:
                result[run.name] = got
        return result

    # --- failure isolation ---------------------------------------------------------------

    async def _call(
        self,
        run: _Run,
        what: str,
        fn: Callable,
        *args: Any,
        default: Any = None,
        subject: object = None,
    ):
        """`fn(*args)`, its failure counted against the plugin once per `subject` (a mail,
        a ticket)."""
        if run.disabled:
            return default
        try:
            result = fn(*args)
            if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
                result = await result
        except Exception as error:
            if _failed_before(run, fn, subject):
                log.error(
                    "plugin %s: %s failed again on %s; the call was dropped, the failure "
                    "counted once",
                    run.name,
                    what,
                    _described(subject),
                    exc_info=error,
                )
                return default
            self._failed(run, fn, what, error)
            return default
        self._succeeded(run, fn)
        return result

    def _succeeded(self, run: _Run, fn: Callable) -> None:
        run.failures.pop(id(fn), None)

    def _failed(self, run: _Run, fn: Callable, what: str, error: BaseException) -> None:
        """Log the failure with its stack; report the first in chat; disable at the fifth."""
        failures = run.failures[id(fn)] = run.failures.get(id(fn), 0) + 1
        log.error(
            "plugin %s: %s failed (%d in a row); the call was dropped",
            run.name,
            what,
            failures,
            exc_info=error,
        )
        if failures >= MAX_CONSECUTIVE_FAILURES and not run.disabled:
            run.disabled = True  # no further call, from any thread, from now on
            reason = f"{failures} failures in a row, the last in {what}: {error!r}"
            self.disabled[run.name] = reason
            log.error("plugin %s is disabled: %s", run.name, reason)
            self._on_loop(self._disable_later(run, reason, error))
        elif "call" not in run.reported:
            run.reported.add("call")
            self._on_loop(self._notice(run.name, "call", error, where=what, run=run))

    async def _disable_later(self, run: _Run, reason: str, error: BaseException) -> None:
        await self._teardown(run, reason, call_stop=True)
        await self._notice(run.name, "disabled", error, run=run)

    def _on_loop(self, coroutine: Awaitable[None]) -> None:
        """Run a coroutine on exobot's loop (a hook may fail in the database's thread)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            coroutine.close()
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._spawn(coroutine)
        else:
            loop.call_soon_threadsafe(self._spawn, coroutine)

    def _spawn(self, coroutine: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _notice(
        self,
        name: str,
        kind: str,
        error: BaseException,
        *,
        where: str = "",
        run: _Run | None = None,
    ) -> None:
        """Say in the queue rooms (once per plugin, start and kind) that a plugin failed."""
        if run is not None and kind != "call":  # "call" is marked when it is counted
            if kind in run.reported:
                return
            run.reported.add(kind)
        language = self.host.language if self.host else "ca"
        shown = f"{type(error).__name__}: {error}"[:ERROR_SHOWN]
        text = {
            "start": N_("⚠️ The plugin {name} could not start and is disabled ({error})."),
            "call": N_(
                "⚠️ The plugin {name} failed in {what} ({error}); that call was skipped. "
                "Details are in exobot's log."
            ),
            "disabled": N_(
                "⚠️ The plugin {name} failed {count} times in a row and is disabled until "
                "exobot restarts ({error})."
            ),
        }[kind]
        body = i18n.say(
            language,
            text,
            name=name,
            error=shown,
            what=where,
            count=MAX_CONSECUTIVE_FAILURES,
        )
        log.warning("%s", body)
        if self.host is None or not self.host.announce:
            return
        try:

            async def work(uow: Any) -> None:
                await uow.queue_outbox(CHAT, None, {"type": "notice", "body": body})

            await self.host.repository.run(work, now=self.host.clock.now())
            await self.host.events.emit(OutboxQueued(CHAT))
        except Exception:  # the log has it; the database may be the reason
            log.exception("could not queue the chat notice about plugin %s", name)


def plugin_migrations(config: Config) -> dict[str, Path]:
    """The migrations folder of each enabled, loadable plugin that has one, by name."""
    found: dict[str, Path] = {}
    plugins = installed()
    for name in config.plugins:
        entry = plugins.get(name)
        if entry is not None and entry.cls is not None and entry.cls.migrations is not None:
            found[name] = Path(entry.cls.migrations)
    return found
