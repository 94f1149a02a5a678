#!/usr/bin/env python3
"""Honest gates at scale: A/A and power simulations of ``Comparison.assert_not_worse`` over
hundreds of cells, error rates of ``assay.discover_regressions``, and ``Report.disparity``
against Fairlearn's ``MetricFrame`` (time and values). ``tests/test_multiplicity.py`` runs
small versions of parts 1 and 2; this is the larger run.

Usage::

    python benches/bench_gates.py                  # defaults (about 5 minutes on 2 cores)
    python benches/bench_gates.py --quick          # smaller everything (under a minute)
    python benches/bench_gates.py --write          # also write the section of RESULTS.md
    python benches/bench_gates.py --only aa,power  # a subset of: aa, power, discover, disparity

What is measured (every data set seeded; sizes are the defaults, ``--quick`` in brackets):

1. ``aa``: the family-wise error of the gate. ``--aa`` 500 [60] A/A data sets of ``--rows``
   20,000 rows: label ``y`` ~ Bernoulli(0.5), ``z = N(0, 1) + 1.2 y``, two models of equal
   quality ``sigmoid(z + N(0, 0.7^2))`` with independent noise, features ``a`` and ``b`` with
   12 uniform values each; slices ``["a", "b", ("a", "b")]`` (the 12 x 12 cross and its margins:
   169 slices with overall) x metrics roc_auc, log_loss, accuracy = 507 cells. One
   ``assay.compare(..., bootstrap=B, seed=i)`` per data set (``--bootstrap`` B = 300 [200]),
   then ``assert_not_worse(metrics, margin=0, correction=c)`` for c in simultaneous, holm, bh,
   none on that one comparison (the gate's ``correction`` argument: nothing is recomputed).
   Reported: the fraction of data sets whose gate fails, with its Wilson 95% interval (the
   Monte-Carlo error of the simulation). Nominal: the gate rejects on one side of a
   two-sided 95% band, so at most 2.5% (docs/multiplicity.md, Limits); the check is the
   documented 5%.
2. ``power``: the same data with a regression planted in one slice (the candidate's noise
   standard deviation raised from 0.7 there), ``--power`` 150 [30] data sets per scenario:
   ``cell``: the cross cell ``a=3 & b=5`` (about 140 rows), noise sd 3.0; ``margin``: the
   slice ``a=3`` (about 1,700 rows), noise sd 1.3. Reported per correction: the fraction of
   data sets whose gate fails naming the planted slice, the fraction failing at all, and the
   fraction naming a slice that shares no row with the planted one (a false alarm).
3. ``discover``: ``discover_regressions(make_comparison_data(rows, seed), label="churned",
   features=[country, device, plan, channel, gender])`` with its defaults (k=10,
   max_level=3, min_support=0.01, dedupe, ci=0.95) for correction holm, bh, none, on
   ``--discover-seeds`` 150 [30] seeds of ``--discover-rows`` 50,000 [20,000] rows:
   (a) forward (reference ``p_old``, candidate ``p_new``, broken for ``channel=partner``): the
   rate at which ``channel=partner`` is rank 1 and significant, and the rate at which any
   significant slice lies in ``channel=web`` or ``channel=app`` (rows where both models are
   equally good: a false discovery), and at which any slice there is reported at all (the
   top k may be filled by slices holding partner rows, which makes the previous count
   vacuous); (b) reversed (the models swapped: nothing is broken for
   the candidate) and (c) A/A (each row's two scores swapped by a fair coin, so the models are
   exchangeable and every slice's mean difference is 0): the rate of data sets with any
   significant slice. Nominal family-wise rate ``(1 - ci) / 2`` = 2.5% (Holm; BH too when
   every null is true). And the time of one call (holm) at ``--discover-time-rows``
   1,000,000 [200,000] rows: best of ``--repeat`` 3 [1] after an untimed call.
4. ``disparity``: ``--fair-rows`` 1,000,000 [200,000] rows, a sensitive feature ``group``
   with 5 values (35/25/20/12/8%, different base rates and score shifts), label ``y`` int8,
   score ``p`` float64, prediction ``p >= 0.5``. assay: ``evaluate(table, label="y",
   score="p", slices=["group"], metrics=["prediction_rate", "recall", "fpr"],
   bootstrap=B, seed=0)`` + ``rep.disparity("equalized_odds", spec="group")`` +
   ``rep.disparity("demographic_parity", spec="group")``. Fairlearn: ``MetricFrame(metrics=
   {selection_rate, true_positive_rate, false_positive_rate}, y_true, y_pred (thresholding
   timed), sensitive_features, n_boot=B, ci_quantiles=[0.025, 0.975], random_state=0)`` +
   ``difference()``/``ratio()`` (both methods) and, with ``n_boot``, ``difference_ci()``/
   ``ratio_ci()`` (both methods). Without bootstrap (assay ``bootstrap=None``; the API has no
   ``bootstrap=0``) on all rows; with bootstrap ``--fair-bootstrap`` B = 200 [50] on the first
   ``--fair-boot-rows`` 20,000 [5,000] rows (Fairlearn recomputes every metric of every group
   in pandas per replicate, about 10 s a replicate at 1M rows on this machine), and assay
   with B also on all rows, where the Fairlearn time is an estimate: its no-bootstrap time
   plus B x the cost of one replicate (the time of an ``n_boot=1`` run on all rows minus the
   no-bootstrap time; both measured).
   Timings: assay best of ``--repeat`` after an untimed call; Fairlearn one run after a
   warm-up on 2,000 rows. Fairlearn can give intervals for each metric's difference and ratio
   (``difference_ci``), so for demographic parity (the selection rate's difference) and for
   the TPR and FPR differences separately, but not for ``equalized_odds_difference`` (the
   larger of the two in every replicate): MetricFrame does not expose its replicates and the
   named functions take no bootstrap. Both sets of intervals are printed side by side (for
   information: different resampling, Poisson vs multinomial, so they agree up to Monte-Carlo
   noise only).

Checks (exit status 1 on a failure): (1) for simultaneous, holm and bh, the one-sided exact
binomial test of "fails in at most 5% of data sets" does not reject at the 0.05 level; none
fails in at least half of the data sets and its Wilson interval lies above simultaneous's;
(2) bh detects the planted slice whenever holm does (BH's adjusted p-values are never above
Holm's), and the ``margin`` scenario is detected in at least 80% of data sets by every
correction; (3) holm finds ``channel=partner`` at rank 1, significant, in at least 95% of
seeds; the binomial test at 5% as in (1) for holm's and bh's rate of any significant slice on
reversed and A/A data, and holm's rate of significant ``channel=web/app`` slices on forward
data; (4) every point value (group values, difference, ratio, both to overall, of demographic
parity and equalized odds, and Fairlearn's named ``*_difference``/``*_ratio`` functions on the
bootstrap rows) agrees with Fairlearn's within 1e-9 * max(1, |x|).

assay runs with its default threads (all cores), NumPy/BLAS pinned to 1 thread, Fairlearn
single-threaded. The 2-core machine may be shared (a CI run): the load average at the start
and the end is recorded with the results; treat the times as upper bounds when it is high.
``--write`` replaces the section between ``<!-- bench_gates -->`` and
``<!-- /bench_gates -->`` in benches/RESULTS.md (appended at the end if absent).
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse
import datetime
import math
import platform
import shlex
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import benchlib
import numpy as np
import pyarrow as pa

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "RESULTS.md"
BEGIN, END = "<!-- bench_gates -->", "<!-- /bench_gates -->"
PARTS = ("aa", "power", "discover", "disparity")

CORRECTIONS = ("simultaneous", "holm", "bh", "none")
GATE_METRICS = ["roc_auc", "log_loss", "accuracy"]
GATE_SLICES = ["a", "b", ("a", "b")]
LEVELS = 12  # values of a and of b
NOMINAL = 0.05  # the family-wise error the checks hold the corrected gates to
AA_SEED, POWER_SEED = 1_000_000, 2_000_000  # data set i of part 1 uses seed AA_SEED + i
# name: (the planted slice's predicates, the candidate's noise sd there)
SCENARIOS = {"cell": ({"a": 3, "b": 5}, 3.0), "margin": ({"a": 3}, 1.3)}

DISCOVER_FEATURES = ["country", "device", "plan", "channel", "gender"]
DISCOVER_CORRECTIONS = ("holm", "bh", "none")
PARTNER = "channel=partner"

FAIR_METRICS = ["prediction_rate", "recall", "fpr"]
GROUPS = np.array(["g0", "g1", "g2", "g3", "g4"])
GROUP_P = [0.35, 0.25, 0.20, 0.12, 0.08]
GROUP_BASE = np.array([-1.2, -1.0, -0.8, -1.4, -0.6])
GROUP_SHIFT = np.array([0.0, 0.2, -0.2, 0.4, -0.3])
THRESHOLD = 0.5
FAIR_SEED = 20240611
RTOL = 1e-9
STATS = ("difference", "ratio", "difference_to_overall", "ratio_to_overall")


# --------------------------------------------------------------------------------------------
# statistics of the simulation


def wilson(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson score interval (95%) of a binomial proportion k / n."""
    if n == 0:
        return math.nan, math.nan
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return max(0.0, c - h), min(1.0, c + h)


