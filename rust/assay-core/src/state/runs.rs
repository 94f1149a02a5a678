//! Sorted, compacted kept rows: what a partial state keeps for exact rank metrics (and quantile
//! calibration bins).
//!
//! When a state is made and that at least halves its kept rows ([`RankRows::compaction_pays`],
//! a HyperLogLog estimate of the distinct entries), the rows are sorted once by descending score
//! (ties by slice ids, then label), and entries with equal (score, slice ids, label) are
//! combined ([`RankRows::compact`]): their weights are summed, or, in an unweighted job,
//! counted ([`RankRows::counted`]: `weights` then holds multiplicities). A state so holds one
//! entry per distinct (score, slice cell, label), with memory proportional to the distinct
//! scores rather than the rows, and each slice's compacted runs (distinct score -> positive and
//! negative weight) are its entries, in order. Every spec reads the same entries: a cell's runs
//! are not copied once per slice spec. Merging sorted states is a k-way merge of their entries
//! ([`merge_sorted`]), and finalizing walks the order without sorting again.
//!
//! Rows of mostly distinct scores stay as they are (already about one entry per distinct
//! score; sorting each shard would make a split job sort twice): such states merge by
//! appending ([`append_mapped`]) and are sorted once at finalization.
//!
//! Never combined: rows with resampling keys (a bootstrap of the rank metrics draws each row's
//! replicate weights), unweighted rows whose quantile bins are selected from the rows
//! themselves (`reliability::quantile_bin_states` follows NumPy's unweighted quantiles), and
//! weighted rows whose calibration bins are read from the rows (a bin's row count and sum of
//! squared weights are not functions of summed weights); see `engine::accumulate`.

use rayon::prelude::*;

use super::{Col, RankRows};
use crate::runtime::{big_vec, interrupted};
use crate::sorted::{
    descending_key, msd_sort, score_range, sort_groups, value_scatter, Unweighted,
};

/// Entries per part of a parallel sort or merge; parts are cut between distinct scores, by the
/// data alone (never by the thread count), so the result does not depend on the threads.
const PART_ENTRIES: usize = 1 << 18;

/// One input of a merge: sorted entries and the map of each spec's slice ids into the output's
/// (empty: the same ids).
struct Src<'a> {
    rows: &'a RankRows,
    maps: &'a [Vec<u32>],
}

impl Src<'_> {
    #[inline(always)]
    fn id(&self, k: usize, i: usize) -> u32 {
        let id = self.rows.ids[k][i];
        if self.maps.is_empty() {
            id
        } else {
            self.maps[k][id as usize]
        }
    }

    #[inline(always)]
    fn w(&self, i: usize) -> f64 {
        if self.rows.weights.is_empty() {
            1.0
        } else {
            self.rows.weights[i]
        }
    }

    #[inline(always)]
    fn key(&self, i: usize) -> u64 {
        descending_key(self.rows.scores[i])
    }
}

/// Bits of an entry's index in a [`pick`] (inputs of up to 2^40 rows, 2^24 inputs).
const IDX_BITS: u32 = 40;

/// An entry's representative row: input `s`, index `i`, in one word.
#[inline(always)]
fn pick(s: u32, i: usize) -> u64 {
    (s as u64) << IDX_BITS | i as u64
}

#[inline(always)]
fn unpick(p: u64) -> (usize, usize) {
    (
        (p >> IDX_BITS) as usize,
        (p & ((1 << IDX_BITS) - 1)) as usize,
    )
}

/// The entries of one part, in order: each one's representative row, and (when entries carry
/// weights: the inputs do, or a count above one came up) each one's weight.
struct Picks {
    picks: Vec<u64>,
    weights: Option<Vec<f64>>,
}

impl Picks {
    fn new(capacity: usize, weighted: bool) -> Picks {
        Picks {
            picks: Vec::with_capacity(capacity),
            weights: weighted.then(|| Vec::with_capacity(capacity)),
        }
    }

    #[inline(always)]
    fn push(&mut self, s: u32, i: usize, w: f64) {
        self.picks.push(pick(s, i));
        match &mut self.weights {
            Some(ws) => ws.push(w),
            None if w != 1.0 => {
                // The first count above one: the entries so far each count once.
                let mut ws = vec![1.0; self.picks.len() - 1];
                ws.push(w);
                self.weights = Some(ws);
            }
            None => {}
        }
    }
}

