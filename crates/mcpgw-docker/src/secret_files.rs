//! Secret files for `as: file` secrets.
//!
//! Each value is written to a file in a private directory (mode 0700) on a
//! host tmpfs (`$XDG_RUNTIME_DIR`, else `/dev/shm`), bind-mounted read-only
//! at `/run/secrets/<name>`, and unlinked as soon as the container has
//! started: the container's mount keeps the file alive, in memory only,
//! until the container is removed, and nothing is left on the host.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use mcpgw_catalog::SECRETS_DIR;
use mcpgw_secrets::{ExposeSecret, SecretString};

/// Files staged for one container; dropping this removes them.
#[derive(Debug)]
pub(crate) struct Staged {
    dir: Option<PathBuf>,
    binds: Vec<String>,
}

impl Staged {
    /// Writes `files` (name, value) for container `container` of gateway
    /// `instance`.
    pub(crate) fn write(
        instance: &str,
        container: &str,
        files: &[(String, SecretString)],
    ) -> std::io::Result<Self> {
        if files.is_empty() {
            return Ok(Self {
                dir: None,
                binds: Vec::new(),
            });
        }
        let dir = base_dir().join(format!("mcpgw-{instance}")).join(container);
        private_dir(dir.parent().unwrap_or(&dir))?;
        private_dir(&dir)?;
        let mut staged = Self {
            dir: Some(dir.clone()),
            binds: Vec::new(),
        };
        for (name, value) in files {
            let path = dir.join(name);
            write_readable(&path, value)?;
            staged
                .binds
                .push(format!("{}:{SECRETS_DIR}/{name}:ro", path.display()));
        }
        Ok(staged)
    }

    /// The bind mounts that expose the files in the container.
    pub(crate) fn binds(&self) -> &[String] {
        &self.binds
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if let Some(dir) = &self.dir {
            if let Err(err) = std::fs::remove_dir_all(dir) {
                tracing::warn!(dir = %dir.display(), error = %err, "could not remove staged secret files");
            }
            // The gateway's own directory goes once its last container's does.
            if let Some(parent) = dir.parent() {
                let _ = std::fs::remove_dir(parent);
            }
        }
    }
}

/// A tmpfs the gateway's user owns, when there is one.
fn base_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from)
        && dir.is_dir()
    {
        return dir;
    }
    let shm = PathBuf::from("/dev/shm");
    if shm.is_dir() {
        return shm;
    }
    std::env::temp_dir()
}

fn private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
        builder.mode(0o700);
        builder.create(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
    }
    #[cfg(not(unix))]
    builder.create(dir)
}

/// Readable by the container's user, whoever that is; only the private
/// directory keeps other host users out.
fn write_readable(path: &Path, value: &SecretString) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o444);
    }
    let mut file = options.open(path)?;
    file.write_all(value.expose_secret().as_bytes())?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staged_files_are_private_and_gone_on_drop() {
        let files = vec![("api.token".to_string(), SecretString::from("value-1234"))];
        let staged = Staged::write("testinstance", "mcpgw-x-testinstance", &files).unwrap();
        let dir = staged.dir.clone().unwrap();
        let file = dir.join("api.token");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "value-1234");
        assert_eq!(
            staged.binds(),
            [format!("{}:/run/secrets/api.token:ro", file.display())]
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o700);
        }
        drop(staged);
        assert!(!dir.exists());
        assert!(!dir.parent().unwrap().exists());
    }
}
