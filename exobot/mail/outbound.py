"""The mail worker: delivers the outbox's mails over SMTP with retries and backoff.

The Message-ID of a mail was minted when it was queued, so a retry sends the same message again
and receivers can recognise it. A permanent (5xx) refusal marks the mail failed, records it in the
ticket's history and leaves it visible; it never blocks the mails queued after it. A server that
cannot be reached (see `_send`) is no refusal of the mail: it waits until the server is back,
without using up its attempts (exobot.delivery.Unreachable).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any

import aiosmtplib

from exobot.core.addresses import address_problem
from exobot.core.clock import Clock, SystemClock
from exobot.core.intents import Origin, RecordDeliveryFailure
from exobot.core.languages import N_
from exobot.core.model import Actor
from exobot.core.service import PLACEHOLDER_TITLE, ServiceError, TicketService
from exobot.core.text import format_size, greeting_name, without_reply_prefixes
from exobot.db import outbox
from exobot.db.repository import SqlRepository
from exobot.delivery import (
    OutboxWorker,
    PermanentFailure,
    RetryPolicy,
    Unreachable,
    reading_payload,
)
from exobot.i18n import say
from exobot.mail.compose import TemplateRenderer, build_message, header_safe, is_threadable_id

if TYPE_CHECKING:
    from exobot.config import Config
    from exobot.mail.send_helper import SendHelper

log = logging.getLogger("exobot.mail.outbound")

#: The acknowledgement's sentence about when a first answer can be expected, unless
#: mail.first_answer says otherwise for the ticket's language.
FIRST_ANSWER = N_("We usually answer within two working days.")
#: What a reply that also resolved the ticket ("reply and resolve") adds to its text, in the
#: place of the resolved notice it is sent instead of.
RESOLVED_NOTE = N_(
    "We have marked this ticket as resolved. If the problem persists, reply to this email"
    " keeping [{reference}] in the subject and we will reopen it."
)
#: The subject of the member's mails about a ticket opened without one.
NO_SUBJECT = N_("(no subject)")
#: Seconds an SMTP connection is kept open after a pass, for the next pass to reuse: while
#: mail keeps coming (a burst, acknowledged one pass at a time) there is no connect, EHLO and
#: QUIT per pass; an idle one is closed well before any server's idle timeout (RFC 5321: 5 min).
KEEP_CONNECTION_SECONDS = 2.0
#: SMTP connections open at once, one per lane (exobot.delivery): each acknowledgement waits
#: for the relay's answer, so several tickets' mails are handed over side by side.
SMTP_CONNECTIONS = 4


@dataclass(frozen=True)
class SmtpSettings:
    """How to reach the SMTP server."""

    host: str
    port: int
    security: str = "starttls"  # ssl | starttls | none
    username: str | None = None
    password: str | None = None
    timeout: float = 30.0


class _Client(aiosmtplib.SMTP):
    """An SMTP connection that tells whether its mail under way has reached DATA: a connection
    lost from there on may have delivered it (see `MailSender._send`)."""

    reached_data = False

    async def data(self, *args: Any, **kwargs: Any) -> aiosmtplib.SMTPResponse:
        """DATA, noted before it is sent."""
        self.reached_data = True
        return await super().data(*args, **kwargs)


def _unreachable(error: Exception) -> Unreachable:
    """The worker's word for a server that could not be reached, saying why."""
    return Unreachable(f"the SMTP server could not be reached: {error}")


def member_subject(payload: Mapping[str, object]) -> str:
    """The subject a ticket's mail shows its member ("" for none): the one queued with it
    (exobot.core.service._Step.member_subject); a mail queued before it was, the title it was
    queued with."""
    subject = payload.get("subject")
    if "subject" not in payload:
        title = payload.get("title")
        subject = without_reply_prefixes(title) if isinstance(title, str) else ""
    if not isinstance(subject, str) or subject == PLACEHOLDER_TITLE:
        return ""
    return subject


