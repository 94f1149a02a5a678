//! Mergeable accumulator states. Each has `empty` (Default), an update, `merge` and is finalized
//! by `metrics`. Merging is elementwise addition, so it is associative and commutative; the
//! engine merges in a fixed order so that floating-point sums have the same bits every run.

pub mod codec;
pub mod col;
pub mod partial;
pub mod runs;

pub use crate::runtime::{big_vec, reserve_big};
pub use col::Col;

// The layouts of the calibration blocks (read and written by `reliability`).

/// Fields of a bin: rows, sum of w, sum of w^2, sum of w x score, sum of w x label.
pub const BIN_FIELDS: usize = 5;

/// Fields of a bin's replicate block (each `x slots`): k w, k w s, k w y and k w^2.
pub const REP_BIN_FIELDS: usize = 4;

/// Cells of the SmoothECE grid over [0, 1] (its nodes are `GRID_CELLS + 1`); a power of two,
/// so `s * GRID_CELLS` is exact and the grid halves exactly into coarser levels.
pub const GRID_CELLS: usize = 2048;
/// Per node: sum of w and sum of w x (label - score), spread linearly between two nodes.
pub const GRID_FIELDS: usize = 2;

/// Cells of the logit grid behind the calibration slope, over `[-LOGIT_RANGE, LOGIT_RANGE]`.
pub const LOGIT_CELLS: usize = 2048;
pub const LOGIT_RANGE: f64 = 37.0;
/// Per cell: sum w, sum w d, sum w d^2, sum w d^3, sum w y, sum w y d (d: offset from the centre).
pub const LOGIT_FIELDS: usize = 6;

/// Buckets of the probability histogram a pass may count for the overall slice's quantile
/// bins (equal width over [0, 1]); with it, `reliability::quantile_bin_states` skips two of its passes.
pub const PROB_BUCKETS: usize = 2048;

/// The [`PROB_BUCKETS`] histogram of unweighted probability scores a pass may build for the
/// overall slice's quantile bins: per bucket the rows, the positives and the sum of the scores.
/// With it, `reliability::quantile_bin_states` only gathers the rows of the few buckets that hold a
/// quantile instead of making three passes over all of them.
#[derive(Clone, Debug)]
pub struct ProbHist {
    /// Rows and positives per bucket (exact integers as f64).
    pub rows: Vec<f64>,
    pub positives: Vec<f64>,
    /// The sum of the scores per bucket.
    pub scores: Vec<f64>,
}

impl Default for ProbHist {
    fn default() -> Self {
        ProbHist {
            rows: vec![0.0; PROB_BUCKETS],
            positives: vec![0.0; PROB_BUCKETS],
            scores: vec![0.0; PROB_BUCKETS],
        }
    }
}

impl ProbHist {
    /// Adds `o` (merge in a fixed order: the score sums are floating point).
    pub fn merge(&mut self, o: &ProbHist) {
        for (a, b) in [
            (&mut self.rows, &o.rows),
            (&mut self.positives, &o.positives),
            (&mut self.scores, &o.scores),
        ] {
            for (x, y) in a.iter_mut().zip(b) {
                *x += y;
            }
        }
    }
}

/// The power of two that a job's weights are multiplied by as they are read.
///
/// Metrics do not change when all weights are scaled, but sums of weights, their products
/// (MCC, ROC-AUC's pair counts) and powers (Kish's effective n, DeLong's placement moments)
/// overflow or underflow at extreme scales. A job fixes this factor from the first batch with
/// a valid weight so that its largest weight lands in [1, 2), but only when that weight is
/// far from 1 (outside [2^-32, 2^32]): the common path multiplies nothing. Scaling by a power
/// of two is exact, so every result is bit-identical to the unscaled computation wherever
/// that one neither overflows nor underflows, whatever batch fixed the factor (the result
/// still does not depend on the thread count or the batch split). Only the reported weight
/// sums are scaled back.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WeightScale {
    /// Weights are multiplied by `2^exp`.
    pub exp: i32,
    /// The weight the factor was taken from (for messages).
    pub reference: f64,
}

impl WeightScale {
    pub const ONE: WeightScale = WeightScale {
        exp: 0,
        reference: 1.0,
    };

    /// The factor that brings `max` (a positive, finite weight) into [1, 2) when it lies
    /// outside [2^-32, 2^32]; 1 otherwise.
    pub fn from_max(max: f64) -> WeightScale {
        if !(max > 0.0 && max.is_finite()) {
            return WeightScale::ONE;
        }
        let e = max.log2().floor() as i32;
        let exp = if (-32..=32).contains(&e) { 0 } else { -e };
        WeightScale {
            exp,
            reference: max,
        }
    }

    /// `x * 2^k`, exact unless the result overflows or underflows (two steps keep every
    /// factor a normal number; neither step overflows or underflows before the result does).
    pub fn times_pow2(x: f64, k: i32) -> f64 {
        let pow2 = |e: i32| f64::from_bits(((e + 1023) as u64) << 52);
        let a = k / 2;
        x * pow2(a) * pow2(k - a)
    }

    /// The weights as accumulated: `raw` itself when the factor is 1, else `raw x 2^exp`
    /// written into `buf`.
    pub fn apply<'a>(&self, raw: &'a [f64], buf: &'a mut Vec<f64>) -> &'a [f64] {
        if self.exp == 0 {
            return raw;
        }
        buf.clear();
        buf.extend(raw.iter().map(|w| Self::times_pow2(*w, self.exp)));
        buf
    }

