//! Run sketches: a bounded-size summary of one slice's `(score, label, weight)` rows from which
//! ROC-AUC and average precision follow with a guaranteed error bound.
//!
//! # The idea
//!
//! Exact ROC-AUC only needs, for every distinct score, the total negative and positive weight
//! there: the rows sorted by score collapse into *runs*. A [`RunSketch`] is that list of runs,
//! ascending in score, each covering a score interval `[lo, hi]` with its negative weight
//! `neg` and positive weight `pos`. Built from rows ([`RunSketch::from_rows`]) every run is
//! one distinct score (`lo == hi`, an *exact* run) and the sketch is lossless.
//!
//! To bound memory, [`RunSketch::compress`] merges adjacent runs until at most a budget of
//! them remain. The engine then evaluates the sketch as if each run were one tie group
//! ([`RunSketch::to_hist`] feeds `rank_sums_binned`). A (positive, negative) pair that lies in
//! one merged run but whose two scores differ has an unknown order: the tie-group evaluation
//! counts it 1/2 where the truth is 0 or 1. Every run therefore carries `unc`, an upper bound
//! on the weight (`w_pos * w_neg`, summed) of such pairs inside it (exact when the run was
//! made by `compress` from disjoint runs; conservative when [`RunSketch::merge`] had to fuse
//! overlapping runs of two sketches), and
//!
//! ```text
//! |AUC(sketch) - AUC(exact)| <= sum(unc) / (2 P N)        (P, N: total positive, negative weight)
//! ```
//!
//! ([`RunSketch::auc_error_bound`]); [`RunSketch::ap_error_bound`] gives the analogous bound
//! for average precision.
//!
//! # Keeping the bound small
//!
//! A merged run with positive weight `p` and negative weight `n` has `unc <= p n`, so with
//! the *normalised mass* `m = p/P + n/N` of the run, `unc / (P N) <= (p/P)(n/N) <= m^2 / 4`.
//! The masses of all runs sum to 2, so runs of mass at most `t` give
//! `sum(unc) / (2 P N) <= sum(m^2) / 8 <= t / 4`: `compress` picks the smallest mass cap `t`
//! for which the runs fit the budget `K`, which for continuous scores is a few `1/K`
//! (measured bounds: [`DEFAULT_MAX_RUNS`]). Single runs heavier than `t` (a heavy tie)
//! stay exact: they cost nothing.
//!
//! # Why the buckets are dyadic cells
//!
//! Runs of two sketches whose intervals overlap can only be fused (nothing says how the mass
//! of a merged run spreads inside its interval), and fusing is transitive. Buckets cut at
//! arbitrary places (say greedily at equal mass) in two shards of the same data interleave,
//! so merging compressed shards would chain runs across the interleaved cuts, for continuous
//! scores into a few huge runs, and the bound would become useless. `compress` instead cuts the ordered 64-bit key space of the scores into dyadic
//! cells (it splits a cell in halves while the cell holds more than one run and more than
//! `t` of mass): two dyadic cells are either nested or disjoint, so fusing runs of sketches
//! compressed this way never reaches past the larger of the cells involved, and compressed
//! shards merge into a sketch about as fine as either (then `compress` it again).
//!
//! Scores are keyed by their IEEE bits mapped to an order-preserving `u64` (`-0.0` is
//! normalised to `0.0` first, so both are the same score); all sorting is deterministic.

use crate::error::{AssayError, Result};

/// The default run budget (the `K` of [`RunSketch::compress`]): 32768 runs, 1.25 MiB of
/// sketch per slice (five `f64` columns).
///
/// The AUC bound is at most `t/4` for the mass cap `t` (module docs); dyadic buckets of
/// continuous scores have masses spread between about `t/2` and `t`, so `K` buckets need a
/// cap of a few `1/K` and the bound comes out at about `1/(3K)` compressing all rows at once
/// (1.1e-5 here). Compressing 16 shards separately and merging them costs a factor 2 to 4
/// (runs of neighbouring shards fuse), most at a low positive rate, where every positive
/// outweighs the cap and stays a run of its own that the other shards' negative runs
/// straddle. Measured on 10M continuous scores (AUC 0.755) in 16 compressed shards, merged
/// and compressed: bound 4.3e-5 at 1% positives, 2.5e-5 at 3%, 2.1e-5 at 10%, 1.7e-5 at
/// 50% (actual errors 1e-7 or less), all well below the 1e-4 target; 16384 runs would
/// leave too little margin at 1%. The AP bound there is 1.2e-4 to 2.7e-4 (actual errors
/// 1e-5 to 6e-5): AP is sensitive at the top of the ranking, where precision moves fast.
pub const DEFAULT_MAX_RUNS: usize = 32768;

/// The smallest run budget the engine accepts.
pub const MIN_MAX_RUNS: usize = 16;

/// The largest run budget the engine accepts (10^6 runs, 40 MB of sketch per slice).
pub const MAX_MAX_RUNS: usize = 1_000_000;

/// One run: the rows whose scores lie in `[lo, hi]`, with their total negative and positive
/// weight, and `unc`, an upper bound on the weight of (positive, negative) pairs inside the
/// run whose scores differ (0 for an exact run, `lo == hi`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Run {
    /// Lowest score in the run.
    pub lo: f64,
    /// Highest score in the run.
    pub hi: f64,
    /// Total negative weight.
    pub neg: f64,
    /// Total positive weight.
    pub pos: f64,
    /// Upper bound on the weight of (positive, negative) pairs with different scores.
    pub unc: f64,
}

/// A slice's rows summarised as runs.
///
/// Invariants (checked by [`RunSketch::from_columns`], kept by every method): runs ascending
/// and non-overlapping (`runs[i].hi < runs[i + 1].lo`), `lo <= hi`, every field finite,
/// `neg`, `pos`, `unc >= 0`, and a run with `lo == hi` has `unc == 0` (exact ties are not
/// uncertain). `0.0` is stored for a zero score, never `-0.0`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunSketch {
    /// The runs, ascending in score.
    pub runs: Vec<Run>,
}

const SIGN: u64 = 1 << 63;

/// Order-preserving key of a finite score (`-0.0` and `0.0` get the same key).
#[inline]
fn key(s: f64) -> u64 {
    let b = (s + 0.0).to_bits();
    if b & SIGN != 0 {
        !b
    } else {
        b | SIGN
    }
}

