"""PostgreSQL pools ping a connection before use only when it was idle for a while: one given
back moments ago goes straight to work (no extra round trip), and one that died while idle
(the server ended its session) is replaced at checkout, on the blocking and the async engine,
instead of failing the work it was taken for."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text
from stack_fixtures import fresh_database_url

from exobot.db import engine as engines


@pytest.fixture
def pg_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return fresh_database_url(request, "postgresql", tmp_path)


@pytest.fixture
def pings(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every ping the pools send, counted (the dialect's own ping still runs)."""
    seen: list[object] = []
    from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg

    original = PGDialect_psycopg.do_ping

    def counting(self, dbapi_connection):  # noqa: ANN001, ANN202
        seen.append(dbapi_connection)
        return original(self, dbapi_connection)

    monkeypatch.setattr(PGDialect_psycopg, "do_ping", counting)
    return seen


def _kill_other_sessions(url: str) -> int:
    """End every other session of the database, as a server restart would."""
    killer = engines.create_sync_engine(url)
    try:
        with killer.connect() as conn:
            return conn.execute(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            ).scalar_one()
    finally:
        killer.dispose()


def test_blocking_pool_pings_only_after_idle_and_replaces_a_dead_connection(
    pg_url: str, pings: list[object], monkeypatch: pytest.MonkeyPatch
):
    engine = engines.create_sync_engine(pg_url)
    try:
        with engine.connect() as conn:
            first = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
        for _ in range(3):  # given back moments ago: used as it is
            with engine.connect() as conn:
                assert conn.execute(text("SELECT pg_backend_pid()")).scalar_one() == first
        assert pings == []

        assert _kill_other_sessions(pg_url) == 1
        monkeypatch.setattr(engines, "PING_AFTER_IDLE_SECONDS", 0.0)  # it has been idle long
        with engine.connect() as conn:
            second = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
        assert second != first
        assert len(pings) == 1
    finally:
        engine.dispose()


async def test_async_pool_pings_only_after_idle_and_replaces_a_dead_connection(
    pg_url: str, pings: list[object], monkeypatch: pytest.MonkeyPatch
):
    engine = engines.create_engine(pg_url)
    try:
        async with engine.connect() as conn:
            first = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        for _ in range(3):
            async with engine.connect() as conn:
                assert (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one() == first
        assert pings == []

        assert _kill_other_sessions(pg_url) == 1
        monkeypatch.setattr(engines, "PING_AFTER_IDLE_SECONDS", 0.0)
        async with engine.connect() as conn:
            second = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        assert second != first
        assert len(pings) == 1
    finally:
        await engine.dispose()
