"""`exobot import rt` against real Request Tracker servers (Debian's RT 5 and RT 4.4, seeded
by devstack/rt_seed.py): the import compared with the seed field by field and entry by entry,
over REST 2 and REST 1.0; a second run adds nothing; a run killed half-way and run again ends
identical to an uninterrupted one; the dry run writes nothing and lists collisions and unknown
owners; a collision stops the import before it writes anything."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from sqlalchemy import text

from devstack.rt_seed import (
    PDF_BYTES,
    PDF_NAME,
    SECOND_MEMBER,
    TEXT_ATTACHMENT,
    TEXT_ATTACHMENT_NAME,
)
from exobot.cli import main
from exobot.core.model import EntryKind
from exobot.db.engine import create_engine
from exobot.db.repository import SqlRepository

QUEUES = {"General": "suport", "Altes": "altes"}
STAFF_MATRIX = "@nuria:example.org"
# Generous: a deadline, never a pause.
DEADLINE = 120.0


def write_config(directory: Path, **tickets: object) -> Path:
    """An exobot configuration with its own SQLite database and the two queues."""
    data = {
        "mail": {
            "address": "suport@example.org",
            "imap": {"host": "127.0.0.1", "username": "suport", "password": "x"},
            "smtp": {"host": "127.0.0.1"},
        },
        "database": {"url": f"sqlite:///{directory / 'exobot.db'}"},
        "tickets": {"queues": {"suport": {}, "altes": {}}, **tickets},
    }
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    path.chmod(0o600)
    return path


def import_argv(server, config: Path, *extra: str, api: str = "auto") -> list[str]:
    """`exobot import rt …` arguments for `server` (root's password in a file)."""
    secret = config.parent / "rt-password"
    secret.write_text(server.password + "\n", encoding="utf-8")
    owners = config.parent / "owners.yaml"
    owners.write_text(yaml.safe_dump({server.seeded.staff_user: STAFF_MATRIX}), encoding="utf-8")
    argv = [
        "import",
        "rt",
        "-c",
        str(config),
        "--url",
        server.url,
        "--user",
        server.user,
        "--password-file",
        str(secret),
        "--api",
        api,
        "--queue",
        "General=suport",
        "--owners",
        str(owners),
    ]
    return argv + list(extra)


def snapshot(config: Path) -> dict:
    """Everything the import wrote, without row ids: tickets with their fields, entries,
    participants, Message-IDs, attachments and merged numbers."""
    url = yaml.safe_load(config.read_text())["database"]["url"].replace(
        "sqlite:///", "sqlite+aiosqlite:///"
    )

    async def read() -> dict:
        repo = SqlRepository(create_engine(url))
        try:
            async with repo.reading() as view:
                rows = await view.conn.execute(text("SELECT id FROM tickets ORDER BY id"))
                numbers = [r[0] for r in rows]
                out: dict = {"tickets": {}, "aliases": {}}
                for number in numbers:
                    ticket = await view.get_ticket(number, aliases=False)
                    history = await view.history(number)
                    out["tickets"][number] = {
                        "title": ticket.title,
                        "requestor": ticket.requestor,
                        "queue": ticket.queue,
                        "status": ticket.status.value,
                        "owner": ticket.owner,
                        "created_at": ticket.created_at,
                        "updated_at": ticket.updated_at,
                        "participants": sorted(await view.participants(number)),
                        "message_ids": sorted(await view.ticket_message_ids(number)),
                        "attachments": sorted(
                            (a.filename, a.content_type, a.size)
                            for a in await view.attachments(number)
                        ),
                        "entries": [
                            (e.kind.value, e.actor, e.created_at, e.body, _plain(e.data))
                            for e in history
                        ],
                    }
                for number in range(1, 40):
                    survivor = await view.alias_of(number)
                    if survivor is not None:
                        out["aliases"][number] = survivor
                return out
        finally:
            await repo.close()

    return asyncio.run(read())


def _plain(data: dict) -> dict:
    return {k: v for k, v in data.items() if k not in ("entry", "original")}


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    """Run `exobot …` in this process; (exit status, stdout, stderr)."""
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def next_automatic_number(config: Path) -> int:
    """The number SQLite gives the next ticket exobot opens (AUTOINCREMENT: the highest of the
    tickets' sequence and of their ids, plus one)."""
    path = yaml.safe_load(config.read_text())["database"]["url"].removeprefix("sqlite:///")
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30) as conn:
        seq = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'tickets'").fetchone()
        (highest,) = conn.execute("SELECT MAX(id) FROM tickets").fetchone()
    return max(seq[0] if seq else 0, highest or 0) + 1


