//! Exact ROC-AUC and average precision from one descending sort of the scores.
//!
//! The rows are sorted once (a parallel bucket sort on an order-preserving key, ties broken by
//! row position so the order is unique); every slice spec then walks that single order, keeping
//! per-slice running sums in dense arrays. Tied scores form one threshold: a positive-negative
//! pair inside a tie group counts one half toward AUC, and AP adds precision once per distinct
//! threshold, exactly as scikit-learn's `roc_auc_score` and `average_precision_score` do.

use rayon::prelude::*;

use crate::bootstrap::{add_into, Resampler};
use crate::metrics::RankSums;
use crate::reliability::{sorted_run_calibration, SliceCalib, SortedWant};
use crate::runtime::{interrupted, POLL_ROWS};
pub use crate::sorted::score_of_key;
use crate::sorted::{
    descending_key, scatter, score_range, sort_groups, value_scatter, KeyLabel, Rec, Unweighted,
    Weighted,
};
use crate::state::{big_vec, RankRows};

/// Whether a walk at row `i` must stop: polls the job's interrupt every `step` rows (one
/// compare per tie group otherwise). A stopped walk's partial sums are never reported:
/// an interrupted job ends with `Interrupted` (see `runtime`).
#[inline(always)]
fn stop_walk(i: usize, next_poll: &mut usize, step: usize) -> bool {
    if i < *next_poll {
        return false;
    }
    *next_poll = i + step;
    interrupted()
}

/// The record buffer, reused by every spec of a job so that only the first sort pays for
/// fresh pages.
struct Buffers<R> {
    recs: Vec<R>,
}

/// Sorts the rows of every slice of one spec by descending score (ties by row position) and
/// returns the group starts; the overall slice (`ids = None`) is split by score value instead,
/// so that its sort runs in parallel too.
fn sorted_groups<R: Rec>(
    rows: &RankRows,
    ids: Option<&[u32]>,
    n_ids: usize,
    buf: &mut Buffers<R>,
) -> Vec<usize> {
    sorted_groups_by(rows, ids, n_ids, buf, |i| i as u64)
}

/// [`sorted_groups`] with the record tag `id_of(i) << 1 | label` (ties sort by it, so it must
/// be unique and fit 63 bits).
fn sorted_groups_by<R: Rec>(
    rows: &RankRows,
    ids: Option<&[u32]>,
    n_ids: usize,
    buf: &mut Buffers<R>,
    id_of: impl Fn(usize) -> u64 + Sync,
) -> Vec<usize> {
    let n = rows.len();
    let make = |i: usize| {
        let w = if rows.weights.is_empty() {
            1.0
        } else {
            rows.weights[i]
        };
        R::new(
            descending_key(rows.scores[i]),
            (id_of(i) << 1) | rows.labels[i] as u64,
            w,
        )
    };
    // Sorted rows (a partial state's) stay sorted through a stable scatter.
    match ids {
        Some(ids) => {
            let starts = scatter(n, n_ids, |i| ids[i] as usize, make, &mut buf.recs);
            if !rows.sorted {
                sort_groups(&mut buf.recs, &starts);
            }
            starts
        }
        None if rows.sorted => {
            (0..n)
                .into_par_iter()
                .map(make)
                .collect_into_vec(&mut buf.recs);
            vec![0, n]
        }
        None => {
            let range = score_range(&rows.scores);
            let starts = value_scatter(&rows.scores, range, make, &mut buf.recs);
            sort_groups(&mut buf.recs, &starts);
            vec![0, n]
        }
    }
}

#[derive(Clone, Copy, Default)]
struct Running {
    tp: f64,
    fp: f64,
    run_pos: f64,
    run_neg: f64,
    auc_pairs: f64,
    ap_sum: f64,
    tied_pairs: f64,
    delong: [f64; 6],
}

impl Running {
    /// Closes a tie group: its pairs against everything above count fully, within it half.
    #[inline]
    fn close_group(&mut self) {
        // DeLong placements, before the group joins the running totals: each positive of the
        // group has c = negatives above + half the tied ones, each negative d likewise.
        let c = self.fp + 0.5 * self.run_neg;
        let d = self.tp + 0.5 * self.run_pos;
        let (pc, nd) = (self.run_pos * c, self.run_neg * d);
        self.delong[0] += pc;
        self.delong[1] += pc * c;
        self.delong[2] += pc * c * c;
        self.delong[3] += nd;
        self.delong[4] += nd * d;
        self.delong[5] += nd * d * d;
        self.auc_pairs += self.run_neg * self.tp + 0.5 * self.run_pos * self.run_neg;
        self.tied_pairs += self.run_pos * self.run_neg;
        self.tp += self.run_pos;
        self.fp += self.run_neg;
        // The precision first: the product of two small weights would underflow. A group
        // without positives adds nothing (a select, not a branch: labels are unpredictable;
        // its precision may be 0/0 when all weight so far is zero, and is then discarded).
        let precision = self.tp / (self.tp + self.fp);
        self.ap_sum += if self.run_pos > 0.0 {
            self.run_pos * precision
        } else {
            0.0
        };
        self.run_pos = 0.0;
        self.run_neg = 0.0;
    }

    /// [`Self::close_group`] of a group of one unweighted record (`pos` 1.0 or 0.0), with the
    /// same bits, computed without a branch and without the group's running fields (a walk
    /// over continuous scores closes a group per record: its chains stay in registers).
    #[inline(always)]
    fn close_one(&mut self, pos: f64) {
        let neg = 1.0 - pos;
        let c = self.fp + 0.5 * neg;
        let d = self.tp + 0.5 * pos;
        let (pc, nd) = (pos * c, neg * d);
        self.delong[0] += pc;
        self.delong[1] += pc * c;
        self.delong[2] += pc * c * c;
        self.delong[3] += nd;
        self.delong[4] += nd * d;
        self.delong[5] += nd * d * d;
        self.auc_pairs += neg * self.tp + 0.5 * pos * neg;
        self.tied_pairs += pos * neg;
        self.tp += pos;
        self.fp += neg;
        // The record itself is counted, so tp + fp >= 1 and the precision is finite: a
        // negative adds exactly 0.0.
        self.ap_sum += pos * (self.tp / (self.tp + self.fp));
    }

    fn sums(&self) -> RankSums {
        RankSums {
            pos: self.tp,
            neg: self.fp,
            auc_pairs: self.auc_pairs,
            ap_sum: self.ap_sum,
            tied_pairs: self.tied_pairs,
            delong: self.delong,
        }
    }
}

/// The calibration states of one sorted run; an interrupted job skips the walk (its result
/// is discarded) and gets empty states of the right shape.
fn run_calibration<R: Rec>(run: &[R], want: &SortedWant) -> SliceCalib {
    let run = if interrupted() { &run[..0] } else { run };
    sorted_run_calibration(run, want)
}

