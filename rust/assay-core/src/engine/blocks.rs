//! States whose blocks were filled outside the engine: the torch path (`assay.torch`), where
//! device kernels sum every slice's counts, replicate blocks and calibration bins in a dense id
//! space of their own, and keep the rows of the exact rank metrics.
//!
//! The blocks arrive with a *key table*: one row per occupied slice (per slice spec), holding
//! the slice's feature values as an ordinary batch of the job's columns would. The engine's own
//! slicer encodes that table, so the state keys its slices by value exactly as
//! [`super::accumulate`] would, and merges with states accumulated anywhere else. Every block
//! row is then added into the engine id of its key row; nothing is trusted: lengths, key rows
//! and values are checked, and the result passes [`PartialState::check_consistent`].

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;

use super::plan::Plan;
use super::EvalSpec;
use crate::error::{AssayError, Result};
use crate::metrics::Family;
use crate::reliability::{BIN_FIELDS, REP_BIN_FIELDS};
use crate::state::Col;
use crate::state::{BinaryCounts, Moments, RankRows, WeightScale, REP_ROWS};
use crate::state::{ProbHist, GRID_CELLS, GRID_FIELDS, LOGIT_CELLS, LOGIT_FIELDS, PROB_BUCKETS};

/// Fields per block row of [`SpecBlocks::counts`]: the weight sum, tp, fp, tn, fn, the weighted
/// log-loss and squared-error sums.
pub const COUNT_FIELDS: usize = 7;
/// Fields per block row of [`SpecBlocks::moments`]: squared weights per confusion cell
/// (`label << 1 | predicted`), cubed weights per cell, weight x log loss^2, weight x squared
/// error^2.
pub const MOMENT_FIELDS: usize = 10;

/// The blocks of one (model, slice spec); spec 0 is the overall slice (one block row, key row
/// 0 of nothing: its `key_rows` is `[0]`).
#[derive(Clone, Debug, Default)]
pub struct SpecBlocks {
    /// The key-table row of each block row.
    pub key_rows: Vec<u32>,
    /// Rows counted per block row.
    pub n: Vec<u64>,
    pub counts: Vec<f64>,
    pub moments: Vec<f64>,
    /// `2 x hist_bins` per block row (weight per bin and label), as `SliceStates::hist`.
    pub hist: Vec<f64>,
    /// `REP_ROWS x slots` per block row, as `SliceStates::reps`.
    pub reps: Vec<f64>,
    /// `calib_bins x BIN_FIELDS` per block row, as `SliceStates::calib`.
    pub calib: Vec<f64>,
    /// `calib_bins x REP_BIN_FIELDS x slots` per block row, as `SliceStates::calib_reps`.
    pub calib_reps: Vec<f64>,
    /// A task family's block per block row (`family::block_len`), as `SliceStates::fam`.
    pub fam: Vec<f64>,
    /// A task family's replicate block per block row (`family::rep_block_len`), as
    /// `SliceStates::fam_reps`.
    pub fam_reps: Vec<f64>,
    /// `(GRID_CELLS + 1) x GRID_FIELDS` per block row (smooth_ece), as `SliceStates::grid`.
    pub grid: Vec<f64>,
    /// `LOGIT_CELLS x LOGIT_FIELDS` per block row (the calibration slope), as
    /// `SliceStates::logit`.
    pub logit: Vec<f64>,
    /// The overall slice only (spec 0), when the job counts probabilities for its quantile
    /// bins: `PROB_BUCKETS` rows, then positives, then score sums (`state::ProbHist`).
    pub prob_hist: Vec<f64>,
}

/// The kept rows of one model (exact rank metrics), in any order.
#[derive(Clone, Debug, Default)]
pub struct ExternalRows {
    pub scores: Vec<f64>,
    pub labels: Vec<u8>,
    /// Empty when the job is unweighted.
    pub weights: Vec<f64>,
    /// The resampling key of each row (empty without resampling).
    pub row_keys: Vec<u64>,
    /// Per slice spec (not the overall slice): the key-table row of each kept row.
    pub key_rows: Vec<Vec<u32>>,
    /// Whether `weights` hold multiplicities (an unweighted job's rows combined on the
    /// device: `RankRows::counted`).
    pub counted: bool,
}

/// Everything the device kept, for [`state_from_blocks`].
#[derive(Clone, Debug, Default)]
pub struct ExternalState {
    /// `[model][spec]`, spec 0 the overall slice.
    pub blocks: Vec<Vec<SpecBlocks>>,
    /// One per model when the job keeps rows, else empty.
    pub rank: Vec<ExternalRows>,
    pub rows: u64,
    pub dropped: u64,
    /// The largest weight read (weighted jobs with rows).
    pub max_weight: Option<f64>,
    pub row_offset: u64,
}

