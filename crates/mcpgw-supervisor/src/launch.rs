//! Bringing one server up: container (or, for a remote server, its HTTP
//! endpoint), then MCP session, then inventory, and the report of why that
//! failed; removing it again; and the two hooks the mux calls back through
//! (per-session instances, and the diagnosis of a server that stopped
//! answering).
//!
//! A remote server is the one variant of "launch": instead of a container's
//! stdio, `mcpgw-backend`'s `Remote` opens a byte stream to its endpoint,
//! and the same session, supervision loop and reports run over it.
//!
//! It decides nothing about retries: a failure is classified here and
//! judged by the loop in `supervise.rs`.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use mcpgw_backend::remote::{Ended, Remote};
use mcpgw_backend::{Audience, Backend, Inventory, Relay, Relays};
use mcpgw_catalog::{Catalog, ServerSpec};
use mcpgw_mux::{Diagnose, Instances};
use mcpgw_secrets::Injection;
use parking_lot::Mutex;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

use crate::runtime::{Container, ErrorKind, Runtime, launch};
use crate::stderr::StderrTail;

/// How much of a failed server's stderr goes into its error report.
const STDERR_IN_REPORT: usize = 2048;

/// How long a failure report waits for the engine to record a container's
/// exit (its stdout can close first). A container that is still running,
/// one that hangs, costs its restart this much at most.
const EXIT_RECORDED: Duration = Duration::from_secs(1);

/// Why a start failed, and whether retrying could help.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) report: String,
    pub(crate) kind: ErrorKind,
}

impl Failure {
    pub(crate) fn transient(report: String) -> Self {
        Self {
            report,
            kind: ErrorKind::Transient,
        }
    }
}

/// A server that came up.
#[derive(Debug)]
pub(crate) struct Started {
    pub(crate) backend: Backend,
    pub(crate) inventory: Inventory,
    pub(crate) instance: Instance,
}

/// What a started server runs in.
#[derive(Debug)]
pub(crate) enum Instance {
    /// A container: its ID and its stderr.
    Container { id: String, stderr: StderrTail },
    /// A remote endpoint's session, and why its bridge ended it.
    Remote { ended: Ended },
}

impl Instance {
    /// The container's ID, for a container.
    pub(crate) fn container(&self) -> Option<&str> {
        match self {
            Self::Container { id, .. } => Some(id),
            Self::Remote { .. } => None,
        }
    }
}

/// Starts and removes containers, and keeps the list of those running.
#[derive(Debug, Clone)]
pub(crate) struct Launcher {
    runtime: Arc<dyn Runtime>,
    containers: Arc<Mutex<Vec<String>>>,
    init_timeout: Duration,
    /// The one client, once its first message is read; `None` when the
    /// gateway serves many (HTTP).
    audience: Option<watch::Receiver<Option<Audience>>>,
    /// What it starts, by slot index (catalog order until a reload adds
    /// servers).
    units: Arc<Mutex<HashMap<usize, Arc<Unit>>>>,
}

/// One slot's server as the launcher starts it.
#[derive(Debug)]
struct Unit {
    spec: ServerSpec,
    /// What its containers receive.
    secrets: Injection,
    /// A remote server's endpoint and credentials (`None` for a container
    /// server); an error when its credentials cannot be built, reported at
    /// each start.
    remote: Option<Result<Remote, String>>,
}

impl Launcher {
    pub(crate) fn new(
        runtime: Arc<dyn Runtime>,
        catalog: &Catalog,
        secrets: Vec<Injection>,
        audience: Option<watch::Receiver<Option<Audience>>>,
    ) -> Self {
        let launcher = Self {
            runtime,
            containers: Arc::default(),
            init_timeout: catalog.gateway.init_timeout,
            audience,
            units: Arc::default(),
        };
        let mut secrets = secrets.into_iter();
        for (index, spec) in catalog.servers.iter().enumerate() {
            launcher.add(index, spec, secrets.next().unwrap_or_default());
        }
        launcher
    }

    /// Learns that slot `index` runs `spec`, its containers receiving
    /// `secrets`.
    pub(crate) fn add(&self, index: usize, spec: &ServerSpec, secrets: Injection) {
        let remote = spec.remote.as_ref().map(|remote| {
            let secret = |name: &mcpgw_catalog::SecretName| {
                secrets
                    .named
                    .iter()
                    .find(|(n, _)| n == name.as_str())
                    .map(|(_, v)| v.clone())
            };
            Remote::new(spec.name.as_str(), remote, secret).map_err(|e| e.to_string())
        });
        let unit = Unit {
            spec: spec.clone(),
            secrets,
            remote,
        };
        self.units.lock().insert(index, Arc::new(unit));
    }

    /// Forgets slot `index` (a reload retired it).
    pub(crate) fn forget(&self, index: usize) {
        self.units.lock().remove(&index);
    }

    /// What slot `index` runs.
    pub(crate) fn spec(&self, index: usize) -> Option<ServerSpec> {
        self.units.lock().get(&index).map(|u| u.spec.clone())
    }

    pub(crate) fn runtime(&self) -> &Arc<dyn Runtime> {
        &self.runtime
    }

