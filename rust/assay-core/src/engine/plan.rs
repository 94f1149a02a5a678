//! The plan of a job: what the pass keeps and how the report reads it, from the spec alone
//! (so that every shard of a split job, and its finalization, agree on it).

use crate::bootstrap::{CiMethod, IntervalSpec, Resampler};
use crate::error::{AssayError, Result};
use crate::metrics::{Family, Metric, RankSums};
use crate::reliability::{
    self as rel, BinRule, BIN_FIELDS, GRID_CELLS, GRID_FIELDS, LOGIT_CELLS, LOGIT_FIELDS,
    REP_BIN_FIELDS,
};
use crate::state::{StateShape, REP_ROWS};
use crate::task::TaskFamily;

use super::{AucMode, EvalSpec};

/// Per-job constants the row loop reads.
pub struct Plan<'a> {
    pub spec: &'a EvalSpec,
    /// Score columns: `spec.score` then `spec.compare_scores`.
    pub score_names: Vec<&'a str>,
    pub need_log_loss: bool,
    /// Whether the squared errors are summed (the Brier score); a lean piece skips them.
    pub need_brier: bool,
    pub need_probability: bool,
    pub exact_rank: bool,
    pub hist_bins: usize,
    pub weighted: bool,
    pub shape: StateShape,
    pub resampler: Option<Resampler>,
    /// Whether replicate blocks are kept (some non-rank metric needs them).
    pub additive_reps: bool,
    /// Whether replicate blocks carry the log loss and squared error rows.
    pub rep_losses: bool,
    /// Edges of the uniform calibration bins kept in the pass (empty: none).
    pub calib_edges: Vec<f64>,
    /// Whether quantile calibration bins are built from the kept rows after the pass.
    pub quantile_bins: bool,
    /// Whether (score, label, weight, ids) of every row are kept (exact rank metrics or
    /// quantile bins).
    pub keep_rows: bool,
    /// Sketch mode: the kept rows become per-slice sorted runs of at most this many (0: none).
    pub sketch_runs: usize,
    /// Sketch mode: the kept rows become runs at every multiple of this many rows (global
    /// position; a power of two, a multiple of `CHUNK_ROWS`): fewer rows when each keeps K
    /// entries, so that the entries kept at once stay about as many as a binary job's.
    pub sketch_flush_rows: u64,
    /// The calibration states built from the sorted order of the exact rank metrics instead
    /// of in the pass (see `reliability::SortedWant`); `shape` then leaves them out of the
    /// pass, and `calib_shape` is the shape the report reads.
    pub sorted_calib: Option<rel::SortedWant>,
    pub calib_shape: StateShape,
    /// Whether each piece adds its accepted (probability, unweighted) rows to the
    /// `reliability::ProbHist` of the overall slice's quantile bins.
    pub prob_counts: bool,
    /// Whether the job reads its in-memory batches a second time at finalization instead of
    /// keeping rows: the binary overall slice's quantile bins (the only rows the job would
    /// keep, from its histogram), or the multiclass probabilities of the exact ROC-AUCs.
    pub replay: bool,
    /// The task family, when it is not binary classification: its plan replaces the binary
    /// blocks (see `crate::task::FamilyPlan`), its kernel the binary row loop.
    pub family: Option<&'static dyn TaskFamily>,
    /// Whether kept rows carry resampling keys, and whether they may be compacted into
    /// entries of equal (score, slice ids, label) (see `accumulate::compact_kept_rows`).
    pub keyed_rows: bool,
    pub compactable: bool,
    /// Whether the bootstrap resamples rows by position when there is no row id column.
    pub row_bootstrap: bool,
    /// Kept entries per accepted row: 1, or a family's (K for the multiclass exact ROC-AUCs of
    /// a state that is not replayed: one entry per class).
    pub kept_per_row: usize,
}

