"""The member directory's edges: reading the management tool's CSV export (bad rows reported
with their line number), the summary `exobot members import` prints, and the members-only
scope (a new ticket from an address that is no active member's is flagged and its
acknowledgement gets a kind paragraph; `!member` links a ticket to a member and clears it).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass

from exobot.core.addresses import BadAddress, normalize_address
from exobot.core.hooks import NewMail
from exobot.core.languages import N_
from exobot_procedures import store
from exobot_procedures.config import MembersCsv, ProceduresConfig, fold
from exobot_procedures.store import ImportSummary, MemberRow

#: The largest export read (bytes) and the most rows in it: an association's directory is a
#: few thousand members; anything far beyond is a wrong file.
MAX_FILE = 32 * 1024 * 1024
MAX_ROWS = 200_000
FLAG = "non-member"

#: Why a row is refused (message ids in the plugin's domain; `line` is added by the caller).
ROW_PROBLEMS = {
    "not_text": N_("the file is not text in {encoding}"),
    "too_big": N_("the file is larger than {limit} MB"),
    "too_many_rows": N_("more than {limit} rows"),
    "no_header": N_("the file is empty: a header line naming the columns is needed"),
    "missing_columns": N_("the header has no column {columns}"),
    "bad_number": N_("“{value}” is not a member number"),
    "bad_address": N_("“{value}” is not a usable email address"),
    "duplicate": N_("member {number} is already on line {first}"),
    "no_rows": N_("no member rows: importing it would make every member inactive"),
}

DEFAULT_PUBLIC_CHANNELS = N_(
    "guifi.net's public mailing lists and chat rooms (https://guifi.net/)"
)
NON_MEMBER_NOTE = N_("Not a member: the sender's address is no active member's.")
NON_MEMBER_PARAGRAPH = N_(
    "This support service is for eXO's members, and we could not find your address among "
    "them. We will read your message anyway. If you want to join eXO, you will find how at "
    "{join_url}. For anything else about guifi.net, the community answers in {channels}."
)


@dataclass(frozen=True)
class RowProblem:
    """A row (or the file) that cannot be imported: its line (1: the header), why (a code of
    ROW_PROBLEMS) and the values that say it."""

    line: int
    code: str
    params: dict[str, object]


def read_members_csv(
    data: bytes, settings: MembersCsv, config: ProceduresConfig
) -> tuple[list[MemberRow], list[RowProblem]]:
    """The member rows of an export and the problems found (every bad row, with its line).
    Blank lines are skipped; addresses are checked and lower-cased; numbers must match
    `member_pattern` and be distinct."""
    if len(data) > MAX_FILE:
        return [], [RowProblem(0, "too_big", {"limit": MAX_FILE // (1024 * 1024)})]
    encoding = settings.encoding
    if encoding.lower().replace("-", "").replace("_", "") == "utf8":
        encoding = "utf-8-sig"  # spreadsheets often start UTF-8 with a byte-order mark
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError:
        return [], [RowProblem(0, "not_text", {"encoding": settings.encoding})]
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=settings.delimiter)
    problems: list[RowProblem] = []
    try:
        header = next(reader)
    except StopIteration:
        return [], [RowProblem(1, "no_header", {})]
    except csv.Error as error:
        return [], [RowProblem(1, "not_text", {"encoding": f"CSV ({error})"})]
    columns = {name.strip().lower(): index for index, name in enumerate(header)}
    wanted = {
        "number": settings.number,
        "address": settings.address,
        "address2": settings.address2,
        "active": settings.active,
    }
    missing = [name for name in wanted.values() if name and name.strip().lower() not in columns]
    if missing:
        return [], [RowProblem(1, "missing_columns", {"columns": ", ".join(missing)})]
    index = {key: columns[name.strip().lower()] for key, name in wanted.items() if name}
    active_values = {fold(value) for value in settings.active_values}
    pattern = config.member_regex()
    rows: list[MemberRow] = []
    first_line: dict[str, int] = {}
    last_line = reader.line_num

    def cell(record: list[str], key: str) -> str:
        position = index.get(key)
        if position is None or position >= len(record):
            return ""
        return record[position].strip()

    while True:
        line = last_line + 1
        try:
            record = next(reader)
        except StopIteration:
            break
        except csv.Error as error:
            problems.append(RowProblem(line, "not_text", {"encoding": f"CSV ({error})"}))
            break
        last_line = reader.line_num
        if not any(value.strip() for value in record):
            continue
        if len(rows) + len(problems) >= MAX_ROWS:
            problems.append(RowProblem(line, "too_many_rows", {"limit": MAX_ROWS}))
            break
        number = cell(record, "number")
        bad = False
        if not pattern.fullmatch(number):
            problems.append(RowProblem(line, "bad_number", {"value": number[:80]}))
            bad = True
        elif number in first_line:
            problems.append(
                RowProblem(line, "duplicate", {"number": number, "first": first_line[number]})
            )
            bad = True
        else:
            first_line[number] = line
        addresses: list[str | None] = []
        for key in ("address", "address2"):
            value = cell(record, key)
            if not value:
                addresses.append(None)
                continue
            try:
                addresses.append(normalize_address(value))
            except BadAddress:
                problems.append(RowProblem(line, "bad_address", {"value": value[:80]}))
                bad = True
                addresses.append(None)
        if bad:
            continue
        active = None if settings.active is None else fold(cell(record, "active")) in active_values
        rows.append(MemberRow(number, addresses[0], addresses[1], active))
    if not rows and not problems:
        problems.append(RowProblem(last_line, "no_rows", {}))
    return rows, problems


def summary_lines(summary: ImportSummary, say: Callable[..., str]) -> list[str]:
    """The import's summary, one line per kind of change (numbers listed, at most 50 each),
    worded by `say(msgid, **params)`."""
    lines = []
    for kind, msgid in (
        ("added", N_("Added: {count}")),
        ("updated", N_("Updated: {count}")),
        ("reactivated", N_("Active again: {count}")),
        ("deactivated", N_("Inactive now: {count}")),
        ("unchanged", N_("Unchanged: {count}")),
    ):
        numbers: list[str] = getattr(summary, kind)
        line = say(msgid, count=len(numbers))
        if numbers and kind != "unchanged":
            shown = [
                f"{n} ({', '.join(summary.fields[n])})" if n in summary.fields else n
                for n in numbers[:50]
            ]
            line += ": " + ", ".join(shown) + (" …" if len(numbers) > 50 else "")
        lines.append(line)
    return lines


def non_member_paragraph(config: ProceduresConfig, language: str, say: Callable[..., str]) -> str:
    """The acknowledgement's paragraph for a non-member, in `language`: the configured one,
    else the catalog's with the join address and guifi.net's public channels."""
    own = config.non_member_notice.get(language)
    if own:
        return own
    channels = config.public_channels or say(language, DEFAULT_PUBLIC_CHANNELS)
    return say(language, NON_MEMBER_PARAGRAPH, join_url=config.join_url, channels=channels)


async def check_new_mail(
    new: NewMail, config: ProceduresConfig, say: Callable[..., str], exobot_language: str
) -> bool:
    """The members-only scope, in the new mail's transaction: a new ticket whose requestor is
    no active member's address (either of the two) is flagged `non-member` and its
    acknowledgement gets the kind paragraph; nothing when no directory was imported. True
    when it flagged."""
    if not new.created:
        return False
    if not await store.is_stranger(new.connection, new.ticket.requestor):
        return False
    new.flag(FLAG, say(exobot_language, NON_MEMBER_NOTE))
    new.add_ack_paragraph(non_member_paragraph(config, new.ticket.language, say))
    return True