def p_at_least(k: int, n: int, p0: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p0): the one-sided exact test of "rate <= p0"."""
    from scipy.stats import binom

    return float(binom.sf(k - 1, n, p0))


def rate(k: int, n: int) -> str:
    lo, hi = wilson(k, n)
    return f"{k}/{n} = {k / n:.1%} [{lo:.1%}, {hi:.1%}]"


class Checks:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.failed = False

    def note(self, ok: bool, text: str) -> None:
        self.failed |= not ok
        line = text if ok else f"**FAILED**: {text}"
        self.lines.append(line)
        print(("    check: " if ok else "!!! ") + line, flush=True)

    def at_most(self, k: int, n: int, p0: float, what: str) -> None:
        p = p_at_least(k, n, p0)
        self.note(p >= 0.05, f"{what}: {k}/{n} ({k / n:.1%}); P(X >= {k} | Binomial({n}, "
                             f"{p0:g})) = {p:.3g} (fails below 0.05)")


# --------------------------------------------------------------------------------------------
# 1 and 2: the gate


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


def gate_data(seed: int, rows: int, planted: tuple[dict[str, int], float] | None = None
              ) -> dict[str, np.ndarray]:
    """Two models of equal quality (the same logit, independent noise of sd 0.7); with
    ``planted``, the candidate's noise has the given sd on the planted slice's rows."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, rows)
    z = rng.normal(size=rows) + 1.2 * y
    a = rng.integers(0, LEVELS, rows)
    b = rng.integers(0, LEVELS, rows)
    old = sigmoid(z + rng.normal(0, 0.7, rows))
    sd = np.full(rows, 0.7)
    if planted is not None:
        preds, noise = planted
        cols = {"a": a, "b": b}
        mask = np.ones(rows, bool)
        for f, v in preds.items():
            mask &= cols[f] == v
        sd[mask] = noise
    new = sigmoid(z + sd * rng.normal(0, 1, rows))
    return {"y": y, "old": old, "new": new, "a": a, "b": b}


