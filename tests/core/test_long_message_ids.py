"""Long Message-IDs: one rule for how long an id exobot stores or looks up may be (a longer
one is stored as a short, deterministic form), and a database error caused by the data is
the mail's, not an outage: such a mail is quarantined and the mail after it goes on.

On PostgreSQL a Message-ID of 6,000 characters used to stop all mail processing: its btree
index refuses rows over 2,704 bytes (SQLSTATE 54000), psycopg calls that an OperationalError,
the processor took it for the database being away and tried the same mail again for ever."""

from __future__ import annotations

import dataclasses
import random
import socket
import sqlite3
import string
import uuid
from datetime import UTC, datetime

import psycopg
import pytest
from clocks import FakeClock
from sqlalchemy import select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from stack_fixtures import app_repository
from test_service import World, mail

from exobot.core.service import (
    MAX_MESSAGE_ID,
    ServiceSettings,
    TicketService,
    stored_message_id,
)
from exobot.db import inbound
from exobot.db.engine import create_engine, database_unavailable
from exobot.db.repository import SqlUnitOfWork
from exobot.db.tables import InboundMailRow, MailMessageRow
from exobot.mail import processor as processor_module
from exobot.mail.msgid import MessageIds
from exobot.mail.processor import MailProcessor, MailSettings
from exobot.mail.sandbox import MB, ParseSandbox, SandboxSettings

OWN = "suport@example.org"
I = InboundMailRow.__table__  # noqa: E741
M = MailMessageRow.__table__


def long_id(length: int = 6000, seed: int = 1) -> str:
    """A Message-ID whose local part is `length` random letters and digits: random, so that
    PostgreSQL cannot compress the index row under its limit (a run of one letter would)."""
    rnd = random.Random(seed)
    local = "".join(rnd.choice(string.ascii_letters + string.digits) for _ in range(length))
    return f"<{local}@x.example>"


# --- the rule ----------------------------------------------------------------------------------


def test_a_usual_id_is_kept_as_it_is_and_normalized():
    assert stored_message_id("<abc@example.net>") == "<abc@example.net>"
    assert stored_message_id("  abc@example.net ") == "<abc@example.net>"  # imported, bare
    assert stored_message_id("<a b@example.net>") == "<ab@example.net>"
    assert stored_message_id("<>") is None
    assert stored_message_id("   ") is None
    at_the_limit = f"<{'x' * (MAX_MESSAGE_ID - 10)}@e.example>"
    assert stored_message_id(at_the_limit) == at_the_limit


def test_a_long_id_becomes_a_short_deterministic_form():
    original = long_id()
    stored = stored_message_id(original)
    assert stored is not None and len(stored.encode()) <= MAX_MESSAGE_ID + 2
    assert stored.startswith(original[:65]) and stored.endswith(".long-id.exobot.invalid>")
    assert stored_message_id(original) == stored  # the same id always gives the same form
    assert stored_message_id(stored) == stored  # and the rule applied again changes nothing
    # A reply names the id the way the parser normalizes it: spaces and folding removed.
    assert stored_message_id(original[:3000] + "\r\n " + original[3000:]) == stored


def test_long_ids_that_differ_only_at_the_end_stay_apart():
    """Cutting would make them one id: the second mail taken for a copy of the first."""
    first, second = long_id(seed=2), long_id(seed=2)[:-12] + "Z@x.example>"
    assert first != second and first[:5000] == second[:5000]
    assert stored_message_id(first) != stored_message_id(second)


def test_the_limit_counts_bytes_so_non_ascii_ids_are_bounded_too():
    original = f"<{'é' * 800}@x.example>"  # 800 characters, 1,600 bytes
    stored = stored_message_id(original)
    assert stored != original and len(stored.encode()) <= MAX_MESSAGE_ID


# --- the service: where mail ids enter the core -----------------------------------------------


async def test_the_service_stores_and_answers_a_long_id_in_its_short_form():
    world = World()
    original = long_id()
    incoming = dataclasses.replace(mail(), message_id=original)
    number = (await world.receive(incoming, acknowledge=True)).ticket
    stored = stored_message_id(original)
    assert stored in world.repo.message_ids(number)
    assert original not in world.repo.message_ids(number)
    (entry,) = world.repo.entries(number, "mail_in")
    assert entry.data["message_id"] == stored
    (ack,) = world.repo.outbox(number)
    assert ack.payload["in_reply_to"] == stored and ack.payload["references"] == [stored]


# --- database_unavailable ----------------------------------------------------------------------


def wrapped(error: Exception) -> DBAPIError:
    """`error` from psycopg as SQLAlchemy hands it over."""
    return DBAPIError.instance("INSERT INTO mail_messages …", {}, error, psycopg.Error)


