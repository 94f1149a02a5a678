//! PyO3 bindings: the `assay._native` module. Argument conversion, error mapping, GIL release
//! and result export only; all numerics live in `assay-core`.
//!
//! Every function body runs under [`guarded`]: a panic becomes `assay.AssayError("internal
//! error, please report: ...")` instead of crossing the FFI boundary. Jobs run on a thread of
//! their own ([`run_detached`]) while the calling thread, with the GIL released, polls
//! Python's signal handlers; Ctrl-C stops every stage of the job and is raised as the
//! `KeyboardInterrupt` the handler raised. Input streams are imported batch by batch with
//! checks ([`stream::Stream`]).

mod stream;

use std::panic::{catch_unwind, AssertUnwindSafe};

use arrow_schema::SchemaRef;
use assay_core::calibration;
use assay_core::discovery::{
    discover_slices as run_discovery, Correction, DiscoverySpec, ErrorKind, Method, Paired,
};
use assay_core::engine::{
    accumulate as run_accumulate, evaluate as run_evaluate, finalize as run_finalize,
    merge as run_merge, AucMode, CompareSpec, EvalSpec, Evaluation, NanPolicy, PartialState,
};
use assay_core::input::{check_batch, column_index, f64_values, validity};
use assay_core::reliability::{BinRule, CalibSpec};
use assay_core::runtime::{self, panic_message};
use assay_core::state::codec::STATE_FORMAT_VERSION;
use assay_core::state::col::StableBytes;
use assay_core::{
    bin_edge_ranks as core_bin_edge_ranks, bin_edges as core_bin_edges,
    bin_edges_by_rank as core_bin_edges_by_rank, AssayError, BinStrategy, CiMethod, Feature,
    IntervalSpec, Metric,
};
use pyo3::exceptions::PyKeyboardInterrupt;
use pyo3::prelude::*;
use pyo3_arrow::{PyArray, PyRecordBatch};

use crate::stream::Stream;

/// A slice feature from Python's (column, bin edges or None).
fn feature((column, edges): (String, Option<Vec<f64>>)) -> Feature {
    match edges {
        Some(edges) => Feature::Bins { column, edges },
        None => Feature::Column(column),
    }
}

/// Slice specs from Python's lists of (column, bin edges or None).
fn slice_specs(slices: Vec<Vec<(String, Option<Vec<f64>>)>>) -> Vec<Vec<Feature>> {
    slices
        .into_iter()
        .map(|spec| spec.into_iter().map(feature).collect())
        .collect()
}

/// Maps a core error to the matching class of `assay.errors`.
fn to_py(py: Python<'_>, e: AssayError) -> PyErr {
    let class = match &e {
        AssayError::ColumnNotFound { .. } => "ColumnNotFoundError",
        AssayError::Schema { .. } => "SchemaError",
        AssayError::InvalidInput { .. } => "InvalidInputError",
        AssayError::InvalidArgument(_) => "InvalidArgumentError",
        AssayError::EmptyInput(_) => "EmptyInputError",
        AssayError::StateMismatch(_) => "StateMismatchError",
        AssayError::StateFormat(_) => "StateFormatError",
        AssayError::Arrow(_) | AssayError::Internal(_) => "AssayError",
        AssayError::Interrupted => return PyKeyboardInterrupt::new_err("assay job interrupted"),
    };
    let column = match &e {
        AssayError::ColumnNotFound { column, .. }
        | AssayError::Schema { column, .. }
        | AssayError::InvalidInput { column, .. } => Some(column.clone()).filter(|c| !c.is_empty()),
        _ => None,
    };
    let made = py
        .import("assay.errors")
        .and_then(|m| m.getattr(class))
        .and_then(|cls| cls.call1((e.to_string(), column)));
    match made {
        Ok(obj) => PyErr::from_value(obj),
        Err(err) => err,
    }
}

/// Runs a function body, turning a panic into `AssayError("internal error, please report")`.
fn guarded<T>(py: Python<'_>, f: impl FnOnce() -> PyResult<T>) -> PyResult<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => Err(to_py(py, AssayError::Internal(panic_message(&*payload)))),
    }
}

/// Runs `job` on a job thread with the GIL released (see `runtime::run_job`); the calling
/// thread polls Python's signal handlers meanwhile. An exception a handler raised (Ctrl-C's
/// `KeyboardInterrupt`) stops the job and is raised itself.
fn run_detached<T: Send>(
    py: Python<'_>,
    job: impl FnOnce() -> Result<T, AssayError> + Send,
) -> PyResult<T> {
    with_signal_poll(py, |poll| runtime::run_job(poll, job))
}

/// Like [`run_detached`] for a job that reads `stream`: the stream is pulled on the calling
/// thread (see `runtime::run_job_fed`) and its batches are handed to the job, so a Python
/// generator behind the stream runs on Python's main thread, where Ctrl-C can interrupt it.
fn run_streamed<T: Send>(
    py: Python<'_>,
    mut stream: Stream,
    job: impl FnOnce(SchemaRef, runtime::Fed<BatchItem>) -> Result<T, AssayError> + Send,
) -> PyResult<T> {
    let schema = stream.schema();
    with_signal_poll(py, |poll| {
        runtime::run_job_fed(poll, &mut || stream.next(), |fed| job(schema, fed))
    })
}

/// Runs `run` with the GIL released, handing it a poll of Python's signal handlers (true once
/// a handler raised); that exception, if any, is what the call raises.
fn with_signal_poll<T>(
    py: Python<'_>,
    run: impl FnOnce(&mut dyn FnMut() -> bool) -> Result<T, AssayError> + Send,
) -> PyResult<T>
where
    T: Send,
{
    let mut signal: Option<PyErr> = None;
    let out = py.detach(|| {
        let mut poll = || {
            Python::attach(|py| match py.check_signals() {
                Ok(()) => false,
                Err(e) => {
                    signal = Some(e);
                    true
                }
            })
        };
        run(&mut poll)
    });
    if let Some(e) = signal {
        return Err(e);
    }
    out.map_err(|e| to_py(py, e))
}

/// One item of a checked stream.
type BatchItem = Result<arrow_array::RecordBatch, arrow_schema::ArrowError>;

/// The checked Arrow stream of `data` (anything with `__arrow_c_stream__`).
fn import_stream(py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<Stream> {
    Stream::import(data)?.map_err(|e| to_py(py, e))
}

/// What one job returns to Python: (table, notes, rows, dropped, [(table, notes) of each
/// compared model], comparison table or None, reliability table or None, [the rows batch of
/// each model's report (reference first): the spec of each row and, with bootstrap
/// replicates, their values]).
type JobResult<'py> = (
    Bound<'py, PyAny>,
    Bound<'py, PyAny>,
    u64,
    u64,
    Vec<(Bound<'py, PyAny>, Bound<'py, PyAny>)>,
    Option<Bound<'py, PyAny>>,
    Option<Bound<'py, PyAny>>,
    Vec<Option<Bound<'py, PyAny>>>,
    Vec<(&'static str, Bound<'py, PyAny>)>,
    // The input's fingerprint: the columns read as (name, Arrow type) (None: a finalized
    // state), and the content hash (None: not asked for).
    (Option<Vec<(String, String)>>, Option<u64>),
);

