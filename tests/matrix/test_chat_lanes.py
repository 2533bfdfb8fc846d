"""How many chat rows the leader posts at once: many on SQLite, where a lane holds no
connection of its own, and few enough on PostgreSQL that the lanes cannot take the whole
connection pool (each holds two: its claim and its records), which would leave them and the
mail intake waiting for a connection until the pool's timeout."""

from __future__ import annotations

from types import SimpleNamespace

from exobot.db.engine import PG_OVERFLOW, PG_POOL_SIZE
from exobot.mail.outbound import SMTP_CONNECTIONS
from exobot.matrix.poster import CHAT_SENDS_POSTGRESQL, CHAT_SENDS_SQLITE, ChatSender

#: Connections the rest of the leader may hold meanwhile: intake, the web, the API, the jobs,
#: the metrics and the leader's lock.
OTHERS = 10


def sender(sqlite: bool) -> ChatSender:
    repository = SimpleNamespace(sqlite=sqlite)
    return ChatSender(repository, None, None, None, default_queue="suport")  # type: ignore[arg-type]


def test_on_sqlite_a_burst_is_posted_many_at_once():
    assert sender(sqlite=True).concurrency == CHAT_SENDS_SQLITE == 32


def test_on_postgresql_the_lanes_leave_room_in_the_pool():
    assert sender(sqlite=False).concurrency == CHAT_SENDS_POSTGRESQL
    claims_and_records = 2 * CHAT_SENDS_POSTGRESQL
    smtp_claims = SMTP_CONNECTIONS
    assert claims_and_records + smtp_claims + OTHERS <= PG_POOL_SIZE + PG_OVERFLOW
