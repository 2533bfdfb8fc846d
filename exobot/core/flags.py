"""A ticket's active flags: the plugins' marks (FLAG entries) not cleared since."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from exobot.core.model import Entry, EntryKind


@dataclass(frozen=True)
class ActiveFlag:
    """A flag still in force: its code, the note it was set with, who set it, since when."""

    code: str
    note: str
    source: str
    since: datetime


def active_flags(entries: Iterable[Entry]) -> list[ActiveFlag]:
    """The flags in force after these history entries (oldest first): each FLAG entry sets its
    code, one with `data["cleared"]` removes it. A code set again while active keeps its first
    time and takes the newer note. In the order the codes were first set."""
    active: dict[str, ActiveFlag] = {}
    for entry in entries:
        if str(entry.kind) != EntryKind.FLAG.value:
            continue
        data = entry.data or {}
        code = str(data.get("code") or "")
        if not code:
            continue
        if data.get("cleared"):
            active.pop(code, None)
            continue
        since = active[code].since if code in active else entry.created_at
        active[code] = ActiveFlag(code, entry.body or "", str(data.get("source") or ""), since)
    return list(active.values())
