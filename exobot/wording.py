"""Wording shared by every channel: what chat and the web say about tickets.

The `Message` pair (a plain body and an HTML body, every untrusted piece escaped), history
entries described, status words, durations, error and refusal sentences, and the reasons an
address is not usable. Chat (`exobot.matrix.render`) and the web build on it; nothing here
knows a channel.
"""

from __future__ import annotations

import html
import string
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Any

from babel.dates import format_timedelta

from exobot import i18n
from exobot.core.flags import ActiveFlag
from exobot.core.languages import LANGUAGE_NAMES, N_
from exobot.core.model import Entry, EntryKind, Status, Ticket
from exobot.core.people import IdOnly, People, imported_name
from exobot.core.references import format_reference
from exobot.core.text import mail_text, one_line
from exobot.i18n import language_or_default, say

if TYPE_CHECKING:
    from exobot.core.actions import ActionRegistry, ActionSpec

# How much of a mail the root message and announcements quote, and how much history does.
ROOT_LINES, ROOT_CHARS = 8, 600
HISTORY_LINES, HISTORY_CHARS = 3, 240
HISTORY_MAX_ENTRIES = 50
TITLE_CHARS = 200
SHORT_TITLE_CHARS = 80
NAME_CHARS = 80
ERROR_CHARS = 300
LIST_TITLE_CHARS = 80

_STATUS_ORDER = [status.value for status in Status]
_ALERT = "alert"

#: A ticket's status in words, by its value.
STATUS_WORDS: dict[str, str] = {
    "new": N_("new"),
    "open": N_("open"),
    "stalled": N_("stalled"),
    "resolved": N_("resolved"),
    "rejected": N_("rejected"),
}

#: Whose move it is (exobot.core.waiting.Waiting values), in words; NOBODY says nothing.
WAITING_WORDS: dict[str, str] = {
    "us": N_("waiting for us"),
    "member": N_("waiting for the member"),
}

#: Error and refusal sentences, by the service's or the parser's error code.
ERRORS: dict[str, str] = {
    "unknown_command": N_("I don't know the command !{command}. Type !help to see the commands."),
    # unknown_command with the nearest command word (`suggestion`) there is one.
    "unknown_command_suggestion": N_(
        "I don't know the command !{command}. Did you mean !{suggestion}? Type !help to see the commands."
    ),
    # unknown_command for the help's stand-in for a command's name (`!ordre`), typed as is.
    "unknown_command_placeholder": N_(
        "Put a command's name in place of !{command}. Type !help all to see them all."
    ),
    "missing_reference": N_(
        "!{command} needs a ticket reference (for example, {prefix}#3); inside a ticket's thread it can be left out."
    ),
    "bad_reference": N_(
        "“{text}” is not a valid ticket reference. Write it as {prefix}#310, {prefix} 310 or #310."
    ),
    # bad_reference of the prefix and a number with a wrong separator (`suport-3`).
    "bad_reference_suggestion": N_(
        "“{text}” is not a valid ticket reference. Did you mean {suggestion}?"
    ),
    "missing_argument": N_("!{command} is missing {argument}."),
    # A command typed in one ticket's thread that would mail another ticket's member.
    "other_thread_reply": N_(
        "You are in the thread of {here}: to reply to {there}, do it in its thread or in the room."
    ),
    "other_thread_resolve": N_(
        "You are in the thread of {here}: to resolve {there}, do it in its thread or in the room."
    ),
    "bad_status": N_("I don't know the status “{word}”. Possible statuses: {known}."),
    "bad_user": N_("“{text}” is not a Matrix user: write it as @name:server."),
    "bad_queue": N_("There is no queue “{queue}”. Queues: {known}."),
    "bad_address": N_("“{text}” is not a usable email address ({reason})."),
    "bad_cc_argument": N_(
        "“{text}”: write +address to add a participant or -address to remove one."
    ),
    "missing_participants": N_("Say which addresses to add or remove."),
    "too_many_participants": N_("At most {limit} addresses at a time."),
    "own_address_participant": N_(
        "{address} is the support address itself: it cannot be a participant."
    ),
    "requestor_stays": N_(
        "{address} is the requestor of {ticket}: it cannot be removed from the participants."
    ),
    "add_and_remove": N_("{address} cannot be added and removed at once."),
    "participants_unchanged": N_("The participants of {ticket} are already so: nothing to change."),
    "unexpected_argument": N_("!{command} takes nothing more, but got “{text}”."),
    "bad_list_argument": N_(
        "“{word}” is not a !list filter: use a queue, statuses ({statuses}), mine, unowned or all."
    ),
    "not_found": N_("There is no ticket {ticket}."),
    "not_operator": N_("Only the support team's operators can do this."),
    "already_unowned": N_("{ticket} already has no owner."),
    "already_owner": N_("{owner} already owns {ticket}."),
    "already_yours": N_("{ticket} is already yours: nothing to change."),
    "owner_not_operator": N_(
        "{owner} is not one of the support team's operators: a ticket can only be given to an operator."
    ),
    "missing_text": N_("The text is missing: write it after the ticket reference."),
    "missing_title": N_("The new title is missing."),
    "same_title": N_("{ticket} already has that title."),
    "unknown_queue": N_("There is no queue “{queue}”. Queues: {known}."),
    "same_queue": N_("{ticket} is already in queue {queue}."),
    "back_to_new": N_(
        "{ticket} cannot go back to new. To leave it without an owner: !untake {ticket}"
    ),
    "same_status": N_("{ticket} is already {status}."),
    "no_unverified": N_("{ticket} has no mail from an unverified sender to accept."),
    "no_flag": N_("{ticket} has no active flag “{flag}”."),
    "unknown_language": N_("There is no language “{lang}”: use one of {known}."),
    "same_language": N_("{ticket} is already mailed in {lang}."),
    "unusable_requestor": N_(
        "No mail can be written to the requestor of {ticket} ({address}): nothing was sent."
    ),
    "bad_search": N_(
        "The search holds control characters (such as a NUL character) that cannot be searched: remove them and try again."
    ),
    "bad_page": N_("There is no such page: the page number is too large (at most {max})."),
    "internal": N_(
        "Something went wrong on our side and it was logged. Please try again in a while and, if it keeps failing, tell the administrators."
    ),
    "unavailable": N_(
        "The helpdesk's database cannot be reached right now. Please try again in a minute."
    ),
    "missing_owner": N_("Say whom to give it to: a Matrix user, @name:server."),
    "missing_queue": N_("Say which queue to move it to."),
    "missing_requestor": N_("The requestor's email address is missing."),
    "missing_words": N_("Say what to search for."),
    "unknown_action": N_("I don't know the action “{action}”."),
    "no_original": N_(
        "{ticket} keeps no original text for that entry (nothing was masked in it, or it was purged)."
    ),
}

