//! Slice specifications and their encoding into dense `u32` ids.
//!
//! Every feature (a categorical column or a bucketed numeric column) maps each row to a dense
//! value id; a cross of features maps the tuple of value ids to a dense cross id through a chain
//! of pair interners. Ids are assigned in order of first appearance by global row position, so
//! they do not depend on the thread count or on how rows are split into batches; reports are
//! ordered by value, not by id.

use std::cmp::Ordering;
use std::hash::Hash;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, Schema};
use hashbrown::HashMap;
use rayon::prelude::*;

use crate::error::{schema, AssayError, Result};
use crate::input::{column_index, f64_values};

/// One dimension of a slice: a categorical column, or a numeric column cut at `edges`.
#[derive(Debug, Clone, PartialEq)]
pub enum Feature {
    Column(String),
    Bins { column: String, edges: Vec<f64> },
}

impl Feature {
    pub fn column(&self) -> &str {
        match self {
            Feature::Column(c) | Feature::Bins { column: c, .. } => c,
        }
    }
}

/// A slice definition: one feature, or a cross of several.
pub type SliceSpec = Vec<Feature>;

const ENCODE_CHUNK: usize = 1 << 14;

/// Keys that can be interned: borrowed from a batch while encoding, owned in the dictionary.
pub trait InternKey: Copy + Hash + Eq + Send + Sync {
    type Owned: Hash + Eq + Send + Sync;
    fn find_or_insert(self, dict: &mut Interner<Self::Owned>) -> u32;
}

/// A global dictionary from key to dense id (null is a value of its own).
#[derive(Clone)]
pub struct Interner<O> {
    map: HashMap<O, u32>,
    values: Vec<Option<O>>,
    null_id: Option<u32>,
}

impl<O: Hash + Eq> Default for Interner<O> {
    fn default() -> Self {
        Interner {
            map: HashMap::new(),
            values: Vec::new(),
            null_id: None,
        }
    }
}

impl<O: Hash + Eq> Interner<O> {
    fn push(&mut self, v: Option<O>) -> u32 {
        let id = u32::try_from(self.values.len()).expect("more than 2^32 distinct slice values");
        self.values.push(v);
        id
    }
    fn null(&mut self) -> u32 {
        match self.null_id {
            Some(id) => id,
            None => {
                let id = self.push(None);
                self.null_id = Some(id);
                id
            }
        }
    }
    fn id(&mut self, key: Option<impl InternKey<Owned = O>>) -> u32 {
        match key {
            None => self.null(),
            Some(k) => k.find_or_insert(self),
        }
    }
    pub fn len(&self) -> usize {
        self.values.len()
    }
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
    pub fn value(&self, id: u32) -> Option<&O> {
        self.values[id as usize].as_ref()
    }
}

impl InternKey for u64 {
    type Owned = u64;
    fn find_or_insert(self, dict: &mut Interner<u64>) -> u32 {
        if let Some(&id) = dict.map.get(&self) {
            return id;
        }
        let id = dict.push(Some(self));
        dict.map.insert(self, id);
        id
    }
}

impl InternKey for &str {
    type Owned = Box<str>;
    fn find_or_insert(self, dict: &mut Interner<Box<str>>) -> u32 {
        if let Some(&id) = dict.map.get(self) {
            return id;
        }
        let id = dict.push(Some(Box::from(self)));
        dict.map.insert(Box::from(self), id);
        id
    }
}

/// Encodes `len` keys into `out` with dense global ids. Each chunk interns locally in parallel;
/// local dictionaries then join the global one in chunk order, so ids follow first appearance.
fn encode_keys<K, F>(dict: &mut Interner<K::Owned>, len: usize, key_at: F, out: &mut [u32])
where
    K: InternKey,
    F: Fn(usize) -> Option<K> + Sync,
{
    debug_assert_eq!(out.len(), len);
    let locals: Vec<Vec<Option<K>>> = out
        .par_chunks_mut(ENCODE_CHUNK)
        .enumerate()
        .map(|(c, chunk)| {
            let base = c * ENCODE_CHUNK;
            let mut map: HashMap<K, u32> = HashMap::new();
            let mut keys: Vec<Option<K>> = Vec::new();
            let mut null_local: Option<u32> = None;
            for (j, slot) in chunk.iter_mut().enumerate() {
                *slot = match key_at(base + j) {
                    None => *null_local.get_or_insert_with(|| {
                        keys.push(None);
                        (keys.len() - 1) as u32
                    }),
                    Some(k) => *map.entry(k).or_insert_with(|| {
                        keys.push(Some(k));
                        (keys.len() - 1) as u32
                    }),
                };
            }
            keys
        })
        .collect();
    join_locals(dict, locals, out);
}

/// The second half of an encoding: each chunk's local keys join the global dictionary in
/// chunk order, and the chunk's local ids are mapped to the global ones.
fn join_locals<K: InternKey>(
    dict: &mut Interner<K::Owned>,
    locals: Vec<Vec<Option<K>>>,
    out: &mut [u32],
) {
    let tables: Vec<Vec<u32>> = locals
        .into_iter()
        .map(|keys| keys.into_iter().map(|k| dict.id(k)).collect())
        .collect();
    out.par_chunks_mut(ENCODE_CHUNK)
        .zip(tables.par_iter())
        .for_each(|(chunk, table)| {
            for x in chunk {
                *x = table[*x as usize];
            }
        });
}

/// Longest string interned as one integer ([`short_key`]).
const SHORT: usize = 15;

/// A string of at most [`SHORT`] bytes as one integer: its bytes, and its length in the top
/// byte (equal strings, and only they, have equal keys). Hashing and comparing it costs one
/// integer operation, where a string costs a hash of its bytes and a `memcmp`.
#[inline(always)]
fn short_key(values: &[u8], start: usize, len: usize) -> u128 {
    debug_assert!(len <= SHORT);
    let mut b = [0u8; 16];
    match values.get(start..start + 16) {
        Some(w) => {
            b.copy_from_slice(w);
            let mask = (1u128 << (8 * len)) - 1;
            (u128::from_le_bytes(b) & mask) | (len as u128) << 120
        }
        None => {
            b[..len].copy_from_slice(&values[start..start + len]);
            b[15] = len as u8;
            u128::from_le_bytes(b)
        }
    }
}

