"""`exobot NAME …`: a plugin's own command line, run with a context over the database (no
chat, no web, no scheduler)."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from exobot.config import Config
from exobot.plugins.discovery import installed, plugin_class


def add_plugin_commands(
    sub: argparse._SubParsersAction, config_default: str, func: Callable[..., int]
) -> None:
    """A subcommand per installed plugin that offers a command line, run by `func`, also
    under the plugin's free `cli_aliases`; `args.plugin` is always the plugin's name."""
    for name, entry in installed().items():
        if entry.cls is None or not entry.cls.has_cli() or name in sub.choices:
            continue
        help_text = (entry.cls.__doc__ or f"the {name} plugin").strip().splitlines()[0]
        aliases = [
            alias for alias in dict.fromkeys(entry.cls.cli_aliases) if alias not in sub.choices
        ]
        aliases = [alias for alias in aliases if alias != name]
        parser = sub.add_parser(name, aliases=aliases, help=help_text, description=help_text)
        parser.add_argument("-c", "--config", default=config_default, help="configuration file")
        parser.set_defaults(plugin=name, func=func)
        entry.cls().add_cli(parser)


async def run_plugin_cli(config: Config, name: str, args: argparse.Namespace) -> int:
    """Run `exobot NAME …` for an enabled plugin; returns the exit status."""
    from exobot.offline import offline_plugins
    from exobot.plugins.context import PluginContext
    from exobot.plugins.manager import _Run

    if name not in config.plugins:
        print(f"the plugin {name} is not enabled: add `{name}: {{}}` under `plugins:`")
        return 2
    cls = plugin_class(name)
    settings = cls.config_model.model_validate(config.plugins[name])
    async with offline_plugins(config) as manager:
        plugin = cls()
        run = _Run(name, plugin)
        run.ctx = PluginContext(manager, run, settings, manager.host)
        if cls.locale is not None:
            from exobot import i18n
            from exobot.plugins.base import domain_of

            i18n.add_domain(domain_of(name), cls.locale)
        try:
            return int(await plugin.run_cli(args, run.ctx) or 0)
        finally:
            run.ctx.remove_all()
