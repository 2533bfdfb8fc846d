"""Shared fixtures: the real server stack (one per session) and exobot instances on it."""

import pytest

from exobot import messages

pytest_plugins = ["stack_fixtures", "harness", "matrix_harness"]


@pytest.fixture(autouse=True)
def _strict_messages(monkeypatch):
    """A bot message missing a key or a parameter fails the test instead of falling back."""
    monkeypatch.setattr(messages, "STRICT", True)