    /// A weight sum back in the user's units (inf or 0 when it is outside the float64
    /// range).
    pub fn unscale(&self, sum: f64) -> f64 {
        if self.exp == 0 {
            sum
        } else {
            Self::times_pow2(sum, -self.exp)
        }
    }

    /// The counts with the weight sum back in the user's units (the report shows it; every
    /// other field stays scaled, as the metrics read them).
    pub fn unscale_counts(&self, c: &BinaryCounts) -> BinaryCounts {
        BinaryCounts {
            w: self.unscale(c.w),
            ..*c
        }
    }

    /// Why weight `w` (at `row`) cannot be used with this factor: it is too far from the
    /// weights of the first batch for float64 sums.
    pub fn out_of_range(&self, w: f64, row: u64) -> String {
        format!(
            "weight {w:?} at row {row} is too far from the first weights read (the largest was \
             {:?}): weights whose ratio exceeds the float64 range (about 1e308) cannot be summed \
             together; rescale or clip the weights",
            self.reference
        )
    }
}

/// Weighted confusion counts at the threshold plus the sums behind the mean losses.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BinaryCounts {
    /// Rows counted (unweighted, exact).
    pub n: u64,
    /// Sum of weights.
    pub w: f64,
    pub tp: f64,
    pub fp: f64,
    pub tn: f64,
    pub fn_: f64,
    /// Sum of weight x log loss.
    pub log_loss: f64,
    /// Sum of weight x squared error.
    pub brier: f64,
}

impl BinaryCounts {
    #[inline(always)]
    pub fn add(&mut self, y: bool, pred: bool, w: f64, log_loss: f64, brier: f64) {
        self.n += 1;
        self.w += w;
        // Branch-free: labels and predictions are unpredictable, and adding 0.0 leaves a sum's
        // bits unchanged, so this equals adding `w` to exactly one cell.
        let (yf, pf) = (y as u8 as f64, pred as u8 as f64);
        let (wy, wn) = (w * yf, w * (1.0 - yf));
        self.tp += wy * pf;
        self.fn_ += wy * (1.0 - pf);
        self.fp += wn * pf;
        self.tn += wn * (1.0 - pf);
        self.log_loss += w * log_loss;
        self.brier += w * brier;
    }

    /// Rows of weight 1, in order: the same bits as [`BinaryCounts::add`] row by row. The
    /// weight and the four cells are then sums of ones, exact integers in any grouping, so
    /// they are counted as integers; the log loss and squared error keep row order, and are
    /// left alone when not wanted (`add` would add zeros).
    pub fn add_unweighted(
        &mut self,
        y: &[f64],
        s: &[f64],
        threshold: f64,
        log_loss: Option<&[f64]>,
        brier: bool,
    ) {
        let (mut pos, mut pred, mut tp) = (0u64, 0u64, 0u64);
        for (a, b) in y.iter().zip(s) {
            let (yi, pi) = ((*a == 1.0) as u64, (*b >= threshold) as u64);
            pos += yi;
            pred += pi;
            tp += yi & pi;
        }
        let n = y.len().min(s.len()) as u64;
        self.n += n;
        self.w += n as f64;
        self.tp += tp as f64;
        self.fn_ += (pos - tp) as f64;
        self.fp += (pred - tp) as f64;
        self.tn += (n - pos - (pred - tp)) as f64;
        // Each sum is a chain of dependent adds: both chains in one loop overlap.
        match (log_loss, brier) {
            (Some(ll), true) => {
                for ((l, a), b) in ll.iter().zip(y).zip(s) {
                    self.log_loss += l;
                    self.brier += (b - a) * (b - a);
                }
            }
            (Some(ll), false) => {
                for l in ll {
                    self.log_loss += l;
                }
            }
            (None, true) => {
                for (a, b) in y.iter().zip(s) {
                    self.brier += (b - a) * (b - a);
                }
            }
            (None, false) => {}
        }
    }

    pub fn merge(&mut self, o: &Self) {
        self.n += o.n;
        self.w += o.w;
        self.tp += o.tp;
        self.fp += o.fp;
        self.tn += o.tn;
        self.fn_ += o.fn_;
        self.log_loss += o.log_loss;
        self.brier += o.brier;
    }

    pub fn positives(&self) -> f64 {
        self.tp + self.fn_
    }

    pub fn negatives(&self) -> f64 {
        self.tn + self.fp
    }
}

/// Moments behind analytic intervals and BCa acceleration: squared and cubed weights per
/// confusion cell (Kish's effective sample size; influence sums of weighted jobs) and weighted
/// squares of the per-row losses.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Moments {
    /// Sums of squared and cubed weights, indexed by cell `label << 1 | predicted`.
    pub w2: [f64; 4],
    pub w3: [f64; 4],
    /// Sum of weight x log loss^2 and weight x squared error^2.
    pub log_loss2: f64,
    pub brier2: f64,
}

impl Moments {
    #[inline(always)]
    pub fn add(&mut self, y: bool, pred: bool, w: f64, log_loss: f64, brier: f64) {
        let cell = (y as usize) << 1 | pred as usize;
        self.w2[cell] += w * w;
        self.w3[cell] += w * w * w;
        self.log_loss2 += w * log_loss * log_loss;
        self.brier2 += w * brier * brier;
    }

