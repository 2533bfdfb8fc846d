"""What the bot says in Matrix: the message catalog and the renderer."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from exobot import i18n
from exobot.core.actions import Channel, default_registry
from exobot.core.commands import HELP_ALL, CommandError, parse_command
from exobot.core.model import Entry, EntryKind, Status, Ticket
from exobot.core.people import imported_name
from exobot.i18n import say
from exobot.matrix.render import (
    MAX_ANSWER_BYTES,
    Message,
    Renderer,
    answer_size,
    format_ago,
    format_duration,
    quarantine_reason,
)
from exobot.wording import STATUS_WORDS

LANGUAGES = ["ca", "es", "en"]
NOW = datetime(2024, 5, 6, 12, 0, tzinfo=UTC)
OPERATOR = "@anna:example.org"
MEMBER = "pere@example.org"
HOSTILE = '<script>alert(1)</script> </blockquote> @room <b>x</b> "q" & more'

COMMAND_CODES: dict[str, dict[str, object]] = {
    "unknown_command": {"command": "agaf"},
    "missing_reference": {"command": "take"},
    "bad_reference": {"text": "suport#x"},
    "missing_argument": {"command": "give", "argument": "user", "label": "the user (@name:server)"},
    "bad_status": {"word": "tancat", "known": "new, nou, open, obert"},
    "bad_user": {"text": "anna"},
    "bad_queue": {"queue": "comptes", "known": "suport, tresoreria"},
    "bad_address": {"text": "pere-at-example", "reason": "An email address must have an @-sign"},
    "bad_cc_argument": {"text": "pere@example.org"},
    "unexpected_argument": {"command": "take", "text": "ara mateix"},
    "bad_list_argument": {"word": "vells"},
}
SERVICE_CODES: dict[str, dict[str, object]] = {
    "not_found": {"ticket": "suport#99"},
    "not_operator": {},
    "already_unowned": {"ticket": "suport#3"},
    "already_owner": {"ticket": "suport#3", "owner": OPERATOR},
    "already_yours": {"ticket": "suport#3"},
    "owner_not_operator": {"owner": "@pere:example.org"},
    "missing_text": {},
    "missing_title": {},
    "same_title": {"ticket": "suport#3"},
    "unknown_queue": {"queue": "comptes", "known": ["suport", "tresoreria"]},
    "same_queue": {"ticket": "suport#3", "queue": "suport"},
    "back_to_new": {"ticket": "suport#3"},
    "same_status": {"ticket": "suport#3", "status": "stalled"},
    "no_unverified": {"ticket": "suport#3"},
    "internal": {},
    "missing_participants": {},
    "too_many_participants": {"limit": 20},
    "own_address_participant": {"address": "suport@example.org"},
    "requestor_stays": {"address": "marta@example.net", "ticket": "suport#3"},
    "add_and_remove": {"address": "pere@example.org"},
    "participants_unchanged": {"ticket": "suport#3"},
}
ALL_CODES = {**COMMAND_CODES, **SERVICE_CODES, "bad_address_service": {}}


def make_ticket(**changes: object) -> Ticket:
    values: dict[str, object] = {
        "number": 3,
        "title": "No em funciona internet",
        "requestor": MEMBER,
        "queue": "suport",
        "status": Status.NEW,
        "created_at": NOW - timedelta(hours=5),
        "updated_at": NOW - timedelta(hours=1),
        "owner": None,
        "last_member_mail_at": NOW - timedelta(hours=5),
    }
    values.update(changes)
    return Ticket(**values)  # type: ignore[arg-type]


def entry(kind: EntryKind | str, actor: str = OPERATOR, body: str | None = None, **data: object):
    return Entry(3, kind, actor, NOW, body, dict(data))  # type: ignore[arg-type]


def mail(body: str = "No tinc connexió des d'ahir.", **data: object) -> Entry:
    values: dict[str, object] = {
        "from": MEMBER,
        "from_name": "Pere Vila",
        "subject": "No em funciona internet",
        "message_id": "<1@example.org>",
        "cc": [],
        "attachments": [],
    }
    values.update(data)
    return entry(EntryKind.MAIL_IN, MEMBER, body, **values)


def assert_safe(message: Message) -> None:
    """No raw tag from HOSTILE, no link, no pill."""
    assert "<script" not in message.html
    assert "<b>x</b>" not in message.html
    assert "</blockquote> @room" not in message.html
    assert "<a " not in message.html
    assert "href" not in message.html


@pytest.fixture(params=LANGUAGES)
def renderer(request: pytest.FixtureRequest) -> Renderer:
    return Renderer(request.param, timezone=ZoneInfo("Europe/Madrid"))


# -- catalog -----------------------------------------------------------------------


def test_status_names() -> None:
    expected = {
        "ca": ["nou", "obert", "aturat", "resolt", "rebutjat"],
        "es": ["nuevo", "abierto", "parado", "resuelto", "rechazado"],
        "en": ["new", "open", "stalled", "resolved", "rejected"],
    }
    for language, names in expected.items():
        assert [say(language, STATUS_WORDS[status.value]) for status in Status] == names


def test_say_unknown_language_is_catalan() -> None:
    assert say("fr", "open") == "obert"
    assert say("ca-ES", "open") == "obert"
    assert say("EN", "open") == "open"


REFUSAL = "Hi! I only work in eXO's support team rooms. If you need help, please write to {address}."


def test_say_missing_translation_raises_in_tests_and_falls_back_at_runtime(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(i18n.MissingTranslation):
        say("ca", "No such message")
    with pytest.raises(KeyError):
        say("ca", REFUSAL)  # a missing parameter
    monkeypatch.setattr(i18n, "STRICT", False)
    with caplog.at_level("WARNING", logger="exobot.i18n"):
        assert say("ca", "No such message") == "No such message"  # the English id
        assert say("ca", "No such message") == "No such message"
    assert len([r for r in caplog.records if "No such message" in r.getMessage()]) == 1
    assert say("ca", REFUSAL).startswith("Hola")
    assert "{address}" in say("ca", REFUSAL)  # missing parameter: no crash
    assert say("en", "Any English text, {x}", x=1) == "Any English text, 1"  # the source


def test_say_formats() -> None:
    assert say("ca", REFUSAL, address="suport@example.org").endswith("suport@example.org.")


# -- durations ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("td", "ca", "es", "en"),
    [
        (timedelta(seconds=20), "menys d'1 min", "menos de 1 min", "less than 1 min"),
        (timedelta(minutes=25), "25 min", "25 min", "25 min"),
        # Babel (CLDR) words English hours "hr".
        (timedelta(hours=4, minutes=10), "4 h", "4 h", "4 hr"),
        (timedelta(hours=30), "30 h", "30 h", "30 hr"),
        (timedelta(days=3, hours=2), "3 dies", "3 días", "3 days"),
        (timedelta(days=2), "2 dies", "2 días", "2 days"),
        (timedelta(seconds=-5), "menys d'1 min", "menos de 1 min", "less than 1 min"),
    ],
)
def test_format_duration(td: timedelta, ca: str, es: str, en: str) -> None:
    assert format_duration(td, "ca") == ca
    assert format_duration(td, "es") == es
    assert format_duration(td, "en") == en


@pytest.mark.parametrize(
    ("td", "ca", "es", "en"),
    [
        (timedelta(seconds=20), "fa 1 min", "hace 1 min", "1 min. ago"),
        (timedelta(hours=3, minutes=59), "fa 3 h", "hace 3 h", "3 hr. ago"),
        (timedelta(hours=47), "fa 47 h", "hace 47 h", "47 hr. ago"),
        (timedelta(days=3, hours=2), "fa 3 dies", "hace 3 días", "3 days ago"),
        # An imported ticket's old history: months, then years, not hundreds of days.
        (timedelta(days=59), "fa 59 dies", "hace 59 días", "59 days ago"),
        (timedelta(days=634), "fa 21 mesos", "hace 21 meses", "21 months ago"),
        (timedelta(days=1100), "fa 3 anys", "hace 3 años", "3 years ago"),
    ],
)
def test_format_ago(td: timedelta, ca: str, es: str, en: str) -> None:
    assert [format_ago(td, language) for language in ("ca", "es", "en")] == [ca, es, en]


def test_an_imported_helpdesks_unmapped_staff_is_named_with_the_helpdesk(
    renderer: Renderer,
) -> None:
    """An RT user the owners file did not map ("rt:nuria") reads as "nuria (Request
    Tracker)" in chat, as on the web; Matrix ids, addresses and other ids are untouched."""
    assert imported_name("rt:nuria") == "nuria (Request Tracker)"
    assert [imported_name(x) for x in ("@rt:example.org", MEMBER, "system", "rt:", "xx:y")] == [
        None
    ] * 5
    message = renderer.announcement(
        make_ticket(), [entry(EntryKind.COMMENT, "rt:nuria", "Cal retornar el rebut.")]
    )
    assert message is not None
    assert "nuria (Request Tracker)" in message.body and "rt:nuria" not in message.body


