"""The bot: what volunteers write in the queue rooms becomes intents for the ticket service.

Commands and plain messages in a ticket's thread are turned into intents and applied with the
event id as idempotency key, so an event seen twice (a restart, a re-delivered sync) never
acts twice. Every answer (confirmation, error, query result) is an outbox row written in the
same transaction that records the event as handled.
"""

from __future__ import annotations

import asyncio
import html
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

import nio

from exobot.core.actions import (
    ActionCall,
    ActionRefused,
    ActionRegistry,
    ActionSpec,
    Answer,
    Channel,
    Permission,
    default_registry,
    run_handler,
)
from exobot.core.clock import Clock
from exobot.core.commands import (
    COMMAND_PREFIX,
    CommandError,
    ParsedCommand,
    Query,
    close_spaced_command,
    is_command,
    parse_command,
)
from exobot.core.flags import active_flags
from exobot.core.intents import Comment, Notify, OpenTicket, Origin, Reply, SetStatus, SetTitle
from exobot.core.model import Actor, EntryKind, Status
from exobot.core.people import localpart
from exobot.core.service import CHAT, AlreadyHandled, ServiceError, TicketService
from exobot.core.text import unescape_html
from exobot.db import chat
from exobot.db.engine import database_unavailable
from exobot.db.repository import SqlRepository
from exobot.db.state import get_state, set_state
from exobot.matrix.client import MatrixClient
from exobot.matrix.content import Where, message_content
from exobot.matrix.names import DisplayNames
from exobot.matrix.plain import plain_text
from exobot.matrix.render import Message, Renderer
from exobot.matrix.rooms import QueueRooms

log = logging.getLogger("exobot.matrix.bot")

DEFAULT_LIST_STATUSES = (Status.NEW, Status.OPEN)
LIST_LIMIT = 30
# State key (followed by the room id) of the one notice that a queue room is not encrypted.
UNENCRYPTED_WARNED = "matrix.unencrypted_warned:"
# A content key marking the bot's notices about a room itself (not about a ticket), so that
# clients and scripts can tell them from the ticket traffic.
ROOM_NOTICE_KEY = "org.exo.exobot.room_notice"
SEARCH_LIMIT = 20
# A mention pill. Linear on any input: the opening tag cannot run past the next "<", and the
# label stops at the next "<a" or "</a", so every attempt ends at the next link; a run of
# unclosed links costs one short scan each instead of a scan to the end of the text each.
_PILL = re.compile(
    r'<a href="https://matrix\.to/#/(@[^"/?<>\s]{1,255})"[^<>]*>((?:[^<]|<(?!/?a[\s>]))*)</a\s*>',
    re.IGNORECASE,
)
_TAG = re.compile(r"<[^<>]*>")
# A formatted body longer than this is not searched for pills (the plain body is used as is):
# no volunteer types 64 KB of mentions, and whatever is read costs loop time.
MAX_FORMATTED_CHARS = 64 * 1024
# The intents whose text reaches the member's mail, as (the fields mailed, the fields that say
# which ticket or member they are about): a reply's text, a title (mails carry it in their
# subject). Those fields are read from the message's formatted body as plain text.
MAILED_TEXT: dict[type, tuple[tuple[str, ...], tuple[str, ...]]] = {
    Reply: (("text",), ("ticket",)),
    SetTitle: (("title",), ("ticket",)),
    OpenTicket: (("title",), ("requestor", "queue")),
}
HTML_FORMAT = "org.matrix.custom.html"
# Join rules of rooms nobody enters uninvited: only such a queue room makes its members
# operators (when matrix.operators is empty).
CLOSED_JOIN_RULES = frozenset({"invite", "knock"})


@dataclass(frozen=True)
class BotSettings:
    """What the bot needs from the configuration."""

    prefix: str
    queues: frozenset[str]
    operators: frozenset[str]  # empty: the members of the queue rooms
    support_address: str
    web: bool = False  # the web server is on: `!login` sends a link


