"""How people are named where a person reads about them: a Matrix id becomes a display name.

The core only knows ids (`@anna:example.org`); the channel that knows people's names (the
Matrix client sees room members' display names) gives a `People` to whatever words things
for a reader (chat, the web, the digest). Without one, ids are shown as they are.
"""

from __future__ import annotations

from typing import Protocol


class People(Protocol):
    """Names of people by their id."""

    def name(self, user_id: str) -> str:
        """The name to show for `user_id` (the id itself when no better one is known)."""
        ...


class IdOnly:
    """The People that knows no names: every id is shown as it is."""

    def name(self, user_id: str) -> str:
        """`user_id` unchanged."""
        return user_id


def localpart(user_id: str) -> str:
    """The name part of a Matrix id (`anna` of `@anna:example.org`); other ids unchanged."""
    if user_id.startswith("@") and ":" in user_id:
        return user_id[1:].partition(":")[0] or user_id
    return user_id


# Ids an import gives to the old helpdesk's staff that the owners file did not map to an
# operator ("rt:nuria"), with the helpdesk's name for readers.
IMPORTED_SYSTEMS = {"rt": "Request Tracker"}


def imported_system(source: str) -> str:
    """The name of the helpdesk an import `source` names ("rt:…" → "Request Tracker")."""
    return IMPORTED_SYSTEMS.get(source.partition(":")[0]) or source


def imported_name(user_id: str) -> str | None:
    """How to show an unmapped staff member of an imported helpdesk: "nuria (Request
    Tracker)" for "rt:nuria", so a reader sees who wrote and where; None for other ids."""
    system, sep, name = user_id.partition(":")
    label = IMPORTED_SYSTEMS.get(system) if sep else None
    if label is None or not name or user_id.startswith("@"):
        return None
    return f"{name} ({label})"
