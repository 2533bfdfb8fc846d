"""`!language` (`!idioma`): an operator sets the language of the member's mails from chat."""

from __future__ import annotations

from test_commands import error, parse

from exobot.core.intents import SetLanguage


def test_idioma_with_a_reference_and_in_the_thread():
    assert parse("!language suport#4 es").intent == SetLanguage(4, "es")
    assert parse("!idioma castellà", context=9).intent == SetLanguage(9, "castellà")


def test_idioma_needs_the_language():
    assert error("!idioma suport#4").code == "missing_argument"
