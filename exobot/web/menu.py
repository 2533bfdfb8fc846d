"""The main menu's extra entries: pages the plugins add (saved replies, procedures…) after the
core's own (dashboard, tickets, new ticket, quarantine), which base.html writes itself."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from exobot import i18n


@dataclass(frozen=True)
class MenuEntry:
    """One entry: its label (a message id of `domain`, translated for each reader) and the
    path it links to on this site."""

    label: str
    path: str
    domain: str = i18n.CORE_DOMAIN


@dataclass(frozen=True)
class MenuLink:
    """An entry as one page shows it: its words in the reader's language, and whether the
    page is the entry's (or under it)."""

    label: str
    path: str
    current: bool


class Menu:
    """The registered entries, in the order they were added."""

    def __init__(self) -> None:
        self._entries: list[MenuEntry] = []

    def add(self, entry: MenuEntry) -> Callable[[], None]:
        """Add an entry; returns what removes it (a plugin's stop)."""
        if not entry.path.startswith("/") or entry.path.startswith("//"):
            raise ValueError(f"a menu entry links to a path on this site, not {entry.path!r}")
        self._entries.append(entry)

        def remove() -> None:
            if entry in self._entries:
                self._entries.remove(entry)

        return remove

    def links(self, language: str, path: str) -> list[MenuLink]:
        """The entries in `language`, each marked current when `path` is its page or under it."""
        return [
            MenuLink(
                i18n.say(language, entry.label, domain=entry.domain),
                entry.path,
                _under(path, entry.path),
            )
            for entry in self._entries
        ]


def _under(path: str, page: str) -> bool:
    base = page.rstrip("/")
    return path in (page, base) or (bool(base) and path.startswith(base + "/"))


def menu_of(app: Any) -> Menu:
    """The menu of a web application (made on first use)."""
    menu = getattr(app.state, "menu", None)
    if menu is None:
        menu = app.state.menu = Menu()
    return menu
