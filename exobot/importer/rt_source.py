"""Reading Request Tracker through its own APIs (the `rt` library) into plain records.

Two backends give the same records: REST 1.0 (`rt.rest1.Rt`, built into RT 4.4 and 5) and
REST 2 (`rt.rest2.Rt`, built into RT 5). `open_source(..., api="auto")` tries REST 2 and falls
back to REST 1.0. Everything here is blocking (the library is): the runner calls it in a
worker thread. Nothing here writes to RT.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import Any
from urllib.parse import quote

log = logging.getLogger("exobot.importer")

# RT's answers are bounded: one HTTP request waits this long at most (seconds).
HTTP_TIMEOUT = 60
# An attachment (or mail body) above this many bytes is not fetched: it is reported.
DEFAULT_MAX_ATTACHMENT = 10 * 1024 * 1024
# All the content fetched for one ticket's new history together (it is held in memory and
# written in one transaction): past this the rest is reported as too big, like an attachment
# over the limit. Anyone who can mail RT can grow one ticket (500 replies of 9 MB: 4.5 GB),
# and a process killed for its memory there would stop every run at the same ticket.
DEFAULT_MAX_TICKET_CONTENT = 200 * 1024 * 1024
# Parts of a mail that carry no file: RT names them so in REST 1.0's lists.
_UNNAMED = {"", "(Unnamed)", "untitled"}
# The transaction types whose attachments are a mail received or written in RT. (RT's
# EmailRecord transactions, the mails it sent, carry their Message-ID in Data.)
MAIL_TYPES = frozenset({"Create", "Correspond", "Comment"})
_SIZE = re.compile(r"^\s*([\d.]+)\s*([bkmg]?)", re.IGNORECASE)
_MSGID = re.compile(r"<([^<>\s]{1,900})>")


class RtError(Exception):
    """RT could not be read (connection, credentials, an unexpected answer)."""


@dataclass(frozen=True)
class RtUser:
    """An RT user: `privileged` users are staff, the others members (by their address).
    `known` is False when RT would not show the user (only its name is known then)."""

    id: str
    name: str
    email: str
    privileged: bool
    known: bool = True


@dataclass
class RtPart:
    """One row of RT's Attachments table: a MIME part of a transaction's mail."""

    id: int
    transaction: int
    parent: int
    content_type: str
    filename: str
    size: int
    message_id: str = ""  # the Message-ID header of a top part, without <>
    content: bytes | None = None  # fetched for text bodies and files under the size cap
    too_big: bool = False


@dataclass
class RtTransaction:
    """One item of a ticket's history (RT's Transactions table)."""

    id: int
    ticket: int  # the ticket it was made on (another number when that one was merged in)
    type: str
    field: str
    old_value: str
    new_value: str
    creator: str  # the user's Name
    created: datetime
    data: str = ""  # RT's Data column: an EmailRecord's Message-ID, a mail's subject
    content: str | None = None  # the text body RT gives for it (REST 1.0)
    parts: list[RtPart] = field(default_factory=list)


@dataclass(frozen=True)
class RtGap:
    """A number the ticket search did not return: merged into `effective`, or deleted."""

    id: int
    status: str
    effective: int


@dataclass
class RtTicket:
    """A ticket as RT shows it now, with its history (merged tickets' history included)."""

    id: int
    queue: str
    subject: str
    status: str
    owner: str  # a user Name; "Nobody" when unowned
    requestors: tuple[str, ...]
    cc: tuple[str, ...]
    created: datetime
    updated: datetime
    transactions: list[RtTransaction] = field(default_factory=list)

    @property
    def merged(self) -> tuple[int, ...]:
        """The numbers of the tickets merged into this one (their history is in ours)."""
        return tuple(sorted({t.ticket for t in self.transactions} - {self.id}))


def parse_time(value: Any, local: tzinfo = UTC) -> datetime | None:
    """An RT time as an aware UTC datetime; None for RT's "Not set" and empty values.
    REST 1.0 gives history times as stored ("2026-11-28 10:00:00", UTC) and ticket times as
    shown to its user ("Sat Nov 28 10:00:00 2026", in RT's $Timezone: `local`); REST 2 ISO."""
    text = str(value or "").strip()
    if not text or text.lower().startswith("not set") or text.startswith("1970-01-01"):
        return None
    with contextlib.suppress(ValueError):
        shown = datetime.strptime(text, "%a %b %d %H:%M:%S %Y")
        return shown.replace(tzinfo=local).astimezone(UTC)
    for form in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%SZ"):
        with contextlib.suppress(ValueError):
            return datetime.strptime(text, form).replace(tzinfo=UTC)
    with contextlib.suppress(ValueError):
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def parse_size(text: str) -> int:
    """REST 1.0's rounded size ("3b", "12k", "1.5m") in bytes."""
    match = _SIZE.match(text or "")
    if not match:
        return 0
    number = float(match.group(1))
    return int(
        number * {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[match.group(2).lower()]
    )


def message_id_of(value: str) -> str:
    """The Message-ID inside a header value, without angle brackets ("" when none)."""
    match = _MSGID.search(value or "")
    if match:
        return match.group(1)
    value = (value or "").strip()
    return value if value and " " not in value and len(value) < 900 else ""


def _names(value: Any) -> tuple[str, ...]:
    """A list of addresses or user names from whatever RT gave (a list, a comma string, REST
    2's objects)."""
    if not value:
        return ()
    if isinstance(value, str):
        value = value.split(",")
    out = []
    for item in value:
        if isinstance(item, dict):
            item = item.get("id") or item.get("Name") or ""
        item = str(item).strip()
        if item:
            out.extend(part.strip() for part in item.split(",") if part.strip())
    return tuple(out)


class RtSource:
    """What the importer needs from RT, whatever the API: the ticket list, a ticket with its
    history, users and queue names. Subclasses talk REST 1.0 or REST 2."""

    api = ""

    def __init__(
        self,
        max_attachment: int = DEFAULT_MAX_ATTACHMENT,
        timezone: tzinfo = UTC,
        max_ticket_content: int = DEFAULT_MAX_TICKET_CONTENT,
    ) -> None:
        self.max_attachment = max_attachment
        self.max_ticket_content = max_ticket_content
        self._fetched = 0  # bytes of content fetched for the ticket whose history is read
        self.timezone = timezone  # RT's $Timezone, in which REST 1.0 shows ticket times
        self._users: dict[str, RtUser] = {}
        self._queues: dict[str, str] = {}

    # -- to implement
    def ticket_list(self, since: datetime | None) -> list[RtTicket]:
        """Every ticket that is not merged into another (deleted ones too), ascending, without
        history; `since`: only those updated on or after it."""
        raise NotImplementedError

    def history(self, ticket: RtTicket, skip: Iterable[int] = (), parts: bool = True) -> None:
        """Fill `ticket.transactions` (oldest first); the parts (and their content) of the
        transactions in `skip` (already imported) are not fetched, nor any when not `parts`."""
        raise NotImplementedError

    def probe(self, number: int) -> RtGap | None:
        """What became of a number the search skipped (RT searches show neither merged nor
        deleted tickets); None when RT has no such ticket."""
        raise NotImplementedError

    def _fetch_within_limits(self, part: RtPart, fetch: Callable[[], bytes | None]) -> None:
        """Fill `part.content` by `fetch()`, or mark it too big: over max_attachment, or over
        what is left of the ticket's max_ticket_content (`_fetched` counts it; each history
        read sets it back to 0)."""
        if part.size > self.max_attachment or (
            self._fetched + part.size > self.max_ticket_content
        ):
            part.too_big = True
            return
        part.content = fetch()
        size = len(part.content or b"")
        if size > self.max_attachment or self._fetched + size > self.max_ticket_content:
            part.content, part.too_big = None, True
            return
        self._fetched += size

    def gaps(self, tickets: list[RtTicket], beyond: int = 20) -> list[RtGap]:
        """The merged and deleted numbers among the listed ones and above the highest (until
        `beyond` numbers in a row are unknown to RT)."""
        listed = {t.id for t in tickets}
        found = []
        number, misses = 0, 0
        top = max(listed, default=0)
        while number < top or misses < beyond:
            number += 1
            if number in listed:
                continue
            gap = self.probe(number)
            if gap is None:
                misses += number > top
            else:
                found.append(gap)
                misses = 0
                top = max(top, number)
        return found

    def _load_user(self, key: str) -> RtUser:
        raise NotImplementedError

    def _load_queue(self, key: str) -> str:
        raise NotImplementedError

    def close(self) -> None:
        """Release the HTTP session."""

    # -- shared
    def user(self, key: str) -> RtUser:
        """A user by Name or id (cached); an unknown one as an unprivileged user of that name."""
        key = str(key or "").strip()
        if key not in self._users:
            try:
                self._users[key] = self._load_user(key)
            except Exception as error:  # noqa: BLE001 - a missing user must not stop an import
                log.debug("RT user %r unreadable: %s", key, error)
                self._users[key] = RtUser(key, key, key if "@" in key else "", False, known=False)
            user = self._users[key]
            self._users.setdefault(user.name, user)
        return self._users[key]

    def queue_name(self, key: str) -> str:
        """A queue's name from its id or name (cached)."""
        key = str(key or "").strip()
        if not key.isdecimal():
            return key
        if key not in self._queues:
            try:
                self._queues[key] = self._load_queue(key)
            except Exception as error:  # noqa: BLE001
                log.debug("RT queue %r unreadable: %s", key, error)
                self._queues[key] = key
        return self._queues[key]


# ------------------------------------------------------------------------------ REST 1.0


class Rest1Source(RtSource):
    """RT's REST 1.0 (/REST/1.0/) through `rt.rest1.Rt`."""

    api = "1"

    def __init__(self, url: str, user: str, password: str, **kwargs: Any) -> None:
        import rt.rest1

        super().__init__(**kwargs)
        self.client = rt.rest1.Rt(url.rstrip("/") + "/REST/1.0/", user, password)
        try:
            ok = self.client.login()
        except Exception as error:
            raise RtError(f"REST 1.0 at {url}: {error}") from error
        if not ok:
            raise RtError(f"REST 1.0 at {url}: login refused for {user}")

    def close(self) -> None:
        """End the session."""
        with contextlib.suppress(Exception):
            self.client.session.close()

    def ticket_list(self, since: datetime | None) -> list[RtTicket]:
        """Search every ticket (RT hides deleted ones unless the query names a status)."""
        import rt.rest1

        query = "(Status = 'deleted' OR Status != 'deleted')"
        if since is not None:
            query += f" AND LastUpdated >= '{since.astimezone(UTC):%Y-%m-%d %H:%M:%S}'"
        rows = self.client.search(Queue=rt.rest1.ALL_QUEUES, raw_query=query, order="id")
        tickets = []
        for row in rows:
            ident = str(row.get("numerical_id") or row.get("id", "")).rpartition("/")[2]
            if not ident.isdecimal():
                continue
            created = parse_time(row.get("Created"), self.timezone) or datetime.now(UTC)
            tickets.append(
                RtTicket(
                    id=int(ident),
                    queue=str(row.get("Queue", "")),
                    subject=str(row.get("Subject", "")),
                    status=str(row.get("Status", "")),
                    owner=str(row.get("Owner", "Nobody")),
                    requestors=_names(row.get("Requestors")),
                    cc=_names(row.get("Cc")),
                    created=created,
                    updated=parse_time(row.get("LastUpdated"), self.timezone) or created,
                )
            )
        return sorted(tickets, key=lambda t: t.id)

    def history(self, ticket: RtTicket, skip: Iterable[int] = (), parts: bool = True) -> None:
        """The long history (one request), then the mail parts of new transactions."""
        self._fetched = 0
        items = self.client.get_history(ticket.id) or []
        skip = set(skip)
        listing: dict[int, tuple[str, str, str]] | None = None
        out = []
        for item in items:
            if not str(item.get("id", "")).isdecimal():
                continue
            content = item.get("Content")
            if isinstance(content, str) and content.startswith(
                "This transaction appears to have no content"
            ):
                content = None
            txn = RtTransaction(
                id=int(item["id"]),
                ticket=int(item.get("Ticket") or ticket.id),
                type=str(item.get("Type", "")),
                field=str(item.get("Field", "")),
                old_value=str(item.get("OldValue", "")),
                new_value=str(item.get("NewValue", "")),
                creator=str(item.get("Creator", "")),
                created=parse_time(item.get("Created")) or ticket.created,
                data=str(item.get("Data", "") or ""),
                content=content if isinstance(content, str) else None,
            )
            attachments = item.get("Attachments") or []
            if parts and txn.id not in skip and txn.type in MAIL_TYPES and attachments:
                if listing is None:
                    listing = {
                        int(a[0]): (a[1], a[2], a[3])
                        for a in (self.client.get_attachments(ticket.id) or [])
                    }
                txn.parts = self._parts(ticket.id, txn, [int(a[0]) for a in attachments], listing)
            out.append(txn)
        ticket.transactions = sorted(out, key=lambda t: t.id)

    def probe(self, number: int) -> RtGap | None:
        """REST 1.0 shows a merged number as the ticket it was merged into."""
        shown = self.client.get_ticket(number)
        if not shown:
            return None
        effective = int(str(shown.get("id", number)).rpartition("/")[2] or number)
        return RtGap(number, str(shown.get("Status", "")), effective)

    def _parts(
        self,
        ticket: int,
        txn: RtTransaction,
        ids: list[int],
        listing: dict[int, tuple[str, str, str]],
    ) -> list[RtPart]:
        parts = []
        ordered = sorted(ids)  # once: sorting again for each part was quadratic
        for position, part_id in enumerate(ordered):
            name, ctype, size_text = listing.get(part_id, ("", "", "0b"))
            part = RtPart(
                id=part_id,
                transaction=txn.id,
                parent=0 if position == 0 else ordered[0],
                content_type=ctype,
                filename="" if name in _UNNAMED else name,
                size=parse_size(size_text),
            )
            if position == 0:  # the top part: its headers hold the Message-ID
                shown = self._attachment(txn.ticket, ticket, part_id)
                if shown:
                    headers = shown.get("Headers") or {}
                    part.message_id = message_id_of(
                        headers.get("Message-ID") or headers.get("Message-Id") or ""
                    ) or message_id_of(str(shown.get("MessageId", "")))
                    part.content_type = part.content_type or str(shown.get("ContentType", ""))
            if part.filename:
                self._fetch_within_limits(
                    part, lambda part_id=part_id: self._content(txn.ticket, ticket, part_id)
                )
            parts.append(part)
        return parts

    def _attachment(self, own: int, effective: int, part_id: int) -> dict | None:
        for number in dict.fromkeys((effective, own)):
            with contextlib.suppress(Exception):
                shown = self.client.get_attachment(number, part_id)
                if shown:
                    return shown
        return None

    def _content(self, own: int, effective: int, part_id: int) -> bytes | None:
        for number in dict.fromkeys((effective, own)):
            with contextlib.suppress(Exception):
                data = self.client.get_attachment_content(number, part_id)
                if data is not None:
                    # REST 1.0 ends the content with the blank lines of its envelope.
                    return data[:-3] if data.endswith(b"\n\n\n") else data
        return None

    def _load_user(self, key: str) -> RtUser:
        # Not the library's get_user (`user/NAME`): for a disabled user RT answers it with
        # "No user named NAME exists"; `user/NAME/show` shows disabled users too.
        response = self.client.session.get(
            self.client.url + f"user/{quote(key, safe='@')}/show", timeout=HTTP_TIMEOUT
        )
        data = _rest1_fields(response.content.decode("utf-8", "replace"))
        if response.status_code != 200 or not data.get("Name"):
            raise RtError(f"no user {key}")
        return RtUser(
            id=str(data.get("id", "")).rpartition("/")[2],
            name=str(data["Name"]),
            email=str(data.get("EmailAddress", "") or ""),
            privileged=str(data.get("Privileged", "0")).strip() not in ("", "0"),
        )

    def _load_queue(self, key: str) -> str:
        data = self.client.get_queue(key)
        if not data:
            raise RtError(f"no queue {key}")
        return str(data.get("Name", key))


# -------------------------------------------------------------------------------- REST 2


class Rest2Source(RtSource):
    """RT's REST 2 (/REST/2.0/) through `rt.rest2.Rt`: its HTTP session (authenticated by the
    library) for the paged collections with the fields the importer needs."""

    api = "2"

    def __init__(
        self,
        url: str,
        user: str,
        password: str | None = None,
        token: str | None = None,
        **kwargs: Any,
    ) -> None:
        import httpx2
        import rt.rest2

        super().__init__(**kwargs)
        base = url.rstrip("/")
        self.client = rt.rest2.Rt(base + "/REST/2.0/", token=token, http_timeout=HTTP_TIMEOUT)
        try:
            if (
                token is None
                and password is not None
                and not self._session_login(base, user, password)
            ):
                # RT checks a Basic password's hash on every request (about 0.3 s each
                # here): the web session above is preferred, this is the fallback.
                self.client.session.auth = httpx2.BasicAuth(user, password)
            self._get("rt")
        except RtError:
            raise
        except Exception as error:
            raise RtError(f"REST 2 at {url}: {error}") from error

    def _session_login(self, base: str, user: str, password: str) -> bool:
        """Log in as the web form does: REST 2 accepts RT's session cookie."""
        try:
            self.client.session.post(
                base + "/NoAuth/Login.html", data={"user": user, "pass": password}
            )
            return self.client.session.get(self.client.url + "rt").status_code == 200
        except Exception as error:  # noqa: BLE001 - Basic authentication is tried next
            log.debug("RT web login failed: %s", error)
            return False

    def close(self) -> None:
        """End the session."""
        with contextlib.suppress(Exception):
            self.client.session.close()

    def _get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        response = self.client.session.get(self.client.url + path, params=params)
        if response.status_code in (302, 401, 403):  # RT sends a refused login to its form
            raise RtError(f"REST 2: {path}: login refused or not allowed ({response.status_code})")
        if response.status_code != 200:
            raise RtError(f"REST 2: {path}: HTTP {response.status_code}")
        try:
            return response.json()
        except ValueError as error:
            raise RtError(f"REST 2: {path}: not JSON") from error

    def _paged(self, path: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        page = 1
        while True:
            data = self._get(path, {**params, "page": page, "per_page": 100})
            batch = data.get("items") or []
            items.extend(batch)
            pages = data.get("pages")
            if not batch or (pages is not None and page >= int(pages)):
                return items
            if pages is None and len(batch) < int(data.get("per_page", 100)):
                return items
            page += 1

    def ticket_list(self, since: datetime | None) -> list[RtTicket]:
        """Search every ticket, deleted ones included, with the fields of the plan."""
        query = "(Status = 'deleted' OR Status != 'deleted')"
        if since is not None:
            query += f" AND LastUpdated >= '{since.astimezone(UTC):%Y-%m-%d %H:%M:%S}'"
        rows = self._paged(
            "tickets",
            {
                "query": query,
                "orderby": "id",
                "order": "ASC",
                "fields": "Subject,Status,Queue,Owner,Requestor,Cc,Created,LastUpdated",
                "fields[Queue]": "Name",
                "fields[Owner]": "Name",
                "fields[Requestor]": "EmailAddress,Name",
                "fields[Cc]": "EmailAddress,Name",
            },
        )
        tickets = []
        for row in rows:
            created = parse_time(row.get("Created")) or datetime.now(UTC)
            tickets.append(
                RtTicket(
                    id=int(row["id"]),
                    queue=_field_name(row.get("Queue")),
                    subject=str(row.get("Subject") or ""),
                    status=str(row.get("Status") or ""),
                    owner=_field_name(row.get("Owner")) or "Nobody",
                    requestors=_addresses(row.get("Requestor")),
                    cc=_addresses(row.get("Cc")),
                    created=created,
                    updated=parse_time(row.get("LastUpdated")) or created,
                )
            )
        return sorted(tickets, key=lambda t: t.id)

    def history(self, ticket: RtTicket, skip: Iterable[int] = (), parts: bool = True) -> None:
        """The history collection (one paged request), then the ticket's attachment rows."""
        self._fetched = 0
        rows = self._paged(
            f"ticket/{ticket.id}/history",
            {
                "fields": "Type,Creator,Created,Field,OldValue,NewValue,ObjectId,Data",
                "fields[Creator]": "Name",
            },
        )
        skip = set(skip)
        out = []
        for row in rows:
            out.append(
                RtTransaction(
                    id=int(row["id"]),
                    ticket=int(row.get("ObjectId") or ticket.id),
                    type=str(row.get("Type") or ""),
                    field=str(row.get("Field") or ""),
                    old_value=str(row.get("OldValue") or ""),
                    new_value=str(row.get("NewValue") or ""),
                    creator=_field_name(row.get("Creator")),
                    created=parse_time(row.get("Created")) or ticket.created,
                    data=str(row.get("Data") or "").strip(),
                )
            )
        out.sort(key=lambda t: t.id)
        ticket.transactions = out
        wanted = {t.id: t for t in out if t.type in MAIL_TYPES and t.id not in skip}
        if not parts or not wanted:
            return
        # The effective ticket's attachments include those of the tickets merged into it.
        # (Not "Parent": RT 5.0.3 fails on it; a mail's top part is its lowest id.)
        for row in self._paged(
            f"ticket/{ticket.id}/attachments",
            {"fields": "TransactionId,ContentType,Filename,ContentLength,MessageId"},
        ):
            txn_id = int(_field_id(row.get("TransactionId")) or 0)
            txn = wanted.get(txn_id)
            if txn is None:
                continue
            txn.parts.append(
                RtPart(
                    id=int(row["id"]),
                    transaction=txn_id,
                    parent=0,
                    content_type=str(row.get("ContentType") or ""),
                    filename=str(row.get("Filename") or ""),
                    size=int(row.get("ContentLength") or 0),
                    message_id=message_id_of(str(row.get("MessageId") or "")),
                )
            )
        for txn in wanted.values():
            txn.parts.sort(key=lambda p: p.id)
            for part in txn.parts[1:]:
                part.parent = txn.parts[0].id
            for part in txn.parts:
                if part.filename or part.content_type.startswith("text/"):
                    self._fetch_within_limits(part, lambda part_id=part.id: self._content(part_id))
                elif part.size > self.max_attachment:
                    part.too_big = True

    def probe(self, number: int) -> RtGap | None:
        """REST 2 shows a merged number with the surviving ticket as EffectiveId."""
        response = self.client.session.get(self.client.url + f"ticket/{number}")
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise RtError(f"REST 2: ticket/{number}: HTTP {response.status_code}")
        shown = response.json()
        effective = int(_field_id(shown.get("EffectiveId")) or number)
        return RtGap(number, str(shown.get("Status") or ""), effective)

    def _content(self, part_id: int) -> bytes | None:
        data = self._get(f"attachment/{part_id}")
        content = data.get("Content")
        if content is None:
            return None
        try:
            return base64.b64decode(content)
        except ValueError:
            return str(content).encode("utf-8", "replace")

    def _load_user(self, key: str) -> RtUser:
        data = self._get(f"user/{key}")
        return RtUser(
            id=str(data.get("id", "")),
            name=str(data.get("Name") or key),
            email=str(data.get("EmailAddress") or ""),
            privileged=str(data.get("Privileged", "0")) not in ("", "0", "None"),
        )

    def _load_queue(self, key: str) -> str:
        return str(self._get(f"queue/{key}").get("Name") or key)


def _rest1_fields(text: str) -> dict[str, str]:
    """The "Key: value" lines of a REST 1.0 answer (its status line and comments skipped)."""
    fields = {}
    for line in text.splitlines()[1:]:
        key, sep, value = line.partition(":")
        if sep and key and not key.startswith(("#", " ")):
            fields[key.strip()] = value.strip()
    return fields


def _field_name(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("Name") or value.get("id") or "")
    return str(value or "")


def _field_id(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("id") or "")
    return str(value or "")


def _addresses(value: Any) -> tuple[str, ...]:
    if not value:
        return ()
    out = []
    for item in value if isinstance(value, list) else [value]:
        if isinstance(item, dict):
            item = item.get("EmailAddress") or item.get("Name") or item.get("id") or ""
        if str(item).strip():
            out.append(str(item).strip())
    return tuple(out)


def open_source(
    url: str,
    user: str,
    *,
    password: str | None = None,
    token: str | None = None,
    api: str = "auto",
    max_attachment: int = DEFAULT_MAX_ATTACHMENT,
    timezone: tzinfo = UTC,
) -> RtSource:
    """A reader of the RT at `url` (its base, without /REST/…): REST 2 for api "2", REST 1.0
    for "1" (which needs a password: it knows no tokens), "auto": REST 2, else REST 1.0."""
    if api not in ("auto", "1", "2"):
        raise ValueError(f"unknown RT API {api!r}")
    errors = []
    if api in ("auto", "2"):
        try:
            return Rest2Source(url, user, password, token, max_attachment=max_attachment)
        except RtError as error:
            if api == "2":
                raise
            errors.append(str(error))
    if password is None:
        raise RtError("; ".join([*errors, "REST 1.0 needs a password (--password-file)"]))
    try:
        return Rest1Source(url, user, password, max_attachment=max_attachment, timezone=timezone)
    except RtError as error:
        raise RtError("; ".join([*errors, str(error)])) from error
