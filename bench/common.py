"""What the benchmarks share: the failure type, the SQLite reader and the run on a fresh stack.

The scripts run as `python bench/bench_*.py`, so Python puts bench/ on sys.path and they import
this module as `common`; importing it also puts the repository root there (devstack is not an
installed package), so import it before devstack and exobot.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import shutil
import signal
import sqlite3
import sys
import tempfile
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # devstack is not an installed package

from devstack.processes import (  # noqa: E402, F401 - the benchmarks import these from here
    cmdline,
    cpu_seconds,
    descendants,
    forkservers,
    memory_kb,
    parse_worker_cpu,
    process_roles,
    send_helpers,
    tree_cpu,
)
from devstack.stack import DEFAULT_BASE_PORT, Stack, find_free_base_port  # noqa: E402


class BenchError(Exception):
    """The run itself failed (not a missed goal): a timeout, a stack that did not start, ..."""


# ------------------------------------------------------------------------------- database


def connect_db(path: Path) -> sqlite3.Connection:
    """A separate, autocommit reader on exobot's SQLite database (WAL: never blocks it)."""
    return sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)


def scalar(conn: sqlite3.Connection, sql: str, *params: object) -> Any:
    """The first column of the first row."""
    return conn.execute(sql, params).fetchone()[0]


def db_time(value: str | None) -> float:
    """A timestamp column (SQLAlchemy writes UTC, often without an offset) as epoch seconds."""
    if value is None:
        return math.nan
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


# --------------------------------------------------------------------------------- report


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile (defined for any non-empty list)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


# ----------------------------------------------------------------------------------- main


def _terminate(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def run_with_stack(
    args: Any,
    *,
    synapse: bool,
    workdir_prefix: str,
    measure: Callable[[Stack, Path], Awaitable[str]],
    postgres: bool = False,
) -> int:
    """Run `measure` on a fresh stack in a temporary directory and print the report it returns.

    With `postgres` the stack runs its private PostgreSQL too (`Stack.postgres_url`).
    Sets up logging (`args.verbose`), stops the stack on SIGTERM as on Ctrl-C, and removes the
    directory at the end unless `args.keep`. Returns the exit code: 0 when the run completed,
    1 on BenchError, 130 when interrupted; any other exception propagates (after the cleanup).
    """
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    signal.signal(signal.SIGTERM, _terminate)  # stop the stack on `kill` too
    workdir = Path(tempfile.mkdtemp(prefix=workdir_prefix))
    stack = None
    try:
        base_port = find_free_base_port(DEFAULT_BASE_PORT + (os.getpid() % 1000) * 10)
        what = "the stack with Synapse" if synapse else "the mail stack"
        what += " and PostgreSQL" if postgres else ""
        print(f"starting {what} in {workdir} (base port {base_port}) ...", flush=True)
        stack = Stack.start(
            workdir / "stack", base_port=base_port, synapse=synapse, postgres=postgres
        )
        text = asyncio.run(measure(stack, workdir))
    except BenchError as error:
        print(f"benchmark failed: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        if stack is not None:
            stack.stop()
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print(text)
    return 0


# What members write about (the mail and web benchmarks' subjects and titles).
SUBJECTS = [
    "No em funciona internet",
    "Factura duplicada d'aquest mes",
    "Canvi de compte bancari per a la quota",
    "El router parpelleja en vermell",
    "Velocitat molt baixa a la nit",
    "Vull donar-me de baixa",
    "Problema amb el correu electrònic",
    "Dubte sobre la quota de l'associació",
    "Trasllat de domicili",
    "Consulta sobre la fibra al meu carrer",
    "Talls intermitents de connexió",
    "No puc entrar a l'àrea de socis",
    "Canvi de titular del contracte",
    "Alta d'un nou punt d'accés",
    "L'antena del terrat s'ha mogut",
]

PARAGRAPHS = [
    "Des d'ahir al vespre no tinc connexió i el llum del router fa pampallugues.",
    "He reiniciat l'aparell tres vegades, però no ha servit de res.",
    "Aquest mes m'heu passat dos rebuts de la quota i només n'hauria de pagar un.",
    "Us adjunto la informació que em vau demanar per telèfon la setmana passada.",
    "A partir del mes que ve visc en una altra adreça i voldria saber com fer el trasllat.",
    "La velocitat baixa moltíssim a partir de les nou de la nit; de dia va bé.",
    "No sé si és un problema meu o general del barri: els veïns diuen que també els passa.",
    "Podríeu dir-me què he de fer? Treballo des de casa i ho necessito aviat.",
    "He canviat de banc i el número de compte nou és el que us indico més avall.",
    "Quan vaig intentar entrar a l'àrea de socis em diu que la contrasenya no és correcta.",
    "Gràcies per la feina que feu, sé que sou voluntaris i que aneu de bòlit.",
]


# The process helpers live in devstack.processes (the soak uses them too).
