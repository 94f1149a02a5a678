//! [`PartialState`]: everything a job keeps from its pass, keyed by slice value, so that shards
//! accumulated anywhere merge into the state of one pass over all their rows.

use arrow_array::RecordBatch;
use rayon::prelude::*;

use super::{ProbHist, PROB_BUCKETS};
use crate::error::{AssayError, Result};
use crate::sketch::RunSketch;
use crate::slicing::Slicer;

use super::{ChunkState, RankRows, SliceStates, StateShape, WeightScale};

/// The batches of an in-memory input, read a second time at finalization (see
/// `engine::plan::Plan::replay`). Only the one-pass `evaluate` has them; they are never
/// serialized.
pub struct Replay {
    pub batches: Vec<RecordBatch>,
    pub label: usize,
    pub scores: Vec<usize>,
    /// The task family's own columns (`crate::task::FamilyColumns::extra`: a multiclass
    /// job's probability columns per model, a list column or K columns).
    pub family: Vec<Vec<usize>>,
}

/// The mergeable state of a job over some rows.
///
/// - `total` holds the additive blocks (counts, replicate sums, histograms, calibration grids)
///   of every model, slice spec and slice, indexed by the slicer's dense ids;
/// - `rank` the kept rows of exact rank metrics and quantile calibration bins (score, label,
///   weight, slice ids, resampling key), in row order;
/// - `sketches` the per-slice sorted runs of `auc="sketch"`;
/// - `slicer` the value behind every id, so that states merge by value.
pub struct PartialState {
    /// The caller's description of the spec (opaque here): states merge only with equal text.
    pub spec_json: String,
    pub slicer: Slicer,
    pub models: usize,
    /// The shape of the blocks in `total` (the pass's shape).
    pub shape: StateShape,
    pub total: ChunkState,
    pub rank: Vec<RankRows>,
    /// `[model][spec][id]` (spec 0 is the overall slice).
    pub sketches: Vec<Vec<Vec<RunSketch>>>,
    /// The budget of each sketch (0 without sketches).
    pub sketch_runs: usize,
    pub prob_hists: Vec<ProbHist>,
    pub weight_scale: Option<WeightScale>,
    pub rows: u64,
    pub dropped: u64,
    /// Global row positions covered, `[start, end)`, sorted; ranges that touch are joined,
    /// ranges that overlap (shards at the same positions, allowed unless replicate weights
    /// follow positions) are kept apart, so that their lengths add up to `rows`.
    pub ranges: Vec<(u64, u64)>,
    /// Whether replicate weights follow the row position (a bootstrap without `row_id`): two
    /// states covering the same positions would then share their replicate weights.
    pub position_keys: bool,
    pub replay: Option<Replay>,
    /// A ranking job's finished queries: their keys, sorted (a merge refuses two states that
    /// share one; see `ranking`). Empty for the other families.
    pub queries: Vec<u64>,
    /// The content hash of the rows read (`EvalSpec::fingerprint`; see `crate::fingerprint`):
    /// a wrapping sum over rows, so the shards' hashes add up to the whole input's.
    pub content_hash: Option<u64>,
}

/// Values a consistency check folds at once.
const CHECK_CHUNK: usize = 1 << 14;

fn format_err(m: impl Into<String>) -> AssayError {
    AssayError::StateFormat(format!("not a valid partial state: {}", m.into()))
}

fn mismatch(m: impl Into<String>) -> AssayError {
    AssayError::StateMismatch(m.into())
}

impl PartialState {
    /// Ids per spec (the overall slice first).
    pub fn n_ids(&self) -> Vec<usize> {
        std::iter::once(1)
            .chain((0..self.slicer.n_specs()).map(|s| self.slicer.n_ids(s)))
            .collect()
    }

