"""The switch-over on real servers: exobot runs on the mail stack (Dovecot, SMTP), `exobot
import rt` brings in a real RT 5's tickets beside it, and a member's replies to RT's own mails
land in the imported tickets: by In-Reply-To to a mail RT sent, and by RT's `[rtname #N]`
subject tag (also a merged number's). The import mails nobody."""

from __future__ import annotations

import asyncio
import os
import sys
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from harness import member_mail

from devstack.rt_seed import MEMBER

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
DEADLINE = 300.0  # a bound, never a pause


def rt_sent(server, number: int) -> list[tuple[str, str]]:
    """(Message-ID without <>, recipient) of the mails RT sent about ticket `number`."""
    tag = f"[{server.rtname} #{number}]"
    out = []
    for raw in server.sent_mail():
        mail = message_from_bytes(raw, policy=policy.default)
        if tag in str(mail.get("Subject", "")):
            out.append((str(mail["Message-ID"]).strip().strip("<>"), str(mail.get("To", ""))))
    return out


def mail_in_bodies(inst, number: int) -> list[str]:
    rows = inst.query(
        "SELECT body FROM entries WHERE ticket_id = :t AND kind = 'mail_in' ORDER BY id", t=number
    )
    return [r[0].strip() for r in rows]


async def test_member_replies_to_rt_mail_land_in_the_imported_tickets(make_instance, rt5, tmp_path):
    inst = make_instance(tickets={"legacy_tags": [rt5.rtname]})
    await inst.start()
    secret = tmp_path / "rt-password"
    secret.write_text(rt5.password)
    # Beside the running exobot, as at the switch-over; awaited (not run blocking) so that
    # exobot's own transactions on this event loop go on meanwhile.
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "exobot.cli", "import", "rt", "-c", str(inst.config_path),
        "--url", rt5.url, "--user", rt5.user, "--password-file", str(secret),
        "--queue", "General=suport", "--queue", "Altes=suport",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), DEADLINE)
    assert proc.returncode == 0, (out + err).decode(errors="replace")
    imported = inst.scalar("SELECT count(*) FROM tickets")
    assert imported == len(rt5.seeded.tickets) - len(rt5.seeded.merged) - len(rt5.seeded.deleted)
    before_1 = len(mail_in_bodies(inst, 1))
    before_7 = len(mail_in_bodies(inst, 7))

    # 1. A reply to the staff answer RT mailed on #1, threaded by In-Reply-To alone.
    answers = [m for m, to in rt_sent(rt5, 1) if MEMBER in to]
    assert answers, "RT sent the member nothing about #1"
    await inst.send(
        member_mail(MEMBER, inst.address, subject="Re: el correu", body="Ara ja funciona.",
                    In_Reply_To=f"<{answers[-1]}>", References=f"<{answers[-1]}>")
    )  # fmt: skip
    # 2. RT's subject tag, with its space, naming the survivor #7 …
    await inst.send(
        member_mail(MEMBER, inst.address, body="El router nou ha arribat.",
                    subject=f"Re: [{rt5.rtname} #7] Router espatllat")
    )  # fmt: skip
    # 3. … and naming #6, merged into #7 in RT.
    merged = min(rt5.seeded.merged)
    await inst.send(
        member_mail(MEMBER, inst.address, body="Aquest era el primer avís.",
                    subject=f"RE: [{rt5.rtname} #{merged}] El router no s'encén")
    )  # fmt: skip
    await inst.wait_inbound_done(3)

    assert inst.scalar("SELECT count(*) FROM tickets") == imported  # no new ticket
    assert mail_in_bodies(inst, 1)[before_1:] == ["Ara ja funciona."]
    assert mail_in_bodies(inst, rt5.seeded.merged[merged])[before_7:] == [
        "El router nou ha arribat.",
        "Aquest era el primer avís.",
    ]
    # The import itself mailed nobody (replies get no acknowledgement either).
    await inst.wait_outbox_idle()
    assert inst.mailbox(MEMBER) == []