    pub fn merge(&mut self, o: &Self) {
        for (a, b) in self.w2.iter_mut().zip(&o.w2) {
            *a += b;
        }
        for (a, b) in self.w3.iter_mut().zip(&o.w3) {
            *a += b;
        }
        self.log_loss2 += o.log_loss2;
        self.brier2 += o.brier2;
    }
}

/// Rows of a slice's replicate block: the weight in each confusion cell
/// (`label << 1 | predicted`), then weight x log loss and weight x squared error.
pub const REP_ROWS: usize = 6;
pub const REP_LOG_LOSS: usize = 4;
pub const REP_BRIER: usize = 5;

/// What a job accumulates besides the counts.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StateShape {
    /// The task family: which blocks hold the slice's metrics (binary: the confusion counts,
    /// replicate rows and the rest below; regression: `SliceStates::fam`).
    pub family: crate::metrics::Family,
    /// Regression: the pinball quantiles kept, whether the Tweedie deviances are, and their
    /// power (see `regression::Layout`).
    pub quantiles: usize,
    pub deviance: bool,
    pub power: f64,
    /// Regression: whether the prediction interval's coverage and width are kept.
    pub interval: bool,
    /// Score-histogram bins per slice (binned rank metrics), 0 for none.
    pub hist_bins: usize,
    /// Replicate slots (bootstrap replicates and jackknife groups), 0 for none.
    pub slots: usize,
    /// Whether second moments are kept (analytic intervals).
    pub moments: bool,
    /// Uniform calibration bins per slice, 0 for none (see `reliability`).
    pub calib_bins: usize,
    /// Whether the replicate slots also cover the calibration bins.
    pub calib_reps: bool,
    /// Whether the SmoothECE grid is kept.
    pub grid: bool,
    /// Whether the logit grid of the calibration slope is kept.
    pub logit: bool,
    /// Multiclass: the classes K, the top-k accuracies kept, the uniform bins of the
    /// calibration errors (0: none), and whether the classwise bins are kept besides the
    /// top-label ones (see `multiclass::Layout`).
    pub classes: usize,
    pub top_k: usize,
    pub ece_bins: usize,
    pub classwise: bool,
    /// Multiclass `auc="binned"`: the score bins of the ROC-AUC histograms (0: none).
    pub auc_bins: usize,
    /// Multiclass: whether the ROC-AUC histograms (or run sketches) split the other classes by
    /// label, for the one-vs-one pairs.
    pub auc_pairs: bool,
    /// Ranking: the job's metrics (each a weighted sum and a weight per slice; see
    /// `ranking::Layout`).
    pub ranking_metrics: usize,
}

impl StateShape {
    /// The run sketches of one slice (`auc="sketch"`, see `PartialState::sketches`): one
    /// (binary); multiclass one per class (its probability, positives its rows: one-vs-rest),
    /// or with the one-vs-one pairs one per (scored class, true class), every row positive
    /// (see `multiclass::sketch_aucs`).
    pub fn sketches_per_slice(&self) -> usize {
        match self.family {
            crate::metrics::Family::Multiclass if self.auc_pairs => self.classes * self.classes,
            crate::metrics::Family::Multiclass => self.classes,
            _ => 1,
        }
    }

    /// The run budget of each of a slice's sketches: the job's `auc_max_runs` (the budget of
    /// a slice) shared among them, at least `sketch::MIN_MAX_RUNS` each.
    pub fn sketch_budget(&self, runs: usize) -> usize {
        match self.sketches_per_slice() {
            1 => runs,
            s => (runs / s).max(crate::sketch::MIN_MAX_RUNS),
        }
    }

    /// How many times its budget a sketch may hold while a pass or a merge goes on, before it
    /// is compressed (to its budget; every sketch is at the end): 1 for the binary sketch; 2
    /// for the many small multiclass ones, which each flush or merge adds few runs to, so that
    /// they are compressed when they have doubled, not every time.
    pub fn sketch_slack(&self) -> usize {
        if self.sketches_per_slice() == 1 {
            1
        } else {
            2
        }
    }
}

/// Per-slice states of one slice spec: dense arrays indexed by slice id.
#[derive(Clone, Debug, Default)]
pub struct SliceStates {
    pub counts: Vec<BinaryCounts>,
    /// Score histogram for binned rank metrics: `[(id * bins + bin) * 2 + label]` (weights).
    pub hist: Vec<f64>,
    /// A chunk's histogram as a log ([`SliceStates::hist_logged`]): each row's cell of `hist`,
    /// in row order, and its weight (`hist_log_w`: empty while every weight is 1). A chunk of
    /// 64k rows touches few of the `n_ids x bins x 2` cells; a dense histogram per chunk
    /// (73 MB with 1,111 slices and 4,096 bins) would be zeroed and added whole, per chunk.
    pub hist_log: Vec<u64>,
    pub hist_log_w: Vec<f64>,
    /// The histogram is logged (a pass's chunk state), not dense.
    pub hist_logged: bool,
    /// Replicate accumulators: `[(id * REP_ROWS + row) * slots + slot]`.
    pub reps: Vec<f64>,
    pub moments: Vec<Moments>,
    /// Uniform calibration bins: `[(id * bins + bin) * BIN_FIELDS + field]`.
    pub calib: Vec<f64>,
    /// Their replicate blocks: `[((id * bins + bin) * REP_BIN_FIELDS + field) * slots + slot]`.
    pub calib_reps: Vec<f64>,
    /// SmoothECE grids: `[(id * (GRID_CELLS + 1) + node) * GRID_FIELDS + field]`.
    pub grid: Vec<f64>,
    /// Logit grids: `[(id * LOGIT_CELLS + cell) * LOGIT_FIELDS + field]`.
    pub logit: Vec<f64>,
    /// The block of a task family other than binary: `[id * len + field]` with
    /// `len = family::block_len(shape)`, merged by the family's rule (`family::merge_block`).
    /// `counts` still carries each slice's rows and weight sum.
    pub fam: Vec<f64>,
    /// Its replicate blocks: `[(id * fields + field) * slots + slot]`.
    pub fam_reps: Vec<f64>,
    /// The shape these blocks were sized for (its family decides how they merge).
    pub layout: StateShape,
}

