//! Admission to one backend, shared fairly between clients: `in_flight`
//! calls at once, `queue` more waiting, and beyond both a call is refused
//! at once ("busy").
//!
//! The rule: a call is admitted at once while a place is free (nobody is
//! waiting then). Otherwise it waits in its client's own queue, and each
//! place that frees goes to the clients that are waiting in turn (round
//! robin, a client's own calls in the order they came), preferring a
//! client with fewer than `per_client` calls in flight (the catalog's
//! `concurrency.per_client`; by default `in_flight`, so turns alone
//! decide). A client that has its share still gets free places when no
//! client under its share is waiting: no place stays idle while a call
//! waits. So a call of a client under its share waits for at most one
//! place per other client waiting (for the first, when the others all
//! have their share), never behind the whole queue of a busy client.
//!
//! A client is what the rate limits count (`audit::Caller`): a bearer
//! token, HTTP without authentication, or the stdio client, which is the
//! only one and so has the plain first-come order.
//!
//! It does not decide what is forwarded (`forward.rs` does) nor answer the
//! client.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use mcpgw_catalog::Concurrency;
use parking_lot::Mutex;
use tokio::sync::oneshot;

/// Bounded, fair admission to one backend.
#[derive(Debug)]
pub(crate) struct Limit {
    pub(crate) in_flight: usize,
    pub(crate) queue: usize,
    /// The most calls a client has in flight before others that wait
    /// take precedence.
    pub(crate) per_client: usize,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Calls in flight.
    running: usize,
    /// Calls waiting, counting those whose caller has gone (until they are
    /// purged).
    waiting: usize,
    /// The clients with calls in flight or waiting.
    clients: HashMap<Arc<str>, Client>,
    /// The clients that have calls waiting, in the order of their turns.
    turns: VecDeque<Arc<str>>,
}

#[derive(Debug, Default)]
struct Client {
    running: usize,
    waiters: VecDeque<oneshot::Sender<Permit>>,
}

/// A place in flight, given back when dropped.
#[derive(Debug)]
pub(crate) struct Permit {
    /// `None` once disarmed (a permit that never reached its call).
    limit: Option<Arc<Limit>>,
    client: Arc<str>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(limit) = self.limit.take() {
            limit.release(&self.client);
        }
    }
}

impl Limit {
    pub(crate) fn new(concurrency: Concurrency) -> Self {
        Self {
            in_flight: concurrency.in_flight,
            queue: concurrency.queue,
            per_client: concurrency
                .per_client
                .unwrap_or(concurrency.in_flight)
                .clamp(1, concurrency.in_flight.max(1)),
            state: Mutex::default(),
        }
    }

    /// Whether `concurrency` sets exactly this limit's bounds.
    pub(crate) fn has_bounds(&self, concurrency: Concurrency) -> bool {
        let other = Self::new(concurrency);
        (other.in_flight, other.queue, other.per_client)
            == (self.in_flight, self.queue, self.per_client)
    }

    /// A limit with the same bounds and nothing admitted.
    pub(crate) fn fresh(&self) -> Self {
        Self::new(Concurrency {
            in_flight: self.in_flight,
            queue: self.queue,
            per_client: Some(self.per_client),
        })
    }

    /// A place in flight for a call of `client`: at once, or after waiting
    /// its turn; `None` when the queue is full too.
    pub(crate) async fn admit(self: &Arc<Self>, client: &str) -> Option<Permit> {
        let waiting = {
            let mut state = self.state.lock();
            if state.running < self.in_flight {
                state.running += 1;
                let key = state.enter(client);
                return Some(self.permit(key));
            }
            if state.waiting >= self.queue {
                state.purge();
                if state.waiting >= self.queue {
                    return None;
                }
            }
            let (sender, receiver) = oneshot::channel();
            let key = state.key(client);
            let entry = state.clients.entry(key.clone()).or_default();
            entry.waiters.push_back(sender);
            if entry.waiters.len() == 1 {
                state.turns.push_back(key);
            }
            state.waiting += 1;
            tracing::debug!(
                "call queued, {} waiting, {} in flight",
                state.waiting,
                state.running
            );
            receiver
        };
        waiting.await.ok()
    }

