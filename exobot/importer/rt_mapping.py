"""Request Tracker's records (exobot.importer.rt_source) as ImportedTickets: pure mapping.

Who acted: a member (an unprivileged RT user) by their address, staff by the Matrix id the
owners file gives (else "rt:NAME"), RT itself (RT_System, Nobody) as "system". What: staff
correspondence is MAIL_OUT, a member's MAIL_IN, comments COMMENT, status, owner, queue and
subject changes STATUS/OWNER/QUEUE/TITLE with {"from", "to"}, the ticket's Create a CREATED
entry plus its first mail. RT's EmailRecord transactions (the mails RT sent) give no entry:
their Message-IDs are kept on the entry they were sent for, so replies to them thread.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from exobot.core.imports import ImportedEntry, ImportedMessageId, ImportedTicket
from exobot.core.model import AttachmentInfo, EntryKind, Status
from exobot.core.text import safe_filename
from exobot.importer.rt_source import RtPart, RtTicket, RtTransaction, RtUser, message_id_of

# An imported body longer than this (characters) is cut, with a note saying so.
MAX_BODY_CHARS = 100_000
SYSTEM_USERS = frozenset({"RT_System", "Nobody", "1", "6"})
_OWNER_TYPES = frozenset({"Take", "Untake", "Give", "Steal", "Force"})
_RECORD_TYPES = frozenset({"EmailRecord", "CommentEmailRecord"})
_NO_CONTENT = "This transaction appears to have no content"


@dataclass(frozen=True)
class MappingRules:
    """How RT's names become exobot's: `queues` RT queue → exobot queue (an RT queue not in
    it is skipped), `owners` RT user name → Matrix id, `source` the import's source label."""

    source: str
    queues: dict[str, str]
    owners: dict[str, str] = field(default_factory=dict)
    max_body: int = MAX_BODY_CHARS
    # exobot's queues: an RT queue that `queues` does not map goes to the one of its name.
    same_name: frozenset[str] = frozenset()

    def queue_for(self, rt_queue: str) -> str | None:
        """The exobot queue of an RT queue, None when it is not imported."""
        mapped = self.queues.get(rt_queue)
        if mapped is None and rt_queue.lower() in self.same_name:
            mapped = rt_queue.lower()
        return mapped


@dataclass
class Mapped:
    """One RT ticket's fate: the ImportedTicket, or why it is skipped; and what to report."""

    rt_id: int
    ticket: ImportedTicket | None = None
    skipped: str | None = None  # the reason, when not imported
    unknown_owner: str | None = None  # an RT owner the owners file does not name
    too_big: list[str] = field(default_factory=list)  # attachments left out (name, size)
    new_entries: int = 0


Users = Callable[[str], RtUser]
QueueNames = Callable[[str], str]


def status_of(rt_status: str) -> Status | None:
    """RT's status as exobot's (the five default ones map one to one); None otherwise."""
    try:
        return Status(rt_status.strip().lower())
    except ValueError:
        return None


def skip_reason(ticket: RtTicket, rules: MappingRules) -> str | None:
    """Why this RT ticket is not imported (deleted, unknown status, unmapped queue), or None."""
    if ticket.status.lower() == "deleted":
        return "deleted"
    if status_of(ticket.status) is None:
        return f"status {ticket.status!r}"
    if rules.queue_for(ticket.queue) is None:
        return f"queue {ticket.queue!r} not mapped"
    return None


def owner_of(name: str, rules: MappingRules) -> tuple[str | None, str | None]:
    """(the Matrix id of RT's owner or None, the owner's name when the owners file lacks it)."""
    if not name or name in SYSTEM_USERS:
        return None, None
    mapped = rules.owners.get(name)
    return (mapped, None) if mapped else (None, name)


def is_staff(user: RtUser, ticket: RtTicket | None = None) -> bool:
    """Whether an RT user acts as staff: RT's Privileged flag when RT showed the user; for a
    user it would not show (an importer without the right to see disabled users), a named
    account that is none of the ticket's requestors or Cc, since RT names the members it
    creates from their mail by their address."""
    if user.known:
        return user.privileged
    name = user.name.strip().lower()
    people = {a.lower() for a in (*ticket.requestors, *ticket.cc)} if ticket else set()
    return bool(name) and "@" not in name and name not in people


