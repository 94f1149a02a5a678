//! The byte format of a [`PartialState`]: compact, versioned, checksummed.
//!
//! ```text
//! magic      8 bytes  b"ASSAYPS\0"
//! version    u32 LE   STATE_FORMAT_VERSION (a reader refuses any other)
//! flags      u32 LE   0 (reserved)
//! length     u64 LE   bytes of the payload
//! checksum   u64 LE   XXH3-64 of the payload (detects corruption, not forgery)
//! payload    little-endian fields: the spec text, counts, shapes, row ranges, the slicer's
//!            keys by value, the additive blocks, the kept rows, the sketches, the histograms,
//!            the keys of a ranking job's finished queries, the content hash (a flag byte,
//!            then the hash when the flag is 1)
//! ```
//! Every length read is checked against the bytes left before anything is allocated, and the
//! decoded state is checked for consistency (block lengths, slice ids, values) before it is
//! returned: bytes that are not a valid state give [`AssayError::StateFormat`], never a panic.

use super::col::{Owner, StableBytes};
use super::{Col, ProbHist};
use crate::error::{AssayError, Result};
use crate::metrics::Family;
use crate::sketch::RunSketch;
use crate::slicing::{FeatureValues, Slicer, SlicerKeys};
use std::sync::Arc;

use super::partial::PartialState;
use super::{BinaryCounts, ChunkState, Moments, RankRows, SliceStates, StateShape, WeightScale};

/// The version this build writes (and the newest it reads).
pub const STATE_FORMAT_VERSION: u32 = 6;
const MAGIC: &[u8; 8] = b"ASSAYPS\0";
const HEADER: usize = 32;

/// A 64-bit checksum of `bytes`: XXH3-64 (it runs at memory speed). It detects corruption,
/// not forgery.
pub fn checksum(bytes: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(bytes)
}

fn bad(m: impl Into<String>) -> AssayError {
    AssayError::StateFormat(format!("not a valid partial state: {}", m.into()))
}

/// Where encoded bytes go: counted (to size the output exactly), or written into a buffer of
/// that size (a Python `bytes` object's own memory: no second copy).
enum Sink<'a> {
    Count(usize),
    Into(&'a mut [u8], usize),
}

struct Writer<'a>(Sink<'a>);

/// The bytes of a column of plain numbers as they lie in memory: their little-endian bytes on
/// a little-endian target.
#[cfg(target_endian = "little")]
fn raw_bytes<T: Copy>(v: &[T]) -> &[u8] {
    // SAFETY: T is a plain number type without padding (f64, u64, u32, u8): reading its
    // memory as bytes is valid, and the length covers exactly the slice.
    unsafe { std::slice::from_raw_parts(v.as_ptr() as *const u8, std::mem::size_of_val(v)) }
}

