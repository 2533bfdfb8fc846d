"""The target rules: parsing, the refused addresses, allowed_networks, resolution."""

from __future__ import annotations

import ipaddress

import pytest
from exobot_connectivity.probes import Round, parse_fping
from exobot_connectivity.targets import Target, TargetError, check_address, parse_target, resolve


@pytest.mark.parametrize(
    ("text", "expected", "shown"),
    [
        ("10.1.2.3", Target("icmp", "10.1.2.3"), "10.1.2.3"),
        ("  2001:DB8::1 ", Target("icmp", "2001:db8::1"), "2001:db8::1"),
        ("[2001:db8::1] tcp:22", Target("tcp", "2001:db8::1", 22), "2001:db8::1 tcp:22"),
        ("Router.Guifi.NET.", Target("icmp", "router.guifi.net"), "router.guifi.net"),
        ("host.example tcp:443", Target("tcp", "host.example", 443), "host.example tcp:443"),
        ("h TCP:1", Target("tcp", "h", 1), "h tcp:1"),
    ],
)
def test_parse_target(text, expected, shown):
    target = parse_target(text)
    assert target == expected
    assert str(target) == shown


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("a b c", "bad_syntax"),
        ("host udp:53", "bad_syntax"),
        ("host tcp:", "bad_syntax"),
        ("host tcp:0", "bad_port"),
        ("host tcp:65536", "bad_port"),
        ("-bad.example", "bad_host"),
        ("under_score.example", "bad_host"),
        ("300.1.1.1", "bad_host"),
        ("10.1.2", "bad_host"),
        ("a" * 64 + ".example", "bad_host"),
    ],
)
def test_parse_target_refuses(text, code):
    with pytest.raises(TargetError) as info:
        parse_target(text)
    assert info.value.code == code
    assert info.value.message.endswith(".") and str(info.value) == info.value.message


@pytest.mark.parametrize(
    ("address", "code"),
    [
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("255.255.255.255", "broadcast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("::ffff:224.0.0.1", "multicast"),
        ("not-an-address", "bad_host"),
    ],
)
def test_check_address_refuses(address, code):
    with pytest.raises(TargetError) as info:
        check_address(address)
    assert info.value.code == code


@pytest.mark.parametrize("address", ["10.0.0.1", "127.0.0.1", "192.168.1.1", "8.8.8.8", "::1"])
def test_any_unicast_by_default(address):
    assert check_address(address) == ipaddress.ip_address(address)


def test_allowed_networks():
    allowed = ["10.0.0.0/8", ipaddress.ip_network("2001:db8::/32")]
    assert str(check_address("10.228.1.1", allowed)) == "10.228.1.1"
    assert str(check_address("2001:db8::5", allowed)) == "2001:db8::5"
    for outside in ("192.168.1.1", "127.0.0.1", "2001:db9::1"):
        with pytest.raises(TargetError) as info:
            check_address(outside, allowed)
        assert info.value.code == "not_allowed"
    with pytest.raises(TargetError):
        check_address("10.0.0.1", [])  # nothing allowed


async def test_resolve_literal_and_name():
    assert await resolve(Target("icmp", "127.0.0.1")) == [ipaddress.ip_address("127.0.0.1")]
    addresses = await resolve(Target("tcp", "localhost", 80))
    assert addresses and all(address.is_loopback for address in addresses)
    # Every resolved address is re-checked against allowed_networks.
    with pytest.raises(TargetError) as info:
        await resolve(Target("icmp", "localhost"), ["10.0.0.0/8"])
    assert info.value.code == "not_allowed"
    with pytest.raises(TargetError) as info:
        await resolve(Target("icmp", "224.0.0.1"))
    assert info.value.code == "multicast"


async def test_name_that_does_not_resolve():
    with pytest.raises(TargetError) as info:
        await resolve(Target("icmp", "no-such-host.invalid"), timeout=30)
    assert info.value.code == "does_not_resolve"
    assert info.value.message == "no-such-host.invalid does not resolve."


def test_round_figures():
    assert Round(4, 3, (10.0, 12.0, 30.0)).median == 12.0
    assert Round(4, 3, (10.0, 12.0, 30.0)).loss == 0.25
    assert Round(4, 2, (10.0, 20.0)).median == 15.0
    empty = Round(4, 0)
    assert (empty.median, empty.loss) == (None, 1.0)
    assert Round(0, 0, error="x").loss == 1.0


def test_parse_fping_output():
    output = "10.0.0.1 : 12.30 - 45.60 -\n"
    assert parse_fping(output, "10.0.0.1", 4) == [12.3, 45.6]
    assert parse_fping(output, "10.0.0.2", 4) is None
    assert parse_fping("10.0.0.1: error while sending ping\n", "10.0.0.1", 4) is None
