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
    check_batch, check_label_type, check_numeric_type, check_row_id_type, column_index, f64_view,
    u64_values, validity,
};
use crate::intervals::{delta_interval, slice_intervals, CalibIntervals};
use crate::metrics::{rank_value, Metric, RankSums, TOO_SMALL};
use crate::rank::{rank_sums, rank_sums_binned, rank_sums_calibrated, replicate_rank_sums};
use crate::reliability::{
    self as rel, BinRule, CalibSpec, LogisticFit, BIN_FIELDS, GRID_CELLS, GRID_FIELDS, LOGIT_CELLS,
    LOGIT_FIELDS, REP_BIN_FIELDS,
};
use crate::report::{build_report, Report, ReportRow};
use crate::slicing::{SliceSpec, Slicer};
use crate::state::{ChunkState, RankRows, RankWindow, StateShape, WeightScale, REP_ROWS};

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
    /// Per slice spec, the one slice to report (its label, e.g. a discovered
    /// `"country=BR & device=mobile"`) instead of all of them; empty for none.
    pub slice_only: Vec<Option<String>>,
    /// The rows of an in-memory input (None for a stream read once). Jobs that keep rows
    /// reserve them once; a job whose only kept rows would be the overall slice's quantile
    /// bins instead holds on to the batches (the caller's memory, not a copy) and reads the
    /// few rows it needs from them a second time. The count is only a hint: any number of
    /// rows is handled.
    pub rows_hint: Option<u64>,
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
    /// Bins of the calibration metrics.
    pub calibration: CalibSpec,
    /// Build the reliability table of the calibration bins, with Wilson intervals at this
    /// level (`Evaluation::reliability`).
    pub reliability: Option<f64>,
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
        self.calibration.validate()?;
        if let Some(level) = self.reliability {
            if !(level > 0.0 && level < 1.0) {
                return Err(AssayError::InvalidArgument(format!(
                    "ci must lie strictly between 0 and 1, got {level}"
                )));
            }
        }
        if !self.slice_only.is_empty() && self.slice_only.len() != self.slices.len() {
            return Err(AssayError::InvalidArgument(
                "slice_only must give one entry per slice spec".into(),
            ));
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
    /// The job's [`WeightScale`] (fixed from the first batch with a valid weight).
    weight_scale: WeightScale,
}

/// The [`WeightScale`] of a job from the weights of its first batch: `None` when the batch has
/// no valid weight (the factor then comes from a later batch).
fn first_weight_scale(weights: &ArrayRef) -> Option<WeightScale> {
    let mut buf = Vec::new();
    let values = f64_view(weights, 0, weights.len(), &mut buf);
    let nulls = validity(weights);
    let max = values
        .iter()
        .enumerate()
        .filter(|(i, w)| nulls.as_ref().is_none_or(|n| n.is_valid(*i)) && w.is_finite())
        .fold(0.0f64, |m, (_, w)| m.max(*w));
    (max > 0.0).then(|| WeightScale::from_max(max))
}

