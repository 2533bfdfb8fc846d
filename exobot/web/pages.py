"""The operators' pages: dashboard, ticket list, ticket page, new ticket, quarantine.

Every page and action works without JavaScript. Forms carry the session's CSRF token; forms
that change a ticket also carry a nonce, so a form sent twice acts once. A successful form is
answered with a redirect (POST-redirect-GET); a refused one shows the page again with the
message and what was typed.
"""

from __future__ import annotations

import logging
import re
import secrets
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from urllib.parse import urlencode

from fastapi import APIRouter, HTTPException, Request
from starlette.responses import RedirectResponse, Response

from exobot.core.actions import ActionRefused, Answer, Channel
from exobot.core.intents import Origin, Reply, RevealOriginal, SetStatus
from exobot.core.languages import N_
from exobot.core.model import Actor, Entry, EntryKind, Status
from exobot.core.service import AlreadyHandled, ServiceError, TicketNotFound
from exobot.core.text import one_line
from exobot.db import inbound, outbox
from exobot.db.repository import AttachmentMeta, EntryOriginal
from exobot.plugins.web import PanelPage, drawing_panels
from exobot.web import actions, queries
from exobot.web.auth import Operator, context
from exobot.web.deps import FormOperator, PageOperator
from exobot.web.downloads import download
from exobot.web.forms import action_forms, generated_actions
from exobot.web.templating import Speaker, language, render
from exobot.web.words import ACTION_DONE, DONE, INBOUND_STATES, OUTBOX_WORDS
from exobot.web.words import QUARANTINE_DONE as QUARANTINE_NOTICES
from exobot.wording import Wording

log = logging.getLogger("exobot.web.pages")

router = APIRouter()

# Nonces we generate are token_urlsafe(16); anything else is not used as a key.
_NONCE = re.compile(r"[A-Za-z0-9_-]{16,64}")
CORRESPONDENCE = {
    EntryKind.MAIL_IN,
    EntryKind.MAIL_OUT,
    EntryKind.UNVERIFIED_IN,
    EntryKind.AUTOMATIC_IN,
    EntryKind.BOUNCE,
}
SUBJECT_CHARS = 300
SET_STATUSES = tuple(s for s in Status if s is not Status.NEW)  # an operator never sets new
# The history's last mails and comments shown open, with every change among or after them;
# the earlier entries are folded (one click away), so the reply box sits near the top of a long
# ticket. Changes (a flag, a move, an owner) do not count: they never fold the member's mail.
RECENT_ENTRIES = 3
_COUNTED = ("correspondence", "comment")
# What "reply and …" may set after the reply, in one step.
THEN_STATUSES = {Status.RESOLVED.value: Status.RESOLVED, Status.STALLED.value: Status.STALLED}
QUARANTINE_DONE = tuple(QUARANTINE_NOTICES)


def new_nonce() -> str:
    """A fresh nonce for one form that changes a ticket."""
    return secrets.token_urlsafe(16)


def form_key(fields: Mapping[str, object]) -> str | None:
    """The idempotency key of a submitted form (None when it came without a usable nonce)."""
    nonce = fields.get("nonce")
    if isinstance(nonce, str) and _NONCE.fullmatch(nonce):
        return f"web:{nonce}"
    return None


def _renderer(request: Request) -> Wording:
    """The shared wording (entries, errors) in the reader's language."""
    ctx = context(request)
    settings = ctx.settings
    # The exobot's registry: an error about a plugin's action names it in its own words.
    return Wording(
        language(request),
        settings.prefix,
        settings.timezone,
        ctx.actions,
        people=ctx.people,
        flag_names=True,  # a flag by its name, never its code ("Marca dades sensibles")
    )


def error_text(request: Request, code: str, params: Mapping[str, object]) -> str:
    """A refusal in the reader's language."""
    values = dict(params)
    if code == "bad_status":  # the statuses as this reader calls them
        speaker = Speaker(request)
        values["known"] = ", ".join(speaker.status(s) for s in SET_STATUSES)
    return actions.error_message(_renderer(request), code, values)