/// The options of one evaluation job, as Python's `_evaluate._job` builds them (the same tuple
/// for `evaluate`, `accumulate` and `finalize`).
struct Job(
    String,                                            // label
    String,                                            // score
    Option<String>,                                    // weight
    f64,                                               // threshold
    Vec<Vec<(String, Option<Vec<f64>>)>>,              // slices
    Vec<String>,                                       // metrics
    u64,                                               // min_slice_size
    String,                                            // nan_policy
    (String, usize),                                   // auc: (mode, bins or max runs)
    Option<usize>,                                     // n_threads
    Option<(usize, f64, String, u64, Option<String>)>, // interval
    Option<(String, Vec<(String, String)>)>,           // compare
    Option<(usize, String)>,                           // calibration
    Option<f64>,                                       // reliability
    Option<Vec<Option<String>>>,                       // slice_only
    String,                                            // task
    f64,                                               // power (Tweedie deviance)
    Option<(String, String)>,                          // prediction interval (lower, upper)
    Option<u64>,                                       // max_slices (None: no limit)
    Option<MulticlassJob>,                             // multiclass options
    Option<(String, String, String, String)>,          // ranking: query, gain, ties, empty
    bool,                                              // fingerprint: hash the content
);

/// A multiclass job's options: the class names, their integer values (integer labels), each
/// model's K score columns (empty: a list column) and the normalization.
type MulticlassJob = (Vec<String>, Option<Vec<i64>>, Vec<Vec<String>>, String);

impl Job {
    /// The job from Python's 22-tuple.
    fn extract(t: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<Job> {
        use pyo3::types::PyTupleMethods;
        if t.len() != 22 {
            return Err(pyo3::exceptions::PyTypeError::new_err(format!(
                "a job is a tuple of 22 options, got {}",
                t.len()
            )));
        }
        let at = |i: usize| t.get_item(i);
        Ok(Job(
            at(0)?.extract()?,
            at(1)?.extract()?,
            at(2)?.extract()?,
            at(3)?.extract()?,
            at(4)?.extract()?,
            at(5)?.extract()?,
            at(6)?.extract()?,
            at(7)?.extract()?,
            at(8)?.extract()?,
            at(9)?.extract()?,
            at(10)?.extract()?,
            at(11)?.extract()?,
            at(12)?.extract()?,
            at(13)?.extract()?,
            at(14)?.extract()?,
            at(15)?.extract()?,
            at(16)?.extract()?,
            at(17)?.extract()?,
            at(18)?.extract()?,
            at(19)?.extract()?,
            at(20)?.extract()?,
            at(21)?.extract()?,
        ))
    }

    /// The engine's spec of this job (`rows_hint`: the rows of an in-memory input).
    fn spec(self, rows_hint: Option<u64>) -> Result<EvalSpec, AssayError> {
        let Job(
            label,
            score,
            weight,
            threshold,
            slices,
            metrics,
            min_slice_size,
            nan_policy,
            (auc_mode, auc_param),
            n_threads,
            interval,
            compare,
            calibration,
            reliability,
            slice_only,
            task,
            power,
            bounds,
            max_slices,
            multiclass,
            ranking,
            fingerprint,
        ) = self;
        let family = assay_core::metrics::Family::parse(&task)?;
        let calibration = match calibration {
            Some((bins, rule)) => CalibSpec {
                bins,
                rule: BinRule::parse(&rule)?,
            },
            None => CalibSpec::default(),
        };
        let interval = interval
            .map(
                |(replicates, level, method, seed, row_id)| -> Result<_, AssayError> {
                    Ok(IntervalSpec {
                        replicates,
                        level,
                        method: CiMethod::parse(&method)?,
                        seed,
                        row_id,
                    })
                },
            )
            .transpose()?;
        let metrics = metrics
            .iter()
            .map(|m| Metric::parse_in(m, family))
            .collect::<Result<Vec<_>, _>>()?;
        let nan_policy = match nan_policy.as_str() {
            "raise" => NanPolicy::Raise,
            "drop" => NanPolicy::Drop,
            other => {
                return Err(AssayError::InvalidArgument(format!(
                    "nan_policy must be \"raise\" or \"drop\", got {other:?}"
                )))
            }
        };
        let auc = match auc_mode.as_str() {
            "exact" => AucMode::Exact,
            "binned" => AucMode::Binned(auc_param),
            "sketch" => AucMode::Sketch(auc_param),
            other => {
                return Err(AssayError::InvalidArgument(format!(
                    "auc must be \"exact\", \"binned\" or \"sketch\", got {other:?}"
                )))
            }
        };
        // The family's options: options of another family are refused by the core's
        // validation, with the message of the family they belong to.
        let multiclass = multiclass
            .map(
                |(names, ints, score_columns, normalize)| -> Result<_, AssayError> {
                    Ok(assay_core::multiclass::MulticlassSpec {
                        classes: assay_core::multiclass::Classes { names, ints },
                        score_columns,
                        normalize: assay_core::multiclass::Normalize::parse(&normalize)?,
                    })
                },
            )
            .transpose()?;
        let ranking = ranking
            .map(|(query, gain, ties, empty)| {
                assay_core::ranking::RankingSpec::parse(query, &gain, &ties, &empty)
            })
            .transpose()?;
        use assay_core::metrics::Family;
        use assay_core::spec::TaskOptions;
        let task = match (multiclass, ranking) {
            (Some(mc), _) => TaskOptions::Multiclass(mc),
            (None, Some(rk)) => TaskOptions::Ranking(rk),
            (None, None) if family == Family::Regression || bounds.is_some() || power != 0.0 => {
                TaskOptions::Regression(assay_core::regression::RegressionOptions { power, bounds })
            }
            (None, None) => TaskOptions::None,
        };
        Ok(EvalSpec {
            family,
            label,
            score,
            weight,
            task,
            threshold,
            slices: slice_specs(slices),
            metrics,
            min_slice_size,
            nan_policy,
            auc,
            n_threads,
            interval,
            compare: compare.map(|(reference, others)| CompareSpec { reference, others }),
            calibration,
            reliability,
            slice_only: slice_only.unwrap_or_default(),
            rows_hint,
            max_slices,
            fingerprint: None,
        }
        .with_fingerprint(fingerprint))
    }
}

trait WithFingerprint {
    fn with_fingerprint(self, on: bool) -> Self;
}

impl WithFingerprint for EvalSpec {
    /// The spec hashing the content of every column it reads (sorted by name), when `on`.
    fn with_fingerprint(mut self, on: bool) -> Self {
        if on {
            let mut cols: Vec<String> = read_columns(&self).into_iter().map(String::from).collect();
            cols.sort();
            cols.dedup();
            self.fingerprint = Some(cols);
        }
        self
    }
}

/// The columns a job reads (their values are validated in full on import).
fn read_columns(spec: &EvalSpec) -> Vec<&str> {
    let mut read: Vec<&str> = vec![&spec.label, &spec.score];
    read.extend(spec.weight.as_deref());
    if let Some(c) = &spec.compare {
        read.extend(c.others.iter().map(|(_, col)| col.as_str()));
    }
    read.extend(spec.interval.as_ref().and_then(|iv| iv.row_id.as_deref()));
    if let Some((lo, hi)) = spec.task.regression().and_then(|o| o.bounds.as_ref()) {
        read.extend([lo.as_str(), hi.as_str()]);
    }
    if let Some(mc) = spec.task.multiclass() {
        read.extend(mc.score_columns.iter().flatten().map(String::as_str));
    }
    if let Some(rk) = spec.task.ranking() {
        read.push(rk.query.as_str());
    }
    read.extend(spec.slices.iter().flatten().map(|f| f.column()));
    read
}

/// An evaluation's tables as pyarrow objects.
fn export<'py>(
    py: Python<'py>,
    mut ev: Evaluation,
    schema: Option<Vec<(String, String)>>,
) -> PyResult<JobResult<'py>> {
    let replicates = std::iter::once(ev.report.rows.take())
        .chain(ev.others.iter_mut().map(|r| r.rows.take()))
        .map(|r| {
            r.map(|b| PyRecordBatch::new(b).into_pyarrow(py))
                .transpose()
        })
        .collect::<PyResult<Vec<_>>>()?;
    let table = PyRecordBatch::new(ev.report.table).into_pyarrow(py)?;
    let notes = PyRecordBatch::new(ev.report.notes).into_pyarrow(py)?;
    let others = ev
        .others
        .into_iter()
        .map(|r| {
            Ok((
                PyRecordBatch::new(r.table).into_pyarrow(py)?,
                PyRecordBatch::new(r.notes).into_pyarrow(py)?,
            ))
        })
        .collect::<PyResult<Vec<_>>>()?;
    let comparison = ev
        .comparison
        .map(|c| PyRecordBatch::new(c).into_pyarrow(py))
        .transpose()?;
    let reliability = ev
        .reliability
        .map(|c| PyRecordBatch::new(c).into_pyarrow(py))
        .transpose()?;
    let family_tables = ev
        .family_tables
        .into_iter()
        .map(|(name, b)| Ok((name, PyRecordBatch::new(b).into_pyarrow(py)?)))
        .collect::<PyResult<Vec<_>>>()?;
    Ok((
        table,
        notes,
        ev.rows,
        ev.dropped,
        others,
        comparison,
        reliability,
        replicates,
        family_tables,
        (schema, ev.content_hash),
    ))
}

