"""Jinja2 for the pages: autoescaping everywhere, gettext in the reader's language, time helpers.

Templates call `_("English text {x}", x=…)`, `ngettext(singular, plural, n, …)` and
`pgettext(context, text)`: message ids of the "exobot" gettext domain (the i18n extension is
enabled, so `pybabel extract` finds them). Those callables read the language from the
template's own context (`lang`), so concurrent requests in different languages never mix.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from babel import Locale
from babel.numbers import format_decimal
from fastapi import Request
from fastapi.templating import Jinja2Templates
from jinja2 import pass_context
from jinja2.runtime import Context
from markupsafe import Markup, escape
from starlette.responses import HTMLResponse

from exobot import i18n
from exobot.core.languages import LANGUAGES
from exobot.core.people import imported_name
from exobot.web import words
from exobot.web.auth import context
from exobot.web.menu import menu_of
from exobot.wording import STATUS_WORDS, flag_name, format_ago

TEMPLATES = Path(__file__).parent / "templates"
LANGUAGE_COOKIE = "exobot_lang"

templates = Jinja2Templates(directory=str(TEMPLATES))
templates.env.autoescape = True  # every template, whatever its file name
templates.env.trim_blocks = True
templates.env.lstrip_blocks = True
templates.env.add_extension("jinja2.ext.i18n")


@pass_context
def _gettext(ctx: Context, msgid: str, **params: object) -> str:
    """`_()` / `gettext()` in templates: translated into the page's language, brace-filled
    (autoescaping escapes the result). A parameter that is already HTML (a macro's output,
    such as a <time>) goes in as HTML: the translated words are escaped around it."""
    if any(isinstance(value, Markup) for value in params.values()):
        words = i18n.translator(ctx.get("lang")).gettext(msgid)
        try:
            return Markup(escape(words)).format(**params)  # the other parameters escaped
        except (KeyError, IndexError, ValueError):  # a translation with a wrong placeholder
            return escape(i18n.say(ctx.get("lang"), msgid, **params))
    return i18n.say(ctx.get("lang"), msgid, **params)


@pass_context
def _ngettext(ctx: Context, singular: str, plural: str, n: int, **params: object) -> str:
    """`ngettext()` in templates; `{count}` is `n` unless given."""
    return i18n.say_plural(ctx.get("lang"), singular, plural, n, **params)


@pass_context
def _pgettext(ctx: Context, msgctxt: str, msgid: str, **params: object) -> str:
    """`pgettext()` in templates."""
    text = i18n.translator(ctx.get("lang")).pgettext(msgctxt, msgid)
    return i18n.fill(text, params)


# Decimal units, as Jinja's filesizeformat counts them (1 kB = 1000 bytes).
_SIZE_UNITS = ("kB", "MB", "GB", "TB")


def size_in(language: str, size: int | float) -> str:
    """A file's size for people in `language`: "13 bytes", "4,0 kB" (ca, es), "4.0 kB" (en)."""
    count = int(size)
    if count < 1000:
        return i18n.say_plural(language, "{count} byte", "{count} bytes", count)
    value = count / 1000
    unit = 0
    while value >= 1000 and unit < len(_SIZE_UNITS) - 1:
        value /= 1000
        unit += 1
    number = format_decimal(value, format="#,##0.0", locale=language)
    return f"{number}\u00a0{_SIZE_UNITS[unit]}"


@pass_context
def _filesize(ctx: Context, size: int | float) -> str:
    """`{{ n | filesize }}`: a size in the page's language (Jinja's filesizeformat is English)."""
    return size_in(ctx.get("lang") or i18n.language_or_default(None), size)


def language_name(code: str) -> str:
    """A language's name in itself (`català`, `español`, `English`), from CLDR."""
    return Locale.parse(code).get_display_name(code) or code


# Installed as plain globals (not through install_gettext_callables, whose "newstyle" fills
# %(name)s placeholders): the catalogs use {name}.
templates.env.globals.update(
    _=_gettext,
    gettext=_gettext,
    ngettext=_ngettext,
    pgettext=_pgettext,
    words=words,
    languages=LANGUAGES,
    language_name=language_name,
)
templates.env.filters["filesize"] = _filesize


def language(request: Request) -> str:
    """The reader's language: their choice (a cookie), else the configured one."""
    chosen = request.cookies.get(LANGUAGE_COOKIE)
    if chosen in LANGUAGES:
        return chosen
    return i18n.language_or_default(context(request).settings.language)


class Speaker:
    """What templates call as `say.ago(...)`, `say.when(...)`, …: bound to one request."""

    def __init__(self, request: Request) -> None:
        self.language = language(request)
        self.settings = context(request).settings
        self.now = context(request).now()
        self.people = context(request).people

    def t(self, msgid: str, **params: object) -> str:
        """A message id translated into the reader's language and filled."""
        return i18n.say(self.language, msgid, **params)

    def ago(self, moment: datetime | None) -> str:
        """`fa 3 h` / `hace 3 h` / `3 hr. ago` (Babel's wording)."""
        if moment is None:
            return ""
        return format_ago(self.now - moment.astimezone(UTC), self.language)

    def when(self, moment: datetime | None) -> str:
        """Local date and time in the configured time zone."""
        if moment is None:
            return ""
        return moment.astimezone(self.settings.timezone).strftime("%Y-%m-%d %H:%M")

    def iso(self, moment: datetime | None) -> str:
        """Machine-readable time for <time datetime=…>."""
        return moment.astimezone(UTC).isoformat(timespec="seconds") if moment else ""

    def status(self, status: object) -> str:
        """A status in words (as stored when it has none)."""
        value = getattr(status, "value", status)
        word = STATUS_WORDS.get(str(value))
        return self.t(word) if word is not None else str(value)

    def flag(self, code: str) -> str:
        """A flag's name ("dades sensibles"), its code when it has none."""
        return flag_name(self.language, code)

    def word(self, table: dict[str, str], value: str) -> str:
        """`value` in words from one of `exobot.web.words`' tables, or as is."""
        found = table.get(value)
        return self.t(found) if found is not None else value

    def ref(self, number: int) -> str:
        """`suport#N`."""
        return f"{self.settings.prefix}#{number}"

    def person(self, user_id: str | None) -> str:
        """A person's display name (a Matrix id's; an imported helpdesk's unmapped staff as
        "nuria (Request Tracker)"; anything else as it is)."""
        if not user_id:
            return ""
        return imported_name(user_id) or self.people.name(user_id)


def render(request: Request, name: str, status_code: int = 200, **values: object) -> HTMLResponse:
    """Render a page; every template gets `request`, `say` (a Speaker), `lang`, `settings`
    and `menu` (the plugins' entries of the main menu, in the reader's language)."""
    say = Speaker(request)
    menu = menu_of(request.app).links(say.language, request.url.path)
    response = templates.TemplateResponse(
        request,
        name,
        {"say": say, "lang": say.language, "settings": say.settings, "menu": menu, **values},
        status_code=status_code,
    )
    response.headers["cache-control"] = "no-store"
    return response
