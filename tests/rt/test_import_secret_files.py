"""`exobot import rt` with an empty --password-file or --token-file is a usage error: one line
naming the file, exit status 2, before RT is asked anything (an empty password was sent, and
RT's refusal came later without naming the file)."""

from __future__ import annotations

import pytest

from exobot.cli import main

CONFIG = """\
database:
  url: sqlite:///{database}
mail:
  address: suport@example.org
  imap: {{host: 127.0.0.1, username: suport, password: x}}
  smtp: {{host: 127.0.0.1}}
tickets:
  queues: {{suport: {{}}}}
"""


@pytest.mark.parametrize("option", ["--password-file", "--token-file"])
@pytest.mark.parametrize("content", ["", "\n", "  \n\n"])
def test_an_empty_secret_file_is_refused_in_one_line(tmp_path, capsys, option, content):
    secret = tmp_path / "rt-secret"
    secret.write_text(content, encoding="utf-8")
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG.format(database=tmp_path / "exobot.db"), encoding="utf-8")
    config.chmod(0o600)
    what = "password" if option == "--password-file" else "token"

    with pytest.raises(SystemExit) as stopped:
        main([
            "import", "rt", "--url", "http://127.0.0.1:9", "--user", "root",
            option, str(secret), "--dry-run", "-c", str(config),
        ])  # fmt: skip

    assert stopped.value.code == 2
    assert capsys.readouterr().err.splitlines() == [
        f"{secret}: the file is empty: it must hold the RT user's {what}"
    ]
    assert not (tmp_path / "exobot.db").exists()  # nothing was done
