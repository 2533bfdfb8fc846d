"""`exobot db copy --to URL [--from URL]`: move an installation's database to another one
(typically SQLite → PostgreSQL).

The target is migrated first (the core and every given plugin's branch), so that its tables
are the application's own; then every table the source holds, core and plugins alike, is
copied in foreign-key order, in batches (memory stays bounded whatever the size), in one
transaction on the target; the row counts are compared table by table; each serial column's
sequence continues after the source's (ticket numbers are never reused); and the search rows
are written again in the target's own form (FTS5 rowids on SQLite, search_text() words on
PostgreSQL). A target that already holds tickets is refused, and nothing is written to it when
any check fails.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from exobot.db.engine import create_sync_engine
from exobot.db.migrate import upgrade
from exobot.db.repository import search_rowid, search_text
from exobot.db.tables import UtcDateTime
from exobot.runlock import LockHeld, RunLock, running_message

BATCH = 1000
# Rows per batch for a table with binary columns (attachments, raw mails): a few MB each.
BINARY_BATCH = 20
# Not copied as rows: Alembic's own table (the target's migrations wrote it), the search index
# (written again in the target's form), and SQLite's own tables and FTS5's shadow tables.
SKIPPED = ("alembic_version", "search_index")


class CopyError(Exception):
    """The copy cannot be made (the message says why); nothing was written to the target."""


@dataclass
class CopyReport:
    """What was copied: rows per table (in the order copied) and the seconds it took."""

    rows: dict[str, int] = field(default_factory=dict)
    search_rows: int = 0
    seconds: float = 0.0

    def lines(self) -> list[str]:
        """One line per table, then the total."""
        out = [f"{name}: {count} row(s)" for name, count in self.rows.items()]
        out.append(f"search index: {self.search_rows} row(s) rebuilt")
        out.append(f"copied {sum(self.rows.values())} row(s) in {self.seconds:.1f}s")
        return out


def copy_database(
    source_url: str,
    target_url: str,
    plugins: Mapping[str, Path] | None = None,
    progress: Callable[[str], None] = lambda line: None,
) -> CopyReport:
    """Copy the database at `source_url` into `target_url` (see the module's docstring);
    blocking. Raises CopyError when it is refused or a check fails."""
    started = time.monotonic()
    if same_database(source_url, target_url):
        raise CopyError("the source and the target are the same database: give another --to")
    # exobot must not run on either database meanwhile (its writes would be lost or mixed in),
    # and none may start until the copy is done.
    with RunLock(source_url) as source_lock, RunLock(target_url) as target_lock:
        for lock in (source_lock, target_lock):
            try:
                lock.acquire()
            except LockHeld as error:
                raise CopyError(running_message(error)) from None
        return _copy(source_url, target_url, plugins, progress, started)


def same_database(a: str, b: str) -> bool:
    """Whether two URLs name the same database: one SQLite file (however its path is written)
    or one PostgreSQL database on the same host and port. Different names for one server
    ("localhost", "127.0.0.1") are not told apart: the run lock still refuses those."""
    first, second = sa.make_url(a), sa.make_url(b)
    if first.get_backend_name() != second.get_backend_name():
        return False
    if first.get_backend_name() == "sqlite":
        paths = [Path(u.database or "").expanduser() for u in (first, second)]
        if not all(str(p) and str(p) != ":memory:" for p in paths):
            return False
        return os.path.realpath(paths[0]) == os.path.realpath(paths[1])
    where = [(u.host or "localhost", u.port or 5432, u.database) for u in (first, second)]
    return where[0] == where[1]


def _copy(
    source_url: str,
    target_url: str,
    plugins: Mapping[str, Path] | None,
    progress: Callable[[str], None],
    started: float,
) -> CopyReport:
    source = create_sync_engine(source_url)
    target = create_sync_engine(target_url)
    try:
        _refuse_used_target(target)
        progress("migrating the target")
        upgrade(target_url, plugins=plugins)
        report = CopyReport()
        with source.connect() as src, target.begin() as dst:
            _check_revisions(src, dst)
            tables = _tables_to_copy(src, dst)
            for table in reversed(tables):  # rows the migrations may have written
                dst.execute(table.delete())
            for table in tables:
                report.rows[table.name] = _copy_table(src, dst, table, progress)
            _set_sequences(src, dst, tables)
            report.search_rows = _copy_search_rows(src, dst, progress)
        if target.dialect.name == "postgresql":
            # Statistics for the planner, the visibility map for index-only scans, and GIN's
            # pending list merged into the index (the rows came in one go).
            with target.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(sa.text("VACUUM ANALYZE"))
        report.seconds = time.monotonic() - started
        return report
    finally:
        source.dispose()
        target.dispose()


def _refuse_used_target(target: sa.Engine) -> None:
    with target.connect() as conn:
        if not sa.inspect(conn).has_table("tickets"):
            return
        count = conn.execute(sa.text("SELECT count(*) FROM tickets")).scalar_one()
    if count:
        raise CopyError(f"the target already holds {count} ticket(s): copy into an empty database")


def _versions(conn: sa.Connection) -> set[str]:
    if not sa.inspect(conn).has_table("alembic_version"):
        return set()
    return set(conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars())


def _check_revisions(src: sa.Connection, dst: sa.Connection) -> None:
    """The source must be at the revisions the target was migrated to: same schema."""
    source, target = _versions(src), _versions(dst)
    if not source:
        raise CopyError("the source database has no exobot schema (alembic_version is missing)")
    if source != target:
        raise CopyError(
            f"the source is at revisions {sorted(source)} and the migrated target at"
            f" {sorted(target)}: run `exobot migrate` on the source first, with the same"
            " plugins enabled as for this copy"
        )


def _is_skipped(name: str) -> bool:
    return name in SKIPPED or name.startswith(("sqlite_", "search_index_"))


def _tables_to_copy(src: sa.Connection, dst: sa.Connection) -> list[sa.Table]:
    """The target's tables (as reflected, in foreign-key order) that hold the source's rows;
    CopyError when the source has a table or a column the target lacks (its data would be
    lost)."""
    metadata = sa.MetaData()
    metadata.reflect(bind=dst)
    source_inspector = sa.inspect(src)
    source_names = {n for n in source_inspector.get_table_names() if not _is_skipped(n)}
    missing = sorted(source_names - set(metadata.tables))
    if missing:
        raise CopyError(
            f"the target has no table {', '.join(missing)}: enable the plugins they belong to"
        )
    tables = []
    for table in metadata.sorted_tables:
        if _is_skipped(table.name) or table.name not in source_names:
            continue
        source_columns = {c["name"] for c in source_inspector.get_columns(table.name)}
        lost = sorted(source_columns - set(table.columns.keys()))
        if lost:
            raise CopyError(f"the target's {table.name} has no column {', '.join(lost)}")
        tables.append(table)
    return tables


def _reading_type(column: sa.Column) -> Any:
    """The type to read a column of the source with: the target's, made generic, with aware
    UTC datetimes (SQLite keeps them naive) and JSON decoded (SQLite keeps text)."""
    kind = column.type
    if isinstance(kind, sa.DateTime):
        return UtcDateTime()
    if isinstance(kind, sa.JSON):
        return sa.JSON()
    try:
        return kind.as_generic()
    except NotImplementedError:
        return kind


def _copy_table(
    src: sa.Connection, dst: sa.Connection, table: sa.Table, progress: Callable[[str], None]
) -> int:
    """Copy one table's rows in primary-key order, a batch at a time; returns how many, after
    checking that the target then holds as many as the source."""
    columns = [c for c in table.columns if c.computed is None]
    reading = sa.Table(
        table.name,
        sa.MetaData(),
        *(sa.Column(c.name, _reading_type(c), key=c.key) for c in columns),
    )
    order = [reading.c[c.key] for c in table.primary_key.columns] or list(reading.c)
    binary = any(isinstance(c.type, sa.LargeBinary) for c in columns)
    size = BINARY_BATCH if binary else BATCH
    # yield_per streams the rows; partitions(size) is what makes each batch one executemany
    # (without a size it follows the DBAPI cursor's arraysize: one row at a time on SQLite).
    result = src.execution_options(yield_per=size).execute(sa.select(reading).order_by(*order))
    copied = 0
    for part in result.partitions(size):
        dst.execute(table.insert(), [dict(row._mapping) for row in part])
        copied += len(part)
    expected = src.execute(sa.select(sa.func.count()).select_from(reading)).scalar_one()
    written = dst.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
    if not expected == written == copied:
        raise CopyError(
            f"{table.name}: the source has {expected} row(s), the target {written}: nothing"
            " was written"
        )
    progress(f"{table.name}: {copied} row(s)")
    return copied


def _source_next(src: sa.Connection, table: str, column: str) -> int:
    """The next value the source would give a serial column (at least max + 1)."""
    highest = src.execute(sa.text(f'SELECT max("{column}") FROM "{table}"')).scalar_one() or 0
    if src.dialect.name == "sqlite":
        if sa.inspect(src).has_table("sqlite_sequence"):
            seq = src.execute(
                sa.text("SELECT seq FROM sqlite_sequence WHERE name = :t"), {"t": table}
            ).scalar_one_or_none()
            highest = max(highest, seq or 0)
        return highest + 1
    if src.dialect.name == "postgresql":
        name = src.execute(
            sa.text("SELECT pg_get_serial_sequence(:t, :c)"), {"t": table, "c": column}
        ).scalar_one()
        if name is not None:
            row = src.execute(sa.text(f"SELECT last_value, is_called FROM {name}")).one()
            highest = max(highest, row.last_value if row.is_called else row.last_value - 1)
    return highest + 1


def _set_sequences(src: sa.Connection, dst: sa.Connection, tables: list[sa.Table]) -> None:
    """Each integer primary key's sequence continues after the source's next value."""
    for table in tables:
        keys = list(table.primary_key.columns)
        if len(keys) != 1 or not isinstance(keys[0].type, sa.Integer):
            continue
        column = keys[0].name
        nxt = _source_next(src, table.name, column)
        if dst.dialect.name == "postgresql":
            name = dst.execute(
                sa.text("SELECT pg_get_serial_sequence(:t, :c)"), {"t": table.name, "c": column}
            ).scalar_one()
            if name is not None:  # names from the catalog, never from input
                dst.execute(sa.text("SELECT setval(CAST(:q AS regclass), :n, false)"),
                            {"q": name, "n": nxt})  # fmt: skip
        elif sa.inspect(dst).has_table("sqlite_sequence"):
            dst.execute(sa.text("DELETE FROM sqlite_sequence WHERE name = :t"), {"t": table.name})
            dst.execute(
                sa.text("INSERT INTO sqlite_sequence (name, seq) VALUES (:t, :s)"),
                {"t": table.name, "s": nxt - 1},
            )


def _copy_search_rows(
    src: sa.Connection, dst: sa.Connection, progress: Callable[[str], None]
) -> int:
    """Write the source's search rows into the target in the target's form."""
    dst.execute(sa.text("DELETE FROM search_index"))
    to_sqlite = dst.dialect.name == "sqlite"
    insert = sa.text(
        "INSERT INTO search_index (rowid, ticket_id, entry_id, content) VALUES (:r, :t, :e, :c)"
        if to_sqlite
        else "INSERT INTO search_index (ticket_id, entry_id, content) VALUES (:t, :e, :c)"
    )
    result = src.execution_options(yield_per=BATCH).execute(
        sa.text("SELECT ticket_id, entry_id, content FROM search_index")
    )
    copied = 0
    for part in result.partitions(BATCH):
        rows = [
            {
                "r": search_rowid(r.ticket_id, r.entry_id),
                "t": r.ticket_id,
                "e": r.entry_id,
                "c": r.content if to_sqlite else search_text(r.content),
            }
            for r in part
        ]
        dst.execute(insert, rows)
        copied += len(rows)
    expected = src.execute(sa.text("SELECT count(*) FROM search_index")).scalar_one()
    if copied != expected:
        raise CopyError(f"search index: {expected} row(s) in the source, {copied} copied")
    progress(f"search index: {copied} row(s)")
    return copied


__all__ = ["CopyError", "CopyReport", "copy_database"]