impl Writer<'_> {
    fn put(&mut self, b: &[u8]) {
        match &mut self.0 {
            Sink::Count(n) => *n += b.len(),
            Sink::Into(buf, at) => {
                buf[*at..*at + b.len()].copy_from_slice(b);
                *at += b.len();
            }
        }
    }
    /// Bytes written so far (the payload's offset).
    fn pos(&self) -> usize {
        match &self.0 {
            Sink::Count(n) => *n,
            Sink::Into(_, at) => *at,
        }
    }
    /// Zero bytes up to the next multiple of 8 of the payload's offset: a column of 8-byte
    /// numbers after them is aligned in memory when the payload is (the payload starts 32
    /// bytes into the state's bytes), so a state read back can borrow it ([`Col`]).
    fn align8(&mut self) {
        let pad = (8 - self.pos() % 8) % 8;
        self.put(&[0u8; 8][..pad]);
    }
    /// A length-prefixed column of numbers (8-byte ones aligned to 8): one copy on a
    /// little-endian target.
    fn column<T: Copy>(&mut self, v: &[T], le: fn(T) -> [u8; 8]) {
        self.len(v.len());
        if std::mem::size_of::<T>() == 8 {
            self.align8();
        }
        #[cfg(target_endian = "little")]
        {
            let _ = le;
            self.put(raw_bytes(v));
        }
        #[cfg(not(target_endian = "little"))]
        for x in v {
            let bytes = le(*x);
            self.put(&bytes[..std::mem::size_of::<T>()]);
        }
    }
    fn u8(&mut self, v: u8) {
        self.put(&[v]);
    }
    /// A column of slice ids below `n` in the fewest bytes that hold them (1, 2 or 4), after
    /// that width and the length.
    fn ids(&mut self, ids: &[u32], n: usize) {
        let width = if n <= 1 << 8 {
            1
        } else if n <= 1 << 16 {
            2
        } else {
            4
        };
        self.u8(width as u8);
        self.len(ids.len());
        match &mut self.0 {
            Sink::Count(c) => *c += ids.len() * width,
            Sink::Into(buf, at) => {
                let out = &mut buf[*at..*at + ids.len() * width];
                match width {
                    1 => out.iter_mut().zip(ids).for_each(|(o, x)| *o = *x as u8),
                    2 => out
                        .chunks_exact_mut(2)
                        .zip(ids)
                        .for_each(|(o, x)| o.copy_from_slice(&(*x as u16).to_le_bytes())),
                    _ => out
                        .chunks_exact_mut(4)
                        .zip(ids)
                        .for_each(|(o, x)| o.copy_from_slice(&x.to_le_bytes())),
                }
                *at += ids.len() * width;
            }
        }
    }
    fn u64(&mut self, v: u64) {
        self.put(&v.to_le_bytes());
    }
    fn f64(&mut self, v: f64) {
        self.put(&v.to_le_bytes());
    }
    fn len(&mut self, n: usize) {
        self.u64(n as u64);
    }
    fn str(&mut self, s: &str) {
        self.len(s.len());
        self.put(s.as_bytes());
    }
    fn f64s(&mut self, v: &[f64]) {
        self.len(v.len());
        for x in v {
            self.put(&x.to_le_bytes());
        }
    }
    fn u64s(&mut self, v: &[u64]) {
        self.len(v.len());
        for x in v {
            self.put(&x.to_le_bytes());
        }
    }
    fn u32s(&mut self, v: &[u32]) {
        self.len(v.len());
        for x in v {
            self.put(&x.to_le_bytes());
        }
    }
}

/// Little-endian bytes of a number, padded to 8 (for [`Writer::column`]).
fn le_f64(x: f64) -> [u8; 8] {
    x.to_le_bytes()
}
fn le_u64(x: u64) -> [u8; 8] {
    x.to_le_bytes()
}
fn le_u8(x: u8) -> [u8; 8] {
    [x, 0, 0, 0, 0, 0, 0, 0]
}

/// Eight bytes as an array (`b` holds at least eight).
fn eight(b: &[u8]) -> [u8; 8] {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    a
}

/// Slice ids from their `width`-byte little-endian form (see [`Writer::ids`]).
fn widen_ids(b: &[u8], width: usize) -> Vec<u32> {
    let mut v: Vec<u32> = super::big_vec(b.len() / width);
    match width {
        1 => v.extend(b.iter().map(|x| *x as u32)),
        2 => v.extend(
            b.chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]) as u32),
        ),
        _ => v.extend(
            b.chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])),
        ),
    }
    v
}

