//! The fleet's one error type.

use std::path::PathBuf;

/// Why a fleet run, a report or a fleet file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// A report or fleet file is not what vphone writes.
    #[error("{path}: not a vphone {what} file: {detail}")]
    Format {
        /// The file (or `-` for in-memory text).
        path: PathBuf,
        /// `report` or `fleet`.
        what: &'static str,
        /// What exactly is wrong.
        detail: String,
    },
    /// A serialized histogram could not be decoded or merged.
    #[error("histogram of `{op}`: {detail}")]
    Histogram {
        /// The operation whose histogram is broken.
        op: String,
        /// What went wrong.
        detail: String,
    },
    /// A command-line value is malformed.
    #[error("{0}")]
    Usage(String),
    /// A run's options do not fit together (a program calling [`super::run`] built them).
    #[error("{0}")]
    Options(String),
    /// Two fleets (or a fleet and a shard) do not fit together.
    #[error("{0}")]
    Mismatch(String),
    /// The in-process sandbox could not be started.
    #[error("could not start the in-process sandbox: {0}")]
    Sandbox(std::io::Error),
    /// The threads that run the workers could not be started, or one of them died.
    #[error("fleet worker threads: {0}")]
    Threads(std::io::Error),
    /// The API client could not be built.
    #[error("could not build the API client: {0}")]
    Client(String),
}

impl FleetError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        FleetError::Io {
            path: path.into(),
            source,
        }
    }
}
