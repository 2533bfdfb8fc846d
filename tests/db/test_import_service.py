"""ImportTicket on the real repository (SQLite and PostgreSQL): a ticket from another helpdesk
keeps its number, history, authors and times; a second run writes only what is new; a taken
number stops it; merged numbers resolve; nothing is announced, mailed or alerted; automatic
numbers continue above the imported ones."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, text

from exobot.core.events import TicketEvent, TicketImported
from exobot.core.imports import ImportedEntry, ImportedMessageId, ImportedTicket
from exobot.core.intents import ImportTicket, MailClass, ReceiveMail, SetStatus
from exobot.core.model import Actor, AttachmentInfo, EntryKind, IncomingMail, Status
from exobot.core.service import (
    MAX_IMPORTED_BODY,
    ImportCollision,
    NotAllowed,
    ServiceSettings,
    TicketService,
)
from exobot.db.engine import create_engine, create_sync_engine
from exobot.db.migrate import upgrade_async
from exobot.db.numbering import ensure_next_number, next_number
from exobot.db.repository import SqlRepository
from exobot.db.tables import ImportedRecordRow, OutboxRow
from exobot.mail.msgid import MessageIds
from tests.clocks import FakeClock

SOURCE = "rt:https://rt.example.org/"
MEMBER = "marta@example.net"
STAFF = "@anna:example.org"
T0 = datetime(2025, 11, 3, 9, 30, tzinfo=UTC)
NOW = datetime(2026, 2, 1, 12, 0, tzinfo=UTC)
IMPORTER = Actor.system("import")
SETTINGS = ServiceSettings(
    prefix="suport",
    default_queue="suport",
    queues=frozenset({"suport", "tresoreria"}),
    own_address="suport@example.org",
    announce=True,  # an import must stay silent even where changes are announced
)
PDF = AttachmentInfo("factura-març.pdf", "application/pdf", b"%PDF-1.4 imported")


@pytest.fixture(params=["writer-thread", "async"])
async def repo(request: pytest.FixtureRequest, engine, db_url: str):
    """The repository as the App builds it (its transactions in a writer thread on a
    blocking connection), and on the async engine alone."""
    if request.param == "async":
        yield SqlRepository(engine)
        return
    repository = SqlRepository(engine, create_sync_engine(db_url))
    yield repository
    await repository.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture
def events() -> list[object]:
    return []


@pytest.fixture
def service(repo: SqlRepository, clock: FakeClock, events: list[object]) -> TicketService:
    svc = TicketService(repo, MessageIds("secret" * 4, "example.org"), SETTINGS, clock=clock)
    svc.events.subscribe(TicketEvent, events.append)
    svc.events.subscribe(TicketImported, events.append)
    return svc


def entry(n: int, kind: EntryKind, minutes: int, **kw) -> ImportedEntry:
    kw.setdefault("actor", MEMBER)
    return ImportedEntry(str(n), kind, created_at=T0 + timedelta(minutes=minutes), **kw)


def rt_ticket(number: int = 310, **kw) -> ImportedTicket:
    """RT ticket 310: a member's mail, a staff reply, a comment, a take, still open."""
    entries = (
        entry(1001, EntryKind.CREATED, 0, data={"queue": "suport", "requestor": MEMBER}),
        entry(
            1002,
            EntryKind.MAIL_IN,
            0,
            body="El router no connecta des d'ahir.",
            data={"from": MEMBER, "subject": "Router mort"},
            attachments=(PDF,),
            message_ids=(ImportedMessageId("<first@member.example.net>"),),
        ),
        entry(
            1003,
            EntryKind.MAIL_OUT,
            30,
            actor=STAFF,
            body="Hem reiniciat el port, prova-ho ara.",
            message_ids=(ImportedMessageId("rt-1003@rt.example.org", "out"),),
        ),
        entry(1004, EntryKind.COMMENT, 31, actor="rt:pere", body="Port 12 del commutador"),
        entry(1005, EntryKind.OWNER, 32, actor=STAFF, data={"from": None, "to": STAFF}),
        entry(1006, EntryKind.STATUS, 32, actor=STAFF, data={"from": "new", "to": "open"}),
    )
    values = {
        "source": SOURCE,
        "external_id": str(number),
        "number": number,
        "title": "Router mort",
        "requestor": MEMBER,
        "queue": "suport",
        "status": Status.OPEN,
        "created_at": T0,
        "updated_at": T0 + timedelta(minutes=32),
        "owner": STAFF,
        "participants": (MEMBER, "veina@example.net"),
        "entries": entries,
    }
    return ImportedTicket(**(values | kw))