/// A column of plain numbers from its little-endian bytes (`b.len()` a multiple of the size):
/// one copy on little-endian targets.
fn from_le<T: Copy, const N: usize>(b: &[u8], read: fn([u8; N]) -> T) -> Vec<T> {
    let n = b.len() / N;
    #[cfg(target_endian = "little")]
    {
        let _ = read;
        let mut v: Vec<T> = super::big_vec(n);
        // SAFETY: T is a plain number type of N bytes whose every bit pattern is valid; the
        // source holds n * N bytes and the vector's capacity n elements; they do not overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(b.as_ptr(), v.as_mut_ptr() as *mut u8, n * N);
            v.set_len(n);
        }
        v
    }
    #[cfg(not(target_endian = "little"))]
    {
        b.chunks_exact(N)
            .map(|c| read(c.try_into().unwrap_or([0; N])))
            .collect()
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    /// Bytes of the payload in all (`buf` is what is left of it).
    total: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader {
            buf,
            total: buf.len(),
        }
    }
    /// Skips the zero bytes of [`Writer::align8`].
    fn align8(&mut self) -> Result<()> {
        let pos = self.total - self.buf.len();
        let pad = self.take((8 - pos % 8) % 8)?;
        if pad.iter().any(|b| *b != 0) {
            return Err(bad("padding bytes are not zero"));
        }
        Ok(())
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if n > self.buf.len() {
            return Err(bad("truncated"));
        }
        let (a, b) = self.buf.split_at(n);
        self.buf = b;
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn flag(&mut self) -> Result<bool> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(bad("a flag is neither 0 nor 1")),
        }
    }
    fn u64(&mut self) -> Result<u64> {
        let b = self.take(8)?;
        Ok(u64::from_le_bytes(
            b.try_into().map_err(|_| bad("truncated"))?,
        ))
    }
    fn f64(&mut self) -> Result<f64> {
        Ok(f64::from_bits(self.u64()?))
    }
    /// A count of items of at least `each` bytes: never more than the bytes left allow.
    fn len(&mut self, each: usize) -> Result<usize> {
        let n = self.u64()?;
        let n = usize::try_from(n).map_err(|_| bad("a length overflows"))?;
        match n.checked_mul(each.max(1)) {
            Some(b) if b <= self.buf.len() => Ok(n),
            _ => Err(bad("truncated (a length runs past the end)")),
        }
    }
    fn str(&mut self) -> Result<String> {
        let n = self.len(1)?;
        let b = self.take(n)?;
        String::from_utf8(b.to_vec()).map_err(|_| bad("text is not UTF-8"))
    }
    fn f64s(&mut self) -> Result<Vec<f64>> {
        let n = self.len(8)?;
        Ok(from_le(self.take(n * 8)?, f64::from_le_bytes))
    }
    fn u64s(&mut self) -> Result<Vec<u64>> {
        let n = self.len(8)?;
        Ok(from_le(self.take(n * 8)?, u64::from_le_bytes))
    }
    fn u32s(&mut self) -> Result<Vec<u32>> {
        let n = self.len(4)?;
        Ok(from_le(self.take(n * 4)?, u32::from_le_bytes))
    }
    /// A length-prefixed column of `each`-byte numbers (8-byte ones after [`Writer::align8`]'s
    /// padding), as its bytes (converted later).
    fn raw(&mut self, each: usize) -> Result<&'a [u8]> {
        let n = self.len(each)?;
        if each == 8 {
            self.align8()?;
        }
        self.take(n * each)
    }
    fn usize(&mut self, max: usize, what: &str) -> Result<usize> {
        let v = self.u64()?;
        if v > max as u64 {
            return Err(bad(format!("{what} out of range")));
        }
        Ok(v as usize)
    }
}

fn write_shape(w: &mut Writer, s: &StateShape) {
    for v in [s.hist_bins, s.slots, s.calib_bins] {
        w.len(v);
    }
    for f in [s.moments, s.calib_reps, s.grid, s.logit] {
        w.u8(f as u8);
    }
    w.u8(match s.family {
        Family::Binary => 0,
        Family::Regression => 1,
        Family::Multiclass => 2,
        Family::Ranking => 3,
    });
    w.len(s.quantiles);
    w.u8(s.deviance as u8);
    w.f64(s.power);
    w.u8(s.interval as u8);
    if s.family == Family::Multiclass {
        w.len(s.classes);
        w.len(s.top_k);
        w.len(s.ece_bins);
        // (Bit 1: the binned ROC-AUC histograms follow; bit 2: the run sketches of
        // auc="sketch" come in one-vs-one pairs. A state without them reads as before.)
        let sketch_pairs = s.auc_pairs && s.auc_bins == 0;
        w.u8(s.classwise as u8 | ((s.auc_bins > 0) as u8) << 1 | (sketch_pairs as u8) << 2);
        if s.auc_bins > 0 {
            w.len(s.auc_bins);
            w.u8(s.auc_pairs as u8);
        }
    }
    if s.family == Family::Ranking {
        w.len(s.ranking_metrics);
    }
}

