"""The action registry: every action a volunteer can ask for, declared once.

An action is declared by an `ActionSpec`: its name, its words per language, its arguments
and their kinds, whether it needs a ticket, who may use it, what it does (an intent for the
service, an asynchronous handler, or a read-only query the channel answers) and its help
texts. The chat parser, `!help`, the web forms' dispatch and the API's action routes are
generated from the registry, so an action a plugin registers is usable everywhere without
touching any of them.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from exobot.core import intents
from exobot.core.intents import Intent
from exobot.core.languages import LANGUAGES, N_
from exobot.core.model import Status

CORE_DOMAIN = "exobot"


class ArgKind(StrEnum):
    """What an argument is, which decides how chat text and form fields are read into it."""

    USER = "user"  # a Matrix id, @name:server
    TEXT = "text"  # free text, line breaks kept (the rest of the message)
    TITLE = "title"  # free text on one line (spaces collapsed)
    WORD = "word"  # exactly one word
    QUEUE = "queue"  # one of the configured queues
    STATUS = "status"  # a status word in any language → Status
    PARTICIPANTS = "participants"  # +address / -address words → fields `add` and `remove`
    LIST = "list"  # `!list` filters: queue, statuses, mine/unowned, all
    WORDS = "words"  # the words to search for
    NEW = "new"  # `!new address title` + text on the following lines
    TOPIC = "topic"  # `!help [command]`


class TicketUse(StrEnum):
    """Whether an action acts on one ticket."""

    REQUIRED = "required"  # a reference, or the thread it is written in
    OPTIONAL = "optional"  # with a reference (or in a thread) or without
    NONE = "none"  # never names a ticket


class Permission(StrEnum):
    """Who may use an action."""

    OPERATOR = "operator"  # the support team (the only users exobot takes commands from)


class Channel(StrEnum):
    """Where an action can be asked for."""

    CHAT = "chat"
    WEB = "web"
    API = "api"


ALL_CHANNELS = frozenset(Channel)
CHAT_ONLY = frozenset({Channel.CHAT})


#: `await suggest(ticket, language)` → values a web form offers for an argument (the saved
#: replies' names, say) as it is typed; chat and the API ignore it.
Suggest = Callable[[int | None, str], Awaitable[Sequence[str]]]


@dataclass(frozen=True)
class Argument:
    """One argument of an action: its field name (form field, JSON key), its kind, whether
    it is required, a label for "is missing …" and the web form's field (a message id), an
    English description for the API schema and, optionally, what a web form suggests for it
    (`Suggest`)."""

    name: str
    kind: ArgKind
    required: bool = True
    label: str = ""
    description: str = ""
    suggest: Suggest | None = field(default=None, compare=False)


@dataclass(frozen=True)
class ActionCall:
    """One request to run an action: who asked, on which ticket, with which arguments (already
    read into their kinds), in which language and from which channel.

    `key` is the request's idempotency key (chat: the Matrix event's; the web: the form's
    nonce; the API: the request's Idempotency-Key), the same when the request is delivered
    again, None when the request has none. The channel records it with the answer, after
    the handler returns: a crash or a database error in between runs the handler again for
    the redelivered request, with the same key. A handler whose writes must happen once
    records the key with them, in the same transaction, and on finding it already recorded
    answers as for the first time instead of writing again."""

    action: str
    actor: str
    ticket: int | None
    args: Mapping[str, Any]
    language: str
    channel: Channel
    key: str | None = None


@dataclass(frozen=True)
class Answer:
    """What a read-only action says back: plain text and, optionally, its HTML twin (every
    untrusted piece in it escaped by whoever built it)."""

    body: str
    html: str | None = None


class ActionRefused(Exception):
    """A handler refuses a call (an unknown name, a bad argument): `message` is already in the
    call's language; `code` names the refusal for the API (400). A refusal is an answer, never
    counted as a plugin's failure."""

    def __init__(self, code: str, message: str, **params: object) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.params = params


IntentBuilder = Callable[[int | None, Mapping[str, Any]], Intent]
Handler = Callable[[ActionCall], Awaitable[Intent | Answer]]


