//! The regression task family: its per-slice state, the pass's row kernel, the merge rule of
//! its blocks and its finalizers (the engine calls these through `engine::family`).
//!
//! A slice's state holds weighted sums that add up (absolute and squared errors, percentage
//! errors, log errors) and the co-moments of (label, prediction, error) about their running
//! means, merged with Chan et al.'s pairwise update. Means and second moments are never formed
//! as E[x^2] - E[x]^2: with labels around 1e9 and a spread of 1, that difference loses every
//! digit, while the co-moments keep R^2 and Pearson's r exact to rounding.
//!
//! Conventions (each one as scikit-learn where it defines the metric): the error is
//! `prediction - label` (so `mean_error`, the bias, is positive for over-prediction); a weight
//! of zero counts a row but moves no sum; `mape` divides by `max(|label|, f64::EPSILON)`
//! (scikit-learn's `mean_absolute_percentage_error`, as a fraction); `smape` is
//! `2 |e| / (|label| + |prediction|)`, 0 where both are 0; `wmape` is sum |e| / sum |label|.

pub mod family;

pub use family::RegressionOptions;

use crate::metrics::{Metric, Value};

/// Undefined-value notes of the regression metrics.
pub const CONSTANT_LABELS: &str = "undefined: the labels are constant in the slice";
pub const CONSTANT_PREDICTIONS: &str = "undefined: the predictions are constant in the slice";
pub const NO_WEIGHT: &str = "undefined: the slice has no rows of positive weight";
pub const ZERO_LABELS: &str = "undefined: the labels of the slice sum to zero in absolute value";
pub const OUT_OF_DOMAIN: &str =
    "undefined: a label or prediction of the slice lies at or below -1 (log1p is not defined)";

/// Whether `x` is above zero (false for NaN).
fn positive(x: f64) -> bool {
    x > 0.0
}

/// The mergeable state of one slice.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RegressionState {
    /// Rows (whatever their weight).
    pub rows: f64,
    /// Sum of weights.
    pub w: f64,
    /// Weighted means of the label, the prediction and the error (prediction - label).
    pub mean_y: f64,
    pub mean_p: f64,
    pub mean_e: f64,
    /// Weighted sums of squared deviations from those means, and of the label-prediction
    /// cross products.
    pub m2_y: f64,
    pub m2_p: f64,
    pub m2_e: f64,
    pub c_yp: f64,
    /// Weighted sums of |e|, e^2, |e| / max(|y|, eps), 2 |e| / (|y| + |p|), |y|, and
    /// (log1p(p) - log1p(y))^2 (NaN once a value at or below -1 was seen).
    pub abs_err: f64,
    pub sq_err: f64,
    pub ape: f64,
    pub sape: f64,
    pub abs_y: f64,
    pub sq_log_err: f64,
    /// Largest |e| of a row of positive weight (scikit-learn's `max_error` ignores weights).
    pub max_abs_err: f64,
}

impl RegressionState {
    /// The state of rows `(label, prediction, weight)` (weights of 1 when `w` is `None`): sums
    /// in row order, the co-moments in a second pass about the first pass's means.
    pub fn from_rows(y: &[f64], p: &[f64], w: Option<&[f64]>) -> RegressionState {
        let n = y.len();
        debug_assert_eq!(p.len(), n);
        let wt = |i: usize| w.map_or(1.0, |w| w[i]);
        let mut s = RegressionState {
            rows: n as f64,
            ..Default::default()
        };
        let (mut sy, mut sp, mut se) = (0.0, 0.0, 0.0);
        for i in 0..n {
            let (yi, pi, wi) = (y[i], p[i], wt(i));
            let e = pi - yi;
            s.w += wi;
            sy += wi * yi;
            sp += wi * pi;
            se += wi * e;
            let a = e.abs();
            s.abs_err += wi * a;
            s.sq_err += wi * e * e;
            s.ape += wi * a / yi.abs().max(f64::EPSILON);
            let d = yi.abs() + pi.abs();
            if d > 0.0 {
                s.sape += wi * 2.0 * a / d;
            }
            s.abs_y += wi * yi.abs();
            let l = if yi > -1.0 && pi > -1.0 {
                pi.ln_1p() - yi.ln_1p()
            } else {
                f64::NAN
            };
            s.sq_log_err += wi * l * l;
            if wi > 0.0 {
                s.max_abs_err = s.max_abs_err.max(a);
            }
        }
        if s.w > 0.0 {
            let (my, mp, me) = (sy / s.w, sp / s.w, se / s.w);
            // Second pass: deviations from the means (and the residual means of those
            // deviations, which a mean rounded to the nearest double leaves behind).
            let (mut dy, mut dp, mut de) = (0.0, 0.0, 0.0);
            for i in 0..n {
                let wi = wt(i);
                let (a, b, c) = (y[i] - my, p[i] - mp, (p[i] - y[i]) - me);
                dy += wi * a;
                dp += wi * b;
                de += wi * c;
                s.m2_y += wi * a * a;
                s.m2_p += wi * b * b;
                s.m2_e += wi * c * c;
                s.c_yp += wi * a * b;
            }
            // The corrected two-pass algorithm (Chan, Golub and LeVeque): subtract the squared
            // residual sums, and move the means by them.
            s.m2_y -= dy * dy / s.w;
            s.m2_p -= dp * dp / s.w;
            s.m2_e -= de * de / s.w;
            s.c_yp -= dy * dp / s.w;
            s.mean_y = my + dy / s.w;
            s.mean_p = mp + dp / s.w;
            s.mean_e = me + de / s.w;
        }
        s
    }

    /// Adds `o` (rows after `self`'s in the canonical order): sums add, means and co-moments
    /// merge by Chan et al.'s update.
    pub fn merge(&mut self, o: &RegressionState) {
        let (wa, wb) = (self.w, o.w);
        let w = wa + wb;
        if wb > 0.0 && wa > 0.0 {
            let f = wa * wb / w;
            let (dy, dp, de) = (
                o.mean_y - self.mean_y,
                o.mean_p - self.mean_p,
                o.mean_e - self.mean_e,
            );
            self.m2_y += o.m2_y + dy * dy * f;
            self.m2_p += o.m2_p + dp * dp * f;
            self.m2_e += o.m2_e + de * de * f;
            self.c_yp += o.c_yp + dy * dp * f;
            self.mean_y += dy * (wb / w);
            self.mean_p += dp * (wb / w);
            self.mean_e += de * (wb / w);
        } else if wb > 0.0 {
            self.mean_y = o.mean_y;
            self.mean_p = o.mean_p;
            self.mean_e = o.mean_e;
            self.m2_y = o.m2_y;
            self.m2_p = o.m2_p;
            self.m2_e = o.m2_e;
            self.c_yp = o.c_yp;
        }
        self.w = w;
        self.rows += o.rows;
        self.abs_err += o.abs_err;
        self.sq_err += o.sq_err;
        self.ape += o.ape;
        self.sape += o.sape;
        self.abs_y += o.abs_y;
        self.sq_log_err += o.sq_log_err;
        self.max_abs_err = self.max_abs_err.max(o.max_abs_err);
    }

    fn mean_of(&self, sum: f64) -> Value {
        if self.w > 0.0 {
            crate::metrics::finite(sum / self.w)
        } else {
            Err(NO_WEIGHT)
        }
    }

    pub fn mae(&self) -> Value {
        self.mean_of(self.abs_err)
    }

    pub fn mse(&self) -> Value {
        self.mean_of(self.sq_err)
    }

    pub fn rmse(&self) -> Value {
        self.mse().map(f64::sqrt)
    }

    /// Mean of prediction - label: positive when the model over-predicts.
    pub fn mean_error(&self) -> Value {
        if self.w > 0.0 {
            crate::metrics::finite(self.mean_e)
        } else {
            Err(NO_WEIGHT)
        }
    }

    pub fn max_error(&self) -> Value {
        if self.w > 0.0 {
            crate::metrics::finite(self.max_abs_err)
        } else {
            Err(NO_WEIGHT)
        }
    }

    pub fn mape(&self) -> Value {
        self.mean_of(self.ape)
    }

    pub fn smape(&self) -> Value {
        self.mean_of(self.sape)
    }

    pub fn wmape(&self) -> Value {
        if self.w <= 0.0 {
            Err(NO_WEIGHT)
        } else if self.abs_y > 0.0 {
            crate::metrics::finite(self.abs_err / self.abs_y)
        } else {
            Err(ZERO_LABELS)
        }
    }

    pub fn msle(&self) -> Value {
        if self.sq_log_err.is_nan() {
            return Err(OUT_OF_DOMAIN);
        }
        self.mean_of(self.sq_log_err)
    }

    pub fn rmsle(&self) -> Value {
        self.msle().map(f64::sqrt)
    }

    /// 1 - SS_res / SS_tot (undefined for constant labels, where scikit-learn returns 1 or 0).
    pub fn r2(&self) -> Value {
        if self.w <= 0.0 {
            return Err(NO_WEIGHT);
        }
        if !positive(self.m2_y) {
            return Err(CONSTANT_LABELS);
        }
        crate::metrics::finite(1.0 - self.sq_err / self.m2_y)
    }

    /// 1 - Var(error) / Var(label).
    pub fn explained_variance(&self) -> Value {
        if self.w <= 0.0 {
            return Err(NO_WEIGHT);
        }
        if !positive(self.m2_y) {
            return Err(CONSTANT_LABELS);
        }
        crate::metrics::finite(1.0 - self.m2_e / self.m2_y)
    }

    /// Pearson's correlation of label and prediction.
    pub fn pearson(&self) -> Value {
        if self.w <= 0.0 {
            return Err(NO_WEIGHT);
        }
        if !positive(self.m2_y) {
            return Err(CONSTANT_LABELS);
        }
        if !positive(self.m2_p) {
            return Err(CONSTANT_PREDICTIONS);
        }
        let r = self.c_yp / (self.m2_y.sqrt() * self.m2_p.sqrt());
        crate::metrics::in_range(r, -1.0, 1.0)
    }

