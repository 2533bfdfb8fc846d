"""The editing pages under /plugins/saved-replies/: the list, a form to add or edit one saved
reply (name, language, text), and its deletion.

Like the core's pages: an operator's session (else the login page), the session's CSRF token
on every form (else 403), POST-redirect-GET after a change, and a refused form shown again with
what was typed and why, in the reader's language.
"""

from __future__ import annotations

from datetime import UTC
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response

from exobot.core.languages import LANGUAGES
from exobot.web.auth import context
from exobot.web.deps import FormOperator, PageOperator
from exobot.web.templating import language as reader_language
from exobot_saved_replies import store
from exobot_saved_replies.texts import TOO_LONG, Form, read_form

if TYPE_CHECKING:
    from exobot_saved_replies import SavedReplies

BASE = "/plugins/saved-replies"
# How a language is named in the form's menu: in itself, as the core's language menu does.
LANGUAGE_NAMES = {"ca": "català", "es": "español", "en": "English"}
PREVIEW_CHARS = 160


def router(plugin: SavedReplies) -> APIRouter:
    """The plugin's pages (mounted under /plugins/saved-replies/ by the plugin context)."""
    pages = APIRouter()
    ctx = plugin.ctx

    def page(request: Request, template: str, status_code: int = 200, **values: Any) -> Response:
        return ctx.render_page(
            request,
            template,
            status_code,
            base=BASE,
            prefix=ctx.settings.prefix,
            language_choices=[(code, LANGUAGE_NAMES.get(code, code)) for code in LANGUAGES],
            **values,
        )

    def form_page(
        request: Request,
        operator: Any,
        form: Form | None,
        reply_id: int | None,
        problems: list[str] | None = None,
        status_code: int = 200,
    ) -> Response:
        return page(
            request,
            "saved_replies_form.html",
            status_code,
            operator=operator,
            form=form,
            reply_id=reply_id,
            problems=problems or [],
            max_length=ctx.config.max_length,
        )

    def explain(request: Request, form: Form) -> list[str]:
        lang = reader_language(request)
        return [
            ctx.say(lang, problem, max=ctx.config.max_length)
            if problem == TOO_LONG
            else ctx.say(lang, problem)
            for problem in form.problems
        ]

    async def submit(request: Request, operator: Any, reply_id: int | None) -> Response:
        fields = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
        form = read_form(fields, ctx.config.max_length)
        if form.problems:
            return form_page(request, operator, form, reply_id, explain(request, form), 400)
        try:
            async with ctx.connection() as conn:
                saved = await store.save(
                    conn,
                    reply_id=reply_id,
                    name=form.name,
                    language=form.language,
                    text=form.text,
                    by=operator.user_id,
                    now=ctx.clock.now(),
                )
        except store.NameTaken:
            problem = ctx.say(
                reader_language(request),
                "There already is a saved reply “{name}” in {language_name}.",
                name=form.name,
                language_name=LANGUAGE_NAMES.get(form.language, form.language),
            )
            return form_page(request, operator, form, reply_id, [problem], 409)
        if saved is None:
            return _gone(request, operator)
        return RedirectResponse(f"{BASE}/", status_code=303)

    def _gone(request: Request, operator: Any) -> Response:
        return page(request, "saved_replies_gone.html", 404, operator=operator)

    @pages.get("/")
    async def list_page(request: Request, operator: PageOperator) -> Response:
        """Every saved reply: name, language, the start of its text, who changed it and when."""
        async with ctx.connection() as conn:
            replies = await store.all_replies(conn)
        timezone = _timezone(request)
        rows = [
            {
                "reply": reply,
                "preview": _preview(reply.text),
                "changed": reply.changed_at.astimezone(timezone).strftime("%Y-%m-%d %H:%M"),
                "language_name": LANGUAGE_NAMES.get(reply.language, reply.language),
            }
            for reply in replies
        ]
        return page(request, "saved_replies_list.html", operator=operator, rows=rows)

    @pages.get("/new")
    async def new_form(request: Request, operator: PageOperator) -> Response:
        """An empty form, in the reader's language by default."""
        empty = Form("", reader_language(request), "", ())
        return form_page(request, operator, empty, None)

    @pages.post("/new")
    async def create(request: Request, operator: FormOperator) -> Response:
        """Add a saved reply."""
        return await submit(request, operator, None)

    @pages.get("/{reply_id:int}")
    async def edit_form(request: Request, reply_id: int, operator: PageOperator) -> Response:
        """The form of one saved reply."""
        async with ctx.connection() as conn:
            reply = await store.get(conn, reply_id)
        if reply is None:
            return _gone(request, operator)
        form = Form(reply.name, reply.language, reply.text, ())
        return form_page(request, operator, form, reply_id)

    @pages.post("/{reply_id:int}")
    async def update(request: Request, reply_id: int, operator: FormOperator) -> Response:
        """Save the changes to one saved reply."""
        return await submit(request, operator, reply_id)

    @pages.post("/{reply_id:int}/delete")
    async def delete(request: Request, reply_id: int, operator: FormOperator) -> Response:
        """Delete one saved reply (deleting one already gone is no error: it is gone)."""
        async with ctx.connection() as conn:
            await store.delete(conn, reply_id)
        return RedirectResponse(f"{BASE}/", status_code=303)

    return pages


def _preview(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= PREVIEW_CHARS else flat[: PREVIEW_CHARS - 1] + "…"


def _timezone(request: Request) -> Any:
    return getattr(context(request).settings, "timezone", UTC)
