//! What every container is created with. Each default closes a door an MCP
//! server has no business opening; the catalog can relax only what it has an
//! explicit key for (network, user, writable volumes), and nothing here reads
//! a key that would grant privilege.
//!
//! - all Linux capabilities dropped, and `no-new-privileges` so setuid
//!   binaries cannot regain them;
//! - a read-only root filesystem, with a small `noexec` tmpfs at `/tmp`;
//! - no network (`none`) unless the catalog names one; with `egress`, a
//!   network of the server's own with no route out (see `egress.rs`),
//!   whose only peer is its egress proxy, named in `HTTPS_PROXY` and
//!   friends;
//! - memory (with swap capped at the same), CPU and pids limits;
//! - a non-root user when the image does not name one (`65534`, nobody);
//! - never privileged, never the Docker socket (the catalog refuses it);
//! - `init`, so a server's children are reaped and signals are forwarded;
//! - auto-remove, so an exited container disappears by itself;
//! - stdin kept open and closed once (`stdin_once`): when the gateway's
//!   attach ends, the server sees EOF and exits.
//!
//! The egress proxy ([`proxy_body`]) gets the same confinement, with
//! limits of its own sized for it, and no stdin.

use std::collections::HashMap;

use bollard::models::{ContainerCreateBody, EndpointSettings, HostConfig, NetworkingConfig};
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

/// Where an `egress` server's container is attached: its own network, and
/// the proxy's URL on it.
#[derive(Debug, Clone)]
pub struct EgressAttachment {
    /// The server's internal network.
    pub network: String,
    /// `http://ALIAS:PORT`, the proxy as the server reaches it.
    pub proxy_url: String,
}

/// The variables every proxy-aware client reads, in both cases (curl and
/// Go read the lowercase ones first, Python both, some tools only one).
fn proxy_env(proxy_url: &str) -> Vec<String> {
    let no_proxy = "localhost,127.0.0.1,::1";
    let mut env = Vec::new();
    for (var, value) in [
        ("HTTPS_PROXY", proxy_url),
        ("HTTP_PROXY", proxy_url),
        ("NO_PROXY", no_proxy),
    ] {
        env.push(format!("{var}={value}"));
        env.push(format!("{}={value}", var.to_ascii_lowercase()));
    }
    env
}

/// The create request for `spec`'s container; `egress` when the catalog
/// gives it an `egress` network.
pub fn container_body(
    spec: &ServerSpec,
    image_user: Option<&str>,
    labels: HashMap<String, String>,
    secret_env: &[(String, SecretString)],
    secret_binds: &[String],
    egress: Option<&EgressAttachment>,
) -> ContainerCreateBody {
    let mut env: Vec<String> = spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    if let Some(egress) = egress {
        env.extend(proxy_env(&egress.proxy_url));
    }
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
        network_mode: Some(match (egress, spec.network.mode()) {
            (Some(egress), _) => egress.network.clone(),
            (None, Some(mode)) => mode.to_string(),
            // An egress server without its network is given none at all.
            (None, None) => "none".to_string(),
        }),
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
        network_disabled: Some(
            egress.is_none()
                && matches!(
                    spec.network,
                    mcpgw_catalog::Network::None | mcpgw_catalog::Network::Egress(_)
                ),
        ),
        host_config: Some(host_config),
        ..Default::default()
    }
}

/// The port the egress proxy listens on.
pub const PROXY_PORT: u16 = 3128;

/// The proxy's name on its server's network.
pub const PROXY_ALIAS: &str = "egress-proxy";

/// The egress proxy's limits: it holds a few buffers per connection.
const PROXY_MEMORY: i64 = 64 << 20;
const PROXY_NANO_CPUS: i64 = 500_000_000;
const PROXY_PIDS: i64 = 64;

