//! Calibration measurement (see `docs/calibration.md` for every definition): per-bin states,
//! the grids behind SmoothECE and the calibration slope, exact quantile bins, and the
//! finalizers of the calibration metrics. Every state here is a vector of sums, merged by
//! elementwise addition like the rest of `state`.

use rayon::prelude::*;

use crate::error::{AssayError, Result};
use crate::fastmath::sigmoid;
use crate::metrics::{Metric, Value};
use crate::state::RankRows;

pub use crate::state::{
    ProbHist, BIN_FIELDS, GRID_CELLS, GRID_FIELDS, LOGIT_CELLS, LOGIT_FIELDS, LOGIT_RANGE,
    PROB_BUCKETS, REP_BIN_FIELDS,
};

const N: usize = 0;
const W: usize = 1;
const W2: usize = 2;
const WS: usize = 3;
const WY: usize = 4;

pub const EMPTY_SLICE: &str = "undefined: the slice has no weight";
pub const NO_EXPECTED: &str = "undefined: the scores sum to 0 (no expected positives)";
pub const CONSTANT_SCORE: &str = "undefined: the scores are constant (no slope to fit)";
pub const NO_FIT: &str = "undefined: the logistic fit has no finite optimum (the score \
                          separates the classes, perhaps with ties where they meet)";
pub const NO_REPLICATED_EDGES: &str = "no interval: quantile bins take their edges from the \
                                       data; use calibration_strategy=\"uniform\"";
pub const NO_REPLICATED_ACE: &str =
    "no interval: ace's equal-mass edges come from the data and are not replicated";
pub const NO_REPLICATED_SMOOTH: &str =
    "no interval: smooth_ece's bandwidth comes from the data and is not replicated";
pub const NO_REPLICATED_FIT: &str =
    "no bootstrap interval for the logistic fit: use ci_method=\"analytic\" (Wald)";

/// How scores are cut into bins.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinRule {
    /// `n` equal-width bins over [0, 1], left-closed (the last one closed).
    Uniform,
    /// Equal-mass bins at the slice's exact quantiles, right-closed (the first one closed).
    Quantile,
}

impl BinRule {
    pub fn parse(s: &str) -> Result<BinRule> {
        match s {
            "uniform" => Ok(BinRule::Uniform),
            "quantile" => Ok(BinRule::Quantile),
            _ => Err(AssayError::InvalidArgument(format!(
                "unknown calibration strategy {s:?}; use \"uniform\" or \"quantile\""
            ))),
        }
    }
}

/// The bins of a job's calibration metrics.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CalibSpec {
    pub bins: usize,
    pub rule: BinRule,
}

impl Default for CalibSpec {
    fn default() -> Self {
        CalibSpec {
            bins: 15,
            rule: BinRule::Uniform,
        }
    }
}

/// The most bins a calibration job may ask for.
pub const MAX_BINS: usize = 100_000;

impl CalibSpec {
    pub fn validate(&self) -> Result<()> {
        if !(1..=MAX_BINS).contains(&self.bins) {
            return Err(AssayError::InvalidArgument(format!(
                "the number of calibration bins must be in [1, {MAX_BINS}], got {}",
                self.bins
            )));
        }
        Ok(())
    }
}

/// Which calibration states a metric reads.
impl Metric {
    /// A calibration metric (see `docs/calibration.md`).
    pub fn is_calibration(&self) -> bool {
        self.info().kind == crate::metrics::Kind::Calibration
    }

    /// Computed from the `calibration_strategy` bins.
    pub fn uses_bins(&self) -> bool {
        use Metric::*;
        matches!(
            self,
            Ece | Mce
                | Rmsce
                | EceDebiased
                | OeRatio
                | BrierReliability
                | BrierResolution
                | BrierUncertainty
        )
    }
}

/// `np.linspace(0, 1, n + 1)`: `k * (1/n)`, the last edge exactly 1.
pub fn uniform_edges(n: usize) -> Vec<f64> {
    let step = 1.0 / n as f64;
    (0..=n)
        .map(|k| if k == n { 1.0 } else { k as f64 * step })
        .collect()
}

/// Uniform bin of a probability `s`: left-closed `[e_k, e_k+1)`, the last bin closed. The
/// estimate `floor(s n)` is settled against the edges, which carry their own rounding.
#[inline(always)]
pub fn uniform_bin(edges: &[f64], s: f64) -> usize {
    let n = edges.len() - 1;
    let mut b = ((s * n as f64) as usize).min(n - 1);
    while b > 0 && s < edges[b] {
        b -= 1;
    }
    while b + 1 < n && s >= edges[b + 1] {
        b += 1;
    }
    b
}

/// Quantile bin of `s`: right-closed `(e_k, e_k+1]`, the first bin closed; a tie with an edge
/// goes to the lower bin (`np.searchsorted(edges[1:-1], s, side="left")`).
#[inline(always)]
pub fn quantile_bin(edges: &[f64], s: f64) -> usize {
    let inner = &edges[1..edges.len() - 1];
    if inner.len() <= 32 {
        // Branch-free: a binary search mispredicts on every row.
        inner.iter().map(|e| (*e < s) as usize).sum()
    } else {
        inner.partition_point(|e| *e < s)
    }
}

#[inline(always)]
pub fn add_bin(bins: &mut [f64], b: usize, s: f64, y: f64, w: f64) {
    let c = &mut bins[b * BIN_FIELDS..(b + 1) * BIN_FIELDS];
    c[N] += 1.0;
    c[W] += w;
    c[W2] += w * w;
    c[WS] += w * s;
    c[WY] += w * y;
}

/// One row's replicate weights `kw` (k x w per slot) into bin `b` of a replicate block.
#[inline]
pub fn add_bin_reps(block: &mut [f64], slots: usize, b: usize, s: f64, y: f64, w: f64, kw: &[f64]) {
    let base = b * REP_BIN_FIELDS * slots;
    let (kw_row, rest) = block[base..base + REP_BIN_FIELDS * slots].split_at_mut(slots);
    let (ks_row, rest) = rest.split_at_mut(slots);
    let (ky_row, kw2_row) = rest.split_at_mut(slots);
    crate::bootstrap::add_into(kw_row, kw);
    for (((a, b2), c), k) in ks_row
        .iter_mut()
        .zip(ky_row.iter_mut())
        .zip(kw2_row)
        .zip(kw)
    {
        *a += *k * s;
        *b2 += *k * y;
        *c += *k * w;
    }
}

/// The SmoothECE grid cell of a probability (its left node).
#[inline(always)]
fn grid_cell(s: f64) -> usize {
    ((s * GRID_CELLS as f64) as usize).min(GRID_CELLS - 1)
}

/// Spreads one row linearly onto the two nearest nodes of the SmoothECE grid.
#[inline(always)]
pub fn add_grid(grid: &mut [f64], s: f64, y: f64, w: f64) {
    let x = s * GRID_CELLS as f64;
    let i = grid_cell(s);
    let f = x - i as f64;
    let r = w * (y - s);
    let g = &mut grid[i * GRID_FIELDS..(i + 2) * GRID_FIELDS];
    g[0] += w * (1.0 - f);
    g[1] += r * (1.0 - f);
    g[2] += w * f;
    g[3] += r * f;
}

const LOGIT_H: f64 = 2.0 * LOGIT_RANGE / LOGIT_CELLS as f64;

/// The logit of a score clamped to [EPS, 1 - EPS], as the calibration slope reads it.
#[inline(always)]
pub fn logit(s: f64) -> f64 {
    crate::fastmath::logit(s)
}

/// Adds one row to the logit grid of the calibration slope.
#[inline(always)]
pub fn add_logit(cells: &mut [f64], s: f64, y: f64, w: f64) {
    add_logit_at(cells, logit(s), y, w)
}

/// Adds one row whose logit is `x` to the logit grid.
#[inline(always)]
pub fn add_logit_at(cells: &mut [f64], x: f64, y: f64, w: f64) {
    let i = logit_cell(x);
    let d = x - logit_centre(i);
    let wd = w * d;
    let c = &mut cells[i * LOGIT_FIELDS..(i + 1) * LOGIT_FIELDS];
    c[0] += w;
    c[1] += wd;
    c[2] += wd * d;
    c[3] += wd * d * d;
    c[4] += w * y;
    c[5] += wd * y;
}

/// The cell of the logit grid holding logit `x`.
#[inline(always)]
fn logit_cell(x: f64) -> usize {
    (((x + LOGIT_RANGE) * (1.0 / LOGIT_H)) as usize).min(LOGIT_CELLS - 1)
}

fn logit_centre(i: usize) -> f64 {
    -LOGIT_RANGE + (i as f64 + 0.5) * LOGIT_H
}

// ---------------------------------------------------------------------------------------------
// Finalizers

/// A bin metric from one slice's bins (`bins x BIN_FIELDS`). Empty bins are skipped.
pub fn bin_metric(m: Metric, bins: &[f64]) -> Value {
    use Metric::*;
    let total: f64 = bins.chunks_exact(BIN_FIELDS).map(|c| c[W]).sum();
    if total.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) {
        return Err(EMPTY_SLICE);
    }
    let pos: f64 = bins.chunks_exact(BIN_FIELDS).map(|c| c[WY]).sum();
    let ybar = pos / total;
    let full = || bins.chunks_exact(BIN_FIELDS).filter(|c| c[W] > 0.0);
    let gap = |c: &[f64]| (c[WY] - c[WS]) / c[W];
    let mass = |c: &[f64]| c[W] / total;
    Ok(match m {
        Ece | Ace => full().map(|c| mass(c) * gap(c).abs()).sum(),
        Mce => full().map(|c| gap(c).abs()).fold(0.0, f64::max),
        Rmsce => full()
            .map(|c| mass(c) * gap(c) * gap(c))
            .sum::<f64>()
            .sqrt(),
        BrierReliability => full().map(|c| mass(c) * gap(c) * gap(c)).sum(),
        BrierResolution => full()
            .map(|c| {
                let d = c[WY] / c[W] - ybar;
                mass(c) * d * d
            })
            .sum(),
        BrierUncertainty => ybar * (1.0 - ybar),
        EceDebiased => {
            let sq: f64 = full()
                .map(|c| {
                    let n_eff = c[W] * c[W] / c[W2];
                    if n_eff <= 1.0 {
                        return 0.0;
                    }
                    let f = c[WY] / c[W];
                    let g = gap(c);
                    mass(c) * (g * g - f * (1.0 - f) / (n_eff - 1.0))
                })
                .sum();
            sq.max(0.0).sqrt()
        }
        OeRatio => {
            let expected: f64 = bins.chunks_exact(BIN_FIELDS).map(|c| c[WS]).sum();
            if expected > 0.0 {
                pos / expected
            } else {
                return Err(NO_EXPECTED);
            }
        }
        _ => unreachable!("not a bin metric: {m:?}"),
    })
}

