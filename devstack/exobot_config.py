"""exobot's configuration (as data) for a support mailbox on a running stack."""

from __future__ import annotations

from typing import Any


def exobot_config(stack: Any, *, address: str, database_url: str, **mail: Any) -> dict:
    """A complete configuration pointing exobot at `stack` (plain IMAP/SMTP on loopback).

    Keyword arguments override keys of the `mail` section; dicts (imap, smtp, outbox) are
    merged into the defaults rather than replacing them.
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
        "web": {"listen": "127.0.0.1:8080"},
        "language": "ca",
    }
    for key, value in mail.items():
        if isinstance(value, dict):
            data["mail"].setdefault(key, {}).update(value)
        else:
            data["mail"][key] = value
    return data
