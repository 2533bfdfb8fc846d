"""privacy: entry_originals, and sensitive values already stored masked in place

Revision ID: 0005
Revises: 0004
Create Date: 2027-01-10
"""

import json
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from exobot.core.sensitive import find_sensitive, mask_sensitive
from exobot.db.repository import TITLE_ENTRY, fold, search_rowid
from exobot.db.tables import UtcDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# Entries are read and re-masked this many at a time (memory stays bounded on big databases).
BATCH = 500

_entries = sa.table(
    "entries",
    sa.column("id", sa.Integer),
    sa.column("ticket_id", sa.Integer),
    sa.column("kind", sa.String),
    sa.column("body", sa.Text),
    sa.column("data", sa.JSON),
)
_tickets = sa.table("tickets", sa.column("id", sa.Integer), sa.column("title", sa.String))
_inbound = sa.table("inbound_mail", sa.column("id", sa.Integer), sa.column("subject", sa.String))
_originals = sa.table(
    "entry_originals",
    sa.column("entry_id", sa.Integer),
    sa.column("ticket_id", sa.Integer),
    sa.column("body", sa.Text),
    sa.column("subject", sa.Text),
    sa.column("kinds", sa.Text),
    sa.column("created_at", UtcDateTime()),
)


def upgrade() -> None:
    """Apply this migration."""
    op.create_table(
        "entry_originals",
        sa.Column("entry_id", sa.Integer(), nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=False),
        sa.Column("body", sa.Text(), nullable=True),
        sa.Column("subject", sa.Text(), nullable=True),
        sa.Column("kinds", sa.Text(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["entry_id"], ["entries.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("entry_id"),
    )
    op.create_index("ix_entry_originals_ticket_id", "entry_originals", ["ticket_id"])
    remask()


def remask() -> None:
    """Mask what was stored before masking existed: entry bodies and mail subjects (their
    originals go to entry_originals and their search rows are rebuilt), the titles in title
    changes, ticket titles (re-indexed) and the subjects listed for received mail."""
    conn = op.get_bind()
    sqlite = conn.dialect.name == "sqlite"
    now = datetime.now(UTC)
    last = 0
    while True:
        rows = conn.execute(
            sa.select(_entries).where(_entries.c.id > last).order_by(_entries.c.id).limit(BATCH)
        ).all()
        if not rows:
            break
        last = rows[-1].id
        for row in rows:
            _remask_entry(conn, sqlite, row, now)
    for row in conn.execute(sa.select(_tickets.c.id, _tickets.c.title)).all():
        masked = mask_sensitive(row.title or "")
        if masked != (row.title or ""):
            conn.execute(_tickets.update().where(_tickets.c.id == row.id).values(title=masked))
            _reindex(conn, sqlite, row.id, TITLE_ENTRY, masked)
    for row in conn.execute(
        sa.select(_inbound.c.id, _inbound.c.subject).where(_inbound.c.subject.is_not(None))
    ).all():
        masked = mask_sensitive(row.subject)
        if masked != row.subject:
            conn.execute(_inbound.update().where(_inbound.c.id == row.id).values(subject=masked))


def _remask_entry(conn: sa.Connection, sqlite: bool, row: sa.Row, now: datetime) -> None:
    """Mask one entry's body, subject and title-change titles; keep its originals."""
    data = dict(row.data or {})
    body, subject = row.body, data.get("subject")
    kinds: set[str] = set()
    masked_body = _masked(body, kinds)
    masked_subject = _masked(subject if isinstance(subject, str) else None, kinds)
    changed_data = False
    if masked_subject is not None:
        data["subject"] = masked_subject
        changed_data = True
    if row.kind == "title":
        for key in ("from", "to"):
            value = data.get(key)
            if isinstance(value, str) and mask_sensitive(value) != value:
                data[key] = mask_sensitive(value)
                changed_data = True
    if masked_body is None and not changed_data:
        return
    values: dict = {}
    if masked_body is not None:
        values["body"] = masked_body
    if changed_data:
        values["data"] = data
    conn.execute(_entries.update().where(_entries.c.id == row.id).values(**values))
    if not kinds:
        return  # only a title change's titles: the titles themselves are masked below
    conn.execute(
        _originals.insert().values(
            entry_id=row.id,
            ticket_id=row.ticket_id,
            body=body if masked_body is not None else None,
            subject=subject if masked_subject is not None else None,
            kinds=json.dumps(sorted(kinds)),
            created_at=now,
        )
    )
    searchable = " ".join(
        filter(None, [data.get("subject"), masked_body if masked_body is not None else body])
    )
    _reindex(conn, sqlite, row.ticket_id, row.id, searchable)


def _masked(text: str | None, kinds: set[str]) -> str | None:
    """The masked text when it holds sensitive values (their kinds added to `kinds`), else None."""
    if not text:
        return None
    findings = find_sensitive(text)
    if not findings:
        return None
    kinds.update(f.kind.value for f in findings)
    return mask_sensitive(text)


def _reindex(conn: sa.Connection, sqlite: bool, ticket: int, entry_id: int, content: str) -> None:
    """Replace an entry's (or a title's) search_index row by one over the masked text."""
    if sqlite:
        rowid = search_rowid(ticket, entry_id)
        conn.execute(sa.text("DELETE FROM search_index WHERE rowid = :r"), {"r": rowid})
        if content:
            conn.execute(
                sa.text(
                    "INSERT INTO search_index (rowid, ticket_id, entry_id, content)"
                    " VALUES (:r, :t, :e, :c)"
                ),
                {"r": rowid, "t": ticket, "e": entry_id, "c": content},
            )
        return
    conn.execute(
        sa.text("DELETE FROM search_index WHERE ticket_id = :t AND entry_id = :e"),
        {"t": ticket, "e": entry_id},
    )
    if content:
        conn.execute(
            sa.text("INSERT INTO search_index (ticket_id, entry_id, content) VALUES (:t, :e, :c)"),
            {"t": ticket, "e": entry_id, "c": fold(content)},
        )


def downgrade() -> None:
    """Undo this migration: the table goes; the masked texts stay masked (the originals are
    not put back into the places that show them)."""
    op.drop_index("ix_entry_originals_ticket_id", table_name="entry_originals")
    op.drop_table("entry_originals")
