//! Hot reload for `mcpgw run`: the catalog (and its lockfile) watched with
//! `notify`, and `SIGHUP`, each leading to one reload.
//!
//! A reload loads and validates the whole new catalog and resolves its
//! secrets before anything changes; any error is logged (file, line,
//! column and fix, as `mcpgw validate` gives it) and the old configuration
//! keeps serving. A valid catalog is compared with the one in force
//! (`mcpgw_catalog::diff`) and applied as that diff: the mux retires,
//! adds and updates its slots (`mcpgw_mux::Slots::reload`), the supervisor
//! stops and starts only the servers that changed
//! (`Supervisor::reload`), and clients are told once. ARCHITECTURE.md,
//! "Hot reload", describes the whole path.

use std::path::{Path, PathBuf};
use std::time::Duration;

use mcpgw_catalog::{Catalog, Diff};
use mcpgw_mux::Slots;
use mcpgw_secrets::{LiveRedactor, SecretString};
use mcpgw_supervisor::Supervisor;
use notify::Watcher as _;
use tokio::sync::watch;

use crate::cli::SecretsArg;
use crate::secrets::{self, Resolved};

/// How long the catalog must stay unchanged before it is read: editors
/// write a file in several steps (truncate, write, rename).
const SETTLE: Duration = Duration::from_millis(200);

/// The catalog in force and what reloading it needs.
pub(crate) struct Reloader {
    catalog: Catalog,
    resolved: Resolved,
    /// Values that catalogs in force earlier used and the current one does
    /// not: still redacted, since logs and answers may hold them.
    retired_values: Vec<(String, SecretString)>,
    secrets: SecretsArg,
    live: LiveRedactor,
    slots: Slots,
    /// The front served (`stdio`, `http`), for the audit trail.
    front: &'static str,
    /// The token store whose tokens' profiles a new catalog must define
    /// (`--auth token`).
    tokens: Option<PathBuf>,
}

impl Reloader {
    pub(crate) fn new(
        catalog: Catalog,
        resolved: Resolved,
        secrets: SecretsArg,
        live: LiveRedactor,
        slots: Slots,
        front: &'static str,
    ) -> Self {
        Self {
            catalog,
            resolved,
            retired_values: Vec::new(),
            secrets,
            live,
            slots,
            front,
            tokens: None,
        }
    }

    /// Refuses a new catalog that lacks a profile a token in the store at
    /// `path` is bound to, as start-up does.
    pub(crate) fn check_tokens(&mut self, path: PathBuf) {
        self.tokens = Some(path);
    }

