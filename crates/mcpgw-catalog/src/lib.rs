//! The catalog: the YAML file that says which MCP servers the gateway runs
//! and how each container is confined.
//!
//! [`load`] reads a file, parses it and validates it in one pass, returning a
//! [`Catalog`] of validated specs or a [`CatalogError`] that names the file,
//! line and column, what is wrong and how to fix it. Nothing here starts a
//! container or touches the network: the only I/O is reading the catalog and
//! resolving the host side of volumes.
//!
//! Why validation happens while deserializing: `yaml_serde` attaches a
//! position only to errors raised during deserialization, so every validated
//! type is built from its raw form with `serde(try_from)`. The raw structs in
//! [`raw`] hold exactly what the user wrote (`deny_unknown_fields`); the
//! validated types in [`spec`] are what the rest of the gateway sees.

mod auth;
mod de;
mod diff;
pub mod egress;
mod error;
pub mod ip;
mod limits;
pub mod lock;
mod names;
mod remote;
mod sections;
mod spec;
mod units;
mod volume;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

pub use auth::{AuthSpec, Claim, OAuthSpec, ProfileRule};
pub use diff::{Diff, diff};
pub use egress::{Egress, EgressDecision, EgressRule, Refusal};
pub use error::CatalogError;
pub use ip::AddressClass;
pub use limits::{ClientLimits, Rate, RateLimit, ServerLimits, ToolLimits};
pub use names::{SecretName, Separator, ServerName};
pub use remote::{ClientCredentials, HeaderSpec, RemoteSpec};
pub use spec::{
    AuditSpec, AuditTo, Catalog, Concurrency, Delivery, EgressSpec, GatewaySpec, HealthSpec,
    Lifecycle, Network, OtlpProtocol, Profile, PullPolicy, Redaction, Relay, Resources,
    RestartSpec, SECRETS_DIR, ScanPolicy, Scope, SecretRef, ServerSpec, ToolFilter, ToolMode,
    ToolView, TracingSpec, Volume,
};

/// The largest catalog file we read. Catalogs are hand-written and small; a
/// larger file is a mistake or an attack, and refusing it bounds memory.
pub const MAX_CATALOG_BYTES: u64 = 1024 * 1024;

/// Reads, parses and validates the catalog at `path`, with the pins of its
/// lockfile ([`lock::path_for`]) when there is one.
///
/// Relative host paths in `volumes` resolve against the catalog's directory.
///
/// # Errors
///
/// Returns a [`CatalogError`] naming the file (and, for content errors, the
/// line and column) when the file cannot be read or is not a valid catalog,
/// or when its lockfile cannot be used.
pub fn load(path: &Path) -> Result<Catalog, CatalogError> {
    let mut catalog = load_unlocked(path)?;
    let lock_path = lock::path_for(path);
    if let Some(lock) = lock::Lock::read(&lock_path)? {
        apply_lock(&mut catalog, &lock, &lock_path)?;
    }
    Ok(catalog)
}

/// Puts `lock`'s pins (read from `lock_path`) on `catalog`'s servers.
///
/// # Errors
///
/// When the catalog pins a server's image to one digest and the lockfile
/// to another.
pub fn apply_lock(
    catalog: &mut Catalog,
    lock: &lock::Lock,
    lock_path: &Path,
) -> Result<(), CatalogError> {
    for server in &mut catalog.servers {
        let pins = lock
            .servers
            .get(server.name.as_str())
            .cloned()
            .unwrap_or_default();
        match (&server.image_digest, &pins.image) {
            (Some(catalog_pin), Some(locked)) if catalog_pin != locked => {
                return Err(CatalogError::lock(
                    lock_path,
                    format!(
                        "server `{}`: the catalog pins image digest {catalog_pin} and the lockfile {locked}; fix: run `mcpgw lock --update` to pin what the catalog names",
                        server.name
                    ),
                ));
            }
            (None, Some(locked)) => server.image_digest = Some(locked.clone()),
            _ => {}
        }
        server.pins = Some(std::sync::Arc::new(pins));
    }
    catalog.lock = Some(lock_path.to_path_buf());
    Ok(())
}