/// Per-job constants the row loop reads.
struct Plan<'a> {
    spec: &'a EvalSpec,
    /// Score columns: `spec.score` then `spec.compare_scores`.
    score_names: Vec<&'a str>,
    need_log_loss: bool,
    /// Whether the squared errors are summed (the Brier score); a lean piece skips them.
    need_brier: bool,
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
    /// Edges of the uniform calibration bins kept in the pass (empty: none).
    calib_edges: Vec<f64>,
    /// Whether quantile calibration bins are built from the kept rows after the pass.
    quantile_bins: bool,
    /// Whether (score, label, weight, ids) of every row are kept (exact rank metrics or
    /// quantile bins).
    keep_rows: bool,
    /// The calibration states built from the sorted order of the exact rank metrics instead
    /// of in the pass (see `reliability::SortedWant`); `shape` then leaves them out of the
    /// pass, and `calib_shape` is the shape the report reads.
    sorted_calib: Option<rel::SortedWant>,
    calib_shape: StateShape,
    /// Whether each piece adds its accepted (probability, unweighted) rows to the
    /// `reliability::ProbHist` of the overall slice's quantile bins.
    prob_counts: bool,
    /// Whether the overall slice's quantile bins (the only rows the job would keep) come from
    /// its histogram and a second read of the in-memory batches instead of kept rows.
    replay: bool,
}

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
    rank: &mut [RankWindow],
    probs: &mut [rel::ProbCells],
    scratch: &mut Scratch,
) -> Result<u64> {
    let spec = plan.spec;
    let Scratch {
        labels: lb,
        weights: wb,
        scaled_weights: swb,
        scores: sbs,
        aux,
    } = scratch;
    sbs.resize_with(cols.scores.len(), Vec::new);
    let labels = f64_view(&cols.label, lo, hi, lb);
    let scores: Vec<&[f64]> = cols
        .scores
        .iter()
        .zip(sbs.iter_mut())
        .map(|((a, _), buf)| f64_view(a, lo, hi, buf))
        .collect();
    // The weights as given (their checks and messages read these) and as accumulated.
    let raw_weights = cols.weight.as_ref().map(|(w, _)| f64_view(w, lo, hi, wb));
    let weights = raw_weights.map(|raw| cols.weight_scale.apply(raw, swb));
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
    let mut kw = vec![0.0f64; slots.max(plan.shape.slots * plan.shape.calib_reps as usize)];
    let calib_bins = plan.shape.calib_bins;
    let calib = calib_bins > 0 || plan.shape.grid || plan.shape.logit;
    if LEAN
        && lean_fast_piece(
            plan,
            cols,
            ids,
            (lo, hi),
            (labels, scores[0], weights),
            state,
            &mut rank[0],
            probs.first_mut(),
            aux,
        )
    {
        return Ok(0);
    }
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
                format!("labels must be 0 or 1 (or booleans); found {y:?} at row {row}"),
            ));
        };
        if plan.need_probability {
            for (m, sc) in scores.iter().enumerate() {
                let s = sc[j];
                if !(0.0..=1.0).contains(&s) {
                    return Err(invalid(
                        plan.score_names[m],
                        format!("score {s:?} at row {row} is outside [0, 1]; log_loss, brier, the calibration metrics and auc=\"binned\" need probabilities"),
                    ));
                }
            }
        }
        let w = match (&raw_weights, &weights) {
            (Some(raw), Some(w)) => {
                let (_, wnulls) = cols.weight.as_ref().unwrap();
                let v = raw[j];
                let name = spec.weight.as_deref().unwrap_or("weight");
                if wnulls.as_ref().is_some_and(|n| n.is_null(i)) || !(v > 0.0 && v.is_finite()) {
                    let shown = if wnulls.as_ref().is_some_and(|n| n.is_null(i)) {
                        "null".to_string()
                    } else {
                        format!("{v:?}")
                    };
                    return Err(invalid(
                        name,
                        format!("weights must be positive and finite; found {shown} at row {row}"),
                    ));
                }
                // Scaled: a weight that overflowed, or underflowed to a subnormal or to 0,
                // lost its value (unscaled, `w` is `v`, checked above).
                if cols.weight_scale.exp != 0 && !w[j].is_normal() {
                    return Err(invalid(name, cols.weight_scale.out_of_range(v, row)));
                }
                w[j]
            }
            _ => 1.0,
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
            if !kw.is_empty() {
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
                crate::fastmath::log_loss(yb, s)
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
            let calib_bin = if calib_bins > 0 {
                rel::uniform_bin(&plan.calib_edges, s)
            } else {
                0
            };
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
                if calib {
                    update_calibration(plan, st, id, calib_bin, s, y, w, &kw);
                }
            }
            if plan.prob_counts {
                probs[m].add(s, yb);
            }
            if plan.keep_rows {
                let rank = &mut rank[m];
                rank.put(s, yb, w, row_key);
                let at = rank.at;
                for (k, v) in rank.ids.iter_mut().enumerate() {
                    v[at] = ids[k][i];
                }
                rank.at += 1;
            }
        }
    }
    Ok(dropped)
}

