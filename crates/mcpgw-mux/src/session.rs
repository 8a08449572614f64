//! One client session as the mux sees it: its client, what it may see, what
//! it asked for (a log level, resource subscriptions), which servers its
//! requests are in flight at, and its own instances of `scope: session`
//! servers, started by its first use of the server and ended with the
//! session.
//!
//! [`Sessions`] is the registry of the sessions that have a client, so that
//! what a server says outside an answer (a log message, a resource update,
//! a list change) reaches the sessions it concerns and no other.
//!
//! The mux owns the bookkeeping (which session has which instance, and when
//! the session ends); the runtime, through [`Instances`], owns the
//! containers. A [`Session`] is dropped when its client session ends (the
//! HTTP session is closed or expires, or stdin closes), which cancels its
//! `ended` token: the runtime then removes that session's containers, and
//! the registry forgets it.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};

use mcpgw_backend::{Backend, Relay};
use parking_lot::Mutex;
use rmcp::model::LoggingLevel;
use rmcp::service::{Peer, RoleServer};
use tokio_util::sync::CancellationToken;

use crate::{Limit, Shared};

/// Starts private instances of `scope: session` servers. The runtime
/// implements it; the mux does not know about containers.
pub trait Instances: Send + Sync + std::fmt::Debug + 'static {
    /// Starts an instance of server `index` for client session `session`
    /// and returns its MCP session, whose server-to-client requests go to
    /// `relay`. The instance is stopped and removed when `ended` is
    /// cancelled (the client session ended) or its MCP session closes.
    fn start(
        &self,
        index: usize,
        session: u64,
        relay: Arc<dyn Relay>,
        ended: CancellationToken,
    ) -> Pin<Box<dyn Future<Output = Result<Backend, String>> + Send>>;
}

/// One running instance of a server, private to one session.
#[derive(Debug, Clone)]
pub(crate) struct Instance {
    pub(crate) backend: Backend,
    /// Its own bounds: sessions do not queue behind one another.
    pub(crate) limit: Arc<Limit>,
}

/// One client session, as the mux sees it.
#[derive(Debug)]
pub(crate) struct Session {
    /// Numbers the session in container names and labels.
    pub(crate) id: u64,
    /// The session's client and its profile, learned from its first
    /// request.
    client: OnceLock<Client>,
    /// The level this session asked logs from, if it did.
    pub(crate) log_level: Mutex<Option<LoggingLevel>>,
    /// Resources this session subscribed to (`resources/subscribe`).
    pub(crate) subscribed: Mutex<HashSet<String>>,
    /// This session's requests in flight, by slot index (grown as a
    /// reload adds slots).
    busy: boxcar::Vec<AtomicUsize>,
    /// This session's instances, by slot index (grown likewise).
    instances: boxcar::Vec<tokio::sync::Mutex<Option<Instance>>>,
    /// Set while its client takes no notification (`relay.rs`).
    stuck: AtomicBool,
    /// The mux, whose registry the session joins once it has a client.
    shared: Weak<Shared>,
    /// Cancelled when the session ends.
    ended: CancellationToken,
}

/// A session's client.
#[derive(Debug, Clone)]
pub(crate) struct Client {
    pub(crate) peer: Peer<RoleServer>,
    /// Its profile (HTTP, from its token), or `None` for a client that
    /// sees everything.
    pub(crate) profile: Option<String>,
}

impl Session {
    pub(crate) fn new(id: u64, shared: &Arc<Shared>) -> Self {
        Self {
            id,
            client: OnceLock::new(),
            log_level: Mutex::new(None),
            subscribed: Mutex::default(),
            busy: boxcar::Vec::new(),
            instances: boxcar::Vec::new(),
            stuck: AtomicBool::new(false),
            shared: Arc::downgrade(shared),
            ended: CancellationToken::new(),
        }
    }

    /// Learns the session's client from a request; the first time, the
    /// session joins the registry.
    pub(crate) fn remember(self: &Arc<Self>, peer: &Peer<RoleServer>, profile: Option<&str>) {
        if self.client.get().is_some() {
            return;
        }
        let client = Client {
            peer: peer.clone(),
            profile: profile.map(str::to_string),
        };
        if self.client.set(client).is_ok()
            && let Some(shared) = self.shared.upgrade()
        {
            shared
                .sessions
                .sessions
                .lock()
                .insert(self.id, Arc::downgrade(self));
        }
    }