def imported_count(config: Path) -> int:
    """RT tickets recorded as imported so far (read beside a running import)."""
    path = yaml.safe_load(config.read_text())["database"]["url"].removeprefix("sqlite:///")
    if not Path(path).exists():
        return 0
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30) as conn:
            return conn.execute(
                "SELECT COUNT(*) FROM imported_records WHERE kind = 'ticket'"
            ).fetchone()[0]
    except sqlite3.OperationalError:  # the migration has not made the table yet
        return 0


# ------------------------------------------------------------------------------ the checks


def check_against_seed(server, snap: dict) -> None:
    """The import holds every seeded ticket as the seed made it, entry by entry."""
    seeded = server.seeded
    tickets = snap["tickets"]
    expected_numbers = sorted(
        n for n, t in seeded.tickets.items() if t.status != "deleted" and not t.merged_into
    )
    assert sorted(tickets) == expected_numbers
    for number in expected_numbers:
        want = seeded.ticket(number)
        got = tickets[number]
        assert got["title"] == want.subject, number
        assert got["queue"] == QUEUES[want.queue], number
        assert got["status"] == want.status, number
        assert got["owner"] == (STAFF_MATRIX if want.owner == seeded.staff_user else None), number
        assert got["requestor"] == want.requestors[0], number
        for address in want.requestors + want.cc:
            assert address in got["participants"], (number, address)
        # Every mail fed in threads to the ticket it ended in (merged ones to the survivor).
        for msgid, survivor in seeded.message_ids.items():
            if survivor == number:
                assert f"<{msgid}>" in got["message_ids"], (number, msgid)
        assert sorted(a[0] for a in got["attachments"]) == sorted(
            name for n in [number, *want.merged_from] for name in seeded.ticket(n).attachments
        ), number
        entries = got["entries"]
        kinds = [e[0] for e in entries]
        # One CREATED (a merged ticket's creation is its first mail, in time order).
        assert kinds.count(EntryKind.CREATED.value) == 1, number
        bodies = [e[3] for e in entries if e[0] in ("mail_in", "mail_out", "comment")]
        texts = [t for n in [number, *want.merged_from] for t in seeded.ticket(n).texts]
        for said in texts:
            assert any(said.strip() == (b or "").strip() for b in bodies), (number, said)
        comments = [e[3].strip() for e in entries if e[0] == "comment"]
        assert sorted(comments) == sorted(c.strip() for c in want.comments), number
        times = [e[2] for e in entries]
        assert times == sorted(times), number
        created = next(e[2] for e in entries if e[0] == EntryKind.CREATED.value)
        assert got["created_at"] == created, number
        # Who wrote: the member by address, staff by their Matrix id.
        for kind, actor, _, body, _ in entries:
            if kind == "mail_in":
                assert "@" in actor and not actor.startswith("@"), (number, actor)
            if (
                kind in ("mail_out", "comment")
                and body
                and body.strip() in {t.strip() for t in want.texts}
            ):
                assert actor in (STAFF_MATRIX, "rt:root", *want.requestors), (number, actor)
    # Attachments byte for byte (sizes here; the REST 1.0 / REST 2 comparison covers the rest).
    sizes = {a[0]: a[2] for t in tickets.values() for a in t["attachments"]}
    assert sizes[PDF_NAME] == len(PDF_BYTES)
    assert sizes[TEXT_ATTACHMENT_NAME] == len(TEXT_ATTACHMENT)
    # Changes, as the core writes them.
    t1 = tickets[1]["entries"]
    assert ("owner", {"from": None, "to": STAFF_MATRIX}) in [(e[0], e[4]) for e in t1]
    t3 = tickets[3]
    changes = [(e[0], e[4]) for e in t3["entries"] if e[0] in ("queue", "title", "status")]
    assert ("queue", {"from": "suport", "to": "altes"}) in changes
    assert ("title", {"from": seeded.ticket(3).subject_before, "to": "Correu brossa"}) in changes
    assert ("status", {"from": "new", "to": "rejected"}) in changes
    # Staff-opened ticket 9: RT mailed the member; the import sent nothing itself.
    assert tickets[9]["requestor"] == SECOND_MEMBER
    assert snap["aliases"] == seeded.merged


