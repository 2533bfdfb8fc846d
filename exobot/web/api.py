"""The JSON API under /api/v1 (bearer tokens): the same operations as chat and the pages.

Every call acts as the operator its token belongs to, checked again on each request; every
change goes through the TicketService with that operator as actor, so chat sees it too.
"""

from __future__ import annotations

import hashlib
import json
import weakref
from collections.abc import Awaitable, Callable, Mapping
from inspect import Parameter, Signature
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request
from fastapi.routing import APIRoute
from fastapi.security import HTTPBearer
from pydantic import BaseModel
from starlette.responses import JSONResponse, Response

from exobot.core import intents
from exobot.core.actions import (
    ActionRefused,
    ActionRegistry,
    ActionSpec,
    Answer,
    Channel,
    TicketUse,
)
from exobot.core.model import Actor
from exobot.core.references import format_reference
from exobot.core.service import AlreadyHandled
from exobot.db import inbound
from exobot.web import actions, queries
from exobot.web.api_errors import ApiError, error_response, install, message_of
from exobot.web.auth import Operator, context
from exobot.web.context import WebContext
from exobot.web.deps import ApiOperator
from exobot.web.downloads import download
from exobot.web.schemas import (
    ActionAnswerOut,
    DashboardOut,
    ErrorOut,
    MailStateOut,
    MeOut,
    OpenTicketIn,
    QuarantinedOut,
    QuarantineOut,
    TicketDetail,
    TicketListOut,
    body_model,
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
        (
            422,
            "malformed request (JSON or parameters), or an Idempotency-Key already used for a"
            " different request (`key_reused`: nothing was done)",
        ),
    )
}

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=200,
        description=(
            "a retried request with the same key acts only once (the retry is answered as if"
            " it had acted); the key belongs to the request (method, path and body): used"
            " again for a different one, it is refused with 422 `key_reused` and nothing is"
            " done"
        ),
    ),
]

router = APIRouter(dependencies=[Depends(_bearer)], responses=_ERRORS)
# Included after the action routes, so the schema lists them where they always were.
quarantine_router = APIRouter(dependencies=[Depends(_bearer)], responses=_ERRORS)


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
    api.state.renderer = Wording("en", settings.prefix, settings.timezone, context.actions)
    api.include_router(router)
    api.state.action_routes = ActionRoutes(api, context.actions)
    api.include_router(quarantine_router)
    install(api, api.state.renderer)
    api.add_exception_handler(actions.HandlerFailed, _handler_failed)
    api.add_exception_handler(ActionRefused, _refused)
    return api


# --- helpers ---------------------------------------------------------------------------------


def _renderer(request: Request) -> Wording:
    return request.app.state.renderer


def request_key(operator: Operator, header: str | None) -> str | None:
    """The idempotency key of a request: per token, so two tokens never collide."""
    if not header or not header.strip():
        return None
    name = operator.via.removeprefix("token:")
    return f"api:{name}:{header.strip()}"


