"""Web benchmark: server time of the ticket list, filtered lists, ticket pages and searches.

    .venv/bin/python bench/bench_web.py [--tickets N] [--entries M] [--samples K]
                                        [--database sqlite|postgresql]

Seeds a fresh SQLite database (the real migrations, then bulk SQL, not the service) with N
tickets (default 100,000) and M history entries (default 500,000) with their search index, in a
temporary directory; builds the real web application over it (`exobot.web.app.create_app`, the
real repository and service, a logged-in operator's session) and sends it requests in-process
through httpx's ASGI transport, so the time around each request is the server's time: routing,
the session check, the queries and the template. K timed samples per scenario (after a few
warm-up requests): the ticket list, filtered lists, deep pages, ticket pages and searches for
words of varying frequency. Goal: p95 < 100 ms for each.

With `--database postgresql` the seeded SQLite file is moved into a private PostgreSQL cluster
that the bench starts through devstack (Debian's `postgresql` must be installed) with
`exobot db copy`'s own code (timed: the copy of a large installation), and the same requests
are measured there.

Exit code 0 whether or not the goal is met (it is a measurement); 1 when the run itself fails
(e.g. a page answers with an error); 130 when interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import platform
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

# bench/common.py (bench/ is on sys.path as the script's directory); it also puts the repository
# root on sys.path, so it comes before exobot.
from common import PARAGRAPHS, SUBJECTS, BenchError, percentile

from devstack.stack import Stack, StackError, find_free_base_port
from exobot.core.service import ServiceSettings, TicketService
from exobot.db.copy import CopyError, copy_database
from exobot.db.engine import create_engine, create_sync_engine
from exobot.db.migrate import upgrade
from exobot.db.repository import SqlRepository, search_rowid
from exobot.db.web import create_api_token, create_session
from exobot.mail.msgid import MessageIds
from exobot.web.app import create_app
from exobot.web.auth import SESSION_COOKIE
from exobot.web.context import WebContext, WebSettings

GOAL_P95_MS = 100.0
PG_BASE_PORT = 27600  # first base port tried for the PostgreSQL stack (free ones are found)
WARMUP_REQUESTS = 5
HISTORY_YEARS = 3
BIG_TICKET_ENTRIES = 200
SUPPORT = "suport@exo.cat"
QUEUES = ("suport", "tresoreria")
ROOT = "http://exobot.test"

# ------------------------------------------------------------------------------- word lists

VOLUNTEERS = [
    "@marta:exo.cat", "@jordi:exo.cat", "@nuria:exo.cat", "@pau:exo.cat", "@laia:exo.cat",
    "@oriol:exo.cat", "@montse:exo.cat", "@alex:exo.cat", "@carme:exo.cat", "@xavier:exo.cat",
    "@mireia:exo.cat", "@joan:exo.cat", "@aina:exo.cat", "@sergi:exo.cat", "@roser:exo.cat",
    "@quim:exo.cat", "@lucia:exo.cat", "@dani:exo.cat", "@elena:exo.cat", "@toni:exo.cat",
]  # fmt: skip
# Some volunteers take many more tickets than others: the busiest owns about 13 % of them. The
# requests come from that one's session ("owner=mine").
OWNER_WEIGHTS = [1 / (rank + 1) ** 0.6 for rank in range(len(VOLUNTEERS))]
ME = VOLUNTEERS[0]
FIRST_NAMES = [
    "Marta", "Jordi", "Núria", "Pau", "Laia", "Oriol", "Montse", "Àlex", "Carme", "Xavier",
    "Mireia", "Joan", "Aina", "Sergi", "Roser", "Quim", "Lucía", "Javier", "Carmen", "Manuel",
    "Isabel", "Francesc", "Teresa", "Pilar", "Antonio", "Rosa", "Miquel", "Anna", "David", "Eva",
]  # fmt: skip
LAST_NAMES = [
    "Puig", "Vila", "Soler", "Ferrer", "Casals", "Roca", "Serra", "Bosch", "Font", "Pujol",
    "Sala", "Vidal", "Mas", "Coll", "Riera", "Camps", "García", "Martínez", "López", "Sánchez",
    "Pérez", "Romero", "Navarro", "Moreno", "Ruiz", "Jiménez", "Torres", "Gil", "Ramos", "Molina",
]  # fmt: skip
DOMAINS = ["gmail.com", "yahoo.es", "hotmail.com", "exo.cat", "protonmail.com", "telefonica.net"]
TITLES = [
    *SUBJECTS,
    "No tengo conexión desde ayer",
    "Factura incorrecta",
    "Cambio de cuenta bancaria",
    "El wifi se corta cada pocos minutos",
    "Quiero darme de baja",
    "Problema con el router",
    "Consulta sobre la cuota",
    "Devolució d'un rebut",
    "Sol·licitud de factura amb NIF",
    "Instal·lació pendent",
]
PLACES = [
    "Gràcia", "Sants", "el Poblenou", "Sant Andreu", "Horta", "Nou Barris", "Sarrià", "Badalona",
    "l'Hospitalet", "Sabadell", "Terrassa", "Mataró", "Vic", "Manresa",
]  # fmt: skip
GREETINGS = ["Hola,", "Bon dia,", "Bona tarda,", "Hola bon dia,", "Buenos días,", "Hola:"]
CLOSINGS = ["Moltes gràcies,", "Gràcies,", "Salutacions,", "Gracias,", "Un saludo,"]
SENTENCES = [
    *PARAGRAPHS,
    "El router té totes les llums verdes però l'ordinador no troba la xarxa.",
    "Desde ayer por la tarde no tengo internet y el router tiene una luz roja.",
    "Me habéis cobrado dos veces la cuota de este mes, ¿podéis revisarlo?",
    "He cambiado de banco y os paso el nuevo número de cuenta.",
    "El wifi funciona en el comedor pero en las habitaciones no llega.",
    "Necessito la factura amb el NIF de l'empresa per a la gestoria.",
    "Quan plou fort la connexió cau durant una estona i després torna.",
    "El tècnic va venir dimarts però encara no funciona.",
    "Voldria saber si la fibra arribarà aviat al meu carrer.",
    "Em podeu trucar al mòbil a partir de les sis de la tarda?",
    "La quota de l'associació ha pujat i no entenc per què.",
    "He rebut un correu estrany que diu que ve de vosaltres, és de fiar?",
    "La meva mare és gran i no sap fer servir el correu, us escric jo per ella.",
]
RARE_SENTENCES = [  # each in about one mail in 2,000: the "rare word" searches
    "Tinc una antena Starlink al terrat del veí, pot interferir?",
    "El porter automàtic de l'ascensor també ha deixat de funcionar.",
    "Hi ha un niu de falciots just al costat de l'antena.",
]
REPLIES = [
    "Hola, gràcies pel missatge. Ho revisem i et diem alguna cosa aviat.",
    "Hem reiniciat el teu port a la central; prova-ho ara, si us plau.",
    "Ja hem corregit la factura: el rebut duplicat es retornarà la setmana que ve.",
    "Hem canviat el compte bancari; el proper rebut ja anirà al compte nou.",
    "Pots provar de connectar l'ordinador amb cable per descartar el wifi?",
    "Un voluntari passarà dijous a la tarda a revisar l'antena.",
    "Hola, hemos revisado tu caso y ya debería funcionar. Avísanos si no.",
    "Tanquem la incidència; si torna a passar, respon aquest correu.",
]
COMMENTS = [
    "Trucat, no contesta. Ho torno a provar demà.",
    "És el tercer cop que passa en aquest node, caldria revisar el radioenllaç.",
    "Passat a tresoreria per la qüestió del rebut.",
    "Esperant que el soci ens confirmi l'adreça nova.",
    "Revisat el port: té errors CRC, canviem el cable.",
    "Cas resolt per telèfon.",
]
MIDDLE_KINDS = [  # (kind, weight) of the entries between a ticket's first and last ones
    ("mail_in", 35), ("mail_out", 25), ("comment", 20), ("status", 5), ("automatic_in", 5),
    ("alert", 5), ("owner", 5),
]  # fmt: skip

# The status of a ticket by its age: (younger than, days; [(status, cumulative share)]).
STATUS_BY_AGE = [
    (3, [("new", 0.4), ("open", 0.8), ("resolved", 1.0)]),
    (60, [("open", 0.25), ("stalled", 0.3), ("rejected", 0.35), ("new", 0.355), ("resolved", 1.0)]),
    (math.inf, [("open", 0.02), ("stalled", 0.04), ("rejected", 0.1), ("resolved", 1.0)]),
]

# Searches: (label, words); the number of matching tickets is printed with the figures.
SEARCHES = {
    "rare": ["starlink", "ascensor", "falciots"],
    "medium": ["trasllat", "NIF", "titular"],
    "common": ["router", "factura", "connexió"],
    "very common": ["gràcies", "hola"],
    "two words": ["factura duplicada", "router vermell", "cuenta bancaria"],
}


# ----------------------------------------------------------------------------------- seeding


@dataclass
class SeedStats:
    """What the seeding made and how long it took."""

    tickets: int = 0
    entries: int = 0
    index_rows: int = 0
    participants: int = 0
    seconds: float = 0.0
    analyze_seconds: float = 0.0
    size_mb: float = 0.0
    statuses: dict[str, int] = field(default_factory=dict)
    big_ticket: int = 0
    page_tickets: list[int] = field(default_factory=list)  # tickets with 5-20 entries
    reused: bool = False  # read back from an earlier run's database (--reuse)


def _ts(value: datetime) -> str:
    """A timestamp as SQLAlchemy's UtcDateTime stores it on SQLite (UTC, no offset)."""
    return value.strftime("%Y-%m-%d %H:%M:%S.%f")


