"""How many chat rows the leader posts at once: many on SQLite, where a lane holds no
connection of its own, and few enough on PostgreSQL that the lanes' claims, beside the
repository's threads, stay within the connections the blocking pool keeps: beyond it they
would be opened and closed per use (a PostgreSQL session each time), and beyond its overflow
they would wait for the pool's timeout."""

from __future__ import annotations

from types import SimpleNamespace

from exobot.db.engine import PG_SYNC_POOL_SIZE
from exobot.db.repository import SIDE_THREADS
from exobot.mail.outbound import SMTP_CONNECTIONS
from exobot.matrix.poster import CHAT_SENDS_POSTGRESQL, CHAT_SENDS_SQLITE, ChatSender

#: The repository's writer thread, which holds a connection while it writes.
WRITER = 1


def sender(sqlite: bool) -> ChatSender:
    repository = SimpleNamespace(sqlite=sqlite)
    return ChatSender(repository, None, None, None, default_queue="suport")  # type: ignore[arg-type]


def test_on_sqlite_a_burst_is_posted_many_at_once():
    assert sender(sqlite=True).concurrency == CHAT_SENDS_SQLITE == 32


def test_on_postgresql_the_lanes_stay_within_the_kept_connections():
    assert sender(sqlite=False).concurrency == CHAT_SENDS_POSTGRESQL == 16
    claims = CHAT_SENDS_POSTGRESQL + SMTP_CONNECTIONS  # records go through the side threads
    assert claims + SIDE_THREADS + WRITER <= PG_SYNC_POOL_SIZE
