"""`exobot privacy erase` and `export` on the real repository and the real plugins (the
procedures plugin), on SQLite and PostgreSQL: after an erasure no table of the database (every
column of every table, the plugins' and the search index's own included) holds the person's
addresses or a phrase of their mails, while other people's text stays; a second run changes
nothing; the bot's posts about the person get one `redact` row per ticket."""

from __future__ import annotations

import json
import uuid
import zipfile
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from clocks import FakeClock

from exobot.config import parse_config
from exobot.core import intents
from exobot.core.model import Actor, AttachmentInfo, EntryKind, IncomingMail
from exobot.db.engine import create_sync_engine
from exobot.db.tables import ChatPostRow, InboundMailRow, OutboxRow
from exobot.privacy.erase import erase_person
from exobot.privacy.export import export_person
from exobot.privacy.session import privacy_session

START = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
ANNA = "anna.puig@example.org"
ANNA2 = "Anna.Work@Example.NET"  # her second address, in the directory only
BOB = "bob@example.org"
OPERATOR = "@volunteer:example.org"
PHRASES = ("purple giraffe", "violet walrus", "secret attachment bytes")
BOB_TEXT = "kangaroo words of Bob"


def settings(url: str) -> dict:
    """A configuration with chat (never contacted here) and the procedures plugin."""
    return {
        "database": {"url": url},
        "mail": {
            "address": "suport@example.org",
            "imap": {"host": "imap.example.org", "username": "suport", "password": "secret-imap"},
            "smtp": {"host": "smtp.example.org"},
        },
        "matrix": {
            "homeserver": "https://matrix.example.org",
            "user_id": "@exobot:example.org",
            "password": "secret-matrix",
        },
        "tickets": {"queues": {"suport": {}, "tresoreria": {}}},
        "plugins": {"procedures": {}},
    }


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path) -> str:
    """A fresh database: SQLite, or a new one in the stack's PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'exobot.db'}"
    stack = request.getfixturevalue("stack")
    if stack.postgres_port is None:
        pytest.skip("the test stack runs without PostgreSQL")
    return stack.postgres_url(f"t_{uuid.uuid4().hex[:16]}")


def mail(sender: str, subject: str, body: str, **kw) -> IncomingMail:
    return IncomingMail(
        message_id=f"<{uuid.uuid4().hex}@mail.example.net>",
        sender=sender,
        sender_name=kw.pop("name", "Anna Puig"),
        requestor=sender,
        subject=subject,
        body=body,
        **kw,
    )


async def inbound(session, sender: str, raw: bytes, ticket: int, message_id: str) -> None:
    async with session.repository.connection() as conn:
        await conn.execute(
            sa.insert(InboundMailRow.__table__).values(
                mailbox="INBOX", uidvalidity=1, uid=uuid.uuid4().int % 10**9, raw=raw,
                size=len(raw), message_id=message_id, subject="s", sender=sender, state="done",
                ticket_id=ticket, received_at=START, processed_at=START,
            )
        )


async def world(session) -> dict:
    """Anna's ticket (Bob in Cc, a reply, a comment naming her, an attachment), Bob's ticket
    where her second address writes, a procedure and her directory entry."""
    service = session.plugins.host.service
    member = Actor.member
    async with session.repository.connection() as conn:
        from exobot_procedures import store

        await store.import_members(
            conn, [store.MemberRow("0042", ANNA.lower(), ANNA2.lower())], actor="import", now=START
        )
    first = mail(
        ANNA, "Purple giraffe router", f"Hola, the {PHRASES[0]} is broken.", cc=(BOB,),
        attachments=(AttachmentInfo("photo.jpg", "image/jpeg", PHRASES[2].encode()),),
    )
    mine = (
        await service.apply(member(ANNA), intents.ReceiveMail(first, intents.MailClass.MEMBER, acknowledge=True))
    ).ticket
    await inbound(session, ANNA, f"From: {ANNA}\r\n\r\n{PHRASES[0]}".encode(), mine, first.message_id)
    operator = Actor.operator(OPERATOR)
    await service.apply(operator, intents.Reply(mine, f"Dear {ANNA}, try rebooting."))
    await service.apply(operator, intents.Comment(mine, f"Called {ANNA.upper()} by phone"))
    bobs_mail = mail(BOB, "Slow link", BOB_TEXT, cc=(ANNA2,), name="Bob")
    shared = (
        await service.apply(member(BOB), intents.ReceiveMail(bobs_mail, intents.MailClass.MEMBER))
    ).ticket
    await inbound(session, BOB, f"From: {BOB}\r\nCc: {ANNA2}\r\n\r\n{BOB_TEXT}".encode(), shared, bobs_mail.message_id)
    hers = mail(ANNA2, f"Re: [suport#{shared}] Slow link", f"Me too, {PHRASES[1]}.")
    await service.apply(member(ANNA2), intents.ReceiveMail(hers, intents.MailClass.MEMBER, ticket=shared))
    await service.apply(operator, intents.Comment(shared, "Bob's link checked"))
    plugin = session.plugins._runs["procedures"].plugin
    from exobot_procedures import store

    async with session.repository.connection() as conn:
        await store.create(
            conn, type="bank_data", member="0042", service=None, ticket=mine, actor=OPERATOR,
            note="", now=START, effects=[],
        )
        await store.create(
            conn, type="join", member=ANNA.lower(), service=None, ticket=mine, actor=OPERATOR,
            note=f"for {ANNA}", now=START, effects=[],
        )
    # The chat worker's record of the posts it made for both tickets.
    async with session.repository.connection() as conn:
        rows = (await conn.execute(sa.select(OutboxRow.__table__.c.id, OutboxRow.__table__.c.ticket_id).where(OutboxRow.__table__.c.kind == "chat"))).all()
        for n, row in enumerate(rows):
            await conn.execute(
                sa.insert(ChatPostRow.__table__).values(
                    outbox_id=row.id, part=1, room_id="!room:example.org",
                    event_id=f"$event{n}-t{row.ticket_id}", created_at=START,
                )
            )
    assert plugin is not None
    return {"mine": mine, "shared": shared}


def everything(url: str) -> list[tuple[str, object]]:
    """(table, value) for every value of every column of every table in the database."""
    engine = create_sync_engine(url)
    found = []
    try:
        with engine.connect() as conn:
            if url.startswith("sqlite"):
                names = [r[0] for r in conn.exec_driver_sql(
                    "SELECT name FROM sqlite_master WHERE type = 'table'")]
            else:
                names = sa.inspect(conn).get_table_names()
            for name in names:
                for row in conn.exec_driver_sql(f'SELECT * FROM "{name}"'):
                    found.extend((name, value) for value in row)
    finally:
        engine.dispose()
    return found


def holding(url: str, needles: list[str]) -> list[tuple[str, str]]:
    """The (table, needle) pairs where a needle is found, in any case."""
    hits = []
    for table, value in everything(url):
        if isinstance(value, (bytes, bytearray, memoryview)):
            text = bytes(value).decode("utf-8", "replace")
        elif isinstance(value, (dict, list)):
            text = json.dumps(value, ensure_ascii=False)
        else:
            text = str(value)
        hits.extend((table, n) for n in needles if n.lower() in text.lower())
    return hits


async def test_erase_leaves_no_trace_and_keeps_other_peoples_text(url):
    config = parse_config(settings(url), env={})
    needles = [ANNA, ANNA2, *PHRASES]
    async with privacy_session(config, FakeClock(START)) as session:
        tickets = await world(session)
        assert {t for t, _n in holding(url, needles)} >= {"entries", "tickets", "inbound_mail"}

        dry = await erase_person(session, ANNA2, dry_run=True)
        assert dry.dry_run and dry.entries_erased >= 3
        assert dry.matrix_posts and not any("exobot starts" in line for line in dry.lines())
        assert holding(url, [ANNA]), "a dry run changes nothing"

        report = await erase_person(session, ANNA2)  # her second address finds the first
        assert report.addresses == sorted([ANNA.lower(), ANNA2.lower()])
        assert report.tickets_anonymised == 1 and report.tickets_changed == 2
        assert report.attachments == 1 and report.participants == 2
        assert report.plugins["procedures"] > 0
        assert report.matrix_posts > 0
        assert report.lines()[-1].startswith(
            "exobot starts redacting the Matrix posts within 1 s while it runs (else at its next"
        )

        async with session.repository.reading() as view:
            ticket = await view.get_ticket(tickets["mine"])
            shared = await view.history(tickets["shared"])
            mine = await view.history(tickets["mine"])
        assert ticket.title == "[erased]" and ticket.requestor.endswith("@invalid")
        assert any(e.body == BOB_TEXT for e in shared), "Bob's text survives"
        assert any(e.body == "Bob's link checked" for e in shared)
        assert [e.kind for e in mine].count(EntryKind.ERASE) == 1
        assert [e.kind for e in shared].count(EntryKind.ERASE) == 1
        async with session.repository.reading() as view:
            assert await view.search("kangaroo") == [tickets["shared"]]
            assert await view.search("giraffe") == []
            assert await view.search("walrus") == []
        async with session.repository.connection() as conn:
            redacts = (await conn.execute(sa.text(
                "SELECT ticket_id, payload FROM outbox WHERE kind = 'chat'"))).all()
        redacts = [(t, p if isinstance(p, dict) else json.loads(p)) for t, p in redacts]
        redacts = {t: p for t, p in redacts if p.get("type") == "redact"}
        assert set(redacts) == {tickets["mine"], tickets["shared"]}
        assert all(room == "!room:example.org" for room, _e in redacts[tickets["mine"]]["event_ids"])
        # Bob's own announcement on the shared ticket stays; the one of her mail goes.
        shared_events = [e for _r, e in redacts[tickets["shared"]]["event_ids"]]
        assert len(shared_events) == 1

        assert holding(url, needles) == []

        again = await erase_person(session, ANNA)
        assert again.nothing, again
        assert again.lines() == [f"nothing to erase: no data about {ANNA.lower()}"]


async def test_export_holds_the_tickets_entries_and_plugin_parts(url, tmp_path):
    config = parse_config(settings(url), env={})
    async with privacy_session(config, FakeClock(START)) as session:
        tickets = await world(session)
        out = tmp_path / "anna.zip"
        result = await export_person(session, ANNA, out)
    assert result.path == out and out.stat().st_mode & 0o077 == 0
    with zipfile.ZipFile(out) as z:
        names = set(z.namelist())
        data = json.loads(z.read("data.json"))
        index = z.read("index.html").decode()
        assert {"data.json", "index.html"} <= names
        attachment = next(n for n in names if n.startswith("attachments/"))
        assert z.read(attachment) == PHRASES[2].encode()
        assert any(n.startswith("mails/") for n in names)
    assert data["addresses"] == sorted([ANNA.lower(), ANNA2.lower()])
    refs = {t["reference"]: t for t in data["tickets"]}
    assert set(refs) == {f"suport#{tickets['mine']}", f"suport#{tickets['shared']}"}
    mine = refs[f"suport#{tickets['mine']}"]
    assert mine["role"] == "requestor" and any(PHRASES[0] in (e["text"] or "") for e in mine["entries"])
    shared = refs[f"suport#{tickets['shared']}"]
    assert shared["role"] == "participant"
    # Only her part: Bob's mail copied to her (masked text only), not the comment about Bob.
    assert all("Bob's link" not in (e["text"] or "") for e in shared["entries"]), "only her part"
    [bobs] = [e for e in shared["entries"] if e["text"] == BOB_TEXT]
    assert "original" not in bobs and "attachments" not in bobs
    assert any(PHRASES[1] in (e["text"] or "") for e in shared["entries"])
    member = data["plugins"]["procedures"][ANNA.lower()]["member"]
    assert member["number"] == "0042"
    procedures = data["plugins"]["procedures"][ANNA.lower()]["procedures"]
    assert {p["type"] for p in procedures} == {"bank_data", "join"}
    for ref in refs:
        assert f"{ref}</a>" in index
    assert "<script" not in index


async def quarantined(session, raw: bytes, sender: str | None) -> int:
    """A raw mail set aside before it reached a ticket, and the chat row that announced it
    (with the post it made)."""
    async with session.repository.connection() as conn:
        inbound_id = (
            await conn.execute(
                sa.insert(InboundMailRow.__table__).values(
                    mailbox="INBOX", uidvalidity=1, uid=uuid.uuid4().int % 10**9, raw=raw,
                    size=len(raw), message_id=None, subject="?", sender=sender,
                    state="quarantined", error="unparsable: no From", received_at=START,
                ).returning(InboundMailRow.__table__.c.id)
            )
        ).scalar_one()
        outbox_id = (
            await conn.execute(
                sa.insert(OutboxRow.__table__).values(
                    kind="chat", ticket_id=None, state="sent", attempts=1, next_try_at=START,
                    created_at=START, payload={"type": "quarantine", "inbound_id": inbound_id,
                                               "subject": "?", "error": "unparsable"},
                ).returning(OutboxRow.__table__.c.id)
            )
        ).scalar_one()
        await conn.execute(
            sa.insert(ChatPostRow.__table__).values(
                outbox_id=outbox_id, part=1, room_id="!room:example.org",
                event_id=f"$quarantine{inbound_id}", created_at=START,
            )
        )  # fmt: skip
    return inbound_id


async def test_erase_wipes_quarantined_mails_naming_the_person_without_a_sender(url):
    """A mail whose From could not be read is recorded with no sender and no ticket: it may be
    hers, so it goes, and its announcement is redacted; one naming someone else stays."""
    config = parse_config(settings(url), env={})
    async with privacy_session(config, FakeClock(START)) as session:
        hers = await quarantined(
            session, f"From: =?x?= <{ANNA.upper()}>\r\n\r\nthe {PHRASES[0]}".encode(), None
        )
        others = await quarantined(session, f"From: <{BOB}>\r\n\r\n{BOB_TEXT}".encode(), None)
        report = await erase_person(session, ANNA)
        assert report.raw_mails == 1 and report.matrix_posts == 1
        async with session.repository.connection() as conn:
            rows = {
                r.id: r
                for r in await conn.execute(
                    sa.select(InboundMailRow.__table__).where(
                        InboundMailRow.__table__.c.id.in_([hers, others])
                    )
                )
            }
            redacts = [
                p if isinstance(p, dict) else json.loads(p)
                for (p,) in await conn.execute(
                    sa.text("SELECT payload FROM outbox WHERE kind = 'chat'")
                )
            ]
        assert (bytes(rows[hers].raw), rows[hers].state, rows[hers].subject) == (b"", "discarded", None)
        assert bytes(rows[others].raw).endswith(BOB_TEXT.encode())
        assert rows[others].state == "quarantined"
        [redact] = [p for p in redacts if p.get("type") == "redact"]
        assert redact["event_ids"] == [["!room:example.org", f"$quarantine{hers}"]]
        assert holding(url, [ANNA, PHRASES[0]]) == []


async def posted_digest(session, shown: list[int]) -> str:
    """A digest posted in one room whose post showed these tickets; its event id."""
    async with session.repository.connection() as conn:
        outbox_id = (
            await conn.execute(
                sa.insert(OutboxRow.__table__).values(
                    kind="chat", ticket_id=None, state="sent", attempts=1, next_try_at=START,
                    created_at=START, payload={"type": "digest", "date": "2026-12-01"},
                ).returning(OutboxRow.__table__.c.id)
            )
        ).scalar_one()
        event_id = f"$digest{outbox_id}"
        await conn.execute(
            sa.insert(ChatPostRow.__table__).values(
                outbox_id=outbox_id, part=1, room_id="!room:example.org", event_id=event_id,
                created_at=START, tickets=shown,
            )
        )  # fmt: skip
    return event_id


async def test_erase_redacts_the_digests_that_showed_their_tickets(url):
    config = parse_config(settings(url), env={})
    async with privacy_session(config, FakeClock(START)) as session:
        service = session.plugins.host.service
        hers = (
            await service.apply(
                Actor.member(ANNA),
                intents.ReceiveMail(mail(ANNA, PHRASES[0], "Hola"), intents.MailClass.MEMBER),
            )
        ).ticket
        bobs = (
            await service.apply(
                Actor.member(BOB),
                intents.ReceiveMail(mail(BOB, "Slow link", BOB_TEXT, name="Bob"), intents.MailClass.MEMBER),
            )
        ).ticket
        showing_hers = await posted_digest(session, [bobs, hers])
        showing_bobs = await posted_digest(session, [bobs])
        await erase_person(session, ANNA)
        async with session.repository.connection() as conn:
            payloads = [
                p if isinstance(p, dict) else json.loads(p)
                for (p,) in await conn.execute(sa.text("SELECT payload FROM outbox WHERE kind = 'chat'"))
            ]
    redacted = [e for p in payloads if p.get("type") == "redact" for _room, e in p["event_ids"]]
    assert showing_hers in redacted
    assert showing_bobs not in redacted


def failing_procedures(session) -> None:  # noqa: ANN001
    """Make the procedures plugin's erase handler fail in this session."""

    async def failing(subject):  # noqa: ANN001, ANN202
        raise RuntimeError("the plugin's database went away (test)")

    contributions = session.plugins._contributions["erase"]
    [index] = [i for i, (run, _fn) in enumerate(contributions) if run.name == "procedures"]
    contributions[index] = (contributions[index][0], failing)


