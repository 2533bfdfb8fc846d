"""The procedures on the web: pages under /plugins/procedures/, the CSV export and the panel
on the ticket page.

- `/plugins/procedures/` lists procedures, newest first, filtered by type, state, member and
  dates (a GET form; a date that cannot be read is said, not a 500), with paging, a count and
  an "Export CSV" link carrying the same filters.
- `/plugins/procedures/P-12` (or `/12`): one procedure with its append-only history and, while
  it is pending, the forms that mark it done or cancel it.
- `/plugins/procedures/members/1234`: a member's directory entry, procedures and directory
  changes.
- `/plugins/procedures/export.csv?…`: the list as CSV for the treasury (csv_export.py).
- The ticket page's panel: the ticket's procedures with done/cancel forms for pending ones,
  and a form that creates one (POST /plugins/procedures/tickets/N/create).

Like the core's pages: an operator's session (else the login page), the session's CSRF token
on every form (else 403), POST-redirect-GET after a change; a refused form is shown again with
what was typed and why, in the reader's language (on the procedure's page, or on the ticket
page, in the panel, when it came from there). Everything typed by people (notes, members,
services) is escaped: Jinja2's autoescape in the templates.

Creating and finishing go through service.py, the same path as chat and the API.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from starlette.responses import RedirectResponse, Response

from exobot.core.languages import N_
from exobot.plugins import Panel
from exobot.plugins.web import panel_page
from exobot.web.deps import FormOperator, PageOperator
from exobot.web.pages import form_key, new_nonce
from exobot.web.templating import language as reader_language
from exobot_procedures import csv_export, service, store
from exobot_procedures.procedures import find_type, is_member_number
from exobot_procedures.service import ProcedureRefused, state_name, type_name
from exobot_procedures.store import STATES, Procedure, ProcedureFilter

if TYPE_CHECKING:
    from exobot_procedures.plugin import Procedures

__all__ = [
    "BASE",
    "Listing",
    "read_filter",
    "register",
    "register_web",
]

BASE = "/plugins/procedures"
PAGE_SIZE = 50
MAX_PAGE = 10_000  # an offset beyond this is no list anyone reads
MAX_MEMBER = 254  # a member number, or an address for a join
PANEL_LISTED = 50
MEMBER_LISTED = 200
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")

#: What the ticket page says after a panel form was applied (only these codes are read back
#: from the redirect's query string, with a procedure number: never free text).
PANEL_NOTICES = {
    "created": N_("{procedure} recorded: pending."),
    "done": N_("{procedure} is done."),
    "cancelled": N_("{procedure} is cancelled."),
}

#: What an event of the history says.
EVENT_WORDS = {
    "created": N_("created"),
    "done": N_("done"),
    "cancelled": N_("cancelled"),
    "erased": N_("personal data erased"),  # exobot privacy erase (personal.py)
}
#: What a directory change says.
CHANGE_WORDS = {
    "added": N_("added"),
    "updated": N_("updated"),
    "deactivated": N_("deactivated"),
    "reactivated": N_("reactivated"),
    "linked": N_("ticket linked"),
    "erased": N_("personal data erased"),
}


# --- the list's filters (shared with the API) --------------------------------------------------


@dataclass(frozen=True)
class Listing:
    """A list request read: the filter for store.search, the values as typed (to fill the form
    again and build links), and what could not be read, in the reader's language."""

    where: ProcedureFilter
    values: dict[str, str]
    problems: list[str] = field(default_factory=list)

    def query(self, **more: object) -> str:
        """The filters (and `more`) as a query string, empty values left out."""
        items = {k: v for k, v in (self.values | {k: str(v) for k, v in more.items()}).items() if v}
        return urlencode(items)


def _day(text: str) -> date | None:
    if not _DATE.fullmatch(text):
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


def _bound(day: date, last: bool, zone: tzinfo) -> datetime | None:
    """The start of `day` in `zone` (of the day after when `last`: the whole day is
    included), or None when that instant is beyond what a datetime holds, in the zone or
    in UTC, as it is stored (like 9999-12-31's next day)."""
    try:
        start = datetime.combine(day + timedelta(days=1) if last else day, time(), tzinfo=zone)
        start.astimezone(UTC)
    except OverflowError:
        return None
    return start


