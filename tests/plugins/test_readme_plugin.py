"""The README's smallest plugin, taken from the README itself: its fenced `pyproject.toml` and
module are written into a folder on sys.path with the `*.dist-info/entry_points.txt` pip would
leave (the entry point read from that pyproject), and its `!ping` is then used from chat
(real Synapse), listed in `!help all`, and called through the API (and found in its OpenAPI
schema), without any core file naming it: the proof issue 10 asks for."""

from __future__ import annotations

import re
import sys
import tomllib
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import yaml
from harness import Instance, member_mail, unique, wait_until
from matrix_harness import body_of, sender_of

from exobot import config as config_module
from exobot import i18n
from exobot.config import load_config
from exobot.db import web as records
from exobot.plugins import discovery

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
FENCE = re.compile(r"^```(\w+)\n(# (plugins/ping/\S+)\n.*?)^```$", re.M | re.S)


def readme_files() -> dict[str, str]:
    """The README's fenced blocks whose first line names a file of plugins/ping/."""
    section = README.read_text(encoding="utf-8").split("### Writing a plugin", 1)[1]
    return {match.group(3): match.group(2) for match in FENCE.finditer(section)}


def install_from_readme(site: Path) -> str:
    """Write the README's plugin into `site` as an installed distribution; returns the
    entry-point name."""
    files = readme_files()
    assert set(files) == {"plugins/ping/pyproject.toml", "plugins/ping/exobot_ping/__init__.py"}
    project = tomllib.loads(files["plugins/ping/pyproject.toml"])["project"]
    points = project["entry-points"]["exobot.plugins"]
    for path, text in files.items():
        if path.endswith(".py"):
            target = site / path.removeprefix("plugins/ping/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
    info = site / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n"
    )
    lines = "".join(f"{name} = {value}\n" for name, value in points.items())
    (info / "entry_points.txt").write_text(f"[exobot.plugins]\n{lines}")
    [name] = points
    return name


def test_the_readme_names_no_core_change():
    # The plugin's code is only in the README: nothing in the core mentions it.
    for path in (ROOT / "exobot").rglob("*.py"):
        assert "exobot_ping" not in path.read_text(encoding="utf-8"), path
    assert "exobot.plugins" in readme_files()["plugins/ping/pyproject.toml"]


async def test_the_readme_plugin_works_from_chat_and_the_api(
    make_instance, matrix_setup, volunteer, tmp_path, monkeypatch
):
    # The smallest plugin ships no catalogs: its words show in English (STRICT would refuse).
    monkeypatch.setattr(i18n, "STRICT", False)
    site = tmp_path / "site"
    site.mkdir()
    name = install_from_readme(site)
    monkeypatch.setattr(sys, "path", [str(site), *sys.path])
    monkeypatch.setattr(config_module, "KNOWN_PLUGINS", set())
    discovery.refresh()
    try:
        assert discovery.installed()[name].cls is not None

        setup = matrix_setup()
        inst: Instance = make_instance(matrix=setup, web=True)
        data = yaml.safe_load(inst.config_path.read_text())
        data["plugins"] = {name: {}}
        inst.config_path.write_text(yaml.safe_dump(data))
        inst.config = load_config(inst.config_path, env={})
        app = await inst.start()
        assert name in app.plugins.enabled, app.plugins.disabled
        vol = await volunteer(setup)
        room = setup.rooms["suport"]

        async def bot_says(mark: int, predicate, what: str) -> dict:
            return await vol.wait_for(
                room,
                lambda e: sender_of(e) == setup.bot_user_id and predicate(body_of(e) or ""),
                after=mark,
                what=what,
            )

        await wait_until(
            lambda: _value(app.bot.is_operator(setup.volunteer_user_id)), 30, "the operator"
        )
        mark = vol.mark(room)
        await vol.send(room, "!ping")
        assert body_of(await bot_says(mark, lambda b: "pong" in b, "pong")) == "pong"

        mark = vol.mark(room)
        await vol.send(room, "!ajuda tot")
        helped = await bot_says(mark, lambda b: "!ping" in b, "!ping in the help")
        assert "Answers pong." in body_of(helped)

        # The API: its route, in the schema and working on a ticket.
        member = unique("membre")
        await inst.send(member_mail(member, inst.address))
        await inst.wait_tickets(1)
        number = inst.scalar("SELECT max(id) FROM tickets")
        async with inst.app.repository.connection() as conn:
            token = await records.create_api_token(
                conn, "ping", setup.volunteer_user_id, datetime.now(UTC)
            )
        async with httpx.AsyncClient(
            base_url=inst.web_url + "/api/v1",
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        ) as api:
            schema = (await api.get("/openapi.json")).json()
            assert "post" in schema["paths"]["/tickets/{n}/actions/ping"]
            answered = await api.post(f"/tickets/{number}/actions/ping")
            assert answered.status_code == 200, answered.text
            assert answered.json()["answer"] == "pong"
    finally:
        discovery.refresh()


async def _value(value: object) -> object:
    return value
