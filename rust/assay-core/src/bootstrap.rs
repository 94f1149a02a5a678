//! Resampling folded into the single pass, and the interval methods.
//!
//! **Replicate weights are never stored.** Row `r`'s weight in bootstrap replicate `b` is the
//! Poisson(1) inverse CDF of a counter-based hash of `(seed, row_id(r), b)`, recomputed wherever
//! it is needed (the additive pass and the rank pass). Because it depends on nothing else, the
//! replicates are the same for any thread count, any batch split and any shard of the rows.
//!
//! Besides the `B` bootstrap replicates, BCa jobs carry [`JACK_GROUPS`] grouped-jackknife
//! "replicates": group `g` gives weight 0 to the rows whose hash falls in group `g` and the
//! row's weight to the rest. They feed the acceleration of BCa intervals for metrics without a
//! closed-form influence function (see `intervals::influence_acceleration`), at the cost of 20
//! more slots instead of an O(N^2) leave-one-out jackknife.
//!
//! A *slot* is one replicate: slots `0..B` are bootstrap replicates, `B..B + JACK_GROUPS` (BCa)
//! are the jackknife groups.

use crate::error::{AssayError, Result};

/// Groups of the grouped jackknife used for BCa acceleration.
pub const JACK_GROUPS: usize = 20;

/// The largest number of bootstrap replicates a job may ask for.
pub const MAX_REPLICATES: usize = 100_000;

/// How intervals are built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CiMethod {
    Percentile,
    Basic,
    Bca,
    /// Closed-form intervals (Wilson, DeLong, normal); needs no resampling.
    Analytic,
}

impl CiMethod {
    pub fn parse(s: &str) -> Result<CiMethod> {
        Ok(match s {
            "percentile" => CiMethod::Percentile,
            "basic" => CiMethod::Basic,
            "bca" => CiMethod::Bca,
            "analytic" => CiMethod::Analytic,
            _ => {
                let known = "\"percentile\", \"basic\", \"bca\" or \"analytic\"";
                let msg = format!("unknown ci_method {s:?}; use {known}");
                return Err(AssayError::InvalidArgument(msg));
            }
        })
    }

    pub fn name(&self) -> &'static str {
        match self {
            CiMethod::Percentile => "percentile",
            CiMethod::Basic => "basic",
            CiMethod::Bca => "bca",
            CiMethod::Analytic => "analytic",
        }
    }
}

/// What interval a job computes.
#[derive(Clone, Debug, PartialEq)]
pub struct IntervalSpec {
    /// Bootstrap replicates (0 for analytic intervals only).
    pub replicates: usize,
    /// Confidence level in (0, 1).
    pub level: f64,
    pub method: CiMethod,
    pub seed: u64,
    /// Column holding a stable integer id per row (for sharded data); the global row
    /// position when `None`.
    pub row_id: Option<String>,
}

impl IntervalSpec {
    pub fn validate(&self) -> Result<()> {
        if !(self.level > 0.0 && self.level < 1.0) {
            return Err(AssayError::InvalidArgument(format!(
                "ci must lie strictly between 0 and 1, got {}",
                self.level
            )));
        }
        if self.replicates > MAX_REPLICATES {
            return Err(AssayError::InvalidArgument(format!(
                "bootstrap must be at most {MAX_REPLICATES}, got {}",
                self.replicates
            )));
        }
        if self.method != CiMethod::Analytic && self.replicates < 2 {
            return Err(AssayError::InvalidArgument(format!(
                "ci_method={:?} resamples: pass bootstrap=B with B >= 2 (1000 is usual), or use \
                 ci_method=\"analytic\"",
                self.method.name()
            )));
        }
        Ok(())
    }

    /// Replicate slots carried through the pass: the bootstrap replicates, then (BCa only)
    /// the jackknife groups.
    pub fn slots(&self) -> usize {
        match self.method {
            _ if self.replicates == 0 => 0,
            CiMethod::Analytic => 0,
            CiMethod::Bca => self.replicates + JACK_GROUPS,
            CiMethod::Percentile | CiMethod::Basic => self.replicates,
        }
    }
}

