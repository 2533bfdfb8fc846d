"""exobot killed with SIGKILL around a new ticket's chat announcement posts its root once.

Each new ticket gets exactly one root message in its queue's room, posted by the chat worker
from an outbox row written in the ticket's transaction. The bot runs as a separate process
(tests/crash_runner.py) that kills itself at a chosen point; then it is started again,
normally, and the volunteer's view of the room and the database must show one root, one
thread, one acknowledgement.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest
from harness import ROOT, Instance, member_mail, unique, wait_until
from matrix_harness import MatrixUser, body_of, sender_of, thread_root_of

pytestmark = pytest.mark.integration

DUPLICATE_GRACE_SECONDS = 3.0  # a duplicate root would show up within this after the first


async def _run_until_killed(inst: Instance, point: str) -> None:
    """Run exobot in a crash_runner process until it kills itself at `point`; its log is in
    the failure message when it does not."""
    log_path = inst.db_path.parent / f"crash-{point}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "tests" / "crash_runner.py"), point, str(inst.config_path)],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'tests'}"},
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    try:

        async def ended() -> bool:
            return proc.poll() is not None

        await wait_until(ended, what=f"exobot to crash at {point}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
            print(log_path.read_text(errors="replace")[-5000:])
    assert proc.returncode == -9, (
        f"exobot was expected to die by SIGKILL at {point}, exited with {proc.returncode}:\n"
        + log_path.read_text(errors="replace")[-5000:]
    )


def _is_root(event: dict, bot: str, number: int) -> bool:
    """A bot message in the room's main timeline naming the ticket: a root message."""
    return (
        sender_of(event) == bot
        and event.get("type") == "m.room.message"
        and f"suport#{number}" in (body_of(event) or "")
        and thread_root_of(event) is None
    )


def _roots(vol: MatrixUser, room: str, bot: str, number: int) -> list[dict]:
    return [e for e in vol.events(room) if _is_root(e, bot, number)]


@pytest.mark.parametrize(
    "point",
    [
        "after-ticket-created",  # committed, nothing sent: the outbox row must survive
        "before-chat-send",  # the chat worker took the row, posted nothing
        "before-post-record",  # posted, not recorded: the transaction id must dedupe
        # posted; the post and its thread are recorded in one transaction, killed inside it
        "before-thread-record",
    ],
)
async def test_sigkill_around_the_announcement_posts_one_root(
    make_instance, matrix_setup, volunteer, point
):
    setup = matrix_setup()
    inst = make_instance(matrix=setup)
    vol = await volunteer(setup)
    room, bot = setup.rooms["suport"], setup.bot_user_id
    member = unique("member")
    await inst.send(member_mail(member, inst.address, subject=f"Crash {point}"))

    await _run_until_killed(inst, point)
    assert inst.scalar("SELECT count(*) FROM tickets") == 1
    number = inst.scalar("SELECT id FROM tickets")
    chat_row = inst.scalar("SELECT id FROM outbox WHERE kind = 'chat' AND ticket_id = :n", n=number)
    assert chat_row is not None, "the ticket's transaction queued no chat row"
    assert inst.scalar("SELECT state FROM outbox WHERE id = :r", r=chat_row) == "pending"
    assert inst.scalar("SELECT count(*) FROM chat_threads") == 0
    posts_before = inst.scalar("SELECT count(*) FROM chat_posts WHERE outbox_id = :r", r=chat_row)
    assert posts_before == 0  # with the thread or not at all (one transaction)
    if point in ("before-post-record", "before-thread-record"):
        # The homeserver did take the root before the crash: the restart must not repeat it.
        await vol.wait_for(
            room,
            lambda e: _is_root(e, bot, number),
            what=f"the root of suport#{number} posted before the crash",
        )
    else:
        await asyncio.sleep(0.5)
        assert _roots(vol, room, bot, number) == []

    await inst.start()
    await inst.wait_outbox_idle()
    await vol.wait_for(
        room,
        lambda e: _is_root(e, bot, number),
        what=f"the root of suport#{number}",
    )
    await asyncio.sleep(DUPLICATE_GRACE_SECONDS)  # a duplicate root would show up now

    roots = _roots(vol, room, bot, number)
    assert len(roots) == 1, [body_of(e) for e in roots]
    root_id = roots[0]["event_id"]
    assert f"Crash {point}" in body_of(roots[0])
    assert inst.query(
        "SELECT room_id, root_event_id FROM chat_threads WHERE ticket_id = :n", n=number
    ) == [(room, root_id)]
    assert inst.scalar("SELECT state FROM outbox WHERE id = :r", r=chat_row) == "sent"
    assert inst.query("SELECT part, event_id FROM chat_posts WHERE outbox_id = :r", r=chat_row) == [
        (1, root_id)
    ]
    assert inst.scalar("SELECT count(*) FROM outbox WHERE state != 'sent'") == 0

    mails = await inst.wait_mailbox(member, 1)
    await asyncio.sleep(0.5)
    mails = inst.mailbox(member)
    assert len(mails) == 1, [m["Subject"] for m in mails]  # exactly one acknowledgement
    assert f"[suport#{number}]" in mails[0]["Subject"]