@dataclass(frozen=True)
class ActionSpec:
    """An action, declared once.

    What it does is exactly one of: `intent` (builds the service's intent from the ticket and
    the arguments), `handler` (asynchronous: returns an intent the channel then applies, or an
    Answer), or neither, for the read-only queries each channel answers itself (`show`,
    `list`, …). `usage` and `summary` are message ids in `domain` (`{ref}` in usage stands
    for a ticket reference).

    `web_label` and `web_button` (message ids in `domain`, optional) word the action's form
    on the ticket page: its heading says what it is ("Send a saved reply"), its button what
    pressing it does ("Send to the member"). Without them the form shows the action's chat
    word in the reader's language, capitalised, on both.
    """

    name: str
    usage: str
    summary: str
    aliases: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    arguments: tuple[Argument, ...] = ()
    ticket: TicketUse = TicketUse.REQUIRED
    permission: Permission = Permission.OPERATOR
    intent: IntentBuilder | None = None
    handler: Handler | None = None
    channels: frozenset[Channel] = ALL_CHANNELS
    domain: str = CORE_DOMAIN
    api_summary: str = ""
    api_description: str = ""
    # The API's operation id (generated clients call it by this name); default: `name`.
    api_operation: str = ""
    # The name and description of the API's request body model; default: `<Name>In` and the
    # summary. Actions sharing a body (reply and comment) name the same model.
    api_body: str = ""
    api_body_doc: str = ""
    owner: str = "core"
    web_label: str = ""
    web_button: str = ""

    def __post_init__(self) -> None:
        if self.intent is not None and self.handler is not None:
            raise ValueError(f"action {self.name!r} has both an intent and a handler")
        if not self.name or _normal(self.name) != self.name or " " in self.name:
            raise ValueError(f"action name {self.name!r} must be one lower-case word")

    @property
    def is_query(self) -> bool:
        """A read-only query the channel answers itself (no intent, no handler)."""
        return self.intent is None and self.handler is None

    def all_words(self) -> tuple[str, ...]:
        """The name and every alias in every language, without repetition, name first."""
        words = [self.name]
        for aliases in self.aliases.values():
            words.extend(_normal(word) for word in aliases if _normal(word) not in words)
        return tuple(words)

    def word_for(self, language: str) -> str:
        """The word this language uses for the action (`agafa` in Catalan), else its name."""
        aliases = self.aliases.get(language) or ()
        return aliases[0] if aliases else self.name

    def argument(self, name: str) -> Argument | None:
        """The argument called `name`, if the action has one."""
        return next((arg for arg in self.arguments if arg.name == name), None)

    @property
    def operation_id(self) -> str:
        """The API's operation id of this action."""
        return self.api_operation or self.name

    @property
    def body_name(self) -> str:
        """The name of the API's request body model of this action."""
        return self.api_body or "".join(part.title() for part in self.name.split("_")) + "In"


async def run_handler(spec: ActionSpec, call: ActionCall) -> Intent | Answer:
    """Run a handler action: the one place every channel calls a handler from (whoever wants
    to count or isolate failures wraps `spec.handler` before registering it). TypeError when
    the handler gives back something that is neither an intent nor an Answer."""
    if spec.handler is None:
        raise ValueError(f"action {spec.name!r} has no handler")
    result = await spec.handler(call)
    if not isinstance(result, Intent | Answer):
        raise TypeError(f"the handler of {spec.name!r} returned {type(result).__name__}")
    return result


def _normal(word: str) -> str:
    return unicodedata.normalize("NFC", word.strip()).lower()


Listener = Callable[[str, ActionSpec], None]


