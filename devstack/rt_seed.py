"""Seed a test Request Tracker (devstack/rt.py) the way eXO's helpdesk fills one: members
write by mail (rt-mailgate), staff answer, comment and change tickets through REST 1.0 (the
API both RT 4.4 and RT 5 have). `seed(server)` returns a `Seeded` record of what it made, so
the importer's tests can compare field by field.

The tickets (RT numbers them 1.. in this order on a fresh server):

1. General, by mail, non-ASCII subject; a member reply by mail (subject tag), a staff reply by
   REST with an attachment named `factura-març.pdf`, a staff comment, a comment by mail; owner
   nuria; status open.
2. Altes, by mail with a text attachment (non-ASCII RFC 2231 file name); resolved by staff.
3. General, by mail; moved to Altes and renamed; rejected.
4. General, by mail; owner nuria; stalled.
5. General, by mail; deleted.
6. General, by mail; merged into 7.
7. General, by mail with a Cc; survivor of the merge of 6 and 8; open.
8. General, by mail; merged into 7.
9. Altes, created by staff through REST for a requestor (RT mails them); new.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from devstack.rt import SECOND_QUEUE, STAFF_EMAIL, STAFF_PASSWORD, STAFF_USER, RtServer

MEMBER = "anna@example.net"
MEMBER_NAME = "Anna Puig"
SECOND_MEMBER = "jordi@example.net"
CC_MEMBER = "marta@example.net"
PDF_NAME = "factura-març.pdf"
TEXT_ATTACHMENT_NAME = "informe-connexió.txt"
PDF_BYTES = b"%PDF-1.4\n% exobot test attachment\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"
TEXT_ATTACHMENT = b"Velocitat mesurada: 2 Mbps a les 21 h.\n"


@dataclass
class SeededTicket:
    """What the seed made of one RT ticket (as RT should report it at the end)."""

    number: int
    queue: str
    subject: str
    status: str  # RT's final status: new/open/stalled/resolved/rejected/deleted
    owner: str  # RT user name, "Nobody" when unowned
    requestors: list[str]
    cc: list[str] = field(default_factory=list)
    # Message-IDs (without <>) of the mails fed in through rt-mailgate for this ticket.
    message_ids: list[str] = field(default_factory=list)
    # File names of the attachments added (by mail or REST), as written.
    attachments: list[str] = field(default_factory=list)
    # Text of every message fed in: the creating mail, replies and comments (plain text).
    texts: list[str] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)  # the subset of texts that are comments
    merged_into: int | None = None  # RT's EffectiveId when this ticket was merged away
    merged_from: list[int] = field(default_factory=list)  # numbers merged into this one
    subject_before: str | None = None  # first subject, when the seed changed it
    queue_before: str | None = None  # first queue, when the seed moved the ticket


@dataclass
class Seeded:
    """Everything `seed` created on one server."""

    rtname: str
    queues: list[str]
    staff_user: str
    staff_email: str
    tickets: dict[int, SeededTicket]
    # RT number → surviving ticket number, for the merged ones.
    merged: dict[int, int]
    deleted: list[int]
    # Message-ID (without <>) fed in → the ticket number it ended up in (the survivor).
    message_ids: dict[str, int]
    seconds: float = 0.0

    def ticket(self, number: int) -> SeededTicket:
        """The seeded ticket with RT number `number`."""
        return self.tickets[number]


def _mail(
    subject: str,
    body: str,
    *,
    sender: str = MEMBER,
    name: str = MEMBER_NAME,
    to: str = "rt@example.org",
    cc: list[str] | None = None,
    attachment: tuple[str, bytes, str] | None = None,
    in_reply_to: str | None = None,
) -> tuple[bytes, str]:
    """A member's mail (raw bytes) and its Message-ID without <>."""
    message = EmailMessage()
    message["From"] = f"{name} <{sender}>"
    message["To"] = to
    if cc:
        message["Cc"] = ", ".join(cc)
    message["Subject"] = subject
    message["Date"] = format_datetime(datetime.now(UTC))
    msgid = make_msgid(domain="example.net")
    message["Message-ID"] = msgid
    if in_reply_to:
        message["In-Reply-To"] = f"<{in_reply_to}>"
        message["References"] = f"<{in_reply_to}>"
    message.set_content(body)
    if attachment:
        filename, data, mimetype = attachment
        maintype, subtype = mimetype.split("/")
        message.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    return message.as_bytes(), msgid.strip("<>")


