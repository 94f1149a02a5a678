//! Recalibration: maps from raw scores to calibrated probabilities, fitted on one split and
//! applied to another. Fits live here; applying a fitted map is a closed-form expression the
//! facade evaluates vectorized.

// The fits read scores, labels and optional weights at the same row index.
#![allow(clippy::needless_range_loop)]

use crate::error::{AssayError, Result};
use crate::fastmath::{logit, sigmoid};
use crate::state::WeightScale;

/// Checks the common fit inputs: equal lengths, non-empty, finite scores, 0/1 labels, positive
/// weights, and both classes present.
fn check_fit(x: &[f64], y: &[f64], w: Option<&[f64]>, what: &str) -> Result<()> {
    if x.len() != y.len() || w.is_some_and(|w| w.len() != x.len()) {
        return Err(AssayError::InvalidArgument(format!(
            "{what}: scores, labels and weights must have the same length"
        )));
    }
    if x.is_empty() {
        return Err(AssayError::EmptyInput(format!(
            "{what}: cannot fit on empty data"
        )));
    }
    if let Some(i) = x.iter().position(|v| !v.is_finite()) {
        return Err(crate::error::invalid(
            "scores",
            format!("{what}: score {:?} at row {i} is not finite", x[i]),
        ));
    }
    if let Some(i) = y.iter().position(|v| *v != 0.0 && *v != 1.0) {
        return Err(crate::error::invalid(
            "labels",
            format!("{what}: labels must be 0 or 1; found {:?} at row {i}", y[i]),
        ));
    }
    if let Some(w) = w {
        if let Some(i) = w.iter().position(|v| !(*v > 0.0 && v.is_finite())) {
            return Err(crate::error::invalid(
                "weights",
                format!(
                    "{what}: weights must be positive and finite; found {} at row {i}",
                    w[i]
                ),
            ));
        }
    }
    let positives = y.iter().filter(|v| **v == 1.0).count();
    if positives == 0 || positives == y.len() {
        return Err(crate::error::invalid(
            "labels",
            format!("{what}: cannot fit on a single class (both 0 and 1 labels are needed)"),
        ));
    }
    Ok(())
}

fn weight(w: Option<&[f64]>, i: usize) -> f64 {
    w.map_or(1.0, |w| w[i])
}

/// The (checked) weights times the power of two of [`WeightScale`]: a fit does not change
/// when all weights are scaled, and its sums then stay in the float64 range whatever their
/// unit. Returns the factor too (Platt's smoothing reads true weighted counts). A weight that
/// the factor makes subnormal or 0 (one too far below the largest) is refused: it would lose
/// its value silently.
fn scaled_weights(w: Option<&[f64]>, what: &str) -> Result<(Option<Vec<f64>>, WeightScale)> {
    let Some(w) = w else {
        return Ok((None, WeightScale::ONE));
    };
    let scale = WeightScale::from_max(w.iter().fold(0.0f64, |m, v| m.max(*v)));
    let mut buf = Vec::new();
    let scaled = scale.apply(w, &mut buf).to_vec();
    if scale.exp != 0 {
        if let Some(i) = scaled.iter().position(|v| !v.is_normal()) {
            return Err(crate::error::invalid(
                "weights",
                format!("{what}: {}", scale.out_of_range(w[i], i as u64)),
            ));
        }
    }
    Ok((Some(scaled), scale))
}

/// Whether every logit is the same (the scores carry no variation a slope could fit).
fn constant(z: &[f64]) -> bool {
    z.iter().all(|v| *v == z[0])
}

/// `ln(a) - ln(b)` for positive sums: the logit of `a / (a + b)` without forming the ratio.
fn log_odds(a: f64, b: f64) -> f64 {
    a.ln() - b.ln()
}

