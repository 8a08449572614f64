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
//! What rmcp would do for the request, this does too: the `_meta` it
//! would add (a progress token; for a `2026-07-28` backend the protocol
//! version and the gateway's capabilities, but not the gateway's client
//! info, which that protocol leaves optional), a deadline restarted by
//! each progress report up to a hard maximum, `notifications/cancelled` on
//! timeout or when the caller gives the call up, and an error when the
//! session ends under it.
//!
//! A call's outcome goes to its [`Finish`], called once, where the outcome
//! is learnt: on the task that reads the backend's stdout (an answer, the
//! end of the session) or on the session's deadline task (a timeout). No
//! task, channel or timer is made per call: one task per session watches
//! every call's deadline, and sleeps until the earliest.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::task::{Poll, Waker};

use rmcp::ErrorData;
use rmcp::model::{ClientCapabilities, ProtocolVersion, RequestMetaObject};
use rmcp::service::ServiceError;
use rustc_hash::FxHasher;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::Deadline;
use crate::envelope::Envelope;
use crate::json;
use crate::outbox::LineSender;

/// The prefix of express ids and progress tokens; rmcp's ids are numbers.
const PREFIX: &str = "mcpgw-x";

/// Numbers the express calls of every session in the process, so that an
/// id never names a call of another session.
static NEXT: AtomicU64 = AtomicU64::new(1);

/// A backend's answer to an express call, borrowed from its line.
#[derive(Debug)]
pub enum Reply<'a> {
    /// The `result` member's JSON text, verbatim (checked JSON).
    Result(&'a str),
    /// The `error` member.
    Error(ErrorData),
}

/// A backend's answer to an express call, owned.
#[derive(Debug)]
pub enum Answer {
    /// The `result` member's JSON text, verbatim (checked JSON).
    Result(String),
    /// The `error` member.
    Error(ErrorData),
}

/// Where an express call's outcome goes: the backend's answer, or the
/// error that ended the call unanswered (a timeout, after which the call
/// was cancelled at the backend; the end of the session).
///
/// `finish` runs once, on the task that learnt the outcome, while that task
/// reads the backend's stdout or watches deadlines: it must not block. A
/// call cancelled through [`ExpressCalls::cancel`] is not finished: its
/// `Finish` is handed back, or dropped.
pub trait Finish: Send + 'static {
    /// Takes the call's outcome.
    fn finish(self: Box<Self>, outcome: Result<Reply<'_>, ServiceError>);
}

/// The express calls of one backend session: a cheap handle.
#[derive(Debug, Clone)]
pub struct ExpressCalls(pub(crate) Arc<Express>);

impl ExpressCalls {
    /// The request line for a call of tool `name` with `arguments` (a JSON
    /// object, verbatim), numbered but not yet sent. Built apart from the
    /// call so that the caller keeps no copy of its parameters while it
    /// waits for admission.
    #[must_use]
    pub fn request(&self, name: &str, arguments: Option<&str>) -> Request {
        self.0.request(name, arguments)
    }

    /// Sends `request` within `deadline`; its outcome goes to `finish`
    /// (at once, with an error, if the session has ended). The caller must
    /// hold no lock that `finish` takes.
    pub fn start(&self, request: Request, deadline: Deadline, finish: Box<dyn Finish>) {
        self.0.start(request, deadline, finish);
    }

    /// Gives up call `id` (a [`Request::id`]): the backend is told, and the
    /// call's `Finish` is handed back unfinished; `None` if the call has
    /// already ended.
    pub fn cancel(&self, id: u64) -> Option<Box<dyn Finish>> {
        self.0.cancel(id)
    }

    /// Sends `request` and waits for its answer, within `deadline`.
    /// Dropping the future before it is answered cancels the call at the
    /// backend.
    ///
    /// # Errors
    ///
    /// A timeout (the call is cancelled at the backend), or a closed
    /// session; the backend's own error is an [`Answer::Error`].
    pub async fn call(&self, request: Request, deadline: Deadline) -> Result<Answer, ServiceError> {
        self.0.call(request, deadline).await
    }
}