def request_hash(request: Request, body: Mapping[str, object]) -> str:
    """The fingerprint of a request, kept with its Idempotency-Key: sha256 of its method,
    its path (with the ticket's number) and its validated body as canonical JSON (sorted
    keys), so that a retry of the same request matches and another request does not."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(f"{request.method}\n{request.url.path}\n{canonical}".encode()).hexdigest()


def idempotency(
    request: Request, operator: Operator, header: str | None, body: object
) -> tuple[str | None, str | None]:
    """A request's idempotency key (request_key) and, when it has one, the fingerprint of the
    request (request_hash over its validated body; none for a request without a body)."""
    key = request_key(operator, header)
    if key is None:
        return None, None
    fields = body.model_dump(mode="json") if isinstance(body, BaseModel) else {}
    return key, request_hash(request, fields)


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
        found = await view.attachment(ticket.number, attachment_id) if ticket else None
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
    with the ticket the first request opened (the key used for another body: 422)."""
    ctx = context(request)
    intent = actions.open_intent(body.model_dump())
    request_id, fingerprint = idempotency(request, operator, key, body)
    try:
        outcome = await ctx.service.apply(
            Actor.operator(operator.user_id),
            intent,
            intents.Origin(request_id, None, fingerprint),
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


# The action routes, POST /tickets/{n}/actions/NAME, are made from the action registry: see
# ActionRoutes below.


class ActionRoutes:
    """One `POST /tickets/{n}/actions/NAME` route per action of the API channel that acts on a
    ticket, made from its declaration: the request body from its arguments, summary and
    description from its API texts, the operation id from `api_operation`. It follows the
    registry: an action registered later (a plugin starting) gets its route, a removed one
    loses it, and the OpenAPI schema is made again."""

    def __init__(self, api: FastAPI, registry: ActionRegistry) -> None:
        self.api = api
        self.routes: dict[str, APIRoute] = {}
        for spec in registry:
            self.add(spec)
        # The registry outlives many apps in tests: it holds this object only weakly.
        me = weakref.ref(self)

        def changed(change: str, spec: ActionSpec) -> None:
            routes = me()
            if routes is None:
                unsubscribe()
            elif change == "added":
                routes.add(spec)
            else:
                routes.remove(spec.name)

        unsubscribe = registry.subscribe(changed)

    def add(self, spec: ActionSpec) -> None:
        """Add the route of `spec`, when the API may ask for it on a ticket."""
        if (
            Channel.API not in spec.channels
            or spec.ticket is TicketUse.NONE
            or spec.is_query
            or spec.name in self.routes
        ):
            return
        handled = spec.intent is None
        self.api.router.add_api_route(
            f"/tickets/{{n}}/actions/{spec.name}",
            _action_endpoint(spec),
            methods=["POST"],
            response_model=ActionAnswerOut if handled else TicketDetail,
            summary=spec.api_summary or spec.name.replace("_", " ").capitalize(),
            description=spec.api_description or spec.summary,
            name=spec.operation_id,
            dependencies=[Depends(_bearer)],
            responses=_ERRORS,
        )
        self.routes[spec.name] = self.api.router.routes[-1]
        self.api.openapi_schema = None

    def remove(self, name: str) -> None:
        """Remove the route of the action `name` (nothing when it has none)."""
        route = self.routes.pop(name, None)
        if route is None:
            return
        self.api.router.routes[:] = [r for r in self.api.router.routes if r is not route]
        self.api.openapi_schema = None


def _action_endpoint(spec: ActionSpec) -> Callable[..., Awaitable[object]]:
    """The endpoint of one action; its signature (what FastAPI reads) names the action's
    body model, so each route documents and checks its own body."""
    model = body_model(spec)

    async def act(
        request: Request, operator: Operator, n: int, key: str | None = None, body: object = None
    ) -> object:
        ctx = context(request)
        fields = body.model_dump() if isinstance(body, BaseModel) else {}
        if spec.intent is None:
            await _detail(request, n)  # a handler never runs for a ticket that is not there
        request_id, fingerprint = idempotency(request, operator, key, body)
        done = await actions.run_action(
            ctx,
            spec,
            n,
            fields,
            operator.user_id,
            request_id,
            language=_renderer(request).language,
            channel=Channel.API,
            request_hash=fingerprint,
        )
        detail = await _detail(request, n)
        if spec.intent is not None:
            return detail
        answer = done.body if isinstance(done, Answer) else None
        return ActionAnswerOut(answer=answer, ticket=detail)

    parameters = [
        Parameter("request", Parameter.POSITIONAL_OR_KEYWORD, annotation=Request),
        Parameter("operator", Parameter.POSITIONAL_OR_KEYWORD, annotation=ApiOperator),
        Parameter("n", Parameter.POSITIONAL_OR_KEYWORD, annotation=int),
    ]
    if model is not None:
        parameters.append(Parameter("body", Parameter.POSITIONAL_OR_KEYWORD, annotation=model))
    parameters.append(
        Parameter("key", Parameter.POSITIONAL_OR_KEYWORD, default=None, annotation=IdempotencyKey)
    )
    act.__signature__ = Signature(parameters)  # type: ignore[attr-defined]
    act.__doc__ = spec.api_description or spec.summary
    return act


async def _handler_failed(request: Request, error: actions.HandlerFailed) -> JSONResponse:
    # The handler's stack is in the log already.
    return error_response(500, "internal", message_of(_renderer(request), "internal", {}))


async def _refused(request: Request, error: ActionRefused) -> JSONResponse:
    # A plugin's refusal is worded by the plugin, in the call's language (English here).
    return error_response(400, error.code, error.message)


# --- quarantine -----------------------------------------------------------------------------


@quarantine_router.get("/quarantine", response_model=QuarantineOut, summary="Quarantined mail")
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


@quarantine_router.post(
    "/quarantine/{mail_id}/retry", response_model=MailStateOut, summary="Process a mail again"
)
async def retry(request: Request, operator: ApiOperator, mail_id: int) -> MailStateOut:
    """Process a quarantined mail again; its new state (quarantined when it fails again)."""
    await _quarantined(request, mail_id)
    state = await context(request).retry_mail(mail_id)
    return MailStateOut(id=mail_id, state=state)


@quarantine_router.post("/quarantine/{mail_id}/discard", response_model=MailStateOut, summary="Discard a mail")
async def discard(request: Request, operator: ApiOperator, mail_id: int) -> MailStateOut:
    """Never process a quarantined mail (it stays in the database)."""
    async with context(request).repository.connection() as conn:
        if not await inbound.discard(conn, mail_id, context(request).now()):
            raise ApiError(404, "mail_not_found", f"no quarantined mail with id {mail_id}")
    return MailStateOut(id=mail_id, state="discarded")