/// The (name, Arrow type) of each column of `schema`.
fn schema_pairs(schema: &arrow_schema::Schema) -> Vec<(String, String)> {
    schema
        .fields()
        .iter()
        .map(|f| (f.name().clone(), f.data_type().to_string()))
        .collect()
}

/// Runs one evaluation (or comparison) job over an Arrow stream.
#[pyfunction]
#[pyo3(signature = (data, job, rows_hint=None))]
fn evaluate<'py>(
    py: Python<'py>,
    data: Bound<'py, PyAny>,
    job: Bound<'py, pyo3::types::PyTuple>,
    rows_hint: Option<u64>,
) -> PyResult<JobResult<'py>> {
    guarded(py, || {
        let spec = Job::extract(&job)?
            .spec(rows_hint)
            .map_err(|e| to_py(py, e))?;
        let reader = import_stream(py, &data)?.reading(read_columns(&spec));
        let schema = schema_pairs(&reader.schema());
        let ev = run_streamed(py, reader, move |schema, reader| {
            run_evaluate(schema, reader, &spec, &runtime::interrupted)
        })?;
        export(py, ev, Some(schema))
    })
}

/// A partial state (see `assay.PartialState`, which wraps it).
#[pyclass(name = "State", module = "assay._native", frozen)]
struct State {
    inner: PartialState,
}

#[pymethods]
impl State {
    /// The state in its versioned, checksummed byte format.
    fn to_bytes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, pyo3::types::PyBytes>> {
        guarded(py, || {
            // Written straight into the bytes object's memory (no second copy).
            let state = &self.inner;
            let len = py.detach(|| state.encoded_len());
            pyo3::types::PyBytes::new_with(py, len, |buf| {
                py.detach(|| state.write_bytes(buf));
                Ok(())
            })
        })
    }

    /// The spec text the state was accumulated with.
    #[getter]
    fn spec_json(&self) -> &str {
        &self.inner.spec_json
    }

    /// Rows read (dropped ones included).
    #[getter]
    fn rows(&self) -> u64 {
        self.inner.rows
    }

    /// Rows dropped by `nan_policy="drop"`.
    #[getter]
    fn dropped(&self) -> u64 {
        self.inner.dropped
    }

    /// Global row positions covered, as sorted, disjoint `[start, end)` pairs.
    #[getter]
    fn row_ranges(&self) -> Vec<(u64, u64)> {
        self.inner.ranges.clone()
    }

    /// Bytes of `to_bytes()`.
    #[getter]
    fn nbytes(&self, py: Python<'_>) -> PyResult<usize> {
        guarded(py, || Ok(py.detach(|| self.inner.encoded_len())))
    }

    /// The format version of `to_bytes()`.
    #[getter]
    fn format_version(&self) -> u32 {
        STATE_FORMAT_VERSION
    }
}

/// Reads `data` once into the partial state of `job` (`row_offset`: the global position of
/// its first row).
#[pyfunction]
#[pyo3(signature = (data, job, spec_json, row_offset=0, rows_hint=None))]
fn accumulate<'py>(
    py: Python<'py>,
    data: Bound<'py, PyAny>,
    job: Bound<'py, pyo3::types::PyTuple>,
    spec_json: String,
    row_offset: u64,
    rows_hint: Option<u64>,
) -> PyResult<State> {
    guarded(py, || {
        let spec = Job::extract(&job)?
            .spec(rows_hint)
            .map_err(|e| to_py(py, e))?;
        let reader = import_stream(py, &data)?.reading(read_columns(&spec));
        let mut state = run_streamed(py, reader, move |schema, reader| {
            run_accumulate(schema, reader, &spec, row_offset, &runtime::interrupted)
        })?;
        state.spec_json = spec_json;
        Ok(State { inner: state })
    })
}

