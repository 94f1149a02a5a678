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
    let slots = iv.slots();
    let block = if slots > 0 {
        &reps[id * REP_ROWS * slots..(id + 1) * REP_ROWS * slots]
    } else {
        &[][..]
    };
    metrics
        .iter()
        .zip(values)
        .map(|(m, v)| {
            let estimate = (*v)?;
            if iv.method == CiMethod::Analytic {
                let mo = moments.copied().unwrap_or_default();
                return analytic(*m, estimate, counts, &mo, rank, iv.level);
            }
            let value_at = |s: usize| -> f64 {
                let v = if m.is_rank() {
                    match rep_ranks {
                        Some(r) => rank_value(*m, &r[s]),
                        None => Err(NO_ANALYTIC),
                    }
                } else {
                    m.from_counts(&replicate_counts(block, slots, s))
                };
                v.unwrap_or(f64::NAN)
            };
            let boot: Vec<f64> = (0..iv.replicates).map(value_at).collect();
            let accel = (iv.method == CiMethod::Bca).then(|| {
                let jack: Vec<f64> = (iv.replicates..slots).map(value_at).collect();
                if jack.iter().any(|x| x.is_nan()) {
                    Err(NO_JACKKNIFE)
                } else {
                    Ok(acceleration_jackknife(&jack))
                }
            });
            resampled_interval(iv.method, iv.level, estimate, &boot, accel)
        })
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