    /// Lin's concordance correlation coefficient: 2 cov / (var_y + var_p + (mean_p - mean_y)^2)
    /// with population (1/W) moments.
    pub fn concordance(&self) -> Value {
        if self.w <= 0.0 {
            return Err(NO_WEIGHT);
        }
        let den = (self.m2_y + self.m2_p) / self.w + self.mean_e * self.mean_e;
        if !positive(den) {
            return Err(CONSTANT_LABELS);
        }
        crate::metrics::in_range(2.0 * self.c_yp / self.w / den, -1.0, 1.0)
    }
}

// ---------------------------------------------------------------------------------------------
// The family's blocks in the engine's per-slice states (see `state::SliceStates::fam`).

/// Fields of a [`RegressionState`] (see [`RegressionState::to_fields`]), the head of a block.
pub const FIELDS: usize = 16;
/// Deviance fields after them: the weighted sums of the Poisson, Gamma and Tweedie deviances,
/// and the Tweedie deviance of the slice's weighted mean label (d2_tweedie's denominator).
pub const DEV_FIELDS: usize = 4;
/// Fields appended to a block when analytic intervals are asked for: the sum of squared
/// weights, then for each of [`MEAN_METRICS`] the sums `w^2 (x - c)` and `w^2 (x - c)^2` about
/// the block's current mean `c` of the row quantity `x`.
pub const MOMENT_FIELDS: usize = 1 + 2 * MEAN_METRICS.len();

/// The metrics that are weighted means of a per-row quantity (analytic intervals: a normal
/// interval from the quantity's weighted variance), in the order of the moment fields.
pub const MEAN_METRICS: [Metric; 6] = [
    Metric::Mae,
    Metric::Mse,
    Metric::MeanError,
    Metric::Mape,
    Metric::Smape,
    Metric::Msle,
];

/// The shape of a job's regression blocks: `[state (FIELDS)][deviances (DEV_FIELDS)]
/// [interval: covered, width (2, with lower/upper columns)][pinball sums (quantiles)]
/// [moments?]`; a replicate slot holds the same fields but the moments (its `rows` is unused,
/// 0).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Layout {
    pub moments: bool,
    /// Whether the prediction interval's coverage and width are summed.
    pub interval: bool,
    /// Pinball quantiles (the distinct `pinball@q` of the job's metrics, in metric order).
    pub quantiles: usize,
    /// Whether the Tweedie deviances are computed, and at which power.
    pub deviance: bool,
    pub power: f64,
}

impl Layout {
    pub fn of(shape: &crate::state::StateShape) -> Layout {
        Layout {
            moments: shape.moments,
            interval: shape.interval,
            quantiles: shape.quantiles,
            deviance: shape.deviance,
            power: shape.power,
        }
    }

    /// Fields of a replicate slot (and of a block without its moments).
    pub fn fields(&self) -> usize {
        self.pinball_at() + self.quantiles
    }

    /// Where the pinball sums start (after the interval's two fields, when kept).
    pub fn pinball_at(&self) -> usize {
        FIELDS + DEV_FIELDS + 2 * self.interval as usize
    }

    /// Fields of a slice's block.
    pub fn block_len(&self) -> usize {
        self.fields() + if self.moments { MOMENT_FIELDS } else { 0 }
    }
}

/// The distinct pinball quantiles of `metrics`, in order (the layout of the pinball sums).
pub fn pinball_quantiles(metrics: &[Metric]) -> Vec<f64> {
    let mut out: Vec<f64> = Vec::new();
    for m in metrics {
        if let Metric::Pinball(q) = m {
            if !out.contains(q) {
                out.push(*q);
            }
        }
    }
    out
}

/// The unit Tweedie deviance of label `y` and mean `mu` at `power` (scikit-learn's
/// `mean_tweedie_deviance` per row): power 0 the squared error, 1 Poisson, 2 Gamma.
pub fn tweedie_deviance(y: f64, mu: f64, power: f64) -> f64 {
    if y == mu {
        0.0 // (the formulas below leave rounding residue at 0)
    } else if power == 0.0 {
        (y - mu) * (y - mu)
    } else if power == 1.0 {
        let ylog = if y == 0.0 { 0.0 } else { y * (y / mu).ln() };
        2.0 * (ylog - y + mu)
    } else if power == 2.0 {
        2.0 * ((mu / y).ln() + y / mu - 1.0)
    } else {
        let (a, b) = (1.0 - power, 2.0 - power);
        2.0 * (y.max(0.0).powf(b) / (a * b) - y * mu.powf(a) / a + mu.powf(b) / b)
    }
}

/// For power < 0, the null deviance's field holds `sum w max(y, 0)^(2 - power)`, which adds
/// up: the Bregman move between means (`merge_block`) needs `d(m, m')` of means that may be
/// negative there, where the unit deviance clamps `max(y, 0)`. The null deviance then is
/// `2 / ((1 - power) (2 - power)) (S - W m^(2 - power))` for the weighted mean label `m`
/// (`null_deviance`).
pub fn null_sum(y: f64, power: f64) -> f64 {
    y.max(0.0).powf(2.0 - power)
}

/// The Tweedie deviance of the mean label from the sum of [`null_sum`] (power < 0); NaN where
/// scikit-learn's formula is (a negative mean label with a fractional exponent).
fn null_deviance(sum: f64, st: &RegressionState, power: f64) -> f64 {
    let (a, b) = (1.0 - power, 2.0 - power);
    (2.0 / (a * b) * (sum - st.w * st.mean_y.powf(b))).max(0.0)
}

/// Why a value is outside the domain of the Tweedie deviance at `power` (None: inside).
/// Labels: any (power <= 0), >= 0 (1 <= power < 2), > 0 (power >= 2); predictions > 0
/// (power != 0) -- scikit-learn's rules.
pub fn tweedie_domain(power: f64, label: bool, v: f64) -> Option<&'static str> {
    if power == 0.0 {
        return None;
    }
    if !label || power >= 2.0 {
        return (v <= 0.0).then_some("> 0");
    }
    if power >= 1.0 {
        return (v < 0.0).then_some(">= 0");
    }
    None
}

impl RegressionState {
    /// The state as block fields.
    pub fn to_fields(&self) -> [f64; FIELDS] {
        [
            self.rows,
            self.w,
            self.mean_y,
            self.mean_p,
            self.mean_e,
            self.m2_y,
            self.m2_p,
            self.m2_e,
            self.c_yp,
            self.abs_err,
            self.sq_err,
            self.ape,
            self.sape,
            self.abs_y,
            self.sq_log_err,
            self.max_abs_err,
        ]
    }

    /// The state of block fields `f` (at least [`FIELDS`] long).
    pub fn from_fields(f: &[f64]) -> RegressionState {
        RegressionState {
            rows: f[0],
            w: f[1],
            mean_y: f[2],
            mean_p: f[3],
            mean_e: f[4],
            m2_y: f[5],
            m2_p: f[6],
            m2_e: f[7],
            c_yp: f[8],
            abs_err: f[9],
            sq_err: f[10],
            ape: f[11],
            sape: f[12],
            abs_y: f[13],
            sq_log_err: f[14],
            max_abs_err: f[15],
        }
    }

    /// The weighted mean of the row quantity behind mean metric `k` of [`MEAN_METRICS`].
    fn mean_of_quantity(&self, k: usize) -> f64 {
        if !positive(self.w) {
            return 0.0;
        }
        match k {
            0 => self.abs_err / self.w,
            1 => self.sq_err / self.w,
            2 => self.mean_e,
            3 => self.ape / self.w,
            4 => self.sape / self.w,
            _ => self.sq_log_err / self.w,
        }
    }
}

/// One slice's block (or replicate slot) with its layout: the state and the fields after it.
pub struct Block<'a> {
    pub f: &'a [f64],
    pub layout: Layout,
    /// The pinball quantiles, in layout order.
    pub quantiles: &'a [f64],
}

/// Why `d2_tweedie` is undefined when the mean label is outside the power's domain.
pub const NULL_OUT_OF_DOMAIN: &str =
    "undefined: the mean label lies outside the domain of the Tweedie deviance at this power";

impl Block<'_> {
    /// The value of regression metric `m`.
    pub fn value(&self, m: Metric) -> Value {
        use Metric::*;
        let st = RegressionState::from_fields(self.f);
        let dev = &self.f[FIELDS..FIELDS + DEV_FIELDS];
        match m {
            Mae => st.mae(),
            Mse => st.mse(),
            Rmse => st.rmse(),
            R2 => st.r2(),
            ExplainedVariance => st.explained_variance(),
            MeanError => st.mean_error(),
            MaxError => st.max_error(),
            Mape => st.mape(),
            Smape => st.smape(),
            Wmape => st.wmape(),
            Pearson => st.pearson(),
            Concordance => st.concordance(),
            Msle => st.msle(),
            Rmsle => st.rmsle(),
            PoissonDeviance => st.mean_of(dev[0]),
            GammaDeviance => st.mean_of(dev[1]),
            TweedieDeviance => st.mean_of(dev[2]),
            D2Tweedie => {
                let null = if self.layout.power < 0.0 {
                    null_deviance(dev[3], &st, self.layout.power)
                } else {
                    dev[3]
                };
                if !positive(st.w) {
                    Err(NO_WEIGHT)
                } else if null.is_nan() {
                    Err(NULL_OUT_OF_DOMAIN)
                } else if !positive(null) || !positive(st.m2_y) {
                    Err(CONSTANT_LABELS)
                } else {
                    crate::metrics::finite(1.0 - dev[2] / null)
                }
            }
            Pinball(q) => {
                let k = self
                    .quantiles
                    .iter()
                    .position(|x| *x == q)
                    .expect("a pinball quantile of the layout");
                st.mean_of(self.f[self.layout.pinball_at() + k])
            }
            Coverage => st.mean_of(self.f[FIELDS + DEV_FIELDS]),
            IntervalWidth => st.mean_of(self.f[FIELDS + DEV_FIELDS + 1]),
            _ => unreachable!("{} is not a regression metric", m.name()),
        }
    }
}

