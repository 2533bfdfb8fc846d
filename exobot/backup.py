"""`exobot backup DIR` and `exobot restore DIR`: a consistent copy of a running exobot and
its way back.

A backup directory holds:

- `database.sqlite3` (SQLite, copied with SQLite's online backup API: one consistent
  snapshot, writers go on meanwhile) or `database.dump` (PostgreSQL, `pg_dump -Fc` on an
  exported snapshot, checked by its exit status and `pg_restore --list`);
- `matrix/`: the Matrix store (`matrix.store_path`: the bot's device keys, Megolm sessions,
  session file), its SQLite files copied with the backup API too;
- `manifest.json`: format, exobot's version, time, database kind, migration heads, rows per
  table (counted in the same snapshot as the copy), and each file's size and SHA-256.

The Matrix store is copied *before* the database: the session file's sync token then never
runs ahead of the database, so a restored bot handles again (rather than misses) what was
said in between. A backup is written into a temporary sibling directory and renamed into
place at the end: a failed run leaves no half backup behind, and an existing backup is
never written over. The configuration file is not copied (it holds secrets).

`restore` checks the whole backup (manifest, every checksum, the database file's integrity,
known migrations) before it changes anything, refuses while exobot runs (exobot.runlock),
keeps what it replaces (`….before-restore-TIME`), and checks the restored rows per table
against the manifest.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import os
import shutil
import sqlite3
import subprocess
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from exobot.config import Config
from exobot.db.engine import (
    SQLITE_BUSY_TIMEOUT_MS,
    create_private_file,
    is_sqlite,
    is_sqlite_file,
    make_private_dirs,
    sqlite_file,
    sync_url,
)
from exobot.runlock import LockHeld, RunLock

FORMAT = 1
MANIFEST = "manifest.json"
SQLITE_FILE = "database.sqlite3"
DUMP_FILE = "database.dump"
MATRIX_DIR = "matrix"
# pg_dump/pg_restore of a helpdesk's database takes seconds to minutes; an hour means stuck.
PG_TIMEOUT_SECONDS = 3600
# SQLite's side files: the backup API reads through them, so they are never copied.
_SIDE_SUFFIXES = ("-wal", "-shm", "-journal")


class BackupError(Exception):
    """A backup or restore that cannot go on; the message says why, for the administrator."""


@dataclass(frozen=True)
class Snapshot:
    """What was read in the copy's own snapshot."""

    heads: list[str]
    counts: dict[str, int]


def exobot_version() -> str:
    """The installed exobot's version ("unknown" from a bare source tree)."""
    try:
        return importlib.metadata.version("exobot")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def sha256(path: Path) -> str:
    """The file's SHA-256, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sqlite_copy(source: Path, target: Path) -> None:
    """Copy an SQLite database, live or not, with the online backup API: all pages in one
    step, so the copy is one consistent snapshot (in WAL mode writers are not held up). A
    `target` that does not exist yet is created with mode 0600."""
    # A new copy is private from its first byte (it holds what the database holds).
    create_private_file(target)
    # Read-write: a read-only connection cannot open a WAL database whose -shm is missing.
    src = sqlite3.connect(source, timeout=SQLITE_BUSY_TIMEOUT_MS / 1000)
    try:
        dst = sqlite3.connect(target)
        try:
            src.backup(dst)
            # The copy is a plain single file (a WAL database's copy would stay in WAL mode
            # and need side files to be read); exobot sets WAL again when it opens it.
            dst.execute("PRAGMA journal_mode=DELETE")
        finally:
            dst.close()
    finally:
        src.close()


def sqlite_snapshot(path: Path) -> Snapshot:
    """Migration heads and rows per table of an SQLite file (a copy nobody writes)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tables = [
            row[0]
            for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' "
                "AND name NOT LIKE 'sqlite_%' ORDER BY name"
            )
        ]
        counts = {t: conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables}
        heads = []
        if "alembic_version" in tables:
            heads = sorted(r[0] for r in conn.execute("SELECT version_num FROM alembic_version"))
        return Snapshot(heads, counts)
    finally:
        conn.close()


