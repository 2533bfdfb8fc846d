"""Bot message content and how a volunteer's message text is read."""

from __future__ import annotations

from exobot.matrix.bot import _message_text
from exobot.matrix.content import Where, message_content
from exobot.matrix.render import Message

MSG = Message("suport#1 · @room", "<b>suport#1</b> · @room")


def test_a_notice_mentions_nobody():
    content = message_content(MSG, Where("!r:x"))
    assert content == {
        "msgtype": "m.notice",
        "body": "suport#1 · @room",
        "format": "org.matrix.custom.html",
        "formatted_body": "<b>suport#1</b> · @room",
        "m.mentions": {},
    }


def test_a_thread_post_falls_back_to_its_root():
    relates = message_content(MSG, Where("!r:x", thread_root="$root"))["m.relates_to"]
    assert relates == {
        "rel_type": "m.thread",
        "event_id": "$root",
        "is_falling_back": True,
        "m.in_reply_to": {"event_id": "$root"},
    }


def test_an_answer_in_a_thread_replies_to_the_command():
    relates = message_content(MSG, Where("!r:x", "$root", "$cmd"))["m.relates_to"]
    assert relates["is_falling_back"] is False
    assert relates["m.in_reply_to"] == {"event_id": "$cmd"}


def test_an_answer_in_the_room_is_a_plain_reply():
    relates = message_content(MSG, Where("!r:x", reply_to="$cmd"))["m.relates_to"]
    assert relates == {"m.in_reply_to": {"event_id": "$cmd"}}


def test_a_reply_fallback_is_dropped():
    body = "> <@anna:x> suport#3 està caigut\n> segona línia\n\n!take suport#3"
    content = {"m.relates_to": {"m.in_reply_to": {"event_id": "$e"}}}
    assert _message_text(body, content) == "!take suport#3"


def test_a_quote_without_a_reply_is_kept():
    assert _message_text("> cita\ntext", {}) == "> cita\ntext"


def test_multi_line_text_is_kept():
    assert _message_text("!reply Hola,\n\nja està.\n", {}) == "!reply Hola,\n\nja està."