# -- root and announcements --------------------------------------------------------


def test_root_message(renderer: Renderer) -> None:
    ticket = make_ticket(owner=OPERATOR)
    first = mail(
        "Hola,\n\nNo tinc connexió.\n\n-- \nPere\n",
        attachments=[{"filename": "foto.png", "content_type": "image/png", "size": 10}],
    )
    message = renderer.root(ticket, first)
    assert message.body.startswith("suport#3 · No em funciona internet")
    assert "<b>suport#3</b>" in message.html
    assert MEMBER in message.body
    assert OPERATOR in message.body
    assert say(renderer.language, "new") in message.body
    assert "> No tinc connexió." in message.body
    assert "<blockquote>" in message.html
    assert "Pere\n" not in message.body  # signature trimmed
    assert "foto.png" in message.body
    assert "📎" in message.body


def test_root_message_is_short() -> None:
    body = "\n".join(f"Línia {n} " + "x" * 50 for n in range(40))
    message = Renderer().root(make_ticket(), mail(body))
    quoted = [line for line in message.body.split("\n") if line.startswith(">")]
    assert len(quoted) <= 8
    assert sum(len(line) for line in quoted) <= 600 + 2 * 8
    assert "…" in message.body


def test_root_without_first_and_with_a_comment(renderer: Renderer) -> None:
    message = renderer.root(make_ticket(), None)
    assert "<blockquote>" not in message.html
    comment = entry(EntryKind.COMMENT, body="Ha trucat per telèfon")
    message = renderer.root(make_ticket(), comment)
    assert OPERATOR in message.body
    assert "Ha trucat per telèfon" in message.body


