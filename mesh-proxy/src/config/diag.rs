//! Diagnostics: errors and warnings with `FILE:LINE:COLUMN`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How bad a diagnostic is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// The config is not valid.
    Error,
    /// The config is valid, but something in it is ignored.
    Warning,
}

/// A place in a config file (lines and columns from 1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Position {
    /// The file.
    pub file: Arc<Path>,
    /// The line, from 1.
    pub line: u64,
    /// The column, from 1.
    pub column: u64,
}

/// One error or warning about a config file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// Where.
    pub position: Position,
    /// What, naming the kind, the object and the field.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    /// `FILE:LINE:COLUMN: message` (warnings say so after the position).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = &self.position;
        write!(f, "{}:{}:{}: ", p.file.display(), p.line, p.column)?;
        if self.severity == Severity::Warning {
            f.write_str("warning: ")?;
        }
        f.write_str(&self.message)
    }
}

/// Collects diagnostics for one file.
#[derive(Debug)]
pub(crate) struct Diagnostics {
    file: Arc<Path>,
    pub(crate) list: Vec<Diagnostic>,
}

impl Diagnostics {
    pub(crate) fn new(file: &Path) -> Self {
        Diagnostics {
            file: Arc::from(PathBuf::from(file).into_boxed_path()),
            list: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, severity: Severity, line: u64, column: u64, message: String) {
        self.list.push(Diagnostic {
            severity,
            position: Position {
                file: self.file.clone(),
                line: line.max(1),
                column: column.max(1),
            },
            message,
        });
    }

    pub(crate) fn error(&mut self, line: u64, column: u64, message: String) {
        self.push(Severity::Error, line, column, message);
    }

    pub(crate) fn warning(&mut self, line: u64, column: u64, message: String) {
        self.push(Severity::Warning, line, column, message);
    }
}
