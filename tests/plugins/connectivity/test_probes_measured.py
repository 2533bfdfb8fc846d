"""The probes measured against a real test host, not mocked: a network namespace joined by
a veth pair, whose replies come from a userspace responder (responder.py; this kernel has no
netem) delaying each one by 50 ms and dropping 10 % (seeded). Needs root (namespaces)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest
from exobot_connectivity.probes import Round, fping_path, probe, probe_icmp, probe_tcp
from exobot_connectivity.targets import Target

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="needs root: creates a network namespace and a veth pair"
)

RESPONDER = Path(__file__).with_name("responder.py")
PINGS = 200
DELAY = 0.05
DROP = 0.1
TCP_PORT = 8443
# With this seed exactly 20 of the first 200 draws drop (10 %): the loss asserted is the
# loss injected, give or take what a loaded machine adds.
SEED = "3"


def _run(*command: str) -> None:
    subprocess.run(command, check=True, capture_output=True, text=True)


class NamespaceHost:
    """The namespace's addresses: `host` answers ICMP (userspace) and refuses TCP (its kernel
    sends RST); `tcp_host` exists only for the TCP responder; `silent` answers nothing."""

    def __init__(self) -> None:
        pid = os.getpid()
        self.ns = f"exoconn{pid}"
        self.outer, self.inner = f"ecn{pid}a", f"ecn{pid}b"
        # 198.18.0.0/15 is for network tests (RFC 2544); a /24 per test process.
        net = f"198.{18 + (pid >> 8) % 2}.{pid % 256}"
        self.gateway, self.host = f"{net}.1", f"{net}.2"
        self.tcp_host, self.silent = f"{net}.3", f"{net}.4"
        self.responders: list[subprocess.Popen] = []

    def up(self) -> None:
        ns = ("ip", "netns", "exec", self.ns)
        _run("ip", "netns", "add", self.ns)
        _run("ip", "link", "add", self.outer, "type", "veth", "peer", "name", self.inner)
        _run("ip", "link", "set", self.inner, "netns", self.ns)
        _run("ip", "addr", "add", f"{self.gateway}/24", "dev", self.outer)
        _run("ip", "link", "set", self.outer, "up")
        _run(*ns, "ip", "addr", "add", f"{self.host}/24", "dev", self.inner)
        _run(*ns, "ip", "link", "set", self.inner, "up")
        _run(*ns, "ip", "link", "set", "lo", "up")
        _run(*ns, "sysctl", "-q", "-w", "net.ipv4.icmp_echo_ignore_all=1")
        _run(*ns, "sysctl", "-q", "-w", "net.ipv4.ip_forward=0")
        # tcp_host and silent are not configured in the namespace: frames for them go to its
        # interface (static neighbour entries, no ARP needed) and its kernel drops them
        # without an answer; only the TCP responder picks tcp_host's up.
        inner_mac = subprocess.run(
            [*ns, "cat", f"/sys/class/net/{self.inner}/address"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        for address in (self.tcp_host, self.silent):
            _run(
                "ip",
                "neigh",
                "replace",
                address,
                "lladdr",
                inner_mac,
                "dev",
                self.outer,
                "nud",
                "permanent",
            )

    def responder(self, *args: str) -> None:
        process = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                self.ns,
                sys.executable,
                str(RESPONDER),
                *args,
                "--delay",
                str(DELAY),
                "--drop",
                str(DROP),
                "--seed",
                SEED,
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.responders.append(process)
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "ready", "the responder did not start"

    def down(self) -> None:
        for process in self.responders:
            if process.stdin:
                process.stdin.close()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True)
        subprocess.run(["ip", "link", "del", self.outer], capture_output=True)


@pytest.fixture(scope="module")
def test_host():
    host = NamespaceHost()
    try:
        host.up()
        host.responder("icmp")
        host.responder(
            "tcp", "--iface", host.inner, "--address", host.tcp_host, "--port", str(TCP_PORT)
        )
        yield host
    finally:
        host.down()


def _assert_measured(result: Round) -> None:
    print(f"measured: median {result.median} ms, loss {result.loss:.1%}")
    assert result.error is None
    assert result.sent == PINGS
    assert list(result.rtts) == sorted(result.rtts)
    assert result.median is not None and 45 <= result.median <= 70, result
    assert 0.05 <= result.loss <= 0.15, result


async def test_icmp_median_and_loss_are_measured(test_host):
    assert fping_path(), "fping is missing: run `make stack` (it installs Debian's fping)"
    result = await probe(
        Target("icmp", test_host.host), test_host.host, count=PINGS, interval=0.02, timeout=1.0
    )
    _assert_measured(result)


async def test_tcp_connect_time_and_loss_are_measured(test_host):
    # A dropped SYN is retransmitted after ~1 s: the 0.5 s timeout counts it as lost.
    result = await probe(
        Target("tcp", test_host.tcp_host, TCP_PORT),
        test_host.tcp_host,
        count=PINGS,
        interval=0.02,
        timeout=0.5,
    )
    _assert_measured(result)


async def test_unanswered_address_loses_everything(test_host):
    icmp = await probe_icmp(test_host.silent, count=5, interval=0.05, timeout=0.5)
    tcp = await probe_tcp(test_host.silent, TCP_PORT, count=5, interval=0.05, timeout=0.5)
    for result in (icmp, tcp):
        assert (result.sent, result.received, result.rtts) == (5, 0, ())
        assert result.loss == 1.0 and result.median is None


async def test_closed_port_loses_everything(test_host):
    result = await probe_tcp(test_host.host, TCP_PORT + 1, count=5, interval=0.05, timeout=2)
    assert (result.sent, result.received, result.loss, result.median) == (5, 0, 1.0, None)
    assert result.error is None


async def test_missing_fping_gives_a_clear_error(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setattr("exobot_connectivity.probes.fping_path", lambda: None)
    result = await probe_icmp("127.0.0.1", count=3, interval=0.05)
    assert result.error and "fping is not installed" in result.error
    assert (result.sent, result.received, result.loss) == (3, 0, 1.0)


async def test_probes_do_not_block_the_event_loop(test_host):
    """While both probes run a burst, a ticker on the same loop keeps running (a blocking
    probe would stall it for the whole burst, ~2 s)."""
    loop = asyncio.get_running_loop()
    gaps: list[float] = []

    async def ticker() -> None:
        last = loop.time()
        while True:
            await asyncio.sleep(0.01)
            now = loop.time()
            gaps.append(now - last)
            last = now

    task = asyncio.create_task(ticker())
    try:
        await asyncio.gather(
            probe_icmp(test_host.host, count=40, interval=0.05, timeout=1.0),
            probe_tcp(test_host.tcp_host, TCP_PORT, count=40, interval=0.05, timeout=0.5),
        )
    finally:
        task.cancel()
    assert len(gaps) > 20
    assert max(gaps) < 1.0, max(gaps)
