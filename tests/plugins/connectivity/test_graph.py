"""The SmokePing-style graph: a real PNG whose pixels show the data.

Pixel positions come from the figure's own transforms (``build_figure``), so the
tests sample exactly where a round's median, its smoke or its loss mark must be.
"""

from __future__ import annotations

import datetime as dt
import io
import time
import tracemalloc
from zoneinfo import ZoneInfo

import matplotlib.dates as mdates
import numpy as np
import pytest
from exobot_connectivity.graph import (
    LOSS_SCALE,
    GraphLabels,
    Point,
    Series,
    build_figure,
    figure_png,
    graph_size,
    latest_figures,
    loss_colour,
    render_graph,
)
from PIL import Image

TZ = ZoneInfo("Europe/Madrid")
END = dt.datetime(2026, 11, 28, 6, 0, tzinfo=dt.UTC)
STEP = dt.timedelta(minutes=5)
GREEN, RED = LOSS_SCALE[0][1], LOSS_SCALE[-1][1]
HALF_LOST = loss_colour(0.5)


def rgb(hex_colour: str) -> tuple[int, int, int]:
    return tuple(int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))


def near(pixel, hex_colour: str, tolerance: int = 60) -> bool:
    return sum(abs(a - b) for a, b in zip(pixel[:3], rgb(hex_colour), strict=True)) <= tolerance


def is_grey(pixel) -> bool:
    r, g, b = pixel[:3]
    return max(r, g, b) - min(r, g, b) <= 12 and 50 <= r <= 235


def round_at(i: int, start: dt.datetime, *, lost: int = 0, rtts=None) -> Point:
    if rtts is None:
        rtts = [20.0] * (20 - lost)
    return Point(start + STEP * i, 20, len(rtts), tuple(rtts))


def draw(series, *, hours=24, labels=None):
    """Build and render; returns (figure, image) with the figure's layout final."""
    fig = build_figure(series, start=END - dt.timedelta(hours=hours), end=END, timezone=TZ,
                       title="suport#1 — 192.0.2.1", labels=labels)
    image = Image.open(io.BytesIO(figure_png(fig))).convert("RGB")
    return fig, image


def to_pixel(fig, ax, at: dt.datetime, ms: float) -> tuple[int, int]:
    x, y = ax.transData.transform((mdates.date2num(at), ms))
    return round(x), round(fig.bbox.height - y)


def pixels_around(image, x: int, y: int, radius: int = 1):
    return [image.getpixel((x + dx, y + dy))
            for dx in range(-radius, radius + 1) for dy in range(-radius, radius + 1)]


def test_png_is_valid_with_the_expected_size():
    start = END - dt.timedelta(hours=24)
    points = [round_at(i, start) for i in range(288)]
    for count in (1, 2, 3, 5):
        series = [Series(f"t{n}", points, reference=n > 0) for n in range(count)]
        png = render_graph(series, start=start, end=END, timezone=TZ, title="x")
        image = Image.open(io.BytesIO(png))
        image.verify()
        assert image.format == "PNG"
        assert image.size == graph_size(count)
    assert graph_size(1) == (800, 400)


def test_rendering_is_deterministic():
    start = END - dt.timedelta(hours=3)
    series = [Series("192.0.2.1", [round_at(i, start, rtts=[10, 20, 30]) for i in range(36)])]
    first = render_graph(series, start=start, end=END, timezone=TZ, title="x")
    again = render_graph(series, start=start, end=END, timezone=TZ, title="x")
    assert first == again


def test_median_colour_changes_where_loss_was_injected():
    start = END - dt.timedelta(hours=24)
    lossy = range(120, 160)  # 10 of 20 lost
    dead = range(200, 210)  # everything lost
    points = []
    for i in range(288):
        lost = 10 if i in lossy else 20 if i in dead else 0
        points.append(round_at(i, start, lost=lost))
    fig, image = draw([Series("192.0.2.1", points)])
    ax = fig.axes[0]
    colours = {}
    for i in range(2, 286, 3):
        x, y = to_pixel(fig, ax, start + STEP * i, 20.0)
        colours[i] = pixels_around(image, x, y)
    for i, around in colours.items():
        if i in lossy and i - 1 in lossy and i + 1 in lossy:
            assert any(near(p, HALF_LOST) for p in around), (i, around)
            assert not any(near(p, GREEN) for p in around), (i, around)
        elif i in dead:
            # No median at all where nothing answered.
            assert not any(near(p, GREEN) or near(p, HALF_LOST) for p in around), i
        elif all(j not in lossy and j not in dead for j in (i - 1, i, i + 1)):
            assert any(near(p, GREEN) for p in around), (i, around)
            assert not any(near(p, HALF_LOST) for p in around), (i, around)

    # The rounds that lost everything: a red mark at the top, and only there.
    top = round(fig.bbox.height - ax.transAxes.transform((0, 0.97))[1])
    for i in range(2, 286, 3):
        x, _ = to_pixel(fig, ax, start + STEP * i, 0)
        red = near(image.getpixel((x, top)), RED)
        if i in dead and i - 1 in dead and i + 1 in dead:
            assert red, i
        elif not any(j in dead for j in (i - 1, i, i + 1)):
            assert not red, i


