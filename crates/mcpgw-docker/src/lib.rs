//! The Docker runtime: the only part of mcpgw that knows Docker (or
//! Podman's Docker-compatible API) exists, and the only one using bollard.
//!
//! [`DockerRuntime`] implements the supervisor's [`Runtime`]: it turns a
//! validated [`ServerSpec`] into a hardened container, hands back the
//! container's attached stdio as plain byte streams; stderr goes to the
//! log, tagged with the server name, and its tail is kept for error
//! reports. It also lists, reaps and explains containers for the binary's
//! `ps` and `gc`. It never speaks MCP, and never decides when a container
//! starts or stops: that is `mcpgw-supervisor`'s loop.
//!
//! Hardening is not optional: see [`hardening`] for what every container
//! gets and why.

mod egress;
mod error;
mod exits;
pub mod hardening;
mod image;
mod orphans;
mod runtime;
mod secret_files;

use std::collections::HashMap;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bollard::container::{AttachContainerResults, LogOutput};
use bollard::query_parameters::{
    AttachContainerOptionsBuilder, CreateContainerOptionsBuilder, InspectContainerOptions,
    ListContainersOptionsBuilder, RemoveContainerOptionsBuilder, StartContainerOptions,
    WaitContainerOptionsBuilder,
};
use bollard::{API_DEFAULT_VERSION, ClientVersion, Docker};
use futures::{Stream, StreamExt};
use mcpgw_catalog::ServerSpec;
use mcpgw_secrets::Injection;
use tokio::io::AsyncRead;

pub use egress::{Observe as ObserveEgress, Observer as EgressObserver};
pub use error::DockerError;
use mcpgw_supervisor::{Created, ExitState, StderrTail, Stdio};

/// How long `remove` waits for the engine to stop listing a container.
const REMOVAL_WAIT: Duration = Duration::from_secs(10);

/// How many times a container list the engine answered in a form bollard
/// cannot read is asked again (Podman's transient `stopped`; see `labelled`).
const LIST_ATTEMPTS: usize = 5;

/// The compatible API version Podman serves (4.0 and later).
const PODMAN_API: &ClientVersion = &ClientVersion {
    major_version: 1,
    minor_version: 41,
};

/// Label keys every container carries, so a gateway can find its own
/// containers and those of gateways that died.
pub mod labels {
    /// Marks a container as started by mcpgw.
    pub const MANAGED: &str = "io.mcpgw.managed";
    /// The gateway instance that owns the container.
    pub const INSTANCE: &str = "io.mcpgw.instance";
    /// The catalog server the container runs.
    pub const SERVER: &str = "io.mcpgw.server";
    /// The owning gateway's process id.
    pub const PID: &str = "io.mcpgw.pid";
    /// The owning gateway's start time, in seconds since the epoch.
    pub const STARTED: &str = "io.mcpgw.started";
    /// The host the owning gateway runs on.
    pub const HOST: &str = "io.mcpgw.host";
    /// The client session a `scope: session` container serves, numbered
    /// by the gateway.
    pub const SESSION: &str = "io.mcpgw.session";
}

/// A connection to the Docker engine plus this gateway's identity.
#[derive(Debug, Clone)]
pub struct DockerRuntime {
    engine: Engine,
    /// Whether Podman serves the API (asked for, or found behind
    /// `DOCKER_HOST`): where its answers differ, the engine code adapts.
    podman: bool,
    docker: Docker,
    instance: String,
    pid: u32,
    started: u64,
    host: String,
    exits: exits::Exits,
    /// The `as: file` secrets of containers created but not yet started,
    /// by container id; dropped (so unlinked) once the container's mounts
    /// hold them.
    staged: Arc<parking_lot::Mutex<HashMap<String, secret_files::Staged>>>,
    /// The network and proxy of each `egress` server's container, by
    /// container id; torn down once the container is removed.
    egress: Arc<parking_lot::Mutex<HashMap<String, egress::Sidecar>>>,
    /// Where egress proxies' decisions go, once the binary says.
    egress_observer: egress::ObserverSlot,
    /// Stops the event watcher when the last clone is dropped.
    _watcher: Arc<tokio_util::sync::DropGuard>,
}