class MatrixBot:
    """Reads the queue rooms and answers there; changes tickets only through the service."""

    def __init__(
        self,
        client: MatrixClient,
        rooms: QueueRooms,
        service: TicketService,
        repository: SqlRepository,
        renderer: Renderer,
        settings: BotSettings,
        wake_poster: Callable[[], None] = lambda: None,
        direct_joined: Callable[[str, str], Awaitable[None]] | None = None,
        clock: Clock | None = None,
        registry: ActionRegistry | None = None,
    ) -> None:
        self.client = client
        # The actions chat understands; the renderer's `!help` lists the same registry.
        self.registry = registry or getattr(renderer, "registry", None) or default_registry()
        self.clock = clock or service.clock  # "now" of ages shown in answers
        self.rooms = rooms
        self.service = service
        self.repository = repository
        self.renderer = renderer
        self.settings = settings
        self.wake_poster = wake_poster
        self.direct_joined = direct_joined  # (room id, user id): someone joined a non-queue room
        self._refusals: set[str] = set()  # rooms joined only to say no
        # Called with (command, seconds) once a command is answered (the App's metrics).
        self.on_command: Callable[[str, float], None] = lambda _name, _seconds: None
        self._warned: set[str] = set()  # open queue rooms told so since this start
        self._unknown_warned: set[str] = set()  # other rooms' ignored messages, logged once
        # Volunteers' display names, from the rooms' member events (the queue rooms first).
        self.names = DisplayNames(self._rooms_for_names)
        # Whether this instance's own sync knows the rooms. The App sets it only while this
        # instance leads and has synced; otherwise who operates comes from the leader's record
        # (exobot.matrix.operators), as it does whenever the client is not connected.
        self.rooms_live = True
        self.shared_operators: dict[str, str] = {}  # user id -> display name, the record's
        client.on_event = self.handle_event
        client.on_invite = self.handle_invite
        client.on_undecryptable = self.handle_undecryptable

    # --- who may act ---------------------------------------------------------------------

    def is_operator(self, user_id: str) -> bool:
        """Operators: the configured list, or else the joined (not merely invited) members of
        any queue room that nobody can enter uninvited (never the bot itself). The same rule
        serves chat, web sessions, password logins and API tokens."""
        if user_id == self.client.user_id:
            return False
        if self.settings.operators:
            return user_id in self.settings.operators
        if not self._own_view():
            # A follower (or a leader before its first sync): the leader's record says.
            return user_id in self.shared_operators
        for room_id in self.rooms.room_ids():
            room = self.client.nio.rooms.get(room_id)
            if room is not None and grants_operators(room) and is_joined(room, user_id):
                return True
        return False

    def operators(self) -> list[tuple[str, str]]:
        """The operators as (user id, display name), by name: the configured list, or else
        the joined members of the queue rooms that grant rights (never the bot itself). What
        the web offers when a ticket is given to someone."""
        if self.settings.operators:
            ids = set(self.settings.operators)
        elif not self._own_view():
            people = [
                item for item in self.shared_operators.items() if item[0] != self.client.user_id
            ]
            return sorted(people, key=lambda person: (person[1].casefold(), person[0]))
        else:
            ids = set(self.room_operators())
        ids.discard(self.client.user_id)
        people = [(user, self.names.display_name(user)) for user in ids]
        return sorted(people, key=lambda person: (person[1].casefold(), person[0]))

    def _own_view(self) -> bool:
        """Whether this instance's own sync says who operates: it leads, and its client has
        synced since it connected (a restored session knows no rooms before that)."""
        return self.rooms_live and self.client.synced

    def stop_syncing(self) -> None:
        """This instance no longer syncs (it stepped down, or lost the homeserver): from now
        on the leader's record says who operates. Until that record is read again, this
        instance's own last view stands in for it, so that stepping down because the
        database went away revokes nobody (the record cannot be read then either)."""
        if self.rooms_live:
            own = self.room_operators()
            if own:
                self.shared_operators = own
        self.rooms_live = False

    def room_operators(self) -> dict[str, str]:
        """The joined members of the queue rooms that grant rights, by this instance's own
        sync, as {user id: display name} (never the bot itself); empty before it synced.
        What the leader records for the followers."""
        if self.client.nio is None:
            return {}
        ids: set[str] = set()
        for room_id in self.rooms.room_ids():
            room = self.client.nio.rooms.get(room_id)
            if room is not None and grants_operators(room):
                ids.update(user for user in room.users if is_joined(room, user))
        ids.discard(self.client.user_id)
        return {user: self.names.display_name(user) for user in ids}

    def _rooms_for_names(self) -> list[nio.MatrixRoom]:
        """The rooms display names are looked up in: the queue rooms, then the others."""
        if self.client.nio is None:
            return []
        rooms = self.client.nio.rooms
        queue_ids = list(self.rooms.room_ids())
        first = [rooms[room_id] for room_id in queue_ids if room_id in rooms]
        rest = [room for room_id, room in rooms.items() if room_id not in queue_ids]
        return first + rest

    def may_use(self, spec: ActionSpec, user_id: str) -> bool:
        """Whether `user_id` may ask for the action (today every action is for operators)."""
        if spec.permission is Permission.OPERATOR:
            return self.is_operator(user_id)
        return False

    def open_rooms(self) -> list[tuple[str, str]]:
        """The queue rooms (room id, join rule) that grant nobody rights because anybody can
        enter them; empty when `matrix.operators` is set (rooms then grant nothing anyway)."""
        if self.settings.operators:
            return []
        found = []
        for room_id in self.rooms.room_ids():
            room = self.client.nio.rooms.get(room_id)
            if room is not None and not grants_operators(room):
                found.append((room_id, room.join_rule))
        return found

    async def warn_open_rooms(self) -> None:
        """Say in the log and, once per start, in the room itself that an open queue room makes
        nobody an operator. Called at start and whenever a queue room's join rule changes."""
        still_open = set()
        for room_id, join_rule in self.open_rooms():
            still_open.add(room_id)
            if room_id in self._warned:
                continue
            self._warned.add(room_id)
            log.warning(
                "the queue room %s is not invite-only (join rule %r): anybody can join it, so "
                "its members get no operator rights; make it invite-only (or knock) or list "
                "the operators in matrix.operators",
                room_id,
                join_rule,
            )
            # Best effort: the log says it too.
            await self._say(room_id, self.renderer.open_room(_one_line(join_rule)), "open-room")
        # A room closed again and reopened later is warned about again.
        self._warned &= still_open

    async def warn_unencrypted_rooms(self) -> None:
        """Say in the log, at every start, that a queue room is not end-to-end encrypted, and
        once ever in the room itself (remembered in the state table once the notice went)."""
        for room_id in self.rooms.room_ids():
            room = self.client.nio.rooms.get(room_id)
            if room is None or room.encrypted:
                continue
            log.warning(
                "the queue room %s is not end-to-end encrypted: ticket texts posted there are "
                "readable on the homeserver; turn on encryption in the room's settings",
                room_id,
            )
            key = UNENCRYPTED_WARNED + room_id
            async with self.repository.connection() as conn:
                if await get_state(conn, key) is not None:
                    continue
            content = message_content(self.renderer.unencrypted_room(), Where(room_id))
            content[ROOM_NOTICE_KEY] = "unencrypted"
            try:
                sent = await self.client.send(room_id, "m.room.message", content)
            except Exception as error:
                log.warning("could not warn %s that it is not encrypted: %s", room_id, error)
                continue
            if isinstance(sent, nio.RoomSendResponse):
                async with self.repository.connection() as conn:
                    await set_state(conn, key, sent.event_id)

    # --- invites ---------------------------------------------------------------------------

    async def handle_invite(self, room_id: str, inviter: str | None) -> None:
        """Join queue rooms; tell anyone else, once, where help is, and leave."""
        # Resolving the configured aliases tells whether this is a queue room, and joins it.
        await self.rooms.ensure_joined(self.client)
        if self.rooms.is_queue_room(room_id):
            # Invited back to a queue room after a removal: take the seat again.
            await self.client.nio.join(room_id)
            return
        log.info("invited to %s by %s, which is no queue room: refusing", room_id, inviter)
        joined = await self.client.nio.join(room_id)
        if isinstance(joined, nio.JoinResponse):
            # The refusal waits for the sync that brings the room (and its encryption state).
            self._refusals.add(room_id)
        else:
            await self.client.nio.room_leave(room_id)

    async def _refuse(self, room_id: str) -> None:
        """Say, once, that the bot works only in the support rooms, then leave."""
        self._refusals.discard(room_id)
        # Best effort: the refusal is a courtesy.
        refusal = self.renderer.direct_refusal(self.settings.support_address)
        await self._say(room_id, refusal, "refusal")
        await self.client.nio.room_leave(room_id)

    async def _say(self, room_id: str, message: str, what: str) -> None:
        """Send a notice outside the outbox, where losing it costs nothing: failures are logged."""
        try:
            await self.client.send(
                room_id, "m.room.message", message_content(message, Where(room_id))
            )
        except Exception as error:
            log.warning("could not send the %s notice to %s: %s", what, room_id, error)

    # --- messages --------------------------------------------------------------------------

    async def handle_event(self, room: nio.MatrixRoom, event: nio.Event) -> None:
        """Act on a volunteer's message in a queue room; ignore everything else."""
        if room.room_id in self._refusals:
            await self._refuse(room.room_id)
            return
        if event.sender == self.client.user_id:
            return
        room_queue = self.rooms.queue_of(room.room_id)
        if room_queue is None:
            if isinstance(event, nio.RoomMessageText):
                self._warn_unknown_room(room.room_id)
            if (
                isinstance(event, nio.RoomMemberEvent)
                and event.membership == "join"
                and self.direct_joined is not None
            ):
                await self.direct_joined(room.room_id, event.state_key)
            return
        if isinstance(event, nio.RoomJoinRulesEvent):
            await self.warn_open_rooms()  # nio has already applied the new rule to the room
            return
        if not isinstance(event, nio.RoomMessageText):
            return
        content = event.source.get("content", {})
        said = _where_said(room.room_id, event)
        if said is None:
            return  # an edit never runs a command again
        key, origin = said
        thread_root = origin["thread"]
        typed = _message_text(event.body, content)
        if not self.is_operator(event.sender):
            # Checked before anything else is read: what a stranger writes costs no parsing.
            if is_command(close_spaced_command(typed, self.registry)):
                await self._answer(key, origin, self.renderer.not_operator())
            return
        command = self._command_text(room, typed, content)
        context = await self._thread_ticket(room.room_id, thread_root)
        if command is None and context is None:
            return  # conversation among volunteers
        if command is None:
            origin["plain"] = True
            await self._apply(event.sender, Comment(context, typed), key, origin)
            return

        def parse(text: str) -> ParsedCommand:
            return parse_command(
                text,
                prefix=self.settings.prefix,
                queues=self.settings.queues,
                context_ticket=context,
                room_queue=room_queue,
                registry=self.registry,
                # Only a user argument reads a pill as its user id; everywhere else the
                # volunteer's text (which holds the display name) goes on as typed.
                mentions=_mentions(content),
            )

        try:
            parsed = parse(command)
        except CommandError as error:
            await self._answer(key, origin, self.renderer.error(error.code, error.params))
            return
        parsed = await self._as_mailed(parsed, room, content, parse)
        started = time.perf_counter()
        try:
            await self._run(parsed, event.sender, key, origin, context)
        finally:
            self.on_command(parsed.name, time.perf_counter() - started)

    def _command_text(self, room: nio.MatrixRoom, typed: str, content: dict) -> str | None:
        """The command a message holds, or None: the text itself, or what follows a leading
        mention of the bot (`exobot: !take`, as a client's pill writes it), with `! take`
        read as `!take`. Anything else (`! ja està`, `exobot: thanks`) is no command and
        stays as typed."""
        text = close_spaced_command(typed, self.registry)
        if is_command(text):
            return text.strip()
        if COMMAND_PREFIX not in typed:
            return None  # no command anywhere: the formatted body is not read
        after = self._after_bot_mention(room, typed, content)
        text = close_spaced_command(after, self.registry) if after is not None else ""
        return text.strip() if is_command(text) else None

    async def _as_mailed(
        self,
        parsed: ParsedCommand,
        room: nio.MatrixRoom,
        content: dict,
        parse: Callable[[str], ParsedCommand],
    ) -> ParsedCommand:
        """The command with the text it mails to the member (MAILED_TEXT) read from the
        message's formatted body as plain text (exobot.matrix.plain): Element's plain body is
        the volunteer's markdown source, which the member would read as typed ("**Important**",
        "`ping`"). Internal text (a comment) stays as typed. The command goes on as typed when
        the message has no formatted body, or when read from it it is not the same command
        about the same ticket (nothing is guessed then)."""
        fields = MAILED_TEXT.get(type(parsed.intent))
        if fields is None or content.get("format") != HTML_FORMAT:
            return parsed
        mailed, same = fields
        plain = await self._plain_text(content)
        command = self._command_text(room, plain, content) if plain else None
        try:
            again = parse(command) if command is not None else None
        except CommandError:
            again = None
        if (
            again is None
            or type(again.intent) is not type(parsed.intent)
            or any(getattr(again.intent, f) != getattr(parsed.intent, f) for f in same)
        ):
            log.info("the formatted body of a %s reads otherwise: it goes on as typed", parsed.name)
            return parsed
        values = {f: getattr(again.intent, f) for f in mailed}
        return replace(parsed, intent=replace(parsed.intent, **values))

    async def _plain_text(self, content: dict) -> str | None:
        """The message's formatted body as plain text, without a reply's quoted fallback;
        None when it has none or it is over MAX_FORMATTED_CHARS. Converted in a thread (on the
        most hostile HTML allowed it takes a few tenths of a second); the display names of its
        pills are looked up here first, on the loop, where the rooms are kept."""
        formatted = content.get("formatted_body")
        if not isinstance(formatted, str) or len(formatted) > MAX_FORMATTED_CHARS:
            return None
        names = {user: self.names.display_name(user) for user, _label in pills(formatted)}
        text = await asyncio.to_thread(
            plain_text, formatted, lambda user: names.get(user) or localpart(user)
        )
        return text.strip() if text else None

    def _after_bot_mention(self, room: nio.MatrixRoom, typed: str, content: dict) -> str | None:
        """The text after a leading mention of the bot, or None when it opens with none: its
        user id or a pill's label (a ':' or ',' after them optional), or its display name
        followed by ':' or ','."""
        bot = self.client.user_id
        if not bot:
            return None
        formatted = content.get("formatted_body") or ""
        labels = set()
        if isinstance(formatted, str) and len(formatted) <= MAX_FORMATTED_CHARS:
            labels = {
                unescape_html(_TAG.sub("", label)).strip()
                for user_id, label in pills(formatted)
                if user_id == bot
            }
        member = room.users.get(bot)
        names = {self.names.display_name(bot), getattr(member, "display_name", None) or ""}
        mentions = [(bot, False), *((label, False) for label in labels)]
        mentions += [(name, True) for name in names - labels]
        for name, needs_separator in sorted(mentions, key=lambda m: len(m[0]), reverse=True):
            if not name or typed[: len(name)].casefold() != name.casefold():
                continue
            after = typed[len(name) :]
            if after.lstrip()[:1] in (":", ","):
                return after.lstrip()[1:]
            if not needs_separator and after[:1].isspace():
                return after
        return None

    def _warn_unknown_room(self, room_id: str) -> None:
        """Say once per start that a message in a room that is no known queue room is ignored
        while some configured queue room is not resolved yet (it may be that room)."""
        unjoined = self.rooms.unjoined()
        if not unjoined or room_id in self._unknown_warned:
            return
        self._unknown_warned.add(room_id)
        log.warning(
            "ignoring messages in %s: it is no known queue room, and the queue rooms %s are "
            "not resolved or joined yet (they are retried)",
            room_id,
            ", ".join(unjoined),
        )

    async def handle_undecryptable(self, room: nio.MatrixRoom, event: nio.MegolmEvent) -> bool:
        """An operator's message in a queue room that stayed unreadable (its room key never
        reached the bot): answered where it was said, "I could not read it, send it again",
        under the event's own key, so it never runs if the key comes later. Anything else
        (another room, a stranger, the bot itself) is left to the client's retries: False."""
        if self.rooms.queue_of(room.room_id) is None or not self.is_operator(event.sender):
            return False
        said = _where_said(room.room_id, event)
        if said is not None:  # an edit never runs a command: nothing to answer
            await self._answer(*said, self.renderer.undecryptable())
        return True

    async def _thread_ticket(self, room_id: str, thread_root: str | None) -> int | None:
        if thread_root is None:
            return None
        async with self.repository.reading() as view:
            thread = await chat.thread_by_root(view.conn, room_id, thread_root)
        return thread.ticket if thread else None

    async def _run(
        self,
        parsed: ParsedCommand,
        sender: str,
        key: str,
        origin: dict,
        context: int | None = None,
    ) -> None:
        """Carry out a parsed command by its declaration: the core's queries are answered
        here, an intent goes through the service, a handler runs and its result is applied
        or posted. `context` is the ticket whose thread the command was typed in."""
        spec = parsed.spec
        if spec is not None and not self.may_use(spec, sender):
            await self._answer(key, origin, self.renderer.not_operator())
        elif spec is not None and spec.handler is not None:
            await self._handle(spec, parsed, sender, key, origin, context)
        elif parsed.query is not None and parsed.query.name == "login":
            await self._login(sender, key, origin)
        elif parsed.query is not None:
            try:
                message = await self._query(parsed.query, sender)
            except ServiceError as error:
                message = self.renderer.error(error.code, error.params)
            await self._answer(key, origin, message)
        elif parsed.intent is not None:
            await self._apply_command(sender, parsed.intent, key, origin, context)

    async def _apply_command(
        self, sender: str, intent: object, key: str, origin: dict, context: int | None
    ) -> None:
        """Apply a command's intent, unless it would mail the member of another ticket than
        the one whose thread it was typed in: that is refused, changing nothing."""
        refusal = self._other_thread_mail(intent, context)
        if refusal is not None:
            await self._answer(key, origin, refusal)
            return
        await self._apply(sender, intent, key, origin)

    def _other_thread_mail(self, intent: object, context: int | None) -> Message | None:
        """The refusal of an intent typed in `context`'s thread that mails another ticket's
        member (a reply, a notice, resolving it), else None."""
        ticket = getattr(intent, "ticket", None)
        if context is None or ticket is None or ticket == context:
            return None
        if isinstance(intent, (Reply, Notify)):
            code = "other_thread_reply"
        elif isinstance(intent, SetStatus) and Status(intent.status) is Status.RESOLVED:
            code = "other_thread_resolve"
        else:
            return None
        reference = self.service.reference
        return self.renderer.error(code, {"here": reference(context), "there": reference(ticket)})

    async def _handle(
        self,
        spec: ActionSpec,
        parsed: ParsedCommand,
        sender: str,
        key: str,
        origin: dict,
        context: int | None = None,
    ) -> None:
        """Run a handler action: an intent it gives back is applied like a built-in one (same
        key, same origin, same errors); an Answer is posted as the answer; a refusal is said;
        a handler that raises is logged with its stack and answered as an internal error.

        A redelivered event (a sync batch replayed after a database error, the up to 2 s of
        sync a crash replays, a failover) whose answer or change is already committed does not
        run the handler again: a handler writes in its own transactions, which the event's key
        does not guard (built-in commands need no such look-up: their key is claimed with their
        change). A crash, or a database error, after the handler's commit and before the
        answer's still runs it again, with the same key in its call (`ActionCall.key`): a
        handler whose writes must happen once records that key with them and, finding it
        recorded, answers without writing again (the procedures plugin's `!procedure`)."""
        if await self.repository.read(lambda view: view.handled_request(key)) is not None:
            log.info("%s was already handled", key)
            return
        call = ActionCall(
            spec.name,
            sender,
            parsed.ticket,
            parsed.args,
            self.renderer.language,
            Channel.CHAT,
            key=key,
        )
        try:
            result = await run_handler(spec, call)
        except ActionRefused as refused:  # worded by the plugin, in the call's language
            await self._answer(key, origin, _message(Answer(refused.message)))
            return
        except Exception:
            log.exception("the handler of %s failed for %s", spec.name, sender)
            await self._answer(key, origin, self.renderer.error("internal", {}))
            return
        if isinstance(result, Answer):
            await self._answer(key, origin, _message(result))
        else:
            await self._apply_command(sender, result, key, origin, context)

    async def _apply(self, sender: str, intent: object, key: str, origin: dict) -> None:
        try:
            await self.service.apply(Actor.operator(sender), intent, Origin(key, origin))
        except AlreadyHandled:
            log.info("%s was already handled", key)
        except ServiceError as error:
            await self._answer(key, origin, self.renderer.error(error.code, error.params))
        except Exception as error:
            if database_unavailable(error):
                raise  # not an internal error: the sync is retried once the database is back
            log.exception("applying %r for %s failed", intent, sender)
            await self._answer(key, origin, self.renderer.error("internal", {}))

    async def _query(self, query: Query, sender: str) -> Message:
        now = self.clock.now()
        r = self.renderer
        if query.name == "help":
            return r.help(query.topic)
        async with self.repository.reading() as view:
            if query.name in ("show", "history"):
                ticket = await view.get_ticket(query.ticket)
                if ticket is None:
                    reference = self.service.reference(query.ticket)
                    return r.error("not_found", {"ticket": reference})
                if query.name == "show":
                    flags = await view.entries_of(ticket.number, [EntryKind.FLAG.value])
                    return r.show(ticket, now, active_flags(flags))
                return r.history(ticket, await view.history(ticket.number), now)
            if query.name == "list":
                tickets, total = await view.list_tickets(
                    queue=query.queue,
                    statuses=query.statuses or DEFAULT_LIST_STATUSES,
                    owner=sender if query.owner == "mine" else None,
                    unowned=query.owner == "unowned",
                    limit=LIST_LIMIT,
                )
                return r.ticket_list(tickets, total, now)
            if query.name == "search":
                numbers = await view.search(query.words, SEARCH_LIMIT)
                return r.search_results(query.words, await view.tickets(numbers), now)
        raise ValueError(f"unknown query {query.name!r}")

    async def _login(self, sender: str, key: str, origin: dict) -> None:
        """`!login`: the answer at the command, and a row that sends the link by direct
        message (the link itself is made when it is sent, so it is never stored in clear)."""
        if not self.settings.web:
            await self._answer(key, origin, self.renderer.login_no_web())
            return
        await self._answer(
            key,
            origin,
            self.renderer.login_sent(),
            also={"type": "login", "user": sender},
        )

    async def _answer(
        self, key: str, origin: dict, message: Message, also: dict | None = None
    ) -> None:
        """Queue an answer at the command (and `also`, another chat row), recording the event
        as handled in the same transaction."""

        async def work(uow) -> bool:  # noqa: ANN001 - the service's unit of work
            if not await uow.claim(key):
                return False
            payload = {
                "type": "answer",
                "origin": origin,
                "body": message.body,
                "html": message.html,
            }
            await uow.queue_outbox(CHAT, None, payload)
            if also is not None:
                await uow.queue_outbox(CHAT, None, also)
            return True

        if await self.repository.run(work, now=self.clock.now()):
            self.wake_poster()


