//! Server-to-client requests for `2026-07-28` clients, which take none:
//! the gateway answers the client's call with an `InputRequiredResult`
//! carrying the backend's requests, keeps the backend's call running, and
//! resumes it when the client retries with its responses (SEP-2322).
//!
//! The state a client echoes back is only a handle: `mcpgw1-<instance>.`
//! (random per process, so a chained mcpgw's states pass through) and a
//! value sealed with a per-process random key (HMAC), bound to the request
//! it answers and expiring with the call's hard limit. The call itself stays
//! in gateway memory, parked until the retry or the expiry, whichever is
//! first; at expiry it is dropped, which cancels it at its backend.
//!
//! Which call a backend's request belongs to: the one call in flight at
//! that server (over HTTP, calls of both eras are registered here). A
//! handshake-era client's call is asked directly, on its session; a
//! `2026-07-28` client's through the rounds. With none, or more than one,
//! the backend's request fails with a message that says so.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rmcp::ErrorData;
use rmcp::model::{
    ClientCapabilities, InputRequest, InputRequests, InputRequiredResult, InputResponses,
    RequestId, RequestStateCodec, SealOptions, ServerResult,
};
use rmcp::service::{Peer, RoleServer};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio_util::task::AbortOnDropHandle;
use tracing::Instrument as _;

use crate::relay::ASK_TIMEOUT;

/// What a call's `requestState` is bound to: the server and the request
/// (`what`, such as ``tools/call `t__x` ``), so that a state cannot resume
/// another call. Every path that starts or resumes a round uses this.
pub(crate) fn binding(server: usize, what: &str) -> String {
    format!("{server}:{what}")
}

/// A backend's request for input, and where its answer goes.
#[derive(Debug)]
pub(crate) struct Ask {
    pub(crate) request: InputRequest,
    pub(crate) reply: oneshot::Sender<Result<Value, ErrorData>>,
}

/// One call from a `2026-07-28` client, running at its backend.
#[derive(Debug)]
pub(crate) struct Call {
    result: oneshot::Receiver<Result<ServerResult, ErrorData>>,
    asks: mpsc::Receiver<Ask>,
    /// Cancels the backend's call when the gateway gives up on it.
    _task: AbortOnDropHandle<()>,
    /// Registered in `open` while it runs; removed when it ends.
    _open: OpenGuard,
}

/// A call waiting for the client's responses.
#[derive(Debug)]
struct Parked {
    call: Call,
    pending: BTreeMap<String, oneshot::Sender<Result<Value, ErrorData>>>,
    expires: Instant,
}

#[derive(Debug)]
struct OpenCall {
    id: u64,
    capabilities: ClientCapabilities,
    /// A handshake-era client, asked directly, and its request.
    client: Option<(Peer<RoleServer>, RequestId)>,
    asks: mpsc::Sender<Ask>,
}

/// Removes a call from the open table when dropped.
#[derive(Debug)]
struct OpenGuard {
    rounds: std::sync::Weak<Rounds>,
    server: usize,
    id: u64,
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        if let Some(rounds) = self.rounds.upgrade()
            && let Some(calls) = rounds.open.lock().get_mut(&self.server)
        {
            calls.retain(|c| c.id != self.id);
        }
    }
}

/// The gateway's table of multi-round calls.
#[derive(Debug)]
pub(crate) struct Rounds {
    codec: RequestStateCodec,
    /// Starts every state this gateway issues; others belong to a backend.
    prefix: String,
    next: AtomicU64,
    /// Calls in flight from `2026-07-28` clients, by server.
    open: Mutex<HashMap<usize, Vec<OpenCall>>>,
    parked: Mutex<HashMap<u64, Parked>>,
}

