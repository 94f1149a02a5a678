#!/usr/bin/env python3
"""Slice discovery: ``assay.discover_slices`` against the ``sliceline`` package.

Usage::

    python benches/bench_discovery.py                  # 100k rows vs sliceline, 1M rows assay
    python benches/bench_discovery.py --big            # + 10M rows x 20 features (assay)
    python benches/bench_discovery.py --write          # also write its section of RESULTS.md
    python benches/bench_discovery.py --skip-sliceline # assay only

Data (seeded): categorical features f0, f1, ... with 5-10 values each (dictionary-encoded
strings; value vj has frequency proportional to 1 / (j + 1)), and a per-row error ``err`` =
Exponential(1) x multipliers: the most frequent value v0 of every feature is mildly worse
(x1.4, so that the package's level-1 top-k is full, which makes its search exact), and three
planted slices are much worse: ``f1=v2`` (x3), ``f2=v1 & f3=v1`` (x5) and
``f4=v0 & f5=v1 & f6=v0`` (x4). Search: alpha=0.95, k=10, max_level=3, min_support=0.01,
error="err".

1. ``vs sliceline``: 10 features, ``--sliceline-rows`` rows (100k): assay (``dedupe=False``,
   the package's semantics) vs ``sliceline.slicefinder.Slicefinder(alpha=0.95, k=10,
   max_l=3, min_sup=0.01).fit(X, err)`` with X the integer codes; the script checks that both
   return the same slices with the same scores (1e-9). Target >= 20x. The package builds
   rows x candidates sparse matrices and can run out of memory: it runs in a subprocess that
   is stopped above ``--sliceline-mem-gb`` of resident memory; then the comparison is redone
   on ``--fallback-rows`` rows and the table says so.
2. ``1M rows``: assay alone, 10 features, ``dedupe=False`` and ``True`` (the package does not
   fit in memory): wall time and peak resident memory. Targets < 10 s and < 1 GB.
3. ``--big``: 10M rows x 20 features, ``dedupe=True``: time and peak memory of one cold run,
   recorded (about a minute on 2 cores).

Every measurement runs in a fresh subprocess: it builds the data, resets the kernel's peak-RSS
counter (``/proc/self/clear_refs``), then runs the search; the peak is ``VmHWM`` of
``/proc/self/status`` afterwards (Rust allocations included, which tracemalloc cannot see).
assay's time is the best of ``--repeat`` runs after an untimed warm-up; the package runs once
(it takes minutes). ``--write`` replaces the section between ``<!-- bench_discovery -->`` and
``<!-- /bench_discovery -->`` of benches/RESULTS.md (appended if absent).
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse
import datetime
import gc
import json
import math
import platform
import shlex
import subprocess
import sys
import time
import warnings
from pathlib import Path

import benchlib
import numpy as np
import pyarrow as pa

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "RESULTS.md"
BEGIN, END = "<!-- bench_discovery -->", "<!-- /bench_discovery -->"

SEED = 20240613
SEARCH = dict(alpha=0.95, k=10, max_level=3, min_support=0.01)
PLANTED = ["f1=v2", "f2=v1 & f3=v1", "f4=v0 & f5=v1 & f6=v0"]


# --------------------------------------------------------------------------------------------
# data


def make_codes(n: int, n_features: int, seed: int = SEED) -> tuple[list[np.ndarray], np.ndarray]:
    """Integer codes of each feature (int8; value j has frequency proportional to 1 / (j + 1))
    and the per-row errors."""
    rng = np.random.default_rng(seed)
    domains = rng.integers(5, 11, n_features)
    codes = []
    for d in domains:
        p = 1.0 / np.arange(1, d + 1)
        codes.append(rng.choice(d, n, p=p / p.sum()).astype(np.int8))
    mult = np.ones(n)
    for c in codes:
        mult[c == 0] *= 1.4
    mult[codes[1] == 2] *= 3.0
    mult[(codes[2] == 1) & (codes[3] == 1)] *= 5.0
    mult[(codes[4] == 0) & (codes[5] == 1) & (codes[6] == 0)] *= 4.0
    err = rng.exponential(1.0, n) * mult
    return codes, err


def make_table(codes: list[np.ndarray], err: np.ndarray) -> pa.Table:
    cols = {}
    for i, c in enumerate(codes):
        names = pa.array([f"v{j}" for j in range(int(c.max()) + 1)], pa.string())
        cols[f"f{i}"] = pa.DictionaryArray.from_arrays(pa.array(c), names)
    cols["err"] = pa.array(err)
    return pa.table(cols)


# --------------------------------------------------------------------------------------------
# child processes: one measurement each


def vm(field: str) -> int:
    """A field of /proc/self/status in bytes (0 where there is none)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def reset_peak() -> bool:
    """Reset the peak-RSS counter (VmHWM) to the current RSS; False where it is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def child(args: argparse.Namespace) -> None:
    codes, err = make_codes(args.rows, args.features)
    out: dict = {"rows": args.rows, "features": args.features}
    if args.child == "assay":
        import assay

        table = make_table(codes, err)
        del codes
        gc.collect()
        kw = dict(features=[f"f{i}" for i in range(args.features)], error="err", **SEARCH,
                  dedupe=args.dedupe)
        out["rss_before"] = vm("VmRSS")
        out["peak_reset"] = reset_peak()
        if not args.no_warmup:
            found = assay.discover_slices(table, **kw)  # warm-up (untimed)
        best = math.inf
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            found = assay.discover_slices(table, **kw)
            best = min(best, time.perf_counter() - t0)
        out["seconds"] = best
        out["peak"] = vm("VmHWM")
        out["top"] = [[sorted([p["feature"], p["value"]] for p in preds), s]
                      for preds, s in zip(found["predicates"].to_list(),
                                          found["score"].to_list())]
        out["slices"] = found["slice"].to_list()
        out["significant"] = found["significant"].to_list()
    else:
        from sliceline.slicefinder import Slicefinder

        x = np.column_stack(codes).astype(np.int64)
        del codes
        gc.collect()
        out["rss_before"] = vm("VmRSS")
        out["peak_reset"] = reset_peak()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t0 = time.perf_counter()
            sf = Slicefinder(alpha=SEARCH["alpha"], k=SEARCH["k"], max_l=SEARCH["max_level"],
                             min_sup=SEARCH["min_support"], verbose=False).fit(x, err)
            out["seconds"] = time.perf_counter() - t0
        out["peak"] = vm("VmHWM")
        top = []
        for row, st in zip(sf.top_slices_, sf.top_slices_statistics_):
            preds = sorted([f"f{j}", f"v{int(v)}"] for j, v in enumerate(row) if v is not None)
            top.append([preds, st["slice_score"]])
        out["top"] = top
    print("RESULT " + json.dumps(out), flush=True)


def measure(kind: str, rows: int, features: int, repeat: int, dedupe: bool = False,
            mem_limit: float | None = None, timeout: float | None = None,
            warmup: bool = True) -> dict:
    """Run one child; {'error': ...} if it failed, ran out of memory or out of time."""
    cmd = [sys.executable, __file__, "--child", kind, "--rows", str(rows), "--features",
           str(features), "--repeat", str(repeat)] + (["--dedupe"] if dedupe else []) \
        + ([] if warmup else ["--no-warmup"])
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t0 = time.monotonic()
    peak_seen = 0
    status = Path(f"/proc/{proc.pid}/status")
    while proc.poll() is None:
        try:
            rss = next(int(line.split()[1]) * 1024 for line in status.read_text().splitlines()
                       if line.startswith("VmRSS:"))
        except (OSError, StopIteration):
            rss = 0
        peak_seen = max(peak_seen, rss)
        if mem_limit is not None and rss > mem_limit:
            proc.kill()
            proc.wait()
            return {"error": f"stopped at {rss / 2**30:.1f} GB resident (limit "
                             f"{mem_limit / 2**30:.1f} GB) after {time.monotonic() - t0:.0f}s"}
        if timeout is not None and time.monotonic() - t0 > timeout:
            proc.kill()
            proc.wait()
            return {"error": f"stopped after {timeout:.0f}s (timeout)"}
        time.sleep(0.1)
    stdout, stderr = proc.communicate()
    for line in stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    tail = (stderr.strip().splitlines() or ["no output"])[-1]
    killed = proc.returncode < 0 or "MemoryError" in stderr
    return {"error": ("out of memory: " if killed else "failed: ") + tail[:200]
            + f" (exit {proc.returncode}, {peak_seen / 2**30:.1f} GB resident seen)"}


# --------------------------------------------------------------------------------------------
# parent


def same_top(a: list, b: list) -> tuple[bool, str]:
    """Same set of slices and scores within 1e-9."""
    ka = {json.dumps(p): s for p, s in a}
    kb = {json.dumps(p): s for p, s in b}
    if set(ka) != set(kb):
        only_a = sorted(set(ka) - set(kb))
        only_b = sorted(set(kb) - set(ka))
        return False, f"assay only: {only_a}; sliceline only: {only_b}"
    worst = max((abs(ka[k] - kb[k]) / max(1.0, abs(kb[k])) for k in ka), default=0.0)
    if worst > 1e-9:
        return False, f"scores differ by up to {worst:.2e}"
    return True, f"same {len(ka)} slices, scores within {worst:.1e}"


def fmt_s(x: float | None) -> str:
    return "-" if x is None else f"{x:.3g}"


def fmt_gb(x: float | None) -> str:
    return "-" if not x else f"{x / 2**30:.2f}"




def mem_available() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 8 * 2**30



def vs_sliceline(rows: int, args, table_rows: list, notes: list) -> bool:
    """Part 1 at ``rows`` rows; False when the package did not finish."""
    print(f"[1] {rows:,} rows x 10 features: sliceline package (subprocess)", flush=True)
    peer = measure("sliceline", rows, 10, 1, mem_limit=args.sliceline_mem_gb * 2**30,
                   timeout=args.sliceline_timeout)
    if "error" in peer:
        print(f"  sliceline: {peer['error']}", flush=True)
        table_rows.append((f"{rows:,} rows x 10 features, max_level=3", None, None,
                           "sliceline Slicefinder.fit", None, None, None, ">= 20x", None))
        notes.append(f"sliceline on {rows:,} rows: {peer['error']}")
        return False
    print(f"  sliceline: {peer['seconds']:.2f}s, peak {fmt_gb(peer['peak'])} GB", flush=True)
    mine = measure("assay", rows, 10, args.repeat)
    if "error" in mine:
        raise SystemExit(f"assay failed on {rows:,} rows: {mine['error']}")
    ratio = peer["seconds"] / mine["seconds"]
    print(f"  assay:     {mine['seconds']:.3f}s, peak {fmt_gb(mine['peak'])} GB -> {ratio:.0f}x",
          flush=True)
    ok, line = same_top(mine["top"], peer["top"])
    print(f"  check  {'OK' if ok else '!!! MISMATCH'}: {line}", flush=True)
    notes.append(f"top-{SEARCH['k']} on {rows:,} rows, assay vs sliceline: "
                 f"{'' if ok else '!!! MISMATCH: '}{line}")
    table_rows.append((f"{rows:,} rows x 10 features, max_level=3", mine["seconds"],
                       mine["peak"], "sliceline Slicefinder.fit", peer["seconds"], peer["peak"],
                       ratio, ">= 20x", ratio >= 20 and ok))
    return True


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--child", choices=["assay", "sliceline"], help=argparse.SUPPRESS)
    ap.add_argument("--rows", type=int, default=1_000_000, help=argparse.SUPPRESS)
    ap.add_argument("--features", type=int, default=10, help=argparse.SUPPRESS)
    ap.add_argument("--dedupe", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--no-warmup", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--repeat", type=int, default=3, help="timed assay runs; best kept")
    ap.add_argument("--sliceline-rows", type=int, default=100_000)
    ap.add_argument("--fallback-rows", type=int, default=20_000,
                    help="rows of the comparison when the package fails on --sliceline-rows")
    ap.add_argument("--sliceline-mem-gb", type=float,
                    default=round(0.8 * mem_available() / 2**30, 1),
                    help="stop the package above this resident memory (default 80%% of "
                         "MemAvailable)")
    ap.add_argument("--sliceline-timeout", type=float, default=1800.0)
    ap.add_argument("--skip-sliceline", action="store_true")
    ap.add_argument("--assay-rows", type=int, default=1_000_000)
    ap.add_argument("--big", action="store_true", help="also 10M rows x 20 features")
    ap.add_argument("--write", action="store_true", help="write our section of RESULTS.md")
    args = ap.parse_args(argv)
    if args.child:
        child(args)
        return 0
    repeat = max(1, args.repeat)
    args.repeat = repeat

    table_rows: list[tuple] = []
    notes: list[str] = []
    if not args.skip_sliceline:
        if not vs_sliceline(args.sliceline_rows, args, table_rows, notes) \
                and args.fallback_rows < args.sliceline_rows:
            vs_sliceline(args.fallback_rows, args, table_rows, notes)

    # (rows, features, target, time goal, memory goal, dedupe values, timed runs, warm-up)
    runs = [(args.assay_rows, 10, "< 10 s, < 1 GB", 10.0, 2**30, (False, True), repeat, True)]
    if args.big:  # one cold run of the default (dedupe=True): it takes a minute on 2 cores
        runs.append((10_000_000, 20, "(record)", None, None, (True,), 1, False))
    for rows, feats, target, t_goal, m_goal, dedupes, reps, warm in runs:
        print(f"[2] {rows:,} rows x {feats} features: assay", flush=True)
        for dedupe in dedupes:
            r = measure("assay", rows, feats, reps, dedupe=dedupe, warmup=warm)
            if "error" in r:
                print(f"  assay: {r['error']}", flush=True)
                notes.append(f"assay on {rows:,} rows x {feats}: {r['error']}")
                continue
            met = None if t_goal is None else (r["seconds"] < t_goal and r["peak"] < m_goal)
            print(f"  assay dedupe={dedupe}: {r['seconds']:.3f}s, peak {fmt_gb(r['peak'])} GB "
                  f"(before the call {fmt_gb(r['rss_before'])} GB)", flush=True)
            table_rows.append((f"{rows:,} rows x {feats} features, max_level=3, "
                               f"dedupe={dedupe}", r["seconds"], r["peak"], "-", None, None,
                               None, target, met))
            ranks = [r["slices"].index(p) + 1 if p in r["slices"] else None for p in PLANTED]
            line = (f"{rows:,} x {feats}, dedupe={dedupe}: planted slices at ranks "
                    f"{ranks}{'' if None not in ranks else ' (!!! one is missing)'}; "
                    f"{sum(r['significant'])} of {len(r['slices'])} significant; RSS before "
                    f"the call {fmt_gb(r['rss_before'])} GB")
            print(f"  check  {line}", flush=True)
            notes.append(line)

    ncores = benchlib.cores()
    import assay

    try:
        from importlib.metadata import version

        sl_version = version("sliceline")
    except ImportError:
        sl_version = "not installed"
    cmd = shlex.join(["python", "benches/bench_discovery.py",
                      *(sys.argv[1:] if argv is None else argv)])
    now = datetime.datetime.now(datetime.UTC)
    lines = [
        f"## Slice discovery ({now:%Y-%m-%d %H:%M} UTC)",
        "",
        f"- command: `{cmd}`",
        f"- machine: {ncores} cores (sched_getaffinity), {benchlib.cpu_model()}, "
        f"{platform.system()} {platform.release()}, "
        f"{mem_available() / 2**30:.0f} GB available at the end",
        f"- software: Python {platform.python_version()}, numpy {np.__version__}, pyarrow "
        f"{pa.__version__}, sliceline {sl_version} (numba: "
        f"{'yes' if _has_numba() else 'no'}), assay {getattr(assay, '__version__', '?')}",
        f"- search: alpha={SEARCH['alpha']}, k={SEARCH['k']}, max_level={SEARCH['max_level']}, "
        f"min_support={SEARCH['min_support']}, error column; data: features of 5-10 values "
        "(dictionary strings for assay, integer codes for sliceline), exponential errors with "
        f"planted slices {', '.join(PLANTED)}",
        f"- each measurement in a fresh process; assay: best of {repeat} after a warm-up, "
        "default threads (10M rows: one run, no warm-up); sliceline: one run; peak = VmHWM "
        "after resetting it once the data is built (data and interpreter included)",
        "",
        "| benchmark | assay s | assay peak GB | peer | peer s | peer peak GB | ratio | target "
        "| met |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, a_s, a_m, peer, p_s, p_m, ratio, target, met in table_rows:
        r = "-" if ratio is None else f"{ratio:,.0f}x" if ratio >= 10 else f"{ratio:.1f}x"
        ok = "-" if met is None else "yes" if met else "NO"
        lines.append(f"| {name} | {fmt_s(a_s)} | {fmt_gb(a_m)} | {peer} | {fmt_s(p_s)} | "
                     f"{fmt_gb(p_m)} | {r} | {target} | {ok} |")
    lines += ["", "`ratio` is peer seconds / assay seconds."]
    if notes:
        lines += ["", "Checks:", ""] + [f"- {x}" for x in notes]
    text = "\n".join(lines)
    print()
    print(text)
    if args.write:
        benchlib.write_section(RESULTS, BEGIN, END, text)
        print(f"\nwrote the {BEGIN} section of {RESULTS}")
    return 0


def _has_numba() -> bool:
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    sys.exit(main())