def run_gates(data: dict[str, np.ndarray], bootstrap: int, seed: int
              ) -> tuple[dict[str, frozenset[str]], int, float]:
    """The slices each correction's gate finds worse (empty: it passes), the cells gated and
    the seconds of the compare call."""
    import assay

    t0 = time.perf_counter()
    cmp = assay.compare(data, label="y", scores={"old": "old", "new": "new"},
                        slices=GATE_SLICES, metrics=GATE_METRICS, bootstrap=bootstrap, seed=seed)
    secs = time.perf_counter() - t0
    out: dict[str, frozenset[str]] = {}
    cells = int(cmp.table["metric"].is_in(GATE_METRICS).sum())  # every cell is gated
    for c in CORRECTIONS:
        try:
            cmp.assert_not_worse(GATE_METRICS, margin=0.0, correction=c)
            out[c] = frozenset()
        except assay.RegressionDetected as e:
            out[c] = frozenset(e.slices["slice"].to_list())
    return out, cells, secs


def predicates(label: str) -> dict[str, str]:
    """{feature: value} of a slice label ("overall", "a=3", "a=3 & b=5")."""
    if label == "overall":
        return {}
    return dict(p.split("=", 1) for p in label.split(" & "))


def shares_rows(label: str, planted: dict[str, int]) -> bool:
    """Whether the slice can hold rows of the planted slice (no conflicting predicate)."""
    got = predicates(label)
    return all(got.get(f, str(v)) == str(v) for f, v in planted.items())