def sqlite_integrity(path: Path) -> str | None:
    """None when `PRAGMA integrity_check` says ok, else its first complaint."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)
        try:
            result = conn.execute("PRAGMA integrity_check").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.DatabaseError as error:
        return str(error)
    return None if result == "ok" else result


# ------------------------------------------------------------------------- PostgreSQL


def _libpq(url: str) -> tuple[str, dict[str, str]]:
    """A libpq connection URI without the password, and the environment carrying it (so it
    never shows in the process list)."""
    parsed = make_url(url)
    env = dict(os.environ)
    if parsed.password:
        env["PGPASSWORD"] = str(parsed.password)
    uri = parsed.set(drivername="postgresql", password=None)
    return uri.render_as_string(hide_password=False), env


def _pg_tool(name: str) -> str:
    found = shutil.which(name)
    if not found:
        raise BackupError(f"{name} is not installed (Debian: apt-get install postgresql-client)")
    return found


def _run_pg(cmd: list[str], env: dict[str, str], what: str) -> str:
    try:
        result = subprocess.run(
            cmd,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=PG_TIMEOUT_SECONDS,
        )
    except subprocess.TimeoutExpired:
        raise BackupError(f"{what} did not finish within {PG_TIMEOUT_SECONDS} s") from None
    if result.returncode != 0:
        detail = result.stderr.strip().splitlines()[-5:]
        raise BackupError(f"{what} failed (exit {result.returncode}): {' / '.join(detail)}")
    return result.stdout


def _pg_counts(conn) -> Snapshot:  # noqa: ANN001 - a SQLAlchemy Connection
    tables = conn.execute(
        text(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = "
            "current_schema() AND table_type = 'BASE TABLE' ORDER BY table_name"
        )
    ).scalars()
    counts = {
        t: conn.execute(text(f'SELECT count(*) FROM "{t}"')).scalar_one() for t in list(tables)
    }
    heads = []
    if "alembic_version" in counts:
        heads = sorted(conn.execute(text("SELECT version_num FROM alembic_version")).scalars())
    return Snapshot(heads, counts)


def pg_dump(url: str, target: Path) -> Snapshot:
    """`pg_dump -Fc` of the database on a snapshot exported by a transaction that counts the
    rows in that same snapshot; then `pg_restore --list` must read the dump whole."""
    uri, env = _libpq(url)
    engine = create_engine(sync_url(url), poolclass=NullPool)
    try:
        with engine.connect() as conn:
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                snapshot_id = conn.execute(text("SELECT pg_export_snapshot()")).scalar_one()
                snapshot = _pg_counts(conn)
                # The exporting transaction stays open until pg_dump has started on it.
                _run_pg(
                    [
                        _pg_tool("pg_dump"),
                        "--format=custom",
                        f"--snapshot={snapshot_id}",
                        f"--file={target}",
                        f"--dbname={uri}",
                    ],
                    env,
                    "pg_dump",
                )
    finally:
        engine.dispose()
    listing = _run_pg([_pg_tool("pg_restore"), "--list", str(target)], env, "pg_restore --list")
    dumped = {
        line.split()[-2] for line in listing.splitlines() if " TABLE DATA " in line and ";" in line
    }
    missing = sorted(set(snapshot.counts) - dumped)
    if missing:
        raise BackupError(f"the dump lacks the data of table(s) {', '.join(missing)}")
    return snapshot


def pg_restore(url: str, dump: Path) -> None:
    """Restore a dump into the configured database in one transaction (all or nothing),
    dropping the objects it holds first."""
    uri, env = _libpq(url)
    _run_pg(
        [
            _pg_tool("pg_restore"),
            "--clean",
            "--if-exists",
            "--no-owner",
            "--no-privileges",
            "--single-transaction",
            "--exit-on-error",
            f"--dbname={uri}",
            str(dump),
        ],
        env,
        "pg_restore",
    )


def pg_snapshot(url: str) -> Snapshot:
    """Migration heads and rows per table of the configured PostgreSQL database."""
    engine = create_engine(sync_url(url), poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return _pg_counts(conn)
    finally:
        engine.dispose()


# -------------------------------------------------------------------------- the store


def copy_store(source: Path, target: Path) -> list[str]:
    """Copy the Matrix store: SQLite files with the backup API, other files as they are
    (temporary and SQLite side files left out); returns the relative paths copied."""
    copied = []
    target.mkdir(mode=0o700, parents=True, exist_ok=True)
    for path in sorted(source.rglob("*")):
        relative = path.relative_to(source)
        if path.is_symlink() or path.is_dir():
            if path.is_dir() and not path.is_symlink():
                (target / relative).mkdir(mode=0o700, parents=True, exist_ok=True)
            continue
        if path.name.endswith(_SIDE_SUFFIXES) or path.suffix == ".tmp":
            continue
        destination = target / relative
        if is_sqlite_file(path):
            sqlite_copy(path, destination)
        else:
            shutil.copyfile(path, destination)
        os.chmod(destination, 0o600)
        copied.append(str(relative))
    return copied


# ----------------------------------------------------------------------------- backup


def backup(config: Config, destination: Path) -> dict:
    """Write a backup of the configured database and Matrix store into `destination` (new, or
    an empty directory); returns the manifest."""
    destination = destination.absolute()
    if destination.exists() and (not destination.is_dir() or any(destination.iterdir())):
        raise BackupError(
            f"{destination} already exists: a backup is never written over another; "
            "name a new directory (e.g. with the date)"
        )
    destination.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix=f".{destination.name}.partial-", dir=destination.parent))
    try:
        os.chmod(work, 0o700)  # personal data, device keys, an access token
        manifest = _write_backup(config, work)
        manifest["seconds"] = round(time.monotonic() - started, 3)
        (work / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        _fsync_tree(work)
        if destination.exists():
            destination.rmdir()  # empty: checked above
        os.rename(work, destination)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return manifest


def _write_backup(config: Config, work: Path) -> dict:
    url = config.database.url
    store_files: list[str] | None = None
    # The store first: its sync token must not run ahead of the database (module docstring).
    if config.matrix is not None and Path(config.matrix.store_path).is_dir():
        store_files = copy_store(Path(config.matrix.store_path), work / MATRIX_DIR)
    if is_sqlite(url):
        source = Path(make_url(url).database)
        if not source.is_file():
            raise BackupError(f"the database {source} does not exist")
        kind, name = "sqlite", SQLITE_FILE
        sqlite_copy(source, work / name)
        snapshot = sqlite_snapshot(work / name)
    else:
        kind, name = "postgresql", DUMP_FILE
        snapshot = pg_dump(url, work / name)
    files = {}
    for path in sorted(p for p in work.rglob("*") if p.is_file()):
        files[str(path.relative_to(work))] = {"size": path.stat().st_size, "sha256": sha256(path)}
    return {
        "format": FORMAT,
        "exobot_version": exobot_version(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "database": {
            "kind": kind,
            "file": name,
            "migration_heads": snapshot.heads,
            "counts": snapshot.counts,
        },
        "matrix_store": None if store_files is None else {"files": store_files},
        "files": files,
    }


def _fsync_tree(root: Path) -> None:
    for path in [*root.rglob("*"), root]:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# ---------------------------------------------------------------------------- restore


def read_manifest(source: Path) -> dict:
    """The backup's manifest after checking that every file it lists is there, whole."""
    path = source / MANIFEST
    if not source.is_dir():
        raise BackupError(f"{source} is not a directory")
    if not path.is_file():
        raise BackupError(
            f"{source} is not a complete exobot backup: it has no {MANIFEST} "
            "(a backup that stopped half-way has none)"
        )
    try:
        manifest = json.loads(path.read_text())
        kind = manifest["database"]["kind"]
        files = manifest["files"]
        database_file = manifest["database"]["file"]
    except (ValueError, KeyError, TypeError) as error:
        raise BackupError(f"{path} is unreadable ({error!r})") from None
    if manifest.get("format") != FORMAT:
        raise BackupError(f"{path}: backup format {manifest.get('format')!r}, expected {FORMAT}")
    if kind not in ("sqlite", "postgresql") or database_file not in files:
        raise BackupError(f"{path}: no database file listed")
    for relative, expected in sorted(files.items()):
        file = source / relative
        if not file.resolve().is_relative_to(source.resolve()):
            raise BackupError(f"{path}: {relative} lies outside the backup")
        if not file.is_file():
            raise BackupError(f"the backup is incomplete: {relative} is missing")
        if file.stat().st_size != expected["size"] or sha256(file) != expected["sha256"]:
            raise BackupError(f"the backup is damaged: {relative} does not match its checksum")
    return manifest


