"""Shared helpers for the assay test suite.

The reference values come from scikit-learn (with the contract's "undefined means null" rule
applied on top), so every metric is checked against an independent implementation.
"""

from __future__ import annotations

import math
import re
import warnings

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, settings
from sklearn import metrics as skm

settings.register_profile(
    "assay",
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=False,
    print_blob=True,
)
# A longer hunt, for occasional use: pytest --hypothesis-profile=thorough tests/test_parity.py
settings.register_profile("thorough", parent=settings.get_profile("assay"), max_examples=600)
settings.load_profile("assay")

RTOL = 1e-9
ATOL = 1e-12

ALL_METRICS = [
    "base_rate",
    "prediction_rate",
    "accuracy",
    "balanced_accuracy",
    "precision",
    "recall",
    "specificity",
    "fpr",
    "fnr",
    "f1",
    "mcc",
    "roc_auc",
    "average_precision",
    "log_loss",
    "brier",
]

_FBETA = re.compile(r"^f(\d+(?:\.\d+)?)$")


@pytest.fixture(scope="session")
def assay():
    """The package under test (imported lazily so collection errors are readable)."""
    import assay as _assay

    return _assay


# --------------------------------------------------------------------------------------------
# reference metrics
# --------------------------------------------------------------------------------------------


def _nan_to_none(x):
    if x is None:
        return None
    x = float(x)
    return None if math.isnan(x) else x


def reference_metric(name, y, s, w=None, threshold=0.5):
    """The contract's value of metric `name` on labels y (0/1), scores s, weights w (or None).

    Returns a float, or None where the contract says the value is undefined.
    """
    y = np.asarray(y, dtype=np.int64)
    s = np.asarray(s, dtype=np.float64)
    w = None if w is None else np.asarray(w, dtype=np.float64)
    pred = (s >= threshold).astype(np.int64)
    ww = np.ones(len(y)) if w is None else w
    has_pos = bool((y == 1).any())
    has_neg = bool((y == 0).any())
    has_pp = bool((pred == 1).any())
    has_pn = bool((pred == 0).any())
    tp_any = bool(((y == 1) & (pred == 1)).any())
    fp_any = bool(((y == 0) & (pred == 1)).any())
    fn_any = bool(((y == 1) & (pred == 0)).any())

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if name == "base_rate":
            return float(np.average(y, weights=ww))
        if name == "prediction_rate":
            return float(np.average(pred, weights=ww))
        if name == "accuracy":
            return float(skm.accuracy_score(y, pred, sample_weight=w))
        if name == "balanced_accuracy":
            if not (has_pos and has_neg):
                return None
            return float(skm.balanced_accuracy_score(y, pred, sample_weight=w))
        if name == "precision":
            if not has_pp:
                return None
            return float(skm.precision_score(y, pred, sample_weight=w, zero_division=np.nan))
        if name == "recall":
            if not has_pos:
                return None
            return float(skm.recall_score(y, pred, sample_weight=w, zero_division=np.nan))
        if name == "specificity":
            if not has_neg:
                return None
            return float(
                skm.recall_score(y, pred, pos_label=0, sample_weight=w, zero_division=np.nan)
            )
        if name in ("fpr", "fnr"):
            tn, fp, fn, tp = skm.confusion_matrix(y, pred, labels=[0, 1], sample_weight=w).ravel()
            if name == "fpr":
                return None if not has_neg else float(fp / (fp + tn))
            return None if not has_pos else float(fn / (fn + tp))
        m = _FBETA.match(name)
        if m:
            beta = float(m.group(1))
            if not (tp_any or fp_any or fn_any):
                return None
            return _nan_to_none(
                skm.fbeta_score(y, pred, beta=beta, sample_weight=w, zero_division=np.nan)
            )
        if name == "mcc":
            if not (has_pos and has_neg and has_pp and has_pn):
                return None
            return float(skm.matthews_corrcoef(y, pred, sample_weight=w))
        if name == "roc_auc":
            if not (has_pos and has_neg):
                return None
            return float(skm.roc_auc_score(y, s, sample_weight=w))
        if name == "average_precision":
            if not has_pos:
                return None
            return float(skm.average_precision_score(y, s, sample_weight=w))
        if name == "log_loss":
            return float(skm.log_loss(y, s, labels=[0, 1], sample_weight=w))
        if name == "brier":
            return float(skm.brier_score_loss(y, s, labels=[0, 1], pos_label=1, sample_weight=w))
    raise AssertionError(f"unknown metric in test: {name}")


