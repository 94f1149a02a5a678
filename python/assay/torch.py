"""assay on torch tensors: sliced metrics filled on the device, merged across ranks.

:class:`Evaluator` takes an :class:`assay.Spec` and is fed batches of tensors inside an eval
loop. Each ``update`` adds the batch into dense per-slice blocks on the tensors' device (counts
and sums by ``index_add_``, bootstrap replicate weights from the same counter hash as the Rust
engine), with no host synchronization. ``sync()`` merges the ranks of a ``torch.distributed``
job: every fixed-size block in one ``all_reduce``, the kept rows of exact rank metrics in one
``all_gather``. ``compute()`` hands the blocks to the engine, which keys the slices by value and
finalizes: the result is the :class:`assay.Report` that :func:`assay.evaluate` gives on the same
rows, and ``partial()`` is an :class:`assay.PartialState` that merges with states accumulated
anywhere else.

Needs ``pip install "assay[torch]"``; the rest of assay never imports torch. See
``docs/torch.md`` for the layout, the error model and what is not on the device yet.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from . import _native
from ._compare import Comparison
from ._evaluate import Bins
from ._spec import PartialState, Spec
from .errors import InvalidArgumentError, InvalidInputError
from .report import Report

__all__ = ["Evaluator", "replicate_draws"]

# Dense ids of one slice spec (the product of its features' codes) at most this many.
MAX_DENSE_IDS = 1 << 22
# Rows x replicate slots drawn at once (bounds the temporaries of a bootstrap update).
DRAW_CELLS = 1 << 22
# Rows at the start and the end of each rank's stream that sync() compares to count once the
# samples DistributedSampler repeats (it pads with at most one per rank).
PAD_ROWS = 16

_M32 = 0xFFFF_FFFF
_M64 = (1 << 64) - 1


def _i64(x: int) -> int:
    """The int64 whose bits are the uint64 ``x``."""
    x &= _M64
    return x - (1 << 64) if x >= 1 << 63 else x


def _splitmix64_int(z: int) -> int:
    z = (z + 0x9E37_79B9_7F4A_7C15) & _M64
    z = ((z ^ (z >> 30)) * 0xBF58_476D_1CE4_E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D0_49BB_1331_11EB) & _M64
    return z ^ (z >> 31)


def _srl(z: torch.Tensor, k: int) -> torch.Tensor:
    """Logical right shift of int64 bits."""
    return (z >> k) & ((1 << (64 - k)) - 1)


def _splitmix64(z: torch.Tensor) -> torch.Tensor:
    # int64 arithmetic wraps like u64 arithmetic (two's complement): the same bits.
    z = z + _i64(0x9E37_79B9_7F4A_7C15)
    z = (z ^ _srl(z, 30)) * _i64(0xBF58_476D_1CE4_E5B9)
    z = (z ^ _srl(z, 27)) * _i64(0x94D0_49BB_1331_11EB)
    return z ^ _srl(z, 31)


def _fmix32(h: torch.Tensor) -> torch.Tensor:
    h = h ^ (h >> 16)
    h = (h * 0x85EB_CA6B) & _M32
    h = h ^ (h >> 13)
    h = (h * 0xC2B2_AE35) & _M32
    return h ^ (h >> 16)


def _thresholds() -> list[int]:
    """``T[j] = P(X <= j) 2^32`` of Poisson(1), j < 12, as the engine computes them."""
    out, term, cdf = [], math.exp(-1.0), 0.0
    for j in range(12):
        cdf += term
        term /= j + 1
        out.append(min(math.floor(cdf * 4_294_967_296.0), _M32))
    return out


_THRESHOLDS = _thresholds()
JACK_GROUPS = 20


class _Resampler:
    """The engine's replicate weights (``bootstrap.rs``), on tensors."""

    def __init__(self, seed: int, replicates: int, slots: int):
        self.seed_key = _i64(_splitmix64_int((seed ^ 0x6173_7361_7962_6F6F) & _M64))
        self.replicates = replicates
        self.slots = slots

    def row_keys(self, row_ids: torch.Tensor) -> torch.Tensor:
        return _srl(_splitmix64(_splitmix64(row_ids) ^ self.seed_key), 1)

    def draws(self, keys: torch.Tensor, replicates: int) -> torch.Tensor:
        """Poisson(1) draws ``[rows, replicates]`` (int64) of the rows with resampling keys
        ``keys``."""
        lo, hi = (keys & _M32).unsqueeze(1), (keys >> 32).unsqueeze(1)
        b = torch.arange(replicates, device=keys.device, dtype=torch.int64)
        x = _fmix32(((lo ^ ((b * 0x9E37_79B9) & _M32)) + hi) & _M32)
        k = torch.zeros_like(x)
        for t in _THRESHOLDS:
            k += x >= t
        return k

    def groups(self, keys: torch.Tensor) -> torch.Tensor:
        return ((_srl(keys, 31) & _M32) * JACK_GROUPS) >> 32

    def weights(self, keys: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """Slot weights ``[rows, slots]``: k x w in the bootstrap slots, then (BCa) w outside
        the row's jackknife group and 0 in it."""
        kw = self.draws(keys, self.replicates).to(w.dtype) * w.unsqueeze(1)
        jack = self.slots - self.replicates
        if jack > 0:
            g = torch.arange(jack, device=keys.device)
            out = (g.unsqueeze(0) != self.groups(keys).unsqueeze(1)).to(w.dtype)
            kw = torch.cat([kw, out * w.unsqueeze(1)], dim=1)
        return kw


def replicate_draws(seed: int, replicates: int, row_ids: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The resampling keys, Poisson(1) bootstrap draws ``[rows, replicates]`` and jackknife
    groups of ``row_ids`` (int64, their bits read as uint64) for ``seed``: bit for bit the
    engine's, on any device.

    >>> import torch, assay.torch as at
    >>> keys, draws, groups = at.replicate_draws(0, 4, torch.arange(3))
    >>> tuple(draws.shape)
    (3, 4)
    """
    r = _Resampler(int(seed), int(replicates), int(replicates))
    keys = r.row_keys(row_ids.to(torch.int64))
    return keys, r.draws(keys, int(replicates)), r.groups(keys)


# ---- the regression family's block (regression.rs): Chan-merged co-moments ----------------

_REG_FIELDS = 16  # rows, w, mean y/p/e, m2 y/p/e, c_yp, |e|, e^2, ape, sape, |y|, sq log, max
_NULL = _REG_FIELDS + 3  # the Tweedie deviance of the mean label (after 3 deviance sums)
_EPS = 2.0**-52


class _RegLayout:
    """A regression job's block layout (``regression::Layout``): the state, the deviances
    (Poisson, Gamma, Tweedie, the null deviance), the prediction interval's coverage and
    width, the pinball sums, then the moment fields."""

    def __init__(self, lay: Mapping[str, int], power: float, quantiles: list[float]):
        self.log = bool(lay["log_errors"])
        self.moments = bool(lay["moments"])
        self.devs = (bool(lay["dev_poisson"]), bool(lay["dev_gamma"]), bool(lay["dev_tweedie"]))
        self.power = power
        self.interval = bool(lay["interval"])
        self.quantiles = quantiles
        self.at_moments = lay["fam_fields"]  # the fields of a replicate slot

    def null_power(self) -> float | None:
        """The power whose null deviance moves with the mean (None: none, or a plain sum)."""
        return self.power if self.devs[2] and self.power >= 0 else None


def _tweedie(y: torch.Tensor, mu: torch.Tensor, power: float) -> torch.Tensor:
    """The unit Tweedie deviance (``regression::tweedie_deviance``), 0 where ``y == mu``."""
    if power == 0:
        d = (y - mu) ** 2
    elif power == 1:
        ylog = torch.where(y == 0, 0.0, y * torch.log(torch.where(y == 0, 1.0, y) / mu))
        d = 2.0 * (ylog - y + mu)
    elif power == 2:
        d = 2.0 * (torch.log(mu / y) + y / mu - 1.0)
    else:
        a, b = 1.0 - power, 2.0 - power
        d = 2.0 * (y.clamp(min=0) ** b / (a * b) - y * mu ** a / a + mu ** b / b)
    return torch.where(y == mu, 0.0, d)


def _reg_terms(y: torch.Tensor, p: torch.Tensor, log: bool) -> list[torch.Tensor]:
    """|e|, e^2, e, ape, sape, sq log error per row (the quantities of the mean metrics)."""
    e = p - y
    a = e.abs()
    d = y.abs() + p.abs()
    sape = torch.where(d > 0, 2.0 * a / torch.where(d > 0, d, 1.0), 0.0)
    sq_log = (torch.log1p(p) - torch.log1p(y)) ** 2 if log else torch.zeros_like(y)
    return [a, e * e, e, a / y.abs().clamp(min=_EPS), sape, sq_log]


def _reg_state(y: torch.Tensor, p: torch.Tensor, kw: torch.Tensor, rows: torch.Tensor | None,
               ids: torch.Tensor, size: int, lay: _RegLayout,
               extras: torch.Tensor | None) -> torch.Tensor:
    """The block ``[size, S, fields]`` of the rows in each slice, weighted by each column of
    ``kw`` (``[n, S]``): sums, co-moments by the corrected two-pass algorithm (as
    ``RegressionState::from_rows``), then the deviance, interval and pinball sums of the
    per-row ``extras`` (``[n, fields - 16]``, the null deviance's column filled here, about
    each slice's own mean). ``rows``: the rows counted (None: 0, a replicate slot)."""
    state = _reg_co_moments(y, p, kw, rows, ids, size, lay.log)
    if extras is None:  # (the deviance fields are in every layout: zeros)
        pad = torch.zeros(*state.shape[:-1], lay.at_moments - _REG_FIELDS, dtype=state.dtype,
                          device=state.device)
        return torch.cat([state, pad], dim=-1)
    n_slots = kw.shape[1]
    sums = torch.zeros(size, n_slots, extras.shape[1], dtype=kw.dtype, device=kw.device)
    sums.index_add_(0, ids, kw.unsqueeze(2) * extras.unsqueeze(1))
    if lay.devs[2]:
        if lay.power < 0:  # a plain sum (``regression::null_sum``)
            null = (y.clamp(min=0) ** (2.0 - lay.power)).unsqueeze(1).expand(-1, n_slots)
        else:
            null = _tweedie(y.unsqueeze(1), state[..., 2][ids], lay.power)
        # (A slot without weight has mean 0, where the deviance may be inf: it adds 0.)
        sums[..., 3] = torch.zeros(size, n_slots, dtype=kw.dtype, device=kw.device).index_add_(
            0, ids, torch.where(kw > 0, kw * null, 0.0))
    return torch.cat([state, sums], dim=-1)


def _reg_co_moments(y: torch.Tensor, p: torch.Tensor, kw: torch.Tensor,
                    rows: torch.Tensor | None, ids: torch.Tensor, size: int,
                    log: bool) -> torch.Tensor:
    """The 16 state fields of ``_reg_state``."""
    n_slots = kw.shape[1]

    def add(v: torch.Tensor) -> torch.Tensor:
        return torch.zeros(size, n_slots, dtype=kw.dtype, device=kw.device).index_add_(0, ids, v)

    e = p - y
    yy, pp, ee = y.unsqueeze(1), p.unsqueeze(1), e.unsqueeze(1)
    w = add(kw)
    pos = w > 0
    wd = torch.where(pos, w, 1.0)
    my, mp, me = (torch.where(pos, add(kw * v) / wd, 0.0) for v in (yy, pp, ee))
    a, b, c = yy - my[ids], pp - mp[ids], ee - me[ids]
    dy, dp, de = add(kw * a), add(kw * b), add(kw * c)

    def centred(sq: torch.Tensor, dv: torch.Tensor) -> torch.Tensor:
        # As the engine's `chan_form`: a residue of a few ulps of the raw sum is rounding.
        m2 = sq - dv * dv / wd
        return torch.where(m2 <= 16.0 * _EPS * sq, 0.0, m2)

    m2y, m2p = centred(add(kw * a * a), dy), centred(add(kw * b * b), dp)
    m2e = centred(add(kw * c * c), de)
    bound = (m2y * m2p).sqrt()  # Cauchy-Schwarz, as the engine's `chan_form`
    cyp = torch.where((m2y > 0) & (m2p > 0),
                      torch.clamp(add(kw * a * b) - dy * dp / wd, -bound, bound), 0.0)
    terms = _reg_terms(y, p, log)
    sums = [add(kw * t.unsqueeze(1)) for t in (terms[0], terms[1], terms[3], terms[4],
                                                y.abs(), terms[5])]
    mx = torch.zeros(size, n_slots, dtype=kw.dtype, device=kw.device).scatter_reduce_(
        0, ids.unsqueeze(1).expand(-1, n_slots),
        torch.where(kw > 0, terms[0].unsqueeze(1), 0.0), reduce="amax")
    count = add(rows.unsqueeze(1)) if rows is not None else torch.zeros_like(w)
    zero = torch.zeros_like(w)
    return torch.stack([
        count, w,
        torch.where(pos, my + dy / wd, 0.0), torch.where(pos, mp + dp / wd, 0.0),
        torch.where(pos, me + de / wd, 0.0),
        torch.where(pos, m2y, zero), torch.where(pos, m2p, zero), torch.where(pos, m2e, zero),
        torch.where(pos, cyp, zero), *sums, mx], dim=-1)


def _chan(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """States ``a`` merged with ``b`` (rows after ``a``'s), field by field as
    ``RegressionState::merge``, over any leading dimensions."""
    wa, wb = a[..., 1], b[..., 1]
    w = wa + wb
    both = ((wa > 0) & (wb > 0)).unsqueeze(-1)
    only_b = ((wa <= 0) & (wb > 0)).unsqueeze(-1)
    wd = torch.where(w > 0, w, 1.0)
    f = (wa * wb / wd).unsqueeze(-1)
    dm = b[..., 2:5] - a[..., 2:5]
    means = a[..., 2:5] + dm * (wb / wd).unsqueeze(-1)
    m2 = a[..., 5:8] + b[..., 5:8] + dm * dm * f
    cyp = a[..., 8:9] + b[..., 8:9] + dm[..., 0:1] * dm[..., 1:2] * f
    centre = torch.cat([means, m2, cyp], dim=-1)
    centre = torch.where(both, centre, torch.where(only_b, b[..., 2:9], a[..., 2:9]))
    return torch.cat([a[..., 0:1] + b[..., 0:1], w.unsqueeze(-1), centre,
                      a[..., 9:15] + b[..., 9:15],
                      torch.maximum(a[..., 15:16], b[..., 15:16])], dim=-1)


def _mean_q(st: torch.Tensor) -> torch.Tensor:
    """The weighted means of the mean metrics' quantities (``mean_of_quantity``), [.., 6]."""
    w = st[..., 1]
    pos = w > 0
    wd = torch.where(pos, w, 1.0)
    q = torch.stack([st[..., 9] / wd, st[..., 10] / wd, st[..., 4], st[..., 11] / wd,
                     st[..., 12] / wd, st[..., 14] / wd], dim=-1)
    return torch.where(pos.unsqueeze(-1), q, 0.0)


def _reg_moments(y: torch.Tensor, p: torch.Tensor, w: torch.Tensor, ids: torch.Tensor,
                 size: int, state: torch.Tensor, log: bool) -> torch.Tensor:
    """The moment fields ``[size, 13]`` of a batch: sum w^2, then per quantity the sums of
    w^2 (x - c) and w^2 (x - c)^2 about the batch state's mean ``c``."""
    c = _mean_q(state)[ids]
    w2 = w * w
    cols = [w2]
    for k, x in enumerate(_reg_terms(y, p, log)):
        dx = x - c[:, k]
        cols += [w2 * dx, w2 * dx * dx]
    v = torch.stack(cols, dim=1)
    return torch.zeros(size, v.shape[1], dtype=v.dtype, device=v.device).index_add_(0, ids, v)


def _rebase(m: torch.Tensor, frm: torch.Tensor, to: torch.Tensor) -> torch.Tensor:
    """Moment fields ``m`` about means ``frm`` moved to means ``to`` (``regression::rebase``)."""
    d = frm - to
    v = m[..., 0:1]
    q1, q2 = m[..., 1::2], m[..., 2::2]
    out = torch.empty_like(m)
    out[..., 0:1] = v
    out[..., 1::2] = q1 + d * v
    out[..., 2::2] = q2 + 2.0 * d * q1 + d * d * v
    return out


def _merge_moments(sa: torch.Tensor, ma: torch.Tensor, sb: torch.Tensor, mb: torch.Tensor,
                   merged: torch.Tensor) -> torch.Tensor:
    """Moment fields of states ``sa`` and ``sb`` merged (into state ``merged``)."""
    to = _mean_q(merged)
    return _rebase(ma, _mean_q(sa), to) + _rebase(mb, _mean_q(sb), to)


_CHAN_KEYS = ("fam", "fam_reps")


def _null_shift(part: torch.Tensor, merged: torch.Tensor, power: float) -> torch.Tensor:
    """``W d(m_part, m_merged)``: the null deviance's move between means (a Bregman
    divergence), 0 for a part without weight."""
    w, m = part[..., 1], part[..., 2]
    return torch.where(w > 0, w * _tweedie(m, merged[..., 2], power), 0.0)


def _fam_merge(a: torch.Tensor, b: torch.Tensor, lay: _RegLayout, moments: bool
               ) -> torch.Tensor:
    """Regression blocks ``a`` merged with ``b`` (``regression::merge_block``): the state by
    Chan's update, the sums added, the null deviance moved to the merged mean, the moment
    fields rebased."""
    state = _chan(a[..., :_REG_FIELDS], b[..., :_REG_FIELDS])
    out = a + b
    out[..., :_REG_FIELDS] = state
    power = lay.null_power()
    if power is not None:
        out[..., _NULL] = (a[..., _NULL] + b[..., _NULL] + _null_shift(a, state, power)
                           + _null_shift(b, state, power))
    if moments:
        at = lay.at_moments
        out[..., at:] = _merge_moments(a[..., :_REG_FIELDS], a[..., at:], b[..., :_REG_FIELDS],
                                       b[..., at:], state)
    return out


def _fam_unmerge(m: torch.Tensor, b: torch.Tensor, lay: _RegLayout, moments: bool
                 ) -> torch.Tensor:
    """The block ``a`` with ``_fam_merge(a, b) == m`` (up to rounding): the rows of ``b``
    taken back out of ``m``. The largest error stays (``b``'s rows repeat rows that are
    counted elsewhere, so the merged maximum is the same)."""
    sm, sb = m[..., :_REG_FIELDS], b[..., :_REG_FIELDS]
    wm, wb = sm[..., 1], sb[..., 1]
    wa = wm - wb
    keep = (wa > 0).unsqueeze(-1)
    has_b = (wb > 0).unsqueeze(-1)
    wad = torch.where(wa > 0, wa, 1.0).unsqueeze(-1)
    means = (sm[..., 2:5] * wm.unsqueeze(-1) - sb[..., 2:5] * wb.unsqueeze(-1)) / wad
    d = sb[..., 2:5] - means
    f = (wa * wb / torch.where(wm > 0, wm, 1.0)).unsqueeze(-1)
    m2 = sm[..., 5:8] - sb[..., 5:8] - d * d * f
    cyp = sm[..., 8:9] - sb[..., 8:9] - d[..., 0:1] * d[..., 1:2] * f
    sa = torch.cat([sm[..., 0:2] - sb[..., 0:2], means, m2, cyp,
                    sm[..., 9:15] - sb[..., 9:15], sm[..., 15:16]], dim=-1)
    sa = torch.where(keep, sa, torch.zeros_like(sa))
    sa = torch.where(has_b, sa, sm)
    out = m - b
    out[..., :_REG_FIELDS] = sa
    power = lay.null_power()
    if power is not None:
        null = m[..., _NULL] - b[..., _NULL] - _null_shift(sa, sm, power) - \
            _null_shift(sb, sm, power)
        out[..., _NULL] = torch.where(has_b[..., 0], null.clamp(min=0), m[..., _NULL])
    if moments:
        # b's moment fields about m's means, taken out, then moved to a's means.
        at = lay.at_moments
        mean_m = _mean_q(sm)
        rest = m[..., at:] - _rebase(b[..., at:], _mean_q(sb), mean_m)
        out[..., at:] = torch.where(has_b, _rebase(rest, mean_m, _mean_q(sa)), m[..., at:])
    return out


class _Feature:
    """One slice feature on the device: its codes (0 = null) and the value behind each."""

    def __init__(self, feature: str | Bins, categories: Mapping[str, Any]):
        self.feature = feature
        if isinstance(feature, Bins):
            self.column = feature.column
            assert feature.edges is not None
            self.edges = [float(e) for e in feature.edges]
            self._edges = {}
            m = len(self.edges)
            self.n_codes = m + 2
            # Bin j < m - 1 holds e_j; m - 1 is below range, m above, m + 1 null (NaN).
            self.values: list[Any] = [*self.edges[:-1], -math.inf, math.inf, math.nan]
            self.arrow_type: pa.DataType = pa.float64()
            return
        self.column = feature
        self.edges = []
        self._edges: dict[torch.device, torch.Tensor] = {}
        if feature not in categories:
            raise InvalidArgumentError(
                f"Evaluator: slice feature {feature!r} needs its categories: pass "
                f"categories={{{feature!r}: [...]}} (the values its integer codes stand for) "
                f"or categories={{{feature!r}: K}} (codes 0..K-1 are the values)",
                feature,
            )
        vocab = categories[feature]
        if isinstance(vocab, (int, np.integer)) and not isinstance(vocab, bool):
            if not 1 <= int(vocab) <= MAX_DENSE_IDS:
                raise InvalidArgumentError(
                    f"Evaluator: categories[{feature!r}] must be in [1, {MAX_DENSE_IDS}], "
                    f"got {vocab}", feature)
            values: list[Any] = list(range(int(vocab)))
            self.arrow_type = pa.int64()
        elif isinstance(vocab, Sequence) and not isinstance(vocab, (str, bytes)):
            values = list(vocab)
            kinds = {type(v) for v in values}
            if not values or len(values) > MAX_DENSE_IDS:
                raise InvalidArgumentError(
                    f"Evaluator: categories[{feature!r}] must hold 1 to {MAX_DENSE_IDS} "
                    f"values", feature)
            if kinds <= {str}:
                self.arrow_type = pa.string()
            elif kinds <= {bool}:
                self.arrow_type = pa.bool_()
            elif all(isinstance(v, (int, np.integer)) and not isinstance(v, bool)
                     for v in values):
                values = [int(v) for v in values]
                self.arrow_type = pa.int64()
            else:
                raise InvalidArgumentError(
                    f"Evaluator: categories[{feature!r}] must be all strings, all integers "
                    f"or all booleans", feature)
            if len(set(values)) != len(values):
                raise InvalidArgumentError(
                    f"Evaluator: categories[{feature!r}] repeats a value", feature)
        else:
            raise InvalidArgumentError(
                f"Evaluator: categories[{feature!r}] must be a list of values or a count",
                feature)
        self.n_codes = len(values) + 1
        self.values = [None, *values]

    def check(self, x: torch.Tensor) -> None:
        """Refuses a tensor of the wrong kind (from metadata alone, before any state moves)."""
        if self.edges:
            if x.is_complex() or x.dtype == torch.bool:
                raise InvalidInputError(
                    f"feature {self.column!r}: a binned feature must be numeric, got {x.dtype}",
                    self.column)
            return
        if x.dtype == torch.bool:
            if self.arrow_type != pa.bool_():
                raise InvalidInputError(
                    f"feature {self.column!r}: a bool tensor needs boolean categories "
                    "(categories={...: [False, True]})", self.column)
        elif x.is_floating_point() or x.is_complex():
            raise InvalidInputError(
                f"feature {self.column!r}: codes must be an integer tensor, got {x.dtype}",
                self.column)

    def codes(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(codes, bad): the device codes of ``x`` and where ``x`` is not a valid code."""
        if self.edges:
            v = x.to(torch.float64)
            e = self._edges.get(v.device)
            if e is None:  # once per device: a host copy per batch would synchronize
                e = self._edges[v.device] = torch.tensor(self.edges, dtype=torch.float64,
                                                         device=v.device)
            m = len(self.edges)
            k = torch.searchsorted(e, v, right=True)
            code = torch.where(k == 0, m - 1, k - 1)
            code = torch.where(k == m, torch.where(v == e[-1], m - 2, m), code)
            code = torch.where(torch.isnan(v), m + 1, code)
            return code, torch.zeros_like(code, dtype=torch.bool)
        if x.dtype == torch.bool:
            # Booleans by value: code of True / False is their place in the categories.
            where = {v: i for i, v in enumerate(self.values[1:])}
            t, f = where.get(True), where.get(False)
            bad = torch.zeros_like(x)
            if t is None:
                bad = bad | x
            if f is None:
                bad = bad | ~x
            c = torch.where(x, -1 if t is None else t, -1 if f is None else f)
            return c + 1, bad
        c = x.to(torch.int64)
        bad = (c < -1) | (c >= self.n_codes - 1)
        return torch.where(bad, 0, c + 1), bad


# Kinds of bad input counted on the device (raised at sync / compute / partial).
(_BAD_SCORE, _BAD_LABEL, _BAD_PROB, _BAD_WEIGHT, _BAD_LOG, _BAD_BOUNDS, _BAD_ORDER, _BAD_POISSON,
 _BAD_GAMMA, _BAD_TWEEDIE) = range(10)
_N_KINDS = 10  # then one kind per slice feature (codes outside its categories)
_LOWER, _UPPER = "\0lower", "\0upper"  # the prediction interval's bounds among the columns


class Evaluator:
    """Sliced metrics of an :class:`assay.Spec` on torch tensors, on their device.

    Parameters
    ----------
    spec : assay.Spec
        A binary-classification spec (one score) or a ``task="regression"`` one (feed it
        ``prediction=``). Its bins need edges
        (``assay.bins("age", edges=[...])`` or ``spec.resolve(sample)``). With ``bootstrap``,
        give ``row_id`` (required under ``torch.distributed``: positions are per rank).
    device : str or torch.device, optional
        Where the blocks live (default: the first batch's device, else ``"cpu"``).
    categories : dict, optional
        For every categorical slice feature: the values its integer codes stand for (a list of
        strings, integers or booleans; code ``i`` is ``values[i]``, ``-1`` is null), or a count
        ``K`` (the codes 0..K-1 are the values themselves).
    logits : bool
        Scores are logits (the probability is their sigmoid).
    row_offset : int
        The global position of this evaluator's first row (replicate weights follow positions
        when the spec has ``bootstrap`` and no ``row_id``).

    Examples
    --------
    >>> import torch, assay, assay.torch as at
    >>> spec = assay.Spec(label="y", score="p", slices=["g"], metrics=["accuracy", "roc_auc"])
    >>> ev = at.Evaluator(spec, categories={"g": ["a", "b"]})
    >>> ev.update(score=torch.tensor([0.9, 0.2, 0.7, 0.4]), label=torch.tensor([1, 0, 0, 1]),
    ...           features={"g": torch.tensor([0, 0, 1, 1])})
    >>> ev.compute().table.select("slice", "n", "accuracy").rows()
    [('overall', 4, 0.5), ('g=a', 2, 1.0), ('g=b', 2, 0.0)]
    """

    def __init__(self, spec: Spec, *, device: str | torch.device | None = None,
                 categories: Mapping[str, Any] | None = None, logits: bool = False,
                 row_offset: int = 0):
        if not isinstance(spec, Spec):
            raise InvalidArgumentError(f"Evaluator: spec must be an assay.Spec, got "
                                       f"{type(spec).__name__}")
        job = spec._job
        pending = job.unresolved()
        if pending:
            raise InvalidArgumentError(
                f"Evaluator: the bins of column {pending[0].column!r} are fitted to the data; "
                "give assay.bins(..., edges=[...]) or spec = spec.resolve(sample)",
                pending[0].column)
        if job.task in ("multiclass", "ranking"):
            raise InvalidArgumentError(
                f"Evaluator: task={job.task!r} is not on the torch path yet; accumulate such a "
                "job with spec.accumulate(table) (a table from the tensors) instead")
        self.spec = spec
        self._native_job = job.native(None, None)
        reason, layout = _native.device_layout(self._native_job)
        if reason is not None:
            raise InvalidArgumentError(
                f"Evaluator: {reason} is not on the torch path yet; accumulate such a job "
                "with spec.accumulate(table) (a table from the tensors) instead")
        floats = {k: v for k, v in layout if k in ("power", "logit_range")}
        self._layout = {k: int(v) for k, v in layout if k not in floats and k != "quantile"}
        self._logit_range = float(floats["logit_range"])
        self._regression = bool(self._layout["regression"])
        self._reg = _RegLayout(self._layout, float(floats["power"]),
                               [float(v) for k, v in layout if k == "quantile"])
        if self._regression and logits:
            raise InvalidArgumentError("Evaluator: logits=True is for binary scores")
        self._logits = bool(logits)
        self._row_offset = int(row_offset)
        self._device = None if device is None else torch.device(device)
        cats = dict(categories or {})
        self._features: list[_Feature] = []
        self._specs: list[tuple[list[int], list[int], int]] = []  # (feature idx, strides, ids)
        index: dict[Any, int] = {}
        for feats, _only in job.slices:
            idx = []
            for f in feats:
                key = f if isinstance(f, str) else (f.column, tuple(f.edges or ()))
                if key not in index:
                    index[key] = len(self._features)
                    self._features.append(_Feature(f, cats))
                idx.append(index[key])
            strides, size = [], 1
            for i in reversed(idx):
                strides.append(size)
                size *= self._features[i].n_codes
            if size > MAX_DENSE_IDS:
                raise InvalidArgumentError(
                    f"Evaluator: the slice spec {[self._features[i].column for i in idx]} has "
                    f"{size} possible slices on the device (more than {MAX_DENSE_IDS})")
            self._specs.append((idx, list(reversed(strides)), size))
        extra = set(cats) - {f.column for f in self._features if not f.edges}
        if extra:
            raise InvalidArgumentError(
                f"Evaluator: categories given for {sorted(extra)!r}, which no slice uses")
        lay = self._layout
        self._resampler = None
        if job.interval is not None and lay["replicates"] > 0:
            self._resampler = _Resampler(job.interval[3], lay["replicates"], lay["slots"]
                                         or lay["replicates"])
        self._row_id = None if job.interval is None else job.interval[4]
        # Models in the engine's order (a comparison's reference first) and their columns.
        self._models: list[tuple[str, str]] = [("", job.score)] if job.compare is None else \
            [(job.compare[0], job.score), *job.compare[1]]
        self._weighted = job.weight is not None
        self._rows = 0
        self._synced = False
        self._blocks: list[dict[str, torch.Tensor]] | None = None
        self._kept: list[torch.Tensor] = []
        # Whether the kept rows' weight column holds counts (compacted by sync()).
        self._counted = False
        # With row ids: this rank's first row ids and last rows (inputs), for sync() to count
        # once the rows DistributedSampler repeats to pad the last batch.
        self._first_ids: torch.Tensor | None = None
        self._tail: dict[str, torch.Tensor] | None = None

    # ---- the device state ------------------------------------------------------------------

    def _alloc(self, device: torch.device) -> None:
        lay, f64 = self._layout, torch.float64
        slots = lay["slots"]
        self._device = device
        self._blocks = []
        sizes = [1] + [s for _, _, s in self._specs]
        for size in sizes * len(self._models):
            b = {
                "n": torch.zeros(size, dtype=torch.int64, device=device),
                "counts": torch.zeros(size, 7, dtype=f64, device=device),
                "moments": torch.zeros(size, 10 * lay["moments"] * (1 - lay["regression"]),
                                       dtype=f64, device=device),
                "hist": torch.zeros(size, 2 * lay["hist_bins"], dtype=f64, device=device),
                "reps": torch.zeros(size, 6 * slots * lay["additive_reps"], dtype=f64,
                                    device=device),
                "calib": torch.zeros(size, 5 * lay["calib_bins"], dtype=f64, device=device),
                "calib_reps": torch.zeros(size, 4 * lay["calib_bins"] * slots
                                          * lay["calib_reps"], dtype=f64, device=device),
                # Regression: the Chan-merged block, and per replicate slot its fields
                # (`[slice][slot][field]` here; field-major in the engine's layout).
                "fam": torch.zeros(size, lay["fam_block"], dtype=f64, device=device),
                "fam_reps": torch.zeros(size, slots * lay["regression"], lay["fam_fields"],
                                        dtype=f64, device=device),
                # smooth_ece's grid (two fields per node) and the calibration slope's logit
                # cells (six moments each).
                "grid": torch.zeros(size, (lay["grid_cells"] + 1) * 2 * lay["grid"],
                                    dtype=f64, device=device),
                "logit": torch.zeros(size, lay["logit_cells"] * 6 * lay["logit"], dtype=f64,
                                     device=device),
                # The overall slice's probability histogram (quantile bins): rows,
                # positives, score sums per bucket.
                "prob_hist": torch.zeros(
                    size, 3 * lay["prob_buckets"] * lay["prob_counts"]
                    * (len(self._blocks) % len(sizes) == 0), dtype=f64, device=device),
            }
            self._blocks.append(b)
        self._bad = torch.zeros(_N_KINDS + len(self._features), dtype=torch.int64,
                                device=device)
        self._first_bad = torch.full_like(self._bad, torch.iinfo(torch.int64).max)
        self._dropped = torch.zeros((), dtype=torch.int64, device=device)

    def _flag(self, kind: int, mask: torch.Tensor, pos: torch.Tensor) -> None:
        self._bad[kind] += mask.sum()
        big = torch.iinfo(torch.int64).max
        first = torch.where(mask, pos, big).min() if mask.numel() else self._first_bad[kind]
        self._first_bad[kind] = torch.minimum(self._first_bad[kind], first)

    def update(self, *, label: torch.Tensor, score: torch.Tensor | None = None,
               prediction: torch.Tensor | None = None,
               features: Mapping[str, torch.Tensor] | None = None,
               weight: torch.Tensor | None = None, row_id: torch.Tensor | None = None,
               lower: torch.Tensor | None = None, upper: torch.Tensor | None = None
               ) -> None:
        """Adds one batch: ``score`` (binary: probabilities, or logits with ``logits=True``)
        or ``prediction`` (``task="regression"``), ``label`` (binary: 0/1, bool or integer;
        regression: numbers), one tensor per slice feature, the weights when the spec has
        ``weight``, the row ids when it has ``row_id``, the prediction interval's ``lower``
        and ``upper`` bounds when it has them. All of one length, on one device.
        Nothing is copied to the host: bad values are counted on the device and raised by the
        next ``sync()``, ``compute()`` or ``partial()``."""
        if self._synced:
            raise InvalidArgumentError(
                "Evaluator.update: this evaluator was synced; its state is the merged state "
                "of every rank (create a new Evaluator for more rows)")
        if self._regression:
            if prediction is None and score is not None and len(self._models) > 1:
                prediction, score = score, None  # a regression comparison: score={name: ...}
            if score is not None or prediction is None:
                raise InvalidInputError(
                    "Evaluator.update: a regression spec takes prediction=, not score=",
                    self.spec.prediction)
            score = prediction
        elif prediction is not None or score is None:
            raise InvalidInputError(
                "Evaluator.update: a binary spec takes score=, not prediction=", self.spec.score)
        models: list[torch.Tensor] = []
        if len(self._models) > 1:
            names = [name for name, _ in self._models]
            if not isinstance(score, Mapping) or sorted(score) != sorted(names):
                arg = "prediction" if self._regression else "score"
                raise InvalidInputError(
                    f"Evaluator.update: a comparison spec takes {arg}={{name: tensor}} for "
                    f"the models {names}")
            models = [score[name] for name in names]
            score = models[0]
        if not isinstance(score, torch.Tensor) or not isinstance(label, torch.Tensor):
            raise InvalidInputError("Evaluator.update: score and label must be tensors")
        n = score.shape[0] if score.dim() == 1 else -1
        if n < 0:
            raise InvalidInputError(
                f"Evaluator.update: score must be one-dimensional, got shape "
                f"{tuple(score.shape)}", self.spec.score)
        features = dict(features or {})

        def same(t: Any, what: str) -> torch.Tensor:
            if not isinstance(t, torch.Tensor):
                raise InvalidInputError(f"Evaluator.update: {what} must be a tensor", what)
            if t.dim() != 1 or t.shape[0] != n:
                raise InvalidInputError(
                    f"Evaluator.update: {what} has shape {tuple(t.shape)}; the score has "
                    f"{n} rows", what)
            if t.device != score.device:
                raise InvalidInputError(
                    f"Evaluator.update: {what} is on {t.device}, the score on {score.device}",
                    what)
            return t

        label = same(label, self.spec.label)
        missing = [f.column for f in self._features if f.column not in features]
        if missing:
            raise InvalidInputError(
                f"Evaluator.update: features lacks the slice column {missing[0]!r}",
                missing[0])
        if self._weighted and weight is None:
            raise InvalidInputError(
                f"Evaluator.update: the spec has weight={self.spec.weight!r}; pass weight=",
                self.spec.weight)
        if not self._weighted and weight is not None:
            raise InvalidInputError("Evaluator.update: the spec has no weight; drop weight=")
        if self._row_id is not None and row_id is None:
            raise InvalidInputError(
                f"Evaluator.update: the spec has row_id={self._row_id!r}; pass row_id=",
                self._row_id)
        has_bounds = self.spec.lower is not None
        if has_bounds != (lower is not None) or has_bounds != (upper is not None):
            raise InvalidInputError(
                "Evaluator.update: pass lower= and upper= exactly when the spec has them "
                f"(lower={self.spec.lower!r}, upper={self.spec.upper!r})")
        if self._row_id is None and row_id is not None:
            raise InvalidInputError(
                "Evaluator.update: the spec has no row_id; drop row_id= (or give the spec "
                "row_id=\"...\": replicate weights follow it)")
        if row_id is not None and (row_id.is_floating_point() or row_id.dtype == torch.bool):
            raise InvalidInputError("Evaluator.update: row_id must be an integer tensor",
                                    self._row_id)
        for f in self._features:
            if isinstance(features[f.column], torch.Tensor):
                f.check(features[f.column])
        if self._blocks is None:
            self._alloc(self._device or score.device)
        elif score.device != self._device:
            raise InvalidInputError(
                f"Evaluator.update: the batch is on {score.device}, the evaluator on "
                f"{self._device}")
        if n == 0:
            return
        if models:
            score = torch.stack([same(t, col) for t, (_, col) in
                                 zip(models, self._models, strict=True)], dim=1)
        else:
            score = score.unsqueeze(1)
        cols = {f.column: same(features[f.column], f.column) for f in self._features}
        if lower is not None and upper is not None:
            cols[_LOWER] = same(lower, self.spec.lower or "lower")
            cols[_UPPER] = same(upper, self.spec.upper or "upper")
        w = None if weight is None else same(weight, self.spec.weight or "weight")
        rid = None if row_id is None else same(row_id, self._row_id or "row_id")
        if rid is not None:
            self._remember(score, label, cols, w, rid)
        step = n if self._resampler is None else max(1, DRAW_CELLS // self._resampler.slots)
        for lo in range(0, n, step):
            hi = min(n, lo + step)
            self._update(score[lo:hi], label[lo:hi], {c: t[lo:hi] for c, t in cols.items()},
                         None if w is None else w[lo:hi], None if rid is None else rid[lo:hi])

    def _remember(self, score: torch.Tensor, label: torch.Tensor,
                  cols: dict[str, torch.Tensor], w: torch.Tensor | None,
                  rid: torch.Tensor) -> None:
        """Keeps the first ``PAD_ROWS`` row ids and the last ``PAD_ROWS`` rows (device
        tensors; sizes are known on the host, so nothing synchronizes)."""
        ids = rid.to(torch.int64)
        have = 0 if self._first_ids is None else self._first_ids.shape[0]
        if have < PAD_ROWS:
            head = ids[:PAD_ROWS - have]
            self._first_ids = head.clone() if self._first_ids is None else \
                torch.cat([self._first_ids, head])
        batch = {"score": score, "label": label, "row_id": ids,
                 **{"f:" + c: t for c, t in cols.items()}}
        if w is not None:
            batch["weight"] = w
        if self._tail is None:
            self._tail = {k: v[-PAD_ROWS:].clone() for k, v in batch.items()}
        else:
            self._tail = {k: torch.cat([self._tail[k], v[-PAD_ROWS:]])[-PAD_ROWS:]
                          for k, v in batch.items()}

    def _drop_padding(self, dist: Any) -> None:
        """Subtracts the rows of this rank's tail whose row id is among the first row ids of
        a lower rank: the samples ``DistributedSampler`` repeats to pad its last batch (the
        original is some rank's first sample, the copy a higher rank's last one)."""
        world, me = dist.get_world_size(), dist.get_rank()
        dev = self._device
        mine = torch.full((PAD_ROWS + 1,), 0, dtype=torch.int64, device=dev)
        if self._first_ids is not None:
            mine[0] = self._first_ids.shape[0]
            mine[1:1 + self._first_ids.shape[0]] = self._first_ids
        got = [torch.empty_like(mine) for _ in range(world)]
        dist.all_gather(got, mine)
        if self._tail is None or me == 0:
            return
        lower = torch.cat([g[1:1 + int(g[0].item())] for g in got[:me]])
        tail = self._tail
        dup = torch.isin(tail["row_id"], lower)
        k = int(dup.sum().item())
        if k == 0:
            return
        # The duplicates' contributions, added to zero blocks and subtracted.
        saved = (self._blocks, self._rows, self._bad, self._first_bad, self._dropped,
                 self._kept)
        self._kept = []
        self._alloc(dev)
        sel = {key: v[dup] for key, v in tail.items()}
        self._update(sel["score"], sel["label"],
                     {key[2:]: v for key, v in sel.items() if key.startswith("f:")},
                     sel.get("weight"), sel["row_id"])
        extra, extra_dropped = self._blocks, self._dropped
        (self._blocks, self._rows, self._bad, self._first_bad, self._dropped,
         self._kept) = saved
        assert self._blocks is not None and extra is not None
        moments = bool(self._layout["moments"])
        for b, e in zip(self._blocks, extra, strict=True):
            for key in b:
                if key in _CHAN_KEYS:
                    if self._regression:
                        b[key] = _fam_unmerge(b[key], e[key], self._reg,
                                              moments and key == "fam")
                else:
                    b[key] -= e[key]
        self._rows -= k
        self._dropped -= extra_dropped
        if self._kept:
            # The tail's rows are the last kept rows: mark the duplicates as not counted.
            rows = torch.cat(self._kept)
            n_tail = tail["row_id"].shape[0]
            flags = rows[-n_tail:, 2]
            rows[-n_tail:, 2] = torch.where(dup, 0.0, flags)
            self._kept = [rows]

    def _weights(self, weight: torch.Tensor | None, ok: torch.Tensor,
                 pos: torch.Tensor) -> torch.Tensor:
        """Each row's weight as accumulated: 0 for rows that do not count, bad weights
        flagged (the torch path takes weights in [2^-32, 2^33): no rescaling)."""
        if weight is None:
            return ok.to(torch.float64)
        w = weight.to(torch.float64)
        bad = ~(torch.isfinite(w) & (w > 0) & (w >= 2.0**-32) & (w < 2.0**33))
        self._flag(_BAD_WEIGHT, bad & ok, pos)
        return torch.where(ok & ~bad, w, 0.0)

    def _slice_ids(self, cols: dict[str, torch.Tensor], ok: torch.Tensor,
                   pos: torch.Tensor) -> list[torch.Tensor]:
        """Each spec's dense id of every row (the overall slice's: 0), flagging bad codes."""
        n, dev = ok.shape[0], ok.device
        codes = []
        for j, f in enumerate(self._features):
            c, bad = f.codes(cols[f.column])
            self._flag(_N_KINDS + j, bad & ok, pos)
            codes.append(c)
        ids = [torch.zeros(n, dtype=torch.int64, device=dev)]
        for idx, strides, _size in self._specs:
            d = torch.zeros(n, dtype=torch.int64, device=dev)
            for i, st in zip(idx, strides, strict=True):
                d += codes[i] * st
            ids.append(d)
        return ids

    def _update_regression(self, preds: torch.Tensor, label: torch.Tensor,
                           cols: dict[str, torch.Tensor], weight: torch.Tensor | None,
                           row_id: torch.Tensor | None, pos: torch.Tensor) -> None:
        """One piece of a regression batch; ``preds`` is ``[rows, models]`` (a comparison's
        models, the reference first)."""
        assert self._blocks is not None
        lay, reg, f64 = self._layout, self._reg, torch.float64
        y, p = label.to(f64), preds.to(f64)
        bad_y = ~torch.isfinite(y)
        # A row missing any model's prediction is dropped for all: comparisons are paired.
        bad_p = ~torch.isfinite(p).all(dim=1)
        ok = ~(bad_y | bad_p)
        lo = hi = None
        if reg.interval:
            lo, hi = cols[_LOWER].to(f64), cols[_UPPER].to(f64)
            bad_b = ~(torch.isfinite(lo) & torch.isfinite(hi))
        drop = self.spec.nan_policy == "drop"
        if drop:
            if lo is not None:
                ok &= ~bad_b
            self._dropped += (~ok).sum()
        else:
            self._flag(_BAD_LABEL, bad_y, pos)
            self._flag(_BAD_SCORE, bad_p & ~bad_y, pos)
            if lo is not None:
                self._flag(_BAD_BOUNDS, bad_b & ~(bad_y | bad_p), pos)
                ok &= ~bad_b
        # Rows that do not count take values inside every domain: their weight is 0, and
        # 0 x a finite number adds nothing.
        y, p = torch.where(ok, y, 1.0), torch.where(ok.unsqueeze(1), p, 1.0)
        if reg.log:
            self._flag(_BAD_LOG, ok & ((y < 0) | (p < 0).any(dim=1)), pos)
        for kind, on, power in ((_BAD_POISSON, reg.devs[0], 1.0),
                                (_BAD_GAMMA, reg.devs[1], 2.0),
                                (_BAD_TWEEDIE, reg.devs[2], reg.power)):
            if on:
                bad = (p <= 0).any(dim=1) if power != 0 else torch.zeros_like(ok)
                if power >= 2:
                    bad = bad | (y <= 0)
                elif power >= 1:
                    bad = bad | (y < 0)
                self._flag(kind, ok & bad, pos)
        if lo is not None and hi is not None:
            self._flag(_BAD_ORDER, ok & (lo > hi), pos)
            lo, hi = torch.where(ok, lo, 0.0), torch.where(ok, hi, 0.0)
        w = self._weights(weight, ok, pos)
        okn = ok.to(torch.int64)
        ids = self._slice_ids(cols, ok, pos)
        kw = None
        if self._resampler is not None and lay["slots"] > 0:
            rid = row_id.to(torch.int64) if row_id is not None else pos
            kw = self._resampler.weights(self._resampler.row_keys(rid), w)
        per_model = len(self._specs) + 1
        for m in range(p.shape[1]):
            pm = p[:, m].contiguous()
            # (Only the first model has a prediction interval: EvalSpec::validate.)
            bounds = (lo, hi) if m == 0 and lo is not None and hi is not None else None
            extras = self._reg_extras(y, pm, ok, bounds)
            blocks = self._blocks[m * per_model:(m + 1) * per_model]
            for k, b in enumerate(blocks):
                d = ids[k]
                size = b["n"].shape[0]
                b["n"].index_add_(0, d, okn)
                b["counts"][:, 0].index_add_(0, d, w)
                batch = _reg_state(y, pm, w.unsqueeze(1), okn.to(f64), d, size, reg,
                                   extras)[:, 0]
                part = torch.zeros_like(b["fam"])
                part[:, :reg.at_moments] = batch
                if reg.moments:
                    part[:, reg.at_moments:] = _reg_moments(y, pm, w, d, size, batch, reg.log)
                b["fam"] = _fam_merge(b["fam"], part, reg, reg.moments)
                if kw is not None:
                    slot = _reg_state(y, pm, kw, None, d, size, reg, extras)
                    b["fam_reps"] = _fam_merge(b["fam_reps"], slot, reg, False)
        if lay["keep_rows"]:
            # The absolute errors, for the exact medians (label 0, as the engine keeps them).
            zero = torch.zeros_like(y)
            kept = [zero, w, ok.to(f64), zero, zero, *(i.to(f64) for i in ids[1:])]
            self._kept.append(torch.cat([torch.stack(kept, dim=1),
                                         (p - y.unsqueeze(1)).abs()], dim=1))

    def _reg_extras(self, y: torch.Tensor, p: torch.Tensor, ok: torch.Tensor,
                    bounds: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor | None:
        """Each row's deviances, interval coverage and width, and pinball losses (the null
        deviance's column is filled per slice), 0 for rows that do not count; None when the
        job sums none of them."""
        reg, f64 = self._reg, torch.float64
        if not (any(reg.devs) or reg.interval or reg.quantiles):
            return None
        ex = [_tweedie(y, p, power) if on else torch.zeros_like(y)
              for on, power in zip(reg.devs, (1.0, 2.0, reg.power), strict=True)]
        ex.append(torch.zeros_like(y))  # the null deviance: per slice, in _reg_state
        if reg.interval:
            if bounds is not None:
                lo, hi = bounds
                ex += [((lo <= y) & (y <= hi)).to(f64), hi - lo]
            else:
                ex += [torch.zeros_like(y), torch.zeros_like(y)]
        under = y - p
        ex += [torch.maximum(q * under, (q - 1.0) * under) for q in reg.quantiles]
        extras = torch.stack(ex, dim=1)
        assert extras.shape[1] == reg.at_moments - _REG_FIELDS
        # (Rows that will be raised may hold NaN; rows that do not count hold 0.)
        return torch.where(ok.unsqueeze(1), extras, 0.0)

    def _add_grids(self, s: torch.Tensor, y: torch.Tensor, w: torch.Tensor,
                   ids: list[torch.Tensor], blocks: list[dict[str, torch.Tensor]]) -> None:
        """smooth_ece's grid (``reliability::add_grid``) and the calibration slope's logit
        cells (``reliability::add_logit``) of every slice."""
        assert self._blocks is not None
        lay = self._layout
        grid_at = grid_vals = logit_at = logit_vals = None
        if lay["grid"]:
            cells = lay["grid_cells"]
            x = s * cells
            i = torch.clamp((s * cells).to(torch.int64), 0, cells - 1)  # (bad s: raised)
            f = x - i
            r = w * (y - s)
            grid_at = torch.stack([i * 2, i * 2 + 1, i * 2 + 2, i * 2 + 3], dim=1)
            grid_vals = torch.stack([w * (1 - f), r * (1 - f), w * f, r * f], dim=1)
        if lay["logit"]:
            cells, rng = lay["logit_cells"], self._logit_range
            h = 2.0 * rng / cells
            p = s.clamp(_EPS, 1.0 - _EPS)
            x = torch.log(p / (1.0 - p))
            i = torch.clamp(((x + rng) * (1.0 / h)).floor(), 0, cells - 1).to(torch.int64)
            d = x - (-rng + (i.to(torch.float64) + 0.5) * h)
            wd = w * d
            logit_at = i.unsqueeze(1) * 6 + torch.arange(6, device=s.device)
            logit_vals = torch.stack([w, wd, wd * d, wd * d * d, w * y, wd * y], dim=1)
        for k, b in enumerate(blocks):
            d = ids[k].unsqueeze(1)
            if grid_at is not None and grid_vals is not None:
                g = b["grid"]
                g.view(-1).index_add_(0, (d * g.shape[1] + grid_at).reshape(-1),
                                      grid_vals.reshape(-1))
            if logit_at is not None and logit_vals is not None:
                lg = b["logit"]
                lg.view(-1).index_add_(0, (d * lg.shape[1] + logit_at).reshape(-1),
                                       logit_vals.reshape(-1))

    def _update(self, score: torch.Tensor, label: torch.Tensor,
                cols: dict[str, torch.Tensor], weight: torch.Tensor | None,
                row_id: torch.Tensor | None) -> None:
        """One piece of a batch; ``score`` is ``[rows, models]`` (a comparison's models in
        the engine's order: the reference first)."""
        assert self._blocks is not None
        lay, f64 = self._layout, torch.float64
        n, dev = score.shape[0], score.device
        pos = torch.arange(n, device=dev, dtype=torch.int64) + (self._row_offset + self._rows)
        self._rows += n
        if self._regression:
            self._update_regression(score, label, cols, weight, row_id, pos)
            return
        scores = score.to(f64)
        if self._logits:
            scores = torch.sigmoid(scores)
        # A row missing any model's score is dropped for all of them: comparisons are paired.
        bad_score = ~torch.isfinite(scores).all(dim=1)
        if label.dtype == torch.bool:
            y = label.to(f64)
            bad_label = torch.zeros_like(bad_score)
        else:
            yf = label.to(f64)
            bad_label = (yf != 0) & (yf != 1)
            y = torch.where(bad_label, 0.0, yf)  # NaN labels too: no NaN reaches a sum
        ok = ~bad_score
        if self.spec.nan_policy == "drop":
            nan_label = torch.isnan(label.to(f64)) if label.is_floating_point() else None
            if nan_label is not None:
                ok &= ~nan_label
                bad_label &= ~nan_label
            self._dropped += (~ok).sum()
        else:
            self._flag(_BAD_SCORE, bad_score, pos)
        self._flag(_BAD_LABEL, bad_label & ok, pos)
        scores = torch.where(ok.unsqueeze(1), scores, 0.5)
        if lay["need_probability"]:
            self._flag(_BAD_PROB, ok & ((scores < 0) | (scores > 1)).any(dim=1), pos)
        w = self._weights(weight, ok, pos)
        okn = ok.to(torch.int64)
        ids = self._slice_ids(cols, ok, pos)
        kw = None
        keys = None
        if self._resampler is not None:
            keys = self._resampler.row_keys(row_id.to(torch.int64) if row_id is not None
                                            else pos)
            if lay["slots"] > 0:
                kw = self._resampler.weights(keys, w)
        per_model = len(self._specs) + 1
        for m in range(scores.shape[1]):
            self._add_model(scores[:, m].contiguous(), y, w, ok, okn, ids, kw,
                            self._blocks[m * per_model:(m + 1) * per_model])
        if lay["keep_rows"]:
            # One float64 matrix (it travels in one all_gather): label, weight, counted, the
            # 63-bit resampling key as two exact halves, the dense ids (exact below 2^53),
            # then each model's score.
            kept = [y, w, ok.to(f64)]
            if keys is not None:
                kept.extend([(keys >> 32).to(f64), (keys & _M32).to(f64)])
            else:
                kept.extend([torch.zeros_like(y), torch.zeros_like(y)])
            kept.extend(i.to(f64) for i in ids[1:])
            self._kept.append(torch.cat([torch.stack(kept, dim=1), scores], dim=1))

    def _add_model(self, s: torch.Tensor, y: torch.Tensor, w: torch.Tensor, ok: torch.Tensor,
                   okn: torch.Tensor, ids: list[torch.Tensor], kw: torch.Tensor | None,
                   blocks: list[dict[str, torch.Tensor]]) -> None:
        """One model's scores ``s`` into its blocks (the engine's ``update_piece`` body)."""
        lay, f64, dev = self._layout, torch.float64, s.device
        pred = (s >= self.spec.threshold).to(f64)
        if lay["need_log_loss"]:
            p = s.clamp(2.0**-52, 1.0 - 2.0**-52)
            ll = -torch.log(torch.where(y == 1.0, p, 1.0 - p))
        else:
            ll = torch.zeros_like(s)
        br = (s - y) * (s - y)
        wy, wn = w * y, w * (1.0 - y)
        counts = torch.stack([w, wy * pred, wn * pred, wn * (1.0 - pred), wy * (1.0 - pred),
                              w * ll, w * br], dim=1)
        cell = (y.to(torch.int64) << 1) | pred.to(torch.int64)
        moments = None
        if lay["moments"]:
            onehot = torch.nn.functional.one_hot(cell, 4).to(f64)
            moments = torch.cat([onehot * (w * w).unsqueeze(1),
                                 onehot * (w * w * w).unsqueeze(1),
                                 (w * ll * ll).unsqueeze(1), (w * br * br).unsqueeze(1)], dim=1)
        hb, cb, slots = lay["hist_bins"], lay["calib_bins"], lay["slots"]
        hist_at = None
        if hb:
            hist_bin = torch.clamp((s * hb).to(torch.int64), 0, hb - 1)  # (bad s: raised)
            hist_at = hist_bin * 2 + y.to(torch.int64)
        calib_bin = None
        if cb:
            edges = torch.arange(cb + 1, dtype=f64, device=dev) * (1.0 / cb)
            calib_bin = torch.searchsorted(edges[1:cb], s, right=True)
        for k, b in enumerate(blocks):
            d = ids[k]
            b["n"].index_add_(0, d, okn)
            b["counts"].index_add_(0, d, counts)
            if moments is not None:
                b["moments"].index_add_(0, d, moments)
            if hist_at is not None:
                b["hist"].view(-1).index_add_(0, d * (2 * hb) + hist_at, w)
            if kw is not None and lay["additive_reps"]:
                reps = b["reps"].view(-1, slots)
                reps.index_add_(0, d * 6 + cell, kw)
                if lay["rep_losses"]:
                    reps.index_add_(0, d * 6 + 4, kw * ll.unsqueeze(1))
                    reps.index_add_(0, d * 6 + 5, kw * br.unsqueeze(1))
            if calib_bin is not None:
                at = d * cb + calib_bin
                fields = torch.stack([okn.to(f64), w, w * w, w * s, w * y], dim=1)
                b["calib"].view(-1, 5).index_add_(0, at, fields)
                if kw is not None and lay["calib_reps"]:
                    cr = b["calib_reps"].view(-1, slots)
                    base = at * 4
                    cr.index_add_(0, base, kw)
                    cr.index_add_(0, base + 1, kw * s.unsqueeze(1))
                    cr.index_add_(0, base + 2, kw * y.unsqueeze(1))
                    cr.index_add_(0, base + 3, kw * w.unsqueeze(1))
        if lay["grid"] or lay["logit"]:
            self._add_grids(s, y, w, ids, blocks)
        if lay["prob_counts"]:
            buckets = lay["prob_buckets"]
            at = torch.clamp((s * buckets).to(torch.int64), 0, buckets - 1)
            okf = ok.to(f64)
            hist = blocks[0]["prob_hist"].view(3, buckets)
            hist[0].index_add_(0, at, okf)
            hist[1].index_add_(0, at, okf * y)
            hist[2].index_add_(0, at, okf * s)

    # ---- merging and results ----------------------------------------------------------------

    def _check(self) -> None:
        """Raises the first kind of bad input any row had (counted on the device)."""
        if self._blocks is None:
            return
        bad = self._bad.cpu().tolist()
        first = self._first_bad.cpu().tolist()
        score = self.spec.prediction if self._regression else self.spec.score
        both = f"{self.spec.label}/{score}"
        bounds = f"{self.spec.lower}/{self.spec.upper}"
        names = [score, self.spec.label, score, self.spec.weight, both, bounds, bounds, both,
                 both, both, *(f.column for f in self._features)]
        drop = "; pass nan_policy=\"drop\" to drop such rows"
        power = self.spec.power
        tweedie = ("labels > 0" if power >= 2 else "labels >= 0" if power >= 1 else
                   "any labels") + (" and predictions > 0" if power != 0 else "")
        what = [
            ("prediction" if self._regression else "score") + " is NaN or infinite" + drop,
            "label is NaN or infinite" + drop if self._regression else
            "labels must be 0 or 1 (or booleans)",
            "score outside [0, 1]; log_loss, brier, the calibration metrics and "
            "auc=\"binned\" need probabilities (pass logits=True for logits)",
            "weights must be positive and finite, and in [2^-32, 2^33) on the torch path",
            "msle and rmsle need labels and predictions >= 0",
            "interval bound is NaN or infinite" + drop,
            "the lower bound exceeds the upper bound",
            "poisson_deviance (power 1) needs labels >= 0 and predictions > 0",
            "gamma_deviance (power 2) needs labels > 0 and predictions > 0",
            f"tweedie_deviance / d2_tweedie (power {power}) needs {tweedie}",
            *(("codes must be -1 (null) or index its categories (0 to "
               f"{f.n_codes - 2})") for f in self._features),
        ]
        for k, count in enumerate(bad):
            if count:
                at = (f" (first at row {first[k]}" + (" of this rank)" if first[k] <
                      torch.iinfo(torch.int64).max else ")")) if not self._synced else ""
                raise InvalidInputError(
                    f"{names[k]!r}: {what[k]}: {count} bad row(s){at}", names[k])

    def sync(self) -> Evaluator:
        """Merges the states of every rank of the default ``torch.distributed`` process group
        into each rank (a no-op outside one): every fixed-size block in one ``all_reduce``,
        the kept rows of exact rank metrics in one ``all_gather`` (after one of their sizes).
        Every rank must call it. Afterwards the evaluator holds all ranks' rows and takes no
        more updates. With row ids, the samples ``DistributedSampler`` repeats to pad the
        last batch (a higher rank's last rows repeating a lower rank's first rows) are
        counted once. Bad input on any rank raises on every rank (after the collectives, so
        no rank hangs)."""
        import torch.distributed as dist

        if self._synced or not (dist.is_available() and dist.is_initialized()):
            return self
        if self._resampler is not None and self._row_id is None and dist.get_world_size() > 1:
            raise InvalidArgumentError(
                "Evaluator.sync: bootstrap without row_id: replicate weights follow row "
                "positions, which every rank counts from 0; give the spec row_id= and pass "
                "row_id= to update")
        if self._blocks is None:
            # A rank with no batches still joins the collectives, with zero blocks, on the
            # device its backend reduces on.
            default = torch.device("cuda", torch.cuda.current_device()) \
                if dist.get_backend() == "nccl" else torch.device("cpu")
            self._alloc(self._device or default)
        assert self._blocks is not None
        if self._row_id is not None and dist.get_world_size() > 1:
            self._drop_padding(dist)
        additive = [(b, k) for b in self._blocks for k in b if k not in _CHAN_KEYS]
        parts = [b[k].to(torch.float64).reshape(-1) for b, k in additive]
        meta = torch.stack([torch.tensor(float(self._rows), dtype=torch.float64,
                                         device=self._device),
                            self._dropped.to(torch.float64)])
        flat = torch.cat([*parts, self._bad.to(torch.float64), meta])
        dist.all_reduce(flat)
        at = 0
        for b, key in additive:
            t = b[key]
            n = t.numel()
            b[key] = flat[at:at + n].view(t.shape).to(t.dtype)
            at += n
        if self._regression:
            # Chan-merged blocks do not add up: gather every rank's, merge in rank order.
            chan = [(b, k) for b in self._blocks for k in _CHAN_KEYS]
            mine = torch.cat([b[k].reshape(-1) for b, k in chan])
            ranks = [torch.empty_like(mine) for _ in range(dist.get_world_size())]
            dist.all_gather(ranks, mine)
            moments = bool(self._layout["moments"])
            merged: list[torch.Tensor] | None = None
            for g in ranks:
                pieces, off = [], 0
                for b, k in chan:
                    pieces.append(g[off:off + b[k].numel()].view(b[k].shape))
                    off += b[k].numel()
                merged = pieces if merged is None else [
                    _fam_merge(m, x, self._reg, moments and k == "fam")
                    for m, x, (_, k) in zip(merged, pieces, chan, strict=True)]
            assert merged is not None
            for (b, k), t in zip(chan, merged, strict=True):
                b[k] = t
        nb = self._bad.numel()
        self._bad = flat[at:at + nb].to(torch.int64)
        self._rows = int(flat[at + nb].item())
        self._dropped = flat[at + nb + 1].to(torch.int64)
        if self._layout["keep_rows"]:
            # Compact on the device first (entries of equal label, slices and scores combine,
            # their weights summed, or counted in an unweighted job): tied scores travel as a
            # few runs per slice, not one row per row.
            local = self._kept_rows()
            if self._layout["compact_rows"]:
                local = self._compact(local)
            size = torch.tensor([local.shape[0]], dtype=torch.int64, device=self._device)
            sizes = [torch.zeros_like(size) for _ in range(dist.get_world_size())]
            dist.all_gather(sizes, size)
            top = max(int(x.item()) for x in sizes)
            pad = torch.zeros(top, local.shape[1], dtype=torch.float64, device=self._device)
            pad[:local.shape[0]] = local
            got = [torch.empty_like(pad) for _ in sizes]
            dist.all_gather(got, pad)
            self._kept = [g[:int(x.item())] for g, x in zip(got, sizes, strict=True)]
        self._synced = True
        self._check()
        return self

    def _compact(self, rows: torch.Tensor) -> torch.Tensor:
        """Kept rows (all counted) with equal label, slice ids and scores combined into one,
        its weight the sum of theirs (a count in an unweighted job)."""
        if rows.shape[0] == 0:
            return rows
        key = [0, *range(5, rows.shape[1])]  # label, ids, scores (weight, flag, keys: not)
        unique, inverse = torch.unique(rows[:, key], dim=0, return_inverse=True)
        out = torch.zeros(unique.shape[0], rows.shape[1], dtype=rows.dtype, device=rows.device)
        out[:, key] = unique
        out[:, 1].index_add_(0, inverse, rows[:, 1])
        out[:, 2] = 1.0
        self._counted = not self._weighted
        return out

    def _kept_rows(self) -> torch.Tensor:
        width = 5 + len(self._specs) + len(self._models)
        if not self._kept:
            return torch.zeros(0, width, dtype=torch.float64, device=self._device)
        rows = torch.cat(self._kept)
        return rows[rows[:, 2] > 0]

    def partial(self) -> PartialState:
        """The rows seen so far (all ranks' after :meth:`sync`) as an
        :class:`assay.PartialState`: finalize it, merge it with states from anywhere, or ship
        its bytes."""
        self._check()
        if self._blocks is None:
            self._alloc(self._device or torch.device("cpu"))
        assert self._blocks is not None
        host = [{k: t.detach().cpu().numpy() for k, t in b.items()} for b in self._blocks]
        per_model = len(self._specs) + 1
        # The key table: one row per occupied slice of each spec, holding its values (the
        # models of a comparison count the same rows).
        occupied = [np.flatnonzero(h["n"] > 0) for h in host[1:per_model]]
        starts = np.cumsum([0, *(len(o) for o in occupied)])
        n_keys = max(1, int(starts[-1]))
        columns: dict[str, list[Any]] = {f.column: [None] * n_keys for f in self._features}
        for (idx, strides, _size), occ, start in zip(self._specs, occupied, starts,
                                                     strict=False):
            for i, st in zip(idx, strides, strict=True):
                f = self._features[i]
                codes = (occ // st) % f.n_codes
                col = columns[f.column]
                for r, c in enumerate(codes.tolist()):
                    col[start + r] = f.values[c]
        job = self.spec._job
        table: dict[str, pa.Array] = {job.label: pa.array(np.zeros(n_keys, dtype=np.int64))}
        for _, col in self._models:
            table[col] = pa.array(np.zeros(n_keys))
        if job.weight is not None:
            table[job.weight] = pa.array(np.ones(n_keys))
        if self._row_id is not None:
            table[self._row_id] = pa.array(np.zeros(n_keys, dtype=np.int64))
        for bound in (self.spec.lower, self.spec.upper):
            if bound is not None:
                table[bound] = pa.array(np.zeros(n_keys))
        for f in self._features:
            table[f.column] = pa.array(columns[f.column], type=f.arrow_type)
        keys = pa.Table.from_batches([pa.RecordBatch.from_pydict(table)])
        lookups = []
        for k, occ in enumerate(occupied):
            lookup = np.zeros(host[k + 1]["n"].shape[0], dtype=np.uint32)
            lookup[occ] = (starts[k] + np.arange(len(occ))).astype(np.uint32)
            lookups.append(lookup)
        blocks: list[list[dict[str, bytes]]] = []
        for m in range(len(self._models)):
            model: list[dict[str, bytes]] = []
            for k in range(per_model):
                h = host[m * per_model + k]
                rows = np.zeros(1, dtype=np.int64) if k == 0 else occupied[k - 1]
                key_rows = np.zeros(1, dtype=np.uint32) if k == 0 else lookups[k - 1][rows]
                named = {"key_rows": key_rows.tobytes(),
                         "n": h["n"][rows].astype(np.uint64).tobytes()}
                for name in ("counts", "moments", "hist", "reps", "calib", "calib_reps", "fam",
                             "grid", "logit", "prob_hist"):
                    named[name] = np.ascontiguousarray(h[name][rows],
                                                       dtype=np.float64).tobytes()
                # The engine's replicate blocks are field-major: [slice][field][slot].
                named["fam_reps"] = np.ascontiguousarray(
                    np.swapaxes(h["fam_reps"][rows], 1, 2), dtype=np.float64).tobytes()
                model.append(named)
            blocks.append(model)
        rank = []
        if self._layout["keep_rows"]:
            kept = self._kept_rows().detach().cpu().numpy()
            keys_bits = (kept[:, 3].astype(np.uint64) << np.uint64(32)) | \
                kept[:, 4].astype(np.uint64) if self._layout["row_keys"] else \
                np.zeros(0, dtype=np.uint64)
            ids = [lookups[k][kept[:, 5 + k].astype(np.int64)].tobytes()
                   for k in range(len(self._specs))]
            for m in range(len(self._models)):
                rank.append((
                    np.ascontiguousarray(kept[:, 5 + len(self._specs) + m]).tobytes(),
                    kept[:, 0].astype(np.uint8).tobytes(),
                    np.ascontiguousarray(kept[:, 1]).tobytes()
                    if self._weighted or self._counted else b"",
                    keys_bits.tobytes(), ids, self._counted))
        dropped = int(self._dropped.item())
        state = _native.state_from_blocks(
            keys, self._native_job, self.spec._json, blocks, rank, self._rows, dropped,
            1.0 if self._weighted else None, self._row_offset)
        return PartialState._wrap(state, self.spec)

    def compute(self) -> Report | Comparison:
        """The :class:`assay.Report` of the rows seen so far (all ranks' after
        :meth:`sync`): what :func:`assay.evaluate` gives on the same rows; for a comparison
        spec the :class:`assay.Comparison` of :func:`assay.compare`."""
        return self.partial().finalize()

    @property
    def rows(self) -> int:
        """Rows added so far (all ranks' after :meth:`sync`)."""
        return self._rows

    def __repr__(self) -> str:
        return (f"assay.torch.Evaluator(rows={self._rows}, device={self._device}, "
                f"synced={self._synced})")
