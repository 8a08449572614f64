//! The Docker side of `network: { egress: [...] }`: for each container of
//! such a server, a network of its own and an egress proxy on it.
//!
//! The network is a bridge marked `internal` (no route out through the
//! host's NAT) whose bridge holds no IPv4 address on the host
//! (`com.docker.network.bridge.inhibit_ipv4`): without that, Docker still
//! gives an internal network's containers a default route to the bridge's
//! address, and through it they reach every service the host listens on,
//! on any of its addresses. Its containers see each other and nothing else;
//! Docker's embedded DNS there answers only for their names (the proxy's
//! alias), never an outside name. One network per server container keeps
//! servers apart.
//!
//! The proxy is `mcpgw egress-proxy` (the binary's `egress` module) in an
//! image made from the running mcpgw binary itself (a static executable
//! in an otherwise empty image, imported once and reused while the binary
//! is the same), hardened like a server (`hardening::proxy_body`),
//! attached to the server's network under [`hardening::PROXY_ALIAS`] and
//! to the uplink (Docker's `bridge`, or the catalog's `uplink`). One proxy
//! per server container: the allowlist is the proxy's command line, never
//! a lookup of who is asking, and a proxy can reach only its own server's
//! network.
//!
//! The proxy's output is followed by a task per proxy container that ends
//! when the engine ends its log stream (the container is gone): its log
//! lines (stderr) go into the gateway's log, tagged with the server, and
//! its decisions (stdout, one JSON [`EgressDecision`] a line) to the
//! gateway's [`Observer`], which records them in the audit trail.
//!
//! A keeper task per proxy starts it again when it exits (waiting on the
//! engine's `removed` condition, backing off under the supervisor's
//! restart policy) until its server's container is removed; then the
//! proxy and the network go too. Everything carries the instance labels,
//! so a dead gateway's proxies and networks are reaped like its
//! containers.

use std::collections::HashMap;
use std::io::Read as _;
use std::time::Duration;

use bollard::Docker;
use bollard::models::{ContainerCreateBody, NetworkConnectRequest, NetworkCreateRequest};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, RemoveContainerOptionsBuilder,
    StartContainerOptions, WaitContainerOptionsBuilder,
};
use bytes::Bytes;
use futures::StreamExt as _;
use mcpgw_catalog::{EgressDecision, EgressSpec};
use tokio_util::sync::CancellationToken;

use crate::DockerError;
use crate::hardening::{self, EgressAttachment};

/// The image the proxy runs, made from this binary.
pub(crate) const PROXY_IMAGE: &str = "mcpgw/egress-proxy:local";

/// Names another image for the proxy (one holding `mcpgw` as its
/// entrypoint), where this binary cannot serve as one (not Linux, not
/// static).
pub(crate) const PROXY_IMAGE_VAR: &str = "MCPGW_EGRESS_IMAGE";

/// The label saying which binary an image was made from (size and
/// modification time), so a new build makes a new image.
const BINARY_LABEL: &str = "io.mcpgw.binary";

/// The label telling a proxy or a network apart from a server container.
pub(crate) const ROLE_LABEL: &str = "io.mcpgw.role";
/// [`ROLE_LABEL`]'s value on proxies.
pub(crate) const ROLE_PROXY: &str = "egress-proxy";

