"""What a form or an API call asks for, read by the action registry's declarations and
carried out: an intent through the service, or the action's handler.

Pages and the API share this module, so both accept exactly the same actions with the same
checks (one field reader per argument kind, the twins of chat's readers), and both go through
the one TicketService (chat sees every change in its thread).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from exobot.core import intents
from exobot.core.actions import (
    ActionCall,
    ActionRefused,
    ActionRegistry,
    ActionSpec,
    Answer,
    ArgKind,
    Argument,
    Channel,
    TicketUse,
    default_registry,
    run_handler,
)
from exobot.core.addresses import is_user_id
from exobot.core.intents import Intent, Origin
from exobot.core.lifecycle import LifecycleError, parse_status
from exobot.core.model import Actor, Status
from exobot.core.service import AlreadyHandled, KeyReused, Outcome, ServiceError
from exobot.core.text import one_line
from exobot.i18n import CORE_DOMAIN, say
from exobot.web.context import WebContext
from exobot.web.words import UNTAKE_BUTTON, WEB_ERRORS
from exobot.wording import SHORT_TITLE_CHARS, Wording

log = logging.getLogger("exobot.web.actions")

# The most addresses one change of participants may carry (the service says so clearly).
_MAX_ADDRESS_WORDS = 50
_KNOWN_STATUSES = ", ".join(status.value for status in Status)


class ActionError(Exception):
    """A request that cannot be carried out; `code` and `params` name the message
    (`error.<code>` in the catalog, the same wording as chat)."""

    def __init__(self, code: str, **params: object) -> None:
        super().__init__(code)
        self.code = code
        self.params = params


class HandlerFailed(ActionError):
    """An action's handler raised: logged with its stack, answered as an internal error."""

    def __init__(self, action: str) -> None:
        super().__init__("internal")
        self.action = action


def web_actions(registry: ActionRegistry) -> tuple[str, ...]:
    """The actions a form on a ticket's page may ask for: those of the web channel that act
    on a ticket, in declaration order."""
    return tuple(
        spec.name
        for spec in registry.for_channel(Channel.WEB)
        if spec.ticket is not TicketUse.NONE and not spec.is_query
    )


# The core's actions (their "done" notices are in the catalogs); plugins add theirs to a
# registry, see `web_actions`.
ACTIONS = web_actions(default_registry())


def _field(fields: Mapping[str, object], name: str) -> str:
    value = fields.get(name)
    return value.strip() if isinstance(value, str) else ""


# --- one reader per argument kind (the chat readers' twins for form fields and JSON) ---------

Fields = Mapping[str, object]
Args = dict[str, Any]
FieldReader = Callable[[ActionSpec, Argument, Fields, Args], None]


def _checked_text(spec: ActionSpec, argument: Argument, value: str) -> str:
    """The service refuses an empty text of its own intents itself; a handler gets
    `missing_<name>` here instead."""
    if not value.strip() and argument.required and spec.intent is None:
        _missing(spec, argument)
    return value


def _missing(spec: ActionSpec, argument: Argument) -> None:
    """A required argument left empty, named by its declared label (as chat says it)."""
    raise ActionError(
        "missing_argument", command=spec.name, argument=argument.name, label=argument.label
    )


def _read_text(spec: ActionSpec, argument: Argument, fields: Fields, args: Args) -> None:
    """The text as typed, line breaks kept."""
    raw = fields.get(argument.name)
    args[argument.name] = _checked_text(spec, argument, raw if isinstance(raw, str) else "")


def _read_title(spec: ActionSpec, argument: Argument, fields: Fields, args: Args) -> None:
    args[argument.name] = _checked_text(spec, argument, _field(fields, argument.name))


def _read_word(spec: ActionSpec, argument: Argument, fields: Fields, args: Args) -> None:
    word = _field(fields, argument.name)
    if not word:
        if argument.required:
            _missing(spec, argument)
        return
    if len(word.split()) > 1:
        raise ActionError("unexpected_argument", command=spec.name, text=word)
    args[argument.name] = word


