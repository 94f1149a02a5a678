#!/usr/bin/env python3
"""A billion predictions on one machine: one ``assay.evaluate`` of a Parquet dataset on disk, and
the same job as 8 partial states merged, each in a fresh process with its wall time, rows/s and
peak memory.

Usage::

    python benches/bench_billion.py                      # 1e9 rows (writes ~5.5 GB once)
    python benches/bench_billion.py --rows 100000000     # a tenth of it, to try
    python benches/bench_billion.py --write              # also write its section of RESULTS.md
    python benches/bench_billion.py --cache /big/disk    # where the dataset is written

**Data.** ``--rows`` predictions in Parquet files of 10M rows (fewer for small ``--rows``),
written once into ``--cache`` (default ``$ASSAY_BENCH_CACHE``, else ``~/.cache/assay-bench``;
never the repository) and reused: ``p`` float32 score, ``y`` int8 label, ``s100`` a dictionary
column of 100 string values and ``s10`` one of 10 values. Slice ``s100 = k`` has a positive rate
spread evenly over 5%..15%; ``p = sigmoid(-3 + 3y + 0.2 (s10 - 4.5) / 4.5 + N(0, 1.5))``.
Generation is seeded per file, so the files do not depend on how many are written at once.

**Job.** ``slices=["s100", "s10", ("s100", "s10")]`` (1,111 report rows with the overall row);
the 13 additive metrics, ``roc_auc`` and ``average_precision`` with ``auc="binned"`` (fixed-size
histograms: the state does not grow with the rows), and the calibration metrics whose states are
fixed-size bins (``ece``, ``mce``, ``rmsce``, ``oe_ratio`` and the Brier decomposition).

**Routes**, each in its own process (``VmHWM``, the peak resident memory, is read from
``/proc/self/status``; the process's memory after its imports is reported in parentheses):

- ``evaluate``: ``assay.evaluate(dataset_dir, ...)``: assay reads only the job's columns, batch
  by batch, while it computes.
- ``split``: the files cut into 8 contiguous shards; each ``spec.accumulate(files,
  row_offset=first_row)`` + ``to_bytes()``, one after the other in the same process (the
  shards of a batch job, run on one machine here), then ``from_bytes``, ``assay.merge`` and
  ``finalize``. Its report is checked against the ``evaluate`` route's (counts exact, floats
  within 1e-9 relative).

Targets (issue "Performance"): under 3 minutes and under 2 GB of memory on the 2-core machine.
``--write`` replaces the section between ``<!-- bench_billion -->`` and ``<!-- /bench_billion
-->`` in benches/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import benchlib

HERE = Path(__file__).resolve().parent
SEED = 20261207
DATA_VERSION = 1
FILE_ROWS = 10_000_000
N_SHARDS = 8
TARGET_S = 180.0
TARGET_MB = 2048.0
RTOL = 1e-9

ONE_PASS = ["base_rate", "prediction_rate", "accuracy", "balanced_accuracy", "precision",
            "recall", "specificity", "fpr", "fnr", "f1", "mcc", "log_loss", "brier"]
METRICS = ONE_PASS + ["roc_auc", "average_precision", "ece", "mce", "rmsce", "oe_ratio",
                      "brier_reliability", "brier_resolution", "brier_uncertainty"]
SLICES = ["s100", "s10", ["s100", "s10"]]

# One route, in a fresh process: prints one JSON line.
_CHILD = """
import json, sys, time
import pyarrow.parquet as pq
import assay

def hwm():  # peak resident memory of this process, MB
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024

route, files, out, kw = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], json.loads(sys.argv[4])
kw["slices"] = [s if isinstance(s, str) else tuple(s) for s in kw["slices"]]
base = hwm()
stages = {}
t0 = time.perf_counter()
if route == "evaluate":
    rep = assay.evaluate(str(sys.argv[5]), **kw)
