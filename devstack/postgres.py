"""A private PostgreSQL cluster for the stack: initdb, pg_ctl start, CREATE DATABASE.

Debian's own cluster (if any) is never used: the stack makes its own under DIR/postgres with
`initdb` run as the `postgres` user (PostgreSQL refuses to run as root), trust authentication
on 127.0.0.1 only, fsync off. The binaries are found by glob because their directory carries
the major version (/usr/lib/postgresql/15/bin on Debian 12, another number on Debian 13).
"""

from __future__ import annotations

import getpass
import glob
import os
import pwd
import re
import shlex
import shutil
import subprocess
import tempfile
import time
import urllib.parse
from pathlib import Path

from devstack.procs import HOST, StackError, tail

SUPERUSER_WHEN_ROOT = "postgres"
# A Unix socket path must fit in sockaddr_un.sun_path (108 bytes with the NUL).
_MAX_SOCKET_PATH = 100


def _version_key(path: str) -> tuple[int, ...]:
    match = re.search(r"/postgresql/([\d.]+)/", path)
    return tuple(int(p) for p in match.group(1).split(".")) if match else (0,)


def find_bindir() -> Path | None:
    """The directory holding initdb/pg_ctl/postgres (newest Debian version first), or None."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_version_key)
    if candidates:
        return Path(candidates[-1]).parent
    found = shutil.which("initdb")  # other distributions put it on PATH
    return Path(found).resolve().parent if found else None


def server_version(bindir: Path) -> str:
    """`postgres --version`'s number, e.g. "15.18"."""
    out = subprocess.run(
        [str(bindir / "postgres"), "--version"], capture_output=True, text=True, check=True
    ).stdout
    match = re.search(r"(\d+(?:\.\d+)*)", out)
    return match.group(1) if match else out.strip()


def superuser() -> str:
    """The OS user that owns the cluster, which is also its database superuser."""
    return SUPERUSER_WHEN_ROOT if os.geteuid() == 0 else getpass.getuser()


def _as_owner() -> dict:
    """subprocess keyword arguments that run a command as the cluster's owner."""
    if os.geteuid() != 0:
        return {}
    entry = pwd.getpwnam(SUPERUSER_WHEN_ROOT)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def _chown_to_owner(path: Path) -> None:
    if os.geteuid() == 0:
        entry = pwd.getpwnam(SUPERUSER_WHEN_ROOT)
        os.chown(path, entry.pw_uid, entry.pw_gid)


def _locale() -> str:
    # UTF-8 everywhere: without an explicit locale initdb follows the environment, and a
    # bare "C" environment gives an SQL_ASCII cluster, for which psycopg returns bytes.
    return "C.UTF-8" if Path("/usr/lib/locale/C.utf8").exists() else "C"


def socket_dir(base: Path, port: int) -> Path:
    """DIR/postgres/run, or a short temporary directory when that path is too long."""
    preferred = base / "run"
    if len(f"{preferred}/.s.PGSQL.{port}") <= _MAX_SOCKET_PATH:
        return preferred
    return Path(tempfile.mkdtemp(prefix="exo-pg-"))


def prepare(base: Path, data_dir: Path, sockets: Path, log_file: Path) -> None:
    """Create the directories (owned by the cluster owner) and the log file."""
    for directory in (base, sockets):
        directory.mkdir(parents=True, exist_ok=True)
        _chown_to_owner(directory)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    log_file.touch()
    _chown_to_owner(log_file)


def _run(cmd: list[str], log_file: Path, cwd: Path, timeout: float) -> None:
    with open(log_file, "ab") as log:
        log.write(f"[devstack] {shlex.join(cmd)}\n".encode())
        log.flush()
        try:
            result = subprocess.run(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                timeout=timeout,
                **_as_owner(),
            )
        except subprocess.TimeoutExpired as exc:
            raise StackError(
                f"{Path(cmd[0]).name} hung for {timeout:.0f}s; log {log_file}:\n{tail(log_file)}"
            ) from exc
    if result.returncode != 0:
        raise StackError(
            f"{Path(cmd[0]).name} failed with code {result.returncode}; "
            f"log {log_file}:\n{tail(log_file)}"
        )


def init_cluster(bindir: Path, data_dir: Path, log_file: Path, timeout: float) -> float:
    """initdb (skipped when the cluster exists); returns the seconds it took."""
    if (data_dir / "PG_VERSION").exists():
        return 0.0
    started = time.monotonic()
    cmd = [
        str(bindir / "initdb"),
        "-D",
        str(data_dir),
        "-U",
        superuser(),
        "--auth=trust",
        "--no-sync",
        "--encoding=UTF8",
        f"--locale={_locale()}",
    ]
    _run(cmd, log_file, data_dir.parent, timeout)
    return time.monotonic() - started


def start_cluster(
    bindir: Path, data_dir: Path, port: int, sockets: Path, log_file: Path, timeout: float
) -> tuple[int, float]:
    """pg_ctl -w start; returns (the postmaster's PID, seconds). pg_ctl detaches the server
    into its own session, so the PID leads its process group like our other services."""
    started = time.monotonic()
    options = [
        "-p", str(port),
        "-k", str(sockets),
        "-c", f"listen_addresses={HOST}",
        "-c", "fsync=off",
        "-c", "synchronous_commit=off",
        "-c", "full_page_writes=off",
    ]  # fmt: skip
    cmd = [
        str(bindir / "pg_ctl"),
        "-D", str(data_dir),
        "-l", str(log_file),
        "-w",
        "-t", str(max(1, int(timeout))),
        "-o", shlex.join(options),
        "start",
    ]  # fmt: skip
    _run(cmd, log_file, data_dir.parent, timeout + 5)
    return postmaster_pid(data_dir, log_file), time.monotonic() - started


def postmaster_pid(data_dir: Path, log_file: Path) -> int:
    """The first line of DIR/postmaster.pid."""
    try:
        return int((data_dir / "postmaster.pid").read_text().splitlines()[0])
    except (OSError, ValueError, IndexError) as exc:
        raise StackError(
            f"pg_ctl started but {data_dir}/postmaster.pid is unreadable ({exc}); "
            f"log {log_file}:\n{tail(log_file)}"
        ) from exc


def url(user: str, port: int, dbname: str) -> str:
    """The SQLAlchemy URL (psycopg 3 driver) of a database of the cluster."""
    return f"postgresql+psycopg://{user}@{HOST}:{port}/{urllib.parse.quote(dbname, safe='')}"


def create_database(bindir: Path | None, user: str, port: int, dbname: str) -> None:
    """CREATE DATABASE over TCP: with psycopg when importable, else the `createdb` binary."""
    try:
        import psycopg
        from psycopg import sql
    except ImportError:
        psycopg = None
    if psycopg is not None:
        with psycopg.connect(
            host=HOST, port=port, user=user, dbname="postgres", autocommit=True, connect_timeout=10
        ) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
        return
    createdb = (bindir / "createdb") if bindir else shutil.which("createdb")
    if not createdb:
        raise StackError("neither psycopg nor createdb is available to create a database")
    result = subprocess.run(
        [str(createdb), "-h", HOST, "-p", str(port), "-U", user, dbname],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise StackError(f"createdb {dbname} failed: {result.stderr.strip()}")
