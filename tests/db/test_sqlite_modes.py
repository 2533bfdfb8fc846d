"""An SQLite database holds members' mail and personal data: the files exobot creates for it
(the database, its -wal and -shm, the directories above it, the copy a restore keeps) are
private to exobot's user whatever the umask; an existing database keeps its mode, with a
warning when other users can read it."""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from exobot import config as config_module
from exobot.backup import BackupError, backup, restore, sqlite_copy
from exobot.config import Config, load_config
from exobot.db import engine as engine_module
from exobot.db.engine import create_sync_engine, exposed_database_warning
from exobot.db.migrate import upgrade


@pytest.fixture(autouse=True)
def usual_umask():
    """The usual umask (022), which gives a file created without a mode 0644: what exobot
    creates must not depend on the umask exobot is started with."""
    before = os.umask(0o022)
    yield
    os.umask(before)


@pytest.fixture(autouse=True)
def _fresh_warnings(monkeypatch):
    monkeypatch.setattr(engine_module, "_WARNED", set())


@pytest.fixture
def no_plugins(monkeypatch):
    """The core's configuration alone (the plugins' tables are not migrated here)."""
    monkeypatch.setattr(config_module, "KNOWN_PLUGINS", set())
    monkeypatch.setattr(config_module, "_installed_plugins", dict)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_fresh_database_and_its_directories_are_private(tmp_path):
    (tmp_path / "srv").mkdir(mode=0o755)
    path = tmp_path / "srv" / "var" / "data" / "exobot.db"
    engine = create_sync_engine(f"sqlite:///{path}")
    try:
        with engine.begin() as conn:  # WAL: a write leaves the -wal and -shm beside it
            conn.execute(sa.text("CREATE TABLE t (x INTEGER)"))
            conn.execute(sa.text("INSERT INTO t VALUES (1)"))
        files = {p.name: mode(p) for p in path.parent.iterdir()}
    finally:
        engine.dispose()
    assert files == {"exobot.db": 0o600, "exobot.db-wal": 0o600, "exobot.db-shm": 0o600}
    assert oct(mode(tmp_path / "srv" / "var" / "data")) == "0o700"
    assert oct(mode(tmp_path / "srv" / "var")) == "0o700"
    assert oct(mode(tmp_path / "srv")) == "0o755"  # what existed already is left as it was


def test_exobot_migrate_on_a_fresh_deployment_makes_a_private_database(tmp_path):
    path = tmp_path / "var" / "exobot.db"
    upgrade(f"sqlite:///{path}")
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM alembic_version").fetchone()[0] == 1
    assert oct(mode(path)) == "0o600"
    assert oct(mode(path.parent)) == "0o700"


def test_an_existing_database_keeps_its_mode_with_one_warning(tmp_path, caplog):
    path = tmp_path / "exobot.db"
    sqlite3.connect(path).execute("CREATE TABLE t (x INTEGER)").connection.close()
    os.chmod(path, 0o644)
    url = f"sqlite:///{path}"
    with caplog.at_level(logging.WARNING, logger="exobot.db"):
        create_sync_engine(url).dispose()
        create_sync_engine(url).dispose()  # the engines, the lock, the migrations: said once
    assert mode(path) == 0o644  # the administrator's to change
    warnings = [r.getMessage() for r in caplog.records if r.name == "exobot.db"]
    assert warnings == [
        f"{path}: warning: other users can read this database (mode exobot.db 644) and it "
        f"holds members' mail and personal data: chmod 600 {path}"
    ]
    os.chmod(path, 0o600)
    assert exposed_database_warning(path) is None


def test_no_warning_about_what_is_no_database(tmp_path):
    text = tmp_path / "passwd"
    text.write_text("root:x:0:0:root:/root:/bin/sh\n")
    os.chmod(text, 0o644)
    assert exposed_database_warning(text) is None  # SQLite refuses it with its own error


def test_a_copy_is_private_from_the_start(tmp_path):
    source = tmp_path / "a.db"
    sqlite3.connect(source).execute("CREATE TABLE t (x INTEGER)").connection.close()
    sqlite_copy(source, tmp_path / "b.db")
    assert oct(mode(tmp_path / "b.db")) == "0o600"


def mail_only_config(tmp_path: Path, database: Path) -> Config:
    """A configuration of the core alone (no plugin's tables) on the SQLite file `database`."""
    path = tmp_path / "config.yaml"
    mail = {
        "address": "suport@example.org",
        "imap": {"host": "127.0.0.1", "username": "suport", "password": "imap-pw"},
        "smtp": {"host": "127.0.0.1"},
    }
    path.write_text(yaml.safe_dump({"database": {"url": f"sqlite:///{database}"}, "mail": mail}))
    return load_config(str(path), env={})


def test_restore_keeps_the_replaced_database_private(tmp_path, no_plugins):
    database = tmp_path / "live" / "exobot.db"
    config = mail_only_config(tmp_path, database)
    upgrade(config.database.url)
    os.chmod(database, 0o644)  # made by an older exobot, with the umask's mode
    backup(config, tmp_path / "b")

    said = restore(config, tmp_path / "b")

    (kept,) = database.parent.glob("exobot.db.before-restore-*")
    assert any(str(kept) in line for line in said)
    assert oct(mode(kept)) == "0o600"
    assert oct(mode(database)) == "0o600"


def test_a_refused_restore_leaves_no_database_behind(tmp_path, no_plugins):
    """The run lock makes the database file (private) before the restore looks at the backup;
    a refused restore takes that empty file away again."""
    database = tmp_path / "fresh" / "exobot.db"
    (tmp_path / "nothing").mkdir()
    with pytest.raises(BackupError, match="manifest"):
        restore(mail_only_config(tmp_path, database), tmp_path / "nothing")
    assert not database.exists()