/// The report of a (merged) state; `job` is the job of the state's spec.
#[pyfunction]
fn finalize<'py>(
    py: Python<'py>,
    state: Bound<'py, State>,
    job: Bound<'py, pyo3::types::PyTuple>,
) -> PyResult<JobResult<'py>> {
    guarded(py, || {
        let spec = Job::extract(&job)?.spec(None).map_err(|e| to_py(py, e))?;
        let st = state.get();
        let ev = run_detached(py, || run_finalize(&st.inner, &spec, &runtime::interrupted))?;
        export(py, ev, None)
    })
}

/// The state of all the rows of `states`, merged by slice value in a canonical order.
#[pyfunction]
fn merge_states<'py>(py: Python<'py>, states: Vec<Bound<'py, State>>) -> PyResult<State> {
    guarded(py, || {
        let refs: Vec<&PartialState> = states.iter().map(|s| &s.get().inner).collect();
        let merged = run_detached(py, || run_merge(&refs))?;
        Ok(State { inner: merged })
    })
}

/// Little-endian `N`-byte values from `bytes` (a numpy array's `tobytes()`).
fn le_values<const N: usize, T>(
    bytes: &[u8],
    what: &str,
    read: impl Fn([u8; N]) -> T,
) -> PyResult<Vec<T>> {
    if bytes.len() % N != 0 {
        return Err(pyo3::exceptions::PyValueError::new_err(format!(
            "{what}: not a whole number of {N}-byte values"
        )));
    }
    Ok(bytes
        .chunks_exact(N)
        .map(|c| read(c.try_into().expect("N bytes")))
        .collect())
}

fn f64s(bytes: &[u8], what: &str) -> PyResult<Vec<f64>> {
    le_values(bytes, what, f64::from_le_bytes)
}

fn u64s(bytes: &[u8], what: &str) -> PyResult<Vec<u64>> {
    le_values(bytes, what, u64::from_le_bytes)
}

fn u32s(bytes: &[u8], what: &str) -> PyResult<Vec<u32>> {
    le_values(bytes, what, u32::from_le_bytes)
}

/// One (model, slice spec)'s device blocks by name: `key_rows` (u32), `n` (u64), and the f64
/// blocks `counts`, `moments`, `hist`, `reps`, `calib`, `calib_reps`, `fam`, `fam_reps`,
/// `grid`, `logit`, `prob_hist` (absent: empty), each as little-endian bytes.
type BlockBytes = std::collections::HashMap<String, Vec<u8>>;
/// One model's kept rows: scores (f64), labels (u8), weights (f64), row keys (u64), key rows
/// per slice spec (u32), and whether the weights are multiplicities.
type RowBytes = (Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>, Vec<Vec<u8>>, bool);

/// Why the torch path cannot run a job (None when it can) and its block layout.
type DeviceLayout = (Option<String>, Vec<(String, f64)>);

/// What the torch path cannot compute for `job` (None when it can), and the layout of the
/// blocks it fills (see `engine::blocks::device_layout`).
#[pyfunction]
fn device_layout(py: Python<'_>, job: Bound<'_, pyo3::types::PyTuple>) -> PyResult<DeviceLayout> {
    guarded(py, || {
        let spec = Job::extract(&job)?.spec(None).map_err(|e| to_py(py, e))?;
        let layout = assay_core::engine::blocks::device_layout(&spec)
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        Ok((assay_core::engine::blocks::unsupported(&spec), layout))
    })
}

/// A partial state from blocks filled on a device (`assay.torch`); `keys` is an Arrow stream
/// of one batch whose rows hold the occupied slices' values.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
#[pyo3(signature = (keys, job, spec_json, blocks, rank, rows, dropped, max_weight, row_offset))]
fn state_from_blocks<'py>(
    py: Python<'py>,
    keys: Bound<'py, PyAny>,
    job: Bound<'py, pyo3::types::PyTuple>,
    spec_json: String,
    blocks: Vec<Vec<BlockBytes>>,
    rank: Vec<RowBytes>,
    rows: u64,
    dropped: u64,
    max_weight: Option<f64>,
    row_offset: u64,
) -> PyResult<State> {
    use assay_core::engine::blocks::{
        state_from_blocks as build, ExternalRows, ExternalState, SpecBlocks,
    };
    guarded(py, || {
        let spec = Job::extract(&job)?.spec(None).map_err(|e| to_py(py, e))?;
        let blocks = blocks
            .into_iter()
            .map(|specs| {
                specs
                    .into_iter()
                    .map(|mut named| {
                        let mut take = |k: &str| named.remove(k).unwrap_or_default();
                        let f = |bytes: Vec<u8>, k: &str| f64s(&bytes, k);
                        let blocks = SpecBlocks {
                            key_rows: u32s(&take("key_rows"), "key_rows")?,
                            n: u64s(&take("n"), "n")?,
                            counts: f(take("counts"), "counts")?,
                            moments: f(take("moments"), "moments")?,
                            hist: f(take("hist"), "hist")?,
                            reps: f(take("reps"), "reps")?,
                            calib: f(take("calib"), "calib")?,
                            calib_reps: f(take("calib_reps"), "calib_reps")?,
                            fam: f(take("fam"), "fam")?,
                            fam_reps: f(take("fam_reps"), "fam_reps")?,
                            grid: f(take("grid"), "grid")?,
                            logit: f(take("logit"), "logit")?,
                            prob_hist: f(take("prob_hist"), "prob_hist")?,
                        };
                        if let Some(k) = named.keys().next() {
                            return Err(pyo3::exceptions::PyValueError::new_err(format!(
                                "unknown device block {k:?}"
                            )));
                        }
                        Ok(blocks)
                    })
                    .collect::<PyResult<Vec<_>>>()
            })
            .collect::<PyResult<Vec<_>>>()?;
        let rank = rank
            .into_iter()
            .map(|(scores, labels, weights, row_keys, key_rows, counted)| {
                Ok(ExternalRows {
                    scores: f64s(&scores, "scores")?,
                    labels,
                    weights: f64s(&weights, "weights")?,
                    row_keys: u64s(&row_keys, "row keys")?,
                    key_rows: key_rows
                        .iter()
                        .map(|k| u32s(k, "key rows"))
                        .collect::<PyResult<_>>()?,
                    counted,
                })
            })
            .collect::<PyResult<Vec<_>>>()?;
        let ext = ExternalState {
            blocks,
            rank,
            rows,
            dropped,
            max_weight,
            row_offset,
        };
        let stream = import_stream(py, &keys)?;
        let schema = stream.schema();
        let mut batches = Vec::new();
        for b in stream {
            batches.push(b.map_err(|e| to_py(py, AssayError::from(e)))?);
        }
        let batch = match batches.len() {
            0 => arrow_array::RecordBatch::new_empty(schema.clone()),
            1 => batches.pop().expect("one batch"),
            _ => {
                return Err(pyo3::exceptions::PyValueError::new_err(
                    "the key table must be one record batch",
                ))
            }
        };
        let mut state = run_detached(py, || {
            build(schema, &batch, &spec, ext, &runtime::interrupted)
        })?;
        state.spec_json = spec_json;
        Ok(State { inner: state })
    })
}