    pub(crate) fn peer(&self) -> Option<Peer<RoleServer>> {
        self.client.get().map(|c| c.peer.clone())
    }

    pub(crate) fn client(&self) -> Option<&Client> {
        self.client.get()
    }

    /// Whether its client is taking no notifications.
    pub(crate) fn is_stuck(&self) -> bool {
        self.stuck.load(Ordering::Acquire)
    }

    /// Marks whether its client is taking no notifications; what it was.
    pub(crate) fn set_stuck(&self, stuck: bool) -> bool {
        self.stuck.swap(stuck, Ordering::AcqRel)
    }

    /// Whether a request of this session is in flight at server `index`.
    pub(crate) fn is_busy_at(&self, index: usize) -> bool {
        self.busy
            .get(index)
            .is_some_and(|n| n.load(Ordering::Acquire) > 0)
    }

    /// Counts a request of this session in flight at server `index` until
    /// the guard is dropped.
    pub(crate) fn busy_at(&self, index: usize) -> Busy<'_> {
        let busy = at(&self.busy, index, || AtomicUsize::new(0));
        busy.fetch_add(1, Ordering::AcqRel);
        Busy(busy)
    }

    /// Closes this session's instance of server `index`, if it has one
    /// (its server was retired by a reload); its task removes the
    /// container.
    pub(crate) fn close_instance(&self, index: usize) {
        let Some(held) = self.instances.get(index) else {
            return;
        };
        if let Ok(held) = held.try_lock()
            && let Some(instance) = held.as_ref()
        {
            instance.backend.close();
        }
    }

    /// This session's instance of server `index`: the running one, or one
    /// that `start` starts (once, however many calls ask at the same time).
    /// An instance whose MCP session has closed is replaced.
    pub(crate) async fn instance<F>(
        &self,
        index: usize,
        start: impl FnOnce(CancellationToken) -> F,
    ) -> Result<Instance, String>
    where
        F: Future<Output = Result<Instance, String>>,
    {
        let mut held = at(&self.instances, index, || tokio::sync::Mutex::new(None))
            .lock()
            .await;
        if let Some(instance) = held.as_ref().filter(|i| !i.backend.is_closed()) {
            return Ok(instance.clone());
        }
        let instance = start(self.ended.clone()).await?;
        *held = Some(instance.clone());
        Ok(instance)
    }

    /// The instances running now.
    pub(crate) fn running(&self) -> Vec<Backend> {
        self.instances
            .iter()
            .filter_map(|(_, held)| held.try_lock().ok()?.as_ref().map(|i| i.backend.clone()))
            .filter(|b| !b.is_closed())
            .collect()
    }
}

/// Element `index` of `items`, which grows with `new` elements until it has
/// one. Concurrent growers may add more than needed; every element starts
/// as `new` makes it, so none is wrong.
fn at<T>(items: &boxcar::Vec<T>, index: usize, new: impl Fn() -> T) -> &T {
    loop {
        if let Some(item) = items.get(index) {
            return item;
        }
        items.push(new());
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.ended.cancel();
        let Some(shared) = self.shared.upgrade() else {
            return;
        };
        shared.sessions.sessions.lock().remove(&self.id);
        // Its subscriptions end with it; the last one of a URI unsubscribes
        // at the backend, on a task of its own that ends when that is done.
        let subscribed = std::mem::take(&mut *self.subscribed.lock());
        if !subscribed.is_empty()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move {
                for uri in subscribed {
                    shared.release(&uri).await;
                }
            });
        }
    }
}

/// A request in flight at a server, counted until dropped.
#[derive(Debug)]
pub(crate) struct Busy<'a>(&'a AtomicUsize);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The sessions that have a client, by id.
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    sessions: Mutex<HashMap<u64, Weak<Session>>>,
}

impl Sessions {
    /// Every session with a client, in the order they were opened.
    pub(crate) fn all(&self) -> Vec<Arc<Session>> {
        let mut all: Vec<Arc<Session>> = self
            .sessions
            .lock()
            .values()
            .filter_map(Weak::upgrade)
            .collect();
        all.sort_by_key(|s| s.id);
        all
    }
}
