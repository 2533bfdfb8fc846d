"""`!unflag` (`!desmarca`): an operator clears a flag, such as `sensitive`, from chat."""

from __future__ import annotations

from test_commands import error, parse

from exobot.core.intents import ClearFlag


def test_unflag_with_and_without_a_note():
    assert parse("!unflag suport#4 sensitive").intent == ClearFlag(4, "sensitive", "")
    assert parse(
        "!desmarca suport#4 sensitive dades passades a la gestió, soci 1234"
    ).intent == ClearFlag(4, "sensitive", "dades passades a la gestió, soci 1234")


def test_unflag_inside_the_ticket_thread():
    assert parse("!desmarca non-member", context=9).intent == ClearFlag(9, "non-member", "")


def test_unflag_needs_the_flag():
    assert error("!unflag suport#4").code == "missing_argument"
