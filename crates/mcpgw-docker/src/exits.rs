//! How containers ended, learned from the engine's event stream.
//!
//! Containers are created with auto-remove, so once one exits it cannot be
//! inspected: its exit code and whether the OOM killer ended it come from
//! the `oom` and `die` events instead. One stream per gateway, filtered to
//! its own containers, reconnecting if the engine goes away. Podman's
//! Docker-compatible API sends the same events.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bollard::Docker;
use bollard::query_parameters::EventsOptions;
use futures::StreamExt;
use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::{ExitState, labels};

#[derive(Debug, Default)]
struct Record {
    code: Option<i64>,
    oom_killed: bool,
    died: bool,
}

/// The exits seen so far, by container id.
#[derive(Debug, Clone, Default)]
pub(crate) struct Exits {
    records: Arc<Mutex<HashMap<String, Record>>>,
    changed: Arc<Notify>,
}

impl Exits {
    /// Starts watching the containers of `instance` until `stop` is cancelled.
    pub(crate) fn watch(docker: Docker, instance: &str, stop: CancellationToken) -> Self {
        let exits = Self::default();
        let filters = HashMap::from([
            ("type".to_string(), vec!["container".to_string()]),
            // Podman's Docker-compatible API filters by its own event
            // names (`died`) while it reports Docker's (`die`); Docker
            // ignores the name it does not know.
            (
                "event".to_string(),
                vec!["die".to_string(), "died".to_string(), "oom".to_string()],
            ),
            (
                "label".to_string(),
                vec![format!("{}={instance}", labels::INSTANCE)],
            ),
        ]);
        let recorder = exits.clone();
        tokio::spawn(async move {
            while !stop.is_cancelled() {
                let options = EventsOptions {
                    filters: Some(filters.clone()),
                    ..EventsOptions::default()
                };
                let mut events = docker.events(Some(options));
                loop {
                    let event = tokio::select! {
                        () = stop.cancelled() => return,
                        event = events.next() => event,
                    };
                    match event {
                        Some(Ok(event)) => recorder.record(&event),
                        Some(Err(err)) => {
                            tracing::debug!(error = %err, "engine event stream failed; reconnecting");
                            break;
                        }
                        None => break,
                    }
                }
                // The engine went away; look again shortly.
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        });
        exits
    }

    fn record(&self, event: &bollard::models::EventMessage) {
        let Some(actor) = &event.actor else { return };
        let Some(id) = &actor.id else { return };
        let mut records = self.records.lock();
        let record = records.entry(id.clone()).or_default();
        match event.action.as_deref() {
            Some("oom") => record.oom_killed = true,
            Some("die") => {
                record.died = true;
                record.code = actor
                    .attributes
                    .as_ref()
                    .and_then(|a| a.get("exitCode"))
                    .and_then(|c| c.parse().ok());
            }
            _ => {}
        }
        drop(records);
        self.changed.notify_waiters();
    }

    /// How container `id` ended, waiting up to `wait` for the engine to say.
    /// The record is consumed.
    pub(crate) async fn take(&self, id: &str, wait: Duration) -> Option<ExitState> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let changed = self.changed.notified();
            {
                let mut records = self.records.lock();
                if records.get(id).is_some_and(|r| r.died) {
                    let record = records.remove(id)?;
                    return Some(ExitState {
                        code: record.code,
                        oom_killed: record.oom_killed,
                        running: false,
                    });
                }
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return None;
            }
        }
    }
}
