"""Web access records: browser sessions, one-time login links, API tokens, direct rooms.

Secrets (session cookies, link and API tokens) are random; only their SHA-256 is stored, so
a copy of the database lets nobody in.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from exobot.db.engine import upsert_insert
from exobot.db.tables import ApiTokenRow, DirectRoomRow, LoginLinkRow, WebSessionRow

S = WebSessionRow.__table__
L = LoginLinkRow.__table__
A = ApiTokenRow.__table__
D = DirectRoomRow.__table__

API_TOKEN_PREFIX = "exo_"
LAST_USED_STEP = timedelta(minutes=5)


def digest(secret: str) -> str:
    """What is stored in place of a secret."""
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret() -> str:
    """A fresh random secret, safe in URLs and cookies."""
    return secrets.token_urlsafe(32)


@dataclass(frozen=True)
class WebSession:
    """A logged-in browser: who, the CSRF token its forms carry, until when."""

    user_id: str
    csrf: str
    expires_at: datetime


@dataclass(frozen=True)
class ApiToken:
    """An API token as listed (never its secret)."""

    name: str
    user_id: str
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None


@dataclass(frozen=True)
class LiveToken:
    """A usable API token: whom it acts as, and when it was last noted in use."""

    id: int
    name: str
    user_id: str
    last_used_at: datetime | None

    def use_is_stale(self, now: datetime) -> bool:
        """Its last use should be noted again (at most every LAST_USED_STEP, so reading through
        the API does not write on every request)."""
        return self.last_used_at is None or now - self.last_used_at >= LAST_USED_STEP


class TokenNameTaken(Exception):
    """An API token with this name already exists."""


# --- browser sessions ---------------------------------------------------------------------


async def create_session(
    conn: AsyncConnection, user_id: str, ttl: timedelta, now: datetime
) -> tuple[str, WebSession]:
    """Open a session for `user_id`; returns the cookie value and the session."""
    token = new_secret()
    session = WebSession(user_id, new_secret(), now + ttl)
    await conn.execute(
        insert(S).values(
            token_hash=digest(token),
            user_id=user_id,
            csrf=session.csrf,
            created_at=now,
            expires_at=session.expires_at,
        )
    )
    return token, session


async def get_session(conn: AsyncConnection, token: str, now: datetime) -> WebSession | None:
    """The live session of a cookie value, or None (unknown or expired)."""
    row = (
        await conn.execute(
            select(S.c.user_id, S.c.csrf, S.c.expires_at).where(
                S.c.token_hash == digest(token), S.c.expires_at > now
            )
        )
    ).first()
    return WebSession(row.user_id, row.csrf, row.expires_at) if row else None


async def end_session(conn: AsyncConnection, token: str) -> None:
    """Log a session out."""
    await conn.execute(delete(S).where(S.c.token_hash == digest(token)))


async def purge_expired(conn: AsyncConnection, now: datetime) -> int:
    """Forget expired sessions and links; returns how many rows went."""
    sessions = await conn.execute(delete(S).where(S.c.expires_at <= now))
    links = await conn.execute(delete(L).where(L.c.expires_at <= now))
    return (sessions.rowcount or 0) + (links.rowcount or 0)


# --- one-time login links -----------------------------------------------------------------


async def create_login_link(
    conn: AsyncConnection, user_id: str, ttl: timedelta, now: datetime
) -> str:
    """A new single-use login token for `user_id`, valid for `ttl`."""
    token = new_secret()
    await conn.execute(
        insert(L).values(
            token_hash=digest(token), user_id=user_id, created_at=now, expires_at=now + ttl
        )
    )
    return token


async def peek_login_link(conn: AsyncConnection, token: str, now: datetime) -> str | None:
    """Whose usable link this is (without using it), or None."""
    row = (
        await conn.execute(
            select(L.c.user_id).where(
                L.c.token_hash == digest(token), L.c.used_at.is_(None), L.c.expires_at > now
            )
        )
    ).first()
    return row.user_id if row else None


async def use_login_link(conn: AsyncConnection, token: str, now: datetime) -> str | None:
    """Spend a link: the user it logs in, or None when it is unknown, used or expired.

    One conditional UPDATE, so two simultaneous uses cannot both succeed."""
    row = (
        await conn.execute(
            update(L)
            .where(L.c.token_hash == digest(token), L.c.used_at.is_(None), L.c.expires_at > now)
            .values(used_at=now)
            .returning(L.c.user_id)
        )
    ).first()
    return row.user_id if row else None


# --- API tokens -----------------------------------------------------------------------


async def create_api_token(
    conn: AsyncConnection, name: str, user_id: str, now: datetime
) -> str:
    """A new bearer token called `name` acting as `user_id`; returns its secret (shown once)."""
    token = API_TOKEN_PREFIX + new_secret()
    try:
        async with conn.begin_nested():
            await conn.execute(
                insert(A).values(
                    name=name, token_hash=digest(token), user_id=user_id, created_at=now
                )
            )
    except IntegrityError:
        raise TokenNameTaken(name) from None
    return token


async def revoke_api_token(conn: AsyncConnection, name: str, now: datetime) -> bool:
    """Revoke the token called `name`; False when there is no live token of that name."""
    result = await conn.execute(
        update(A).where(A.c.name == name, A.c.revoked_at.is_(None)).values(revoked_at=now)
    )
    return bool(result.rowcount)


async def api_token_user(conn: AsyncConnection, token: str) -> LiveToken | None:
    """The live token of a secret, or None for unknown or revoked ones (a read only)."""
    row = (
        await conn.execute(
            select(A.c.id, A.c.name, A.c.user_id, A.c.last_used_at).where(
                A.c.token_hash == digest(token), A.c.revoked_at.is_(None)
            )
        )
    ).first()
    return LiveToken(row.id, row.name, row.user_id, row.last_used_at) if row else None


async def note_token_use(conn: AsyncConnection, token_id: int, now: datetime) -> None:
    """Record when a token was last used."""
    await conn.execute(update(A).where(A.c.id == token_id).values(last_used_at=now))


async def list_api_tokens(conn: AsyncConnection) -> list[ApiToken]:
    """Every token, live and revoked, oldest first."""
    rows = await conn.execute(select(A).order_by(A.c.id))
    return [
        ApiToken(r.name, r.user_id, r.created_at, r.revoked_at, r.last_used_at) for r in rows
    ]


# --- direct rooms ---------------------------------------------------------------------


async def direct_room(conn: AsyncConnection, user_id: str) -> str | None:
    """The room the bot opened with `user_id`, if any."""
    return (
        await conn.execute(select(D.c.room_id).where(D.c.user_id == user_id))
    ).scalar_one_or_none()


async def record_direct_room(
    conn: AsyncConnection, user_id: str, room_id: str, now: datetime
) -> None:
    """Remember (or replace) the direct room with `user_id`."""
    stmt = upsert_insert(conn, D).values(user_id=user_id, room_id=room_id, created_at=now)
    await conn.execute(
        stmt.on_conflict_do_update(
            index_elements=[D.c.user_id], set_={"room_id": room_id, "created_at": now}
        )
    )
