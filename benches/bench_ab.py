"""A/B timings of one job per task family, for comparing two builds of assay on one machine.

Prints ``job<TAB>best seconds`` for the assay found on ``PYTHONPATH``. Run it alternately with
each build (several rounds, then take each job's best), e.g.::

    PYTHONPATH=/tmp/old python benches/bench_ab.py > old1.txt
    PYTHONPATH=/tmp/new python benches/bench_ab.py > new1.txt

RESULTS.md ("Task-family seam") records such a comparison. Not a comparison with peers: see the
other benches for those.
"""

import time

import numpy as np
import pyarrow as pa

import assay
import assay.demo

rng = np.random.default_rng(0)
N = 2_000_000
y = (rng.random(N) < 0.1).astype(np.int8)
p = np.clip(0.3 * y + rng.random(N) * 0.7, 0, 1)
seg = pa.array(rng.integers(0, 100, N).astype(str)).dictionary_encode()
binary = pa.table({"y": y, "p": p, "seg": seg})
reg = assay.demo.make_regression_data(N, seed=0)
mc = assay.demo.make_multiclass_data(1_000_000, seed=0)
rk = assay.demo.make_ranking_data(40_000, seed=0)
RK = dict(query="user_id", score="score", label="relevance", slices=["market"], k=[10])

def best(f, r=7):
    f()
    ts = []
    for _ in range(r):
        t = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t)
    return min(ts)


jobs = {
    "binary 15m x 100 slices":
        lambda: assay.evaluate(binary, label="y", score="p", slices=["seg"]),
    "binary exact auc":
        lambda: assay.evaluate(binary, label="y", score="p", metrics=["roc_auc"]),
    "binary bootstrap 100":
        lambda: assay.evaluate(binary, label="y", score="p", metrics=["accuracy", "log_loss"],
                               bootstrap=100),
    "regression default":
        lambda: assay.evaluate(reg, task="regression", label="price", prediction="pred",
                               slices=["city"]),
    "multiclass default":
        lambda: assay.evaluate(mc, task="multiclass", label="species", score="probs",
                               classes=assay.demo.SPECIES, slices=["camera"]),
    "ranking default": lambda: assay.evaluate(rk, task="ranking", **RK),
}

for name, f in jobs.items():
    try:
        print(f"{name}\t{best(f):.4f}", flush=True)
    except Exception as e:
        print(f"{name}\tERROR {type(e).__name__}: {e}", flush=True)
