"""`exobot db copy`: an SQLite installation with tickets, attachments and the connectivity and
procedures plugins' data moves into the test stack's PostgreSQL: every table's rows equal,
ticket numbers and ids continue after the source's, search works on the target; a target that
holds tickets is refused and left as it was."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from exobot_connectivity import store as connectivity
from exobot_procedures import store as procedures
from sqlmodel import SQLModel

from exobot.cli import main
from exobot.core.intents import MailClass, ReceiveMail
from exobot.core.model import Actor, AttachmentInfo, IncomingMail, Status, Ticket
from exobot.core.service import ServiceSettings, TicketService
from exobot.db.copy import CopyError, copy_database, same_database
from exobot.db.engine import create_engine, create_sync_engine
from exobot.db.migrate import installed_branches, upgrade
from exobot.db.repository import SqlRepository
from exobot.mail.msgid import MessageIds

T0 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
PLUGINS = ("connectivity", "procedures")
SETTINGS = ServiceSettings(
    prefix="suport",
    default_queue="suport",
    queues=frozenset({"suport", "tresoreria"}),
    own_address="suport@example.org",
)
PDF = AttachmentInfo("factura d'abril.pdf", "application/pdf", b"%PDF-1.4\x00\xff" * 5000)


@pytest.fixture
def pg_url(stack) -> str:
    if stack.postgres_port is None:
        pytest.skip("the test stack runs without PostgreSQL (EXOBOT_STACK_POSTGRES / install)")
    return stack.postgres_url(f"t_{uuid.uuid4().hex[:16]}")


def branches() -> dict:
    every = installed_branches()
    return {name: every[name] for name in PLUGINS}


def mail(subject: str, body: str, attachments=()) -> IncomingMail:
    return IncomingMail(
        message_id=f"<{uuid.uuid4().hex}@member.example.net>",
        sender="marta@example.net",
        sender_name="Marta",
        requestor="marta@example.net",
        subject=subject,
        body=body,
        attachments=attachments,
    )


async def seed_core(url: str) -> list[int]:
    """Three tickets by mail (one with an attachment) and one with its own number, 900."""
    engine = create_engine(url)
    repo = SqlRepository(engine)
    service = TicketService(repo, MessageIds("secret" * 4, "example.org"), SETTINGS)
    numbers = []
    try:
        for subject, body, files in [
            ("Factura", "Us adjunto la factura, en Martí", (PDF,)),
            ("Sense connexió", "Des d'ahir no tinc connexió a l'oficina", ()),
            ("Router", "El router parpelleja", ()),
        ]:
            result = await service.apply(
                Actor.member("marta@example.net"),
                ReceiveMail(mail(subject, body, files), MailClass.MEMBER),
            )
            numbers.append(result.ticket)
        async with repo.transaction() as uow:
            imported = Ticket(0, "Importat", "pere@example.net", "suport", Status.OPEN, T0, T0)
            numbers.append((await uow.create_ticket(imported, number=900)).number)
    finally:
        await engine.dispose()
    return numbers


def seed_plugins(url: str, ticket: int) -> None:
    """A monitor with two rounds and its alert state; a procedure with an event, a member and
    a ticket's member link."""
    engine = create_sync_engine(url)
    with engine.begin() as conn:
        conn.execute(
            connectivity.monitors.insert(),
            [
                dict(ticket=ticket, target="10.1.2.3", kind="icmp", host="10.1.2.3",
                     started_by="@anna:example.org", started_at=T0),
                dict(ticket=None, target="gw.exo.cat:443", kind="tcp", host="gw.exo.cat",
                     port=443, started_by="config", started_at=T0,
                     stopped_at=T0 + timedelta(days=1), stop_reason="config"),
            ],
        )  # fmt: skip
        conn.execute(
            connectivity.rounds.insert(),
            [
                dict(monitor_id=1, at=T0 + timedelta(minutes=5 * n), sent=20,
                     received=20 - n, rtts="[1.25, 3.5]", median=2.375 if n < 2 else None)
                for n in range(3)
            ],
        )  # fmt: skip
        conn.execute(
            connectivity.alerts.insert(),
            dict(monitor_id=1, in_alert=True, lossy_rounds=2, changed_at=T0),
        )
        conn.execute(
            procedures.procedures.insert(),
            dict(type="alta", member="1234", ticket=ticket, state="pending",
                 asked_by="@anna:example.org", asked_at=T0, note="Alta de la Núria"),
        )  # fmt: skip
        conn.execute(
            procedures.events.insert(),
            dict(procedure_id=1, at=T0, actor="@anna:example.org", kind="created",
                 effects='[{"move": "tresoreria"}]'),
        )  # fmt: skip
        conn.execute(
            procedures.members.insert(),
            dict(number="1234", address="nuria@example.net", active=True, since=T0,
                 updated_at=T0),
        )  # fmt: skip
        conn.execute(
            procedures.ticket_members.insert(),
            dict(ticket=ticket, member="1234", linked_by="@anna:example.org", linked_at=T0),
        )
    engine.dispose()


def every_row(url: str) -> dict[str, list[tuple]]:
    """Every row of the core's and the two plugins' tables, read through the application's
    own table definitions (so that both backends' values compare as Python values)."""
    tables = [
        *SQLModel.metadata.sorted_tables,
        *connectivity.metadata.sorted_tables,
        *procedures.metadata.sorted_tables,
    ]
    engine = create_sync_engine(url)
    try:
        with engine.connect() as conn:
            return {
                t.name: [tuple(r) for r in conn.execute(sa.select(t).order_by(*t.primary_key))]
                for t in tables
            }
    finally:
        engine.dispose()