def test_smoke_shows_where_rtts_vary():
    start = END - dt.timedelta(hours=24)
    spread = [10.0 + k for k in range(20)]  # 10..29 ms, median 19.5
    points = [round_at(i, start, rtts=[19.5] * 20 if i < 144 else spread)
              for i in range(288)]
    fig, image = draw([Series("192.0.2.1", points)])
    ax = fig.axes[0]

    def grey_pixels(rounds) -> int:
        count = 0
        for i in rounds:
            x, y_top = to_pixel(fig, ax, start + STEP * i, 27.0)
            _, y_bottom = to_pixel(fig, ax, start + STEP * i, 12.0)
            _, y_median = to_pixel(fig, ax, start + STEP * i, 19.5)
            for y in range(y_top, y_bottom + 1):
                if abs(y - y_median) > 3 and is_grey(image.getpixel((x, y))):
                    count += 1
        return count

    steady, varying = grey_pixels(range(10, 134, 4)), grey_pixels(range(154, 278, 4))
    assert steady == 0
    assert varying > 200  # 31 columns × ~40 px of smoke each, minus the median line
    # Darker towards the median: the inner bands are the darkest grey.
    x, y_median = to_pixel(fig, ax, start + STEP * 200, 19.5)
    _, y_outer = to_pixel(fig, ax, start + STEP * 200, 11.0)
    inner, outer = image.getpixel((x, y_median - 5)), image.getpixel((x, y_outer))
    assert is_grey(inner) and is_grey(outer) and inner[0] < outer[0]


def test_a_gap_in_probing_stays_empty():
    start = END - dt.timedelta(hours=24)
    spread = [10.0 + k for k in range(20)]
    points = [round_at(i, start, rtts=spread) for i in range(288) if not 100 <= i < 140]
    fig, image = draw([Series("192.0.2.1", points)])
    ax = fig.axes[0]
    for i in range(104, 136, 4):
        x, y_top = to_pixel(fig, ax, start + STEP * i, 29.0)
        _, y_bottom = to_pixel(fig, ax, start + STEP * i, 10.0)
        column = [image.getpixel((x, y)) for y in range(y_top, y_bottom + 1)]
        assert not any(is_grey(p) or near(p, GREEN) for p in column), i
    x, y = to_pixel(fig, ax, start + STEP * 90, 19.5)
    assert any(near(p, GREEN) for p in pixels_around(image, x, y))


def test_a_week_keeps_a_single_dead_round_visible():
    """Seven days are consolidated into columns; one round that lost everything still
    shows its red mark, and its column's median line shows the loss."""
    start = END - dt.timedelta(days=7)
    dead = 1000
    points = [round_at(i, start, lost=20 if i == dead else 0) for i in range(2016)]
    fig, image = draw([Series("192.0.2.1", points)], hours=168)
    ax = fig.axes[0]
    top = round(fig.bbox.height - ax.transAxes.transform((0, 0.97))[1])
    x, y = to_pixel(fig, ax, start + STEP * dead, 20.0)
    assert near(image.getpixel((x, top)), RED)
    assert not any(near(p, GREEN) for p in pixels_around(image, x, y, 0))
    far, _ = to_pixel(fig, ax, start + STEP * (dead + 200), 20.0)
    assert not near(image.getpixel((far, top)), RED)
    assert any(near(p, GREEN) for p in pixels_around(image, far, y))


def test_blank_input_gives_a_no_data_image():
    start = END - dt.timedelta(hours=24)
    blank = render_graph([Series("192.0.2.1", [])], start=start, end=END, timezone=TZ,
                         title="x", labels=GraphLabels(no_data="Sense dades"))
    nothing = render_graph([], start=start, end=END, timezone=TZ, title="x")
    for png in (blank, nothing):
        image = Image.open(io.BytesIO(png)).convert("RGB")
        assert image.size == (800, 400)
        # The message is written in the middle: dark text pixels there.
        middle = image.crop((250, 150, 550, 250))
        assert (np.asarray(middle).max(axis=2) < 120).any()
    # One target without rounds beside one with rounds: that panel says so.
    with_data = Series("gw", [round_at(i, start) for i in range(288)], reference=True)
    png = render_graph([Series("192.0.2.1", []), with_data], start=start, end=END,
                       timezone=TZ, title="x")
    assert Image.open(io.BytesIO(png)).size == graph_size(2)