/// The score of a key made by [`key`].
#[inline]
fn unkey(k: u64) -> f64 {
    f64::from_bits(if k & SIGN != 0 { k & !SIGN } else { !k })
}

/// One usable row as a sort entry: (score key, weight bits with the label in the sign bit).
/// Rows with a non-finite score or a weight that is not finite and positive give `None`.
#[inline]
fn entry(score: f64, label: u8, weight: f64) -> Option<(u64, u64)> {
    if score.is_finite() && weight > 0.0 && weight.is_finite() {
        Some((key(score), weight.to_bits() | (u64::from(label != 0) << 63)))
    } else {
        None
    }
}

/// Collapses sorted entries into exact runs.
fn collapse(entries: &[(u64, u64)]) -> RunSketch {
    let mut runs: Vec<Run> = Vec::new();
    let mut i = 0;
    while i < entries.len() {
        let k = entries[i].0;
        let (mut neg, mut pos) = (0.0, 0.0);
        while i < entries.len() && entries[i].0 == k {
            let b = entries[i].1;
            let w = f64::from_bits(b & !SIGN);
            if b & SIGN != 0 {
                pos += w;
            } else {
                neg += w;
            }
            i += 1;
        }
        let s = unkey(k);
        runs.push(Run {
            lo: s,
            hi: s,
            neg,
            pos,
            unc: 0.0,
        });
    }
    RunSketch { runs }
}

/// Fuses `next` (which starts at or after `cur.lo`) into `cur`: every cross pair may differ
/// in score, so all of them become uncertain.
#[inline]
fn absorb(cur: &mut Run, next: &Run) {
    cur.unc += next.unc + cur.pos * next.neg + cur.neg * next.pos;
    cur.pos += next.pos;
    cur.neg += next.neg;
    if next.hi > cur.hi {
        cur.hi = next.hi;
    }
}

/// The per-run masses that `compress` equalises.
fn masses(runs: &[Run]) -> Vec<f64> {
    let (n, p) = runs
        .iter()
        .fold((0.0, 0.0), |(n, p), r| (n + r.neg, p + r.pos));
    if p > 0.0 && n > 0.0 {
        runs.iter().map(|r| r.pos / p + r.neg / n).collect()
    } else if p + n > 0.0 {
        runs.iter().map(|r| (r.pos + r.neg) / (p + n)).collect()
    } else {
        vec![1.0; runs.len()]
    }
}

/// The dyadic buckets of `compress` under mass cap `t`, as ranges `[start, end)` of runs,
/// ascending; `None` once more than `limit` buckets appear. `klo`/`khi`: the run keys,
/// `pre`: prefix sums of the masses.
fn plan(
    klo: &[u64],
    khi: &[u64],
    pre: &[f64],
    t: f64,
    limit: usize,
) -> Option<Vec<(usize, usize)>> {
    let mut out = Vec::new();
    let mut stack = vec![(0usize, klo.len())];
    while let Some((s, e)) = stack.pop() {
        let x = klo[s] ^ khi[e - 1];
        let mut split = None;
        if e - s > 1 && pre[e] - pre[s] > t && x != 0 {
            // All runs of [s, e) share the key bits above the highest bit where the extreme
            // keys differ: split that cell at its midpoint (empty halves cost nothing).
            let b = 63 - x.leading_zeros();
            let mid = (khi[e - 1] >> b) << b;
            let l = s + khi[s..e].partition_point(|&k| k < mid);
            // At most one run straddles the midpoint (runs do not overlap): it stays whole.
            let r = if l < e && klo[l] < mid { l + 1 } else { l };
            // (Always true for a valid sketch; guards against looping on an invalid one.)
            if l < e && r > s {
                split = Some((l, r));
            }
        }
        match split {
            Some((l, r)) => {
                if r < e {
                    stack.push((r, e));
                }
                if r > l {
                    stack.push((l, r));
                }
                if l > s {
                    stack.push((s, l));
                }
            }
            None => {
                if out.len() == limit {
                    return None;
                }
                out.push((s, e));
            }
        }
    }
    Some(out)
}

impl RunSketch {
    /// The exact sketch of rows in any order: one run per distinct score (`-0.0` counts as
    /// `0.0`). `weights: None` weighs every row 1; a nonzero label is positive.
    ///
    /// Rows that cannot affect AUC or AP create no run: weight 0. Rows the engine rejects
    /// before this point (NaN or infinite score, negative or non-finite weight) are skipped
    /// too, so the result always satisfies the sketch invariants.
    ///
    /// # Panics
    /// If `labels` (or `weights`) is not as long as `scores`.
    pub fn from_rows(scores: &[f64], labels: &[u8], weights: Option<&[f64]>) -> RunSketch {
        assert_eq!(
            scores.len(),
            labels.len(),
            "scores and labels differ in length"
        );
        let mut entries: Vec<(u64, u64)> = match weights {
            None => scores
                .iter()
                .zip(labels)
                .filter_map(|(&s, &l)| entry(s, l, 1.0))
                .collect(),
            Some(w) => {
                assert_eq!(scores.len(), w.len(), "scores and weights differ in length");
                scores
                    .iter()
                    .zip(labels)
                    .zip(w)
                    .filter_map(|((&s, &l), &w)| entry(s, l, w))
                    .collect()
            }
        };
        // Ties sorted by weight too: the sums do not depend on the input order.
        entries.sort_unstable();
        collapse(&entries)
    }

