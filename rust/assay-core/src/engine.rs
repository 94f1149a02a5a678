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

use crate::bootstrap::{add_into, add_scaled, CiMethod, IntervalSpec, Resampler};
use crate::error::{invalid, AssayError, Result};
use crate::input::{
    check_label_type, check_numeric_type, check_row_id_type, column_index, f64_values, u64_values,
    validity,
};
use crate::intervals::slice_intervals;
use crate::metrics::{rank_value, Metric, RankSums, TOO_SMALL};
use crate::rank::{rank_sums, rank_sums_binned, replicate_rank_sums};
use crate::report::{build_report, Report, ReportRow};
use crate::slicing::{SliceSpec, Slicer};
use crate::state::{ChunkState, RankRows, StateShape, REP_BRIER, REP_LOG_LOSS, REP_ROWS};

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
            if iv.replicates > 0
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
    score: ArrayRef,
    score_nulls: Option<NullBuffer>,
    weight: Option<(ArrayRef, Option<NullBuffer>)>,
    row_id: Option<(ArrayRef, Option<NullBuffer>)>,
}

/// Per-job constants the row loop reads.
struct Plan<'a> {
    spec: &'a EvalSpec,
    need_log_loss: bool,
    need_probability: bool,
    exact_rank: bool,
    hist_bins: usize,
    weighted: bool,
    shape: StateShape,
    resampler: Option<Resampler>,
    /// Whether replicate blocks carry the log loss and squared error rows.
    rep_losses: bool,
}

const EPS: f64 = f64::EPSILON;

