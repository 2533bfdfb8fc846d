"""Active flags in the root message and `!show`, and the wording of a cleared flag and of a
notice, in every language, escaped."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from exobot.core.flags import ActiveFlag
from exobot.core.languages import LANGUAGES
from exobot.core.model import Entry, EntryKind, Status, Ticket
from exobot.matrix.render import Renderer

NOW = datetime(2024, 5, 6, 12, 0, tzinfo=UTC)


def make_ticket() -> Ticket:
    return Ticket(3, "No em funciona internet", "marta@example.net", "suport", Status.NEW, NOW, NOW)


FLAGS = [
    ActiveFlag("non-member", "Not a member: <b>check</b> @room", "procedures", NOW),
    ActiveFlag("bare", "", "sample", NOW),
]


@pytest.fixture(params=LANGUAGES)
def renderer(request: pytest.FixtureRequest) -> Renderer:
    return Renderer(request.param)


def test_root_and_show_list_active_flags_escaped(renderer: Renderer) -> None:
    for message in (
        renderer.root(make_ticket(), None, FLAGS),
        renderer.show(make_ticket(), NOW, FLAGS),
    ):
        assert "🚩 Not a member: <b>check</b> @room" in message.body
        assert "🚩 Not a member: &lt;b&gt;check&lt;/b&gt; @room" in message.html
        assert "<b>check" not in message.html
        assert "🚩 bare" in message.body  # no note: its code
    assert "🚩" not in renderer.root(make_ticket(), None).body
    assert "🚩" not in renderer.show(make_ticket(), NOW).body


def test_cleared_flag_and_notice_entries() -> None:
    renderer = Renderer("ca")
    at = datetime(2024, 5, 6, 12, tzinfo=UTC)
    cleared = Entry(
        1,
        EntryKind.FLAG,
        "@anna:example.org",
        at,
        body="soci 1234",
        data={"code": "non-member", "source": "@anna:example.org", "cleared": True},
    )
    line, _ = renderer.entry_line(make_ticket(), cleared)
    assert line == "🏳️ @anna:example.org ha tret la marca non-member: soci 1234"
    notice = Entry(
        1,
        EntryKind.MAIL_OUT,
        "procedures",
        at,
        body="El tràmit P-3 està fet.",
        data={"template": "reply", "to": ["marta@example.net"], "notice": True},
    )
    line, text = renderer.entry_line(make_ticket(), notice)
    assert line == "📣 procedures ha enviat un avís a marta@example.net:"
    assert text == "El tràmit P-3 està fet."
    message = renderer.announcement(make_ticket(), [notice], concise=True)
    assert message is not None and "Avís enviat a marta@example.net" in message.body