def part_aa(args: argparse.Namespace, checks: Checks, out: dict[str, Any]) -> list[str]:
    n = args.aa
    print(f"[1] A/A: {n} data sets x {args.rows:,} rows, B={args.bootstrap}", flush=True)
    fails = dict.fromkeys(CORRECTIONS, 0)
    secs: list[float] = []
    cells = 0
    t0 = time.perf_counter()
    for i in range(n):
        res, cells, s = run_gates(gate_data(AA_SEED + i, args.rows), args.bootstrap, i)
        secs.append(s)
        for c in CORRECTIONS:
            fails[c] += bool(res[c])
        if (i + 1) % max(1, n // 5) == 0:
            print(f"    {i + 1}/{n} ({time.perf_counter() - t0:.0f}s): {fails}", flush=True)
    wall = time.perf_counter() - t0
    out["aa"] = {"fails": fails, "n": n, "cells": cells, "wall": wall,
                 "compare_s": float(np.median(secs))}
    for c in ("simultaneous", "holm", "bh"):
        checks.at_most(fails[c], n, NOMINAL, f"A/A gate, {c}: fails in at most {NOMINAL:.0%}")
    sim_hi = wilson(fails["simultaneous"], n)[1]
    none_lo = wilson(fails["none"], n)[0]
    checks.note(fails["none"] >= n / 2 and none_lo > sim_hi,
                f"A/A gate, none fails far more often: {fails['none']}/{n} (Wilson lower "
                f"{none_lo:.1%} vs simultaneous's upper {sim_hi:.1%})")
    lines = [
        f"### 1. A/A: family-wise error of `assert_not_worse` ({n} data sets)",
        "",
        f"{n} A/A data sets x {args.rows:,} rows; {cells} cells each ({len(GATE_METRICS)} "
        f"metrics x 169 slices: a 12 x 12 cross, its margins and overall); B = "
        f"{args.bootstrap}; margin 0. Median `compare` time per data set "
        f"{out['aa']['compare_s']:.3f} s (the four gates: one comparison); part wall time "
        f"{wall:.0f} s.",
        "",
        "| correction | data sets whose gate fails | rate | Wilson 95% interval | "
        "documented bound |",
        "|---|---|---|---|---|",
    ]
    for c in CORRECTIONS:
        lo, hi = wilson(fails[c], n)
        bound = "none (each cell's own 95% interval)" if c == "none" else \
            "<= 5% (about 2.5%: one-sided)"
        lines.append(f"| {c} | {fails[c]} / {n} | {fails[c] / n:.1%} | [{lo:.1%}, {hi:.1%}] "
                     f"| {bound} |")
    return lines


def part_power(args: argparse.Namespace, checks: Checks, out: dict[str, Any]) -> list[str]:
    n = args.power
    lines = [
        f"### 2. Power: a regression planted in one slice ({n} data sets per scenario)",
        "",
        f"The A/A data of part 1 ({args.rows:,} rows, B = {args.bootstrap}), with the "
        "candidate's noise sd raised from 0.7 on the planted slice's rows. `detected`: the gate "
        "fails naming the planted slice; `fails`: it fails at all; `false alarm`: it names a "
        "slice sharing no row with the planted one.",
        "",
        "| planted | correction | detected | fails | false alarm |",
        "|---|---|---|---|---|",
    ]
    out["power"] = {}
    for j, (name, (preds, noise)) in enumerate(SCENARIOS.items()):
        label = " & ".join(f"{f}={v}" for f, v in preds.items())
        print(f"[2] power, {name}: {label} noise sd {noise}, {n} data sets", flush=True)
        det = dict.fromkeys(CORRECTIONS, 0)
        any_ = dict.fromkeys(CORRECTIONS, 0)
        alarm = dict.fromkeys(CORRECTIONS, 0)
        holm_not_bh = 0
        t0 = time.perf_counter()
        for i in range(n):
            data = gate_data(POWER_SEED + 100_000 * j + i, args.rows, (preds, noise))
            res, _, _ = run_gates(data, args.bootstrap, i)
            for c in CORRECTIONS:
                det[c] += label in res[c]
                any_[c] += bool(res[c])
                alarm[c] += any(not shares_rows(s, preds) for s in res[c])
            holm_not_bh += (label in res["holm"]) and (label not in res["bh"])
        wall = time.perf_counter() - t0
        print(f"    detected {det}, fails {any_}, false alarm {alarm} ({wall:.0f}s)", flush=True)
        out["power"][name] = {"det": det, "any": any_, "alarm": alarm, "n": n, "wall": wall}
        checks.note(holm_not_bh == 0, f"power, {name}: bh detects whenever holm does "
                                      f"({holm_not_bh} data sets where only holm did)")
        if name == "margin":
            for c in CORRECTIONS:
                checks.note(det[c] >= 0.8 * n, f"power, {name} ({label}, sd {noise}), {c}: "
                                               f"detected in {det[c]}/{n} (>= 80%)")
        for c in CORRECTIONS:
            lines.append(f"| {label}, sd {noise} | {c} | {rate(det[c], n)} | "
                         f"{any_[c] / n:.1%} | {alarm[c] / n:.1%} |")
    lines += ["", "Rates are `count/n = rate [Wilson 95% interval]`."]
    return lines


# --------------------------------------------------------------------------------------------
# 3: discover_regressions


def discover(table: pa.Table, ref: str, cand: str, correction: str) -> Any:
    import assay

    return assay.discover_regressions(table, label="churned", scores={"ref": ref, "cand": cand},
                                      features=DISCOVER_FEATURES, correction=correction)


def part_discover(args: argparse.Namespace, checks: Checks, out: dict[str, Any]) -> list[str]:

    from assay.demo import make_comparison_data

    n, rows = args.discover_seeds, args.discover_rows
    print(f"[3] discover_regressions: {n} seeds x {rows:,} rows", flush=True)
    top = dict.fromkeys(DISCOVER_CORRECTIONS, 0)
    elsewhere = dict.fromkeys(DISCOVER_CORRECTIONS, 0)
    listed = dict.fromkeys(DISCOVER_CORRECTIONS, 0)
    rev = dict.fromkeys(DISCOVER_CORRECTIONS, 0)
    aa = dict.fromkeys(DISCOVER_CORRECTIONS, 0)
    misses: list[str] = []
    t0 = time.perf_counter()
    for seed in range(n):
        table = make_comparison_data(rows, seed)
        coin = np.random.default_rng([seed, 1]).random(rows) < 0.5
        old, new = table["p_old"].to_numpy(), table["p_new"].to_numpy()
        table = table.append_column("p_a", pa.array(np.where(coin, new, old))) \
            .append_column("p_b", pa.array(np.where(coin, old, new)))
        for c in DISCOVER_CORRECTIONS:
            f = discover(table, "p_old", "p_new", c)
            hit = f.height > 0 and f["slice"][0] == PARTNER and bool(f["significant"][0])
            top[c] += hit
            if not hit and c == "holm":
                first = f.head(1).select("slice", "significant", "p_adjusted").rows()
                misses.append(f"seed {seed}: rank 1 {first}")
            equal = [predicates(s).get("channel") in ("web", "app") for s in f["slice"]]
            listed[c] += any(equal)
            elsewhere[c] += any(e and bool(sig) for e, sig in zip(equal, f["significant"]))
            rev[c] += bool(discover(table, "p_new", "p_old", c)["significant"].any())
            aa[c] += bool(discover(table, "p_a", "p_b", c)["significant"].any())
        if (seed + 1) % max(1, n // 5) == 0:
            print(f"    {seed + 1}/{n} ({time.perf_counter() - t0:.0f}s): top {top}, reversed "
                  f"{rev}, A/A {aa}", flush=True)
    wall = time.perf_counter() - t0

    big = args.discover_time_rows
    table = make_comparison_data(big, 0)
    secs, found = benchlib.best_of(lambda: discover(table, "p_old", "p_new", "holm"),
                                   args.repeat, warmup=True)
    print(f"    {big:,} rows: {secs:.3f}s per call; rank 1 {found['slice'][0]!r}", flush=True)
    out["discover"] = {"top": top, "rev": rev, "aa": aa, "elsewhere": elsewhere,
                       "listed": listed, "n": n,
                       "wall": wall, "secs": secs, "big": big}
    for m in misses[:5]:
        print(f"    holm missed channel=partner at rank 1: {m}", flush=True)

    checks.note(top["holm"] >= 0.95 * n, f"discover, holm: channel=partner rank 1 and "
                                         f"significant in {top['holm']}/{n} seeds (>= 95%)")
    for c in ("holm", "bh"):
        checks.at_most(rev[c], n, NOMINAL, f"discover, reversed, {c}: any significant slice")
        checks.at_most(aa[c], n, NOMINAL, f"discover, A/A, {c}: any significant slice")
    checks.at_most(elsewhere["holm"], n, NOMINAL,
                   "discover, forward, holm: a significant slice within channel=web/app")
    checks.note(found.height > 0 and found["slice"][0] == PARTNER,
                f"discover at {big:,} rows: rank 1 is {found['slice'][0] if found.height else None}")

    lines = [
        f"### 3. `discover_regressions` on `make_comparison_data` ({n} seeds)",
        "",
        f"{n} seeds x {rows:,} rows; defaults (k=10, max_level=3, min_support=0.01, dedupe, "
        f"ci=0.95), features {', '.join(DISCOVER_FEATURES)}; 9 calls per seed; part wall "
        f"time {wall:.0f} s. Nominal family-wise rate: (1 - ci) / 2 = 2.5% (holm; bh too with "
        "every null true).",
        "",
        "| data | what is counted | holm | bh | none |",
        "|---|---|---|---|---|",
        "| forward (candidate broken on channel=partner) | channel=partner rank 1 and "
        "significant | " + " | ".join(rate(top[c], n) for c in DISCOVER_CORRECTIONS) + " |",
        "| forward | a significant slice within channel=web or channel=app (equal models there) "
        "| " + " | ".join(rate(elsewhere[c], n) for c in DISCOVER_CORRECTIONS) + " |",
        "| forward | a slice within channel=web or channel=app reported at all (significant or "
        "not; the top k can be filled by slices holding partner rows) | "
        + " | ".join(rate(listed[c], n) for c in DISCOVER_CORRECTIONS) + " |",
        "| reversed (models swapped: nothing broken for the candidate) | any significant slice "
        "| " + " | ".join(rate(rev[c], n) for c in DISCOVER_CORRECTIONS) + " |",
        "| A/A (each row's scores swapped by a fair coin) | any significant slice | "
        + " | ".join(rate(aa[c], n) for c in DISCOVER_CORRECTIONS) + " |",
        "",
        f"Time of one call (holm, forward) at {big:,} rows: **{secs:.3f} s** (best of "
        f"{args.repeat} after an untimed call; default threads); rank 1: "
        f"`{found['slice'][0] if found.height else None}`.",
    ]
    if misses:
        lines += ["", f"holm missed channel=partner at rank 1 in {len(misses)} seed(s): "
                  + "; ".join(misses[:5])]
    return lines


# --------------------------------------------------------------------------------------------
# 4: disparity vs Fairlearn


def fair_data(rows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(y int8, p float64, group str) with 5 groups of different base rates and scores."""
    rng = np.random.default_rng(FAIR_SEED)
    gi = rng.choice(len(GROUPS), rows, p=GROUP_P)
    base = GROUP_BASE[gi]
    y = (rng.random(rows) < sigmoid(base + 1.5 * rng.normal(size=rows))).astype(np.int8)
    p = sigmoid(base + GROUP_SHIFT[gi] + 1.5 * y + rng.normal(0, 1.2, rows))
    return y, p, GROUPS[gi]


def fl_run(y: np.ndarray, p: np.ndarray, g: np.ndarray, boot: int | None) -> dict[str, Any]:
    """Fairlearn's MetricFrame of the three rates and its summaries (the timed peer)."""
    from fairlearn.metrics import (
        MetricFrame,
        false_positive_rate,
        selection_rate,
        true_positive_rate,
    )

    pred = (p >= THRESHOLD).astype(np.int8)
    funcs = {"prediction_rate": selection_rate, "recall": true_positive_rate,
             "fpr": false_positive_rate}
    kw = {} if boot is None else {"n_boot": boot, "ci_quantiles": [0.025, 0.975],
                                  "random_state": 0}
    mf = MetricFrame(metrics=funcs, y_true=y, y_pred=pred, sensitive_features=g, **kw)
    out = {"mf": mf}
    for method, tag in (("between_groups", ""), ("to_overall", "_to_overall")):
        out["difference" + tag] = mf.difference(method=method)
        out["ratio" + tag] = mf.ratio(method=method)
        if boot is not None:
            out["difference" + tag + "_ci"] = mf.difference_ci(method=method)
            out["ratio" + tag + "_ci"] = mf.ratio_ci(method=method)
    return out


def assay_run(table: pa.Table, boot: int | None) -> tuple[Any, Any, Any]:
    import assay

    rep = assay.evaluate(table, label="y", score="p", slices=["group"], metrics=FAIR_METRICS,
                         bootstrap=boot, seed=0)
    return (rep, rep.disparity("equalized_odds", spec="group"),
            rep.disparity("demographic_parity", spec="group"))


def rows_of(d: Any) -> dict[str, dict[str, Any]]:
    return {r["statistic"]: r for r in d.table.to_dicts()}


def close(a: Any, b: Any) -> tuple[bool, float]:
    a, b = float(a), float(b)
    d = abs(a - b) / max(1.0, abs(b))
    return d <= RTOL, d


def check_values(fl: dict[str, Any], rep: Any, eo: Any, dp: Any, checks: Checks,
                 where: str) -> None:
    """Group values and the criteria's four statistics against Fairlearn's MetricFrame."""
    mf = fl["mf"]
    worst, count, bad = 0.0, 0, []
    by = {r["slice"]: r for r in rep.table.to_dicts()}
    for m in FAIR_METRICS:
        for grp, v in mf.by_group[m].items():
            ok, d = close(by[f"group={grp}"][m], v)
            worst, count = max(worst, d), count + 1
            if not ok:
                bad.append(f"{m} of group={grp}: assay {by[f'group={grp}'][m]!r} vs {v!r}")
        ok, d = close(by["overall"][m], mf.overall[m])
        worst, count = max(worst, d), count + 1
        if not ok:
            bad.append(f"overall {m}: assay {by['overall'][m]!r} vs {mf.overall[m]!r}")
    want_dp = {s: fl[s]["prediction_rate"] for s in STATS}
    want_eo = {}
    for s in STATS:
        pair = [fl[s]["recall"], fl[s]["fpr"]]
        want_eo[s] = max(pair) if s.startswith("difference") else min(pair)
    for name, d, want in (("demographic_parity", dp, want_dp), ("equalized_odds", eo, want_eo)):
        got = rows_of(d)
        for s in STATS:
            ok, diff = close(got[s]["value"], want[s])
            worst, count = max(worst, diff), count + 1
            if not ok:
                bad.append(f"{name} {s}: assay {got[s]['value']!r} vs Fairlearn {want[s]!r}")
    checks.note(not bad, f"{where}: {count} values (group and overall rates, 4 statistics of "
                         f"demographic parity and equalized odds) vs Fairlearn MetricFrame: max "
                         f"relative difference {worst:.1e}" + ("; " + "; ".join(bad[:4])
                                                               if bad else ""))


def check_named(y: np.ndarray, p: np.ndarray, g: np.ndarray, eo: Any, dp: Any,
                checks: Checks, where: str) -> None:
    """assay's criteria against Fairlearn's named functions (untimed)."""
    from fairlearn import metrics as fm

    pred = (p >= THRESHOLD).astype(np.int8)
    named = [
        ("demographic_parity", dp, fm.demographic_parity_difference,
         fm.demographic_parity_ratio),
        ("equalized_odds", eo, fm.equalized_odds_difference, fm.equalized_odds_ratio),
    ]
    worst, bad = 0.0, []
    for name, d, fdiff, fratio in named:
        got = rows_of(d)
        for s, fn, method in (("difference", fdiff, "between_groups"),
                              ("ratio", fratio, "between_groups"),
                              ("difference_to_overall", fdiff, "to_overall"),
                              ("ratio_to_overall", fratio, "to_overall")):
            want = fn(y, pred, sensitive_features=g, method=method)
            ok, diff = close(got[s]["value"], want)
            worst = max(worst, diff)
            if not ok:
                bad.append(f"{name} {s}: assay {got[s]['value']!r} vs {fn.__name__} {want!r}")
    checks.note(not bad, f"{where}: 8 values vs Fairlearn's demographic_parity_difference/ratio"
                         f" and equalized_odds_difference/ratio (both methods): max relative "
                         f"difference {worst:.1e}" + ("; " + "; ".join(bad) if bad else ""))


def part_disparity(args: argparse.Namespace, checks: Checks, out: dict[str, Any]) -> list[str]:
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    import fairlearn

    n, nb, boot = args.fair_rows, min(args.fair_boot_rows, args.fair_rows), args.fair_bootstrap
    y, p, g = fair_data(n)
    table = pa.table({"y": y, "p": p, "group": g})
    sub = table.slice(0, nb)
    ys, ps, gs = y[:nb], p[:nb], g[:nb]
    print(f"[4] disparity vs Fairlearn {fairlearn.__version__}: {n:,} rows (no bootstrap), "
          f"{nb:,} rows with B={boot}", flush=True)
    fl_run(y[:2000], p[:2000], g[:2000], None)  # warm-up (imports)
    fl_run(y[:2000], p[:2000], g[:2000], 2)

    timings = []  # (what, rows, B, assay s, fairlearn s, fairlearn note)
    # no bootstrap, all rows
    a0, (rep0, eo0, dp0) = benchlib.best_of(lambda: assay_run(table, None), args.repeat,
                                            warmup=True)
    t0 = time.perf_counter()
    fl0 = fl_run(y, p, g, None)
    f0 = time.perf_counter() - t0
    print(f"    no bootstrap, {n:,} rows: assay {a0:.3f}s, Fairlearn {f0:.2f}s", flush=True)
    check_values(fl0, rep0, eo0, dp0, checks, f"no bootstrap, {n:,} rows")
    timings.append(("no bootstrap", n, "-", a0, f0, ""))
    # bootstrap, the first nb rows: both
    ab, (repb, eob, dpb) = benchlib.best_of(lambda: assay_run(sub, boot), args.repeat,
                                            warmup=True)
    t0 = time.perf_counter()
    flb = fl_run(ys, ps, gs, boot)
    fb = time.perf_counter() - t0
    print(f"    B={boot}, {nb:,} rows: assay {ab:.3f}s, Fairlearn {fb:.2f}s", flush=True)
    check_values(flb, repb, eob, dpb, checks, f"B={boot}, {nb:,} rows")
    check_named(ys, ps, gs, eob, dpb, checks, f"B={boot}, {nb:,} rows")
    timings.append((f"bootstrap B={boot}", nb, boot, ab, fb, ""))
    # bootstrap, all rows: assay measured, Fairlearn estimated
    if nb < n:
        abig, (repB, eoB, dpB) = benchlib.best_of(lambda: assay_run(table, boot), args.repeat,
                                                  warmup=True)
        print(f"    B={boot}, {n:,} rows: assay {abig:.3f}s", flush=True)
        check_values(fl0, repB, eoB, dpB, checks, f"B={boot}, {n:,} rows (point values)")
        t0 = time.perf_counter()
        fl_run(y, p, g, 1)
        f1 = time.perf_counter() - t0
        per = max(f1 - f0, 0.0)
        print(f"    Fairlearn n_boot=1, {n:,} rows: {f1:.2f}s (one replicate: {per:.2f}s)",
              flush=True)
        timings.append((f"bootstrap B={boot}", n, boot, abig, f0 + boot * per,
                        f" (estimate: {f0:.1f} s without bootstrap + B x {per:.1f} s, one "
                        f"replicate = n_boot=1 run ({f1:.1f} s) - that; not run)"))
    out["disparity"] = timings

    # intervals side by side (information), on the bootstrap rows
    def a_row(d: Any, stat: str = "difference") -> str:
        r = rows_of(d)[stat]
        return f"{r['value']:.4f} [{r['lo']:.4f}, {r['hi']:.4f}]"

    def f_row(metric: str, stat: str = "difference") -> str:
        lo, hi = flb[stat + "_ci"]
        return f"{flb[stat][metric]:.4f} [{lo[metric]:.4f}, {hi[metric]:.4f}]"

    rec = repb.disparity("recall", spec="group")
    fpr = repb.disparity("fpr", spec="group")
    ivals = [
        ("demographic parity difference (selection-rate difference)", a_row(dpb),
         f_row("prediction_rate")),
        ("demographic parity ratio", a_row(dpb, "ratio"), f_row("prediction_rate", "ratio")),
        ("TPR (recall) difference", a_row(rec), f_row("recall")),
        ("FPR difference", a_row(fpr), f_row("fpr")),
        ("equalized odds difference (max of the two, per replicate)", a_row(eob),
         "no interval (MetricFrame keeps no replicates; the named function has no bootstrap)"),
        ("equalized odds ratio (min of the two, per replicate)", a_row(eob, "ratio"),
         "no interval"),
    ]
    lines = [
        f"### 4. `Report.disparity` vs Fairlearn {fairlearn.__version__} `MetricFrame`",
        "",
        f"Data: {n:,} rows, `group` with 5 values ({', '.join(f'{x:.0%}' for x in GROUP_P)}), "
        "label int8, score float64, prediction `p >= 0.5`; the bootstrap rows are the first "
        f"{nb:,} of them (Fairlearn's bootstrap recomputes every group's metrics in pandas per "
        "replicate). assay: `evaluate(metrics=[prediction_rate, recall, fpr], slices=[group], "
        "bootstrap=B)` + `disparity(\"equalized_odds\")` + `disparity(\"demographic_parity\")`, "
        f"best of {args.repeat} after an untimed call, default threads; Fairlearn: "
        "`MetricFrame({selection_rate, true_positive_rate, false_positive_rate}, n_boot=B, "
        "ci_quantiles=[0.025, 0.975], random_state=0)` + `difference()`/`ratio()` (both "
        "methods) and with B their `*_ci()`, thresholding included, one run.",
        "",
        "| job | rows | B | assay s | Fairlearn s | ratio (Fairlearn / assay) |",
        "|---|---|---|---|---|---|",
    ]
    for what, rows, b, a, f, note in timings:
        lines.append(f"| {what} | {rows:,} | {b} | {a:.3f} | {f:.2f}{note} | "
                     f"{f / a:,.0f}x{' (est.)' if note else ''} |")
    lines += [
        "",
        f"Intervals on the {nb:,} bootstrap rows (B = {boot}; 95%; for information: assay's "
        "Poisson bootstrap and Fairlearn's multinomial resampling differ, so they agree up to "
        "Monte-Carlo noise only):",
        "",
        "| statistic | assay value [lo, hi] | Fairlearn value [lo, hi] |",
        "|---|---|---|",
        *(f"| {a} | {b} | {c} |" for a, b, c in ivals),
    ]
    return lines


# --------------------------------------------------------------------------------------------
# main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller sizes (about a minute)")
    ap.add_argument("--only", default=",".join(PARTS), help=f"comma-separated: {', '.join(PARTS)}")
    ap.add_argument("--aa", type=int, default=None, help="A/A data sets (500; quick 60)")
    ap.add_argument("--power", type=int, default=None, help="data sets per scenario (150; 30)")
    ap.add_argument("--rows", type=int, default=20_000, help="rows per gate data set")
    ap.add_argument("--bootstrap", type=int, default=None, help="B of compare (300; 200)")
    ap.add_argument("--discover-seeds", type=int, default=None, help="(150; quick 30)")
    ap.add_argument("--discover-rows", type=int, default=None, help="(50,000; quick 20,000)")
    ap.add_argument("--discover-time-rows", type=int, default=None,
                    help="rows of the timed call (1,000,000; quick 200,000)")
    ap.add_argument("--fair-rows", type=int, default=None, help="(1,000,000; quick 200,000)")
    ap.add_argument("--fair-boot-rows", type=int, default=None,
                    help="rows of the bootstrap comparison (20,000; quick 5,000)")
    ap.add_argument("--fair-bootstrap", type=int, default=None, help="B (200; quick 50)")
    ap.add_argument("--repeat", type=int, default=None, help="timed assay runs (3; quick 1)")
    ap.add_argument("--write", action="store_true", help=f"write the section of {RESULTS.name}")
    args = ap.parse_args(argv)
    defaults = {  # name: (default, quick)
        "aa": (500, 60), "power": (150, 30), "bootstrap": (300, 200),
        "discover_seeds": (150, 30), "discover_rows": (50_000, 20_000),
        "discover_time_rows": (1_000_000, 200_000), "fair_rows": (1_000_000, 200_000),
        "fair_boot_rows": (20_000, 5_000), "fair_bootstrap": (200, 50), "repeat": (3, 1),
    }
    for k, (full, quick) in defaults.items():
        if getattr(args, k) is None:
            setattr(args, k, quick if args.quick else full)
    parts = [x.strip() for x in args.only.split(",") if x.strip()]
    if not parts or any(x not in PARTS for x in parts):
        ap.error(f"--only takes a comma-separated subset of {', '.join(PARTS)}")
    args.repeat = max(1, args.repeat)

    import assay

    load0 = os.getloadavg()
    t_start = time.perf_counter()
    print(f"assay {assay.__version__} from {Path(assay.__file__).parent}; load average "
          f"{load0[0]:.2f} on {benchlib.cores()} cores", flush=True)
    checks = Checks()
    out: dict[str, Any] = {}
    sections: list[str] = []
    runners = {"aa": part_aa, "power": part_power, "discover": part_discover,
               "disparity": part_disparity}
    for name in PARTS:
        if name in parts:
            sections += runners[name](args, checks, out) + [""]
    total = time.perf_counter() - t_start
    load1 = os.getloadavg()

    import scipy

    try:
        import fairlearn

        fl_version = fairlearn.__version__
    except ImportError:
        fl_version = "not installed"
    cmd = shlex.join(["python", "benches/bench_gates.py",
                      *(sys.argv[1:] if argv is None else argv)])
    now = datetime.datetime.now(datetime.UTC)
    lines = [
        f"## Gates, discovery and disparity ({now:%Y-%m-%d %H:%M} UTC)",
        "",
        f"- command: `{cmd}` (total wall time {total:.0f} s)",
        f"- machine: {benchlib.cores()} cores (sched_getaffinity), {benchlib.cpu_model()}, "
        f"{platform.system()} {platform.release()}; load average (1 min) {load0[0]:.2f} at the "
        f"start, {load1[0]:.2f} at the end (the machine may be shared: times are upper bounds)",
        f"- software: Python {platform.python_version()}, numpy {np.__version__}, pyarrow "
        f"{pa.__version__}, scipy {scipy.__version__}, fairlearn {fl_version}, assay "
        f"{assay.__version__} (imported from `{Path(assay.__file__).parent}`)",
        "- what is measured: the docstring of `benches/bench_gates.py`",
        "",
        *sections,
        "Checks:",
        "",
        *(f"- {c}" for c in checks.lines),
    ]
    text = "\n".join(lines)
    print()
    print(text)
    if args.write:
        benchlib.write_section(RESULTS, BEGIN, END, text)
        print(f"\nwrote the {BEGIN} section of {RESULTS}")
    return 1 if checks.failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