/// [`encode_keys`] for an offset-based string array (`Utf8`, `LargeUtf8`): strings of up to
/// [`SHORT`] bytes (most category labels) are looked up by their [`short_key`], longer ones
/// by their text. Ids are the same as [`encode_keys`] gives: first appearance, in row order.
fn encode_offset_strings<O: arrow_array::OffsetSizeTrait>(
    dict: &mut Interner<Box<str>>,
    array: &arrow_array::GenericStringArray<O>,
    out: &mut [u32],
) {
    debug_assert_eq!(out.len(), array.len());
    let offsets = array.value_offsets();
    let values = array.value_data();
    let nulls = array.nulls().filter(|n| n.null_count() > 0);
    let locals: Vec<Vec<Option<&str>>> = out
        .par_chunks_mut(ENCODE_CHUNK)
        .enumerate()
        .map(|(c, chunk)| {
            let base = c * ENCODE_CHUNK;
            let mut short: HashMap<u128, u32> = HashMap::new();
            let mut long: HashMap<&str, u32> = HashMap::new();
            let mut keys: Vec<Option<&str>> = Vec::new();
            let mut null_local: Option<u32> = None;
            for (j, slot) in chunk.iter_mut().enumerate() {
                let i = base + j;
                if nulls.is_some_and(|n| n.is_null(i)) {
                    *slot = *null_local.get_or_insert_with(|| {
                        keys.push(None);
                        (keys.len() - 1) as u32
                    });
                    continue;
                }
                let start = offsets[i].as_usize();
                let len = offsets[i + 1].as_usize() - start;
                let new = || {
                    keys.push(Some(array.value(i)));
                    (keys.len() - 1) as u32
                };
                *slot = if len <= SHORT {
                    *short
                        .entry(short_key(values, start, len))
                        .or_insert_with(new)
                } else {
                    *long.entry(array.value(i)).or_insert_with(new)
                };
            }
            keys
        })
        .collect();
    join_locals(dict, locals, out);
}

/// How one feature's values are read and shown.
#[derive(Clone)]
enum FeatureKind {
    Str(Interner<Box<str>>),
    /// Integers and booleans, interned by their 64-bit pattern.
    Int {
        dict: Interner<u64>,
        signed: bool,
        boolean: bool,
    },
    Bins {
        edges: Vec<f64>,
        labels: Vec<String>,
    },
}

#[derive(Clone)]
struct FeatureEncoder {
    column: String,
    index: usize,
    kind: FeatureKind,
}

fn string_like(dt: &DataType) -> bool {
    matches!(
        dt,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    )
}

fn int_like(dt: &DataType) -> Option<bool> {
    use DataType::*;
    match dt {
        Int8 | Int16 | Int32 | Int64 => Some(true),
        UInt8 | UInt16 | UInt32 | UInt64 => Some(false),
        _ => None,
    }
}