/// The resampling keys, Poisson(1) draws (row-major) and jackknife groups of `row_ids` (u64
/// bytes), as little-endian bytes: the reference for the torch path's draws.
#[pyfunction]
fn replicate_draws(
    py: Python<'_>,
    seed: u64,
    replicates: usize,
    row_ids: &[u8],
) -> PyResult<(Vec<u8>, Vec<u8>, Vec<u8>)> {
    guarded(py, || {
        let ids = u64s(row_ids, "row ids")?;
        let (keys, draws, groups) = assay_core::bootstrap::draws_of(seed, replicates, &ids);
        Ok((
            keys.iter().flat_map(|k| k.to_le_bytes()).collect(),
            draws.iter().flat_map(|k| k.to_le_bytes()).collect(),
            groups.iter().flat_map(|k| k.to_le_bytes()).collect(),
        ))
    })
}

/// A Python `bytes` object whose memory a state reads in place (`bytes` never change, and
/// the object is kept alive by the reference held here).
struct HeldBytes {
    _obj: Py<pyo3::types::PyBytes>,
    ptr: *const u8,
    len: usize,
}

// SAFETY: the memory of an immutable `bytes` object, alive while `_obj` holds a reference
// (a reference dropped without the interpreter attached is released later by PyO3's pool).
unsafe impl Send for HeldBytes {}
// SAFETY: as above; the bytes are only read.
unsafe impl Sync for HeldBytes {}