async def count(repo: SqlRepository, table, **where) -> int:
    async with repo.connection() as conn:
        query = select(func.count()).select_from(table.__table__)
        for name, value in where.items():
            query = query.where(table.__table__.c[name] == value)
        return (await conn.execute(query)).scalar_one()


async def test_import_keeps_number_history_authors_and_times(service, repo, events):
    outcome = await service.apply(IMPORTER, ImportTicket(rt_ticket()))
    assert (outcome.ticket, outcome.created) == (310, True)
    assert len(outcome.entries) == 6
    ticket = await repo.get_ticket(310)
    assert (ticket.title, ticket.queue, ticket.status, ticket.owner) == (
        "Router mort", "suport", Status.OPEN, STAFF,
    )  # fmt: skip
    assert (ticket.created_at, ticket.updated_at) == (T0, T0 + timedelta(minutes=32))
    assert ticket.last_member_mail_at == T0
    assert ticket.last_answer_at == T0 + timedelta(minutes=30)
    assert ticket.next_alert_at is None  # open: no alert clock
    history = await repo.history(310)
    assert [(e.kind, e.actor, e.created_at) for e in history] == [
        (EntryKind.CREATED, MEMBER, T0),
        (EntryKind.MAIL_IN, MEMBER, T0),
        (EntryKind.MAIL_OUT, STAFF, T0 + timedelta(minutes=30)),
        (EntryKind.COMMENT, "rt:pere", T0 + timedelta(minutes=31)),
        (EntryKind.OWNER, STAFF, T0 + timedelta(minutes=32)),
        (EntryKind.STATUS, STAFF, T0 + timedelta(minutes=32)),
    ]
    async with repo.reading() as view:
        assert await view.participants(310) == {MEMBER, "veina@example.net"}
        assert await view.ticket_for_message("<first@member.example.net>") == (310, "in")
        assert await view.ticket_for_message("<rt-1003@rt.example.org>") == (310, "out")
        [attachment] = await view.attachments(310)
        assert (attachment.filename, attachment.entry_id) == ("factura-març.pdf", history[1].id)
        # Searchable at once: the title and the texts.
        assert await view.search("commutador") == [310]
        assert await view.search("router") == [310]
    # Silent: no mail, no chat post, no event that makes anything act.
    assert await count(repo, OutboxRow) == 0
    assert [type(e) for e in events] == [TicketImported]
    assert events[0] == TicketImported(310, True, 6, SOURCE)


async def test_new_tickets_continue_after_the_highest_imported_number(service, repo):
    await service.apply(IMPORTER, ImportTicket(rt_ticket(310)))
    await service.apply(IMPORTER, ImportTicket(rt_ticket(12)))  # a lower one later: no effect
    mail = IncomingMail(
        "<new@member.example.net>", MEMBER, "Marta", MEMBER, "Una altra cosa", "Hola"
    )
    outcome = await service.apply(
        Actor.member(MEMBER), ReceiveMail(mail, MailClass.MEMBER, acknowledge=False)
    )
    assert outcome.ticket == 311