    /// The exact sketch of each slice in one pass: `ids[i] < n_ids` is the slice of row `i`;
    /// returns `n_ids` sketches (empty for slices without rows). Same row rules as
    /// [`RunSketch::from_rows`].
    ///
    /// The rows are bucketed by id with a counting sort into one buffer of 16-byte entries,
    /// then each slice's entries are sorted by score key: no per-row allocation.
    ///
    /// # Panics
    /// If `labels`, `weights` or `ids` is not as long as `scores`, or an id is `>= n_ids`.
    pub fn from_rows_by_id(
        scores: &[f64],
        labels: &[u8],
        weights: Option<&[f64]>,
        ids: &[u32],
        n_ids: usize,
    ) -> Vec<RunSketch> {
        let n = scores.len();
        assert_eq!(n, labels.len(), "scores and labels differ in length");
        assert_eq!(n, ids.len(), "scores and ids differ in length");
        if let Some(w) = weights {
            assert_eq!(n, w.len(), "scores and weights differ in length");
        }
        let row = |i: usize| entry(scores[i], labels[i], weights.map_or(1.0, |w| w[i]));
        let mut start = vec![0usize; n_ids + 1];
        for (i, &id) in ids.iter().enumerate() {
            assert!((id as usize) < n_ids, "slice id {id} out of range {n_ids}");
            if row(i).is_some() {
                start[id as usize + 1] += 1;
            }
        }
        for j in 0..n_ids {
            start[j + 1] += start[j];
        }
        let mut fill = start.clone();
        let mut entries = vec![(0u64, 0u64); start[n_ids]];
        for (i, &id) in ids.iter().enumerate() {
            if let Some(e) = row(i) {
                let f = &mut fill[id as usize];
                entries[*f] = e;
                *f += 1;
            }
        }
        (0..n_ids)
            .map(|j| {
                let part = &mut entries[start[j]..start[j + 1]];
                part.sort_unstable();
                collapse(part)
            })
            .collect()
    }

    /// The sketch of the union of the two sketches' rows, in one linear pass.
    ///
    /// Exact runs at the same score add up exactly (and stay exact). Runs whose intervals
    /// intersect or touch are fused into one run covering all of them, transitively (a wide
    /// run of one side can swallow several runs of the other and chain on), with
    /// `unc = sum of their unc + weight of all their cross pairs` (a conservative bound: how
    /// scores interleave inside overlapping runs is unknown). Sketches made by
    /// [`RunSketch::compress`] have dyadic runs, which limits such fusion (module docs).
    pub fn merge(&self, other: &RunSketch) -> RunSketch {
        let (a, b) = (&self.runs, &other.runs);
        let mut out: Vec<Run> = Vec::with_capacity(a.len() + b.len());
        let (mut i, mut j) = (0, 0);
        let mut cur: Option<Run> = None;
        loop {
            let next = match (a.get(i), b.get(j)) {
                (Some(x), Some(y)) => {
                    if y.lo < x.lo {
                        j += 1;
                        *y
                    } else if x.lo < y.lo || x.lo < x.hi || y.lo < y.hi {
                        i += 1;
                        *x
                    } else {
                        // Both exact at the same score (neither side has another run there).
                        i += 1;
                        j += 1;
                        Run {
                            neg: x.neg + y.neg,
                            pos: x.pos + y.pos,
                            ..*x
                        }
                    }
                }
                (Some(x), None) => {
                    i += 1;
                    *x
                }
                (None, Some(y)) => {
                    j += 1;
                    *y
                }
                (None, None) => break,
            };
            match cur.as_mut() {
                Some(c) if next.lo <= c.hi => absorb(c, &next),
                _ => {
                    if let Some(c) = cur.replace(next) {
                        out.push(c);
                    }
                }
            }
        }
        out.extend(cur);
        RunSketch { runs: out }
    }

    /// Merges adjacent runs, deterministically, until at most `budget` remain (a budget of 0
    /// counts as 1); nothing happens when the sketch already fits.
    ///
    /// The buckets are dyadic cells of the score-key space: a cell is split in halves while
    /// it holds more than one run and more than `t` of normalised mass `pos/P + neg/N` (by
    /// plain weight when one class is absent, by run count when all weight is 0), with the
    /// smallest cap `t` (found by bisection) that fits the budget. A run already straddling a
    /// cell's midpoint stays whole. See the module docs for why cells and not greedy cuts.
    /// Merging runs `a < b` adds `a.pos * b.neg + a.neg * b.pos` to the uncertainty.
    pub fn compress(&mut self, budget: usize) {
        let budget = budget.max(1);
        let n = self.runs.len();
        if n <= budget {
            return;
        }
        let klo: Vec<u64> = self.runs.iter().map(|r| key(r.lo)).collect();
        let khi: Vec<u64> = self.runs.iter().map(|r| key(r.hi)).collect();
        let mut pre = Vec::with_capacity(n + 1);
        pre.push(0.0);
        let mut acc = 0.0;
        for m in masses(&self.runs) {
            acc += m;
            pre.push(acc);
        }
        let fits = |t: f64| plan(&klo, &khi, &pre, t, budget);
        // The smallest cap that fits, to within 0.3%: bracket it between `lo` (too small)
        // and `hi` (fits), then bisect geometrically. The cap `acc` always fits (the root
        // cell holds all the mass: one bucket), so the search ends.
        let buckets = if let Some(p) = fits(0.0) {
            p
        } else {
            let mut hi = acc / budget as f64;
            let mut lo;
            let mut best;
            if let Some(p) = fits(hi) {
                // Heavy ties can leave room for a finer cap than the equal-mass guess.
                best = p;
                lo = hi / 2.0;
                for _ in 0..64 {
                    match fits(lo) {
                        Some(p) => {
                            (hi, best) = (lo, p);
                            lo /= 2.0;
                        }
                        None => break,
                    }
                }
            } else {
                loop {
                    lo = hi;
                    hi = (2.0 * hi).min(acc);
                    if let Some(p) = fits(hi) {
                        best = p;
                        break;
                    }
                }
            }
            for _ in 0..8 {
                let mid = (lo * hi).sqrt();
                match fits(mid) {
                    Some(p) => (hi, best) = (mid, p),
                    None => lo = mid,
                }
            }
            best
        };
        let runs = &self.runs;
        self.runs = buckets
            .iter()
            .map(|&(s, e)| {
                let mut r = runs[s];
                for next in &runs[s + 1..e] {
                    absorb(&mut r, next);
                }
                r
            })
            .collect();
    }

    /// Total (negative, positive) weight.
    pub fn totals(&self) -> (f64, f64) {
        self.runs
            .iter()
            .fold((0.0, 0.0), |(n, p), r| (n + r.neg, p + r.pos))
    }

    /// The same runs with positive and negative weight swapped: the rows of a one-label
    /// sketch (every row positive) as the negatives of a pair (see `multiclass::sketch_aucs`).
    /// A run's uncertain pairs are symmetric in the two labels, so `unc` stays.
    pub fn as_negatives(&self) -> RunSketch {
        RunSketch {
            runs: self
                .runs
                .iter()
                .map(|r| Run {
                    neg: r.pos,
                    pos: r.neg,
                    ..*r
                })
                .collect(),
        }
    }