/// The create request for `server`'s egress proxy: `image` runs `mcpgw
/// egress-proxy` with the allowlist, attached to `network` (the server's)
/// under [`PROXY_ALIAS`], serving only clients from `subnet` (that
/// network's); the uplink is connected before it starts.
pub fn proxy_body(
    server: &str,
    allow: &mcpgw_catalog::Egress,
    image: &str,
    network: &str,
    subnet: Option<&str>,
    labels: HashMap<String, String>,
) -> ContainerCreateBody {
    let mut cmd = vec![
        "egress-proxy".to_string(),
        "--server".to_string(),
        server.to_string(),
        "--listen".to_string(),
        format!("0.0.0.0:{PROXY_PORT}"),
    ];
    if let Some(subnet) = subnet {
        cmd.push("--peers".to_string());
        cmd.push(subnet.to_string());
    }
    for rule in allow.rules() {
        cmd.push("--allow".to_string());
        cmd.push(rule.to_string());
    }
    let host_config = HostConfig {
        cap_drop: Some(vec!["ALL".to_string()]),
        security_opt: Some(vec!["no-new-privileges:true".to_string()]),
        readonly_rootfs: Some(true),
        network_mode: Some(network.to_string()),
        pids_limit: Some(PROXY_PIDS),
        memory: Some(PROXY_MEMORY),
        memory_swap: Some(PROXY_MEMORY),
        nano_cpus: Some(PROXY_NANO_CPUS),
        init: Some(true),
        privileged: Some(false),
        auto_remove: Some(true),
        ..Default::default()
    };
    ContainerCreateBody {
        image: Some(image.to_string()),
        cmd: Some(cmd),
        env: Some(vec!["RUST_LOG=info".to_string()]),
        user: Some(DEFAULT_USER.to_string()),
        labels: Some(labels),
        tty: Some(false),
        host_config: Some(host_config),
        networking_config: Some(NetworkingConfig {
            endpoints_config: Some(HashMap::from([(
                network.to_string(),
                EndpointSettings {
                    aliases: Some(vec![PROXY_ALIAS.to_string()]),
                    ..Default::default()
                },
            )])),
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(network: &str) -> ServerSpec {
        let yaml =
            format!("version: 1\nservers:\n  s:\n    image: img:dev\n    network: {network}\n");
        let catalog = mcpgw_catalog::parse(
            &yaml,
            std::path::Path::new("c.yaml"),
            std::path::Path::new("."),
        )
        .unwrap();
        catalog.servers[0].clone()
    }

    #[test]
    fn an_egress_server_joins_its_network_with_the_proxy_variables() {
        let spec = spec("{ egress: [api.github.com, \"*.example.com:8443\"] }");
        let attachment = EgressAttachment {
            network: "mcpgw-s-1-egress".to_string(),
            proxy_url: "http://egress-proxy:3128".to_string(),
        };
        let body = container_body(&spec, None, HashMap::new(), &[], &[], Some(&attachment));
        let host = body.host_config.unwrap();
        assert_eq!(host.network_mode.as_deref(), Some("mcpgw-s-1-egress"));
        assert_eq!(body.network_disabled, Some(false));
        let env = body.env.unwrap();
        for var in ["HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"] {
            assert!(
                env.contains(&format!("{var}=http://egress-proxy:3128")),
                "{var}: {env:?}"
            );
        }
        assert!(env.iter().any(|e| e.starts_with("NO_PROXY=localhost")));
        // Without its network (never in practice), it gets none at all.
        let body = container_body(&spec, None, HashMap::new(), &[], &[], None);
        assert_eq!(
            body.host_config.unwrap().network_mode.as_deref(),
            Some("none")
        );
        assert_eq!(body.network_disabled, Some(true));
    }

    #[test]
    fn the_proxy_is_confined_and_given_the_allowlist() {
        let spec = spec("{ egress: [api.github.com, \"*.example.com:8443\"] }");
        let mcpgw_catalog::Network::Egress(egress) = &spec.network else {
            panic!("not egress");
        };
        let body = proxy_body(
            "s",
            &egress.allow,
            "img",
            "net",
            Some("172.30.0.0/16"),
            HashMap::new(),
        );
        assert_eq!(
            body.cmd.unwrap(),
            [
                "egress-proxy",
                "--server",
                "s",
                "--listen",
                "0.0.0.0:3128",
                "--peers",
                "172.30.0.0/16",
                "--allow",
                "api.github.com:443",
                "--allow",
                "*.example.com:8443",
            ]
        );
        assert_eq!(body.user.as_deref(), Some(DEFAULT_USER));
        let host = body.host_config.unwrap();
        assert_eq!(host.cap_drop, Some(vec!["ALL".to_string()]));
        assert_eq!(host.readonly_rootfs, Some(true));
        assert_eq!(host.privileged, Some(false));
        assert_eq!(host.memory, Some(PROXY_MEMORY));
        assert_eq!(host.pids_limit, Some(PROXY_PIDS));
        assert!(host.binds.is_none());
        let endpoints = body.networking_config.unwrap().endpoints_config.unwrap();
        assert_eq!(
            endpoints["net"].aliases,
            Some(vec![PROXY_ALIAS.to_string()])
        );
    }
}