impl Rounds {
    pub(crate) fn new() -> Self {
        let mut key = [0u8; 32];
        if getrandom::fill(&mut key).is_err() {
            // No OS randomness: fall back to something unguessable enough
            // for handles that are also checked against the parked table.
            let seed = std::collections::hash_map::RandomState::new();
            for (i, chunk) in key.chunks_mut(8).enumerate() {
                use std::hash::BuildHasher as _;
                chunk.copy_from_slice(&seed.hash_one(i).to_le_bytes());
            }
        }
        let prefix = format!(
            "mcpgw1-{:02x}{:02x}{:02x}{:02x}.",
            key[28], key[29], key[30], key[31]
        );
        Self {
            codec: RequestStateCodec::new_unchecked(key[..28].to_vec()),
            prefix,
            next: AtomicU64::new(1),
            open: Mutex::new(HashMap::new()),
            parked: Mutex::new(HashMap::new()),
        }
    }

    /// Starts `work` (the forwarded call) for a client of server
    /// `server`, registered so that the backend's requests reach it: a
    /// handshake-era `client` directly, a `2026-07-28` one (with its
    /// `capabilities`) through the rounds.
    pub(crate) fn start<F>(
        self: &std::sync::Arc<Self>,
        server: usize,
        capabilities: ClientCapabilities,
        client: Option<(Peer<RoleServer>, RequestId)>,
        work: F,
    ) -> Call
    where
        F: std::future::Future<Output = Result<ServerResult, ErrorData>> + Send + 'static,
    {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (ask_tx, asks) = mpsc::channel(8);
        self.open.lock().entry(server).or_default().push(OpenCall {
            id,
            capabilities,
            client,
            asks: ask_tx,
        });
        let (tx, result) = oneshot::channel();
        // In the span of the request that started it, so that its backend
        // request's span is that one's child.
        let task = tokio::spawn(
            async move {
                let _ = tx.send(work.await);
            }
            .in_current_span(),
        );
        Call {
            result,
            asks,
            _task: AbortOnDropHandle::new(task),
            _open: OpenGuard {
                rounds: std::sync::Arc::downgrade(self),
                server,
                id,
            },
        }
    }

