"""The procedures' API routes and an Idempotency-Key sent again with a DIFFERENT request
(another ticket, type or note, another procedure, done instead of cancel): it used to be taken
for a retry of the first and nothing was done, silently. The key is now recorded with the
request's fingerprint (`procedures_events.request_hash`, migration procedures_0003) and a
different request is refused with 422 `key_reused`, nothing recorded or changed, as the
core's API does (tests/web/test_api_key_reuse.py); the same request is still a retry, and so
is any request repeating a key recorded without a fingerprint (before the migration, or by
chat and the web forms)."""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa
from alembic import command
from exobot_procedures import service, store
from procedures_settings import BRANCHES, START
from web_world import web_world_fixture  # noqa: F401  (the fixture)

from exobot.core.service import KeyReused
from exobot.db.engine import sync_url
from exobot.db.migrate import alembic_config, upgrade
from exobot.db.tables import OutboxRow

O = OutboxRow.__table__  # noqa: E741
BASE = "/api/v1/plugins/procedures"
REUSED = "this Idempotency-Key was already used for a different request"
ANNA = "@anna:example.org"


async def member_mails(world, address: str) -> int:
    """Mails queued to `address` apart from the acknowledgement of its first mail."""
    async with world.repository.connection() as conn:
        rows = await conn.execute(sa.select(O.c.payload).where(O.c.kind == "mail"))
        return sum(
            1 for (p,) in rows if p.get("to") == [address] and p.get("template") != "ack"
        )


async def procedures(world) -> list[str]:
    return [p["ref"] for p in (await world.api.get(BASE + "/")).json()]


async def events(world) -> list[tuple[int, str]]:
    async with world.repository.connection() as conn:
        rows = await conn.execute(
            sa.select(store.events.c.procedure_id, store.events.c.kind).order_by(
                store.events.c.id
            )
        )
        return [tuple(row) for row in rows]


def assert_reused(answer) -> None:  # noqa: ANN001
    assert answer.status_code == 422, answer.text
    assert answer.json() == {"error": "key_reused", "message": REUSED}


async def test_the_same_request_sent_again_is_a_retry_and_its_fingerprint_is_kept(web_world):
    world = web_world
    number = await world.mail("pau@example.org")
    key = {"Idempotency-Key": "alta-1"}
    body = {"ticket": number, "type": "bank", "member": "1234", "note": "eina"}
    first = await world.api.post(BASE + "/", json=body, headers=key)
    # The same fields in another order (and the defaults spelled out) are the same request.
    same = {"note": "eina", "service": None, "member": "1234", "type": "bank", "ticket": number}
    again = await world.api.post(BASE + "/", json=same, headers=key)
    assert first.status_code == again.status_code == 201, again.text
    assert again.json() == first.json()
    assert await procedures(world) == ["P-1"]
    assert await member_mails(world, "pau@example.org") == 1
    async with world.repository.reading() as reader:
        created = await store.event_by_key(reader.conn, "api:treasury:alta-1")
    assert created is not None and len(created.request_hash or "") == 64


@pytest.mark.parametrize(
    "change",
    [
        {"ticket": "other"},
        {"type": "service-add", "service": "fibra-12"},
        {"note": "una altra nota"},
        {"member": "4321"},
    ],
    ids=["ticket", "type", "note", "member"],
)
async def test_the_key_sent_with_another_body_is_refused_and_nothing_is_done(
    web_world, change
):
    world = web_world
    number = await world.mail("pau@example.org")
    other = await world.mail("rita@example.org")
    key = {"Idempotency-Key": "alta-1"}
    body = {"ticket": number, "type": "bank", "member": "1234", "note": "eina"}
    first = await world.api.post(BASE + "/", json=body, headers=key)
    assert first.status_code == 201, first.text

    different = body | change
    if different["ticket"] == "other":
        different["ticket"] = other
    assert_reused(await world.api.post(BASE + "/", json=different, headers=key))
    assert await procedures(world) == ["P-1"]
    assert await events(world) == [(1, "created")]
    assert (await world.ticket(other)).queue == "suport"  # not moved to the procedures queue
    assert await member_mails(world, "pau@example.org") == 1
    assert await member_mails(world, "rita@example.org") == 0
    # The key still answers its own request, and a new key records the other one.
    again = await world.api.post(BASE + "/", json=body, headers=key)
    assert again.status_code == 201 and again.json()["id"] == first.json()["id"]
    new = await world.api.post(BASE + "/", json=different, headers={"Idempotency-Key": "alta-2"})
    assert new.status_code == 201 and new.json()["ref"] == "P-2"