def sent_message_ids(server, skip: list[int] = ()) -> list[str]:
    """The Message-IDs of the mails RT sent (without <>), but for tickets in `skip`."""
    from email import message_from_bytes, policy

    ids = []
    tags = [f"[{server.rtname} #{n}]" for n in skip]
    for raw in server.sent_mail():
        mail = message_from_bytes(raw, policy=policy.default)
        value = mail.get("Message-ID", "")
        if value and not any(tag in str(mail.get("Subject", "")) for tag in tags):
            ids.append(value.strip().strip("<>"))
    return ids


# ------------------------------------------------------------------------------ the tests


@pytest.mark.parametrize("api", ["2", "1"])
def test_rt5_import_matches_the_seed_and_a_second_run_adds_nothing(rt5, tmp_path, capsys, api):
    config = write_config(tmp_path)
    code, out, err = run_cli(import_argv(rt5, config, api=api), capsys)
    assert code == 0, out + err
    assert f"Request Tracker, REST {api}:" in out
    assert "skipped: 1 deleted (#5)" in out
    total = len(rt5.seeded.tickets) - len(rt5.seeded.merged) - len(rt5.seeded.deleted)
    assert f"] {total}/{total} tickets, " in err and "left" in err  # the progress line
    first = snapshot(config)
    check_against_seed(rt5, first)
    # RT's own outgoing mails (its EmailRecords) thread too: a reply to any of them lands.
    every_id = {m for t in first["tickets"].values() for m in t["message_ids"]}
    sent = sent_message_ids(rt5, skip=rt5.seeded.deleted)
    assert sent
    assert {f"<{m}>" for m in sent} <= every_id

    code, out, err = run_cli(import_argv(rt5, config, api=api), capsys)
    assert code == 0, out + err
    assert "0 new, 0 updated" in out
    assert snapshot(config) == first


@pytest.mark.parametrize("api", ["2", "1"])
def test_a_full_run_reading_histories_instead_of_probing_imports_the_same(
    rt5, tmp_path, capsys, monkeypatch, api
):
    """Where probing the skipped numbers would cost more than reading the histories (an RT
    whose numbers are mostly shredded or hidden), the merged numbers come from the histories:
    forced here on the seed, whose numbers are dense, the import is the probing one's."""
    from exobot.importer import runner

    probed, read = tmp_path / "probed", tmp_path / "read"
    snaps = []
    for directory, pays in ((probed, True), (read, False)):
        directory.mkdir()
        monkeypatch.setattr(runner, "_probing_pays", lambda *_, pays=pays: pays)
        config = write_config(directory)
        # The plan knows them (the collision check needs them before anything is written).
        code, out, err = run_cli(import_argv(rt5, config, "--dry-run", api=api), capsys)
        assert code == 0, out + err
        assert "merged numbers (each opens its surviving ticket): 6→7, 8→7" in out
        code, out, err = run_cli(import_argv(rt5, config, api=api), capsys)
        assert code == 0, out + err
        snaps.append(snapshot(config))
    check_against_seed(rt5, snaps[1])
    assert snaps[1] == snaps[0]


