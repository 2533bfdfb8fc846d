"""What a plugin is: a small class with `start(ctx)` and `stop()`, its settings model, and
the few values it hands back to the core (a ticket-page panel, a data subject)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from exobot.config import ConfigSection

if TYPE_CHECKING:
    from exobot.plugins.context import PluginContext


class PluginConfig(ConfigSection):
    """Base of a plugin's settings model (`plugins.NAME.*`); unknown keys are errors."""


class Plugin:
    """Base class of a plugin.

    A subclass names its settings model, and optionally its Alembic migrations folder (its own
    branch: `branch_labels=(name,)`, `down_revision=None` for its first revision), its gettext
    locale folder (domain: its name with "-" → "_") and its Jinja2 templates folder. `start`
    registers what it offers through the context; all of it is removed when it stops.
    """

    name: ClassVar[str] = ""  # the entry-point name, set at discovery
    config_model: ClassVar[type[PluginConfig]] = PluginConfig
    migrations: ClassVar[Path | None] = None
    locale: ClassVar[Path | None] = None
    templates: ClassVar[Path | None] = None
    # Extra names for `exobot NAME …` (e.g. ("members",) for `exobot members import FILE`); a
    # name already taken by exobot's own commands or another plugin is left out.
    cli_aliases: ClassVar[tuple[str, ...]] = ()

    async def start(self, ctx: PluginContext) -> None:
        """Register actions, handlers, hooks, jobs and routes through `ctx`."""

    async def stop(self) -> None:
        """Release what the plugin holds itself (what it registered is removed anyway)."""

    def add_cli(self, parser: argparse.ArgumentParser) -> None:
        """Add arguments to `exobot NAME …` (a plugin without a CLI leaves it alone)."""

    async def run_cli(self, args: argparse.Namespace, ctx: PluginContext) -> int:
        """Run `exobot NAME …`; returns the exit status."""
        print(f"{self.name}: this plugin has no command line")
        return 2

    @classmethod
    def has_cli(cls) -> bool:
        """Whether the plugin offers `exobot NAME …`."""
        return cls.add_cli is not Plugin.add_cli or cls.run_cli is not Plugin.run_cli

    @classmethod
    def domain(cls) -> str:
        """The plugin's gettext domain: its name with "-" → "_"."""
        return domain_of(cls.name)


def domain_of(name: str) -> str:
    """The gettext domain (and package-name stem) of a plugin name."""
    return name.replace("-", "_")


@dataclass(frozen=True)
class Panel:
    """A plugin's box on the ticket page: a plain-text title (escaped by the core) and HTML the
    plugin built, every untrusted piece in it escaped by the plugin (markupsafe.escape)."""

    title: str
    html: str


@dataclass(frozen=True)
class DataSubject:
    """Whose data an export or an erasure is about: a person's address, a ticket, or both."""

    address: str | None = None
    ticket: int | None = None
