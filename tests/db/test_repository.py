"""The SQL storage on both supported backends: SQLite (default) and PostgreSQL (the stack's).

Every test runs twice through the `db_url` fixture: an SQLite file in tmp_path, and a fresh
database in the test stack's private PostgreSQL cluster (skipped when the stack runs without
one, see tests/stack_fixtures.py). Each database is built by the real Alembic migrations.
"""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import inspect, select, text
from sqlalchemy.exc import IntegrityError

from exobot.core.intents import MailClass, OpenTicket, ReceiveMail, SetStatus, SetTitle, Take
from exobot.core.model import Actor, EntryKind, IncomingMail, Status, Ticket
from exobot.core.service import ServiceSettings, TicketService
from exobot.db import chat, inbound, outbox
from exobot.db.migrate import alembic_config, core_head, upgrade
from exobot.db.repository import SqlRepository, search_text
from exobot.db.state import get_state, set_state
from exobot.db.tables import OutboxRow
from exobot.mail.msgid import MessageIds

OWN = "suport@example.org"
MEMBER = "marta@example.net"
NEIGHBOUR = "veina@example.net"
OPERATOR = Actor.operator("@anna:example.org")
SETTINGS = ServiceSettings(
    prefix="suport",
    default_queue="suport",
    queues=frozenset({"suport", "tresoreria"}),
    own_address=OWN,
)
TABLES = {
    "tickets", "entries", "participants", "mail_messages", "inbound_mail", "outbox",
    "attachments", "state", "search_index", "alembic_version",
    "handled_keys", "chat_threads", "chat_posts",
    "web_sessions", "login_links", "api_tokens", "direct_rooms", "entry_originals",
    "ticket_aliases", "imported_records",
}  # fmt: skip


# ----------------------------------------------------------------------------- fixtures


class BreakableMessageIds(MessageIds):
    """Real Message-IDs; `fail_next` makes the next mint raise (inside a transaction)."""

    fail_next = False

    def mint(self, ticket: int) -> str:
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("injected failure after the ticket row was inserted")
        return super().mint(ticket)


@pytest.fixture
def message_ids() -> BreakableMessageIds:
    return BreakableMessageIds("secret" * 4, "example.org")


@pytest.fixture
def service(repo: SqlRepository, message_ids: MessageIds) -> TicketService:
    return TicketService(repo, message_ids, SETTINGS)


def incoming(
    sender: str = MEMBER,
    *,
    subject: str = "No em funciona internet",
    body: str = "Hola, des d'ahir no tinc connexió.",
    cc: tuple[str, ...] = (),
    inbound_id: int | None = None,
    message_id: str | None = None,
) -> IncomingMail:
    return IncomingMail(
        message_id=message_id or f"<{uuid.uuid4().hex}@member.example.net>",
        sender=sender,
        sender_name="Marta",
        requestor=sender,
        subject=subject,
        body=body,
        cc=cc,
        inbound_id=inbound_id,
    )


async def receive(
    service: TicketService,
    mail: IncomingMail | None = None,
    *,
    ticket: int | None = None,
    ack: bool = True,
    **mail_fields,
):
    mail = mail or incoming(**mail_fields)
    intent = ReceiveMail(mail, MailClass.MEMBER, ticket=ticket, acknowledge=ack)
    return await service.apply(Actor.member(mail.sender), intent)


async def ticket_ids(repo: SqlRepository) -> list[int]:
    async with repo.connection() as conn:
        return [r[0] for r in await conn.execute(text("SELECT id FROM tickets ORDER BY id"))]


async def delete_ticket(repo: SqlRepository, number: int) -> None:
    """Remove a ticket and everything that refers to it (as a retention job would)."""
    async with repo.connection() as conn:
        for table in (
            "search_index", "attachments", "participants", "mail_messages", "outbox", "entries",
        ):  # fmt: skip
            await conn.execute(text(f"DELETE FROM {table} WHERE ticket_id = :t"), {"t": number})
        await conn.execute(text("DELETE FROM tickets WHERE id = :t"), {"t": number})


# One-shot reads, each in its own read-only transaction (the repository itself keeps only
# get_ticket, history, search and count_tickets as conveniences).


async def ticket_for_message(repo: SqlRepository, message_id: str) -> tuple[int, str] | None:
    async with repo.reading() as view:
        return await view.ticket_for_message(message_id)


async def participants(repo: SqlRepository, ticket: int) -> set[str]:
    async with repo.reading() as view:
        return await view.participants(ticket)


async def acks_since(repo: SqlRepository, address: str, since: datetime) -> int:
    async with repo.reading() as view:
        return await view.acks_since(address, since)


# ----------------------------------------------------------------------------- schema


async def test_migrations_build_the_whole_schema_and_are_idempotent(engine, db_url):
    async with engine.connect() as conn:
        names = set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
        version = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar_one()
    assert names >= TABLES
    head = core_head(alembic_config(db_url))  # installed plugins' branches left aside
    assert version == head
    await asyncio.to_thread(upgrade, db_url)  # a second run (every start does one) is a no-op
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM alembic_version"))).scalar_one() == 1


# ----------------------------------------------------------------------------- tickets


async def test_receive_mail_creates_tickets_numbered_from_one(service, repo):
    outcomes = [await receive(service, subject=f"Problema {n}") for n in range(3)]
    assert [o.ticket for o in outcomes] == [1, 2, 3]
    assert all(o.created and o.status is Status.NEW for o in outcomes)
    assert await repo.count_tickets() == 3

    ticket = await repo.get_ticket(2)
    assert ticket.title == "Problema 1"
    assert ticket.requestor == MEMBER
    assert ticket.created_at.tzinfo is not None  # aware on both backends
    assert ticket.last_member_mail_at is not None
    assert ticket.next_alert_at - ticket.created_at == SETTINGS.new_after

    history = await repo.history(2)
    assert [e.kind for e in history] == [EntryKind.CREATED, EntryKind.MAIL_IN, EntryKind.MAIL_OUT]
    assert history[1].body == "Hola, des d'ahir no tinc connexió."
    assert history[1].data["subject"] == "Problema 1"  # JSON column round trip
    assert history[2].data["template"] == "ack"


