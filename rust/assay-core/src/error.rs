//! The engine's error type. The PyO3 layer maps each variant to one Python exception class.

use thiserror::Error;

/// Everything that can go wrong in a job, with the column and the problem named.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum AssayError {
    /// A column named in the spec is not in the input schema.
    #[error("column {column:?} not found; available columns: {available}")]
    ColumnNotFound { column: String, available: String },

    /// A column has a type that cannot serve the role asked of it.
    #[error("column {column:?}: {message}")]
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

    /// The caller asked the job to stop (Ctrl-C).
    #[error("interrupted")]
    Interrupted,

    /// The Arrow stream itself failed while reading.
    #[error("arrow error: {0}")]
    Arrow(String),
}

impl From<arrow_schema::ArrowError> for AssayError {
    fn from(e: arrow_schema::ArrowError) -> Self {
        AssayError::Arrow(e.to_string())
    }
}

pub type Result<T> = std::result::Result<T, AssayError>;

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