/// Rank sums of one run of records sorted by descending score.
fn sorted_sums<R: Rec>(recs: &[R]) -> RankSums {
    let mut r = Running::default();
    let mut i = 0;
    let mut next_poll = POLL_ROWS;
    while i < recs.len() {
        if stop_walk(i, &mut next_poll, POLL_ROWS) {
            break;
        }
        let key = recs[i].key();
        while i < recs.len() && recs[i].key() == key {
            if recs[i].tag() & 1 == 1 {
                r.run_pos += recs[i].w();
            } else {
                r.run_neg += recs[i].w();
            }
            i += 1;
        }
        r.close_group();
    }
    r.sums()
}

/// Rank sums of every slice of every spec: `n_ids[0]` is the overall slice (ids `None`),
/// `n_ids[k]` the slices of `rows.ids[k - 1]`. Each slice's rows are sorted once. The result does
/// not depend on the thread count.
pub fn rank_sums(rows: &RankRows, n_ids: &[usize]) -> Vec<Vec<RankSums>> {
    let none = SortedWant::default();
    if let Some(order) = packed_order(rows, n_ids) {
        return order.sums(n_ids, &none, None).0;
    }
    if rows.weights.is_empty() {
        rank_sums_with::<Unweighted>(rows, n_ids, &none).0
    } else {
        rank_sums_with::<Weighted>(rows, n_ids, &none).0
    }
}

/// Per-slice calibration states, `[spec][id]`.
pub type SortedCalibration = Vec<Vec<SliceCalib>>;

/// [`rank_sums`], and the calibration states `want` asks for, read off the same sorted order
/// (empty when `want` asks for none). Once the rows are sorted their scores are no longer
/// needed: building calibration states may take `rows.scores` for scratch, leaving it empty.
pub fn rank_sums_calibrated(
    rows: &mut RankRows,
    n_ids: &[usize],
    want: &SortedWant,
) -> (Vec<Vec<RankSums>>, SortedCalibration) {
    if let Some(order) = packed_order(rows, n_ids) {
        let spare = want
            .any()
            .then(|| std::mem::take(&mut rows.scores).into_vec());
        return order.sums(n_ids, want, spare);
    }
    if rows.weights.is_empty() {
        rank_sums_with::<Unweighted>(rows, n_ids, want)
    } else {
        rank_sums_with::<Weighted>(rows, n_ids, want)
    }
}

/// [`rank_sums_calibrated`] of rows that must stay as they are (a partial state's).
pub fn rank_sums_calibrated_shared(
    rows: &RankRows,
    n_ids: &[usize],
    want: &SortedWant,
) -> (Vec<Vec<RankSums>>, SortedCalibration) {
    if let Some(order) = packed_order(rows, n_ids) {
        return order.sums(n_ids, want, None);
    }
    if rows.weights.is_empty() {
        rank_sums_with::<Unweighted>(rows, n_ids, want)
    } else {
        rank_sums_with::<Weighted>(rows, n_ids, want)
    }
}

/// Bits that hold ids `0..n_ids`.
fn id_bits(n_ids: usize) -> u32 {
    usize::BITS - n_ids.saturating_sub(1).leading_zeros()
}

/// All rows sorted once, every spec's slice id packed beside the label in the tag.
struct PackedOrder<R> {
    recs: Vec<R>,
    shifts: Vec<u32>,
    masks: Vec<u64>,
}

/// A [`PackedOrder`] of 16-byte records, or of 8-byte ones ([`KeyLabel`]) when there are no
/// slice ids to carry and no score is negative (the key's top bit holds the label): half the
/// bytes to scatter, sort and walk for an overall ROC-AUC of probabilities.
enum Packed {
    Wide(PackedOrder<Unweighted>),
    Narrow(PackedOrder<KeyLabel>),
}

impl Packed {
    fn sums(
        &self,
        n_ids: &[usize],
        want: &SortedWant,
        spare: Option<Vec<f64>>,
    ) -> (Vec<Vec<RankSums>>, SortedCalibration) {
        match self {
            Packed::Wide(o) => packed_sums(o, n_ids, want, spare),
            Packed::Narrow(o) => packed_sums(o, n_ids, want, spare),
        }
    }
}

/// Unweighted jobs whose slice ids of all specs fit in 63 bits beside the label: one sort of
/// all rows, then one pass that serves every spec. All sums within a tie group are integer
/// counts, exact in any order, so the row order inside ties need not be fixed.
fn packed_order(rows: &RankRows, n_ids: &[usize]) -> Option<Packed> {
    let bits: Vec<u32> = n_ids[1..].iter().map(|n| id_bits(*n)).collect();
    if !rows.weights.is_empty() || bits.iter().sum::<u32>() > 63 {
        return None;
    }
    // Sorted rows (a partial state's) are in descending order: the last is the smallest.
    let range = if rows.sorted {
        (
            rows.scores.last().copied().unwrap_or(0.0),
            rows.scores.first().copied().unwrap_or(0.0),
        )
    } else {
        score_range(&rows.scores)
    };
    // -0.0 >= 0.0 too: its key is zero's.
    Some(if n_ids.len() == 1 && range.0 >= 0.0 {
        Packed::Narrow(packed_order_as(rows, &bits, range))
    } else {
        Packed::Wide(packed_order_as(rows, &bits, range))
    })
}

/// [`packed_order`] in records of type `R` (`bits`: each spec's id bits; `range`: the
/// smallest and largest score).
fn packed_order_as<R: Rec>(rows: &RankRows, bits: &[u32], range: (f64, f64)) -> PackedOrder<R> {
    let shifts: Vec<u32> = bits
        .iter()
        .scan(1u32, |at, b| {
            let s = *at;
            *at += b;
            Some(s)
        })
        .collect();
    let make = |i: usize| {
        let mut tag = rows.labels[i] as u64;
        for (ids, shift) in rows.ids.iter().zip(&shifts) {
            tag |= (ids[i] as u64) << shift;
        }
        R::new(descending_key(rows.scores[i]), tag, 1.0)
    };
    let mut recs = big_vec(rows.len());
    if rows.sorted {
        (0..rows.len())
            .into_par_iter()
            .map(make)
            .collect_into_vec(&mut recs);
    } else {
        let starts = value_scatter(&rows.scores, range, make, &mut recs);
        sort_groups(&mut recs, &starts);
    }
    let masks: Vec<u64> = bits.iter().map(|b| (1u64 << b) - 1).collect();
    PackedOrder {
        recs,
        shifts,
        masks,
    }
}

