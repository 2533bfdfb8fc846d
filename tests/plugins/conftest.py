"""The test plugin `sample`, installed for a test through a real entry point: a
`*.dist-info` with its `entry_points.txt` in a folder put on sys.path (as pip would leave it),
so discovery goes through importlib.metadata like for any installed plugin."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import yaml
from harness import Instance, free_port, instance_config

from exobot import config as config_module
from exobot.config import load_config
from exobot.plugins import discovery

SAMPLE_SOURCE = Path(__file__).parent / "sample_dist"
ENTRY_POINTS = "[exobot.plugins]\nsample = exobot_sample:Sample\n"


def _dist_info(folder: Path) -> Path:
    info = folder / "exobot_sample-0.1.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: exobot-sample\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    return folder


@pytest.fixture
def sample_installed(tmp_path_factory, monkeypatch):
    """The sample plugin installed (found by entry point) for one test; the exobot CLI run as
    a separate process finds it too (PYTHONPATH)."""
    site = _dist_info(tmp_path_factory.mktemp("site"))
    paths = [str(site), str(SAMPLE_SOURCE)]
    monkeypatch.setattr(sys, "path", [*paths, *sys.path])
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([*paths, str(Path.cwd())]))
    # Names made known for this test only (the set is shared by the whole session).
    monkeypatch.setattr(config_module, "KNOWN_PLUGINS", set())
    discovery.refresh()
    import exobot_sample

    exobot_sample.CALLS.clear()
    exobot_sample.FAIL.clear()
    yield exobot_sample
    discovery.refresh()


@pytest.fixture
async def make_plugin_instance(stack, tmp_path_factory):
    """Factory: an exobot Instance (own mailbox, database) whose config enables plugins."""
    made: list[Instance] = []

    def make(plugins: dict, *, matrix: object | None = None, web: bool = False, **kw) -> Instance:
        tmp = tmp_path_factory.mktemp("exobot")
        listen = f"127.0.0.1:{free_port()}" if web else None
        data = instance_config(stack, tmp, matrix=matrix, web=listen, **kw)
        data["plugins"] = plugins
        path = tmp / "config.yaml"
        path.write_text(yaml.safe_dump(data))
        inst = Instance(
            stack, path, load_config(path, env={}), data["mail"]["address"], tmp / "exobot.db"
        )
        made.append(inst)
        return inst

    yield make
    for inst in made:
        await inst.stop()
