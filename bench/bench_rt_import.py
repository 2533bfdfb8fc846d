"""How long `exobot import rt` takes per 1,000 Request Tracker tickets, on a real RT here.

A private RT (Debian's package, devstack/rt.py; RT 5 by default) is filled through REST 1.0
with N tickets the way a helpdesk fills one: each opened for a member with a text, answered
by staff (RT mails the member and records it), every third one commented, every second one
resolved. Then the real command line imports them into a fresh SQLite database, once over
REST 2 and once over REST 1.0 (RT 4.4 has only that), and a second, incremental run over
REST 2 shows what the last run of a switch-over costs when nothing changed.

Printed: seconds to seed, and per API the import's seconds, tickets per second and seconds
per 1,000 tickets. Seeding dominates (RT takes about 0.5 s per ticket and action), so this
is not part of `make bench`:

    .venv/bin/python bench/bench_rt_import.py                   # 1,000 tickets, ~10 min
    .venv/bin/python bench/bench_rt_import.py --tickets 100     # smoke, ~1 min
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from devstack.rt import RtServer, rt_installed  # noqa: E402


def seed(server: RtServer, tickets: int) -> float:
    """Fill `server` with `tickets` tickets through REST 1.0; returns the seconds it took."""
    import rt.rest1

    client = rt.rest1.Rt(server.rest1, server.user, server.password)
    if not client.login():
        raise SystemExit("REST 1.0 login failed")
    started = time.monotonic()
    for i in range(tickets):
        number = client.create_ticket(
            Queue="General",
            Subject=f"Consulta {i}: la connexió falla a la tarda",
            Requestors=f"soci{i % 300}@example.net",
            Text="Hola,\ndes d'ahir la connexió cau cada tarda.\nGràcies",
        )
        client.reply(number, text="Hola,\nho mirem i et diem alguna cosa.\nSuport")
        if i % 3 == 0:
            client.comment(number, text="Nota interna: revisar el node del barri.")
        if i % 2 == 0:
            client.edit_ticket(number, Status="resolved")
        if (i + 1) % 100 == 0:
            print(f"  seeded {i + 1}/{tickets}", file=sys.stderr, flush=True)
    return time.monotonic() - started


def config(directory: Path) -> Path:
    """A fresh exobot configuration with its own SQLite database."""
    data = {
        "mail": {
            "address": "suport@example.org",
            "imap": {"host": "127.0.0.1", "username": "suport", "password": "x"},
            "smtp": {"host": "127.0.0.1"},
        },
        "database": {"url": f"sqlite:///{directory / 'exobot.db'}"},
    }
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    path.chmod(0o600)
    return path


def run_import(server: RtServer, cfg: Path, api: str) -> float:
    """Run `exobot import rt` as a separate process; returns its wall-clock seconds."""
    secret = cfg.parent / "rt-password"
    secret.write_text(server.password)
    started = time.monotonic()
    done = subprocess.run(
        [
            sys.executable, "-m", "exobot.cli", "import", "rt", "-c", str(cfg),
            "--url", server.url, "--user", server.user, "--password-file", str(secret),
            "--api", api, "--queue", "General=suport",
        ],
        capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    seconds = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"import failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    print("  " + done.stdout.strip().replace("\n", "\n  "), file=sys.stderr)
    return seconds


def main() -> int:
    """Seed, import over both APIs, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickets", type=int, default=1000)
    parser.add_argument("--version", type=int, choices=[4, 5], default=5)
    args = parser.parse_args()
    if not rt_installed(args.version):
        raise SystemExit(f"request-tracker{args.version} is not installed: make stack")
    work = Path(tempfile.mkdtemp(prefix="exobot-bench-rt-"))
    server = RtServer.start(work / "rt", version=args.version)
    try:
        seeded = seed(server, args.tickets)
        print(f"RT {args.version}: seeded {args.tickets} tickets in {seeded:.0f} s")
        apis = ["2", "1"] if args.version >= 5 else ["1"]
        for api in apis:
            directory = work / f"exobot-{api}"
            directory.mkdir()
            cfg = config(directory)
            seconds = run_import(server, cfg, api)
            print(
                f"REST {api}: {args.tickets} tickets imported in {seconds:.1f} s "
                f"({args.tickets / seconds:.1f} tickets/s, "
                f"{seconds * 1000 / args.tickets:.0f} s per 1,000 tickets)"
            )
            if api == apis[0]:
                again = run_import(server, cfg, api)
                print(f"REST {api}: second run, nothing new: {again:.1f} s")
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