/// The rank sums and calibration states of a [`PackedOrder`]. `spare`, an f64 buffer of at
/// least the rows' length that is no longer needed, holds the scattered slices if given.
fn packed_sums<R: Rec>(
    order: &PackedOrder<R>,
    n_ids: &[usize],
    want: &SortedWant,
    spare: Option<Vec<f64>>,
) -> (Vec<Vec<RankSums>>, SortedCalibration) {
    let PackedOrder {
        recs,
        shifts,
        masks,
    } = order;
    // The walk below is sequential: the calibration states (parallel) run beside it.
    let (sums, calibration) = rayon::join(
        || packed_walk(recs, n_ids, shifts, masks),
        || {
            if !want.any() {
                return Vec::new();
            }
            // Every row lies in exactly one slice of the first spec, so the overall slice's
            // states are the sum of that spec's, in id order (one walk of the rows instead of
            // two), unless quantile edges are wanted: the overall slice's are its own.
            let from_slices = n_ids.len() > 1 && want.quantile_bins == 0;
            let mut out = vec![if from_slices {
                Vec::new()
            } else {
                vec![run_calibration(recs, want)]
            }];
            // Each spec's slices: a stable scatter of the sorted records keeps them sorted.
            // Calibration scores are probabilities, whose keys leave the top bit free: the
            // scattered records are then 8 bytes, the label in that bit.
            let narrow = recs.last().is_none_or(|r| r.key() >> 63 == 0);
            let mut by_slice: Vec<R> = Vec::new();
            let mut narrow_by_slice: Vec<KeyLabel> = spare.map_or_else(Vec::new, reuse_f64);
            for (k, n) in n_ids[1..].iter().enumerate() {
                let id = |i: usize| ((recs[i].tag() >> shifts[k]) & masks[k]) as usize;
                let slices = if narrow {
                    let make = |i: usize| KeyLabel::new(recs[i].key(), recs[i].tag(), 1.0);
                    let starts = scatter(recs.len(), *n, id, make, &mut narrow_by_slice);
                    let run = |g: usize| &narrow_by_slice[starts[g]..starts[g + 1]];
                    (0..*n)
                        .into_par_iter()
                        .map(|g| run_calibration(run(g), want))
                        .collect()
                } else {
                    let starts = scatter(recs.len(), *n, id, |i| recs[i], &mut by_slice);
                    let run = |g: usize| &by_slice[starts[g]..starts[g + 1]];
                    (0..*n)
                        .into_par_iter()
                        .map(|g| run_calibration(run(g), want))
                        .collect()
                };
                out.push(slices);
            }
            if from_slices {
                out[0] = vec![crate::reliability::sum_calibration(&out[1], want)];
            }
            out
        },
    );
    (sums, calibration)
}

/// The memory of an f64 buffer as an empty `KeyLabel` buffer of the same capacity (both
/// 8-byte, 8-aligned plain data), so that pages already touched are written again instead of
/// fresh ones being faulted in.
fn reuse_f64(v: Vec<f64>) -> Vec<KeyLabel> {
    const _: () = assert!(
        std::mem::size_of::<KeyLabel>() == std::mem::size_of::<f64>()
            && std::mem::align_of::<KeyLabel>() == std::mem::align_of::<f64>()
    );
    let mut v = std::mem::ManuallyDrop::new(v);
    let (ptr, cap) = (v.as_mut_ptr(), v.capacity());
    // SAFETY: the allocation came from a Vec<f64> of capacity `cap`; KeyLabel has the same
    // size and alignment, so the layout the allocator sees is unchanged, and length 0 claims
    // no initialized elements.
    unsafe { Vec::from_raw_parts(ptr as *mut KeyLabel, 0, cap) }
}

/// Slice accumulators (over all specs) that the parts of a [`packed_walk`] may hold at once:
/// `parts x (1 + slices)` stays under this, so jobs with very many slices walk in fewer parts.
const WALK_BUDGET: usize = 1 << 16;

/// Fewest records in a part of a [`packed_walk`].
const WALK_PART_ROWS: usize = 1 << 16;

/// Most parts of a [`packed_walk`].
const WALK_PARTS: usize = 64;

/// The part boundaries of a [`packed_walk`]: equal shares of the records, each moved forward
/// to the end of its tie group. They depend on the keys and the slice counts only (never on
/// the threads, nor on the order of records inside a tie group), so every route to the same
/// sorted keys sums the same terms in the same grouping.
fn walk_parts<R: Rec>(recs: &[R], n_slices: usize) -> Vec<usize> {
    let n = recs.len();
    let parts = (n / WALK_PART_ROWS)
        .min(WALK_BUDGET / (1 + n_slices))
        .clamp(1, WALK_PARTS);
    let mut starts = vec![0];
    for p in 1..parts {
        let mut at = (n * p / parts).max(*starts.last().unwrap());
        while at > 0 && at < n && recs[at].key() == recs[at - 1].key() {
            at += 1;
        }
        if at < n && at > *starts.last().unwrap() {
            starts.push(at);
        }
    }
    starts.push(n);
    starts
}

/// The rank walk of [`packed_sums`] over the sorted records, in parts that run in parallel.
///
/// A part's sums need the positive and negative counts of every slice above it: a first
/// parallel pass counts each part's, a prefix sum over the parts gives each part its start,
/// and the second pass walks every part from there. Each tie group is closed with the same
/// running counts as in one sequential walk, so every term is the same; the parts' sums are
/// then added in part order.
fn packed_walk<R: Rec>(
    recs: &[R],
    n_ids: &[usize],
    shifts: &[u32],
    masks: &[u64],
) -> Vec<Vec<RankSums>> {
    // Slot 0 is the overall slice, then every spec's slices in order.
    let offsets: Vec<usize> = n_ids[1..]
        .iter()
        .scan(1usize, |at, n| {
            let o = *at;
            *at += n;
            Some(o)
        })
        .collect();
    let slots = 1 + n_ids[1..].iter().sum::<usize>();
    let starts = walk_parts(recs, slots - 1);
    let slot_of = |tag: u64, k: usize| offsets[k] + ((tag >> shifts[k]) & masks[k]) as usize;
    let specs = offsets.len();
    // Pass 1: positives and all rows per slot and part (integers, exact).
    let counts: Vec<Vec<[u64; 2]>> = starts
        .par_windows(2)
        .map(|g| {
            let mut c = vec![[0u64; 2]; slots];
            if interrupted() {
                return c;
            }
            for r in &recs[g[0]..g[1]] {
                let tag = r.tag();
                let pos = tag & 1;
                c[0][0] += pos;
                c[0][1] += 1;
                for k in 0..specs {
                    let s = slot_of(tag, k);
                    c[s][0] += pos;
                    c[s][1] += 1;
                }
            }
            c
        })
        .collect();
    // Each part's starting (positives, negatives) per slot.
    let mut above = vec![[0u64; 2]; slots];
    let mut starting = Vec::with_capacity(counts.len());
    for c in &counts {
        starting.push(above.clone());
        for (a, c) in above.iter_mut().zip(c) {
            a[0] += c[0];
            a[1] += c[1];
        }
    }
    drop(counts);
    // Pass 2: every part walks from its start.
    let local: Vec<Vec<Running>> = starts
        .par_windows(2)
        .zip(starting.par_iter())
        .map(|(g, from)| {
            let mut accs: Vec<Running> = from
                .iter()
                .map(|c| Running {
                    tp: c[0] as f64,
                    fp: (c[1] - c[0]) as f64,
                    ..Running::default()
                })
                .collect();
            walk_part(&recs[g[0]..g[1]], &mut accs, slot_of, specs);
            accs
        })
        .collect();
    let mut total: Vec<RankSums> = above
        .iter()
        .map(|c| RankSums {
            pos: c[0] as f64,
            neg: (c[1] - c[0]) as f64,
            ..RankSums::default()
        })
        .collect();
    for part in &local {
        for (t, a) in total.iter_mut().zip(part) {
            t.auc_pairs += a.auc_pairs;
            t.ap_sum += a.ap_sum;
            t.tied_pairs += a.tied_pairs;
            for (d, x) in t.delong.iter_mut().zip(&a.delong) {
                *d += x;
            }
        }
    }
    let mut out = vec![vec![total[0]]];
    for (k, n) in n_ids[1..].iter().enumerate() {
        out.push(total[offsets[k]..offsets[k] + n].to_vec());
    }
    out
}

