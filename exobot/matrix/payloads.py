"""What each kind of chat row's payload must hold, checked before the row is delivered.

A chat row is queued by exobot's own code (the service, the bot, the plugins' context, the
importer), but it may also be one an older version queued, or one a plugin shaped by hand. A
payload that lacks what its kind needs could never be delivered, so the chat worker gives
it up at once, saying what is missing (exobot.delivery.reading_payload); any other error
while a row is being sent is retried. Keys not listed here are allowed: the rows' readers
ignore them.
"""

from __future__ import annotations

import functools
from typing import Any, NotRequired

from pydantic import TypeAdapter, ValidationError
from typing_extensions import TypedDict

from exobot.core.service import ROOT_EDIT


class Origin(TypedDict):
    """Where a command was typed (exobot.matrix.bot): its answer goes there."""

    room: str
    event: str
    thread: NotRequired[str | None]
    plain: NotRequired[bool]


class TicketPost(TypedDict):
    """A change of a ticket, rendered from its entries."""

    entries: list[int]
    created: NotRequired[bool]
    origin: NotRequired[Origin | None]


class Answer(TypedDict):
    """A bot answer at a command."""

    origin: Origin
    body: str
    html: str


class Quarantine(TypedDict):
    """A mail set aside, told in the default queue's room."""

    inbound_id: int
    sender: NotRequired[str | None]
    subject: NotRequired[str | None]
    error: NotRequired[str | None]


class Text(TypedDict):
    """A plain-text note: a notice for every room, or a plugin's note in one queue's room."""

    body: str
    queue: NotRequired[str | None]


class Image(TypedDict):
    """A plugin's image (base64), posted with the note as its caption."""

    data: str
    filename: NotRequired[str | None]
    mimetype: NotRequired[str | None]
    width: NotRequired[int | None]
    height: NotRequired[int | None]


class ThreadPost(TypedDict):
    """A plugin's note and/or image in a ticket's thread."""

    body: NotRequired[str | None]
    image: NotRequired[Image | None]


class Login(TypedDict):
    """A login link to send to a volunteer's direct room."""

    user: str


class Redaction(TypedDict):
    """The bot's own posts to redact: [room id, event id] pairs."""

    event_ids: list[tuple[str, str]]
    reason: NotRequired[str | None]


class Nothing(TypedDict):
    """A row that reads all it needs when it is sent (a digest, a root edit)."""


#: Each chat row type and the shape of its payload (ChatSender sends it with `_send_<type>`).
SHAPES: dict[str, type] = {
    "ticket": TicketPost,
    "answer": Answer,
    "quarantine": Quarantine,
    "digest": Nothing,
    "login": Login,
    "notice": Text,
    "thread_post": ThreadPost,
    "room_post": Text,
    "redact": Redaction,
    ROOT_EDIT: Nothing,
}


@functools.cache
def _adapter(shape: type) -> TypeAdapter[Any]:
    """A shape's validator, built at its first row rather than at start-up (about 1 ms each)."""
    return TypeAdapter(shape)


def check_payload(payload: Any) -> str:
    """The kind of a chat row whose payload holds what that kind needs; raises ValueError
    saying what it lacks, for an unknown kind too."""
    if not isinstance(payload, dict):
        raise ValueError(f"a chat payload is an object, not {type(payload).__name__}")
    kind = payload.get("type")
    shape = SHAPES.get(kind) if isinstance(kind, str) else None
    if shape is None:
        raise ValueError(f"unknown chat row type {kind!r}")
    try:
        _adapter(shape).validate_python(payload)
    except ValidationError as invalid:
        problems = "; ".join(
            f"{'.'.join(map(str, error['loc'])) or 'payload'}: {error['msg']}"
            for error in invalid.errors(include_url=False)
        )
        raise ValueError(f"{kind!r} chat row: {problems}") from None
    return kind
