"""Web access records: sessions, one-time links, API tokens, direct rooms (SQLite and
PostgreSQL)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from exobot.db import web

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


async def test_a_session_is_found_by_its_cookie_until_it_expires_or_ends(repo):
    async with repo.connection() as conn:
        token, session = await web.create_session(conn, "@a:x", timedelta(hours=1), NOW)
    async with repo.connection() as conn:
        found = await web.get_session(conn, token, NOW + timedelta(minutes=59))
        assert found == session
        assert await web.get_session(conn, token, NOW + timedelta(hours=1)) is None
        assert await web.get_session(conn, token + "x", NOW) is None
        await web.end_session(conn, token)
        assert await web.get_session(conn, token, NOW) is None


async def test_only_hashes_are_stored(repo):
    async with repo.connection() as conn:
        token, _ = await web.create_session(conn, "@a:x", timedelta(hours=1), NOW)
        link = await web.create_login_link(conn, "@a:x", timedelta(minutes=10), NOW)
        api = await web.create_api_token(conn, "ci", "@a:x", NOW)
        rows = [
            *(await conn.exec_driver_sql("SELECT token_hash FROM web_sessions")).all(),
            *(await conn.exec_driver_sql("SELECT token_hash FROM login_links")).all(),
            *(await conn.exec_driver_sql("SELECT token_hash FROM api_tokens")).all(),
        ]
    stored = {r[0] for r in rows}
    assert stored == {web.digest(token), web.digest(link), web.digest(api)}
    assert not stored & {token, link, api}


async def test_a_login_link_works_once_and_only_before_it_expires(repo):
    async with repo.connection() as conn:
        link = await web.create_login_link(conn, "@a:x", timedelta(minutes=10), NOW)
        late = await web.create_login_link(conn, "@b:x", timedelta(minutes=10), NOW)
    async with repo.connection() as conn:
        assert await web.peek_login_link(conn, link, NOW) == "@a:x"
        assert await web.use_login_link(conn, link, NOW) == "@a:x"
        assert await web.use_login_link(conn, link, NOW) is None
        assert await web.peek_login_link(conn, link, NOW) is None
        assert await web.use_login_link(conn, late, NOW + timedelta(minutes=10)) is None


async def test_two_simultaneous_uses_of_a_link_log_in_once(repo):
    async with repo.connection() as conn:
        link = await web.create_login_link(conn, "@a:x", timedelta(minutes=10), NOW)

    async def use() -> str | None:
        async with repo.connection() as conn:
            return await web.use_login_link(conn, link, NOW)

    results = await asyncio.gather(use(), use(), return_exceptions=True)
    assert [r for r in results if r == "@a:x"] == ["@a:x"]


async def test_api_tokens_are_named_once_and_revocable(repo):
    async with repo.connection() as conn:
        secret = await web.create_api_token(conn, "ci", "@a:x", NOW)
        assert secret.startswith(web.API_TOKEN_PREFIX)
    with pytest.raises(web.TokenNameTaken):
        async with repo.connection() as conn:
            await web.create_api_token(conn, "ci", "@b:x", NOW)
    async with repo.connection() as conn:
        live = await web.api_token_user(conn, secret)
        assert (live.name, live.user_id) == ("ci", "@a:x")
        assert live.use_is_stale(NOW)
        await web.note_token_use(conn, live.id, NOW)
        assert await web.api_token_user(conn, "exo_nope") is None
        assert await web.revoke_api_token(conn, "ci", NOW) is True
        assert await web.revoke_api_token(conn, "ci", NOW) is False
        assert await web.api_token_user(conn, secret) is None
        (listed,) = await web.list_api_tokens(conn)
    assert (listed.name, listed.user_id, listed.last_used_at) == ("ci", "@a:x", NOW)
    assert listed.revoked_at == NOW


async def test_a_tokens_use_is_noted_at_most_every_few_minutes(repo):
    async with repo.connection() as conn:
        secret = await web.create_api_token(conn, "ci", "@a:x", NOW)
        await web.note_token_use(conn, (await web.api_token_user(conn, secret)).id, NOW)
        live = await web.api_token_user(conn, secret)
    assert live.last_used_at == NOW
    assert not live.use_is_stale(NOW + web.LAST_USED_STEP - timedelta(seconds=1))
    assert live.use_is_stale(NOW + web.LAST_USED_STEP)


async def test_expired_sessions_and_links_are_purged(repo):
    async with repo.connection() as conn:
        await web.create_session(conn, "@a:x", timedelta(hours=1), NOW)
        live, _ = await web.create_session(conn, "@a:x", timedelta(hours=3), NOW)
        await web.create_login_link(conn, "@a:x", timedelta(minutes=10), NOW)
    async with repo.connection() as conn:
        assert await web.purge_expired(conn, NOW + timedelta(hours=2)) == 2
        assert await web.get_session(conn, live, NOW) is not None


async def test_the_direct_room_is_remembered_and_replaced(repo):
    async with repo.connection() as conn:
        assert await web.direct_room(conn, "@a:x") is None
        await web.record_direct_room(conn, "@a:x", "!one:x", NOW)
        await web.record_direct_room(conn, "@a:x", "!two:x", NOW)
        assert await web.direct_room(conn, "@a:x") == "!two:x"
