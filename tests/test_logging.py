"""Log lines cannot be forged: control characters in a message are escaped, while the
traceback the formatter adds keeps its lines (issue 9, section 6)."""

from __future__ import annotations

import logging
import subprocess
import sys

from exobot.cli import OneLineFormatter

SCRIPT = """
import logging
from exobot.cli import setup_logging
setup_logging("INFO")
log = logging.getLogger("exobot.mail")
log.info("mail from %s: %r", "x@example.org\\r\\n2030-01-01 00:00:00 INFO exobot.app: forged", "ok")
try:
    raise ValueError("boom")
except ValueError:
    log.exception("subject %s failed", "a\\nb\\u2028c\\x1b[31m")
"""


def test_a_forged_newline_stays_on_one_line():
    run = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120, check=True
    )
    lines = run.stderr.splitlines()
    assert lines[0].endswith(
        "INFO    exobot.mail: mail from x@example.org\\r\\n2030-01-01 00:00:00 INFO "
        "exobot.app: forged: 'ok'"
    )
    assert not any(line.startswith("2030-01-01") for line in lines)
    assert lines[1].endswith("ERROR   exobot.mail: subject a\\nb\\u2028c\\x1b[31m failed")
    # The traceback follows on its own lines, as Python wrote it.
    assert lines[2] == "Traceback (most recent call last):"
    assert lines[-1] == "ValueError: boom"


def test_the_formatter_escapes_every_control_character_but_tab():
    formatter = OneLineFormatter("%(message)s")
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "a\tb\x00c\x7fd\x85e", None, None)
    assert formatter.format(record) == "a\tb\\x00c\\x7fd\\x85e"