/// Walks one part of a [`packed_walk`]: `accs[0]` is the overall slice, `slot(tag, k)` the
/// slot of the record's slice in spec `k`. A single-record tie group (every group, for
/// continuous scores) is closed at once; larger ones collect the slots they touch.
fn walk_part<R: Rec>(
    recs: &[R],
    accs: &mut [Running],
    slot: impl Fn(u64, usize) -> usize,
    specs: usize,
) {
    #[inline(always)]
    fn bump(a: &mut Running, pos: f64) {
        a.run_pos += pos;
        a.run_neg += 1.0 - pos;
    }
    // The overall slice lives in a local: its running sums stay in registers.
    let mut overall = accs[0];
    let mut touched: Vec<usize> = Vec::new();
    let mut i = 0;
    let mut next_poll = POLL_ROWS;
    while i < recs.len() {
        if stop_walk(i, &mut next_poll, POLL_ROWS) {
            break;
        }
        let key = recs[i].key();
        if recs.get(i + 1).is_none_or(|r| r.key() != key) {
            let tag = recs[i].tag();
            let pos = (tag & 1) as f64;
            overall.close_one(pos);
            for k in 0..specs {
                accs[slot(tag, k)].close_one(pos);
            }
            i += 1;
            continue;
        }
        while i < recs.len() && recs[i].key() == key {
            let tag = recs[i].tag();
            let pos = (tag & 1) as f64;
            bump(&mut overall, pos);
            for k in 0..specs {
                let s = slot(tag, k);
                let a = &mut accs[s];
                if a.run_pos == 0.0 && a.run_neg == 0.0 {
                    touched.push(s);
                }
                bump(a, pos);
            }
            i += 1;
        }
        overall.close_group();
        for s in touched.drain(..) {
            accs[s].close_group();
        }
    }
    accs[0] = overall;
}

fn rank_sums_with<R: Rec>(
    rows: &RankRows,
    n_ids: &[usize],
    want: &SortedWant,
) -> (Vec<Vec<RankSums>>, SortedCalibration) {
    let n = rows.len();
    let mut buf = Buffers::<R> { recs: big_vec(n) };
    let per_spec: Vec<(Vec<RankSums>, Vec<SliceCalib>)> = n_ids
        .iter()
        .enumerate()
        .map(|(k, n_ids)| {
            let ids = if k == 0 {
                None
            } else {
                Some(rows.ids[k - 1].as_slice())
            };
            let starts = sorted_groups(rows, ids, *n_ids, &mut buf);
            let recs = &buf.recs;
            let sums = starts
                .par_windows(2)
                .map(|g| sorted_sums(&recs[g[0]..g[1]]))
                .collect();
            let calibration = if want.any() {
                starts
                    .par_windows(2)
                    .map(|g| run_calibration(&recs[g[0]..g[1]], want))
                    .collect()
            } else {
                Vec::new()
            };
            (sums, calibration)
        })
        .collect();
    let (sums, calibration): (Vec<_>, Vec<_>) = per_spec.into_iter().unzip();
    let calibration = if want.any() { calibration } else { Vec::new() };
    (sums, calibration)
}

/// Rows a replicate walk handles between two interrupt polls (each row draws up to
/// [`SLOT_CHUNK`] weights).
const REP_POLL_ROWS: usize = POLL_ROWS / 16;

/// Replicate slots handled by one task of the replicate pass.
const SLOT_CHUNK: usize = 256;

/// Rank sums of every slice of every spec in every replicate slot: `[spec][id][slot]` (see
/// `bootstrap`). Each spec's rows are sorted once; each (slice, block of slots) task then walks
/// the sorted rows once, drawing the rows' replicate weights as it goes. Every slot's sums are
/// added in the sorted order, so the result does not depend on the thread count.
pub fn replicate_rank_sums(
    rows: &RankRows,
    n_ids: &[usize],
    resampler: &Resampler,
    slots: usize,
    want_ap: bool,
) -> Vec<Vec<Vec<RankSums>>> {
    if rows.weights.is_empty() {
        replicate_rank_sums_with::<Unweighted>(rows, n_ids, resampler, slots, want_ap)
    } else {
        replicate_rank_sums_with::<Weighted>(rows, n_ids, resampler, slots, want_ap)
    }
}

