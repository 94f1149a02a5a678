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
    /// The regression family: its row kernel and blocks replace the binary ones.
    pub regression: bool,
    /// Whether the squared log errors are summed (regression's msle, rmsle).
    pub log_errors: bool,
    /// Regression: the pinball quantiles (in layout order) and which of the Poisson, Gamma
    /// and Tweedie deviances are summed, with the metric that asks for each (for messages).
    pub quantiles: Vec<f64>,
    pub deviances: [Option<&'static str>; 3],
    /// The multiclass family: its row kernel and blocks replace the binary ones.
    pub multiclass: bool,
    /// The ranking family: its own pass (`ranking::accumulate`) and blocks.
    pub ranking: bool,
    /// Multiclass: the top-k accuracies kept (in layout order), and the uniform edges of the
    /// calibration errors' bins (empty: none).
    pub top_ks: Vec<usize>,
    pub ece_edges: Vec<f64>,
    /// Kept entries per accepted row: 1, or K for the multiclass exact ROC-AUCs of a state
    /// that is not replayed (one entry per class: its score and whether it is the label, see
    /// `multiclass::aucs`).
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
                quantiles: 0,
                deviance: false,
                power: 0.0,
                interval: false,
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
                classes: 0,
                top_k: 0,
                ece_bins: 0,
                classwise: false,
                auc_bins: 0,
                auc_pairs: false,
                ranking_metrics: 0,
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
            sketch_flush_rows: super::accumulate::SKETCH_FLUSH_ROWS,
            sorted_calib: None,
            calib_shape: StateShape::default(),
            prob_counts: false,
            replay: false,
            regression: false,
            log_errors: false,
            quantiles: Vec::new(),
            deviances: [None; 3],
            multiclass: false,
            ranking: false,
            top_ks: Vec::new(),
            ece_edges: Vec::new(),
            kept_per_row: 1,
        };
        if spec.family == Family::Multiclass {
            // Multiclass metrics are sums of the family's blocks: no binary state at all.
            let k = spec.multiclass.as_ref().map_or(0, |mc| mc.k());
            let ece = spec
                .metrics
                .iter()
                .any(|m| matches!(m, Metric::EceTopLabel | Metric::EceClasswise));
            plan.multiclass = true;
            plan.need_log_loss = false;
            plan.need_brier = false;
            plan.need_probability = false;
            plan.exact_rank = false;
            plan.hist_bins = 0;
            plan.additive_reps = false;
            plan.rep_losses = false;
            plan.calib_edges = Vec::new();
            plan.quantile_bins = false;
            // The ROC-AUCs: exact from kept rows, binned from per-slice histograms, or from
            // run sketches of the kept rows (flushed as the pass goes).
            let rank = spec.metrics.iter().any(Metric::is_rank);
            let auc_bins = match spec.auc {
                AucMode::Binned(b) if rank => b,
                _ => 0,
            };
            let sketch_runs = match spec.auc {
                AucMode::Sketch(r) if rank => r,
                _ => 0,
            };
            let ovo = spec
                .metrics
                .iter()
                .any(|m| matches!(m, Metric::RocAucOvo | Metric::RocAucOvoWeighted));
            // Quantile calibration bins take their edges from each slice's probabilities:
            // the calibration errors are then built at finalization from the kept rows.
            let quantile_ece = ece && cal.rule == BinRule::Quantile;
            let ece = ece && !quantile_ece;
            plan.keep_rows = (rank && auc_bins == 0) || quantile_ece;
            // The exact ROC-AUCs (and quantile calibration bins) read every row's K
            // probabilities at finalization: a state that is finalized in the call over an
            // in-memory input keeps one entry a row (its position) and reads the probability
            // matrix again in place; any other keeps the K entries (see `multiclass::aucs`).
            plan.replay = plan.keep_rows && replayable && sketch_runs == 0;
            plan.kept_per_row = if plan.replay { 1 } else { k };
            plan.sketch_runs = sketch_runs;
            plan.sketch_flush_rows = (super::accumulate::SKETCH_FLUSH_ROWS
                / k.max(1).next_power_of_two() as u64)
                .max(super::CHUNK_ROWS);
            plan.top_ks = super::MulticlassSpec::top_ks(&spec.metrics);
            plan.ece_edges = if ece {
                rel::uniform_edges(cal.bins)
            } else {
                Vec::new()
            };
            plan.shape = StateShape {
                family: Family::Multiclass,
                slots,
                classes: k,
                top_k: plan.top_ks.len(),
                ece_bins: if ece { cal.bins } else { 0 },
                classwise: ece && spec.metrics.contains(&Metric::EceClasswise),
                auc_bins,
                auc_pairs: (auc_bins > 0 || sketch_runs > 0) && ovo,
                ..StateShape::default()
            };
            plan.calib_shape = plan.shape;
            return plan;
        }
        if spec.family == Family::Ranking {
            // Ranking keeps its rows in a pass of its own (`ranking::accumulate`) and leaves
            // only the family's blocks: per-query values summed per slice, and per slot.
            plan.ranking = true;
            plan.additive_reps = false;
            plan.rep_losses = false;
            plan.keep_rows = false;
            plan.sketch_runs = 0;
            plan.shape = StateShape {
                family: Family::Ranking,
                slots,
                ranking_metrics: spec.metrics.len(),
                ..StateShape::default()
            };
            plan.calib_shape = plan.shape;
            return plan;
        }
        if spec.family == Family::Regression {
            // Regression metrics are none of the binary kinds: only the family's blocks, and
            // the moments of analytic intervals (BCa reads the jackknife slots).
            plan.regression = true;
            plan.log_errors = spec
                .metrics
                .iter()
                .any(|m| matches!(m, Metric::Msle | Metric::Rmsle));
            plan.additive_reps = false;
            plan.rep_losses = false;
            plan.keep_rows = spec.metrics.contains(&Metric::MedianAbsoluteError);
            plan.quantiles = crate::regression::pinball_quantiles(&spec.metrics);
            let wants = |m: Metric| spec.metrics.contains(&m);
            plan.deviances = [
                wants(Metric::PoissonDeviance).then_some("poisson_deviance"),
                wants(Metric::GammaDeviance).then_some("gamma_deviance"),
                if wants(Metric::TweedieDeviance) {
                    Some("tweedie_deviance")
                } else {
                    wants(Metric::D2Tweedie).then_some("d2_tweedie")
                },
            ];
            plan.shape = StateShape {
                family: Family::Regression,
                quantiles: plan.quantiles.len(),
                deviance: plan.deviances[2].is_some(),
                power: spec.power,
                interval: spec.bounds.is_some(),
                slots,
                moments: spec
                    .interval
                    .as_ref()
                    .is_some_and(|iv| iv.method == CiMethod::Analytic),
                ..StateShape::default()
            };
            plan.calib_shape = plan.shape;
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

/// The most run sketches a multiclass `auc="sketch"` job keeps per model (a sketch costs 24
/// bytes before its runs, up to `auc_max_runs` x 40 bytes with them).
pub const MAX_SKETCHES: usize = 1 << 22;

/// Refuses a job whose per-chunk states would not fit: `pieces` chunk states of every slice
/// of every spec (and model), each with its replicate block, are alive at once.
pub fn check_state_size(n_ids: &[usize], plan: &Plan, pieces: usize) -> Result<()> {
    let ids: usize = n_ids.iter().sum();
    let sh = plan.shape;
    // A multiclass auc="sketch" keeps K (or K x K) run sketches per slice: bounded in number,
    // which also keeps their indices (`multiclass_sketch_keys`) within u32.
    let per_slice = sh.sketches_per_slice();
    let model_ids = ids / plan.models().max(1);
    if plan.sketch_runs > 0 && per_slice > 1 && model_ids.saturating_mul(per_slice) > MAX_SKETCHES {
        return Err(AssayError::InvalidArgument(format!(
            "auc=\"sketch\" keeps {} run sketches per slice ({}), {} in all for {model_ids} \
             slices (more than {MAX_SKETCHES} per model); use fewer or coarser slices, leave \
             out roc_auc_ovo and roc_auc_ovo_weighted (one sketch per class instead of per \
             pair), or auc=\"binned\"",
            per_slice,
            if sh.auc_pairs {
                "one per pair of classes, for the one-vs-one ROC-AUCs"
            } else {
                "one per class"
            },
            model_ids.saturating_mul(per_slice)
        )));
    }
    let family = 8 * (crate::family::block_len(&sh) + crate::family::rep_block_len(&sh));
    let per_id = family
        + std::mem::size_of::<crate::state::BinaryCounts>()
        + 8 * (REP_ROWS * sh.slots + 2 * sh.hist_bins)
        + 8 * sh.calib_bins * (BIN_FIELDS + REP_BIN_FIELDS * sh.slots * sh.calib_reps as usize)
        + 8 * sh.grid as usize * (GRID_CELLS + 1) * GRID_FIELDS
        + 8 * sh.logit as usize * LOGIT_CELLS * LOGIT_FIELDS;
    let bytes = ids.saturating_mul(per_id).saturating_mul(pieces + 1);
    if bytes > MAX_STATE_BYTES {
        // (A multiclass slice keeps K x K confusion cells and its per-class sums, and with
        // auc="binned" K x 2 (or K x K) histograms.)
        let (classes, hint) = if sh.auc_bins > 0 {
            (
                format!(" x {} classes", sh.classes),
                format!(
                    "; auc=\"binned\" keeps {} x {} x {} histogram cells per slice: use fewer \
                     auc_bins, or auc=\"exact\"",
                    sh.classes,
                    if sh.auc_pairs { sh.classes } else { 2 },
                    sh.auc_bins
                ),
            )
        } else if sh.classes > 0 {
            (
                format!(" x {} classes", sh.classes),
                "; each slice keeps a K x K confusion matrix: merge rare classes".to_string(),
            )
        } else {
            (String::new(), String::new())
        };
        return Err(AssayError::InvalidArgument(format!(
            "this job needs about {:.1} GiB of per-slice state ({ids} slices{classes} x {} \
             replicate slots, calibration grids, {pieces} chunks in flight); use fewer \
             bootstrap replicates, fewer or coarser slices, or fewer calibration metrics{hint}",
            bytes as f64 / (1u64 << 30) as f64,
            plan.shape.slots
        )));
    }
    Ok(())
}
