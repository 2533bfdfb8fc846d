"""Rendering: what the bot posts in Matrix, as a plain body and an HTML body.

Every piece of text that came from mail or users is escaped in the HTML; mail bodies go
through `exobot.core.text.mail_text`. No pills and no links to users: nothing here pings.
"""

from __future__ import annotations

import html
import string
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from exobot import messages
from exobot.core.model import Entry, EntryKind, Status, Ticket
from exobot.core.references import format_reference
from exobot.core.text import mail_text, one_line
from exobot.messages import language_or_default

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


@dataclass(frozen=True)
class Message:
    """A bot message: plain body and the HTML formatted body (every untrusted piece escaped)."""

    body: str
    html: str


@dataclass(frozen=True)
class _Rich:
    """A parameter that is already safe HTML, with its plain-text twin."""

    plain: str
    html: str


def _esc(value: object) -> str:
    """Escape untrusted text for HTML."""
    return html.escape(str(value), quote=True)


def _plural(count: int) -> str:
    return "one" if count == 1 else "other"


def format_duration(td: timedelta, language: str) -> str:
    """A duration as people say it: `25 min`, `4 h`, `3 dies` / `3 días` / `3 days`."""
    seconds = max(0, int(td.total_seconds()))
    if seconds < 60:
        return messages.say(language, "duration.now")
    minutes = seconds // 60
    if minutes < 60:
        return messages.say(language, "duration.minutes", n=minutes)
    hours = minutes // 60
    if hours < 48:
        return messages.say(language, "duration.hours", n=hours)
    days = hours // 24
    return messages.say(language, f"duration.days.{_plural(days)}", n=days)


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