def test_root_escapes_hostile_input(renderer: Renderer) -> None:
    ticket = make_ticket(title=HOSTILE, requestor='"<x>"@example.org', owner="@<i>:ex")
    message = renderer.root(
        ticket, mail(HOSTILE, attachments=[{"filename": "<img src=x>", "size": 1}])
    )
    assert_safe(message)
    assert "&lt;script&gt;" in message.html
    assert "&lt;/blockquote&gt;" in message.html
    assert "@room" in message.html
    assert "<img" not in message.html
    assert "<i>:ex" not in message.html
    assert message.html.count("<blockquote>") == message.html.count("</blockquote>") == 1


def test_take_is_one_line() -> None:
    entries = [
        entry(EntryKind.OWNER, **{"from": None, "to": OPERATOR}),
        entry(EntryKind.STATUS, **{"from": "new", "to": "open"}),
    ]
    message = Renderer("ca").announcement(make_ticket(), entries)
    assert message is not None
    assert message.body == "@anna:example.org ha agafat suport#3 · nou → obert"
    # Same change if the service writes the status first.
    reversed_message = Renderer("ca").announcement(make_ticket(), entries[::-1])
    assert reversed_message == message


def test_take_in_every_language(renderer: Renderer) -> None:
    entries = [
        entry(EntryKind.STATUS, **{"from": "new", "to": "open"}),
        entry(EntryKind.OWNER, **{"from": None, "to": OPERATOR}),
    ]
    message = renderer.announcement(make_ticket(), entries)
    assert message is not None
    assert "\n" not in message.body
    assert OPERATOR in message.body
    assert say(renderer.language, "open") in message.body


def test_give_and_untake() -> None:
    give = Renderer("ca").announcement(
        make_ticket(), [entry(EntryKind.OWNER, **{"from": None, "to": "@joan:example.org"})]
    )
    assert give is not None
    assert give.body == "@anna:example.org ha assignat suport#3 a @joan:example.org"
    untake = Renderer("en").announcement(
        make_ticket(), [entry(EntryKind.OWNER, **{"from": OPERATOR, "to": None})]
    )
    assert untake is not None
    assert untake.body == "@anna:example.org left suport#3 without an owner"


def test_created_and_ack_are_covered_by_the_root(renderer: Renderer) -> None:
    entries = [
        entry(EntryKind.CREATED, "exobot", queue="suport", requestor=MEMBER),
        mail(),
        entry(EntryKind.MAIL_OUT, "exobot", None, template="ack", to=[MEMBER]),
    ]
    assert renderer.announcement(make_ticket(), entries) is None
    assert renderer.announcement(make_ticket(), []) is None


def test_created_with_an_owner_still_says_the_rest() -> None:
    entries = [
        entry(EntryKind.CREATED, queue="suport", requestor=MEMBER),
        entry(EntryKind.COMMENT, body="Ha trucat"),
        entry(EntryKind.TITLE, **{"from": "Trucada", "to": "Antena caiguda"}),
    ]
    message = Renderer("ca").announcement(make_ticket(), entries)
    assert message is not None
    assert "Antena caiguda" in message.body
    assert "Ha trucat" not in message.body


def test_comment_concise_and_not(renderer: Renderer) -> None:
    comment = entry(EntryKind.COMMENT, body="Cal revisar l'antena")
    full = renderer.announcement(make_ticket(), [comment])
    assert full is not None
    assert "Cal revisar l'antena" in full.body
    assert OPERATOR in full.body
    short = renderer.announcement(make_ticket(), [comment], concise=True)
    assert short is not None
    assert "antena" not in short.body
    assert short.body == say(renderer.language, "Internal comment saved")
    assert Renderer("ca").announcement(make_ticket(), [comment], concise=True) == Message(
        "Comentari intern desat", "Comentari intern desat"
    )


def test_reply_concise_and_not(renderer: Renderer) -> None:
    reply = entry(
        EntryKind.MAIL_OUT,
        body="Reinicia el router, si us plau.",
        template="reply",
        to=[MEMBER],
        cc=[],
        message_id="<x@exobot>",
        outbox_id=1,
    )
    status = entry(EntryKind.STATUS, **{"from": "new", "to": "open"})
    full = renderer.announcement(make_ticket(), [reply, status])
    assert full is not None
    assert "Reinicia el router" in full.body
    assert MEMBER in full.body
    assert say(renderer.language, "open") in full.body
    short = renderer.announcement(make_ticket(), [reply, status], concise=True)
    assert short is not None
    assert "Reinicia" not in short.body
    assert MEMBER in short.body
    assert "\n" not in short.body


