//! A natural logarithm that vectorizes. `f64::ln` calls the C library once per value; the
//! per-row log losses and logits of a pass are computed here instead, over whole buffers
//! (AVX2 when the CPU has it). The algorithm is the classic one of Sun's fdlibm (reduction to
//! a mantissa in [sqrt(2)/2, sqrt(2)) and a minimax polynomial in s = f / (2 + f)), written
//! without branches; it is within one ulp of the exact logarithm for positive normal inputs,
//! and every caller uses this same function, so results never depend on the code path.

// ln 2 split in a high part with trailing zero bits and the rest, and fdlibm's coefficients
// (written with more digits than an f64 holds, as published).
const LN2_HI: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000);
const LN2_LO: f64 = f64::from_bits(0x3dea_39ef_3579_3c76);
#[allow(clippy::excessive_precision)]
const LG: [f64; 7] = [
    6.666_666_666_666_735_130e-01,
    3.999_999_999_940_941_908e-01,
    2.857_142_874_366_239_149e-01,
    2.222_219_843_214_978_396e-01,
    1.818_357_216_161_805_012e-01,
    1.531_383_769_920_937_332e-01,
    1.479_819_860_511_658_591e-01,
];
const LG1: f64 = LG[0];
const LG2: f64 = LG[1];
const LG3: f64 = LG[2];
const LG4: f64 = LG[3];
const LG5: f64 = LG[4];
const LG6: f64 = LG[5];
const LG7: f64 = LG[6];

/// ln(x) for a positive, finite, normal `x` (the callers clamp probabilities to [2^-52, 1]).
#[inline(always)]
pub fn ln(x: f64) -> f64 {
    let bits = x.to_bits();
    let hx = (bits >> 32) as u32;
    let k = ((hx >> 20) as i32) - 1023;
    let mant = hx & 0x000f_ffff;
    // Scale the mantissa into [sqrt(2)/2, sqrt(2)): i is 0x100000 when it must be halved.
    let i = (mant.wrapping_add(0x95f64)) & 0x0010_0000;
    let k = k + (i >> 20) as i32;
    let hi = mant | (i ^ 0x3ff0_0000);
    let m = f64::from_bits(((hi as u64) << 32) | (bits & 0xffff_ffff));
    let f = m - 1.0;
    let s = f / (2.0 + f);
    let z = s * s;
    let w = z * z;
    let t1 = w * (LG2 + w * (LG4 + w * LG6));
    let t2 = z * (LG1 + w * (LG3 + w * (LG5 + w * LG7)));
    let r = t2 + t1;
    let dk = k as f64;
    let hfsq = 0.5 * f * f;
    let big = dk * LN2_HI - ((hfsq - (s * (hfsq + r) + dk * LN2_LO)) - f);
    let small = dk * LN2_HI - ((s * (f - r) - dk * LN2_LO) - f);
    // fdlibm's choice between two equivalent forms, by where the mantissa lies.
    let sel = ((mant as i32 - 0x6147a) | (0x6b851 - mant as i32)) > 0;
    if sel {
        big
    } else {
        small
    }
}

/// Log loss of each row: `-ln(p)` for a positive, `-ln(1 - p)` for a negative, with `p` the
/// score clamped to [eps, 1 - eps]. Appends to `out`.
pub fn log_losses(labels: &[f64], scores: &[f64], out: &mut Vec<f64>) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked just above).
            unsafe { log_losses_avx2(labels, scores, out) };
            return;
        }
    }
    log_losses_body(labels, scores, out)
}

