"""The procedures in the JSON API, under /api/v1/plugins/procedures (a bearer token of an
operator, like the rest of the API):

- `GET /` the procedures, newest first, with the web list's filters as query parameters;
- `GET /{id}` one procedure with its history; `GET /export.csv` the CSV export;
- `GET /members/{number}` a member's directory entry, procedures and directory changes;
- `POST /` create `{ticket, type, member?, service?, note?}`; `POST /{id}/done
  {note?, member_number?}`; `POST /{id}/cancel {reason}`. Each POST takes the API's
  `Idempotency-Key` header: a request sent again with the same key acts once and gets the
  same answer (one procedure recorded, the member mailed once). The key belongs to the
  request it came with (method, path and body, as in the core's API): sent again with a
  different one (another ticket, type or note, another procedure, done instead of cancel),
  it is refused with 422 `key_reused` and nothing is done.

Creating and finishing go through service.py like chat and the web. A refusal is 400 in the
API's one error shape, `{"error": code, "message": text}` (English, as the core's API words
its errors); an unknown procedure is 404. The service's KeyReused is the core's own refusal,
answered 422 `key_reused` by the API app's error handlers (exobot.web.api_errors), which
serve these routes too.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from exobot.web.api import IdempotencyKey, idempotency
from exobot.web.api_errors import ApiError
from exobot.web.deps import ApiOperator
from exobot_procedures import csv_export, service, store
from exobot_procedures.service import ProcedureRefused, type_name
from exobot_procedures.store import Procedure, ProcedureEvent, ProcedureFilter
from exobot_procedures.web import MAX_MEMBER, read_filter

if TYPE_CHECKING:
    from exobot_procedures.plugin import Procedures

__all__ = ["register", "register_api"]

#: The API speaks English, like the core's API errors.
LANGUAGE = "en"
MAX_LIMIT = 500


class ProcedureOut(BaseModel):
    """A treasury procedure."""

    id: int = Field(description="The procedure's number; its reference is P-{id}.")
    ref: str = Field(description="Its reference, e.g. P-12.")
    type: str = Field(description="The type's name in the configuration (join, leave, bank…).")
    type_name: str = Field(description="The type as people read it (English).")
    member: str = Field(
        description="The member number, or the requestor's address for a join of someone "
        "without a number yet."
    )
    service: str | None = Field(description="The service reference, for the service types.")
    ticket: int = Field(description="The ticket it was asked on.")
    state: str = Field(description="pending, done or cancelled.")
    asked_by: str = Field(description="Who recorded it (a Matrix id).")
    asked_at: datetime = Field(description="When it was recorded.")
    processed_by: str | None = Field(description="Who marked it done or cancelled it.")
    processed_at: datetime | None = Field(description="When it was done or cancelled.")
    note: str = Field(description="The note: a reference to the management tool, never data.")


class EventOut(BaseModel):
    """One line of a procedure's append-only history."""

    at: datetime = Field(description="When.")
    actor: str = Field(description="Who (a Matrix id).")
    kind: str = Field(description="created, done or cancelled.")
    note: str = Field(description="The note or the cancellation's reason.")
    member: str | None = Field(description="The member number given at this step (a join done).")


class ProcedureDetail(ProcedureOut):
    """A procedure with its history, oldest first."""

    history: list[EventOut] = Field(description="Its history, oldest first; never edited.")


class MemberOut(BaseModel):
    """A member of the directory."""

    number: str = Field(description="The member number.")
    address: str | None = Field(description="The first (communication) address.")
    address2: str | None = Field(description="The second (billing) address.")
    active: bool = Field(description="Whether the membership is current.")
    since: datetime | None = Field(description="When it became active.")
    until: datetime | None = Field(description="When it ended, if it did.")
    updated_at: datetime = Field(description="The entry's last change.")


class MemberChangeOut(BaseModel):
    """One change of the member directory."""

    at: datetime = Field(description="When.")
    actor: str = Field(description="Who (a Matrix id, or the import).")
    change: str = Field(description="added, updated, deactivated, reactivated or linked.")
    detail: str = Field(
        description="Which fields changed (names, not values), or the procedure or ticket."
    )


class MemberDetail(BaseModel):
    """A member: the directory's entry (null when not in it), procedures and changes."""

    number: str = Field(description="The member number asked for.")
    member: MemberOut | None = Field(description="The directory's entry; null: not in it.")
    procedures: list[ProcedureOut] = Field(description="Their procedures, newest first.")
    changes: list[MemberChangeOut] = Field(description="The directory's changes, oldest first.")


