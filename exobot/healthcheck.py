"""`exobot healthcheck` (or `python -m exobot.healthcheck URL`): GET /healthz and exit 0 when
it answers 200, 1 otherwise, with one line saying why. A container's HEALTHCHECK runs it."""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence

from exobot.config import Config

TIMEOUT_SECONDS = 5.0
MAX_BODY = 64 * 1024
# Where a server listening on every address is reached from the same host.
_ANY = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


def healthz_url(config: Config) -> str:
    """The /healthz address of the web server that `config` describes."""
    host = _ANY.get(config.web.host, config.web.host)
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{config.web.port}/healthz"


def check(url: str, timeout: float = TIMEOUT_SECONDS) -> int:
    """0 when `url` answers 200, else 1; prints the status and the components not ok."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - our URL
            status, body = response.status, response.read(MAX_BODY)
    except urllib.error.HTTPError as error:
        status, body = error.code, error.read(MAX_BODY)
    except (OSError, ValueError) as error:  # refused, timed out, a bad URL
        print(f"unhealthy: {url}: {getattr(error, 'reason', error)}", file=sys.stderr)
        return 1
    problems = _problems(body)
    if status == 200:
        print("healthy" + (f" ({problems})" if problems else ""))
        return 0
    print(f"unhealthy: HTTP {status}" + (f": {problems}" if problems else ""), file=sys.stderr)
    return 1


def _problems(body: bytes) -> str:
    try:
        components = json.loads(body)["components"]
        return ", ".join(
            f"{name} {part.get('state')}" + (" (stalled)" if part.get("stalled") else "")
            for name, part in components.items()
            if part.get("state") == "failing"
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        return ""


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m exobot.healthcheck URL`."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m exobot.healthcheck http://HOST:PORT/healthz", file=sys.stderr)
        return 1
    return check(args[0])


if __name__ == "__main__":
    raise SystemExit(main())
