//! The engine's error type. The PyO3 layer maps each variant to one Python exception class.

use thiserror::Error;

/// Everything that can go wrong in a job, with the column and the problem named.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum AssayError {
    /// A column named in the spec is not in the input schema.
    #[error("column {column:?} not found; available columns: {available}")]
    ColumnNotFound { column: String, available: String },

    /// A column has a type that cannot serve the role asked of it (or the input's batches do
    /// not match its schema; `column` is empty when no one column is at fault).
    #[error("{}", with_column(column, message))]
    Schema { column: String, message: String },

    /// A value in the data is invalid for its role (NaN score, label 2, negative weight...).
    #[error("column {column:?}: {message}")]
    InvalidInput { column: String, message: String },

    /// The spec itself is inconsistent (unknown metric, bad bins, empty input...).
    #[error("{0}")]
    InvalidArgument(String),

    /// The input had no rows left to evaluate.
    #[error("{0}")]
    EmptyInput(String),

    /// Partial states that cannot be merged or finalized together (different specs,
    /// overlapping row ranges of a resampled job, a state that does not fit its spec).
    #[error("{0}")]
    StateMismatch(String),

    /// Bytes that are not a valid partial state (truncated, corrupted, foreign, or from a newer
    /// format version).
    #[error("{0}")]
    StateFormat(String),

    /// The caller asked the job to stop (Ctrl-C).
    #[error("interrupted")]
    Interrupted,

    /// The Arrow stream itself failed while reading.
    #[error("arrow error: {0}")]
    Arrow(String),

    /// A bug: a panic caught at a job or FFI boundary.
    #[error("internal error, please report: {0}")]
    Internal(String),
}

impl From<arrow_schema::ArrowError> for AssayError {
    fn from(e: arrow_schema::ArrowError) -> Self {
        // A batch iterator can carry a typed error (a checked stream's schema mismatch)
        // through the `ArrowError` its items are made of.
        if let arrow_schema::ArrowError::ExternalError(inner) = &e {
            if let Some(a) = inner.downcast_ref::<AssayError>() {
                return a.clone();
            }
        }
        AssayError::Arrow(e.to_string())
    }
}

pub type Result<T> = std::result::Result<T, AssayError>;

/// `column "x": message`, or the message alone when no column is named.
fn with_column(column: &str, message: &str) -> String {
    if column.is_empty() {
        message.to_string()
    } else {
        format!("column {column:?}: {message}")
    }
}

/// The error of a job left without rows: none read, or all `rows` dropped by `nan_policy`.
pub(crate) fn no_rows(rows: u64) -> AssayError {
    AssayError::EmptyInput(if rows == 0 {
        "the input has no rows".to_string()
    } else {
        format!("all {rows} rows were dropped by nan_policy=\"drop\"")
    })
}

pub(crate) fn invalid(column: &str, message: impl Into<String>) -> AssayError {
    AssayError::InvalidInput {
        column: column.to_string(),
        message: message.into(),
    }
}

pub(crate) fn schema(column: &str, message: impl Into<String>) -> AssayError {
    AssayError::Schema {
        column: column.to_string(),
        message: message.into(),
    }
}
