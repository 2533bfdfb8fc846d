"""Domain objects: tickets, their history entries, actors and mail as the core sees it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    """Request Tracker's lifecycle states."""

    NEW = "new"
    OPEN = "open"
    STALLED = "stalled"
    RESOLVED = "resolved"
    REJECTED = "rejected"


class EntryKind(StrEnum):
    """What a history entry records."""

    CREATED = "created"
    MAIL_IN = "mail_in"  # a member's correspondence
    AUTOMATIC_IN = "automatic_in"  # out-of-office and other automatic mail
    UNVERIFIED_IN = "unverified_in"  # mail naming the ticket from a non-participant
    BOUNCE = "bounce"  # a delivery failure report about one of our mails
    MAIL_OUT = "mail_out"  # mail we send (acknowledgement, reply, notice)
    COMMENT = "comment"
    STATUS = "status"
    OWNER = "owner"
    QUEUE = "queue"
    TITLE = "title"
    ACCEPTED = "accepted"  # an unverified mail accepted by an operator
    PARTICIPANTS = "participants"  # an operator added or removed participants
    DELIVERY_FAILED = "delivery_failed"
    DELIVERY_RETRIED = "delivery_retried"  # an administrator sent a given-up item again
    ALERT = "alert"  # a reminder raised by exobot: still new, or stalled for long
    FLAG = "flag"  # a mark a plugin set on a new mail (data: code, source; body: its note)
    REVEAL = "reveal"  # an operator saw the original (unmasked) text of an entry (data: entry)
    PURGE = "purge"  # the retention policy purged the ticket's texts (data: what, counted)
    ERASE = "erase"  # a person's data was erased on request (data: counts, never who)
    LANGUAGE = "language"  # an operator changed the language mailed to the member (from, to)


class ActorKind(StrEnum):
    """Who can act on a ticket."""

    MEMBER = "member"
    OPERATOR = "operator"
    SYSTEM = "system"


@dataclass(frozen=True)
class Actor:
    """Someone (or something) acting on tickets: a member's address, an operator, the system."""

    kind: ActorKind
    id: str

    @classmethod
    def member(cls, address: str) -> Actor:
        """A member, identified by their email address."""
        return cls(ActorKind.MEMBER, address.lower())

    @classmethod
    def operator(cls, user_id: str) -> Actor:
        """A volunteer, identified by their Matrix id."""
        return cls(ActorKind.OPERATOR, user_id)

    @classmethod
    def system(cls, component: str = "exobot") -> Actor:
        """exobot itself (alerts, retention, delivery reports)."""
        return cls(ActorKind.SYSTEM, component)

    def __str__(self) -> str:
        return self.id


@dataclass
class Ticket:
    """A support case. `number` is its public reference (`suport#N`) and is never reused."""

    number: int
    title: str
    requestor: str
    queue: str
    status: Status
    created_at: datetime
    updated_at: datetime
    owner: str | None = None
    last_member_mail_at: datetime | None = None
    # Our last reply or notice to the member (not the automatic acknowledgement): with
    # last_member_mail_at it says whose move it is (exobot.core.waiting).
    last_answer_at: datetime | None = None
    next_alert_at: datetime | None = None
    language: str = "ca"


@dataclass
class Entry:
    """One line of a ticket's history: who did what, when."""

    ticket_number: int
    kind: EntryKind
    actor: str
    created_at: datetime
    body: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    id: int | None = None


@dataclass(frozen=True)
class AttachmentInfo:
    """An attachment of an incoming mail, stored and never forwarded."""

    filename: str
    content_type: str
    data: bytes

    @property
    def size(self) -> int:
        """Size in bytes."""
        return len(self.data)


@dataclass(frozen=True)
class IncomingMail:
    """A received mail as the core needs it: already parsed and classified by the mail rules."""

    message_id: str
    sender: str
    sender_name: str
    requestor: str
    subject: str
    body: str
    cc: tuple[str, ...] = ()
    attachments: tuple[AttachmentInfo, ...] = ()
    received_at: datetime | None = None
    inbound_id: int | None = None
    bounce_status: str | None = None
    bounce_recipients: tuple[str, ...] = ()
    # The parser cut the body (the whole mail stays stored as the original).
    body_truncated: bool = False
    # The kinds of sensitive value (SensitiveKind values) found in the body or the subject,
    # sorted; when any, `body`/`subject` are masked and `originals` holds (original body,
    # original subject), each None when that part had nothing to mask.
    sensitive: tuple[str, ...] = ()
    originals: tuple[str | None, str | None] | None = None
    # The language the mail is written in, when its text tells (exobot.mail.language): a
    # ticket this mail opens speaks it to the member; None keeps the configured language.
    language: str | None = None
    # The instant the sender's Date header gives, when it has a readable one: a second mail
    # reusing a recorded Message-ID is a copy only when it was sent at the same instant.
    sent_at: datetime | None = None