async def test_a_second_run_writes_only_what_is_new(service, repo, clock, events):
    first = rt_ticket()
    await service.apply(IMPORTER, ImportTicket(first))
    again = await service.apply(IMPORTER, ImportTicket(first))
    assert (again.created, again.entries) == (False, [])
    assert len(await repo.history(310)) == 6
    # RT gained a reply from the member and was resolved since.
    clock.advance(days=1)
    later = T0 + timedelta(days=2)
    newer = rt_ticket(
        status=Status.RESOLVED,
        updated_at=later,
        entries=(
            *first.entries,
            entry(
                1007,
                EntryKind.MAIL_IN,
                60 * 48,
                body="Ja funciona!",
                message_ids=(ImportedMessageId("<thanks@member.example.net>"),),
            ),
            entry(1008, EntryKind.STATUS, 60 * 48, data={"from": "open", "to": "resolved"}),
        ),
    )
    outcome = await service.apply(IMPORTER, ImportTicket(newer))
    assert [e.kind for e in outcome.entries] == [EntryKind.MAIL_IN, EntryKind.STATUS]
    ticket = await repo.get_ticket(310)
    assert (ticket.status, ticket.updated_at, ticket.last_member_mail_at) == (
        Status.RESOLVED, later, later,
    )  # fmt: skip
    assert len(await repo.history(310)) == 8
    assert await count(repo, ImportedRecordRow, kind="entry") == 8
    assert await count(repo, OutboxRow) == 0
    async with repo.reading() as view:
        assert await view.imported_entry_ids(SOURCE, "310") == {str(n) for n in range(1001, 1009)}
        assert await view.imported_entry_ids(SOURCE, "311") == set()


async def test_a_taken_number_stops_the_import_and_writes_nothing(service, repo):
    mail = IncomingMail("<own@member.example.net>", MEMBER, "Marta", MEMBER, "Hola", "Hola")
    await service.apply(Actor.member(MEMBER), ReceiveMail(mail, MailClass.MEMBER))
    async with repo.reading() as view:
        assert await view.import_collisions(SOURCE, [1, 2, 310]) == [1]
    with pytest.raises(ImportCollision) as raised:
        await service.apply(IMPORTER, ImportTicket(rt_ticket(1)))
    assert raised.value.code == "import_collision"
    assert raised.value.params["number"] == 1
    assert await count(repo, ImportedRecordRow) == 0
    assert [e.kind for e in await repo.history(1)] == [EntryKind.CREATED, EntryKind.MAIL_IN]
    # A Message-ID that already belongs to a ticket is left where it is, not an error.
    reuse = rt_ticket(
        entries=(
            entry(
                9,
                EntryKind.MAIL_IN,
                0,
                body="x",
                message_ids=(ImportedMessageId("<own@member.example.net>"),),
            ),
        )
    )
    await service.apply(IMPORTER, ImportTicket(reuse))
    async with repo.reading() as view:
        assert await view.ticket_for_message("<own@member.example.net>") == (1, "in")


async def test_merged_numbers_resolve_to_the_surviving_ticket(service, repo):
    await service.apply(IMPORTER, ImportTicket(rt_ticket(310, merged=(305, 307))))
    await service.apply(IMPORTER, ImportTicket(rt_ticket(310, merged=(305, 307))))  # idempotent
    assert (await repo.get_ticket(305)).number == 310
    async with repo.reading() as view:
        assert await view.alias_of(307) == 310
        assert await view.get_ticket(307, aliases=False) is None
        assert await view.import_collisions(SOURCE, [305, 307, 310]) == []
        assert await view.import_collisions("rt:other", [305, 307, 310, 311]) == [305, 307, 310]
    # The service acts on the survivor when a merged number is named.
    await service.apply(Actor.operator(STAFF), SetStatus(305, "stalled"))
    assert (await repo.get_ticket(310)).status is Status.STALLED
    # A merged number cannot be imported as a ticket of its own from elsewhere.
    with pytest.raises(ImportCollision):
        await service.apply(IMPORTER, ImportTicket(rt_ticket(305, source="rt:other")))
    # Merged in RT after both were imported: the earlier ticket stays as it was imported.
    await service.apply(IMPORTER, ImportTicket(rt_ticket(320)))
    await service.apply(IMPORTER, ImportTicket(rt_ticket(330, merged=(320, 305, 400))))
    async with repo.reading() as view:
        assert (await view.get_ticket(320)).number == 320
        assert await view.alias_of(305) == 310
    # Automatic numbers continue above merged numbers too.
    async with repo.connection() as conn:
        assert await next_number(conn) == 401


