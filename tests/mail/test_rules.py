"""The mail rules, each on its own and through the pipeline, against an in-memory context.

The first part feeds whole raw mails through the parser (trust: From verifies, Reply-To never
does; our mail server's DMARC verdict; the per-sender hourly limit). The second part builds
`ParsedMail` values directly and checks every rule of `exobot.mail.rules` for a hit and a
miss, with `requestor_of`, `dmarc_result` and `run_rules`."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType

import pytest

from exobot.core.intents import MailClass
from exobot.mail.msgid import MessageIds
from exobot.mail.parse import BounceInfo, ParsedMail, parse_mail
from exobot.mail.rules import (
    Acknowledge,
    AutomaticMail,
    Bounce,
    DmarcFail,
    LoopMarker,
    SenderFlood,
    ThreadByMessageId,
    ThreadBySubject,
    UnusableSender,
    Verdict,
    VerifySender,
    dmarc_result,
    requestor_of,
    run_rules,
)

OWN = "suport@example.org"
MARTA = "marta@example.net"
ATTACKER = "attacker@evil.example"
IDS = MessageIds("secret" * 4, "example.org")


@dataclass
class FakeContext:
    """The rules' lookups over a dict of tickets → participants."""

    tickets: dict[int, set[str]] = field(default_factory=lambda: {1: {MARTA}})
    known: dict[str, int] = field(default_factory=dict)  # Message-IDs stored with a ticket
    openings: int = 0
    acks: int = 0
    acks_from: int = 0  # on tickets opened by mail from the sender, whatever their Reply-To
    trusted_authserv_id: str | None = None
    new_tickets_per_sender_per_hour: int = 10
    own_address: str = OWN
    prefix: str = "suport"
    ack_limit_per_day: int = 5
    message_ids: MessageIds = IDS
    legacy_tags: tuple[str, ...] = ()
    form_senders: frozenset[str] = frozenset()
    aliases: dict[int, int] = field(default_factory=dict)  # merged number → surviving ticket

    async def ticket_for_message(self, message_id: str) -> int | None:
        return self.known.get(message_id)

    async def ticket_number(self, number: int) -> int | None:
        number = self.aliases.get(number, number)
        return number if number in self.tickets else None

    async def participants(self, number: int) -> set[str]:
        return self.tickets[number]

    async def acks_today(self, address: str) -> int:
        return self.acks

    async def acks_today_from(self, address: str) -> int:
        return self.acks_from

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
    verdict = await verdict_of(reply(ATTACKER, f"Reply-To: {MARTA}", "Cc: spy@evil.example"))
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
    assert not (
        await verdict_of(reply(MARTA, dmarc("pass")), FakeContext(trusted_authserv_id=OURS))
    ).unverified
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
        ('mx.example.org (our mx); dkim=pass (reason "dmarc=fail; no") header.d=x', None),
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
    verdict = await verdict_of(
        raw(*new_mail().decode().split("\r\n\r\n")[0].split("\r\n"), dmarc("fail")), ctx
    )
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


# --- each rule on its own, on ParsedMail values built directly ----------------------------------

STRANGER = "stranger@example.com"


def parsed(headers: dict[str, str | tuple[str, ...]] | None = None, **fields) -> ParsedMail:
    """A ParsedMail as the parser would hand it over: a plain new mail from Marta unless
    `fields` say otherwise; `headers` by name (any case), a string or the values in order."""
    values = {
        "message_id": "<m1@member.example>",
        "in_reply_to": (),
        "references": (),
        "subject": "No em funciona internet",
        "from_addr": MARTA,
        "from_name": "Marta",
        "reply_to": None,
        "to": (OWN,),
        "cc": (),
        "return_path": MARTA,
        "date": None,
        "body": "Hola",
        "body_source": "text/plain",
        "body_truncated": False,
        "attachments": (),
        "is_report": False,
        "bounce": None,
        "defects": (),
    }
    values.update(fields)
    raw_headers = {"from": f"Marta <{values['from_addr']}>"} if values["from_addr"] else {}
    raw_headers |= {name.lower(): value for name, value in (headers or {}).items()}
    values["headers"] = MappingProxyType(
        {name: (v,) if isinstance(v, str) else tuple(v) for name, v in raw_headers.items()}
    )
    return ParsedMail(**values)


