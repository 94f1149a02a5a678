//! Confidence intervals of one slice's metrics, from the states the pass accumulated:
//! replicate blocks (percentile, basic, BCa) or second moments and DeLong sums (analytic).

use crate::bootstrap::{
    acceleration_jackknife, normal, resampled_interval, wilson, CiMethod, Interval, IntervalSpec,
    NO_ANALYTIC, NO_JACKKNIFE, TOO_FEW_ROWS,
};
use crate::metrics::{rank_value, Metric, RankSums, Value};
use crate::reliability::{self as rel, BinRule, LogisticFit};
use crate::state::{BinaryCounts, Moments, REP_BRIER, REP_LOG_LOSS, REP_ROWS};

/// Confusion cells in replicate blocks and [`Moments::w2`]: `label << 1 | predicted`.
const TN: usize = 0;
const FP: usize = 1;
const FN: usize = 2;
const TP: usize = 3;

/// The interval of every metric of one slice (`values` are its point estimates; an undefined
/// value gets no interval, its note already says why).
#[allow(clippy::too_many_arguments)]
pub fn slice_intervals(
    iv: &IntervalSpec,
    metrics: &[Metric],
    counts: &BinaryCounts,
    values: &[Value],
    moments: Option<&Moments>,
    rank: Option<&RankSums>,
    reps: &[f64],
    id: usize,
    rep_ranks: Option<&[RankSums]>,
    weighted: bool,
    mut keep: Option<&mut Vec<Vec<f64>>>,
    calib: &CalibIntervals,
) -> Vec<Interval> {
    let mut out = Vec::with_capacity(metrics.len());
    for (m, v) in metrics.iter().zip(values) {
        // `keep` receives each metric's replicate values (empty where none were drawn), so a
        // comparison reuses them for its paired differences.
        let mut kept = Vec::new();
        out.push(match *v {
            Err(why) => Err(why),
            Ok(estimate) if m.is_calibration() => {
                let (interval, reps) = calibration_interval(iv, *m, estimate, calib);
                kept = reps;
                interval
            }
            Ok(estimate) if iv.method == CiMethod::Analytic => {
                let mo = moments.copied().unwrap_or_default();
                analytic(*m, estimate, counts, &mo, rank, iv.level)
            }
            Ok(estimate) => {
                kept = replicate_values(iv, *m, reps, id, rep_ranks);
                let influence = match iv.method {
                    CiMethod::Bca => influence_acceleration(*m, counts, moments, rank, weighted),
                    _ => None,
                };
                from_replicates(iv, estimate, &kept, influence)
            }
        });
        if let Some(k) = keep.as_deref_mut() {
            k.push(kept);
        }
    }
    out
}

/// What the intervals of one slice's calibration metrics read.
pub struct CalibIntervals<'a> {
    pub rule: BinRule,
    pub bins: usize,
    /// The slice's replicate block of its uniform bins (bootstrap jobs).
    pub reps: Option<&'a [f64]>,
    pub fit: Option<&'a std::result::Result<LogisticFit, &'static str>>,
}

/// The interval of a calibration metric and its replicate values (NaN slots when it has none,
/// so a paired comparison reports why).
fn calibration_interval(
    iv: &IntervalSpec,
    m: Metric,
    estimate: f64,
    c: &CalibIntervals,
) -> (Interval, Vec<f64>) {
    let none = |why: &'static str| (Err(why), vec![f64::NAN; iv.slots()]);
    if iv.method == CiMethod::Analytic {
        return match m {
            Metric::CalibrationSlope | Metric::CalibrationIntercept => {
                let Some(Ok(fit)) = c.fit else {
                    return none(NO_ANALYTIC);
                };
                let var = if m == Metric::CalibrationSlope {
                    fit.cov[2]
                } else {
                    fit.cov[0]
                };
                let se = var.max(0.0).sqrt();
                let bound = f64::INFINITY;
                (normal(estimate, se, iv.level, -bound, bound), Vec::new())
            }
            _ => none(NO_ANALYTIC),
        };
    }
    match m {
        Metric::Ace => none(rel::NO_REPLICATED_ACE),
        Metric::SmoothEce => none(rel::NO_REPLICATED_SMOOTH),
        Metric::CalibrationSlope | Metric::CalibrationIntercept => none(rel::NO_REPLICATED_FIT),
        _ if c.rule == BinRule::Quantile => none(rel::NO_REPLICATED_EDGES),
        _ => {
            let Some(block) = c.reps else {
                return none(rel::NO_REPLICATED_EDGES);
            };
            let values = rel::replicate_bin_metric(m, block, c.bins, iv.slots());
            (from_replicates(iv, estimate, &values, None), values)
        }
    }
}

