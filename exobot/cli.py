"""The `exobot` command: run, check-config, migrate, quarantine, token, privacy, import, and `exobot NAME …`
for each installed plugin that has a command line."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import stat
import sys
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from exobot.config import Config, ConfigError, DatabaseConfig, load_config
from exobot.core.sensitive import mask_sensitive

DEFAULT_CONFIG = os.environ.get("EXOBOT_CONFIG", "config.yaml")


LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"

# Control characters (C0, DEL, C1) and Unicode's line and paragraph separators, escaped in
# log lines: a newline in a mail subject or a Matrix message would otherwise forge a line.
_ESCAPES = {
    code: f"\\x{code:02x}" for code in (*range(0x20), *range(0x7F, 0xA0)) if code != 0x09
} | {0x0A: "\\n", 0x0D: "\\r", 0x2028: "\\u2028", 0x2029: "\\u2029"}


class OneLineFormatter(logging.Formatter):
    """Every record is one line: control characters in the message (often user input) are
    escaped; the traceback the formatter appends itself keeps its lines."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        """The record's line, with control characters escaped."""
        return super().formatMessage(record).translate(_ESCAPES)


# A log message longer than this is cut before it is masked: the masking pass stays short on
# the event loop, and a log line has no business holding a whole mail.
MAX_LOG_MESSAGE = 16 * 1024


class SensitiveFilter(logging.Filter):
    """Masks sensitive values (IBANs, cards, DNI/NIE, passwords: exobot.core.sensitive) in the
    formatted message and the traceback of every record, whatever logged it: a subject or an
    error quoting mail text reaches the log masked."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Replace the record's message (and traceback text) by its masked form; keep it."""
        if _is_migration_step(record):
            return True  # the code's own words, no one's data
        message = record.getMessage()
        if len(message) > MAX_LOG_MESSAGE:
            cut = len(message) - MAX_LOG_MESSAGE
            message = f"{message[:MAX_LOG_MESSAGE]}… [{cut} characters cut]"
        record.msg, record.args = mask_sensitive(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask_sensitive(record.exc_text[: 4 * MAX_LOG_MESSAGE])
        return True


def _is_migration_step(record: logging.LogRecord) -> bool:
    """Whether the record is Alembic's "Running upgrade 0008 -> 0009, <the migration's name>":
    the first line of a migration's docstring, whose words ("key request hash: …") would
    otherwise read as a credential and be masked."""
    if record.name != "alembic.runtime.migration" or record.msg != "Running %s":
        return False
    from alembic.runtime.migration import MigrationStep  # Alembic logged it: imported

    args = record.args
    # The step itself, not any text given for %s.
    return isinstance(args, tuple) and len(args) == 1 and isinstance(args[0], MigrationStep)


def setup_logging(level: str | int = "INFO") -> None:
    """Log lines that name their component (the logger name), one line per record, with
    sensitive values masked."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(OneLineFormatter(LOG_FORMAT))
    handler.addFilter(SensitiveFilter())
    logging.basicConfig(level=level, handlers=[handler])
    for chatty in ("aioimaplib", "nio", "peewee", "apscheduler"):
        logging.getLogger(chatty).setLevel(logging.WARNING)


# The configuration each file gave this command (for naming its database on an error).
_loaded: dict[str, Config] = {}


def _load(path: str) -> Config:
    try:
        config = _loaded[path] = load_config(path)
        return config
    except ConfigError as error:
        for problem in error.problems:
            # A problem of the file itself names it already ("x.yaml: file not found").
            shown = problem if problem.startswith(f"{path}: ") else f"{path}: {problem}"
            print(shown, file=sys.stderr)
        raise SystemExit(2) from None


_SECRET_KEYS = frozenset({"password", "access_token", "hmac_secret"})


def exposed_secrets_warning(path: str) -> str | None:
    """One line when the configuration file holds a secret (a password, an access token, the
    HMAC secret, a database URL with a password) and users other than its owner may read it
    (group or other permission bits); None otherwise."""
    try:
        mode = os.stat(path).st_mode
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError, yaml.YAMLError):
        return None
    if not mode & 0o077:
        return None
    held = sorted(_secrets_in(data))
    if not held:
        return None
    return (
        f"{path}: warning: other users can read this file (mode {stat.S_IMODE(mode):o}) and it "
        f"holds secrets ({', '.join(held)}): chmod 600 {path}"
    )


def _secrets_in(data: object, where: str = "") -> list[str]:
    found = []
    if isinstance(data, dict):
        for key, value in data.items():
            dotted = f"{where}.{key}" if where else str(key)
            if key in _SECRET_KEYS and value:
                found.append(dotted)
            elif dotted == "database.url" and isinstance(value, str):
                with contextlib.suppress(ValueError):
                    if urlsplit(value).password:
                        found.append(dotted)
            else:
                found.extend(_secrets_in(value, dotted))
    return found


def cmd_check_config(args: argparse.Namespace) -> int:
    """Print OK, or one line per problem (and a warning when secrets are readable by others)."""
    _load(args.config)
    warning = exposed_secrets_warning(args.config)
    if warning:
        print(warning, file=sys.stderr)
    print("OK")
    return 0


def cmd_healthcheck(args: argparse.Namespace) -> int:
    """GET the running exobot's /healthz: exit 0 on 200, 1 otherwise (a container's check)."""
    from exobot.healthcheck import check, healthz_url

    if args.url:
        return check(args.url)
    try:
        config = load_config(args.config)
    except ConfigError as error:
        print(f"unhealthy: {args.config}: {'; '.join(error.problems)}", file=sys.stderr)
        return 1
    if not config.web.enabled:
        print("unhealthy: web.enabled is false, so there is no /healthz", file=sys.stderr)
        return 1
    return check(healthz_url(config))


def cmd_run(args: argparse.Namespace) -> int:
    """Run exobot until SIGTERM/SIGINT."""
    from exobot.app import App
    from exobot.runlock import LockHeld, running_message
    from exobot.web.server import WebListenError

    config = _load(args.config)
    setup_logging(config.logging.level)
    warning = exposed_secrets_warning(args.config)
    if warning:
        logging.getLogger("exobot").warning("%s", warning)
    try:
        return asyncio.run(App(config).run_until_signal())
    except WebListenError as error:
        print(error, file=sys.stderr)
        return 1
    except LockHeld as error:
        print(running_message(error), file=sys.stderr)
        return 1


def cmd_migrate(args: argparse.Namespace) -> int:
    """Apply the database migrations: the core's and each enabled plugin's branch."""
    from exobot.db.migrate import upgrade
    from exobot.plugins import plugin_migrations

    config = _load(args.config)
    upgrade(
        config.database.url,
        plugins=plugin_migrations(config),
        first_number=config.tickets.first_number,
    )
    print("database is up to date")
    return 0


def cmd_quarantine(args: argparse.Namespace) -> int:
    """List, show, retry or discard mails that could not be processed."""
    from exobot.quarantine import run_quarantine

    config = _load(args.config)
    setup_logging("WARNING")
    return asyncio.run(run_quarantine(config, args.action, args.id))


def cmd_outbox(args: argparse.Namespace) -> int:
    """List, show or retry the outbox items given up (mails, chat posts)."""
    from exobot.outbox_admin import run_outbox

    config = _load(args.config)
    setup_logging("WARNING")
    return asyncio.run(run_outbox(config, args.action, args.ids, every=args.all))


def cmd_token(args: argparse.Namespace) -> int:
    """Create (printed once), revoke or list the API's bearer tokens."""
    from exobot.tokens import run_token

    config = _load(args.config)
    setup_logging("WARNING")
    return asyncio.run(run_token(config, args.action, args.name, args.user))


