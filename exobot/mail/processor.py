"""Turns stored raw mail into tickets: parse, run the rules, hand an intent to the service.

A mail is done only when the service's transaction that records it commits (which also marks the
stored mail done). A mail that cannot be handled goes to quarantine and never blocks the next.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from sqlalchemy.exc import IntegrityError

from exobot.cancelling import cancel
from exobot.core.addresses import BadAddress, normalize_address
from exobot.core.clock import Clock
from exobot.core.events import OutboxQueued
from exobot.core.intents import ReceiveMail
from exobot.core.languages import LANGUAGES
from exobot.core.model import Actor, AttachmentInfo, IncomingMail
from exobot.core.service import (
    CHAT,
    ServiceError,
    TicketService,
    reused_message_id,
    sent_stamp,
    stored_message_id,
)
from exobot.core.text import format_size
from exobot.db import inbound
from exobot.db.engine import database_unavailable
from exobot.db.repository import SqlReader, SqlRepository, SqlUnitOfWork
from exobot.mail.msgid import MessageIds
from exobot.mail.parse import MailParseError, ParsedMail
from exobot.mail.rules import (
    DEFAULT_RULES,
    AutomaticMail,
    LoopMarker,
    Rule,
    Verdict,
    requestor_of,
    run_rules,
)
from exobot.mail.sandbox import MB, ParseRefused, ParseSandbox

log = logging.getLogger("exobot.mail.processor")

# A pass reads the stored mails in batches of at most this many, and of this many bytes
# together (one bigger mail goes alone): a burst waits on few reads, a backlog of big mails
# does not fill the memory.
PENDING_BATCH = 50
PENDING_BYTES = 32 * MB
# At most this many parsed mails are applied in one transaction: in a burst, one commit and one
# hand-off to the database's writer per group instead of per mail (most of a mail's time on
# PostgreSQL is spent waiting for round trips, not working).
GROUP_MAX = 8
# A mail whose processing was started this many times without ever finishing (the process died
# each time, e.g. killed for memory while parsing it) is quarantined instead of tried again.
MAX_UNFINISHED_ATTEMPTS = 2
TOO_BIG_TEMPLATE = "too_big"


@dataclass(frozen=True)
class MailSettings:
    """What the rules need from the configuration."""

    own_address: str
    prefix: str
    ack_limit_per_day: int
    message_ids: MessageIds
    announce: bool = False  # tell the chat rooms about quarantined mail
    trusted_authserv_id: str | None = None
    new_tickets_per_sender_per_hour: int = 10
    max_size: int = 25 * MB  # a bigger mail is only fetched as its header (see intake)
    language: str = "ca"  # the too-big notice's when neither the sender's tickets nor it tell
    mask: bool = True  # privacy.mask: store mail text with sensitive values masked
    legacy_tags: tuple[str, ...] = ()  # tickets.legacy_tags
    form_senders: frozenset[str] = frozenset()  # mail.form_senders, lower case


class ViewContext:
    """The rules' read-only lookups, all on one read transaction; "the last hour" and "the
    last 24 hours" end at `now`, the processor's clock."""

    def __init__(self, view: SqlReader, settings: MailSettings, now: datetime) -> None:
        self.view = view
        self.now = now
        self.own_address = settings.own_address
        self.prefix = settings.prefix
        self.ack_limit_per_day = settings.ack_limit_per_day
        self.message_ids = settings.message_ids
        self.trusted_authserv_id = settings.trusted_authserv_id
        self.new_tickets_per_sender_per_hour = settings.new_tickets_per_sender_per_hour
        self.legacy_tags = settings.legacy_tags
        self.form_senders = settings.form_senders
        self._acks: dict[str, int] = {}  # acks_today's answers fetched along (see below)

    async def ticket_for_message(self, message_id: str) -> int | None:
        """The ticket a known Message-ID belongs to, looked up in the form the service stores
        ids in (a long one shortened as it was when the mail was recorded)."""
        stored = stored_message_id(message_id)
        found = await self.view.ticket_for_message(stored) if stored else None
        return found[0] if found else None

    async def ticket_number(self, number: int) -> int | None:
        """The ticket the number names (a merged number: the surviving one), or None."""
        ticket = await self.view.get_ticket(number)
        return ticket.number if ticket is not None else None

    async def participants(self, number: int) -> set[str]:
        """The ticket's participants."""
        return await self.view.participants(number)

    async def acks_today(self, address: str) -> int:
        """Acknowledgements queued to `address` in the last 24 hours."""
        if address in self._acks:
            return self._acks[address]
        return await self.view.acks_since(address, self.now - timedelta(days=1))

    async def acks_today_from(self, address: str) -> int:
        """Acknowledgements queued in the last 24 hours on tickets `address` opened by mail."""
        return await self.view.acks_from_since(address, self.now - timedelta(days=1))

    async def openings_last_hour(self, address: str) -> int:
        """New tickets and unverified mails from `address` in the last hour."""
        # The acknowledgements to the same address come along (the rules ask next, for the
        # requestor, most often the sender): one statement instead of two. The rules write
        # nothing, so the count stays true until they are done.
        openings, self._acks[address] = await self.view.sender_counts(
            address, self.now - timedelta(hours=1), self.now - timedelta(days=1)
        )
        return openings