/// A container some mcpgw gateway started, as `mcpgw ps` shows it.
#[derive(Debug, Clone)]
pub struct Managed {
    /// The container id.
    pub id: String,
    /// The container name.
    pub name: String,
    /// The catalog server it runs.
    pub server: String,
    /// The owning gateway's instance id.
    pub instance: String,
    /// The owning gateway's pid and host.
    pub pid: u32,
    /// The owning gateway's host.
    pub host: String,
    /// The engine's state (`running`, `exited`, ...).
    pub state: String,
    /// Whether its gateway is known to be gone.
    pub orphan: bool,
}

/// Which engine's Docker-compatible API to talk to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Engine {
    /// Docker: `DOCKER_HOST`, else the local default socket.
    #[default]
    Docker,
    /// Podman's service (`podman system service`): `CONTAINER_HOST` or
    /// `DOCKER_HOST`, else the rootless socket under `XDG_RUNTIME_DIR`,
    /// else the system one, `/run/podman/podman.sock`.
    Podman,
}

impl Engine {
    /// The engine's name, for messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::Docker => "Docker",
            Self::Podman => "Podman",
        }
    }

    fn fix(self) -> &'static str {
        match self {
            Self::Docker => "start Docker, or set DOCKER_HOST to its socket",
            Self::Podman => {
                "start its service (`podman system service --time=0`, or `systemctl --user start podman.socket`), or set CONTAINER_HOST to its socket"
            }
        }
    }

    /// Where the engine listens, when the environment or the engine's
    /// conventions say; `None` leaves it to bollard's defaults.
    fn socket(self) -> Option<String> {
        let from = |var: &str| std::env::var(var).ok().filter(|v| !v.is_empty());
        match self {
            Self::Docker => None,
            Self::Podman => from("CONTAINER_HOST")
                .or_else(|| from("DOCKER_HOST"))
                .or_else(|| {
                    let rootless = from("XDG_RUNTIME_DIR")
                        .map(|dir| format!("{dir}/podman/podman.sock"))
                        .filter(|path| Path::new(path).exists());
                    Some(rootless.unwrap_or_else(|| "/run/podman/podman.sock".to_string()))
                }),
        }
    }
}

/// A client for the engine at `socket` (`None`: bollard's local default,
/// `DOCKER_HOST` when it names a Unix socket, else `/var/run/docker.sock`)
/// speaking API `version`. Nothing is sent yet.
fn client(socket: Option<&str>, version: &ClientVersion) -> Result<Docker, bollard::errors::Error> {
    let local = || {
        std::env::var("DOCKER_HOST")
            .ok()
            .filter(|host| host.starts_with("unix://"))
            .unwrap_or_else(|| "unix:///var/run/docker.sock".to_string())
    };
    let socket = socket.map_or_else(local, str::to_string);
    if socket.starts_with("tcp://") || socket.starts_with("http://") {
        Docker::connect_with_http(&socket, 120, version)
    } else {
        let path = socket.strip_prefix("unix://").unwrap_or(&socket);
        Docker::connect_with_unix(path, 120, version)
    }
}

/// An API version as the engine states it (`1.41`).
fn api_version(stated: &str) -> Option<ClientVersion> {
    let (major, minor) = stated.split_once('.')?;
    Some(ClientVersion {
        major_version: major.parse().ok()?,
        minor_version: minor.parse().ok()?,
    })
}

impl DockerRuntime {
    /// Connects to the local Docker engine and checks that it answers.
    ///
    /// # Errors
    ///
    /// [`DockerError::EngineUnavailable`] when no engine answers.
    pub async fn connect() -> Result<Self, DockerError> {
        Self::connect_to(Engine::Docker).await
    }

