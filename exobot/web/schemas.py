"""The JSON API's request and response models (they also make its OpenAPI schema)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field, create_model

from exobot.core.actions import ActionSpec, ArgKind
from exobot.core.clock import utc  # times in the JSON say `Z`
from exobot.core.flags import ActiveFlag
from exobot.core.model import Entry, EntryKind, Status, Ticket
from exobot.core.references import format_reference
from exobot.core.text import mail_text
from exobot.db.inbound import InboundSummary
from exobot.db.repository import AttachmentMeta
from exobot.web.queries import Dashboard, TicketPage, TicketView

# --- errors --------------------------------------------------------------------------------


class ErrorOut(BaseModel):
    """Every error answer: a stable code for programs and an English sentence for people."""

    error: str = Field(description="machine-readable code, e.g. not_found, missing_text")
    message: str = Field(description="what went wrong, in English")


# --- tickets ---------------------------------------------------------------------------------


class TicketOut(BaseModel):
    """A ticket as listed."""

    number: int
    reference: str = Field(description="the public reference, e.g. suport#12")
    title: str
    requestor: str = Field(description="the member's email address")
    queue: str
    status: Status
    owner: str | None = Field(description="the owner's Matrix id, or null")
    created_at: datetime
    updated_at: datetime
    last_member_mail_at: datetime | None
    language: str

    @classmethod
    def of(cls, ticket: Ticket, prefix: str) -> TicketOut:
        """The API's view of a domain ticket."""
        return cls(**_ticket_fields(ticket, prefix))


def _ticket_fields(ticket: Ticket, prefix: str) -> dict[str, Any]:
    return {
        "number": ticket.number,
        "reference": format_reference(prefix, ticket.number),
        "title": ticket.title,
        "requestor": ticket.requestor,
        "queue": ticket.queue,
        "status": ticket.status,
        "owner": ticket.owner,
        "created_at": utc(ticket.created_at),
        "updated_at": utc(ticket.updated_at),
        "last_member_mail_at": utc(ticket.last_member_mail_at),
        "language": ticket.language,
    }


class AttachmentOut(BaseModel):
    """An attachment of a received mail; its bytes are at .../attachments/{id}."""

    id: int
    filename: str
    content_type: str
    size: int = Field(description="in bytes")

    @classmethod
    def of(cls, meta: AttachmentMeta) -> AttachmentOut:
        """The API's view of an attachment's metadata."""
        return cls(
            id=meta.id, filename=meta.filename, content_type=meta.content_type, size=meta.size
        )


class EntryOut(BaseModel):
    """One line of a ticket's history."""

    id: int
    kind: EntryKind
    actor: str = Field(description="a Matrix id, a member's address, or exobot's component")
    created_at: datetime
    body: str | None = Field(description="the text, quotes and signature trimmed; or null")
    data: dict[str, Any] = Field(description="what changed (from/to, recipients, ...)")
    attachments: list[AttachmentOut]

    @classmethod
    def of(cls, entry: Entry, attachments: list[AttachmentMeta]) -> EntryOut:
        """The API's view of a history entry."""
        return cls(
            id=entry.id or 0,
            kind=entry.kind,
            actor=entry.actor,
            created_at=utc(entry.created_at),
            # The one way mail text is shown anywhere (trimming, later masking).
            body=mail_text(entry.body) if entry.body else None,
            data=entry.data,
            attachments=[AttachmentOut.of(meta) for meta in attachments],
        )


class FlagOut(BaseModel):
    """An active flag: a plugin's mark on the ticket, not cleared since."""

    code: str = Field(description="the flag's short code, e.g. non-member")
    note: str = Field(description="plain text saying why (may be empty)")
    source: str = Field(description="who set it (a plugin's name)")
    since: datetime

    @classmethod
    def of(cls, flag: ActiveFlag) -> FlagOut:
        """The API's view of an active flag."""
        return cls(code=flag.code, note=flag.note, source=flag.source, since=utc(flag.since))


class TicketDetail(TicketOut):
    """A ticket with its participants, its active flags and its whole history, oldest first."""

    participants: list[str] = Field(description="the addresses that get the replies")
    flags: list[FlagOut] = Field(
        default_factory=list, description="the active flags, in the order they were set"
    )
    history: list[EntryOut]

    @classmethod
    def of_view(cls, view: TicketView, prefix: str) -> TicketDetail:
        """The API's view of the ticket page's data."""
        return cls(
            **_ticket_fields(view.ticket, prefix),
            participants=view.participants,
            flags=[FlagOut.of(flag) for flag in view.flags],
            history=[
                EntryOut.of(entry, view.attachments.get(entry.id or 0, []))
                for entry in view.history
            ],
        )