impl SliceStates {
    pub fn resize(&mut self, n_ids: usize, shape: StateShape) {
        if self.counts.len() < n_ids {
            self.counts.resize(n_ids, BinaryCounts::default());
        }
        self.layout = shape;
        if shape.family != crate::metrics::Family::Binary {
            let grow = |v: &mut Vec<f64>, len: usize| {
                if v.len() < len {
                    v.resize(len, 0.0);
                }
            };
            grow(&mut self.fam, n_ids * crate::task::block_len(&shape));
            grow(
                &mut self.fam_reps,
                n_ids * crate::task::rep_block_len(&shape),
            );
            return;
        }
        let hist = n_ids * shape.hist_bins * 2;
        if !self.hist_logged && self.hist.len() < hist {
            self.hist.resize(hist, 0.0);
        }
        let reps = n_ids * REP_ROWS * shape.slots;
        if self.reps.len() < reps {
            self.reps.resize(reps, 0.0);
        }
        if shape.moments && self.moments.len() < n_ids {
            self.moments.resize(n_ids, Moments::default());
        }
        let grow = |v: &mut Vec<f64>, len: usize| {
            if v.len() < len {
                v.resize(len, 0.0);
            }
        };
        grow(&mut self.calib, n_ids * shape.calib_bins * BIN_FIELDS);
        if shape.calib_reps {
            let len = n_ids * shape.calib_bins * REP_BIN_FIELDS * shape.slots;
            grow(&mut self.calib_reps, len);
        }
        if shape.grid {
            grow(&mut self.grid, n_ids * (GRID_CELLS + 1) * GRID_FIELDS);
        }
        if shape.logit {
            grow(&mut self.logit, n_ids * LOGIT_CELLS * LOGIT_FIELDS);
        }
    }

    /// Adds weight `w` to histogram cell `cell`: logged or in place.
    #[inline(always)]
    pub fn hist_add(&mut self, cell: usize, w: f64) {
        if !self.hist_logged {
            self.hist[cell] += w;
            return;
        }
        // (`hist_log_w` is empty, or as long as `hist_log`.)
        let weighted = !self.hist_log_w.is_empty();
        if weighted || w != 1.0 {
            if !weighted {
                self.hist_log_w.resize(self.hist_log.len(), 1.0);
            }
            self.hist_log_w.push(w);
        }
        self.hist_log.push(cell as u64);
    }

    /// Adds `o`'s logged histogram: to this log, or (a dense histogram) cell by cell in row
    /// order, growing it to the slices the log names.
    fn add_hist_log(&mut self, o: &Self) {
        if o.hist_log.is_empty() {
            return;
        }
        if self.hist_logged {
            let weighted = !self.hist_log_w.is_empty() || !o.hist_log_w.is_empty();
            if weighted && self.hist_log_w.is_empty() {
                self.hist_log_w.resize(self.hist_log.len(), 1.0);
            }
            self.hist_log.extend_from_slice(&o.hist_log);
            if weighted && o.hist_log_w.is_empty() {
                self.hist_log_w
                    .extend(std::iter::repeat_n(1.0, o.hist_log.len()));
            } else {
                self.hist_log_w.extend_from_slice(&o.hist_log_w);
            }
            return;
        }
        let block = 2 * o.layout.hist_bins.max(1);
        let last = o.hist_log.iter().copied().max().unwrap_or(0) as usize;
        if self.hist.len() <= last {
            self.hist.resize((last / block + 1) * block, 0.0);
        }
        if o.hist_log_w.is_empty() {
            for c in &o.hist_log {
                self.hist[*c as usize] += 1.0;
            }
        } else {
            for (c, w) in o.hist_log.iter().zip(&o.hist_log_w) {
                self.hist[*c as usize] += w;
            }
        }
    }

    pub fn merge(&mut self, o: &Self) {
        if self.counts.len() < o.counts.len() {
            self.counts.resize(o.counts.len(), BinaryCounts::default());
        }
        for (a, b) in self.counts.iter_mut().zip(&o.counts) {
            a.merge(b);
        }
        if o.layout.family != crate::metrics::Family::Binary {
            self.merge_family(o, None);
            return;
        }
        add_vec(&mut self.hist, &o.hist);
        self.add_hist_log(o);
        add_vec(&mut self.reps, &o.reps);
        if self.moments.len() < o.moments.len() {
            self.moments.resize(o.moments.len(), Moments::default());
        }
        for (a, b) in self.moments.iter_mut().zip(&o.moments) {
            a.merge(b);
        }
        add_vec(&mut self.calib, &o.calib);
        add_vec(&mut self.calib_reps, &o.calib_reps);
        add_vec(&mut self.grid, &o.grid);
        add_vec(&mut self.logit, &o.logit);
    }
}