def cmd_privacy(args: argparse.Namespace) -> int:
    """Export or erase everything held about one person (their address)."""
    from exobot.privacy.cli import run_privacy

    config = _load(args.config)
    setup_logging("WARNING")
    return asyncio.run(run_privacy(config, args))


def cmd_import(args: argparse.Namespace) -> int:
    """Import another helpdesk's tickets (Request Tracker) with their numbers and history."""
    from exobot.importer.cli import run_import_cli

    config = _load(args.config)
    setup_logging("WARNING")
    return asyncio.run(run_import_cli(config, args))


def cmd_backup(args: argparse.Namespace) -> int:
    """Copy the database and the Matrix store into a new directory, while exobot runs."""
    from exobot.backup import run_backup

    config = _load(args.config)
    setup_logging("WARNING")
    return run_backup(config, args.directory)


def cmd_restore(args: argparse.Namespace) -> int:
    """Bring a backup back (refused while exobot runs)."""
    from exobot.backup import run_restore

    config = _load(args.config)
    setup_logging("WARNING")
    return run_restore(config, args.directory)


def cmd_db(args: argparse.Namespace) -> int:
    """Database tools: `exobot db copy --to URL [--from URL]`."""
    from exobot.db.copy import CopyError, copy_database
    from exobot.plugins import plugin_migrations

    config = _load(args.config)
    setup_logging("WARNING")
    # The command line's URLs are checked as database.url is (a typo, an unshipped driver):
    # a usage error, like a configuration's problems.
    for option, url in (("--from", args.source), ("--to", args.to)):
        problem = DatabaseConfig.url_problem(url) if url is not None else None
        if problem is not None:
            print(f"exobot db copy: {option}: {problem}", file=sys.stderr)
            return 2
    source = args.source or config.database.url
    try:
        report = copy_database(source, args.to, plugin_migrations(config), progress=print)
    except CopyError as error:
        print(f"exobot db copy: {error}", file=sys.stderr)
        return 1
    for line in report.lines():
        print(line)
    return 0


