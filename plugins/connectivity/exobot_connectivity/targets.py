"""What may be probed: parsing a target (`10.1.2.3`, `host.example`, `host tcp:443`), the
address rules (no multicast, broadcast or unspecified; only `allowed_networks`) and name
resolution off the event loop, every resolved address re-checked."""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# RFC 1123 host names: dot-separated labels of letters, digits and inner hyphens.
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$", re.IGNORECASE)
_TCP = re.compile(r"^tcp:(\d{1,5})$", re.IGNORECASE)
_LIMITED_BROADCAST = ipaddress.IPv4Address("255.255.255.255")
RESOLVE_TIMEOUT = 10.0


class TargetError(ValueError):
    """A target that cannot be probed; `code` is stable (for callers and tests), `message`
    is a clear English sentence (callers translate by code)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Target:
    """A probe target: ICMP to `host`, or a TCP connect to `host`:`port`."""

    kind: str  # "icmp" | "tcp"
    host: str
    port: int | None = None

    def __str__(self) -> str:
        return self.host if self.kind == "icmp" else f"{self.host} tcp:{self.port}"


def _literal(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _check_host(host: str) -> str:
    if host.startswith("[") and host.endswith("]"):  # [2001:db8::1], as in URLs
        host = host[1:-1]
    address = _literal(host)
    if address is not None:
        return str(address)
    name = host.rstrip(".").lower()
    if not name or len(name) > 253 or not all(_LABEL.match(label) for label in name.split(".")):
        raise TargetError("bad_host", f"{host!r} is neither an IP address nor a valid host name.")
    if name.replace(".", "").isdigit():  # 10.1.2 or 300.1.1.1: a mistyped address, not a name
        raise TargetError("bad_host", f"{host!r} is not a valid IP address.")
    return name


def parse_target(text: str) -> Target:
    """Parse `ADDRESS`, `HOSTNAME` (ICMP) or `HOST tcp:PORT` (TCP connect) into a Target;
    raises TargetError (codes: empty, bad_syntax, bad_host, bad_port)."""
    parts = (text or "").split()
    if not parts:
        raise TargetError("empty", "No target given: write an IP address or a host name.")
    if len(parts) > 2:
        raise TargetError(
            "bad_syntax", f"{text.strip()!r} is not a target: write HOST or HOST tcp:PORT."
        )
    host = _check_host(parts[0])
    if len(parts) == 1:
        return Target("icmp", host)
    match = _TCP.match(parts[1])
    if match is None:
        raise TargetError(
            "bad_syntax", f"{parts[1]!r} is not understood: write HOST or HOST tcp:PORT."
        )
    port = int(match.group(1))
    if not 1 <= port <= 65535:
        raise TargetError("bad_port", f"TCP port {port} is out of range (1-65535).")
    return Target("tcp", host, port)


def _networks(allowed_networks: Iterable[Network | str] | None) -> list[Network] | None:
    if allowed_networks is None:
        return None
    return [ipaddress.ip_network(net, strict=False) for net in allowed_networks]


def check_address(
    address: Address | str, allowed_networks: Iterable[Network | str] | None = None
) -> Address:
    """Return the address if it may be probed; raise TargetError otherwise (codes:
    bad_host, multicast, broadcast, unspecified, not_allowed). `allowed_networks` None means
    any unicast address (private ranges such as 10/8 and loopback included)."""
    if isinstance(address, str):
        parsed = _literal(address)
        if parsed is None:
            raise TargetError("bad_host", f"{address!r} is not an IP address.")
        address = parsed
    # An IPv4-mapped IPv6 address (::ffff:a.b.c.d) reaches the IPv4 host: judge that one.
    mapped = getattr(address, "ipv4_mapped", None)
    if mapped is not None:
        check_address(mapped, allowed_networks)
    if address.is_multicast:
        raise TargetError("multicast", f"{address} is a multicast address: it cannot be probed.")
    if address == _LIMITED_BROADCAST:
        raise TargetError("broadcast", f"{address} is the broadcast address: it cannot be probed.")
    if address.is_unspecified:
        raise TargetError(
            "unspecified", f"{address} is the unspecified address: it cannot be probed."
        )
    networks = _networks(allowed_networks)
    if networks is not None and not any(
        address.version == net.version and address in net for net in networks
    ):
        raise TargetError(
            "not_allowed", f"{address} is outside the networks this exobot may probe."
        )
    return address


async def resolve(
    target: Target,
    allowed_networks: Iterable[Network | str] | None = None,
    *,
    timeout: float = RESOLVE_TIMEOUT,
) -> list[Address]:
    """The addresses to probe for `target` (an address as is; a name resolved off the event
    loop within `timeout`), each one checked with check_address; raises TargetError
    (does_not_resolve, or a check_address code)."""
    literal = _literal(target.host)
    if literal is not None:
        return [check_address(literal, allowed_networks)]
    loop = asyncio.get_running_loop()
    try:
        # loop.getaddrinfo runs the blocking resolver in the default executor.
        infos = await asyncio.wait_for(
            loop.getaddrinfo(target.host, None, type=socket.SOCK_STREAM), timeout
        )
    except (OSError, UnicodeError, TimeoutError) as exc:
        raise TargetError("does_not_resolve", f"{target.host} does not resolve.") from exc
    addresses: list[Address] = []
    for _family, _type, _proto, _canon, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise TargetError("does_not_resolve", f"{target.host} does not resolve.")
    networks = _networks(allowed_networks)
    return [check_address(address, networks) for address in addresses]
