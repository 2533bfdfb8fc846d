"""SmokePing-style latency graphs as PNG images (matplotlib, Agg backend).

Each series (the member's target first, then the reference targets) gets its own
panel, stacked vertically over one shared time axis:

- the spread of each round's RTTs is grey "smoke": the sorted RTTs are drawn as
  nested bands between percentiles, darker towards the median, exactly the picture
  SmokePing draws;
- the median RTT is a line whose colour says how many pings of that round were lost
  (SmokePing's fixed scale, expressed as fractions of the burst);
- a round that lost everything has no median: it is a red mark at the top.

Separate panels rather than one axes with several styles: the line's colour already
carries the loss, so a second styling dimension (dashes, hues per target) would fight
with it, and overlapping smoke from several targets becomes unreadable. Each panel
keeps its own y scale (always from 0), so a 2 ms reference is not flattened by a
member's 200 ms link; the panel title states the figures for comparison.

Everything is drawn on a bare ``Figure`` with ``FigureCanvasAgg``: no pyplot, no
global state, no display, safe to call from worker threads. The size and DPI are
fixed, so the same input always gives the same pixels.
"""

from __future__ import annotations

import datetime as dt
import io
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

# matplotlib and numpy are imported by the drawing functions, on the first graph, not with
# the plugin: together about 40 MB that a running exobot does not need until someone looks
# at a graph.
if TYPE_CHECKING:
    import numpy as np
    from matplotlib.figure import Figure

__all__ = [
    "LOSS_SCALE",
    "GraphLabels",
    "Point",
    "Series",
    "build_figure",
    "figure_png",
    "graph_size",
    "latest_figures",
    "loss_colour",
    "render_graph",
]

DPI = 100
WIDTH_PX = 800
# Height: 400 px for one or two panels, then 110 px more per extra panel, so that
# each panel keeps room for its ticks however many references are configured.
BASE_HEIGHT_PX = 400
EXTRA_PANEL_PX = 110

# SmokePing's loss scale for 20 pings (0, 1-2, 3-5, 6-10, 11-19, 20 lost) as
# fractions of the burst, with SmokePing's own colours. Each entry: the upper bound
# of the lost fraction (inclusive), the colour, the legend text.
LOSS_SCALE: tuple[tuple[float, str, str], ...] = (
    (0.0, "#26ff00", "0 %"),
    (0.10, "#00b8ff", "≤ 10 %"),
    (0.25, "#0059ff", "≤ 25 %"),
    (0.50, "#7e00ff", "≤ 50 %"),
    (0.999999, "#dd00ff", "< 100 %"),
    (1.0, "#ff0000", "100 %"),
)
ALL_LOST_COLOUR = LOSS_SCALE[-1][1]
# Smoke: the outer bands are light, the inner ones darker (SmokePing's look).
SMOKE_BANDS = 10
# At most this many time columns per panel (the plot is ~720 px wide): beyond it
# neighbouring rounds are consolidated, as rrdtool does for SmokePing.
MAX_COLUMNS = 360
GRID_COLOUR = "#e8b0b0"  # rrdtool's reddish grid: never mistaken for smoke


@dataclass(frozen=True)
class Point:
    """One probing round: when, how many pings went out and came back, their RTTs."""

    at: dt.datetime  # aware
    sent: int
    received: int
    rtts: tuple[float, ...] = ()  # sorted, milliseconds, one per answer

    def __post_init__(self) -> None:
        if self.at.tzinfo is None:
            raise ValueError("Point.at must be an aware datetime")
        if self.rtts != tuple(sorted(self.rtts)):
            object.__setattr__(self, "rtts", tuple(sorted(self.rtts)))

    @property
    def loss(self) -> float:
        """Lost fraction of the round, 0..1 (a round that sent nothing counts as lost)."""
        if self.sent <= 0:
            return 1.0
        return max(0.0, min(1.0, (self.sent - self.received) / self.sent))

    @property
    def median(self) -> float | None:
        """Median RTT in ms, or None when nothing answered."""
        return statistics.median(self.rtts) if self.rtts else None


@dataclass(frozen=True)
class Series:
    """The rounds of one target; ``reference`` marks the association's own targets."""

    name: str
    points: Sequence[Point]
    reference: bool = False


@dataclass(frozen=True)
class GraphLabels:
    """Every text the image shows, already translated by the caller.

    The defaults are English, for tests and tools; the plugin passes its catalog's.
    """

    rtt_axis: str = "RTT (ms)"
    loss: str = "loss"
    median: str = "median"
    reference: str = "reference"
    no_data: str = "No data for this period"
    all_lost: str = "all lost"
    decimal_separator: str = "."


