#!/usr/bin/env python3
"""Batch-job behaviour that has numbers: the memory a job from a Parquet path takes (only its
columns are read) and how soon Ctrl-C stops each kind of long job.

Usage::

    python benches/bench_batch.py               # both parts
    python benches/bench_batch.py --part memory # or --part interrupt
    python benches/bench_batch.py --write       # also write its section of RESULTS.md

**Memory.** A Parquet file of ``--rows`` rows (seed 0; 128k-row row groups, in
``benches/_data``, gitignored): the job's columns ``y`` (int8), ``p`` (float64) and ``seg`` (100
string values), and 24 columns it does not use (20 float64, 4 strings of 40 characters). One
job (6 metrics, ``exact`` ROC-AUC included, over the 100 slices) runs in a fresh process per
route, and the process's peak resident memory (``VmHWM``, Linux) is reported with the same
process's memory after its imports subtracted:

- ``path``: ``assay.evaluate("file.parquet", ...)``, projected by assay;
- ``scan().select()``: a polars LazyFrame of the file with the job's three columns selected by
  hand (what users did before assay projected);
- ``reader (all columns)``: a ``RecordBatchReader`` of every column, which no one can project
  (what reading a path cost before: every column through the stream).

**Ctrl-C.** Each job of ``tests/test_interrupt.py`` runs in a child process; SIGINT comes 1 s
after the job starts, and the child reports when its ``KeyboardInterrupt`` arrived
(``time.monotonic``, one clock for both processes). The latency is the time between the two,
over ``--repeat`` runs: median and worst. Target: within 0.5 s.
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import benchlib

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests"))

ROUTES = {
    "path": "data = PATH",
    "scan().select()": "data = pl.scan_parquet(PATH).select('y', 'p', 'seg')",
    "reader (all columns)": "data = ds.dataset(PATH).scanner().to_reader()",
}

_MEMORY_CHILD = """
import json, sys
import polars as pl, pyarrow as pa, pyarrow.dataset as ds, assay

def hwm():  # this process's peak resident memory, MB (reset by exec, unlike ru_maxrss)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024

PATH = sys.argv[1]
base = hwm()
{route}
rep = assay.evaluate(data, label="y", score="p", slices=["seg"],
                     metrics=["accuracy", "f1", "log_loss", "brier", "roc_auc", "ece"])
print(json.dumps({{"base_mb": base, "peak_mb": hwm(), "rows": rep.rows}}))
"""


def memory(rows: int) -> list[tuple[str, float, float]]:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = HERE / "_data" / f"batch_wide_{rows // 1_000_000}m.parquet"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(0)
        cols = {"y": rng.integers(0, 2, rows).astype(np.int8), "p": rng.random(rows),
                "seg": pa.array(rng.integers(0, 100, rows).astype(str)).dictionary_encode()}
        cols.update({f"f{i}": rng.random(rows) for i in range(20)})
        words = np.array([f"{i:040d}" for i in range(1000)])
        cols.update({f"s{i}": words[rng.integers(0, 1000, rows)] for i in range(4)})
        pq.write_table(pa.table(cols), path, row_group_size=131_072)
    out = []
    for name, route in ROUTES.items():
        script = _MEMORY_CHILD.format(route=route)
        p = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True,
                           text=True, check=True)
        r = json.loads(p.stdout)
        assert r["rows"] == rows
        out.append((name, r["peak_mb"], r["peak_mb"] - r["base_mb"]))
    return out


def interrupt(repeat: int) -> list[tuple[str, float, float]]:
    from test_interrupt import _PRELUDE, JOBS, SETUP

    out = []
    for job, code in JOBS.items():
        script = _PRELUDE + SETUP.get(job, "") + textwrap.dedent(f"""
        print("ready", flush=True)
        try:
            {code}
        except KeyboardInterrupt:
            print("interrupted", time.monotonic(), flush=True)
            sys.exit(7)
        print("finished", flush=True)
        """)
        lat = []
        for _ in range(repeat):
            child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                                     text=True)
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "ready"
            time.sleep(1.0)
            sent = time.monotonic()
            child.send_signal(signal.SIGINT)
            line, _ = child.communicate(timeout=300)
            word, _, when = line.strip().partition(" ")
            assert word == "interrupted" and child.returncode == 7, (job, line)
            lat.append(float(when) - sent)
        out.append((job, statistics.median(lat), max(lat)))
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--part", choices=["memory", "interrupt", "both"], default="both")
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    import assay

    text = (f"## Batch jobs: memory and Ctrl-C ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})"
            f"\n\n- command: `python benches/bench_batch.py"
            f"{'' if args.part == 'both' else ' --part ' + args.part}"
            f"{' --write' if args.write else ''}`\n"
            f"- machine: {benchlib.cores()} cores, {benchlib.cpu_model()}; assay "
            f"{assay.__version__} from {Path(assay.__file__).parent}\n\n")
    if args.part in ("memory", "both"):
        rows = memory(args.rows)
        text += (f"| {args.rows:,} rows, 3 of 27 columns used | peak RSS | over the imports |\n"
                 "|---|---|---|\n")
        text += "".join(f"| {n} | {p:,.0f} MB | {d:,.0f} MB |\n" for n, p, d in rows)
        text += "\n"
    if args.part in ("interrupt", "both"):
        lat = interrupt(args.repeat)
        text += (f"| Ctrl-C, SIGINT 1 s into the job | median | worst of {args.repeat} |\n"
                 "|---|---|---|\n")
        text += "".join(f"| {n} | {m * 1000:.0f} ms | {w * 1000:.0f} ms |\n"
                        for n, m, w in lat)
        text += "\n(target: within 500 ms)\n"
    benchlib.publish(text, "bench_batch", args.write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