#[inline(always)]
fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[inline(always)]
fn fmix32(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85EB_CA6B);
    h ^= h >> 13;
    h = h.wrapping_mul(0xC2B2_AE35);
    h ^ (h >> 16)
}

/// Poisson(1) draws from 32-bit uniforms: `k = #{j : u >= T[j]}` with `T[j] = P(X <= j)·2^32`.
/// P(X > 12) < 2^-32, so twelve thresholds cover every value a 32-bit uniform can reach.
#[derive(Clone, Copy, Debug)]
pub struct Resampler {
    seed_key: u64,
    replicates: usize,
    thresholds: [i32; 12],
}

impl Resampler {
    pub fn new(seed: u64, replicates: usize) -> Self {
        let mut thresholds = [0i32; 12];
        let (mut term, mut cdf) = ((-1.0f64).exp(), 0.0f64);
        for (j, t) in thresholds.iter_mut().enumerate() {
            cdf += term;
            term /= (j + 1) as f64;
            let u = (cdf * 4_294_967_296.0).floor().min(u32::MAX as f64) as u32;
            *t = (u ^ 0x8000_0000) as i32;
        }
        Resampler {
            seed_key: splitmix64(seed ^ 0x6173_7361_7962_6f6f),
            replicates,
            thresholds,
        }
    }

    /// The number of bootstrap replicates (slots beyond it are jackknife groups).
    pub fn replicates(&self) -> usize {
        self.replicates
    }

    /// The per-row key all of a row's slot weights derive from (63 bits, so that it can
    /// tag sort records beside a label bit).
    #[inline(always)]
    pub fn row_key(&self, row_id: u64) -> u64 {
        splitmix64(self.seed_key ^ splitmix64(row_id)) >> 1
    }

    /// Poisson(1) weight of the row with key `rk` in bootstrap replicate `b`.
    #[inline(always)]
    pub fn poisson(&self, rk: u64, b: u32) -> u32 {
        // One avalanche round over (row key, replicate): for a fixed row the input runs over
        // distinct values as b does, and fmix32 is a bijection with full avalanche.
        let (lo, hi) = (rk as u32, (rk >> 32) as u32);
        let x = fmix32((lo ^ b.wrapping_mul(0x9E37_79B9)).wrapping_add(hi));
        // Compare as signed integers (thresholds stored with the sign bit flipped): AVX2 has
        // a signed 32-bit compare but no unsigned one.
        let xs = (x ^ 0x8000_0000) as i32;
        let mut k = 0u32;
        for t in self.thresholds {
            k += (xs >= t) as u32;
        }
        k
    }

    /// Poisson(1) weights of the row with key `rk` in bootstrap replicates
    /// `from..from + out.len()` (all of them bootstrap slots), one [`Resampler::poisson`] each.
    #[inline(always)]
    pub fn draws(&self, rk: u64, from: u32, out: &mut [u32]) {
        for (j, k) in out.iter_mut().enumerate() {
            *k = self.poisson(rk, from + j as u32);
        }
    }

    /// [`Resampler::draws`] eight lanes at a time, the same integers. The replicate multiplier
    /// advances by addition, and only five thresholds are compared unless a lane reaches the
    /// fifth (P(X >= 5) < 0.4% per lane): the rest are added for those 8-lane groups only.
    ///
    /// # Safety
    /// The CPU must support AVX2.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    #[inline]
    pub unsafe fn draws_avx2(&self, rk: u64, from: u32, out: &mut [u32]) {
        self.draws_avx2_body(rk, from, out)
    }

