"""A plugin's panel or root lines failing on one ticket count once against the plugin, however
often that ticket's page is loaded: a ticket holding text the plugin trips on must not switch the
plugin off after a volunteer's few reloads. Failures on as many different tickets in a row as
MAX_CONSECUTIVE_FAILURES still disable it."""

from __future__ import annotations

import logging
from types import SimpleNamespace

from exobot.plugins import Plugin
from exobot.plugins.context import PluginContext
from exobot.plugins.manager import MAX_CONSECUTIVE_FAILURES, Host, PluginManager, _Run

FAILING: set[int] = set()  # the tickets the contributions trip on


async def panel(ticket, language):
    if ticket.number in FAILING:
        raise ValueError(f"a link in #{ticket.number} the panel cannot read")
    return None


async def root(ticket, language):
    if ticket.number in FAILING:
        raise ValueError(f"a link in #{ticket.number} the root lines cannot read")
    return [f"root of #{ticket.number}"]


class Tripping(Plugin):
    name = "tripping"


def started() -> tuple[PluginManager, _Run]:
    host = Host(
        service=SimpleNamespace(settings=None),
        repository=None,
        clock=None,
        actions=None,
        events=None,
    )
    manager = PluginManager(SimpleNamespace(plugins={}), host)
    run = _Run("tripping", Tripping())
    run.ctx = PluginContext(manager, run, Tripping.config_model(), host)
    run.ctx.add_panel(panel)
    run.ctx.add_root_lines(root)
    return manager, run


def ticket(number: int) -> SimpleNamespace:
    return SimpleNamespace(number=number)


async def test_reloading_a_ticket_the_panel_trips_on_counts_once(caplog):
    FAILING.clear()
    FAILING.add(7)
    manager, run = started()
    with caplog.at_level(logging.ERROR, logger="exobot.plugins"):
        for _ in range(3 * MAX_CONSECUTIVE_FAILURES):
            assert await manager.panels(ticket(7), "ca") == []
            assert await manager.root_lines(ticket(7), "ca") == []
    assert not run.disabled
    assert sorted(run.failures.values()) == [1, 1]  # the panel once, the root lines once
    again = [r.getMessage() for r in caplog.records if "failed again on ticket #7" in r.getMessage()]
    assert len(again) == 2 * (3 * MAX_CONSECUTIVE_FAILURES - 1)
    # Other tickets are served as before.
    assert await manager.root_lines(ticket(8), "ca") == ["root of #8"]


async def test_failing_on_different_tickets_in_a_row_disables_the_plugin():
    FAILING.clear()
    FAILING.update(range(100, 100 + MAX_CONSECUTIVE_FAILURES))
    manager, run = started()
    for number in range(100, 100 + MAX_CONSECUTIVE_FAILURES - 1):
        await manager.panels(ticket(number), "ca")
    assert not run.disabled
    await manager.panels(ticket(100 + MAX_CONSECUTIVE_FAILURES - 1), "ca")
    assert run.disabled
    assert "ticket panel" in manager.disabled["tripping"]
