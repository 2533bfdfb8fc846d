"""`exobot import rt`'s arguments that need no RT to be refused: a size of attachments that
is no size (nan, inf, 0, -5 left every attachment out or failed half-way with a traceback) and
a password file that is not text are refused in one line, before RT is asked anything."""

from __future__ import annotations

import pytest

from exobot.cli import main


def argv(tmp_path, *extra: str) -> list[str]:
    secret = tmp_path / "rt-password"
    if not secret.exists():
        secret.write_text("s3cret\n", encoding="utf-8")
    return [
        "import", "rt", "--url", "http://127.0.0.1:9", "--user", "root",
        "--password-file", str(secret), "-c", str(tmp_path / "unused.yaml"), *extra,
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("value", "said"),
    [
        ("inf", "'inf': must be above 0 and at most 1024"),
        ("nan", "'nan': must be above 0 and at most 1024"),
        ("0", "'0': must be above 0 and at most 1024"),
        ("-5", "'-5': must be above 0 and at most 1024"),
        ("lots", "'lots' is not a number of megabytes"),
    ],
)
def test_a_size_of_attachments_that_is_no_size_is_refused(tmp_path, capsys, value, said):
    with pytest.raises(SystemExit) as stopped:
        main(argv(tmp_path, f"--max-attachment-mb={value}"))
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-1] == f"exobot import: error: argument --max-attachment-mb: {said}"


def test_a_password_file_that_is_not_text_is_said_in_one_line(tmp_path, capsys):
    secret = tmp_path / "rt-password"
    secret.write_bytes(b"\xff\xfe\x00binary")
    (tmp_path / "unused.yaml").write_text(
        "database:\n  url: sqlite:///" + str(tmp_path / "exobot.db") + "\n"
        "mail:\n  address: suport@example.org\n"
        "  imap: {host: 127.0.0.1, username: suport, password: x}\n"
        "  smtp: {host: 127.0.0.1}\n"
        "tickets:\n  queues: {suport: {}}\n",
        encoding="utf-8",
    )
    (tmp_path / "unused.yaml").chmod(0o600)
    with pytest.raises(SystemExit) as stopped:
        main(argv(tmp_path, "--dry-run"))
    assert stopped.value.code == f"{secret}: not UTF-8 text (a password or token file holds text)"
