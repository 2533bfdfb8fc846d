"""What the pages and the API show, read in one consistent snapshot each."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from sqlalchemy import select

from exobot.core.flags import ActiveFlag, active_flags
from exobot.core.model import Entry, EntryKind, Status, Ticket
from exobot.core.people import imported_system
from exobot.core.search import check_page
from exobot.core.waiting import Waiting, waiting_on
from exobot.db.repository import AttachmentMeta, SqlReader, SqlRepository
from exobot.db.tables import EntryRow

PER_PAGE = 50
MAX_PER_PAGE = 200
ORDERS = ("newest", "oldest", "updated")
WAITING = (Status.NEW, Status.OPEN)
DASHBOARD_OLDEST = 10
DASHBOARD_STALLED = 10
DASHBOARD_MINE = 20
# A volunteer's own tickets: everything not closed.
MINE = (Status.NEW, Status.OPEN, Status.STALLED)
# The most tickets with pending unverified mail the dashboard names one by one.
DASHBOARD_UNVERIFIED = 20


@dataclass(frozen=True)
class TicketFilter:
    """The ticket list's filters, as given in the query string or the API."""

    queue: str | None = None
    statuses: tuple[Status, ...] = ()
    owner: str | None = None  # a Matrix id; "mine" is resolved before this point
    unowned: bool = False
    words: str = ""
    order: str = "newest"
    page: int = 1
    per_page: int = PER_PAGE

    @classmethod
    def parse(cls, params: Mapping[str, object], user_id: str) -> TicketFilter:
        """Filters from request parameters; unknown values are dropped, never an error.

        `status` may repeat or be comma-separated; `owner=mine` means `user_id`,
        `owner=none` means unowned; `q` holds the search words."""
        statuses: list[Status] = []
        raw = params.get("status")
        values = raw if isinstance(raw, list | tuple) else [raw] if raw else []
        for value in values:
            for word in str(value).split(","):
                if word.strip() in Status.__members__.values():
                    statuses.append(Status(word.strip()))
        owner = str(params.get("owner") or "").strip() or None
        unowned = owner == "none" or str(params.get("unowned") or "") in ("1", "true", "on")
        if owner == "mine" or str(params.get("mine") or "") in ("1", "true", "on"):
            owner = user_id
        if owner == "none":
            owner = None
        order = str(params.get("order") or params.get("sort") or "newest")
        return cls(
            queue=str(params.get("queue") or "").strip() or None,
            statuses=tuple(dict.fromkeys(statuses)),
            owner=owner,
            unowned=unowned,
            words=str(params.get("q") or "").strip()[:200],
            order=order if order in ORDERS else "newest",
            page=max(1, _int(params.get("page"), 1)),
            per_page=min(MAX_PER_PAGE, max(1, _int(params.get("per_page"), PER_PAGE))),
        )


def _int(value: object, default: int) -> int:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return default