    /// Reloads whenever the catalog or its lockfile changes on disk, or
    /// the process receives `SIGHUP`; runs until dropped. Without a
    /// watcher (an unsupported file system), `SIGHUP` still works.
    pub(crate) async fn run(mut self, supervisor: &mut Supervisor) {
        let (changed, mut changes) = watch::channel(0u64);
        let _watcher = watch_files(&self.watched(), changed);
        let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        {
            Ok(hangup) => Some(hangup),
            Err(err) => {
                tracing::warn!(
                    "cannot listen for SIGHUP ({err}); the catalog reloads only when its file changes"
                );
                None
            }
        };
        loop {
            let why = tokio::select! {
                Ok(()) = changes.changed() => {
                    settle(&mut changes).await;
                    "file"
                }
                Some(()) = async { match hangup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => "sighup",
                // Neither a watcher nor a signal: nothing will ever ask.
                else => std::future::pending().await,
            };
            self.reload(supervisor, why).await;
        }
    }

    /// The files whose changes lead to a reload: the catalog and its
    /// lockfile, and, for a catalog reached through a symbolic link, the
    /// file it points to.
    fn watched(&self) -> Vec<PathBuf> {
        let path = &self.catalog.path;
        let mut files = vec![path.clone(), mcpgw_catalog::lock::path_for(path)];
        if let Ok(target) = path.canonicalize()
            && !files.contains(&target)
        {
            files.push(target);
        }
        files
    }

    /// One reload, because of `why`.
    pub(crate) async fn reload(&mut self, supervisor: &mut Supervisor, why: &str) {
        let path = self.catalog.path.clone();
        let (new, resolved) = match self.prepare(&path).await {
            Ok(prepared) => prepared,
            Err(error) => {
                // One line, so that a log reader sees the whole refusal.
                let error = one_line(&error);
                tracing::error!(
                    catalog = %path.display(),
                    trigger = why,
                    "catalog reload refused, the running configuration is unchanged: {error}"
                );
                self.slots.reload_refused(&path, &error);
                return;
            }
        };
        let mut diff = mcpgw_catalog::diff(&self.catalog, &new);
        self.replace_rotated(&new, &resolved, &mut diff);
        if diff.is_empty() {
            tracing::info!(catalog = %path.display(), trigger = why, "catalog reloaded: no change");
            self.slots.reload_applied(&new, self.front, "no change");
            return;
        }
        for key in &diff.needs_restart {
            tracing::warn!(
                "catalog reload: `{key}` changed; it takes effect when mcpgw next starts (the old value stays in force)"
            );
        }
        let summary = diff.summary(&self.catalog, &new);
        // New values are redacted before any server that receives them
        // starts; the old ones stay redacted.
        self.retired_values = self.resolved.dropped_by(&resolved, &self.retired_values);
        self.live
            .replace(resolved.redactor_with(&self.retired_values));
        let reload = self.slots.reload(&self.catalog, &new, &diff);
        let injections = new.servers.iter().map(|s| resolved.injection(s)).collect();
        supervisor.reload(&new, &reload, injections).await;
        self.slots.reloaded(&reload).await;
        tracing::info!(catalog = %path.display(), trigger = why, "catalog reloaded: {summary}");
        self.slots.reload_applied(&new, self.front, &summary);
        self.catalog = new;
        self.resolved = resolved;
    }

    /// The new catalog at `path`, validated, and its secrets resolved; or
    /// why not, as the log shows it.
    async fn prepare(&self, path: &Path) -> Result<(Catalog, Resolved), String> {
        let new = mcpgw_catalog::load(path).map_err(|e| format!("{e:#}"))?;
        if let Some(store) = &self.tokens {
            let tokens = crate::tokens::Tokens::load(store).map_err(|e| format!("{e:#}"))?;
            crate::commands::tokens_have_profiles(&tokens, &new, path)?;
        }
        let resolved = secrets::resolve(&new, None, &self.secrets)
            .await
            .map_err(|e| format!("{e}"))?;
        Ok((new, resolved))
    }

    /// Moves to `diff.replaced` each kept server one of whose secrets has
    /// a new value: its container received the old one.
    fn replace_rotated(&self, new: &Catalog, resolved: &Resolved, diff: &mut Diff) {
        let rotated = |n: usize| {
            secrets::names_used(&new.servers[n])
                .iter()
                .any(|name| !resolved.same_value(&self.resolved, name))
        };
        for kept in [&mut diff.updated, &mut diff.unchanged] {
            let (moved, stay): (Vec<_>, Vec<_>) = kept.drain(..).partition(|&(_, n)| rotated(n));
            *kept = stay;
            diff.replaced.extend(moved);
        }
    }
}

/// `text`'s lines joined with `; `, each trimmed.
fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// Waits until `changes` has been quiet for [`SETTLE`].
async fn settle(changes: &mut watch::Receiver<u64>) {
    while let Ok(Ok(())) = tokio::time::timeout(SETTLE, changes.changed()).await {}
}

/// Watches the directories of `files` (so that a file an editor replaces
/// by renaming is still seen) and bumps `changed` on each event that
/// names one of them. `None`, with a warning, when no watcher can be set.
fn watch_files(
    files: &[PathBuf],
    changed: watch::Sender<u64>,
) -> Option<notify::RecommendedWatcher> {
    let files: Vec<PathBuf> = files.iter().map(|f| absolute(f)).collect();
    let names = files.clone();
    let handler = move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else {
            return;
        };
        if event.kind.is_access() {
            return;
        }
        if event.paths.iter().any(|p| names.contains(&absolute(p))) {
            changed.send_modify(|n| *n += 1);
        }
    };
    let mut watcher = match notify::recommended_watcher(handler) {
        Ok(watcher) => watcher,
        Err(err) => {
            tracing::warn!("cannot watch the catalog ({err}); send SIGHUP to reload it");
            return None;
        }
    };
    let mut dirs: Vec<&Path> = files.iter().filter_map(|f| f.parent()).collect();
    dirs.sort();
    dirs.dedup();
    for dir in dirs {
        if let Err(err) = watcher.watch(dir, notify::RecursiveMode::NonRecursive) {
            tracing::warn!(dir = %dir.display(), "cannot watch the catalog's directory ({err}); send SIGHUP to reload it");
            return None;
        }
    }
    Some(watcher)
}

/// `path` made absolute, its directory's symbolic links resolved, so that
/// the paths events name compare with it.
fn absolute(path: &Path) -> PathBuf {
    let name = path.file_name().map(PathBuf::from).unwrap_or_default();
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    dir.canonicalize()
        .map_or_else(|_| path.to_path_buf(), |d| d.join(name))
}