/// The row quantity of mean metric `k` (see [`MEAN_METRICS`]).
#[inline(always)]
fn quantity(k: usize, r: &RowTerms) -> f64 {
    match k {
        0 => r.abs_e,
        1 => r.e * r.e,
        2 => r.e,
        3 => r.ape,
        4 => r.sape,
        _ => r.sq_log,
    }
}

/// Moves the moment sums `(q1, q2)` about `from` to the same sums about `to` (`v`: the sum of
/// squared weights): `x - to = (x - from) + (from - to)`. The two centres are means of the same
/// rows or of rows merged with them, so their difference is of the order of the spread.
fn rebase(q1: f64, q2: f64, v: f64, from: f64, to: f64) -> (f64, f64) {
    let d = from - to;
    (q1 + d * v, q2 + 2.0 * d * q1 + d * d * v)
}

/// Merges block `b` (rows after `a`'s in the canonical order) into block `a`; both have
/// `layout` (a replicate slot: without moments).
pub fn merge_block(a: &mut [f64], b: &[f64], layout: &Layout) {
    let (sa, sb) = (
        RegressionState::from_fields(a),
        RegressionState::from_fields(b),
    );
    let mut merged = sa;
    merged.merge(&sb);
    let at = layout.fields();
    if layout.moments && a.len() > at {
        let (ma, mb) = (&a[at..], &b[at..]);
        let mut out = [0.0; MOMENT_FIELDS];
        out[0] = ma[0] + mb[0];
        for k in 0..MEAN_METRICS.len() {
            let to = merged.mean_of_quantity(k);
            let (a1, a2) = rebase(
                ma[1 + 2 * k],
                ma[2 + 2 * k],
                ma[0],
                sa.mean_of_quantity(k),
                to,
            );
            let (b1, b2) = rebase(
                mb[1 + 2 * k],
                mb[2 + 2 * k],
                mb[0],
                sb.mean_of_quantity(k),
                to,
            );
            out[1 + 2 * k] = a1 + b1;
            out[2 + 2 * k] = a2 + b2;
        }
        a[at..at + MOMENT_FIELDS].copy_from_slice(&out);
    }
    // The deviances add up; the deviance of the mean label moves to the merged mean (the
    // Tweedie deviance is a Bregman divergence: sum w d(y, m) = sum w d(y, m_a) + W_a d(m_a, m)
    // over each part's rows, m_a their weighted mean).
    let null = if layout.deviance && layout.power < 0.0 {
        a[FIELDS + 3] + b[FIELDS + 3]
    } else if layout.deviance {
        let shift = |s: &RegressionState| {
            if positive(s.w) && s.mean_y != merged.mean_y {
                s.w * tweedie_deviance(s.mean_y, merged.mean_y, layout.power)
            } else {
                0.0
            }
        };
        a[FIELDS + 3] + b[FIELDS + 3] + shift(&sa) + shift(&sb)
    } else {
        0.0
    };
    for k in FIELDS..at {
        a[k] += b[k];
    }
    a[FIELDS + 3] = null;
    a[..FIELDS].copy_from_slice(&merged.to_fields());
}

/// Merges the replicate blocks `b` into `a` (`[field * slots + slot]`, `layout.fields()`
/// fields), slot by slot.
pub fn merge_rep_block(a: &mut [f64], b: &[f64], slots: usize, layout: &Layout) {
    let n = layout.fields();
    let slot_layout = Layout {
        moments: false,
        ..*layout
    };
    let mut fa = vec![0.0; n];
    let mut fb = vec![0.0; n];
    for s in 0..slots {
        if !positive(b[slots + s]) && b[15 * slots + s] == 0.0 {
            // No weight in this slot of `b`: nothing to add (its maximum is 0 too).
            continue;
        }
        for f in 0..n {
            fa[f] = a[f * slots + s];
            fb[f] = b[f * slots + s];
        }
        merge_block(&mut fa, &fb, &slot_layout);
        for (f, v) in fa.iter().enumerate() {
            a[f * slots + s] = *v;
        }
    }
}

/// What one row contributes besides its deviations from the means.
#[derive(Clone, Copy, Default)]
struct RowTerms {
    e: f64,
    abs_e: f64,
    ape: f64,
    sape: f64,
    abs_y: f64,
    sq_log: f64,
}

#[inline(always)]
fn row_terms(y: f64, p: f64, log: bool) -> RowTerms {
    let e = p - y;
    let abs_e = e.abs();
    let d = y.abs() + p.abs();
    RowTerms {
        e,
        abs_e,
        ape: abs_e / y.abs().max(f64::EPSILON),
        sape: if d > 0.0 { 2.0 * abs_e / d } else { 0.0 },
        abs_y: y.abs(),
        sq_log: if log {
            let l = p.ln_1p() - y.ln_1p();
            l * l
        } else {
            0.0
        },
    }
}

/// Buffers a worker reuses from one piece to the next.
#[derive(Default)]
pub struct Scratch {
    /// Per slice: rows, sum w, sum w y, sum w p, sum w e (the first pass).
    first: Vec<f64>,
    /// Per slice: the sums of the second pass (see [`PASS2`]), then the extra fields.
    second: Vec<f64>,
    /// Per slice: the moment sums of the third pass.
    third: Vec<f64>,
    /// Per slice and replicate slot: the second pass's sums weighted by the slot's weight.
    reps: Vec<f64>,
    /// Each row's terms (one piece).
    terms: Vec<RowTerms>,
    /// Each row's extra terms (deviances and pinball losses), `extras` per row.
    extra: Vec<f64>,
    /// One slot's state while it is converted.
    conv: Vec<f64>,
}

/// Sums of the second pass, per slice: rows, w, then w times a, b, c, a^2, b^2, c^2, a b, |e|,
/// e^2, ape, sape, |y|, sq_log (a, b, c: the label, prediction and error minus the first
/// pass's means), and the largest |e|; the layout's extra fields follow.
const PASS2: usize = 16;
/// Replicate sums per slot: w, a, b, c, a^2, b^2, c^2, a b, |e|, e^2, ape, sape, |y|, sq_log
/// (weighted by the slot's weight), the largest |e| of rows in the slot, then the extras.
const PASS2_REPS: usize = 15;

/// The rows of one piece that one model's states take: row `j` is `y[j]`, `p[j]`, weight
/// `w[j]` (1 without weights), in slice `ids[k - 1][j]` of slice spec `k` (spec 0 is the
/// overall slice), with replicate weights `kw[j * slots..(j + 1) * slots]`.
pub struct PieceRows<'a> {
    pub y: &'a [f64],
    pub p: &'a [f64],
    pub w: Option<&'a [f64]>,
    /// Per slice spec, each row's slice id.
    pub ids: Vec<&'a [u32]>,
    pub kw: &'a [f64],
    pub slots: usize,
    /// Whether the squared log errors are summed (msle, rmsle).
    pub log: bool,
    pub layout: Layout,
    /// The pinball quantiles (`layout.quantiles` of them).
    pub quantiles: &'a [f64],
    /// Which of the Poisson, Gamma and Tweedie deviances are summed.
    pub deviances: [bool; 3],
    /// The prediction interval's lower and upper bounds (with `layout.interval`).
    pub bounds: Option<(&'a [f64], &'a [f64])>,
}

impl PieceRows<'_> {
    /// Whether any field after the state is summed (deviances, interval, pinball losses).
    fn any_extra(&self) -> bool {
        self.deviances.iter().any(|d| *d) || self.layout.interval || self.layout.quantiles > 0
    }
}

/// Adds the rows of `rows` to the blocks of `states` (the overall slice's first, then one per
/// slice spec), and their counts and weights to `counts`: per slice, the piece's state is
/// computed in two passes (means, then deviations from them; a third for the moment sums)
/// and merged into the block.
pub fn accumulate_piece(
    rows: &PieceRows,
    states: &mut [crate::state::SliceStates],
    scratch: &mut Scratch,
) {
    if rows.y.is_empty() {
        return;
    }
    if rows.slots == 0 && !rows.layout.moments && !rows.any_extra() && !rows.log {
        plain_piece(rows, states, scratch);
        return;
    }
    // Each row's terms, once for every slice spec.
    scratch.terms.clear();
    scratch.terms.extend(
        rows.y
            .iter()
            .zip(rows.p)
            .map(|(y, p)| row_terms(*y, *p, rows.log)),
    );
    let terms = std::mem::take(&mut scratch.terms);
    // The extra terms: deviances (the null deviance's slot is filled per slice) and pinball
    // losses.
    // (Skipped, with their zero sums, when the job asks for none of them.)
    let extras = if rows.any_extra() {
        rows.layout.fields() - FIELDS
    } else {
        0
    };
    let pin = rows.layout.pinball_at() - FIELDS;
    let mut extra = std::mem::take(&mut scratch.extra);
    extra.clear();
    extra.resize(rows.y.len() * extras, 0.0);
    let power = rows.layout.power;
    for (j, x) in extra.chunks_exact_mut(extras.max(1)).enumerate() {
        let (y, p) = (rows.y[j], rows.p[j]);
        if rows.deviances[0] {
            x[0] = tweedie_deviance(y, p, 1.0);
        }
        if rows.deviances[1] {
            x[1] = tweedie_deviance(y, p, 2.0);
        }
        if rows.deviances[2] {
            x[2] = tweedie_deviance(y, p, power);
        }
        if let Some((lo, hi)) = rows.bounds {
            x[DEV_FIELDS] = (lo[j] <= y && y <= hi[j]) as u8 as f64;
            x[DEV_FIELDS + 1] = hi[j] - lo[j];
        }
        let under = y - p;
        for (o, q) in x[pin..].iter_mut().zip(rows.quantiles) {
            *o = (q * under).max((q - 1.0) * under);
        }
    }
    for (k, st) in states.iter_mut().enumerate() {
        // Monomorphized for the overall slice (every row in slice 0) and for unweighted rows,
        // so that the hot loops carry no per-row branches.
        let t = (&terms[..], &extra[..]);
        match (k, rows.w) {
            (0, Some(w)) => spec_piece::<true>(rows, t, |_| 0, |j| w[j], st, scratch),
            (0, None) => spec_piece::<true>(rows, t, |_| 0, |_| 1.0, st, scratch),
            (_, Some(w)) => {
                let ids = rows.ids[k - 1];
                spec_piece::<false>(rows, t, |j| ids[j] as usize, |j| w[j], st, scratch)
            }
            (_, None) => {
                let ids = rows.ids[k - 1];
                spec_piece::<false>(rows, t, |j| ids[j] as usize, |_| 1.0, st, scratch)
            }
        }
    }
    scratch.terms = terms;
    scratch.extra = extra;
}

