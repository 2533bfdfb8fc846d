"""Tests of exobot.config: defaults, the example file, env overrides and error lines."""

import copy
from datetime import time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from pydantic import BaseModel

from exobot import config as config_module
from exobot.config import (
    Config,
    ConfigError,
    load_config,
    parse_config,
    parse_duration,
)

EXAMPLE = Path(__file__).resolve().parents[1] / "config.yaml.example"

MINIMAL: dict[str, Any] = {
    "mail": {
        "address": "suport@example.org",
        "imap": {"host": "imap.example.org", "username": "suport", "password": "imap-pw"},
        "smtp": {"host": "smtp.example.org"},
    }
}



@pytest.fixture(autouse=True)
def _no_installed_plugins(monkeypatch):
    """The core's configuration alone: plugins installed in the venv are not known here
    (tests/plugins/ checks a plugin's settings)."""
    monkeypatch.setattr(config_module, "KNOWN_PLUGINS", set())
    monkeypatch.setattr(config_module, "_installed_plugins", dict)


MATRIX: dict[str, Any] = {
    "homeserver": "https://matrix.example.org",
    "user_id": "@exobot:example.org",
    "password": "matrix-pw",
}


def minimal(**sections: Any) -> dict[str, Any]:
    """A fresh minimal valid configuration, with some sections added or replaced."""
    data = copy.deepcopy(MINIMAL)
    data.update(copy.deepcopy(sections))
    return data


