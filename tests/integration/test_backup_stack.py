"""exobot backup / restore beside a live exobot on the real stack: a consistent copy while
mail arrives, a restore into a fresh directory that works (tickets, history, attachments,
plugin data, and the bot's encryption keys on the real Synapse), PostgreSQL through
pg_dump / pg_restore, and the run lock between real processes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from harness import DEADLINE, ROOT, Instance, instance_config, member_mail, unique, wait_until
from matrix_harness import body_of, sender_of, thread_root_of
from sqlalchemy import create_engine, text

from exobot.backup import MANIFEST, SQLITE_FILE
from exobot.config import load_config

pytestmark = pytest.mark.integration

PLUGINS = {
    "connectivity": {"step": "3s", "pings": 3, "reference_targets": ["127.0.0.1"]},
    "procedures": {},
}
# Tables whose rows must come back exactly (the connectivity rounds and the state table go on
# changing while exobot runs; their counts are checked against the manifest instead).
STABLE = (
    "tickets",
    "entries",
    "attachments",
    "participants",
    "mail_messages",
    "procedures_members",
    "procedures_member_changes",
)
# last_round_at moves on with each round: the monitor itself must come back.
MONITOR = "SELECT id, ticket, target, kind, host, started_at FROM connectivity_monitors"
PDF = b"%PDF-1.4\n" + bytes(range(256)) * 40 + b"\n%%EOF\n"


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """`exobot ARGS` as its own process."""
    return subprocess.run(
        [sys.executable, "-m", "exobot.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env=env(),
    )


def write_config(data: dict, directory: Path) -> Path:
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    os.chmod(path, 0o600)
    return path


def instance(stack, path: Path, directory: Path) -> Instance:
    config = load_config(path, env={})
    return Instance(stack, path, config, config.mail.address, directory / "exobot.db")


class Running:
    """`exobot run` as a separate process, its log in a file."""

    def __init__(self, config: Path, log: Path) -> None:
        self.log = log
        with open(log, "wb") as handle:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "exobot.cli", "run", "-c", str(config)],
                cwd=ROOT,
                env=env(),
                stdout=subprocess.DEVNULL,
                stderr=handle,
            )

    async def started(self) -> None:
        async def up() -> bool:
            assert self.proc.poll() is None, self.log.read_text(errors="replace")[-3000:]
            return "exobot started" in self.log.read_text(errors="replace")

        await wait_until(up, what="exobot run to start")

    async def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return await asyncio.to_thread(self.proc.wait, DEADLINE)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def rows(database: Path, table: str) -> list[tuple]:
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as conn:
        return conn.execute(f'SELECT * FROM "{table}" ORDER BY rowid').fetchall()


def check_consistent(backup: Path) -> dict[str, int]:
    """The backup's database is whole and agrees with itself and its manifest; returns its
    rows per table."""
    manifest = json.loads((backup / MANIFEST).read_text())
    database = backup / SQLITE_FILE
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        counts = {
            t: conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0]
            for t in manifest["database"]["counts"]
        }
        # Every ticket has its history; every processed mail its ticket's entry.
        assert (
            conn.execute(
                "SELECT count(*) FROM tickets t WHERE NOT EXISTS "
                "(SELECT 1 FROM entries e WHERE e.ticket_id = t.id)"
            ).fetchone()[0]
            == 0
        )
    assert counts == manifest["database"]["counts"]
    return counts


async def test_backup_while_exobot_runs_then_restore_into_a_fresh_directory(
    stack, tmp_path_factory
):
    live = tmp_path_factory.mktemp("live")
    data = instance_config(stack, live)
    data["plugins"] = PLUGINS
    config = write_config(data, live)
    address = data["mail"]["address"]
    member = unique("soci")
    (live / "socis.csv").write_text(f"number,email,email2\n1234,{member},\n1235,{unique('x')},\n")

    run = Running(config, live / "run.log")
    try:
        await run.started()
        # A second run on the same SQLite database refuses at once, naming the lock's holder.
        second = await asyncio.to_thread(cli, "run", "-c", str(config))
        assert second.returncode == 1
        assert "exobot is already running on this database" in second.stderr
        assert f"held by process {run.proc.pid}" in second.stderr
        # Plugin data, written by the plugin's own command while exobot runs.
        imported = await asyncio.to_thread(
            cli, "members", "import", str(live / "socis.csv"), "-c", str(config)
        )
        assert imported.returncode == 0, imported.stderr

        def send(first: int, count: int) -> None:
            for i in range(first, first + count):
                msg = member_mail(
                    member if i % 4 == 1 else unique("membre"), address, subject=f"Avaria {i}"
                )
                if i % 3 == 0:
                    msg.add_attachment(
                        PDF, maintype="application", subtype="pdf", filename=f"factura-{i}.pdf"
                    )
                stack.send_mail(msg.as_bytes(), msg["From"], [address])

        backups = live.parent / f"{live.name}-backups"
        sent = 0
        for round_ in range(3):
            # Mail arrives while the backup runs.
            sending = asyncio.create_task(asyncio.to_thread(send, sent, 8))
            made = await asyncio.to_thread(
                cli, "backup", str(backups / f"during-{round_}"), "-c", str(config)
            )
            await sending
            sent += 8
            assert made.returncode == 0, made.stderr
            check_consistent(backups / f"during-{round_}")

        inst = instance(stack, config, live)
        await inst.wait_tickets(sent)
        await inst.wait_outbox_idle()

        async def probed() -> bool:
            return inst.scalar("SELECT count(*) FROM connectivity_rounds") >= 1

        await wait_until(probed, what="a connectivity round")
        final = backups / "final"
        made = await asyncio.to_thread(cli, "backup", str(final), "-c", str(config))
        assert made.returncode == 0, made.stderr
        counts = check_consistent(final)
        assert counts["tickets"] == sent
        assert counts["attachments"] >= sent // 3
        assert counts["procedures_members"] == 2
        assert counts["connectivity_rounds"] >= 1

        # Restore is refused while exobot runs, and changes nothing.
        refused = await asyncio.to_thread(cli, "restore", str(final), "-c", str(config))
        assert refused.returncode == 1
        assert "exobot is running on this database" in refused.stderr
        assert "stop it before restoring" in refused.stderr
        assert await run.stop() == 0
    finally:
        run.kill()
    assert not list(live.glob("*.before-restore-*"))

    # Into a fresh directory: same configuration, another database file.
    fresh = tmp_path_factory.mktemp("fresh")
    data["database"]["url"] = f"sqlite:///{fresh / 'exobot.db'}"
    fresh_config = write_config(data, fresh)
    restored = await asyncio.to_thread(cli, "restore", str(final), "-c", str(fresh_config))
    assert restored.returncode == 0, restored.stderr
    for table in STABLE:
        assert rows(fresh / "exobot.db", table) == rows(live / "exobot.db", table), table
    monitors = [sqlite3.connect(d / "exobot.db").execute(MONITOR).fetchall() for d in (fresh, live)]
    assert monitors[0] == monitors[1] != []
    assert len(rows(fresh / "exobot.db", "connectivity_rounds")) == counts["connectivity_rounds"]
    (pdf,) = {
        r[0]
        for r in sqlite3.connect(fresh / "exobot.db").execute(
            "SELECT data FROM attachments WHERE filename = 'factura-3.pdf'"
        )
    }
    assert pdf == PDF

    # The restored exobot goes on where the backup left off: a reply threads into its ticket,
    # a new mail gets the next number, a member is still known to the plugin.
    inst = instance(stack, fresh_config, fresh)
    await inst.start()
    try:
        number = inst.scalar("SELECT id FROM tickets WHERE title = 'Avaria 5'")
        before = inst.scalar("SELECT count(*) FROM entries WHERE ticket_id = :n", n=number)
        await inst.send(
            member_mail(
                member, address, subject=f"Re: [suport#{number}] Avaria 5", body="Encara no va."
            )
        )

        async def threaded() -> bool:
            return (
                inst.scalar("SELECT count(*) FROM entries WHERE ticket_id = :n", n=number) > before
            )

        await wait_until(threaded, what="the reply in the restored ticket")
        await inst.send(member_mail(unique("membre"), address, subject="Nova avaria"))
        await inst.wait_tickets(sent + 1)
        assert inst.scalar("SELECT id FROM tickets WHERE title = 'Nova avaria'") == (
            inst.scalar("SELECT max(id) FROM tickets WHERE title LIKE 'Avaria %'") + 1
        )
        assert inst.scalar("SELECT count(*) FROM procedures_members WHERE number = '1234'") == 1
    finally:
        await inst.stop()


async def test_the_restored_bot_still_reads_its_encrypted_room(
    stack, make_instance, matrix_setup, volunteer, tmp_path_factory
):
    setup = matrix_setup(encrypted={"suport"})
    inst = make_instance(matrix=setup)
    await inst.start()
    vol = await volunteer(setup)
    room = setup.rooms["suport"]
    await vol.wait_member(room, setup.bot_user_id)
    bot = setup.bot_user_id

    async def answered(command: str, thread: str) -> dict:
        mark = vol.mark(room)
        sent = await vol.send(room, command, thread_root=thread)
        await vol.wait_for(room, lambda e: e["event_id"] == sent, what="the command's echo")
        assert vol.wire_type(sent) == "m.room.encrypted"
        answer = await vol.wait_for(
            room,
            lambda e: sender_of(e) == bot and thread_root_of(e) == thread and e["event_id"] != sent,
            after=mark,
            what=f"the bot's answer to {command}",
        )
        assert vol.wire_type(answer["event_id"]) == "m.room.encrypted"
        return vol.raw_event(sent)

    await inst.send(member_mail(unique("membre"), inst.address, subject="Xifrat"))
    await inst.wait_tickets(1)
    root = (
        await vol.wait_for(
            room,
            lambda e: (
                sender_of(e) == bot
                and "suport#1" in (body_of(e) or "")
                and thread_root_of(e) is None
            ),
            what="the root of suport#1",
        )
    )["event_id"]
    before = await answered("!take", root)
    device = json.loads((inst.config.matrix.store_path / "session.json").read_text())["device_id"]

    backup = tmp_path_factory.mktemp("backups") / "b"
    made = await asyncio.to_thread(inst.run_cli, "backup", str(backup))
    assert made.returncode == 0, made.stderr
    await inst.stop()

    fresh = tmp_path_factory.mktemp("fresh")
    data = yaml.safe_load(inst.config_path.read_text())
    data["database"]["url"] = f"sqlite:///{fresh / 'exobot.db'}"
    data["matrix"]["store_path"] = str(fresh / "matrix")
    fresh_config = write_config(data, fresh)
    restored = await asyncio.to_thread(inst.run_cli, "restore", str(backup), config=fresh_config)
    assert restored.returncode == 0, restored.stderr
    assert "Matrix store restored" in restored.stdout

    again = instance(stack, fresh_config, fresh)
    await again.start()
    try:
        # The same device, not a new login, whose keys read what the volunteer's client
        # encrypts with the session it shared before the backup.
        session = json.loads((fresh / "matrix" / "session.json").read_text())
        assert session["device_id"] == device
        after = await answered("!untake", root)
        assert after["content"]["session_id"] == before["content"]["session_id"]

        async def released() -> bool:
            return again.scalar("SELECT owner FROM tickets WHERE id = 1") is None

        await wait_until(released, what="the restored bot to act on the command")
    finally:
        await again.stop()


async def test_postgresql_backup_and_restore(stack, tmp_path_factory):
    if stack.postgres_port is None:
        pytest.skip("the test stack runs without PostgreSQL")
    live = tmp_path_factory.mktemp("pg-live")
    data = instance_config(stack, live)
    data["plugins"] = PLUGINS
    source_url = stack.postgres_url()
    data["database"]["url"] = source_url
    config = write_config(data, live)
    inst = instance(stack, config, live)
    await inst.start()
    try:
        for i in range(5):
            msg = member_mail(unique("membre"), inst.address, subject=f"Avaria {i}")
            msg.add_attachment(PDF, maintype="application", subtype="pdf", filename=f"f{i}.pdf")
            await inst.send(msg)

        engine = create_engine(source_url)

        def count(sql: str) -> int:
            with engine.connect() as conn:
                return conn.execute(text(sql)).scalar_one()

        async def arrived() -> bool:
            return await asyncio.to_thread(count, "SELECT count(*) FROM tickets") >= 5

        await wait_until(arrived, what="5 tickets on PostgreSQL")
        backup = tmp_path_factory.mktemp("pg-backups") / "b"
        started = time.monotonic()
        made = await asyncio.to_thread(cli, "backup", str(backup), "-c", str(config))
        assert made.returncode == 0, made.stderr
        print(f"PostgreSQL backup: {time.monotonic() - started:.1f} s, {made.stdout.strip()}")
        manifest = json.loads((backup / MANIFEST).read_text())
        assert manifest["database"]["kind"] == "postgresql"
        assert manifest["database"]["counts"]["tickets"] == 5
        assert manifest["database"]["migration_heads"]

        refused = await asyncio.to_thread(cli, "restore", str(backup), "-c", str(config))
        assert refused.returncode == 1
        assert "exobot is running on this database" in refused.stderr
    finally:
        await inst.stop()
        engine.dispose()

    # A damaged dump is refused before anything is touched.
    damaged = tmp_path_factory.mktemp("pg-damaged") / "b"
    subprocess.run(["cp", "-r", str(backup), str(damaged)], check=True)
    with open(damaged / "database.dump", "r+b") as handle:
        handle.seek(100)
        handle.write(b"\0" * 50)
    target_url = stack.postgres_url()
    data["database"]["url"] = target_url
    target_config = write_config(data, tmp_path_factory.mktemp("pg-fresh"))
    bad = await asyncio.to_thread(cli, "restore", str(damaged), "-c", str(target_config))
    assert bad.returncode == 1
    assert "does not match its checksum" in bad.stderr

    restored = await asyncio.to_thread(cli, "restore", str(backup), "-c", str(target_config))
    assert restored.returncode == 0, restored.stderr
    source, target = create_engine(source_url), create_engine(target_url)
    try:
        for table in ("tickets", "entries", "attachments", "participants", "mail_messages"):
            query = text(f"SELECT * FROM {table} ORDER BY id")
            with source.connect() as a, target.connect() as b:
                assert a.execute(query).all() == b.execute(query).all(), table
    finally:
        source.dispose()
        target.dispose()

    # The restored database goes on numbering after its last ticket (sequences came along).
    fresh = instance(stack, target_config, Path(target_config).parent)
    await fresh.start()
    try:
        await fresh.send(member_mail(unique("membre"), fresh.address, subject="Nova"))
        engine = create_engine(target_url)

        def newest() -> tuple | None:
            with engine.connect() as conn:
                return conn.execute(
                    text("SELECT id, title FROM tickets WHERE title = 'Nova'")
                ).first()

        async def numbered() -> tuple | None:
            return await asyncio.to_thread(newest)

        row = await wait_until(numbered, what="the new ticket on the restored database")
        assert row[0] == 6
        engine.dispose()
    finally:
        await fresh.stop()
