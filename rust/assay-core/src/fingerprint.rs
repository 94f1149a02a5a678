//! The content hash of a job's input (`fingerprint="content"`): a 64-bit hash of the values of
//! the columns the job reads, row by row, computed as the batches pass (no second read).
//!
//! Each row's hash mixes its columns' values (in the order of the names given); the input's
//! hash is the wrapping sum over rows of `mix(row hash, global row position)`. So it depends on
//! the values and their order, not on how the rows are cut into batches, and the hashes of the
//! shards of a split job (each at its `row_offset`) add up to the hash of the whole input.
//! Values hash by their bytes in Arrow's layout (fixed-width values of up to 8 bytes by their
//! bits, others by XXH3), except that a dictionary-encoded value hashes
//! as the value itself (a categorical column and its plain strings agree); a null hashes as a
//! marker of its own. The hash is stable across platforms and versions of assay that share
//! this module's constants; it is not cryptographic.

use arrow_array::cast::AsArray;
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use rayon::prelude::*;

/// Rows hashed per task.
const PART_ROWS: usize = 1 << 16;
const NULL: u64 = 0x6e75_6c6c_6e75_6c6c;
const SEED: u64 = 0x9e37_79b9_7f4a_7c15;
const POSITION: u64 = 0xd6e8_feb8_6659_fd93;

/// The SplitMix64 finalizer: a bijective mix of 64 bits.
#[inline]
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A hash of `bytes` (XXH3, 64 bits).
#[inline]
fn hash_bytes(bytes: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(bytes)
}

/// The hash of every value of `array` (nulls included), in row order.
fn value_hashes(array: &dyn Array) -> Vec<u64> {
    let mut out = Vec::new();
    value_hashes_into(array, &mut out);
    out
}

/// [`value_hashes`] into `out` (cleared first; its memory is reused).
fn value_hashes_into(array: &dyn Array, out: &mut Vec<u64>) {
    let n = array.len();
    out.clear();
    match array.data_type() {
        DataType::Boolean => {
            let a = array.as_boolean();
            out.extend((0..n).map(|i| mix(SEED ^ a.value(i) as u64)));
        }
        DataType::Utf8 => bytes_of(out, n, |i| array.as_string::<i32>().value(i).as_bytes()),
        DataType::LargeUtf8 => bytes_of(out, n, |i| array.as_string::<i64>().value(i).as_bytes()),
        DataType::Utf8View => bytes_of(out, n, |i| array.as_string_view().value(i).as_bytes()),
        DataType::Binary => bytes_of(out, n, |i| array.as_binary::<i32>().value(i)),
        DataType::LargeBinary => bytes_of(out, n, |i| array.as_binary::<i64>().value(i)),
        DataType::BinaryView => bytes_of(out, n, |i| array.as_binary_view().value(i)),
        DataType::FixedSizeBinary(_) => bytes_of(out, n, |i| array.as_fixed_size_binary().value(i)),
        DataType::Dictionary(_, _) => {
            let d = array.as_any_dictionary();
            let values = value_hashes(d.values().as_ref());
            out.extend(
                d.normalized_keys()
                    .into_iter()
                    .map(|k| values.get(k).copied().unwrap_or(NULL)),
            );
        }
        DataType::List(_) => out.extend(list_hashes(array.as_list::<i32>().value_offsets(), array)),
        DataType::LargeList(_) => {
            out.extend(list_hashes(array.as_list::<i64>().value_offsets(), array))
        }
        DataType::FixedSizeList(_, size) => {
            let a = array.as_fixed_size_list();
            let size = (*size).max(0) as usize;
            let child = value_hashes(a.values().as_ref());
            let base = a.offset() * size;
            out.extend((0..n).map(|i| fold(&child[base + i * size..base + (i + 1) * size])));
        }
        DataType::Struct(_) => {
            let a = array.as_struct();
            out.resize(n, SEED);
            for c in a.columns() {
                for (x, v) in out.iter_mut().zip(value_hashes(c.as_ref())) {
                    *x = mix(x.rotate_left(7) ^ v);
                }
            }
        }
        DataType::Null => out.resize(n, NULL),
        dt if dt.primitive_width().is_some() => {
            // Fixed-width values: their bytes as stored (ints, floats, dates, times,
            // timestamps, durations, intervals, decimals); up to 8 bytes, the value's bits
            // mixed with its width (one multiply-xorshift chain a value), wider ones XXH3.
            let width = dt.primitive_width().unwrap_or(1);
            let data = array.to_data();
            let buf = &data.buffers()[0].as_slice()[data.offset() * width..][..n * width];
            let tag = SEED ^ width as u64;
            match width {
                8 => out.extend(
                    buf.chunks_exact(8)
                        .map(|c| mix(u64::from_le_bytes(c.try_into().expect("8 bytes")) ^ tag)),
                ),
                4 => {
                    out.extend(buf.chunks_exact(4).map(|c| {
                        mix(u32::from_le_bytes(c.try_into().expect("4 bytes")) as u64 ^ tag)
                    }))
                }
                2 => {
                    out.extend(buf.chunks_exact(2).map(|c| {
                        mix(u16::from_le_bytes(c.try_into().expect("2 bytes")) as u64 ^ tag)
                    }))
                }
                1 => out.extend(buf.iter().map(|b| mix(*b as u64 ^ tag))),
                _ => out.extend(buf.chunks_exact(width).map(hash_bytes)),
            }
        }
        // Other types (maps, unions, run-end encoded): their text.
        _ => {
            let opts = arrow_cast::display::FormatOptions::default();
            match arrow_cast::display::ArrayFormatter::try_new(array, &opts) {
                Ok(f) => {
                    let mut s = String::new();
                    out.extend((0..n).map(|i| {
                        s.clear();
                        use std::fmt::Write;
                        let _ = write!(s, "{}", f.value(i));
                        hash_bytes(s.as_bytes())
                    }));
                }
                Err(_) => out.resize(n, SEED),
            }
        }
    }
    if let Some(nulls) = array.logical_nulls() {
        for (i, h) in out.iter_mut().enumerate() {
            if nulls.is_null(i) {
                *h = NULL;
            }
        }
    }
}