    /// The Mann-Whitney numerator of the runs taken as tie groups (the weight of
    /// (positive, negative) pairs where the positive scores higher, plus half of those in one
    /// run), and a guaranteed bound on its error, `sum(unc) / 2`: [`RunSketch::auc_error_bound`]
    /// before the division by `P N`.
    pub fn mann_whitney(&self) -> (f64, f64) {
        let (mut above, mut x, mut unc) = (0.0, 0.0, 0.0);
        for r in self.runs.iter().rev() {
            x += r.neg * (above + 0.5 * r.pos);
            above += r.pos;
            unc += r.unc;
        }
        (x, unc / 2.0)
    }

    /// The histogram `rank_sums_binned` takes: `[neg_0, pos_0, neg_1, pos_1, ...]`, runs
    /// ascending in score, each run one tie group.
    pub fn to_hist(&self) -> Vec<f64> {
        self.runs.iter().flat_map(|r| [r.neg, r.pos]).collect()
    }

    /// A guaranteed bound on `|AUC(runs as tie groups) - AUC(exact)|`: `sum(unc) / (2 P N)`
    /// (each uncertain pair counts 1/2 where the truth is 0 or 1); 0 when P or N is 0.
    pub fn auc_error_bound(&self) -> f64 {
        let (n, p) = self.totals();
        if n > 0.0 && p > 0.0 {
            let unc: f64 = self.runs.iter().map(|r| r.unc).sum();
            // Divide step by step: P N can overflow where the quotient does not.
            unc / p / n / 2.0
        } else {
            0.0
        }
    }

    /// A guaranteed bound on `|AP(runs as thresholds) - AP(exact)|`, AP as scikit-learn's
    /// `average_precision_score` (sum over distinct thresholds, descending, of recall step
    /// times precision there); 0 when P is 0.
    ///
    /// Derivation: thresholds at run boundaries see the same true and false positives in
    /// the sketch as in the data, so only the positives inside a merged run `b` (`lo < hi`)
    /// can be misjudged. With `tp0, fp0` the weight of strictly higher runs and
    /// `tp1 = tp0 + pos_b`, `fp1 = fp0 + neg_b`, every threshold inside `b` has
    /// `tp in [tp0, tp1]` and `fp in [fp0, fp1]`, so its precision `tp / (tp + fp)` (rising in
    /// `tp`, falling in `fp`) lies in `[tp0 / (tp0 + fp1), tp1 / (tp1 + fp0)]` (0 over 0 read
    /// as 0), and so does the sketch's `tp1 / (tp1 + fp1)`. Each positive of `b` is off by at
    /// most the width of that range: the bound is `sum_b (pos_b / P) * width_b`. Exact runs
    /// contribute 0 (their threshold is a true one).
    pub fn ap_error_bound(&self) -> f64 {
        let (_, p_tot) = self.totals();
        if p_tot <= 0.0 {
            return 0.0;
        }
        let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
        let (mut tp, mut fp) = (0.0, 0.0);
        let mut bound = 0.0;
        for r in self.runs.iter().rev() {
            let (tp1, fp1) = (tp + r.pos, fp + r.neg);
            if r.pos > 0.0 && (r.lo < r.hi || r.unc > 0.0) {
                let width = ratio(tp1, tp1 + fp) - ratio(tp, tp + fp1);
                bound += r.pos / p_tot * width.max(0.0);
            }
            tp = tp1;
            fp = fp1;
        }
        bound
    }

    /// The sketch as columns `[lo, hi, neg, pos, unc]`, for serialisation.
    pub fn to_columns(&self) -> [Vec<f64>; 5] {
        let col = |f: fn(&Run) -> f64| self.runs.iter().map(f).collect::<Vec<f64>>();
        [
            col(|r| r.lo),
            col(|r| r.hi),
            col(|r| r.neg),
            col(|r| r.pos),
            col(|r| r.unc),
        ]
    }

    /// A sketch from columns made by [`RunSketch::to_columns`], fully validated: equal
    /// lengths, every value finite, `lo <= hi`, runs ascending and non-overlapping
    /// (`hi < next lo`), `neg`, `pos`, `unc >= 0`, `unc == 0` on exact runs (`lo == hi`).
    /// `-0.0` scores are read as `0.0`.
    ///
    /// # Errors
    /// [`AssayError::InvalidArgument`] naming the first violation.
    pub fn from_columns(
        lo: &[f64],
        hi: &[f64],
        neg: &[f64],
        pos: &[f64],
        unc: &[f64],
    ) -> Result<RunSketch> {
        let bad = |msg: String| AssayError::InvalidArgument(format!("invalid run sketch: {msg}"));
        let n = lo.len();
        for (name, len) in [
            ("hi", hi.len()),
            ("neg", neg.len()),
            ("pos", pos.len()),
            ("unc", unc.len()),
        ] {
            if len != n {
                return Err(bad(format!(
                    "column {name} has {len} values but lo has {n}"
                )));
            }
        }
        let mut runs: Vec<Run> = Vec::with_capacity(n);
        let rows = lo.iter().zip(hi).zip(neg).zip(pos).zip(unc);
        for (i, ((((&l, &h), &ng), &ps), &u)) in rows.enumerate() {
            for (name, v) in [("lo", l), ("hi", h), ("neg", ng), ("pos", ps), ("unc", u)] {
                if !v.is_finite() {
                    return Err(bad(format!("run {i}: {name} is {v}, not finite")));
                }
            }
            for (name, v) in [("neg", ng), ("pos", ps), ("unc", u)] {
                if v < 0.0 {
                    return Err(bad(format!("run {i}: {name} is negative ({v})")));
                }
            }
            if l > h {
                return Err(bad(format!("run {i}: lo {l} is above hi {h}")));
            }
            if l == h && u != 0.0 {
                return Err(bad(format!(
                    "run {i}: exact run (lo == hi == {l}) has nonzero unc {u}"
                )));
            }
            if let Some(prev) = runs.last() {
                if prev.hi >= l {
                    return Err(bad(format!(
                        "run {i} (lo {l}) does not start above run {} (hi {}): runs must be \
                         ascending and non-overlapping",
                        i - 1,
                        prev.hi
                    )));
                }
            }
            runs.push(Run {
                lo: l + 0.0,
                hi: h + 0.0,
                neg: ng,
                pos: ps,
                unc: u + 0.0,
            });
        }
        Ok(RunSketch { runs })
    }