class ActionRegistry:
    """The actions one exobot knows, in declaration order, found by name or any alias.

    Plugins register theirs at start and remove them at stop; listeners (the API, which adds
    and removes its routes) hear of every change.
    """

    def __init__(self, specs: tuple[ActionSpec, ...] | list[ActionSpec] = ()) -> None:
        self._specs: dict[str, ActionSpec] = {}
        self._words: dict[str, str] = {}
        self._listeners: list[Listener] = []
        for spec in specs:
            self.register(spec)

    def register(self, spec: ActionSpec) -> Callable[[], None]:
        """Add `spec`; ValueError when its name or a word is taken. Returns its remover."""
        if spec.name in self._specs:
            raise ValueError(f"action {spec.name!r} is already registered")
        for word in spec.all_words():
            taken = self._words.get(word)
            if taken is not None:
                raise ValueError(f"the word {word!r} of {spec.name!r} is taken by {taken!r}")
        self._specs[spec.name] = spec
        for word in spec.all_words():
            self._words[word] = spec.name
        self._notify("added", spec)
        return lambda: self.unregister(spec.name)

    def unregister(self, name: str) -> None:
        """Remove the action `name` (nothing happens when it is not registered)."""
        spec = self._specs.pop(name, None)
        if spec is None:
            return
        for word in spec.all_words():
            if self._words.get(word) == name:
                del self._words[word]
        self._notify("removed", spec)

    def find(self, word: str) -> ActionSpec | None:
        """The action a word (name or alias, any language, any case) names, or None."""
        name = self._words.get(_normal(word))
        return self._specs.get(name) if name is not None else None

    def get(self, name: str) -> ActionSpec:
        """The action called `name`; KeyError when there is none."""
        return self._specs[name]

    def for_channel(self, channel: Channel) -> list[ActionSpec]:
        """The actions usable from `channel`, in declaration order."""
        return [spec for spec in self._specs.values() if channel in spec.channels]

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call `listener(change, spec)` (change: "added" | "removed") at every change."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def _notify(self, change: str, spec: ActionSpec) -> None:
        for listener in list(self._listeners):
            listener(change, spec)

    def __iter__(self) -> Iterator[ActionSpec]:
        return iter(list(self._specs.values()))

    def __len__(self) -> int:
        return len(self._specs)

    def __contains__(self, name: object) -> bool:
        return name in self._specs


# --- the core's actions ----------------------------------------------------------------------

_TEXT = Argument("text", ArgKind.TEXT, label=N_("the text"))
_TEXT_BODY = "The text of a reply (mailed to the member) or of a comment (internal)."
_STATUS_SHORTCUTS = {
    "open": Status.OPEN,
    "stall": Status.STALLED,
    "resolve": Status.RESOLVED,
    "reject": Status.REJECTED,
}


def _status_shortcut(
    name: str, alias: str | tuple[str, ...], usage: str, summary: str
) -> ActionSpec:
    status = _STATUS_SHORTCUTS[name]
    return ActionSpec(
        name,
        usage,
        summary,
        aliases={"ca": (alias,) if isinstance(alias, str) else alias},
        intent=lambda ticket, args: intents.SetStatus(ticket, status),
        channels=CHAT_ONLY,
    )


async def _language_suggestions(ticket: int | None, language: str) -> Sequence[str]:
    """The languages a member can be written to in (the web form's suggestions)."""
    return LANGUAGES