/// The express calls of one backend session.
pub(crate) struct Express {
    table: Mutex<Table>,
    /// Set once the first call is made: until then no line is inspected.
    used: AtomicBool,
    requests: LineSender,
    /// What follows the progress token in every request's `_meta` (for a
    /// `2026-07-28` backend), commas and all; unset otherwise.
    meta: OnceLock<String>,
    /// Wakes the deadline task: a call is due earlier than it will look,
    /// or the session has ended.
    deadlines: Arc<Notify>,
}

impl std::fmt::Debug for Express {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never waits: a `Debug` of a backend must not block on its calls.
        let mut out = f.debug_struct("Express");
        if let Ok(table) = self.table.try_lock() {
            out.field("pending", &table.pending.len())
                .field("ended", &table.ended);
        }
        out.finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Table {
    pending: HashMap<u64, Pending, BuildHasherDefault<FxHasher>>,
    /// When the deadline task looks next; `None` while it waits to be told.
    wake_at: Option<Instant>,
    /// The session's stdout ended: calls fail at once.
    ended: bool,
}

/// A call sent and not yet answered.
struct Pending {
    finish: Box<dyn Finish>,
    /// When it times out: `idle` after it was sent or last reported
    /// progress, and never after `hard`.
    due: Instant,
    hard: Instant,
    deadline: Deadline,
}

impl Express {
    /// The express calls of a session writing its requests to `requests`,
    /// with the task that watches their deadlines, which ends with the
    /// session (or when this is dropped).
    pub(crate) fn new(requests: LineSender) -> Arc<Self> {
        let deadlines = Arc::new(Notify::new());
        let express = Arc::new(Self {
            table: Mutex::default(),
            used: AtomicBool::new(false),
            requests,
            meta: OnceLock::new(),
            deadlines: deadlines.clone(),
        });
        tokio::spawn(watch_deadlines(Arc::downgrade(&express), deadlines));
        express
    }

    /// Sets the per-request `_meta` a `2026-07-28` backend requires: the
    /// protocol version and the client's capabilities. The client's info,
    /// which that protocol leaves optional, is left out: a server reads it
    /// on every request (rmcp's, a tenth of a plain call's work), and all
    /// it would say is that the client is mcpgw.
    pub(crate) fn set_stateless_meta(
        &self,
        protocol: ProtocolVersion,
        capabilities: ClientCapabilities,
    ) {
        let mut meta = RequestMetaObject::new();
        meta.set_protocol_version(protocol);
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

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
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
        let Some(message) = std::str::from_utf8(line).ok().and_then(Envelope::read) else {
            return false;
        };
        match message.method {
            None => {
                let Some(id) = message.id.and_then(express_id) else {
                    return false;
                };
                // A late answer (the call timed out or was given up) is
                // dropped here too: rmcp knows nothing of its id.
                let Some(pending) = self.lock().pending.remove(&id) else {
                    return true;
                };
                let reply = match (message.result, message.error) {
                    (Some(result), _) => Reply::Result(result),
                    (None, Some(error)) => {
                        Reply::Error(serde_json::from_str(error).unwrap_or_else(|e| {
                            ErrorData::internal_error(
                                format!("the server sent a malformed error ({e})"),
                                None,
                            )
                        }))
                    }
                    (None, None) => Reply::Error(ErrorData::internal_error(
                        "the server sent a response with neither a result nor an error",
                        None,
                    )),
                };
                pending.finish.finish(Ok(reply));
                true
            }
            Some("notifications/progress") => {
                let mut token = None;
                if let Some(params) = message.params {
                    json::members(params, |key, value| {
                        if key == Some("progressToken") {
                            token = Some(value);
                        }
                    });
                }
                let Some(id) = token.and_then(express_id) else {
                    return false;
                };
                // Later, never earlier: the deadline task need not be told.
                if let Some(pending) = self.lock().pending.get_mut(&id) {
                    pending.due = (Instant::now() + pending.deadline.idle).min(pending.hard);
                }
                true
            }
            Some(_) => false,
        }
    }

