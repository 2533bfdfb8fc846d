"""Chat commands: turn a volunteer's `!command …` message into an intent or a read-only query."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Collection
from dataclasses import dataclass
from enum import StrEnum

from exobot.core.addresses import BadAddress, normalize_address
from exobot.core.intents import (
    AcceptUnverified,
    ChangeParticipants,
    Comment,
    Give,
    Intent,
    Move,
    OpenTicket,
    Reply,
    SetStatus,
    SetTitle,
    Take,
    Untake,
)
from exobot.core.lifecycle import STATUS_WORDS, LifecycleError, parse_status
from exobot.core.model import Status
from exobot.core.references import parse_reference

COMMAND_PREFIX = "!"

# Longest echo of user text put into an error's params (a whole pasted mail is not useful there).
_ECHO_LIMIT = 80
# The longest written reference, in words: `ticket de suport # 310`.
_MAX_REFERENCE_WORDS = 5

_MESSAGES = {
    "unknown_command": "Unknown command: !{command}",
    "missing_reference": "!{command} needs a ticket reference (or use it in the ticket's thread)",
    "bad_reference": "Not a valid ticket reference: {text}",
    "missing_argument": "!{command} is missing its {argument}",
    "bad_status": "Unknown status {word!r} (known: {known})",
    "bad_user": "Not a Matrix user id like @name:server: {text}",
    "bad_queue": "Unknown queue {queue!r} (known: {known})",
    "bad_address": "Not a usable email address: {text} ({reason})",
    "bad_cc_argument": "Write +address to add a participant or -address to remove one: {text}",
    "unexpected_argument": "!{command} takes nothing more, but got: {text}",
    "bad_list_argument": "Not a queue, status, owner filter or 'all': {word}",
}


class CommandError(Exception):
    """A command that cannot be understood; `code` and `params` are rendered for the person."""

    def __init__(self, code: str, **params: object):
        self.code = code
        self.params = params
        super().__init__(self._english())

    def _english(self) -> str:
        template = _MESSAGES.get(self.code)
        try:
            if template is not None:
                return template.format(**self.params)
        except (KeyError, IndexError, ValueError):
            pass
        details = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{self.code} ({details})" if details else self.code

    def __str__(self) -> str:
        return self._english()


class ArgumentKind(StrEnum):
    """What a command expects after its (optional) ticket reference."""

    NONE = "none"
    USER = "user"
    TEXT = "text"
    TITLE = "title"
    QUEUE = "queue"
    STATUS = "status"
    LIST = "list"
    WORDS = "words"
    NEW = "new"
    TOPIC = "topic"
    PARTICIPANTS = "participants"


@dataclass(frozen=True)
class CommandSpec:
    """A command's canonical name, aliases, usage line and what arguments it takes."""

    name: str
    aliases: tuple[str, ...]
    usage: str
    argument: ArgumentKind
    needs_ticket: bool

    def usage_for(self, prefix: str) -> str:
        """The usage line with the configured reference prefix instead of `suport`."""
        return self.usage.replace("suport#N", f"{prefix}#N")


def _spec(
    name: str, aliases: tuple[str, ...], usage: str, argument: ArgumentKind, needs_ticket: bool
) -> tuple[str, CommandSpec]:
    return name, CommandSpec(name, aliases, usage, argument, needs_ticket)


COMMANDS: dict[str, CommandSpec] = dict(
    [
        _spec("take", ("agafa",), "!take suport#N", ArgumentKind.NONE, True),
        _spec("give", ("dona",), "!give suport#N @user:server", ArgumentKind.USER, True),
        _spec("untake", ("deixa",), "!untake suport#N", ArgumentKind.NONE, True),
        _spec("reply", ("respon",), "!reply suport#N text…", ArgumentKind.TEXT, True),
        _spec("comment", ("comenta",), "!comment suport#N text…", ArgumentKind.TEXT, True),
        _spec("title", ("titol", "títol"), "!title suport#N new title", ArgumentKind.TITLE, True),
        _spec("move", ("mou",), "!move suport#N queue", ArgumentKind.QUEUE, True),
        _spec("status", ("estat",), "!status suport#N status", ArgumentKind.STATUS, True),
        _spec("open", ("obre",), "!open suport#N", ArgumentKind.NONE, True),
        _spec("stall", ("atura",), "!stall suport#N", ArgumentKind.NONE, True),
        _spec("resolve", ("resol",), "!resolve suport#N", ArgumentKind.NONE, True),
        _spec("reject", ("rebutja",), "!reject suport#N", ArgumentKind.NONE, True),
        _spec("show", ("mostra",), "!show suport#N", ArgumentKind.NONE, True),
        _spec("history", ("historial",), "!history suport#N", ArgumentKind.NONE, True),
        _spec(
            "list",
            ("llista",),
            "!list [queue] [status…] [mine|unowned|all]",
            ArgumentKind.LIST,
            False,
        ),
        _spec("search", ("cerca",), "!search words…", ArgumentKind.WORDS, False),
        _spec("new", ("nou",), "!new member@example.org title…", ArgumentKind.NEW, False),
        _spec("accept", ("accepta",), "!accept suport#N", ArgumentKind.NONE, True),
        _spec(
            "cc",
            ("copia", "còpia"),
            "!cc suport#N +address -address…",
            ArgumentKind.PARTICIPANTS,
            True,
        ),
        _spec("login", ("entra",), "!login", ArgumentKind.NONE, False),
        _spec("help", ("ajuda",), "!help [command]", ArgumentKind.TOPIC, False),
    ]
)

