"""Database engines: the async one the app uses and the sync one migrations use."""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import Engine, Table, event
from sqlalchemy import create_engine as sa_create_engine
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import make_url
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

log = logging.getLogger("exobot.db")

SQLITE_BUSY_TIMEOUT_MS = 30_000
#: PostgreSQL connections kept per process, and how many more a busy moment may open: on the
#: async engine (the web, intake, the chat commands, the jobs) and on the blocking one, where
#: the repository's writer and side threads (exobot.db.repository.SIDE_THREADS) and the outbox
#: lanes' claims (4 mail lanes, 16 chat lanes) each hold one at a time; kept, not reopened per
#: use (a new PostgreSQL session costs more CPU than the transaction it serves).
PG_POOL_SIZE, PG_OVERFLOW = 10, 10
PG_SYNC_POOL_SIZE, PG_SYNC_OVERFLOW = 30, 5
#: TCP keepalives of every PostgreSQL session, on both ends (seconds; the server's are set per
#: session): a peer that died without closing its connections (its host gone, a cut network)
#: is noticed after idle + interval x count, about 25 s, instead of the systems' two hours.
#: The server then ends a dead leader's sessions, which frees its leader lock and the outbox
#: rows its lanes had claimed (else held, and the tickets' later rows behind them, for hours).
SERVER_KEEPALIVES = {
    "tcp_keepalives_idle": 10,
    "tcp_keepalives_interval": 5,
    "tcp_keepalives_count": 3,
}
CLIENT_KEEPALIVES = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
}
#: How long opening a PostgreSQL session may take (seconds, libpq's connect_timeout; a URL's
#: own `connect_timeout` wins): a server that accepts the connection but never answers (hung,
#: or a port that is no PostgreSQL) fails the command in seconds instead of psycopg's 130 s per
#: address. Read at each use (a test shortens it); psycopg makes anything under 2 s into 2 s.
#: It bounds the opening only: a statement, or the wait for the migration lock, may take long.
PG_CONNECT_TIMEOUT_SECONDS = 10
# Execution options of a read-only transaction (see SqlRepository.reading): on SQLite it
# begins DEFERRED, so it neither takes nor waits for the write lock (WAL readers never block).
READ_ONLY = {"exobot_read_only": True}
SQLITE_HEADER = b"SQLite format 3\x00"


def database_unavailable(error: BaseException) -> bool:
    """Whether `error` says the database cannot be reached right now (a server restarting, a
    connection cut, SQLite locked past its busy timeout) rather than that the work is wrong:
    the work is worth doing again later, unchanged. An error the server gives because of the
    data a statement carries (SQLSTATE class 22, 23 or 54) is the work's, even when the
    driver calls it operational."""
    if getattr(error, "connection_invalidated", False):
        return True
    # SQLAlchemy keeps the driver's exception in `.orig`; psycopg's carries the SQLSTATE
    # (SQLite's have none: a database locked past the busy timeout stays unavailable).
    sqlstate = getattr(getattr(error, "orig", None), "sqlstate", None) or getattr(
        error, "sqlstate", None
    )
    # 22 data exception, 23 integrity constraint violation, 54 program limit exceeded (54000
    # "index row size exceeds btree maximum": a long value in an indexed column). psycopg
    # raises class 54 as an OperationalError, which alone would say "unavailable": the same
    # work would be tried again for ever (one mail holding back all the mail after it).
    if isinstance(sqlstate, str) and sqlstate[:2] in ("22", "23", "54"):
        return False
    return isinstance(error, (OperationalError, InterfaceError))


def upsert_insert(conn: AsyncConnection, table: Table) -> Any:
    """An INSERT with the dialect's ON CONFLICT clauses (SQLite and PostgreSQL both have them)."""
    if conn.dialect.name == "postgresql":
        return pg_insert(table)
    return sqlite_insert(table)


def _with_driver(url: str, sqlite_driver: str) -> str:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        parsed = parsed.set(drivername=sqlite_driver)
    elif parsed.get_backend_name() in ("postgresql", "postgres"):
        if parsed.drivername in ("postgresql", "postgres"):
            # psycopg 3 serves sync and async.
            parsed = parsed.set(drivername="postgresql+psycopg")
        # In the URL, not only in pg_connect_args: the engines built from the URL alone
        # (Alembic's, the migration lock's, the backup's) must not wait for a silent server.
        parsed = parsed.update_query_dict({"connect_timeout": str(connect_timeout(url))})
    return parsed.render_as_string(hide_password=False)


def connect_timeout(url: str) -> str | int:
    """The URL's own connect_timeout, else PG_CONNECT_TIMEOUT_SECONDS."""
    given = make_url(url).query.get("connect_timeout")
    if isinstance(given, tuple):  # the parameter given more than once: libpq takes the last
        given = given[-1]
    return given or PG_CONNECT_TIMEOUT_SECONDS


def async_url(url: str) -> str:
    """The async-driver form of a configured URL (SQLite through aiosqlite)."""
    return _with_driver(url, "sqlite+aiosqlite")


def sync_url(url: str) -> str:
    """The sync-driver form of a configured URL, for Alembic."""
    return _with_driver(url, "sqlite")


def is_sqlite(url: str) -> bool:
    """Whether the URL names an SQLite database."""
    return make_url(url).get_backend_name() == "sqlite"


