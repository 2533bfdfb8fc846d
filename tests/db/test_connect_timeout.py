"""Every PostgreSQL session exobot opens has a connect timeout (10 s; a URL's own
connect_timeout wins), beside its keepalives: a server that accepts the connection and never
answers fails the command instead of holding it for psycopg's 130 s per address. The
engines built from the URL alone (Alembic's, the migration lock's) get it through the URL."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine as sa_create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool
from test_keepalives import EXPECTED, pg_url, server_settings

from exobot.db.engine import (
    CLIENT_KEEPALIVES,
    PG_CONNECT_TIMEOUT_SECONDS,
    async_url,
    create_engine,
    create_sync_engine,
    pg_connect_args,
    sync_url,
)
from exobot.leader import AdvisoryLock
from exobot.runlock import RunLock

__all__ = ["pg_url"]  # the fixture, used by name


def test_the_connect_arguments_have_the_timeout_beside_the_keepalives():
    args = pg_connect_args("postgresql://exobot@db/exobot")
    assert args["connect_timeout"] == PG_CONNECT_TIMEOUT_SECONDS == 10
    assert {k: args[k] for k in CLIENT_KEEPALIVES} == CLIENT_KEEPALIVES
    assert args["options"].startswith("-c tcp_keepalives_idle=10")
    assert (
        pg_connect_args("postgresql://exobot@db/exobot?connect_timeout=30")["connect_timeout"]
        == "30"
    )


@pytest.mark.parametrize("form", [sync_url, async_url])
def test_the_urls_carry_the_timeout_and_keep_their_own(form):
    url = make_url(form("postgresql://exobot:pw@db/exobot?options=-c%20search_path%3Dhelp"))
    assert url.drivername == "postgresql+psycopg"
    assert url.query == {"options": "-c search_path=help", "connect_timeout": "10"}
    assert url.password == "pw"
    own = make_url(form("postgresql+psycopg://exobot@db/exobot?connect_timeout=30"))
    assert own.query == {"connect_timeout": "30"}
    assert "connect_timeout" not in form("sqlite:///var/exobot.db")  # PostgreSQL's only


def connect_timeout(conn) -> str:  # noqa: ANN001 - a blocking connection
    """The connect_timeout the session was opened with (libpq's own record of it)."""
    return conn.connection.dbapi_connection.info.get_parameters().get("connect_timeout")


def test_every_kind_of_session_opens_with_the_timeout_and_the_keepalives(pg_url):
    engines = [
        create_sync_engine(pg_url),
        # As Alembic's environment and the migration lock build theirs: from the URL alone.
        sa_create_engine(sync_url(pg_url), poolclass=NullPool),
    ]
    try:
        for engine in engines:
            with engine.connect() as conn:
                assert connect_timeout(conn) == "10"
        with engines[0].connect() as conn:
            assert server_settings(conn) == EXPECTED
    finally:
        for engine in engines:
            engine.dispose()
    lock = RunLock(pg_url)
    leader = AdvisoryLock(pg_url)
    try:
        lock.acquire(shared=True)
        assert leader.try_acquire()
        for conn in (lock._conn, leader._conn):
            assert connect_timeout(conn) == "10"
            assert server_settings(conn) == EXPECTED
    finally:
        leader.release()
        lock.release()


async def test_the_async_engines_sessions_open_with_the_timeout(pg_url):
    engine = create_engine(pg_url)
    try:
        async with engine.connect() as conn:
            assert await conn.run_sync(connect_timeout) == "10"
            assert await conn.run_sync(server_settings) == EXPECTED
    finally:
        await engine.dispose()