/// The value of metric `m` in every replicate slot of slice `id` (NaN where undefined):
/// bootstrap replicates, then jackknife groups.
pub fn replicate_values(
    iv: &IntervalSpec,
    m: Metric,
    reps: &[f64],
    id: usize,
    rep_ranks: Option<&[RankSums]>,
) -> Vec<f64> {
    let slots = iv.slots();
    if m.is_rank() {
        return match rep_ranks {
            Some(r) => r
                .iter()
                .map(|s| rank_value(m, s).unwrap_or(f64::NAN))
                .collect(),
            None => vec![f64::NAN; slots],
        };
    }
    let block = &reps[id * REP_ROWS * slots..(id + 1) * REP_ROWS * slots];
    (0..slots)
        .map(|s| {
            m.from_counts(&replicate_counts(block, slots, s))
                .unwrap_or(f64::NAN)
        })
        .collect()
}

/// Whether BCa takes `m`'s acceleration from influence values (else from the grouped
/// jackknife): every metric of the confusion cells, and ROC-AUC of unweighted jobs.
pub fn has_influence(m: Metric, weighted: bool) -> bool {
    use Metric::*;
    match m {
        LogLoss | Brier | AveragePrecision => false,
        RocAuc => !weighted,
        _ if m.is_calibration() => false,
        _ if m.family() != crate::metrics::Family::Binary => false,
        _ => true,
    }
}

/// The cells of a proportion metric `[tn, fp, fn, tp]`: those of its denominator and, among
/// them, its successes (`None`: not a proportion).
fn proportion_cells(m: Metric) -> Option<(&'static [usize], &'static [usize])> {
    use Metric::*;
    const ALL: [usize; 4] = [TN, FP, FN, TP];
    Some(match m {
        BaseRate => (&ALL, &[FN, TP]),
        PredictionRate => (&ALL, &[FP, TP]),
        Accuracy => (&ALL, &[TN, TP]),
        Precision => (&[FP, TP], &[TP]),
        Recall => (&[FN, TP], &[TP]),
        Fnr => (&[FN, TP], &[FN]),
        Specificity => (&[TN, FP], &[TN]),
        Fpr => (&[TN, FP], &[FP]),
        _ => return None,
    })
}

/// The gradient of a confusion-cell metric with respect to the cells `[tn, fp, fn, tp]`, in
/// closed form (a finite difference would turn the last-bit differences of sums added in
/// another order into 1e-10 changes of the BCa acceleration). `None` where the metric is
/// undefined.
fn cell_gradient(m: Metric, c: [f64; 4]) -> Option<[f64; 4]> {
    use Metric::*;
    let [tn, fp, fn_, tp] = c;
    // p = sum(success cells) / sum(denominator cells): dp/dc = (1[c is a success] - p) / D.
    let proportion = |den: &[usize], success: &[usize]| -> Option<[f64; 4]> {
        let d: f64 = den.iter().map(|k| c[*k]).sum();
        if !(d > 0.0 && d.is_finite()) {
            return None;
        }
        let p = success.iter().map(|k| c[*k]).sum::<f64>() / d;
        let mut g = [0.0; 4];
        for k in den {
            g[*k] = (success.contains(k) as u8 as f64 - p) / d;
        }
        Some(g)
    };
    if let Some((den, success)) = proportion_cells(m) {
        return proportion(den, success);
    }
    match m {
        BalancedAccuracy => {
            let (r, s) = (proportion(&[FN, TP], &[TP])?, proportion(&[TN, FP], &[TN])?);
            Some([0, 1, 2, 3].map(|k| 0.5 * (r[k] + s[k])))
        }
        F1 | FBeta(_) => {
            let beta = if let FBeta(b) = m { b } else { 1.0 };
            // f = tp / (tp + a fn + b fp), a = beta^2 / (1 + beta^2), b = 1 / (1 + beta^2).
            let q = beta * beta;
            let (a, b) = if q.is_finite() {
                (q / (1.0 + q), 1.0 / (1.0 + q))
            } else {
                (1.0, 0.0)
            };
            let d = tp + a * fn_ + b * fp;
            if !(d > 0.0 && d.is_finite()) {
                return None;
            }
            let d2 = d * d;
            Some([0.0, -tp * b / d2, -tp * a / d2, (a * fn_ + b * fp) / d2])
        }
        Mcc => {
            // MCC is scale-free: the gradient at c / T, divided by T (no overflow of the
            // product of the four margins).
            let t = tn + fp + fn_ + tp;
            if !(t > 0.0 && t.is_finite()) {
                return None;
            }
            let [tn, fp, fn_, tp] = c.map(|x| x / t);
            let f = [tp + fp, tp + fn_, tn + fp, tn + fn_];
            if f.iter().any(|x| !(*x > 0.0 && x.is_finite())) {
                return None;
            }
            let d = f.iter().product::<f64>().sqrt();
            let v = (tp * tn - fp * fn_) / d;
            // d ln(D) / dc = 1/2 sum of 1/factor over the factors holding c.
            let dlog = [
                0.5 * (1.0 / f[2] + 1.0 / f[3]),
                0.5 * (1.0 / f[0] + 1.0 / f[2]),
                0.5 * (1.0 / f[1] + 1.0 / f[3]),
                0.5 * (1.0 / f[0] + 1.0 / f[1]),
            ];
            let dn = [tp, -fn_, -fp, tn];
            let g = [0, 1, 2, 3].map(|k| (dn[k] / d - v * dlog[k]) / t);
            g.iter().all(|x| x.is_finite()).then_some(g)
        }
        _ => None,
    }
}

