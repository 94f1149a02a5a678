//! The ranking family (`task="ranking"`): one row per (query, item), metrics computed per query
//! and averaged over the queries of each slice.
//!
//! # Conventions (each an option with a default; docs/ranking.md)
//!
//! - Items are ordered by score, descending. `ties="average"` (default) gives each metric's
//!   expected value over all orderings of tied items, equally likely (McSherry & Najork 2008);
//!   `ties="stable"` breaks ties by input order (the global row position).
//! - `gain="exponential"` (default, `2^rel - 1`) or `"linear"` (`rel`) in DCG; the ideal DCG is
//!   that of the query's own items sorted by relevance.
//! - An item is relevant when its relevance is above 0 (precision, recall, hit rate, average
//!   precision, MRR and the per-query AUC read relevance as binary; NDCG reads the grades).
//! - `precision@k` divides by `k` even when the query has fewer items; `map@k` divides by
//!   `min(k, relevant items)`; `mrr` has no cutoff; `auc_per_query` counts a tie 1/2 under both
//!   `ties` options and only queries with relevant and other items.
//! - `empty="skip"` (default) leaves a query without a relevant item out of every metric
//!   (counted in `n_skipped`); `empty="zero"` scores it 0 on every metric but the AUC.
//!
//! # The pass
//!
//! A query's value needs all of its rows, in any order: the pass keeps every row (query key,
//! relevance, each model's score, global position, weight, slice ids), and the end of the pass
//! groups them by query (no sort when each query's rows are contiguous; otherwise one parallel
//! sort by (query key, position)), computes each query's values in parallel and adds them, in
//! query key order, to the slice blocks: `[queries counted, skipped, items, then per metric its
//! weighted sum and weight]`, and per replicate slot each metric's sums under the query's
//! Poisson weight (hashed from the query key: the query is the unit of the bootstrap). A
//! partial state thus holds finished queries only, and the keys of its queries, so that a merge
//! refuses two states that share a query (ranking data must be sharded by query).

pub mod family;

use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{ArrowError, DataType, SchemaRef};
use rayon::prelude::*;

use crate::bootstrap::{CiMethod, IntervalSpec, Resampler};
use crate::error::{invalid, schema as schema_err, AssayError, Result};
use crate::input::{check_numeric_type, column_index, f64_view, next_batch, validity};
use crate::metrics::{Metric, Value};
use crate::slicing::Slicer;
use crate::state::{ChunkState, StateShape};

/// How a relevance grade becomes a gain in DCG.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gain {
    /// `2^rel - 1`.
    Exponential,
    /// `rel`.
    Linear,
}

/// How tied scores are ordered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ties {
    /// The expectation over all orderings of the tied items.
    Average,
    /// Input order (global row position).
    Stable,
}

/// What a query without a relevant item counts for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Empty {
    /// Left out of every metric (counted in `n_skipped`).
    Skip,
    /// 0 on every metric but `auc_per_query`.
    Zero,
}

/// The options of a ranking job.
#[derive(Clone, Debug, PartialEq)]
pub struct RankingSpec {
    /// The column of the query (or user) each row belongs to: integers or strings.
    pub query: String,
    pub gain: Gain,
    pub ties: Ties,
    pub empty: Empty,
}

impl RankingSpec {
    /// The options from their names (`gain`, `ties`, `empty`).
    pub fn parse(query: String, gain: &str, ties: &str, empty: &str) -> Result<RankingSpec> {
        let bad = |what: &str, allowed: &str, got: &str| {
            AssayError::InvalidArgument(format!("{what} must be {allowed}, got {got:?}"))
        };
        Ok(RankingSpec {
            query,
            gain: match gain {
                "exponential" => Gain::Exponential,
                "linear" => Gain::Linear,
                other => return Err(bad("gain", "\"exponential\" or \"linear\"", other)),
            },
            ties: match ties {
                "average" => Ties::Average,
                "stable" => Ties::Stable,
                other => return Err(bad("ties", "\"average\" or \"stable\"", other)),
            },
            empty: match empty {
                "skip" => Empty::Skip,
                "zero" => Empty::Zero,
                other => return Err(bad("empty", "\"skip\" or \"zero\"", other)),
            },
        })
    }
}

/// Fields of a slice's block before the metrics'.
const COUNTED: usize = 0;
const SKIPPED: usize = 1;
const ITEMS: usize = 2;
const HEAD: usize = 3;

/// Where a slice's fields lie in a ranking job's blocks.
#[derive(Clone, Copy, Debug)]
pub struct Layout {
    /// The job's metrics (each has a weighted sum and a weight).
    pub metrics: usize,
}

impl Layout {
    pub fn of(shape: &StateShape) -> Layout {
        Layout {
            metrics: shape.ranking_metrics,
        }
    }

    /// Fields of a slice's block.
    pub fn block_len(&self) -> usize {
        HEAD + 2 * self.metrics
    }

    /// Fields of one replicate slot (each metric's sum and weight).
    pub fn fields(&self) -> usize {
        2 * self.metrics
    }
}

/// Merges slice block (or replicate block) `b` into `a`: sums.
pub fn merge_block(a: &mut [f64], b: &[f64]) {
    for (x, y) in a.iter_mut().zip(b) {
        *x += y;
    }
}