def test_rt4_import_over_rest1_matches_the_seed(rt4, tmp_path, capsys):
    config = write_config(tmp_path)
    code, out, err = run_cli(import_argv(rt4, config), capsys)  # auto: REST 2 absent on 4.4
    assert code == 0, out + err
    assert "Request Tracker, REST 1:" in out
    check_against_seed(rt4, snapshot(config))


def test_rest1_and_rest2_import_the_same(rt5, tmp_path, capsys):
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    results = []
    for directory, api in ((one, "1"), (two, "2")):
        config = write_config(directory)
        code, out, err = run_cli(import_argv(rt5, config, api=api), capsys)
        assert code == 0, out + err
        results.append(snapshot(config))
    assert results[0] == results[1]


def test_new_tickets_continue_after_the_highest_imported_number(rt5, tmp_path, capsys):
    config = write_config(tmp_path)
    code, out, _ = run_cli(import_argv(rt5, config), capsys)
    assert code == 0
    highest = max(max(rt5.seeded.tickets), *rt5.seeded.merged)
    assert f"new tickets here start at {highest + 1}" in out


def test_dry_run_writes_nothing_and_lists_unknown_owners_and_unmapped_queues(rt5, tmp_path, capsys):
    config = write_config(tmp_path)
    argv = import_argv(rt5, config, "--dry-run")
    argv[argv.index("--owners") + 1] = str(tmp_path / "none.yaml")
    (tmp_path / "none.yaml").write_text("{}\n")
    argv[argv.index("--queue") + 1] = "Nowhere=suport"  # Altes maps by name, General not
    code, out, err = run_cli(argv, capsys)
    assert code == 0, out + err
    assert "unmapped RT queues (skipped; map them with --queue RTQUEUE=QUEUE): General (3)" in out
    argv[argv.index("--queue") + 1] = "General=suport"
    code, out, err = run_cli(argv, capsys)
    assert code == 0, out + err
    assert (
        f"unknown owners (imported unowned; name them in --owners): {rt5.seeded.staff_user}" in out
    )
    assert "per status:" in out and "per queue: Altes→altes" in out
    assert snapshot(config)["tickets"] == {}


def test_a_taken_number_stops_the_import_before_anything_is_written(rt5, tmp_path, capsys):
    config = write_config(tmp_path)
    # exobot already has tickets 1..2 of its own (a mail opened them).
    url = f"sqlite:///{tmp_path / 'exobot.db'}"
    assert main(["migrate", "-c", str(config)]) == 0
    with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
        for number in (1, 2):
            conn.execute(
                "INSERT INTO tickets (id, title, requestor, queue, status, created_at, updated_at,"
                " language) VALUES (?, 'ours', 'x@example.org', 'suport', 'new',"
                " '2026-01-01 00:00:00', '2026-01-01 00:00:00', 'ca')",
                (number,),
            )
    capsys.readouterr()
    code, out, err = run_cli(import_argv(rt5, config, "--dry-run"), capsys)
    assert code == 3
    assert "COLLISIONS (taken here, not imported from this RT): 1, 2" in out
    code, out, err = run_cli(import_argv(rt5, config), capsys)
    assert code == 3
    assert "stopped before writing anything" in err and "1, 2" in err
    snap = snapshot(config)
    assert sorted(snap["tickets"]) == [1, 2]
    assert all(t["title"] == "ours" for t in snap["tickets"].values())


