//! Express calls: `tools/call` requests written to the backend as lines,
//! beside rmcp's session, and answered without rmcp.
//!
//! rmcp deserializes every message into its untagged enums, spawns a task
//! per request and per message sent, and serializes again; for a tool call
//! that the gateway only relays, that is most of its cost (BENCHMARKS.md).
//! An express call is written as one line to the same outbox rmcp writes to,
//! with an id rmcp never uses (`"mcpgw-x<N>"`); the guard on the backend's
//! stdout diverts the lines that answer it (and its progress reports) here,
//! before rmcp reads them.
//!
//! What rmcp would do for the request, this does too: the same `_meta`
//! (a progress token; for a `2026-07-28` backend its protocol version and
//! the gateway's client info and capabilities), a deadline restarted by
//! each progress report up to a hard maximum, `notifications/cancelled` on
//! timeout or when the caller drops the call, and an error when the session
//! ends under it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::task::{Poll, Waker};

use rmcp::ErrorData;
use rmcp::model::{ClientCapabilities, Implementation, ProtocolVersion, RequestMetaObject};
use rmcp::service::ServiceError;
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::time::Instant;

use crate::Deadline;
use crate::outbox::LineSender;

/// The prefix of express ids and progress tokens; rmcp's ids are numbers.
const PREFIX: &str = "mcpgw-x";

/// A backend's answer to an express call.
#[derive(Debug)]
pub enum Answer {
    /// The `result` member, verbatim.
    Result(Box<RawValue>),
    /// The `error` member.
    Error(ErrorData),
}

/// The express calls of one backend session.
#[derive(Debug)]
pub(crate) struct Express {
    next: AtomicU64,
    pending: Mutex<HashMap<u64, Arc<Waiter>>>,
    /// Set once the first call is made: until then no line is inspected.
    used: AtomicBool,
    /// Set when the session's stdout ended: calls fail at once.
    ended: AtomicBool,
    requests: LineSender,
    /// What follows the progress token in every request's `_meta` (for a
    /// `2026-07-28` backend), commas and all; unset otherwise.
    meta: OnceLock<String>,
}

impl Express {
    pub(crate) fn new(requests: LineSender) -> Self {
        Self {
            next: AtomicU64::new(1),
            pending: Mutex::default(),
            used: AtomicBool::new(false),
            ended: AtomicBool::new(false),
            requests,
            meta: OnceLock::new(),
        }
    }

