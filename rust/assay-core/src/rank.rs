//! Exact ROC-AUC and average precision from one descending sort of the scores.
//!
//! The rows are sorted once (a parallel bucket sort on an order-preserving key, ties broken by
//! row position so the order is unique); every slice spec then walks that single order, keeping
//! per-slice running sums in dense arrays. Tied scores form one threshold: a positive-negative
//! pair inside a tie group counts one half toward AUC, and AP adds precision once per distinct
//! threshold, exactly as scikit-learn's `roc_auc_score` and `average_precision_score` do.

use rayon::prelude::*;

use crate::metrics::RankSums;

/// A sort record: the descending key of the score and the row position.
type Rec = (u64, u64);

/// Maps a finite f64 to a u64 whose ascending order is the descending order of the scores.
#[inline]
fn descending_key(x: f64) -> u64 {
    let x = if x == 0.0 { 0.0 } else { x }; // -0.0 and 0.0 are the same score
    let b = x.to_bits();
    let asc = if b >> 63 == 1 { !b } else { b | (1 << 63) };
    !asc
}

struct SyncPtr(*mut Rec);
unsafe impl Sync for SyncPtr {}
unsafe impl Send for SyncPtr {}

/// Row positions sorted by descending score, ties by ascending position, with their keys.
pub fn sort_descending(scores: &[f64]) -> Vec<Rec> {
    let n = scores.len();
    if n == 0 {
        return Vec::new();
    }
    let (lo, hi) = scores
        .par_iter()
        .fold(|| (f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| (a.min(*x), b.max(*x)))
        .reduce(|| (f64::INFINITY, f64::NEG_INFINITY), |(a, b), (c, d)| (a.min(c), b.max(d)));
    let range = hi - lo;
    let buckets = if range.is_finite() && range > 0.0 { (n / 32).clamp(1, 1 << 22) } else { 1 };
    let scale = buckets as f64 / range;
    // The bucket is a non-decreasing function of the score (each step rounds monotonically),
    // so sorting within buckets yields the global order.
    let bucket_of = |x: f64| -> usize {
        if buckets == 1 {
            return 0;
        }
        let b = ((x - lo) * scale) as usize;
        buckets - 1 - b.min(buckets - 1)
    };

    let parts = rayon::current_num_threads().max(1);
    let part_len = n.div_ceil(parts);
    let hists: Vec<Vec<u32>> = (0..parts)
        .into_par_iter()
        .map(|p| {
            let mut h = vec![0u32; buckets];
            for x in &scores[(p * part_len).min(n)..((p + 1) * part_len).min(n)] {
                h[bucket_of(*x)] += 1;
            }
            h
        })
        .collect();
    // offsets[p][b]: where part p starts writing bucket b.
    let mut offsets = vec![vec![0usize; buckets]; parts];
    let mut starts = Vec::with_capacity(buckets + 1);
    let mut acc = 0usize;
    for b in 0..buckets {
        starts.push(acc);
        for p in 0..parts {
            offsets[p][b] = acc;
            acc += hists[p][b] as usize;
        }
    }
    starts.push(acc);
    drop(hists);

    let mut out: Vec<Rec> = Vec::with_capacity(n);
    let ptr = SyncPtr(out.as_mut_ptr());
    offsets.into_par_iter().enumerate().for_each(|(p, mut off)| {
        let ptr = &ptr;
        let base = (p * part_len).min(n);
        for (j, x) in scores[base..((p + 1) * part_len).min(n)].iter().enumerate() {
            let b = bucket_of(*x);
            // SAFETY: the offsets give every (part, bucket) a disjoint range of [0, n), and
            // each part writes exactly its histogram's count into each bucket.
            unsafe { ptr.0.add(off[b]).write((descending_key(*x), (base + j) as u64)) };
            off[b] += 1;
        }
    });
    // SAFETY: all n slots were written above.
    unsafe { out.set_len(n) };

    let mut slices: Vec<&mut [Rec]> = Vec::with_capacity(buckets);
    let mut rest: &mut [Rec] = &mut out;
    for b in 0..buckets {
        let (head, tail) = rest.split_at_mut(starts[b + 1] - starts[b]);
        if head.len() > 1 {
            slices.push(head);
        }
        rest = tail;
    }
    slices.into_par_iter().with_min_len(64).for_each(|s| s.sort_unstable());
    out
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
    touched: bool,
}

impl Running {
    /// Closes a tie group: its pairs against everything above count fully, within it half.
    #[inline]
    fn close_group(&mut self) {
        self.auc_pairs += self.run_neg * self.tp + 0.5 * self.run_pos * self.run_neg;
        self.tied_pairs += self.run_pos * self.run_neg;
        self.tp += self.run_pos;
        self.fp += self.run_neg;
        if self.run_pos > 0.0 {
            self.ap_sum += self.run_pos * self.tp / (self.tp + self.fp);
        }
        self.run_pos = 0.0;
        self.run_neg = 0.0;
        self.touched = false;
    }

    fn sums(&self) -> RankSums {
        RankSums {
            pos: self.tp,
            neg: self.fp,
            auc_pairs: self.auc_pairs,
            ap_sum: self.ap_sum,
            tied_pairs: self.tied_pairs,
        }
    }
}

/// Rank sums of every slice of one spec (`ids = None`: the overall slice) over the sorted order.
pub fn rank_sums(order: &[Rec], labels: &[u8], weights: &[f64], ids: Option<&[u32]>, n_ids: usize) -> Vec<RankSums> {
    let mut acc = vec![Running::default(); n_ids.max(1)];
    let mut touched: Vec<u32> = Vec::new();
    let mut i = 0;
    while i < order.len() {
        let key = order[i].0;
        let mut j = i;
        while j < order.len() && order[j].0 == key {
            let row = order[j].1 as usize;
            let s = ids.map_or(0, |ids| ids[row]);
            let w = if weights.is_empty() { 1.0 } else { weights[row] };
            let a = &mut acc[s as usize];
            if labels[row] == 1 {
                a.run_pos += w;
            } else {
                a.run_neg += w;
            }
            if !a.touched {
                a.touched = true;
                touched.push(s);
            }
            j += 1;
        }
        for s in touched.drain(..) {
            acc[s as usize].close_group();
        }
        i = j;
    }
    acc.iter().map(Running::sums).collect()
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
                    num += if scores[i] > scores[j] { 1.0 } else if scores[i] == scores[j] { 0.5 } else { 0.0 };
                }
            }
        }
        num / (p * n)
    }

    #[test]
    fn sort_is_descending_and_unique() {
        let scores: Vec<f64> = (0..10_000).map(|i| ((i * 7919) % 1000) as f64 / 1000.0 - 0.3).collect();
        let order = sort_descending(&scores);
        assert_eq!(order.len(), scores.len());
        for w in order.windows(2) {
            let (a, b) = (scores[w[0].1 as usize], scores[w[1].1 as usize]);
            assert!(a > b || (a == b && w[0].1 < w[1].1));
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
        let order = sort_descending(&scores);
        let r = rank_sums(&order, &labels, &[], None, 1)[0];
        let auc = r.auc_pairs / (r.pos * r.neg);
        assert!((auc - brute_auc(&scores, &labels)).abs() < 1e-12);
    }
}