def _read_user(spec: ActionSpec, argument: Argument, fields: Fields, args: Args) -> None:
    user = _field(fields, argument.name)
    if not user:
        if argument.required:
            raise ActionError(f"missing_{argument.name}")
        return
    if not is_user_id(user):
        raise ActionError("bad_user", text=user)
    args[argument.name] = user


def _read_queue(spec: ActionSpec, argument: Argument, fields: Fields, args: Args) -> None:
    # Whether the queue exists is the service's to say (with the known ones).
    queue = _field(fields, argument.name)
    if not queue:
        if argument.required:
            raise ActionError(f"missing_{argument.name}")
        return
    args[argument.name] = queue


def _read_status(spec: ActionSpec, argument: Argument, fields: Fields, args: Args) -> None:
    word = _field(fields, argument.name)
    if not word and not argument.required:
        return
    try:
        args[argument.name] = parse_status(word)
    except LifecycleError:
        raise ActionError("bad_status", word=word, known=_KNOWN_STATUSES) from None


def _read_participants(spec: ActionSpec, argument: Argument, fields: Fields, args: Args) -> None:
    # The service checks every address by the one address rule and says which is wrong.
    args["add"] = _addresses(fields.get("add"))
    args["remove"] = _addresses(fields.get("remove"))


_READERS: dict[ArgKind, FieldReader] = {
    ArgKind.TEXT: _read_text,
    ArgKind.TITLE: _read_title,
    ArgKind.WORD: _read_word,
    ArgKind.USER: _read_user,
    ArgKind.QUEUE: _read_queue,
    ArgKind.STATUS: _read_status,
    ArgKind.PARTICIPANTS: _read_participants,
}


def _addresses(value: object) -> tuple[str, ...]:
    """Addresses from a form field (separated by spaces, commas or lines) or a JSON list."""
    if isinstance(value, str):
        words = value.replace(",", " ").replace(";", " ").split()
    elif isinstance(value, list | tuple):
        words = [w.strip() for w in value if isinstance(w, str) and w.strip()]
    else:
        words = []
    return tuple(words[:_MAX_ADDRESS_WORDS + 1])  # one more than allowed: refused as too many


def action_spec(
    action: str, registry: ActionRegistry | None = None, channel: Channel = Channel.WEB
) -> ActionSpec:
    """The action a form or an API route names (its canonical name), when `channel` may ask
    for it on a ticket; ActionError `unknown_action` otherwise."""
    spec = (registry or default_registry()).find(action)
    if (
        spec is None
        or spec.name != action
        or channel not in spec.channels
        or spec.ticket is TicketUse.NONE
        or spec.is_query
    ):
        raise ActionError("unknown_action", action=action)
    return spec


def read_fields(spec: ActionSpec, fields: Mapping[str, object]) -> dict[str, Any]:
    """The action's arguments read from submitted fields (a form or a JSON body)."""
    args: dict[str, Any] = {}
    for argument in spec.arguments:
        reader = _READERS.get(argument.kind)
        if reader is None:  # a kind only chat can write (`!list` filters, `!new`, ...)
            raise ActionError("unknown_action", action=spec.name)
        reader(spec, argument, fields, args)
    return args


def intent_for(
    action: str,
    ticket: int,
    fields: Mapping[str, object],
    registry: ActionRegistry | None = None,
) -> Intent:
    """The intent of `action` on `ticket` with the submitted fields, or ActionError (an action
    done by a handler has no intent of its own: see `run_action`)."""
    spec = action_spec(action, registry)
    if spec.intent is None:
        raise ActionError("unknown_action", action=action)
    return spec.intent(ticket, read_fields(spec, fields))


def open_intent(fields: Mapping[str, object]) -> intents.OpenTicket:
    """A ticket opened on a member's behalf (a phone call): requestor, title, first text."""
    requestor = _field(fields, "requestor")
    title = _field(fields, "title")
    if not requestor:
        raise ActionError("missing_requestor")
    if not title:
        raise ActionError("missing_title")
    raw = fields.get("text")
    queue = _field(fields, "queue") or None
    return intents.OpenTicket(requestor, title, raw if isinstance(raw, str) else "", queue)