def sqlite_file(url: str) -> Path | None:
    """The file of an SQLite URL; None for another database or an in-memory one (no other
    process can reach it)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def connect_existing_sqlite(path: Path, **options: Any) -> sqlite3.Connection:
    """A blocking connection to an SQLite file that must exist already (mode=rw: a file gone
    is an error, never a new empty database)."""
    return sqlite3.connect(f"file:{quote(str(path))}?mode=rw", uri=True, **options)


def check_sqlite_file(path: Path) -> None:
    """Raise sqlite3's error when the existing file at `path` cannot serve as a database (a
    directory, a text file, no permission); a database busy with another's write passes."""
    try:
        conn = connect_existing_sqlite(path, timeout=1.0)
        try:
            conn.execute("PRAGMA schema_version").fetchone()
        finally:
            conn.close()
    except sqlite3.Error as error:
        code = (getattr(error, "sqlite_errorcode", None) or 0) & 0xFF  # the primary code
        if code not in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
            raise


def pg_connect_args(url: str) -> dict[str, Any]:
    """The driver's connection arguments for a PostgreSQL URL: the keepalives on both ends,
    the server's added to the URL's own `options` (e.g. a search_path), not in their place,
    and the connect timeout (the URL's own, else PG_CONNECT_TIMEOUT_SECONDS)."""
    server = " ".join(f"-c {name}={value}" for name, value in SERVER_KEEPALIVES.items())
    given = make_url(url).query.get("options")
    if isinstance(given, tuple):  # the parameter given more than once
        given = " ".join(given)
    return {
        **CLIENT_KEEPALIVES,
        "options": f"{given} {server}" if given else server,
        # connect_args win over the URL's query: repeated here so they agree.
        "connect_timeout": connect_timeout(url),
    }


# The files already warned about in this process (the engines, the lock and the migrations
# each make sure of the file: one warning is enough).
_WARNED: set[Path] = set()


def ensure_sqlite_dir(url: str) -> None:
    """Create the directory of an SQLite file, and the file itself, so a fresh deployment
    starts without help: both private to exobot's user (directories 0700, the file 0600; it
    holds members' mail, and SQLite gives the -wal and -shm beside it the file's own mode).
    An existing file keeps its mode: a warning says when others can read it."""
    path = sqlite_file(url)
    if path is None:
        return
    make_private_dirs(path.parent)
    # Before SQLite opens it, which would create it with the umask's mode (0644 usually).
    if not create_private_file(path):
        warning = exposed_database_warning(path)
        if warning and path not in _WARNED:
            _WARNED.add(path)
            log.warning("%s", warning)


def make_private_dirs(folder: Path) -> None:
    """mkdir -p with mode 0700 for each directory created (Path.mkdir would give the missing
    parents the default mode)."""
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    for each in reversed(missing):
        each.mkdir(mode=0o700, exist_ok=True)


def create_private_file(path: Path) -> bool:
    """Create the empty file `path` with mode 0600 (SQLite takes an empty file for an empty
    database); False when it exists already."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
    except FileExistsError:
        return False
    return True


def is_sqlite_file(path: Path) -> bool:
    """Whether the file starts with SQLite's header."""
    try:
        with path.open("rb") as file:
            return file.read(len(SQLITE_HEADER)) == SQLITE_HEADER
    except OSError:
        return False


def _is_empty(path: Path) -> bool:
    try:
        return path.stat().st_size == 0
    except OSError:
        return False


def exposed_database_warning(path: Path) -> str | None:
    """One line when users other than its owner may read the SQLite database at `path` or
    its -wal or -shm (group or other permission bits); None otherwise, or when it is no
    database."""
    shown = []
    for each in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        try:
            mode = each.stat().st_mode
        except OSError:
            continue
        if stat.S_ISREG(mode) and mode & 0o077:
            shown.append((each, stat.S_IMODE(mode)))
    # What is no database (nor an empty file, which SQLite takes for one) is SQLite's to refuse.
    if not shown or not (is_sqlite_file(path) or _is_empty(path)):
        return None
    modes = ", ".join(f"{each.name} {mode:o}" for each, mode in shown)
    return (
        f"{path}: warning: other users can read this database (mode {modes}) and it holds "
        f"members' mail and personal data: chmod 600 {' '.join(str(e) for e, _ in shown)}"
    )


def create_sync_engine(url: str) -> Engine:
    """A blocking engine for the repository's writer thread, with the same SQLite settings."""
    ensure_sqlite_dir(url)
    if not is_sqlite(url):
        return sa_create_engine(
            sync_url(url),
            connect_args=pg_connect_args(url),
            pool_pre_ping=True,
            pool_size=PG_SYNC_POOL_SIZE,
            max_overflow=PG_SYNC_OVERFLOW,
        )
    engine = sa_create_engine(
        sync_url(url),
        connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
    )
    install_sqlite_pragmas(engine)
    return engine


def create_engine(url: str) -> AsyncEngine:
    """The app's async engine. SQLite gets WAL, a busy timeout and write-ahead BEGIN IMMEDIATE."""
    ensure_sqlite_dir(url)
    if not is_sqlite(url):
        return create_async_engine(
            async_url(url),
            connect_args=pg_connect_args(url),
            pool_pre_ping=True,
            pool_size=PG_POOL_SIZE,
            max_overflow=PG_OVERFLOW,
        )
    engine = create_async_engine(
        async_url(url), connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
    )
    install_sqlite_pragmas(engine.sync_engine)
    return engine


def install_sqlite_pragmas(sync_engine) -> None:  # noqa: ANN001 - an Engine
    """WAL, busy timeout, foreign keys; write transactions start with BEGIN IMMEDIATE so two
    writers wait for each other instead of failing on a read-to-write upgrade."""

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_connection, _record):  # noqa: ANN001
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(sync_engine, "begin")
    def _on_begin(connection):  # noqa: ANN001
        read_only = connection.get_execution_options().get("exobot_read_only")
        connection.exec_driver_sql("BEGIN DEFERRED" if read_only else "BEGIN IMMEDIATE")
