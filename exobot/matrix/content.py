"""The content of the bot's Matrix messages: notices with escaped HTML that mention nobody,
placed in a room, a thread or as a reply."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from exobot.matrix.render import Message


@dataclass(frozen=True)
class Where:
    """Where a message goes: a room, optionally a thread, optionally replying to an event."""

    room_id: str
    thread_root: str | None = None
    reply_to: str | None = None


def message_content(message: Message, where: Where) -> dict[str, Any]:
    """The content of a bot message: a notice, escaped HTML, mentioning nobody but the
    people the message names on purpose (`Message.mentions`)."""
    content: dict[str, Any] = {
        "msgtype": "m.notice",
        "body": message.body,
        "format": "org.matrix.custom.html",
        "formatted_body": message.html,
        # Present and empty: mail text quoted in it ("@room", a user id) pings nobody; only
        # the ids the message itself chose are pinged.
        "m.mentions": {"user_ids": list(message.mentions)} if message.mentions else {},
    }
    if where.thread_root:
        content["m.relates_to"] = thread_relation(where)
    elif where.reply_to:
        content["m.relates_to"] = {"m.in_reply_to": {"event_id": where.reply_to}}
    return content


def thread_relation(where: Where) -> dict[str, Any]:
    """The `m.relates_to` of a message in `where`'s thread (a reply fallback for clients
    without threads)."""
    return {
        "rel_type": "m.thread",
        "event_id": where.thread_root,
        "is_falling_back": where.reply_to is None,
        "m.in_reply_to": {"event_id": where.reply_to or where.thread_root},
    }


def edit_content(message: Message, event_id: str) -> dict[str, Any]:
    """The content of an edit (`m.replace`) of the bot's message `event_id` so that it shows
    `message`: the new content in `m.new_content`, a "* " fallback for clients without edits;
    an edit pings nobody (a root message names people but must not call them every time)."""
    new = {
        "msgtype": "m.notice",
        "body": message.body,
        "format": "org.matrix.custom.html",
        "formatted_body": message.html,
        "m.mentions": {},
    }
    return {
        "msgtype": "m.notice",
        "body": f"* {message.body}",
        "format": "org.matrix.custom.html",
        "formatted_body": f"* {message.html}",
        "m.new_content": new,
        "m.relates_to": {"rel_type": "m.replace", "event_id": event_id},
        "m.mentions": {},
    }
