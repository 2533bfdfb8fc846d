"""`exobot token create` written wrong is a usage error: one line saying what to write, exit
status 2 (as argparse's own), before any use of the database."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from exobot import config as config_module
from exobot.cli import main


@pytest.fixture
def config_path(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setattr(config_module, "KNOWN_PLUGINS", set())
    monkeypatch.setattr(config_module, "_installed_plugins", dict)
    data = {
        "database": {"url": f"sqlite:///{tmp_path / 'exobot.db'}"},
        "mail": {
            "address": "suport@example.org",
            "imap": {"host": "127.0.0.1", "username": "suport", "password": "imap-pw"},
            "smtp": {"host": "127.0.0.1"},
        },
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    path.chmod(0o600)
    return path


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["t1"], "token create: --user @name:server is required"),
        (
            ["t1", "--user", "anna"],
            "token create: --user must be a Matrix id like @name:server, not 'anna'",
        ),
        (
            ["no name!", "--user", "@anna:example.org"],
            "token create: give the token a name of letters, digits, '.', '_' or '-'"
            " (at most 64 characters)",
        ),
    ],
)
def test_a_token_create_written_wrong_says_what_to_write(config_path, capsys, args, said):
    status = main(["token", "create", *args, "-c", str(config_path)])
    out = capsys.readouterr()
    assert (status, out.err.splitlines(), out.out) == (2, [said], "")
    assert not (config_path.parent / "exobot.db").exists()  # refused before any use
