//! The regression family's per-slice state and its metrics (issue 14, part 1: the state and
//! its formulas; the engine does not read it yet).
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

use crate::metrics::Value;

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
            Ok(self.mean_e)
        } else {
            Err(NO_WEIGHT)
        }
    }

    pub fn max_error(&self) -> Value {
        if self.w > 0.0 {
            Ok(self.max_abs_err)
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
}
