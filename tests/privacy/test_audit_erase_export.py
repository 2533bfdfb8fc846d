"""What `exobot privacy erase` and `export` must leave to other people, on SQLite and PostgreSQL:
an address inside a longer one (`ann@` in `joann@`) or a LIKE wildcard (`j_doe@`) is not the
person; a mail intake has not processed yet is not touched, and someone else's quarantined
mail only loses the address; an export holds the masked text of other people's entries about
the person but never their originals or attachments; the entries an erasure edits are the
ones the export holds, and the bot's posts that showed them are redacted; on SQLite the search
index is merged after any rewrite, also when an interrupted erasure is finished."""

from __future__ import annotations

import json
import uuid
import zipfile

import pytest
import sqlalchemy as sa
from clocks import FakeClock
from test_erase import START, mail, settings, url  # noqa: F401 - url is a fixture

from exobot.config import parse_config
from exobot.core import intents
from exobot.core.model import Actor, AttachmentInfo
from exobot.db.engine import create_sync_engine
from exobot.db.tables import (
    ChatPostRow,
    EntryRow,
    HandledKeyRow,
    InboundMailRow,
    MailMessageRow,
    OutboxRow,
)
from exobot.privacy.concerns import like_any
from exobot.privacy.erase import erase_person
from exobot.privacy.export import export_person
from exobot.privacy.session import privacy_session

E, I, M = EntryRow.__table__, InboundMailRow.__table__, MailMessageRow.__table__  # noqa: E741
H, O, CP = HandledKeyRow.__table__, OutboxRow.__table__, ChatPostRow.__table__  # noqa: E741
ANN, JOANN, BOB = "ann@example.org", "joann@example.org", "bob@example.org"
IBAN = "ES91 2100 0418 4502 0005 1332"
OPERATOR = Actor.operator("@volunteer:example.org")


async def new_ticket(session, sender: str, body: str, **kw) -> int:
    """A ticket opened by `sender`'s mail."""
    service = session.plugins.host.service
    got = await service.apply(
        Actor.member(sender),
        intents.ReceiveMail(mail(sender, "Router", body, **kw), intents.MailClass.MEMBER),
    )
    return got.ticket


async def raw_mail(session, raw: bytes, *, sender: str | None, state: str) -> int:
    """A raw mail recorded by intake, with no ticket yet."""
    async with session.repository.connection() as conn:
        return (
            await conn.execute(
                sa.insert(I).values(
                    mailbox="INBOX", uidvalidity=1, uid=uuid.uuid4().int % 10**9, raw=raw,
                    size=len(raw), sender=sender, subject=None if sender is None else "x",
                    state=state, received_at=START,
                ).returning(I.c.id)
            )
        ).scalar_one()  # fmt: skip


async def test_erase_leaves_other_peoples_and_unprocessed_raw_mails(url):  # noqa: F811
    config = parse_config(settings(url), env={})
    async with privacy_session(config, FakeClock(START)) as session:
        joanns = f"From: {JOANN}\r\nSubject: x\r\n\r\nplease help".encode()
        waiting = f"From: {BOB}\r\nCc: {ANN}\r\n\r\nBob's new request".encode()
        bobs = f"From: {BOB}\r\nCc: <{ANN.upper()}>\r\n\r\nBob's big file".encode()
        joann_id = await raw_mail(session, joanns, sender=JOANN, state="quarantined")
        waiting_id = await raw_mail(session, waiting, sender=None, state="received")
        bob_id = await raw_mail(session, bobs, sender=BOB, state="quarantined")
        report = await erase_person(session, ANN)
        assert report.raw_mails == 1
        async with session.repository.connection() as conn:
            rows = {r.id: r for r in await conn.execute(sa.select(I))}
    assert (bytes(rows[joann_id].raw), rows[joann_id].state) == (joanns, "quarantined")
    assert (bytes(rows[waiting_id].raw), rows[waiting_id].state) == (waiting, "received")
    bob = rows[bob_id]
    assert (bob.sender, bob.state) == (BOB, "quarantined"), "Bob's mail can still be retried"
    assert bytes(bob.raw).startswith(f"From: {BOB}\r\nCc: <erased-".encode())
    assert bytes(bob.raw).endswith(b"@invalid>\r\n\r\nBob's big file")