    /// The body of [`Resampler::draws_avx2`], inlined into its AVX2 callers (the hot loop's
    /// constants then stay in registers across calls instead of being set up per call).
    ///
    /// # Safety
    /// The CPU must support AVX2, and the caller must be compiled with it.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    pub unsafe fn draws_avx2_body(&self, rk: u64, from: u32, out: &mut [u32]) {
        use std::arch::x86_64::*;
        let (lo, hi) = (rk as u32 as i32, (rk >> 32) as u32 as i32);
        let (lo, hi) = (_mm256_set1_epi32(lo), _mm256_set1_epi32(hi));
        let c1 = _mm256_set1_epi32(0x85EB_CA6Bu32 as i32);
        let c2 = _mm256_set1_epi32(0xC2B2_AE35u32 as i32);
        let sign = _mm256_set1_epi32(i32::MIN);
        let step = _mm256_set1_epi32(0x9E37_79B9u32.wrapping_mul(8) as i32);
        let t: [__m256i; 12] = std::array::from_fn(|j| _mm256_set1_epi32(self.thresholds[j]));
        let lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        let first = _mm256_add_epi32(_mm256_set1_epi32(from as i32), lanes);
        let mut bg = _mm256_mullo_epi32(first, _mm256_set1_epi32(0x9E37_79B9u32 as i32));
        let n = out.len();
        let mut chunks = out.chunks_exact_mut(8);
        for chunk in &mut chunks {
            let mut x = _mm256_add_epi32(_mm256_xor_si256(lo, bg), hi);
            x = _mm256_xor_si256(x, _mm256_srli_epi32::<16>(x));
            x = _mm256_mullo_epi32(x, c1);
            x = _mm256_xor_si256(x, _mm256_srli_epi32::<13>(x));
            x = _mm256_mullo_epi32(x, c2);
            x = _mm256_xor_si256(x, _mm256_srli_epi32::<16>(x));
            let xs = _mm256_xor_si256(x, sign);
            // Lanes below threshold j give -1 in lt(j); k = 12 + the sum over all twelve, and
            // a lane below the fifth threshold is below all later ones.
            let lt = |j: usize| _mm256_cmpgt_epi32(t[j], xs);
            let below4 = lt(4);
            let mut k = _mm256_add_epi32(
                _mm256_add_epi32(lt(0), lt(1)),
                _mm256_add_epi32(lt(2), lt(3)),
            );
            k = _mm256_add_epi32(k, below4);
            if _mm256_movemask_epi8(below4) == -1 {
                k = _mm256_add_epi32(k, _mm256_set1_epi32(5));
            } else {
                for j in 5..12 {
                    k = _mm256_add_epi32(k, lt(j));
                }
                k = _mm256_add_epi32(k, _mm256_set1_epi32(12));
            }
            _mm256_storeu_si256(chunk.as_mut_ptr() as *mut __m256i, k);
            bg = _mm256_add_epi32(bg, step);
        }
        let rest = chunks.into_remainder();
        let done = (from as usize + n - rest.len()) as u32;
        self.draws(rk, done, rest);
    }

    /// The jackknife group of a row.
    #[inline(always)]
    pub fn group(&self, rk: u64) -> usize {
        ((((rk >> 31) as u32 as u64) * JACK_GROUPS as u64) >> 32) as usize
    }

    /// Writes the weights of slots `from..from + out.len()` of the row with key `rk`, each
    /// multiplied by `w`.
    #[inline]
    pub fn fill(&self, rk: u64, w: f64, from: usize, out: &mut [f64]) {
        let boot_end = self.replicates.saturating_sub(from).min(out.len());
        let (boot, jack) = out.split_at_mut(boot_end);
        fill_poisson(self, rk, w, from as u32, boot);
        if !jack.is_empty() {
            let g = self.group(rk);
            let first = from + boot_end - self.replicates;
            for (j, o) in jack.iter_mut().enumerate() {
                *o = if first + j == g { 0.0 } else { w };
            }
        }
    }
}

