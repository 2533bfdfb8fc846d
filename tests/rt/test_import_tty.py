"""What an administrator sees of `exobot import rt` in a terminal: run for real through a
pseudo-terminal against the seeded RT 5, the import draws a progress bar redrawn in place
(tickets done, rate, time left) that ends on a line of its own, followed by the final report;
the dry run says that it wrote nothing and names every check, "none" included. The assertions
are on what is drawn, never on how fast."""

from __future__ import annotations

import io
import os
import pty
import re
import subprocess
import sys
import time
from pathlib import Path

from test_import_rt import import_argv, write_config

from exobot.importer.runner import Progress

ROOT = Path(__file__).resolve().parents[2]
DEADLINE = 300.0  # a bound on the whole run, never a pause


def run_in_pty(argv: list[str]) -> tuple[int, str]:
    """Run `exobot …argv` with stdin, stdout and stderr on a pseudo-terminal; returns its
    exit code and everything the terminal received (bounded by DEADLINE)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "exobot.cli", *argv],
        stdin=slave, stdout=slave, stderr=slave, cwd=ROOT, close_fds=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "120"},
    )  # fmt: skip
    os.close(slave)
    received = bytearray()
    deadline = time.monotonic() + DEADLINE
    try:
        while time.monotonic() < deadline:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            received += chunk
        code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    return code, received.decode("utf-8", errors="replace")


def test_the_import_draws_a_bar_in_place_then_the_report(rt5, tmp_path):
    config = write_config(tmp_path)
    expected = len(rt5.seeded.tickets) - len(rt5.seeded.merged) - len(rt5.seeded.deleted)
    code, screen = run_in_pty(import_argv(rt5, config))
    assert code == 0, screen

    # The bar is redrawn with carriage returns: from 0 of N to N of N, with rate and time left.
    draws = re.findall(r"\rimporting \[([#-]{30})\] (\d+)/(\d+) tickets, ([^\r\n]*)", screen)
    assert draws, screen
    assert [int(d[1]) for d in draws] == list(range(expected + 1)), screen
    assert all(int(d[2]) == expected for d in draws)
    assert draws[0][0] == "-" * 30 and draws[-1][0] == "#" * 30
    assert "estimating the time left" in draws[0][3]
    assert all(re.search(r"[\d.]+ tickets/s, about \S+ left", d[3]) for d in draws[1:-1]), draws
    assert draws[-1][3].strip().startswith("done in ")
    # Each draw blanks what a longer earlier one would leave behind.
    drawn = [len(m) for m in re.findall(r"\r(importing [^\r\n]*)", screen)]
    assert all(b >= a for a, b in zip(drawn, drawn[1:], strict=False)), drawn

    # The bar ends its own line; the report follows, one fact per line, and ends the output.
    after = screen[screen.rindex("\rimporting [") :].split("\n", 1)[1]
    report = [line.rstrip("\r") for line in after.strip().split("\n")]
    assert report[0] == f"Request Tracker, REST 2: {expected} tickets listed, {expected} to import"
    assert report[1].startswith(f"imported: {expected} new, 0 updated, 0 unchanged; ")
    assert f"new tickets here start at {max(rt5.seeded.tickets) + 1}" in report
    assert "unknown owners: none" in report and "unmapped RT queues: none" in report
    assert "attachments too big: none" in report
    assert "skipped: 1 deleted (#5)" in report
    assert report[-1] == "attachments too big: none"
    assert "\r" not in after.strip().replace("\r\n", "\n")  # nothing redrawn over the report


def test_the_dry_run_says_it_wrote_nothing_and_names_every_check(rt5, tmp_path):
    config = write_config(tmp_path)
    code, screen = run_in_pty(import_argv(rt5, config, "--dry-run"))
    assert code == 0, screen
    lines = [line.rstrip("\r") for line in screen.strip().split("\n")]
    assert "importing [" not in screen  # no bar: nothing is imported
    start = lines.index("DRY RUN: nothing was written. Without --dry-run the import would do this:")
    report = lines[start:]
    assert report[2].startswith("  per queue: Altes→altes")
    for check in ("collisions: none", "unmapped RT queues: none", "unknown owners: none"):
        assert check in report, report
    assert not any(line.startswith("imported:") for line in report)


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_bar_ends_its_line_when_the_import_stops_half_way():
    terminal = _Terminal()
    bar = Progress(10, terminal)
    bar.step(0, force=True)
    bar.step(3)
    bar.close()  # as run_import does when a ticket fails
    bar.close()
    text = terminal.getvalue()
    assert text.count("\n") == 1 and text.endswith("\n")
    assert "\rimporting [#########---------------------] 3/10 tickets" in text


def test_off_a_terminal_the_progress_is_plain_lines():
    log = io.StringIO()
    bar = Progress(2, log)
    bar.step(0, force=True)
    bar.step(2, force=True)
    bar.close()
    lines = log.getvalue().split("\n")
    assert "\r" not in log.getvalue()
    assert lines[0].startswith("importing [") and lines[1].endswith("2/2 tickets, done in <1s")


def test_a_line_shorter_twice_in_a_row_is_padded_to_the_longest_drawn(monkeypatch):
    # The time left shrinks over two draws (as in one CI run, where it made
    # test_the_import_draws_a_bar_in_place_then_the_report fail): every draw must cover the
    # longest line, so the written lengths never go down.
    clock = iter([0.0, 10.0, 10.1, 10.2])
    monkeypatch.setattr("exobot.importer.runner.time.monotonic", lambda: next(clock))
    terminal = _Terminal()
    bar = Progress(1000, terminal)
    for done in (100, 200, 900):  # about 1m30s, 40s, then 1s left
        bar.step(done)
    draws = terminal.getvalue().split("\r")[1:]
    drawn = [len(draw) for draw in draws]
    lines = [draw.rstrip() for draw in draws]
    assert len(lines[0]) > len(lines[1]) > len(lines[2]), lines  # the case itself
    assert all(b >= a for a, b in zip(drawn, drawn[1:], strict=False)), drawn