    /// Forgets every container started, handing back their ids.
    pub(crate) fn take_containers(&self) -> Vec<String> {
        std::mem::take(&mut *self.containers.lock())
    }

    /// Container, then session, then inventory, for server `index`. On
    /// failure, the report carries the container's exit state and the
    /// tail of its stderr, and the container is gone.
    pub(crate) async fn start(
        &self,
        index: usize,
        spec: &ServerSpec,
        session: Option<u64>,
    ) -> Result<Started, Failure> {
        let span = tracing::info_span!(
            target: crate::TRACE_TARGET,
            "server",
            otel.name = "mcpgw.server.start",
            mcp.server.name = %spec.name,
            error.type = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
        );
        let started = self
            .start_in_span(index, spec, session)
            .instrument(span.clone())
            .await;
        if let Err(failure) = &started {
            span.record("error.type", failure.kind.as_str());
            span.record("otel.status_code", "ERROR");
        }
        started
    }

    async fn start_in_span(
        &self,
        index: usize,
        spec: &ServerSpec,
        session: Option<u64>,
    ) -> Result<Started, Failure> {
        let unit = self.units.lock().get(&index).cloned();
        let Some(unit) = unit else {
            return Err(Failure {
                report: format!("server `{}` is no longer in the catalog", spec.name),
                kind: ErrorKind::Permanent,
            });
        };
        if let Some(remote) = &unit.remote {
            let remote = remote.as_ref().map_err(|report| Failure {
                report: report.clone(),
                kind: ErrorKind::Permanent,
            })?;
            return self.open_remote(spec, remote).await;
        }
        let container = launch(&*self.runtime, spec, &unit.secrets, session)
            .await
            .map_err(|e| Failure {
                kind: e.kind(),
                report: e.to_string(),
            })?;
        self.containers.lock().push(container.id.clone());
        tracing::info!(server = %spec.name, container = %container.name, "container started");
        let Container { id, stdio, .. } = container;
        match self.session(spec, stdio.stdout, stdio.stdin).await {
            Ok((backend, inventory)) => Ok(Started {
                backend,
                inventory,
                instance: Instance::Container {
                    id,
                    stderr: stdio.stderr,
                },
            }),
            Err(reason) => {
                let report = self.report(&id, &stdio.stderr, &reason).await;
                self.remove(&id).await;
                Err(Failure::transient(report))
            }
        }
    }

    /// A remote server's endpoint, then session, then inventory. Refused
    /// addresses and missing credentials are permanent failures; an
    /// endpoint that cannot be reached or a token that cannot be had are
    /// transient, retried with backoff.
    async fn open_remote(&self, spec: &ServerSpec, remote: &Remote) -> Result<Started, Failure> {
        let opened = remote
            .open(spec.concurrency.in_flight)
            .await
            .map_err(|e| Failure {
                kind: if e.is_permanent() {
                    ErrorKind::Permanent
                } else {
                    ErrorKind::Transient
                },
                report: e.to_string(),
            })?;
        let ended = opened.ended;
        match self.session(spec, opened.read, opened.write).await {
            Ok((backend, inventory)) => {
                tracing::info!(server = %spec.name, url = %remote.url(), "remote session open");
                Ok(Started {
                    backend,
                    inventory,
                    instance: Instance::Remote { ended },
                })
            }
            Err(reason) => Err(Failure::transient(Self::remote_report(&ended, &reason))),
        }
    }

    /// The MCP session over a server's byte stream, and its inventory.
    async fn session<R, W>(
        &self,
        spec: &ServerSpec,
        read: R,
        write: W,
    ) -> Result<(Backend, Inventory), String>
    where
        R: tokio::io::AsyncRead + Send + Unpin + 'static,
        W: tokio::io::AsyncWrite + Send + Unpin + 'static,
    {
        let audience = self.audience().await;
        let backend = Backend::connect(
            spec.name.as_str(),
            read,
            write,
            self.init_timeout,
            Relays {
                sampling: spec.relay.sampling,
                elicitation: spec.relay.elicitation,
                roots: spec.relay.roots,
            },
            audience,
        )
        .await
        .map_err(|e| e.to_string())?;
        let inventory = backend.inventory().await.map_err(|e| e.to_string())?;
        Ok((backend, inventory))
    }

    /// Why a remote server's session failed: `reason`, and what ended its
    /// connection when that came first.
    fn remote_report(ended: &Ended, reason: &str) -> String {
        match ended.reason() {
            Some(cause) => format!("{reason} ({cause})"),
            None => reason.to_string(),
        }
    }

    /// Why the server in `instance` failed: `reason`, with a container's
    /// exit and stderr or a remote's transport failure.
    pub(crate) async fn report_on(&self, instance: &Instance, reason: &str) -> String {
        match instance {
            Instance::Container { id, stderr } => self.report(id, stderr, reason).await,
            Instance::Remote { ended } => Self::remote_report(ended, reason),
        }
    }

    /// Removes what `instance` runs in (a remote session has nothing left
    /// to remove once closed).
    pub(crate) async fn remove_instance(&self, instance: &Instance) {
        if let Instance::Container { id, .. } = instance {
            self.remove(id).await;
        }
    }

