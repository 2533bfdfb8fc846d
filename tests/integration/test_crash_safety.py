"""A process killed with SIGKILL at the worst moments loses nothing and doubles nothing."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest
from harness import ROOT, member_mail, unique, wait_until

pytestmark = pytest.mark.integration


async def _run_until_killed(inst, point: str) -> int:
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "crash_runner.py"), point, str(inst.config_path)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'tests'}"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )

    async def ended() -> bool:
        return proc.poll() is not None

    await wait_until(ended, what="exobot to crash")
    return proc.returncode


@pytest.mark.parametrize("point", ["after-ticket-commit", "after-store"])
async def test_sigkill_leaves_the_mail_in_exactly_one_ticket(make_instance, point):
    inst = make_instance()
    member = unique("member")
    await inst.send(member_mail(member, inst.address, subject=f"Crash {point}"))
    returncode = await _run_until_killed(inst, point)
    assert returncode == -9, "exobot was expected to die by SIGKILL"
    if point == "after-store":
        assert inst.scalar("SELECT state FROM inbound_mail") == "received"
        assert inst.scalar("SELECT count(*) FROM tickets") == 0
    else:
        assert inst.scalar("SELECT count(*) FROM tickets") == 1

    await inst.start()
    await inst.wait_inbound_done(1)
    await inst.wait_outbox_idle()
    await asyncio.sleep(1.0)  # a wrong re-read would show up now
    assert inst.scalar("SELECT count(*) FROM tickets") == 1
    assert inst.scalar("SELECT count(*) FROM inbound_mail") == 1
    assert inst.scalar("SELECT count(*) FROM entries WHERE kind = 'mail_in'") == 1
    assert len(inst.mailbox(member)) == 1  # exactly one acknowledgement