@pytest.mark.parametrize(
    ("first", "body", "second", "other_body"),
    [
        ("done", {"note": "signat"}, "cancel", {"reason": "duplicat"}),
        ("cancel", {"reason": "duplicat"}, "done", {"note": "signat"}),
    ],
)
async def test_the_key_of_a_finish_sent_for_another_finish_is_refused(
    web_world, first, body, second, other_body
):
    world = web_world
    number = await world.mail("pau@example.org")
    for _ in range(2):
        created = await world.api.post(
            BASE + "/", json={"ticket": number, "type": "bank", "member": "1234"}
        )
        assert created.status_code == 201
    key = {"Idempotency-Key": "tanca-1"}
    finished = await world.api.post(BASE + f"/1/{first}", json=body, headers=key)
    assert finished.status_code == 200, finished.text
    state = finished.json()["state"]
    mails = await member_mails(world, "pau@example.org")

    # The other finish of the same procedure, the same finish of another one, or the same
    # finish with another note: each a different request, refused; none done.
    assert_reused(await world.api.post(BASE + f"/1/{second}", json=other_body, headers=key))
    assert_reused(await world.api.post(BASE + f"/2/{first}", json=body, headers=key))
    changed = {name: value + " (bis)" for name, value in body.items()}
    assert_reused(await world.api.post(BASE + f"/1/{first}", json=changed, headers=key))
    assert await events(world) == [(1, "created"), (2, "created"), (1, state)]
    assert (await world.api.get(BASE + "/2")).json()["state"] == "pending"
    assert await member_mails(world, "pau@example.org") == mails
    # The same request again is still its retry: 200 and the procedure as it stands.
    again = await world.api.post(BASE + f"/1/{first}", json=body, headers=key)
    assert again.status_code == 200 and again.json() == finished.json()


async def test_a_concurrent_request_with_the_key_and_another_body_is_refused(
    make_world, db_url, monkeypatch
):
    """The look-up misses (the other request is still running), then the insert meets the
    key recorded with another fingerprint: rolled back and refused, on SQLite and PostgreSQL,
    for a creation and a finish alike. A request without a fingerprint (chat, a form) keeps
    taking the key for a retry."""
    world = await make_world(url=db_url)
    number = await world.mail("ona@example.org")
    values = dict(
        ticket=number, type="banc", member="1234", service=None, note="", actor=ANNA,
        language="ca",
    )
    created = await service.create_procedure(
        world.plugin, **values, key="api:treasury:k", request_hash="a" * 64
    )
    pending = await service.create_procedure(world.plugin, **values)
    lookup = store.event_by_key
    missed: list[str] = []

    async def missing_first(conn, key):  # noqa: ANN001, ANN202
        """The first look-up of each request misses (the other one not committed yet)."""
        if not missed or missed[-1] != "":
            return await lookup(conn, key)
        missed[-1] = key
        return None

    monkeypatch.setattr(store, "event_by_key", missing_first)
    missed.append("")
    with pytest.raises(KeyReused):
        await service.create_procedure(
            world.plugin, **values | {"note": "x"}, key="api:treasury:k", request_hash="b" * 64
        )
    missed.append("")
    with pytest.raises(KeyReused):
        await service.finish_procedure(
            world.plugin, pending.id, state="done", note="", actor=ANNA, language="ca",
            key="api:treasury:k", request_hash="d" * 64,
        )
    assert missed == ["api:treasury:k", "api:treasury:k"]
    assert await events(world) == [(1, "created"), (2, "created")]
    async with world.repository.reading() as reader:
        assert (await store.get(reader.conn, pending.id)).state == "pending"
    # No fingerprint given: the key is a retry, as chat's and the forms' always were.
    again = await service.create_procedure(
        world.plugin, **values | {"note": "x"}, key="api:treasury:k"
    )
    assert again == created


