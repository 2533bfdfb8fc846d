"""Debian's SmokePing unpacked under .stack/smokeping, only to run `smokeping --check` on the
connectivity plugin's Targets include.

`apt-get install smokeping` would pull an MTA (exim4) and start daemons, so the packages are
fetched with `apt-get download` and unpacked with `dpkg-deb -x`: nothing is installed
system-wide and no service starts. The package list is exactly what `--check` needs on top of
Debian's base Perl (each one was found missing by running it; dropping any makes it fail).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from devstack.paths import PROJECT_ROOT

SMOKEPING_ROOT = PROJECT_ROOT / ".stack" / "smokeping"
SMOKEPING = SMOKEPING_ROOT / "usr" / "sbin" / "smokeping"
# What the unpacked tree holds, written last: its presence means a complete extraction.
MARKER = SMOKEPING_ROOT / ".packages"

SMOKEPING_PACKAGES = [
    "smokeping",
    "libconfig-grammar-perl",  # the config parser itself
    "libcgi-pm-perl",  # Smokeping.pm: use CGI
    "libsnmp-session-perl",  # use SNMP_util, SNMP_Session
    "librrds-perl",  # use RRDs ...
    "librrd8",  # ... its C library ...
    "libdbi1",  # ... and librrd8's one library the base system lacks
    "liburi-perl",  # use URI::Escape
    "libdigest-hmac-perl",  # Smokeping::Master, Slave: Digest::HMAC_MD5
    "libwww-perl",  # Smokeping::Slave: LWP::UserAgent ...
    "libhttp-message-perl",  # ... HTTP::Request ...
    "libhttp-date-perl",
    "libclone-perl",
    "libtry-tiny-perl",
]


def perl_environment(root: Path = SMOKEPING_ROOT) -> dict[str, str]:
    """The environment that makes Perl find the unpacked modules and librrd."""
    libs = [root / "usr" / "share" / "perl5"]
    libs += sorted((root / "usr" / "lib").glob("*/perl5/*"))  # arch-specific XS modules
    native = sorted(p for p in (root / "usr" / "lib").glob("*-linux-gnu") if p.is_dir())
    env = dict(os.environ)
    env["PERL5LIB"] = os.pathsep.join(
        [*(str(p) for p in libs), *filter(None, [os.environ.get("PERL5LIB")])]
    )
    env["LD_LIBRARY_PATH"] = os.pathsep.join(
        [*(str(p) for p in native), *filter(None, [os.environ.get("LD_LIBRARY_PATH")])]
    )
    return env


def installed(root: Path = SMOKEPING_ROOT) -> bool:
    """True when the unpacked tree is complete and holds exactly SMOKEPING_PACKAGES."""
    marker = root / MARKER.name
    if not marker.exists() or not (root / "usr" / "sbin" / "smokeping").exists():
        return False
    names = {line.split()[0] for line in marker.read_text().splitlines() if line.strip()}
    return names == set(SMOKEPING_PACKAGES)


def check_config(config: Path, root: Path = SMOKEPING_ROOT, timeout: float = 120):
    """Run `smokeping --config=CONFIG --check` from the unpacked tree; the CompletedProcess."""
    return subprocess.run(
        ["perl", str(root / "usr" / "sbin" / "smokeping"), f"--config={config}", "--check"],
        env=perl_environment(root),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _download(packages: list[str], into: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["apt-get", "download", *packages], cwd=into, capture_output=True, text=True
    )


def unpack(root: Path = SMOKEPING_ROOT, log=print) -> list[str]:
    """Download SMOKEPING_PACKAGES with `apt-get download` and unpack them into `root` with
    `dpkg-deb -x` (replacing what was there); returns the packages' `name version` lines."""
    root.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root.parent, prefix=".smokeping-") as tmp:
        debs, tree = Path(tmp) / "debs", Path(tmp) / "tree"
        debs.mkdir()
        # As root, apt-get warns that it downloads unsandboxed (the _apt user cannot reach a
        # private temporary directory): harmless, and the output is captured.
        result = _download(SMOKEPING_PACKAGES, debs)
        if result.returncode != 0:
            # Fresh containers often ship without package lists.
            log("apt-get download failed, running apt-get update and retrying")
            subprocess.run(["apt-get", "update"], check=True, capture_output=True)
            result = _download(SMOKEPING_PACKAGES, debs)
        if result.returncode != 0:
            raise SystemExit(
                "apt-get download of SmokePing failed:\n" + result.stderr[-2000:]
            )
        lines = []
        for deb in sorted(debs.glob("*.deb")):
            subprocess.run(["dpkg-deb", "-x", str(deb), str(tree)], check=True)
            fields = subprocess.run(
                ["dpkg-deb", "-f", str(deb), "Package", "Version"],
                check=True,
                capture_output=True,
                text=True,
            ).stdout.split()
            lines.append(f"{fields[1]} {fields[3]}")
        (tree / MARKER.name).write_text("\n".join(lines) + "\n")
        if root.exists():
            shutil.rmtree(root)
        tree.rename(root)
    return lines