    /// The session's stdout ended: every call fails, now and later.
    pub(crate) fn end(&self) {
        let ended = {
            let mut table = self.lock();
            table.ended = true;
            std::mem::take(&mut table.pending)
        };
        self.deadlines.notify_one();
        for pending in ended.into_values() {
            pending.finish.finish(Err(ServiceError::TransportClosed));
        }
    }

    fn request(&self, name: &str, arguments: Option<&str>) -> Request {
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
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

    fn start(&self, request: Request, deadline: Deadline, finish: Box<dyn Finish>) {
        let Request { id, line } = request;
        self.used.store(true, Ordering::Relaxed);
        let now = Instant::now();
        let hard = now + deadline.max_total;
        let due = (now + deadline.idle).min(hard);
        let mut table = self.lock();
        // Sent under the lock, so that a cancel cannot overtake the request.
        if table.ended || !self.requests.send(&line) {
            drop(table);
            finish.finish(Err(ServiceError::TransportClosed));
            return;
        }
        table.pending.insert(
            id,
            Pending {
                finish,
                due,
                hard,
                deadline,
            },
        );
        if table.wake_at.is_none_or(|at| due < at) {
            table.wake_at = Some(due);
            drop(table);
            self.deadlines.notify_one();
        }
    }

    fn cancel(&self, id: u64) -> Option<Box<dyn Finish>> {
        let pending = self.lock().pending.remove(&id)?;
        self.send_cancel(id, "the gateway's client abandoned the request");
        Some(pending.finish)
    }

    /// Tells the backend that call `id` is given up, in order behind its
    /// request, through the same outbox.
    fn send_cancel(&self, id: u64, reason: &str) {
        let mut line = Vec::with_capacity(160);
        line.extend_from_slice(
            b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/cancelled\",\"params\":{\"requestId\":\"",
        );
        push_id(&mut line, id);
        line.extend_from_slice(b"\",\"reason\":");
        let _ = serde_json::to_writer(&mut line, reason);
        line.extend_from_slice(b"}}\n");
        let _ = self.requests.send(&line);
    }

    /// Removes the calls due by `now` and says when the next one is due;
    /// and whether the session has ended.
    fn expire(&self, now: Instant) -> (Vec<(u64, Pending)>, bool) {
        let mut table = self.lock();
        let due: Vec<u64> = table
            .pending
            .iter()
            .filter(|(_, p)| p.due <= now)
            .map(|(id, _)| *id)
            .collect();
        let expired = due
            .into_iter()
            .filter_map(|id| Some((id, table.pending.remove(&id)?)))
            .collect();
        table.wake_at = table.pending.values().map(|p| p.due).min();
        (expired, table.ended)
    }

    async fn call(
        self: &Arc<Self>,
        request: Request,
        deadline: Deadline,
    ) -> Result<Answer, ServiceError> {
        let id = request.id;
        let waiter = Arc::new(Waiter::default());
        let mut outstanding = Outstanding {
            express: self,
            id,
            answered: false,
        };
        self.start(request, deadline, Box::new(waiter.clone()));
        std::future::poll_fn(|cx| {
            let mut state = waiter.lock();
            if let Some(answer) = state.answer.take() {
                outstanding.answered = true;
                return Poll::Ready(answer);
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

impl Drop for Express {
    fn drop(&mut self) {
        // The deadline task holds only a weak reference: let it end.
        self.deadlines.notify_one();
    }
}

/// The deadline task of one session: sleeps until the earliest call is due
/// (or until told of an earlier one), then times out the calls that are,
/// which cancels them at the backend.
async fn watch_deadlines(express: Weak<Express>, told: Arc<Notify>) {
    loop {
        let notified = told.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let wake_at = {
            let Some(express) = express.upgrade() else {
                return;
            };
            let (expired, ended) = express.expire(Instant::now());
            for (id, pending) in expired {
                express.send_cancel(id, "the gateway's deadline for the request passed");
                let timeout = if pending.due == pending.hard {
                    pending.deadline.max_total
                } else {
                    pending.deadline.idle
                };
                // One call's `Finish` must not end every call's deadlines.
                let finished = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    pending
                        .finish
                        .finish(Err(ServiceError::Timeout { timeout }));
                }));
                if finished.is_err() {
                    tracing::error!("an express call's timeout could not be answered (a panic)");
                }
            }
            if ended {
                return;
            }
            express.lock().wake_at
        };
        match wake_at {
            Some(at) => {
                tokio::select! {
                    () = tokio::time::sleep_until(at) => {}
                    () = &mut notified => {}
                }
            }
            None => notified.await,
        }
    }
}

/// An express request, built and numbered, not yet sent.
#[derive(Debug)]
pub struct Request {
    id: u64,
    line: Vec<u8>,
}

impl Request {
    /// The call's number, for [`ExpressCalls::cancel`].
    #[must_use]
    pub fn id(&self) -> u64 {
        self.id
    }
}

/// Where an awaited express call's answer is left for the caller.
#[derive(Debug, Default)]
struct Waiter(Mutex<WaiterState>);

#[derive(Debug, Default)]
struct WaiterState {
    /// The answer, or why there is none.
    answer: Option<Result<Answer, ServiceError>>,
    waker: Option<Waker>,
}

impl Waiter {
    fn lock(&self) -> MutexGuard<'_, WaiterState> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Finish for Arc<Waiter> {
    fn finish(self: Box<Self>, outcome: Result<Reply<'_>, ServiceError>) {
        let answer = outcome.map(|reply| match reply {
            Reply::Result(result) => Answer::Result(result.to_string()),
            Reply::Error(error) => Answer::Error(error),
        });
        let mut state = self.lock();
        state.answer = Some(answer);
        if let Some(waker) = state.waker.take() {
            drop(state);
            waker.wake();
        }
    }
}

/// Gives up an awaited express call that ends unanswered (its caller went
/// away), which tells the backend.
struct Outstanding<'a> {
    express: &'a Express,
    id: u64,
    answered: bool,
}

impl Drop for Outstanding<'_> {
    fn drop(&mut self) {
        if !self.answered {
            drop(self.express.cancel(self.id));
        }
    }
}

/// Appends express id `id` (`mcpgw-x7`, without quotes).
fn push_id(line: &mut Vec<u8>, id: u64) {
    line.extend_from_slice(PREFIX.as_bytes());
    line.extend_from_slice(itoa::Buffer::new().format(id).as_bytes());
}

/// The number of an express id (`"mcpgw-x7"` → 7), written as the
/// gateway writes it.
fn express_id(raw: &str) -> Option<u64> {
    let digits = raw
        .strip_prefix('"')?
        .strip_suffix('"')?
        .strip_prefix(PREFIX)?;
    if digits.starts_with('0') || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
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
            Express::new(outbox.lines()),
            BufReader::new(reader).lines(),
            outbox,
        )
    }

