"""The soak (issue 17, part 4): a real `exobot run` process on the real stack (Dovecot, the SMTP
relay, Synapse; SQLite or PostgreSQL; web and API on; the bundled plugins enabled) for
EXOBOT_SOAK_SECONDS (default 600) with four writers at once:

- mail: bursts of 20-50 member mails through SMTP every 20-40 s, new requests (some with an
  IBAN, so masking and its advice mail work too) and replies to earlier tickets;
- chat: three volunteers in the queue room, each sending `!take`, `!comment`, `!status`,
  `!show` in tickets' threads, one at a time, waiting for the answer;
- web: a volunteer logged in with the password form, commenting and changing statuses;
- API: a token listing, showing and acting (comment, status).

At the end, after the backlog drains: no "database is locked", no ERROR or traceback in
exobot's log; every mail in exactly one ticket (the one it replies to); every command answered
exactly once; every outbox row sent; /healthz answered 200 at every sample. The figures
(counts, latencies, memory of exobot and its parse workers) are printed in the terminal
summary and written to `.stack/soak-BACKEND.txt` and the test's tmp dir.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.policy
import os
import random
import re
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

import httpx
import pytest
import sqlalchemy
import yaml
from harness import DEADLINE, ROOT, create_token_cli, free_port, instance_config, unique
from matrix_harness import (
    MatrixUser,
    body_of,
    is_edit,
    is_room_notice,
    reply_to_of,
    sender_of,
)
from sqlalchemy.pool import NullPool

from devstack.matrix_setup import invite, join
from devstack.processes import cpu_seconds, descendants, memory_kb, process_roles
from exobot.matrix.render import Renderer

pytestmark = [pytest.mark.long, pytest.mark.asyncio]

SOAK_SECONDS = float(os.environ.get("EXOBOT_SOAK_SECONDS", "600"))
# After the writers stop: how long the backlog (mails, outbox, chat) may take to drain.
DRAIN_SECONDS = max(300.0, DEADLINE)
# How long one command may wait for its answer before it counts as unanswered.
ANSWER_SECONDS = 2 * DEADLINE
HEALTH_EVERY = 2.0
QUIET_AFTER_BURST = 15.0
# The bot's answer to a command it could not decrypt (exobot's language is Catalan here).
UNREADABLE = Renderer("ca").undecryptable().body
MEMORY_EVERY = 5.0
PLUGINS = {"saved-replies": {}, "procedures": {}, "connectivity": {}}
IBAN = "ES91 2100 0418 4502 0005 1332"  # a valid test IBAN: masked, flags the ticket

# Log lines that are expected in a soak; each needs its reason. (None so far: an ERROR or a
# traceback in a normal run is a bug.)
ALLOWED_LOG: tuple[tuple[re.Pattern[str], str], ...] = ()
_LOG_PROBLEM = re.compile(r"database is locked|Traceback|^\S+ \S+ (ERROR|CRITICAL) ", re.M)


# ----------------------------------------------------------------------------- helpers


class Db:
    """Read-only queries from the test on exobot's database (SQLite or PostgreSQL), each on a
    fresh connection, in a thread."""

    def __init__(self, url: str) -> None:
        self.engine = sqlalchemy.create_engine(url, poolclass=NullPool)

    def _rows(self, sql: str, params: dict) -> list[tuple]:
        with self.engine.connect() as conn:
            return [tuple(row) for row in conn.execute(sqlalchemy.text(sql), params)]

    async def rows(self, sql: str, **params: object) -> list[tuple]:
        """Every row of a query."""
        return await asyncio.to_thread(self._rows, sql, params)

    async def scalar(self, sql: str, **params: object) -> object:
        """The first column of the first row."""
        rows = await self.rows(sql, **params)
        return rows[0][0] if rows else None


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants (exobot's fork server and parse workers), from /proc."""
    return [pid, *descendants(pid)]


def tree_rss(pid: int) -> tuple[int, int]:
    """(RSS in bytes summed over the process tree, number of processes)."""
    sizes = [memory_kb(p)[0] for p in process_tree(pid)]
    return sum(sizes) * 1024, sum(1 for size in sizes if size)


