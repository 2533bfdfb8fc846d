"""Render the README's connectivity graph (`docs/connectivity-graph.png`) with the plugin's own
`graph.render_graph`, from synthetic but realistic rounds: a member's link over 24 hours
(~25 ms, busier and jittery in the evening, a cut at night, a lossy hour in the morning) next
to a reference target (~3 ms, clean). Deterministic (fixed seed), so the image only changes
when the graph's code does.

    .venv/bin/python bench/connectivity_figure.py [-o docs/connectivity-graph.png]
"""

from __future__ import annotations

import argparse
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from exobot_connectivity.graph import GraphLabels, Point, Series, render_graph

END = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
STEP = timedelta(minutes=5)
PINGS = 20


def _member(at: datetime, rng: random.Random) -> Point:
    hour = at.astimezone(ZoneInfo("Europe/Madrid")).hour
    base, jitter, loss = 24.0, 2.0, 0.0
    if 19 <= hour <= 23:  # evening: the shared radio link is busy
        base, jitter, loss = 38.0, 12.0, 0.03
    if hour == 3:  # the member's router rebooted at night
        return Point(at, PINGS, 0, ())
    if 8 <= hour < 10:  # the fault the ticket is about: a lossy, slow morning
        base, jitter, loss = 55.0, 25.0, 0.3
    received = sum(rng.random() >= loss for _ in range(PINGS))
    rtts = tuple(max(1.0, rng.gauss(base, jitter) + rng.expovariate(1 / 3)) for _ in range(received))
    return Point(at, PINGS, received, rtts)


def _reference(at: datetime, rng: random.Random) -> Point:
    rtts = tuple(2.5 + rng.expovariate(1 / 0.6) for _ in range(PINGS))
    return Point(at, PINGS, PINGS, rtts)


def main() -> None:
    """Write the PNG."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", default="docs/connectivity-graph.png")
    args = parser.parse_args()
    rng = random.Random(11)
    start = END - timedelta(hours=24)
    times = [start + STEP * i for i in range(int((END - start) / STEP))]
    series = [
        Series("192.0.2.41", [_member(t, rng) for t in times]),
        Series("gw.exo.cat", [_reference(t, rng) for t in times], reference=True),
    ]
    png = render_graph(series, start=start, end=END, timezone=ZoneInfo("Europe/Madrid"),
                       title="suport#1234: connectivity, last 24h", labels=GraphLabels())
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(png)
    print(f"{out}: {len(png)} bytes")


if __name__ == "__main__":
    main()
