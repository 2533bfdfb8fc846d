"""The SQL implementation of the core's repository protocol, on SQLAlchemy's async engine."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import re
import threading
import unicodedata
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import (
    Connection,
    Engine,
    Integer,
    String,
    any_,
    bindparam,
    cast,
    column,
    distinct,
    func,
    insert,
    literal,
    select,
    table,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from exobot.core.model import AttachmentInfo, Entry, EntryKind, Status, Ticket
from exobot.core.references import is_stored_id
from exobot.core.search import search_terms
from exobot.db import inbound, outbox
from exobot.db.engine import READ_ONLY, upsert_insert
from exobot.db.numbering import ensure_next_number
from exobot.db.outbox import LATER
from exobot.db.tables import (
    AttachmentRow,
    EntryOriginalRow,
    EntryRow,
    HandledKeyRow,
    ImportedRecordRow,
    MailMessageRow,
    OutboxRow,
    ParticipantRow,
    TicketAliasRow,
    TicketRow,
)

T = TicketRow.__table__
E = EntryRow.__table__
P = ParticipantRow.__table__
M = MailMessageRow.__table__
O = OutboxRow.__table__  # noqa: E741
A = AttachmentRow.__table__
H = HandledKeyRow.__table__
EO = EntryOriginalRow.__table__
TA = TicketAliasRow.__table__
IR = ImportedRecordRow.__table__

R = TypeVar("R")

#: PostgreSQL: threads for the workers' transactions beside the writer thread (SqlRepository).
SIDE_THREADS = 8

# The statements every mail runs, built once: building a statement and computing its cache key
# cost about as much CPU as running it on SQLite. Values are bound at execution (an INSERT or
# UPDATE executed with a dict of column values writes those columns).
_INSERT_TICKET = insert(T).returning(T.c.id)
_INSERT_ENTRY = insert(E).returning(E.c.id)
# No RETURNING of the new row's key where nobody reads it: SQLAlchemy adds one to an INSERT
# unless it is `inline()`, and fetching and processing that row is CPU spent for nothing.
_INSERT_MESSAGE = insert(M).inline()
_INSERT_OUTBOX = insert(O).returning(O.c.id)
_TICKET = select(T).where(T.c.id == bindparam("number"))
# FOR NO KEY UPDATE: it excludes every other writer of the ticket alike, but not the key-share
# lock a foreign key check takes, so rows that only point at the ticket (a chat thread's record
# from a side thread) are written meanwhile instead of waiting for a burst's group to commit.
_TICKET_FOR_UPDATE = _TICKET.with_for_update(key_share=True)
_PARTICIPANTS = select(P.c.address).where(P.c.ticket_id == bindparam("ticket"))
_TICKET_FOR_MESSAGE = (
    select(M.c.ticket_id, M.c.direction)
    .where(M.c.message_id == bindparam("message_id"))
    .order_by(M.c.direction.desc())
    .limit(1)
)


def _among(column: Any, values: Sequence[str]) -> Any:
    """`column IN (values)` for a fixed list, with one plain parameter per value. SQLAlchemy
    renders an IN of a Python list as an "expanding" parameter, whose SQL it rewrites at every
    execution: on the sender counts, asked for most new mails, about a fifth of their CPU on
    PostgreSQL (measured: 161 against 124 µs a statement)."""
    return column.in_([literal(value) for value in values])


def _openings_count(since: str) -> Any:
    """How many tickets the sender `address` opened by mail, plus its mails kept unverified,
    since the parameter named `since`."""
    return (
        select(func.count())
        .select_from(E)
        .where(
            E.c.actor == bindparam("address"),
            E.c.created_at >= bindparam(since),
            _among(E.c.kind, [EntryKind.CREATED.value, EntryKind.UNVERIFIED_IN.value]),
        )
    )


def _acks_count(since: str, templates: Any) -> Any:
    """How many mails whose template meets `templates` (a condition on the template column)
    were queued to `address` since the parameter `since`."""
    return (
        select(func.count())
        .select_from(O)
        .where(
            templates,
            O.c.recipient == bindparam("address"),
            O.c.created_at >= bindparam(since),
        )
    )


_ACKS_SINCE = _acks_count("since", O.c.template.in_(bindparam("templates", expanding=True)))
_OPENINGS_SINCE = _openings_count("since")
_UPDATE_TICKET = update(T).where(T.c.id == bindparam("_number"))
_INDEX_SQLITE = text(
    "INSERT INTO search_index (rowid, ticket_id, entry_id, content) VALUES (:r, :t, :e, :c)"
)
_INDEX_POSTGRESQL = text(
    "INSERT INTO search_index (ticket_id, entry_id, content) VALUES (:t, :e, :c)"
)


@functools.cache
def _add_participant(dialect: str) -> Any:
    """The participant upsert of a dialect (built once per dialect)."""
    insert_ = pg_insert if dialect == "postgresql" else sqlite_insert
    upsert = insert_(P).on_conflict_do_nothing(index_elements=[P.c.ticket_id, P.c.address])
    return upsert.inline()  # no RETURNING: see _INSERT_MESSAGE


@dataclass(frozen=True)
class AttachmentMeta:
    """An attachment as listed on a ticket's page (its data is fetched on download)."""

    id: int
    entry_id: int
    filename: str
    content_type: str
    size: int


@dataclass(frozen=True)
class EntryOriginal:
    """The original (unmasked) text of an entry: body and mail subject, each None when that
    part held nothing to mask, and the kinds of value that were masked."""

    entry_id: int
    ticket: int
    body: str | None
    subject: str | None
    kinds: tuple[str, ...]


# Mails counted against `mail.ack_limit_per_day`: acknowledgements, the too-big notice and the
# advice about sensitive data.
ACK_TEMPLATES = ("ack", "too_big", "advice")
# What the rules count for a new mail's sender, in one statement (see SqlReader.sender_counts).
_SENDER_COUNTS = select(
    _openings_count("openings_since").scalar_subquery(),
    _acks_count("acks_since", _among(O.c.template, ACK_TEMPLATES)).scalar_subquery(),
)
# Acknowledgements on the tickets a sender opened by mail (their creation's actor is its From)
# since `since`, wherever they were sent: an acknowledgement is queued with its ticket.
# The language of a requestor's latest ticket (the too-big notice speaks it).
_LATEST_LANGUAGE = (
    select(T.c.language)
    .where(T.c.requestor == bindparam("requestor"))
    .order_by(T.c.id.desc())
    .limit(1)
)
_ACKS_FROM_SINCE = (
    select(func.count())
    .select_from(E.join(O, O.c.ticket_id == E.c.ticket_id))
    .where(
        E.c.actor == bindparam("address"),
        E.c.created_at >= bindparam("since"),
        E.c.kind == EntryKind.CREATED.value,
        _among(O.c.template, ACK_TEMPLATES),
        O.c.created_at >= bindparam("since"),
    )
)

