"""The Matrix client's own logic: the saved session, handler isolation, undecryptable events."""

from __future__ import annotations

import stat
import time
from pathlib import Path
from types import SimpleNamespace

import nio
import pytest

from exobot.delivery import PermanentFailure
from exobot.matrix.client import (
    UNDECRYPTED_KEEP_SECONDS,
    UNDECRYPTED_NOTICE_SECONDS,
    UNDECRYPTED_RETRY_SECONDS,
    MatrixClient,
    MatrixSettings,
    Session,
    SessionStore,
    refusal,
)

MEGOLM = {
    "type": "m.room.encrypted",
    "event_id": "$late",
    "sender": "@anna:x",
    "origin_server_ts": 1,
    "content": {
        "algorithm": "m.megolm.v1.aes-sha2",
        "ciphertext": "AwgA",
        "device_id": "DEV",
        "sender_key": "key",
        "session_id": "sess",
    },
}


def settings(tmp_path: Path) -> MatrixSettings:
    return MatrixSettings("http://hs", "@bot:x", "pw", None, "exobot", tmp_path)


def test_the_session_round_trips_privately(tmp_path):
    store = SessionStore(tmp_path / "store")
    assert store.load() is None
    session = Session("http://hs", "@bot:x", "DEV", "token", "s1_2", [])
    store.save(session)
    assert store.load() == session
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert not list(store.directory.glob("*.tmp"))


def test_an_unreadable_session_means_logging_in_again(tmp_path):
    store = SessionStore(tmp_path)
    store.path.write_text("{not json")
    assert store.load() is None


class FakeNio:
    """Decrypts once `keys_arrived` is set."""

    def __init__(self) -> None:
        self.rooms = {"!r:x": nio.MatrixRoom("!r:x", "@bot:x")}
        self.keys_arrived = False

    def decrypt_event(self, event: nio.MegolmEvent) -> nio.Event:
        if not self.keys_arrived:
            raise nio.EncryptionError("no session")
        return nio.RoomMessageText.from_dict(
            {**MEGOLM, "type": "m.room.message", "content": {"msgtype": "m.text", "body": "!ajuda"}}
        )


async def test_an_undecryptable_event_is_kept_and_handled_when_its_key_arrives(tmp_path):
    client = MatrixClient(settings(tmp_path))
    client.nio = FakeNio()
    client.session = Session("http://hs", "@bot:x", "DEV", "token")
    handled = []

    async def on_event(room, event):
        handled.append(event.body)

    client.on_event = on_event
    client.session.undecrypted.append({"room_id": "!r:x", "source": MEGOLM, "seen": time.time()})
    await client._retry_undecrypted()
    assert handled == [] and len(client.session.undecrypted) == 1
    client.nio.keys_arrived = True
    await client._retry_undecrypted()
    assert handled == ["!ajuda"] and client.session.undecrypted == []


def test_undecryptable_events_are_retried_when_to_device_messages_come_else_once_a_minute(
    tmp_path,
):
    client = MatrixClient(settings(tmp_path))
    client.session = Session("http://hs", "@bot:x", "DEV", "token")
    quiet, keys = SimpleNamespace(to_device_events=[]), SimpleNamespace(to_device_events=[{}])
    assert not client._retry_due(keys)  # nothing waiting
    client.session.undecrypted.append({"room_id": "!r:x", "source": MEGOLM, "seen": time.time()})
    assert not client._retry_due(quiet)  # nio would log a warning at each vain attempt
    assert client._retry_due(keys)
    client._undecrypted_tried -= UNDECRYPTED_RETRY_SECONDS
    assert client._retry_due(quiet)
    assert not client._retry_due(quiet)


async def test_an_event_never_decrypted_is_given_up_after_a_day(tmp_path, caplog):
    client = MatrixClient(settings(tmp_path))
    client.nio = FakeNio()
    client.session = Session("http://hs", "@bot:x", "DEV", "token")
    old = time.time() - UNDECRYPTED_KEEP_SECONDS - 1
    client.session.undecrypted.append({"room_id": "!r:x", "source": MEGOLM, "seen": old})
    await client._retry_undecrypted()
    assert client.session.undecrypted == []
    assert "gave up decrypting $late" in caplog.text


async def test_an_event_still_unreadable_after_a_while_is_answered_once_and_dropped(
    tmp_path, caplog
):
    client = MatrixClient(settings(tmp_path))
    client.nio = FakeNio()
    client.session = Session("http://hs", "@bot:x", "DEV", "token")
    offered: list[tuple[str, str]] = []
    answer = False

    async def on_undecryptable(room, event):
        offered.append((room.room_id, event.event_id))
        return answer

    client.on_undecryptable = on_undecryptable
    fresh = time.time()
    client.session.undecrypted.append({"room_id": "!r:x", "source": MEGOLM, "seen": fresh})
    await client._retry_undecrypted()
    assert offered == [] and len(client.session.undecrypted) == 1  # its key may still come

    client.session.undecrypted[0]["seen"] = fresh - UNDECRYPTED_NOTICE_SECONDS
    await client._retry_undecrypted()  # the bot declines (not an operator's): kept, retried
    assert offered == [("!r:x", "$late")] and len(client.session.undecrypted) == 1

    answer = True
    await client._retry_undecrypted()
    assert len(offered) == 2 and client.session.undecrypted == []
    assert "gave up decrypting $late in !r:x after" in caplog.text
    client.nio.keys_arrived = True  # too late: it is no longer kept, so it never runs
    await client._retry_undecrypted()
    assert len(offered) == 2


async def test_a_failing_undecryptable_handler_keeps_the_event(tmp_path, caplog):
    client = MatrixClient(settings(tmp_path))
    client.nio = FakeNio()
    client.session = Session("http://hs", "@bot:x", "DEV", "token")

    async def on_undecryptable(room, event):
        raise RuntimeError("boom")

    client.on_undecryptable = on_undecryptable
    old = time.time() - UNDECRYPTED_NOTICE_SECONDS
    client.session.undecrypted.append({"room_id": "!r:x", "source": MEGOLM, "seen": old})
    await client._retry_undecrypted()
    assert len(client.session.undecrypted) == 1
    assert "answering the undecryptable $late failed" in caplog.text


async def test_a_failing_handler_is_logged_and_contained(tmp_path, caplog):
    client = MatrixClient(settings(tmp_path))

    async def broken(*_args):
        raise RuntimeError("handler bug")

    await client._call(broken, "room", "event")
    assert "handling a Matrix event failed" in caplog.text


@pytest.mark.parametrize("code", ["M_TOO_LARGE", "M_BAD_JSON", "M_NOT_JSON"])
def test_a_refusal_no_retry_can_mend_gives_the_item_up(code):
    response = nio.RoomSendError.from_dict({"errcode": code, "error": "no"}, "!room:hs")
    error = refusal("the message", response)
    assert isinstance(error, PermanentFailure)
    assert str(error) == f"the homeserver refused the message: no ({code})"


@pytest.mark.parametrize("code", ["M_FORBIDDEN", "M_LIMIT_EXCEEDED", "M_UNKNOWN", None])
def test_any_other_refusal_is_retried(code):
    answer = {"error": "later"} | ({"errcode": code} if code else {})
    error = refusal("the upload", nio.UploadError.from_dict(answer))
    assert isinstance(error, ConnectionError) and not isinstance(error, PermanentFailure)
    assert str(error).startswith("the homeserver refused the upload: ")
    assert str(error).endswith(f"({code})" if code else "unknown error")