def _status_for(age_days: float, rng: random.Random) -> str:
    """A realistic status for a ticket of that age: old ones are mostly closed."""
    roll = rng.random()
    for younger_than, mix in STATUS_BY_AGE:
        if age_days < younger_than:
            return next(status for status, up_to in mix if roll < up_to)
    raise AssertionError("unreachable")


def _entry_counts(statuses: list[str], total: int, big: int, rng: random.Random) -> list[int]:
    """Entries per ticket: 2-3 for new tickets, else 3 or more (a long tail), `big` gets
    BIG_TICKET_ENTRIES, and the sum is exactly `total`."""
    counts = [2 + (rng.random() < 0.5) if s == "new" else 3 for s in statuses]
    counts[big] = BIG_TICKET_ENTRIES
    others = [i for i, s in enumerate(statuses) if s != "new" and i != big]
    extra = total - sum(counts)
    mean = extra / max(1, len(others))
    for i in others:  # geometric-like tail around the mean, capped
        counts[i] += min(60, int(rng.expovariate(1 / mean))) if mean > 0 else 0
    diff = total - sum(counts)
    while diff:
        i = rng.choice(others)
        if diff > 0:
            step = min(diff, 1 + diff // len(others))
            counts[i] += step
            diff -= step
        elif counts[i] > 3:
            counts[i] -= 1
            diff += 1
    return counts


class Seeder:
    """Makes the rows: plausible tickets, histories and their search index text."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.message_counter = 0
        self.outbox_counter = 0

    def title(self) -> str:
        """A ticket title, sometimes with a place or "(urgent)"."""
        title = self.rng.choice(TITLES)
        roll = self.rng.random()
        if roll < 0.3:
            title += f" a {self.rng.choice(PLACES)}"
        elif roll < 0.35:
            title += " (urgent)"
        return title

    def person(self, index: int) -> tuple[str, str]:
        """The address and name of requestor `index` (deterministic)."""
        rng = random.Random(index)
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        local = f"{first}.{last}{index}".lower()
        local = local.translate(str.maketrans("àáèéíïòóúüç·", "aaeeiioouuc."))
        return f"{local}@{rng.choice(DOMAINS)}", f"{first} {last}"

    def mail_body(self, name: str) -> str:
        """A member's mail: greeting, 1-4 sentences (rarely a rare one), closing, name."""
        rng = self.rng
        sentences = rng.sample(SENTENCES, rng.randint(1, 4))
        if rng.random() < 0.0015:
            sentences.insert(rng.randrange(len(sentences) + 1), rng.choice(RARE_SENTENCES))
        closing = rng.choice(CLOSINGS) if rng.random() < 0.8 else ""
        return f"{rng.choice(GREETINGS)}\n\n{' '.join(sentences)}\n\n{closing}\n{name}\n"

    def message_id(self) -> str:
        """A fresh Message-ID."""
        self.message_counter += 1
        return f"<{self.message_counter}.{self.rng.getrandbits(40):x}@mail.example.org>"

    def history(
        self, number: int, count: int, status: str, owner: str | None, requestor: str, name: str,
        title: str,
    ) -> list[tuple[str, str, str | None, dict]]:  # fmt: skip
        """`count` entries (kind, actor, body, data) telling a ticket's story, oldest first."""
        rng = self.rng
        tagged = f"[suport#{number}] {title}"  # what replies and auto-replies have as subject
        by_mail = rng.random() < 0.9
        operator = owner or rng.choice(VOLUNTEERS)
        first: list[tuple[str, str, str | None, dict]] = [
            ("created", requestor if by_mail else operator, None,
             {"queue": "suport", "requestor": requestor}),
        ]  # fmt: skip
        if by_mail:
            first.append(
                (
                    "mail_in",
                    requestor,
                    self.mail_body(name),
                    self._mail_data(requestor, name, title),
                )
            )
            first.append(("mail_out", "exobot", None, self._out_data("ack", requestor)))
        else:
            first.append(("comment", operator, rng.choice(COMMENTS), {}))
            first.append(
                ("mail_out", operator, rng.choice(REPLIES), self._out_data("opened", requestor))
            )
        if owner:
            first.append(("owner", owner, None, {"from": None, "to": owner}))
        last = []
        if status in ("resolved", "rejected", "stalled"):
            last.append(("status", operator, None, {"from": "open", "to": status}))
        elif status == "open" and not owner:
            last.append(("status", operator, None, {"from": "new", "to": "open"}))
        head = first[: max(1, count - len(last))]
        tail = last[: count - len(head)]
        middle = []
        kinds, weights = zip(*MIDDLE_KINDS, strict=True)
        for kind in rng.choices(kinds, weights, k=count - len(head) - len(tail)):
            middle.append(self._middle(kind, operator, requestor, name, tagged))
        return head + middle + tail

    def _middle(
        self, kind: str, operator: str, requestor: str, name: str, tagged: str
    ) -> tuple[str, str, str | None, dict]:
        rng = self.rng
        if kind == "mail_in":
            data = self._mail_data(requestor, name, f"Re: {tagged}")
            return kind, requestor, self.mail_body(name), data
        if kind == "automatic_in":
            data = self._mail_data(requestor, name, f"Resposta automàtica: {tagged}")
            return kind, requestor, "Sóc fora de l'oficina fins dilluns.\n", data
        if kind == "mail_out":
            return kind, operator, rng.choice(REPLIES), self._out_data("reply", requestor)
        if kind == "comment":
            return kind, operator, rng.choice(COMMENTS), {}
        if kind == "status":
            a, b = rng.choice([("open", "stalled"), ("stalled", "open")])
            return kind, operator, None, {"from": a, "to": b}
        if kind == "alert":
            return kind, "exobot", None, {"reason": "stalled", "since": "2025-01-01T00:00:00"}
        other = rng.choice(VOLUNTEERS)
        return "owner", other, None, {"from": operator, "to": other}

    def _mail_data(self, sender: str, name: str, subject: str) -> dict:
        return {
            "from": sender, "from_name": name, "subject": subject,
            "message_id": self.message_id(), "cc": [], "attachments": [],
        }  # fmt: skip

    def _out_data(self, template: str, to: str) -> dict:
        self.outbox_counter += 1
        return {
            "template": template, "to": [to], "cc": [], "message_id": self.message_id(),
            "outbox_id": self.outbox_counter,
        }  # fmt: skip


def seed_database(
    path: Path, n_tickets: int, n_entries: int, seed: int, analyze: bool
) -> SeedStats:
    """Migrate a fresh SQLite file and fill it with bulk SQL (not through the service)."""
    stats = SeedStats()
    started = time.perf_counter()
    upgrade(f"sqlite:///{path}")
    rng = random.Random(seed)
    seeder = Seeder(rng)
    now = datetime.now(UTC).replace(microsecond=0)
    span = timedelta(days=365 * HISTORY_YEARS).total_seconds()
    created_offsets = sorted(rng.random() * span for _ in range(n_tickets))
    requestor_pool = max(1, int(n_tickets * 0.3))  # ~30,000 addresses for 100,000 tickets
    statuses = [_status_for((span - off) / 86400, rng) for off in created_offsets]
    big = max(range(n_tickets), key=lambda i: (statuses[i] == "resolved", -abs(i - n_tickets // 2)))
    counts = _entry_counts(statuses, n_entries, big, rng)

    tickets: list[tuple] = []
    participants: list[tuple] = []
    entries: list[tuple] = []  # (time, ticket, kind, actor, body, data json, searchable)
    titles: list[tuple] = []  # (time, ticket, title) for the index
    start = now - timedelta(seconds=span)
    for i in range(n_tickets):
        number = i + 1
        status = statuses[i]
        created = start + timedelta(seconds=created_offsets[i])
        requestor, name = seeder.person(rng.randrange(requestor_pool))
        title = seeder.title()
        queue = "tresoreria" if rng.random() < 0.15 else "suport"
        unowned = {"new": 1.0, "open": 0.15, "stalled": 0.15}.get(status, 0.2)
        owner = None if rng.random() < unowned else rng.choices(VOLUNTEERS, OWNER_WEIGHTS)[0]
        story = seeder.history(number, counts[i], status, owner, requestor, name, title)
        lifetime = rng.uniform(60, 3600) if status == "new" else rng.expovariate(1 / (5 * 86400))
        if status in ("open", "stalled"):
            lifetime *= 4
        updated = min(now, created + timedelta(seconds=lifetime))
        length = (updated - created).total_seconds()
        fractions = sorted(rng.random() for _ in range(len(story) - 1))
        times = [created] + [created + timedelta(seconds=f * length) for f in fractions]
        times[-1] = updated if len(times) > 1 else created
        last_member = None
        for when, (kind, actor, body, data) in zip(times, story, strict=True):
            if kind == "created":
                data = {**data, "queue": queue}
            if kind == "mail_in":
                last_member = when
            searchable = " ".join(filter(None, [data.get("subject"), body]))
            entries.append((when, number, kind, actor, body, json.dumps(data), searchable))
        next_alert = (
            created + timedelta(days=1) if status == "new"
            else updated + timedelta(days=7) if status == "stalled" else None
        )  # fmt: skip
        tickets.append((
            number, title, requestor, owner, queue, status, "ca", _ts(created), _ts(updated),
            _ts(last_member) if last_member else None, _ts(next_alert) if next_alert else None,
        ))  # fmt: skip
        participants.append((number, requestor, "mail", _ts(created)))
        titles.append((created, number, title))
        stats.statuses[status] = stats.statuses.get(status, 0) + 1
        if 5 <= counts[i] <= 20:
            stats.page_tickets.append(number)
    stats.big_ticket = big + 1

    # Entry ids follow time across tickets, as they would in a live database.
    entries.sort(key=lambda e: e[0])
    index: list[tuple] = [(when, number, 0, title) for when, number, title in titles]
    entry_rows = []
    for entry_id, (when, number, kind, actor, body, data, searchable) in enumerate(entries, 1):
        entry_rows.append((entry_id, number, kind, actor, _ts(when), body, data))
        if searchable:
            index.append((when, number, entry_id, searchable))
    index.sort(key=lambda row: (row[0], row[2]))

    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute("PRAGMA cache_size=-200000")
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO tickets (id, title, requestor, owner, queue, status, language,"
            " created_at, updated_at, last_member_mail_at, next_alert_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            tickets,
        )
        conn.executemany(
            "INSERT INTO participants (ticket_id, address, source, created_at) VALUES (?, ?, ?, ?)",
            participants,
        )
        conn.executemany(
            "INSERT INTO entries (id, ticket_id, kind, actor, created_at, body, data)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            entry_rows,
        )
        conn.executemany(  # as SqlUnitOfWork._index writes them
            "INSERT INTO search_index (rowid, ticket_id, entry_id, content) VALUES (?, ?, ?, ?)",
            (
                (search_rowid(number, entry_id), number, entry_id, content)
                for _when, number, entry_id, content in index
            ),
        )
        conn.execute("COMMIT")
        stats.seconds = time.perf_counter() - started
        if analyze:
            began = time.perf_counter()
            conn.execute("ANALYZE")
            conn.execute("PRAGMA optimize")
            stats.analyze_seconds = time.perf_counter() - began
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    stats.tickets, stats.entries = len(tickets), len(entry_rows)
    stats.index_rows, stats.participants = len(index), len(participants)
    stats.size_mb = path.stat().st_size / 1e6
    return stats


def matching_tickets(path: Path, words: str) -> int:
    """How many tickets a search matches (each word quoted, as the repository does)."""
    query = " ".join('"' + w.replace('"', '""') + '"' for w in words.split())
    conn = sqlite3.connect(path)
    try:
        return conn.execute(
            "SELECT count(DISTINCT ticket_id) FROM search_index WHERE search_index MATCH ?",
            (query,),
        ).fetchone()[0]
    finally:
        conn.close()


# ---------------------------------------------------------------------------------- scenarios


@dataclass
class Scenario:
    """A named set of request paths, taken in turn (or shuffled) for each sample."""

    name: str
    paths: list[str]
    note: str = ""
    shuffle: bool = False
    samples: dict[str, list[float]] = field(default_factory=dict)  # surface → seconds
    largest: dict[str, int] = field(default_factory=dict)  # surface → bytes


def scenarios(stats: SeedStats, rng: random.Random, path: Path) -> list[Scenario]:
    """What is measured."""
    q = "+"  # spaces in a query string
    deep = [
        "/tickets?page=50",
        "/tickets?status=resolved&page=200",
        "/tickets?order=updated&page=100",
        "/tickets?order=oldest&page=400",
    ]
    filtered = [
        "/tickets?queue=suport&status=open&owner=mine",
        "/tickets?status=new&status=open",
        "/tickets?queue=tresoreria&status=resolved&order=updated",
        "/tickets?owner=none&status=open,stalled",
        "/tickets?status=stalled&order=oldest",
        "/tickets?owner=mine&order=updated",
    ]
    result = [
        Scenario("list", ["/tickets"], "first page, default sort"),
        Scenario("list filtered", filtered, f"{len(filtered)} filters in turn"),
        Scenario("list deep page", deep, "pages 50-400 of several sorts"),
        Scenario(
            "ticket page",
            [
                f"/tickets/{n}"
                for n in rng.sample(stats.page_tickets, min(2000, len(stats.page_tickets)))
            ],
            "random tickets with 5-20 entries",
            shuffle=True,
        ),
        Scenario(
            "ticket page, 200 entries",
            [f"/tickets/{stats.big_ticket}"],
            f"suport#{stats.big_ticket}",
        ),
    ]
    for label, words in SEARCHES.items():
        counts = ", ".join(f"{w} {matching_tickets(path, w)}" for w in words)
        result.append(
            Scenario(
                f"search {label}",
                ["/tickets?q=" + w.replace(" ", q) for w in words],
                f"matching tickets: {counts}",
            )
        )
    result.append(
        Scenario(
            "search + filter",
            ["/tickets?q=router&status=open", "/tickets?q=factura&queue=tresoreria&page=3"],
            "search words with a status or queue filter",
        )
    )
    return result


# --------------------------------------------------------------------------------- measuring


SURFACES = {"pages": "", "API": "/api/v1"}  # the same paths under each prefix


async def measure_all(url: str, plan: list[Scenario], samples: int, seed: int, api: bool) -> None:
    """Build the web app over the seeded database and time every scenario's requests."""
    repository = SqlRepository(create_engine(url), create_sync_engine(url))
    service = TicketService(
        repository,
        MessageIds("bench" * 8, "exo.cat"),
        ServiceSettings(
            prefix="suport", default_queue="suport", queues=frozenset(QUEUES), own_address=SUPPORT
        ),
    )
    settings = WebSettings(root=ROOT, secure=False, queues=QUEUES, support_address=SUPPORT)
    context = WebContext(settings, repository, service, is_operator=lambda user: True)
    app = create_app(context)
    rng = random.Random(seed)
    try:
        async with repository.connection() as conn:
            now = datetime.now(UTC)
            session, _ = await create_session(conn, ME, settings.session_ttl, now)
            token = await create_api_token(conn, f"bench-{uuid.uuid4().hex[:8]}", ME, now)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url=ROOT,
            cookies={SESSION_COOKIE: session},
            headers={"Authorization": f"Bearer {token}"},
        ) as client:
            surfaces = dict(SURFACES) if api else {"pages": SURFACES["pages"]}
            for surface, prefix in surfaces.items():
                for scenario in plan:
                    order = list(scenario.paths)
                    if scenario.shuffle:
                        rng.shuffle(order)
                    print(f"  {surface}: {scenario.name} ...", flush=True)
                    timings = scenario.samples.setdefault(surface, [])
                    for n in range(WARMUP_REQUESTS + samples):
                        target = prefix + order[n % len(order)]
                        started = time.perf_counter()
                        response = await client.get(target)
                        elapsed = time.perf_counter() - started
                        if response.status_code != 200:
                            raise BenchError(f"GET {target} answered {response.status_code}")
                        if n >= WARMUP_REQUESTS:
                            timings.append(elapsed)
                        size = len(response.content)
                        scenario.largest[surface] = max(scenario.largest.get(surface, 0), size)
    finally:
        await repository.close()


# ------------------------------------------------------------------------------------ report


def report(
    stats: SeedStats, plan: list[Scenario], load: tuple[float, float], backend: str = "SQLite"
) -> str:
    """The final block of figures."""
    mix = ", ".join(f"{s} {n}" for s, n in sorted(stats.statuses.items(), key=lambda kv: -kv[1]))
    lines = [
        "",
        "=" * 78,
        f"backend: {backend}",
        f"database: {stats.tickets} tickets ({mix}), {stats.entries} entries, "
        f"{stats.index_rows} search index rows, {stats.size_mb:.0f} MB",
        f"  seeded in {stats.seconds:.1f} s"
        + (f", ANALYZE {stats.analyze_seconds:.1f} s" if stats.analyze_seconds else ", no ANALYZE")
        if not stats.reused
        else "  an earlier run's database (--reuse)",
    ]
    cores = os.cpu_count() or 1
    busy = " (busy: the figures include waiting for a CPU)" if max(load) > cores else ""
    lines.append(f"load average {load[0]:.1f} at the start, {load[1]:.1f} at the end{busy}")
    failed = []
    for surface in SURFACES:
        if not all(surface in s.samples for s in plan):
            continue
        lines.append(f"{surface}: server time per request (ms), goal p95 < {GOAL_P95_MS:.0f} ms")
        lines.append(f"  {'scenario':<26} {'median':>7} {'p95':>7} {'max':>7}")
        for s in plan:
            ms = [v * 1000 for v in s.samples[surface]]
            p95 = percentile(ms, 0.95)
            ok = p95 < GOAL_P95_MS
            if not ok:
                failed.append(f"{surface}: {s.name}")
            lines.append(
                f"  {s.name:<26} {statistics.median(ms):7.1f} {p95:7.1f} {max(ms):7.1f}  "
                f"{'PASS' if ok else 'FAIL'}  ({s.largest[surface] / 1000:.0f} kB)"
            )
    lines.append("scenarios:")
    for s in plan:
        lines.append(f"  {s.name}: {s.note}")
    if failed:
        lines.append(f"goal p95 < {GOAL_P95_MS:.0f} ms: FAIL ({'; '.join(failed)})")
    else:
        lines.append(f"goal p95 < {GOAL_P95_MS:.0f} ms: PASS (every scenario)")
    lines.append("=" * 78)
    return "\n".join(lines)


# -------------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--tickets", type=int, default=100_000, metavar="N", help="tickets (default 100000)"
    )
    parser.add_argument(
        "--entries",
        type=int,
        default=500_000,
        metavar="M",
        help="history entries (default 500000; at least 3 per ticket plus 200)",
    )
    parser.add_argument(
        "--samples",
        type=int,
        default=200,
        metavar="K",
        help="timed requests per scenario (default 200)",
    )
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    parser.add_argument(
        "--db",
        type=Path,
        default=None,
        help="keep the database at this path (it must not exist yet); default: a temporary file",
    )
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="with --db: measure an existing database seeded by an earlier run (no seeding)",
    )
    parser.add_argument(
        "--no-analyze",
        action="store_true",
        help="skip ANALYZE after seeding (exobot itself never runs it)",
    )
    parser.add_argument(
        "--no-api", action="store_true", help="skip the JSON API's equivalents (/api/v1/...)"
    )
    parser.add_argument(
        "--database",
        choices=("sqlite", "postgresql"),
        default="sqlite",
        help="measure on SQLite (default) or on a private PostgreSQL the bench starts",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="exobot's INFO logs too")
    args = parser.parse_args(argv)
    if args.tickets < 10 or args.samples < 1:
        parser.error("--tickets must be ≥ 10 and --samples ≥ 1")
    if args.entries < 3 * args.tickets + BIG_TICKET_ENTRIES:
        parser.error("--entries must be ≥ 3 × tickets + 200")
    if args.reuse and args.db is None:
        parser.error("--reuse needs --db")
    if args.db is not None and args.db.exists() and not args.reuse:
        parser.error(f"{args.db} exists (add --reuse to measure it as it is)")
    return args


def header(args: argparse.Namespace) -> str:
    """The machine and the settings."""
    return (
        f"bench_web: {os.cpu_count()} cores ({platform.machine()}), "
        f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, "
        f"{platform.platform()}\n"
        f"settings: --tickets {args.tickets} --entries {args.entries} --samples {args.samples}"
        f" --database {args.database}; "
        "in-process ASGI requests as a logged-in operator"
    )


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; 0 when it ran, 1 when it failed, 130 on Ctrl-C."""
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    print(header(args), flush=True)
    started = time.perf_counter()
    workdir = stack_dir = stack = None
    if args.db is None:
        workdir = Path(tempfile.mkdtemp(prefix="exobot-bench-web-"))
        path = workdir / "exobot.db"
    else:
        path = args.db.resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
    try:
        if args.reuse:
            print(f"reusing {path}", flush=True)
            stats = seed_stats(path)
        else:
            print(f"seeding {path} ...", flush=True)
            stats = seed_database(path, args.tickets, args.entries, args.seed, not args.no_analyze)
            print(f"seeded in {stats.seconds:.1f} s", flush=True)
        plan = scenarios(stats, random.Random(args.seed), path)
        url, backend = f"sqlite:///{path}", f"SQLite {sqlite3.sqlite_version}"
        if args.database == "postgresql":
            stack_dir = Path(tempfile.mkdtemp(prefix="exobot-bench-pg-"))
            stack, url = start_postgres(stack_dir)
            print(f"copying into PostgreSQL {stack.postgres_version} ...", flush=True)
            began = time.perf_counter()
            copy_database(f"sqlite:///{path}", url)
            backend = (
                f"PostgreSQL {stack.postgres_version} (copied from SQLite by exobot db copy"
                f" in {time.perf_counter() - began:.1f} s)"
            )
            print(backend, flush=True)
        print(f"measuring {len(plan)} scenarios × {args.samples} requests ...", flush=True)
        load_start = os.getloadavg()[0]
        asyncio.run(measure_all(url, plan, args.samples, args.seed, not args.no_api))
        load = (load_start, os.getloadavg()[0])
    except (BenchError, StackError, CopyError) as error:
        print(f"benchmark failed: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        if stack is not None:
            stack.stop()
        if stack_dir is not None:
            shutil.rmtree(stack_dir, ignore_errors=True)
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)
    print(report(stats, plan, load, backend))
    print(f"total run time {time.perf_counter() - started:.1f} s")
    return 0


def start_postgres(directory: Path) -> tuple[Stack, str]:
    """A private PostgreSQL cluster (devstack's, on free ports) and a fresh database's URL."""
    stack = Stack.start(
        directory, base_port=find_free_base_port(PG_BASE_PORT), synapse=False, postgres=True
    )
    return stack, stack.postgres_url("exobot_bench")


def seed_stats(path: Path) -> SeedStats:
    """What an earlier run seeded, read back from the database."""
    conn = sqlite3.connect(path)
    try:
        stats = SeedStats(reused=True)
        stats.tickets = conn.execute("SELECT count(*) FROM tickets").fetchone()[0]
        stats.entries = conn.execute("SELECT count(*) FROM entries").fetchone()[0]
        stats.index_rows = conn.execute("SELECT count(*) FROM search_index").fetchone()[0]
        stats.statuses = dict(conn.execute("SELECT status, count(*) FROM tickets GROUP BY 1"))
        per_ticket = conn.execute("SELECT ticket_id, count(*) FROM entries GROUP BY 1").fetchall()
        stats.page_tickets = [t for t, n in per_ticket if 5 <= n <= 20]
        stats.big_ticket = max(per_ticket, key=lambda row: row[1])[0]
        stats.size_mb = path.stat().st_size / 1e6
        return stats
    finally:
        conn.close()


if __name__ == "__main__":
    sys.exit(main())
