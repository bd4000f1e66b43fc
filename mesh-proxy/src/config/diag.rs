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

/// At most this many errors are listed per file; loading the file stops at
/// the next document (hostile input cannot produce unbounded output).
pub(crate) const MAX_ERRORS: usize = 100;
/// At most this many warnings are listed per file; further ones are counted.
pub(crate) const MAX_WARNINGS: usize = 100;

/// Longer messages are cut (one may quote a huge key or value).
const MAX_MESSAGE_CHARS: usize = 512;

/// Collects diagnostics for one file.
#[derive(Debug)]
pub(crate) struct Diagnostics {
    file: Arc<Path>,
    pub(crate) list: Vec<Diagnostic>,
    errors: usize,
    warnings: usize,
}

impl Diagnostics {
    pub(crate) fn new(file: &Path) -> Self {
        Diagnostics {
            file: Arc::from(PathBuf::from(file).into_boxed_path()),
            list: Vec::new(),
            errors: 0,
            warnings: 0,
        }
    }

    /// Whether any error was reported (listed or not).
    pub(crate) fn has_errors(&self) -> bool {
        self.errors > 0
    }

    /// Whether the error limit is reached: the caller stops reading the file.
    pub(crate) fn too_many_errors(&self) -> bool {
        self.errors >= MAX_ERRORS
    }

    /// Records that reading stopped at `line` because of the error limit.
    pub(crate) fn stopped(&mut self, line: u64) {
        self.list.push(Diagnostic {
            severity: Severity::Error,
            position: Position {
                file: self.file.clone(),
                line: line.max(1),
                column: 1,
            },
            message: format!(
                "too many errors (at most {MAX_ERRORS} are reported); the rest of the file was not read"
            ),
        });
    }

    /// Adds a closing warning counting the warnings that were not listed, and
    /// returns the list.
    pub(crate) fn finish(mut self) -> Vec<Diagnostic> {
        if self.warnings > MAX_WARNINGS {
            let more = self.warnings - MAX_WARNINGS;
            self.warnings = 0;
            self.push(
                Severity::Warning,
                1,
                1,
                format!("{more} more warnings not shown (at most {MAX_WARNINGS} are listed)"),
            );
        }
        self.list
    }

    pub(crate) fn push(&mut self, severity: Severity, line: u64, column: u64, message: String) {
        let count = match severity {
            Severity::Error => &mut self.errors,
            Severity::Warning => &mut self.warnings,
        };
        *count += 1;
        let limit = match severity {
            Severity::Error => MAX_ERRORS,
            Severity::Warning => MAX_WARNINGS,
        };
        if *count > limit {
            return;
        }
        self.list.push(Diagnostic {
            severity,
            position: Position {
                file: self.file.clone(),
                line: line.max(1),
                column: column.max(1),
            },
            message: super::clip(&message, MAX_MESSAGE_CHARS),
        });
    }

    pub(crate) fn error(&mut self, line: u64, column: u64, message: String) {
        self.push(Severity::Error, line, column, message);
    }

    pub(crate) fn warning(&mut self, line: u64, column: u64, message: String) {
        self.push(Severity::Warning, line, column, message);
    }
}