/// Emits one tie group (entries of one score, `(input, index)`): ordered by slice ids, label,
/// input and index, and combined where (slice ids, label) are equal if `compact`. Weights are
/// summed in that order (input order is the canonical merge order).
fn emit_group(out: &mut Picks, srcs: &[Src], group: &mut [(u32, usize)], compact: bool) {
    if let [(s, i)] = group {
        out.push(*s, *i, srcs[*s as usize].w(*i));
        return;
    }
    let n_specs = srcs[0].rows.ids.len();
    let same = |a: &(u32, usize), b: &(u32, usize)| -> std::cmp::Ordering {
        let (sa, sb) = (&srcs[a.0 as usize], &srcs[b.0 as usize]);
        for k in 0..n_specs {
            let (x, y) = (sa.id(k, a.1), sb.id(k, b.1));
            if x != y {
                return x.cmp(&y);
            }
        }
        sa.rows.labels[a.1].cmp(&sb.rows.labels[b.1])
    };
    group.sort_unstable_by(|a, b| same(a, b).then(a.cmp(b)));
    let mut j = 0;
    while j < group.len() {
        let (s, i) = group[j];
        let mut w = srcs[s as usize].w(i);
        let mut e = j + 1;
        while compact && e < group.len() && same(&group[j], &group[e]).is_eq() {
            let (s2, i2) = group[e];
            w += srcs[s2 as usize].w(i2);
            e += 1;
        }
        out.push(s, i, w);
        j = e;
    }
}

/// Bits that hold values `0..=max`.
fn bits_for(max: u64) -> u32 {
    u64::BITS - max.leading_zeros()
}

/// Sort tags that carry an entry's slice ids and label above its (input, index), so that one
/// sort by (score key, tag) orders every tie group by (slice ids, label, input, index) and
/// equal entries lie side by side. `None` when they do not fit 64 bits (the tag is then a
/// [`pick`], and tie groups are ordered by [`emit_group`]).
struct Packing {
    /// Bits of each spec's slice ids.
    spec_bits: Vec<u32>,
    idx_bits: u32,
    /// Bits of (input, index).
    low_bits: u32,
}

impl Packing {
    fn new(srcs: &[Src]) -> Option<Packing> {
        let n_specs = srcs.first().map_or(0, |s| s.rows.ids.len());
        let spec_bits: Vec<u32> = (0..n_specs)
            .map(|k| {
                let max = srcs
                    .iter()
                    .map(|s| match s.maps.get(k) {
                        Some(m) => m.iter().copied().max().unwrap_or(0),
                        None => s.rows.ids[k].iter().copied().max().unwrap_or(0),
                    })
                    .max()
                    .unwrap_or(0);
                bits_for(max as u64)
            })
            .collect();
        let idx_bits = bits_for(srcs.iter().map(|s| s.rows.len()).max().unwrap_or(0) as u64);
        let low_bits = idx_bits + bits_for(srcs.len().saturating_sub(1) as u64);
        let cell_bits: u32 = 1 + spec_bits.iter().sum::<u32>();
        (cell_bits + low_bits <= 64).then_some(Packing {
            spec_bits,
            idx_bits,
            low_bits,
        })
    }

    #[inline(always)]
    fn tag(&self, srcs: &[Src], s: usize, i: usize) -> u64 {
        let src = &srcs[s];
        let mut cell = 0u64;
        for (k, b) in self.spec_bits.iter().enumerate() {
            cell = (cell << b) | src.id(k, i) as u64;
        }
        cell = (cell << 1) | src.rows.labels[i] as u64;
        // (`low_bits` < 64: the cell holds at least the label bit.)
        (cell << self.low_bits) | ((s as u64) << self.idx_bits) | i as u64
    }

    #[inline(always)]
    fn cell(&self, tag: u64) -> u64 {
        tag >> self.low_bits
    }

    #[inline(always)]
    fn entry(&self, tag: u64) -> (usize, usize) {
        let low = tag & ((1 << self.low_bits) - 1);
        (
            (low >> self.idx_bits) as usize,
            (low & ((1 << self.idx_bits) - 1)) as usize,
        )
    }
}

/// Emits the entries of `recs`, sorted by (score key, tag): with `packing`, tags order each tie
/// group already and equal entries are adjacent; otherwise tags are [`pick`]s and each tie
/// group goes through [`emit_group`].
fn emit_sorted(
    out: &mut Picks,
    srcs: &[Src],
    recs: &[Unweighted],
    packing: Option<&Packing>,
    compact: bool,
) {
    let mut group: Vec<(u32, usize)> = Vec::new();
    let mut j = 0;
    let n = recs.len();
    while j < n {
        let key = recs[j].0;
        let unique = j + 1 == n || recs[j + 1].0 != key;
        match packing {
            Some(p) => {
                let (s, i) = p.entry(recs[j].1);
                let mut w = srcs[s].w(i);
                let mut e = j + 1;
                if compact && !unique {
                    let cell = p.cell(recs[j].1);
                    while e < n && recs[e].0 == key && p.cell(recs[e].1) == cell {
                        let (s2, i2) = p.entry(recs[e].1);
                        w += srcs[s2].w(i2);
                        e += 1;
                    }
                }
                out.push(s as u32, i, w);
                j = e;
            }
            None if unique => {
                let (s, i) = unpick(recs[j].1);
                out.push(s as u32, i, srcs[s].w(i));
                j += 1;
            }
            None => {
                group.clear();
                while j < n && recs[j].0 == key {
                    let (s, i) = unpick(recs[j].1);
                    group.push((s as u32, i));
                    j += 1;
                }
                emit_group(out, srcs, &mut group, compact);
            }
        }
    }
}