def bounce_of(original: str | None) -> BounceInfo:
    return BounceInfo(original, (MARTA,), "5.1.1", "failed", "550 no such user")


async def apply(rule, mail: ParsedMail, ctx: FakeContext | None = None, **so_far) -> Verdict:  # noqa: ANN001
    """The verdict after one rule, starting from a verdict with `so_far` already set."""
    verdict = Verdict(**so_far)
    await rule.apply(mail, ctx or FakeContext(), verdict)
    return verdict


# LoopMarker


async def test_loop_marker_drops_our_own_mail_coming_back():
    mail = parsed({"X-Exobot-Loop": ("other", IDS.loop_marker())})
    assert (await apply(LoopMarker(), mail)).drop == "carries our own loop marker"


async def test_loop_marker_ignores_another_installations_marker():
    other = MessageIds("another secret" * 2, "example.org").loop_marker()
    assert (await apply(LoopMarker(), parsed({"X-Exobot-Loop": other}))).drop is None
    assert (await apply(LoopMarker(), parsed())).drop is None


# AutomaticMail


@pytest.mark.parametrize(
    ("mail", "why"),
    [
        (parsed({"Auto-Submitted": "auto-replied; owner-email=x"}), "Auto-Submitted: auto-replied"),
        (parsed({"Precedence": "Bulk"}), "Precedence: bulk"),
        (parsed({"Precedence": "auto_reply"}), "Precedence: auto_reply"),
        (parsed({"X-Precedence": "junk"}), "X-Precedence: junk"),
        (parsed({"X-Autoreply": "yes"}), "X-Autoreply: yes"),
        (parsed({"X-Autorespond": "Out of office"}), "X-Autorespond: out of office"),
        (parsed({"X-Autogenerated": "Reply"}), "X-Autogenerated: reply"),
        (
            parsed({"List-Id": "Veins <veins.lists.example.com>"}),
            "List-Id: veins <veins.lists.example.com>",
        ),
        (
            parsed({"List-Unsubscribe": "<mailto:leave@lists.example.com>"}),
            "List-Unsubscribe: <mailto:leave@lists.example.com>",
        ),
        (
            parsed({"List-Post": "<mailto:veins@lists.example.com>"}),
            "List-Post: <mailto:veins@lists.example.com>",
        ),
        (parsed(return_path=""), "empty Return-Path"),
        (parsed(from_addr="mailer-daemon@example.net"), "sent by mailer-daemon"),
        (parsed(from_addr="MAILER-DAEMON@example.net"), "sent by MAILER-DAEMON"),
        (parsed(from_addr="postmaster@example.net"), "sent by postmaster"),
        (parsed(from_addr="noreply@shop.example.com"), "sent by noreply"),
        (parsed(from_addr="no-reply@shop.example.com"), "sent by no-reply"),
        (parsed(from_addr="do-not-reply@shop.example.com"), "sent by do-not-reply"),
        (parsed(from_addr="donotreply@shop.example.com"), "sent by donotreply"),
        (parsed(from_addr="noreply-billing@shop.example.com"), "sent by noreply-billing"),
        # A no-reply Reply-To names nobody to answer either.
        (
            parsed(from_addr="noreply@shop.example.com", reply_to="no_reply@shop.example.com"),
            "sent by noreply",
        ),
        (parsed(is_report=True), "multipart/report"),
    ],
)
async def test_automatic_mail_is_recognised(mail, why):
    assert (await apply(AutomaticMail(), mail)).automatic == why


@pytest.mark.parametrize(
    "mail",
    [
        parsed(),
        parsed({"Auto-Submitted": "no"}),
        parsed({"Precedence": "first-class"}),
        parsed(return_path=None),  # no Return-Path at all is not the null sender
        parsed(from_addr="daemon.fan@example.net"),
        # Outlook and Exchange set it on people's mail too: it asks others not to answer.
        parsed({"X-Auto-Response-Suppress": "All"}),
        parsed({"X-Autoreply": "no"}),
        parsed({"Precedence": "list-like"}),
        parsed({"X-Autogenerated": "Forward"}),
        # A web form sending from a no-reply address for the member in Reply-To.
        parsed(from_addr="noreply@exo.example", reply_to=MARTA),
        parsed(from_addr="reply.please@example.net"),
    ],
)
async def test_mail_from_people_is_not_automatic(mail):
    assert (await apply(AutomaticMail(), mail)).automatic is None


