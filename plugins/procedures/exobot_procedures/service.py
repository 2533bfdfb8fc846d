"""Creating and finishing procedures: the one path chat, the web and the API all take.

Each checks what it is given (refusing in the caller's language with `ProcedureRefused`),
writes the procedure's change, its event and its effect on the member directory in one
transaction, then applies the event's effects (the ticket's move to the procedures queue,
the requestor's notice) through the ticket service, exactly once (effects.py).

A request with an idempotency key (`key`: a chat command's `ActionCall.key`) records it on
the event it writes, in the same transaction; the same request delivered again (after a
crash, or a database error, between that commit and the channel's answer) finds it and gets
the procedure as it was recorded, without a second procedure, finish or mail. An API request
also gives its fingerprint (`request_hash`), recorded with the key: the key found with another
fingerprint was sent with a different request, which is refused with the core's KeyReused (the
API answers 422 `key_reused`), nothing done. A key without one on either side (chat's, the
forms', or one recorded before migration procedures_0003) is a retry, as before.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import sqlalchemy as sa

from exobot.core.actions import ActionRefused
from exobot.core.languages import N_
from exobot.core.service import KeyReused
from exobot_procedures import store
from exobot_procedures.config import ProcedureType
from exobot_procedures.effects import apply_effects
from exobot_procedures.procedures import find_type, is_member_number, sensitive_in, type_words
from exobot_procedures.store import MAX_NOTE, Procedure, ProcedureEvent

if TYPE_CHECKING:
    from exobot_procedures.plugin import Procedures

__all__ = [
    "ProcedureRefused",
    "create_procedure",
    "finish_procedure",
    "type_name",
    "state_name",
]

#: The states as people read them (message ids in the plugin's domain).
STATE_WORDS = {"pending": N_("pending"), "done": N_("done"), "cancelled": N_("cancelled")}

SENSITIVE = N_(
    "The note holds {what}: keep it in the management tool and write only a reference here "
    "(for example “data in the management tool, member 1234”)."
)
SENSITIVE_KINDS = {
    "iban": N_("an IBAN"),
    "card": N_("a card number"),
    "identity": N_("an identity number (DNI/NIE)"),
}


class ProcedureRefused(ActionRefused):
    """A procedure request refused: `code` names why, `message` says it in the caller's
    language (an ActionRefused, so chat and the generated API answer it as such)."""


def type_name(plugin: Procedures, type: str, language: str) -> str:
    """A type's shown name in `language` (else exobot's language, English, any), or the
    type's own name when the configuration no longer has it."""
    kind = plugin.config.types.get(type)
    if kind is None:
        return type
    names = kind.names
    for wanted in (language, plugin.ctx.settings.language, "en"):
        if names.get(wanted):
            return names[wanted]
    return next((name for name in names.values() if name), type)


def state_name(plugin: Procedures, state: str, language: str) -> str:
    """A state (`pending`, `done`, `cancelled`) as people read it."""
    msgid = STATE_WORDS.get(state)
    return plugin.ctx.say(language, msgid) if msgid else state


def refuse_sensitive(plugin: Procedures, text: str, language: str) -> None:
    """Refuse a note holding an IBAN, a card number or an identity number."""
    found = sensitive_in(text)
    if found:
        what = ", ".join(plugin.ctx.say(language, SENSITIVE_KINDS[kind]) for kind in found)
        raise ProcedureRefused("sensitive_note", plugin.ctx.say(language, SENSITIVE, what=what))


def _check_note(plugin: Procedures, note: str, language: str) -> str:
    note = (note or "").strip()
    if len(note) > MAX_NOTE:
        raise ProcedureRefused(
            "note_too_long",
            plugin.ctx.say(language, "The note is too long: at most {limit} characters.",
                 limit=MAX_NOTE),
        )
    refuse_sensitive(plugin, note, language)
    return note


def unknown_type(plugin: Procedures, word: str, language: str) -> ProcedureRefused:
    """The refusal of a word that names no type, listing the known ones."""
    return ProcedureRefused(
        "unknown_type",
        plugin.ctx.say(language,
            "Unknown procedure type “{word}”. Known types: {known}.",
            word=word,
            known=", ".join(type_words(plugin.config, language)),
        ),
    )


def _kind(plugin: Procedures, type: str) -> ProcedureType:
    return plugin.config.types.get(type) or ProcedureType(words={"en": [type]}, names={"en": type})


