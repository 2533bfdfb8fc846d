"""`PluginContext`: what a plugin gets at start, and the one way it registers anything.

Every registration made through a context is recorded with its remover, so whatever a plugin
registered is removed when it stops or is disabled, whatever its own `stop()` does.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Coroutine
from contextlib import AbstractAsyncContextManager
from datetime import timedelta, tzinfo
from typing import TYPE_CHECKING, Any, TypeVar

from exobot import i18n
from exobot.core.actions import ActionSpec
from exobot.plugins.base import PluginConfig, domain_of

if TYPE_CHECKING:
    from fastapi import APIRouter, Request
    from starlette.responses import HTMLResponse

    from exobot.core.clock import Clock
    from exobot.core.service import ServiceSettings, TicketService
    from exobot.plugins.manager import Host, PluginManager, _Run

Remover = Callable[[], None]
R = TypeVar("R")

# The largest image a plugin may post (its base64 travels in an outbox row).
MAX_IMAGE_BYTES = 2 * 1024 * 1024


class PluginContext:
    """A plugin's view of exobot: its settings, logger, clock, the ticket service, the
    database, its messages, and the registration methods (see the README's plugin section)."""

    def __init__(self, manager: PluginManager, run: _Run, config: PluginConfig, host: Host) -> None:
        self.name: str = run.name
        self.domain: str = domain_of(run.name)
        self.config = config
        self.log = logging.getLogger(f"exobot.plugins.{run.name}")
        self.clock: Clock = host.clock
        self.service: TicketService = host.service
        self.settings: ServiceSettings = host.service.settings
        #: The configured time zone (`alerts.timezone`): local times shown to people, graphs.
        self.timezone: tzinfo = host.timezone
        self._host = host
        self._manager = manager
        self._run = run
        self._removers: list[Remover] = []
        # A plugin without catalogs speaks through the core's (its own words then show as
        # written, and count as missing translations).
        has_catalogs = type(run.plugin).locale is not None
        self.words_domain = self.domain if has_catalogs else i18n.CORE_DOMAIN

    # --- reading and writing ------------------------------------------------------------

    def reading(self) -> AbstractAsyncContextManager[Any]:
        """The repository's read view in one read-only transaction (get_ticket, entries, …)."""
        return self._host.repository.reading()

    def connection(self) -> AbstractAsyncContextManager[Any]:
        """An SQLAlchemy AsyncConnection in a write transaction, for the plugin's own tables."""
        return self._host.repository.connection()

    async def read(self, work: Callable[[Any], Awaitable[R]]) -> R:
        """`await work(view)` on the repository's read view in one read-only transaction, run
        on the repository's own thread: cheaper than `reading()` on hot paths (one hand-off,
        not several per statement); `work` must only await the view's queries."""
        return await self._host.repository.read(work)

    # --- chat ----------------------------------------------------------------------------

    async def post_to_thread(
        self,
        ticket: int,
        body: str,
        *,
        image: bytes | None = None,
        filename: str = "image.png",
        mimetype: str = "image/png",
        width: int | None = None,
        height: int | None = None,
        key: str | None = None,
    ) -> bool:
        """Post plain text (escaped, pinging nobody) and/or an image into the ticket's chat
        thread, exactly once, through the outbox (queued in its own transaction; the text is
        the image's caption). Nothing is queued when exobot has no chat. With a `key` (one
        the plugin derives from what the post is about, prefixed with its name), a post whose
        key was queued before is not queued again: a plugin that records its own state after
        posting posts again after a crash in between, once. False when it was not queued for
        that reason. ValueError: no such ticket, nothing to post, or an image over
        MAX_IMAGE_BYTES."""
        if image is not None and len(image) > MAX_IMAGE_BYTES:
            raise ValueError(f"image of {len(image)} bytes; at most {MAX_IMAGE_BYTES}")
        if image is None and not body.strip():
            raise ValueError("nothing to post: no text and no image")
        payload: dict[str, Any] = {"type": "thread_post", "body": body}
        if image is not None:
            payload["image"] = {
                "data": base64.b64encode(image).decode("ascii"),
                "filename": filename,
                "mimetype": mimetype,
                "width": width,
                "height": height,
            }
        return await self._queue_chat(ticket, payload, key)

    async def post_to_room(self, queue: str | None, body: str, *, key: str | None = None) -> bool:
        """Post a plain-text note (escaped, pinging nobody) in one queue's room (None: the
        default queue's), exactly once, through the outbox; nothing when exobot has no chat.
        `key` and the result as for post_to_thread. ValueError: an unknown queue or an empty
        body."""
        if queue is not None and queue not in self.settings.queues:
            raise ValueError(f"unknown queue {queue!r}")
        if not body.strip():
            raise ValueError("nothing to post")
        return await self._queue_chat(
            None, {"type": "room_post", "queue": queue, "body": body}, key
        )

    async def _queue_chat(
        self, ticket: int | None, payload: dict[str, Any], key: str | None
    ) -> bool:
        from exobot.core.events import OutboxQueued
        from exobot.core.service import CHAT

        async def work(uow: Any) -> bool:
            if ticket is not None and await uow.get_ticket(ticket) is None:
                raise ValueError(f"no ticket {ticket}")
            if key is not None and not await uow.claim(key):
                return False  # queued before: a retry after a crash
            if self._host.announce:
                await uow.queue_outbox(CHAT, ticket, payload)
            return True

        queued = await self._host.repository.run(work, now=self.clock.now())
        if queued and self._host.announce:
            await self._host.events.emit(OutboxQueued(CHAT))
        return queued

    # --- words --------------------------------------------------------------------------

    def say(self, language: str, msgid: str, **params: object) -> str:
        """`msgid` in the plugin's domain (falling back to the core's), filled with params."""
        return i18n.say(language, msgid, domain=self.words_domain, **params)

    def translator(self, language: str) -> i18n.Translator:
        """gettext/ngettext/pgettext of the plugin's domain in `language`."""
        return i18n.translator(language, self.words_domain)

    # --- registrations ------------------------------------------------------------------

    def _keep(self, remover: Remover) -> None:
        self._removers.append(remover)

    def remove_all(self) -> list[BaseException]:
        """Undo every registration, newest first; returns what failed to be undone."""
        errors: list[BaseException] = []
        while self._removers:
            remover = self._removers.pop()
            try:
                remover()
            except Exception as error:  # keep removing the rest
                errors.append(error)
        return errors

    def add_action(self, spec: ActionSpec) -> None:
        """Register an action (chat, `!help`, web forms and API are generated from it)."""
        arguments = tuple(
            dataclasses.replace(
                argument,
                suggest=self._manager.wrap_suggest(
                    self._run, argument.suggest, f"suggestions for {spec.name} {argument.name}"
                ),
            )
            if argument.suggest is not None
            else argument
            for argument in spec.arguments
        )
        spec = dataclasses.replace(
            spec,
            domain=self.domain,
            owner=self.name,
            arguments=arguments,
            handler=self._manager.wrap_handler(self._run, spec.handler) if spec.handler else None,
        )
        self._keep(self._host.actions.register(spec))

    def on(self, event_type: type, handler: Callable[[Any], Awaitable[None] | None]) -> None:
        """Call `handler(event)` for each domain event of `event_type` (after its commit)."""
        wrapped = self._manager.wrap_event_handler(self._run, handler)
        self._keep(self._host.events.subscribe(event_type, wrapped))

    def on_new_mail(self, hook: Callable[[Any], Awaitable[None]]) -> None:
        """Run `hook(new)` inside each new mail's transaction (new ticket or mail appended).
        It runs in exobot's database thread: use `new.execute(...)` for the plugin's tables,
        not `connection()`."""
        self._keep(self._manager.add_contribution("mail", self._run, hook))

    def add_root_lines(self, fn: Callable[..., Awaitable[list[str]]]) -> None:
        """`await fn(ticket, language)` → plain lines added to a ticket's root message."""
        self._keep(self._manager.add_contribution("root", self._run, fn))

    def add_panel(self, fn: Callable[..., Awaitable[Any]]) -> None:
        """`await fn(ticket, language)` → a Panel (or None) on the ticket page."""
        self._keep(self._manager.add_contribution("panel", self._run, fn))

    def add_digest_lines(
        self, fn: Callable[..., Awaitable[list[str]]], *, queue: str | None = None
    ) -> None:
        """`await fn(language)` → plain lines added to the daily digest: in every queue room's
        digest, or with `queue` only in that queue's room's (nowhere when it has no room).
        ValueError for an unknown queue."""
        if queue is not None and queue not in self.settings.queues:
            raise ValueError(f"unknown queue {queue!r}")
        self._keep(self._manager.add_contribution("digest", self._run, QueueLines(fn, queue)))

    def schedule(self, fn: Callable[[], Awaitable[object]], *, every: timedelta, name: str) -> None:
        """Run `await fn()` every `every` (first after one interval); failures are isolated."""
        scheduler = self._host.scheduler
        if scheduler is None:
            self.log.debug("no scheduler in this process: job %s not scheduled", name)
            return
        wrapped = self._manager.wrap_job(self._run, fn, name)
        self._keep(scheduler.add_job(wrapped, every, f"plugin:{self.name}:{name}"))

    def start_task(self, work: Coroutine[Any, Any, R], *, name: str) -> asyncio.Task[R]:
        """Run `work` as a task that belongs to the scheduled jobs: a job's work that it does
        not wait for (the connectivity plugin's probing rounds). When this instance stops
        leading, it is cancelled with the jobs under way, so it never finishes beside the new
        leader's. Start such work from a job only."""
        scheduler = self._host.scheduler
        if scheduler is None:
            return asyncio.create_task(work, name=name)
        return scheduler.start_task(work, name=f"plugin:{self.name}:{name}")

    def web_router(self, router: APIRouter) -> None:
        """Mount `router` under /plugins/NAME/ on the web server."""
        app = self._host.web_app
        if app is not None:
            self._keep(_include(app, router, f"/plugins/{self.name}"))

    def add_menu_entry(self, label: str, path: str = "/") -> None:
        """Add an entry to the web's main menu: `label` is a message id of the plugin's domain
        (N_("Saved replies"), translated for each reader), `path` one of the plugin's pages,
        under /plugins/NAME ("/" is its first page). Nothing without a web server."""
        app = self._host.web_app
        if app is None:
            return
        if not path.startswith("/"):
            raise ValueError(f"a menu entry's path starts with /, not {path!r}")
        from exobot.web.menu import MenuEntry, menu_of

        entry = MenuEntry(label, f"/plugins/{self.name}{path}", self.words_domain)
        self._keep(menu_of(app).add(entry))

    def api_router(self, router: APIRouter) -> None:
        """Mount `router` under /api/v1/plugins/NAME/ (bearer auth: exobot.web.deps.ApiOperator)."""
        app = self._host.web_app
        if app is None:
            return
        from starlette.routing import Mount

        api = next(
            (r.app for r in app.routes if isinstance(r, Mount) and r.path == "/api/v1"), None
        )
        if api is None:
            raise RuntimeError("the web application has no API mounted at /api/v1")
        self._keep(_include(api, router, f"/plugins/{self.name}"))

    def render_page(
        self, request: Request, template: str, status_code: int = 200, **values: object
    ) -> HTMLResponse:
        """Render the plugin's `template` (from its templates folder) in the core layout,
        with `_`/`gettext`/`ngettext` bound to the plugin's domain."""
        from exobot.plugins.web import render_plugin_page

        return render_plugin_page(self, request, template, status_code, **values)

    def render_mail(self, what: str, language: str, **values: object) -> str:
        """The plugin's mail template `<language>/<what>.txt.j2` (from its `templates` folder)
        rendered as plain text, e.g. the text of a `Reply` intent; the default language's file
        when the ticket's language has none."""
        from exobot.plugins.mail import render_mail

        return render_mail(self, what, language, **values)

    def add_data_handlers(
        self,
        *,
        export: Callable[..., Awaitable[dict]] | None = None,
        erase: Callable[..., Awaitable[int]] | None = None,
        backup: Callable[[], Awaitable[dict]] | None = None,
        related: Callable[[str], Awaitable[set[str]]] | None = None,
    ) -> None:
        """Handlers of the plugin's own data about a person or a ticket (DataSubject); `related`
        answers the other addresses the plugin knows for the same person (`exobot privacy`)."""
        kinds = (("export", export), ("erase", erase), ("backup", backup), ("related", related))
        for kind, fn in kinds:
            if fn is not None:
                self._keep(self._manager.add_contribution(kind, self._run, fn))


@dataclasses.dataclass(frozen=True)
class QueueLines:
    """A plugin's digest lines, for one queue's room (`queue`) or for every room (None)."""

    fn: Callable[..., Awaitable[list[str]]]
    queue: str | None = None

    def __call__(self, *args: Any) -> Awaitable[list[str]]:
        return self.fn(*args)


def _include(app: Any, router: APIRouter, prefix: str) -> Remover:
    """Add a router's routes to a FastAPI app under `prefix`; returns what removes them."""
    before = list(app.router.routes)
    app.include_router(router, prefix=prefix)
    added = [route for route in app.router.routes if route not in before]
    app.openapi_schema = None  # the schema is built again with (or without) them

    def remove() -> None:
        for route in added:
            if route in app.router.routes:
                app.router.routes.remove(route)
        app.openapi_schema = None

    return remove
