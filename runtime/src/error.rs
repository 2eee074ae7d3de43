//! Typed errors of the runtime: expression evaluation ([`EvalError`]) and everything else
//! ([`RuntimeError`]). No input-dependent path panics; every failure ends up as one of these.

use arrow::error::ArrowError;

/// An expression could not be evaluated over a batch.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// An Arrow compute kernel failed (e.g. decimal overflow).
    #[error("{0}")]
    Arrow(#[from] ArrowError),
    /// `CAST` of a value that has no representation in the target type (`TRY_CAST` gives NULL instead).
    #[error("cannot cast {value} from {from} to {to}")]
    Cast {
        value: String,
        from: String,
        to: String,
    },
    /// A `Column(i)` reference outside the batch (a plan/runtime mismatch).
    #[error("column ${index} does not exist (the input has {columns} columns)")]
    ColumnOutOfRange { index: usize, columns: usize },
    /// The plan calls a function the stdlib does not have.
    #[error("unknown function `{0}`")]
    UnknownFunction(String),
    /// A stdlib kernel failed.
    #[error("function `{function}`: {message}")]
    Function { function: String, message: String },
    /// A literal whose value does not fit its declared type.
    #[error("invalid literal: {0}")]
    InvalidLiteral(String),
    /// An operand type combination the interpreter does not implement.
    #[error("unsupported expression: {0}")]
    Unsupported(String),
}

/// Any failure while building or running a pipeline.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// Evaluating an expression of a node failed.
    #[error("in `{node}`: {source}")]
    Eval {
        node: String,
        #[source]
        source: EvalError,
    },
    /// An Arrow operation outside expression evaluation failed.
    #[error("in `{node}`: {source}")]
    Arrow {
        node: String,
        #[source]
        source: ArrowError,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// A connector option is missing or has an invalid value.
    #[error("table `{table}`: option '{option}': {message}")]
    Option {
        table: String,
        option: String,
        message: String,
    },
    /// A connector cannot serve the table as declared (unknown connector, unsupported column type...).
    #[error("table `{table}`: {message}")]
    Connector { table: String, message: String },
    /// The plan is inconsistent (a node input that does not exist, a wrong schema...).
    #[error("invalid plan: {0}")]
    Plan(String),
    /// A test input does not fit its table.
    #[error("test input for `{table}`: {message}")]
    TestInput { table: String, message: String },
    /// A model could not be loaded or scored.
    #[error("model `{model}`: {message}")]
    Model { model: String, message: String },
    /// Checkpointing is misconfigured, or a checkpoint cannot be written or restored.
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    /// A node's state cannot be snapshotted or restored.
    #[error("checkpoint: state of `{node}`: {message}")]
    State { node: String, message: String },
    /// The state backend failed while running (RocksDB could not write, or a spilled value could
    /// not be read back or decoded).
    #[error("state backend: state of `{node}`: {message}")]
    Backend { node: String, message: String },
    /// The state backend cannot be set up (the RocksDB instance does not open, or a
    /// checkpoint's RocksDB files are missing or damaged).
    #[error("state backend: {0}")]
    BackendSetup(String),
}

impl RuntimeError {
    /// Wraps an [`EvalError`] with the name of the node that evaluated the expression.
    pub fn eval(node: &str, source: EvalError) -> Self {
        RuntimeError::Eval {
            node: node.to_string(),
            source,
        }
    }

    /// Wraps an [`ArrowError`] with the name of the node where it happened.
    pub fn arrow(node: &str, source: ArrowError) -> Self {
        RuntimeError::Arrow {
            node: node.to_string(),
            source,
        }
    }

    /// A node's state that cannot be snapshotted or restored.
    pub fn state(node: &str, message: impl std::fmt::Display) -> Self {
        RuntimeError::State {
            node: node.to_string(),
            message: message.to_string(),
        }
    }

    /// The state backend failed for node `node`'s state.
    pub fn backend(node: &str, message: impl std::fmt::Display) -> Self {
        RuntimeError::Backend {
            node: node.to_string(),
            message: message.to_string(),
        }
    }

    /// An I/O error on `path`.
    pub fn io(path: impl Into<String>, source: std::io::Error) -> Self {
        RuntimeError::Io {
            path: path.into(),
            source,
        }
    }

    /// An invalid option value of `table`.
    pub fn option(table: &str, option: &str, message: impl Into<String>) -> Self {
        RuntimeError::Option {
            table: table.to_string(),
            option: option.to_string(),
            message: message.into(),
        }
    }

    /// A connector-level problem of `table`.
    pub fn connector(table: &str, message: impl Into<String>) -> Self {
        RuntimeError::Connector {
            table: table.to_string(),
            message: message.into(),
        }
    }
}