def cmd_plugin(args: argparse.Namespace) -> int:
    """Run an installed plugin's own command (`exobot NAME …`)."""
    from exobot.plugins.cli import run_plugin_cli

    config = _load(args.config)
    setup_logging("WARNING")
    return asyncio.run(run_plugin_cli(config, args.plugin, args))


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
    h = add(
        "healthcheck",
        cmd_healthcheck,
        "ask the running exobot's /healthz (on web.listen): exit 0 when healthy, 1 otherwise",
    )
    h.add_argument("--url", help="the /healthz URL to ask instead of web.listen's")
    q = add("quarantine", cmd_quarantine, "mails that could not be processed")
    q.add_argument("action", choices=["list", "show", "retry", "discard"])
    q.add_argument("id", nargs="?", type=int, help="the stored mail's id (show, retry, discard)")
    o = add("outbox", cmd_outbox, "mails and chat posts given up: list, show, send again")
    o.add_argument("action", choices=["list", "show", "retry"])
    o.add_argument("ids", nargs="*", type=int, help="the items' ids (show: one; retry: any)")
    o.add_argument("--all", action="store_true", help="retry: every item given up")
    t = add("token", cmd_token, "API bearer tokens: create, revoke, list")
    t.add_argument("action", choices=["create", "revoke", "list"])
    t.add_argument("name", nargs="?", help="the token's name (create, revoke)")
    t.add_argument("--user", help="create: the operator it acts as, @name:server")
    d = add(
        "privacy",
        cmd_privacy,
        "a person's data: export it into a zip archive, or erase it everywhere",
    )
    d.add_argument("action", choices=["export", "erase"])
    d.add_argument("address", help="the person's email address (their other ones are found)")
    d.add_argument("-o", "--output", help="export: the archive to write (default: in this folder)")
    d.add_argument(
        "--dry-run", action="store_true", help="erase: count what would change, change nothing"
    )
    imp = add(
        "import",
        cmd_import,
        "import Request Tracker's tickets with their numbers, history and threading",
    )
    from exobot.importer.cli import add_arguments as add_import_arguments

    add_import_arguments(imp)
    b = add(
        "backup",
        cmd_backup,
        "copy the database and the Matrix store into a new directory (while exobot runs)",
    )
    b.add_argument("directory", help="where to write the backup: a new or empty directory")
    r = add(
        "restore",
        cmd_restore,
        "bring a backup's database and Matrix store back (exobot must be stopped)",
    )
    r.add_argument("directory", help="a directory written by exobot backup")
    db = add("db", cmd_db, "database tools: copy this installation's database into another")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    db_copy = db_sub.add_parser(
        "copy",
        help="copy every table (core and plugins) into another, empty database",
        description="Migrate the target, copy every table of the source (core and enabled"
        " plugins) in batches, check the counts, set the sequences and rebuild the search"
        " index. exobot must be stopped; a target holding tickets is refused.",
    )
    db_copy.add_argument(
        "-c", "--config", default=argparse.SUPPRESS, help="configuration file (plugins, source)"
    )
    db_copy.add_argument(
        "--to", required=True, help="the target's URL, e.g. postgresql+psycopg://user@host/db"
    )
    db_copy.add_argument(
        "--from", dest="source", help="the source's URL (default: the configured database)"
    )
    from exobot.plugins.cli import add_plugin_commands

    add_plugin_commands(sub, DEFAULT_CONFIG, cmd_plugin)
    return parser


def databases_used(args: argparse.Namespace) -> list[tuple[str, str]]:
    """The databases a command uses: what names each one's URL in a message (the setting or
    the option), and the URL. None (an empty list) for the commands that use no database,
    nor when the configuration was not loaded (the command said why already)."""
    if args.func in (cmd_check_config, cmd_healthcheck):
        return []
    path = getattr(args, "config", None)
    config = _loaded.get(path) if path else None
    configured = [(f"{path}: database.url", config.database.url)] if config else []
    if args.func is cmd_db:
        source = [("exobot db copy: --from", args.source)] if args.source else configured
        return [*source, ("exobot db copy: --to", args.to)]
    return configured


def database_problem(error: BaseException, databases: Sequence[tuple[str, str]]) -> str | None:
    """The line that says which of `databases` cannot be reached or used, and why, when
    `error` shows that; None otherwise (the error is the command's own: its traceback is
    kept, for a bug to be found). The URL is shown without its password."""
    from sqlalchemy.engine import make_url

    from exobot.db.unusable import can_open, unusable_cause

    suspects = [
        (name, url, cause)
        for name, url in databases
        # A URL refused as such was never used (check-config, exobot db copy refuse it).
        if DatabaseConfig.url_problem(url) is None
        and (cause := unusable_cause(error, url)) is not None
    ]
    if len(suspects) > 1:  # exobot db copy between two of a kind: the one that does not open
        suspects = [suspect for suspect in suspects if not can_open(suspect[1])] or suspects
    if not suspects:
        return None
    name, url, cause = suspects[0]
    shown = make_url(url).render_as_string(hide_password=True)
    return f"{name}: cannot use the database {shown}: {cause}"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point. A database that cannot be reached or used (a host that does not resolve,
    a server that does not answer, an SQLite path that is a directory or no database) ends
    any command with one line naming its URL's setting and the cause, and exit status 1,
    rather than a traceback: said here once, for every command."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except Exception as error:
        line = database_problem(error, databases_used(args))
        if line is None:
            raise
        print(line, file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