def test_an_import_killed_half_way_then_run_again_equals_an_uninterrupted_one(
    rt5, tmp_path, capsys
):
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    whole.mkdir()
    broken.mkdir()
    config = write_config(whole)
    assert run_cli(import_argv(rt5, config), capsys)[0] == 0
    expected = snapshot(config)

    config = write_config(broken)
    total = len(expected["tickets"])
    proc = subprocess.Popen(
        [sys.executable, "-m", "exobot.cli", *import_argv(rt5, config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=Path(__file__).resolve().parents[2],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    deadline = time.monotonic() + DEADLINE
    try:
        # Wait (a deadline, no fixed pause) until some tickets are committed, then kill.
        while imported_count(config) < 1:
            assert proc.poll() is None, "the import ended before any ticket was seen"
            assert time.monotonic() < deadline, "no ticket imported in time"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=DEADLINE)
    done = imported_count(config)
    assert 1 <= done < total, f"{done} of {total}: not killed half-way"
    # RT's numbers were reserved before the first ticket: a ticket exobot opens now (before
    # the import is run again) gets a number after them, not one still to be imported.
    highest = max(max(rt5.seeded.tickets), *rt5.seeded.merged)
    assert next_automatic_number(config) == highest + 1

    code, out, err = run_cli(import_argv(rt5, config), capsys)
    assert code == 0, out + err
    assert snapshot(config) == expected


def test_one_summary_line_per_queue_and_nothing_else_is_queued(rt5, tmp_path, capsys):
    config = write_config(tmp_path)
    data = yaml.safe_load(config.read_text())
    data["matrix"] = {
        "homeserver": "https://matrix.example.org",
        "user_id": "@exobot:example.org",
        "password": "x",
    }
    config.write_text(yaml.safe_dump(data))
    code, out, err = run_cli(import_argv(rt5, config), capsys)
    assert code == 0, out + err
    path = data["database"]["url"].removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT kind, ticket_id, payload FROM outbox ORDER BY id").fetchall()
    posts = {json.loads(p)["queue"]: json.loads(p) for kind, ticket, p in rows}
    # No mail and no ticket post for the imported history: only the two summaries.
    assert [(kind, ticket) for kind, ticket, _ in rows] == [("chat", None), ("chat", None)]
    assert set(posts) == {"suport", "altes"}
    assert all(p["type"] == "room_post" for p in posts.values())
    general = sum(
        1
        for t in rt5.seeded.tickets.values()
        if t.queue == "General" and t.status != "deleted" and not t.merged_into
    )
    # Catalan by default: "Importats de Request Tracker: N tiquets (N nous, 0 amb …)".
    assert posts["suport"]["body"].startswith(f"Importats de Request Tracker: {general} tiquets")


def test_a_later_run_brings_only_what_rt_received_meanwhile(rt5_fresh, tmp_path, capsys):
    import rt.rest1

    from devstack.rt_seed import MEMBER, _mail

    server = rt5_fresh
    config = write_config(tmp_path)
    assert run_cli(import_argv(server, config), capsys)[0] == 0
    before = snapshot(config)

    # RT keeps receiving mail until the switch-over: a reply on #1, a new ticket, an answer.
    raw, reply_id = _mail(f"Re: [{server.rtname} #1] encara", "Encara no va.\n")
    server.mailgate(raw)
    raw, new_id = _mail("Una consulta nova", "Com canvio la contrasenya?\n", sender=MEMBER)
    server.mailgate(raw)
    staff = rt.rest1.Rt(server.rest1, server.user, server.password)
    assert staff.login()
    newest = max(server.seeded.tickets) + 1
    assert staff.get_ticket(newest)["Subject"] == "Una consulta nova"
    assert staff.reply(newest, text="Des de l'àrea de socis.\n")

    # --since: only tickets RT updated after the first run's newest change.
    last = max(t["updated_at"] for t in before["tickets"].values()) + timedelta(seconds=1)
    since = last.strftime("%Y-%m-%dT%H:%M:%S")
    code, out, err = run_cli(import_argv(server, config, "--since", since), capsys)
    assert code == 0, out + err
    assert "2 tickets listed, 2 to import" in out
    assert "imported: 1 new, 1 updated, 0 unchanged" in out
    after = snapshot(config)
    assert {n: t for n, t in after["tickets"].items() if n not in (1, newest)} == {
        n: t for n, t in before["tickets"].items() if n != 1
    }
    old, new = before["tickets"][1]["entries"], after["tickets"][1]["entries"]
    assert new[: len(old)] == old
    assert [(e[0], e[3]) for e in new[len(old) :]] == [("mail_in", "Encara no va.")]
    assert f"<{reply_id}>" in after["tickets"][1]["message_ids"]
    bodies = [(e[0], e[3]) for e in after["tickets"][newest]["entries"]]
    assert ("mail_in", "Com canvio la contrasenya?") in bodies
    assert ("mail_out", "Des de l'àrea de socis.") in bodies
    assert f"<{new_id}>" in after["tickets"][newest]["message_ids"]
    # And once more: nothing.
    code, out, err = run_cli(import_argv(server, config), capsys)
    assert "0 new, 0 updated" in out
    assert snapshot(config) == after


def _disable_staff_and_import(server, tmp_path, capsys, apis: tuple[str, ...]) -> None:
    """Disable the seed's staff user through RT's API, import over each of `apis`: her
    answers stay staff mail, her comments comments, her tickets hers."""
    import rt.rest1

    root = rt.rest1.Rt(server.rest1, server.user, server.password)
    assert root.login()
    staff = server.seeded.staff_user
    assert root.edit_user(staff, Disabled=1)
    # RT's REST 1.0 `user/NAME` now says "No user named nuria exists" (the importer asks
    # `user/NAME/show`, which shows disabled users).
    assert "Name" not in (root.get_user(staff) or {})
    staff_texts = {
        t.strip(): number
        for number, ticket in server.seeded.tickets.items()
        for t in ticket.texts
        if number in (1, 7) and "Núria" in t or "router nou" in t or "Nota interna" in t
    }
    assert len(staff_texts) == 3
    for api in apis:
        directory = tmp_path / f"api{api}"
        directory.mkdir()
        config = write_config(directory)
        code, out, err = run_cli(import_argv(server, config, api=api), capsys)
        assert code == 0, out + err
        snap = snapshot(config)
        check_against_seed(server, snap)
        entries = {
            (e[3] or "").strip(): (e[0], e[1])
            for t in snap["tickets"].values()
            for e in t["entries"]
        }
        assert entries["Nota interna: el servidor SMTP tenia la cua plena."] == (
            "comment",
            STAFF_MATRIX,
        )
        for said in staff_texts:
            if "Nota interna" not in said:
                assert entries[said] == ("mail_out", STAFF_MATRIX), (api, said)
        assert snap["tickets"][1]["owner"] == STAFF_MATRIX
        assert snap["tickets"][4]["owner"] == STAFF_MATRIX
        # Without the owners file she is still staff, as rt:NAME, and an unknown owner.
        bare = directory / "bare"
        bare.mkdir()
        config = write_config(bare)
        argv = import_argv(server, config, api=api)
        (bare / "none.yaml").write_text("{}\n")
        argv[argv.index("--owners") + 1] = str(bare / "none.yaml")
        code, out, err = run_cli(argv, capsys)
        assert code == 0, out + err
        snap = snapshot(config)
        assert snap["tickets"][1]["owner"] is None
        entries = {
            (e[3] or "").strip(): (e[0], e[1]) for t in snap["tickets"].values() for e in t["entries"]
        }
        for said in staff_texts:
            assert entries[said][1] == f"rt:{staff}", (api, said)


def test_a_disabled_staff_user_stays_staff_on_rt5(rt5_fresh, tmp_path, capsys):
    _disable_staff_and_import(rt5_fresh, tmp_path, capsys, ("2", "1"))


def test_a_disabled_staff_user_stays_staff_on_rt4(rt4_fresh, tmp_path, capsys):
    _disable_staff_and_import(rt4_fresh, tmp_path, capsys, ("1",))


def test_a_later_run_stops_before_writing_when_rt_reaches_a_number_taken_here(
    rt5_fresh, tmp_path, capsys
):
    """--since probes no gaps: the numbers merged into the tickets it lists come from their
    histories, so a number RT merged away that exobot has given meanwhile stops the run
    before its first ticket is written, like a listed one."""
    import rt.rest1

    from devstack.rt_seed import MEMBER, _mail
    from exobot.config import load_config
    from exobot.core.intents import OpenTicket
    from exobot.core.model import Actor
    from exobot.offline import offline_plugins

    server = rt5_fresh
    config = write_config(tmp_path)
    assert run_cli(import_argv(server, config), capsys)[0] == 0
    before = snapshot(config)
    highest = max(max(server.seeded.tickets), *server.seeded.merged)

    # exobot goes on: two tickets opened here take the next free numbers.
    async def open_two() -> list[int]:
        async with offline_plugins(load_config(config)) as manager:
            return [
                (
                    await manager.host.service.apply(
                        Actor.operator(STAFF_MATRIX), OpenTicket("pau@example.org", title)
                    )
                ).ticket
                for title in ("Trucada: factura", "Trucada: router")
            ]

    ours = asyncio.run(open_two())
    assert ours == [highest + 1, highest + 2]
    ours_snap = snapshot(config)

    # RT too: a reply on #4 (listed first by --since), then two new tickets with the same
    # numbers, the first of them merged into #7 (so RT's searches no longer list it).
    raw, _ = _mail(f"Re: [{server.rtname} #4] Canvi de quota", "Ja està?\n")
    server.mailgate(raw)
    root = rt.rest1.Rt(server.rest1, server.user, server.password)
    assert root.login()
    for title in ("Nova consulta", "Una altra consulta"):
        server.mailgate(_mail(title, "Hola.\n", sender=MEMBER)[0])
    assert root.get_ticket(ours[1])["Subject"] == "Una altra consulta"
    assert root.merge_ticket(ours[0], 7)

    since = (
        max(t["updated_at"] for t in before["tickets"].values()) + timedelta(seconds=1)
    ).strftime("%Y-%m-%dT%H:%M:%S")
    code, out, err = run_cli(import_argv(server, config, "--since", since, "--dry-run"), capsys)
    assert code == 3, out + err
    assert f"{ours[0]}, {ours[1]}" in out
    code, out, err = run_cli(import_argv(server, config, "--since", since), capsys)
    assert code == 3, out + err
    assert "before writing anything" in err and f"{ours[0]}, {ours[1]}" in err
    # Nothing written: #4 has no new entry, our two tickets are as they were.
    assert snapshot(config) == ours_snap
    assert ours_snap["tickets"][4] == before["tickets"][4]


def test_an_rt5_auth_token_imports_over_rest2(rt5_fresh, tmp_path, capsys):
    """--token-file with a real RT::Authen::Token of root's: the same import as with the
    password; a wrong token, or REST 1.0 (which knows no tokens), is refused with exit 1."""
    server = rt5_fresh
    config = write_config(tmp_path)
    token = tmp_path / "rt-token"
    token.write_text(server.create_token(server.user) + "\n", encoding="utf-8")
    argv = import_argv(server, config)
    at = argv.index("--password-file")
    argv[at : at + 2] = ["--token-file", str(token)]
    code, out, err = run_cli(argv, capsys)
    assert code == 0, out + err
    assert "REST 2" in out
    check_against_seed(server, snapshot(config))

    token.write_text("1-1-" + "0" * 32 + "\n", encoding="utf-8")
    code, out, err = run_cli(argv, capsys)
    assert code == 1 and "401" in err, out + err
    argv[argv.index("--api") + 1] = "1"
    code, out, err = run_cli(argv, capsys)
    assert code == 1 and "REST 1.0 needs a password" in err, out + err