/// Lanes of the plain kernel: each field is summed in this many interleaved partial sums
/// (rows `j` with `j % LANES == l` in lane `l`), added in a fixed order at the end, so that
/// the sums vectorize and their bits do not depend on the instruction set.
const LANES: usize = 4;

/// The common job (no replicate slots, no moments, no extra fields, no log errors): per slice
/// spec, the rows grouped by slice (a counting sort; the overall slice takes them as they are)
/// and each slice's state computed by [`plain_state`] over contiguous values.
fn plain_piece(rows: &PieceRows, states: &mut [crate::state::SliceStates], scratch: &mut Scratch) {
    let layout = rows.layout;
    let blen = layout.block_len();
    let mut whole = vec![0.0; blen];
    let mut add =
        |st: &mut crate::state::SliceStates, id: usize, y: &[f64], p: &[f64], w: Option<&[f64]>| {
            let (state, weight) = plain_state(y, p, w);
            let c = &mut st.counts[id];
            c.n += y.len() as u64;
            c.w += weight;
            whole[..FIELDS].copy_from_slice(&state);
            merge_block(&mut st.fam[id * blen..(id + 1) * blen], &whole, &layout);
        };
    for (k, st) in states.iter_mut().enumerate() {
        if k == 0 {
            add(st, 0, rows.y, rows.p, rows.w);
            continue;
        }
        let ids = rows.ids[k - 1];
        let n_ids = st.fam.len() / blen;
        // Counting sort of the rows by slice.
        let start = &mut scratch.first;
        start.clear();
        start.resize(n_ids + 1, 0.0);
        for id in ids {
            start[*id as usize + 1] += 1.0;
        }
        let mut begin = vec![0usize; n_ids + 1];
        for j in 0..n_ids {
            begin[j + 1] = begin[j] + start[j + 1] as usize;
        }
        let n = ids.len();
        // (Every value below is written before it is read: no need to zero the buffer.)
        let sorted = &mut scratch.second;
        if sorted.len() < 3 * n {
            sorted.resize(3 * n, 0.0);
        }
        let (sy, rest) = sorted.split_at_mut(n);
        let (sp, rest) = rest.split_at_mut(n);
        let sw = &mut rest[..n];
        let mut at = begin.clone();
        for (j, id) in ids.iter().enumerate() {
            let i = at[*id as usize];
            sy[i] = rows.y[j];
            sp[i] = rows.p[j];
            if let Some(w) = rows.w {
                sw[i] = w[j];
            }
            at[*id as usize] += 1;
        }
        for id in 0..n_ids {
            let (a, b) = (begin[id], begin[id + 1]);
            if a < b {
                let w = rows.w.map(|_| &sw[a..b]);
                add(st, id, &sy[a..b], &sp[a..b], w);
            }
        }
    }
}

/// The state of rows `(y, p, w)` (weights 1 without `w`) and their weight sum, by the
/// corrected two-pass algorithm in [`LANES`] interleaved sums (AVX2 where the CPU has it; the
/// same bits either way: one add or multiply per lane, never fused).
fn plain_state(y: &[f64], p: &[f64], w: Option<&[f64]>) -> ([f64; FIELDS], f64) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked just above).
            return unsafe { plain_state_avx2(y, p, w) };
        }
    }
    plain_state_body(y, p, w)
}

/// [`plain_state_body`] in AVX2 intrinsics: the same operations lane by lane (no fused
/// multiply-add; `max` of finite values), so the same bits.
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn plain_state_avx2(y: &[f64], p: &[f64], w: Option<&[f64]>) -> ([f64; FIELDS], f64) {
    use std::arch::x86_64::*;
    let n = y.len();
    let full = n - n % LANES;
    let (mut ty, mut tp, mut tw) = ([0.0; LANES], [0.0; LANES], [0.0; LANES]);
    for (l, j) in (full..n).enumerate() {
        ty[l] = y[j];
        tp[l] = p[j];
        tw[l] = w.map_or(1.0, |w| w[j]);
    }
    let ones = _mm256_set1_pd(1.0);
    // SAFETY (every load): `j + LANES <= full <= n`, and `w` has `n` values like `y`.
    let at = |v: &[f64], j: usize| _mm256_loadu_pd(v.as_ptr().add(j));
    let wat = |j: usize| match w {
        Some(w) => at(w, j),
        None => ones,
    };
    let store = |v: __m256d| {
        let mut out = [0.0; LANES];
        _mm256_storeu_pd(out.as_mut_ptr(), v);
        out
    };
    let zero = _mm256_setzero_pd();
    let (mut s0, mut s1, mut s2, mut s3) = (zero, zero, zero, zero);
    let mut step1 = |yv: __m256d, pv: __m256d, wv: __m256d| {
        s0 = _mm256_add_pd(s0, wv);
        s1 = _mm256_add_pd(s1, _mm256_mul_pd(wv, yv));
        s2 = _mm256_add_pd(s2, _mm256_mul_pd(wv, pv));
        s3 = _mm256_add_pd(s3, _mm256_mul_pd(wv, _mm256_sub_pd(pv, yv)));
    };
    let mut j = 0;
    while j < full {
        step1(at(y, j), at(p, j), wat(j));
        j += LANES;
    }
    if full < n {
        step1(at(&ty, 0), at(&tp, 0), at(&tw, 0));
    }
    let sw = lanes_sum(store(s0));
    let (my, mp, me) = if sw > 0.0 {
        (
            lanes_sum(store(s1)) / sw,
            lanes_sum(store(s2)) / sw,
            lanes_sum(store(s3)) / sw,
        )
    } else {
        (0.0, 0.0, 0.0)
    };
    let (vmy, vmp, vme) = (_mm256_set1_pd(my), _mm256_set1_pd(mp), _mm256_set1_pd(me));
    let sign = _mm256_set1_pd(-0.0);
    let (eps, two) = (_mm256_set1_pd(f64::EPSILON), _mm256_set1_pd(2.0));
    let mut acc = [zero; 12];
    let mut max = zero;
    let mut step2 = |yv: __m256d, pv: __m256d, wv: __m256d| {
        let e = _mm256_sub_pd(pv, yv);
        let a = _mm256_sub_pd(yv, vmy);
        let b = _mm256_sub_pd(pv, vmp);
        let c = _mm256_sub_pd(e, vme);
        let ae = _mm256_andnot_pd(sign, e);
        let ay = _mm256_andnot_pd(sign, yv);
        let d = _mm256_add_pd(ay, _mm256_andnot_pd(sign, pv));
        let ape = _mm256_div_pd(ae, _mm256_max_pd(ay, eps));
        let q = _mm256_div_pd(_mm256_mul_pd(two, ae), d);
        let sm = _mm256_and_pd(q, _mm256_cmp_pd::<_CMP_GT_OQ>(d, zero));
        let vals = [
            a,
            b,
            c,
            _mm256_mul_pd(a, a),
            _mm256_mul_pd(b, b),
            _mm256_mul_pd(c, c),
            _mm256_mul_pd(a, b),
            ae,
            _mm256_mul_pd(e, e),
            ape,
            sm,
            ay,
        ];
        for (s, v) in acc.iter_mut().zip(vals) {
            *s = _mm256_add_pd(*s, _mm256_mul_pd(wv, v));
        }
        max = _mm256_max_pd(max, ae);
    };
    let mut j = 0;
    while j < full {
        step2(at(y, j), at(p, j), wat(j));
        j += LANES;
    }
    if full < n {
        step2(at(&ty, 0), at(&tp, 0), at(&tw, 0));
    }
    let mut sums = [0.0; 13];
    for (o, v) in sums.iter_mut().zip(acc) {
        *o = lanes_sum(store(v));
    }
    let mx = store(max);
    let m = mx[0].max(mx[1]).max(mx[2].max(mx[3]));
    let f = [0.0, 0.0, my, mp, me];
    (chan_form(n as f64, sw, &sums, m, &f), sw)
}

/// Lane sums added in a fixed order.
#[inline(always)]
fn lanes_sum(a: [f64; LANES]) -> f64 {
    (a[0] + a[1]) + (a[2] + a[3])
}

/// [`LANES`] values, one per lane.
type Lanes = [f64; LANES];

#[inline(always)]
fn lanes(f: impl Fn(usize) -> f64) -> Lanes {
    std::array::from_fn(f)
}

/// `acc[l] += w[l] * x[l]` (one multiply, one add: never fused).
#[inline(always)]
fn add_lanes(acc: &mut Lanes, w: &Lanes, x: &Lanes) {
    for l in 0..LANES {
        acc[l] += w[l] * x[l];
    }
}

/// The second pass's lane sums (see [`plain_state_body`]).
#[derive(Clone, Copy, Default)]
struct Pass2 {
    da: Lanes,
    db: Lanes,
    dc: Lanes,
    aa: Lanes,
    bb: Lanes,
    cc: Lanes,
    ab: Lanes,
    ae: Lanes,
    se: Lanes,
    ape: Lanes,
    sape: Lanes,
    ay: Lanes,
    max: Lanes,
}