def dedupe_key(parsed: ParsedMail, raw: bytes) -> str:
    """The Message-ID as exobot stores it (the service's rule: a long one shortened), or a
    stable stand-in made from the raw bytes when there is none."""
    # The same form the service records, so that a copy of a mail with a long id is found
    # known here rather than only by the unique index failing at its insert.
    stored = stored_message_id(parsed.message_id) if parsed.message_id else None
    return stored or f"<sha256.{hashlib.sha256(raw).hexdigest()[:40]}@exobot.invalid>"


def shown_subject(parsed: ParsedMail, mask: bool = True) -> str:
    """The subject as exobot stores and shows it: masked when it held sensitive values."""
    if mask and parsed.masked_subject is not None:
        return parsed.masked_subject
    return parsed.subject


def incoming_from(
    parsed: ParsedMail,
    raw: bytes,
    inbound_id: int,
    received_at: datetime,
    mask: bool = True,
    message_id: str | None = None,
) -> IncomingMail:
    """The core's view of a parsed mail, received (taken in) at `received_at`, recorded under
    `message_id` (by default its de-duplication key). With `mask`, its subject and body are
    masked where the parser found sensitive values, and the originals travel along for
    entry_originals."""
    bounce = parsed.bounce
    masked = mask and bool(parsed.sensitive)
    return IncomingMail(
        message_id=message_id or dedupe_key(parsed, raw),
        sender=parsed.from_addr,
        sender_name=parsed.from_name,
        requestor=requestor_of(parsed),
        subject=shown_subject(parsed, mask),
        body=parsed.masked_body if masked and parsed.masked_body is not None else parsed.body,
        cc=tuple(parsed.cc),
        attachments=tuple(
            AttachmentInfo(a.filename, a.content_type, a.data) for a in parsed.attachments
        ),
        received_at=received_at,
        inbound_id=inbound_id,
        bounce_status=bounce.status if bounce else None,
        bounce_recipients=tuple(bounce.recipients) if bounce else (),
        body_truncated=parsed.body_truncated,
        sensitive=parsed.sensitive if masked else (),
        originals=(
            (
                parsed.body if parsed.masked_body is not None else None,
                parsed.subject if parsed.masked_subject is not None else None,
            )
            if masked
            else None
        ),
        language=parsed.language,
        sent_at=parsed.date,
    )