class MailSender(OutboxWorker):
    """Sends the pending mails of the outbox, one ticket's mails in order."""

    kind = "mail"
    log = log
    concurrency = SMTP_CONNECTIONS

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
        advice: Mapping[str, str] | None = None,
        first_answer: Mapping[str, str] | None = None,
        retry: RetryPolicy | None = None,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(repository, retry, clock)
        # privacy.advice: per language, the text replacing the advice mail's default one.
        self.advice = dict(advice or {})
        # mail.first_answer: per language, the acknowledgement's sentence about when a first
        # answer can be expected (the catalogs' FIRST_ANSWER otherwise).
        self.first_answer = dict(first_answer or {})
        self.service = service
        self.smtp = smtp
        self.renderer = renderer
        self.from_address = from_address
        self.from_name = from_name
        self.loop_marker = loop_marker
        # Open connections no lane is using; a lane takes one for each mail and gives it
        # back, so there are never more than `concurrency` of them.
        self._idle: list[aiosmtplib.SMTP] = []
        self._idle_close: asyncio.TimerHandle | None = None
        self._closing: asyncio.Task | None = None  # idle connections being closed
        # On PostgreSQL, the process a burst is handed to (exobot.mail.send_helper).
        self.helper: SendHelper | None = None

    def build(self, payload: dict) -> EmailMessage:
        """The message for an outbox payload (rendered from its template)."""
        if payload["template"] == "too_big":
            return self._build_notice(payload)
        language = payload.get("language") or "ca"
        subject = member_subject(payload)
        text = payload.get("text") or ""
        if payload.get("resolved"):
            note = say(language, RESOLVED_NOTE, reference=payload["reference"])
            text = f"{text.rstrip()}\n\n{note}"
        variables = {
            "reference": payload["reference"],
            "number": payload["number"],
            # The member's subject under both names: no template (an administrator's override
            # either) can show them the volunteers' title.
            "subject": subject,
            "title": subject,
            "requestor": payload.get("requestor", ""),
            "display_name": self.from_name,
            "text": text,
            # Plain-text paragraphs plugins added to an acknowledgement (exobot.core.hooks).
            "paragraphs": list(payload.get("paragraphs") or ()),
            "advice": self.advice.get(payload.get("language") or "ca", ""),
            # The member's name when their mail gave one fit for a greeting (never a header).
            "member_name": greeting_name(payload.get("name")),
            "first_answer": self.first_answer.get(payload.get("language") or "ca")
            or say(payload.get("language") or "ca", FIRST_ANSWER),
        }
        body = self.renderer.render(payload["template"], payload.get("language"), **variables)
        # A member's mail client may have sent a malformed Message-ID: thread without it
        # rather than never sending the mail.
        in_reply_to = payload.get("in_reply_to")
        if in_reply_to and not is_threadable_id(in_reply_to):
            in_reply_to = None
        references = [r for r in payload.get("references") or [] if is_threadable_id(r)]
        cc, _unusable = usable_cc(payload)
        return build_message(
            from_address=self.from_address,
            from_name=self.from_name,
            to=payload["to"],
            cc=cc,
            subject_tag=payload["reference"],
            title=subject or say(language, NO_SUBJECT),
            body=body,
            message_id=payload["message_id"],
            in_reply_to=in_reply_to,
            references=references,
            auto_submitted=bool(payload.get("auto_submitted")),
            loop_marker=self.loop_marker,
            language=payload.get("language") or "ca",
            date=self.clock.now(),
        )

    def _build_notice(self, payload: dict) -> EmailMessage:
        """A notice about a mail that opened no ticket (too big): no reference, no tag."""
        language = payload.get("language") or "ca"
        original = payload.get("subject") or ""
        body = self.renderer.render(
            payload["template"],
            language,
            subject=header_safe(original) if original else "",
            size=format_size(payload["size"], language),
            limit=format_size(payload["limit"], language),
            display_name=self.from_name,
        )
        subject = say(
            language,
            "Message too big: {subject}",
            subject=original or say(language, NO_SUBJECT),
        )
        in_reply_to = payload.get("in_reply_to")
        if in_reply_to and not is_threadable_id(in_reply_to):
            in_reply_to = None
        return build_message(
            from_address=self.from_address,
            from_name=self.from_name,
            to=payload["to"],
            subject_tag=None,
            title=subject,
            body=body,
            message_id=payload["message_id"],
            in_reply_to=in_reply_to,
            references=[r for r in payload.get("references") or [] if is_threadable_id(r)],
            auto_submitted=True,
            loop_marker=self.loop_marker,
            language=language,
            date=self.clock.now(),
        )

    async def send(self, item: outbox.OutboxItem) -> None:
        """Build the mail from its payload and hand it to the SMTP server. A Cc address no
        mail can be written to (queued before the one address rule) is left out and noted on
        the ticket: it must never cost the requestor the mail, and a note that fails is only
        logged (the mail was delivered)."""
        with reading_payload():
            message = self.build(item.payload)
            _cc, unusable = usable_cc(item.payload)
        await self._send(message)
        if item.ticket_id is None:
            return
        # Noted here, after the server's acceptance and before the mark, not in a hook of its
        # own after the mark: the note is committed before the row says sent, so a stop in
        # between does not lose it, and its Origin key keeps a mail sent again from being
        # noted twice. From here on the mail was delivered: no error of the note may reach
        # the worker, which would take it for a failed send and send it again at every retry.
        for address, problem in unusable:
            await self._note_skipped_cc(item, item.ticket_id, address, problem)

    async def _note_skipped_cc(
        self, item: outbox.OutboxItem, ticket: int, address: str, problem: str
    ) -> None:
        """Note on `ticket` a Cc address left out of the mail; a failure is only logged."""
        try:
            await self.service.apply(
                Actor.system("mail"),
                RecordDeliveryFailure(ticket, item.id, address, problem, skipped=True),
                # Once per mail and address, however often the mail is retried.
                Origin(key=f"mail-skipped-cc:{item.id}:{address}"),
            )
        except ServiceError as refusal:
            if refusal.code != "already_handled":
                log.error(
                    "%s: could not note the skipped Cc %s on ticket %s: %s",
                    self.describe(item),
                    address,
                    ticket,
                    refusal,
                )
        except Exception:  # the database busy or away: the mail still counts as delivered
            log.exception(
                "%s delivered, but the skipped Cc %s could not be noted on ticket %s",
                self.describe(item),
                address,
                ticket,
            )

    async def run(self) -> None:
        """Deliver forever (see OutboxWorker.run); the connections are closed and the send
        helper stopped when stopped."""
        try:
            await super().run()
        finally:
            if self.helper is not None:
                await self.helper.stop()
            await self.close()

    async def close(self) -> None:
        """Close the SMTP connections kept for the next mail."""
        await self._disconnect()

    async def hand_over(self, items: list[outbox.OutboxItem]) -> int | None:
        """A burst (exobot.mail.send_helper.BURST_MAILS due within seconds) is sent by the
        send helper, a process of its own, while this worker waits for it to stop; what it
        left is delivered here as usual, and what it sent without marking is marked here."""
        if self.helper is None or not self.helper.wants(items):
            return None
        return await self.helper.run(
            on_sent=lambda _count: self.health.succeeded(), on_unmarked=self.sent_unmarked
        )

    async def end_pass(self) -> None:
        """Keep the connections for the next pass, and close them when none comes soon."""
        self._cancel_idle_close()
        if self._idle:
            self._idle_close = asyncio.get_running_loop().call_later(
                KEEP_CONNECTION_SECONDS, self._close_idle
            )

    def _close_idle(self) -> None:
        self._idle_close = None
        self._closing = asyncio.create_task(self._disconnect(), name="smtp-idle-close")

    def _cancel_idle_close(self) -> None:
        if self._idle_close is not None:
            self._idle_close.cancel()
            self._idle_close = None

    def describe(self, item: outbox.OutboxItem) -> str:
        """Mails are named with their recipient in the logs."""
        return f"mail {item.id} (ticket {item.ticket_id}) to {item.payload.get('to')}"

    async def _connection(self) -> _Client:
        """An open SMTP connection for one mail: an idle one kept from an earlier mail (of
        this pass or of one that closely preceded it), else a new one. Give it back with
        `_release`.

        Unreachable when the server could not be reached: the connection (refused, unknown
        host, timed out, lost, its TLS handshake) failed, or the server answered its
        greeting, EHLO, STARTTLS or AUTH with a 4xx (421: service not available). A 5xx
        there, a refused login, is raised as it came: counted, then given up."""
        self._cancel_idle_close()
        if self._closing is not None:  # an idle close under way: let it finish first
            closing, self._closing = self._closing, None
            await closing
        while self._idle:
            client = self._idle.pop()
            if client.is_connected:
                return client
        smtp = self.smtp
        client = _Client(
            hostname=smtp.host,
            port=smtp.port,
            use_tls=smtp.security == "ssl",
            start_tls=smtp.security == "starttls",
            timeout=smtp.timeout,
        )
        try:
            await client.connect()
            if smtp.username:
                await client.login(smtp.username, smtp.password or "")
        except BaseException as error:
            client.close()
            # A response first: aiosmtplib's answer at connect is also a ConnectionError.
            if isinstance(error, aiosmtplib.SMTPResponseException):
                if 400 <= error.code < 500:
                    raise _unreachable(error) from error
                raise
            if isinstance(error, OSError):  # refused, DNS, timeouts, lost, TLS
                raise _unreachable(error) from error
            raise
        return client

    def _release(self, client: aiosmtplib.SMTP) -> None:
        """A connection that carried its mail (or was reset after a refusal): kept for the
        next one."""
        if client.is_connected:
            self._idle.append(client)

    async def _disconnect(self) -> None:
        """Close every idle connection (when idle for a while, and when the worker stops)."""
        self._cancel_idle_close()
        clients, self._idle = self._idle, []
        for client in clients:
            await self._close(client)

    @staticmethod
    async def _close(client: aiosmtplib.SMTP) -> None:
        if client.is_connected:
            with contextlib.suppress(Exception):  # the server may have gone already
                await client.quit()

    async def _send(self, message: EmailMessage) -> None:
        """Hand `message` to the server. PermanentFailure for a 5xx refusal; Unreachable when
        the server could not be reached (`_connection`), or the connection was lost or timed
        out before DATA: the server cannot have taken the mail. Lost from DATA on, the server
        may have taken it: raised as it came, a counted attempt that sends the mail again
        (same Message-ID), as any other failure. A 4xx about the mail or a recipient is one
        too: repeated, it is given up after the last attempt."""
        client = await self._connection()
        client.reached_data = False
        try:
            errors, _response = await client.send_message(message)
        except aiosmtplib.SMTPRecipientsRefused as error:
            await self._reset(client)
            codes = [r.code for r in error.recipients]
            text = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in error.recipients)
            if all(code >= 500 for code in codes):
                raise PermanentFailure(text) from None
            raise
        except aiosmtplib.SMTPResponseException as error:
            await self._reset(client)
            if error.code >= 500:
                raise PermanentFailure(f"{error.code} {error.message}") from None
            if isinstance(error, aiosmtplib.SMTPHeloError):  # security "none": EHLO is here
                raise _unreachable(error) from error
            raise
        except asyncio.CancelledError:
            client.close()  # stopped mid-mail: drop the connection without a word
            raise
        except Exception as error:
            await self._close(client)  # a broken connection: the next mail opens a new one
            if isinstance(error, OSError) and not client.reached_data:
                raise _unreachable(error) from error
            raise
        self._release(client)
        for recipient, (code, text) in (errors or {}).items():
            log.warning(
                "recipient %s refused (%s %s); the others got the mail", recipient, code, text
            )

    async def _reset(self, client: aiosmtplib.SMTP) -> None:
        """Leave the failed transaction so the connection can carry the next mail."""
        try:
            await client.rset()
        except Exception:
            await self._close(client)
        else:
            self._release(client)

    async def failed(self, item: outbox.OutboxItem, error: str) -> None:
        """Record the failure in the ticket's history, where operators see it."""
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