async def _form_fields(request: Request) -> dict[str, str]:
    """The submitted text fields (files, if any, are ignored)."""
    form = await request.form()
    return {name: value for name, value in form.items() if isinstance(value, str)}


def list_url(**params: object) -> str:
    """A link to the ticket list with these filters (lists repeat their parameter)."""
    pairs: list[tuple[str, str]] = []
    for name, value in params.items():
        values = value if isinstance(value, list | tuple) else [value]
        pairs.extend((name, str(v)) for v in values if v not in (None, ""))
    return "/tickets" + ("?" + urlencode(pairs) if pairs else "")


# --- dashboard --------------------------------------------------------------------------


@router.get("/")
async def dashboard(request: Request, operator: PageOperator) -> Response:
    """The overview: new tickets first, then counts, the oldest waiting and the stalled."""
    ctx = context(request)
    figures = await queries.dashboard(ctx.repository, ctx.settings.queues, operator.user_id)
    return render(
        request,
        "dashboard.html",
        operator=operator,
        active="dashboard",
        figures=figures,
        statuses=list(Status),
        list_url=list_url,
    )


# --- ticket list ------------------------------------------------------------------------


@router.get("/tickets")
async def ticket_list(request: Request, operator: PageOperator) -> Response:
    """The ticket list with its filter form (a GET form: filters live in the URL)."""
    ctx = context(request)
    params: dict[str, object] = dict(request.query_params)
    params["status"] = request.query_params.getlist("status")
    wanted = queries.TicketFilter.parse(params, operator.user_id)
    try:
        found = await queries.ticket_list(ctx.repository, wanted)
    except ServiceError as refused:  # search words that cannot be searched, a page too far
        return render(
            request,
            "error.html",
            status_code=400,
            operator=operator,
            message=error_text(request, refused.code, refused.params),
        )
    owner = _owner_choice(request, wanted)
    kept = {
        "queue": wanted.queue,
        "status": [s.value for s in wanted.statuses],
        "owner": owner,
        "q": wanted.words,
        "order": wanted.order if wanted.order != "newest" else None,
        "per_page": wanted.per_page if wanted.per_page != queries.PER_PAGE else None,
    }
    pages = {
        "prev": list_url(**kept, page=wanted.page - 1) if wanted.page > 1 else None,
        "next": list_url(**kept, page=wanted.page + 1) if wanted.page < found.pages else None,
        "first": list_url(**kept) if wanted.page > found.pages else None,
    }
    return render(
        request,
        "tickets.html",
        operator=operator,
        active="tickets",
        found=found,
        wanted=wanted,
        owner=owner,
        pages=pages,
        statuses=list(Status),
        orders=queries.ORDERS,
        filtering=_filtering(Speaker(request), wanted, owner),
        pending_url=list_url(status=[Status.NEW.value, Status.OPEN.value]),
        mine_url=list_url(status=[Status.NEW.value, Status.OPEN.value], owner="mine"),
    )


def _filtering(speaker: Speaker, wanted: queries.TicketFilter, owner: str) -> str:
    """The filters in force, in a few words (the folded filter panel's summary)."""
    parts = []
    if wanted.queue:
        parts.append(wanted.queue)
    if wanted.statuses:
        parts.append(", ".join(speaker.status(s) for s in wanted.statuses))
    if owner == "mine":
        parts.append(speaker.t(N_("Mine")))
    elif owner == "none":
        parts.append(speaker.t(N_("No owner")))
    elif owner:
        parts.append(speaker.person(owner))
    if wanted.words:
        parts.append(f"“{wanted.words}”")
    return " · ".join(parts)


def _owner_choice(request: Request, wanted: queries.TicketFilter) -> str:
    """The owner filter as the form shows it: "" (all), "mine", "none" or a Matrix id."""
    raw = request.query_params.get("owner", "").strip()
    if wanted.unowned:
        return "none"
    if raw == "mine" or (wanted.owner is not None and raw == ""):
        return "mine"
    return wanted.owner or ""


# --- one ticket -------------------------------------------------------------------------