def with_value(data: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    """Set data[a][b][c] = value for "a.b.c", creating mappings on the way."""
    *parents, last = dotted.split(".")
    node = data
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value
    return data


def problems_of(data: Any, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(data, env=env or {})
    return caught.value.problems


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


# --------------------------------------------------------------------------- valid input


def test_minimal_config_gets_the_defaults() -> None:
    cfg = parse_config(MINIMAL, env={})

    assert isinstance(cfg, Config)
    assert cfg.database.url == "sqlite:///var/exobot.db"
    assert cfg.tickets.prefix == "suport"
    assert cfg.tickets.default_queue == "suport"
    assert list(cfg.tickets.queues) == ["suport"]
    assert cfg.tickets.queues["suport"].room is None
    assert cfg.matrix is None

    imap = cfg.mail.imap
    assert (imap.host, imap.port, imap.security, imap.folder) == (
        "imap.example.org",
        993,
        "ssl",
        "INBOX",
    )
    assert imap.password.get_secret_value() == "imap-pw"
    assert imap.poll_interval == timedelta(seconds=60)
    assert imap.idle_timeout == timedelta(minutes=25)
    smtp = cfg.mail.smtp
    assert (smtp.port, smtp.security, smtp.username, smtp.password) == (587, "starttls", None, None)
    assert smtp.timeout == timedelta(seconds=30)
    assert cfg.mail.display_name == "Suport eXO"
    assert cfg.mail.hmac_secret is None
    assert cfg.mail.ack_limit_per_day == 5
    assert cfg.mail.templates_dir is None
    assert cfg.mail.outbox.max_attempts == 10
    assert cfg.mail.outbox.retry_base == timedelta(seconds=30)
    assert cfg.mail.outbox.retry_max == timedelta(hours=1)

    assert cfg.alerts.new_after == timedelta(hours=4)
    assert cfg.alerts.repeat_every == timedelta(hours=4)
    assert cfg.alerts.stalled_every == timedelta(days=7)
    assert cfg.alerts.digest_at == time(9, 0)
    assert cfg.alerts.tzinfo == ZoneInfo("Europe/Madrid")
    assert cfg.web.listen == "127.0.0.1:8080"
    assert (cfg.web.host, cfg.web.port) == ("127.0.0.1", 8080)
    assert cfg.web.base_url == "http://127.0.0.1:8080"
    assert cfg.language == "ca"
    assert cfg.plugins == {}
    assert cfg.logging.level == "INFO"


def test_ticket_numbering_and_legacy_tags() -> None:
    defaults = parse_config(MINIMAL, env={}).tickets
    assert (defaults.first_number, defaults.legacy_tags) == (None, [])
    data = with_value(minimal(), "tickets.first_number", 5000)
    data = with_value(data, "tickets.legacy_tags", [" eXO ", "rt  exo", "eXO"])
    tickets = parse_config(data, env={}).tickets
    assert (tickets.first_number, tickets.legacy_tags) == (5000, ["eXO", "rt exo"])


def test_parse_config_does_not_modify_its_input() -> None:
    data = minimal()
    before = copy.deepcopy(data)
    parse_config(data, env={"EXOBOT__MAIL__IMAP__PORT": "143"})
    assert data == before


def test_matrix_section_is_validated_when_present() -> None:
    cfg = parse_config(minimal(matrix={**MATRIX, "operators": ["@anna:example.org"]}), env={})

    assert cfg.matrix is not None
    assert cfg.matrix.homeserver == "https://matrix.example.org"
    assert cfg.matrix.password is not None
    assert cfg.matrix.password.get_secret_value() == "matrix-pw"
    assert cfg.matrix.access_token is None
    assert cfg.matrix.store_path == Path("var/matrix")
    assert cfg.matrix.device_name == "exobot"
    assert cfg.matrix.operators == ["@anna:example.org"]


def test_empty_sections_mean_defaults() -> None:
    data = minimal(alerts=None, tickets={"queues": {"suport": None}}, plugins=None)
    cfg = parse_config(data, env={})
    assert cfg.alerts.new_after == timedelta(hours=4)
    assert cfg.tickets.queues["suport"].room is None
    assert cfg.plugins == {}


def test_known_plugin_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(config_module, "KNOWN_PLUGINS", {"connectivity"})
    cfg = parse_config(minimal(plugins={"connectivity": None}), env={})
    assert cfg.plugins == {"connectivity": {}}

    assert problems_of(minimal(plugins={"nope": {}})) == [
        "plugins.nope: unknown plugin (known: connectivity)"
    ]


def test_templates_dir_must_exist(tmp_path: Path) -> None:
    cfg = parse_config(with_value(minimal(), "mail.templates_dir", str(tmp_path)), env={})
    assert cfg.mail.templates_dir == tmp_path

    missing = str(tmp_path / "missing")
    assert problems_of(with_value(minimal(), "mail.templates_dir", missing)) == [
        f"mail.templates_dir: must be an existing directory (got {missing!r})"
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("15m", timedelta(minutes=15)),
        ("4h", timedelta(hours=4)),
        ("7d", timedelta(days=7)),
        (" 90s ", timedelta(seconds=90)),
    ],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


def test_parse_duration_refuses_more_than_a_century() -> None:
    assert parse_duration("36500d") == timedelta(days=36_500)
    assert parse_duration("876000h") == timedelta(days=36_500)
    for text in ("36501d", "876001h", "9" * 5000 + "s"):
        with pytest.raises(ValueError, match="must be at most 36500d"):
            parse_duration(text)


@pytest.mark.parametrize("text", ["4 hours", "1h30m", "4H", "h", "-5m", "1.5h", ""])
def test_parse_duration_refuses_other_forms(text: str) -> None:
    with pytest.raises(ValueError, match="expected a whole number followed by s, m, h or d"):
        parse_duration(text)


# --------------------------------------------------------------------------- example file


def test_example_as_shipped_is_refused_only_for_its_placeholders() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(EXAMPLE, env={})
    assert caught.value.problems == [
        "matrix.password: placeholder value, set a real one",
        "mail.imap.password: placeholder value, set a real one",
    ]


def test_example_parses_once_placeholders_are_replaced(tmp_path: Path) -> None:
    text = EXAMPLE.read_text(encoding="utf-8").replace("…", "a-real-secret")
    cfg = load_config(write(tmp_path, text), env={})

    assert cfg.tickets.queues["tresoreria"].room == "#tresoreria:example.org"
    assert cfg.matrix is not None
    assert cfg.matrix.user_id == "@exobot:example.org"
    assert cfg.mail.imap.password.get_secret_value() == "a-real-secret"
    assert cfg.web.base_url == "https://suport.example.org"


def _field_names(model: type[BaseModel]) -> set[str]:
    names = set()
    for name, field in model.model_fields.items():
        names.add(name)
        for candidate in (field.annotation, *getattr(field.annotation, "__args__", ())):
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                names |= _field_names(candidate)
    return names


def test_example_mentions_every_key() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    missing = sorted(name for name in _field_names(Config) if f"{name}:" not in text)
    assert missing == []


# --------------------------------------------------------------------------- environment


def test_env_overrides_nested_keys_with_lax_parsing() -> None:
    env = {
        "EXOBOT__MAIL__IMAP__PASSWORD": "from-env",
        "EXOBOT__MAIL__IMAP__PORT": "143",
        "EXOBOT__DATABASE__URL": "postgresql+psycopg://exobot@db/exobot",
        "exobot__alerts__new_after": "2h",  # names are case-insensitive
        "EXOBOT__MATRIX__HOMESERVER": "https://matrix.example.org",
        "EXOBOT__MATRIX__USER_ID": "@exobot:example.org",
        "EXOBOT__MATRIX__ACCESS_TOKEN": "token",
        "EXOBOT__MATRIX__OPERATORS": '["@anna:example.org", "@joan:example.org"]',
        "EXOBOT__LANGUAGE": "es",
        "PATH": "/usr/bin",  # unrelated variables are ignored
    }
    cfg = parse_config(minimal(), env=env)

    assert cfg.mail.imap.password.get_secret_value() == "from-env"
    assert cfg.mail.imap.port == 143
    assert cfg.database.url == "postgresql+psycopg://exobot@db/exobot"
    assert cfg.alerts.new_after == timedelta(hours=2)
    assert cfg.matrix is not None
    assert cfg.matrix.operators == ["@anna:example.org", "@joan:example.org"]
    assert cfg.language == "es"


def test_load_config_reads_os_environ_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EXOBOT__MAIL__SMTP__PORT", "2525")
    cfg = load_config(write(tmp_path, yaml.safe_dump(MINIMAL)))
    assert cfg.mail.smtp.port == 2525


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {"EXOBOT__MAIL__IMAP__PASWORD": "x"},
            "mail.imap.pasword (from EXOBOT__MAIL__IMAP__PASWORD): unknown key",
        ),
        (
            {"EXOBOT__MAIL__IMAP__PORT": "abc"},
            "mail.imap.port (from EXOBOT__MAIL__IMAP__PORT): "
            "must be an integer between 1 and 65535 (got 'abc')",
        ),
        (
            {"EXOBOT__NOSUCH": "1"},
            "nosuch (from EXOBOT__NOSUCH): unknown key",
        ),
        (
            # A misspelt section: the unknown key is the section, named by its variable.
            {"EXOBOT__MAIL__IMAPP__HOST": "x"},
            "mail.imapp (from EXOBOT__MAIL__IMAPP__HOST): unknown key",
        ),
        (
            {"EXOBOT__MAILL__X": "1", "EXOBOT__MAILL__Y": "2"},
            "maill (from EXOBOT__MAILL__X, EXOBOT__MAILL__Y): unknown key",
        ),
        (
            {"EXOBOT__MATRIX__OPERATORS": '["@anna:example.org", "anna"]'},
            "matrix.operators[1] (from EXOBOT__MATRIX__OPERATORS): "
            "must be a Matrix user id like @name:example.org (got 'anna')",
        ),
        (
            {"EXOBOT__MATRIX__OPERATORS": "@anna:example.org"},
            "matrix.operators (from EXOBOT__MATRIX__OPERATORS): "
            "must be a list (give it as JSON) (got '@anna:example.org')",
        ),
        (
            {"EXOBOT__LANGUAGE__CODE": "ca"},
            "language (from EXOBOT__LANGUAGE__CODE): is not a mapping, cannot set 'code' inside it",
        ),
        (
            {"EXOBOT__MAIL____PORT": "1"},
            "EXOBOT__MAIL____PORT: malformed variable name, expected EXOBOT__SECTION__KEY",
        ),
    ],
)
def test_env_errors_name_the_variable(env: dict[str, str], expected: str) -> None:
    data = minimal(matrix=MATRIX, language="ca")
    assert problems_of(data, env) == [expected]


