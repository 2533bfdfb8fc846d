"""Plugins: discovery through the `exobot.plugins` entry points, the `Plugin` base class, the
`PluginContext` a plugin registers through, and the `PluginManager` that runs them.

    from exobot.plugins import Plugin, PluginConfig, PluginContext, Panel

A plugin's erase handler finds a person's address in its own tables with the core's rule:
`like_any` picks candidate rows, `address_pattern` confirms them (ann@ is not in joann@).
"""

from exobot.core.hooks import Flag, NewMail
from exobot.plugins.base import DataSubject, Panel, Plugin, PluginConfig
from exobot.plugins.context import PluginContext
from exobot.plugins.discovery import installed, plugin_class, refresh
from exobot.plugins.manager import Host, PluginManager, plugin_migrations
from exobot.privacy.concerns import address_pattern, like_any

__all__ = [
    "DataSubject",
    "Flag",
    "Host",
    "NewMail",
    "Panel",
    "Plugin",
    "PluginConfig",
    "PluginContext",
    "PluginManager",
    "address_pattern",
    "installed",
    "like_any",
    "plugin_class",
    "plugin_migrations",
    "refresh",
]