fn read_shape(r: &mut Reader) -> Result<StateShape> {
    const BIG: usize = 1 << 24;
    let mut shape = StateShape {
        hist_bins: r.usize(BIG, "histogram bins")?,
        slots: r.usize(BIG, "replicate slots")?,
        calib_bins: r.usize(BIG, "calibration bins")?,
        moments: r.flag()?,
        calib_reps: r.flag()?,
        grid: r.flag()?,
        logit: r.flag()?,
        family: match r.u8()? {
            0 => Family::Binary,
            1 => Family::Regression,
            2 => Family::Multiclass,
            3 => Family::Ranking,
            _ => return Err(bad("unknown task family")),
        },
        quantiles: r.usize(BIG, "pinball quantiles")?,
        deviance: r.flag()?,
        power: r.f64()?,
        interval: r.flag()?,
        classes: 0,
        top_k: 0,
        ece_bins: 0,
        classwise: false,
        auc_bins: 0,
        auc_pairs: false,
        ranking_metrics: 0,
    };
    if shape.family == Family::Ranking {
        shape.ranking_metrics = r.usize(BIG, "ranking metrics")?;
    }
    if shape.family == Family::Multiclass {
        shape.classes = r.usize(crate::multiclass::MAX_CLASSES, "classes")?;
        shape.top_k = r.usize(BIG, "top-k accuracies")?;
        shape.ece_bins = r.usize(BIG, "calibration bins")?;
        let flags = r.u8()?;
        if flags > 7 || flags & 6 == 6 {
            return Err(bad("bad multiclass flags"));
        }
        shape.classwise = flags & 1 == 1;
        shape.auc_pairs = flags & 4 == 4;
        if flags & 2 == 2 {
            shape.auc_bins = r.usize(BIG, "ROC-AUC histogram bins")?;
            shape.auc_pairs = r.flag()?;
            if shape.auc_bins < 2 {
                return Err(bad("ROC-AUC histogram bins out of range"));
            }
        }
    }
    Ok(shape)
}

fn write_keys(w: &mut Writer, k: &SlicerKeys) {
    w.len(k.features.len());
    for (column, values) in &k.features {
        w.str(column);
        match values {
            FeatureValues::Str(v) => {
                w.u8(0);
                w.len(v.len());
                for x in v {
                    match x {
                        None => w.u8(0),
                        Some(s) => {
                            w.u8(1);
                            w.str(s);
                        }
                    }
                }
            }
            FeatureValues::Int {
                signed,
                boolean,
                values,
            } => {
                w.u8(1);
                w.u8(*signed as u8);
                w.u8(*boolean as u8);
                w.len(values.len());
                for x in values {
                    match x {
                        None => w.u8(0),
                        Some(v) => {
                            w.u8(1);
                            w.u64(*v);
                        }
                    }
                }
            }
            FeatureValues::Bins(edges) => {
                w.u8(2);
                w.f64s(edges);
            }
        }
    }
    w.len(k.specs.len());
    for (idx, levels) in &k.specs {
        w.u64s(&idx.iter().map(|i| *i as u64).collect::<Vec<_>>());
        w.len(levels.len());
        for l in levels {
            w.u64s(l);
        }
    }
}