def _check_heads(config: Config, heads: list[str]) -> None:
    """Every migration revision of the backup must be known to this exobot."""
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    from exobot.db.migrate import alembic_config
    from exobot.plugins import plugin_migrations

    script = ScriptDirectory.from_config(
        alembic_config(config.database.url, plugin_migrations(config))
    )
    for head in heads:
        try:
            known = script.get_revision(head)
        except CommandError:
            known = None
        if known is None:
            raise BackupError(
                f"the backup's database is at migration {head}, unknown to this exobot: "
                "restore it with the version that made it"
            )


def _set_aside(path: Path, stamp: str) -> Path | None:
    """Rename an existing file or directory to PATH.before-restore-STAMP; returns the new name."""
    if not path.exists():
        return None
    kept = path.with_name(f"{path.name}.before-restore-{stamp}")
    os.rename(path, kept)
    return kept


def restore(config: Config, source: Path) -> list[str]:
    """Bring the backup in `source` back into the configured database and Matrix store;
    returns lines saying what was done. Raises BackupError (nothing changed when the backup
    is incomplete) or LockHeld (exobot runs)."""
    source = source.absolute()
    url = config.database.url
    database = sqlite_file(url)
    fresh = database is not None and not database.exists()
    lock = RunLock(url)
    lock.acquire(shared=False)  # LockHeld while exobot runs; keeps a start out meanwhile
    try:
        return _restore_locked(config, source)
    finally:
        if fresh and database.exists() and database.stat().st_size == 0:
            # The empty database the lock made private (ensure_sqlite_dir): a refused
            # restore changes nothing.
            database.unlink()
        lock.release()