_BY_WORD: dict[str, str] = {}
for _spec_ in COMMANDS.values():
    _BY_WORD[_spec_.name] = _spec_.name
    for _alias in _spec_.aliases:
        _BY_WORD[unicodedata.normalize("NFC", _alias)] = _spec_.name

_STATUS_COMMANDS = {
    "open": Status.OPEN,
    "stall": Status.STALLED,
    "resolve": Status.RESOLVED,
    "reject": Status.REJECTED,
}
_LIST_MINE = {"mine", "meus", "meves"}
_LIST_UNOWNED = {"unowned", "lliures", "sense"}
_LIST_ALL = {"all", "tots", "totes"}
_KNOWN_STATUS_WORDS = ", ".join(STATUS_WORDS)

_TOKEN = re.compile(r"\S+")
_DIGITS = re.compile(r"[0-9]+")
_USER_ID = re.compile(r"@[^\s:]+:\S+")


def is_user_id(text: str) -> bool:
    """Whether `text` is written like a Matrix user id, `@name:server`."""
    return bool(_USER_ID.fullmatch(text))

_TRAILING_PUNCTUATION = ".,;:"
# The most addresses one `!cc` may name (the service refuses more, too).
_MAX_CC_WORDS = 20


@dataclass(frozen=True)
class Query:
    """A read-only command."""

    name: str  # "show" | "history" | "list" | "search" | "help" | "login"
    ticket: int | None = None  # show / history
    queue: str | None = None  # list filter
    statuses: tuple[Status, ...] = ()  # list filter; () means the default, chosen by the caller
    owner: str | None = None  # list filter: "mine" | "unowned" | None
    words: str = ""  # search
    topic: str | None = None  # help: canonical name of the command asked about, or None


@dataclass(frozen=True)
class ParsedCommand:
    """An understood command: its canonical name and either an intent or a query."""

    name: str
    intent: Intent | None = None
    query: Query | None = None


def is_command(text: str) -> bool:
    """Whether a chat message is a command: `!` followed by a letter."""
    stripped = text.lstrip()
    return len(stripped) >= 2 and stripped[0] == COMMAND_PREFIX and stripped[1].isalpha()


def canonical_name(word: str) -> str | None:
    """The canonical English name of a command word or alias (without `!`), or None."""
    return _BY_WORD.get(unicodedata.normalize("NFC", word.strip()).lower())


def _echo(text: str) -> str:
    text = text.strip()
    return text if len(text) <= _ECHO_LIMIT else text[: _ECHO_LIMIT - 1] + "…"


def parse_command(
    text: str,
    *,
    prefix: str,
    queues: Collection[str],
    context_ticket: int | None = None,
    room_queue: str | None = None,
) -> ParsedCommand:
    """Parse a chat command into a ParsedCommand, or raise CommandError."""
    body = text.replace("\r\n", "\n").replace("\r", "\n").strip()
    if not is_command(body):
        first = body.split(maxsplit=1)[0] if body else ""
        raise CommandError("unknown_command", command=_echo(first.removeprefix(COMMAND_PREFIX)))
    word = body[1:].split(maxsplit=1)[0]
    name = canonical_name(word)
    if name is None:
        raise CommandError("unknown_command", command=_echo(word))
    spec = COMMANDS[name]
    rest = body[1 + len(word) :].strip()

    if not spec.needs_ticket:
        return _parse_unticketed(spec, rest, queues=queues, room_queue=room_queue)

    free_text = spec.argument in (ArgumentKind.TEXT, ArgumentKind.TITLE)
    ticket, rest = _take_reference(
        spec, rest, prefix=prefix, context_ticket=context_ticket, free_text=free_text
    )
    return _parse_ticketed(spec, ticket, rest, queues=queues)