fn replicate_rank_sums_with<R: Rec>(
    rows: &RankRows,
    n_ids: &[usize],
    resampler: &Resampler,
    slots: usize,
    want_ap: bool,
) -> Vec<Vec<Vec<RankSums>>> {
    let mut buf = Buffers::<R> {
        recs: big_vec(rows.len()),
    };
    let blocks = slots.div_ceil(SLOT_CHUNK);
    n_ids
        .iter()
        .enumerate()
        .map(|(k, n)| {
            let ids = (k > 0).then(|| rows.ids[k - 1].as_slice());
            // Tagging records with the rows' resampling keys (63 bits) keeps the walks below
            // sequential: no lookups by row position.
            let starts = sorted_groups_by(rows, ids, *n, &mut buf, |i| rows.row_keys[i]);
            let recs = &buf.recs;
            let groups = starts.len() - 1;
            let parts: Vec<Vec<RankSums>> = (0..groups * blocks)
                .into_par_iter()
                .map(|t| {
                    let (g, b) = (t / blocks, t % blocks);
                    let from = b * SLOT_CHUNK;
                    let width = SLOT_CHUNK.min(slots - from);
                    let run = &recs[starts[g]..starts[g + 1]];
                    // An interrupted job skips its remaining walks (their sums are discarded).
                    let run = if interrupted() { &run[..0] } else { run };
                    walk_replicates(run, resampler, from, width, want_ap)
                })
                .collect();
            let mut per_id: Vec<Vec<RankSums>> = Vec::with_capacity(groups);
            for chunk in parts.chunks(blocks) {
                per_id.push(chunk.concat());
            }
            per_id
        })
        .collect()
}

/// One walk over a sorted run for slots `from..from + width`.
fn walk_replicates<R: Rec>(
    run: &[R],
    resampler: &Resampler,
    from: usize,
    width: usize,
    want_ap: bool,
) -> Vec<RankSums> {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked just above).
            return unsafe { walk_replicates_avx2(run, resampler, from, width, want_ap) };
        }
    }
    walk_replicates_body(run, resampler, from, width, want_ap, false)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn walk_replicates_avx2<R: Rec>(
    run: &[R],
    resampler: &Resampler,
    from: usize,
    width: usize,
    want_ap: bool,
) -> Vec<RankSums> {
    walk_replicates_body(run, resampler, from, width, want_ap, true)
}

/// The same sums as [`Running`] (without DeLong placements), slot by slot. Plain adds,
/// multiplies and divides only, so the vectorized and scalar builds give the same bits.
#[inline(always)]
fn walk_replicates_body<R: Rec>(
    run: &[R],
    resampler: &Resampler,
    from: usize,
    width: usize,
    want_ap: bool,
    simd: bool,
) -> Vec<RankSums> {
    if !R::WEIGHTED && !want_ap && from + width <= resampler.replicates() && run.len() <= COUNT_RUN
    {
        return walk_counts(run, resampler, from, width, simd);
    }
    let z = || vec![0.0f64; width];
    let (mut tp, mut fp, mut rp, mut rn) = (z(), z(), z(), z());
    let (mut auc, mut ap, mut tied, mut kw) = (z(), z(), z(), z());
    // ROC-AUC only, and only bootstrap slots in this block: the fused single-row path.
    let fused = !want_ap && from + width <= resampler.replicates();
    let mut i = 0;
    // Each row draws `width` replicate weights: poll more often than a plain walk.
    let mut next_poll = REP_POLL_ROWS;
    while i < run.len() {
        if stop_walk(i, &mut next_poll, REP_POLL_ROWS) {
            break;
        }
        let key = run[i].key();
        if i + 1 == run.len() || run[i + 1].key() != key {
            // A tie group of one row (the common case for continuous scores): closing it
            // touches only the running sums its class changes. Same bits as the general path,
            // whose extra terms are all +0.0.
            let tag = run[i].tag();
            if fused {
                // Draw and accumulate in one vectorized loop (no weight buffer).
                let (rk, w) = (tag >> 1, run[i].w());
                let k = |s: usize| resampler.poisson(rk, (from + s) as u32) as i32 as f64 * w;
                if tag & 1 == 1 {
                    for (s, t) in tp.iter_mut().enumerate() {
                        *t += k(s);
                    }
                } else {
                    for (s, (a, (f, t))) in auc.iter_mut().zip(fp.iter_mut().zip(&tp)).enumerate() {
                        let ks = k(s);
                        *a += ks * *t;
                        *f += ks;
                    }
                }
                i += 1;
                continue;
            }
            resampler.fill(tag >> 1, run[i].w(), from, &mut kw);
            if tag & 1 == 1 {
                if want_ap {
                    for s in 0..width {
                        let t = tp[s] + kw[s];
                        tp[s] = t;
                        ap[s] += kw[s] * (t / (t + fp[s]).max(f64::MIN_POSITIVE));
                    }
                } else {
                    add_into(&mut tp, &kw);
                }
            } else {
                for s in 0..width {
                    auc[s] += kw[s] * tp[s];
                    fp[s] += kw[s];
                }
            }
            i += 1;
            continue;
        }
        while i < run.len() && run[i].key() == key {
            let tag = run[i].tag();
            resampler.fill(tag >> 1, run[i].w(), from, &mut kw);
            if tag & 1 == 1 {
                add_into(&mut rp, &kw);
            } else {
                add_into(&mut rn, &kw);
            }
            i += 1;
        }
        if want_ap {
            close_slots::<true>(
                &mut rp, &mut rn, &mut tp, &mut fp, &mut auc, &mut ap, &mut tied,
            );
        } else {
            close_slots::<false>(
                &mut rp, &mut rn, &mut tp, &mut fp, &mut auc, &mut ap, &mut tied,
            );
        }
    }
    (0..width)
        .map(|s| RankSums {
            pos: tp[s],
            neg: fp[s],
            auc_pairs: auc[s],
            ap_sum: ap[s],
            tied_pairs: tied[s],
            delong: [0.0; 6],
        })
        .collect()
}

/// The longest run the integer walk takes: a slot's count is at most 12 per row (see
/// `Resampler::poisson`), so `k x tp <= 144 x 2^24 < 2^32` and twice the pair count
/// `<= 2 x (12 x 2^24)^2 < 2^64`.
const COUNT_RUN: usize = 1 << 24;