    /// Connects to `engine` and checks that it answers.
    ///
    /// # Errors
    ///
    /// [`DockerError::EngineUnavailable`] when no engine answers.
    pub async fn connect_to(engine: Engine) -> Result<Self, DockerError> {
        let unavailable = |error| DockerError::EngineUnavailable {
            engine: engine.name(),
            error,
            fix: engine.fix(),
        };
        let socket = engine.socket();
        let probe = client(socket.as_deref(), API_DEFAULT_VERSION).map_err(unavailable)?;
        let (docker, podman) = match engine {
            // Podman's `/version` runs conmon and the OCI runtime to report
            // theirs (over half a second, more under load), and every
            // release since 4.0 serves the compatible API as 1.41 (whatever
            // version a path names): no need to ask.
            Engine::Podman => (
                client(socket.as_deref(), PODMAN_API).map_err(unavailable)?,
                true,
            ),
            // Talk the engine's API version, whatever bollard defaults to:
            // older engines (20.10 speaks 1.41) refuse newer versions. The
            // answer also says whether Podman serves it (`DOCKER_HOST`
            // pointing at its socket).
            Engine::Docker => {
                let version = probe.version().await.map_err(unavailable)?;
                let podman = version
                    .components
                    .iter()
                    .flatten()
                    .any(|c| c.name == "Podman Engine");
                match version.api_version.as_deref().and_then(api_version) {
                    Some(served) if served < *API_DEFAULT_VERSION => (
                        client(socket.as_deref(), &served).map_err(unavailable)?,
                        podman,
                    ),
                    _ => (probe, podman),
                }
            }
        };
        docker.ping().await.map_err(unavailable)?;
        let pid = std::process::id();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        // The process start time, not the clock now: that is what an orphan
        // check can compare against /proc later.
        let started = orphans::process_start_epoch(pid).unwrap_or(now.as_secs());
        let instance = format!(
            "{:x}{:05x}",
            now.as_secs() & 0xff_ffff,
            (pid ^ now.subsec_nanos()) & 0xf_ffff
        );
        let stop = tokio_util::sync::CancellationToken::new();
        let exits = exits::Exits::watch(docker.clone(), &instance, stop.clone());
        Ok(Self {
            engine,
            podman,
            docker,
            instance,
            pid,
            started,
            host: orphans::host_name(),
            exits,
            staged: Arc::default(),
            egress: Arc::default(),
            egress_observer: Arc::default(),
            _watcher: Arc::new(stop.drop_guard()),
        })
    }

    /// Whether the engine answers a ping now.
    pub async fn engine_up(&self) -> bool {
        matches!(
            tokio::time::timeout(Duration::from_secs(3), self.docker.ping()).await,
            Ok(Ok(_))
        )
    }

    /// Sends every egress proxy's decisions to `observe` from now on (the
    /// binary's audit trail). Set once; a second call is ignored.
    pub fn on_egress(&self, observe: egress::Observer) {
        let _ = self.egress_observer.set(observe);
    }

