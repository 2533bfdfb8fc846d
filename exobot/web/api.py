"""The JSON API under /api/v1 (bearer tokens): the same operations as chat and the pages.

Every call acts as the operator its token belongs to, checked again on each request; every
change goes through the TicketService with that operator as actor, so chat sees it too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request
from fastapi.security import HTTPBearer
from starlette.responses import JSONResponse, Response

from exobot.core import intents
from exobot.core.model import Actor
from exobot.core.references import format_reference
from exobot.core.service import AlreadyHandled
from exobot.db import inbound
from exobot.web import actions, queries
from exobot.web.api_errors import ApiError, install, message_of
from exobot.web.auth import Operator, context
from exobot.web.context import WebContext
from exobot.web.deps import ApiOperator
from exobot.web.downloads import download
from exobot.web.schemas import (
    DashboardOut,
    ErrorOut,
    GiveIn,
    MailStateOut,
    MeOut,
    MoveIn,
    OpenTicketIn,
    ParticipantsIn,
    QuarantinedOut,
    QuarantineOut,
    StatusIn,
    TextIn,
    TicketDetail,
    TicketListOut,
    TitleIn,
)
from exobot.wording import Wording

# Only documents the scheme in the OpenAPI schema; ApiOperator does the checking.
_bearer = HTTPBearer(auto_error=False, description="an API token from `exobot token create`")

_ERRORS: dict[int | str, dict] = {
    status: {"model": ErrorOut, "description": text}
    for status, text in (
        (400, "the request breaks a rule (empty text, unknown queue, bad status, ...)"),
        (401, "missing, unknown or revoked token"),
        (403, "the token's user is not an operator"),
        (404, "no such ticket, attachment or mail"),
        (409, "the ticket is already in the asked state (or the request was handled)"),
        (422, "malformed request (JSON or parameters)"),
    )
}

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=200,
        description="a retried request with the same key acts only once",
    ),
]

router = APIRouter(dependencies=[Depends(_bearer)], responses=_ERRORS)


def create_api(context: WebContext) -> FastAPI:
    """The API application, mounted at /api/v1; its schema is /api/v1/openapi.json."""
    api = FastAPI(
        title="exobot",
        version="1",
        description="exobot's helpdesk tickets for operators. Authorization: Bearer <token>.",
        docs_url=None,
        redoc_url=None,
        # Operation ids are the endpoint names (take, list_tickets, ...), for generated clients.
        generate_unique_id_function=lambda route: route.name,
    )
    api.state.context = context
    settings = context.settings
    api.state.renderer = Wording("en", settings.prefix, settings.timezone)
    api.include_router(router)
    install(api, api.state.renderer)
    return api


# --- helpers ---------------------------------------------------------------------------------


def _renderer(request: Request) -> Wording:
    return request.app.state.renderer


def _key(operator: Operator, header: str | None) -> str | None:
    """The idempotency key of a request: per token, so two tokens never collide."""
    if not header or not header.strip():
        return None
    name = operator.via.removeprefix("token:")
    return f"api:{name}:{header.strip()}"


def _not_found(request: Request, number: int) -> ApiError:
    reference = format_reference(context(request).settings.prefix, number)
    message = message_of(_renderer(request), "not_found", {"ticket": reference})
    return ApiError(404, "not_found", message)


async def _detail(request: Request, number: int) -> TicketDetail:
    ctx = context(request)
    view = await queries.ticket_view(ctx.repository, number)
    if view is None:
        raise _not_found(request, number)
    return TicketDetail.of_view(view, ctx.settings.prefix)


async def _act(
    request: Request,
    operator: Operator,
    action: str,
    number: int,
    fields: Mapping[str, object],
    header: str | None,
) -> TicketDetail:
    """Carry out one action as the token's operator; a retried key answers the same way."""
    intent = actions.intent_for(action, number, fields)
    await actions.perform(context(request), operator.user_id, intent, _key(operator, header))
    return await _detail(request, number)


# --- who ------------------------------------------------------------------------------------


@router.get("/me", response_model=MeOut, summary="Who this token acts as")
async def me(operator: ApiOperator) -> MeOut:
    """The operator the token acts as."""
    return MeOut(user_id=operator.user_id, via=operator.via)


# --- reading --------------------------------------------------------------------------------