# --------------------------------------------------------------------------- error lines


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        (
            "mail.imap.port",
            "abc",
            "mail.imap.port: must be an integer between 1 and 65535 (got 'abc')",
        ),
        (
            "mail.smtp.port",
            70000,
            "mail.smtp.port: must be an integer between 1 and 65535 (got 70000)",
        ),
        (
            "mail.imap.security",
            "tls",
            "mail.imap.security: must be one of 'ssl', 'starttls' or 'none' (got 'tls')",
        ),
        (
            "alerts.new_after",
            "4 hours",
            "alerts.new_after: must be a duration: a whole number followed by s, m, h or d "
            "(e.g. 30s, 4h, 7d) (got '4 hours')",
        ),
        (
            "alerts.repeat_every",
            3600,
            "alerts.repeat_every: must be a duration: a whole number followed by s, m, h or d "
            "(e.g. 30s, 4h, 7d) (got 3600)",
        ),
        (
            "mail.imap.poll_interval",
            "0s",
            "mail.imap.poll_interval: must be longer than zero (got '0s')",
        ),
        (
            # A date that far away is none Python holds: every new ticket's alert time, every
            # login's end, the retention cutoff would fail (a traceback at load, before).
            "alerts.new_after",
            "999999999999d",
            "alerts.new_after: must be at most 36500d (100 years) (got '999999999999d')",
        ),
        (
            "alerts.repeat_every",
            "3000000d",
            "alerts.repeat_every: must be at most 36500d (100 years) (got '3000000d')",
        ),
        (
            "alerts.digest_at",
            "25:00",
            'alerts.digest_at: must be a time of day "HH:MM" between 00:00 and 23:59 '
            "(got '25:00')",
        ),
        (
            "alerts.digest_at",
            630,  # what YAML makes of an unquoted 10:30
            'alerts.digest_at: must be a time "HH:MM" in quotes '
            "(unquoted, YAML reads 10:30 as a number) (got 630)",
        ),
        (
            "alerts.timezone",
            "Europe/Barcelona",
            "alerts.timezone: must be a time zone name like Europe/Madrid (got 'Europe/Barcelona')",
        ),
        ("mail.imap.hots", "x", "mail.imap.hots: unknown key"),
        ("mail.imap.host", None, "mail.imap.host: must be a string (got an empty value)"),
        ("mail.imap.host", "  ", "mail.imap.host: must not be empty"),
        (
            "mail.imap.username",
            "<your user name>",
            "mail.imap.username: placeholder value, set a real one",
        ),
        ("mail.imap.password", "…", "mail.imap.password: placeholder value, set a real one"),
        ("mail.imap.password", "...", "mail.imap.password: placeholder value, set a real one"),
        ("mail.imap.password", "CHANGEME", "mail.imap.password: placeholder value, set a real one"),
        ("mail.imap.password", "pass…", "mail.imap.password: placeholder value, set a real one"),
        ("mail.smtp.host", "changeme", "mail.smtp.host: placeholder value, set a real one"),
        (
            "mail.address",
            "suport",
            "mail.address: must be an email address like suport@example.org (got 'suport')",
        ),
        (
            # Our From header refuses it: every acknowledgement would fail, not the start.
            "mail.address",
            "josé@example.org",
            "mail.address: must be an address mail can be sent from: Internationalized "
            "characters before the @-sign are not supported: 'é' (got 'josé@example.org')",
        ),
        (
            "mail.address",
            "suport@example..org",
            "mail.address: must be an address mail can be sent from: An email address cannot "
            "have two periods in a row (got 'suport@example..org')",
        ),
        (
            "mail.ack_limit_per_day",
            -1,
            "mail.ack_limit_per_day: must be at least 0 (got -1)",
        ),
        (
            "mail.smtp.username",
            "suport",
            "mail.smtp: set both username and password, or neither (password is missing)",
        ),
        (
            "mail.outbox.retry_max",
            "10s",
            "mail.outbox: retry_max must not be shorter than retry_base",
        ),
        ("plugins.connectivity", {}, "plugins.connectivity: unknown plugin (known: none)"),
        ("language", "fr", "language: must be one of 'ca', 'es' or 'en' (got 'fr')"),
        (
            "logging.level",
            "loud",
            "logging.level: must be one of 'DEBUG', 'INFO', 'WARNING', 'ERROR' or 'CRITICAL' "
            "(got 'LOUD')",
        ),
        (
            "database.url",
            "mysql://db/exobot",
            "database.url: must be a sqlite:/// or postgresql+psycopg:// URL",
        ),
        (
            "tickets.prefix",
            "Suport",
            "tickets.prefix: must be lowercase letters, digits and hyphens (got 'Suport')",
        ),
        (
            "tickets.default_queue",
            "tresoreria",
            "tickets.default_queue: must be one of the queues (suport) (got 'tresoreria')",
        ),
        (
            "tickets.queues",
            {"Suport Tècnic": {}},
            "tickets.queues.Suport Tècnic: must be lowercase letters, digits and hyphens",
        ),
        ("tickets.queues", {}, "tickets.queues: must define at least one queue"),
        ("tickets.first_number", 0, "tickets.first_number: must be at least 1 (got 0)"),
        (
            "tickets.legacy_tags",
            ["eXO #1"],
            "tickets.legacy_tags: 'eXO #1' is no tag name (1-100 characters, without [, ] or #)",
        ),
        (
            "tickets.queues.suport.room",
            "suport",
            "tickets.queues.suport.room: must be a Matrix room like #alias:example.org "
            "or !id:example.org (got 'suport')",
        ),
        (
            "web.listen",
            "8080",
            "web.listen: must be \"host:port\", e.g. 127.0.0.1:8080 (got '8080')",
        ),
        (
            "web.base_url",
            "suport.example.org",
            "web.base_url: must be an http:// or https:// URL (got 'suport.example.org')",
        ),
        ("alerts", [], "alerts: must be a mapping"),
    ],
)
def test_each_problem_gives_one_precise_line(key: str, value: Any, expected: str) -> None:
    assert problems_of(with_value(minimal(), key, value)) == [expected]


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        (
            {"access_token": "token"},
            "matrix: set exactly one of password or access_token (both are set)",
        ),
        (
            {"password": None},
            "matrix: set exactly one of password or access_token (neither is set)",
        ),
        (
            {"user_id": "exobot"},
            "matrix.user_id: must be a Matrix user id like @name:example.org (got 'exobot')",
        ),
        (
            {"homeserver": "matrix.example.org"},
            "matrix.homeserver: must be an http:// or https:// URL (got 'matrix.example.org')",
        ),
    ],
)
def test_matrix_problems(changes: dict[str, Any], expected: str) -> None:
    assert problems_of(minimal(matrix={**MATRIX, **changes})) == [expected]


