"""`privacy.mailbox_retention` on the real Dovecot: intake expunges the processed messages older
than the retention from the folder, and keeps the recent ones and those not processed yet."""

from __future__ import annotations

import asyncio
import contextlib
import imaplib
from datetime import UTC, datetime, timedelta

import pytest
from harness import unique, wait_until

from exobot.db import inbound
from exobot.db.engine import create_engine
from exobot.db.migrate import upgrade_async
from exobot.db.repository import SqlRepository
from exobot.mail.intake import ImapIntake, ImapSettings

pytestmark = pytest.mark.integration

RETENTION = timedelta(days=30)


def append(stack, user: str, tag: str, arrived: datetime) -> None:
    """Put a message in the user's INBOX with the given arrival (internal) date."""
    raw = (
        f"From: marta@example.net\r\nTo: {user}\r\nSubject: {tag}\r\n"
        f"Message-ID: <{tag}@example.net>\r\n\r\n{tag}\r\n"
    ).encode()
    with stack.imap(user) as conn:
        status, data = conn.append("INBOX", "", imaplib.Time2Internaldate(arrived), raw)
        assert status == "OK", data


def subjects(stack, user: str) -> set[str]:
    """The tags of the messages still in the user's INBOX."""
    found = set()
    for _uid, raw in stack.fetch_all(user):
        for line in raw.split(b"\r\n"):
            if line.startswith(b"Subject: "):
                found.add(line[9:].decode())
    return found


@pytest.fixture
async def repo(tmp_path):
    url = f"sqlite:///{tmp_path / 'exobot.db'}"
    await upgrade_async(url)
    engine = create_engine(url)
    yield SqlRepository(engine)
    await engine.dispose()


async def test_old_processed_mail_is_expunged_and_the_rest_stays(stack, repo):
    user = unique("suport")
    now = datetime.now(UTC)
    old = now - RETENTION - timedelta(days=3)
    for tag in ("old-done", "old-duplicate", "old-quarantined", "old-unprocessed"):
        await asyncio.to_thread(append, stack, user, tag, old)
    await asyncio.to_thread(append, stack, user, "recent-done", now)
    settings = ImapSettings(
        host=stack.host, port=stack.imap_port, username=user, password=stack.password,
        security="none", poll_interval=0.5, expunge_after=RETENTION, expunge_every=0.2,
    )  # fmt: skip
    intake = ImapIntake(settings, repo)
    task = asyncio.create_task(intake.run())
    try:

        async def stored() -> list:
            async with repo.connection() as conn:
                rows = await inbound.list_inbound(conn, state=None)
            return rows if len(rows) == 5 else []

        rows = await wait_until(stored, what="the five messages stored")
        # Mark them as the processor would have: the intake itself expunges nothing unprocessed.
        states = {
            "old-done": "done",
            "old-duplicate": "duplicate",
            "old-quarantined": inbound.QUARANTINED,
            "recent-done": "done",
        }
        async with repo.connection() as conn:
            for row in rows:
                raw = (await inbound.load_raw(conn, row.id))[0]
                tag = raw.split(b"Subject: ")[1].split(b"\r\n")[0].decode()
                if tag in states:
                    await inbound.mark_inbound(conn, row.id, states[tag], subject=tag)

        async def expunged() -> set[str] | None:
            left = await asyncio.to_thread(subjects, stack, user)
            return left if len(left) == 3 else None

        left = await wait_until(expunged, what="the old processed messages expunged")
        assert left == {"old-quarantined", "old-unprocessed", "recent-done"}
        # The database keeps its rows (the de-duplication record).
        async with repo.connection() as conn:
            assert len(await inbound.list_inbound(conn, state=None)) == 5
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_without_mailbox_retention_nothing_is_expunged(stack, repo):
    user = unique("suport")
    await asyncio.to_thread(append, stack, user, "ancient", datetime(2001, 1, 1, tzinfo=UTC))
    settings = ImapSettings(
        host=stack.host, port=stack.imap_port, username=user, password=stack.password,
        security="none", poll_interval=0.5, expunge_every=0.0,
    )  # fmt: skip
    intake = ImapIntake(settings, repo)
    task = asyncio.create_task(intake.run())
    try:

        async def stored() -> bool:
            async with repo.connection() as conn:
                return len(await inbound.list_inbound(conn, state=None)) == 1

        await wait_until(stored, what="the message stored")
        async with repo.connection() as conn:
            [row] = await inbound.list_inbound(conn, state=None)
            await inbound.mark_inbound(conn, row.id, "done")
        # A few watch loops go by (each NOOP is a pass), then the message is still there.
        await intake.connected.wait()
        for _ in range(3):
            await asyncio.wait_for(_one_pass(intake), 30)
        assert await asyncio.to_thread(subjects, stack, user) == {"ancient"}
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _one_pass(intake: ImapIntake) -> None:
    """Wait until the watch loop has fetched once more (it calls fetch_new every pass)."""
    done = asyncio.Event()
    original = intake.fetch_new

    async def counting(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        result = await original(*args, **kwargs)
        done.set()
        return result

    intake.fetch_new = counting
    try:
        await done.wait()
    finally:
        intake.fetch_new = original