pub const NO_QUERY: &str = "undefined: no query of the slice counts for this metric";
pub const NO_AUC_QUERY: &str = "undefined: no query of the slice has both relevant and other items";
pub const NO_ANALYTIC_RANKING: &str =
    "task=\"ranking\" has no analytic intervals: use bootstrap=B (it resamples queries)";
pub const NO_COUNT_INTERVAL: &str = "a count: no interval";

// ---------------------------------------------------------------------------------------------
// One query

/// A u64 whose ascending order is the descending order of the finite `x` (-0 and 0 alike).
#[inline]
fn descending_key(x: f64) -> u64 {
    let b = (x + 0.0).to_bits();
    !(if b >> 63 == 1 { !b } else { b | 1 << 63 })
}

/// The DCG discount of 0-based position `p`.
#[inline]
fn discount(p: usize) -> f64 {
    1.0 / ((p + 2) as f64).log2()
}

fn gain_of(gain: Gain, rel: f64) -> f64 {
    match gain {
        Gain::Exponential => rel.exp2() - 1.0,
        Gain::Linear => rel,
    }
}

/// The values of `metrics` for one query whose items (in input order) have `scores` and
/// relevance grades `rel` (finite, >= 0): None where the metric is undefined for the query
/// (no relevant item; the AUC of a query with one kind of item; the counts, which are not
/// per-query values). Returns the values and whether the query has a relevant item.
pub fn query_values(
    scores: &[f64],
    rel: &[f64],
    metrics: &[Metric],
    gain: Gain,
    ties: Ties,
) -> (Vec<Option<f64>>, bool) {
    let mut scratch = QueryScratch::default();
    scratch.prepare(rel, gain);
    let mut out = vec![0.0; metrics.len()];
    let has_rel = scratch.values(scores, rel, metrics, ties, &mut out);
    (
        out.iter().map(|v| (!v.is_nan()).then_some(*v)).collect(),
        has_rel,
    )
}

/// The buffers of one query's values, reused from query to query (and model to model).
#[derive(Default)]
pub struct QueryScratch {
    /// Each item's gain, and the ideal DCG's prefix sums (`ideal[p]`: the first `p` positions).
    gains: Vec<f64>,
    ideal: Vec<f64>,
    n_rel: usize,
    order: Vec<u32>,
    /// The relevant items' gains, descending.
    sorted: Vec<f64>,
    /// (descending score key, item) records of the sort.
    keyed: Vec<(u64, u32)>,
    /// `discount(p)` for the positions seen so far.
    disc: Vec<f64>,
    /// Tie groups `[start, end)` of positions, their gain and relevant items.
    groups: Vec<(usize, usize)>,
    group_gain: Vec<f64>,
    group_rel: Vec<usize>,
}

impl QueryScratch {
    /// The query's gains and ideal DCG (the same for every model).
    pub fn prepare(&mut self, rel: &[f64], gain: Gain) {
        self.gains.clear();
        self.gains.extend(rel.iter().map(|r| gain_of(gain, *r)));
        self.n_rel = rel.iter().filter(|r| **r > 0.0).count();
        // The ideal order: relevant items' gains, descending (the others add 0).
        self.sorted.clear();
        self.sorted
            .extend(self.gains.iter().copied().filter(|g| *g > 0.0));
        self.sorted.sort_unstable_by(|a, b| b.total_cmp(a));
        while self.disc.len() < rel.len() {
            let p = self.disc.len();
            self.disc.push(discount(p));
        }
        self.ideal.clear();
        self.ideal.push(0.0);
        let mut acc = 0.0;
        for p in 0..rel.len() {
            if let Some(g) = self.sorted.get(p) {
                acc += g * self.disc[p];
            }
            self.ideal.push(acc);
        }
    }