def tree_pss(pid: int) -> int:
    """PSS in bytes summed over the process tree: shared pages (forked workers share most of
    theirs with the parent) counted once in all, unlike RSS."""
    return sum(memory_kb(p)[1] for p in process_tree(pid)) * 1024


def tree_listing(pid: int) -> str:
    """Each process of the tree: what it is and its RSS."""
    parts = []
    for p, name in process_roles(pid):
        rss = memory_kb(p)[0]
        if rss:
            parts.append(f"{name} {rss / 1024:.0f} MB")
    return ", ".join(parts)


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) of the process tree, waited-for children included."""
    return sum(cpu_seconds(p) for p in process_tree(pid))


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) by the nearest-rank method; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def bare(message_id: str | None) -> str:
    """A Message-ID without its angle brackets (as compared)."""
    return (message_id or "").strip().strip("<>")


@dataclass
class Figures:
    """What the writers did and saw."""

    mails: dict[str, int | None] = field(default_factory=dict)  # Message-ID → ticket replied to
    requests: list[tuple[str, str, str]] = field(default_factory=list)  # member, msgid, subject
    with_iban: int = 0
    t0: float = 0.0  # when the load started (time.monotonic())
    bursts: list[tuple[float, int]] = field(default_factory=list)  # t, mails
    commands: list[dict] = field(default_factory=list)  # volunteer, text, event, latency
    web: list[tuple[str, int, float]] = field(default_factory=list)  # what, status, seconds
    api: list[tuple[str, int, float]] = field(default_factory=list)
    health: list[tuple[int, float]] = field(default_factory=list)  # status (0: no answer), s
    memory: list[tuple[float, int, int]] = field(default_factory=list)  # t, bytes, processes


# ----------------------------------------------------------------------------- the test


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_soak(backend, stack, matrix_setup, matrix_login, tmp_path, long_reports):
    if backend == "postgresql" and stack.postgres_port is None:
        pytest.skip("the test stack runs without PostgreSQL")
    started_at = time.monotonic()
    rng = random.Random(f"soak-{backend}")
    setup = matrix_setup(encrypted={"suport"})  # as a deployment should have it
    password = setup.volunteer_password
    # Two more volunteers in every queue room (operators: joined members of the rooms).
    others = []
    for name in ("voluntaria", "voluntarib"):
        user = stack.register_matrix_user(f"{name}{setup.tag}", password, exist_ok=True)
        for room in setup.rooms.values():
            invite(stack, setup.volunteer_access_token, room, user["user_id"])
            join(stack, user["access_token"], room)
        others.append(user["user_id"])
    volunteer_ids = [setup.volunteer_user_id, *others]

    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'exobot.db'}"
    else:
        url = stack.postgres_url(f"soak_{uuid.uuid4().hex[:12]}")
    web_port = free_port()
    data = instance_config(stack, tmp_path, matrix=setup, web=f"127.0.0.1:{web_port}")
    data["database"]["url"] = url
    data["plugins"] = PLUGINS
    config = tmp_path / "config.yaml"
    config.touch(mode=0o600)
    config.write_text(yaml.safe_dump(data))
    address = data["mail"]["address"]
    base = f"http://127.0.0.1:{web_port}"
    suport = setup.rooms["suport"]
    db = Db(url)
    figures = Figures()
    failures: list[str] = []

    log_path = tmp_path / "exobot.log"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "exobot.cli", "run", "-c", str(config)],
            cwd=ROOT,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        vols = [await matrix_login(uid, password, setup.homeserver) for uid in volunteer_ids]
        async with httpx.AsyncClient(base_url=base, timeout=60) as probe:
            await _wait_healthy(probe, process, log_path)
        await _wait_chat_ready(vols[0], suport, setup.bot_user_id, process)
        token = await create_token_cli(config, setup.volunteer_user_id, "soak", env)
        rss_start, procs_start = tree_rss(process.pid)
        pss_start = tree_pss(process.pid)
        listing = tree_listing(process.pid)
        cpu_start = tree_cpu(process.pid)
        figures.memory.append((0.0, rss_start, procs_start))

        soak_start = figures.t0 = time.monotonic()
        deadline = soak_start + SOAK_SECONDS
        stop = asyncio.Event()
        watchers = [
            asyncio.create_task(_health_sampler(base, figures, stop)),
            asyncio.create_task(_memory_sampler(process.pid, figures, stop, soak_start)),
        ]
        writers = [
            asyncio.create_task(_mail_writer(stack, address, db, figures, rng, deadline)),
            *(
                asyncio.create_task(
                    _chat_writer(
                        vol,
                        suport,
                        setup.bot_user_id,
                        db,
                        figures,
                        rng,
                        deadline,
                        # One command, a third into the run, whose room key the first
                        # volunteer withholds from the bot: the "send it again" path under load.
                        withhold_at=soak_start + SOAK_SECONDS / 3 if vol is vols[0] else None,
                    )
                )
                for vol in vols
            ),
            asyncio.create_task(
                _web_writer(base, setup.volunteer_user_id, password, db, figures, rng, deadline)
            ),
            asyncio.create_task(_api_writer(base, token, db, figures, rng, deadline)),
        ]
        results = await asyncio.gather(*writers, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                failures.append(f"a writer failed: {result!r}")
        soak_seconds = time.monotonic() - soak_start

        drain_start = time.monotonic()
        failures += await _drain(db, figures, vols, suport, process)
        drain_seconds = time.monotonic() - drain_start
        stop.set()
        await asyncio.gather(*watchers)
        rss_end, procs_end = tree_rss(process.pid)
        pss_end = tree_pss(process.pid)
        cpu = tree_cpu(process.pid) - cpu_start

        failures += await _check_mails(db, figures)
        failures += _check_commands(figures, vols, suport, setup.bot_user_id)
        failures += _check_unreadable(figures)
        failures += await _check_outbox(db)
        bad_health = [s for s in figures.health if s[0] != 200]
        if bad_health or not figures.health:
            failures.append(f"/healthz not 200 at {len(bad_health)} of {len(figures.health)}")
        # A 4xx is a refusal the writers provoke at random (a status the ticket already has:
        # 400 on the web, 409 in the API), listed in the report; a 5xx or no answer fails.
        for what, calls in (("web", figures.web), ("API", figures.api)):
            errors = Counter(status for _, status, _ in calls if status >= 500 or status == 0)
            if errors:
                failures.append(f"{what}: server errors or no answer {dict(errors)}")
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(process.wait, 60)
            except subprocess.TimeoutExpired:
                process.kill()
                failures.append("exobot did not stop within 60 s of SIGTERM")
    if process.returncode != 0:
        failures.append(f"exobot exited with {process.returncode}")
    log_text = log_path.read_text(errors="replace")
    failures += _check_log(log_text)

    counts = Counter(c["verb"] for c in figures.commands)
    latencies = [c["latency"] for c in figures.commands if c["latency"] is not None]
    web_ok = Counter(status for _, status, _ in figures.web)
    api_ok = Counter(status for _, status, _ in figures.api)
    rss_max = max(figures.memory, key=lambda m: m[1])
    tickets = await db.scalar("SELECT count(*) FROM tickets")
    sent = await db.scalar("SELECT count(*) FROM outbox WHERE state = 'sent'")
    slowest = sorted(
        (c for c in figures.commands if c["latency"] is not None), key=lambda c: -c["latency"]
    )[:3]
    # Commands typed while no burst was fresh (the last began QUIET_AFTER_BURST s before or
    # more): what a volunteer sees between bursts.
    quiet = [
        c["latency"]
        for c in figures.commands
        if c["latency"] is not None
        and all(not 0 <= c["at"] - t < QUIET_AFTER_BURST for t, _ in figures.bursts)
    ]
    unreadable = [c for c in figures.commands if c["unreadable"] is not None]
    refused = Counter(
        f"{where} {what} {status}"
        for where, calls in (("web", figures.web), ("API", figures.api))
        for what, status, _ in calls
        if status >= 400
    )
    report = "\n".join(
        [
            f"soak on {backend}: {soak_seconds:.0f} s of load (EXOBOT_SOAK_SECONDS="
            f"{SOAK_SECONDS:.0f}), drained in {drain_seconds:.0f} s, "
            f"{time.monotonic() - started_at:.0f} s in all",
            f"  mails: {len(figures.mails)} in {len(figures.bursts)} bursts "
            f"({len(figures.requests)} new requests, {len(figures.mails) - len(figures.requests)}"
            f" replies, {figures.with_iban} with an IBAN) -> {tickets} tickets",
            f"  commands: {len(figures.commands)} from {len(vols)} volunteers "
            f"({', '.join(f'{k} {v}' for k, v in sorted(counts.items()))}); latency sent -> "
            f"answer seen p50 {ms(percentile(latencies, 50))}, p95 "
            f"{ms(percentile(latencies, 95))}, max {ms(max(latencies, default=0))}",
            f"  commands away from bursts ({len(quiet)}, sent {QUIET_AFTER_BURST:.0f} s or more "
            f"after a burst began): p50 {ms(percentile(quiet, 50))}, p95 "
            f"{ms(percentile(quiet, 95))}",
            '  commands the bot could not decrypt (answered "send it again", sent again): '
            + (
                ", ".join(
                    f"{c['text'][:20]!r} at {c['at']:.0f} s, told after {c['unreadable']:.0f} s"
                    f" (time {c['told']} in a row)"
                    for c in unreadable
                )
                or "none"
            ),
            "  volunteers' room keys that missed a device and were shared again: "
            + _key_share_misses(vols),
            "  slowest commands: "
            + ", ".join(
                f"{c['text'][:20]!r} {ms(c['latency'])} at {c['at']:.0f} s" for c in slowest
            )
            + "; bursts (s: mails): "
            + ", ".join(f"{t:.0f}: {n}" for t, n in figures.bursts),
            f"  web: {len(figures.web)} requests {dict(web_ok)}, p95 "
            f"{ms(percentile([s for _, _, s in figures.web], 95))}; API: {len(figures.api)} "
            f"requests {dict(api_ok)}, p95 {ms(percentile([s for _, _, s in figures.api], 95))}"
            f"; refusals (4xx): {dict(refused) or 'none'}",
            f"  /healthz: {len(figures.health)} samples, "
            f"{sum(1 for s, _ in figures.health if s == 200)} answered 200, p95 "
            f"{ms(percentile([s for _, s in figures.health], 95))}",
            f"  outbox: {sent} rows sent; exobot CPU {cpu:.0f} s "
            f"({cpu / max(1, len(figures.mails)) * 1000:.0f} ms per mail, all work included)",
            f"  memory (RSS summed over exobot and its children): start "
            f"{rss_start / 2**20:.0f} MB ({procs_start} processes), max "
            f"{rss_max[1] / 2**20:.0f} MB ({rss_max[2]} processes, at {rss_max[0]:.0f} s), end "
            f"{rss_end / 2**20:.0f} MB ({procs_end} processes); PSS start "
            f"{pss_start / 2**20:.0f} MB, end {pss_end / 2**20:.0f} MB",
            f"  processes at start: {listing}",
            f"  RSS over time: {_memory_curve(figures.memory)}",
            f"  log: {_log_summary(log_text)}",
            f"  {'FAILED: ' + '; '.join(failures) if failures else 'all checks passed'}",
        ]
    )
    long_reports.append(report)
    (tmp_path / f"soak-{backend}.txt").write_text(report + "\n")
    stack_dir = ROOT / ".stack"
    if stack_dir.is_dir():
        (stack_dir / f"soak-{backend}.txt").write_text(report + "\n")
    assert not failures, report


# ----------------------------------------------------------------------------- start


async def _wait_healthy(client: httpx.AsyncClient, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 3 * DEADLINE
    while True:
        if process.poll() is not None:
            pytest.fail(f"exobot exited with {process.returncode}: {log.read_text()[-3000:]}")
        try:
            if (await client.get("/healthz")).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"/healthz never answered 200: {log.read_text()[-3000:]}")
        await asyncio.sleep(0.2)


async def _wait_chat_ready(vol: MatrixUser, room: str, bot: str, process) -> None:  # noqa: ANN001
    """A command said before the bot's first sync is backlog it rightly skips: ask `!ajuda`
    until one is answered."""
    deadline = time.monotonic() + 3 * DEADLINE
    while time.monotonic() < deadline and process.poll() is None:
        mark = vol.mark(room)
        await vol.send(room, "!ajuda")
        for _ in range(50):
            if any(sender_of(e) == bot for e in vol.events(room)[mark:]):
                return
            await asyncio.sleep(0.1)
    pytest.fail("exobot never answered !ajuda")


# ----------------------------------------------------------------------------- writers


async def _pause(rng: random.Random, low: float, high: float, deadline: float) -> None:
    await asyncio.sleep(max(0.0, min(rng.uniform(low, high), deadline - time.monotonic())))


SUBJECTS = (
    "No em funciona internet",
    "La connexió va molt lenta",
    "Factura duplicada",
    "Canvi de domiciliació",
    "No puc enviar correus",
    "El router parpelleja en vermell",
    "Baixa del servei",
)
BODIES = (
    "Hola,\n\ndes d'ahir al vespre no tinc connexió. He reiniciat el router i res.\n",
    "Bon dia,\n\nla velocitat és molt baixa des de fa una setmana.\n\nGràcies",
    "Hola,\n\nm'heu cobrat dues vegades aquest mes.\n",
    "Buenas,\n\nno me funciona el correo desde esta mañana.\n",
)


async def _mail_writer(stack, address, db: Db, figures: Figures, rng, deadline) -> None:  # noqa: ANN001
    """Bursts of 20-50 member mails (new requests and replies) every 20-40 s."""
    while time.monotonic() < deadline:
        known = {
            bare(message_id): ticket
            for message_id, ticket in await db.rows(
                "SELECT message_id, ticket_id FROM inbound_mail"
                " WHERE state = 'done' AND ticket_id IS NOT NULL"
            )
        }
        replyable = [r for r in figures.requests if bare(r[1]) in known]
        burst: list[tuple[EmailMessage, int | None]] = []
        for _ in range(rng.randint(20, 50)):
            msg = EmailMessage()
            msg["To"] = address
            msg["Message-ID"] = make_msgid(domain="member.example.org")
            body = rng.choice(BODIES)
            if replyable and rng.random() < 0.3:
                member, original, subject = rng.choice(replyable)
                ticket = known[bare(original)]
                msg["From"] = member
                msg["Subject"] = f"Re: [suport#{ticket}] {subject}"
                msg["In-Reply-To"] = original
                msg["References"] = original
                expected: int | None = ticket
                body = "Encara no funciona, us ho torno a dir.\n\n" + body
            else:
                member = unique("membre")
                subject = f"{rng.choice(SUBJECTS)} {uuid.uuid4().hex[:6]}"
                msg["From"] = member
                msg["Subject"] = subject
                if rng.random() < 0.1:
                    body += f"\nEl meu compte és {IBAN}.\n"
                    figures.with_iban += 1
                figures.requests.append((member, msg["Message-ID"], subject))
                expected = None
            msg.set_content(body)
            burst.append((msg, expected))
            figures.mails[msg["Message-ID"]] = expected

        def send(burst=burst) -> None:
            for msg, _ in burst:
                raw = msg.as_bytes(policy=email.policy.SMTP)
                stack.send_mail(raw, msg["From"], [address])

        await asyncio.to_thread(send)
        figures.bursts.append((time.monotonic() - figures.t0, len(burst)))
        await _pause(rng, 20, 40, deadline)


COMMANDS = (
    ("take", "!take"),
    ("comment", "!comment {note}"),
    ("status", "!status stalled"),
    ("status", "!status open"),
    ("status", "!status resolved"),
    ("show", "!show"),
)


async def _threads(db: Db, room: str) -> list[tuple[int, str]]:
    return await db.rows(
        "SELECT ticket_id, root_event_id FROM chat_threads WHERE room_id = :room", room=room
    )


async def _chat_writer(  # noqa: ANN001
    vol: MatrixUser, room, bot, db: Db, figures, rng, deadline, withhold_at: float | None = None
) -> None:
    """One volunteer: a command in a random ticket's thread, the answer awaited, a pause. The
    first command after `withhold_at` is sent with its room key withheld from the bot."""
    resend: tuple[str, str, str] | None = None  # (thread root, verb, text) to send again
    told = 0  # times in a row the bot said it could not read this command
    while time.monotonic() < deadline:
        threads = await _threads(db, room)
        if not threads:
            await asyncio.sleep(1)
            continue
        if resend is None:
            _, root = rng.choice(threads)
            verb, text = rng.choice(COMMANDS)
            text = text.format(note=f"nota {uuid.uuid4().hex[:8]} de {vol.user_id}")
        else:
            root, verb, text = resend
            if told >= 2:
                # The answer's advice when it comes again: /discardsession, which in Element
                # drops the room's outbound key, so the next message starts a new one.
                vol.client.invalidate_outbound_session(room)
        # Never a command sent again: its count of unreadable answers in a row is its own.
        withheld = resend is None and withhold_at is not None and time.monotonic() >= withhold_at
        mark = vol.mark(room)
        sent_at = time.monotonic()
        if withheld:
            withhold_at = None
            event_id = await _send_withheld_from(vol, bot, room, text, root)
        else:
            event_id = await vol.send(room, text, thread_root=root)
        answer = None
        while answer is None and time.monotonic() - sent_at < ANSWER_SECONDS:
            answer = next(
                (
                    e
                    for e in vol.events(room)[mark:]
                    if sender_of(e) == bot and reply_to_of(e) == event_id
                ),
                None,
            )
            if answer is None:
                await asyncio.sleep(0.02)
        waited = time.monotonic() - sent_at
        # The bot could not decrypt it (its room key never reached the bot's device) and said
        # so: a volunteer sends it again, as told (after /discardsession the second time). Its
        # wait is not a command's latency.
        unreadable = answer is not None and UNREADABLE in (body_of(answer) or "")
        figures.commands.append(
            {
                "volunteer": vol.user_id,
                "verb": verb,
                "text": text,
                "event": event_id,
                "latency": waited if answer is not None and not unreadable else None,
                "unreadable": waited if unreadable else None,
                "withheld": withheld,
                "told": told + 1 if unreadable else 0,
                "at": sent_at - figures.t0,
            }
        )
        told = told + 1 if unreadable else 0
        resend = (root, verb, text) if unreadable else None
        if resend is None:
            await _pause(rng, 0.5, 2.0, deadline)


async def _send_withheld_from(vol: MatrixUser, bot: str, room: str, text: str, root: str) -> str:
    """Send a command in a new room key that the bot's devices do not get (as when its
    to-device message is lost): blocked for the send, unblocked after, each a new key."""
    devices = list(vol.client.device_store.active_user_devices(bot))
    for device in devices:
        vol.client.blacklist_device(device)
    try:
        return await vol.send(room, text, thread_root=root)
    finally:
        for device in devices:
            vol.client.unblacklist_device(device)


_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


async def _web_writer(base, user, password, db: Db, figures, rng, deadline) -> None:  # noqa: ANN001
    """A volunteer's browser session: a ticket's page, then a comment or a status change."""
    async with httpx.AsyncClient(base_url=base, timeout=60) as web:
        form = await web.get("/login")
        login = await web.post(
            "/login",
            data={"user": user, "password": password, "csrf": _CSRF.search(form.text).group(1)},
        )
        assert login.status_code == 303, login.text
        while time.monotonic() < deadline:
            numbers = [n for (n,) in await db.rows("SELECT id FROM tickets")]
            if not numbers:
                await asyncio.sleep(1)
                continue
            number = rng.choice(numbers)
            page = await _timed(figures.web, "page", web.get(f"/tickets/{number}"))
            match = _CSRF.search(page.text) if page is not None else None
            if match:
                fields = {"csrf": match.group(1), "nonce": uuid.uuid4().hex}
                if rng.random() < 0.5:
                    action = "comment"
                    fields["text"] = f"comentari web {uuid.uuid4().hex[:8]}"
                else:
                    action = "status"
                    fields["status"] = rng.choice(("open", "stalled", "resolved"))
                await _timed(
                    figures.web, action, web.post(f"/tickets/{number}/{action}", data=fields)
                )
            await _pause(rng, 0.5, 1.5, deadline)


async def _api_writer(base, token, db: Db, figures, rng, deadline) -> None:  # noqa: ANN001
    """An API client: list, show, and a comment or a status change."""
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=f"{base}/api/v1", headers=headers, timeout=60) as api:
        while time.monotonic() < deadline:
            listed = await _timed(figures.api, "list", api.get("/tickets"))
            numbers = [t["number"] for t in listed.json()["tickets"]] if listed else []
            if listed is not None and listed.status_code == 200 and numbers:
                number = rng.choice(numbers)
                await _timed(figures.api, "show", api.get(f"/tickets/{number}"))
                key = {"Idempotency-Key": uuid.uuid4().hex}
                if rng.random() < 0.5:
                    body = {"text": f"comentari API {uuid.uuid4().hex[:8]}"}
                    action = "comment"
                else:
                    body = {"status": rng.choice(("open", "stalled", "resolved"))}
                    action = "status"
                request = api.post(f"/tickets/{number}/actions/{action}", json=body, headers=key)
                await _timed(figures.api, action, request)
            else:
                await asyncio.sleep(1)
            await _pause(rng, 0.5, 1.5, deadline)


async def _timed(calls: list, what: str, request) -> httpx.Response | None:  # noqa: ANN001
    start = time.monotonic()
    try:
        response = await request
    except httpx.HTTPError:
        calls.append((what, 0, time.monotonic() - start))
        return None
    calls.append((what, response.status_code, time.monotonic() - start))
    return response


async def _health_sampler(base: str, figures: Figures, stop: asyncio.Event) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        while not stop.is_set():
            start = time.monotonic()
            try:
                status = (await client.get("/healthz")).status_code
            except httpx.HTTPError:
                status = 0
            figures.health.append((status, time.monotonic() - start))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), HEALTH_EVERY)


async def _memory_sampler(pid: int, figures: Figures, stop: asyncio.Event, t0: float) -> None:
    while not stop.is_set():
        rss, count = tree_rss(pid)
        figures.memory.append((time.monotonic() - t0, rss, count))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), MEMORY_EVERY)


# ----------------------------------------------------------------------------- drain, checks


async def _drain(db: Db, figures: Figures, vols, room: str, process) -> list[str]:  # noqa: ANN001
    """Wait until every mail is processed, the outbox is empty and every volunteer has seen
    every chat post (so a duplicate answer would be seen too)."""
    deadline = time.monotonic() + DRAIN_SECONDS
    total = len(figures.mails)
    waits = (
        (
            "every mail processed",
            "SELECT count(*) FROM inbound_mail WHERE state != 'received'",
            lambda n: n >= total,
        ),
        (
            "the outbox empty",
            "SELECT count(*) FROM outbox WHERE state = 'pending'",
            lambda n: n == 0,
        ),
    )
    for what, sql, ok in waits:
        while not ok(await db.scalar(sql)):
            if process.poll() is not None:
                return [f"exobot exited ({process.returncode}) while draining"]
            if time.monotonic() > deadline:
                return [f"not drained within {DRAIN_SECONDS:.0f} s: {what}"]
            await asyncio.sleep(0.5)
    posts = {
        e for (e,) in await db.rows("SELECT event_id FROM chat_posts WHERE room_id = :r", r=room)
    }
    while True:
        missing = [v.user_id for v in vols if not posts <= {e["event_id"] for e in v.events(room)}]
        if not missing:
            return []
        if time.monotonic() > deadline:
            return [f"chat posts never reached {missing}"]
        await asyncio.sleep(0.5)


async def _check_mails(db: Db, figures: Figures) -> list[str]:
    """Each mail sent is one `done` inbound mail in one ticket: a reply in the ticket it
    replies to, a new request in a ticket of its own."""
    inbound: dict[str, list[tuple[str, int | None]]] = {}
    for message_id, state, ticket in await db.rows(
        "SELECT message_id, state, ticket_id FROM inbound_mail"
    ):
        inbound.setdefault(bare(message_id), []).append((state, ticket))
    threaded: dict[str, set[int]] = {}
    for message_id, ticket in await db.rows(
        "SELECT message_id, ticket_id FROM mail_messages WHERE direction = 'in'"
    ):
        threaded.setdefault(bare(message_id), set()).add(ticket)
    problems: list[str] = []
    new_tickets: Counter[int] = Counter()
    for message_id, expected in figures.mails.items():
        rows = inbound.get(bare(message_id), [])
        tickets = threaded.get(bare(message_id), set())
        if len(rows) != 1 or rows[0][0] != "done" or rows[0][1] is None:
            problems.append(f"{message_id}: inbound {rows}")
        elif tickets != {rows[0][1]}:
            problems.append(f"{message_id}: in tickets {tickets}, inbound says {rows[0][1]}")
        elif expected is not None and rows[0][1] != expected:
            problems.append(f"{message_id}: in ticket {rows[0][1]}, replied to {expected}")
        elif expected is None:
            new_tickets[rows[0][1]] += 1
    shared = [t for t, n in new_tickets.items() if n > 1]
    if shared:
        problems.append(f"new requests sharing a ticket: {shared[:10]}")
    extra = set(inbound) - {bare(m) for m in figures.mails}
    if extra:
        problems.append(f"{len(extra)} inbound mails nobody sent: {sorted(extra)[:5]}")
    if problems:
        return [f"{len(problems)} mail problems, e.g. {problems[:5]}"]
    return []


def _check_commands(figures: Figures, vols, room: str, bot: str) -> list[str]:  # noqa: ANN001
    """Every command answered exactly once (one bot message replying to it, edits aside),
    as every volunteer's client saw the room."""
    problems: list[str] = []
    for vol in vols:
        answers = Counter(
            reply_to_of(e)
            for e in vol.events(room)
            if sender_of(e) == bot
            and e.get("type") == "m.room.message"
            and not is_edit(e)
            and not is_room_notice(e)
        )
        for command in figures.commands:
            n = answers.get(command["event"], 0)
            if n != 1:
                problems.append(f"{command['text']!r} answered {n} times (seen by {vol.user_id})")
    if problems:
        return [f"{len(problems)} command problems, e.g. {problems[:5]}"]
    return []