    /// Number of runs.
    pub fn len(&self) -> usize {
        self.runs.len()
    }

    /// Whether there are no runs.
    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// xorshift64*: a tiny deterministic generator for the tests.
    struct Rng(u64);

    impl Rng {
        fn new(seed: u64) -> Rng {
            Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
        }
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        /// Uniform in [0, 1).
        fn unit(&mut self) -> f64 {
            (self.next() >> 11) as f64 / (1u64 << 53) as f64
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    struct Rows {
        scores: Vec<f64>,
        labels: Vec<u8>,
        weights: Option<Vec<f64>>,
    }

    impl Rows {
        fn w(&self, i: usize) -> f64 {
            self.weights.as_ref().map_or(1.0, |w| w[i])
        }
        fn sketch(&self) -> RunSketch {
            RunSketch::from_rows(&self.scores, &self.labels, self.weights.as_deref())
        }
        /// The rows whose index satisfies `keep`.
        fn subset(&self, keep: impl Fn(usize) -> bool) -> Rows {
            let idx: Vec<usize> = (0..self.scores.len()).filter(|&i| keep(i)).collect();
            Rows {
                scores: idx.iter().map(|&i| self.scores[i]).collect(),
                labels: idx.iter().map(|&i| self.labels[i]).collect(),
                weights: self
                    .weights
                    .as_ref()
                    .map(|w| idx.iter().map(|&i| w[i]).collect()),
            }
        }
    }

    /// Random rows: `levels` distinct scores (0: continuous), positive rate `p_pos`, weights
    /// (with some zeros) or none. Includes -0.0 and 0.0 among the tied levels.
    fn random_rows(rng: &mut Rng, n: usize, levels: usize, p_pos: f64, weighted: bool) -> Rows {
        let mut rows = Rows {
            scores: Vec::with_capacity(n),
            labels: Vec::with_capacity(n),
            weights: weighted.then(Vec::new),
        };
        for _ in 0..n {
            let pos = rng.unit() < p_pos;
            let s = if levels == 0 {
                rng.unit() * 2.0 - 1.0 + if pos { 0.4 } else { 0.0 }
            } else {
                let l = rng.below(levels) as f64 - (levels / 2) as f64;
                let l = if l == 0.0 && rng.below(2) == 0 {
                    -0.0
                } else {
                    l
                };
                l + if pos && rng.below(3) == 0 { 1.0 } else { 0.0 }
            };
            rows.scores.push(s);
            rows.labels.push(u8::from(pos));
            if let Some(w) = rows.weights.as_mut() {
                w.push(if rng.below(10) == 0 {
                    0.0
                } else {
                    0.1 + 3.0 * rng.unit()
                });
            }
        }
        rows
    }

    /// Weighted Mann-Whitney AUC, ties 1/2; `None` for a single class.
    fn brute_auc(r: &Rows) -> Option<f64> {
        let (mut num, mut p, mut n) = (0.0, 0.0, 0.0);
        for i in 0..r.scores.len() {
            if r.labels[i] == 1 {
                p += r.w(i);
            } else {
                n += r.w(i);
            }
            for j in 0..r.scores.len() {
                if r.labels[i] == 1 && r.labels[j] == 0 {
                    let (a, b) = (r.scores[i], r.scores[j]);
                    let win = if a > b {
                        1.0
                    } else if a == b {
                        0.5
                    } else {
                        0.0
                    };
                    num += win * r.w(i) * r.w(j);
                }
            }
        }
        (p > 0.0 && n > 0.0).then(|| num / (p * n))
    }

    /// Average precision as scikit-learn: distinct thresholds descending, recall step times
    /// precision; `None` without positive weight.
    fn brute_ap(r: &Rows) -> Option<f64> {
        let mut idx: Vec<usize> = (0..r.scores.len()).collect();
        idx.sort_by(|&a, &b| (r.scores[b] + 0.0).total_cmp(&(r.scores[a] + 0.0)));
        let (mut tp, mut fp, mut sum) = (0.0, 0.0, 0.0);
        let mut i = 0;
        while i < idx.len() {
            let s = r.scores[idx[i]];
            let mut gp = 0.0;
            while i < idx.len() && r.scores[idx[i]] == s {
                if r.labels[idx[i]] == 1 {
                    gp += r.w(idx[i]);
                } else {
                    fp += r.w(idx[i]);
                }
                i += 1;
            }
            tp += gp;
            if gp > 0.0 {
                sum += gp * tp / (tp + fp);
            }
        }
        (tp > 0.0).then(|| sum / tp)
    }

    /// AUC of the sketch, runs as tie groups.
    fn sketch_auc(sk: &RunSketch) -> Option<f64> {
        let (n, p) = sk.totals();
        let (mut below, mut num) = (0.0, 0.0);
        for r in &sk.runs {
            num += r.pos * (below + 0.5 * r.neg);
            below += r.neg;
        }
        (p > 0.0 && n > 0.0).then(|| num / p / n)
    }

    /// AP of the sketch, runs as thresholds.
    fn sketch_ap(sk: &RunSketch) -> Option<f64> {
        let (mut tp, mut fp, mut sum) = (0.0, 0.0, 0.0);
        for r in sk.runs.iter().rev() {
            tp += r.pos;
            fp += r.neg;
            if r.pos > 0.0 {
                sum += r.pos * tp / (tp + fp);
            }
        }
        (tp > 0.0).then(|| sum / tp)
    }

    /// The invariants hold (via the validating round trip).
    fn check_valid(sk: &RunSketch) {
        let [lo, hi, neg, pos, unc] = sk.to_columns();
        let back = RunSketch::from_columns(&lo, &hi, &neg, &pos, &unc)
            .unwrap_or_else(|e| panic!("invalid sketch: {e:?}"));
        assert_eq!(&back, sk);
        assert!(sk
            .runs
            .iter()
            .all(|r| r.lo.to_bits() != (-0.0f64).to_bits()));
    }

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol * (1.0 + a.abs().max(b.abs()))
    }

    fn case_params(rng: &mut Rng) -> (usize, f64, bool) {
        let levels = [0, 1, 2, 3, 7, 25, 100][rng.below(7)];
        let p_pos = [0.0, 0.01, 0.1, 0.3, 0.5, 0.9, 1.0][rng.below(7)];
        (levels, p_pos, rng.below(2) == 0)
    }

