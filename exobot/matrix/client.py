"""The bot's Matrix connection: a session kept across restarts, and a sync loop that never dies.

matrix-nio does the protocol and the encryption; this module adds what a long-running bot
needs around it: the device, access token and sync token kept under `store_path` (no new
device per start, no backlog replayed), long-poll syncs with reconnection and backoff, key
upkeep, and events that could not be decrypted yet kept and retried instead of dropped; one
still unreadable after a while is offered to the bot, which tells its sender so (never silence).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import nio

from exobot.db.engine import database_unavailable
from exobot.delivery import PermanentFailure
from exobot.health import Component
from exobot.matrix.room_keys import ensure_room_key

log = logging.getLogger("exobot.matrix")

SESSION_FILE = "session.json"
# An event that cannot be decrypted is retried for this long before it is given up (logged).
UNDECRYPTED_KEEP_SECONDS = 24 * 3600
# A key that comes at all comes within seconds (a to-device message a sync behind its event);
# an event still unreadable this long after it was seen is offered to `on_undecryptable`, so a
# volunteer's command is answered ("send it again") instead of waiting in silence for a day.
UNDECRYPTED_NOTICE_SECONDS = 30.0
# Without new to-device messages (room keys travel so), they are retried only this often: nio
# logs a warning at every attempt whose key is missing (the soak saw one event make 2,700
# lines in 10 minutes when it was retried after every sync).
UNDECRYPTED_RETRY_SECONDS = 60.0
BACKOFF_START, BACKOFF_MAX = 1.0, 60.0
# The sync position is written (with an fsync) at most this often while only it changes: every
# post of the bot's own comes back in a sync, and a write per sync blocked the event loop tens
# of times a second in a burst. A crash loses at most this much of the position, and the events
# synced again are recognised (handled commands by their event id; see `_call`).
SESSION_SAVE_SECONDS = 2.0
# Events per room a sync brings at most. When more happened since the last sync (the bot was
# stopped, or busy through a burst), the homeserver marks the timeline "limited" and leaves
# the older ones out: those are fetched page by page (`missed_events`), never skipped.
TIMELINE_LIMIT = 50
MISSED_PAGE = 100
# A gap longer than this (a bot away for days in a busy room) is fetched up to this many of
# its newest events; the older ones are logged as not handled.
MISSED_MAX = 2000

# A homeserver's refusals that no later attempt can mend: the event or upload itself is wrong
# (over the homeserver's size limit, or not JSON it accepts). Any other refusal is retried: a
# missing right or membership, a rate limit or a server error can change.
REFUSED_FOR_GOOD = frozenset({"M_TOO_LARGE", "M_BAD_JSON", "M_NOT_JSON"})

EventHandler = Callable[[nio.MatrixRoom, nio.Event], Awaitable[None]]
# Given an event that stayed undecryptable: True once it is answered for good (it is then
# dropped, never run later); False to keep retrying it as before.
UndecryptableHandler = Callable[[nio.MatrixRoom, nio.MegolmEvent], Awaitable[bool]]
InviteHandler = Callable[[str, str | None], Awaitable[None]]


async def missed_events(
    client: nio.AsyncClient, room_id: str, start: str, since: str
) -> list[nio.Event]:
    """The events of a room between a sync position (`since`) and the start of a limited
    timeline (`start`), oldest first, decrypted where the keys are known. A failure raises
    ConnectionError, so the caller's sync is not counted and comes again from the same
    position (nothing skipped)."""
    pages: list[list[nio.Event]] = []
    fetched = 0
    token = start
    while fetched < MISSED_MAX:
        response = await client.room_messages(room_id, start=token, end=since, limit=MISSED_PAGE)
        if not isinstance(response, nio.RoomMessagesResponse):
            raise ConnectionError(f"could not fetch the missed events: {response.message}")
        pages.append(response.chunk)
        fetched += len(response.chunk)
        if not response.chunk or not response.end or response.end == token:
            break
        token = response.end
    else:
        log.error(
            "more than %d events in %s since the last sync: only the newest %d are handled",
            MISSED_MAX,
            room_id,
            fetched,
        )
    log.info("fetched %d events a limited sync left out in %s", fetched, room_id)
    return [event for page in reversed(pages) for event in reversed(page)]


class MatrixLoginError(Exception):
    """The homeserver refused the bot's credentials."""