def test_missing_required_keys() -> None:
    assert problems_of({}) == ["mail: required section is missing"]
    data = minimal()
    del data["mail"]["imap"]["host"]
    del data["mail"]["smtp"]
    assert problems_of(data) == [
        "mail.imap.host: required key is missing",
        "mail.smtp: required key is missing",
    ]


def test_all_problems_are_reported_together() -> None:
    data = minimal(
        tickets={"prefix": "Suport"},
        alerts={"new_after": "4 hours", "timezone": "Nowhere/Town"},
        plugins={"connectivity": {}},
        colour="blue",
    )
    with_value(data, "mail.imap.port", "abc")
    with_value(data, "mail.imap.password", "…")
    env = {"EXOBOT__WEB__LISTEN": "nowhere"}

    assert problems_of(data, env) == [
        "tickets.prefix: must be lowercase letters, digits and hyphens (got 'Suport')",
        "mail.imap.port: must be an integer between 1 and 65535 (got 'abc')",
        "mail.imap.password: placeholder value, set a real one",
        "alerts.new_after: must be a duration: a whole number followed by s, m, h or d "
        "(e.g. 30s, 4h, 7d) (got '4 hours')",
        "alerts.timezone: must be a time zone name like Europe/Madrid (got 'Nowhere/Town')",
        'web.listen (from EXOBOT__WEB__LISTEN): must be "host:port", e.g. 127.0.0.1:8080 '
        "(got 'nowhere')",
        "plugins.connectivity: unknown plugin (known: none)",
        "colour: unknown key",
    ]