class TicketListOut(BaseModel):
    """One page of a ticket list."""

    tickets: list[TicketOut]
    total: int = Field(description="how many tickets match in all")
    page: int
    pages: int = Field(description="how many pages there are (at least 1)")

    @classmethod
    def of(cls, page: TicketPage, prefix: str) -> TicketListOut:
        """The API's view of a list page."""
        return cls(
            tickets=[TicketOut.of(t, prefix) for t in page.tickets],
            total=page.total,
            page=page.filter.page,
            pages=page.pages,
        )


class DashboardOut(BaseModel):
    """The overview: how many are new, counts per queue and status, what waits longest."""

    new: int = Field(description="tickets nobody has taken yet (should be zero)")
    counts: dict[str, dict[str, int]] = Field(description="queue → status → how many")
    oldest_waiting: list[TicketOut]
    stalled: list[TicketOut]
    stalled_total: int

    @classmethod
    def of(cls, board: Dashboard, prefix: str) -> DashboardOut:
        """The API's view of the dashboard."""
        return cls(
            new=board.new,
            counts=board.counts,
            oldest_waiting=[TicketOut.of(t, prefix) for t in board.oldest_waiting],
            stalled=[TicketOut.of(t, prefix) for t in board.stalled],
            stalled_total=board.stalled_total,
        )


class MeOut(BaseModel):
    """Who the token acts as."""

    user_id: str
    via: str = Field(description='"token:<name>"')


# --- requests --------------------------------------------------------------------------------

#: The longest text a request may carry (a reply, a comment, any action's argument): far more
#: than any reply is (a member's mail is kept up to 100,000 characters too, chat's messages
#: are at most 64 KiB); a longer one is refused (422) before it is written or mailed.
MAX_TEXT_CHARS = 100_000


class OpenTicketIn(BaseModel):
    """A ticket opened on a member's behalf (a phone call, a letter)."""

    requestor: str = Field(description="the member's email address")
    title: str
    text: str = Field("", max_length=MAX_TEXT_CHARS, description="a first note, kept as a comment")
    queue: str | None = Field(None, description="the default queue when left out")


# The request bodies of the action routes are made from the actions' declared arguments
# (`exobot.core.actions`): one field per argument, `add` and `remove` for participants.

_ADDRESS_LISTS = (
    ("add", "email addresses to add"),
    ("remove", "email addresses to remove"),
)
_bodies: dict[str, tuple[tuple, type[BaseModel]]] = {}


def _body_fields(spec: ActionSpec) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for argument in spec.arguments:
        if argument.kind is ArgKind.PARTICIPANTS:
            for name, description in _ADDRESS_LISTS:
                fields[name] = (list[str], Field(default_factory=list, description=description))
            continue
        extra: dict[str, Any] = {"max_length": MAX_TEXT_CHARS}
        if argument.description:
            extra["description"] = argument.description
        if argument.required:
            fields[argument.name] = (str, Field(**extra))
        else:
            fields[argument.name] = (str, Field("", **extra))
    return fields


def body_model(spec: ActionSpec) -> type[BaseModel] | None:
    """The request body model of an action's API route (None when it takes no arguments),
    named `spec.body_name`; actions naming the same body with the same arguments share one
    model (reply and comment: TextIn). ValueError when two declare one name differently."""
    if not spec.arguments:
        return None
    shape = tuple((a.name, a.kind, a.required, a.description) for a in spec.arguments)
    known = _bodies.get(spec.body_name)
    if known is not None:
        if known[0] != shape:
            raise ValueError(f"the body {spec.body_name!r} of {spec.name!r} is declared twice")
        return known[1]
    model = create_model(
        spec.body_name,
        __doc__=spec.api_body_doc or spec.api_summary or f"The arguments of {spec.name}.",
        **_body_fields(spec),
    )
    _bodies[spec.body_name] = (shape, model)
    return model


class ActionAnswerOut(BaseModel):
    """What an action carried out by a handler (a plugin's) gives back: its answer, if it
    answered, and the ticket as it is now."""

    answer: str | None = Field(description="the action's answer, or null when it acted")
    ticket: TicketDetail


# --- quarantine ------------------------------------------------------------------------------


class QuarantinedOut(BaseModel):
    """A received mail that could not be processed."""

    id: int
    received_at: datetime
    size: int = Field(description="of the raw mail, in bytes")
    sender: str | None
    subject: str | None
    message_id: str | None
    error: str | None
    attempts: int

    @classmethod
    def of(cls, item: InboundSummary) -> QuarantinedOut:
        """The API's view of a stored mail."""
        return cls(
            id=item.id,
            received_at=utc(item.received_at),
            size=item.size,
            sender=item.sender,
            subject=item.subject,
            message_id=item.message_id,
            error=item.error,
            attempts=item.attempts,
        )


class QuarantineOut(BaseModel):
    """The quarantine, newest first."""

    mails: list[QuarantinedOut]


class MailStateOut(BaseModel):
    """What became of a quarantined mail after a retry or a discard."""

    id: int
    state: str = Field(description="done, quarantined (failed again), discarded, ...")
