"""The administrator's view of API tokens: create (shown once), revoke, list."""

from __future__ import annotations

import re
import sys
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from exobot.config import Config
from exobot.core.addresses import is_user_id
from exobot.core.clock import Clock, SystemClock
from exobot.db import web as records
from exobot.db.engine import create_engine
from exobot.db.migrate import upgrade_async
from exobot.db.repository import SqlRepository

# Names travel in idempotency keys and logs ("token:<name>"): keep them plain.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# The exit status of a command written wrong, as argparse's own.
USAGE = 2


async def run_token(
    config: Config,
    action: str,
    name: str | None,
    user: str | None,
    clock: Clock | None = None,
) -> int:
    """Carry out one token action and print its result; returns the exit status (2, as
    argparse's, for a name or --user the command cannot take). Creation and revocation are
    stamped by `clock` (the system's unless a test gives another)."""
    if action in ("create", "revoke") and (not name or not _NAME.fullmatch(name)):
        print(
            f"token {action}: give the token a name of letters, digits, '.', '_' or '-' "
            "(at most 64 characters)",
            file=sys.stderr,
        )
        return USAGE
    if action == "create" and not user:
        print("token create: --user @name:server is required", file=sys.stderr)
        return USAGE
    if action == "create" and not is_user_id(user):
        print(
            f"token create: --user must be a Matrix id like @name:server, not {user!r}",
            file=sys.stderr,
        )
        return USAGE
    # The CLI may run before exobot ever did: make sure the tables exist.
    await upgrade_async(config.database.url)
    repository = SqlRepository(create_engine(config.database.url))
    now = (clock or SystemClock()).now()
    try:
        async with repository.connection() as conn:
            if action == "create":
                return await _create(conn, name, user, now)
            if action == "revoke":
                return await _revoke(conn, name, now)
            return await _list(conn)
    finally:
        await repository.close()


async def _create(conn: AsyncConnection, name: str, user: str, now: datetime) -> int:
    try:
        secret = await records.create_api_token(conn, name, user, now)
    except records.TokenNameTaken:
        print(
            f"a token named {name!r} already exists (revoked ones keep their name)",
            file=sys.stderr,
        )
        return 1
    print(f"token {name!r} acts as {user}:")
    print(secret)
    print("Copy it now: it cannot be shown again (only its hash is stored).")
    return 0


async def _revoke(conn: AsyncConnection, name: str, now: datetime) -> int:
    if not await records.revoke_api_token(conn, name, now):
        print(f"no live token named {name!r}", file=sys.stderr)
        return 1
    print(f"token {name!r} revoked")
    return 0


async def _list(conn: AsyncConnection) -> int:
    tokens = await records.list_api_tokens(conn)
    if not tokens:
        print("no API tokens")
        return 0
    rows = [("NAME", "USER", "CREATED", "LAST USED", "REVOKED")]
    rows += [
        (t.name, t.user_id, _when(t.created_at), _when(t.last_used_at), _when(t.revoked_at))
        for t in tokens
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print(
            "  ".join(value.ljust(width) for value, width in zip(row, widths, strict=True)).rstrip()
        )
    return 0


def _when(moment: datetime | None) -> str:
    if moment is None:
        return "-"
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return f"{moment:%Y-%m-%d %H:%M} UTC"
