//! Telling clients that merged lists changed: the diff between two routing
//! tables, a short debounce, and delivery as notifications (handshake era)
//! or on `subscriptions/listen` streams (`2026-07-28`).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast;

use crate::Shared;
use crate::router::RoutingTable;

/// Which merged lists changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ListChange {
    pub(crate) tools: bool,
    pub(crate) prompts: bool,
    pub(crate) resources: bool,
}

impl ListChange {
    pub(crate) fn between(old: &RoutingTable, new: &RoutingTable) -> Self {
        Self {
            tools: old.tools() != new.tools(),
            prompts: old.prompts() != new.prompts(),
            resources: old.resources() != new.resources()
                || !old.resource_templates().eq(new.resource_templates()),
        }
    }

    pub(crate) fn any(self) -> bool {
        self.tools || self.prompts || self.resources
    }

    fn merge(&mut self, other: Self) {
        self.tools |= other.tools;
        self.prompts |= other.prompts;
        self.resources |= other.resources;
    }
}

/// How long list changes are gathered before clients are told, so a burst
/// of changes (a backend re-listing, several restarting) is one notice.
const CHANGE_DEBOUNCE: Duration = Duration::from_millis(100);

/// Waits for the next change and gathers those that follow within the
/// debounce window. `None` when the mux is gone.
pub(crate) async fn next_change(
    changes: &mut broadcast::Receiver<ListChange>,
) -> Option<ListChange> {
    let mut change = match changes.recv().await {
        Ok(change) => change,
        // Missed some: say everything may have changed.
        Err(broadcast::error::RecvError::Lagged(_)) => ListChange {
            tools: true,
            prompts: true,
            resources: true,
        },
        Err(broadcast::error::RecvError::Closed) => return None,
    };
    tokio::time::sleep(CHANGE_DEBOUNCE).await;
    while let Ok(more) = changes.try_recv() {
        change.merge(more);
    }
    Some(change)
}

/// Tells handshake-era clients of list changes by notification. The task
/// ends when the mux is dropped.
pub(crate) fn notify_handshake_clients(shared: &Arc<Shared>) {
    let mut changes = shared.changes.subscribe();
    let shared = Arc::downgrade(shared);
    tokio::spawn(async move {
        while let Some(change) = next_change(&mut changes).await {
            let Some(shared) = shared.upgrade() else {
                return;
            };
            let clients: Vec<_> = shared
                .sessions
                .all()
                .iter()
                .filter_map(|s| s.peer())
                .filter(crate::relay::is_handshake)
                .collect();
            drop(shared);
            for client in clients {
                if change.tools {
                    let _ = client.notify_tool_list_changed().await;
                }
                if change.prompts {
                    let _ = client.notify_prompt_list_changed().await;
                }
                if change.resources {
                    let _ = client.notify_resource_list_changed().await;
                }
            }
        }
    });
}