async def create_procedure(
    plugin: Procedures,
    *,
    ticket: int,
    type: str,
    member: str | None,
    service: str | None,
    note: str,
    actor: str,
    language: str,
    key: str | None = None,
    request_hash: str | None = None,
) -> Procedure:
    """Record a new pending procedure on a ticket, move the ticket to the procedures queue if
    it is elsewhere and mail the requestor (when the type says so). `type` is a type's name or
    any of its words; `member` None is allowed for a join (the requestor's address is used).
    ProcedureRefused with a clear message otherwise. With `key`, the request's idempotency
    key, a request that already created its procedure gets that one back (its effects
    applied if a crash left them), and nothing is recorded or mailed again. `request_hash`,
    the request's fingerprint (the API's), is recorded with `key`; KeyReused when `key` was
    recorded with another one (a different request: nothing is done)."""
    if key is None:
        request_hash = None  # a fingerprint only qualifies a key
    else:
        again = await _again(plugin, key, kinds=("created",), request_hash=request_hash)
        if again is not None:
            return again
    name = find_type(plugin.config, type or "")
    if name is None:
        raise unknown_type(plugin, (type or "").strip()[:40], language)
    kind = plugin.config.types[name]
    shown = type_name(plugin, name, language)
    member = (member or "").strip() or None
    if member is not None and not is_member_number(plugin.config, member):
        raise ProcedureRefused(
            "bad_member",
            plugin.ctx.say(language, "“{word}” is not a member number.", word=member[:40]),
        )
    if member is None and kind.directory != "join":
        raise ProcedureRefused(
            "missing_member",
            plugin.ctx.say(language, "A {type} needs the member number.", type=shown),
        )
    service = (service or "").strip() or None
    if kind.service and service is None:
        raise ProcedureRefused(
            "missing_service",
            plugin.ctx.say(language, "A {type} needs the service reference (SERVICE).", type=shown),
        )
    if service is not None:
        if len(service) > 200:
            raise ProcedureRefused(
                "service_too_long",
                plugin.ctx.say(language, "The service reference is too long: at most {limit} "
                     "characters.", limit=200),
            )
        refuse_sensitive(plugin, service, language)
    note = _check_note(plugin, note, language)
    async with plugin.ctx.reading() as reader:
        found = await reader.get_ticket(ticket)
    if found is None:
        raise ProcedureRefused(
            "not_found",
            plugin.ctx.say(language, "{ref} does not exist.", ref=plugin.reference(ticket)),
        )
    if member is None:
        member = found.requestor.lower()
    effects = []
    if found.queue != plugin.config.queue:
        effects.append("move")
    if kind.notify:
        effects.append("notify")
    try:
        async with plugin.ctx.connection() as conn:
            procedure, event = await store.create(
                conn,
                type=name,
                member=member,
                service=service,
                ticket=ticket,
                actor=actor,
                note=note,
                now=plugin.ctx.clock.now(),
                effects=effects,
                request_key=key,
                request_hash=request_hash,
            )
    except sa.exc.IntegrityError:
        # The same request, delivered again, created it meanwhile (rolled back here); or
        # another request with the same key did, which is refused (KeyReused).
        again = (
            await _again(plugin, key, kinds=("created",), request_hash=request_hash)
            if key is not None
            else None
        )
        if again is None:
            raise
        return again
    await apply_effects(plugin, event)
    return procedure


async def _again(
    plugin: Procedures,
    key: str,
    *,
    kinds: tuple[str, ...],
    procedure_id: int | None = None,
    request_hash: str | None = None,
) -> Procedure | None:
    """The procedure as it stands when the request with idempotency key `key` already wrote
    its event (of one of `kinds`, on `procedure_id` when given), its effects applied if a
    crash left them; None when it did not (or the key names another request's event, and
    no fingerprint tells it apart). KeyReused when the event was written with another
    fingerprint than `request_hash` (both known): the key came with a different request."""
    async with plugin.ctx.reading() as reader:
        event: ProcedureEvent | None = await store.event_by_key(reader.conn, key)
        if event is None:
            return None
        # Checked before the kind and procedure: the fingerprint covers the route (done or
        # cancel, which procedure), so any other request is refused, not acted on.
        if KeyReused.differ(request_hash, event.request_hash):
            raise KeyReused(key)
        if event.kind not in kinds:
            return None
        if procedure_id is not None and event.procedure_id != procedure_id:
            return None
        procedure = await store.get(reader.conn, event.procedure_id)
    if procedure is None:
        return None
    await apply_effects(plugin, event)  # at most once each (effects.py); nothing if settled
    return procedure


async def get_or_refuse(plugin: Procedures, procedure_id: int, language: str) -> Procedure:
    """The procedure `P-id`, or the refusal saying there is none."""
    async with plugin.ctx.reading() as reader:
        procedure = await store.get(reader.conn, procedure_id)
    if procedure is None:
        raise ProcedureRefused(
            "unknown_procedure",
            plugin.ctx.say(language, "There is no procedure P-{number}.", number=procedure_id),
        )
    return procedure


async def refuse_taken_number(
    plugin: Procedures, conn: Any, number: str, address: str | None, language: str
) -> None:
    """Refuse a join done with a number an active member already has under other addresses:
    the directory would keep that member, and the procedure and the ticket would point at
    them. The same member's join done again (its address) is fine; so is an unknown address
    (the ticket purged), which cannot be told apart. Never names the other member's address."""
    current = await store.get_member(conn, number)
    if current is None or not current.active or not current.addresses:
        return
    if address is None or address in current.addresses:
        return
    raise ProcedureRefused(
        "number_taken",
        plugin.ctx.say(language,
            "Number {number} already belongs to another active member: give the new "
            "member's own number.",
            number=number,
        ),
    )


