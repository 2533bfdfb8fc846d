"""The Matrix test tooling itself, on the real Synapse: setup_matrix, create_room and the
matrix-nio volunteer client of tests/matrix_harness.py."""

from __future__ import annotations

import urllib.parse

import matrix_harness
import pytest
import yaml
from matrix_harness import body_of, reply_to_of, sender_of, thread_root_of

from devstack.exobot_config import exobot_config
from devstack.matrix_setup import (
    MEGOLM,
    MatrixSetupError,
    _call,
    create_room,
    join,
    resolve_alias,
    room_state,
    setup_matrix,
)
from exobot.config import load_config

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _needs_synapse(stack):
    if stack.synapse_url is None:
        pytest.skip("stack started without Synapse (EXOBOT_STACK_SYNAPSE=0)")


def _state(stack, token: str, room_id: str) -> dict[tuple[str, str], dict]:
    return {(e["type"], e["state_key"]): e["content"] for e in room_state(stack, token, room_id)}


def test_setup_matrix_makes_invite_only_rooms_with_aliases_and_invites_the_bot(stack, matrix_setup):
    setup = matrix_setup()
    tag = setup.tag
    assert setup.bot_user_id == f"@exobot{tag}:localhost"
    assert setup.volunteer_user_id == f"@voluntari{tag}:localhost"
    assert set(setup.rooms) == set(setup.aliases) == {"suport", "tresoreria"}
    token = setup.volunteer_access_token
    for queue, alias in setup.aliases.items():
        assert alias == f"#{queue}{tag}:localhost"
        assert resolve_alias(stack, alias) == setup.rooms[queue]
        state = _state(stack, token, setup.rooms[queue])
        assert state[("m.room.join_rules", "")]["join_rule"] == "invite"
        assert state[("m.room.member", setup.bot_user_id)]["membership"] == "invite"
        assert state[("m.room.member", setup.volunteer_user_id)]["membership"] == "join"
        assert ("m.room.encryption", "") not in state

    # Invite-only: a stranger cannot join.
    stranger = stack.register_matrix_user(f"stranger{tag}", "pw", exist_ok=True)
    with pytest.raises(MatrixSetupError, match="403"):
        join(stack, stranger["access_token"], setup.aliases["suport"])

    # Run again: the aliases are reused, the bot stays invited.
    again = setup_matrix(stack, tag=tag)
    assert again.rooms == setup.rooms


def test_setup_matrix_reinvites_a_bot_that_left(stack, matrix_setup):
    setup = matrix_setup(queues=("suport",))
    bot = stack.login_matrix_user(setup.bot_user_id, setup.bot_password)
    room = setup.rooms["suport"]
    join(stack, bot["access_token"], room)
    _call(stack, "POST", f"/_matrix/client/v3/rooms/{room}/leave", bot["access_token"], {})
    state = _state(stack, setup.volunteer_access_token, room)
    assert state[("m.room.member", setup.bot_user_id)]["membership"] == "leave"

    setup_matrix(stack, tag=setup.tag, queues=("suport",), encrypted={"suport"})

    state = _state(stack, setup.volunteer_access_token, room)
    assert state[("m.room.member", setup.bot_user_id)]["membership"] == "invite"
    assert state[("m.room.encryption", "")]["algorithm"] == MEGOLM  # added to the old room


def test_encrypted_room_is_encrypted_before_anyone_else_joins(stack, matrix_setup):
    setup = matrix_setup(queues=())
    token = setup.volunteer_access_token
    room = create_room(
        stack,
        token,
        alias_localpart=None,
        name="encrypted from the start",
        encrypted=True,
        invite=[setup.bot_user_id],
    )
    bot = stack.login_matrix_user(setup.bot_user_id, setup.bot_password)
    join(stack, bot["access_token"], room)

    query = urllib.parse.urlencode({"dir": "f", "limit": 100})
    timeline = _call(stack, "GET", f"/_matrix/client/v3/rooms/{room}/messages?{query}", token)[
        "chunk"
    ]
    types = [(e["type"], e.get("state_key"), e["content"].get("membership")) for e in timeline]
    encryption = types.index(("m.room.encryption", "", None))
    invite = types.index(("m.room.member", setup.bot_user_id, "invite"))
    joined = types.index(("m.room.member", setup.bot_user_id, "join"))
    assert encryption < invite < joined
    assert timeline[encryption]["content"]["algorithm"] == MEGOLM


async def _encrypted_room(matrix_setup, volunteer, matrix_login):  # noqa: ANN001, ANN202
    """An encrypted queue room with the volunteer and a harness client as the bot, each
    having seen the other join: (room id, volunteer, bot)."""
    setup = matrix_setup(queues=("suport",), encrypted={"suport"})
    room = setup.rooms["suport"]
    vol = await volunteer(setup)
    bot = await matrix_login(setup.bot_user_id, setup.bot_password)
    assert await bot.join(setup.aliases["suport"]) == room
    await vol.wait_member(room, bot.user_id)
    return room, vol, bot


