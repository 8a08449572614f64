//! The one error type of catalog loading, rendered compiler-style as
//! `file:line:column: what is wrong; fix: how to fix it`.
//!
//! It does not decide wording for individual checks: those messages are
//! written where the check is made, with [`invalid`].

use std::path::{Path, PathBuf};

/// Why a catalog could not be loaded. Nothing is started when this is returned.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The file could not be opened or read.
    #[error("{}: cannot read the catalog: {error}; fix: check the path given to --catalog", path.display())]
    Io {
        /// The catalog path as given.
        path: PathBuf,
        /// What the operating system said (in the message, so not also
        /// a `source` that `{:#}` would print a second time).
        error: std::io::Error,
    },
    /// The file is larger than [`crate::MAX_CATALOG_BYTES`].
    #[error("{}: the catalog is {size} bytes, over the limit of {} bytes; fix: a catalog is a short hand-written file, check that --catalog names the right one", path.display(), crate::MAX_CATALOG_BYTES)]
    TooLarge {
        /// The catalog path as given.
        path: PathBuf,
        /// How many bytes were seen (at least).
        size: u64,
    },
    /// The content is not a valid catalog.
    #[error("{}:{line}:{column}: {message}", path.display())]
    Invalid {
        /// The catalog path as given.
        path: PathBuf,
        /// 1-based line of the offending value.
        line: usize,
        /// 1-based column of the offending value.
        column: usize,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// The lockfile beside the catalog cannot be used.
    #[error("{}: {message}", path.display())]
    Lock {
        /// The lockfile's path.
        path: PathBuf,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// Several problems, in file order, each an [`CatalogError::Invalid`].
    /// Shown one per line, each line after the first led by `error: ` as
    /// the first one is where the command reports it.
    #[error("{}", render_several(problems))]
    Several {
        /// The problems, at least two.
        problems: Vec<CatalogError>,
    },
}

fn render_several(problems: &[CatalogError]) -> String {
    let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
    let count = format!(
        "{} problems in this catalog; nothing was started",
        problems.len()
    );
    [lines.join("\nerror: "), count].join("\nerror: ")
}

impl CatalogError {
    pub(crate) fn io(path: &Path, error: std::io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            error,
        }
    }

    pub(crate) fn too_large(path: &Path, size: u64) -> Self {
        Self::TooLarge {
            path: path.to_path_buf(),
            size,
        }
    }

    pub(crate) fn from_yaml(path: &Path, err: &yaml_serde::Error) -> Self {
        let (line, column) = err
            .location()
            .map_or((1, 1), |loc| (loc.line(), loc.column()));
        let rendered = err.to_string();
        // yaml_serde appends " at line L column C"; we lead with the position.
        let message = rendered
            .rsplit_once(" at line ")
            .map_or(rendered.as_str(), |(head, _)| head);
        Self::Invalid {
            path: path.to_path_buf(),
            line,
            column,
            message: with_fix(message),
        }
    }

    pub(crate) fn lock(path: &Path, message: String) -> Self {
        Self::Lock {
            path: path.to_path_buf(),
            message,
        }
    }

    /// One error, or several in file order.
    pub(crate) fn all(mut problems: Vec<Self>) -> Self {
        if problems.len() == 1 {
            problems.remove(0)
        } else {
            Self::Several { problems }
        }
    }

    /// The message without the file and position, for tests and tools
    /// (the first problem's, when there are several).
    pub fn message(&self) -> String {
        match self {
            Self::Invalid { message, .. } => message.clone(),
            Self::Several { problems } => problems.first().map(Self::message).unwrap_or_default(),
            other => other.to_string(),
        }
    }

    /// The line and column of a content error (of the first, when there
    /// are several); `None` for errors about the file itself.
    pub fn position(&self) -> Option<(usize, usize)> {
        match self {
            Self::Invalid { line, column, .. } => Some((*line, *column)),
            Self::Several { problems } => problems.first().and_then(Self::position),
            Self::Io { .. } | Self::TooLarge { .. } | Self::Lock { .. } => None,
        }
    }

    /// Every problem: this one, or each of several.
    pub fn problems(&self) -> &[Self] {
        match self {
            Self::Several { problems } => problems,
            one => std::slice::from_ref(one),
        }
    }
}

/// Formats a validation failure: what is wrong, then how to fix it.
pub(crate) fn invalid(what: impl std::fmt::Display, fix: impl std::fmt::Display) -> String {
    format!("{what}; fix: {fix}")
}

/// Adds a fix to serde's and libyaml's own messages, which say what is wrong
/// but not what to do about it. Our own messages already carry one.
fn with_fix(message: &str) -> String {
    if message.contains("; fix: ") {
        return message.to_string();
    }
    let fix = if message.contains("unknown field") {
        "remove the key or correct its spelling; the catalog reference is in README.md"
    } else if message.contains("duplicate field") || message.contains("duplicate entry") {
        "keep only one of them"
    } else if message.contains("missing field") {
        "add the missing key"
    } else if message.contains("repetition limit") || message.contains("recursion limit") {
        "the file expands to more than a catalog can hold (YAML aliases?); write it out plainly"
    } else if message.contains("invalid type") || message.contains("invalid value") {
        "write the value in the form the catalog reference in README.md shows"
    } else {
        "correct the YAML syntax at this position"
    };
    invalid(message, fix)
}
