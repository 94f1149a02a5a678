//! Sort keys and records shared by the rank metrics (`rank`) and the calibration walks
//! (`reliability`) over one sorted order, and quantiles of sorted values.

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