/// [`walk_replicates_body`] for unweighted rows, ROC-AUC only, bootstrap slots only: every
/// replicate weight is a small integer, so the sums are kept as exact integers (counts in u32,
/// twice the pair counts in u64) and the draws run eight lanes wide. The result equals the
/// floating-point walk's whenever that one is exact (sums below 2^53), and is exact beyond.
#[inline(always)]
fn walk_counts<R: Rec>(
    run: &[R],
    resampler: &Resampler,
    from: usize,
    width: usize,
    simd: bool,
) -> Vec<RankSums> {
    let draws = |rk: u64, k: &mut [u32]| {
        #[cfg(target_arch = "x86_64")]
        if simd {
            // SAFETY: `simd` is true only on the AVX2 path of `walk_replicates`.
            unsafe { resampler.draws_avx2(rk, from as u32, k) };
            return;
        }
        resampler.draws(rk, from as u32, k)
    };
    let z32 = || vec![0u32; width];
    let (mut k, mut tp, mut fp, mut rp, mut rn) = (z32(), z32(), z32(), z32(), z32());
    let (mut auc2, mut tied) = (vec![0u64; width], vec![0u64; width]);
    let mut i = 0;
    let mut next_poll = REP_POLL_ROWS;
    while i < run.len() {
        if stop_walk(i, &mut next_poll, REP_POLL_ROWS) {
            break;
        }
        let key = run[i].key();
        if i + 1 == run.len() || run[i + 1].key() != key {
            let tag = run[i].tag();
            draws(tag >> 1, &mut k);
            if tag & 1 == 1 {
                for (t, k) in tp.iter_mut().zip(&k) {
                    *t += *k;
                }
            } else {
                for ((a, f), (t, k)) in auc2.iter_mut().zip(fp.iter_mut()).zip(tp.iter().zip(&k)) {
                    *a += 2 * (*k * *t) as u64;
                    *f += *k;
                }
            }
            i += 1;
            continue;
        }
        while i < run.len() && run[i].key() == key {
            let tag = run[i].tag();
            draws(tag >> 1, &mut k);
            let acc = if tag & 1 == 1 { &mut rp } else { &mut rn };
            for (a, k) in acc.iter_mut().zip(&k) {
                *a += *k;
            }
            i += 1;
        }
        for s in 0..width {
            let (p, n) = (rp[s] as u64, rn[s] as u64);
            auc2[s] += 2 * n * tp[s] as u64 + p * n;
            tied[s] += p * n;
            tp[s] += rp[s];
            fp[s] += rn[s];
            rp[s] = 0;
            rn[s] = 0;
        }
    }
    (0..width)
        .map(|s| RankSums {
            pos: tp[s] as f64,
            neg: fp[s] as f64,
            auc_pairs: auc2[s] as f64 * 0.5,
            ap_sum: 0.0,
            tied_pairs: tied[s] as f64,
            delong: [0.0; 6],
        })
        .collect()
}

/// Closes a tie group in every slot (as [`Running::close_group`]). A slot without positives
/// in the group adds `0 * (t / max(t + f, tiny)) = +0.0` to AP: no change, and no 0/0.
#[inline(always)]
fn close_slots<const AP: bool>(
    rp: &mut [f64],
    rn: &mut [f64],
    tp: &mut [f64],
    fp: &mut [f64],
    auc: &mut [f64],
    ap: &mut [f64],
    tied: &mut [f64],
) {
    for s in 0..rp.len() {
        let (p, n) = (rp[s], rn[s]);
        auc[s] += n * tp[s] + 0.5 * p * n;
        tied[s] += p * n;
        let (t, f) = (tp[s] + p, fp[s] + n);
        tp[s] = t;
        fp[s] = f;
        if AP {
            ap[s] += p * (t / (t + f).max(f64::MIN_POSITIVE));
        }
        rp[s] = 0.0;
        rn[s] = 0.0;
    }
}