async def test_ticket_numbers_are_never_reused(service, repo, message_ids, backend):
    for _ in range(3):
        await receive(service)
    await delete_ticket(repo, 3)  # the newest ticket: a plain MAX(id)+1 would hand out 3 again
    assert await ticket_ids(repo) == [1, 2]
    fourth = await receive(service)
    assert fourth.ticket == 4

    # A transaction that fails after inserting its ticket leaves nothing behind ...
    failing = incoming(body="paraulaunica no hauria de quedar")
    message_ids.fail_next = True
    with pytest.raises(RuntimeError, match="injected failure"):
        await receive(service, failing)
    assert await ticket_ids(repo) == [1, 2, 4]
    assert await ticket_for_message(repo, failing.message_id) is None
    assert await repo.search("paraulaunica") == []

    # ... and the same mail, delivered again, gets a number above every one ever committed.
    # (PostgreSQL's sequence skips the rolled-back number; SQLite's AUTOINCREMENT counter was
    # rolled back with it. Neither number was ever visible, so both are fine.)
    again = await receive(service, failing)
    assert again.ticket == (5 if backend == "sqlite" else 6)
    assert await repo.search("paraulaunica") == [again.ticket]


async def test_concurrent_mails_get_distinct_numbers(service, repo):
    outcomes = await asyncio.gather(*(receive(service, subject=f"S{n}") for n in range(8)))
    numbers = sorted(o.ticket for o in outcomes)
    assert numbers == list(range(1, 9))
    assert await repo.count_tickets() == 8


# ----------------------------------------------------------------------------- threading


async def test_ticket_for_message_finds_in_and_out_ids(service, repo):
    first = incoming()
    created = await receive(service, first)
    ack_id = (await repo.history(created.ticket))[-1].data["message_id"]
    reply = incoming(subject="Re: No em funciona internet")
    await receive(service, reply, ticket=created.ticket)

    assert await ticket_for_message(repo, first.message_id) == (created.ticket, "in")
    assert await ticket_for_message(repo, ack_id) == (created.ticket, "out")
    assert await ticket_for_message(repo, reply.message_id) == (created.ticket, "in")
    assert await ticket_for_message(repo, "<unknown@example.net>") is None
    assert MessageIds("secret" * 4, "example.org").verify(ack_id) == created.ticket

    # A Message-ID seen in both directions (our own mail coming back): "out" wins.
    async with repo.transaction() as uow:
        await uow.record_message(ack_id, created.ticket, "in", None)
    assert await ticket_for_message(repo, ack_id) == (created.ticket, "out")

    async with repo.reading() as view:
        ids = await view.ticket_message_ids(created.ticket)
    assert ids[:3] == [first.message_id, ack_id, reply.message_id]
    async with repo.transaction() as uow:  # a unit of work reads the same way
        assert await uow.ticket_message_ids(created.ticket) == ids
        assert await uow.ticket_for_message(ack_id) == (created.ticket, "out")


async def test_duplicate_message_id_is_refused_and_rolled_back(service, repo):
    mail = incoming()
    created = await receive(service, mail, ack=False)
    with pytest.raises(IntegrityError):
        async with repo.transaction() as uow:
            await uow.add_participant(created.ticket, "nou@example.net", "test")
            await uow.record_message(mail.message_id, created.ticket, "in", None)
    # The whole transaction is gone, not only the failing statement.
    assert await participants(repo, created.ticket) == {MEMBER}
    # The connection went back to the pool usable (PostgreSQL: no "transaction aborted").
    assert await repo.count_tickets() == 1


async def test_concurrent_changes_of_one_ticket_are_not_lost(service, repo):
    """Two transactions read-modify-write the same ticket: both changes survive (the second
    waits for the first: SQLite's BEGIN IMMEDIATE, PostgreSQL's SELECT ... FOR UPDATE)."""
    number = (await receive(service, ack=False)).ticket
    started = asyncio.Event()

    async def second() -> None:
        started.set()
        async with repo.transaction() as uow:
            ticket = await uow.get_ticket(number)
            ticket.queue = "tresoreria"
            await uow.update_ticket(ticket)

    async with repo.transaction() as uow:
        ticket = await uow.get_ticket(number)
        task = asyncio.create_task(second())
        await started.wait()
        await asyncio.sleep(0.3)  # the second transaction reads (or waits to) meanwhile
        ticket.owner = "@anna:example.org"
        await uow.update_ticket(ticket)
    await task
    final = await repo.get_ticket(number)
    assert (final.owner, final.queue) == ("@anna:example.org", "tresoreria")


async def title_index_rows(repo: SqlRepository, number: int) -> list[str]:
    """The ticket's title rows in the search index (search_text() words on PostgreSQL)."""
    async with repo.connection() as conn:
        rows = await conn.execute(
            text("SELECT content FROM search_index WHERE ticket_id = :t AND entry_id = 0"),
            {"t": number},
        )
        return [r[0] for r in rows]