def test_secrets_are_never_echoed() -> None:
    secrets = ["imap-secret-1", "smtp-secret-2", "matrix-secret-3", "token-secret-4"]
    data = minimal(
        matrix={**MATRIX, "password": secrets[2], "access_token": secrets[3]},
        database={"url": "mysql://exobot:db-secret-5@db/exobot"},
    )
    with_value(data, "mail.imap.password", 123456789)  # wrong type: still not shown
    with_value(data, "mail.smtp.password", secrets[1])
    with_value(data, "mail.hmac_secret", "hmac-secret-6")  # too short
    env = {
        "EXOBOT__MAIL__IMAP__PASWORD": secrets[0],
        "EXOBOT__MAIL__SMTP__PASSWORD": secrets[1],
    }
    with pytest.raises(ConfigError) as caught:
        parse_config(data, env=env)
    text = str(caught.value)

    assert caught.value.problems == [
        "database.url: must be a sqlite:/// or postgresql+psycopg:// URL",
        "matrix: set exactly one of password or access_token (both are set)",
        "mail.imap.password: must be a string (put it in quotes)",
        "mail.imap.pasword (from EXOBOT__MAIL__IMAP__PASWORD): unknown key",
        "mail.smtp: set both username and password, or neither (username is missing)",
        "mail.hmac_secret: must be at least 16 characters long",
    ]
    for secret in [*secrets, "123456789", "db-secret-5", "hmac-secret-6"]:
        assert secret not in text
    # No pydantic traceback or documentation links either.
    assert "pydantic" not in text
    assert "errors.pydantic.dev" not in text
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