fn read_keys(r: &mut Reader) -> Result<SlicerKeys> {
    let n = r.len(9)?;
    let mut features = Vec::with_capacity(n);
    for _ in 0..n {
        let column = r.str()?;
        let values = match r.u8()? {
            0 => {
                let m = r.len(1)?;
                let mut v = Vec::with_capacity(m);
                for _ in 0..m {
                    v.push(if r.flag()? { Some(r.str()?) } else { None });
                }
                FeatureValues::Str(v)
            }
            1 => {
                let signed = r.flag()?;
                let boolean = r.flag()?;
                let m = r.len(1)?;
                let mut v = Vec::with_capacity(m);
                for _ in 0..m {
                    v.push(if r.flag()? { Some(r.u64()?) } else { None });
                }
                FeatureValues::Int {
                    signed,
                    boolean,
                    values: v,
                }
            }
            2 => FeatureValues::Bins(r.f64s()?),
            _ => return Err(bad("unknown slice feature kind")),
        };
        features.push((column, values));
    }
    let n = r.len(16)?;
    let mut specs = Vec::with_capacity(n);
    for _ in 0..n {
        let idx = r.u64s()?;
        let idx = idx
            .into_iter()
            .map(|i| usize::try_from(i).map_err(|_| bad("feature index")))
            .collect::<Result<Vec<_>>>()?;
        let m = r.len(8)?;
        let mut levels = Vec::with_capacity(m);
        for _ in 0..m {
            levels.push(r.u64s()?);
        }
        specs.push((idx, levels));
    }
    Ok(SlicerKeys { features, specs })
}

fn write_slice_states(w: &mut Writer, s: &SliceStates) {
    w.len(s.counts.len());
    for c in &s.counts {
        w.u64(c.n);
        for v in [c.w, c.tp, c.fp, c.tn, c.fn_, c.log_loss, c.brier] {
            w.f64(v);
        }
    }
    w.len(s.moments.len());
    for m in &s.moments {
        for v in m.w2.iter().chain(&m.w3) {
            w.f64(*v);
        }
        w.f64(m.log_loss2);
        w.f64(m.brier2);
    }
    for v in [
        &s.hist,
        &s.reps,
        &s.calib,
        &s.calib_reps,
        &s.grid,
        &s.logit,
        &s.fam,
        &s.fam_reps,
    ] {
        w.f64s(v);
    }
}

fn read_slice_states(r: &mut Reader, layout: StateShape) -> Result<SliceStates> {
    let n = r.len(64)?;
    let mut counts = Vec::with_capacity(n);
    for _ in 0..n {
        counts.push(BinaryCounts {
            n: r.u64()?,
            w: r.f64()?,
            tp: r.f64()?,
            fp: r.f64()?,
            tn: r.f64()?,
            fn_: r.f64()?,
            log_loss: r.f64()?,
            brier: r.f64()?,
        });
    }
    let n = r.len(80)?;
    let mut moments = Vec::with_capacity(n);
    for _ in 0..n {
        let mut m = Moments::default();
        for v in m.w2.iter_mut().chain(m.w3.iter_mut()) {
            *v = r.f64()?;
        }
        m.log_loss2 = r.f64()?;
        m.brier2 = r.f64()?;
        moments.push(m);
    }
    Ok(SliceStates {
        counts,
        moments,
        hist: r.f64s()?,
        reps: r.f64s()?,
        calib: r.f64s()?,
        calib_reps: r.f64s()?,
        grid: r.f64s()?,
        logit: r.f64s()?,
        fam: r.f64s()?,
        fam_reps: r.f64s()?,
        layout,
        hist_log: Vec::new(),
        hist_log_w: Vec::new(),
        hist_logged: false,
    })
}