impl<'a> Plan<'a> {
    /// The plan of `spec` with `n_specs` slice specs. `replayable`: the input is in memory and
    /// may be read a second time (see `Plan::replay`).
    pub fn new(spec: &'a EvalSpec, n_specs: usize, replayable: bool) -> Plan<'a> {
        let mut score_names: Vec<&str> = vec![&spec.score];
        if let Some(c) = &spec.compare {
            score_names.extend(c.others.iter().map(|(_, col)| col.as_str()));
        }
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
                family: Family::Binary,
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
                ..StateShape::default()
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
            keep_rows: quantile_bins || (wants_rank && !matches!(spec.auc, AucMode::Binned(_))),
            sketch_runs: match spec.auc {
                AucMode::Sketch(k) if wants_rank => k,
                _ => 0,
            },
            sketch_flush_rows: crate::piece::SKETCH_FLUSH_ROWS,
            sorted_calib: None,
            calib_shape: StateShape::default(),
            prob_counts: false,
            replay: false,
            family: None,
            keyed_rows: false,
            compactable: false,
            row_bootstrap: true,
            kept_per_row: 1,
        };
        if let Some(family) = crate::task::of(spec.family) {
            // A family's metrics are sums of its own blocks (and what it keeps): no binary
            // state at all.
            let fp = family.plan(spec, replayable);
            plan.family = Some(family);
            plan.need_log_loss = false;
            plan.need_brier = false;
            plan.need_probability = false;
            plan.exact_rank = false;
            plan.hist_bins = 0;
            plan.additive_reps = false;
            plan.rep_losses = false;
            plan.calib_edges = Vec::new();
            plan.quantile_bins = false;
            plan.shape = fp.shape;
            plan.calib_shape = fp.shape;
            plan.keep_rows = fp.keep_rows;
            plan.replay = fp.replay;
            plan.kept_per_row = fp.kept_per_row;
            plan.sketch_runs = fp.sketch_runs;
            plan.sketch_flush_rows = fp.sketch_flush_rows;
            plan.keyed_rows = fp.keyed_rows;
            plan.compactable = fp.compactable;
            plan.row_bootstrap = fp.row_bootstrap;
            return plan;
        }
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
                counted: false,
            });
            plan.shape.calib_bins = 0;
            plan.shape.grid = false;
            plan.shape.logit = false;
            plan.quantile_bins = false;
        }
        plan.prob_counts = plan.quantile_bins && !plan.weighted;
        // Kept rows cost a write (and first touch) of every row; an in-memory input can instead
        // be read again for the few rows of the quantiles' buckets.
        if plan.prob_counts && !plan.exact_rank && n_specs == 0 && replayable {
            plan.replay = true;
            plan.keep_rows = false;
        }
        if !plan.additive_reps && !plan.shape.calib_reps {
            plan.shape.slots = 0; // rank metrics only: no replicate blocks to keep
        }
        plan.keyed_rows = plan.resampler.is_some();
        // Calibration bins read from the kept rows count rows and sum squared weights: an
        // unweighted job's counts carry both, a weighted job's combined weights neither.
        plan.compactable = !(plan.quantile_bins || (plan.weighted && plan.sorted_calib.is_some()));
        plan
    }

    /// Models evaluated in one pass (the reference first).
    pub fn models(&self) -> usize {
        self.score_names.len()
    }

    /// Whether the pass may take the lean path (one model, no resampling, no moments).
    pub fn lean(&self) -> bool {
        self.models() == 1 && self.resampler.is_none() && !self.shape.moments
    }
}

/// Chunks processed (and their states alive) at once: a constant, so that whether a job fits
/// in memory does not depend on the thread count.
pub const WAVE: usize = 64;

/// The most memory the per-chunk states of one batch may take (replicate blocks dominate).
const MAX_STATE_BYTES: usize = 8 << 30;

/// Refuses a job whose replicate rank sums (ROC-AUC / average precision of every slice in
/// every replicate slot, kept until the report is built) would not fit.
pub fn check_replicate_rank_size(n_ids: &[usize], slots: usize, models: usize) -> Result<()> {
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
pub fn check_state_size(n_ids: &[usize], plan: &Plan, pieces: usize) -> Result<()> {
    let ids: usize = n_ids.iter().sum();
    let sh = plan.shape;
    if let Some(family) = plan.family {
        family.check_slices(&sh, plan.sketch_runs, ids / plan.models().max(1))?;
    }
    let family = 8 * (crate::task::block_len(&sh) + crate::task::rep_block_len(&sh));
    let per_id = family
        + std::mem::size_of::<crate::state::BinaryCounts>()
        + 8 * REP_ROWS * sh.slots
        + 8 * sh.calib_bins * (BIN_FIELDS + REP_BIN_FIELDS * sh.slots * sh.calib_reps as usize)
        + 8 * sh.grid as usize * (GRID_CELLS + 1) * GRID_FIELDS
        + 8 * sh.logit as usize * LOGIT_CELLS * LOGIT_FIELDS;
    // Binned-AUC histograms are dense in the total only: chunk states log their cells (a few
    // bytes per row, not per slice).
    let hist = 8 * 2 * sh.hist_bins;
    let bytes = ids
        .saturating_mul(per_id)
        .saturating_mul(pieces + 1)
        .saturating_add(ids.saturating_mul(hist));
    if bytes > MAX_STATE_BYTES {
        // (A family's slices may keep more than their count says: it explains.)
        let (per_slice, hint) = plan.family.map(|f| f.size_hint(&sh)).unwrap_or_default();
        return Err(AssayError::InvalidArgument(format!(
            "this job needs about {:.1} GiB of per-slice state ({ids} slices{per_slice} x {} \
             replicate slots, calibration grids, {pieces} chunks in flight); use fewer \
             bootstrap replicates, fewer or coarser slices, or fewer calibration metrics{hint}",
            bytes as f64 / (1u64 << 30) as f64,
            plan.shape.slots
        )));
    }
    Ok(())
}