/// Bin metric `m` of every replicate slot of one slice's replicate block (NaN: undefined).
pub fn replicate_bin_metric(m: Metric, block: &[f64], n_bins: usize, slots: usize) -> Vec<f64> {
    let mut bins = vec![0.0; n_bins * BIN_FIELDS];
    (0..slots)
        .map(|s| {
            for b in 0..n_bins {
                let at = |f: usize| block[(b * REP_BIN_FIELDS + f) * slots + s];
                let c = &mut bins[b * BIN_FIELDS..(b + 1) * BIN_FIELDS];
                c[N] = at(0);
                c[W] = at(0);
                c[WS] = at(1);
                c[WY] = at(2);
                c[W2] = at(3);
            }
            bin_metric(m, &bins).unwrap_or(f64::NAN)
        })
        .collect()
}

/// One bin of a reliability table: (count, weight sum, effective n, mean score, fraction of
/// positives); the means are `None` for an empty bin.
pub fn bin_row(bins: &[f64], b: usize) -> (u64, f64, f64, Option<(f64, f64)>) {
    let c = &bins[b * BIN_FIELDS..(b + 1) * BIN_FIELDS];
    if c[W] > 0.0 {
        let n_eff = c[W] * c[W] / c[W2];
        (c[N] as u64, c[W], n_eff, Some((c[WS] / c[W], c[WY] / c[W])))
    } else {
        (c[N] as u64, c[W], 0.0, None)
    }
}

/// SmoothECE at its fixed-point bandwidth, from one slice's grid (`(GRID_CELLS + 1) x 2`).
pub fn smooth_ece(grid: &[f64]) -> Value {
    let total: f64 = grid.chunks_exact(GRID_FIELDS).map(|g| g[0]).sum();
    if total.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) {
        return Err(EMPTY_SLICE);
    }
    // The grid pyramid: level l has GRID_CELLS >> l cells; spreading is linear, so a node of
    // the finer level halves onto its two coarse neighbours exactly.
    let mut levels: Vec<Vec<f64>> = vec![grid.chunks_exact(GRID_FIELDS).map(|g| g[1]).collect()];
    while levels.last().unwrap().len() > 5 {
        let fine = levels.last().unwrap();
        let m = (fine.len() - 1) / 2;
        let coarse: Vec<f64> = (0..=m)
            .map(|j| {
                let mut v = fine[2 * j];
                if j > 0 {
                    v += 0.5 * fine[2 * j - 1];
                }
                if j < m {
                    v += 0.5 * fine[2 * j + 1];
                }
                v
            })
            .collect();
        levels.push(coarse);
    }
    let at = |sigma: f64| smooth_ece_at(&levels, sigma) / total;
    let (mut lo, mut hi) = (0.001f64, 1.0f64);
    let (mut f_lo, mut f_hi) = (at(lo) - lo, at(hi) - hi);
    if f_lo <= 0.0 {
        return Ok(f_lo + lo);
    }
    if f_hi >= 0.0 {
        return Ok(f_hi + hi);
    }
    // Illinois bracketing on f(sigma) = smECE(sigma) - sigma, decreasing in sigma.
    let mut side = 0i8;
    // To full precision (the bracket stops shrinking), not to a tolerance: a result cut off at
    // a tolerance would move by up to that tolerance when the grid's sums change in their last
    // bits (another merge order of the same rows).
    for _ in 0..200 {
        if hi - lo <= 4.0 * f64::EPSILON * hi {
            break;
        }
        let mut x = (lo * f_hi - hi * f_lo) / (f_hi - f_lo);
        if !(x > lo && x < hi) {
            x = 0.5 * (lo + hi);
        }
        let fx = at(x) - x;
        if fx > 0.0 {
            lo = x;
            f_lo = fx;
            if side == 1 {
                f_hi *= 0.5;
            }
            side = 1;
        } else if fx < 0.0 {
            hi = x;
            f_hi = fx;
            if side == -1 {
                f_lo *= 0.5;
            }
            side = -1;
        } else {
            return Ok(x + fx);
        }
    }
    let x = 0.5 * (lo + hi);
    Ok(at(x))
}

/// `integral over [0, 1] of |sum_i r_i K_sigma(t, t_i)| dt` on the coarsest grid level whose
/// spacing is at most sigma / 8 (the finest when none is), trapezoid rule, the reflected
/// Gaussian kernel truncated at 7 sigma.
fn smooth_ece_at(levels: &[Vec<f64>], sigma: f64) -> f64 {
    let level = levels
        .iter()
        .rev()
        .find(|l| 1.0 / (l.len() - 1) as f64 <= sigma / 8.0)
        .unwrap_or(&levels[0]);
    let m = level.len() - 1; // cells
    let h = 1.0 / m as f64;
    let cut = 7.0 * sigma;
    let t = ((cut / h).ceil() as usize).min(2 * m);
    // g(k) = sum over reflections of phi((k h) + 2j), k in [-m - t, 2m + t].
    let norm = 1.0 / (sigma * (2.0 * std::f64::consts::PI).sqrt());
    let off = m + t;
    let g: Vec<f64> = (0..=3 * m + 2 * t)
        .map(|k| {
            let x = (k as f64 - off as f64) * h;
            let mut v = 0.0;
            let mut j = -((cut + 3.0) / 2.0).ceil() as i64;
            while (j as f64) * 2.0 <= cut + 3.0 {
                let d = x + 2.0 * j as f64;
                if d.abs() <= cut {
                    v += (-(d * d) / (2.0 * sigma * sigma)).exp();
                }
                j += 1;
            }
            v * norm
        })
        .collect();
    let mut integral = 0.0;
    for j in 0..=m {
        let (a, b) = (j.saturating_sub(t), (j + t).min(m));
        let mut r = 0.0;
        for (i, ri) in level.iter().enumerate().take(b + 1).skip(a) {
            if *ri != 0.0 {
                r += ri * (g[j + off - i] + g[j + i + off]);
            }
        }
        let weight = if j == 0 || j == m { 0.5 } else { 1.0 };
        integral += weight * r.abs();
    }
    integral * h
}

/// A weighted logistic fit `P(y=1) = sigmoid(a + b logit(s))`: (a, b) and their covariance
/// `[var a, cov, var b]` (weights read as frequencies).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LogisticFit {
    pub intercept: f64,
    pub slope: f64,
    pub cov: [f64; 3],
}