fn bytes_of<'a>(out: &mut Vec<u64>, n: usize, value: impl Fn(usize) -> &'a [u8]) {
    out.extend((0..n).map(|i| hash_bytes(value(i))));
}

/// The hash of a sequence of hashes (its length included).
fn fold(hashes: &[u64]) -> u64 {
    hashes
        .iter()
        .fold(mix(SEED ^ hashes.len() as u64 ^ 0x11), |h, v| {
            mix(h.rotate_left(5) ^ v)
        })
}

fn list_hashes<O: arrow_array::OffsetSizeTrait>(offsets: &[O], array: &dyn Array) -> Vec<u64> {
    let child = match array.data_type() {
        DataType::List(_) => value_hashes(array.as_list::<i32>().values().as_ref()),
        _ => value_hashes(array.as_list::<i64>().values().as_ref()),
    };
    offsets
        .windows(2)
        .map(|w| fold(&child[w[0].as_usize()..w[1].as_usize()]))
        .collect()
}

/// The hash contribution of `batch`, whose first row is at global position `first`: its
/// columns named `columns` (in that order; a name the batch lacks is skipped), row by row.
pub fn batch_hash(batch: &RecordBatch, columns: &[String], first: u64) -> u64 {
    let cols: Vec<&dyn Array> = columns
        .iter()
        .filter_map(|c| batch.column_by_name(c).map(|a| a.as_ref()))
        .collect();
    let n = batch.num_rows();
    let starts: Vec<usize> = (0..n).step_by(PART_ROWS).collect();
    starts
        .into_par_iter()
        .map_init(
            || (Vec::new(), Vec::new()),
            |(rows, col): &mut (Vec<u64>, Vec<u64>), lo| {
                let hi = (lo + PART_ROWS).min(n);
                rows.clear();
                rows.resize(hi - lo, SEED);
                for c in &cols {
                    let part = c.slice(lo, hi - lo);
                    value_hashes_into(part.as_ref(), col);
                    for (r, v) in rows.iter_mut().zip(col.iter()) {
                        *r = mix(r.rotate_left(11) ^ v);
                    }
                }
                // (An odd multiplier is a bijection of the position; `mix` of the two spreads it.)
                rows.iter().enumerate().fold(0u64, |acc, (j, r)| {
                    let pos = first.wrapping_add((lo + j) as u64);
                    acc.wrapping_add(mix(r ^ pos.wrapping_mul(POSITION)))
                })
            },
        )
        // (Wrapping sums: any order gives the same bits.)
        .reduce(|| 0, u64::wrapping_add)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::types::Int32Type;
    use arrow_array::{ArrayRef, DictionaryArray, Float64Array, Int32Array, StringArray};
    use std::sync::Arc;

    fn batch(cols: Vec<(&str, ArrayRef)>) -> RecordBatch {
        RecordBatch::try_from_iter(cols).unwrap()
    }

    #[test]
    fn split_and_dictionary_invariant() {
        let s: ArrayRef = Arc::new(StringArray::from(vec![
            Some("a"),
            None,
            Some("b"),
            Some("a"),
        ]));
        let d: ArrayRef = Arc::new(
            vec![Some("a"), None, Some("b"), Some("a")]
                .into_iter()
                .collect::<DictionaryArray<Int32Type>>(),
        );
        let p: ArrayRef = Arc::new(Float64Array::from(vec![0.1, 0.2, 0.3, 0.4]));
        let names = vec!["p".to_string(), "s".to_string()];
        let whole = batch_hash(&batch(vec![("s", s.clone()), ("p", p.clone())]), &names, 0);
        let dict = batch_hash(&batch(vec![("s", d), ("p", p.clone())]), &names, 0);
        assert_eq!(whole, dict);
        let b = batch(vec![("s", s), ("p", p)]);
        let split = batch_hash(&b.slice(0, 1), &names, 0).wrapping_add(batch_hash(
            &b.slice(1, 3),
            &names,
            1,
        ));
        assert_eq!(whole, split);
        // Order and values matter.
        let q: ArrayRef = Arc::new(Float64Array::from(vec![0.2, 0.1, 0.3, 0.4]));
        let s2: ArrayRef = Arc::new(StringArray::from(vec![
            Some("a"),
            None,
            Some("b"),
            Some("a"),
        ]));
        assert_ne!(
            whole,
            batch_hash(&batch(vec![("s", s2), ("p", q)]), &names, 0)
        );
        let i: ArrayRef = Arc::new(Int32Array::from(vec![1, 2, 3, 4]));
        assert_ne!(
            batch_hash(&batch(vec![("p", i.clone())]), &names, 0),
            batch_hash(&batch(vec![("p", i)]), &names, 1)
        );
    }
}
