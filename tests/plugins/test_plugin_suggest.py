"""An action a plugin registers gets its arguments' `suggest` wrapped like its handler: what
it suggests passes through; when it raises, the form gets no suggestions, the failure is
logged with the plugin's name and counted against the plugin; a disabled plugin suggests
nothing."""

from __future__ import annotations

import logging
from types import SimpleNamespace

from exobot.core.actions import ActionRegistry, ActionSpec, Answer, ArgKind, Argument
from exobot.plugins import Plugin
from exobot.plugins.context import PluginContext
from exobot.plugins.manager import Host, PluginManager, _Run

FAILING = {"on": False}


async def handler(call):
    return Answer("ok")


async def names(ticket: int | None, language: str) -> list[str]:
    if FAILING["on"]:
        raise RuntimeError("the suggestions' bug")
    return ["b", "a"]


class Suggesting(Plugin):
    name = "suggesting"


def registered() -> tuple[ActionRegistry, _Run]:
    registry = ActionRegistry()
    host = Host(
        service=SimpleNamespace(settings=None),
        repository=None,
        clock=None,
        actions=registry,
        events=None,
    )
    manager = PluginManager(SimpleNamespace(plugins={}), host)
    run = _Run("suggesting", Suggesting())
    ctx = PluginContext(manager, run, Suggesting.config_model(), host)
    ctx.add_action(
        ActionSpec(
            "suggest",
            "!suggest {ref} name",
            "Suggests.",
            arguments=(
                Argument("name", ArgKind.WORD, suggest=names),
                Argument("other", ArgKind.WORD, required=False),
            ),
            handler=handler,
        )
    )
    return registry, run


async def test_a_plugins_suggest_is_isolated(caplog):
    FAILING["on"] = False
    registry, run = registered()
    name, other = registry.get("suggest").arguments
    assert other.suggest is None  # nothing to wrap
    assert name.suggest is not names  # wrapped
    assert await name.suggest(3, "ca") == ["b", "a"]  # as the plugin gave them

    FAILING["on"] = True
    with caplog.at_level(logging.ERROR, logger="exobot.plugins"):
        assert await name.suggest(3, "ca") == []
    [record] = [r for r in caplog.records if r.name == "exobot.plugins"]
    assert "suggesting" in record.getMessage() and "suggestions" in record.getMessage()
    assert record.exc_info is not None
    assert sum(run.failures.values()) == 1

    FAILING["on"] = False
    run.disabled = True
    assert await name.suggest(3, "ca") == []
