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

/// Index of `name` in `schema`, or a `ColumnNotFound` error listing what exists, or a
/// `Schema` error when the name appears more than once (which one was meant is ambiguous).
pub fn column_index(schema: &Schema, name: &str) -> Result<usize> {
    let mut found = schema
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| f.name() == name)
        .map(|(i, _)| i);
    match (found.next(), found.count()) {
        (Some(i), 0) => Ok(i),
        (Some(_), more) => Err(crate::error::schema(
            name,
            format!(
                "column {name:?} appears {} times in the input; rename the duplicates so that \
                 each column name is unique",
                more + 1
            ),
        )),
        (None, _) => Err(AssayError::ColumnNotFound {
            column: name.to_string(),
            available: if schema.fields().is_empty() {
                "none (the input has no columns)".to_string()
            } else {
                schema
                    .fields()
                    .iter()
                    .map(|f| format!("{:?}", f.name()))
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        }),
    }
}

/// The next batch of a pass over `batches`: `stop` is polled first (an interrupt ends the
/// pass), the batch is checked against `schema` ([`check_batch`]), and an empty batch gives
/// `None` (nothing to read).
pub fn next_batch(
    schema: &Schema,
    batch: std::result::Result<arrow_array::RecordBatch, arrow_schema::ArrowError>,
    index: usize,
    stop: &dyn Fn() -> bool,
) -> Result<Option<arrow_array::RecordBatch>> {
    if stop() {
        return Err(AssayError::Interrupted);
    }
    let batch = batch?;
    check_batch(schema, &batch, index)?;
    Ok((batch.num_rows() > 0).then_some(batch))
}

/// Checks that batch number `index` (0-based) of a stream matches the stream's declared
/// `schema`: the same number of columns with the same names and types (metadata and
/// nullability aside), every column as long as the batch. Readers whose batches disagree with
/// their schema would otherwise be read as the declared types.
pub fn check_batch(schema: &Schema, batch: &arrow_array::RecordBatch, index: usize) -> Result<()> {
    let got = batch.schema();
    let declared = schema.fields();
    let mismatch = |column: &str, message: String| {
        Err(crate::error::schema(
            column,
            format!(
                "batch {index} of the input does not match the stream's declared schema: \
                 {message}"
            ),
        ))
    };
    if got.fields().len() != declared.len() || batch.num_columns() != declared.len() {
        let names = |fs: &arrow_schema::Fields| {
            fs.iter()
                .map(|f| format!("{:?}", f.name()))
                .collect::<Vec<_>>()
                .join(", ")
        };
        return mismatch(
            "",
            format!(
                "it has {} columns ({}), the schema declares {} ({})",
                got.fields().len(),
                names(got.fields()),
                declared.len(),
                names(declared)
            ),
        );
    }
    for (i, (d, g)) in declared.iter().zip(got.fields().iter()).enumerate() {
        if d.name() != g.name() {
            return mismatch(
                d.name(),
                format!(
                    "column {i} is named {:?}, the schema declares {:?}",
                    g.name(),
                    d.name()
                ),
            );
        }
        let data = batch.column(i);
        if d.data_type() != g.data_type() || data.data_type() != d.data_type() {
            return mismatch(
                d.name(),
                format!(
                    "column {:?} holds type {}, the schema declares {}",
                    d.name(),
                    data.data_type(),
                    d.data_type()
                ),
            );
        }
        if data.len() != batch.num_rows() {
            return mismatch(
                d.name(),
                format!(
                    "column {:?} has {} rows, the batch has {}",
                    d.name(),
                    data.len(),
                    batch.num_rows()
                ),
            );
        }
    }
    Ok(())
}

/// The number of buffers the Arrow C data interface gives an array of type `dt` (validity
/// included), and whether more are allowed (the variadic buffers of view types). `None` for
/// types whose layout is not checked here.
pub fn c_data_buffers(dt: &DataType) -> Option<(usize, bool)> {
    use DataType::*;
    Some(match dt {
        Null => (0, false),
        Boolean | Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32 | UInt64 | Float16
        | Float32 | Float64 | Timestamp(..) | Date32 | Date64 | Time32(_) | Time64(_)
        | Duration(_) | Interval(_) | Decimal32(..) | Decimal64(..) | Decimal128(..)
        | Decimal256(..) | FixedSizeBinary(_) => (2, false),
        Utf8 | LargeUtf8 | Binary | LargeBinary => (3, false),
        Utf8View | BinaryView => (3, true),
        List(_) | LargeList(_) | Map(..) => (2, false),
        ListView(_) | LargeListView(_) => (3, false),
        FixedSizeList(..) | Struct(_) => (1, false),
        Dictionary(key, _) => return c_data_buffers(key),
        RunEndEncoded(..) => (0, false),
        _ => return None,
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