/// Writes `get(pick)` of every part's picks into one column, parts in parallel.
fn gather<T: Copy + Send + Sync>(
    parts: &[Picks],
    total: usize,
    get: impl Fn(u64) -> T + Sync,
) -> Vec<T> {
    let mut out: Vec<T> = big_vec(total);
    let mut rest = &mut out.spare_capacity_mut()[..total];
    let mut slots = Vec::with_capacity(parts.len());
    for p in parts {
        let (a, b) = rest.split_at_mut(p.picks.len());
        slots.push(a);
        rest = b;
    }
    slots.into_par_iter().zip(parts).for_each(|(slot, p)| {
        for (o, k) in slot.iter_mut().zip(&p.picks) {
            o.write(get(*k));
        }
    });
    // SAFETY: the parts' slots cover all `total` slots, each written above.
    unsafe { out.set_len(total) };
    out
}

/// The entries the parts pick, as columns (a part without weights counts each entry once).
fn build(parts: &[Picks], srcs: &[Src], job_weighted: bool, compact: bool) -> RankRows {
    let n_specs = srcs.first().map_or(0, |s| s.rows.ids.len());
    let total: usize = parts.iter().map(|p| p.picks.len()).sum();
    let keyed = srcs.iter().any(|s| !s.rows.row_keys.is_empty());
    let weighted = parts.iter().any(|p| p.weights.is_some());
    let mut out = RankRows::with_specs(n_specs);
    let RankRows {
        scores,
        labels,
        weights,
        ids,
        row_keys,
        ..
    } = &mut out;
    rayon::scope(|sc| {
        sc.spawn(|_| {
            *scores = Col::from(gather(parts, total, |k| {
                let (s, i) = unpick(k);
                srcs[s].rows.scores[i]
            }))
        });
        sc.spawn(|_| {
            *labels = Col::from(gather(parts, total, |k| {
                let (s, i) = unpick(k);
                srcs[s].rows.labels[i]
            }))
        });
        if keyed {
            sc.spawn(|_| {
                *row_keys = Col::from(gather(parts, total, |k| {
                    let (s, i) = unpick(k);
                    srcs[s].rows.row_keys[i]
                }))
            });
        }
        for (k, v) in ids.iter_mut().enumerate() {
            sc.spawn(move |_| {
                *v = gather(parts, total, |p| {
                    let (s, i) = unpick(p);
                    srcs[s].id(k, i)
                })
            });
        }
        if weighted {
            sc.spawn(|_| {
                let mut w: Vec<f64> = big_vec(total);
                for p in parts {
                    match &p.weights {
                        Some(ws) => w.extend_from_slice(ws),
                        None => w.extend(std::iter::repeat_n(1.0, p.picks.len())),
                    }
                }
                *weights = Col::from(w);
            });
        }
    });
    out.sorted = true;
    out.compact = compact;
    out.counted = !job_weighted && !out.weights.is_empty();
    out
}

/// Whether `inputs` (one job's kept rows) carry weights of a weighted job (not counts).
fn job_weighted(inputs: &[&RankRows]) -> bool {
    inputs.iter().any(|r| !r.weights.is_empty() && !r.counted)
}

impl RankRows {
    /// Sorts the rows by descending score (ties by slice ids, label, then row order) and, if
    /// `compact` and the rows carry no resampling keys, combines entries of equal (score, slice
    /// ids, label). Runs on the calling pool. An interrupted sort leaves the rows in no
    /// particular order: the caller must check the interrupt and drop them.
    pub fn sort_compact(&mut self, compact: bool) {
        if self.sorted {
            return;
        }
        let compact = compact && self.row_keys.is_empty();
        let n = self.len();
        let srcs = [Src {
            rows: self,
            maps: &[],
        }];
        let packing = Packing::new(&srcs);
        let mut recs: Vec<Unweighted> = Vec::new();
        let make = |i: usize| {
            let tag = match &packing {
                Some(p) => p.tag(&srcs, 0, i),
                None => pick(0, i),
            };
            Unweighted(descending_key(srcs[0].rows.scores[i]), tag)
        };
        let range = score_range(&self.scores);
        let starts = value_scatter(&self.scores, range, make, &mut recs);
        sort_groups(&mut recs, &starts);
        let weighted = !self.weights.is_empty();
        let bounds = part_bounds(n, |j| recs[j].0);
        let parts: Vec<Picks> = bounds
            .par_windows(2)
            .map(|b| {
                let mut out = Picks::new(b[1] - b[0], weighted);
                if !interrupted() {
                    emit_sorted(
                        &mut out,
                        &srcs,
                        &recs[b[0]..b[1]],
                        packing.as_ref(),
                        compact,
                    );
                }
                out
            })
            .collect();
        drop(recs);
        let job = job_weighted(&[self]);
        let rows = build(&parts, &srcs, job, compact);
        *self = rows;
    }
}

