"""Installation of Request Tracker 5 and 4.4 from Debian's packages, for the importer's tests.

Non-interactive and closed: debconf is preseeded first (no database made by dbconfig-common,
no cron jobs: every test server builds its own SQLite database, see devstack/rt.py); services
are kept from starting during the install with a policy-rc.d that exits 101 (left alone when
the machine already has one, removed afterwards otherwise); the MTA the packages pull in
(exim4, Debian's default-mta) is configured for local delivery only on loopback and stopped if
anything started it. RT's own outgoing mail never reaches an MTA anyway: each test server
mails through a script that appends to a file.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

RT_PACKAGES = {
    5: ["request-tracker5", "rt5-db-sqlite", "rt5-clients", "rt5-standalone"],
    4: ["request-tracker4", "rt4-db-sqlite", "rt4-clients", "rt4-standalone"],
}
POLICY_RC = Path("/usr/sbin/policy-rc.d")


def _preseed(version: int) -> str:
    pkg = f"request-tracker{version}"
    lines = [
        f"{pkg} {pkg}/rtname string exobot-rt{version}",
        f"{pkg} {pkg}/organization string example.org",
        f"{pkg} {pkg}/correspondaddress string rt@example.org",
        f"{pkg} {pkg}/commentaddress string rt-comment@example.org",
        f"{pkg} {pkg}/webbaseurl string http://127.0.0.1",
        f"{pkg} {pkg}/webpath string /rt",
        f"{pkg} {pkg}/handle-siteconfig-permissions boolean true",
        f"{pkg} {pkg}/install-cronjobs boolean false",
        f"{pkg} {pkg}/initial-root-password password password",
        # The test servers build their own databases; dbconfig-common would make one more
        # under /var/lib that nothing uses.
        f"{pkg} {pkg}/dbconfig-install boolean false",
        f"{pkg} {pkg}/database-type select sqlite3",
    ]
    return "\n".join(lines) + "\n"


# exim4 (default-mta): local delivery only, listening on loopback, so nothing can leave.
EXIM_PRESEED = (
    "\n".join(
        [
            "exim4-config exim4/dc_eximconfig_configtype select local delivery only; not on a network",
            "exim4-config exim4/dc_local_interfaces string 127.0.0.1 ; ::1",
            "exim4-config exim4/mailname string localhost",
            "exim4-config exim4/dc_other_hostnames string",
            "exim4-config exim4/dc_relay_nets string",
            "exim4-config exim4/dc_smarthost string",
            "exim4-config exim4/use_split_config boolean false",
        ]
    )
    + "\n"
)


def _log(message: str) -> None:
    print(f"[devstack install] {message}", flush=True)


def _dpkg_installed(package: str) -> bool:
    result = subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True
    )
    return result.returncode == 0 and result.stdout.endswith(" installed")


def installed(version: int) -> bool:
    """True when every Debian package of RT `version` (5 or 4) is installed."""
    return all(_dpkg_installed(pkg) for pkg in RT_PACKAGES[version])


def available(version: int) -> bool:
    """True when apt knows a candidate for RT `version`'s main package (Debian ships it)."""
    result = subprocess.run(
        ["apt-cache", "policy", f"request-tracker{version}"], capture_output=True, text=True
    )
    return "Candidate:" in result.stdout and "Candidate: (none)" not in result.stdout


@contextlib.contextmanager
def _no_service_starts() -> Iterator[None]:
    """A policy-rc.d that forbids starting services, for the time of the install."""
    if POLICY_RC.exists():
        # The machine's own (containers ship one): it already says 101, keep it.
        yield
        return
    POLICY_RC.write_text("#!/bin/sh\n# devstack: no service starts during an install\nexit 101\n")
    POLICY_RC.chmod(0o755)
    try:
        yield
    finally:
        POLICY_RC.unlink(missing_ok=True)


def _stop_mta() -> None:
    """Stop exim4 if something started it anyway (the stack needs no MTA running)."""
    for pidfile in (Path("/run/exim4/exim.pid"), Path("/var/run/exim4/exim.pid")):
        with contextlib.suppress(OSError, ValueError):
            pid = int(pidfile.read_text().split()[0])
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            if b"exim" in cmdline:
                os.kill(pid, 15)
                _log(f"stopped exim4 (pid {pid}) started during the install")


def _apt(args: list[str]) -> subprocess.CompletedProcess:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive", DEBCONF_NONINTERACTIVE_SEEN="true")
    return subprocess.run(
        [
            "apt-get",
            "-y",
            "-o",
            "Dpkg::Options::=--force-confdef",
            "-o",
            "Dpkg::Options::=--force-confold",
            *args,
        ],
        env=env,
        capture_output=True,
        text=True,
    )


def install_rt(versions: tuple[int, ...] = (5, 4)) -> None:
    """apt-get install RT 5 and RT 4.4 (those Debian ships) unless already installed."""
    wanted = [v for v in versions if not installed(v)]
    for version in versions:
        if version not in wanted:
            _log(f"request-tracker{version} already installed: nothing to do")
    if not wanted:
        return
    missing = [v for v in wanted if not available(v)]
    if missing:
        subprocess.run(["apt-get", "update"], capture_output=True)
        missing = [v for v in wanted if not available(v)]
    for version in missing:
        _log(f"Debian has no request-tracker{version} here: its tests will skip")
    wanted = [v for v in wanted if v not in missing]
    if not wanted:
        return
    started = time.monotonic()
    selections = EXIM_PRESEED + "".join(_preseed(v) for v in wanted)
    subprocess.run(["debconf-set-selections"], input=selections, text=True, check=True)
    packages = [pkg for v in wanted for pkg in RT_PACKAGES[v]]
    with _no_service_starts():
        # Recommends left out: cron, rsyslog, w3m and the rest are not needed by a test server.
        result = _apt(["install", "--no-install-recommends", *packages])
        if result.returncode != 0:
            _log("apt-get install failed, running apt-get update and retrying")
            subprocess.run(["apt-get", "update"], capture_output=True)
            result = _apt(["install", "--no-install-recommends", *packages])
    _stop_mta()
    if result.returncode != 0:
        sys.stderr.write(result.stdout[-3000:] + result.stderr[-3000:])
        raise SystemExit(f"apt-get install of {' '.join(packages)} failed")
    elapsed = time.monotonic() - started
    _log(f"installed {' '.join(packages)} in {elapsed:.1f}s")