def actor_of(user: RtUser, rules: MappingRules, ticket: RtTicket | None = None) -> str:
    """Who an RT user is in exobot's history (`ticket`: the one it acted on, for a user RT
    would not show)."""
    if user.name in SYSTEM_USERS or user.id in ("1", "6"):
        return "system"
    if is_staff(user, ticket):
        return rules.owners.get(user.name) or f"rt:{user.name}"
    return (user.email or user.name).lower()


def _bounded(text: str, limit: int) -> str:
    text = text.replace("\r\n", "\n").strip("\n")
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n[… {len(text) - limit} characters cut on import]"


def body_of(txn: RtTransaction, limit: int = MAX_BODY_CHARS) -> str:
    """The text of a mail transaction: RT's own text (REST 1.0), else the text/plain part,
    else the text/html part as text; bounded."""
    from exobot.mail.parse import html_to_text

    text = txn.content
    if text is None or text.startswith(_NO_CONTENT):
        text = None
        plain = _first(txn.parts, "text/plain")
        html = _first(txn.parts, "text/html")
        if plain is not None and plain.content is not None:
            text = plain.content.decode("utf-8", "replace")
        elif html is not None and html.content is not None:
            text = html_to_text(html.content.decode("utf-8", "replace"))
    elif _looks_html(text):
        text = html_to_text(text)
    return _bounded(text or "", limit)


def _first(parts: list[RtPart], content_type: str) -> RtPart | None:
    for part in parts:
        if not part.filename and part.content_type.lower() == content_type:
            return part
    return None


def _looks_html(text: str) -> bool:
    head = text.lstrip()[:200].lower()
    return head.startswith(("<html", "<!doctype html", "<div", "<p>", "<body"))


def _message_ids(txn: RtTransaction, direction: str) -> tuple[ImportedMessageId, ...]:
    seen = dict.fromkeys(p.message_id for p in txn.parts if p.message_id)
    return tuple(ImportedMessageId(m, direction) for m in seen)


def map_ticket(
    ticket: RtTicket, rules: MappingRules, users: Users, queue_names: QueueNames
) -> Mapped:
    """The ImportedTicket of an RT ticket whose history was read (or why it is skipped)."""
    result = Mapped(ticket.id)
    result.skipped = skip_reason(ticket, rules)
    if result.skipped:
        return result
    status = status_of(ticket.status)
    assert status is not None
    owner, result.unknown_owner = owner_of(ticket.owner, rules)
    queue = rules.queue_for(ticket.queue) or ""
    requestors = [a.lower() for a in ticket.requestors if "@" in a]
    participants = tuple(dict.fromkeys(requestors + [a.lower() for a in ticket.cc if "@" in a]))
    requestor = requestors[0] if requestors else ""

    def queue_label(value: str) -> str:
        name = queue_names(value)
        return rules.queue_for(name) or name

    def owner_label(value: str) -> str | None:
        if not value or value in ("0",):
            return None
        user = users(value)
        if user.name in SYSTEM_USERS:
            return None
        return rules.owners.get(user.name) or f"rt:{user.name}"

    entries: list[ImportedEntry] = []
    pending: list[ImportedMessageId] = []
    # The ids of RT's mails added to each entry (by its index), gathered as they come and
    # given to the entries once at the end: rebuilding an entry at each of thousands of sent
    # mails took quadratic time (32,000 notices: 115 s).
    sent_ids: dict[int, dict[ImportedMessageId, None]] = {}
    for txn in ticket.transactions:
        if pending and entries:  # ids of RT's mails sent before the first entry
            sent_ids.setdefault(len(entries) - 1, {}).update(dict.fromkeys(pending))
            pending = []
        user = users(txn.creator)
        actor = actor_of(user, rules, ticket)
        member = actor != "system" and not is_staff(user, ticket)
        ext = str(txn.id)
        if txn.type in _RECORD_TYPES:
            # A mail RT sent (an acknowledgement, a reply, a resolution notice): its
            # Message-ID goes with the entry it was sent for, the one just before it (or
            # the next one when it comes first), so that a reply to it threads.
            sent = message_id_of(txn.data)
            if sent:
                pending.append(ImportedMessageId(sent, "out"))
            if pending and entries:
                sent_ids.setdefault(len(entries) - 1, {}).update(dict.fromkeys(pending))
                pending = []
            continue
        if txn.type in ("Create", "Correspond", "Comment"):
            attachments, too_big = _attachments(txn)
            result.too_big.extend(too_big)
            if txn.type == "Create" and txn.ticket == ticket.id:
                entries.append(
                    ImportedEntry(
                        ext,
                        EntryKind.CREATED,
                        actor,
                        txn.created,
                        data={"queue": queue, "requestor": requestor},
                    )
                )
                ext = f"{txn.id}/mail"
            if txn.type == "Comment":
                kind, direction = EntryKind.COMMENT, "in" if member else "out"
            elif member:
                kind, direction = EntryKind.MAIL_IN, "in"
            else:
                kind, direction = EntryKind.MAIL_OUT, "out"
            body = body_of(txn, rules.max_body)
            ids = _message_ids(txn, direction)
            subject = txn.data.strip() if txn.type != "Create" else ""
            if subject == "No Subject":  # RT's word for a reply written in RT without one
                subject = ""
            data: dict = {"subject": subject or ticket.subject}
            if member:
                data["from"] = actor
            if ids:
                data["message_id"] = f"<{ids[0].message_id}>"
            if attachments:
                data["attachments"] = [
                    {"filename": a.filename, "content_type": a.content_type, "size": a.size}
                    for a in attachments
                ]
            if body or attachments or txn.type != "Create":
                entries.append(
                    ImportedEntry(
                        ext,
                        kind,
                        actor,
                        txn.created,
                        body=body,
                        data=data,
                        attachments=attachments,
                        message_ids=ids,
                    )
                )
            continue
        change = _change(txn, queue_label, owner_label)
        if change is not None:
            kind, data = change
            entries.append(ImportedEntry(ext, kind, actor, txn.created, data=data))
    if pending and entries:
        sent_ids.setdefault(len(entries) - 1, {}).update(dict.fromkeys(pending))
    for index, ids in sent_ids.items():
        entries[index] = _with_ids(entries[index], ids)
    result.ticket = ImportedTicket(
        source=rules.source,
        external_id=str(ticket.id),
        number=ticket.id,
        title=ticket.subject.strip() or f"RT #{ticket.id}",
        requestor=requestor,
        queue=queue,
        status=status,
        created_at=next(
            (
                t.created
                for t in ticket.transactions
                if t.type == "Create" and t.ticket == ticket.id
            ),
            ticket.created,
        ),
        updated_at=ticket.updated,
        owner=owner,
        participants=participants,
        entries=tuple(entries),
        merged=ticket.merged,
    )
    return result