# Bounce


async def test_a_bounce_of_our_signed_mail_goes_to_its_ticket():
    verdict = await apply(Bounce(), parsed(bounce=bounce_of(IDS.mint(1))))
    assert (verdict.bounce, verdict.ticket, verdict.threaded_by) == (True, 1, "bounced Message-ID")


async def test_a_bounce_of_a_stored_message_id_goes_to_its_ticket():
    ctx = FakeContext(known={"<ack-1@example.org>": 1})
    verdict = await apply(Bounce(), parsed(bounce=bounce_of("<ack-1@example.org>")), ctx)
    assert (verdict.bounce, verdict.ticket) == (True, 1)


@pytest.mark.parametrize(
    "original",
    [
        None,  # the report does not say what bounced
        "<unknown@example.org>",
        IDS.mint(7),  # signed by us, but no such ticket
        MessageIds("forged" * 4, "example.org").mint(1),  # a signature that is not ours
    ],
)
async def test_a_bounce_about_nothing_we_know_has_no_ticket(original):
    verdict = await apply(Bounce(), parsed(bounce=bounce_of(original)))
    assert (verdict.bounce, verdict.ticket) == (True, None)


async def test_a_plain_bounce_quoting_our_signed_id_goes_to_its_ticket():
    forged = MessageIds("forged" * 4, "example.org").mint(1)
    bounce = BounceInfo(None, (), None, None, None, quoted_ids=(forged, IDS.mint(7), IDS.mint(1)))
    verdict = await apply(Bounce(), parsed(bounce=bounce))
    assert (verdict.bounce, verdict.ticket, verdict.threaded_by) == (True, 1, "quoted Message-ID")


@pytest.mark.parametrize(
    "quoted",
    [
        (),
        ("<ack-1@example.org>",),  # stored with a ticket, but quoted text proves nothing
        (MessageIds("forged" * 4, "example.org").mint(1),),
    ],
)
async def test_a_plain_bounce_quoting_nothing_signed_of_ours_is_dropped(quoted):
    ctx = FakeContext(known={"<ack-1@example.org>": 1})
    mail = parsed(bounce=BounceInfo(None, (), None, None, None, quoted_ids=quoted))
    verdict = await run_rules(mail, ctx)
    assert (verdict.ticket, verdict.drop) == (None, "a bounce about no mail of ours")


async def test_a_mail_that_is_no_bounce_is_left_alone():
    verdict = await apply(Bounce(), parsed(in_reply_to=(IDS.mint(1),)))
    assert (verdict.bounce, verdict.ticket) == (False, None)


# ThreadByMessageId


async def test_in_reply_to_our_signed_id_threads_and_trusts():
    verdict = await apply(ThreadByMessageId(), parsed(in_reply_to=(IDS.mint(1),)))
    assert (verdict.ticket, verdict.threaded_by, verdict.trusted) == (1, "Message-ID", True)


async def test_a_stored_id_in_references_threads_without_trust():
    ctx = FakeContext(tickets={1: {MARTA}, 2: {MARTA}}, known={"<a@x>": 1, "<b@x>": 2})
    # The newest reference (the last one) wins.
    verdict = await apply(ThreadByMessageId(), parsed(references=("<a@x>", "<b@x>")), ctx)
    assert (verdict.ticket, verdict.trusted) == (2, False)


async def test_in_reply_to_comes_before_references():
    ctx = FakeContext(tickets={1: {MARTA}, 2: {MARTA}}, known={"<a@x>": 1, "<b@x>": 2})
    mail = parsed(in_reply_to=("<a@x>",), references=("<b@x>",))
    assert (await apply(ThreadByMessageId(), mail, ctx)).ticket == 1


@pytest.mark.parametrize(
    "mail",
    [
        parsed(),
        parsed(in_reply_to=("<unknown@x>",), references=("<other@x>",)),
        parsed(in_reply_to=(IDS.mint(9),)),  # signed, but the ticket does not exist
        parsed(in_reply_to=(MessageIds("forged" * 4, "example.org").mint(1),)),
    ],
)
async def test_unknown_message_ids_thread_nothing(mail):
    verdict = await apply(ThreadByMessageId(), mail)
    assert (verdict.ticket, verdict.trusted) == (None, False)