def not_pending(plugin: Procedures, procedure: Procedure, language: str) -> ProcedureRefused:
    """The refusal of finishing a procedure that is no longer pending."""
    return ProcedureRefused(
        "not_pending",
        plugin.ctx.say(language,
            "{ref} is not pending: it was {state} by {who}.",
            ref=procedure.ref,
            state=state_name(plugin, procedure.state, language),
            who=procedure.processed_by or "?",
        ),
    )


async def finish_procedure(
    plugin: Procedures,
    procedure_id: int,
    *,
    state: Literal["done", "cancelled"],
    note: str,
    actor: str,
    language: str,
    member_number: str | None = None,
    key: str | None = None,
    request_hash: str | None = None,
) -> Procedure:
    """Mark a pending procedure done or cancelled (a cancellation needs its reason as the
    note), apply its effect on the member directory when done (a join adds the member and
    links the ticket, a leave ends the membership) and mail the requestor when the type says
    so; the ticket's status never changes. A join of a requestor known only by address needs
    `member_number`. ProcedureRefused with a clear message otherwise. With `key`, the
    request's idempotency key, a request that already finished the procedure gets it back as
    it stands (not the "is not pending" refusal), and nothing is recorded or mailed again.
    `request_hash`, the request's fingerprint (the API's), is recorded with `key`; KeyReused
    when `key` was recorded with another one (a different request: nothing is done)."""
    if state not in ("done", "cancelled"):
        raise ValueError(f"a procedure finishes done or cancelled, not {state!r}")
    if key is None:
        request_hash = None  # a fingerprint only qualifies a key
    else:
        again = await _again(
            plugin, key, kinds=(state,), procedure_id=procedure_id, request_hash=request_hash
        )
        if again is not None:
            return again
    procedure = await get_or_refuse(plugin, procedure_id, language)
    if procedure.state != "pending":
        raise not_pending(plugin, procedure, language)
    note = _check_note(plugin, note, language)
    if state == "cancelled" and not note:
        raise ProcedureRefused(
            "missing_reason",
            plugin.ctx.say(language, "Say why it is cancelled: !cancel {ref} reason…",
                 ref=procedure.ref),
        )
    kind = _kind(plugin, procedure.type)
    number: str | None = None
    address: str | None = None
    member_number = (member_number or "").strip() or None
    if state == "done" and kind.directory == "join":
        if member_number is not None and not is_member_number(plugin.config, member_number):
            raise ProcedureRefused(
                "bad_member",
                plugin.ctx.say(language, "“{word}” is not a member number.", word=member_number[:40]),
            )
        known = procedure.member if is_member_number(plugin.config, procedure.member) else None
        number = member_number or known
        if number is None:
            raise ProcedureRefused(
                "missing_number",
                plugin.ctx.say(language,
                    "Give the new member's number: !done {ref} NUMBER [note].",
                    ref=procedure.ref,
                ),
            )
        if "@" in procedure.member:
            address = procedure.member
        else:
            async with plugin.ctx.reading() as reader:
                ticket = await reader.get_ticket(procedure.ticket)
            address = ticket.requestor.lower() if ticket is not None else None
    effects = ["notify"] if kind.notify else []
    now = plugin.ctx.clock.now()
    try:
        async with plugin.ctx.connection() as conn:
            if state == "done" and kind.directory == "join" and number is not None:
                # Before anything is written, in the transaction that adds the member.
                await refuse_taken_number(plugin, conn, number, address, language)
            finished, event = await store.finish(
                conn,
                procedure.id,
                state=state,
                actor=actor,
                note=note,
                now=now,
                effects=effects,
                member=number if number is not None and number != procedure.member else None,
                request_key=key,
                request_hash=request_hash,
            )
            if state == "done" and kind.directory == "join" and number is not None:
                await store.add_member(conn, number, address, actor=actor, now=now,
                                       detail=procedure.ref)
                await store.link_ticket(conn, procedure.ticket, number, actor=actor, now=now,
                                        detail=plugin.reference(procedure.ticket))
            elif (
                state == "done"
                and kind.directory == "leave"
                and is_member_number(plugin.config, procedure.member)
            ):
                await store.end_member(conn, procedure.member, actor=actor, now=now,
                                       detail=procedure.ref)
    except (store.StateError, sa.exc.IntegrityError) as error:
        # Rolled back. No longer pending, or the key taken: maybe by this same request,
        # delivered again and finishing it meanwhile (its answer, not a refusal), or by
        # another request with the same key (KeyReused).
        again = (
            await _again(
                plugin, key, kinds=(state,), procedure_id=procedure.id,
                request_hash=request_hash,
            )
            if key is not None
            else None
        )
        if again is not None:
            return again
        if isinstance(error, store.StateError):
            raise not_pending(plugin, error.procedure, language) from None
        raise
    await apply_effects(plugin, event)
    return finished