/// BCa acceleration `a = sum U^3 / (6 (sum U^2)^1.5)` from the influence values `U` of the
/// rows, where they have a closed form. `None`: use the grouped jackknife.
///
/// A metric of the confusion cells is a scale-free function f of the four cell weights, so a
/// row of weight w in cell c has influence `U = w * df/dc` (the gradient in closed form, see
/// `cell_gradient`); the sums need sum(w^2) and sum(w^3) per cell. ROC-AUC (unweighted jobs) uses
/// the DeLong placements.
pub fn influence_acceleration(
    m: Metric,
    c: &BinaryCounts,
    moments: Option<&Moments>,
    rank: Option<&RankSums>,
    weighted: bool,
) -> Option<f64> {
    if !has_influence(m, weighted) {
        return None;
    }
    if m == Metric::RocAuc {
        return rank.and_then(RankSums::delong_acceleration);
    }
    let cells = [c.tn, c.fp, c.fn_, c.tp];
    let (w2, w3) = match (weighted, moments) {
        (false, _) => (cells, cells),
        (true, Some(mo)) => (mo.w2, mo.w3),
        (true, None) => return None,
    };
    let g = cell_gradient(m, cells)?;
    let (mut s2, mut s3) = (0.0, 0.0);
    for k in 0..4 {
        if cells[k] <= 0.0 {
            continue; // no rows in the cell: no influence to add
        }
        s2 += g[k] * g[k] * w2[k];
        s3 += g[k] * g[k] * g[k] * w3[k];
    }
    Some(if s2 > 0.0 {
        s3 / (6.0 * s2.powf(1.5))
    } else {
        0.0
    })
}

/// Percentile, basic or BCa interval of a statistic from its replicate slot values. BCa takes
/// the acceleration `influence` when given, else from the jackknife slots.
pub(crate) fn from_replicates(
    iv: &IntervalSpec,
    estimate: f64,
    values: &[f64],
    influence: Option<f64>,
) -> Interval {
    let (boot, jack) = values.split_at(iv.replicates);
    let accel = (iv.method == CiMethod::Bca).then(|| {
        if let Some(a) = influence {
            Ok(a)
        } else if jack.iter().any(|x| x.is_nan()) {
            Err(NO_JACKKNIFE)
        } else {
            Ok(acceleration_jackknife(jack))
        }
    });
    resampled_interval(iv.method, iv.level, estimate, boot, accel)
}

/// A paired difference `model - reference`: (delta, lo, hi, se, p-value), or why undefined.
pub type Delta = std::result::Result<(f64, f64, f64, f64, f64), &'static str>;

pub const UNDEFINED_IN_A_MODEL: &str = "undefined: the metric is undefined for a model";

