"""Connectivity monitor for tickets: SmokePing-style probes (ICMP through fping, TCP connect),
the rules for what may be probed, and (later) rounds, graphs and notes in the ticket's thread."""
