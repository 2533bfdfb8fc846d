"""Constants the procedures tests share (a module of its own: `from conftest import …` may
find another folder's conftest when the whole suite runs)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import exobot_procedures

BRANCHES = {"procedures": Path(exobot_procedures.__file__).parent / "migrations"}
START = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
MINIMAL = {
    "mail": {
        "address": "suport@example.org",
        "imap": {"host": "imap.example.org", "username": "suport", "password": "secret-imap"},
        "smtp": {"host": "smtp.example.org"},
    },
    "tickets": {"queues": {"suport": {}, "tresoreria": {}}},
}
