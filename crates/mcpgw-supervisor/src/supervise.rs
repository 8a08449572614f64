//! One server's supervision loop: start it, serve until its session ends,
//! report why, remove its container, then restart it after a jittered
//! backoff, or open the circuit after repeated quick failures; stop an
//! on-demand server that goes unused and start it again when a call wakes
//! it; ping an idle backend and restart one that stops answering.
//!
//! Every wait is on an event (the session closing, a wake, shutdown) or on
//! tokio's clock, so under paused time the whole loop runs in a unit test.
//! How a container is started is `launch.rs`'s business; when to retry is
//! `restart.rs`'s.

use std::time::Duration;

use mcpgw_backend::Backend;
use mcpgw_catalog::{HealthSpec, Lifecycle, RestartSpec, Scope, ServerSpec};
use mcpgw_mux::Slots;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::launch::{Diagnoser, Failure, Instance, Launcher};
use crate::restart::Restarts;
use crate::runtime::ErrorKind;

/// How long a list change waits for further notices before the lists are
/// read again.
const RELIST_GATHER: Duration = Duration::from_millis(100);

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

/// Everything one server's start-up task needs.
pub(crate) struct Starter {
    pub(crate) launcher: Launcher,
    pub(crate) slots: Slots,
    /// The gateway's shutdown.
    pub(crate) shutdown: CancellationToken,
    /// This loop's own end: the gateway's shutdown, or a reload that
    /// removes or replaces its server (then the loop removes what it
    /// started).
    pub(crate) stop: CancellationToken,
    pub(crate) restart: RestartSpec,
    pub(crate) health: HealthSpec,
    pub(crate) diagnoser: Diagnoser,
}

impl Starter {
    /// Supervises server `index` until shutdown: start it, serve until its
    /// session ends, report why, remove its container, then restart it after
    /// a jittered backoff, or open the circuit after repeated quick failures.
    /// At most one container per server exists at any time.
    pub(crate) async fn run(self, index: usize, spec: ServerSpec) {
        let name = spec.name.to_string();
        for relaxation in spec.relaxations() {
            tracing::warn!(server = %name, "relaxed confinement: {relaxation}");
        }
        let mut restarts = Restarts::new(self.restart);
        let mut engine_outage = false;
        loop {
            let began = Instant::now();
            let start = self.launcher.start(index, &spec, None);
            tokio::pin!(start);
            let outcome = tokio::select! {
                outcome = &mut start => outcome,
                () = self.stop.cancelled() => {
                    if !self.shutdown.is_cancelled() {
                        // A reload took the server out while it started:
                        // let the start finish (within its own timeouts),
                        // so that its container is known, then remove it;
                        // dropped midway, it would outlive the loop.
                        if let Ok(started) = start.await {
                            self.take_down(index, &started.backend, &started.instance).await;
                        }
                    }
                    return;
                }
            };
            if let Ok(started) = &outcome {
                self.diagnoser
                    .set(index, started.instance.container().map(str::to_string));
            }
            let failure = match outcome {
                Ok(started) => {
                    self.slots.started(index, began.elapsed());
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
                        self.take_down(index, &started.backend, &started.instance)
                            .await;
                        self.slots.per_session(index, started.inventory);
                        return;
                    }
                    started.backend.set_relay(self.slots.relay(index));
                    self.slots
                        .ready(index, started.backend.clone(), started.inventory);
                    let verdict = match self.serve(index, &spec, &started.backend).await {
                        Served::Shutdown if self.shutdown.is_cancelled() => return,
                        Served::Shutdown => {
                            // A reload took the server out; the gateway
                            // goes on, so its container goes now.
                            self.take_down(index, &started.backend, &started.instance)
                                .await;
                            return;
                        }
                        Served::Unused => {
                            tracing::info!(server = %name, "stopping an unused on-demand server; a call will start it again");
                            self.take_down(index, &started.backend, &started.instance)
                                .await;
                            self.slots.idle(index);
                            if self
                                .stop
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
                    let report = self.launcher.report_on(&started.instance, &reason).await;
                    self.diagnoser.set(index, None);
                    self.launcher.remove_instance(&started.instance).await;
                    Failure::transient(report)
                }
                Err(failure) => failure,
            };
            // A session that ended because the engine went away is the
            // engine's failure, not the server's (a remote server has no
            // engine).
            let kind = if failure.kind == ErrorKind::Transient
                && spec.remote.is_none()
                && !self.launcher.runtime().engine_up().await
            {
                ErrorKind::EngineDown
            } else {
                failure.kind
            };
            let decision = match kind {
                // Retrying cannot help until someone acts: wait as long as an
                // open circuit does, then look again.
                ErrorKind::Permanent => restarts.give_up(),
                ErrorKind::EngineDown => restarts.engine_down(),
                ErrorKind::Transient => restarts.failed(began.elapsed()),
            };
            let report = if kind == ErrorKind::EngineDown {
                format!(
                    "the {} engine is unavailable ({})",
                    self.launcher.runtime().engine(),
                    failure.report
                )
            } else {
                failure.report
            };
            let message = decision.explain(&report);
            // One error per engine outage, not one per retry.
            if kind == ErrorKind::EngineDown && engine_outage {
                tracing::debug!(server = %name, "{message}");
            } else {
                tracing::error!(server = %name, "{message}");
            }
            engine_outage = kind == ErrorKind::EngineDown;
            self.slots.failed(index, &message);
            if self
                .stop
                .run_until_cancelled(tokio::time::sleep(decision.pause()))
                .await
                .is_none()
            {
                return;
            }
        }
    }

    /// Closes server `index`'s session and removes what it runs in.
    async fn take_down(&self, index: usize, backend: &Backend, instance: &Instance) {
        backend.close();
        self.diagnoser.set(index, None);
        self.launcher.remove_instance(instance).await;
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
                () = self.stop.cancelled() => return Served::Shutdown,
                () = &mut closed => {
                    // Shutdown closes sessions too; only an unrequested end
                    // is a failure.
                    return if self.stop.is_cancelled() { Served::Shutdown } else { Served::Ended(None) };
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
        tokio::time::sleep(RELIST_GATHER).await;
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