@dataclass
class Session:
    """What lets the bot come back as the same device, where it left off."""

    homeserver: str
    user_id: str
    device_id: str
    access_token: str
    next_batch: str | None = None
    undecrypted: list[dict[str, Any]] = field(default_factory=list)  # {room_id, source, seen}


@dataclass(frozen=True)
class MatrixSettings:
    """How to reach and log in to the homeserver."""

    homeserver: str
    user_id: str
    password: str | None
    access_token: str | None
    device_name: str
    store_path: Path
    sync_timeout_ms: int = 30_000


class SessionStore:
    """The session as a JSON file under `store_path`, replaced atomically on every save."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / SESSION_FILE

    def load(self) -> Session | None:
        """The saved session, or None."""
        try:
            return Session(**json.loads(self.path.read_text()))
        except FileNotFoundError:
            return None
        except (ValueError, TypeError) as error:
            log.error("ignoring unreadable %s (%s): logging in again", self.path, error)
            return None

    def save(self, session: Session) -> None:
        """Write the session durably: a crash leaves the old or the new file, never half."""
        private_directory(self.directory)
        temporary = self.path.with_suffix(".tmp")
        # Created 0600 (it holds an access token), not made private after being written.
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            os.fchmod(handle.fileno(), 0o600)  # an older temporary file may exist
            json.dump(asdict(session), handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self.path)


def private_directory(directory: Path) -> None:
    """Create `directory` (and its parents) with the store's directory itself 0700: what nio
    keeps there (device keys, the access token) is nobody else's to read. An existing one is
    made 0700 too."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(directory, 0o700)


def private_files(directory: Path) -> None:
    """Make every file under the store 0600 and every directory 0700 (nio creates its
    database with the process umask; inside a 0700 directory nobody else could open it
    meanwhile)."""
    for path in directory.rglob("*"):
        if path.is_symlink():
            continue
        os.chmod(path, 0o700 if path.is_dir() else 0o600)


def skip_empty_room_saves(store: Any) -> None:
    """Make nio's store skip saving an empty set of newly encrypted rooms. nio saves the set
    after every sync, almost always empty: a read of the account in a transaction of its own,
    on the event loop, for every sync (each of the bot's own posts ends one). An empty set
    writes nothing, so skipping it changes nothing stored."""
    if store is None or not hasattr(store, "save_encrypted_rooms"):
        return
    save = store.save_encrypted_rooms

    def save_unless_empty(rooms: Any) -> None:
        if rooms:
            save(rooms)

    store.save_encrypted_rooms = save_unless_empty