def _at_procedures_0002(url: str) -> None:
    """The core's schema and the plugin's branch at procedures_0002 (no request_hash), with
    two procedures recorded through the API then: P-1 created with key `old` and P-2 done
    with key `old-done`, neither with a fingerprint."""
    upgrade(url)  # the core alone
    command.upgrade(alembic_config(url, BRANCHES), "procedures_0002")
    engine = sa.create_engine(sync_url(url))
    try:
        columns = {c["name"] for c in sa.inspect(engine).get_columns("procedures_events")}
        assert "request_key" in columns and "request_hash" not in columns
        with engine.begin() as conn:
            for pid, state, kind, key in [
                (1, "pending", "created", "api:treasury:old"),
                (2, "done", "done", "api:treasury:old-done"),
            ]:
                conn.execute(sa.insert(store.procedures).values(
                    id=pid, type="bank", member="1234", service=None, ticket=7, state=state,
                    asked_by=ANNA, asked_at=START, processed_by=ANNA if kind == "done" else None,
                    processed_at=START if kind == "done" else None, note="",
                ))
                conn.execute(sa.insert(store.events).values(
                    procedure_id=pid, at=START, actor=ANNA, kind=kind, note="", effects="[]",
                    settled_at=START, member=None, request_key=key,
                ))
    finally:
        engine.dispose()


def _columns(url: str) -> set[str]:
    engine = sa.create_engine(sync_url(url))
    try:
        return {c["name"] for c in sa.inspect(engine).get_columns("procedures_events")}
    finally:
        engine.dispose()


async def test_keys_recorded_before_the_migration_stay_retries(make_world, db_url):
    """Upgrading a database whose events have keys but no fingerprint (SQLite and
    PostgreSQL): the column is added, null for them, and a fingerprinted request repeating
    such a key is a retry as before (the procedure it recorded, nothing more)."""
    await asyncio.to_thread(_at_procedures_0002, db_url)
    world = await make_world(url=db_url)  # upgrades the plugin's branch to its head
    assert "request_hash" in await asyncio.to_thread(_columns, db_url)
    async with world.repository.reading() as reader:
        old = await store.event_by_key(reader.conn, "api:treasury:old")
    assert old is not None and old.request_hash is None
    number = await world.mail("ona@example.org")

    again = await service.create_procedure(
        world.plugin, ticket=number, type="service-add", member="4321", service="fibra",
        note="another body", actor=ANNA, language="en", key="api:treasury:old",
        request_hash="f" * 64,
    )
    assert (again.id, again.ticket) == (1, 7)
    done = await service.finish_procedure(
        world.plugin, 2, state="done", note="another note", actor=ANNA, language="en",
        key="api:treasury:old-done", request_hash="e" * 64,
    )
    assert (done.id, done.state) == (2, "done")  # not "P-2 is not pending"
    assert await events(world) == [(1, "created"), (2, "done")]
    assert (await world.ticket(number)).queue == "suport"


async def test_the_migration_downgrades(db_url):
    await asyncio.to_thread(upgrade, db_url, "head", BRANCHES)
    assert "request_hash" in await asyncio.to_thread(_columns, db_url)
    await asyncio.to_thread(
        command.downgrade, alembic_config(db_url, BRANCHES), "procedures_0002"
    )
    columns = await asyncio.to_thread(_columns, db_url)
    assert "request_hash" not in columns and "request_key" in columns