/// Reads, parses and validates the catalog at `path` without its lockfile
/// (what `mcpgw lock` starts, to see what the servers are now).
///
/// # Errors
///
/// As [`load`], the lockfile aside.
pub fn load_unlocked(path: &Path) -> Result<Catalog, CatalogError> {
    let text = read_bounded(path)?;
    let base_dir = path
        .canonicalize()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("."));
    parse(&text, path, &base_dir)
}

/// Parses and validates catalog `text` as if it had been read from `path`,
/// resolving relative volume paths against `base_dir`.
///
/// # Errors
///
/// Returns a [`CatalogError`] with the line and column of every problem
/// found ([`sections`] says how more than the first are found).
pub fn parse(text: &str, path: &Path, base_dir: &Path) -> Result<Catalog, CatalogError> {
    if text.len() as u64 > MAX_CATALOG_BYTES {
        return Err(CatalogError::too_large(path, text.len() as u64));
    }
    let profiles = profile_names(text);
    let mut raw = match document(text, base_dir, profiles.clone()) {
        Ok(raw) => raw,
        Err(first) => {
            return Err(every_problem(
                text,
                path,
                base_dir,
                profiles.as_ref(),
                &first,
            ));
        }
    };
    if let spec::AuditTo::File(file) = &mut raw.gateway.audit.to
        && file.is_relative()
    {
        *file = base_dir.join(&*file);
    }
    Ok(Catalog {
        path: path.to_path_buf(),
        sha256: {
            use sha2::Digest as _;
            hex::encode(sha2::Sha256::digest(text.as_bytes()))
        },
        profiles: raw.profiles(),
        gateway: raw.gateway,
        servers: raw.servers,
        lock: None,
    })
}

fn document(
    text: &str,
    base_dir: &Path,
    profiles: Option<BTreeSet<String>>,
) -> Result<spec::Document, yaml_serde::Error> {
    let context = volume::Context::new(base_dir.to_path_buf(), profiles);
    volume::with_context(context, || yaml_serde::from_str(text))
}

/// The names under `profiles:`, read leniently before the real parse so
/// that a section referring to them (`gateway.auth`) can be checked where
/// it is written, whatever the order of the sections; `None` when the
/// file is not a mapping (its own error says so).
fn profile_names(text: &str) -> Option<BTreeSet<String>> {
    #[derive(serde::Deserialize)]
    struct Names {
        #[serde(default)]
        profiles: Option<std::collections::BTreeMap<String, serde::de::IgnoredAny>>,
    }
    let names: Names = yaml_serde::from_str(text).ok()?;
    Some(names.profiles.unwrap_or_default().into_keys().collect())
}

/// The whole file's first error, and those each section finds on its own,
/// in file order.
fn every_problem(
    text: &str,
    path: &Path,
    base_dir: &Path,
    profiles: Option<&BTreeSet<String>>,
    first: &yaml_serde::Error,
) -> CatalogError {
    let mut problems = vec![CatalogError::from_yaml(path, first)];
    for section in sections::sections(text).unwrap_or_default() {
        let Err(err) = document(&section.document(text), base_dir, profiles.cloned()) else {
            continue;
        };
        let problem = CatalogError::from_yaml(path, &err);
        if problem
            .position()
            .is_some_and(|(line, _)| section.holds(line))
        {
            problems.push(problem);
        }
    }
    problems.sort_by_key(CatalogError::position);
    problems.dedup_by_key(|p| p.position());
    CatalogError::all(problems)
}

fn read_bounded(path: &Path) -> Result<String, CatalogError> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|source| CatalogError::io(path, source))?;
    let mut text = String::new();
    // Read one byte past the cap so an oversized file is detected without
    // reading all of it.
    file.take(MAX_CATALOG_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|source| CatalogError::io(path, source))?;
    if text.len() as u64 > MAX_CATALOG_BYTES {
        return Err(CatalogError::too_large(path, text.len() as u64));
    }
    Ok(text)
}

#[cfg(test)]
mod tests;
