"""pytest plugin: Matrix accounts and rooms on the session's Synapse, and a volunteer client.

    async def test_something(matrix_setup, volunteer):
        setup = matrix_setup(encrypted={"suport"})      # isolated users and rooms
        vol = await volunteer(setup)                     # logged in, syncing
        room = setup.rooms["suport"]
        mark = vol.mark(room)
        root = await vol.send(room, "!take suport#1")
        reply = await vol.wait_for(room, lambda e: thread_root_of(e) == root, after=mark)

`MatrixUser` records every timeline event of every joined room (decrypted when possible;
undecryptable ones are retried after each sync), keeping the wire form of encrypted events
in `raw_events`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import re
import time
import uuid
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from harness import DEADLINE  # every wait on Synapse uses the suite's generous deadline
from nio import (
    AsyncClient,
    AsyncClientConfig,
    JoinError,
    LoginError,
    MegolmEvent,
    RoomSendError,
    ShareGroupSessionResponse,
    SyncError,
)
from nio.exceptions import EncryptionError, LocalProtocolError

from devstack.matrix_setup import DEFAULT_QUEUES, MatrixSetup, setup_matrix
from exobot.matrix.client import missed_events
from exobot.matrix.room_keys import RoomKeyNotShared, ensure_room_key

log = logging.getLogger(__name__)
_tags = itertools.count(1)

SYNC_TIMEOUT_MS = 30_000
# A sync brings at most this many events a room; when more happened since the last one (the
# test busy through a burst of posts), the events it leaves out are fetched with /messages.
TIMELINE_LIMIT = 100


# ----------------------------------------------------------------- event helpers


def thread_root_of(source: dict) -> str | None:
    """The thread root event id of an event in a thread (m.thread relation), else None."""
    relates = (source.get("content") or {}).get("m.relates_to") or {}
    if relates.get("rel_type") == "m.thread":
        return relates.get("event_id")
    return None


def body_of(source: dict) -> str | None:
    """The `body` of a message event (None for other events)."""
    body = (source.get("content") or {}).get("body")
    return body if isinstance(body, str) else None


def sender_of(source: dict) -> str | None:
    """The user id that sent the event."""
    return source.get("sender")


def is_room_notice(source: dict) -> bool:
    """Whether the event is one of the bot's notices about the room itself (e.g. that it is
    not end-to-end encrypted), said once, apart from the ticket traffic."""
    return "org.exo.exobot.room_notice" in (source.get("content") or {})


def is_edit(source: dict) -> bool:
    """Whether the event edits another (`m.replace`): a client shows it in place of the
    original, not as a message of its own (exobot keeps its root messages current so)."""
    relates = (source.get("content") or {}).get("m.relates_to") or {}
    return relates.get("rel_type") == "m.replace"


def reply_to_of(source: dict) -> str | None:
    """The event id in `m.in_reply_to`, if any."""
    relates = (source.get("content") or {}).get("m.relates_to") or {}
    return (relates.get("m.in_reply_to") or {}).get("event_id")


# ----------------------------------------------------------------------- client


class _RecordingClient(AsyncClient):
    """AsyncClient that remembers the wire form of each encrypted timeline event, and why a
    request carrying a room key failed.

    nio replaces a decrypted MegolmEvent by the plaintext event inside its sync handling;
    this hook (nio 0.26's `_handle_timeline_event`) sees the original first.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.wire: dict[str, dict] = {}
        # Why requests that carry a room key failed (nio drops the reason): an exception or
        # the homeserver's error answer.
        self.key_share_failures: list[str] = []

    async def _send(self, response_class, *args: Any, **kwargs: Any):  # noqa: ANN001, ANN202
        if response_class is not ShareGroupSessionResponse:
            return await super()._send(response_class, *args, **kwargs)
        try:
            response = await super()._send(response_class, *args, **kwargs)
        except Exception as error:
            self.key_share_failures.append(repr(error))
            raise
        if not isinstance(response, ShareGroupSessionResponse):
            self.key_share_failures.append(repr(response))
        return response

    def _handle_timeline_event(self, event, room_id, room, encrypted_rooms):  # type: ignore[override]
        if isinstance(event, MegolmEvent):
            self.wire[event.event_id] = event.source
        return super()._handle_timeline_event(event, room_id, room, encrypted_rooms)


@dataclass
class _Entry:
    """One recorded timeline event."""

    event_id: str
    source: dict  # decrypted when possible, else the encrypted event
    raw: dict  # as sent over the wire (m.room.encrypted for encrypted events)
    pending: MegolmEvent | None = None  # set while it could not be decrypted


class MatrixUser:
    """A logged-in matrix-nio client with a background sync that records room timelines."""

    def __init__(self, client: _RecordingClient) -> None:
        self.client = client
        self.user_id: str = client.user_id
        self._timelines: dict[str, list[_Entry]] = {}
        self._by_id: dict[str, _Entry] = {}
        self._task: asyncio.Task | None = None
        self._closed = False
        self.sync_errors: list[str] = []
        self.invites: dict[str, str | None] = {}  # room id → who invited us (not joined yet)
        self.key_share_misses: list[tuple[str, list[tuple[str, str]]]] = []  # room, devices

    # Helpers also reachable from an instance.
    thread_root_of = staticmethod(thread_root_of)
    body_of = staticmethod(body_of)
    sender_of = staticmethod(sender_of)

    @classmethod
    async def login(
        cls,
        homeserver: str,
        user_id: str,
        password: str,
        store_dir: str | Path,
        device_name: str = "test-harness",
    ) -> MatrixUser:
        """Password login (a new device, E2E store under `store_dir`), initial sync, sync task."""
        store = Path(store_dir)
        store.mkdir(parents=True, exist_ok=True)
        config = AsyncClientConfig(
            encryption_enabled=True, store_sync_tokens=True, max_limit_exceeded=10
        )
        client = _RecordingClient(homeserver, user_id, store_path=str(store), config=config)
        response = await client.login(password, device_name=device_name)
        if isinstance(response, LoginError):
            await client.close()
            raise RuntimeError(f"Matrix login of {user_id} failed: {response.message}")
        user = cls(client)
        try:
            if client.should_upload_keys:
                await client.keys_upload()
            await user._sync_once(timeout=0, full_state=True)
        except BaseException:
            await client.close()
            raise
        user._task = asyncio.create_task(user._sync_loop(), name=f"matrix-sync {user_id}")
        return user

    @property
    def device_id(self) -> str:
        """This login's device id."""
        return self.client.device_id

    # --------------------------------------------------------------- syncing

    async def _sync_once(self, timeout: int = SYNC_TIMEOUT_MS, full_state: bool = False) -> None:
        since = self.client.next_batch
        response = await self.client.sync(
            timeout=timeout,
            full_state=full_state or None,
            sync_filter={"room": {"timeline": {"limit": TIMELINE_LIMIT}}},
        )
        if isinstance(response, SyncError):
            raise RuntimeError(f"sync failed: {response.message}")
        for room_id, info in response.rooms.invite.items():
            self.invites[room_id] = next(
                (
                    e.sender
                    for e in info.invite_state
                    if getattr(e, "state_key", None) == self.user_id
                    and getattr(e, "membership", None) == "invite"
                ),
                None,
            )
        for room_id, info in response.rooms.join.items():
            self.invites.pop(room_id, None)
            if info.timeline.limited and info.timeline.prev_batch and since:
                # exobot's own fetch: the same /messages paging back to the last position.
                missed = await missed_events(self.client, room_id, info.timeline.prev_batch, since)
                for event in missed:
                    self._record(room_id, event)
            for event in info.timeline.events:
                self._record(room_id, event)
        self._retry_decryption()
        await self._key_maintenance()

    async def _key_maintenance(self) -> None:
        """What sync_forever does after each sync: to-device messages and key management."""
        client = self.client
        if client.outgoing_to_device_messages:
            await client.send_to_device_messages()
        if client.should_upload_keys:
            await client.keys_upload()
        if client.should_query_keys:
            await client.keys_query()
        if client.should_claim_keys:
            await client.keys_claim(client.get_users_for_key_claiming())

    async def _sync_loop(self) -> None:
        while not self._closed:
            try:
                await self._sync_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # never die: log and go on
                self.sync_errors.append(repr(exc))
                log.exception("%s: sync failed", self.user_id)
                await asyncio.sleep(0.5)

    def _record(self, room_id: str, event: Any) -> None:
        event_id = getattr(event, "event_id", None) or event.source.get("event_id")
        if not event_id:
            return
        if event_id in self._by_id:  # re-delivered (fresh login, full_state sync)
            return
        raw = self.client.wire.pop(event_id, None) or event.source
        entry = _Entry(
            event_id=event_id,
            source=self._complete(room_id, event.source),
            raw=raw,
            pending=event if isinstance(event, MegolmEvent) else None,
        )
        self._timelines.setdefault(room_id, []).append(entry)
        self._by_id[event_id] = entry

    @staticmethod
    def _complete(room_id: str, source: dict) -> dict:
        source = dict(source)
        source.setdefault("room_id", room_id)
        return source

    def _retry_decryption(self) -> None:
        for room_id, entries in self._timelines.items():
            for entry in entries:
                if entry.pending is None:
                    continue
                try:
                    event = self.client.decrypt_event(entry.pending)
                except EncryptionError:
                    continue
                if isinstance(event, MegolmEvent) or not hasattr(event, "source"):
                    continue
                entry.source = self._complete(room_id, event.source)
                entry.pending = None

    # --------------------------------------------------------------- actions

    async def join(self, room: str, timeout: float = DEADLINE) -> str:
        """Join a room by id or alias; returns the room id once the sync knows the room."""
        response = await self.client.join(room)
        if isinstance(response, JoinError):
            raise RuntimeError(f"{self.user_id} could not join {room}: {response.message}")
        await self._wait_room(response.room_id, timeout)
        return response.room_id

    async def accept_invite(self, inviter: str, timeout: float = DEADLINE) -> str:
        """Wait for an invitation from `inviter` and join that room; returns its id."""
        deadline = time.monotonic() + timeout
        while True:
            room_id = next((r for r, who in self.invites.items() if who == inviter), None)
            if room_id is not None:
                return await self.join(room_id, timeout)
            if time.monotonic() > deadline:
                pytest.fail(f"{self.user_id}: no invitation from {inviter} within {timeout} s")
            await asyncio.sleep(0.05)

    async def _wait_room(self, room_id: str, timeout: float = DEADLINE) -> None:
        deadline = time.monotonic() + timeout
        while room_id not in self.client.rooms:
            if time.monotonic() > deadline:
                pytest.fail(f"{self.user_id}: room {room_id} never appeared in the sync")
            await asyncio.sleep(0.05)

    async def send(
        self,
        room_id: str,
        text: str,
        *,
        thread_root: str | None = None,
        reply_to: str | None = None,
        html: str | None = None,
    ) -> str:
        """Send an m.text message (in a thread, as a reply, with HTML); returns its event id.

        In a thread without `reply_to`, the fallback reply points at the thread root.
        """
        content: dict[str, Any] = {"msgtype": "m.text", "body": text}
        if html is not None:
            content["format"] = "org.matrix.custom.html"
            content["formatted_body"] = html
        if thread_root is not None:
            content["m.relates_to"] = {
                "rel_type": "m.thread",
                "event_id": thread_root,
                "is_falling_back": reply_to is None,
                "m.in_reply_to": {"event_id": reply_to or thread_root},
            }
        elif reply_to is not None:
            content["m.relates_to"] = {"m.in_reply_to": {"event_id": reply_to}}
        return await self.send_content(room_id, content)

    async def edit(self, room_id: str, event_id: str, new_text: str) -> str:
        """Replace the text of one of our messages (m.replace); returns the edit's event id."""
        content = {
            "msgtype": "m.text",
            "body": f"* {new_text}",
            "m.new_content": {"msgtype": "m.text", "body": new_text},
            "m.relates_to": {"rel_type": "m.replace", "event_id": event_id},
        }
        return await self.send_content(room_id, content)

    async def send_content(
        self, room_id: str, content: dict, message_type: str = "m.room.message"
    ) -> str:
        """Send any event content (encrypted in encrypted rooms); returns its event id."""
        await self._wait_room(room_id)
        if self.client.should_query_keys:
            # As Element does: a changed device list (a device that just appeared) is queried
            # before a room key is shared, or that device would not get the key. The sync loop
            # may have queried meanwhile ("no key query required").
            with contextlib.suppress(LocalProtocolError):
                await self.client.keys_query()
        await self._share_room_key(room_id)
        response = await self.client.room_send(
            room_id, message_type, content, ignore_unverified_devices=True
        )
        if isinstance(response, RoomSendError):
            raise RuntimeError(f"{self.user_id} could not send to {room_id}: {response.message}")
        return response.event_id

    async def _share_room_key(self, room_id: str) -> None:
        """Share a new room key before sending while a member's device missed the one in use,
        as Element does (nio marks a key shared even when a to-device request failed, and
        every message in it is then unreadable to that device): the bot's own policy, each
        miss kept in `key_share_misses`. After its last try the message goes all the same,
        as a client's would."""

        def missed(devices: list[tuple[str, str]]) -> None:
            self.key_share_misses.append((room_id, devices))

        with contextlib.suppress(RoomKeyNotShared):
            await ensure_room_key(self.client, room_id, on_miss=missed)

    # -------------------------------------------------------------- reading

    def events(self, room_id: str) -> list[dict]:
        """Every recorded event of the room in timeline order (decrypted sources)."""
        return [entry.source for entry in self._timelines.get(room_id, [])]

    def raw_events(self, room_id: str) -> list[dict]:
        """The same events as sent over the wire (encrypted ones as m.room.encrypted)."""
        return [entry.raw for entry in self._timelines.get(room_id, [])]

    def raw_event(self, event_id: str) -> dict | None:
        """The wire form of one recorded event."""
        entry = self._by_id.get(event_id)
        return entry.raw if entry else None

    def wire_type(self, event_id: str) -> str | None:
        """The type the event had on the wire (m.room.encrypted for encrypted events)."""
        raw = self.raw_event(event_id)
        return raw.get("type") if raw else None

    def undecrypted(self, room_id: str) -> list[dict]:
        """Events of the room that could not be decrypted (yet)."""
        return [e.raw for e in self._timelines.get(room_id, []) if e.pending is not None]

    def event(self, event_id: str) -> dict | None:
        """One recorded event (decrypted source) by id."""
        entry = self._by_id.get(event_id)
        return entry.source if entry else None

    def mark(self, room_id: str) -> int:
        """A position in the room's timeline: `wait_for(..., after=mark)` looks past it."""
        return len(self._timelines.get(room_id, []))

    async def wait_for(
        self,
        room_id: str,
        predicate: Callable[[dict], bool],
        timeout: float = DEADLINE,
        what: str = "a matching event",
        after: int = 0,
    ) -> dict:
        """The first event (source) after `after` satisfying `predicate`; fails the test on
        timeout, listing what was seen."""
        deadline = time.monotonic() + timeout
        while True:
            for source in self.events(room_id)[after:]:
                if predicate(source):
                    return source
            if self._task is not None and self._task.done():
                pytest.fail(f"{self.user_id}: the sync task ended while waiting for {what}")
            if time.monotonic() > deadline:
                seen = [
                    f"{sender_of(e)} {e.get('type')}: {body_of(e)!r}"
                    for e in self.events(room_id)[after:][-10:]
                ]
                pytest.fail(
                    f"{self.user_id}: timed out after {timeout} s waiting for {what} in "
                    f"{room_id}; last events seen: {seen}; sync errors: {self.sync_errors[-3:]}"
                )
            await asyncio.sleep(0.05)

    async def wait_member(self, room_id: str, user_id: str, membership: str = "join") -> dict:
        """Wait until this client's timeline shows `user_id` with `membership` in the room."""
        return await self.wait_for(
            room_id,
            lambda e: (
                e.get("type") == "m.room.member"
                and e.get("state_key") == user_id
                and (e.get("content") or {}).get("membership") == membership
            ),
            what=f"{user_id} {membership}",
        )

    async def pause(self) -> None:
        """Stop the background sync (the position stays): what a client away or busy does."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def resume(self) -> None:
        """Sync again from where `pause` left off."""
        if self._task is None and not self._closed:
            self._task = asyncio.create_task(self._sync_loop(), name=f"matrix-sync {self.user_id}")

    async def close(self) -> None:
        """Stop syncing and close the HTTP session (the device stays registered)."""
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        await self.client.close()


# --------------------------------------------------------------------- fixtures


def unique_tag() -> str:
    """A fresh suffix for user names and room aliases (lowercase, Matrix-safe)."""
    return f"-t{next(_tags)}{uuid.uuid4().hex[:6]}"


@pytest.fixture
def matrix_setup(stack):
    """Factory: an isolated MatrixSetup (own bot, volunteer and rooms) on the session stack.

    `matrix_setup(queues=("suport", "tresoreria"), encrypted=(), **setup_matrix_kwargs)`;
    skips the test when the stack runs without Synapse.
    """
    if stack.synapse_url is None:
        pytest.skip("stack started without Synapse (EXOBOT_STACK_SYNAPSE=0)")

    def make(
        *,
        queues: Sequence[str] = DEFAULT_QUEUES,
        encrypted: Collection[str] = (),
        **kwargs: Any,
    ) -> MatrixSetup:
        kwargs.setdefault("tag", unique_tag())
        return setup_matrix(stack, queues=queues, encrypted=encrypted, **kwargs)

    return make


@pytest.fixture
async def matrix_login(stack, tmp_path_factory):
    """Factory: `await matrix_login(user_id, password)` -> a syncing MatrixUser, closed at
    teardown (its store under a fresh tmp dir)."""
    if stack.synapse_url is None:
        pytest.skip("stack started without Synapse (EXOBOT_STACK_SYNAPSE=0)")
    users: list[MatrixUser] = []

    async def login(user_id: str, password: str, homeserver: str | None = None) -> MatrixUser:
        store = tmp_path_factory.mktemp("matrix-store")
        user = await MatrixUser.login(homeserver or stack.synapse_url, user_id, password, store)
        users.append(user)
        return user

    yield login
    for user in users:
        await user.close()


@pytest.fixture
async def volunteer(matrix_setup, matrix_login):
    """Factory: `await volunteer(setup=None)` -> the setup's volunteer logged in and syncing
    (a new MatrixSetup when none is given); closed at teardown."""

    async def login(setup: MatrixSetup | None = None) -> MatrixUser:
        setup = setup or matrix_setup()
        return await matrix_login(
            setup.volunteer_user_id, setup.volunteer_password, setup.homeserver
        )

    return login


_LINK = re.compile(r"https?://\S+/login/link/[A-Za-z0-9_\-]+")


async def request_login_link(user: MatrixUser, room_id: str, bot_id: str) -> tuple[str, dict]:
    """`!login` in a queue room, accept the bot's direct room, return the link it sends there
    and that message's wire event (to check it came encrypted)."""
    await user.send(room_id, "!login")
    direct = await user.accept_invite(bot_id)
    message = await user.wait_for(
        direct,
        lambda e: sender_of(e) == bot_id and bool(_LINK.search(body_of(e) or "")),
        what="the login link",
    )
    link = _LINK.search(body_of(message)).group(0)
    return link, user.raw_event(message["event_id"])