def _restore_locked(config: Config, source: Path) -> list[str]:
    manifest = read_manifest(source)
    url = config.database.url
    kind = "sqlite" if is_sqlite(url) else "postgresql"
    if manifest["database"]["kind"] != kind:
        raise BackupError(
            f"the backup holds a {manifest['database']['kind']} database; the configuration "
            f"names a {kind} one (exobot db copy moves SQLite to PostgreSQL)"
        )
    database_file = source / manifest["database"]["file"]
    if kind == "sqlite":
        problem = sqlite_integrity(database_file)
        if problem:
            raise BackupError(f"the backup's database is damaged: {problem}")
    _check_heads(config, manifest["database"]["migration_heads"])
    has_store = manifest.get("matrix_store") is not None
    said = []
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    if kind == "sqlite":
        said.extend(_restore_sqlite(Path(make_url(url).database), database_file, stamp))
        snapshot = sqlite_snapshot(Path(make_url(url).database))
    else:
        pg_restore(url, database_file)
        said.append(f"database {make_url(url).database} restored from {database_file.name}")
        snapshot = pg_snapshot(url)
    expected = manifest["database"]["counts"]
    wrong = {t: (n, snapshot.counts.get(t)) for t, n in expected.items()}
    wrong = {t: pair for t, pair in wrong.items() if pair[0] != pair[1]}
    if wrong:
        raise BackupError(f"restored rows differ from the backup's (expected, found): {wrong}")
    said.append(f"{len(expected)} tables, {sum(expected.values())} rows: as in the backup")
    if has_store and config.matrix is not None:
        store = Path(config.matrix.store_path)
        kept = _set_aside(store, stamp)
        if kept:
            said.append(f"the Matrix store {store} was kept as {kept}")
        copy_store(source / MATRIX_DIR, store)
        os.chmod(store, 0o700)
        said.append(f"Matrix store restored into {store} (the bot's device and keys)")
    elif has_store:
        said.append("the backup's Matrix store was not restored: no matrix section configured")
    elif config.matrix is not None:
        said.append("the backup has no Matrix store: the bot will log in as a new device")
    return said


def _restore_sqlite(target: Path, backup_file: Path, stamp: str) -> list[str]:
    said = []
    make_private_dirs(target.parent)
    if target.exists() and target.stat().st_size > 0:  # an empty one holds nothing to keep
        # A clean single-file copy of what is replaced (its WAL included), then the old files go.
        kept = target.with_name(f"{target.name}.before-restore-{stamp}")
        sqlite_copy(target, kept)
        for suffix in ("", *_SIDE_SUFFIXES):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f"{target}{suffix}")
        said.append(f"the database {target} was kept as {kept}")
    sqlite_copy(backup_file, target)
    os.chmod(target, 0o600)
    said.append(f"database {target} restored from {backup_file.name}")
    return said


# -------------------------------------------------------------------------------- CLI


def run_backup(config: Config, destination: str) -> int:
    """`exobot backup DIR`: prints what was written; exit 1 with one line on failure."""
    import sys

    try:
        manifest = backup(config, Path(destination))
    except (BackupError, OSError, sqlite3.Error, SQLAlchemyError) as error:
        print(f"backup failed: {error}", file=sys.stderr)
        return 1
    size = sum(f["size"] for f in manifest["files"].values())
    counts = manifest["database"]["counts"]
    store = manifest["matrix_store"]
    print(
        f"backup written to {destination}: {manifest['database']['kind']} database "
        f"({counts.get('tickets', 0)} tickets, {sum(counts.values())} rows), "
        f"{'Matrix store (' + str(len(store['files'])) + ' files)' if store else 'no Matrix store'}"
        f", {size / 1e6:.1f} MB in {manifest['seconds']:.1f} s"
    )
    return 0


def run_restore(config: Config, source: str) -> int:
    """`exobot restore DIR`: prints what was done; exit 1 with one line when refused."""
    import sys

    try:
        said = restore(config, Path(source))
    except LockHeld as error:
        print(
            f"exobot is running on this database ({error}): stop it before restoring",
            file=sys.stderr,
        )
        return 1
    except (BackupError, OSError, sqlite3.Error, SQLAlchemyError) as error:
        print(f"restore failed: {error}", file=sys.stderr)
        return 1
    for line in said:
        print(line)
    print("restore done: start exobot")
    return 0
