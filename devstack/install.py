"""One-time installation of the stack's server software (idempotent)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from devstack.config import dovecot_version
from devstack.paths import SYNAPSE_VENV
from devstack.postgres import find_bindir, server_version
from devstack.rt_install import install_rt
from devstack.smokeping import SMOKEPING_ROOT
from devstack.smokeping import installed as smokeping_installed
from devstack.smokeping import unpack as unpack_smokeping

DOVECOT_PACKAGES = ["dovecot-imapd", "dovecot-lmtpd"]
# Debian's metapackage: the current major version. Debian's policy keeps the package from
# starting anything we use: the stack always runs its own cluster (devstack/postgres.py).
POSTGRES_PACKAGES = ["postgresql"]
# The container tools: the compose file's test (podman-compose calls podman) and the image
# check. With their recommended packages (networking, rootless helpers), which podman runs on.
CONTAINER_TOOLS = {"podman": "podman", "runc": "runc", "debootstrap": "debootstrap"}


def _log(message: str) -> None:
    print(f"[devstack install] {message}", flush=True)


def _apt_install(packages: list[str], recommends: bool = False) -> subprocess.CompletedProcess:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    options = [] if recommends else ["--no-install-recommends"]
    return subprocess.run(
        ["apt-get", "install", "-y", *options, *packages],
        env=env,
        capture_output=True,
        text=True,
    )


def _dpkg_installed(package: str) -> bool:
    result = subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True
    )
    return result.returncode == 0 and result.stdout.endswith(" installed")


def _apt_install_or_update(packages: list[str], what: str, recommends: bool = False) -> None:
    result = _apt_install(packages, recommends)
    if result.returncode != 0:
        # Fresh containers often ship without package lists; refresh them only when needed
        # because `apt-get update` is the slow part.
        _log("apt-get install failed, running apt-get update and retrying")
        subprocess.run(["apt-get", "update"], check=True, capture_output=True)
        result = _apt_install(packages, recommends)
    if result.returncode != 0:
        sys.stderr.write(result.stdout[-2000:] + result.stderr[-2000:])
        raise SystemExit(f"apt-get install of {what} failed")


def install_dovecot() -> None:
    """apt-get install Dovecot's IMAP and LMTP servers unless both are already there."""
    missing = [pkg for pkg in DOVECOT_PACKAGES if not _dpkg_installed(pkg)]
    if not missing and shutil.which("dovecot"):
        _log(f"dovecot {dovecot_version()} already installed: nothing to do")
        return
    started = time.monotonic()
    _apt_install_or_update(missing or DOVECOT_PACKAGES, "Dovecot")
    elapsed = time.monotonic() - started
    _log(f"installed {' '.join(missing)} (dovecot {dovecot_version()}) in {elapsed:.1f}s")


def install_fping() -> None:
    """apt-get install Debian's `fping` (the connectivity plugin's ICMP probe, the one
    SmokePing uses) unless it is already there."""
    if _dpkg_installed("fping") and shutil.which("fping", path="/usr/bin:/usr/sbin:/bin"):
        _log("fping already installed: nothing to do")
        return
    started = time.monotonic()
    _apt_install_or_update(["fping"], "fping")
    _log(f"installed fping in {time.monotonic() - started:.1f}s")


def install_smokeping() -> None:
    """Unpack Debian's SmokePing and the Perl modules `smokeping --check` needs into
    .stack/smokeping (apt-get download + dpkg-deb -x: no MTA, no service, nothing system-wide),
    for the test that validates the connectivity plugin's SmokePing include."""
    if smokeping_installed():
        _log(f"smokeping already unpacked in {SMOKEPING_ROOT}: nothing to do")
        return
    started = time.monotonic()
    lines = unpack_smokeping(log=_log)
    version = next((line.split()[1] for line in lines if line.startswith("smokeping ")), "?")
    elapsed = time.monotonic() - started
    _log(
        f"unpacked smokeping {version} and {len(lines) - 1} dependencies into {SMOKEPING_ROOT} "
        f"in {elapsed:.1f}s"
    )