@pytest.mark.parametrize(
    "error",
    [
        psycopg.errors.ProgramLimitExceeded("index row size 6032 exceeds btree maximum 2704"),
        psycopg.errors.StringDataRightTruncation("value too long"),
        psycopg.errors.UniqueViolation("duplicate key"),
    ],
    ids=["54000-program-limit", "22001-data", "23505-integrity"],
)
def test_an_error_caused_by_the_data_is_not_an_outage(error):
    assert not database_unavailable(wrapped(error))
    assert not database_unavailable(error)  # as psycopg raises it, unwrapped


def test_program_limit_is_operational_for_sqlalchemy_yet_not_an_outage():
    error = wrapped(psycopg.errors.ProgramLimitExceeded("index row too big"))
    assert isinstance(error, OperationalError)
    assert not database_unavailable(error)


@pytest.mark.parametrize(
    "error",
    [
        psycopg.OperationalError("connection refused"),  # no SQLSTATE: never reached
        psycopg.errors.AdminShutdown("terminating connection due to administrator command"),
        psycopg.errors.CannotConnectNow("the database system is starting up"),
        psycopg.errors.SerializationFailure("could not serialize access"),
    ],
    ids=["refused", "57P01-restart", "57P03-starting", "40001-serialization"],
)
def test_connection_losses_and_restarts_stay_outages(error):
    assert database_unavailable(wrapped(error))


def test_sqlite_locked_past_its_busy_timeout_stays_an_outage():
    error = DBAPIError.instance(
        "BEGIN IMMEDIATE", {}, sqlite3.OperationalError("database is locked"), sqlite3.Error
    )
    assert isinstance(error, OperationalError) and database_unavailable(error)


def test_a_connection_invalidated_is_an_outage_whatever_its_code():
    error = wrapped(psycopg.errors.ProgramLimitExceeded("x"))
    error.connection_invalidated = True
    assert database_unavailable(error)


# --- the processor, on SQLite and on the stack's PostgreSQL ------------------------------------


def raw_mail(subject: str, message_id: str, *headers: str, sender: str = "marta@example.net"):
    lines = [f"From: {sender}", f"To: {OWN}", f"Subject: {subject}", f"Message-ID: {message_id}"]
    return ("\r\n".join([*lines, *headers]) + "\r\n\r\nHola\r\n").encode()


_uids = iter(range(1, 1_000_000))


async def store(repo, *raws: bytes) -> list[int]:
    rows = [(next(_uids), raw) for raw in raws]
    async with repo.connection() as conn:
        await inbound.store_many(conn, "INBOX", 1, rows)
        found = await conn.execute(
            select(I.c.id).where(I.c.uid.in_([uid for uid, _ in rows])).order_by(I.c.uid)
        )
        return [row[0] for row in found]


async def states(repo, ids: list[int]) -> list[tuple]:
    async with repo.connection() as conn:
        found = await conn.execute(
            select(I.c.state, I.c.ticket_id, I.c.error).where(I.c.id.in_(ids)).order_by(I.c.id)
        )
        return [tuple(row) for row in found]


async def stored_ids(repo) -> list[str]:
    async with repo.connection() as conn:
        return [row[0] for row in await conn.execute(select(M.c.message_id))]


@pytest.fixture
async def sandbox():
    made = ParseSandbox(SandboxSettings(timeout=30, memory=256 * MB, workers=1))
    yield made
    await made.close()


def processor_on(repo, sandbox: ParseSandbox) -> MailProcessor:
    ids = MessageIds("secret" * 4, "example.org")
    clock = FakeClock(datetime.now(UTC))
    service = TicketService(repo, ids, ServiceSettings(own_address=OWN), clock=clock)
    settings = MailSettings(own_address=OWN, prefix="suport", ack_limit_per_day=5, message_ids=ids)
    return MailProcessor(repo, service, settings, parser=sandbox)


async def test_a_6000_character_message_id_becomes_a_ticket_and_the_next_mail_goes_on(
    db_url, sandbox
):
    """On PostgreSQL, without the rule, the first pass raised and every later one too."""
    original = long_id()
    async with app_repository(db_url) as repo:
        processor = processor_on(repo, sandbox)
        first = await store(
            repo,
            raw_mail("abans", "<abans@example.net>"),
            raw_mail("llarg", original),
            raw_mail("després", "<despres@example.net>", sender="pere@example.net"),
        )
        await processor.process_pending()
        done = await states(repo, first)
        assert [state for state, _, _ in done] == ["done", "done", "done"], done
        ticket = done[1][1]
        assert stored_message_id(original) in await stored_ids(repo)
        assert all(len(i.encode()) <= MAX_MESSAGE_ID + 2 for i in await stored_ids(repo))

        # A reply quoting the long id is threaded into its ticket; a copy of it is known.
        later = await store(
            repo,
            raw_mail("Re: llarg", "<resposta@example.net>", f"In-Reply-To: {original}"),
            raw_mail("llarg", original),
        )
        await processor.process_pending()
        assert await states(repo, later) == [("done", ticket, None), ("duplicate", ticket, None)]


