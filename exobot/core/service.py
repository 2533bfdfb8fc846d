"""TicketService: the one way a ticket changes, whoever asks (chat, web, mail, plugins)."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from exobot.core import intents as i
from exobot.core.addresses import BadAddress, address_problem, normalize_address
from exobot.core.clock import Clock, SystemClock
from exobot.core.events import EventBus, OutboxQueued, TicketEvent, TicketImported
from exobot.core.flags import active_flags
from exobot.core.hooks import MailHook, NewMail
from exobot.core.imports import ImportedEntry, ImportedTicket
from exobot.core.languages import LANGUAGES, language_code
from exobot.core.lifecycle import Happening, LifecycleError, check_status_change, status_after
from exobot.core.model import Actor, ActorKind, Entry, EntryKind, IncomingMail, Status, Ticket
from exobot.core.ports import MessageIdFactory, Repository, UnitOfWork
from exobot.core.references import format_reference, is_stored_id
from exobot.core.sensitive import mask_and_kinds
from exobot.core.text import greeting_name, visible_text, without_reply_prefixes

# What decides a change inside its transaction: (actor, intent) to apply, or anything else to
# write nothing and hand that value back (see TicketService.apply_decided).
Decide = Callable[[UnitOfWork], Awaitable[tuple[Actor, i.Intent] | object]]

log = logging.getLogger("exobot.service")

PLACEHOLDER_TITLE = "(sense assumpte)"
MAX_TITLE = 200
MAX_REFERENCES = 20
# The longest Message-ID exobot stores or looks up as it is, in UTF-8 bytes between the angle
# brackets (the cap the import path always had, 900 characters, counted in bytes so that
# non-ASCII ids are bounded too). A database index refuses long keys (PostgreSQL's btree: about
# 2,700 bytes a row), and an id no mail header line can carry (998) is no id a client keeps
# intact anyway; longer ones are stored in a short form (see stored_message_id).
MAX_MESSAGE_ID = 900
# Characters of a too-long id kept readable at the start of its short form (≤ 256 bytes).
LONG_MESSAGE_ID_HEAD = 64
# At most this many participants are taken from the Cc of one mail; the rest are listed on
# its entry for an operator to add deliberately (`!cc`).
MAX_CC_PARTICIPANTS = 10
# An imported history item's text is cut to this many characters, as a mail's body is.
MAX_IMPORTED_BODY = 100_000
# At most this many addresses in one change of participants.
MAX_PARTICIPANT_CHANGES = 20
# The flag set on a ticket when a mail brought sensitive data, and the mail advising against it.
SENSITIVE_FLAG = "sensitive"
ADVICE_TEMPLATE = "advice"
# The kinds of sensitive value in the flag's note when no wording is given (the App gives the
# configured language's).
SENSITIVE_KIND_NAMES = {
    "iban": "IBAN",
    "card": "card number",
    "identity": "DNI/NIE",
    "credential": "password",
}


def sensitive_note_en(kinds: Sequence[str]) -> str:
    """The flag's note naming the kinds of value (never the values), in English."""
    names = ", ".join(SENSITIVE_KIND_NAMES.get(k, k) for k in kinds)
    return f"sensitive data in a mail: {names}"


class ServiceError(Exception):
    """A request the service refuses. `code` and `params` let each channel say it in the
    person's language; str() is an English message for logs."""

    def __init__(self, code: str, message: str, **params: object) -> None:
        super().__init__(message)
        self.code = code
        self.params = params


class TicketNotFound(ServiceError):
    """No ticket with that number."""


class NotAllowed(ServiceError):
    """The actor may not do this."""


class InvalidRequest(ServiceError):
    """The request is malformed or breaks a rule (bad status, unknown queue, empty text)."""


class ImportCollision(ServiceError):
    """A number to import is taken here by a ticket (or a merged number) that was not
    imported from the same place: nothing of that ticket is written."""


class AlreadyHandled(ServiceError):
    """The request's idempotency key was seen before: it already took effect once."""


class KeyReused(ServiceError):
    """The request's idempotency key was recorded before for a different request (another
    fingerprint, Origin.request_hash): not a retry, and nothing is done."""

    def __init__(self, key: str) -> None:
        super().__init__(
            "key_reused", "this Idempotency-Key was already used for a different request", key=key
        )

    @staticmethod
    def differ(request_hash: str | None, recorded: str | None) -> bool:
        """Whether a repeated key came with another request: both fingerprints known and
        different (a key recorded without one, or given without one, is a retry)."""
        return request_hash is not None and recorded is not None and request_hash != recorded


@dataclass(frozen=True)
class ServiceSettings:
    """The parts of the configuration the core needs."""

    prefix: str = "suport"
    default_queue: str = "suport"
    queues: frozenset[str] = frozenset({"suport"})
    language: str = "ca"
    own_address: str = "suport@example.org"
    new_after: timedelta | None = timedelta(hours=4)
    repeat_every: timedelta = timedelta(hours=4)
    stalled_every: timedelta | None = timedelta(days=7)
    # Whether changes are announced in chat (an outbox row per change for the chat worker).
    announce: bool = False
    # The ticket's root message in chat is edited this long after its last change (a burst
    # of changes makes one edit).
    root_edit_after: timedelta = timedelta(seconds=5)
    # privacy.mask: operators' texts (new tickets, titles, comments) are stored masked too.
    mask: bool = True
    # mail.ack_limit_per_day: the advice about sensitive data counts with acknowledgements.
    ack_limit_per_day: int | None = None


CHAT = "chat"  # outbox kind of chat posts
ROOT_EDIT = "root_edit"  # the chat row that edits a ticket's root message (type and key)
REDACT = "redact"  # the chat row that redacts the bot's posts (exobot privacy erase)
# Changes that alter what a ticket's root message shows: status, owner, title, flags, and
# whose move it is (a member's mail, our reply or notice). A move posts a new root itself.
ROOT_KINDS = frozenset(
    {
        EntryKind.STATUS,
        EntryKind.OWNER,
        EntryKind.TITLE,
        EntryKind.FLAG,
        EntryKind.MAIL_IN,
        EntryKind.MAIL_OUT,
        EntryKind.ACCEPTED,
    }
)


@dataclass
class Outcome:
    """What applying an intent did."""

    ticket: int | None
    created: bool = False
    status: Status | None = None
    entries: list[Entry] = field(default_factory=list)
    outbox: list[int] = field(default_factory=list)