def reference(y, s, w=None, threshold=0.5, metrics=ALL_METRICS):
    return {m: reference_metric(m, y, s, w, threshold) for m in metrics}


# --------------------------------------------------------------------------------------------
# report access and comparison
# --------------------------------------------------------------------------------------------


def rows_by_slice(rep):
    """{slice label: row dict} of rep.table, checking labels are unique."""
    rows = rep.table.to_dicts()
    out = {}
    for r in rows:
        assert r["slice"] not in out, f"duplicate slice label {r['slice']!r}"
        out[r["slice"]] = r
    return out


def assert_value(got, expected, what=""):
    """A single metric value against its reference (None = undefined = null)."""
    if expected is None:
        assert got is None, f"{what}: expected null (undefined), got {got!r}"
        return
    assert got is not None, f"{what}: expected {expected!r}, got null"
    assert not math.isnan(got), f"{what}: got NaN, expected {expected!r}"
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL, err_msg=what)


def assert_row(row, expected, what=""):
    for m, e in expected.items():
        assert m in row, f"{what}: metric column {m!r} missing from report"
        assert_value(row[m], e, f"{what} metric={m}")


def to_table(y, s, w=None, **slice_cols):
    cols = {"label": pa.array(np.asarray(y)), "score": pa.array(np.asarray(s, dtype=np.float64))}
    if w is not None:
        cols["w"] = pa.array(np.asarray(w, dtype=np.float64))
    for k, v in slice_cols.items():
        cols[k] = v if isinstance(v, (pa.Array, pa.ChunkedArray)) else pa.array(v)
    return pa.table(cols)


def assert_tables_close(a, b, rtol=1e-12, atol=1e-12):
    """Two report tables: same columns, dtypes, labels and n; floats equal to rtol/atol."""
    import polars as pl

    assert a.columns == b.columns
    assert a.dtypes == b.dtypes
    assert a.height == b.height
    for c in a.columns:
        if a[c].dtype == pl.Float64:
            x = a[c].to_numpy()
            yv = b[c].to_numpy()
            assert (a[c].is_null() == b[c].is_null()).all(), f"null pattern differs in {c}"
            mask = ~a[c].is_null().to_numpy()
            np.testing.assert_allclose(x[mask], yv[mask], rtol=rtol, atol=atol, err_msg=c)
        else:
            assert a[c].to_list() == b[c].to_list(), f"column {c} differs"


def make_rng_data(seed, n, n_groups=3, weighted=False, ties=True):
    """A reproducible small dataset with a categorical column `g` and a numeric column `x`."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    s = np.clip(0.35 * y + rng.random(n) * 0.65, 0, 1)
    if ties:
        s = np.round(s, 2)
    g = np.array([f"g{i}" for i in rng.integers(0, n_groups, n)])
    x = rng.normal(40, 12, n)
    w = rng.uniform(0.1, 5.0, n) if weighted else None
    return y, s, w, g, x


def interrupt_child(script: str, delay: float, timeout: float) -> tuple[int, str, str, float]:
    """Runs ``script`` in a child Python, sends it SIGINT ``delay`` seconds after it prints
    ``ready``, and returns (exit status, stdout, stderr, seconds from the signal to its end)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    env = dict(os.environ, ASSAY_ALLOW_DEBUG_BUILD="1")
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        time.sleep(delay)
        child.send_signal(signal.SIGINT)
        signalled = time.perf_counter()
        out, err = child.communicate(timeout=timeout)
        waited = time.perf_counter() - signalled
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    return child.returncode, out, err, waited
