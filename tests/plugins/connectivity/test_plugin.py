"""The connectivity plugin's pieces without the stack: its settings under
`plugins.connectivity.`, the addresses offered from a mail, the SmokePing include, the ping
spacing, and the prober adapter's refusals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from exobot_connectivity import Connectivity, ConnectivityConfig
from exobot_connectivity.plugin import addresses_in, round_interval, smokeping_targets
from exobot_connectivity.store import Monitor

from exobot.config import ConfigError, parse_config
from exobot.plugins import installed

MINIMAL = {
    "mail": {
        "address": "suport@example.org",
        "imap": {"host": "imap.example.org", "username": "suport", "password": "secret-imap"},
        "smtp": {"host": "smtp.example.org"},
    }
}
NOW = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)


def parse(settings: dict):
    return parse_config(MINIMAL | {"plugins": {"connectivity": settings}}, env={})


def problems(settings: dict) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse(settings)
    return caught.value.problems


def test_the_entry_point_names_the_plugin():
    assert installed()["connectivity"].cls is Connectivity


def test_defaults_and_good_settings():
    defaults = ConnectivityConfig()
    assert defaults.step == timedelta(minutes=5)
    assert (defaults.pings, defaults.loss_alert, defaults.alert_rounds) == (20, 0.2, 2)
    assert defaults.retention == timedelta(days=90)
    assert defaults.allowed_networks is None
    assert (defaults.max_per_ticket, defaults.max_total) == (5, 100)

    parse(
        {
            "step": "1m",
            "pings": 10,
            "reference_targets": ["10.0.0.1", "gw.example.org tcp:443"],
            "allowed_networks": ["10.0.0.0/8", "2001:db8::/32"],
            "retention": "30d",
        }
    )
    config = ConnectivityConfig.model_validate(
        {"reference_targets": ["[2001:db8::1]", "GW.example.org  tcp:443"],
         "allowed_networks": ["10.1.2.3/8", "2001:db8::1/32"]}
    )
    assert config.reference_targets == ["2001:db8::1", "gw.example.org tcp:443"]
    assert config.allowed_networks == ["10.0.0.0/8", "2001:db8::/32"]


@pytest.mark.parametrize(
    ("settings", "key", "words"),
    [
        ({"step": "5 minutes"}, "step", "duration"),
        ({"step": "0s"}, "step", ""),
        ({"pings": 0}, "pings", ""),
        ({"loss_alert": 1.5}, "loss_alert", ""),
        ({"reference_targets": ["224.0.0.1"]}, "reference_targets", "multicast"),
        ({"reference_targets": ["host tcp:99999"]}, "reference_targets", "out of range"),
        ({"allowed_networks": ["10.0.0.0/33"]}, "allowed_networks", "CIDR"),
        ({"max_total": 0}, "max_total", ""),
        ({"retention": "soon"}, "retention", "duration"),
        ({"colour": "red"}, "colour", ""),
    ],
)
def test_bad_settings_name_their_key(settings, key, words):
    found = problems(settings)
    mine = [p for p in found if p.startswith(f"plugins.connectivity.{key}")]
    assert mine, found
    assert words in mine[0]


def test_addresses_offered_from_a_mail():
    text = (
        "Hola, el router (192.168.1.1) no respon; la IP pública és 10.20.30.40, "
        "i l'IPv6 [2001:db8::5]. Multicast 224.0.0.1, res 0.0.0.0, versió 1.2.3, "
        "hora 10:30, un altre 10.20.30.40; i 172.16.0.9."
    )
    assert addresses_in(text, None) == ["192.168.1.1", "10.20.30.40", "2001:db8::5"]
    assert addresses_in(text, None, limit=10) == [
        "192.168.1.1", "10.20.30.40", "2001:db8::5", "172.16.0.9"
    ]
    # Only what may be probed is offered.
    assert addresses_in(text, ["10.0.0.0/8"]) == ["10.20.30.40"]
    assert addresses_in("No em funciona internet.", None) == []


def monitor(id_: int, ticket: int | None, target: str, kind="icmp", port=None) -> Monitor:
    host = target.split()[0]
    return Monitor(id_, ticket, target, kind, host, port, "@op:x", NOW, None, None, None)


def parse_smokeping(text: str) -> list[tuple[int, str, dict[str, str]]]:
    """SmokePing's Targets syntax: `+`-levels with a section name, then `key = value`."""
    sections: list[tuple[int, str, dict[str, str]]] = []
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        if line.startswith("+"):
            plus, _, name = line.partition(" ")
            assert set(plus) == {"+"} and name.replace("_", "").replace("-", "").isalnum()
            sections.append((len(plus), name, {}))
        else:
            key, sep, value = line.partition(" = ")
            assert sep and sections, line
            sections[-1][2][key] = value
    return sections


def test_smokeping_targets_include():
    grouped = {
        None: [monitor(1, None, "10.0.0.1")],
        7: [monitor(2, 7, "192.168.1.1"), monitor(3, 7, "gw.example.org tcp:443", "tcp", 443)],
        12: [monitor(4, 12, "2001:db8::5")],
    }
    sections = parse_smokeping(smokeping_targets(grouped, "suport"))
    levels = [(level, name) for level, name, _ in sections]
    assert levels == [
        (1, "exobot"), (2, "references"), (3, "m1"), (2, "ticket_7"), (3, "m2"), (3, "m3"),
        (2, "ticket_12"), (3, "m4"),
    ]
    by_name = {name: values for _, name, values in sections}
    assert by_name["ticket_7"]["title"] == "suport#7"
    assert by_name["m2"] == {
        "menu": "192.168.1.1", "title": "suport#7: 192.168.1.1", "probe": "FPing",
        "host": "192.168.1.1",
    }
    assert by_name["m3"]["probe"] == "TCPPing"
    assert (by_name["m3"]["host"], by_name["m3"]["port"]) == ("gw.example.org", "443")
    assert (by_name["m4"]["host"], by_name["m4"]["probe"]) == ("2001:db8::5", "FPing6")
    assert parse_smokeping(smokeping_targets({}, "suport")) == [
        (1, "exobot", {"menu": "exobot", "title": "exobot: monitored tickets"})
    ]


def test_spacing():
    # The figures of a period (store.summary) are tested on stored rounds: test_summary_sweep.
    assert round_interval(timedelta(minutes=5), 20) == 1.0  # SmokePing's spacing
    assert round_interval(timedelta(seconds=4), 20) == pytest.approx(0.1)
    assert round_interval(timedelta(seconds=1), 1000) == 0.01  # fping's floor without root


async def test_prober_refuses_without_crashing():
    plugin = Connectivity()
    plugin.config = ConnectivityConfig(pings=3, allowed_networks=["10.0.0.0/8"])
    outside = await plugin.prober("127.0.0.1", "icmp", "127.0.0.1", None)
    assert (outside.sent, outside.received) == (3, 0)
    assert "outside the networks" in outside.error
    missing = await plugin.prober("no-such-host.invalid", "icmp", "no-such-host.invalid", None)
    assert (missing.sent, missing.received, missing.loss) == (3, 0, 1.0)
    assert "does not resolve" in missing.error


async def test_prober_probes_loopback_with_fping():
    plugin = Connectivity()
    plugin.config = ConnectivityConfig(pings=3, step="2s")
    result = await plugin.prober("127.0.0.1", "icmp", "127.0.0.1", None)
    assert result.error is None, result.error
    assert (result.sent, result.received) == (3, 3)
    assert all(rtt >= 0 for rtt in result.rtts)