/// The paired-bootstrap interval of `model - reference`, from the replicate differences `d`
/// of every slot ([`replicate_deltas`]). Both models saw the same replicate weights, so the
/// replicate differences carry the pairing. The p-value is the two-sided
/// bootstrap p-value of "no difference": `2 (min(#{d_b <= 0}, #{d_b >= 0}) + 1) / (B + 1)`,
/// capped at 1.
pub fn delta_interval(
    iv: &IntervalSpec,
    _m: Metric,
    reference: Value,
    model: Value,
    d: &[f64],
) -> Delta {
    let (a, b) = match (reference, model) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(why), _) | (_, Err(why)) => {
            return Err(if why == crate::metrics::TOO_SMALL {
                why
            } else {
                UNDEFINED_IN_A_MODEL
            })
        }
    };
    let delta = rounded_diff(b, a);
    let (lo, hi, se) = from_replicates(iv, delta, d, None)?;
    let boot = &d[..iv.replicates];
    let defined = boot.iter().filter(|x| !x.is_nan()).count() as f64;
    let le = boot.iter().filter(|x| **x <= 0.0).count() as f64;
    let ge = boot.iter().filter(|x| **x >= 0.0).count() as f64;
    let p = (2.0 * (le.min(ge) + 1.0) / (defined + 1.0)).min(1.0);
    Ok((delta, lo, hi, se, p))
}

/// `x - y`, where a difference within the rounding of the two values is 0: the same value
/// reached by sums added in different orders must not read as "better" or flip the p-value.
fn rounded_diff(x: f64, y: f64) -> f64 {
    let d = x - y;
    if d.abs() <= 8.0 * f64::EPSILON * x.abs().max(y.abs()) {
        0.0
    } else {
        d
    }
}

/// The paired replicate differences `model - reference` of every slot (bootstrap replicates
/// first, then BCa's jackknife groups), NaN where a replicate is undefined in a model.
pub fn replicate_deltas(reference_reps: &[f64], model_reps: &[f64]) -> Vec<f64> {
    model_reps
        .iter()
        .zip(reference_reps)
        .map(|(x, y)| rounded_diff(*x, *y))
        .collect()
}

/// The counts of replicate slot `s` (row counts are not replicated: `n` is 0).
fn replicate_counts(block: &[f64], slots: usize, s: usize) -> BinaryCounts {
    let at = |row: usize| block[row * slots + s];
    let (tn, fp, fn_, tp) = (at(TN), at(FP), at(FN), at(TP));
    BinaryCounts {
        n: 0,
        w: tn + fp + fn_ + tp,
        tp,
        fp,
        tn,
        fn_,
        log_loss: at(REP_LOG_LOSS),
        brier: at(REP_BRIER),
    }
}

/// Kish's effective sample size of the rows in `cells` (the row count when unweighted).
fn effective_n(counts: &BinaryCounts, mo: &Moments, cells: &[usize]) -> f64 {
    let cell_w = [counts.tn, counts.fp, counts.fn_, counts.tp];
    let w: f64 = cells.iter().map(|&c| cell_w[c]).sum();
    let w2: f64 = cells.iter().map(|&c| mo.w2[c]).sum();
    if w2.is_nan() || w2 <= 0.0 {
        return 0.0;
    }
    let n = w * w / w2;
    if n.is_finite() && n > 0.0 {
        n
    } else {
        // `w * w` or `w2` out of the float64 range: the same ratio without the square.
        let r = w / w2.sqrt();
        r * r
    }
}

