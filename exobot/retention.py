"""The retention policy (`privacy.retention`, `privacy.raw_mail_retention`): a daily job that
purges what is no longer needed.

- A ticket resolved or rejected longer than `retention` ago (counted from its last status
  change) loses its texts: the bodies, mail subjects and senders' display names of its
  correspondence and comments, its attachments (their entries keep only each one's type and
  size, no file name), the originals kept by masking, the raw mails it came from, the texts of its
  sent mails in the outbox and the search index rows of all those. Its title (masked when
  stored), metadata, participants, Message-IDs and history of changes stay, and one PURGE
  entry says what was purged. A ticket reopened before its time is not purged; one purged and
  written to again is purged again (only what came after the PURGE entry) once it has been
  closed long enough anew.
- A raw intake mail loses its bytes (and its unmasked subject) `raw_mail_retention` after it
  was processed; its row stays, with the Message-ID and state, and the Message-IDs recorded
  per ticket keep recognising the same mail delivered again.
- The texts of delivered outbox rows (a reply's text, a chat answer, the subject, sender and
  error of a quarantine notice, the name a mail greets) go after `raw_mail_retention` too:
  the ticket's history keeps what was said.
- Entries purged by an earlier version that kept the sender's name or the attachments' file
  names lost them once, in migration 0012: nothing of them is left for a run to do.

Every step is idempotent: a second run finds nothing left to do. Plugins' tables (procedures'
records) are not touched.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Text, cast, func, or_, select, text, update

from exobot.core.clock import Clock, SystemClock
from exobot.core.model import Actor, Entry, EntryKind, Status
from exobot.db import inbound
from exobot.db.repository import SqlRepository, SqlUnitOfWork, search_rowid
from exobot.db.tables import (
    AttachmentRow,
    EntryOriginalRow,
    EntryRow,
    InboundMailRow,
    OutboxRow,
    TicketRow,
)

log = logging.getLogger("exobot.retention")

RETENTION = Actor.system("retention")
T = TicketRow.__table__
E = EntryRow.__table__
A = AttachmentRow.__table__
I = InboundMailRow.__table__  # noqa: E741
O = OutboxRow.__table__  # noqa: E741
EO = EntryOriginalRow.__table__

CLOSED = (Status.RESOLVED.value, Status.REJECTED.value)
# The entries whose texts are purged: correspondence and comments. Changes (status, owner,
# queue, title, participants), flags, alerts and delivery failures are the history that stays.
TEXT_KINDS = tuple(
    k.value
    for k in (
        EntryKind.MAIL_IN,
        EntryKind.AUTOMATIC_IN,
        EntryKind.UNVERIFIED_IN,
        EntryKind.BOUNCE,
        EntryKind.MAIL_OUT,
        EntryKind.COMMENT,
    )
)
# Texts in an entry's data: a mail's subject (its title-like first line) and the sender's
# display name. Attachments keep only what is not personal (ATTACHMENT_KEPT): no file name.
TEXT_DATA_KEYS = ("subject", "from_name")
ATTACHMENT_KEPT = ("content_type", "size")
# Texts in an outbox row's payload: a mail's text and plugin paragraphs, a chat answer, the
# subject of the mail a notice is about (a quarantine post, the too-big notice), the sender
# and error of a quarantine post, the name a mail greets, a plugin's image. A delivered row
# needs none of them: the row stays (who, when, which template) for the record.
TEXT_PAYLOAD_KEYS = (
    "text", "paragraphs", "body", "html", "subject", "sender", "error", "name", "image",
)  # fmt: skip
BATCH = 500  # tickets, raw mails or outbox rows looked at per query


@dataclass
class RetentionReport:
    """What one run purged."""

    tickets: int = 0
    entries: int = 0
    attachments: int = 0
    raw_mails: int = 0
    outbox_rows: int = 0
    purged: list[int] = field(default_factory=list)  # ticket numbers

    def __bool__(self) -> bool:
        return bool(self.tickets or self.raw_mails or self.outbox_rows)


def _closed_at() -> Any:
    """When each ticket last changed status (a correlated subquery on `tickets`)."""
    return (
        select(func.max(E.c.created_at))
        .where(E.c.ticket_id == T.c.id, E.c.kind == EntryKind.STATUS.value)
        .scalar_subquery()
    )


def _last_purge() -> Any:
    """The id of each ticket's newest PURGE entry, 0 when it has none."""
    return func.coalesce(
        select(func.max(E.c.id))
        .where(E.c.ticket_id == T.c.id, E.c.kind == EntryKind.PURGE.value)
        .correlate(T)  # two levels down (inside EXISTS): not correlated by itself
        .scalar_subquery(),
        0,
    )


def _due_tickets(cutoff: datetime, after: int, limit: int) -> Any:
    """Closed tickets (numbers above `after`) whose last status change is older than `cutoff`
    and that hold texts written since their last purge."""
    later = E.alias("later")
    unpurged = (
        select(later.c.id)
        .where(
            later.c.ticket_id == T.c.id,
            later.c.kind.in_(TEXT_KINDS),
            later.c.id > _last_purge(),
        )
        .exists()
    )
    return (
        select(T.c.id)
        .where(T.c.id > after, T.c.status.in_(CLOSED), _closed_at() < cutoff, unpurged)
        .order_by(T.c.id)
        .limit(limit)
    )


