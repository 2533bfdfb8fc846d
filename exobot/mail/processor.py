"""Turns stored raw mail into tickets: parse, run the rules, hand an intent to the service.

A mail is done only when the service's transaction that records it commits (which also marks the
stored mail done). A mail that cannot be handled goes to quarantine and never blocks the next.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.exc import IntegrityError

from exobot.core.events import OutboxQueued
from exobot.core.intents import ReceiveMail
from exobot.core.model import Actor, AttachmentInfo, IncomingMail
from exobot.core.service import CHAT, ServiceError, TicketService
from exobot.db import inbound
from exobot.db.repository import SqlReader, SqlRepository
from exobot.mail.msgid import MessageIds
from exobot.mail.parse import MailParseError, ParsedMail, parse_mail
from exobot.mail.rules import DEFAULT_RULES, Rule, Verdict, requestor_of, run_rules

log = logging.getLogger("exobot.mail.processor")

PENDING_BATCH = 20


@dataclass(frozen=True)
class MailSettings:
    """What the rules need from the configuration."""

    own_address: str
    prefix: str
    ack_limit_per_day: int
    message_ids: MessageIds
    announce: bool = False  # tell the chat rooms about quarantined mail


class ViewContext:
    """The rules' read-only lookups, all on one read transaction."""

    def __init__(self, view: SqlReader, settings: MailSettings) -> None:
        self.view = view
        self.own_address = settings.own_address
        self.prefix = settings.prefix
        self.ack_limit_per_day = settings.ack_limit_per_day
        self.message_ids = settings.message_ids

    async def ticket_for_message(self, message_id: str) -> int | None:
        """The ticket a known Message-ID belongs to."""
        found = await self.view.ticket_for_message(message_id)
        return found[0] if found else None

    async def ticket_exists(self, number: int) -> bool:
        """Whether the ticket exists."""
        return await self.view.get_ticket(number) is not None

    async def participants(self, number: int) -> set[str]:
        """The ticket's participants."""
        return await self.view.participants(number)

    async def acks_today(self, address: str) -> int:
        """Acknowledgements queued to `address` in the last 24 hours."""
        return await self.view.acks_since(address, datetime.now(UTC) - timedelta(days=1))


def dedupe_key(parsed: ParsedMail, raw: bytes) -> str:
    """The Message-ID, or a stable stand-in made from the raw bytes when there is none."""
    return parsed.message_id or f"<sha256.{hashlib.sha256(raw).hexdigest()[:40]}@exobot.invalid>"


def incoming_from(parsed: ParsedMail, raw: bytes, inbound_id: int) -> IncomingMail:
    """The core's view of a parsed mail."""
    bounce = parsed.bounce
    return IncomingMail(
        message_id=dedupe_key(parsed, raw),
        sender=parsed.from_addr,
        sender_name=parsed.from_name,
        requestor=requestor_of(parsed),
        subject=parsed.subject,
        body=parsed.body,
        cc=tuple(parsed.cc),
        attachments=tuple(
            AttachmentInfo(a.filename, a.content_type, a.data) for a in parsed.attachments
        ),
        received_at=datetime.now(UTC),
        inbound_id=inbound_id,
        bounce_status=bounce.status if bounce else None,
        bounce_recipients=tuple(bounce.recipients) if bounce else (),
    )