async def test_message_ids_do_not_override_a_ticket_already_found():
    verdict = await apply(ThreadByMessageId(), parsed(in_reply_to=(IDS.mint(1),)), ticket=5)
    assert (verdict.ticket, verdict.trusted) == (5, False)


# ThreadBySubject


@pytest.mark.parametrize(
    "subject", ["Re: [suport#1] Internet", "RE: Fwd: suport#1", "[ SUPORT # 1 ]"]
)
async def test_the_reference_in_the_subject_threads(subject):
    verdict = await apply(ThreadBySubject(), parsed(subject=subject))
    assert (verdict.ticket, verdict.threaded_by) == (1, "subject")


@pytest.mark.parametrize(
    "subject",
    [
        "No em funciona internet",
        "[suport#99] no such ticket",
        "[tresoreria#1] other prefix",
        "x#suport#1",
    ],
)
async def test_a_subject_without_an_existing_reference_threads_nothing(subject):
    assert (await apply(ThreadBySubject(), parsed(subject=subject))).ticket is None


@pytest.mark.parametrize(
    ("subject", "ticket"),
    [
        ("Re: [eXO #1] Internet", 1),  # Request Tracker's own form, with the space
        ("RE: [exo#1] Internet", 1),
        ("Re: [eXO #7] merged into 1", 1),  # a merged number names the surviving ticket
        ("Re: [suport#1] [eXO #99]", 1),  # exobot's own tag first
        ("Re: [altre #1] another RT", None),  # not a configured name
        ("Re: eXO #1 without brackets", None),
    ],
)
async def test_a_legacy_subject_tag_threads(subject, ticket):
    ctx = FakeContext(legacy_tags=("eXO",), aliases={7: 1})
    verdict = await apply(ThreadBySubject(), parsed(subject=subject), ctx)
    assert verdict.ticket == ticket


async def test_a_merged_number_threads_to_the_surviving_ticket_and_its_participants():
    ctx = FakeContext(aliases={7: 1}, known={"<old@rt.example.org>": 7})
    by_subject = await apply(ThreadBySubject(), parsed(subject="Re: [suport#7]"), ctx)
    by_id = await apply(ThreadByMessageId(), parsed(in_reply_to=("<old@rt.example.org>",)), ctx)
    assert by_subject.ticket == by_id.ticket == 1
    assert not (await apply(VerifySender(), parsed(), ctx, ticket=by_subject.ticket)).unverified


async def test_the_subject_does_not_override_a_ticket_already_found():
    ctx = FakeContext(tickets={1: {MARTA}, 2: {MARTA}})
    verdict = await apply(ThreadBySubject(), parsed(subject="[suport#1]"), ctx, ticket=2)
    assert (verdict.ticket, verdict.threaded_by) == (2, None)


# VerifySender


@pytest.mark.parametrize(("sender", "shown"), [(STRANGER, STRANGER), ("", "(none)")])
async def test_a_sender_who_is_no_participant_is_unverified(sender, shown):
    verdict = await apply(VerifySender(), parsed(from_addr=sender), ticket=1)
    assert verdict.unverified and verdict.unverified_why == f"From {shown} is not a participant"


@pytest.mark.parametrize(
    ("mail", "so_far"),
    [
        (parsed(), {"ticket": 1}),  # a participant
        (parsed(from_addr=STRANGER), {}),  # no ticket: a new one
        (parsed(from_addr=STRANGER), {"ticket": 1, "trusted": True}),  # quotes our signed id
        (parsed(from_addr=STRANGER), {"ticket": 1, "bounce": True}),
    ],
)
async def test_participants_trusted_and_new_mail_are_not_unverified(mail, so_far):
    assert not (await apply(VerifySender(), mail, **so_far)).unverified


async def test_the_first_reason_to_distrust_is_kept():
    verdict = Verdict(ticket=1)
    verdict.mark_unverified("dmarc=fail")
    await VerifySender().apply(parsed(from_addr=STRANGER), FakeContext(), verdict)
    assert verdict.unverified_why == "dmarc=fail"