/// The proxy's image: [`PROXY_IMAGE_VAR`]'s, else [`PROXY_IMAGE`], made
/// from this executable unless the image there already was.
pub(crate) async fn proxy_image(docker: &Docker, server: &str) -> Result<String, DockerError> {
    if let Some(image) = std::env::var(PROXY_IMAGE_VAR)
        .ok()
        .filter(|v| !v.is_empty())
    {
        return Ok(image);
    }
    let failed = |reason: String| DockerError::ProxyImage {
        server: server.to_string(),
        reason,
        fix: "run a static Linux build of mcpgw (as released), or set MCPGW_EGRESS_IMAGE to an image whose entrypoint is such a build",
    };
    let exe =
        std::env::current_exe().map_err(|e| failed(format!("cannot find this executable: {e}")))?;
    let meta = std::fs::metadata(&exe)
        .map_err(|e| failed(format!("cannot read {}: {e}", exe.display())))?;
    let modified = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .unwrap_or_default();
    let key = format!(
        "{}-{}.{:09}",
        meta.len(),
        modified.as_secs(),
        modified.subsec_nanos()
    );
    let existing = docker.inspect_image(PROXY_IMAGE).await.ok();
    let current = existing.as_ref().and_then(|i| {
        i.config
            .as_ref()?
            .labels
            .as_ref()?
            .get(BINARY_LABEL)
            .cloned()
    });
    if current.as_deref() == Some(key.as_str()) {
        return Ok(PROXY_IMAGE.to_string());
    }
    if !cfg!(target_os = "linux") || !is_static(&exe) {
        return Err(failed(format!(
            "{} is not a static Linux executable, so it cannot run in an empty image",
            exe.display()
        )));
    }
    tracing::info!(binary = %exe.display(), image = PROXY_IMAGE, "making the egress proxy's image from this binary");
    let (repo, tag) = PROXY_IMAGE
        .split_once(':')
        .unwrap_or((PROXY_IMAGE, "latest"));
    let options = CreateImageOptionsBuilder::default()
        .from_src("-")
        .repo(repo)
        .tag(tag)
        .changes(vec![
            format!("LABEL {BINARY_LABEL}={key}"),
            format!("USER {}", hardening::DEFAULT_USER),
            "ENTRYPOINT [\"/mcpgw\"]".to_string(),
        ])
        .build();
    let body = bollard::body_try_stream(tar_of(exe, meta.len()));
    let mut progress = docker.create_image(Some(options), Some(body), None);
    while let Some(step) = progress.next().await {
        step.map_err(|e| failed(format!("the engine refused the import: {e}")))?;
    }
    // The image the last binary made is now untagged: remove it, unless
    // a container still uses it.
    if let Some(old) = existing.and_then(|i| i.id) {
        let _ = docker
            .remove_image(
                &old,
                None::<bollard::query_parameters::RemoveImageOptions>,
                None,
            )
            .await;
    }
    Ok(PROXY_IMAGE.to_string())
}

/// Whether the executable at `path` names no dynamic loader (its first
/// page holds the `PT_INTERP` path of a dynamic one).
fn is_static(path: &std::path::Path) -> bool {
    let mut head = vec![0u8; 4096];
    let Ok(n) = std::fs::File::open(path).and_then(|mut f| f.read(&mut head)) else {
        return false;
    };
    let head = &head[..n];
    head.starts_with(b"\x7fELF")
        && !head
            .windows(8)
            .any(|w| w == b"/ld-linu" || w == b"/ld-musl")
}

/// A tar archive holding the file at `path` (`len` bytes) as `/mcpgw`,
/// streamed. Written here rather than with the `tar` crate: one regular
/// file needs one 512-byte header, and the file is streamed, never held.
fn tar_of(
    path: std::path::PathBuf,
    len: u64,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    let mut header = [0u8; 512];
    let mut put = |at: usize, field: &[u8]| header[at..at + field.len()].copy_from_slice(field);
    put(0, b"mcpgw");
    put(100, b"0000755\0");
    put(108, b"0000000\0");
    put(116, b"0000000\0");
    put(124, format!("{len:011o}\0").as_bytes());
    put(136, b"00000000000\0");
    put(148, b"        ");
    put(156, b"0");
    put(257, b"ustar\0");
    put(263, b"00");
    let sum: u32 = header.iter().map(|&b| u32::from(b)).sum();
    header[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    let padding = usize::try_from((512 - len % 512) % 512).unwrap_or(0) + 1024;
    let head = futures::stream::once(async move { Ok(Bytes::copy_from_slice(&header)) });
    let body = futures::stream::once(async move { tokio::fs::File::open(path).await })
        .map(|file| match file {
            Ok(file) => tokio_util::io::ReaderStream::with_capacity(file, 1 << 20).left_stream(),
            Err(e) => futures::stream::once(async move { Err(e) }).right_stream(),
        })
        .flatten();
    let tail = futures::stream::once(async move { Ok(Bytes::from(vec![0u8; padding])) });
    head.chain(body).chain(tail)
}

/// Where the proxies' decisions go (the binary's audit trail), once set.
pub trait Observe: Send + Sync + std::fmt::Debug + 'static {
    /// Takes one decision.
    fn decided(&self, decision: EgressDecision);
}

