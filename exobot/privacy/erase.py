"""`exobot privacy erase ADDRESS`: remove or anonymise one person's data everywhere.

The person is every address the plugins relate to the given one (the procedures plugin knows
a member's two). In one database transaction:

- tickets they requested: the requestor becomes a placeholder (`erased-<random>@invalid`,
  one per run) and the title `[erased]`; their mails, our mails to them alone, bounces about
  them and the title changes lose their texts; their participant rows, attachments,
  originals (`entry_originals`), raw mails (`inbound_mail`: raw and sender) and search rows
  go; so do the raw mails recorded without a sender (quarantined, unparsable) whose bytes
  name one of their addresses; someone else's quarantined mail only loses the address, and
  mail intake has not processed yet is left to the bot;
- on other tickets only their own entries go: other people's text stays, with the address
  replaced wherever it is written (`concerns.concern` decides, as for the export);
- outbox rows addressed to them go; Message-IDs and keys naming the address go; the bot's
  Matrix posts about those tickets, those that showed an entry now edited, and those that
  showed their address (by their row's text, or by the digests each post recorded,
  chat_posts.addresses, which outlive the text the retention policy drops) get a `redact`
  chat row per ticket, which the chat worker carries out once (now, or at the bot's next
  start); their digests leave the posts' records;
- each ticket changed gets one ERASE entry (counts only, never who).

Then each plugin's erase handler runs (a person's address; each of their tickets). The core's
transaction records what the plugins still have to erase (`pending_erasures`: the addresses and
the tickets they requested), removed once they have: an erasure interrupted between the two
(a crash, a plugin failing) is finished by the next `exobot privacy erase`, whoever it is for,
before its own work. A second run finds the address nowhere and changes nothing.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from exobot import i18n
from exobot.core.languages import N_
from exobot.core.model import EntryKind
from exobot.core.service import CHAT, REDACT
from exobot.db.repository import TITLE_ENTRY, search_rowid, search_text
from exobot.db.tables import (
    AttachmentRow,
    ChatPostRow,
    EntryRow,
    HandledKeyRow,
    InboundMailRow,
    MailMessageRow,
    OutboxRow,
    ParticipantRow,
    PendingErasureRow,
    TicketRow,
)
from exobot.delivery import OTHER_PROCESS_WAIT_SECONDS
from exobot.plugins.base import DataSubject
from exobot.plugins.manager import ErasureIncomplete
from exobot.privacy.concerns import (
    Concern,
    address_digest,
    address_pattern,
    concern,
    id_pattern,
    like_any,
    raw_address_pattern,
)
from exobot.privacy.session import PrivacySession

T = TicketRow.__table__
E = EntryRow.__table__
P = ParticipantRow.__table__
M = MailMessageRow.__table__
O = OutboxRow.__table__  # noqa: E741
A = AttachmentRow.__table__
PE = PendingErasureRow.__table__
H = HandledKeyRow.__table__
I = InboundMailRow.__table__  # noqa: E741
CP = ChatPostRow.__table__

ERASED_TITLE = "[erased]"
SYSTEM = "exobot"
REDACT_REASON = N_("Removed at the request of the person it was about (data protection).")

# Data kept in an erased entry: nothing personal, enough to say what it was.
_KEPT = ("template", "notice", "skipped", "outbox_id")
_ADDRESS_KEYS = ("from", "recipient")
_ADDRESS_LISTS = ("to", "recipients")


def placeholder_address() -> str:
    """The address an erased requestor becomes: random (a hash of the address would let
    anyone who knows it find the person again), in the reserved `.invalid` domain."""
    return f"erased-{secrets.token_hex(5)}@invalid"


def scrub(value: Any, pattern: re.Pattern[str], placeholder: str) -> Any:
    """`value` (text, or JSON data) with every address of `pattern` replaced."""
    if isinstance(value, str):
        return pattern.sub(placeholder, value)
    if isinstance(value, list):
        return [scrub(v, pattern, placeholder) for v in value]
    if isinstance(value, dict):
        return {k: scrub(v, pattern, placeholder) for k, v in value.items()}
    return value


@dataclass
class EraseReport:
    """What an erasure did (or, dry, would do), counted per kind."""

    addresses: list[str]
    tickets_anonymised: int = 0
    tickets_changed: int = 0
    entries_erased: int = 0
    entries_edited: int = 0
    participants: int = 0
    attachments: int = 0
    originals: int = 0
    raw_mails: int = 0
    outbox_deleted: int = 0
    outbox_edited: int = 0
    message_ids: int = 0
    handled_keys: int = 0
    matrix_posts: int = 0
    plugins: dict[str, int] = field(default_factory=dict)
    dry_run: bool = False
    finished_earlier: int = 0  # interrupted erasures whose plugins' part was finished first
    incomplete: set[str] = field(default_factory=set)  # plugins that failed: to run again
    search_rewritten: bool = False  # a search row was replaced or removed (not a count)

    def core_counts(self) -> dict[str, int]:
        """The core's counts by name, in a fixed order."""
        names = (
            "tickets_anonymised", "tickets_changed", "entries_erased", "entries_edited",
            "participants", "attachments", "originals", "raw_mails", "outbox_deleted",
            "outbox_edited", "message_ids", "handled_keys", "matrix_posts",
        )  # fmt: skip
        return {name: getattr(self, name) for name in names}

    @property
    def nothing(self) -> bool:
        """True when nothing was (or would be) changed anywhere."""
        return not any(self.core_counts().values()) and not any(self.plugins.values())

    def _incomplete_line(self) -> list[str]:
        if not self.incomplete:
            return []
        return [
            f"NOT COMPLETE: plugin(s) {', '.join(sorted(self.incomplete))} failed to erase"
            " their data (see the log); the rest is erased, and the next `exobot privacy"
            " erase` (for anyone) tries them again first"
        ]

    def lines(self) -> list[str]:
        """The report as printed: one line per kind with a count."""
        verb = "would change" if self.dry_run else "changed"
        earlier = []
        if self.finished_earlier:
            earlier = [
                f"finished {self.finished_earlier} interrupted erasure(s) first: the plugins'"
                " part (its counts are not below)"
            ]
        if self.nothing:
            return [
                *earlier,
                f"nothing to erase: no data about {', '.join(self.addresses)}",
                *self._incomplete_line(),
            ]
        found = [
            *earlier,
            f"erasing {', '.join(self.addresses)}{' (dry run)' if self.dry_run else ''}",
        ]
        found += [f"  {name.replace('_', ' ')}: {n}" for name, n in self.core_counts().items() if n]
        for name, n in sorted(self.plugins.items()):
            found.append(f"  plugin {name}: {n} row(s) {verb}")
        if self.matrix_posts and not self.dry_run:
            found.append(
                "exobot starts redacting the Matrix posts within "
                f"{OTHER_PROCESS_WAIT_SECONDS:g} s while it runs (else at its next start); any "
                "the homeserver forbids it to are said on their ticket and in `exobot outbox list`"
            )
        return found + self._incomplete_line()