def _where_said(room_id: str, event: nio.Event) -> tuple[str, dict] | None:
    """A message's handling key and origin (room, event, thread), where its answer goes; None
    for an edit, which is never run. A relation stays in the clear in an encrypted event (the
    server aggregates threads), so this reads an undecryptable one too."""
    relates = event.source.get("content", {}).get("m.relates_to") or {}
    if relates.get("rel_type") == "m.replace":
        return None
    thread_root = relates.get("event_id") if relates.get("rel_type") == "m.thread" else None
    origin = {"room": room_id, "event": event.event_id, "thread": thread_root}
    return f"matrix:{event.event_id}", origin


def grants_operators(room: nio.MatrixRoom) -> bool:
    """Whether a queue room's members may be operators: only when nobody can join it without
    an invitation (join rule `invite` or `knock`); any other rule grants nobody anything."""
    return room.join_rule in CLOSED_JOIN_RULES


def is_joined(room: nio.MatrixRoom, user_id: str) -> bool:
    """Whether `user_id` has joined the room (nio's `users` also holds the invited)."""
    member = room.users.get(user_id)
    return member is not None and not member.invited and user_id not in room.invited_users


def _message(answer: Answer) -> Message:
    """An action's answer as a chat message: its HTML, or else its text escaped (line breaks
    kept as <br>)."""
    if answer.html is not None:
        return Message(answer.body, answer.html)
    return Message(answer.body, html.escape(answer.body, quote=True).replace("\n", "<br>\n"))