/// Fits the calibration slope and intercept from one slice's logit grid (see the module docs
/// of `docs/calibration.md`): each cell becomes the two-point quadrature matching its first
/// four moments, the label terms are exact, and Newton's method maximizes the likelihood.
pub fn logistic_fit(cells: &[f64]) -> std::result::Result<LogisticFit, &'static str> {
    let mut xs = Vec::new();
    let mut vs = Vec::new();
    let (mut total, mut y0, mut yx) = (0.0, 0.0, 0.0);
    for (i, c) in cells.chunks_exact(LOGIT_FIELDS).enumerate() {
        let s0 = c[0];
        if s0 <= 0.0 {
            continue;
        }
        let centre = logit_centre(i);
        total += s0;
        y0 += c[4];
        yx += centre * c[4] + c[5];
        let mu = c[1] / s0;
        let m2 = c[2] / s0;
        let var = (m2 - mu * mu).max(0.0);
        // `m2 - mu^2` cancels: rows at one logit (tied scores) leave a variance of rounding,
        // of order 1e-16 m2, whose bits depend on the order the rows were summed. A cell whose
        // spread is that small is one point (collapsing a real spread of 1e-5 |d| moves the fit
        // by ~1e-10 relative), so the fit does not depend on how the rows were split.
        if var <= 1e-10 * m2 || var.sqrt() <= 1e-12 * LOGIT_H {
            xs.push(centre + mu);
            vs.push(s0);
            continue;
        }
        let k3 = c[3] / s0 - 3.0 * mu * c[2] / s0 + 2.0 * mu * mu * mu;
        let gamma = k3 / var.powf(1.5);
        let root = (gamma * gamma + 4.0).sqrt();
        let (z1, z2) = ((gamma - root) / 2.0, (gamma + root) / 2.0);
        let p1 = z2 / (z2 - z1);
        let sd = var.sqrt();
        xs.push(centre + mu + sd * z1);
        vs.push(s0 * p1);
        xs.push(centre + mu + sd * z2);
        vs.push(s0 * (1.0 - p1));
    }
    if total.is_nan() || total <= 0.0 {
        return Err(EMPTY_SLICE);
    }
    if y0 <= 0.0 || y0 >= total {
        return Err(crate::metrics::ONE_CLASS);
    }
    let (x_min, x_max) = xs
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
            (a.min(*x), b.max(*x))
        });
    if x_max - x_min <= 1e-9 * (1.0 + x_max.abs()) {
        return Err(CONSTANT_SCORE);
    }
    // Separation: when every cell holds one class and the classes do not interleave along
    // the logit, the likelihood has no maximum (the slope runs off to infinity).
    let (mut neg_max, mut pos_min, mut neg_min, mut pos_max) = (
        f64::NEG_INFINITY,
        f64::INFINITY,
        f64::INFINITY,
        f64::NEG_INFINITY,
    );
    let mut mixed = false;
    for (i, c) in cells.chunks_exact(LOGIT_FIELDS).enumerate() {
        if c[0] <= 0.0 {
            continue;
        }
        let x = logit_centre(i);
        let (pos, neg) = (c[4] > 0.0, c[4] < c[0]);
        mixed |= pos && neg;
        if pos {
            pos_min = pos_min.min(x);
            pos_max = pos_max.max(x);
        }
        if neg {
            neg_min = neg_min.min(x);
            neg_max = neg_max.max(x);
        }
    }
    if !mixed && (neg_max < pos_min || pos_max < neg_min) {
        return Err(NO_FIT);
    }
    if quasi_separated(&xs, &vs, y0, yx, total, x_max - x_min) {
        return Err(NO_FIT);
    }
    let loglik = |a: f64, b: f64| {
        let mut l = a * y0 + b * yx;
        for (x, v) in xs.iter().zip(&vs) {
            l -= v * softplus(a + b * x);
        }
        l
    };
    // Newton's method with a backtracking line search from the intercept-only fit (a well
    // conditioned start whatever the scores); the information matrix at the optimum gives
    // the covariance. Tolerances are relative to the total weight (the log-likelihood's
    // unit), so the fit does not depend on the weights' scale.
    let information = |a: f64, b: f64| {
        let (mut ga, mut gb) = (y0, yx);
        let (mut haa, mut hab, mut hbb) = (0.0, 0.0, 0.0);
        for (x, v) in xs.iter().zip(&vs) {
            let p = sigmoid(a + b * x);
            let q = v * p * (1.0 - p);
            ga -= v * p;
            gb -= v * p * x;
            haa += q;
            hab += q * x;
            hbb += q * x * x;
        }
        ((ga, gb), (haa, hab, hbb))
    };
    let ybar = y0 / total;
    let (mut a, mut b) = ((ybar / (1.0 - ybar)).ln(), 0.0);
    let mut l = loglik(a, b);
    for _ in 0..100 {
        let ((ga, gb), (haa, hab, hbb)) = information(a, b);
        let det = haa * hbb - hab * hab;
        if det.is_nan() || det <= 0.0 || !det.is_finite() {
            return Err(NO_FIT);
        }
        let da = (hbb * ga - hab * gb) / det;
        let db = (haa * gb - hab * ga) / det;
        // The Newton decrement: the likelihood gain the quadratic model still promises.
        let decrement = ga * da + gb * db;
        if decrement <= 1e-20 * (total + l.abs()) {
            return Ok(LogisticFit {
                intercept: a,
                slope: b,
                cov: [hbb / det, -hab / det, haa / det],
            });
        }
        if decrement <= 1e-9 * (total + l.abs()) {
            // Inside the quadratic region: the likelihood cannot resolve such small gains, so
            // take the Newton step as it is (it converges to rounding in one or two more).
            a += da;
            b += db;
            l = loglik(a, b);
            continue;
        }
        let mut step = 1.0;
        loop {
            let (na, nb) = (a + step * da, b + step * db);
            let nl = loglik(na, nb);
            if nl > l {
                a = na;
                b = nb;
                l = nl;
                break;
            }
            step *= 0.5;
            if step < 1e-12 {
                // No ascent along the Newton direction: at the optimum up to rounding when the
                // promised gain is negligible, else the fit is failing.
                if decrement <= 1e-10 * (total + l.abs()) {
                    return Ok(LogisticFit {
                        intercept: a,
                        slope: b,
                        cov: [hbb / det, -hab / det, haa / det],
                    });
                }
                return Err(NO_FIT);
            }
        }
        if !a.is_finite() || !b.is_finite() || b.abs() > 1e4 {
            return Err(NO_FIT);
        }
    }
    Err(NO_FIT)
}

/// Whether the likelihood of the fit on nodes `xs` (weights `vs`) with label terms `y0 = sum(w
/// y)`, `yx = sum(w y x)` has no finite maximum, up to a relative margin: (quasi-)separation,
/// where the positives lie on one side of some logit and the negatives on the other, the two
/// meeting at most at that logit (tied scores). Then the slope runs off to infinity and Newton's
/// method stops wherever the likelihood's rounding lets it.
///
/// The maximum exists exactly when `(y0, yx)` lies inside the set of `sum v_i pi_i (1, x_i)`
/// over `pi_i` in [0, 1]; in one dimension that is `g(t) = sum v (x - t)^+ - (yx - t y0) > 0`
/// and `h(t) = sum v (t - x)^+ - (t y0 - yx) > 0` for all `t` (with 0 < y0 < total, checked
/// before). Both are convex and piecewise linear with kinks at the nodes, and grow without bound
/// away from them, so checking them at the nodes is enough. A margin below 1e-10 of
/// `total x range` counts as separated: the slope there is huge and set by rounding.
fn quasi_separated(xs: &[f64], vs: &[f64], y0: f64, yx: f64, total: f64, range: f64) -> bool {
    // Offsets from the lowest node keep the sums below free of cancellation.
    let x0 = xs.iter().copied().fold(f64::INFINITY, f64::min);
    let mut nodes: Vec<(f64, f64)> = xs.iter().map(|x| x - x0).zip(vs.iter().copied()).collect();
    nodes.sort_by(|a, b| a.0.total_cmp(&b.0));
    let yx = yx - x0 * y0;
    let tol = 1e-10 * total * range;
    // Prefix sums over the sorted nodes: below = sum v and sum v x of the nodes before t.
    let (sum_v, sum_vx) = nodes
        .iter()
        .fold((0.0, 0.0), |(a, b), (x, v)| (a + v, b + v * x));
    let (mut below_v, mut below_vx) = (0.0, 0.0);
    for (t, v) in &nodes {
        // sum v (t - x)^+ over nodes at or below t; sum v (x - t)^+ over the rest.
        let lower = t * below_v - below_vx;
        let upper = (sum_vx - below_vx) - t * (sum_v - below_v);
        let h = lower - (t * y0 - yx);
        let g = upper - (yx - t * y0);
        if g <= tol || h <= tol {
            return true;
        }
        below_v += v;
        below_vx += v * t;
    }
    false
}

#[inline]
fn softplus(x: f64) -> f64 {
    if x > 0.0 {
        x + (-x).exp().ln_1p()
    } else {
        x.exp().ln_1p()
    }
}

/// The reliability table: one row per (slice, bin) from `(slice label, edges, bins)`, with
/// Wilson intervals at `level` on the fraction of positives.
pub fn reliability_table(
    slices: &[(String, Vec<f64>, Vec<f64>)],
    level: f64,
    scale: &crate::state::WeightScale,
) -> Result<arrow_array::RecordBatch> {
    use arrow_array::builder::{Float64Builder, Int64Builder, StringBuilder};
    use arrow_array::ArrayRef;
    use arrow_schema::{DataType, Field, Schema};
    use std::sync::Arc;
    let mut slice = StringBuilder::new();
    let mut bin = Int64Builder::new();
    let (mut lower, mut upper) = (Float64Builder::new(), Float64Builder::new());
    let mut count = Int64Builder::new();
    let mut weight = Float64Builder::new();
    let (mut mean, mut frac) = (Float64Builder::new(), Float64Builder::new());
    let (mut lo, mut hi) = (Float64Builder::new(), Float64Builder::new());
    for (label, edges, bins) in slices {
        let n_bins = bins.len() / BIN_FIELDS;
        for b in 0..n_bins {
            slice.append_value(label);
            bin.append_value(b as i64);
            lower.append_option(edges.get(b).copied());
            upper.append_option(edges.get(b + 1).copied());
            let (n, w, n_eff, means) = bin_row(bins, b);
            count.append_value(n as i64);
            // Back in the user's units; null where the sum is outside the float64 range.
            let w = scale.unscale(w);
            weight.append_option((w.is_finite() && (w > 0.0 || n == 0)).then_some(w));
            match means {
                Some((s, f)) => {
                    mean.append_value(s);
                    frac.append_value(f);
                    let (l, h, _) = crate::bootstrap::wilson_bounds(f, n_eff, level);
                    lo.append_value(l);
                    hi.append_value(h);
                }
                None => {
                    mean.append_null();
                    frac.append_null();
                    lo.append_null();
                    hi.append_null();
                }
            }
        }
    }
    let f = |name: &str, dt: DataType, nullable: bool| Field::new(name, dt, nullable);
    let schema = Schema::new(vec![
        f("slice", DataType::Utf8, false),
        f("bin", DataType::Int64, false),
        f("lower", DataType::Float64, true),
        f("upper", DataType::Float64, true),
        f("count", DataType::Int64, false),
        f("weight_sum", DataType::Float64, true),
        f("mean_score", DataType::Float64, true),
        f("frac_positive", DataType::Float64, true),
        f("frac_lo", DataType::Float64, true),
        f("frac_hi", DataType::Float64, true),
    ]);
    let cols: Vec<ArrayRef> = vec![
        Arc::new(slice.finish()),
        Arc::new(bin.finish()),
        Arc::new(lower.finish()),
        Arc::new(upper.finish()),
        Arc::new(count.finish()),
        Arc::new(weight.finish()),
        Arc::new(mean.finish()),
        Arc::new(frac.finish()),
        Arc::new(lo.finish()),
        Arc::new(hi.finish()),
    ];
    Ok(arrow_array::RecordBatch::try_new(Arc::new(schema), cols)?)
}

// ---------------------------------------------------------------------------------------------
// Exact quantile bins

/// Quantile bins of every slice of every spec: `[spec][id]` is (edges, bins).
pub type QuantileBins = Vec<Vec<(Vec<f64>, Vec<f64>)>>;

