"""The sync position is written at most every SESSION_SAVE_SECONDS, never later than needed."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

import nio

from exobot.matrix.client import (
    SESSION_SAVE_SECONDS,
    MatrixClient,
    MatrixSettings,
    Session,
    skip_empty_room_saves,
)
from tests.matrix.test_client import MEGOLM


class SyncingNio:
    """A homeserver whose every sync returns a new position and, when asked, one event that
    cannot be decrypted."""

    should_upload_keys = should_query_keys = should_claim_keys = False

    def __init__(self) -> None:
        self.rooms = {"!r:x": nio.MatrixRoom("!r:x", "@bot:x")}
        self.batch = 0
        self.undecryptable = False

    async def send_to_device_messages(self) -> list:
        return []

    async def sync(self, **_kwargs):  # noqa: ANN003, ANN201 - nio's signature
        self.batch += 1
        events = [nio.Event.parse_event(MEGOLM)] if self.undecryptable else []
        self.undecryptable = False
        join = {
            "!r:x": SimpleNamespace(
                timeline=SimpleNamespace(events=events, limited=False, prev_batch=None)
            )
        }
        return SimpleNamespace(
            next_batch=f"s{self.batch}",
            rooms=SimpleNamespace(invite={}, join=join),
            to_device_events=[],
        )

    async def request_room_key(self, _event) -> None:  # noqa: ANN001
        return None

    async def close(self) -> None:
        return None


def client_at(tmp_path: Path, next_batch: str | None) -> MatrixClient:
    settings = MatrixSettings("http://hs", "@bot:x", "pw", None, "exobot", tmp_path)
    client = MatrixClient(settings)
    client.nio = SyncingNio()
    client.session = Session("http://hs", "@bot:x", "DEV", "token", next_batch)
    client.store.save(client.session)
    client._saved_at = time.monotonic()  # as connect() leaves it
    return client


def saved(client: MatrixClient) -> str | None:
    return client.store.load().next_batch


async def test_the_first_position_is_written_at_once_later_ones_at_most_every_few_seconds(
    tmp_path,
):
    client = client_at(tmp_path, None)
    await client._sync_once(timeout=0)
    assert saved(client) == "s1"  # a session without a position would skip the backlog
    await client._sync_once(timeout=0)
    assert saved(client) == "s1"  # the bot's own posts come back: no write per sync
    client._saved_at -= SESSION_SAVE_SECONDS
    await client._sync_once(timeout=0)
    assert saved(client) == "s3"
    await client._sync_once(timeout=0)
    assert saved(client) == "s3"
    await client.close()
    assert saved(client) == "s4"  # a normal stop writes where the sync stopped


async def test_an_event_kept_for_decryption_is_written_at_once(tmp_path):
    client = client_at(tmp_path, "s0")
    await client._sync_once(timeout=0)
    assert saved(client) == "s0"
    client.nio.undecryptable = True
    await client._sync_once(timeout=0)
    kept = client.store.load()
    assert kept.next_batch == "s2" and [e["source"]["event_id"] for e in kept.undecrypted] == [
        "$late"
    ]


def test_nio_saves_newly_encrypted_rooms_but_not_an_empty_set_after_every_sync():
    saved_sets = []
    store = SimpleNamespace(save_encrypted_rooms=saved_sets.append)
    skip_empty_room_saves(store)
    store.save_encrypted_rooms(set())
    store.save_encrypted_rooms({"!r:x"})
    assert saved_sets == [{"!r:x"}]
    skip_empty_room_saves(None)  # no store (encryption unavailable): nothing to wrap
