"""`exobot connectivity smokeping-targets` validated by Debian's own `smokeping --check`.

The include is written by the real CLI (its own process) from a SQLite database migrated by
`exobot migrate`, with monitors for an IPv4 address, an IPv6 address, a host name, a TCP
target, on two tickets, and reference targets of each address family. A SmokePing config
built from the unpacked package's own templates `@include`s it under *** Targets ***, and
`smokeping --check` (SmokePing's config parser with every probe's and target's checks) must
accept it; a broken include must be refused, so the check can fail.

SmokePing comes from `python -m devstack install` (devstack/smokeping.py: the Debian
packages unpacked under .stack/smokeping, nothing installed system-wide). Without it the test
is skipped, except under CI (`CI` set), where it fails instead.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import exobot_connectivity
import pytest
import yaml
from exobot_connectivity import store

from devstack.smokeping import SMOKEPING_ROOT, check_config, installed
from exobot.db.engine import create_engine

HERE = Path(exobot_connectivity.__file__).parent
ROOT = Path(__file__).resolve().parents[3]
NOW = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
FPING = shutil.which("fping", path="/usr/bin:/usr/sbin:/bin")

# (ticket, target, kind, host, port): what the CLI must export.
MONITORS = [
    (7, "192.0.2.10", "icmp", "192.0.2.10", None),
    (7, "2001:db8::10", "icmp", "2001:db8::10", None),
    (7, "localhost", "icmp", "localhost", None),  # a host name (resolves without a network)
    (12, "192.0.2.20 tcp:443", "tcp", "192.0.2.20", 443),
    (12, "198.51.100.7", "icmp", "198.51.100.7", None),
    (None, "198.51.100.1", "icmp", "198.51.100.1", None),
    (None, "2001:db8::1", "icmp", "2001:db8::1", None),
]


@pytest.fixture(scope="module")
def smokeping() -> Path:
    """The unpacked SmokePing tree."""
    if not installed():
        reason = f"SmokePing is not unpacked in {SMOKEPING_ROOT}: run `python -m devstack install`"
        if os.environ.get("CI"):
            pytest.fail(reason + " (CI must not skip this test)")
        pytest.skip(reason)
    if FPING is None:
        pytest.fail("fping is missing: `python -m devstack install` installs it")
    return SMOKEPING_ROOT


def _exobot(*args: str, config: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "exobot.cli", *args, "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


async def _store_monitors(db: Path) -> None:
    engine = create_engine(f"sqlite:///{db}")
    try:
        async with engine.begin() as conn:
            for ticket, target, kind, host, port in MONITORS:
                await store.start(conn, ticket=ticket, target=target, kind=kind, host=host,
                                  port=port, by="@op:test", now=NOW)
            await store.start(conn, ticket=12, target="192.0.2.99", kind="icmp",
                              host="192.0.2.99", port=None, by="@op:test", now=NOW)
            await store.stop(conn, ticket=12, target="192.0.2.99", reason="operator", now=NOW)
    finally:
        await engine.dispose()


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> Path:
    """The include the real CLI writes for MONITORS (a stopped one left out), once."""
    tmp_path = tmp_path_factory.mktemp("smokeping-include")
    db = tmp_path / "exobot.db"
    config = tmp_path / "config.yaml"
    data = {
        "mail": {
            "address": "suport@example.org",
            "imap": {"host": "imap.example.org", "username": "suport", "password": "imap-pw"},
            "smtp": {"host": "smtp.example.org"},
        },
        "database": {"url": f"sqlite:///{db}"},
        "plugins": {"connectivity": {}},
    }
    config.write_text(yaml.safe_dump(data))
    config.chmod(0o600)
    migrated = _exobot("migrate", config=config)
    assert migrated.returncode == 0, migrated.stderr
    asyncio.run(_store_monitors(db))
    out = tmp_path / "targets.smokeping"
    done = _exobot("connectivity", "smokeping-targets", "-o", str(out), config=config)
    assert done.returncode == 0, done.stderr
    return out


@pytest.fixture
def include(written, tmp_path) -> Path:
    """A copy of the written include for one test (which may break it)."""
    copy = tmp_path / "targets.smokeping"
    copy.write_text(written.read_text())
    return copy


def smokeping_config(root: Path, work: Path, include: Path) -> Path:
    """A minimal but complete SmokePing config around `include`: paths into the unpacked
    tree and `work`, Debian's default Database and Presentation, the probes the include
    names."""
    data, cache = work / "data", work / "cache"
    data.mkdir(exist_ok=True)
    cache.mkdir(exist_ok=True)
    # Debian ships no `tcpping` (TCPPing's helper script, a third-party wrapper around
    # tcptraceroute); the check only requires an executable there, so the test gives one that
    # says so if anything ever runs it.
    tcpping = work / "tcpping"
    tcpping.write_text("#!/bin/sh\necho 'tcpping is not installed (not packaged by Debian)' >&2\nexit 1\n")
    tcpping.chmod(0o755)
    etc = root / "etc" / "smokeping"
    text = f"""\