/// One step of the second pass over [`LANES`] rows, straight-line (selects, no branches) so
/// that each line is one vector instruction.
#[inline(always)]
fn pass2_step(acc: &mut Pass2, yv: Lanes, pv: Lanes, wv: Lanes, means: (f64, f64, f64)) {
    let (my, mp, me) = means;
    let e = lanes(|l| pv[l] - yv[l]);
    let a = lanes(|l| yv[l] - my);
    let b = lanes(|l| pv[l] - mp);
    let c = lanes(|l| e[l] - me);
    let ae = lanes(|l| e[l].abs());
    let ay = lanes(|l| yv[l].abs());
    let d = lanes(|l| ay[l] + pv[l].abs());
    let ape = lanes(|l| {
        ae[l]
            / if ay[l] > f64::EPSILON {
                ay[l]
            } else {
                f64::EPSILON
            }
    });
    let q = lanes(|l| 2.0 * ae[l] / d[l]);
    let sm = lanes(|l| if d[l] > 0.0 { q[l] } else { 0.0 });
    add_lanes(&mut acc.da, &wv, &a);
    add_lanes(&mut acc.db, &wv, &b);
    add_lanes(&mut acc.dc, &wv, &c);
    add_lanes(&mut acc.aa, &wv, &lanes(|l| a[l] * a[l]));
    add_lanes(&mut acc.bb, &wv, &lanes(|l| b[l] * b[l]));
    add_lanes(&mut acc.cc, &wv, &lanes(|l| c[l] * c[l]));
    add_lanes(&mut acc.ab, &wv, &lanes(|l| a[l] * b[l]));
    add_lanes(&mut acc.ae, &wv, &ae);
    add_lanes(&mut acc.se, &wv, &lanes(|l| e[l] * e[l]));
    add_lanes(&mut acc.ape, &wv, &ape);
    add_lanes(&mut acc.sape, &wv, &sm);
    add_lanes(&mut acc.ay, &wv, &ay);
    acc.max = lanes(|l| {
        if acc.max[l] > ae[l] {
            acc.max[l]
        } else {
            ae[l]
        }
    });
}

#[inline(always)]
fn plain_state_body(y: &[f64], p: &[f64], w: Option<&[f64]>) -> ([f64; FIELDS], f64) {
    let n = y.len();
    let full = n - n % LANES;
    let ones = [1.0; LANES];
    let wl = |j: usize| -> Lanes {
        match w {
            Some(w) => lanes(|l| w[j + l]),
            None => ones,
        }
    };
    // The last partial step as lanes of weight 0 (they add nothing: every term is finite for
    // y = p = 0, and |e| = 0 never raises the maximum).
    let tail = |v: &[f64]| lanes(|l| if full + l < n { v[full + l] } else { 0.0 });
    let tail_w = lanes(|l| {
        if full + l < n {
            w.map_or(1.0, |w| w[full + l])
        } else {
            0.0
        }
    });
    // First pass: weight and weighted sums of y, p, e.
    let z = [0.0; LANES];
    let (mut s0, mut s1, mut s2, mut s3) = (z, z, z, z);
    let mut step1 = |yv: Lanes, pv: Lanes, wv: Lanes| {
        for l in 0..LANES {
            s0[l] += wv[l];
        }
        add_lanes(&mut s1, &wv, &yv);
        add_lanes(&mut s2, &wv, &pv);
        add_lanes(&mut s3, &wv, &lanes(|l| pv[l] - yv[l]));
    };
    for j in (0..full).step_by(LANES) {
        step1(lanes(|l| y[j + l]), lanes(|l| p[j + l]), wl(j));
    }
    if full < n {
        step1(tail(y), tail(p), tail_w);
    }
    let sw = lanes_sum(s0);
    let means = if sw > 0.0 {
        (lanes_sum(s1) / sw, lanes_sum(s2) / sw, lanes_sum(s3) / sw)
    } else {
        (0.0, 0.0, 0.0)
    };
    // Second pass: deviations from those means and the error sums.
    let mut acc = Pass2::default();
    for j in (0..full).step_by(LANES) {
        pass2_step(
            &mut acc,
            lanes(|l| y[j + l]),
            lanes(|l| p[j + l]),
            wl(j),
            means,
        );
    }
    if full < n {
        pass2_step(&mut acc, tail(y), tail(p), tail_w, means);
    }
    let sums = [
        lanes_sum(acc.da),
        lanes_sum(acc.db),
        lanes_sum(acc.dc),
        lanes_sum(acc.aa),
        lanes_sum(acc.bb),
        lanes_sum(acc.cc),
        lanes_sum(acc.ab),
        lanes_sum(acc.ae),
        lanes_sum(acc.se),
        lanes_sum(acc.ape),
        lanes_sum(acc.sape),
        lanes_sum(acc.ay),
        0.0,
    ];
    let mx = acc.max;
    let m = mx[0].max(mx[1]).max(mx[2].max(mx[3]));
    let f = [0.0, 0.0, means.0, means.1, means.2];
    (chan_form(n as f64, sw, &sums, m, &f), sw)
}

/// [`accumulate_piece`] for one slice spec: row `j` is in slice `id_of(j)` with weight
/// `wt(j)`.
#[inline(always)]
fn spec_piece<const ONE: bool>(
    rows: &PieceRows,
    (terms, extra): (&[RowTerms], &[f64]),
    id_of: impl Fn(usize) -> usize,
    wt: impl Fn(usize) -> f64,
    st: &mut crate::state::SliceStates,
    scratch: &mut Scratch,
) {
    let layout = rows.layout;
    let blen = layout.block_len();
    let fields = layout.fields();
    // The extra fields the rows add to (none when the job asks for none: they stay 0).
    let extras = if rows.any_extra() { fields - FIELDS } else { 0 };
    let all_extras = fields - FIELDS;
    let p2 = PASS2 + all_extras;
    let r2 = PASS2_REPS + all_extras;
    let slots = rows.slots;
    let n_ids = st.fam.len() / blen;
    let Scratch {
        first,
        second,
        third,
        reps,
        conv,
        ..
    } = scratch;
    first.clear();
    first.resize(n_ids * 5, 0.0);
    // `ONE`: every row is in slice 0 (the overall slice), whose sums stay in registers.
    let mut one = [0.0f64; 5];
    for (j, t) in terms.iter().enumerate() {
        let (y, p, w, id) = (rows.y[j], rows.p[j], wt(j), id_of(j));
        let f: &mut [f64] = if ONE {
            &mut one
        } else {
            &mut first[id * 5..id * 5 + 5]
        };
        f[0] += 1.0;
        f[1] += w;
        f[2] += w * y;
        f[3] += w * p;
        f[4] += w * t.e;
    }
    if ONE {
        first[..5].copy_from_slice(&one);
    }
    // The slices' rows and weights, then the first pass's means (0 for a slice without
    // weight: its deviations are then the values themselves, and its co-moments are never
    // read).
    for (f, c) in first.chunks_exact_mut(5).zip(st.counts.iter_mut()) {
        if f[0] > 0.0 {
            c.n += f[0] as u64;
            c.w += f[1];
        }
        if f[1] > 0.0 {
            f[2] /= f[1];
            f[3] /= f[1];
            f[4] /= f[1];
        }
    }
    second.clear();
    second.resize(n_ids * p2, 0.0);
    if slots > 0 {
        reps.clear();
        reps.resize(n_ids * r2 * slots, 0.0);
    }
    let mut one = [0.0f64; PASS2];
    let centre: [f64; 5] = first[..5].try_into().expect("5 fields");
    let mut row_extra = vec![0.0; extras];
    for (j, t) in terms.iter().enumerate() {
        let (y, p, w, id) = (rows.y[j], rows.p[j], wt(j), id_of(j));
        let f = if ONE {
            &centre
        } else {
            &first[id * 5..id * 5 + 5]
        };
        let (a, b, c) = (y - f[2], p - f[3], t.e - f[4]);
        let vals = [
            a,
            b,
            c,
            a * a,
            b * b,
            c * c,
            a * b,
            t.abs_e,
            t.e * t.e,
            t.ape,
            t.sape,
            t.abs_y,
            t.sq_log,
        ];
        let s: &mut [f64] = if ONE {
            &mut one
        } else {
            &mut second[id * p2..id * p2 + PASS2]
        };
        s[0] += 1.0;
        s[1] += w;
        for (acc, v) in s[2..15].iter_mut().zip(vals) {
            *acc += w * v;
        }
        // (Weights are positive: every accepted row counts for the largest error.)
        s[15] = s[15].max(t.abs_e);
        if extras > 0 {
            row_extra.copy_from_slice(&extra[j * extras..(j + 1) * extras]);
            if layout.deviance {
                // The deviance of the piece's mean label (moved to the final mean below), or
                // for power < 0 the plain sum behind it (see `null_sum`).
                row_extra[3] = if layout.power < 0.0 {
                    null_sum(y, layout.power)
                } else {
                    tweedie_deviance(y, f[2], layout.power)
                };
            }
            let x = &mut second[id * p2 + PASS2..id * p2 + PASS2 + extras];
            for (acc, v) in x.iter_mut().zip(&row_extra) {
                *acc += w * v;
            }
        }
        if slots > 0 {
            // One update per replicate slot a row: poll for an interrupt every few rows (the
            // caller discards the partial sums of a stopped piece).
            if j % crate::runtime::POLL_REPLICATED_ROWS == 0 && crate::runtime::interrupted() {
                return;
            }
            let kw = &rows.kw[j * slots..(j + 1) * slots];
            let block = &mut reps[id * r2 * slots..(id + 1) * r2 * slots];
            add_rep_row(block, slots, kw, &vals, t.abs_e, &row_extra);
        }
    }
    if ONE {
        second[..PASS2].copy_from_slice(&one);
    }
    // The piece's state of each slice, then (analytic intervals) a third pass for the
    // moment sums about the piece's means.
    let mut pieces = vec![0.0; n_ids * fields];
    for (id, f) in first.chunks_exact(5).enumerate() {
        let s = &second[id * p2..(id + 1) * p2];
        if s[0] > 0.0 {
            let out = &mut pieces[id * fields..(id + 1) * fields];
            out[..FIELDS].copy_from_slice(&chan_form(s[0], s[1], &s[2..15], s[15], f));
            out[FIELDS..].copy_from_slice(&s[PASS2..]);
            move_null(out, f[2], &layout);
        }
    }
    if layout.moments {
        third.clear();
        third.resize(n_ids * MOMENT_FIELDS, 0.0);
        let centres: Vec<[f64; MEAN_METRICS.len()]> = pieces
            .chunks_exact(fields)
            .map(|f| {
                let st = RegressionState::from_fields(f);
                std::array::from_fn(|k| st.mean_of_quantity(k))
            })
            .collect();
        for (j, t) in terms.iter().enumerate() {
            let (id, w) = (id_of(j), wt(j));
            let m = &mut third[id * MOMENT_FIELDS..(id + 1) * MOMENT_FIELDS];
            let w2 = w * w;
            m[0] += w2;
            for (k, c) in centres[id].iter().enumerate() {
                let d = quantity(k, t) - c;
                m[1 + 2 * k] += w2 * d;
                m[2 + 2 * k] += w2 * d * d;
            }
        }
    }
    let mut whole = vec![0.0; blen];
    conv.clear();
    conv.resize(fields * slots, 0.0);
    let mut one_slot = vec![0.0; fields];
    for id in 0..n_ids {
        let piece = &pieces[id * fields..(id + 1) * fields];
        if piece[0] == 0.0 {
            continue;
        }
        whole[..fields].copy_from_slice(piece);
        if layout.moments {
            whole[fields..].copy_from_slice(&third[id * MOMENT_FIELDS..(id + 1) * MOMENT_FIELDS]);
        }
        merge_block(&mut st.fam[id * blen..(id + 1) * blen], &whole, &layout);
        if slots > 0 {
            let f = &first[id * 5..id * 5 + 5];
            let src = &reps[id * r2 * slots..(id + 1) * r2 * slots];
            for sl in 0..slots {
                let sums: [f64; 13] = std::array::from_fn(|q| src[(1 + q) * slots + sl]);
                one_slot[..FIELDS].copy_from_slice(&chan_form(
                    0.0,
                    src[sl],
                    &sums,
                    src[14 * slots + sl],
                    f,
                ));
                for (q, v) in one_slot[FIELDS..].iter_mut().enumerate() {
                    *v = src[(PASS2_REPS + q) * slots + sl];
                }
                move_null(&mut one_slot, f[2], &layout);
                for (q, v) in one_slot.iter().enumerate() {
                    conv[q * slots + sl] = *v;
                }
            }
            let rl = fields * slots;
            merge_rep_block(
                &mut st.fam_reps[id * rl..(id + 1) * rl],
                conv,
                slots,
                &layout,
            );
        }
    }
}