def install_postgres() -> None:
    """apt-get install Debian's `postgresql` unless an initdb is already there (any version)."""
    bindir = find_bindir()
    if bindir is not None:
        _log(f"postgresql {server_version(bindir)} already installed ({bindir}): nothing to do")
        return
    started = time.monotonic()
    _apt_install_or_update(POSTGRES_PACKAGES, "PostgreSQL")
    bindir = find_bindir()
    if bindir is None:
        raise SystemExit("apt-get installed postgresql but no /usr/lib/postgresql/*/bin/initdb")
    elapsed = time.monotonic() - started
    _log(f"installed postgresql {server_version(bindir)} ({bindir}) in {elapsed:.1f}s")


def synapse_version(venv: Path = SYNAPSE_VENV) -> str | None:
    """Version of matrix-synapse in `venv`, None when not installed."""
    python = venv / "bin" / "python"
    if not python.exists():
        return None
    # Package metadata, not `import synapse`: 60 ms instead of over a second.
    probe = subprocess.run(
        [
            str(python),
            "-c",
            "import importlib.metadata as m; print(m.version('matrix-synapse'))",
        ],
        capture_output=True,
        text=True,
    )
    return probe.stdout.strip() if probe.returncode == 0 else None


def install_synapse(venv: Path = SYNAPSE_VENV) -> None:
    """Create Synapse's own venv (its pins must not leak into the project venv)."""
    version = synapse_version(venv)
    if version:
        _log(f"matrix-synapse {version} already installed in {venv}: nothing to do")
        return
    started = time.monotonic()
    venv.parent.mkdir(parents=True, exist_ok=True)
    # sys._base_executable is the real interpreter even when we run inside the project venv.
    base_python = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base_python, "-m", "venv", str(venv)], check=True)
    _log(f"installing matrix-synapse into {venv} (about 20 s)")
    # Output captured: pip's index warnings are noise unless the install fails.
    result = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "--quiet", "matrix-synapse"],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        sys.stderr.write(result.stdout[-2000:] + result.stderr[-4000:])
        raise SystemExit("pip install matrix-synapse failed")
    elapsed = time.monotonic() - started
    _log(f"installed matrix-synapse {synapse_version(venv)} into {venv} in {elapsed:.1f}s")


def install_openssl() -> None:
    """apt-get install the openssl command (the stack's TLS certificates) when it is missing."""
    if shutil.which("openssl"):
        _log("openssl already installed: nothing to do")
        return
    _apt_install_or_update(["openssl"], "OpenSSL")
    _log("installed openssl")


CHROMIUM = Path("/usr/bin/chromium")


def install_chromium() -> None:
    """apt-get install Debian's Chromium (the browser tests drive it through Playwright, which
    must never download its own browser)."""
    if CHROMIUM.exists():
        _log("chromium already installed: nothing to do")
        return
    started = time.monotonic()
    _apt_install_or_update(["chromium"], "Chromium")
    _log(f"installed chromium in {time.monotonic() - started:.1f}s")


def install_container_tools() -> None:
    """apt-get install podman, runc and debootstrap (with what Debian recommends beside them)
    when one of the commands is missing."""
    names = ", ".join(CONTAINER_TOOLS.values())
    missing = [pkg for cmd, pkg in CONTAINER_TOOLS.items() if shutil.which(cmd) is None]
    if not missing:
        _log(f"{names} already installed: nothing to do")
        return
    started = time.monotonic()
    _apt_install_or_update(missing, names, recommends=True)
    _log(f"installed {' '.join(missing)} in {time.monotonic() - started:.1f}s")


def install_all() -> None:
    """Install everything the stack and the tests need: Dovecot, fping, PostgreSQL, openssl and
    Chromium, the Synapse venv, SmokePing unpacked for its `--check`, Request Tracker 5 and 4.4
    (the importer's tests), and podman (the compose file's test and the image check)."""
    install_openssl()
    install_chromium()
    install_dovecot()
    install_fping()
    install_smokeping()
    install_postgres()
    install_synapse()
    install_rt()
    install_container_tools()