/// The plain job's fast path for a piece without nulls: one vectorizable check of every row,
/// then one tight loop per slice spec with no error branches. Each accumulator receives its rows
/// in row order, as in the general loop, so the sums have the same bits. Returns false (and
/// changes nothing) when some row is invalid: the general loop then reports or drops it.
#[allow(clippy::too_many_arguments)]
fn lean_fast_piece(
    plan: &Plan,
    cols: &RoleColumns,
    ids: &[Arc<Vec<u32>>],
    (lo, hi): (usize, usize),
    (labels, scores, weights): (&[f64], &[f64], Option<&[f64]>),
    state: &mut ChunkState,
    rank: &mut RankWindow,
    probs: Option<&mut rel::ProbCells>,
    aux: &mut [Vec<f64>; 2],
) -> bool {
    let no_nulls = cols.label_nulls.is_none()
        && cols.scores[0].1.is_none()
        && cols.weight.as_ref().is_none_or(|(_, n)| n.is_none());
    if !no_nulls {
        return false;
    }
    let prob = plan.need_probability;
    let rows_ok = labels.iter().zip(scores).fold(true, |ok, (y, s)| {
        let in_range = !prob | ((*s >= 0.0) & (*s <= 1.0));
        ok & ((*y == 0.0) | (*y == 1.0)) & s.is_finite() & in_range
    });
    // Scaled weights must stay normal (see the general loop, which reports the ones that do not).
    let scaled = cols.weight_scale.exp != 0;
    let weights_ok = weights.is_none_or(|w| {
        if scaled {
            w.iter().fold(true, |ok, v| ok & v.is_normal() & (*v > 0.0))
        } else {
            w.iter().fold(true, |ok, v| ok & (*v > 0.0) & v.is_finite())
        }
    });
    if !(rows_ok && weights_ok) {
        return false;
    }
    let spec = plan.spec;
    let n = hi - lo;
    let w_at = |j: usize| weights.map_or(1.0, |w| w[j]);
    let [log_loss, logits] = aux;
    log_loss.clear();
    if plan.need_log_loss {
        crate::fastmath::log_losses(labels, scores, log_loss);
    }
    logits.clear();
    if plan.shape.logit {
        crate::fastmath::logits(scores, logits);
    }
    let bins = plan.hist_bins;
    let shape = plan.shape;
    for (k, st) in state.specs.iter_mut().enumerate().take(ids.len() + 1) {
        let id_of = |j: usize| {
            if k == 0 {
                0
            } else {
                ids[k - 1][lo + j] as usize
            }
        };
        if k == 0 && weights.is_none() {
            let ll = plan.need_log_loss.then_some(&log_loss[..]);
            st.counts[0].add_unweighted(labels, scores, spec.threshold, ll, plan.need_brier);
        } else if k == 0 {
            // One slice: the counts stay in registers.
            let mut c = st.counts[0];
            for j in 0..n {
                let (y, s) = (labels[j], scores[j]);
                let ll = if plan.need_log_loss { log_loss[j] } else { 0.0 };
                c.add(
                    y == 1.0,
                    s >= spec.threshold,
                    w_at(j),
                    ll,
                    (s - y) * (s - y),
                );
            }
            st.counts[0] = c;
        } else {
            for j in 0..n {
                let (y, s) = (labels[j], scores[j]);
                let ll = if plan.need_log_loss { log_loss[j] } else { 0.0 };
                let c = &mut st.counts[id_of(j)];
                c.add(
                    y == 1.0,
                    s >= spec.threshold,
                    w_at(j),
                    ll,
                    (s - y) * (s - y),
                );
            }
        }
        if bins > 0 {
            for j in 0..n {
                let s = scores[j];
                let b = ((s * bins as f64) as usize).min(bins - 1);
                st.hist[(id_of(j) * bins + b) * 2 + (labels[j] == 1.0) as usize] += w_at(j);
            }
        }
        if shape.calib_bins > 0 {
            let len = shape.calib_bins * BIN_FIELDS;
            for j in 0..n {
                let (s, id) = (scores[j], id_of(j));
                let b = rel::uniform_bin(&plan.calib_edges, s);
                rel::add_bin(
                    &mut st.calib[id * len..(id + 1) * len],
                    b,
                    s,
                    labels[j],
                    w_at(j),
                );
            }
        }
        if shape.grid {
            let len = (GRID_CELLS + 1) * GRID_FIELDS;
            for j in 0..n {
                let id = id_of(j);
                rel::add_grid(
                    &mut st.grid[id * len..(id + 1) * len],
                    scores[j],
                    labels[j],
                    w_at(j),
                );
            }
        }
        if shape.logit {
            let len = LOGIT_CELLS * LOGIT_FIELDS;
            for j in 0..n {
                let id = id_of(j);
                let cells = &mut st.logit[id * len..(id + 1) * len];
                rel::add_logit_at(cells, logits[j], labels[j], w_at(j));
            }
        }
    }
    if let (true, Some(p)) = (plan.prob_counts, probs) {
        p.add_rows(scores, labels);
    }
    if plan.keep_rows {
        rank.scores[..n].copy_from_slice(scores);
        for (l, y) in rank.labels[..n].iter_mut().zip(labels) {
            *l = (*y == 1.0) as u8;
        }
        if plan.weighted {
            rank.weights[..n].copy_from_slice(weights.expect("weights of a weighted job"));
        }
        for (k, v) in rank.ids.iter_mut().enumerate() {
            v[..n].copy_from_slice(&ids[k][lo..hi]);
        }
        rank.at = n;
    }
    true
}

/// Buffers a worker reuses from one chunk to the next (fresh ones would page-fault).
#[derive(Default)]
struct Scratch {
    labels: Vec<f64>,
    weights: Vec<f64>,
    /// The weights times the job's [`WeightScale`] (when it is not 1).
    scaled_weights: Vec<f64>,
    scores: Vec<Vec<f64>>,
    /// Per-row log losses and logits of the fast path.
    aux: [Vec<f64>; 2],
}

/// One row's calibration states in slice `id` of `st`.
#[allow(clippy::too_many_arguments)]
#[inline]
fn update_calibration(
    plan: &Plan,
    st: &mut crate::state::SliceStates,
    id: usize,
    bin: usize,
    s: f64,
    y: f64,
    w: f64,
    kw: &[f64],
) {
    let shape = plan.shape;
    let bins = shape.calib_bins;
    if bins > 0 {
        let block = &mut st.calib[id * bins * BIN_FIELDS..(id + 1) * bins * BIN_FIELDS];
        rel::add_bin(block, bin, s, y, w);
        if shape.calib_reps {
            let len = bins * REP_BIN_FIELDS * shape.slots;
            let block = &mut st.calib_reps[id * len..(id + 1) * len];
            rel::add_bin_reps(block, shape.slots, bin, s, y, w, kw);
        }
    }
    if shape.grid {
        let len = (GRID_CELLS + 1) * GRID_FIELDS;
        rel::add_grid(&mut st.grid[id * len..(id + 1) * len], s, y, w);
    }
    if shape.logit {
        let len = LOGIT_CELLS * LOGIT_FIELDS;
        rel::add_logit(&mut st.logit[id * len..(id + 1) * len], s, y, w);
    }
}