class MailProcessor:
    """Processes stored mails one at a time, in arrival order."""

    def __init__(
        self,
        repository: SqlRepository,
        service: TicketService,
        settings: MailSettings,
        rules: tuple[Rule, ...] = DEFAULT_RULES,
    ) -> None:
        self.repository = repository
        self.service = service
        self.settings = settings
        self.rules = rules
        self._lock = asyncio.Lock()

    async def process_pending(self) -> int:
        """Process every stored mail not processed yet; returns how many were handled."""
        handled = 0
        async with self._lock:  # one pass at a time keeps arrival order and de-duplication simple
            while True:
                batch = await self.repository.read(
                    lambda view: inbound.pending(view.conn, PENDING_BATCH)
                )
                if not batch:
                    return handled
                for inbound_id, raw in batch:
                    await self.process(inbound_id, raw)
                    handled += 1

    async def process(self, inbound_id: int, raw: bytes | None = None) -> str:
        """Process one stored mail; returns the state it ends in."""
        if raw is None:
            loaded = await self.repository.read(
                lambda view: inbound.load_raw(view.conn, inbound_id)
            )
            if loaded is None:
                return "missing"
            raw, _state = loaded
        try:
            parsed = await asyncio.to_thread(parse_mail, raw)
        except MailParseError as error:
            return await self._finish(inbound_id, inbound.QUARANTINED, error=f"not a mail: {error}")
        except Exception as error:  # a parser bug must not block the next mails
            log.exception("parsing stored mail %s failed", inbound_id)
            return await self._finish(
                inbound_id, inbound.QUARANTINED, error=f"parse failed: {error!r}"
            )

        meta = {
            "message_id": parsed.message_id,
            "subject": parsed.subject,
            "sender": parsed.from_addr,
        }
        key = dedupe_key(parsed, raw)

        async def classify(view: SqlReader) -> tuple[tuple[int, str] | None, Verdict | None]:
            known = await view.ticket_for_message(key)
            if known:
                return known, None
            return None, await run_rules(parsed, ViewContext(view, self.settings), self.rules)

        try:
            known, verdict = await self.repository.read(classify)
        except Exception as error:
            log.exception("rules failed on stored mail %s", inbound_id)
            return await self._finish(
                inbound_id, inbound.QUARANTINED, error=f"rules failed: {error!r}", **meta
            )
        if known:
            ticket, direction = known
            state = "duplicate" if direction == "in" else "dropped"
            log.info("mail %s (%s) already known in ticket %s: %s", inbound_id, key, ticket, state)
            return await self._finish(inbound_id, state, ticket=ticket, **meta)
        if verdict.drop:
            log.info("mail %s from %s dropped: %s", inbound_id, parsed.from_addr, verdict.drop)
            state = "ignored" if verdict.bounce else "dropped"
            return await self._finish(inbound_id, state, error=verdict.drop, **meta)
        return await self._apply(inbound_id, parsed, raw, verdict, meta)

    async def _apply(
        self, inbound_id: int, parsed: ParsedMail, raw: bytes, verdict: Verdict, meta: dict
    ) -> str:
        """Hand the mail to the service; its transaction also marks the stored mail done."""
        mail = incoming_from(parsed, raw, inbound_id)
        intent = ReceiveMail(
            mail=mail,
            mail_class=verdict.mail_class,
            ticket=verdict.ticket,
            acknowledge=verdict.acknowledge,
        )
        actor = Actor.system("mail") if verdict.bounce else Actor.member(mail.sender or "unknown")
        try:
            outcome = await self.service.apply(actor, intent)
        except IntegrityError:
            # Another pass recorded the same Message-ID first: the mail is already in a ticket.
            return await self._finish(inbound_id, "duplicate", **meta)
        except ServiceError as error:
            return await self._finish(inbound_id, inbound.QUARANTINED, error=str(error), **meta)
        except Exception as error:
            log.exception("applying stored mail %s failed", inbound_id)
            return await self._finish(inbound_id, inbound.QUARANTINED, error=repr(error), **meta)
        log.info(
            "mail %s from %s → %s (%s%s%s)",
            inbound_id,
            mail.sender,
            self.service.reference(outcome.ticket),
            "new ticket" if outcome.created else f"threaded by {verdict.threaded_by}",
            f", {verdict.mail_class.value}",
            ""
            if verdict.acknowledge or not outcome.created
            else f", no ack: {'; '.join(verdict.no_ack)}",
        )
        return "done"

    async def _finish(self, inbound_id: int, state: str, **values) -> str:
        quarantined = state == inbound.QUARANTINED
        if quarantined:
            log.warning("mail %s quarantined: %s", inbound_id, values.get("error"))
        async with self.repository.transaction() as uow:
            await inbound.mark_inbound(uow.conn, inbound_id, state, **values)
            # Once per mail, even when a retry from the CLI quarantines it again.
            announce = (
                quarantined
                and self.settings.announce
                and await uow.claim(f"quarantine:{inbound_id}")
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
        return state