/// Weighted isotonic regression of `y` on `x` by pool-adjacent-violators, as
/// scikit-learn's `IsotonicRegression`: rows with equal `x` are first merged (weighted mean of
/// `y`, summed weight). Returns knots: ascending `x` values (the ends of each block of equal
/// fitted value) and the fitted value at each; the fitted function interpolates linearly
/// between them.
pub fn isotonic_fit(
    x: &[f64],
    y: &[f64],
    w: Option<&[f64]>,
    increasing: bool,
) -> Result<(Vec<f64>, Vec<f64>)> {
    check_fit(x, y, w, "Isotonic.fit")?;
    let (ws, _) = scaled_weights(w, "Isotonic.fit")?;
    let w = ws.as_deref();
    // (x, row) pairs sorted by x then row: a total order, so the parallel sort is deterministic
    // and tied rows merge in row order.
    let mut keyed: Vec<(f64, u32)> = x.iter().enumerate().map(|(i, v)| (*v, i as u32)).collect();
    crate::runtime::job_pool(None)?.install(|| {
        use rayon::slice::ParallelSliceMut;
        keyed.par_sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)))
    });
    let order = keyed.iter().map(|(_, i)| *i as usize);
    // Merge ties in x.
    let (mut xs, mut ys, mut ws) = (Vec::new(), Vec::new(), Vec::new());
    for i in order {
        let wi = weight(w, i);
        match xs.last() {
            Some(&last) if last == x[i] => {
                let k = ys.len() - 1;
                ys[k] += wi * y[i];
                ws[k] += wi;
            }
            _ => {
                xs.push(x[i]);
                ys.push(wi * y[i]);
                ws.push(wi);
            }
        }
    }
    let mut means: Vec<f64> = ys.iter().zip(&ws).map(|(s, w)| s / w).collect();
    if !increasing {
        means.iter_mut().for_each(|m| *m = -*m);
    }
    // Pool adjacent violators: a stack of blocks (value, weight, length).
    let mut blocks: Vec<(f64, f64, usize)> = Vec::with_capacity(means.len());
    for (m, wt) in means.iter().zip(&ws) {
        let mut cur = (*m, *wt, 1usize);
        while let Some(&(v, bw, len)) = blocks.last() {
            if v <= cur.0 {
                break;
            }
            blocks.pop();
            let tw = bw + cur.1;
            cur = ((v * bw + cur.0 * cur.1) / tw, tw, len + cur.2);
        }
        blocks.push(cur);
    }
    // Knots: the first and last x of each constant block; linear interpolation between them
    // gives back every fitted value (as scikit-learn's `X_thresholds_`).
    let (mut kx, mut ky) = (Vec::new(), Vec::new());
    let mut at = 0usize;
    for (v, _, len) in blocks {
        let v = if increasing { v } else { -v };
        kx.push(xs[at]);
        ky.push(v);
        if len > 1 {
            kx.push(xs[at + len - 1]);
            ky.push(v);
        }
        at += len;
    }
    Ok((kx, ky))
}

fn check_probabilities(s: &[f64], what: &str) -> Result<()> {
    if let Some(i) = s.iter().position(|v| !(0.0..=1.0).contains(v)) {
        return Err(crate::error::invalid(
            "scores",
            format!(
                "{what}: scores must be probabilities in [0, 1]; found {} at row {i}",
                s[i]
            ),
        ));
    }
    Ok(())
}