class MatrixClient:
    """A logged-in nio client plus the sync loop that feeds the bot's handlers."""

    def __init__(self, settings: MatrixSettings) -> None:
        self.settings = settings
        self.store = SessionStore(settings.store_path)
        self.session: Session | None = None
        self.nio: nio.AsyncClient | None = None
        # Whether a sync of this connection has brought the rooms: until then the client's
        # rooms (and so who is in them) are not known, even with a restored session.
        self.synced = False
        self.on_event: EventHandler | None = None
        self.on_invite: InviteHandler | None = None
        self.on_undecryptable: UndecryptableHandler | None = None
        # Called after every completed sync (the leader records the operators then), and after
        # the first one that completes after a failed one (the homeserver is back: chat rows
        # that backed off meanwhile are made due). Neither may stop the loop.
        self.on_synced: Callable[[], Awaitable[None]] | None = None
        self.on_recovered: Callable[[], Awaitable[None]] | None = None
        # True from a failed sync to the next completed one: the homeserver is away (or
        # refuses the bot), so the chat worker gives no row up meanwhile (catchup.py).
        self.unreachable = False
        self._key_requests: set[asyncio.Task] = set()  # referenced until done
        self._saved_at: float | None = None  # monotonic time of the last session save
        self._unsaved = False  # the session changed since (its sync position)
        self._must_save = False  # ... in a way that cannot wait (undecryptable events)
        self._undecrypted_tried = time.monotonic()
        # Health: a completed sync is progress; failing to sync is work waiting. The App gives
        # it its clock.
        self.health = Component("matrix", critical=True)

    @property
    def user_id(self) -> str:
        """The bot's own Matrix id."""
        return self.settings.user_id

    async def connect(self) -> None:
        """Restore the saved session, or log in once and save it."""
        s = self.settings
        private_directory(s.store_path)
        self.synced = False
        self.nio = nio.AsyncClient(
            s.homeserver,
            s.user_id,
            store_path=str(s.store_path),
            config=nio.AsyncClientConfig(
                encryption_enabled=True,
                store_sync_tokens=False,  # ours is saved only after its events are handled
                max_limit_exceeded=5,  # nio sleeps retry_after_ms between these
                max_timeouts=2,
                request_timeout=s.sync_timeout_ms / 1000 + 30,
            ),
        )
        session = self.store.load()
        if session is not None and (
            session.user_id != s.user_id or session.homeserver != s.homeserver
        ):
            log.warning("the saved session is for another account: logging in again")
            session = None
        if session is None:
            try:
                session = await self._login()
            except MatrixLoginError:
                # exobot stops on it: its HTTP session is closed now, not left to asyncio's
                # "Unclosed client session" complaints at exit.
                await self.nio.close()
                raise
            self.store.save(session)
            log.info("logged in as %s, new device %s", session.user_id, session.device_id)
        else:
            self.nio.restore_login(session.user_id, session.device_id, session.access_token)
            log.info("restored session of %s, device %s", session.user_id, session.device_id)
        self.session = session
        self._saved_at = time.monotonic()
        skip_empty_room_saves(self.nio.store)
        private_files(s.store_path)  # nio opened (and maybe created) its store just now
        if self.nio.should_upload_keys:
            await self.nio.keys_upload()

    async def catch_up(self) -> None:
        """Sync once, so rooms and members are known, and handle what was said while the bot
        was away. The first sync of a new session skips the backlog instead: nothing said
        before the bot existed is a command for it."""
        await self._sync_once(
            timeout=0, full_state=True, skip_timeline=self.session.next_batch is None
        )

    async def _login(self) -> Session:
        s = self.settings
        if s.access_token:
            self.nio.access_token = s.access_token
            who = await self.nio.whoami()
            if not isinstance(who, nio.WhoamiResponse) or not who.device_id:
                raise MatrixLoginError(f"access_token refused for {s.user_id}: {who}")
            self.nio.restore_login(who.user_id, who.device_id, s.access_token)
            return Session(s.homeserver, who.user_id, who.device_id, s.access_token)
        response = await self.nio.login(s.password, device_name=s.device_name)
        if not isinstance(response, nio.LoginResponse):
            raise MatrixLoginError(f"login refused for {s.user_id}: {response.message}")
        return Session(s.homeserver, response.user_id, response.device_id, response.access_token)

    async def run(self) -> None:
        """Long-poll sync forever; reconnect with backoff; never let a handler stop it."""
        backoff = BACKOFF_START
        while True:
            try:
                await self._sync_once(timeout=self.settings.sync_timeout_ms)
                backoff = BACKOFF_START
                self.health.succeeded()
                self.health.waiting(False)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # network down, homeserver restarting, a bad response
                self.unreachable = True
                self.health.failed()
                self.health.waiting(True)
                log.warning("sync failed (%s); retrying in %.0f s", error, backoff)
                await asyncio.sleep(backoff * random.uniform(0.8, 1.2))
                backoff = min(backoff * 2, BACKOFF_MAX)
                continue
            if self.unreachable:
                self.unreachable = False
                log.info("sync works again")
                await self._notify(self.on_recovered)
            await self._notify(self.on_synced)

    async def _sync_once(
        self, *, timeout: int, full_state: bool = False, skip_timeline: bool = False
    ) -> None:
        client = self.nio
        limit = 0 if skip_timeline else TIMELINE_LIMIT
        sync_filter = {"room": {"timeline": {"limit": limit}}}
        sends = asyncio.ensure_future(client.send_to_device_messages())
        response = await client.sync(
            timeout=timeout,
            since=self.session.next_batch,
            full_state=full_state or None,
            sync_filter=sync_filter,
        )
        with contextlib.suppress(Exception):
            await sends
        if isinstance(response, nio.SyncError):
            raise ConnectionError(f"sync refused: {response.message}")
        self.synced = True  # nio has applied the rooms' state of the response
        await self._keep_keys()
        if not skip_timeline:
            await self._dispatch(response)
        if self._retry_due(response):
            await self._retry_undecrypted()
        first = self.session.next_batch is None
        self.session.next_batch = response.next_batch
        self._unsaved = True
        self._save_session(now=first or self._must_save)

    def _save_session(self, *, now: bool = False) -> None:
        """Write the session when `now`, or when the last write is SESSION_SAVE_SECONDS old.
        The first position is written at once: a session without one skips the backlog at
        the next start (commands said meanwhile would be lost)."""
        if not self._unsaved:
            return
        recent = self._saved_at is not None and (
            time.monotonic() - self._saved_at < SESSION_SAVE_SECONDS
        )
        if recent and not now:
            return
        self.store.save(self.session)
        self._saved_at = time.monotonic()
        self._unsaved = self._must_save = False

    async def _keep_keys(self) -> None:
        client = self.nio
        if client.should_upload_keys:
            await client.keys_upload()
        if client.should_query_keys:
            await client.keys_query()
        if client.should_claim_keys:
            await client.keys_claim(client.get_users_for_key_claiming())

    async def _dispatch(self, response: nio.SyncResponse) -> None:
        for room_id, info in response.rooms.invite.items():
            inviter = next(
                (
                    e.sender
                    for e in info.invite_state
                    if isinstance(e, nio.InviteMemberEvent) and e.state_key == self.user_id
                ),
                None,
            )
            await self._call(self.on_invite, room_id, inviter)
        for room_id, info in response.rooms.join.items():
            room = self.nio.rooms.get(room_id)
            if room is None:
                continue
            events = info.timeline.events
            if info.timeline.limited and info.timeline.prev_batch and self.session.next_batch:
                missed = await missed_events(
                    self.nio, room_id, info.timeline.prev_batch, self.session.next_batch
                )
                events = [*missed, *events]
            for event in events:
                if isinstance(event, nio.MegolmEvent):
                    self._keep_undecrypted(room_id, event)
                    continue
                await self._call(self.on_event, room, event)

    async def _notify(self, hook: Callable[[], Awaitable[None]] | None) -> None:
        """Call a hook of the sync loop; whatever it raises is logged, never ends the loop."""
        if hook is None:
            return
        try:
            await hook()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("a hook after the sync failed")

    async def _call(self, handler: Callable[..., Awaitable[None]] | None, *args: Any) -> None:
        if handler is None:
            return
        try:
            await handler(*args)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # one bad event must not stop the others, nor the sync loop
            if database_unavailable(error):
                # Not the event's fault: fail this sync before its position is saved, so the
                # same events come again once the database is back (those already handled
                # are recognised by their event id and not run twice).
                raise
            log.exception("handling a Matrix event failed")

    def _keep_undecrypted(self, room_id: str, event: nio.MegolmEvent) -> None:
        log.info("cannot decrypt %s in %s yet; requesting its key", event.event_id, room_id)
        self.session.undecrypted.append(
            {"room_id": room_id, "source": event.source, "seen": time.time()}
        )
        self._must_save = True
        task = asyncio.ensure_future(self._request_key(event))
        self._key_requests.add(task)
        task.add_done_callback(self._key_requests.discard)

    async def _request_key(self, event: nio.MegolmEvent) -> None:
        with contextlib.suppress(Exception):  # already requested, or the server is busy
            await self.nio.request_room_key(event)

    def _retry_due(self, response: nio.SyncResponse) -> bool:
        """Whether to try the undecryptable events again after this sync: when it brought
        to-device messages (a room key may be among them), else once a minute."""
        if not self.session.undecrypted:
            return False
        now = time.monotonic()
        if response.to_device_events or now - self._undecrypted_tried >= UNDECRYPTED_RETRY_SECONDS:
            self._undecrypted_tried = now
            return True
        return False

    async def _retry_undecrypted(self) -> None:
        still: list[dict[str, Any]] = []
        for item in self.session.undecrypted:
            room = self.nio.rooms.get(item["room_id"])
            event = nio.Event.parse_event(item["source"])
            decrypted = None
            encrypted = isinstance(event, nio.MegolmEvent) and room is not None
            if encrypted:
                event.room_id = item["room_id"]
                with contextlib.suppress(Exception):
                    decrypted = self.nio.decrypt_event(event)
            age = time.time() - item["seen"]
            if decrypted is not None and not isinstance(decrypted, nio.MegolmEvent):
                await self._call(self.on_event, room, decrypted)
            elif (
                encrypted
                and age >= UNDECRYPTED_NOTICE_SECONDS
                and await self._answered_unreadable(room, event)
            ):
                log.warning(
                    "gave up decrypting %s in %s after %.0f s: the bot answered it as unreadable,"
                    " and it will not run if its key comes later",
                    event.event_id,
                    room.room_id,
                    age,
                )
            elif age < UNDECRYPTED_KEEP_SECONDS:
                still.append(item)
            else:
                log.error(
                    "gave up decrypting %s in %s after a day: ask the sender to re-send",
                    item["source"].get("event_id"),
                    item["room_id"],
                )
        if len(still) != len(self.session.undecrypted):
            self._must_save = True
        self.session.undecrypted = still

    async def _answered_unreadable(self, room: nio.MatrixRoom, event: nio.MegolmEvent) -> bool:
        """Offer an event that stayed unreadable to `on_undecryptable`; whatever it raises is
        logged (the event is kept and offered again), except a database that is away."""
        if self.on_undecryptable is None:
            return False
        try:
            return await self.on_undecryptable(room, event)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            if database_unavailable(error):
                raise
            log.exception("answering the undecryptable %s failed", event.event_id)
            return False

    async def send(
        self, room_id: str, event_type: str, content: dict, tx_id: str | None = None
    ) -> nio.RoomSendResponse | nio.RoomSendError:
        """Send an event (encrypted in an encrypted room, in a room key every member's device
        has: see room_keys); `tx_id` makes a resend return the first event."""
        await ensure_room_key(self.nio, room_id)
        return await self.nio.room_send(
            room_id, event_type, content, tx_id=tx_id, ignore_unverified_devices=True
        )

    async def upload(
        self, data: bytes, mimetype: str, filename: str, *, encrypt: bool
    ) -> dict[str, Any]:
        """Put `data` in the homeserver's content repository; returns what an `m.image` (or
        `m.file`) content needs to point at it: `{"url": mxc}` in the clear, or
        `{"file": EncryptedFile}` (the mxc plus the key, iv and hash, v2) when `encrypt`, as
        an encrypted room requires (the homeserver then stores ciphertext only)."""
        response, keys = await self.nio.upload(
            lambda _limited, _timeouts: data,
            content_type=mimetype,
            filename=filename,
            encrypt=encrypt,
            filesize=len(data),  # AES-CTR: the ciphertext is as long as the data
        )
        if not isinstance(response, nio.UploadResponse):
            raise refusal("the upload", response)
        if encrypt:
            return {"file": {**keys, "url": response.content_uri}}
        return {"url": response.content_uri}

    async def close(self) -> None:
        """Close the HTTP session (the device and tokens stay saved for the next start), after
        writing the sync position if it is not written yet."""
        self.synced = False
        if self.session is not None:
            try:
                self._save_session(now=True)
            except OSError as error:  # the events since are synced again at the next start
                log.warning("could not save the Matrix session: %s", error)
        if self.nio is not None:
            await self.nio.close()


def refusal(what: str, response: nio.ErrorResponse) -> Exception:
    """The error to raise for a homeserver's refusal of `what`, naming its error code: a
    PermanentFailure (the outbox item is given up at once) when no retry can mend it
    (REFUSED_FOR_GOOD), else a ConnectionError, retried."""
    code = getattr(response, "status_code", None)
    reason = f"the homeserver refused {what}: {response.message}" + (f" ({code})" if code else "")
    return PermanentFailure(reason) if code in REFUSED_FOR_GOOD else ConnectionError(reason)
