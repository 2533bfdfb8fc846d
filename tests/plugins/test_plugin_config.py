"""A plugin's settings are checked by its own model, under `plugins.NAME.`; its tables come
from its own Alembic branch."""

from __future__ import annotations

import sqlite3
import subprocess
import sys

import pytest
import yaml
from stack_fixtures import fresh_database_url

from exobot.config import ConfigError, parse_config
from exobot.db.migrate import upgrade_async
from exobot.plugins import installed, plugin_migrations

MINIMAL = {
    "mail": {
        "address": "suport@example.org",
        "imap": {"host": "imap.example.org", "username": "suport", "password": "secret-imap"},
        "smtp": {"host": "smtp.example.org"},
    }
}


def problems(data: dict) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(data, env={})
    return caught.value.problems


def test_discovered_through_the_entry_point(sample_installed):
    entry = installed()["sample"]
    assert entry.cls is sample_installed.Sample
    assert entry.cls.name == "sample"


def test_good_settings(sample_installed):
    config = parse_config(MINIMAL | {"plugins": {"sample": {"greeting": "Bon dia"}}}, env={})
    assert config.plugins == {"sample": {"greeting": "Bon dia"}}
    assert parse_config(MINIMAL | {"plugins": {"sample": None}}, env={}).plugins == {"sample": {}}


def test_bad_and_unknown_keys_are_named_under_the_plugin(sample_installed):
    assert problems(MINIMAL | {"plugins": {"sample": {"every": "often", "colour": "red"}}}) == [
        "plugins.sample.every: must be an integer (got 'often')",
        "plugins.sample.colour: unknown key",
    ]


def test_a_bad_key_from_the_environment_names_its_variable(sample_installed):
    with pytest.raises(ConfigError) as caught:
        parse_config(
            MINIMAL | {"plugins": {"sample": {}}}, env={"EXOBOT__PLUGINS__SAMPLE__EVERY": "x"}
        )
    assert caught.value.problems == [
        "plugins.sample.every (from EXOBOT__PLUGINS__SAMPLE__EVERY): must be an integer (got 'x')"
    ]


def test_an_unknown_plugin_lists_the_installed_ones(sample_installed):
    found = problems(MINIMAL | {"plugins": {"nosuch": {}}})
    assert len(found) == 1
    assert found[0].startswith("plugins.nosuch: unknown plugin (known: ")
    assert "sample" in found[0]


def test_check_config_checks_plugin_settings(sample_installed, tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(MINIMAL | {"plugins": {"sample": {"colour": "red"}}}))
    path.chmod(0o600)
    run = subprocess.run(
        [sys.executable, "-m", "exobot.cli", "check-config", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2, run.stderr
    assert f"{path}: plugins.sample.colour: unknown key" in run.stderr
    path.write_text(yaml.safe_dump(MINIMAL | {"plugins": {"sample": {"greeting": "Hola"}}}))
    run = subprocess.run(
        [sys.executable, "-m", "exobot.cli", "check-config", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (run.returncode, run.stdout.strip()) == (0, "OK"), run.stderr


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_its_own_migration_branch(sample_installed, backend, tmp_path, request):
    url = fresh_database_url(request, backend, tmp_path)
    config = parse_config(MINIMAL | {"database": {"url": url}, "plugins": {"sample": {}}}, env={})
    branches = plugin_migrations(config)
    assert branches == {"sample": sample_installed.Sample.migrations}
    await upgrade_async(url)  # the core alone first, as before the plugin was enabled
    await upgrade_async(url, branches)
    await upgrade_async(url, branches)  # twice: nothing left to do
    from sqlalchemy import create_engine, inspect, text

    from exobot.db.engine import sync_url
    from exobot.db.migrate import CORE_VERSIONS, alembic_config, core_head

    engine = create_engine(sync_url(url))
    try:
        with engine.connect() as conn:
            assert "sample_seen" in inspect(conn).get_table_names()
            versions = {
                row[0] for row in conn.execute(text("SELECT version_num FROM alembic_version"))
            }
    finally:
        engine.dispose()
    assert versions == {"sample001", core_head(alembic_config(url, branches))}
    assert CORE_VERSIONS.is_dir()
    if backend == "sqlite":
        # Without the plugin, the core still migrates on the same database.
        await upgrade_async(url)
        with sqlite3.connect(tmp_path / "exobot.db") as conn:
            assert conn.execute("SELECT count(*) FROM sample_seen").fetchone() == (0,)


def test_exobot_migrate_applies_the_plugin_branch(sample_installed, tmp_path):
    db = tmp_path / "exobot.db"
    path = tmp_path / "config.yaml"
    data = MINIMAL | {"database": {"url": f"sqlite:///{db}"}, "plugins": {"sample": {}}}
    path.write_text(yaml.safe_dump(data))
    path.chmod(0o600)
    run = subprocess.run(
        [sys.executable, "-m", "exobot.cli", "migrate", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (run.returncode, run.stdout.strip()) == (0, "database is up to date"), run.stderr
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM sample_seen").fetchone() == (0,)
        versions = {row[0] for row in conn.execute("SELECT version_num FROM alembic_version")}
    assert "sample001" in versions and len(versions) == 2


def test_a_plugin_checks_its_keys_against_the_core_configuration():
    """The procedures plugin's queue must be one of the configured queues: said by
    check-config (the validation's context holds the core configuration), not by a traceback
    at start and the plugin disabled."""
    assert problems(MINIMAL | {"plugins": {"procedures": {}}}) == [
        "plugins.procedures.queue: unknown queue 'tresoreria' (known: suport) (got 'tresoreria')"
    ]
    assert problems(
        MINIMAL
        | {"tickets": {"queues": {"suport": {}, "diners": {}}}}
        | {"plugins": {"procedures": {"queue": "Nosuch"}}}
    ) == ["plugins.procedures.queue: unknown queue 'nosuch' (known: diners, suport) (got 'Nosuch')"]
    config = parse_config(
        MINIMAL
        | {"tickets": {"queues": {"suport": {}, "diners": {}}}}
        | {"plugins": {"procedures": {"queue": "Diners"}}},
        env={},
    )
    assert config.plugins["procedures"] == {"queue": "Diners"}