class CreateIn(BaseModel):
    """A procedure to record on a ticket (the ticket moves to the procedures queue)."""

    model_config = ConfigDict(extra="forbid")

    ticket: int = Field(description="The ticket's number.", gt=0)
    type: str = Field(description="A type's name or any of its words (join, alta, bank…).",
                      max_length=64)
    member: str | None = Field(
        None, description="The member number; may be left out for a join (the requestor's "
        "address is used).", max_length=MAX_MEMBER)
    service: str | None = Field(
        None, description="The service reference, required by the service types.",
        max_length=200)
    note: str = Field("", description="A reference, never bank or identity data (refused).",
                      max_length=store.MAX_NOTE)


class DoneIn(BaseModel):
    """Marking a procedure done (the ticket's status does not change)."""

    model_config = ConfigDict(extra="forbid")

    note: str = Field("", description="An optional note (a reference).",
                      max_length=store.MAX_NOTE)
    member_number: str | None = Field(
        None, description="The new member's number, for a join recorded with an address.",
        max_length=MAX_MEMBER)


class CancelIn(BaseModel):
    """Cancelling a procedure (the ticket's status does not change)."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(description="Why it is cancelled (required).", min_length=1,
                        max_length=store.MAX_NOTE)


def procedure_out(plugin: Procedures, p: Procedure) -> ProcedureOut:
    """A procedure as the API answers it."""
    return ProcedureOut(
        id=p.id, ref=p.ref, type=p.type, type_name=type_name(plugin, p.type, LANGUAGE),
        member=p.member, service=p.service, ticket=p.ticket, state=p.state,
        asked_by=p.asked_by, asked_at=p.asked_at, processed_by=p.processed_by,
        processed_at=p.processed_at, note=p.note,
    )


def _event_out(event: ProcedureEvent) -> EventOut:
    return EventOut(at=event.at, actor=event.actor, kind=event.kind, note=event.note,
                    member=event.member)


def _refused(refused: ProcedureRefused) -> ApiError:
    status = 404 if refused.code in ("unknown_procedure", "not_found") else 400
    if refused.code in ("not_pending", "number_taken"):
        # Valid, but not in the current state (of the procedure; of the member directory,
        # whose number belongs to another member), like the core's conflicts.
        status = 409
    return ApiError(status, refused.code, refused.message)


def register_api(plugin: Procedures) -> None:
    """Mount the routes under /api/v1/plugins/procedures."""
    plugin.ctx.api_router(router(plugin))


#: What the plugin's start() calls.
register = register_api


def router(plugin: Procedures) -> APIRouter:
    """The API routes."""
    api = APIRouter(tags=["procedures"])
    ctx = plugin.ctx

    async def detail(procedure_id: int) -> ProcedureDetail:
        async with ctx.reading() as reader:
            p = await store.get(reader.conn, procedure_id)
            events = await store.history(reader.conn, procedure_id) if p else []
        if p is None:
            raise ApiError(404, "not_found", f"There is no procedure P-{procedure_id}.")
        return ProcedureDetail(**procedure_out(plugin, p).model_dump(),
                               history=[_event_out(e) for e in events])

    def listing(request: Request) -> ProcedureFilter:
        found = read_filter(plugin, request.query_params, LANGUAGE, ctx.timezone)
        if found.problems:
            raise ApiError(400, "bad_filter", " ".join(found.problems))
        return found.where

    @api.get("/", summary="List procedures")
    async def list_procedures(
        request: Request,
        operator: ApiOperator,
        type: Annotated[str | None, Query(description="A type's name or word.")] = None,
        state: Annotated[str | None, Query(description="pending, done or cancelled.")] = None,
        member: Annotated[str | None, Query(description="A member number or address.")] = None,
        ticket: Annotated[int | None, Query(description="A ticket's number.")] = None,
        from_: Annotated[str | None, Query(alias="from",
                                           description="First day asked, YYYY-MM-DD.")] = None,
        to: Annotated[str | None, Query(description="Last day asked, YYYY-MM-DD.")] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="At most this many.")] = 100,
        offset: Annotated[int, Query(ge=0, le=10_000_000, description="Skip this many.")] = 0,
    ) -> list[ProcedureOut]:
        """The procedures, newest first; the days are in the configured time zone, both
        included. 400 when a filter cannot be read."""
        where = listing(request)
        async with ctx.reading() as reader:
            found = await store.search(reader.conn, where, limit=limit, offset=offset)
        return [procedure_out(plugin, p) for p in found]

    @api.get(
        "/export.csv",
        summary="Export procedures as CSV",
        response_class=Response,
        responses={200: {"content": {"text/csv": {}},
                         "description": "The CSV (formula-like cells start with ')."}},
    )
    async def export(
        request: Request,
        operator: ApiOperator,
        type: Annotated[str | None, Query(description="A type's name or word.")] = None,
        state: Annotated[str | None, Query(description="pending, done or cancelled.")] = None,
        member: Annotated[str | None, Query(description="A member number or address.")] = None,
        from_: Annotated[str | None, Query(alias="from",
                                           description="First day asked, YYYY-MM-DD.")] = None,
        to: Annotated[str | None, Query(description="Last day asked, YYYY-MM-DD.")] = None,
    ) -> Response:
        """The procedures the filters select as CSV, the web page's export."""
        return await csv_export.response(plugin, listing(request), LANGUAGE)

    @api.get("/members/{number}", summary="A member's entry, procedures and changes")
    async def member_detail(number: str, operator: ApiOperator) -> MemberDetail:
        """The directory's entry (null when not in it; 404 when nothing is known about the
        number), the member's procedures (newest first) and directory changes."""
        number = number.strip()[:MAX_MEMBER]
        async with ctx.reading() as reader:
            found = await store.get_member(reader.conn, number)
            changes = await store.member_history(reader.conn, number)
            procedures = await store.search(reader.conn, ProcedureFilter(member=number),
                                            limit=MAX_LIMIT)
        if found is None and not changes and not procedures:
            raise ApiError(404, "not_found", f"Nothing is known about member {number}.")
        return MemberDetail(
            number=number,
            member=MemberOut(**found.__dict__) if found else None,
            procedures=[procedure_out(plugin, p) for p in procedures],
            changes=[MemberChangeOut(at=c.at, actor=c.actor, change=c.change, detail=c.detail)
                     for c in changes],
        )

    @api.get("/{procedure_id:int}", summary="One procedure with its history")
    async def get_procedure(procedure_id: int, operator: ApiOperator) -> ProcedureDetail:
        """A procedure and its append-only history; 404 when there is none."""
        return await detail(procedure_id)

    @api.post("/", status_code=201, summary="Record a procedure on a ticket")
    async def create(
        request: Request, body: CreateIn, operator: ApiOperator, key: IdempotencyKey = None
    ) -> ProcedureDetail:
        """Records a pending procedure, moves the ticket to the procedures queue when it is
        elsewhere and mails the requestor (when the type says so). 400 with the reason when
        refused (unknown type, missing member or service, a note holding an IBAN, a card or
        an identity number…), 404 for an unknown ticket. A retry with the same
        Idempotency-Key records nothing more and answers with the procedure it recorded; the
        key sent with another body: 422 `key_reused`, nothing recorded."""
        request_key, request_hash = idempotency(request, operator, key, body)
        try:
            created = await service.create_procedure(
                plugin, ticket=body.ticket, type=body.type, member=body.member,
                service=body.service, note=body.note, actor=operator.user_id, language=LANGUAGE,
                key=request_key, request_hash=request_hash,
            )
        except ProcedureRefused as refused:
            raise _refused(refused) from None
        return await detail(created.id)

    @api.post("/{procedure_id:int}/done", summary="Mark a procedure done")
    async def done(
        request: Request,
        procedure_id: int,
        body: DoneIn,
        operator: ApiOperator,
        key: IdempotencyKey = None,
    ) -> ProcedureDetail:
        """Marks a pending procedure done and tells the requestor; a join done adds the
        member, a leave ends the membership. 404 for an unknown procedure, 409 when it is
        no longer pending or a join's number is another active member's (`number_taken`),
        400 otherwise refused; an Idempotency-Key already used for
        another request (another body or procedure, a cancel): 422 `key_reused`."""
        request_key, request_hash = idempotency(request, operator, key, body)
        try:
            await service.finish_procedure(
                plugin, procedure_id, state="done", note=body.note, actor=operator.user_id,
                language=LANGUAGE, member_number=body.member_number,
                key=request_key, request_hash=request_hash,
            )
        except ProcedureRefused as refused:
            raise _refused(refused) from None
        return await detail(procedure_id)

    @api.post("/{procedure_id:int}/cancel", summary="Cancel a procedure")
    async def cancel(
        request: Request,
        procedure_id: int,
        body: CancelIn,
        operator: ApiOperator,
        key: IdempotencyKey = None,
    ) -> ProcedureDetail:
        """Cancels a pending procedure with its reason and tells the requestor. 404 for an
        unknown procedure, 409 when it is no longer pending, 400 otherwise refused; an
        Idempotency-Key already used for another request (another body or procedure, a
        done): 422 `key_reused`."""
        request_key, request_hash = idempotency(request, operator, key, body)
        try:
            await service.finish_procedure(
                plugin, procedure_id, state="cancelled", note=body.reason,
                actor=operator.user_id, language=LANGUAGE, key=request_key,
                request_hash=request_hash,
            )
        except ProcedureRefused as refused:
            raise _refused(refused) from None
        return await detail(procedure_id)

    return api