    #[test]
    fn exact_sketch_matches_brute_force() {
        let mut rng = Rng::new(1);
        for case in 0..400 {
            let n = if case < 5 { case } else { rng.below(150) };
            let (levels, p_pos, weighted) = case_params(&mut rng);
            let rows = random_rows(&mut rng, n, levels, p_pos, weighted);
            let sk = rows.sketch();
            check_valid(&sk);
            assert!(sk.runs.iter().all(|r| r.lo == r.hi && r.unc == 0.0));
            assert!(
                sk.runs.iter().all(|r| r.pos + r.neg > 0.0),
                "zero-weight run"
            );
            match (brute_auc(&rows), sketch_auc(&sk)) {
                (Some(a), Some(b)) => assert!(close(a, b, 1e-12), "case {case}: {a} vs {b}"),
                (None, None) => {}
                other => panic!("case {case}: {other:?}"),
            }
            match (brute_ap(&rows), sketch_ap(&sk)) {
                (Some(a), Some(b)) => assert!(close(a, b, 1e-12), "case {case}: {a} vs {b}"),
                (None, None) => {}
                other => panic!("case {case}: {other:?}"),
            }
            assert_eq!(sk.auc_error_bound(), 0.0);
            assert_eq!(sk.ap_error_bound(), 0.0);
            assert_eq!(sk.to_hist().len(), 2 * sk.len());
        }
        assert!(RunSketch::from_rows(&[], &[], None).is_empty());
    }

    #[test]
    fn signed_zeros_and_skipped_rows() {
        let sk = RunSketch::from_rows(
            &[-0.0, 0.0, 1.0, f64::NAN, 2.0, f64::INFINITY, 3.0],
            &[1, 0, 1, 1, 0, 1, 1],
            Some(&[1.0, 2.0, 0.0, 1.0, -1.0, 1.0, f64::NAN]),
        );
        assert_eq!(sk.len(), 1);
        assert_eq!(sk.runs[0].lo.to_bits(), 0.0f64.to_bits());
        assert_eq!((sk.runs[0].neg, sk.runs[0].pos), (2.0, 1.0));
        let sk = RunSketch::from_rows(&[2.0, -1.0, 2.0], &[0, 7, 1], None);
        assert_eq!(sk.to_hist(), vec![0.0, 1.0, 1.0, 1.0]);
        assert_eq!(sk.totals(), (1.0, 2.0));
    }

    #[test]
    fn by_id_matches_from_rows() {
        let mut rng = Rng::new(2);
        for _ in 0..30 {
            let (levels, p_pos, weighted) = case_params(&mut rng);
            let n = rng.below(300);
            let rows = random_rows(&mut rng, n, levels, p_pos, weighted);
            let n_ids = 1 + rng.below(6);
            let ids: Vec<u32> = (0..rows.scores.len())
                .map(|_| rng.below(n_ids) as u32)
                .collect();
            let all = RunSketch::from_rows_by_id(
                &rows.scores,
                &rows.labels,
                rows.weights.as_deref(),
                &ids,
                n_ids,
            );
            assert_eq!(all.len(), n_ids);
            for (j, sk) in all.iter().enumerate() {
                assert_eq!(sk, &rows.subset(|i| ids[i] as usize == j).sketch());
            }
        }
    }

    /// Exact sketches equal up to rounding of the weight sums.
    fn assert_same_runs(a: &RunSketch, b: &RunSketch) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.runs.iter().zip(&b.runs) {
            assert_eq!((x.lo, x.hi, x.unc), (y.lo, y.hi, y.unc));
            assert!(close(x.neg, y.neg, 1e-12) && close(x.pos, y.pos, 1e-12));
        }
    }

    /// Random split of `rows` into `k` shards.
    fn shards(rng: &mut Rng, rows: &Rows, k: usize) -> Vec<Rows> {
        let part: Vec<usize> = (0..rows.scores.len()).map(|_| rng.below(k)).collect();
        (0..k).map(|j| rows.subset(|i| part[i] == j)).collect()
    }

    /// Merges sketches in a random order and tree shape.
    fn merge_all(rng: &mut Rng, mut v: Vec<RunSketch>) -> RunSketch {
        while v.len() > 1 {
            let a = v.swap_remove(rng.below(v.len()));
            let b = v.swap_remove(rng.below(v.len()));
            v.push(a.merge(&b));
        }
        v.pop().unwrap_or_default()
    }

    #[test]
    fn merge_of_any_split_is_exact() {
        let mut rng = Rng::new(3);
        for _ in 0..200 {
            let (levels, p_pos, weighted) = case_params(&mut rng);
            let n = rng.below(200);
            let rows = random_rows(&mut rng, n, levels, p_pos, weighted);
            let k = 1 + rng.below(6);
            let parts: Vec<RunSketch> = shards(&mut rng, &rows, k)
                .iter()
                .map(Rows::sketch)
                .collect();
            let merged = merge_all(&mut rng, parts);
            check_valid(&merged);
            assert_same_runs(&merged, &rows.sketch());
        }
    }

    #[test]
    fn merge_fuses_overlaps_transitively() {
        let run = |lo, hi, neg, pos, unc| Run {
            lo,
            hi,
            neg,
            pos,
            unc,
        };
        let a = RunSketch {
            runs: vec![run(0.0, 0.0, 1.0, 0.0, 0.0), run(2.0, 4.0, 1.0, 1.0, 1.0)],
        };
        let b = RunSketch {
            runs: vec![
                run(0.0, 0.0, 0.0, 2.0, 0.0),
                run(1.0, 2.0, 1.0, 1.0, 0.5),
                run(3.0, 3.0, 0.0, 1.0, 0.0),
                run(4.0, 5.0, 2.0, 0.0, 0.0),
                run(6.0, 6.0, 1.0, 0.0, 0.0),
            ],
        };
        let m = a.merge(&b);
        // [1,2] touches [2,4] which swallows 3 and touches [4,5]: one run [1,5].
        // unc: 0.5 + 1 + cross (1,1)x(1,1) = 2, then (2,2)x(0,1): 2, then (2,3)x(2,0): 6.
        let want = vec![
            run(0.0, 0.0, 1.0, 2.0, 0.0),
            run(1.0, 5.0, 4.0, 3.0, 11.5),
            run(6.0, 6.0, 1.0, 0.0, 0.0),
        ];
        assert_eq!(m.runs, want);
        assert_eq!(b.merge(&a).runs, want);
        check_valid(&m);
        assert_eq!(m.merge(&RunSketch::default()), m);
        assert_eq!(RunSketch::default().merge(&m), m);
    }

