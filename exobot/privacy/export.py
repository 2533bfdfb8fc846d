"""`exobot privacy export ADDRESS`: everything held about one person, in one zip archive.

The archive holds `index.html` (readable in any browser; every stored text escaped),
`data.json` (the same, complete, for machines), the attachments of the person's mails
(`attachments/`) and the raw mails they sent (`mails/`). It covers the tickets the person
requested or takes part in, and on other tickets the entries about them (`concerns.concern`,
the rule the erasure follows); the original text of what was masked and the attachments only
of the entries they wrote or we sent them (their own data: other people's entries keep their
masked text); and each plugin's export. The address's related addresses (the plugins know a
member's two) are included.
"""

from __future__ import annotations

import json
import os
import re
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from html import escape
from pathlib import Path
from typing import Any, BinaryIO

import sqlalchemy as sa

from exobot.core.references import format_reference
from exobot.db.tables import AttachmentRow, EntryRow, InboundMailRow, ParticipantRow, TicketRow
from exobot.plugins.base import DataSubject
from exobot.privacy.concerns import Concern, address_pattern, concern, like_any
from exobot.privacy.session import PrivacySession

T = TicketRow.__table__
E = EntryRow.__table__
P = ParticipantRow.__table__
A = AttachmentRow.__table__
I = InboundMailRow.__table__  # noqa: E741

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class ExportResult:
    """Where the archive went and what it holds."""

    path: Path
    tickets: int
    entries: int
    attachments: int
    mails: int
    plugins: tuple[str, ...]


def default_output(address: str, now: datetime) -> Path:
    """`exobot-export-<address>-<date>.zip` in the working folder (address made file-safe)."""
    return Path(f"exobot-export-{_SAFE.sub('_', address)}-{now.date().isoformat()}.zip")


