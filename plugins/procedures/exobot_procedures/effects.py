"""Applying a procedure event's effects through the ticket service, exactly once.

An event records the effects still to apply (`move`: the ticket to the procedures queue;
`notify`: the requestor's short mail) in the same transaction as the procedure's change.
They are then applied as intents with the Origin keys `procedures:{event.id}:move` and
`procedures:{event.id}:notify` (the service records a key with its change, so a retry after a
crash never moves or mails twice), and the event is settled. A job settles what a crash left.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from exobot.core import intents
from exobot.core.model import Actor, ActorKind
from exobot.core.service import AlreadyHandled, ServiceError, TicketNotFound
from exobot_procedures import store
from exobot_procedures.store import Procedure, ProcedureEvent

if TYPE_CHECKING:
    from exobot_procedures.plugin import Procedures

log = logging.getLogger("exobot.plugins.procedures")

#: An event younger than this is left to the request that wrote it (it applies its effects
#: at once); the job only takes what a crash or a failure left behind.
SETTLE_GRACE = timedelta(seconds=20)
SETTLE_EVERY = timedelta(seconds=30)
#: The most events one pass of the job reads and applies (a backlog takes several passes).
SETTLE_BATCH = 100


def origin_key(event: ProcedureEvent, effect: str) -> str:
    """The idempotency key of one effect of one event."""
    return f"procedures:{event.id}:{effect}"


def actor_of(event: ProcedureEvent) -> Actor:
    """Who applies an event's effects: the operator who made the change."""
    return Actor(ActorKind.OPERATOR, event.actor)


def notice_text(plugin: Procedures, procedure: Procedure, kind: str, language: str) -> str:
    """The requestor's short mail for an event (`created`, `done`, `cancelled`): what was
    asked and its state, from the plugin's templates in the ticket's language, never data."""
    from exobot_procedures.service import type_name

    return plugin.render_mail(
        kind,
        language,
        ref=procedure.ref,
        type_name=type_name(plugin, procedure.type, language),
        service=procedure.service or "",
        ticket=plugin.reference(procedure.ticket),
    )


async def _intent(plugin: Procedures, procedure: Procedure, event: ProcedureEvent, effect: str) -> Any:
    ticket = procedure.ticket
    if effect == "move":
        return intents.Move(ticket, plugin.config.queue)
    if effect == "notify":
        async with plugin.ctx.reading() as reader:
            found = await reader.get_ticket(ticket)
        if found is None:
            raise TicketNotFound("not_found", f"no ticket {ticket}")
        text = notice_text(plugin, procedure, event.kind, found.language)
        # Written by the plugin's template, not by the operator it is applied as: automatic
        # mail (Auto-Submitted), which auto-responders do not answer.
        return intents.Notify(ticket, text, automatic=True)
    raise ValueError(f"unknown effect {effect!r}")


async def apply_effects(plugin: Procedures, event: ProcedureEvent) -> bool:
    """Apply an event's effects, each at most once, then settle it; True when settled. The
    same procedure's earlier events still unsettled (a crash after their commit) are applied
    first, in order, so the requestor never reads "pending" after "done"; while one of them
    cannot be, this one waits too. A refusal that will not change (the ticket purged, the
    queue already right, an unusable address) counts as done and is logged; anything else
    leaves the event for the job."""
    if event.settled_at is not None:
        return True
    async with plugin.ctx.connection() as conn:
        procedure = await store.get(conn, event.procedure_id)
        # A procedure has a few events (created, then done or cancelled): a bounded read.
        history = await store.history(conn, event.procedure_id)
    if procedure is None:
        return False
    earlier = [e for e in history if e.id < event.id and e.settled_at is None]
    for previous in earlier:
        if not await _apply_one(plugin, procedure, previous):
            return False
    return await _apply_one(plugin, procedure, event)


async def _apply_one(plugin: Procedures, procedure: Procedure, event: ProcedureEvent) -> bool:
    """Apply one event's effects (each at most once, by its origin key), then settle it."""
    for effect in event.effects:
        try:
            intent = await _intent(plugin, procedure, event, effect)
            await plugin.ctx.service.apply(
                actor_of(event), intent, intents.Origin(key=origin_key(event, effect))
            )
        except AlreadyHandled:
            pass  # applied before a crash, or by the job meanwhile
        except ServiceError as error:
            if error.code != "same_queue":
                log.warning(
                    "%s: the %s effect of its %s event was refused and is dropped: %s",
                    procedure.ref, effect, event.kind, error,
                )
        except Exception:
            log.exception(
                "%s: the %s effect of its %s event failed; it will be retried",
                procedure.ref, effect, event.kind,
            )
            return False
    async with plugin.ctx.connection() as conn:
        await store.settle(conn, event.id, plugin.ctx.clock.now())
    return True


async def settle_leftovers(plugin: Procedures, after: int = 0) -> tuple[int, int]:
    """The job, one bounded pass: apply the effects a crash or a failure left unapplied, for
    at most SETTLE_BATCH events, oldest first from the event after `after`; returns how many
    it settled and where the next pass starts."""
    now = plugin.ctx.clock.now()
    async with plugin.ctx.connection() as conn:
        batch = await store.unsettled(
            conn, before=now - SETTLE_GRACE, after=after, limit=SETTLE_BATCH
        )
    settled = 0
    for event in batch:
        settled += await apply_effects(plugin, event)
    # A full batch: the next pass reads on after it, so events that keep failing do not
    # hold back the ones behind them; a short one reached the end: from the oldest again.
    return settled, batch[-1].id if len(batch) == SETTLE_BATCH else 0