async def test_encrypted_messages_are_decrypted_and_were_encrypted_on_the_wire(
    matrix_setup, volunteer, matrix_login
):
    room, vol, bot = await _encrypted_room(matrix_setup, volunteer, matrix_login)
    assert vol.client.rooms[room].encrypted

    mark = bot.mark(room)
    sent = await vol.send(room, "Hola, bot!")
    seen = await bot.wait_for(room, lambda e: e["event_id"] == sent, after=mark, what="hola")
    assert seen["type"] == "m.room.message"
    assert body_of(seen) == "Hola, bot!"
    assert sender_of(seen) == vol.user_id
    assert bot.wire_type(sent) == "m.room.encrypted"
    assert bot.raw_event(sent)["content"]["algorithm"] == MEGOLM
    assert "body" not in bot.raw_event(sent)["content"]
    assert bot.undecrypted(room) == []

    answer = await bot.send(room, "Hola, voluntari.")
    seen = await vol.wait_for(room, lambda e: e["event_id"] == answer, what="the answer")
    assert body_of(seen) == "Hola, voluntari."
    assert [e["type"] for e in vol.raw_events(room) if e["event_id"] == answer] == [
        "m.room.encrypted"
    ]
    # The sender reads its own encrypted message too.
    own = await vol.wait_for(room, lambda e: e["event_id"] == sent, what="own message")
    assert body_of(own) == "Hola, bot!"


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypted"])
async def test_thread_messages_and_edits_carry_their_relations(
    matrix_setup, volunteer, matrix_login, encrypted
):
    setup = matrix_setup(queues=("suport",), encrypted={"suport"} if encrypted else ())
    room = setup.rooms["suport"]
    vol = await volunteer(setup)
    bot = await matrix_login(setup.bot_user_id, setup.bot_password)
    await bot.join(room)
    await vol.wait_member(room, bot.user_id)

    root = await bot.send(room, "suport#1: no em funciona internet", html="<b>suport#1</b>")
    in_thread = await vol.send(room, "!take", thread_root=root)
    seen = await bot.wait_for(room, lambda e: thread_root_of(e) == root, what="thread message")
    assert seen["event_id"] == in_thread
    assert seen["content"]["m.relates_to"] == {
        "rel_type": "m.thread",
        "event_id": root,
        "is_falling_back": True,
        "m.in_reply_to": {"event_id": root},
    }
    assert reply_to_of(seen) == root
    if encrypted:
        # Relations stay in clear text so the server can aggregate threads.
        assert bot.wire_type(in_thread) == "m.room.encrypted"
        assert bot.raw_event(in_thread)["content"]["m.relates_to"]["rel_type"] == "m.thread"

    reply = await vol.send(room, "fet", thread_root=root, reply_to=in_thread)
    seen = await bot.wait_for(room, lambda e: e["event_id"] == reply, what="real reply")
    assert seen["content"]["m.relates_to"]["m.in_reply_to"] == {"event_id": in_thread}
    assert seen["content"]["m.relates_to"]["is_falling_back"] is False

    rooted = await vol.wait_for(room, lambda e: e["event_id"] == root, what="the root")
    assert rooted["content"]["formatted_body"] == "<b>suport#1</b>"

    edit = await vol.edit(room, in_thread, "!take suport#1")
    seen = await bot.wait_for(room, lambda e: e["event_id"] == edit, what="the edit")
    assert seen["content"]["m.relates_to"] == {"rel_type": "m.replace", "event_id": in_thread}
    assert seen["content"]["m.new_content"] == {"msgtype": "m.text", "body": "!take suport#1"}


async def test_wait_for_only_looks_after_the_mark(matrix_setup, volunteer):
    setup = matrix_setup(queues=("suport",))
    room = setup.rooms["suport"]
    vol = await volunteer(setup)
    await vol.send(room, "ping")
    await vol.wait_for(room, lambda e: body_of(e) == "ping")
    mark = vol.mark(room)
    second = await vol.send(room, "ping")
    seen = await vol.wait_for(room, lambda e: body_of(e) == "ping", after=mark)
    assert seen["event_id"] == second


async def test_a_fresh_login_records_history_once(matrix_setup, volunteer):
    setup = matrix_setup(queues=("suport",))
    room = setup.rooms["suport"]
    first = await volunteer(setup)
    sent = await first.send(room, "abans")
    await first.wait_for(room, lambda e: e["event_id"] == sent)
    second = await volunteer(setup)  # a second device of the same volunteer
    await second.wait_for(room, lambda e: e["event_id"] == sent)
    ids = [e["event_id"] for e in second.events(room)]
    assert len(ids) == len(set(ids))