def _rest(server: RtServer, user: str, password: str):
    import rt.rest1

    client = rt.rest1.Rt(server.rest1, user, password)
    if not client.login():
        raise RuntimeError(f"REST 1.0 login as {user} failed on {server.url}")
    return client


def _check(ok: object, what: str) -> None:
    if not ok:
        raise RuntimeError(f"RT refused: {what}")


def seed(server: RtServer) -> Seeded:
    """Fill a fresh `server` (see the module docstring) and return what was made."""
    started = time.monotonic()
    root = _rest(server, server.user, server.password)
    staff = _rest(server, STAFF_USER, STAFF_PASSWORD)
    tag = f"[{server.rtname} #%d]"
    tickets: dict[int, SeededTicket] = {}
    message_ids: dict[str, int] = {}

    def by_mail(queue: str, subject: str, body: str, *, expect: int, **kwargs) -> SeededTicket:
        raw, msgid = _mail(subject, body, **kwargs)
        server.mailgate(raw, queue=queue)
        # rt-mailgate only says "ok": RT numbers tickets 1.. on a fresh server.
        made = root.get_ticket(expect)
        if not made or made.get("Subject") != subject:
            raise RuntimeError(f"ticket #{expect} is not the mail {subject!r}: server not fresh?")
        number = expect
        ticket = SeededTicket(
            number=number,
            queue=queue,
            subject=subject,
            status="new",
            owner="Nobody",
            requestors=[kwargs.get("sender", MEMBER)],
            message_ids=[msgid],
            texts=[body],
        )
        attachment = kwargs.get("attachment")
        if attachment:
            ticket.attachments.append(attachment[0])
        tickets[number] = ticket
        message_ids[msgid] = number
        return ticket

    def reply_by_mail(ticket: SeededTicket, body: str, action: str = "correspond") -> None:
        first = ticket.message_ids[0]
        raw, msgid = _mail(f"Re: {tag % ticket.number} {ticket.subject}", body, in_reply_to=first)
        server.mailgate(raw, queue=ticket.queue, action=action)
        # Threaded by the subject tag, the reply must not have opened a ticket.
        if root.get_ticket(max(tickets) + 1):
            raise RuntimeError(f"the reply to #{ticket.number} opened a new ticket")
        ticket.message_ids.append(msgid)
        ticket.texts.append(body)
        if action == "comment":
            ticket.comments.append(body)
        message_ids[msgid] = ticket.number

    # 1: the long one.
    t1 = by_mail(
        "General",
        "No puc enviar correus des d'Èxit",
        "Hola,\ndes d'ahir no puc enviar correus.\nGràcies,\nAnna\n",
        expect=1,
    )
    reply_by_mail(t1, "Ho he tornat a provar i continua igual.\n")
    pdf = (PDF_NAME, io.BytesIO(PDF_BYTES), "application/pdf")
    staff_reply = "Hola Anna,\nt'adjunto la factura. Prova ara, si us plau.\nNúria\n"
    _check(staff.reply(1, text=staff_reply, files=[pdf]), "staff reply on #1")
    t1.texts.append(staff_reply)
    t1.attachments.append(PDF_NAME)
    staff_comment = "Nota interna: el servidor SMTP tenia la cua plena.\n"
    _check(staff.comment(1, text=staff_comment), "staff comment on #1")
    t1.texts.append(staff_comment)
    t1.comments.append(staff_comment)
    reply_by_mail(t1, "Comentari enviat per correu a l'adreça de comentaris.\n", "comment")
    _check(root.edit_ticket(1, Owner=STAFF_USER), "owner of #1")
    t1.owner = STAFF_USER
    t1.status = "open"  # correspondence opened it

    # 2: second queue, attachment by mail, resolved.
    t2 = by_mail(
        SECOND_QUEUE,
        "Connexió lenta a Gràcia",
        "La connexió va molt lenta des de dilluns.\n",
        expect=2,
        sender=SECOND_MEMBER,
        name="Jordi Vila",
        to="altes@example.org",
        attachment=(TEXT_ATTACHMENT_NAME, TEXT_ATTACHMENT, "text/plain"),
    )
    _check(root.edit_ticket(2, Status="resolved"), "resolve #2")
    t2.status = "resolved"

    # 3: moved to the second queue, renamed, rejected.
    t3 = by_mail("General", "Publicitat: guanya un creuer", "Compra ara!\n", expect=3)
    _check(root.edit_ticket(3, Queue=SECOND_QUEUE), "move #3")
    t3.queue_before, t3.queue = t3.queue, SECOND_QUEUE
    _check(root.edit_ticket(3, Subject="Correu brossa"), "rename #3")
    t3.subject_before, t3.subject = t3.subject, "Correu brossa"
    _check(root.edit_ticket(3, Status="rejected"), "reject #3")
    t3.status = "rejected"

    # 4: owned and stalled.
    t4 = by_mail("General", "Canvi de quota", "Vull passar a la quota reduïda.\n", expect=4)
    _check(root.edit_ticket(4, Owner=STAFF_USER), "owner of #4")
    t4.owner = STAFF_USER
    _check(root.edit_ticket(4, Status="stalled"), "stall #4")
    t4.status = "stalled"

    # 5: deleted.
    t5 = by_mail("General", "Prova, esborreu-ho", "Prova.\n", expect=5)
    _check(root.edit_ticket(5, Status="deleted"), "delete #5")
    t5.status = "deleted"

    # 6, 7, 8: 6 (lower) and 8 (higher) merged into 7.
    t6 = by_mail("General", "El router no s'encén", "El router no s'encén.\n", expect=6)
    t7 = by_mail(
        "General",
        "Router espatllat",
        "El router està espatllat, el meu veí també ho té.\n",
        expect=7,
        cc=[CC_MEMBER],
    )
    t7.cc = [CC_MEMBER]
    t8 = by_mail("General", "Router (tercer avís)", "Encara sense router.\n", expect=8)
    for merged in (t6, t8):
        _check(root.merge_ticket(merged.number, t7.number), f"merge #{merged.number}")
        merged.merged_into = t7.number
        t7.merged_from.append(merged.number)
        for msgid in merged.message_ids:
            message_ids[msgid] = t7.number
    # RT ignores the Cc header of mail by default ($ParseNewMessageForTicketCcs): add it.
    _check(root.edit_ticket(7, Cc=CC_MEMBER), "Cc of #7")
    reply_by_mail(t7, "Algun avanç amb el router?\n")
    staff_reply7 = "Us enviem un router nou aquesta setmana.\n"
    _check(staff.reply(7, text=staff_reply7), "staff reply on #7")
    t7.texts.append(staff_reply7)
    t7.status = "open"

    # 9: opened by staff for a member (RT mails the requestor).
    created_text = "Hem programat una aturada del servei dijous a les 8 h.\n"
    number = staff.create_ticket(
        Queue=SECOND_QUEUE,
        Subject="Aturada programada",
        Requestors=SECOND_MEMBER,
        Text=created_text,
    )
    if number != 9:
        raise RuntimeError(f"REST created ticket {number}, expected 9")
    tickets[9] = SeededTicket(
        number=9,
        queue=SECOND_QUEUE,
        subject="Aturada programada",
        status="new",
        owner="Nobody",
        requestors=[SECOND_MEMBER],
        texts=[created_text],
    )

    return Seeded(
        rtname=server.rtname,
        queues=["General", SECOND_QUEUE],
        staff_user=STAFF_USER,
        staff_email=STAFF_EMAIL,
        tickets=tickets,
        merged={t.number: t.merged_into for t in tickets.values() if t.merged_into},
        deleted=[t.number for t in tickets.values() if t.status == "deleted"],
        message_ids=message_ids,
        seconds=time.monotonic() - started,
    )
