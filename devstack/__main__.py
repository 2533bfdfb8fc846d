"""`python -m devstack install|start|stop|status`."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from devstack.install import install_all
from devstack.procs import StackError
from devstack.stack import DEFAULT_BASE_PORT, STACK_FILE, Stack


def _cmd_install(args: argparse.Namespace) -> int:
    install_all()
    return 0


def _cmd_start(args: argparse.Namespace) -> int:
    started = time.monotonic()
    try:
        stack = Stack.start(
            args.dir,
            base_port=args.base_port,
            synapse=not args.no_synapse,
            postgres=args.postgres,
        )
    except StackError as exc:
        print(f"devstack: start failed: {exc}", file=sys.stderr)
        return 1
    print(f"stack started in {time.monotonic() - started:.1f}s")
    print((stack.dir / STACK_FILE).read_text(), end="")
    return 0


def _load(directory: Path) -> Stack | None:
    try:
        return Stack.load(directory)
    except FileNotFoundError:
        print(f"devstack: no {STACK_FILE} in {directory}", file=sys.stderr)
        return None


def _cmd_stop(args: argparse.Namespace) -> int:
    stack = _load(args.dir)
    if stack is None:
        return 1
    stack.stop()
    print("stopped")
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    stack = _load(args.dir)
    if stack is None:
        return 1
    status = stack.status()
    print(
        json.dumps(
            {"running": stack.is_running(), "services": status, "pids": stack.pids}, indent=2
        )
    )
    return 0 if stack.is_running() else 3


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run the sub-command; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m devstack", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser(
        "install",
        help="install Dovecot, PostgreSQL, fping, Chromium (apt), SmokePing (unpacked, for "
        "its --check) and Synapse (own venv)",
    )
    start = commands.add_parser("start", help="write configs under DIR and start the servers")
    start.add_argument(
        "--base-port",
        type=int,
        default=DEFAULT_BASE_PORT,
        help="IMAP=N+143 LMTP=N+24 SMTP=N+25 Synapse=N+8008 PostgreSQL=N+432 (default %(default)s)",
    )
    start.add_argument("--no-synapse", action="store_true", help="without Synapse")
    start.add_argument(
        "--postgres",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="a private PostgreSQL cluster in DIR/postgres (default: on; the Python API "
        "Stack.start defaults to off)",
    )
    for name, text in (
        ("start", None),
        ("stop", "stop the servers of DIR"),
        ("status", "show whether the servers of DIR run"),
    ):
        sub = start if name == "start" else commands.add_parser(name, help=text)
        sub.add_argument("--dir", type=Path, required=True, help="stack directory")
    args = parser.parse_args(argv)
    handlers = {
        "install": _cmd_install,
        "start": _cmd_start,
        "stop": _cmd_stop,
        "status": _cmd_status,
    }
    return handlers[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
