//! Typed views of the role columns (label, score, weight) over one record batch.
//!
//! Values are read zero-copy where the Arrow type already matches (`Float64` scores and weights);
//! other numeric types are widened into a small per-piece buffer.

use std::borrow::Cow;

use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_array::{Array, ArrayRef};
use arrow_schema::{DataType, Schema};

use crate::error::{schema, AssayError, Result};

/// Index of `name` in `schema`, or a `ColumnNotFound` error listing what exists.
pub fn column_index(schema: &Schema, name: &str) -> Result<usize> {
    schema
        .index_of(name)
        .map_err(|_| AssayError::ColumnNotFound {
            column: name.to_string(),
            available: schema
                .fields()
                .iter()
                .map(|f| format!("{:?}", f.name()))
                .collect::<Vec<_>>()
                .join(", "),
        })
}

fn is_integer(dt: &DataType) -> bool {
    matches!(
        dt,
        DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
            | DataType::UInt64
    )
}

fn is_numeric(dt: &DataType) -> bool {
    is_integer(dt) || matches!(dt, DataType::Float32 | DataType::Float64)
}

/// Checks that a label column can hold 0/1 values (bool, integer or float).
pub fn check_label_type(name: &str, dt: &DataType) -> Result<()> {
    if is_numeric(dt) || matches!(dt, DataType::Boolean | DataType::Null) {
        Ok(())
    } else {
        Err(schema(
            name,
            format!("label must be boolean, integer or float 0/1, got type {dt}"),
        ))
    }
}

/// Checks that a score or weight column is numeric.
pub fn check_numeric_type(name: &str, role: &str, dt: &DataType) -> Result<()> {
    if is_numeric(dt) || matches!(dt, DataType::Null) {
        Ok(())
    } else {
        Err(schema(
            name,
            format!("{role} must be a numeric column, got type {dt}"),
        ))
    }
}

macro_rules! widen {
    ($array:expr, $lo:expr, $hi:expr, $out:expr, $($dt:ident => $t:ty),*) => {
        match $array.data_type() {
            $(DataType::$dt => {
                let v = &$array.as_primitive::<$t>().values()[$lo..$hi];
                $out.extend(v.iter().map(|x| *x as f64));
            })*
            DataType::Boolean => {
                let b = $array.as_boolean();
                $out.extend(($lo..$hi).map(|i| if b.values().value(i) { 1.0 } else { 0.0 }));
            }
            DataType::Null => $out.extend(std::iter::repeat_n(f64::NAN, $hi - $lo)),
            other => unreachable!("type {other} was rejected when the job was planned"),
        }
    };
}

/// Values of rows `lo..hi` as f64, like [`f64_values`], but widened into `buf` in place so
/// that a caller can reuse the buffer (its pages stay mapped) from one chunk to the next.
pub fn f64_view<'a>(array: &'a ArrayRef, lo: usize, hi: usize, buf: &'a mut Vec<f64>) -> &'a [f64] {
    if let DataType::Float64 = array.data_type() {
        return &array.as_primitive::<Float64Type>().values()[lo..hi];
    }
    buf.clear();
    widen!(array, lo, hi, buf,
        Int8 => Int8Type, Int16 => Int16Type, Int32 => Int32Type, Int64 => Int64Type,
        UInt8 => UInt8Type, UInt16 => UInt16Type, UInt32 => UInt32Type, UInt64 => UInt64Type,
        Float32 => Float32Type);
    buf
}

/// Values of rows `lo..hi` as f64: borrowed for `Float64`, widened into `buf` otherwise.
/// Null slots hold whatever the buffer holds; callers consult [`null_at`].
pub fn f64_values<'a>(
    array: &'a ArrayRef,
    lo: usize,
    hi: usize,
    buf: &'a mut Vec<f64>,
) -> Cow<'a, [f64]> {
    if let DataType::Float64 = array.data_type() {
        return Cow::Borrowed(&array.as_primitive::<Float64Type>().values()[lo..hi]);
    }
    buf.clear();
    widen!(array, lo, hi, buf,
        Int8 => Int8Type, Int16 => Int16Type, Int32 => Int32Type, Int64 => Int64Type,
        UInt8 => UInt8Type, UInt16 => UInt16Type, UInt32 => UInt32Type, UInt64 => UInt64Type,
        Float32 => Float32Type);
    Cow::Owned(std::mem::take(buf))
}

/// The logical validity of a whole column of one batch (a `Null`-typed column is all null).
pub fn validity(array: &ArrayRef) -> Option<arrow_buffer::NullBuffer> {
    array.logical_nulls().filter(|n| n.null_count() > 0)
}

/// Checks that a row-id column holds integers.
pub fn check_row_id_type(name: &str, dt: &DataType) -> Result<()> {
    if is_integer(dt) {
        Ok(())
    } else {
        Err(schema(
            name,
            format!("row_id must be an integer column, got type {dt}"),
        ))
    }
}

/// Row ids of rows `lo..hi` (integers reinterpreted as u64 bit patterns; only equality
/// matters, as they are hashed).
pub fn u64_values(array: &ArrayRef, lo: usize, hi: usize) -> Vec<u64> {
    macro_rules! ids {
        ($($dt:ident => $t:ty),*) => {
            match array.data_type() {
                $(DataType::$dt => array.as_primitive::<$t>().values()[lo..hi]
                    .iter()
                    .map(|x| *x as i64 as u64)
                    .collect(),)*
                DataType::UInt64 => array.as_primitive::<UInt64Type>().values()[lo..hi].to_vec(),
                other => unreachable!("type {other} was rejected when the job was planned"),
            }
        };
    }
    ids!(Int8 => Int8Type, Int16 => Int16Type, Int32 => Int32Type, Int64 => Int64Type,
         UInt8 => UInt8Type, UInt16 => UInt16Type, UInt32 => UInt32Type)
}