    /// The values of `metrics` (NaN where undefined) into `out`, for one model's `scores`
    /// (after [`QueryScratch::prepare`] with the query's relevance); whether the query has a
    /// relevant item.
    pub fn values(
        &mut self,
        scores: &[f64],
        rel: &[f64],
        metrics: &[Metric],
        ties: Ties,
        out: &mut [f64],
    ) -> bool {
        let n = scores.len();
        let n_rel = self.n_rel;
        // Descending score, ties in input order: one sort of (key, item) records.
        self.keyed.clear();
        self.keyed.extend(
            scores
                .iter()
                .enumerate()
                .map(|(i, x)| (descending_key(*x), i as u32)),
        );
        self.keyed.sort_unstable();
        self.order.clear();
        self.order.extend(self.keyed.iter().map(|k| k.1));
        while self.disc.len() < n {
            let p = self.disc.len();
            self.disc.push(discount(p));
        }
        let disc = &self.disc;
        let discount = |p: usize| disc[p];
        let order = &self.order;
        let relevant = |i: u32| rel[i as usize] > 0.0;
        // Tie groups (each position its own group when stable).
        self.groups.clear();
        self.group_gain.clear();
        self.group_rel.clear();
        let mut a = 0;
        while a < n {
            let mut b = a + 1;
            if ties == Ties::Average {
                while b < n && scores[order[b] as usize] == scores[order[a] as usize] {
                    b += 1;
                }
            }
            self.groups.push((a, b));
            self.group_gain
                .push(order[a..b].iter().map(|&i| self.gains[i as usize]).sum());
            self.group_rel
                .push(order[a..b].iter().filter(|&&i| relevant(i)).count());
            a = b;
        }
        let (groups, group_gain, group_rel) = (&self.groups, &self.group_gain, &self.group_rel);
        // Expected relevant items among the first k positions.
        let rel_in_top = |k: usize| -> f64 {
            let mut c = 0.0;
            for (g, &(a, b)) in groups.iter().enumerate() {
                if a >= k {
                    break;
                }
                let inside = b.min(k) - a;
                c += group_rel[g] as f64 * inside as f64 / (b - a) as f64;
            }
            c
        };
        let dcg = |k: usize| -> f64 {
            let mut d = 0.0;
            for (g, &(a, b)) in groups.iter().enumerate() {
                if a >= k {
                    break;
                }
                if b - a == 1 {
                    d += group_gain[g] * discount(a);
                } else {
                    let disc: f64 = (a..b.min(k)).map(discount).sum();
                    d += group_gain[g] / (b - a) as f64 * disc;
                }
            }
            d
        };
        let hit = |k: usize| -> f64 {
            for (g, &(a, b)) in groups.iter().enumerate() {
                if a >= k {
                    break;
                }
                let r = group_rel[g];
                if r == 0 {
                    continue;
                }
                let (size, m) = (b - a, b.min(k) - a);
                if m == size {
                    return 1.0;
                }
                // P(none of the r relevant among the m of the group's positions inside the
                // cutoff).
                let mut none = 1.0;
                for i in 0..m {
                    if size - r < i + 1 {
                        none = 0.0;
                        break;
                    }
                    none *= (size - r - i) as f64 / (size - i) as f64;
                }
                return 1.0 - none;
            }
            0.0
        };
        let average_precision = |k: usize| -> f64 {
            // Sum over positions p < k of E[rel(p) x relevant items at or above p] / (p + 1).
            let mut sum = 0.0;
            let mut above = 0.0;
            for (g, &(a, b)) in groups.iter().enumerate() {
                if a >= k {
                    break;
                }
                let (size, r) = ((b - a) as f64, group_rel[g] as f64);
                if r > 0.0 {
                    for p in a..b.min(k) {
                        let before = if size > 1.0 {
                            (p - a) as f64 * (r - 1.0) / (size - 1.0)
                        } else {
                            0.0
                        };
                        sum += r / size * (above + 1.0 + before) / (p + 1) as f64;
                    }
                }
                above += r;
            }
            sum / k.min(n_rel) as f64
        };
        let reciprocal_rank = || -> f64 {
            for (g, &(a, b)) in groups.iter().enumerate() {
                let r = group_rel[g];
                if r == 0 {
                    continue;
                }
                // The first relevant item's offset j in the group: P(j) = prod_{i<j} (size -
                // r - i) / (size - i) x r / (size - j).
                let size = b - a;
                let (mut e, mut none_before) = (0.0, 1.0);
                for j in 0..=size - r {
                    let p = none_before * r as f64 / (size - j) as f64;
                    e += p / (a + j + 1) as f64;
                    none_before *= (size - r - j) as f64 / (size - j) as f64;
                }
                return e;
            }
            0.0
        };
        let auc = || -> f64 {
            let neg_total = (n - n_rel) as f64;
            if n_rel == 0 || neg_total == 0.0 {
                return f64::NAN;
            }
            // Score ties count 1/2 whatever `ties` says: walk groups of equal scores.
            let (mut num, mut neg_above) = (0.0, 0.0);
            let mut a = 0;
            while a < n {
                let mut b = a + 1;
                while b < n && scores[order[b] as usize] == scores[order[a] as usize] {
                    b += 1;
                }
                let pos = order[a..b].iter().filter(|&&i| relevant(i)).count() as f64;
                let neg = (b - a) as f64 - pos;
                num += pos * (neg_total - neg_above - neg) + 0.5 * pos * neg;
                neg_above += neg;
                a = b;
            }
            num / (n_rel as f64 * neg_total)
        };
        let has_rel = n_rel > 0;
        for (o, m) in out.iter_mut().zip(metrics) {
            *o = if !has_rel && *m != Metric::AucPerQuery {
                f64::NAN
            } else {
                match *m {
                    Metric::Ndcg(k) => {
                        let idcg = self.ideal[k.min(n)];
                        if idcg > 0.0 {
                            (dcg(k) / idcg).clamp(0.0, 1.0)
                        } else {
                            f64::NAN
                        }
                    }
                    Metric::MapAt(k) => average_precision(k).clamp(0.0, 1.0),
                    Metric::PrecisionAt(k) => rel_in_top(k) / k as f64,
                    Metric::RecallAt(k) => (rel_in_top(k) / n_rel as f64).clamp(0.0, 1.0),
                    Metric::HitRate(k) => hit(k),
                    Metric::Mrr => reciprocal_rank(),
                    Metric::AucPerQuery => auc(),
                    _ => f64::NAN,
                }
            };
        }
        has_rel
    }
}

// ---------------------------------------------------------------------------------------------
// The pass

/// Every row a ranking pass keeps until its queries are finished.
#[derive(Default)]
struct Rows {
    query: Vec<u64>,
    pos: Vec<u64>,
    rel: Vec<f64>,
    /// Per model.
    scores: Vec<Vec<f64>>,
    /// Empty when the job is unweighted.
    weight: Vec<f64>,
    /// Per slice spec.
    ids: Vec<Vec<u32>>,
}

