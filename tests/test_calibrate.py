"""Recalibrators (assay.calibrate) against scikit-learn, scipy and planted truths."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.optimize as so
from hypothesis import given
from hypothesis import strategies as st
from sklearn.isotonic import IsotonicRegression

from assay import calibrate
from assay.errors import AssayError, EmptyInputError, InvalidArgumentError, InvalidInputError


def _overconfident(n=20_000, seed=0, temperature=2.0):
    """Scores whose true probability is sigmoid(logit(s) / temperature)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 3.0, n)
    s = 1 / (1 + np.exp(-z))
    y = (rng.random(n) < 1 / (1 + np.exp(-z / temperature))).astype(np.int8)
    return s, y


@given(seed=st.integers(0, 10_000), n=st.integers(2, 300), ties=st.booleans(),
       weighted=st.booleans())
def test_isotonic_matches_sklearn(seed, n, ties, weighted):
    rng = np.random.default_rng(seed)
    s = rng.random(n)
    if ties:
        s = np.round(s, 1)
    y = (rng.random(n) < s).astype(np.int8)
    y[0], y[-1] = 0, 1  # both classes
    w = rng.uniform(0.2, 3.0, n) if weighted else None
    ours = calibrate.Isotonic().fit(s, y, sample_weight=w)
    ref = IsotonicRegression(out_of_bounds="clip").fit(s, y, sample_weight=w)
    grid = np.concatenate([np.linspace(-0.1, 1.1, 57), s])
    np.testing.assert_allclose(ours.transform(grid), ref.predict(grid), rtol=0, atol=1e-9)


def test_isotonic_decreasing_and_out_of_bounds():
    s = np.array([0.1, 0.2, 0.3, 0.4])
    y = np.array([1, 1, 0, 0])
    dec = calibrate.Isotonic(increasing=False).fit(s, y)
    ref = IsotonicRegression(increasing=False).fit(s, y)
    np.testing.assert_allclose(dec.transform(s), ref.predict(s), atol=1e-12)
    nan = calibrate.Isotonic(out_of_bounds="nan").fit(s, 1 - y)
    assert np.isnan(nan.transform(np.array([0.05]))[0])
    with pytest.raises(InvalidInputError, match="outside"):
        calibrate.Isotonic(out_of_bounds="raise").fit(s, 1 - y).transform(np.array([0.5, 0.9]))


def _platt_reference(s, y, w):
    eps = np.finfo(np.float64).eps
    z = np.log(np.clip(s, eps, 1 - eps) / (1 - np.clip(s, eps, 1 - eps)))
    npos, nneg = w[y == 1].sum(), w[y == 0].sum()
    t = np.where(y == 1, (npos + 1) / (npos + 2), 1 / (nneg + 2))

    def loss(ab):
        m = ab[0] * z + ab[1]
        return np.sum(w * (np.logaddexp(0, m) - t * m))

    def grad(ab):
        m = ab[0] * z + ab[1]
        r = w * (1 / (1 + np.exp(-m)) - t)
        return np.array([np.sum(r * z), np.sum(r)])

    res = so.minimize(loss, np.array([1.0, 0.0]), jac=grad, method="BFGS",
                      options={"gtol": 1e-12, "maxiter": 10_000})
    return res.x


@pytest.mark.parametrize("weighted", [False, True])
def test_platt_matches_a_reference_logistic_fit(weighted):
    s, y = _overconfident(5_000, seed=3)
    w = np.random.default_rng(4).uniform(0.5, 2, len(s)) if weighted else np.ones(len(s))
    fit = calibrate.Platt().fit(s, y, sample_weight=w if weighted else None)
    a, b = _platt_reference(s, y, w)
    assert fit.to_dict()["a"] == pytest.approx(a, abs=1e-6)
    assert fit.to_dict()["b"] == pytest.approx(b, abs=1e-6)


def test_temperature_recovers_a_planted_temperature_and_lowers_log_loss():
    s, y = _overconfident(50_000, seed=1, temperature=2.0)
    t = calibrate.Temperature().fit(s, y)
    assert t.temperature == pytest.approx(2.0, rel=0.05)

    def log_loss(p):
        p = np.clip(p, 1e-15, 1 - 1e-15)
        return -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))

    assert log_loss(t.transform(s)) < log_loss(s) - 0.01


def test_histogram_binning_maps_bins_to_their_positive_rate():
    s = np.array([0.05, 0.05, 0.15, 0.95, 1.0, 0.55])
    y = np.array([0, 1, 1, 1, 0, 0])
    h = calibrate.HistogramBinning(n_bins=10).fit(s, y)
    out = h.transform(np.array([0.0, 0.15, 0.99, 1.0, 0.35]))
    np.testing.assert_allclose(out, [0.5, 1.0, 0.5, 0.5, 0.35])


@pytest.mark.parametrize("cls", [calibrate.Platt, calibrate.Isotonic, calibrate.Temperature,
                                 calibrate.HistogramBinning])
def test_round_trip_through_a_dict(cls):
    s, y = _overconfident(2_000, seed=7)
    fitted = cls().fit(s, y)
    d = json.loads(json.dumps(fitted.to_dict()))
    again = cls.from_dict(d)
    np.testing.assert_array_equal(again.transform(s), fitted.transform(s))
    assert calibrate.Platt.from_dict(calibrate.Platt().fit(s, y).to_dict()).to_dict() == \
        calibrate.Platt().fit(s, y).to_dict()
    assert "fitted" in repr(fitted)


@pytest.mark.parametrize("cls", [calibrate.Platt, calibrate.Isotonic, calibrate.Temperature,
                                 calibrate.HistogramBinning])
def test_bad_fits_raise_typed_errors(cls):
    with pytest.raises(calibrate.NotFittedError, match="fit"):
        cls().transform(np.array([0.5]))
    with pytest.raises(InvalidInputError, match="single class"):
        cls().fit(np.array([0.2, 0.7]), np.array([1, 1]))
    with pytest.raises(EmptyInputError):
        cls().fit(np.array([], dtype=float), np.array([], dtype=np.int8))
    with pytest.raises(InvalidInputError, match="0 or 1"):
        cls().fit(np.array([0.2, 0.7]), np.array([0, 2]))
    with pytest.raises(InvalidArgumentError, match="same length"):
        cls().fit(np.array([0.2, 0.7, 0.1]), np.array([0, 1]))
    with pytest.raises(AssayError):
        cls().fit(np.array([0.2, np.nan]), np.array([0, 1]))


def test_probability_recalibrators_refuse_scores_outside_0_1():
    for cls in (calibrate.Platt, calibrate.Temperature, calibrate.HistogramBinning):
        with pytest.raises(InvalidInputError, match=r"\[0, 1\]"):
            cls().fit(np.array([0.2, 1.5]), np.array([0, 1]))
    with pytest.raises(InvalidArgumentError, match="n_bins"):
        calibrate.HistogramBinning(n_bins=0)
    with pytest.raises(InvalidArgumentError, match="out_of_bounds"):
        calibrate.Isotonic(out_of_bounds="extrapolate")
    with pytest.raises(InvalidArgumentError, match="kind"):
        calibrate.Platt.from_dict({"kind": "isotonic", "version": 1})
