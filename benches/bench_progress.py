#!/usr/bin/env python3
"""The cost of the progress line: ``assay.evaluate`` of a Parquet file streamed in 64k-row
batches, with ``progress=True`` and ``progress=False``, alternated, best of ``--repeat``.

Usage::

    python benches/bench_progress.py            # 10M rows, best of 5
    python benches/bench_progress.py --write    # also write its section of RESULTS.md

The data (seed 0): ``y`` int8 0/1, ``p`` float64, ``seg`` 100 string values; Parquet with
65,536-row row groups in ``benches/_data/progress_10m.parquet`` (gitignored). The job: 3
additive metrics over 100 slices (the cheapest per row, so the per-batch cost of progress is
the largest share it can be). The progress line is drawn to stderr (redirected to a null
device here, so the terminal's speed is not measured). Target: overhead < 1%.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import benchlib

HERE = Path(__file__).resolve().parent


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()

    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    import assay

    path = HERE / "_data" / f"progress_{args.rows // 1_000_000}m.parquet"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(0)
        n = args.rows
        pq.write_table(pa.table({"y": rng.integers(0, 2, n).astype(np.int8),
                                 "p": rng.random(n),
                                 "seg": rng.integers(0, 100, n).astype(str)}),
                       path, row_group_size=65_536)

    def run(flag: bool) -> float:
        t0 = time.perf_counter()
        assay.evaluate(str(path), label="y", score="p", slices=["seg"],
                       metrics=["accuracy", "log_loss", "brier"], progress=flag)
        return time.perf_counter() - t0

    stderr = sys.stderr
    sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - the line is drawn, not shown
    try:
        run(False)
        times: dict[bool, list[float]] = {True: [], False: []}
        for _ in range(args.repeat):
            for flag in (False, True):
                times[flag].append(run(flag))
    finally:
        sys.stderr.close()
        sys.stderr = stderr
    off, on = min(times[False]), min(times[True])
    overhead = 100 * (on / off - 1)
    text = (f"## Progress overhead ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})\n\n"
            f"- command: `python benches/bench_progress.py"
            f"{' --write' if args.write else ''}"
            f"{f' --repeat {args.repeat}' if args.repeat != 5 else ''}`\n"
            f"- machine: {benchlib.cores()} cores, {benchlib.cpu_model()}\n\n"
            f"| {args.rows:,} rows, 64k-row batches | best of {args.repeat} |\n|---|---|\n"
            f"| `progress=False` | {off:.3f} s |\n| `progress=True` | {on:.3f} s |\n"
            f"| overhead | {overhead:+.2f}% (target < 1%) |\n")
    benchlib.publish(text, "bench_progress", args.write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