TITLE_ENTRY = 0  # search_index row holding a ticket's title
# On SQLite a search_index row's rowid is (ticket << 32) + entry id (see search_rowid), so the
# FTS index alone yields the matching tickets: reading its stored ticket_id column instead costs
# a lookup per matching row, and a common word matches tens of thousands of rows.
SEARCH_ROWID_SHIFT = 32
# PostgreSQL: search words matching at most this many search rows fetch their tickets by id
# (see SqlReader._matching_clause).
FEW_ROWS = 2000

_ENTRY_COLUMNS = tuple(c.name for c in E.c if c.name != "id")
_SEARCH_INDEX = table("search_index", column("ticket_id"), column("entry_id"), column("content"))


def _indexed_insert(
    target: Any, columns: Sequence[str], returning: Sequence[Any], rows: Any
) -> Any:
    """PostgreSQL: one statement that inserts a row into `target` (its `columns` bound by name)
    and its search_index row (`rows(new)`: the new row's ticket and entry id, from the
    `returning` columns), with the bound `content`; it returns the search row's entry_id and
    ticket_id. One round trip where two statements would be two."""
    new = (
        insert(target)
        .values({name: bindparam(name, type_=target.c[name].type) for name in columns})
        .returning(*returning)
        .cte("new_row")
    )
    return (
        insert(_SEARCH_INDEX)
        .from_select(
            ["ticket_id", "entry_id", "content"],
            select(*rows(new), bindparam("content", type_=String)),
        )
        .returning(_SEARCH_INDEX.c.entry_id, _SEARCH_INDEX.c.ticket_id)
    )


# An entry and its search row; a ticket and its title's search row.
_INSERT_ENTRY_INDEXED = _indexed_insert(
    E, _ENTRY_COLUMNS, (E.c.id, E.c.ticket_id), lambda new: (new.c.ticket_id, new.c.id)
)
_TICKET_COLUMNS = tuple(c.name for c in T.c if c.name != "id")
_INSERT_TICKET_INDEXED = _indexed_insert(
    T, _TICKET_COLUMNS, (T.c.id,), lambda new: (new.c.id, literal(TITLE_ENTRY, Integer))
)


