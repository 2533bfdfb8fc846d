"""Mail rules: small named steps that decide what a received mail means, Mailman style.

Each rule looks at the parsed mail and the verdict so far and adds what it knows. The pipeline
never changes anything itself: its verdict becomes a ReceiveMail intent for the TicketService.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from exobot.core.intents import MailClass
from exobot.core.references import find_in_subject
from exobot.mail.msgid import MessageIds
from exobot.mail.parse import ParsedMail, header

AUTOMATIC_SENDERS = ("mailer-daemon", "postmaster")
BULK_PRECEDENCE = ("bulk", "junk", "list")


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
    acknowledge: bool = False
    no_ack: list[str] = field(default_factory=list)

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

    async def ticket_for_message(self, message_id: str) -> int | None:
        """The ticket a known Message-ID belongs to."""

    async def ticket_exists(self, number: int) -> bool:
        """Whether a ticket with that number exists."""

    async def participants(self, number: int) -> set[str]:
        """The participants of a ticket."""

    async def acks_today(self, address: str) -> int:
        """Acknowledgements queued to `address` in the last 24 hours."""


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
            if ticket and await ctx.ticket_exists(ticket):
                verdict.ticket, verdict.threaded_by = ticket, "bounced Message-ID"


class ThreadByMessageId:
    """Thread by our Message-IDs (and the ticket's known ones) in In-Reply-To, then References."""

    name = "thread-message-id"
    description = "In-Reply-To / References naming a Message-ID of a ticket"

    async def apply(self, mail: ParsedMail, ctx: RuleContext, verdict: Verdict) -> None:
        """Find the ticket; a validly signed id of ours also makes the sender trusted."""
        if verdict.ticket is not None:
            return
        for message_id in (*mail.in_reply_to, *reversed(mail.references)):
            signed = ctx.message_ids.verify(message_id)
            ticket = signed or await ctx.ticket_for_message(message_id)
            if ticket and await ctx.ticket_exists(ticket):
                verdict.ticket, verdict.threaded_by = ticket, "Message-ID"
                verdict.trusted = signed == ticket
                return


class ThreadBySubject:
    """Thread by the reference in the subject: `[suport#N]`, or a bare `suport#N`."""

    name = "thread-subject"
    description = "the ticket reference in the subject"

    async def apply(self, mail: ParsedMail, ctx: RuleContext, verdict: Verdict) -> None:
        """Find the ticket named in the subject, if it exists."""
        if verdict.ticket is not None:
            return
        number = find_in_subject(mail.subject, ctx.prefix)
        if number and await ctx.ticket_exists(number):
            verdict.ticket, verdict.threaded_by = number, "subject"


class VerifySender:
    """A mail naming a ticket must come from a participant (or quote our signed Message-ID)."""

    name = "verify-sender"
    description = "non-participants are kept as unverified until an operator accepts them"

    async def apply(self, mail: ParsedMail, ctx: RuleContext, verdict: Verdict) -> None:
        """Flag mail from non-participants."""
        if verdict.ticket is None or verdict.bounce or verdict.trusted:
            return
        participants = await ctx.participants(verdict.ticket)
        senders = {mail.from_addr, mail.reply_to or ""} - {""}
        verdict.unverified = not (senders & participants)


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
        elif await ctx.acks_today(requestor) >= ctx.ack_limit_per_day:
            verdict.no_ack.append(f"daily cap of {ctx.ack_limit_per_day} acknowledgements reached")
        verdict.acknowledge = not verdict.no_ack


def requestor_of(mail: ParsedMail) -> str:
    """The address we talk to: Reply-To when present, else From."""
    return mail.reply_to or mail.from_addr


DEFAULT_RULES: tuple[Rule, ...] = (
    LoopMarker(),
    AutomaticMail(),
    Bounce(),
    ThreadByMessageId(),
    ThreadBySubject(),
    VerifySender(),
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