/// The query keys of a query column's rows into `out`: integers as their 64-bit pattern,
/// strings (plain, large, view or dictionary-encoded) as the xxh3 hash of their bytes; null
/// slots hold 0 (the returned validity says which are null).
fn query_keys(
    a: &ArrayRef,
    name: &str,
    out: &mut Vec<u64>,
) -> Result<Option<arrow_buffer::NullBuffer>> {
    out.clear();
    macro_rules! ints {
        ($t:ty) => {{
            out.extend(
                a.as_primitive::<$t>()
                    .values()
                    .iter()
                    .map(|v| *v as i64 as u64),
            )
        }};
    }
    let hash = |s: &str| xxhash_rust::xxh3::xxh3_64(s.as_bytes());
    match a.data_type() {
        DataType::Int8 => ints!(Int8Type),
        DataType::Int16 => ints!(Int16Type),
        DataType::Int32 => ints!(Int32Type),
        DataType::Int64 => ints!(Int64Type),
        DataType::UInt8 => ints!(UInt8Type),
        DataType::UInt16 => ints!(UInt16Type),
        DataType::UInt32 => ints!(UInt32Type),
        DataType::UInt64 => out.extend_from_slice(a.as_primitive::<UInt64Type>().values()),
        DataType::Utf8 => {
            let s = a.as_string::<i32>();
            out.extend((0..a.len()).map(|i| hash(s.value(i))))
        }
        DataType::LargeUtf8 => {
            let s = a.as_string::<i64>();
            out.extend((0..a.len()).map(|i| hash(s.value(i))))
        }
        DataType::Utf8View => {
            let s = a.as_string_view();
            out.extend((0..a.len()).map(|i| hash(s.value(i))))
        }
        DataType::Dictionary(_, v) if matches!(**v, DataType::Utf8 | DataType::LargeUtf8) => {
            let d = a.as_any_dictionary();
            if d.values().is_empty() {
                // (Every row null: an empty dictionary has no key to normalize.)
                out.resize(a.len(), 0);
            } else {
                let mut values = Vec::new();
                query_keys(d.values(), name, &mut values)?;
                out.extend(
                    d.normalized_keys()
                        .iter()
                        .map(|k| values.get(*k).copied().unwrap_or(0)),
                )
            }
        }
        other => {
            return Err(schema_err(
                name,
                format!("query must be an integer or string column, got type {other}"),
            ))
        }
    }
    Ok(validity(a))
}

/// Checks the type of the query column.
fn check_query_type(name: &str, dt: &DataType) -> Result<()> {
    let ok = match dt {
        DataType::Dictionary(_, v) => matches!(**v, DataType::Utf8 | DataType::LargeUtf8),
        _ => {
            dt.is_integer()
                || matches!(
                    dt,
                    DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
                )
        }
    };
    if ok {
        Ok(())
    } else {
        Err(schema_err(
            name,
            format!("query must be an integer or string column, got type {dt}"),
        ))
    }
}

/// What the pass of a ranking job needs from the engine's spec.
pub struct PassSpec<'a> {
    pub ranking: &'a RankingSpec,
    pub label: &'a str,
    /// The score column of each model (the reference first).
    pub scores: Vec<&'a str>,
    pub weight: Option<&'a str>,
    pub slices: &'a [crate::slicing::SliceSpec],
    pub metrics: &'a [Metric],
    pub drop: bool,
    /// The rows of an in-memory input (reserved at once), None for a stream.
    pub rows_hint: Option<u64>,
    pub resampler: Option<Resampler>,
    pub shape: StateShape,
}

/// What a ranking pass leaves: the slice blocks of its finished queries, the keys of those
/// queries (sorted), and its row counts.
pub struct Pass {
    pub slicer: Slicer,
    pub total: ChunkState,
    pub queries: Vec<u64>,
    pub rows: u64,
    pub dropped: u64,
}

