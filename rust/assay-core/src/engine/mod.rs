//! Plans an evaluation job and drives it through its stages, each its own module with one
//! direction of dependency:
//!
//! - [`plan`]: what the job keeps (state shapes, kept rows, calibration routes), from the spec;
//! - [`accumulate`]: the pass over the record batches into a [`PartialState`];
//! - [`merge`]: partial states of shards merged by slice value, in a canonical order;
//! - [`finalize`]: a (merged) state into the report.
//!
//! [`evaluate`] is `accumulate` then `finalize` on one input. Rows are cut into logical chunks
//! of [`CHUNK_ROWS`] by global row position (`row_offset` + position in the input); each
//! chunk's state is updated row by row in row order and finished chunks fold into the total in
//! chunk order, so a result does not depend on the thread count or on how the rows were split
//! into batches.

pub mod accumulate;
pub mod blocks;
pub mod finalize;
pub mod merge;
pub mod plan;

use arrow_array::RecordBatch;
use arrow_schema::{ArrowError, SchemaRef};

use crate::error::Result;
use crate::report::Report;
pub use crate::spec::{AucMode, CompareSpec, EvalSpec, NanPolicy};
pub use crate::state::partial::PartialState;

/// A rayon pool owned by one call (see [`crate::runtime::job_pool`]).
pub use crate::runtime::job_pool;
pub use accumulate::accumulate;
pub use finalize::finalize;
pub use merge::merge;

pub use crate::piece::CHUNK_ROWS;

/// The output of a job: the report plus bookkeeping.
pub struct Evaluation {
    /// The report of `score` (the reference model of a comparison).
    pub report: Report,
    /// Comparison jobs: the report of each other model, and the paired differences.
    pub others: Vec<Report>,
    pub comparison: Option<RecordBatch>,
    /// The reliability table of the reference model (when `EvalSpec::reliability` is set).
    pub reliability: Option<RecordBatch>,
    /// A task family's own tables of the reference model, by name (see
    /// `crate::task::SliceFinalizer::tables`).
    pub family_tables: Vec<(&'static str, RecordBatch)>,
    pub rows: u64,
    pub dropped: u64,
    /// The content hash of the rows read (`EvalSpec::fingerprint`), None without one.
    pub content_hash: Option<u64>,
}

/// Runs `spec` over `batches` (with `schema`): [`accumulate`] then [`finalize`]. `interrupted`
/// is polled between batches on the calling thread; when it returns true the job stops with
/// [`AssayError::Interrupted`]. The long stages after the pass (sorts, rank and replicate
/// walks, finalization) poll the job's [`crate::runtime::Interrupt`] (see
/// [`crate::runtime::run_job`]) too.
pub fn evaluate<I>(
    schema: SchemaRef,
    batches: I,
    spec: &EvalSpec,
    interrupted: &dyn Fn() -> bool,
) -> Result<Evaluation>
where
    I: Iterator<Item = std::result::Result<RecordBatch, ArrowError>>,
{
    // One pool for both stages: its threads (and their allocator caches) stay warm.
    let pool = job_pool(spec.n_threads)?;
    let state = accumulate::accumulate_in(schema, batches, spec, 0, interrupted, &pool, true)?;
    finalize::finalize_owned(state, spec, interrupted, &pool)
}