async def test_erase_deletes_only_the_ids_and_keys_naming_the_person(url):  # noqa: F811
    config = parse_config(settings(url), env={})
    async with privacy_session(config, FakeClock(START)) as session:
        ticket = await new_ticket(session, BOB, "hola", name="Bob")
        ids = [f"<1733.{JOANN}>", "<99.jxdoe@example.org>", f"<1733.{ANN}>"]
        keys = [f"flood:{JOANN}:2026120110", "mail-skipped-cc:7:jxdoe@example.org",
                f"flood:{ANN}:2026120110"]  # fmt: skip
        async with session.repository.connection() as conn:
            for message_id in ids:
                await conn.execute(
                    sa.insert(M).values(
                        message_id=message_id, ticket_id=ticket, direction="in", created_at=START
                    )
                )
            for key in keys:
                await conn.execute(sa.insert(H).values(key=key, handled_at=START))
            like = like_any(H.c.key, {"j_doe@example.org"})  # "_" is no wildcard there
            assert (await conn.execute(sa.select(H.c.key).where(like))).all() == []
        ann = await erase_person(session, ANN)
        j_doe = await erase_person(session, "j_doe@example.org")
        async with session.repository.connection() as conn:
            left_ids = {r[0] for r in await conn.execute(sa.select(M.c.message_id))}
            left_keys = {r[0] for r in await conn.execute(sa.select(H.c.key))}
    assert (ann.message_ids, ann.handled_keys) == (1, 1)
    assert j_doe.nothing
    assert set(ids[:2]) <= left_ids and ids[2] not in left_ids
    assert left_keys == set(keys[:2])


async def test_export_holds_only_the_persons_originals_and_attachments(url, tmp_path):  # noqa: F811
    config = parse_config(settings(url), env={})
    async with privacy_session(config, FakeClock(START)) as session:
        service = session.plugins.host.service
        ticket = await new_ticket(
            session, ANN, "my account: ES91 **** **** **** **** 1332", cc=(BOB,),
            sensitive=("iban",), originals=(f"my account: {IBAN}", None),
            attachments=(AttachmentInfo("ann-dni.pdf", "application/pdf", b"ANN SCAN"),),
        )  # fmt: skip
        bobs = mail(
            BOB, f"Re: [suport#{ticket}] Router", "Bob's: ES91 **** **** **** **** 1332",
            name="Bob", sensitive=("iban",), originals=(f"Bob's: {IBAN}", None),
            attachments=(AttachmentInfo("bob-dni.pdf", "application/pdf", b"BOB SCAN"),),
        )  # fmt: skip
        await service.apply(
            Actor.member(BOB), intents.ReceiveMail(bobs, intents.MailClass.MEMBER, ticket=ticket)
        )
        out = tmp_path / "ann.zip"
        await export_person(session, ANN, out)
    with zipfile.ZipFile(out) as z:
        data = json.loads(z.read("data.json"))
        files = {name: z.read(name) for name in z.namelist()}
    [entries] = [t["entries"] for t in data["tickets"]]
    [hers] = [e for e in entries if e["actor"] == ANN and e["kind"] == "mail_in"]
    [his] = [e for e in entries if e["actor"] == BOB and e["kind"] == "mail_in"]
    assert hers["original"]["text"] == f"my account: {IBAN}" and hers["attachments"]
    assert his["text"] == "Bob's: ES91 **** **** **** **** 1332"
    assert "original" not in his and "attachments" not in his
    assert b"ANN SCAN" in files.values() and b"BOB SCAN" not in files.values()
    assert not any(b"Bob's: " + IBAN.encode() in content for content in files.values())


def posts_of_every_chat_row(conn):  # noqa: ANN001, ANN201 - a sync connection
    """Record a sent post for every chat row, as the chat worker would: its event id names
    the entries it showed."""
    rows = conn.execute(sa.select(O.c.id, O.c.payload).where(O.c.kind == "chat")).all()
    for n, (outbox_id, payload) in enumerate(rows):
        conn.execute(
            sa.insert(CP).values(
                outbox_id=outbox_id, part=1, room_id="!q:example.org",
                event_id=f"$post{n}-{payload.get('entries')}", created_at=START,
            )
        )  # fmt: skip
    conn.execute(sa.update(O).where(O.c.kind == "chat").values(state="sent", done_at=START))