#[inline(always)]
fn log_losses_body(labels: &[f64], scores: &[f64], out: &mut Vec<f64>) {
    // A plain loop, not `extend`: its out-of-line `fold` would lose the AVX2 of the caller.
    let start = out.len();
    out.resize(start + scores.len().min(labels.len()), 0.0);
    for ((o, y), s) in out[start..].iter_mut().zip(labels).zip(scores) {
        *o = log_loss(*y == 1.0, *s);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn log_losses_avx2(labels: &[f64], scores: &[f64], out: &mut Vec<f64>) {
    log_losses_body(labels, scores, out)
}

/// One row's log loss (the same function as [`log_losses`]).
#[inline(always)]
pub fn log_loss(positive: bool, s: f64) -> f64 {
    let p = s.clamp(f64::EPSILON, 1.0 - f64::EPSILON);
    -ln(if positive { p } else { 1.0 - p })
}

/// logit(s) = ln(p / (1 - p)) with `p` clamped to [eps, 1 - eps]. Appends to `out`.
pub fn logits(scores: &[f64], out: &mut Vec<f64>) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked just above).
            unsafe { logits_avx2(scores, out) };
            return;
        }
    }
    logits_body(scores, out)
}

#[inline(always)]
fn logits_body(scores: &[f64], out: &mut Vec<f64>) {
    // A plain loop, not `extend` (see `log_losses_body`).
    let start = out.len();
    out.resize(start + scores.len(), 0.0);
    for (o, s) in out[start..].iter_mut().zip(scores) {
        *o = logit(*s);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn logits_avx2(scores: &[f64], out: &mut Vec<f64>) {
    logits_body(scores, out)
}

/// True when every row is a valid binary row: label 0 or 1, score finite and, when
/// `probability`, in [0, 1]. One branch-free pass (AVX2 where the CPU has it) that answers
/// for a whole piece; the caller's general loop finds and reports the offending row.
pub fn binary_rows_valid(labels: &[f64], scores: &[f64], probability: bool) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked just above).
            return unsafe { binary_rows_valid_avx2(labels, scores, probability) };
        }
    }
    binary_rows_valid_body(labels, scores, probability)
}

#[inline(always)]
fn binary_rows_valid_body(labels: &[f64], scores: &[f64], probability: bool) -> bool {
    // Blocks of rows with an integer "bad" flag OR-ed per row: the loop vectorizes (a bool
    // `fold` does not unroll as well), and a bad block ends the scan.
    const BLOCK: usize = 1024;
    let (lo, hi) = if probability {
        (0.0, 1.0)
    } else {
        (f64::MIN, f64::MAX)
    };
    for (ys, ss) in labels.chunks(BLOCK).zip(scores.chunks(BLOCK)) {
        let mut bad = 0u64;
        for (y, s) in ys.iter().zip(ss) {
            // `!(s >= lo && s <= hi)` is also true for NaN; infinities fall outside [MIN, MAX].
            let ok = ((*y == 0.0) | (*y == 1.0)) & (*s >= lo) & (*s <= hi);
            bad |= (!ok) as u64;
        }
        if bad != 0 {
            return false;
        }
    }
    true
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn binary_rows_valid_avx2(labels: &[f64], scores: &[f64], probability: bool) -> bool {
    binary_rows_valid_body(labels, scores, probability)
}

/// True when every value lies in `[lo, hi]` (NaN never does): a piece's fast check of finite
/// values (`[f64::MIN, f64::MAX]`), non-negative ones, or positive weights. One branch-free
/// pass like [`binary_rows_valid`].
pub fn all_within(values: &[f64], lo: f64, hi: f64) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked just above).
            return unsafe { all_within_avx2(values, lo, hi) };
        }
    }
    all_within_body(values, lo, hi)
}

