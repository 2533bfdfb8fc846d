"""The status lifecycle as a table: what each event does to each status."""

from __future__ import annotations

from enum import StrEnum

from exobot.core.model import Status


class LifecycleError(ValueError):
    """A status change the lifecycle does not allow."""


class Happening(StrEnum):
    """Things that happen to a ticket and may move its status."""

    TAKE = "take"
    GIVE = "give"
    REPLY = "reply"
    UNTAKE = "untake"
    COMMENT = "comment"
    TITLE = "title"
    MOVE = "move"
    MEMBER_MAIL = "member_mail"
    AUTOMATIC_MAIL = "automatic_mail"
    UNVERIFIED_MAIL = "unverified_mail"
    BOUNCE = "bounce"


_ALL = tuple(Status)
_OPENS_NEW = {Status.NEW: Status.OPEN}
_REOPENS = {s: Status.OPEN for s in (Status.STALLED, Status.RESOLVED, Status.REJECTED)}

# event -> {status before: status after}; statuses not listed stay as they are.
TRANSITIONS: dict[Happening, dict[Status, Status]] = {
    Happening.TAKE: _OPENS_NEW,
    Happening.GIVE: _OPENS_NEW,
    Happening.REPLY: _OPENS_NEW,
    Happening.UNTAKE: {},
    Happening.COMMENT: {},
    Happening.TITLE: {},
    Happening.MOVE: {},
    Happening.MEMBER_MAIL: _REOPENS,
    Happening.AUTOMATIC_MAIL: {},
    Happening.UNVERIFIED_MAIL: {},
    Happening.BOUNCE: {},
}


def status_after(current: Status, event: Happening) -> Status:
    """The status a ticket has after `event` happens to it."""
    return TRANSITIONS[event].get(current, current)


def check_status_change(current: Status, target: Status) -> Status:
    """Validate an operator's explicit status change; returns the target status."""
    if target is Status.NEW:
        raise LifecycleError("a ticket cannot go back to new")
    if target is current:
        raise LifecycleError(f"the ticket is already {current.value}")
    return target


# Status words accepted from operators, English and Catalan.
STATUS_WORDS: dict[str, Status] = {
    "new": Status.NEW,
    "nou": Status.NEW,
    "open": Status.OPEN,
    "obert": Status.OPEN,
    "stalled": Status.STALLED,
    "stall": Status.STALLED,
    "aturat": Status.STALLED,
    "resolved": Status.RESOLVED,
    "resolve": Status.RESOLVED,
    "resolt": Status.RESOLVED,
    "tancat": Status.RESOLVED,  # "closed", as volunteers say it
    "rejected": Status.REJECTED,
    "reject": Status.REJECTED,
    "rebutjat": Status.REJECTED,
}


def parse_status(word: str) -> Status:
    """Turn an English or Catalan status word into a Status, or raise LifecycleError."""
    try:
        return STATUS_WORDS[word.strip().lower()]
    except KeyError:
        known = ", ".join(s.value for s in _ALL)
        raise LifecycleError(f"unknown status {word!r} (known: {known})") from None