/// HyperLogLog registers (2^12: about 1.6% standard error) of the distinct-entry estimate.
const HLL_BITS: u32 = 12;

/// A shard's rows are sorted and compacted only where that at least halves them: with mostly
/// distinct scores (a model's continuous probabilities) the rows are already about one entry
/// per distinct score, and sorting each shard would only move the sort of the finalization
/// (which a split job would then pay twice: once per shard and again in the merge).
const COMPACTION_GAIN: f64 = 0.5;

#[inline(always)]
fn mix(mut x: u64) -> u64 {
    // SplitMix64's finalizer.
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58476d1ce4e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d049bb133111eb);
    x ^ (x >> 31)
}

/// Rows per HyperLogLog task; registers of tasks fold by maximum.
const HLL_TASK_ROWS: usize = 1 << 15;
/// The estimate is checked after each of about this many equal steps of the rows.
const HLL_STEPS: usize = 16;

/// HyperLogLog registers and the estimate they give.
struct Hll(Vec<u8>);

impl Hll {
    fn new() -> Hll {
        Hll(vec![0u8; 1 << HLL_BITS])
    }

    #[inline(always)]
    fn add(&mut self, h: u64) {
        let at = (h >> (64 - HLL_BITS)) as usize;
        let rank = ((h << HLL_BITS) | 1 << (HLL_BITS - 1)).leading_zeros() as u8 + 1;
        let r = &mut self.0[at];
        *r = (*r).max(rank);
    }

    fn fold(mut self, other: Hll) -> Hll {
        for (x, y) in self.0.iter_mut().zip(&other.0) {
            *x = (*x).max(*y);
        }
        self
    }

    fn estimate(&self) -> f64 {
        let mf = self.0.len() as f64;
        let sum: f64 = self.0.iter().map(|r| 2f64.powi(-(*r as i32))).sum();
        let raw = 0.7213 / (1.0 + 1.079 / mf) * mf * mf / sum;
        let zeros = self.0.iter().filter(|r| **r == 0).count();
        if raw <= 2.5 * mf && zeros > 0 {
            mf * (mf / zeros as f64).ln() // linear counting for small sets
        } else {
            raw
        }
    }
}

impl RankRows {
    /// The HyperLogLog registers of the distinct (score, slice ids, label) entries of rows
    /// `lo..hi`. One SplitMix round per row: the label and slice ids are packed into one word
    /// (mixed in one id at a time where they do not fit 63 bits), spread by an odd multiplier
    /// and added to the score's bits.
    fn hll_of(&self, lo: usize, hi: usize, bits: Option<&[u32]>) -> Hll {
        const SPREAD: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut regs = Hll::new();
        let score = |i: usize| {
            let s = self.scores[i];
            // (-0.0 and 0.0 are one score.)
            (if s == 0.0 { 0.0 } else { s }).to_bits()
        };
        match (bits, self.ids.as_slice()) {
            (Some(_), []) => {
                for (i, l) in (lo..hi).zip(&self.labels[lo..hi]) {
                    regs.add(mix(score(i).wrapping_add((*l as u64).wrapping_mul(SPREAD))));
                }
            }
            (Some(_), [ids]) => {
                let rows = (lo..hi).zip(&self.labels[lo..hi]).zip(&ids[lo..hi]);
                for ((i, l), id) in rows {
                    let tag = (*id as u64) << 1 | *l as u64;
                    regs.add(mix(score(i).wrapping_add(tag.wrapping_mul(SPREAD))));
                }
            }
            (Some(bits), _) => {
                for i in lo..hi {
                    let mut tag = self.labels[i] as u64;
                    let mut at = 1;
                    for (ids, b) in self.ids.iter().zip(bits) {
                        tag |= (ids[i] as u64) << at;
                        at += b;
                    }
                    regs.add(mix(score(i).wrapping_add(tag.wrapping_mul(SPREAD))));
                }
            }
            (None, _) => {
                for i in lo..hi {
                    let mut h = mix(score(i) ^ (self.labels[i] as u64) << 63);
                    for (k, ids) in self.ids.iter().enumerate() {
                        h = mix(h ^ ((k as u64) << 40 | ids[i] as u64));
                    }
                    regs.add(h);
                }
            }
        }
        regs
    }