@pytest.mark.parametrize(("hours", "every"), [(3, 30), (24, 180), (168, 1440)])
def test_time_axis_in_the_given_timezone(hours, every):
    start = END - dt.timedelta(hours=hours)
    series = [Series("192.0.2.1", [round_at(i, start) for i in range(hours * 12)])]
    india = ZoneInfo("Asia/Kolkata")  # UTC+5:30: local round hours are never UTC's
    fig = build_figure(series, start=start, end=END, timezone=india, title="x")
    figure_png(fig)
    ax = fig.axes[0]
    ticks = [mdates.num2date(t, tz=india) for t in ax.get_xticks()
             if mdates.date2num(start) <= t <= mdates.date2num(END)]
    assert 3 <= len(ticks) <= 12
    for tick in ticks:
        assert (tick.hour * 60 + tick.minute) % every == 0, tick
        assert tick.astimezone(dt.UTC).minute == 30 or every == 30
    labels = [label.get_text() for label in ax.get_xticklabels() if label.get_text()]
    if hours == 168:
        assert all("/" in text for text in labels)  # dd/mm
    else:
        assert any(":" in text for text in labels)  # HH:MM


def test_y_axis_starts_at_zero_in_ms():
    start = END - dt.timedelta(hours=3)
    series = [Series("192.0.2.1", [round_at(i, start, rtts=[200, 210, 220]) for i in range(36)])]
    fig, _ = draw(series, hours=3, labels=GraphLabels(rtt_axis="RTT (ms)"))
    ax = fig.axes[0]
    assert ax.get_ylim()[0] == 0
    assert 210 < ax.get_ylim()[1] < 400
    assert ax.get_ylabel() == "RTT (ms)"


def test_loss_scale_follows_smokeping_for_20_pings():
    expected = {0: 0, 1: 1, 2: 1, 3: 2, 5: 2, 6: 3, 10: 3, 11: 4, 19: 4, 20: 5}
    for lost, index in expected.items():
        assert loss_colour(lost / 20) == LOSS_SCALE[index][1], lost


def test_latest_figures():
    start = END - dt.timedelta(hours=1)
    assert latest_figures([]) == {"at": None, "loss_percent": None, "median_ms": None,
                                  "last_answer_at": None, "rounds": 0}
    points = [round_at(0, start, rtts=[30, 10, 20]),  # 17 of 20 lost
              round_at(1, start, rtts=[5.0, 7.0, 6.0, 8.0]),
              round_at(2, start, lost=20)]
    figures = latest_figures(list(reversed(points)))
    assert figures == {"at": start + 2 * STEP, "loss_percent": 100.0, "median_ms": None,
                       "last_answer_at": start + STEP, "rounds": 3}
    assert latest_figures(points[:2])["median_ms"] == 6.5
    assert latest_figures(points[:2])["loss_percent"] == 80.0
    assert points[0].rtts == (10, 20, 30)
    with pytest.raises(ValueError):
        Point(dt.datetime(2026, 1, 1), 20, 20, ())


def test_a_week_of_rounds_for_three_targets_renders_in_bounded_time():
    """Timing and memory are printed for the report, not asserted (shared CI box)."""
    start = END - dt.timedelta(days=7)
    series = []
    for n in range(3):
        points = [round_at(i, start, rtts=sorted(10 + n + ((i * 31 + k * 17) % 13)
                                                 for k in range(20 - (i * 7 + n) % 23 % 4)))
                  for i in range(2016)]
        series.append(Series(f"target{n}", points, reference=n > 0))
    render_graph(series[:1], start=start, end=END, timezone=TZ, title="warm-up")
    began, began_cpu = time.perf_counter(), time.process_time()
    png = render_graph(series, start=start, end=END, timezone=TZ, title="7d × 3")
    elapsed, cpu = time.perf_counter() - began, time.process_time() - began_cpu
    tracemalloc.start()  # a second run for memory: tracing slows Python down a lot
    render_graph(series, start=start, end=END, timezone=TZ, title="7d × 3")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"\n7 days × 3 series (2016 rounds each): {elapsed:.2f} s wall, {cpu:.2f} s CPU, "
          f"peak Python memory {peak / 1e6:.1f} MB, PNG {len(png) / 1e3:.0f} kB")
    assert Image.open(io.BytesIO(png)).size == graph_size(3)
