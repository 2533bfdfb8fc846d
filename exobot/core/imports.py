"""Tickets brought in from another helpdesk (Request Tracker), as the core receives them.

An importer (exobot.importer) reads the other system and hands each ticket to the service as
an `ImportTicket` intent (exobot.core.intents) carrying an `ImportedTicket`. The service writes
it in one transaction, with its original number, history, authors and times, and sends
nothing: no mail, no chat post, no alert. Running the same import again writes only what is
new, because every ticket and history item carries the other system's id (`external_id`),
recorded per `source`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from exobot.core.model import AttachmentInfo, EntryKind, Status


@dataclass(frozen=True)
class ImportedMessageId:
    """A Message-ID the other system recorded for a ticket's mail: a member's reply to it
    threads into the imported ticket. `direction` is "in" (a mail received) or "out" (sent)."""

    message_id: str
    direction: str = "in"


@dataclass(frozen=True)
class ImportedEntry:
    """One item of an imported ticket's history, with its original author and time.

    `kind` is one of the kinds the core writes itself, with the same `data` shapes:
    CREATED {"queue", "requestor"}; MAIL_IN / MAIL_OUT / COMMENT with `body`;
    STATUS / OWNER / QUEUE / TITLE {"from", "to"}. `external_id` is the other system's id of
    the item (RT's transaction id), unique within the ticket's source."""

    external_id: str
    kind: EntryKind
    actor: str  # a member's address, an operator's Matrix id, or "rt:NAME" for unknown staff
    created_at: datetime  # aware
    body: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    attachments: tuple[AttachmentInfo, ...] = ()
    message_ids: tuple[ImportedMessageId, ...] = ()


@dataclass(frozen=True)
class ImportedTicket:
    """A ticket of the other system as it is now, with (the new part of) its history.

    `number` is kept (`suport#310` stays 310). `merged` lists the numbers of the tickets
    merged into this one: each resolves to it in mail, chat and the web. `entries` may hold
    only the items not imported yet; items already imported (same source and external_id)
    are skipped by the service, so handing the whole history again is harmless."""

    source: str  # the other system, e.g. "rt:https://rt.example.org/"
    external_id: str  # its id of the ticket (RT's ticket id, the same as `number`)
    number: int
    title: str
    requestor: str  # the first requestor's address ("" when it had none)
    queue: str  # an exobot queue
    status: Status
    created_at: datetime
    updated_at: datetime
    owner: str | None = None  # a Matrix id (mapped) or None
    participants: tuple[str, ...] = ()  # requestors and Cc addresses
    entries: tuple[ImportedEntry, ...] = ()
    merged: tuple[int, ...] = ()
    language: str | None = None  # None: the configured language