def loss_colour(loss: float) -> str:
    """The colour of a round's median line for a lost fraction (0..1)."""
    for bound, colour, _ in LOSS_SCALE:
        if loss <= bound:
            return colour
    return ALL_LOST_COLOUR


def graph_size(series_count: int) -> tuple[int, int]:
    """Width and height in pixels of the image for that many series."""
    extra = max(0, series_count - 2)
    return WIDTH_PX, BASE_HEIGHT_PX + EXTRA_PANEL_PX * extra


def latest_figures(points: Sequence[Point]) -> dict[str, Any]:
    """The figures shown as text next to the image (screen readers, mail).

    Keys: ``at`` (the latest round's time), ``loss_percent`` and ``median_ms`` of
    that round (``median_ms`` None when it lost everything), ``last_answer_at`` (the
    latest round that got any answer) and ``rounds``. All None/0 without rounds.
    """
    ordered = sorted(points, key=lambda p: p.at)
    if not ordered:
        return {"at": None, "loss_percent": None, "median_ms": None,
                "last_answer_at": None, "rounds": 0}
    last = ordered[-1]
    answered = [p for p in ordered if p.received > 0 and p.rtts]
    return {
        "at": last.at,
        "loss_percent": round(last.loss * 100, 1),
        "median_ms": None if last.median is None else round(last.median, 1),
        "last_answer_at": answered[-1].at if answered else None,
        "rounds": len(ordered),
    }


def _number(value: float, labels: GraphLabels) -> str:
    return f"{value:.1f}".replace(".", labels.decimal_separator)


def _step_days(times: np.ndarray) -> float:
    """The probing step, from the data: the median gap between rounds (in days)."""
    import numpy as np
    if len(times) < 2:
        return 5 / (24 * 60)  # the default step, 5 min
    return float(np.median(np.diff(times)))


