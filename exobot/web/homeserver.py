"""Checks a Matrix user's password against the homeserver's login API.

The password is sent to the homeserver once and never stored; the device the check creates
is logged out at once, so no session is left behind.
"""

from __future__ import annotations

import logging

import aiohttp

log = logging.getLogger("exobot.web.homeserver")

DEVICE_NAME = "exobot web login check"
TIMEOUT = aiohttp.ClientTimeout(total=15)


class HomeserverUnavailable(Exception):
    """The homeserver did not give a clear yes or no."""


class PasswordChecker:
    """`await checker(user, password)`: the canonical Matrix id when the password is right,
    None when the homeserver refuses it."""

    def __init__(self, homeserver: str) -> None:
        self.homeserver = homeserver.rstrip("/")

    async def __call__(self, user: str, password: str) -> str | None:
        """Log in with the password, log the new device out, return who it was."""
        body = {
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": user},
            "password": password,
            "initial_device_display_name": DEVICE_NAME,
        }
        try:
            async with aiohttp.ClientSession(timeout=TIMEOUT) as http:
                async with http.post(
                    f"{self.homeserver}/_matrix/client/v3/login", json=body
                ) as response:
                    if response.status in (400, 401, 403, 404):
                        return None
                    if response.status != 200:
                        raise HomeserverUnavailable(f"login answered {response.status}")
                    answer = await response.json()
                token = answer.get("access_token")
                if token:
                    await self._logout(http, token)
                return answer.get("user_id")
        except aiohttp.ClientError as error:
            raise HomeserverUnavailable(str(error)) from error

    async def _logout(self, http: aiohttp.ClientSession, token: str) -> None:
        async with http.post(
            f"{self.homeserver}/_matrix/client/v3/logout",
            headers={"Authorization": f"Bearer {token}"},
            json={},
        ) as response:
            if response.status != 200:
                log.warning("could not log out the login check's device: %s", response.status)
