"""Every PostgreSQL session exobot opens (the async engine's, the blocking engine's, where the
outbox lanes hold their claims, and the leader lock's) has TCP keepalives on both ends, so
the server ends the sessions of an instance whose host died within about 25 s: its leader
lock and its claimed outbox rows are freed then, not hours later."""

from __future__ import annotations

import uuid
from urllib.parse import quote

import pytest
from sqlalchemy import text

from exobot.db.engine import (
    CLIENT_KEEPALIVES,
    SERVER_KEEPALIVES,
    create_engine,
    create_sync_engine,
    pg_connect_args,
)
from exobot.leader import AdvisoryLock

SERVER_SHOW = {name: str(value) for name, value in SERVER_KEEPALIVES.items()}


def test_the_connect_arguments_keep_the_urls_own_options():
    plain = pg_connect_args("postgresql://exobot@db/exobot")
    assert {k: plain[k] for k in CLIENT_KEEPALIVES} == CLIENT_KEEPALIVES
    assert (
        plain["options"] == "-c tcp_keepalives_idle=10 -c tcp_keepalives_interval=5 -c "
        "tcp_keepalives_count=3"
    )
    given = pg_connect_args("postgresql://exobot@db/exobot?options=-c%20search_path%3Dhelp")
    assert given["options"] == "-c search_path=help " + plain["options"]


@pytest.fixture
def pg_url(stack) -> str:
    if stack.postgres_port is None:
        pytest.skip("the test stack runs without PostgreSQL (EXOBOT_STACK_POSTGRES / install)")
    # The URL's own options (here a search_path) must survive the keepalives'.
    options = quote("-c search_path=public,pg_catalog")
    return stack.postgres_url(f"t_{uuid.uuid4().hex[:16]}") + f"?options={options}"


def server_settings(conn) -> dict[str, str]:  # noqa: ANN001 - a blocking connection
    names = [*SERVER_KEEPALIVES, "search_path"]
    return {name: conn.execute(text(f"SHOW {name}")).scalar() for name in names}


EXPECTED = {**SERVER_SHOW, "search_path": "public,pg_catalog"}


def test_the_blocking_engines_sessions_have_keepalives(pg_url):
    engine = create_sync_engine(pg_url)
    try:
        with engine.connect() as conn:
            assert server_settings(conn) == EXPECTED
    finally:
        engine.dispose()


async def test_the_async_engines_sessions_have_keepalives(pg_url):
    engine = create_engine(pg_url)
    try:
        async with engine.connect() as conn:
            assert await conn.run_sync(server_settings) == EXPECTED
    finally:
        await engine.dispose()


def test_the_leader_locks_session_has_keepalives(pg_url):
    lock = AdvisoryLock(pg_url)
    try:
        assert lock.try_acquire()
        assert server_settings(lock._conn) == EXPECTED
    finally:
        lock.release()
