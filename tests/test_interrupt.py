"""Ctrl-C stops every kind of long job promptly: SIGINT sent to a child process running it
must surface as a plain KeyboardInterrupt (not an AssayError) well before the job would end,
and leave no thread running."""

from __future__ import annotations

import sys
import textwrap

import pytest
from conftest import interrupt_child

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs POSIX signals")

_PRELUDE = """
import sys, threading, time
import numpy as np, pyarrow as pa, polars as pl, assay
rng = np.random.default_rng(0)
n = 2_000_000
y = rng.integers(0, 2, n)
t = pa.table({"y": y, "p": rng.random(n), "q": rng.random(n),
              **{f"c{i}": rng.integers(0, 6, n).astype(str) for i in range(10)},
              "ts": pa.array(rng.integers(0, 1000, n)).cast(pa.timestamp("s"))})
"""

# Each job runs for many seconds (a release build included); the signal comes after 1 s.
JOBS = {
    "evaluate-bootstrap-auc": "assay.evaluate(t, label='y', score='p', slices=['c0', ('c1', 'c2')],"
                              " metrics=['roc_auc', 'average_precision'], bootstrap=3000)",
    "compare": "assay.compare(t, label='y', scores=['p', 'q'], slices=['c0', 'c1', 'c2'],"
               " bootstrap=3000)",
    "lazy-frame": "assay.evaluate(pl.concat([pl.from_arrow(t).lazy()] * 60), label='y', "
                  "score='p', slices=['c0'], metrics=['roc_auc'])",
    "calibration": "assay.evaluate(pa.concat_tables([t] * 10), label='y', score='p', "
                   "slices=['c0', ('c1', 'c2', 'c3')], metrics=['smooth_ece', 'ace', "
                   "'calibration_slope'], calibration_strategy='quantile')",
    # A timestamp slice (handed over as ISO text) and the progress line: both wrap the stream.
    "temporal-progress": "assay.evaluate(pl.concat([pl.from_arrow(t).lazy()] * 30), label='y',"
                         " score='p', slices=['ts'], metrics=['accuracy'], progress=True)",
    "discovery": "assay.discover_slices(pa.concat_tables([t] * 10), label='y', score='p', "
                 "features=[f'c{i}' for i in range(10)], max_level=4, min_support=10)",
    "multiclass-auc": "assay.evaluate(mt, task='multiclass', label='y', score='p', "
                      "slices=['c0'], metrics=['accuracy', 'roc_auc_ovr', 'roc_auc_ovo'], "
                      "normalize='divide', bootstrap=400)",
    # A ranking job: its pass, the per-query values and the replicate sums of 1M queries.
    "ranking-bootstrap": "assay.evaluate(rt, task='ranking', query='qid', score='p', "
                         "label='y', k=[5, 10], bootstrap=3000)",
    # A directory of Parquet files, streamed from disk (SETUP writes it).
    "parquet-files": "assay.evaluate(folder, label='y', score='p', slices=['c0', 'c1'], "
                     "metrics=['roc_auc', 'log_loss'])",
    # A user's own reader of a pyarrow dataset (closing it early would read the rest).
    "dataset-reader": "assay.evaluate(ds.dataset(folder).scanner(columns=['y', 'p', 'c0'])"
                      ".to_reader(), label='y', score='p', slices=['c0'], metrics=['roc_auc'])",
}

# Code a job needs before it starts (run before "ready", so the signal finds the job itself).
_FILES = (
        "import atexit, os, shutil, tempfile, pyarrow.parquet as pq\n"
        "folder = tempfile.mkdtemp()\n"
        "atexit.register(shutil.rmtree, folder, True)\n"
        "pq.write_table(t, os.path.join(folder, 'part-0.parquet'), row_group_size=1 << 16)\n"
        "for i in range(1, 40):  # (hard links: forty files for the price of one)\n"
        "    os.link(os.path.join(folder, 'part-0.parquet'),\n"
        "            os.path.join(folder, f'part-{i}.parquet'))\n"
        "import pyarrow.dataset as ds\n"
)
# Multiclass probabilities (20 classes, float32), for the exact ROC-AUCs' class passes.
_MULTICLASS = (
        "k = 20\n"
        "z = rng.random((n // 4, k), dtype=np.float32)\n"
        "z /= z.sum(axis=1, keepdims=True)\n"
        "mt = pa.table({'y': rng.integers(0, k, n // 4), 'c0': t.column('c0').slice(0, n // 4),\n"
        "               'p': pa.FixedSizeListArray.from_arrays(pa.array(z.ravel()), k)})\n"
)
# Ranking data: 20M rows in 1M queries of 20 items.
_RANKING = (
        "rt = pa.concat_tables([t] * 10).select(['y', 'p'])\n"
        "rt = rt.append_column('qid', pa.array(np.arange(rt.num_rows) // 20))\n"
)
SETUP = {"parquet-files": _FILES, "dataset-reader": _FILES, "multiclass-auc": _MULTICLASS,
         "ranking-bootstrap": _RANKING}


@pytest.mark.parametrize("job", list(JOBS))
def test_sigint_stops_the_job_promptly(job, tmp_path):
    script = _PRELUDE + SETUP.get(job, "") + textwrap.dedent(f"""
    print("ready", flush=True)
    start = time.perf_counter()
    try:
        {JOBS[job]}
    except KeyboardInterrupt:
        alive = [x.name for x in threading.enumerate() if x is not threading.main_thread()
                 and not x.daemon]
        print("interrupted", time.perf_counter() - start, alive, flush=True)
        sys.exit(7)
    print("finished", time.perf_counter() - start, flush=True)
    """)
    returncode, out, err, waited = interrupt_child(script, 1.0, 300)
    assert "finished" not in out, f"{job} ended before the signal: make it longer ({out})"
    assert returncode == 7, (returncode, out, err[-2000:])
    assert out.startswith("interrupted") and out.rstrip().endswith("[]"), out
    # Prompt: the issue asks for 0.5 s; allow for a loaded 2-core machine and debug builds.
    assert waited < 3.0, (job, waited)