/// Platt scaling: `p = sigmoid(a * logit(s) + b)`, fitted by Newton's method on the weighted log
/// loss. With `smoothing`, the targets are Platt's (1998) `(N+ + 1) / (N+ + 2)` for positives
/// and `1 / (N- + 2)` for negatives (weighted counts), which keeps the fit finite on separable
/// data. Constant scores (every logit equal) leave the slope unidentifiable: the fit is then
/// intercept-only, `a = 0` and `sigmoid(b)` the weighted mean target (the base rate). Returns
/// `(a, b)`.
pub fn platt_fit(s: &[f64], y: &[f64], w: Option<&[f64]>, smoothing: bool) -> Result<(f64, f64)> {
    check_fit(s, y, w, "Platt.fit")?;
    check_probabilities(s, "Platt.fit")?;
    let (ws, scale) = scaled_weights(w, "Platt.fit")?;
    let w = ws.as_deref();
    let z: Vec<f64> = s.iter().map(|p| logit(*p)).collect();
    let (mut np, mut nn) = (0.0, 0.0);
    for i in 0..y.len() {
        if y[i] == 1.0 {
            np += weight(w, i);
        } else {
            nn += weight(w, i);
        }
    }
    let (tp, tn) = if smoothing {
        // Platt's targets read the true weighted counts (infinite ones give 1 and 0).
        let (np, nn) = (scale.unscale(np), scale.unscale(nn));
        let tp = if np.is_finite() {
            (np + 1.0) / (np + 2.0)
        } else {
            1.0
        };
        (tp, 1.0 / (nn + 2.0))
    } else {
        (1.0, 0.0)
    };
    let t: Vec<f64> = y.iter().map(|v| if *v == 1.0 { tp } else { tn }).collect();
    if constant(&z) {
        // No variation in the scores: the slope is not identifiable. The intercept-only fit
        // maps every score to the (weighted, smoothed) base rate: sigmoid(b) = mean target.
        let (mut st, mut sf) = (0.0, 0.0);
        for i in 0..t.len() {
            st += weight(w, i) * t[i];
            sf += weight(w, i) * (1.0 - t[i]);
        }
        return Ok((0.0, log_odds(st, sf)));
    }
    // Newton's method with step halving on the (convex) weighted cross-entropy.
    let loss = |a: f64, b: f64| -> f64 {
        let mut l = 0.0;
        for i in 0..z.len() {
            let m = a * z[i] + b;
            // log(1 + e^m) - t m, computed stably
            let softplus = if m > 0.0 {
                m + (-m).exp().ln_1p()
            } else {
                m.exp().ln_1p()
            };
            l += weight(w, i) * (softplus - t[i] * m);
        }
        l
    };
    let (mut a, mut b) = (1.0, 0.0);
    let mut current = loss(a, b);
    for _ in 0..100 {
        let (mut ga, mut gb, mut haa, mut hab, mut hbb) = (0.0, 0.0, 0.0, 0.0, 0.0);
        for i in 0..z.len() {
            let wi = weight(w, i);
            let p = sigmoid(a * z[i] + b);
            let r = wi * (p - t[i]);
            let q = wi * p * (1.0 - p);
            ga += r * z[i];
            gb += r;
            haa += q * z[i] * z[i];
            hab += q * z[i];
            hbb += q;
        }
        // A tiny ridge keeps the Hessian invertible when all logits coincide.
        let (haa, hbb) = (haa + 1e-12, hbb + 1e-12);
        let det = haa * hbb - hab * hab;
        if det.is_nan() || det <= 0.0 {
            break;
        }
        let da = (hbb * ga - hab * gb) / det;
        let db = (haa * gb - hab * ga) / det;
        let mut step = 1.0;
        let mut improved = false;
        while step > 1e-10 {
            let (na, nb) = (a - step * da, b - step * db);
            let l = loss(na, nb);
            if l <= current {
                a = na;
                b = nb;
                improved = current - l > 1e-15 * current.abs().max(1.0);
                current = l;
                break;
            }
            step *= 0.5;
        }
        if !improved || (da.abs() + db.abs()) < 1e-12 {
            break;
        }
    }
    if !(a.is_finite() && b.is_finite()) {
        return Err(AssayError::InvalidArgument(
            "Platt.fit did not converge (are the classes perfectly separated? use smoothing=True)"
                .into(),
        ));
    }
    Ok((a, b))
}

/// Temperature scaling (binary): `p = sigmoid(logit(s) / T)`, with `T > 0` minimizing the
/// weighted log loss (a one-dimensional convex problem in `1 / T`, solved by Newton's method
/// with bisection safeguards). Constant scores: see [`constant_temperature`]. Returns `T`.
pub fn temperature_fit(s: &[f64], y: &[f64], w: Option<&[f64]>) -> Result<f64> {
    check_fit(s, y, w, "Temperature.fit")?;
    check_probabilities(s, "Temperature.fit")?;
    let (ws, _) = scaled_weights(w, "Temperature.fit")?;
    let w = ws.as_deref();
    let z: Vec<f64> = s.iter().map(|p| logit(*p)).collect();
    if constant(&z) {
        return constant_temperature(s[0], z[0], y, w);
    }
    // d/dk of the loss in k = 1/T: sum w (sigmoid(k z) - y) z, increasing in k.
    let grad = |k: f64| -> (f64, f64) {
        let (mut g, mut h) = (0.0, 0.0);
        for i in 0..z.len() {
            let p = sigmoid(k * z[i]);
            g += weight(w, i) * (p - y[i]) * z[i];
            h += weight(w, i) * p * (1.0 - p) * z[i] * z[i];
        }
        (g, h)
    };
    let (mut lo, mut hi) = (1e-6, 1.0);
    while grad(hi).0 < 0.0 {
        hi *= 2.0;
        if hi > 1e6 {
            return Err(AssayError::InvalidArgument(
                "Temperature.fit: the scores separate the classes perfectly; the temperature \
                 goes to 0"
                    .into(),
            ));
        }
    }
    if grad(lo).0 > 0.0 {
        return Err(AssayError::InvalidArgument(
            "Temperature.fit: the scores carry no signal about the labels (the temperature goes \
             to infinity)"
                .into(),
        ));
    }
    let mut k = 0.5 * (lo + hi);
    for _ in 0..200 {
        let (g, h) = grad(k);
        if g > 0.0 {
            hi = k;
        } else {
            lo = k;
        }
        let newton = if h > 0.0 { k - g / h } else { f64::NAN };
        let next = if newton > lo && newton < hi {
            newton
        } else {
            0.5 * (lo + hi)
        };
        if (next - k).abs() <= 1e-14 * k.max(1e-300) {
            k = next;
            break;
        }
        k = next;
    }
    Ok(1.0 / k)
}