// SAFETY: `ptr`/`len` are the object's own buffer, which neither moves nor changes while the
// object lives, and `_obj` keeps it alive as long as `self`.
unsafe impl StableBytes for HeldBytes {
    fn stable_bytes(&self) -> &[u8] {
        // SAFETY: see the impl's comment.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

/// A state from its bytes; `StateFormatError` when they are not a valid state. A `bytes`
/// object is read in place: the state's kept rows borrow its memory (and keep it alive)
/// instead of copying it; other buffers are copied.
#[pyfunction]
fn state_from_bytes(py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<State> {
    guarded(py, || {
        let inner = if let Ok(b) = data.cast::<pyo3::types::PyBytes>() {
            let view = b.as_bytes();
            let held = std::sync::Arc::new(HeldBytes {
                ptr: view.as_ptr(),
                len: view.len(),
                _obj: b.clone().unbind(),
            });
            py.detach(|| PartialState::from_shared_bytes(held))
        } else {
            let data: &[u8] = data.extract()?;
            py.detach(|| PartialState::from_bytes(data))
        }
        .map_err(|e| to_py(py, e))?;
        Ok(State { inner })
    })
}

/// Edges of `n` bins over column `column` of an Arrow stream (`strategy`: "quantile"|"uniform").
#[pyfunction]
fn bin_edges(
    py: Python<'_>,
    data: Bound<'_, PyAny>,
    column: String,
    n: usize,
    strategy: &str,
) -> PyResult<Vec<f64>> {
    guarded(py, || {
        let strategy = bin_strategy(py, strategy)?;
        let reader = import_stream(py, &data)?.reading([column.as_str()]);
        run_streamed(
            py,
            reader,
            move |schema, reader| -> Result<Vec<f64>, AssayError> {
                let idx = column_index(&schema, &column)?;
                assay_core::input::check_numeric_type(
                    &column,
                    "a binned column",
                    schema.field(idx).data_type(),
                )?;
                let mut values = Vec::new();
                for (i, batch) in reader.enumerate() {
                    runtime::check()?;
                    let batch = batch?;
                    check_batch(&schema, &batch, i)?;
                    let array = batch.column(idx);
                    let mut buf = Vec::new();
                    let v = f64_values(array, 0, array.len(), &mut buf);
                    let nulls = validity(array);
                    values.extend(v.iter().enumerate().map(|(i, x)| {
                        if nulls.as_ref().is_some_and(|n| n.is_null(i)) {
                            f64::NAN
                        } else {
                            *x
                        }
                    }));
                }
                core_bin_edges(&values, n, strategy, &column)
            },
        )
    })
}

fn bin_strategy(py: Python<'_>, strategy: &str) -> PyResult<BinStrategy> {
    match strategy {
        "quantile" => Ok(BinStrategy::Quantile),
        "uniform" => Ok(BinStrategy::Uniform),
        other => Err(to_py(
            py,
            AssayError::InvalidArgument(format!(
                "bins strategy must be \"quantile\" or \"uniform\", got {other:?}"
            )),
        )),
    }
}

/// The 0-based ranks (in ascending order of a column's `count` non-NaN values) of the order
/// statistics that `n` bins of `strategy` read; see `bin_edges_by_rank`.
#[pyfunction]
fn bin_edge_ranks(py: Python<'_>, count: usize, n: usize, strategy: &str) -> PyResult<Vec<usize>> {
    guarded(py, || {
        Ok(core_bin_edge_ranks(count, n, bin_strategy(py, strategy)?))
    })
}

/// The edges `bin_edges` would place over a column of `count` non-NaN values, from its
/// order statistics `stats` (rank -> value, at least the ranks of `bin_edge_ranks`);
/// `infinite`: the column holds an infinite value. Edges computed by a distributed engine
/// this way equal those of one process to the bit.
#[pyfunction]
fn bin_edges_by_rank(
    py: Python<'_>,
    column: String,
    n: usize,
    strategy: &str,
    count: usize,
    infinite: bool,
    stats: std::collections::HashMap<usize, f64>,
) -> PyResult<Vec<f64>> {
    guarded(py, || {
        let strategy = bin_strategy(py, strategy)?;
        let stat = |i: usize| {
            stats.get(&i).copied().ok_or_else(|| {
                AssayError::InvalidArgument(format!(
                    "bins for column {column:?}: the order statistic of rank {i} is missing"
                ))
            })
        };
        core_bin_edges_by_rank(count, infinite, n, strategy, &column, stat)
            .map_err(|e| to_py(py, e))
    })
}

/// The standard normal CDF of each value (the engine's, through `erfc`).
#[pyfunction]
fn norm_cdf(py: Python<'_>, values: Vec<f64>) -> PyResult<Vec<f64>> {
    guarded(py, || {
        Ok(values
            .into_iter()
            .map(assay_core::bootstrap::norm_cdf)
            .collect())
    })
}

/// The names of the metrics computed when none are given, in report order.
#[pyfunction]
fn default_metrics(py: Python<'_>) -> PyResult<Vec<&'static str>> {
    guarded(py, || Ok(assay_core::metrics::default_metrics()))
}

/// One registry entry as Python sees it: (name, family, kind, higher_is_better, default,
/// definition).
type RegistryRow = (
    &'static str,
    &'static str,
    &'static str,
    Option<bool>,
    bool,
    &'static str,
);

/// The metric registry (every metric, in report order, then the F-beta pattern `f<beta>`):
/// the one place where names, families, kinds, directions and definitions live.
#[pyfunction]
fn metric_registry(py: Python<'_>) -> PyResult<Vec<RegistryRow>> {
    guarded(py, || {
        Ok(assay_core::metrics::REGISTRY
            .iter()
            .chain([
                &assay_core::metrics::FBETA,
                &assay_core::metrics::PINBALL,
                &assay_core::metrics::TOPK,
            ])
            .chain(assay_core::metrics::RANKING_PATTERNS)
            .map(|i| {
                (
                    i.name,
                    i.family.name(),
                    i.kind.name(),
                    i.higher_is_better,
                    i.default,
                    i.definition,
                )
            })
            .collect())
    })
}

/// The most worker threads a job may use (`n_threads`): 4 x the available cores.
#[pyfunction]
fn max_threads(py: Python<'_>) -> PyResult<usize> {
    guarded(py, || Ok(runtime::max_threads()))
}

/// Panics inside a job thread's rayon worker (`job=True`) or in the function body itself:
/// proves that a panic surfaces as `AssayError("internal error, please report: ...")`.
#[pyfunction]
#[pyo3(signature = (job=false))]
fn _panic_for_tests(py: Python<'_>, job: bool) -> PyResult<()> {
    guarded(py, || {
        if !job {
            panic!("a deliberate panic for the tests");
        }
        run_detached(py, runtime::panic_in_a_worker)
    })
}

/// What `discover_slices` returns: (table, rows, dropped, mean error, candidates scored).
type DiscoveryResult<'py> = (
    Bound<'py, PyAny>,
    u64,
    u64,
    f64,
    u64,
    // The columns read as (name, Arrow type), and the content hash (None: not asked for).
    (Vec<(String, String)>, Option<u64>),
);

/// Searches for the slices where the model's error is much higher than average; with
/// `paired=(reference column, ci, correction)`, where the model's error is higher than the
/// reference model's (`discover_regressions`).
#[pyfunction]
#[pyo3(signature = (data, features, error, threshold, k, max_level, min_support, alpha, method, beam_width, max_values, dedupe, fdr, nan_policy, n_threads, paired=None, multiclass=None, fingerprint=false))]
#[allow(clippy::too_many_arguments)]
fn discover_slices<'py>(
    py: Python<'py>,
    data: Bound<'py, PyAny>,
    features: Vec<(String, Option<Vec<f64>>)>,
    error: (String, Option<String>, Option<String>, Option<String>),
    threshold: f64,
    k: usize,
    max_level: usize,
    min_support: u64,
    alpha: f64,
    method: &str,
    beam_width: usize,
    max_values: usize,
    dedupe: bool,
    fdr: f64,
    nan_policy: &str,
    n_threads: Option<usize>,
    paired: Option<(String, f64, String)>,
    multiclass: Option<(Vec<String>, Option<Vec<i64>>, String)>,
    fingerprint: bool,
) -> PyResult<DiscoveryResult<'py>> {
    guarded(py, || {
        let bad = |m: String| to_py(py, AssayError::InvalidArgument(m));
        let (kind, label, score, column) = error;
        let error = match (kind.as_str(), multiclass) {
            (kind @ ("log_loss" | "zero_one"), Some((names, ints, normalize))) => {
                ErrorKind::Multiclass {
                    zero_one: kind == "zero_one",
                    classes: assay_core::multiclass::Classes { names, ints },
                    normalize: assay_core::multiclass::Normalize::parse(&normalize)
                        .map_err(|e| to_py(py, e))?,
                }
            }
            (_, Some(_)) => {
                return Err(bad(format!(
                    "task=\"multiclass\" ranks slices by error \"log_loss\" or \"zero_one\", \
                     got {kind:?}"
                )))
            }
            (kind, None) => match kind {
                "log_loss" => ErrorKind::LogLoss,
                "zero_one" => ErrorKind::ZeroOne(threshold),
                "squared" => ErrorKind::Squared,
                "regression_absolute" => ErrorKind::Residual { squared: false },
                "regression_squared" => ErrorKind::Residual { squared: true },
                "column" => ErrorKind::Column(
                    column.ok_or_else(|| bad("an error column is needed".into()))?,
                ),
                other => return Err(bad(format!("unknown error kind {other:?}"))),
            },
        };
        let method = match method {
            "sliceline" => Method::SliceLine,
            "beam" => Method::Beam(beam_width),
            other => {
                return Err(bad(format!(
                    "method must be \"sliceline\" or \"beam\", got {other:?}"
                )))
            }
        };
        let nan_policy = match nan_policy {
            "raise" => NanPolicy::Raise,
            "drop" => NanPolicy::Drop,
            other => {
                return Err(bad(format!(
                    "nan_policy must be \"raise\" or \"drop\", got {other:?}"
                )))
            }
        };
        let paired = match paired {
            Some((reference, level, correction)) => Some(Paired {
                reference,
                level,
                correction: match correction.as_str() {
                    "holm" => Correction::Holm,
                    "bh" => Correction::Bh,
                    "none" => Correction::None,
                    other => {
                        return Err(bad(format!(
                            "correction must be \"holm\", \"bh\" or \"none\", got {other:?}"
                        )))
                    }
                },
            }),
            None => None,
        };
        let spec = DiscoverySpec {
            features: features.into_iter().map(feature).collect(),
            error,
            label,
            score,
            k,
            max_level,
            min_support,
            alpha,
            method,
            max_values,
            dedupe,
            fdr,
            nan_policy,
            n_threads,
            paired,
            fingerprint: None,
        };
        let mut read: Vec<&str> = spec.features.iter().map(|f| f.column()).collect();
        read.extend(spec.label.as_deref());
        read.extend(spec.score.as_deref());
        read.extend(spec.paired.as_ref().map(|p| p.reference.as_str()));
        if let ErrorKind::Column(c) = &spec.error {
            read.push(c);
        }
        // (Every column read, sorted by name: as `evaluate` hashes the columns it reads.)
        let hashed = fingerprint.then(|| {
            let mut cols: Vec<String> = read.iter().map(|c| c.to_string()).collect();
            cols.sort();
            cols.dedup();
            cols
        });
        let reader = import_stream(py, &data)?.reading(read);
        let schema = schema_pairs(&reader.schema());
        let mut spec = spec;
        spec.fingerprint = hashed;
        let d = run_streamed(py, reader, move |schema, reader| {
            run_discovery(schema, reader, &spec, &runtime::interrupted)
        })?;
        let table = PyRecordBatch::new(d.table).into_pyarrow(py)?;
        Ok((
            table,
            d.rows,
            d.dropped,
            d.error_mean,
            d.n_scored,
            (schema, d.content_hash),
        ))
    })
}

/// One spec's slice ids (a one-column record batch) and its present slices (id, label).
type SliceRows<'py> = (Bound<'py, PyAny>, Vec<(u32, String)>);

