"""Telling an error that says a database cannot be reached or used (a host that does not
resolve, a server that does not answer, an SQLite path that is a directory or no database)
from a statement's own error, for the command line's one-line message (exobot.cli)."""

from __future__ import annotations

import os
import re
import sqlite3
from pathlib import Path

from sqlalchemy import create_engine as sa_create_engine
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from exobot.db.engine import (
    check_sqlite_file,
    connect_timeout,
    is_sqlite,
    pg_connect_args,
    sqlite_file,
    sync_url,
)

# SQLite's primary result codes that say the file cannot serve as a database at all (rather
# than that a statement is wrong): cannot open it, not a database, no permission, read-only,
# damaged, an I/O error.
_SQLITE_UNUSABLE = frozenset(
    {
        sqlite3.SQLITE_CANTOPEN,
        sqlite3.SQLITE_NOTADB,
        sqlite3.SQLITE_PERM,
        sqlite3.SQLITE_READONLY,
        sqlite3.SQLITE_CORRUPT,
        sqlite3.SQLITE_IOERR,
    }
)
# SQLSTATEs of a server refusing the session itself: 08 connection exception, 28 invalid
# authorization (a wrong password), 3D no such database, 57P shutting down or starting up,
# 53300 too many connections.
_PG_UNUSABLE = ("08", "28", "3D", "57P", "53300")


def unusable_cause(error: BaseException, url: str) -> str | None:
    """Why the database at `url` cannot be reached or used, as `error` (or an error it was
    raised from) shows, in a few words for a one-line message without the URL's password;
    None when `error` is about something else (a statement's own error, another database's):
    the caller keeps its traceback then."""
    parsed = make_url(url)
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        cause = _sqlite_cause(current, url) if is_sqlite(url) else _pg_cause(current, url)
        if cause is not None:
            if not parsed.password:
                return cause
            # Never in a driver's message, but a password with an unescaped "@" ends up in
            # the host name; as a whole word only, so that a short one mangles no other.
            word = rf"(?<!\w){re.escape(parsed.password)}(?!\w)"
            return re.sub(word, "***", cause)
        current = current.__cause__
    return None


def can_open(url: str) -> bool:
    """Whether a session on the database at `url` opens and answers now (blocking; for
    telling which of two databases an error was about). An SQLite file that does not exist
    yet counts when its directory lets it be created: it is never created here."""
    path = sqlite_file(url)
    if is_sqlite(url):
        if path is None:
            return True
        if not path.exists():
            return path.parent.is_dir() and os.access(path.parent, os.W_OK | os.X_OK)
        try:
            check_sqlite_file(path)
        except sqlite3.Error:
            return False
        return True
    engine = sa_create_engine(sync_url(url), poolclass=NullPool, connect_args=pg_connect_args(url))
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception:  # whatever stops it, it does not open
        return False
    finally:
        engine.dispose()
    return True


def _sqlite_cause(error: BaseException, url: str) -> str | None:
    path = sqlite_file(url)
    if path is None:
        return None
    if isinstance(error, OSError):
        # Creating the file's directory, or a file beside it (the run lock, the WAL).
        if not error.filename or not isinstance(error.filename, str | bytes):
            return None
        named = Path(os.fsdecode(error.filename))
        beside = named.parent == path.parent and named.name.startswith(path.name)
        if named != path and named not in path.parents and not beside:
            return None
        return f"{named}: {error.strerror or error}"
    driver = getattr(error, "orig", None) or error  # SQLAlchemy keeps the driver's in .orig
    if not isinstance(driver, sqlite3.Error):
        return None
    code = (getattr(driver, "sqlite_errorcode", None) or 0) & 0xFF  # the primary code
    if code not in _SQLITE_UNUSABLE:
        return None
    if path.is_dir():
        return "it is a directory, not an SQLite database file"
    if code == sqlite3.SQLITE_NOTADB:
        return "the file is not an SQLite database"
    if code == sqlite3.SQLITE_CANTOPEN:
        return f"cannot open the file ({driver})"
    return str(driver)


def _pg_cause(error: BaseException, url: str) -> str | None:
    try:
        import psycopg
    except ImportError:  # the postgres extra not installed: no psycopg error to recognise
        return None
    driver = getattr(error, "orig", None) or error
    if not isinstance(driver, psycopg.Error):
        return None
    sqlstate = driver.sqlstate or ""
    # SQLAlchemy's error of opening a session has no statement (nor has a failed commit, but
    # that one carries an SQLSTATE); a connection found cut is marked invalidated.
    opening = getattr(error, "statement", "") is None and not sqlstate
    cut = getattr(error, "connection_invalidated", False)
    if not (opening or cut or sqlstate.startswith(_PG_UNUSABLE)):
        return None
    if isinstance(driver, psycopg.errors.ConnectionTimeout):
        parsed = make_url(url)
        try:
            given = int(float(connect_timeout(url)))
        except ValueError:
            given = 0
        # As psycopg counts: 2 s at least; 0 or less is its own default, said without a number.
        seconds = f" after {max(given, 2)} s" if given > 0 else ""
        return (
            f"{parsed.host}:{parsed.port or 5432} did not answer (connection timeout expired"
            f"{seconds})"
        )
    return " ".join(str(driver).split())  # libpq's message, on one line