def test_reply_concise_catalan() -> None:
    reply = entry(EntryKind.MAIL_OUT, body="Fet", template="reply", to=[MEMBER])
    message = Renderer("ca").announcement(make_ticket(), [reply], concise=True)
    assert message is not None
    assert message.body == f"Resposta enviada a {MEMBER}"


def test_resolve_mentions_the_notice() -> None:
    entries = [
        entry(EntryKind.STATUS, **{"from": "open", "to": "resolved"}),
        entry(EntryKind.MAIL_OUT, "exobot", None, template="resolved", to=[MEMBER]),
    ]
    message = Renderer("ca").announcement(make_ticket(status=Status.RESOLVED), entries)
    assert message is not None
    assert message.body == (
        "@anna:example.org ha canviat l'estat de suport#3: obert → resolt"
        f" · avís de resolució enviat a {MEMBER}"
    )


def test_member_mail_reopens(renderer: Renderer) -> None:
    entries = [
        mail("Torna a fallar."),
        entry(EntryKind.STATUS, MEMBER, **{"from": "resolved", "to": "open"}),
    ]
    message = renderer.announcement(make_ticket(status=Status.OPEN), entries)
    assert message is not None
    first_line = message.body.split("\n")[0]
    assert "Pere Vila" in first_line
    assert say(renderer.language, "resolved") in first_line
    assert first_line.endswith(":")
    assert "> Torna a fallar." in message.body


@pytest.mark.parametrize(
    "kind", [EntryKind.MAIL_IN, EntryKind.AUTOMATIC_IN, EntryKind.UNVERIFIED_IN, EntryKind.BOUNCE]
)
def test_incoming_mails(renderer: Renderer, kind: EntryKind) -> None:
    data = {"from": "x@example.net", "from_name": "", "subject": "s", "attachments": []}
    if kind == EntryKind.BOUNCE:
        data.update(status="5.1.1", recipients=[MEMBER])
    message = renderer.announcement(
        make_ticket(), [entry(kind, "x@example.net", "El text", **data)]
    )
    assert message is not None
    assert "El text" in message.body
    if kind == EntryKind.UNVERIFIED_IN:
        assert "accept" in message.body  # !accepta / !accept
        assert "suport#3" in message.body
    if kind == EntryKind.BOUNCE:
        assert MEMBER in message.body and "5.1.1" in message.body
    else:
        assert "x@example.net" in message.body


def test_unverified_says_how_to_accept_in_catalan() -> None:
    message = Renderer("ca").announcement(
        make_ticket(),
        [entry(EntryKind.UNVERIFIED_IN, "x@example.net", "Hola", **{"from": "x@example.net"})],
    )
    assert message is not None
    assert "!accepta suport#3" in message.body
    assert "no verificat" in message.body


@pytest.mark.parametrize(
    ("kind", "data", "body", "expected"),
    [
        (
            EntryKind.TITLE,
            {"from": "Internet", "to": "Antena caiguda a Gràcia"},
            None,
            "Antena caiguda a Gràcia",
        ),
        (EntryKind.QUEUE, {"from": "suport", "to": "tresoreria"}, None, "tresoreria"),
        (EntryKind.STATUS, {"from": "open", "to": "stalled"}, None, "→"),
        (EntryKind.ACCEPTED, {"entry": 7, "from": "x@example.net"}, None, "x@example.net"),
        (
            EntryKind.DELIVERY_FAILED,
            {"outbox_id": 4, "recipient": MEMBER},
            "550 5.1.1 no such user",
            "550 5.1.1",
        ),
        (
            EntryKind.DELIVERY_FAILED,
            {"outbox_id": 4, "recipient": "!room:example.org", "channel": "chat"},
            "the homeserver refused the message: event too large (M_TOO_LARGE)",
            "suport#3",
        ),
        (
            EntryKind.DELIVERY_FAILED,
            {"outbox_id": 4, "recipient": "!r:example.org", "channel": "chat", "redaction": True},
            "the homeserver refused to redact 2 of 2 posts: no (M_FORBIDDEN)",
            "(M_FORBIDDEN)",
        ),
        (EntryKind.DELIVERY_RETRIED, {"outbox_id": 4, "channel": "mail"}, None, "🔁"),
        (EntryKind.DELIVERY_RETRIED, {"outbox_id": 4, "channel": "chat"}, None, "suport#3"),
        (
            EntryKind.DELIVERY_RETRIED,
            {"outbox_id": 4, "channel": "chat", "redaction": True},
            None,
            "suport#3",
        ),
        (EntryKind.MAIL_OUT, {"template": "resolved", "to": [MEMBER]}, None, MEMBER),
        ("alert", {"reason": "new"}, None, "suport#3"),
        ("alert", {"reason": "stalled"}, None, "suport#3"),
        ("something_new", {}, None, "something_new"),
    ],
)
def test_other_announcements(
    renderer: Renderer,
    kind: EntryKind | str,
    data: dict[str, object],
    body: str | None,
    expected: str,
) -> None:
    message = renderer.announcement(make_ticket(), [entry(kind, body=body, **data)])
    assert message is not None
    assert expected in message.body
    assert message.html