/// A shared [`Observe`].
pub type Observer = std::sync::Arc<dyn Observe>;

/// The runtime's observer, shared with every proxy's log follower.
pub(crate) type ObserverSlot = std::sync::Arc<std::sync::OnceLock<Observer>>;

/// A server container's network and proxy, and the keeper restarting it.
#[derive(Debug)]
pub(crate) struct Sidecar {
    server: String,
    network: String,
    proxy: String,
    stop: CancellationToken,
    keeper: tokio::task::JoinHandle<()>,
}

/// Creates `name`'s network and starts its proxy; returns them, and where
/// the server's container attaches.
pub(crate) async fn set_up(
    docker: &Docker,
    server: &str,
    name: &str,
    egress: &EgressSpec,
    labels: &HashMap<String, String>,
    observer: ObserverSlot,
) -> Result<(Sidecar, EgressAttachment), DockerError> {
    let image = proxy_image(docker, server).await?;
    let network = format!("{name}-egress");
    let step = |step: &'static str| {
        let server = server.to_string();
        move |source| DockerError::Egress {
            server,
            step,
            source,
        }
    };
    let mut network_labels = labels.clone();
    network_labels.insert(ROLE_LABEL.to_string(), "egress-network".to_string());
    docker
        .create_network(NetworkCreateRequest {
            name: network.clone(),
            driver: Some("bridge".to_string()),
            internal: Some(true),
            options: Some(HashMap::from([(
                "com.docker.network.bridge.inhibit_ipv4".to_string(),
                "true".to_string(),
            )])),
            labels: Some(network_labels),
            ..Default::default()
        })
        .await
        .map_err(step("create its egress network"))?;
    // The proxy serves only this network's addresses: it listens on the
    // uplink too, where nothing may borrow the server's allowlist.
    let subnet = docker
        .inspect_network(
            &network,
            None::<bollard::query_parameters::InspectNetworkOptions>,
        )
        .await
        .map_err(step("inspect its egress network"))?
        .ipam
        .and_then(|ipam| ipam.config)
        .into_iter()
        .flatten()
        .find_map(|config| config.subnet);
    let mut proxy_labels = labels.clone();
    proxy_labels.insert(ROLE_LABEL.to_string(), ROLE_PROXY.to_string());
    let proxy = format!("{name}-proxy");
    let body = hardening::proxy_body(
        server,
        &egress.allow,
        &image,
        &network,
        subnet.as_deref(),
        proxy_labels,
    );
    let uplink = egress
        .uplink
        .clone()
        .unwrap_or_else(|| "bridge".to_string());
    let keeper = Keeper {
        docker: docker.clone(),
        server: server.to_string(),
        name: proxy.clone(),
        body,
        uplink,
        observer,
    };
    if let Err(err) = keeper.start().await {
        remove_network(docker, &network).await;
        return Err(err);
    }
    let stop = CancellationToken::new();
    let keeping = tokio::spawn(keeper.keep(stop.clone()));
    let attachment = EgressAttachment {
        network: network.clone(),
        proxy_url: format!(
            "http://{}:{}",
            hardening::PROXY_ALIAS,
            hardening::PROXY_PORT
        ),
    };
    Ok((
        Sidecar {
            server: server.to_string(),
            network,
            proxy,
            stop,
            keeper: keeping,
        },
        attachment,
    ))
}

impl Sidecar {
    /// Stops the keeper, removes the proxy, then the network. Called once
    /// the server's container is gone, so nothing else is attached.
    pub(crate) async fn tear_down(self, docker: &Docker) {
        self.stop.cancel();
        let _ = self.keeper.await;
        remove_container(docker, &self.proxy).await;
        remove_network(docker, &self.network).await;
        tracing::debug!(server = %self.server, network = %self.network, "egress proxy and network removed");
    }
}

/// What it takes to start one server's proxy, again and again.
#[derive(Debug)]
struct Keeper {
    docker: Docker,
    server: String,
    name: String,
    body: ContainerCreateBody,
    uplink: String,
    observer: ObserverSlot,
}