/// Formats a bin edge with up to `digits` significant digits, without trailing zeros: plain
/// decimals for magnitudes in [1e-4, 1e16), else scientific (`1.5e-300`), so that the digits
/// kept are significant ones whatever the magnitude (a subnormal edge does not print as 0).
fn format_edge(x: f64, digits: usize) -> String {
    if x == x.trunc() && x.abs() < 1e15 {
        return format!("{}", x as i64);
    }
    let magnitude = x.abs().log10().floor() as i64;
    if !(-4..16).contains(&magnitude) {
        let s = format!("{x:.prec$e}", prec = digits.saturating_sub(1));
        return match s.split_once('e') {
            Some((m, e)) if m.contains('.') => {
                format!("{}e{e}", m.trim_end_matches('0').trim_end_matches('.'))
            }
            _ => s,
        };
    }
    let decimals = (digits as i64 - 1 - magnitude).clamp(0, 21) as usize;
    let s = format!("{x:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// The shortest text that reads back as `x` (distinct numbers give distinct texts), in the
/// notation [`format_edge`] would use.
fn shortest_edge(x: f64) -> String {
    if x == x.trunc() && x.abs() < 1e15 {
        return format!("{}", x as i64);
    }
    if (-4..16).contains(&(x.abs().log10().floor() as i64)) {
        format!("{x}")
    } else {
        format!("{x:e}")
    }
}

/// The labels of the bins of `edges` (at least two): `[a, b)` in edge order (the last `[a, b]`),
/// then `(-inf, e_0)` and `(e_last, inf)`; edges print with 6 significant digits, more where
/// two would print alike, and in their shortest round-trip form (distinct for distinct
/// numbers) where 15 digits still collide.
pub fn bin_labels(edges: &[f64]) -> Vec<String> {
    let mut digits = 6;
    loop {
        let f: Vec<String> = if digits <= 15 {
            edges.iter().map(|e| format_edge(*e, digits)).collect()
        } else {
            edges.iter().map(|e| shortest_edge(*e)).collect()
        };
        let distinct = f.windows(2).all(|w| w[0] != w[1]);
        if distinct || digits > 15 {
            let m = edges.len();
            let mut labels: Vec<String> = (0..m - 1)
                .map(|j| {
                    let close = if j == m - 2 { "]" } else { ")" };
                    format!("[{}, {}{close}", f[j], f[j + 1])
                })
                .collect();
            labels.push(format!("(-inf, {})", f[0]));
            labels.push(format!("({}, inf)", f[m - 1]));
            return labels;
        }
        digits += 3;
    }
}

/// Bin id of `x` for strictly increasing `edges` (m of them): bins `0..m-1` are `[e_j, e_j+1)`,
/// the last one closed; `m-1` is below the first edge, `m` above the last, `m+1` NaN or null.
#[inline]
pub fn bin_of(edges: &[f64], x: f64) -> u32 {
    let m = edges.len();
    if x.is_nan() {
        return (m + 1) as u32;
    }
    let k = edges.partition_point(|e| *e <= x);
    if k == 0 {
        (m - 1) as u32
    } else if k == m {
        if x == edges[m - 1] {
            (m - 2) as u32
        } else {
            m as u32
        }
    } else {
        (k - 1) as u32
    }
}

/// Sort position of bin id `id` in a report: below range, the bins in order, above, null.
fn bin_rank(m: usize, id: u32) -> usize {
    let id = id as usize;
    // below range (m - 1) first; bins 0.. keep their order, then above (m), then null (m + 1)
    if id == m - 1 {
        0
    } else {
        id + 1
    }
}

impl FeatureEncoder {
    fn new(schema: &Schema, feature: &Feature) -> Result<Self> {
        let column = feature.column().to_string();
        let index = column_index(schema, &column)?;
        let dt = schema.field(index).data_type();
        let kind = match feature {
            Feature::Bins { edges, .. } => {
                if int_like(dt).is_none() && !matches!(dt, DataType::Float32 | DataType::Float64) {
                    return Err(schema_err(
                        &column,
                        format!("bins need a numeric column, got type {dt}"),
                    ));
                }
                let degenerate = edges.len() == 2 && edges[0] == edges[1];
                if edges.len() < 2
                    || edges.iter().any(|e| !e.is_finite())
                    || (!degenerate && edges.windows(2).any(|w| w[0] >= w[1]))
                {
                    return Err(AssayError::InvalidArgument(format!(
                        "bins for column {column:?}: edges must be at least two finite, strictly increasing numbers, got {edges:?}"
                    )));
                }
                FeatureKind::Bins {
                    edges: edges.clone(),
                    labels: bin_labels(edges),
                }
            }
            Feature::Column(_) => categorical_kind(&column, dt)?,
        };
        Ok(FeatureEncoder {
            column,
            index,
            kind,
        })
    }

    fn encode(&mut self, array: &ArrayRef) -> Result<Vec<u32>> {
        let len = array.len();
        let mut out = vec![0u32; len];
        match &mut self.kind {
            FeatureKind::Bins { edges, .. } => {
                let mut buf = Vec::new();
                let values = f64_values(array, 0, len, &mut buf);
                let nulls = crate::input::validity(array);
                let edges = &*edges;
                out.par_chunks_mut(ENCODE_CHUNK)
                    .enumerate()
                    .for_each(|(c, chunk)| {
                        let base = c * ENCODE_CHUNK;
                        for (j, slot) in chunk.iter_mut().enumerate() {
                            let i = base + j;
                            let null = nulls.as_ref().is_some_and(|n| n.is_null(i));
                            *slot = if null {
                                (edges.len() + 1) as u32
                            } else {
                                bin_of(edges, values[i])
                            };
                        }
                    });
            }
            FeatureKind::Str(dict) => encode_strings(dict, array, &mut out, &self.column)?,
            FeatureKind::Int { dict, .. } => encode_ints(dict, array, &mut out)?,
        }
        Ok(out)
    }

    fn n_ids(&self) -> usize {
        match &self.kind {
            FeatureKind::Str(d) => d.len(),
            FeatureKind::Int { dict, .. } => dict.len(),
            FeatureKind::Bins { edges, .. } => edges.len() + 2,
        }
    }

    /// The readable value of id `id` (None for null).
    fn display(&self, id: u32) -> Option<String> {
        match &self.kind {
            FeatureKind::Str(d) => d.value(id).map(|s| s.to_string()),
            FeatureKind::Int {
                dict,
                signed,
                boolean,
            } => dict.value(id).map(|v| {
                if *boolean {
                    (if *v != 0 { "true" } else { "false" }).to_string()
                } else if *signed {
                    (*v as i64).to_string()
                } else {
                    v.to_string()
                }
            }),
            FeatureKind::Bins { labels, edges } => {
                if id as usize == edges.len() + 1 {
                    None
                } else {
                    Some(labels[id as usize].clone())
                }
            }
        }
    }

    /// Rank of every id in report order (by value, null last).
    fn order(&self) -> Vec<usize> {
        let n = self.n_ids();
        let mut ids: Vec<u32> = (0..n as u32).collect();
        match &self.kind {
            FeatureKind::Str(d) => {
                ids.sort_by(|a, b| cmp_nulls_last(d.value(*a), d.value(*b), |x, y| x.cmp(y)))
            }
            FeatureKind::Int { dict, signed, .. } => ids.sort_by(|a, b| {
                cmp_nulls_last(dict.value(*a), dict.value(*b), |x, y| {
                    if *signed {
                        (*x as i64).cmp(&(*y as i64))
                    } else {
                        x.cmp(y)
                    }
                })
            }),
            FeatureKind::Bins { edges, .. } => ids.sort_by_key(|id| bin_rank(edges.len(), *id)),
        }
        let mut rank = vec![0; n];
        for (r, id) in ids.into_iter().enumerate() {
            rank[id as usize] = r;
        }
        rank
    }
}

fn schema_err(column: &str, message: String) -> AssayError {
    schema(column, message)
}

fn cmp_nulls_last<T>(a: Option<&T>, b: Option<&T>, f: impl Fn(&T, &T) -> Ordering) -> Ordering {
    match (a, b) {
        (Some(x), Some(y)) => f(x, y),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
}

fn categorical_kind(column: &str, dt: &DataType) -> Result<FeatureKind> {
    if string_like(dt) {
        return Ok(FeatureKind::Str(Interner::default()));
    }
    if let Some(signed) = int_like(dt) {
        return Ok(FeatureKind::Int {
            dict: Interner::default(),
            signed,
            boolean: false,
        });
    }
    match dt {
        DataType::Boolean => Ok(FeatureKind::Int { dict: Interner::default(), signed: false, boolean: true }),
        DataType::Dictionary(_, v) if string_like(v) => Ok(FeatureKind::Str(Interner::default())),
        DataType::Dictionary(_, v) if int_like(v).is_some() => {
            Ok(FeatureKind::Int { dict: Interner::default(), signed: int_like(v).unwrap(), boolean: false })
        }
        DataType::Float16 | DataType::Float32 | DataType::Float64 => Err(schema_err(
            column,
            format!(
                "a {dt} column cannot be a categorical slice; bucket it with assay.bins({column:?}, n) \
                 or assay.bins({column:?}, edges=[...])"
            ),
        )),
        _ => Err(schema_err(
            column,
            format!("type {dt} cannot be a slice; use a string, dictionary, integer or boolean column, or assay.bins for numbers"),
        )),
    }
}

/// Row accessor over any of Arrow's string layouts.
enum Strings<'a> {
    Small(&'a arrow_array::StringArray),
    Large(&'a arrow_array::LargeStringArray),
    View(&'a arrow_array::StringViewArray),
}

impl<'a> Strings<'a> {
    fn of(array: &'a dyn Array) -> Option<Self> {
        match array.data_type() {
            DataType::Utf8 => Some(Strings::Small(array.as_string::<i32>())),
            DataType::LargeUtf8 => Some(Strings::Large(array.as_string::<i64>())),
            DataType::Utf8View => Some(Strings::View(array.as_string_view())),
            _ => None,
        }
    }
    #[inline]
    fn get(&self, i: usize) -> Option<&'a str> {
        match self {
            Strings::Small(a) => (!a.is_null(i)).then(|| a.value(i)),
            Strings::Large(a) => (!a.is_null(i)).then(|| a.value(i)),
            Strings::View(a) => (!a.is_null(i)).then(|| a.value(i)),
        }
    }
}

/// Maps every row of a dictionary array through `table` (the global ids of its values).
/// The keys are read in their own integer type (no widened copy of them); a key outside
/// `table` (only a null slot may hold one: imported arrays have their keys checked) maps to
/// id 0 rather than panicking.
fn remap_dictionary(
    array: &ArrayRef,
    table: &[u32],
    null_id: impl FnOnce() -> u32,
    out: &mut [u32],
) {
    let DataType::Dictionary(key_type, _) = array.data_type() else {
        unreachable!("remap_dictionary takes a dictionary array")
    };
    let dict = array.as_any_dictionary();
    let nulls = dict.keys().logical_nulls().filter(|n| n.null_count() > 0);
    let null = nulls.as_ref().map(|_| null_id());
    macro_rules! remap {
        ($($dt:ident => $t:ty),*) => {
            match key_type.as_ref() {
                $(DataType::$dt => {
                    let keys = array.as_dictionary::<$t>().keys().values();
                    map_keys(keys, table, nulls.as_ref().zip(null), out);
                })*
                other => unreachable!("dictionary keys of type {other}"),
            }
        };
    }
    remap!(Int8 => Int8Type, Int16 => Int16Type, Int32 => Int32Type, Int64 => Int64Type,
           UInt8 => UInt8Type, UInt16 => UInt16Type, UInt32 => UInt32Type,
           UInt64 => UInt64Type);
}

/// `out[i] = table[keys[i]]`, or the null id for null slots.
fn map_keys<K: Copy + TryInto<usize> + Send + Sync>(
    keys: &[K],
    table: &[u32],
    nulls: Option<(&arrow_buffer::NullBuffer, u32)>,
    out: &mut [u32],
) {
    let id = |k: K| {
        k.try_into()
            .ok()
            .and_then(|k: usize| table.get(k).copied())
            .unwrap_or(0)
    };
    match nulls {
        None => out
            .par_chunks_mut(ENCODE_CHUNK)
            .zip(keys.par_chunks(ENCODE_CHUNK))
            .for_each(|(o, k)| {
                for (o, k) in o.iter_mut().zip(k) {
                    *o = id(*k);
                }
            }),
        Some((nulls, nid)) => out
            .par_iter_mut()
            .zip(keys.par_iter())
            .enumerate()
            .for_each(|(i, (o, k))| {
                *o = if nulls.is_null(i) { nid } else { id(*k) };
            }),
    }
}

fn encode_strings(
    dict: &mut Interner<Box<str>>,
    array: &ArrayRef,
    out: &mut [u32],
    column: &str,
) -> Result<()> {
    if let DataType::Dictionary(_, _) = array.data_type() {
        let values = array.as_any_dictionary().values().clone();
        let mut table = vec![0u32; values.len()];
        encode_strings(dict, &values, &mut table, column)?;
        remap_dictionary(array, &table, || dict.null(), out);
        return Ok(());
    }
    let strings = Strings::of(array.as_ref())
        .ok_or_else(|| schema_err(column, format!("unexpected type {}", array.data_type())))?;
    match strings {
        Strings::Small(a) => encode_offset_strings(dict, a, out),
        Strings::Large(a) => encode_offset_strings(dict, a, out),
        Strings::View(_) => encode_keys(dict, array.len(), |i| strings.get(i), out),
    }
    Ok(())
}

macro_rules! int_keys {
    ($dict:expr, $array:expr, $out:expr, $($dt:ident => $t:ty),*) => {
        match $array.data_type() {
            $(DataType::$dt => {
                let a = $array.as_primitive::<$t>();
                encode_keys($dict, a.len(), |i| (!a.is_null(i)).then(|| a.value(i) as i64 as u64), $out);
            })*
            _ => unreachable!(),
        }
    };
}

fn encode_ints(dict: &mut Interner<u64>, array: &ArrayRef, out: &mut [u32]) -> Result<()> {
    match array.data_type() {
        DataType::Dictionary(_, _) => {
            let values = array.as_any_dictionary().values().clone();
            let mut table = vec![0u32; values.len()];
            encode_ints(dict, &values, &mut table)?;
            remap_dictionary(array, &table, || dict.null(), out);
        }
        DataType::Boolean => {
            let a = array.as_boolean();
            encode_keys(
                dict,
                a.len(),
                |i| (!a.is_null(i)).then(|| a.value(i) as u64),
                out,
            );
        }
        DataType::UInt64 => {
            let a = array.as_primitive::<UInt64Type>();
            encode_keys(dict, a.len(), |i| (!a.is_null(i)).then(|| a.value(i)), out);
        }
        _ => int_keys!(dict, array, out,
            Int8 => Int8Type, Int16 => Int16Type, Int32 => Int32Type, Int64 => Int64Type,
            UInt8 => UInt8Type, UInt16 => UInt16Type, UInt32 => UInt32Type),
    }
    Ok(())
}

/// Encoders for every slice spec of a job, sharing one encoder per distinct feature.
#[derive(Clone)]
pub struct Slicer {
    features: Vec<FeatureEncoder>,
    /// For each spec: indices into `features`, and the pair interners that chain a cross.
    specs: Vec<(Vec<usize>, Vec<Interner<u64>>)>,
}

/// What a report row needs to know about one slice: its features and their readable values.
#[derive(Clone, Debug)]
pub struct SliceDescription {
    pub label: String,
    pub values: Vec<(String, Option<String>)>,
}

impl Slicer {
    pub fn new(schema: &Schema, specs: &[SliceSpec]) -> Result<Self> {
        let mut distinct: Vec<Feature> = Vec::new();
        let mut features: Vec<FeatureEncoder> = Vec::new();
        let mut spec_enc = Vec::new();
        for spec in specs {
            if spec.is_empty() {
                return Err(AssayError::InvalidArgument(
                    "a slice needs at least one column".into(),
                ));
            }
            let mut idx: Vec<usize> = Vec::new();
            for f in spec {
                let i = match distinct.iter().position(|d| d == f) {
                    Some(i) => i,
                    None => {
                        features.push(FeatureEncoder::new(schema, f)?);
                        distinct.push(f.clone());
                        distinct.len() - 1
                    }
                };
                if idx
                    .iter()
                    .any(|j| features[*j].column == features[i].column)
                {
                    return Err(AssayError::InvalidArgument(format!(
                        "slice {:?} uses column {:?} twice",
                        spec.iter().map(|f| f.column()).collect::<Vec<_>>(),
                        f.column()
                    )));
                }
                idx.push(i);
            }
            let pairs = (1..idx.len()).map(|_| Interner::default()).collect();
            spec_enc.push((idx, pairs));
        }
        Ok(Slicer {
            features,
            specs: spec_enc,
        })
    }

    pub fn n_specs(&self) -> usize {
        self.specs.len()
    }

    /// Slice ids of every row of `batch`, one vector per spec.
    pub fn encode_batch(&mut self, batch: &RecordBatch) -> Result<Vec<Arc<Vec<u32>>>> {
        // (Encoding a column of a million strings takes tens of milliseconds: an interrupt is
        // polled between columns and between the levels of a cross.)
        let per_feature: Vec<Arc<Vec<u32>>> = self
            .features
            .iter_mut()
            .map(|f| {
                crate::runtime::check()?;
                f.encode(batch.column(f.index)).map(Arc::new)
            })
            .collect::<Result<_>>()?;
        let mut out = Vec::with_capacity(self.specs.len());
        for (idx, pairs) in self.specs.iter_mut() {
            let mut ids = per_feature[idx[0]].clone();
            for (level, dict) in pairs.iter_mut().enumerate() {
                crate::runtime::check()?;
                let right = &per_feature[idx[level + 1]];
                let left = &ids;
                let mut combined = vec![0u32; batch.num_rows()];
                encode_keys(
                    dict,
                    batch.num_rows(),
                    |i| Some(((left[i] as u64) << 32) | right[i] as u64),
                    &mut combined,
                );
                ids = Arc::new(combined);
            }
            out.push(ids);
        }
        Ok(out)
    }

    /// Number of ids spec `s` has handed out so far.
    pub fn n_ids(&self, s: usize) -> usize {
        let (idx, pairs) = &self.specs[s];
        match pairs.last() {
            Some(p) => p.len(),
            None => self.features[idx[0]].n_ids(),
        }
    }

    /// The feature value ids behind slice `id` of spec `s`.
    fn components(&self, s: usize, id: u32) -> Vec<u32> {
        let (_, pairs) = &self.specs[s];
        let mut comps = Vec::with_capacity(pairs.len() + 1);
        let mut cur = id;
        for p in pairs.iter().rev() {
            let key = *p.value(cur).expect("pair keys are never null");
            comps.push((key & 0xffff_ffff) as u32);
            cur = (key >> 32) as u32;
        }
        comps.push(cur);
        comps.reverse();
        comps
    }

    /// Ids of spec `s` that occur (per `present`), in report order: by value, feature by feature.
    pub fn ordered_ids(&self, s: usize, present: impl Fn(u32) -> bool) -> Vec<u32> {
        let (idx, _) = &self.specs[s];
        let orders: Vec<Vec<usize>> = idx.iter().map(|f| self.features[*f].order()).collect();
        let mut keyed: Vec<(Vec<usize>, u32)> = (0..self.n_ids(s) as u32)
            .filter(|id| present(*id))
            .map(|id| {
                let comps = self.components(s, id);
                (
                    comps
                        .iter()
                        .zip(&orders)
                        .map(|(c, o)| o[*c as usize])
                        .collect(),
                    id,
                )
            })
            .collect();
        keyed.sort();
        keyed.into_iter().map(|(_, id)| id).collect()
    }

    pub fn describe(&self, s: usize, id: u32) -> SliceDescription {
        let (idx, _) = &self.specs[s];
        let comps = self.components(s, id);
        let values: Vec<(String, Option<String>)> = idx
            .iter()
            .zip(&comps)
            .map(|(f, c)| {
                (
                    self.features[*f].column.clone(),
                    self.features[*f].display(*c),
                )
            })
            .collect();
        let label = values
            .iter()
            .map(|(col, v)| format!("{col}={}", v.as_deref().unwrap_or("null")))
            .collect::<Vec<_>>()
            .join(" & ");
        SliceDescription { label, values }
    }

    /// The distinct feature columns in order of first use (the report's feature columns).
    pub fn feature_columns(&self) -> Vec<String> {
        let mut cols: Vec<String> = Vec::new();
        for (idx, _) in &self.specs {
            for f in idx {
                let c = &self.features[*f].column;
                if !cols.contains(c) {
                    cols.push(c.clone());
                }
            }
        }
        cols
    }
}

/// The values of one feature's dictionary, in id order: what a partial state carries instead
/// of process-local ids (`None` is the null value).
#[derive(Clone, Debug, PartialEq)]
pub enum FeatureValues {
    Str(Vec<Option<String>>),
    Int {
        signed: bool,
        boolean: bool,
        values: Vec<Option<u64>>,
    },
    Bins(Vec<f64>),
}

/// A [`Slicer`]'s keys by value: each feature's column and values, and for each spec its
/// features and, per level of a cross, the (left id, right id) pair of every cross id.
#[derive(Clone, Debug, PartialEq)]
pub struct SlicerKeys {
    pub features: Vec<(String, FeatureValues)>,
    pub specs: Vec<(Vec<usize>, Vec<Vec<u64>>)>,
}

fn mismatch(message: String) -> AssayError {
    AssayError::StateMismatch(message)
}

fn interner_from<O: Hash + Eq + Clone>(values: Vec<Option<O>>, what: &str) -> Result<Interner<O>> {
    let mut dict = Interner::default();
    for v in values {
        match v {
            None => {
                if dict.null_id.is_some() {
                    return Err(AssayError::StateFormat(format!(
                        "{what}: null appears twice"
                    )));
                }
                dict.null();
            }
            Some(k) => {
                if dict.map.contains_key(&k) {
                    return Err(AssayError::StateFormat(format!(
                        "{what}: a value appears twice"
                    )));
                }
                let id = dict.push(Some(k.clone()));
                dict.map.insert(k, id);
            }
        }
    }
    Ok(dict)
}

impl<O: Hash + Eq + Clone> Interner<O> {
    /// The id of `v` (owned), inserting it when new.
    fn id_owned(&mut self, v: Option<&O>) -> u32 {
        match v {
            None => self.null(),
            Some(k) => {
                if let Some(&id) = self.map.get(k) {
                    return id;
                }
                let id = self.push(Some(k.clone()));
                self.map.insert(k.clone(), id);
                id
            }
        }
    }
}

impl Slicer {
    /// The slicer's dictionaries by value (see [`SlicerKeys`]).
    pub fn keys(&self) -> SlicerKeys {
        let features = self
            .features
            .iter()
            .map(|f| {
                let values = match &f.kind {
                    FeatureKind::Str(d) => FeatureValues::Str(
                        d.values
                            .iter()
                            .map(|v| v.as_ref().map(|s| s.to_string()))
                            .collect(),
                    ),
                    FeatureKind::Int {
                        dict,
                        signed,
                        boolean,
                    } => FeatureValues::Int {
                        signed: *signed,
                        boolean: *boolean,
                        values: dict.values.clone(),
                    },
                    FeatureKind::Bins { edges, .. } => FeatureValues::Bins(edges.clone()),
                };
                (f.column.clone(), values)
            })
            .collect();
        let specs = self
            .specs
            .iter()
            .map(|(idx, pairs)| {
                let levels = pairs
                    .iter()
                    .map(|p| p.values.iter().map(|v| v.unwrap_or(u64::MAX)).collect())
                    .collect();
                (idx.clone(), levels)
            })
            .collect();
        SlicerKeys { features, specs }
    }

    /// A slicer (for finalizing and merging, not for encoding batches) from its keys, checked:
    /// every pair names existing ids, no value or pair appears twice, bin edges are valid.
    pub fn from_keys(keys: SlicerKeys) -> Result<Slicer> {
        let bad = |m: String| AssayError::StateFormat(m);
        let mut features = Vec::with_capacity(keys.features.len());
        for (column, values) in keys.features {
            let kind = match values {
                FeatureValues::Str(v) => FeatureKind::Str(interner_from(
                    v.into_iter().map(|s| s.map(Box::from)).collect(),
                    &column,
                )?),
                FeatureValues::Int {
                    signed,
                    boolean,
                    values,
                } => FeatureKind::Int {
                    dict: interner_from(values, &column)?,
                    signed,
                    boolean,
                },
                FeatureValues::Bins(edges) => {
                    let ok = edges.len() >= 2
                        && edges.len() <= MAX_BIN_COUNT + 1
                        && edges.iter().all(|e| e.is_finite())
                        && (edges.len() == 2 && edges[0] == edges[1]
                            || edges.windows(2).all(|w| w[0] < w[1]));
                    if !ok {
                        return Err(bad(format!("bins of column {column:?}: invalid edges")));
                    }
                    FeatureKind::Bins {
                        labels: bin_labels(&edges),
                        edges,
                    }
                }
            };
            features.push(FeatureEncoder {
                column,
                index: usize::MAX,
                kind,
            });
        }
        let mut specs = Vec::with_capacity(keys.specs.len());
        for (idx, levels) in keys.specs {
            if idx.is_empty()
                || idx.iter().any(|i| *i >= features.len())
                || levels.len() + 1 != idx.len()
            {
                return Err(bad("a slice spec names features that do not exist".into()));
            }
            let mut pairs: Vec<Interner<u64>> = Vec::with_capacity(levels.len());
            let mut left_n = features[idx[0]].n_ids();
            for (level, keys) in levels.into_iter().enumerate() {
                let right_n = features[idx[level + 1]].n_ids();
                for k in &keys {
                    let (l, r) = ((k >> 32) as usize, (k & 0xffff_ffff) as usize);
                    if l >= left_n || r >= right_n {
                        return Err(bad("a cross slice names values that do not exist".into()));
                    }
                }
                let dict = interner_from(keys.into_iter().map(Some).collect(), "a cross slice")?;
                left_n = dict.len();
                pairs.push(dict);
            }
            specs.push((idx, pairs));
        }
        Ok(Slicer { features, specs })
    }

    /// Whether this slicer slices by `specs` (the same columns, crosses and bin edges).
    pub fn matches(&self, specs: &[SliceSpec]) -> bool {
        specs.len() == self.specs.len()
            && specs.iter().zip(&self.specs).all(|(spec, (idx, _))| {
                spec.len() == idx.len()
                    && spec.iter().zip(idx).all(|(f, i)| {
                        let e = &self.features[*i];
                        e.column == f.column()
                            && match (f, &e.kind) {
                                (
                                    Feature::Bins { edges, .. },
                                    FeatureKind::Bins { edges: mine, .. },
                                ) => edges == mine,
                                (Feature::Column(_), FeatureKind::Bins { .. })
                                | (Feature::Bins { .. }, _) => false,
                                _ => true,
                            }
                    })
            })
    }

    /// Adds the slices of `other` (a slicer of the same specs, from another shard) by value, and
    /// returns for each spec the id here of every id of `other`.
    pub fn absorb(&mut self, other: &Slicer) -> Result<Vec<Vec<u32>>> {
        if self.features.len() != other.features.len() || self.specs.len() != other.specs.len() {
            return Err(mismatch("the states slice by different specs".into()));
        }
        let mut feature_maps: Vec<Vec<u32>> = Vec::with_capacity(self.features.len());
        for (mine, theirs) in self.features.iter_mut().zip(&other.features) {
            let column = &mine.column;
            if *column != theirs.column {
                return Err(mismatch(format!(
                    "the states slice by different columns ({column:?} and {:?})",
                    theirs.column
                )));
            }
            let kind_name = |k: &FeatureKind| match k {
                FeatureKind::Str(_) => "strings",
                FeatureKind::Int { boolean: true, .. } => "booleans",
                FeatureKind::Int { signed: true, .. } => "signed integers",
                FeatureKind::Int { .. } => "unsigned integers",
                FeatureKind::Bins { .. } => "bins",
            };
            let (a, b) = (kind_name(&mine.kind), kind_name(&theirs.kind));
            let map = match (&mut mine.kind, &theirs.kind) {
                (FeatureKind::Str(d), FeatureKind::Str(o)) => {
                    o.values.iter().map(|v| d.id_owned(v.as_ref())).collect()
                }
                (FeatureKind::Int { dict, .. }, FeatureKind::Int { dict: o, .. }) if a == b => {
                    o.values.iter().map(|v| dict.id_owned(v.as_ref())).collect()
                }
                (FeatureKind::Bins { edges, .. }, FeatureKind::Bins { edges: o, .. })
                    if edges == o =>
                {
                    (0..o.len() as u32 + 2).collect()
                }
                _ => {
                    return Err(mismatch(format!(
                        "slice column {column:?} holds {a} in one state and {b} in another"
                    )))
                }
            };
            feature_maps.push(map);
        }
        let mut out = Vec::with_capacity(self.specs.len());
        for ((idx, pairs), (oidx, opairs)) in self.specs.iter_mut().zip(&other.specs) {
            if idx != oidx || pairs.len() != opairs.len() {
                return Err(mismatch("the states slice by different specs".into()));
            }
            let mut map = feature_maps[idx[0]].clone();
            for (level, (dict, odict)) in pairs.iter_mut().zip(opairs).enumerate() {
                let right = &feature_maps[idx[level + 1]];
                map = odict
                    .values
                    .iter()
                    .map(|k| {
                        let k = k.unwrap_or(0);
                        let (l, r) = ((k >> 32) as usize, (k & 0xffff_ffff) as usize);
                        let key = ((map[l] as u64) << 32) | right[r] as u64;
                        dict.id_owned(Some(&key))
                    })
                    .collect();
            }
            out.push(map);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator for the randomized tests below.
    fn xorshift(mut state: u64) -> impl FnMut() -> u64 {
        move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        }
    }

    /// The short-string path gives the ids of the general one (first appearance, nulls a value
    /// of their own), for strings on both sides of the 15-byte limit, empty strings, strings
    /// that differ only in length or in their last byte, strings at the very end of the
    /// values buffer, sliced arrays, and inputs longer than one encoding chunk.
    #[test]
    fn short_string_keys_match_the_general_path() {
        use arrow_array::{LargeStringArray, StringArray};
        let mut next = xorshift(0x9e37_79b9_7f4a_7c15);
        let pool: Vec<String> = vec![
            "".into(),
            "a".into(),
            "a\0".into(),
            "ab".into(),
            "é".into(),
            "x".repeat(14),
            "x".repeat(15),
            "x".repeat(16),
            format!("{}y", "x".repeat(14)),
            format!("{}y", "x".repeat(15)),
            "z".repeat(40),
        ];
        for n in [1usize, 7, 3 * ENCODE_CHUNK + 5] {
            let rows: Vec<Option<String>> = (0..n)
                .map(|_| {
                    let r = next() as usize;
                    (r % 9 != 0).then(|| pool[r % pool.len()].clone())
                })
                .collect();
            let small = StringArray::from(rows.clone());
            let large = LargeStringArray::from(rows.clone());
            for (lo, len) in [(0, n), (n / 3, n - n / 3), (n - 1, 1)] {
                let want_rows = &rows[lo..lo + len];
                let mut want_dict = Interner::<Box<str>>::default();
                let mut want = vec![0u32; len];
                encode_keys(&mut want_dict, len, |i| want_rows[i].as_deref(), &mut want);
                let mut got_dict = Interner::<Box<str>>::default();
                let mut got = vec![0u32; len];
                encode_offset_strings(&mut got_dict, &small.slice(lo, len), &mut got);
                assert_eq!(got, want, "Utf8, {n} rows from {lo}");
                assert_eq!(got_dict.values, want_dict.values);
                let mut got_dict = Interner::<Box<str>>::default();
                encode_offset_strings(&mut got_dict, &large.slice(lo, len), &mut got);
                assert_eq!(got, want, "LargeUtf8, {n} rows from {lo}");
                assert_eq!(got_dict.values, want_dict.values);
            }
        }
        // Distinct strings of up to 15 bytes have distinct keys; the key carries the length.
        let bytes = b"abcdefghijklmnopqrstuvwxyz";
        let keys: Vec<u128> = (0..=SHORT).map(|l| short_key(bytes, 0, l)).collect();
        let tail: Vec<u128> = (0..=SHORT)
            .map(|l| short_key(bytes, bytes.len() - l, l))
            .collect();
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(*k >> 120, i as u128);
            assert_eq!(keys.iter().filter(|x| *x == k).count(), 1);
        }
        assert_eq!(
            short_key(b"ab", 0, 2),
            short_key(b"xxab", 2, 2),
            "the buffer's end"
        );
        assert_eq!(tail[3], short_key(b"xyz", 0, 3));
    }

    #[test]
    fn bins_follow_the_edge_rules() {
        let e = [0.0, 1.0, 2.0];
        assert_eq!(bin_of(&e, 0.0), 0);
        assert_eq!(bin_of(&e, 0.99), 0);
        assert_eq!(bin_of(&e, 1.0), 1);
        assert_eq!(bin_of(&e, 2.0), 1, "the last bin is closed");
        assert_eq!(bin_of(&e, 2.5), 3, "above range");
        assert_eq!(bin_of(&e, -1.0), 2, "below range");
        assert_eq!(bin_of(&e, f64::NAN), 4);
        assert_eq!(
            bin_labels(&e)[..2],
            ["[0, 1)".to_string(), "[1, 2]".to_string()]
        );
    }

    #[test]
    fn edges_format_readably() {
        assert_eq!(format_edge(31.0, 6), "31");
        assert_eq!(format_edge(0.30000000000000004, 6), "0.3");
        assert_eq!(format_edge(-2.5, 6), "-2.5");
        assert_eq!(format_edge(1234.56789, 6), "1234.57");
        assert_eq!(format_edge(1.5e-300, 6), "1.5e-300");
        assert_eq!(format_edge(-2.5e20, 6), "-2.5e20");
        assert_eq!(format_edge(1e-4 * 1.5, 6), "0.00015");
    }

    #[test]
    fn labels_of_distinct_edges_are_distinct() {
        // Subnormal edges printed as "0" before, every bin labelled "[0, 0)".
        let tiny = [5e-324, 1e-323, 1.5e-323, 2e-323];
        let huge = [-f64::MAX, -1e300, 0.0, 1e300, f64::MAX];
        let near = [1.0, 1.0 + f64::EPSILON, 1.0 + 2.0 * f64::EPSILON];
        let ulps = [0.1, f64::from_bits(0.1f64.to_bits() + 1), 0.2];
        let mixed = [-1e-310, 0.0, 2.2e-308, 1e-5, 0.5, 7.0];
        for edges in [&tiny[..], &huge, &near, &ulps, &mixed] {
            let labels = bin_labels(edges);
            let mut seen = labels.clone();
            seen.sort();
            seen.dedup();
            assert_eq!(seen.len(), labels.len(), "{labels:?}");
            // Each edge's text parses back to a number that separates it from its neighbours.
            for l in &labels[..edges.len() - 1] {
                assert!(!l.contains("[0, 0)"), "{labels:?}");
            }
        }
        assert_eq!(bin_labels(&tiny)[0], "[4.94066e-324, 9.88131e-324)");
        assert_eq!(bin_labels(&ulps)[0], "[0.1, 0.10000000000000002)");
        assert_eq!(bin_labels(&near)[0], "[1, 1.0000000000000002)");
        assert_eq!(bin_labels(&[0.0, 0.5, 1.0])[..2], ["[0, 0.5)", "[0.5, 1]"]);
    }

    #[test]
    fn edges_from_the_order_statistics_they_read_equal_edges_from_all_values() {
        // What a distributed engine does: fetch only the ranks `bin_edge_ranks` names, then
        // place the edges from them. Any other rank asked for is a bug (it would not be there).
        let mut next = xorshift(0x9e37_79b9_7f4a_7c15);
        for trial in 0..300 {
            let len = 1 + (next() % 200) as usize;
            let distinct = 1 + next() % 40;
            let values: Vec<f64> = (0..len)
                .map(|_| match trial % 3 {
                    0 => (next() % distinct) as f64 * 0.37 - 3.0,
                    1 => (next() >> 11) as f64 / (1u64 << 53) as f64 * 1e3,
                    _ => f64::from_bits(next() >> 2) - 1.0,
                })
                .map(|x| if x.is_finite() { x } else { 1.0 })
                .collect();
            let mut sorted = values.clone();
            sorted.sort_by(|a, b| a.total_cmp(b));
            for n in [1usize, 2, 3, 7, 10, 64, 301] {
                for strategy in [BinStrategy::Quantile, BinStrategy::Uniform] {
                    let ranks = bin_edge_ranks(len, n, strategy);
                    let stat = |i: usize| {
                        assert!(ranks.binary_search(&i).is_ok(), "rank {i} not fetched");
                        Ok(sorted[i])
                    };
                    let by_rank = bin_edges_by_rank(len, false, n, strategy, "x", stat).unwrap();
                    let all = bin_edges(&values, n, strategy, "x").unwrap();
                    // And the formula of NumPy's linear quantile over all the sorted values,
                    // written out again here (bin_edges itself now reads ranks too).
                    if strategy == BinStrategy::Quantile && sorted[0] != sorted[len - 1] {
                        let mut want: Vec<f64> = (0..=n)
                            .map(|k| {
                                let q = if k == n {
                                    1.0
                                } else {
                                    k as f64 * (1.0 / n as f64)
                                };
                                crate::sorted::quantile_sorted(&sorted, q)
                            })
                            .collect();
                        if want.iter().all(|e| e.is_finite()) {
                            want.sort_by(|a, b| a.total_cmp(b));
                            want.dedup();
                            assert_eq!(
                                want.iter().map(|e| e.to_bits()).collect::<Vec<_>>(),
                                all.iter().map(|e| e.to_bits()).collect::<Vec<_>>(),
                            );
                        }
                    }
                    assert_eq!(
                        by_rank.iter().map(|e| e.to_bits()).collect::<Vec<_>>(),
                        all.iter().map(|e| e.to_bits()).collect::<Vec<_>>(),
                        "len {len} n {n} {strategy:?}"
                    );
                }
            }
        }
        assert!(bin_edge_ranks(0, 5, BinStrategy::Quantile).is_empty());
        assert_eq!(bin_edge_ranks(1, 5, BinStrategy::Quantile), vec![0]);
        assert_eq!(bin_edge_ranks(10, 5, BinStrategy::Uniform), vec![0, 9]);
        let err = bin_edges_by_rank(3, true, 2, BinStrategy::Quantile, "x", |_| Ok(0.0));
        assert!(err.unwrap_err().to_string().contains("infinite"));
        let err = bin_edges_by_rank(0, false, 2, BinStrategy::Quantile, "x", |_| Ok(0.0));
        assert!(err.unwrap_err().to_string().contains("no non-null values"));
    }

    #[test]
    fn uniform_edges_of_a_column_spanning_the_float_range() {
        let v = [-f64::MAX, 0.0, 1.0, f64::MAX];
        for n in [1usize, 2, 3, 10] {
            let e = bin_edges(&v, n, BinStrategy::Uniform, "x").unwrap();
            assert_eq!(e.len(), n + 1);
            assert_eq!((e[0], e[n]), (-f64::MAX, f64::MAX));
            assert!(e.iter().all(|x| x.is_finite()));
            assert!(e.windows(2).all(|w| w[0] < w[1]), "{e:?}");
        }
        let e = bin_edges(&v, 2, BinStrategy::Uniform, "x").unwrap();
        assert_eq!(e[1], 0.0);
        let q = bin_edges(&v, 3, BinStrategy::Quantile, "x").unwrap();
        assert!(q.iter().all(|x| x.is_finite()) && q.windows(2).all(|w| w[0] < w[1]));
        // An ordinary range keeps NumPy's linspace steps.
        let e = bin_edges(&[0.0, 1.0], 10, BinStrategy::Uniform, "x").unwrap();
        assert_eq!(e[3], 3.0 * 0.1);
    }
}

/// How `bins(column, n)` places its edges.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum BinStrategy {
    /// Equal-width bins between the minimum and the maximum.
    Uniform,
    /// Equal-mass bins at the quantiles k/n (linear interpolation, as numpy's default);
    /// repeated edges (heavy ties) are merged.
    Quantile,
}

/// The most bins [`bin_edges`] places (its edges are held, and each bin becomes a slice).
pub const MAX_BIN_COUNT: usize = 1_000_000;

/// Edges of `n` bins over the non-NaN `values`. All values equal gives the single bin `[v, v]`.
pub fn bin_edges(
    values: &[f64],
    n: usize,
    strategy: BinStrategy,
    column: &str,
) -> Result<Vec<f64>> {
    check_bin_count(n, column)?;
    let infinite = values.iter().any(|v| v.is_infinite());
    let mut v: Vec<f64> = if infinite {
        Vec::new()
    } else {
        values.iter().copied().filter(|x| !x.is_nan()).collect()
    };
    crate::runtime::check()?;
    // A pool per call, like `evaluate`: the global rayon pool does not survive `fork()`.
    crate::runtime::job_pool(None)?.install(|| v.par_sort_unstable_by(|a, b| a.total_cmp(b)));
    crate::runtime::check()?;
    bin_edges_by_rank(v.len(), infinite, n, strategy, column, |i| Ok(v[i]))
}

fn check_bin_count(n: usize, column: &str) -> Result<()> {
    if n == 0 {
        return Err(AssayError::InvalidArgument(format!(
            "bins for column {column:?}: n must be at least 1"
        )));
    }
    if n > MAX_BIN_COUNT {
        return Err(AssayError::InvalidArgument(format!(
            "bins for column {column:?}: n must be at most {MAX_BIN_COUNT}, got {n}"
        )));
    }
    Ok(())
}

/// The positions (0-based, in the ascending order of the `len` non-NaN values) of the order
/// statistics that the edges of `n` bins read: what a distributed engine fetches (exactly)
/// before [`bin_edges_by_rank`] places the edges, so that they equal [`bin_edges`] over the
/// same values to the bit. Ascending, without repeats; empty when `len` is 0.
pub fn bin_edge_ranks(len: usize, n: usize, strategy: BinStrategy) -> Vec<usize> {
    if len == 0 || n == 0 {
        return Vec::new();
    }
    let last = len - 1;
    let mut ranks = vec![0, last];
    if strategy == BinStrategy::Quantile {
        let step = 1.0 / n as f64;
        for k in 0..=n.min(MAX_BIN_COUNT) {
            let q = if k == n { 1.0 } else { k as f64 * step };
            let (i, _) = quantile_position(len, q);
            ranks.push(i);
            if i < last {
                ranks.push(i + 1);
            }
        }
    }
    ranks.sort_unstable();
    ranks.dedup();
    ranks
}

/// Where the linear quantile `q` of `len` sorted values falls: the lower rank `i` and the
/// fraction `t` towards rank `i + 1` (`t` is 0 at the last rank). NumPy's positions.
fn quantile_position(len: usize, q: f64) -> (usize, f64) {
    let last = (len - 1) as f64;
    let h = last * q.clamp(0.0, 1.0);
    if h >= last {
        return (len - 1, 0.0);
    }
    let i = h.floor() as usize;
    (i, h - i as f64)
}

/// The edges of [`bin_edges`], from the order statistics of the `len` non-NaN values:
/// `stat(i)` is the value of 0-based rank `i` (only the ranks of [`bin_edge_ranks`] are
/// asked for). `infinite` says that the column holds an infinite value (refused, as
/// [`bin_edges`] refuses it).
pub fn bin_edges_by_rank(
    len: usize,
    infinite: bool,
    n: usize,
    strategy: BinStrategy,
    column: &str,
    stat: impl Fn(usize) -> Result<f64>,
) -> Result<Vec<f64>> {
    check_bin_count(n, column)?;
    if infinite {
        return Err(crate::error::invalid(
            column,
            "cannot bin infinite values; give explicit edges",
        ));
    }
    if len == 0 {
        return Err(crate::error::invalid(
            column,
            "cannot place bins: the column has no non-null values",
        ));
    }
    let (lo, hi) = (stat(0)?, stat(len - 1)?);
    if lo == hi {
        return Ok(vec![lo, hi]);
    }
    let mut edges: Vec<f64> = match strategy {
        // As `np.linspace(lo, hi, n + 1)`: k * ((hi - lo) / n) + lo, the last edge exactly hi.
        BinStrategy::Uniform => {
            let step = (hi - lo) / n as f64;
            if step.is_finite() {
                (0..=n)
                    .map(|k| if k == n { hi } else { k as f64 * step + lo })
                    .collect()
            } else {
                // The range overflows (a column spanning about ±1.8e308): interpolate between
                // the ends instead; each term stays finite, and with lo < 0 < hi so does the sum.
                (0..=n)
                    .map(|k| {
                        let t = k as f64 / n as f64;
                        if k == n {
                            hi
                        } else {
                            lo * (1.0 - t) + hi * t
                        }
                    })
                    .collect()
            }
        }
        // The same floating-point steps as `np.quantile(v, np.linspace(0, 1, n + 1))`, so
        // the edges agree with NumPy to the bit: q = k * (1/n), then NumPy's linear quantile.
        BinStrategy::Quantile => {
            let step = 1.0 / n as f64;
            let mut out = Vec::with_capacity(n + 1);
            for k in 0..=n {
                let q = if k == n { 1.0 } else { k as f64 * step };
                let (i, t) = quantile_position(len, q);
                if i == len - 1 {
                    out.push(hi);
                    continue;
                }
                let (a, b) = (stat(i)?, stat(i + 1)?);
                let d = b - a;
                let e = if t >= 0.5 {
                    b - d * (1.0 - t)
                } else {
                    a + d * t
                };
                // Neighbours whose difference overflows (about ±1.8e308): the same linear
                // interpolation, as a weighted mean of the two.
                out.push(if e.is_finite() {
                    e
                } else {
                    a * (1.0 - t) + b * t
                });
            }
            out
        }
    };
    // (Rounding of the interpolated edges could only tie neighbours, never reorder them;
    // sorting keeps the edges a valid, strictly increasing list whatever happens.)
    edges.sort_by(|a, b| a.total_cmp(b));
    edges.dedup();
    Ok(edges)
}