async def test_imported_text_is_masked_and_flagged_without_advice(service, repo):
    iban = "ES91 2100 0418 4502 0005 1332"
    ticket = rt_ticket(
        title=f"Canvi de compte {iban}",
        entries=(entry(2001, EntryKind.MAIL_IN, 0, body=f"El meu IBAN nou: {iban}"),),
    )
    await service.apply(IMPORTER, ImportTicket(ticket))
    stored = await repo.get_ticket(310)
    assert iban not in stored.title and "1332" in stored.title
    history = await repo.history(310)
    assert [e.kind for e in history] == [EntryKind.CREATED, EntryKind.MAIL_IN, EntryKind.FLAG]
    assert iban not in history[1].body
    assert history[2].data["code"] == "sensitive"
    async with repo.reading() as view:
        assert (await view.original(310, history[1].id)).body == f"El meu IBAN nou: {iban}"
        assert (await view.original(310, history[0].id)).subject == f"Canvi de compte {iban}"
        assert await view.search("2100") == []  # the masked digits are not searchable
    assert await count(repo, OutboxRow) == 0  # no advice mail for past history


async def test_alert_clocks_start_at_the_import(service, repo, clock):
    await service.apply(IMPORTER, ImportTicket(rt_ticket(1, status=Status.NEW, owner=None)))
    await service.apply(IMPORTER, ImportTicket(rt_ticket(2, status=Status.STALLED)))
    await service.apply(IMPORTER, ImportTicket(rt_ticket(3, status=Status.RESOLVED)))
    assert (await repo.get_ticket(1)).next_alert_at == NOW + SETTINGS.new_after
    assert (await repo.get_ticket(2)).next_alert_at == NOW + SETTINGS.stalled_every
    assert (await repo.get_ticket(3)).next_alert_at is None


async def test_only_exobot_imports(service):
    for actor in (Actor.operator(STAFF), Actor.member(MEMBER)):
        with pytest.raises(NotAllowed):
            await service.apply(actor, ImportTicket(rt_ticket()))


async def test_ensure_next_number_raises_and_never_lowers(repo, backend):
    async with repo.connection() as conn:
        assert await next_number(conn) == 1
        assert await ensure_next_number(conn, 1000) == 1000
        assert await ensure_next_number(conn, 10) == 1000
    async with repo.connection() as conn:
        number = (
            await conn.execute(
                text(
                    "INSERT INTO tickets (title, requestor, queue, status, language, created_at,"
                    " updated_at) VALUES ('t', 'a@b.example', 'suport', 'new', 'ca', :n, :n)"
                    " RETURNING id"
                ),
                {"n": NOW.isoformat() if backend == "sqlite" else NOW},
            )
        ).scalar_one()
    assert number == 1000
    async with repo.connection() as conn:
        assert await next_number(conn) == 1001
        with pytest.raises(ValueError):
            await ensure_next_number(conn, 0)


async def test_first_number_numbers_a_fresh_installation_only(db_url, clock):
    await upgrade_async(db_url, first_number=5000)
    engine = create_engine(db_url)
    repo = SqlRepository(engine)
    try:
        svc = TicketService(repo, MessageIds("secret" * 4, "example.org"), SETTINGS, clock=clock)
        mail = IncomingMail("<a@member.example.net>", MEMBER, "Marta", MEMBER, "Hola", "Hola")
        first = await svc.apply(Actor.member(MEMBER), ReceiveMail(mail, MailClass.MEMBER))
        assert first.ticket == 5000
        # Every start applies it again: with tickets in the database it changes nothing.
        await upgrade_async(db_url, first_number=9000)
        mail = IncomingMail("<b@member.example.net>", MEMBER, "Marta", MEMBER, "Hola", "Hola")
        second = await svc.apply(Actor.member(MEMBER), ReceiveMail(mail, MailClass.MEMBER))
        assert second.ticket == 5001
    finally:
        await engine.dispose()


async def test_a_huge_imported_text_is_cut_like_a_mail(service, repo):
    huge = "línia llarga\n" * 20_000  # 260,000 characters
    ticket = rt_ticket(entries=(entry(3001, EntryKind.COMMENT, 0, actor="rt:pere", body=huge),))
    await service.apply(IMPORTER, ImportTicket(ticket))
    comment = (await repo.history(310))[-1]
    assert len(comment.body) == MAX_IMPORTED_BODY and comment.data["body_truncated"] is True
