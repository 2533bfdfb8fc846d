"""Sensitive values never reach the log: exobot's handler masks the formatted message and the
traceback of every record (issue 13)."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import logging
from exobot.cli import setup_logging
setup_logging("INFO")
log = logging.getLogger("exobot.mail.processor")
log.info("mail %s subject %r", 7, "Compte ES91 2100 0418 4502 0005 1332")
log.warning("other: dni 12345678Z, targeta 4111111111111111, clau: gat-negre-7")
try:
    raise ValueError("rules failed on ES9121000418450200051332")
except ValueError:
    log.exception("stored mail %s", 7)
logging.getLogger("aiosmtplib").warning("not ours either: %s", "X1234567L")
log.info("x" * 20000 + " ES9121000418450200051332")
"""


def test_log_lines_show_sensitive_values_masked():
    run = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120, check=True
    )
    out = run.stderr
    for value in ("0418", "12345678Z", "4111111111111111", "gat-negre-7", "X1234567L"):
        assert value not in out, value
    lines = out.splitlines()
    assert lines[0].endswith("mail 7 subject 'Compte ES91 **** **** **** **** 1332'")
    assert lines[1].endswith("other: dni ****678Z, targeta **** **** **** 1111, clau: ********")
    assert lines[2].endswith("stored mail 7")
    assert lines[-3] == "ValueError: rules failed on ES91 **** **** **** **** 1332"
    assert lines[-2].endswith("not ours either: ****567L")
    # A huge message is cut (bounded work on the loop).
    assert lines[-1].endswith("xxx… [3641 characters cut]") and len(lines[-1]) < 17000
