"""The chat worker's prebuilt reads give what the repository's general queries give, on both
databases, on the async engine and on the repository's own thread."""

from __future__ import annotations

import uuid

import pytest

from exobot.core.intents import Comment, MailClass, ReceiveMail, SetStatus
from exobot.core.model import Actor, EntryKind, IncomingMail, Status
from exobot.core.service import ServiceSettings, TicketService
from exobot.db import chat
from exobot.db.engine import create_sync_engine
from exobot.db.repository import SqlRepository
from exobot.mail.msgid import MessageIds

OPERATOR = Actor.operator("@anna:example.org")
SETTINGS = ServiceSettings(
    prefix="suport",
    default_queue="suport",
    queues=frozenset({"suport"}),
    own_address="suport@example.org",
)


@pytest.fixture(params=["async", "thread"])
def chat_repo(request, engine, db_url) -> SqlRepository:
    """The repository with reads on the async engine, or on its own thread (as in the app)."""
    if request.param == "async":
        return SqlRepository(engine)
    return SqlRepository(engine, create_sync_engine(db_url))


async def new_ticket(service: TicketService, sender: str) -> int:
    mail = IncomingMail(
        message_id=f"<{uuid.uuid4().hex}@member.example.net>",
        sender=sender,
        sender_name="Marta",
        requestor=sender,
        subject="No em funciona internet",
        body="Hola, des d'ahir no tinc connexió.",
    )
    member = Actor.member(sender)
    return (await service.apply(member, ReceiveMail(mail, MailClass.MEMBER))).ticket


async def test_what_a_root_shows_is_read_as_the_repository_reads_it(chat_repo):
    service = TicketService(chat_repo, MessageIds("secret" * 4, "example.org"), SETTINGS)
    first = await new_ticket(service, "marta@example.net")
    other = await new_ticket(service, "pere@example.net")  # entries between the first's
    await service.apply(OPERATOR, Comment(first, "Mirant-ho"))
    await service.apply(OPERATOR, SetStatus(first, Status.RESOLVED))
    await service.apply(OPERATOR, SetStatus(first, Status.OPEN))

    async def both(view):
        history = await view.history(first)
        ids = [e.id for e in history if e.kind is not EntryKind.STATUS]
        return (
            history,
            await chat.entries(view.conn, ids),
            await view.entries(ids),
            await chat.entries(view.conn, [ids[0], ids[0] + chat.ENTRY_RANGE_MAX + 1]),
            await chat.entries(view.conn, []),
            await chat.first_quoted(view.conn, first),
            await chat.flag_entries(view.conn, first),
            await chat.last_status(view.conn, first),
            await view.last_entry(first, [EntryKind.STATUS.value]),
            await chat.import_source(view.conn, first),
            await chat.first_quoted(view.conn, other),
        )

    (
        history,
        ranged,
        listed,
        too_wide,
        none,
        quoted,
        flags,
        status,
        expected_status,
        source,
        other_quoted,
    ) = await chat_repo.read(both)
    assert ranged == listed and len(ranged) == len(history) - 2  # not the other ticket's
    assert too_wide is None and none == []
    mails = [e for e in history if e.kind is EntryKind.MAIL_IN]
    assert quoted == mails[0] and other_quoted.ticket_number == other
    assert flags == []
    assert status == expected_status and status.data.get("to") == Status.OPEN.value
    assert source is None


async def test_the_first_entry_of_a_kind_is_the_oldest_of_the_ticket(chat_repo):
    """What a plugin's root lines read for every root, however long the ticket."""
    service = TicketService(chat_repo, MessageIds("secret" * 4, "example.org"), SETTINGS)
    first = await new_ticket(service, "marta@example.net")
    other = await new_ticket(service, "pere@example.net")
    for text in ("Primer", "Segon"):
        await service.apply(OPERATOR, Comment(first, text))
    await service.apply(OPERATOR, Comment(other, "Un altre"))

    async def read(view):
        return (
            await view.history(first),
            await view.first_entry(first, [EntryKind.MAIL_IN.value]),
            await view.first_entry(first, [EntryKind.COMMENT.value, EntryKind.STATUS.value]),
            await view.first_entry(first, [EntryKind.BOUNCE.value]),
        )

    history, mail, comment, none = await chat_repo.read(read)
    assert mail == next(e for e in history if e.kind is EntryKind.MAIL_IN)
    assert comment.kind is EntryKind.COMMENT and comment.body == "Primer"
    assert comment.ticket_number == first and none is None


async def test_a_post_and_its_thread_are_recorded_once_in_one_transaction(chat_repo):
    service = TicketService(chat_repo, MessageIds("secret" * 4, "example.org"), SETTINGS)
    number = await new_ticket(service, "marta@example.net")
    row = await chat_repo.run(
        lambda uow: uow.queue_outbox("chat", number, {"type": "ticket", "entries": []})
    )
    thread = chat.Thread(number, "suport", "!a:x", "$root")

    async def record(uow):
        for _ in range(2):  # a retried part records nothing twice
            await chat.record_post(uow.conn, row, 1, "!a:x", "$root")
            await chat.record_thread(uow.conn, thread)

    await chat_repo.run(record)

    async def read(view):
        return (
            await chat.posted(view.conn, row),
            await chat.current_thread(view.conn, number),
            await chat.thread_by_root(view.conn, "!a:x", "$root"),
        )

    assert await chat_repo.read(read) == ({1: "$root"}, thread, thread)