@dataclass(frozen=True)
class EntryView:
    """One history entry as the ticket page shows it."""

    entry: Entry
    group: str  # correspondence, comment or change
    headline: str
    text: str
    subject: str
    attachments: list[AttachmentMeta]
    notes: list[str] = field(default_factory=list)  # e.g. Cc addresses not made participants

    @property
    def kind(self) -> str:
        """The entry's kind, as a CSS class."""
        return str(self.entry.kind)


def _without_emoji(headline: str) -> str:
    """A headline without the leading emoji chat uses (✉, 📨…): they need a font not every
    browser has; the page marks the entry's kind with its own icon and colours."""
    stripped = headline.lstrip()
    while stripped and unicodedata.category(stripped[0]) in ("So", "Sk", "Mn", "Cf"):
        stripped = stripped[1:].lstrip()
    return stripped or headline


def fold_point(entries: list[EntryView], recent: int = RECENT_ENTRIES) -> int:
    """Where the open part of the history starts: at its `recent`-th last mail or comment
    (0: nothing is folded)."""
    counted = [index for index, item in enumerate(entries) if item.group in _COUNTED]
    return counted[-recent] if len(counted) > recent else 0


def _entry_views(renderer: Wording, view: queries.TicketView) -> list[EntryView]:
    shown = []
    for entry in view.history:
        headline, text = renderer.entry_line(view.ticket, entry)
        headline = _without_emoji(headline)
        if entry.kind in CORRESPONDENCE:
            group = "correspondence"
        elif entry.kind is EntryKind.COMMENT:
            group = "comment"
        else:
            group = "change"
        subject = ""
        if entry.kind in CORRESPONDENCE and entry.kind is not EntryKind.MAIL_OUT:
            subject = one_line(str(entry.data.get("subject") or ""), SUBJECT_CHARS)
        attachments = view.attachments.get(entry.id or 0, [])
        notes = renderer.entry_notes(view.ticket, entry)
        shown.append(EntryView(entry, group, headline, text, subject, attachments, notes))
    return shown


async def _ticket_page(
    request: Request,
    operator: Operator,
    number: int,
    *,
    status_code: int = 200,
    failed: str | None = None,
    error: str | None = None,
    fields: Mapping[str, str] | None = None,
    notice: str | None = None,
    revealed: Mapping[int, EntryOriginal] | None = None,
) -> Response:
    """The ticket page (with `revealed`: the originals an operator just asked to see, by entry
    id); after a refused action, with the message next to its form; after an
    action that answered (a plugin's), with its answer as the notice. The registry's other
    web actions (plugins') get forms generated from their declarations."""
    ctx = context(request)
    view = await queries.ticket_view(ctx.repository, number)
    if view is None:
        return _no_such_ticket(request, operator, number)
    if view.ticket.number != number and status_code == 200:
        # A merged number (imported from Request Tracker): the surviving ticket's page.
        query = f"?{request.url.query}" if request.url.query else ""
        return RedirectResponse(f"/tickets/{view.ticket.number}{query}", status_code=302)
    ticket = view.ticket
    unverified = any(e.kind is EntryKind.UNVERIFIED_IN for e in view.history)
    forms = ["give", "reply", "comment", "title", "status", "cc"]
    if ticket.owner != operator.user_id:
        forms.append("take")
    if ticket.owner:
        forms.append("untake")
    if len(ctx.settings.queues) > 1 or ticket.queue not in ctx.settings.queues:
        forms.append("move")
    if unverified:
        forms.append("accept")
    done = request.query_params.get("done") if status_code == 200 else None
    speaker = Speaker(request)
    more = await action_forms(
        generated_actions(ctx.actions, actions.ACTIONS),
        ticket=number,
        language=speaker.language,
        queues=ctx.settings.queues,
        statuses=SET_STATUSES,
        status_words={status: speaker.status(status) for status in SET_STATUSES},
    )
    more_done = next((form for form in more if form.name == done), None)
    if more_done is not None and notice is None:  # a generated form's intent was applied
        notice = speaker.t(ACTION_DONE, action=more_done.word)
    panels = []
    if ctx.panels:
        page = PanelPage(operator.user_id, operator.csrf, dict(request.query_params))
        with drawing_panels(page):  # a panel's forms need the reader's CSRF token
            panels = await ctx.panels(ticket, language(request))
    entries = _entry_views(_renderer(request), view)
    fold = fold_point(entries)
    return render(
        request,
        "ticket.html",
        status_code=status_code,
        operator=operator,
        active="tickets",
        view=view,
        ticket=ticket,
        older=entries[:fold],
        latest=entries[fold:],
        forms=forms,
        more_forms=more,
        failed=failed,
        error=error,
        error_in_form=failed in forms or any(form.name == failed for form in more),
        fields=fields or {},
        done=done if done in actions.ACTIONS or done in DONE else None,
        notice=notice,
        nonce=new_nonce,
        queues=ctx.settings.queues,
        set_statuses=SET_STATUSES,
        here=f"/tickets/{number}",  # a refused form's page is at the form's URL: come back here
        panels=panels,
        operators=_operators(ctx),
        revealed=revealed or {},
    )