def _with_ids(entry: ImportedEntry, ids: Iterable[ImportedMessageId]) -> ImportedEntry:
    """The entry with the ids of RT's mails sent for it after its own (each once)."""
    return replace(entry, message_ids=tuple(dict.fromkeys((*entry.message_ids, *ids))))


def _change(
    txn: RtTransaction,
    queue_label: Callable[[str], str],
    owner_label: Callable[[str], str | None],
) -> tuple[EntryKind, dict] | None:
    field_name = txn.field
    if txn.type == "Status" or (txn.type == "Set" and field_name == "Status"):
        return EntryKind.STATUS, {"from": txn.old_value.lower(), "to": txn.new_value.lower()}
    if txn.type in _OWNER_TYPES or (txn.type == "Set" and field_name == "Owner"):
        return EntryKind.OWNER, {
            "from": owner_label(txn.old_value),
            "to": owner_label(txn.new_value),
        }
    if txn.type == "Set" and field_name == "Queue":
        return EntryKind.QUEUE, {
            "from": queue_label(txn.old_value),
            "to": queue_label(txn.new_value),
        }
    if txn.type == "Set" and field_name == "Subject":
        return EntryKind.TITLE, {"from": txn.old_value, "to": txn.new_value}
    return None


def _attachments(txn: RtTransaction) -> tuple[tuple[AttachmentInfo, ...], list[str]]:
    """A transaction's attachments (its parts with a file name), their names cleaned as a
    mail's are (safe_filename: RT keeps what the sender wrote, a path or a bidi override
    too), and the lines of the report for those too big to import."""
    kept, too_big = [], []
    for index, part in enumerate(txn.parts, 1):
        if not part.filename:
            continue
        filename = safe_filename(part.filename) or f"attachment-{index}"
        if part.too_big or part.content is None:
            too_big.append(f"#{txn.ticket} {filename} ({part.size} bytes)")
            continue
        kept.append(
            AttachmentInfo(filename, part.content_type or "application/octet-stream", part.content)
        )
    return tuple(kept), too_big