async def test_update_ticket_reindexes_the_title_only_when_told(service, repo):
    def indexed(title: str) -> list[str]:
        return [title if repo.sqlite else search_text(title)]

    # (The mail's subject is indexed with its entry: search for words only titles have.)
    number = (await receive(service, subject="Impressora", ack=False)).ticket
    assert await title_index_rows(repo, number) == indexed("Impressora")
    async with repo.transaction() as uow:
        ticket = await uow.get_ticket(number)
        ticket.title = "Escàner espatllat"
        ticket.queue = "tresoreria"
        await uow.update_ticket(ticket)  # title_changed defaults to True
    assert (await repo.get_ticket(number)).queue == "tresoreria"
    assert await title_index_rows(repo, number) == indexed("Escàner espatllat")
    assert await repo.search("escàner espatllat") == [number]

    async with repo.transaction() as uow:
        ticket = await uow.get_ticket(number)
        ticket.owner = "@anna:example.org"
        await uow.update_ticket(ticket, title_changed=False)
    assert (await repo.get_ticket(number)).owner == "@anna:example.org"
    assert await title_index_rows(repo, number) == indexed("Escàner espatllat")  # left alone

    # title_changed=False is trusted: the caller says there is nothing to re-index.
    async with repo.transaction() as uow:
        ticket = await uow.get_ticket(number)
        ticket.title = "Ratolí"
        await uow.update_ticket(ticket, title_changed=False)
    assert (await repo.get_ticket(number)).title == "Ratolí"
    assert await title_index_rows(repo, number) == indexed("Escàner espatllat")
    assert await repo.search("ratolí") == []


# ----------------------------------------------------------------------------- reading


async def test_read_only_transaction_does_not_wait_for_a_writer(service, repo, backend, db_url):
    """A read view inside an open write transaction (another connection) answers at once and
    sees the last committed state. On SQLite it begins DEFERRED: it neither takes nor waits for
    the write lock the writer's BEGIN IMMEDIATE holds (a second writer would wait up to the
    30 s busy timeout)."""
    await receive(service, ack=False)

    async def count() -> int:
        async with repo.reading() as view:
            return await view.count_tickets()

    async with repo.transaction() as uow:
        now = datetime.now(UTC)
        await uow.create_ticket(
            Ticket(number=0, title="No confirmat", requestor=MEMBER, queue="suport",
                   status=Status.NEW, created_at=now, updated_at=now)
        )  # fmt: skip
        if backend == "sqlite":  # the writer really holds the write lock
            other = sqlite3.connect(db_url.removeprefix("sqlite:///"), timeout=0)
            try:
                with pytest.raises(sqlite3.OperationalError, match="locked"):
                    other.execute("BEGIN IMMEDIATE")
            finally:
                other.close()
        assert await asyncio.wait_for(count(), 2) == 1  # the uncommitted ticket is not seen
        assert await uow.count_tickets() == 2  # the writer sees its own
    assert await asyncio.wait_for(count(), 2) == 2


async def test_a_read_view_is_one_consistent_snapshot(service, repo):
    """Everything read through one view comes from the same snapshot, even when a writer
    commits in between (SqlRepository.reading promises "a consistent view")."""
    number = (await receive(service, ack=False)).ticket
    async with repo.reading() as view:
        assert await view.count_tickets() == 1  # the snapshot starts with the first read
        await receive(service, ticket=number, cc=(NEIGHBOUR,), ack=False)  # commits meanwhile
        await receive(service, subject="Un altre", ack=False)
        assert await view.count_tickets() == 1
        assert await view.participants(number) == {MEMBER}
        assert [e.kind for e in await view.history(number)] == [
            EntryKind.CREATED, EntryKind.MAIL_IN,
        ]  # fmt: skip
    assert await repo.count_tickets() == 2
    assert await participants(repo, number) == {MEMBER, NEIGHBOUR}


# ----------------------------------------------------------------------------- participants


async def test_participants(service, repo):
    created = await receive(service, cc=("Veina@Example.NET", OWN, "tercer@example.net"))
    assert await participants(repo, created.ticket) == {MEMBER, NEIGHBOUR, "tercer@example.net"}

    # A follow-up adds its new Cc; an existing participant is not duplicated.
    await receive(service, ticket=created.ticket, cc=("quart@example.net", NEIGHBOUR))
    assert await participants(repo, created.ticket) == {
        MEMBER, NEIGHBOUR, "tercer@example.net", "quart@example.net",
    }  # fmt: skip
    async with repo.transaction() as uow:
        await uow.add_participant(created.ticket, MEMBER, "again")
    async with repo.connection() as conn:
        count = (
            await conn.execute(
                text("SELECT count(*) FROM participants WHERE ticket_id = :t"),
                {"t": created.ticket},
            )
        ).scalar_one()
    assert count == 4
    assert await participants(repo, created.ticket + 1) == set()


async def test_concurrent_add_participant_of_the_same_address(repo, service, engine):
    """Two transactions adding the same participant: the second must not fail.

    On SQLite, BEGIN IMMEDIATE makes the second wait for the first; on PostgreSQL the second's
    INSERT waits for the first's uncommitted row, then ON CONFLICT DO NOTHING skips it."""
    created = await receive(service, ack=False)
    started = asyncio.Event()

    async def second() -> None:
        started.set()
        async with repo.transaction() as uow:
            await uow.add_participant(created.ticket, "nou@example.net", "second")

    async with repo.transaction() as uow:
        await uow.add_participant(created.ticket, "nou@example.net", "first")
        task = asyncio.create_task(second())
        await started.wait()
        await asyncio.sleep(0.3)  # let it reach its INSERT (PostgreSQL) / BEGIN (SQLite)
    await task
    assert await participants(repo, created.ticket) == {MEMBER, "nou@example.net"}
    async with repo.connection() as conn:
        source = (
            await conn.execute(
                text("SELECT source FROM participants WHERE ticket_id = :t AND address = :a"),
                {"t": created.ticket, "a": "nou@example.net"},
            )
        ).scalar_one()
    assert source == "first"  # the existing row is left as it is


# ----------------------------------------------------------------------------- acks