def _key_share_misses(vols) -> str:  # noqa: ANN001 - MatrixUser
    """Per volunteer whose room key missed a device: how many times, the first devices, and
    why the requests failed (as the harness recorded them)."""
    return (
        ", ".join(
            f"{v.user_id.split(':')[0]} {len(v.key_share_misses)} ("
            + "; ".join(
                " ".join(device for _user, device in missed)
                for _room, missed in v.key_share_misses[:3]
            )
            + f"; why: {'; '.join(v.client.key_share_failures[:3]) or 'not told'})"
            for v in vols
            if v.key_share_misses
        )
        or "none"
    )


def _check_unreadable(figures: Figures) -> list[str]:
    """The command sent without its key for the bot was answered "send it again", and the
    answer's advice works: no command is unreadable a third time (after /discardsession)."""
    problems = []
    withheld = [c for c in figures.commands if c["withheld"]]
    if len(withheld) != 1:
        problems.append(f"{len(withheld)} commands sent with their key withheld from the bot")
    elif withheld[0]["unreadable"] is None:
        problems.append(
            f"the command withheld from the bot was not answered as unreadable: {withheld}"
        )
    stuck = [c for c in figures.commands if c["told"] > 2]
    if stuck:
        problems.append(f"commands unreadable even after /discardsession: {stuck[:3]}")
    return problems