    /// Checks the AUC and AP bounds of a (compressed) sketch of `rows`.
    fn check_bounds(sk: &RunSketch, rows: &Rows, what: &str) {
        check_valid(sk);
        let exact = rows.sketch();
        assert!(close(sk.totals().0, exact.totals().0, 1e-9));
        assert!(close(sk.totals().1, exact.totals().1, 1e-9));
        if let (Some(a), Some(b)) = (sketch_auc(&exact), sketch_auc(sk)) {
            let bound = sk.auc_error_bound();
            assert!(
                (a - b).abs() <= bound + 1e-12,
                "{what}: auc {a} vs {b}, bound {bound}"
            );
            assert!(bound <= 0.5 + 1e-12);
        } else {
            assert_eq!(sk.auc_error_bound(), 0.0);
        }
        if let (Some(a), Some(b)) = (sketch_ap(&exact), sketch_ap(sk)) {
            let bound = sk.ap_error_bound();
            assert!(
                (a - b).abs() <= bound + 1e-12,
                "{what}: ap {a} vs {b}, bound {bound}"
            );
        }
    }

    #[test]
    fn compressed_and_merged_bounds_hold() {
        let mut rng = Rng::new(4);
        for case in 0..300 {
            let (levels, p_pos, weighted) = case_params(&mut rng);
            let n = 1 + rng.below(400);
            let rows = random_rows(&mut rng, n, levels, p_pos, weighted);
            let budget = 1 + rng.below(40);
            let k = 1 + rng.below(5);
            let parts: Vec<RunSketch> = shards(&mut rng, &rows, k)
                .iter()
                .map(|r| {
                    let mut s = r.sketch();
                    // Some shards stay exact, some get compressed harder.
                    match rng.below(3) {
                        0 => {}
                        1 => s.compress(budget),
                        _ => s.compress(1 + rng.below(budget)),
                    }
                    check_bounds(&s, r, "shard");
                    s
                })
                .collect();
            let mut merged = merge_all(&mut rng, parts);
            check_bounds(&merged, &rows, &format!("case {case} merged"));
            merged.compress(budget);
            assert!(merged.len() <= budget);
            check_bounds(&merged, &rows, &format!("case {case} final"));
            // Compressing the whole directly works too.
            let mut whole = rows.sketch();
            whole.compress(budget);
            assert!(whole.len() <= budget);
            check_bounds(&whole, &rows, &format!("case {case} whole"));
        }
    }

    /// The multiclass one-vs-one route: the positives and the negatives in sketches of their
    /// own (every row positive, each compressed alone), merged with the negatives swapped:
    /// the Mann-Whitney numerator within its bound of the brute-force one.
    #[test]
    fn one_label_sketches_pair_up_within_their_bounds() {
        let mut rng = Rng::new(11);
        for case in 0..300 {
            let (levels, p_pos, weighted) = case_params(&mut rng);
            let n = 1 + rng.below(300);
            let rows = random_rows(&mut rng, n, levels, p_pos, weighted);
            let mut one_label = |label: u8| {
                let mut r = rows.subset(|i| rows.labels[i] == label);
                r.labels.iter_mut().for_each(|l| *l = 1);
                let mut s = r.sketch();
                s.compress(1 + rng.below(30));
                s
            };
            let (pos, neg) = (one_label(1), one_label(0));
            assert!(pos
                .runs
                .iter()
                .chain(&neg.runs)
                .all(|r| r.unc == 0.0 && r.neg == 0.0));
            let pair = pos.merge(&neg.as_negatives());
            let (x, err) = pair.mann_whitney();
            let (n_w, p_w) = pair.totals();
            if let Some(auc) = brute_auc(&rows) {
                let want = auc * p_w * n_w;
                assert!(
                    (x - want).abs() <= err + 1e-9 * (1.0 + want),
                    "case {case}: {x} vs {want}, bound {err}"
                );
                // The same as the binary route's bound, before its division by P N.
                assert!((err / p_w / n_w - pair.auc_error_bound()).abs() <= 1e-12);
            }
        }
    }

    #[test]
    fn compress_is_deterministic_and_fits() {
        let mut rng = Rng::new(5);
        for _ in 0..60 {
            let (levels, p_pos, weighted) = case_params(&mut rng);
            let n = rng.below(500);
            let rows = random_rows(&mut rng, n, levels, p_pos, weighted);
            let exact = rows.sketch();
            for budget in [0, 1, 2, 3, 10, 64, 1000] {
                let mut a = exact.clone();
                a.compress(budget);
                let mut b = exact.clone();
                b.compress(budget);
                assert_eq!(a, b);
                assert!(a.len() <= budget.max(1));
                assert!(exact.len() > budget || a == exact);
                let c = a.clone();
                a.compress(budget);
                assert_eq!(a, c, "compressing again to the same budget changes nothing");
                check_bounds(&a, &rows, "budget");
            }
        }
        // All weight zero (runs built by hand): compresses by run count.
        let mut z = RunSketch {
            runs: (0..10)
                .map(|i| Run {
                    lo: i as f64,
                    hi: i as f64,
                    neg: 0.0,
                    pos: 0.0,
                    unc: 0.0,
                })
                .collect(),
        };
        z.compress(3);
        assert!(z.len() <= 3 && !z.is_empty());
        check_valid(&z);
    }

    #[test]
    fn heavy_tie_stays_exact() {
        let mut rng = Rng::new(6);
        let mut rows = random_rows(&mut rng, 4000, 0, 0.3, false);
        for i in 0..3000 {
            rows.scores[i] = 0.25;
        }
        let mut sk = rows.sketch();
        sk.compress(16);
        assert!(sk.runs.iter().any(|r| r.lo == 0.25 && r.hi == 0.25));
        check_bounds(&sk, &rows, "heavy tie");
    }

