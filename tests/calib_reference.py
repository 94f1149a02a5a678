"""Brute-force reference implementations of assay's calibration metrics.

Written directly from the formulas in docs/calibration.md with plain NumPy/SciPy, independently
of the engine: no streaming, no grids where the doc's one-pass algorithm uses one, no cleverness.
Everything works on one slice at a time: ``s`` scores in [0, 1], ``y`` labels 0/1, ``w``
positive weights (``None`` = all ones).

A value the contract calls undefined is ``None`` (it is null in assay's output).
"""

from __future__ import annotations

import math

import numpy as np
import scipy.optimize as so
import scipy.special
import scipy.stats as st

# Scores are clamped to [EPS, 1 - EPS] before the logit of the calibration slope (as log loss).
EPS = 2.0**-52


def _arrays(s, y, w):
    s = np.asarray(s, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    w = np.ones(len(s)) if w is None else np.asarray(w, dtype=np.float64)
    return s, y, w


# ----------------------------------------------------------------------------------------------
# bins
# ----------------------------------------------------------------------------------------------


def uniform_edges(n_bins):
    """Edges of the uniform strategy: exactly ``np.linspace(0, 1, n_bins + 1)``."""
    return np.linspace(0.0, 1.0, n_bins + 1)


def uniform_bin_ids(s, n_bins):
    """Left-closed bins ``[e_k, e_k+1)``, the last one closed.

    A score on an inner edge goes to the bin that edge opens (the upper one); 1.0 goes to the
    last bin; 0.0 to the first. ``searchsorted(..., side="right")`` over the inner edges counts
    the inner edges <= s, which is exactly that bin index.
    """
    s = np.asarray(s, dtype=np.float64)
    inner = uniform_edges(n_bins)[1:-1]
    return np.searchsorted(inner, s, side="right")


def quantile_edges(s, n_bins, w=None):
    """Edges of the quantile strategy at q = linspace(0, 1, n_bins + 1).

    Unweighted: numpy's default (linear) quantile. Weighted: the weighted inverted-CDF quantile.
    """
    s = np.asarray(s, dtype=np.float64)
    q = np.linspace(0.0, 1.0, n_bins + 1)
    if w is None:
        return np.quantile(s, q)
    return np.quantile(s, q, weights=np.asarray(w, dtype=np.float64), method="inverted_cdf")


def quantile_bin_ids(s, edges):
    """Right-closed bins ``(e_k, e_k+1]``, the first one closed ``[e_0, e_1]``.

    A score tied with an edge goes to the lower bin: ``searchsorted(..., side="left")`` over the
    inner edges counts the inner edges < s.
    """
    s = np.asarray(s, dtype=np.float64)
    return np.searchsorted(np.asarray(edges)[1:-1], s, side="left")


def bin_ids(s, n_bins, strategy, w=None):
    """(bin id of every row, edges) for one slice."""
    if strategy == "uniform":
        return uniform_bin_ids(s, n_bins), uniform_edges(n_bins)
    if strategy == "quantile":
        edges = quantile_edges(s, n_bins, w)
        return quantile_bin_ids(s, edges), edges
    raise ValueError(strategy)


def bin_table(s, y, w, ids, n_bins):
    """Per-bin state of one slice, as a dict of arrays of length n_bins.

    count, weight_sum (W_b), w2 (sum of w^2), sum_ws, sum_wy, mean_score, frac_positive
    (the means are NaN for an empty bin).
    """
    s, y, w = _arrays(s, y, w)
    ids = np.asarray(ids)
    count = np.zeros(n_bins, dtype=np.int64)
    weight_sum = np.zeros(n_bins)
    w2 = np.zeros(n_bins)
    sum_ws = np.zeros(n_bins)
    sum_wy = np.zeros(n_bins)
    for b in range(n_bins):
        rows = ids == b
        count[b] = rows.sum()
        weight_sum[b] = w[rows].sum()
        w2[b] = (w[rows] ** 2).sum()
        sum_ws[b] = (w[rows] * s[rows]).sum()
        sum_wy[b] = (w[rows] * y[rows]).sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_score = np.where(count > 0, sum_ws / weight_sum, np.nan)
        frac_positive = np.where(count > 0, sum_wy / weight_sum, np.nan)
    return {
        "count": count,
        "weight_sum": weight_sum,
        "w2": w2,
        "sum_ws": sum_ws,
        "sum_wy": sum_wy,
        "mean_score": mean_score,
        "frac_positive": frac_positive,
    }


def slice_bin_table(s, y, w, n_bins, strategy):
    """Bins of one slice by `strategy`, then their table (with "lower"/"upper" edges added)."""
    ids, edges = bin_ids(s, n_bins, strategy, w)
    t = bin_table(s, y, w, ids, n_bins)
    t["lower"] = np.asarray(edges[:-1], dtype=np.float64)
    t["upper"] = np.asarray(edges[1:], dtype=np.float64)
    t["ids"] = ids
    return t


# ----------------------------------------------------------------------------------------------
# metrics of a bin table
# ----------------------------------------------------------------------------------------------


def _nonempty(t):
    keep = t["count"] > 0
    W = t["weight_sum"].sum()
    p = t["weight_sum"][keep] / W
    f = t["frac_positive"][keep]
    gap = f - t["mean_score"][keep]
    return keep, p, f, gap


def ece(t):
    """sum_b p_b |gap_b| over non-empty bins."""
    _, p, _, gap = _nonempty(t)
    return float(np.sum(p * np.abs(gap)))


def mce(t):
    """max_b |gap_b| over non-empty bins."""
    _, _, _, gap = _nonempty(t)
    return float(np.max(np.abs(gap)))


def rmsce_squared(t):
    """sum_b p_b gap_b^2 (= brier_reliability), the square of rmsce."""
    _, p, _, gap = _nonempty(t)
    return float(np.sum(p * gap**2))


def rmsce(t):
    return math.sqrt(rmsce_squared(t))


def ece_debiased_squared(t):
    """max(0, sum_b p_b (gap_b^2 - f_b (1 - f_b) / (n_b - 1))), bins with n_b <= 1 adding 0.

    n_b is the bin's effective sample size W_b^2 / sum(w^2) (= count when unweighted).
    """
    keep, p, f, gap = _nonempty(t)
    n_eff = t["weight_sum"][keep] ** 2 / t["w2"][keep]
    total = 0.0
    for pb, fb, gb, nb in zip(p, f, gap, n_eff, strict=True):
        if nb <= 1:
            continue
        total += pb * (gb**2 - fb * (1 - fb) / (nb - 1))
    return max(0.0, float(total))


def ece_debiased(t):
    return math.sqrt(ece_debiased_squared(t))


def base_rate(t):
    """The slice's weighted base rate ybar."""
    return float(t["sum_wy"].sum() / t["weight_sum"].sum())


def brier_decomposition(t):
    """(reliability, resolution, uncertainty) of the Murphy decomposition on the bins."""
    _, p, f, gap = _nonempty(t)
    ybar = base_rate(t)
    rel = float(np.sum(p * gap**2))
    res = float(np.sum(p * (f - ybar) ** 2))
    unc = ybar * (1 - ybar)
    return rel, res, unc


def binned_brier(s, y, w, t):
    """Brier score of the forecasts replaced by their bin's mean_score (rows binned by t["ids"])."""
    s, y, w = _arrays(s, y, w)
    forecast = t["mean_score"][t["ids"]]
    return float(np.sum(w * (forecast - y) ** 2) / np.sum(w))


def oe_ratio(s, y, w=None):
    """Observed / expected positives sum(w y) / sum(w s); None when sum(w s) == 0."""
    s, y, w = _arrays(s, y, w)
    expected = np.sum(w * s)
    if expected == 0:
        return None
    return float(np.sum(w * y) / expected)


def wilson(frac, n, ci=0.95):
    """Wilson score interval of a proportion `frac` observed on `n` (possibly fractional) rows."""
    z = st.norm.ppf(1 - (1 - ci) / 2)
    denom = 1 + z**2 / n
    centre = (frac + z**2 / (2 * n)) / denom
    half = z / denom * math.sqrt(frac * (1 - frac) / n + z**2 / (4 * n**2))
    return centre - half, centre + half


# ----------------------------------------------------------------------------------------------
# calibration slope and intercept
# ----------------------------------------------------------------------------------------------


def clamped_logit(s):
    c = np.clip(np.asarray(s, dtype=np.float64), EPS, 1 - EPS)
    return np.log(c / (1 - c))


def _logistic_fit_exists(z, y, w):
    """False for one class or classes separated (even with ties) by the score."""
    pos, neg = (y == 1) & (w > 0), (y == 0) & (w > 0)
    if not pos.any() or not neg.any():
        return False
    if z[neg].max() <= z[pos].min() or z[pos].max() <= z[neg].min():
        return False
    return True


def _logistic_loss_grad_hess(beta, X, y, w):
    eta = X @ beta
    loss = np.sum(w * (np.logaddexp(0.0, eta) - y * eta))
    p = scipy.special.expit(eta)
    grad = X.T @ (w * (p - y))
    hess = (X * (w * p * (1 - p))[:, None]).T @ X
    return loss, grad, hess


def logistic_fit(s, y, w=None):
    """Weighted logistic regression y ~ sigmoid(a + b logit(s)) by damped Newton (IRLS).

    Returns (a, b, covariance matrix of (a, b) = inverse information), or None when the fit
    has no finite solution.
    """
    s, y, w = _arrays(s, y, w)
    z = clamped_logit(s)
    if not _logistic_fit_exists(z, y, w):
        return None
    X = np.column_stack([np.ones_like(z), z])
    beta = np.array([0.0, 1.0])  # perfect calibration as the starting point
    loss, grad, hess = _logistic_loss_grad_hess(beta, X, y, w)
    for _ in range(200):
        step = np.linalg.solve(hess, grad)
        t = 1.0
        while True:  # backtracking: Newton's step, halved until the loss does not increase
            new = beta - t * step
            new_loss, new_grad, new_hess = _logistic_loss_grad_hess(new, X, y, w)
            if new_loss <= loss or t < 1e-12:
                break
            t /= 2
        beta, loss, grad, hess = new, new_loss, new_grad, new_hess
        if np.max(np.abs(t * step)) < 1e-14 * (1 + np.max(np.abs(beta))):
            break
    cov = np.linalg.inv(hess)
    return float(beta[0]), float(beta[1]), cov


def logistic_fit_bfgs(s, y, w=None):
    """The same fit by scipy's BFGS (analytic gradient, gtol 1e-12): a second opinion."""
    s, y, w = _arrays(s, y, w)
    X = np.column_stack([np.ones(len(s)), clamped_logit(s)])
    res = so.minimize(
        lambda b: _logistic_loss_grad_hess(b, X, y, w)[0],
        np.array([0.0, 1.0]),
        jac=lambda b: _logistic_loss_grad_hess(b, X, y, w)[1],
        method="BFGS",
        options={"gtol": 1e-12, "maxiter": 10_000},
    )
    return float(res.x[0]), float(res.x[1])


def calibration_slope_intercept(s, y, w=None):
    """(slope b, intercept a) of the weighted logistic recalibration fit, or (None, None)."""
    fit = logistic_fit(s, y, w)
    if fit is None:
        return None, None
    a, b, _ = fit
    return b, a


def calibration_wald(s, y, w=None, ci=0.95):
    """Wald intervals {"calibration_slope": (lo, hi), "calibration_intercept": (lo, hi)}."""
    fit = logistic_fit(s, y, w)
    if fit is None:
        return None
    a, b, cov = fit
    z = st.norm.ppf(1 - (1 - ci) / 2)
    se_a, se_b = math.sqrt(cov[0, 0]), math.sqrt(cov[1, 1])
    return {
        "calibration_intercept": (a - z * se_a, a + z * se_a),
        "calibration_slope": (b - z * se_b, b + z * se_b),
    }


# ----------------------------------------------------------------------------------------------
# SmoothECE
# ----------------------------------------------------------------------------------------------

SIGMA_MIN = 0.001


def _reflections(sigma):
    """The terms of the reflected kernel worth computing at this sigma, as (sign, k): the
    term phi(t - sign * s + 2k), so sign +1 is phi(t - s + 2k) and sign -1 is phi(t + s + 2k),
    for k in -3..3. Terms whose argument is at least 12 sigma everywhere on [0, 1]^2 are left
    out (each is below exp(-72) ~ 5e-32 of the kernel's peak)."""
    terms = []
    for k in range(-3, 4):
        closest_direct = 0 if k == 0 else 2 * abs(k) - 1  # t - s + 2k lies in [2k - 1, 2k + 1]
        if closest_direct <= 12 * sigma:
            terms.append((+1, k))
        closest_mirror = 0 if k in (0, -1) else (2 * k if k > 0 else -2 * k - 2)  # [2k, 2k + 2]
        if closest_mirror <= 12 * sigma:
            terms.append((-1, k))
    return terms


def reflected_kernel(t, s, sigma):
    """K_sigma(t_j, s_i) = sum_k phi_sigma(t - s + 2k) + phi_sigma(t + s + 2k), a (len(t),
    len(s)) matrix.

    phi_sigma(x) = exp(-x^2 / (2 sigma^2)) / (sigma sqrt(2 pi)). The exponent is floored at -700
    (exp(-700) ~ 1e-304, far below anything that matters): that keeps numpy's exp off its slow
    subnormal path. The arithmetic is done in place, on t / sigma and s / sigma, only for speed.
    """
    t_scaled = np.asarray(t, dtype=np.float64) / sigma
    s_scaled = np.asarray(s, dtype=np.float64) / sigma
    total = np.zeros((len(t_scaled), len(s_scaled)))
    for sign, k in _reflections(sigma):
        # x = (t - sign * s + 2k) / sigma
        x = t_scaled[:, None] - sign * s_scaled[None, :] + 2 * k / sigma
        x *= x
        x *= -0.5
        np.maximum(x, -700.0, out=x)
        np.exp(x, out=x)
        total += x
    total /= sigma * math.sqrt(2 * math.pi)
    return total


def smooth_ece_sigma(s, y, w, sigma, grid_points=4001, chunk=32):
    """smECE_sigma = (1/W) integral_0^1 |sum_i w_i r_i K_sigma(t, s_i)| dt, r_i = y_i - s_i.

    The kernel is evaluated exactly for every row (32 rows at a time) at every point of a fine
    grid of t; the integral is the trapezoid rule on that grid.
    """
    s, y, w = _arrays(s, y, w)
    wr = w * (y - s)
    t = np.linspace(0.0, 1.0, grid_points)
    smoothed = np.zeros(grid_points)  # sum_i w_i r_i K_sigma(t, s_i) at every grid point t
    for i in range(0, len(s), chunk):
        smoothed += reflected_kernel(t, s[i : i + chunk], sigma) @ wr[i : i + chunk]
    return float(np.trapezoid(np.abs(smoothed), t) / np.sum(w))


def smooth_ece(s, y, w=None, return_sigma=False, xtol=1e-10):
    """SmoothECE: smECE_sigma at the fixed point sigma* = smECE_sigma*, sigma* in [0.001, 1].

    g(sigma) = smECE_sigma - sigma is decreasing, so sigma* is the root of g bracketed by
    [0.001, hi]. hi = min(1, mean |r|) is a valid upper end: smECE_sigma <= mean |r| for every
    sigma (the kernel integrates to 1 over t), so g(hi) <= 0. The root is found to `xtol` with
    Brent's method (a safeguarded bisection: the same root as plain bisection, with far fewer of
    the expensive brute-force evaluations). If g(0.001) <= 0, sigma* = 0.001.
    """
    s, y, w = _arrays(s, y, w)
    values = {}

    def smece(sigma):
        if sigma not in values:
            values[sigma] = smooth_ece_sigma(s, y, w, sigma)
        return values[sigma]

    def g(sigma):
        return smece(sigma) - sigma

    hi = min(1.0, float(np.sum(w * np.abs(y - s)) / np.sum(w)))
    if hi <= SIGMA_MIN or g(SIGMA_MIN) <= 0:
        sigma = SIGMA_MIN
    elif g(hi) >= 0:
        sigma = hi
    else:
        sigma = so.brentq(g, SIGMA_MIN, hi, xtol=xtol, rtol=4 * np.finfo(float).eps)
    return (smece(sigma), sigma) if return_sigma else smece(sigma)


# ----------------------------------------------------------------------------------------------
# everything for one slice
# ----------------------------------------------------------------------------------------------

BIN_METRICS = [
    "ece",
    "mce",
    "rmsce",
    "ece_debiased",
    "brier_reliability",
    "brier_resolution",
    "brier_uncertainty",
]


def bin_metrics(t):
    """The metrics of one bin table, by name."""
    rel, res, unc = brier_decomposition(t)
    return {
        "ece": ece(t),
        "mce": mce(t),
        "rmsce": rmsce(t),
        "ece_debiased": ece_debiased(t),
        "brier_reliability": rel,
        "brier_resolution": res,
        "brier_uncertainty": unc,
    }


def slice_metrics(s, y, w, n_bins, strategy):
    """Reference values of every bin metric, ``ace`` and ``oe_ratio`` for one slice."""
    out = bin_metrics(slice_bin_table(s, y, w, n_bins, strategy))
    out["ace"] = ece(slice_bin_table(s, y, w, n_bins, "quantile"))
    out["oe_ratio"] = oe_ratio(s, y, w)
    return out