/// Each slice spec's slice id of every row, and the slices present in report order with
/// their labels: the engine's own slicing, for Python-side methods that group rows.
#[pyfunction]
fn slice_rows<'py>(
    py: Python<'py>,
    data: Bound<'py, PyAny>,
    slices: Vec<Vec<(String, Option<Vec<f64>>)>>,
) -> PyResult<Vec<SliceRows<'py>>> {
    guarded(py, || {
        let specs = slice_specs(slices);
        let reader = import_stream(py, &data)?.reading(specs.iter().flatten().map(|f| f.column()));
        let (ids, described) =
            run_streamed(py, reader, move |schema, reader| -> Result<_, AssayError> {
                let mut slicer = assay_core::slicing::Slicer::new(&schema, &specs)?;
                // A pool per call, as every job: the global pool does not survive fork().
                let pool = assay_core::engine::job_pool(None)?;
                let mut ids: Vec<Vec<u32>> = vec![Vec::new(); specs.len()];
                for (i, batch) in reader.enumerate() {
                    runtime::check()?;
                    let batch = batch?;
                    check_batch(&schema, &batch, i)?;
                    for (all, part) in ids
                        .iter_mut()
                        .zip(pool.install(|| slicer.encode_batch(&batch))?)
                    {
                        all.extend_from_slice(&part);
                    }
                }
                let described: Vec<Vec<(u32, String)>> = (0..specs.len())
                    .map(|s| {
                        let mut seen = vec![false; slicer.n_ids(s)];
                        for id in &ids[s] {
                            if let Some(x) = seen.get_mut(*id as usize) {
                                *x = true;
                            }
                        }
                        slicer
                            .ordered_ids(s, |id| seen.get(id as usize).copied().unwrap_or(false))
                            .into_iter()
                            .map(|id| (id, slicer.describe(s, id).label))
                            .collect()
                    })
                    .collect();
                runtime::check()?;
                Ok((ids, described))
            })?;
        ids.into_iter()
            .zip(described)
            .map(|(v, d)| {
                let arr: arrow_array::ArrayRef =
                    std::sync::Arc::new(arrow_array::UInt32Array::from(v));
                let batch = arrow_array::RecordBatch::try_from_iter([("id", arr)])
                    .map_err(|e| to_py(py, AssayError::from(e)))?;
                Ok((PyRecordBatch::new(batch).into_pyarrow(py)?, d))
            })
            .collect()
    })
}

/// A confusion-count metric of each (tp, fp, tn, fn), None where undefined: the engine's
/// definitions, for Python-side methods that derive counts (expected counts of baselines,
/// counts at thresholds).
#[pyfunction]
fn metric_from_counts(
    py: Python<'_>,
    name: &str,
    tp: Vec<f64>,
    fp: Vec<f64>,
    tn: Vec<f64>,
    fn_: Vec<f64>,
) -> PyResult<Vec<Option<f64>>> {
    guarded(py, || {
        let metric = Metric::parse(name).map_err(|e| to_py(py, e))?;
        if metric.is_rank()
            || metric.is_calibration()
            || !metric.needs_counts_only()
            || metric.family() != assay_core::metrics::Family::Binary
        {
            return Err(to_py(
                py,
                AssayError::InvalidArgument(format!(
                    "metric {name:?} is not a function of the confusion counts"
                )),
            ));
        }
        let n = tp.len();
        if fp.len() != n || tn.len() != n || fn_.len() != n {
            return Err(to_py(
                py,
                AssayError::InvalidArgument("tp, fp, tn and fn must have one length".into()),
            ));
        }
        Ok((0..n)
            .map(|i| {
                let c = assay_core::state::BinaryCounts {
                    n: 0,
                    w: tp[i] + fp[i] + tn[i] + fn_[i],
                    tp: tp[i],
                    fp: fp[i],
                    tn: tn[i],
                    fn_: fn_[i],
                    log_loss: 0.0,
                    brier: 0.0,
                };
                metric.from_counts(&c).ok()
            })
            .collect())
    })
}

/// The slice labels of the bins of `edges` (strictly increasing): the bins in edge order,
/// then the ranges below the first edge and above the last.
#[pyfunction]
fn bin_labels(py: Python<'_>, edges: Vec<f64>) -> PyResult<Vec<String>> {
    guarded(py, || {
        if edges.len() < 2 {
            return Err(to_py(
                py,
                AssayError::InvalidArgument("bin edges need at least two numbers".into()),
            ));
        }
        Ok(assay_core::slicing::bin_labels(&edges))
    })
}

/// A metric's `(name, value, note)`: the note says why the value is undefined (None).
type MetricValue = (&'static str, Option<f64>, Option<&'static str>);

/// The regression family's metrics of rows `(y, p, w)` cut at `cuts` (row positions) into
/// states merged left to right: `{name: value or the note of an undefined value}`. For tests
/// of the state and its formulas alone, against references. Each metric comes as
/// `(name, value, note)`: a value, or None and the note of why it is undefined.
#[pyfunction]
#[pyo3(signature = (y, p, w=None, cuts=Vec::new()))]
fn regression_metrics(
    py: Python<'_>,
    y: Vec<f64>,
    p: Vec<f64>,
    w: Option<Vec<f64>>,
    cuts: Vec<usize>,
) -> PyResult<Vec<MetricValue>> {
    guarded(py, || {
        use assay_core::regression::RegressionState;
        let n = y.len();
        if p.len() != n || w.as_ref().is_some_and(|w| w.len() != n) {
            return Err(to_py(
                py,
                AssayError::InvalidArgument("y, p and w must have one length".into()),
            ));
        }
        let mut bounds: Vec<usize> = cuts.into_iter().filter(|c| *c < n).collect();
        bounds.sort_unstable();
        bounds.insert(0, 0);
        bounds.push(n);
        let mut st = RegressionState::default();
        for b in bounds.windows(2) {
            let ws = w.as_ref().map(|w| &w[b[0]..b[1]]);
            st.merge(&RegressionState::from_rows(
                &y[b[0]..b[1]],
                &p[b[0]..b[1]],
                ws,
            ));
        }
        let all = [
            ("mae", st.mae()),
            ("mse", st.mse()),
            ("rmse", st.rmse()),
            ("r2", st.r2()),
            ("explained_variance", st.explained_variance()),
            ("mean_error", st.mean_error()),
            ("max_error", st.max_error()),
            ("mape", st.mape()),
            ("smape", st.smape()),
            ("wmape", st.wmape()),
            ("msle", st.msle()),
            ("rmsle", st.rmsle()),
            ("pearson", st.pearson()),
            ("concordance", st.concordance()),
        ];
        Ok(all
            .into_iter()
            .map(|(name, v)| (name, v.ok(), v.err()))
            .collect())
    })
}

/// Whether a larger value of metric `name` is better (None: it has no direction).
#[pyfunction]
fn higher_is_better(py: Python<'_>, name: &str) -> PyResult<Option<bool>> {
    guarded(py, || {
        Metric::parse(name)
            .map(|m| m.higher_is_better())
            .map_err(|e| to_py(py, e))
    })
}

