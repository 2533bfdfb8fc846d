"""SMTP server for the test stack: every message is delivered to Dovecot over LMTP.

Run as its own process (it needs aiosmtpd, from the project venv):

    python -m devstack.smtp_relay --port 20025 --lmtp-port 20024 \
        [--smtps-port 20466 --tls-cert DIR/tls/server.pem --tls-key DIR/tls/server.key]

With a certificate, the plain port offers STARTTLS (never requires it) and --smtps-port
listens with implicit TLS (the "submissions" way, port 465 in real life); both deliver alike.

aiosmtpd's stock Proxy handler cannot be used: it speaks EHLO, which Dovecot's LMTP
rejects. Recipients are checked against LMTP at RCPT time, so an unknown user gets
Dovecot's own answer (550 5.1.1) exactly like from a real MTA, and a failed delivery
returns the LMTP error to the SMTP client. AUTH is optional: any credentials pass, so a
client configured with a login works as well as one without.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import smtplib
import ssl
import threading

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, Session

log = logging.getLogger("devstack.smtp_relay")

# Big enough for the 30 MB messages the tests send, with room for base64/headers.
DEFAULT_MAX_SIZE = 40 * 1024 * 1024
LMTP_TIMEOUT = 60.0
# Idle LMTP connections kept for the next check or delivery.
MAX_IDLE_LMTP = 8


def _reply(code: int, message: bytes | str) -> str:
    text = message.decode("utf-8", "replace") if isinstance(message, bytes) else message
    # Multi-line server replies arrive joined by newlines; SMTP replies here are one line.
    return f"{code} {' '.join(text.split())}"


class LmtpDelivery:
    """aiosmtpd handler: check recipients with, and deliver messages to, an LMTP server.

    LMTP connections are kept open between uses (a few idle ones, each checked with NOOP
    before it is used again): a connection per check and per message, each with its LHLO and
    QUIT and a Dovecot process behind it, held the relay to about 20 messages a second, less
    than the helpdesk sends acknowledgements in the end-to-end benchmark.
    """

    def __init__(self, lmtp_host: str, lmtp_port: int) -> None:
        self.lmtp_host = lmtp_host
        self.lmtp_port = lmtp_port
        self._idle: list[smtplib.LMTP] = []
        self._lock = threading.Lock()  # the checks and deliveries run in worker threads

    def _connect(self) -> smtplib.LMTP:
        lmtp = smtplib.LMTP(self.lmtp_host, self.lmtp_port, timeout=LMTP_TIMEOUT)
        lmtp.ehlo()  # smtplib.LMTP sends LHLO here
        return lmtp

    def _take(self) -> smtplib.LMTP:
        """An idle connection that still answers (Dovecot may have restarted or timed it
        out meanwhile), else a new one."""
        while True:
            with self._lock:
                lmtp = self._idle.pop() if self._idle else None
            if lmtp is None:
                return self._connect()
            try:
                if lmtp.noop()[0] == 250:
                    return lmtp
            except (OSError, smtplib.SMTPException):
                pass
            _close(lmtp)

    def _give_back(self, lmtp: smtplib.LMTP) -> None:
        with self._lock:
            if len(self._idle) < MAX_IDLE_LMTP:
                self._idle.append(lmtp)
                return
        _quit(lmtp)

    def _check_rcpt(self, address: str) -> tuple[int, bytes]:
        lmtp = self._take()
        try:
            lmtp.mail("")
            reply = lmtp.rcpt(address)
            lmtp.rset()
        except BaseException:
            _close(lmtp)
            raise
        self._give_back(lmtp)
        return reply

    def _deliver(self, mail_from: str, rcpts: list[str], data: bytes) -> str:
        lmtp = self._take()
        try:
            # One transaction per recipient: LMTP answers DATA once per recipient and
            # smtplib reads only one reply, so this is the way to see every result.
            for rcpt in rcpts:
                try:
                    lmtp.sendmail(mail_from, [rcpt], data)
                except smtplib.SMTPRecipientsRefused as exc:
                    code, message = exc.recipients[rcpt]
                    _quit(lmtp)
                    return _reply(code, message)
                except smtplib.SMTPResponseException as exc:
                    _quit(lmtp)
                    return _reply(exc.smtp_code, exc.smtp_error)
        except BaseException:
            _close(lmtp)
            raise
        self._give_back(lmtp)
        return "250 2.0.0 OK delivered"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options
    ) -> str:
        """Accept the recipient only when Dovecot's LMTP accepts it."""
        try:
            code, message = await asyncio.to_thread(self._check_rcpt, address)
        except (OSError, smtplib.SMTPException) as exc:
            log.warning("LMTP check of %s failed: %s", address, exc)
            return "451 4.4.1 LMTP server unavailable, try again later"
        if code >= 300:
            log.info("RCPT %s refused by LMTP: %s %s", address, code, message)
            return _reply(code, message)
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        """Deliver the message to every accepted recipient over LMTP."""
        data = envelope.original_content or envelope.content
        try:
            reply = await asyncio.to_thread(
                self._deliver, envelope.mail_from, list(envelope.rcpt_tos), data
            )
        except (OSError, smtplib.SMTPException) as exc:
            log.warning("LMTP delivery failed: %s", exc)
            return "451 4.4.1 LMTP server unavailable, try again later"
        # After STARTTLS or on the implicit-TLS port the transport is a TLS one: say which
        # version, so tests (and people) can tell from the log how a mail came in.
        ssl_object = server.transport.get_extra_info("ssl_object") if server.transport else None
        log.info(
            "DATA from %s to %s (%d bytes, %s): %s",
            envelope.mail_from,
            envelope.rcpt_tos,
            len(data),
            ssl_object.version() if ssl_object else "plain",
            reply,
        )
        return reply


