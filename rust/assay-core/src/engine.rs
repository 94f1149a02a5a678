//! Plans an evaluation job and drives it: one pass over the record batches, every metric for
//! every slice, in parallel, with a result that does not depend on the thread count or on how
//! the rows were split into batches.
//!
//! Rows are cut into logical chunks of [`CHUNK_ROWS`] by global row position. Each chunk's state
//! is updated row by row in row order (a chunk that straddles two batches carries its state
//! over), and finished chunks fold into the total in chunk order.

use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch};
use arrow_buffer::NullBuffer;
use arrow_schema::{ArrowError, SchemaRef};
use rayon::prelude::*;

use crate::bootstrap::{add_row, CiMethod, IntervalSpec, Resampler};
use crate::error::{invalid, AssayError, Result};
use crate::input::{
    check_label_type, check_numeric_type, check_row_id_type, column_index, f64_values, u64_values,
    validity,
};
use crate::intervals::{delta_interval, slice_intervals};
use crate::metrics::{rank_value, Metric, RankSums, TOO_SMALL};
use crate::rank::{rank_sums, rank_sums_binned, replicate_rank_sums};
use crate::report::{build_report, Report, ReportRow};
use crate::slicing::{SliceSpec, Slicer};
use crate::state::{ChunkState, RankRows, StateShape, REP_ROWS};

/// Rows per logical chunk: the unit of parallel work and of deterministic merging.
pub const CHUNK_ROWS: u64 = 1 << 16;

/// How ROC-AUC and average precision are computed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum AucMode {
    /// Exact: keeps (score, label, weight, slice ids) of every row and sorts once.
    Exact,
    /// From a fixed histogram of `bins` equal-width score bins over [0, 1]: fixed memory.
    Binned(usize),
}

/// What to do with rows whose score is NaN/inf/null or whose label is null.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum NanPolicy {
    Raise,
    Drop,
}

/// A complete evaluation job.
#[derive(Clone, Debug)]
pub struct EvalSpec {
    pub label: String,
    pub score: String,
    pub weight: Option<String>,
    pub threshold: f64,
    pub slices: Vec<SliceSpec>,
    pub metrics: Vec<Metric>,
    pub min_slice_size: u64,
    pub nan_policy: NanPolicy,
    pub auc: AucMode,
    /// Worker threads (None: all cores).
    pub n_threads: Option<usize>,
    /// Confidence intervals (None: point estimates only).
    pub interval: Option<IntervalSpec>,
    /// A paired comparison of `score` (the reference) with further models.
    pub compare: Option<CompareSpec>,
}

/// Models compared in one pass with the same replicate weights.
#[derive(Clone, Debug, PartialEq)]
pub struct CompareSpec {
    /// Name of the reference model (its column is `EvalSpec::score`).
    pub reference: String,
    /// (name, score column) of each other model.
    pub others: Vec<(String, String)>,
}