@router.get("/tickets", response_model=TicketListOut, summary="List tickets")
async def list_tickets(
    request: Request,
    operator: ApiOperator,
    queue: str | None = None,
    status: Annotated[
        list[str] | None,
        Query(description="repeat it or separate with commas; unknown ones dropped"),
    ] = None,
    owner: Annotated[str | None, Query(description='a Matrix id, "mine" or "none"')] = None,
    q: Annotated[str, Query(description="words every match contains (title or texts)")] = "",
    order: Annotated[str, Query(description="newest, oldest or updated")] = "newest",
    page: Annotated[int, Query(ge=1)] = 1,
    per_page: Annotated[int, Query(ge=1, le=queries.MAX_PER_PAGE)] = queries.PER_PAGE,
) -> TicketListOut:
    """One page of the tickets matching the filters."""
    params = {
        "queue": queue,
        "status": status or [],
        "owner": owner,
        "q": q,
        "order": order,
        "page": page,
        "per_page": per_page,
    }
    ctx = context(request)
    wanted = queries.TicketFilter.parse(params, operator.user_id)
    found = await queries.ticket_list(ctx.repository, wanted)
    return TicketListOut.of(found, ctx.settings.prefix)


@router.get("/search", response_model=TicketListOut, summary="Search tickets")
async def search(
    request: Request,
    operator: ApiOperator,
    q: Annotated[str, Query(description="words every match contains (title or texts)")] = "",
    page: Annotated[int, Query(ge=1)] = 1,
    per_page: Annotated[int, Query(ge=1, le=queries.MAX_PER_PAGE)] = queries.PER_PAGE,
) -> TicketListOut:
    """The tickets whose title or texts contain all the words, newest first (as `!search`)."""
    if not q.strip():
        raise actions.ActionError("missing_words")
    ctx = context(request)
    wanted = queries.TicketFilter(words=q.strip()[:200], page=page, per_page=per_page)
    found = await queries.ticket_list(ctx.repository, wanted)
    return TicketListOut.of(found, ctx.settings.prefix)


@router.get("/dashboard", response_model=DashboardOut, summary="The overview")
async def dashboard(request: Request, operator: ApiOperator) -> DashboardOut:
    """New tickets, counts per queue and status, the oldest waiting and the stalled ones."""
    ctx = context(request)
    board = await queries.dashboard(ctx.repository, ctx.settings.queues)
    return DashboardOut.of(board, ctx.settings.prefix)


@router.get("/tickets/{n}", response_model=TicketDetail, summary="A ticket and its history")
async def get_ticket(request: Request, operator: ApiOperator, n: int) -> TicketDetail:
    """The ticket with its participants and whole history."""
    return await _detail(request, n)


@router.get(
    "/tickets/{n}/attachments/{attachment_id}",
    response_class=Response,
    summary="An attachment's bytes",
    responses={200: {"content": {"application/octet-stream": {}}}},
)
async def get_attachment(
    request: Request, operator: ApiOperator, n: int, attachment_id: int
) -> Response:
    """The attachment as a download (never shown inline: it is the member's file)."""
    ctx = context(request)
    async with ctx.repository.reading() as view:
        ticket = await view.get_ticket(n)
        found = await view.attachment(n, attachment_id) if ticket else None
    if ticket is None:
        raise _not_found(request, n)
    if found is None:
        message = f"{format_reference(ctx.settings.prefix, n)} has no attachment {attachment_id}"
        raise ApiError(404, "attachment_not_found", message)
    return download(found)


# --- changing -------------------------------------------------------------------------------


@router.post("/tickets", status_code=201, response_model=TicketDetail, summary="Open a ticket")
async def open_ticket(
    request: Request, operator: ApiOperator, body: OpenTicketIn, key: IdempotencyKey = None
) -> JSONResponse:
    """Open a ticket on a member's behalf; a retry with the same Idempotency-Key answers 200
    with the ticket the first request opened."""
    ctx = context(request)
    intent = actions.open_intent(body.model_dump())
    try:
        outcome = await ctx.service.apply(
            Actor.operator(operator.user_id), intent, intents.Origin(_key(operator, key), None)
        )
        number, status = outcome.ticket, 201
    except AlreadyHandled as again:
        # A retry: the ticket the first request opened, as if it were this one's answer.
        number, status = again.params.get("ticket"), 200
        if number is None:
            message = "a request with this Idempotency-Key was already handled"
            raise ApiError(409, "already_handled", message) from None
    detail = await _detail(request, number)
    return JSONResponse(
        detail.model_dump(mode="json"),
        status_code=status,
        headers={"Location": f"{request.scope.get('root_path', '')}/tickets/{number}"},
    )


@router.post("/tickets/{n}/actions/take", response_model=TicketDetail, summary="Take")
async def take(
    request: Request, operator: ApiOperator, n: int, key: IdempotencyKey = None
) -> TicketDetail:
    """Become the ticket's owner."""
    return await _act(request, operator, "take", n, {}, key)


@router.post("/tickets/{n}/actions/give", response_model=TicketDetail, summary="Give")
async def give(
    request: Request, operator: ApiOperator, n: int, body: GiveIn, key: IdempotencyKey = None
) -> TicketDetail:
    """Give the ticket to another operator."""
    return await _act(request, operator, "give", n, body.model_dump(), key)