def read_filter(
    plugin: Procedures, params: Mapping[str, str], language: str, zone: tzinfo
) -> Listing:
    """Read `type`, `state`, `member`, `ticket`, `from` and `to` (YYYY-MM-DD, both days
    included, in the configured time zone). A value that cannot be read is left out of the
    filter and named in `problems`."""
    say = plugin.ctx.say
    values = {
        name: " ".join(str(params.get(name) or "").split())[:MAX_MEMBER]
        for name in ("type", "state", "member", "ticket", "from", "to")
    }
    problems: list[str] = []
    kind = None
    if values["type"]:
        kind = find_type(plugin.config, values["type"])
        if kind is None:
            problems.append(say(language, "Unknown procedure type “{word}”.", word=values["type"]))
        else:
            values["type"] = kind
    state = values["state"] or None
    if state is not None and state not in STATES:
        problems.append(say(language, "Unknown state “{word}”.", word=state))
        state = None
    ticket = None
    if values["ticket"]:
        digits = values["ticket"].rpartition("#")[2]
        if digits.isdecimal() and len(digits) <= 10 and 0 < int(digits) < 2**31:
            ticket = int(digits)
        else:
            problems.append(say(language, "“{word}” is not a ticket number.", word=values["ticket"]))
    bounds: dict[str, datetime | None] = {"from": None, "to": None}
    for name in ("from", "to"):
        if not values[name]:
            continue
        day = _day(values[name])
        bound = _bound(day, name == "to", zone) if day is not None else None
        if bound is None:
            problems.append(
                say(language, "“{word}” is not a date: write it like {example}.",
                    word=values[name], example="2026-03-31")
            )
            continue
        bounds[name] = bound
    if bounds["from"] and bounds["to"] and bounds["from"] >= bounds["to"]:
        problems.append(say(language, "The first date is after the last one."))
    where = ProcedureFilter(
        type=kind,
        state=state,
        member=values["member"] or None,
        ticket=ticket,
        since=bounds["from"],
        until=bounds["to"],
    )
    return Listing(where, values, problems)


# --- shown values ------------------------------------------------------------------------------


def _when(value: datetime | None, zone: tzinfo) -> str:
    return value.astimezone(zone).strftime("%Y-%m-%d %H:%M") if value is not None else ""


@dataclass(frozen=True)
class Row:
    """A procedure as the pages show it."""

    procedure: Procedure
    type_name: str
    state_name: str
    asked_at: str
    processed_at: str
    member_link: str | None  # the member's page, when the member is a number
    needs_number: bool  # a join for an address: marking it done asks for the number


class Shown:
    """How the pages show procedures in one language (type and state names, local times)."""

    def __init__(self, plugin: Procedures, language: str) -> None:
        self.plugin = plugin
        self.language = language
        self.zone = plugin.ctx.timezone

    def row(self, procedure: Procedure) -> Row:
        """One procedure's shown values."""
        plugin = self.plugin
        is_number = is_member_number(plugin.config, procedure.member)
        kind = plugin.config.types.get(procedure.type)
        return Row(
            procedure,
            type_name(plugin, procedure.type, self.language),
            state_name(plugin, procedure.state, self.language),
            _when(procedure.asked_at, self.zone),
            _when(procedure.processed_at, self.zone),
            member_url(procedure.member) if is_number else None,
            procedure.state == "pending"
            and kind is not None
            and kind.directory == "join"
            and not is_number,
        )

    def when(self, value: datetime | None) -> str:
        """A local time as the pages write it."""
        return _when(value, self.zone)

    def types(self) -> list[tuple[str, str]]:
        """The configured types: (name, shown name), in configuration order."""
        return [(name, type_name(self.plugin, name, self.language)) for name in self.plugin.config.types]

    def states(self) -> list[tuple[str, str]]:
        """The states: (name, shown name)."""
        return [(state, state_name(self.plugin, state, self.language)) for state in STATES]


def procedure_url(procedure_id: int) -> str:
    """A procedure's page."""
    return f"{BASE}/P-{procedure_id}"


