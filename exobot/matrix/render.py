"""Rendering: what the bot posts in Matrix, as a plain body and an HTML body.

What chat shares with the web (describing entries, statuses, durations, errors) is in
`exobot.wording`; here is what only chat posts: the root message of a ticket's thread,
announcements, alerts, the digest, and the answers to `!show`, `!list`, `!search`, `!help`.
Every piece of text that came from mail or users is escaped in the HTML; mail bodies go
through `exobot.core.text.mail_text`. No pills and no links to users: nothing here pings.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import date, datetime, timedelta

from exobot.core.actions import ActionSpec, Channel
from exobot.core.commands import HELP_ALL
from exobot.core.flags import ActiveFlag
from exobot.core.languages import N_
from exobot.core.model import Entry, EntryKind, Status, Ticket
from exobot.core.text import mail_text, one_line
from exobot.core.waiting import Waiting, waiting_on
from exobot.i18n import say
from exobot.wording import (
    _ALERT,
    _STATUS_ORDER,
    HISTORY_CHARS,
    HISTORY_LINES,
    HISTORY_MAX_ENTRIES,
    LIST_TITLE_CHARS,
    NAME_CHARS,
    ROOT_CHARS,
    ROOT_LINES,
    SHORT_TITLE_CHARS,
    TITLE_CHARS,
    Message,
    Wording,
    _as_utc,
    _Builder,
    _esc,
    _join,
    _kind,
    _Rich,
    _since,
    format_ago,
    format_duration,
)

# The most an answer may weigh, by `answer_size`. The homeserver refuses an event over 65,536
# bytes (M_TOO_LARGE, for good). In an encrypted room nio encrypts the content as JSON with
# every non-ASCII character escaped ("\u0436": 6 bytes for a Cyrillic or Chinese character,
# 12 for an emoji) and Megolm sends that as base64, 4/3 bigger: 40,000 here make at most
# ~54,000 bytes of ciphertext with the rest of the content (message type, relation, mentions),
# which leaves ~11,000 bytes for the encrypted event's keys and the homeserver's envelope
# (event ids of the room's latest events, hashes, signatures). In a room without encryption
# the event is smaller still (raw UTF-8 is never longer than its escape).
MAX_ANSWER_BYTES = 40_000


def answer_size(message: Message) -> int:
    """How much a message weighs in an event: its body and HTML body as JSON with non-ASCII
    escaped, as nio encrypts them (HTML escaping and both bodies counted)."""
    return len(json.dumps({"body": message.body, "formatted_body": message.html}))


def _largest_fitting(count: int, build) -> int:  # noqa: ANN001 - int -> Message
    """The largest n in 1..count whose `build(n)` fits MAX_ANSWER_BYTES (1 when none does);
    a message grows with n."""
    low, high = 1, count
    while low < high:
        middle = (low + high + 1) // 2
        if answer_size(build(middle)) <= MAX_ANSWER_BYTES:
            low = middle
        else:
            high = middle - 1
    return low


# Why a mail was quarantined, in words, by the start of the technical error the processor
# recorded (the error itself is on the web's quarantine page and in the log).
_QUARANTINE_REASONS = (
    ("too big", N_("it is bigger than the size limit for mail")),
    ("not a mail", N_("it could not be read as a mail")),
    ("parse failed", N_("it could not be read as a mail")),
    ("flood", N_("its sender opened too many tickets within an hour")),
    (
        "sender address cannot be written to",
        N_("its sender's address cannot receive our replies"),
    ),
)
_QUARANTINE_OTHER = N_("something failed while processing it (the details are in the log)")


def quarantine_reason(error: str) -> str:
    """The message id saying, for a person, why a mail was quarantined."""
    lowered = (error or "").strip().lower()
    for start, reason in _QUARANTINE_REASONS:
        if lowered.startswith(start):
            return reason
    return _QUARANTINE_OTHER


# The commands `!help` lists first: what a volunteer does on most evenings.
SHORT_HELP = ("take", "reply", "comment", "resolve", "list")


class Renderer(Wording):
    """Renders everything the bot says in Matrix, in one language."""

    # -- thread messages -------------------------------------------------------------

    def root(
        self,
        ticket: Ticket,
        first: Entry | None,
        flags: Sequence[ActiveFlag] = (),
        *,
        reopened: bool = False,
        imported: str | None = None,
    ) -> Message:
        """The root message of a ticket's thread, kept current by edits: reference and title;
        status (marked when `reopened`), owner, queue and whose move it is, so a glance at
        the room tells what is taken, done or waiting; the requestor, the active flags and
        the first lines of its text. A ticket `imported` from another helpdesk (its name)
        says so with the day it was opened there: its thread starts at its first new event,
        maybe years later, and the text quoted is that old first mail, not a new one."""
        b = _Builder()
        b.line(self._header(ticket))
        # A reopened ticket says so in place of its status word (it is open again).
        label = self._say("reopened") if reopened else self._status(ticket.status)
        icon = "🔄" if reopened else ROOT_STATUS_ICONS.get(ticket.status, "")
        shown = " ".join(part for part in (icon, label) if part)
        plain, rich = self._t("Status: {status}", status=shown)
        state = [(plain, f"<b>{rich}</b>")]
        state.append(self._t("Owner: {owner}", owner=self._owner(ticket.owner)))
        state.append(self._t("Queue: {queue}", queue=ticket.queue))
        whose = waiting_on(ticket)
        waiting = self.waiting(whose)
        if waiting:
            marker = ROOT_WAITING_ICONS[whose]
            state.append((f"{marker} {waiting}", f"{marker} {_esc(waiting)}"))
        b.line((" · ".join(p for p, _ in state), " · ".join(h for _, h in state)))
        b.line(self._t("Requestor: {requestor}", requestor=ticket.requestor))
        for flag in flags:
            b.line(self.flag_line(flag))
        if imported:
            b.line(
                self._t(
                    "📥 Imported from {system}; opened there on {when}.",
                    system=imported,
                    when=self._time(ticket.created_at),
                )
            )
        if first is not None:
            if _kind(first) == EntryKind.COMMENT:
                b.line(
                    self._t("💬 {actor} added an internal comment:", actor=self.person(first.actor))
                )
            b.quote(mail_text(first.body, max_lines=ROOT_LINES, max_chars=ROOT_CHARS))
            if (first.data or {}).get("body_truncated"):
                b.line(self._t("(Message cut short: the whole mail is kept as the original.)"))
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
        mentions: list[str] = []
        first_line: int | None = None
        for entry in main:
            if _kind(entry) == _ALERT:
                alert = self._alert_builder(ticket, entry)
                if first_line is None:
                    first_line = len(b.parts)
                b.extend(alert)
                continue
            described = self._describe(
                ticket, entry, concise=concise, lines=ROOT_LINES, chars=ROOT_CHARS, mention=True
            )
            mentions.extend(m for m in described.mentions if m not in mentions)
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
                    "{from} → {to}",
                    **{"from": self._status(data.get("from")), "to": self._status(data.get("to"))},
                )
            else:
                suffix = self._t(
                    "resolution notice sent to {to}", to=_join(data.get("to")) or ticket.requestor
                )
            b.add_suffix(first_line, suffix)
        built = b.build()
        return Message(built.body, built.html, tuple(mentions)) if mentions else built

    def _alert_builder(self, ticket: Ticket, entry: Entry) -> _Builder:
        """An ALERT entry rendered as the alert or reminder it stands for."""
        data = entry.data or {}
        b = _Builder()
        if data.get("reason") == "stalled":
            b.line(self._stalled_reminder(ticket, _since(entry.created_at, ticket.updated_at)))
        else:
            b.line(self._alert(ticket, _since(entry.created_at, ticket.created_at)))
        return b

    def moved_pointer(
        self,
        ticket: Ticket,
        old_queue: str,
        new_queue: str,
        *,
        by: str | None = None,
        link: str | None = None,
    ) -> Message:
        """Posted in the old thread: who moved the ticket to another queue, and (`link`, a
        matrix.to permalink of the new root) where its thread continues."""
        if by is None:
            head = self._t(
                "➡️ {ticket} moved from queue {old} to queue {new}.",
                ticket=self._ref(ticket),
                old=old_queue,
                new=new_queue,
            )
        else:
            head = self._t(
                "➡️ {actor} moved {ticket} from queue {old} to queue {new}.",
                actor=self._owner(by),
                ticket=self._ref(ticket),
                old=old_queue,
                new=new_queue,
            )
        if link is None:
            tail = self._t("The thread continues in the {new} room.", new=new_queue)
        else:
            tail = self._t("The thread continues here: {link}", link=_link(link))
        return Message(f"{head[0]} {tail[0]}", f"{head[1]} {tail[1]}")

    def with_moved_line(self, message: Message, ticket: Ticket, queue: str, link: str) -> Message:
        """An old root message after a move: what it showed, then where the ticket went."""
        moved = self._t("➡️ Moved to queue {queue}: {link}", queue=queue, link=_link(link))
        return Message(f"{message.body}\n{moved[0]}", f"{message.html}<br>{moved[1]}")

    def opened(self, ticket: Ticket) -> Message:
        """The answer to `!new` typed away from the new ticket's room."""
        return Message(
            *self._t(
                "🆕 Opened {ticket} «{title}»; its thread is in the {queue} room.",
                ticket=self._ref(ticket),
                title=self._title(ticket.title),
                queue=ticket.queue,
            )
        )

    # -- alerts and reminders --------------------------------------------------------

    def _alert(self, ticket: Ticket, waited: timedelta) -> tuple[str, str]:
        return self._t(
            "⚠️ {ticket} has been new for {duration} and nobody has taken it. Who can handle it? !take {ticket}",
            ticket=self._ref(ticket),
            duration=self._duration(waited),
        )

    def _stalled_reminder(self, ticket: Ticket, stalled_for: timedelta) -> tuple[str, str]:
        return self._t(
            "⏰ {ticket} has been stalled for {duration}. Pick it up again or close it? !open {ticket} · !resolve {ticket}",
            ticket=self._ref(ticket),
            duration=self._duration(stalled_for),
        )

    def alert(self, ticket: Ticket, waited: timedelta) -> Message:
        """In the ticket's thread: still new after `waited`, nobody took it."""
        return Message(*self._alert(ticket, waited))

    def alert_line(self, ticket: Ticket, waited: timedelta) -> Message:
        """A line in the room's main timeline about a ticket waiting too long."""
        return Message(
            *self._t(
                "⚠️ {ticket} “{title}” has been waiting for {duration} ({status}) — !take {ticket}",
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
                "⏰ {ticket} “{title}” stalled for {duration} · owner: {owner}",
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
        *,
        day: date | None = None,
    ) -> Message:
        """The daily digest of `day` (None: `now`'s local date): counts per queue and status,
        and the oldest waiting tickets, with how long they have waited at `now`."""
        b = _Builder()
        day = day or _as_utc(now).astimezone(self.timezone).date()
        title = self._t("📊 Daily support digest — {date}", date=day.isoformat())
        b.line((title[0], f"<b>{title[1]}</b>"))

        by_queue: dict[str, dict[str, int]] = {}
        for (queue, status), count in counts.items():
            value = status.value if isinstance(status, Status) else str(status)
            by_queue.setdefault(str(queue), {})
            by_queue[str(queue)][value] = by_queue[str(queue)].get(value, 0) + int(count)
        new_total = sum(per.get(Status.NEW.value, 0) for per in by_queue.values())

        if new_total:
            line = self._nt(
                "⚠️ {count} new ticket waiting", "⚠️ {count} new tickets waiting", new_total
            )
            b.line((line[0], f"<b>{line[1]}</b>"))
        else:
            b.line(self._t("No new tickets waiting 🎉"))

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
            b.line(self._t("No active tickets"))

        for key, tickets, since in (
            (N_("New tickets waiting the longest:"), oldest_new, lambda t: t.created_at),
            (N_("Oldest stalled tickets:"), oldest_stalled, lambda t: t.updated_at),
        ):
            if not tickets:
                continue
            b.line(self._t(key))
            b.items(
                [
                    self._t(
                        "{ticket} “{title}” — {duration}",
                        ticket=self._ref(ticket),
                        title=self._title(ticket.title, SHORT_TITLE_CHARS),
                        duration=self._duration(_since(now, since(ticket))),
                    )
                    for ticket in tickets
                ]
            )
        return b.build()

    def quarantine(
        self,
        inbound_id: int,
        sender: str | None,
        subject: str | None,
        error: str,
        web_root: str | None = None,
    ) -> Message:
        """For operators: a received mail was set aside, why (in words, not the technical
        error) and where to look at it: the web's quarantine page when the web is on."""
        b = _Builder()
        b.line(
            self._t(
                "⚠️ A received mail could not be processed and was set aside (quarantine #{id}).",
                id=inbound_id,
            )
        )
        b.line(
            self._t(
                "From: {sender} · Subject: {subject}",
                sender=one_line(sender, NAME_CHARS * 2) or say(self.language, "(unknown)"),
                subject=one_line(subject, TITLE_CHARS) or say(self.language, "(no subject)"),
            )
        )
        b.line(self._t("Why: {reason}", reason=self._say(quarantine_reason(error))))
        if web_root:
            url = f"{web_root.rstrip('/')}/quarantine#mail-{int(inbound_id)}"
            link = _Rich(url, f'<a href="{_esc(url)}">{_esc(url)}</a>')
            b.line(
                self._t(
                    "You can look at it, try again or discard it on the support website: {url}",
                    url=link,
                )
            )
        else:
            b.line(
                self._t("The administrators can look at it, try again or discard it on the server.")
            )
        return b.build()

    # -- answers to queries ----------------------------------------------------------

    def show(self, ticket: Ticket, now: datetime, flags: Sequence[ActiveFlag] = ()) -> Message:
        """`!show`: reference, title, people, queue, status, age, time since the last mail,
        and the active flags."""
        b = _Builder()
        b.line(self._header(ticket))
        b.line(self._t("Requestor: {requestor}", requestor=ticket.requestor))
        owner = self.person_with_id(ticket.owner) if ticket.owner else self._owner(None)
        b.line(self._t("Owner: {owner}", owner=owner))
        queue = self._t("Queue: {queue}", queue=ticket.queue)
        status = self._t("Status: {status}", status=self._status(ticket.status))
        b.line((f"{queue[0]} · {status[0]}", f"{queue[1]} · {status[1]}"))
        b.line(
            self._t(
                "Created {when} ({age} ago)",
                when=self._time(ticket.created_at),
                age=self._duration(_since(now, ticket.created_at)),
            )
        )
        if ticket.last_member_mail_at is None:
            b.line(self._t("Last mail from the requestor: never"))
        else:
            b.line(
                self._t(
                    "Last mail from the requestor: {age} ago",
                    age=self._duration(_since(now, ticket.last_member_mail_at)),
                )
            )
        for flag in flags:
            b.line(self.flag_line(flag))
        return b.build()

    def history(self, ticket: Ticket, entries: Sequence[Entry], now: datetime) -> Message:
        """`!history`: one line per entry, oldest first, the latest HISTORY_MAX_ENTRIES, and
        of those only the newest that fit in one event (MAX_ANSWER_BYTES): quoted mail text
        in two bodies, escaped, can make a few dozen entries bigger than the homeserver takes.
        The older ones are counted as left out."""
        title = self._t(
            "History of {ticket} “{title}”",
            ticket=self._ref(ticket),
            title=self._title(ticket.title, SHORT_TITLE_CHARS),
        )
        ordered = sorted(entries, key=lambda entry: _as_utc(entry.created_at))
        if not ordered:
            b = _Builder()
            b.line((title[0], f"<b>{title[1]}</b>"))
            b.line(self._t("The history is empty"))
            return b.build()
        latest = ordered[-HISTORY_MAX_ENTRIES:]
        blocks = [self._history_entry(ticket, entry) for entry in latest]

        def build(kept: int) -> Message:
            return self._history_message(title, len(ordered) - kept, blocks[len(blocks) - kept :])

        message = build(len(blocks))
        if answer_size(message) <= MAX_ANSWER_BYTES:
            return message
        # One entry alone always fits: its quote is HISTORY_CHARS at most.
        return build(_largest_fitting(len(blocks), build))

    def _history_entry(self, ticket: Ticket, entry: Entry) -> _Builder:
        """One entry of `!history`: its time and headline, its quote and its extra lines."""
        described = self._describe(
            ticket, entry, concise=False, lines=HISTORY_LINES, chars=HISTORY_CHARS
        )
        when = self._time(entry.created_at)
        b = _Builder()
        b.line((f"{when} · {described.head[0]}", f"<code>{_esc(when)}</code> {described.head[1]}"))
        b.quote(described.quote)
        for extra in described.extra:
            b.line(extra)
        return b

    def _history_message(
        self, title: tuple[str, str], omitted: int, blocks: Sequence[_Builder]
    ) -> Message:
        b = _Builder()
        b.line((title[0], f"<b>{title[1]}</b>"))
        if omitted:
            line = self._nt(
                "({count} older entry left out)", "({count} older entries left out)", omitted
            )
            b.line((line[0], f"<i>{line[1]}</i>"))
        for block in blocks:
            b.extend(block)
        return b.build()

    def _list_status(self, ticket: Ticket) -> str:
        """A ticket's status in a list, with whose move it is ("open · ⏳ waiting for us")."""
        whose = waiting_on(ticket)
        waiting = self.waiting(whose)
        status = self._status(ticket.status)
        return f"{status} · {ROOT_WAITING_ICONS[whose]} {waiting}" if waiting else status

    def _ticket_items(self, tickets: Sequence[Ticket], now: datetime) -> list[tuple[str, str]]:
        return [
            self._t(
                "{ticket} · {status} · {queue} · {owner} · {age} · {title}",
                ticket=self._ref(ticket, bold=True),
                status=self._list_status(ticket),
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
            return Message(*self._t("No tickets"))
        b = _Builder()
        b.line(self._nt("{count} ticket:", "{count} tickets:", total))
        b.items(self._ticket_items(tickets, now))
        if total > len(tickets):
            b.line(self._t("… and {count} more", count=total - len(tickets)))
        return b.build()

    def search_results(self, words: str, tickets: Sequence[Ticket], now: datetime) -> Message:
        """`!search`: the tickets matching `words`."""
        shown = one_line(words, SHORT_TITLE_CHARS)
        if not tickets:
            return Message(*self._t("No tickets match “{words}”", words=shown))
        b = _Builder()
        b.line(self._t("Results for “{words}”: {count}", words=shown, count=len(tickets)))
        b.items(self._ticket_items(tickets, now))
        return b.build()

    # -- help ------------------------------------------------------------------------

    def _help_item(self, spec: ActionSpec) -> tuple[str, str]:
        usage = self.usage(spec)
        shown = usage.split()[0].lstrip("!") if usage.strip() else spec.name
        others = [f"!{word}" for word in spec.all_words() if word != shown]
        description = say(self.language, spec.summary, domain=spec.domain) if spec.summary else ""
        plain = usage + (f" — {description}" if description else "")
        rich = f"<code>{_esc(usage)}</code>" + (f" — {_esc(description)}" if description else "")
        if others:
            also = self._t("Also: {aliases}", aliases=", ".join(others))
            plain += f" ({also[0]})"
            rich += f" <i>({also[1]})</i>"
        return plain, rich

    def help(self, topic: str | None) -> Message:
        """`!help`: the few commands used every day and how to ask for more; `!help all`
        (HELP_ALL): every command with its aliases; `!help COMMAND`: the usage of one."""
        commands = self.registry.for_channel(Channel.CHAT)
        helper = self.registry.find("help")
        word = self.command_word(helper) if helper is not None else "help"
        if topic is None or not topic.strip():
            b = _Builder()
            b.line(
                self._t(
                    "The commands used most (inside a ticket's thread the reference can be left out):"
                )
            )
            daily = [self.registry.find(name) for name in SHORT_HELP]
            b.items([self._help_item(spec) for spec in daily if spec in commands])
            b.line(
                self._t(
                    "More about one command: !{help} COMMAND · every command: !{help} all",
                    help=word,
                )
            )
            return b.build()
        if topic == HELP_ALL:
            b = _Builder()
            b.line(
                self._t("exobot commands (inside a ticket's thread the reference can be left out):")
            )
            b.items([self._help_item(spec) for spec in commands])
            b.line(
                self._t(
                    "References: {prefix}#310, {prefix} 310, tiquet de {prefix} 310, #310 or 310. More about one command: !{help} COMMAND",
                    prefix=self.prefix,
                    help=word,
                )
            )
            return b.build()
        wanted = topic.strip().lstrip("!").lower()
        spec = self.registry.find(wanted)
        if spec is not None and spec in commands:
            return Message(*self._help_item(spec))
        return Message(
            *self._t(
                "I don't know the command “{topic}”. Type !help to see them all.",
                topic=one_line(topic, 40),
            )
        )

    def not_operator(self) -> Message:
        """A polite refusal in a queue room: only operators can use commands."""
        return Message(
            *self._t("Sorry, only the support team's operators can use exobot's commands.")
        )

    def undecryptable(self) -> Message:
        """At a volunteer's message the bot could not decrypt: it did nothing with it."""
        return Message(
            *self._t(
                "I could not read this message: its encryption key has not reached me. I have not acted on it: please send it again. If I cannot read it again, type {command} in this room first (Element on the web or desktop: it starts a new encryption key).",
                command=_Rich("/discardsession", "<code>/discardsession</code>"),
            )
        )

    def direct_refusal(self, support_address: str) -> Message:
        """To a stranger writing to the bot directly: I only work in the support rooms."""
        return Message(
            *self._t(
                "Hi! I only work in eXO's support team rooms. If you need help, please write to {address}.",
                address=support_address,
            )
        )

    def open_room(self, join_rule: str) -> Message:
        """In a queue room anybody can join: its members get no operator rights."""
        return Message(
            *self._t(
                "⚠️ This room is open (join rule “{rule}”): anybody can join it, so being a member gives nobody operator rights. Make it invite-only (or knock), or list the operators in matrix.operators.",
                rule=join_rule,
            )
        )

    def unencrypted_room(self) -> Message:
        """In a queue room that is not end-to-end encrypted (said once, ever)."""
        return Message(
            *self._t(
                "⚠️ This room is not end-to-end encrypted: what exobot posts here about tickets (members' addresses, titles and mail text) can be read by whoever runs the homeserver. Please turn on encryption in the room's settings (it cannot be turned off again).",
            )
        )

    def login_sent(self) -> Message:
        """At `!login`: the link goes by direct message, once the invitation is accepted."""
        return Message(
            *self._t(
                "I am sending you a login link by direct message. If I invite you to a direct chat, accept the invitation first: the link arrives once you are in."
            )
        )

    def login_no_web(self) -> Message:
        """At `!login` when the web server is off."""
        return Message(*self._t("The support website is not enabled on this server."))

    def login_link(self, url: str, valid_for: timedelta) -> Message:
        """The direct message with a one-time login link."""
        minutes = max(1, int(valid_for.total_seconds() // 60))
        link = _Rich(url, f'<a href="{_esc(url)}">{_esc(url)}</a>')
        return Message(
            *self._t(
                "Here is your link to the support website (single use, expires in {minutes} min): {url}",
                url=link,
                minutes=minutes,
            )
        )


__all__ = ["Message", "Renderer", "format_ago", "format_duration"]


def _link(url: str) -> _Rich:
    """A link the bot made itself (a matrix.to permalink): the address as its own text."""
    return _Rich(url, f'<a href="{_esc(url)}">{_esc(url)}</a>')


# Before whose move it is in a root message: ours stands out, the member's is calm.
ROOT_WAITING_ICONS = {Waiting.US: "⏳", Waiting.MEMBER: "✉️"}
# Before the status word of a closed ticket in its root message: done at a glance.
ROOT_STATUS_ICONS = {Status.RESOLVED: "✅", Status.REJECTED: "🚫"}
# The catalog's word for a ticket open again after it was closed.
REOPENED = N_("reopened")
