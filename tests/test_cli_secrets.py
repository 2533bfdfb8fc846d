"""A configuration file holding secrets that other users can read gives a warning at start
(`exobot run` and `exobot check-config`), naming the file and the fix (issue 9, section 6)."""

from __future__ import annotations

import os

import pytest

from exobot.cli import exposed_secrets_warning, main

CONFIG = """
mail:
  address: suport@example.org
  imap: {host: imap.example.org, username: suport@example.org, password: "s3cret-imap"}
  smtp: {host: smtp.example.org}
"""


def write(tmp_path, text: str, mode: int) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    os.chmod(path, mode)
    return str(path)


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_check_config_warns_about_readable_secrets(tmp_path, capsys, mode):
    path = write(tmp_path, CONFIG, mode)
    assert main(["check-config", "-c", path]) == 0
    out, err = capsys.readouterr()
    assert out == "OK\n"
    assert err.count("\n") == 1
    assert path in err and "mail.imap.password" in err and f"chmod 600 {path}" in err
    assert "s3cret" not in err  # never the secret itself


def test_no_warning_when_private_or_without_secrets(tmp_path, capsys):
    path = write(tmp_path, CONFIG, 0o600)
    assert main(["check-config", "-c", path]) == 0
    assert capsys.readouterr().err == ""
    no_secret = CONFIG.replace(', password: "s3cret-imap"', "")
    assert exposed_secrets_warning(write(tmp_path, no_secret, 0o644)) is None


def test_every_kind_of_secret_is_named(tmp_path):
    text = CONFIG + (
        'database: {url: "postgresql+psycopg://exo:Zq9pw@db/exobot"}\n'
        'matrix: {homeserver: "https://m.example.org", user_id: "@b:example.org",'
        ' access_token: "TOKxyz"}\n'
    )
    warning = exposed_secrets_warning(write(tmp_path, text, 0o644))
    assert "database.url" in warning and "matrix.access_token" in warning
    assert "Zq9pw" not in warning and "TOKxyz" not in warning


async def _never_run(self) -> int:
    return 0


def test_run_warns_in_its_log(tmp_path, monkeypatch, caplog):
    import exobot.app

    monkeypatch.setattr(exobot.app.App, "run_until_signal", _never_run)
    path = write(tmp_path, CONFIG, 0o644)
    with caplog.at_level("WARNING", logger="exobot"):
        assert main(["run", "-c", path]) == 0
    [record] = [r for r in caplog.records if "chmod 600" in r.getMessage()]
    assert record.levelname == "WARNING" and "mail.imap.password" in record.getMessage()