impl PartialState {
    /// The state in the byte format above.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = vec![0u8; self.encoded_len()];
        self.write_bytes(&mut out);
        out
    }

    /// The length of [`PartialState::to_bytes`].
    pub fn encoded_len(&self) -> usize {
        let mut w = Writer(Sink::Count(0));
        self.encode(&mut w);
        match w.0 {
            Sink::Count(n) => HEADER + n,
            Sink::Into(..) => unreachable!("a counting writer"),
        }
    }

    /// Writes [`PartialState::to_bytes`] into `out`, of exactly [`PartialState::encoded_len`]
    /// bytes (a Python `bytes` object's memory, say).
    pub fn write_bytes(&self, out: &mut [u8]) {
        let (head, payload) = out.split_at_mut(HEADER);
        let mut w = Writer(Sink::Into(payload, 0));
        self.encode(&mut w);
        let sum = checksum(payload);
        let len = payload.len() as u64;
        head[..8].copy_from_slice(MAGIC);
        head[8..12].copy_from_slice(&STATE_FORMAT_VERSION.to_le_bytes());
        head[12..16].copy_from_slice(&0u32.to_le_bytes());
        head[16..24].copy_from_slice(&len.to_le_bytes());
        head[24..32].copy_from_slice(&sum.to_le_bytes());
    }

    fn encode(&self, w: &mut Writer) {
        w.str(&self.spec_json);
        w.len(self.models);
        write_shape(w, &self.shape);
        w.u64(self.rows);
        w.u64(self.dropped);
        match self.weight_scale {
            Some(s) => {
                w.u8(1);
                w.u64(s.exp as i64 as u64);
                w.f64(s.reference);
            }
            None => w.u8(0),
        }
        w.u8(self.position_keys as u8);
        w.len(self.sketch_runs);
        w.len(self.ranges.len());
        for (a, b) in &self.ranges {
            w.u64(*a);
            w.u64(*b);
        }
        write_keys(w, &self.slicer.keys());
        w.len(self.total.specs.len());
        for s in &self.total.specs {
            write_slice_states(w, s);
        }
        w.len(self.rank.len());
        let n_ids = self.n_ids();
        for rk in &self.rank {
            w.u8(rk.sorted as u8 | (rk.compact as u8) << 1 | (rk.counted as u8) << 2);
            w.column(&rk.scores, le_f64);
            w.column(&rk.labels, le_u8);
            w.column(&rk.weights, le_f64);
            w.len(rk.ids.len());
            for (ids, n) in rk.ids.iter().zip(&n_ids[1..]) {
                w.ids(ids, *n);
            }
            w.column(&rk.row_keys, le_u64);
        }
        w.len(self.sketches.len());
        for per_spec in &self.sketches {
            w.len(per_spec.len());
            for per_id in per_spec {
                w.len(per_id.len());
                for sk in per_id {
                    // Most runs are one distinct score (hi == lo, unc == 0): their hi and unc
                    // are written only for the runs that span several scores.
                    let [lo, hi, neg, pos, unc] = sk.to_columns();
                    w.f64s(&lo);
                    w.f64s(&neg);
                    w.f64s(&pos);
                    let wide: Vec<u32> = (0..lo.len())
                        .filter(|i| hi[*i] != lo[*i] || unc[*i] != 0.0)
                        .map(|i| i as u32)
                        .collect();
                    w.u32s(&wide);
                    w.f64s(&wide.iter().map(|i| hi[*i as usize]).collect::<Vec<_>>());
                    w.f64s(&wide.iter().map(|i| unc[*i as usize]).collect::<Vec<_>>());
                }
            }
        }
        w.len(self.prob_hists.len());
        for h in &self.prob_hists {
            w.f64s(&h.rows);
            w.f64s(&h.positives);
            w.f64s(&h.scores);
        }
        w.u64s(&self.queries);
        w.u8(self.content_hash.is_some() as u8);
        if let Some(h) = self.content_hash {
            w.u64(h);
        }
    }

    /// A state from [`PartialState::to_bytes`]'s bytes, fully checked. The state owns copies
    /// of what it reads.
    pub fn from_bytes(bytes: &[u8]) -> Result<PartialState> {
        Self::read(bytes, None)
    }

    /// [`PartialState::from_bytes`] of bytes the state may keep: its kept rows (the scores,
    /// labels, weights and resampling keys of exact rank metrics, most of a large state) are
    /// read where they lie instead of copied, and `owner` lives as long as the state or
    /// anything merged or cloned from it still reads them. Writing to such a column copies
    /// it first ([`Col`]).
    pub fn from_shared_bytes<B: StableBytes>(owner: Arc<B>) -> Result<PartialState> {
        let keep: Owner = owner.clone();
        Self::read(owner.stable_bytes(), Some(&keep))
    }

    fn read(bytes: &[u8], owner: Option<&Owner>) -> Result<PartialState> {
        if bytes.len() < HEADER || &bytes[..8] != MAGIC {
            if bytes.len() < HEADER && MAGIC.starts_with(&bytes[..bytes.len().min(8)]) {
                return Err(bad(format!(
                    "truncated ({} bytes, shorter than the header)",
                    bytes.len()
                )));
            }
            return Err(AssayError::StateFormat(
                "not an assay partial state (the bytes do not start with assay's state header)"
                    .into(),
            ));
        }
        let word =
            |i: usize| u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
        let version = word(8);
        if version > STATE_FORMAT_VERSION {
            return Err(AssayError::StateFormat(format!(
                "this partial state has format version {version}, written by a newer assay; this \
                 version reads format {STATE_FORMAT_VERSION} and older: upgrade assay"
            )));
        }
        if version < STATE_FORMAT_VERSION {
            return Err(AssayError::StateFormat(format!(
                "this partial state has format version {version}, written by an earlier \
                 development build of assay; this version reads format \
                 {STATE_FORMAT_VERSION}: accumulate the shard again"
            )));
        }
        if version == 0 || word(12) != 0 {
            return Err(bad("unknown format version or flags"));
        }
        let mut head = Reader::new(&bytes[16..HEADER]);
        let len = head.u64()?;
        let sum = head.u64()?;
        let payload = &bytes[HEADER..];
        if (payload.len() as u64) < len {
            return Err(bad(format!(
                "truncated ({} of {len} payload bytes)",
                payload.len()
            )));
        }
        if payload.len() as u64 != len {
            return Err(bad("trailing bytes after the payload"));
        }
        // A large payload is checksummed on one thread while another decodes it (decoding
        // reads every length against the bytes left, so corrupted bytes cannot make it
        // misbehave); its rows are then checked in parallel.
        if payload.len() >= PARALLEL_DECODE {
            let pool = crate::runtime::job_pool(None)?;
            let (sum_ok, state) = pool
                .install(|| rayon::join(|| checksum(payload) == sum, || decode(payload, owner)));
            if !sum_ok {
                return Err(bad("corrupted (checksum mismatch)"));
            }
            let state = state?;
            pool.install(|| state.check_consistent(true))?;
            return Ok(state);
        }
        if checksum(payload) != sum {
            return Err(bad("corrupted (checksum mismatch)"));
        }
        let state = decode(payload, owner)?;
        state.check_consistent(false)?;
        Ok(state)
    }
}

