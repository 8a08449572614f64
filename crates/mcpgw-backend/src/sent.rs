//! Which requests have left for the backend, so that a cancellation never
//! overtakes its request.
//!
//! rmcp writes each outgoing message from a task of its own; on a
//! multi-threaded runtime a cancellation sent right after its request can
//! be written first, and the backend, which has not seen the request yet,
//! ignores it. The outbox therefore runs every line it queues past
//! [`Sent::filter`], in the order the backend will read them, which notes
//! the ids of requests; a cancellation waits for its request's [`Claim`]
//! before it is sent.
//!
//! It reads only the start of a line as rmcp writes it
//! (`{"jsonrpc":"2.0","id":N,"method":…`); it parses no JSON, and a
//! request it cannot read that way (a string id) counts as sent.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use mcpgw_wire::outbox::LineFilter;
use parking_lot::Mutex;
use rmcp::model::{NumberOrString, RequestId};
use tokio::sync::oneshot;

/// How many of the latest requests' ids are remembered. A request is
/// claimed the instant rmcp has queued it, long before this many more
/// could be written.
const RECENT: usize = 1024;

/// The requests seen leaving, shared by the outbox's filter and the
/// session's requests.
#[derive(Debug, Clone, Default)]
pub(crate) struct Sent(Arc<Mutex<State>>);

#[derive(Debug, Default)]
struct State {
    order: VecDeque<u64>,
    recent: HashSet<u64>,
    /// Requests claimed before they were seen, and who waits for them.
    waiting: HashMap<u64, oneshot::Sender<()>>,
}

/// Whether one request has left, or when it does.
#[derive(Debug)]
pub(crate) enum Claim {
    /// Queued for the backend already (or not tracked).
    Sent,
    /// Not yet: resolves when it is (or when the session's outbox is gone).
    Pending(oneshot::Receiver<()>),
}

impl Claim {
    /// Resolves once the request is queued for the backend, ahead of
    /// anything written after.
    pub(crate) async fn sent(self) {
        if let Self::Pending(sent) = self {
            let _ = sent.await;
        }
    }
}

impl Sent {
    /// The outbox filter: passes every line on unchanged and notes the
    /// requests among them.
    pub(crate) fn filter(&self) -> LineFilter {
        let sent = self.clone();
        Box::new(move |line: &[u8], out: &mut Vec<u8>| {
            if let Some(id) = request_id(line) {
                sent.note(id);
            }
            out.extend_from_slice(line);
        })
    }

    fn note(&self, id: u64) {
        let mut state = self.0.lock();
        if let Some(waiter) = state.waiting.remove(&id) {
            let _ = waiter.send(());
        }
        if state.order.len() == RECENT
            && let Some(old) = state.order.pop_front()
        {
            state.recent.remove(&old);
        }
        state.order.push_back(id);
        state.recent.insert(id);
    }

    /// Whether request `id`, which rmcp has just queued, has left yet.
    pub(crate) fn claim(&self, id: &RequestId) -> Claim {
        let NumberOrString::Number(number) = id else {
            return Claim::Sent;
        };
        let Ok(number) = u64::try_from(*number) else {
            return Claim::Sent;
        };
        let mut state = self.0.lock();
        if state.recent.contains(&number) {
            return Claim::Sent;
        }
        let (tx, rx) = oneshot::channel();
        state.waiting.insert(number, tx);
        Claim::Pending(rx)
    }
}

/// The id of the request on `line`, if it is one that rmcp wrote.
fn request_id(line: &[u8]) -> Option<u64> {
    let rest = line.strip_prefix(br#"{"jsonrpc":"2.0","id":"#)?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || !rest[digits..].starts_with(br#","method":"#) {
        return None;
    }
    std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_ids_of_requests_only() {
        let check = |line: &str, expect: Option<u64>| {
            assert_eq!(request_id(line.as_bytes()), expect, "{line}");
        };
        check(
            r#"{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{}}"#,
            Some(42),
        );
        check(r#"{"jsonrpc":"2.0","id":7,"result":{}}"#, None);
        check(
            r#"{"jsonrpc":"2.0","method":"notifications/cancelled"}"#,
            None,
        );
        check(r#"{"jsonrpc":"2.0","id":"a","method":"ping"}"#, None);
        check(r#"{"jsonrpc":"2.0","id":,"method":"ping"}"#, None);
    }

    #[tokio::test]
    async fn a_claim_resolves_when_its_request_is_seen() {
        let sent = Sent::default();
        let mut filter = sent.filter();
        let mut out = Vec::new();
        filter(
            b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\n",
            &mut out,
        );
        assert!(matches!(
            sent.claim(&NumberOrString::Number(1)),
            Claim::Sent
        ));
        let pending = sent.claim(&NumberOrString::Number(2));
        let Claim::Pending(mut rx) = pending else {
            panic!("request 2 has not been seen");
        };
        assert!(rx.try_recv().is_err(), "not before it is seen");
        filter(
            b"{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"ping\"}\n",
            &mut out,
        );
        rx.await.expect("seen");
        assert_eq!(
            out,
            b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\n{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"ping\"}\n",
            "lines pass unchanged"
        );
    }

    #[test]
    fn only_the_latest_ids_are_remembered() {
        let sent = Sent::default();
        for id in 0..(RECENT as u64 + 10) {
            sent.note(id);
        }
        assert!(matches!(
            sent.claim(&NumberOrString::Number(RECENT as i64 + 9)),
            Claim::Sent
        ));
        assert_eq!(sent.0.lock().recent.len(), RECENT);
    }
}
