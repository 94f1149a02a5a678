//! assay-core: the evaluation engine behind the `assay` Python package.
//!
//! A job reads Arrow record batches once, encodes slice keys into dense ids, updates mergeable
//! per-slice states in parallel and finalizes them into an Arrow report. See `DESIGN.md`.

pub mod bootstrap;
pub mod calibration;
pub mod discovery;
pub mod engine;
pub mod error;
pub mod fastmath;
pub mod fingerprint;
pub mod input;
pub mod intervals;
pub mod metrics;
pub mod piece;
pub mod rank;
pub mod reliability;
pub mod report;
pub mod runtime;
pub mod sketch;
pub mod slicing;
pub mod sorted;
pub mod spec;
pub mod state;
pub mod task;

pub use bootstrap::{CiMethod, IntervalSpec};
pub use engine::{
    accumulate, evaluate, finalize, merge, AucMode, EvalSpec, Evaluation, NanPolicy, PartialState,
};
pub use error::{AssayError, Result};
pub use metrics::Metric;
pub use slicing::{bin_edge_ranks, bin_edges, bin_edges_by_rank, BinStrategy, Feature, SliceSpec};
/// The task families, under `task/` (their historical paths).
pub use task::{multiclass, ranking, regression};