def _take_reference(
    spec: CommandSpec, rest: str, *, prefix: str, context_ticket: int | None, free_text: bool
) -> tuple[int, str]:
    """Split a leading ticket reference off `rest`; returns the ticket and what follows."""
    first_line = rest.split("\n", 1)[0]
    tokens = list(_TOKEN.finditer(first_line))
    # Inside a thread, a bare number opening free text is text ("!reply 2 routers are down").
    bare_numbers = context_ticket is None or not free_text
    for count in range(min(len(tokens), _MAX_REFERENCE_WORDS), 0, -1):
        end = tokens[count - 1].end()
        candidate = rest[:end].rstrip(_TRAILING_PUNCTUATION)
        number = parse_reference(candidate, prefix)
        if number is None:
            continue
        if _DIGITS.fullmatch(candidate.strip()) and not bare_numbers:
            break
        return number, rest[end:].strip()
    if tokens and _attempted_reference(
        tokens[0].group(), prefix, required=context_ticket is None, free_text=free_text
    ):
        raise CommandError("bad_reference", text=_echo(tokens[0].group()))
    if context_ticket is None:
        raise CommandError("missing_reference", command=spec.name)
    return context_ticket, rest


def _attempted_reference(token: str, prefix: str, *, required: bool, free_text: bool) -> bool:
    """Whether a word that did not parse as a reference was meant to be one."""
    word = token.lower().rstrip(_TRAILING_PUNCTUATION)
    lowered_prefix = prefix.lower()
    strict = required or not free_text  # free text in a thread: only unmistakable forms count
    if _DIGITS.fullmatch(word):
        return strict  # out of range, e.g. 0 or 13+ digits
    if lowered_prefix and word.startswith(lowered_prefix):
        after = word[len(lowered_prefix) :]
        if after[:1] == "#" or after[:1].isdigit():
            return True
        if not after:
            return required
    if strict:
        return "#" in word
    return word.startswith("#") and word[1:2].isdigit()


def _single_word(spec: CommandSpec, rest: str, argument: str) -> str:
    """The one word a command takes; missing or extra words are errors."""
    words = rest.split()
    if not words:
        raise CommandError("missing_argument", command=spec.name, argument=argument)
    if len(words) > 1:
        raise CommandError(
            "unexpected_argument", command=spec.name, text=_echo(rest.split(maxsplit=1)[1])
        )
    return words[0]


def _known_queues(queues: Collection[str]) -> str:
    return ", ".join(sorted({q.lower() for q in queues}))


def _parse_ticketed(
    spec: CommandSpec, ticket: int, rest: str, *, queues: Collection[str]
) -> ParsedCommand:
    """Build the intent or query of a command that acts on one ticket."""
    name = spec.name
    kind = spec.argument
    if kind is ArgumentKind.NONE:
        if rest:
            raise CommandError("unexpected_argument", command=name, text=_echo(rest))
        if name in _STATUS_COMMANDS:
            return ParsedCommand(name, intent=SetStatus(ticket, _STATUS_COMMANDS[name]))
        if name in ("show", "history"):
            return ParsedCommand(name, query=Query(name, ticket=ticket))
        if name == "take":
            return ParsedCommand(name, intent=Take(ticket))
        if name == "untake":
            return ParsedCommand(name, intent=Untake(ticket))
        return ParsedCommand(name, intent=AcceptUnverified(ticket))
    if kind is ArgumentKind.TEXT:
        if not rest:
            raise CommandError("missing_argument", command=name, argument="text")
        if name == "reply":
            return ParsedCommand(name, intent=Reply(ticket, rest))
        return ParsedCommand(name, intent=Comment(ticket, rest))
    if kind is ArgumentKind.PARTICIPANTS:
        return ParsedCommand(name, intent=_parse_cc(spec, ticket, rest))
    if kind is ArgumentKind.TITLE:
        title = " ".join(rest.split())
        if not title:
            raise CommandError("missing_argument", command=name, argument="title")
        return ParsedCommand(name, intent=SetTitle(ticket, title))
    if kind is ArgumentKind.USER:
        user = _single_word(spec, rest, "user")
        if not is_user_id(user):
            raise CommandError("bad_user", text=_echo(user))
        return ParsedCommand(name, intent=Give(ticket, user))
    if kind is ArgumentKind.QUEUE:
        queue = _single_word(spec, rest, "queue").lower()
        if queue not in {q.lower() for q in queues}:
            raise CommandError("bad_queue", queue=_echo(queue), known=_known_queues(queues))
        return ParsedCommand(name, intent=Move(ticket, queue))
    # ArgumentKind.STATUS
    word = _single_word(spec, rest, "status")
    try:
        status = parse_status(word)
    except LifecycleError:
        raise CommandError("bad_status", word=_echo(word), known=_KNOWN_STATUS_WORDS) from None
    return ParsedCommand(name, intent=SetStatus(ticket, status))