async def erase_person(
    session: PrivacySession, address: str, *, dry_run: bool = False
) -> EraseReport:
    """Erase the person at `address` (and their related addresses); see the module's text.
    An erasure interrupted before is finished first (not in a dry run)."""
    finished, failed = (0, set()) if dry_run else await finish_interrupted(session)
    first = address.strip().lower()
    addresses = {first}
    if session.plugins.host is not None:
        addresses |= await session.plugins.related(first)
    report = EraseReport(
        sorted(addresses), dry_run=dry_run, finished_earlier=finished, incomplete=failed
    )
    now = session.clock.now()
    repository = session.repository
    requested: list[int] = []
    async with repository.engine.connect() as conn:
        if repository.sqlite:
            # Freed pages are overwritten: the erased text does not linger in the file.
            await conn.exec_driver_sql("PRAGMA secure_delete = ON")
            await conn.commit()
        transaction = await conn.begin()
        try:
            eraser = _CoreEraser(conn, repository.sqlite, addresses, report, now, session)
            requested = await eraser.run()
            if not dry_run:  # what the plugins still have to do, committed with the core's
                pending = (
                    await conn.execute(
                        sa.insert(PE)
                        .values(addresses=sorted(addresses), tickets=requested, created_at=now)
                        .returning(PE.c.id)
                    )
                ).scalar_one()
        except BaseException:
            await transaction.rollback()
            raise
        if dry_run:
            await transaction.rollback()
        else:
            await transaction.commit()
    if dry_run:
        return report
    counts, failing = await _plugins_part(session, pending, sorted(addresses), requested)
    _add(report.plugins, counts)
    report.incomplete |= failing
    if report.search_rewritten:
        await _merge_search(session)
    return report