/// The resampling keys of `row_ids`, their Poisson(1) draws in bootstrap replicates
/// `0..replicates` (row-major, `replicates` per row) and their jackknife groups, for the checks
/// of reimplementations (the torch path draws on the device and must give the same integers).
pub fn draws_of(seed: u64, replicates: usize, row_ids: &[u64]) -> (Vec<u64>, Vec<u32>, Vec<u32>) {
    let r = Resampler::new(seed, replicates);
    let keys: Vec<u64> = row_ids.iter().map(|id| r.row_key(*id)).collect();
    let mut draws = vec![0u32; keys.len() * replicates];
    if replicates > 0 {
        for (k, out) in keys.iter().zip(draws.chunks_exact_mut(replicates)) {
            r.draws(*k, 0, out);
        }
    }
    let groups = keys.iter().map(|k| r.group(*k) as u32).collect();
    (keys, draws, groups)
}

#[inline(always)]
fn fill_poisson_body(r: &Resampler, rk: u64, w: f64, from: u32, out: &mut [f64], simd: bool) {
    // Draw in blocks of integers, then convert (4 lanes wide).
    let mut ks = [0u32; 64];
    for (c, block) in out.chunks_mut(64).enumerate() {
        let (base, ks) = (from + (c * 64) as u32, &mut ks[..block.len()]);
        #[cfg(target_arch = "x86_64")]
        if simd {
            // SAFETY: `simd` is true only on the AVX2 path of `fill_poisson`.
            unsafe { r.draws_avx2_body(rk, base, ks) };
        } else {
            r.draws(rk, base, ks);
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = simd;
            r.draws(rk, base, ks);
        }
        // k <= 12: the signed conversion is exact and vectorizes (AVX2 has no u32 -> f64).
        for (o, k) in block.iter_mut().zip(ks.iter()) {
            *o = *k as i32 as f64 * w;
        }
    }
}

/// The hot loop of every bootstrap job; the result is the same bits on either path (integer
/// draws, one multiply).
#[inline]
fn fill_poisson(r: &Resampler, rk: u64, w: f64, from: u32, out: &mut [f64]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked just above).
            unsafe { fill_poisson_avx2(r, rk, w, from, out) };
            return;
        }
    }
    fill_poisson_body(r, rk, w, from, out, false)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn fill_poisson_avx2(r: &Resampler, rk: u64, w: f64, from: u32, out: &mut [f64]) {
    fill_poisson_body(r, rk, w, from, out, true)
}

/// `acc[s] += add[s]` over two equal-length slices (vectorized; one add per lane, so the bits
/// do not depend on the instruction set).
#[inline]
pub fn add_into(acc: &mut [f64], add: &[f64]) {
    for (a, b) in acc.iter_mut().zip(add) {
        *a += *b;
    }
}

/// One row's contribution to a slice's replicate block (`rows x slots`, see `state`): its
/// replicate weights `kw` go to confusion cell `cell`, and (with `losses`) `kw x log_loss`
/// and `kw x squared error` to their rows. One fused pass over the slots.
#[inline]
pub fn add_row(
    block: &mut [f64],
    slots: usize,
    cell: usize,
    kw: &[f64],
    losses: Option<(f64, f64)>,
) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked just above).
            unsafe { add_row_avx2(block, slots, cell, kw, losses) };
            return;
        }
    }
    add_row_body(block, slots, cell, kw, losses)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn add_row_avx2(
    block: &mut [f64],
    slots: usize,
    cell: usize,
    kw: &[f64],
    losses: Option<(f64, f64)>,
) {
    add_row_body(block, slots, cell, kw, losses)
}

