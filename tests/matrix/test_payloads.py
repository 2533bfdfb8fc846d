"""A chat row's payload is checked against what its type needs before the row is sent: one
that lacks it is refused with a message that says what is missing (the worker then gives the
row up at once, exobot.delivery.reading_payload), every payload exobot queues passes."""

from __future__ import annotations

import pytest

from exobot.matrix import poster
from exobot.matrix.payloads import SHAPES, check_payload

ORIGIN = {"room": "!r:example.org", "event": "$e", "thread": None}

# One payload of each type, as its producer queues it (the module named beside it).
QUEUED = [
    {"type": "ticket", "entries": [1, 2], "created": True, "origin": None},  # core.service
    {"type": "ticket", "entries": [3], "created": False, "origin": {**ORIGIN, "plain": True}},
    {"type": "answer", "origin": ORIGIN, "body": "b", "html": "<p>b</p>"},  # matrix.bot
    {"type": "login", "user": "@anna:example.org"},  # matrix.bot
    {"type": "quarantine", "inbound_id": 4, "sender": None, "subject": "s", "error": "e"},
    {"type": "digest", "date": "2026-12-01"},  # jobs
    {"type": "notice", "body": "a plugin failed"},  # plugins.manager
    {"type": "room_post", "queue": None, "body": "imported"},  # importer.runner
    {"type": "thread_post", "body": "note"},  # plugins.context
    {
        "type": "thread_post",
        "body": "",
        "image": {"data": "iVBO", "filename": "a.png", "mimetype": "image/png", "width": 2},
    },
    {"type": "redact", "event_ids": [["!r:example.org", "$e"]], "reason": None},  # privacy
    {"type": "root_edit"},  # core.service
]


def test_every_type_has_a_shape_and_a_sender() -> None:
    assert {payload["type"] for payload in QUEUED} == set(SHAPES)
    assert all(hasattr(poster.ChatSender, f"_send_{kind}") for kind in SHAPES)


@pytest.mark.parametrize("payload", QUEUED, ids=lambda p: p["type"])
def test_what_exobot_queues_passes(payload: dict) -> None:
    assert check_payload(payload) == payload["type"]


@pytest.mark.parametrize(
    ("payload", "said"),
    [
        ({"type": "answer", "origin": ORIGIN, "body": "b"}, "html"),
        ({"type": "answer", "origin": {"room": "!r"}, "body": "b", "html": ""}, "event"),
        ({"type": "ticket", "entries": ["x"]}, "entries"),
        ({"type": "ticket"}, "entries"),
        ({"type": "login"}, "user"),
        ({"type": "notice", "body": None}, "body"),
        ({"type": "quarantine", "inbound_id": "four"}, "inbound_id"),
        ({"type": "thread_post", "image": {"filename": "a.png"}}, "data"),
        ({"type": "redact", "event_ids": [["!r:example.org"]]}, "event_ids"),
        ({"type": "banner", "body": "hi"}, "unknown chat row type 'banner'"),
        ({"body": "hi"}, "unknown chat row type None"),
        ({"type": ["ticket"]}, "unknown chat row type ['ticket']"),
        (["ticket"], "a chat payload is an object, not list"),
    ],
)
def test_a_payload_lacking_what_its_type_needs_is_refused_saying_what(
    payload: object, said: str
) -> None:
    with pytest.raises(ValueError) as refused:
        check_payload(payload)
    assert said in str(refused.value)