fn analytic(
    m: Metric,
    estimate: f64,
    counts: &BinaryCounts,
    mo: &Moments,
    rank: Option<&RankSums>,
    level: f64,
) -> Interval {
    use Metric::*;
    let all = [TN, FP, FN, TP];
    // A proportion with no weight in its failure (success) cells is exactly 1 (0): computed
    // as a ratio of two sums added in different orders it may miss by an ulp, which the
    // standard error's sqrt(p (1 - p)) would turn into 1e-8.
    let weights = [counts.tn, counts.fp, counts.fn_, counts.tp];
    let proportion = |cells: &[usize], success: &[usize]| {
        let p = if cells
            .iter()
            .filter(|k| !success.contains(k))
            .all(|k| weights[*k] == 0.0)
        {
            1.0
        } else if success.iter().all(|k| weights[*k] == 0.0) {
            0.0
        } else {
            estimate
        };
        wilson(p, effective_n(counts, mo, cells), level)
    };
    let mean = |sum_sq: f64, max: f64| {
        let n = effective_n(counts, mo, &all);
        if n <= 1.0 {
            return Err(TOO_FEW_ROWS);
        }
        // E[x^2] - E[x]^2: a difference within its rounding error is 0 (constant losses),
        // not noise whose square root would pose as a standard error.
        let (m2, sq) = (sum_sq / counts.w, estimate * estimate);
        let var = if m2 - sq <= 16.0 * f64::EPSILON * (m2 + sq) {
            0.0
        } else {
            m2 - sq
        };
        normal(estimate, (var / (n - 1.0)).sqrt(), level, 0.0, max)
    };
    if let Some((den, success)) = proportion_cells(m) {
        return proportion(den, success);
    }
    match m {
        LogLoss => mean(mo.log_loss2, f64::INFINITY),
        Brier => mean(mo.brier2, 1.0),
        RocAuc => {
            let r = rank.ok_or(NO_ANALYTIC)?;
            let (v10, v01) = r.delong_variances().ok_or(TOO_FEW_ROWS)?;
            let (np, nn) = (
                effective_n(counts, mo, &[FN, TP]),
                effective_n(counts, mo, &[TN, FP]),
            );
            if np <= 1.0 || nn <= 1.0 {
                return Err(TOO_FEW_ROWS);
            }
            normal(
                estimate,
                (v10 / (np - 1.0) + v01 / (nn - 1.0)).sqrt(),
                level,
                0.0,
                1.0,
            )
        }
        BalancedAccuracy | F1 | FBeta(_) | Mcc | AveragePrecision => Err(NO_ANALYTIC),
        _ => Err(NO_ANALYTIC),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gradient_influence_equals_the_closed_form_of_a_proportion() {
        // accuracy p = 0.7 on 10 unweighted rows: U = x - p, a = sum U^3 / (6 (sum U^2)^1.5).
        let c = BinaryCounts {
            n: 10,
            w: 10.0,
            tp: 3.0,
            tn: 4.0,
            fp: 2.0,
            fn_: 1.0,
            log_loss: 0.0,
            brier: 0.0,
        };
        let p: f64 = 0.7;
        let s2 = 7.0 * (1.0 - p).powi(2) + 3.0 * p * p;
        let s3 = 7.0 * (1.0 - p).powi(3) - 3.0 * p.powi(3);
        let expect = s3 / (6.0 * s2.powf(1.5));
        let got = influence_acceleration(Metric::Accuracy, &c, None, None, false).unwrap();
        assert!((got - expect).abs() < 1e-8, "{got} vs {expect}");
        // Weighted with all weights 2: the same acceleration (scale-free).
        let c2 = BinaryCounts {
            w: 20.0,
            tp: 6.0,
            tn: 8.0,
            fp: 4.0,
            fn_: 2.0,
            ..c
        };
        let mo = Moments {
            w2: [16.0, 8.0, 4.0, 12.0],
            w3: [32.0, 16.0, 8.0, 24.0],
            log_loss2: 0.0,
            brier2: 0.0,
        };
        let got2 = influence_acceleration(Metric::Accuracy, &c2, Some(&mo), None, true).unwrap();
        assert!((got2 - expect).abs() < 1e-8, "{got2} vs {expect}");
        assert_eq!(
            influence_acceleration(Metric::LogLoss, &c, None, None, false),
            None
        );
    }

    #[test]
    fn closed_form_gradients_match_central_differences() {
        use Metric::*;
        let c = [40.0, 7.0, 13.0, 25.0];
        for m in [
            BaseRate,
            PredictionRate,
            Accuracy,
            BalancedAccuracy,
            Precision,
            Recall,
            Specificity,
            Fpr,
            Fnr,
            F1,
            FBeta(0.5),
            FBeta(3.0),
            Mcc,
        ] {
            let g = cell_gradient(m, c).unwrap();
            for k in 0..4 {
                let h = 1e-5;
                let at = |d: f64| {
                    let mut x = c;
                    x[k] += d;
                    m.from_counts(&BinaryCounts {
                        n: 0,
                        w: x.iter().sum(),
                        tn: x[0],
                        fp: x[1],
                        fn_: x[2],
                        tp: x[3],
                        log_loss: 0.0,
                        brier: 0.0,
                    })
                    .unwrap()
                };
                let fd = (at(h) - at(-h)) / (2.0 * h);
                assert!((fd - g[k]).abs() < 1e-7, "{m:?} cell {k}: {fd} vs {}", g[k]);
            }
        }
    }
}
