"""The probes, the SmokePing way: a round is a burst of `count` pings spaced by `interval`
seconds; ICMP through Debian's `fping -C` (the probe SmokePing uses), TCP as the connect time
of each attempt. Both run as asyncio subprocesses/sockets and never block the event loop."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import shutil
import socket
import statistics
import struct
import time
from dataclasses import dataclass

from exobot_connectivity.targets import Address, Target

DEFAULT_COUNT = 20
DEFAULT_INTERVAL = 1.0  # seconds between pings of a burst (SmokePing's fping default)
DEFAULT_TIMEOUT = 3.0  # seconds a single ping/connect may take before it counts as lost
FPING_MIN_PERIOD_MS = 10  # fping refuses shorter periods when not run as root


@dataclass(frozen=True)
class Round:
    """One burst: how many were sent and came back, their round-trip times (ms, sorted), and
    a clear English error when the probe itself could not run."""

    sent: int
    received: int
    rtts: tuple[float, ...] = ()
    error: str | None = None

    @property
    def median(self) -> float | None:
        """Median RTT in ms; None when nothing came back."""
        return statistics.median(self.rtts) if self.rtts else None

    @property
    def loss(self) -> float:
        """Lost fraction 0.0–1.0 (1.0 when nothing was sent, as when the probe failed)."""
        return 1.0 if self.sent <= 0 else (self.sent - self.received) / self.sent


def _round(sent: int, rtts: list[float], error: str | None = None) -> Round:
    return Round(sent=sent, received=len(rtts), rtts=tuple(sorted(rtts)), error=error)


def fping_path() -> str | None:
    """Where Debian's fping is (PATH, then /usr/bin and /usr/sbin), or None."""
    return shutil.which("fping") or shutil.which("fping", path="/usr/bin:/usr/sbin:/bin:/sbin")


def parse_fping(output: str, address: str, count: int) -> list[float] | None:
    """The RTTs (ms) of `fping -C count -q` output (`addr : 12.3 - 45.6 …`, `-` = lost) for
    `address`, or None when no such line is there."""
    for line in output.splitlines():
        host, sep, values = line.partition(" : ")
        if not sep or host.strip() != address:
            continue
        fields = values.split()
        if len(fields) != count:
            return None
        return [float(field) for field in fields if field != "-"]
    return None


async def probe_icmp(
    address: Address | str,
    count: int = DEFAULT_COUNT,
    interval: float = DEFAULT_INTERVAL,
    timeout: float = DEFAULT_TIMEOUT,
) -> Round:
    """A burst of `count` ICMP echo requests to `address` through `fping -C`, `interval`
    seconds apart; each unanswered within `timeout` is lost."""
    address = str(ipaddress.ip_address(str(address)))
    binary = fping_path()
    if binary is None:
        return _round(count, [], "fping is not installed (Debian package 'fping').")
    period_ms = max(FPING_MIN_PERIOD_MS, round(interval * 1000))
    timeout_ms = max(1, round(timeout * 1000))
    command = [binary, "-q", "-C", str(count), "-p", str(period_ms), "-t", str(timeout_ms)]
    try:
        process = await asyncio.create_subprocess_exec(
            *command,
            address,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "LC_ALL": "C"},
        )
    except OSError as exc:
        return _round(count, [], f"fping could not be started: {exc}")
    # fping ends by itself after the burst and the last timeout; the margin only guards
    # against a hung process.
    deadline = count * period_ms / 1000 + timeout + 30
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), deadline)
    except TimeoutError:
        process.kill()
        await process.wait()
        return _round(count, [], f"fping did not finish within {deadline:.0f} s.")
    except asyncio.CancelledError:
        # The plugin stops mid-burst: end fping and reap it while the loop still runs, so
        # no transport is left to a closed loop.
        if process.returncode is None:
            process.kill()
        await process.wait()
        raise
    text = stderr.decode(errors="replace") + stdout.decode(errors="replace")
    rtts = parse_fping(text, address, count)
    if rtts is None:
        detail = " ".join(text.split())[:200] or f"exit status {process.returncode}"
        return _round(count, [], f"fping failed: {detail}")
    return _round(count, rtts)


async def _connect_once(address: Address, port: int, timeout: float) -> float | None:
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setblocking(False)
    # Close with a reset: no TIME_WAIT or FIN retransmissions left behind by every probe.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    try:
        started = time.perf_counter()
        await asyncio.wait_for(loop.sock_connect(sock, (str(address), port)), timeout)
        return (time.perf_counter() - started) * 1000
    except (OSError, TimeoutError):
        return None  # refused, unreachable or no answer in time: lost
    finally:
        sock.close()


async def probe_tcp(
    address: Address | str,
    port: int,
    count: int = DEFAULT_COUNT,
    interval: float = DEFAULT_INTERVAL,
    timeout: float = DEFAULT_TIMEOUT,
) -> Round:
    """A burst of `count` TCP connects to `address`:`port` started `interval` seconds apart
    (a slow one does not delay the next); the connect time is the RTT, refused or timed out
    is lost."""
    address = ipaddress.ip_address(str(address))
    loop = asyncio.get_running_loop()
    start = loop.time()

    async def attempt(index: int) -> float | None:
        await asyncio.sleep(max(0.0, start + index * interval - loop.time()))
        return await _connect_once(address, port, timeout)

    results = await asyncio.gather(*(attempt(i) for i in range(count)))
    return _round(count, [rtt for rtt in results if rtt is not None])


async def probe(
    target: Target,
    address: Address | str,
    *,
    count: int = DEFAULT_COUNT,
    interval: float = DEFAULT_INTERVAL,
    timeout: float = DEFAULT_TIMEOUT,
) -> Round:
    """One round against one resolved `address` of `target`, by the target's kind."""
    if target.kind == "tcp":
        assert target.port is not None
        return await probe_tcp(address, target.port, count, interval, timeout)
    return await probe_icmp(address, count, interval, timeout)