class Retention:
    """The retention job: `run_once()` is one pass (the scheduler runs it daily)."""

    def __init__(
        self,
        repository: SqlRepository,
        *,
        retention: timedelta,
        raw_mail_retention: timedelta,
        clock: Clock | None = None,
    ) -> None:
        self.repository = repository
        self.retention = retention
        self.raw_mail_retention = raw_mail_retention
        self.clock = clock or SystemClock()

    async def run_once(self) -> RetentionReport:
        """Purge whatever is due now; returns what was purged."""
        now = self.clock.now()
        report = RetentionReport()
        await self._purge_tickets(now, report)
        await self._drop_raw_mails(now, report)
        await self._drop_outbox_texts(now, report)
        if report:
            log.info(
                "retention: %d tickets purged (%d entries, %d attachments), %d raw mails and"
                " %d outbox texts dropped",
                report.tickets, report.entries, report.attachments, report.raw_mails,
                report.outbox_rows,
            )  # fmt: skip
        return report

    # -- closed tickets -------------------------------------------------------------------

    async def _purge_tickets(self, now: datetime, report: RetentionReport) -> None:
        cutoff = now - self.retention
        after = 0
        while True:
            async with self.repository.reading() as view:
                due = [r[0] for r in await view.conn.execute(_due_tickets(cutoff, after, BATCH))]
            for number in due:
                # One transaction per ticket: a ticket is locked only while its own texts go.
                counts = await self.repository.run(
                    lambda uow, n=number: purge_ticket(uow, n, cutoff),
                    now=now,
                )
                if counts is not None:
                    report.tickets += 1
                    report.entries += counts["entries"]
                    report.attachments += counts["attachments"]
                    report.purged.append(number)
            if len(due) < BATCH:
                return
            after = due[-1]

    # -- raw mails and outbox texts ---------------------------------------------------------

    async def _drop_raw_mails(self, now: datetime, report: RetentionReport) -> None:
        cutoff = now - self.raw_mail_retention
        while True:
            async with self.repository.connection() as conn:
                ids = [
                    r[0]
                    for r in await conn.execute(
                        select(I.c.id)
                        .where(
                            I.c.state.in_(inbound.FINAL_STATES),
                            I.c.processed_at < cutoff,
                            or_(func.length(I.c.raw) > 0, I.c.subject.is_not(None)),
                        )
                        .limit(BATCH)
                    )
                ]
                if ids:
                    await conn.execute(
                        update(I).where(I.c.id.in_(ids)).values(raw=b"", subject=None)
                    )
            report.raw_mails += len(ids)
            if len(ids) < BATCH:
                return

    async def _drop_outbox_texts(self, now: datetime, report: RetentionReport) -> None:
        cutoff = now - self.raw_mail_retention
        last = 0
        while True:
            # Only the rows still holding a text are read: those stripped on earlier days and
            # those that never held one (digests, ticket posts) pile up over the years, and
            # were read and decoded again every day. Read-only, so the scan holds no write
            # lock on SQLite.
            async with self.repository.reading() as view:
                ids = [
                    r[0]
                    for r in await view.conn.execute(
                        select(O.c.id)
                        .where(
                            O.c.id > last,
                            O.c.state == "sent",
                            O.c.done_at < cutoff,
                            _holds_text(),
                        )
                        .order_by(O.c.id)
                        .limit(BATCH)
                    )
                ]
            if ids:
                async with self.repository.connection() as conn:
                    rows = await conn.execute(select(O.c.id, O.c.payload).where(O.c.id.in_(ids)))
                    for row_id, payload in rows.all():
                        stripped = _without_texts(payload)
                        if stripped is not None:
                            await conn.execute(
                                update(O).where(O.c.id == row_id).values(payload=stripped)
                            )
                            report.outbox_rows += 1
            if len(ids) < BATCH:
                return
            last = ids[-1]


# The JSON of a payload value _without_texts() leaves alone: a missing key (SQL NULL on
# PostgreSQL, "null" once quoted on SQLite), null, and the empty or false values.
NO_TEXT = ("null", '""', "[]", "{}", "false", "0")


def _holds_text() -> Any:
    """SQL: the outbox row's payload has a text _without_texts() would drop (a key of
    TEXT_PAYLOAD_KEYS with a non-empty value), on SQLite and PostgreSQL alike."""
    # payload[key] is the value as JSON (SQLite: JSON_QUOTE(JSON_EXTRACT(..)), PostgreSQL:
    # payload -> key), so a text "0" ('"0"') is told from the number 0 ('0'). A value
    # written with other spacing only makes a row read again, never one skipped.
    return or_(
        *(
            func.coalesce(cast(O.c.payload[key], Text), "null").not_in(NO_TEXT)
            for key in TEXT_PAYLOAD_KEYS
        )
    )