    /// This gateway's instance id, as found in container labels and names.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Creates, but does not start, the container for `spec`.
    ///
    /// `secrets` holds the values resolved for the server's `secrets`: they
    /// are passed to the engine, as environment variables or as files under
    /// `/run/secrets/` (staged on the host until the container starts), and
    /// never logged. `session` numbers the client session a `scope:
    /// session` container serves; it goes into the container's name and
    /// labels.
    ///
    /// # Errors
    ///
    /// A missing image, secret files that cannot be staged, or an engine
    /// refusal.
    pub async fn create(
        &self,
        spec: &ServerSpec,
        secrets: &Injection,
        session: Option<u64>,
    ) -> Result<Created, DockerError> {
        let image = image::ensure(&self.docker, self.podman, spec).await?;
        let mut name = format!("mcpgw-{}-{}", spec.name, self.instance);
        let mut labels = HashMap::from([
            (labels::MANAGED.to_string(), "true".to_string()),
            (labels::INSTANCE.to_string(), self.instance.clone()),
            (labels::SERVER.to_string(), spec.name.to_string()),
            (labels::PID.to_string(), self.pid.to_string()),
            (labels::STARTED.to_string(), self.started.to_string()),
            (labels::HOST.to_string(), self.host.clone()),
        ]);
        if let Some(session) = session {
            name.push_str(&format!("-s{session}"));
            labels.insert(labels::SESSION.to_string(), session.to_string());
        }
        let staged = secret_files::Staged::write(&self.instance, &name, &secrets.files).map_err(
            |source| DockerError::SecretFiles {
                server: spec.name.to_string(),
                source,
            },
        )?;
        let sidecar = match &spec.network {
            mcpgw_catalog::Network::Egress(egress) => Some(
                egress::set_up(
                    &self.docker,
                    spec.name.as_str(),
                    &name,
                    egress,
                    &labels,
                    self.egress_observer.clone(),
                )
                .await?,
            ),
            _ => None,
        };
        let mut body = hardening::container_body(
            spec,
            image.user.as_deref(),
            labels,
            &secrets.env,
            staged.binds(),
            sidecar.as_ref().map(|(_, attachment)| attachment),
        );
        if spec.image_digest.is_some() {
            // What was checked is what runs, wherever the name moves.
            body.image = Some(image.id);
        } else if let Some(found_as) = image.found_as {
            // Podman's `localhost/NAME`: created by the name it was found by.
            body.image = Some(found_as);
        }
        let created = match self
            .docker
            .create_container(
                Some(CreateContainerOptionsBuilder::default().name(&name).build()),
                body,
            )
            .await
        {
            Ok(created) => created,
            Err(source) => {
                if let Some((sidecar, _)) = sidecar {
                    sidecar.tear_down(&self.docker).await;
                }
                return Err(DockerError::Create {
                    server: spec.name.to_string(),
                    source,
                });
            }
        };
        self.staged.lock().insert(created.id.clone(), staged);
        if let Some((sidecar, _)) = sidecar {
            self.egress.lock().insert(created.id.clone(), sidecar);
        }
        Ok(Created {
            id: created.id,
            name,
            server: spec.name.to_string(),
        })
    }

    /// Attaches to the stdio of the created container; done before it
    /// starts, since output written before the attach would be lost.
    ///
    /// # Errors
    ///
    /// When the engine refuses the attach.
    pub async fn attach(&self, created: &Created) -> Result<Stdio, DockerError> {
        let AttachContainerResults { output, input } = self
            .docker
            .attach_container(
                &created.id,
                Some(
                    AttachContainerOptionsBuilder::default()
                        .stream(true)
                        .stdin(true)
                        .stdout(true)
                        .stderr(true)
                        .logs(false)
                        .build(),
                ),
            )
            .await
            .map_err(|source| DockerError::Attach {
                server: created.server.clone(),
                source,
            })?;
        let stderr = StderrTail::new(created.server.clone());
        let stdout = demux(output, stderr.clone());
        Ok(Stdio {
            stdin: input,
            stdout: Box::pin(stdout),
            stderr,
        })
    }

    /// Starts the created container.
    ///
    /// # Errors
    ///
    /// When the container would not start.
    pub async fn start(&self, created: &Created) -> Result<(), DockerError> {
        let started = self
            .docker
            .start_container(&created.id, None::<StartContainerOptions>)
            .await
            .map_err(|source| DockerError::Start {
                server: created.server.clone(),
                source,
            });
        // The container's mounts now hold the files; the host keeps nothing.
        self.staged.lock().remove(&created.id);
        started
    }