async def test_acks_since(service, repo):
    before = datetime.now(UTC) - timedelta(seconds=1)
    await receive(service)
    await receive(service, subject="Un altre problema")
    await receive(service, sender=NEIGHBOUR)
    await receive(service, sender="silenci@example.net", ack=False)
    after = datetime.now(UTC) + timedelta(seconds=1)

    assert await acks_since(repo, MEMBER, before) == 2
    assert await acks_since(repo, NEIGHBOUR, before) == 1
    assert await acks_since(repo, "silenci@example.net", before) == 0
    assert await acks_since(repo, MEMBER, after) == 0


async def test_acks_from_a_sender_whatever_the_reply_to(service, repo):
    """The acknowledgements on the tickets one From opened, to whichever Reply-To they went
    (another helpdesk answering from reply+<id>@), not those of other senders' tickets."""
    before = datetime.now(UTC) - timedelta(seconds=1)
    helpdesk = "support@helpdesk.example.com"
    for n in range(3):
        mail = replace(incoming(helpdesk), requestor=f"reply+{n}@helpdesk.example.com")
        await receive(service, mail)
    await receive(service, sender=NEIGHBOUR)
    after = datetime.now(UTC) + timedelta(seconds=1)

    async with repo.reading() as view:
        assert await view.acks_from_since(helpdesk, before) == 3
        assert await view.acks_from_since(NEIGHBOUR, before) == 1
        assert await view.acks_from_since("reply+0@helpdesk.example.com", before) == 0
        assert await view.acks_from_since(helpdesk, after) == 0


async def test_sender_counts_are_openings_and_acks_in_one_statement(service, repo):
    before = datetime.now(UTC) - timedelta(seconds=1)
    await receive(service)
    await receive(service, subject="Un altre problema")
    await receive(service, sender=NEIGHBOUR)
    after = datetime.now(UTC) + timedelta(seconds=1)

    async with repo.reading() as view:
        for address, since_hour, since_day in (
            (MEMBER, before, before),
            (MEMBER, after, before),
            (MEMBER, before, after),
            (NEIGHBOUR, before, before),
            ("silenci@example.net", before, before),
        ):
            expected = (
                await view.openings_since(address, since_hour),
                await view.acks_since(address, since_day),
            )
            assert await view.sender_counts(address, since_hour, since_day) == expected
        assert await view.sender_counts(MEMBER, before, before) == (2, 2)


# ----------------------------------------------------------------------------- search


async def test_search_finds_words_of_bodies_and_titles(service, repo):
    one = (
        await receive(service, subject="Impressora", body="El router parpelleja en vermell")
    ).ticket
    two = (
        await receive(service, subject="Correu", body="No puc enviar cap e-mail pel router")
    ).ticket
    assert await repo.search("parpelleja") == [one]
    assert await repo.search("router") == [two, one]  # newest first
    assert await repo.search("ROUTER enviar") == [two]  # all the words, any case
    assert await repo.search("router inexistent") == []
    assert await repo.search("e-mail") == [two]
    assert await repo.search("impressora") == [one]  # the title
    assert await repo.search("   ") == []
    assert await repo.search("router", limit=1) == [two]


async def test_search_follows_a_changed_title(service, repo):
    opened = await service.apply(
        OPERATOR, OpenTicket(MEMBER, "Factura duplicada", text="Ha trucat per telèfon")
    )
    number = opened.ticket
    assert await repo.search("duplicada") == [number]
    await service.apply(OPERATOR, SetTitle(number, "Rebut retornat pel banc"))
    assert await repo.search("retornat") == [number]
    assert await repo.search("duplicada") == []  # the old title's index row is gone
    assert await repo.search("telèfon") == [number]  # the comment is still indexed
    async with repo.connection() as conn:
        rows = (
            await conn.execute(
                text("SELECT count(*) FROM search_index WHERE ticket_id = :t AND entry_id = 0"),
                {"t": number},
            )
        ).scalar_one()
    assert rows == 1  # exactly one title row


async def test_search_with_the_same_accents_and_case(service, repo):
    number = (await receive(service, body="Des d'ahir no tinc connexió a l'oficina")).ticket
    assert await repo.search("connexió") == [number]
    assert await repo.search("CONNEXIÓ") == [number]


async def test_search_ignores_diacritics(service, repo):
    number = (await receive(service, body="Des d'ahir no tinc connexió a l'oficina")).ticket
    assert await repo.search("connexio") == [number]
    assert await repo.search("ÒFICINA") == [number]


async def test_search_catalan_accents_both_ways(service, repo):
    # Written with accents, searched without, and the other way round; the same on both
    # backends (FTS5's remove_diacritics on SQLite, search_text + f_unaccent on PostgreSQL).
    marti = (await receive(service, subject="Trucada", body="Ha trucat en Martí Puigdomènech"))
    plain = (await receive(service, subject="Sense accents", body="la connexio no va, en Marti"))
    marti, plain = marti.ticket, plain.ticket
    assert await repo.search("Martí") == [plain, marti]
    assert await repo.search("MARTI") == [plain, marti]
    assert await repo.search("connexió") == [plain]
    assert await repo.search("puigdomenech") == [marti]
    assert await repo.search("PUIGDOMÈNECH martí") == [marti]
    assert await repo.search("marti connexió") == [plain]
    assert await repo.search("mart") == []  # whole words: no prefix matching


async def test_search_words_split_as_fts5_splits_them(service, repo):
    # Addresses, hosts, the Catalan l·l and apostrophes are several words on both backends:
    # a part finds the ticket, and the whole is a phrase of those words in that order.
    number = (
        await receive(
            service,
            subject="Avaria",
            body="Escriu a jordi@example.org, mireu www.guifi.net/node?x=1, la col·lecció"
            " d'enllaços",
        )
    ).ticket
    for query in ("example", "jordi@example.org", "guifi.net", "node", "col·lecció", "leccio",
                  "col", "enllacos", "d'enllaços"):  # fmt: skip
        assert await repo.search(query) == [number], query
    assert await repo.search("org@jordi") == []  # a phrase keeps its order
    assert await repo.search("guifi % net") == [number]  # a term of no word is left out
    assert await repo.search("% *") == []  # no word at all: nothing matches
    async with repo.reading() as view:  # nothing, rather than no filter at all
        assert (await view.list_tickets(words="% *"))[1] == 0
        assert (await view.list_tickets(words="guifi % net"))[1] == 1


