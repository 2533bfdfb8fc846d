"""The chat worker: turns the outbox's chat rows into Matrix messages, in order per ticket.

A row is rendered when it is delivered, from the history entries it names. Every message it
sends uses a transaction id made of the row id and the message's part, so a retry after a
crash or a lost response makes the homeserver return the event it already has instead of
posting twice. Each ticket has one root message per room; everything later goes into its
thread.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from functools import partial
from html import escape as html_escape
from urllib.parse import quote

import nio

from exobot.core.clock import Clock, utc
from exobot.core.flags import active_flags
from exobot.core.intents import RecordDeliveryFailure
from exobot.core.model import Actor, Entry, EntryKind, Status, Ticket
from exobot.core.people import imported_system
from exobot.core.references import format_reference
from exobot.core.service import CHAT, REDACT, ROOT_EDIT, ServiceError, TicketService
from exobot.db import chat, outbox
from exobot.db import web as web_records
from exobot.db.outbox import OutboxItem
from exobot.db.repository import SqlRepository
from exobot.delivery import OutboxWorker, PermanentFailure, RetryPolicy, reading_payload
from exobot.matrix.client import MatrixClient, refusal
from exobot.matrix.content import Where, edit_content, message_content, thread_relation
from exobot.matrix.payloads import check_payload
from exobot.matrix.render import Message, Renderer
from exobot.matrix.rooms import QueueRooms
from exobot.privacy.concerns import shown_addresses

log = logging.getLogger("exobot.matrix.poster")

DIGEST_OLDEST = 5
#: Chat rows of different tickets in flight at once (exobot.delivery lanes). With 8, Synapse's
#: main thread sat idle a quarter of a burst, waiting for the next post; with 32 the bench gave
#: 44-63 mails/s end to end with Matrix against 34-46. On PostgreSQL each lane holds a pooled
#: connection for its claim (its records go through the repository's side threads), so the
#: lanes stay within the connections the pool keeps (exobot.db.engine.PG_SYNC_POOL_SIZE);
#: 32 gave no more than 16 there (27-33 against 26-27 mails/s).
CHAT_SENDS_SQLITE = 32
CHAT_SENDS_POSTGRESQL = 16
REACTION_DONE = "✅"
#: The rows about one ticket that are recorded on it when given up for good: its
#: announcements, plugins' notes in its thread, edits of its root, and the redactions of a
#: privacy erasure (the posts still show: a moderator can remove them by hand).
REPORTED_ON_TICKET = frozenset({"ticket", "thread_post", ROOT_EDIT, REDACT})


class RoomNotReady(Exception):
    """The queue's room is configured but not joined yet: try again later."""


class DirectRoomNotReady(Exception):
    """The operator has not joined the direct room yet: the link waits for them."""


@dataclass(frozen=True)
class LoginLinks:
    """Where `!login` links point and how long they last."""

    root: str  # the web's base URL, without the trailing slash
    ttl: timedelta


@dataclass(frozen=True)
class _RootFacts:
    """What a ticket's root message shows besides the ticket itself, read with the row."""

    flags: list
    last_status: Entry | None
    source: str | None  # the other helpdesk it was imported from
    first: Entry | None  # the entry the root quotes (None: not read, or none)


@dataclass
class _Row:
    """Everything a ticket's chat row needs from the database, read in one transaction."""

    ticket: Ticket | None
    entries: list[Entry]
    thread: chat.Thread | None
    part: _Parts
    root: _RootFacts | None  # read when the row may post or edit a root
    outdated: frozenset[int] = frozenset()  # its alerts that no longer hold (_outdated_alerts)