impl EvalSpec {
    fn validate(&self) -> Result<()> {
        if !self.threshold.is_finite() {
            return Err(AssayError::InvalidArgument(format!(
                "threshold must be a finite number, got {}",
                self.threshold
            )));
        }
        if self.metrics.is_empty() {
            return Err(AssayError::InvalidArgument(
                "metrics must name at least one metric".into(),
            ));
        }
        if let AucMode::Binned(b) = self.auc {
            if !(2..=1 << 20).contains(&b) {
                return Err(AssayError::InvalidArgument(format!(
                    "auc_bins must be in [2, 2^20], got {b}"
                )));
            }
        }
        if let Some(iv) = &self.interval {
            iv.validate()?;
            if iv.slots() > 0
                && matches!(self.auc, AucMode::Binned(_))
                && self.metrics.iter().any(Metric::is_rank)
            {
                return Err(AssayError::InvalidArgument(
                    "bootstrap intervals of roc_auc/average_precision need auc=\"exact\"; with \
                     auc=\"binned\" use ci_method=\"analytic\" (DeLong on the histogram)"
                        .into(),
                ));
            }
        }
        if let Some(c) = &self.compare {
            if c.others.is_empty() {
                return Err(AssayError::InvalidArgument(
                    "compare needs at least two models".into(),
                ));
            }
            match &self.interval {
                Some(iv) if iv.slots() > 0 => {}
                _ => {
                    return Err(AssayError::InvalidArgument(
                        "compare needs bootstrap=B (a paired bootstrap gives the interval of \
                         each difference) and ci_method \"percentile\", \"basic\" or \"bca\""
                            .into(),
                    ))
                }
            }
            let mut names = vec![&c.reference];
            names.extend(c.others.iter().map(|(n, _)| n));
            for (i, n) in names.iter().enumerate() {
                if names[..i].contains(n) {
                    return Err(AssayError::InvalidArgument(format!(
                        "model name {n:?} is given twice"
                    )));
                }
            }
        }
        if self.n_threads == Some(0) {
            return Err(AssayError::InvalidArgument(
                "n_threads must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// The role columns of one batch.
struct RoleColumns {
    label: ArrayRef,
    label_nulls: Option<NullBuffer>,
    /// One score column per model (the reference first).
    scores: Vec<(ArrayRef, Option<NullBuffer>)>,
    weight: Option<(ArrayRef, Option<NullBuffer>)>,
    row_id: Option<(ArrayRef, Option<NullBuffer>)>,
}

/// Per-job constants the row loop reads.
struct Plan<'a> {
    spec: &'a EvalSpec,
    /// Score columns: `spec.score` then `spec.compare_scores`.
    score_names: Vec<&'a str>,
    need_log_loss: bool,
    need_probability: bool,
    exact_rank: bool,
    hist_bins: usize,
    weighted: bool,
    shape: StateShape,
    resampler: Option<Resampler>,
    /// Whether replicate blocks are kept (some non-rank metric needs them).
    additive_reps: bool,
    /// Whether replicate blocks carry the log loss and squared error rows.
    rep_losses: bool,
}

const EPS: f64 = f64::EPSILON;

/// Updates `state` (and `rank`, one per model) with rows `lo..hi` of the batch; returns rows
/// dropped. States of model `m` and spec `k` sit at `state.specs[m * (n_specs + 1) + k]`.
/// `LEAN` jobs (one model, no resampling, no moments) compile without those branches: the
/// plain evaluation is the hot path most users run.
#[allow(clippy::too_many_arguments)]
fn update_piece<const LEAN: bool>(
    plan: &Plan,
    cols: &RoleColumns,
    ids: &[Arc<Vec<u32>>],
    lo: usize,
    hi: usize,
    first_row: u64,
    state: &mut ChunkState,
    rank: &mut [RankRows],
) -> Result<u64> {
    let spec = plan.spec;
    let (mut lb, mut wb) = (Vec::new(), Vec::new());
    let mut sbs: Vec<Vec<f64>> = vec![Vec::new(); cols.scores.len()];
    let labels = f64_values(&cols.label, lo, hi, &mut lb);
    let scores: Vec<_> = cols
        .scores
        .iter()
        .zip(sbs.iter_mut())
        .map(|((a, _), buf)| f64_values(a, lo, hi, buf))
        .collect();
    let weights = cols
        .weight
        .as_ref()
        .map(|(w, _)| f64_values(w, lo, hi, &mut wb));
    let drop = spec.nan_policy == NanPolicy::Drop;
    let mut dropped = 0;
    let bins = plan.hist_bins;
    let slots = if plan.additive_reps {
        plan.shape.slots
    } else {
        0
    };
    let per_model = ids.len() + 1;
    let row_ids = cols.row_id.as_ref().map(|(a, _)| u64_values(a, lo, hi));
    let mut kw = vec![0.0f64; slots];
    'rows: for j in 0..hi - lo {
        let i = lo + j;
        let row = first_row + j as u64;
        let y = labels[j];
        let label_missing = cols.label_nulls.as_ref().is_some_and(|n| n.is_null(i)) || y.is_nan();
        if label_missing {
            if drop {
                dropped += 1;
                continue;
            }
            return Err(invalid(
                &spec.label,
                format!(
                    "null or NaN label at row {row}; pass nan_policy=\"drop\" to drop such rows"
                ),
            ));
        }
        // A row missing any model's score is dropped for all models: comparisons are paired.
        for (m, (_, nulls)) in cols.scores.iter().enumerate() {
            let s = scores[m][j];
            let score_missing = nulls.as_ref().is_some_and(|n| n.is_null(i));
            if score_missing || !s.is_finite() {
                if drop {
                    dropped += 1;
                    continue 'rows;
                }
                let what = if score_missing {
                    "null".to_string()
                } else {
                    s.to_string()
                };
                return Err(invalid(
                    plan.score_names[m],
                    format!(
                        "score is {what} at row {row}; pass nan_policy=\"drop\" to drop such rows"
                    ),
                ));
            }
        }
        let yb = if y == 1.0 {
            true
        } else if y == 0.0 {
            false
        } else {
            return Err(invalid(
                &spec.label,
                format!("labels must be 0 or 1 (or booleans); found {y} at row {row}"),
            ));
        };
        if plan.need_probability {
            for (m, sc) in scores.iter().enumerate() {
                let s = sc[j];
                if !(0.0..=1.0).contains(&s) {
                    return Err(invalid(
                        plan.score_names[m],
                        format!("score {s} at row {row} is outside [0, 1]; log_loss, brier and auc=\"binned\" need probabilities"),
                    ));
                }
            }
        }
        let w = match &weights {
            Some(w) => {
                let (_, wnulls) = cols.weight.as_ref().unwrap();
                let v = w[j];
                if wnulls.as_ref().is_some_and(|n| n.is_null(i)) || !(v > 0.0 && v.is_finite()) {
                    let shown = if wnulls.as_ref().is_some_and(|n| n.is_null(i)) {
                        "null".to_string()
                    } else {
                        v.to_string()
                    };
                    return Err(invalid(
                        spec.weight.as_deref().unwrap_or("weight"),
                        format!("weights must be positive and finite; found {shown} at row {row}"),
                    ));
                }
                v
            }
            None => 1.0,
        };
        let mut row_key = 0;
        if let (false, Some(r)) = (LEAN, &plan.resampler) {
            let rid = match (&row_ids, &cols.row_id) {
                (Some(v), Some((_, nulls))) => {
                    if nulls.as_ref().is_some_and(|n| n.is_null(i)) {
                        let name = spec.interval.as_ref().and_then(|iv| iv.row_id.as_deref());
                        return Err(invalid(
                            name.unwrap_or("row_id"),
                            format!("row ids must not be null; found null at row {row}"),
                        ));
                    }
                    v[j]
                }
                _ => row,
            };
            row_key = r.row_key(rid);
            if slots > 0 {
                r.fill(row_key, w, 0, &mut kw);
            }
        }
        for (m, sc) in scores
            .iter()
            .enumerate()
            .take(if LEAN { 1 } else { usize::MAX })
        {
            let s = sc[j];
            let pred = s >= spec.threshold;
            let ll = if plan.need_log_loss {
                let p = s.clamp(EPS, 1.0 - EPS);
                -(if yb { p } else { 1.0 - p }).ln()
            } else {
                0.0
            };
            let br = (s - y) * (s - y);
            let hist_bin = if bins > 0 {
                ((s * bins as f64) as usize).min(bins - 1)
            } else {
                0
            };
            let cell = (yb as usize) << 1 | pred as usize;
            let model_states = &mut state.specs[m * per_model..(m + 1) * per_model];
            for (k, st) in model_states.iter_mut().enumerate() {
                let id = if k == 0 { 0 } else { ids[k - 1][i] as usize };
                st.counts[id].add(yb, pred, w, ll, br);
                if bins > 0 {
                    st.hist[(id * bins + hist_bin) * 2 + yb as usize] += w;
                }
                if !LEAN && plan.shape.moments {
                    st.moments[id].add(yb, pred, w, ll, br);
                }
                if !LEAN && slots > 0 {
                    let block = &mut st.reps[id * REP_ROWS * slots..(id + 1) * REP_ROWS * slots];
                    add_row(block, slots, cell, &kw, plan.rep_losses.then_some((ll, br)));
                }
            }
            if plan.exact_rank {
                let rank = &mut rank[m];
                rank.scores.push(s);
                rank.labels.push(yb as u8);
                if plan.weighted {
                    rank.weights.push(w);
                }
                for (k, v) in rank.ids.iter_mut().enumerate() {
                    v.push(ids[k][i]);
                }
                if !LEAN && plan.resampler.is_some() {
                    rank.row_keys.push(row_key);
                }
            }
        }
    }
    Ok(dropped)
}

/// The output of a job: the report plus bookkeeping.
pub struct Evaluation {
    /// The report of `score` (the reference model of a comparison).
    pub report: Report,
    /// Comparison jobs: the report of each other model, and the paired differences.
    pub others: Vec<Report>,
    pub comparison: Option<RecordBatch>,
    pub rows: u64,
    pub dropped: u64,
}

/// Runs `spec` over `batches` (with `schema`). `interrupted` is polled between batches on the
/// calling thread; when it returns true the job stops with [`AssayError::Interrupted`].
pub fn evaluate<I>(
    schema: SchemaRef,
    batches: I,
    spec: &EvalSpec,
    interrupted: &dyn Fn() -> bool,
) -> Result<Evaluation>
where
    I: Iterator<Item = std::result::Result<RecordBatch, ArrowError>>,
{
    spec.validate()?;
    let label_idx = column_index(&schema, &spec.label)?;
    let mut score_names: Vec<&str> = vec![&spec.score];
    if let Some(c) = &spec.compare {
        score_names.extend(c.others.iter().map(|(_, col)| col.as_str()));
    }
    let score_idx: Vec<usize> = score_names
        .iter()
        .map(|c| column_index(&schema, c))
        .collect::<Result<_>>()?;
    let weight_idx = spec
        .weight
        .as_deref()
        .map(|w| column_index(&schema, w))
        .transpose()?;
    check_label_type(&spec.label, schema.field(label_idx).data_type())?;
    for (c, i) in score_names.iter().zip(&score_idx) {
        check_numeric_type(c, "score", schema.field(*i).data_type())?;
    }
    if let (Some(w), Some(i)) = (&spec.weight, weight_idx) {
        check_numeric_type(w, "weight", schema.field(i).data_type())?;
    }
    let row_id_name = spec.interval.as_ref().and_then(|iv| iv.row_id.clone());
    let row_id_idx = row_id_name
        .as_deref()
        .map(|c| column_index(&schema, c))
        .transpose()?;
    if let (Some(c), Some(i)) = (&row_id_name, row_id_idx) {
        check_row_id_type(c, schema.field(i).data_type())?;
    }
    let mut slicer = Slicer::new(&schema, &spec.slices)?;
    let wants_rank = spec.metrics.iter().any(Metric::is_rank);
    let plan = Plan {
        spec,
        score_names,
        need_log_loss: spec.metrics.contains(&Metric::LogLoss),
        need_probability: spec.metrics.iter().any(Metric::needs_probability)
            || (wants_rank && matches!(spec.auc, AucMode::Binned(_))),
        exact_rank: wants_rank && spec.auc == AucMode::Exact,
        hist_bins: match spec.auc {
            AucMode::Binned(b) if wants_rank => b,
            _ => 0,
        },
        weighted: spec.weight.is_some(),
        shape: StateShape {
            hist_bins: match spec.auc {
                AucMode::Binned(b) if wants_rank => b,
                _ => 0,
            },
            slots: spec.interval.as_ref().map_or(0, IntervalSpec::slots),
            moments: spec
                .interval
                .as_ref()
                .is_some_and(|iv| matches!(iv.method, CiMethod::Analytic | CiMethod::Bca)),
        },
        resampler: spec
            .interval
            .as_ref()
            .filter(|iv| iv.slots() > 0)
            .map(|iv| Resampler::new(iv.seed, iv.replicates)),
        additive_reps: spec.metrics.iter().any(|m| !m.is_rank()),
        rep_losses: spec
            .metrics
            .iter()
            .any(|m| matches!(m, Metric::LogLoss | Metric::Brier)),
    };
    let models = plan.score_names.len();
    let lean = models == 1 && plan.resampler.is_none() && !plan.shape.moments;
    let mut plan = plan;
    if !plan.additive_reps {
        plan.shape.slots = 0; // rank metrics only: no replicate blocks to keep
    }
    let plan = plan;
    let pool = job_pool(spec.n_threads)?;

    let n_specs = slicer.n_specs();
    let mut total = ChunkState::default();
    let mut open: Option<ChunkState> = None;
    let mut rank: Vec<RankRows> = (0..models).map(|_| RankRows::with_specs(n_specs)).collect();
    let model_ids = |n_ids: &[usize]| -> Vec<usize> {
        (0..models).flat_map(|_| n_ids.iter().copied()).collect()
    };
    let (mut rows, mut dropped) = (0u64, 0u64);

    for batch in batches {
        if interrupted() {
            return Err(AssayError::Interrupted);
        }
        let batch = batch?;
        let len = batch.num_rows();
        if len == 0 {
            continue;
        }
        let col = |i: usize| batch.column(i).clone();
        let cols = RoleColumns {
            label_nulls: validity(&col(label_idx)),
            label: col(label_idx),
            scores: score_idx
                .iter()
                .map(|i| (col(*i), validity(&col(*i))))
                .collect(),
            weight: weight_idx.map(|i| (col(i), validity(&col(i)))),
            row_id: row_id_idx.map(|i| (col(i), validity(&col(i)))),
        };
        let (ids, n_ids) = pool.install(|| -> Result<_> {
            let ids = slicer.encode_batch(&batch)?;
            let n_ids: Vec<usize> = std::iter::once(1)
                .chain((0..n_specs).map(|s| slicer.n_ids(s)))
                .collect();
            Ok((ids, n_ids))
        })?;

        // Cut the batch at global chunk boundaries.
        let mut pieces = Vec::new();
        let mut start = 0usize;
        while start < len {
            let g = rows + start as u64;
            let boundary = (g / CHUNK_ROWS + 1) * CHUNK_ROWS;
            let end = ((boundary - rows) as usize).min(len);
            pieces.push((start, end));
            start = end;
        }
        let all_ids = model_ids(&n_ids);
        check_state_size(&all_ids, &plan, pieces.len())?;
        let mut states: Vec<(ChunkState, Vec<RankRows>)> = pieces
            .iter()
            .enumerate()
            .map(|(k, _)| {
                let mut st = match (k, open.take()) {
                    (0, Some(st)) => st,
                    _ => ChunkState::default(),
                };
                st.resize(&all_ids, plan.shape);
                let rk = (0..models).map(|_| RankRows::with_specs(n_specs)).collect();
                (st, rk)
            })
            .collect();
        let outcomes: Vec<Result<u64>> = pool.install(|| {
            pieces
                .par_iter()
                .zip(states.par_iter_mut())
                .map(|((lo, hi), (st, rk))| {
                    let first = rows + *lo as u64;
                    if lean {
                        update_piece::<true>(&plan, &cols, &ids, *lo, *hi, first, st, rk)
                    } else {
                        update_piece::<false>(&plan, &cols, &ids, *lo, *hi, first, st, rk)
                    }
                })
                .collect()
        });
        for o in outcomes {
            dropped += o?;
        }
        for ((_, hi), (st, rk)) in pieces.iter().zip(states) {
            if (rows + *hi as u64) % CHUNK_ROWS == 0 {
                total.merge(&st);
            } else {
                open = Some(st);
            }
            for (a, b) in rank.iter_mut().zip(rk) {
                a.append(b);
            }
        }
        rows += len as u64;
    }
    if let Some(st) = open.take() {
        total.merge(&st);
    }
    let kept = rows - dropped;
    if kept == 0 {
        return Err(AssayError::EmptyInput(if rows == 0 {
            "the input has no rows".to_string()
        } else {
            format!("all {rows} rows were dropped by nan_policy=\"drop\"")
        }));
    }
    if let Some(iv) = &spec.interval {
        let jackknifed: Vec<String> = spec
            .metrics
            .iter()
            .filter(|m| !crate::intervals::has_influence(**m, spec.weight.is_some()))
            .map(Metric::name)
            .collect();
        let min_rows = 2 * crate::bootstrap::JACK_GROUPS as u64;
        if iv.method == CiMethod::Bca && kept < min_rows && !jackknifed.is_empty() {
            return Err(AssayError::InvalidArgument(format!(
                "ci_method=\"bca\" takes the acceleration of {} from a {}-group jackknife, \
                 which needs at least {min_rows} rows; got {kept}. Use ci_method=\"percentile\"",
                jackknifed.join(", "),
                crate::bootstrap::JACK_GROUPS
            )));
        }
    }
    let n_ids: Vec<usize> = std::iter::once(1)
        .chain((0..n_specs).map(|s| slicer.n_ids(s)))
        .collect();
    total.resize(&model_ids(&n_ids), plan.shape);
    let per_model = n_specs + 1;

    let want_ap = spec.metrics.contains(&Metric::AveragePrecision);
    let mut ranks: Vec<Vec<Vec<RankSums>>> = Vec::new();
    let mut rep_ranks: Vec<Vec<Vec<Vec<RankSums>>>> = Vec::new();
    for (m, rk) in rank.iter().enumerate() {
        ranks.push(if plan.exact_rank {
            pool.install(|| rank_sums(rk, &n_ids))
        } else if plan.hist_bins > 0 {
            let b = plan.hist_bins;
            total.specs[m * per_model..(m + 1) * per_model]
                .iter()
                .map(|st| st.hist.chunks_exact(2 * b).map(rank_sums_binned).collect())
                .collect()
        } else {
            Vec::new()
        });
        rep_ranks.push(match (&plan.resampler, &spec.interval) {
            (Some(r), Some(iv)) if plan.exact_rank => {
                pool.install(|| replicate_rank_sums(rk, &n_ids, r, iv.slots(), want_ap))
            }
            _ => Vec::new(),
        });
    }
    drop(rank);

    let mut report_rows: Vec<Vec<ReportRow>> = (0..models).map(|_| Vec::new()).collect();
    let mut deltas = crate::report::ComparisonRows::default();
    for k in 0..per_model {
        let st0 = &total.specs[k];
        let ordered: Vec<u32> = if k == 0 {
            vec![0]
        } else {
            slicer.ordered_ids(k - 1, |id| st0.counts[id as usize].n > 0)
        };
        for id in ordered {
            let desc = (k > 0).then(|| slicer.describe(k - 1, id));
            let idu = id as usize;
            let mut replicates: Vec<Vec<Vec<f64>>> = Vec::new();
            for m in 0..models {
                let st = &total.specs[m * per_model + k];
                let c = &st.counts[idu];
                let small = k > 0 && c.n < spec.min_slice_size;
                let rank_k = ranks[m].get(k).map(|r| &r[idu]);
                let rep_rank_k = rep_ranks[m].get(k).map(|r| r[idu].as_slice());
                let values: Vec<crate::metrics::Value> = spec
                    .metrics
                    .iter()
                    .map(|metric| {
                        if small {
                            Err(TOO_SMALL)
                        } else if metric.is_rank() {
                            rank_value(*metric, rank_k.expect("rank sums of a rank metric"))
                        } else {
                            metric.from_counts(c)
                        }
                    })
                    .collect();
                let mut kept = spec.compare.as_ref().map(|_| Vec::new());
                let intervals = spec.interval.as_ref().map(|iv| {
                    slice_intervals(
                        iv,
                        &spec.metrics,
                        c,
                        &values,
                        st.moments.get(idu),
                        rank_k,
                        &st.reps,
                        idu,
                        rep_rank_k,
                        spec.weight.is_some(),
                        kept.as_mut(),
                    )
                });
                if let Some(k) = kept {
                    replicates.push(k);
                }
                report_rows[m].push(ReportRow {
                    slice: desc.clone(),
                    counts: *c,
                    values,
                    intervals,
                });
            }
            if let (Some(cmp), Some(iv)) = (&spec.compare, &spec.interval) {
                let label = desc.as_ref().map_or("overall", |d| d.label.as_str());
                let values: Vec<&[crate::metrics::Value]> = report_rows
                    .iter()
                    .map(|r| r.last().expect("just pushed").values.as_slice())
                    .collect();
                for (j, metric) in spec.metrics.iter().enumerate() {
                    for (m, (name, _)) in cmp.others.iter().enumerate() {
                        let m = m + 1;
                        deltas.push(
                            label,
                            *metric,
                            values.iter().map(|v| v[j]).collect(),
                            name,
                            delta_interval(
                                iv,
                                *metric,
                                values[0][j],
                                values[m][j],
                                &replicates[0][j],
                                &replicates[m][j],
                            ),
                        );
                    }
                }
            }
        }
    }
    let features = slicer.feature_columns();
    let mut reports = report_rows
        .into_iter()
        .map(|rows| build_report(&features, spec, rows))
        .collect::<Result<Vec<_>>>()?;
    let report = reports.remove(0);
    let comparison = match &spec.compare {
        Some(cmp) => Some(deltas.finish(cmp, &spec.metrics)?),
        None => None,
    };
    Ok(Evaluation {
        report,
        others: reports,
        comparison,
        rows,
        dropped,
    })
}

/// The most memory the per-chunk states of one batch may take (replicate blocks dominate).
const MAX_STATE_BYTES: usize = 8 << 30;

/// Refuses a job whose per-chunk states would not fit: `pieces` chunk states of every slice
/// of every spec (and model), each with its replicate block, are alive at once.
fn check_state_size(n_ids: &[usize], plan: &Plan, pieces: usize) -> Result<()> {
    let ids: usize = n_ids.iter().sum();
    let per_id = std::mem::size_of::<crate::state::BinaryCounts>()
        + 8 * (REP_ROWS * plan.shape.slots + 2 * plan.shape.hist_bins);
    let bytes = ids.saturating_mul(per_id).saturating_mul(pieces + 1);
    if bytes > MAX_STATE_BYTES {
        return Err(AssayError::InvalidArgument(format!(
            "this job needs about {:.1} GiB of per-slice state ({ids} slices x {} replicate \
             slots, {pieces} chunks in flight); use fewer bootstrap replicates, fewer or \
             coarser slices, or smaller record batches",
            bytes as f64 / (1u64 << 30) as f64,
            plan.shape.slots
        )));
    }
    Ok(())
}

/// A rayon pool owned by one call. Each job builds its own rather than using the global
/// pool so that a process forked after a call (multiprocessing) starts clean, and so that
/// `n_threads` is honoured exactly. `None` means one thread per core.
pub(crate) fn job_pool(n_threads: Option<usize>) -> Result<rayon::ThreadPool> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(n_threads.unwrap_or(0))
        .build()
        .map_err(|e| AssayError::InvalidArgument(format!("could not start worker threads: {e}")))
}