/// Moves the Tweedie deviance of the mean label in `f` (a state's fields and extras) from
/// centre `c` (the first pass's mean, which the rows were measured against) to the state's
/// own mean: `sum w d(y, m) = sum w d(y, c) - W d(m, c)`.
fn move_null(f: &mut [f64], c: f64, layout: &Layout) {
    if !layout.deviance || layout.power < 0.0 {
        return; // (power < 0 keeps a plain sum: see `null_sum`)
    }
    let st = RegressionState::from_fields(f);
    if positive(st.w) && st.mean_y != c {
        f[FIELDS + 3] -= st.w * tweedie_deviance(st.mean_y, c, layout.power);
        f[FIELDS + 3] = f[FIELDS + 3].max(0.0);
    }
}

/// One row's replicate sums: `kw` per slot times each of `vals` (a, b, c, a^2, b^2, c^2, a b,
/// |e|, e^2, ape, sape, |y|, sq_log), the slot's largest |e|, then `kw` times each extra.
#[inline]
fn add_rep_row(
    block: &mut [f64],
    slots: usize,
    kw: &[f64],
    vals: &[f64; 13],
    abs_e: f64,
    extra: &[f64],
) {
    let (w, rest) = block.split_at_mut(slots);
    for (a, k) in w.iter_mut().zip(kw) {
        *a += *k;
    }
    let (sums, rest) = rest.split_at_mut(13 * slots);
    for (q, v) in vals.iter().enumerate() {
        for (a, k) in sums[q * slots..(q + 1) * slots].iter_mut().zip(kw) {
            *a += *k * *v;
        }
    }
    let (max, extras) = rest.split_at_mut(slots);
    for (m, k) in max.iter_mut().zip(kw) {
        if *k > 0.0 {
            *m = m.max(abs_e);
        }
    }
    for (q, v) in extra.iter().enumerate() {
        for (a, k) in extras[q * slots..(q + 1) * slots].iter_mut().zip(kw) {
            *a += *k * *v;
        }
    }
}

/// A [`RegressionState`]'s fields from sums of deviations about the first pass's means `f`
/// (`f[2..5]`: the means of y, p, e): the corrected two-pass algorithm moves each mean by its
/// residual sum and takes the residual's square from the co-moment.
fn chan_form(rows: f64, w: f64, sums: &[f64], max_abs: f64, f: &[f64]) -> [f64; FIELDS] {
    let [da, db, dc, aa, bb, cc, ab, ae, se, ape, sape, ay, sl] = [
        sums[0], sums[1], sums[2], sums[3], sums[4], sums[5], sums[6], sums[7], sums[8], sums[9],
        sums[10], sums[11], sums[12],
    ];
    // `aa - da^2 / w` cancels when the rows' deviations share one value (a replicate slot
    // that drew copies of one row, about a mean that is not theirs; a slice of equal labels,
    // about a mean rounded away from them): what is left below a few ulps of `aa` is rounding,
    // and is 0, so that r2 and pearson are undefined there rather than a ratio of rounding
    // (such as an r2 of -1.9e14); a covariance with such a co-moment is 0 too.
    let centred = |sq: f64, d: f64| {
        let m2 = sq - d * d / w;
        if m2 <= 16.0 * f64::EPSILON * sq {
            0.0
        } else {
            m2
        }
    };
    let st = if w > 0.0 {
        let (m2_y, m2_p) = (centred(aa, da), centred(bb, db));
        RegressionState {
            rows,
            w,
            mean_y: f[2] + da / w,
            mean_p: f[3] + db / w,
            mean_e: f[4] + dc / w,
            m2_y,
            m2_p,
            m2_e: centred(cc, dc),
            // |c| <= sqrt(m2_y m2_p) (Cauchy-Schwarz), which the cancellation above may
            // break by its rounding: a correlation of 1.00000007 in a replicate slot.
            c_yp: if m2_y > 0.0 && m2_p > 0.0 {
                let bound = (m2_y * m2_p).sqrt();
                (ab - da * db / w).clamp(-bound, bound)
            } else {
                0.0
            },
            abs_err: ae,
            sq_err: se,
            ape,
            sape,
            abs_y: ay,
            sq_log_err: sl,
            max_abs_err: max_abs,
        }
    } else {
        RegressionState {
            rows,
            max_abs_err: max_abs,
            ..Default::default()
        }
    };
    st.to_fields()
}

/// The weighted median of `(value, weight)` pairs (weights positive): scikit-learn's averaged
/// inverted CDF (`_weighted_percentile(..., average=True)`, `median_absolute_error`'s with
/// weights): the first value whose cumulative weight reaches half the total, averaged with the
/// next value when it reaches it exactly (to `f64::EPSILON`). With unit weights this is
/// NumPy's median. NaN for no pairs.
pub fn weighted_median(v: &mut [(f64, f64)]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
    let total: f64 = v.iter().map(|x| x.1).sum();
    let target = 0.5 * total;
    let mut cdf = 0.0;
    for i in 0..v.len() {
        cdf += v[i].1;
        if cdf >= target {
            if cdf - target > f64::EPSILON {
                return v[i].0;
            }
            let next = v[(i + 1).min(v.len() - 1)].0;
            return (v[i].0 + next) / 2.0;
        }
    }
    v[v.len() - 1].0
}

/// The median absolute error of every slice of every spec (`[spec][id]`, the overall slice
/// first; NaN for a slice without rows) from the kept rows: their scores are the absolute
/// errors, their weights the row weights (or counts of combined entries; 1 when empty).
pub fn medians(rows: &crate::state::RankRows, n_ids: &[usize]) -> Vec<Vec<f64>> {
    use rayon::prelude::*;
    let n = rows.scores.len();
    let weight = |i: usize| rows.weights.get(i).copied().unwrap_or(1.0);
    n_ids
        .iter()
        .enumerate()
        .map(|(k, &ids_here)| {
            // Rows grouped by slice (a counting sort), then each group's median in parallel.
            let id_of = |i: usize| {
                if k == 0 {
                    0
                } else {
                    rows.ids[k - 1][i] as usize
                }
            };
            let mut start = vec![0usize; ids_here + 1];
            for i in 0..n {
                start[id_of(i) + 1] += 1;
            }
            for j in 0..ids_here {
                start[j + 1] += start[j];
            }
            let mut at = start.clone();
            let mut grouped = vec![(0.0, 0.0); n];
            for i in 0..n {
                let id = id_of(i);
                grouped[at[id]] = (rows.scores[i], weight(i));
                at[id] += 1;
            }
            let mut groups: Vec<&mut [(f64, f64)]> = Vec::with_capacity(ids_here);
            let mut rest = grouped.as_mut_slice();
            for j in 0..ids_here {
                let (g, r) = rest.split_at_mut(start[j + 1] - start[j]);
                groups.push(g);
                rest = r;
            }
            groups.into_par_iter().map(weighted_median).collect()
        })
        .collect()
}

/// Why the median absolute error has no interval.
pub const NO_MEDIAN_INTERVAL: &str = "no interval: the median absolute error is computed once \
     from the kept rows, not per replicate";
/// Why a root metric of 0 has no analytic interval.
pub const NO_ROOT_INTERVAL: &str =
    "interval undefined: the delta method of a square root needs a value above 0";
/// Why a metric has no analytic interval.
pub const NO_ANALYTIC_REGRESSION: &str = "no analytic interval for this metric: analytic \
     (normal) intervals cover the mean metrics (mae, mse, rmse, mean_error, mape, smape, msle, \
     rmsle); use bootstrap=B";

