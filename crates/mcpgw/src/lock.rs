//! `mcpgw lock`: start the servers, pin what they are now (the format is
//! `mcpgw_catalog::lock`'s), and compare that with the lockfile. Creating,
//! checking (`--check`, for CI) and re-pinning (`--update`) share one
//! comparison, the one `mcpgw run` logs drift with (`mcpgw_mux::pin`).

use std::path::Path;

use anyhow::anyhow;
use mcpgw_catalog::lock::{LOCK_VERSION, Lock, ServerLock, path_for};
use mcpgw_docker::Engine;
use mcpgw_mux::pin::{self, Change};
use mcpgw_scan::ItemKind;

use crate::cli::SecretsArg;
use crate::commands::{Failure, print_stdout, with_client};

/// What `mcpgw lock` does with the lockfile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Write it when there is none; refuse to replace one that differs.
    Create,
    /// Write nothing; fail on any difference.
    Check,
    /// Write it anew, whatever it held.
    Update,
}

pub(crate) async fn command(
    catalog_path: &Path,
    mode: Mode,
    secrets: &SecretsArg,
    engine: Engine,
) -> Result<(), Failure> {
    let lock_path = path_for(catalog_path);
    let previous = Lock::read(&lock_path).map_err(Failure::usage)?;
    // The servers as they are, not as the lockfile would let them be seen.
    let catalog = mcpgw_catalog::load_unlocked(catalog_path).map_err(Failure::usage)?;
    let now = with_client(&catalog, None, secrets, engine, async |_, mux, runtime| {
        // Once every server is up or has failed.
        let _ = mux.table().await;
        if let Some((server, reason)) = mux.failures().first() {
            return Err(anyhow!(
                "server `{server}` is unavailable, so it cannot be pinned: {reason}; fix: make it start (`mcpgw tools` shows every server's state), then lock again"
            )
            .into());
        }
        let mut now = Lock {
            version: LOCK_VERSION,
            servers: Default::default(),
        };
        for (spec, (name, pins)) in catalog.servers.iter().zip(mux.current_pins()) {
            let mut pins = pins.ok_or_else(|| {
                anyhow!("server `{name}` has listed nothing yet; fix: lock again")
            })?;
            // A remote server has no image to pin; its definitions are.
            if spec.remote.is_none() {
                pins.image = runtime.image_digest(spec).await?;
            }
            now.servers.insert(name.to_string(), pins);
        }
        Ok(now)
    })
    .await?;
    let changes = differences(previous.as_ref().unwrap_or(&Lock::default()), &now);
    let shown = lock_path.display();
    match (mode, &previous) {
        (Mode::Check, None) => Err(anyhow!(
            "{shown} does not exist; fix: run `mcpgw lock --catalog {}` and commit it",
            catalog_path.display()
        )
        .into()),
        (Mode::Check, Some(_)) if changes.is_empty() => {
            print_stdout(&format!("{shown}: the servers match their pins\n"));
            Ok(())
        }
        (Mode::Check, Some(_)) => {
            print_stdout(&render(&changes));
            Err(anyhow!(
                "{} difference(s) from {shown}; fix: review them, then `mcpgw lock --update` to re-pin",
                changes.len()
            )
            .into())
        }
        (Mode::Create, Some(_)) if !changes.is_empty() => {
            print_stdout(&render(&changes));
            Err(anyhow!(
                "{shown} exists and the servers differ from it ({} difference(s), above); fix: review them, then `mcpgw lock --update` to re-pin",
                changes.len()
            )
            .into())
        }
        (Mode::Create, Some(_)) | (Mode::Update, Some(_)) if changes.is_empty() => {
            print_stdout(&format!("{shown}: already up to date\n"));
            Ok(())
        }
        _ => {
            write(&lock_path, &now)?;
            if previous.is_some() {
                print_stdout(&render(&changes));
            }
            print_stdout(&format!("wrote {shown}: {}\n", summary(&now)));
            Ok(())
        }
    }
}

/// Writes `lock` to `path` whole or not at all: into a temporary file
/// beside it, then renamed over it.
fn write(path: &Path, lock: &Lock) -> Result<(), Failure> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    let mut file = tempfile::NamedTempFile::new_in(dir.unwrap_or(Path::new(".")))
        .map_err(|e| anyhow!("cannot write {}: {e}", path.display()))?;
    std::io::Write::write_all(&mut file, lock.render().as_bytes())
        .map_err(|e| anyhow!("cannot write {}: {e}", path.display()))?;
    file.persist(path)
        .map_err(|e| anyhow!("cannot write {}: {e}", path.display()))?;
    Ok(())
}

/// "N server(s), N tool(s), …" for the last line of a write.
fn summary(lock: &Lock) -> String {
    let count = |f: fn(&ServerLock) -> usize| lock.servers.values().map(f).sum::<usize>();
    format!(
        "{} server(s), {} tool(s), {} prompt(s), {} resource(s), {} resource template(s)",
        lock.servers.len(),
        count(|s| s.tools.len()),
        count(|s| s.prompts.len()),
        count(|s| s.resources.len()),
        count(|s| s.resource_templates.len()),
    )
}

/// Every difference between the `pinned` lockfile and what is listed
/// `now`, one paragraph each, in server order.
pub(crate) fn differences(pinned: &Lock, now: &Lock) -> Vec<String> {
    let mut out = Vec::new();
    for name in pinned
        .servers
        .keys()
        .filter(|k| !now.servers.contains_key(*k))
    {
        out.push(format!(
            "server `{name}` is in the lockfile but not in the catalog"
        ));
    }
    for (name, listed) in &now.servers {
        let Some(locked) = pinned.servers.get(name) else {
            if pinned.servers.is_empty() {
                // A first lock: nothing to compare with.
                continue;
            }
            out.push(format!("server `{name}` is new: nothing of it is pinned"));
            continue;
        };
        if locked.image != listed.image {
            out.push(format!(
                "server `{name}`: image {} is now {}",
                locked.image.as_deref().unwrap_or("(not pinned)"),
                listed.image.as_deref().unwrap_or("(not present)")
            ));
        }
        for (kind, before, after) in [
            (ItemKind::Tool, &locked.tools, &listed.tools),
            (ItemKind::Prompt, &locked.prompts, &listed.prompts),
            (ItemKind::Resource, &locked.resources, &listed.resources),
            (
                ItemKind::ResourceTemplate,
                &locked.resource_templates,
                &listed.resource_templates,
            ),
        ] {
            for drift in pin::compare(name, kind, before, after) {
                out.push(match &drift.change {
                    Change::Unpinned { .. } => {
                        format!("{}: new, not pinned", drift.item_name())
                    }
                    Change::Changed { diff } => format!("{}: changed\n{diff}", drift.item_name()),
                    Change::Gone => format!("{}: no longer listed", drift.item_name()),
                });
            }
        }
    }
    out
}

fn render(changes: &[String]) -> String {
    let mut out = String::new();
    for change in changes {
        out.push_str(change);
        if !change.ends_with('\n') {
            out.push('\n');
        }
    }
    out
}