REDACTION_WORDING = {
    "ca": (
        "⚠️ No s'han pogut eliminar del xat missatges sobre suport#3 (supressió de dades "
        "personals): the homeserver refused to redact 2 of 2 posts: no (M_FORBIDDEN). Un "
        "moderador de la sala els pot eliminar a mà.",
        "🔁 Es torna a provar d'eliminar del xat els missatges sobre suport#3 (supressió de dades "
        "personals), a petició d'un administrador",
    ),
    "es": (
        "⚠️ No se han podido eliminar del chat mensajes sobre suport#3 (supresión de datos "
        "personales): the homeserver refused to redact 2 of 2 posts: no (M_FORBIDDEN). Un "
        "moderador de la sala puede eliminarlos a mano.",
        "🔁 Se vuelve a intentar eliminar del chat los mensajes sobre suport#3 (supresión de datos "
        "personales), a petición de un administrador",
    ),
    "en": (
        "⚠️ Posts about suport#3 could not be removed from the chat (a privacy erasure): the "
        "homeserver refused to redact 2 of 2 posts: no (M_FORBIDDEN). A room moderator can "
        "remove them by hand.",
        "🔁 Removing the posts about suport#3 from the chat (a privacy erasure) is being tried "
        "again, at an administrator's request",
    ),
}


@pytest.mark.parametrize("language", sorted(REDACTION_WORDING))
def test_a_privacy_erasures_redactions_given_up_and_retried_say_so(language: str) -> None:
    """Not the wording of a post that could not be sent: what is left is a post to remove."""
    renderer = Renderer(language)
    failed = entry(
        EntryKind.DELIVERY_FAILED,
        body="the homeserver refused to redact 2 of 2 posts: no (M_FORBIDDEN).",
        outbox_id=4,
        recipient="!r:example.org",
        channel="chat",
        redaction=True,
    )
    retried = entry(EntryKind.DELIVERY_RETRIED, outbox_id=4, channel="chat", redaction=True)
    messages = [renderer.announcement(make_ticket(), [item]) for item in (failed, retried)]
    assert tuple(m.body for m in messages if m is not None) == REDACTION_WORDING[language]


def test_status_announcement_is_translated() -> None:
    message = Renderer("es").announcement(
        make_ticket(), [entry(EntryKind.STATUS, **{"from": "open", "to": "stalled"})]
    )
    assert message is not None
    assert message.body == "@anna:example.org ha cambiado el estado de suport#3: abierto → parado"


def test_announcements_escape_hostile_input(renderer: Renderer) -> None:
    entries = [
        entry(EntryKind.TITLE, HOSTILE, **{"from": HOSTILE, "to": HOSTILE}),
        entry(EntryKind.COMMENT, HOSTILE, HOSTILE),
        mail(HOSTILE, from_name=HOSTILE, attachments=[{"filename": HOSTILE}]),
        entry(EntryKind.MAIL_OUT, body=HOSTILE, template="reply", to=[HOSTILE]),
        entry(EntryKind.DELIVERY_FAILED, body=HOSTILE, recipient=HOSTILE),
        entry(EntryKind.DELIVERY_FAILED, body=HOSTILE, recipient=HOSTILE, channel="chat"),
        entry(EntryKind.DELIVERY_FAILED, body=HOSTILE, recipient=HOSTILE, redaction=True),
        entry(EntryKind.BOUNCE, body=HOSTILE, status=HOSTILE, recipients=[HOSTILE]),
        entry(EntryKind.ACCEPTED, **{"from": HOSTILE}),
        entry(EntryKind.OWNER, **{"from": None, "to": HOSTILE}),
        entry(EntryKind.QUEUE, **{"from": HOSTILE, "to": HOSTILE}),
    ]
    for item in entries:
        message = renderer.announcement(make_ticket(title=HOSTILE), [item])
        assert message is not None
        assert_safe(message)
        assert "&lt;" in message.html
    message = renderer.announcement(make_ticket(), entries)
    assert message is not None
    assert_safe(message)


def test_moved_pointer(renderer: Renderer) -> None:
    message = renderer.moved_pointer(make_ticket(queue="tresoreria"), "suport", "tresoreria")
    assert "suport#3" in message.body
    assert "tresoreria" in message.body
    assert_safe(renderer.moved_pointer(make_ticket(), HOSTILE, HOSTILE))


# -- alerts ------------------------------------------------------------------------


def test_alert_line_catalan() -> None:
    message = Renderer("ca").alert_line(make_ticket(), timedelta(hours=4))
    assert message.body == (
        "⚠️ suport#3 «No em funciona internet» espera des de fa 4 h (nou) — !agafa suport#3"
    )


