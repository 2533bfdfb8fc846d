"""Process and port helpers: spawn in a new session, wait for readiness, stop by PID."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

HOST = "127.0.0.1"


class StackError(RuntimeError):
    """A stack service could not be started, reached or stopped."""


def spawn(cmd: list[str], log_file: Path, cwd: Path | None = None) -> subprocess.Popen:
    """Start `cmd` in its own session (own process group), output appended to `log_file`.

    The own session keeps Ctrl-C in the caller's terminal away from the servers and lets
    `stop_pid` signal the whole group (Dovecot forks its workers into it).
    """
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as log:
        return subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            start_new_session=True,
        )


def tail(path: Path, lines: int = 30) -> str:
    """Return the last `lines` lines of a log file (or a note when it does not exist)."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return f"(no log file {path})"
    return "\n".join(text.splitlines()[-lines:])


def port_is_free(port: int, host: str = HOST) -> bool:
    """True when nothing listens on host:port and we could bind it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # SO_REUSEADDR mirrors what the servers do, so TIME_WAIT leftovers do not count.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def read_banner(port: int, host: str = HOST, timeout: float = 2.0) -> str:
    """Connect and return the first line the server sends (raises OSError on failure)."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        return sock.makefile("rb").readline().decode("latin-1").strip()


def banner_check(port: int, prefix: str) -> Callable[[], bool]:
    """A readiness probe: the server on `port` greets with a line starting with `prefix`."""

    def probe() -> bool:
        try:
            return read_banner(port).startswith(prefix)
        except OSError:
            return False

    return probe


def tls_banner_check(port: int, prefix: str, cafile: str | None) -> Callable[[], bool]:
    """Like banner_check, over TLS from the first byte; the certificate must verify against
    `cafile` for HOST (so a wrong certificate never passes for a ready server)."""

    def probe() -> bool:
        try:
            context = ssl.create_default_context(cafile=cafile)
            with (
                socket.create_connection((HOST, port), timeout=2.0) as raw,
                context.wrap_socket(raw, server_hostname=HOST) as sock,
            ):
                return sock.makefile("rb").readline().decode("latin-1").startswith(prefix)
        except OSError:  # ssl.SSLError included
            return False

    return probe


def http_check(url: str) -> Callable[[], bool]:
    """A readiness probe: GET `url` answers 200."""

    def probe() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    return probe


def wait_ready(
    name: str,
    proc: subprocess.Popen,
    probe: Callable[[], bool],
    log_file: Path,
    timeout: float = 30.0,
) -> float:
    """Poll `probe` until it succeeds; return the seconds it took.

    Fails fast when the process exits (e.g. port in use) and always reports the log tail,
    since "did not start" alone is useless for debugging.
    """
    started = time.monotonic()
    while True:
        if probe():
            return time.monotonic() - started
        if proc.poll() is not None:
            raise StackError(
                f"{name} exited with code {proc.returncode} before becoming ready; "
                f"log {log_file}:\n{tail(log_file)}"
            )
        if time.monotonic() - started > timeout:
            raise StackError(
                f"{name} not ready after {timeout:.0f}s; log {log_file}:\n{tail(log_file)}"
            )
        time.sleep(0.05)


def _proc_state(pid: int) -> str | None:
    """The state letter from /proc/PID/stat ('Z' for zombie), None when there is no such PID."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name may contain spaces and parentheses: the state follows the last ')'.
    return stat.rsplit(")", 1)[1].split()[0]


def _reap(pid: int) -> None:
    # Collect our own children so they do not linger as zombies in `ps`.
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def pid_alive(pid: int) -> bool:
    """True when `pid` is a running (non-zombie) process."""
    _reap(pid)
    state = _proc_state(pid)
    return state is not None and state != "Z"


def pid_matches(pid: int, token: str) -> bool:
    """True when `pid` is alive and its command line contains `token`.

    Guards against signalling an unrelated process that reused a PID from an old
    stack.json.
    """
    if not pid_alive(pid):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return False
    return token.encode() in cmdline


def _leads_group(pid: int) -> bool:
    try:
        return os.getpgid(pid) == pid
    except ProcessLookupError:
        return False


def _signal(pid: int, sig: int, group: bool) -> None:
    # killpg keeps working after the leader died, as long as one member is left.
    with contextlib.suppress(ProcessLookupError):
        if group:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)


def _group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes whose process group is `pgid`."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                members.append(int(entry.name))
    return members


def _wait_gone(pid: int, group: bool, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid) and not (group and _group_members(pid)):
            return True
        time.sleep(0.05)
    return False


def stop_pid(
    pid: int,
    token: str,
    grace: float = 5.0,
    first_signal: int = signal.SIGTERM,
    signal_group: bool = True,
) -> bool:
    """Stop the service `pid` (and its process group): SIGTERM, then SIGKILL after `grace`.

    `first_signal` replaces SIGTERM for servers with a better shutdown signal (PostgreSQL's
    postmaster: SIGINT, "fast" shutdown); with `signal_group=False` that first signal goes to
    `pid` alone (a postmaster stops its own children), the SIGKILL fallback to the group.

    Returns False when there was nothing to stop (dead, or the PID now belongs to a
    process whose command line lacks `token`).
    """
    if not pid_matches(pid, token):
        return False
    # We start every service in its own session, so it leads its group; signal the group
    # so that forked workers (Dovecot's imap/lmtp/auth) go too.
    group = _leads_group(pid)
    _signal(pid, first_signal, group and signal_group)
    if not _wait_gone(pid, group, grace):
        _signal(pid, signal.SIGKILL, group)
        _wait_gone(pid, group, grace)
    return True
