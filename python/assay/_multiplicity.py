"""Corrections for testing many (slice, metric, model) cells at once, from the paired
bootstrap replicates every cell of a comparison shares (see docs/multiplicity.md).

All functions are vectorized over cells x replicates; none loops over rows or cells in
Python.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from . import _native

Correction = Literal["simultaneous", "holm", "bh", "none"]
CORRECTIONS: tuple[str, ...] = ("simultaneous", "holm", "bh", "none")


def max_stat(delta: np.ndarray, se: np.ndarray, reps: np.ndarray) -> np.ndarray:
    """The bootstrap distribution of the largest studentized deviation over the usable
    cells (finite delta, se > 0): ``M_b = max_c |d_cb - delta_c| / se_c``, one value per
    replicate where some usable cell is defined (a cell undefined in replicate ``b`` sits out
    of ``M_b``). Empty when no cell is usable."""
    delta = np.asarray(delta, dtype=np.float64)
    se = np.asarray(se, dtype=np.float64)
    reps = np.asarray(reps, dtype=np.float64)
    reps = reps.reshape(len(delta), reps.shape[-1] if reps.ndim == 2 else 0)
    usable = np.isfinite(delta) & np.isfinite(se) & (se > 0)
    if not usable.any() or reps.shape[1] == 0:
        return np.empty(0)
    z = reps[usable]
    z -= delta[usable, None]
    np.abs(z, out=z)
    z /= se[usable, None]
    defined = ~np.all(np.isnan(z), axis=0)
    z = z[:, defined]
    z[np.isnan(z)] = -np.inf
    return z.max(axis=0) if z.size else np.empty(0)


def exceedance_p(m: np.ndarray, t: np.ndarray, replicates: int) -> np.ndarray:
    """``(1 + #{b: M_b >= t_c}) / (B' + 1)`` per cell (NaN where ``t`` is), ``B'`` the
    length of ``m``; with no usable replicate (``m`` empty), ``1 / (replicates + 1)`` where
    ``t`` is infinite (a cell whose every replicate sits beyond: certain) and 1 elsewhere."""
    t = np.asarray(t, dtype=np.float64)
    if len(m) == 0:
        p = np.where(np.isinf(t) & (t > 0), 1.0 / (max(replicates, 1) + 1.0), 1.0)
    else:
        # A maximum equal to t_c mathematically (a replicate whose difference is exactly 0
        # gives |0 - delta| / se = t_c) must count in any order of the sums: compare with a
        # rounding allowance, so that scaled weights or another merge tree count the same.
        with np.errstate(invalid="ignore"):
            floor = np.where(np.isfinite(t), t - 1e-12 * np.abs(t), t)
        exceed = (m[None, :] >= floor[:, None]).sum(axis=1)
        p = np.minimum(1.0, (1.0 + exceed) / (len(m) + 1.0))
    return np.where(np.isnan(t), np.nan, p)


def max_t(delta: np.ndarray, se: np.ndarray, reps: np.ndarray,
          level: float) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """Simultaneous bands over the cells (rows of ``reps``, cells x B replicate differences;
    NaN where a replicate is undefined) from :func:`max_stat`: the bands ``delta_c -+ q
    se_c``, ``q`` the ``level`` quantile of ``M`` (NumPy's linear quantile), cover every
    cell's true difference at once with probability ``level`` (family-wise, two-sided).
    Returns ``q`` and, per cell, the single-step adjusted p-value of "no difference"
    (:func:`exceedance_p` of ``|delta_c| / se_c``) and the band. A cell whose ``se`` is 0
    (every replicate equal) has the band ``[delta, delta]`` and, when ``delta`` is not 0, the
    smallest p-value; cells with a NaN ``delta`` get NaN. With no usable cell ``q`` is NaN."""
    delta = np.asarray(delta, dtype=np.float64)
    se = np.asarray(se, dtype=np.float64)
    reps = np.asarray(reps, dtype=np.float64)
    m = max_stat(delta, se, reps)
    q = float(np.quantile(m, level)) if len(m) else float("nan")
    finite = np.isfinite(delta) & np.isfinite(se)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(delta == 0, 0.0, np.abs(delta) / se)
    t = np.where(finite, t, np.nan)
    p = exceedance_p(m, t, reps.shape[-1] if reps.ndim == 2 else 0)
    half = np.where(finite & (se > 0), q * se, np.where(finite & (se == 0), 0.0, np.nan))
    return q, p, delta - half, delta + half


def norm_cdf(x: np.ndarray) -> np.ndarray:
    """The standard normal CDF, elementwise (the engine's)."""
    x = np.asarray(x, dtype=np.float64)
    return np.asarray(_native.norm_cdf(x.ravel().tolist()), dtype=np.float64).reshape(x.shape)


def one_sided_p(delta: np.ndarray, se: np.ndarray, margin: float,
                lower_is_better: np.ndarray | bool) -> np.ndarray:
    """Per cell, the p-value of "not worse by more than ``margin``" (the null a gate
    rejects), from the studentized difference and its bootstrap standard error:
    ``Phi((delta + margin) / se)`` where higher is better, ``Phi((margin - delta) / se)``
    for losses. (A p-value counted from the replicates could not go below ``1 / (B + 1)``,
    so Holm or BH over a few hundred cells could never reject with B in the hundreds.) A cell
    whose ``se`` is 0 gets 0 when its delta lies beyond the margin, else 1; NaN stays NaN.
    ``lower_is_better``: one flag, or one per cell."""
    delta = np.asarray(delta, dtype=np.float64)
    se = np.asarray(se, dtype=np.float64)
    lower = np.broadcast_to(np.asarray(lower_is_better, dtype=bool), delta.shape)
    slack = np.where(lower, margin - delta, delta + margin)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(se > 0, slack / se, np.where(slack < 0, -np.inf, np.inf))
    p = norm_cdf(np.nan_to_num(z, nan=0.0))
    return np.where(np.isnan(delta) | np.isnan(se), np.nan, p)


def two_sided_p(delta: np.ndarray, se: np.ndarray) -> np.ndarray:
    """Per cell, the normal two-sided p-value of "no difference", ``2 Phi(-|delta| / se)``
    (0 for a nonzero delta with se 0, 1 for a zero delta)."""
    delta = np.asarray(delta, dtype=np.float64)
    se = np.asarray(se, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(delta == 0, 0.0, np.where(se > 0, np.abs(delta) / se, np.inf))
    p = np.minimum(1.0, 2.0 * norm_cdf(-np.nan_to_num(z, nan=0.0)))
    return np.where(np.isnan(delta) | np.isnan(se), np.nan, p)


def holm(p: np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error), NaN kept out of the family."""
    return _adjust(p, "holm")


def bh(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (false-discovery rate), NaN kept out."""
    return _adjust(p, "bh")


def _adjust(p: np.ndarray, how: str) -> np.ndarray:
    p = np.asarray(p, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    k = int(ok.sum())
    if k == 0:
        return out
    order = np.argsort(p[ok], kind="stable")
    sorted_p = p[ok][order]
    rank = np.arange(1, k + 1, dtype=np.float64)
    if how == "holm":
        adj = np.maximum.accumulate(np.minimum(1.0, (k - rank + 1) * sorted_p))
    else:
        adj = np.minimum.accumulate((k / rank * sorted_p)[::-1])[::-1]
        adj = np.minimum(1.0, adj)
    back = np.empty(k)
    back[order] = adj
    out[ok] = back
    return out