    /// Whether the rows hold at most `limit` distinct (score, slice ids, label) entries, by a
    /// HyperLogLog estimate (about 1.6% standard error). The registers fold by maximum, and
    /// the rows are read in fixed steps of [`HLL_CHECK_ROWS`]: the answer does not depend on
    /// the threads. The count of a prefix is a lower bound of the whole's, so the estimate
    /// stops after the first of about [`HLL_STEPS`] steps whose rows already hold a tenth more
    /// than `limit` (rows of mostly distinct scores: about half of them are read).
    fn distinct_at_most(&self, limit: f64, n_ids: &[usize]) -> bool {
        let n = self.len();
        let id_bits: Vec<u32> = n_ids
            .iter()
            .map(|k| usize::BITS - k.saturating_sub(1).leading_zeros())
            .collect();
        let bits = (id_bits.iter().sum::<u32>() < 64).then_some(id_bits.as_slice());
        let step_rows = n.div_ceil(HLL_STEPS).next_multiple_of(HLL_TASK_ROWS);
        let mut regs = Hll::new();
        for step in (0..n).step_by(step_rows) {
            let end = (step + step_rows).min(n);
            let tasks = (end - step).div_ceil(HLL_TASK_ROWS);
            let part = (0..tasks)
                .into_par_iter()
                .map(|t| {
                    let lo = step + t * HLL_TASK_ROWS;
                    self.hll_of(lo, (lo + HLL_TASK_ROWS).min(end), bits)
                })
                .reduce(Hll::new, Hll::fold);
            regs = regs.fold(part);
            if end < n && regs.estimate() > 1.1 * limit {
                return false;
            }
        }
        regs.estimate() <= limit
    }

    /// Whether sorting and compacting these rows would at least halve them (see
    /// [`COMPACTION_GAIN`]). `n_ids`: each slice spec's id count (ids lie below it).
    pub fn compaction_pays(&self, n_ids: &[usize]) -> bool {
        !self.is_empty() && self.distinct_at_most(COMPACTION_GAIN * self.len() as f64, n_ids)
    }
}

/// The rows of all `inputs` one after the other (the canonical merge order), slice ids mapped
/// by `maps[i]` (empty: the same ids): the merge of states that are not all sorted. The result
/// is unsorted, its finalization sorts it; counted entries among uncounted rows keep their
/// counts (the others count once). Columns are copied in parallel, one task each.
pub fn append_mapped(inputs: &[&RankRows], maps: &[&[Vec<u32>]]) -> RankRows {
    let n_specs = inputs.first().map_or(0, |r| r.ids.len());
    let total: usize = inputs.iter().map(|r| r.len()).sum();
    let weighted = inputs.iter().any(|r| !r.weights.is_empty());
    let keyed = inputs.iter().any(|r| !r.row_keys.is_empty());
    let mut out = RankRows::with_specs(n_specs);
    let RankRows {
        scores,
        labels,
        weights,
        ids,
        row_keys,
        ..
    } = &mut out;
    rayon::scope(|sc| {
        sc.spawn(|_| {
            *scores = Col::from(big_vec(total));
            inputs
                .iter()
                .for_each(|r| scores.extend_from_slice(&r.scores));
        });
        sc.spawn(|_| {
            *labels = Col::from(big_vec(total));
            inputs
                .iter()
                .for_each(|r| labels.extend_from_slice(&r.labels));
        });
        if weighted {
            sc.spawn(|_| {
                *weights = Col::from(big_vec(total));
                for r in inputs {
                    if r.weights.is_empty() {
                        weights.extend(std::iter::repeat_n(1.0, r.len()));
                    } else {
                        weights.extend_from_slice(&r.weights);
                    }
                }
            });
        }
        if keyed {
            sc.spawn(|_| {
                *row_keys = Col::from(big_vec(total));
                inputs
                    .iter()
                    .for_each(|r| row_keys.extend_from_slice(&r.row_keys));
            });
        }
        for (k, v) in ids.iter_mut().enumerate() {
            sc.spawn(move |_| {
                *v = big_vec(total);
                for (r, m) in inputs.iter().zip(maps) {
                    let map = m
                        .get(k)
                        .filter(|m| m.iter().enumerate().any(|(j, t)| j != *t as usize));
                    match map {
                        Some(map) => v.extend(r.ids[k].iter().map(|id| map[*id as usize])),
                        None => v.extend_from_slice(&r.ids[k]), // the same ids: a plain copy
                    }
                }
            });
        }
    });
    out.counted = inputs.iter().any(|r| r.counted);
    out
}

