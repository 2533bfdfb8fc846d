"""exobot's configuration (as data) for a support mailbox on a running stack."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from devstack.matrix_setup import MatrixSetup

DEFAULT_MATRIX_STORE = "var/matrix"


def default_matrix_store(database_url: str) -> str:
    """The Matrix store next to a SQLite database (`DIR/matrix`), else `var/matrix`."""
    prefix = "sqlite:///"
    if database_url.startswith(prefix) and len(database_url) > len(prefix):
        return str(Path(database_url[len(prefix) :]).parent / "matrix")
    return DEFAULT_MATRIX_STORE


def exobot_config(
    stack: Any,
    *,
    address: str,
    database_url: str,
    matrix: MatrixSetup | None = None,
    matrix_store: str | None = None,
    alerts: dict | None = None,
    web: str | None = None,
    **mail: Any,
) -> dict:
    """A complete configuration pointing exobot at `stack` (plain IMAP/SMTP on loopback).

    Keyword arguments override keys of the `mail` section; dicts (imap, smtp, outbox) are
    merged into the defaults rather than replacing them. With `matrix` (a MatrixSetup) the
    config gets a `matrix` section for its bot account (store in `matrix_store`, by default
    next to a SQLite database) and each queue's `room` is the setup's alias. `alerts` is
    merged into the `alerts` section. `web` ("host:port") turns the web server on there;
    without it the config has no web server (instances of a test run would share a port).
    """
    data: dict[str, Any] = {
        "database": {"url": database_url},
        "tickets": {
            "prefix": "suport",
            "default_queue": "suport",
            "queues": {"suport": {}, "tresoreria": {}},
        },
        "mail": {
            "address": address,
            "display_name": "Suport eXO",
            "imap": {
                "host": stack.host,
                "port": stack.imap_port,
                "security": "none",
                "username": address,
                "password": stack.password,
            },
            "smtp": {"host": stack.host, "port": stack.smtp_port, "security": "none"},
        },
        "web": {"listen": web, "enabled": True} if web else {"enabled": False},
        "language": "ca",
    }
    for key, value in mail.items():
        if isinstance(value, dict):
            data["mail"].setdefault(key, {}).update(value)
        else:
            data["mail"][key] = value
    if matrix is not None:
        data["matrix"] = {
            "homeserver": matrix.homeserver,
            "user_id": matrix.bot_user_id,
            "password": matrix.bot_password,
            "store_path": matrix_store or default_matrix_store(database_url),
            "operators": [],
        }
        for queue, alias in matrix.aliases.items():
            data["tickets"]["queues"].setdefault(queue, {})["room"] = alias
    if alerts:
        data.setdefault("alerts", {}).update(alerts)
    return data
