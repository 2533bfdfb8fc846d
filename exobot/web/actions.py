"""What a form or an API call asks for, turned into the service's intents.

Pages and the API share this module, so both accept exactly the same actions with the same
checks, and both go through the one TicketService (chat sees every change in its thread).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from exobot.core import intents
from exobot.core.commands import is_user_id
from exobot.core.intents import Intent, Origin
from exobot.core.lifecycle import LifecycleError, parse_status
from exobot.core.model import Actor, Status
from exobot.core.service import AlreadyHandled, Outcome, ServiceError
from exobot.i18n import say
from exobot.web.context import WebContext
from exobot.web.words import UNTAKE_BUTTON, WEB_ERRORS
from exobot.wording import Wording

log = logging.getLogger("exobot.web.actions")

ACTIONS = (
    "take",
    "give",
    "untake",
    "reply",
    "comment",
    "title",
    "move",
    "status",
    "accept",
    "cc",
)
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


def _field(fields: Mapping[str, object], name: str) -> str:
    value = fields.get(name)
    return value.strip() if isinstance(value, str) else ""


def intent_for(action: str, ticket: int, fields: Mapping[str, object]) -> Intent:
    """The intent of `action` on `ticket` with the submitted fields, or ActionError."""
    if action == "take":
        return intents.Take(ticket)
    if action == "untake":
        return intents.Untake(ticket)
    if action == "accept":
        return intents.AcceptUnverified(ticket)
    if action == "cc":
        # The service checks every address by the one address rule and says which is wrong.
        return intents.ChangeParticipants(
            ticket, _addresses(fields.get("add")), _addresses(fields.get("remove"))
        )
    if action == "give":
        owner = _field(fields, "owner")
        if not owner:
            raise ActionError("missing_owner")
        if not is_user_id(owner):
            raise ActionError("bad_user", text=owner)
        return intents.Give(ticket, owner)
    if action in ("reply", "comment"):
        # The text as typed (line breaks kept); the service refuses an empty one.
        raw = fields.get("text")
        text = raw if isinstance(raw, str) else ""
        return (intents.Reply if action == "reply" else intents.Comment)(ticket, text)
    if action == "title":
        return intents.SetTitle(ticket, _field(fields, "title"))
    if action == "move":
        queue = _field(fields, "queue")
        if not queue:
            raise ActionError("missing_queue")
        return intents.Move(ticket, queue)
    if action == "status":
        word = _field(fields, "status")
        try:
            return intents.SetStatus(ticket, parse_status(word))
        except LifecycleError:
            raise ActionError("bad_status", word=word, known=_KNOWN_STATUSES) from None
    raise ActionError("unknown_action", action=action)


def _addresses(value: object) -> tuple[str, ...]:
    """Addresses from a form field (separated by spaces, commas or lines) or a JSON list."""
    if isinstance(value, str):
        words = value.replace(",", " ").replace(";", " ").split()
    elif isinstance(value, list | tuple):
        words = [w.strip() for w in value if isinstance(w, str) and w.strip()]
    else:
        words = []
    return tuple(words[:_MAX_ADDRESS_WORDS + 1])  # one more than allowed: refused as too many


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
        return say(wording.language, sentence, **{"untake": untake, **params})
    return wording.error(code, params).body


async def perform(
    context: WebContext, user_id: str, intent: Intent, key: str | None
) -> Outcome | None:
    """Apply `intent` as operator `user_id`: the service's outcome, or None when `key` was
    already handled (a form sent twice); ServiceError when the service refuses."""
    try:
        return await context.service.apply(Actor.operator(user_id), intent, Origin(key, None))
    except AlreadyHandled:
        log.info("%s was already handled", key)
        return None


__all__ = [
    "ACTIONS",
    "ActionError",
    "ServiceError",
    "error_message",
    "intent_for",
    "open_intent",
    "perform",
]
