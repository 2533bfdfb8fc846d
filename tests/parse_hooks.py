"""Parsers for the sandbox tests, loaded by name in the parsing workers ("parse_hooks:NAME").

Each behaves like the real parser except on a marker in the raw bytes: SLOW-PARSE spins past any
time limit, HOG-PARSE allocates until the memory limit stops it, CRASH-PARSE kills its own
process. Spinning (not sleeping) holds the CPU the way a runaway regex does.
"""

from __future__ import annotations

import os
import signal
import time

from exobot.mail.parse import ParsedMail, parse_mail


def hostile(raw: bytes) -> ParsedMail:
    """parse_mail, unless a marker asks for a runaway."""
    if b"SLOW-PARSE" in raw:
        deadline = time.monotonic() + 3600
        while time.monotonic() < deadline:
            pass
    if b"HOG-PARSE" in raw:
        hog = []
        while True:
            # bytes(n) is calloc'ed: the address space fills at once, without touching
            # every page, so the memory limit stops it long before the time limit even
            # on a busy machine (bytearray(n) zero-fills page by page).
            hog.append(bytes(64 * 1024 * 1024))
    if b"CRASH-PARSE" in raw:
        os.kill(os.getpid(), signal.SIGSEGV)
    return parse_mail(raw)


def buggy(raw: bytes) -> ParsedMail:
    """parse_mail with a bug that mails carrying X-Trigger-Parser-Bug run into."""
    if b"X-Trigger-Parser-Bug" in raw:
        raise RuntimeError("simulated parser bug")
    return parse_mail(raw)