impl Keeper {
    /// Creates the proxy, connects it to the uplink, starts it.
    async fn start(&self) -> Result<(), DockerError> {
        let step = |step: &'static str| {
            let server = self.server.clone();
            move |source| DockerError::Egress {
                server,
                step,
                source,
            }
        };
        let created = self
            .docker
            .create_container(
                Some(
                    CreateContainerOptionsBuilder::default()
                        .name(&self.name)
                        .build(),
                ),
                self.body.clone(),
            )
            .await
            .map_err(step("create its egress proxy"))?;
        let started = async {
            self.docker
                .connect_network(
                    &self.uplink,
                    NetworkConnectRequest {
                        container: created.id.clone(),
                        endpoint_config: None,
                    },
                )
                .await
                .map_err(step("connect its egress proxy to the uplink network"))?;
            self.docker
                .start_container(&created.id, None::<StartContainerOptions>)
                .await
                .map_err(step("start its egress proxy"))
        };
        if let Err(err) = started.await {
            remove_container(&self.docker, &created.id).await;
            return Err(err);
        }
        tokio::spawn(relay_log(
            self.docker.clone(),
            self.server.clone(),
            created.id,
            self.observer.clone(),
        ));
        Ok(())
    }

    /// Starts the proxy again each time it is gone, until `stop`.
    async fn keep(self, stop: CancellationToken) {
        let mut restarts =
            mcpgw_supervisor::restart::Restarts::new(mcpgw_catalog::RestartSpec::default());
        loop {
            let since = tokio::time::Instant::now();
            let mut removed = self.docker.wait_container(
                &self.name,
                Some(
                    WaitContainerOptionsBuilder::default()
                        .condition("removed")
                        .build(),
                ),
            );
            tokio::select! {
                () = stop.cancelled() => return,
                _ = removed.next() => {}
            }
            drop(removed);
            let decision = restarts.failed(since.elapsed());
            tracing::warn!(
                server = %self.server,
                "{}",
                decision.explain("its egress proxy exited")
            );
            // A backoff, not a stand-in for an event.
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(decision.pause()) => {}
            }
            match self.start().await {
                Ok(()) => tracing::info!(server = %self.server, "egress proxy started again"),
                Err(err) => tracing::warn!(server = %self.server, "{err}"),
            }
        }
    }
}

/// Hands the proxy's log lines (its decisions among them) on to the
/// gateway's log, tagged with the server, until the container is gone
/// (the engine ends the stream then): one place to read them, even once
/// the proxy has been removed.
async fn relay_log(docker: Docker, server: String, id: String, observer: ObserverSlot) {
    let options = bollard::query_parameters::LogsOptionsBuilder::default()
        .follow(true)
        .stdout(true)
        .stderr(true)
        .build();
    let mut lines = docker.logs(&id, Some(options));
    while let Some(Ok(output)) = lines.next().await {
        if let bollard::container::LogOutput::StdOut { message } = &output {
            for line in message.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                match serde_json::from_slice::<EgressDecision>(line) {
                    Ok(decision) => {
                        if let Some(observe) = observer.get() {
                            observe.decided(decision);
                        }
                    }
                    Err(_) => {
                        tracing::warn!(%server, "egress proxy wrote something other than a decision to stdout");
                    }
                }
            }
            continue;
        }
        let bytes = output.into_bytes();
        for line in String::from_utf8_lossy(&bytes)
            .lines()
            .filter(|l| !l.is_empty())
        {
            tracing::info!(target: "mcpgw::egress", %server, "proxy: {line}");
        }
    }
}

async fn remove_container(docker: &Docker, id: &str) {
    let options = RemoveContainerOptionsBuilder::default().force(true).build();
    match docker.remove_container(id, Some(options)).await {
        Ok(())
        | Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404 | 409,
            ..
        }) => {}
        Err(err) => {
            tracing::warn!(container = id, error = %err, "could not remove the egress proxy");
        }
    }
    // Returns once it is gone (at once when it already is).
    let mut removed = docker.wait_container(
        id,
        Some(
            WaitContainerOptionsBuilder::default()
                .condition("removed")
                .build(),
        ),
    );
    let _ = tokio::time::timeout(Duration::from_secs(10), removed.next()).await;
}

pub(crate) async fn remove_network(docker: &Docker, network: &str) {
    match docker.remove_network(network).await {
        Ok(())
        | Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => {}
        Err(err) => tracing::warn!(network, error = %err, "could not remove the egress network"),
    }
}
