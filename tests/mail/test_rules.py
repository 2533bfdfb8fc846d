"""The mail rules about trust: From verifies (Reply-To never does), our mail server's DMARC
verdict, the per-sender hourly limit, and who gets an acknowledgement."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from exobot.mail.msgid import MessageIds
from exobot.mail.parse import parse_mail
from exobot.mail.rules import dmarc_result, run_rules

OWN = "suport@example.org"
MARTA = "marta@example.net"
ATTACKER = "attacker@evil.example"
IDS = MessageIds("secret" * 4, "example.org")


@dataclass
class FakeContext:
    """The rules' lookups over a dict of tickets → participants."""

    tickets: dict[int, set[str]] = field(default_factory=lambda: {1: {MARTA}})
    openings: int = 0
    trusted_authserv_id: str | None = None
    new_tickets_per_sender_per_hour: int = 10
    own_address: str = OWN
    prefix: str = "suport"
    ack_limit_per_day: int = 5
    message_ids: MessageIds = IDS

    async def ticket_for_message(self, message_id: str) -> int | None:
        return None

    async def ticket_exists(self, number: int) -> bool:
        return number in self.tickets

    async def participants(self, number: int) -> set[str]:
        return self.tickets[number]

    async def acks_today(self, address: str) -> int:
        return 0

    async def openings_last_hour(self, address: str) -> int:
        return self.openings


def raw(*headers: str, body: str = "Hola") -> bytes:
    return ("\r\n".join(headers) + "\r\n\r\n" + body + "\r\n").encode()


def reply(sender: str, *extra: str) -> bytes:
    return raw(
        f"From: {sender}",
        f"To: {OWN}",
        "Subject: Re: [suport#1] No em funciona internet",
        "Message-ID: <r1@evil.example>",
        *extra,
    )


async def verdict_of(data: bytes, ctx: FakeContext | None = None):
    return await run_rules(parse_mail(data), ctx or FakeContext())


async def test_reply_to_naming_the_member_does_not_verify_a_stranger():
    verdict = await verdict_of(
        reply(ATTACKER, f"Reply-To: {MARTA}", "Cc: spy@evil.example")
    )
    assert verdict.ticket == 1
    assert verdict.unverified and verdict.mail_class.value == "unverified"
    assert ATTACKER in verdict.unverified_why


async def test_the_member_from_her_own_address_is_verified():
    verdict = await verdict_of(reply(MARTA, "Reply-To: elsewhere@example.com"))
    assert (verdict.ticket, verdict.unverified) == (1, False)


async def test_our_signed_message_id_still_verifies():
    signed = IDS.mint(1)
    verdict = await verdict_of(reply("other@example.com", f"In-Reply-To: {signed}"))
    assert verdict.trusted and not verdict.unverified


# --- Authentication-Results -------------------------------------------------------------------

OURS = "mx.example.org"


def dmarc(result: str, server: str = OURS) -> str:
    return f"Authentication-Results: {server}; spf=pass smtp.mailfrom=example.net; dmarc={result} header.from=example.net"


async def test_dmarc_fail_from_our_server_makes_a_participants_mail_unverified():
    verdict = await verdict_of(reply(MARTA, dmarc("fail")), FakeContext(trusted_authserv_id=OURS))
    assert verdict.unverified and "dmarc=fail" in verdict.unverified_why


async def test_dmarc_pass_or_no_trusted_id_changes_nothing():
    assert not (await verdict_of(reply(MARTA, dmarc("pass")), FakeContext(trusted_authserv_id=OURS))).unverified
    assert not (await verdict_of(reply(MARTA, dmarc("fail")))).unverified  # not configured


async def test_dmarc_fail_from_another_server_is_ignored():
    ctx = FakeContext(trusted_authserv_id=OURS)
    assert not (await verdict_of(reply(MARTA, dmarc("fail", "mx.evil.example")), ctx)).unverified


async def test_only_the_topmost_header_of_our_server_counts():
    ctx = FakeContext(trusted_authserv_id=OURS)
    # Ours on top says pass; a forged one below (written by the sender) says fail: pass wins.
    assert not (await verdict_of(reply(MARTA, dmarc("pass"), dmarc("fail")), ctx)).unverified
    # And the other way round: a forged pass below ours does not hide our fail.
    assert (await verdict_of(reply(MARTA, dmarc("fail"), dmarc("pass")), ctx)).unverified


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("mx.example.org; dmarc=fail (p=reject) header.from=x.org", "fail"),
        ("MX.Example.Org 1; spf=pass; DMARC = Fail", "fail"),
        ("mx.example.org (our mx); dkim=pass (reason \"dmarc=fail; no\") header.d=x", None),
        ('mx.example.org; spf=pass smtp.mailfrom="a;dmarc=pass"@x.org; dmarc=fail', "fail"),
        ("mx.example.org; none", None),
        ("other.example; dmarc=fail", None),
        ("", None),
    ],
)
def test_dmarc_result_parsing(value, expected):
    assert dmarc_result((value,), OURS) == expected


def test_dmarc_result_is_linear_on_hostile_input():
    # Unclosed comments and quotes by the hundred thousand: one pass, no backtracking.
    assert dmarc_result(("mx.example.org; " + '("' * 100_000,), OURS) is None


# --- per-sender limit ---------------------------------------------------------------------------


def new_mail(sender: str = ATTACKER) -> bytes:
    return raw(f"From: {sender}", f"To: {OWN}", "Subject: Hola", "Message-ID: <n1@x.example>")


async def test_a_sender_past_the_hourly_limit_is_held():
    verdict = await verdict_of(new_mail(), FakeContext(openings=10))
    assert verdict.hold and "flood" in verdict.hold and ATTACKER in verdict.hold


async def test_a_sender_under_the_limit_is_not_held():
    assert (await verdict_of(new_mail(), FakeContext(openings=9))).hold is None


async def test_unverified_mail_counts_but_a_participants_reply_never_does():
    assert (await verdict_of(reply(ATTACKER), FakeContext(openings=10))).hold
    assert (await verdict_of(reply(MARTA), FakeContext(openings=500))).hold is None


async def test_unverified_new_mail_gets_no_acknowledgement():
    ctx = FakeContext(trusted_authserv_id=OURS)
    verdict = await verdict_of(raw(*new_mail().decode().split("\r\n\r\n")[0].split("\r\n"), dmarc("fail")), ctx)
    assert verdict.ticket is None and verdict.unverified
    assert not verdict.acknowledge and "unverified" in verdict.no_ack[0]


async def test_a_from_address_no_mail_can_be_written_to_is_held_with_the_reason():
    verdict = await verdict_of(raw("From: José <josé@example.org>", f"To: {OWN}", "Subject: Hola"))
    assert verdict.hold and "josé@example.org" in verdict.hold and "@-sign" in verdict.hold
    assert verdict.hold_key is None  # announced once per mail


@pytest.mark.parametrize(
    "headers",
    [
        ("From: Marta <marta@example.net>", f"To: {OWN}", "Subject: Hola"),  # usable
        (f"To: {OWN}", "Subject: Sense remitent"),  # no From at all: not held
    ],
)
async def test_usable_or_missing_senders_are_not_held(headers):
    assert (await verdict_of(raw(*headers))).hold is None