/// Reads `batches` into the finished queries of a ranking job (see the module docs).
/// `row_offset`: the global position of the first row (ties="stable" follows it).
pub fn accumulate<I>(
    schema: SchemaRef,
    batches: I,
    spec: &PassSpec,
    row_offset: u64,
    stop: &dyn Fn() -> bool,
    pool: &rayon::ThreadPool,
    check_slices: &dyn Fn(&[usize], u64) -> Result<()>,
) -> Result<Pass>
where
    I: Iterator<Item = std::result::Result<RecordBatch, ArrowError>>,
{
    let rk = spec.ranking;
    let query_idx = column_index(&schema, &rk.query)?;
    check_query_type(&rk.query, schema.field(query_idx).data_type())?;
    let label_idx = column_index(&schema, spec.label)?;
    check_numeric_type(
        spec.label,
        "relevance label",
        schema.field(label_idx).data_type(),
    )?;
    let score_idx: Vec<usize> = spec
        .scores
        .iter()
        .map(|c| -> Result<usize> {
            let i = column_index(&schema, c)?;
            check_numeric_type(c, "score", schema.field(i).data_type())?;
            Ok(i)
        })
        .collect::<Result<_>>()?;
    let weight_idx = spec
        .weight
        .map(|w| -> Result<usize> {
            let i = column_index(&schema, w)?;
            check_numeric_type(w, "weight", schema.field(i).data_type())?;
            Ok(i)
        })
        .transpose()?;
    let mut slicer = Slicer::new(&schema, spec.slices)?;
    let n_specs = slicer.n_specs();
    let mut rows = Rows {
        scores: vec![Vec::new(); score_idx.len()],
        ids: vec![Vec::new(); n_specs],
        ..Rows::default()
    };
    if let Some(n) = spec.rows_hint {
        // (An in-memory input: its rows, reserved once.)
        use crate::runtime::reserve_big;
        let n = n as usize;
        reserve_big(&mut rows.query, n);
        reserve_big(&mut rows.pos, n);
        reserve_big(&mut rows.rel, n);
        rows.scores.iter_mut().for_each(|v| reserve_big(v, n));
        rows.ids.iter_mut().for_each(|v| reserve_big(v, n));
        if spec.weight.is_some() {
            reserve_big(&mut rows.weight, n);
        }
    }
    let (mut read, mut dropped) = (0u64, 0u64);
    let mut buf: (Vec<f64>, Vec<Vec<f64>>, Vec<f64>) = (Vec::new(), Vec::new(), Vec::new());
    let mut keys: Vec<u64> = Vec::new();
    for (batch_index, batch) in batches.enumerate() {
        let Some(batch) = next_batch(&schema, batch, batch_index, stop)? else {
            continue;
        };
        let len = batch.num_rows();
        let at = row_offset.checked_add(read).ok_or_else(|| {
            AssayError::InvalidArgument(format!(
                "row_offset {row_offset} plus the rows read overflows 2^64"
            ))
        })?;
        let ids = pool.install(|| slicer.encode_batch(&batch))?;
        let n_ids: Vec<usize> = (0..n_specs).map(|s| slicer.n_ids(s)).collect();
        check_slices(&n_ids, read + len as u64)?;
        let key_nulls = query_keys(batch.column(query_idx), &rk.query, &mut keys)?;
        let label_col = batch.column(label_idx);
        let label_nulls = validity(label_col);
        let (label_buf, score_bufs, weight_buf) = &mut buf;
        let labels = f64_view(label_col, 0, len, label_buf);
        let score_cols: Vec<(&ArrayRef, Option<arrow_buffer::NullBuffer>)> = score_idx
            .iter()
            .map(|i| (batch.column(*i), validity(batch.column(*i))))
            .collect();
        score_bufs.resize_with(score_cols.len(), Vec::new);
        let score_vals: Vec<&[f64]> = score_cols
            .iter()
            .zip(score_bufs.iter_mut())
            .map(|((c, _), b)| f64_view(c, 0, len, b))
            .collect();
        let weights: Option<(&[f64], Option<arrow_buffer::NullBuffer>)> = weight_idx.map(|i| {
            let c = batch.column(i);
            (f64_view(c, 0, len, weight_buf), validity(c))
        });
        // The common case first: no null, every value valid (vectorizable folds): the
        // batch's columns are appended as they are.
        let finite = |v: &[f64]| v.iter().fold(true, |a, x| a & x.is_finite());
        let clean = key_nulls.is_none()
            && label_nulls.is_none()
            && labels
                .iter()
                .fold(true, |a, y| a & (y.is_finite() & (*y >= 0.0)))
            && score_cols.iter().all(|(_, nl)| nl.is_none())
            && score_vals.iter().all(|v| finite(v))
            && weights.as_ref().is_none_or(|(w, nl)| {
                nl.is_none() && w.iter().fold(true, |a, x| a & (x.is_finite() & (*x > 0.0)))
            });
        if clean {
            rows.query.extend_from_slice(&keys);
            rows.pos.extend(at..at + len as u64);
            rows.rel.extend_from_slice(labels);
            for (dst, src) in rows.scores.iter_mut().zip(&score_vals) {
                dst.extend_from_slice(src);
            }
            if let Some((w, _)) = &weights {
                rows.weight.extend_from_slice(w);
            }
            for (dst, src) in rows.ids.iter_mut().zip(&ids) {
                dst.extend_from_slice(src);
            }
            read += len as u64;
            continue;
        }
        'rows: for j in 0..len {
            let row = at + j as u64;
            let q = keys[j];
            if key_nulls.as_ref().is_some_and(|b| b.is_null(j)) {
                if spec.drop {
                    dropped += 1;
                    continue;
                }
                return Err(invalid(
                    &rk.query,
                    format!(
                        "query is null at row {row}; pass nan_policy=\"drop\" to drop such rows"
                    ),
                ));
            }
            let y = labels[j];
            let y_null = label_nulls.as_ref().is_some_and(|b| b.is_null(j));
            if y_null || !y.is_finite() {
                if spec.drop {
                    dropped += 1;
                    continue;
                }
                let what = if y_null {
                    "null".into()
                } else {
                    format!("{y:?}")
                };
                return Err(invalid(
                    spec.label,
                    format!(
                        "relevance is {what} at row {row}; pass nan_policy=\"drop\" to drop such \
                         rows"
                    ),
                ));
            }
            if y < 0.0 {
                return Err(invalid(
                    spec.label,
                    format!(
                        "relevance grades must be >= 0 (0: not relevant); found {y:?} at row {row}"
                    ),
                ));
            }
            for (m, (_, nulls)) in score_cols.iter().enumerate() {
                let s = score_vals[m][j];
                let null = nulls.as_ref().is_some_and(|b| b.is_null(j));
                if null || !s.is_finite() {
                    if spec.drop {
                        dropped += 1;
                        continue 'rows;
                    }
                    let what = if null {
                        "null".into()
                    } else {
                        format!("{s:?}")
                    };
                    return Err(invalid(
                        spec.scores[m],
                        format!(
                            "score is {what} at row {row}; pass nan_policy=\"drop\" to drop such \
                             rows"
                        ),
                    ));
                }
            }
            if let Some((w, nulls)) = &weights {
                let null = nulls.as_ref().is_some_and(|b| b.is_null(j));
                if null || !(w[j] > 0.0 && w[j].is_finite()) {
                    let what = if null {
                        "null".into()
                    } else {
                        format!("{:?}", w[j])
                    };
                    return Err(invalid(
                        spec.weight.unwrap_or("weight"),
                        format!("weights must be positive and finite; found {what} at row {row}"),
                    ));
                }
                rows.weight.push(w[j]);
            }
            rows.query.push(q);
            rows.pos.push(row);
            rows.rel.push(y);
            for (dst, src) in rows.scores.iter_mut().zip(&score_vals) {
                dst.push(src[j]);
            }
            for (dst, src) in rows.ids.iter_mut().zip(&ids) {
                dst.push(src[j]);
            }
        }
        read += len as u64;
    }
    if stop() {
        return Err(AssayError::Interrupted);
    }
    let n_ids: Vec<usize> = std::iter::once(1)
        .chain((0..n_specs).map(|s| slicer.n_ids(s)))
        .collect();
    let (total, queries) = pool.install(|| finish(&rows, spec, &n_ids))?;
    Ok(Pass {
        slicer,
        total,
        queries,
        rows: read,
        dropped,
    })
}

