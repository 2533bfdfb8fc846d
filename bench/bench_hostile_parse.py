"""Time parse_mail on hostile inputs at sizes n, 2n and 4n, to show each grows linearly.

Run: .venv/bin/python bench/bench_hostile_parse.py [--scale N]. For every kind of input it
prints the input size, the parse time and the growth factor from the previous size (about
2 when linear, about 4 when quadratic), and the body length kept. Figures only; the tests
check structure, never time.
"""

from __future__ import annotations

import argparse
import base64
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from exobot.mail.parse import parse_mail  # noqa: E402


def mail(ctype: str, body: bytes, headers: bytes = b"") -> bytes:
    """A single-part mail."""
    return (
        b"From: a@example.org\r\nSubject: x\r\n"
        + headers
        + b"Content-Type: "
        + ctype.encode()
        + b"\r\n\r\n"
        + body
    )


def parts(n: int) -> bytes:
    """n tiny text parts in one multipart/mixed."""
    body = b"".join(b"--b\r\nContent-Type: text/plain\r\n\r\nx\r\n" for _ in range(n))
    return mail('multipart/mixed; boundary="b"', body + b"--b--\r\n")


def nested(n: int) -> bytes:
    """Multiparts nested n deep (the stdlib parser falls back to headers only when too deep)."""
    head = b"".join(
        b'--b%d\r\nContent-Type: multipart/mixed; boundary="b%d"\r\n\r\n' % (i, i + 1)
        for i in range(n)
    )
    return mail(
        'multipart/mixed; boundary="b0"',
        head + b"--b%d\r\nContent-Type: text/plain\r\n\r\nx\r\n" % n,
    )


# name -> (input for size n, base n)
CASES: dict[str, tuple[Callable[[int], bytes], int]] = {
    "nested <ul><li>": (lambda n: mail("text/html", b"<ul><li>" * n), 2_000),
    "nested <ol><li>": (lambda n: mail("text/html", b"<ol><li>" * n), 2_000),
    "<pre> of spaces": (lambda n: mail("text/html", b"<pre>" + b" " * n + b"x</pre>"), 40_000),
    "newline run in HTML": (lambda n: mail("text/html", b"a" + b"\n" * n + b"b"), 50_000),
    "millions of '<'": (lambda n: mail("text/html", b"<" * n), 1_000_000),
    "unclosed tags": (lambda n: mail("text/html", b"<a href='" * (n // 9)), 1_000_000),
    "unclosed comments": (lambda n: mail("text/html", b"<!--" * (n // 4)), 1_000_000),
    "zero-padded charrefs": (
        lambda n: mail("text/html", (b"&#" + b"0" * 4400 + b"65;") * (n // 4405)),
        250_000,
    ),
    "many links": (
        lambda n: mail("text/html", b"".join(b"<a href=%d>x</a>" % i for i in range(n))),
        8_000,
    ),
    "one huge line": (lambda n: mail("text/plain", b"a" * n), 2_000_000),
    "long encoded-word subject": (
        lambda n: mail("text/plain", b"x", b"Subject: " + b"=?utf-8?q?" + b"a" * n + b"?=\r\n"),
        500_000,
    ),
    "unclosed encoded words": (
        lambda n: mail("text/plain", b"x", b"Subject: " + b"=?x?q?a " * (n // 8) + b"\r\n"),
        500_000,
    ),
    "many To addresses": (
        lambda n: mail("text/plain", b"x", b"To: " + b"a@example.org, " * (n // 15) + b"\r\n"),
        300_000,
    ),
    "tiny parts": (parts, 2_500),
    "deep multipart": (nested, 100),
    "base64 attachment": (
        lambda n: mail(
            "application/octet-stream",
            base64.encodebytes(b"\0" * n),
            b"Content-Transfer-Encoding: base64\r\n",
        ),
        4_000_000,
    ),
}


def main() -> None:
    """Print one line per case."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every base size")
    args = parser.parse_args()
    print(f"{'input':28} {'n':>10} {'bytes':>10} {'seconds':>8} {'growth':>7} {'body':>8}")
    for name, (build, base) in CASES.items():
        previous = None
        for factor in (1, 2, 4):
            raw = build(int(base * args.scale * factor))
            started = time.perf_counter()
            parsed = parse_mail(raw)
            elapsed = time.perf_counter() - started
            growth = f"{elapsed / previous:.1f}x" if previous else ""
            previous = max(elapsed, 1e-6)
            n = int(base * args.scale * factor)
            print(
                f"{name:28} {n:>10} {len(raw):>10} {elapsed:>8.3f} {growth:>7} {len(parsed.body):>8}"
            )


if __name__ == "__main__":
    main()
