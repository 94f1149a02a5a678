//! Import of Arrow C streams (`__arrow_c_stream__`), checked batch by batch.
//!
//! The C data interface carries no buffer sizes: a producer whose batches disagree with the
//! stream's declared schema makes a plain importer read the wrong layout (arrow-rs asserts on
//! a wrong child count, or builds arrays with too few buffers and panics later). Each batch
//! is checked here before it is imported: the column count, the number of buffers and
//! children every declared type has, non-null pointers; the import itself runs under
//! `catch_unwind`, and the imported batch is validated in full (offsets, dictionary keys,
//! UTF-8) before any unchecked access. Whatever does not match becomes a `SchemaError` that
//! names the batch. (Same-layout mismatches, such as int64 declared and uint8 sent, cannot be
//! seen from this side; the Python facade checks pyarrow readers at the producer.)

use std::ffi::{c_char, c_void, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use arrow_array::ffi::{from_ffi_and_data_type, FFI_ArrowArray};
use arrow_array::ffi_stream::FFI_ArrowArrayStream;
use arrow_array::{RecordBatch, RecordBatchOptions, StructArray};
use arrow_schema::ffi::FFI_ArrowSchema;
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef, UnionMode};
use assay_core::error::AssayError;
use assay_core::input::c_data_buffers;
use assay_core::runtime::panic_message;
use pyo3::prelude::*;
use pyo3::types::PyCapsule;

/// The C data interface's `ArrowArray` (its ABI is fixed by the specification), read field by
/// field so that malformed arrays are reported instead of tripping the importer's asserts.
#[repr(C)]
struct RawArray {
    length: i64,
    null_count: i64,
    offset: i64,
    n_buffers: i64,
    n_children: i64,
    buffers: *mut *const c_void,
    children: *mut *mut RawArray,
    dictionary: *mut RawArray,
    release: Option<unsafe extern "C" fn(arg1: *mut RawArray)>,
    private_data: *mut c_void,
}

const _: () = assert!(std::mem::size_of::<RawArray>() == std::mem::size_of::<FFI_ArrowArray>());

/// A checked Arrow C stream: an iterator of record batches of its declared schema.
pub struct Stream {
    stream: FFI_ArrowArrayStream,
    schema: SchemaRef,
    /// Batches handed out so far (the next batch's index).
    index: usize,
    done: bool,
    /// The columns whose values are validated in full (offsets, dictionary keys, UTF-8):
    /// those a job reads. None: every column.
    read: Option<Vec<bool>>,
}

/// The error of a batch that does not match the declared schema.
fn mismatch(index: usize, column: &str, message: impl std::fmt::Display) -> AssayError {
    AssayError::Schema {
        column: column.to_string(),
        message: format!(
            "batch {index} of the input does not match the stream's declared schema: {message}"
        ),
    }
}

/// Carries an `AssayError` through the `ArrowError` the engine's batch iterators yield (the
/// core's `From<ArrowError>` unwraps it again).
fn wrap(e: AssayError) -> ArrowError {
    ArrowError::ExternalError(Box::new(e))
}

impl Stream {
    /// Takes over the C stream of `obj` (anything with `__arrow_c_stream__`).
    pub fn import(obj: &Bound<'_, PyAny>) -> PyResult<Result<Stream, AssayError>> {
        let method = match obj.getattr("__arrow_c_stream__") {
            Ok(m) => m,
            Err(_) => {
                return Ok(Err(AssayError::InvalidArgument(format!(
                    "the input must be an Arrow stream (an object with __arrow_c_stream__), \
                     got {}",
                    obj.get_type().name()?
                ))))
            }
        };
        let capsule = method.call0()?;
        let capsule = capsule.cast::<PyCapsule>().map_err(PyErr::from)?;
        let ptr = capsule.pointer_checked(Some(c"arrow_array_stream"))?;
        // SAFETY: the capsule holds an `ArrowArrayStream` (its name says so); `from_raw` moves
        // it out and marks the capsule's copy released, so it is released once.
        let stream =
            unsafe { FFI_ArrowArrayStream::from_raw(ptr.as_ptr() as *mut FFI_ArrowArrayStream) };
        Ok(Stream::new(stream))
    }