else:
    spec = assay.Spec(**kw)
    n_shards = int(sys.argv[5])
    counts = [pq.ParquetFile(f).metadata.num_rows for f in files]
    cuts = [len(files) * k // n_shards for k in range(n_shards + 1)]
    blobs = []
    for a, b in zip(cuts, cuts[1:]):
        state = spec.accumulate(files[a:b], row_offset=sum(counts[:a]))
        blobs.append(state.to_bytes())
        del state
    t1 = time.perf_counter()
    merged = assay.merge([assay.PartialState.from_bytes(x) for x in blobs])
    t2 = time.perf_counter()
    rep = merged.finalize()
    stages = {"accumulate": t1 - t0, "merge": t2 - t1, "finalize": time.perf_counter() - t2,
              "state_bytes": sum(len(x) for x in blobs)}
wall = time.perf_counter() - t0
rep.table.write_parquet(out)
print(json.dumps({"wall": wall, "rows": rep.rows, "base_mb": base, "peak_mb": hwm(),
                  "stages": stages}))
"""


def cache_dir(arg: str | None) -> Path:
    if arg:
        return Path(arg)
    env = os.environ.get("ASSAY_BENCH_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "assay-bench"


def dataset(rows: int, cache: Path) -> tuple[Path, list[Path], bool]:
    """The dataset's folder, its files in order, and whether it was already there."""
    folder = cache / f"billion_n{rows}_seed{SEED}_v{DATA_VERSION}"
    per_file = min(FILE_ROWS, max(1, rows // 8))
    n_files = math.ceil(rows / per_file)
    names = [folder / f"part-{i:05d}.parquet" for i in range(n_files)]
    if folder.exists() and all(p.exists() for p in names):
        return folder, names, True
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    tmp = cache / (folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    s100 = pa.array([f"s{k:03d}" for k in range(100)])
    s10 = pa.array([f"t{k}" for k in range(10)])
    t0 = time.perf_counter()
    for i, name in enumerate(names):
        n = min(per_file, rows - i * per_file)
        rng = np.random.default_rng([SEED, i])
        a = rng.integers(0, 100, n, dtype=np.int8)
        b = rng.integers(0, 10, n, dtype=np.int8)
        rate = (0.05 + 0.10 * a / 99).astype(np.float32)
        y = (rng.random(n, dtype=np.float32) < rate).astype(np.int8)
        z = rng.standard_normal(n, dtype=np.float32)
        z *= 1.5
        z += -3.0 + 3.0 * y + (0.2 / 4.5) * (b.astype(np.float32) - 4.5)
        p = (1.0 / (1.0 + np.exp(-z))).astype(np.float32)
        table = pa.table({
            "p": p,
            "y": y,
            "s100": pa.DictionaryArray.from_arrays(a, s100),
            "s10": pa.DictionaryArray.from_arrays(b, s10),
        })
        pq.write_table(table, tmp / name.name, compression="snappy",
                       use_dictionary=["s100", "s10"], row_group_size=1 << 20)
        print(f"  wrote {name.name} ({i + 1}/{n_files}, {time.perf_counter() - t0:.0f} s)",
              flush=True)
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    return folder, names, False


def run_route(route: str, folder: Path, files: list[Path], out: Path) -> dict:
    kw = dict(label="y", score="p", slices=SLICES, metrics=METRICS, auc="binned")
    arg = str(folder) if route == "evaluate" else str(N_SHARDS)
    cmd = [sys.executable, "-c", _CHILD, route, json.dumps([str(f) for f in files]), str(out),
           json.dumps(kw), arg]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        sys.exit(f"route {route} failed:\n{res.stderr[-4000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def compare(a_path: Path, b_path: Path) -> tuple[bool, str]:
    """Whether the split route's report equals the one-pass report (counts and strings exact,
    floats within RTOL), and how they differ at most."""
    import numpy as np
    import polars as pl

    a, b = pl.read_parquet(a_path), pl.read_parquet(b_path)
    if a.columns != b.columns or a.height != b.height:
        return False, f"shapes differ: {a.shape} vs {b.shape}"
    worst = 0.0
    for c in a.columns:
        x, y = a[c], b[c]
        if x.dtype.is_float():
            xs, ys = x.to_numpy(), y.to_numpy()
            both = np.isnan(xs) & np.isnan(ys)
            diff = np.where(both, 0.0, np.abs(xs - ys) / np.maximum(1.0, np.abs(ys)))
            if np.isnan(diff).any() or (diff > RTOL).any():
                return False, f"column {c} differs (max relative {np.nanmax(diff):.2e})"
            worst = max(worst, float(diff.max(initial=0.0)))
        elif not x.equals(y, null_equal=True):
            return False, f"column {c} differs"
    return True, f"{a.height} rows x {a.width} columns equal; max relative difference {worst:.1e}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000_000)
    ap.add_argument("--cache", default=None, help="dataset folder's parent")
    ap.add_argument("--write", action="store_true", help="update benches/RESULTS.md")
    args = ap.parse_args()

    import assay

    folder, files, cached = dataset(args.rows, cache_dir(args.cache))
    size = sum(f.stat().st_size for f in files)
    print(f"dataset: {folder} ({len(files)} files, {size / 1e9:.2f} GB, "
          f"{'cached' if cached else 'written now'})", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        results = {}
        for route in ("evaluate", "split"):
            print(f"[{route}] running ...", flush=True)
            results[route] = run_route(route, folder, files, Path(tmp) / f"{route}.parquet")
            print(f"[{route}] {results[route]}", flush=True)
        same, detail = compare(Path(tmp) / "split.parquet", Path(tmp) / "evaluate.parquet")
    if not same:
        print(f"!!! MISMATCH: {detail}")

    ncores = benchlib.cores()
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    cmd = "python benches/" + " ".join(shlex.quote(a) for a in [Path(__file__).name,
                                                                  *sys.argv[1:]])
    lines = [
        f"## A billion rows from disk ({now})",
        "",
        f"- command: `{cmd}`",
        f"- machine: {benchlib.cpu_model()}, {ncores} cores; assay {assay.__version__}, "
        "its default threads",
        f"- data: {args.rows:,} rows in {len(files)} Parquet files ({size / 1e9:.2f} GB, snappy): "
        "`p` float32, `y` int8, `s100` and `s10` dictionary columns of 100 and 10 values",
        f"- job: {len(METRICS)} metrics (the 13 additive ones, `roc_auc` and `average_precision` "
        "with `auc=\"binned\"`, `ece`, `mce`, `rmsce`, `oe_ratio`, the Brier decomposition) "
        "x slices `s100`, `s10` and their cross; each route in a fresh process",
        "",
        "| route | wall s | rows/s | rows/s per core | peak memory MB (of it, imports) "
        "| target | met |",
        "|---|---|---|---|---|---|---|",
    ]
    for route, label in (("evaluate", "`assay.evaluate(folder)`"),
                         ("split", f"{N_SHARDS} shards: accumulate + to_bytes, merge, "
                                   "finalize")):
        r = results[route]
        rate = r["rows"] / r["wall"]
        met = r["wall"] < TARGET_S and r["peak_mb"] < TARGET_MB
        lines.append(f"| {label} | {r['wall']:.1f} | {rate:.3g} | {rate / ncores:.3g} | "
                     f"{r['peak_mb']:.0f} ({r['base_mb']:.0f}) | < {TARGET_S:.0f} s, "
                     f"< {TARGET_MB:.0f} MB | {'yes' if met else 'NO'} |")
    st = results["split"]["stages"]
    lines += [
        "",
        f"- split route stages: accumulate + to_bytes {st['accumulate']:.1f} s, from_bytes + "
        f"merge {st['merge']:.3f} s, finalize {st['finalize']:.3f} s; the {N_SHARDS} states "
        f"hold {st['state_bytes']:,} bytes in all",
        f"- split report vs one-pass report: {detail if same else 'MISMATCH: ' + detail}",
    ]
    benchlib.publish("\n".join(lines), "bench_billion", args.write)
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()