def test_alerts_and_reminders(renderer: Renderer) -> None:
    ticket = make_ticket(title=HOSTILE, owner=OPERATOR)
    for message in (
        renderer.alert(ticket, timedelta(hours=4)),
        renderer.alert_line(ticket, timedelta(hours=4)),
        renderer.stalled_reminder(ticket, timedelta(days=8)),
        renderer.stalled_line(ticket, timedelta(days=8)),
    ):
        assert "suport#3" in message.body
        assert_safe(message)
    assert "4 h" in renderer.alert(ticket, timedelta(hours=4)).body
    stalled = renderer.stalled_line(ticket, timedelta(days=8)).body
    assert format_duration(timedelta(days=8), renderer.language) in stalled
    assert OPERATOR in stalled


def test_digest_zero_new(renderer: Renderer) -> None:
    counts = {("suport", "open"): 3, ("tresoreria", "stalled"): 1}
    message = renderer.digest(counts, [], [make_ticket(status=Status.STALLED)], NOW)
    assert say(renderer.language, "No new tickets waiting 🎉") in message.body
    assert "🎉" in message.body
    assert "tresoreria" in message.body
    assert "2024-05-06" in message.body
    assert f"{say(renderer.language, 'open')} 3" in message.body


def test_digest_with_new_tickets(renderer: Renderer) -> None:
    counts = {("suport", Status.NEW): 2, ("suport", "open"): 1}
    oldest = [make_ticket(title=HOSTILE), make_ticket(number=4, created_at=NOW - timedelta(days=3))]
    message = renderer.digest(counts, oldest, [], NOW)
    assert "🎉" not in message.body
    assert f"<b>{say(renderer.language, 'new')} 2</b>" in message.html
    assert "suport#4" in message.body
    assert format_duration(timedelta(days=3), renderer.language) in message.body
    assert_safe(message)


def test_digest_empty() -> None:
    message = Renderer("ca").digest({}, [], [], NOW)
    assert "Cap ticket nou esperant 🎉" in message.body


def test_quarantine(renderer: Renderer) -> None:
    message = renderer.quarantine(12, HOSTILE, HOSTILE, HOSTILE)
    # Worded for a person: no shell commands, no technical error.
    assert "exobot quarantine" not in message.body
    assert HOSTILE not in message.body.split("\n", 2)[2]  # the error is not shown as is
    assert say(renderer.language, quarantine_reason(HOSTILE)) in message.body
    assert "/quarantine" not in message.body
    assert_safe(message)
    assert renderer.quarantine(1, None, None, "").body


def test_quarantine_links_the_web_page_and_says_why(renderer: Renderer) -> None:
    message = renderer.quarantine(
        12, "anna@example.org", "Hola", "too big: 30 MB, limit 25 MB", web_root="https://s.example/"
    )
    url = "https://s.example/quarantine#mail-12"
    assert url in message.body
    assert f'<a href="{url}">{url}</a>' in message.html
    assert say(renderer.language, "it is bigger than the size limit for mail") in message.body
    assert "30 MB" not in message.body


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        ("too big: 30 MB, limit 25 MB", "it is bigger than the size limit for mail"),
        ("not a mail: no header", "it could not be read as a mail"),
        ("parse failed: boom", "it could not be read as a mail"),
        ("flood: more than 5 new tickets", "its sender opened too many tickets within an hour"),
        (
            "sender address cannot be written to: a@b (no domain)",
            "its sender's address cannot receive our replies",
        ),
        ("RuntimeError('x')", "something failed while processing it (the details are in the log)"),
    ],
)
def test_quarantine_reasons_in_words(error: str, reason: str) -> None:
    assert quarantine_reason(error) == reason
    assert Renderer("ca").quarantine(1, None, None, error).body.count("\n") == 3


# -- queries -----------------------------------------------------------------------


def test_show(renderer: Renderer) -> None:
    ticket = make_ticket(created_at=NOW - timedelta(days=3), owner=None)
    message = renderer.show(ticket, NOW)
    body = message.body
    assert "suport#3" in body and "No em funciona internet" in body and MEMBER in body
    assert say(renderer.language, "nobody") in body
    assert format_duration(timedelta(days=3), renderer.language) in body
    assert format_duration(timedelta(hours=5), renderer.language) in body
    assert "2024-05-03 14:00" in body  # created_at in Europe/Madrid
    never = renderer.show(make_ticket(last_member_mail_at=None, owner=OPERATOR), NOW)
    assert say(renderer.language, "Last mail from the requestor: never") in never.body
    assert OPERATOR in never.body


def test_show_catalan() -> None:
    body = Renderer("ca").show(make_ticket(last_member_mail_at=None), NOW).body
    assert "Responsable: ningú" in body
    assert "Últim correu del sol·licitant: cap" in body
    assert "Estat: nou" in body


def test_show_escapes(renderer: Renderer) -> None:
    assert_safe(renderer.show(make_ticket(title=HOSTILE, requestor=HOSTILE, owner=HOSTILE), NOW))


