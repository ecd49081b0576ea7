//! Configuration errors: every problem found in one pass, each with where it is and what to change.

use std::{fmt, path::PathBuf};

/// A position in the YAML source (1-based line and column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Location {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
}

/// One problem in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Where the parser found it, when known.
    pub location: Option<Location>,
    /// YAML path of the offending value, like `routes[2].allow_ips[1]`; empty for the whole file.
    pub path: String,
    /// What is wrong and what to change. Never contains a secret's value.
    pub message: String,
}

/// Every problem found in a configuration file, in source order.
#[derive(Debug, Clone)]
pub struct ConfigErrors {
    /// The file the errors refer to.
    pub file: PathBuf,
    /// The errors, sorted by location (errors without one come last).
    pub errors: Vec<ConfigError>,
}

impl ConfigErrors {
    pub(crate) fn new(file: PathBuf, mut errors: Vec<ConfigError>) -> Self {
        errors.sort_by_key(|e| (e.location.is_none(), e.location));
        ConfigErrors { file, errors }
    }
}

impl ConfigErrors {
    /// Errors found after parsing (certificates), which have paths but no locations.
    pub fn new_unsorted(file: PathBuf, errors: Vec<ConfigError>) -> Self {
        ConfigErrors { file, errors }
    }
}

impl fmt::Display for ConfigErrors {
    /// One error per line: `router.yaml:14:7: routes[2].allow_ips[1]: ...`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}", self.file.display())?;
            if let Some(loc) = e.location {
                write!(f, ":{}:{}", loc.line, loc.column)?;
            }
            if e.path.is_empty() {
                write!(f, ": {}", e.message)?;
            } else {
                write!(f, ": {}: {}", e.path, e.message)?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}