class MailProcessor:
    """Processes stored mails one at a time, in arrival order."""

    def __init__(
        self,
        repository: SqlRepository,
        service: TicketService,
        settings: MailSettings,
        rules: tuple[Rule, ...] = DEFAULT_RULES,
        parser: ParseSandbox | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.repository = repository
        self.service = service
        # The service's clock unless told otherwise: one time for the rules and the change.
        self.clock = clock or service.clock
        self.settings = settings
        self.rules = rules
        # Parsing runs in worker processes bounded in time and memory: no mail holds the loop.
        self.parser = parser or ParseSandbox()
        self._lock = asyncio.Lock()
        self._let_through: set[int] = set()  # mails an operator retries: no sender limit
        # Called with each parse's duration in seconds (the App's metrics observe it).
        self.on_parsed: Callable[[float], None] = lambda _seconds: None

    async def process_pending(self) -> int:
        """Process every stored mail not processed yet; returns how many were handled."""
        handled = 0
        async with self._lock:  # one pass at a time keeps arrival order and de-duplication simple
            while True:
                batch = await self.repository.read(
                    lambda view: inbound.pending_mails(view.conn, PENDING_BATCH, PENDING_BYTES)
                )
                if not batch:
                    return handled
                await self._process_batch(batch)
                handled += len(batch)

    async def _process_batch(self, batch: list[inbound.PendingMail]) -> None:
        """Parse up to two mails per worker ahead, and handle the results in arrival order.

        Every pass is counted on the stored mail before it starts, so that a mail during which
        exobot died twice is set aside. Counting costs a write, so mails never tried before
        are counted together, one write per batch (a crash then counts the whole batch once,
        which sets nobody aside); a mail that was already being handled when exobot died is
        counted on its own, so a second crash points at the mail that causes it."""
        started: dict[int, asyncio.Task] = {}  # parses running or done, not handled yet
        waiting = collections.deque(batch)
        counted: set[int] = set()  # passes counted and not finished

        async def count(ids: list[int]) -> None:
            await self.repository.write(lambda conn: inbound.begin_attempts(conn, ids))
            counted.update(ids)

        async def start_next() -> None:
            # Parse ahead: at least one mail per worker parsing and one parsed and waiting, so
            # no worker idles while the loop applies a result, and a group's worth ready.
            while waiting and len(started) < max(2 * self.parser.workers, GROUP_MAX):
                mail = waiting[0]
                if mail.attempts >= MAX_UNFINISHED_ATTEMPTS:
                    started[waiting.popleft().id] = _done(ParseRefused(_unfinished(mail.attempts)))
                    continue
                if mail.id not in counted:
                    # A survivor of a crash is counted when nothing before it is in flight, so
                    # that a second crash is counted against it and not the mails parsed ahead.
                    if started:
                        return
                    await count([mail.id])
                started[waiting.popleft().id] = asyncio.create_task(self._parse(mail))

        try:
            await count([mail.id for mail in batch if mail.attempts == 0])
            at = 0
            while at < len(batch):
                await start_next()
                mail = batch[at]
                group = [(mail, await started[mail.id])]
                # The mails after it whose parse is done already join it (none is waited for).
                for later in batch[at + 1 : at + GROUP_MAX] if _groupable(*group[0]) else ():
                    parse = started.get(later.id)
                    if parse is None or not parse.done() or not _groupable(later, parse.result()):
                        break
                    group.append((later, parse.result()))
                if len(group) == 1:
                    await self._handle(mail, group[0][1])
                else:
                    await self._handle_group(group)
                for handled, _outcome in group:
                    del started[handled.id]
                    counted.discard(handled.id)
                at += len(group)
        except BaseException:
            # Stopped (or the sandbox failed): the passes begun here were not the mails' fault.
            cancel(started.values())
            with contextlib.suppress(Exception):
                await self.repository.write(
                    lambda conn: inbound.undo_attempts(conn, sorted(counted))
                )
            raise

    async def _parse(self, mail: inbound.PendingMail) -> ParsedMail | Exception:
        """The parsed mail, or the reason it could not be parsed (SandboxUnavailable and
        cancellation propagate: they are not about the mail)."""
        started = time.perf_counter()
        try:
            return await self.parser.parse(mail.raw)
        except (MailParseError, ParseRefused) as error:
            return error
        finally:
            self.on_parsed(time.perf_counter() - started)

    async def process(self, inbound_id: int) -> str:
        """Process one stored mail (an operator's retry); returns the state it ends in."""
        mail = await self.repository.read(lambda view: inbound.load_mail(view.conn, inbound_id))
        if mail is None:
            return "missing"
        return await self._handle(mail, await self._parse(mail))

    async def _handle(self, mail: inbound.PendingMail, outcome: ParsedMail | Exception) -> str:
        """Turn a parsed mail into a ticket, an entry or a quarantine item."""
        inbound_id = mail.id
        if mail.header_only:
            return await self._too_big(mail, outcome)
        if isinstance(outcome, MailParseError):
            return await self._finish(
                inbound_id, inbound.QUARANTINED, error=f"not a mail: {outcome}"
            )
        if isinstance(outcome, ParseRefused):
            return await self._finish(inbound_id, inbound.QUARANTINED, error=outcome.reason)
        pending = self._prepare(mail, outcome)
        try:
            applied = await self.service.apply_decided(partial(self._decide, pending))
        except _RulesFailed as failed:
            error = failed.__cause__
            log.error("rules failed on stored mail %s", inbound_id, exc_info=error)
            return await self._finish(
                inbound_id, inbound.QUARANTINED, error=f"rules failed: {error!r}", **pending.meta
            )
        except IntegrityError:
            # Another pass recorded the same Message-ID first: the mail is already in a ticket.
            return await self._finish(inbound_id, "duplicate", **pending.meta)
        except ServiceError as error:
            return await self._finish(
                inbound_id, inbound.QUARANTINED, error=str(error), **pending.meta
            )
        except Exception as error:
            if database_unavailable(error):
                # The database went away (a restart, a cut connection): not the mail's fault.
                # It stays waiting, and the pass fails, to be tried again.
                raise
            log.exception("applying stored mail %s failed", inbound_id)
            return await self._finish(
                inbound_id, inbound.QUARANTINED, error=repr(error), **pending.meta
            )
        return await self._settle(pending, applied)

    async def _handle_group(self, group: list[tuple[inbound.PendingMail, ParsedMail]]) -> None:
        """Apply parsed mails in one transaction, in arrival order. If one of them fails,
        nothing of the group is kept and each is handled alone, which tells which one failed
        and why, exactly as if there had been no group."""
        prepared = [self._prepare(mail, parsed) for mail, parsed in group]
        try:
            applied = await self.service.apply_decided_all(
                [partial(self._decide, pending) for pending in prepared]
            )
        except Exception as error:
            if database_unavailable(error):
                raise
            log.info("a group of %d mails failed (%r); handling them one by one", len(group), error)
            for mail, parsed in group:
                await self._handle(mail, parsed)
            return
        for pending, outcome in zip(prepared, applied, strict=True):
            await self._settle(pending, outcome)

    def _prepare(self, mail: inbound.PendingMail, parsed: ParsedMail) -> _Pending:
        """A parsed mail ready to be decided on and applied."""
        meta = {
            "message_id": parsed.message_id,
            "subject": shown_subject(parsed, self.settings.mask),
            "sender": parsed.from_addr,
        }
        return _Pending(mail, parsed, dedupe_key(parsed, mail.raw), meta, self.clock.now())

    async def _decide(self, pending: _Pending, uow: SqlUnitOfWork) -> object:
        """What to do with a mail, decided in the transaction that records it (the rules read
        there, not in a read transaction of their own): (actor, intent) to apply, or why not
        (_Known, a Verdict that drops or holds it)."""
        parsed, inbound_id, now = pending.parsed, pending.mail.id, pending.now
        try:
            key = pending.key
            known = await uow.ticket_for_message(key)
            if known and known[1] == "in" and (reused := await self._reused_id(pending, uow)):
                key = reused
                known = await uow.ticket_for_message(key)
            if known:
                return _Known(known)
            verdict = await run_rules(parsed, ViewContext(uow, self.settings, now), self.rules)
        except Exception as error:
            if database_unavailable(error):
                raise  # not the rules' fault (see _handle)
            raise _RulesFailed(error) from error
        if verdict.drop or (verdict.hold and inbound_id not in self._let_through):
            return verdict
        incoming = incoming_from(
            parsed, pending.mail.raw, inbound_id, now, self.settings.mask, message_id=key
        )
        intent = ReceiveMail(
            mail=incoming,
            mail_class=verdict.mail_class,
            ticket=verdict.ticket,
            acknowledge=verdict.acknowledge,
        )
        sender = incoming.sender or "unknown"
        actor = Actor.system("mail") if verdict.bounce else Actor.member(sender)
        pending.verdict = verdict
        return actor, intent

    async def _reused_id(self, pending: _Pending, uow: SqlUnitOfWork) -> str | None:
        """For a mail whose key a received mail was recorded under already: None when it is a
        copy of that mail, or the id it is recorded under when it is another mail reusing
        the Message-ID (sent at another instant: a web form or a script that sends every
        mail with one fixed id), which would otherwise be dropped as a duplicate and lost.
        Without a Date on both, a repeated id stays a duplicate."""
        sent_at = pending.parsed.date
        if sent_at is None:
            return None
        recorded = await uow.sent_at_of_message(pending.key)
        if recorded is None or recorded == sent_stamp(sent_at):
            return None
        reused = reused_message_id(pending.key, sent_at)
        log.info(
            "mail %s reuses the Message-ID %s of a mail sent at %s: recorded as %s",
            pending.mail.id,
            pending.key,
            recorded,
            reused,
        )
        return reused

    async def _settle(self, pending: _Pending, outcome: object) -> str:
        """Record what became of an applied mail (a duplicate, dropped, held or done)."""
        inbound_id, parsed, meta = pending.mail.id, pending.parsed, pending.meta
        if isinstance(outcome, _Known):
            ticket, direction = outcome.found
            state = "duplicate" if direction == "in" else "dropped"
            log.info(
                "mail %s (%s) already known in ticket %s: %s",
                inbound_id,
                pending.key,
                ticket,
                state,
            )
            return await self._finish(inbound_id, state, ticket=ticket, **meta)
        if isinstance(outcome, Verdict):
            verdict = outcome
            if verdict.drop:
                log.info("mail %s from %s dropped: %s", inbound_id, parsed.from_addr, verdict.drop)
                state = "ignored" if verdict.bounce else "dropped"
                return await self._finish(inbound_id, state, error=verdict.drop, **meta)
            # A held mail with a key is announced once per key and hour, not once per mail.
            hour = pending.now.strftime("%Y-%m-%dT%H")
            return await self._finish(
                inbound_id,
                inbound.QUARANTINED,
                error=verdict.hold,
                announce_key=f"{verdict.hold_key}:{hour}" if verdict.hold_key else None,
                **meta,
            )
        verdict = pending.verdict
        log.info(
            "mail %s from %s → %s (%s%s%s)",
            inbound_id,
            parsed.from_addr,
            self.service.reference(outcome.ticket),
            "new ticket" if outcome.created else f"threaded by {verdict.threaded_by}",
            f", {verdict.mail_class.value}",
            ""
            if verdict.acknowledge or not outcome.created
            else f", no ack: {'; '.join(verdict.no_ack)}",
        )
        return "done"

    async def retry(self, inbound_id: int) -> str:
        """Process a quarantined mail again at an operator's request: a rule that holds mail
        (the per-sender limit, an unusable sender) does not hold it back a second time; every
        other rule applies."""
        self._let_through.add(inbound_id)
        try:
            return await self.process(inbound_id)
        finally:
            self._let_through.discard(inbound_id)

    async def _finish(
        self,
        inbound_id: int,
        state: str,
        *,
        announce_key: str | None = None,
        also: Callable[[SqlUnitOfWork], Awaitable[bool]] | None = None,
        **values,
    ) -> str:
        """Record what became of a stored mail, and announce a quarantine; `also` adds more
        to the same transaction (True when it queued a mail)."""
        quarantined = state == inbound.QUARANTINED
        if quarantined:
            log.warning("mail %s quarantined: %s", inbound_id, values.get("error"))
        mailed = False
        async with self.repository.transaction(self.clock.now()) as uow:
            await inbound.mark_inbound(uow.conn, inbound_id, state, now=uow.now, **values)
            if also is not None:
                mailed = await also(uow)
            # Once per mail, even when a retry from the CLI quarantines it again.
            announce = (
                quarantined
                and self.settings.announce
                and await uow.claim(announce_key or f"quarantine:{inbound_id}")
            )
            if announce:
                payload = {
                    "type": "quarantine",
                    "inbound_id": inbound_id,
                    "sender": values.get("sender"),
                    "subject": values.get("subject"),
                    "error": values.get("error"),
                }
                await uow.queue_outbox(CHAT, None, payload)
        if announce:
            await self.service.events.emit(OutboxQueued(CHAT))
        if mailed:
            await self.service.events.emit(OutboxQueued("mail"))
        return state

    async def _too_big(self, mail: inbound.PendingMail, outcome: ParsedMail | Exception) -> str:
        """Quarantine a mail that was too big to fetch (only its header is stored), and tell its
        sender, once a day at most, to send it smaller: in one transaction."""
        size, limit = format_size(mail.size), format_size(self.settings.max_size)
        reason = f"too big: {size}, limit {limit}"
        if not isinstance(outcome, ParsedMail):
            # Not even a readable header: nobody to tell.
            return await self._finish(mail.id, inbound.QUARANTINED, error=reason)
        parsed = outcome
        meta = {
            "message_id": parsed.message_id,
            "subject": shown_subject(parsed, self.settings.mask),
            "sender": parsed.from_addr,
        }

        async def notify(uow: SqlUnitOfWork) -> bool:
            recipient = await self._too_big_recipient(parsed, uow)
            if recipient is None:
                return False
            chain = [parsed.message_id] if parsed.message_id else []
            payload = {
                "template": TOO_BIG_TEMPLATE,
                "language": await self._too_big_language(parsed, recipient, uow),
                "to": [recipient],
                "subject": shown_subject(parsed, self.settings.mask),
                "size": mail.size,
                "limit": self.settings.max_size,
                # Ticket 0 is no ticket: a reply to the notice opens a new one.
                "message_id": self.settings.message_ids.mint(0),
                "in_reply_to": parsed.message_id,
                "references": chain,
                "auto_submitted": True,
            }
            await uow.queue_outbox(
                "mail", None, payload, template=TOO_BIG_TEMPLATE, recipient=recipient
            )
            return True

        return await self._finish(mail.id, inbound.QUARANTINED, error=reason, also=notify, **meta)

    async def _too_big_language(
        self, parsed: ParsedMail, recipient: str, uow: SqlUnitOfWork
    ) -> str:
        """The language of the too-big notice: the one the sender's latest ticket speaks (the
        mail most likely belongs to it, and an operator may have set it), else the one the
        mail's subject is written in, as a new mail's acknowledgement chooses it
        (exobot.mail.language; only the header was fetched), else the configured one."""
        latest = await uow.latest_language_of(recipient.lower())
        for language in (latest, parsed.language):
            if language in LANGUAGES:
                return language
        return self.settings.language

    async def _too_big_recipient(self, parsed: ParsedMail, view: SqlReader) -> str | None:
        """Who gets the too-big notice: the From address, unless the mail is automatic or
        ours, the address is unusable, the sender was told today already, or the daily cap of
        acknowledgements and notices to it is reached."""
        verdict = Verdict()
        now = self.clock.now()
        context = ViewContext(view, self.settings, now)
        for rule in (LoopMarker(), AutomaticMail()):
            await rule.apply(parsed, context, verdict)
        why_not = verdict.drop or verdict.automatic
        sender = parsed.from_addr
        try:
            sender = normalize_address(sender)
        except BadAddress as error:
            why_not = why_not or f"unusable sender address ({error.reason})"
        if not why_not and sender == self.settings.own_address.lower():
            why_not = "mail from our own address"
        since = now - timedelta(days=1)
        if not why_not and await view.acks_since(sender, since, (TOO_BIG_TEMPLATE,)):
            why_not = "told already in the last 24 hours"
        if not why_not and await view.acks_since(sender, since) >= self.settings.ack_limit_per_day:
            why_not = f"daily cap of {self.settings.ack_limit_per_day} acknowledgements reached"
        if why_not:
            log.info("no too-big notice to %s: %s", parsed.from_addr, why_not)
            return None
        return sender


@dataclass
class _Pending:
    """A parsed mail on its way into a ticket: its de-duplication key, what its log lines and
    inbound row say of it, its instant and, once decided, the rules' verdict."""

    mail: inbound.PendingMail
    parsed: ParsedMail
    key: str
    meta: dict[str, str | None]
    now: datetime
    verdict: Verdict | None = None


def _groupable(mail: inbound.PendingMail, outcome: object) -> bool:
    """Whether a mail may be applied in a group: parsed, whole, and never tried before (a
    mail that was being handled when exobot died goes alone, so that a second death points
    at it and not at the mails grouped with it)."""
    return isinstance(outcome, ParsedMail) and not mail.header_only and mail.attempts == 0


@dataclass(frozen=True)
class _Known:
    """A mail whose Message-ID is known already: (ticket, direction) of the recorded one."""

    found: tuple[int, str]


class _RulesFailed(Exception):
    """The rules raised (the cause): the mail is quarantined, not the pass stopped."""


def _done(value: object) -> asyncio.Future:
    """A future that already holds `value`."""
    future = asyncio.get_running_loop().create_future()
    future.set_result(value)
    return future


def _unfinished(attempts: int) -> str:
    return (
        f"processing was interrupted {attempts} times (exobot stopped or crashed while parsing"
        " it); not retried automatically"
    )
