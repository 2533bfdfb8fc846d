"""Jinja2 for the pages: autoescaping everywhere, and helpers for language and time."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from fastapi import Request
from fastapi.templating import Jinja2Templates
from starlette.responses import HTMLResponse

from exobot import messages
from exobot.matrix.render import format_duration
from exobot.web import messages as _web_messages  # noqa: F401 - registers the web's messages
from exobot.web.auth import context

TEMPLATES = Path(__file__).parent / "templates"
LANGUAGE_COOKIE = "exobot_lang"

templates = Jinja2Templates(directory=str(TEMPLATES))
templates.env.autoescape = True  # every template, whatever its file name
templates.env.trim_blocks = True
templates.env.lstrip_blocks = True


def language(request: Request) -> str:
    """The reader's language: their choice (a cookie), else the configured one."""
    chosen = request.cookies.get(LANGUAGE_COOKIE)
    if chosen in messages.LANGUAGES:
        return chosen
    return context(request).settings.language


class Speaker:
    """What templates call as `t(...)`, `ago(...)`, `when(...)`: bound to one request."""

    def __init__(self, request: Request) -> None:
        self.language = language(request)
        self.settings = context(request).settings
        self.now = context(request).now()

    def t(self, key: str, **params: object) -> str:
        """A catalog message in the reader's language."""
        return messages.say(self.language, key, **params)

    def ago(self, moment: datetime | None) -> str:
        """`fa 3 h` / `hace 3 h` / `3 h ago`."""
        if moment is None:
            return ""
        span = format_duration(self.now - moment.astimezone(UTC), self.language)
        return messages.say(self.language, "web.ago", span=span)

    def when(self, moment: datetime | None) -> str:
        """Local date and time in the configured time zone."""
        if moment is None:
            return ""
        return moment.astimezone(self.settings.timezone).strftime("%Y-%m-%d %H:%M")

    def iso(self, moment: datetime | None) -> str:
        """Machine-readable time for <time datetime=…>."""
        return moment.astimezone(UTC).isoformat(timespec="seconds") if moment else ""

    def status(self, status: object) -> str:
        """A status in words."""
        return messages.say(self.language, f"status.{status}")

    def ref(self, number: int) -> str:
        """`suport#N`."""
        return f"{self.settings.prefix}#{number}"


def render(
    request: Request, name: str, status_code: int = 200, **values: object
) -> HTMLResponse:
    """Render a page; every template gets `request`, `say` (a Speaker) and `settings`."""
    say = Speaker(request)
    response = templates.TemplateResponse(
        request,
        name,
        {"say": say, "t": say.t, "lang": say.language, "settings": say.settings, **values},
        status_code=status_code,
    )
    response.headers["cache-control"] = "no-store"
    return response