def _one_line(text: str) -> str:
    return " ".join(str(text).split())[:80]


def _mentions(content: dict) -> dict[str, str]:
    """The mention pills of a message as {display name: user id}: clients write a pill's
    display name in the plain body, and a command's user argument reads it back as the id
    (the parser's `mentions`). A name that pills give to different users is left out, since
    which one was meant cannot be told; a formatted body over MAX_FORMATTED_CHARS is not read."""
    formatted = content.get("formatted_body") or ""
    if not isinstance(formatted, str) or len(formatted) > MAX_FORMATTED_CHARS:
        return {}
    found: dict[str, str] = {}
    ambiguous: set[str] = set()
    for user_id, label in pills(formatted):
        name = unescape_html(_TAG.sub("", label)).strip()
        if name and name != user_id and found.setdefault(name, user_id) != user_id:
            ambiguous.add(name)
    return {name: user_id for name, user_id in found.items() if name not in ambiguous}


def pills(formatted: str) -> list[tuple[str, str]]:
    """The (user id, label) of each mention pill in a formatted body."""
    return _PILL.findall(formatted)


def _message_text(body: str, content: dict) -> str:
    """The text a volunteer typed, as the bot reads it: without a reply's quoted fallback.
    Mention pills stay as typed (their display names), so that free text (a reply mailed to a
    member, a comment, a title) never gains a volunteer's Matrix id; a command's user argument
    alone reads a pill as its user id (`_mentions`)."""
    relates = content.get("m.relates_to") or {}
    if relates.get("m.in_reply_to") and body.startswith("> "):
        lines = body.split("\n")
        quoted = next((n for n, line in enumerate(lines) if not line.startswith(">")), len(lines))
        body = "\n".join(lines[quoted:]).lstrip("\n")
    return body.strip()
