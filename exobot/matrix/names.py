"""Display names of the people in the bot's rooms, for whatever words things for a reader.

The sync already brings every room member's `m.room.member` state (nio keeps it per room,
with a full state at each start), so a name is looked up there: first in the queue rooms,
then in any room the bot shares with the person. A name once seen is remembered for the
rest of the process, so a volunteer who left the rooms is still named in old tickets'
history; someone never seen is shown by the localpart of their id.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable

import nio

from exobot.core.people import localpart

# Names remembered beyond the rooms' current members (people who left); old ones go first.
REMEMBERED_NAMES = 10_000
# A display name longer than this is cut: it is shown inline in one-line messages.
NAME_CHARS = 60


class DisplayNames:
    """Matrix display names by user id (`People`): `name(user_id)` / `display_name(user_id)`.

    `rooms()` gives the nio rooms to look in, the queue rooms first; the bot's own client
    gives them (`MatrixClient.nio.rooms`), tests give plain dicts.
    """

    def __init__(self, rooms: Callable[[], Iterable[nio.MatrixRoom]]) -> None:
        self._rooms = rooms
        self._seen: OrderedDict[str, str] = OrderedDict()

    def display_name(self, user_id: str) -> str:
        """The person's display name in the rooms (the first room that gives one), else the
        last one seen, else the localpart of the id."""
        for room in self._rooms():
            user = room.users.get(user_id)
            name = _clean(user.display_name) if user is not None else ""
            if name:
                self._remember(user_id, name)
                return name
        return self._seen.get(user_id) or localpart(user_id)

    def name(self, user_id: str) -> str:
        """`People.name`: the display name of a Matrix id; any other id (an address,
        "exobot") unchanged."""
        if not user_id.startswith("@"):
            return user_id
        return self.display_name(user_id)

    def remember(self, user_id: str, name: str) -> None:
        """Know `user_id` by `name` when no room at hand names them (a follower instance
        learns names from the leader's record of the operators)."""
        cleaned = _clean(name)
        if cleaned:
            self._remember(user_id, cleaned)

    def _remember(self, user_id: str, name: str) -> None:
        self._seen[user_id] = name
        self._seen.move_to_end(user_id)
        while len(self._seen) > REMEMBERED_NAMES:
            self._seen.popitem(last=False)


def _clean(name: str | None) -> str:
    """A display name on one line, without control characters, bounded (it is someone's
    free text, shown inline)."""
    if not name:
        return ""
    text = " ".join("".join(c if c.isprintable() else " " for c in name).split())
    return text if len(text) <= NAME_CHARS else text[: NAME_CHARS - 1] + "…"