async def test_a_mail_postgresql_refuses_is_quarantined_with_the_reason_and_the_next_goes_on(
    pg_url, sandbox, monkeypatch
):
    """Whatever data error still reaches the database (here: the id rule switched off, so
    the real index refuses the row) is the mail's: quarantined, never retried for ever."""
    monkeypatch.setattr("exobot.core.service.stored_message_id", lambda value: value)
    monkeypatch.setattr(processor_module, "stored_message_id", lambda value: value)
    async with app_repository(pg_url) as repo:
        processor = processor_on(repo, sandbox)
        ids = await store(
            repo,
            raw_mail("abans", "<abans@example.net>"),
            raw_mail("llarg", long_id()),
            raw_mail("després", "<despres@example.net>", sender="pere@example.net"),
        )
        await processor.process_pending()  # returns: the pass is not taken for an outage
        before, refused, after = await states(repo, ids)
        assert before[0] == after[0] == "done"
        assert refused[0] == "quarantined" and "ProgramLimitExceeded" in refused[2], refused


async def test_a_data_error_quarantines_the_mail_on_sqlite_too(repo, sandbox, monkeypatch):
    """SQLite has no index limit: the error PostgreSQL gives is raised where it would be."""
    real = SqlUnitOfWork.record_message

    async def record_message(self, message_id, ticket, direction, entry_id):
        if "refused" in message_id:
            raise wrapped(psycopg.errors.ProgramLimitExceeded("index row size 6032 exceeds"))
        return await real(self, message_id, ticket, direction, entry_id)

    monkeypatch.setattr(SqlUnitOfWork, "record_message", record_message)
    processor = processor_on(repo, sandbox)
    ids = await store(
        repo,
        raw_mail("abans", "<abans@example.net>"),
        raw_mail("refusat", "<refused@example.net>"),
        raw_mail("després", "<despres@example.net>", sender="pere@example.net"),
    )
    await processor.process_pending()
    before, refused, after = await states(repo, ids)
    assert before[0] == after[0] == "done"
    assert refused[0] == "quarantined" and "index row size" in refused[2]


@pytest.fixture
def pg_url(stack) -> str:
    if stack.postgres_port is None:
        pytest.skip("the test stack runs without PostgreSQL (EXOBOT_STACK_POSTGRES / install)")
    return stack.postgres_url(f"t_{uuid.uuid4().hex[:16]}")


async def test_database_unavailable_on_real_postgresql_errors(pg_url):
    """The errors as the stack's PostgreSQL and SQLAlchemy really give them."""
    engine = create_engine(pg_url)
    try:
        async with engine.connect() as conn:
            await conn.execute(text("CREATE TEMP TABLE ids (v text)"))
            await conn.execute(text("CREATE INDEX ON ids (v)"))
            with pytest.raises(OperationalError) as refused:
                await conn.execute(text("INSERT INTO ids VALUES (:v)"), {"v": long_id()})
            assert isinstance(refused.value.orig, psycopg.errors.ProgramLimitExceeded)
            assert not database_unavailable(refused.value)
            await conn.rollback()
            await conn.execute(text("CREATE TEMP TABLE one (v int PRIMARY KEY)"))
            with pytest.raises(IntegrityError) as duplicate:
                await conn.execute(text("INSERT INTO one VALUES (1), (1)"))
            assert not database_unavailable(duplicate.value)
            await conn.rollback()

        # The server ends the session (what a restart does to every open connection).
        async with engine.connect() as victim, engine.connect() as killer:
            pid = (await victim.execute(text("SELECT pg_backend_pid()"))).scalar_one()
            await victim.commit()
            # With a timeout it returns once the session is gone (PostgreSQL 14+): no race.
            ended_in_time = await killer.execute(
                text("SELECT pg_terminate_backend(:pid, 10000)"), {"pid": pid}
            )
            assert ended_in_time.scalar_one()
            with pytest.raises(OperationalError) as ended:
                await victim.execute(text("SELECT 1"))
            assert database_unavailable(ended.value)
    finally:
        await engine.dispose()

    # Nobody listens there: the server is down.
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    down = make_url(pg_url).set(port=port).render_as_string(hide_password=False)
    gone = create_engine(down)
    try:
        with pytest.raises(OperationalError) as refused_connection:
            async with gone.connect() as conn:
                await conn.execute(text("SELECT 1"))
        assert database_unavailable(refused_connection.value)
    finally:
        await gone.dispose()