def _purged_data(data: dict[str, Any] | None) -> dict[str, Any]:
    """An entry's data once its texts are purged: no texts, and of each attachment only what
    is not personal."""
    # Migration 0012 holds a frozen copy, which mended the entries purged before this dropped
    # names and file names: purging more here later needs a new migration for the entries
    # purged until then, since no run goes back over them.
    kept = {k: v for k, v in (data or {}).items() if k not in TEXT_DATA_KEYS}
    if isinstance(kept.get("attachments"), list):
        kept["attachments"] = [
            {k: a[k] for k in ATTACHMENT_KEPT if k in a} if isinstance(a, dict) else {}
            for a in kept["attachments"]
        ]
    return kept | {"purged": True}


def _without_texts(payload: dict[str, Any] | None) -> dict[str, Any] | None:
    """The payload without its texts, or None when it holds none (nothing to write)."""
    payload = dict(payload or {})
    if not any(payload.get(key) for key in TEXT_PAYLOAD_KEYS):
        return None
    for key in TEXT_PAYLOAD_KEYS:
        if payload.get(key):
            payload[key] = None
    payload["purged"] = True
    return payload


async def purge_ticket(uow: SqlUnitOfWork, number: int, cutoff: datetime) -> dict[str, int] | None:
    """Purge one ticket's texts in the caller's transaction, if it is still due (closed before
    `cutoff`, with texts since its last purge); returns what was purged, None when nothing
    was. Records the PURGE entry."""
    conn = uow.conn
    ticket = await uow.get_ticket(number)  # locks it: a reopening waits for the purge or wins
    if ticket is None or ticket.status.value not in CLOSED:
        return None
    closed_at = (
        await conn.execute(
            select(func.max(E.c.created_at)).where(
                E.c.ticket_id == number, E.c.kind == EntryKind.STATUS.value
            )
        )
    ).scalar_one()
    if closed_at is None or closed_at >= cutoff:
        return None
    last_purge = (
        await conn.execute(
            select(func.coalesce(func.max(E.c.id), 0)).where(
                E.c.ticket_id == number, E.c.kind == EntryKind.PURGE.value
            )
        )
    ).scalar_one()
    rows = (
        await conn.execute(
            select(E.c.id, E.c.data).where(
                E.c.ticket_id == number, E.c.kind.in_(TEXT_KINDS), E.c.id > last_purge
            )
        )
    ).all()
    if not rows:
        return None
    entry_ids = [r[0] for r in rows]
    for entry_id, data in rows:
        await conn.execute(
            update(E).where(E.c.id == entry_id).values(body=None, data=_purged_data(data))
        )
    await _unindex(uow, number, entry_ids)
    attachments = (
        await conn.execute(A.delete().where(A.c.ticket_id == number, A.c.entry_id.in_(entry_ids)))
    ).rowcount
    await conn.execute(EO.delete().where(EO.c.ticket_id == number))
    raw_mails = (
        await conn.execute(
            update(I)
            .where(
                I.c.ticket_id == number,
                or_(func.length(I.c.raw) > 0, I.c.subject.is_not(None)),
                I.c.state != inbound.QUARANTINED,  # waiting for an operator: not processed yet
            )
            .values(raw=b"", subject=None)
        )
    ).rowcount
    outbox = 0
    sent = await conn.execute(
        select(O.c.id, O.c.payload).where(O.c.ticket_id == number, O.c.state != "pending")
    )
    for row_id, payload in sent.all():
        stripped = _without_texts(payload)
        if stripped is not None:
            await conn.execute(update(O).where(O.c.id == row_id).values(payload=stripped))
            outbox += 1
    counts = {
        "entries": len(entry_ids),
        "attachments": attachments,
        "raw_mails": raw_mails,
        "outbox": outbox,
    }
    await uow.add_entry(Entry(number, EntryKind.PURGE, RETENTION.id, uow.now, data=dict(counts)))
    return counts


async def _unindex(uow: SqlUnitOfWork, number: int, entry_ids: Sequence[int]) -> None:
    """Drop the search index rows of these entries (the title's row stays)."""
    if uow.sqlite:  # by rowid: FTS5 would scan every row for its unindexed columns
        for start in range(0, len(entry_ids), BATCH):
            chunk = entry_ids[start : start + BATCH]
            await uow.conn.execute(
                text("DELETE FROM search_index WHERE rowid IN ({})".format(
                    ", ".join(str(search_rowid(number, e)) for e in chunk)
                ))
            )  # fmt: skip
        return
    for start in range(0, len(entry_ids), BATCH):
        chunk = list(entry_ids[start : start + BATCH])
        await uow.conn.execute(
            text("DELETE FROM search_index WHERE ticket_id = :t AND entry_id = ANY(:e)"),
            {"t": number, "e": chunk},
        )


__all__ = ["BATCH", "TEXT_KINDS", "Retention", "RetentionReport", "purge_ticket"]
