"""Mail rules: small named steps that decide what a received mail means, Mailman style.

Each rule looks at the parsed mail and the verdict so far and adds what it knows. The pipeline
never changes anything itself: its verdict becomes a ReceiveMail intent for the TicketService.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from email.utils import getaddresses
from typing import Protocol

from exobot.core.addresses import address_problem
from exobot.core.intents import MailClass
from exobot.core.references import find_in_subject
from exobot.mail.msgid import MessageIds
from exobot.mail.parse import ParsedMail, header

AUTOMATIC_SENDERS = ("mailer-daemon", "postmaster")
BULK_PRECEDENCE = ("bulk", "junk", "list")
# At most this many ids of In-Reply-To and References are looked up per mail. Each is a query
# inside the mail's write transaction, on the one writer every change waits for, and the
# headers may hold any number of ids (300,000 held it for 15 s). In-Reply-To names the parent
# and comes first; then the LAST References, nearest ancestors first: each client appends the
# parent's id to the parent's References, so the ids of the ticket's latest mails (ours carry
# at most exobot.core.service.MAX_REFERENCES) are at the end, and what lies further back is
# older history a reply does not need to be threaded by.
MAX_THREAD_IDS = 20


@dataclass
class Verdict:
    """What the rules decided about one mail."""

    drop: str | None = None  # a reason to keep the mail out of every ticket
    automatic: str | None = None  # why the mail is automatic (no ack, never reopens)
    bounce: bool = False
    ticket: int | None = None
    threaded_by: str | None = None
    trusted: bool = False  # carries one of our signed Message-IDs
    unverified: bool = False
    unverified_why: str | None = None  # for the log: why the sender is not taken as verified
    # A reason to hold the mail in quarantine until an operator retries it, and what its
    # announcement is counted by (None: each held mail is announced once).
    hold: str | None = None
    hold_key: str | None = None
    acknowledge: bool = False
    no_ack: list[str] = field(default_factory=list)

    def mark_unverified(self, why: str) -> None:
        """The mail is kept and shown but has no effect (first reason wins)."""
        self.unverified = True
        self.unverified_why = self.unverified_why or why

    @property
    def mail_class(self) -> MailClass:
        """The class the service needs."""
        if self.bounce:
            return MailClass.BOUNCE
        if self.unverified:
            return MailClass.UNVERIFIED
        if self.automatic:
            return MailClass.AUTOMATIC
        return MailClass.MEMBER


class RuleContext(Protocol):
    """What rules may look up (read-only)."""

    own_address: str
    prefix: str
    ack_limit_per_day: int
    message_ids: MessageIds
    # `mail.trusted_authserv_id`: whose Authentication-Results header we believe (None: nobody).
    trusted_authserv_id: str | None
    # `mail.new_tickets_per_sender_per_hour`.
    new_tickets_per_sender_per_hour: int
    # `tickets.legacy_tags`: the subject tags of a helpdesk exobot replaced (`[NAME #N]`).
    legacy_tags: tuple[str, ...]

    async def ticket_for_message(self, message_id: str) -> int | None:
        """The ticket a known Message-ID belongs to."""

    async def ticket_number(self, number: int) -> int | None:
        """The ticket a number names: itself, the surviving ticket of a merged number
        (imported from another helpdesk), or None when there is none."""

    async def participants(self, number: int) -> set[str]:
        """The participants of a ticket."""

    async def acks_today(self, address: str) -> int:
        """Acknowledgements queued to `address` in the last 24 hours."""

    async def openings_last_hour(self, address: str) -> int:
        """New tickets and unverified mails from `address` (its From) in the last hour."""


class Rule(Protocol):
    """One step of the pipeline."""

    name: str
    description: str

    async def apply(self, mail: ParsedMail, ctx: RuleContext, verdict: Verdict) -> None:
        """Add what this rule knows to the verdict."""


class LoopMarker:
    """Drop mail carrying our own loop marker: it is ours coming back."""

    name = "loop-marker"
    description = "mail with our X-Exobot-Loop marker is dropped and logged"

    async def apply(self, mail: ParsedMail, ctx: RuleContext, verdict: Verdict) -> None:
        """Drop on our marker."""
        if ctx.message_ids.loop_marker() in mail.headers.get("x-exobot-loop", ()):
            verdict.drop = "carries our own loop marker"


class AutomaticMail:
    """Recognise automatic mail (RFC 3834 and the usual conventions): no ack, never reopens."""

    name = "automatic"
    description = "Auto-Submitted, Precedence, X-Auto-Response-Suppress, empty Return-Path, daemons"

    async def apply(self, mail: ParsedMail, ctx: RuleContext, verdict: Verdict) -> None:
        """Set `verdict.automatic` with the first reason found."""
        auto_submitted = (header(mail, "auto-submitted") or "no").split(";")[0].strip().lower()
        precedence = (header(mail, "precedence") or "").strip().lower()
        local_part = mail.from_addr.partition("@")[0]
        reasons = [
            (auto_submitted != "no", f"Auto-Submitted: {auto_submitted}"),
            (precedence in BULK_PRECEDENCE, f"Precedence: {precedence}"),
            (header(mail, "x-auto-response-suppress") is not None, "X-Auto-Response-Suppress"),
            (mail.return_path == "", "empty Return-Path"),
            (local_part in AUTOMATIC_SENDERS, f"sent by {local_part}"),
            (mail.is_report, "multipart/report"),
        ]
        verdict.automatic = next((why for hit, why in reasons if hit), None)


class Bounce:
    """A delivery status notification about one of our mails is attached to its ticket."""

    name = "bounce"
    description = "a DSN is a warning on the ticket of the mail that bounced; never a new ticket"

    async def apply(self, mail: ParsedMail, ctx: RuleContext, verdict: Verdict) -> None:
        """Mark bounces and find their ticket through the original Message-ID."""
        if mail.bounce is None:
            return
        verdict.bounce = True
        original = mail.bounce.original_message_id
        if original:
            ticket = ctx.message_ids.verify(original) or await ctx.ticket_for_message(original)
            ticket = ticket and await ctx.ticket_number(ticket)
            if ticket:
                verdict.ticket, verdict.threaded_by = ticket, "bounced Message-ID"


class ThreadByMessageId:
    """Thread by our Message-IDs (and the ticket's known ones) in In-Reply-To, then References."""

    name = "thread-message-id"
    description = "In-Reply-To / References naming a Message-ID of a ticket"

    async def apply(self, mail: ParsedMail, ctx: RuleContext, verdict: Verdict) -> None:
        """Find the ticket; a validly signed id of ours also makes the sender trusted."""
        if verdict.ticket is not None:
            return
        for message_id in thread_ids(mail):
            signed = ctx.message_ids.verify(message_id)
            named = signed or await ctx.ticket_for_message(message_id)
            ticket = named and await ctx.ticket_number(named)
            if ticket:
                verdict.ticket, verdict.threaded_by = ticket, "Message-ID"
                verdict.trusted = signed == named
                return


class ThreadBySubject:
    """Thread by the reference in the subject: `[suport#N]`, a bare `suport#N`, or the tag
    of a helpdesk exobot replaced (`[rtname #N]`, tickets.legacy_tags)."""

    name = "thread-subject"
    description = "the ticket reference in the subject"

    async def apply(self, mail: ParsedMail, ctx: RuleContext, verdict: Verdict) -> None:
        """Find the ticket named in the subject, if it exists."""
        if verdict.ticket is not None:
            return
        number = find_in_subject(mail.subject, ctx.prefix, ctx.legacy_tags)
        ticket = number and await ctx.ticket_number(number)
        if ticket:
            verdict.ticket, verdict.threaded_by = ticket, "subject"


class VerifySender:
    """A mail naming a ticket must come from a participant (or quote our signed Message-ID).

    Only From counts. Reply-To is whatever the writer wants it to be: counting it let anyone
    who knew a member's address write as that member (and have their Cc added as participants).
    """

    name = "verify-sender"
    description = "a From that is not a participant is kept as unverified until accepted"

    async def apply(self, mail: ParsedMail, ctx: RuleContext, verdict: Verdict) -> None:
        """Flag mail whose From is not a participant."""
        if verdict.ticket is None or verdict.bounce or verdict.trusted:
            return
        participants = await ctx.participants(verdict.ticket)
        if not mail.from_addr or mail.from_addr not in participants:
            verdict.mark_unverified(f"From {mail.from_addr or '(none)'} is not a participant")


class DmarcFail:
    """Our own mail server's word on the sender: DMARC failed, so From may be forged.

    Only the topmost Authentication-Results header whose authserv-id is
    `mail.trusted_authserv_id` counts: headers are added on top as a mail travels, so anything
    below it (or with another id) may have been written by the sender.
    """

    name = "dmarc-fail"
    description = "dmarc=fail from our trusted authserv-id makes the mail unverified"

    async def apply(self, mail: ParsedMail, ctx: RuleContext, verdict: Verdict) -> None:
        """Mark the mail unverified when our server says its DMARC check failed."""
        if verdict.bounce or not ctx.trusted_authserv_id:
            return
        values = mail.headers.get("authentication-results", ())
        if dmarc_result(values, ctx.trusted_authserv_id) == "fail":
            verdict.mark_unverified(f"dmarc=fail according to {ctx.trusted_authserv_id}")


class SenderFlood:
    """Hold mail from a sender who opens too many tickets (or writes too many unverified
    mails) in an hour: a flood stays in quarantine, where an operator can let it through."""

    name = "sender-flood"
    description = "more than mail.new_tickets_per_sender_per_hour from one sender is held"

    async def apply(self, mail: ParsedMail, ctx: RuleContext, verdict: Verdict) -> None:
        """Hold this mail when it would go past the hourly limit."""
        if verdict.bounce or verdict.hold or not mail.from_addr:
            return
        if verdict.ticket is not None and not verdict.unverified:
            return  # a participant's reply: never limited
        limit = ctx.new_tickets_per_sender_per_hour
        if await ctx.openings_last_hour(mail.from_addr) >= limit:
            verdict.hold = (
                f"flood: more than {limit} new tickets or unverified mails from "
                f"{mail.from_addr} in an hour"
            )
            # A flood must not become a flood of chat posts too.
            verdict.hold_key = f"flood:{mail.from_addr}"


class UnusableSender:
    """Hold mail whose From names an address we cannot write to (`josé@example.org` needs
    SMTPUTF8, `a@b` has no domain): a ticket would take it as its requestor and every reply
    would fail. Kept in quarantine with the reason, for an operator to see and answer some
    other way."""

    name = "unusable-sender"
    description = "a From address no mail can be written to is held with the reason"

    async def apply(self, mail: ParsedMail, ctx: RuleContext, verdict: Verdict) -> None:
        """Hold the mail when From is there but its address is refused by the address rule."""
        if verdict.bounce or mail.from_addr:
            return
        written = header(mail, "from")
        if not written or not written.strip():
            return  # no From at all: nobody to answer, the ticket says so
        address = getaddresses([written])[0][1] or written
        problem = address_problem(address)
        if problem:
            verdict.hold = f"sender address cannot be written to: {address[:100]} ({problem})"


class Acknowledge:
    """Acknowledge a new ticket, except to automatic mail, ourselves or past the daily cap."""

    name = "acknowledge"
    description = "an acknowledgement with the reference for new tickets from people"

    async def apply(self, mail: ParsedMail, ctx: RuleContext, verdict: Verdict) -> None:
        """Decide whether the new ticket gets an acknowledgement."""
        if verdict.ticket is not None or verdict.bounce:
            return
        requestor = requestor_of(mail)
        own = ctx.own_address.lower()
        if verdict.automatic:
            verdict.no_ack.append(f"automatic mail ({verdict.automatic})")
        elif not requestor:
            verdict.no_ack.append("no sender address")
        elif own in (requestor, mail.from_addr):
            verdict.no_ack.append("mail from our own address")
        elif verdict.unverified:
            verdict.no_ack.append(f"unverified sender ({verdict.unverified_why})")
        elif await ctx.acks_today(requestor) >= ctx.ack_limit_per_day:
            verdict.no_ack.append(f"daily cap of {ctx.ack_limit_per_day} acknowledgements reached")
        verdict.acknowledge = not verdict.no_ack


def thread_ids(mail: ParsedMail) -> list[str]:
    """The ids a mail may be threaded by, in the order they are tried, at most MAX_THREAD_IDS:
    In-Reply-To's, then References from the last (see MAX_THREAD_IDS), each once."""
    candidates = (*mail.in_reply_to[:MAX_THREAD_IDS], *reversed(mail.references[-MAX_THREAD_IDS:]))
    return list(dict.fromkeys(candidates))[:MAX_THREAD_IDS]


def requestor_of(mail: ParsedMail) -> str:
    """The address a *new* ticket answers: Reply-To when present, else From.

    Reply-To only chooses where the answers of a new ticket go (a web form that sends from a
    no-reply address, someone writing for a relative). It never verifies a sender: threading
    into an existing ticket checks From alone (VerifySender), so a Reply-To naming a member
    gains nothing there.
    """
    return mail.reply_to or mail.from_addr


# Comments in an Authentication-Results value, "(...)", possibly nested, and quoted strings.
_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"')
_DMARC = re.compile(r"\s*dmarc\s*=\s*([A-Za-z]+)", re.IGNORECASE)


def _without_comments(text: str) -> str:
    """`text` with RFC 5322 comments and quoted strings removed (one linear pass)."""
    text = _QUOTED.sub('""', text)
    kept: list[str] = []
    depth = 0
    escaped = False
    for char in text:
        if depth:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == "(":
                depth += 1
            elif char == ")":
                depth -= 1
        elif char == "(":
            depth = 1
        else:
            kept.append(char)
    return "".join(kept)


def dmarc_result(values: tuple[str, ...] | list[str], authserv_id: str) -> str | None:
    """The DMARC result (RFC 8601 `dmarc=...`, lowercased) of the topmost
    Authentication-Results value whose authserv-id is `authserv_id`; None when there is none
    or it says nothing about DMARC."""
    wanted = authserv_id.strip().lower()
    for value in values:  # topmost first: the order the headers have in the mail
        head, _, results = _without_comments(value).partition(";")
        words = head.split()
        if not words or words[0].lower() != wanted:
            continue
        for result in results.split(";"):
            match = _DMARC.match(result)
            if match:
                return match.group(1).lower()
        return None
    return None


DEFAULT_RULES: tuple[Rule, ...] = (
    LoopMarker(),
    AutomaticMail(),
    Bounce(),
    ThreadByMessageId(),
    ThreadBySubject(),
    VerifySender(),
    DmarcFail(),
    UnusableSender(),
    SenderFlood(),
    Acknowledge(),
)


async def run_rules(
    mail: ParsedMail, ctx: RuleContext, rules: tuple[Rule, ...] = DEFAULT_RULES
) -> Verdict:
    """Run the pipeline; it stops early when a rule drops the mail."""
    verdict = Verdict()
    for rule in rules:
        await rule.apply(mail, ctx, verdict)
        if verdict.drop:
            break
    if verdict.bounce and verdict.ticket is None and not verdict.drop:
        verdict.drop = "a bounce about no mail of ours"
    return verdict