@dataclass(frozen=True)
class TicketPage:
    """One page of the ticket list."""

    tickets: list[Ticket]
    total: int
    filter: TicketFilter
    # The numbers of the shown tickets that hold mail from an unverified sender, not accepted.
    unverified: frozenset[int] = frozenset()
    # Every ticket holding such mail (the list names them above the filters).
    unverified_all: tuple[int, ...] = ()

    def waiting(self, ticket: Ticket) -> Waiting:
        """Whose move it is on `ticket` (exobot.core.waiting)."""
        return waiting_on(ticket)

    @property
    def pages(self) -> int:
        """How many pages the whole list has (at least 1)."""
        return max(1, -(-self.total // self.filter.per_page))


@dataclass(frozen=True)
class Dashboard:
    """The overview: new tickets (should be zero), counts, oldest waiting, stalled."""

    new: int
    counts: dict[str, dict[str, int]]  # queue → status → count
    oldest_waiting: list[Ticket]
    stalled: list[Ticket]
    stalled_total: int
    mine: list[Ticket] = field(default_factory=list)  # the reader's own, not closed
    mine_total: int = 0
    unverified: list[Ticket] = field(default_factory=list)  # holding unaccepted mail
    unverified_total: int = 0

    def waiting(self, ticket: Ticket) -> Waiting:
        """Whose move it is on `ticket` (exobot.core.waiting)."""
        return waiting_on(ticket)


@dataclass(frozen=True)
class TicketView:
    """Everything the ticket page shows."""

    ticket: Ticket
    history: list[Entry]
    participants: list[str]
    attachments: dict[int, list[AttachmentMeta]] = field(default_factory=dict)  # by entry id
    # The entries stored masked (an original is kept, shown only through the reveal action).
    masked: frozenset[int] = frozenset()
    # An imported ticket: the helpdesk it came from (its source) and the numbers merged into it.
    imported_from: str | None = None
    merged: tuple[int, ...] = ()

    @property
    def flags(self) -> list[ActiveFlag]:
        """The ticket's active flags, from its history."""
        return active_flags(self.history)

    @property
    def waiting(self) -> Waiting:
        """Whose move it is (exobot.core.waiting)."""
        return waiting_on(self.ticket)

    @property
    def unverified(self) -> bool:
        """Whether mail from an unverified sender waits to be accepted."""
        return any(entry.kind is EntryKind.UNVERIFIED_IN for entry in self.history)


async def ticket_list(repository: SqlRepository, wanted: TicketFilter) -> TicketPage:
    """The tickets matching `wanted`, one page of them; InvalidRequest for a page beyond any
    list or search words that cannot be searched."""
    check_page(wanted.page)
    async with repository.reading() as view:
        tickets, total = await view.list_tickets(
            queue=wanted.queue,
            statuses=wanted.statuses,
            owner=wanted.owner,
            unowned=wanted.unowned,
            words=wanted.words,
            order=wanted.order,
            limit=wanted.per_page,
            offset=(wanted.page - 1) * wanted.per_page,
        )
        unverified_all = await unverified_tickets(view)
    shown = {t.number for t in tickets}
    unverified = frozenset(n for n in unverified_all if n in shown)
    return TicketPage(tickets, total, wanted, unverified, tuple(unverified_all))


async def unverified_tickets(view: SqlReader, numbers: list[int] | None = None) -> list[int]:
    """The tickets (among `numbers`, or all) holding mail from an unverified sender that no
    operator accepted yet (accepting turns the entry into correspondence), oldest first."""
    E = EntryRow.__table__
    query = select(E.c.ticket_id).where(E.c.kind == EntryKind.UNVERIFIED_IN.value).distinct()
    if numbers is not None:
        if not numbers:
            return []
        query = query.where(E.c.ticket_id.in_(numbers))
    return sorted(row[0] for row in await view.conn.execute(query))


async def dashboard(
    repository: SqlRepository, queues: tuple[str, ...], user_id: str = ""
) -> Dashboard:
    """The dashboard's figures, from one snapshot (`user_id`: whose "my tickets" block)."""
    async with repository.reading() as view:
        counts_by_pair = await view.status_counts()
        oldest, _ = await view.list_tickets(
            statuses=WAITING, order="oldest", limit=DASHBOARD_OLDEST
        )
        stalled, stalled_total = await view.list_tickets(
            statuses=(Status.STALLED,), order="oldest", limit=DASHBOARD_STALLED
        )
        mine: list[Ticket] = []
        mine_total = 0
        if user_id:
            mine, mine_total = await view.list_tickets(
                statuses=MINE, owner=user_id, order="updated", limit=DASHBOARD_MINE
            )
        unverified_numbers = await unverified_tickets(view)
        unverified = await view.tickets(unverified_numbers[:DASHBOARD_UNVERIFIED])
    counts: dict[str, dict[str, int]] = {q: {s.value: 0 for s in Status} for q in queues}
    for (queue, status), n in counts_by_pair.items():
        counts.setdefault(queue, {s.value: 0 for s in Status})[status] = n
    new = sum(per_status.get(Status.NEW.value, 0) for per_status in counts.values())
    return Dashboard(
        new,
        counts,
        oldest,
        stalled,
        stalled_total,
        mine,
        mine_total,
        unverified,
        len(unverified_numbers),
    )


async def ticket_view(repository: SqlRepository, number: int) -> TicketView | None:
    """A ticket with its whole history, participants and attachments; None if unknown. A
    number merged into another ticket (an import) gives the surviving ticket."""
    async with repository.reading() as view:
        ticket = await view.get_ticket(number)
        if ticket is None:
            return None
        number = ticket.number
        history = await view.history(number)
        participants = sorted(await view.participants(number))
        attachments: dict[int, list[AttachmentMeta]] = {}
        for meta in await view.attachments(number):
            attachments.setdefault(meta.entry_id, []).append(meta)
        masked = frozenset(await view.masked_entries(number))
        source = await view.import_source(number)
        merged = tuple(await view.merged_into(number))
    imported = imported_system(source) if source else None
    return TicketView(ticket, history, participants, attachments, masked, imported, merged)
