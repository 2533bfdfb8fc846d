"""Connectivity monitor for tickets: SmokePing-style probes (ICMP through fping, TCP connect),
the rules for what may be probed, rounds stored per ticket, graphs and notes in the ticket's
thread. The plugin class is `Connectivity` (entry point `connectivity`)."""

from exobot_connectivity.plugin import Connectivity, ConnectivityConfig

__all__ = ["Connectivity", "ConnectivityConfig"]
