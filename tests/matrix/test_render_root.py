"""The root message kept current: whose move it is, the reopened and closed marks, the move's
pointer (who, and a permalink to the new root), the old root's moved line, the edit content."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from exobot.core.model import Status, Ticket
from exobot.core.waiting import Waiting
from exobot.i18n import say
from exobot.matrix.content import edit_content
from exobot.matrix.poster import permalink
from exobot.matrix.render import Renderer
from exobot.wording import WAITING_WORDS

T0 = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)
HOSTILE = '<script>alert(1)</script> @room <b>x</b> "q" & more'
TICKET = Ticket(
    7, "Sense connexió", "marta@example.net", "suport", Status.OPEN, T0, T0,
    owner="@anna:example.org", last_member_mail_at=T0,
)  # fmt: skip
LINK = permalink("!abc:example.org", "$ev-1_x")


@pytest.fixture(params=["ca", "es", "en"])
def renderer(request) -> Renderer:
    return Renderer(request.param)


def test_root_shows_state_owner_queue_title_and_waiting_for_us(renderer):
    body = renderer.root(TICKET, None).body
    first, state, requestor = body.split("\n")[:3]
    assert first == "suport#7 · Sense connexió"
    assert say(renderer.language, "open") in state
    assert "@anna:example.org" in state and "suport" in state
    assert f"⏳ {say(renderer.language, WAITING_WORDS[Waiting.US])}" in state
    assert "marta@example.net" in requestor


def test_root_says_waiting_for_the_member_after_our_answer(renderer):
    answered = replace(TICKET, last_answer_at=T0 + timedelta(minutes=1))
    state = renderer.root(answered, None).body.split("\n")[1]
    assert f"✉️ {say(renderer.language, WAITING_WORDS[Waiting.MEMBER])}" in state
    assert "⏳" not in state


def test_root_of_a_closed_ticket_shows_no_waiting_but_a_done_mark(renderer):
    resolved = replace(TICKET, status=Status.RESOLVED)
    state = renderer.root(resolved, None).body.split("\n")[1]
    assert f"✅ {say(renderer.language, 'resolved')}" in state
    assert "⏳" not in state and "✉️" not in state


def test_reopened_root_is_marked(renderer):
    body = renderer.root(TICKET, None, reopened=True).body
    assert f"🔄 {say(renderer.language, 'reopened')}" in body
    assert "🔄" not in renderer.root(TICKET, None).body


def test_unowned_root_says_nobody(renderer):
    state = renderer.root(replace(TICKET, owner=None), None).body.split("\n")[1]
    assert say(renderer.language, "nobody") in state


def test_moved_pointer_says_who_and_links_the_new_root(renderer):
    message = renderer.moved_pointer(
        TICKET, "suport", "tresoreria", by="@anna:example.org", link=LINK
    )
    assert "@anna:example.org" in message.body
    assert LINK in message.body
    assert f'<a href="{LINK}">' in message.html
    assert message.html.count("<a ") == 1  # the link only: no pill, nobody pinged


def test_moved_pointer_and_moved_line_escape_what_they_show(renderer):
    hostile = replace(TICKET, title=HOSTILE, queue=HOSTILE)
    pointer = renderer.moved_pointer(hostile, HOSTILE, HOSTILE, by=HOSTILE, link=LINK)
    moved = renderer.with_moved_line(renderer.root(hostile, None), hostile, HOSTILE, LINK)
    for message in (pointer, moved):
        assert "<script" not in message.html
        assert "<b>x</b>" not in message.html
    assert moved.body.endswith(LINK)


def test_permalink_encodes_ids_and_names_the_server():
    assert LINK == "https://matrix.to/#/!abc:example.org/$ev-1_x?via=example.org"
    odd = permalink("!a/b?c:example.org", "$e#f")
    assert "/#/!a%2Fb%3Fc:example.org/$e%23f?via=example.org" in odd
    # Room version 12 ids name no server: the bot's own is asked.
    assert permalink("!abc", "$e", "example.org").endswith("/#/!abc/$e?via=example.org")
    assert permalink("!abc", "$e") == "https://matrix.to/#/!abc/$e"


def test_edit_content_replaces_the_root_and_pings_nobody():
    message = Renderer("ca").root(TICKET, None)
    content = edit_content(message, "$root")
    assert content["m.relates_to"] == {"rel_type": "m.replace", "event_id": "$root"}
    assert content["m.new_content"]["body"] == message.body
    assert content["m.new_content"]["formatted_body"] == message.html
    assert content["body"] == f"* {message.body}"
    assert content["m.mentions"] == {} and content["m.new_content"]["m.mentions"] == {}
    assert "m.relates_to" not in content["m.new_content"]


def test_list_lines_say_whose_move_it_is(renderer):
    answered = replace(TICKET, number=8, last_answer_at=T0 + timedelta(minutes=1))
    closed = replace(TICKET, number=9, status=Status.RESOLVED)
    lines = renderer.ticket_list([TICKET, answered, closed], 3, T0).body.split("\n")[1:]
    us, member = (say(renderer.language, WAITING_WORDS[w]) for w in (Waiting.US, Waiting.MEMBER))
    assert f"⏳ {us}" in lines[0] and member not in lines[0]
    assert f"✉️ {member}" in lines[1]
    assert "⏳" not in lines[2] and "✉️" not in lines[2]


def test_an_imported_tickets_root_says_where_and_when_it_was_opened(renderer):
    """Its thread starts at its first new event, maybe years later: the root says it came
    from the other helpdesk and the day it was opened there (local time), above the quote of
    that old first mail, so nobody reads that mail as a new one."""
    from zoneinfo import ZoneInfo

    from exobot.core.model import Entry, EntryKind

    renderer = Renderer(renderer.language, timezone=ZoneInfo("Europe/Madrid"))
    old = datetime(2025, 3, 4, 9, 12, tzinfo=UTC)
    ticket = replace(TICKET, created_at=old)
    first = Entry(7, EntryKind.MAIL_IN, "marta@example.net", old, "El rebut surt duplicat.")
    body = renderer.root(ticket, first, imported="Request Tracker").body
    said = {
        "ca": "📥 Importat de Request Tracker; s'hi va obrir el 2025-03-04 10:12.",
        "es": "📥 Importado de Request Tracker; se abrió allí el 2025-03-04 10:12.",
        "en": "📥 Imported from Request Tracker; opened there on 2025-03-04 10:12.",
    }[renderer.language]
    lines = body.split("\n")
    assert said in lines
    assert lines.index(said) < next(i for i, x in enumerate(lines) if "rebut surt duplicat" in x)
    assert "📥" not in renderer.root(ticket, first).body