/// Payloads at least this long are checksummed, decoded and checked in parallel.
const PARALLEL_DECODE: usize = 1 << 20;

/// The state of a payload (its checksum verified, or being verified beside), before its
/// consistency checks.
fn decode(payload: &[u8], owner: Option<&Owner>) -> Result<PartialState> {
    let mut r = Reader::new(payload);
    let spec_json = r.str()?;
    let models = r.usize(1 << 16, "model count")?;
    let shape = read_shape(&mut r)?;
    let rows = r.u64()?;
    let dropped = r.u64()?;
    let weight_scale = if r.flag()? {
        let exp = r.u64()? as i64;
        let reference = r.f64()?;
        if !(-1100..=1100).contains(&exp) {
            return Err(bad("weight scale"));
        }
        Some(WeightScale {
            exp: exp as i32,
            reference,
        })
    } else {
        None
    };
    let position_keys = r.flag()?;
    let sketch_runs = r.usize(crate::sketch::MAX_MAX_RUNS, "sketch budget")?;
    let n = r.len(16)?;
    let mut ranges = Vec::with_capacity(n);
    for _ in 0..n {
        ranges.push((r.u64()?, r.u64()?));
    }
    let slicer = Slicer::from_keys(read_keys(&mut r)?)?;
    let n = r.len(8)?;
    let mut specs = Vec::with_capacity(n);
    for _ in 0..n {
        specs.push(read_slice_states(&mut r, shape)?);
    }
    let n = r.len(40)?;
    let mut rank = Vec::with_capacity(n);
    for _ in 0..n {
        let flags = r.u8()?;
        if flags > 7 {
            return Err(bad("kept row flags"));
        }
        let (scores, labels, weights) = (r.raw(8)?, r.raw(1)?, r.raw(8)?);
        let m = r.len(9)?;
        let mut ids = Vec::with_capacity(m);
        for _ in 0..m {
            let width = r.u8()? as usize;
            if ![1, 2, 4].contains(&width) {
                return Err(bad("slice id width"));
            }
            ids.push((width, r.raw(width)?));
        }
        let row_keys = r.raw(8)?;
        // SAFETY: the columns lie in `payload`, which is inside the memory `owner` keeps
        // alive and unchanged (`from_shared_bytes`), or `owner` is None and they are copied.
        let (scores, labels, weights, row_keys) = unsafe {
            (
                Col::borrow_or_copy(scores, owner, |b| f64::from_le_bytes(eight(b))),
                Col::borrow_or_copy(labels, owner, |b| b[0]),
                Col::borrow_or_copy(weights, owner, |b| f64::from_le_bytes(eight(b))),
                Col::borrow_or_copy(row_keys, owner, |b| u64::from_le_bytes(eight(b))),
            )
        };
        let ids = ids
            .into_iter()
            .map(|(width, b)| widen_ids(b, width))
            .collect();
        rank.push(RankRows {
            scores,
            labels,
            weights,
            ids,
            row_keys,
            sorted: flags & 1 != 0,
            compact: flags & 2 != 0,
            counted: flags & 4 != 0,
        });
    }
    let n = r.len(8)?;
    let mut sketches = Vec::with_capacity(n);
    for _ in 0..n {
        let m = r.len(8)?;
        let mut per_spec = Vec::with_capacity(m);
        for _ in 0..m {
            let k = r.len(48)?;
            let mut per_id = Vec::with_capacity(k);
            for _ in 0..k {
                let (lo, neg, pos) = (r.f64s()?, r.f64s()?, r.f64s()?);
                let (wide, wide_hi, wide_unc) = (r.u32s()?, r.f64s()?, r.f64s()?);
                if wide.len() != wide_hi.len() || wide.len() != wide_unc.len() {
                    return Err(bad("a sketch's wide runs"));
                }
                let (mut hi, mut unc) = (lo.clone(), vec![0.0; lo.len()]);
                for ((i, h), u) in wide.iter().zip(wide_hi).zip(wide_unc) {
                    let i = *i as usize;
                    if i >= lo.len() {
                        return Err(bad("a sketch's wide runs"));
                    }
                    hi[i] = h;
                    unc[i] = u;
                }
                let sk = RunSketch::from_columns(&lo, &hi, &neg, &pos, &unc)
                    .map_err(|e| bad(format!("a sketch: {e}")))?;
                if sketch_runs > 0 && sk.len() > shape.sketch_budget(sketch_runs) {
                    return Err(bad("a sketch holds more runs than its budget"));
                }
                per_id.push(sk);
            }
            per_spec.push(per_id);
        }
        sketches.push(per_spec);
    }
    let n = r.len(24)?;
    let mut prob_hists = Vec::with_capacity(n);
    for _ in 0..n {
        prob_hists.push(ProbHist {
            rows: r.f64s()?,
            positives: r.f64s()?,
            scores: r.f64s()?,
        });
    }
    let queries = r.u64s()?;
    let content_hash = if r.flag()? { Some(r.u64()?) } else { None };
    if !r.buf.is_empty() {
        return Err(bad("unread bytes at the end of the payload"));
    }
    let state = PartialState {
        queries,
        content_hash,
        spec_json,
        slicer,
        models,
        shape,
        total: ChunkState { specs },
        rank,
        sketches,
        sketch_runs,
        prob_hists,
        weight_scale,
        rows,
        dropped,
        ranges,
        position_keys,
        replay: None,
    };
    Ok(state)
}