def test_history(renderer: Renderer) -> None:
    entries = [
        entry(EntryKind.CREATED, "exobot", queue="suport", requestor=MEMBER),
        mail("línia 1\nlínia 2\nlínia 3\nlínia 4\nlínia 5"),
        entry(EntryKind.MAIL_OUT, "exobot", template="ack", to=[MEMBER]),
        entry(EntryKind.OWNER, **{"from": None, "to": OPERATOR}),
        entry(EntryKind.STATUS, **{"from": "new", "to": "open"}),
        entry(EntryKind.COMMENT, body=HOSTILE),
    ]
    message = renderer.history(make_ticket(), entries, NOW)
    assert "14:00" in message.body  # 12:00 UTC in Madrid
    assert "línia 3" in message.body
    assert "línia 4" not in message.body
    assert MEMBER in message.body
    assert_safe(message)
    assert renderer.history(make_ticket(), [], NOW).body


def test_history_order_and_cap() -> None:
    entries = [
        Entry(3, EntryKind.COMMENT, OPERATOR, NOW - timedelta(minutes=n), f"nota {n}")
        for n in range(60)
    ]
    message = Renderer("ca").history(make_ticket(), entries, NOW)
    assert "nota 59" not in message.body  # the oldest are left out
    assert "(s'ometen les 10 entrades més antigues)" in message.body
    assert message.body.index("nota 49") < message.body.index("nota 0")  # newest last
    assert len(message.body.encode()) + len(message.html.encode()) < 60_000


def test_history_of_long_mails_fits_in_an_event() -> None:
    entries = [mail(("x" * 70 + "\n") * 100) for _ in range(80)]
    message = Renderer("ca").history(make_ticket(), entries, NOW)
    assert len(message.body.encode()) + len(message.html.encode()) < 60_000


def test_history_of_non_latin_mails_fits_in_an_encrypted_event() -> None:
    # Cyrillic and Chinese weigh 6 bytes each once nio escapes them for encryption: 50 such
    # mails made an answer the homeserver refused for good (M_TOO_LARGE).
    texts = ["Интернет не работает с утра, помогите " * 4, "我家的网络从昨天开始就断了，请帮忙 " * 6]
    entries = [
        Entry(3, EntryKind.COMMENT, OPERATOR, NOW - timedelta(minutes=n), texts[n % 2])
        for n in range(50)
    ]
    message = Renderer("ca").history(make_ticket(), entries, NOW)
    assert answer_size(message) <= MAX_ANSWER_BYTES
    assert texts[0].strip()[:20] in message.body  # the newest are kept
    match = re.search(r"s'ometen les (\d+) entrades més antigues", message.body)
    assert match and 0 < int(match.group(1)) < 50


def test_ticket_list(renderer: Renderer) -> None:
    tickets = [
        make_ticket(),
        make_ticket(number=4, owner=OPERATOR, status=Status.OPEN, title=HOSTILE),
    ]
    message = renderer.ticket_list(tickets, 5, NOW)
    assert "suport#3" in message.body and "suport#4" in message.body
    assert say(renderer.language, "open") in message.body
    assert say(renderer.language, "nobody") in message.body
    assert OPERATOR in message.body
    assert "3" in message.body.split("\n")[-1]  # "and 3 more"
    assert "<ul>" in message.html
    assert_safe(message)
    exact = renderer.ticket_list(tickets, 2, NOW)
    assert exact.body.split("\n")[-1].startswith("• ")  # no "and N more"


def test_ticket_list_catalan() -> None:
    message = Renderer("ca").ticket_list([make_ticket()], 3, NOW)
    assert message.body.split("\n") == [
        "3 tickets:",
        "• suport#3 · nou · ⏳ ens toca · suport · ningú · 5 h · No em funciona internet",
        "… i 2 més",
    ]
    assert Renderer("ca").ticket_list([], 0, NOW).body == "Cap ticket"


def test_search_results(renderer: Renderer) -> None:
    message = renderer.search_results(HOSTILE, [make_ticket()], NOW)
    assert "suport#3" in message.body
    assert_safe(message)
    empty = renderer.search_results("antena", [], NOW)
    assert "antena" in empty.body


# -- help --------------------------------------------------------------------------


def test_help_is_short_and_says_how_to_get_more(renderer: Renderer) -> None:
    message = renderer.help(None)
    assert message.html.count("<li>") == 5
    for name in ("take", "reply", "comment", "resolve", "list"):
        spec = default_registry().get(name)
        assert renderer.usage(spec) in message.body
    assert "!give" not in message.body
    last = message.body.splitlines()[-1]
    expected = {
        "ca": "!ajuda ORDRE per a més · totes les ordres: !ajuda tot",
        "es": "Más sobre una orden: !help ORDEN · todas las órdenes: !help all",
        "en": "More about one command: !help COMMAND · every command: !help all",
    }[renderer.language]
    assert last == expected


def test_help_all_lists_every_command_and_alias(renderer: Renderer) -> None:
    message = renderer.help(HELP_ALL)
    commands = default_registry().for_channel(Channel.CHAT)
    for spec in commands:
        for word in spec.all_words():
            assert f"!{word}" in message.body
    assert message.html.count("<li>") == len(commands)