    /// Sets the per-request `_meta` a `2026-07-28` backend expects.
    pub(crate) fn set_stateless_meta(
        &self,
        protocol: ProtocolVersion,
        client_info: Implementation,
        capabilities: ClientCapabilities,
    ) {
        let mut meta = RequestMetaObject::new();
        meta.set_protocol_version(protocol);
        meta.set_client_info(client_info);
        meta.set_client_capabilities(capabilities);
        let object = serde_json::to_string(&meta).unwrap_or_default();
        // `{"a":1,"b":2}` → `,"a":1,"b":2`
        if let Some(fields) = object
            .strip_prefix('{')
            .and_then(|s| s.strip_suffix('}'))
            .filter(|s| !s.is_empty())
        {
            let _ = self.meta.set(format!(",{fields}"));
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Arc<Waiter>>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether `line` may concern an express call and must be looked at.
    pub(crate) fn watching(&self) -> bool {
        self.used.load(Ordering::Relaxed)
    }

    /// Takes `line` if it answers an express call or reports its progress;
    /// `false` leaves it to rmcp.
    pub(crate) fn divert(&self, line: &[u8]) -> bool {
        if memchr::memmem::find(line, PREFIX.as_bytes()).is_none() {
            return false;
        }
        let Ok(message) = serde_json::from_slice::<Envelope<'_>>(line) else {
            return false;
        };
        match message.method {
            None => {
                let Some(id) = message.id.and_then(express_id) else {
                    return false;
                };
                let answer = match (message.result, message.error) {
                    (Some(result), _) => Answer::Result(result.to_owned()),
                    (None, Some(error)) => {
                        Answer::Error(serde_json::from_str(error.get()).unwrap_or_else(|e| {
                            ErrorData::internal_error(
                                format!("the server sent a malformed error ({e})"),
                                None,
                            )
                        }))
                    }
                    (None, None) => Answer::Error(ErrorData::internal_error(
                        "the server sent a response with neither a result nor an error",
                        None,
                    )),
                };
                // A late answer (the call timed out or was dropped) is
                // dropped here too: rmcp knows nothing of its id.
                let waiter = self.lock().remove(&id);
                if let Some(waiter) = waiter {
                    waiter.wake(Some(Ok(answer)));
                }
                true
            }
            Some("notifications/progress") => {
                let Some(id) = message
                    .params
                    .and_then(|p| serde_json::from_str::<ProgressParams<'_>>(p.get()).ok())
                    .and_then(|p| p.progress_token)
                    .and_then(express_id)
                else {
                    return false;
                };
                let waiter = self.lock().get(&id).cloned();
                if let Some(waiter) = waiter {
                    waiter.wake(None);
                }
                true
            }
            Some(_) => false,
        }
    }

    /// The session's stdout ended: every call fails, now and later.
    pub(crate) fn end(&self) {
        self.ended.store(true, Ordering::Relaxed);
        let ended = std::mem::take(&mut *self.lock());
        for waiter in ended.into_values() {
            waiter.wake(Some(Err(ServiceError::TransportClosed)));
        }
    }

    /// The request line for a call of tool `name` with `arguments` (a JSON
    /// object, verbatim), numbered but not yet sent.
    pub(crate) fn request(&self, name: &str, arguments: Option<&str>) -> Request {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let meta = self.meta.get().map_or("", String::as_str);
        let mut line =
            Vec::with_capacity(160 + name.len() + meta.len() + arguments.map_or(0, str::len));
        line.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"id\":\"");
        push_id(&mut line, id);
        line.extend_from_slice(b"\",\"method\":\"tools/call\",\"params\":{\"name\":");
        // A `&str` always encodes.
        let _ = serde_json::to_writer(&mut line, name);
        if let Some(arguments) = arguments {
            line.extend_from_slice(b",\"arguments\":");
            line.extend_from_slice(arguments.as_bytes());
        }
        line.extend_from_slice(b",\"_meta\":{\"progressToken\":\"");
        push_id(&mut line, id);
        line.push(b'"');
        line.extend_from_slice(meta.as_bytes());
        line.extend_from_slice(b"}}}\n");
        Request { id, line }
    }

    /// Sends `request` and waits for its answer, within `deadline`.
    ///
    /// Dropping the future before it is answered cancels the call at the
    /// backend.
    ///
    /// # Errors
    ///
    /// A timeout (the call is cancelled at the backend), or a closed
    /// session; the backend's own error is an [`Answer::Error`].
    pub(crate) async fn call(
        self: &Arc<Self>,
        request: Request,
        deadline: Deadline,
    ) -> Result<Answer, ServiceError> {
        let Request { id, line } = request;
        let waiter = Arc::new(Waiter::default());
        self.used.store(true, Ordering::Relaxed);
        {
            let mut pending = self.lock();
            if self.ended.load(Ordering::Relaxed) {
                return Err(ServiceError::TransportClosed);
            }
            pending.insert(id, waiter.clone());
        }
        let mut outstanding = Outstanding {
            express: self,
            id,
            sent: false,
        };
        if !self.requests.send(&line) {
            return Err(ServiceError::TransportClosed);
        }
        drop(line);
        outstanding.sent = true;
        let hard = Instant::now() + deadline.max_total;
        let mut idle = (Instant::now() + deadline.idle).min(hard);
        let sleep = tokio::time::sleep_until(idle);
        tokio::pin!(sleep);
        std::future::poll_fn(|cx| {
            let mut state = waiter.lock();
            if let Some(answer) = state.answer.take() {
                outstanding.sent = false;
                return Poll::Ready(answer);
            }
            if std::mem::take(&mut state.progressed) {
                idle = (Instant::now() + deadline.idle).min(hard);
                sleep.as_mut().reset(idle);
            }
            if sleep.as_mut().poll(cx).is_ready() {
                let timeout = if idle == hard {
                    deadline.max_total
                } else {
                    deadline.idle
                };
                return Poll::Ready(Err(ServiceError::Timeout { timeout }));
            }
            if !state
                .waker
                .as_ref()
                .is_some_and(|w| w.will_wake(cx.waker()))
            {
                state.waker = Some(cx.waker().clone());
            }
            Poll::Pending
        })
        .await
    }
}

/// An express request, built and numbered, not yet sent.
#[derive(Debug)]
pub struct Request {
    id: u64,
    line: Vec<u8>,
}

/// Where the guard leaves an express call's answer or progress for the
/// call waiting on it.
#[derive(Debug, Default)]
struct Waiter(Mutex<WaiterState>);

#[derive(Debug, Default)]
struct WaiterState {
    /// The answer, or the session's end.
    answer: Option<Result<Answer, ServiceError>>,
    /// A progress report came since the caller last looked.
    progressed: bool,
    waker: Option<Waker>,
}

impl Waiter {
    fn lock(&self) -> MutexGuard<'_, WaiterState> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Hands the caller `answer`, or notes progress when there is none.
    fn wake(&self, answer: Option<Result<Answer, ServiceError>>) {
        let mut state = self.lock();
        match answer {
            Some(answer) => state.answer = Some(answer),
            None => state.progressed = true,
        }
        if let Some(waker) = state.waker.take() {
            drop(state);
            waker.wake();
        }
    }
}

/// Removes an express call that ends unanswered, and tells the backend.
struct Outstanding<'a> {
    express: &'a Express,
    id: u64,
    sent: bool,
}