def _operators(ctx) -> list[tuple[str, str]]:
    """The operators a ticket may be given to, (Matrix id, display name), by name; a failure
    to list them leaves the free-text field (logged), never a broken page."""
    try:
        found = list(ctx.operators())
    except Exception:
        log.exception("listing the operators failed")
        return []
    return sorted(found, key=lambda pair: (pair[1].casefold(), pair[0]))


def _no_such_ticket(request: Request, operator: Operator, number: int) -> Response:
    """404, saying which ticket does not exist (in chat's words)."""
    return render(
        request,
        "error.html",
        status_code=404,
        operator=operator,
        message_key=N_("There is no ticket {ticket}."),
        message_params={"ticket": Speaker(request).ref(number)},
    )


@router.get("/tickets/new")
async def new_ticket_form(request: Request, operator: PageOperator) -> Response:
    """The form to open a ticket on a member's behalf (after a phone call, say)."""
    return _new_ticket_page(request, operator)


def _new_ticket_page(
    request: Request,
    operator: Operator,
    *,
    status_code: int = 200,
    error: str | None = None,
    fields: Mapping[str, str] | None = None,
) -> Response:
    settings = context(request).settings
    return render(
        request,
        "new.html",
        status_code=status_code,
        operator=operator,
        active="new",
        error=error,
        fields=fields or {"queue": settings.default_queue},
        nonce=new_nonce(),
        queues=settings.queues,
        here="/tickets/new",
    )


@router.post("/tickets/new")
async def new_ticket(request: Request, operator: FormOperator) -> Response:
    """Open the ticket, then show it."""
    ctx = context(request)
    fields = await _form_fields(request)
    try:
        intent = actions.open_intent(fields)
        outcome = await ctx.service.apply(
            Actor.operator(operator.user_id), intent, Origin(form_key(fields), None)
        )
    except AlreadyHandled as again:
        # The same form again (a double click): show the ticket the first one opened.
        return RedirectResponse(f"/tickets/{again.params.get('ticket') or ''}", status_code=303)
    except (actions.ActionError, ServiceError) as refused:
        message = error_text(request, refused.code, refused.params)
        return _new_ticket_page(request, operator, status_code=400, error=message, fields=fields)
    log.info("%s opened ticket %s from the web", operator.user_id, outcome.ticket)
    return RedirectResponse(f"/tickets/{outcome.ticket}", status_code=303)


@router.get("/tickets/{number:int}")
async def ticket_page(request: Request, number: int, operator: PageOperator) -> Response:
    """A ticket: its details, its whole history and the actions on it."""
    return await _ticket_page(request, operator, number)


