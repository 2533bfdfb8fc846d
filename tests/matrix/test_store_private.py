"""The Matrix store (device keys, access token) is private from the start: its directory
0700, its files 0600, whatever the process umask (issue 9, section 6)."""

from __future__ import annotations

import os
import stat

from exobot.matrix.client import Session, SessionStore, private_files


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_the_store_is_private_under_a_permissive_umask(tmp_path):
    store_dir = tmp_path / "var" / "matrix"
    old = os.umask(0o002)
    try:
        SessionStore(store_dir).save(Session("http://hs", "@bot:x", "DEV", "token"))
        (store_dir / "nio.db").write_text("keys")  # as nio creates its database
        (store_dir / "sub").mkdir()
        private_files(store_dir)
    finally:
        os.umask(old)
    assert mode(store_dir) == 0o700
    assert mode(store_dir / "session.json") == 0o600
    assert mode(store_dir / "nio.db") == 0o600
    assert mode(store_dir / "sub") == 0o700


def test_an_existing_open_store_is_closed(tmp_path):
    store_dir = tmp_path / "matrix"
    store_dir.mkdir(mode=0o755)
    os.chmod(store_dir, 0o755)
    (store_dir / "session.tmp").write_text("old")
    os.chmod(store_dir / "session.tmp", 0o644)
    SessionStore(store_dir).save(Session("http://hs", "@bot:x", "DEV", "token"))
    assert mode(store_dir) == 0o700
    assert mode(store_dir / "session.json") == 0o600
