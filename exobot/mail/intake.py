"""IMAP intake: stores every new message of the support mailbox before anything else happens.

Only (mailbox, UIDVALIDITY, UID) names a message. A message's raw bytes and the advanced position
are committed together, so a restart neither loses nor re-reads one; when UIDVALIDITY changes the
whole mailbox is read again and de-duplication by Message-ID keeps tickets from doubling.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from aioimaplib import aioimaplib
from sqlalchemy import select

from exobot.core.clock import Clock, SystemClock
from exobot.db import inbound
from exobot.db.repository import SqlRepository
from exobot.db.tables import InboundMailRow
from exobot.health import Component

log = logging.getLogger("exobot.mail.intake")

FETCH_CHUNK = 50  # messages per UID FETCH
# Messages per size query. aioimaplib handles the lines that arrive in one read with one more
# level of recursion each: a thousand-line answer (a backlog after an outage) overflows the
# stack and drops the connection, again at every reconnection.
SIZE_CHUNK = 200
FETCH_BYTES = 64 * 1024 * 1024  # and at most about this many bytes of them
HEADER_BYTES = 64 * 1024  # of a mail too big to fetch, only this much of its header
# Reconnection attempts are cheap; a server back after a long outage (a restart, an upgrade)
# must be watched again within a minute, so the wait between them stays short.
MAX_BACKOFF_SECONDS = 30.0
_UIDVALIDITY = re.compile(rb"UIDVALIDITY (\d+)")
_FETCH_UID = re.compile(rb"UID (\d+)")
_FETCH_SIZE = re.compile(rb"RFC822\.SIZE (\d+)")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


class ImapError(Exception):
    """The server refused a command we need."""


@dataclass(frozen=True)
class ImapSettings:
    """How to reach the support mailbox."""

    host: str
    port: int
    username: str
    password: str
    security: str = "ssl"  # ssl | starttls | none
    folder: str = "INBOX"
    poll_interval: float = 60.0  # look at least this often, even when IDLE pushes nothing
    idle_timeout: float = 25 * 60.0  # renew IDLE before servers drop it (RFC 2177: 29 min)
    timeout: float = 30.0
    max_size: int = 25 * 1024 * 1024  # a bigger mail is stored as its header only
    # `privacy.mailbox_retention`: processed mail older than this is expunged from the folder
    # (None: never), looked for at most every `expunge_every` seconds.
    expunge_after: timedelta | None = None
    expunge_every: float = 3600.0

    @property
    def mailbox(self) -> str:
        """The name positions are stored under."""
        return f"{self.username}@{self.host}:{self.port}/{self.folder}"


def _ok(response: aioimaplib.Response, what: str) -> aioimaplib.Response:
    if response.result != "OK":
        detail = b" ".join(line for line in response.lines if isinstance(line, bytes))
        raise ImapError(f"{what} failed: {detail.decode(errors='replace')[:200]}")
    return response


def parse_fetch(lines: list) -> list[tuple[int, bytes]]:
    """(UID, raw bytes) pairs from a `UID FETCH (UID BODY.PEEK[])` response."""
    found: list[tuple[int, bytes]] = []
    uid: int | None = None
    literal: bytes | None = None
    for line in lines:
        if isinstance(line, bytearray | memoryview):
            literal = bytes(line)
        else:
            match = _FETCH_UID.search(line)
            if match:
                uid = int(match.group(1))
        if uid is not None and literal is not None:
            found.append((uid, literal))
            uid, literal = None, None
    return found


def parse_sizes(lines: list) -> dict[int, int]:
    """UID → RFC822.SIZE from a `UID FETCH (UID RFC822.SIZE)` response."""
    sizes: dict[int, int] = {}
    for line in lines:
        if isinstance(line, bytes):
            uid, size = _FETCH_UID.search(line), _FETCH_SIZE.search(line)
            if uid and size:
                sizes[int(uid.group(1))] = int(size.group(1))
    return sizes


def fetch_groups(
    uids: list[int], sizes: dict[int, int], max_size: int
) -> list[tuple[list[int], list[int]]]:
    """Consecutive groups of UIDs, each (mails to fetch whole, mails too big: header only),
    bounded in count and in bytes fetched. A group is stored in one transaction with the
    position, so groups must follow UID order."""
    groups: list[tuple[list[int], list[int]]] = []
    count = volume = 0
    for uid in uids:
        size = sizes.get(uid, 0)  # unknown: fetch it, as before sizes were asked
        big = size > max_size
        cost = HEADER_BYTES if big else size
        if not groups or count >= FETCH_CHUNK or (count and volume + cost > FETCH_BYTES):
            groups.append(([], []))
            count = volume = 0
        groups[-1][1 if big else 0].append(uid)
        count += 1
        volume += cost
    return groups


class ImapIntake:
    """Keeps the mailbox's new messages flowing into the database: IDLE, polling, reconnects."""

    def __init__(
        self,
        settings: ImapSettings,
        repository: SqlRepository,
        on_stored: Callable[[], None] = lambda: None,
        clock: Clock | None = None,
    ) -> None:
        self.settings = settings
        self.repository = repository
        self.on_stored = on_stored
        self.clock = clock or SystemClock()
        self.connected = asyncio.Event()
        self._expunged_at: float | None = None  # monotonic time of the last look
        # Health: watching the folder is progress; not being connected is work waiting.
        self.health = Component("imap", self.clock, critical=True)
        self.ingested = 0  # messages stored since start, for the metrics
        self._watched = False  # whether the current session got as far as storing new mail
        self._announced = False  # the server announced a message since the last fetch began

    async def run(self) -> None:
        """Run until cancelled, reconnecting with exponential backoff."""
        backoff = 1.0
        self.health.waiting(True)
        while True:
            self._watched = False
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                if self._watched:
                    # The session worked: this is a new outage, not the same one going on, so
                    # the backoff starts over (a session always ends in an error).
                    backoff = 1.0
                self.connected.clear()
                self.health.failed()
                self.health.waiting(True)
                log.warning(
                    "IMAP %s: %s; reconnecting in %.0f s", self.settings.host, error, backoff
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
            else:
                backoff = 1.0

    async def _connect(self) -> aioimaplib.IMAP4:
        s = self.settings
        if s.security == "ssl":
            client = aioimaplib.IMAP4_SSL(host=s.host, port=s.port, timeout=s.timeout)
        else:
            client = aioimaplib.IMAP4(host=s.host, port=s.port, timeout=s.timeout)
        try:
            await asyncio.wait_for(client.wait_hello_from_server(), s.timeout)
            if s.security == "starttls":
                await self._starttls(client)
            _ok(await client.login(s.username, s.password), "LOGIN")
        except BaseException:
            # Not logged in: _session never sees this client, so close its connection here
            # (else every failed attempt, e.g. a wrong password, leaves a socket open).
            if client.protocol.transport is not None:
                client.protocol.transport.abort()
            raise
        return client

    async def _starttls(self, client: aioimaplib.IMAP4) -> None:
        # aioimaplib has no STARTTLS of its own: ask, then upgrade the transport in place.
        # STARTTLS is in its command table but not among `simple_command`'s names.
        protocol = client.protocol
        command = aioimaplib.Command("STARTTLS", protocol.new_tag(), loop=protocol.loop)
        _ok(await asyncio.wait_for(protocol.execute(command), self.settings.timeout), "STARTTLS")
        loop = asyncio.get_running_loop()
        context = ssl.create_default_context()
        protocol.transport = await loop.start_tls(
            protocol.transport, protocol, context, server_hostname=self.settings.host,
            ssl_handshake_timeout=self.settings.timeout,
        )  # fmt: skip
        # Capabilities from before TLS must not be trusted (RFC 3501 6.2.1): ask again.
        # (The IMAP4 wrapper has no capability(); the protocol does.)
        await asyncio.wait_for(protocol.capability(), self.settings.timeout)

    async def _session(self) -> None:
        """One connection's life: watch the mailbox until the connection fails or is lost."""
        client = await self._connect()
        lost = asyncio.Event()
        # aioimaplib's commands wait out their whole timeout on a closed connection: a drop
        # (or the server's BYE) ends the session at once instead.
        client.protocol.conn_lost_cb = lambda _exc: lost.set()
        watch = asyncio.create_task(self._watch(client), name="imap-watch")
        lost_wait = asyncio.create_task(lost.wait())
        try:
            await asyncio.wait({watch, lost_wait}, return_when=asyncio.FIRST_COMPLETED)
            if watch.done():
                watch.result()  # raises what ended it
            raise ImapError("connection closed by the server")
        finally:
            for task in (watch, lost_wait):
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
            self.connected.clear()
            if not lost.is_set():
                with contextlib.suppress(Exception):  # the connection may be half gone
                    await asyncio.wait_for(client.logout(), 5)

    async def _watch(self, client: aioimaplib.IMAP4) -> None:
        response = _ok(await client.select(self.settings.folder), "SELECT")
        uidvalidity = self._uidvalidity(response)
        self.connected.set()
        self.health.succeeded()
        self.health.waiting(False)
        log.info("IMAP %s: watching %s", self.settings.host, self.settings.folder)
        self._note_announcements(client)
        self._announced = False
        await self.fetch_new(client, uidvalidity)
        # A working session (a database down makes the fetch fail: that outage goes on).
        self._watched = True
        await self._expunge_due(client, uidvalidity)
        use_idle = client.has_capability("IDLE")
        while True:
            if use_idle and not self._announced:
                await self._idle(client)
            elif not use_idle:
                await asyncio.sleep(self.settings.poll_interval)
            # A NOOP makes the server show messages another connection appended.
            _ok(await client.noop(), "NOOP")
            self._announced = False
            await self.fetch_new(client, uidvalidity)
            await self._expunge_due(client, uidvalidity)
            self.health.succeeded()

    def _note_announcements(self, client: aioimaplib.IMAP4) -> None:
        """Note every new-message announcement (EXISTS) the server makes. One that comes in
        the answer to a fetch's command is dropped by aioimaplib (only IDLE and NOOP collect
        them) and the server never repeats it: IDLE would then sleep on a message until the
        next poll. A noted one makes the loop fetch again instead of idling."""
        protocol = client.protocol
        untagged = getattr(protocol, "_untagged_response", None)  # aioimaplib's "* ..." handler
        if untagged is None:  # another aioimaplib: IDLE still works, such a mail waits a poll
            log.warning("IMAP: cannot watch announcements made during a fetch (aioimaplib)")
            return

        def noting(line: bytes):  # noqa: ANN202 - aioimaplib's Command
            if line.endswith(b"EXISTS"):
                self._announced = True
            return untagged(line)

        protocol._untagged_response = noting

    async def _expunge_due(self, client: aioimaplib.IMAP4, uidvalidity: int) -> None:
        if self.settings.expunge_after is None:
            return
        now = time.monotonic()
        if self._expunged_at is not None and now - self._expunged_at < self.settings.expunge_every:
            return
        self._expunged_at = now
        await self.expunge_processed(client, uidvalidity)

    async def expunge_processed(self, client: aioimaplib.IMAP4, uidvalidity: int) -> int:
        """Delete from the folder the messages older than `expunge_after` that are stored and
        processed (a final state: done, duplicate, dropped, ignored, discarded); a message
        still received or quarantined stays. Returns how many were expunged."""
        cutoff = self.clock.now() - self.settings.expunge_after
        # The server's own view bounds the list: only messages still in the folder, by their
        # internal (arrival) date; BEFORE is whole days, so up to a day more is kept.
        before = f"{cutoff.day}-{_MONTHS[cutoff.month - 1]}-{cutoff.year}"  # not the locale's
        response = _ok(await client.uid_search(f"BEFORE {before}", charset=None), "UID SEARCH")
        old = sorted(
            int(token)
            for line in response.lines[:-1]
            if isinstance(line, bytes)
            for token in line.split()
            if token.isdigit()
        )
        table = InboundMailRow.__table__
        processed: list[int] = []
        for start in range(0, len(old), SIZE_CHUNK):
            chunk = old[start : start + SIZE_CHUNK]
            async with self.repository.connection() as conn:
                rows = await conn.execute(
                    select(table.c.uid).where(
                        table.c.mailbox == self.settings.mailbox,
                        table.c.uidvalidity == uidvalidity,
                        table.c.uid.in_(chunk),
                        table.c.state.in_(inbound.FINAL_STATES),
                    )
                )
                processed += sorted(r[0] for r in rows)
        if not processed:
            return 0
        uidplus = client.has_capability("UIDPLUS")
        for start in range(0, len(processed), SIZE_CHUNK):
            uids = ",".join(map(str, processed[start : start + SIZE_CHUNK]))
            _ok(await client.uid("store", uids, "+FLAGS.SILENT", r"(\Deleted)"), "UID STORE")
            if uidplus:  # only these messages, not others a person marked deleted
                _ok(await client.uid("expunge", uids), "UID EXPUNGE")
        if not uidplus:
            _ok(await client.expunge(), "EXPUNGE")
        log.info(
            "IMAP %s: %d processed messages older than %s expunged",
            self.settings.mailbox, len(processed), self.settings.expunge_after,
        )  # fmt: skip
        return len(processed)

    @staticmethod
    def _uidvalidity(response: aioimaplib.Response) -> int:
        for line in response.lines:
            if isinstance(line, bytes):
                match = _UIDVALIDITY.search(line)
                if match:
                    return int(match.group(1))
        raise ImapError("SELECT gave no UIDVALIDITY")

    async def _idle(self, client: aioimaplib.IMAP4) -> None:
        """IDLE until the server announces a message or the poll interval passes."""
        interval = min(self.settings.poll_interval, self.settings.idle_timeout)
        # idle_start waits for the server's go-ahead, which a dead connection never sends.
        idle = await asyncio.wait_for(client.idle_start(timeout=interval), self.settings.timeout)
        try:
            while True:
                # The watchdog: a dead connection never answers, so never wait forever.
                push = await client.wait_server_push(timeout=interval + self.settings.timeout)
                if push == aioimaplib.STOP_WAIT_SERVER_PUSH:
                    return
                lines = [line for line in push if isinstance(line, bytes)]
                if any(line.endswith(b"EXISTS") for line in lines):
                    return
        finally:
            client.idle_done()
            await asyncio.wait_for(idle, self.settings.timeout)

    async def fetch_new(self, client: aioimaplib.IMAP4, uidvalidity: int) -> int:
        """Store every message above the saved position; returns how many were fetched."""
        mailbox = self.settings.mailbox
        position = await self.repository.write(lambda conn: inbound.get_position(conn, mailbox))
        last_uid = 0
        if position is not None and position.uidvalidity == uidvalidity:
            last_uid = position.last_uid
        elif position is not None:
            log.warning(
                "IMAP %s: UIDVALIDITY changed (%s → %s); reading the whole mailbox again",
                mailbox,
                position.uidvalidity,
                uidvalidity,
            )
        response = _ok(await client.uid_search(f"UID {last_uid + 1}:*"), "UID SEARCH")
        uids = sorted(
            uid
            for line in response.lines[:-1]
            if isinstance(line, bytes)
            for uid in (int(token) for token in line.split() if token.isdigit())
            if uid > last_uid  # `n:*` always includes the highest message, even below n
        )
        stored = 0
        for start in range(0, len(uids), SIZE_CHUNK):
            stored += await self._fetch_chunk(client, uidvalidity, uids[start : start + SIZE_CHUNK])
        return stored

    async def _fetch_chunk(
        self, client: aioimaplib.IMAP4, uidvalidity: int, uids: list[int]
    ) -> int:
        """Store the messages of `uids` (in UID order); returns how many were fetched."""
        mailbox = self.settings.mailbox
        # Sizes first: a mail over `max_size` is never downloaded whole.
        response = _ok(
            await client.uid("fetch", ",".join(map(str, uids)), "(UID RFC822.SIZE)"),
            "UID FETCH SIZE",
        )
        sizes = parse_sizes(response.lines)
        stored = 0
        for whole, big in fetch_groups(uids, sizes, self.settings.max_size):
            messages: list[tuple] = []
            if whole:
                response = _ok(
                    await client.uid("fetch", ",".join(map(str, whole)), "(UID BODY.PEEK[])"),
                    "UID FETCH",
                )
                messages += parse_fetch(response.lines)
            if big:
                response = _ok(
                    await client.uid(
                        "fetch",
                        ",".join(map(str, big)),
                        f"(UID BODY.PEEK[HEADER]<0.{HEADER_BYTES}>)",
                    ),
                    "UID FETCH HEADER",
                )
                for uid, header in parse_fetch(response.lines):
                    log.warning(
                        "IMAP %s: UID %s is %s bytes, over the limit of %s: header only",
                        mailbox, uid, sizes[uid], self.settings.max_size,
                    )  # fmt: skip
                    # The stored size is the real one: bigger than the bytes, it marks the row
                    # as header only.
                    messages.append((uid, header, max(sizes[uid], len(header) + 1)))
            messages.sort(key=lambda message: message[0])
            await self.repository.write(
                lambda conn, messages=messages: inbound.store_many(
                    conn, mailbox, uidvalidity, messages
                )
            )
            if messages:
                stored += len(messages)
                self.ingested += len(messages)
                self.on_stored()
        return stored
