"""The connectivity plugin: `!monitor`, `!monitors` and `!graph`, the rounds job, the thread
notes (loss compared with the reference targets, recovery, the last summary on resolve), the
root-message offer for addresses in a new ticket's mail, the SmokePing export and the data
handlers. The pieces it drives are in targets.py, probes.py, store.py, scheduler.py, graph.py.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import logging
import re
import sys
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from markupsafe import Markup, escape
from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from exobot import i18n
from exobot.config import Duration
from exobot.core.actions import (
    ActionCall,
    ActionRefused,
    ActionSpec,
    Answer,
    ArgKind,
    Argument,
    Channel,
    TicketUse,
)
from exobot.core.events import TicketEvent
from exobot.core.languages import N_
from exobot.core.model import EntryKind, Status
from exobot.core.references import format_reference
from exobot.core.service import TicketNotFound
from exobot.plugins import DataSubject, Plugin, PluginConfig, PluginContext
from exobot_connectivity import pages, store, web
from exobot_connectivity.graph import GraphLabels, Series, graph_size, render_graph
from exobot_connectivity.probes import DEFAULT_INTERVAL, DEFAULT_TIMEOUT, Round, probe
from exobot_connectivity.scheduler import MonitorScheduler
from exobot_connectivity.store import Monitor, StoredRound
from exobot_connectivity.targets import TargetError, check_address, parse_target, resolve

HERE = Path(__file__).parent
NAME = "connectivity"
TICK = timedelta(seconds=5)  # how often due rounds are looked for: a new monitor's first
PURGE_EVERY = timedelta(hours=6)  # round starts within one tick
#: The longest between two looks for the monitors of tickets closed while their status
#: event was missed (and for owed closing summaries); with a shorter step, every step.
SWEEP_AT_MOST = timedelta(minutes=5)
PERIODS = {"3h": timedelta(hours=3), "24h": timedelta(hours=24), "7d": timedelta(days=7)}
DEFAULT_PERIOD = "24h"
STOP_WORDS = frozenset({"stop", "prou", "para", "atura"})
MAX_OFFERED = 3  # addresses offered in a root message
CLOSED = {Status.RESOLVED.value, Status.REJECTED.value}

#: Refusals of a target, by TargetError code, in the plugin's domain.
TARGET_WORDS = {
    "empty": N_("No target given: write an IP address or a host name."),
    "bad_syntax": N_("“{target}” is not a target: write HOST or HOST tcp:PORT."),
    "bad_host": N_("“{target}” is neither an IP address nor a valid host name."),
    "bad_port": N_("The TCP port in “{target}” is out of range (1-65535)."),
    "does_not_resolve": N_("“{target}” does not resolve to any address."),
    "multicast": N_("“{target}” is a multicast address: it cannot be probed."),
    "broadcast": N_("“{target}” is the broadcast address: it cannot be probed."),
    "unspecified": N_("“{target}” is the unspecified address: it cannot be probed."),
    "not_allowed": N_("“{target}” is outside the networks this exobot may probe."),
}

__all__ = ["Connectivity", "ConnectivityConfig"]

log = logging.getLogger("exobot.plugins.connectivity")


class ConnectivityConfig(PluginConfig):
    """Settings under `plugins.connectivity.`."""

    #: How often each target gets a round (a burst of `pings`).
    step: Duration = timedelta(minutes=5)
    #: Pings per round (SmokePing's default is 20).
    pings: int = Field(20, ge=1, le=100)
    #: The association's own targets, probed all the time and drawn beside each ticket's.
    reference_targets: list[str] = Field(default_factory=list)
    #: The lost share (0-1) above which a round counts as lossy.
    loss_alert: float = Field(0.2, ge=0.0, lt=1.0)
    #: Lossy rounds in a row before the thread gets a note.
    alert_rounds: int = Field(2, ge=1, le=100)
    #: Good rounds in a row before the recovery note (a flapping link stays in alert).
    recover_rounds: int = Field(2, ge=1, le=100)
    #: Rounds older than this are deleted.
    retention: Duration = timedelta(days=90)
    #: The networks that may be probed (CIDR); empty or absent: any unicast address.
    allowed_networks: list[str] | None = None
    #: Running monitors per ticket, and on all tickets together.
    max_per_ticket: int = Field(5, ge=1, le=100)
    max_total: int = Field(100, ge=1, le=10_000)

    @field_validator("reference_targets")
    @classmethod
    def _targets(cls, values: list[str]) -> list[str]:
        normal = []
        for value in values:
            try:
                target = parse_target(value)
            except TargetError as error:
                raise ValueError(error.message) from None
            literal = _literal(target.host)
            if literal is not None:
                try:
                    check_address(literal)
                except TargetError as error:
                    raise ValueError(error.message) from None
            if str(target) not in normal:
                normal.append(str(target))
        return normal

    @field_validator("allowed_networks")
    @classmethod
    def _networks(cls, values: list[str] | None) -> list[str] | None:
        if not values:
            return None
        normal = []
        for value in values:
            try:
                normal.append(str(ipaddress.ip_network(str(value).strip(), strict=False)))
            except ValueError:
                raise ValueError(f"{value!r} is not a network in CIDR form (10.0.0.0/8)") from None
        return normal

    @model_validator(mode="after")
    def _references_allowed(self) -> ConnectivityConfig:
        """A literal reference target outside allowed_networks would only ever be refused
        (every round 100 % lost, every ticket's alert blaming our network): said now, under
        reference_targets. A host name is checked at each round, as its address may move."""
        for value in self.reference_targets:
            literal = _literal(parse_target(value).host)
            if literal is None:
                continue
            try:
                check_address(literal, self.allowed_networks)
            except TargetError:
                networks = ", ".join(self.allowed_networks or ())
                message = f"{value} is outside allowed_networks ({networks})"
                # Raised with its location so that the problem names the key itself
                # (plugins.connectivity.reference_targets), not the whole section.
                raise ValidationError.from_exception_data(
                    type(self).__name__,
                    [
                        InitErrorDetails(
                            type=PydanticCustomError("value_error", "{error}", {"error": message}),
                            loc=("reference_targets",),
                            input=self.reference_targets,
                        )
                    ],
                ) from None
        return self


def _literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def round_interval(step: timedelta, pings: int) -> float:
    """Seconds between the pings of a burst: SmokePing's 1 s, shorter when a burst would
    otherwise take more than half the step (fping accepts 10 ms without root)."""
    return max(0.01, min(DEFAULT_INTERVAL, step.total_seconds() / 2 / max(pings, 1)))


_TOKEN_STRIP = "\"'()[]<>{},;.!?«»“”"


def addresses_in(text: str, allowed: Sequence[str] | None, limit: int = MAX_OFFERED) -> list[str]:
    """The distinct unicast IP addresses written in `text` that may be probed, in order."""
    found: list[str] = []
    for token in re.split(r"[\s,;]+", text or ""):
        token = token.strip(_TOKEN_STRIP)
        if not token or ("." not in token and ":" not in token):
            continue
        address = _literal(token)
        if address is None:
            continue
        try:
            check_address(address, allowed)
        except TargetError:
            continue
        if str(address) not in found:
            found.append(str(address))
        if len(found) >= limit:
            break
    return found


def smokeping_probe(monitor: Monitor) -> str:
    """The SmokePing probe for a monitor: TCPPing for `HOST tcp:PORT`, FPing6 for an IPv6
    address (SmokePing's FPing passes `-4` to fping), FPing otherwise (a host name: its IPv4
    address, as SmokePing's FPing resolves it)."""
    if monitor.kind == "tcp":
        return "TCPPing"
    literal = _literal(monitor.host)
    return "FPing6" if literal is not None and literal.version == 6 else "FPing"


def smokeping_targets(grouped: dict[int | None, list[Monitor]], prefix: str) -> str:
    """The running monitors as a SmokePing `Targets` include: a `+ exobot` section, one `++`
    section per ticket (and one for the reference targets), one `+++` per target."""
    lines = [
        "# Written by `exobot connectivity smokeping-targets`: the monitors exobot runs.",
        "# Include it under *** Targets *** (@include); FPing, FPing6 and TCPPing must be in",
        "# *** Probes *** (FPing6 may use the same fping binary; TCPPing needs tcpping).",
        "",
        "+ exobot",
        "menu = exobot",
        "title = exobot: monitored tickets",
    ]
    for ticket in sorted(grouped, key=lambda t: (t is not None, t or 0)):
        monitors = grouped[ticket]
        name = "references" if ticket is None else f"ticket_{ticket}"
        title = "reference targets" if ticket is None else format_reference(prefix, ticket)
        lines += ["", f"++ {name}", f"menu = {title}", f"title = {title}"]
        for monitor in monitors:
            lines += [
                "",
                f"+++ m{monitor.id}",
                f"menu = {monitor.target}",
                f"title = {title}: {monitor.target}",
                f"probe = {smokeping_probe(monitor)}",
                f"host = {monitor.host}",
            ]
            if monitor.kind == "tcp":
                lines.append(f"port = {monitor.port}")
    return "\n".join(lines) + "\n"


class Connectivity(Plugin):
    """SmokePing-style connectivity monitor for tickets (`!monitor`, `!graph`)."""

    name = NAME
    config_model = ConnectivityConfig
    migrations = HERE / "migrations"
    locale = HERE / "locale"
    templates = HERE / "templates" if (HERE / "templates").is_dir() else None

    ctx: PluginContext
    config: ConnectivityConfig
    scheduler: MonitorScheduler | None = None
    #: When the tick last swept for closed tickets' monitors (stop_closed), by the plugin's
    #: clock; None: not since this plugin started, so its first tick does.
    swept_at: datetime | None = None

    # --- life -------------------------------------------------------------------------------

    async def start(self, ctx: PluginContext) -> None:
        """Register the actions, jobs, notes, root lines and data handlers; keep the reference
        targets running as configured."""
        self.ctx = ctx
        self.config = ctx.config  # type: ignore[assignment]
        self.swept_at = None
        self.scheduler = MonitorScheduler(
            ctx.connection,
            self.prober,
            ctx.clock,
            self.config.step,
            self.config.pings,
            loss_alert=self.config.loss_alert,
            alert_rounds=self.config.alert_rounds,
            recover_rounds=self.config.recover_rounds,
            on_round=self.on_round,
            start_task=ctx.start_task,
        )
        await self.sync_references()
        for spec in self.actions():
            ctx.add_action(spec)
        ctx.schedule(self.tick, every=TICK, name="rounds")
        ctx.schedule(self.purge, every=PURGE_EVERY, name="retention")
        ctx.on(TicketEvent, self.on_event)
        ctx.add_root_lines(self.root_lines)
        ctx.add_data_handlers(export=self.export, erase=self.erase)
        web.register_web(
            ctx,
            settings=self.config,
            read_rounds=self.read_rounds,
            timezone=ctx.timezone,
            read_latest=self.read_latest,
        )
        pages.register_pages(ctx)

    async def stop(self) -> None:
        """Cancel the rounds in progress."""
        if self.scheduler is not None:
            await self.scheduler.close()

    async def sync_references(self) -> None:
        """Start the configured reference targets that do not run; stop the ones removed."""
        wanted = list(self.config.reference_targets)
        now = self.ctx.clock.now()
        async with self.ctx.connection() as conn:
            running = {monitor.target: monitor for monitor in await store.references(conn)}
            for target in running:
                if target not in wanted:
                    await store.stop(conn, ticket=None, target=target, reason="config", now=now)
            for text in wanted:
                if text in running:
                    continue
                target = parse_target(text)
                try:
                    await store.start(
                        conn,
                        ticket=None,
                        target=str(target),
                        kind=target.kind,
                        host=target.host,
                        port=target.port,
                        by="config",
                        now=now,
                    )
                except store.Refused:  # a second instance started it at the same moment
                    continue

    async def tick(self) -> None:
        """The rounds job: stop the monitors of closed tickets (at the first tick, then at
        most every `sweep_every`), then start the due rounds (returns at once)."""
        assert self.scheduler is not None
        try:
            if self.sweep_due():
                await self.stop_closed()
        finally:  # a failed look at the tickets does not hold the other rounds back
            await self.scheduler.run_due()

    @property
    def sweep_every(self) -> timedelta:
        """How often stop_closed runs: every step (a ticket closed while its event was missed
        gets about one round more), at most SWEEP_AT_MOST apart, at least a tick apart."""
        return max(TICK, min(self.config.step, SWEEP_AT_MOST))

    def sweep_due(self) -> bool:
        """Whether this tick sweeps, recording it as done when it does. The time is this
        instance's own: only the leader ticks, and an instance that leads again sweeps at
        once or within `sweep_every` of its last sweep, so the bound holds across a change of
        leader. A sweep that fails is tried again one interval later, not at every tick."""
        now = self.ctx.clock.now()
        last = self.swept_at
        if last is not None and last <= now < last + self.sweep_every:
            return False
        self.swept_at = now
        return True

    async def stop_closed(self) -> None:
        """Queue the closing summaries still owed (a crash after a stop), then stop the
        monitors of tickets already resolved or rejected, with their summary: the status
        event alone may be missed (a crash after its commit, a failed handler, the plugin
        disabled at the time), and the ticket would be probed for ever."""

        async def closed(view: Any) -> list[tuple[int, str]]:
            numbers = {m.ticket for m in await store.running(view.conn) if m.ticket is not None}
            if not numbers:
                return []
            tickets = await view.tickets(sorted(numbers))
            return [(t.number, t.status.value) for t in tickets if t.status.value in CLOSED]

        try:
            await self.post_owed_summaries()
        finally:  # one summary that cannot be posted does not keep closed tickets probed
            for number, status in await self.ctx.read(closed):
                # As if the missed event came now: the same stop and summary.
                await self.on_event(
                    TicketEvent(number, EntryKind.STATUS, "exobot", {"from": None, "to": status})
                )

    async def purge(self) -> None:
        """The retention job."""
        assert self.scheduler is not None
        await self.scheduler.purge(self.ctx.clock.now(), self.config.retention)

    async def prober(self, target: str, kind: str, host: str, port: int | None) -> Round:
        """One round: resolve and re-check the target now (a name may have moved), then probe
        its first address; a refusal or a name that does not resolve is a lost round."""
        count = self.config.pings
        try:
            parsed = parse_target(target)
            addresses = await resolve(parsed, self.config.allowed_networks)
        except TargetError as error:
            return Round(sent=count, received=0, error=error.message)
        return await probe(
            parsed,
            addresses[0],
            count=count,
            interval=round_interval(self.config.step, count),
            timeout=DEFAULT_TIMEOUT,
        )

    # --- actions ----------------------------------------------------------------------------

    def actions(self) -> list[ActionSpec]:
        """`monitor`, `monitors` and `graph`, declared once for chat, `!help`, web and API."""
        rest = Argument(
            "target",
            ArgKind.TITLE,
            required=False,
            label=N_("the target"),
            description="HOST, HOST tcp:PORT, or `stop [TARGET]`",
        )
        return [
            ActionSpec(
                "monitor",
                N_("!monitor {ref} TARGET | stop [TARGET]"),
                N_(
                    "Probes TARGET (an address, a host name, or HOST tcp:PORT) every few "
                    "minutes for the ticket; stop (prou) ends it."
                ),
                aliases={"ca": ("vigila",), "es": ("vigila",)},
                arguments=(rest,),
                ticket=TicketUse.REQUIRED,
                handler=self.monitor,
                web_label=N_("Watch the connection"),
                web_button=N_("Start watching"),
                api_summary="Start or stop probing a target for a ticket",
                api_description=(
                    'Body `{"target": "10.1.2.3"}` (or `"host tcp:443"`) starts probing; '
                    '`{"target": "stop"}` or `"stop 10.1.2.3"` stops. Refusals answer 400.'
                ),
            ),
            ActionSpec(
                "monitors",
                N_("!monitors [{ref}]"),
                N_("Lists the targets being probed, per ticket."),
                aliases={"ca": ("vigilats",), "es": ("vigilados",)},
                ticket=TicketUse.OPTIONAL,
                handler=self.monitors,
                web_label=N_("Targets being watched"),
                web_button=N_("Show them"),
                api_summary="List the running monitors",
            ),
            ActionSpec(
                "graph",
                N_("!graph {ref} [TARGET] [3h|24h|7d]"),
                N_("Posts the connectivity graph of the ticket's targets into its thread."),
                aliases={"ca": ("grafic", "gràfic"), "es": ("grafico", "gráfico")},
                arguments=(
                    Argument(
                        "target",
                        ArgKind.TITLE,
                        required=False,
                        label=N_("the target and period"),
                        description="optional TARGET and period (3h, 24h or 7d)",
                    ),
                ),
                ticket=TicketUse.REQUIRED,
                handler=self.graph,
                web_label=N_("Connection graph"),
                web_button=N_("Post it in the chat thread"),
                api_summary="Post the connectivity graph into the ticket's thread",
            ),
        ]

    def _ref(self, number: int) -> str:
        return format_reference(self.ctx.settings.prefix, number)

    async def _ticket(self, number: int | None) -> Any:
        if number is None:
            raise ActionRefused("missing_ticket", "?")
        async with self.ctx.reading() as reader:
            ticket = await reader.get_ticket(number)
        if ticket is None:
            reference = self._ref(number)
            raise TicketNotFound("not_found", f"{reference} does not exist", ticket=reference)
        return ticket

    def _target_refusal(self, language: str, error: TargetError, text: str) -> ActionRefused:
        words = TARGET_WORDS.get(error.code)
        message = self.ctx.say(language, words, target=text) if words else error.message
        return ActionRefused(f"target_{error.code}", message)

    async def monitor(self, call: ActionCall) -> Answer:
        """`!monitor suport#N TARGET` starts; `!monitor suport#N stop [TARGET]` stops."""
        ticket = await self._ticket(call.ticket)
        text = str(call.args.get("target") or "").strip()
        words = text.split()
        language = call.language
        if words and words[0].lower() in STOP_WORDS:
            return await self._stop(call, ticket.number, " ".join(words[1:]))
        again = await self._started_again(call)
        if again is not None:
            return again
        if not words:
            raise ActionRefused(
                "missing_target",
                self.ctx.say(
                    language,
                    "Which target? Write !monitor {ref} ADDRESS (or HOST tcp:PORT).",
                    ref=self._ref(ticket.number),
                ),
            )
        if ticket.status.value in CLOSED:
            raise ActionRefused(
                "ticket_closed",
                self.ctx.say(
                    language,
                    "{ref} is closed: reopen it before probing.",
                    ref=self._ref(ticket.number),
                ),
            )
        try:
            target = parse_target(text)
            addresses = await resolve(target, self.config.allowed_networks)
        except TargetError as error:
            raise self._target_refusal(language, error, text) from None
        try:
            async with self.ctx.connection() as conn:
                await store.start(
                    conn,
                    ticket=ticket.number,
                    target=str(target),
                    kind=target.kind,
                    host=target.host,
                    port=target.port,
                    by=call.actor,
                    now=self.ctx.clock.now(),
                    per_ticket=self.config.max_per_ticket,
                    total=self.config.max_total,
                    key=call.key,
                )
        except store.Refused as refused:
            # The same request delivered twice at once: the other delivery started it.
            again = await self._started_again(call)
            if again is not None:
                return again
            limit = refused.limit or 0
            words = self.ctx.translator(language)
            message = {
                "duplicate": words.gettext("{target} is already being probed for {ref}."),
                "ticket_limit": words.ngettext(
                    "{ref} already has {count} target probed, the most allowed.",
                    "{ref} already has {count} targets probed, the most allowed.",
                    limit,
                ),
                "total_limit": words.ngettext(
                    "{count} target is already probed, the most allowed.",
                    "{count} targets are already probed, the most allowed.",
                    limit,
                ),
            }[refused.reason]
            raise ActionRefused(
                refused.reason,
                _fill(message, target=str(target), ref=self._ref(ticket.number), count=limit),
            ) from None
        return self._started_answer(language, ticket.number, target, str(addresses[0]))

    def _started_answer(self, language: str, number: int, target: Any, address: str) -> Answer:
        """The answer to a `!monitor` that started `target` (a name shown with its address)."""
        shown = str(target) if address == target.host else f"{target} ({address})"
        body = _fill(
            self.ctx.translator(language).ngettext(
                "Probing {target} for {ref}: {count} ping every {step}. "
                "Stop it with !monitor {ref} stop.",
                "Probing {target} for {ref}: {count} pings every {step}. "
                "Stop it with !monitor {ref} stop.",
                self.config.pings,
            ),
            target=shown,
            ref=self._ref(number),
            count=self.config.pings,
            step=_duration_text(self.config.step),
        )
        return Answer(body, str(escape(body)))

    async def _started_again(self, call: ActionCall) -> Answer | None:
        """The first answer again when this request (`call.key`) already started a monitor:
        a request delivered again after its commit starts nothing a second time."""
        if call.key is None:
            return None
        async with self.ctx.reading() as reader:
            monitor = await store.started_by(reader.conn, call.key)
        if monitor is None or monitor.ticket is None:
            return None
        target = parse_target(monitor.target)
        address = target.host
        if _literal(address) is None:  # a name: shown with its address, as the first time
            with contextlib.suppress(TargetError):
                address = str((await resolve(target, self.config.allowed_networks))[0])
        return self._started_answer(call.language, monitor.ticket, target, address)

    async def _stop(self, call: ActionCall, number: int, text: str) -> Answer:
        target: str | None = None
        if text:
            try:
                target = str(parse_target(text))
            except TargetError as error:
                raise self._target_refusal(call.language, error, text) from None
        async with self.ctx.connection() as conn:
            # A request delivered again after it stopped its targets answers as it did then.
            stopped = await store.stopped_by(conn, call.key) if call.key is not None else []
            if not stopped:
                stopped = await store.stop(
                    conn,
                    ticket=number,
                    target=target,
                    reason="operator",
                    now=self.ctx.clock.now(),
                    key=call.key,
                )
        if not stopped:
            ref = self._ref(number)
            raise ActionRefused(
                "not_monitored",
                self.ctx.say(call.language, "Nothing is being probed for {ref}.", ref=ref)
                if target is None
                else self.ctx.say(
                    call.language, "{target} is not being probed for {ref}.", ref=ref, target=target
                ),
            )
        body = self.ctx.say(
            call.language,
            "Stopped probing for {ref}: {targets}.",
            ref=self._ref(number),
            targets=", ".join(monitor.target for monitor in stopped),
        )
        return Answer(body, str(escape(body)))

    async def monitors(self, call: ActionCall) -> Answer:
        """`!monitors [suport#N]`: what runs, per ticket (and the reference targets)."""
        async with self.ctx.reading() as reader:
            grouped = await store.by_ticket(reader.conn)
        if call.ticket is not None:
            grouped = {key: value for key, value in grouped.items() if key == call.ticket}
        tickets = {key: value for key, value in grouped.items() if key is not None}
        if not tickets:
            body = (
                self.ctx.say(call.language, "Nothing is being probed for {ref}.", ref=self._ref(call.ticket))
                if call.ticket is not None
                else self.ctx.say(call.language, "No ticket has targets being probed.")
            )
            return Answer(body, str(escape(body)))
        head = self.ctx.say(call.language, "Targets being probed:")
        lines = [
            f"• {self._ref(number)}: {', '.join(m.target for m in monitors)}"
            for number, monitors in sorted(tickets.items())
        ]
        references = grouped.get(None) or []
        tail = []
        if references:
            tail = [
                self.ctx.say(
                    call.language,
                    "Reference targets: {targets}",
                    targets=", ".join(m.target for m in references),
                )
            ]
        html = Markup("<p>{}</p><ul>{}</ul>{}").format(
            head,
            Markup("").join(
                Markup("<li>{}: {}</li>").format(
                    self._ref(number), ", ".join(m.target for m in monitors)
                )
                for number, monitors in sorted(tickets.items())
            ),
            Markup("").join(Markup("<p>{}</p>").format(line) for line in tail),
        )
        return Answer("\n".join([head, *lines, *tail]), str(html))

    async def graph(self, call: ActionCall) -> Answer:
        """`!graph suport#N [TARGET] [3h|24h|7d]`: the PNG into the ticket's thread."""
        ticket = await self._ticket(call.ticket)
        if call.key is not None:  # a request delivered again: posted already, answered so
            async with self.ctx.reading() as reader:
                posted = await store.graph_request(reader.conn, call.key)
            if posted is not None:
                return self._graph_answer(call, *posted)
        words = str(call.args.get("target") or "").split()
        period = DEFAULT_PERIOD
        if words and words[-1].lower() in PERIODS:
            period = words.pop().lower()
        target: str | None = None
        if words:
            try:
                target = str(parse_target(" ".join(words)))
            except TargetError as error:
                raise self._target_refusal(call.language, error, " ".join(words)) from None
        now = self.ctx.clock.now()
        since = now - PERIODS[period]
        series = await self.read_rounds(ticket.number, target, since, language=call.language)
        if not any(not s.reference for s in series):
            raise ActionRefused(
                "not_monitored",
                self.ctx.say(
                    call.language,
                    "{ref} has no probed targets: start one with !monitor {ref} ADDRESS.",
                    ref=self._ref(ticket.number),
                )
                if target is None
                else self.ctx.say(
                    call.language,
                    "{target} is not being probed for {ref}.",
                    ref=self._ref(ticket.number),
                    target=target,
                ),
            )
        labels = self.labels(call.language)
        title = self.ctx.say(
            call.language, "{ref}: connectivity, last {period}", ref=self._ref(ticket.number),
            period=period,
        )
        png = await asyncio.to_thread(
            render_graph,
            series,
            start=since,
            end=now,
            timezone=self.ctx.timezone,
            title=title,
            labels=labels,
        )
        width, height = graph_size(len(series))
        await self.ctx.post_to_thread(
            ticket.number,
            title,
            image=png,
            filename=f"{self.ctx.settings.prefix}-{ticket.number}-{period}.png",
            mimetype="image/png",
            width=width,
            height=height,
            # Queued once per request: delivered again before the record below, it is not
            # queued again.
            key=f"connectivity:graph:{call.key}" if call.key is not None else None,
        )
        if call.key is not None:
            # Recorded after the post (queued in its own transaction): a delivery again after
            # this answer renders nothing.
            async with self.ctx.connection() as conn:
                await store.record_graph_request(
                    conn, call.key, ticket=ticket.number, period=period, now=now
                )
        return self._graph_answer(call, ticket.number, period)

    def _graph_answer(self, call: ActionCall, number: int, period: str) -> Answer:
        """The answer to a `!graph` that posted the graph of ticket `number`. Asked on the
        web, where "its thread" means nothing (the page shows the answer as its notice), it
        says where the graph is on the ticket's page too: its connectivity panel."""
        language = call.language
        ref = self._ref(number)
        if call.channel is not Channel.WEB:
            body = self.ctx.say(
                language, "The graph of {ref} ({period}) is in its thread.", ref=ref, period=period
            )
            return Answer(body, str(escape(body)))
        body = self.ctx.say(
            language,
            "The graph of {ref} ({period}) was posted in the ticket's chat thread; on this "
            "page it is further down, under “{panel}”.",
            ref=ref,
            period=period,
            panel=self.ctx.say(language, "Connectivity"),
        )
        return Answer(body, str(escape(body)))

    def labels(self, language: str) -> GraphLabels:
        """The graph's texts in `language`."""
        say = self.ctx.say
        return GraphLabels(
            rtt_axis=say(language, "RTT (ms)"),
            loss=say(language, "loss"),
            median=say(language, "median"),
            reference=say(language, "reference"),
            no_data=say(language, "No data for this period"),
            all_lost=say(language, "all lost"),
            decimal_separator="." if language == "en" else ",",
        )

    async def read_rounds(
        self, ticket: int | None, target: str | None, since: datetime, *, language: str = ""
    ) -> list[Series]:
        """The series of a ticket's targets (all, or the one named) since `since`, then the
        reference targets' (for the graph and the web panel)."""
        async with self.ctx.reading() as reader:
            return await web.read_series(reader.conn, ticket, target, since)

    async def read_latest(self, ticket: int) -> dict[tuple[str, bool], web.Latest]:
        """The newest round of each of a ticket's targets and of the reference targets,
        whatever its age (for the web panel)."""
        async with self.ctx.reading() as reader:
            return await web.read_latest(reader.conn, ticket)

    # --- notes ------------------------------------------------------------------------------

    async def on_round(self, monitor: Monitor, stored: StoredRound, change: str | None) -> None:
        """The scheduler's hook: one note when a target starts losing packets (compared with
        the reference targets in the same period), one on recovery."""
        if change is None:
            return
        language = self.ctx.settings.language
        loss = _percent(stored.loss)
        # The scheduler records the change after this returns: a crash in between finds it
        # again at the next round, whose note the key keeps from being queued twice.
        async with self.ctx.reading() as reader:
            key = await store.alert_key(reader.conn, monitor.id, change)
        if monitor.reference:
            text = (
                self.ctx.say(
                    language,
                    "⚠️ The reference target {target} is losing packets ({loss} in the last "
                    "round): tickets' targets may be affected by our own network.",
                    target=monitor.target,
                    loss=loss,
                )
                if change == "alert"
                else self.ctx.say(
                    language,
                    "✅ The reference target {target} answers normally again.",
                    target=monitor.target,
                )
            )
            await self.ctx.post_to_room(None, text, key=key)
            return
        assert monitor.ticket is not None
        if change == "recovered":
            text = self.ctx.say(
                language,
                "✅ {target} answers normally again (loss {loss} in the last round).",
                target=monitor.target,
                loss=loss,
            )
        else:
            text = await self.alert_text(monitor, stored, language)
        await self.ctx.post_to_thread(monitor.ticket, text, key=key)

    async def alert_text(self, monitor: Monitor, stored: StoredRound, language: str) -> str:
        """The loss note, saying whether the reference targets were fine in the same period."""
        # One lossy round is enough when alert_rounds is 1: no "for 1 round in a row".
        head = _fill(
            self.ctx.translator(language).ngettext(
                "⚠️ {target} is losing packets: {loss} in the last round.",
                "⚠️ {target} is losing packets: {loss} in the last round, for {count} rounds "
                "in a row.",
                self.config.alert_rounds,
            ),
            target=monitor.target,
            loss=_percent(stored.loss),
            count=self.config.alert_rounds,
        )
        # The period of the lossy rounds (one step of slack for the references' timing).
        since = stored.at - self.config.step * (self.config.alert_rounds + 1)
        lossy: list[str] = []
        fine: list[str] = []
        # The references' figures are the closing summary's (store.summary, one definition).
        async with self.ctx.reading() as reader:
            for reference in await store.references(reader.conn):
                figures = await store.summary(reader.conn, reference.id, since)
                if figures.loss is None:  # no round in the period: nothing to compare with
                    continue
                (lossy if figures.loss > self.config.loss_alert else fine).append(
                    reference.target
                )
        if lossy:
            tail = self.ctx.say(
                language,
                "The reference target {targets} lost packets too in the same period: the "
                "fault is likely ours.",
                targets=", ".join(lossy),
            )
        elif fine:
            tail = self.ctx.say(
                language,
                "The reference target {targets} answered normally in the same period: the "
                "fault is probably on the member's link.",
                targets=", ".join(fine),
            )
        else:
            return head
        return f"{head} {tail}"

    async def on_event(self, event: TicketEvent) -> None:
        """A ticket resolved or rejected: stop its monitors and post the summary; reopened:
        offer the command again (probing does not restart by itself)."""
        if event.kind is not EntryKind.STATUS:
            return
        before, after = str(event.data.get("from")), str(event.data.get("to"))
        language = self.ctx.settings.language
        ref = self._ref(event.ticket)
        if after in CLOSED and self.scheduler is not None:
            # The stop records the summary as owed in its own commit; it is posted from that
            # record, here or (after a crash, or a failed post) by the tick's sweep.
            await self.scheduler.stop_for_ticket(event.ticket, after)
            await self.post_owed_summaries(event.ticket)
        elif before in CLOSED and after not in CLOSED:
            async with self.ctx.connection() as conn:
                had = await store.ticket_monitors(conn, event.ticket)
            targets = list(dict.fromkeys(monitor.target for monitor in had))
            if not targets:
                return
            commands = " ; ".join(f"!monitor {ref} {target}" for target in targets[:MAX_OFFERED])
            text = self.ctx.say(
                language,
                "{ref} is open again; probing does not restart by itself. To probe again: {commands}",
                ref=ref,
                commands=commands,
            )
            await self.ctx.post_to_thread(event.ticket, text)

    async def post_owed_summaries(self, ticket: int | None = None) -> None:
        """Queue the closing summaries that stopped monitors owe (of one ticket, or all), then
        record each as queued. Each is posted with the key the stop recorded, so a summary
        queued before a crash (or by another instance at the same moment) is not queued
        again: a crash at any step ends with one summary. A summary that fails stays owed
        (the next sweep tries again) and does not hold the others back."""
        async with self.ctx.reading() as reader:
            owed = await store.owed_summaries(reader.conn, ticket)
        failed: Exception | None = None
        for key, monitors in owed.items():
            number = monitors[0].ticket
            assert number is not None  # only a ticket's stop owes a summary
            try:
                text = await self.summary_text(number, monitors)
                await self.ctx.post_to_thread(number, text, key=key)
                async with self.ctx.connection() as conn:
                    await store.summary_queued(conn, key)
            except Exception as error:  # owed still: the next sweep posts it
                log.warning(
                    "the closing summary of %s is not posted yet: %s", self._ref(number), error
                )
                failed = failed or error
        if failed is not None:
            raise failed

    async def summary_text(self, number: int, monitors: Sequence[Monitor]) -> str:
        """The closing summary of a ticket's stopped monitors: each one's figures since it
        started (store.summary)."""
        language = self.ctx.settings.language
        ref = self._ref(number)
        lines = [self.ctx.say(language, "Probing stopped: {ref} is closed. Summary:", ref=ref)]
        words = self.ctx.translator(language)
        # A read (no write transaction held) summed by the database; months of rounds are
        # decoded off the event loop (store.summary).
        async with self.ctx.reading() as reader:
            for monitor in monitors:
                count, loss, median = await store.summary(
                    reader.conn, monitor.id, monitor.started_at
                )
                lines.append(
                    _fill(
                        words.ngettext(
                            "• {target}: {count} round, loss {loss}, median {median}",
                            "• {target}: {count} rounds, loss {loss}, median {median}",
                            count,
                        ),
                        target=monitor.target,
                        count=count,
                        loss=_percent(loss) if loss is not None else "—",
                        median=_ms(median),
                    )
                )
        return "\n".join(lines)

    async def root_lines(self, ticket: Any, language: str) -> list[str]:
        """For a new ticket whose first mail names IP addresses: the `!monitor` commands."""
        # Run on the repository's thread: this is asked for every root in chat, edits of a
        # long ticket's root included, so it reads one row rather than the whole history.
        first = await self.ctx.read(
            lambda reader: reader.first_entry(ticket.number, [EntryKind.MAIL_IN.value])
        )
        if first is None:
            return []
        found = addresses_in(first.body or "", self.config.allowed_networks)
        ref = self._ref(ticket.number)
        return [
            self.ctx.say(language, "To probe {address}: !monitor {ref} {address}", address=a, ref=ref)
            for a in found
        ]

    # --- data -------------------------------------------------------------------------------

    async def export(self, subject: DataSubject) -> dict | None:
        """A ticket's monitors and their rounds (nothing is kept about a person's address)."""
        if subject.ticket is None:
            return None
        # One read snapshot; the rounds are decoded off the event loop (store.round_dicts).
        async with self.ctx.reading() as reader:
            monitors = await store.ticket_monitors(reader.conn, subject.ticket)
            result = []
            for monitor in monitors:
                rounds = await store.round_dicts(reader.conn, monitor.id, monitor.started_at)
                result.append(
                    {
                        "target": monitor.target,
                        "started_by": monitor.started_by,
                        "started_at": monitor.started_at.isoformat(),
                        "stopped_at": monitor.stopped_at.isoformat() if monitor.stopped_at else None,
                        "rounds": rounds,
                    }
                )
        return {"monitors": result} if result else None

    async def erase(self, subject: DataSubject) -> int:
        """Delete a ticket's monitors, rounds and alert state; returns the rows deleted."""
        if subject.ticket is None:
            return 0
        async with self.ctx.connection() as conn:
            ids = sa.select(store.monitors.c.id).where(store.monitors.c.ticket == subject.ticket)
            deleted = 0
            for table in (store.rounds, store.alerts):
                result = await conn.execute(sa.delete(table).where(table.c.monitor_id.in_(ids)))
                deleted += int(result.rowcount or 0)
            result = await conn.execute(
                sa.delete(store.monitors).where(store.monitors.c.ticket == subject.ticket)
            )
            return deleted + int(result.rowcount or 0)

    # --- command line -----------------------------------------------------------------------

    def add_cli(self, parser: argparse.ArgumentParser) -> None:
        """`exobot connectivity smokeping-targets [-o FILE]`."""
        # A positional choice, not a nested subparser, so `-c CONFIG` may come anywhere.
        parser.add_argument(
            "command",
            choices=["smokeping-targets"],
            help="smokeping-targets: write the running monitors as a SmokePing Targets include",
        )
        parser.add_argument("-o", "--output", help="file to write (default: standard output)")

    async def run_cli(self, args: argparse.Namespace, ctx: PluginContext) -> int:
        """Run the command."""
        async with ctx.reading() as reader:  # a read: no write lock beside a running exobot
            grouped = await store.by_ticket(reader.conn)
        text = smokeping_targets(grouped, ctx.settings.prefix)
        if args.output:
            Path(args.output).write_text(text, encoding="utf-8")
        else:
            sys.stdout.write(text)
        return 0


def _fill(text: str, **params: object) -> str:
    """A translated text (e.g. the form ngettext chose) filled with its parameters."""
    return i18n.fill(text, params, domain=NAME)


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f} ms"


def _percent(share: float) -> str:
    return f"{share * 100:.0f} %"


def _duration_text(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds % size == 0 and seconds >= size:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"