    fn permit(self: &Arc<Self>, client: Arc<str>) -> Permit {
        Permit {
            limit: Some(self.clone()),
            client,
        }
    }

    /// A call of `client` ended: its place goes to the next waiting call.
    fn release(self: Arc<Self>, client: &str) {
        let mut state = self.state.lock();
        state.running -= 1;
        state.leave(client);
        while state.running < self.in_flight {
            let Some((key, sender)) = state.next(self.per_client) else {
                break;
            };
            state.running += 1;
            let key = state.enter(&key);
            if let Err(mut permit) = sender.send(self.permit(key)) {
                // Its caller went away meanwhile: the place is still free.
                permit.limit = None;
                state.running -= 1;
                state.leave(&permit.client);
            }
        }
    }

    /// Whether a call is in flight or waiting.
    pub(crate) fn is_busy(&self) -> bool {
        let mut state = self.state.lock();
        state.purge();
        state.running > 0 || state.waiting > 0
    }

    /// Calls in flight and waiting, now.
    pub(crate) fn load(&self) -> (usize, usize) {
        let mut state = self.state.lock();
        state.purge();
        (state.running, state.waiting)
    }
}

impl State {
    /// The map's key for `client`, shared when it has one.
    fn key(&self, client: &str) -> Arc<str> {
        self.clients
            .get_key_value(client)
            .map_or_else(|| Arc::from(client), |(k, _)| k.clone())
    }

    /// Counts a call of `client` in flight.
    fn enter(&mut self, client: &str) -> Arc<str> {
        let key = self.key(client);
        self.clients.entry(key.clone()).or_default().running += 1;
        key
    }

    /// Counts a call of `client` out; forgets a client with nothing left.
    fn leave(&mut self, client: &str) {
        if let Some(entry) = self.clients.get_mut(client) {
            entry.running -= 1;
            if entry.running == 0 && entry.waiters.is_empty() {
                self.clients.remove(client);
            }
        }
    }

    /// The next waiting call, by the rule in the module's comment, taken
    /// off its queue: the first client in turn under its share, else the
    /// first in turn. The client served goes to the back of the turns.
    fn next(&mut self, share: usize) -> Option<(Arc<str>, oneshot::Sender<Permit>)> {
        loop {
            let at = self
                .turns
                .iter()
                .position(|c| self.clients.get(c).is_some_and(|e| e.running < share))
                .or_else(|| (!self.turns.is_empty()).then_some(0))?;
            let key = self.turns.remove(at)?;
            let entry = self.clients.get_mut(&key)?;
            let sender = entry.waiters.pop_front();
            if !entry.waiters.is_empty() {
                self.turns.push_back(key.clone());
            } else if entry.running == 0 {
                self.clients.remove(&key);
            }
            if let Some(sender) = sender {
                self.waiting -= 1;
                if !sender.is_closed() {
                    return Some((key, sender));
                }
            }
        }
    }

    /// Forgets waiting calls whose callers have gone.
    fn purge(&mut self) {
        let mut gone = 0;
        for entry in self.clients.values_mut() {
            let before = entry.waiters.len();
            entry.waiters.retain(|s| !s.is_closed());
            gone += before - entry.waiters.len();
        }
        if gone == 0 {
            return;
        }
        self.waiting -= gone;
        let clients = &self.clients;
        self.turns
            .retain(|c| clients.get(c).is_some_and(|e| !e.waiters.is_empty()));
        self.clients
            .retain(|_, e| e.running > 0 || !e.waiters.is_empty());
    }
}

#[cfg(test)]
mod tests;