@pytest.mark.parametrize(
    "query",
    ['"', '""', "*", "router*", "OR", "router OR", "NEAR(", "NEAR(router oficina, 2)", "AND",
     "NOT", "-router", "^router", "content:router", "(", ")", "'", "\\", "router\\", "%", "_",
     "{x}", ":", "+"],
)  # fmt: skip
async def test_search_syntax_characters_are_literal(service, repo, query):
    # No query is (or holds) a word of this mail.
    await receive(service, subject="Aixeta", body="Bon dia la aixeta degota")
    result = await repo.search(query)
    assert result == []  # no raise, and no operator/wildcard matched the unrelated ticket


async def test_search_operator_words_are_plain_words(service, repo):
    gold = (await receive(service, body="Or i plata per a la tómbola")).ticket
    near = (await receive(service, body="Viu near the station")).ticket
    await receive(service, body="Res a veure")
    assert await repo.search("OR") == [gold]
    assert await repo.search("plata OR") == [gold]
    assert await repo.search("NEAR") == [near]


async def test_search_like_wildcards_in_input_are_literal(service, repo):
    await receive(service, body="Costa 1000 euros i el codi és ab")
    assert await repo.search("100%") == []
    assert await repo.search("a_") == []
    assert await repo.search("1000") != []


# ----------------------------------------------------------------------------- inbound


RAW = b"From: a@example.net\r\nSubject: hola\r\n\r\nbinari: \xff\x00\xfe\r\n"


async def stored(conn, mailbox: str = "INBOX") -> dict[tuple[int, int], tuple[int, bytes]]:
    """The stored mails of a mailbox: (uidvalidity, uid) → (id, raw)."""
    rows = await conn.execute(
        text("SELECT uidvalidity, uid, id, raw FROM inbound_mail WHERE mailbox = :m"),
        {"m": mailbox},
    )
    return {(r[0], r[1]): (r[2], bytes(r[3])) for r in rows}


async def store(repo: SqlRepository, mailbox: str, uidvalidity: int, uids: list[int]) -> list[int]:
    """Store RAW under each UID in one batch; the new rows' ids, in the order of `uids`."""
    async with repo.connection() as conn:
        await inbound.store_many(conn, mailbox, uidvalidity, [(uid, RAW) for uid in uids])
        rows = await stored(conn, mailbox)
    return [rows[(uidvalidity, uid)][0] for uid in uids]


async def test_inbound_store_position_and_duplicates(repo):
    async with repo.connection() as conn:
        assert await inbound.get_position(conn, "INBOX") is None
        await inbound.store_many(conn, "INBOX", 7, [])  # nothing fetched: nothing happens
        assert await inbound.get_position(conn, "INBOX") is None
        await inbound.store_many(conn, "INBOX", 7, [(1, RAW)])
        assert await inbound.get_position(conn, "INBOX") == inbound.ImapPosition(7, 1)
        first = (await stored(conn))[(7, 1)][0]

        # Stored again (alone, or in a batch with new mail): neither duplicated nor changed.
        await inbound.store_many(conn, "INBOX", 7, [(1, b"other bytes")])
        await inbound.store_many(conn, "INBOX", 7, [(3, RAW + b"3"), (1, b"other bytes")])
        assert await inbound.get_position(conn, "INBOX") == inbound.ImapPosition(7, 3)
        # A lower UID arriving late is stored but never moves the position back.
        await inbound.store_many(conn, "INBOX", 7, [(2, RAW + b"2")])
        assert await inbound.get_position(conn, "INBOX") == inbound.ImapPosition(7, 3)
        rows = await stored(conn)
        assert set(rows) == {(7, 1), (7, 2), (7, 3)}
        assert rows[(7, 1)] == (first, RAW)
        third, second = rows[(7, 3)][0], rows[(7, 2)][0]

        # One batch advances the position to its highest UID, whatever the order.
        await inbound.store_many(conn, "INBOX", 7, [(6, RAW + b"6"), (4, RAW + b"4")])
        assert await inbound.get_position(conn, "INBOX") == inbound.ImapPosition(7, 6)
        await inbound.store_many(conn, "INBOX", 7, [(5, RAW + b"5")])
        assert await inbound.get_position(conn, "INBOX") == inbound.ImapPosition(7, 6)

        # Another mailbox has its own position; a new UIDVALIDITY resets it (down, too).
        await inbound.store_many(conn, "Spam", 1, [(50, RAW)])
        assert await inbound.get_position(conn, "INBOX") == inbound.ImapPosition(7, 6)
        await inbound.store_many(conn, "INBOX", 8, [(1, RAW + b"8")])
        assert await inbound.get_position(conn, "INBOX") == inbound.ImapPosition(8, 1)
        assert await inbound.get_position(conn, "Spam") == inbound.ImapPosition(1, 50)
        rows = await stored(conn)
        # Same UID, new UIDVALIDITY: a different message, stored beside the old one.
        assert rows[(8, 1)][1] == RAW + b"8" and rows[(7, 1)] == (first, RAW)
        assert len(rows) == 7
        pending = await inbound.pending(conn)

    expected = [
        (first, RAW), (third, RAW + b"3"), (second, RAW + b"2"), rows[(7, 6)], rows[(7, 4)],
        rows[(7, 5)],
    ]  # fmt: skip
    assert pending[:6] == expected  # oldest first, raw bytes as stored
    assert [i for i, _raw in pending] == sorted(i for i, _raw in pending)
    assert len(pending) == 8  # with Spam's and INBOX 8/1
    assert all(isinstance(raw, bytes) for _id, raw in pending)
    async with repo.reading() as view:  # as the processor reads them
        assert await inbound.pending(view.conn, limit=2) == expected[:2]
        assert await inbound.load_raw(view.conn, first) == (RAW, "received")
        assert await inbound.load_raw(view.conn, third) == (RAW + b"3", "received")
        assert await inbound.load_raw(view.conn, 10_000) is None