class ChatSender(OutboxWorker):
    """Delivers chat rows: ticket announcements, answers to commands and room notices."""

    kind = CHAT
    log = log
    # Rows of different tickets are posted side by side (each waits for the homeserver's
    # answer): a ticket's rows touch only its own threads and posts, and nio lets concurrent
    # sends to one encrypted room wait for a single key share. Rows of no ticket (answers,
    # login links with their direct rooms and `_waiting`, notices, digests) stay in one lane,
    # in order, and go first (exobot.db.outbox.due).
    unattached_first = True

    def __init__(
        self,
        repository: SqlRepository,
        client: MatrixClient,
        rooms: QueueRooms,
        renderer: Renderer,
        *,
        default_queue: str,
        login: LoginLinks | None = None,
        retry: RetryPolicy | None = None,
        clock: Clock | None = None,
        service: TicketService | None = None,
    ) -> None:
        super().__init__(repository, retry or RetryPolicy(base=timedelta(seconds=5)), clock)
        self.service = service  # records the posts given up on their tickets (`failed`)
        self.concurrency = CHAT_SENDS_SQLITE if repository.sqlite else CHAT_SENDS_POSTGRESQL
        self.client = client
        self.rooms = rooms
        self.renderer = renderer
        self.default_queue = default_queue
        self.login = login
        self._waiting: dict[str, int] = {}  # user id → login row waiting for their join
        self._fresh: set[str] = set()  # direct rooms created by this process, maybe unsynced
        # The plugins' lines for roots and digests (the App sets its PluginManager here).
        self.contributions = None

    def describe(self, item: OutboxItem) -> str:
        """Chat rows are named with their type."""
        return f"chat {item.id} ({item.payload.get('type')}, ticket {item.ticket_id})"

    async def send(self, item: OutboxItem) -> None:
        """Deliver one row with the method its type names (`_send_<type>`); a payload that
        lacks what its type needs is given up at once (exobot.matrix.payloads)."""
        with reading_payload():
            kind = check_payload(item.payload)
        await getattr(self, f"_send_{kind}")(item)

    async def failed(self, item: OutboxItem, error: str) -> None:
        """Record a post about a ticket that was given up for good on the ticket, where
        volunteers see it (its web page, `!history`) and, like any change, announced in its
        thread; also a privacy erasure's redactions of its posts that could not be made. A
        report of a given-up post that is given up in turn is only logged: reporting it again
        could go round for ever."""
        if (
            self.service is None
            or item.ticket_id is None
            or item.payload.get("type") not in REPORTED_ON_TICKET
        ):
            return
        redaction = item.payload.get("type") == REDACT
        room = _redacted_room(item) if redaction else await self._failed_post_room(item)
        if room is None:
            return
        try:
            await self.service.apply(
                Actor.system("chat"),
                RecordDeliveryFailure(
                    item.ticket_id, item.id, room, error, channel=CHAT, redaction=redaction
                ),
            )
        except ServiceError as problem:
            log.error("could not record the failure on ticket %s: %s", item.ticket_id, problem)

    async def _failed_post_room(self, item: OutboxItem) -> str | None:
        """The room of the post of a given-up row about a ticket that could not be made ("" when
        the ticket had no thread and none was opened), or None when the row only reported
        another given-up post.

        Mostly the ticket's thread. A move (`_move`) posts in two rooms: the new root in the
        new queue's room, then the pointer and the old root's edit in the old thread, then the
        rest in the new thread. Given up before its new root was posted, the failure is the
        new room's; after it, the old thread's until both its parts there were posted (the
        new root is already the ticket's current thread then, yet not the room that failed)."""
        ids = item.payload.get("entries") or []
        moving = item.payload.get("type") == "ticket" and not item.payload.get("created")

        async def work(view):  # noqa: ANN001, ANN202 - the repository's reader
            entries = await _entries(view, ids)
            done = await chat.posted(view.conn, item.id)
            if not done:  # nothing of it posted: the thread it went to is the current one
                return entries, done, await chat.current_thread(view.conn, item.ticket_id), None
            # As a retry reads it (ChatSender._read): the thread the row started from, and
            # the newest root it posted itself with that root's part.
            before = await chat.thread_before(view.conn, item.ticket_id, item.id)
            for number in sorted(done, reverse=True):
                own = await chat.posted_thread(view.conn, item.id, number)
                if own is not None:
                    return entries, done, before, (number, own)
            return entries, done, before, None

        entries, done, thread, own = await self.repository.read(work)
        if entries and all(_reports_failed_post(entry) for entry in entries):
            log.error("%s reported a post given up; not reported again", self.describe(item))
            return None
        moves = [e for e in entries if e.kind is EntryKind.QUEUE] if moving else []
        if moves and not done:  # its first post is the new root, in the new queue's room
            new_room = self.rooms.room_for(moves[0].data.get("to") or "")
            if new_room is not None:
                return new_room
        if own is not None:
            number, root = own
            in_old_thread = {number + 1, number + 2}  # the pointer, the old root's edit
            if moves and thread is not None and not in_old_thread <= done.keys():
                return thread.room_id
            return root.room_id
        return thread.room_id if thread is not None else ""

    # --- ticket announcements -------------------------------------------------------------

    async def _read(self, item: OutboxItem, entry_ids: list[int] | None = None) -> _Row:
        """The row's ticket, entries, current thread and posted parts, and what a root needs
        when the row may post or edit one, in one read transaction: one hand-off to the
        repository's thread for the lot (a statement on the async engine costs several)."""
        payload = item.payload
        created = bool(payload.get("created"))
        edits_root = payload.get("type") == ROOT_EDIT

        async def work(view) -> _Row:  # noqa: ANN001 - the repository's reader
            ticket = await view.get_ticket(item.ticket_id)
            entries = await _entries(view, entry_ids or [])
            part = _Parts(item.id, await chat.posted(view.conn, item.id))
            if part.done:
                # A retry: the row's later parts belong to the thread it started from, not to
                # one its own part opened (after a move's new root the newest thread is the
                # new one, and the pointer and the old root's edit would go there).
                thread = await chat.thread_before(view.conn, item.ticket_id, item.id)
            else:
                thread = await chat.current_thread(view.conn, item.ticket_id)
            root = None
            moves = any(e.kind is EntryKind.QUEUE for e in entries)
            if ticket is not None and (created or moves or thread is None or edits_root):
                # The first mail is in the row's own entries when the row opens the ticket.
                first = None if created else await chat.first_quoted(view.conn, ticket.number)
                root = await _root_facts(view.conn, ticket.number, first)
            alerts = [e for e in entries if e.kind is EntryKind.ALERT]
            outdated = await _outdated_alerts(view, ticket, alerts) if ticket and alerts else None
            return _Row(ticket, entries, thread, part, root, outdated or frozenset())

        return await self.repository.read(work)

    async def _send_ticket(self, item: OutboxItem) -> None:
        payload = item.payload
        row = await self._read(item, payload["entries"])
        ticket, entries, thread, part = row.ticket, row.entries, row.thread, row.part
        if ticket is None:
            raise PermanentFailure(f"ticket {item.ticket_id} does not exist")
        origin = payload.get("origin") or None
        if payload.get("created"):
            created = next((e for e in entries if e.kind is EntryKind.CREATED), None)
            queue = created.data.get("queue", ticket.queue) if created else ticket.queue
            first = next(
                (e for e in entries if e.kind in (EntryKind.MAIL_IN, EntryKind.COMMENT)), None
            )
            thread = await self._new_root(ticket, queue, first, row.root, part, origin)
            if origin and thread and not _answers_origin_in_place(origin, thread.room_id):
                await self._send(self._origin_where(origin), self.renderer.opened(ticket), part)
            return
        rest: list[Entry] = []
        for entry in entries:
            if entry.kind is EntryKind.QUEUE:
                thread = await self._move(ticket, entry, thread, row.root, part)
            else:
                rest.append(entry)
        if thread is None:
            # A ticket whose thread starts late (imported, or from before its queue had a
            # room): its root quotes its first mail as every later edit of the root will,
            # unless that mail is among what is announced now.
            first = row.root.first
            if first is not None and first.id in {e.id for e in rest}:
                first = None
            thread = await self._new_root(ticket, ticket.queue, first, row.root, part, None)
            if thread is None:
                return  # the ticket's queue has no room: nothing to say in chat
        else:
            # The root's number, not taken here: the later parts keep the same numbers whether
            # the row opens the thread or not (a retried row that opened it gets its recorded
            # root back from `_new_root` above, as part 1), else one would be skipped.
            part.next()
        in_thread = bool(origin) and _same_thread(origin, thread)
        alerts = [e for e in rest if e.kind is EntryKind.ALERT]
        others = [e for e in rest if e.kind is not EntryKind.ALERT]
        for alert in alerts:
            await self._alert(ticket, alert, thread, part, outdated=alert.id in row.outdated)
        message = self.renderer.announcement(ticket, others, concise=in_thread) if others else None
        if origin and origin.get("plain") and in_thread:
            await self._react(origin, part)
        elif message is not None:
            reply_to = origin["event"] if in_thread else None
            await self._send(Where(thread.room_id, thread.root_event_id, reply_to), message, part)
        if origin and _elsewhere(origin, thread) and message is not None:
            # Typed in another room or another ticket's thread: this thread is out of sight
            # there, so answer there too, naming the ticket the change was made on.
            reference = format_reference(self.renderer.prefix, ticket.number)
            await self._send(self._origin_where(origin), _naming(message, reference), part)

    async def _new_root(
        self,
        ticket: Ticket,
        queue: str,
        first: Entry | None,
        facts: _RootFacts,
        part: _Parts,
        origin: dict | None,
    ) -> chat.Thread | None:
        number = part.following()
        if number in part.done:
            # A retry: the root an earlier attempt posted and recorded, in the room it went
            # to then. Not from `queue` again: a late root's queue is the ticket's, which a
            # move since may have changed, and that room with this event is no thread.
            recorded = await self.repository.read(
                lambda view: chat.posted_thread(view.conn, part.row, number)
            )
            if recorded is not None:
                part.next()
                return recorded
        room_id = self._room(queue)
        if room_id is None:
            return None
        reply_to = None
        if origin and _answers_origin_in_place(origin, room_id):
            reply_to = origin["event"]  # `!new` typed in this room: the root is the answer
        message = await self._root_message(ticket, first, facts)

        async def record(conn, event_id: str) -> None:  # noqa: ANN001 - a connection
            # In the transaction that records the post: the root and its thread go together.
            await chat.record_thread(
                conn, chat.Thread(ticket.number, queue, room_id, event_id), self.clock.now()
            )

        event_id = await self._post(
            part,
            room_id,
            "m.room.message",
            message_content(message, Where(room_id, reply_to=reply_to)),
            also=record,
        )
        return chat.Thread(ticket.number, queue, room_id, event_id)

    async def _root_message(
        self,
        ticket: Ticket,
        first: Entry | None,
        facts: _RootFacts,
        *,
        moved: chat.Thread | None = None,
    ) -> Message:
        """A ticket's root message as the ticket is now: its state, active flags, whether it
        was reopened, the plugins' lines and the first lines of `first`. With `moved` (the
        new root after a move) it ends with a link to where the thread continues."""
        last_status = facts.last_status
        reopened = (
            ticket.status is Status.OPEN
            and last_status is not None
            and last_status.data.get("from") in (Status.RESOLVED.value, Status.REJECTED.value)
        )
        imported = imported_system(facts.source) if facts.source else None
        message = self.renderer.root(
            ticket, first, facts.flags, reopened=reopened, imported=imported
        )
        if self.contributions is not None:
            lines = await self.contributions.root_lines(ticket, self.renderer.language)
            message = with_lines(message, lines)
        if moved is not None:
            link = permalink(moved.room_id, moved.root_event_id, self._server)
            message = self.renderer.with_moved_line(message, ticket, moved.queue, link)
        return message

    @property
    def _server(self) -> str | None:
        """The bot's homeserver name (its user id's server): it is in every queue room."""
        return (getattr(self.client.nio, "user_id", "") or "").partition(":")[2] or None

    async def _send_root_edit(self, item: OutboxItem) -> None:
        """Edit the ticket's current root message to show the ticket as it is now (the row
        stands for every change since it was queued). One edit per row: part 1, its
        transaction id making a retry return the first edit."""
        row = await self._read(item)
        ticket, thread, part = row.ticket, row.thread, row.part
        if ticket is None:
            raise PermanentFailure(f"ticket {item.ticket_id} does not exist")
        if thread is None:
            return  # no root (its queue has no room): nothing to edit
        message = await self._root_message(ticket, row.root.first, row.root)
        await self._post(
            part, thread.room_id, "m.room.message", edit_content(message, thread.root_event_id)
        )

    async def _move(
        self,
        ticket: Ticket,
        entry: Entry,
        thread: chat.Thread | None,
        facts: _RootFacts,
        part: _Parts,
    ) -> chat.Thread | None:
        """A move: the new root in the new queue's room, then, in the old thread, a pointer
        saying who moved it with a link to the new root, and the old root edited to say
        where the ticket went (scanning the old room no longer shows it as its own)."""
        old_queue, new_queue = entry.data.get("from"), entry.data.get("to")
        first = facts.first
        new = await self._new_root(ticket, new_queue, first, facts, part, None)
        if thread is not None:
            link = permalink(new.room_id, new.root_event_id, self._server) if new else None
            pointer = self.renderer.moved_pointer(
                ticket, old_queue, new_queue, by=entry.actor, link=link
            )
            await self._send(Where(thread.room_id, thread.root_event_id), pointer, part)
            if new is not None:
                old_root = await self._root_message(ticket, first, facts, moved=new)
                await self._post(
                    part,
                    thread.room_id,
                    "m.room.message",
                    edit_content(old_root, thread.root_event_id),
                )
        return new or thread

    async def _alert(
        self, ticket: Ticket, alert: Entry, thread: chat.Thread, part: _Parts, *, outdated: bool
    ) -> None:
        """An alert's note in the ticket's thread and its line in the room's timeline (parts n
        and n+1). An outdated one (the ticket was taken or resolved since, or a newer alert
        about it waits behind: the homeserver was away for days) is skipped, its part numbers
        taken all the same so the row's later parts keep theirs. Skipped only when neither
        part was posted: a retry of a row an earlier attempt began finishes it, so an alert is
        posted whole or not at all, and outdated stays outdated (a ticket never becomes new
        again; a stalled one that came back has a newer status entry), so a skipped row that
        is retried after a crash skips it again."""
        note_part, line_part = part.following(), part.following() + 1
        if outdated and not {note_part, line_part} & part.done.keys():
            part.next()
            part.next()
            log.info(
                "alert %s on ticket %s outdated, not posted (%s now)",
                alert.id,
                ticket.number,
                ticket.status.value,
            )
            return
        since = alert.data.get("since")
        waited = alert.created_at - (datetime.fromisoformat(since) if since else ticket.created_at)
        if alert.data.get("reason") == "stalled":
            note, line = (
                self.renderer.stalled_reminder(ticket, waited),
                self.renderer.stalled_line(ticket, waited),
            )
        else:
            note, line = (
                self.renderer.alert(ticket, waited),
                self.renderer.alert_line(ticket, waited),
            )
        await self._send(Where(thread.room_id, thread.root_event_id), note, part)
        await self._send(Where(thread.room_id), line, part)

    # --- answers and notices --------------------------------------------------------------

    async def _send_answer(self, item: OutboxItem) -> None:
        payload = item.payload
        message = Message(payload["body"], payload["html"])
        await self._send(self._origin_where(payload["origin"]), message, await self._parts(item))

    async def _send_quarantine(self, item: OutboxItem) -> None:
        p = item.payload
        room_id = self._room(self.default_queue)
        if room_id is None:
            return
        message = self.renderer.quarantine(
            p["inbound_id"],
            p.get("sender"),
            p.get("subject"),
            p.get("error") or "",
            web_root=self.login.root if self.login is not None else None,
        )
        await self._send(Where(room_id), message, await self._parts(item))

    async def _send_digest(self, item: OutboxItem) -> None:
        """The daily digest of the payload's date, in every queue room, counting the tickets as
        they are now. One that is outdated is not posted and the row is done like a posted one
        (`exobot outbox` lists only what was given up): a newer digest was queued after it, or
        it was queued on an earlier day than today (the homeserver was away; today's comes at
        its time). Not when a retry finds it half posted: it is finished."""
        now = self.clock.now()
        part = await self._parts(item)
        if not part.done and await self._digest_outdated(item, now):
            log.info("%s outdated, not posted", self.describe(item))
            return
        async with self.repository.reading() as view:
            counts = await view.status_counts()
            oldest_new, _ = await view.list_tickets(
                statuses=[Status.NEW], limit=DIGEST_OLDEST, oldest_first=True
            )
            oldest_stalled, _ = await view.list_tickets(
                statuses=[Status.STALLED], limit=DIGEST_OLDEST, oldest_first=True
            )
        digest = self.renderer.digest(
            counts, oldest_new, oldest_stalled, now, day=_payload_day(item.payload)
        )
        parts = []
        if self.contributions is not None:
            parts = await self.contributions.digest_parts(self.renderer.language)
        # The tickets whose titles the digest shows, kept with each post: an erasure redacts it.
        listed = [ticket.number for ticket in (*oldest_new, *oldest_stalled)]

        async def note_listed(conn, event_id: str) -> None:  # noqa: ANN001 - a connection
            await chat.note_listed(conn, item.id, event_id, listed)

        for room_id in self.rooms.room_ids():
            # Each room gets the plugins' lines for every room and those for its own queues.
            queues = self.rooms.queues_of(room_id)
            lines = [
                line for queue, got in parts if queue is None or queue in queues for line in got
            ]
            await self._send(
                Where(room_id), with_lines(digest, lines), part, also=note_listed if listed else None
            )

    async def _digest_outdated(self, item: OutboxItem, now: datetime) -> bool:
        """Whether a digest row is outdated: queued on an earlier local day than `now`'s (the
        row's own time, the one the sweep dated it by), or followed by another digest row that
        was not given up (pending, or posted already when this one was put off by an error)."""
        zone = self.renderer.timezone
        queued = item.created_at
        if queued is not None and _local_day(queued, zone) < _local_day(now, zone):
            return True
        return await self.repository.read(
            lambda view: outbox.newer_of_type(view.conn, item, "digest")
        )

    async def _send_notice(self, item: OutboxItem) -> None:
        """A notice for every queue room (a plugin failed): plain text, escaped here."""
        message = with_lines(Message("", ""), item.payload["body"].splitlines())
        part = await self._parts(item)
        for room_id in self.rooms.room_ids():
            await self._send(Where(room_id), message, part)

    async def _send_room_post(self, item: OutboxItem) -> None:
        """A plugin's plain-text note in one queue's room (None: the default queue's)."""
        room_id = self._room(item.payload.get("queue") or self.default_queue)
        if room_id is None:
            return  # that queue has no room: nowhere to say it
        message = plain_message(item.payload["body"])
        await self._send(Where(room_id), message, await self._parts(item))

    async def _send_thread_post(self, item: OutboxItem) -> None:
        """A plugin's plain-text note and/or image in the ticket's current thread.

        Parts: 1 is the ticket's root when it has none yet, 2 the post. With an image the text
        is its caption (`body` ≠ `filename`, spec v1.10 / MSC2530): one event, so a note and
        its figure can neither be separated nor half posted, and clients without captions
        still show the text as the image's description (its alt text). The bytes are uploaded
        only while part 2 is not recorded: a crash between the upload and the send uploads
        again (an orphan in the media store is harmless), never sends twice."""
        row = await self._read(item)
        ticket, thread, part = row.ticket, row.thread, row.part
        if ticket is None:
            raise PermanentFailure(f"ticket {item.ticket_id} does not exist")
        if thread is None:
            # Quoting its first mail, as every later edit of the root will.
            thread = await self._new_root(
                ticket, ticket.queue, row.root.first, row.root, part, None
            )
            if thread is None:
                return  # the ticket's queue has no room: nothing to show in chat
        else:
            part.next()  # the root's number, taken or not, so the post is always part 2
        where = Where(thread.room_id, thread.root_event_id)
        text = item.payload.get("body") or ""
        image = item.payload.get("image")
        if image is None:
            await self._send(where, plain_message(text), part)
            return
        number = part.next()
        if number in part.done:
            return
        room = self.client.nio.rooms.get(thread.room_id)
        if room is None:
            raise RoomNotReady(f"room {thread.room_id} is not known to the bot yet")
        with reading_payload():
            data = base64.b64decode(image["data"], validate=True)
        filename = image.get("filename") or "image.png"
        mimetype = image.get("mimetype") or "image/png"
        info: dict = {"mimetype": mimetype, "size": len(data)}
        if image.get("width"):
            info["w"] = image["width"]
        if image.get("height"):
            info["h"] = image["height"]
        content: dict = {
            "msgtype": "m.image",
            "body": text or filename,
            "filename": filename,
            "info": info,
            "m.mentions": {},  # a caption quoting "@room" pings nobody
            **await self.client.upload(data, mimetype, filename, encrypt=room.encrypted),
        }
        if text:
            caption = plain_message(text)
            content.update(format="org.matrix.custom.html", formatted_body=caption.html)
        content["m.relates_to"] = thread_relation(where)
        await self._post_part(part, number, thread.room_id, "m.room.message", content)

    async def _send_redact(self, item: OutboxItem) -> None:
        """Redact the bot's own posts (`exobot privacy erase`): `event_ids` holds [room id,
        event id] pairs. Part n redacts the n-th with a transaction id of its own, so a retry
        redacts nothing twice; an event the homeserver no longer has is skipped (recorded as
        done with an empty id). One the homeserver forbids the bot to redact (it may not, or
        left the room) still shows: the others go on, then the row is given up naming it
        (`failed` records it on the ticket), and a retry tries only what is left."""
        reason = item.payload.get("reason") or None
        part = await self._parts(item)
        pairs = item.payload.get("event_ids") or []
        forbidden: list[str] = []
        for room_id, event_id in pairs:
            number = part.next()
            if number in part.done:
                continue
            response = await self.client.nio.room_redact(
                room_id, event_id, reason=reason, tx_id=part.txn(number)
            )
            code = getattr(response, "status_code", None)
            if isinstance(response, nio.RoomRedactResponse):
                done = response.event_id
            elif code == "M_NOT_FOUND":  # gone already: nothing of it is left to remove
                log.warning("could not redact %s in %s: %s", event_id, room_id, response.message)
                done = ""
            elif code == "M_FORBIDDEN":
                # The post still shows (the bot may not redact there, or left the room): not
                # recorded as done, so a retry once it may tries it again; the others go on.
                log.warning("could not redact %s in %s: %s", event_id, room_id, response.message)
                forbidden.append(f"{response.message} ({code})")
                continue
            else:
                raise refusal("the redaction", response)
            await self._write(
                partial(
                    chat.record_post,
                    outbox_id=part.row,
                    part=number,
                    room_id=room_id,
                    event_id=done,
                    now=self.clock.now(),
                )
            )
        if forbidden:  # no retry mends a permission: given up, recorded on the ticket
            raise PermanentFailure(
                f"the homeserver refused to redact {len(forbidden)} of {len(pairs)} posts: "
                + forbidden[0]
            )

    # --- login links ----------------------------------------------------------------------

    async def _send_login(self, item: OutboxItem) -> None:
        """Send a one-time login link to the operator's direct room, once they are in it."""
        if self.login is None:
            raise PermanentFailure("the web server is off: no login links")
        part = await self._parts(item)
        if part.done:
            return  # an earlier attempt sent it
        user = item.payload["user"]
        if self.clock.now() - item.created_at > self.login.ttl:
            self._waiting.pop(user, None)
            raise PermanentFailure(f"{user} did not join the direct room in time")
        room_id = await self._direct_room(user)
        room = self.client.nio.rooms.get(room_id)
        if room is None or user not in room.users or user in room.invited_users:
            self._waiting[user] = item.id
            raise DirectRoomNotReady(f"waiting for {user} to accept the invitation to {room_id}")
        self._waiting.pop(user, None)
        if self.client.nio.should_query_keys:
            # The member just joined: learn their devices before the room key is shared, or
            # the link would reach them undecryptable.
            await self.client.nio.keys_query()
        now = self.clock.now()
        async with self.repository.connection() as conn:
            token = await web_records.create_login_link(conn, user, self.login.ttl, now)
        url = f"{self.login.root}/login/link/{token}"
        await self._send(Where(room_id), self.renderer.login_link(url, self.login.ttl), part)

    async def _direct_room(self, user: str) -> str:
        """The encrypted direct room with `user`: the known one while they are in it or
        invited, else a new one (they get an invitation)."""
        async with self.repository.reading() as view:
            room_id = await web_records.direct_room(view.conn, user)
        if room_id is not None:
            room = self.client.nio.rooms.get(room_id)
            if room is None and room_id in self._fresh:
                return room_id  # created moments ago, not synced yet
            if room is not None and user in room.users:
                return room_id
        response = await self.client.nio.room_create(
            is_direct=True,
            invite=[user],
            preset=nio.RoomPreset.trusted_private_chat,
            initial_state=[
                {
                    "type": "m.room.encryption",
                    "state_key": "",
                    "content": {"algorithm": "m.megolm.v1.aes-sha2"},
                }
            ],
        )
        if not isinstance(response, nio.RoomCreateResponse):
            raise ConnectionError(f"could not open a direct room with {user}: {response.message}")
        self._fresh.add(response.room_id)
        async with self.repository.connection() as conn:
            await web_records.record_direct_room(conn, user, response.room_id, self.clock.now())
        log.info("opened direct room %s with %s", response.room_id, user)
        return response.room_id

    async def direct_joined(self, room_id: str, user: str) -> None:
        """Someone joined a room that is no queue room: a waiting link may go now."""
        item_id = self._waiting.get(user)
        if item_id is None:
            return
        async with self.repository.connection() as conn:
            await outbox.hurry(conn, item_id, self.clock.now())
        self.wake.set()

    # --- sending --------------------------------------------------------------------------

    def _room(self, queue: str) -> str | None:
        room_id = self.rooms.room_for(queue)
        if room_id is None and self.rooms.has_room(queue):
            raise RoomNotReady(f"the room of queue {queue} is not joined yet")
        return room_id

    @staticmethod
    def _origin_where(origin: dict) -> Where:
        return Where(origin["room"], origin.get("thread"), origin["event"])

    async def _parts(self, item: OutboxItem) -> _Parts:
        done = await self.repository.read(lambda view: chat.posted(view.conn, item.id))
        return _Parts(item.id, done)

    async def _send(
        self, where: Where, message: Message, part: _Parts, *, also: _Also | None = None
    ) -> str:
        return await self._post(
            part, where.room_id, "m.room.message", message_content(message, where), also=also
        )

    async def _react(self, origin: dict, part: _Parts) -> None:
        content = {
            "m.relates_to": {
                "rel_type": "m.annotation",
                "event_id": origin["event"],
                "key": REACTION_DONE,
            }
        }
        await self._post(part, origin["room"], "m.reaction", content)

    async def _post(
        self,
        part: _Parts,
        room_id: str,
        event_type: str,
        content: dict,
        *,
        also: _Also | None = None,
    ) -> str:
        """Post one part, unless an earlier attempt did; the transaction id covers a crash
        between the post and its record. `also(conn, event_id)` is written with the part's
        record (or alone, when an earlier attempt posted the part)."""
        number = part.next()
        if number in part.done:
            event_id = part.done[number]
            if also is not None:
                await self._write(lambda conn: also(conn, event_id))
            return event_id
        return await self._post_part(part, number, room_id, event_type, content, also=also)

    async def _post_part(
        self,
        part: _Parts,
        number: int,
        room_id: str,
        event_type: str,
        content: dict,
        *,
        also: _Also | None = None,
    ) -> str:
        """Send part `number` of a row (its transaction id makes a resend return the first
        event) and record it, with `also` in the same transaction, and with the digests of the
        addresses it showed: an erasure finds the post by them once the retention policy has
        dropped the row's text."""
        response = await self.client.send(room_id, event_type, content, tx_id=part.txn(number))
        if not isinstance(response, nio.RoomSendResponse):
            raise refusal("the message", response)
        event_id = response.event_id
        now = self.clock.now()
        shown = shown_addresses(content)

        async def record(conn) -> None:  # noqa: ANN001 - a connection
            await chat.record_post(conn, part.row, number, room_id, event_id, now, shown)
            if also is not None:
                await also(conn, event_id)

        await self._write(record)
        return event_id

    async def _write(self, work: Callable[..., Awaitable[None]]) -> None:
        """Run `work(conn)` in one write transaction (SqlRepository.write: one hand-off for
        the lot, to the repository's writer thread on SQLite, to a side thread on PostgreSQL,
        never queued behind a burst of mail while the lane holds its row's claim)."""
        await self.repository.write(work)