*** General ***
owner = exobot test
contact = test@example.invalid
mailhost = localhost
cgiurl = http://localhost/smokeping.cgi
imgcache = {cache}
imgurl = images
datadir = {data}
piddir = {data}
smokemail = {etc / "smokemail"}
tmail = {etc / "tmail"}

@include {etc / "config.d" / "Database"}

*** Presentation ***
template = {etc / "basepage.html"}
charset = utf-8

+ overview
width = 600
height = 50
range = 10h

+ detail
width = 600
height = 200
unison_tolerance = 2
"Last 3 Hours" 3h
"Last 30 Hours" 30h

*** Probes ***

+ FPing
binary = {FPING}

+ FPing6
binary = {FPING}

+ TCPPing
binary = {tcpping}

*** Targets ***
probe = FPing
menu = Top
title = exobot's monitors

@include {include}
"""
    path = work / "config"
    path.write_text(text)
    return path


def test_the_include_passes_smokeping_check(smokeping, include, tmp_path):
    text = include.read_text()
    # What the include says before SmokePing judges it.
    assert "++ ticket_7" in text and "++ ticket_12" in text and "++ references" in text
    assert "192.0.2.99" not in text  # stopped: not exported
    for _ticket, target, _kind, host, _port in MONITORS:
        assert f"menu = {target}\n" in text
        assert f"host = {host}\n" in text
    assert "probe = TCPPing\nhost = 192.0.2.20\nport = 443\n" in text
    assert "probe = FPing6\nhost = 2001:db8::10\n" in text
    config = smokeping_config(smokeping, tmp_path, include)

    checked = check_config(config)

    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "syntax OK" in checked.stdout


@pytest.mark.parametrize(
    ("breakage", "error"),
    [
        ("+++ bad name\nmenu = x\ntitle = x\nhost = 192.0.2.1", "unknown section 'bad name'"),
        (
            "+++ m999\nmenu = x\ntitle = x\nprobe = TCPPing\nhost = 192.0.2.1\nport = 70000",
            "TCPPing port must be between 0 and 65535",
        ),
        (
            "+++ m998\nmenu = x\ntitle = x\nprobe = NoSuchProbe\nhost = 192.0.2.1",
            "probe NoSuchProbe missing from the Probes section",
        ),
    ],
    ids=["section-name", "port-range", "unknown-probe"],
)
def test_a_broken_include_fails_the_check(smokeping, include, tmp_path, breakage, error):
    include.write_text(include.read_text() + "\n" + breakage + "\n")
    config = smokeping_config(smokeping, tmp_path, include)

    checked = check_config(config)

    assert checked.returncode != 0, checked.stdout
    assert error in checked.stdout + checked.stderr
    assert "syntax OK" not in checked.stdout