/// The query groups of `rows`: ranges of `order` (row indices grouped by query, each group in
/// row order), in ascending query key order.
fn group_rows(query: &[u64]) -> (Vec<usize>, Vec<(usize, usize)>) {
    let n = query.len();
    // Contiguous queries (each query's rows one run): no sort, only the runs' keys.
    let mut runs: Vec<(u64, usize, usize)> = Vec::new();
    let mut a = 0;
    while a < n {
        let mut b = a + 1;
        while b < n && query[b] == query[a] {
            b += 1;
        }
        runs.push((query[a], a, b));
        a = b;
    }
    runs.par_sort_unstable_by_key(|r| r.0);
    if runs.windows(2).all(|w| w[0].0 != w[1].0) {
        let order: Vec<usize> = runs.iter().flat_map(|&(_, a, b)| a..b).collect();
        let mut groups = Vec::with_capacity(runs.len());
        let mut at = 0;
        for &(_, a, b) in &runs {
            groups.push((at, at + b - a));
            at += b - a;
        }
        return (order, groups);
    }
    // Otherwise one sort by (query key, row index): rows of a query keep their order.
    let mut keyed: Vec<(u64, usize)> = query.iter().copied().zip(0..n).collect();
    keyed.par_sort_unstable();
    let order: Vec<usize> = keyed.iter().map(|k| k.1).collect();
    let mut groups = Vec::new();
    let mut a = 0;
    while a < n {
        let mut b = a + 1;
        while b < n && keyed[b].0 == keyed[a].0 {
            b += 1;
        }
        groups.push((a, b));
        a = b;
    }
    (order, groups)
}

/// Checks that slices and weights are query attributes: the same on each row of the query
/// whose rows are `idx`.
fn check_query(rows: &Rows, spec: &PassSpec, idx: &[usize]) -> Result<()> {
    let rk = spec.ranking;
    let first = idx[0];
    for (s, col) in rows.ids.iter().enumerate() {
        if let Some(&i) = idx.iter().find(|&&i| col[i] != col[first]) {
            let column: Vec<&str> = spec.slices[s].iter().map(|f| f.column()).collect();
            return Err(AssayError::InvalidInput {
                column: column.join(" & "),
                message: format!(
                    "slices of a ranking job are query attributes, but this one varies inside \
                     one query (rows {} and {} of the input have the same {} and different \
                     values)",
                    rows.pos[first], rows.pos[i], rk.query
                ),
            });
        }
    }
    if !rows.weight.is_empty() {
        if let Some(&i) = idx.iter().find(|&&i| rows.weight[i] != rows.weight[first]) {
            return Err(invalid(
                spec.weight.unwrap_or("weight"),
                format!(
                    "weights of a ranking job weigh queries: they must be the same on every row \
                     of a query (rows {} and {} of the input have the same {} and weights {:?} \
                     and {:?})",
                    rows.pos[first], rows.pos[i], rk.query, rows.weight[first], rows.weight[i]
                ),
            ));
        }
    }
    Ok(())
}