# DmarcFail


async def test_our_servers_dmarc_fail_makes_the_mail_unverified():
    mail = parsed({"Authentication-Results": f"{OURS}; dmarc=fail header.from=example.net"})
    verdict = await apply(DmarcFail(), mail, FakeContext(trusted_authserv_id=OURS))
    assert verdict.unverified and verdict.unverified_why == f"dmarc=fail according to {OURS}"


@pytest.mark.parametrize(
    ("value", "trusted", "so_far"),
    [
        (f"{OURS}; dmarc=pass", OURS, {}),
        (f"{OURS}; dmarc=fail", None, {}),  # nobody's word is trusted
        ("mx.evil.example; dmarc=fail", OURS, {}),
        (f"{OURS}; dmarc=fail", OURS, {"bounce": True}),  # bounces come from daemons
    ],
)
async def test_dmarc_changes_nothing_otherwise(value, trusted, so_far):
    mail = parsed({"Authentication-Results": value})
    verdict = await apply(DmarcFail(), mail, FakeContext(trusted_authserv_id=trusted), **so_far)
    assert not verdict.unverified


# SenderFlood


@pytest.mark.parametrize("so_far", [{}, {"ticket": 1, "unverified": True}])
async def test_a_sender_at_the_hourly_limit_is_held_once_per_sender(so_far):
    ctx = FakeContext(openings=3, new_tickets_per_sender_per_hour=3)
    verdict = await apply(SenderFlood(), parsed(from_addr=STRANGER), ctx, **so_far)
    assert verdict.hold == (
        f"flood: more than 3 new tickets or unverified mails from {STRANGER} in an hour"
    )
    assert verdict.hold_key == f"flood:{STRANGER}"


@pytest.mark.parametrize(
    ("mail", "openings", "so_far"),
    [
        (parsed(from_addr=STRANGER), 2, {}),  # under the limit
        (parsed(), 50, {"ticket": 1}),  # a participant's reply is never limited
        (parsed(from_addr=STRANGER), 50, {"bounce": True}),
        (parsed(from_addr=""), 50, {}),  # nobody to count
        (parsed(from_addr=STRANGER), 50, {"hold": "held already"}),
    ],
)
async def test_a_sender_is_not_held_otherwise(mail, openings, so_far):
    ctx = FakeContext(openings=openings, new_tickets_per_sender_per_hour=3)
    verdict = await apply(SenderFlood(), mail, ctx, **so_far)
    assert verdict.hold_key is None and verdict.hold in (None, so_far.get("hold"))


# UnusableSender


async def test_a_from_no_mail_can_be_written_to_is_held():
    mail = parsed({"From": "José <josé@example.org>"}, from_addr="")
    verdict = await apply(UnusableSender(), mail)
    assert verdict.hold.startswith("sender address cannot be written to: josé@example.org (")
    assert verdict.hold_key is None


@pytest.mark.parametrize(
    ("mail", "so_far"),
    [
        (parsed(), {}),  # a usable From
        (parsed(from_addr=""), {}),  # no From header at all: nobody to answer
        (parsed({"From": "  "}, from_addr=""), {}),
        (parsed({"From": "josé@example.org"}, from_addr=""), {"bounce": True}),
    ],
)
async def test_usable_missing_or_bounced_senders_are_not_held(mail, so_far):
    assert (await apply(UnusableSender(), mail, **so_far)).hold is None


# Acknowledge


async def test_a_new_ticket_from_a_person_is_acknowledged():
    verdict = await apply(Acknowledge(), parsed(), FakeContext(acks=4, ack_limit_per_day=5))
    assert verdict.acknowledge and verdict.no_ack == []
    ctx = FakeContext(acks=0, acks_from=4, ack_limit_per_day=5)
    assert (await apply(Acknowledge(), parsed(reply_to="family@example.net"), ctx)).acknowledge