async def test_inbound_pending_default_limit(repo):
    ids = await store(repo, "INBOX", 1, list(range(1, 26)))
    async with repo.reading() as view:
        pending = await inbound.pending(view.conn)
    assert [i for i, _raw in pending] == ids[:20]


async def test_inbound_store_rolls_back_with_its_transaction(repo):
    with pytest.raises(RuntimeError):
        async with repo.connection() as conn:
            await inbound.store_many(conn, "INBOX", 7, [(9, RAW), (10, RAW)])
            raise RuntimeError("crash before commit")
    async with repo.connection() as conn:
        assert await inbound.pending(conn) == []
        assert await inbound.get_position(conn, "INBOX") is None


async def test_concurrent_store_of_the_same_mails(repo):
    """Two passes storing the same batch at once: the second neither fails nor duplicates."""
    started = asyncio.Event()

    async def second() -> None:
        started.set()
        async with repo.connection() as conn:
            await inbound.store_many(conn, "INBOX", 7, [(1, b"second"), (2, b"second")])

    async with repo.connection() as conn:
        await inbound.store_many(conn, "INBOX", 7, [(1, RAW), (2, RAW)])
        task = asyncio.create_task(second())
        await started.wait()
        await asyncio.sleep(0.3)  # let it reach its INSERT (PostgreSQL) / BEGIN (SQLite)
    await task
    async with repo.connection() as conn:
        rows = await stored(conn)
        position = await inbound.get_position(conn, "INBOX")
    assert {key: raw for key, (_id, raw) in rows.items()} == {(7, 1): RAW, (7, 2): RAW}
    assert position == inbound.ImapPosition(7, 2)


async def test_inbound_mark_list_and_count(repo):
    ids = await store(repo, "INBOX", 1, [1, 2, 3, 4])
    async with repo.connection() as conn:
        await inbound.mark_inbound(
            conn, ids[0], "done", ticket=12, message_id="<x@y>", subject="s" * 600, sender="a@b"
        )
        await inbound.mark_inbound(conn, ids[1], inbound.QUARANTINED, error="parse error")
        await inbound.mark_inbound(conn, ids[1], inbound.QUARANTINED, error="parse error again")
        await inbound.mark_inbound(conn, ids[3], inbound.QUARANTINED, error="other")
    async with repo.connection() as conn:
        done = await inbound.get_inbound(conn, ids[0])
        quarantined = await inbound.list_inbound(conn)
        everything = await inbound.list_inbound(conn, state=None)
        counts = await inbound.count_by_state(conn)
        pending = await inbound.pending(conn)
        missing = await inbound.get_inbound(conn, 10_000)
    assert done.state == "done" and done.ticket_id == 12 and done.message_id == "<x@y>"
    assert done.subject == "s" * 500  # truncated
    assert done.size == len(RAW)
    assert done.received_at.tzinfo is not None
    assert [q.id for q in quarantined] == [ids[3], ids[1]]  # newest first
    assert quarantined[1].attempts == 2 and quarantined[1].error == "parse error again"
    assert [s.id for s in everything] == ids[::-1]
    assert counts == {"done": 1, "quarantined": 2, "received": 1}
    assert pending == [(ids[2], RAW)]
    assert missing is None


async def test_receive_mail_marks_its_inbound_row_done(service, repo):
    [inbound_id] = await store(repo, "INBOX", 1, [1])
    created = await receive(service, inbound_id=inbound_id)
    async with repo.connection() as conn:
        row = await inbound.get_inbound(conn, inbound_id)
    assert (row.state, row.ticket_id) == ("done", created.ticket)


# ----------------------------------------------------------------------------- outbox


async def queue(repo: SqlRepository, ticket: int | None, name: str, kind: str = "mail") -> int:
    async with repo.transaction() as uow:
        return await uow.queue_outbox(kind, ticket, {"name": name, "n": [1, "dos"]})


async def due_names(repo: SqlRepository, now: datetime, kind: str = "mail") -> list[str]:
    async with repo.connection() as conn:
        return [item.payload["name"] for item in await outbox.due(conn, kind, now)]