/// Exact quantile edges (`n + 1`) of `v`: numpy's linear quantile at `k * (1/n)`, or with
/// `w` the weighted inverted-CDF quantile. Linear time: a histogram of the values narrows each
/// order statistic to one bucket, and only those buckets are sorted.
pub fn quantile_edges(v: &[f64], w: Option<&[f64]>, n: usize) -> Vec<f64> {
    let plan = EdgePlan::new(v.len(), w.is_some(), n);
    let values = match Buckets::build(v, w) {
        Some(b) => b.select(v, w, &plan.targets),
        None => select_sorted(v, w, &plan.targets),
    };
    plan.edges(&values)
}

/// What an order statistic is: the smallest value whose cumulative count reaches `Count(c)`,
/// or whose cumulative weight over the total reaches `Fraction(q)`.
#[derive(Clone, Copy, Debug)]
enum Target {
    Count(f64),
    Fraction(f64),
}

/// The order statistics behind `n + 1` quantile edges, and how each edge follows from them:
/// `(a, b, t)` is numpy's interpolation from target `a` to target `b` at fraction `t`.
struct EdgePlan {
    targets: Vec<Target>,
    edges: Vec<(usize, usize, f64)>,
}

impl EdgePlan {
    fn new(len: usize, weighted: bool, n: usize) -> EdgePlan {
        let step = 1.0 / n as f64;
        let qs: Vec<f64> = (0..=n)
            .map(|k| if k == n { 1.0 } else { k as f64 * step })
            .collect();
        if weighted {
            return EdgePlan {
                targets: qs.iter().map(|q| Target::Fraction(*q)).collect(),
                edges: (0..=n).map(|k| (k, k, 0.0)).collect(),
            };
        }
        // Order statistics floor(h) and floor(h) + 1 of each h = q (len - 1).
        let last = (len - 1) as f64;
        let mut ranks: Vec<usize> = Vec::new();
        for q in &qs {
            let i = (last * q).floor() as usize;
            ranks.push(i);
            if (i as f64) < last {
                ranks.push(i + 1);
            }
        }
        ranks.sort_unstable();
        ranks.dedup();
        let at = |r: usize| ranks.binary_search(&r).expect("planned");
        let edges = qs
            .iter()
            .map(|q| {
                let h = last * q;
                if h >= last {
                    let a = at(len - 1);
                    return (a, a, 0.0);
                }
                let i = h.floor() as usize;
                (at(i), at(i + 1), h - i as f64)
            })
            .collect();
        EdgePlan {
            targets: ranks
                .iter()
                .map(|r| Target::Count(*r as f64 + 1.0))
                .collect(),
            edges,
        }
    }

    /// The edges from the targets' values (numpy's linear interpolation, to the bit).
    fn edges(&self, values: &[f64]) -> Vec<f64> {
        self.edges
            .iter()
            .map(|&(a, b, t)| {
                let (a, b) = (values[a], values[b]);
                let d = b - a;
                if t >= 0.5 {
                    b - d * (1.0 - t)
                } else {
                    a + d * t
                }
            })
            .collect()
    }
}

/// Rows per part of the parallel passes; the parts are fixed by position, so sums do not
/// depend on the thread count.
const PART: usize = 1 << 18;

/// The [`PROB_BUCKETS`] bucket of a probability.
#[inline(always)]
pub fn prob_bucket(s: f64) -> usize {
    // Through i64 (one conversion instruction; an unsigned one takes a branchy sequence): the
    // same bucket as `as usize` then `min`, NaN and negatives in bucket 0.
    ((s * PROB_BUCKETS as f64) as i64).clamp(0, PROB_BUCKETS as i64 - 1) as usize
}

/// A piece's [`ProbHist`] while its rows are added (fewer than 2^32 rows): one 16-byte cell
/// per bucket, rows and positives packed in one integer beside the score sum, so each row
/// touches one cache line.
#[derive(Clone, Debug)]
pub struct ProbCells(Vec<(u64, f64)>);

impl Default for ProbCells {
    fn default() -> Self {
        ProbCells(vec![(0, 0.0); PROB_BUCKETS])
    }
}

impl ProbCells {
    /// One row: probability `s`, positive or not.
    #[inline(always)]
    pub fn add(&mut self, s: f64, positive: bool) {
        let c = &mut self.0[prob_bucket(s)];
        c.0 += 1 << 32 | positive as u64;
        c.1 += s;
    }

    /// Rows `s` (probabilities) with 0/1 labels `y`, in order.
    pub fn add_rows(&mut self, s: &[f64], y: &[f64]) {
        for (x, l) in s.iter().zip(y) {
            self.add(*x, *l == 1.0);
        }
    }

    pub fn hist(&self) -> ProbHist {
        let mut h = ProbHist::default();
        for (b, (n, sum)) in self.0.iter().enumerate() {
            h.rows[b] = (n >> 32) as f64;
            h.positives[b] = (n & 0xffff_ffff) as f64;
            h.scores[b] = *sum;
        }
        h
    }
}

/// A histogram of values over equal-width buckets between their minimum and maximum.
struct Buckets {
    lo: f64,
    scale: f64,
    k: usize,
    /// Mass (rows, or weight) per bucket.
    hist: Vec<f64>,
    total: f64,
}

impl Buckets {
    /// `None` when the values are all equal or too close to bucket.
    fn build(v: &[f64], w: Option<&[f64]>) -> Option<Buckets> {
        let (lo, hi) = v
            .par_chunks(PART)
            .map(|c| {
                c.iter()
                    .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
                        (a.min(*x), b.max(*x))
                    })
            })
            .reduce(
                || (f64::INFINITY, f64::NEG_INFINITY),
                |(a, b), (c, d)| (a.min(c), b.max(d)),
            );
        // Small enough to stay in L1; each target's bucket is sorted later.
        let k = (v.len() / 256).clamp(16, 4096);
        let scale = k as f64 / (hi - lo);
        if lo == hi || !scale.is_finite() {
            return None;
        }
        let mut b = Buckets {
            lo,
            scale,
            k,
            hist: Vec::new(),
            total: 0.0,
        };
        let parts: Vec<Vec<f64>> = v
            .par_chunks(PART)
            .enumerate()
            .map(|(p, c)| {
                let mut h = vec![0.0; k];
                for (j, x) in c.iter().enumerate() {
                    h[b.bucket(*x)] += mass(w, p * PART + j);
                }
                h
            })
            .collect();
        b.hist = vec![0.0; k];
        for h in &parts {
            for (a, x) in b.hist.iter_mut().zip(h) {
                *a += x;
            }
        }
        b.total = b.hist.iter().sum();
        Some(b)
    }

    /// The buckets of a [`PROB_BUCKETS`] count histogram of probabilities (the same bucket
    /// function as [`prob_bucket`]). `None` when some target's bucket would hold more than an
    /// eighth of the rows (scores packed in a narrow range): the caller then builds buckets
    /// over the values' own range.
    fn from_probability_counts(counts: &[f64], targets: &[Target]) -> Option<Buckets> {
        let hist = counts.to_vec();
        let total: f64 = hist.iter().sum();
        let b = Buckets {
            lo: 0.0,
            scale: PROB_BUCKETS as f64,
            k: PROB_BUCKETS,
            hist,
            total,
        };
        let crowded = b
            .locate(targets)
            .iter()
            .any(|(i, _)| b.hist[*i] > (total / 8.0).max(4096.0));
        (!crowded && total > 0.0).then_some(b)
    }

    /// Monotone: a larger value never lands in a lower bucket.
    #[inline(always)]
    fn bucket(&self, x: f64) -> usize {
        // As `prob_bucket`: through i64, the same bucket as `as usize` then `min`.
        (((x - self.lo) * self.scale) as i64).clamp(0, self.k as i64 - 1) as usize
    }

    fn reached(&self, cum: f64, t: Target) -> bool {
        match t {
            Target::Count(c) => cum >= c,
            Target::Fraction(q) => cum / self.total >= q,
        }
    }

    /// The bucket holding each target, and the mass below that bucket.
    fn locate(&self, targets: &[Target]) -> Vec<(usize, f64)> {
        targets
            .iter()
            .map(|t| {
                let mut cum = 0.0;
                for (i, m) in self.hist.iter().enumerate() {
                    if *m > 0.0 && self.reached(cum + m, *t) {
                        return (i, cum);
                    }
                    cum += m;
                }
                // Rounding left the last target unreached: it is the largest value.
                let last = self.hist.iter().rposition(|m| *m > 0.0).unwrap_or(0);
                (last, cum - self.hist[last])
            })
            .collect()
    }

    /// The value of each target, from its bucket's values sorted (`gathered[slot]` holds
    /// (value, mass) of the rows of bucket `needed[slot]`).
    fn resolve(
        &self,
        targets: &[Target],
        found: &[(usize, f64)],
        slot: &[u32],
        gathered: &[Vec<(f64, f64)>],
    ) -> Vec<f64> {
        targets
            .iter()
            .zip(found)
            .map(|(t, (b, before))| {
                let g = &gathered[slot[*b] as usize];
                let mut cum = *before;
                for (x, m) in g {
                    cum += m;
                    if self.reached(cum, *t) {
                        return *x;
                    }
                }
                g.last().map_or(self.lo, |x| x.0)
            })
            .collect()
    }

    fn select(&self, v: &[f64], w: Option<&[f64]>, targets: &[Target]) -> Vec<f64> {
        let found = self.locate(targets);
        let (needed, slot) = self.slots(&found);
        let parts: Vec<Vec<Vec<(f64, f64)>>> = v
            .par_chunks(PART)
            .enumerate()
            .map(|(p, c)| {
                let mut got = vec![Vec::new(); needed];
                for (j, x) in c.iter().enumerate() {
                    let s = slot[self.bucket(*x)];
                    if s != u32::MAX {
                        got[s as usize].push((*x, mass(w, p * PART + j)));
                    }
                }
                got
            })
            .collect();
        let mut gathered = concat_parts(parts, needed);
        for g in gathered.iter_mut() {
            g.sort_by(|a, b| a.0.total_cmp(&b.0));
        }
        self.resolve(targets, &found, &slot, &gathered)
    }

    /// The buckets holding a target, numbered: (how many, slot of each bucket or u32::MAX).
    fn slots(&self, found: &[(usize, f64)]) -> (usize, Vec<u32>) {
        let mut slot = vec![u32::MAX; self.k];
        let mut next = 0u32;
        let mut buckets: Vec<usize> = found.iter().map(|(b, _)| *b).collect();
        buckets.sort_unstable();
        buckets.dedup();
        for b in buckets {
            slot[b] = next;
            next += 1;
        }
        (next as usize, slot)
    }
}