impl Drop for Outstanding<'_> {
    fn drop(&mut self) {
        self.express.lock().remove(&self.id);
        if self.sent {
            // In order behind the request, through the same outbox.
            let cancel = format!(
                "{{\"jsonrpc\":\"2.0\",\"method\":\"notifications/cancelled\",\"params\":{{\"requestId\":\"{PREFIX}{}\",\"reason\":\"the gateway's client abandoned the request\"}}}}\n",
                self.id
            );
            let _ = self.express.requests.send(cancel.as_bytes());
        }
    }
}

/// The members of a JSON-RPC message that the express paths look at, all
/// borrowed from its line: the backend's stdout guard reads its answers and
/// progress reports by it, and the stdio front its client's calls. A
/// method with escapes fails the parse, and the line goes to rmcp.
#[derive(Debug, Deserialize)]
pub struct Envelope<'a> {
    /// The request's or the response's id.
    #[serde(borrow)]
    pub id: Option<&'a RawValue>,
    /// The method of a request or a notification.
    #[serde(borrow)]
    pub method: Option<&'a str>,
    /// Their params.
    #[serde(borrow)]
    pub params: Option<&'a RawValue>,
    /// A response's result.
    #[serde(borrow)]
    pub result: Option<&'a RawValue>,
    /// A response's error.
    #[serde(borrow)]
    pub error: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct ProgressParams<'a> {
    #[serde(borrow, rename = "progressToken")]
    progress_token: Option<&'a RawValue>,
}

/// Appends express id `id` (`mcpgw-x7`, without quotes).
fn push_id(line: &mut Vec<u8>, id: u64) {
    use std::io::Write as _;
    let _ = write!(line, "{PREFIX}{id}");
}