/// Part boundaries over `n` sorted entries whose key at `j` is `key(j)`: about
/// [`PART_ENTRIES`] each, moved forward so that no score is split between two parts.
fn part_bounds(n: usize, key: impl Fn(usize) -> u64) -> Vec<usize> {
    let mut bounds = vec![0];
    let mut at = PART_ENTRIES;
    while at < n {
        let k = key(at - 1);
        let mut e = at;
        while e < n && key(e) == k {
            e += 1;
        }
        if e >= n {
            break;
        }
        bounds.push(e);
        at = e + PART_ENTRIES;
    }
    bounds.push(n);
    bounds
}

/// The sorted entries of all `inputs` (each sorted, listed in the canonical merge order), their
/// slice ids mapped by `maps[i]` (one map per slice spec; empty: the same ids), combined as
/// [`RankRows::sort_compact`] combines them when every input is compact. A k-way merge in
/// parallel parts cut at distinct scores; runs on the calling pool. An interrupted merge
/// returns early with a partial result the caller must drop.
pub fn merge_sorted(inputs: &[&RankRows], maps: &[&[Vec<u32>]]) -> RankRows {
    let compact = inputs.iter().all(|r| r.compact || r.is_empty());
    let srcs: Vec<Src> = inputs
        .iter()
        .zip(maps)
        .map(|(rows, maps)| Src { rows, maps })
        .collect();
    let weighted = inputs.iter().any(|r| !r.weights.is_empty());
    // Splitters: keys at even steps of the largest input; each input is cut before its first
    // entry at or after each splitter, so a score never spans two parts.
    let largest = srcs
        .iter()
        .enumerate()
        .max_by_key(|(j, s)| (s.rows.len(), std::cmp::Reverse(*j)))
        .map(|(j, _)| j);
    let total: usize = inputs.iter().map(|r| r.len()).sum();
    let mut splitters: Vec<u64> = Vec::new();
    if let Some(l) = largest {
        let n = srcs[l].rows.len();
        let parts = total.div_ceil(PART_ENTRIES).max(1);
        for p in 1..parts {
            let at = n * p / parts;
            if at > 0 && at < n {
                splitters.push(srcs[l].key(at));
            }
        }
        splitters.dedup();
    }
    let cut = |s: &Src, key: u64| s.rows.scores.partition_point(|x| descending_key(*x) < key);
    let mut cuts: Vec<Vec<usize>> = Vec::with_capacity(splitters.len() + 2);
    cuts.push(vec![0; srcs.len()]);
    for key in &splitters {
        cuts.push(srcs.iter().map(|s| cut(s, *key)).collect());
    }
    cuts.push(srcs.iter().map(|s| s.rows.len()).collect());
    let packing = Packing::new(&srcs);
    let parts: Vec<Picks> = cuts
        .par_windows(2)
        .map(|c| merge_part(&srcs, packing.as_ref(), &c[0], &c[1], weighted, compact))
        .collect();
    build(&parts, &srcs, job_weighted(inputs), compact)
}