class TicketService:
    """Checks permission and lifecycle, writes the change, its history and its outbox rows in one
    transaction, then emits domain events."""

    def __init__(
        self,
        repository: Repository,
        message_ids: MessageIdFactory,
        settings: ServiceSettings,
        events: EventBus | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.repository = repository
        self.message_ids = message_ids
        self.settings = settings
        self.events = events or EventBus()
        self.clock = clock or SystemClock()
        # Run inside a new mail's transaction (the plugins' hooks); set by the App.
        self.mail_hook: MailHook | None = None
        # The note of the sensitive-data flag, in the configured language; set by the App.
        self.sensitive_note: Callable[[Sequence[str]], str] = sensitive_note_en
        # Who may own tickets (`Give`): the operators' rule, set by the App when it knows
        # it (Matrix); None gives to anybody.
        self.may_own: Callable[[str], bool] | None = None

    def reference(self, number: int) -> str:
        """The public reference of a ticket number."""
        return format_reference(self.settings.prefix, number)

    async def apply(
        self, actor: Actor, intent: i.Intent, origin: i.Origin | None = None
    ) -> Outcome:
        """Apply an intent for an actor, atomically; raises ServiceError with a clear message.

        With an `origin` key the intent takes effect at most once per key."""
        self._authorize(actor, intent)
        return await self._apply(lambda _uow: _ready(actor, intent), origin)

    async def apply_decided(self, decide: Decide) -> Outcome | object:
        """Apply the intent that `decide(uow)` returns as (actor, intent), deciding in the same
        transaction (one transaction where a read one and a write one would be two: incoming
        mail's rules). When `decide` returns anything else, nothing is written and that value
        is returned."""
        return await self._apply(decide, None)

    async def apply_decided_all(self, decides: Sequence[Decide]) -> list[Outcome | object]:
        """`apply_decided` for each of `decides`, in order, in one transaction: each decides
        on what the ones before it wrote. All or nothing: when one raises, nothing is kept
        and the error propagates (the caller can then apply them one by one). A burst of
        mail costs one commit and one hand-off to the writer instead of one per mail."""
        results = await self._run([(decide, None) for decide in decides])
        return [r.value if isinstance(r, _Undecided) else r for r in results]

    async def _apply(
        self,
        decide: Decide,
        origin: i.Origin | None,
    ) -> Outcome | object:
        [outcome] = await self._run([(decide, origin)])
        return outcome.value if isinstance(outcome, _Undecided) else outcome

    async def _run(
        self,
        changes: Sequence[tuple[Decide, i.Origin | None]],
    ) -> list[Outcome | _Undecided]:
        """Decide and apply each (decide, origin) in order in one transaction, then emit the
        events they caused (only after the commit)."""
        pending: list[object] = []
        now = self.clock.now()  # one instant for the whole change and what it stamps

        async def work(uow: UnitOfWork) -> list[Outcome | _Undecided]:
            return [
                await self._decide_and_apply(uow, decide, origin, pending, now)
                for decide, origin in changes
            ]

        results = await self.repository.run(work, now=now)
        for event in pending:
            await self.events.emit(event)
        return results

    async def _decide_and_apply(
        self,
        uow: UnitOfWork,
        decide: Decide,
        origin: i.Origin | None,
        pending: list[object],
        now: datetime,
    ) -> Outcome | _Undecided:
        """One change inside a transaction; the events it causes are added to `pending`."""
        decided = await decide(uow)
        if not (isinstance(decided, tuple) and isinstance(decided[-1], i.Intent)):
            return _Undecided(decided)
        actor, intent = decided
        self._authorize(actor, intent)
        handler = getattr(self, f"_do_{type(intent).__name__}")
        key = origin.key if origin is not None else None
        request_hash = origin.request_hash if origin is not None else None
        if key is not None and not await uow.claim(key, request_hash=request_hash):
            # A retry learns which ticket the first request made or changed; the same key
            # for another request is refused.
            ticket, recorded = await uow.handled_request(key) or (None, None)
            if KeyReused.differ(request_hash, recorded):
                raise KeyReused(key)
            raise AlreadyHandled("already_handled", f"{key} was already handled", ticket=ticket)
        step = _Step(self, uow, actor, pending, origin, now)
        outcome = await handler(step, intent)
        await step.flush()
        if key is not None:
            await uow.settle(key, outcome.ticket)
        return outcome

    def _authorize(self, actor: Actor, intent: i.Intent) -> None:
        if isinstance(intent, i.OPERATOR_INTENTS) and actor.kind is not ActorKind.OPERATOR:
            raise NotAllowed("not_operator", "only operators can do that")
        if isinstance(intent, i.ReceiveMail) and actor.kind is ActorKind.OPERATOR:
            raise NotAllowed("not_allowed", "operators cannot inject mail")
        if (
            isinstance(
                intent,
                i.RecordDeliveryFailure | i.RetryDelivery | i.RaiseAlert | i.ImportTicket,
            )
            and actor.kind is not ActorKind.SYSTEM
        ):
            raise NotAllowed("not_allowed", "only exobot itself does that")
        if isinstance(intent, i.Notify) and actor.kind is ActorKind.MEMBER:
            raise NotAllowed("not_operator", "only operators and exobot send notices")

    # --- mail -----------------------------------------------------------------------------

    async def _do_ReceiveMail(self, step: _Step, intent: i.ReceiveMail) -> Outcome:
        # The Message-ID enters the core here: stored (mail_messages, the entry, the inbound
        # row) and quoted in our answers' In-Reply-To in the one form lookups use.
        mail = replace(
            intent.mail,
            message_id=stored_message_id(intent.mail.message_id) or intent.mail.message_id,
        )
        if intent.ticket is None:
            if intent.mail_class is i.MailClass.BOUNCE:
                raise InvalidRequest("bounce_without_ticket", "a bounce never opens a ticket")
            automatic = intent.mail_class is i.MailClass.AUTOMATIC
            unverified = intent.mail_class is i.MailClass.UNVERIFIED
            ticket = await step.create(
                # "RE: FW: Alta" is titled "Alta": the prefixes tell tickets apart no better,
                # and the member's mails say what they wrote (member_subject).
                title=without_reply_prefixes(visible_text(mail.subject)),
                requestor=mail.requestor,
                queue=intent.queue,
                member_mail=not (automatic or unverified),
                language=mail.language,
            )
            # A sender our mail server says may be forged brings nobody else in.
            people = (mail.requestor,) if unverified else (mail.requestor, mail.sender)
            for address in dict.fromkeys(a.lower() for a in people):
                await step.add_participant(ticket.number, address, "mail")
            left_out = await step.add_cc(ticket.number, () if unverified else mail.cc)
            kind = {
                i.MailClass.AUTOMATIC: EntryKind.AUTOMATIC_IN,
                i.MailClass.UNVERIFIED: EntryKind.UNVERIFIED_IN,
            }.get(intent.mail_class, EntryKind.MAIL_IN)
            await step.record_mail(ticket, mail, kind, cc_not_added=left_out)
            new = await step.run_mail_hook(ticket, mail, created=True)
            outbox = []
            if intent.acknowledge:
                outbox.append(
                    await step.queue_mail(
                        ticket,
                        "ack",
                        to=[ticket.requestor],
                        auto=True,
                        reply_to=mail,
                        paragraphs=new.ack_paragraphs,
                    )
                )
            outbox += await step.sensitive_mail(ticket, mail, intent.mail_class)
            await step.mark_inbound(mail, ticket)
            return step.outcome(ticket, created=True, outbox=outbox)

        ticket = await step.ticket(intent.ticket)
        kind, happening = {
            i.MailClass.MEMBER: (EntryKind.MAIL_IN, Happening.MEMBER_MAIL),
            i.MailClass.AUTOMATIC: (EntryKind.AUTOMATIC_IN, Happening.AUTOMATIC_MAIL),
            i.MailClass.UNVERIFIED: (EntryKind.UNVERIFIED_IN, Happening.UNVERIFIED_MAIL),
            i.MailClass.BOUNCE: (EntryKind.BOUNCE, Happening.BOUNCE),
        }[intent.mail_class]
        left_out: list[str] = []
        if intent.mail_class is i.MailClass.MEMBER:
            # Only a verified member's Cc; an unverified mail's waits for `!accept`, which
            # lists it, and then for an operator's `!cc`.
            left_out = await step.add_cc(ticket.number, mail.cc)
            ticket.last_member_mail_at = step.now
        await step.record_mail(ticket, mail, kind, cc_not_added=left_out)
        if intent.mail_class is not i.MailClass.BOUNCE:
            await step.run_mail_hook(ticket, mail, created=False)
        outbox = await step.sensitive_mail(ticket, mail, intent.mail_class)
        await step.transition(ticket, happening)
        await step.mark_inbound(mail, ticket)
        return step.outcome(ticket, outbox=outbox)

    async def _do_RecordDeliveryFailure(
        self, step: _Step, intent: i.RecordDeliveryFailure
    ) -> Outcome:
        ticket = await step.ticket(intent.ticket)
        # The ticket's row is locked: a second report of the same give-up (another instance's
        # worker reporting the give-ups it finds at its start) sees the first and adds nothing.
        if not intent.skipped and await step.uow.give_up_reported(intent.outbox_id):
            return step.outcome(ticket)
        await step.add(
            ticket,
            EntryKind.DELIVERY_FAILED,
            body=intent.error,
            data={"outbox_id": intent.outbox_id, "recipient": intent.recipient}
            | ({"skipped": True} if intent.skipped else {})
            | ({"channel": intent.channel} if intent.channel != "mail" else {})
            | ({"redaction": True} if intent.redaction else {}),
        )
        return step.outcome(ticket)

    async def _do_RetryDelivery(self, step: _Step, intent: i.RetryDelivery) -> Outcome:
        given_up = await step.uow.retry_outbox(intent.outbox_id)
        if given_up is None:
            raise InvalidRequest("not_given_up", f"no outbox item {intent.outbox_id} was given up")
        kind, number, what = given_up
        step.pending.append(OutboxQueued(kind))
        if number is None:  # an answer, a digest, a notice: no ticket to note it on
            return Outcome(None, outbox=[intent.outbox_id])
        ticket = await step.ticket(number)
        await step.add(
            ticket,
            EntryKind.DELIVERY_RETRIED,
            data={"outbox_id": intent.outbox_id, "channel": kind}
            | ({"redaction": True} if what == REDACT else {}),
        )
        return step.outcome(ticket, outbox=[intent.outbox_id])

    # --- imports ------------------------------------------------------------------------

    async def _do_ImportTicket(self, step: _Step, intent: i.ImportTicket) -> Outcome:
        """A ticket from another helpdesk with its own number, history, authors and times;
        what an earlier run imported is skipped. Nothing is announced, mailed or alerted:
        imported `new` and `stalled` tickets start their alert clocks now."""
        imported = intent.ticket
        step.quiet = True
        queue = imported.queue.strip().lower()
        if queue not in self.settings.queues:
            known = ", ".join(sorted(self.settings.queues))
            raise InvalidRequest(
                "unknown_queue", f"unknown queue {queue!r}", queue=queue, known=known
            )
        if not is_stored_id(imported.number):
            raise InvalidRequest(
                "bad_number", f"{imported.number} is no ticket number", number=imported.number
            )
        ticket, created = await step.imported_ticket(imported, queue)
        for number in dict.fromkeys(imported.merged):
            if number != ticket.number:
                await step.import_alias(ticket, number, imported.source)
        # Already imported (into this ticket, or into another before RT merged them).
        seen = await step.uow.imported_among(
            imported.source, "entry", [e.external_id for e in imported.entries]
        )
        fresh = [e for e in imported.entries if e.external_id not in seen]
        # Oldest first, so the history reads in order (ties keep the importer's order).
        fresh.sort(key=lambda e: e.created_at)
        if created and not any(e.kind is EntryKind.CREATED for e in fresh):
            await step.import_entry(
                ticket,
                ImportedEntry(
                    external_id="",  # exobot's own line: not recorded as imported
                    kind=EntryKind.CREATED,
                    actor=ticket.requestor or step.actor.id,
                    created_at=imported.created_at,
                    data={"queue": queue, "requestor": ticket.requestor},
                ),
                imported.source,
            )
        found: set[str] = set()
        for entry in dict((e.external_id, e) for e in fresh).values():
            found.update(await step.import_entry(ticket, entry, imported.source))
        if created and step.title_original is not None:
            # Kept with the entry that records the creation, as for `!new`.
            first = next(e for e in step.entries if e.kind is EntryKind.CREATED)
            typed, kinds = step.title_original
            await step.uow.add_original(ticket.number, first.id, None, typed, kinds)
        for address in dict.fromkeys((imported.requestor, *imported.participants)):
            if address:
                await step.add_participant(ticket.number, address, "import")
        if found:
            await step.import_sensitive_flag(ticket, found)
        step.updated_at[ticket.number] = imported.updated_at
        step.pending.append(
            TicketImported(ticket.number, created, len(step.entries), imported.source)
        )
        return step.outcome(ticket, created=created)

    # --- operators --------------------------------------------------------------------------

    async def _do_OpenTicket(self, step: _Step, intent: i.OpenTicket) -> Outcome:
        requestor = _address(intent.requestor)
        title, title_kinds = step.masked(_clean_title(intent.title))
        ticket = await step.create(title=title, requestor=requestor, queue=intent.queue)
        if title_kinds:
            # The original title is kept with the entry that records the creation.
            await step.uow.add_original(
                ticket.number, step.entries[-1].id, None, _clean_title(intent.title), title_kinds
            )
        await step.add_participant(ticket.number, requestor, "operator")
        if intent.text.strip():
            await step.add_masked(ticket, EntryKind.COMMENT, intent.text.strip())
        return step.outcome(ticket, created=True)

    async def _do_Take(self, step: _Step, intent: i.Take) -> Outcome:
        return await self._set_owner(step, intent.ticket, step.actor.id, Happening.TAKE)

    async def _do_Give(self, step: _Step, intent: i.Give) -> Outcome:
        owner = intent.owner.strip()
        if not owner:
            raise InvalidRequest("missing_user", "say who to give the ticket to")
        if self.may_own is not None and not self.may_own(owner):
            raise InvalidRequest(
                "owner_not_operator", f"{owner} is not an operator", owner=owner[:100]
            )
        return await self._set_owner(step, intent.ticket, owner, Happening.GIVE)

    async def _do_Untake(self, step: _Step, intent: i.Untake) -> Outcome:
        return await self._set_owner(step, intent.ticket, None, Happening.UNTAKE)

    async def _set_owner(
        self, step: _Step, number: int, owner: str | None, happening: Happening
    ) -> Outcome:
        ticket = await step.ticket(number)
        if ticket.owner == owner:
            reference = self.reference(number)
            if happening is Happening.TAKE:
                # Said, not silently ignored: the volunteer learns it was theirs already.
                raise InvalidRequest(
                    "already_yours", f"{reference} is already yours", ticket=reference
                )
            if owner is None:
                raise InvalidRequest(
                    "already_unowned", f"{reference} already has no owner", ticket=reference
                )
            raise InvalidRequest(
                "already_owner",
                f"{reference} already belongs to {owner}",
                ticket=reference,
                owner=owner,
            )
        await step.add(ticket, EntryKind.OWNER, data={"from": ticket.owner, "to": owner})
        ticket.owner = owner
        await step.transition(ticket, happening)
        return step.outcome(ticket)

    async def _do_Reply(self, step: _Step, intent: i.Reply) -> Outcome:
        text = _required_text(intent.text, "write the text of the reply")
        ticket = await step.ticket(intent.ticket)
        participants = await step.uow.participants(ticket.number)
        own = self.settings.own_address.lower()
        cc, unusable = [], []
        for address in sorted(a for a in participants if a not in (ticket.requestor, own)):
            problem = address_problem(address)
            if problem is None:
                cc.append(address)
            else:
                unusable.append((address, problem))
        outbox_id = await step.queue_mail(
            ticket,
            "reply",
            to=[ticket.requestor],
            cc=cc,
            auto=False,
            text=text,
            resolved=intent.resolve,
        )
        # A participant stored before the one address rule (or by hand) that no mail can be
        # written to is left out of the copy and said so; the member still gets the reply.
        for address, problem in unusable:
            await step.add(
                ticket,
                EntryKind.DELIVERY_FAILED,
                body=problem,
                data={"outbox_id": outbox_id, "recipient": address, "skipped": True},
            )
        ticket.last_answer_at = step.now  # the member's move now (exobot.core.waiting)
        if not intent.resolve:
            await step.transition(ticket, Happening.REPLY)
        elif ticket.status is not Status.RESOLVED:
            # Resolved in the reply's change, with no resolved notice of its own: the reply
            # says it (one mail, not two a second apart). Already resolved (someone was
            # quicker), the reply still goes and still says it.
            await step.set_status(ticket, Status.RESOLVED)
        return step.outcome(ticket, outbox=[outbox_id])

    async def _do_Notify(self, step: _Step, intent: i.Notify) -> Outcome:
        """A notice to the requestor only; status and owner stay as they are."""
        text = _required_text(intent.text, "write the text of the notice")
        ticket = await step.ticket(intent.ticket)
        problem = address_problem(ticket.requestor)
        if problem is not None:
            reference = self.reference(ticket.number)
            raise InvalidRequest(
                "unusable_requestor",
                f"no mail can be written to the requestor of {reference}: {problem}",
                ticket=reference,
                address=ticket.requestor,
            )
        outbox_id = await step.queue_mail(
            ticket,
            "reply",
            to=[ticket.requestor],
            # exobot's own notices, and those a plugin marks automatic (a procedure's state,
            # applied as its operator), are automatic mail: auto-responders must not answer.
            auto=step.actor.kind is ActorKind.SYSTEM or intent.automatic,
            text=text,
            notice=True,
        )
        ticket.last_answer_at = step.now
        return step.outcome(ticket, outbox=[outbox_id])

    async def _do_ClearFlag(self, step: _Step, intent: i.ClearFlag) -> Outcome:
        """Clear an active flag: a FLAG entry marked cleared, with the operator's note."""
        ticket = await step.ticket(intent.ticket)
        code = " ".join(intent.code.split())
        flags = await step.uow.entries_of(ticket.number, [EntryKind.FLAG.value])
        if code not in {flag.code for flag in active_flags(flags)}:
            reference = self.reference(ticket.number)
            raise InvalidRequest(
                "no_flag",
                f"{reference} has no active flag {code!r}",
                ticket=reference,
                flag=code[:64],
            )
        await step.add(
            ticket,
            EntryKind.FLAG,
            body=intent.note.strip() or None,
            data={"code": code, "source": step.actor.id, "cleared": True},
        )
        return step.outcome(ticket)

    async def _do_RevealOriginal(self, step: _Step, intent: i.RevealOriginal) -> Outcome:
        """Record that an operator saw an entry's original text (the channel then shows it)."""
        ticket = await step.ticket(intent.ticket)
        original = await step.uow.original(ticket.number, intent.entry_id)
        if original is None:
            reference = self.reference(ticket.number)
            raise InvalidRequest(
                "no_original",
                f"{reference} keeps no original text for entry {intent.entry_id}",
                ticket=reference,
            )
        await step.add(ticket, EntryKind.REVEAL, data={"entry": intent.entry_id})
        return step.outcome(ticket)

    async def _do_Comment(self, step: _Step, intent: i.Comment) -> Outcome:
        text = _required_text(intent.text, "write the text of the comment")
        ticket = await step.ticket(intent.ticket)
        await step.add_masked(ticket, EntryKind.COMMENT, text)
        return step.outcome(ticket)

    async def _do_SetTitle(self, step: _Step, intent: i.SetTitle) -> Outcome:
        typed = _clean_title(intent.title)
        if not typed:
            raise InvalidRequest("missing_title", "write the new title")
        title, kinds = step.masked(typed)
        ticket = await step.ticket(intent.ticket)
        if title == ticket.title:
            raise InvalidRequest(
                "same_title", "that is already the title", ticket=self.reference(ticket.number)
            )
        entry = await step.add(ticket, EntryKind.TITLE, data={"from": ticket.title, "to": title})
        if kinds:
            await step.uow.add_original(ticket.number, entry.id, None, typed, kinds)
        ticket.title = title
        return step.outcome(ticket)

    async def _do_Move(self, step: _Step, intent: i.Move) -> Outcome:
        queue = intent.queue.strip().lower()
        if queue not in self.settings.queues:
            known = ", ".join(sorted(self.settings.queues))
            raise InvalidRequest(
                "unknown_queue",
                f"unknown queue {intent.queue!r} (known: {known})",
                queue=intent.queue,
                known=known,
            )
        ticket = await step.ticket(intent.ticket)
        if queue == ticket.queue:
            reference = self.reference(ticket.number)
            raise InvalidRequest(
                "same_queue", f"{reference} is already in {queue}", ticket=reference, queue=queue
            )
        await step.add(ticket, EntryKind.QUEUE, data={"from": ticket.queue, "to": queue})
        ticket.queue = queue
        return step.outcome(ticket)

    async def _do_SetStatus(self, step: _Step, intent: i.SetStatus) -> Outcome:
        ticket = await step.ticket(intent.ticket)
        target = Status(intent.status)
        try:
            check_status_change(ticket.status, target)
        except LifecycleError as error:
            code = "back_to_new" if target is Status.NEW else "same_status"
            raise InvalidRequest(
                code,
                str(error),
                ticket=self.reference(ticket.number),
                status=ticket.status.value,
            ) from None
        await step.set_status(ticket, target)
        outbox = []
        if target is Status.RESOLVED:
            outbox.append(
                await step.queue_mail(ticket, "resolved", to=[ticket.requestor], auto=True)
            )
        return step.outcome(ticket, outbox=outbox)

    async def _do_SetLanguage(self, step: _Step, intent: i.SetLanguage) -> Outcome:
        """The language mailed to the member from now on (acknowledgements are past)."""
        language = language_code(intent.language)
        if language is None:
            raise InvalidRequest(
                "unknown_language",
                f"unknown language {intent.language!r} (known: {', '.join(LANGUAGES)})",
                lang=intent.language[:40],
                known=", ".join(LANGUAGES),
            )
        ticket = await step.ticket(intent.ticket)
        if language == ticket.language:
            reference = self.reference(ticket.number)
            raise InvalidRequest(
                "same_language",
                f"{reference} already speaks {language}",
                ticket=reference,
                lang=language,
            )
        await step.add(ticket, EntryKind.LANGUAGE, data={"from": ticket.language, "to": language})
        ticket.language = language
        return step.outcome(ticket)

    async def _do_RaiseAlert(self, step: _Step, intent: i.RaiseAlert) -> Outcome:
        ticket = await step.ticket(intent.ticket)
        due = ticket.next_alert_at
        if due is None or due > step.now:
            return step.outcome(ticket)  # taken, answered or re-planned since the sweep looked
        if ticket.status is Status.NEW:
            since = ticket.created_at
            reason, repeat = "new", self.settings.repeat_every
        elif ticket.status is Status.STALLED and self.settings.stalled_every:
            last = await step.uow.last_entry(ticket.number, [EntryKind.STATUS.value])
            since = last.created_at if last else ticket.updated_at
            reason, repeat = "stalled", self.settings.stalled_every
        else:
            ticket.next_alert_at = None
            return step.outcome(ticket)
        await step.add(ticket, EntryKind.ALERT, data={"reason": reason, "since": since.isoformat()})
        # From now, not from `due`: after a long outage one alert, not a burst of them.
        ticket.next_alert_at = step.now + repeat
        return step.outcome(ticket)

    async def _do_ChangeParticipants(self, step: _Step, intent: i.ChangeParticipants) -> Outcome:
        """Add and remove participants (who get copies of the replies and may write)."""
        if not intent.add and not intent.remove:
            raise InvalidRequest("missing_participants", "say which addresses to add or remove")
        if len(intent.add) + len(intent.remove) > MAX_PARTICIPANT_CHANGES:
            raise InvalidRequest(
                "too_many_participants",
                f"at most {MAX_PARTICIPANT_CHANGES} addresses at a time",
                limit=MAX_PARTICIPANT_CHANGES,
            )
        add = list(dict.fromkeys(_address(a) for a in intent.add))
        # Removal must also work for an address no mail can be written to (stored by an older
        # version): it is matched as stored, never refused by the address rule.
        remove = list(dict.fromkeys(_stored_address(a) for a in intent.remove))
        ticket = await step.ticket(intent.ticket)
        reference = self.reference(ticket.number)
        own = self.settings.own_address.lower()
        for address in add:
            if address == own:
                raise InvalidRequest(
                    "own_address_participant",
                    f"{address} is the support address itself",
                    address=address,
                )
        for address in remove:
            if address == ticket.requestor:
                raise InvalidRequest(
                    "requestor_stays",
                    f"{address} is the requestor of {reference} and stays a participant",
                    address=address,
                    ticket=reference,
                )
            if address in add:
                raise InvalidRequest(
                    "add_and_remove",
                    f"{address} cannot be added and removed at once",
                    address=address,
                )
        participants = await step.uow.participants(ticket.number)
        added = [a for a in add if a not in participants]
        removed = [a for a in remove if a in participants]
        if not added and not removed:
            raise InvalidRequest(
                "participants_unchanged",
                f"the participants of {reference} are already so",
                ticket=reference,
            )
        for address in added:
            await step.uow.add_participant(ticket.number, address, "operator")
        for address in removed:
            await step.uow.remove_participant(ticket.number, address)
        await step.add(ticket, EntryKind.PARTICIPANTS, data={"added": added, "removed": removed})
        return step.outcome(ticket)

    async def _do_AcceptUnverified(self, step: _Step, intent: i.AcceptUnverified) -> Outcome:
        ticket = await step.ticket(intent.ticket)
        entry = await step.uow.last_entry(ticket.number, [EntryKind.UNVERIFIED_IN.value])
        if entry is None:
            reference = self.reference(ticket.number)
            raise InvalidRequest(
                "no_unverified",
                f"{reference} has no mail from an unverified sender",
                ticket=reference,
            )
        sender = entry.data.get("from", "")
        entry.kind = EntryKind.MAIL_IN
        entry.data = {**entry.data, "accepted_by": step.actor.id}
        await step.uow.update_entry(entry)
        if sender:
            await step.add_participant(ticket.number, sender, "accepted")
        # The Cc of the accepted mail is not added: whoever wrote it chose it. Listed, so an
        # operator can add the right ones with `!cc`.
        participants = await step.uow.participants(ticket.number)
        own = self.settings.own_address.lower()
        cc_left = [
            a
            for a in dict.fromkeys(str(a).lower() for a in entry.data.get("cc") or ())
            if a not in participants and a != own
        ]
        data = {"entry": entry.id, "from": sender}
        if cc_left:
            data["cc_not_added"] = cc_left
        await step.add(ticket, EntryKind.ACCEPTED, data=data)
        ticket.last_member_mail_at = step.now
        await step.transition(ticket, Happening.MEMBER_MAIL)
        return step.outcome(ticket)


async def _ready(actor: Actor, intent: i.Intent) -> tuple[Actor, i.Intent]:
    return actor, intent


@dataclass(frozen=True)
class _Undecided:
    """What `apply_decided`'s decide step returned instead of an intent."""

    value: object


class _Step:
    """The context of one apply(): the unit of work, the actor, the time and the events to emit."""

    def __init__(
        self,
        service: TicketService,
        uow: UnitOfWork,
        actor: Actor,
        pending: list[object],
        origin: i.Origin | None = None,
        now: datetime | None = None,
    ):
        self.service = service
        self.origin = origin
        self.settings = service.settings
        self.uow = uow
        self.actor = actor
        self.now = now or service.clock.now()
        self.pending = pending
        self.entries: list[Entry] = []
        self._touched: dict[int, Ticket] = {}
        self._stored: dict[int, Ticket] = {}  # each touched ticket as it is in storage
        self._created: set[int] = set()
        # An import: no chat post, no root edit, and the tickets' own last-change times.
        self.quiet = False
        self.updated_at: dict[int, datetime] = {}
        # An imported title that was masked: (the original, the kinds of value found).
        self.title_original: tuple[str, tuple[str, ...]] | None = None

    async def ticket(self, number: int) -> Ticket:
        ticket = await self.uow.get_ticket(number)
        if ticket is None:
            reference = self.service.reference(number)
            raise TicketNotFound("not_found", f"{reference} does not exist", ticket=reference)
        self._touched[ticket.number] = ticket
        self._stored[ticket.number] = replace(ticket)
        return ticket

    async def create(
        self,
        *,
        title: str,
        requestor: str,
        queue: str | None,
        member_mail: bool = False,
        language: str | None = None,
    ) -> Ticket:
        """A new ticket, speaking `language` to the member (the configured one when None or
        not one exobot has catalogs for)."""
        queue = (queue or self.settings.default_queue).lower()
        if queue not in self.settings.queues:
            known = ", ".join(sorted(self.settings.queues))
            raise InvalidRequest(
                "unknown_queue", f"unknown queue {queue!r}", queue=queue, known=known
            )
        now = self.now
        ticket = Ticket(
            number=0,
            title=_clean_title(title) or PLACEHOLDER_TITLE,
            requestor=requestor.lower(),
            queue=queue,
            status=Status.NEW,
            created_at=now,
            updated_at=now,
            language=language if language in LANGUAGES else self.settings.language,
            next_alert_at=now + self.settings.new_after if self.settings.new_after else None,
            last_member_mail_at=now if member_mail else None,
        )
        ticket = await self.uow.create_ticket(ticket)
        self._touched[ticket.number] = ticket
        self._stored[ticket.number] = replace(ticket)
        self._created.add(ticket.number)
        await self.add(
            ticket, EntryKind.CREATED, data={"queue": queue, "requestor": ticket.requestor}
        )
        return ticket

    async def imported_ticket(self, imported: ImportedTicket, queue: str) -> tuple[Ticket, bool]:
        """The ticket an import writes into: the one an earlier run made of the same ticket
        (brought up to date: title, queue, status, owner), or a new one with the imported
        number (True). ImportCollision when that number is taken otherwise."""
        typed = _clean_title(imported.title)
        title, kinds = self.masked(typed)
        title = title or PLACEHOLDER_TITLE
        status = Status(imported.status)
        earlier = await self.uow.imported_ticket(imported.source, imported.external_id)
        if earlier is not None:
            ticket = await self.ticket(earlier)
            if ticket.status is not status:
                ticket.next_alert_at = self.import_alert_at(status)
            ticket.title, ticket.queue, ticket.status = title, queue, status
            ticket.owner = imported.owner
            return ticket, False
        number = imported.number
        if await self.uow.get_ticket(number, aliases=False) or await self.uow.alias_of(number):
            raise ImportCollision(
                "import_collision",
                f"{self.service.reference(number)} exists already and was not imported from"
                f" {imported.source}",
                ticket=self.service.reference(number),
                number=number,
            )
        if kinds:
            self.title_original = (typed, kinds)
        language = imported.language
        ticket = Ticket(
            number=0,
            title=title,
            requestor=_stored_address(imported.requestor) if imported.requestor else "",
            queue=queue,
            status=status,
            created_at=imported.created_at,
            updated_at=imported.updated_at,
            owner=imported.owner,
            language=language if language in LANGUAGES else self.settings.language,
            next_alert_at=self.import_alert_at(status),
        )
        ticket = await self.uow.create_ticket(ticket, number=number)
        await self.uow.record_import(imported.source, "ticket", imported.external_id, number)
        self._touched[number] = ticket
        self._stored[number] = replace(ticket)
        self._created.add(number)
        return ticket, True

    def import_alert_at(self, status: Status) -> datetime | None:
        """When an imported ticket's first alert is due: its clock starts at the import."""
        if status is Status.NEW and self.settings.new_after:
            return self.now + self.settings.new_after
        if status is Status.STALLED and self.settings.stalled_every:
            return self.now + self.settings.stalled_every
        return None

    async def import_alias(self, ticket: Ticket, number: int, source: str) -> None:
        """Make a number merged into `ticket` name it. ImportCollision when the number is a
        ticket here that was not imported from `source`, or a merged number of another
        source. A ticket (or merged number) imported from `source` before the merge keeps
        its own history and number: it is left as it is, so nothing imported is lost."""
        if not is_stored_id(number):
            raise InvalidRequest("bad_number", f"{number} is no ticket number", number=number)
        if await self.uow.import_collisions(source, [number]):
            reference = self.service.reference(number)
            raise ImportCollision(
                "import_collision",
                f"{reference}, merged into {self.service.reference(ticket.number)}, exists"
                f" already here and was not imported from {source}",
                ticket=reference,
                number=number,
            )
        if await self.uow.alias_of(number) is None and not await self.uow.get_ticket(
            number, aliases=False
        ):
            await self.uow.add_alias(number, ticket.number, source)

    async def import_entry(self, ticket: Ticket, item: ImportedEntry, source: str) -> set[str]:
        """Write one imported history item with its own author and time, masked like mail
        (the original kept aside), with its attachments and Message-IDs (one recorded before
        is left as it is). No event: imported history makes nobody act. Returns the kinds of
        sensitive value masked."""
        body, data = item.body, dict(item.data)
        if body is not None and len(body) > MAX_IMPORTED_BODY:
            # The same bound as a received mail's body (the web shows it as cut).
            body, data["body_truncated"] = body[:MAX_IMPORTED_BODY], True
        found: set[str] = set()
        original_body = original_subject = None
        if body:
            body, kinds = self.masked(body)
            if kinds:
                original_body, found = item.body[:MAX_IMPORTED_BODY], found | set(kinds)
        text_key = "to" if item.kind is EntryKind.TITLE else "subject"
        if isinstance(data.get(text_key), str):
            data[text_key], kinds = self.masked(data[text_key])
            if kinds:
                original_subject, found = item.data[text_key], found | set(kinds)
        if item.kind is EntryKind.TITLE and isinstance(data.get("from"), str):
            data["from"] = self.masked(data["from"])[0]
        entry = await self.uow.add_entry(
            Entry(ticket.number, item.kind, item.actor, item.created_at, body=body, data=data)
        )
        self.entries.append(entry)
        if found:
            await self.uow.add_original(
                ticket.number, entry.id, original_body, original_subject, sorted(found)
            )
        if item.attachments:
            await self.uow.add_attachments(ticket.number, entry.id, item.attachments)
        for message in item.message_ids:
            message_id = stored_message_id(message.message_id)
            if message_id is not None:
                direction = "out" if message.direction == "out" else "in"
                await self.uow.record_message_once(message_id, ticket.number, direction, entry.id)
        if item.external_id:
            await self.uow.record_import(source, "entry", item.external_id, ticket.number, entry.id)
        # Whose move it is (exobot.core.waiting), from the imported correspondence.
        if item.kind is EntryKind.MAIL_IN:
            ticket.last_member_mail_at = _latest(ticket.last_member_mail_at, item.created_at)
        elif item.kind is EntryKind.MAIL_OUT:
            ticket.last_answer_at = _latest(ticket.last_answer_at, item.created_at)
        return found

    async def import_sensitive_flag(self, ticket: Ticket, kinds: set[str]) -> None:
        """Imported text held sensitive values (masked already): flag the ticket, unless the
        flag is active, naming their kinds. No advice mail: the history is past."""
        flags = await self.uow.entries_of(ticket.number, [EntryKind.FLAG.value])
        if SENSITIVE_FLAG in {flag.code for flag in active_flags(flags)}:
            return
        entry = await self.uow.add_entry(
            Entry(
                ticket.number,
                EntryKind.FLAG,
                self.actor.id,
                self.now,
                body=self.service.sensitive_note(sorted(kinds)),
                data={"code": SENSITIVE_FLAG, "source": "exobot", "kinds": sorted(kinds)},
            )
        )
        self.entries.append(entry)

    async def add(
        self, ticket: Ticket, kind: EntryKind, *, body: str | None = None, data: dict | None = None
    ) -> Entry:
        entry = await self.uow.add_entry(
            Entry(ticket.number, kind, self.actor.id, self.now, body=body, data=data or {})
        )
        self.entries.append(entry)
        self.pending.append(TicketEvent(ticket.number, kind, self.actor.id, dict(entry.data)))
        return entry

    def masked(self, text: str) -> tuple[str, tuple[str, ...]]:
        """An operator's (short) text as stored: masked when privacy.mask is on, with the
        kinds of value found (empty: nothing masked)."""
        if not self.settings.mask:
            return text, ()
        return mask_and_kinds(text)

    async def add_masked(self, ticket: Ticket, kind: EntryKind, text: str) -> Entry:
        """An entry with an operator's text, stored masked (the original kept aside)."""
        body, kinds = self.masked(text)
        entry = await self.add(ticket, kind, body=body)
        if kinds:
            await self.uow.add_original(ticket.number, entry.id, text, None, kinds)
        return entry

    async def sensitive_mail(
        self, ticket: Ticket, mail: IncomingMail, mail_class: i.MailClass
    ) -> list[int]:
        """A mail brought sensitive values (masked already): flag the ticket (unless the flag
        is active) naming their kinds, and advise its sender once per ticket to keep such data
        out of mail. Never for automatic, unverified or bounced mail, nor over the daily cap
        of acknowledgements. Returns the outbox row of the advice, if one was queued."""
        if not mail.sensitive or mail_class is not i.MailClass.MEMBER:
            return []
        flags = await self.uow.entries_of(ticket.number, [EntryKind.FLAG.value])
        if SENSITIVE_FLAG not in {flag.code for flag in active_flags(flags)}:
            await self.add(
                ticket,
                EntryKind.FLAG,
                body=self.service.sensitive_note(mail.sensitive),
                data={"code": SENSITIVE_FLAG, "source": "exobot", "kinds": list(mail.sensitive)},
            )
        sent = await self.uow.entries_of(ticket.number, [EntryKind.MAIL_OUT.value])
        if any(e.data.get("template") == ADVICE_TEMPLATE for e in sent):
            return []
        try:
            recipient = normalize_address(mail.sender)
        except BadAddress:
            log.info("no advice about sensitive data on %s: unusable sender", ticket.number)
            return []
        limit = self.settings.ack_limit_per_day
        if limit is not None:
            today = await self.uow.acks_since(recipient, self.now - timedelta(days=1))
            if today >= limit:
                log.info(
                    "no advice about sensitive data on %s: daily cap of %d reached",
                    ticket.number,
                    limit,
                )
                return []
        return [
            await self.queue_mail(ticket, ADVICE_TEMPLATE, to=[recipient], auto=True, reply_to=mail)
        ]

    async def add_participant(self, number: int, address: str, source: str) -> bool:
        """Make a usable address a participant; False (nothing done) for an address no mail
        can be written to, or for our own."""
        try:
            address = normalize_address(address)
        except BadAddress:
            return False
        if address == self.settings.own_address.lower():
            return False
        await self.uow.add_participant(number, address, source)
        return True

    async def add_cc(self, number: int, cc: tuple[str, ...] | list[str]) -> list[str]:
        """Make the Cc of a mail participants: at most MAX_CC_PARTICIPANTS new ones, and
        only usable addresses. Returns the addresses left out."""
        if not cc:  # most mails: no query
            return []
        known = await self.uow.participants(number)
        own = self.settings.own_address.lower()
        fresh = [a for a in dict.fromkeys(a.lower() for a in cc) if a not in known and a != own]
        left_out: list[str] = []
        taken = 0
        for address in fresh:
            if taken < MAX_CC_PARTICIPANTS and await self.add_participant(number, address, "cc"):
                taken += 1
            else:
                left_out.append(address)
        return left_out

    async def record_mail(
        self,
        ticket: Ticket,
        mail: IncomingMail,
        kind: EntryKind,
        *,
        cc_not_added: list[str] | None = None,
    ) -> Entry:
        data = {
            "from": mail.sender,
            "from_name": mail.sender_name,
            "subject": mail.subject,
            "message_id": mail.message_id,
            "cc": list(mail.cc),
            "attachments": [
                {"filename": a.filename, "content_type": a.content_type, "size": a.size}
                for a in mail.attachments
            ],
        }
        if kind is EntryKind.BOUNCE:
            data |= {"status": mail.bounce_status, "recipients": list(mail.bounce_recipients)}
        if mail.sent_at is not None:
            data["sent_at"] = sent_stamp(mail.sent_at)
        if mail.body_truncated:
            data["body_truncated"] = True
        if cc_not_added:
            data["cc_not_added"] = list(cc_not_added)
        entry = await self.add(ticket, kind, body=mail.body, data=data)
        if mail.originals is not None and mail.sensitive:
            body, subject = mail.originals
            await self.uow.add_original(ticket.number, entry.id, body, subject, mail.sensitive)
        if mail.attachments:
            await self.uow.add_attachments(ticket.number, entry.id, mail.attachments)
        await self.uow.record_message(mail.message_id, ticket.number, "in", entry.id)
        return entry

    async def run_mail_hook(self, ticket: Ticket, mail: IncomingMail, *, created: bool) -> NewMail:
        """Let the plugins look at a new mail in its transaction; record the flags they set."""
        new = NewMail(ticket, mail, created, getattr(self.uow, "conn", None))
        hook = self.service.mail_hook
        if hook is None:
            return new
        await hook(new)
        for flag in new.flags:
            await self.add(
                ticket,
                EntryKind.FLAG,
                body=flag.note or None,
                data={"code": flag.code, "source": flag.source},
            )
        return new

    async def set_status(self, ticket: Ticket, target: Status) -> Entry:
        entry = await self.add(
            ticket, EntryKind.STATUS, data={"from": ticket.status.value, "to": target.value}
        )
        ticket.status = target
        stalled_every = self.settings.stalled_every
        if target is Status.STALLED and stalled_every:
            ticket.next_alert_at = self.now + stalled_every
        else:
            ticket.next_alert_at = None
        return entry

    async def transition(self, ticket: Ticket, happening: Happening) -> list[Entry]:
        target = status_after(ticket.status, happening)
        if target is ticket.status:
            return []
        return [await self.set_status(ticket, target)]

    async def queue_mail(
        self,
        ticket: Ticket,
        template: str,
        *,
        to: list[str],
        cc: list[str] | None = None,
        auto: bool,
        text: str | None = None,
        reply_to: IncomingMail | None = None,
        paragraphs: list[str] | None = None,
        notice: bool = False,
        resolved: bool = False,
    ) -> int:
        """Queue a mail to members, with its Message-ID minted now so a retry never changes it.
        `resolved`: a reply that also resolves the ticket says so (and how to reopen it)."""
        message_id = self.service.message_ids.mint(ticket.number)
        if ticket.number in self._created and reply_to is not None:
            chain = [reply_to.message_id]  # all a ticket opened by this mail has
        else:
            chain = await self.uow.ticket_message_ids(ticket.number)
        requestor = ticket.requestor.lower()
        if reply_to is not None:
            in_reply_to = reply_to.message_id
            named = reply_to.sender_name if reply_to.sender.lower() == requestor else None
        else:
            # Answer the member's latest mail, not an out-of-office or a bounce.
            last = await self.uow.last_entry(ticket.number, [EntryKind.MAIL_IN.value])
            in_reply_to = last.data.get("message_id") if last else (chain[-1] if chain else None)
            sender = str(last.data.get("from") or "").lower() if last else ""
            named = last.data.get("from_name") if last and sender == requestor else None
        payload = {
            "template": template,
            "language": ticket.language,
            "to": to,
            "cc": cc or [],
            "reference": self.service.reference(ticket.number),
            "number": ticket.number,
            # The volunteers' title, never shown to the member: the subject is theirs.
            "title": ticket.title,
            "subject": await self.member_subject(ticket),
            "text": text,
            "requestor": ticket.requestor,
            "message_id": message_id,
            "in_reply_to": in_reply_to,
            "references": self._references(chain, in_reply_to),
            "auto_submitted": auto,
            # The requestor's name from their latest mail, when fit to greet them with.
            "name": greeting_name(named if isinstance(named, str) else None),
        }
        if paragraphs:
            payload["paragraphs"] = list(paragraphs)  # plain text the plugins added
        if resolved:
            payload["resolved"] = True
        outbox_id = await self.uow.queue_outbox(
            "mail", ticket.number, payload, template=template, recipient=to[0] if to else None
        )
        await self.uow.record_message(message_id, ticket.number, "out", None)
        await self.add(
            ticket,
            EntryKind.MAIL_OUT,
            body=text,
            data={
                "template": template,
                "to": to,
                "cc": cc or [],
                "message_id": message_id,
                "outbox_id": outbox_id,
            }
            | ({"notice": True} if notice else {}),
        )
        self.pending.append(OutboxQueued("mail"))
        return outbox_id

    async def member_subject(self, ticket: Ticket) -> str:
        """The subject the member knows the ticket by, for the Subject and the words of every
        mail to them: the title the ticket was opened with (their mail's subject without its
        reply prefixes, or what an operator opened it with), not a volunteer's rename since.
        "" when it had none (PLACEHOLDER_TITLE): each mail says so in its own language."""
        original = ticket.title
        if ticket.number not in self._created:
            renames = await self.uow.entries_of(ticket.number, [EntryKind.TITLE.value])
            first = renames[0].data.get("from") if renames else None
            if isinstance(first, str):
                original = first
        # Prefixes also off the titles of tickets opened before they were taken off.
        subject = without_reply_prefixes(original)
        return "" if subject == PLACEHOLDER_TITLE else subject

    @staticmethod
    def _references(chain: list[str], parent: str | None) -> list[str]:
        """The References of a mail answering `parent`, from the ticket's ids oldest first:
        the ids up to the parent, in the order the mails came and went, ending with it.

        Clients that thread by References (Thunderbird, mutt) take its order as ancestry
        (RFC 5322 §3.6.4: the parent's References, then the parent): our own mails sent after
        the parent are no ancestors of it, and listed before it would show the member's mail
        as a reply to ours. A member answering us still threads back: In-Reply-To and the end
        of their References carry the Message-ID of the mail they answer. Capped as RFC 5537
        §3.4.4 trims: the root, then the latest ids."""
        ids = list(dict.fromkeys(chain))
        if parent is not None:
            if parent in ids:
                ids = ids[: ids.index(parent) + 1]
            else:
                ids.append(parent)  # not among the ticket's ids: where it was is unknown
        if len(ids) > MAX_REFERENCES:
            ids = [ids[0], *ids[-(MAX_REFERENCES - 1) :]]
        return ids

    async def mark_inbound(self, mail: IncomingMail, ticket: Ticket) -> None:
        if mail.inbound_id is not None:
            await self.uow.mark_inbound(
                mail.inbound_id,
                "done",
                ticket=ticket.number,
                message_id=mail.message_id,
                subject=mail.subject,
                sender=mail.sender,
            )

    def outcome(
        self, ticket: Ticket, *, created: bool = False, outbox: list[int] | None = None
    ) -> Outcome:
        return Outcome(ticket.number, created, ticket.status, list(self.entries), outbox or [])

    async def flush(self) -> None:
        for number, ticket in self._touched.items():
            stored = self._stored[number]
            own = [entry for entry in self.entries if entry.ticket_number == number]
            entries = [entry.id for entry in own]
            # The bot's own reminders are no activity: they would reset the ages measured
            # from updated_at (the digest's stalled for, lists sorted by last update, the web's
            # "updated …", the API) at every repeat.
            activity = any(entry.kind is not EntryKind.ALERT for entry in own)
            if activity or number in self.updated_at:
                ticket.updated_at = self.updated_at.get(number, self.now)
            if ticket != stored:  # a new ticket with nothing more to say is already written
                await self.uow.update_ticket(ticket, title_changed=ticket.title != stored.title)
            if entries and self.settings.announce and not self.quiet:
                await self._announce(number, entries)
                if number not in self._created and any(
                    entry.kind in ROOT_KINDS
                    for entry in self.entries
                    if entry.ticket_number == number
                ):
                    # A new root shows the ticket as it is; a changed one is edited later.
                    await self.uow.queue_later(
                        CHAT,
                        number,
                        {"type": ROOT_EDIT},
                        key=ROOT_EDIT,
                        due=self.now + self.settings.root_edit_after,
                    )

    async def _announce(self, number: int, entries: list[int]) -> None:
        """One chat post per change and ticket, in the change's transaction, so a crash after
        the commit cannot lose it; the chat worker renders it from the entries."""
        payload = {
            "type": "ticket",
            "entries": entries,
            "created": number in self._created,
            "origin": self.origin.reply if self.origin else None,
        }
        await self.uow.queue_outbox(CHAT, number, payload)
        self.pending.append(OutboxQueued(CHAT))


def _latest(known: datetime | None, when: datetime) -> datetime:
    return when if known is None or when > known else known


def stored_message_id(value: str) -> str | None:
    """A Message-ID (or an In-Reply-To/References id) as exobot stores and looks it up:
    "<local@domain>" without spaces, None when there is nothing usable. The one rule for every
    id entering the core (mail, imported history) and every lookup (threading, de-duplication),
    so that what was stored is found again.

    An id longer than MAX_MESSAGE_ID bytes becomes "<head.sha256-HEX.long-id.exobot.invalid>":
    its first LONG_MESSAGE_ID_HEAD characters (readable in entries and logs) and the SHA-256 of
    the whole id. Hashed, not cut: two ids differing only after the cut would become one, and
    the second mail would be taken for a duplicate of the first (or threaded into its ticket).
    Deterministic: a reply quoting the long id in In-Reply-To or References, normalized the same
    way, gets the same short form and is threaded into the ticket. Idempotent: a short form is
    itself short, so applying the rule twice changes nothing."""
    core = "".join(value.split()).strip("<>")
    if not core:
        return None
    # surrogatepass: an id carrying undecodable bytes is measured and hashed, never an error.
    encoded = core.encode("utf-8", "surrogatepass")
    if len(encoded) <= MAX_MESSAGE_ID:
        return f"<{core}>"
    digest = hashlib.sha256(encoded).hexdigest()
    return f"<{core[:LONG_MESSAGE_ID_HEAD]}.sha256-{digest}.long-id.exobot.invalid>"


def sent_stamp(sent_at: datetime) -> str:
    """A mail's Date as recorded on its entry (`sent_at`) and compared when a Message-ID comes
    again: the UTC instant to the second, so that one instant written in two zones is one."""
    return sent_at.astimezone(UTC).isoformat(timespec="seconds")


def reused_message_id(message_id: str, sent_at: datetime) -> str:
    """The id a mail is recorded under when it reuses the Message-ID of another mail sent at a
    different instant (a web form or a script that sends every mail with one fixed id): the
    same for each copy of that mail, so a copy of it is still a duplicate."""
    digest = hashlib.sha256(f"{message_id}\0{sent_stamp(sent_at)}".encode("utf-8", "surrogatepass"))
    return f"<reused.{digest.hexdigest()[:40]}@exobot.invalid>"


def _clean_title(title: str) -> str:
    # Without control and invisible characters: a bidi override in a title ("\u202eFDP.exe")
    # would reverse what a list shows after it (the status, the age).
    title = " ".join(visible_text(title).split())
    return title[:MAX_TITLE]


def _required_text(text: str, problem: str) -> str:
    text = text.strip()
    if not text:
        raise InvalidRequest("missing_text", problem)
    return text


def _stored_address(text: str) -> str:
    """An address as participants are stored: canonical when it is usable, else lowercased."""
    try:
        return normalize_address(text)
    except BadAddress:
        return text.strip().lower()[:254]


def _address(text: str) -> str:
    """The canonical form of an address given by an operator, or InvalidRequest saying why
    (the one address rule: exobot.core.addresses)."""
    try:
        return normalize_address(text)
    except BadAddress as error:
        raise InvalidRequest(
            "bad_address",
            str(error),
            address=text[:100],
            reason=error.reason,
            reason_code=error.code,
        ) from None
