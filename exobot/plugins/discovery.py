"""Finding installed plugins through the `exobot.plugins` entry-point group."""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from importlib.metadata import entry_points

from exobot.plugins.base import Plugin

log = logging.getLogger("exobot.plugins")

GROUP = "exobot.plugins"


@dataclass(frozen=True)
class Installed:
    """One installed plugin: its entry-point name and its class, or why it cannot be loaded."""

    name: str
    value: str  # "module:Class", as the entry point says
    cls: type[Plugin] | None = None
    error: str | None = None


@functools.cache
def installed() -> dict[str, Installed]:
    """Every plugin installed in this environment, by name (loaded once; `refresh()` forgets)."""
    found: dict[str, Installed] = {}
    for point in sorted(entry_points(group=GROUP), key=lambda p: p.name):
        if point.name in found:
            continue  # the first one on sys.path wins, as for imports
        try:
            cls = point.load()
            if not (isinstance(cls, type) and issubclass(cls, Plugin)):
                raise TypeError(f"{point.value} is not an exobot.plugins.Plugin subclass")
        except Exception as error:  # a broken plugin must not stop the others
            log.error("plugin %s (%s) cannot be loaded: %r", point.name, point.value, error)
            found[point.name] = Installed(point.name, point.value, None, f"{error!r}")
            continue
        cls.name = point.name
        found[point.name] = Installed(point.name, point.value, cls)
    return found


def refresh() -> None:
    """Forget what was found (after installing or removing a plugin; tests)."""
    installed.cache_clear()


def plugin_class(name: str) -> type[Plugin]:
    """The class of the installed plugin `name`; LookupError when it is not usable."""
    entry = installed().get(name)
    if entry is None:
        known = ", ".join(sorted(installed())) or "none"
        raise LookupError(f"plugin {name!r} is not installed (installed: {known})")
    if entry.cls is None:
        raise LookupError(f"plugin {name!r} cannot be loaded: {entry.error}")
    return entry.cls