def member_url(number: str) -> str:
    """A member's page."""
    from urllib.parse import quote

    return f"{BASE}/members/{quote(number, safe='')}"


# --- the panel's own templates -------------------------------------------------------------------


@functools.cache
def _panel_environment(folder: str) -> Environment:
    # The panel is HTML the core inserts as is: autoescape does every typed value.
    return Environment(
        loader=FileSystemLoader(folder),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


@dataclass(frozen=True)
class PanelRefusal:
    """A panel form refused: which form (`create`, `done-12`, `cancel-12`), why, and what was
    typed, drawn again in the panel of the ticket page answering the POST."""

    ticket: int
    form: str
    message: str
    fields: dict[str, str]


_PANEL_REFUSAL: ContextVar[PanelRefusal | None] = ContextVar(
    "procedures_panel_refusal", default=None
)


def _fields(form: Mapping[str, Any]) -> dict[str, str]:
    return {k: v for k, v in form.items() if isinstance(v, str) and k != "csrf"}


# --- registration ----------------------------------------------------------------------------


def register(plugin: Procedures) -> None:
    """Called by the plugin's start() (api.py registers the API routes the same way)."""
    register_web(plugin)


def register_web(plugin: Procedures) -> None:
    """Mount the pages under /plugins/procedures/ and add the ticket page's panel."""
    ctx = plugin.ctx
    plugin.ctx.web_router(router(plugin))
    ctx.add_menu_entry(N_("Treasury procedures"), "/")
    ctx.add_panel(functools.partial(panel, plugin))


def router(plugin: Procedures) -> APIRouter:
    """The plugin's pages (mounted under /plugins/procedures/ by the plugin context)."""
    pages = APIRouter()
    ctx = plugin.ctx

    def page(request: Request, template: str, status_code: int = 200, **values: Any) -> Response:
        return ctx.render_page(
            request,
            template,
            status_code,
            base=BASE,
            prefix=ctx.settings.prefix,
            shown=Shown(plugin, reader_language(request)),
            procedure_url=procedure_url,
            member_url=member_url,
            nonce=new_nonce,
            **values,
        )

    @pages.get("/")
    async def list_page(request: Request, operator: PageOperator) -> Response:
        """The procedures, newest first, filtered, a page at a time."""
        language = reader_language(request)
        listing = read_filter(plugin, request.query_params, language, ctx.timezone)
        raw_page = request.query_params.get("page", "1")
        # isdecimal, not isdigit ("²" is a digit int() refuses); short, as int() refuses
        # more than 4,300 digits.
        readable = raw_page.isdecimal() and len(raw_page) <= len(str(MAX_PAGE))
        number = int(raw_page) if readable and 0 < int(raw_page) <= MAX_PAGE else 1
        rows: list[Row] = []
        total = 0
        if not listing.problems:
            async with ctx.reading() as reader:
                total = await store.count(reader.conn, listing.where)
                found = await store.search(
                    reader.conn, listing.where, limit=PAGE_SIZE, offset=(number - 1) * PAGE_SIZE
                )
            shown = Shown(plugin, language)
            rows = [shown.row(procedure) for procedure in found]
        pages_count = max(1, math.ceil(total / PAGE_SIZE))
        links = {
            "prev": f"{BASE}/?{listing.query(page=number - 1)}" if number > 1 else None,
            "next": f"{BASE}/?{listing.query(page=number + 1)}" if number < pages_count else None,
        }
        return page(
            request,
            "procedures_list.html",
            400 if listing.problems else 200,
            operator=operator,
            listing=listing,
            rows=rows,
            total=total,
            page_number=number,
            pages_count=pages_count,
            links=links,
            export_url=f"{BASE}/export.csv" + (f"?{query}" if (query := listing.query()) else ""),
        )

    @pages.get("/export.csv")
    async def export(request: Request, operator: PageOperator) -> Response:
        """The filtered list as CSV (400 with the reason when a filter cannot be read)."""
        language = reader_language(request)
        listing = read_filter(plugin, request.query_params, language, ctx.timezone)
        if listing.problems:
            return Response("\n".join(listing.problems) + "\n", 400, media_type="text/plain")
        return await csv_export.response(plugin, listing.where, language)

    async def show(
        request: Request,
        operator: Any,
        procedure_id: int,
        *,
        status_code: int = 200,
        refusal: PanelRefusal | None = None,
    ) -> Response:
        language = reader_language(request)
        async with ctx.reading() as reader:
            procedure = await store.get(reader.conn, procedure_id)
            events = await store.history(reader.conn, procedure_id) if procedure else []
        if procedure is None:
            return page(request, "procedures_gone.html", 404, operator=operator,
                        number=procedure_id)
        shown = Shown(plugin, language)
        history = [
            {
                "event": event,
                "at": shown.when(event.at),
                "what": ctx.say(language, EVENT_WORDS.get(event.kind, event.kind)),
            }
            for event in events
        ]
        done = request.query_params.get("done") if status_code == 200 else None
        notice = None
        if done in PANEL_NOTICES:
            notice = ctx.say(language, PANEL_NOTICES[done], procedure=procedure.ref)
        return page(
            request,
            "procedures_detail.html",
            status_code,
            operator=operator,
            row=shown.row(procedure),
            procedure=procedure,
            history=history,
            refusal=refusal,
            notice=notice,
            ticket_ref=plugin.reference(procedure.ticket),
        )

    @pages.get("/P-{procedure_id:int}")
    async def procedure_page(request: Request, procedure_id: int, operator: PageOperator) -> Response:
        """One procedure with its history and, while pending, its done/cancel forms."""
        return await show(request, operator, procedure_id)

    @pages.get("/{procedure_id:int}")
    async def procedure_bare(request: Request, procedure_id: int, operator: PageOperator) -> Response:
        """`/plugins/procedures/12` is P-12's page."""
        return RedirectResponse(procedure_url(procedure_id), status_code=308)

    async def finish(
        request: Request, operator: Any, procedure_id: int, state: str
    ) -> Response:
        form = await request.form()
        fields = _fields(form)
        language = reader_language(request)
        from_ticket = fields.get("back") == "ticket"
        note = fields.get("reason" if state == "cancelled" else "note", "")
        try:
            finished = await service.finish_procedure(
                plugin,
                procedure_id,
                state=state,  # type: ignore[arg-type]
                note=note,
                actor=operator.user_id,
                language=language,
                member_number=fields.get("member_number") or None,
                key=form_key(fields),  # the same form sent twice finishes it once
            )
        except ProcedureRefused as refused:
            name = f"{'done' if state == 'done' else 'cancel'}-{procedure_id}"
            async with ctx.reading() as reader:
                procedure = await store.get(reader.conn, procedure_id)
            if from_ticket and procedure is not None:
                return await _ticket_page_refused(
                    request, operator, PanelRefusal(procedure.ticket, name, refused.message, fields)
                )
            if procedure is None:
                return page(request, "procedures_gone.html", 404, operator=operator,
                            number=procedure_id)
            refusal = PanelRefusal(procedure.ticket, name, refused.message, fields)
            return await show(request, operator, procedure_id, status_code=400, refusal=refusal)
        if from_ticket:
            return _back_to_ticket(finished.ticket, state, finished.id)
        return RedirectResponse(
            f"{procedure_url(finished.id)}?done={state}#done", status_code=303
        )

    @pages.post("/P-{procedure_id:int}/done")
    async def done(request: Request, procedure_id: int, operator: FormOperator) -> Response:
        """Mark a procedure done (the join of an address asks for the new member number)."""
        return await finish(request, operator, procedure_id, "done")

    @pages.post("/P-{procedure_id:int}/cancel")
    async def cancel(request: Request, procedure_id: int, operator: FormOperator) -> Response:
        """Cancel a procedure (the reason is required)."""
        return await finish(request, operator, procedure_id, "cancelled")

    @pages.post("/tickets/{number:int}/create")
    async def create(request: Request, number: int, operator: FormOperator) -> Response:
        """Record a procedure on a ticket from its page's panel, then back to the ticket."""
        fields = _fields(await request.form())
        try:
            created = await service.create_procedure(
                plugin,
                ticket=number,
                type=fields.get("type", ""),
                member=fields.get("member") or None,
                service=fields.get("service") or None,
                note=fields.get("note", ""),
                actor=operator.user_id,
                language=reader_language(request),
                key=form_key(fields),  # a double click records one procedure, mails once
            )
        except ProcedureRefused as refused:
            return await _ticket_page_refused(
                request, operator, PanelRefusal(number, "create", refused.message, fields)
            )
        return _back_to_ticket(number, "created", created.id)

    @pages.get("/members/{number}")
    async def member_page(request: Request, number: str, operator: PageOperator) -> Response:
        """A member's directory entry (addresses: every reader is an operator), their
        procedures and the directory's changes about them."""
        number = number.strip()[:MAX_MEMBER]
        async with ctx.reading() as reader:
            member = await store.get_member(reader.conn, number)
            changes = await store.member_history(reader.conn, number)
            found = await store.search(
                reader.conn, ProcedureFilter(member=number), limit=MEMBER_LISTED
            )
        shown = Shown(plugin, reader_language(request))
        language = reader_language(request)
        return page(
            request,
            "procedures_member.html",
            200 if member is not None or found or changes else 404,
            operator=operator,
            number=number,
            member=member,
            since=shown.when(member.since) if member else "",
            until=shown.when(member.until) if member else "",
            rows=[shown.row(procedure) for procedure in found],
            more=len(found) >= MEMBER_LISTED,
            changes=[
                {
                    "change": change,
                    "at": shown.when(change.at),
                    "what": ctx.say(language, CHANGE_WORDS.get(change.change, change.change)),
                }
                for change in changes
            ],
        )

    return pages


def _back_to_ticket(number: int, done: str, procedure_id: int) -> Response:
    query = urlencode({"procedures": done, "procedure": procedure_id})
    return RedirectResponse(f"/tickets/{number}?{query}#procedures", status_code=303)


async def _ticket_page_refused(request: Request, operator: Any, refusal: PanelRefusal) -> Response:
    """The ticket page again (400), its procedures panel showing the refusal at its form with
    what was typed: the core's way for a refused form, reached through the core's ticket page
    route and a context variable the panel reads."""
    from exobot.web.pages import ticket_page

    token = _PANEL_REFUSAL.set(refusal)
    try:
        response = await ticket_page(request, refusal.ticket, operator)
    finally:
        _PANEL_REFUSAL.reset(token)
    if response.status_code == 200:
        response.status_code = 400
    return response


# --- the ticket page's panel ---------------------------------------------------------------------


async def panel(plugin: Procedures, ticket: Any, language: str) -> Panel | None:
    """The ticket's procedures, done/cancel forms for the pending ones and a form creating
    one. Forms only on the core's ticket page (which gives the reader's CSRF token)."""
    ctx = plugin.ctx
    page = panel_page()
    async with ctx.reading() as reader:
        found = await store.search(
            reader.conn, ProcedureFilter(ticket=ticket.number), limit=PANEL_LISTED
        )
    if page is None and not found:
        return None
    shown = Shown(plugin, language)
    refusal = _PANEL_REFUSAL.get()
    if refusal is not None and refusal.ticket != ticket.number:
        refusal = None
    notice = None
    if page is not None and refusal is None:
        done = page.query.get("procedures")
        raw_id = page.query.get("procedure", "")
        if done in PANEL_NOTICES and raw_id.isdecimal() and len(raw_id) <= 10:
            ref = "P-" + str(int(raw_id))
            notice = ctx.say(language, PANEL_NOTICES[done], procedure=ref)
    env = _panel_environment(str(plugin.templates))

    def gettext(msgid: str, **params: object) -> str:
        return ctx.say(language, msgid, **params)

    html = env.get_template("procedures_panel.html").render(
        _=gettext,
        base=BASE,
        ticket=ticket.number,
        csrf=page.csrf if page is not None else None,
        rows=[shown.row(procedure) for procedure in found],
        more=len(found) >= PANEL_LISTED,
        types=shown.types(),
        refusal=refusal,
        notice=notice,
        procedure_url=procedure_url,
        nonce=new_nonce,
        list_url=f"{BASE}/?{urlencode({'ticket': ticket.number})}",
    )
    return Panel(ctx.say(language, "Treasury procedures"), html)
