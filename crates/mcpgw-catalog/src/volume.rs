//! Bind mounts: parsing `host:container[:ro|rw]`, resolving the host side and
//! refusing host paths that would hand a container the keys to the machine.
//!
//! The check runs on the canonical host path (symlinks and `..` resolved), so
//! `./link-to-etc` and `data/../../etc` are caught like `/etc`. A path is
//! refused when it is, is inside, or contains a sensitive path: mounting `/var`
//! would expose `/var/lib/docker` as surely as mounting that directly.
//!
//! Resolution needs the catalog's directory, which serde cannot pass down to
//! a nested `Deserialize`, so [`with_context`] sets it for the duration of one
//! parse on the current thread. The same context carries the profile names
//! the whole file defines, for the checks of `gateway.auth` (`auth.rs`) that
//! refer to them from another section.

use std::cell::RefCell;
use std::path::{Component, Path, PathBuf};

use crate::error::invalid;

/// What checks inside serde need to know about the file being parsed.
#[derive(Debug, Clone)]
pub(crate) struct Context {
    base_dir: PathBuf,
    home: Option<PathBuf>,
    /// The profiles the whole file defines; `None` when that could not be
    /// read (the file's own error is then reported).
    profiles: Option<std::collections::BTreeSet<String>>,
}

impl Context {
    pub(crate) fn new(
        base_dir: PathBuf,
        profiles: Option<std::collections::BTreeSet<String>>,
    ) -> Self {
        Self {
            base_dir,
            home: std::env::var_os("HOME")
                .filter(|h| !h.is_empty())
                .map(PathBuf::from),
            profiles,
        }
    }
}

/// Whether the file being parsed defines profile `name`; `None` when that
/// is not known.
pub(crate) fn profile_defined(name: &str) -> Option<bool> {
    CONTEXT.with(|c| {
        c.borrow()
            .as_ref()
            .and_then(|c| c.profiles.as_ref())
            .map(|p| p.contains(name))
    })
}

thread_local! {
    static CONTEXT: RefCell<Option<Context>> = const { RefCell::new(None) };
}

/// Runs `f` (one catalog parse) with `context` available to [`Volume`].
pub(crate) fn with_context<T>(context: Context, f: impl FnOnce() -> T) -> T {
    struct Reset(Option<Context>);
    impl Drop for Reset {
        fn drop(&mut self) {
            CONTEXT.with(|c| *c.borrow_mut() = self.0.take());
        }
    }
    let previous = CONTEXT.with(|c| c.borrow_mut().replace(context));
    let _reset = Reset(previous);
    f()
}

/// Host paths that are never mounted, nor anything inside or above them.
const SENSITIVE_ABSOLUTE: &[&str] = &[
    "/etc",
    "/proc",
    "/sys",
    "/dev",
    "/boot",
    "/run",
    "/var/run",
    "/var/lib/docker",
    "/var/lib/containerd",
];

/// Paths under the user's home directory that hold credentials.
const SENSITIVE_IN_HOME: &[&str] = &[
    ".ssh",
    ".aws",
    ".azure",
    ".docker",
    ".kube",
    ".gnupg",
    ".password-store",
    ".netrc",
    ".git-credentials",
    ".npmrc",
    ".pypirc",
    ".cargo/credentials.toml",
    ".config/gcloud",
    ".config/gh",
    ".config/mcpgw",
    ".local/share/keyrings",
];

/// A bind mount from the host into a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    /// The canonical host path.
    pub host: PathBuf,
    /// The absolute path inside the container.
    pub container: String,
    /// Read-only unless the catalog wrote `:rw`.
    pub read_only: bool,
}

impl Volume {
    /// The bind in Docker's `host:container:mode` form.
    pub fn to_bind(&self) -> String {
        let mode = if self.read_only { "ro" } else { "rw" };
        format!("{}:{}:{mode}", self.host.display(), self.container)
    }
}

impl TryFrom<String> for Volume {
    type Error = String;

    fn try_from(spec: String) -> Result<Self, String> {
        let context = CONTEXT
            .with(|c| c.borrow().clone())
            .unwrap_or_else(|| Context::new(PathBuf::from("."), None));
        parse(&spec, &context)
    }
}