/// Groups the kept rows by query, checks that slices and weights are query attributes,
/// computes every query's values (in parallel, into one flat buffer: per query and model its
/// metrics, NaN where undefined, or all NaN with the skip flag) and adds them to the slice
/// blocks in query key order.
fn finish(rows: &Rows, spec: &PassSpec, n_ids: &[usize]) -> Result<(ChunkState, Vec<u64>)> {
    let rk = spec.ranking;
    let (order, groups) = group_rows(&rows.query);
    let models = rows.scores.len();
    let m_len = spec.metrics.len();
    let stride = models * m_len;
    let mut values = vec![f64::NAN; groups.len() * stride];
    // Per query and model: whether it counts (it has a relevant item, or `empty="zero"`).
    let mut counts = vec![false; groups.len() * models];
    groups
        .par_iter()
        .zip(values.par_chunks_mut(stride.max(1)))
        .zip(counts.par_chunks_mut(models.max(1)))
        .try_for_each_init(
            || (QueryScratch::default(), Vec::new(), Vec::new()),
            |(scratch, rel, sc), ((&(a, b), out), counted)| -> Result<()> {
                let idx = &order[a..b];
                check_query(rows, spec, idx)?;
                rel.clear();
                rel.extend(idx.iter().map(|&i| rows.rel[i]));
                scratch.prepare(rel, rk.gain);
                for (m, col) in rows.scores.iter().enumerate() {
                    sc.clear();
                    sc.extend(idx.iter().map(|&i| col[i]));
                    let out = &mut out[m * m_len..(m + 1) * m_len];
                    let has_rel = scratch.values(sc, rel, spec.metrics, rk.ties, out);
                    counted[m] = has_rel || rk.empty == Empty::Zero;
                    if !has_rel && rk.empty == Empty::Zero {
                        // (Every metric 0 but the AUC, undefined without relevant items.)
                        for (o, metric) in out.iter_mut().zip(spec.metrics) {
                            *o = if *metric == Metric::AucPerQuery {
                                f64::NAN
                            } else {
                                0.0
                            };
                        }
                    }
                }
                crate::runtime::check()
            },
        )
        .map_err(|e| {
            // The first bad query in key order, whichever thread met one first.
            match e {
                AssayError::InvalidInput { .. } => groups
                    .iter()
                    .find_map(|&(a, b)| check_query(rows, spec, &order[a..b]).err())
                    .unwrap_or(e),
                other => other,
            }
        })?;
    let per_model = n_ids.len();
    let all_ids: Vec<usize> = (0..models).flat_map(|_| n_ids.iter().copied()).collect();
    let mut total = ChunkState::new(&all_ids, spec.shape);
    let layout = Layout::of(&spec.shape);
    let (blen, fields) = (layout.block_len(), layout.fields());
    let slots = spec.shape.slots;
    let mut kw = vec![0.0; slots];
    let mut queries = Vec::with_capacity(groups.len());
    for (g, &(a, b)) in groups.iter().enumerate() {
        // (With many replicate slots the sums take seconds: poll for Ctrl-C.)
        if g % 1024 == 0 {
            crate::runtime::check()?;
        }
        let first = order[a];
        let key = rows.query[first];
        queries.push(key);
        let weight = if rows.weight.is_empty() {
            1.0
        } else {
            rows.weight[first]
        };
        if let Some(r) = &spec.resampler {
            r.fill(r.row_key(key), weight, 0, &mut kw);
        }
        for m in 0..models {
            let vals = &values[g * stride + m * m_len..g * stride + (m + 1) * m_len];
            let counted = counts[g * models + m];
            for k in 0..per_model {
                let id = if k == 0 {
                    0
                } else {
                    rows.ids[k - 1][first] as usize
                };
                let st = &mut total.specs[m * per_model + k];
                let block = &mut st.fam[id * blen..(id + 1) * blen];
                block[ITEMS] += (b - a) as f64;
                if !counted {
                    block[SKIPPED] += 1.0;
                    continue;
                }
                block[COUNTED] += 1.0;
                let c = &mut st.counts[id];
                c.n += 1;
                c.w += weight;
                let reps = &mut st.fam_reps[id * fields * slots..(id + 1) * fields * slots];
                for (j, v) in vals.iter().enumerate() {
                    if v.is_nan() {
                        continue;
                    }
                    block[HEAD + 2 * j] += weight * v;
                    block[HEAD + 2 * j + 1] += weight;
                    let (num, den) = reps[2 * j * slots..(2 * j + 2) * slots].split_at_mut(slots);
                    for ((x, y), w) in num.iter_mut().zip(den.iter_mut()).zip(&kw) {
                        *x += w * v;
                        *y += w;
                    }
                }
            }
        }
    }
    // (Groups come in ascending key order: the keys are sorted.)
    Ok((total, queries))
}

/// The keys of the queries two states finished: sorted and disjoint, merged; a query in both
/// (a split that cut a query) is refused.
pub fn merge_queries(a: &[u64], b: &[u64]) -> Result<Vec<u64>> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => {
                out.push(a[i]);
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                out.push(b[j]);
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                return Err(AssayError::StateMismatch(format!(
                    "two partial states of a ranking job hold rows of the same query (its key \
                     {:#018x}: an integer query's value, a string's 64-bit hash): a query's \
                     values need all of its rows, so shard ranking data by query (every row of \
                     a query in one shard)",
                    a[i]
                )));
            }
        }
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Finalization