    /// Checks that every block has the length its ids and shape imply and that every kept row
    /// names existing slices (a decoded state is checked before anything indexes it).
    /// `parallel`: read the rows in parallel (only inside a pool the caller owns).
    pub fn check_consistent(&self, parallel: bool) -> Result<()> {
        let n_ids = self.n_ids();
        let per_model = n_ids.len();
        if self.models == 0 || self.models > 1 << 16 {
            return Err(format_err("model count"));
        }
        if self.total.specs.len() != self.models * per_model {
            return Err(format_err("state block count"));
        }
        let sh = self.shape;
        use super::{
            BIN_FIELDS, GRID_CELLS, GRID_FIELDS, LOGIT_CELLS, LOGIT_FIELDS, REP_BIN_FIELDS,
        };
        let binary = sh.family == crate::metrics::Family::Binary;
        let binary_slots = if binary { sh.slots } else { 0 };
        let per_id = |st: &SliceStates| -> [(usize, usize, &str); 10] {
            [
                (st.counts.len(), 1, "counts"),
                (st.hist.len(), 2 * sh.hist_bins, "histogram"),
                (st.reps.len(), super::REP_ROWS * binary_slots, "replicates"),
                (
                    st.fam.len(),
                    crate::task::block_len(&sh),
                    "task family block",
                ),
                (
                    st.fam_reps.len(),
                    crate::task::rep_block_len(&sh),
                    "task family replicates",
                ),
                (st.moments.len(), (sh.moments && binary) as usize, "moments"),
                (
                    st.calib.len(),
                    sh.calib_bins * BIN_FIELDS,
                    "calibration bins",
                ),
                (
                    st.calib_reps.len(),
                    sh.calib_bins * REP_BIN_FIELDS * sh.slots * sh.calib_reps as usize,
                    "calibration replicates",
                ),
                (
                    st.grid.len(),
                    (GRID_CELLS + 1) * GRID_FIELDS * sh.grid as usize,
                    "calibration grid",
                ),
                (
                    st.logit.len(),
                    LOGIT_CELLS * LOGIT_FIELDS * sh.logit as usize,
                    "logit grid",
                ),
            ]
        };
        for (i, st) in self.total.specs.iter().enumerate() {
            let n = n_ids[i % per_model];
            for (len, each, what) in per_id(st) {
                if Some(len) != n.checked_mul(each) {
                    return Err(format_err(format!("{what} block length")));
                }
            }
        }
        if !self.rank.is_empty() && self.rank.len() != self.models {
            return Err(format_err("kept rows per model"));
        }
        for r in &self.rank {
            let len = r.scores.len();
            if r.labels.len() != len
                || !(r.weights.is_empty() || r.weights.len() == len)
                || !(r.row_keys.is_empty() || r.row_keys.len() == len)
                || r.ids.len() + 1 != per_model
            {
                return Err(format_err("kept row columns"));
            }
            // Chunked folds (they vectorize, unlike a short-circuiting `any` per value).
            let bad = |n: usize, f: &(dyn Fn(std::ops::Range<usize>) -> bool + Sync)| {
                let chunks = n.div_ceil(CHECK_CHUNK);
                let range = |c: usize| c * CHECK_CHUNK..((c + 1) * CHECK_CHUNK).min(n);
                if parallel {
                    (0..chunks).into_par_iter().any(|c| f(range(c)))
                } else {
                    (0..chunks).any(|c| f(range(c)))
                }
            };
            let labels_bad = bad(len, &|c| r.labels[c].iter().fold(0u8, |a, y| a | y) > 1);
            let scores_bad = bad(len, &|c| {
                !crate::fastmath::all_within(&r.scores[c], f64::MIN, f64::MAX)
            });
            if labels_bad || scores_bad {
                return Err(format_err("kept row values"));
            }
            let weights_bad = bad(r.weights.len(), &|c| {
                !crate::fastmath::all_within(&r.weights[c], 0.0, f64::MAX)
            });
            if weights_bad {
                return Err(format_err("kept row weights"));
            }
            // Sorted entries: descending scores (merging and the walks rely on it); counts:
            // whole numbers of rows.
            // (A state's sorted rows never carry resampling keys: those are never compacted,
            // so never sorted.)
            if (r.compact && !r.sorted)
                || (r.sorted && !r.row_keys.is_empty())
                || (r.counted && (!r.row_keys.is_empty() || r.weights.len() != len))
            {
                return Err(format_err("kept row flags"));
            }
            let out_of_order = |c: std::ops::Range<usize>| {
                let (a, b) = (c.start, (c.end + 1).min(len));
                let s = &r.scores[a..b];
                s.iter()
                    .zip(&s[1..])
                    .fold(false, |acc, (x, y)| acc | (x < y))
            };
            if r.sorted && bad(len, &out_of_order) {
                return Err(format_err("kept rows out of order"));
            }
            let not_whole = |w: &f64| !(*w >= 1.0 && *w <= (1u64 << 53) as f64 && w.fract() == 0.0);
            if r.counted
                && (bad(len, &|c| r.weights[c].iter().any(not_whole))
                    || r.weights.iter().sum::<f64>() > self.rows as f64)
            {
                return Err(format_err("kept row counts"));
            }
            for (k, ids) in r.ids.iter().enumerate() {
                let n = n_ids[k + 1];
                if ids.len() != len
                    || bad(len, &|c| {
                        ids[c].iter().fold(0u32, |a, x| a.max(*x)) as usize >= n
                    })
                {
                    return Err(format_err("kept row slice ids"));
                }
            }
        }
        if !self.sketches.is_empty() {
            if self.sketches.len() != self.models || self.sketch_runs == 0 {
                return Err(format_err("sketches per model"));
            }
            let per_slice = self.shape.sketches_per_slice();
            for per_spec in &self.sketches {
                if per_spec.len() != per_model
                    || per_spec
                        .iter()
                        .zip(&n_ids)
                        .any(|(s, n)| s.len() != n * per_slice)
                {
                    return Err(format_err("sketches per slice"));
                }
            }
        }
        if !self.prob_hists.is_empty() && self.prob_hists.len() != self.models {
            return Err(format_err("histograms per model"));
        }
        for h in &self.prob_hists {
            if [&h.rows, &h.positives, &h.scores]
                .iter()
                .any(|v| v.len() != PROB_BUCKETS)
            {
                return Err(format_err("histogram length"));
            }
        }
        if self.queries.windows(2).any(|w| w[0] >= w[1])
            || (!self.queries.is_empty() && self.shape.family != crate::metrics::Family::Ranking)
        {
            return Err(format_err("query keys"));
        }
        if self.dropped > self.rows {
            return Err(format_err("more rows dropped than read"));
        }
        let covered = self.ranges.iter().try_fold(0u64, |acc, (a, b)| {
            (a < b).then(|| acc.checked_add(b - a)).flatten()
        });
        let sorted = self.ranges.windows(2).all(|w| w[0] <= w[1]);
        let disjoint = self.ranges.windows(2).all(|w| w[0].1 <= w[1].0);
        if covered != Some(self.rows) || !sorted || (self.position_keys && !disjoint) {
            return Err(format_err("row ranges"));
        }
        if let Some(s) = self.weight_scale {
            if !(-1100..=1100).contains(&s.exp) {
                return Err(format_err("weight scale"));
            }
        }
        Ok(())
    }

