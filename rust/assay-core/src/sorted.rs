//! Sort keys and records shared by the rank metrics (`rank`) and the calibration walks
//! (`reliability`) over one sorted order, and quantiles of sorted values.

use rayon::prelude::*;

use crate::runtime::{big_vec, interrupted};

/// A sort record: the descending-order key of the score, `row << 1 | label`, and (weighted
/// jobs only) the weight. Carrying label and weight keeps passes over the sorted order
/// sequential; unweighted jobs use 16-byte records to move a third less memory.
pub trait Rec: Copy + Default + Send + Sync {
    /// Whether records carry a weight (`w()` is 1 otherwise).
    const WEIGHTED: bool;
    fn new(key: u64, tag: u64, w: f64) -> Self;
    fn key(&self) -> u64;
    fn tag(&self) -> u64;
    fn w(&self) -> f64;
    #[inline]
    fn order(&self) -> (u64, u64) {
        (self.key(), self.tag())
    }
}

#[derive(Clone, Copy, Debug, Default)]
pub struct Unweighted(pub u64, pub u64);

#[derive(Clone, Copy, Debug, Default)]
pub struct Weighted(pub u64, pub u64, pub f64);

impl Rec for Unweighted {
    const WEIGHTED: bool = false;
    #[inline]
    fn new(key: u64, tag: u64, _: f64) -> Self {
        Unweighted(key, tag)
    }
    #[inline]
    fn key(&self) -> u64 {
        self.0
    }
    #[inline]
    fn tag(&self) -> u64 {
        self.1
    }
    #[inline]
    fn w(&self) -> f64 {
        1.0
    }
}

impl Rec for Weighted {
    const WEIGHTED: bool = true;
    #[inline]
    fn new(key: u64, tag: u64, w: f64) -> Self {
        Weighted(key, tag, w)
    }
    #[inline]
    fn key(&self) -> u64 {
        self.0
    }
    #[inline]
    fn tag(&self) -> u64 {
        self.1
    }
    #[inline]
    fn w(&self) -> f64 {
        self.2
    }
}

/// An unweighted record in 8 bytes: the key of a non-negative score (top bit clear) with the
/// label in the top bit. Ties keep their order of construction (`order` is the key).
#[derive(Clone, Copy, Debug, Default)]
#[repr(transparent)]
pub struct KeyLabel(pub u64);

impl Rec for KeyLabel {
    const WEIGHTED: bool = false;
    #[inline]
    fn new(key: u64, tag: u64, _: f64) -> Self {
        debug_assert!(key >> 63 == 0, "the key of a negative score");
        KeyLabel(key | (tag & 1) << 63)
    }
    #[inline]
    fn key(&self) -> u64 {
        self.0 & !(1 << 63)
    }
    #[inline]
    fn tag(&self) -> u64 {
        self.0 >> 63
    }
    #[inline]
    fn w(&self) -> f64 {
        1.0
    }
}

pub(crate) struct SyncPtr<T>(pub *mut T);
unsafe impl<T> Sync for SyncPtr<T> {}
unsafe impl<T> Send for SyncPtr<T> {}

/// Fixed number of parts for parallel scatters: positions depend on it, never on the threads.
pub(crate) const PARTS: usize = 16;

