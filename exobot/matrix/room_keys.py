"""A room key that reached every member's device before the bot posts in an encrypted room.

matrix-nio shares a room key (megolm session) in to-device requests and marks it shared even
when one of them failed (the homeserver restarting, a timeout: `share_group_session` gathers
them with `return_exceptions=True`). Every later post in that key would be unreadable on the
devices it missed (volunteers see "unable to decrypt" on tickets' roots) until the key changes
by itself, after 100 messages or a week. So before each post the key in use is checked: one
that missed a device nio could have sent it to (an Olm session with that device exists) is
discarded and a new one shared, a few times; then the post fails and is tried again later,
never sent in a key some volunteers lack. A device without an Olm session (it has no one-time
keys left) never blocks a post: nio cannot reach it at all, as before. A key that a sync
drops while it is being shared (a member or a device changed at that moment) makes nio's share
fail with a KeyError; a new key follows at once, as for a miss.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import nio

log = logging.getLogger("exobot.matrix")

# New keys shared for one post while a device keeps missing them, before the post fails.
KEY_SHARE_ATTEMPTS = 3


class RoomKeyNotShared(ConnectionError):
    """A room key did not reach every member's device: the post is tried again later."""


async def ensure_room_key(
    client: nio.AsyncClient,
    room_id: str,
    on_miss: Callable[[list[tuple[str, str]]], None] | None = None,
) -> None:
    """Make sure the room key that the next message in `room_id` goes in has reached every
    member's device that can have it (nothing to do in an unencrypted room); raises
    RoomKeyNotShared when it did not after KEY_SHARE_ATTEMPTS new keys. `on_miss` is told
    the (user, device) pairs each missed key left out."""
    room = client.rooms.get(room_id)
    if room is None or not room.encrypted or client.olm is None:
        return
    if not room.members_synced:
        # As nio's room_send does first: a key shared before the members are known would
        # miss those not yet known, and this check could not tell.
        await client.joined_members(room_id)
        if client.should_query_keys:
            await client.keys_query()
    missing: list[tuple[str, str]] = []
    for _attempt in range(KEY_SHARE_ATTEMPTS):
        await _share_if_needed(client, room_id)
        missing = devices_missing_key(client, room_id)
        if not missing:
            return
        if on_miss is not None:
            on_miss(missing)
        log.warning(
            "the room key for %s did not reach %d device(s) (%s): sharing a new one",
            room_id,
            len(missing),
            ", ".join(f"{user} {device}" for user, device in missing[:5]),
        )
        client.invalidate_outbound_session(room_id)
    raise RoomKeyNotShared(f"the room key for {room_id} did not reach {len(missing)} device(s)")


async def _share_if_needed(client: nio.AsyncClient, room_id: str) -> None:
    """Share a new room key when the room has none in use, or wait for the one being shared
    (another post's; nio refuses two at once). A key discarded while it was being shared is
    followed by a new one, KEY_SHARE_ATTEMPTS times at most."""
    discarded = 0
    while client.olm.should_share_group_session(room_id):
        sharing = client.sharing_session.get(room_id)
        if sharing is None:
            try:
                await client.share_group_session(room_id, ignore_unverified_devices=True)
            except KeyError:
                if room_id in client.olm.outbound_group_sessions:
                    raise
                # A sync showed a member or a device change while the key was out: nio
                # dropped the key (its answers had marked it shared) and then failed to mark
                # it shared itself. Not the post's fault: a new key, for who is there now.
                discarded += 1
                if discarded >= KEY_SHARE_ATTEMPTS:
                    raise RoomKeyNotShared(
                        f"the room key for {room_id} was discarded {discarded} times while"
                        " it was being shared"
                    ) from None
                log.info("the room key for %s was discarded while shared: a new one", room_id)
                continue
            finally:
                # When claiming one-time keys fails (the homeserver away), nio raises before
                # it clears its "being shared" mark: every later post in the room would wait
                # on it forever. Cleared nio's own way; nothing else ran in between.
                stuck = client.sharing_session.pop(room_id, None)
                if stuck is not None:
                    stuck.set()
            return
        await sharing.wait()


def devices_missing_key(client: nio.AsyncClient, room_id: str) -> list[tuple[str, str]]:
    """(user, device) of the room's members whose devices neither got the room key in use nor
    were meant to be left out (the bot's own, blocked ones), among those nio can send a key
    to; empty when no key is in use."""
    olm = client.olm
    session = olm.outbound_group_sessions.get(room_id)
    room = client.rooms.get(room_id)
    if session is None or not session.shared or room is None:
        return []
    return [
        (user_id, device.id)
        for user_id in room.users
        for device in client.device_store.active_user_devices(user_id)
        if (user_id, device.id) not in session.users_shared_with
        and (user_id, device.id) not in session.users_ignored
        and olm.session_store.get(device.curve25519) is not None
    ]