/// Temperature scaling of constant scores (logit `z0` everywhere). It can only rescale the
/// logit, so the best fit maps the score to the (weighted) base rate `r` when that is
/// reachable: `z0 / T = logit(r)`, which needs `z0 != 0` and `logit(r)` of the same sign
/// (the base rate on the same side of 1/2 as the score). Otherwise no temperature fits and
/// the error says why.
fn constant_temperature(s0: f64, z0: f64, y: &[f64], w: Option<&[f64]>) -> Result<f64> {
    let (mut pos, mut neg) = (0.0, 0.0);
    for i in 0..y.len() {
        if y[i] == 1.0 {
            pos += weight(w, i);
        } else {
            neg += weight(w, i);
        }
    }
    let rate = pos / (pos + neg);
    let target = log_odds(pos, neg);
    if z0 == 0.0 {
        return Err(crate::error::invalid(
            "scores",
            format!(
                "Temperature.fit: every score is {s0} (logit 0); temperature scaling divides the \
                 logit, which stays 0, so it cannot move the scores to the base rate {rate:.6}; \
                 use Platt, which fits an intercept"
            ),
        ));
    }
    let t = z0 / target;
    if !(t > 0.0 && t.is_finite()) {
        return Err(crate::error::invalid(
            "scores",
            format!(
                "Temperature.fit: every score is {s0} but the base rate is {rate:.6}, on the \
                 other side of 0.5 (or at 0.5); temperature scaling keeps a score's side of 0.5, \
                 so no temperature fits; use Platt, which fits an intercept"
            ),
        ));
    }
    Ok(t)
}

