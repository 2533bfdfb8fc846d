"""Intents: what someone wants done to a ticket, independent of where they asked (chat, web, mail)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from exobot.core.imports import ImportedTicket
from exobot.core.model import IncomingMail, Status


class MailClass(StrEnum):
    """How the mail rules classified a received mail."""

    MEMBER = "member"  # correspondence from a participant (or a new ticket)
    AUTOMATIC = "automatic"  # out-of-office, auto-replies: recorded, never reopens
    UNVERIFIED = "unverified"  # names a ticket but the sender is not a participant
    BOUNCE = "bounce"  # a delivery failure report about one of our mails


@dataclass(frozen=True)
class ReceiveMail:
    """A received mail: opens a ticket (`ticket` None) or is appended to one."""

    mail: IncomingMail
    mail_class: MailClass
    ticket: int | None = None
    acknowledge: bool = False
    queue: str | None = None


@dataclass(frozen=True)
class OpenTicket:
    """An operator opens a ticket on a member's behalf (a phone call)."""

    requestor: str
    title: str
    text: str = ""
    queue: str | None = None


@dataclass(frozen=True)
class Take:
    """The acting operator becomes the owner."""

    ticket: int


@dataclass(frozen=True)
class Give:
    """Assign the ticket to another operator."""

    ticket: int
    owner: str


@dataclass(frozen=True)
class Untake:
    """Leave the ticket without owner."""

    ticket: int


@dataclass(frozen=True)
class Reply:
    """Email the member; with `resolve`, resolve the ticket in the same change ("reply and
    resolve"): one mail, the reply saying the ticket is resolved and how to reopen it, instead
    of the reply and then the resolved notice."""

    ticket: int
    text: str
    resolve: bool = False


@dataclass(frozen=True)
class Comment:
    """An internal note, never emailed."""

    ticket: int
    text: str


@dataclass(frozen=True)
class SetTitle:
    """Rename the ticket."""

    ticket: int
    title: str


@dataclass(frozen=True)
class Move:
    """Change the ticket's queue."""

    ticket: int
    queue: str


@dataclass(frozen=True)
class SetStatus:
    """An operator's explicit status change."""

    ticket: int
    status: Status


@dataclass(frozen=True)
class AcceptUnverified:
    """Accept the last unverified-sender mail as correspondence; its sender becomes a participant."""

    ticket: int


@dataclass(frozen=True)
class ChangeParticipants:
    """An operator adds and removes participants: the addresses that get copies of the
    replies and whose mail to the ticket counts as the member's. The requestor stays."""

    ticket: int
    add: tuple[str, ...] = ()
    remove: tuple[str, ...] = ()


@dataclass(frozen=True)
class RecordDeliveryFailure:
    """The outbox gave up on a mail (a permanent SMTP error or too many attempts), or on a
    chat post about the ticket (`channel="chat"`, the recipient its room), or on removing its
    posts from the chat for a privacy erasure (`redaction`)."""

    ticket: int
    outbox_id: int
    recipient: str
    error: str
    skipped: bool = False  # only this recipient was left out; the others got the mail
    channel: str = "mail"  # the outbox kind given up: "mail" or "chat"
    redaction: bool = False  # a chat row redacting posts (exobot privacy erase)


@dataclass(frozen=True)
class RetryDelivery:
    """An administrator sends again an outbox item that was given up (`exobot outbox retry`),
    once its cause is mended: due now, its attempts counted anew; noted on its ticket."""

    outbox_id: int


@dataclass(frozen=True)
class RaiseAlert:
    """exobot's sweep: remind the team of a ticket whose next alert time has come (still new,
    or stalled for long); does nothing when the ticket no longer needs it."""

    ticket: int


@dataclass(frozen=True)
class Notify:
    """A notice mailed to the ticket's requestor only (no Cc), recorded as an outgoing mail and
    shown like a reply; it never changes the ticket's status or owner. Operators and exobot
    itself (plugins) may send one.

    `automatic`: the notice is written by software, not by the person it is applied as (a
    plugin's template applied as the operator who acted, e.g. a procedure's state): mailed with
    `Auto-Submitted` like exobot's own notices, so auto-responders do not answer it. A notice
    exobot itself applies is always automatic."""

    ticket: int
    text: str
    automatic: bool = False


@dataclass(frozen=True)
class ClearFlag:
    """An operator clears an active flag (a plugin's mark on the ticket), with a note why."""

    ticket: int
    code: str
    note: str = ""


@dataclass(frozen=True)
class RevealOriginal:
    """An operator asks to see the original (unmasked) text of one of the ticket's entries;
    recorded in the history (who, when, which entry; never the text)."""

    ticket: int
    entry_id: int


@dataclass(frozen=True)
class SetLanguage:
    """An operator sets the language exobot writes to the member in (one of LANGUAGES)."""

    ticket: int
    language: str


@dataclass(frozen=True)
class ImportTicket:
    """A ticket from another helpdesk (exobot.core.imports), written with its own number and
    history and announced nowhere; only exobot itself (the importer) does it."""

    ticket: ImportedTicket


@dataclass(frozen=True)
class Origin:
    """Where a request came from, for the channel's own needs.

    `key` makes the request idempotent: a request whose key was already recorded is refused
    with AlreadyHandled (the key is recorded in the same transaction as the change). `reply`
    is opaque to the core: it travels with the announcement of the change, so the channel
    can answer where the request was made. `request_hash` fingerprints the request the key
    belongs to (the API's): recorded with the key, and a key recorded with another
    fingerprint is refused with KeyReused instead (nothing done); unknown on either side
    (None), a repeat is a retry.
    """

    key: str | None = None
    reply: dict | None = None
    request_hash: str | None = None


Intent = (
    ReceiveMail
    | OpenTicket
    | Take
    | Give
    | Untake
    | Reply
    | Comment
    | SetTitle
    | Move
    | SetStatus
    | AcceptUnverified
    | ChangeParticipants
    | RecordDeliveryFailure
    | RetryDelivery
    | RaiseAlert
    | Notify
    | ClearFlag
    | RevealOriginal
    | SetLanguage
    | ImportTicket
)

OPERATOR_INTENTS = (
    OpenTicket,
    Take,
    Give,
    Untake,
    Reply,
    Comment,
    SetTitle,
    Move,
    SetStatus,
    AcceptUnverified,
    ChangeParticipants,
    ClearFlag,
    RevealOriginal,
    SetLanguage,
)