#[inline(always)]
fn mass(w: Option<&[f64]>, i: usize) -> f64 {
    w.map_or(1.0, |w| w[i])
}

fn concat_parts<T>(parts: Vec<Vec<Vec<T>>>, slots: usize) -> Vec<Vec<T>> {
    let mut out: Vec<Vec<T>> = (0..slots).map(|_| Vec::new()).collect();
    for part in parts {
        for (g, p) in out.iter_mut().zip(part) {
            g.extend(p);
        }
    }
    out
}

/// The fallback for values packed too tightly to bucket: sort them all.
fn select_sorted(v: &[f64], w: Option<&[f64]>, targets: &[Target]) -> Vec<f64> {
    let mut pairs: Vec<(f64, f64)> = v
        .iter()
        .enumerate()
        .map(|(i, x)| (*x, mass(w, i)))
        .collect();
    pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total: f64 = pairs.iter().map(|p| p.1).sum();
    targets
        .iter()
        .map(|t| {
            let mut cum = 0.0;
            for (x, m) in &pairs {
                cum += m;
                let hit = match t {
                    Target::Count(c) => cum >= *c,
                    Target::Fraction(q) => cum / total >= *q,
                };
                if hit {
                    return *x;
                }
            }
            pairs.last().map_or(f64::NAN, |p| p.0)
        })
        .collect()
}

/// Quantile-bin states of every slice of every spec from the kept rows: `[spec][id]` gives
/// (edges, bins x BIN_FIELDS); slices without rows get no edges and empty bins.
///
/// `hist`, when given, is the [`ProbHist`] of the kept (unweighted, probability) rows built in
/// the pass: the overall slice then only gathers the rows of its quantiles' buckets.
pub fn quantile_bin_states(
    rows: &RankRows,
    n_ids: &[usize],
    n_bins: usize,
    hist: Option<&ProbHist>,
) -> QuantileBins {
    let weights = (!rows.weights.is_empty()).then_some(rows.weights.as_slice());
    let mut out = Vec::with_capacity(n_ids.len());
    // The overall slice: every row, parallel inside.
    let prebuilt = hist
        .filter(|_| weights.is_none() && !rows.scores.is_empty())
        .and_then(|h| HistQuantiles::new(h, n_bins));
    out.push(vec![slice_quantile_bins_with(
        &rows.scores,
        &rows.labels,
        weights,
        n_bins,
        prebuilt,
    )]);
    for (k, ids) in rows.ids.iter().enumerate() {
        let n = n_ids[k + 1];
        // Group the rows by slice, stably (row order is kept inside a slice).
        let mut start = vec![0usize; n + 1];
        for id in ids {
            start[*id as usize + 1] += 1;
        }
        for i in 0..n {
            start[i + 1] += start[i];
        }
        let mut fill = start.clone();
        let len = ids.len();
        let mut s = vec![0.0; len];
        let mut y = vec![0u8; len];
        let mut w = vec![0.0; if weights.is_some() { len } else { 0 }];
        for (i, id) in ids.iter().enumerate() {
            let at = fill[*id as usize];
            fill[*id as usize] += 1;
            s[at] = rows.scores[i];
            y[at] = rows.labels[i];
            if let Some(ws) = weights {
                w[at] = ws[i];
            }
        }
        let per_id: Vec<(Vec<f64>, Vec<f64>)> = (0..n)
            .into_par_iter()
            .map(|id| {
                let (a, b) = (start[id], start[id + 1]);
                if a == b {
                    return (Vec::new(), vec![0.0; n_bins * BIN_FIELDS]);
                }
                let wslice = weights.map(|_| &w[a..b]);
                slice_quantile_bins(&s[a..b], &y[a..b], wslice, n_bins)
            })
            .collect();
        out.push(per_id);
    }
    out
}

/// The quantile edges and bin states of one slice's rows.
pub fn slice_quantile_bins(
    s: &[f64],
    y: &[u8],
    w: Option<&[f64]>,
    n_bins: usize,
) -> (Vec<f64>, Vec<f64>) {
    slice_quantile_bins_with(s, y, w, n_bins, None)
}

/// [`slice_quantile_bins`], planned from the histogram of the same (unweighted) rows when
/// given.
fn slice_quantile_bins_with(
    s: &[f64],
    y: &[u8],
    w: Option<&[f64]>,
    n_bins: usize,
    hist: Option<HistQuantiles>,
) -> (Vec<f64>, Vec<f64>) {
    if s.is_empty() {
        return (Vec::new(), vec![0.0; n_bins * BIN_FIELDS]);
    }
    if let Some(hq) = hist {
        // Whole buckets are binned from the histogram; one pass gathers the rest.
        let parts: Vec<Gathered> = s
            .par_chunks(PART)
            .enumerate()
            .map(|(p, c)| {
                let mut got = hq.gather_slots();
                hq.scan(c, |j, sl| got[sl].push((c[j], 1.0, y[p * PART + j] as f64)));
                got
            })
            .collect();
        return hq.finish(parts);
    }
    let plan = EdgePlan::new(s.len(), w.is_some(), n_bins);
    let Some(buckets) = Buckets::build(s, w) else {
        // All scores equal (or packed too tightly to bucket): edges by sorting, then bin.
        let edges = plan.edges(&select_sorted(s, w, &plan.targets));
        let mut bins = vec![0.0; n_bins * BIN_FIELDS];
        for (i, x) in s.iter().enumerate() {
            add_bin(
                &mut bins,
                quantile_bin(&edges, *x),
                *x,
                y[i] as f64,
                mass(w, i),
            );
        }
        return (edges, bins);
    };
    // One pass bins every row whose bucket holds no target (its bin is known from the
    // buckets alone) and gathers the rest, which are binned once the edges are known.
    let found = buckets.locate(&plan.targets);
    let (needed, slot) = buckets.slots(&found);
    let bucket_bin = bucket_bins(&plan, &buckets, &found);
    type Part = (Vec<f64>, Gathered);
    let parts: Vec<Part> = s
        .par_chunks(PART)
        .enumerate()
        .map(|(p, c)| {
            let mut bins = vec![0.0; n_bins * BIN_FIELDS];
            let mut got = vec![Vec::new(); needed];
            if w.is_some() {
                for (j, x) in c.iter().enumerate() {
                    let i = p * PART + j;
                    let b = buckets.bucket(*x);
                    let sl = slot[b];
                    if sl == u32::MAX {
                        add_bin(&mut bins, bucket_bin[b], *x, y[i] as f64, mass(w, i));
                    } else {
                        got[sl as usize].push((*x, mass(w, i), y[i] as f64));
                    }
                }
                return (bins, got);
            }
            // Unweighted: rows, weight, squared weight and positives are integer counts (the
            // same values add_bin's sums of ones reach); only the scores are summed as floats,
            // in the same order.
            let (mut rows, mut pos) = (vec![0u32; n_bins], vec![0u32; n_bins]);
            for (j, x) in c.iter().enumerate() {
                let i = p * PART + j;
                let b = buckets.bucket(*x);
                let sl = slot[b];
                if sl == u32::MAX {
                    let k = bucket_bin[b];
                    rows[k] += 1;
                    pos[k] += y[i] as u32;
                    bins[k * BIN_FIELDS + WS] += *x;
                } else {
                    got[sl as usize].push((*x, 1.0, y[i] as f64));
                }
            }
            for (k, (r, q)) in rows.iter().zip(&pos).enumerate() {
                let c = &mut bins[k * BIN_FIELDS..(k + 1) * BIN_FIELDS];
                let r = *r as f64;
                (c[N], c[W], c[W2], c[WY]) = (r, r, r, *q as f64);
            }
            (bins, got)
        })
        .collect();
    let mut bins = vec![0.0; n_bins * BIN_FIELDS];
    let mut got_parts = Vec::with_capacity(parts.len());
    for (b, got) in parts {
        for (a, x) in bins.iter_mut().zip(&b) {
            *a += x;
        }
        got_parts.push(got);
    }
    finish_quantile_bins(&plan, &buckets, &found, &slot, bins, got_parts)
}

/// Rows gathered per slot of the quantiles' buckets, in row order: (score, mass, label).
pub type Gathered = Vec<Vec<(f64, f64, f64)>>;

/// The bin of the rows of each bucket that holds no target (the bucket lies wholly inside
/// one bin: each edge lies at or below its upper order statistic, in that statistic's bucket).
fn bucket_bins(plan: &EdgePlan, buckets: &Buckets, found: &[(usize, f64)]) -> Vec<usize> {
    let upper: Vec<usize> = plan
        .edges
        .iter()
        .map(|&(a, b, _)| found[a].0.max(found[b].0))
        .collect();
    let inner = &upper[1..upper.len() - 1];
    (0..buckets.k)
        .map(|b| inner.iter().filter(|u| **u < b).count())
        .collect()
}