/// Stable counting scatter of `n` items into buckets: item `i` goes to bucket `bucket(i)` and
/// is built by `make(i)`. Items keep their relative order within a bucket. Returns the bucket
/// start offsets (length `buckets + 1`).
pub(crate) fn scatter<T: Copy + Send + Sync + Default>(
    n: usize,
    buckets: usize,
    bucket: impl Fn(usize) -> usize + Sync,
    make: impl Fn(usize) -> T + Sync,
    out: &mut Vec<T>,
) -> Vec<usize> {
    let part_len = n.div_ceil(PARTS).max(1);
    let range = |p: usize| (p * part_len).min(n)..((p + 1) * part_len).min(n);
    let hists: Vec<Vec<usize>> = (0..PARTS)
        .into_par_iter()
        .map(|p| {
            let mut h = vec![0usize; buckets];
            for i in range(p) {
                h[bucket(i)] += 1;
            }
            h
        })
        .collect();
    let mut offsets = vec![vec![0usize; buckets]; PARTS];
    let mut starts = Vec::with_capacity(buckets + 1);
    let mut acc = 0usize;
    for b in 0..buckets {
        starts.push(acc);
        for p in 0..PARTS {
            offsets[p][b] = acc;
            acc += hists[p][b];
        }
    }
    starts.push(acc);
    if out.capacity() < n {
        *out = big_vec(n);
    }
    out.clear();
    let ptr = SyncPtr(out.as_mut_ptr());
    offsets
        .into_par_iter()
        .enumerate()
        .for_each(|(p, mut off)| {
            let ptr = &ptr;
            for i in range(p) {
                let b = bucket(i);
                // SAFETY: the offsets give every (part, bucket) pair a disjoint range of [0, n)
                // sized by that part's histogram, so each slot is written exactly once.
                unsafe { ptr.0.add(off[b]).write(make(i)) };
                off[b] += 1;
            }
        });
    // SAFETY: all n slots were written above.
    unsafe { out.set_len(n) };
    starts
}

// 8 bits a pass: 256 write streams stay within the TLB and the L1 write buffers.
pub(crate) const RADIX_BITS: u32 = 8;
const SMALL: usize = 48;

/// MSD radix sort by (key, tag) of the records in `a`, skipping the key bits they all share.
/// `b` is scratch of the same length; the sorted records end in `a` when `into_a`, else in `b`.
pub(crate) fn msd_sort<R: Rec>(a: &mut [R], b: &mut [R], into_a: bool) {
    let n = a.len();
    let (lo, hi) = a.iter().fold((u64::MAX, 0u64), |(x, y), r| {
        (x.min(r.key()), y.max(r.key()))
    });
    if n <= SMALL || lo == hi {
        a.sort_unstable_by_key(R::order);
        if !into_a {
            b.copy_from_slice(a);
        }
        return;
    }
    let top = 64 - (lo ^ hi).leading_zeros();
    let shift = top.saturating_sub(RADIX_BITS);
    let buckets = 1usize << (top - shift);
    let mask = (buckets - 1) as u64;
    let digit = |r: &R| ((r.key() >> shift) & mask) as usize;
    let mut next = [0usize; 1 << RADIX_BITS];
    for r in a.iter() {
        next[digit(r)] += 1;
    }
    let mut starts = [0usize; (1 << RADIX_BITS) + 1];
    for d in 0..buckets {
        starts[d + 1] = starts[d] + next[d];
        next[d] = starts[d];
    }
    for r in a.iter() {
        let d = digit(r);
        b[next[d]] = *r;
        next[d] += 1;
    }
    for d in 0..buckets {
        let (s, e) = (starts[d], starts[d + 1]);
        match e - s {
            0 => {}
            1 => {
                if into_a {
                    a[s] = b[s];
                }
            }
            _ => msd_sort(&mut b[s..e], &mut a[s..e], !into_a),
        }
    }
}

/// Sorts every group `starts[g]..starts[g+1]` of `recs` in parallel, each with scratch of
/// its own size (small groups reuse heap memory instead of faulting in a second full buffer).
pub(crate) fn sort_groups<R: Rec>(recs: &mut [R], starts: &[usize]) {
    let mut groups: Vec<&mut [R]> = Vec::with_capacity(starts.len());
    let mut rest = recs;
    for g in starts.windows(2) {
        let (a, b) = rest.split_at_mut(g[1] - g[0]);
        groups.push(a);
        rest = b;
    }
    groups.into_par_iter().with_max_len(1).for_each(|g| {
        if g.len() > 1 && !interrupted() {
            let mut tmp = if std::mem::size_of_val(g) >= 1 << 23 {
                big_vec(g.len())
            } else {
                Vec::new()
            };
            tmp.resize(g.len(), R::default());
            msd_sort(g, &mut tmp, true);
        }
    });
}