#: Why an address is not usable, by the address rule's reason code.
ADDRESS_REASONS: dict[str, str] = {
    "needs_smtputf8": N_(
        "it has non-ASCII characters before the @, and we do not send internationalised mail (SMTPUTF8)"
    ),
    "reserved_domain": N_("its domain is a reserved name that receives no mail"),
    "quoted": N_("a quoted part before the @ is not accepted"),
    "no_at": N_("it has no @"),
    "too_long": N_("it is too long"),
    "bad_domain": N_("the part after the @ is not a valid domain"),
    "bad_dots": N_("it has misplaced dots (two in a row, or at the start or end)"),
    "bad_local": N_("the part before the @ is empty or has characters that are not allowed"),
    "invalid": N_("it is not of the form name@domain"),
}


#: The flags exobot and its bundled plugins set, named for people by their code (a flag
#: whose code is not here is shown by its code).
FLAG_NAMES: dict[str, str] = {
    "sensitive": N_("sensitive data"),
    "non-member": N_("not a member"),
}


def flag_name(language: str, code: str) -> str:
    """A flag's name in `language`: its words when the code is known, else the code."""
    words = FLAG_NAMES.get(code)
    return say(language, words) if words is not None else code


#: The kinds of sensitive value (exobot.core.sensitive.SensitiveKind), named for people.
SENSITIVE_KINDS: dict[str, str] = {
    "iban": N_("IBAN"),
    "card": N_("card number"),
    "identity": N_("DNI/NIE"),
    "credential": N_("password"),
}


def sensitive_note(language: str, kinds: Iterable[str]) -> str:
    """The note of the sensitive-data flag: which kinds of value a mail brought (never the
    values), in `language`."""
    names = ", ".join(
        say(language, SENSITIVE_KINDS[k]) if k in SENSITIVE_KINDS else k for k in kinds
    )
    return say(language, "sensitive data in a mail: {kinds}", kinds=names)


@dataclass(frozen=True)
class Message:
    """A bot message: plain body and the HTML formatted body (every untrusted piece escaped);
    `mentions` are the Matrix ids the message deliberately pings (empty: nobody)."""

    body: str
    html: str
    mentions: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Rich:
    """A parameter that is already safe HTML, with its plain-text twin."""

    plain: str
    html: str


def _esc(value: object) -> str:
    """Escape untrusted text for HTML."""
    return html.escape(str(value), quote=True)