/// The values of `metrics` for one slice's block, and (with `iv`) their intervals; `keep`
/// receives each metric's replicate values (a comparison's paired differences read them).
/// `small`: the slice is below `min_slice_size` (every value is null with that note).
#[allow(clippy::too_many_arguments)]
pub fn slice_results(
    block: &[f64],
    reps: &[f64],
    layout: &Layout,
    quantiles: &[f64],
    median: f64,
    metrics: &[Metric],
    iv: Option<&crate::bootstrap::IntervalSpec>,
    small: bool,
    mut keep: Option<&mut Vec<Vec<f64>>>,
) -> (Vec<Value>, Option<Vec<crate::bootstrap::Interval>>) {
    use crate::bootstrap::CiMethod;
    let main = Block {
        f: block,
        layout: *layout,
        quantiles,
    };
    let values: Vec<Value> = metrics
        .iter()
        .map(|m| {
            if small {
                Err(crate::metrics::TOO_SMALL)
            } else if *m == Metric::MedianAbsoluteError {
                if median.is_nan() {
                    Err(NO_WEIGHT)
                } else {
                    Ok(median)
                }
            } else {
                main.value(*m)
            }
        })
        .collect();
    let Some(iv) = iv else {
        return (values, None);
    };
    let slots = iv.slots();
    let n = layout.fields();
    // Each slot's fields, gathered once.
    let slot_fields: Vec<Vec<f64>> = if iv.method == CiMethod::Analytic {
        Vec::new()
    } else {
        crate::task::slot_fields(reps, n, slots)
    };
    let st = RegressionState::from_fields(block);
    let mut intervals = Vec::with_capacity(metrics.len());
    for (m, v) in metrics.iter().zip(&values) {
        let mut kept = Vec::new();
        intervals.push(match *v {
            Err(why) => Err(why),
            Ok(_) if *m == Metric::MedianAbsoluteError => {
                kept = vec![f64::NAN; slots];
                Err(NO_MEDIAN_INTERVAL)
            }
            Ok(estimate) if iv.method == CiMethod::Analytic => {
                analytic(&st, &block[n..], *m, estimate, iv.level)
            }
            Ok(estimate) => {
                kept = slot_fields
                    .iter()
                    .map(|f| {
                        let b = Block {
                            f,
                            layout: *layout,
                            quantiles,
                        };
                        b.value(*m).unwrap_or(f64::NAN)
                    })
                    .collect();
                crate::intervals::from_replicates(iv, estimate, &kept, None)
            }
        });
        if let Some(k) = keep.as_deref_mut() {
            k.push(kept);
        }
    }
    (values, Some(intervals))
}

