"""The cost of core.sensitive on 1 MB inputs: ordinary text and adversarial ones built to make
each finder work hardest (a candidate at every few characters).

Printed: seconds per MB for find_sensitive and mask_sensitive on each input, and whether the
time grows linearly (the same input at 1/4 MB should take about a quarter). Goal: linear, and
under 5 s per MB on the worst input.

    .venv/bin/python bench/bench_sensitive.py
    .venv/bin/python bench/bench_sensitive.py --size 65536   # smoke
"""

from __future__ import annotations

import argparse
import time

from exobot.core.sensitive import SCAN_LIMIT, find_sensitive, mask_sensitive

INPUTS = {
    "mail prose": "Bon dia, no em funciona internet des d'ahir, IBAN ES91 2100 0418 4502 0005 1332. ",
    "separated digits (cards)": "4 ",
    "digit pairs (cards)": "44 ",
    "visa groups (cards)": "4111-",
    "country codes (IBAN)": "ES12 ",
    "password words": "clau ",
    "DNI look-alikes": "12345678A ",
    "digits and dots": "1.",
}


def timed(fn, text: str) -> float:
    started = time.perf_counter()
    fn(text)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=SCAN_LIMIT, help="characters per input")
    args = parser.parse_args()
    worst = 0.0
    print(f"{'input':28} {'find s/MB':>10} {'mask s/MB':>10} {'quarter ratio':>14}")
    for name, unit in INPUTS.items():
        text = (unit * (args.size // len(unit) + 1))[: args.size]
        per_mb = (1 << 20) / len(text)
        find = timed(find_sensitive, text) * per_mb
        mask = timed(mask_sensitive, text) * per_mb
        quarter = timed(find_sensitive, text[: len(text) // 4]) * per_mb
        ratio = find / (4 * quarter) if quarter else float("nan")
        worst = max(worst, find, mask)
        print(f"{name:28} {find:10.2f} {mask:10.2f} {ratio:14.2f}")
    print(f"worst: {worst:.2f} s per MB")


if __name__ == "__main__":
    main()