/// Rank sums from a score histogram laid out as `[bin * 2 + label]`, bins ascending in score;
/// each bin is treated as one tie group.
pub fn rank_sums_binned(hist: &[f64]) -> RankSums {
    let mut r = Running::default();
    for bin in hist.chunks_exact(2).rev() {
        r.run_neg = bin[0];
        r.run_pos = bin[1];
        if r.run_neg > 0.0 || r.run_pos > 0.0 {
            r.close_group();
        }
    }
    r.sums()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Col;

    fn brute_auc(scores: &[f64], labels: &[u8]) -> f64 {
        let (mut num, mut p, mut n) = (0.0, 0.0, 0.0);
        for i in 0..scores.len() {
            if labels[i] == 1 {
                p += 1.0;
            } else {
                n += 1.0;
            }
            for j in 0..scores.len() {
                if labels[i] == 1 && labels[j] == 0 {
                    num += if scores[i] > scores[j] {
                        1.0
                    } else if scores[i] == scores[j] {
                        0.5
                    } else {
                        0.0
                    };
                }
            }
        }
        num / (p * n)
    }

    fn rows(scores: Vec<f64>, labels: Vec<u8>) -> RankRows {
        RankRows {
            scores: Col::from(scores),
            labels: Col::from(labels),
            ..Default::default()
        }
    }

    #[test]
    fn groups_are_sorted_descending_and_unique() {
        let n = 20_000;
        let scores: Vec<f64> = (0..n)
            .map(|i| ((i * 7919) % 1000) as f64 / 1000.0 - 0.3)
            .collect();
        let labels = vec![0u8; n];
        let ids: Vec<u32> = (0..n).map(|i| (i % 3) as u32).collect();
        let r = rows(scores.clone(), labels);
        for (ids, n_ids) in [(None, 1), (Some(ids.as_slice()), 3)] {
            let mut buf = Buffers::<Weighted> { recs: Vec::new() };
            let starts = sorted_groups(&r, ids, n_ids, &mut buf);
            let recs = &buf.recs;
            assert_eq!(recs.len(), n);
            for g in starts.windows(2) {
                for w in recs[g[0]..g[1]].windows(2) {
                    let (a, b) = ((w[0].tag() >> 1) as usize, (w[1].tag() >> 1) as usize);
                    assert!(scores[a] > scores[b] || (scores[a] == scores[b] && a < b));
                    if let Some(ids) = ids {
                        assert_eq!(ids[a], ids[b]);
                    }
                }
            }
        }
    }

    #[test]
    fn packed_pass_equals_one_sort_per_slice() {
        let n = 30_000;
        let scores: Vec<f64> = (0..n).map(|i| ((i * 7919) % 101) as f64 / 100.0).collect();
        let labels: Vec<u8> = (0..n).map(|i| ((i * 13) % 7 < 3) as u8).collect();
        let ids = vec![
            (0..n).map(|i| (i % 5) as u32).collect::<Vec<_>>(),
            (0..n).map(|i| ((i / 7) % 11) as u32).collect(),
        ];
        let r = RankRows {
            scores: Col::from(scores),
            labels: Col::from(labels),
            weights: vec![].into(),
            ids,
            row_keys: vec![].into(),
            ..Default::default()
        };
        let order = packed_order(&r, &[1, 5, 11]).unwrap();
        let packed = order.sums(&[1, 5, 11], &SortedWant::default(), None).0;
        let separate = rank_sums_with::<Unweighted>(&r, &[1, 5, 11], &SortedWant::default()).0;
        assert_eq!(packed, separate);
    }

    /// Rows large enough for several walk parts, with ties across part borders.
    fn many_rows(n: usize, distinct: usize, offset: f64) -> RankRows {
        let scores: Vec<f64> = (0..n)
            .map(|i| ((i * 7919) % distinct) as f64 / distinct as f64 + offset)
            .collect();
        let labels: Vec<u8> = (0..n).map(|i| ((i * 13) % 7 < 3) as u8).collect();
        RankRows {
            scores: Col::from(scores),
            labels: Col::from(labels),
            ids: vec![
                (0..n).map(|i| (i % 5) as u32).collect::<Vec<_>>(),
                (0..n).map(|i| ((i / 7) % 11) as u32).collect(),
            ],
            ..Default::default()
        }
    }

    fn assert_close(a: &[Vec<RankSums>], b: &[Vec<RankSums>]) {
        let close = |x: f64, y: f64| (x - y).abs() <= 1e-12 * x.abs().max(y.abs()).max(1.0);
        assert_eq!(a.len(), b.len());
        for (a, b) in a.iter().flatten().zip(b.iter().flatten()) {
            // Counts and pair counts are integers: exact in any grouping.
            assert_eq!(
                (a.pos, a.neg, a.auc_pairs, a.tied_pairs),
                (b.pos, b.neg, b.auc_pairs, b.tied_pairs)
            );
            assert!(close(a.ap_sum, b.ap_sum), "{a:?} {b:?}");
            for (x, y) in a.delong.iter().zip(&b.delong) {
                assert!(close(*x, *y), "{a:?} {b:?}");
            }
        }
    }

    #[test]
    fn a_walk_in_parts_equals_one_sequential_walk() {
        // Continuous scores (single-record groups) and 1,000 values (large tie groups).
        for distinct in [1_000_003, 1_000] {
            let r = many_rows(400_000, distinct, 0.0);
            let n_ids = [1, 5, 11];
            let order = packed_order(&r, &n_ids).unwrap();
            let Packed::Wide(o) = &order else {
                panic!("slices need wide records")
            };
            assert!(walk_parts(&o.recs, 16).len() > 2, "several parts");
            let packed = order.sums(&n_ids, &SortedWant::default(), None).0;
            let separate = rank_sums_with::<Unweighted>(&r, &n_ids, &SortedWant::default()).0;
            assert_close(&packed, &separate);
        }
    }

    #[test]
    fn parts_end_at_tie_group_borders() {
        let r = many_rows(300_000, 7, 0.0);
        let Packed::Wide(o) = packed_order(&r, &[1, 5, 11]).unwrap() else {
            panic!("slices need wide records")
        };
        let parts = walk_parts(&o.recs, 16);
        assert!(parts.len() > 2);
        for p in &parts[1..parts.len() - 1] {
            assert_ne!(o.recs[*p].key(), o.recs[p - 1].key());
        }
    }

    #[test]
    fn narrow_records_give_the_wide_bits_and_sorted_rows_the_unsorted_bits() {
        for (distinct, offset) in [(1_000_003, 0.0), (1_000, 0.0), (1_000, -0.5)] {
            let mut r = many_rows(400_000, distinct, offset);
            r.ids.clear();
            let order = packed_order(&r, &[1]).unwrap();
            assert_eq!(matches!(order, Packed::Narrow(_)), offset >= 0.0);
            let got = order.sums(&[1], &SortedWant::default(), None).0;
            let range = score_range(&r.scores);
            let wide = packed_order_as::<Unweighted>(&r, &[], range);
            assert_eq!(
                got,
                packed_sums(&wide, &[1], &SortedWant::default(), None).0
            );
            // The same rows sorted by descending score, as a partial state holds them.
            let mut idx: Vec<usize> = (0..r.len()).collect();
            idx.sort_by(|a, b| r.scores[*b].total_cmp(&r.scores[*a]));
            let sorted = RankRows {
                scores: idx.iter().map(|i| r.scores[*i]).collect(),
                labels: idx.iter().map(|i| r.labels[*i]).collect(),
                sorted: true,
                ..Default::default()
            };
            assert_eq!(got, rank_sums(&sorted, &[1]));
            let brute = rank_sums_with::<Unweighted>(&r, &[1], &SortedWant::default()).0;
            assert_close(&got, &brute);
        }
    }

    #[test]
    fn scores_of_extreme_ranges_sort_correctly() {
        // A subnormal range (the bucket scale overflows), a range that overflows, one value,
        // and mixed signs: every route must match the brute-force AUC.
        let tiny = f64::from_bits(1);
        let cases: Vec<Vec<f64>> = vec![
            (0..300).map(|i| (i % 7) as f64 * tiny).collect(),
            (0..300)
                .map(|i| {
                    if i % 3 == 0 {
                        -1.7e308
                    } else {
                        1.7e308 * ((i % 5) as f64 / 5.0)
                    }
                })
                .collect(),
            vec![0.25; 300],
            (0..300).map(|i| ((i * 37) % 11) as f64 - 5.0).collect(),
        ];
        for scores in cases {
            let labels: Vec<u8> = (0..scores.len())
                .map(|i| ((i * 13) % 5 < 2) as u8)
                .collect();
            let want = brute_auc(&scores, &labels);
            let s = rank_sums(&rows(scores.clone(), labels.clone()), &[1])[0][0];
            assert_eq!(s.auc_pairs / (s.pos * s.neg), want, "{:?}", &scores[..5]);
        }
    }

    #[test]
    fn score_of_key_inverts_the_key() {
        for x in [
            0.0,
            -0.0,
            1.0,
            0.5,
            1e-300,
            -2.5,
            f64::MAX,
            f64::MIN_POSITIVE,
            -1e-310,
        ] {
            let back = score_of_key(descending_key(x));
            assert_eq!(
                back.to_bits(),
                (if x == 0.0 { 0.0 } else { x }).to_bits(),
                "{x}"
            );
        }
    }

    #[test]
    fn negative_zero_ties_with_zero() {
        assert_eq!(descending_key(-0.0), descending_key(0.0));
        assert!(descending_key(-1.0) > descending_key(0.5));
    }

    #[test]
    fn auc_matches_brute_force_with_ties() {
        let scores: Vec<f64> = (0..300).map(|i| ((i * 37) % 11) as f64 / 10.0).collect();
        let labels: Vec<u8> = (0..300).map(|i| ((i * 13) % 7 < 3) as u8).collect();
        let r = rank_sums(&rows(scores.clone(), labels.clone()), &[1])[0][0];
        let auc = r.auc_pairs / (r.pos * r.neg);
        assert!((auc - brute_auc(&scores, &labels)).abs() < 1e-12);
    }

    /// Rank sums of specs `[1, 3]` from a weighted pass with slot `s`'s replicate weights.
    fn slot_sums(r: &Resampler, rows: &RankRows, slots: usize, s: usize) -> Vec<Vec<RankSums>> {
        let mut kw = vec![0.0; slots];
        let weights: Vec<f64> = (0..rows.len())
            .map(|i| {
                let w = rows.weights.get(i).copied().unwrap_or(1.0);
                r.fill(rows.row_keys[i], w, 0, &mut kw);
                kw[s]
            })
            .collect();
        let direct = RankRows {
            weights: Col::from(weights),
            row_keys: vec![].into(),
            ..rows.clone()
        };
        rank_sums_with::<Weighted>(&direct, &[1, 3], &SortedWant::default()).0
    }

    #[test]
    fn replicate_sums_equal_a_weighted_pass_per_replicate() {
        let n = 3_000;
        let scores: Vec<f64> = (0..n).map(|i| ((i * 7919) % 97) as f64 / 96.0).collect();
        let labels: Vec<u8> = (0..n).map(|i| ((i * 13) % 7 < 3) as u8).collect();
        let weights: Vec<f64> = (0..n).map(|i| 0.5 + (i % 4) as f64).collect();
        let ids = vec![(0..n).map(|i| (i % 3) as u32).collect::<Vec<_>>()];
        let r = crate::bootstrap::Resampler::new(11, 70);
        let row_keys: Vec<u64> = (0..n as u64).map(|i| r.row_key(i)).collect();
        let rows = RankRows {
            scores: Col::from(scores.clone()),
            labels: Col::from(labels.clone()),
            weights: Col::from(weights.clone()),
            ids: ids.clone(),
            row_keys: Col::from(row_keys.clone()),
            ..Default::default()
        };
        let slots = 70 + crate::bootstrap::JACK_GROUPS;
        let reps = replicate_rank_sums(&rows, &[1, 3], &r, slots, true);
        for s in [0usize, 1, 63, 64, 69, 70, 75, 89] {
            let direct = slot_sums(&r, &rows, slots, s);
            for k in 0..2 {
                for (id, d) in direct[k].iter().enumerate() {
                    let x = reps[k][id][s];
                    for (a, b) in [
                        (x.pos, d.pos),
                        (x.neg, d.neg),
                        (x.auc_pairs, d.auc_pairs),
                        (x.ap_sum, d.ap_sum),
                    ] {
                        assert!(
                            (a - b).abs() <= 1e-12 * b.abs().max(1.0),
                            "slot {s}: {a} vs {b}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn integer_walk_equals_a_weighted_pass_and_the_scalar_draws() {
        // Unweighted ROC-AUC bootstrap takes the integer walk: with ties (97 distinct scores)
        // and without, it must give exactly the sums of a weighted pass per replicate.
        let n = 2_000;
        for distinct in [97usize, n] {
            let scores: Vec<f64> = (0..n).map(|i| ((i * 7919) % distinct) as f64).collect();
            let labels: Vec<u8> = (0..n).map(|i| ((i * 13) % 7 < 3) as u8).collect();
            let ids = vec![(0..n).map(|i| (i % 3) as u32).collect::<Vec<_>>()];
            let r = crate::bootstrap::Resampler::new(5, 300);
            let row_keys: Vec<u64> = (0..n as u64).map(|i| r.row_key(i)).collect();
            let rows = RankRows {
                scores: Col::from(scores.clone()),
                labels: Col::from(labels.clone()),
                weights: vec![].into(),
                ids: ids.clone(),
                row_keys: Col::from(row_keys.clone()),
                ..Default::default()
            };
            let reps = replicate_rank_sums(&rows, &[1, 3], &r, 300, false);
            for s in [0usize, 7, 8, 255, 256, 299] {
                let direct = slot_sums(&r, &rows, 300, s);
                for k in 0..2 {
                    for (id, d) in direct[k].iter().enumerate() {
                        let x = reps[k][id][s];
                        assert_eq!(
                            (x.pos, x.neg, x.auc_pairs, x.tied_pairs),
                            (d.pos, d.neg, d.auc_pairs, d.tied_pairs),
                            "slot {s}"
                        );
                    }
                }
            }
            // The vectorized draws give the scalar draws' integers (odd widths and offsets).
            let mut recs = vec![Unweighted::default(); n];
            for (i, rec) in recs.iter_mut().enumerate() {
                *rec = Unweighted::new(
                    descending_key(scores[i]),
                    row_keys[i] << 1 | labels[i] as u64,
                    1.0,
                );
            }
            recs.sort_by_key(|r| r.order());
            for (from, width) in [(0, 256), (3, 61), (256, 44)] {
                let a = walk_replicates_body(&recs, &r, from, width, false, false);
                let b = walk_replicates(&recs, &r, from, width, false);
                for (x, y) in a.iter().zip(&b) {
                    assert_eq!((x.pos, x.neg, x.auc_pairs), (y.pos, y.neg, y.auc_pairs));
                }
            }
        }
    }

    #[test]
    fn delong_variance_matches_the_placements() {
        let scores = [0.9, 0.8, 0.8, 0.7, 0.6, 0.6, 0.5, 0.3, 0.3, 0.1];
        let labels = [1u8, 1, 0, 1, 0, 1, 0, 0, 1, 0];
        let r = rank_sums(&rows(scores.to_vec(), labels.to_vec()), &[1])[0][0];
        // Direct placements.
        let pos: Vec<f64> = (0..10)
            .filter(|i| labels[*i] == 1)
            .map(|i| scores[i])
            .collect();
        let neg: Vec<f64> = (0..10)
            .filter(|i| labels[*i] == 0)
            .map(|i| scores[i])
            .collect();
        let psi = |x: f64, y: f64| {
            if x > y {
                1.0
            } else if x == y {
                0.5
            } else {
                0.0
            }
        };
        let v10: Vec<f64> = pos
            .iter()
            .map(|x| neg.iter().map(|y| psi(*x, *y)).sum::<f64>() / neg.len() as f64)
            .collect();
        let v01: Vec<f64> = neg
            .iter()
            .map(|y| pos.iter().map(|x| psi(*x, *y)).sum::<f64>() / pos.len() as f64)
            .collect();
        let var = |v: &[f64]| {
            let m = v.iter().sum::<f64>() / v.len() as f64;
            v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / v.len() as f64
        };
        let (a, b) = r.delong_variances().unwrap();
        assert!(
            (a - var(&v10)).abs() < 1e-12 && (b - var(&v01)).abs() < 1e-12,
            "{a} {b}"
        );
        // Acceleration from the influence values U = (V - AUC) / class size.
        let auc = v10.iter().sum::<f64>() / v10.len() as f64;
        let u: Vec<f64> = v10
            .iter()
            .map(|v| (v - auc) / pos.len() as f64)
            .chain(v01.iter().map(|v| (v - auc) / neg.len() as f64))
            .collect();
        let s2: f64 = u.iter().map(|x| x * x).sum();
        let s3: f64 = u.iter().map(|x| x * x * x).sum();
        let accel = s3 / (6.0 * s2.powf(1.5));
        assert!((r.delong_acceleration().unwrap() - accel).abs() < 1e-12);
    }
}
