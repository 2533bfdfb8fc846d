"""exobot backup / restore and the run lock on SQLite, without servers: real processes, real
files (the stack tests in tests/integration/test_backup_stack.py run them beside a live bot)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from exobot import config as config_module
from exobot.backup import MANIFEST, SQLITE_FILE, backup
from exobot.config import load_config
from exobot.db.migrate import upgrade
from exobot.runlock import LockHeld, RunLock, lock_path

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _no_installed_plugins(monkeypatch):
    """The core's configuration alone (the plugins' tables come with the stack tests)."""
    monkeypatch.setattr(config_module, "KNOWN_PLUGINS", set())
    monkeypatch.setattr(config_module, "_installed_plugins", dict)


def write_config(directory: Path) -> Path:
    """A configuration with its database and Matrix store under `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    data = {
        "database": {"url": f"sqlite:///{directory / 'exobot.db'}"},
        "mail": {
            "address": "suport@example.org",
            "imap": {"host": "127.0.0.1", "username": "suport", "password": "imap-pw"},
            "smtp": {"host": "127.0.0.1"},
        },
        "matrix": {
            "homeserver": "https://matrix.example.org",
            "user_id": "@exobot:example.org",
            "password": "matrix-pw",
            "store_path": str(directory / "matrix"),
        },
    }
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    os.chmod(path, 0o600)
    return path


def cli(*args: str) -> subprocess.CompletedProcess:
    """`exobot ARGS` as a separate process (the installed plugins stay out of its config)."""
    return subprocess.run(
        [sys.executable, "-m", "exobot.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


@pytest.fixture
def installation(tmp_path) -> Path:
    """A migrated database with a few rows and a Matrix store (an SQLite file, in WAL mode
    with a live writer's side files, and the session file); returns the config path."""
    config = write_config(tmp_path / "live")
    upgrade(f"sqlite:///{tmp_path / 'live' / 'exobot.db'}")
    with sqlite3.connect(tmp_path / "live" / "exobot.db") as conn:
        conn.executemany(
            "INSERT INTO state (key, value) VALUES (?, ?)", [(f"k{i}", "v" * i) for i in range(50)]
        )
    store = tmp_path / "live" / "matrix"
    store.mkdir(mode=0o700)
    keys = sqlite3.connect(store / "@exobot:example.org_DEVICE.db")
    keys.execute("PRAGMA journal_mode=WAL")
    keys.execute("CREATE TABLE olmsessions (session TEXT)")
    keys.execute("INSERT INTO olmsessions VALUES ('the device keys')")
    keys.commit()  # left open: the -wal holds the row, as with nio running
    (store / "session.json").write_text(json.dumps({"device_id": "DEVICE"}))
    yield config
    keys.close()


def test_backup_then_restore_into_a_fresh_directory(installation, tmp_path):
    target = tmp_path / "backups" / "2026-11-28"
    done = cli("backup", str(target), "-c", str(installation))
    assert done.returncode == 0, done.stderr
    assert "backup written to" in done.stdout
    assert {p.name for p in target.iterdir()} == {MANIFEST, SQLITE_FILE, "matrix"}
    assert oct(target.stat().st_mode & 0o777) == "0o700"
    manifest = json.loads((target / MANIFEST).read_text())
    assert manifest["database"]["kind"] == "sqlite"
    assert manifest["database"]["counts"]["state"] == 50
    assert manifest["database"]["migration_heads"]
    assert sorted(manifest["matrix_store"]["files"]) == [
        "@exobot:example.org_DEVICE.db",
        "session.json",
    ]
    assert not list(tmp_path.glob("backups/.*partial*"))

    fresh = write_config(tmp_path / "fresh")
    done = cli("restore", str(target), "-c", str(fresh))
    assert done.returncode == 0, done.stderr
    assert "restore done" in done.stdout
    with sqlite3.connect(tmp_path / "fresh" / "exobot.db") as conn:
        assert conn.execute("SELECT count(*) FROM state").fetchone()[0] == 50
        assert conn.execute("SELECT value FROM state WHERE key = 'k7'").fetchone()[0] == "v" * 7
    keys = tmp_path / "fresh" / "matrix" / "@exobot:example.org_DEVICE.db"
    with sqlite3.connect(keys) as conn:  # the row that was only in the live store's WAL
        assert conn.execute("SELECT session FROM olmsessions").fetchall() == [("the device keys",)]
    assert oct(keys.stat().st_mode & 0o777) == "0o600"
    assert oct((tmp_path / "fresh" / "matrix").stat().st_mode & 0o777) == "0o700"
    assert json.loads((tmp_path / "fresh" / "matrix" / "session.json").read_text()) == {
        "device_id": "DEVICE"
    }


def test_a_backup_never_writes_over_another(installation, tmp_path):
    target = tmp_path / "b"
    assert cli("backup", str(target), "-c", str(installation)).returncode == 0
    before = (target / MANIFEST).read_bytes()
    again = cli("backup", str(target), "-c", str(installation))
    assert again.returncode == 1
    assert "already exists" in again.stderr
    assert (target / MANIFEST).read_bytes() == before
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli("backup", str(empty), "-c", str(installation)).returncode == 0  # empty: fine


def test_restore_keeps_what_it_replaces(installation, tmp_path):
    target = tmp_path / "b"
    backup(load_config(installation, env={}), target)
    live = tmp_path / "live" / "exobot.db"
    with sqlite3.connect(live) as conn:
        conn.execute("INSERT INTO state (key, value) VALUES ('after', 'the backup')")
    done = cli("restore", str(target), "-c", str(installation))
    assert done.returncode == 0, done.stderr
    with sqlite3.connect(live) as conn:
        assert conn.execute("SELECT count(*) FROM state WHERE key = 'after'").fetchone()[0] == 0
    (kept,) = tmp_path.glob("live/exobot.db.before-restore-*")
    with sqlite3.connect(kept) as conn:
        assert conn.execute("SELECT value FROM state WHERE key = 'after'").fetchone()[0]
    (kept_store,) = tmp_path.glob("live/matrix.before-restore-*")
    assert (kept_store / "session.json").exists()


@pytest.mark.parametrize(
    ("damage", "said"),
    [
        (lambda b: (b / MANIFEST).unlink(), "has no manifest.json"),
        (lambda b: (b / MANIFEST).write_text("{not json"), "manifest.json is unreadable"),
        (lambda b: (b / "matrix" / "session.json").unlink(), "matrix/session.json is missing"),
        (lambda b: _flip_byte(b / SQLITE_FILE, 5000), "database.sqlite3 does not match"),
    ],
)
def test_a_partial_or_damaged_backup_is_refused_before_anything_changes(
    installation, tmp_path, damage, said
):
    target = tmp_path / "b"
    backup(load_config(installation, env={}), target)
    damage(target)
    fresh = write_config(tmp_path / "fresh")
    done = cli("restore", str(target), "-c", str(fresh))
    assert done.returncode == 1
    assert said in done.stderr
    assert not (tmp_path / "fresh" / "exobot.db").exists()
    assert not (tmp_path / "fresh" / "matrix").exists()


def test_a_damaged_database_with_a_matching_manifest_is_refused(installation, tmp_path):
    target = tmp_path / "b"
    backup(load_config(installation, env={}), target)
    database = target / SQLITE_FILE
    with open(database, "r+b") as handle:  # a page of garbage where a b-tree page was
        handle.seek(4096)
        handle.write(os.urandom(4096))
    _rewrite_checksum(target, SQLITE_FILE)
    done = cli("restore", str(target), "-c", str(write_config(tmp_path / "fresh")))
    assert done.returncode == 1
    assert "the backup's database is damaged" in done.stderr


def test_a_backup_from_a_newer_exobot_is_refused(installation, tmp_path):
    target = tmp_path / "b"
    backup(load_config(installation, env={}), target)
    manifest = json.loads((target / MANIFEST).read_text())
    manifest["database"]["migration_heads"] = ["0099_from_the_future"]
    (target / MANIFEST).write_text(json.dumps(manifest))
    done = cli("restore", str(target), "-c", str(write_config(tmp_path / "fresh")))
    assert done.returncode == 1
    assert "unknown to this exobot" in done.stderr


def _flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def _rewrite_checksum(target: Path, name: str) -> None:
    from exobot.backup import sha256

    manifest = json.loads((target / MANIFEST).read_text())
    manifest["files"][name] = {
        "size": (target / name).stat().st_size,
        "sha256": sha256(target / name),
    }
    (target / MANIFEST).write_text(json.dumps(manifest))


HOLD = """
import sys, time
from exobot.runlock import RunLock
lock = RunLock(sys.argv[1]); lock.acquire()
print("held", flush=True)
time.sleep(600)
"""


@pytest.fixture
def holder(installation):
    """Another process holding the run lock of the installation's database."""
    url = load_config(installation, env={}).database.url
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, url],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.stdout.readline().strip() == "held"
    yield proc
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_the_run_lock_is_one_process_at_a_time_and_dies_with_its_holder(installation, holder):
    url = load_config(installation, env={}).database.url
    lock = RunLock(url)
    with pytest.raises(LockHeld, match=f"held by process {holder.pid}"):
        lock.acquire()
    assert lock_path(url).name == "exobot.db.lock"
    holder.kill()  # SIGKILL: no cleanup, the kernel drops the flock
    holder.wait()
    deadline = time.monotonic() + 30
    while True:
        try:
            lock.acquire()
            break
        except LockHeld:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    assert lock.held
    lock.release()


def test_restore_is_refused_while_exobot_runs(installation, tmp_path, holder):
    target = tmp_path / "b"
    backup(load_config(installation, env={}), target)  # a backup is fine meanwhile
    done = cli("restore", str(target), "-c", str(installation))
    assert done.returncode == 1
    assert "exobot is running on this database" in done.stderr
    assert "stop it before restoring" in done.stderr
    assert not list(tmp_path.glob("live/*.before-restore-*"))


def test_run_is_refused_while_the_lock_is_held(installation, holder):
    done = cli("run", "-c", str(installation))
    assert done.returncode == 1
    assert "exobot is already running on this database" in done.stderr
    assert f"held by process {holder.pid}" in done.stderr
