"""A mail whose body the parser cut says so wherever its text is shown in Matrix."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from exobot.core.model import Entry, EntryKind, Status, Ticket
from exobot.i18n import say
from exobot.matrix.render import Renderer

NOW = datetime(2024, 5, 6, 12, 0, tzinfo=UTC)
TICKET = Ticket(
    number=3,
    title="No em funciona internet",
    requestor="pere@example.org",
    queue="suport",
    status=Status.OPEN,
    created_at=NOW,
    updated_at=NOW,
)


def mail_entry(**data: object) -> Entry:
    values = {"from": "pere@example.org", "from_name": "Pere", "subject": "s", "attachments": []}
    return Entry(3, EntryKind.MAIL_IN, "pere@example.org", NOW, "Un text molt llarg", values | data)


@pytest.mark.parametrize("language", ["ca", "es", "en"])
def test_cut_mail_is_flagged_in_thread_root_and_web_notes(language: str) -> None:
    renderer = Renderer(language)
    note = say(language, "(Message cut short: the whole mail is kept as the original.)")
    cut = mail_entry(body_truncated=True)
    message = renderer.announcement(TICKET, [cut])
    assert message is not None and note in message.body
    assert note in renderer.root(TICKET, cut).body
    assert renderer.entry_notes(TICKET, cut) == [note]
    whole = mail_entry()
    assert note not in renderer.announcement(TICKET, [whole]).body
    assert note not in renderer.root(TICKET, whole).body
    assert renderer.entry_notes(TICKET, whole) == []


def test_catalan_wording() -> None:
    assert say("ca", "(Message cut short: the whole mail is kept as the original.)") == (
        "(Missatge retallat: el correu sencer es conserva com a original.)"
    )
