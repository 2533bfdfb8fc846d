"""The database schema as SQLModel tables. Alembic migrations in migrations/ create it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    Text,
    UniqueConstraint,
)
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel


class UtcDateTime(TypeDecorator):
    """Aware datetimes stored as UTC and read back as aware UTC, on every backend (SQLite
    would otherwise drop the offset and keep the wall time)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        """Convert to UTC before storing; a naive datetime is a bug in the caller."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass an aware one")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        """Attach UTC to what SQLite gives back naive."""
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _dt(**kw: Any) -> Any:
    return Field(sa_column=Column(UtcDateTime(), **kw))


class TicketRow(SQLModel, table=True):
    """A ticket; `id` is its public number, never reused (AUTOINCREMENT / a sequence)."""

    __tablename__ = "tickets"
    __table_args__ = (
        Index("ix_tickets_status_queue", "status", "queue"),
        Index("ix_tickets_next_alert_at", "next_alert_at"),
        Index("ix_tickets_updated_at", "updated_at"),
        Index("ix_tickets_queue_status_id", "queue", "status", "id"),
        Index("ix_tickets_owner_status_id", "owner", "status", "id"),
        Index("ix_tickets_status_id", "status", "id"),
        {"sqlite_autoincrement": True},
    )

    id: int | None = Field(default=None, primary_key=True)
    title: str
    requestor: str = Field(index=True)
    owner: str | None = None  # indexed by ix_tickets_owner_status_id
    queue: str
    status: str
    language: str = "ca"
    created_at: datetime = _dt(nullable=False)
    updated_at: datetime = _dt(nullable=False)
    last_member_mail_at: datetime | None = _dt(nullable=True)
    last_answer_at: datetime | None = _dt(nullable=True)  # our last reply/notice (0006)
    next_alert_at: datetime | None = _dt(nullable=True)


class EntryRow(SQLModel, table=True):
    """One line of a ticket's history."""

    __tablename__ = "entries"
    __table_args__ = (
        Index("ix_entries_ticket_kind", "ticket_id", "kind"),
        # Counting what one sender opened lately (mail.new_tickets_per_sender_per_hour).
        Index("ix_entries_actor_created", "actor", "created_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    ticket_id: int = Field(foreign_key="tickets.id", index=True)
    kind: str
    actor: str
    created_at: datetime = _dt(nullable=False)
    body: str | None = None
    data: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class EntryOriginalRow(SQLModel, table=True):
    """The original text of an entry whose stored body or subject was masked (sensitive values
    found in it): read only by an operator's explicit reveal, purged with the entry."""

    __tablename__ = "entry_originals"

    entry_id: int = Field(
        sa_column=Column(Integer, ForeignKey("entries.id", ondelete="CASCADE"), primary_key=True)
    )
    ticket_id: int = Field(index=True)
    body: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    subject: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    kinds: str = Field(sa_column=Column(Text, nullable=False))  # JSON list of SensitiveKind
    created_at: datetime = _dt(nullable=False)


class ParticipantRow(SQLModel, table=True):
    """An address that may write to a ticket."""

    __tablename__ = "participants"
    __table_args__ = (UniqueConstraint("ticket_id", "address"),)

    id: int | None = Field(default=None, primary_key=True)
    ticket_id: int = Field(foreign_key="tickets.id", index=True)
    address: str
    source: str
    created_at: datetime = _dt(nullable=False)


class MailMessageRow(SQLModel, table=True):
    """A Message-ID belonging to a ticket, in or out: threading and de-duplication."""

    __tablename__ = "mail_messages"
    __table_args__ = (UniqueConstraint("message_id", "direction"),)

    id: int | None = Field(default=None, primary_key=True)
    message_id: str = Field(index=True)
    ticket_id: int = Field(foreign_key="tickets.id", index=True)
    direction: str  # "in" | "out"
    entry_id: int | None = None
    created_at: datetime = _dt(nullable=False)


class InboundMailRow(SQLModel, table=True):
    """A mail exactly as received, stored before it is parsed."""

    __tablename__ = "inbound_mail"
    __table_args__ = (
        UniqueConstraint("mailbox", "uidvalidity", "uid"),
        Index("ix_inbound_state", "state"),
    )

    id: int | None = Field(default=None, primary_key=True)
    mailbox: str
    uidvalidity: int
    uid: int
    raw: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    size: int
    message_id: str | None = Field(default=None, index=True)
    subject: str | None = None
    sender: str | None = None
    # received → done | duplicate | dropped | ignored | quarantined | discarded
    state: str = "received"
    ticket_id: int | None = None
    error: str | None = None
    attempts: int = 0
    received_at: datetime = _dt(nullable=False)
    processed_at: datetime | None = _dt(nullable=True)


class OutboxRow(SQLModel, table=True):
    """An outward effect (a mail now, Matrix posts later) waiting for its worker."""

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_state_kind_next", "state", "kind", "next_try_at"),
        Index("ix_outbox_recipient_template", "recipient", "template", "created_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    kind: str  # "mail"
    ticket_id: int | None = Field(default=None, index=True)
    template: str | None = None
    recipient: str | None = None
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    state: str = "pending"  # pending → sent | failed
    attempts: int = 0
    next_try_at: datetime = _dt(nullable=False)
    last_error: str | None = None
    created_at: datetime = _dt(nullable=False)
    done_at: datetime | None = _dt(nullable=True)


class AttachmentRow(SQLModel, table=True):
    """An attachment of a received mail: stored, shown to operators, never forwarded."""

    __tablename__ = "attachments"

    id: int | None = Field(default=None, primary_key=True)
    ticket_id: int = Field(foreign_key="tickets.id", index=True)
    entry_id: int = Field(foreign_key="entries.id", index=True)
    filename: str
    content_type: str
    size: int
    data: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class StateRow(SQLModel, table=True):
    """Small key-value state: IMAP positions, the generated HMAC secret, sync tokens."""

    __tablename__ = "state"

    key: str = Field(primary_key=True)
    value: str


class PendingErasureRow(SQLModel, table=True):
    """A privacy erasure whose core part is committed and whose plugins' part is not done yet
    (it was interrupted): the next erasure finishes it first. Its addresses are kept only
    until then."""

    __tablename__ = "pending_erasures"

    id: int | None = Field(default=None, primary_key=True)
    addresses: list[str] = Field(sa_column=Column(JSON, nullable=False))
    tickets: list[int] = Field(sa_column=Column(JSON, nullable=False))  # they requested
    created_at: datetime = _dt(nullable=False)


class HandledKeyRow(SQLModel, table=True):
    """An idempotency key (e.g. a Matrix event id) recorded with the change it caused."""

    __tablename__ = "handled_keys"

    key: str = Field(primary_key=True)
    handled_at: datetime = _dt(nullable=False)
    ticket_id: int | None = None  # the ticket the request made or changed
    # A fingerprint of the request the key came with (the API's: sha256 of its method, path
    # and body), so that the key reused for another request is refused; None when unknown
    # (chat and the web forms, or rows recorded before migration 0009).
    request_hash: str | None = None


class ChatThreadRow(SQLModel, table=True):
    """A ticket's root message in a chat room; the newest one of a ticket is its thread."""

    __tablename__ = "chat_threads"
    __table_args__ = (UniqueConstraint("room_id", "root_event_id"),)

    id: int | None = Field(default=None, primary_key=True)
    ticket_id: int = Field(foreign_key="tickets.id", index=True)
    queue: str
    room_id: str
    root_event_id: str
    created_at: datetime = _dt(nullable=False)


class ChatPostRow(SQLModel, table=True):
    """A message a chat outbox row posted: a retry skips the parts already posted."""

    __tablename__ = "chat_posts"
    __table_args__ = (UniqueConstraint("outbox_id", "part"),)

    id: int | None = Field(default=None, primary_key=True)
    outbox_id: int = Field(index=True)
    part: int
    room_id: str
    event_id: str
    created_at: datetime = _dt(nullable=False)
    # The tickets the post showed besides its row's own (a digest's oldest waiting tickets):
    # an erasure redacts the posts that showed one of the tickets it erases.
    tickets: list[int] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    # The addresses the post showed, as SHA-256 digests of their lower-cased forms
    # (exobot.privacy.concerns.shown_addresses), no text: an erasure redacts the posts that showed the
    # person once the retention policy has dropped the texts it would search, and removes
    # their digest. None: posted before migration 0013 (not known; their texts are searched).
    addresses: list[str] | None = Field(default=None, sa_column=Column(JSON, nullable=True))


class WebSessionRow(SQLModel, table=True):
    """A browser session of an operator; only the hash of its cookie is stored."""

    __tablename__ = "web_sessions"

    token_hash: str = Field(primary_key=True)
    user_id: str
    csrf: str  # the token every form of this session carries
    created_at: datetime = _dt(nullable=False)
    expires_at: datetime = _dt(nullable=False, index=True)


class LoginLinkRow(SQLModel, table=True):
    """A one-time login link sent by `!login`; only the hash of its token is stored."""

    __tablename__ = "login_links"

    token_hash: str = Field(primary_key=True)
    user_id: str
    created_at: datetime = _dt(nullable=False)
    expires_at: datetime = _dt(nullable=False)
    used_at: datetime | None = _dt(nullable=True)


class ApiTokenRow(SQLModel, table=True):
    """A bearer token of the JSON API, acting as one operator; only its hash is stored."""

    __tablename__ = "api_tokens"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True)
    token_hash: str = Field(unique=True)
    user_id: str
    created_at: datetime = _dt(nullable=False)
    revoked_at: datetime | None = _dt(nullable=True)
    last_used_at: datetime | None = _dt(nullable=True)


class DirectRoomRow(SQLModel, table=True):
    """The direct-message room the bot opened with an operator (for `!login` links)."""

    __tablename__ = "direct_rooms"

    user_id: str = Field(primary_key=True)
    room_id: str
    created_at: datetime = _dt(nullable=False)


class TicketAliasRow(SQLModel, table=True):
    """A number that names another ticket: a ticket merged into it in the system it was
    imported from (Request Tracker's merge). Mail, chat and the web resolve it (0007)."""

    __tablename__ = "ticket_aliases"

    number: int = Field(sa_column=Column(Integer, primary_key=True, autoincrement=False))
    ticket_id: int = Field(foreign_key="tickets.id", index=True)
    source: str  # the system the merge happened in, e.g. "rt:https://rt.example.org/"
    created_at: datetime = _dt(nullable=False)


class ImportedRecordRow(SQLModel, table=True):
    """Something an import wrote, by the other system's id: a ticket (`kind` "ticket") or a
    history item (`kind` "entry", with the entry it became). Makes an import idempotent and
    tells an imported number from a collision (0007)."""

    __tablename__ = "imported_records"

    source: str = Field(primary_key=True)
    kind: str = Field(primary_key=True)  # "ticket" | "entry"
    external_id: str = Field(primary_key=True)
    ticket_id: int = Field(foreign_key="tickets.id", index=True)
    entry_id: int | None = None
    created_at: datetime = _dt(nullable=False)