async def test_events_a_limited_sync_leaves_out_are_recorded_in_order(
    matrix_setup, volunteer, matrix_login, monkeypatch
):
    """More events than a sync brings (here 9 against 3, encrypted): the client fetches
    the left-out ones, so a test waiting for a post never misses it in a burst."""
    monkeypatch.setattr(matrix_harness, "TIMELINE_LIMIT", 3)
    setup = matrix_setup(queues=("suport",), encrypted={"suport"})
    room = setup.rooms["suport"]
    vol = await volunteer(setup)
    bot = await matrix_login(setup.bot_user_id, setup.bot_password)
    await bot.join(room)
    await vol.wait_member(room, bot.user_id)
    await vol.pause()
    sent = [await bot.send(room, f"missatge {i}") for i in range(9)]
    vol.resume()
    await vol.wait_for(room, lambda e: e["event_id"] == sent[-1], what="the last message")
    seen = [e for e in vol.events(room) if e["event_id"] in sent]
    assert [e["event_id"] for e in seen] == sent
    assert [body_of(e) for e in seen] == [f"missatge {i}" for i in range(9)]


def test_exobot_config_with_matrix_validates(stack, matrix_setup, tmp_path):
    setup = matrix_setup()
    data = exobot_config(
        stack,
        address="suport@example.org",
        database_url=f"sqlite:///{tmp_path / 'exobot.db'}",
        matrix=setup,
        alerts={"new_after": "1h"},
        display_name="Suport (test)",
    )
    assert data["matrix"]["store_path"] == str(tmp_path / "matrix")
    assert data["mail"]["display_name"] == "Suport (test)"
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    config = load_config(path, env={})
    assert config.matrix is not None
    assert config.matrix.user_id == setup.bot_user_id
    assert config.matrix.homeserver == stack.synapse_url
    assert config.tickets.queues["suport"].room == setup.aliases["suport"]
    assert config.tickets.queues["tresoreria"].room == setup.aliases["tresoreria"]
    assert config.alerts.new_after.total_seconds() == 3600

    explicit = exobot_config(
        stack, address="a@example.org", database_url="sqlite:///x.db", matrix=setup,
        matrix_store="/srv/store",
    )  # fmt: skip
    assert explicit["matrix"]["store_path"] == "/srv/store"
    assert "matrix" not in exobot_config(
        stack, address="a@example.org", database_url="sqlite:///x.db"
    )


async def test_messages_without_a_key_are_kept_as_undecrypted(
    matrix_setup, volunteer, matrix_login
):
    setup = matrix_setup(queues=("suport",), encrypted={"suport"})
    room = setup.rooms["suport"]
    vol = await volunteer(setup)
    early = await vol.send(room, "before the bot joined")  # its key is not shared with the bot
    bot = await matrix_login(setup.bot_user_id, setup.bot_password)
    await bot.join(room)
    seen = await bot.wait_for(room, lambda e: e["event_id"] == early, what="the early message")
    assert seen["type"] == "m.room.encrypted"
    assert [e["event_id"] for e in bot.undecrypted(room)] == [early]

    await vol.wait_member(room, bot.user_id)
    later = await vol.send(room, "after")
    # The room key travels as a to-device message that may come a sync after the event: the
    # harness decrypts the event then, so wait for it decrypted, not merely seen.
    seen = await bot.wait_for(
        room,
        lambda e: e["event_id"] == later and body_of(e) == "after",
        what="the later message, decrypted",
    )
    assert seen["type"] == "m.room.message"
    assert [e["event_id"] for e in bot.undecrypted(room)] == [early]


async def test_a_room_key_a_device_missed_is_shared_again(matrix_setup, volunteer, matrix_login):
    # nio marks a room key shared even when the to-device request that carries it failed;
    # the harness, as Element, shares a new key until every member's device has one.
    room, vol, bot = await _encrypted_room(matrix_setup, volunteer, matrix_login)
    failed = []
    send = vol.client.send  # the HTTP request, under nio's retries

    async def lose_the_first_key(method, path, *args, **kwargs):
        if "/sendToDevice/m.room.encrypted/" in path and not failed:
            failed.append(path)
            raise RuntimeError("the to-device request broke")
        return await send(method, path, *args, **kwargs)

    vol.client.send = lose_the_first_key
    sent = await vol.send(room, "amb clau")
    seen = await bot.wait_for(
        room,
        lambda e: e["event_id"] == sent and body_of(e) == "amb clau",
        what="the message, decrypted",
    )
    assert seen["type"] == "m.room.message"
    assert failed, "the first key's to-device request was made to fail"
    assert vol.key_share_misses == [(room, [(bot.user_id, bot.device_id)])]
    assert vol.client.key_share_failures == ["RuntimeError('the to-device request broke')"]