/// Histogram binning: `n_bins` equal-width bins over [0, 1] (left-closed, the last closed);
/// each bin maps to the weighted fraction of positives in it. An empty bin maps to its midpoint.
pub fn histogram_fit(s: &[f64], y: &[f64], w: Option<&[f64]>, n_bins: usize) -> Result<Vec<f64>> {
    if n_bins == 0 {
        return Err(AssayError::InvalidArgument(
            "HistogramBinning: n_bins must be at least 1".into(),
        ));
    }
    check_fit(s, y, w, "HistogramBinning.fit")?;
    check_probabilities(s, "HistogramBinning.fit")?;
    let (ws, _) = scaled_weights(w, "HistogramBinning.fit")?;
    let w = ws.as_deref();
    let (mut pos, mut tot) = (vec![0.0; n_bins], vec![0.0; n_bins]);
    for i in 0..s.len() {
        let b = ((s[i] * n_bins as f64) as usize).min(n_bins - 1);
        tot[b] += weight(w, i);
        pos[b] += weight(w, i) * y[i];
    }
    Ok((0..n_bins)
        .map(|b| {
            if tot[b] > 0.0 {
                pos[b] / tot[b]
            } else {
                (b as f64 + 0.5) / n_bins as f64
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn isotonic_pools_violators_and_merges_ties() {
        let x = [1.0, 2.0, 2.0, 3.0, 4.0, 5.0];
        let y = [0.0, 1.0, 0.0, 0.0, 1.0, 1.0];
        let (xs, fit) = isotonic_fit(&x, &y, None, true).unwrap();
        assert_eq!(xs, vec![1.0, 2.0, 3.0, 4.0, 5.0]);
        // x=2 has mean 0.5 (weight 2), x=3 has 0 (weight 1): pooled to 1/3.
        let third = 1.0 / 3.0;
        for (a, b) in fit.iter().zip([0.0, third, third, 1.0, 1.0]) {
            assert!((a - b).abs() < 1e-15, "{fit:?}");
        }
    }

    #[test]
    fn platt_recovers_a_planted_logistic_map() {
        // Deterministic rows: labels drawn by a threshold on a fixed sequence.
        let n = 20_000;
        let (a0, b0) = (0.5, -0.7);
        let mut s = Vec::with_capacity(n);
        let mut y = Vec::with_capacity(n);
        let mut u: u64 = 12345;
        for i in 0..n {
            let p = (i as f64 + 0.5) / n as f64;
            s.push(p);
            u ^= u << 13;
            u ^= u >> 7;
            u ^= u << 17;
            let r = (u >> 11) as f64 / (1u64 << 53) as f64;
            y.push((r < sigmoid(a0 * logit(p) + b0)) as u8 as f64);
        }
        let (a, b) = platt_fit(&s, &y, None, false).unwrap();
        assert!((a - a0).abs() < 0.05 && (b - b0).abs() < 0.05, "{a} {b}");
    }

    #[test]
    fn constant_scores_fit_the_base_rate_or_say_why_not() {
        // Weighted base rate 0.52: labels 1 with weight 0.52 in total, 0 with 0.48.
        let y = [1.0, 0.0, 1.0, 0.0];
        let w = [0.26, 0.24, 0.26, 0.24];
        for s0 in [0.0, 0.3, 0.5, 0.9, 1.0] {
            let s = [s0; 4];
            // Platt without smoothing: slope 0, sigmoid(b) = the weighted base rate.
            let (a, b) = platt_fit(&s, &y, Some(&w), false).unwrap();
            assert_eq!(a, 0.0);
            assert!((sigmoid(b) - 0.52).abs() < 1e-12, "{s0}: {b}");
            // With smoothing: the mean of Platt's targets.
            let (a, b) = platt_fit(&s, &y, Some(&w), true).unwrap();
            let (np, nn) = (0.52, 0.48);
            let (tp, tn) = ((np + 1.0) / (np + 2.0), 1.0 / (nn + 2.0));
            let mean = (np * tp + nn * tn) / (np + nn);
            assert_eq!(a, 0.0);
            assert!((sigmoid(b) - mean).abs() < 1e-12, "{s0}: {b}");
        }
        // Temperature: logit(0.9) / T = logit(0.52) has a positive solution.
        let t = temperature_fit(&[0.9; 4], &y, Some(&w)).unwrap();
        assert!((sigmoid(logit(0.9) / t) - 0.52).abs() < 1e-12, "{t}");
        // ... but not from 0.5 (logit 0) nor from the other side of 0.5.
        for s0 in [0.5, 0.3, 0.0] {
            let e = temperature_fit(&[s0; 4], &y, Some(&w)).unwrap_err();
            assert!(
                matches!(&e, AssayError::InvalidInput { column, .. } if column == "scores"),
                "{e}"
            );
            assert!(e.to_string().contains("Platt"), "{e}");
        }
        // Isotonic and histogram binning map the constant score to the base rate.
        let (x, v) = isotonic_fit(&[0.3; 4], &y, Some(&w), true).unwrap();
        assert_eq!(x, vec![0.3]);
        assert!((v[0] - 0.52).abs() < 1e-15);
        let h = histogram_fit(&[0.3; 4], &y, Some(&w), 10).unwrap();
        assert!((h[3] - 0.52).abs() < 1e-15);
    }

    #[test]
    fn fits_do_not_change_when_the_weights_are_scaled() {
        let s = [0.1, 0.3, 0.35, 0.6, 0.8, 0.9, 0.2, 0.7];
        let y = [0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0];
        let w = [1.0, 2.0, 0.5, 1.5, 1.0, 3.0, 2.5, 0.75];
        let base_platt = platt_fit(&s, &y, Some(&w), false).unwrap();
        let base_temp = temperature_fit(&s, &y, Some(&w)).unwrap();
        let base_iso = isotonic_fit(&s, &y, Some(&w), true).unwrap();
        let base_hist = histogram_fit(&s, &y, Some(&w), 4).unwrap();
        for k in [-300, -150, 150, 300] {
            let f = 10f64.powi(k);
            let ws: Vec<f64> = w.iter().map(|v| v * f).collect();
            let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * b.abs().max(1e-3);
            let (a, b) = platt_fit(&s, &y, Some(&ws), false).unwrap();
            assert!(close(a, base_platt.0) && close(b, base_platt.1), "1e{k}");
            assert!(close(
                temperature_fit(&s, &y, Some(&ws)).unwrap(),
                base_temp
            ));
            let iso = isotonic_fit(&s, &y, Some(&ws), true).unwrap();
            assert_eq!(iso.0, base_iso.0);
            assert!(iso.1.iter().zip(&base_iso.1).all(|(a, b)| close(*a, *b)));
            let hist = histogram_fit(&s, &y, Some(&ws), 4).unwrap();
            assert!(hist.iter().zip(&base_hist).all(|(a, b)| close(*a, *b)));
        }
    }

    #[test]
    fn fits_refuse_a_single_class() {
        let s = [0.2, 0.4];
        assert!(platt_fit(&s, &[1.0, 1.0], None, true).is_err());
        assert!(isotonic_fit(&s, &[0.0, 0.0], None, true).is_err());
        assert!(temperature_fit(&s, &[0.0, 0.0], None).is_err());
        assert!(histogram_fit(&s, &[], None, 3).is_err());
    }
}
