"""Corrections for testing many (slice, metric, model) cells at once, from the paired
bootstrap replicates every cell of a comparison shares (see docs/multiplicity.md).

All functions are vectorized over cells x replicates; none loops over rows or cells.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np

Correction = Literal["simultaneous", "holm", "bh", "none"]
CORRECTIONS: tuple[str, ...] = ("simultaneous", "holm", "bh", "none")


def max_t(delta: np.ndarray, se: np.ndarray, reps: np.ndarray,
          level: float) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """Simultaneous bands over the cells (rows of ``reps``, cells x B replicate differences;
    NaN where a replicate is undefined) by the bootstrap distribution of the maximum
    studentized deviation ``M_b = max_c |d_cb - delta_c| / se_c``: the bands ``delta_c -+
    q se_c``, ``q`` the ``level`` quantile of ``M``, cover every cell's true difference at
    once with probability ``level`` (family-wise). Returns ``q`` and, per cell, the
    single-step adjusted p-value of "no difference" ``(1 + #{b: M_b >= |delta_c| / se_c}) /
    (B' + 1)`` (B' the replicates where some cell is defined), and the band. A cell whose
    ``se`` is 0 (every replicate equal) has the band ``[delta, delta]``; cells with a NaN
    ``delta`` get NaN. With no usable cell, ``q`` is NaN."""
    delta = np.asarray(delta, dtype=np.float64)
    se = np.asarray(se, dtype=np.float64)
    reps = np.asarray(reps, dtype=np.float64)
    reps = reps.reshape(len(delta), reps.shape[-1] if reps.ndim == 2 else 0)
    usable = np.isfinite(delta) & np.isfinite(se) & (se > 0)
    nan = np.full(len(delta), np.nan)
    if not usable.any() or reps.shape[1] == 0:
        p = np.where(np.isfinite(delta), np.where(delta == 0, 1.0, np.nan), np.nan)
        lo = np.where(np.isfinite(se) & (se == 0), delta, nan)
        return float("nan"), p, lo, lo.copy()
    z = np.abs(reps[usable] - delta[usable, None]) / se[usable, None]
    defined = ~np.all(np.isnan(z), axis=0)
    m = np.nanmax(np.where(np.isnan(z), -np.inf, z)[:, defined], axis=0)
    q = float(np.quantile(m, level))
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(delta == 0, 0.0, np.abs(delta) / se)
    t = np.where(np.isfinite(delta) & np.isfinite(se), t, np.nan)
    exceed = (m[None, :] >= t[:, None]).sum(axis=1)
    p = np.minimum(1.0, (1.0 + exceed) / (len(m) + 1.0))
    p = np.where(np.isnan(t), np.nan, p)
    half = np.where(usable, q * se, np.where(np.isfinite(se) & (se == 0), 0.0, np.nan))
    return q, p, delta - half, delta + half


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
    p = 0.5 * _erfc(-z / math.sqrt(2.0))
    return np.where(np.isnan(delta) | np.isnan(se), np.nan, p)


_erfc = np.vectorize(math.erfc, otypes=[np.float64])


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