#: Written with a part's record: (connection, the part's event id).
_Also = Callable[..., Awaitable[None]]


async def _root_facts(conn, number: int, first: Entry | None) -> _RootFacts:  # noqa: ANN001
    """What the root shows of the ticket's history (read in the caller's transaction)."""
    return _RootFacts(
        flags=active_flags(await chat.flag_entries(conn, number)),
        last_status=await chat.last_status(conn, number),
        source=await chat.import_source(conn, number),
        first=first,
    )


class _Parts:
    """The messages one row sends, numbered the same way on every attempt; the parts a previous
    attempt posted are skipped (their event ids reused)."""

    def __init__(self, row: int, done: dict[int, str]) -> None:
        self.row = row
        self.done = done
        self.count = 0

    def next(self) -> int:
        self.count += 1
        return self.count

    def following(self) -> int:
        """The number `next` gives next, without taking it."""
        return self.count + 1

    def txn(self, part: int) -> str:
        return f"exobot-{self.row}-{part}"


def _local_day(when: datetime, zone: tzinfo) -> date:
    """The date of `when` in `zone` (a naive time is UTC, as storage gives it back)."""
    return utc(when).astimezone(zone).date()


def _payload_day(payload: dict) -> date | None:
    """The date a digest row was queued for (jobs.AlertSweep), or None when it has none."""
    try:
        return date.fromisoformat(str(payload["date"]))
    except (KeyError, ValueError):
        return None


