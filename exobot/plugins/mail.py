"""A plugin's mail templates: per-language plain-text files `<lang>/<what>.txt.j2` in its
`templates` folder, rendered like the core's (no HTML escaping, a missing variable fails)."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING

from jinja2 import Environment, FileSystemLoader, StrictUndefined, TemplateNotFound

from exobot.i18n import language_or_default

if TYPE_CHECKING:
    from exobot.plugins.context import PluginContext


@functools.cache
def _environment(folder: str) -> Environment:
    return Environment(
        loader=FileSystemLoader(folder),
        autoescape=False,  # text/plain: escaping would only corrupt "<", "&" and quotes
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_mail(ctx: PluginContext, what: str, language: str, **values: object) -> str:
    """Render `<language>/<what>.txt.j2` of the plugin (falling back to exobot's language)."""
    folder = type(ctx._run.plugin).templates
    if folder is None:
        raise LookupError(f"the plugin {ctx.name} has no templates folder")
    env = _environment(str(Path(folder)))
    wanted = language_or_default(language)
    for lang in dict.fromkeys([wanted, language_or_default(ctx.settings.language)]):
        try:
            template = env.get_template(f"{lang}/{what}.txt.j2")
        except TemplateNotFound:
            continue
        return template.render(**values).rstrip() + "\n"
    raise LookupError(f"the plugin {ctx.name} has no mail template {what!r} in {wanted}")