@router.post("/tickets/{number:int}/{action}")
async def ticket_action(
    request: Request, number: int, action: str, operator: FormOperator
) -> Response:
    """One action on a ticket, through the same service as chat (an action is found in the
    registry; one carried out by a handler may answer instead, shown on the page)."""
    ctx = context(request)
    fields = await _form_fields(request)
    then = THEN_STATUSES.get(fields.get("then", "")) if action == "reply" else None
    try:
        spec = actions.action_spec(action, ctx.actions)
        if then is Status.RESOLVED:
            # "Reply and resolve" is one change: one mail (the reply, saying the ticket is
            # resolved and how to reopen it) instead of the reply and a resolved notice.
            intent = actions.intent_for(action, number, fields, ctx.actions)
            if not isinstance(intent, Reply):
                raise actions.ActionError("unknown_action", action=action)
            reply = replace(intent, resolve=True)
            done = await actions.perform(ctx, operator.user_id, reply, form_key(fields))
        else:
            done = await actions.run_action(
                ctx,
                spec,
                number,
                fields,
                operator.user_id,
                form_key(fields),
                language=language(request),
                channel=Channel.WEB,
            )
    except TicketNotFound:
        return _no_such_ticket(request, operator, number)
    except ActionRefused as refused:  # a plugin's refusal, worded in the reader's language
        return await _ticket_page(
            request,
            operator,
            number,
            status_code=400,
            failed=action,
            error=refused.message,
            fields=fields,
        )
    except (actions.ActionError, ServiceError) as refused:
        return await _ticket_page(
            request,
            operator,
            number,
            status_code=400,
            failed=action,
            error=error_text(request, refused.code, refused.params),
            fields=fields,
        )
    if isinstance(done, Answer):
        return await _ticket_page(request, operator, number, notice=done.body)
    if then is Status.RESOLVED:
        return RedirectResponse(f"/tickets/{number}?done=reply_resolved#done", status_code=303)
    if then is not None:
        # "Reply and stall": the status change is an intent of its own, after the reply (its
        # own idempotency key); when it is refused, the reply stays sent and the page says so
        # next to the refusal.
        key = form_key(fields)
        try:
            await actions.perform(
                ctx, operator.user_id, SetStatus(number, then), f"{key}:then" if key else None
            )
        except ServiceError as refused:
            return await _ticket_page(
                request,
                operator,
                number,
                status_code=409,
                error=Speaker(request).t(
                    N_("The reply was sent, but the status was not changed: {reason}"),
                    reason=error_text(request, refused.code, refused.params),
                ),
            )
        return RedirectResponse(f"/tickets/{number}?done=reply_{then.value}#done", status_code=303)
    return RedirectResponse(f"/tickets/{number}?done={action}#done", status_code=303)


@router.post("/tickets/{number:int}/entries/{entry_id:int}/reveal")
async def reveal_original(
    request: Request, number: int, entry_id: int, operator: FormOperator
) -> Response:
    """Show an entry's original (unmasked) text, once, to this operator: the service records
    the reveal in the ticket's history first; the page is never cached. The same form sent
    again (a double click) shows it again without recording it twice."""
    ctx = context(request)
    key = _reveal_key(await _form_fields(request), entry_id, operator.user_id)
    intent = RevealOriginal(number, entry_id)
    try:
        await ctx.service.apply(Actor.operator(operator.user_id), intent, Origin(key, None))
    except AlreadyHandled:
        log.info("%s was already handled: the original is shown again", key)
    except TicketNotFound:
        return _no_such_ticket(request, operator, number)
    except ServiceError as refused:
        message = error_text(request, refused.code, refused.params)
        return await _ticket_page(request, operator, number, status_code=400, error=message)
    else:
        log.info(
            "%s revealed the original text of entry %s of ticket %s",
            operator.user_id,
            entry_id,
            number,
        )
    async with ctx.repository.reading() as view:
        original = await view.original(number, entry_id)
    response = await _ticket_page(
        request, operator, number, revealed={entry_id: original} if original else {}
    )
    response.headers["cache-control"] = "no-store"
    return response


def _reveal_key(fields: Mapping[str, object], entry_id: int, user_id: str) -> str | None:
    """The idempotency key of a reveal form: its nonce, bound to the entry and the operator,
    so it is "already handled" only when this operator's reveal of this entry was recorded
    with it (a nonce spent on another form, or by someone else, never shows an original
    unrecorded)."""
    key = form_key(fields)
    return f"{key}:reveal:{entry_id}:{user_id}" if key else None