    /// Rows of `self` and `o` (the same spec), by slice value, into `self`; `o` comes after
    /// `self` in the canonical order (floating-point sums are added in that order). The kept
    /// rows are left as they are: they merge all at once (`runs::merge_sorted`), with the maps
    /// of `o`'s slice ids into `self`'s that this returns (one per slice spec).
    pub fn absorb(&mut self, o: &PartialState) -> Result<Vec<Vec<u32>>> {
        if self.models != o.models
            || self.shape != o.shape
            || self.sketch_runs != o.sketch_runs
            || self.position_keys != o.position_keys
            || self.rank.len() != o.rank.len()
            || self.sketches.len() != o.sketches.len()
            || self.prob_hists.len() != o.prob_hists.len()
        {
            return Err(mismatch(
                "the partial states were accumulated for different specs",
            ));
        }
        let weight_scale = match (self.weight_scale, o.weight_scale) {
            (Some(a), Some(b)) if a.exp != b.exp => {
                return Err(mismatch(format!(
                    "the shards' weights lie too far apart to be summed together exactly (the \
                     largest weights seen first were {:?} and {:?}: more than 2^32 apart); \
                     rescale the weights",
                    a.reference, b.reference
                )))
            }
            (a, b) => a.or(b),
        };
        let queries = crate::ranking::merge_queries(&self.queries, &o.queries)?;
        let maps = self.slicer.absorb(&o.slicer)?;
        let n_ids = self.n_ids();
        let per_model = n_ids.len();
        let all_ids: Vec<usize> = (0..self.models)
            .flat_map(|_| n_ids.iter().copied())
            .collect();
        self.total.resize(&all_ids, self.shape);
        let overall = [0u32];
        let map_of = |k: usize| -> &[u32] {
            if k == 0 {
                &overall
            } else {
                &maps[k - 1]
            }
        };
        self.total
            .specs
            .par_iter_mut()
            .zip(&o.total.specs)
            .enumerate()
            .for_each(|(i, (a, b))| a.add_mapped(b, map_of(i % per_model)));
        // (Sketches fold in with slack: `merge` compresses them all at the end.)
        let (budget, slack) = (
            self.shape.sketch_budget(self.sketch_runs),
            self.shape.sketch_slack(),
        );
        let per_slice = self.shape.sketches_per_slice();
        for (mine, theirs) in self.sketches.iter_mut().zip(&o.sketches) {
            for (k, (a, b)) in mine.iter_mut().zip(theirs).enumerate() {
                a.resize_with(n_ids[k] * per_slice, RunSketch::default);
                let map = map_of(k);
                for (j, sk) in b.iter().enumerate() {
                    let t = map[j / per_slice] as usize * per_slice + j % per_slice;
                    fold_sketch(&mut a[t], sk.clone(), budget, slack);
                }
            }
        }
        for (a, b) in self.prob_hists.iter_mut().zip(&o.prob_hists) {
            a.merge(b);
        }
        self.weight_scale = weight_scale;
        self.rows = self
            .rows
            .checked_add(o.rows)
            .ok_or_else(|| mismatch("more than 2^64 rows in all"))?;
        self.dropped += o.dropped;
        self.ranges = join_ranges(&self.ranges, &o.ranges);
        self.queries = queries;
        self.content_hash = match (self.content_hash, o.content_hash) {
            (Some(a), Some(b)) => Some(a.wrapping_add(b)),
            _ => None,
        };
        Ok(maps)
    }

