"""The `exobot` command: run, check-config, migrate, quarantine, token."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence

from exobot.config import Config, ConfigError, load_config

DEFAULT_CONFIG = os.environ.get("EXOBOT_CONFIG", "config.yaml")


def setup_logging(level: str = "INFO") -> None:
    """Log lines that name their component (the logger name)."""
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for chatty in ("aioimaplib", "nio", "peewee", "apscheduler"):
        logging.getLogger(chatty).setLevel(logging.WARNING)


def _load(path: str) -> Config:
    try:
        return load_config(path)
    except ConfigError as error:
        for problem in error.problems:
            print(f"{path}: {problem}", file=sys.stderr)
        raise SystemExit(2) from None


def cmd_check_config(args: argparse.Namespace) -> int:
    """Print OK, or one line per problem."""
    _load(args.config)
    print("OK")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """Run exobot until SIGTERM/SIGINT."""
    from exobot.app import App
    from exobot.web.server import WebListenError

    config = _load(args.config)
    setup_logging(config.logging.level)
    try:
        return asyncio.run(App(config).run_until_signal())
    except WebListenError as error:
        print(error, file=sys.stderr)
        return 1


def cmd_migrate(args: argparse.Namespace) -> int:
    """Apply the database migrations."""
    from exobot.db.migrate import upgrade

    config = _load(args.config)
    upgrade(config.database.url)
    print("database is up to date")
    return 0


def cmd_quarantine(args: argparse.Namespace) -> int:
    """List, show, retry or discard mails that could not be processed."""
    from exobot.quarantine import run_quarantine

    config = _load(args.config)
    setup_logging("WARNING")
    return asyncio.run(run_quarantine(config, args.action, args.id))


def cmd_token(args: argparse.Namespace) -> int:
    """Create (printed once), revoke or list the API's bearer tokens."""
    from exobot.tokens import run_token

    config = _load(args.config)
    setup_logging("WARNING")
    return asyncio.run(run_token(config, args.action, args.name, args.user))


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the `exobot` command."""
    parser = argparse.ArgumentParser(prog="exobot", description="eXO's helpdesk bot")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, func, help_text: str) -> argparse.ArgumentParser:  # noqa: ANN001
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("-c", "--config", default=DEFAULT_CONFIG, help="configuration file")
        p.set_defaults(func=func)
        return p

    add("run", cmd_run, "run exobot (mail intake, processing, outbox)")
    add("check-config", cmd_check_config, "validate a configuration file")
    add("migrate", cmd_migrate, "apply database migrations")
    q = add("quarantine", cmd_quarantine, "mails that could not be processed")
    q.add_argument("action", choices=["list", "show", "retry", "discard"])
    q.add_argument("id", nargs="?", type=int, help="the stored mail's id (show, retry, discard)")
    t = add("token", cmd_token, "API bearer tokens: create, revoke, list")
    t.add_argument("action", choices=["create", "revoke", "list"])
    t.add_argument("name", nargs="?", help="the token's name (create, revoke)")
    t.add_argument("--user", help="create: the operator it acts as, @name:server")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