/// The quantile bins of one slice's unweighted probability rows, planned from their
/// [`ProbHist`]: the rows of every bucket that holds no quantile go to their bin straight
/// from the histogram, so only the rows of the few buckets that do ([`HistQuantiles::scan`])
/// are gathered, in row order, for [`HistQuantiles::finish`]. The result has the same bits as
/// [`slice_quantile_bins`] over the same rows.
pub struct HistQuantiles {
    plan: EdgePlan,
    buckets: Buckets,
    found: Vec<(usize, f64)>,
    slot: Vec<u32>,
    needed: usize,
    bins: Vec<f64>,
}

impl HistQuantiles {
    /// `None` when the histogram is empty or its scores are crowded into a bucket that holds
    /// a quantile (every row is then needed: [`slice_quantile_bins`]).
    pub fn new(hist: &ProbHist, n_bins: usize) -> Option<HistQuantiles> {
        let rows: f64 = hist.rows.iter().sum();
        let plan = EdgePlan::new(rows as usize, false, n_bins);
        let buckets = Buckets::from_probability_counts(&hist.rows, &plan.targets)?;
        debug_assert!(buckets.lo == 0.0 && buckets.k == PROB_BUCKETS);
        let found = buckets.locate(&plan.targets);
        let (needed, slot) = buckets.slots(&found);
        let bucket_bin = bucket_bins(&plan, &buckets, &found);
        let mut bins = vec![0.0; n_bins * BIN_FIELDS];
        for b in (0..buckets.k).filter(|b| slot[*b] == u32::MAX) {
            let c = &mut bins[bucket_bin[b] * BIN_FIELDS..(bucket_bin[b] + 1) * BIN_FIELDS];
            c[N] += hist.rows[b];
            c[W] += hist.rows[b];
            c[W2] += hist.rows[b];
            c[WS] += hist.scores[b];
            c[WY] += hist.positives[b];
        }
        Some(HistQuantiles {
            plan,
            buckets,
            found,
            slot,
            needed,
            bins,
        })
    }

    /// Empty lists to gather one part's rows into.
    pub fn gather_slots(&self) -> Gathered {
        vec![Vec::new(); self.needed]
    }

    /// Calls `hit(j, slot)`, in order, for each `s[j]` whose bucket holds a quantile.
    #[inline]
    pub fn scan(&self, s: &[f64], mut hit: impl FnMut(usize, usize)) {
        // The buckets are the probability buckets: `prob_bucket` and a fixed-size table.
        let slot: &[u32; PROB_BUCKETS] = self.slot[..].try_into().expect("probability buckets");
        for (j, x) in s.iter().enumerate() {
            let sl = slot[prob_bucket(*x)];
            if sl != u32::MAX {
                hit(j, sl as usize);
            }
        }
    }

    /// The edges and bin states, from the gathered rows of every part (in row order).
    pub fn finish(self, parts: Vec<Gathered>) -> (Vec<f64>, Vec<f64>) {
        finish_quantile_bins(
            &self.plan,
            &self.buckets,
            &self.found,
            &self.slot,
            self.bins,
            parts,
        )
    }
}

/// The edges from the gathered rows of the quantiles' buckets (`parts[p][slot]`, in row order),
/// and those rows added to `bins`.
fn finish_quantile_bins(
    plan: &EdgePlan,
    buckets: &Buckets,
    found: &[(usize, f64)],
    slot: &[u32],
    mut bins: Vec<f64>,
    parts: Vec<Gathered>,
) -> (Vec<f64>, Vec<f64>) {
    let needed = parts.first().map_or(0, Vec::len);
    let mut gathered = concat_parts(parts, needed);
    for g in gathered.iter_mut() {
        g.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    let pairs: Vec<Vec<(f64, f64)>> = gathered
        .iter()
        .map(|g| g.iter().map(|(x, m, _)| (*x, *m)).collect())
        .collect();
    let edges = plan.edges(&buckets.resolve(&plan.targets, found, slot, &pairs));
    for g in &gathered {
        for (x, m, label) in g {
            add_bin(&mut bins, quantile_bin(&edges, *x), *x, *label, *m);
        }
    }
    (edges, bins)
}

// ---------------------------------------------------------------------------------------------
// Calibration states from the sorted order

/// The calibration states built from rows already sorted by score (jobs that sort for exact
/// rank metrics anyway). In that order every state is filled front to back, so the walk is
/// sequential instead of scattering each row over dense per-slice grids, and quantile edges
/// are read off the order instead of selected.
#[derive(Clone, Debug, Default)]
pub struct SortedWant {
    /// Edges of the uniform bins (empty: none).
    pub uniform_edges: Vec<f64>,
    /// Quantile bins per slice (0: none).
    pub quantile_bins: usize,
    /// The SmoothECE grid.
    pub grid: bool,
    /// The logit grid of the calibration fit.
    pub logit: bool,
    /// The records' weights are row counts of an unweighted job (a compacted partial state's
    /// entries): quantile edges are then order statistics of the rows they stand for.
    pub counted: bool,
}

impl SortedWant {
    /// Whether any state is asked for.
    pub fn any(&self) -> bool {
        !self.uniform_edges.is_empty() || self.quantile_bins > 0 || self.grid || self.logit
    }
}

/// One slice's calibration states (the layouts of the streaming pass; empty when not asked).
#[derive(Clone, Debug, Default)]
pub struct SliceCalib {
    /// Uniform bins, `bins x BIN_FIELDS`.
    pub bins: Vec<f64>,
    /// Quantile bins: (edges, `bins x BIN_FIELDS`); no edges for a slice without rows.
    pub quantile: (Vec<f64>, Vec<f64>),
    pub grid: Vec<f64>,
    pub logit: Vec<f64>,
}

impl SliceCalib {
    fn zeros(want: &SortedWant) -> SliceCalib {
        let z = |on: bool, len: usize| if on { vec![0.0; len] } else { Vec::new() };
        let uniform = want.uniform_edges.len().saturating_sub(1);
        SliceCalib {
            bins: z(uniform > 0, uniform * BIN_FIELDS),
            quantile: (
                Vec::new(),
                z(want.quantile_bins > 0, want.quantile_bins * BIN_FIELDS),
            ),
            grid: z(want.grid, (GRID_CELLS + 1) * GRID_FIELDS),
            logit: z(want.logit, LOGIT_CELLS * LOGIT_FIELDS),
        }
    }

    fn add(&mut self, o: &SliceCalib) {
        for (a, b) in [
            (&mut self.bins, &o.bins),
            (&mut self.quantile.1, &o.quantile.1),
            (&mut self.grid, &o.grid),
            (&mut self.logit, &o.logit),
        ] {
            for (x, y) in a.iter_mut().zip(b) {
                *x += y;
            }
        }
    }
}

/// The states of the union of disjoint slices: their sum, in the order given. Uniform bins
/// and both grids have the same cells in every slice; quantile bins do not (their edges are
/// each slice's own), so they stay empty.
pub fn sum_calibration(parts: &[SliceCalib], want: &SortedWant) -> SliceCalib {
    let mut all = SliceCalib::zeros(&SortedWant {
        quantile_bins: 0,
        ..want.clone()
    });
    for p in parts {
        all.add(p);
    }
    all
}

/// Rows per block of the sorted calibration walk.
const BLOCK: usize = 2048;

/// Hands `each(a, b, c)` every maximal run `a..b` of rows `0..n` whose cell is `c`. With
/// `monotone`, the cells never increase along the rows (sorted scores, a monotone cell
/// function), so each run's end is found by galloping and bisection instead of testing every
/// row; otherwise every row is tested.
#[inline(always)]
fn cell_runs(
    n: usize,
    monotone: bool,
    cell: impl Fn(usize) -> usize,
    mut each: impl FnMut(usize, usize, usize),
) {
    let mut a = 0;
    while a < n {
        let c = cell(a);
        let mut end = a + 1;
        if monotone {
            // Rows a..lo are in the run; hi is past it or n.
            let (mut lo, mut hi, mut step) = (a + 1, (a + 2).min(n), 2);
            while hi < n && cell(hi) == c {
                lo = hi + 1;
                step *= 2;
                hi = (a + step).min(n);
            }
            while lo < hi {
                let m = lo + (hi - lo) / 2;
                if cell(m) == c {
                    lo = m + 1;
                } else {
                    hi = m;
                }
            }
            end = lo;
        } else {
            while end < n && cell(end) == c {
                end += 1;
            }
        }
        each(a, end, c);
        a = end;
    }
}

/// The sums of `row(j)` over rows `a..b`. Four interleaved accumulators keep the adds
/// independent (one running sum would wait on the previous row's add); the order of the adds
/// depends only on the positions, so the result is the same on every run.
#[inline(always)]
fn range_sums<const F: usize>(a: usize, b: usize, row: impl Fn(usize) -> [f64; F]) -> [f64; F] {
    let mut acc = [[0.0f64; 4]; F];
    let mut j = a;
    while j + 4 <= b {
        let v = [row(j), row(j + 1), row(j + 2), row(j + 3)];
        for (f, lanes) in acc.iter_mut().enumerate() {
            for (l, lane) in lanes.iter_mut().enumerate() {
                *lane += v[l][f];
            }
        }
        j += 4;
    }
    for i in j..b {
        for (lanes, v) in acc.iter_mut().zip(row(i)) {
            lanes[0] += v;
        }
    }
    let mut sums = [0.0f64; F];
    for (t, l) in sums.iter_mut().zip(&acc) {
        *t = (l[0] + l[1]) + (l[2] + l[3]);
    }
    sums
}

/// The calibration states of one slice from its rows sorted by descending score (ties in any
/// fixed order). Parts of fixed length are walked in parallel and added in order, so the
/// result does not depend on the thread count.
pub fn sorted_run_calibration<R: crate::sorted::Rec>(run: &[R], want: &SortedWant) -> SliceCalib {
    let mut out = SliceCalib::zeros(want);
    if run.is_empty() || !want.any() {
        return out;
    }
    let n = run.len();
    let score = |r: &R| crate::sorted::score_of_key(r.key());
    let qn = want.quantile_bins;
    if qn > 0 {
        // The order statistics straight from the order (ascending rank r sits at n - 1 - r).
        let counted = R::WEIGHTED && want.counted;
        let rows = if counted {
            run.iter().map(|r| r.w()).sum::<f64>() as usize
        } else {
            n
        };
        let plan = EdgePlan::new(rows, R::WEIGHTED && !counted, qn);
        let values: Vec<f64> = if counted {
            // The c-th smallest row: the first entry (ascending) whose running count reaches c.
            let mut values = Vec::with_capacity(plan.targets.len());
            let mut cum = 0.0;
            for r in run.iter().rev() {
                cum += r.w();
                while values.len() < plan.targets.len() {
                    let Target::Count(c) = plan.targets[values.len()] else {
                        unreachable!("unweighted targets are counts")
                    };
                    if cum < c {
                        break;
                    }
                    values.push(score(r));
                }
            }
            // (Only a forged state's counts, summing past 2^53, could leave targets unmet.)
            values.resize(plan.targets.len(), score(&run[0]));
            values
        } else if R::WEIGHTED {
            let total: f64 = run.iter().rev().map(|r| r.w()).sum();
            let mut values = vec![score(&run[0]); plan.targets.len()];
            let (mut cum, mut t) = (0.0, 0);
            for r in run.iter().rev() {
                cum += r.w();
                while t < plan.targets.len() {
                    let Target::Fraction(q) = plan.targets[t] else {
                        unreachable!("weighted targets are fractions")
                    };
                    if cum / total < q {
                        break;
                    }
                    values[t] = score(r);
                    t += 1;
                }
            }
            values
        } else {
            plan.targets
                .iter()
                .map(|t| match *t {
                    Target::Count(c) => score(&run[n - c as usize]),
                    Target::Fraction(_) => unreachable!("unweighted targets are counts"),
                })
                .collect()
        };
        out.quantile.0 = plan.edges(&values);
    }
    let qedges = out.quantile.0.clone();
    let parts: Vec<SliceCalib> = run
        .par_chunks(PART)
        .map(|part_rows| calibrate_part(part_rows, want, &qedges))
        .collect();
    for p in &parts {
        out.add(p);
    }
    out
}

/// The calibration states of one part of a sorted run (see [`sorted_run_calibration`]).
fn calibrate_part<R: crate::sorted::Rec>(
    part_rows: &[R],
    want: &SortedWant,
    qedges: &[f64],
) -> SliceCalib {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked just above).
            return unsafe { calibrate_part_avx2(part_rows, want, qedges) };
        }
    }
    calibrate_part_body(part_rows, want, qedges)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn calibrate_part_avx2<R: crate::sorted::Rec>(
    part_rows: &[R],
    want: &SortedWant,
    qedges: &[f64],
) -> SliceCalib {
    calibrate_part_body(part_rows, want, qedges)
}