@router.get("/tickets/{number:int}/attachments/{attachment_id:int}")
async def attachment(
    request: Request, number: int, attachment_id: int, operator: PageOperator
) -> Response:
    """An attachment, always as a download: never shown inline, whatever it claims to be."""
    async with context(request).repository.reading() as view:
        ticket = await view.get_ticket(number)  # a merged number names its survivor's files
        found = await view.attachment(ticket.number, attachment_id) if ticket else None
    if found is None:
        raise HTTPException(404)
    return download(found)


# --- quarantine -------------------------------------------------------------------------


@router.get("/quarantine")
async def quarantine(request: Request, operator: PageOperator) -> Response:
    """Received mail that could not be processed, to retry or discard; and what is queued."""
    async with context(request).repository.reading() as view:
        items = await inbound.list_inbound(view.conn, inbound.QUARANTINED)
        stored = await inbound.count_by_state(view.conn)
        queued = await outbox.counts(view.conn)
    speaker = Speaker(request)
    return render(
        request,
        "quarantine.html",
        operator=operator,
        active="quarantine",
        items=items,
        stored=[(speaker.word(INBOUND_STATES, state), n) for state, n in sorted(stored.items())],
        queued=[
            (f"{speaker.word(OUTBOX_WORDS, kind)} {speaker.word(OUTBOX_WORDS, state)}", n)
            for (kind, state), n in sorted(queued.items())
        ],
        notice=_quarantine_notice(request),
        short=one_line,
        here="/quarantine",  # not the notice's parameters: they say what was just done
    )


def _quarantine_notice(request: Request) -> tuple[str, dict[str, object]] | None:
    """What the last retry or discard did, from the redirect's query string: only catalog
    words and a number, never the raw parameters."""
    done = request.query_params.get("done")
    raw_id = request.query_params.get("id", "")
    if done not in QUARANTINE_DONE or not raw_id.isdecimal() or len(raw_id) > 12:
        return None
    params: dict[str, object] = {"id": int(raw_id)}
    if done == "retried":
        state = request.query_params.get("state")
        word = state if state in inbound.STATES else "other"
        params["state"] = Speaker(request).word(INBOUND_STATES, word)
    return QUARANTINE_NOTICES[done], params


def _back_to_quarantine(done: str, inbound_id: int, state: str | None = None) -> Response:
    query = {"done": done, "id": inbound_id} | ({"state": state} if state else {})
    return RedirectResponse(f"/quarantine?{urlencode(query)}", status_code=303)


@router.post("/quarantine/{inbound_id:int}/retry")
async def quarantine_retry(request: Request, inbound_id: int, operator: FormOperator) -> Response:
    """Process a quarantined mail again (after fixing what made it fail)."""
    ctx = context(request)
    async with ctx.repository.reading() as view:
        item = await inbound.get_inbound(view.conn, inbound_id)
    if item is None or item.state != inbound.QUARANTINED:
        return _back_to_quarantine("missing", inbound_id)
    try:
        state = await ctx.retry_mail(inbound_id)
    except Exception:  # the processor's failure must not become a 500 page: say it, log it
        log.exception("retrying quarantined mail %d failed", inbound_id)
        return _back_to_quarantine("failed", inbound_id)
    log.info("%s retried quarantined mail %d: %s", operator.user_id, inbound_id, state)
    if state == inbound.QUARANTINED:
        return _back_to_quarantine("still", inbound_id)
    if state == "missing":
        return _back_to_quarantine("missing", inbound_id)
    return _back_to_quarantine("retried", inbound_id, state if state in inbound.STATES else None)


@router.post("/quarantine/{inbound_id:int}/discard")
async def quarantine_discard(request: Request, inbound_id: int, operator: FormOperator) -> Response:
    """Set a quarantined mail aside for good (it stays in the database, never processed)."""
    async with context(request).repository.connection() as conn:
        if not await inbound.discard(conn, inbound_id, context(request).now()):
            return _back_to_quarantine("missing", inbound_id)
    log.info("%s discarded quarantined mail %d", operator.user_id, inbound_id)
    return _back_to_quarantine("discarded", inbound_id)