async def test_outbox_due_keeps_each_tickets_order(repo):
    await queue(repo, 1, "m0", kind="matrix")  # another kind never blocks mail
    a1 = await queue(repo, 1, "a1")
    b1 = await queue(repo, 2, "b1")
    a2 = await queue(repo, 1, "a2")
    c = await queue(repo, None, "c")
    await queue(repo, 1, "a3")
    now = datetime.now(UTC) + timedelta(seconds=1)

    assert await due_names(repo, now) == ["a1", "b1", "c"]
    assert await due_names(repo, now, kind="matrix") == ["m0"]
    async with repo.connection() as conn:
        items = await outbox.due(conn, "mail", now, limit=2)
    assert [i.id for i in items] == [a1, b1]
    assert items[0].payload == {"name": "a1", "n": [1, "dos"]} and items[0].attempts == 0

    # a1 fails temporarily and is postponed: a2 still waits behind it, even though a1 is
    # not due, while other tickets go on.
    later = now + timedelta(hours=1)
    async with repo.connection() as conn:
        await outbox.mark_retry(conn, a1, "451 try later", later)
        await outbox.mark_sent(conn, b1)
        await outbox.mark_failed(conn, c, "550 no such user " + "x" * 3000)
    assert await due_names(repo, now) == []
    assert await due_names(repo, later + timedelta(seconds=1)) == ["a1"]

    async with repo.connection() as conn:
        await outbox.mark_sent(conn, a1)
    assert await due_names(repo, now) == ["a2"]
    async with repo.connection() as conn:
        await outbox.mark_failed(conn, a2, "550 gone")  # a failed item no longer blocks
    assert await due_names(repo, now) == ["a3"]

    async with repo.connection() as conn:
        rows = {
            r.id: r
            for r in await conn.execute(
                select(OutboxRow.__table__).where(OutboxRow.__table__.c.id.in_([a1, b1, c]))
            )
        }
        counts = await outbox.counts(conn)
    assert (rows[a1].state, rows[a1].attempts, rows[a1].last_error) == ("sent", 2, None)
    assert rows[a1].done_at is not None
    assert (rows[b1].state, rows[b1].attempts) == ("sent", 1)
    assert (rows[c].state, rows[c].attempts) == ("failed", 1)
    assert rows[c].last_error.startswith("550 no such user") and len(rows[c].last_error) == 2000
    assert counts == {("mail", "sent"): 2, ("mail", "failed"): 2, ("mail", "pending"): 1,
                      ("matrix", "pending"): 1}  # fmt: skip


async def test_outbox_due_gives_rows_queued_for_later_the_last_turn(repo):
    """A root edit due now goes after the rows due now, newer ones too (a burst's posts go
    first), until it has waited LATER_YIELDS_FOR past its time."""
    start = datetime.now(UTC)
    async with repo.transaction() as uow:
        await uow.queue_later("mail", 1, {"name": "edit1"}, key="edit", due=start)
    await queue(repo, 2, "post2")
    await queue(repo, None, "answer")
    await queue(repo, 1, "post1")

    soon = datetime.now(UTC) + timedelta(seconds=1)  # every row is due, however slow the queueing
    assert await due_names(repo, soon) == ["post2", "answer", "post1", "edit1"]
    async with repo.connection() as conn:
        first = await outbox.due(conn, "mail", soon, unattached_first=True)
    assert [item.payload["name"] for item in first] == ["answer", "post2", "post1", "edit1"]

    overdue = start + outbox.LATER_YIELDS_FOR + timedelta(seconds=1)
    assert await due_names(repo, overdue) == ["edit1", "post2", "answer", "post1"]


async def test_outbox_next_due_at_skips_items_blocked_behind_a_postponed_one(repo):
    a1 = await queue(repo, 1, "a1")
    await queue(repo, 1, "a2")
    later = datetime.now(UTC) + timedelta(hours=1)
    async with repo.connection() as conn:
        await outbox.mark_retry(conn, a1, "451 try later", later)
        assert await outbox.due(conn, "mail", datetime.now(UTC)) == []
        next_at = await outbox.next_due_at(conn, "mail")
    # a2 waits behind a1: counting it would make the mail worker poll until a1's retry.
    assert next_at == later


async def test_outbox_items_given_up_are_listed_and_made_due_again(repo):
    """`exobot outbox`: the items given up, newest first, what each was and why; a retry makes
    one pending and due at once, its attempts counted anew, and touches no other row."""
    start = datetime.now(UTC)
    async with repo.transaction() as uow:
        mail = await uow.queue_outbox(
            "mail", 1, {"to": [MEMBER]}, template="reply", recipient=MEMBER
        )
        post = await uow.queue_outbox("chat", 1, {"type": "thread_post", "body": "x"})
        answer = await uow.queue_outbox("chat", None, {"type": "answer"})
        edit = await uow.queue_later("chat", 2, {"type": "root_edit"}, key="root_edit", due=start)
    given_up_at = datetime.now(UTC)
    async with repo.connection() as conn:
        await outbox.mark_failed(conn, mail, "550 5.1.1 no such user", given_up_at)
        await outbox.mark_failed(conn, post, "refused (M_TOO_LARGE)", given_up_at)
        await outbox.mark_failed(conn, edit, "gave up after 10 attempts: M_FORBIDDEN")
        listed, total = await outbox.given_up(conn, 2)
        assert total == 3 and [item.id for item in listed] == [edit, post]
        listed, _ = await outbox.given_up(conn, None)  # every one
        assert [(i.id, i.kind, i.ticket_id, i.what, i.recipient) for i in listed] == [
            (edit, "chat", 2, "root_edit", None),
            (post, "chat", 1, "thread_post", None),
            (mail, "mail", 1, "reply", MEMBER),
        ]
        assert [(i.attempts, i.error) for i in listed[1:]] == [
            (1, "refused (M_TOO_LARGE)"),
            (1, "550 5.1.1 no such user"),
        ]
        assert abs(listed[1].done_at.replace(tzinfo=UTC) - given_up_at) < timedelta(seconds=1)
        assert await outbox.given_up_item(conn, answer) is None  # pending, not given up

        now = datetime.now(UTC) + timedelta(minutes=1)
        assert await outbox.retry_failed(conn, mail, now) == ("mail", 1, "reply")
        assert await outbox.retry_failed(conn, mail, now) is None  # pending now
        assert await outbox.retry_failed(conn, answer, now) is None
        assert await outbox.given_up_item(conn, mail) is None
        [due] = await outbox.due(conn, "mail", now)
        assert (due.id, due.attempts) == (mail, 0)
        assert [i.id for i in (await outbox.given_up(conn, 10))[0]] == [edit, post]
        assert await outbox.counts(conn) == {
            ("mail", "pending"): 1,
            ("chat", "failed"): 2,
            ("chat", "pending"): 1,
        }
        # What it was, for its note on the ticket (a chat row's type).
        assert await outbox.retry_failed(conn, post, now) == ("chat", 1, "thread_post")