    /// A copy that keeps no batches of the caller (what merging and serializing work on).
    pub fn detached_clone(&self) -> PartialState {
        let mut out = self.clone_without_rows();
        out.rank = self.rank.clone();
        out
    }

    /// [`PartialState::detached_clone`] with empty kept rows (one empty set per model).
    pub fn clone_without_rows(&self) -> PartialState {
        PartialState {
            spec_json: self.spec_json.clone(),
            slicer: self.slicer.clone(),
            models: self.models,
            shape: self.shape,
            total: self.total.clone(),
            rank: self
                .rank
                .iter()
                .map(|r| RankRows::with_specs(r.ids.len()))
                .collect(),
            sketches: self.sketches.clone(),
            sketch_runs: self.sketch_runs,
            prob_hists: self.prob_hists.clone(),
            weight_scale: self.weight_scale,
            rows: self.rows,
            dropped: self.dropped,
            ranges: self.ranges.clone(),
            position_keys: self.position_keys,
            replay: None,
            queries: self.queries.clone(),
            content_hash: self.content_hash,
        }
    }
}

/// The row ranges of two states together: sorted, touching ranges joined, overlapping ones
/// kept (their lengths still add up to the rows).
fn join_ranges(a: &[(u64, u64)], b: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut all: Vec<(u64, u64)> = a.iter().chain(b).copied().collect();
    all.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(all.len());
    for (s, e) in all {
        match out.last_mut() {
            Some(last) if last.1 == s => last.1 = e,
            _ => out.push((s, e)),
        }
    }
    out
}

impl SliceStates {
    /// Adds `o`'s slice `j` into slice `map[j]` of `self` (already sized for every target).
    pub fn add_mapped(&mut self, o: &SliceStates, map: &[u32]) {
        let n = o.counts.len();
        if n == 0 {
            return;
        }
        let identity = map.iter().enumerate().all(|(j, t)| j == *t as usize);
        for (j, c) in o.counts.iter().enumerate() {
            self.counts[map[j] as usize].merge(c);
        }
        self.merge_family(o, Some(map));
        for (j, m) in o.moments.iter().enumerate() {
            self.moments[map[j] as usize].merge(m);
        }
        for (a, b) in [
            (&mut self.hist, &o.hist),
            (&mut self.reps, &o.reps),
            (&mut self.calib, &o.calib),
            (&mut self.calib_reps, &o.calib_reps),
            (&mut self.grid, &o.grid),
            (&mut self.logit, &o.logit),
        ] {
            let each = b.len() / n;
            if each == 0 {
                continue;
            }
            if identity {
                for (x, y) in a.iter_mut().zip(b) {
                    *x += y;
                }
                continue;
            }
            for (j, block) in b.chunks_exact(each).enumerate() {
                let t = map[j] as usize;
                for (x, y) in a[t * each..(t + 1) * each].iter_mut().zip(block) {
                    *x += y;
                }
            }
        }
    }
}

/// Moves kept rows `..cut` of `rows` into `sketches` (`[spec][id]`, the overall slice first):
/// their runs per slice, merged into what is there and compressed to `budget` runs.
/// `new`'s runs into `old`, compressed to `budget` once it holds more than `slack` times as
/// many.
fn fold_sketch(old: &mut RunSketch, new: RunSketch, budget: usize, slack: usize) {
    if old.is_empty() {
        *old = new;
    } else if !new.is_empty() {
        let mut merged = old.merge(&new);
        if merged.len() > budget * slack {
            merged.compress(budget);
        }
        *old = merged;
    }
}