async def _check_outbox(db: Db) -> list[str]:
    rows = dict(await db.rows("SELECT state, count(*) FROM outbox GROUP BY state"))
    unsent = {state: n for state, n in rows.items() if state != "sent"}
    return [f"outbox rows not sent: {unsent}"] if unsent else []


def _check_log(log: str) -> list[str]:
    """No "database is locked", ERROR, CRITICAL or traceback, except the allowed lines."""
    bad = []
    for line in log.splitlines():
        if not _LOG_PROBLEM.search(line):
            continue
        if any(pattern.search(line) for pattern, _reason in ALLOWED_LOG):
            continue
        bad.append(line[:300])
    return [f"{len(bad)} log problems, e.g. {bad[:5]}"] if bad else []


def _memory_curve(samples: list[tuple[float, int, int]]) -> str:
    """RSS at five points of the run (a steady climb would be a leak)."""
    if not samples:
        return "no samples"
    points = [samples[round(i * (len(samples) - 1) / 4)] for i in range(5)]
    return ", ".join(f"{t:.0f} s {rss / 2**20:.0f} MB" for t, rss, _ in points)


def _log_summary(log: str) -> str:
    """Lines and warnings, with the most repeated warning (log spam shows here)."""
    lines = log.splitlines()
    warnings = Counter(line.split(" WARNING ", 1)[1][:80] for line in lines if " WARNING " in line)
    top = warnings.most_common(1)
    most = f"; most repeated warning x{top[0][1]}: {top[0][0]!r}" if top else ""
    return f"{len(lines)} lines, {sum(warnings.values())} warnings{most}"