@router.post("/tickets/{n}/actions/untake", response_model=TicketDetail, summary="Untake")
async def untake(
    request: Request, operator: ApiOperator, n: int, key: IdempotencyKey = None
) -> TicketDetail:
    """Leave the ticket without an owner."""
    return await _act(request, operator, "untake", n, {}, key)


@router.post("/tickets/{n}/actions/reply", response_model=TicketDetail, summary="Reply")
async def reply(
    request: Request, operator: ApiOperator, n: int, body: TextIn, key: IdempotencyKey = None
) -> TicketDetail:
    """Mail a reply to the member (and the ticket's other participants)."""
    return await _act(request, operator, "reply", n, body.model_dump(), key)


@router.post("/tickets/{n}/actions/comment", response_model=TicketDetail, summary="Comment")
async def comment(
    request: Request, operator: ApiOperator, n: int, body: TextIn, key: IdempotencyKey = None
) -> TicketDetail:
    """Add an internal comment (never mailed)."""
    return await _act(request, operator, "comment", n, body.model_dump(), key)


@router.post("/tickets/{n}/actions/title", response_model=TicketDetail, summary="Retitle")
async def set_title(
    request: Request, operator: ApiOperator, n: int, body: TitleIn, key: IdempotencyKey = None
) -> TicketDetail:
    """Change the ticket's title."""
    return await _act(request, operator, "title", n, body.model_dump(), key)


@router.post("/tickets/{n}/actions/move", response_model=TicketDetail, summary="Move")
async def move(
    request: Request, operator: ApiOperator, n: int, body: MoveIn, key: IdempotencyKey = None
) -> TicketDetail:
    """Move the ticket to another queue."""
    return await _act(request, operator, "move", n, body.model_dump(), key)


@router.post("/tickets/{n}/actions/status", response_model=TicketDetail, summary="Set status")
async def set_status(
    request: Request, operator: ApiOperator, n: int, body: StatusIn, key: IdempotencyKey = None
) -> TicketDetail:
    """Change the ticket's status (resolving it mails the member)."""
    return await _act(request, operator, "status", n, body.model_dump(), key)


@router.post("/tickets/{n}/actions/accept", response_model=TicketDetail, summary="Accept")
async def accept(
    request: Request, operator: ApiOperator, n: int, key: IdempotencyKey = None
) -> TicketDetail:
    """Accept the latest mail from an unverified sender as the member's."""
    return await _act(request, operator, "accept", n, {}, key)


@router.post("/tickets/{n}/actions/cc", response_model=TicketDetail, summary="Participants")
async def participants(
    request: Request,
    operator: ApiOperator,
    n: int,
    body: ParticipantsIn,
    key: IdempotencyKey = None,
) -> TicketDetail:
    """Add and remove participants: the addresses that get copies of the replies and whose
    mail to the ticket counts as the member's (as `!cc`). Body `{"add": [...], "remove":
    [...]}`; a bad address answers 400 `bad_address` naming it."""
    return await _act(request, operator, "cc", n, body.model_dump(), key)


# --- quarantine -----------------------------------------------------------------------------


@router.get("/quarantine", response_model=QuarantineOut, summary="Quarantined mail")
async def quarantine(request: Request, operator: ApiOperator) -> QuarantineOut:
    """The mails that could not be processed, newest first."""
    async with context(request).repository.connection() as conn:
        items = await inbound.list_inbound(conn, inbound.QUARANTINED)
    return QuarantineOut(mails=[QuarantinedOut.of(item) for item in items])


async def _quarantined(request: Request, mail_id: int) -> inbound.InboundSummary:
    async with context(request).repository.connection() as conn:
        item = await inbound.get_inbound(conn, mail_id)
    if item is None or item.state != inbound.QUARANTINED:
        raise ApiError(404, "mail_not_found", f"no quarantined mail with id {mail_id}")
    return item


@router.post(
    "/quarantine/{mail_id}/retry", response_model=MailStateOut, summary="Process a mail again"
)
async def retry(request: Request, operator: ApiOperator, mail_id: int) -> MailStateOut:
    """Process a quarantined mail again; its new state (quarantined when it fails again)."""
    await _quarantined(request, mail_id)
    state = await context(request).retry_mail(mail_id)
    return MailStateOut(id=mail_id, state=state)


@router.post("/quarantine/{mail_id}/discard", response_model=MailStateOut, summary="Discard a mail")
async def discard(request: Request, operator: ApiOperator, mail_id: int) -> MailStateOut:
    """Never process a quarantined mail (it stays in the database)."""
    async with context(request).repository.connection() as conn:
        if not await inbound.discard(conn, mail_id):
            raise ApiError(404, "mail_not_found", f"no quarantined mail with id {mail_id}")
    return MailStateOut(id=mail_id, state="discarded")
