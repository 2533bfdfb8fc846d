"""The log's masking keeps a migration's name as it is ("Running upgrade 0008 -> 0009, key
request hash: …" is the code's own words, not a credential), and still masks a credential
written the same way in any other line, Alembic's own included."""

from __future__ import annotations

import io
import logging

import pytest

from exobot.cli import LOG_FORMAT, OneLineFormatter, SensitiveFilter
from exobot.db.migrate import upgrade


@pytest.fixture
def log_text():
    """What exobot's log handler (the masking filter, the one-line format) writes, as text."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(OneLineFormatter(LOG_FORMAT))
    handler.addFilter(SensitiveFilter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield stream.getvalue
    root.removeHandler(handler)
    root.setLevel(level)


def test_a_migrations_name_is_logged_as_it_is(tmp_path, log_text):
    upgrade(f"sqlite:///{tmp_path / 'exobot.db'}", "0009")
    (line,) = [line for line in log_text().splitlines() if "0008 -> 0009" in line]
    assert line.endswith(
        "alembic.runtime.migration: Running upgrade 0008 -> 0009, key request hash:"
        " handled_keys.request_hash, the fingerprint of the request a key came with"
    )


def test_the_same_words_elsewhere_are_still_masked(log_text):
    logging.getLogger("exobot.mail.processor").info("key request hash: gat-negre-7")
    # Alembic's logger with other text (not a migration step) is masked too.
    logging.getLogger("alembic.runtime.migration").info("Running %s", "the key: gat-negre-7")
    text = log_text()
    assert "gat-negre-7" not in text
    lines = text.splitlines()
    assert lines[-2].endswith("exobot.mail.processor: key request hash: ********")
    assert lines[-1].endswith("alembic.runtime.migration: Running the key: ********")
