"""The web's words chosen at run time (a state, a kind, what was just done): tables of
message ids, translated where they are shown."""

from __future__ import annotations

from exobot.core.languages import N_

#: A received mail's state, by its stored value ("other": any state added later).
INBOUND_STATES: dict[str, str] = {
    "received": N_("waiting to be processed"),
    "quarantined": N_("quarantined"),
    "done": N_("processed"),
    "duplicate": N_("duplicate"),
    "dropped": N_("dropped by the rules"),
    "ignored": N_("ignored"),
    "discarded": N_("discarded"),
    "other": N_("processed"),
}

#: An outbox item's kind and state.
OUTBOX_WORDS: dict[str, str] = {
    "mail": N_("mail"),
    "chat": N_("chat"),
    "pending": N_("pending"),
    "sent": N_("sent"),
    "failed": N_("failed"),
}

#: What a ticket's action did, by action name (the notice after the redirect).
DONE: dict[str, str] = {
    "take": N_("The ticket is yours now."),
    "give": N_("Ticket given."),
    "untake": N_("The ticket has no owner now."),
    "reply": N_("Reply saved: it will be emailed right away."),
    "comment": N_("Comment saved."),
    "title": N_("Title changed."),
    "move": N_("Ticket moved to another queue."),
    "status": N_("Status changed."),
    "accept": N_("Mail accepted as correspondence."),
    "cc": N_("Participants changed."),
    # "Reply and …" in one step: the reply and then the status change.
    "reply_resolved": N_("Reply saved and the ticket resolved."),
    "reply_stalled": N_("Reply saved and the ticket stalled."),
}

#: What an action without a notice of its own did (a plugin's form), by its word.
ACTION_DONE = N_("Done: {action}.")

#: The orders of the ticket list.
LIST_ORDERS: dict[str, str] = {
    "newest": N_("Newest first"),
    "oldest": N_("Oldest first"),
    "updated": N_("Recently changed first"),
}

#: What a retry or discard of a quarantined mail did.
QUARANTINE_DONE: dict[str, str] = {
    "retried": N_("Mail {id} was processed again: {state}."),
    "still": N_("Mail {id} is still quarantined: see its error in the table."),
    "discarded": N_("Mail {id} was discarded (kept in the database)."),
    "missing": N_("There is no quarantined mail with number {id}."),
    "failed": N_("Mail {id} could not be processed again: see the log."),
}

#: Refusals the web words its own way (chat's would name a command), by error code.
WEB_ERRORS: dict[str, str] = {
    "back_to_new": N_("{ticket} cannot go back to new. To leave it without an owner: “{untake}”."),
    "missing_text": N_("The text is missing: write it in the box."),
    "missing_argument": N_("Fill in {argument}."),
    "unexpected_argument": N_("“{text}” must be one word, without spaces."),
}

#: The label of the "leave it without owner" button, which a refusal names.
UNTAKE_BUTTON = N_("Leave it without owner")

#: A form whose CSRF token did not match.
CSRF_REFUSED = N_(
    "This form expired or did not come from this site. Reload the page and try again."
)

#: Error pages by HTTP status.
HTTP_ERRORS: dict[int, str] = {
    404: N_("This page does not exist."),
    403: N_("Only the support team can do this."),
}
