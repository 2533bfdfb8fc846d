"""Words volunteers type: `tancat`, `!tanca`, `tiquet de suport N`, a mistyped command's
nearest suggestion and `!ajuda tot`."""

import pytest

from exobot.core.actions import default_registry
from exobot.core.commands import HELP_ALL, CommandError, parse_command, suggest_command
from exobot.core.intents import SetStatus, Take
from exobot.core.model import Status

QUEUES = ("suport", "tresoreria")


def parse(text: str, context: int | None = None):
    return parse_command(text, prefix="suport", queues=QUEUES, context_ticket=context)


def refusal(text: str) -> CommandError:
    with pytest.raises(CommandError) as info:
        parse(text)
    return info.value


def test_tancat_is_resolved_and_tanca_resolves():
    assert parse("!estat suport#3 tancat").intent == SetStatus(3, Status.RESOLVED)
    assert parse("!tanca suport#3").intent == SetStatus(3, Status.RESOLVED)
    assert parse("!tanca", context=4).intent == SetStatus(4, Status.RESOLVED)
    assert parse("!llista tancat").query.statuses == (Status.RESOLVED,)


@pytest.mark.parametrize(
    "written", ["tiquet de suport 310", "Tiquet de Suport #310", "ticket de suport 310"]
)
def test_tiquet_de_suport_is_a_reference(written):
    assert parse(f"!agafa {written}").intent == Take(310)


@pytest.mark.parametrize(
    ("typed", "nearest"),
    [
        ("agaf", "agafa"),
        ("AGAFAA", "agafa"),
        ("resolv", "resolve"),
        ("respond", "respon"),
        ("comentar", "comenta"),
        ("lista", "llista"),
        ("tanc", "tanca"),
        ("hepl", "help"),
    ],
)
def test_an_unknown_command_suggests_the_nearest(typed, nearest):
    error = refusal(f"!{typed} suport#3")
    assert error.code == "unknown_command"
    assert error.params == {"command": typed, "suggestion": nearest}


@pytest.mark.parametrize("typed", ["xyzzy", "bonvespre", "q" * 200])
def test_nothing_alike_suggests_nothing(typed):
    error = refusal(f"!{typed}")
    assert "suggestion" not in error.params
    assert suggest_command(typed) is None


def test_the_suggestion_covers_a_plugins_words():
    registry = default_registry()
    assert suggest_command("agafa", registry) == "agafa"  # an exact word is its own nearest


def test_help_topic_suggests_too():
    with pytest.raises(CommandError) as info:
        parse("!ajuda agaf")
    assert info.value.params == {"command": "agaf", "suggestion": "agafa"}


@pytest.mark.parametrize("word", ["tot", "all", "TOTES", "todo"])
def test_help_all(word):
    assert parse(f"!ajuda {word}").query.topic == HELP_ALL
    assert parse("!ajuda").query.topic is None