fn parse(spec: &str, context: &Context) -> Result<Volume, String> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (host, container, mode) = match parts.as_slice() {
        [host, container] => (*host, *container, "ro"),
        [host, container, mode] => (*host, *container, *mode),
        _ => {
            return Err(invalid(
                format_args!("volume `{spec}` is not `host:container[:ro|rw]`"),
                "write it as `./data:/data` (read-only) or `./data:/data:rw`",
            ));
        }
    };
    let read_only = match mode {
        "ro" => true,
        "rw" => false,
        other => {
            return Err(invalid(
                format_args!("volume mode `{other}` is not supported"),
                "use `ro` (the default) or `rw`",
            ));
        }
    };
    if !container.starts_with('/')
        || container == "/"
        || Path::new(container)
            .components()
            .any(|c| c == Component::ParentDir)
    {
        return Err(invalid(
            format_args!(
                "container path `{container}` must be an absolute path other than `/`, without `..`"
            ),
            "mount at a dedicated directory such as `/data`",
        ));
    }
    if host.is_empty() {
        return Err(invalid(
            "volume has an empty host path",
            "name a directory, relative to the catalog or absolute",
        ));
    }
    let expanded = expand_home(host, context)?;
    let joined = if expanded.is_absolute() {
        expanded
    } else {
        context.base_dir.join(expanded)
    };
    let canonical = joined.canonicalize().map_err(|err| {
        invalid(
            format_args!("host path `{}` cannot be resolved: {err}", joined.display()),
            "create it first, or correct the path (relative paths start at the catalog's directory)",
        )
    })?;
    check_not_sensitive(&canonical, context)?;
    Ok(Volume {
        host: canonical,
        container: container.to_string(),
        read_only,
    })
}

fn expand_home(host: &str, context: &Context) -> Result<PathBuf, String> {
    let Some(rest) = host.strip_prefix('~') else {
        return Ok(PathBuf::from(host));
    };
    let home = context.home.as_ref().ok_or_else(|| {
        invalid(
            format_args!("`{host}` uses `~` but HOME is not set"),
            "write the path out in full",
        )
    })?;
    match rest.strip_prefix('/') {
        Some(rest) => Ok(home.join(rest)),
        None if rest.is_empty() => Ok(home.clone()),
        None => Err(invalid(
            format_args!("`{host}`: `~user` paths are not supported"),
            "write the path out in full",
        )),
    }
}

fn sensitive_paths(context: &Context) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = SENSITIVE_ABSOLUTE.iter().map(PathBuf::from).collect();
    if let Some(home) = &context.home {
        paths.extend(SENSITIVE_IN_HOME.iter().map(|p| home.join(p)));
    }
    // Compare canonical forms too, so `/var/run` -> `/run` and a symlinked
    // home are caught whichever way the catalog spells them.
    let canonical: Vec<PathBuf> = paths.iter().filter_map(|p| p.canonicalize().ok()).collect();
    paths.extend(canonical);
    paths
}

fn check_not_sensitive(canonical: &Path, context: &Context) -> Result<(), String> {
    use std::os::unix::fs::FileTypeExt;
    if std::fs::metadata(canonical).is_ok_and(|m| m.file_type().is_socket()) {
        return Err(invalid(
            format_args!(
                "host path `{}` is a socket; a socket (such as the Docker socket) is never mounted",
                canonical.display()
            ),
            "remove this volume: a server that needs the Docker socket controls the host",
        ));
    }
    for sensitive in sensitive_paths(context) {
        if canonical.starts_with(&sensitive) || sensitive.starts_with(canonical) {
            return Err(invalid(
                format_args!(
                    "host path `{}` is or contains `{}`, which is never mounted into a container",
                    canonical.display(),
                    sensitive.display()
                ),
                "mount a dedicated directory that holds only what the server needs",
            ));
        }
    }
    Ok(())
}

crate::de::deserialize_checked!(Volume, str);

#[cfg(test)]
impl Context {
    pub(crate) fn for_test(base_dir: PathBuf, home: Option<PathBuf>) -> Self {
        Self {
            base_dir,
            home,
            profiles: None,
        }
    }
}
