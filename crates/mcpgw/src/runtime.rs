//! The running gateway: starts every catalog server (container, then MCP
//! session) in parallel, reports each to the mux, and on shutdown closes
//! every session and removes every container it started.
//!
//! Each server's start-up is a task in one `JoinSet` owned by [`Gateway`];
//! each open session has a watcher task in the same set. Shutdown cancels
//! them all, then removes containers within [`SHUTDOWN_GRACE`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mcpgw_backend::Inventory;
use mcpgw_backend::{Audience, Backend, Relay, Relays};
use mcpgw_catalog::{Catalog, HealthSpec, Lifecycle, RestartSpec, Scope, ServerSpec};
use mcpgw_mux::{Diagnose, Instances, Mux, Slots};
use mcpgw_supervisor::restart::{Decision, Restarts};
use mcpgw_supervisor::{Container, StderrTail, Supervisor};
use tokio::sync::{Mutex, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::secrets::Resolved;

/// How long a server may take to exit after its stdin closes before its
/// container is killed. Shutdown as a whole stays well under 10 seconds.
pub(crate) const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// How much of a failed server's stderr goes into its error report.
const STDERR_IN_REPORT: usize = 2048;

/// How long a failure report waits for the engine to record a container's
/// exit (its stdout can close first). A container that is still running,
/// one that hangs, costs its restart this much at most.
const EXIT_RECORDED: Duration = Duration::from_secs(1);

/// The gateway's backends and the containers behind them.
pub(crate) struct Gateway {
    launcher: Launcher,
    slots: Slots,
    tasks: JoinSet<()>,
    /// The tasks that own `scope: session` instances.
    instances: TaskTracker,
    shutdown: CancellationToken,
}

impl Gateway {
    /// Starts the servers of `catalog` selected by `only` (all when `None`),
    /// in parallel, without waiting for them. The mux learns of each as it
    /// comes up or fails. With one client, its `audience` (learnt from its
    /// first message) decides the era spoken to the servers: their
    /// containers start at once, their MCP sessions open once it is known.
    pub(crate) fn start(
        supervisor: Supervisor,
        catalog: &Catalog,
        only: Option<&[usize]>,
        secrets: &Resolved,
        audience: Option<watch::Receiver<Option<Audience>>>,
    ) -> (Self, Mux) {
        let (mux, slots) = Mux::new(catalog);
        slots.set_secrets(secrets.redactor().clone());
        let diagnoser = Diagnoser {
            supervisor: supervisor.clone(),
            current: Arc::new(parking_lot::Mutex::new(vec![None; catalog.servers.len()])),
        };
        slots.set_diagnosis(Arc::new(diagnoser.clone()));
        let mut gateway = Self {
            launcher: Launcher {
                supervisor,
                containers: Arc::new(Mutex::new(Vec::new())),
                init_timeout: catalog.gateway.init_timeout,
                secrets: secrets.clone(),
                audience,
            },
            slots,
            tasks: JoinSet::new(),
            instances: TaskTracker::new(),
            shutdown: CancellationToken::new(),
        };
        gateway.slots.set_instances(Arc::new(SessionInstances {
            launcher: gateway.launcher.clone(),
            specs: Arc::new(catalog.servers.clone()),
            tasks: gateway.instances.clone(),
            shutdown: gateway.shutdown.clone(),
        }));
        for (index, spec) in catalog.servers.iter().enumerate() {
            if only.is_some_and(|o| !o.contains(&index)) {
                gateway.slots.failed(index, "not started for this command");
                continue;
            }
            let starter = Starter {
                launcher: gateway.launcher.clone(),
                slots: gateway.slots.clone(),
                shutdown: gateway.shutdown.clone(),
                restart: catalog.gateway.restart,
                health: catalog.gateway.health,
                diagnoser: diagnoser.clone(),
            };
            let spec = spec.clone();
            gateway
                .tasks
                .spawn(async move { starter.run(index, spec).await });
        }
        (gateway, mux)
    }

    /// Closes every session, then stops and removes every container this
    /// gateway started, in parallel.
    pub(crate) async fn shutdown(mut self) {
        self.shutdown.cancel();
        for backend in self.slots.backends() {
            backend.close();
        }
        // Start-up tasks notice the cancellation at their next await;
        // session instances' tasks remove their containers.
        self.instances.close();
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        self.tasks.abort_all();
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, self.instances.wait()).await;
        let supervisor = &self.launcher.supervisor;
        let mut ids = std::mem::take(&mut *self.launcher.containers.lock().await);
        // Anything labelled with our instance that we lost track of, too.
        if let Ok(own) = supervisor.own_containers().await {
            for id in own {
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
        }
        let mut stops = JoinSet::new();
        for id in ids {
            let supervisor = supervisor.clone();
            stops.spawn(async move { supervisor.stop(&id, SHUTDOWN_GRACE).await });
        }
        while stops.join_next().await.is_some() {}
        tracing::info!("all containers removed");
    }
}

/// Starts the instances of `scope: session` servers, each owned by a task
/// that removes its container when the client session ends, the instance's
/// MCP session closes, or the gateway shuts down.
#[derive(Clone)]
struct SessionInstances {
    launcher: Launcher,
    specs: Arc<Vec<ServerSpec>>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
}

impl std::fmt::Debug for SessionInstances {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionInstances").finish_non_exhaustive()
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
            let spec = &this.specs[index];
            let stop = async {
                tokio::select! {
                    () = ended.cancelled() => {}
                    () = this.shutdown.cancelled() => {}
                }
            };
            let launched = tokio::select! {
                launched = this.launcher.start(spec, Some(session)) => launched,
                () = stop => return,
            };
            let started = match launched {
                Ok(started) => started,
                Err(failure) => {
                    let _ = sender.send(Err(failure.report));
                    return;
                }
            };
            tracing::info!(server = %spec.name, session, container = %started.id, "session instance ready");
            started.backend.set_relay(relay);
            let _ = sender.send(Ok(started.backend.clone()));
            tokio::select! {
                () = ended.cancelled() => tracing::info!(server = %spec.name, session, "client session ended; removing its instance"),
                () = this.shutdown.cancelled() => {}
                () = started.backend.closed() => tracing::warn!(server = %spec.name, session, "session instance ended: {}", started.backend.end_reason().unwrap_or_else(|| "its session closed".to_string())),
            }
            started.backend.close();
            this.launcher.remove(&started.id).await;
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
struct Diagnoser {
    supervisor: Supervisor,
    /// The current container of each server, by catalog index.
    current: Arc<parking_lot::Mutex<Vec<Option<String>>>>,
}

impl Diagnoser {
    fn set(&self, index: usize, id: Option<String>) {
        self.current.lock()[index] = id;
    }
}

impl Diagnose for Diagnoser {
    fn diagnose(&self, index: usize) -> Pin<Box<dyn Future<Output = Option<String>> + Send>> {
        let id = self.current.lock()[index].clone();
        let supervisor = self.supervisor.clone();
        Box::pin(async move {
            let reached = supervisor.limits_reached(&id?).await;
            (!reached.is_empty()).then(|| reached.join(" and "))
        })
    }
}

/// How serving a started server ended.
enum Served {
    /// The gateway is shutting down.
    Shutdown,
    /// The session ended, by itself or because the gateway ended it (the
    /// reason, then): a failure.
    Ended(Option<String>),
    /// An on-demand server went unused for its idle timeout.
    Unused,
}

/// Why a start failed, and whether retrying could help.
struct Failure {
    report: String,
    kind: FailureKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FailureKind {
    /// The server failed; it may pass.
    Transient,
    /// Retrying cannot help until someone acts (a missing image).
    Permanent,
    /// The Docker engine could not be reached: not the server's fault.
    EngineDown,
}

impl Failure {
    fn transient(report: String) -> Self {
        Self {
            report,
            kind: FailureKind::Transient,
        }
    }
}

/// A server that came up.
struct Started {
    backend: Backend,
    inventory: Inventory,
    id: String,
    stderr: StderrTail,
}

/// Starts and removes containers, and keeps the list of those running.
#[derive(Clone)]
struct Launcher {
    supervisor: Supervisor,
    containers: Arc<Mutex<Vec<String>>>,
    init_timeout: Duration,
    secrets: Resolved,
    /// The one client, once its first message is read; `None` when the
    /// gateway serves many (HTTP).
    audience: Option<watch::Receiver<Option<Audience>>>,
}

/// Everything one server's start-up task needs.
struct Starter {
    launcher: Launcher,
    slots: Slots,
    shutdown: CancellationToken,
    restart: RestartSpec,
    health: HealthSpec,
    diagnoser: Diagnoser,
}

impl Starter {
    /// Supervises server `index` until shutdown: start it, serve until its
    /// session ends, report why, remove its container, then restart it after
    /// a jittered backoff, or open the circuit after repeated quick failures.
    /// At most one container per server exists at any time.
    async fn run(self, index: usize, spec: ServerSpec) {
        let name = spec.name.to_string();
        for relaxation in spec.relaxations() {
            tracing::warn!(server = %name, "relaxed confinement: {relaxation}");
        }
        let mut restarts = Restarts::new(self.restart);
        let mut engine_outage = false;
        loop {
            let began = Instant::now();
            let Some(outcome) = self
                .shutdown
                .run_until_cancelled(self.launcher.start(&spec, None))
                .await
            else {
                return;
            };
            if let Ok(started) = &outcome {
                self.diagnoser.set(index, Some(started.id.clone()));
            }
            let failure = match outcome {
                Ok(started) => {
                    tracing::info!(
                        server = %name,
                        protocol = %started.backend.protocol().as_str(),
                        tools = started.inventory.tools.len(),
                        prompts = started.inventory.prompts.len(),
                        resources = started.inventory.resources.len(),
                        "server ready"
                    );
                    if spec.scope == Scope::Session {
                        // The first instance only teaches the gateway the
                        // server's tools; each client session starts its own.
                        started.backend.close();
                        self.launcher.remove(&started.id).await;
                        self.diagnoser.set(index, None);
                        self.slots.per_session(index, started.inventory);
                        return;
                    }
                    started.backend.set_relay(self.slots.relay(index));
                    self.slots
                        .ready(index, started.backend.clone(), started.inventory);
                    let verdict = match self.serve(index, &spec, &started.backend).await {
                        Served::Shutdown => return,
                        Served::Unused => {
                            tracing::info!(server = %name, "stopping an unused on-demand server; a call will start it again");
                            started.backend.close();
                            self.diagnoser.set(index, None);
                            self.launcher.remove(&started.id).await;
                            self.slots.idle(index);
                            if self
                                .shutdown
                                .run_until_cancelled(self.slots.woken(index))
                                .await
                                .is_none()
                            {
                                return;
                            }
                            continue;
                        }
                        Served::Ended(ours) => ours,
                    };
                    let reason = verdict
                        .or_else(|| started.backend.end_reason())
                        .unwrap_or_else(|| "its session ended".to_string());
                    let report = self
                        .launcher
                        .report(&started.id, &started.stderr, &reason)
                        .await;
                    self.diagnoser.set(index, None);
                    self.launcher.remove(&started.id).await;
                    Failure::transient(report)
                }
                Err(failure) => failure,
            };
            // A session that ended because the engine went away is the
            // engine's failure, not the server's.
            let kind = if failure.kind == FailureKind::Transient
                && !self.launcher.supervisor.engine_up().await
            {
                FailureKind::EngineDown
            } else {
                failure.kind
            };
            let decision = match kind {
                // Retrying cannot help until someone acts: wait as long as an
                // open circuit does, then look again.
                FailureKind::Permanent => restarts.give_up(),
                FailureKind::EngineDown => restarts.engine_down(),
                FailureKind::Transient => restarts.failed(began.elapsed()),
            };
            let failure = Failure {
                report: if kind == FailureKind::EngineDown {
                    format!("the Docker engine is unavailable ({})", failure.report)
                } else {
                    failure.report
                },
                kind,
            };
            let (message, pause) = match decision {
                Decision::WaitForEngine { delay } => (
                    format!(
                        "{}; trying again in {} ms",
                        failure.report,
                        delay.as_millis()
                    ),
                    delay,
                ),
                Decision::RetryAfter { delay, failures } => (
                    format!(
                        "{}; restarting in {} ms (failure {failures} in a row)",
                        failure.report,
                        delay.as_millis()
                    ),
                    delay,
                ),
                Decision::OpenCircuit { open_for, failures } => (
                    format!(
                        "{}; circuit open after {failures} failure(s) in a row: calls fail at once for {}s, then one probe start",
                        failure.report,
                        open_for.as_secs()
                    ),
                    open_for,
                ),
            };
            // One error per engine outage, not one per retry.
            if kind == FailureKind::EngineDown && engine_outage {
                tracing::debug!(server = %name, "{message}");
            } else {
                tracing::error!(server = %name, "{message}");
            }
            engine_outage = kind == FailureKind::EngineDown;
            self.slots.failed(index, &message);
            if self
                .shutdown
                .run_until_cancelled(tokio::time::sleep(pause))
                .await
                .is_none()
            {
                return;
            }
        }
    }

    /// Serves until the session ends, the gateway shuts down, an
    /// on-demand server has gone unused for its idle timeout, or an idle
    /// backend misses too many pings in a row.
    async fn serve(&self, index: usize, spec: &ServerSpec, backend: &Backend) -> Served {
        let idle_after = match spec.lifecycle {
            Lifecycle::OnDemand { idle } => Some(idle),
            Lifecycle::Warm => None,
        };
        let pinging = backend.can_ping();
        let period = [
            idle_after
                .map(|idle| (idle / 4).clamp(Duration::from_millis(50), Duration::from_secs(1))),
            pinging.then_some(self.health.interval),
        ]
        .into_iter()
        .flatten()
        .min();
        let closed = backend.closed();
        tokio::pin!(closed);
        let mut lists = backend.list_changes();
        let mut missed = 0;
        loop {
            let tick = async {
                match period {
                    Some(period) => tokio::time::sleep(period).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = self.shutdown.cancelled() => return Served::Shutdown,
                () = &mut closed => {
                    // Shutdown closes sessions too; only an unrequested end
                    // is a failure.
                    return if self.shutdown.is_cancelled() { Served::Shutdown } else { Served::Ended(None) };
                }
                () = tick => {}
                changed = lists.changed() => {
                    if changed.is_ok() {
                        self.relist(index, spec, backend, &mut lists).await;
                    }
                    continue;
                }
            }
            let Some(unused) = self.slots.unused_for(index) else {
                continue;
            };
            if idle_after.is_some_and(|idle| unused >= idle) {
                return Served::Unused;
            }
            if pinging && unused >= self.health.interval {
                match backend.ping(self.health.timeout).await {
                    Ok(()) => missed = 0,
                    Err(err) => {
                        missed += 1;
                        tracing::warn!(server = %spec.name, missed, "missed a ping: {err}");
                        if missed >= self.health.misses {
                            backend.close();
                            return Served::Ended(Some(format!(
                                "it missed {missed} pings in a row, so the gateway restarted it"
                            )));
                        }
                    }
                }
            }
        }
    }

    /// The backend said a list changed: gather further notices for a moment,
    /// read its inventory again and let the mux tell clients.
    async fn relist(
        &self,
        index: usize,
        spec: &ServerSpec,
        backend: &Backend,
        lists: &mut tokio::sync::watch::Receiver<u64>,
    ) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        // Notices that arrived meanwhile are covered by this re-read.
        lists.borrow_and_update();
        match backend.inventory().await {
            Ok(inventory) => {
                tracing::info!(server = %spec.name, tools = inventory.tools.len(), "server's lists changed");
                self.slots.ready(index, backend.clone(), inventory);
            }
            Err(err) => tracing::warn!(server = %spec.name, "could not re-read its lists: {err}"),
        }
    }
}

impl Launcher {
    /// Container, then session, then inventory. On failure, the report
    /// carries the container's exit state and the tail of its stderr.
    async fn start(&self, spec: &ServerSpec, session: Option<u64>) -> Result<Started, Failure> {
        let container = self
            .supervisor
            .start(spec, &self.secrets.injection(spec), session)
            .await
            .map_err(|e| Failure {
                kind: if e.is_permanent() {
                    FailureKind::Permanent
                } else if e.is_engine_down() {
                    FailureKind::EngineDown
                } else {
                    FailureKind::Transient
                },
                report: e.to_string(),
            })?;
        self.containers.lock().await.push(container.id.clone());
        tracing::info!(server = %spec.name, container = %container.name, "container started");
        let Container {
            id,
            stdin,
            stdout,
            stderr,
            ..
        } = container;
        let audience = self.audience().await;
        let session = async {
            let backend = Backend::connect(
                spec.name.as_str(),
                stdout,
                stdin,
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
            Ok::<_, String>((backend, inventory))
        };
        match session.await {
            Ok((backend, inventory)) => Ok(Started {
                backend,
                inventory,
                id,
                stderr,
            }),
            Err(reason) => {
                let report = self.report(&id, &stderr, &reason).await;
                self.remove(&id).await;
                Err(Failure::transient(report))
            }
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
    async fn remove(&self, id: &str) {
        self.supervisor.remove(id).await;
        self.containers.lock().await.retain(|c| c != id);
    }

    async fn report(&self, id: &str, stderr: &StderrTail, reason: &str) -> String {
        // The session ended when the container's stdout did; its exit
        // code is there once the engine has recorded the exit.
        self.supervisor.wait_exited(id, EXIT_RECORDED).await;
        let state = self
            .supervisor
            .exit_state(id)
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