async def _merge_search(session: PrivacySession) -> None:
    """On SQLite, merge the search index: FTS5 keeps the terms of replaced or deleted rows
    in its segments until they are merged (every search row an erasure rewrote, an edited
    mention's too)."""
    if session.repository.sqlite:
        async with session.repository.connection() as conn:
            await conn.exec_driver_sql("INSERT INTO search_index(search_index) VALUES('optimize')")


async def finish_interrupted(session: PrivacySession) -> tuple[int, set[str]]:
    """Carry out the plugins' part of the erasures interrupted after their core part was
    committed, oldest first: how many were finished, and the plugins that failed again
    (their erasures stay pending)."""
    async with session.repository.connection() as conn:
        rows = (await conn.execute(sa.select(PE).order_by(PE.c.id))).all()
    if rows:  # the interrupted run may have stopped before its merge of the search index
        await _merge_search(session)
    finished, failed = 0, set()
    for row in rows:
        _counts, failing = await _plugins_part(
            session, row.id, list(row.addresses), list(row.tickets)
        )
        finished += not failing
        failed |= failing
    return finished, failed


async def _plugins_part(
    session: PrivacySession, pending: int, addresses: list[str], tickets: list[int]
) -> tuple[dict[str, int], set[str]]:
    """Each plugin's erase handler for each address and each ticket the person requested (a
    handler finds nothing left the second time): rows erased by plugin, and the plugins that
    failed. The pending record goes once none did."""
    counts: dict[str, int] = {}
    failed: set[str] = set()
    subjects = [DataSubject(address=a) for a in addresses] + [DataSubject(ticket=n) for n in tickets]
    for subject in subjects:
        try:
            _add(counts, await session.plugins.erase(subject))
        except ErasureIncomplete as incomplete:
            failed.update(incomplete.plugins)
    if not failed:
        async with session.repository.connection() as conn:
            await conn.execute(PE.delete().where(PE.c.id == pending))
    return counts, failed


def _add(total: dict[str, int], counts: dict[str, Any]) -> None:
    for name, n in counts.items():
        total[name] = total.get(name, 0) + int(n or 0)


