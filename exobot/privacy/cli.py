"""`exobot privacy export ADDRESS [--output FILE]` and `exobot privacy erase ADDRESS
[--dry-run]`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from exobot.config import Config
from exobot.core.addresses import BadAddress, normalize_address


async def run_privacy(config: Config, args: argparse.Namespace) -> int:
    """Run one privacy command; prints what it did. Exit status 2 for an unusable address or
    an archive that cannot be written (never over an existing file), 1 for an erasure a plugin
    could not finish (it is finished by the next erasure)."""
    from exobot.privacy.erase import erase_person
    from exobot.privacy.export import export_person
    from exobot.privacy.session import privacy_session

    try:
        address = normalize_address(args.address)
    except BadAddress:
        address = args.address.strip().lower()
    if "@" not in address or any(ch.isspace() for ch in address):
        print(f"{args.address!r} is not an email address")
        return 2
    async with privacy_session(config) as session:
        if args.action == "export":
            try:
                result = await export_person(
                    session, address, Path(args.output) if args.output else None
                )
            except OSError as error:  # an existing file, a missing folder, no permission
                target = error.filename or args.output
                print(f"cannot write the archive {target}: {_reason(error)}", file=sys.stderr)
                return 2
            print(
                f"{result.path}: {result.tickets} ticket(s), {result.entries} entries, "
                f"{result.attachments} attachment(s), {result.mails} raw mail(s), plugins: "
                f"{', '.join(result.plugins) or 'none'}"
            )
            return 0
        report = await erase_person(session, address, dry_run=args.dry_run)
        for line in report.lines():
            print(line)
        return 1 if report.incomplete else 0


def _reason(error: OSError) -> str:
    """Why a file could not be written, in words an administrator acts on."""
    if isinstance(error, FileExistsError):
        return "it already exists (remove it or give another --output)"
    if isinstance(error, FileNotFoundError):
        return "no such folder"
    if isinstance(error, IsADirectoryError):
        return "it is a folder (give a file name)"
    return error.strerror or str(error)
