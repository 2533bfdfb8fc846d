"""The mail worker: delivers the outbox's mails over SMTP with retries and backoff.

The Message-ID of a mail was minted when it was queued, so a retry sends the same message again
and receivers can recognise it. A permanent (5xx) refusal marks the mail failed, records it in the
ticket's history and leaves it visible; it never blocks the mails queued after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage

import aiosmtplib

from exobot.core.intents import RecordDeliveryFailure
from exobot.core.model import Actor
from exobot.core.service import ServiceError, TicketService
from exobot.db import outbox
from exobot.db.repository import SqlRepository
from exobot.mail.compose import TemplateRenderer, build_message, is_threadable_id

log = logging.getLogger("exobot.mail.outbound")

IDLE_WAIT_SECONDS = 30.0


@dataclass(frozen=True)
class SmtpSettings:
    """How to reach the SMTP server."""

    host: str
    port: int
    security: str = "starttls"  # ssl | starttls | none
    username: str | None = None
    password: str | None = None
    timeout: float = 30.0


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff between attempts, up to a number of attempts."""

    max_attempts: int = 10
    base: timedelta = timedelta(seconds=30)
    maximum: timedelta = timedelta(hours=1)

    def delay(self, attempts: int) -> timedelta:
        """The wait after the `attempts`-th failed attempt."""
        return min(self.maximum, self.base * (2 ** max(0, attempts - 1)))


class PermanentFailure(Exception):
    """The server refused the mail for good (5xx)."""