class Renderer:
    """Renders everything the bot says in Matrix, in one language."""

    def __init__(self, language: str = "ca", prefix: str = "suport", timezone: tzinfo = UTC):
        self.language = language_or_default(language)
        self.prefix = prefix
        self.timezone = timezone

    # -- small helpers ---------------------------------------------------------------

    def _t(self, key: str, **params: object) -> tuple[str, str]:
        return _format(messages.template(self.language, key), params)

    def _has(self, key: str) -> bool:
        return key in messages.MESSAGES[self.language]

    def _ref(self, ticket: Ticket | int, *, bold: bool = False) -> _Rich:
        number = ticket if isinstance(ticket, int) else ticket.number
        text = format_reference(self.prefix, number)
        return _Rich(text, f"<b>{_esc(text)}</b>" if bold else _esc(text))

    def _status(self, status: object) -> str:
        value = status.value if isinstance(status, Status) else str(status or "")
        key = f"status.{value}"
        return messages.say(self.language, key) if self._has(key) else value

    def _duration(self, td: timedelta) -> str:
        return format_duration(td, self.language)

    def _time(self, moment: datetime) -> str:
        return _as_utc(moment).astimezone(self.timezone).strftime("%Y-%m-%d %H:%M")

    def _owner(self, owner: str | None) -> str:
        return owner if owner else messages.say(self.language, "nobody")

    def _title(self, title: str, limit: int = TITLE_CHARS) -> str:
        return one_line(title, limit) or messages.say(self.language, "no_subject")

    def _sender(self, entry: Entry) -> str:
        data = entry.data or {}
        address = one_line(str(data.get("from") or entry.actor or ""), NAME_CHARS)
        name = one_line(str(data.get("from_name") or ""), NAME_CHARS)
        if name and address and name.lower() != address.lower():
            return f"{name} <{address}>"
        return address or name or messages.say(self.language, "unknown")

    def _attachments(self, entry: Entry) -> tuple[str, str] | None:
        attachments = (entry.data or {}).get("attachments") or []
        if not attachments:
            return None
        names = []
        for attachment in attachments:
            name = attachment.get("filename") if isinstance(attachment, Mapping) else None
            names.append(one_line(str(name or "?"), NAME_CHARS))
        count = len(attachments)
        return self._t(
            f"attachments.{_plural(count)}", count=count, names=one_line(", ".join(names), 300)
        )

    def _header(self, ticket: Ticket) -> tuple[str, str]:
        ref = self._ref(ticket, bold=True)
        title = self._title(ticket.title)
        return f"{ref.plain} · {title}", f"{ref.html} · {_esc(title)}"

    # -- describing entries ----------------------------------------------------------

    def _describe(
        self, ticket: Ticket, entry: Entry, *, concise: bool, lines: int, chars: int
    ) -> _Described:
        """Headline, quote and extra lines of one history entry."""
        kind = _kind(entry)
        data = entry.data or {}
        actor = entry.actor or messages.say(self.language, "unknown")
        ref = self._ref(ticket)
        if kind == EntryKind.CREATED:
            return _Described(
                self._t(
                    "entry.created",
                    queue=data.get("queue") or ticket.queue,
                    requestor=data.get("requestor") or ticket.requestor,
                )
            )
        if kind == EntryKind.OWNER:
            new_owner = data.get("to")
            if not new_owner:
                return _Described(self._t("entry.untake", actor=actor, ticket=ref))
            if new_owner == entry.actor:
                return _Described(self._t("entry.take", actor=actor, ticket=ref))
            return _Described(self._t("entry.give", actor=actor, ticket=ref, owner=new_owner))
        if kind == EntryKind.STATUS:
            return _Described(
                self._t(
                    "entry.status",
                    actor=actor,
                    ticket=ref,
                    **{"from": self._status(data.get("from")), "to": self._status(data.get("to"))},
                )
            )
        if kind == EntryKind.TITLE:
            old = one_line(str(data.get("from") or ""), SHORT_TITLE_CHARS)
            new = one_line(str(data.get("to") or ""), SHORT_TITLE_CHARS)
            return _Described(
                self._t("entry.title", actor=actor, ticket=ref, **{"from": old, "to": new})
            )
        if kind == EntryKind.QUEUE:
            return _Described(
                self._t(
                    "entry.queue",
                    actor=actor,
                    ticket=ref,
                    **{"from": data.get("from") or "?", "to": data.get("to") or "?"},
                )
            )
        if kind == EntryKind.COMMENT:
            if concise:
                return _Described(self._t("entry.comment_saved"))
            return _Described(
                self._t("entry.comment", actor=actor),
                mail_text(entry.body, max_lines=lines, max_chars=chars),
            )
        if kind == EntryKind.MAIL_OUT:
            to = _join(data.get("to")) or ticket.requestor
            template = data.get("template")
            if template == "ack":
                return _Described(self._t("entry.ack", to=to))
            if template == "resolved":
                return _Described(self._t("entry.resolved_notice", to=to))
            if template == "reply" or entry.body:
                if concise:
                    return _Described(self._t("entry.reply_sent", to=to))
                return _Described(
                    self._t("entry.reply", actor=actor, to=to),
                    mail_text(entry.body, max_lines=lines, max_chars=chars),
                )
            return _Described(self._t("entry.mail_out", to=to))
        if kind in (EntryKind.MAIL_IN, EntryKind.AUTOMATIC_IN, EntryKind.UNVERIFIED_IN):
            key = {
                EntryKind.MAIL_IN.value: "entry.mail_in",
                EntryKind.AUTOMATIC_IN.value: "entry.automatic_in",
                EntryKind.UNVERIFIED_IN.value: "entry.unverified_in",
            }[kind]
            described = _Described(
                self._t(key, sender=self._sender(entry), ticket=ref),
                mail_text(entry.body, max_lines=lines, max_chars=chars),
            )
            if data.get("body_truncated"):
                # The parser kept only the start of a huge text; say so wherever it shows.
                note = self._t("entry.body_truncated")
                described.extra.append(note)
                described.notes.append(note)
            attachments = self._attachments(entry)
            if attachments:
                described.extra.append(attachments)
            left_out = data.get("cc_not_added") or []
            if left_out:
                note = self._t(
                    "entry.cc_not_added", addresses=one_line(_join(left_out), 300), ticket=ref
                )
                described.extra.append(note)
                described.notes.append(note)
            return described
        if kind == EntryKind.BOUNCE:
            recipients = _join(data.get("recipients")) or self._sender(entry)
            status = data.get("status")
            return _Described(
                self._t(
                    "entry.bounce",
                    recipients=one_line(recipients, 300),
                    details=f" ({one_line(str(status), 80)})" if status else "",
                ),
                mail_text(entry.body, max_lines=min(lines, 4), max_chars=chars),
            )
        if kind == EntryKind.ACCEPTED:
            sender = one_line(str(data.get("from") or ""), NAME_CHARS)
            sender = sender or messages.say(self.language, "unknown")
            left_out = data.get("cc_not_added") or []
            if left_out:
                addresses = one_line(_join(left_out), 300)
                return _Described(
                    self._t(
                        "entry.accepted_cc",
                        actor=actor,
                        sender=sender,
                        addresses=addresses,
                        ticket=ref,
                    )
                )
            return _Described(self._t("entry.accepted", actor=actor, sender=sender))
        if kind == EntryKind.PARTICIPANTS:
            added = one_line(_join(data.get("added") or []), 300)
            removed = one_line(_join(data.get("removed") or []), 300)
            key = "entry.participants_" + (
                "both" if added and removed else "added" if added else "removed"
            )
            return _Described(
                self._t(key, actor=actor, ticket=ref, added=added, removed=removed)
            )
        if kind == EntryKind.DELIVERY_FAILED and data.get("skipped"):
            return _Described(
                self._t(
                    "entry.cc_skipped",
                    recipient=one_line(str(data.get("recipient") or "?"), NAME_CHARS),
                    error=one_line(mail_text(entry.body), ERROR_CHARS).rstrip(".") or "?",
                    ticket=ref,
                )
            )
        if kind == EntryKind.DELIVERY_FAILED:
            return _Described(
                self._t(
                    "entry.delivery_failed",
                    recipient=data.get("recipient") or "?",
                    error=one_line(mail_text(entry.body), ERROR_CHARS) or "?",
                )
            )
        if kind == _ALERT:
            reason = data.get("reason")
            key = "entry.alert_stalled" if reason == "stalled" else "entry.alert_new"
            return _Described(self._t(key))
        return _Described(self._t("entry.other", actor=actor, kind=kind))

    def entry_line(self, ticket: Ticket, entry: Entry) -> tuple[str, str]:
        """One history entry whole, for the web: its plain headline and its full text (mail
        text through `mail_text`; empty when the entry has none). Both are plain text: the
        caller escapes them."""
        described = self._describe(ticket, entry, concise=False, lines=10**6, chars=10**7)
        return described.head[0], described.quote

    def entry_notes(self, ticket: Ticket, entry: Entry) -> list[str]:
        """Notes about one history entry for the web (plain text), e.g. the Cc addresses of a
        mail that were not made participants."""
        described = self._describe(ticket, entry, concise=False, lines=1, chars=1)
        return [plain for plain, _html in described.notes]

    # -- thread messages -------------------------------------------------------------

    def root(self, ticket: Ticket, first: Entry | None) -> Message:
        """The root message of a ticket's thread: metadata and the first lines of its text."""
        b = _Builder()
        b.line(self._header(ticket))
        meta = [
            self._t("requestor", requestor=ticket.requestor),
            self._t("queue", queue=ticket.queue),
            self._t("status", status=self._status(ticket.status)),
        ]
        if ticket.owner:
            meta.append(self._t("owner", owner=ticket.owner))
        b.line((" · ".join(p for p, _ in meta), " · ".join(h for _, h in meta)))
        if first is not None:
            if _kind(first) == EntryKind.COMMENT:
                b.line(self._t("root.comment", actor=first.actor))
            b.quote(mail_text(first.body, max_lines=ROOT_LINES, max_chars=ROOT_CHARS))
            if (first.data or {}).get("body_truncated"):
                b.line(self._t("entry.body_truncated"))
            attachments = self._attachments(first)
            if attachments:
                b.line(attachments)
        return b.build()

    def announcement(
        self, ticket: Ticket, entries: Sequence[Entry], *, concise: bool = False
    ) -> Message | None:
        """One post for the entries one change produced, or None when the root covers them."""
        created = any(_kind(entry) == EntryKind.CREATED for entry in entries)
        first_covered = False
        main: list[Entry] = []
        suffixes: list[Entry] = []
        for entry in entries:
            kind = _kind(entry)
            if kind == EntryKind.CREATED:
                continue
            if kind == EntryKind.MAIL_OUT and (entry.data or {}).get("template") == "ack":
                continue
            if created and not first_covered and kind in (EntryKind.MAIL_IN, EntryKind.COMMENT):
                first_covered = True  # shown as the first lines of the root message
                continue
            is_notice = (
                kind == EntryKind.MAIL_OUT and (entry.data or {}).get("template") == "resolved"
            )
            if kind == EntryKind.STATUS or is_notice:
                suffixes.append(entry)
            else:
                main.append(entry)
        if not main and suffixes:
            main.append(suffixes.pop(0))
        if not main:
            return None

        b = _Builder()
        first_line: int | None = None
        for entry in main:
            if _kind(entry) == _ALERT:
                alert = self._alert_builder(ticket, entry)
                if first_line is None:
                    first_line = len(b.parts)
                b.extend(alert)
                continue
            described = self._describe(
                ticket, entry, concise=concise, lines=ROOT_LINES, chars=ROOT_CHARS
            )
            if first_line is None:
                first_line = len(b.parts)
            b.line(described.head)
            b.quote(described.quote)
            for extra in described.extra:
                b.line(extra)
        assert first_line is not None
        for entry in suffixes:
            data = entry.data or {}
            if _kind(entry) == EntryKind.STATUS:
                suffix = self._t(
                    "entry.status_suffix",
                    **{"from": self._status(data.get("from")), "to": self._status(data.get("to"))},
                )
            else:
                suffix = self._t(
                    "entry.resolved_notice_suffix", to=_join(data.get("to")) or ticket.requestor
                )
            b.add_suffix(first_line, suffix)
        return b.build()

    def _alert_builder(self, ticket: Ticket, entry: Entry) -> _Builder:
        """An ALERT entry rendered as the alert or reminder it stands for."""
        data = entry.data or {}
        b = _Builder()
        if data.get("reason") == "stalled":
            b.line(self._stalled_reminder(ticket, _since(entry.created_at, ticket.updated_at)))
        else:
            b.line(self._alert(ticket, _since(entry.created_at, ticket.created_at)))
        return b

    def moved_pointer(self, ticket: Ticket, old_queue: str, new_queue: str) -> Message:
        """Posted in the old thread: the ticket moved to another queue and room."""
        return Message(*self._t("moved", ticket=self._ref(ticket), old=old_queue, new=new_queue))

    def opened(self, ticket: Ticket) -> Message:
        """The answer to `!new` typed away from the new ticket's room."""
        return Message(
            *self._t(
                "opened",
                ticket=self._ref(ticket),
                title=self._title(ticket.title),
                queue=ticket.queue,
            )
        )

    # -- alerts and reminders --------------------------------------------------------

    def _alert(self, ticket: Ticket, waited: timedelta) -> tuple[str, str]:
        return self._t("alert", ticket=self._ref(ticket), duration=self._duration(waited))

    def _stalled_reminder(self, ticket: Ticket, stalled_for: timedelta) -> tuple[str, str]:
        return self._t(
            "stalled_reminder", ticket=self._ref(ticket), duration=self._duration(stalled_for)
        )

    def alert(self, ticket: Ticket, waited: timedelta) -> Message:
        """In the ticket's thread: still new after `waited`, nobody took it."""
        return Message(*self._alert(ticket, waited))

    def alert_line(self, ticket: Ticket, waited: timedelta) -> Message:
        """A line in the room's main timeline about a ticket waiting too long."""
        return Message(
            *self._t(
                "alert_line",
                ticket=self._ref(ticket),
                title=self._title(ticket.title, SHORT_TITLE_CHARS),
                duration=self._duration(waited),
                status=self._status(ticket.status),
            )
        )

    def stalled_reminder(self, ticket: Ticket, stalled_for: timedelta) -> Message:
        """In the ticket's thread: stalled for a while, pick it up or close it."""
        return Message(*self._stalled_reminder(ticket, stalled_for))

    def stalled_line(self, ticket: Ticket, stalled_for: timedelta) -> Message:
        """A line in the room's main timeline about a ticket stalled for long."""
        return Message(
            *self._t(
                "stalled_line",
                ticket=self._ref(ticket),
                title=self._title(ticket.title, SHORT_TITLE_CHARS),
                duration=self._duration(stalled_for),
                owner=self._owner(ticket.owner),
            )
        )

    def digest(
        self,
        counts: Mapping[tuple[str, str], int],
        oldest_new: Sequence[Ticket],
        oldest_stalled: Sequence[Ticket],
        now: datetime,
    ) -> Message:
        """The daily digest: counts per queue and status, and the oldest waiting tickets."""
        b = _Builder()
        date = _as_utc(now).astimezone(self.timezone).strftime("%Y-%m-%d")
        title = self._t("digest.title", date=date)
        b.line((title[0], f"<b>{title[1]}</b>"))

        by_queue: dict[str, dict[str, int]] = {}
        for (queue, status), count in counts.items():
            value = status.value if isinstance(status, Status) else str(status)
            by_queue.setdefault(str(queue), {})
            by_queue[str(queue)][value] = by_queue[str(queue)].get(value, 0) + int(count)
        new_total = sum(per.get(Status.NEW.value, 0) for per in by_queue.values())

        if new_total:
            line = self._t(f"digest.new_waiting.{_plural(new_total)}", count=new_total)
            b.line((line[0], f"<b>{line[1]}</b>"))
        else:
            b.line(self._t("digest.no_new"))

        rows: list[tuple[str, str]] = []
        for queue in sorted(by_queue):
            per = by_queue[queue]
            per.setdefault(Status.NEW.value, 0)
            order = sorted(
                per, key=lambda v: (_STATUS_ORDER.index(v) if v in _STATUS_ORDER else 99, v)
            )
            plain_counts, html_counts = [], []
            for value in order:
                text = f"{self._status(value)} {per[value]}"
                plain_counts.append(text)
                strong = value == Status.NEW.value and per[value] > 0
                html_counts.append(f"<b>{_esc(text)}</b>" if strong else _esc(text))
            rows.append(
                (
                    f"{queue}: " + " · ".join(plain_counts),
                    f"<b>{_esc(queue)}</b>: " + " · ".join(html_counts),
                )
            )
        if rows:
            b.items(rows)
        else:
            b.line(self._t("digest.no_tickets"))

        for key, tickets, since in (
            ("digest.oldest_new", oldest_new, lambda t: t.created_at),
            ("digest.oldest_stalled", oldest_stalled, lambda t: t.updated_at),
        ):
            if not tickets:
                continue
            b.line(self._t(key))
            b.items(
                [
                    self._t(
                        "digest.item",
                        ticket=self._ref(ticket),
                        title=self._title(ticket.title, SHORT_TITLE_CHARS),
                        duration=self._duration(_since(now, since(ticket))),
                    )
                    for ticket in tickets
                ]
            )
        return b.build()

    def quarantine(
        self, inbound_id: int, sender: str | None, subject: str | None, error: str
    ) -> Message:
        """For operators: a received mail was set aside; how to look at it with the CLI."""
        b = _Builder()
        b.line(self._t("quarantine.head", id=inbound_id))
        b.line(
            self._t(
                "quarantine.details",
                sender=one_line(sender, NAME_CHARS * 2) or messages.say(self.language, "unknown"),
                subject=one_line(subject, TITLE_CHARS) or messages.say(self.language, "no_subject"),
            )
        )
        b.line(self._t("quarantine.error", error=one_line(error, ERROR_CHARS) or "?"))
        commands = {
            action: _Rich(
                f"exobot quarantine {action} {inbound_id}",
                f"<code>exobot quarantine {action} {_esc(inbound_id)}</code>",
            )
            for action in ("show", "retry", "discard")
        }
        b.line(self._t("quarantine.commands", **commands))
        return b.build()

    # -- answers to queries ----------------------------------------------------------

    def show(self, ticket: Ticket, now: datetime) -> Message:
        """`!show`: reference, title, people, queue, status, age, time since the last mail."""
        b = _Builder()
        b.line(self._header(ticket))
        b.line(self._t("requestor", requestor=ticket.requestor))
        b.line(self._t("owner", owner=self._owner(ticket.owner)))
        queue = self._t("queue", queue=ticket.queue)
        status = self._t("status", status=self._status(ticket.status))
        b.line((f"{queue[0]} · {status[0]}", f"{queue[1]} · {status[1]}"))
        b.line(
            self._t(
                "show.created",
                when=self._time(ticket.created_at),
                age=self._duration(_since(now, ticket.created_at)),
            )
        )
        if ticket.last_member_mail_at is None:
            b.line(self._t("show.last_mail_never"))
        else:
            b.line(
                self._t(
                    "show.last_mail", age=self._duration(_since(now, ticket.last_member_mail_at))
                )
            )
        return b.build()

    def history(self, ticket: Ticket, entries: Sequence[Entry], now: datetime) -> Message:
        """`!history`: one line per entry, oldest first, the latest HISTORY_MAX_ENTRIES."""
        b = _Builder()
        title = self._t(
            "history.title",
            ticket=self._ref(ticket),
            title=self._title(ticket.title, SHORT_TITLE_CHARS),
        )
        b.line((title[0], f"<b>{title[1]}</b>"))
        ordered = sorted(entries, key=lambda entry: _as_utc(entry.created_at))
        if not ordered:
            b.line(self._t("history.empty"))
            return b.build()
        omitted = max(0, len(ordered) - HISTORY_MAX_ENTRIES)
        if omitted:
            line = self._t(f"history.omitted.{_plural(omitted)}", count=omitted)
            b.line((line[0], f"<i>{line[1]}</i>"))
        for entry in ordered[omitted:]:
            described = self._describe(
                ticket, entry, concise=False, lines=HISTORY_LINES, chars=HISTORY_CHARS
            )
            when = self._time(entry.created_at)
            b.line(
                (f"{when} · {described.head[0]}", f"<code>{_esc(when)}</code> {described.head[1]}")
            )
            b.quote(described.quote)
            for extra in described.extra:
                b.line(extra)
        return b.build()

    def _ticket_items(self, tickets: Sequence[Ticket], now: datetime) -> list[tuple[str, str]]:
        return [
            self._t(
                "list.item",
                ticket=self._ref(ticket, bold=True),
                status=self._status(ticket.status),
                queue=ticket.queue,
                owner=self._owner(ticket.owner),
                age=self._duration(_since(now, ticket.created_at)),
                title=self._title(ticket.title, LIST_TITLE_CHARS),
            )
            for ticket in tickets
        ]

    def ticket_list(self, tickets: Sequence[Ticket], total: int, now: datetime) -> Message:
        """`!list`: one line per ticket, and how many more there are."""
        total = max(total, len(tickets))
        if not tickets:
            return Message(*self._t("list.empty"))
        b = _Builder()
        b.line(self._t(f"list.title.{_plural(total)}", count=total))
        b.items(self._ticket_items(tickets, now))
        if total > len(tickets):
            b.line(self._t("list.more", count=total - len(tickets)))
        return b.build()

    def search_results(self, words: str, tickets: Sequence[Ticket], now: datetime) -> Message:
        """`!search`: the tickets matching `words`."""
        shown = one_line(words, SHORT_TITLE_CHARS)
        if not tickets:
            return Message(*self._t("search.empty", words=shown))
        b = _Builder()
        b.line(self._t("search.title", words=shown, count=len(tickets)))
        b.items(self._ticket_items(tickets, now))
        return b.build()

    # -- help ------------------------------------------------------------------------

    def _command_names(self) -> list[tuple[str, tuple[str, ...], str]]:
        """(canonical name, aliases, fallback usage) of every command."""
        try:
            from exobot.core.commands import COMMANDS
        except ImportError:  # pragma: no cover - the parser ships with the core
            return [(name, aliases, f"!{name}") for name, aliases in _FALLBACK_COMMANDS]
        result = []
        for name, spec in COMMANDS.items():
            usage = getattr(spec, "usage", f"!{name}")
            if hasattr(spec, "usage_for"):
                usage = spec.usage_for(self.prefix)
            result.append((name, tuple(getattr(spec, "aliases", ())), usage))
        return result

    def _usage(self, name: str, fallback: str) -> str:
        key = f"help.usage.{name}"
        if self._has(key):
            return messages.say(self.language, key, ref=f"{self.prefix}#N")
        return fallback

    def _command_word(self, name: str) -> str:
        """The word this language uses for a command (`agafa` in Catalan, `take` otherwise)."""
        usage = self._usage(name, f"!{name}")
        return usage.split()[0].lstrip("!") if usage.strip() else name

    def _help_item(self, name: str, aliases: tuple[str, ...], fallback: str) -> tuple[str, str]:
        usage = self._usage(name, fallback)
        shown = usage.split()[0].lstrip("!") if usage.strip() else name
        others = [f"!{word}" for word in (name, *aliases) if word != shown]
        description = (
            messages.say(self.language, f"help.desc.{name}")
            if self._has(f"help.desc.{name}")
            else ""
        )
        plain = usage + (f" — {description}" if description else "")
        rich = f"<code>{_esc(usage)}</code>" + (f" — {_esc(description)}" if description else "")
        if others:
            also = self._t("help.also", aliases=", ".join(others))
            plain += f" ({also[0]})"
            rich += f" <i>({also[1]})</i>"
        return plain, rich

    def help(self, topic: str | None) -> Message:
        """`!help`: every command with its aliases, or the usage of one."""
        commands = self._command_names()
        if topic is None or not topic.strip():
            b = _Builder()
            b.line(self._t("help.title"))
            b.items([self._help_item(*command) for command in commands])
            b.line(self._t("help.footer", prefix=self.prefix))
            return b.build()
        wanted = topic.strip().lstrip("!").lower()
        for name, aliases, fallback in commands:
            if wanted == name or wanted in aliases:
                return Message(*self._help_item(name, aliases, fallback))
        return Message(*self._t("help.unknown", topic=one_line(topic, 40)))

    # -- errors and refusals ---------------------------------------------------------

    def error(self, code: str, params: Mapping[str, object]) -> Message:
        """A command or service error, said politely with what to do next."""
        values: dict[str, Any] = {key: _join(value) for key, value in (params or {}).items()}
        values.setdefault("prefix", self.prefix)
        for key in ("text", "word", "queue", "command", "owner", "address"):
            if key in values:
                values[key] = one_line(values[key], SHORT_TITLE_CHARS)
        if code == "bad_address" and "text" not in values:
            values["text"] = values.get("address", "?")
        if code == "bad_address":
            # Say why in the reader's language; the English reason only when the rule's
            # code is unknown to the catalogs.
            reason_key = f"address.{values.pop('reason_code', '')}"
            values["reason"] = (
                self._t(reason_key)[0]
                if self._has(reason_key)
                else str(values.get("reason") or "?").rstrip(".")
            )
        if code in ("same_status",) and "status" in values:
            values["status"] = self._status(values["status"])
        command = str(values.get("command", ""))
        known = {name for name, _, _ in self._command_names()}
        if command in known and code != "unknown_command":
            values["command"] = self._command_word(command)
        if code == "missing_argument":
            argument = str(values.get("argument", ""))
            arg_key = f"arg.{argument}"
            values["argument"] = (
                messages.say(self.language, arg_key)
                if self._has(arg_key)
                else messages.say(self.language, "arg.other", argument=argument)
            )
        key = f"error.{code}"
        if not self._has(key):
            return Message(*self._t("error.generic", code=code))
        b = _Builder()
        b.line(self._t(key, **values))
        if code in ("missing_argument", "unexpected_argument", "missing_reference") and (
            command in known
        ):
            usage = self._usage(command, f"!{command}")
            usage_line = self._t("error.usage", usage=_Rich(usage, f"<code>{_esc(usage)}</code>"))
            b.line(usage_line)
        return b.build()

    def not_operator(self) -> Message:
        """A polite refusal in a queue room: only operators can use commands."""
        return Message(*self._t("not_operator"))

    def direct_refusal(self, support_address: str) -> Message:
        """To a stranger writing to the bot directly: I only work in the support rooms."""
        return Message(*self._t("direct_refusal", address=support_address))

    def open_room(self, join_rule: str) -> Message:
        """In a queue room anybody can join: its members get no operator rights."""
        return Message(*self._t("chat.open_room", rule=join_rule))

    def login_sent(self) -> Message:
        """At `!login`: the link went (or is going) by direct message."""
        return Message(*self._t("chat.login.sent"))

    def login_no_web(self) -> Message:
        """At `!login` when the web server is off."""
        return Message(*self._t("chat.login.no_web"))

    def login_link(self, url: str, valid_for: timedelta) -> Message:
        """The direct message with a one-time login link."""
        minutes = max(1, int(valid_for.total_seconds() // 60))
        link = _Rich(url, f'<a href="{_esc(url)}">{_esc(url)}</a>')
        return Message(*self._t("chat.login.link", url=link, minutes=minutes))


_FALLBACK_COMMANDS: list[tuple[str, tuple[str, ...]]] = [
    ("take", ("agafa",)),
    ("give", ("dona",)),
    ("untake", ("deixa",)),
    ("reply", ("respon",)),
    ("comment", ("comenta",)),
    ("title", ("titol",)),
    ("move", ("mou",)),
    ("status", ("estat",)),
    ("open", ("obre",)),
    ("stall", ("atura",)),
    ("resolve", ("resol",)),
    ("reject", ("rebutja",)),
    ("show", ("mostra",)),
    ("history", ("historial",)),
    ("list", ("llista",)),
    ("search", ("cerca",)),
    ("new", ("nou",)),
    ("accept", ("accepta",)),
    ("help", ("ajuda",)),
]
