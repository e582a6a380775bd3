"""Parse time of a ~10,000-character spec and of the design card's example (target: < 10 ms).

Run: python bench/bench_parse.py. Prints a markdown table of medians over many runs
(time.perf_counter); the machine's load average is printed too, since timings on a shared
machine are noisy.
"""
from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sdpnet.spec import parse  # noqa: E402

CARD = "P16-[2xDWC7+MLP,ENC]x17-ENC+CLS5-MLP"


def long_spec(chars: int = 10_000) -> str:
    """A valid spec of about ``chars`` characters: a stem, many varied body items, a head."""
    items = ["DWC7(act=kelu,ls=1e-06)", "[2xDWC5+MLP(r=2.0),ENC(h=8,qkn=true)]x2", "CM9(bias=false)",
             "MLP", "ENC(r=3.5)", "CONV3(s=1)", "POS"]
    body: list[str] = []
    length = len("P16(d=384)+CLS5-") + len("-TOKS+MLP(h=512)")
    i = 0
    while length < chars:
        body.append(items[i % len(items)])
        length += len(body[-1]) + 1
        i += 1
    return "P16(d=384)+CLS5-" + ",".join(body) + "-TOKS+MLP(h=512)"


def median_ms(text: str, runs: int, clock=time.perf_counter) -> float:
    times = []
    for _ in range(runs):
        t0 = clock()
        parse(text)
        times.append(clock() - t0)
    return statistics.median(times) * 1e3


def main() -> None:
    big = long_spec()
    assert str(parse(big)) == big
    rows = [("card example", CARD, 2000), ("~10,000 characters", big, 50)]
    print(f"load average: {os.getloadavg()[0]:.2f}\n")
    print("| spec | characters | blocks (unrolled) | median wall time (ms) | median CPU time (ms) | runs |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, text, runs in rows:
        blocks = sum(1 for _ in parse(text).expand())
        wall = median_ms(text, runs)
        cpu = median_ms(text, runs, time.process_time)
        print(f"| {label} | {len(text):,} | {blocks:,} | {wall:.3f} | {cpu:.3f} | {runs} |")


if __name__ == "__main__":
    main()