async def test_outbox_next_due_at_with_an_aware_non_utc_time(repo):
    a = await queue(repo, 1, "a")
    in_two_hours = datetime.now(timezone(timedelta(hours=2))) + timedelta(minutes=30)
    async with repo.connection() as conn:
        await outbox.mark_retry(conn, a, "451", in_two_hours)
        assert await outbox.next_due_at(conn, "mail") == in_two_hours
        assert await outbox.due(conn, "mail", datetime.now(UTC)) == []
        assert [i.id for i in await outbox.due(conn, "mail", in_two_hours)] == [a]


async def test_ack_mail_is_queued_in_the_outbox(service, repo):
    created = await receive(service)
    async with repo.connection() as conn:
        items = await outbox.due(conn, "mail", datetime.now(UTC) + timedelta(seconds=1))
    assert [i.id for i in items] == created.outbox
    payload = items[0].payload
    assert payload["template"] == "ack" and payload["to"] == [MEMBER]
    assert payload["number"] == created.ticket and payload["reference"].endswith(
        str(created.ticket)
    )


# ----------------------------------------------------------------------------- state


async def test_state_get_and_set(repo):
    async with repo.connection() as conn:
        assert await get_state(conn, "hmac-secret") is None
        await set_state(conn, "hmac-secret", "primer")
        await set_state(conn, "imap-position:Safata d'entrada/ç", '{"a": 1}')
    async with repo.connection() as conn:
        assert await get_state(conn, "hmac-secret") == "primer"
        await set_state(conn, "hmac-secret", "segon " * 1000)
    async with repo.connection() as conn:
        assert await get_state(conn, "hmac-secret") == "segon " * 1000
        assert await get_state(conn, "imap-position:Safata d'entrada/ç") == '{"a": 1}'
        count = (await conn.execute(text("SELECT count(*) FROM state"))).scalar_one()
    assert count == 2


async def test_concurrent_set_state_of_a_new_key(repo):
    """Two writers creating the same key (two processes generating the HMAC secret at start):
    the second overwrites, it does not fail on the primary key."""
    started = asyncio.Event()

    async def second() -> None:
        started.set()
        async with repo.connection() as conn:
            await set_state(conn, "k", "second")

    async with repo.connection() as conn:
        await set_state(conn, "k", "first")
        task = asyncio.create_task(second())
        await started.wait()
        await asyncio.sleep(0.3)  # let it reach its INSERT (PostgreSQL) / BEGIN (SQLite)
    await task
    async with repo.connection() as conn:
        assert await get_state(conn, "k") == "second"


# ----------------------------------------------------------------------------- chat


async def new_ticket(service, sender: str = "marta@example.net") -> int:
    mail = incoming(sender)
    return (await service.apply(Actor.member(sender), ReceiveMail(mail, MailClass.MEMBER))).ticket


async def test_a_key_is_claimed_once(repo):
    async def claim(uow):
        return await uow.claim("matrix:$e1")

    assert await repo.run(claim) is True
    assert await repo.run(claim) is False


async def test_list_tickets_filters_and_counts(service, repo):
    numbers = [await new_ticket(service) for _ in range(4)]
    await service.apply(OPERATOR, Take(numbers[0]))
    await service.apply(OPERATOR, SetStatus(numbers[1], Status.STALLED))

    async def lists(view):
        return (
            await view.list_tickets(statuses=[Status.NEW, Status.OPEN], limit=2),
            await view.list_tickets(owner=OPERATOR.id),
            await view.list_tickets(unowned=True, statuses=[Status.NEW], oldest_first=True),
            await view.list_tickets(queue="tresoreria"),
            await view.status_counts(),
            await view.tickets([numbers[3], 999, numbers[0]]),
        )

    page, mine, unowned, empty, counts, picked = await repo.read(lists)
    assert ([t.number for t in page[0]], page[1]) == ([numbers[3], numbers[2]], 3)
    assert [t.number for t in mine[0]] == [numbers[0]]
    assert [t.number for t in unowned[0]] == [numbers[2], numbers[3]]
    assert empty == ([], 0)
    assert counts == {("suport", "new"): 2, ("suport", "open"): 1, ("suport", "stalled"): 1}
    assert [t.number for t in picked] == [numbers[3], numbers[0]]


async def test_due_alerts_are_the_overdue_ones(service, repo):
    first = await new_ticket(service)
    second = await new_ticket(service)
    await service.apply(OPERATOR, Take(second))
    now = datetime.now(UTC)

    async def due(view, at):
        return await view.due_alerts(at)

    assert await repo.read(lambda v: due(v, now)) == []
    later = now + SETTINGS.new_after + timedelta(minutes=1)
    assert await repo.read(lambda v: due(v, later)) == [first]


async def test_threads_and_posted_parts(service, repo):
    number = await new_ticket(service)
    old = chat.Thread(number, "suport", "!a:x", "$root1")
    new = chat.Thread(number, "tresoreria", "!b:x", "$root2")
    async with repo.connection() as conn:
        assert await chat.current_thread(conn, number) is None
        await chat.record_thread(conn, old)
        await chat.record_thread(conn, old)  # a retried post records nothing twice
        await chat.record_thread(conn, new)
        await chat.record_post(conn, 7, 1, "!a:x", "$p1")
        await chat.record_post(conn, 7, 1, "!a:x", "$p1")
        await chat.record_post(conn, 7, 2, "!b:x", "$p2")
    async with repo.connection() as conn:
        assert await chat.current_thread(conn, number) == new
        assert await chat.thread_by_root(conn, "!a:x", "$root1") == old
        assert await chat.thread_by_root(conn, "!b:x", "$root1") is None
        assert await chat.posted(conn, 7) == {1: "$p1", 2: "$p2"}
        assert await chat.posted(conn, 8) == {}
