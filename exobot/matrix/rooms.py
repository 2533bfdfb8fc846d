"""The queue rooms: which Matrix room serves which queue, resolved from aliases and joined."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING

import nio

from exobot.db.state import get_state, set_state
from exobot.matrix.client import MatrixClient

if TYPE_CHECKING:
    from exobot.db.repository import SqlRepository

log = logging.getLogger("exobot.matrix.rooms")

# The state key remembering an alias's last resolved room id (+ the alias).
ALIAS_KEY = "matrix.room_alias:"


class QueueRooms:
    """Queue ↔ room id. A queue configured without a room has no chat; a room that cannot be
    resolved or joined yet is retried by `ensure_joined()`. With a repository, each alias's
    last resolved room id is remembered, and used while the alias cannot be resolved."""

    def __init__(
        self, configured: Mapping[str, str | None], repository: SqlRepository | None = None
    ) -> None:
        self.configured = dict(configured)
        self.repository = repository
        self._room_of: dict[str, str] = {}
        self._stale: set[str] = set()  # queues served by a remembered id, the alias unresolved

    def room_for(self, queue: str) -> str | None:
        """The joined room of a queue, or None (no room configured, or not joined yet)."""
        return self._room_of.get(queue)

    def has_room(self, queue: str) -> bool:
        """Whether the queue is configured with a room at all."""
        return bool(self.configured.get(queue))

    def queue_of(self, room_id: str) -> str | None:
        """The queue a room serves, or None for any other room."""
        return next((q for q, r in self._room_of.items() if r == room_id), None)

    def queues_of(self, room_id: str) -> list[str]:
        """Every queue a joined room serves (queues may share a room)."""
        return [q for q, r in self._room_of.items() if r == room_id]

    def room_ids(self) -> list[str]:
        """The distinct joined queue rooms."""
        return list(dict.fromkeys(self._room_of.values()))

    def is_queue_room(self, room_id: str) -> bool:
        """Whether a room id is one of the configured queue rooms (joined or not)."""
        return room_id in self._room_of.values() or room_id in self.configured.values()

    def unjoined(self) -> list[str]:
        """The configured rooms (alias or id) not resolved and joined yet."""
        return [r for q, r in self.configured.items() if r and q not in self._room_of]

    async def ensure_joined(self, client: MatrixClient) -> bool:
        """Resolve and join every configured room not joined yet; True when all are joined
        (a queue served by a remembered id is joined, but its alias is tried again: False)."""
        complete = True
        for queue, room in self.configured.items():
            if not room or (queue in self._room_of and queue not in self._stale):
                continue
            room_id, resolved = await self._resolve(client, queue, room)
            if room_id is None:
                complete = False
                continue
            if not resolved:
                complete = False  # the alias is tried again
            elif queue in self._stale:
                log.info("the room alias %s resolves again, to %s", room, room_id)
            if room_id == self._room_of.get(queue):  # served by that id already
                if resolved:
                    self._stale.discard(queue)
                continue
            if room_id not in client.nio.rooms:
                response = await client.nio.join(room_id)
                if not isinstance(response, nio.JoinResponse):
                    log.error("cannot join %s (queue %s): %s", room, queue, response.message)
                    complete = False
                    continue
                log.info("joined %s (queue %s)", room, queue)
            self._room_of[queue] = room_id
            if resolved:
                self._stale.discard(queue)
            else:
                self._stale.add(queue)
        return complete

    async def _resolve(
        self, client: MatrixClient, queue: str, room: str
    ) -> tuple[str | None, bool]:
        """The room id of a configured room and whether it is resolved now (an alias's
        directory answer, remembered) or else remembered from an earlier resolution."""
        if room.startswith("!"):
            return room, True
        response = await client.nio.room_resolve_alias(room)
        if isinstance(response, nio.RoomResolveAliasResponse):
            await self._remember(room, response.room_id)
            return response.room_id, True
        if queue in self._stale:  # told already: keep serving the remembered id
            log.debug("the room alias %s still does not resolve: %s", room, response.message)
            return self._room_of[queue], False
        # Else the room it named last time, or a room the bot sits in that names the alias as
        # its own (a first start, its database new): the bot joins no other rooms than queue
        # rooms, and the homeserver lets a room claim only an alias that points to it.
        remembered = await self._recall(room) or next(
            (r.room_id for r in client.nio.rooms.values() if r.canonical_alias == room), None
        )
        if remembered is None:
            log.error("cannot resolve the room alias %s: %s", room, response.message)
            return None, False
        log.warning(
            "cannot resolve the room alias %s: %s; using its last known room %s",
            room,
            response.message,
            remembered,
        )
        return remembered, False

    async def _recall(self, alias: str) -> str | None:
        """The room id remembered for an alias, or None (none, or the database failing)."""
        if self.repository is None:
            return None
        try:
            async with self.repository.connection() as conn:
                return await get_state(conn, ALIAS_KEY + alias)
        except Exception as error:  # the alias stays unresolved, as without a memory
            log.warning("cannot read the remembered room of %s: %s", alias, error)
            return None

    async def _remember(self, alias: str, room_id: str) -> None:
        """Store an alias's resolved room id when it differs from the stored one."""
        if self.repository is None:
            return
        key = ALIAS_KEY + alias
        try:
            async with self.repository.connection() as conn:
                if await get_state(conn, key) != room_id:
                    await set_state(conn, key, room_id)
        except Exception as error:  # best effort: the resolution itself stands
            log.warning("cannot remember the room of %s: %s", alias, error)
