"""A homeserver that refuses the bot's credentials stops exobot (exit 1): the client's HTTP
session is closed before that, so the log does not end with asyncio's "Unclosed client
session" / "Unclosed connector" errors."""

from __future__ import annotations

import pytest
from aiohttp import web

from exobot.matrix.client import MatrixClient, MatrixLoginError, MatrixSettings


@pytest.fixture
async def refusing_homeserver():
    """A homeserver that refuses every login and every access token."""

    async def login(_request: web.Request) -> web.Response:
        return web.json_response({"errcode": "M_FORBIDDEN", "error": "Invalid password"}, 403)

    async def whoami(_request: web.Request) -> web.Response:
        body = {"errcode": "M_UNKNOWN_TOKEN", "error": "Invalid access token passed."}
        return web.json_response(body, 401)

    app = web.Application()
    app.router.add_post("/_matrix/client/{version}/login", login)
    app.router.add_get("/_matrix/client/{version}/account/whoami", whoami)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


@pytest.mark.parametrize(
    ("password", "token", "said"),
    [("wrong-pw", None, "login refused"), (None, "wrong-token", "access_token refused")],
)
async def test_refused_credentials_close_the_http_session(
    tmp_path, refusing_homeserver, password, token, said
):
    settings = MatrixSettings(
        refusing_homeserver, "@exobot:example.org", password, token, "exobot", tmp_path / "m"
    )
    client = MatrixClient(settings)
    with pytest.raises(MatrixLoginError, match=said):
        await client.connect()
    assert client.nio is not None
    assert client.nio.client_session is None  # closed: nothing left for asyncio to complain of
