//! Telling clients that merged lists changed: the diff between two routing
//! tables, a short debounce, and delivery as notifications (handshake era)
//! or on `subscriptions/listen` streams (`2026-07-28`).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast;

use crate::Shared;
use crate::reload::Settings;
use crate::router::RoutingTable;

/// Which merged lists changed, and from what to what, so that each client
/// can tell whether its own view did.
#[derive(Debug, Clone)]
pub(crate) struct ListChange {
    /// For clients that see everything.
    pub(crate) tools: bool,
    pub(crate) prompts: bool,
    pub(crate) resources: bool,
    /// The tables and settings before and after, for clients with a
    /// profile (which see only the tools it permits).
    before: (Arc<RoutingTable>, Arc<Settings>),
    after: (Arc<RoutingTable>, Arc<Settings>),
}

impl ListChange {
    pub(crate) fn between(
        old: (&Arc<RoutingTable>, &Arc<Settings>),
        new: (&Arc<RoutingTable>, &Arc<Settings>),
    ) -> Self {
        let (was, now) = (old.0, new.0);
        Self {
            tools: was.tools() != now.tools(),
            prompts: was.prompts() != now.prompts(),
            resources: was.resources() != now.resources()
                || !was.resource_templates().eq(now.resource_templates()),
            before: (was.clone(), old.1.clone()),
            after: (now.clone(), new.1.clone()),
        }
    }

    /// Whether any client's view changed.
    pub(crate) fn any(&self) -> bool {
        self.tools
            || self.prompts
            || self.resources
            || (!Arc::ptr_eq(&self.before.1, &self.after.1)
                && self.before.1.profiles != self.after.1.profiles)
    }

    /// Whether the tools a client bound to `profile` sees changed (a
    /// profile is a view of tools only; one the catalog lacks sees none).
    pub(crate) fn tools_for(&self, profile: &str) -> bool {
        fn seen<'a>(
            (table, settings): &'a (Arc<RoutingTable>, Arc<Settings>),
            profile: &'a str,
        ) -> impl Iterator<Item = &'a rmcp::model::Tool> {
            let permitted = settings.profiles.get(profile);
            table
                .tools()
                .iter()
                .filter(move |t| permitted.is_some_and(|p| p.permits(&t.name)))
        }
        !seen(&self.before, profile).eq(seen(&self.after, profile))
    }

    /// Which lists a client bound to `profile` (or to none) is told of.
    pub(crate) fn seen_by(&self, profile: Option<&str>) -> Seen {
        match profile {
            None => Seen {
                tools: self.tools,
                prompts: self.prompts,
                resources: self.resources,
            },
            Some(profile) => Seen {
                tools: self.tools_for(profile),
                prompts: false,
                resources: false,
            },
        }
    }

    fn merge(&mut self, other: Self) {
        self.tools |= other.tools;
        self.prompts |= other.prompts;
        self.resources |= other.resources;
        self.after = other.after;
    }
}

/// The lists one client is told changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Seen {
    pub(crate) tools: bool,
    pub(crate) prompts: bool,
    pub(crate) resources: bool,
}

/// How long list changes are gathered before clients are told, so a burst
/// of changes (a backend re-listing, several restarting) is one notice.
const CHANGE_DEBOUNCE: Duration = Duration::from_millis(100);

/// Waits for the next change and gathers those that follow within the
/// debounce window. `None` when the mux is gone.
pub(crate) async fn next_change(
    changes: &mut broadcast::Receiver<ListChange>,
) -> Option<Lagged<ListChange>> {
    let mut change = match changes.recv().await {
        Ok(change) => change,
        // Missed some: say everything may have changed.
        Err(broadcast::error::RecvError::Lagged(_)) => return Some(Lagged::Missed),
        Err(broadcast::error::RecvError::Closed) => return None,
    };
    tokio::time::sleep(CHANGE_DEBOUNCE).await;
    loop {
        match changes.try_recv() {
            Ok(more) => change.merge(more),
            Err(broadcast::error::TryRecvError::Lagged(_)) => return Some(Lagged::Missed),
            Err(_) => return Some(Lagged::Change(change)),
        }
    }
}

/// A change, or word that some were missed.
#[derive(Debug)]
pub(crate) enum Lagged<T> {
    Change(T),
    /// Some changes were missed: every list may have changed.
    Missed,
}

impl Lagged<ListChange> {
    /// Which lists a client bound to `profile` (or to none) is told of.
    pub(crate) fn seen_by(&self, profile: Option<&str>) -> Seen {
        match self {
            Self::Change(change) => change.seen_by(profile),
            Self::Missed => Seen {
                tools: true,
                prompts: profile.is_none(),
                resources: profile.is_none(),
            },
        }
    }
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
                .filter_map(|s| s.client().cloned())
                .filter(|c| crate::relay::is_handshake(&c.peer))
                .collect();
            drop(shared);
            for client in clients {
                let seen = change.seen_by(client.profile.as_deref());
                if seen.tools {
                    let _ = client.peer.notify_tool_list_changed().await;
                }
                if seen.prompts {
                    let _ = client.peer.notify_prompt_list_changed().await;
                }
                if seen.resources {
                    let _ = client.peer.notify_resource_list_changed().await;
                }
            }
        }
    });
}