impl SliceStates {
    /// Merges the task family blocks of `o` into this one's: slice `j` of `o` into slice
    /// `map[j]` (`j` itself without a map), by the family's rule. `counts` (which says which
    /// slices have rows) are merged by the caller.
    pub fn merge_family(&mut self, o: &Self, map: Option<&[u32]>) {
        use crate::task::{merge_block, merge_rep_block};
        if o.layout.family == crate::metrics::Family::Binary || o.counts.is_empty() {
            return;
        }
        self.layout = o.layout;
        let n_ids = self.counts.len();
        let blen = o.fam.len() / o.counts.len();
        let rlen = o.fam_reps.len() / o.counts.len();
        for (v, len) in [(&mut self.fam, blen), (&mut self.fam_reps, rlen)] {
            if v.len() < n_ids * len {
                v.resize(n_ids * len, 0.0);
            }
        }
        let slots = rlen / crate::task::rep_fields(&o.layout).max(1);
        for (j, c) in o.counts.iter().enumerate() {
            if c.n == 0 {
                continue;
            }
            let t = map.map_or(j, |m| m[j] as usize);
            merge_block(
                &o.layout,
                &mut self.fam[t * blen..(t + 1) * blen],
                &o.fam[j * blen..(j + 1) * blen],
            );
            if rlen > 0 {
                merge_rep_block(
                    &o.layout,
                    &mut self.fam_reps[t * rlen..(t + 1) * rlen],
                    &o.fam_reps[j * rlen..(j + 1) * rlen],
                    slots,
                );
            }
        }
    }
}

fn add_vec(a: &mut Vec<f64>, b: &[f64]) {
    if a.len() < b.len() {
        a.resize(b.len(), 0.0);
    }
    for (x, y) in a.iter_mut().zip(b) {
        *x += y;
    }
}

/// The states of one logical chunk of rows: index 0 is the overall slice, then one per spec.
#[derive(Clone, Debug, Default)]
pub struct ChunkState {
    pub specs: Vec<SliceStates>,
}

impl ChunkState {
    pub fn new(n_ids: &[usize], shape: StateShape) -> Self {
        let mut s = ChunkState::default();
        s.resize(n_ids, shape);
        s
    }

    pub fn resize(&mut self, n_ids: &[usize], shape: StateShape) {
        self.specs.resize_with(n_ids.len(), SliceStates::default);
        for (s, n) in self.specs.iter_mut().zip(n_ids) {
            s.resize(*n, shape);
        }
    }

    /// [`ChunkState::resize`] for the state of one chunk of a pass: a spec's histograms are
    /// logged (see [`SliceStates::hist_log`]) once they have more cells than a chunk has rows
    /// (a small dense histogram, the overall slice's, is cheaper to add to directly). A spec
    /// that holds rows in a dense histogram keeps it until the state is cleared.
    pub fn resize_logged(&mut self, n_ids: &[usize], shape: StateShape) {
        let chunk = crate::piece::CHUNK_ROWS as usize;
        self.specs.resize_with(n_ids.len(), SliceStates::default);
        for (s, n) in self.specs.iter_mut().zip(n_ids) {
            let large = n.saturating_mul(2 * shape.hist_bins) > chunk;
            if large && !s.hist_logged && s.counts.iter().all(|c| c.n == 0) {
                s.hist_logged = true;
                s.hist = Vec::new();
            }
            if s.hist_logged && shape.hist_bins > 0 {
                // (A chunk logs at most its rows: no growth while it fills.)
                let room = chunk.saturating_sub(s.hist_log.len());
                s.hist_log.reserve(room);
            }
            s.resize(*n, shape);
        }
    }

    /// [`ChunkState::merge`] of a pass's chunk state: slice specs in parallel on `pool` when
    /// their logged histograms are long (else on this thread, without a hand-off). Each spec's
    /// cells are added in row order, as one thread would.
    pub fn merge_chunk(&mut self, o: &Self, pool: &rayon::ThreadPool) {
        use rayon::prelude::*;
        let logged: usize = o.specs.iter().map(|s| s.hist_log.len()).sum();
        if logged < 1 << 14 {
            return self.merge(o);
        }
        self.specs
            .resize_with(self.specs.len().max(o.specs.len()), SliceStates::default);
        pool.install(|| {
            self.specs
                .par_iter_mut()
                .zip(o.specs.par_iter())
                .with_max_len(1)
                .for_each(|(a, b)| a.merge(b))
        });
    }

    /// Zeroes every state, keeping the memory (a merged chunk's state is reused).
    pub fn clear(&mut self) {
        for s in self.specs.iter_mut() {
            s.hist_log.clear();
            s.hist_log_w.clear();
            s.counts.fill(BinaryCounts::default());
            s.moments.fill(Moments::default());
            for v in [
                &mut s.hist,
                &mut s.reps,
                &mut s.calib,
                &mut s.calib_reps,
                &mut s.grid,
                &mut s.logit,
                &mut s.fam,
                &mut s.fam_reps,
            ] {
                v.fill(0.0);
            }
        }
    }

    pub fn merge(&mut self, o: &Self) {
        self.specs
            .resize_with(self.specs.len().max(o.specs.len()), SliceStates::default);
        for (a, b) in self.specs.iter_mut().zip(&o.specs) {
            a.merge(b);
        }
    }
}