def _consolidate(points: Sequence[Point], column: float) -> tuple[list[Point], list[bool]]:
    """Merge the rounds falling in each ``column``-wide slot (days, epoch-aligned).

    A merged round sums sent and received and pools the RTTs, so its median and loss
    are those of all its pings. The flags say whether any merged round lost
    everything: that stays visible as a red mark even when its neighbours answered.
    """
    width = dt.timedelta(days=column)
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    merged: dict[int, list[Point]] = {}
    for p in points:
        merged.setdefault((p.at - epoch) // width, []).append(p)
    out: list[Point] = []
    flags: list[bool] = []
    for slot in sorted(merged):
        group = merged[slot]
        rtts = tuple(sorted(r for p in group for r in p.rtts))
        out.append(Point(epoch + width * slot + width / 2, sum(p.sent for p in group),
                         sum(p.received for p in group), rtts))
        flags.append(any(p.loss >= 1.0 for p in group))
    return out, flags


def _configure_time_axis(ax, start: dt.datetime, end: dt.datetime, tz) -> None:
    """Ticks that read well for 3 h, 24 h and 7 d windows, in the given timezone."""
    import matplotlib.dates as mdates
    from matplotlib.ticker import FuncFormatter
    span_h = (end - start).total_seconds() / 3600
    if span_h <= 6:
        major = mdates.MinuteLocator(byminute=(0, 30), tz=tz)
        minor = mdates.MinuteLocator(byminute=range(0, 60, 10), tz=tz)
    elif span_h <= 36:
        major = mdates.HourLocator(byhour=range(0, 24, 3), tz=tz)
        minor = mdates.HourLocator(tz=tz)
    else:
        major = mdates.DayLocator(tz=tz)
        minor = mdates.HourLocator(byhour=range(0, 24, 6), tz=tz)

    def label(value: float, _pos: int) -> str:
        # A day's first tick shows the date (no month or weekday names: those would
        # need translating); the others the hour.
        moment = mdates.num2date(value, tz=tz)
        if span_h > 36 or (moment.hour == 0 and moment.minute == 0):
            return moment.strftime("%d/%m")
        return moment.strftime("%H:%M")

    ax.xaxis.set_major_locator(major)
    ax.xaxis.set_minor_locator(minor)
    ax.xaxis.set_major_formatter(FuncFormatter(label))


def _panel(ax, series: Series, *, step: float, x0: float, x1: float,
           labels: GraphLabels) -> None:
    import matplotlib.dates as mdates
    import numpy as np
    from matplotlib.collections import LineCollection
    from matplotlib.ticker import MaxNLocator

    points = sorted(series.points, key=lambda p: p.at)
    title = series.name + (f" ({labels.reference})" if series.reference else "")
    ax.set_facecolor("white")
    ax.grid(True, which="major", color=GRID_COLOUR, linestyle=":", linewidth=0.8)
    ax.set_axisbelow(True)
    ax.set_xlim(x0, x1)
    ax.yaxis.set_major_locator(MaxNLocator(nbins=4, min_n_ticks=2))
    ax.tick_params(labelsize=8)
    ax.set_ylabel(labels.rtt_axis, fontsize=8)
    if not points:
        ax.set_ylim(0, 1)
        ax.set_yticks([])
        ax.set_title(title, fontsize=9, loc="left")
        ax.text(0.5, 0.5, labels.no_data, transform=ax.transAxes, ha="center",
                va="center", fontsize=10, color="#444444")
        return

    # Summary figures come from the rounds themselves, before any consolidation.
    answered = [p for p in points if p.median is not None]
    sent = sum(p.sent for p in points)
    received = sum(p.received for p in points)

    # Like rrdtool under SmokePing: with more rounds than the panel has room for
    # (a week of 5-minute rounds is ~3 per pixel), merge neighbours into columns.
    column = (x1 - x0) / MAX_COLUMNS
    if column > step * 1.5:
        points, any_lost = _consolidate(points, column)
        step = column
    else:
        any_lost = [p.loss >= 1.0 for p in points]
    times = mdates.date2num([p.at for p in points])
    half = step / 2
    medians = np.array([np.nan if p.median is None else p.median for p in points])
    losses = np.array([p.loss for p in points])

    # Smoke: band k spans the RTTs between the k-th and (1-k)-th quantiles of the
    # round. Rounds are separated by NaN so gaps in probing stay gaps.
    qs = np.linspace(0.0, 0.5, SMOKE_BANDS + 1)[:-1]
    lows = np.full((len(points), len(qs)), np.nan)
    highs = np.full((len(points), len(qs)), np.nan)
    for i, p in enumerate(points):
        if len(p.rtts) >= 2:
            rtts = np.asarray(p.rtts)
            both = np.quantile(rtts, np.concatenate([qs, 1 - qs]))
            lows[i], highs[i] = both[: len(qs)], both[len(qs):]
    # Each round is a box from t-step/2 to t+step/2: two x values per round, and a
    # NaN row after a round whose successor is not adjacent (a gap in probing).
    gap = np.append(np.diff(times) > step * 1.5, False)
    rows = np.repeat(np.arange(len(points)), 2 + gap.astype(int))
    xs = np.column_stack([times - half, times + half]).ravel()
    xs = np.insert(xs, 2 * np.flatnonzero(gap) + 2, np.nan)
    filler = np.zeros(len(rows), dtype=bool)
    filler[np.flatnonzero(gap) * 2 + 2 + np.arange(gap.sum())] = True
    xs = np.where(filler, np.nan, xs) if filler.any() else xs
    for k in range(len(qs)):
        lo = np.where(filler, np.nan, lows[rows, k])
        hi = np.where(filler, np.nan, highs[rows, k])
        shade = 0.82 - 0.42 * k / max(1, len(qs) - 1)  # outer light, inner dark
        ax.fill_between(xs, lo, hi, where=~np.isnan(lo), color=str(shade),
                        linewidth=0, interpolate=False, zorder=1)

    # Median: one short horizontal segment per round, coloured by that round's
    # loss, joined to the next round by a vertical in the next round's colour.
    segments = []
    colours = []
    previous = None
    for t, m, loss in zip(times, medians, losses, strict=True):
        if np.isnan(m):
            previous = None
            continue
        colour = loss_colour(loss)
        if previous is not None and t - half - previous[0] < step * 0.01:
            segments.append([(t - half, previous[1]), (t - half, m)])
            colours.append(colour)
        segments.append([(t - half, m), (t + half, m)])
        colours.append(colour)
        previous = (t + half, m)
    if segments:
        ax.add_collection(LineCollection(segments, colors=colours, linewidths=2.2,
                                         capstyle="butt", zorder=3))

    # Rounds that lost everything: a red mark across the top of the panel.
    lost = times[np.asarray(any_lost, dtype=bool)]
    if len(lost):
        ax.broken_barh([(t - half, step) for t in lost], (0.93, 0.07),
                       transform=ax.get_xaxis_transform(), color=ALL_LOST_COLOUR,
                       zorder=4)

    # y from 0 up to the outer smoke band's 90th percentile, not the absolute
    # maximum: one 3 s outlier must not flatten a day of 20 ms rounds.
    uppers = highs[:, 1] if len(qs) > 1 else highs[:, 0]
    candidates = [v for v in (np.nanmax(medians) if np.any(~np.isnan(medians)) else None,
                              np.nanpercentile(uppers, 95)
                              if np.any(~np.isnan(uppers)) else None)
                  if v is not None and np.isfinite(v)]
    top = max(candidates) * 1.15 if candidates else 1.0
    ax.set_ylim(0, max(top, 1.0))

    summary = []
    if answered:
        summary.append(f"{labels.median} "
                       f"{_number(statistics.median(p.median for p in answered), labels)} ms")
    if sent:
        summary.append(f"{labels.loss} {_number(100 * (sent - received) / sent, labels)} %")
    ax.set_title(title, fontsize=9, loc="left")
    ax.set_title("   ".join(summary), fontsize=8, loc="right", color="#333333")


def build_figure(series: Sequence[Series], *, start: dt.datetime, end: dt.datetime,
                 timezone: dt.tzinfo, title: str,
                 labels: GraphLabels | None = None) -> Figure:
    """The graph as a matplotlib Figure (Agg canvas attached), not yet rendered.

    ``render_graph`` is the usual entry point; tests use the figure's transforms to
    find where a given time and RTT land in the image.
    """
    import matplotlib

    matplotlib.use("Agg")  # headless everywhere, even if pyplot is imported elsewhere
    import matplotlib.dates as mdates
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    labels = labels or GraphLabels()
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("start and end must be aware datetimes")
    width, height = graph_size(len(series))
    fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI, facecolor="white")
    FigureCanvasAgg(fig)
    fig.suptitle(title, fontsize=11, x=0.01, ha="left", y=1 - 8 / height, va="top")
    x0, x1 = mdates.date2num(start), mdates.date2num(end)

    if not any(s.points for s in series):
        # Nothing at all: a clear, honest image instead of empty axes.
        ax = fig.add_axes((0.08, 0.15, 0.88, 0.7))
        ax.set_xlim(x0, x1)
        ax.set_yticks([])
        ax.tick_params(labelsize=8)
        _configure_time_axis(ax, start, end, timezone)
        ax.grid(True, which="major", axis="x", color=GRID_COLOUR, linestyle=":")
        ax.text(0.5, 0.5, labels.no_data, transform=ax.transAxes, ha="center",
                va="center", fontsize=14, color="#444444")
        for name_index, s in enumerate(series):
            ax.text(0.5, 0.38 - 0.07 * name_index, s.name, transform=ax.transAxes,
                    ha="center", va="center", fontsize=9, color="#666666")
        return fig

    step = _step_days(mdates.date2num(sorted(p.at for s in series for p in s.points)))
    if len(series) > 1:
        # Steps are per target; take the smallest positive one seen in any series.
        per_series = [
            _step_days(mdates.date2num(sorted(p.at for p in s.points)))
            for s in series if len(s.points) >= 2
        ]
        if per_series:
            step = min(per_series)

    # Fixed margins in pixels, so the layout never depends on the data.
    top_px, bottom_px, left_px, right_px = 52, 62, 64, 16
    grid = fig.add_gridspec(
        len(series), 1,
        left=left_px / width, right=1 - right_px / width,
        top=1 - top_px / height, bottom=bottom_px / height,
        hspace=0.55,
    )
    axes = []
    for index, s in enumerate(series):
        ax = fig.add_subplot(grid[index, 0], sharex=axes[0] if axes else None)
        _panel(ax, s, step=step, x0=x0, x1=x1, labels=labels)
        _configure_time_axis(ax, start, end, timezone)
        if index < len(series) - 1:
            ax.tick_params(labelbottom=False)
        axes.append(ax)

    handles = [Patch(color=colour, label=text) for _, colour, text in LOSS_SCALE]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8,
               title=labels.loss, title_fontsize=8, frameon=False,
               bbox_to_anchor=(0.5, 0.0), handlelength=1.2, columnspacing=1.2,
               alignment="center")
    return fig


def figure_png(fig: Figure) -> bytes:
    """Render a figure built by ``build_figure`` to PNG bytes (no timestamps)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()


def render_graph(series: Sequence[Series], *, start: dt.datetime, end: dt.datetime,
                 timezone: dt.tzinfo, title: str,
                 labels: GraphLabels | None = None) -> bytes:
    """A SmokePing-style PNG of ``series`` (member's target first) over start..end.

    ``title`` and ``labels`` are shown as given (the caller translates them); the
    time axis is in ``timezone``. The size is ``graph_size(len(series))`` at a fixed
    DPI. With no rounds at all the image says ``labels.no_data``.
    """
    return figure_png(build_figure(series, start=start, end=end, timezone=timezone,
                                   title=title, labels=labels))
