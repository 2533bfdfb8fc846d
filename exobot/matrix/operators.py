"""Who operates, shared between instances: only the leader runs the Matrix client, so only it
sees the queue rooms' members. It records the operators (user id and display name, what
`MatrixBot.room_operators()` gives) in the state table whenever its view changes, and every
instance that does not sync itself answers `is_operator`/`operators()` from that record, read
every `REFRESH_SECONDS` through the async engine (the check itself reads a dict: it never
waits on the database). A configured `matrix.operators` still wins over both.
"""

from __future__ import annotations

import asyncio
import json
import logging

from exobot.db.repository import SqlRepository
from exobot.db.state import get_state, set_state
from exobot.matrix.bot import MatrixBot

log = logging.getLogger("exobot.matrix")

STATE_KEY = "matrix.operators"
# How often an instance that does not sync reads the record: a volunteer removed from the
# queue room loses access there within this (plus the leader's next sync, which is at once).
REFRESH_SECONDS = 2.0
# A record larger than this is not believed (a queue room of thousands is not a team).
MAX_RECORD_CHARS = 1_000_000


def encode(people: dict[str, str]) -> str:
    """The record's text: [[user id, display name], …] by user id."""
    return json.dumps(sorted(people.items()), ensure_ascii=False)


def decode(text: str | None) -> dict[str, str]:
    """The operators in a record (empty for none, or for one that cannot be read)."""
    if not text or len(text) > MAX_RECORD_CHARS:
        return {}
    try:
        pairs = json.loads(text)
        return {str(user): str(name) for user, name in pairs}
    except (ValueError, TypeError):
        log.error("ignoring an unreadable record of the operators")
        return {}


class OperatorRecord:
    """The leader's publishing of the operators and every other instance's reading of them."""

    def __init__(
        self, repository: SqlRepository, bot: MatrixBot, refresh_seconds: float = REFRESH_SECONDS
    ) -> None:
        self.repository = repository
        self.bot = bot
        self.refresh_seconds = refresh_seconds
        self._published: dict[str, str] | None = None  # what this leader wrote last

    async def publish(self) -> None:
        """Leader, after a sync: write the operators when they differ from what this instance
        wrote last (one statement; nothing when unchanged). A database away is logged and the
        write tried again after the next sync."""
        if self.bot.settings.operators or not self.bot.rooms_live:
            return
        people = self.bot.room_operators()
        if people == self._published:
            return
        try:
            async with self.repository.connection() as conn:
                await set_state(conn, STATE_KEY, encode(people))
        except Exception as error:  # the sync goes on; the next one retries
            self._published = None
            log.warning("cannot record the operators: %s", error)
            return
        self._published = people
        log.info("recorded %d operators of the queue rooms", len(people))

    def forget(self) -> None:
        """This instance stopped leading: write the record again when it leads again."""
        self._published = None

    async def refresh(self) -> None:
        """Read the record into the bot (names included) unless this instance syncs itself."""
        if self.bot.settings.operators or self.bot.rooms_live:
            return
        async with self.repository.reading() as view:
            text = await get_state(view.conn, STATE_KEY)
        people = decode(text)
        for user, name in people.items():
            self.bot.names.remember(user, name)
        self.bot.shared_operators = people

    async def follow(self) -> None:
        """Refresh every `refresh_seconds`, until cancelled; a failed read keeps the last
        record (the database being away for a moment revokes nobody)."""
        while True:
            try:
                await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # tried again at the next turn
                log.warning("cannot read the record of the operators: %s", error)
            await asyncio.sleep(self.refresh_seconds)