/// The number of an express id (`"mcpgw-x7"` → 7).
fn express_id(raw: &RawValue) -> Option<u64> {
    raw.get()
        .strip_prefix('"')?
        .strip_suffix('"')?
        .strip_prefix(PREFIX)?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncBufReadExt as _, BufReader};

    use super::*;
    use crate::outbox::outbox;

    const DEADLINE: Deadline = Deadline {
        idle: Duration::from_secs(5),
        max_total: Duration::from_secs(10),
    };

    /// An express set writing into a pipe, and the pipe's reading end.
    fn express() -> (
        Arc<Express>,
        tokio::io::Lines<BufReader<tokio::io::DuplexStream>>,
        crate::outbox::Outbox,
    ) {
        let (reader, writer) = tokio::io::duplex(1 << 16);
        let (outbox, drain) = outbox(writer, None);
        tokio::spawn(drain);
        (
            Arc::new(Express::new(outbox.lines())),
            BufReader::new(reader).lines(),
            outbox,
        )
    }

    #[tokio::test]
    async fn a_call_is_answered_by_the_line_with_its_id() {
        let (express, mut sent, _outbox) = express();
        let args = RawValue::from_string("{\"text\":\"hi\"}".into()).unwrap();
        let call = tokio::spawn({
            let express = express.clone();
            async move {
                express
                    .call(express.request("echo", Some(args.get())), DEADLINE)
                    .await
            }
        });
        let request: serde_json::Value =
            serde_json::from_str(&sent.next_line().await.unwrap().unwrap()).unwrap();
        assert_eq!(request["method"], "tools/call");
        assert_eq!(request["params"]["name"], "echo");
        assert_eq!(request["params"]["arguments"]["text"], "hi");
        let id = request["id"].as_str().unwrap().to_string();
        assert_eq!(request["params"]["_meta"]["progressToken"], id.as_str());
        // Lines that are not its answer stay with rmcp.
        assert!(!express.divert(b"{\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{}}\n"));
        assert!(!express.divert(
            b"{\"jsonrpc\":\"2.0\",\"id\":4,\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"mcpgw-x1\"}]}}\n"
        ));
        let answer =
            format!("{{\"jsonrpc\":\"2.0\",\"id\":\"{id}\",\"result\":{{\"content\":[]}}}}\n");
        assert!(express.divert(answer.as_bytes()));
        match call.await.unwrap().unwrap() {
            Answer::Result(result) => assert_eq!(result.get(), "{\"content\":[]}"),
            Answer::Error(e) => panic!("{e:?}"),
        }
        assert!(express.lock().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_timeout_cancels_at_the_backend_and_progress_restarts_the_clock() {
        let (express, mut sent, _outbox) = express();
        let deadline = Deadline {
            idle: Duration::from_secs(1),
            max_total: Duration::from_secs(3),
        };
        let call = tokio::spawn({
            let express = express.clone();
            async move { express.call(express.request("slow", None), deadline).await }
        });
        let request: serde_json::Value =
            serde_json::from_str(&sent.next_line().await.unwrap().unwrap()).unwrap();
        let id = request["id"].as_str().unwrap().to_string();
        for _ in 0..4 {
            tokio::time::sleep(Duration::from_millis(700)).await;
            let progress = format!(
                "{{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{{\"progressToken\":\"{id}\",\"progress\":1}}}}\n"
            );
            assert!(express.divert(progress.as_bytes()));
        }
        // Progress kept it alive past `idle`, but not past `max_total`.
        let err = call.await.unwrap().unwrap_err();
        assert!(
            matches!(err, ServiceError::Timeout { timeout } if timeout == Duration::from_secs(3)),
            "{err:?}"
        );
        let cancel: serde_json::Value =
            serde_json::from_str(&sent.next_line().await.unwrap().unwrap()).unwrap();
        assert_eq!(cancel["method"], "notifications/cancelled");
        assert_eq!(cancel["params"]["requestId"], id.as_str());
    }

    #[tokio::test]
    async fn the_end_of_the_session_fails_calls_in_flight_and_later() {
        let (express, _sent, _outbox) = express();
        let call = tokio::spawn({
            let express = express.clone();
            async move { express.call(express.request("echo", None), DEADLINE).await }
        });
        tokio::task::yield_now().await;
        express.end();
        assert!(matches!(
            call.await.unwrap(),
            Err(ServiceError::TransportClosed)
        ));
        assert!(matches!(
            express.call(express.request("echo", None), DEADLINE).await,
            Err(ServiceError::TransportClosed)
        ));
    }

    #[tokio::test]
    async fn stateless_meta_follows_the_progress_token() {
        let (reader, writer) = tokio::io::duplex(1 << 16);
        let (outbox, drain) = outbox(writer, None);
        tokio::spawn(drain);
        let express = Express::new(outbox.lines());
        express.set_stateless_meta(
            ProtocolVersion::V_2026_07_28,
            Implementation::new("mcpgw", "0"),
            ClientCapabilities::default(),
        );
        let express = Arc::new(express);
        let call = tokio::spawn({
            let express = express.clone();
            async move { express.call(express.request("echo", None), DEADLINE).await }
        });
        let mut sent = BufReader::new(reader).lines();
        let request: serde_json::Value =
            serde_json::from_str(&sent.next_line().await.unwrap().unwrap()).unwrap();
        let meta = request["params"]["_meta"].as_object().unwrap();
        assert!(meta.contains_key("progressToken"));
        assert_eq!(
            meta["io.modelcontextprotocol/protocolVersion"],
            ProtocolVersion::V_2026_07_28.as_str()
        );
        assert!(meta.len() >= 3, "{meta:?}");
        call.abort();
    }
}
