"""The regression family's formulas (``assay_core::regression``) against scikit-learn and
scipy, on hypothesis-drawn rows with ties, weights, constant labels and any split into merged
states. ``_native.regression_metrics`` exposes the state and its formulas alone (the engine's
pass over slices is tested in ``test_regression.py``)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import scipy.stats
import sklearn.metrics as skm
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from assay import _native

SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def metrics(y, p, w=None, cuts=()):
    out = _native.regression_metrics(list(map(float, y)), list(map(float, p)),
                                     None if w is None else list(map(float, w)), list(cuts))
    return {name: (value, note) for name, value, note in out}


def close(a: float, b: float, rtol: float = 1e-9) -> bool:
    return abs(a - b) <= rtol * max(1.0, abs(b))


@st.composite
def rows(draw):
    n = draw(st.integers(1, 60))
    grid = draw(st.booleans())  # few distinct values: ties
    values = (st.sampled_from([-2.0, 0.0, 0.5, 1.0, 3.0]) if grid
              else st.floats(-50, 50, allow_nan=False, width=32))
    y = np.array(draw(st.lists(values, min_size=n, max_size=n)), dtype=np.float64)
    p = np.array(draw(st.lists(values, min_size=n, max_size=n)), dtype=np.float64)
    w = (np.array(draw(st.lists(st.floats(0.01, 5), min_size=n, max_size=n)))
         if draw(st.booleans()) else None)
    cuts = sorted(draw(st.lists(st.integers(1, max(1, n - 1)), max_size=5)))
    return y, p, w, cuts


@SETTINGS
@given(case=rows())
def test_formulas_match_scikit_learn_for_any_split(case):
    y, p, w, cuts = case
    got = metrics(y, p, w, cuts)
    whole = metrics(y, p, w)
    for name, (v, note) in got.items():  # the merged states equal one state, to rounding
        v1, note1 = whole[name]
        assert note == note1, name
        if v is not None:
            assert close(v, v1, 1e-9), name
    kw = {"sample_weight": w}
    assert close(got["mae"][0], skm.mean_absolute_error(y, p, **kw))
    assert close(got["mse"][0], skm.mean_squared_error(y, p, **kw))
    assert close(got["rmse"][0], math.sqrt(skm.mean_squared_error(y, p, **kw)))
    assert close(got["mape"][0], skm.mean_absolute_percentage_error(y, p, **kw), 1e-9)
    assert close(got["mean_error"][0], np.average(p - y, weights=w))
    assert close(got["max_error"][0], skm.max_error(y, p) if w is None else
                 float(np.max(np.abs(p - y))))
    wm = np.abs(y).sum() if w is None else (w * np.abs(y)).sum()
    if wm > 0:
        assert close(got["wmape"][0], float(np.average(np.abs(p - y), weights=w)
                                            * (np.sum(w) if w is not None else len(y)) / wm))
    d = np.abs(y) + np.abs(p)
    sm = np.where(d > 0, 2 * np.abs(p - y) / np.where(d > 0, d, 1), 0.0)
    assert close(got["smape"][0], float(np.average(sm, weights=w)))
    if np.all(y > -1) and np.all(p > -1):
        want = np.average((np.log1p(p) - np.log1p(y)) ** 2, weights=w)
        assert close(got["msle"][0], float(want))
    else:
        assert got["msle"] == (None, "undefined: a label or prediction of the slice lies at "
                                     "or below -1 (log1p is not defined)")
    vy = np.average((y - np.average(y, weights=w)) ** 2, weights=w)
    if vy > 1e-12 * max(1.0, np.average(y * y, weights=w)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert close(got["r2"][0], skm.r2_score(y, p, **kw), 1e-7)
            assert close(got["explained_variance"][0],
                         skm.explained_variance_score(y, p, **kw), 1e-7)
        vp = np.average((p - np.average(p, weights=w)) ** 2, weights=w)
        if vp > 1e-12 * max(1.0, np.average(p * p, weights=w)):
            if w is None and len(y) > 1:
                assert close(got["pearson"][0], scipy.stats.pearsonr(y, p).statistic, 1e-7)
            cov = np.average((y - np.average(y, weights=w)) * (p - np.average(p, weights=w)),
                             weights=w)
            ccc = 2 * cov / (vy + vp + (np.average(p, weights=w) - np.average(y, weights=w)) ** 2)
            assert close(got["concordance"][0], float(ccc), 1e-7)
    if np.ptp(y) == 0:
        assert got["r2"] == (None, "undefined: the labels are constant in the slice")


def test_constant_labels_leave_r2_undefined_where_scikit_learn_forces_a_number():
    got = metrics([2, 2, 2], [1, 2, 3])
    assert got["r2"] == (None, "undefined: the labels are constant in the slice")
    assert skm.r2_score([2, 2, 2], [1, 2, 3]) == 0.0  # scikit-learn's force_finite choice
    assert got["mae"] == (pytest.approx(2 / 3), None)


def test_labels_around_1e9_keep_r2_and_pearson():
    rng = np.random.default_rng(3)
    y = 1e9 + rng.random(20_000)
    p = y + 0.3 * (rng.random(20_000) - 0.4)
    got = metrics(y, p, cuts=range(1000, 20_000, 1000))
    ys, ps = y - 1e9, p - 1e9  # exact shifts
    assert close(got["r2"][0], skm.r2_score(ys, ps), 1e-8)
    assert close(got["pearson"][0], scipy.stats.pearsonr(ys, ps).statistic, 1e-8)