async def test_erase_edits_what_export_holds_and_redacts_the_posts_that_showed_it(
    url,  # noqa: F811
    tmp_path,
):
    """Bob's ticket, Anna in Cc: our reply to both and a volunteer's comment naming her are
    in her export and edited by the erasure; the comment's post is redacted, not the others
    (they show no address of hers: a Cc is not shown in chat)."""
    config = parse_config(settings(url), env={})
    async with privacy_session(config, FakeClock(START)) as session:
        service = session.plugins.host.service
        ticket = await new_ticket(session, BOB, "hola", name="Bob", cc=(ANN,))
        await service.apply(OPERATOR, intents.Reply(ticket, "Dear both, new router on Monday."))
        await service.apply(OPERATOR, intents.Comment(ticket, f"Phoned {ANN}, Bob's flatmate"))
        await service.apply(OPERATOR, intents.Comment(ticket, "Bob's link checked"))
        async with session.repository.connection() as conn:
            await conn.run_sync(posts_of_every_chat_row)
            before = {r.id: r for r in await conn.execute(sa.select(E))}
        out = tmp_path / "ann.zip"
        await export_person(session, ANN, out)
        report = await erase_person(session, ANN)
        async with session.repository.connection() as conn:
            after = {r.id: r for r in await conn.execute(sa.select(E))}
            payloads = [r[0] for r in await conn.execute(sa.select(O.c.payload))]
    with zipfile.ZipFile(out) as z:
        tickets = json.loads(z.read("data.json"))["tickets"]
    exported = {e["id"] for t in tickets for e in t["entries"]}
    edited = {
        n for n, row in before.items()
        if (row.body, row.data, row.actor) != (after[n].body, after[n].data, after[n].actor)
    }  # fmt: skip
    assert report.entries_erased == 0 and report.entries_edited == len(edited) == 3
    assert exported == edited
    [comment] = [n for n, row in before.items() if (row.body or "").startswith("Phoned")]
    redacted = [e for p in payloads if p.get("type") == "redact" for _room, e in p["event_ids"]]
    assert redacted == [f"$post3-[{comment}]"]
    assert any(row.body == "Dear both, new router on Monday." for row in after.values())


def index_segments_holding(db: str, word: bytes) -> int:
    """How many FTS5 segment blocks of the SQLite search index still hold `word`."""
    engine = create_sync_engine(db)
    try:
        with engine.connect() as conn:
            blocks = conn.exec_driver_sql("SELECT block FROM search_index_data").all()
    finally:
        engine.dispose()
    return sum(word in bytes(block) for (block,) in blocks)


ZED = "zyxwquux.qoplin@example.org"


async def mentioned_on_bobs_ticket(session) -> None:
    """Bob's ticket naming ZED in its Cc and in a comment: an erasure only edits it."""
    ticket = await new_ticket(session, BOB, "hola", name="Bob", cc=(ZED,))
    service = session.plugins.host.service
    await service.apply(OPERATOR, intents.Comment(ticket, f"Phoned {ZED} about it"))


async def test_sqlite_search_index_is_merged_after_edits_only(tmp_path):
    db = f"sqlite:///{tmp_path / 'exobot.db'}"
    config = parse_config(settings(db), env={})
    async with privacy_session(config, FakeClock(START)) as session:
        await mentioned_on_bobs_ticket(session)
        report = await erase_person(session, ZED)
    assert report.entries_edited and not report.entries_erased
    assert index_segments_holding(db, b"zyxwquux") == 0


async def test_sqlite_search_index_is_merged_when_an_interrupted_erasure_is_finished(tmp_path):
    """The command killed after the core's commit, before the merge: the next erasure (for
    anyone) merges the index as it finishes the plugins' part."""
    db = f"sqlite:///{tmp_path / 'exobot.db'}"
    config = parse_config(settings(db), env={})
    async with privacy_session(config, FakeClock(START)) as session:
        await mentioned_on_bobs_ticket(session)

        async def killed(subject):  # noqa: ANN001, ANN202
            raise KeyboardInterrupt

        session.plugins.erase = killed
        with pytest.raises(KeyboardInterrupt):
            await erase_person(session, ZED)
    assert index_segments_holding(db, b"zyxwquux") > 0, "the old terms until a merge"
    async with privacy_session(config, FakeClock(START)) as session:
        finished = await erase_person(session, "nobody@example.org")
    assert finished.finished_earlier == 1
    assert index_segments_holding(db, b"zyxwquux") == 0
