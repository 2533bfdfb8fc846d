"""The chat parser reads any registry: an action declared later (a plugin's) is parsed by the
kinds of its arguments, with its ticket use, and disappears when it is unregistered."""

from __future__ import annotations

import pytest
from test_commands import QUEUES

from exobot.core.actions import (
    ActionCall,
    ActionSpec,
    Answer,
    ArgKind,
    Argument,
    TicketUse,
    new_registry,
)
from exobot.core.addresses import is_user_id
from exobot.core.commands import CommandError, canonical_name, parse_command
from exobot.core.intents import Comment
from exobot.core.model import Status


async def _answer(call: ActionCall) -> Answer:
    return Answer("ok")


def _spec(name: str, *arguments: Argument, ticket: TicketUse = TicketUse.REQUIRED, **kw):
    return ActionSpec(
        name, f"!{name}", f"{name} summary", arguments=arguments, ticket=ticket, handler=_answer,
        **kw,
    )  # fmt: skip


@pytest.fixture
def registry():
    registry = new_registry()
    registry.register(
        _spec(
            "assign",
            Argument("who", ArgKind.USER, label="the person"),
            Argument("where", ArgKind.QUEUE),
            Argument("state", ArgKind.STATUS, required=False),
            aliases={"ca": ("assigna",)},
        )
    )
    registry.register(_spec("template", Argument("name", ArgKind.WORD, required=False),
                            ticket=TicketUse.OPTIONAL))  # fmt: skip
    registry.register(_spec("say", Argument("text", ArgKind.TEXT), ticket=TicketUse.OPTIONAL))
    registry.register(
        ActionSpec(
            "note",
            "!note {ref} text",
            "a note",
            arguments=(Argument("text", ArgKind.TEXT),),
            intent=lambda ticket, args: Comment(ticket, "note: " + args["text"]),
        )
    )
    return registry


def parse(registry, text, *, context=None):
    return parse_command(
        text, prefix="suport", queues=QUEUES, context_ticket=context, registry=registry
    )


def error(registry, text, **kwargs) -> CommandError:
    with pytest.raises(CommandError) as info:
        parse(registry, text, **kwargs)
    return info.value


def test_several_arguments_each_read_by_its_kind(registry):
    parsed = parse(registry, "!assigna suport#4 @anna:exo.cat Tresoreria resolt")
    assert (parsed.name, parsed.ticket) == ("assign", 4)
    assert parsed.args == {"who": "@anna:exo.cat", "where": "tresoreria", "state": Status.RESOLVED}
    assert parsed.spec is registry.get("assign")
    assert parsed.intent is None and parsed.query is None  # a handler runs it
    optional_left_out = parse(registry, "!assign @anna:exo.cat altes", context=9)
    assert (optional_left_out.ticket, optional_left_out.args) == (
        9,
        {"who": "@anna:exo.cat", "where": "altes"},
    )


def test_each_kind_keeps_its_error_codes(registry):
    assert error(registry, "!assign 4 anna altes").code == "bad_user"
    assert error(registry, "!assign 4 @anna:exo.cat cuina").code == "bad_queue"
    assert error(registry, "!assign 4 @anna:exo.cat altes dormint").code == "bad_status"
    e = error(registry, "!assign 4 @anna:exo.cat altes obert ara")
    assert (e.code, e.params) == ("unexpected_argument", {"command": "assign", "text": "ara"})
    e = error(registry, "!assign 4")
    assert (e.code, e.params) == (
        "missing_argument",
        {"command": "assign", "argument": "user", "label": "the person"},
    )
    e = error(registry, "!assign 4 @anna:exo.cat")
    assert e.code == "missing_argument" and e.params["argument"] == "where"
    assert error(registry, "!assign @anna:exo.cat altes").code == "missing_reference"


def test_optional_ticket(registry):
    assert parse(registry, "!template").ticket is None  # no reference, outside a thread
    assert parse(registry, "!template").args == {}
    listed = parse(registry, "!template suport#3 salutacio")
    assert (listed.ticket, listed.args) == (3, {"name": "salutacio"})
    assert parse(registry, "!template salutacio", context=5).ticket == 5
    assert parse(registry, "!template salutacio").args == {"name": "salutacio"}
    assert error(registry, "!template 3 a b").code == "unexpected_argument"
    assert error(registry, "!template suport#x hola").code == "bad_reference"
    # Free text in a thread: a bare number opening it is text.
    said = parse(registry, "!say 2 routers caiguts", context=5)
    assert (said.ticket, said.args) == (5, {"text": "2 routers caiguts"})
    assert parse(registry, "!say hola").ticket is None


def test_an_intent_action_builds_its_intent(registry):
    parsed = parse(registry, "!note suport#2 a\nb")
    assert parsed.intent == Comment(2, "note: a\nb")
    assert parsed.args == {"text": "a\nb"}


def test_help_topics_and_words_follow_the_registry(registry):
    assert parse(registry, "!help assigna").query.topic == "assign"
    assert canonical_name("assigna", registry) == "assign"
    registry.unregister("assign")
    assert error(registry, "!assign 4 @anna:exo.cat altes").code == "unknown_command"
    assert error(registry, "!help assign").code == "unknown_command"
    assert canonical_name("assigna", registry) is None
    # The core's own registry never had it.
    assert canonical_name("assign") is None


@pytest.mark.parametrize(
    ("text", "valid"),
    [
        ("@anna:exo.cat", True),
        ("@anna:exo.cat:8448", True),
        ("anna", False),
        ("@anna", False),
        ("@:exo.cat", False),
        ("@anna:", False),
        ("@an na:exo.cat", False),
        ("", False),
    ],
)
def test_is_user_id(text, valid):
    assert is_user_id(text) is valid
