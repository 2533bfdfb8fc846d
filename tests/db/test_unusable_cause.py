"""exobot.db.unusable.unusable_cause tells an error saying a database cannot be reached or used
(what `exobot` reports in one line) from a statement's own error (kept as a traceback)."""

from __future__ import annotations

import psycopg
import pytest
from sqlalchemy.exc import IntegrityError, OperationalError

from exobot.db.unusable import unusable_cause

URL = "postgresql+psycopg://exo:hunter22@db.example.org/exobot"


def test_an_error_opening_the_session_is_the_databases():
    driver = psycopg.OperationalError("failed to resolve host 'db.example.org'")
    error = OperationalError(None, None, driver)  # SQLAlchemy's: no statement
    assert unusable_cause(error, URL) == "failed to resolve host 'db.example.org'"
    assert unusable_cause(RuntimeError("wrapped"), URL) is None
    wrapped = RuntimeError("wrapped")
    wrapped.__cause__ = error
    assert unusable_cause(wrapped, URL) == "failed to resolve host 'db.example.org'"


def test_a_statements_error_is_not():
    error = IntegrityError("INSERT INTO tickets …", {}, psycopg.errors.UniqueViolation())
    assert unusable_cause(error, URL) is None
    cut = OperationalError("SELECT 1", {}, psycopg.OperationalError("server closed"))
    assert unusable_cause(cut, URL) is None
    cut.connection_invalidated = True  # a connection found cut: the database went away
    assert unusable_cause(cut, URL) == "server closed"


@pytest.mark.parametrize(
    ("message", "shown"),
    [
        # A password with an unescaped "@" becomes part of the host name.
        ("failed to resolve host 'hunter22'", "failed to resolve host '***'"),
        ("password authentication failed", "password authentication failed"),  # no word of it
    ],
)
def test_the_password_is_never_in_the_cause(message, shown):
    error = OperationalError(None, None, psycopg.OperationalError(message))
    assert unusable_cause(error, URL) == shown
    assert unusable_cause(error, "postgresql+psycopg://exo:pass@db/exobot") == message