/// Scatters all rows into equal-width score buckets over `[lo, hi]` (the scores' range), in
/// descending order.
/// The bucket is a non-decreasing function of the score (each float operation rounds
/// monotonically), so sorting within buckets gives the global order, and typical scores
/// spread evenly over the buckets. Returns the bucket starts.
pub(crate) fn value_scatter<R: Rec>(
    scores: &[f64],
    (lo, hi): (f64, f64),
    make: impl Fn(usize) -> R + Sync,
    recs: &mut Vec<R>,
) -> Vec<usize> {
    let range = hi - lo;
    let wide = 1usize << RADIX_BITS;
    let scale = wide as f64 / range;
    // One bucket when the range is empty, infinite or so small that the scale overflows.
    let (buckets, scale) = if range > 0.0 && range.is_finite() && scale.is_finite() {
        (wide, scale)
    } else {
        (1, 0.0)
    };
    let last = (buckets - 1) as f64;
    let bucket = |i: usize| {
        // Finite and in [0, buckets - 1] (scores lie in [lo, hi]): an i32 conversion, fewer
        // instructions than a usize one (this runs twice per row).
        let b = ((scores[i] - lo) * scale).min(last) as i32;
        buckets - 1 - b as usize
    };
    scatter(scores.len(), buckets, bucket, make, recs)
}

/// The smallest and largest of `scores` ((inf, -inf) when empty): the `range` of
/// [`value_scatter`].
///
/// The scores are finite (checked on the way in): the comparisons below are plain `<` and
/// `>` in eight lanes, which vectorize, where `f64::min`'s NaN rule did not (a third of the
/// memory bandwidth).
pub(crate) fn score_range(scores: &[f64]) -> (f64, f64) {
    const LANES: usize = 8;
    let chunk_range = |c: &[f64]| {
        let mut lo = [f64::INFINITY; LANES];
        let mut hi = [f64::NEG_INFINITY; LANES];
        let mut blocks = c.chunks_exact(LANES);
        for b in &mut blocks {
            for j in 0..LANES {
                lo[j] = if b[j] < lo[j] { b[j] } else { lo[j] };
                hi[j] = if b[j] > hi[j] { b[j] } else { hi[j] };
            }
        }
        for (j, v) in blocks.remainder().iter().enumerate() {
            lo[j] = if *v < lo[j] { *v } else { lo[j] };
            hi[j] = if *v > hi[j] { *v } else { hi[j] };
        }
        let lo = lo.iter().fold(f64::INFINITY, |a, b| a.min(*b));
        let hi = hi.iter().fold(f64::NEG_INFINITY, |a, b| a.max(*b));
        (lo, hi)
    };
    scores.par_chunks(1 << 16).map(chunk_range).reduce(
        || (f64::INFINITY, f64::NEG_INFINITY),
        |(a, b), (c, d)| (a.min(c), b.max(d)),
    )
}

/// Maps a finite f64 to a u64 whose ascending order is the descending order of the scores.
#[inline]
pub fn descending_key(x: f64) -> u64 {
    let x = if x == 0.0 { 0.0 } else { x }; // -0.0 and 0.0 are the same score
    let b = x.to_bits();
    let asc = if b >> 63 == 1 { !b } else { b | (1 << 63) };
    !asc
}

/// The score behind a [`descending_key`] (zero comes back as +0.0).
#[inline(always)]
pub fn score_of_key(key: u64) -> f64 {
    let asc = !key;
    let b = if asc >> 63 == 1 {
        asc & !(1 << 63)
    } else {
        !asc
    };
    f64::from_bits(b)
}

/// NumPy's default (linear) quantile of sorted values, with the same floating-point steps:
/// index `(len - 1) * q`, then NumPy's two-sided lerp (from the nearer end).
pub fn quantile_sorted(v: &[f64], q: f64) -> f64 {
    let last = (v.len() - 1) as f64;
    let h = last * q.clamp(0.0, 1.0);
    if h >= last {
        return v[v.len() - 1];
    }
    let i = h.floor() as usize;
    let (a, b, t) = (v[i], v[i + 1], h - i as f64);
    let d = b - a;
    if t >= 0.5 {
        b - d * (1.0 - t)
    } else {
        a + d * t
    }
}