    /// Whom the servers' sessions serve: the one client, once its first
    /// message is read (a client that goes away first leaves the default).
    async fn audience(&self) -> Audience {
        let Some(audience) = &self.audience else {
            return Audience::default();
        };
        let mut audience = audience.clone();
        match audience.wait_for(Option::is_some).await {
            Ok(known) => known.clone().unwrap_or_default(),
            Err(_) => Audience::default(),
        }
    }

    /// Removes container `id` and forgets it.
    pub(crate) async fn remove(&self, id: &str) {
        self.runtime.remove(id).await;
        self.containers.lock().retain(|c| c != id);
    }

    /// Why the server in container `id` failed: `reason`, how the
    /// container ended, and what it last wrote to stderr.
    pub(crate) async fn report(&self, id: &str, stderr: &StderrTail, reason: &str) -> String {
        // The session ended when the container's stdout did; its exit
        // code is there once the engine has recorded the exit.
        let state = self
            .runtime
            .exit(id, EXIT_RECORDED)
            .await
            .map_or_else(String::new, |s| format!(" (container {s})"));
        let tail = stderr.tail(STDERR_IN_REPORT);
        if tail.is_empty() {
            format!("{reason}{state}")
        } else {
            format!("{reason}{state}; its stderr ended with:\n{tail}")
        }
    }
}

/// Starts the instances of `scope: session` servers, each owned by a task
/// that removes its container when the client session ends, the instance's
/// MCP session closes, or the gateway shuts down.
#[derive(Debug, Clone)]
pub(crate) struct SessionInstances {
    launcher: Launcher,
    tasks: TaskTracker,
    shutdown: CancellationToken,
}

impl SessionInstances {
    pub(crate) fn new(launcher: Launcher, tasks: TaskTracker, shutdown: CancellationToken) -> Self {
        Self {
            launcher,
            tasks,
            shutdown,
        }
    }
}

impl Instances for SessionInstances {
    fn start(
        &self,
        index: usize,
        session: u64,
        relay: Arc<dyn Relay>,
        ended: CancellationToken,
    ) -> Pin<Box<dyn Future<Output = Result<Backend, String>> + Send>> {
        let (sender, started) = tokio::sync::oneshot::channel();
        let this = self.clone();
        // The task, not the request, owns the container: a request
        // cancelled during start-up leaves no container behind.
        self.tasks.spawn(async move {
            let Some(spec) = this.launcher.spec(index) else {
                let _ = sender.send(Err("its server is no longer in the catalog".to_string()));
                return;
            };
            let spec = &spec;
            let stop = async {
                tokio::select! {
                    () = ended.cancelled() => {}
                    () = this.shutdown.cancelled() => {}
                }
            };
            let launched = tokio::select! {
                launched = this.launcher.start(index, spec, Some(session)) => launched,
                () = stop => return,
            };
            let started = match launched {
                Ok(started) => started,
                Err(failure) => {
                    let _ = sender.send(Err(failure.report));
                    return;
                }
            };
            tracing::info!(server = %spec.name, session, container = started.instance.container().unwrap_or("(remote)"), "session instance ready");
            started.backend.set_relay(relay);
            let _ = sender.send(Ok(started.backend.clone()));
            tokio::select! {
                () = ended.cancelled() => tracing::info!(server = %spec.name, session, "client session ended; removing its instance"),
                () = this.shutdown.cancelled() => {}
                () = started.backend.closed() => tracing::warn!(server = %spec.name, session, "session instance ended: {}", started.backend.end_reason().unwrap_or_else(|| "its session closed".to_string())),
            }
            started.backend.close();
            this.launcher.remove_instance(&started.instance).await;
        });
        Box::pin(async move {
            started
                .await
                .unwrap_or_else(|_| Err("the gateway is shutting down".to_string()))
        })
    }
}

/// Explains a server that stopped answering by asking the engine which of
/// its container's limits it presses against.
#[derive(Debug, Clone)]
pub(crate) struct Diagnoser {
    runtime: Arc<dyn Runtime>,
    /// The current container of each server, by slot index.
    current: Arc<Mutex<HashMap<usize, String>>>,
}

impl Diagnoser {
    pub(crate) fn new(runtime: Arc<dyn Runtime>) -> Self {
        Self {
            runtime,
            current: Arc::default(),
        }
    }

    /// Server `index` now runs in container `id` (or in none).
    pub(crate) fn set(&self, index: usize, id: Option<String>) {
        let mut current = self.current.lock();
        match id {
            Some(id) => current.insert(index, id),
            None => current.remove(&index),
        };
    }
}

impl Diagnose for Diagnoser {
    fn diagnose(&self, index: usize) -> Pin<Box<dyn Future<Output = Option<String>> + Send>> {
        let id = self.current.lock().get(&index).cloned();
        let runtime = self.runtime.clone();
        Box::pin(async move {
            let reached = runtime.limits_reached(&id?).await;
            (!reached.is_empty()).then(|| reached.join(" and "))
        })
    }
}
