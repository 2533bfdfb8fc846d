"""A sync whose timeline is "limited" (more events since the last one than it brings): the
left-out events are fetched page by page and handled first, oldest first, or the sync fails
and comes again from the same position."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import nio
import pytest

from exobot.matrix import client as matrix_client
from tests.matrix.test_session_saves import SyncingNio, client_at, saved


def text(number: int) -> nio.Event:
    return nio.Event.parse_event(
        {
            "type": "m.room.message",
            "event_id": f"$e{number}",
            "sender": "@vol:x",
            "origin_server_ts": number,
            "content": {"msgtype": "m.text", "body": f"!comment {number}"},
        }
    )


class LimitedNio(SyncingNio):
    """Every sync brings event 9 only, its timeline limited; /messages pages back from it
    through `pages` (each newest first, as the homeserver sends them)."""

    def __init__(self, pages: list[list[int]], fail: bool = False) -> None:
        super().__init__()
        self.pages = pages
        self.fail = fail
        self.asked: list[tuple[str, str | None, int]] = []

    async def sync(self, **_kwargs):  # noqa: ANN003, ANN201 - nio's signature
        self.batch += 1
        timeline = SimpleNamespace(events=[text(9)], limited=True, prev_batch="p0")
        return SimpleNamespace(
            next_batch=f"s{self.batch}",
            rooms=SimpleNamespace(invite={}, join={"!r:x": SimpleNamespace(timeline=timeline)}),
            to_device_events=[],
        )

    async def room_messages(self, room_id, start, end=None, limit=10):  # noqa: ANN001, ANN201
        self.asked.append((start, end, limit))
        if self.fail:
            return nio.RoomMessagesError("server busy", room_id=room_id)
        page = len(self.asked) - 1
        chunk = [text(n) for n in self.pages[page]] if page < len(self.pages) else []
        return nio.RoomMessagesResponse(room_id, chunk, start, f"p{page + 1}")


def handled_by(client) -> list[str]:  # noqa: ANN001
    handled: list[str] = []

    async def on_event(_room, event) -> None:  # noqa: ANN001
        handled.append(event.event_id)

    client.on_event = on_event
    return handled


async def test_the_left_out_events_are_handled_first_oldest_first(tmp_path, monkeypatch):
    monkeypatch.setattr(matrix_client, "MISSED_PAGE", 3)
    client = client_at(tmp_path, "s0")
    client.nio = LimitedNio([[8, 7, 6], [5, 4, 3], [2]])
    handled = handled_by(client)
    await client._sync_once(timeout=0)
    assert handled == [f"$e{n}" for n in range(2, 10)]
    # From the timeline's start back to the last position, page after page.
    assert client.nio.asked == [("p0", "s0", 3), ("p1", "s0", 3), ("p2", "s0", 3), ("p3", "s0", 3)]


async def test_a_failed_fetch_fails_the_sync_and_keeps_the_position(tmp_path):
    client = client_at(tmp_path, "s0")
    client.nio = LimitedNio([], fail=True)
    handled = handled_by(client)
    with pytest.raises(ConnectionError, match="server busy"):
        await client._sync_once(timeout=0)
    assert handled == []  # not even the timeline's own event: it comes again with the rest
    assert client.session.next_batch == "s0" and saved(client) == "s0"


async def test_a_gap_longer_than_the_cap_keeps_its_newest_events_and_says_so(
    tmp_path, monkeypatch, caplog
):
    monkeypatch.setattr(matrix_client, "MISSED_PAGE", 2)
    monkeypatch.setattr(matrix_client, "MISSED_MAX", 4)
    client = client_at(tmp_path, "s0")
    client.nio = LimitedNio([[8, 7], [6, 5], [4, 3], [2, 1]])
    handled = handled_by(client)
    with caplog.at_level(logging.ERROR, logger="exobot.matrix"):
        await client._sync_once(timeout=0)
    assert handled == [f"$e{n}" for n in range(5, 10)]
    assert "more than 4 events in !r:x since the last sync" in caplog.text