#: The status an alert is about, by its reason (RaiseAlert).
_ALERT_STATUS = {"new": Status.NEW, "stalled": Status.STALLED}


async def _outdated_alerts(view, ticket: Ticket, alerts: list[Entry]) -> frozenset[int]:  # noqa: ANN001 - the reader
    """The ids of the alerts among `alerts` that no longer hold (read with the row): the
    ticket is no longer in the status an alert is about, or left it and came back since (a
    newer status entry), or a newer alert about the ticket was raised (its own row posts it,
    with the time waited until then). After days without a homeserver the rows of every
    `repeat_every` are due at once: only the newest alert of a ticket still waiting is posted.
    A newer alert's row may be posted already (this one was given up and retried by hand):
    this one is older news all the same."""
    newest = await view.last_entry(ticket.number, [EntryKind.ALERT.value])
    status = await view.last_entry(ticket.number, [EntryKind.STATUS.value])
    later = max((e.id for e in (newest, status) if e is not None), default=0)
    return frozenset(
        alert.id
        for alert in alerts
        if ticket.status is not _ALERT_STATUS.get(alert.data.get("reason"), Status.NEW)
        or later > alert.id
    )


async def _entries(view, ids: list[int]) -> list[Entry]:  # noqa: ANN001 - the reader
    """A row's entries, read as one range of ids (or one by one when too far apart)."""
    entries = await chat.entries(view.conn, ids)
    return await view.entries(ids) if entries is None else entries


