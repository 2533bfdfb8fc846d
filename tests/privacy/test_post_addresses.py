"""The bot's posts record which addresses they showed (chat_posts.addresses: SHA-256 digests of
the lower-cased addresses, never the text), so that `exobot privacy erase` redacts a post that
showed the person after the retention policy has dropped the text it would search: an answer
at a volunteer's command (`!cerca`, `!llista`) tied to none of their tickets, a comment's
announcement on someone else's ticket. The digests are found as the erasure's address pattern
finds an address (erasing ann@ leaves joann@'s posts), the erasure removes the person's digest
from the records it keeps, and posts recorded before migration 0013 are still found by their
row's text. On SQLite and PostgreSQL, with the real chat worker and a homeserver that records."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from alembic import command
from clocks import FakeClock

from exobot.config import parse_config
from exobot.core import intents
from exobot.core.actions import new_registry
from exobot.core.model import Actor, IncomingMail, Status
from exobot.core.service import CHAT
from exobot.db.chat import CP
from exobot.db.engine import sync_url
from exobot.db.migrate import alembic_config, upgrade
from exobot.db.outbox import O
from exobot.matrix.poster import ChatSender
from exobot.matrix.render import Renderer
from exobot.matrix.rooms import QueueRooms
from exobot.privacy.concerns import MAX_LOCAL, address_digest, address_pattern, shown_addresses
from exobot.privacy.erase import erase_person
from exobot.privacy.session import privacy_session
from exobot.retention import Retention
from tests.matrix.test_move_retry import ROOMS, Homeserver

START = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
BOB = "bob@example.org"
ANN = "ann@example.org"
JOANN = "joann@example.org"
CARLA = "carla@example.org"
RETAIN = timedelta(days=730)
RAW = timedelta(days=30)
ORIGIN = {"room": ROOMS["suport"], "event": "$command", "thread": None}


def settings(url: str) -> dict:
    """A configuration with chat (its homeserver never contacted: the test's records) and no
    plugins."""
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
    }


def chat_worker(session, homeserver: Homeserver) -> ChatSender:  # noqa: ANN001
    """The chat worker on the session's database and clock, in both queue rooms."""
    rooms = QueueRooms(ROOMS)
    rooms._room_of = dict(ROOMS)  # joined already (QueueRooms.ensure_joined)
    renderer = Renderer("ca", "suport", ZoneInfo("Europe/Madrid"), new_registry())
    return ChatSender(
        session.repository, homeserver, rooms, renderer,  # type: ignore[arg-type]
        default_queue="suport", clock=session.clock,
    )  # fmt: skip


async def answer(session, body: str) -> int:  # noqa: ANN001
    """A bot answer at a volunteer's command, queued as exobot.matrix.bot queues it."""
    payload = {"type": "answer", "origin": ORIGIN, "body": body, "html": body}
    return await session.repository.run(
        lambda uow: uow.queue_outbox(CHAT, None, payload), now=session.clock.now()
    )


async def events_of(session, row: int) -> list[str]:  # noqa: ANN001
    async with session.repository.connection() as conn:
        rows = await conn.execute(
            sa.select(CP.c.event_id).where(CP.c.outbox_id == row).order_by(CP.c.part)
        )
        return [event for (event,) in rows]


async def recorded(session, row: int) -> list[list[str] | None]:  # noqa: ANN001
    async with session.repository.connection() as conn:
        rows = await conn.execute(
            sa.select(CP.c.addresses).where(CP.c.outbox_id == row).order_by(CP.c.part)
        )
        return [addresses for (addresses,) in rows]


async def redacted(session) -> list[str]:  # noqa: ANN001
    """The event ids every `redact` row names."""
    async with session.repository.connection() as conn:
        rows = await conn.execute(sa.select(O.c.payload).where(O.c.kind == CHAT))
        payloads = [p if isinstance(p, dict) else json.loads(p) for (p,) in rows]
    return [e for p in payloads if p.get("type") == "redact" for _room, e in p["event_ids"]]


async def payload_of(session, row: int) -> dict:  # noqa: ANN001
    async with session.repository.connection() as conn:
        payload = (await conn.execute(sa.select(O.c.payload).where(O.c.id == row))).scalar_one()
    return payload if isinstance(payload, dict) else json.loads(payload)


async def test_an_answer_naming_bob_is_redacted_after_retention_dropped_its_text(db_url):
    config = parse_config(settings(db_url), env={})
    async with privacy_session(config, FakeClock(START)) as session:
        homeserver = Homeserver()
        worker = chat_worker(session, homeserver)
        naming_bob = await answer(session, f"🔍 suport#3 · Router ({BOB.upper()}) · obert")
        naming_joann = await answer(session, f"📋 suport#4 · Alta ({JOANN}) · nou")
        await worker.deliver_due()
        assert await recorded(session, naming_bob) == [[address_digest(BOB)]]
        assert await recorded(session, naming_joann) == [[address_digest(JOANN)]]
        [bobs_post] = await events_of(session, naming_bob)
        [joanns_post] = await events_of(session, naming_joann)

        session.clock.advance(RAW + timedelta(days=1))
        purge = Retention(session.repository, retention=RETAIN, raw_mail_retention=RAW,
                          clock=session.clock)  # fmt: skip
        assert (await purge.run_once()).outbox_rows == 2
        assert (await payload_of(session, naming_bob))["body"] is None  # no text to search
        assert await recorded(session, naming_bob) == [[address_digest(BOB)]]  # kept

        not_joann = await erase_person(session, ANN)
        assert not_joann.nothing, not_joann.lines()
        assert await redacted(session) == []

        report = await erase_person(session, BOB)
        assert report.matrix_posts == 1
        assert await redacted(session) == [bobs_post]
        assert joanns_post not in await redacted(session)
        # Bob's digest leaves the record; Joann's stays until she is erased.
        assert await recorded(session, naming_bob) == [[]]
        assert await recorded(session, naming_joann) == [[address_digest(JOANN)]]
        again = await erase_person(session, BOB)
        assert again.nothing, again.lines()

        await erase_person(session, JOANN)
        assert sorted(await redacted(session)) == sorted([bobs_post, joanns_post])


async def test_a_comment_naming_bob_on_a_purged_ticket_is_redacted(db_url):
    """An announcement shows the entries it names, not text of its row: once the ticket is
    purged, nothing on it names Bob, and only the post's record finds it."""
    config = parse_config(settings(db_url), env={})
    async with privacy_session(config, FakeClock(START)) as session:
        homeserver = Homeserver()
        worker = chat_worker(session, homeserver)
        service = session.plugins.host.service
        mail = IncomingMail(
            message_id="<m1@example.net>", sender=CARLA, sender_name="Carla",
            requestor=CARLA, subject="Internet", body="Hola, no tinc connexió.",
        )  # fmt: skip
        member = Actor.member(CARLA)
        opened = await service.apply(member, intents.ReceiveMail(mail, intents.MailClass.MEMBER))
        ticket = opened.ticket
        await worker.deliver_due()
        posted_before = len(homeserver.sent)
        volunteer = Actor.operator("@volunteer:example.org")
        await service.apply(volunteer, intents.Comment(ticket, f"El veí {BOB} té el mateix tall"))
        await worker.deliver_due()
        comment_posts = [post.event for post in homeserver.sent[posted_before:]]
        assert comment_posts
        await service.apply(volunteer, intents.SetStatus(ticket, Status.RESOLVED))
        await worker.deliver_due()

        session.clock.advance(RETAIN + timedelta(days=1))
        purge = Retention(session.repository, retention=RETAIN, raw_mail_retention=RAW,
                          clock=session.clock)  # fmt: skip
        assert ticket in (await purge.run_once()).purged
        async with session.repository.reading() as view:
            assert all(BOB not in (entry.body or "") for entry in await view.history(ticket))

        report = await erase_person(session, BOB)
        gone = await redacted(session)
        assert gone and set(gone) <= set(comment_posts)  # not Carla's root, not the status
        assert report.matrix_posts == len(gone)


@pytest.mark.parametrize(
    ("text", "address", "shown"),
    [
        (f"Escriu a {ANN}.", ANN, True),  # a sentence's full stop is no part of it
        (f"<{ANN.upper()}>", ANN, True),
        (f"https://web.example.org/?to={ANN}&x=1", ANN, True),
        (f"`{ANN}`", ANN, True),
        (f"o'{ANN}", ANN, True),  # as the erasure's pattern reads it
        (f"o'{ANN}", f"o'{ANN}", True),
        (JOANN, ANN, False),
        (f"jo.{ANN}", ANN, False),
        (f"{ANN}.uk", ANN, False),
        (f"{ANN}-x", ANN, False),
        ("ann@example", "ann@example", False),  # no dot: no address to record
        ("x" * (MAX_LOCAL + 10) + "@example.org", "x" * MAX_LOCAL + "@example.org", False),
    ],
)
def test_a_post_records_what_the_erasures_pattern_finds(text: str, address: str, shown: bool):
    digests = shown_addresses({"body": text, "formatted_body": text})
    assert (address_digest(address) in digests) is shown
    if address.count("@") == 1 and "." in address.partition("@")[2]:
        assert (address_pattern({address}).search(text) is not None) is shown


def test_the_record_is_bounded_and_holds_no_text():
    text = " ".join(f"user{n}@example.org" for n in range(5000))
    digests = shown_addresses({"body": text})
    assert len(digests) == 1000
    assert all(len(d) == 64 and "@" not in d for d in digests)
    assert shown_addresses({"body": "@" * 100_000 + "a" * 100_000}) == []


def _seed_0012(url: str) -> tuple[int, str]:
    """At revision 0012: a delivered answer naming Bob, and its post (no addresses column)."""
    engine = sa.create_engine(sync_url(url))
    when = START.isoformat() if engine.dialect.name == "sqlite" else START
    payload = {"type": "answer", "origin": ORIGIN, "body": f"suport#3 ({BOB})", "html": BOB}
    with engine.begin() as conn:
        row = conn.execute(
            sa.text(
                "INSERT INTO outbox (kind, payload, state, attempts, next_try_at, created_at,"
                " done_at) VALUES ('chat', :p, 'sent', 1, :n, :n, :n) RETURNING id"
            ),
            {"p": json.dumps(payload), "n": when},
        ).scalar_one()
        conn.execute(
            sa.text(
                "INSERT INTO chat_posts (outbox_id, part, room_id, event_id, created_at)"
                " VALUES (:o, 1, :r, '$old', :n)"
            ),
            {"o": row, "r": ROOMS["suport"], "n": when},
        )
    engine.dispose()
    return row, "$old"


async def test_the_migration_keeps_older_posts_found_by_their_text(db_url):
    await asyncio.to_thread(upgrade, db_url, "0012")
    row, event = await asyncio.to_thread(_seed_0012, db_url)
    config = parse_config(settings(db_url), env={})
    async with privacy_session(config, FakeClock(START)) as session:  # migrates to the head
        assert await recorded(session, row) == [None]  # not known: the text decides
        report = await erase_person(session, BOB)
        assert report.matrix_posts == 1
        assert await redacted(session) == [event]
    await asyncio.to_thread(command.downgrade, alembic_config(db_url), "0012")
    await asyncio.to_thread(upgrade, db_url)