def format_duration(td: timedelta, language: str) -> str:
    """A duration as people say it, worded by Babel (CLDR): `25 min`, `4 h`, `3 dies` /
    `3 días` / `3 days`. Minutes below an hour, hours below two days, then days; under a
    minute, "less than 1 min"."""
    language = language_or_default(language)
    seconds = max(0, int(td.total_seconds()))
    if seconds < 60:
        return say(language, N_("less than {duration}"), duration=_unit(60, "minute", language))
    minutes = seconds // 60
    if minutes < 60:
        return _unit(minutes * 60, "minute", language)
    hours = minutes // 60
    if hours < 48:
        return _unit(hours * 3600, "hour", language)
    return _unit(hours // 24 * 86400, "day", language, length="long")


def format_ago(td: timedelta, language: str) -> str:
    """How long ago, worded by Babel: `fa 3 h` / `hace 3 h` / `3 hr. ago`; under a minute,
    `fa 1 min` (the same units as `format_duration`)."""
    language = language_or_default(language)
    seconds = max(60, int(td.total_seconds()))
    if seconds < 3600:
        unit, size, length = "minute", 60, "short"
    elif seconds < 48 * 3600:
        unit, size, length = "hour", 3600, "short"
    elif seconds < 60 * 86400:
        unit, size, length = "day", 86400, "long"
    elif seconds < 730 * 86400:  # an imported ticket's history: "20 months ago", not 612 days
        unit, size, length = "month", 30 * 86400, "long"
    else:
        unit, size, length = "year", 365 * 86400, "long"
    return format_timedelta(
        -timedelta(seconds=seconds // size * size),
        granularity=unit,
        threshold=10**9,  # never round up to a larger unit: 47 h stays 47 h
        add_direction=True,
        format=length,
        locale=language,
    )


def _unit(seconds: int, unit: str, language: str, length: str = "short") -> str:
    """`seconds` (a whole number of `unit`s) in that unit, in `language`'s words."""
    return format_timedelta(
        timedelta(seconds=seconds),
        granularity=unit,
        threshold=10**9,
        format=length,
        locale=language,
    )


def _format(template: str, params: Mapping[str, object]) -> tuple[str, str]:
    """Fill a catalog template twice: plain, and HTML with literals and values escaped."""
    plain: list[str] = []
    rich: list[str] = []
    for literal, name, spec, conversion in string.Formatter().parse(template):
        if literal:
            plain.append(literal)
            rich.append(html.escape(literal, quote=False))
        if name is None:
            continue
        value = params.get(name)
        if value is None:
            value = "?"
        if isinstance(value, _Rich):
            plain.append(value.plain)
            rich.append(value.html)
            continue
        if conversion == "r":
            value = repr(value)
        try:
            text = format(value, spec or "")
        except (TypeError, ValueError):
            text = str(value)
        plain.append(text)
        rich.append(_esc(text))
    return "".join(plain), "".join(rich)


@dataclass
class _Part:
    kind: str  # "line" | "block"
    plain: str
    html: str


@dataclass
class _Builder:
    """Assembles lines and blocks into a Message."""

    parts: list[_Part] = field(default_factory=list)

    def line(self, piece: tuple[str, str]) -> None:
        self.parts.append(_Part("line", piece[0], piece[1]))

    def quote(self, text: str) -> None:
        if not text:
            return
        lines = text.split("\n")
        plain = "\n".join(f"> {line}" if line else ">" for line in lines)
        rich = "<blockquote>" + "<br>".join(_esc(line) for line in lines) + "</blockquote>"
        self.parts.append(_Part("block", plain, rich))

    def items(self, pieces: Sequence[tuple[str, str]]) -> None:
        if not pieces:
            return
        plain = "\n".join(f"• {piece[0]}" for piece in pieces)
        rich = "<ul>" + "".join(f"<li>{piece[1]}</li>" for piece in pieces) + "</ul>"
        self.parts.append(_Part("block", plain, rich))

    def add_suffix(self, index: int, suffix: tuple[str, str]) -> None:
        """Append ` · suffix` to a line (before its closing colon, if it has one)."""
        part = self.parts[index]
        part.plain = _insert_suffix(part.plain, suffix[0])
        part.html = _insert_suffix(part.html, suffix[1])

    def extend(self, other: _Builder) -> None:
        self.parts.extend(other.parts)

    def __bool__(self) -> bool:
        return bool(self.parts)

    def build(self) -> Message:
        plain = "\n".join(part.plain for part in self.parts)
        rich: list[str] = []
        previous: _Part | None = None
        for part in self.parts:
            if previous is not None and previous.kind == "line" and part.kind == "line":
                rich.append("<br>")
            rich.append(part.html)
            previous = part
        return Message(plain, "".join(rich))


def _pill(user_id: str, name: str) -> str:
    """A mention pill of a Matrix user, labelled with their name (both escaped)."""
    if not user_id.startswith("@"):
        return _esc(name)
    return f'<a href="https://matrix.to/#/{_esc(user_id)}">{_esc(name)}</a>'


def _insert_suffix(text: str, suffix: str) -> str:
    if text.endswith(":"):
        return f"{text[:-1]} · {suffix}:"
    return f"{text} · {suffix}"


def _kind(entry: Entry) -> str:
    """The entry's kind as a plain string (works for kinds added to EntryKind later)."""
    kind = entry.kind
    return kind.value if isinstance(kind, EntryKind) else str(kind)


def _join(values: object) -> str:
    """A list parameter as `a, b`; anything else as its string."""
    if values is None:
        return ""
    if isinstance(values, str):
        return values
    if isinstance(values, Iterable):
        return ", ".join(str(value) for value in values)
    return str(values)


def _as_utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _since(now: datetime, moment: datetime) -> timedelta:
    return _as_utc(now) - _as_utc(moment)


@dataclass
class _Described:
    """One entry described: its headline, an optional quote and extra lines."""

    head: tuple[str, str]
    quote: str = ""
    extra: list[tuple[str, str]] = field(default_factory=list)
    notes: list[tuple[str, str]] = field(default_factory=list)  # also shown on the web
    mentions: list[str] = field(default_factory=list)  # Matrix ids a chat post pings


class Wording:
    """What every channel says about tickets, in one language: entries, statuses, durations,
    errors. `registry` names the commands an error refers to (default: the core's); `people`
    names the volunteers (default: their Matrix ids as they are); `flag_names`: a flag is
    told by its name in the language ("dades sensibles", the web's way), not by the code chat
    types in `!unflag` ("sensitive")."""

    def __init__(
        self,
        language: str = "ca",
        prefix: str = "suport",
        timezone: tzinfo = UTC,
        registry: ActionRegistry | None = None,
        people: People | None = None,
        *,
        flag_names: bool = False,
    ):
        self.language = language_or_default(language)
        self.prefix = prefix
        self.timezone = timezone
        self._registry = registry
        self.people: People = people or IdOnly()
        self.flag_names = flag_names

    # -- small helpers ---------------------------------------------------------------

    @property
    def registry(self) -> ActionRegistry:
        """The actions whose words this wording uses (the core's unless one was given)."""
        if self._registry is None:
            from exobot.core.actions import default_registry

            self._registry = default_registry()
        return self._registry

    def _t(self, msgid: str, **params: object) -> tuple[str, str]:
        """`msgid` translated and filled: (plain, HTML with every value escaped)."""
        return _format(i18n.translator(self.language).gettext(msgid), params)

    def _nt(self, singular: str, plural: str, n: int, **params: object) -> tuple[str, str]:
        """The plural form for `n`, translated and filled (`count` defaults to `n`)."""
        params.setdefault("count", n)
        return _format(i18n.translator(self.language).ngettext(singular, plural, n), params)

    def _say(self, msgid: str, **params: object) -> str:
        """`msgid` translated and filled, plain text."""
        return say(self.language, msgid, **params)

    def language_name(self, code: object) -> str:
        """A member's language by its name in the reader's language (“Spanish”), the code
        itself when it is not one of ours."""
        name = LANGUAGE_NAMES.get(str(code or ""))
        return self._say(name) if name else one_line(str(code or "?"), 16)

    def _ref(self, ticket: Ticket | int, *, bold: bool = False) -> _Rich:
        number = ticket if isinstance(ticket, int) else ticket.number
        text = format_reference(self.prefix, number)
        return _Rich(text, f"<b>{_esc(text)}</b>" if bold else _esc(text))

    def _status(self, status: object) -> str:
        value = status.value if isinstance(status, Status) else str(status or "")
        word = STATUS_WORDS.get(value)
        return self._say(word) if word is not None else value

    def _duration(self, td: timedelta) -> str:
        return format_duration(td, self.language)

    def _time(self, moment: datetime) -> str:
        return _as_utc(moment).astimezone(self.timezone).strftime("%Y-%m-%d %H:%M")

    def waiting(self, waiting: object) -> str:
        """Whose move it is, in words ("waiting for us"); empty for a closed ticket."""
        word = WAITING_WORDS.get(str(getattr(waiting, "value", waiting) or ""))
        return self._say(word) if word is not None else ""

    def _owner(self, owner: str | None) -> str:
        return self.person(owner) if owner else say(self.language, "nobody")

    def person(self, user_id: str | None) -> str:
        """How a reader sees a volunteer: their display name ("Anna Puig"); an imported
        helpdesk's unmapped staff as "nuria (Request Tracker)"; any other id that is no Matrix
        id (an address, "exobot") as it is."""
        if not user_id:
            return say(self.language, "(unknown)")
        if not user_id.startswith("@"):
            return one_line(imported_name(user_id) or user_id, NAME_CHARS)
        return one_line(self.people.name(user_id), NAME_CHARS) or user_id

    def person_with_id(self, user_id: str | None) -> str:
        """A volunteer's display name with their id in brackets, "Anna Puig (@anna:x.org)",
        where the id itself matters (`!show`); the id alone when no name is known."""
        name = self.person(user_id)
        if user_id and name != user_id:
            return f"{name} ({user_id})"
        return name

    def _title(self, title: str, limit: int = TITLE_CHARS) -> str:
        return one_line(title, limit) or say(self.language, "(no subject)")

    def _sender(self, entry: Entry) -> str:
        data = entry.data or {}
        address = one_line(str(data.get("from") or entry.actor or ""), NAME_CHARS)
        name = one_line(str(data.get("from_name") or ""), NAME_CHARS)
        if name and address and name.lower() != address.lower():
            return f"{name} <{address}>"
        return address or name or say(self.language, "(unknown)")

    def _attachments(self, entry: Entry) -> tuple[str, str] | None:
        attachments = (entry.data or {}).get("attachments") or []
        if not attachments:
            return None
        names = []
        for attachment in attachments:
            name = attachment.get("filename") if isinstance(attachment, Mapping) else None
            names.append(one_line(str(name or "?"), NAME_CHARS))
        count = len(attachments)
        return self._nt(
            "📎 {count} attachment: {names}",
            "📎 {count} attachments: {names}",
            count,
            names=one_line(", ".join(names), 300),
        )

    def flag_line(self, flag: ActiveFlag) -> tuple[str, str]:
        """One active flag as a line: "🚩 " and its note (its code when it has none)."""
        text = one_line(mail_text(flag.note or ""), ERROR_CHARS) or one_line(flag.code, TITLE_CHARS)
        return self._t("🚩 {flag}", flag=text)

    def _header(self, ticket: Ticket) -> tuple[str, str]:
        ref = self._ref(ticket, bold=True)
        title = self._title(ticket.title)
        return f"{ref.plain} · {title}", f"{ref.html} · {_esc(title)}"

    # -- describing entries ----------------------------------------------------------

    def _describe(
        self,
        ticket: Ticket,
        entry: Entry,
        *,
        concise: bool,
        lines: int,
        chars: int,
        mention: bool = False,
    ) -> _Described:
        """Headline, quote and extra lines of one history entry; with `mention`, the one
        person an entry is addressed to (a former owner) is a pill and in `mentions`."""
        kind = _kind(entry)
        data = entry.data or {}
        actor = self.person(entry.actor)
        ref = self._ref(ticket)
        if kind == EntryKind.CREATED:
            return _Described(
                self._t(
                    "Ticket created in queue {queue} for {requestor}",
                    queue=data.get("queue") or ticket.queue,
                    requestor=data.get("requestor") or ticket.requestor,
                )
            )
        if kind == EntryKind.OWNER:
            new_owner = data.get("to")
            if not new_owner:
                return _Described(
                    self._t("{actor} left {ticket} without an owner", actor=actor, ticket=ref)
                )
            former = data.get("from")
            if new_owner == entry.actor and former and former != new_owner:
                # Taken from someone: said so, and in chat that one person is pinged.
                name = self.person(former)
                shown = _Rich(name, _pill(former, name)) if mention else name
                return _Described(
                    self._t(
                        "{actor} took {ticket} from {former}",
                        actor=actor,
                        ticket=ref,
                        former=shown,
                    ),
                    mentions=[former] if mention and former.startswith("@") else [],
                )
            if new_owner == entry.actor:
                return _Described(self._t("{actor} took {ticket}", actor=actor, ticket=ref))
            return _Described(
                self._t(
                    "{actor} assigned {ticket} to {owner}",
                    actor=actor,
                    ticket=ref,
                    owner=self.person(new_owner),
                )
            )
        if kind == EntryKind.STATUS:
            return _Described(
                self._t(
                    "{actor} changed the status of {ticket}: {from} → {to}",
                    actor=actor,
                    ticket=ref,
                    **{"from": self._status(data.get("from")), "to": self._status(data.get("to"))},
                )
            )
        if kind == EntryKind.TITLE:
            old = one_line(str(data.get("from") or ""), SHORT_TITLE_CHARS)
            new = one_line(str(data.get("to") or ""), SHORT_TITLE_CHARS)
            return _Described(
                self._t(
                    "{actor} renamed {ticket}: “{from}” → “{to}”",
                    actor=actor,
                    ticket=ref,
                    **{"from": old, "to": new},
                )
            )
        if kind == EntryKind.QUEUE:
            return _Described(
                self._t(
                    "{actor} moved {ticket} from queue {from} to queue {to}",
                    actor=actor,
                    ticket=ref,
                    **{"from": data.get("from") or "?", "to": data.get("to") or "?"},
                )
            )
        if kind == EntryKind.LANGUAGE:
            return _Described(
                self._t(
                    "{actor} set the language of the mails of {ticket} to {lang}",
                    actor=actor,
                    ticket=ref,
                    lang=self.language_name(data.get("to")),
                )
            )
        if kind == EntryKind.COMMENT:
            if concise:
                return _Described(self._t("Internal comment saved"))
            return _Described(
                self._t("💬 {actor} added an internal comment:", actor=actor),
                mail_text(entry.body, max_lines=lines, max_chars=chars),
            )
        if kind == EntryKind.MAIL_OUT:
            to = _join(data.get("to")) or ticket.requestor
            template = data.get("template")
            if template == "ack":
                return _Described(self._t("Acknowledgement sent to {to}", to=to))
            if template == "resolved":
                return _Described(self._t("Resolution notice sent to {to}", to=to))
            if data.get("notice"):
                if concise:
                    return _Described(self._t("Notice sent to {to}", to=to))
                return _Described(
                    self._t("📣 {actor} sent a notice to {to}:", actor=actor, to=to),
                    mail_text(entry.body, max_lines=lines, max_chars=chars),
                )
            if template == "reply" or entry.body:
                if concise:
                    return _Described(self._t("Reply sent to {to}", to=to))
                return _Described(
                    self._t("✉️ {actor} replied to {to}:", actor=actor, to=to),
                    mail_text(entry.body, max_lines=lines, max_chars=chars),
                )
            return _Described(self._t("Mail sent to {to}", to=to))
        if kind in (EntryKind.MAIL_IN, EntryKind.AUTOMATIC_IN, EntryKind.UNVERIFIED_IN):
            key = {
                EntryKind.MAIL_IN.value: N_("📨 {sender} wrote:"),
                EntryKind.AUTOMATIC_IN.value: N_(
                    "🤖 Automatic reply from {sender} (status unchanged):"
                ),
                EntryKind.UNVERIFIED_IN.value: N_(
                    "⚠️ Mail from an unverified sender ({sender}): it has no effect until an operator accepts it with !accept {ticket}"
                ),
            }[kind]
            described = _Described(
                self._t(key, sender=self._sender(entry), ticket=ref),
                mail_text(entry.body, max_lines=lines, max_chars=chars),
            )
            if data.get("body_truncated"):
                # The parser kept only the start of a huge text; say so wherever it shows.
                note = self._t("(Message cut short: the whole mail is kept as the original.)")
                described.extra.append(note)
                described.notes.append(note)
            attachments = self._attachments(entry)
            if attachments:
                described.extra.append(attachments)
            left_out = data.get("cc_not_added") or []
            if left_out:
                note = self._t(
                    "Cc addresses not made participants: {addresses} (to add one: !cc {ticket} +address)",
                    addresses=one_line(_join(left_out), 300),
                    ticket=ref,
                )
                described.extra.append(note)
                described.notes.append(note)
            return described
        if kind == EntryKind.BOUNCE:
            recipients = _join(data.get("recipients")) or self._sender(entry)
            status = data.get("status")
            details = f" ({one_line(str(status), 80)})" if status else ""
            return _Described(
                self._t(
                    "⚠️ One of our mails bounced: {recipients}{details}",
                    recipients=one_line(recipients, 300),
                    details=details,
                ),
                mail_text(entry.body, max_lines=min(lines, 4), max_chars=chars),
            )
        if kind == EntryKind.ACCEPTED:
            sender = one_line(str(data.get("from") or ""), NAME_CHARS)
            sender = sender or say(self.language, "(unknown)")
            left_out = data.get("cc_not_added") or []
            if left_out:
                addresses = one_line(_join(left_out), 300)
                return _Described(
                    self._t(
                        "{actor} accepted the mail from {sender} as correspondence. Its Cc addresses were not made participants: {addresses} (to add one: !cc {ticket} +address)",
                        actor=actor,
                        sender=sender,
                        addresses=addresses,
                        ticket=ref,
                    )
                )
            return _Described(
                self._t(
                    "{actor} accepted the mail from {sender} as correspondence",
                    actor=actor,
                    sender=sender,
                )
            )
        if kind == EntryKind.PARTICIPANTS:
            added = one_line(_join(data.get("added") or []), 300)
            removed = one_line(_join(data.get("removed") or []), 300)
            if added and removed:
                key = N_(
                    "{actor} added {added} to the participants of {ticket} and removed {removed}"
                )
            elif added:
                key = N_("{actor} added {added} to the participants of {ticket}")
            else:
                key = N_("{actor} removed {removed} from the participants of {ticket}")
            return _Described(self._t(key, actor=actor, ticket=ref, added=added, removed=removed))
        if kind == EntryKind.DELIVERY_FAILED and data.get("skipped"):
            return _Described(
                self._t(
                    "⚠️ {recipient} got no copy of the reply: no mail can be written to that address ({error}). To remove it: !cc {ticket} -{recipient}",
                    recipient=one_line(str(data.get("recipient") or "?"), NAME_CHARS),
                    error=one_line(mail_text(entry.body), ERROR_CHARS).rstrip(".") or "?",
                    ticket=ref,
                )
            )
        if kind == EntryKind.DELIVERY_FAILED and data.get("redaction"):
            return _Described(
                self._t(
                    "⚠️ Posts about {ticket} could not be removed from the chat (a privacy erasure): {error}. A room moderator can remove them by hand.",
                    ticket=ref,
                    error=one_line(mail_text(entry.body), ERROR_CHARS).rstrip(".") or "?",
                )
            )
        if kind == EntryKind.DELIVERY_FAILED and data.get("channel") == "chat":
            return _Described(
                self._t(
                    "⚠️ A post about {ticket} could not be sent to the chat: {error}",
                    ticket=ref,
                    error=one_line(mail_text(entry.body), ERROR_CHARS) or "?",
                )
            )
        if kind == EntryKind.DELIVERY_RETRIED:
            if data.get("redaction"):
                key = N_(
                    "🔁 Removing the posts about {ticket} from the chat (a privacy erasure) is being tried again, at an administrator's request"
                )
            elif data.get("channel") == "chat":
                key = N_(
                    "🔁 The post about {ticket} that could not be sent to the chat is being sent again, at an administrator's request"
                )
            else:
                key = N_(
                    "🔁 The mail that could not be delivered is being sent again, at an administrator's request"
                )
            return _Described(self._t(key, ticket=ref))
        if kind == EntryKind.DELIVERY_FAILED:
            return _Described(
                self._t(
                    "⚠️ Could not deliver the mail to {recipient}: {error}",
                    recipient=data.get("recipient") or "?",
                    error=one_line(mail_text(entry.body), ERROR_CHARS) or "?",
                )
            )
        if kind == _ALERT:
            reason = data.get("reason")
            key = (
                N_("⏰ Reminder: stalled ticket")
                if reason == "stalled"
                else N_("⚠️ Alert: new ticket nobody has taken")
            )
            return _Described(self._t(key))
        if kind == EntryKind.PURGE:
            return _Described(
                self._t(
                    "🧹 Texts purged by the retention policy: the mails, comments and attachments of {ticket} (its history of changes stays)",
                    ticket=ref,
                )
            )
        if kind == EntryKind.REVEAL:  # never the text: only who saw which entry's original
            return _Described(
                self._t(
                    "👁 {actor} revealed the original (unmasked) text of entry {entry}",
                    actor=actor,
                    entry=one_line(str(data.get("entry") or "?"), 20),
                )
            )
        if kind == "erase":  # `exobot privacy erase`: never who
            return _Described(
                self._t(
                    "🗑️ A person's data was erased from {ticket} at their request (data protection)",
                    ticket=ref,
                )
            )
        if kind == EntryKind.FLAG:  # set by a plugin on a new mail, or cleared
            code = str(data.get("code") or "?")
            if self.flag_names:  # "sensitive" is "dades sensibles"
                code = flag_name(self.language, code)
            code = one_line(code, TITLE_CHARS)
            note = one_line(mail_text(entry.body or ""), ERROR_CHARS)
            if data.get("cleared"):
                if note:
                    return _Described(
                        self._t(
                            "🏳️ Flag {code} cleared by {actor}: {note}",
                            code=code,
                            actor=actor,
                            note=note,
                        )
                    )
                return _Described(
                    self._t("🏳️ Flag {code} cleared by {actor}", code=code, actor=actor)
                )
            if note:
                return _Described(self._t("🚩 Flag {code}: {note}", code=code, note=note))
            return _Described(self._t("🚩 Flag {code}", code=code))
        return _Described(self._t("{actor}: {kind}", actor=actor, kind=kind))

    def entry_line(self, ticket: Ticket, entry: Entry) -> tuple[str, str]:
        """One history entry whole, for the web: its plain headline and its full text (mail
        text through `mail_text`; empty when the entry has none). Both are plain text: the
        caller escapes them."""
        described = self._describe(ticket, entry, concise=False, lines=10**6, chars=10**7)
        if (entry.data or {}).get("purged") and not described.quote:
            # In place of the text the retention policy purged (see the PURGE entry).
            return described.head[0], say(self.language, "(Text purged by the retention policy.)")
        return described.head[0], described.quote

    def entry_notes(self, ticket: Ticket, entry: Entry) -> list[str]:
        """Notes about one history entry for the web (plain text), e.g. the Cc addresses of a
        mail that were not made participants."""
        described = self._describe(ticket, entry, concise=False, lines=1, chars=1)
        return [plain for plain, _html in described.notes]

    # -- commands named in errors ----------------------------------------------------

    def usage(self, spec: ActionSpec) -> str:
        """How to type the action in this language (`!agafa suport#N`)."""
        ref = f"{self.prefix}#N"
        return say(self.language, spec.usage, domain=spec.domain, ref=ref)

    def command_word(self, spec: ActionSpec) -> str:
        """The word this language uses for a command (`agafa` in Catalan, `take` otherwise)."""
        usage = self.usage(spec)
        return usage.split()[0].lstrip("!") if usage.strip() else spec.name

    def _suggested_word(self, suggestion: str) -> str:
        """A suggested command in this language's word when it is a canonical name
        (`give` → `dona` in Catalan); a word of one language (`agafa`) stays as it is."""
        spec = self.registry.find(suggestion)
        if spec is None or spec.name != suggestion:
            return suggestion
        return self.command_word(spec)

    # -- errors and refusals ---------------------------------------------------------

    def error(self, code: str, params: Mapping[str, object]) -> Message:
        """A command or service error, said politely with what to do next."""
        values: dict[str, Any] = {key: _join(value) for key, value in (params or {}).items()}
        values.setdefault("prefix", self.prefix)
        for key in ("text", "word", "queue", "command", "owner", "address"):
            if key in values:
                values[key] = one_line(values[key], SHORT_TITLE_CHARS)
        if str(values.get("owner", "")).startswith("@"):
            values["owner"] = self.person_with_id(values["owner"])
        if code == "bad_address" and "text" not in values:
            values["text"] = values.get("address", "?")
        if code == "bad_address":
            # Say why in the reader's language; the English reason only when the rule's
            # code is unknown to the catalogs.
            reason = ADDRESS_REASONS.get(str(values.pop("reason_code", "")))
            values["reason"] = (
                self._say(reason)
                if reason is not None
                else str(values.get("reason") or "?").rstrip(".")
            )
        if code in ("same_status",) and "status" in values:
            values["status"] = self._status(values["status"])
        if code == "same_language" and "lang" in values:
            values["lang"] = self.language_name(values["lang"])
        if code == "unknown_language" and "lang" in values:
            values["lang"] = one_line(values["lang"], SHORT_TITLE_CHARS)
        command = str(values.get("command", ""))
        spec = self.registry.find(command) if command else None
        if spec is not None and spec.name != command:
            spec = None  # only a canonical name is translated (an alias was typed as is)
        if spec is not None and code != "unknown_command":
            values["command"] = self.command_word(spec)
        if code == "unknown_command" and values.get("suggestion"):
            values["suggestion"] = self._suggested_word(str(values["suggestion"]))
        if code == "bad_list_argument":
            values["statuses"] = ", ".join(self._status(status) for status in Status)
        if code == "missing_argument":
            # The parser names the missing argument by its declared label (a message id in
            # the action's domain); nothing else keeps a list of arguments.
            argument = str(values.get("argument", ""))
            label = str(values.pop("label", "") or "")
            if label:
                domain = spec.domain if spec is not None else i18n.CORE_DOMAIN
                values["argument"] = say(self.language, label, domain=domain)
            else:
                values["argument"] = say(
                    self.language, "an argument ({argument})", argument=argument
                )
        sentence = ERRORS.get(code)
        if code == "unknown_command" and (params or {}).get("placeholder"):
            sentence = ERRORS["unknown_command_placeholder"]
        elif values.get("suggestion") and f"{code}_suggestion" in ERRORS:
            sentence = ERRORS[f"{code}_suggestion"]
        if sentence is None:
            return Message(*self._t("That could not be done ({code}).", code=code))
        b = _Builder()
        b.line(self._t(sentence, **values))
        if (
            code in ("missing_argument", "unexpected_argument", "missing_reference")
            and spec is not None
        ):
            usage = self.usage(spec)
            usage_line = self._t(
                "Usage: {usage}", usage=_Rich(usage, f"<code>{_esc(usage)}</code>")
            )
            b.line(usage_line)
        return b.build()