def _parse_unticketed(
    spec: CommandSpec, rest: str, *, queues: Collection[str], room_queue: str | None
) -> ParsedCommand:
    """Build the intent or query of a command that names no existing ticket."""
    name = spec.name
    kind = spec.argument
    if kind is ArgumentKind.LIST:
        return ParsedCommand(name, query=_parse_list(rest, queues))
    if kind is ArgumentKind.WORDS:
        words = " ".join(rest.split())
        if not words:
            raise CommandError("missing_argument", command=name, argument="words")
        return ParsedCommand(name, query=Query("search", words=words))
    if kind is ArgumentKind.NEW:
        return ParsedCommand(name, intent=_parse_new(spec, rest, room_queue))
    if kind is ArgumentKind.NONE:  # !login: a link to the web, by direct message
        if rest:
            raise CommandError("unexpected_argument", command=name, text=_echo(rest))
        return ParsedCommand(name, query=Query(name))
    # ArgumentKind.TOPIC
    words = rest.split()
    if not words:
        return ParsedCommand(name, query=Query("help"))
    if len(words) > 1:
        raise CommandError(
            "unexpected_argument", command=name, text=_echo(rest.split(maxsplit=1)[1])
        )
    asked = words[0].lstrip(COMMAND_PREFIX)
    topic = canonical_name(asked)
    if topic is None:
        raise CommandError("unknown_command", command=_echo(asked))
    return ParsedCommand(name, query=Query("help", topic=topic))


def _parse_list(rest: str, queues: Collection[str]) -> Query:
    """`!list` filters, in any order: a queue, status words, mine/unowned, all."""
    known_queues = {q.lower() for q in queues}
    queue: str | None = None
    owner: str | None = None
    statuses: list[Status] = []
    every_status = False
    for raw in rest.split():
        word = unicodedata.normalize("NFC", raw).lower().rstrip(_TRAILING_PUNCTUATION)
        if word in known_queues and queue in (None, word):
            queue = word
        elif word in _LIST_ALL:
            every_status = True
        elif word in _LIST_MINE and owner in (None, "mine"):
            owner = "mine"
        elif word in _LIST_UNOWNED and owner in (None, "unowned"):
            owner = "unowned"
        elif word in STATUS_WORDS:
            status = parse_status(word)
            if status not in statuses:
                statuses.append(status)
        else:
            raise CommandError("bad_list_argument", word=_echo(raw))
    chosen = tuple(Status) if every_status else tuple(statuses)
    return Query("list", queue=queue, statuses=chosen, owner=owner)


def _parse_new(spec: CommandSpec, rest: str, room_queue: str | None) -> OpenTicket:
    """`!new member@example.org title` and, on the following lines, the text."""
    first_line, _, following = rest.partition("\n")
    parts = first_line.split(maxsplit=1)
    if not parts:
        raise CommandError("missing_argument", command=spec.name, argument="address")
    address = _command_address(parts[0])
    title = " ".join(parts[1].split()) if len(parts) > 1 else ""
    if not title:
        raise CommandError("missing_argument", command=spec.name, argument="title")
    return OpenTicket(requestor=address, title=title, text=following.strip(), queue=room_queue)


def _command_address(word: str) -> str:
    """An address typed in a command (`<a@b.org>` and `mailto:` allowed), in canonical form;
    CommandError with the reason when the one address rule refuses it."""
    address = word
    if address.startswith("<") and address.endswith(">"):
        address = address[1:-1]
    address = address.removeprefix("mailto:")
    try:
        return normalize_address(address)
    except BadAddress as error:
        raise CommandError(
            "bad_address", text=_echo(word), reason=error.reason, reason_code=error.code
        ) from None


def _parse_cc(spec: CommandSpec, ticket: int, rest: str) -> ChangeParticipants:
    """`!cc suport#N +a@example.org -b@example.org`: participants to add and remove."""
    words = rest.replace(",", " ").split()
    if not words:
        raise CommandError("missing_argument", command=spec.name, argument="participants")
    if len(words) > _MAX_CC_WORDS:
        raise CommandError(
            "unexpected_argument", command=spec.name, text=_echo(" ".join(words[_MAX_CC_WORDS:]))
        )
    add: list[str] = []
    remove: list[str] = []
    for word in words:
        sign, address = word[:1], word[1:]
        if sign not in "+-" or not address:
            raise CommandError("bad_cc_argument", text=_echo(word))
        if sign == "+":
            add.append(_command_address(address))
        else:  # even an unusable address can be removed: the service matches it as stored
            remove.append(address.lower())
    return ChangeParticipants(ticket, tuple(add), tuple(remove))