/// Updates `state` (and `rank`) with rows `lo..hi` of the batch; returns rows dropped.
#[allow(clippy::too_many_arguments)]
fn update_piece(
    plan: &Plan,
    cols: &RoleColumns,
    ids: &[Arc<Vec<u32>>],
    lo: usize,
    hi: usize,
    first_row: u64,
    state: &mut ChunkState,
    rank: &mut RankRows,
) -> Result<u64> {
    let spec = plan.spec;
    let (mut lb, mut sb, mut wb) = (Vec::new(), Vec::new(), Vec::new());
    let labels = f64_values(&cols.label, lo, hi, &mut lb);
    let scores = f64_values(&cols.score, lo, hi, &mut sb);
    let weights = cols
        .weight
        .as_ref()
        .map(|(w, _)| f64_values(w, lo, hi, &mut wb));
    let drop = spec.nan_policy == NanPolicy::Drop;
    let mut dropped = 0;
    let bins = plan.hist_bins;
    let slots = plan.shape.slots;
    let row_ids = cols.row_id.as_ref().map(|(a, _)| u64_values(a, lo, hi));
    let mut kw = vec![0.0f64; slots];
    for j in 0..hi - lo {
        let i = lo + j;
        let row = first_row + j as u64;
        let y = labels[j];
        let label_missing = cols.label_nulls.as_ref().is_some_and(|n| n.is_null(i)) || y.is_nan();
        let s = scores[j];
        let score_missing = cols.score_nulls.as_ref().is_some_and(|n| n.is_null(i));
        if label_missing || score_missing || !s.is_finite() {
            if drop {
                dropped += 1;
                continue;
            }
            return Err(if label_missing {
                invalid(&spec.label, format!("null or NaN label at row {row}; pass nan_policy=\"drop\" to drop such rows"))
            } else {
                let what = if score_missing {
                    "null".to_string()
                } else {
                    s.to_string()
                };
                invalid(
                    &spec.score,
                    format!(
                        "score is {what} at row {row}; pass nan_policy=\"drop\" to drop such rows"
                    ),
                )
            });
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
        if plan.need_probability && !(0.0..=1.0).contains(&s) {
            return Err(invalid(
                &spec.score,
                format!("score {s} at row {row} is outside [0, 1]; log_loss, brier and auc=\"binned\" need probabilities"),
            ));
        }
        let w = match &weights {
            Some(w) => {
                let (wcol, wnulls) = cols.weight.as_ref().unwrap();
                let _ = wcol;
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
        let mut row_key = 0;
        if let Some(r) = &plan.resampler {
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
            r.fill(row_key, w, 0, &mut kw);
        }
        let cell = (yb as usize) << 1 | pred as usize;
        for (k, st) in state.specs.iter_mut().enumerate() {
            let id = if k == 0 { 0 } else { ids[k - 1][i] as usize };
            st.counts[id].add(yb, pred, w, ll, br);
            if bins > 0 {
                st.hist[(id * bins + hist_bin) * 2 + yb as usize] += w;
            }
            if plan.shape.moments {
                st.moments[id].add(yb, pred, w, ll, br);
            }
            if slots > 0 {
                let block = &mut st.reps[id * REP_ROWS * slots..(id + 1) * REP_ROWS * slots];
                add_into(&mut block[cell * slots..(cell + 1) * slots], &kw);
                if plan.rep_losses {
                    let at = |r: usize| r * slots..(r + 1) * slots;
                    add_scaled(&mut block[at(REP_LOG_LOSS)], &kw, ll);
                    add_scaled(&mut block[at(REP_BRIER)], &kw, br);
                }
            }
        }
        if plan.exact_rank {
            rank.scores.push(s);
            rank.labels.push(yb as u8);
            if plan.weighted {
                rank.weights.push(w);
            }
            for (k, v) in rank.ids.iter_mut().enumerate() {
                v.push(ids[k][i]);
            }
            if slots > 0 {
                rank.row_keys.push(row_key);
            }
        }
    }
    Ok(dropped)
}

/// The output of a job: the report plus bookkeeping.
pub struct Evaluation {
    pub report: Report,
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
    let score_idx = column_index(&schema, &spec.score)?;
    let weight_idx = spec
        .weight
        .as_deref()
        .map(|w| column_index(&schema, w))
        .transpose()?;
    check_label_type(&spec.label, schema.field(label_idx).data_type())?;
    check_numeric_type(&spec.score, "score", schema.field(score_idx).data_type())?;
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
                .is_some_and(|iv| iv.method == CiMethod::Analytic),
        },
        resampler: spec
            .interval
            .as_ref()
            .filter(|iv| iv.slots() > 0)
            .map(|iv| Resampler::new(iv.seed, iv.replicates)),
        rep_losses: spec
            .metrics
            .iter()
            .any(|m| matches!(m, Metric::LogLoss | Metric::Brier)),
    };
    let pool = job_pool(spec.n_threads)?;

    let n_specs = slicer.n_specs();
    let mut total = ChunkState::default();
    let mut open: Option<ChunkState> = None;
    let mut rank = RankRows::with_specs(n_specs);
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
            score_nulls: validity(&col(score_idx)),
            score: col(score_idx),
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
        let mut states: Vec<(ChunkState, RankRows)> = pieces
            .iter()
            .enumerate()
            .map(|(k, _)| {
                let mut st = match (k, open.take()) {
                    (0, Some(st)) => st,
                    _ => ChunkState::default(),
                };
                st.resize(&n_ids, plan.shape);
                (st, RankRows::with_specs(n_specs))
            })
            .collect();
        let outcomes: Vec<Result<u64>> = pool.install(|| {
            pieces
                .par_iter()
                .zip(states.par_iter_mut())
                .map(|((lo, hi), (st, rk))| {
                    update_piece(&plan, &cols, &ids, *lo, *hi, rows + *lo as u64, st, rk)
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
            rank.append(rk);
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
    let n_ids: Vec<usize> = std::iter::once(1)
        .chain((0..n_specs).map(|s| slicer.n_ids(s)))
        .collect();
    total.resize(&n_ids, plan.shape);

    let ranks: Vec<Vec<RankSums>> = if plan.exact_rank {
        pool.install(|| rank_sums(&rank, &n_ids))
    } else if plan.hist_bins > 0 {
        let b = plan.hist_bins;
        total
            .specs
            .iter()
            .map(|st| st.hist.chunks_exact(2 * b).map(rank_sums_binned).collect())
            .collect()
    } else {
        Vec::new()
    };
    let rep_ranks: Vec<Vec<Vec<RankSums>>> = match &plan.resampler {
        Some(r) if plan.exact_rank => {
            let want_ap = spec.metrics.contains(&Metric::AveragePrecision);
            pool.install(|| replicate_rank_sums(&rank, &n_ids, r, plan.shape.slots, want_ap))
        }
        _ => Vec::new(),
    };
    drop(rank);

    let mut report_rows = Vec::new();
    for (k, st) in total.specs.iter().enumerate().take(n_specs + 1) {
        let ordered: Vec<u32> = if k == 0 {
            vec![0]
        } else {
            slicer.ordered_ids(k - 1, |id| st.counts[id as usize].n > 0)
        };
        for id in ordered {
            let c = &st.counts[id as usize];
            let small = k > 0 && c.n < spec.min_slice_size;
            let values: Vec<crate::metrics::Value> = spec
                .metrics
                .iter()
                .map(|m| {
                    if small {
                        Err(TOO_SMALL)
                    } else if m.is_rank() {
                        rank_value(*m, &ranks[k][id as usize])
                    } else {
                        m.from_counts(c)
                    }
                })
                .collect();
            let desc = if k == 0 {
                None
            } else {
                Some(slicer.describe(k - 1, id))
            };
            let intervals = spec.interval.as_ref().map(|iv| {
                slice_intervals(
                    iv,
                    &spec.metrics,
                    c,
                    &values,
                    st.moments.get(id as usize),
                    ranks.get(k).map(|r| &r[id as usize]),
                    &st.reps,
                    id as usize,
                    rep_ranks.get(k).map(|r| r[id as usize].as_slice()),
                )
            });
            report_rows.push(ReportRow {
                slice: desc,
                counts: *c,
                values,
                intervals,
            });
        }
    }
    let report = build_report(&slicer.feature_columns(), spec, report_rows)?;
    Ok(Evaluation {
        report,
        rows,
        dropped,
    })
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