/// Where a replayed job finds its columns in each batch.
struct ReplayColumns<'a> {
    label: usize,
    /// Every model's score column (a row missing any of them was dropped for all).
    scores: &'a [usize],
    /// The model whose bins are built.
    model: usize,
}

/// Rows a replay part reads at a time.
const REPLAY_ROWS: usize = 1 << 16;

/// The overall slice's quantile bins of model `cols.model` from `hist` (the pass's histogram
/// of its accepted rows) and a second read of the pass's `batches`: only the rows of the
/// quantiles' buckets are gathered, in row order, skipping the rows the pass dropped (null or
/// NaN label or score; every other bad row failed the pass). Scores crowded into one bucket
/// gather every accepted row instead. The same bits as the kept-rows route.
fn replay_quantile_bins(
    batches: &[RecordBatch],
    cols: &ReplayColumns,
    hist: &rel::ProbHist,
    n_bins: usize,
    pool: &rayon::ThreadPool,
    interrupted: &dyn Fn() -> bool,
) -> Result<(Vec<f64>, Vec<f64>)> {
    let plan = rel::HistQuantiles::new(hist, n_bins);
    let mut parts: Vec<rel::Gathered> = Vec::new();
    for batch in batches {
        if interrupted() {
            return Err(AssayError::Interrupted);
        }
        let label = batch.column(cols.label);
        let label_nulls = validity(label);
        let scores: Vec<(&ArrayRef, Option<NullBuffer>)> = cols
            .scores
            .iter()
            .map(|i| (batch.column(*i), validity(batch.column(*i))))
            .collect();
        let len = batch.num_rows();
        let starts: Vec<usize> = (0..len).step_by(REPLAY_ROWS).collect();
        let got: Vec<rel::Gathered> = pool.install(|| {
            starts
                .into_par_iter()
                .map_init(Scratch::default, |scratch, lo| {
                    let hi = (lo + REPLAY_ROWS).min(len);
                    let mut buf = Vec::new();
                    let s = f64_view(scores[cols.model].0, lo, hi, &mut scratch.labels);
                    let mut got = plan
                        .as_ref()
                        .map_or_else(|| vec![Vec::new()], rel::HistQuantiles::gather_slots);
                    // Labels and the other models' scores are read only for the rows gathered.
                    let mut take = |j: usize, slot: usize| {
                        let i = lo + j;
                        let y = f64_view(label, i, i + 1, &mut buf)[0];
                        let missing = label_nulls.as_ref().is_some_and(|n| n.is_null(i))
                            || y.is_nan()
                            || scores.iter().any(|(a, nulls)| {
                                nulls.as_ref().is_some_and(|n| n.is_null(i))
                                    || !f64_view(a, i, i + 1, &mut buf)[0].is_finite()
                            });
                        if !missing {
                            got[slot].push((s[j], 1.0, y));
                        }
                    };
                    match &plan {
                        Some(p) => p.scan(s, take),
                        None => (0..s.len()).for_each(|j| take(j, 0)),
                    }
                    got
                })
                .collect()
        });
        parts.extend(got);
    }
    Ok(match plan {
        Some(p) => p.finish(parts),
        None => {
            let rows = parts.into_iter().flat_map(|mut p| p.swap_remove(0));
            let (s, y): (Vec<f64>, Vec<u8>) = rows.map(|(x, _, l)| (x, l as u8)).unzip();
            rel::slice_quantile_bins(&s, &y, None, n_bins)
        }
    })
}

/// The output of a job: the report plus bookkeeping.
pub struct Evaluation {
    /// The report of `score` (the reference model of a comparison).
    pub report: Report,
    /// Comparison jobs: the report of each other model, and the paired differences.
    pub others: Vec<Report>,
    pub comparison: Option<RecordBatch>,
    /// The reliability table of the reference model (when `EvalSpec::reliability` is set).
    pub reliability: Option<RecordBatch>,
    pub rows: u64,
    pub dropped: u64,
}