class MailSender:
    """Sends the pending mails of the outbox, one ticket's mails in order."""

    def __init__(
        self,
        repository: SqlRepository,
        service: TicketService,
        smtp: SmtpSettings,
        renderer: TemplateRenderer,
        *,
        from_address: str,
        from_name: str,
        loop_marker: str,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.repository = repository
        self.service = service
        self.smtp = smtp
        self.renderer = renderer
        self.from_address = from_address
        self.from_name = from_name
        self.loop_marker = loop_marker
        self.retry = retry or RetryPolicy()
        self.wake = asyncio.Event()
        self._client: aiosmtplib.SMTP | None = None

    def build(self, payload: dict) -> EmailMessage:
        """The message for an outbox payload (rendered from its template)."""
        variables = {
            "reference": payload["reference"],
            "number": payload["number"],
            "title": payload["title"],
            "requestor": payload.get("requestor", ""),
            "display_name": self.from_name,
            "text": payload.get("text") or "",
        }
        body = self.renderer.render(payload["template"], payload.get("language"), **variables)
        # A member's mail client may have sent a malformed Message-ID: thread without it
        # rather than never sending the mail.
        in_reply_to = payload.get("in_reply_to")
        if in_reply_to and not is_threadable_id(in_reply_to):
            in_reply_to = None
        references = [r for r in payload.get("references") or [] if is_threadable_id(r)]
        return build_message(
            from_address=self.from_address,
            from_name=self.from_name,
            to=payload["to"],
            cc=payload.get("cc") or [],
            subject_tag=payload["reference"],
            title=payload["title"],
            body=body,
            message_id=payload["message_id"],
            in_reply_to=in_reply_to,
            references=references,
            auto_submitted=bool(payload.get("auto_submitted")),
            loop_marker=self.loop_marker,
            language=payload.get("language") or "ca",
        )

    async def run(self) -> None:
        """Deliver forever: when woken, or when the next retry is due."""
        while True:
            try:
                await self.deliver_due()
                async with self.repository.connection() as conn:
                    next_at = await outbox.next_due_at(conn, "mail")
            except Exception:  # the database may be briefly unavailable; keep the worker alive
                log.exception("mail worker pass failed")
                next_at = None
            wait = IDLE_WAIT_SECONDS
            if next_at is not None:
                wait = min(wait, max(0.0, (next_at - datetime.now(UTC)).total_seconds()))
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout=wait or 0.01)

    async def deliver_due(self) -> int:
        """Send every mail whose time has come; returns how many were sent."""
        sent = 0
        while True:
            async with self.repository.connection() as conn:
                items = await outbox.due(conn, "mail", datetime.now(UTC))
            if not items:
                return sent
            progressed = False
            try:
                for item in items:
                    if await self.deliver(item):
                        sent += 1
                        progressed = True
            finally:
                await self._disconnect()
            if not progressed:
                return sent

    async def deliver(self, item: outbox.OutboxItem) -> bool:
        """Try one mail; returns True when it was accepted by the server."""
        try:
            message = self.build(item.payload)
            await self._send(message)
        except PermanentFailure as error:
            await self._fail(item, str(error))
            return False
        except (ValueError, KeyError) as error:  # a payload we cannot turn into a mail
            await self._fail(item, f"cannot build the mail: {error!r}")
            return False
        except Exception as error:
            attempts = item.attempts + 1
            if attempts >= self.retry.max_attempts:
                await self._fail(item, f"gave up after {attempts} attempts: {error}")
                return False
            next_try = datetime.now(UTC) + self.retry.delay(attempts)
            log.warning(
                "mail %s (ticket %s) not sent, attempt %d, retry at %s: %s",
                item.id,
                item.ticket_id,
                attempts,
                next_try.isoformat(timespec="seconds"),
                error,
            )
            async with self.repository.connection() as conn:
                await outbox.mark_retry(conn, item.id, str(error), next_try)
            return False
        async with self.repository.connection() as conn:
            await outbox.mark_sent(conn, item.id)
        log.info("mail %s (ticket %s) sent to %s", item.id, item.ticket_id, item.payload.get("to"))
        return True

    async def _connection(self) -> aiosmtplib.SMTP:
        """The open SMTP connection of this pass (one for all its mails), made when needed."""
        if self._client is None or not self._client.is_connected:
            smtp = self.smtp
            client = aiosmtplib.SMTP(
                hostname=smtp.host,
                port=smtp.port,
                use_tls=smtp.security == "ssl",
                start_tls=smtp.security == "starttls",
                timeout=smtp.timeout,
            )
            await client.connect()
            if smtp.username:
                await client.login(smtp.username, smtp.password or "")
            self._client = client
        return self._client

    async def _disconnect(self) -> None:
        client, self._client = self._client, None
        if client is not None and client.is_connected:
            with contextlib.suppress(Exception):  # the server may have gone already
                await client.quit()

    async def _send(self, message: EmailMessage) -> None:
        client = await self._connection()
        try:
            errors, _response = await client.send_message(message)
        except aiosmtplib.SMTPRecipientsRefused as error:
            await self._reset()
            codes = [r.code for r in error.recipients]
            text = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in error.recipients)
            if all(code >= 500 for code in codes):
                raise PermanentFailure(text) from None
            raise
        except aiosmtplib.SMTPResponseException as error:
            await self._reset()
            if error.code >= 500:
                raise PermanentFailure(f"{error.code} {error.message}") from None
            raise
        except Exception:
            await self._disconnect()  # a broken connection: the next mail opens a new one
            raise
        for recipient, (code, text) in (errors or {}).items():
            log.warning(
                "recipient %s refused (%s %s); the others got the mail", recipient, code, text
            )

    async def _reset(self) -> None:
        """Leave the failed transaction so the connection can carry the next mail."""
        try:
            await self._client.rset()
        except Exception:
            await self._disconnect()

    async def _fail(self, item: outbox.OutboxItem, error: str) -> None:
        log.error("mail %s (ticket %s) failed for good: %s", item.id, item.ticket_id, error)
        async with self.repository.connection() as conn:
            await outbox.mark_failed(conn, item.id, error)
        if item.ticket_id is None:
            return
        to = item.payload.get("to") or [""]
        try:
            await self.service.apply(
                Actor.system("mail"),
                RecordDeliveryFailure(item.ticket_id, item.id, to[0], error),
            )
        except ServiceError as problem:
            log.error("could not record the failure on ticket %s: %s", item.ticket_id, problem)