/// The names of the calibration metrics (computed only when asked for).
#[pyfunction]
fn calibration_metrics(py: Python<'_>) -> PyResult<Vec<&'static str>> {
    guarded(py, || Ok(assay_core::metrics::calibration_metrics()))
}

/// Canonical name of a metric (validates it): `"f2.0"` -> `"f2"`.
#[pyfunction]
fn metric_name(py: Python<'_>, name: &str) -> PyResult<String> {
    guarded(py, || {
        Metric::parse(name)
            .map(|m| m.name())
            .map_err(|e| to_py(py, e))
    })
}

/// The values of a numeric Arrow array as f64 (a typed error for nulls or other types).
fn f64_array(py: Python<'_>, a: &PyArray, role: &str) -> PyResult<Vec<f64>> {
    let arr = a.array();
    if let Err(e) = assay_core::input::check_numeric_type(role, role, arr.data_type()) {
        return Err(to_py(py, e));
    }
    if arr.null_count() > 0 {
        return Err(to_py(
            py,
            AssayError::InvalidInput {
                column: role.to_string(),
                message: format!("{role} must not contain nulls"),
            },
        ));
    }
    let mut buf = Vec::new();
    Ok(f64_values(arr, 0, arr.len(), &mut buf).into_owned())
}

type FitInputs = (Vec<f64>, Vec<f64>, Option<Vec<f64>>);

fn fit_inputs(
    py: Python<'_>,
    scores: PyArray,
    labels: PyArray,
    weights: Option<PyArray>,
) -> PyResult<FitInputs> {
    Ok((
        f64_array(py, &scores, "scores")?,
        f64_array(py, &labels, "labels")?,
        weights.map(|w| f64_array(py, &w, "weights")).transpose()?,
    ))
}

/// Isotonic fit: (distinct x ascending, fitted values).
#[pyfunction]
#[pyo3(signature = (scores, labels, weights, increasing))]
fn isotonic_fit(
    py: Python<'_>,
    scores: PyArray,
    labels: PyArray,
    weights: Option<PyArray>,
    increasing: bool,
) -> PyResult<(Vec<f64>, Vec<f64>)> {
    guarded(py, || {
        let (x, y, w) = fit_inputs(py, scores, labels, weights)?;
        run_detached(py, || {
            calibration::isotonic_fit(&x, &y, w.as_deref(), increasing)
        })
    })
}

/// Platt fit: (a, b) of sigmoid(a * logit(s) + b).
#[pyfunction]
#[pyo3(signature = (scores, labels, weights, smoothing))]
fn platt_fit(
    py: Python<'_>,
    scores: PyArray,
    labels: PyArray,
    weights: Option<PyArray>,
    smoothing: bool,
) -> PyResult<(f64, f64)> {
    guarded(py, || {
        let (x, y, w) = fit_inputs(py, scores, labels, weights)?;
        run_detached(py, || {
            calibration::platt_fit(&x, &y, w.as_deref(), smoothing)
        })
    })
}

/// Temperature fit: T of sigmoid(logit(s) / T).
#[pyfunction]
#[pyo3(signature = (scores, labels, weights))]
fn temperature_fit(
    py: Python<'_>,
    scores: PyArray,
    labels: PyArray,
    weights: Option<PyArray>,
) -> PyResult<f64> {
    guarded(py, || {
        let (x, y, w) = fit_inputs(py, scores, labels, weights)?;
        run_detached(py, || calibration::temperature_fit(&x, &y, w.as_deref()))
    })
}

/// Histogram-binning fit: the calibrated value of each of `n_bins` equal-width bins.
#[pyfunction]
#[pyo3(signature = (scores, labels, weights, n_bins))]
fn histogram_fit(
    py: Python<'_>,
    scores: PyArray,
    labels: PyArray,
    weights: Option<PyArray>,
    n_bins: usize,
) -> PyResult<Vec<f64>> {
    guarded(py, || {
        runtime::check_count(
            "HistogramBinning: n_bins",
            n_bins,
            assay_core::reliability::MAX_BINS,
        )
        .map_err(|e| to_py(py, e))?;
        let (x, y, w) = fit_inputs(py, scores, labels, weights)?;
        run_detached(py, || {
            calibration::histogram_fit(&x, &y, w.as_deref(), n_bins)
        })
    })
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(evaluate, m)?)?;
    m.add_function(wrap_pyfunction!(accumulate, m)?)?;
    m.add_function(wrap_pyfunction!(finalize, m)?)?;
    m.add_function(wrap_pyfunction!(merge_states, m)?)?;
    m.add_function(wrap_pyfunction!(state_from_bytes, m)?)?;
    m.add_function(wrap_pyfunction!(state_from_blocks, m)?)?;
    m.add_function(wrap_pyfunction!(device_layout, m)?)?;
    m.add_function(wrap_pyfunction!(replicate_draws, m)?)?;
    m.add_class::<State>()?;
    m.add("STATE_FORMAT_VERSION", STATE_FORMAT_VERSION)?;
    m.add("DEFAULT_MAX_RUNS", assay_core::sketch::DEFAULT_MAX_RUNS)?;
    m.add_function(wrap_pyfunction!(bin_edges, m)?)?;
    m.add_function(wrap_pyfunction!(bin_edge_ranks, m)?)?;
    m.add_function(wrap_pyfunction!(norm_cdf, m)?)?;
    m.add_function(wrap_pyfunction!(bin_edges_by_rank, m)?)?;
    m.add_function(wrap_pyfunction!(isotonic_fit, m)?)?;
    m.add_function(wrap_pyfunction!(platt_fit, m)?)?;
    m.add_function(wrap_pyfunction!(temperature_fit, m)?)?;
    m.add_function(wrap_pyfunction!(histogram_fit, m)?)?;
    m.add_function(wrap_pyfunction!(default_metrics, m)?)?;
    m.add_function(wrap_pyfunction!(metric_registry, m)?)?;
    m.add_function(wrap_pyfunction!(regression_metrics, m)?)?;
    m.add_function(wrap_pyfunction!(metric_name, m)?)?;
    m.add_function(wrap_pyfunction!(calibration_metrics, m)?)?;
    m.add_function(wrap_pyfunction!(discover_slices, m)?)?;
    m.add_function(wrap_pyfunction!(slice_rows, m)?)?;
    m.add_function(wrap_pyfunction!(bin_labels, m)?)?;
    m.add_function(wrap_pyfunction!(higher_is_better, m)?)?;
    m.add_function(wrap_pyfunction!(metric_from_counts, m)?)?;
    m.add_function(wrap_pyfunction!(max_threads, m)?)?;
    m.add_function(wrap_pyfunction!(_panic_for_tests, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("DEBUG_BUILD", cfg!(debug_assertions))?;
    Ok(())
}
