//! One error type for the whole core. Every variant carries enough context
//! (a file, a tensor, a line) for a user to find and fix the problem.

use std::fmt;

/// What went wrong, with the file or input it concerns.
#[derive(Debug, Clone, PartialEq)]
pub struct Error {
    /// The file, tensor or input the problem is in (for example `model.safetensors`).
    pub source: String,
    /// What is wrong, in words a user can act on.
    pub message: String,
    /// A broad category, for callers that branch on it (the web API maps it to a typed error).
    pub kind: ErrorKind,
}

/// Broad error categories, stable for the JS bindings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(test, derive(ts_rs::TS), ts(rename = "CoreErrorKind"))]
pub enum ErrorKind {
    /// A model, tokenizer or adapter file is malformed or disagrees with its config.
    Format,
    /// The input is well-formed but not supported (an unknown architecture, a quant type).
    Unsupported,
    /// User input (a dataset, a prompt, CLI arguments) is invalid.
    Input,
    /// The device cannot run this (too large, no adapter).
    Device,
    /// Reading or writing a file failed.
    Io,
}

impl Error {
    pub fn format(source: impl Into<String>, message: impl Into<String>) -> Self {
        Self { source: source.into(), message: message.into(), kind: ErrorKind::Format }
    }
    pub fn unsupported(source: impl Into<String>, message: impl Into<String>) -> Self {
        Self { source: source.into(), message: message.into(), kind: ErrorKind::Unsupported }
    }
    pub fn input(source: impl Into<String>, message: impl Into<String>) -> Self {
        Self { source: source.into(), message: message.into(), kind: ErrorKind::Input }
    }
    pub fn device(message: impl Into<String>) -> Self {
        Self { source: "device".into(), message: message.into(), kind: ErrorKind::Device }
    }
    pub fn io(source: impl Into<String>, message: impl Into<String>) -> Self {
        Self { source: source.into(), message: message.into(), kind: ErrorKind::Io }
    }
    /// The same error, naming another source.
    pub fn in_source(self, source: impl Into<String>) -> Self {
        Self { source: source.into(), ..self }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.source.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.source, self.message)
        }
    }
}

impl std::error::Error for Error {}

/// The core's result type.
pub type Result<T> = std::result::Result<T, Error>;

/// A byte count for messages: `123.4 MB (123400000 bytes)`.
pub(crate) fn human_bytes(b: usize) -> String {
    format!("{:.1} MB ({b} bytes)", b as f64 / 1e6)
}
