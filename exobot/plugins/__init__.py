"""Plugins: discovery through the `exobot.plugins` entry points, the `Plugin` base class, the
`PluginContext` a plugin registers through, and the `PluginManager` that runs them.

    from exobot.plugins import Plugin, PluginConfig, PluginContext, Panel
"""

from exobot.core.hooks import Flag, NewMail
from exobot.plugins.base import DataSubject, Panel, Plugin, PluginConfig
from exobot.plugins.context import PluginContext
from exobot.plugins.discovery import installed, plugin_class, refresh
from exobot.plugins.manager import Host, PluginManager, plugin_migrations

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
    "installed",
    "plugin_class",
    "plugin_migrations",
    "refresh",
]