    fn new(mut stream: FFI_ArrowArrayStream) -> Result<Stream, AssayError> {
        let bad = |m: String| AssayError::InvalidArgument(m);
        if stream.release.is_none() {
            return Err(bad(
                "the input's Arrow stream was already consumed (a reader can be read once)".into(),
            ));
        }
        let Some(get_schema) = stream.get_schema else {
            return Err(bad(
                "the input's Arrow stream has no get_schema callback".into()
            ));
        };
        let mut ffi_schema = FFI_ArrowSchema::empty();
        // SAFETY: a live stream (release is set) with its own callback.
        let rc = unsafe { get_schema(&mut stream, &mut ffi_schema) };
        if rc != 0 {
            let msg = last_error(&mut stream);
            return Err(AssayError::Arrow(format!(
                "could not read the input's schema (error code {rc}): {msg}"
            )));
        }
        let schema = catch_unwind(AssertUnwindSafe(|| Schema::try_from(&ffi_schema)))
            .map_err(|p| {
                AssayError::Arrow(format!(
                    "could not read the input's schema: {}",
                    panic_message(&*p)
                ))
            })?
            .map_err(|e| AssayError::Arrow(format!("could not read the input's schema: {e}")))?;
        Ok(Stream {
            stream,
            schema: Arc::new(schema),
            index: 0,
            done: false,
            read: None,
        })
    }

    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// Validates the values of the named columns only (the ones the job reads; unknown names
    /// are left to the job's own column lookup). Every column's layout is checked regardless.
    pub fn reading<'a>(mut self, names: impl IntoIterator<Item = &'a str>) -> Self {
        let mut read = vec![false; self.schema.fields().len()];
        for name in names {
            for (i, f) in self.schema.fields().iter().enumerate() {
                if f.name() == name {
                    read[i] = true;
                }
            }
        }
        self.read = Some(read);
        self
    }

    fn next_batch(&mut self) -> Option<Result<RecordBatch, AssayError>> {
        if self.done {
            return None;
        }
        let index = self.index;
        self.index += 1;
        let Some(get_next) = self.stream.get_next else {
            self.done = true;
            return Some(Err(AssayError::Arrow(
                "the input's Arrow stream has no get_next callback".into(),
            )));
        };
        let mut array = FFI_ArrowArray::empty();
        // SAFETY: a live stream with its own callback, writing into an empty array.
        let rc = unsafe { get_next(&mut self.stream, &mut array) };
        if rc != 0 {
            self.done = true;
            let msg = last_error(&mut self.stream);
            return Some(Err(AssayError::Arrow(format!(
                "reading batch {index} of the input failed: {msg}"
            ))));
        }
        if array.is_released() {
            self.done = true;
            return None;
        }
        let out = self.import_batch(array, index);
        if out.is_err() {
            self.done = true;
        }
        Some(out)
    }

    fn import_batch(&self, array: FFI_ArrowArray, index: usize) -> Result<RecordBatch, AssayError> {
        let fields = self.schema.fields();
        // SAFETY: `RawArray` is the C ABI layout of `FFI_ArrowArray`; only read here.
        let raw = unsafe { &*(&array as *const FFI_ArrowArray as *const RawArray) };
        let struct_type = DataType::Struct(fields.clone());
        // The batch's own struct array: its count of buffers (its validity bitmap alone) is
        // followed unchecked like any other.
        check_buffers(raw, &struct_type)
            .map_err(|what| mismatch(index, "", format!("the batch's struct array: {what}")))?;
        if raw.n_children != fields.len() as i64 {
            return Err(mismatch(
                index,
                "",
                format!(
                    "it has {} columns, the schema declares {} ({})",
                    raw.n_children,
                    fields.len(),
                    fields
                        .iter()
                        .map(|f| format!("{:?}", f.name()))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        let rows = raw.offset.saturating_add(raw.length);
        for (i, f) in fields.iter().enumerate() {
            // SAFETY: n_children was checked against the fields; pointers are checked for
            // null before they are followed.
            let child = unsafe { child_at(raw, i) }.ok_or_else(|| {
                mismatch(index, f.name(), format!("column {:?} is missing", f.name()))
            })?;
            check_array(child, f, index, f.name())?;
            if child.length < rows {
                return Err(mismatch(
                    index,
                    f.name(),
                    format!(
                        "column {:?} has {} rows, the batch has {}",
                        f.name(),
                        child.length,
                        rows
                    ),
                ));
            }
        }
        // An empty batch has no values to read, so it is not imported: pyarrow exports an
        // empty slice of a string column with its offset into the offsets but no values,
        // which the importer reads as offsets past the end of the values.
        if raw.length == 0 {
            return Ok(RecordBatch::new_empty(self.schema.clone()));
        }
        let imported = catch_unwind(AssertUnwindSafe(|| -> Result<RecordBatch, AssayError> {
            // SAFETY: the array's structure matches the declared type (checked above); its
            // buffers are owned by the producer until the array is released.
            let data = unsafe { from_ffi_and_data_type(array, struct_type) }
                .and_then(|data| data.validate().map(|()| data))
                .map_err(|e| mismatch(index, "", e))?;
            let len = data.len();
            let batch = RecordBatch::try_new_with_options(
                self.schema.clone(),
                StructArray::from(data).into_parts().1,
                &RecordBatchOptions::new().with_row_count(Some(len)),
            )
            .map_err(|e| mismatch(index, "", e))?;
            for (i, column) in batch.columns().iter().enumerate() {
                if self.read.as_ref().is_none_or(|r| r.get(i) == Some(&true)) {
                    validate_values(column).map_err(|e| {
                        let name = self.schema.field(i).name();
                        AssayError::Schema {
                            column: name.clone(),
                            message: format!(
                                "batch {index} of the input holds invalid data in column \
                                 {name:?}: {e}"
                            ),
                        }
                    })?;
                }
            }
            Ok(batch)
        }));
        match imported {
            Ok(out) => out,
            Err(p) => Err(mismatch(index, "", panic_message(&*p))),
        }
    }
}

/// Validates a column's values in full (offsets, dictionary keys, UTF-8), as
/// `ArrayData::validate_full` does. Plain string columns and dictionary columns without null
/// keys, the common slice columns, take a faster check first (`validate_full` decodes each
/// string on its own, and checks each key through a generic accessor; this checks the
/// offsets, decodes the values they span at once and checks every offset falls on a
/// character boundary, and compares each key with the dictionary's length in one vectorized
/// pass, then checks the dictionary's values the same way); if that check fails,
/// `validate_full` has the last word and the message.
fn validate_values(column: &arrow_array::ArrayRef) -> Result<(), ArrowError> {
    use arrow_array::cast::AsArray;
    let fast = match column.data_type() {
        DataType::Utf8 => {
            let a = column.as_string::<i32>();
            strings_valid(a.value_offsets(), a.value_data())
        }
        DataType::LargeUtf8 => {
            let a = column.as_string::<i64>();
            strings_valid(a.value_offsets(), a.value_data())
        }
        DataType::Dictionary(_, _) => {
            dictionary_keys_valid(column)
                && validate_values(column.as_any_dictionary().values()).is_ok()
        }
        _ => false,
    };
    let data = column.to_data();
    if fast {
        // The cheap structural checks (buffer sizes, the first and last offsets) that
        // validate_full starts with; the fast check above replaced only the value-by-value
        // part.
        return data.validate();
    }
    data.validate_full()
}

/// True when a dictionary array has no null keys and every key indexes its values.
fn dictionary_keys_valid(column: &arrow_array::ArrayRef) -> bool {
    use arrow_array::cast::AsArray;
    use arrow_array::types::*;
    let dict = column.as_any_dictionary();
    let keys = dict.keys();
    if keys.null_count() > 0 {
        return false; // null slots may hold any key: validate_full skips them
    }
    let n = dict.values().len();
    macro_rules! check {
        ($($dt:ident => $t:ty),*) => {
            match keys.data_type() {
                $(DataType::$dt => keys_below(keys.as_primitive::<$t>().values(), n),)*
                _ => false,
            }
        };
    }
    check!(Int8 => Int8Type, Int16 => Int16Type, Int32 => Int32Type, Int64 => Int64Type,
           UInt8 => UInt8Type, UInt16 => UInt16Type, UInt32 => UInt32Type,
           UInt64 => UInt64Type)
}

/// True when every key is in `0..n` (a negative key, cast to `usize`, is far above `n`).
fn keys_below<K: arrow_array::ArrowNativeTypeOp>(keys: &[K], n: usize) -> bool {
    keys.chunks(4096).all(|block| {
        let mut bad = false;
        for k in block {
            bad |= k.as_usize() >= n;
        }
        !bad
    })
}

/// True when `offsets` are non-decreasing, lie within `values`, and cut the UTF-8 text they
/// span at character boundaries (so every string is valid UTF-8). A column of
/// [`PARALLEL_STRINGS`] strings or more is checked in parallel steps of [`STRING_STEP`]
/// strings: each step's offsets, and the text between its first and last offset (valid UTF-8
/// spans that meet at character boundaries make valid UTF-8).
fn strings_valid<O: arrow_array::OffsetSizeTrait>(offsets: &[O], values: &[u8]) -> bool {
    let (Some(first), Some(last)) = (offsets.first(), offsets.last()) else {
        return false;
    };
    let (Some(first), Some(last)) = (first.to_usize(), last.to_usize()) else {
        return false; // a negative offset
    };
    if first > last || last > values.len() {
        return false;
    }
    let n = offsets.len() - 1;
    if n >= PARALLEL_STRINGS {
        if let Ok(pool) = assay_core::runtime::job_pool(None) {
            use rayon::prelude::*;
            let steps = n.div_ceil(STRING_STEP);
            return pool.install(|| {
                (0..steps).into_par_iter().all(|k| {
                    let hi = ((k + 1) * STRING_STEP).min(n);
                    offsets_valid(&offsets[k * STRING_STEP..=hi], values)
                })
            });
        }
    }
    offsets_valid(offsets, values)
}

/// Strings a column must hold to be checked in parallel, and strings per parallel step.
const PARALLEL_STRINGS: usize = 1 << 18;
const STRING_STEP: usize = 1 << 16;

/// True when `offsets` (at least one) are non-decreasing, lie within `values`, and cut the
/// text between the first and the last at character boundaries.
fn offsets_valid<O: arrow_array::OffsetSizeTrait>(offsets: &[O], values: &[u8]) -> bool {
    let decreasing = offsets.windows(2).fold(false, |bad, w| bad | (w[1] < w[0]));
    if decreasing {
        return false;
    }
    let (Some(lo), Some(hi)) = (offsets[0].to_usize(), offsets[offsets.len() - 1].to_usize())
    else {
        return false; // a negative offset
    };
    if lo > hi || hi > values.len() {
        return false;
    }
    let Ok(text) = std::str::from_utf8(&values[lo..hi]) else {
        return false;
    };
    // Non-decreasing from `lo` to `hi`: every offset lies in [lo, hi]. A fold without early
    // exit or branches (`is_char_boundary` per offset branched twice and stopped the loop
    // from unrolling): an offset is a boundary at the end of the text or where the byte it
    // points at is not a continuation byte (0b10xx_xxxx).
    let bytes = text.as_bytes();
    let Some(last) = bytes.len().checked_sub(1) else {
        return true; // empty text: every offset is `lo`
    };
    offsets.iter().fold(true, |ok, o| {
        let i = o.as_usize() - lo;
        ok & ((i > last) | ((bytes[i.min(last)] as i8) >= -0x40))
    })
}

/// Child `i` of `raw`, None when the pointers are null or `i` is out of range.
///
/// # Safety
/// `raw` must be a live C data interface array.
unsafe fn child_at(raw: &RawArray, i: usize) -> Option<&RawArray> {
    if raw.children.is_null() || i as i64 >= raw.n_children {
        return None;
    }
    // SAFETY: children holds n_children pointers (C data interface); i is below that.
    let ptr = unsafe { *raw.children.add(i) };
    // SAFETY: a non-null child of a live array is a live array.
    unsafe { ptr.as_ref() }
}

/// The buffers (how many, whether variadic ones follow) a C data interface array of type
/// `dt` carries; None for a type the checks do not know (refused).
fn c_data_layout(dt: &DataType) -> Option<(usize, bool)> {
    match dt {
        // Unions have no validity buffer: type ids, then (dense) offsets.
        DataType::Union(_, UnionMode::Sparse) => Some((1, false)),
        DataType::Union(_, UnionMode::Dense) => Some((2, false)),
        _ => c_data_buffers(dt),
    }
}

/// Whether buffer 0 of a `dt` array is a validity bitmap (null allowed when nothing is null).
fn has_validity(dt: &DataType) -> bool {
    !matches!(
        dt,
        DataType::Null | DataType::Union(..) | DataType::RunEndEncoded(..)
    )
}

/// The children a C data interface array of type `dt` carries.
fn c_data_children(dt: &DataType) -> usize {
    use DataType::*;
    match dt {
        Struct(fields) => fields.len(),
        Union(fields, _) => fields.len(),
        List(_) | LargeList(_) | FixedSizeList(..) | Map(..) | ListView(_) | LargeListView(_) => 1,
        RunEndEncoded(..) => 2,
        _ => 0,
    }
}

/// The fields of the children of `dt` (empty for none).
fn child_fields(dt: &DataType) -> Vec<Field> {
    use DataType::*;
    match dt {
        Struct(fields) => fields.iter().map(|f| f.as_ref().clone()).collect(),
        List(f)
        | LargeList(f)
        | FixedSizeList(f, _)
        | Map(f, _)
        | ListView(f)
        | LargeListView(f) => vec![f.as_ref().clone()],
        RunEndEncoded(r, v) => vec![r.as_ref().clone(), v.as_ref().clone()],
        Union(fields, _) => fields.iter().map(|(_, f)| f.as_ref().clone()).collect(),
        _ => Vec::new(),
    }
}

/// Checks the counts and the buffer pointers of `raw` for type `dt` (not its children): the
/// importer follows some pointers unchecked (the sizes of a view array's data buffers). Every
/// buffer that holds something when the array has values must be there; the validity bitmap
/// may be left out only when nothing is null, and a buffer whose size depends on the values
/// (the bytes of strings, which may all be empty) only when it is empty, which the importer
/// checks. Returns what is wrong.
fn check_buffers(raw: &RawArray, dt: &DataType) -> Result<(), String> {
    if raw.length < 0
        || raw.offset < 0
        || raw.null_count < -1
        || raw.n_buffers < 0
        || raw.n_children < 0
    {
        return Err("its array has a negative length, offset or count".into());
    }
    let Some((want, variadic)) = c_data_layout(dt) else {
        return Err("that type cannot be read from an Arrow stream here".into());
    };
    let n = raw.n_buffers as usize;
    let buffers_ok = match dt {
        // Some producers give the null type a (null) validity buffer; it is never read.
        DataType::Null => n <= 1,
        _ => n == want || (variadic && n > want),
    };
    if !buffers_ok {
        return Err(format!("it carries {n} buffers where that type has {want}"));
    }
    if n == 0 || matches!(dt, DataType::Null) {
        return Ok(());
    }
    if raw.buffers.is_null() {
        return Err("its buffer list is null".into());
    }
    // SAFETY: a non-null buffer list of a live array holds n_buffers pointers.
    let buffer = |i: usize| unsafe { raw.buffers.add(i).read_unaligned() };
    let validity = has_validity(dt);
    if validity && raw.length > 0 && raw.null_count != 0 && buffer(0).is_null() {
        return Err(format!(
            "its validity buffer is null although it reports {} nulls",
            if raw.null_count < 0 {
                "an unknown number of".to_string()
            } else {
                raw.null_count.to_string()
            }
        ));
    }
    for i in usize::from(validity)..n {
        use DataType::*;
        let needed = match dt {
            Utf8 | LargeUtf8 | Binary | LargeBinary => i < 2 && raw.length > 0,
            FixedSizeBinary(0) => false,
            // The views, then data buffers, then (only when there are data buffers) their
            // sizes, which are read whatever the array's length.
            Utf8View | BinaryView => (i == 1 && raw.length > 0) || (i == n - 1 && n > want),
            _ => raw.length > 0,
        };
        if needed && buffer(i).is_null() {
            return Err(format!(
                "its buffer {i} is null although the array has {} values",
                raw.length
            ));
        }
    }
    Ok(())
}

/// Checks that `raw` has the buffers and children type `field` needs, recursively.
fn check_array(
    raw: &RawArray,
    field: &Field,
    index: usize,
    column: &str,
) -> Result<(), AssayError> {
    let dt = field.data_type();
    let fail = |what: String| {
        Err(mismatch(
            index,
            column,
            format!("column {column:?} is declared {dt}, but {what}; the data is not of the declared type"),
        ))
    };
    if raw.release.is_none() {
        return fail("its array was already released".into());
    }
    if let Err(what) = check_buffers(raw, dt) {
        return fail(what);
    }
    let want = c_data_children(dt);
    if raw.n_children as usize != want {
        return fail(format!(
            "it carries {} child arrays where that type has {want}",
            raw.n_children
        ));
    }
    for (i, f) in child_fields(dt).iter().enumerate() {
        // SAFETY: n_children checked above; null pointers are refused.
        let Some(child) = (unsafe { child_at(raw, i) }) else {
            return fail(format!("its child array {i} is missing"));
        };
        check_array(child, f, index, column)?;
    }
    if let DataType::Dictionary(_, values) = dt {
        // SAFETY: a non-null dictionary of a live array is a live array.
        let Some(dict) = (unsafe { raw.dictionary.as_ref() }) else {
            return fail("it has no dictionary".into());
        };
        check_array(
            dict,
            &Field::new("values", values.as_ref().clone(), true),
            index,
            column,
        )?;
    }
    Ok(())
}

/// The stream's last error message (a placeholder when it gives none).
fn last_error(stream: &mut FFI_ArrowArrayStream) -> String {
    let Some(get_last_error) = stream.get_last_error else {
        return "no error message".into();
    };
    // SAFETY: a live stream's own callback; the string lives until the next call.
    let ptr: *const c_char = unsafe { get_last_error(stream) };
    if ptr.is_null() {
        return "no error message".into();
    }
    // SAFETY: a non-null, NUL-terminated string owned by the stream.
    let msg = unsafe { CStr::from_ptr(ptr) }
        .to_string_lossy()
        .trim()
        .to_string();
    if msg.is_empty() {
        "no error message".into()
    } else {
        msg
    }
}

impl Iterator for Stream {
    type Item = Result<RecordBatch, ArrowError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_batch().map(|r| r.map_err(wrap))
    }
}
