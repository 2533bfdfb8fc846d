"""`Plugin.cli_aliases`: extra names for `exobot NAME …`, never taking exobot's own commands."""

from __future__ import annotations

import subprocess
import sys

from harness import ROOT, Instance

from exobot.cli import build_parser, cmd_migrate, cmd_plugin


def test_an_alias_runs_the_plugin_and_a_taken_name_stays_exobots(sample_installed):
    parser = build_parser()
    by_alias = parser.parse_args(["sampletool", "count"])
    assert (by_alias.plugin, by_alias.func, by_alias.what) == ("sample", cmd_plugin, "count")
    by_name = parser.parse_args(["sample", "count"])
    assert (by_name.plugin, by_name.func) == ("sample", cmd_plugin)
    core = parser.parse_args(["migrate"])
    assert core.func is cmd_migrate and not hasattr(core, "plugin")


async def test_exobot_alias_on_the_command_line(sample_installed, make_plugin_instance):
    inst: Instance = make_plugin_instance({"sample": {"greeting": "Ei"}})
    done = subprocess.run(
        [sys.executable, "-m", "exobot.cli", "sampletool", "count", "-c", str(inst.config_path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert (done.returncode, done.stdout.strip()) == (0, "Ei: 0 rows"), done.stderr
