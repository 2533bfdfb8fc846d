"""Serves the web application with uvicorn as one task of exobot's event loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Generator

import uvicorn
from fastapi import FastAPI

log = logging.getLogger("exobot.web.server")

STOP_SECONDS = 5.0


class WebListenError(Exception):
    """The configured address cannot be listened on."""


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its own signal handlers: exobot's loop owns SIGTERM and SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:  # noqa: D102
        yield


class WebServer:
    """Binds the socket at once (a busy port is a clear error at start), serves on `run()`."""

    def __init__(self, app: FastAPI, host: str, port: int) -> None:
        self.app = app
        self.host = host
        self.port = port
        self._socket: socket.socket | None = None

    def bind(self) -> None:
        """Open the listening socket."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError as error:
            sock.close()
            raise WebListenError(
                f"web.listen: cannot listen on {self.host}:{self.port}: {error.strerror}"
            ) from None
        sock.listen(128)
        sock.setblocking(False)
        self._socket = sock
        self.port = sock.getsockname()[1]

    async def run(self) -> None:
        """Serve until cancelled, then finish the requests in flight (briefly)."""
        if self._socket is None:
            self.bind()
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            log_config=None,  # uvicorn's records go through exobot's one-line formatter
            access_log=False,
            lifespan="off",
            server_header=False,
            proxy_headers=False,
        )
        server = _EmbeddedServer(config)
        serving = asyncio.ensure_future(server.serve(sockets=[self._socket]))
        log.info("web server listening on http://%s:%d", self.host, self.port)
        try:
            await asyncio.shield(serving)
        except asyncio.CancelledError:
            server.should_exit = True
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(serving, STOP_SECONDS)
            raise
        finally:
            self._socket.close()
