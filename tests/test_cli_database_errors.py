"""A database that cannot be reached or used ends a command with one line on stderr naming
the setting (database.url, or `exobot db copy`'s --to) and the cause, exit status 1, within
seconds and without the URL's password: no traceback, no silent wait. A URL exobot cannot use
at all (an unshipped driver, no URL) is refused before any use, as a configuration problem."""

from __future__ import annotations

import socket
import time

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import OperationalError

from exobot.cli import main
from exobot.db import engine

CONFIG = """
mail:
  address: suport@example.org
  imap: {host: imap.example.org, username: suport@example.org, password: "s3cret-imap"}
  smtp: {host: smtp.example.org}
"""
SECRET = "Zq9pw-db-secret"
# The commands of the audit: the migrations, an administrator's command, the bot's start.
COMMANDS = [["migrate"], ["outbox", "list"], ["run"]]


def config_file(tmp_path, url: str) -> str:
    path = tmp_path / "db.yaml"
    path.write_text(CONFIG + f'database: {{url: "{url}"}}\n')
    path.chmod(0o600)  # no warning about readable secrets among the lines checked
    return str(path)


def failed_line(capsys, status: int) -> str:
    """The one line the failed command wrote on stderr (no traceback before it)."""
    assert status == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert SECRET not in err
    return err.splitlines()[-1]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_a_host_that_does_not_resolve(tmp_path, capsys, command):
    path = config_file(tmp_path, f"postgresql+psycopg://exo:{SECRET}@nohost.invalid/exobot")

    line = failed_line(capsys, main([*command, "-c", path]))

    assert line.startswith(
        f"{path}: database.url: cannot use the database"
        " postgresql+psycopg://exo:***@nohost.invalid/exobot:"
        " failed to resolve host 'nohost.invalid'"
    )


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_an_sqlite_path_that_is_a_directory(tmp_path, capsys, command):
    directory = tmp_path / "data"
    directory.mkdir()
    path = config_file(tmp_path, f"sqlite:///{directory}")

    line = failed_line(capsys, main([*command, "-c", path]))

    assert line == (
        f"{path}: database.url: cannot use the database sqlite:///{directory}: it is a"
        " directory, not an SQLite database file"
    )
    assert not (tmp_path / "data.lock").exists()  # run's lock, beside what is no database


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_a_file_that_is_not_a_database(tmp_path, capsys, command):
    text = tmp_path / "passwd"
    text.write_text("root:x:0:0:root:/root:/bin/sh\n" * 200)
    path = config_file(tmp_path, f"sqlite:///{text}")

    line = failed_line(capsys, main([*command, "-c", path]))

    assert line == (
        f"{path}: database.url: cannot use the database sqlite:///{text}: the file is not"
        " an SQLite database"
    )
    assert text.read_text().startswith("root:x")  # left as it was
    assert not (tmp_path / "passwd.lock").exists()  # nor a file beside it (/etc/passwd.lock)


@pytest.mark.parametrize("command", [["check-config"], ["migrate"]], ids=" ".join)
def test_a_driver_exobot_does_not_ship_is_a_configuration_problem(tmp_path, capsys, command):
    path = config_file(tmp_path, f"postgresql+asyncpg://exo:{SECRET}@db/exobot")

    with pytest.raises(SystemExit) as stopped:
        main([*command, "-c", path])

    assert stopped.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        f"{path}: database.url: must be a sqlite:/// or postgresql+psycopg:// URL (exobot has"
        " no asyncpg driver)\n"
    )


@pytest.mark.parametrize(
    ("target", "why"),
    [
        ("notaurl", ""),
        ("mysql://exobot@db/exobot", ""),
        ("postgresql+asyncpg://exobot@db/exobot", " (exobot has no asyncpg driver)"),
        (
            f"postgresql+psycopg://exo:{SECRET}@db:port/exobot",
            " (this one cannot be read as a URL)",
        ),
    ],
)
def test_db_copy_refuses_a_target_that_is_no_usable_url(tmp_path, capsys, target, why):
    path = config_file(tmp_path, f"sqlite:///{tmp_path / 'exobot.db'}")

    assert main(["db", "copy", "-c", path, "--to", target]) == 2

    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"exobot db copy: --to: must be a sqlite:/// or postgresql+psycopg:// URL{why}\n"
    assert not (tmp_path / "exobot.db").exists()  # refused before any use


def test_db_copy_names_the_target_that_cannot_be_used(tmp_path, capsys):
    source = tmp_path / "exobot.db"
    path = config_file(tmp_path, f"sqlite:///{source}")
    assert main(["migrate", "-c", path]) == 0
    capsys.readouterr()

    # Both are SQLite: the line names the one that does not open, not the first one.
    directory = tmp_path / "target"
    directory.mkdir()
    line = failed_line(capsys, main(["db", "copy", "-c", path, "--to", f"sqlite:///{directory}"]))
    assert line == (
        f"exobot db copy: --to: cannot use the database sqlite:///{directory}: it is a"
        " directory, not an SQLite database file"
    )

    unreachable = f"postgresql+psycopg://exo:{SECRET}@nohost.invalid/exobot"
    line = failed_line(capsys, main(["db", "copy", "-c", path, "--to", unreachable]))
    assert line.startswith(
        "exobot db copy: --to: cannot use the database"
        " postgresql+psycopg://exo:***@nohost.invalid/exobot: failed to resolve host"
    )


@pytest.fixture
def silent_server():
    """A TCP port on 127.0.0.1 that accepts connections (the kernel completes them from the
    listen backlog) and never answers, as a hung server would."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield listener.getsockname()[1]


@pytest.mark.parametrize("command", [["migrate"], ["run"]], ids=" ".join)
def test_a_server_that_never_answers(tmp_path, capsys, monkeypatch, silent_server, command):
    # psycopg's shortest timeout (it makes anything under 2 s into 2 s); 10 s in use.
    monkeypatch.setattr(engine, "PG_CONNECT_TIMEOUT_SECONDS", 2)
    path = config_file(tmp_path, f"postgresql+psycopg://exo:{SECRET}@127.0.0.1:{silent_server}/db")

    started = time.monotonic()
    line = failed_line(capsys, main([*command, "-c", path]))

    assert line == (
        f"{path}: database.url: cannot use the database"
        f" postgresql+psycopg://exo:***@127.0.0.1:{silent_server}/db: 127.0.0.1:{silent_server}"
        " did not answer (connection timeout expired after 2 s)"
    )
    # Without the timeout psycopg waits 130 s; the run lock, then the migrations, connect once.
    assert time.monotonic() - started < 30


def test_a_statements_own_error_keeps_its_traceback(tmp_path, monkeypatch):
    # The database opens and answers; the error is the command's (a bug to be found): the
    # line must not hide it.
    database = tmp_path / "exobot.db"
    path = config_file(tmp_path, f"sqlite:///{database}")
    used = sa.create_engine(f"sqlite:///{database}")
    with pytest.raises(OperationalError) as caught, used.connect() as conn:
        conn.execute(sa.text("SELECT * FROM no_such_table"))
    used.dispose()

    def upgrade(*_args, **_kwargs):
        raise caught.value

    monkeypatch.setattr("exobot.db.migrate.upgrade", upgrade)
    with pytest.raises(OperationalError, match="no such table"):
        main(["migrate", "-c", path])
