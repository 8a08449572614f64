//! Supervision as a library: one loop per catalog server that starts its
//! container, opens its MCP session, serves it, health-checks it, stops it
//! when an on-demand server goes unused and wakes it for the next call,
//! and restarts it with backoff behind a circuit breaker when it fails;
//! then, on shutdown, removes every container it started.
//!
//! The engine is a [`Runtime`], a trait: the loop never knows which engine
//! it drives (`mcpgw-docker` implements it for Docker and Podman), so every
//! path through the loop is a unit test against a fake runtime under
//! paused time. Time comes from tokio, never from the wall clock.
//!
//! What the loop learns it tells the mux through its [`Slots`]; the MCP
//! session itself is `mcpgw-backend`'s [`Backend`]: the loop opens it over
//! the container's stdio but never reads a message. It does not decide how
//! a container is confined (the runtime does) nor how a request is routed
//! (the mux does).

mod launch;
pub mod restart;
mod runtime;
mod stderr;
mod supervise;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use mcpgw_backend::Audience;
use mcpgw_catalog::{Catalog, ServerSpec};
use mcpgw_mux::{Reload, Slots};
use mcpgw_secrets::Injection;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The `tracing` target of the spans exported to OpenTelemetry (the
/// mux's `trace` module describes them).
pub use mcpgw_mux::trace::TARGET as TRACE_TARGET;
pub use runtime::{
    BoxFuture, Container, Created, ErrorKind, ExitState, Runtime, RuntimeError, Stdio, launch,
};
pub use stderr::StderrTail;

use launch::{Diagnoser, Launcher, SessionInstances};
use supervise::Starter;

/// How long a server may take to exit after its stdin closes before its
/// container is killed. Shutdown as a whole stays well under 10 seconds.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// How long shutdown waits for the loops to notice it before aborting them.
const LOOPS_GRACE: Duration = Duration::from_secs(2);

/// How long a reload waits for the servers it removes to stop and their
/// containers to go.
pub const RELOAD_STOP: Duration = Duration::from_secs(15);

/// What the loops are asked to run: which servers, with which secrets,
/// speaking to whom.
#[derive(Debug)]
pub struct Plan {
    /// The catalog indices of the servers to start; `None` starts all.
    pub only: Option<Vec<usize>>,
    /// What each server's containers receive, by catalog index.
    pub secrets: Vec<Injection>,
    /// The one client, once its first message is read (it decides the era
    /// spoken to the servers); `None` when the gateway serves many (HTTP).
    pub audience: Option<watch::Receiver<Option<Audience>>>,
}

/// The running servers of one gateway and the containers behind them.
#[derive(Debug)]
pub struct Supervisor {
    launcher: Launcher,
    slots: Slots,
    diagnoser: Diagnoser,
    /// Each server's supervision loop.
    tasks: JoinSet<()>,
    /// Each loop's own stop and task, by slot index.
    loops: HashMap<usize, (CancellationToken, tokio::task::Id)>,
    /// The tasks that own `scope: session` instances.
    instances: TaskTracker,
    shutdown: CancellationToken,
}

impl Supervisor {
    /// Starts the servers of `catalog` that `plan` selects, in parallel,
    /// without waiting for them, on `runtime`. `slots` (the mux's) learns
    /// of each as it comes up, fails or goes idle. With one client, its
    /// audience decides the era spoken to the servers: their containers
    /// start at once, their MCP sessions open once it is known.
    pub fn start(runtime: Arc<dyn Runtime>, catalog: &Catalog, slots: Slots, plan: Plan) -> Self {
        let diagnoser = Diagnoser::new(runtime.clone());
        slots.set_diagnosis(Arc::new(diagnoser.clone()));
        let launcher = Launcher::new(runtime, catalog, plan.secrets, plan.audience);
        let mut supervisor = Self {
            launcher,
            slots,
            diagnoser,
            tasks: JoinSet::new(),
            loops: HashMap::new(),
            instances: TaskTracker::new(),
            shutdown: CancellationToken::new(),
        };
        supervisor
            .slots
            .set_instances(Arc::new(SessionInstances::new(
                supervisor.launcher.clone(),
                supervisor.instances.clone(),
                supervisor.shutdown.clone(),
            )));
        for (index, spec) in catalog.servers.iter().enumerate() {
            if plan.only.as_ref().is_some_and(|o| !o.contains(&index)) {
                supervisor
                    .slots
                    .failed(index, "not started for this command");
                continue;
            }
            supervisor.spawn(index, spec, catalog);
        }
        supervisor
    }

    /// Starts the supervision loop of slot `index`, running `spec`.
    fn spawn(&mut self, index: usize, spec: &ServerSpec, catalog: &Catalog) {
        let stop = self.shutdown.child_token();
        let starter = Starter {
            launcher: self.launcher.clone(),
            slots: self.slots.clone(),
            shutdown: self.shutdown.clone(),
            stop: stop.clone(),
            restart: catalog.gateway.restart,
            health: catalog.gateway.health,
            diagnoser: self.diagnoser.clone(),
        };
        let spec = spec.clone();
        let task = self
            .tasks
            .spawn(async move { starter.run(index, spec).await });
        self.loops.insert(index, (stop, task.id()));
    }

    /// Applies the runtime's side of a reload to `catalog`: stops the
    /// servers the mux retired (their loops close their sessions and
    /// remove their containers; this waits for that, within
    /// [`RELOAD_STOP`], since a replacement takes its container's name),
    /// then starts those it added, their containers receiving `secrets`
    /// (by index in `catalog`). Every other server runs on undisturbed.
    pub async fn reload(&mut self, catalog: &Catalog, reload: &Reload, secrets: Vec<Injection>) {
        let mut stopped = Vec::new();
        let mut ending = std::collections::HashSet::new();
        for index in &reload.stop {
            if let Some((stop, task)) = self.loops.remove(index) {
                stop.cancel();
                stopped.push(*index);
                ending.insert(task);
            }
        }
        // Loops of retired servers end once their containers are gone.
        let waited = tokio::time::timeout(RELOAD_STOP, async {
            while !ending.is_empty() {
                match self.tasks.join_next_with_id().await {
                    Some(Ok((task, ()))) => ending.remove(&task),
                    Some(Err(err)) => ending.remove(&err.id()),
                    None => break,
                };
            }
        })
        .await;
        if waited.is_err() {
            tracing::warn!("some servers the reload removed are still stopping");
        }
        let mut secrets: Vec<Option<Injection>> = secrets.into_iter().map(Some).collect();
        for &(index, n) in &reload.start {
            let spec = &catalog.servers[n];
            let injection = secrets
                .get_mut(n)
                .and_then(Option::take)
                .unwrap_or_default();
            self.launcher.add(index, spec, injection);
            self.spawn(index, spec, catalog);
        }
        for index in stopped {
            self.launcher.forget(index);
        }
    }

    /// Closes every session, then stops and removes every container this
    /// gateway started (and any other carrying its instance label), in
    /// parallel.
    pub async fn shutdown(mut self) {
        self.shutdown.cancel();
        for backend in self.slots.backends() {
            backend.close();
        }
        // The loops notice the cancellation at their next await; session
        // instances' tasks remove their containers.
        self.instances.close();
        let _ = tokio::time::timeout(LOOPS_GRACE, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        self.tasks.abort_all();
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, self.instances.wait()).await;
        let runtime = self.launcher.runtime().clone();
        let mut ids = self.launcher.take_containers();
        // Anything labelled with our instance that we lost track of, too.
        if let Ok(own) = runtime.owned().await {
            for id in own {
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
        }
        let mut stops = JoinSet::new();
        for id in ids {
            let runtime = runtime.clone();
            stops.spawn(async move { runtime.stop(&id, SHUTDOWN_GRACE).await });
        }
        while stops.join_next().await.is_some() {}
        tracing::info!("all containers removed");
    }
}