fn bad(m: impl Into<String>) -> AssayError {
    AssayError::StateFormat(format!("not a valid device state: {}", m.into()))
}

/// Whether a job's kept rows may be combined into entries of equal (score, slice ids, label)
/// (the policy of `accumulate::compact_kept_rows`, and no resampling keys).
fn compactable(plan: &Plan) -> bool {
    plan.compactable && !plan.keyed_rows
}

/// What the torch path cannot fill yet, for the job of `spec`; `None` when it can.
pub fn unsupported(spec: &EvalSpec) -> Option<String> {
    let plan = Plan::new(spec, spec.slices.len(), false);
    if let Some(family) = plan.family {
        return family.on_device(spec);
    }
    if plan.sketch_runs > 0 {
        return Some("auc=\"sketch\"".into());
    }
    None
}

/// The layout the device fills for the job of `spec`, as `(name, value)` pairs: `hist_bins`,
/// `slots`, `replicates`, `moments`, `calib_bins`, `calib_reps`, `additive_reps`, `rep_losses`,
/// `need_log_loss`, `need_probability`, `keep_rows`, `row_keys`.
pub fn device_layout(spec: &EvalSpec) -> Vec<(&'static str, f64)> {
    let plan = Plan::new(spec, spec.slices.len(), false);
    let sh = plan.shape;
    // (A family fills its own blocks, replicate slots included.)
    let slots = if plan.additive_reps || sh.calib_reps || plan.family.is_some() {
        sh.slots
    } else {
        0
    };
    // The family's entries (regression's deviances, quantiles, ...); these defaults otherwise.
    let mut layout = vec![
        ("dev_poisson", 0.0),
        ("dev_gamma", 0.0),
        ("dev_tweedie", 0.0),
        ("power", 0.0),
        ("interval", 0.0),
        ("regression", 0.0),
        ("log_errors", 0.0),
    ];
    if let Some(family) = plan.family {
        let own = family.device_layout(spec);
        layout.retain(|(k, _)| !own.iter().any(|(o, _)| o == k));
        layout.extend(own);
    }
    layout.extend([
        ("fam_block", crate::task::block_len(&sh) as f64),
        ("fam_fields", crate::task::rep_fields(&sh) as f64),
        ("grid", sh.grid as u8 as f64),
        ("grid_cells", crate::state::GRID_CELLS as f64),
        ("logit", sh.logit as u8 as f64),
        ("logit_cells", crate::state::LOGIT_CELLS as f64),
        ("logit_range", crate::state::LOGIT_RANGE),
        ("prob_counts", plan.prob_counts as u8 as f64),
        ("prob_buckets", PROB_BUCKETS as f64),
        ("hist_bins", sh.hist_bins as f64),
        ("slots", slots as f64),
        (
            "replicates",
            plan.resampler.map_or(0, |r| r.replicates()) as f64,
        ),
        ("moments", sh.moments as u8 as f64),
        ("calib_bins", sh.calib_bins as f64),
        ("calib_reps", sh.calib_reps as u8 as f64),
        ("additive_reps", plan.additive_reps as u8 as f64),
        ("rep_losses", plan.rep_losses as u8 as f64),
        ("need_log_loss", plan.need_log_loss as u8 as f64),
        ("need_probability", plan.need_probability as u8 as f64),
        ("keep_rows", plan.keep_rows as u8 as f64),
        ("row_keys", (plan.keep_rows && plan.keyed_rows) as u8 as f64),
        (
            "compact_rows",
            (plan.keep_rows && compactable(&plan)) as u8 as f64,
        ),
    ]);
    layout
}

