"""The content fetched for one ticket's history is bounded as a whole, not only per
attachment: one ticket RT let anyone grow (500 replies with a 9 MB file each) was held in
memory whole and written in one transaction, and an import killed for its memory there
stopped at the same ticket on every run. Past `max_ticket_content` the rest is reported as too
big, like an attachment over the limit. On REST 1.0 and REST 2, with RT's answers played by
hand (the real servers' tests are in test_import_rt.py)."""

from __future__ import annotations

from datetime import UTC, datetime

from exobot.importer.rt_source import Rest1Source, Rest2Source, RtSource, RtTicket

MB = 1024 * 1024
FILES = 6  # mails with one 1 MB attachment each
LIMIT = 3 * MB + MB // 2  # room for three of them


def rt_ticket() -> RtTicket:
    at = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    return RtTicket(7, "General", "Adjunts", "open", "Nobody", ("a@example.org",), (), at, at)


class Rest1Client:
    """RT 4.4's REST 1.0 answers for a ticket with FILES mails, each a body and a file."""

    def __init__(self) -> None:
        self.fetched: list[int] = []

    def get_history(self, number: int) -> list[dict]:
        return [
            {"id": str(100 + n), "Ticket": "7", "Type": "Correspond", "Creator": "a@example.org",
             "Created": "2026-01-05 09:00:00", "Content": f"mail {n}",
             "Attachments": [(str(200 + 2 * n), ""), (str(201 + 2 * n), f"f{n}.pdf")]}
            for n in range(FILES)
        ]  # fmt: skip

    def get_attachments(self, number: int) -> list[tuple]:
        rows = []
        for n in range(FILES):
            rows.append((str(200 + 2 * n), "(Unnamed)", "text/plain", "7b"))
            rows.append((str(201 + 2 * n), f"f{n}.pdf", "application/pdf", "1024k"))
        return rows

    def get_attachment(self, number: int, part: int) -> dict:
        return {"Headers": {}}

    def get_attachment_content(self, number: int, part: int) -> bytes:
        self.fetched.append(part)
        return b"x" * MB


def rest1() -> tuple[Rest1Source, Rest1Client]:
    source = Rest1Source.__new__(Rest1Source)
    RtSource.__init__(source, max_ticket_content=LIMIT)
    source.client = Rest1Client()
    return source, source.client


def test_rest1_fetches_no_more_than_the_ticket_limit():
    source, client = rest1()
    ticket = rt_ticket()
    source.history(ticket)
    files = [p for t in ticket.transactions for p in t.parts if p.filename]
    assert [p.filename for p in files if p.content] == ["f0.pdf", "f1.pdf", "f2.pdf"]
    assert [p.filename for p in files if p.too_big] == ["f3.pdf", "f4.pdf", "f5.pdf"]
    assert len(client.fetched) == 3  # the others are not even asked for
    # The limit is per ticket: the next one (or the same, read again) starts anew.
    source.history(ticket)
    assert len(client.fetched) == 6


def test_rest2_fetches_no_more_than_the_ticket_limit(monkeypatch):
    source = Rest2Source.__new__(Rest2Source)
    RtSource.__init__(source, max_ticket_content=LIMIT)
    history = [
        {"id": 100 + n, "ObjectId": 7, "Type": "Correspond", "Creator": {"Name": "a"},
         "Created": "2026-01-05T09:00:00Z"}
        for n in range(FILES)
    ]  # fmt: skip
    attachments = []
    for n in range(FILES):
        attachments.append({"id": 200 + 2 * n, "TransactionId": {"id": 100 + n},
                            "ContentType": "text/plain", "Filename": "", "ContentLength": 7})
        attachments.append({"id": 201 + 2 * n, "TransactionId": {"id": 100 + n},
                            "ContentType": "application/pdf", "Filename": f"f{n}.pdf",
                            "ContentLength": MB})  # fmt: skip
    pages = {"ticket/7/history": history, "ticket/7/attachments": attachments}
    monkeypatch.setattr(source, "_paged", lambda path, params: pages[path])
    fetched = []

    def content(part_id: int) -> bytes:
        fetched.append(part_id)
        return b"mail" if part_id % 2 == 0 else b"x" * MB

    monkeypatch.setattr(source, "_content", content)
    ticket = rt_ticket()
    source.history(ticket)
    files = [p for t in ticket.transactions for p in t.parts if p.filename]
    assert [p.filename for p in files if p.content] == ["f0.pdf", "f1.pdf", "f2.pdf"]
    assert [p.filename for p in files if p.too_big] == ["f3.pdf", "f4.pdf", "f5.pdf"]
    bodies = [p for t in ticket.transactions for p in t.parts if not p.filename]
    assert all(p.content == b"mail" for p in bodies)  # the small bodies still fit
    assert len(fetched) == FILES + 3


def test_the_default_limit_is_far_above_one_attachment():
    source = Rest1Source.__new__(Rest1Source)
    RtSource.__init__(source)
    assert source.max_ticket_content >= 10 * source.max_attachment
