//! What every container is created with. Each default closes a door an MCP
//! server has no business opening; the catalog can relax only what it has an
//! explicit key for (network, user, writable volumes), and nothing here reads
//! a key that would grant privilege.
//!
//! - all Linux capabilities dropped, and `no-new-privileges` so setuid
//!   binaries cannot regain them;
//! - a read-only root filesystem, with a small `noexec` tmpfs at `/tmp`;
//! - no network (`none`) unless the catalog names one;
//! - memory (with swap capped at the same), CPU and pids limits;
//! - a non-root user when the image does not name one (`65534`, nobody);
//! - never privileged, never the Docker socket (the catalog refuses it);
//! - `init`, so a server's children are reaped and signals are forwarded;
//! - auto-remove, so an exited container disappears by itself;
//! - stdin kept open and closed once (`stdin_once`): when the gateway's
//!   attach ends, the server sees EOF and exits.

use std::collections::HashMap;

use bollard::models::{ContainerCreateBody, HostConfig};
use mcpgw_catalog::ServerSpec;
use mcpgw_secrets::{ExposeSecret, SecretString};

/// The user a container runs as when neither the catalog nor the image names
/// a non-root one.
pub const DEFAULT_USER: &str = "65534:65534";

/// Options of the `/tmp` tmpfs.
pub const TMPFS_OPTIONS: &str = "rw,noexec,nosuid,nodev,size=64m";

/// The user to run as: the catalog's, else the image's if it is not root,
/// else [`DEFAULT_USER`].
pub fn effective_user(spec: &ServerSpec, image_user: Option<&str>) -> String {
    if let Some(user) = &spec.user {
        return user.clone();
    }
    match image_user {
        Some(u) if !u.is_empty() && !is_root(u) => u.to_string(),
        _ => DEFAULT_USER.to_string(),
    }
}

fn is_root(user: &str) -> bool {
    let name = user.split(':').next().unwrap_or(user);
    name == "0" || name == "root"
}

/// The create request for `spec`'s container.
pub fn container_body(
    spec: &ServerSpec,
    image_user: Option<&str>,
    labels: HashMap<String, String>,
    secret_env: &[(String, SecretString)],
    secret_binds: &[String],
) -> ContainerCreateBody {
    let mut env: Vec<String> = spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    env.extend(
        spec.secrets
            .iter()
            .filter_map(|(var, secret)| Some(format!("{var}={}", secret.file_path()?))),
    );
    env.extend(
        secret_env
            .iter()
            .map(|(var, value)| format!("{var}={}", value.expose_secret())),
    );
    let memory = i64::try_from(spec.resources.memory_bytes).unwrap_or(i64::MAX);
    let host_config = HostConfig {
        cap_drop: Some(vec!["ALL".to_string()]),
        security_opt: Some(vec!["no-new-privileges:true".to_string()]),
        readonly_rootfs: Some(true),
        tmpfs: Some(HashMap::from([(
            "/tmp".to_string(),
            TMPFS_OPTIONS.to_string(),
        )])),
        network_mode: Some(spec.network.mode().to_string()),
        pids_limit: Some(i64::try_from(spec.resources.pids).unwrap_or(i64::MAX)),
        memory: Some(memory),
        memory_swap: Some(memory),
        nano_cpus: Some(i64::try_from(spec.resources.nano_cpus).unwrap_or(i64::MAX)),
        init: Some(true),
        privileged: Some(false),
        // Gone as soon as it exits: a gateway killed without a chance to
        // clean up leaves nothing behind once its servers see stdin close.
        auto_remove: Some(true),
        binds: Some(
            spec.volumes
                .iter()
                .map(mcpgw_catalog::Volume::to_bind)
                .chain(secret_binds.iter().cloned())
                .collect(),
        ),
        ..Default::default()
    };
    ContainerCreateBody {
        image: Some(spec.image.clone()),
        entrypoint: spec.entrypoint.clone(),
        cmd: spec.command.clone(),
        env: Some(env),
        user: Some(effective_user(spec, image_user)),
        labels: Some(labels),
        attach_stdin: Some(true),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        open_stdin: Some(true),
        stdin_once: Some(true),
        tty: Some(false),
        network_disabled: Some(matches!(spec.network, mcpgw_catalog::Network::None)),
        host_config: Some(host_config),
        ..Default::default()
    }
}
