//! Confidence intervals of one slice's metrics, from the states the pass accumulated:
//! replicate blocks (percentile, basic, BCa) or second moments and DeLong sums (analytic).

use crate::bootstrap::{
    acceleration_jackknife, normal, resampled_interval, wilson, CiMethod, Interval, IntervalSpec,
    NO_ANALYTIC, NO_JACKKNIFE, TOO_FEW_ROWS,
};
use crate::metrics::{rank_value, Metric, RankSums, Value};
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
) -> Vec<Interval> {
    metrics
        .iter()
        .zip(values)
        .map(|(m, v)| {
            let estimate = (*v)?;
            if iv.method == CiMethod::Analytic {
                let mo = moments.copied().unwrap_or_default();
                return analytic(*m, estimate, counts, &mo, rank, iv.level);
            }
            let values = replicate_values(iv, *m, reps, id, rep_ranks);
            let influence = match iv.method {
                CiMethod::Bca => influence_acceleration(*m, counts, estimate, rank),
                _ => None,
            };
            from_replicates(iv, estimate, &values, influence)
        })
        .collect()
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

/// Whether BCa takes `m`'s acceleration from closed-form influence values (else from the
/// grouped jackknife).
pub fn has_influence(m: Metric) -> bool {
    use Metric::*;
    matches!(
        m,
        BaseRate
            | PredictionRate
            | Accuracy
            | Precision
            | Recall
            | Fnr
            | Specificity
            | Fpr
            | RocAuc
    )
}

/// BCa acceleration from a metric's influence values, where it has them in closed form:
/// the DeLong placements for ROC-AUC, `x - p` for the proportions. Weights count as
/// frequencies: `a = sum w U^3 / (6 (sum w U^2)^1.5)`. `None`: use the grouped jackknife.
pub fn influence_acceleration(
    m: Metric,
    c: &BinaryCounts,
    estimate: f64,
    rank: Option<&RankSums>,
) -> Option<f64> {
    use Metric::*;
    let cells = [c.tn, c.fp, c.fn_, c.tp];
    let sum = |ids: &[usize]| ids.iter().map(|&i| cells[i]).sum::<f64>();
    let all = [TN, FP, FN, TP];
    let (success, population) = match m {
        BaseRate => (sum(&[FN, TP]), sum(&all)),
        PredictionRate => (sum(&[FP, TP]), sum(&all)),
        Accuracy => (sum(&[TN, TP]), sum(&all)),
        Precision => (sum(&[TP]), sum(&[FP, TP])),
        Recall => (sum(&[TP]), sum(&[FN, TP])),
        Fnr => (sum(&[FN]), sum(&[FN, TP])),
        Specificity => (sum(&[TN]), sum(&[TN, FP])),
        Fpr => (sum(&[FP]), sum(&[TN, FP])),
        RocAuc => return rank.and_then(RankSums::delong_acceleration),
        _ => return None,
    };
    let (p, w1, w0) = (estimate, success, population - success);
    let s2 = w1 * (1.0 - p) * (1.0 - p) + w0 * p * p;
    let s3 = w1 * (1.0 - p).powi(3) - w0 * p.powi(3);
    Some(if s2 > 0.0 {
        s3 / (6.0 * s2.powf(1.5))
    } else {
        0.0
    })
}

/// Percentile, basic or BCa interval of a statistic from its replicate slot values. BCa takes
/// the acceleration `influence` when given, else from the jackknife slots.
fn from_replicates(
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

/// The paired-bootstrap interval of `model - reference`. Both models saw the same replicate
/// weights, so the replicate differences carry the pairing. The p-value is the two-sided
/// bootstrap p-value of "no difference": `2 (min(#{d_b <= 0}, #{d_b >= 0}) + 1) / (B + 1)`,
/// capped at 1.
pub fn delta_interval(
    iv: &IntervalSpec,
    _m: Metric,
    reference: Value,
    model: Value,
    reference_reps: &[f64],
    model_reps: &[f64],
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
    let delta = b - a;
    let d: Vec<f64> = model_reps
        .iter()
        .zip(reference_reps)
        .map(|(x, y)| x - y)
        .collect();
    let (lo, hi, se) = from_replicates(iv, delta, &d, None)?;
    let boot = &d[..iv.replicates];
    let defined = boot.iter().filter(|x| !x.is_nan()).count() as f64;
    let le = boot.iter().filter(|x| **x <= 0.0).count() as f64;
    let ge = boot.iter().filter(|x| **x >= 0.0).count() as f64;
    let p = (2.0 * (le.min(ge) + 1.0) / (defined + 1.0)).min(1.0);
    Ok((delta, lo, hi, se, p))
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
    if w2 > 0.0 {
        w * w / w2
    } else {
        0.0
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
    let proportion = |cells: &[usize]| wilson(estimate, effective_n(counts, mo, cells), level);
    let mean = |sum_sq: f64, max: f64| {
        let n = effective_n(counts, mo, &all);
        if n <= 1.0 {
            return Err(TOO_FEW_ROWS);
        }
        let var = (sum_sq / counts.w - estimate * estimate).max(0.0);
        normal(estimate, (var / (n - 1.0)).sqrt(), level, 0.0, max)
    };
    match m {
        BaseRate | PredictionRate | Accuracy => proportion(&all),
        Precision => proportion(&[FP, TP]),
        Recall | Fnr => proportion(&[FN, TP]),
        Specificity | Fpr => proportion(&[TN, FP]),
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
    }
}