    /// The content digest (`sha256:…`) of the local image `spec` runs,
    /// as the lockfile pins it; `None` when it is not present. Never pulls.
    ///
    /// # Errors
    ///
    /// The engine cannot inspect it.
    pub async fn image_digest(&self, spec: &ServerSpec) -> Result<Option<String>, DockerError> {
        Ok(image::resolve(&self.docker, self.podman, spec)
            .await?
            .map(|i| i.id))
    }

    /// How the container `id` ended (or stands, if it still runs). An
    /// exited container is removed at once (auto-remove), so once it is
    /// gone its end is read from the engine's events.
    pub async fn exit_state(&self, id: &str) -> Option<ExitState> {
        match self
            .docker
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
        {
            Ok(inspect) => {
                let state = inspect.state?;
                Some(ExitState {
                    code: state.exit_code,
                    oom_killed: state.oom_killed.unwrap_or(false),
                    running: state.running.unwrap_or(false),
                })
            }
            Err(_) => self.exits.take(id, Duration::from_secs(2)).await,
        }
    }

    /// Which of its limits container `id` is pressing against now, in
    /// words, for error reports ("at its pids limit (32 of 32)").
    pub async fn limits_reached(&self, id: &str) -> Vec<String> {
        let options = bollard::query_parameters::StatsOptions {
            stream: false,
            one_shot: true,
        };
        let mut stats = self.docker.stats(id, Some(options));
        let Ok(Some(Ok(stats))) = tokio::time::timeout(Duration::from_secs(3), stats.next()).await
        else {
            return Vec::new();
        };
        let mut reached = Vec::new();
        // Podman's stats carry the pids count without the limit: the limit
        // is then the one the container was created with.
        let configured_pids = async {
            let inspect = self
                .docker
                .inspect_container(id, None::<InspectContainerOptions>)
                .await
                .ok()?;
            inspect
                .host_config?
                .pids_limit
                .and_then(|l| u64::try_from(l).ok())
        };
        let pids = stats.pids_stats.unwrap_or_default();
        let pids_limit = match pids.limit.filter(|&l| l > 0) {
            Some(limit) => Some(limit),
            None if pids.current.is_some() => configured_pids.await,
            None => None,
        };
        if let (Some(current), Some(limit)) = (pids.current, pids_limit)
            && limit > 0
            && current >= limit
        {
            reached.push(format!(
                "at its pids limit ({current} of {limit} processes)"
            ));
        }
        if let Some(memory) = stats.memory_stats
            && let (Some(usage), Some(limit)) = (memory.usage, memory.limit)
            && limit > 0
            && usage.saturating_mul(100) >= limit.saturating_mul(95)
        {
            reached.push(format!(
                "at its memory limit ({} of {} MiB)",
                usage >> 20,
                limit >> 20
            ));
        }
        reached
    }

    /// Waits up to `grace` for the container to exit by itself (its stdin
    /// has been closed), then removes it, killing it if it still runs.
    /// Errors are logged, not returned: removal is best effort at shutdown.
    pub async fn stop(&self, id: &str, grace: Duration) {
        self.wait_exited(id, grace).await;
        self.remove(id).await;
    }

    /// Returns once the container `id` is not running (the engine has
    /// recorded its exit), or after at most `limit`.
    pub async fn wait_exited(&self, id: &str, limit: Duration) {
        let mut wait = self.docker.wait_container(
            id,
            Some(
                WaitContainerOptionsBuilder::default()
                    .condition("not-running")
                    .build(),
            ),
        );
        // A non-zero exit is reported as an error by bollard; either way the
        // container is no longer running.
        let _ = tokio::time::timeout(limit, wait.next()).await;
    }

    /// Removes the container `id`, killing it if it runs, and returns once
    /// the engine no longer lists it (auto-remove may still be under way
    /// when the engine answers 409); then its egress proxy and network,
    /// if it has them.
    pub async fn remove(&self, id: &str) {
        self.remove_container(id).await;
        let sidecar = self.egress.lock().remove(id);
        if let Some(sidecar) = sidecar {
            sidecar.tear_down(&self.docker).await;
        }
    }