/// Every sketch of `sketches` (`[model][spec][id]`) compressed to its budget (see
/// `StateShape::sketch_slack`): what a pass and a merge end with.
pub fn compress_sketches(sketches: &mut [Vec<Vec<RunSketch>>], shape: &StateShape, runs: usize) {
    let budget = shape.sketch_budget(runs);
    for per_id in sketches.iter_mut().flatten() {
        per_id
            .par_iter_mut()
            .filter(|s| s.len() > budget)
            .for_each(|s| s.compress(budget));
    }
}

/// The sketch of each kept entry of a multiclass job (K entries a row, in class order, the
/// row's class labelled 1; `ids`: the row's slice in one spec, None for the overall slice):
/// one-vs-rest, the entry of class `c` goes to sketch `id * K + c`; with the one-vs-one pairs,
/// to sketch `(id * K + c) * K + y`, `y` the row's class (see `StateShape::sketches_per_slice`;
/// `check_state_size` keeps these indices within u32).
fn multiclass_sketch_keys(labels: &[u8], ids: Option<&[u32]>, k: usize, pairs: bool) -> Vec<u32> {
    let per_slice = if pairs { k * k } else { k };
    let mut keys = vec![0u32; labels.len()];
    for (r, (lab, out)) in labels
        .chunks_exact(k)
        .zip(keys.chunks_exact_mut(k))
        .enumerate()
    {
        let base = ids.map_or(0, |v| v[r * k] as usize) * per_slice;
        let y = lab.iter().position(|l| *l != 0).unwrap_or(0);
        for (c, o) in out.iter_mut().enumerate() {
            *o = (base + if pairs { c * k + y } else { c }) as u32;
        }
    }
    keys
}

pub fn flush_sketches(
    sketches: &mut [Vec<RunSketch>],
    rows: &mut RankRows,
    cut: usize,
    n_ids: &[usize],
    budget: usize,
    shape: &StateShape,
) {
    if cut == 0 {
        return;
    }
    // (Each sketch's own budget, and how far over it a sketch may grow until the pass ends:
    // see `compress_sketches`.)
    let (budget, slack) = (shape.sketch_budget(budget), shape.sketch_slack());
    let (scores, labels) = (&rows.scores[..cut], &rows.labels[..cut]);
    let w = (!rows.weights.is_empty()).then(|| &rows.weights[..cut]);
    let multiclass = shape.family == crate::metrics::Family::Multiclass;
    let per_slice = shape.sketches_per_slice();
    // (A multiclass pair sketch takes every entry as a positive.)
    let ones = (multiclass && shape.auc_pairs).then(|| vec![1u8; cut]);
    let fresh: Vec<Vec<RunSketch>> = (0..n_ids.len())
        .into_par_iter()
        .map(|k| {
            let mut sk = if multiclass {
                let ids = (k > 0).then(|| &rows.ids[k - 1][..cut]);
                let keys = multiclass_sketch_keys(labels, ids, shape.classes, shape.auc_pairs);
                let labels = ones.as_deref().unwrap_or(labels);
                RunSketch::from_rows_by_id(scores, labels, w, &keys, n_ids[k] * per_slice)
            } else if k == 0 {
                vec![RunSketch::from_rows(scores, labels, w)]
            } else {
                RunSketch::from_rows_by_id(scores, labels, w, &rows.ids[k - 1][..cut], n_ids[k])
            };
            for s in sk.iter_mut().filter(|s| s.len() > budget * slack) {
                s.compress(budget);
            }
            sk
        })
        .collect();
    for (per_id, new) in sketches.iter_mut().zip(fresh) {
        per_id.resize_with(new.len().max(per_id.len()), RunSketch::default);
        per_id
            .par_iter_mut()
            .zip(new)
            .for_each(|(old, new)| fold_sketch(old, new, budget, slack));
    }
    rows.scores.drain(..cut);
    rows.labels.drain(..cut);
    if !rows.weights.is_empty() {
        rows.weights.drain(..cut);
    }
    if !rows.row_keys.is_empty() {
        rows.row_keys.drain(..cut);
    }
    for ids in rows.ids.iter_mut() {
        ids.drain(..cut);
    }
}