    /// Continuous scores in compressed shards merge into a sketch about as fine as each
    /// shard (dyadic buckets do not chain), and the bound is about 1/K.
    #[test]
    fn compressed_shards_do_not_collapse() {
        let mut rng = Rng::new(7);
        let rows = random_rows(&mut rng, 40_000, 0, 0.2, true);
        let budget = 256;
        let parts: Vec<RunSketch> = shards(&mut rng, &rows, 8)
            .iter()
            .map(|r| {
                let mut s = r.sketch();
                s.compress(budget);
                s
            })
            .collect();
        let mut merged = merge_all(&mut rng, parts);
        assert!(
            merged.len() >= budget / 2,
            "collapsed to {} runs",
            merged.len()
        );
        merged.compress(budget);
        check_bounds(&merged, &rows, "shards");
        let bound = merged.auc_error_bound();
        assert!(bound < 2.0 / budget as f64, "bound {bound}");
    }

    #[test]
    fn from_columns_rejects_invalid_input() {
        let ok = RunSketch::from_columns(
            &[-0.0, 1.0],
            &[0.5, 1.0],
            &[1.0, 0.0],
            &[1.0, 2.0],
            &[0.5, 0.0],
        );
        let ok = ok.unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(ok.runs[0].lo.to_bits(), 0.0f64.to_bits());
        let base = ok.to_columns();
        let nan = f64::NAN;
        let inf = f64::INFINITY;
        let mutations: Vec<(usize, usize, f64)> = vec![
            (0, 0, nan),
            (1, 1, inf),
            (2, 0, -1.0),
            (3, 1, nan),
            (4, 0, -0.5),
            (4, 1, 0.5),  // exact run with unc
            (1, 0, -1.0), // lo > hi
            (0, 1, 0.5),  // touches the previous run
            (0, 1, 0.25), // overlaps
            (0, 1, -3.0), // descending (and lo <= hi still holds)
            (2, 0, -inf),
            (4, 0, inf),
        ];
        for (col, row, v) in mutations {
            let mut c = base.clone();
            c[col][row] = v;
            let r = RunSketch::from_columns(&c[0], &c[1], &c[2], &c[3], &c[4]);
            match r {
                Err(AssayError::InvalidArgument(msg)) => assert!(msg.contains("run")),
                other => panic!("accepted column {col} row {row} = {v}: {other:?}"),
            }
        }
        for col in 0..5 {
            let mut c = base.clone();
            c[col].pop();
            let r = RunSketch::from_columns(&c[0], &c[1], &c[2], &c[3], &c[4]);
            assert!(
                matches!(r, Err(AssayError::InvalidArgument(_))),
                "column {col}"
            );
        }
        let e = RunSketch::from_columns(&[], &[], &[], &[], &[]);
        assert!(e.is_ok_and(|s| s.is_empty()));
    }

    /// Release mode: `cargo test --release -- --ignored --nocapture ten_million`.
    #[test]
    #[ignore = "10M rows: run in release mode"]
    fn ten_million_rows() {
        let n = 10_000_000;
        for p_pos in [0.01, 0.03, 0.1, 0.5] {
            let t0 = std::time::Instant::now();
            let mut rng = Rng::new(8);
            let (mut scores, mut labels) = (Vec::with_capacity(n), Vec::with_capacity(n));
            for _ in 0..n {
                let pos = rng.unit() < p_pos;
                scores.push(rng.unit() + if pos { 0.3 } else { 0.0 });
                labels.push(u8::from(pos));
            }
            let ids: Vec<u32> = (0..n as u32).map(|i| i % 16).collect();
            let t1 = std::time::Instant::now();
            let shards = RunSketch::from_rows_by_id(&scores, &labels, None, &ids, 16);
            let t_build = t1.elapsed();
            let t2 = std::time::Instant::now();
            let mut merged = shards
                .into_iter()
                .map(|mut s| {
                    s.compress(DEFAULT_MAX_RUNS);
                    s
                })
                .fold(RunSketch::default(), |acc, s| acc.merge(&s));
            let merged_len = merged.len();
            merged.compress(DEFAULT_MAX_RUNS);
            let t_sketch = t2.elapsed();
            let t3 = std::time::Instant::now();
            let exact = RunSketch::from_rows(&scores, &labels, None);
            let t_exact = t3.elapsed();
            let (auc, auc_x) = (sketch_auc(&merged), sketch_auc(&exact));
            let (ap, ap_x) = (sketch_ap(&merged), sketch_ap(&exact));
            let (Some(auc), Some(auc_x), Some(ap), Some(ap_x)) = (auc, auc_x, ap, ap_x) else {
                panic!("single class");
            };
            let (ab, pb) = (merged.auc_error_bound(), merged.ap_error_bound());
            // Compressing the exact sketch of all rows directly, for comparison.
            let mut direct = exact.clone();
            direct.compress(DEFAULT_MAX_RUNS);
            println!(
                "p_pos {p_pos}: auc {auc_x:.6} err {:.2e} bound {ab:.2e} (direct {:.2e}); \
                 ap {ap_x:.6} err {:.2e} bound {pb:.2e} (direct {:.2e}); runs {} \
                 (merged shards {merged_len}); by_id 16 shards {t_build:?}, compress+merge \
                 {t_sketch:?}, from_rows all {t_exact:?}, total {:?}",
                (auc - auc_x).abs(),
                direct.auc_error_bound(),
                (ap - ap_x).abs(),
                direct.ap_error_bound(),
                merged.len(),
                t0.elapsed()
            );
            assert!((auc - auc_x).abs() <= ab + 1e-12 && (ap - ap_x).abs() <= pb + 1e-12);
            assert!(ab <= 1e-4, "bound {ab}");
            assert!(merged.len() <= DEFAULT_MAX_RUNS);
        }
        // 100 slices in one call.
        let mut rng = Rng::new(9);
        let scores: Vec<f64> = (0..n).map(|_| rng.unit()).collect();
        let labels: Vec<u8> = (0..n).map(|_| u8::from(rng.below(4) == 0)).collect();
        let ids: Vec<u32> = (0..n).map(|_| rng.below(100) as u32).collect();
        let t = std::time::Instant::now();
        let v = RunSketch::from_rows_by_id(&scores, &labels, None, &ids, 100);
        println!("from_rows_by_id 10M rows, 100 ids: {:?}", t.elapsed());
        assert_eq!(v.iter().map(RunSketch::len).sum::<usize>(), n);
    }
}