    async fn remove_container(&self, id: &str) {
        // Files staged for a container that never started go with it.
        self.staged.lock().remove(id);
        let options = RemoveContainerOptionsBuilder::default().force(true).build();
        match self.docker.remove_container(id, Some(options)).await {
            Ok(()) => tracing::debug!(container = id, "container removed"),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => return,
            // Going: auto-remove got there first.
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 409, ..
            }) => {}
            // Podman, for a container in its transient `stopped` state (it
            // has exited and its cleanup, auto-remove included, is under
            // way), answers 500: it cannot be killed in that state. It is
            // going all the same.
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 500,
                message,
            }) if self.podman && message.contains("container state improper") => {
                tracing::debug!(container = id, "container exiting; waiting for its removal");
            }
            Err(err) => {
                tracing::warn!(container = id, error = %err, "could not remove container");
                return;
            }
        }
        self.wait_gone(id, REMOVAL_WAIT).await;
    }

    /// Returns once the engine has removed `id` (its `wait` with the
    /// condition `removed`), or after at most `limit`.
    async fn wait_gone(&self, id: &str, limit: Duration) {
        let mut removed = self.docker.wait_container(
            id,
            Some(
                WaitContainerOptionsBuilder::default()
                    .condition("removed")
                    .build(),
            ),
        );
        let gone = async {
            match removed.next().await {
                // Gone already, or gone now (bollard reports a non-zero
                // exit code as an error).
                None
                | Some(Ok(_) | Err(bollard::errors::Error::DockerContainerWaitError { .. }))
                | Some(Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 404,
                    ..
                })) => {}
                Some(Err(err)) => {
                    tracing::debug!(container = id, error = %err, "wait failed while waiting for removal");
                }
            }
        };
        if tokio::time::timeout(limit, gone).await.is_err() {
            tracing::warn!(
                container = id,
                "container still listed {limit:?} after removal"
            );
        }
    }

    /// Every container any mcpgw gateway started, with whether its gateway
    /// is gone.
    ///
    /// # Errors
    ///
    /// When the engine cannot list containers.
    pub async fn managed(&self) -> Result<Vec<Managed>, DockerError> {
        let list = self.labelled(&format!("{}=true", labels::MANAGED)).await?;
        Ok(list
            .into_iter()
            .map(|c| {
                let labels = c.labels.unwrap_or_default();
                let label = |k: &str| labels.get(k).cloned().unwrap_or_default();
                let pid: u32 = label(labels::PID).parse().unwrap_or(0);
                let started: u64 = label(labels::STARTED).parse().unwrap_or(0);
                let host = label(labels::HOST);
                // Containers from before the host label are taken to be local.
                let local = host.is_empty() || host == self.host;
                let orphan = local && !orphans::gateway_alive(pid, started);
                Managed {
                    id: c.id.unwrap_or_default(),
                    name: c
                        .names
                        .and_then(|n| n.into_iter().next())
                        .unwrap_or_default()
                        .trim_start_matches('/')
                        .to_string(),
                    server: label(labels::SERVER),
                    instance: label(labels::INSTANCE),
                    pid,
                    host,
                    state: c.state.map(|s| s.to_string()).unwrap_or_default(),
                    orphan,
                }
            })
            .collect())
    }

    /// Removes the containers of gateways that are gone; returns them.
    ///
    /// # Errors
    ///
    /// When the engine cannot list containers.
    pub async fn reap_orphans(&self) -> Result<Vec<Managed>, DockerError> {
        let orphans: Vec<Managed> = self
            .managed()
            .await?
            .into_iter()
            .filter(|m| m.orphan)
            .collect();
        for orphan in &orphans {
            tracing::info!(container = %orphan.name, gateway_pid = orphan.pid, "removing a container whose gateway is gone");
            self.remove(&orphan.id).await;
        }
        self.reap_orphan_networks().await?;
        Ok(orphans)
    }

    /// Removes the egress networks of gateways that are gone (their
    /// containers are removed first, so nothing is attached); returns their
    /// names.
    ///
    /// # Errors
    ///
    /// When the engine cannot list networks.
    pub async fn reap_orphan_networks(&self) -> Result<Vec<String>, DockerError> {
        let filters = HashMap::from([(
            "label".to_string(),
            vec![format!("{}=true", labels::MANAGED)],
        )]);
        let networks = self
            .docker
            .list_networks(Some(bollard::query_parameters::ListNetworksOptions {
                filters: Some(filters),
            }))
            .await
            .map_err(|source| DockerError::List { source })?;
        let mut reaped = Vec::new();
        for network in networks {
            let labels = network.labels.unwrap_or_default();
            let label = |k: &str| labels.get(k).cloned().unwrap_or_default();
            let host = label(labels::HOST);
            let local = host.is_empty() || host == self.host;
            let alive = orphans::gateway_alive(
                label(labels::PID).parse().unwrap_or(0),
                label(labels::STARTED).parse().unwrap_or(0),
            );
            if local
                && !alive
                && let Some(name) = network.name
            {
                tracing::info!(network = %name, "removing a network whose gateway is gone");
                egress::remove_network(&self.docker, &name).await;
                reaped.push(name);
            }
        }
        Ok(reaped)
    }

    /// The ids of the containers this gateway instance owns.
    ///
    /// # Errors
    ///
    /// When the engine cannot list containers.
    pub async fn own_containers(&self) -> Result<Vec<String>, DockerError> {
        let list = self
            .labelled(&format!("{}={}", labels::INSTANCE, self.instance))
            .await?;
        // Egress proxies go with their servers' containers (`remove`).
        Ok(list
            .into_iter()
            .filter(|c| {
                c.labels
                    .as_ref()
                    .and_then(|l| l.get(egress::ROLE_LABEL))
                    .map(String::as_str)
                    != Some(egress::ROLE_PROXY)
            })
            .filter_map(|c| c.id)
            .collect())
    }

    /// Every container, in any state, carrying `label` (`key=value`).
    async fn labelled(
        &self,
        label: &str,
    ) -> Result<Vec<bollard::models::ContainerSummary>, DockerError> {
        let filters = HashMap::from([("label".to_string(), vec![label.to_string()])]);
        let options = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        // Podman lists a container that has just exited as `stopped` until
        // its cleanup, a state Docker's API (and so bollard) does not know:
        // the whole answer fails to parse. That state lasts a moment, and
        // the compatible API has no way to wait for its end, so the list is
        // asked again a few times, at growing intervals.
        let mut pause = Duration::from_millis(20);
        for _ in 0..LIST_ATTEMPTS {
            match self.docker.list_containers(Some(options.clone())).await {
                Err(bollard::errors::Error::JsonDataError { .. }) => {
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                }
                listed => return listed.map_err(|source| DockerError::List { source }),
            }
        }
        self.docker
            .list_containers(Some(options))
            .await
            .map_err(|source| DockerError::List { source })
    }
}

/// Splits Docker's multiplexed attach stream: stdout frames become the
/// returned reader, stderr frames go to `stderr`. The stderr side is driven by
/// reads of stdout, which the MCP client performs continuously.
fn demux(
    output: Pin<Box<dyn Stream<Item = Result<LogOutput, bollard::errors::Error>> + Send>>,
    stderr: StderrTail,
) -> impl AsyncRead + Send {
    let frames = output.filter_map(move |item| {
        let out = match item {
            Ok(LogOutput::StdOut { message }) => Some(Ok(message)),
            Ok(LogOutput::StdErr { message }) => {
                stderr.push(&message);
                None
            }
            Ok(_) => None,
            Err(err) => Some(Err(std::io::Error::other(err))),
        };
        std::future::ready(out)
    });
    tokio_util::io::StreamReader::new(frames)
}