def error_message(wording: Wording, code: str, params: Mapping[str, object]) -> str:
    """A refusal in the wording's language: the web's own sentence where chat's would name a
    command (`exobot.web.words.WEB_ERRORS`), else the same sentence as chat."""
    sentence = WEB_ERRORS.get(code)
    if sentence is not None:
        untake = say(wording.language, UNTAKE_BUTTON)
        values = {"untake": untake, **params}
        if code == "missing_argument":
            values["argument"] = _argument_words(wording, params)
        if "text" in values:
            values["text"] = one_line(str(values["text"]), SHORT_TITLE_CHARS)
        return say(wording.language, sentence, **values)
    return wording.error(code, params).body


def _argument_words(wording: Wording, params: Mapping[str, object]) -> str:
    """A missing argument as its form names it: its declared label (a message id of the
    action's domain), else its name."""
    label = str(params.get("label") or "")
    if not label:
        return str(params.get("argument") or "?")
    spec = wording.registry.find(str(params.get("command") or ""))
    domain = spec.domain if spec is not None else CORE_DOMAIN
    return say(wording.language, label, domain=domain)


async def perform(
    context: WebContext,
    user_id: str,
    intent: Intent,
    key: str | None,
    request_hash: str | None = None,
) -> Outcome | None:
    """Apply `intent` as operator `user_id`: the service's outcome, or None when `key` was
    already handled (a form sent twice); ServiceError when the service refuses, KeyReused
    when `key` was handled for a request of another `request_hash` (an API request's
    fingerprint; None for the forms)."""
    try:
        return await context.service.apply(
            Actor.operator(user_id), intent, Origin(key, None, request_hash)
        )
    except AlreadyHandled:
        log.info("%s was already handled", key)
        return None


async def run_action(
    context: WebContext,
    spec: ActionSpec,
    ticket: int,
    fields: Mapping[str, object],
    user_id: str,
    key: str | None,
    *,
    language: str,
    channel: Channel,
    request_hash: str | None = None,
) -> Outcome | Answer | None:
    """Carry out `spec` on `ticket` as operator `user_id`: an intent (its own, or the one its
    handler gives back) goes through the service (the outcome, or None when `key` was already
    handled, also before a handler runs); a handler's Answer is returned to be shown.
    ActionError, ServiceError as the service refuses; KeyReused (before anything runs) when
    `key` was handled for a request of another `request_hash` (the API's fingerprint of the
    request); HandlerFailed when the handler raised (logged with its stack)."""
    args = read_fields(spec, fields)
    if spec.intent is not None:
        return await perform(context, user_id, spec.intent(ticket, args), key, request_hash)
    # A handler writes in its own transactions, which `key` does not guard: a form or a
    # request sent again once it was carried out does not run the handler again. One sent
    # again after the handler's commit and before the key's (a crash, a database error)
    # runs it again with the same `call.key`, which a handler whose writes must happen once
    # records with them (ActionCall).
    if key is not None:
        handled = await context.repository.read(lambda view: view.handled_request(key))
        if handled is not None:
            if KeyReused.differ(request_hash, handled[1]):
                raise KeyReused(key)
            log.info("%s was already handled", key)
            return None
    call = ActionCall(spec.name, user_id, ticket, args, language, channel, key=key)
    try:
        result = await run_handler(spec, call)
    except (ActionRefused, ServiceError):
        raise  # a refusal each channel words (a plugin's, or the service's): not a failure
    except Exception:
        log.exception("the handler of %s failed for %s on %s", spec.name, user_id, ticket)
        raise HandlerFailed(spec.name) from None
    if isinstance(result, Answer):
        if key is not None:  # carried out: recorded, as an intent's key is with its change
            await context.repository.run(lambda uow: uow.claim(key, request_hash=request_hash))
        return result
    return await perform(context, user_id, result, key, request_hash)


__all__ = [
    "ACTIONS",
    "ActionError",
    "HandlerFailed",
    "ServiceError",
    "action_spec",
    "error_message",
    "intent_for",
    "open_intent",
    "perform",
    "read_fields",
    "run_action",
    "web_actions",
]
