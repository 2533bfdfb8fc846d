"""The queue rooms: which Matrix room serves which queue, resolved from aliases and joined."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import nio

from exobot.matrix.client import MatrixClient

log = logging.getLogger("exobot.matrix.rooms")


class QueueRooms:
    """Queue ↔ room id. A queue configured without a room has no chat; a room that cannot be
    resolved or joined yet is retried by `ensure_joined()`."""

    def __init__(self, configured: Mapping[str, str | None]) -> None:
        self.configured = dict(configured)
        self._room_of: dict[str, str] = {}

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

    async def ensure_joined(self, client: MatrixClient) -> bool:
        """Resolve and join every configured room not joined yet; True when all are joined."""
        complete = True
        for queue, room in self.configured.items():
            if not room or queue in self._room_of:
                continue
            room_id = await self._resolve(client, room)
            if room_id is None:
                complete = False
                continue
            if room_id not in client.nio.rooms:
                response = await client.nio.join(room_id)
                if not isinstance(response, nio.JoinResponse):
                    log.error("cannot join %s (queue %s): %s", room, queue, response.message)
                    complete = False
                    continue
                log.info("joined %s (queue %s)", room, queue)
            self._room_of[queue] = room_id
        return complete

    async def _resolve(self, client: MatrixClient, room: str) -> str | None:
        if room.startswith("!"):
            return room
        response = await client.nio.room_resolve_alias(room)
        if isinstance(response, nio.RoomResolveAliasResponse):
            return response.room_id
        log.error("cannot resolve the room alias %s: %s", room, response.message)
        return None