    /// Waits for `call` to finish or to ask for input: its result, or,
    /// when it asks, an `InputRequiredResult` bound to `binding` while the
    /// call waits parked.
    pub(crate) async fn run(
        self: &std::sync::Arc<Self>,
        mut call: Call,
        binding: &str,
        ttl: Duration,
    ) -> Result<ServerResult, ErrorData> {
        let first = tokio::select! {
            result = &mut call.result => {
                return result.unwrap_or_else(|_| {
                    Err(ErrorData::internal_error("the call ended without an answer", None))
                });
            }
            Some(ask) = call.asks.recv() => ask,
        };
        // Requests already waiting go to the client together; one that
        // comes later ends up in the next round (the call stays parked
        // until the client retries, and its asks are kept meanwhile).
        let mut asks = vec![first];
        while let Ok(ask) = call.asks.try_recv() {
            asks.push(ask);
        }
        let mut requests = InputRequests::new();
        let mut pending = BTreeMap::new();
        for (n, ask) in asks.into_iter().enumerate() {
            let key = format!("r{n}");
            requests.insert(key.clone(), ask.request);
            pending.insert(key, ask.reply);
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let state = self.codec.seal_with(
            &id.to_le_bytes(),
            &SealOptions::new()
                .associated_data(binding.as_bytes())
                .ttl(ttl),
        );
        let mut parked = self.parked.lock();
        let now = Instant::now();
        parked.retain(|_, p| p.expires > now);
        parked.insert(
            id,
            Parked {
                call,
                pending,
                expires: now + ttl,
            },
        );
        drop(parked);
        // Abandoned (the client never retries): dropped at expiry, which
        // cancels the call at its backend and frees its place.
        let rounds = std::sync::Arc::downgrade(self);
        tokio::spawn(async move {
            tokio::time::sleep(ttl).await;
            if let Some(rounds) = rounds.upgrade() {
                let expired = rounds.parked.lock().remove(&id);
                drop(expired);
            }
        });
        let mut result = InputRequiredResult::from_request_state(format!("{}{state}", self.prefix));
        result.input_requests = Some(requests);
        Ok(ServerResult::InputRequiredResult(result))
    }

    /// Whether `state` is one of ours (else it belongs to a backend).
    pub(crate) fn is_ours(&self, state: &str) -> bool {
        state.starts_with(&self.prefix)
    }

    /// Resumes the call `state` refers to with the client's `responses`.
    ///
    /// # Errors
    ///
    /// `-32602` when the state is not one the gateway issued for this
    /// request, has expired, or was already used.
    pub(crate) fn resume(
        &self,
        state: &str,
        binding: &str,
        responses: Option<&InputResponses>,
    ) -> Result<Call, ErrorData> {
        let stale = || {
            ErrorData::invalid_params(
                "requestState is not one the gateway issued for this request, or it has expired or been used; call again without it",
                None,
            )
        };
        let sealed = state.strip_prefix(&self.prefix).ok_or_else(stale)?;
        let bytes = self
            .codec
            .open_with(sealed, binding.as_bytes())
            .map_err(|_| stale())?;
        let id = u64::from_le_bytes(bytes.try_into().map_err(|_| stale())?);
        let parked = self.parked.lock().remove(&id).ok_or_else(stale)?;
        if parked.expires <= Instant::now() {
            return Err(stale());
        }
        for (key, reply) in parked.pending {
            let answer = responses.and_then(|r| r.get(&key)).cloned().ok_or_else(|| {
                ErrorData::invalid_params(
                    format!("the client sent no response for input request `{key}`"),
                    None,
                )
            });
            let _ = reply.send(answer);
        }
        Ok(parked.call)
    }

    /// Hands a backend's request to the one call in flight at `server`, and
    /// waits for the client's answer.
    pub(crate) async fn ask(
        &self,
        server: usize,
        what: &str,
        supports: fn(&ClientCapabilities) -> bool,
        request: InputRequest,
    ) -> Result<Value, ErrorData> {
        enum Target {
            Client(Peer<RoleServer>, RequestId),
            Round(mpsc::Sender<Ask>),
        }
        let target = {
            let open = self.open.lock();
            let calls = open.get(&server).map_or(&[][..], Vec::as_slice);
            match calls {
                [one] => match &one.client {
                    Some((client, origin)) => Ok(Target::Client(client.clone(), origin.clone())),
                    None if supports(&one.capabilities) => Ok(Target::Round(one.asks.clone())),
                    None => Err(format!(
                        "{what}: the client did not declare the capability"
                    )),
                },
                [] => Err(format!(
                    "{what}: no call from the client is in progress at this server to attach it to"
                )),
                many => Err(format!(
                    "{what}: {} calls from the client are in progress at this server, and the request cannot say which it belongs to",
                    many.len()
                )),
            }
        }
        .map_err(|message| ErrorData::invalid_request(message, None))?;
        let target = match target {
            Target::Round(asks) => asks,
            Target::Client(client, origin) => {
                return crate::relay::ask_client(&client, Some(origin), what, supports, request)
                    .await;
            }
        };
        let (reply, answer) = oneshot::channel();
        target
            .send(Ask { request, reply })
            .await
            .map_err(|_| ErrorData::internal_error(format!("{what}: the call ended"), None))?;
        match tokio::time::timeout(ASK_TIMEOUT, answer).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err(ErrorData::internal_error(
                format!("{what}: the client did not come back for it"),
                None,
            )),
            Err(_) => Err(ErrorData::internal_error(
                format!("{what}: the client did not answer within {ASK_TIMEOUT:?}"),
                None,
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rmcp::model::{CallToolResult, ContentBlock, ListRootsRequest, ListRootsResult};

    use super::*;

    fn roots(caps: &ClientCapabilities) -> bool {
        caps.roots.is_some()
    }

    fn capable() -> ClientCapabilities {
        let mut caps = ClientCapabilities::default();
        caps.roots = Some(Default::default());
        caps
    }

    /// A call that asks for roots once and returns how many it got.
    fn asking_call(rounds: &Arc<Rounds>) -> Call {
        let asker = rounds.clone();
        rounds.start(0, capable(), None, async move {
            let answer = asker
                .ask(
                    0,
                    "roots/list",
                    roots,
                    InputRequest::ListRoots(ListRootsRequest::default()),
                )
                .await?;
            let listed: ListRootsResult = serde_json::from_value(answer).unwrap();
            Ok(ServerResult::CallToolResult(CallToolResult::success(vec![
                ContentBlock::text(listed.roots.len().to_string()),
            ])))
        })
    }

    fn state_of(result: &ServerResult) -> String {
        match result {
            ServerResult::InputRequiredResult(input) => {
                assert_eq!(input.input_requests.as_ref().unwrap().len(), 1);
                input.request_state.clone().unwrap()
            }
            other => panic!("expected input required, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_round_trip_resumes_the_parked_call_once() {
        let rounds = Arc::new(Rounds::new());
        let ttl = Duration::from_secs(60);
        let first = rounds
            .run(asking_call(&rounds), "0:tool", ttl)
            .await
            .unwrap();
        let state = state_of(&first);
        assert!(rounds.is_ours(&state));
        assert!(
            !Rounds::new().is_ours(&state),
            "another gateway's state is not ours"
        );
        let responses: InputResponses = BTreeMap::from([(
            "r0".to_string(),
            serde_json::json!({"roots": [{"uri": "file:///a"}]}),
        )]);
        // Bound to its request: another tool cannot use it.
        assert!(rounds.resume(&state, "0:other", Some(&responses)).is_err());
        let call = rounds.resume(&state, "0:tool", Some(&responses)).unwrap();
        let done = rounds.run(call, "0:tool", ttl).await.unwrap();
        let ServerResult::CallToolResult(result) = done else {
            panic!("{done:?}")
        };
        assert_eq!(result.content[0].as_text().unwrap().text, "1");
        // Used once only.
        assert!(rounds.resume(&state, "0:tool", Some(&responses)).is_err());
    }

    #[tokio::test]
    async fn tampered_or_foreign_states_are_refused() {
        let rounds = Arc::new(Rounds::new());
        let first = rounds
            .run(asking_call(&rounds), "0:tool", Duration::from_secs(60))
            .await
            .unwrap();
        let state = state_of(&first);
        let mut tampered = state.clone().into_bytes();
        let last = tampered.len() - 1;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).unwrap();
        let error = rounds.resume(&tampered, "0:tool", None).unwrap_err();
        assert!(error.message.contains("requestState"), "{error:?}");
        let other = Arc::new(Rounds::new());
        assert!(
            other.resume(&state, "0:tool", None).is_err(),
            "another gateway's key"
        );
    }

    #[tokio::test]
    async fn an_abandoned_call_is_dropped_at_expiry() {
        let rounds = Arc::new(Rounds::new());
        let first = rounds
            .run(asking_call(&rounds), "0:tool", Duration::from_millis(50))
            .await
            .unwrap();
        let state = state_of(&first);
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(
            rounds.parked.lock().is_empty(),
            "the parked call was dropped"
        );
        assert!(
            rounds.open.lock().values().all(Vec::is_empty),
            "and no longer counts as in progress"
        );
        assert!(rounds.resume(&state, "0:tool", None).is_err());
    }

    #[tokio::test]
    async fn a_request_with_no_call_or_two_calls_to_attach_to_fails() {
        let rounds = Arc::new(Rounds::new());
        let ask = || {
            rounds.ask(
                0,
                "roots/list",
                roots,
                InputRequest::ListRoots(ListRootsRequest::default()),
            )
        };
        let error = ask().await.unwrap_err();
        assert!(
            error.message.contains("no call from the client"),
            "{error:?}"
        );
        let pending = std::future::pending::<Result<ServerResult, ErrorData>>;
        let one = rounds.start(0, capable(), None, pending());
        let two = rounds.start(0, capable(), None, pending());
        let error = ask().await.unwrap_err();
        assert!(
            error.message.contains("2 calls from the client"),
            "{error:?}"
        );
        drop((one, two));
        let error = ask().await.unwrap_err();
        assert!(
            error.message.contains("no call from the client"),
            "ended calls unregister"
        );
    }
}