def fold(value: str) -> str:
    """Lower case without diacritics ("CONNEXIÓ" → "connexio"), for searching."""
    decomposed = unicodedata.normalize("NFKD", value.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


# Characters FTS5's unicode61 tokenizer keeps in tokens are letters, numbers and private-use
# characters ("L* N* Co"); every other one separates tokens. Python's \w is letters and numbers
# plus "_", which is punctuation to FTS5.
_SEPARATORS = re.compile(r"[^\w\ue000-\uf8ff\U000f0000-\U0010ffff]+|_+")


@functools.cache
def _combining() -> dict[int, None]:
    """str.translate's table dropping every combining character (built once, on first use)."""
    return {c: None for c in range(0x110000) if unicodedata.combining(chr(c))}


def search_text(value: str) -> str:
    """The words of a text as the PostgreSQL search index holds them: lower case, without
    diacritics, split where SQLite's FTS5 (unicode61, remove_diacritics 2) splits them and
    joined by single spaces ("L'OFICINA, connexió!" → "l oficina connexio"), so that the
    PostgreSQL parser sees only plain words and both backends find the same tickets."""
    lowered = value.lower()
    if not lowered.isascii():
        lowered = unicodedata.normalize("NFD", lowered).translate(_combining())
    return " ".join(_SEPARATORS.sub(" ", lowered).split())


def search_rowid(ticket: int, entry_id: int) -> int:
    """The rowid of a ticket's search_index row for an entry (TITLE_ENTRY for its title)."""
    if not 0 <= entry_id < 1 << SEARCH_ROWID_SHIFT:
        raise ValueError(f"entry id {entry_id} does not fit a search_index rowid")
    return (ticket << SEARCH_ROWID_SHIFT) + entry_id


def utcnow() -> datetime:
    """Now, in UTC."""
    return datetime.now(UTC)


def ticket_from_row(row: Any) -> Ticket:
    """Build a domain Ticket from a `tickets` row."""
    return Ticket(
        number=row.id,
        title=row.title,
        requestor=row.requestor,
        queue=row.queue,
        status=Status(row.status),
        created_at=row.created_at,
        updated_at=row.updated_at,
        owner=row.owner,
        last_member_mail_at=row.last_member_mail_at,
        last_answer_at=row.last_answer_at,
        next_alert_at=row.next_alert_at,
        language=row.language,
    )


def entry_from_row(row: Any) -> Entry:
    """Build a domain Entry from an `entries` row."""
    return Entry(
        ticket_number=row.ticket_id,
        kind=EntryKind(row.kind),
        actor=row.actor,
        created_at=row.created_at,
        body=row.body,
        data=dict(row.data or {}),
        id=row.id,
    )


class SqlReader:
    """Read queries inside one transaction. Read-only transactions take no write lock."""

    def __init__(self, conn: AsyncConnection, sqlite: bool) -> None:
        self.conn = conn
        self.sqlite = sqlite

    async def handled_request(self, key: str) -> tuple[int | None, str | None] | None:
        """A recorded idempotency key's (ticket it acted on, fingerprint of its request),
        either None when unknown; None when the key was never recorded."""
        found = (
            await self.conn.execute(select(H.c.ticket_id, H.c.request_hash).where(H.c.key == key))
        ).first()
        return None if found is None else (found.ticket_id, found.request_hash)

    async def get_ticket(self, number: int, *, aliases: bool = True) -> Ticket | None:
        """The ticket with that number, or None (also for a number no ticket can have). A
        number merged into another ticket (ticket_aliases) gives the surviving ticket, unless
        `aliases` is False."""
        if not is_stored_id(number):
            return None
        row = (await self.conn.execute(_TICKET, {"number": number})).first()
        if row is None and aliases:
            row = (
                await self.conn.execute(
                    select(T).join(TA, TA.c.ticket_id == T.c.id).where(TA.c.number == number)
                )
            ).first()
        return ticket_from_row(row) if row else None

    async def alias_of(self, number: int) -> int | None:
        """The surviving ticket a merged number names, or None when it is no alias."""
        if not is_stored_id(number):
            return None
        return (
            await self.conn.execute(select(TA.c.ticket_id).where(TA.c.number == number))
        ).scalar_one_or_none()

    async def merged_into(self, ticket: int) -> list[int]:
        """The numbers merged into `ticket` (an import's aliases), ascending."""
        rows = await self.conn.execute(
            select(TA.c.number).where(TA.c.ticket_id == ticket).order_by(TA.c.number)
        )
        return [r[0] for r in rows]

    async def import_source(self, ticket: int) -> str | None:
        """The other helpdesk a ticket was imported from (its source, e.g.
        "rt:rt.example.org"), or None when exobot opened it."""
        return (
            await self.conn.execute(
                select(IR.c.source).where(IR.c.ticket_id == ticket, IR.c.kind == "ticket").limit(1)
            )
        ).scalar_one_or_none()

    async def imported_ticket(self, source: str, external_id: str) -> int | None:
        """The ticket an import from `source` made of the other system's ticket `external_id`."""
        return (
            await self.conn.execute(
                select(IR.c.ticket_id).where(
                    IR.c.source == source, IR.c.kind == "ticket", IR.c.external_id == external_id
                )
            )
        ).scalar_one_or_none()

    async def imported_entry_ids(self, source: str, external_ticket_id: str) -> set[str]:
        """The other system's ids of the history items already imported from `source` into
        the ticket made of its ticket `external_ticket_id` (empty when none was imported)."""
        ticket = await self.imported_ticket(source, external_ticket_id)
        if ticket is None:
            return set()
        rows = await self.conn.execute(
            select(IR.c.external_id).where(
                IR.c.source == source, IR.c.kind == "entry", IR.c.ticket_id == ticket
            )
        )
        return {r[0] for r in rows}

    async def imported_among(self, source: str, kind: str, external_ids: Sequence[str]) -> set[str]:
        """Those of `external_ids` (of `kind` "ticket" or "entry") already imported from
        `source`, into whichever ticket."""
        wanted = sorted(set(external_ids))
        found: set[str] = set()
        for start in range(0, len(wanted), 500):  # bounded IN lists
            rows = await self.conn.execute(
                select(IR.c.external_id).where(
                    IR.c.source == source,
                    IR.c.kind == kind,
                    IR.c.external_id.in_(wanted[start : start + 500]),
                )
            )
            found.update(r[0] for r in rows)
        return found

    async def import_collisions(self, source: str, numbers: Sequence[int]) -> list[int]:
        """Those of `numbers` that a ticket or a merged number already has here without
        having been imported from `source` (importing them would stop), ascending."""
        wanted = sorted({n for n in numbers if is_stored_id(n)})
        taken: set[int] = set()
        for start in range(0, len(wanted), 500):  # bounded IN lists
            chunk = wanted[start : start + 500]
            mine = select(IR.c.ticket_id).where(IR.c.source == source, IR.c.kind == "ticket")
            rows = await self.conn.execute(
                select(T.c.id).where(T.c.id.in_(chunk), T.c.id.not_in(mine))
            )
            taken.update(r[0] for r in rows)
            rows = await self.conn.execute(
                select(TA.c.number).where(TA.c.number.in_(chunk), TA.c.source != source)
            )
            taken.update(r[0] for r in rows)
        return sorted(taken)

    async def history(self, number: int) -> list[Entry]:
        """A ticket's whole history, oldest first."""
        rows = await self.conn.execute(select(E).where(E.c.ticket_id == number).order_by(E.c.id))
        return [entry_from_row(r) for r in rows]

    async def participants(self, ticket: int) -> set[str]:
        """The addresses that may write to the ticket."""
        rows = await self.conn.execute(_PARTICIPANTS, {"ticket": ticket})
        return {r[0] for r in rows}

    async def ticket_message_ids(self, ticket: int) -> list[str]:
        """The ticket's Message-IDs, oldest first."""
        rows = await self.conn.execute(
            select(M.c.message_id).where(M.c.ticket_id == ticket).order_by(M.c.id)
        )
        return [r[0] for r in rows]

    async def last_entry(self, ticket: int, kinds: Sequence[str]) -> Entry | None:
        """The newest entry of the ticket with one of these kinds."""
        return await self._one_entry(ticket, kinds, E.c.id.desc())

    async def first_entry(self, ticket: int, kinds: Sequence[str]) -> Entry | None:
        """The oldest entry of the ticket with one of these kinds (one row, however long the
        ticket's history)."""
        return await self._one_entry(ticket, kinds, E.c.id)

    async def _one_entry(self, ticket: int, kinds: Sequence[str], order: Any) -> Entry | None:
        """The ticket's first entry of these kinds in `order`."""
        row = (
            await self.conn.execute(
                select(E)
                .where(E.c.ticket_id == ticket, E.c.kind.in_(list(kinds)))
                .order_by(order)
                .limit(1)
            )
        ).first()
        return entry_from_row(row) if row else None

    async def entries_of(self, ticket: int, kinds: Sequence[str]) -> list[Entry]:
        """The ticket's entries of these kinds, oldest first."""
        rows = await self.conn.execute(
            select(E).where(E.c.ticket_id == ticket, E.c.kind.in_(list(kinds))).order_by(E.c.id)
        )
        return [entry_from_row(r) for r in rows]

    async def ticket_for_message(self, message_id: str) -> tuple[int, str] | None:
        """The ticket a Message-ID belongs to and its direction ("out" preferred), or None."""
        row = (await self.conn.execute(_TICKET_FOR_MESSAGE, {"message_id": message_id})).first()
        return (row[0], row[1]) if row else None

    async def sent_at_of_message(self, message_id: str) -> str | None:
        """The Date of the received mail recorded under `message_id` (its entry's `sent_at`,
        an ISO instant), or None when it has none (no Date, or recorded before it was kept)."""
        row = (
            await self.conn.execute(
                select(E.c.data)
                .select_from(M.join(E, E.c.id == M.c.entry_id))
                .where(M.c.message_id == message_id, M.c.direction == "in")
                .limit(1)
            )
        ).first()
        sent_at = (row[0] or {}).get("sent_at") if row else None
        return sent_at if isinstance(sent_at, str) else None

    async def acks_since(
        self, address: str, since: datetime, templates: tuple[str, ...] = ACK_TEMPLATES
    ) -> int:
        """How many acknowledgements (and notices counted with them) were queued to `address`
        since `since`."""
        params = {"templates": list(templates), "address": address, "since": since}
        return (await self.conn.execute(_ACKS_SINCE, params)).scalar_one()

    async def acks_from_since(self, address: str, since: datetime) -> int:
        """How many acknowledgements (and notices counted with them) were queued since `since`
        on tickets opened by mail from `address` (its From), to whatever address."""
        params = {"address": address, "since": since}
        return (await self.conn.execute(_ACKS_FROM_SINCE, params)).scalar_one()

    async def latest_language_of(self, requestor: str) -> str | None:
        """The language of the latest ticket `requestor` (lower case) opened, or None."""
        return (await self.conn.execute(_LATEST_LANGUAGE, {"requestor": requestor})).scalar()

    async def sender_counts(
        self, address: str, openings_since: datetime, acks_since: datetime
    ) -> tuple[int, int]:
        """`openings_since(address, openings_since)` and `acks_since(address, acks_since)`
        in one statement (the rules ask both about most new mails' senders)."""
        params = {
            "address": address, "openings_since": openings_since, "acks_since": acks_since
        }  # fmt: skip
        row = (await self.conn.execute(_SENDER_COUNTS, params)).one()
        return row[0], row[1]

    async def openings_since(self, address: str, since: datetime) -> int:
        """How many tickets `address` opened by mail, plus how many of its mails were kept as
        unverified, since `since` (the mail entries' actor is the sender)."""
        params = {"address": address, "since": since}
        return (await self.conn.execute(_OPENINGS_SINCE, params)).scalar_one()

    def _matching(self, words: str) -> Any | None:
        """A subquery of the ticket numbers whose title or texts contain all the words (None
        when there are no words). Shared by `!search`, the web's list and the API."""
        terms = search_terms(words)
        if not terms:
            return None
        if self.sqlite:
            # Each term quoted: FTS5 query syntax in user input must stay literal.
            query = " ".join('"' + t.replace('"', '""') + '"' for t in terms)
            return text(
                f"SELECT rowid >> {SEARCH_ROWID_SHIFT} FROM search_index"
                " WHERE search_index MATCH :q"
            ).bindparams(q=query)
        # The same words as FTS5 reads in each quoted term: a term of several words ("e-mail")
        # is a phrase, one without any word ("%") is left out, and with no word at all nothing
        # matches. Each term is a bound parameter that phraseto_tsquery reads as plain words,
        # never as tsquery syntax; f_unaccent as on the indexed side (migration 0008).
        phrases = [w for w in (search_text(t) for t in terms) if w]
        if not phrases:
            return text("SELECT ticket_id FROM search_index WHERE false")
        query = " && ".join(
            f"phraseto_tsquery('simple', f_unaccent(:t{n}))" for n in range(len(phrases))
        )
        params = {f"t{n}": phrase for n, phrase in enumerate(phrases)}
        return text(f"SELECT ticket_id FROM search_index WHERE tsv @@ ({query})").bindparams(
            **params
        )

    async def _matching_clause(self, words: str) -> tuple[Any | None, bool]:
        """The condition on tickets.id for the search words (None: no words), and whether it
        is one of a few rows (PostgreSQL only, see below; always False on SQLite)."""
        matching = self._matching(words)
        if matching is None or self.sqlite:
            return (None if matching is None else T.c.id.in_(matching)), False
        # PostgreSQL's planner cannot tell a rare word from a common one well enough: for a
        # newest-first page it walks every ticket backwards looking for matches, which finds
        # a common word's at once but reads the whole index for a rare one. A probe that stops
        # after FEW_ROWS matching rows (the GIN bitmap is cheap, the rows are not) tells them
        # apart; a rare word's few tickets are then fetched first, by their ids.
        probe = matching.columns(column("ticket_id", Integer)).subquery("probe")
        limited = select(probe.c.ticket_id).limit(FEW_ROWS + 1).subquery("limited")
        count = select(func.count()).select_from(limited)
        if (await self.conn.execute(count)).scalar_one() > FEW_ROWS:
            return T.c.id.in_(matching), False
        found = matching.columns(column("ticket_id", Integer)).subquery("found")
        # An array computed once (an InitPlan), then tickets' primary key looked up by it; the
        # cast keeps `= ANY (…)` from reading the subquery as a set of rows.
        ids = cast(select(func.array_agg(found.c.ticket_id)).scalar_subquery(), ARRAY(Integer))
        return T.c.id == any_(ids), True

    async def search(self, words: str, limit: int = 50) -> list[int]:
        """Tickets whose title or one of whose texts contains all the words, newest first."""
        clause, _few = await self._matching_clause(words)
        if clause is None:
            return []
        rows = await self.conn.execute(
            select(T.c.id).where(clause).order_by(T.c.id.desc()).limit(limit)
        )
        return [r[0] for r in rows]

    async def count_tickets(self) -> int:
        """How many tickets exist."""
        return (await self.conn.execute(select(func.count()).select_from(T))).scalar_one()

    async def tickets(self, numbers: Sequence[int]) -> list[Ticket]:
        """These tickets, in the order given (missing ones left out)."""
        rows = await self.conn.execute(select(T).where(T.c.id.in_(list(numbers))))
        found = {r.id: ticket_from_row(r) for r in rows}
        return [found[n] for n in numbers if n in found]

    async def entries(self, ids: Sequence[int]) -> list[Entry]:
        """These history entries, oldest first."""
        rows = await self.conn.execute(select(E).where(E.c.id.in_(list(ids))).order_by(E.c.id))
        return [entry_from_row(r) for r in rows]

    async def list_tickets(
        self,
        *,
        queue: str | None = None,
        statuses: Sequence[Status] = (),
        owner: str | None = None,
        unowned: bool = False,
        words: str = "",
        order: str = "newest",
        limit: int = 30,
        offset: int = 0,
        oldest_first: bool = False,
    ) -> tuple[list[Ticket], int]:
        """Tickets matching the filters and the search words, at most `limit` from `offset`,
        and how many match in all. `order`: newest, oldest (by number) or updated (most
        recently changed first); `oldest_first` is the same as order="oldest"."""
        where = []
        if queue:
            where.append(T.c.queue == queue)
        if statuses:
            where.append(T.c.status.in_([s.value for s in statuses]))
        if owner:
            where.append(T.c.owner == owner)
        if unowned:
            where.append(T.c.owner.is_(None))
        clause, few = await self._matching_clause(words)
        if clause is not None:
            where.append(clause)
        if clause is not None and len(where) == 1 and not (self.sqlite or few):
            # Words alone, many rows: the distinct tickets of the matching rows (every search
            # row's ticket exists; tickets are never deleted), which spares PostgreSQL a join
            # with every ticket when a common word matches tens of thousands.
            found = self._matching(words).columns(column("ticket_id", Integer)).subquery("found")
            count = select(func.count(distinct(found.c.ticket_id)))
        else:
            count = select(func.count()).select_from(T).where(*where)
        total = (await self.conn.execute(count)).scalar_one()
        if oldest_first:
            order = "oldest"
        sort = {
            "newest": (T.c.id.desc(),),
            "oldest": (T.c.id.asc(),),
            "updated": (T.c.updated_at.desc(), T.c.id.desc()),
        }.get(order)
        if sort is None:
            raise ValueError(f"unknown order {order!r}")
        rows = await self.conn.execute(
            select(T).where(*where).order_by(*sort).limit(limit).offset(offset)
        )
        return [ticket_from_row(r) for r in rows], total

    async def attachments(self, ticket: int) -> list[AttachmentMeta]:
        """What is attached to a ticket's mails (without the data), oldest first."""
        rows = await self.conn.execute(
            select(A.c.id, A.c.entry_id, A.c.filename, A.c.content_type, A.c.size)
            .where(A.c.ticket_id == ticket)
            .order_by(A.c.id)
        )
        return [AttachmentMeta(r.id, r.entry_id, r.filename, r.content_type, r.size) for r in rows]

    async def attachment(self, ticket: int, attachment_id: int) -> AttachmentInfo | None:
        """One attachment of a ticket, with its data; None when the ticket has no such one."""
        if not (is_stored_id(ticket) and is_stored_id(attachment_id)):
            return None
        row = (
            await self.conn.execute(
                select(A.c.filename, A.c.content_type, A.c.data).where(
                    A.c.ticket_id == ticket, A.c.id == attachment_id
                )
            )
        ).first()
        return AttachmentInfo(row.filename, row.content_type, bytes(row.data)) if row else None

    async def masked_entries(self, ticket: int) -> set[int]:
        """The ids of the ticket's entries whose text was masked (an original is kept)."""
        rows = await self.conn.execute(select(EO.c.entry_id).where(EO.c.ticket_id == ticket))
        return {r[0] for r in rows}

    async def original(self, ticket: int, entry_id: int) -> EntryOriginal | None:
        """The original text of one of the ticket's entries; None when none is kept. Only the
        reveal action reads it."""
        if not (is_stored_id(ticket) and is_stored_id(entry_id)):
            return None
        row = (
            await self.conn.execute(
                select(EO).where(EO.c.ticket_id == ticket, EO.c.entry_id == entry_id)
            )
        ).first()
        if row is None:
            return None
        return EntryOriginal(
            row.entry_id, row.ticket_id, row.body, row.subject, tuple(json.loads(row.kinds))
        )

    async def status_counts(self) -> dict[tuple[str, str], int]:
        """How many tickets there are per (queue, status)."""
        rows = await self.conn.execute(
            select(T.c.queue, T.c.status, func.count()).group_by(T.c.queue, T.c.status)
        )
        return {(q, s): n for q, s, n in rows}

    async def due_alerts(self, now: datetime, limit: int = 200) -> list[int]:
        """Tickets whose next alert time has come, the most overdue first."""
        rows = await self.conn.execute(
            select(T.c.id)
            .where(T.c.next_alert_at.is_not(None), T.c.next_alert_at <= now)
            .order_by(T.c.next_alert_at)
            .limit(limit)
        )
        return [r[0] for r in rows]


class SqlUnitOfWork(SqlReader):
    """The core's UnitOfWork on one connection inside one (write) transaction.

    What it writes is stamped with `now`, the caller's clock at the start of the transaction
    (the system's time when the caller gave none), so a test's fake clock reaches the rows."""

    def __init__(self, conn: AsyncConnection, sqlite: bool, now: datetime | None = None) -> None:
        super().__init__(conn, sqlite)
        self.now = now or utcnow()

    async def get_ticket(self, number: int, *, aliases: bool = True) -> Ticket | None:
        """The ticket with that number, or None. Locked until the transaction ends (FOR NO KEY
        UPDATE on PostgreSQL, where writers run concurrently; SQLite's BEGIN IMMEDIATE already
        serialises them and SQLAlchemy renders nothing there): a ticket read, changed and
        written back by two transactions at once must not lose one of the changes. A merged number gives the
        surviving ticket unless `aliases` is False."""
        if not is_stored_id(number):
            return None
        row = (await self.conn.execute(_TICKET_FOR_UPDATE, {"number": number})).first()
        if row is None and aliases:
            survivor = await self.alias_of(number)
            if survivor is not None:
                return await self.get_ticket(survivor, aliases=False)
        return ticket_from_row(row) if row else None

    async def create_ticket(self, ticket: Ticket, *, number: int | None = None) -> Ticket:
        """Insert a ticket; the database assigns its number, or it gets `number` (an imported
        ticket keeps its own), and later automatic numbers continue above it."""
        values = _ticket_values(ticket)
        if number is not None:
            values["id"] = number
        if not self.sqlite and number is None and ticket.title:
            values["content"] = search_text(ticket.title)
            ticket.number = (await self.conn.execute(_INSERT_TICKET_INDEXED, values)).first()[1]
            return ticket
        number = (await self.conn.execute(_INSERT_TICKET, values)).scalar_one()
        if "id" in values:
            await ensure_next_number(self.conn, number + 1)
        ticket.number = number
        await self._index(number, TITLE_ENTRY, ticket.title)
        return ticket

    async def update_ticket(self, ticket: Ticket, *, title_changed: bool = True) -> None:
        """Write back a ticket (and re-index its title when it changed)."""
        await self.conn.execute(
            _UPDATE_TICKET, {"_number": ticket.number, **_ticket_values(ticket)}
        )
        if title_changed:
            if self.sqlite:  # by rowid: FTS5 would scan every row for its unindexed columns
                await self.conn.execute(
                    text("DELETE FROM search_index WHERE rowid = :r"),
                    {"r": search_rowid(ticket.number, TITLE_ENTRY)},
                )
            else:
                await self.conn.execute(
                    text("DELETE FROM search_index WHERE ticket_id = :t AND entry_id = :e"),
                    {"t": ticket.number, "e": TITLE_ENTRY},
                )
            await self._index(ticket.number, TITLE_ENTRY, ticket.title)

    async def add_entry(self, entry: Entry) -> Entry:
        """Append a history entry and index its text."""
        values = {
            "ticket_id": entry.ticket_number,
            "kind": entry.kind.value,
            "actor": entry.actor,
            "created_at": entry.created_at,
            "body": entry.body,
            "data": entry.data,
        }
        searchable = " ".join(filter(None, [entry.data.get("subject"), entry.body]))
        if searchable and not self.sqlite:
            values["content"] = search_text(searchable)
            entry.id = (await self.conn.execute(_INSERT_ENTRY_INDEXED, values)).first()[0]
            return entry
        entry.id = (await self.conn.execute(_INSERT_ENTRY, values)).scalar_one()
        if searchable:
            await self._index(entry.ticket_number, entry.id, searchable)
        return entry

    async def update_entry(self, entry: Entry) -> None:
        """Write back an entry's kind and data."""
        await self.conn.execute(
            update(E).where(E.c.id == entry.id).values(kind=entry.kind.value, data=entry.data)
        )

    async def add_original(
        self,
        ticket: int,
        entry_id: int,
        body: str | None,
        subject: str | None,
        kinds: Sequence[str],
    ) -> None:
        """Keep the original text of an entry stored masked (see entry_originals)."""
        await self.conn.execute(
            insert(EO).values(
                entry_id=entry_id,
                ticket_id=ticket,
                body=body,
                subject=subject,
                kinds=json.dumps(sorted(set(kinds))),
                created_at=self.now,
            )
        )

    async def add_attachments(
        self, ticket: int, entry_id: int, attachments: Sequence[AttachmentInfo]
    ) -> None:
        """Store a mail's attachments."""
        await self.conn.execute(
            insert(A),
            [
                {
                    "ticket_id": ticket,
                    "entry_id": entry_id,
                    "filename": a.filename,
                    "content_type": a.content_type,
                    "size": a.size,
                    "data": a.data,
                }
                for a in attachments
            ],
        )

    async def add_participant(self, ticket: int, address: str, source: str) -> None:
        """Make an address a participant; already being one is fine."""
        # The unique constraint decides: check-then-insert would race on PostgreSQL.
        await self.conn.execute(
            _add_participant(self.conn.dialect.name),
            {"ticket_id": ticket, "address": address, "source": source, "created_at": self.now},
        )

    async def remove_participant(self, ticket: int, address: str) -> None:
        """Stop an address being a participant; not being one is fine."""
        await self.conn.execute(P.delete().where(P.c.ticket_id == ticket, P.c.address == address))

    async def record_message(
        self, message_id: str, ticket: int, direction: str, entry_id: int | None
    ) -> None:
        """Remember a Message-ID of the ticket for threading and de-duplication."""
        await self.conn.execute(
            _INSERT_MESSAGE,
            {
                "message_id": message_id,
                "ticket_id": ticket,
                "direction": direction,
                "entry_id": entry_id,
                "created_at": self.now,
            },
        )

    async def record_message_once(
        self, message_id: str, ticket: int, direction: str, entry_id: int | None
    ) -> bool:
        """Like record_message, but a Message-ID already recorded in that direction is left
        as it is (False) instead of being an error."""
        inserted = await self.conn.execute(
            upsert_insert(self.conn, M)
            .values(
                message_id=message_id,
                ticket_id=ticket,
                direction=direction,
                entry_id=entry_id,
                created_at=self.now,
            )
            .on_conflict_do_nothing(index_elements=[M.c.message_id, M.c.direction])
            .returning(M.c.id)
        )
        return inserted.first() is not None

    async def record_import(
        self, source: str, kind: str, external_id: str, ticket: int, entry_id: int | None = None
    ) -> None:
        """Note that an import from `source` wrote the other system's `kind` ("ticket" or
        "entry") `external_id` as this ticket (and entry)."""
        await self.conn.execute(
            insert(IR).values(
                source=source,
                kind=kind,
                external_id=external_id,
                ticket_id=ticket,
                entry_id=entry_id,
                created_at=self.now,
            )
        )

    async def add_alias(self, number: int, ticket: int, source: str) -> None:
        """Make a merged number name `ticket` (already so: nothing done); later automatic
        numbers continue above it."""
        await self.conn.execute(
            upsert_insert(self.conn, TA)
            .values(number=number, ticket_id=ticket, source=source, created_at=self.now)
            .on_conflict_do_nothing(index_elements=[TA.c.number])
        )
        await ensure_next_number(self.conn, number + 1)

    async def queue_outbox(
        self,
        kind: str,
        ticket: int | None,
        payload: dict[str, Any],
        *,
        template: str | None = None,
        recipient: str | None = None,
        due: datetime | None = None,
    ) -> int:
        """Queue an outward effect for the workers, due now or at `due`."""
        values = {
            "kind": kind,
            "ticket_id": ticket,
            "template": template,
            "recipient": recipient,
            "payload": payload,
            "state": "pending",
            "attempts": 0,
            "next_try_at": due or self.now,
            "created_at": self.now,
        }
        return (await self.conn.execute(_INSERT_OUTBOX, values)).scalar_one()

    async def give_up_reported(self, outbox_id: int) -> bool:
        """Whether the item's give-up is on its ticket already (outbox.give_up_reported)."""
        return await outbox.give_up_reported(self.conn, outbox_id)

    async def retry_outbox(self, outbox_id: int) -> tuple[str, int | None, str | None] | None:
        """Make a given-up item pending again, due now (exobot.db.outbox.retry_failed)."""
        return await outbox.retry_failed(self.conn, outbox_id, self.now)

    async def queue_later(
        self, kind: str, ticket: int, payload: dict[str, Any], *, key: str, due: datetime
    ) -> int:
        """Queue an effect due at `due`, coalesced with a pending row of the same kind, ticket
        and key that is not due yet (one already due may be in a worker's hands right now:
        a fresh row follows it instead, so no change goes unseen)."""
        template = f"{LATER}{key}"
        waiting = (
            await self.conn.execute(
                select(O.c.id, O.c.next_try_at)
                .where(
                    O.c.kind == kind,
                    O.c.ticket_id == ticket,
                    O.c.template == template,
                    O.c.state == "pending",
                    O.c.next_try_at > self.now,
                )
                .order_by(O.c.id.desc())
                .limit(1)
            )
        ).first()
        if waiting is not None:
            if waiting.next_try_at < due:
                await self.conn.execute(
                    update(O).where(O.c.id == waiting.id).values(next_try_at=due, payload=payload)
                )
            return waiting.id
        return await self.queue_outbox(kind, ticket, payload, template=template, due=due)

    async def claim(self, key: str, request_hash: str | None = None) -> bool:
        """Record an idempotency key, with the fingerprint of its request when known; False
        when it was recorded before (`handled_request` tells with which fingerprint)."""
        inserted = await self.conn.execute(
            upsert_insert(self.conn, H)
            .values(key=key, handled_at=self.now, request_hash=request_hash)
            .on_conflict_do_nothing(index_elements=[H.c.key])
            .returning(H.c.key)
        )
        return inserted.first() is not None

    async def settle(self, key: str, ticket: int | None) -> None:
        """Note which ticket the request of a claimed key acted on."""
        await self.conn.execute(update(H).where(H.c.key == key).values(ticket_id=ticket))

    async def mark_inbound(self, inbound_id: int, state: str, **details: object) -> None:
        """Record what became of a received raw mail."""
        details.setdefault("now", self.now)
        await inbound.mark_inbound(self.conn, inbound_id, state, **details)

    async def _index(self, ticket: int, entry_id: int, content: str) -> None:
        # FTS5 folds case and diacritics itself; PostgreSQL's table holds search_text(content),
        # from which its generated tsv column is computed (migration 0008).
        if self.sqlite:
            await self.conn.execute(
                _INDEX_SQLITE,
                {"r": search_rowid(ticket, entry_id), "t": ticket, "e": entry_id, "c": content},
            )
            return
        await self.conn.execute(
            _INDEX_POSTGRESQL, {"t": ticket, "e": entry_id, "c": search_text(content)}
        )


def _ticket_values(ticket: Ticket) -> dict[str, Any]:
    return {
        "title": ticket.title,
        "requestor": ticket.requestor,
        "owner": ticket.owner,
        "queue": ticket.queue,
        "status": ticket.status.value,
        "language": ticket.language,
        "created_at": ticket.created_at,
        "updated_at": ticket.updated_at,
        "last_member_mail_at": ticket.last_member_mail_at,
        "last_answer_at": ticket.last_answer_at,
        "next_alert_at": ticket.next_alert_at,
    }


class _Blocking:
    """A blocking connection behind the awaitable `execute` the queries are written against:
    inside a database thread nothing is awaited for real, so a statement costs no thread hop."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self.dialect = conn.dialect

    async def execute(self, *args: Any, **kwargs: Any) -> Any:
        """Run one statement now."""
        return self._conn.execute(*args, **kwargs)

    async def begin_nested(self) -> _BlockingSavepoint:
        """A savepoint, as AsyncConnection.begin_nested() gives one (commit or roll back)."""
        return _BlockingSavepoint(self._conn.begin_nested())


class _BlockingSavepoint:
    """A blocking savepoint behind the awaitable `commit`/`rollback` of an async one."""

    def __init__(self, nested: Any) -> None:
        self._nested = nested

    async def commit(self) -> None:
        """Keep what was done since the savepoint."""
        self._nested.commit()

    async def rollback(self) -> None:
        """Undo what was done since the savepoint; the transaction goes on."""
        self._nested.rollback()


class _Held:
    """A blocking connection in one transaction, used from the event loop: each statement runs
    in the side threads, its result read there in full (see SqlRepository.holding)."""

    def __init__(self, engine: Engine, executor: ThreadPoolExecutor) -> None:
        self._engine = engine
        self._executor = executor
        self._conn: Connection | None = None
        self._last: Future | None = None  # the last call handed to a side thread
        self.dialect = engine.dialect

    def _open(self) -> Connection:
        """Check a connection out of the pool and begin: done with the first statement, in the
        same hand-off (a hand-off to a thread costs the loop and the writer thread their turn)."""
        if self._conn is None:
            conn = self._engine.connect()
            try:
                conn.begin()
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    async def call(self, fn: Callable[..., R], *args: Any) -> R:
        """Run `fn(*args)` in a side thread. Once started it runs to its end even if the caller
        is cancelled (`finish` waits for it), so nothing is cut in half or left open."""
        self._last = self._executor.submit(fn, *args)
        return await asyncio.shield(asyncio.wrap_future(self._last))

    async def execute(self, *args: Any, **kwargs: Any) -> Any:
        """Run one statement; its rows are fetched before the result comes back."""
        return await self.call(self._execute, args, kwargs)

    def _execute(self, args: tuple, kwargs: dict) -> Any:
        result = self._open().execute(*args, **kwargs)
        return result.freeze()() if result.returns_rows else result

    async def finish(self, *, commit: bool) -> None:
        """Commit or roll back, and give the connection back to the pool."""
        if self._last is not None and not self._last.done():  # the caller was cancelled in it
            with contextlib.suppress(Exception):
                await asyncio.wrap_future(self._last)
        if self._conn is not None:
            await self.call(self._end, commit)

    def _end(self, commit: bool) -> None:
        try:
            if commit:
                self._conn.commit()
            else:
                self._conn.rollback()
        finally:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


class SqlRepository:
    """The core's Repository over SQLAlchemy.

    `run()` (what the TicketService uses) executes a whole transaction in one writer thread on a
    blocking connection: one hand-off per transaction instead of several per statement, and the
    event loop never blocks. On PostgreSQL, the workers' own transactions (`write`, `read`,
    `holding`) run so too, in side threads of their own: side by side with the writer and
    never queued behind a burst of mail. `transaction()`, `reading()` and `connection()` serve
    the web, the jobs and the tests on the async engine.
    """

    def __init__(self, engine: AsyncEngine, sync_engine: Engine | None = None) -> None:
        self.engine = engine
        self.sync_engine = sync_engine
        self.sqlite = engine.dialect.name == "sqlite"
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="exobot-db")
        # PostgreSQL runs transactions side by side: the workers' go to threads of their own.
        self._side = (
            ThreadPoolExecutor(SIDE_THREADS, thread_name_prefix="exobot-db-side")
            if sync_engine is not None and not self.sqlite
            else None
        )
        self._thread = threading.local()  # each thread's own loop that drives `work`
        self._loops: list[asyncio.AbstractEventLoop] = []

    async def run(
        self, work: Callable[[SqlUnitOfWork], Awaitable[R]], now: datetime | None = None
    ) -> R:
        """Run `work(uow)` in one write transaction and return its result; `now` is the time
        it stamps (None: the system's)."""
        if self.sync_engine is None:
            async with self.transaction(now) as uow:
                return await work(uow)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._writer, self._run_blocking, work, False, now)

    async def read(self, work: Callable[[SqlReader], Awaitable[R]]) -> R:
        """Run `work(view)` in one read-only transaction (one snapshot) and return its result."""
        if self.sync_engine is None:
            async with self.reading() as view:
                return await work(view)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._workers, self._run_blocking, work, True)

    def _run_blocking(
        self, work: Callable[[Any], Awaitable[R]], read_only: bool, now: datetime | None = None
    ) -> R:
        with self.sync_engine.connect() as conn:
            if read_only:
                conn = conn.execution_options(**self._read_options())
            with conn.begin():
                if read_only:
                    view = SqlReader(_Blocking(conn), self.sqlite)
                else:
                    view = SqlUnitOfWork(_Blocking(conn), self.sqlite, now)
                return self._thread_loop().run_until_complete(work(view))

    @property
    def _workers(self) -> ThreadPoolExecutor:
        """Where the workers' own transactions run: the side threads on PostgreSQL, the one
        writer thread on SQLite (one writer, so none sleeps in SQLite's busy handler)."""
        return self._writer if self._side is None else self._side

    def _thread_loop(self) -> asyncio.AbstractEventLoop:
        """The calling thread's own loop, which drives a `work` whose statements block."""
        loop = getattr(self._thread, "loop", None)
        if loop is None:
            loop = self._thread.loop = asyncio.new_event_loop()
            self._loops.append(loop)
        return loop

    def _read_options(self) -> dict[str, Any]:
        options = dict(READ_ONLY)
        if not self.sqlite:  # SQLite's deferred WAL transaction is one snapshot already
            options |= {"isolation_level": "REPEATABLE READ", "postgresql_readonly": True}
        return options

    async def close(self) -> None:
        """Stop the database threads and close every connection."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._writer.shutdown)
        if self._side is not None:
            await loop.run_in_executor(None, self._side.shutdown)
        for thread_loop in self._loops:
            thread_loop.close()
        if self.sync_engine is not None:
            self.sync_engine.dispose()
        await self.engine.dispose()

    async def write(self, work: Callable[[Any], Awaitable[R]]) -> R:
        """Run `work(conn)` (statements awaited on `conn`) in one write transaction. On SQLite
        through the writer thread, where the mails' transactions run: one writer, so neither
        sleeps in SQLite's busy handler for the other's lock. On PostgreSQL in a side thread
        (writers run side by side there)."""
        if self.sync_engine is None:
            async with self.connection() as conn:
                return await work(conn)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._workers, self._run_blocking, lambda uow: work(uow.conn), False
        )

    @asynccontextmanager
    async def holding(self) -> AsyncIterator[Any]:
        """A write transaction held open across awaits, e.g. while a claimed outbox row is
        sent: committed when the block ends, rolled back on error. On PostgreSQL a blocking
        connection whose statements each run in a side thread (a statement through the async
        driver costs several times the CPU); else the async engine's connection."""
        if self._side is None:
            async with self.connection() as conn:
                yield conn
            return
        held = _Held(self.sync_engine, self._side)
        try:
            yield held
        except BaseException:
            with contextlib.suppress(Exception):  # the error that stopped the block is told
                await held.finish(commit=False)
            raise
        await held.finish(commit=True)

    @asynccontextmanager
    async def transaction(self, now: datetime | None = None) -> AsyncIterator[SqlUnitOfWork]:
        """One write transaction: commits when the block ends, rolls back on error; `now` is
        the time it stamps (None: the system's)."""
        async with self.engine.begin() as conn:
            yield SqlUnitOfWork(conn, self.sqlite, now)

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[SqlReader]:
        """One read-only transaction: a consistent view that never waits for writers."""
        async with self.engine.connect() as conn:
            conn = await conn.execution_options(**self._read_options())
            async with conn.begin():
                yield SqlReader(conn, self.sqlite)

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[AsyncConnection]:
        """A connection in a write transaction, for the workers' and the CLI's own queries."""
        async with self.engine.begin() as conn:
            yield conn

    async def get_ticket(self, number: int) -> Ticket | None:
        """Read one ticket (a merged number: the surviving one)."""
        async with self.reading() as view:
            return await view.get_ticket(number)

    async def history(self, number: int) -> list[Entry]:
        """A ticket's whole history, oldest first."""
        async with self.reading() as view:
            return await view.history(number)

    async def search(self, words: str, limit: int = 50) -> list[int]:
        """Tickets with a title or text containing all the words, newest first."""
        async with self.reading() as view:
            return await view.search(words, limit)

    async def count_tickets(self) -> int:
        """How many tickets exist."""
        async with self.reading() as view:
            return await view.count_tickets()
