"""Matrix accounts and queue rooms on the stack's Synapse, for tests and the demo.

    setup = setup_matrix(stack, tag="-t1", encrypted={"suport"})
    setup.rooms["suport"]     # "!abc:localhost", invite-only, encrypted, the bot invited
    setup.aliases["suport"]   # "#suport-t1:localhost"

The volunteer account creates the rooms and invites the bot; the bot (exobot) is expected to
join them by alias. Plain urllib against the client-server API, synchronous.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

MEGOLM = "m.megolm.v1.aes-sha2"
DEFAULT_PASSWORD = "exobot-dev-password"
DEFAULT_QUEUES = ("suport", "tresoreria")


class MatrixSetupError(Exception):
    """A client-server API call failed (the message names the call and Synapse's answer)."""


@dataclass
class MatrixSetup:
    """The bot's and a volunteer's accounts and one room per queue, as made by setup_matrix."""

    bot_user_id: str
    bot_password: str
    volunteer_user_id: str
    volunteer_password: str
    homeserver: str
    rooms: dict[str, str] = field(default_factory=dict)  # queue -> room id
    aliases: dict[str, str] = field(default_factory=dict)  # queue -> "#alias:localhost"
    encrypted: frozenset[str] = frozenset()  # queues whose room is encrypted
    tag: str = ""
    volunteer_access_token: str = ""  # of the admin-API login (for more setup calls)


# ------------------------------------------------------------------------- raw API


def _call(
    stack: Any,
    method: str,
    path: str,
    access_token: str | None = None,
    body: dict | None = None,
) -> Any:
    """One client-server API request; raises MatrixSetupError with Synapse's error text."""
    if not stack.synapse_url:
        raise MatrixSetupError("this stack runs without Synapse")
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"{stack.synapse_url}{path}", data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if access_token:
        request.add_header("Authorization", f"Bearer {access_token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response)
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")
        raise MatrixSetupError(f"{method} {path}: HTTP {exc.code} {detail}") from exc


def _quote(text: str) -> str:
    return urllib.parse.quote(text, safe="")


def _server_name(stack: Any) -> str:
    return stack.synapse_server_name or "localhost"


def resolve_alias(stack: Any, alias: str) -> str | None:
    """The room id behind `alias`, or None when the alias does not exist."""
    try:
        return _call(stack, "GET", f"/_matrix/client/v3/directory/room/{_quote(alias)}")["room_id"]
    except MatrixSetupError as exc:
        if "HTTP 404" in str(exc):
            return None
        raise


def room_state(stack: Any, access_token: str, room_id: str) -> list[dict]:
    """The current state events of a room (the caller must be in it)."""
    return _call(stack, "GET", f"/_matrix/client/v3/rooms/{_quote(room_id)}/state", access_token)


def membership(stack: Any, access_token: str, room_id: str, user_id: str) -> str | None:
    """`user_id`'s membership in the room (join, invite, leave, ban) or None."""
    for event in room_state(stack, access_token, room_id):
        if event.get("type") == "m.room.member" and event.get("state_key") == user_id:
            return event.get("content", {}).get("membership")
    return None


def invite(stack: Any, access_token: str, room_id: str, user_id: str) -> None:
    """Invite `user_id` (the caller must be allowed to)."""
    _call(
        stack,
        "POST",
        f"/_matrix/client/v3/rooms/{_quote(room_id)}/invite",
        access_token,
        {"user_id": user_id},
    )


def join(stack: Any, access_token: str, room: str) -> str:
    """Join a room by id or alias; returns the room id."""
    return _call(stack, "POST", f"/_matrix/client/v3/join/{_quote(room)}", access_token, {})[
        "room_id"
    ]


def create_room(
    stack: Any,
    access_token: str,
    *,
    alias_localpart: str | None,
    name: str,
    encrypted: bool = False,
    invite: Sequence[str] = (),
    invite_only: bool = True,
) -> str:
    """Create a room and return its id.

    Encryption is part of the initial state, so the room is encrypted before anyone else
    joins (invites are sent after the initial state). Power levels are Synapse's defaults.
    """
    initial_state: list[dict] = [
        {
            "type": "m.room.join_rules",
            "state_key": "",
            "content": {"join_rule": "invite" if invite_only else "public"},
        }
    ]
    if encrypted:
        initial_state.append(
            {"type": "m.room.encryption", "state_key": "", "content": {"algorithm": MEGOLM}}
        )
    body: dict[str, Any] = {
        "name": name,
        "preset": "private_chat" if invite_only else "public_chat",
        "visibility": "private",
        "invite": list(invite),
        "initial_state": initial_state,
    }
    if alias_localpart:
        body["room_alias_name"] = alias_localpart
    return _call(stack, "POST", "/_matrix/client/v3/createRoom", access_token, body)["room_id"]


# ------------------------------------------------------------------------ the setup


def _ensure_room(
    stack: Any,
    access_token: str,
    *,
    alias: str,
    alias_localpart: str,
    name: str,
    encrypted: bool,
    bot_user_id: str,
    volunteer_user_id: str,
) -> str:
    """The room behind `alias`, created when missing; the bot is invited (or already in)."""
    room_id = resolve_alias(stack, alias)
    if room_id is None:
        return create_room(
            stack,
            access_token,
            alias_localpart=alias_localpart,
            name=name,
            encrypted=encrypted,
            invite=[bot_user_id],
        )
    try:
        state = room_state(stack, access_token, room_id)
    except MatrixSetupError:
        # Not in the room (e.g. left it): joining works when still invited or public.
        join(stack, access_token, room_id)
        state = room_state(stack, access_token, room_id)
    members = {
        event["state_key"]: event.get("content", {}).get("membership")
        for event in state
        if event.get("type") == "m.room.member"
    }
    if members.get(volunteer_user_id) != "join":
        join(stack, access_token, room_id)
    if members.get(bot_user_id) not in ("join", "invite"):
        invite(stack, access_token, room_id, bot_user_id)
    if encrypted and not any(event.get("type") == "m.room.encryption" for event in state):
        _call(
            stack,
            "PUT",
            f"/_matrix/client/v3/rooms/{_quote(room_id)}/state/m.room.encryption/",
            access_token,
            {"algorithm": MEGOLM},
        )
    return room_id


def setup_matrix(
    stack: Any,
    *,
    tag: str = "",
    queues: Sequence[str] = DEFAULT_QUEUES,
    encrypted: Collection[str] = (),
    bot: str = "exobot",
    volunteer: str = "voluntari",
    password: str = DEFAULT_PASSWORD,
    bot_password: str | None = None,
) -> MatrixSetup:
    """Register the bot and a volunteer and give each queue an invite-only room.

    Users are `<bot><tag>` and `<volunteer><tag>` (existing ones are logged in); each queue
    gets the room `#<queue><tag>:<server>`, created by the volunteer with the bot invited,
    or reused when the alias exists (the bot is then invited if it is not in it yet).
    `encrypted` names the queues whose rooms are end-to-end encrypted from the start.
    `bot_password` defaults to `password`.
    """
    bot_password = bot_password or password
    server = _server_name(stack)
    bot_user = stack.register_matrix_user(f"{bot}{tag}", bot_password, exist_ok=True)
    vol_user = stack.register_matrix_user(f"{volunteer}{tag}", password, exist_ok=True)
    token = vol_user["access_token"]
    setup = MatrixSetup(
        bot_user_id=bot_user["user_id"],
        bot_password=bot_password,
        volunteer_user_id=vol_user["user_id"],
        volunteer_password=password,
        homeserver=stack.synapse_url,
        encrypted=frozenset(encrypted),
        tag=tag,
        volunteer_access_token=token,
    )
    for queue in queues:
        localpart = f"{queue}{tag}"
        alias = f"#{localpart}:{server}"
        setup.aliases[queue] = alias
        setup.rooms[queue] = _ensure_room(
            stack,
            token,
            alias=alias,
            alias_localpart=localpart,
            name=f"{queue}{tag}",
            encrypted=queue in setup.encrypted,
            bot_user_id=setup.bot_user_id,
            volunteer_user_id=setup.volunteer_user_id,
        )
    return setup