def core_actions() -> tuple[ActionSpec, ...]:
    """The actions exobot has without plugins, in the order `!help` lists them."""
    return (
        ActionSpec(
            "take",
            N_("!take {ref}"),
            N_("Assigns the ticket to you (new → open)."),
            aliases={"ca": ("agafa",)},
            intent=lambda ticket, args: intents.Take(ticket),
            api_summary="Take",
            api_description="Become the ticket's owner.",
        ),
        ActionSpec(
            "give",
            N_("!give {ref} @user:server"),
            N_("Assigns the ticket to someone else (new → open)."),
            aliases={"ca": ("dona",)},
            arguments=(
                Argument(
                    "owner",
                    ArgKind.USER,
                    label=N_("the user (@name:server)"),
                    description="a Matrix id, @name:server",
                ),
            ),
            intent=lambda ticket, args: intents.Give(ticket, args["owner"]),
            api_summary="Give",
            api_body="GiveIn",
            api_body_doc="Whom to give the ticket to.",
            api_description="Give the ticket to another operator.",
        ),
        ActionSpec(
            "untake",
            N_("!untake {ref}"),
            N_("Leaves the ticket without an owner."),
            aliases={"ca": ("deixa",)},
            intent=lambda ticket, args: intents.Untake(ticket),
            api_summary="Untake",
            api_description="Leave the ticket without an owner.",
        ),
        ActionSpec(
            "reply",
            N_("!reply {ref} text…"),
            N_("Mails the requestor; the text may span several lines (new → open)."),
            aliases={"ca": ("respon",)},
            arguments=(_TEXT,),
            intent=lambda ticket, args: intents.Reply(ticket, args["text"]),
            api_summary="Reply",
            api_body="TextIn",
            api_body_doc=_TEXT_BODY,
            api_description="Mail a reply to the member (and the ticket's other participants).",
        ),
        ActionSpec(
            "comment",
            N_("!comment {ref} text…"),
            N_(
                "Saves an internal comment, never emailed. "
                "Plain messages in a ticket's thread are saved as comments too."
            ),
            aliases={"ca": ("comenta",)},
            arguments=(_TEXT,),
            intent=lambda ticket, args: intents.Comment(ticket, args["text"]),
            api_summary="Comment",
            api_body="TextIn",
            api_body_doc=_TEXT_BODY,
            api_description="Add an internal comment (never mailed).",
        ),
        ActionSpec(
            "title",
            N_("!title {ref} new title"),
            N_("Renames the ticket: short and specific, to tell tickets apart."),
            aliases={"ca": ("titol", "títol")},
            arguments=(
                Argument("title", ArgKind.TITLE, label=N_("the title")),
            ),
            intent=lambda ticket, args: intents.SetTitle(ticket, args["title"]),
            api_summary="Retitle",
            api_operation="set_title",
            api_body="TitleIn",
            api_body_doc="The ticket's new title.",
            api_description="Change the ticket's title.",
        ),
        ActionSpec(
            "move",
            N_("!move {ref} queue"),
            N_("Moves the ticket to another queue (for example, tresoreria)."),
            aliases={"ca": ("mou",)},
            arguments=(
                Argument("queue", ArgKind.QUEUE, label=N_("the queue")),
            ),
            intent=lambda ticket, args: intents.Move(ticket, args["queue"]),
            api_summary="Move",
            api_body="MoveIn",
            api_body_doc="The queue to move the ticket to.",
            api_description="Move the ticket to another queue.",
        ),
        ActionSpec(
            "status",
            N_("!status {ref} status"),
            N_(
                "Changes the status: open, stalled, resolved or rejected. "
                "Resolved mails the requestor the notice; rejected mails nothing."
            ),
            aliases={"ca": ("estat",)},
            arguments=(
                Argument(
                    "status",
                    ArgKind.STATUS,
                    label=N_("the status"),
                    description="open, stalled, resolved or rejected (Catalan words too)",
                ),
            ),
            intent=lambda ticket, args: intents.SetStatus(ticket, args["status"]),
            api_summary="Set status",
            api_operation="set_status",
            api_body="StatusIn",
            api_body_doc="The ticket's new status.",
            api_description="Change the ticket's status (resolving it mails the member).",
        ),
        _status_shortcut("open", "obre", N_("!open {ref}"), N_("Sets the ticket open.")),
        _status_shortcut(
            "stall", "atura", N_("!stall {ref}"), N_("Parks the ticket, to pick it up later.")
        ),
        _status_shortcut(
            "resolve",
            ("resol", "tanca"),
            N_("!resolve {ref}"),
            N_("Marks the ticket resolved and mails the requestor the notice."),
        ),
        _status_shortcut(
            "reject",
            "rebutja",
            N_("!reject {ref}"),
            N_("Rejects the ticket without sending any mail."),
        ),
        ActionSpec(
            "show",
            N_("!show {ref}"),
            N_("Shows the ticket's summary."),
            aliases={"ca": ("mostra",)},
            channels=CHAT_ONLY,
        ),
        ActionSpec(
            "history",
            N_("!history {ref}"),
            N_("Shows the ticket's history."),
            aliases={"ca": ("historial",)},
            channels=CHAT_ONLY,
        ),
        ActionSpec(
            "list",
            N_("!list [queue] [status…] [mine|unowned|all]"),
            N_("Lists tickets; by default, the new and open ones."),
            aliases={"ca": ("llista",)},
            arguments=(Argument("filters", ArgKind.LIST, required=False),),
            ticket=TicketUse.NONE,
            channels=CHAT_ONLY,
        ),
        ActionSpec(
            "search",
            N_("!search words…"),
            N_("Searches tickets by their text."),
            aliases={"ca": ("cerca",)},
            arguments=(
                Argument("words", ArgKind.WORDS, label=N_("the words to search for")),
            ),
            ticket=TicketUse.NONE,
            channels=CHAT_ONLY,
        ),
        ActionSpec(
            "new",
            N_("!new member@example.org title…"),
            N_(
                "Opens a ticket on someone's behalf (for example, after a phone call); "
                "the text may follow on the next lines."
            ),
            aliases={"ca": ("nou",)},
            arguments=(Argument("ticket", ArgKind.NEW, label=N_("the email address")),),
            ticket=TicketUse.NONE,
            intent=lambda ticket, args: intents.OpenTicket(
                requestor=args["requestor"],
                title=args["title"],
                text=args.get("text", ""),
                queue=args.get("queue"),
            ),
            channels=CHAT_ONLY,  # the web and the API open tickets at their own addresses
        ),
        ActionSpec(
            "accept",
            N_("!accept {ref}"),
            N_(
                "Accepts the last mail from an unverified sender as correspondence "
                "and makes the sender a participant; that mail's Cc addresses are only listed."
            ),
            aliases={"ca": ("accepta",)},
            intent=lambda ticket, args: intents.AcceptUnverified(ticket),
            api_summary="Accept",
            api_description="Accept the latest mail from an unverified sender as the member's.",
        ),
        ActionSpec(
            "unflag",
            N_("!unflag {ref} FLAG [note]"),
            N_(
                "Clears a flag (🚩) of the ticket once it is dealt with, e.g. `sensitive` "
                "after the data was moved to the management tool; the note says how."
            ),
            aliases={"ca": ("desmarca",)},
            arguments=(
                Argument(
                    "code",
                    ArgKind.WORD,
                    label=N_("the flag"),
                    description="The flag's code, as shown on the ticket (e.g. sensitive).",
                ),
                Argument(
                    "note",
                    ArgKind.TEXT,
                    required=False,
                    label=N_("the note"),
                    description="Why or how it was dealt with (optional).",
                ),
            ),
            intent=lambda ticket, args: intents.ClearFlag(
                ticket, args["code"], args.get("note") or ""
            ),
            api_summary="Clear a flag",
            api_description="Clear one of the ticket's active flags; 400 `no_flag` when it "
            "has no such flag.",
        ),
        ActionSpec(
            "cc",
            N_("!cc {ref} +address -address…"),
            N_(
                "Adds (+) or removes (-) participants: the addresses that get copies of the "
                "replies and may write to the ticket. The requestor cannot be removed."
            ),
            aliases={"ca": ("copia", "còpia")},
            arguments=(
                Argument(
                    "participants",
                    ArgKind.PARTICIPANTS,
                    label=N_("the addresses (+address to add, -address to remove)"),
                ),
            ),
            intent=lambda ticket, args: intents.ChangeParticipants(
                ticket, tuple(args.get("add", ())), tuple(args.get("remove", ()))
            ),
            api_summary="Participants",
            api_operation="participants",
            api_body="ParticipantsIn",
            api_body_doc="Participants to add and to remove (the requestor cannot be removed).",
            # Line breaks as the documented schema has always had them.
            api_description=(
                "Add and remove participants: the addresses that get copies of the replies "
                "and whose\nmail to the ticket counts as the member's (as `!cc`). Body "
                '`{"add": [...], "remove":\n[...]}`; a bad address answers 400 `bad_address` '
                "naming it."
            ),
        ),
        ActionSpec(
            "language",
            N_("!language {ref} ca|es|en"),
            N_(
                "Sets the language of the mails to the member: ca, es or en. A new ticket "
                "takes the language its first mail is written in."
            ),
            aliases={"ca": ("idioma",)},
            arguments=(
                Argument(
                    "language",
                    ArgKind.WORD,
                    label=N_("the language (ca, es or en)"),
                    description="ca, es or en (or the language's name: català, español…)",
                    suggest=_language_suggestions,
                ),
            ),
            intent=lambda ticket, args: intents.SetLanguage(ticket, args["language"]),
            api_summary="Set language",
            api_operation="set_language",
            api_body="LanguageIn",
            api_body_doc="The language the member is written to in.",
            api_description="Set the language of the mails to the member (ca, es or en); 400 "
            "`unknown_language` for another.",
        ),
        ActionSpec(
            "login",
            N_("!login"),
            N_("Sends you a single-use link to the support website by direct message."),
            aliases={"ca": ("entra",)},
            ticket=TicketUse.NONE,
            channels=CHAT_ONLY,
        ),
        ActionSpec(
            "help",
            N_("!help [command]"),
            N_("Shows this help or the usage of one command."),
            aliases={"ca": ("ajuda",)},
            arguments=(Argument("topic", ArgKind.TOPIC, required=False),),
            ticket=TicketUse.NONE,
            channels=CHAT_ONLY,
        ),
    )


def new_registry() -> ActionRegistry:
    """A registry with the core's actions, for one exobot (its plugins add theirs)."""
    return ActionRegistry(core_actions())


_DEFAULT: ActionRegistry | None = None


def default_registry() -> ActionRegistry:
    """The core's actions alone, shared by whatever is built without an exobot's own registry
    (tests, tools); plugins never register here."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = new_registry()
    return _DEFAULT