def test_valid_config_repr_hides_passwords() -> None:
    cfg = parse_config(minimal(matrix=MATRIX), env={})
    assert "imap-pw" not in repr(cfg)
    assert "matrix-pw" not in repr(cfg)


# --------------------------------------------------------------------------- the file


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert caught.value.problems == [f"{path}: file not found"]


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path, env={})
    assert caught.value.problems == [f"{tmp_path}: is a directory, not a file"]


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "mail:\n  address: suport@example.org\n  imap: {host: x\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    [line] = caught.value.problems
    assert line.startswith(f"{path}: invalid YAML at line 4, column 1: ")


def test_duplicate_yaml_key_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "language: ca\nlanguage: es\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert caught.value.problems == [
        f"{path}: invalid YAML at line 2, column 1: duplicate key 'language'"
    ]


def test_yaml_merge_keys_may_be_overridden(tmp_path: Path) -> None:
    text = yaml.safe_dump(MINIMAL) + (
        "tickets:\n"
        "  queues:\n"
        "    suport: &room {room: '#suport:example.org'}\n"
        "    tresoreria:\n"
        "      <<: *room\n"
        "      room: '#tresoreria:example.org'\n"
    )
    cfg = load_config(write(tmp_path, text), env={})
    assert cfg.tickets.queues["tresoreria"].room == "#tresoreria:example.org"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the file is empty; it must be a mapping of sections"),
        ("# only comments\n", "the file is empty; it must be a mapping of sections"),
        ("- mail\n- web\n", "the top level must be a mapping of sections, not a list"),
        ("just text\n", "the top level must be a mapping of sections, not a string"),
    ],
)
def test_top_level_must_be_a_mapping(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert caught.value.problems == [f"{path}: {message}"]


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes(b"language: \xff\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert caught.value.problems == [f"{path}: not valid UTF-8 text"]


# --------------------------------------------------------------------------- parsing limits


def test_mail_parsing_limits_have_defaults_and_take_sizes() -> None:
    mail = parse_config(minimal()).mail
    assert (mail.parse_timeout, mail.parse_memory, mail.max_size, mail.parse_workers) == (
        timedelta(seconds=10),
        512 * 1024**2,
        25 * 1024**2,
        2,
    )
    data = with_value(minimal(), "mail.parse_memory", "1GB")
    data = with_value(data, "mail.max_size", "10 mb")
    data = with_value(data, "mail.parse_timeout", "1s")
    mail = parse_config(data).mail
    assert (mail.parse_memory, mail.max_size, mail.parse_timeout) == (
        1024**3,
        10 * 1024**2,
        timedelta(seconds=1),
    )
    assert parse_config(minimal(), env={"EXOBOT__MAIL__MAX_SIZE": "300000"}).mail.max_size == (
        300000
    )


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        (
            "mail.parse_memory",
            "lots",
            "mail.parse_memory: must be a size: a whole number of bytes or one followed by KB, "
            "MB or GB (e.g. 512MB, 1GB) (got 'lots')",
        ),
        (
            "mail.max_size",
            "1.5GB",
            "mail.max_size: must be a size: a whole number of bytes or one followed by KB, "
            "MB or GB (e.g. 512MB, 1GB) (got '1.5GB')",
        ),
        ("mail.parse_memory", "64MB", "mail.parse_memory: must be at least 128MB (got '64MB')"),
        ("mail.max_size", "1KB", "mail.max_size: must be at least 64KB (got '1KB')"),
        ("mail.max_size", 0, "mail.max_size: must be larger than zero (got 0)"),
        ("mail.parse_timeout", "0s", "mail.parse_timeout: must be longer than zero (got '0s')"),
        ("mail.parse_workers", 0, "mail.parse_workers: must be at least 1 (got 0)"),
    ],
)
def test_mail_parsing_limit_problems(key: str, value: Any, expected: str) -> None:
    assert problems_of(with_value(minimal(), key, value)) == [expected]


