"""Chat commands: turn a volunteer's `!command …` message into an action's arguments.

Which commands exist, what they take and what they do is declared once, in the action
registry (`exobot.core.actions`); this module reads chat text by those declarations: the
command word finds the action, its ticket use says whether a reference is taken, and each
argument is read by the one reader of its kind.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from exobot.core.actions import (
    ActionRegistry,
    ActionSpec,
    ArgKind,
    Argument,
    TicketUse,
    default_registry,
)
from exobot.core.addresses import BadAddress, is_user_id, normalize_address
from exobot.core.intents import Intent
from exobot.core.languages import N_
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


_LIST_MINE = {"mine", "meus", "meves"}
_LIST_UNOWNED = {"unowned", "lliures", "sense"}
_LIST_ALL = {"all", "tot", "tots", "totes", "todo", "todos", "todas"}
# `!list` filters statuses in the plural and feminine too, as people say it ("els oberts",
# "las cerradas"), in Catalan and Spanish; `!status` takes the words of STATUS_WORDS alone.
_LIST_STATUS_FORMS: dict[Status, tuple[str, ...]] = {
    Status.NEW: ("nous", "nova", "noves", "nuevo", "nuevos", "nueva", "nuevas"),
    Status.OPEN: ("oberts", "oberta", "obertes", "abierto", "abiertos", "abierta", "abiertas"),
    Status.STALLED: (
        *("aturats", "aturada", "aturades"),
        *("parado", "parados", "parada", "paradas"),
    ),
    Status.RESOLVED: (
        *("resolts", "resolta", "resoltes", "tancats", "tancada", "tancades", "closed"),
        *("resuelto", "resueltos", "resuelta", "resueltas"),
        *("cerrado", "cerrados", "cerrada", "cerradas"),
    ),
    Status.REJECTED: (
        *("rebutjats", "rebutjada", "rebutjades"),
        *("rechazado", "rechazados", "rechazada", "rechazadas"),
    ),
}
_LIST_STATUS_WORDS: dict[str, Status] = {
    **STATUS_WORDS,
    **{word: status for status, words in _LIST_STATUS_FORMS.items() for word in words},
}
_KNOWN_STATUS_WORDS = ", ".join(STATUS_WORDS)

_TOKEN = re.compile(r"\S+")
_DIGITS = re.compile(r"[0-9]+")

_TRAILING_PUNCTUATION = ".,;:"
# Separators people put between the prefix and the number instead of `#` (`suport-3`).
_WRONG_SEPARATORS = "-/_:."
# `!help all` / `!ajuda tot`: the whole list instead of the short one.
HELP_ALL = "all"
_HELP_ALL_WORDS = {"all", "tot", "totes", "tots", "todo", "todos"}
# How alike a mistyped word must be to a command word to be suggested (difflib's ratio).
_SUGGEST_CUTOFF = 0.6
# Words people reach for that spelling does not lead to the command they mean (or leads
# astray: `done` is nearest to `dona`, which gives the ticket away), by canonical name.
_SYNONYMS = {
    "assign": "give",
    "assigna": "give",
    "assignar": "give",
    "asigna": "give",
    "asignar": "give",
    "close": "resolve",
    "cierra": "resolve",
    "cerrar": "resolve",
    "done": "resolve",
    "buscar": "search",
    "busca": "search",
    "find": "search",
    "unassign": "untake",
    "desassigna": "untake",
}
# The help's stand-in for a command's name (`!ajuda ORDRE`): typed as is, it gets no
# suggestion but a pointer to the whole list.
_PLACEHOLDERS = frozenset({"ordre", "orden", "command", "comanda", "comando"})
# The most addresses one `!cc` may name (the service refuses more, too).
_MAX_CC_WORDS = 20
# Kinds that read free text: a bare number opening them inside a thread is text, not a ticket.
_FREE_TEXT = (ArgKind.TEXT, ArgKind.TITLE)


@dataclass(frozen=True)
class Query:
    """A read-only command the channel answers itself."""

    name: str  # "show" | "history" | "list" | "search" | "help" | "login"
    ticket: int | None = None  # show / history
    queue: str | None = None  # list filter
    statuses: tuple[Status, ...] = ()  # list filter; () means the default, chosen by the caller
    owner: str | None = None  # list filter: "mine" | "unowned" | None
    words: str = ""  # search
    topic: str | None = None  # help: canonical name of the command asked about, or None


@dataclass(frozen=True)
class ParsedCommand:
    """An understood command: the action, its ticket and arguments, and, for the core's own
    actions, the intent it builds or the read-only query it asks (a handler action has
    neither: the channel runs its handler with `ticket` and `args`)."""

    name: str
    intent: Intent | None = None
    query: Query | None = None
    spec: ActionSpec | None = field(default=None, compare=False)
    ticket: int | None = field(default=None, compare=False)
    args: Mapping[str, Any] = field(default_factory=dict, compare=False)


def is_command(text: str) -> bool:
    """Whether a chat message is a command: `!` followed by a letter."""
    stripped = text.lstrip()
    return len(stripped) >= 2 and stripped[0] == COMMAND_PREFIX and stripped[1].isalpha()


def close_spaced_command(text: str, registry: ActionRegistry | None = None) -> str:
    """`! agafa …` as `!agafa …` when the word after the lone `!` is a command word; any
    other text unchanged (`! ja està` and `!!!` stay text)."""
    stripped = text.lstrip()
    if stripped[:1] != COMMAND_PREFIX or not stripped[1:2].isspace():
        return text
    words = stripped[1:].split(maxsplit=1)
    if not words or (registry or default_registry()).find(words[0]) is None:
        return text
    return COMMAND_PREFIX + stripped[1:].lstrip()


def canonical_name(word: str, registry: ActionRegistry | None = None) -> str | None:
    """The canonical name of a command word or alias (without `!`), or None."""
    spec = (registry or default_registry()).find(word)
    return spec.name if spec is not None else None


def suggest_command(word: str, registry: ActionRegistry | None = None) -> str | None:
    """The command word (any language's) nearest to a mistyped one, or None when none is
    alike enough: `!agaf` → `agafa`, `!resolv` → `resolve`; a known synonym gives its
    command's canonical name (`!assign` → `give`), the help's placeholder nothing."""
    typed = _typed_word(word)
    registry = registry or default_registry()
    if not typed or len(typed) > _ECHO_LIMIT or typed in _PLACEHOLDERS:
        return None
    meant = _SYNONYMS.get(typed)
    if meant is not None and registry.find(meant) is not None:
        return meant
    words = [w for spec in registry for w in spec.all_words()]
    found = difflib.get_close_matches(typed, words, n=1, cutoff=_SUGGEST_CUTOFF)
    return found[0] if found else None


def _typed_word(word: str) -> str:
    """A typed command word as compared: without `!`, composed, lower-case."""
    return unicodedata.normalize("NFC", word.strip().lstrip(COMMAND_PREFIX)).lower()


def _unknown(word: str, registry: ActionRegistry) -> CommandError:
    """The error for a word that names no command, with the nearest one when there is one;
    the help's placeholder (`!ordre`) is pointed to the whole list instead."""
    if _typed_word(word) in _PLACEHOLDERS:
        return CommandError("unknown_command", command=_echo(word), placeholder=True)
    nearest = suggest_command(word, registry)
    if nearest is None:
        return CommandError("unknown_command", command=_echo(word))
    return CommandError("unknown_command", command=_echo(word), suggestion=nearest)


def _echo(text: str) -> str:
    text = text.strip()
    return text if len(text) <= _ECHO_LIMIT else text[: _ECHO_LIMIT - 1] + "…"


@dataclass(frozen=True)
class _Reading:
    """What the argument readers need besides the text."""

    spec: ActionSpec
    queues: Collection[str]
    room_queue: str | None
    registry: ActionRegistry
    last: bool  # the argument is the action's last one: nothing may follow it
    mentions: Mapping[str, str]  # display name -> user id of the message's mention pills


def parse_command(
    text: str,
    *,
    prefix: str,
    queues: Collection[str],
    context_ticket: int | None = None,
    room_queue: str | None = None,
    registry: ActionRegistry | None = None,
    mentions: Mapping[str, str] | None = None,
) -> ParsedCommand:
    """Parse a chat command into a ParsedCommand, or raise CommandError.

    `mentions` maps the display names of the message's mention pills to their user ids (a
    chat client writes a pill's display name in the plain text): a user argument written as
    one of those names reads as its id; everywhere else the text stays as typed."""
    registry = registry or default_registry()
    body = text.replace("\r\n", "\n").replace("\r", "\n").strip()
    if not is_command(body):
        first = body.split(maxsplit=1)[0] if body else ""
        raise CommandError("unknown_command", command=_echo(first.removeprefix(COMMAND_PREFIX)))
    word = body[1:].split(maxsplit=1)[0]
    spec = registry.find(word)
    if spec is None:
        raise _unknown(word, registry)
    rest = body[1 + len(word) :].strip()

    ticket: int | None = None
    if spec.ticket is not TicketUse.NONE:
        free_text = bool(spec.arguments) and spec.arguments[0].kind in _FREE_TEXT
        ticket, rest = _take_reference(
            spec,
            rest,
            prefix=prefix,
            context_ticket=context_ticket,
            free_text=free_text,
            required=spec.ticket is TicketUse.REQUIRED,
        )

    args: dict[str, Any] = {}
    for index, argument in enumerate(spec.arguments):
        last = index == len(spec.arguments) - 1
        reading = _Reading(spec, queues, room_queue, registry, last, mentions or {})
        rest = _READERS[argument.kind](argument, rest, reading, args).strip()
    if rest:  # words after the reference of an action that takes nothing more
        raise CommandError("unexpected_argument", command=spec.name, text=_echo(rest))

    intent = spec.intent(ticket, args) if spec.intent is not None else None
    query = _query(spec, ticket, args) if spec.is_query else None
    return ParsedCommand(spec.name, intent, query, spec=spec, ticket=ticket, args=args)


def _query(spec: ActionSpec, ticket: int | None, args: Mapping[str, Any]) -> Query:
    """The core's read-only query of a parsed command (the channel answers it)."""
    filters = args.get("filters") or {}
    return Query(
        spec.name,
        ticket=ticket,
        queue=filters.get("queue"),
        statuses=filters.get("statuses", ()),
        owner=filters.get("owner"),
        words=args.get("words", ""),
        topic=args.get("topic"),
    )


# --- the ticket reference ----------------------------------------------------------------------


def _take_reference(
    spec: ActionSpec,
    rest: str,
    *,
    prefix: str,
    context_ticket: int | None,
    free_text: bool,
    required: bool,
) -> tuple[int | None, str]:
    """Split a leading ticket reference off `rest`; returns the ticket and what follows (an
    optional reference left out outside a thread gives None)."""
    first_line = rest.split("\n", 1)[0]
    tokens = list(_TOKEN.finditer(first_line))
    # Inside a thread, a number opening free text is text, bare or after `#` ("!reply 2
    # routers are down", "!reply #2 is the router's port"): only a reference naming the
    # prefix (suport#2) picks another ticket there.
    qualified_only = context_ticket is not None and free_text
    for count in range(min(len(tokens), _MAX_REFERENCE_WORDS), 0, -1):
        end = tokens[count - 1].end()
        candidate = rest[:end].rstrip(_TRAILING_PUNCTUATION)
        number = parse_reference(candidate, prefix)
        if number is None:
            continue
        if qualified_only and _unqualified(candidate):
            break
        return number, rest[end:].strip()
    if qualified_only and tokens and _unqualified(tokens[0].group()):
        return context_ticket, rest  # text, even `#0`: not a failed reference
    if tokens and _attempted_reference(
        tokens[0].group(),
        prefix,
        required=required and context_ticket is None,
        free_text=free_text,
    ):
        raise CommandError("bad_reference", text=_echo(tokens[0].group()))
    if context_ticket is None and required:
        raise CommandError("missing_reference", command=spec.name)
    return context_ticket, rest


def _unqualified(text: str) -> bool:
    """Whether a reference-like text opens with `#` or a digit instead of the prefix (`#2`,
    `2`): inside a thread such a start of free text is text."""
    first = text.strip()[:1]
    return first == "#" or first.isdigit()


def _attempted_reference(token: str, prefix: str, *, required: bool, free_text: bool) -> bool:
    """Whether a word that did not parse as a reference was meant to be one. The prefix and
    a number with another separator (`suport-3`) raises bad_reference with the right form:
    a mistyped reference is asked about, never acted on, nor reported as missing."""
    word = token.lower().rstrip(_TRAILING_PUNCTUATION)
    lowered_prefix = prefix.lower()
    right = _separator_typo(word, prefix)
    if right is not None:
        raise CommandError("bad_reference", text=_echo(token), suggestion=right)
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


def _separator_typo(word: str, prefix: str) -> str | None:
    """The reference meant by the prefix and a number joined by a wrong separator
    (`suport-3`, `suport/3`, `suport_3` → `suport#3`), or None; `word` is lower-case."""
    lowered_prefix = prefix.lower()
    if not lowered_prefix or not word.startswith(lowered_prefix):
        return None
    after = word[len(lowered_prefix) :]
    separator, digits = after[:1], after[1:]
    if not separator or separator not in _WRONG_SEPARATORS or not _DIGITS.fullmatch(digits):
        return None
    right = f"{prefix}#{digits}"
    return right if parse_reference(right, prefix) is not None else None


# --- one reader per kind ---------------------------------------------------------------------
# A reader takes the argument, the text still unread, the reading context and the arguments
# read so far; it stores what it read in `args` and returns the text it left.

Reader = Callable[[Argument, str, _Reading, dict[str, Any]], str]


def _missing(
    reading: _Reading, argument: Argument, name: str | None = None, label: str = ""
) -> None:
    """Raise missing_argument; `argument` names it for the wording ("user", "text", …) and
    `label` is the declared label (a message id) the reader is shown."""
    raise CommandError(
        "missing_argument",
        command=reading.spec.name,
        argument=name or argument.name,
        label=label or argument.label,
    )


def _one_word(
    argument: Argument, rest: str, reading: _Reading, name: str | None = None
) -> tuple[str | None, str]:
    """The next word, and what follows it; a missing word is an error when required, and
    words after an action's last argument are unexpected."""
    words = rest.split(maxsplit=1)
    if not words:
        if argument.required:
            _missing(reading, argument, name)
        return None, ""
    after = words[1] if len(words) > 1 else ""
    if after and reading.last:
        raise CommandError("unexpected_argument", command=reading.spec.name, text=_echo(after))
    return words[0], after


def _read_word(argument: Argument, rest: str, reading: _Reading, args: dict[str, Any]) -> str:
    word, after = _one_word(argument, rest, reading)
    if word is not None:
        args[argument.name] = word
    return after


def _read_user(argument: Argument, rest: str, reading: _Reading, args: dict[str, Any]) -> str:
    """A Matrix id, or the display name of one of the message's mention pills (which may be
    several words), read as that pill's user id."""
    mentioned = _mentioned(rest, reading.mentions)
    if mentioned is not None:
        user, after = mentioned
        if after and reading.last:
            raise CommandError("unexpected_argument", command=reading.spec.name, text=_echo(after))
        args[argument.name] = user
        return after
    user, after = _one_word(argument, rest, reading, "user")
    if user is not None:
        if not is_user_id(user):
            raise CommandError("bad_user", text=_echo(user))
        args[argument.name] = user
    return after


def _mentioned(rest: str, mentions: Mapping[str, str]) -> tuple[str, str] | None:
    """The user id of the mention whose display name opens `rest` as whole words, and the
    text after it; None when none does. The longest name wins (`Anna Maria` over `Anna`);
    `Annabel` is not `Anna`."""
    for name in sorted(mentions, key=len, reverse=True):
        after = rest[len(name) :]
        if rest.startswith(name) and (not after or after[0].isspace()):
            return mentions[name], after.strip()
    return None


def _known_queues(queues: Collection[str]) -> str:
    return ", ".join(sorted({q.lower() for q in queues}))


def _read_queue(argument: Argument, rest: str, reading: _Reading, args: dict[str, Any]) -> str:
    word, after = _one_word(argument, rest, reading)
    if word is not None:
        queue = word.lower()
        if queue not in {q.lower() for q in reading.queues}:
            raise CommandError(
                "bad_queue", queue=_echo(queue), known=_known_queues(reading.queues)
            )
        args[argument.name] = queue
    return after


def _read_status(argument: Argument, rest: str, reading: _Reading, args: dict[str, Any]) -> str:
    word, after = _one_word(argument, rest, reading)
    if word is not None:
        try:
            args[argument.name] = parse_status(word)
        except LifecycleError:
            raise CommandError(
                "bad_status", word=_echo(word), known=_KNOWN_STATUS_WORDS
            ) from None
    return after


def _read_text(argument: Argument, rest: str, reading: _Reading, args: dict[str, Any]) -> str:
    """The rest of the message as typed, line breaks kept."""
    if rest:
        args[argument.name] = rest
    elif argument.required:
        _missing(reading, argument)
    return ""


def _read_one_line(
    argument: Argument, rest: str, reading: _Reading, args: dict[str, Any]
) -> str:
    """The rest of the message on one line, spaces collapsed (a title, the words to search)."""
    line = " ".join(rest.split())
    if line:
        args[argument.name] = line
    elif argument.required:
        _missing(reading, argument)
    return ""


def _read_topic(argument: Argument, rest: str, reading: _Reading, args: dict[str, Any]) -> str:
    """`!help [command]`: the canonical name of the command asked about, or HELP_ALL for
    the whole list (`!help all`, `!ajuda tot`)."""
    word, after = _one_word(argument, rest, reading)
    if word is not None:
        asked = word.lstrip(COMMAND_PREFIX)
        if asked.lower() in _HELP_ALL_WORDS:
            args[argument.name] = HELP_ALL
            return after
        topic = reading.registry.find(asked)
        if topic is None:
            raise _unknown(asked, reading.registry)
        args[argument.name] = topic.name
    return after


def _read_list(argument: Argument, rest: str, reading: _Reading, args: dict[str, Any]) -> str:
    """`!list` filters, in any order: a queue, status words (`oberts`, `cerradas` too),
    mine/unowned, all."""
    known_queues = {q.lower() for q in reading.queues}
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
        elif word in _LIST_STATUS_WORDS:
            status = _LIST_STATUS_WORDS[word]
            if status not in statuses:
                statuses.append(status)
        else:
            raise CommandError("bad_list_argument", word=_echo(raw))
    chosen = tuple(Status) if every_status else tuple(statuses)
    args[argument.name] = {"queue": queue, "statuses": chosen, "owner": owner}
    return ""


def _read_new(argument: Argument, rest: str, reading: _Reading, args: dict[str, Any]) -> str:
    """`!new member@example.org title` and, on the following lines, the text; the ticket goes
    to the room's queue."""
    first_line, _, following = rest.partition("\n")
    parts = first_line.split(maxsplit=1)
    if not parts:
        _missing(reading, argument, "address")
    address = command_address(parts[0])
    title = " ".join(parts[1].split()) if len(parts) > 1 else ""
    if not title:
        _missing(reading, argument, "title", N_("the title"))
    args.update(requestor=address, title=title, text=following.strip(), queue=reading.room_queue)
    return ""


def _read_participants(
    argument: Argument, rest: str, reading: _Reading, args: dict[str, Any]
) -> str:
    """`+a@example.org -b@example.org`: participants to add (`add`) and remove (`remove`)."""
    words = rest.replace(",", " ").split()
    if not words:
        _missing(reading, argument)
    if len(words) > _MAX_CC_WORDS:
        raise CommandError(
            "unexpected_argument",
            command=reading.spec.name,
            text=_echo(" ".join(words[_MAX_CC_WORDS:])),
        )
    add: list[str] = []
    remove: list[str] = []
    for word in words:
        sign, address = word[:1], word[1:]
        if sign not in "+-" or not address:
            raise CommandError("bad_cc_argument", text=_echo(word))
        if sign == "+":
            add.append(command_address(address))
        else:  # even an unusable address can be removed: the service matches it as stored
            remove.append(address.lower())
    args.update(add=tuple(add), remove=tuple(remove))
    return ""


_READERS: dict[ArgKind, Reader] = {
    ArgKind.USER: _read_user,
    ArgKind.TEXT: _read_text,
    ArgKind.TITLE: _read_one_line,
    ArgKind.WORD: _read_word,
    ArgKind.QUEUE: _read_queue,
    ArgKind.STATUS: _read_status,
    ArgKind.PARTICIPANTS: _read_participants,
    ArgKind.LIST: _read_list,
    ArgKind.WORDS: _read_one_line,
    ArgKind.NEW: _read_new,
    ArgKind.TOPIC: _read_topic,
}


def command_address(word: str) -> str:
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