async def test_an_erasure_a_plugin_could_not_finish_is_finished_by_the_next(url):
    """A plugin's erase failing (or a crash after the core's commit) leaves the plugins' part
    on record with the addresses; it is said, and the next erasure, for anyone, finishes it.
    Each step is a session of its own, as each `exobot privacy erase` is."""
    config = parse_config(settings(url), env={})
    async with privacy_session(config, FakeClock(START)) as session:
        await world(session)
        failing_procedures(session)
        report = await erase_person(session, ANNA)
    assert report.incomplete == {"procedures"}
    assert report.lines()[-1].startswith("NOT COMPLETE: plugin(s) procedures failed")
    left = {table for table, _n in holding(url, [ANNA, ANNA2])}
    assert "pending_erasures" in left and any(t.startswith("procedures") for t in left)
    assert not left & {"tickets", "entries", "inbound_mail", "participants"}

    async with privacy_session(config, FakeClock(START)) as session:
        failing_procedures(session)
        again = await erase_person(session, "nobody@example.org")  # failing still: kept
    assert (again.finished_earlier, again.incomplete) == (0, {"procedures"})
    assert "pending_erasures" in {table for table, _n in holding(url, [ANNA])}

    async with privacy_session(config, FakeClock(START)) as session:
        finished = await erase_person(session, "nobody@example.org")
    # Anna's and the second run's own (for nobody: the plugin's part failed there too).
    assert (finished.finished_earlier, finished.incomplete) == (2, set())
    assert finished.lines()[0].startswith("finished 2 interrupted erasure(s) first")
    assert holding(url, [ANNA, ANNA2, *PHRASES]) == []