/// The merge of `srcs[j]` entries `from[j]..to[j]` (one part, a range of scores): the part's
/// entries are gathered and sorted by (score, input, index) in cache-sized pieces (parts are
/// cut so), which beats a tournament over the inputs' heads when scores interleave at random.
/// Each score's entries are then emitted as one group.
fn merge_part(
    srcs: &[Src],
    packing: Option<&Packing>,
    from: &[usize],
    to: &[usize],
    weighted: bool,
    compact: bool,
) -> Picks {
    let len: usize = from.iter().zip(to).map(|(a, b)| b - a).sum();
    let mut out = Picks::new(len, weighted);
    if len == 0 || interrupted() {
        return out;
    }
    let mut recs: Vec<Unweighted> = Vec::with_capacity(len);
    for (j, s) in srcs.iter().enumerate() {
        recs.extend((from[j]..to[j]).map(|i| {
            let tag = match packing {
                Some(p) => p.tag(srcs, j, i),
                None => pick(j as u32, i),
            };
            Unweighted(s.key(i), tag)
        }));
    }
    let mut scratch = vec![Unweighted::default(); len];
    msd_sort(&mut recs, &mut scratch, true);
    drop(scratch);
    emit_sorted(&mut out, srcs, &recs, packing, compact);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(scores: &[f64], labels: &[u8], ids: &[u32], weights: &[f64]) -> RankRows {
        RankRows {
            scores: Col::from(scores.to_vec()),
            labels: Col::from(labels.to_vec()),
            weights: Col::from(weights.to_vec()),
            ids: vec![ids.to_vec()],
            ..Default::default()
        }
    }

    /// (score, ids, label) -> total weight, the multiset a compacted state must hold.
    fn tally(r: &RankRows) -> Vec<(u64, u32, u8, f64)> {
        let mut m: std::collections::BTreeMap<(u64, u32, u8), f64> = Default::default();
        for i in 0..r.len() {
            let w = if r.weights.is_empty() {
                1.0
            } else {
                r.weights[i]
            };
            *m.entry((descending_key(r.scores[i]), r.ids[0][i], r.labels[i]))
                .or_default() += w;
        }
        m.into_iter().map(|((a, b, c), w)| (a, b, c, w)).collect()
    }

    fn check_sorted(r: &RankRows) {
        for i in 1..r.len() {
            let (a, b) = (descending_key(r.scores[i - 1]), descending_key(r.scores[i]));
            assert!(a <= b, "entries out of order at {i}");
            if a == b {
                assert!((r.ids[0][i - 1], r.labels[i - 1]) <= (r.ids[0][i], r.labels[i]));
            }
        }
    }

    fn lcg(seed: &mut u64) -> u64 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        *seed >> 33
    }

    fn random_rows(n: usize, distinct: u64, weighted: bool, seed: u64) -> RankRows {
        let mut s = seed;
        let scores: Vec<f64> = (0..n)
            .map(|_| (lcg(&mut s) % distinct) as f64 / 7.0)
            .collect();
        let labels: Vec<u8> = (0..n).map(|_| (lcg(&mut s) % 2) as u8).collect();
        let ids: Vec<u32> = (0..n).map(|_| (lcg(&mut s) % 5) as u32).collect();
        let w: Vec<f64> = if weighted {
            (0..n).map(|_| (lcg(&mut s) % 9) as f64 * 0.25).collect()
        } else {
            Vec::new()
        };
        rows(&scores, &labels, &ids, &w)
    }

    /// Rows of `n` entries cycling through `distinct` (score, slice, label) entries.
    fn cycled(n: usize, distinct: usize, specs: usize) -> RankRows {
        let e = |i: usize| i % distinct;
        RankRows {
            scores: (0..n).map(|i| (e(i) / 10) as f64 * 1e-3).collect(),
            labels: (0..n).map(|i| (e(i) % 2) as u8).collect(),
            weights: Col::from(Vec::new()),
            ids: (0..specs)
                .map(|k| (0..n).map(|i| (e(i) % 10 / 2 + k) as u32).collect())
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn compaction_pays_follows_the_distinct_entries_for_any_threads() {
        let n = 300_000;
        for specs in [0, 1, 3] {
            // Ids of each spec below 8 (packed), or below 2^30 (three specs do not fit 64 bits
            // beside the label: mixed in one at a time).
            for n_ids in [8usize, 1 << 30] {
                let n_ids = vec![n_ids; specs];
                for (distinct, pays) in [(1, true), (1_000, true), (n / 3, true), (n, false)] {
                    let r = cycled(n, distinct, specs);
                    // (Without slices, `cycled`'s entries are a fifth of `distinct`: they
                    // always compact.)
                    let want = pays || specs == 0;
                    for threads in [1, 2, 3] {
                        let pool = rayon::ThreadPoolBuilder::new()
                            .num_threads(threads)
                            .build()
                            .unwrap();
                        let got = pool.install(|| r.compaction_pays(&n_ids));
                        assert_eq!(
                            got, want,
                            "{specs} specs, {distinct} distinct entries, {threads} threads"
                        );
                    }
                }
            }
        }
        // Mostly distinct scores, just over the limit or well under it.
        let mut s = 7;
        let distinct: Vec<f64> = (0..n).map(|_| lcg(&mut s) as f64).collect();
        let r = rows(&distinct, &vec![0; n], &vec![0; n], &[]);
        assert!(!r.compaction_pays(&[1]));
        let halves: Vec<f64> = (0..n).map(|i| distinct[i % (n / 3)]).collect();
        let r = rows(&halves, &vec![0; n], &vec![0; n], &[]);
        assert!(r.compaction_pays(&[1]));
        assert!(!RankRows::with_specs(1).compaction_pays(&[1]));
    }

    #[test]
    fn sort_compact_keeps_the_multiset_of_weights() {
        for (n, distinct, weighted) in [
            (0, 1, false),
            (1, 1, true),
            (1000, 3, false),
            (1000, 3, true),
            (700_000, 50, false),
            (700_000, 1 << 40, true),
        ] {
            let r = random_rows(n, distinct, weighted, n as u64 + distinct);
            let want = tally(&r);
            let mut c = r.clone();
            c.sort_compact(true);
            check_sorted(&c);
            assert!(c.sorted && c.compact);
            assert_eq!(
                c.counted,
                !weighted && c.len() < n,
                "n={n} distinct={distinct}"
            );
            assert_eq!(tally(&c), want);
            // One entry per distinct (score, id, label).
            assert_eq!(c.len(), want.len());
            let mut plain = r.clone();
            plain.sort_compact(false);
            check_sorted(&plain);
            assert_eq!(plain.len(), n);
            assert!(!plain.counted);
            assert_eq!(tally(&plain), want);
        }
    }

    #[test]
    fn merge_equals_sorting_everything_once() {
        for weighted in [false, true] {
            let all = random_rows(900_000, 40, weighted, 7);
            let mut parts: Vec<RankRows> = [0, 100_000, 100_001, 600_000, 900_000]
                .windows(2)
                .map(|w| {
                    let mut p = RankRows::with_specs(1);
                    p.scores = Col::from(all.scores[w[0]..w[1]].to_vec());
                    p.labels = Col::from(all.labels[w[0]..w[1]].to_vec());
                    p.ids[0] = all.ids[0][w[0]..w[1]].to_vec();
                    if weighted {
                        p.weights = Col::from(all.weights[w[0]..w[1]].to_vec());
                    }
                    p
                })
                .collect();
            for p in parts.iter_mut() {
                p.sort_compact(true);
            }
            let refs: Vec<&RankRows> = parts.iter().collect();
            let none: Vec<Vec<u32>> = Vec::new();
            let maps: Vec<&[Vec<u32>]> = vec![&none; refs.len()];
            let merged = merge_sorted(&refs, &maps);
            check_sorted(&merged);
            let mut once = all.clone();
            once.sort_compact(true);
            assert_eq!(tally(&merged), tally(&once));
            assert_eq!(merged.len(), once.len());
            assert_eq!(merged.counted, once.counted);
            if !weighted {
                // Counts are exact: the same entries, bit for bit.
                assert_eq!(merged.scores, once.scores);
                assert_eq!(merged.weights, once.weights);
                assert_eq!(merged.ids, once.ids);
                assert_eq!(merged.labels, once.labels);
            }
            // The same merge twice: the same bits (and so for any thread count: parts are cut
            // by the data).
            let again = merge_sorted(&refs, &maps);
            assert_eq!(again.weights, merged.weights);
            assert_eq!(again.scores, merged.scores);
        }
    }

    #[test]
    fn merge_maps_slice_ids_and_reorders_ties_by_them() {
        let mut a = rows(&[0.5, 0.5], &[1, 0], &[0, 1], &[]);
        let mut b = rows(&[0.5, 0.25], &[1, 1], &[0, 0], &[]);
        a.sort_compact(true);
        b.sort_compact(true);
        // b's id 0 is a's id 1.
        let map = vec![vec![1u32]];
        let none: Vec<Vec<u32>> = Vec::new();
        let m = merge_sorted(&[&a, &b], &[&none, &map]);
        assert_eq!(m.scores, vec![0.5, 0.5, 0.5, 0.25]);
        assert_eq!(m.ids[0], vec![0, 1, 1, 1]);
        assert_eq!(m.labels, vec![1, 0, 1, 1]);
        assert!(!m.counted);
        let mut c = rows(&[0.5], &[1], &[0], &[]);
        c.sort_compact(true);
        let m = merge_sorted(&[&a, &c], &[&none, &none]);
        assert_eq!(m.scores, vec![0.5, 0.5]);
        assert_eq!(m.ids[0], vec![0, 1]);
        assert_eq!(m.weights, vec![2.0, 1.0]);
        assert!(m.counted);
    }

    #[test]
    fn wide_slice_ids_fall_back_to_ordering_tie_groups_one_by_one() {
        // Two specs of 31-bit ids leave no room for the row index in a sort tag.
        let mut seed = 3u64;
        let n = 5000;
        let mut r = RankRows::with_specs(2);
        for _ in 0..n {
            r.scores.push((lcg(&mut seed) % 4) as f64);
            r.labels.push((lcg(&mut seed) % 2) as u8);
            r.ids[0].push((1 << 30) + (lcg(&mut seed) % 3) as u32);
            r.ids[1].push((1 << 30) + (lcg(&mut seed) % 2) as u32);
        }
        let srcs = [Src {
            rows: &r,
            maps: &[],
        }];
        assert!(Packing::new(&srcs).is_none());
        let mut c = r.clone();
        c.sort_compact(true);
        assert!(c.counted);
        assert_eq!(c.len(), 4 * 2 * 3 * 2);
        assert_eq!(c.weights.iter().sum::<f64>(), n as f64);
        for i in 1..c.len() {
            let a = (
                descending_key(c.scores[i - 1]),
                c.ids[0][i - 1],
                c.ids[1][i - 1],
                c.labels[i - 1],
            );
            let b = (
                descending_key(c.scores[i]),
                c.ids[0][i],
                c.ids[1][i],
                c.labels[i],
            );
            assert!(a < b);
        }
    }

    #[test]
    fn rows_with_resampling_keys_are_never_combined() {
        let mut r = rows(&[0.5, 0.5, 0.5], &[1, 1, 1], &[0, 0, 0], &[]);
        r.row_keys = vec![9, 3, 5].into();
        r.sort_compact(true);
        assert_eq!(r.len(), 3);
        assert!(!r.compact && !r.counted);
        assert_eq!(r.row_keys, vec![9, 3, 5]);
    }
}