#[inline(always)]
fn all_within_body(values: &[f64], lo: f64, hi: f64) -> bool {
    const BLOCK: usize = 1024;
    values.chunks(BLOCK).all(|block| {
        let mut bad = 0u64;
        for v in block {
            bad |= (!((*v >= lo) & (*v <= hi))) as u64;
        }
        bad == 0
    })
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn all_within_avx2(values: &[f64], lo: f64, hi: f64) -> bool {
    all_within_body(values, lo, hi)
}

/// One score's logit (the same function as [`logits`]).
#[inline(always)]
pub fn logit(s: f64) -> f64 {
    let p = s.clamp(f64::EPSILON, 1.0 - f64::EPSILON);
    ln(p / (1.0 - p))
}

/// The logistic function, without overflow for large |z|.
pub fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The piece checks against their row-by-row definitions, with each special value at
    /// every position of inputs longer than a block (so a bad row in any block, at its
    /// edges, and in the short tail, is seen), on both the AVX2 and the plain body.
    #[test]
    fn piece_checks_match_their_row_definitions() {
        let specials = [
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            -0.0,
            0.0,
            1.0,
            0.5,
            2.0,
            -1e-300,
            f64::from_bits(1),
            f64::MIN_POSITIVE,
            f64::MAX,
            f64::MIN,
        ];
        let n = 2 * 1024 + 37;
        let probe = [0, 1, 1023, 1024, 1025, 2047, 2048, n - 1];
        for &v in &specials {
            for &at in &probe {
                let mut scores = vec![0.25; n];
                let mut labels = vec![1.0; n];
                scores[at] = v;
                labels[(at + 5) % n] = 0.0;
                for prob in [false, true] {
                    let want = labels.iter().zip(&scores).all(|(y, s)| {
                        (*y == 0.0 || *y == 1.0)
                            && s.is_finite()
                            && (!prob || (0.0..=1.0).contains(s))
                    });
                    assert_eq!(
                        binary_rows_valid(&labels, &scores, prob),
                        want,
                        "{v} at {at}"
                    );
                    assert_eq!(binary_rows_valid_body(&labels, &scores, prob), want);
                }
                let want = |lo: f64, hi: f64| scores.iter().all(|x| *x >= lo && *x <= hi);
                for (lo, hi) in [
                    (f64::MIN, f64::MAX),
                    (0.0, f64::INFINITY),
                    (f64::from_bits(1), f64::MAX),
                    (f64::MIN_POSITIVE, f64::MAX),
                ] {
                    assert_eq!(all_within(&scores, lo, hi), want(lo, hi), "{v} at {at}");
                    assert_eq!(all_within_body(&scores, lo, hi), want(lo, hi));
                }
                // A bad label anywhere is seen too.
                let mut labels = vec![0.0; n];
                labels[at] = if v == 0.0 || v == 1.0 { 0.5 } else { v };
                assert!(!binary_rows_valid(&labels, &vec![0.5; n], false));
            }
        }
        assert!(binary_rows_valid(&[], &[], true));
        assert!(all_within(&[], 0.0, 1.0));
        // The weight checks: positive finite (subnormals too), and positive normal.
        assert!(!all_within(&[0.0], f64::from_bits(1), f64::MAX));
        assert!(all_within(
            &[f64::from_bits(1)],
            f64::from_bits(1),
            f64::MAX
        ));
        assert!(!all_within(
            &[f64::from_bits(1)],
            f64::MIN_POSITIVE,
            f64::MAX
        ));
    }

    #[test]
    fn ln_is_within_an_ulp_of_the_library() {
        let mut x = 1u64;
        let mut worst = 0.0f64;
        for i in 0..2_000_000u64 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            // Probabilities, ratios p / (1 - p), and values across the whole normal range.
            let u = (x >> 11) as f64 / (1u64 << 53) as f64;
            let v = match i % 3 {
                0 => u.max(f64::EPSILON),
                1 => u / (1.0 - u).max(f64::EPSILON) + f64::MIN_POSITIVE,
                _ => f64::from_bits((x >> 2) % 0x7fe0_0000_0000_0000 + 0x0010_0000_0000_0000),
            };
            let (a, b) = (ln(v), v.ln());
            let ulp = (b.abs().max(f64::MIN_POSITIVE)).to_bits();
            let ulp = f64::from_bits(ulp + 1) - f64::from_bits(ulp);
            worst = worst.max((a - b).abs() / ulp);
        }
        assert!(worst <= 1.0, "worst error {worst} ulp");
        assert_eq!(ln(1.0), 0.0);
        assert_eq!(ln(std::f64::consts::E.powi(3)), 3.0f64.exp().ln());
    }
}