def _quit(lmtp: smtplib.LMTP) -> None:
    """End a connection politely (QUIT), or at least close it."""
    try:
        lmtp.quit()
    except (OSError, smtplib.SMTPException):
        _close(lmtp)


def _close(lmtp: smtplib.LMTP) -> None:
    with contextlib.suppress(OSError):
        lmtp.close()


def _accept_any_login(*_args) -> AuthResult:
    return AuthResult(success=True)


def server_tls_context(cert: str, key: str) -> ssl.SSLContext:
    """The relay's server-side TLS context (no client certificates asked for)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


async def serve(
    host: str,
    port: int,
    lmtp_host: str,
    lmtp_port: int,
    max_size: int,
    tls_context: ssl.SSLContext | None = None,
    smtps_port: int | None = None,
) -> None:
    """Run the SMTP server until SIGTERM/SIGINT.

    With `tls_context`, `port` offers STARTTLS and `smtps_port` (if given) is an
    implicit-TLS listener in the same process.
    """
    handler = LmtpDelivery(lmtp_host, lmtp_port)

    def factory(starttls: ssl.SSLContext | None = tls_context) -> SMTP:
        return SMTP(
            handler,
            data_size_limit=max_size,
            enable_SMTPUTF8=True,
            # A fixed name: the default socket.getfqdn() can stall on machines without DNS.
            hostname="localhost",
            ident="devstack SMTP relay",
            authenticator=_accept_any_login,
            auth_required=False,
            auth_require_tls=False,
            tls_context=starttls,
            require_starttls=False,
        )

    loop = asyncio.get_running_loop()
    servers = [await loop.create_server(factory, host=host, port=port)]
    if tls_context is not None and smtps_port:
        # Already TLS from the first byte: no STARTTLS to offer inside it.
        servers.append(
            await loop.create_server(
                lambda: factory(None), host=host, port=smtps_port, ssl=tls_context
            )
        )
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info(
        "listening on %s:%d%s%s, delivering to LMTP %s:%d",
        host, port, " (STARTTLS)" if tls_context else "",
        f" and TLS on {smtps_port}" if len(servers) > 1 else "", lmtp_host, lmtp_port,
    )  # fmt: skip
    await stop.wait()
    for server in servers:
        server.close()
    for server in servers:
        await server.wait_closed()
    log.info("stopped")


def main(argv: list[str] | None = None) -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--lmtp-host", default="127.0.0.1")
    parser.add_argument("--lmtp-port", type=int, required=True)
    parser.add_argument("--max-size", type=int, default=DEFAULT_MAX_SIZE, help="bytes")
    parser.add_argument("--smtps-port", type=int, help="implicit-TLS port (needs --tls-cert)")
    parser.add_argument("--tls-cert", help="PEM certificate: enables STARTTLS")
    parser.add_argument("--tls-key", help="PEM private key of --tls-cert")
    args = parser.parse_args(argv)
    if args.smtps_port and not args.tls_cert:
        parser.error("--smtps-port needs --tls-cert")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    tls_context = server_tls_context(args.tls_cert, args.tls_key) if args.tls_cert else None
    plain = (args.host, args.port, args.lmtp_host, args.lmtp_port, args.max_size)
    asyncio.run(serve(*plain, tls_context, args.smtps_port))


if __name__ == "__main__":
    main()
