"""The pure parts of the RT importer (exobot.importer.rt_mapping and the time and size readers
of rt_source) on hand-made records: what a real RT gives is in test_import_rt.py."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from exobot.core.model import EntryKind, Status
from exobot.importer import rt_mapping
from exobot.importer.rt_mapping import MappingRules, body_of, map_ticket, skip_reason
from exobot.importer.rt_source import (
    RtPart,
    RtTicket,
    RtTransaction,
    RtUser,
    message_id_of,
    parse_size,
    parse_time,
)

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
USERS = {
    "anna@example.net": RtUser("30", "anna@example.net", "anna@example.net", False),
    "nuria": RtUser("20", "nuria", "nuria@example.org", True),
    "pere": RtUser("21", "pere", "pere@example.org", True),
    "RT_System": RtUser("1", "RT_System", "", True),
    "Nobody": RtUser("6", "Nobody", "", False),
}
BY_ID = {u.id: u for u in USERS.values()}
RULES = MappingRules(
    "rt:rt.example.org", {"General": "suport"}, {"nuria": "@nuria:example.org"},
    same_name=frozenset({"suport", "altes"}),
)  # fmt: skip


def users(key: str) -> RtUser:
    return USERS.get(key) or BY_ID[key]


def queue_names(key: str) -> str:
    return {"1": "General", "3": "Altes"}.get(key, key)


def txn(n: int, kind: str, creator: str, **kw) -> RtTransaction:
    return RtTransaction(
        id=n, ticket=kw.pop("ticket", 310), type=kind, field=kw.pop("field", ""),
        old_value=kw.pop("old", ""), new_value=kw.pop("new", ""), creator=creator,
        created=T0.replace(minute=n % 60), **kw,
    )  # fmt: skip


def ticket(*transactions: RtTransaction, **kw) -> RtTicket:
    fields = {
        "id": 310, "queue": "General", "subject": "El router", "status": "open",
        "owner": "nuria", "requestors": ("Anna@Example.net",), "cc": ("marta@example.net",),
        "created": T0, "updated": T0.replace(hour=12),
    } | kw  # fmt: skip
    return RtTicket(**fields, transactions=list(transactions))


def test_a_ticket_maps_with_authors_directions_changes_and_sent_message_ids():
    rt = ticket(
        txn(1, "Create", "anna@example.net", content="Hola", data="",
            parts=[RtPart(11, 1, 0, "text/plain", "", 4, message_id="first@example.net")]),
        txn(2, "EmailRecord", "RT_System", data="<ack@rt.example.org>"),
        txn(3, "Correspond", "nuria", content="Mirem-ho", data="Re: El router\n"),
        txn(4, "EmailRecord", "RT_System", data="<answer@rt.example.org>"),
        txn(5, "Comment", "pere", content="Nota"),
        txn(6, "Set", "nuria", field="Owner", old="6", new="20"),
        txn(7, "SetWatcher", "nuria", field="Owner", old="6", new="20"),
        txn(8, "Set", "nuria", field="Queue", old="1", new="3"),
        txn(9, "Set", "nuria", field="Subject", old="Router", new="El router"),
        txn(10, "Status", "RT_System", field="Status", old="new", new="resolved"),
        txn(12, "EmailRecord", "RT_System", data="<resolved@rt.example.org>"),
        txn(13, "AddLink", "nuria", field="MergedInto"),
    )  # fmt: skip
    mapped = map_ticket(rt, RULES, users, queue_names)
    imported = mapped.ticket
    assert mapped.skipped is None and mapped.unknown_owner is None
    assert (imported.number, imported.queue, imported.status) == (310, "suport", Status.OPEN)
    assert imported.owner == "@nuria:example.org"
    assert imported.requestor == "anna@example.net"
    assert imported.participants == ("anna@example.net", "marta@example.net")
    got = [(e.external_id, e.kind, e.actor, e.data) for e in imported.entries]
    assert got == [
        ("1", EntryKind.CREATED, "anna@example.net", {"queue": "suport", "requestor": "anna@example.net"}),
        ("1/mail", EntryKind.MAIL_IN, "anna@example.net",
         {"subject": "El router", "from": "anna@example.net", "message_id": "<first@example.net>"}),
        ("3", EntryKind.MAIL_OUT, "@nuria:example.org", {"subject": "Re: El router"}),
        ("5", EntryKind.COMMENT, "rt:pere", {"subject": "El router"}),
        ("6", EntryKind.OWNER, "@nuria:example.org", {"from": None, "to": "@nuria:example.org"}),
        ("8", EntryKind.QUEUE, "@nuria:example.org", {"from": "suport", "to": "altes"}),
        ("9", EntryKind.TITLE, "@nuria:example.org", {"from": "Router", "to": "El router"}),
        ("10", EntryKind.STATUS, "system", {"from": "new", "to": "resolved"}),
    ]  # fmt: skip
    ids = {
        e.external_id: [(m.message_id, m.direction) for m in e.message_ids]
        for e in imported.entries
    }
    assert ids["1/mail"] == [("first@example.net", "in"), ("ack@rt.example.org", "out")]
    assert ids["3"] == [("answer@rt.example.org", "out")]
    assert ids["10"] == [("resolved@rt.example.org", "out")]  # a resolution notice


def test_thousands_of_sent_mails_are_given_to_their_entry_once(monkeypatch):
    """A ticket RT sent thousands of notices for: their ids all go with the entry they were
    sent for, in order, and each entry is rebuilt once (rebuilding it at each notice was
    quadratic: 32,000 notices took 115 s; bench_rt_import measures the import)."""
    notices = [
        txn(2 + i, "EmailRecord", "RT_System", data=f"<notice{i}@rt.example.org>")
        for i in range(300)
    ]
    rebuilt = []
    real = rt_mapping._with_ids
    monkeypatch.setattr(
        rt_mapping, "_with_ids", lambda entry, ids: rebuilt.append(entry) or real(entry, ids)
    )
    mapped = map_ticket(
        ticket(txn(1, "Create", "anna@example.net", content="Hola"), *notices),
        RULES, users, queue_names,
    )  # fmt: skip
    created, mail = mapped.ticket.entries
    assert [m.message_id for m in mail.message_ids] == [
        f"notice{i}@rt.example.org" for i in range(300)
    ]
    assert len(rebuilt) == 1


def test_merged_tickets_history_is_kept_and_their_numbers_listed():
    rt = ticket(
        txn(1, "Create", "anna@example.net", ticket=305, content="Primer"),
        txn(2, "Create", "anna@example.net", content="Segon"),
    )
    imported = map_ticket(rt, RULES, users, queue_names).ticket
    assert imported.merged == (305,)
    kinds = [(e.external_id, e.kind) for e in imported.entries]
    # One CREATED, the survivor's; the merged ticket's creation is its first mail.
    assert kinds == [
        ("1", EntryKind.MAIL_IN),
        ("2", EntryKind.CREATED),
        ("2/mail", EntryKind.MAIL_IN),
    ]


def test_skipped_tickets_and_unknown_owners():
    assert skip_reason(ticket(status="deleted"), RULES) == "deleted"
    assert skip_reason(ticket(status="waiting"), RULES) == "status 'waiting'"
    assert skip_reason(ticket(queue="Vendes"), RULES) == "queue 'Vendes' not mapped"
    assert skip_reason(ticket(queue="Altes"), RULES) is None  # named like an exobot queue
    mapped = map_ticket(ticket(owner="pere"), RULES, users, queue_names)
    assert (mapped.ticket.owner, mapped.unknown_owner) == (None, "pere")


def test_bodies_html_and_size_bound_and_attachments_over_the_cap():
    html = RtPart(2, 1, 1, "text/html", "", 30, content=b"<p>Hola <b>m\xc3\xb3n</b></p>")
    assert body_of(txn(1, "Correspond", "anna@example.net", parts=[html])) == "Hola **món**"
    assert body_of(txn(1, "Correspond", "x", content="a" * 50), limit=10).startswith(
        "a" * 10 + "\n[…"
    )
    big = RtPart(3, 1, 1, "application/pdf", "factura-març.pdf", 50_000_000, too_big=True)
    small = RtPart(4, 1, 1, "application/pdf", "rebut.pdf", 3, content=b"pdf")
    mapped = map_ticket(
        ticket(txn(1, "Correspond", "anna@example.net", content="adjunt", parts=[big, small])),
        RULES, users, queue_names,
    )  # fmt: skip
    assert mapped.too_big == ["#310 factura-març.pdf (50000000 bytes)"]
    (entry,) = mapped.ticket.entries
    assert [a.filename for a in entry.attachments] == ["rebut.pdf"]


def test_attachment_file_names_are_cleaned_as_a_mails_are():
    """RT keeps a file name as the sender wrote it: a path, a bidi override that shows
    "factura\u202efdp.exe" as "factura exe.pdf", a line break, thousands of characters. They
    are stored as a mail's would be; one left empty gets a name of its position."""
    names = [
        "factura\u202efdp.exe",
        "..\\..\\x/\u200bpay.html",
        "a\r\nContent-Type: text/html.txt",
        "x" * 5000 + ".pdf",
        "\u202e\u200b",
        "\x1b]0;title\x07big.zip",
    ]
    parts = [
        RtPart(10 + i, 1, 1, "application/octet-stream", name, 3, content=b"abc")
        for i, name in enumerate(names[:-1])
    ]
    parts.append(RtPart(20, 1, 1, "application/zip", names[-1], 9_000_000, too_big=True))
    mapped = map_ticket(
        ticket(txn(1, "Correspond", "anna@example.net", content="adjunts", parts=parts)),
        RULES, users, queue_names,
    )  # fmt: skip
    (entry,) = mapped.ticket.entries
    assert [a.filename for a in entry.attachments] == [
        "facturafdp.exe",
        "pay.html",
        "html.txt",
        "x" * 196 + ".pdf",
        "attachment-5",
    ]
    # The report printed on the administrator's terminal carries no escape sequence either.
    assert mapped.too_big == ["#310 ]0;titlebig.zip (9000000 bytes)"]