/// The partial state of `ext`, whose slices are the rows of `keys` (a batch of `schema`: every
/// column the job reads, the slice features holding each occupied slice's values).
pub fn state_from_blocks(
    schema: SchemaRef,
    keys: &RecordBatch,
    spec: &EvalSpec,
    ext: ExternalState,
    interrupted: &dyn Fn() -> bool,
) -> Result<super::PartialState> {
    if let Some(what) = unsupported(spec) {
        return Err(AssayError::InvalidArgument(format!(
            "{what} is not on the torch path yet"
        )));
    }
    let mut state = super::accumulate(
        schema,
        std::iter::empty(),
        spec,
        ext.row_offset,
        interrupted,
    )?;
    let plan = Plan::new(spec, state.slicer.n_specs(), false);
    let n_specs = state.slicer.n_specs();
    let models = plan.models();
    if ext.blocks.len() != models || ext.blocks.iter().any(|b| b.len() != n_specs + 1) {
        return Err(bad("block count"));
    }
    let key_ids = if n_specs > 0 {
        state.slicer.encode_batch(keys)?
    } else {
        Vec::new()
    };
    let n_keys = keys.num_rows();
    let n_ids = state.n_ids();
    let sh = plan.shape;
    state.total.resize(
        &std::iter::repeat_n(n_ids.iter().copied(), models)
            .flatten()
            .collect::<Vec<_>>(),
        sh,
    );
    let slots = if plan.additive_reps { sh.slots } else { 0 };
    let per_model = n_specs + 1;
    let engine_id = |k: usize, key_row: u32| -> Result<usize> {
        if k == 0 {
            return if key_row == 0 {
                Ok(0)
            } else {
                Err(bad("the overall slice has one block row"))
            };
        }
        let r = key_row as usize;
        if r >= n_keys {
            return Err(bad("a block row names a key row that does not exist"));
        }
        Ok(key_ids[k - 1][r] as usize)
    };
    for (m, specs) in ext.blocks.iter().enumerate() {
        for (k, b) in specs.iter().enumerate() {
            let rows = b.key_rows.len();
            let want = |len: usize, each: usize, what: &str| -> Result<()> {
                if Some(len) == rows.checked_mul(each) {
                    Ok(())
                } else {
                    Err(bad(format!("{what} block length")))
                }
            };
            want(b.n.len(), 1, "row count")?;
            want(b.counts.len(), COUNT_FIELDS, "counts")?;
            // (A regression block carries its own moment fields.)
            let moments = sh.moments && sh.family == Family::Binary;
            want(b.moments.len(), MOMENT_FIELDS * moments as usize, "moments")?;
            want(b.hist.len(), 2 * sh.hist_bins, "histogram")?;
            want(b.reps.len(), REP_ROWS * slots, "replicates")?;
            want(
                b.calib.len(),
                sh.calib_bins * BIN_FIELDS,
                "calibration bins",
            )?;
            let calib_reps = sh.calib_bins * REP_BIN_FIELDS * sh.slots * sh.calib_reps as usize;
            want(b.calib_reps.len(), calib_reps, "calibration replicates")?;
            let (fam_len, fam_reps_len) =
                (crate::task::block_len(&sh), crate::task::rep_block_len(&sh));
            let grid_len = (GRID_CELLS + 1) * GRID_FIELDS * sh.grid as usize;
            let logit_len = LOGIT_CELLS * LOGIT_FIELDS * sh.logit as usize;
            want(b.grid.len(), grid_len, "calibration grid")?;
            want(b.logit.len(), logit_len, "logit grid")?;
            want(b.fam.len(), fam_len, "task family")?;
            let hist_len = 3 * PROB_BUCKETS * (plan.prob_counts && k == 0) as usize;
            if b.prob_hist.len() != hist_len {
                return Err(bad("probability histogram length"));
            }
            if hist_len > 0 {
                let (rows, rest) = b.prob_hist.split_at(PROB_BUCKETS);
                let (positives, scores) = rest.split_at(PROB_BUCKETS);
                let into = state
                    .prob_hists
                    .get_mut(m)
                    .ok_or_else(|| bad("probability histograms"))?;
                into.merge(&ProbHist {
                    rows: rows.to_vec(),
                    positives: positives.to_vec(),
                    scores: scores.to_vec(),
                });
            }
            want(b.fam_reps.len(), fam_reps_len, "task family replicates")?;
            let finite = [
                &b.counts,
                &b.moments,
                &b.hist,
                &b.reps,
                &b.calib,
                &b.calib_reps,
                &b.fam,
                &b.fam_reps,
                &b.grid,
                &b.logit,
                &b.prob_hist,
            ]
            .iter()
            .all(|v| v.iter().all(|x| x.is_finite()));
            if !finite {
                return Err(bad("a block value is not finite"));
            }
            let st = &mut state.total.specs[m * per_model + k];
            for (r, key_row) in b.key_rows.iter().enumerate() {
                let id = engine_id(k, *key_row)?;
                if st.counts[id].n.checked_add(b.n[r]).is_none() {
                    return Err(bad("row counts overflow"));
                }
                let c = &b.counts[r * COUNT_FIELDS..(r + 1) * COUNT_FIELDS];
                st.counts[id].merge(&BinaryCounts {
                    n: b.n[r],
                    w: c[0],
                    tp: c[1],
                    fp: c[2],
                    tn: c[3],
                    fn_: c[4],
                    log_loss: c[5],
                    brier: c[6],
                });
                if moments {
                    let c = &b.moments[r * MOMENT_FIELDS..(r + 1) * MOMENT_FIELDS];
                    st.moments[id].merge(&Moments {
                        w2: [c[0], c[1], c[2], c[3]],
                        w3: [c[4], c[5], c[6], c[7]],
                        log_loss2: c[8],
                        brier2: c[9],
                    });
                }
                let add = |dst: &mut [f64], src: &[f64], each: usize| {
                    let (d, s) = (&mut dst[id * each..(id + 1) * each], &src[r * each..]);
                    for (a, b) in d.iter_mut().zip(s) {
                        *a += b;
                    }
                };
                add(&mut st.hist, &b.hist, 2 * sh.hist_bins);
                add(&mut st.reps, &b.reps, REP_ROWS * slots);
                add(&mut st.calib, &b.calib, sh.calib_bins * BIN_FIELDS);
                add(&mut st.calib_reps, &b.calib_reps, calib_reps);
                add(&mut st.grid, &b.grid, grid_len);
                add(&mut st.logit, &b.logit, logit_len);
                if fam_len > 0 {
                    let f = &b.fam[r * fam_len..(r + 1) * fam_len];
                    crate::task::merge_block(&sh, &mut st.fam[id * fam_len..(id + 1) * fam_len], f);
                }
                if fam_reps_len > 0 {
                    let f = &b.fam_reps[r * fam_reps_len..(r + 1) * fam_reps_len];
                    crate::task::merge_rep_block(
                        &sh,
                        &mut st.fam_reps[id * fam_reps_len..(id + 1) * fam_reps_len],
                        f,
                        sh.slots,
                    );
                }
            }
        }
    }
    if plan.keep_rows {
        if ext.rank.len() != models {
            return Err(bad("kept rows per model"));
        }
        state.rank = Vec::with_capacity(models);
        for r in ext.rank {
            let len = r.scores.len();
            if r.key_rows.len() != n_specs
                || r.key_rows.iter().any(|v| v.len() != len)
                || r.labels.len() != len
                || ((plan.weighted || r.counted) && r.weights.len() != len)
                || (!plan.weighted && !r.counted && !r.weights.is_empty())
                || (r.counted && (plan.weighted || !compactable(&plan)))
                || (plan.keyed_rows && r.row_keys.len() != len)
                || (!plan.keyed_rows && !r.row_keys.is_empty())
            {
                return Err(bad("kept row columns"));
            }
            let ids = r
                .key_rows
                .iter()
                .enumerate()
                .map(|(k, v)| {
                    v.iter()
                        .map(|row| engine_id(k + 1, *row).map(|id| id as u32))
                        .collect::<Result<Vec<u32>>>()
                })
                .collect::<Result<Vec<_>>>()?;
            let mut kept = RankRows::with_specs(n_specs);
            kept.scores = Col::from(r.scores);
            kept.labels = Col::from(r.labels);
            kept.weights = Col::from(r.weights);
            kept.row_keys = Col::from(r.row_keys);
            kept.ids = ids;
            kept.counted = r.counted;
            state.rank.push(kept);
        }
    } else if !ext.rank.is_empty() {
        return Err(bad("kept rows the job does not use"));
    }
    if plan.weighted && ext.rows > 0 {
        let max = ext
            .max_weight
            .filter(|w| *w > 0.0 && w.is_finite())
            .ok_or_else(|| bad("the largest weight"))?;
        let scale = WeightScale::from_max(max);
        if scale.exp != 0 {
            return Err(AssayError::InvalidArgument(format!(
                "weights as large as {max:?} (beyond [2^-32, 2^32]) are not on the torch path \
                 yet; rescale them"
            )));
        }
        state.weight_scale = Some(scale);
    }
    let counted: u64 = (0..models)
        .map(|m| state.total.specs[m * per_model].counts[0].n)
        .max()
        .unwrap_or(0);
    if counted != ext.rows.saturating_sub(ext.dropped) && !(ext.rows == 0 && counted == 0) {
        return Err(bad("the overall count differs from the rows read"));
    }
    state.rows = ext.rows;
    state.dropped = ext.dropped;
    if ext.rows > 0 {
        let end = ext
            .row_offset
            .checked_add(ext.rows)
            .ok_or_else(|| AssayError::InvalidArgument("row_offset plus rows overflows".into()))?;
        state.ranges = vec![(ext.row_offset, end)];
    }
    state.check_consistent(false)?;
    // As `accumulate` leaves them: rows with repeated entries sorted and compacted.
    let pool = super::job_pool(spec.n_threads)?;
    super::accumulate::compact_kept_rows(&mut state, spec, &pool);
    Ok(state)
}
