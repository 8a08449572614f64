//! `scope: session` servers: each client session gets instances of its own,
//! started by its first use of the server and ended with the session.
//!
//! The mux owns the bookkeeping (which session has which instance, and when
//! the session ends); the runtime, through [`Instances`], owns the
//! containers. A [`Session`] is dropped when its client session ends (the
//! HTTP session is closed or expires, or stdin closes), which cancels its
//! `ended` token: the runtime then removes that session's containers.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};

use mcpgw_backend::{Backend, Relay};
use rmcp::service::{Peer, RoleServer};
use tokio_util::sync::CancellationToken;

use crate::Limit;

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
    /// The session's client, learned from its first request.
    peer: OnceLock<Peer<RoleServer>>,
    /// This session's instances, by catalog index.
    instances: Vec<tokio::sync::Mutex<Option<Instance>>>,
    /// Cancelled when the session ends.
    ended: CancellationToken,
}

impl Session {
    pub(crate) fn new(id: u64, servers: usize) -> Self {
        Self {
            id,
            peer: OnceLock::new(),
            instances: (0..servers)
                .map(|_| tokio::sync::Mutex::new(None))
                .collect(),
            ended: CancellationToken::new(),
        }
    }

    pub(crate) fn remember(&self, peer: &Peer<RoleServer>) {
        if self.peer.get().is_none() {
            let _ = self.peer.set(peer.clone());
        }
    }

    pub(crate) fn peer(&self) -> Option<Peer<RoleServer>> {
        self.peer.get().cloned()
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
        let mut held = self.instances[index].lock().await;
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
            .filter_map(|held| held.try_lock().ok()?.as_ref().map(|i| i.backend.clone()))
            .filter(|b| !b.is_closed())
            .collect()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.ended.cancel();
    }
}
