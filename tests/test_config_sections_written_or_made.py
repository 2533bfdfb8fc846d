"""A section is there when the file writes it, even with nothing under it (`metrics:` serves
metrics as `metrics: {}` does, as README says); an environment variable for a key of a
section the file lacks makes that section, and the lines about it name the variable; one for
a plugin the file does not enable is refused rather than enabling the plugin."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from exobot import config as config_module
from exobot.config import ConfigError, parse_config

MAIL_ONLY: dict[str, Any] = {
    "mail": {
        "address": "suport@example.org",
        "imap": {"host": "imap.example.org", "username": "suport", "password": "imap-pw"},
        "smtp": {"host": "smtp.example.org"},
    }
}


@pytest.fixture(autouse=True)
def _known_plugin(monkeypatch):
    """One plugin known by name (its own settings are tests/plugins/'s to check)."""
    monkeypatch.setattr(config_module, "KNOWN_PLUGINS", {"connectivity"})
    monkeypatch.setattr(config_module, "_installed_plugins", dict)


def with_sections(**sections: Any) -> dict[str, Any]:
    return copy.deepcopy(MAIL_ONLY) | sections


def problems_of(data: dict[str, Any], env: dict[str, str]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(data, env=env)
    return caught.value.problems


def test_metrics_written_empty_serves_metrics_as_an_empty_mapping_does() -> None:
    empty = parse_config(with_sections(metrics=None), env={})  # "metrics:" and nothing under
    assert empty.metrics is not None
    assert empty.metrics == parse_config(with_sections(metrics={}), env={}).metrics
    assert empty.metrics.listen == "127.0.0.1:9108"
    assert parse_config(MAIL_ONLY, env={}).metrics is None  # absent: off


def test_matrix_written_empty_names_what_it_misses_rather_than_being_off() -> None:
    assert problems_of(with_sections(matrix=None), env={}) == [
        "matrix.homeserver: required key is missing",
        "matrix.user_id: required key is missing",
    ]


def test_a_setting_written_empty_takes_its_default_and_an_unknown_one_is_named() -> None:
    assert parse_config(with_sections(language=None), env={}).language == "ca"
    assert parse_config(with_sections(alerts=None), env={}).alerts.new_after.total_seconds() == (
        4 * 3600
    )
    assert problems_of(with_sections(metrcis=None), env={}) == ["metrcis: unknown key"]


def test_a_section_only_a_variable_makes_names_the_variable() -> None:
    assert problems_of(MAIL_ONLY, {"EXOBOT__MATRIX__PASSWORD": "secret-pw"}) == [
        "matrix.homeserver: required key is missing (EXOBOT__MATRIX__PASSWORD makes a matrix"
        " section, which the configuration file does not have)",
        "matrix.user_id: required key is missing (EXOBOT__MATRIX__PASSWORD makes a matrix"
        " section, which the configuration file does not have)",
    ]
    env = {"EXOBOT__MATRIX__PASSWORD": "secret-pw", "EXOBOT__MATRIX__USER_ID": "@exobot:ex.org"}
    assert problems_of(MAIL_ONLY, env) == [
        "matrix.homeserver: required key is missing (EXOBOT__MATRIX__PASSWORD,"
        " EXOBOT__MATRIX__USER_ID make a matrix section, which the configuration file does not"
        " have)"
    ]


def test_a_section_the_file_has_is_not_said_to_come_from_a_variable() -> None:
    data = with_sections(matrix={"user_id": "@exobot:example.org"})
    assert problems_of(data, {"EXOBOT__MATRIX__PASSWORD": "secret-pw"}) == [
        "matrix.homeserver: required key is missing"
    ]


def test_variables_may_still_give_a_whole_section() -> None:
    env = {
        "EXOBOT__MATRIX__HOMESERVER": "https://matrix.example.org",
        "EXOBOT__MATRIX__USER_ID": "@exobot:example.org",
        "EXOBOT__MATRIX__PASSWORD": "secret-pw",
        "EXOBOT__METRICS__LISTEN": "127.0.0.1:9200",
    }
    cfg = parse_config(MAIL_ONLY, env=env)
    assert cfg.matrix is not None
    assert cfg.metrics is not None and cfg.metrics.listen == "127.0.0.1:9200"


def test_a_variable_for_a_plugin_the_file_does_not_enable_is_refused() -> None:
    env = {"EXOBOT__PLUGINS__CONNECTIVITY__PINGS": "5"}
    expected = [
        "EXOBOT__PLUGINS__CONNECTIVITY__PINGS sets plugins.connectivity, which the"
        " configuration file does not enable"
    ]
    assert problems_of(MAIL_ONLY, env) == expected
    assert problems_of(with_sections(plugins={}), env) == expected
    assert problems_of(with_sections(plugins=None), env) == expected


def test_a_variable_for_an_enabled_plugin_sets_its_setting() -> None:
    env = {"EXOBOT__PLUGINS__CONNECTIVITY__PINGS": "5"}
    for enabled in ({"connectivity": {}}, {"connectivity": None}):
        cfg = parse_config(with_sections(plugins=enabled), env=env)
        assert cfg.plugins == {"connectivity": {"pings": "5"}}
    # The whole list given by a variable enables what it names.
    cfg = parse_config(MAIL_ONLY, env={"EXOBOT__PLUGINS": '{"connectivity": {}}'})
    assert cfg.plugins == {"connectivity": {}}