/// Runs `spec` over `batches` (with `schema`). `interrupted` is polled between batches on the
/// calling thread; when it returns true the job stops with [`AssayError::Interrupted`]. The
/// long stages after the pass (sorts, rank and replicate walks, finalization) poll the job's
/// [`crate::runtime::Interrupt`] (see [`crate::runtime::run_job`]) too.
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
    let stop = || interrupted() || crate::runtime::interrupted();
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
    let cal = spec.calibration;
    let wants_bins = spec.reliability.is_some() || spec.metrics.iter().any(Metric::uses_bins);
    let uniform_bins = wants_bins && cal.rule == BinRule::Uniform;
    let quantile_bins =
        (wants_bins && cal.rule == BinRule::Quantile) || spec.metrics.contains(&Metric::Ace);
    let slots = spec.interval.as_ref().map_or(0, IntervalSpec::slots);
    let mut plan = Plan {
        spec,
        score_names,
        need_log_loss: spec.metrics.contains(&Metric::LogLoss),
        need_brier: spec.metrics.contains(&Metric::Brier),
        need_probability: spec.metrics.iter().any(Metric::needs_probability)
            || spec.reliability.is_some()
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
            slots,
            calib_bins: if uniform_bins { cal.bins } else { 0 },
            calib_reps: uniform_bins && slots > 0,
            grid: spec.metrics.contains(&Metric::SmoothEce),
            logit: spec
                .metrics
                .iter()
                .any(|m| matches!(m, Metric::CalibrationSlope | Metric::CalibrationIntercept)),
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
        additive_reps: spec
            .metrics
            .iter()
            .any(|m| !m.is_rank() && !m.is_calibration()),
        rep_losses: spec
            .metrics
            .iter()
            .any(|m| matches!(m, Metric::LogLoss | Metric::Brier)),
        calib_edges: if uniform_bins {
            rel::uniform_edges(cal.bins)
        } else {
            Vec::new()
        },
        quantile_bins,
        keep_rows: quantile_bins || (wants_rank && spec.auc == AucMode::Exact),
        sorted_calib: None,
        calib_shape: StateShape::default(),
        prob_counts: false,
        replay: false,
    };
    plan.calib_shape = plan.shape;
    // A job that sorts its rows for exact rank metrics reads its calibration states off that
    // order (sequential walks instead of scattered updates of dense per-slice grids). Not with
    // intervals: replicate bins and moments are built in the pass.
    let sh = plan.shape;
    let calibrated = sh.calib_bins > 0 || quantile_bins || sh.grid || sh.logit;
    if plan.exact_rank && spec.interval.is_none() && calibrated {
        plan.sorted_calib = Some(rel::SortedWant {
            uniform_edges: plan.calib_edges.clone(),
            quantile_bins: if quantile_bins { cal.bins } else { 0 },
            grid: sh.grid,
            logit: sh.logit,
        });
        plan.shape.calib_bins = 0;
        plan.shape.grid = false;
        plan.shape.logit = false;
        plan.quantile_bins = false;
    }
    plan.prob_counts = plan.quantile_bins && !plan.weighted;
    // Kept rows cost a write (and first touch) of every row; an in-memory input can instead
    // be read again for the few rows of the quantiles' buckets.
    if plan.prob_counts && !plan.exact_rank && slicer.n_specs() == 0 && spec.rows_hint.is_some() {
        plan.replay = true;
        plan.keep_rows = false;
    }
    let models = plan.score_names.len();
    let lean = models == 1 && plan.resampler.is_none() && !plan.shape.moments;
    if !plan.additive_reps && !plan.shape.calib_reps {
        plan.shape.slots = 0; // rank metrics only: no replicate blocks to keep
    }
    let plan = plan;
    let pool = job_pool(spec.n_threads)?;

    let n_specs = slicer.n_specs();
    let mut total = ChunkState::default();
    let mut open: Option<ChunkState> = None;
    let mut free: Vec<ChunkState> = Vec::new();
    let mut rank: Vec<RankRows> = (0..models).map(|_| RankRows::with_specs(n_specs)).collect();
    let model_ids = |n_ids: &[usize]| -> Vec<usize> {
        (0..models).flat_map(|_| n_ids.iter().copied()).collect()
    };
    let (mut rows, mut dropped) = (0u64, 0u64);
    let mut prob_hists: Vec<rel::ProbHist> = if plan.prob_counts {
        vec![rel::ProbHist::default(); models]
    } else {
        Vec::new()
    };
    // The batches of a replayed job (references to the caller's in-memory table).
    let mut retained: Vec<RecordBatch> = Vec::new();
    // Fixed by the first batch that has a valid weight (see `WeightScale`).
    let mut weight_scale: Option<WeightScale> = None;

    for (batch_index, batch) in batches.enumerate() {
        if stop() {
            return Err(AssayError::Interrupted);
        }
        let batch = batch?;
        check_batch(&schema, &batch, batch_index)?;
        let len = batch.num_rows();
        if len == 0 {
            continue;
        }
        if plan.replay {
            retained.push(batch.clone());
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
            weight_scale: match weight_idx {
                Some(i) => {
                    if weight_scale.is_none() {
                        weight_scale = first_weight_scale(&col(i));
                    }
                    weight_scale.unwrap_or(WeightScale::ONE)
                }
                None => WeightScale::ONE,
            },
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
        // Pieces run in waves of a few per thread: the chunk states in flight (and their
        // memory) stay bounded however large the batch, and merged states are reused.
        let wave = WAVE;
        check_state_size(&all_ids, &plan, pieces.len().min(wave))?;
        for (w, wave_pieces) in pieces.chunks(wave).enumerate() {
            // Kept rows are written in place: each piece gets a window of each model's rows.
            let sizes: Vec<usize> = wave_pieces
                .iter()
                .map(|(lo, hi)| if plan.keep_rows { hi - lo } else { 0 })
                .collect();
            let keyed = plan.resampler.is_some();
            if w == 0 && plan.keep_rows {
                let hinted = spec
                    .rows_hint
                    .map_or(0, |h| h.saturating_sub(rows) as usize);
                for r in rank.iter_mut() {
                    r.reserve_rows(len.max(hinted), plan.weighted, keyed);
                }
            }
            let mut windows: Vec<std::vec::IntoIter<RankWindow>> = pool.install(|| {
                rank.iter_mut()
                    .map(|r| r.open_windows(&sizes, plan.weighted, keyed).into_iter())
                    .collect()
            });
            let mut states: Vec<(ChunkState, Vec<RankWindow>)> = (0..wave_pieces.len())
                .map(|k| {
                    let mut st = match (w == 0 && k == 0, open.take()) {
                        (true, Some(st)) => st,
                        (_, back) => {
                            open = back;
                            free.pop().unwrap_or_default()
                        }
                    };
                    st.resize(&all_ids, plan.shape);
                    let rk = windows
                        .iter_mut()
                        .map(|w| w.next().expect("a window per piece"))
                        .collect();
                    (st, rk)
                })
                .collect();
            drop(windows);
            type Outcome = (Result<u64>, Vec<rel::ProbHist>);
            let outcomes: Vec<Outcome> = pool.install(|| {
                wave_pieces
                    .par_iter()
                    .zip(states.par_iter_mut())
                    .map_init(Scratch::default, |scratch, ((lo, hi), (st, rk))| {
                        let first = rows + *lo as u64;
                        let (lo, hi) = (*lo, *hi);
                        let mut probs = if plan.prob_counts {
                            vec![rel::ProbCells::default(); models]
                        } else {
                            Vec::new()
                        };
                        let r = if lean {
                            update_piece::<true>(
                                &plan, &cols, &ids, lo, hi, first, st, rk, &mut probs, scratch,
                            )
                        } else {
                            update_piece::<false>(
                                &plan, &cols, &ids, lo, hi, first, st, rk, &mut probs, scratch,
                            )
                        };
                        let hists = probs.iter().map(rel::ProbCells::hist).collect();
                        (r, hists)
                    })
                    .collect()
            });
            for (o, hists) in outcomes {
                dropped += o?;
                // In piece order (fixed by position), like every other merge.
                for (all, h) in prob_hists.iter_mut().zip(&hists) {
                    all.merge(h);
                }
            }
            let mut written: Vec<Vec<usize>> = vec![Vec::with_capacity(wave_pieces.len()); models];
            for ((_, hi), (mut st, rk)) in wave_pieces.iter().zip(states) {
                for (m, win) in rk.iter().enumerate() {
                    written[m].push(win.at);
                }
                if (rows + *hi as u64) % CHUNK_ROWS == 0 {
                    total.merge(&st);
                    st.clear();
                    free.push(st);
                } else {
                    open = Some(st);
                }
            }
            for (r, wr) in rank.iter_mut().zip(&written) {
                r.close_windows(&sizes, wr);
            }
        }
        rows += len as u64;
    }
    if let Some(st) = open.take() {
        total.merge(&st);
    }
    let kept = rows - dropped;
    if kept == 0 {
        return Err(crate::error::no_rows(rows));
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
    let fin_shape = StateShape {
        slots: plan.shape.slots,
        ..plan.calib_shape
    };
    total.resize(&model_ids(&n_ids), fin_shape);
    let per_model = n_specs + 1;

    let want_ap = spec.metrics.contains(&Metric::AveragePrecision);
    let mut ranks: Vec<Vec<Vec<RankSums>>> = Vec::new();
    let mut rep_ranks: Vec<Vec<Vec<Vec<RankSums>>>> = Vec::new();
    // Quantile calibration bins, per model, spec and slice: (edges, bins).
    let mut qbins: Vec<rel::QuantileBins> = Vec::new();
    for (m, rk) in rank.iter_mut().enumerate() {
        ranks.push(if let Some(want) = &plan.sorted_calib {
            let (sums, calib) = pool.install(|| rank_sums_calibrated(rk, &n_ids, want));
            let mut q: rel::QuantileBins = Vec::new();
            for (k, per_id) in calib.into_iter().enumerate() {
                let st = &mut total.specs[m * per_model + k];
                let (nb, ng, nl) = (
                    fin_shape.calib_bins * BIN_FIELDS,
                    (GRID_CELLS + 1) * GRID_FIELDS,
                    LOGIT_CELLS * LOGIT_FIELDS,
                );
                let mut qk = Vec::with_capacity(per_id.len());
                for (id, c) in per_id.into_iter().enumerate() {
                    // (Each state is empty when the job does not ask for it.)
                    for (all, one, len) in [
                        (&mut st.calib, &c.bins, nb),
                        (&mut st.grid, &c.grid, ng),
                        (&mut st.logit, &c.logit, nl),
                    ] {
                        if !one.is_empty() {
                            all[id * len..(id + 1) * len].copy_from_slice(one);
                        }
                    }
                    qk.push(c.quantile);
                }
                q.push(qk);
            }
            qbins.push(q);
            sums
        } else if plan.exact_rank {
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
        crate::runtime::check()?;
        rep_ranks.push(match (&plan.resampler, &spec.interval) {
            (Some(r), Some(iv)) if plan.exact_rank => {
                check_replicate_rank_size(&n_ids, iv.slots(), models)?;
                pool.install(|| replicate_rank_sums(rk, &n_ids, r, iv.slots(), want_ap))
            }
            _ => Vec::new(),
        });
        crate::runtime::check()?;
    }
    if plan.replay {
        qbins = (0..models)
            .map(|m| {
                let cols = ReplayColumns {
                    label: label_idx,
                    scores: &score_idx,
                    model: m,
                };
                let hist = &prob_hists[m];
                let one = replay_quantile_bins(&retained, &cols, hist, cal.bins, &pool, &stop)?;
                Ok(vec![vec![one]])
            })
            .collect::<Result<_>>()?;
    } else if plan.quantile_bins {
        qbins = rank
            .iter()
            .enumerate()
            .map(|(m, rk)| {
                let hist = prob_hists.get(m);
                pool.install(|| rel::quantile_bin_states(rk, &n_ids, cal.bins, hist))
            })
            .collect();
    }
    let qbins = qbins;
    drop(rank);
    crate::runtime::check()?;
    // SmoothECE and the logistic fit of every slice, in parallel (they iterate).
    let grids: Vec<Vec<Vec<SliceFits>>> = pool.install(|| {
        (0..models)
            .map(|m| {
                (0..per_model)
                    .map(|k| {
                        let st = &total.specs[m * per_model + k];
                        (0..n_ids[k])
                            .into_par_iter()
                            .map(|id| slice_fits(st, id, fin_shape))
                            .collect()
                    })
                    .collect()
            })
            .collect()
    });

    // Reported weight sums are scaled back to the user's units.
    let scale = weight_scale.unwrap_or(WeightScale::ONE);
    let mut report_rows: Vec<Vec<ReportRow>> = (0..models).map(|_| Vec::new()).collect();
    let mut reliability_rows: Vec<(String, Vec<f64>, Vec<f64>)> = Vec::new();
    let mut deltas = crate::report::ComparisonRows::default();
    for k in 0..per_model {
        let st0 = &total.specs[k];
        let ordered: Vec<u32> = if k == 0 {
            vec![0]
        } else {
            let only = spec.slice_only.get(k - 1).and_then(|o| o.as_deref());
            slicer.ordered_ids(k - 1, |id| {
                st0.counts[id as usize].n > 0
                    && only.is_none_or(|label| slicer.describe(k - 1, id).label == label)
            })
        };
        for id in ordered {
            // Finalization (bootstrap intervals above all) is long with many slices.
            crate::runtime::check()?;
            let desc = (k > 0).then(|| slicer.describe(k - 1, id));
            let idu = id as usize;
            let mut replicates: Vec<Vec<Vec<f64>>> = Vec::new();
            for m in 0..models {
                let st = &total.specs[m * per_model + k];
                let c = &st.counts[idu];
                let small = k > 0 && c.n < spec.min_slice_size;
                let rank_k = ranks[m].get(k).map(|r| &r[idu]);
                let rep_rank_k = rep_ranks[m].get(k).map(|r| r[idu].as_slice());
                let nb = cal.bins * BIN_FIELDS;
                let bins: Option<&[f64]> = match cal.rule {
                    BinRule::Uniform if fin_shape.calib_bins > 0 => {
                        Some(&st.calib[idu * nb..(idu + 1) * nb])
                    }
                    BinRule::Quantile if wants_bins => Some(&qbins[m][k][idu].1),
                    _ => None,
                };
                let fits = &grids[m][k][idu];
                if m == 0 && spec.reliability.is_some() {
                    let label = desc.as_ref().map_or("overall", |d| d.label.as_str());
                    let edges = match cal.rule {
                        BinRule::Uniform => plan.calib_edges.clone(),
                        BinRule::Quantile => qbins[m][k][idu].0.clone(),
                    };
                    let b = bins.expect("bins of a reliability job").to_vec();
                    reliability_rows.push((label.to_string(), edges, b));
                }
                let values: Vec<crate::metrics::Value> = spec
                    .metrics
                    .iter()
                    .map(|metric| {
                        if small {
                            Err(TOO_SMALL)
                        } else if metric.is_rank() {
                            rank_value(*metric, rank_k.expect("rank sums of a rank metric"))
                        } else if metric.is_calibration() {
                            calibration_value(*metric, bins, qbins.get(m), k, idu, fits)
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
                        &CalibIntervals {
                            rule: cal.rule,
                            bins: cal.bins,
                            reps: plan.shape.calib_reps.then(|| {
                                let len = cal.bins * REP_BIN_FIELDS * plan.shape.slots;
                                &st.calib_reps[idu * len..(idu + 1) * len]
                            }),
                            fit: fits.fit.as_ref(),
                        },
                    )
                });
                if let Some(k) = kept {
                    replicates.push(k);
                }
                report_rows[m].push(ReportRow {
                    slice: desc.clone(),
                    counts: scale.unscale_counts(c),
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
    // A stage that stopped early for an interrupt leaves partial sums: never report them.
    if stop() {
        return Err(AssayError::Interrupted);
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
    let reliability = match spec.reliability {
        Some(level) => Some(rel::reliability_table(&reliability_rows, level, &scale)?),
        None => None,
    };
    Ok(Evaluation {
        report,
        others: reports,
        comparison,
        reliability,
        rows,
        dropped,
    })
}

/// The iterated calibration results of one slice.
struct SliceFits {
    smooth: Option<crate::metrics::Value>,
    fit: Option<std::result::Result<LogisticFit, &'static str>>,
}

fn slice_fits(st: &crate::state::SliceStates, id: usize, shape: StateShape) -> SliceFits {
    let present = st.counts.get(id).is_some_and(|c| c.n > 0);
    let smooth = (shape.grid && present).then(|| {
        let len = (GRID_CELLS + 1) * GRID_FIELDS;
        rel::smooth_ece(&st.grid[id * len..(id + 1) * len])
    });
    let fit = (shape.logit && present).then(|| {
        let len = LOGIT_CELLS * LOGIT_FIELDS;
        rel::logistic_fit(&st.logit[id * len..(id + 1) * len])
    });
    SliceFits { smooth, fit }
}

/// The value of a calibration metric of one slice.
fn calibration_value(
    m: Metric,
    bins: Option<&[f64]>,
    qbins: Option<&rel::QuantileBins>,
    k: usize,
    id: usize,
    fits: &SliceFits,
) -> crate::metrics::Value {
    match m {
        Metric::Ace => {
            let q = &qbins.expect("quantile bins of ace")[k][id].1;
            rel::bin_metric(Metric::Ece, q)
        }
        Metric::SmoothEce => fits.smooth.expect("grid of smooth_ece"),
        Metric::CalibrationSlope | Metric::CalibrationIntercept => {
            let f = fits.fit.expect("logit grid of the calibration fit")?;
            Ok(if m == Metric::CalibrationSlope {
                f.slope
            } else {
                f.intercept
            })
        }
        _ => rel::bin_metric(m, bins.expect("bins of a bin metric")),
    }
}

/// Chunks processed (and their states alive) at once: a constant, so that whether a job fits
/// in memory does not depend on the thread count.
const WAVE: usize = 64;

/// The most memory the per-chunk states of one batch may take (replicate blocks dominate).
const MAX_STATE_BYTES: usize = 8 << 30;

/// Refuses a job whose replicate rank sums (ROC-AUC / average precision of every slice in
/// every replicate slot, kept until the report is built) would not fit.
fn check_replicate_rank_size(n_ids: &[usize], slots: usize, models: usize) -> Result<()> {
    let ids: usize = n_ids.iter().sum();
    let bytes = crate::runtime::checked_product(
        &[models, ids, slots, std::mem::size_of::<RankSums>()],
        "the replicate rank sums",
    )?;
    if bytes > MAX_STATE_BYTES {
        return Err(AssayError::InvalidArgument(format!(
            "the bootstrap of roc_auc/average_precision needs about {:.1} GiB ({models} models \
             x {ids} slices x {slots} replicate slots); use fewer bootstrap replicates or fewer \
             slices",
            bytes as f64 / (1u64 << 30) as f64
        )));
    }
    Ok(())
}

/// Refuses a job whose per-chunk states would not fit: `pieces` chunk states of every slice
/// of every spec (and model), each with its replicate block, are alive at once.
fn check_state_size(n_ids: &[usize], plan: &Plan, pieces: usize) -> Result<()> {
    let ids: usize = n_ids.iter().sum();
    let sh = plan.shape;
    let per_id = std::mem::size_of::<crate::state::BinaryCounts>()
        + 8 * (REP_ROWS * sh.slots + 2 * sh.hist_bins)
        + 8 * sh.calib_bins * (BIN_FIELDS + REP_BIN_FIELDS * sh.slots * sh.calib_reps as usize)
        + 8 * sh.grid as usize * (GRID_CELLS + 1) * GRID_FIELDS
        + 8 * sh.logit as usize * LOGIT_CELLS * LOGIT_FIELDS;
    let bytes = ids.saturating_mul(per_id).saturating_mul(pieces + 1);
    if bytes > MAX_STATE_BYTES {
        return Err(AssayError::InvalidArgument(format!(
            "this job needs about {:.1} GiB of per-slice state ({ids} slices x {} replicate \
             slots, calibration grids, {pieces} chunks in flight); use fewer bootstrap \
             replicates, fewer or coarser slices, or fewer calibration metrics",
            bytes as f64 / (1u64 << 30) as f64,
            plan.shape.slots
        )));
    }
    Ok(())
}

/// A rayon pool owned by one call (see [`crate::runtime::job_pool`]: it bounds `n_threads`
/// and hands the job's interrupt flag to its workers).
pub use crate::runtime::job_pool;