def test_help_topic(renderer: Renderer) -> None:
    for topic in ("take", "agafa", "!agafa", "TAKE"):
        message = renderer.help(topic)
        assert "!take" in message.body and "!agafa" in message.body
        assert "suport#N" in message.body
    unknown = renderer.help("<script>")
    assert_safe(unknown)
    assert "&lt;script&gt;" in unknown.html


def test_help_uses_the_prefix() -> None:
    message = Renderer("ca", prefix="ajuda").help("take")
    assert "ajuda#N" in message.body


def test_every_command_has_usage_and_description() -> None:
    for language in LANGUAGES:
        for spec in default_registry():
            # STRICT: a missing translation raises.
            assert say(language, spec.usage, ref="suport#N").startswith("!")
            assert say(language, spec.summary)


# -- errors ------------------------------------------------------------------------


@pytest.mark.parametrize("code", sorted(ALL_CODES))
def test_every_error_code_renders(renderer: Renderer, code: str) -> None:
    params = dict(ALL_CODES[code])
    if code == "bad_address_service":
        code, params = "bad_address", {"address": "pere-at-example", "reason": "no @-sign"}
    message = renderer.error(code, params)
    generic_start = say(renderer.language, "That could not be done ({code}).", code="").split("(")[0]
    assert not message.body.startswith(generic_start), code
    assert "{" not in message.body and "?" not in message.body.replace("¿", "")
    for value in params.values():
        if isinstance(value, str) and code not in (
            "same_status",
            "missing_argument",
            "missing_reference",
            "unexpected_argument",
        ):
            assert value in message.body, (code, value)


@pytest.mark.parametrize(
    ("language", "words"),
    [("ca", "correu internacionalitzat"), ("es", "correo internacionalizado"), ("en", "SMTPUTF8")],
)
def test_a_refused_address_says_why_in_the_readers_language(language: str, words: str) -> None:
    with pytest.raises(CommandError) as refused:
        parse_command("!new josé@example.org No va", prefix="suport", queues=("suport",))
    message = Renderer(language).error(refused.value.code, refused.value.params)
    assert "josé@example.org" in message.body and words in message.body
    assert "Internationalized characters" not in message.body


def test_error_details_catalan() -> None:
    r = Renderer("ca")
    assert r.error("same_status", {"ticket": "suport#3", "status": "stalled"}).body == (
        "suport#3 ja té l'estat aturat."
    )
    # As the parser says it: the argument's declared label.
    label = "the user (@name:server)"
    missing = r.error("missing_argument", {"command": "give", "argument": "user", "label": label})
    missing = missing.body
    assert missing.startswith("!dona necessita l'usuari")
    assert "Ús: !dona suport#N @usuari:servidor" in missing
    assert "agaf" in r.error("unknown_command", {"command": "agaf"}).body
    assert "pere-at-example" in r.error("bad_address", {"address": "pere-at-example"}).body
    assert (
        "suport, tresoreria"
        in r.error("unknown_queue", {"queue": "x", "known": ["suport", "tresoreria"]}).body
    )


def test_unknown_error_code_is_generic(renderer: Renderer) -> None:
    message = renderer.error("brand_new_code", {"x": 1})
    assert "brand_new_code" in message.body
    assert renderer.error("brand_new_code", {}).body


def test_errors_escape(renderer: Renderer) -> None:
    for code in ALL_CODES:
        # A label is a declared message id, never typed text: it stays as declared.
        params = {key: HOSTILE if key != "label" else v for key, v in ALL_CODES[code].items()}
        message = renderer.error(code, params)
        assert_safe(message)
    assert_safe(renderer.error(HOSTILE, {}))


def test_errors_never_raise_on_missing_params(renderer: Renderer) -> None:
    for code in ALL_CODES:
        assert renderer.error(code, {}).body


# -- refusals ----------------------------------------------------------------------


def test_refusals(renderer: Renderer) -> None:
    assert renderer.not_operator().body
    refusal = renderer.direct_refusal("suport@example.org")
    assert "suport@example.org" in refusal.body
    assert_safe(renderer.direct_refusal(HOSTILE))


def test_refusals_catalan() -> None:
    r = Renderer("ca")
    assert "operadors" in r.not_operator().body
    assert r.direct_refusal("suport@example.org").body == (
        "Hola! Només treballo a les sales de l'equip de suport de l'eXO. "
        "Si necessites ajuda, escriu a suport@example.org."
    )


def test_no_message_html_has_unbalanced_tags() -> None:
    r = Renderer("ca")
    samples = [
        r.root(make_ticket(title=HOSTILE), mail(HOSTILE)),
        r.history(make_ticket(), [mail(HOSTILE), entry(EntryKind.COMMENT, body=HOSTILE)], NOW),
        r.digest({("suport", "new"): 1}, [make_ticket()], [make_ticket()], NOW),
        r.help(None),
    ]
    for message in samples:
        for tag in ("b", "i", "code", "blockquote", "ul", "li"):
            opened = len(re.findall(rf"<{tag}>", message.html))
            assert opened == message.html.count(f"</{tag}>"), tag