/// Separate adds and multiplies only, so both builds give the same bits.
#[inline(always)]
fn calibrate_part_body<R: crate::sorted::Rec>(
    part_rows: &[R],
    want: &SortedWant,
    qedges: &[f64],
) -> SliceCalib {
    let score = |r: &R| crate::sorted::score_of_key(r.key());
    let qn = want.quantile_bins;
    let mut part = SliceCalib::zeros(want);
    // Blocks small enough for L1: no large temporaries, and every state's loop reads
    // the decoded block from cache.
    let (mut s, mut y, mut w) = (Vec::new(), Vec::new(), Vec::new());
    let mut lg = Vec::new();
    for c in part_rows.chunks(BLOCK) {
        s.clear();
        s.extend(c.iter().map(score));
        y.clear();
        y.extend(c.iter().map(|r| (r.tag() & 1) as f64));
        w.clear();
        if R::WEIGHTED {
            w.extend(c.iter().map(|r| r.w()));
        }
        let w_at = |j: usize| if R::WEIGHTED { w[j] } else { 1.0 };
        let n = c.len();
        // A counted entry stands for `wj` rows of weight one: wj rows, weight wj, and a sum of
        // squared weights wj.
        let counted = want.counted;
        let bin_fields = |j: usize| {
            let (x, wj) = (s[j], w_at(j));
            if counted {
                [wj, wj, wj, wj * x, wj * y[j]]
            } else {
                [1.0, wj, wj * wj, wj * x, wj * y[j]]
            }
        };
        let add = |cells: &mut [f64], at: usize, v: &[f64]| {
            for (a, v) in cells[at..at + v.len()].iter_mut().zip(v) {
                *a += v;
            }
        };
        if !part.bins.is_empty() {
            let edges = &want.uniform_edges;
            let bins = &mut part.bins;
            cell_runs(
                n,
                true,
                |j| uniform_bin(edges, s[j]),
                |a, b, k| add(bins, k * BIN_FIELDS, &range_sums(a, b, bin_fields)),
            );
        }
        if qn > 0 {
            let bins = &mut part.quantile.1;
            cell_runs(
                n,
                true,
                |j| quantile_bin(qedges, s[j]),
                |a, b, k| add(bins, k * BIN_FIELDS, &range_sums(a, b, bin_fields)),
            );
        }
        if want.grid {
            let g = &mut part.grid;
            cell_runs(
                n,
                true,
                |j| grid_cell(s[j]),
                |a, b, i| {
                    let fields = |j: usize| {
                        let (x, wj) = (s[j], w_at(j));
                        let f = x * GRID_CELLS as f64 - i as f64;
                        let r = wj * (y[j] - x);
                        [wj * (1.0 - f), r * (1.0 - f), wj * f, r * f]
                    };
                    add(g, i * GRID_FIELDS, &range_sums(a, b, fields))
                },
            );
        }
        if want.logit {
            lg.clear();
            crate::fastmath::logits(&s, &mut lg);
            let l = &mut part.logit;
            // Galloping trusts the logits to be monotone in the sorted scores. The fast
            // logarithm is not promised monotone to the last bit; a row a rounding away from a
            // cell's edge may then join the neighbouring run, where its offset d from that
            // centre is still exact: the cell's moments stay valid.
            cell_runs(
                n,
                true,
                |j| logit_cell(lg[j]),
                |a, b, i| {
                    let centre = logit_centre(i);
                    let fields = |j: usize| {
                        let wj = w_at(j);
                        let d = lg[j] - centre;
                        let wd = wj * d;
                        [wj, wd, wd * d, wd * d * d, wj * y[j], wd * y[j]]
                    };
                    add(l, i * LOGIT_FIELDS, &range_sums(a, b, fields))
                },
            );
        }
    }
    part
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(n: usize, seed: u64) -> Vec<f64> {
        let mut x = seed;
        (0..n)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (x >> 11) as f64 / (1u64 << 53) as f64
            })
            .collect()
    }

    #[test]
    fn galloping_runs_equal_scanned_runs() {
        for (n, k) in [
            (0usize, 3usize),
            (1, 1),
            (5, 9),
            (1000, 3),
            (2048, 40),
            (777, 700),
        ] {
            let mut cells: Vec<usize> = lcg(n, (n + k) as u64)
                .iter()
                .map(|u| (u * k as f64) as usize)
                .collect();
            cells.sort_unstable_by(|a, b| b.cmp(a));
            let runs = |monotone: bool| {
                let mut out = Vec::new();
                cell_runs(n, monotone, |j| cells[j], |a, b, c| out.push((a, b, c)));
                out
            };
            let scanned = runs(false);
            assert_eq!(runs(true), scanned);
            assert_eq!(scanned.iter().map(|r| r.1 - r.0).sum::<usize>(), n);
            assert!(scanned
                .windows(2)
                .all(|w| w[0].1 == w[1].0 && w[0].2 > w[1].2));
        }
    }

    #[test]
    fn range_sums_equal_a_plain_sum_of_integers() {
        let v: Vec<f64> = (0..103).map(|i| (i * 7 % 11) as f64).collect();
        for (a, b) in [(0usize, 0usize), (0, 3), (5, 103), (2, 9)] {
            let got = range_sums(a, b, |j| [1.0, v[j], v[j] * v[j]]);
            let want: [f64; 3] = [
                (b - a) as f64,
                v[a..b].iter().sum(),
                v[a..b].iter().map(|x| x * x).sum(),
            ];
            assert_eq!(got, want);
        }
    }

    #[test]
    fn quantile_edges_equal_a_sort() {
        for (n, bins) in [(1usize, 3usize), (2, 10), (17, 4), (1000, 10), (300_000, 7)] {
            let mut v = lcg(n, n as u64);
            // Heavy ties in part of the data.
            for x in v.iter_mut().take(n / 3) {
                *x = (*x * 4.0).floor() / 4.0;
            }
            let mut sorted = v.clone();
            sorted.sort_by(f64::total_cmp);
            let step = 1.0 / bins as f64;
            let expect: Vec<f64> = (0..=bins)
                .map(|k| {
                    let q = if k == bins { 1.0 } else { k as f64 * step };
                    crate::bootstrap::quantile_sorted(&sorted, q)
                })
                .collect();
            assert_eq!(quantile_edges(&v, None, bins), expect, "n={n}");
            // Unit weights: the inverted CDF picks order statistic ceil(q n) (1-based).
            let ones = vec![1.0; n];
            let got = quantile_edges(&v, Some(&ones), bins);
            for (k, g) in got.iter().enumerate() {
                let q = if k == bins { 1.0 } else { k as f64 * step };
                let r = ((q * n as f64).ceil() as usize).max(1) - 1;
                assert_eq!(*g, sorted[r], "n={n} k={k}");
            }
        }
    }

    #[test]
    fn fused_quantile_bins_equal_edges_then_binning() {
        for (n, bins, weighted) in [
            (5usize, 3usize, false),
            (3000, 10, false),
            (300_000, 15, true),
        ] {
            let mut v = lcg(n, 7 + n as u64);
            for x in v.iter_mut().skip(n / 2) {
                *x = (*x * 8.0).floor() / 8.0; // ties, some on the edges
            }
            let y: Vec<u8> = lcg(n, 11).iter().map(|u| (*u < 0.4) as u8).collect();
            let w: Vec<f64> = lcg(n, 13).iter().map(|u| 1.0 + (u * 4.0).floor()).collect();
            let w = weighted.then_some(w.as_slice());
            let (edges, got) = slice_quantile_bins(&v, &y, w, bins);
            assert_eq!(edges, quantile_edges(&v, w, bins));
            let mut expect = vec![0.0; bins * BIN_FIELDS];
            for i in 0..n {
                let m = w.map_or(1.0, |w| w[i]);
                add_bin(
                    &mut expect,
                    quantile_bin(&edges, v[i]),
                    v[i],
                    y[i] as f64,
                    m,
                );
            }
            for (a, b) in got.iter().zip(&expect) {
                assert!((a - b).abs() <= 1e-9 * b.abs().max(1.0), "{a} vs {b}");
            }
            let counts = |b: &[f64]| b.chunks(BIN_FIELDS).map(|c| c[N]).collect::<Vec<_>>();
            assert_eq!(counts(&got), counts(&expect));
        }
    }

    #[test]
    fn uniform_bins_are_left_closed() {
        let e = uniform_edges(10);
        assert_eq!(uniform_bin(&e, 0.0), 0);
        assert_eq!(uniform_bin(&e, 1.0), 9);
        for k in 1..10 {
            assert_eq!(uniform_bin(&e, e[k]), k, "edge {k}");
            assert_eq!(uniform_bin(&e, e[k].next_down()), k - 1);
        }
        let e = uniform_edges(100);
        assert_eq!(uniform_bin(&e, 0.29), 29);
        assert_eq!(quantile_bin(&[0.0, 0.5, 1.0], 0.5), 0);
        assert_eq!(quantile_bin(&[0.0, 0.5, 1.0], 0.6), 1);
    }

    #[test]
    fn murphy_decomposition_is_exact() {
        let s = lcg(5000, 3);
        let y: Vec<f64> = lcg(5000, 4)
            .iter()
            .zip(&s)
            .map(|(u, p)| (u < &(p * p)) as u8 as f64)
            .collect();
        let e = uniform_edges(10);
        let mut bins = vec![0.0; 10 * BIN_FIELDS];
        for (p, t) in s.iter().zip(&y) {
            add_bin(&mut bins, uniform_bin(&e, *p), *p, *t, 1.0);
        }
        let rel = bin_metric(Metric::BrierReliability, &bins).unwrap();
        let res = bin_metric(Metric::BrierResolution, &bins).unwrap();
        let unc = bin_metric(Metric::BrierUncertainty, &bins).unwrap();
        let mut binned = 0.0;
        for (p, t) in s.iter().zip(&y) {
            let c = &bins[uniform_bin(&e, *p) * BIN_FIELDS..];
            let m = c[WS] / c[W];
            binned += (m - t) * (m - t);
        }
        binned /= s.len() as f64;
        assert!((rel - res + unc - binned).abs() < 1e-12);
    }

    #[test]
    fn logistic_fit_recovers_a_planted_slope() {
        // Scores whose true calibration is sigmoid(0.3 + 0.6 logit(s)), as expected counts.
        let mut cells = vec![0.0; LOGIT_CELLS * LOGIT_FIELDS];
        for s in lcg(20_000, 9) {
            let s = 0.001 + 0.998 * s;
            let p = sigmoid(0.3 + 0.6 * logit(s));
            add_logit(&mut cells, s, 1.0, p);
            add_logit(&mut cells, s, 0.0, 1.0 - p);
        }
        let fit = logistic_fit(&cells).unwrap();
        assert!((fit.slope - 0.6).abs() < 1e-6, "{fit:?}");
        assert!((fit.intercept - 0.3).abs() < 1e-6, "{fit:?}");
        assert!(fit.cov[0] > 0.0 && fit.cov[2] > 0.0);
    }

    #[test]
    fn logistic_fit_handles_hard_scores_and_separation() {
        // Hard 0/1 scores, 80% right: two points on the logit scale; the MLE is finite.
        let mut cells = vec![0.0; LOGIT_CELLS * LOGIT_FIELDS];
        add_logit(&mut cells, 1.0, 1.0, 80.0);
        add_logit(&mut cells, 1.0, 0.0, 20.0);
        add_logit(&mut cells, 0.0, 0.0, 80.0);
        add_logit(&mut cells, 0.0, 1.0, 20.0);
        let fit = logistic_fit(&cells).unwrap();
        // P(y=1 | s=1) = 0.8 = sigmoid(a + b L), P(y=1 | s=0) = 0.2 = sigmoid(a - b L).
        let l = logit(1.0);
        let expect = (0.8f64 / 0.2).ln() / l;
        assert!((fit.slope - expect).abs() < 1e-9, "{fit:?} vs {expect}");
        assert!(fit.intercept.abs() < 1e-9, "{fit:?}");
        // Separated classes have no finite fit.
        let mut cells = vec![0.0; LOGIT_CELLS * LOGIT_FIELDS];
        for (s, y) in [(0.1, 0.0), (0.2, 0.0), (0.8, 1.0), (0.9, 1.0)] {
            add_logit(&mut cells, s, y, 1.0);
        }
        assert_eq!(logistic_fit(&cells), Err(NO_FIT));
    }

    /// The cells of `rows` (score, label, weight) summed as two shards split at `k`, merged.
    fn split_cells(rows: &[(f64, f64, f64)], k: usize) -> Vec<f64> {
        let (mut a, mut b) = (
            vec![0.0; LOGIT_CELLS * LOGIT_FIELDS],
            vec![0.0; LOGIT_CELLS * LOGIT_FIELDS],
        );
        for (i, (s, y, w)) in rows.iter().enumerate() {
            add_logit(if i < k { &mut a } else { &mut b }, *s, *y, *w);
        }
        a.iter().zip(&b).map(|(x, y)| x + y).collect()
    }

    #[test]
    fn logistic_fit_refuses_quasi_separation_whatever_the_split() {
        // A slice found by the split-and-merge property test: five tied scores, every negative
        // at the top score, which also holds positives; every lower score all positives. The
        // likelihood keeps rising as the slope goes to minus infinity, so there is no fit; Newton
        // used to stop wherever rounding let it (a slope of -19.96 one way, -19.75 or null another).
        let mut rows: Vec<(f64, f64, f64)> = vec![
            (0.1, 1.0, 0.646648187515272),
            (0.5, 1.0, 1.4046015617423293),
            (0.95, 1.0, 4.550648528968286),
            (0.5, 1.0, 1.4698200403998019),
            (0.1, 1.0, 2.8432394758477195),
            (0.8, 1.0, 4.964157588346317),
            (0.1, 1.0, 3.44459221316953),
            (0.95, 1.0, 1.9771215939681355),
            (0.95, 1.0, 3.119853814685185),
            (0.35, 1.0, 0.4035858023441451),
            (0.5, 1.0, 0.5611095650418029),
            (0.5, 1.0, 0.5009226723359128),
            (0.95, 1.0, 3.6477504162282357),
            (0.95, 1.0, 1.3467922427305257),
            (0.5, 1.0, 0.28035560379232516),
            (0.8, 1.0, 2.952126020614323),
            (0.1, 1.0, 1.605591911858574),
            (0.95, 0.0, 0.4969870376480975),
            (0.95, 1.0, 2.954342513073242),
            (0.5, 1.0, 1.8517680857407148),
            (0.5, 1.0, 1.663853660736468),
            (0.1, 1.0, 3.188348407254449),
            (0.1, 1.0, 2.6146627838854237),
            (0.1, 1.0, 1.8768624808267782),
            (0.1, 1.0, 4.685377087984574),
            (0.1, 1.0, 1.8063602195328188),
            (0.1, 1.0, 0.6120680405904897),
        ];
        for k in 0..=rows.len() {
            assert_eq!(
                logistic_fit(&split_cells(&rows, k)),
                Err(NO_FIT),
                "split at {k}"
            );
        }
        // Negatives below the top score too: the classes overlap, the fit is finite, and equal
        // to rounding whatever the split (a cell of tied scores is one point, not a spread of
        // rounding noise).
        rows.push((0.5, 0.0, 1.3));
        rows.push((0.1, 0.0, 0.4));
        let fits: Vec<LogisticFit> = (0..=rows.len())
            .map(|k| logistic_fit(&split_cells(&rows, k)).unwrap())
            .collect();
        for f in &fits {
            assert!(
                (f.slope - fits[0].slope).abs() <= 1e-12 * fits[0].slope.abs(),
                "{fits:?}"
            );
            assert!((f.intercept - fits[0].intercept).abs() <= 1e-12 * fits[0].intercept.abs());
        }
    }

    #[test]
    fn smooth_ece_of_a_calibrated_grid_is_small() {
        let mut grid = vec![0.0; (GRID_CELLS + 1) * GRID_FIELDS];
        for s in lcg(10_000, 5) {
            // Expected labels: exactly calibrated.
            add_grid(&mut grid, s, 1.0, s);
            add_grid(&mut grid, s, 0.0, 1.0 - s);
        }
        let v = smooth_ece(&grid).unwrap();
        assert!(v < 0.002, "{v}");
        let mut grid = vec![0.0; (GRID_CELLS + 1) * GRID_FIELDS];
        for s in lcg(10_000, 5) {
            let p = s * 0.5; // badly over-confident
            add_grid(&mut grid, s, 1.0, p);
            add_grid(&mut grid, s, 0.0, 1.0 - p);
        }
        let v = smooth_ece(&grid).unwrap();
        assert!(v > 0.15 && v < 0.3, "{v}");
    }
}