def test_outbox_max_attempts_is_bounded() -> None:
    """A mail that keeps failing holds back its ticket's later mails until it is given up:
    up to 1,000 attempts (six weeks at the default retry_max), no more."""
    data = with_value(minimal(), "mail.outbox.max_attempts", 1000)
    assert parse_config(data, env={}).mail.outbox.max_attempts == 1000
    assert problems_of(with_value(minimal(), "mail.outbox.max_attempts", 1001)) == [
        "mail.outbox.max_attempts: must be at most 1000 (got 1001)"
    ]
    assert problems_of(with_value(minimal(), "mail.outbox.max_attempts", 0)) == [
        "mail.outbox.max_attempts: must be at least 1 (got 0)"
    ]
    assert problems_of(minimal(), env={"EXOBOT__MAIL__OUTBOX__MAX_ATTEMPTS": "100000"}) == [
        "mail.outbox.max_attempts (from EXOBOT__MAIL__OUTBOX__MAX_ATTEMPTS): "
        "must be at most 1000 (got '100000')"
    ]


def test_outbox_retry_waits_are_bounded() -> None:
    """A retry wait of zero would loop, one of years would overflow the next try's date."""
    for key in ("mail.outbox.retry_base", "mail.outbox.retry_max"):
        assert problems_of(with_value(minimal(), key, "0s")) == [
            f"{key}: must be longer than zero (got '0s')"
        ]
    assert problems_of(with_value(minimal(), "mail.outbox.retry_max", "30d")) == [
        "mail.outbox.retry_max: must be at most 7 days (got '30d')"
    ]
    data = with_value(minimal(), "mail.outbox.retry_max", "7d")
    assert parse_config(data, env={}).mail.outbox.retry_max == timedelta(days=7)


def test_the_command_line_names_a_missing_or_unreadable_file_once(tmp_path, capsys) -> None:
    from exobot.cli import main

    missing = tmp_path / "nosuch.yaml"
    for path, said in ((missing, "file not found"), (tmp_path, "is a directory, not a file")):
        with pytest.raises(SystemExit) as stopped:
            main(["check-config", "-c", str(path)])
        assert stopped.value.code == 2
        assert capsys.readouterr().err == f"{path}: {said}\n"