/// Appends `n` zeros, written in parallel chunks (in the calling pool): the first touch of
/// fresh pages is most of the cost, and it then runs on every thread.
fn extend_zeroed<T: Copy + Default + Send>(v: &mut Vec<T>, n: usize) {
    use rayon::prelude::*;
    reserve_big(v, n);
    let len = v.len();
    v.spare_capacity_mut()[..n]
        .par_chunks_mut(1 << 16)
        .for_each(|c| {
            for x in c {
                x.write(T::default());
            }
        });
    // SAFETY: the n slots after `len` were initialized just above.
    unsafe { v.set_len(len + n) };
}

/// The rows kept for exact rank metrics and quantile calibration bins: they must be sorted, so
/// they are kept as rows, or as sorted entries combined per (score, slice ids, label) (`runs`).
#[derive(Clone, Debug, Default)]
pub struct RankRows {
    pub scores: Col<f64>,
    pub labels: Col<u8>,
    /// Empty when the job is unweighted.
    pub weights: Col<f64>,
    /// Slice ids of each row, one vector per slice spec (the overall slice needs none).
    pub ids: Vec<Vec<u32>>,
    /// Resampling key of each row (bootstrap jobs only; see `bootstrap::Resampler::row_key`).
    pub row_keys: Col<u64>,
    /// Sorted by descending score, ties by slice ids then label (a compacted partial state's
    /// entries, see `runs`). Other rows lie in row order and are sorted once at finalization.
    pub sorted: bool,
    /// Entries of equal (score, slice ids, label) are combined (see `runs`).
    pub compact: bool,
    /// An unweighted job's combined entries: `weights` holds each entry's row count.
    pub counted: bool,
}

impl RankRows {
    /// Room for `more` rows in every column this job keeps (huge pages advised).
    pub fn reserve_more(&mut self, more: usize) {
        self.scores.reserve(more);
        self.labels.reserve(more);
        if !self.weights.is_empty() {
            reserve_big(self.weights.to_mut(), more);
        }
        if !self.row_keys.is_empty() {
            reserve_big(self.row_keys.to_mut(), more);
        }
        for ids in self.ids.iter_mut() {
            ids.reserve(more);
        }
    }

    pub fn with_specs(n_specs: usize) -> Self {
        RankRows {
            ids: vec![Vec::new(); n_specs],
            ..Default::default()
        }
    }

    pub fn len(&self) -> usize {
        self.scores.len()
    }

    /// Makes room for `rows` more rows in every column in use (one allocation per batch
    /// instead of regrowing, and copying, wave by wave).
    pub fn reserve_rows(&mut self, rows: usize, weighted: bool, keyed: bool) {
        reserve_big(self.scores.to_mut(), rows);
        reserve_big(self.labels.to_mut(), rows);
        if weighted {
            reserve_big(self.weights.to_mut(), rows);
        }
        if keyed {
            reserve_big(self.row_keys.to_mut(), rows);
        }
        for v in self.ids.iter_mut() {
            reserve_big(v, rows);
        }
    }

    /// Grows every column by `pieces`' total rows and hands out one window per piece (in
    /// order), so that pieces processed in parallel write their rows in place. Call
    /// [`RankRows::close_windows`] afterwards with the rows each piece wrote.
    pub fn open_windows(
        &mut self,
        pieces: &[usize],
        weighted: bool,
        keyed: bool,
    ) -> Vec<RankWindow<'_>> {
        let total: usize = pieces.iter().sum();
        let base = self.scores.len();
        extend_zeroed(self.scores.to_mut(), total);
        if weighted {
            extend_zeroed(self.weights.to_mut(), total);
        }
        extend_zeroed(self.labels.to_mut(), total);
        if keyed {
            extend_zeroed(self.row_keys.to_mut(), total);
        }
        for v in self.ids.iter_mut() {
            extend_zeroed(v, total);
        }
        let mut scores = &mut self.scores[base..];
        let mut labels = &mut self.labels[base..];
        let mut weights: &mut [f64] = if weighted {
            &mut self.weights[base..]
        } else {
            &mut []
        };
        let mut keys: &mut [u64] = if keyed {
            &mut self.row_keys[base..]
        } else {
            &mut []
        };
        let mut ids: Vec<&mut [u32]> = self.ids.iter_mut().map(|v| &mut v[base..]).collect();
        let mut out = Vec::with_capacity(pieces.len());
        for &n in pieces {
            let (a, rest) = std::mem::take(&mut scores).split_at_mut(n);
            scores = rest;
            let (b, rest) = std::mem::take(&mut labels).split_at_mut(n);
            labels = rest;
            let (c, rest) = std::mem::take(&mut weights).split_at_mut(if weighted { n } else { 0 });
            weights = rest;
            let (d, rest) = std::mem::take(&mut keys).split_at_mut(if keyed { n } else { 0 });
            keys = rest;
            let e = ids
                .iter_mut()
                .map(|v| {
                    let (x, rest) = std::mem::take(v).split_at_mut(n);
                    *v = rest;
                    x
                })
                .collect();
            out.push(RankWindow {
                scores: a,
                labels: b,
                weights: c,
                row_keys: d,
                ids: e,
                at: 0,
            });
        }
        out
    }

    /// Closes the windows of [`RankRows::open_windows`]: `written[i]` rows of piece `i` (of
    /// `sizes[i]`) were written; the rows after them (dropped rows) are squeezed out.
    pub fn close_windows(&mut self, sizes: &[usize], written: &[usize]) {
        let total: usize = sizes.iter().sum();
        let base = self.scores.len() - total;
        if sizes == written {
            return;
        }
        let mut to = base;
        let mut from = base;
        for (n, w) in sizes.iter().zip(written) {
            let keyed = !self.row_keys.is_empty();
            let weighted = !self.weights.is_empty();
            self.scores.copy_within(from..from + w, to);
            self.labels.copy_within(from..from + w, to);
            if weighted {
                self.weights.copy_within(from..from + w, to);
            }
            if keyed {
                self.row_keys.copy_within(from..from + w, to);
            }
            for v in self.ids.iter_mut() {
                v.copy_within(from..from + w, to);
            }
            to += w;
            from += n;
        }
        self.scores.truncate(to);
        self.labels.truncate(to);
        if !self.weights.is_empty() {
            self.weights.truncate(to);
        }
        if !self.row_keys.is_empty() {
            self.row_keys.truncate(to);
        }
        for v in self.ids.iter_mut() {
            v.truncate(to);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.scores.is_empty()
    }
}