def test_rt_times_sizes_and_message_ids():
    assert parse_time("2025-03-01 09:00:00") == T0  # REST 1.0 history: stored UTC
    assert parse_time("2025-03-01T09:00:00Z") == T0  # REST 2
    shown = parse_time("Sat Mar 01 10:00:00 2025", ZoneInfo("Europe/Madrid"))  # RT's $Timezone
    assert shown == T0
    assert parse_time("Not set") is None and parse_time("") is None
    assert (parse_size("3b"), parse_size("12k"), parse_size("1.5m")) == (3, 12288, 1572864)
    assert message_id_of("<a.b@rt.example.org>\n") == "a.b@rt.example.org"
    assert message_id_of("") == ""


def test_a_user_rt_would_not_show_is_staff_when_a_named_account_not_on_the_ticket():
    """RT hides disabled users from an importer without the right to see them: the source
    gives them as unknown; a named account that is no requestor or Cc acted as staff."""
    hidden = {
        "nuria": RtUser("nuria", "nuria", "", False, known=False),
        "marta@example.net": RtUser("marta@example.net", "marta@example.net",
                                    "marta@example.net", False, known=False),
        "anna": RtUser("anna", "anna", "", False, known=False),
    }  # fmt: skip

    def hiding(key: str) -> RtUser:
        return hidden.get(key) or users(key)

    rt = ticket(
        txn(1, "Create", "anna@example.net", content="Hola"),
        txn(2, "Correspond", "nuria", content="Mirem-ho"),
        txn(3, "Comment", "nuria", content="Nota"),
        txn(4, "Correspond", "marta@example.net", content="Jo també"),
        txn(5, "Correspond", "anna", content="Sóc l'Anna"),
    )
    mapped = map_ticket(rt, RULES, hiding, queue_names).ticket
    said = {e.body: (e.kind, e.actor) for e in mapped.entries if e.body}
    assert said["Mirem-ho"] == (EntryKind.MAIL_OUT, "@nuria:example.org")
    assert said["Nota"] == (EntryKind.COMMENT, "@nuria:example.org")
    assert said["Jo també"] == (EntryKind.MAIL_IN, "marta@example.net")
    # A named account that RT lists as a requestor is a member.
    rt.requestors = ("anna@example.net", "anna")
    mapped = map_ticket(rt, RULES, hiding, queue_names).ticket
    assert {e.body: e.kind for e in mapped.entries}["Sóc l'Anna"] == EntryKind.MAIL_IN
