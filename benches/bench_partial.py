#!/usr/bin/env python3
"""Partial states: a job split into shards (accumulate, ship, merge, finalize) against one
``assay.evaluate`` call, merging many states, and the size of typical states.

Usage::

    python benches/bench_partial.py                 # 10M rows, best of 3
    python benches/bench_partial.py --quick         # 1M rows, 1 run each (smoke run)
    python benches/bench_partial.py --write         # also write its section of RESULTS.md
    python benches/bench_partial.py --rows 2000000 --repeat 5

Measured in one run, on the data of ``bench_evaluate.py`` (cached as parquet in
``benches/_data/``: label ``y``, score ``p``, string column ``seg`` with 100 values):

1. ``split``: all 15 default metrics (``metrics=None``, exact ROC-AUC) x 100 slices
   (``slices=["seg"]``) on ``--rows`` rows. (a) one ``assay.evaluate(table, ...)`` call; (b) the
   table cut into 16 contiguous shards (zero-copy ``table.slice``), each
   ``spec.accumulate(shard, row_offset=start)`` + ``state.to_bytes()`` +
   ``assay.PartialState.from_bytes(blob)``, then ``assay.merge(states).finalize()``. Target:
   (b) / (a) <= 1.15. The two alternate within each repeat (so drift in the machine's speed hits
   both alike); the best of each is kept, and (b)'s split into its stages is the one of its best
   run.
2. ``merge``: 1,000 states of 100 slices with additive metrics only (accuracy, precision, recall,
   f1, log_loss, brier), built beforehand from 1,000 consecutive shards of min(10,000,
   rows / 1,000) rows (each with its own ``row_offset``); only ``assay.merge(states)`` is timed.
   Target: < 50 ms.
3. ``sizes``: ``len(state.to_bytes())`` and ``state.nbytes`` of typical states with 100 slices on
   min(1M, rows) rows: the 13 additive (one-pass) metrics; the same with ``bootstrap=200``; with
   exact ``roc_auc``; with ``auc="sketch"`` (default budget); with exact ``roc_auc`` on scores
   rounded to 3 decimals (compacted runs: one entry per distinct score, slice and label). For
   information.

Every report of a split job is checked against the one-pass report of the same rows (same
shape, columns and slice order; integer and string columns exact, float columns within
``1e-9 * max(1, |x|)``), so a fast but wrong path cannot win; mismatches print ``!!! MISMATCH``
and the exit status is 1. assay runs with its default thread count. ``--write`` replaces the
section between ``<!-- bench_partial -->`` and ``<!-- /bench_partial -->`` in benches/RESULTS.md
(appended at the end if absent) and leaves the rest of the file as it is.
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse
import datetime
import gc
import math
import platform
import shlex
import sys
import time
import warnings
from pathlib import Path

import benchlib
import numpy as np
import pyarrow as pa
from bench_evaluate import ONE_PASS, data_path, load_data

import assay

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "RESULTS.md"
BEGIN, END = "<!-- bench_partial -->", "<!-- /bench_partial -->"

N_SHARDS = 16
N_MERGE = 1_000
MERGE_SHARD_ROWS = 10_000  # at most; fewer when --rows < 10M
MERGE_METRICS = ["accuracy", "precision", "recall", "f1", "log_loss", "brier"]
SIZE_ROWS = 1_000_000
BOOTSTRAP = 200
SLICES = ["seg"]
PARTS = ("split", "merge", "sizes")
RTOL = 1e-9  # |split - one pass| <= RTOL * max(1, |one pass|)


# --------------------------------------------------------------------------------------------
# checks


class Checker:
    def __init__(self) -> None:
        self.n_checked = 0
        self.mismatches: list[str] = []
        # stats of the last same_report: largest |split - one pass| / max(1, |one pass|),
        # finite float values compared, and how many of them were bit-identical
        self.max_rel, self.n_float, self.n_bitequal = 0.0, 0, 0

    def fail(self, msg: str) -> None:
        self.mismatches.append(msg)
        print(f"!!! MISMATCH {msg}", flush=True)

    def same_report(self, what: str, got, want) -> None:
        """``got`` (a split job's report) against ``want`` (the one-pass report): same columns,
        rows in the same order, non-float columns equal, float columns within RTOL."""
        g, w = got.table, want.table
        self.n_checked += 1
        self.max_rel, self.n_float, self.n_bitequal = 0.0, 0, 0  # stats of this comparison
        if g.columns != w.columns or g.height != w.height:
            self.fail(f"{what}: shape/columns differ: {g.shape} {g.columns} vs {w.shape} {w.columns}")
            return
        for col in w.columns:
            self.n_checked += 1
            gs, ws = g[col], w[col]
            if gs.dtype != ws.dtype:
                self.fail(f"{what}: column {col!r} dtype {gs.dtype} vs {ws.dtype}")
                continue
            if ws.dtype.is_float():
                gv = gs.cast(float).fill_null(math.inf).to_numpy()
                wv = ws.cast(float).fill_null(math.inf).to_numpy()
                gnull, wnull = gs.is_null().to_numpy(), ws.is_null().to_numpy()
                both_nan = np.isnan(gv) & np.isnan(wv)
                with np.errstate(invalid="ignore"):
                    diff = np.abs(gv - wv)
                    bad = ~both_nan & ~(diff <= RTOL * np.maximum(1.0, np.abs(wv)))
                bad &= ~(gnull & wnull)
                bad |= gnull != wnull
                ok = ~(gnull | wnull) & np.isfinite(wv) & np.isfinite(gv)
                if ok.any():
                    rel = diff[ok] / np.maximum(1.0, np.abs(wv[ok]))
                    self.max_rel = max(self.max_rel, float(rel.max()))
                    self.n_float += int(ok.sum())
                    self.n_bitequal += int((gv[ok] == wv[ok]).sum())
                if bad.any():
                    i = int(np.flatnonzero(bad)[0])
                    self.fail(f"{what}: column {col!r}: {int(bad.sum())} of {len(bad)} rows differ, "
                              f"first row {i}: split={gs[i]!r} one-pass={ws[i]!r}")
            else:
                gl, wl = gs.to_list(), ws.to_list()
                if gl != wl:
                    i = next(k for k, (a, b) in enumerate(zip(gl, wl)) if a != b)
                    self.fail(f"{what}: column {col!r} row {i}: split={gl[i]!r} one-pass={wl[i]!r}")


# --------------------------------------------------------------------------------------------
# output


def fmt_s(x: float | None) -> str:
    return "-" if x is None else f"{x:.3g}"


def fmt_ms(x: float | None) -> str:
    return "-" if x is None else f"{x * 1e3:.3g} ms"


def fmt_bytes(x: int) -> str:
    for unit, k in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if x >= k:
            return f"{x / k:.3g} {unit}"
    return f"{x} B"


# --------------------------------------------------------------------------------------------
# 1. split job vs one evaluate call


def bounds(n: int, k: int) -> list[tuple[int, int]]:
    return [(i * n // k, (i + 1) * n // k) for i in range(k)]


def split_job(spec, table: pa.Table, cuts: list[tuple[int, int]]):
    """(seconds per stage, report, sum of blob bytes) of the split job."""
    gc.collect()
    t = {"accumulate": 0.0, "to_bytes": 0.0, "from_bytes": 0.0, "merge": 0.0, "finalize": 0.0}
    states = []
    nbytes = 0
    for start, end in cuts:
        t0 = time.perf_counter()
        s = spec.accumulate(table.slice(start, end - start), row_offset=start)
        t1 = time.perf_counter()
        blob = s.to_bytes()
        t2 = time.perf_counter()
        states.append(assay.PartialState.from_bytes(blob))
        t3 = time.perf_counter()
        t["accumulate"] += t1 - t0
        t["to_bytes"] += t2 - t1
        t["from_bytes"] += t3 - t2
        nbytes += len(blob)
        del s, blob
    t0 = time.perf_counter()
    merged = assay.merge(states)
    t1 = time.perf_counter()
    rep = merged.finalize()
    t2 = time.perf_counter()
    t["merge"] = t1 - t0
    t["finalize"] = t2 - t1
    t["total"] = sum(t.values())
    return t, rep, nbytes


def bench_split(table: pa.Table, repeat: int, chk: Checker, rows: list, notes: list) -> None:
    n = table.num_rows
    print(f"[1] 15 metrics x 100 slices, {n:,} rows: one evaluate vs {N_SHARDS} shards "
          "(accumulate + to_bytes + from_bytes, merge, finalize)", flush=True)
    kw = dict(label="y", score="p", slices=SLICES, metrics=None)
    spec = assay.Spec(**kw)
    cuts = bounds(n, N_SHARDS)
    # warm-up (untimed): first-call costs of both paths
    small = table.slice(0, 20_000)
    assay.evaluate(small, **kw)
    split_job(spec, small, bounds(small.num_rows, N_SHARDS))

    one_best, split_best = math.inf, None
    rep_one = rep_split = None
    blob_bytes = 0
    for _ in range(repeat):  # alternate, so that drift in the machine's speed hits both alike
        s, rep_one = benchlib.best_of(lambda: assay.evaluate(table, **kw), 1)
        one_best = min(one_best, s)
        t, rep_split, blob_bytes = split_job(spec, table, cuts)
        if split_best is None or t["total"] < split_best["total"]:
            split_best = t
    a, b = one_best, split_best["total"]
    ratio = b / a
    stages = ", ".join(f"{k} {split_best[k]:.4f}s" for k in
                       ("accumulate", "to_bytes", "from_bytes", "merge", "finalize"))
    print(f"  assay  evaluate (one call):      {a:.4f}s", flush=True)
    print(f"  assay  {N_SHARDS} shards, split job:     {b:.4f}s  -> {ratio:.3f}x of one call", flush=True)
    print(f"         stages: {stages}", flush=True)
    print(f"         {N_SHARDS} blobs, {fmt_bytes(blob_bytes)} in all", flush=True)
    rows.append((f"15 metrics x 100 slices, {n:,} rows, {N_SHARDS} shards", "split job", b,
                 "one assay.evaluate call", a, f"{ratio:.3f}x", "<= 1.15x", ratio <= 1.15))
    notes.append(f"split job stages (best run): {stages}; the {N_SHARDS} blobs hold "
                 f"{blob_bytes:,} bytes ({fmt_bytes(blob_bytes)}) in all")
    before = len(chk.mismatches)
    chk.same_report(f"split job ({N_SHARDS} shards) vs evaluate", rep_split, rep_one)
    ok = len(chk.mismatches) == before
    line = (f"split job report vs one-pass report ({rep_one.table.height} rows x "
            f"{rep_one.table.width} columns): {'equal' if ok else '**MISMATCH**'} (counts and "
            f"strings exact, floats within {RTOL:g} * max(1, |x|)); {chk.n_bitequal:,} of "
            f"{chk.n_float:,} floats bit-identical, max relative difference {chk.max_rel:.1e}")
    print(f"  check  {line}", flush=True)
    notes.append(line)


# --------------------------------------------------------------------------------------------
# 2. merging 1,000 states


def bench_merge(table: pa.Table, repeat: int, chk: Checker, rows: list, notes: list) -> None:
    shard = min(MERGE_SHARD_ROWS, table.num_rows // N_MERGE)
    if shard < 1:
        print(f"[2] skipped: fewer than {N_MERGE} rows", flush=True)
        return
    print(f"[2] merge {N_MERGE:,} states of 100 slices ({len(MERGE_METRICS)} additive metrics, "
          f"{shard:,} rows each)", flush=True)
    kw = dict(label="y", score="p", slices=SLICES, metrics=MERGE_METRICS)
    spec = assay.Spec(**kw)
    t0 = time.perf_counter()
    states = [spec.accumulate(table.slice(i * shard, shard), row_offset=i * shard)
              for i in range(N_MERGE)]
    build_s = time.perf_counter() - t0
    sizes = [s.nbytes for s in states]
    print(f"  built the states in {build_s:.2f}s (untimed); {fmt_bytes(int(np.mean(sizes)))} each "
          f"on average", flush=True)
    s, merged = benchlib.best_of(lambda: assay.merge(states), repeat, warmup=True)
    print(f"  assay  merge({N_MERGE:,} states): {s * 1e3:.2f} ms", flush=True)
    rows.append((f"merge {N_MERGE:,} states x 100 slices, {len(MERGE_METRICS)} additive metrics",
                 "assay.merge", s, "-", None, "-", "< 50 ms", s < 0.050))
    notes.append(f"merge: {N_MERGE:,} states of {shard:,} rows each ({N_MERGE * shard:,} rows), "
                 f"metrics {', '.join(MERGE_METRICS)}; built in {build_s:.2f}s (untimed); "
                 f"{int(np.mean(sizes)):,} bytes per state on average, merged state "
                 f"{merged.nbytes:,} bytes")
    want = assay.evaluate(table.slice(0, N_MERGE * shard), **kw)
    before = len(chk.mismatches)
    chk.same_report(f"merge of {N_MERGE} states vs evaluate", merged.finalize(), want)
    if merged.row_ranges != [(0, N_MERGE * shard)]:
        chk.fail(f"merged state covers {merged.row_ranges[:3]}..., not [(0, {N_MERGE * shard})]")
    ok = len(chk.mismatches) == before
    line = (f"merged state finalized vs evaluate on the same {N_MERGE * shard:,} rows "
            f"({want.table.height} rows): {'equal' if ok else '**MISMATCH**'}; {chk.n_bitequal:,} of "
            f"{chk.n_float:,} floats bit-identical, max relative difference {chk.max_rel:.1e}")
    print(f"  check  {line}", flush=True)
    notes.append(line)


# --------------------------------------------------------------------------------------------
# 3. sizes of typical states


def bench_sizes(table: pa.Table, chk: Checker, sizes: list, notes: list) -> None:
    m = min(SIZE_ROWS, table.num_rows)
    sub = table.slice(0, m)
    print(f"[3] sizes of states with 100 slices, {m:,} rows", flush=True)
    base = dict(label="y", score="p", slices=SLICES)
    cases = [
        (f"{len(ONE_PASS)} additive metrics", dict(metrics=ONE_PASS)),
        (f"{len(ONE_PASS)} additive metrics, bootstrap={BOOTSTRAP}",
         dict(metrics=ONE_PASS, bootstrap=BOOTSTRAP)),
        (f"{len(ONE_PASS)} additive metrics + roc_auc, exact", dict(metrics=[*ONE_PASS, "roc_auc"])),
        (f"{len(ONE_PASS)} additive metrics + roc_auc, auc=\"sketch\" (default budget)",
         dict(metrics=[*ONE_PASS, "roc_auc"], auc="sketch")),
        ("no slices, roc_auc only, exact", dict(slices=(), metrics=["roc_auc"])),
        ("no slices, roc_auc only, auc=\"sketch\" (default budget)",
         dict(slices=(), metrics=["roc_auc"], auc="sketch")),
        (f"{len(ONE_PASS)} additive metrics + roc_auc, exact, scores rounded to 3 decimals",
         dict(metrics=[*ONE_PASS, "roc_auc"], rounded=True)),
    ]
    auc = {}
    rounded = sub.set_column(sub.schema.get_field_index("p"), "p",
                             pa.array(np.round(sub.column("p").to_numpy(), 3)))
    for name, kw in cases:
        kw = dict(kw)
        is_rounded = kw.pop("rounded", False)
        data = rounded if is_rounded else sub
        spec = assay.Spec(**{**base, **kw})
        t0 = time.perf_counter()
        state = spec.accumulate(data)
        acc_s = time.perf_counter() - t0
        blob = state.to_bytes()
        print(f"  {name}: to_bytes {len(blob):,} B ({fmt_bytes(len(blob))}), nbytes {state.nbytes:,} "
              f"(accumulate {acc_s:.3f}s)", flush=True)
        if state.nbytes != len(blob):
            chk.fail(f"{name}: state.nbytes {state.nbytes} != len(to_bytes()) {len(blob)}")
        sizes.append((name, len(blob), state.nbytes))
        if "roc_auc" in kw["metrics"] and not is_rounded:
            sliced = "no slices" if kw.get("slices") == () else "100 slices"
            auc[(sliced, kw.get("auc", "exact"))] = assay.PartialState.from_bytes(blob).finalize()
    for sliced in ("100 slices", "no slices"):
        if (sliced, "exact") in auc and (sliced, "sketch") in auc:
            sketch_check(sliced, auc[(sliced, "exact")], auc[(sliced, "sketch")], chk, notes)


def sketch_check(what: str, exact, sketch, chk: Checker, notes: list) -> None:
    """The sketched ROC-AUC of each report row is within the bound its note states."""
    ex = dict(zip(exact.table["slice"].to_list(), exact.table["roc_auc"].to_list()))
    sk = dict(zip(sketch.table["slice"].to_list(), sketch.table["roc_auc"].to_list()))
    nt = sketch.notes
    bound = {}
    if "error_bound" in nt.columns:
        for row in nt.iter_rows(named=True):
            if row.get("metric") == "roc_auc" and row.get("error_bound") is not None:
                bound[row["slice"]] = float(row["error_bound"])
    chk.n_checked += 1
    if set(ex) != set(sk):
        chk.fail(f"sketch ({what}): report slices differ from the exact report's")
        return
    missing = [k for k in ex if k not in bound]
    if missing:
        chk.fail(f"sketch ({what}): no error_bound note for {len(missing)} rows, e.g. {missing[0]!r}")
    errs = []
    for k, v in ex.items():
        if k not in bound or v is None or sk[k] is None or math.isnan(v):
            continue
        chk.n_checked += 1
        e = abs(sk[k] - v)
        errs.append(e)
        if e > bound[k] + 1e-12:
            chk.fail(f"sketch ({what}) {k}: |sketch - exact| = {e:.3e} > bound {bound[k]:.3e}")
    overall = bound.get("overall")
    line = (f"auc=\"sketch\" vs exact roc_auc, {what} ({len(ex)} report rows): max |error| "
            f"{max(errs, default=math.nan):.2e}, max bound {max(bound.values(), default=math.nan):.2e}"
            f" (overall row: bound {overall if overall is None else f'{overall:.2e}'}); every error "
            "within its row's bound" if errs else f"auc=\"sketch\", {what}: nothing to check")
    print(f"  check  {line}", flush=True)
    notes.append(line)


# --------------------------------------------------------------------------------------------
# main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=10_000_000, help="rows (default 10M)")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per measurement; best kept")
    ap.add_argument("--quick", action="store_true", help="1M rows, 1 run each (smoke run)")
    ap.add_argument("--only", default=",".join(PARTS),
                    help=f"comma list of parts to run: {','.join(PARTS)} (default all)")
    ap.add_argument("--write", action="store_true", help="write our section of RESULTS.md")
    args = ap.parse_args(argv)
    if args.quick:
        args.rows, args.repeat = 1_000_000, 1
    parts = [x.strip() for x in args.only.split(",") if x.strip()]
    bad = [x for x in parts if x not in PARTS]
    if bad or not parts:
        ap.error(f"--only takes a comma list of {', '.join(PARTS)}; got {args.only!r}")
    if args.rows < 100_000:
        ap.error("--rows must be at least 100000")
    repeat = max(1, args.repeat)
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=RuntimeWarning)

    cmd = shlex.join(["python", "benches/bench_partial.py", *(sys.argv[1:] if argv is None else argv)])
    ncores = benchlib.cores()
    machine = (f"{ncores} cores (sched_getaffinity), {benchlib.cpu_model()}, "
               f"{platform.system()} {platform.release()}")
    import polars as pl

    software = (f"Python {platform.python_version()}, numpy {np.__version__}, pyarrow {pa.__version__}, "
                f"polars {pl.__version__}, assay {getattr(assay, '__version__', '?')}")
    print(f"command: {cmd}")
    print(f"machine: {machine}")
    print(f"software: {software}", flush=True)

    n = args.rows
    table, load_s, cached = load_data(n)
    src = "read from cache" if cached else "generated"
    print(f"data: {n:,} rows, {src} in {load_s:.1f}s ({data_path(n).relative_to(HERE.parent)}); "
          f"assay with its default threads ({ncores} cores); best of {repeat}", flush=True)

    chk = Checker()
    rows: list[tuple] = []
    sizes: list[tuple] = []
    notes: list[str] = []
    if "split" in parts:
        bench_split(table, repeat, chk, rows, notes)
    if "merge" in parts:
        bench_merge(table, repeat, chk, rows, notes)
    if "sizes" in parts:
        bench_sizes(table, chk, sizes, notes)

    now = datetime.datetime.now(datetime.UTC)
    lines = [
        f"## Partial states ({', '.join(parts)}; {now:%Y-%m-%d %H:%M} UTC)",
        "",
        f"- command: `{cmd}`",
        f"- machine: {machine}",
        f"- software: {software}",
        f"- assay with its default threads; wall clock, best of {repeat} after an untimed warm-up "
        "call" + (" (the split job and the evaluate call alternate)" if "split" in parts else ""),
        f"- data: the `bench_evaluate.py` table ({n:,} rows, `slices=[\"seg\"]`: 100 string "
        f"values), loaded once; shards are zero-copy `table.slice`s with `row_offset` = their "
        "first row",
    ]
    if rows:
        lines += [
            "",
            "| benchmark | assay | assay s | peer | peer s | ratio | target | met |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for name, what, a_s, peer, p_s, ratio, target, met in rows:
            ok = "-" if met is None else "yes" if met else "NO"
            a_txt = fmt_ms(a_s) if a_s is not None and a_s < 0.1 else fmt_s(a_s)
            lines.append(f"| {name} | {what} | {a_txt} | {peer} | {fmt_s(p_s)} | {ratio} | {target} | {ok} |")
        if "split" in parts:
            lines += ["", f"`ratio` is split-job seconds / one-call seconds. The split job is "
                      f"{N_SHARDS} x (`spec.accumulate(shard, row_offset=start)` + "
                      "`to_bytes()` + `PartialState.from_bytes`) + `assay.merge` + `finalize()`."]
    if sizes:
        lines += [
            "",
            f"State sizes (100 slices, {min(SIZE_ROWS, n):,} rows):",
            "",
            "| state | len(to_bytes()) | nbytes |",
            "|---|---|---|",
        ]
        lines += [f"| {name} | {b:,} ({fmt_bytes(b)}) | {nb:,} |" for name, b, nb in sizes]
    vline = (f"all {chk.n_checked} checks passed" if not chk.mismatches
             else f"**FAILED**: {len(chk.mismatches)} mismatches")
    lines += ["", f"Checks (untimed): {vline}", ""] + [f"- {x}" for x in notes]
    if chk.mismatches:
        lines += [f"- `{m}`" for m in chk.mismatches[:20]]
    text = "\n".join(lines)
    print()
    print(text)
    if args.write:
        benchlib.write_section(RESULTS, BEGIN, END, text)
        print(f"\nwrote the {BEGIN} section of {RESULTS}")
    return 1 if chk.mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