/// One piece's share of [`RankRows`]: it writes its kept rows in place, in row order.
pub struct RankWindow<'a> {
    pub scores: &'a mut [f64],
    pub labels: &'a mut [u8],
    /// Empty when the job is unweighted.
    pub weights: &'a mut [f64],
    /// Empty unless the job resamples.
    pub row_keys: &'a mut [u64],
    pub ids: Vec<&'a mut [u32]>,
    /// Rows written so far.
    pub at: usize,
}

impl RankWindow<'_> {
    /// Writes one row (its slice ids are written by the caller at `at` before `advance`).
    #[inline]
    pub fn put(&mut self, score: f64, label: bool, weight: f64, row_key: u64) {
        let i = self.at;
        self.scores[i] = score;
        self.labels[i] = label as u8;
        if !self.weights.is_empty() {
            self.weights[i] = weight;
        }
        if !self.row_keys.is_empty() {
            self.row_keys[i] = row_key;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_logged_histogram_adds_up_like_a_dense_one() {
        let shape = StateShape {
            hist_bins: 4,
            ..StateShape::default()
        };
        // 10,000 slices x 4 bins x 2 cells: more cells than a chunk has rows, so logged.
        let ids = [10_000];
        // (cell, weight) rows: the first weight differs from 1, later ones are 1 again; and
        // an all-ones run.
        let runs: [&[(usize, f64)]; 3] = [
            &[(3, 0.5), (3, 1.0), (17, 1.0), (0, 2.25), (17, 0.0)],
            &[(5, 1.0), (5, 1.0), (31, 1.0)],
            &[(1, 1.0), (2, 3.0), (2, 1.0)],
        ];
        let mut dense = ChunkState::new(&ids, shape);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        let mut total = ChunkState::default();
        let mut chunk = ChunkState::default();
        for rows in runs {
            chunk.resize_logged(&ids, shape);
            assert!(chunk.specs[0].hist_logged && chunk.specs[0].hist.is_empty());
            for (c, w) in rows {
                chunk.specs[0].hist_add(*c, *w);
                dense.specs[0].hist_add(*c, *w);
            }
            let log = &chunk.specs[0];
            assert!(log.hist_log_w.is_empty() || log.hist_log_w.len() == log.hist_log.len());
            total.merge_chunk(&chunk, &pool);
            chunk.clear();
            assert!(chunk.specs[0].hist_log.is_empty() && chunk.specs[0].hist_log_w.is_empty());
        }
        let got = &total.specs[0].hist;
        assert_eq!(got[..], dense.specs[0].hist[..got.len()]);
        assert!(dense.specs[0].hist[got.len()..].iter().all(|x| *x == 0.0));
        assert_eq!(got[3], 1.5);
        assert_eq!(got[2], 4.0);
        // Logs merged into a log keep every row's weight.
        let (mut a, mut b) = (ChunkState::default(), ChunkState::default());
        a.resize_logged(&ids, shape);
        b.resize_logged(&ids, shape);
        a.specs[0].hist_add(6, 1.0);
        b.specs[0].hist_add(7, 0.25);
        a.merge(&b);
        assert_eq!(a.specs[0].hist_log, vec![6, 7]);
        assert_eq!(a.specs[0].hist_log_w, vec![1.0, 0.25]);
        // A small histogram (the overall slice's) stays dense, and so does one that grows
        // large while it holds rows, until it is cleared.
        let mut small = ChunkState::default();
        small.resize_logged(&[4], shape);
        assert!(!small.specs[0].hist_logged && small.specs[0].hist.len() == 32);
        small.specs[0].counts[0].add(true, true, 1.0, 0.0, 0.0);
        small.specs[0].hist_add(9, 1.0);
        small.resize_logged(&ids, shape);
        assert!(!small.specs[0].hist_logged && small.specs[0].hist[9] == 1.0);
        small.clear();
        small.resize_logged(&ids, shape);
        assert!(small.specs[0].hist_logged);
    }

    #[test]
    fn unweighted_counts_equal_the_row_by_row_sums() {
        let mut x = 7u64;
        let mut next = || {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 11) as f64 / (1u64 << 53) as f64
        };
        let n = 5000;
        // Scores on a coarse grid: many ties with the threshold.
        let s: Vec<f64> = (0..n).map(|_| (next() * 8.0).floor() / 8.0).collect();
        let y: Vec<f64> = s
            .iter()
            .map(|p| if next() < *p { 1.0 } else { 0.0 })
            .collect();
        let ll: Vec<f64> = (0..n).map(|_| next() * 3.0).collect();
        // Every row positive and predicted positive (the cell counts at their extremes).
        let ones = vec![1.0; 64];
        let mut all = BinaryCounts::default();
        all.add_unweighted(&ones, &ones, 0.5, None, true);
        assert_eq!(
            (all.tp, all.fp, all.tn, all.fn_, all.n),
            (64.0, 0.0, 0.0, 0.0, 64)
        );
        for (with_ll, brier) in [(true, true), (false, true), (true, false), (false, false)] {
            // A state already holding rows, as an open chunk does.
            let mut one = BinaryCounts::default();
            one.add(true, false, 1.0, 0.25, 0.5);
            let mut bulk = one;
            for i in 0..n {
                let l = if with_ll { ll[i] } else { 0.0 };
                let b = if brier {
                    (s[i] - y[i]) * (s[i] - y[i])
                } else {
                    0.0
                };
                one.add(y[i] == 1.0, s[i] >= 0.5, 1.0, l, b);
            }
            bulk.add_unweighted(&y, &s, 0.5, with_ll.then_some(&ll[..]), brier);
            assert_eq!(one.n, bulk.n);
            for (a, b) in [
                (one.w, bulk.w),
                (one.tp, bulk.tp),
                (one.fp, bulk.fp),
                (one.tn, bulk.tn),
                (one.fn_, bulk.fn_),
                (one.log_loss, bulk.log_loss),
                (one.brier, bulk.brier),
            ] {
                assert_eq!(a.to_bits(), b.to_bits());
            }
        }
    }

    #[test]
    fn windows_write_in_place_and_squeeze_out_dropped_rows() {
        let mut rows = RankRows::with_specs(1);
        rows.scores.push(9.0);
        rows.labels.push(1);
        rows.ids[0].push(7);
        let sizes = [3usize, 2, 3];
        let mut windows = rows.open_windows(&sizes, false, false);
        // Piece 0 writes 2 of 3 rows, piece 1 both, piece 2 one.
        for (p, (win, n)) in windows.iter_mut().zip([2usize, 2, 1]).enumerate() {
            for r in 0..n {
                win.put((10 * p + r) as f64, r % 2 == 0, 1.0, 0);
                let at = win.at;
                win.ids[0][at] = p as u32;
                win.at += 1;
            }
        }
        let written: Vec<usize> = windows.iter().map(|w| w.at).collect();
        drop(windows);
        rows.close_windows(&sizes, &written);
        assert_eq!(rows.scores, vec![9.0, 0.0, 1.0, 10.0, 11.0, 20.0]);
        assert_eq!(rows.labels, vec![1, 1, 0, 1, 0, 1]);
        assert_eq!(rows.ids[0], vec![7, 0, 0, 1, 1, 2]);
        assert!(rows.weights.is_empty() && rows.row_keys.is_empty());
    }

    #[test]
    fn weight_scale_is_an_exact_power_of_two() {
        assert_eq!(WeightScale::from_max(1.0).exp, 0);
        assert_eq!(
            WeightScale::from_max(3e9).exp,
            0,
            "near 1: nothing to scale"
        );
        for max in [1e80, 1e-100, 1e160, 1e-300, 1.7e308, 5e-324, f64::MAX] {
            let s = WeightScale::from_max(max);
            let mut buf = Vec::new();
            let raw = [max, max / 3.0, max * 0.75];
            let scaled = s.apply(&raw, &mut buf).to_vec();
            assert!((0.5..4.0).contains(&scaled[0]), "{max}: {scaled:?}");
            for (r, x) in raw.iter().zip(&scaled) {
                // Exact both ways (subnormal raw values scale up exactly too).
                assert_eq!(s.unscale(*x), *r, "{max}");
            }
        }
        // A sum beyond the float64 range unscales to inf (the report shows null).
        let s = WeightScale::from_max(f64::MAX);
        assert_eq!(s.unscale(4.0), f64::INFINITY);
        assert_eq!(WeightScale::times_pow2(1.0, -1074), 5e-324);
        assert_eq!(WeightScale::times_pow2(5e-324, 1074), 1.0);
        assert_eq!(WeightScale::times_pow2(1.5, 1023), 1.5 * 2f64.powi(1023));
        assert!(WeightScale::times_pow2(1.5, 1023).is_finite());
    }

    #[test]
    fn merge_equals_one_pass() {
        let rows = [
            (true, true, 1.0, 0.1, 0.01),
            (false, true, 2.0, 0.7, 0.5),
            (true, false, 0.5, 2.0, 0.8),
        ];
        let mut one = BinaryCounts::default();
        rows.iter().for_each(|r| one.add(r.0, r.1, r.2, r.3, r.4));
        let (mut a, mut b) = (BinaryCounts::default(), BinaryCounts::default());
        a.add(rows[0].0, rows[0].1, rows[0].2, rows[0].3, rows[0].4);
        rows[1..]
            .iter()
            .for_each(|r| b.add(r.0, r.1, r.2, r.3, r.4));
        a.merge(&b);
        assert_eq!(a.n, 3);
        assert_eq!(a.tp, one.tp);
        assert_eq!(a.fp, 2.0);
        assert_eq!(a.fn_, 0.5);
        assert!((a.log_loss - one.log_loss).abs() < 1e-15);
    }
}
