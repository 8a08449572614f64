//! Where the audit trail goes (`gateway.audit`): a file, opened append-only
//! with mode 0600 and rotated by size, or stderr. The records themselves
//! are the mux's (`mcpgw-mux`'s `audit.rs`); this only writes them, one whole
//! line per write, each written through before the next.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, anyhow};
use mcpgw_catalog::{AuditSpec, AuditTo};
use mcpgw_mux::{Audit, AuditArguments, AuditSink};

/// The trail `spec` asks for: `http` says which front serves (the default
/// keeps one over HTTP and none over stdio).
///
/// # Errors
///
/// The file or its directory cannot be created or opened.
pub(crate) fn open(spec: &AuditSpec, http: bool) -> anyhow::Result<Option<Audit>> {
    let sink: Arc<dyn AuditSink> = match &spec.to {
        AuditTo::Off => return Ok(None),
        AuditTo::Default if !http => return Ok(None),
        AuditTo::Stderr => Arc::new(Stderr),
        AuditTo::Default => Arc::new(FileSink::open(&default_path()?, spec)?),
        AuditTo::File(path) => Arc::new(FileSink::open(path, spec)?),
    };
    Ok(Some(Audit {
        sink,
        arguments: if spec.arguments {
            AuditArguments::Redacted
        } else {
            AuditArguments::None
        },
    }))
}

/// `$XDG_STATE_HOME/mcpgw/audit.jsonl`, else `~/.local/state/…`.
fn default_path() -> anyhow::Result<PathBuf> {
    let state = std::env::var_os("XDG_STATE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local/state"))
        })
        .ok_or_else(|| {
            anyhow!(
                "no place for the audit log: neither XDG_STATE_HOME nor HOME is set; fix: set `gateway.audit.path` in the catalog"
            )
        })?;
    Ok(state.join("mcpgw").join("audit.jsonl"))
}

/// Records on the gateway's stderr, beside its logs.
#[derive(Debug)]
struct Stderr;

impl AuditSink for Stderr {
    fn write(&self, line: &str) {
        let mut out = std::io::stderr().lock();
        let _ = writeln!(out, "{line}");
    }
}

/// Records in a file, rotated at `max_size`.
#[derive(Debug)]
struct FileSink {
    state: parking_lot::Mutex<State>,
}

#[derive(Debug)]
struct State {
    path: PathBuf,
    file: File,
    written: u64,
    max_size: u64,
    keep: u32,
}

fn append(path: &Path) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options.append(true).create(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

impl FileSink {
    fn open(path: &Path, spec: &AuditSpec) -> anyhow::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            let mut builder = std::fs::DirBuilder::new();
            builder.recursive(true);
            #[cfg(unix)]
            std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
            builder.create(dir).with_context(|| {
                format!("cannot create the audit log's directory {}", dir.display())
            })?;
        }
        let file = append(path).with_context(|| {
            format!(
                "cannot open the audit log {}; fix: make it writable or set `gateway.audit.path`",
                path.display()
            )
        })?;
        let written = file.metadata().map_or(0, |m| m.len());
        tracing::info!(path = %path.display(), "audit log");
        Ok(Self {
            state: parking_lot::Mutex::new(State {
                path: path.to_path_buf(),
                file,
                written,
                max_size: spec.max_size,
                keep: spec.keep,
            }),
        })
    }
}

impl State {
    /// `FILE` becomes `FILE.1`, `FILE.1` becomes `FILE.2`, …, the oldest
    /// beyond `keep` is dropped; a new `FILE` is opened.
    fn rotate(&mut self) -> std::io::Result<()> {
        let numbered = |n: u32| {
            let mut name = self.path.as_os_str().to_os_string();
            name.push(format!(".{n}"));
            PathBuf::from(name)
        };
        if self.keep == 0 {
            std::fs::remove_file(&self.path)?;
        } else {
            for n in (1..self.keep).rev() {
                let from = numbered(n);
                if from.exists() {
                    std::fs::rename(&from, numbered(n + 1))?;
                }
            }
            std::fs::rename(&self.path, numbered(1))?;
        }
        self.file = append(&self.path)?;
        self.written = 0;
        Ok(())
    }
}

impl AuditSink for FileSink {
    fn write(&self, line: &str) {
        let mut record = String::with_capacity(line.len() + 1);
        record.push_str(line);
        record.push('\n');
        let mut state = self.state.lock();
        let full = state.written > 0 && state.written + record.len() as u64 > state.max_size;
        if full && let Err(err) = state.rotate() {
            tracing::error!(path = %state.path.display(), "cannot rotate the audit log: {err}");
        }
        // One write per record: a gateway killed between two leaves whole lines.
        match state.file.write_all(record.as_bytes()) {
            Ok(()) => state.written += record.len() as u64,
            Err(err) => {
                tracing::error!(path = %state.path.display(), "cannot write the audit log: {err}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_is_private_appended_to_and_rotated_at_its_bound() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/audit.jsonl");
        let spec = AuditSpec {
            to: AuditTo::File(path.clone()),
            arguments: false,
            max_size: 100,
            keep: 2,
        };
        let sink = FileSink::open(&path, &spec).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let line = |n: usize| format!("{{\"n\":{n},\"pad\":\"{}\"}}", "x".repeat(30));
        for n in 0..10 {
            sink.write(&line(n));
        }
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        let rotated = |n: u32| PathBuf::from(format!("{}.{n}", path.display()));
        // 47-byte records, two to a file: the newest two in FILE, then .1, .2.
        assert_eq!(read(&path), format!("{}\n{}\n", line(8), line(9)));
        assert_eq!(read(&rotated(1)), format!("{}\n{}\n", line(6), line(7)));
        assert_eq!(read(&rotated(2)), format!("{}\n{}\n", line(4), line(5)));
        assert!(!rotated(3).exists(), "only `keep` rotated files");
        // Reopened, it appends.
        drop(sink);
        let sink = FileSink::open(&path, &spec).unwrap();
        sink.write(&line(10));
        assert_eq!(read(&rotated(1)), format!("{}\n{}\n", line(8), line(9)));
        assert_eq!(read(&path), format!("{}\n", line(10)));
    }
}