/// The values (and intervals) of `metrics` for one slice from its block and replicate block.
#[allow(clippy::too_many_arguments)]
pub fn slice_results(
    block: &[f64],
    reps: &[f64],
    layout: &Layout,
    metrics: &[Metric],
    iv: Option<&IntervalSpec>,
    small: bool,
    mut keep: Option<&mut Vec<Vec<f64>>>,
) -> (Vec<Value>, Option<Vec<crate::bootstrap::Interval>>) {
    let value = |j: usize, m: Metric, f: &dyn Fn(usize) -> f64| -> Value {
        match m {
            Metric::NItems => Ok(block[ITEMS]),
            Metric::NSkipped => Ok(block[SKIPPED]),
            _ => {
                let (num, den) = (f(2 * j), f(2 * j + 1));
                if den > 0.0 {
                    crate::metrics::finite(num / den).map(|v| v.clamp(0.0, 1.0))
                } else if m == Metric::AucPerQuery {
                    Err(NO_AUC_QUERY)
                } else {
                    Err(NO_QUERY)
                }
            }
        }
    };
    let values: Vec<Value> = metrics
        .iter()
        .enumerate()
        .map(|(j, m)| {
            if small && !matches!(m, Metric::NItems | Metric::NSkipped) {
                Err(crate::metrics::TOO_SMALL)
            } else {
                value(j, *m, &|f| block[HEAD + f])
            }
        })
        .collect();
    let Some(iv) = iv.filter(|iv| iv.slots() > 0) else {
        return (values, None);
    };
    let slots = iv.slots();
    let slot_fields = crate::task::slot_fields(reps, layout.fields(), slots);
    let mut intervals = Vec::with_capacity(metrics.len());
    for (j, (m, v)) in metrics.iter().zip(&values).enumerate() {
        let counts = matches!(m, Metric::NItems | Metric::NSkipped);
        let kept: Vec<f64> = if counts {
            vec![f64::NAN; slots]
        } else {
            slot_fields
                .iter()
                .map(|f| value(j, *m, &|i| f[i]).unwrap_or(f64::NAN))
                .collect()
        };
        intervals.push(match *v {
            Err(why) => Err(why),
            Ok(_) if counts => Err(NO_COUNT_INTERVAL),
            Ok(_) if iv.method == CiMethod::Analytic => Err(NO_ANALYTIC_RANKING),
            Ok(estimate) => crate::intervals::from_replicates(iv, estimate, &kept, None),
        });
        if let Some(k) = keep.as_deref_mut() {
            k.push(kept);
        }
    }
    (values, Some(intervals))
}

/// The checks of a ranking job's options against the rest of its spec.
pub fn check_metrics(metrics: &[Metric]) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    for m in metrics {
        if !seen.insert(m.name()) {
            return Err(AssayError::InvalidArgument(format!(
                "metrics names {} twice",
                m.name()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(s: &[f64], r: &[f64], m: &[Metric], ties: Ties) -> Vec<Option<f64>> {
        query_values(s, r, m, Gain::Exponential, ties).0
    }

    #[test]
    fn hand_computed_cases() {
        use Metric::*;
        let m = [Mrr, PrecisionAt(2), MapAt(2), HitRate(1), RecallAt(2)];
        let v = values(&[3.0, 2.0, 1.0], &[0.0, 1.0, 1.0], &m, Ties::Stable);
        assert_eq!(
            v,
            vec![Some(0.5), Some(0.5), Some(0.25), Some(0.0), Some(0.5)]
        );
        let m = [Mrr, PrecisionAt(1), HitRate(1), MapAt(1)];
        assert_eq!(
            values(&[1.0, 1.0], &[1.0, 0.0], &m, Ties::Average),
            vec![Some(0.75), Some(0.5), Some(0.5), Some(0.5)]
        );
        assert_eq!(
            values(&[1.0, 1.0], &[1.0, 0.0], &m, Ties::Stable),
            vec![Some(1.0), Some(1.0), Some(1.0), Some(1.0)]
        );
        // The AUC counts ties 1/2 under both rules; a query without relevant items has none
        // of the values.
        assert_eq!(
            values(
                &[1.0, 1.0, 0.0],
                &[1.0, 0.0, 0.0],
                &[AucPerQuery],
                Ties::Stable
            ),
            vec![Some(0.75)]
        );
        assert_eq!(
            query_values(
                &[1.0],
                &[0.0],
                &[Ndcg(3), AucPerQuery],
                Gain::Linear,
                Ties::Stable
            ),
            (vec![None, None], false)
        );
    }

    /// Every ordering of the tied items, averaged: the `average` rule's definition.
    #[test]
    fn average_ties_are_the_mean_over_orderings() {
        use Metric::*;
        let m = [
            Ndcg(2),
            MapAt(3),
            PrecisionAt(2),
            RecallAt(1),
            HitRate(2),
            Mrr,
        ];
        let scores = [2.0, 1.0, 1.0, 1.0, 0.5];
        let rel = [0.0, 2.0, 0.0, 1.0, 1.0];
        let avg = values(&scores, &rel, &m, Ties::Average);
        // The three tied items (1, 2, 3) in each of their 6 orders, as input orders.
        let perms = [
            [1, 2, 3],
            [1, 3, 2],
            [2, 1, 3],
            [2, 3, 1],
            [3, 1, 2],
            [3, 2, 1],
        ];
        let mut sum = vec![0.0; m.len()];
        for p in perms {
            let idx = [0, p[0], p[1], p[2], 4];
            let s: Vec<f64> = idx.iter().map(|&i| scores[i]).collect();
            let r: Vec<f64> = idx.iter().map(|&i| rel[i]).collect();
            for (t, v) in sum.iter_mut().zip(values(&s, &r, &m, Ties::Stable)) {
                *t += v.unwrap() / 6.0;
            }
        }
        for ((a, b), name) in avg.iter().zip(&sum).zip(m.iter().map(Metric::name)) {
            assert!((a.unwrap() - b).abs() < 1e-12, "{name}: {a:?} vs {b}");
        }
    }

    #[test]
    fn queries_of_two_states_merge_only_when_disjoint() {
        assert_eq!(merge_queries(&[1, 5], &[2, 9]).unwrap(), vec![1, 2, 5, 9]);
        assert!(merge_queries(&[1, 5], &[5]).is_err());
    }
}