/// Separate adds and multiplies (no fused multiply-add), so both builds give the same bits.
#[inline(always)]
fn add_row_body(
    block: &mut [f64],
    slots: usize,
    cell: usize,
    kw: &[f64],
    losses: Option<(f64, f64)>,
) {
    let (head, tail) = block.split_at_mut(crate::state::REP_LOG_LOSS * slots);
    let cell = &mut head[cell * slots..(cell + 1) * slots];
    match losses {
        None => add_into(cell, kw),
        Some((ll, br)) => {
            let (llr, brr) = tail.split_at_mut(slots);
            for (((c, l), b), k) in cell.iter_mut().zip(llr.iter_mut()).zip(brr).zip(kw) {
                *c += *k;
                *l += *k * ll;
                *b += *k * br;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Normal distribution

/// Standard normal CDF.
pub fn norm_cdf(x: f64) -> f64 {
    0.5 * libm::erfc(-x / std::f64::consts::SQRT_2)
}

/// Standard normal quantile (Acklam's approximation refined by one Halley step on the CDF
/// above; accurate to about 1e-15). `p` outside (0, 1) gives ±inf.
pub fn norm_ppf(p: f64) -> f64 {
    if p.is_nan() {
        return f64::NAN;
    }
    if p <= 0.0 {
        return f64::NEG_INFINITY;
    }
    if p >= 1.0 {
        return f64::INFINITY;
    }
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    let low = 0.02425;
    let x = if p < low {
        let q = (-2.0 * p.ln()).sqrt();
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    } else if p <= 1.0 - low {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        let q = (-2.0 * (1.0 - p).ln()).sqrt();
        -(((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    // One Halley step on the CDF.
    let e = norm_cdf(x) - p;
    let u = e * (2.0 * std::f64::consts::PI).sqrt() * (x * x / 2.0).exp();
    x - u / (1.0 + x * u / 2.0)
}

// ---------------------------------------------------------------------------------------------
// Intervals from replicate values

/// An interval: bounds and standard error, or why there is none.
pub type Interval = std::result::Result<(f64, f64, f64), &'static str>;

pub const TOO_FEW_REPLICATES: &str =
    "interval undefined: the metric is undefined in more than 10% of the bootstrap replicates";
pub const NO_ANALYTIC: &str =
    "no analytic interval for this metric: use bootstrap=B with ci_method=\"percentile\" or \"bca\"";
pub const TOO_FEW_ROWS: &str = "interval undefined: fewer than 2 rows in the slice";
pub const NO_JACKKNIFE: &str =
    "interval undefined: BCa acceleration needs the metric defined in every jackknife group";

pub use crate::sorted::quantile_sorted;

/// Sample standard deviation (ddof = 1).
fn std_dev(v: &[f64]) -> f64 {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    (v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (n - 1.0)).sqrt()
}

/// Acceleration of BCa from jackknife (or influence) values `theta_i`:
/// `sum(U^3) / (6 sum(U^2)^1.5)` with `U_i = mean - theta_i`.
pub fn acceleration_jackknife(theta: &[f64]) -> f64 {
    let n = theta.len() as f64;
    let m = theta.iter().sum::<f64>() / n;
    let (mut s2, mut s3) = (0.0, 0.0);
    for t in theta {
        let u = m - t;
        s2 += u * u;
        s3 += u * u * u;
    }
    if s2 > 0.0 {
        s3 / (6.0 * s2.powf(1.5))
    } else {
        0.0
    }
}

/// Percentile, basic or BCa interval from the replicate values (NaN = undefined in that
/// replicate). `accel` gives the BCa acceleration (needed for BCa only).
pub fn resampled_interval(
    method: CiMethod,
    level: f64,
    estimate: f64,
    replicates: &[f64],
    accel: Option<std::result::Result<f64, &'static str>>,
) -> Interval {
    let mut v: Vec<f64> = replicates.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.len() < 2 || (v.len() as f64) < 0.9 * replicates.len() as f64 {
        return Err(TOO_FEW_REPLICATES);
    }
    v.sort_unstable_by(f64::total_cmp);
    let se = std_dev(&v);
    let alpha = (1.0 - level) / 2.0;
    let (lo, hi) = match method {
        CiMethod::Percentile => (quantile_sorted(&v, alpha), quantile_sorted(&v, 1.0 - alpha)),
        CiMethod::Basic => (
            2.0 * estimate - quantile_sorted(&v, 1.0 - alpha),
            2.0 * estimate - quantile_sorted(&v, alpha),
        ),
        CiMethod::Bca => {
            let a = accel.unwrap_or(Err(NO_JACKKNIFE))?;
            let n = v.len() as f64;
            // Replicates equal to the estimate count half (ties). "Equal" allows rounding: a
            // replicate that equals the estimate mathematically may differ from it in the last
            // bits (sums in another order: another thread count, shard split or merge tree),
            // and the bias correction must not jump with those bits.
            let tie = |x: f64| (x - estimate).abs() <= 1e-13 * x.abs().max(estimate.abs());
            let below = v.iter().filter(|x| **x < estimate && !tie(**x)).count() as f64;
            let at_or_below = v.iter().filter(|x| **x <= estimate || tie(**x)).count() as f64;
            let z0 = norm_ppf((below + at_or_below) / (2.0 * n));
            if !z0.is_finite() {
                // The estimate lies outside the replicate distribution: BCa degenerates.
                (quantile_sorted(&v, alpha), quantile_sorted(&v, 1.0 - alpha))
            } else {
                let adj = |z: f64| norm_cdf(z0 + (z0 + z) / (1.0 - a * (z0 + z)));
                let (za, zb) = (norm_ppf(alpha), norm_ppf(1.0 - alpha));
                (quantile_sorted(&v, adj(za)), quantile_sorted(&v, adj(zb)))
            }
        }
        CiMethod::Analytic => unreachable!("analytic intervals are not resampled"),
    };
    Ok((lo, hi, se))
}

/// Wilson score interval for a proportion `p` out of an (effective) sample size `n`.
pub fn wilson(p: f64, n: f64, level: f64) -> Interval {
    if n.is_nan() || n < 2.0 {
        return Err(TOO_FEW_ROWS);
    }
    Ok(wilson_bounds(p, n, level))
}

/// The Wilson score interval `(lo, hi, se)` for any (effective) sample size `n > 0`.
pub fn wilson_bounds(p: f64, n: f64, level: f64) -> (f64, f64, f64) {
    let z = norm_ppf(0.5 + level / 2.0);
    let z2 = z * z;
    let den = 1.0 + z2 / n;
    let centre = (p + z2 / (2.0 * n)) / den;
    let half = z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).max(0.0).sqrt() / den;
    let se = (p * (1.0 - p) / n).sqrt();
    ((centre - half).max(0.0), (centre + half).min(1.0), se)
}

/// Normal interval `estimate ± z·se`, clipped to `[min, max]`.
pub fn normal(estimate: f64, se: f64, level: f64, min: f64, max: f64) -> Interval {
    if !se.is_finite() {
        return Err(TOO_FEW_ROWS);
    }
    let z = norm_ppf(0.5 + level / 2.0);
    Ok((
        (estimate - z * se).max(min),
        (estimate + z * se).min(max),
        se,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poisson_weights_have_the_poisson_moments() {
        let r = Resampler::new(7, 1000);
        let mut counts = [0u64; 13];
        let n = 400_000u64;
        for row in 0..n / 100 {
            let rk = r.row_key(row);
            for b in 0..100 {
                counts[r.poisson(rk, b) as usize] += 1;
            }
        }
        let mut term = (-1.0f64).exp();
        for (k, c) in counts.iter().enumerate().take(7) {
            let expect = term * n as f64;
            let sd = (expect * (1.0 - term)).sqrt();
            assert!(
                (*c as f64 - expect).abs() < 5.0 * sd,
                "k={k}: {c} vs {expect}"
            );
            term /= (k + 1) as f64;
        }
    }

    #[test]
    fn replicates_of_neighbouring_rows_are_uncorrelated() {
        let r = Resampler::new(0, 2000);
        let (a, b) = (r.row_key(10), r.row_key(11));
        let xs: Vec<f64> = (0..2000).map(|i| r.poisson(a, i) as f64).collect();
        let ys: Vec<f64> = (0..2000).map(|i| r.poisson(b, i) as f64).collect();
        let cov: f64 = xs
            .iter()
            .zip(&ys)
            .map(|(x, y)| (x - 1.0) * (y - 1.0))
            .sum::<f64>()
            / 2000.0;
        assert!(cov.abs() < 0.1, "{cov}");
    }

    #[test]
    fn neighbouring_replicates_are_uncorrelated_across_rows() {
        let r = Resampler::new(5, 64);
        for b in [0u32, 1, 31, 62] {
            let mut cov = 0.0;
            for row in 0..20_000u64 {
                let rk = r.row_key(row);
                cov += (r.poisson(rk, b) as f64 - 1.0) * (r.poisson(rk, b + 1) as f64 - 1.0);
            }
            assert!((cov / 20_000.0).abs() < 0.04, "b={b}: {cov}");
        }
    }

    #[test]
    fn jackknife_groups_are_balanced() {
        let r = Resampler::new(1, 10);
        let mut counts = [0usize; JACK_GROUPS];
        for row in 0..100_000 {
            counts[r.group(r.row_key(row))] += 1;
        }
        for c in counts {
            assert!((4_700..5_300).contains(&c), "{counts:?}");
        }
    }

    #[test]
    fn fill_matches_the_scalar_definition() {
        let r = Resampler::new(3, 50);
        let rk = r.row_key(99);
        let mut out = vec![0.0; 70];
        r.fill(rk, 2.5, 0, &mut out);
        for (b, o) in out.iter().enumerate().take(50) {
            assert_eq!(*o, r.poisson(rk, b as u32) as f64 * 2.5);
        }
        let g = r.group(rk);
        for (j, o) in out[50..].iter().enumerate() {
            assert_eq!(*o, if j == g { 0.0 } else { 2.5 });
        }
        let mut part = vec![0.0; 30];
        r.fill(rk, 2.5, 40, &mut part);
        assert_eq!(&part[..], &out[40..]);
        // Many rows, odd offsets and lengths: every k (the rare large ones too) equals the
        // scalar draw, on whichever path this CPU takes.
        let r = Resampler::new(9, 5_000);
        let mut buf = vec![0.0; 5_000];
        let mut seen = [false; 8];
        for row in 0..200u64 {
            let rk = r.row_key(row);
            let (from, len) = ((row * 37 % 100) as usize, 4_000 + (row % 13) as usize);
            r.fill(rk, 1.5, from, &mut buf[..len]);
            for (j, v) in buf[..len].iter().enumerate() {
                let k = r.poisson(rk, (from + j) as u32);
                assert_eq!(*v, k as f64 * 1.5);
                seen[(k as usize).min(7)] = true;
            }
        }
        assert!(seen.iter().all(|s| *s), "{seen:?}");
    }

    #[test]
    fn normal_distribution_functions() {
        assert!((norm_cdf(1.959_963_984_540_054) - 0.975).abs() < 1e-15);
        assert!((norm_ppf(0.975) - 1.959_963_984_540_054).abs() < 1e-13);
        assert!((norm_ppf(1e-10) + 6.361_340_902_404_056).abs() < 1e-11);
        assert!((norm_cdf(-8.0) - 6.220_960_574_271_785e-16).abs() < 1e-27);
        for p in [1e-300, 1e-12, 0.01, 0.3, 0.5, 0.77, 0.99999] {
            assert!(
                (norm_cdf(norm_ppf(p)) - p).abs() <= 1e-14 * p.max(1e-2),
                "{p}"
            );
        }
    }

    #[test]
    fn quantiles_follow_numpy() {
        let v = [1.0, 2.0, 4.0, 8.0];
        assert_eq!(quantile_sorted(&v, 0.0), 1.0);
        assert_eq!(quantile_sorted(&v, 1.0), 8.0);
        assert!((quantile_sorted(&v, 0.5) - 3.0).abs() < 1e-15);
        assert!((quantile_sorted(&v, 0.9) - 6.8).abs() < 1e-15);
    }

    #[test]
    fn wilson_matches_the_textbook_example() {
        // 81 successes out of 263: Wilson 95% is about (0.2553, 0.3662).
        let (lo, hi, _) = wilson(81.0 / 263.0, 263.0, 0.95).unwrap();
        assert!(
            (lo - 0.2553).abs() < 1e-4 && (hi - 0.3662).abs() < 1e-4,
            "{lo} {hi}"
        );
    }
}