async def test_copy_sqlite_to_postgresql(tmp_path, pg_url):
    source = f"sqlite:///{tmp_path / 'exobot.db'}"
    await asyncio.to_thread(upgrade, source, "head", branches())
    numbers = await seed_core(source)
    await asyncio.to_thread(seed_plugins, source, numbers[0])
    lines: list[str] = []

    report = await asyncio.to_thread(copy_database, source, pg_url, branches(), lines.append)

    before, after = every_row(source), every_row(pg_url)
    assert after == before
    assert report.rows["tickets"] == 4 and report.rows["attachments"] == 1
    assert report.rows["connectivity_rounds"] == 3 and report.rows["procedures_members"] == 1
    assert all(report.rows[name] == len(rows) for name, rows in before.items() if rows)
    assert "connectivity_rounds: 3 row(s)" in lines

    engine = create_engine(pg_url)
    repo = SqlRepository(engine)
    service = TicketService(repo, MessageIds("secret" * 4, "example.org"), SETTINGS)
    try:
        assert await repo.search("connexio oficina") == [numbers[1]]
        assert await repo.search("MARTI") == [numbers[0]]
        assert await repo.search("importat") == [900]
        async with repo.reading() as view:
            (meta,) = await view.attachments(numbers[0])
            assert (await view.attachment(numbers[0], meta.id)).data == PDF.data
        # Numbers and ids continue after the source's: no ticket number is given twice.
        result = await service.apply(
            Actor.member("marta@example.net"), ReceiveMail(mail("Nou", "Hola"), MailClass.MEMBER)
        )
        assert result.ticket == 901
        history = await repo.history(result.ticket)
        assert min(e.id for e in history) > max(r[0] for r in before["entries"])
    finally:
        await engine.dispose()

    # Once it holds tickets, the target is refused, and left as it was.
    with pytest.raises(CopyError, match="already holds 5 ticket"):
        await asyncio.to_thread(copy_database, source, pg_url, branches())
    assert len(every_row(pg_url)["tickets"]) == 5


async def test_copy_refuses_a_source_behind_or_plugins_left_out(tmp_path, pg_url):
    source = f"sqlite:///{tmp_path / 'exobot.db'}"
    await asyncio.to_thread(upgrade, source, "head", branches())
    await asyncio.to_thread(seed_plugins, source, 1)
    # The procedures plugin is not enabled for the copy: its tables have nowhere to go.
    with pytest.raises(CopyError, match="run `exobot migrate` on the source"):
        await asyncio.to_thread(
            copy_database, source, pg_url, {"connectivity": branches()["connectivity"]}
        )
    engine = create_sync_engine(pg_url)
    with engine.connect() as conn:
        assert not sa.inspect(conn).has_table("procedures_members")
        assert conn.execute(sa.text("SELECT count(*) FROM tickets")).scalar() == 0
    engine.dispose()


def test_cli_copy_prints_the_counts(tmp_path, pg_url, capsys):
    source = f"sqlite:///{tmp_path / 'exobot.db'}"
    upgrade(source)
    config = tmp_path / "config.yaml"
    config.write_text(
        "mail:\n  address: suport@example.org\n"
        "  imap: {host: imap.example.org, username: suport@example.org, password: x}\n"
        "  smtp: {host: smtp.example.org}\n"
        f"database:\n  url: {source}\n"
    )
    config.chmod(0o600)
    status = main(["db", "copy", "-c", str(config), "--to", pg_url])
    out = capsys.readouterr()
    if status != 0:
        pytest.fail(f"exit {status}: {out.err}")
    assert "tickets: 0 row(s)" in out.out and "search index: 0 row(s) rebuilt" in out.out


@pytest.mark.parametrize(
    ("source", "target", "same"),
    [
        ("sqlite:///{d}/exobot.db", "sqlite:///{d}/./sub/../exobot.db", True),
        ("sqlite:///{d}/exobot.db", "sqlite+aiosqlite:///{d}/exobot.db", True),
        ("sqlite:///{d}/exobot.db", "sqlite:///{d}/other.db", False),
        ("postgresql+psycopg://u:p@db/exobot", "postgresql+psycopg://v:q@db:5432/exobot", True),
        ("postgresql+psycopg://u:p@db/exobot", "postgresql+psycopg://u:p@db/other", False),
        ("postgresql+psycopg://u:p@db/exobot", "sqlite:///exobot", False),
    ],
)
def test_the_same_database_is_told_however_its_url_is_written(tmp_path, source, target, same):
    (tmp_path / "sub").mkdir()
    urls = [url.format(d=tmp_path) for url in (source, target)]
    assert same_database(*urls) is same


def test_cli_copy_onto_its_own_source_says_so(tmp_path, capsys):
    """It said "exobot is already running on this database": its own lock on the source."""
    source = tmp_path / "exobot.db"
    upgrade(f"sqlite:///{source}")
    config = tmp_path / "config.yaml"
    config.write_text(
        "mail:\n  address: suport@example.org\n"
        "  imap: {host: imap.example.org, username: suport@example.org, password: x}\n"
        "  smtp: {host: smtp.example.org}\n"
        f"database:\n  url: sqlite:///{source}\n"
    )
    config.chmod(0o600)
    before = source.read_bytes()
    status = main(["db", "copy", "-c", str(config), "--to", f"sqlite:///{tmp_path}/./exobot.db"])
    assert status == 1
    assert capsys.readouterr().err == (
        "exobot db copy: the source and the target are the same database: give another --to\n"
    )
    assert source.read_bytes() == before