@pytest.mark.parametrize(
    ("mail", "ctx", "so_far", "why"),
    [
        (
            parsed(),
            FakeContext(),
            {"automatic": "Precedence: bulk"},
            "automatic mail (Precedence: bulk)",
        ),
        (parsed(from_addr=""), FakeContext(), {}, "no sender address"),
        (parsed(from_addr=OWN), FakeContext(), {}, "mail from our own address"),
        (parsed(reply_to=OWN), FakeContext(), {}, "mail from our own address"),
        (
            parsed(),
            FakeContext(),
            {"unverified": True, "unverified_why": "dmarc=fail"},
            "unverified sender (dmarc=fail)",
        ),
        (
            parsed(),
            FakeContext(acks=5, ack_limit_per_day=5),
            {},
            "daily cap of 5 acknowledgements reached",
        ),
        # Each mail from one From with a new Reply-To: the acknowledgements to the mails
        # of that From count, wherever they went.
        (
            parsed(reply_to="reply+1042@helpdesk.example.com"),
            FakeContext(acks=0, acks_from=5, ack_limit_per_day=5),
            {},
            f"daily cap of 5 acknowledgements to mail from {MARTA} reached",
        ),
    ],
)
async def test_no_acknowledgement_and_why(mail, ctx, so_far, why):
    verdict = await apply(Acknowledge(), mail, ctx, **so_far)
    assert not verdict.acknowledge and verdict.no_ack == [why]


@pytest.mark.parametrize("so_far", [{"ticket": 1}, {"bounce": True}])
async def test_replies_and_bounces_are_not_acknowledged_and_need_no_reason(so_far):
    verdict = await apply(Acknowledge(), parsed(), **so_far)
    assert not verdict.acknowledge and verdict.no_ack == []


# requestor_of, Verdict.mail_class


def test_the_requestor_is_reply_to_when_there_is_one_else_from():
    assert requestor_of(parsed(reply_to="family@example.net")) == "family@example.net"
    assert requestor_of(parsed()) == MARTA
    assert requestor_of(parsed(from_addr="")) == ""


@pytest.mark.parametrize(
    ("so_far", "expected"),
    [
        ({}, MailClass.MEMBER),
        ({"automatic": "x"}, MailClass.AUTOMATIC),
        ({"automatic": "x", "unverified": True}, MailClass.UNVERIFIED),
        ({"automatic": "x", "unverified": True, "bounce": True}, MailClass.BOUNCE),
    ],
)
def test_the_mail_class_bounce_then_unverified_then_automatic(so_far, expected):
    assert Verdict(**so_far).mail_class is expected


# run_rules


async def test_the_pipeline_on_a_plain_new_mail():
    verdict = await run_rules(parsed(), FakeContext())
    assert (verdict.drop, verdict.ticket, verdict.hold) == (None, None, None)
    assert verdict.acknowledge and verdict.mail_class is MailClass.MEMBER


async def test_the_pipeline_stops_at_a_drop():
    seen: list[str] = []

    class Spy:
        name = "spy"
        description = "records that it ran"

        async def apply(self, mail, ctx, verdict) -> None:  # noqa: ANN001
            seen.append(mail.subject)

    mail = parsed({"X-Exobot-Loop": IDS.loop_marker()}, subject="[suport#1]")
    verdict = await run_rules(mail, FakeContext(), (LoopMarker(), Spy()))
    assert verdict.drop == "carries our own loop marker" and seen == []
    assert (await run_rules(parsed(), FakeContext(), (LoopMarker(), Spy()))).drop is None
    assert seen == ["No em funciona internet"]


async def test_the_pipeline_drops_a_bounce_about_no_mail_of_ours():
    verdict = await run_rules(
        parsed(bounce=bounce_of("<unknown@x>"), return_path=""), FakeContext()
    )
    assert verdict.drop == "a bounce about no mail of ours" and not verdict.acknowledge


async def test_the_pipeline_threads_a_bounce_without_acknowledging_or_distrusting_it():
    mail = parsed(bounce=bounce_of(IDS.mint(1)), from_addr="mailer-daemon@example.net")
    verdict = await run_rules(mail, FakeContext())
    assert (verdict.drop, verdict.ticket, verdict.unverified) == (None, 1, False)
    assert verdict.mail_class is MailClass.BOUNCE and not verdict.acknowledge


async def test_the_pipeline_holds_an_unusable_sender_without_counting_a_flood():
    mail = parsed({"From": "josé@example.org"}, from_addr="")
    verdict = await run_rules(mail, FakeContext(openings=99))
    assert (
        verdict.hold.startswith("sender address cannot be written to") and verdict.hold_key is None
    )