/// The normal (CLT) interval of a mean metric: the standard error of a weighted mean,
/// `sqrt(n / (n - 1) sum w^2 (x - mean)^2) / sum w`; root metrics by the delta method.
fn analytic(
    st: &RegressionState,
    mo: &[f64],
    m: Metric,
    estimate: f64,
    level: f64,
) -> crate::bootstrap::Interval {
    use Metric::*;
    let (base, root) = match m {
        Rmse => (Mse, true),
        Rmsle => (Msle, true),
        other => (other, false),
    };
    let Some(k) = MEAN_METRICS.iter().position(|x| *x == base) else {
        return Err(NO_ANALYTIC_REGRESSION);
    };
    if st.rows < 2.0 || mo.len() < MOMENT_FIELDS {
        return Err(crate::bootstrap::TOO_FEW_ROWS);
    }
    let q2 = mo[2 + 2 * k].max(0.0);
    let se_mean = (st.rows / (st.rows - 1.0) * q2).sqrt() / st.w;
    let inf = f64::INFINITY;
    if root {
        // d sqrt(x) = dx / (2 sqrt(x)): undefined at 0.
        if !positive(estimate) {
            return Err(NO_ROOT_INTERVAL);
        }
        return crate::bootstrap::normal(estimate, se_mean / (2.0 * estimate), level, 0.0, inf);
    }
    let (lo, hi) = match base {
        MeanError => (-inf, inf),
        Smape => (0.0, 2.0),
        _ => (0.0, inf),
    };
    crate::bootstrap::normal(estimate, se_mean, level, lo, hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(seed: &mut u64) -> f64 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (*seed >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Textbook two-pass formulas on all rows at once.
    struct Reference {
        mae: f64,
        mse: f64,
        r2: f64,
        ev: f64,
        pearson: f64,
        ccc: f64,
        bias: f64,
        mape: f64,
    }

    fn reference(y: &[f64], p: &[f64], w: &[f64]) -> Reference {
        let sw: f64 = w.iter().sum();
        let mean = |v: &dyn Fn(usize) -> f64| (0..y.len()).map(|i| w[i] * v(i)).sum::<f64>() / sw;
        let my = mean(&|i| y[i]);
        let mp = mean(&|i| p[i]);
        let me = mean(&|i| p[i] - y[i]);
        let vy = mean(&|i| (y[i] - my).powi(2));
        let vp = mean(&|i| (p[i] - mp).powi(2));
        let ve = mean(&|i| (p[i] - y[i] - me).powi(2));
        let cov = mean(&|i| (y[i] - my) * (p[i] - mp));
        let mse = mean(&|i| (p[i] - y[i]).powi(2));
        Reference {
            mae: mean(&|i| (p[i] - y[i]).abs()),
            mse,
            r2: 1.0 - mse / vy,
            ev: 1.0 - ve / vy,
            pearson: cov / (vy.sqrt() * vp.sqrt()),
            ccc: 2.0 * cov / (vy + vp + (mp - my).powi(2)),
            bias: me,
            mape: mean(&|i| (p[i] - y[i]).abs() / y[i].abs().max(f64::EPSILON)),
        }
    }

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol * b.abs().max(1.0)
    }

    fn data(n: usize, seed: u64, center: f64, spread: f64) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let mut s = seed;
        let y: Vec<f64> = (0..n)
            .map(|_| center + spread * (lcg(&mut s) - 0.5))
            .collect();
        let p: Vec<f64> = y
            .iter()
            .map(|v| v + 0.3 * spread * (lcg(&mut s) - 0.4))
            .collect();
        let w: Vec<f64> = (0..n).map(|_| 0.1 + 2.0 * lcg(&mut s)).collect();
        (y, p, w)
    }

    #[test]
    fn metrics_match_two_pass_formulas_for_any_split() {
        for seed in 0..20u64 {
            let n = 1 + (seed as usize * 37) % 500;
            let (y, p, w) = data(n, seed, 3.0, 2.0);
            let want = reference(&y, &p, &w);
            let one = RegressionState::from_rows(&y, &p, Some(&w));
            // Any split, merged left to right.
            let mut s = seed;
            let mut merged = RegressionState::default();
            let mut at = 0;
            while at < n {
                let len = 1 + (lcg(&mut s) * 60.0) as usize;
                let end = (at + len).min(n);
                merged.merge(&RegressionState::from_rows(
                    &y[at..end],
                    &p[at..end],
                    Some(&w[at..end]),
                ));
                at = end;
            }
            for st in [one, merged] {
                assert!(close(st.mae().unwrap(), want.mae, 1e-12));
                assert!(close(st.mse().unwrap(), want.mse, 1e-12));
                assert!(close(st.mean_error().unwrap(), want.bias, 1e-12));
                assert!(close(st.mape().unwrap(), want.mape, 1e-12));
                if n > 1 {
                    assert!(close(st.r2().unwrap(), want.r2, 1e-10), "{seed}");
                    assert!(close(st.explained_variance().unwrap(), want.ev, 1e-10));
                    assert!(close(st.pearson().unwrap(), want.pearson, 1e-10));
                    assert!(close(st.concordance().unwrap(), want.ccc, 1e-10));
                }
                assert_eq!(st.rows, n as f64);
            }
        }
    }

    #[test]
    fn copies_of_one_row_have_no_spread() {
        // A replicate slot that drew k copies of one row, its deviations `a` about the piece's
        // mean: `aa - da^2 / w` is rounding, which used to survive as a tiny co-moment and
        // make r2 a huge negative number.
        let mut leaked = 0;
        for i in 0..2000 {
            let a = 0.37 + 13.1 * i as f64;
            let w = (1 + i % 5) as f64 * (0.1 + 0.013 * i as f64);
            let b = -0.5 * a + 1.0;
            let c = b - a;
            let sums = [
                w * a,
                w * b,
                w * c,
                w * a * a,
                w * b * b,
                w * c * c,
                w * a * b,
                w * c.abs(),
                w * c * c,
                0.0,
                0.0,
                w,
                0.0,
            ];
            leaked += (sums[3] - sums[0] * sums[0] / w != 0.0) as usize;
            let st = RegressionState::from_fields(&chan_form(0.0, w, &sums, c.abs(), &[0.0; 5]));
            assert_eq!(
                (st.m2_y, st.m2_p, st.m2_e, st.c_yp),
                (0.0, 0.0, 0.0, 0.0),
                "{i}"
            );
            assert_eq!(st.r2(), Err(CONSTANT_LABELS));
            assert_eq!(st.pearson(), Err(CONSTANT_LABELS));
        }
        assert!(leaked > 0, "the data must exercise the rounding");
    }

    #[test]
    fn slot_co_moments_keep_the_correlation_in_range() {
        // Two distinct rows, close together, about a far shift: the slot's co-moments come
        // from sums that cancel, and their rounding used to push pearson past 1.
        let mut worst: f64 = 0.0;
        for i in 0..2000 {
            // (Two points: their correlation is exactly +-1.)
            let (a1, a2) = (40.0 + 0.01 * i as f64, 40.0 + 0.01 * i as f64 + 1e-3);
            let (b1, b2) = (-30.0 + 0.007 * i as f64, -30.0 + 0.007 * i as f64 + 3e-3);
            let (w1, w2) = (1.0 + (i % 3) as f64, 2.0);
            let c = |a: f64, b: f64| b - a;
            let sums = [
                w1 * a1 + w2 * a2,
                w1 * b1 + w2 * b2,
                w1 * c(a1, b1) + w2 * c(a2, b2),
                w1 * a1 * a1 + w2 * a2 * a2,
                w1 * b1 * b1 + w2 * b2 * b2,
                w1 * c(a1, b1).powi(2) + w2 * c(a2, b2).powi(2),
                w1 * a1 * b1 + w2 * a2 * b2,
                0.0,
                0.0,
                0.0,
                0.0,
                w1 + w2,
                0.0,
            ];
            let st = RegressionState::from_fields(&chan_form(0.0, w1 + w2, &sums, 1.0, &[0.0; 5]));
            if let Ok(r) = st.pearson() {
                worst = worst.max(r.abs());
            }
            if st.m2_y > 0.0 && st.m2_p > 0.0 {
                assert!(st.c_yp.abs() <= (st.m2_y * st.m2_p).sqrt(), "{i}");
            }
        }
        assert!(worst <= 1.0, "{worst}");
    }

    #[test]
    fn large_means_keep_r2_and_pearson() {
        // Labels around 1e9 with a spread of 1: E[x^2] - E[x]^2 loses every digit.
        let n = 10_000;
        let (y, p, w) = data(n, 5, 1e9, 1.0);
        let shifted: Vec<f64> = y.iter().map(|v| v - 1e9).collect();
        let shifted_p: Vec<f64> = p.iter().map(|v| v - 1e9).collect();
        // The same data about 0 (the shift is exact: both are multiples of 2^-23 near 1e9).
        let want = reference(&shifted, &shifted_p, &w);
        let mut merged = RegressionState::default();
        for c in (0..n).step_by(777) {
            let e = (c + 777).min(n);
            merged.merge(&RegressionState::from_rows(
                &y[c..e],
                &p[c..e],
                Some(&w[c..e]),
            ));
        }
        assert!(
            close(merged.r2().unwrap(), want.r2, 1e-9),
            "{:?} vs {}",
            merged.r2(),
            want.r2
        );
        assert!(close(merged.pearson().unwrap(), want.pearson, 1e-9));
        // The naive formula is useless here.
        let sw: f64 = w.iter().sum();
        let m1: f64 = y.iter().zip(&w).map(|(v, w)| w * v).sum::<f64>() / sw;
        let m2: f64 = y.iter().zip(&w).map(|(v, w)| w * v * v).sum::<f64>() / sw;
        let naive_var = m2 - m1 * m1;
        let true_var = merged.m2_y / merged.w;
        assert!((naive_var - true_var).abs() > 0.1 * true_var);
    }

    #[test]
    fn undefined_values_have_notes() {
        let st = RegressionState::from_rows(&[2.0, 2.0], &[1.0, 3.0], None);
        assert_eq!(st.r2(), Err(CONSTANT_LABELS));
        assert_eq!(st.mae(), Ok(1.0));
        let st = RegressionState::from_rows(&[1.0, 2.0], &[3.0, 3.0], None);
        assert_eq!(st.pearson(), Err(CONSTANT_PREDICTIONS));
        let empty = RegressionState::default();
        assert_eq!(empty.mae(), Err(NO_WEIGHT));
        let st = RegressionState::from_rows(&[0.0], &[-2.0], None);
        assert_eq!(st.msle(), Err(OUT_OF_DOMAIN));
        assert_eq!(st.wmape(), Err(ZERO_LABELS));
        let zero_w = RegressionState::from_rows(&[1.0, 5.0], &[1.0, 9.0], Some(&[1.0, 0.0]));
        assert_eq!(zero_w.max_error(), Ok(0.0));
        assert_eq!(zero_w.rows, 2.0);
    }

    #[test]
    fn percentage_and_log_errors_follow_their_definitions() {
        let (y, p) = ([0.0, 2.0, -4.0], [1.0, 1.0, -2.0]);
        let st = RegressionState::from_rows(&y, &p, None);
        let mape = (1.0 / f64::EPSILON + 0.5 + 0.5) / 3.0;
        assert!(close(st.mape().unwrap(), mape, 1e-15));
        let smape = (2.0 / 1.0 + 2.0 / 3.0 + 4.0 / 6.0) / 3.0;
        assert!(close(st.smape().unwrap(), smape, 1e-15));
        assert!(close(st.wmape().unwrap(), 4.0 / 6.0, 1e-15));
        let st = RegressionState::from_rows(&[0.0, 3.0], &[1.0, 1.0], None);
        let msle = ((2f64.ln() - 0.0).powi(2) + (2f64.ln() - 4f64.ln()).powi(2)) / 2.0;
        assert!(close(st.msle().unwrap(), msle, 1e-15));
    }

    /// A block with deviance and moment fields, computed directly from the rows (moments
    /// about their own means; the null deviance about their weighted mean label).
    fn block_of(y: &[f64], p: &[f64], w: &[f64], power: f64) -> Vec<f64> {
        let st = RegressionState::from_rows(y, p, Some(w));
        let mut b = st.to_fields().to_vec();
        let mut dev = [0.0; DEV_FIELDS];
        for i in 0..y.len() {
            dev[0] += w[i] * tweedie_deviance(y[i], p[i], 1.0);
            dev[1] += w[i] * tweedie_deviance(y[i], p[i], 2.0);
            dev[2] += w[i] * tweedie_deviance(y[i], p[i], power);
            // (Below power 0 the field holds the plain sum behind it: see `null_sum`.)
            dev[3] += w[i]
                * if power < 0.0 {
                    null_sum(y[i], power)
                } else {
                    tweedie_deviance(y[i], st.mean_y, power)
                };
        }
        if power < 0.0 {
            let direct: f64 = (0..y.len())
                .map(|i| w[i] * tweedie_deviance(y[i], st.mean_y, power))
                .sum();
            let got = null_deviance(dev[3], &st, power);
            assert!(
                (got - direct).abs() <= 1e-9 * direct.abs().max(1.0),
                "{got} vs {direct}"
            );
        }
        b.extend_from_slice(&dev);
        let mut m = [0.0; MOMENT_FIELDS];
        for i in 0..y.len() {
            let t = row_terms(y[i], p[i], true);
            m[0] += w[i] * w[i];
            for k in 0..MEAN_METRICS.len() {
                let d = quantity(k, &t) - st.mean_of_quantity(k);
                m[1 + 2 * k] += w[i] * w[i] * d;
                m[2 + 2 * k] += w[i] * w[i] * d * d;
            }
        }
        b.extend_from_slice(&m);
        b
    }

    #[test]
    fn blocks_merge_like_one_block() {
        for seed in 0..12u64 {
            let n = 50 + seed as usize * 31;
            let power = [0.0, 1.0, 1.5, 2.0, 3.0, -1.0][seed as usize % 6];
            let (y, p, w) = data(n, seed, 1e3, 3.0);
            let layout = Layout {
                moments: true,
                interval: false,
                quantiles: 0,
                deviance: true,
                power,
            };
            let whole = block_of(&y, &p, &w, power);
            let mut merged = vec![0.0; layout.block_len()];
            for c in (0..n).step_by(17 + seed as usize) {
                let e = (c + 17 + seed as usize).min(n);
                merge_block(
                    &mut merged,
                    &block_of(&y[c..e], &p[c..e], &w[c..e], power),
                    &layout,
                );
            }
            let at = layout.fields();
            for (k, (a, b)) in merged.iter().zip(&whole).enumerate() {
                // Q1 about the mean is 0 up to the rounding of Q2's scale.
                let scale = if k > at && (k - at) % 2 == 1 {
                    whole[k + 1].abs().sqrt() * whole[at].sqrt()
                } else {
                    b.abs()
                };
                assert!(
                    (a - b).abs() <= 1e-9 * scale.max(1e-300),
                    "seed {seed} field {k}: {a} vs {b}"
                );
            }
        }
    }

    #[test]
    fn replicate_blocks_merge_slot_by_slot() {
        let slots = 3;
        let layout = Layout::default();
        let n = layout.fields();
        let (y, p, w) = data(40, 9, 2.0, 1.0);
        let (a, b) = (
            RegressionState::from_rows(&y[..25], &p[..25], Some(&w[..25])),
            RegressionState::from_rows(&y[25..], &p[25..], Some(&w[25..])),
        );
        let mut want = a;
        want.merge(&b);
        let lay = |st: &RegressionState, slot: usize, out: &mut Vec<f64>| {
            for (f, v) in st.to_fields().iter().enumerate() {
                out[f * slots + slot] = *v;
            }
        };
        let (mut ra, mut rb) = (vec![0.0; n * slots], vec![0.0; n * slots]);
        lay(&a, 1, &mut ra);
        lay(&b, 1, &mut rb);
        lay(&b, 2, &mut rb); // slot 2: rows of b only
        merge_rep_block(&mut ra, &rb, slots, &layout);
        let got = |slot: usize| {
            let f: Vec<f64> = (0..FIELDS).map(|q| ra[q * slots + slot]).collect();
            RegressionState::from_fields(&f)
        };
        assert_eq!(got(0), RegressionState::default());
        assert!(close(got(1).r2().unwrap(), want.r2().unwrap(), 1e-13));
        assert_eq!(got(2), b);
    }

    #[test]
    fn plain_state_has_the_same_bits_on_every_path_and_matches_the_state() {
        for seed in 0..30u64 {
            let n = seed as usize * 7 % 61; // empty, short tails and full lanes
            let (y, p, w) = data(n, seed, 50.0, 20.0);
            for weights in [None, Some(&w[..])] {
                let (fast, sw) = plain_state(&y, &p, weights);
                let (body, sw2) = plain_state_body(&y, &p, weights);
                let bits = |f: &[f64]| f.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&fast), bits(&body), "seed {seed}");
                assert_eq!(sw.to_bits(), sw2.to_bits());
                let want = RegressionState::from_rows(&y, &p, weights).to_fields();
                // (Field 14, the squared log errors, is left out: jobs with msle take the
                // general path.)
                for (k, (a, b)) in fast
                    .iter()
                    .zip(want.iter())
                    .enumerate()
                    .filter(|(k, _)| *k != 14)
                {
                    let tol = if (5..9).contains(&k) { 1e-9 } else { 1e-12 };
                    assert!(
                        (a - b).abs() <= tol * b.abs().max(1.0),
                        "seed {seed} field {k}: {a} vs {b}"
                    );
                }
            }
        }
    }
}