@contextmanager
def _new_private_file(path: Path) -> Iterator[BinaryIO]:
    """A file created for the archive, readable by its owner only from its first byte; never
    an existing one (FileExistsError): an existing file would keep its permissions (a
    person's data readable by all) and a mistyped --output replaced whatever it named. An
    archive left half-written by an error is removed."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as file:
            yield file
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def _json_default(value: object) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)


async def export_person(
    session: PrivacySession, address: str, output: Path | None = None
) -> ExportResult:
    """Write the archive about the person at `address` (see the module's text)."""
    now = session.clock.now()
    first = address.strip().lower()
    addresses = {first} | await session.plugins.related(first)
    lowered = sorted(addresses)
    pattern = address_pattern(addresses)
    path = Path(output) if output else default_output(first, now)
    prefix = session.config.tickets.prefix
    tickets: list[dict[str, Any]] = []
    counts = {"entries": 0, "attachments": 0, "mails": 0}
    with _new_private_file(path) as raw_file, zipfile.ZipFile(raw_file, "w", zipfile.ZIP_DEFLATED) as z:
        async with session.repository.engine.connect() as conn:
            requested = {
                r.id
                for r in await conn.execute(
                    sa.select(T.c.id).where(sa.func.lower(T.c.requestor).in_(lowered))
                )
            }
            participant = {
                r[0]
                for r in await conn.execute(
                    sa.select(P.c.ticket_id).where(sa.func.lower(P.c.address).in_(lowered))
                )
            }
            shared = participant | {
                r[0]
                for r in await conn.execute(
                    sa.select(E.c.ticket_id)
                    .where(
                        sa.or_(
                            sa.func.lower(E.c.actor).in_(lowered),
                            like_any(E.c.body, addresses),
                            like_any(sa.cast(E.c.data, sa.Text), addresses),
                        )
                    )
                    .distinct()
                )
            } | {
                r[0]
                for r in await conn.execute(sa.select(T.c.id).where(like_any(T.c.title, addresses)))
            }
            originals = await conn.run_sync(
                lambda sync: sa.inspect(sync).has_table("entry_originals")
            )
            for number in sorted(requested | shared):
                ticket = (await conn.execute(sa.select(T).where(T.c.id == number))).first()
                if ticket is None:
                    continue
                entries = []
                rows = await conn.execute(
                    sa.select(E).where(E.c.ticket_id == number).order_by(E.c.id)
                )
                for row in rows.all():
                    how = concern(
                        row.kind, row.actor, row.data or {}, row.body, addresses, pattern
                    )
                    if number not in requested and how is Concern.NONE:
                        continue  # a shared ticket: only what is about the person
                    entry = {
                        "id": row.id,
                        "kind": row.kind,
                        "actor": row.actor,
                        "at": row.created_at,
                        "text": row.body,
                        "data": row.data or {},
                    }
                    if how < Concern.PARTY:
                        # Someone else's entry: its masked text only, never their
                        # original or their attachments.
                        entries.append(entry)
                        continue
                    if originals:
                        original = (
                            await conn.execute(
                                sa.text(
                                    "SELECT body, subject FROM entry_originals WHERE entry_id = :e"
                                ),
                                {"e": row.id},
                            )
                        ).first()
                        if original is not None:
                            entry["original"] = {"text": original.body, "subject": original.subject}
                    files = []
                    for meta in (
                        await conn.execute(
                            sa.select(A.c.id, A.c.filename, A.c.content_type, A.c.size).where(
                                A.c.entry_id == row.id
                            )
                        )
                    ).all():
                        name = f"attachments/{number}/{meta.id}-{_SAFE.sub('_', meta.filename)[:100]}"
                        data = (
                            await conn.execute(sa.select(A.c.data).where(A.c.id == meta.id))
                        ).scalar_one()
                        z.writestr(name, bytes(data))
                        counts["attachments"] += 1
                        files.append(
                            {"file": name, "filename": meta.filename, "type": meta.content_type}
                        )
                    if files:
                        entry["attachments"] = files
                    entries.append(entry)
                about = number in requested | participant or pattern.search(ticket.title or "")
                if not about and not entries:
                    continue  # a candidate only: another address like theirs
                counts["entries"] += len(entries)
                tickets.append(
                    {
                        "reference": format_reference(prefix, number),
                        "title": ticket.title,
                        "requestor": ticket.requestor,
                        "role": "requestor" if number in requested else "participant",
                        "queue": ticket.queue,
                        "status": ticket.status,
                        "created_at": ticket.created_at,
                        "updated_at": ticket.updated_at,
                        "entries": entries,
                    }
                )
            mails = []
            ids = [
                r[0]
                for r in await conn.execute(
                    sa.select(I.c.id).where(sa.func.lower(I.c.sender).in_(lowered)).order_by(I.c.id)
                )
            ]
            for inbound_id in ids:  # one raw mail in memory at a time
                row = (await conn.execute(sa.select(I).where(I.c.id == inbound_id))).first()
                name = None
                if row.raw:
                    name = f"mails/{row.id}.eml"
                    z.writestr(name, bytes(row.raw))
                    counts["mails"] += 1
                mails.append(
                    {
                        "file": name,
                        "message_id": row.message_id,
                        "subject": row.subject,
                        "received_at": row.received_at,
                        "ticket": format_reference(prefix, row.ticket_id) if row.ticket_id else None,
                    }
                )
        plugins: dict[str, Any] = {}
        for each in lowered:
            for name, part in (await session.plugins.export(DataSubject(address=each))).items():
                plugins.setdefault(name, {})[each] = part
        for number in sorted(requested):
            got = await session.plugins.export(DataSubject(ticket=number))
            for name, part in got.items():
                plugins.setdefault(name, {})[format_reference(prefix, number)] = part
        data = {
            "addresses": lowered,
            "exported_at": now,
            "tickets": tickets,
            "raw_mails": mails,
            "plugins": plugins,
        }
        text = json.dumps(data, ensure_ascii=False, indent=2, default=_json_default)
        z.writestr("data.json", text)
        z.writestr("index.html", _index_html(json.loads(text)))
    return ExportResult(
        path,
        len(tickets),
        counts["entries"],
        counts["attachments"],
        counts["mails"],
        tuple(sorted(plugins)),
    )


def _index_html(data: dict[str, Any]) -> str:
    """The archive's readable page: every stored value escaped, nothing fetched from outside."""
    e = escape
    out = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; style-src 'unsafe-inline'\">",
        "<title>exobot: data export</title>",
        "<style>body{font-family:sans-serif;max-width:60em;margin:auto;padding:1em}"
        "pre{white-space:pre-wrap;background:#f4f4f4;padding:.5em}"
        "h2{border-top:1px solid #ccc;padding-top:.5em}</style></head><body>",
        "<h1>Data held about " + e(", ".join(data["addresses"])) + "</h1>",
        f"<p>Exported at {e(data['exported_at'])}. The complete data is in data.json.</p>",
        f"<h2>Tickets ({len(data['tickets'])})</h2><ul>",
    ]
    for ticket in data["tickets"]:
        anchor = e(ticket["reference"].replace("#", "-"))
        out.append(
            f"<li><a href='#{anchor}'>{e(ticket['reference'])}</a> · {e(ticket['title'])}"
            f" ({e(ticket['role'])}, {e(ticket['status'])})</li>"
        )
    out.append("</ul>")
    for ticket in data["tickets"]:
        anchor = e(ticket["reference"].replace("#", "-"))
        out.append(f"<h2 id='{anchor}'>{e(ticket['reference'])} · {e(ticket['title'])}</h2>")
        out.append(
            f"<p>Requestor {e(ticket['requestor'])} · queue {e(ticket['queue'])} · status "
            f"{e(ticket['status'])} · created {e(ticket['created_at'])}</p>"
        )
        for entry in ticket["entries"]:
            subject = (entry.get("data") or {}).get("subject")
            out.append(
                f"<h3>{e(entry['at'])} · {e(entry['kind'])} · {e(entry['actor'])}</h3>"
            )
            if subject:
                out.append(f"<p>Subject: {e(subject)}</p>")
            if entry.get("text"):
                out.append(f"<pre>{e(entry['text'])}</pre>")
            original = entry.get("original")
            if original:
                out.append("<p>Original text (as received, before masking):</p>")
                if original.get("subject"):
                    out.append(f"<p>Subject: {e(original['subject'])}</p>")
                if original.get("text"):
                    out.append(f"<pre>{e(original['text'])}</pre>")
            for item in entry.get("attachments") or []:
                out.append(
                    f"<p>Attachment: <a href='{e(item['file'])}'>{e(item['filename'])}</a></p>"
                )
    out.append(f"<h2>Mails received from this person ({len(data['raw_mails'])})</h2><ul>")
    for mail in data["raw_mails"]:
        link = f"<a href='{e(mail['file'])}'>{e(mail['file'])}</a>" if mail["file"] else "(purged)"
        out.append(
            f"<li>{e(mail['received_at'])} · {e(mail['subject'] or '')} · "
            f"{e(mail['ticket'] or '')} · {link}</li>"
        )
    out.append("</ul>")
    for name, part in sorted(data["plugins"].items()):
        out.append(f"<h2>Plugin {e(name)}</h2>")
        out.append(f"<pre>{e(json.dumps(part, ensure_ascii=False, indent=2))}</pre>")
    out.append("</body></html>")
    return "\n".join(out)
