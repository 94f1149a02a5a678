"""A/B timings of one job per task family, for comparing two builds of assay on one machine.

Prints ``job<TAB>best seconds`` for the assay found on ``PYTHONPATH``. Run it alternately with
each build (several rounds, then take each job's best), e.g.::

    PYTHONPATH=/tmp/old python benches/bench_ab.py > old1.txt
    PYTHONPATH=/tmp/new python benches/bench_ab.py > new1.txt

RESULTS.md ("Task-family seam") records such a comparison. Not a comparison with peers: see the
other benches for those.

``--evaluate`` times instead the jobs of ``bench_evaluate.py``'s 10M-row table (one-pass, exact
ROC-AUC, 100 slices, 4 means x 100 slices, streamed, a 16-shard split job) and the 10M-row
regression job of ``bench_regression.py``, best of 5: RESULTS.md ("Performance pass") records
such a comparison.

``--binned`` times binned-AUC jobs on the same 10M-row table (overall, 100 slices, and the 15
default metrics x 100 slices with ``auc="binned"``) and the 16 ``spec.accumulate`` calls of the
split job alone (exact ROC-AUC: each shard's kept rows and its compaction estimate), best of 5:
RESULTS.md ("Binned histograms and the compaction estimate") records such a comparison.
"""

import sys
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

if "--binned" in sys.argv[1:]:
    import bench_evaluate

    t, _, _ = bench_evaluate.load_data(10_000_000)
    spec = assay.Spec(label="y", score="p", slices=["seg"], metrics=None)
    cuts = [(i * t.num_rows // 16, (i + 1) * t.num_rows // 16) for i in range(16)]
    BIN = dict(label="y", score="p", auc="binned")
    jobs = {
        "binned ROC-AUC, overall": lambda: assay.evaluate(t, metrics=["roc_auc"], **BIN),
        "binned ROC-AUC x 100 slices":
            lambda: assay.evaluate(t, metrics=["roc_auc"], slices=["seg"], **BIN),
        "15 metrics x 100 slices, binned AUC":
            lambda: assay.evaluate(t, metrics=None, slices=["seg"], **BIN),
        "16 shards accumulated (exact AUC)":
            lambda: [spec.accumulate(t.slice(lo, hi - lo), row_offset=lo) for lo, hi in cuts],
    }
    best_of = 5
elif "--evaluate" in sys.argv[1:]:
    import bench_evaluate
    import bench_regression

    t, _, _ = bench_evaluate.load_data(10_000_000)
    reg10 = bench_regression.generate(10_000_000)
    ONE = ["base_rate", "prediction_rate", "accuracy", "balanced_accuracy", "precision",
           "recall", "specificity", "fpr", "fnr", "f1", "mcc", "log_loss", "brier"]
    KW = dict(label="y", score="p", slices=["seg"], metrics=None)
    spec = assay.Spec(**KW)
    cuts = [(i * t.num_rows // 16, (i + 1) * t.num_rows // 16) for i in range(16)]

    def split() -> None:
        states = []
        for lo, hi in cuts:
            blob = spec.accumulate(t.slice(lo, hi - lo), row_offset=lo).to_bytes()
            states.append(assay.PartialState.from_bytes(blob))
        assay.merge(states).finalize()

    jobs = {
        "13 one-pass metrics, overall":
            lambda: assay.evaluate(t, label="y", score="p", metrics=ONE),
        "exact ROC-AUC, overall":
            lambda: assay.evaluate(t, label="y", score="p", metrics=["roc_auc"]),
        "15 metrics x 100 slices": lambda: assay.evaluate(t, **KW),
        "4 means x 100 slices":
            lambda: assay.evaluate(t, label="y", score="p", slices=["seg"],
                                   metrics=["base_rate", "prediction_rate", "brier", "log_loss"]),
        "streamed 15 x 100 slices (64k batches)":
            lambda: assay.evaluate(pa.RecordBatchReader.from_batches(
                t.schema, t.to_batches(max_chunksize=65536)), **KW),
        "split job, 16 shards": split,
        "regression, 11 metrics x 100 slices":
            lambda: assay.evaluate(reg10, task="regression", label="y", prediction="pred",
                                   slices=["seg"], metrics=bench_regression.METRICS),
    }
    best_of = 5
else:
    best_of = 7

for name, f in jobs.items():
    try:
        print(f"{name}\t{best(f, best_of):.4f}", flush=True)
    except Exception as e:
        print(f"{name}\tERROR {type(e).__name__}: {e}", flush=True)