def _redacted_room(item: OutboxItem) -> str:
    """The room of a redaction row's first post ("" when it names none)."""
    pairs = item.payload.get("event_ids") or []
    return str(pairs[0][0]) if pairs and pairs[0] else ""


def _reports_failed_post(entry: Entry) -> bool:
    """Whether the entry records a chat post given up (ChatSender.failed)."""
    return entry.kind is EntryKind.DELIVERY_FAILED and (entry.data or {}).get("channel") == CHAT


def with_lines(message: Message, lines: list[str]) -> Message:
    """`message` with plain lines added below it (each escaped, on its own line)."""
    lines = [" ".join(str(line).split()) for line in lines]
    lines = [line for line in lines if line]
    if not lines:
        return message
    body = "\n".join(filter(None, [message.body, *lines]))
    html = "<br>".join(filter(None, [message.html, *(html_escape(line) for line in lines)]))
    return Message(body, html)


def permalink(room_id: str, event_id: str, via: str | None = None) -> str:
    """A matrix.to link to an event (the ids percent-encoded where they need it) with a
    server to ask, so clients can find the room: the room id's own, or `via` (recent room
    versions' ids name no server)."""
    server = room_id.partition(":")[2] or via
    safe = "!$:@"
    link = f"https://matrix.to/#/{quote(room_id, safe=safe)}/{quote(event_id, safe=safe)}"
    return f"{link}?via={quote(server, safe='')}" if server else link


