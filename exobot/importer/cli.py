"""`exobot import rt --url URL --user USER (--password-file F | --token-file F) [--api
auto|1|2] [--queue RTQUEUE=QUEUE …] [--owners FILE] [--since DATE] [--dry-run]`.

Exit status: 0 done (or dry run without collisions), 1 RT unreadable, 2 bad arguments,
3 collisions (nothing written).
"""

from __future__ import annotations

import argparse
import re
import sys
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from exobot.config import Config

MATRIX_ID = re.compile(r"^@[^:\s]{1,255}:[^\s]{1,255}$")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `exobot import rt`."""
    parser.add_argument(
        "system", choices=["rt"], help="the helpdesk to import from (rt: Request Tracker)"
    )
    parser.add_argument(
        "--url", required=True, help="RT's web address, e.g. https://rt.example.org"
    )
    parser.add_argument("--user", required=True, help="an RT user who can see every ticket")
    secret = parser.add_mutually_exclusive_group(required=True)
    secret.add_argument("--password-file", help="a file holding the user's password")
    secret.add_argument("--token-file", help="a file holding an RT auth token (REST 2 only)")
    parser.add_argument(
        "--api",
        choices=["auto", "1", "2"],
        default="auto",
        help="RT's REST API: 2 (RT 5), 1 (REST 1.0, RT 4.4 and 5); auto tries 2, then 1",
    )
    parser.add_argument(
        "--queue",
        action="append",
        default=[],
        metavar="RTQUEUE=QUEUE",
        help="import RT queue RTQUEUE into exobot queue QUEUE (repeatable); an RT queue "
        "named like an exobot queue maps to it; other queues are listed and skipped",
    )
    parser.add_argument("--owners", help="YAML file: RT user name → Matrix id (@user:server)")
    parser.add_argument(
        "--since", help="only tickets updated on or after this date (YYYY-MM-DD[THH:MM], UTC)"
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print what would be imported (counts, unknown owners, collisions); write nothing",
    )
    parser.add_argument(
        "--max-attachment-mb",
        type=_megabytes,
        default=10.0,
        help="attachments above this size are left out and reported (default 10)",
    )
    parser.add_argument(
        "--timezone",
        default="UTC",
        help="RT's $Timezone (e.g. Europe/Madrid): REST 1.0 shows ticket times in it (default UTC)",
    )
    parser.add_argument(
        "--source", help="the name this RT's records are kept under (default: rt:HOST/PATH)"
    )


def source_label(url: str) -> str:
    """The default source name of an RT: its host and path, without scheme or slash."""
    parts = urlsplit(url)
    return f"rt:{parts.netloc}{parts.path.rstrip('/')}"


def _megabytes(text: str) -> float:
    """--max-attachment-mb: a size in megabytes above zero and at most 1024 (nan, inf, 0 or
    -5 would leave every attachment out, or fail half-way)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of megabytes") from None
    if not 0 < value <= 1024:  # False for nan too
        raise argparse.ArgumentTypeError(f"{text!r}: must be above 0 and at most 1024")
    return value


def _read_secret(path: str, what: str) -> str:
    """The secret `what` (password, token) held in the file at `path`, without the spaces and
    line end around it. An empty file is a usage error (exit status 2): sent empty, RT would
    answer much later with an error that does not name the file."""
    try:
        secret = Path(path).read_text(encoding="utf-8").strip()
    except OSError as error:
        raise SystemExit(f"{path}: {error.strerror}") from None
    except UnicodeDecodeError:
        raise SystemExit(f"{path}: not UTF-8 text (a password or token file holds text)") from None
    if not secret:
        print(f"{path}: the file is empty: it must hold the RT user's {what}", file=sys.stderr)
        raise SystemExit(2)
    return secret


def load_owners(path: str | None) -> dict[str, str]:
    """The owners file: a YAML mapping of RT user names to Matrix ids."""
    if not path:
        return {}
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as error:
        raise SystemExit(f"{path}: {error}") from None
    if not isinstance(data, dict):
        raise SystemExit(f"{path}: expected a mapping 'rt_user: \"@user:server\"'")
    owners = {}
    for name, matrix_id in data.items():
        if not isinstance(matrix_id, str) or not MATRIX_ID.match(matrix_id.strip()):
            raise SystemExit(f"{path}: {name}: {matrix_id!r} is no Matrix id (@user:server)")
        owners[str(name)] = matrix_id.strip()
    return owners


def queue_map(pairs: list[str], known: set[str]) -> dict[str, str]:
    """RT queue → exobot queue from --queue (each must name one of exobot's `known` queues)."""
    mapping: dict[str, str] = {}
    for pair in pairs:
        rt_queue, sep, queue = pair.partition("=")
        if not sep or not rt_queue.strip() or not queue.strip():
            raise SystemExit(f"--queue {pair!r}: expected RTQUEUE=QUEUE")
        queue = queue.strip().lower()
        if queue not in known:
            raise SystemExit(
                f"--queue {pair!r}: exobot has no queue {queue!r} ({', '.join(sorted(known))})"
            )
        mapping[rt_queue.strip()] = queue
    return mapping


def parse_since(text: str | None) -> datetime | None:
    """--since as an aware datetime (UTC when no zone is given)."""
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise SystemExit(f"--since {text!r}: expected YYYY-MM-DD or YYYY-MM-DDTHH:MM") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


async def run_import_cli(config: Config, args: argparse.Namespace) -> int:
    """Run `exobot import rt` with parsed arguments; prints the report on stdout."""
    from exobot.importer.rt_mapping import MappingRules
    from exobot.importer.rt_source import RtError, open_source
    from exobot.importer.runner import CollisionError, run_import
    from exobot.offline import offline_plugins

    password = _read_secret(args.password_file, "password") if args.password_file else None
    token = _read_secret(args.token_file, "token") if args.token_file else None
    rules = MappingRules(
        source=args.source or source_label(args.url),
        queues=queue_map(args.queue, set(config.tickets.queues)),
        owners=load_owners(args.owners),
        same_name=frozenset(config.tickets.queues),
    )
    since = parse_since(args.since)
    try:
        timezone = ZoneInfo(args.timezone)
    except (ValueError, ZoneInfoNotFoundError):
        raise SystemExit(f"--timezone {args.timezone!r}: unknown time zone") from None
    try:
        source = open_source(
            args.url,
            args.user,
            password=password,
            token=token,
            api=args.api,
            max_attachment=int(args.max_attachment_mb * 1024 * 1024),
            timezone=timezone,
        )
    except (RtError, ValueError) as error:
        print(f"RT: {error}", file=sys.stderr)
        return 1
    try:
        async with offline_plugins(config) as manager:
            host = manager.host
            try:
                report = await run_import(
                    source,
                    host.service,
                    host.repository,
                    rules,
                    since=since,
                    dry_run=args.dry_run,
                    progress=sys.stderr,
                    announce=config.matrix is not None,
                    language=config.language,
                )
            except CollisionError as error:
                print(
                    "import stopped before writing anything: these numbers exist here and were "
                    f"not imported from {rules.source}: "
                    + ", ".join(map(str, error.numbers[:100])),
                    file=sys.stderr,
                )
                return 3
            except RtError as error:
                print(f"RT: {error}", file=sys.stderr)
                return 1
    finally:
        source.close()
    for line in report.lines(dry_run=args.dry_run):
        print(line)
    return 3 if args.dry_run and report.collisions else 0
