"""Odd MIME and real-world odd mails: a ticket or quarantine, never a crash, nothing blocked."""

from __future__ import annotations

import os
from email.message import EmailMessage
from pathlib import Path

import pytest
from harness import member_mail, unique

pytestmark = pytest.mark.integration

CORPUS = Path(__file__).resolve().parent.parent / "mail" / "corpus"


def _odd_mails(sender: str, to: str) -> dict[str, bytes]:
    crlf = "\r\n"

    def raw(headers: list[str], body: str) -> bytes:
        return (crlf.join(headers) + crlf + crlf + body).encode("utf-8", "surrogateescape")

    nested = f"Content-Type: text/plain{crlf}{crlf}Molt endins"
    for depth in range(60):
        nested = (
            f'Content-Type: multipart/mixed; boundary="b{depth}"{crlf}{crlf}'
            f"--b{depth}{crlf}{nested}{crlf}--b{depth}--"
        )
    big = EmailMessage()
    big["From"], big["To"], big["Subject"] = sender, to, "Factura amb adjunt gros"
    big["Message-ID"] = "<big-1@member.example.org>"
    big.set_content("Us envio la factura.")
    big.add_attachment(
        os.urandom(15 * 1024 * 1024),  # about 20 MB encoded: under mail.max_size
        maintype="application",
        subtype="octet-stream",
        filename="factura.bin",
    )
    return {
        "8bit-headers": (
            f"From: Jordi Pérez <{sender}>\r\nTo: {to}\r\nSubject: Connexió caiguda à l'Hospitalet\r\n"
            "Message-ID: <odd-8bit@member.example.org>\r\n\r\nCos en UTF-8 sense declarar: àèíòú\r\n"
        ).encode(),
        "lying-charset": (
            f"From: {sender}\r\nTo: {to}\r\nSubject: charset mentider\r\n"
            "Message-ID: <odd-charset@member.example.org>\r\nMIME-Version: 1.0\r\n"
            "Content-Type: text/plain; charset=x-no-existeix\r\n"
            "Content-Transfer-Encoding: 8bit\r\n\r\n"
        ).encode()
        + "Això és latin-1: camió\r\n".encode("latin-1"),
        "html-only": raw(
            [
                f"From: {sender}",
                f"To: {to}",
                "Subject: Només HTML",
                "Message-ID: <odd-html@member.example.org>",
                "MIME-Version: 1.0",
                "Content-Type: text/html; charset=utf-8",
            ],
            "<html><body><p>El <b>router</b> no s'encén</p><script>alert(1)</script></body></html>",
        ),
        "nested-multipart": raw(
            [
                f"From: {sender}",
                f"To: {to}",
                "Subject: Niat",
                "MIME-Version: 1.0",
                "Message-ID: <odd-nested@member.example.org>",
            ],
            "",
        )[:-4]
        + f"\r\n{nested}".encode(),
        "empty-subject": raw(
            [
                f"From: {sender}",
                f"To: {to}",
                "Subject: ",
                "Message-ID: <odd-empty@member.example.org>",
            ],
            "Sense assumpte però amb text.",
        ),
        "big-attachment": big.as_bytes(),
    }


async def test_odd_mime_never_crashes(bot):
    sender = unique("member")
    mails = _odd_mails(sender, bot.address)
    for raw in mails.values():
        await bot.deliver_raw(raw)
    await bot.send(member_mail(sender, bot.address, subject="Després dels estranys"))
    await bot.wait_inbound_done(len(mails) + 1, timeout=60)
    states = dict(bot.query("SELECT message_id, state FROM inbound_mail"))
    assert all(state in ("done", "quarantined") for state in states.values()), states
    tickets = bot.query(
        "SELECT t.title, e.body FROM tickets t JOIN entries e ON e.ticket_id = t.id "
        "WHERE e.kind = 'mail_in' ORDER BY t.id"
    )
    titles = [t for t, _ in tickets]
    assert "Després dels estranys" in titles  # the mail after them was not blocked
    assert "(sense assumpte)" in titles
    html_body = next(b for t, b in tickets if t == "Només HTML")
    assert "router" in html_body and "<b>" not in html_body
    charset_body = next(b for t, b in tickets if t == "charset mentider")
    assert "cami" in charset_body
    assert (
        bot.scalar("SELECT size FROM attachments WHERE filename = 'factura.bin'")
        == 15 * 1024 * 1024
    )


async def test_corpus_of_real_world_mails_becomes_tickets(bot):
    files = sorted(p for p in CORPUS.iterdir() if p.suffix == ".eml")
    assert len(files) >= 50
    for path in files:
        await bot.deliver_raw(path.read_bytes())
    await bot.wait_inbound_done(len(files), timeout=120)
    # Each stored mail's own history entry, found through its Message-ID.
    with_body = bot.scalar(
        "SELECT count(DISTINCT i.id) FROM inbound_mail i "
        "JOIN mail_messages m ON m.ticket_id = i.ticket_id AND m.direction = 'in' "
        "JOIN entries e ON e.id = m.entry_id "
        "WHERE i.state = 'done' AND (m.message_id = i.message_id OR i.message_id IS NULL) "
        "AND trim(coalesce(e.body, '')) != ''"
    )
    states = bot.query("SELECT state, count(*) FROM inbound_mail GROUP BY state")
    # Duplicates (the same Message-ID twice in the corpus), bounces and mail held because its
    # sender's address cannot be written to (a `.local` domain) are not failures.
    excused = bot.scalar(
        "SELECT count(*) FROM inbound_mail WHERE state IN ('duplicate', 'ignored', 'dropped') "
        "OR (state = 'quarantined' AND error LIKE 'sender address cannot be written to:%')"
    )
    ratio = with_body / (len(files) - excused)
    print(f"corpus: {len(files)} mails, states {states}, {with_body} tickets with a body")
    assert ratio >= 0.95, f"{with_body} of {len(files) - excused} with a body; states {states}"