class _CoreEraser:
    """The core's part, on one connection inside one transaction."""

    def __init__(
        self,
        conn: AsyncConnection,
        sqlite: bool,
        addresses: set[str],
        report: EraseReport,
        now: datetime,
        session: PrivacySession,
    ) -> None:
        self.conn = conn
        self.sqlite = sqlite
        self.addresses = addresses
        self.pattern = address_pattern(addresses)
        self.raw_pattern = raw_address_pattern(addresses)
        self.id_pattern = id_pattern(addresses)
        self.digests = {address_digest(a) for a in addresses}  # as chat_posts.addresses holds
        self.placeholder = placeholder_address()
        self.report = report
        self.now = now
        self.config = session.config
        self.erased_entries: set[int] = set()
        self.edited_entries: set[int] = set()  # edited where their posts show it
        self.erased_inbound: set[int] = set()  # raw mails wiped as (maybe) theirs
        self._erased_on: dict[int, int] = {}  # erased entries per ticket
        self._originals: bool | None = None  # whether entry_originals exists

    def _mentions(self, column: Any) -> Any:
        """Rows whose `column` may name the person (to check with `self.pattern`)."""
        return like_any(column, self.addresses)

    def _is_theirs(self, address: str | None) -> bool:
        return (address or "").strip().lower() in self.addresses

    async def run(self) -> list[int]:
        """Erase; returns the tickets the person requested (for the plugins' handlers)."""
        c = self.conn
        lowered = list(self.addresses)
        requested = [
            r[0]
            for r in await c.execute(
                sa.select(T.c.id).where(sa.func.lower(T.c.requestor).in_(lowered))
            )
        ]
        others = {
            r[0]
            for r in await c.execute(
                sa.select(P.c.ticket_id).where(sa.func.lower(P.c.address).in_(lowered))
            )
        }
        others |= {
            r[0]
            for r in await c.execute(
                sa.select(E.c.ticket_id)
                .where(
                    sa.or_(
                        sa.func.lower(E.c.actor).in_(lowered),
                        self._mentions(E.c.body),
                        self._mentions(sa.cast(E.c.data, sa.Text)),
                    )
                )
                .distinct()
            )
        }
        others |= {r[0] for r in await c.execute(sa.select(T.c.id).where(self._mentions(T.c.title)))}
        others -= set(requested)
        changed: set[int] = set()
        for number in requested:
            if await self._ticket(number, requested=True):
                changed.add(number)
        for number in sorted(others):
            if await self._ticket(number, requested=False):
                changed.add(number)
        await self._inbound(requested, changed)
        await self._message_ids()
        await self._handled_keys()
        await self._outbox(requested, changed)
        for number in sorted(changed):
            await c.execute(
                sa.insert(E).values(
                    ticket_id=number,
                    kind=EntryKind.ERASE.value,
                    actor=SYSTEM,
                    created_at=self.now,
                    body=None,
                    data={"entries": self._erased_on.get(number, 0)},
                )
            )
        self.report.tickets_changed = len(changed)
        return requested

    async def _ticket(self, number: int, *, requested: bool) -> bool:
        """One ticket's rows; True when anything changed."""
        c = self.conn
        changed = False
        ticket = (await c.execute(sa.select(T).where(T.c.id == number))).first()
        if ticket is None:
            return False
        if requested:
            await c.execute(
                sa.update(T)
                .where(T.c.id == number)
                .values(requestor=self.placeholder, title=ERASED_TITLE)
            )
            await self._reindex(number, TITLE_ENTRY, ERASED_TITLE)
            self.report.tickets_anonymised += 1
            changed = True
        else:
            title = scrub(ticket.title, self.pattern, self.placeholder)
            if title != ticket.title:
                await c.execute(sa.update(T).where(T.c.id == number).values(title=title))
                await self._reindex(number, TITLE_ENTRY, title)
                changed = True
        removed = await c.execute(
            P.delete().where(
                P.c.ticket_id == number, sa.func.lower(P.c.address).in_(list(self.addresses))
            )
        )
        if removed.rowcount:
            self.report.participants += removed.rowcount
            changed = True
        rows = (await c.execute(sa.select(E).where(E.c.ticket_id == number).order_by(E.c.id))).all()
        for row in rows:
            if row.kind == EntryKind.ERASE.value:
                continue
            data = dict(row.data or {})
            if self._erases(row, data, requested):
                await self._erase_entry(row, data)
                self._erased_on[number] = self._erased_on.get(number, 0) + 1
                changed = True
                continue
            body = scrub(row.body, self.pattern, self.placeholder)
            new_data = scrub(data, self.pattern, self.placeholder)
            actor = self.placeholder if self._is_theirs(row.actor) else row.actor
            if (body, new_data, actor) != (row.body, data, row.actor):
                await c.execute(
                    sa.update(E).where(E.c.id == row.id).values(body=body, data=new_data, actor=actor)
                )
                if body != row.body or new_data.get("subject") != data.get("subject"):
                    await self._reindex(number, row.id, _searchable(body, new_data))
                if (body, _shown(new_data), actor) != (row.body, _shown(data), row.actor):
                    self.edited_entries.add(row.id)  # its posts showed the address
                self.report.entries_edited += 1
                changed = True
            await self._scrub_original(row.id)
        return changed

    def _erases(self, row: Any, data: dict, requested: bool) -> bool:
        """Whether an entry is the person's text (or ours to them alone) and loses it; any
        other entry concerning them (`concerns.concern`) only loses their address."""
        if data.get("erased"):
            return False
        if requested and row.kind == EntryKind.TITLE.value:
            return True
        own = concern(row.kind, row.actor, data, row.body, self.addresses, self.pattern)
        return own is Concern.OWN

    async def _erase_entry(self, row: Any, data: dict) -> None:
        c = self.conn
        if row.kind == EntryKind.TITLE.value:
            kept: dict[str, Any] = {"from": ERASED_TITLE, "to": ERASED_TITLE}
        else:
            kept = {k: data[k] for k in _KEPT if k in data}
            kept |= {k: self.placeholder for k in _ADDRESS_KEYS if k in data}
            kept |= {k: [self.placeholder] for k in _ADDRESS_LISTS if k in data}
        kept["erased"] = True
        actor = self.placeholder if self._is_theirs(row.actor) else row.actor
        await c.execute(
            sa.update(E).where(E.c.id == row.id).values(body=None, data=kept, actor=actor)
        )
        await self._reindex(row.ticket_id, row.id, "")
        gone = await c.execute(A.delete().where(A.c.entry_id == row.id))
        self.report.attachments += gone.rowcount or 0
        if await self._has_originals():
            gone = await c.execute(
                sa.text("DELETE FROM entry_originals WHERE entry_id = :e"), {"e": row.id}
            )
            self.report.originals += gone.rowcount or 0
        self.erased_entries.add(row.id)
        self.report.entries_erased += 1

    async def _has_originals(self) -> bool:
        if self._originals is None:
            self._originals = await self.conn.run_sync(
                lambda sync: sa.inspect(sync).has_table("entry_originals")
            )
        return self._originals

    async def _scrub_original(self, entry_id: int) -> None:
        """The address out of an entry's original (unmasked) text, when it has one."""
        if not await self._has_originals():
            return
        row = (
            await self.conn.execute(
                sa.text("SELECT body, subject FROM entry_originals WHERE entry_id = :e"),
                {"e": entry_id},
            )
        ).first()
        if row is None:
            return
        body, subject = (scrub(v, self.pattern, self.placeholder) for v in (row.body, row.subject))
        if (body, subject) != (row.body, row.subject):
            await self.conn.execute(
                sa.text("UPDATE entry_originals SET body = :b, subject = :s WHERE entry_id = :e"),
                {"b": body, "s": subject, "e": entry_id},
            )

    async def _reindex(self, ticket: int, entry_id: int, content: str) -> None:
        """Replace an entry's (or the title's) search row by `content` (none when empty)."""
        c = self.conn
        self.report.search_rewritten = True
        if self.sqlite:
            rowid = search_rowid(ticket, entry_id)
            await c.execute(sa.text("DELETE FROM search_index WHERE rowid = :r"), {"r": rowid})
            if content:
                await c.execute(
                    sa.text(
                        "INSERT INTO search_index (rowid, ticket_id, entry_id, content)"
                        " VALUES (:r, :t, :e, :c)"
                    ),
                    {"r": rowid, "t": ticket, "e": entry_id, "c": content},
                )
            return
        await c.execute(
            sa.text("DELETE FROM search_index WHERE ticket_id = :t AND entry_id = :e"),
            {"t": ticket, "e": entry_id},
        )
        if content:
            await c.execute(
                sa.text("INSERT INTO search_index (ticket_id, entry_id, content) VALUES (:t, :e, :c)"),
                {"t": ticket, "e": entry_id, "c": search_text(content)},
            )

    async def _inbound(self, requested: list[int], changed: set[int]) -> None:
        """Raw mails: theirs lose raw, sender and subject; others' on the same tickets lose
        their raw when it names the person (headers, quotes)."""
        c = self.conn
        lowered = list(self.addresses)
        theirs = sa.func.lower(I.c.sender).in_(lowered)
        wipe = {"raw": b"", "sender": None, "subject": None, "error": None}
        rows = (await c.execute(sa.select(I.c.id, I.c.state, I.c.message_id).where(theirs))).all()
        for row in rows:
            values = dict(wipe)
            if row.message_id and self.id_pattern.search(row.message_id):
                values["message_id"] = None
            if row.state in ("received", "quarantined"):
                values["state"] = "discarded"
            await c.execute(sa.update(I).where(I.c.id == row.id).values(**values))
            self.erased_inbound.add(row.id)
            self.report.raw_mails += 1
        await self._unattributed()
        tickets = sorted(set(requested) | changed)
        if not tickets:
            return
        ids = [
            r[0]
            for r in await c.execute(
                sa.select(I.c.id).where(I.c.ticket_id.in_(tickets), sa.func.length(I.c.raw) > 0)
            )
        ]
        for inbound_id in ids:  # one raw mail in memory at a time
            row = (
                await c.execute(sa.select(I.c.raw, I.c.subject).where(I.c.id == inbound_id))
            ).first()
            if self.raw_pattern.search(bytes(row.raw)):
                subject = scrub(row.subject, self.pattern, self.placeholder)
                await c.execute(
                    sa.update(I).where(I.c.id == inbound_id).values(raw=b"", subject=subject)
                )
                self.report.raw_mails += 1

    async def _unattributed(self) -> None:
        """Raw mails recorded without a sender or without a ticket (one that could not be
        parsed, one set aside before it reached a ticket) whose bytes name the person. One
        without a sender may be theirs: it goes like theirs (raw, subject and error) and one
        in quarantine is discarded. One whose sender is someone else stays theirs, waiting
        to be retried: only the address is replaced, in its bytes, subject and error. Mail
        intake has stored but not processed yet ('received': no sender, no ticket until it
        is parsed) is left to the bot, or it would be lost to its sender."""
        c = self.conn
        ids = [
            r[0]
            for r in await c.execute(
                sa.select(I.c.id)
                .where(
                    sa.or_(I.c.sender.is_(None), I.c.ticket_id.is_(None)),
                    sa.func.length(I.c.raw) > 0,
                    I.c.state != "received",
                )
                .order_by(I.c.id)
            )
        ]
        for inbound_id in ids:  # one raw mail in memory at a time
            row = (
                await c.execute(
                    sa.select(
                        I.c.raw, I.c.state, I.c.message_id, I.c.sender, I.c.subject, I.c.error
                    ).where(I.c.id == inbound_id)
                )
            ).first()
            if not self.raw_pattern.search(bytes(row.raw)):
                continue
            if row.sender is not None and not self._is_theirs(row.sender):
                await self._scrub_inbound(inbound_id, row)
                continue
            values: dict[str, Any] = {"raw": b"", "subject": None, "error": None}
            if row.sender is not None:
                values["sender"] = None  # theirs, written another way
            if row.message_id and self.id_pattern.search(row.message_id):
                values["message_id"] = None
            if row.state == "quarantined":
                values["state"] = "discarded"  # nothing left to process
            await c.execute(sa.update(I).where(I.c.id == inbound_id).values(**values))
            self.erased_inbound.add(inbound_id)
            self.report.raw_mails += 1

    async def _scrub_inbound(self, inbound_id: int, row: Any) -> None:
        """Someone else's raw mail naming the person: the address out of it, nothing more."""
        placeholder = self.placeholder.encode()
        values = {
            "raw": self.raw_pattern.sub(placeholder, bytes(row.raw)),
            "subject": scrub(row.subject, self.pattern, self.placeholder),
            "error": scrub(row.error, self.pattern, self.placeholder),
        }
        if row.message_id and self.id_pattern.search(row.message_id):
            values["message_id"] = None
        await self.conn.execute(sa.update(I).where(I.c.id == inbound_id).values(**values))
        self.report.raw_mails += 1

    async def _message_ids(self) -> None:
        """The Message-IDs naming the address (some clients mint them with it)."""
        ids = [
            r.id
            for r in await self.conn.execute(
                sa.select(M.c.id, M.c.message_id).where(self._mentions(M.c.message_id))
            )
            if self.id_pattern.search(r.message_id or "")
        ]
        if ids:
            gone = await self.conn.execute(M.delete().where(M.c.id.in_(ids)))
            self.report.message_ids += gone.rowcount or 0

    async def _handled_keys(self) -> None:
        """The idempotency keys naming the address (a flood hold's, a skipped Cc's)."""
        keys = [
            r.key
            for r in await self.conn.execute(sa.select(H.c.key).where(self._mentions(H.c.key)))
            if self.id_pattern.search(r.key)
        ]
        if keys:
            gone = await self.conn.execute(H.delete().where(H.c.key.in_(keys)))
            self.report.handled_keys += gone.rowcount or 0

    async def _outbox(self, requested: list[int], changed: set[int]) -> None:
        """Mails to them go; the bot's posts about them are redacted (a `redact` row per
        ticket) and the chat rows holding their text go; other rows lose the address."""
        c = self.conn
        gone = await c.execute(
            O.delete().where(sa.func.lower(O.c.recipient).in_(list(self.addresses)))
        )
        self.report.outbox_deleted += gone.rowcount or 0
        reference = re.compile(rf"\b{re.escape(self.config.tickets.prefix)}#(\d+)\b")
        requested_set = set(requested)
        redact: dict[int | None, list[list[str]]] = {}
        # The posts that recorded showing their address; those a row's text or ticket already
        # has redacted whole are taken out below, the rest are redacted after.
        showing = await self._posts_showing()
        candidates = sa.or_(
            O.c.ticket_id.in_(sorted(requested_set | changed)),
            self._mentions(sa.cast(O.c.payload, sa.Text)),
            self._mentions(O.c.last_error),
            sa.and_(O.c.kind == CHAT, O.c.ticket_id.is_(None)),
        )
        rows = (await c.execute(sa.select(O).where(candidates).order_by(O.c.id))).all()
        for row in rows:
            payload = dict(row.payload or {})
            kind = payload.get("type")
            if row.kind == CHAT and kind != REDACT:
                posts = (
                    await c.execute(
                        sa.select(CP.c.room_id, CP.c.event_id, CP.c.tickets)
                        .where(CP.c.outbox_id == row.id)
                        .order_by(CP.c.part)
                    )
                ).all()
                shown = {n for p in posts for n in p.tickets or ()}
                if shown & requested_set or self._chat_about(
                    row.ticket_id, payload, requested_set, reference
                ):
                    redact.setdefault(row.ticket_id, []).extend(
                        [p.room_id, p.event_id] for p in posts if p.event_id
                    )
                    showing.pop(row.id, None)
                    if kind != "ticket" or row.state == "pending":
                        # Its payload holds text (or it would post the erased ticket).
                        await c.execute(O.delete().where(O.c.id == row.id))
                        self.report.outbox_deleted += 1
                    continue
                if set(payload.get("entries") or ()) & self.edited_entries:
                    # Someone else's post that showed the person (a comment naming them):
                    # its entries now read without them; a row still to post stays.
                    redact.setdefault(row.ticket_id, []).extend(
                        [p.room_id, p.event_id] for p in posts if p.event_id
                    )
                    showing.pop(row.id, None)
            new_payload = scrub(payload, self.pattern, self.placeholder)
            error = scrub(row.last_error, self.pattern, self.placeholder)
            if (new_payload, error) != (payload, row.last_error):
                await c.execute(
                    sa.update(O).where(O.c.id == row.id).values(payload=new_payload, last_error=error)
                )
                self.report.outbox_edited += 1
        for ticket, events in showing.values():
            redact.setdefault(ticket, []).extend(events)
        reason = i18n.say(self.config.language, REDACT_REASON)
        for ticket, events in redact.items():
            if not events:
                continue
            await c.execute(
                sa.insert(O).values(
                    kind=CHAT,
                    ticket_id=ticket,
                    payload={"type": REDACT, "event_ids": events, "reason": reason},
                    state="pending",
                    attempts=0,
                    next_try_at=self.now,
                    created_at=self.now,
                )
            )
            self.report.matrix_posts += len(events)

    async def _posts_showing(self) -> dict[int, tuple[int | None, list[list[str]]]]:
        """The posts whose record says they showed one of the addresses, by chat row: the
        row's ticket and the posts' [room id, event id] pairs (a redaction's own records show
        nothing). Their digests leave every post's record here: the erasure redacts those
        posts, or redacted them before when it deleted their row (not redacted twice). Posts
        recorded before the record existed (None) are found by their row's text
        (`_chat_about`)."""
        c = self.conn
        rows = (
            await c.execute(
                sa.select(
                    CP.c.id, CP.c.outbox_id, CP.c.room_id, CP.c.event_id, CP.c.addresses,
                    O.c.id.label("row_id"), O.c.ticket_id,
                )
                .select_from(CP.outerjoin(O, O.c.id == CP.c.outbox_id))
                .where(like_any(sa.cast(CP.c.addresses, sa.Text), self.digests))
                .order_by(CP.c.outbox_id, CP.c.part)
            )
        ).all()  # fmt: skip
        showing: dict[int, tuple[int | None, list[list[str]]]] = {}
        for post in rows:
            recorded = set(post.addresses or ())
            if not recorded & self.digests:
                continue  # a LIKE candidate only
            await c.execute(
                sa.update(CP)
                .where(CP.c.id == post.id)
                .values(addresses=sorted(recorded - self.digests))
            )
            if post.row_id is None:
                continue  # its row went with an erasure that redacted its posts
            showing.setdefault(post.outbox_id, (post.ticket_id, []))[1].append(
                [post.room_id, post.event_id]
            )
        return showing

    def _chat_about(
        self,
        ticket: int | None,
        payload: dict,
        requested: set[int],
        reference: re.Pattern[str],
    ) -> bool:
        """Whether a chat row's posts are about the person (besides posts that showed one of
        their tickets, chat_posts.tickets): any post about a ticket they requested, the
        announcement of one of their entries or of a raw mail erased as theirs, or a text
        naming them (or one of their tickets)."""
        if ticket is not None and ticket in requested:
            return True
        if set(payload.get("entries") or ()) & self.erased_entries:
            return True
        if payload.get("type") == "quarantine" and payload.get("inbound_id") in self.erased_inbound:
            return True  # the announcement of a raw mail erased as theirs
        text = json.dumps(payload, ensure_ascii=False)
        if self.pattern.search(text):
            return True
        return ticket is None and any(int(n) in requested for n in reference.findall(text))


def _shown(data: dict) -> dict:
    """What the bot's posts show of an entry's data: all but the Cc list."""
    return {k: v for k, v in data.items() if k != "cc"}


def _searchable(body: str | None, data: dict) -> str:
    """What the search index holds for an entry (as the repository writes it)."""
    return " ".join(filter(None, [data.get("subject"), body]))