    #[tokio::test]
    async fn a_call_is_answered_by_the_line_with_its_id() {
        let (express, mut sent, _outbox) = express();
        let args = "{\"text\":\"hi\"}";
        let call = tokio::spawn({
            let express = express.clone();
            async move {
                express
                    .call(express.request("echo", Some(args)), DEADLINE)
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
            Answer::Result(result) => assert_eq!(result, "{\"content\":[]}"),
            Answer::Error(e) => panic!("{e:?}"),
        }
        assert!(express.lock().pending.is_empty());
    }

    #[test]
    fn only_ids_written_as_the_gateway_writes_them_are_express_ones() {
        assert_eq!(express_id(r#""mcpgw-x17""#), Some(17));
        for other in [
            r#""mcpgw-x+17""#,
            r#""mcpgw-x017""#,
            r#""mcpgw-x""#,
            "17",
            r#""x17""#,
        ] {
            assert_eq!(express_id(other), None, "{other}");
        }
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
        express.set_stateless_meta(ProtocolVersion::V_2026_07_28, ClientCapabilities::default());
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
        assert!(meta.contains_key("io.modelcontextprotocol/clientCapabilities"));
        assert!(!meta.contains_key("io.modelcontextprotocol/clientInfo"));
        call.abort();
    }
}
