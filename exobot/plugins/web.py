"""A plugin's pages: its templates folder joins the core's Jinja2 loader under
`plugins/NAME/`, and its pages render in the core layout with its own gettext domain."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jinja2 import ChoiceLoader, FileSystemLoader, PrefixLoader

if TYPE_CHECKING:
    from fastapi import Request
    from starlette.responses import HTMLResponse

    from exobot.plugins.context import PluginContext

# Plugin name → its templates' loader; the core environment's loader reads this mapping.
_LOADERS: dict[str, FileSystemLoader] = {}
_PREFIX = PrefixLoader(_LOADERS, delimiter="/")


def _environment() -> Any:
    from exobot.web.templating import templates

    return templates.env


def _install() -> None:
    """Make the core's page environment look in the plugins' folders too (once)."""
    env = _environment()
    loader = env.loader
    if isinstance(loader, ChoiceLoader) and _PREFIX in loader.loaders:
        return
    env.loader = ChoiceLoader([loader, PrefixLoader({"plugins": _PREFIX})])


def add_templates(name: str, folder: Path) -> Any:
    """Make `plugins/NAME/<template>` name a template of the plugin's folder; returns the
    remover."""
    _install()
    _LOADERS[name] = FileSystemLoader(str(folder))
    env = _environment()

    def remove() -> None:
        _LOADERS.pop(name, None)
        env.cache.clear() if env.cache is not None else None

    return remove


def render_plugin_page(
    ctx: PluginContext, request: Request, template: str, status_code: int, **values: Any
) -> HTMLResponse:
    """Render `plugins/NAME/template` with the core's `render`, gettext bound to the plugin."""
    from exobot import i18n
    from exobot.web.templating import language, render

    lang = language(request)

    def gettext(msgid: str, **params: Any) -> str:
        return i18n.say(lang, msgid, domain=ctx.words_domain, **params)

    def ngettext(singular: str, plural: str, n: int, **params: Any) -> str:
        return i18n.say_plural(lang, singular, plural, n, domain=ctx.words_domain, **params)

    def pgettext(msgctxt: str, msgid: str, **params: Any) -> str:
        return i18n.fill(ctx.translator(lang).pgettext(msgctxt, msgid), params)

    # Like the core's `_` (brace parameters filled), in the plugin's domain.
    bound = {"_": gettext, "gettext": gettext, "ngettext": ngettext, "pgettext": pgettext}
    return render(
        request, f"plugins/{ctx.name}/{template}", status_code=status_code, **(bound | values)
    )


@dataclass(frozen=True)
class PanelPage:
    """The ticket page a panel is being drawn for: who reads it, their session's CSRF token
    (every form a panel draws must carry it as the `csrf` field, else 403), and the page's
    query parameters (e.g. what a plugin's route redirected back with)."""

    user_id: str
    csrf: str
    query: Mapping[str, str] = field(default_factory=dict)


_PANEL_PAGE: ContextVar[PanelPage | None] = ContextVar("exobot_panel_page", default=None)


def panel_page() -> PanelPage | None:
    """The page the panel being drawn is on; None outside the core's ticket page (an API
    client, a test calling the panel directly): a panel then draws no forms."""
    return _PANEL_PAGE.get()


@contextmanager
def drawing_panels(page: PanelPage) -> Iterator[None]:
    """While the core's ticket page asks the plugins for their panels (a context variable,
    so concurrent requests each see their own page)."""
    token = _PANEL_PAGE.set(page)
    try:
        yield
    finally:
        _PANEL_PAGE.reset(token)