def plain_message(text: str) -> Message:
    """Plain text as a message: the body as given, the HTML escaped line by line (no markup,
    no pills, no links of its own)."""
    return Message(text, "<br>".join(html_escape(line) for line in text.splitlines()))


def _same_thread(origin: dict, thread: chat.Thread) -> bool:
    return origin.get("room") == thread.room_id and origin.get("thread") == thread.root_event_id


def _naming(message: Message, reference: str) -> Message:
    """The message led by the ticket's reference, unless it names the ticket already (a
    comment's announcement does not: read in another ticket's thread, it would seem that
    ticket's)."""
    if reference in message.body:
        return message
    body = f"{reference} · {message.body}"
    return Message(body, f"{html_escape(reference)} · {message.html}", message.mentions)


def _elsewhere(origin: dict, thread: chat.Thread) -> bool:
    """Whether a command was typed where the ticket's thread is out of sight: in another room,
    or in another thread of its room (another ticket's)."""
    if origin.get("room") != thread.room_id:
        return True
    return bool(origin.get("thread")) and origin.get("thread") != thread.root_event_id


def _answers_origin_in_place(origin: dict, room_id: str) -> bool:
    """A command typed in a room's main timeline is answered by the root message itself."""
    return origin.get("room") == room_id and not origin.get("thread")