def usable_cc(payload: dict) -> tuple[list[str], list[tuple[str, str]]]:
    """The Cc addresses of a queued mail that can be written to, and the others with why."""
    usable: list[str] = []
    unusable: list[tuple[str, str]] = []
    for address in payload.get("cc") or []:
        problem = address_problem(address) if isinstance(address, str) else "not text"
        if problem is None:
            usable.append(address)
        else:
            unusable.append((str(address), problem))
    return usable, unusable


def mail_sender(
    config: Config,
    repository: SqlRepository,
    service: TicketService | None,
    loop_marker: str,
    clock: Clock | None = None,
    *,
    cls: type[MailSender] | None = None,
) -> MailSender:
    """The mail worker as `config` sets it up: the App's, and the send helper's (no service:
    it leaves every mail that would change a ticket to the App's)."""
    cfg = config.mail
    smtp = cfg.smtp
    return (cls or MailSender)(
        repository,
        service,
        SmtpSettings(
            host=smtp.host,
            port=smtp.port,
            security=smtp.security,
            username=smtp.username,
            password=smtp.password.get_secret_value() if smtp.password else None,
            timeout=smtp.timeout.total_seconds(),
        ),
        TemplateRenderer(config.language, cfg.templates_dir),
        from_address=cfg.address,
        from_name=cfg.display_name,
        loop_marker=loop_marker,
        advice=config.privacy.advice,
        first_answer=cfg.first_answer,
        retry=RetryPolicy(cfg.outbox.max_attempts, cfg.outbox.retry_base, cfg.outbox.retry_max),
        clock=clock or SystemClock(),
    )
