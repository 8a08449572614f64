//! The express lane: a stdio client's `tools/call`, relayed as lines.
//!
//! The front hands the lane each `tools/call` line before rmcp sees it.
//! When the call is plain (no `_meta` from a handshake-era client, only
//! what the protocol requires from a `2026-07-28` one; a tool in the table
//! whose server is up and shared; no secret of another server in it), the
//! lane sends it to the backend as an express call (see `mcpgw_backend`'s
//! `express.rs`) and writes the answer, with the client's id, to the
//! client: no rmcp message types, no task per message. Anything else is
//! left to rmcp and the mux's handlers, which answer every case.
//!
//! Most calls take no task at all: admitted at once, sent, and answered
//! from the backend's stdout by [`Answering`], the call's `Finish`. A call
//! that must wait for a place in the server's queue, or a `2026-07-28`
//! client's call to a handshake-era server (whose requests for input
//! become the gateway's `InputRequiredResult`, `rounds.rs`), runs on a
//! task of its own.
//!
//! The lane keeps the mux's guarantees: the server's admission bounds and
//! deadline, its activity clock, the call metrics, the same errors, the
//! client's `notifications/cancelled` (the call is cancelled at the
//! backend and not answered), and the shape rmcp gives each era's result
//! (for a handshake-era client no `resultType: "complete"`, object-only
//! structured content, no `InputRequiredResult`; for a `2026-07-28` client
//! `resultType: "complete"` when absent; a task only with the capability).
//! Every line it writes passes the front's redaction filter.

use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use mcpgw_backend::outbox::LineSender;
use mcpgw_backend::{Answer, ExpressCalls, Finish, Reply, json};
use rmcp::ErrorData;
use rmcp::model::ErrorCode;
use rmcp::model::{
    CallToolResponse, ClientCapabilities, CustomResult, ProtocolVersion, ServerResult,
};
use rmcp::service::ServiceError;
use rustc_hash::FxHasher;
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::task::AbortHandle;

use crate::router::ToolLookup;
use crate::{Admitted, Mux, busy, lock, read, tool_call};

/// The express lane of one stdio client session. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ExpressLane {
    mux: Mux,
    /// To the client, through the front's filter.
    answers: LineSender,
    state: Arc<LaneState>,
}

#[derive(Debug, Default)]
struct LaneState {
    /// Calls in flight, by the client's id (its JSON text).
    calls: Mutex<HashMap<Arc<str>, Running, BuildHasherDefault<FxHasher>>>,
    /// The stdio client's era once known ([`UNKNOWN`], [`HANDSHAKE`],
    /// [`STATELESS`]): it does not change within the session.
    era: AtomicU8,
    /// The `_meta` a `2026-07-28` client sent last, as it wrote it, and
    /// the capabilities it declares: it sends the same with every call.
    declared: Mutex<Option<Declared>>,
}

#[derive(Debug)]
struct Declared {
    meta: Box<str>,
    capabilities: Arc<ClientCapabilities>,
}

const UNKNOWN: u8 = 0;
const HANDSHAKE: u8 = 1;
const STATELESS: u8 = 2;

/// How an express call in flight is given up.
#[derive(Debug)]
enum Running {
    /// Sent without a task: express call `id` of `calls`.
    Sent { calls: ExpressCalls, id: u64 },
    /// On a task of its own.
    Task(AbortHandle),
}

impl Mux {
    /// An express lane for this mux's one stdio client, answering through
    /// `answers`.
    #[must_use]
    pub fn express_lane(&self, answers: LineSender) -> ExpressLane {
        ExpressLane {
            mux: self.clone(),
            answers,
            state: Arc::default(),
        }
    }
}

/// The parameters of a plain call: anything more (a task, a
/// `requestState`) takes rmcp's path.
struct Params<'a> {
    name: Cow<'a, str>,
    arguments: Option<&'a str>,
    meta: Option<&'a str>,
}

impl<'a> Params<'a> {
    /// Reads `params`, checked JSON; `None` if the call is not plain (or
    /// not well formed, which rmcp's path answers).
    fn read(params: &'a str) -> Option<Self> {
        let [name, arguments, meta] = json::only(params, ["name", "arguments", "_meta"])?;
        let name = match json::plain_str(name?) {
            Some(name) => Cow::Borrowed(name),
            None => Cow::Owned(serde_json::from_str(name?).ok()?),
        };
        Some(Self {
            name,
            arguments: arguments.filter(|a| *a != "null"),
            meta: meta.filter(|m| *m != "null"),
        })
    }
}

/// The `_meta` of a `2026-07-28` client's plain call: what that protocol
/// puts in every request, and nothing more (a progress token, a log level
/// or anything else takes rmcp's path).
struct StatelessMeta<'a> {
    version: &'a str,
    capabilities: &'a str,
}

impl<'a> StatelessMeta<'a> {
    fn read(meta: &'a str) -> Option<Self> {
        let [version, capabilities, _info] = json::only(
            meta,
            [
                "io.modelcontextprotocol/protocolVersion",
                "io.modelcontextprotocol/clientCapabilities",
                "io.modelcontextprotocol/clientInfo",
            ],
        )?;
        Some(Self {
            version: json::plain_str(version?)?,
            capabilities: capabilities?,
        })
    }
}

/// The protocol era of the client making a call.
enum Era {
    /// Opened with `initialize`: its capabilities are the session's.
    Handshake,
    /// Stateless `2026-07-28`: these are the capabilities the call declared.
    Stateless(Arc<ClientCapabilities>),
}

#[derive(Deserialize)]
struct Cancelled<'a> {
    #[serde(borrow, rename = "requestId")]
    request_id: &'a RawValue,
}

impl ExpressLane {
    /// Takes the `tools/call` request `line` (id `id`, params `params`, as
    /// the front's [`Envelope`](mcpgw_backend::Envelope) read them) if it
    /// is plain; `false` leaves it to rmcp.
    pub fn call(&self, line: &str, id: &str, params: Option<&str>) -> bool {
        let Some(params) = params.and_then(Params::read) else {
            return false;
        };
        let era = match params.meta {
            None if self.client_era() == HANDSHAKE => Era::Handshake,
            None => return false,
            Some(meta) => match self.stateless(meta) {
                Some(capabilities) => Era::Stateless(capabilities),
                None => return false,
            },
        };
        if params.arguments.is_some_and(|a| !a.starts_with('{')) {
            return false;
        }
        let shared = &self.mux.shared;
        let (index, name, upstream, express, stateless_server, request) = {
            let table = read(&shared.table).clone();
            let ToolLookup::Found(route) = table.tool(&params.name) else {
                return false;
            };
            let slot = &shared.slots[route.server];
            if slot.per_session {
                return false;
            }
            let Some((express, stateless_server)) = self.mux.express_calls(route.server) else {
                return false;
            };
            // A call carrying another server's secret is refused by rmcp's
            // path.
            if self.mux.carries_secrets() && self.mux.foreign_secrets(slot, line).is_some() {
                return false;
            }
            // Built now, so that nothing of the client's line is kept.
            let request = express.request(&route.upstream, params.arguments);
            (
                route.server,
                route.name.clone(),
                route.upstream.clone(),
                express,
                stateless_server,
                request,
            )
        };
        let key: Arc<str> = id.into();
        // Held until the call is registered, so that it cannot end (and
        // unregister) before it is.
        let mut calls = lock(&self.state.calls);
        if calls.contains_key(&key) {
            return false;
        }
        let slot = &shared.slots[index];
        // Recorded when the call ends, answered or given up.
        let record = Record::begin(&self.mux, index, upstream);
        // A handshake-era server may ask a `2026-07-28` client for input
        // during the call, which takes the rounds' task; a `2026-07-28`
        // server cannot (the protocol has no server-to-client requests).
        let rounds = matches!(era, Era::Stateless(_)) && !stateless_server;
        if !rounds && let Some(admitted) = slot.limit.try_admit() {
            calls.insert(
                key.clone(),
                Running::Sent {
                    calls: express.clone(),
                    id: request.id(),
                },
            );
            drop(calls);
            let finish = Answering {
                lane: self.clone(),
                index,
                name,
                id: key,
                express_id: request.id(),
                era,
                record,
                _admitted: admitted,
            };
            express.start(request, slot.deadline, Box::new(finish));
            return true;
        }
        let task = self.spawn_call(
            index,
            name,
            key.clone(),
            era,
            rounds,
            express,
            request,
            record,
        );
        calls.insert(key, Running::Task(task));
        true
    }

    /// Runs a call on a task of its own: one that waits for a place in the
    /// server's queue, or (with `rounds`) one registered with the rounds
    /// (see [`Self::call`]).
    #[allow(clippy::too_many_arguments)]
    fn spawn_call(
        &self,
        index: usize,
        name: Arc<str>,
        id: Arc<str>,
        era: Era,
        rounds: bool,
        express: ExpressCalls,
        request: mcpgw_backend::ExpressRequest,
        mut record: Record,
    ) -> AbortHandle {
        let lane = self.clone();
        tokio::spawn(async move {
            let mux = &lane.mux;
            let slot = &mux.shared.slots[index];
            let what = || tool_call(&name);
            let call = {
                let mux = mux.clone();
                let what = what();
                async move {
                    let slot = &mux.shared.slots[index];
                    let Some(_permit) = slot.limit.admit().await else {
                        return Err(busy(slot, &slot.limit));
                    };
                    match express.call(request, slot.deadline).await {
                        Ok(answer) => Ok(answer),
                        Err(err) => Err(mux.call_failure(index, &what, None, err).await),
                    }
                }
            };
            let (line, ok) = match era {
                Era::Stateless(capabilities) if rounds => {
                    // Registered with the mux's rounds, as on rmcp's path, so
                    // that a request the backend makes during the call reaches
                    // this client as an `InputRequiredResult`.
                    let rounds = &mux.shared.rounds;
                    let work = async move {
                        match call.await? {
                            Answer::Result(result) => serde_json::from_str(&result)
                                .map(|v| ServerResult::CustomResult(CustomResult(v)))
                                .map_err(|e| internal(&e)),
                            Answer::Error(error) => Err(error),
                        }
                    };
                    let call = rounds.start(index, (*capabilities).clone(), work);
                    let binding = crate::rounds::binding(index, &what());
                    let outcome = rounds.run(call, &binding, slot.deadline.max_total).await;
                    lane.unregister_task(&id);
                    lane.stateless_answer(index, &what, &id, outcome, &capabilities)
                }
                era => {
                    let answer = call.await;
                    lane.unregister_task(&id);
                    let reply = match &answer {
                        Ok(Answer::Result(result)) => Ok(Reply::Result(result)),
                        Ok(Answer::Error(error)) | Err(error) => Err(error.clone()),
                    };
                    lane.reply_to(&era, index, &what, &id, reply)
                }
            };
            record.ok = ok;
            drop(record);
            lane.send(line);
        })
        .abort_handle()
    }

    /// Takes a `notifications/cancelled` for an express call; `false`
    /// leaves it to rmcp. The call is given up, which cancels it at the
    /// backend; the client gets no answer.
    pub fn cancel(&self, params: Option<&str>) -> bool {
        let Some(Ok(cancelled)) = params.map(serde_json::from_str::<Cancelled<'_>>) else {
            return false;
        };
        let Some(running) = lock(&self.state.calls).remove(cancelled.request_id.get()) else {
            return false;
        };
        match running {
            // Dropped unfinished: recorded as failed, its place given back.
            Running::Sent { calls, id } => drop(calls.cancel(id)),
            Running::Task(task) => task.abort(),
        }
        true
    }

    /// Removes the entry of the running task's call for client id `id`:
    /// not one a later call with the same id made after this one was
    /// cancelled.
    fn unregister_task(&self, id: &str) {
        let mut calls = lock(&self.state.calls);
        if matches!(calls.get(id), Some(Running::Task(task)) if task.id() == tokio::task::id()) {
            calls.remove(id);
        }
    }

    /// Removes the entry of express call `express_id` for client id `id`.
    fn unregister_sent(&self, id: &str, express_id: u64) {
        let mut calls = lock(&self.state.calls);
        if matches!(calls.get(id), Some(Running::Sent { id, .. }) if *id == express_id) {
            calls.remove(id);
        }
    }

    fn send(&self, line: Option<Vec<u8>>) {
        if let Some(line) = line
            && !self.answers.send(&line)
        {
            tracing::debug!("an answer was not sent: the client is not reading");
        }
    }

    /// The stdio client's era, once it is known; it cannot change.
    fn client_era(&self) -> u8 {
        let known = self.state.era.load(Ordering::Relaxed);
        if known != UNKNOWN {
            return known;
        }
        let shared = &self.mux.shared;
        if shared.many_sessions.load(Ordering::Relaxed) {
            return UNKNOWN;
        }
        match read(&shared.clients).first().map(rmcp::Peer::peer_info) {
            // Known once the client's peer has its info.
            Some(Some(info)) => {
                let era = if info.protocol_version.has_initialize() {
                    HANDSHAKE
                } else {
                    STATELESS
                };
                self.state.era.store(era, Ordering::Relaxed);
                era
            }
            Some(None) => STATELESS,
            None => UNKNOWN,
        }
    }

    /// The capabilities a `2026-07-28` client declared in a call's `meta`,
    /// if the call is plain and the stdio client is known and stateless.
    fn stateless(&self, meta: &str) -> Option<Arc<ClientCapabilities>> {
        if self.client_era() != STATELESS {
            return None;
        }
        let mut declared = lock(&self.state.declared);
        if let Some(last) = &*declared
            && *last.meta == *meta
        {
            return Some(last.capabilities.clone());
        }
        let read = StatelessMeta::read(meta)?;
        if read.version != ProtocolVersion::V_2026_07_28.as_str() {
            return None;
        }
        let capabilities =
            Arc::new(serde_json::from_str::<ClientCapabilities>(read.capabilities).ok()?);
        *declared = Some(Declared {
            meta: meta.into(),
            capabilities: capabilities.clone(),
        });
        Some(capabilities)
    }

    fn client_capabilities(&self) -> ClientCapabilities {
        read(&self.mux.shared.clients)
            .first()
            .and_then(rmcp::Peer::peer_info)
            .map(|info| info.capabilities.clone())
            .unwrap_or_default()
    }

    /// The line that answers a client of `era` (none if it cannot be
    /// written), and whether the call succeeded, for a call that ran
    /// without rounds. `id` is the client's id, as JSON.
    fn reply_to(
        &self,
        era: &Era,
        index: usize,
        what: &dyn Fn() -> String,
        id: &str,
        answer: Result<Reply<'_>, ErrorData>,
    ) -> (Option<Vec<u8>>, bool) {
        match era {
            Era::Handshake => self.answer(index, what, id, answer),
            Era::Stateless(capabilities) => {
                self.stateless_reply(index, what, id, answer, capabilities)
            }
        }
    }

    /// The line that answers a handshake-era client (none if it cannot be
    /// written), and whether the call succeeded. `id` is the client's id,
    /// as JSON.
    fn answer(
        &self,
        index: usize,
        what: &dyn Fn() -> String,
        id: &str,
        answer: Result<Reply<'_>, ErrorData>,
    ) -> (Option<Vec<u8>>, bool) {
        reply(id, result_len(&answer), what, |line| match answer {
            Ok(Reply::Result(result)) => {
                let mark = line.len();
                // Most results pass as they came, less `resultType`.
                if let Some(is_error) = plain_result(result, Shape::Handshake, line) {
                    return Ok(is_error);
                }
                line.truncate(mark);
                let (result, is_error) = self.legacy_result(index, &what(), result)?;
                line.extend_from_slice(result.as_bytes());
                Ok(is_error)
            }
            Ok(Reply::Error(error)) | Err(error) => Err(error),
        })
    }

    /// The line that answers a `2026-07-28` client's call that ran without
    /// rounds (its server is of that era too), and whether it succeeded.
    fn stateless_reply(
        &self,
        index: usize,
        what: &dyn Fn() -> String,
        id: &str,
        answer: Result<Reply<'_>, ErrorData>,
        capabilities: &ClientCapabilities,
    ) -> (Option<Vec<u8>>, bool) {
        // Room for a `resultType` too.
        reply(id, result_len(&answer) + 24, what, |line| {
            let result = match answer.map_err(stateless_error) {
                Ok(Reply::Result(result)) => result,
                Ok(Reply::Error(error)) | Err(error) => return Err(stateless_error(error)),
            };
            let mark = line.len();
            // Most results pass as they came, with `resultType`.
            if let Some(is_error) = plain_result(result, Shape::Stateless, line) {
                return Ok(is_error);
            }
            line.truncate(mark);
            let parsed =
                serde_json::from_str(result).map_err(|e| malformed(self, index, what, &e))?;
            self.stateless_result(index, what, parsed, capabilities, line)
        })
    }

    /// The line that answers a `2026-07-28` client that declared
    /// `capabilities` (none if it cannot be written), and whether the call
    /// succeeded: the backend's result (in a `CustomResult`, as parsed
    /// JSON), or the gateway's `InputRequiredResult` when the backend asked
    /// for input.
    fn stateless_answer(
        &self,
        index: usize,
        what: &dyn Fn() -> String,
        id: &str,
        outcome: Result<ServerResult, ErrorData>,
        capabilities: &ClientCapabilities,
    ) -> (Option<Vec<u8>>, bool) {
        let outcome = outcome.map_err(stateless_error);
        reply(id, 256, what, |line| {
            let result = match outcome? {
                ServerResult::CustomResult(CustomResult(value)) => {
                    // Shaped by the same rule as a result answered directly.
                    let mark = line.len();
                    if let Some(is_error) = plain_result(&value.to_string(), Shape::Stateless, line)
                    {
                        return Ok(is_error);
                    }
                    line.truncate(mark);
                    serde_json::from_value(value).map_err(|e| malformed(self, index, what, &e))?
                }
                other => other,
            };
            self.stateless_result(index, what, result, capabilities, line)
        })
    }

    /// Writes a backend's result that is not plain as rmcp's path gives it
    /// to a `2026-07-28` client that declared `capabilities`; and says
    /// whether it reports an error.
    fn stateless_result(
        &self,
        index: usize,
        what: &dyn Fn() -> String,
        result: ServerResult,
        capabilities: &ClientCapabilities,
        line: &mut Vec<u8>,
    ) -> Result<bool, ErrorData> {
        let response = self.mux.tool_response(index, &what(), result)?;
        if matches!(response, CallToolResponse::Task(_)) && !capabilities.supports_tasks() {
            return Err(ErrorData::missing_required_client_capability(
                ClientCapabilities::builder().enable_tasks().build(),
            ));
        }
        let is_error =
            matches!(&response, CallToolResponse::Complete(r) if r.is_error == Some(true));
        serde_json::to_writer(&mut *line, &ServerResult::from(response))
            .map_err(|e| internal(&e))?;
        Ok(is_error)
    }

    /// A backend's tool result that is not plain (see [`plain_result`]) as
    /// rmcp would give it to a handshake-era client, through rmcp's types
    /// as on rmcp's path; and whether it reports an error.
    fn legacy_result(
        &self,
        index: usize,
        what: &str,
        result: &str,
    ) -> Result<(String, bool), ErrorData> {
        let parsed: ServerResult = serde_json::from_str(result)
            .map_err(|e| malformed(self, index, &|| what.to_string(), &e))?;
        let response = self.mux.tool_response(index, what, parsed)?;
        match &response {
            CallToolResponse::InputRequired(_) => {
                return Err(ErrorData::invalid_request(
                    "InputRequiredResult requires negotiated protocol version 2026-07-28 or newer",
                    None,
                ));
            }
            CallToolResponse::Task(_) if !self.client_capabilities().supports_tasks() => {
                return Err(ErrorData::missing_required_client_capability(
                    ClientCapabilities::builder().enable_tasks().build(),
                ));
            }
            _ => {}
        }
        let is_error =
            matches!(&response, CallToolResponse::Complete(r) if r.is_error == Some(true));
        let mut result = ServerResult::from(response);
        result.strip_result_type_for_legacy_peer();
        result.strip_non_object_output_for_legacy_peer();
        let text = serde_json::to_string(&result).map_err(|e| internal(&e))?;
        Ok((text, is_error))
    }
}

/// An express call sent without a task: where its outcome goes, and what
/// it holds while it runs (its place at the server, its record).
struct Answering {
    lane: ExpressLane,
    index: usize,
    /// The tool's exposed name, for errors.
    name: Arc<str>,
    /// The client's id, as JSON.
    id: Arc<str>,
    express_id: u64,
    era: Era,
    record: Record,
    _admitted: Admitted,
}

impl Finish for Answering {
    fn finish(self: Box<Self>, outcome: Result<Reply<'_>, ServiceError>) {
        let answer = match outcome {
            Ok(reply) => Ok(reply),
            Err(ServiceError::McpError(error)) => Err(error),
            Err(err) => return self.fail(err),
        };
        let Self {
            lane,
            index,
            name,
            id,
            express_id,
            era,
            mut record,
            _admitted,
        } = *self;
        lane.unregister_sent(&id, express_id);
        drop(_admitted);
        let (line, ok) = lane.reply_to(&era, index, &|| tool_call(&name), &id, answer);
        record.ok = ok;
        drop(record);
        lane.send(line);
    }
}

impl Answering {
    /// Answers a call that ended unanswered (it timed out, or its server's
    /// session ended) with why, which takes a look at the engine (a
    /// crash's exit code, a container at its limits): on a task, which
    /// takes the call's place in the lane, so that the client can still
    /// cancel it (and then gets no answer), and holds the call's place at
    /// the server and its record until it is answered.
    fn fail(self, err: ServiceError) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let lane = self.lane.clone();
        let mut calls = lock(&lane.state.calls);
        let ours = |running: &Running| matches!(running, Running::Sent { id, .. } if *id == self.express_id);
        if !calls.get(&*self.id).is_some_and(ours) {
            // Given up by the client meanwhile: no answer.
            return;
        }
        let key = self.id.clone();
        let task = runtime.spawn(async move {
            let Self {
                lane,
                index,
                name,
                id,
                era,
                mut record,
                _admitted,
                ..
            } = self;
            let what = || tool_call(&name);
            let error = lane.mux.call_failure(index, &what(), None, err).await;
            lane.unregister_task(&id);
            drop(_admitted);
            let (line, ok) = lane.reply_to(&era, index, &what, &id, Err(error));
            record.ok = ok;
            drop(record);
            lane.send(line);
        });
        calls.insert(key, Running::Task(task.abort_handle()));
    }
}

/// The length of the result in `answer`, if there is one.
fn result_len(answer: &Result<Reply<'_>, ErrorData>) -> usize {
    match answer {
        Ok(Reply::Result(result)) => result.len(),
        _ => 0,
    }
}

/// A backend's error as rmcp's server gives it to a `2026-07-28` peer.
fn stateless_error(mut error: ErrorData) -> ErrorData {
    if error.code == ErrorCode::RESOURCE_NOT_FOUND {
        error.code = ErrorCode::INVALID_PARAMS;
    }
    error
}

/// The answer line to the client with JSON id `id`: `{"jsonrpc":"2.0",
/// "id":ID,"result":…}` with the result `body` writes (it says whether the
/// result reports an error), or else with its error; none if the error
/// cannot be written. And whether the call succeeded.
fn reply(
    id: &str,
    capacity: usize,
    what: &dyn Fn() -> String,
    body: impl FnOnce(&mut Vec<u8>) -> Result<bool, ErrorData>,
) -> (Option<Vec<u8>>, bool) {
    let mut line = Vec::with_capacity(capacity + id.len() + 48);
    line.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"id\":");
    line.extend_from_slice(id.as_bytes());
    let head = line.len();
    line.extend_from_slice(b",\"result\":");
    let ok = match body(&mut line) {
        Ok(is_error) => !is_error,
        Err(error) => {
            line.truncate(head);
            line.extend_from_slice(b",\"error\":");
            if let Err(err) = serde_json::to_writer(&mut line, &error) {
                tracing::warn!("cannot write the answer to {}: {err}", what());
                return (None, false);
            }
            false
        }
    };
    line.extend_from_slice(b"}\n");
    (Some(line), ok)
}

/// The error for a backend's result that is no tool result at all.
fn malformed(
    lane: &ExpressLane,
    index: usize,
    what: &dyn Fn() -> String,
    err: &serde_json::Error,
) -> ErrorData {
    ErrorData::internal_error(
        format!(
            "server `{}` answered {} with a malformed result: {err}",
            lane.mux.shared.slots[index].name,
            what()
        ),
        None,
    )
}

/// Whose view of a plain result [`plain_result`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// A handshake-era client's: `resultType` removed.
    Handshake,
    /// A `2026-07-28` client's: `resultType: "complete"`, added if absent.
    Stateless,
}

/// Writes a backend's tool result to `out` as rmcp gives a plain one to a
/// client of `shape`'s era: its members as they came, `resultType` removed
/// or kept (added if absent); and says whether it reports an error. `None`,
/// with `out` to be truncated, when it is not plain: a `resultType` other
/// than `complete`, no content array, structured content other than an
/// object, or a key with escapes. `result` is checked JSON (see
/// `mcpgw_backend::json`).
fn plain_result(result: &str, shape: Shape, out: &mut Vec<u8>) -> Option<bool> {
    let (mut plain, mut content, mut is_error, mut typed) = (true, false, false, false);
    out.push(b'{');
    let empty = out.len();
    json::members(result, |key, value| {
        let Some(key) = key else {
            plain = false;
            return;
        };
        match key {
            "resultType" if value == "\"complete\"" => {
                typed = true;
                if shape == Shape::Handshake {
                    return;
                }
            }
            "resultType" => plain = false,
            "content" => content = value.starts_with('['),
            "structuredContent" if !value.starts_with('{') => plain = false,
            "isError" => is_error = value == "true",
            _ => {}
        }
        if out.len() > empty {
            out.push(b',');
        }
        out.push(b'"');
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(b"\":");
        out.extend_from_slice(value.as_bytes());
    })?;
    if shape == Shape::Stateless && !typed {
        if out.len() > empty {
            out.push(b',');
        }
        out.extend_from_slice(b"\"resultType\":\"complete\"");
    }
    out.push(b'}');
    (plain && content).then_some(is_error)
}

/// The bookkeeping of an express call: the server's activity clock when it
/// starts and ends, and the call metrics when it ends, however it ends.
/// Made before the call is sent (or its task spawned), so a call given up
/// before it starts is recorded too.
struct Record {
    mux: Mux,
    index: usize,
    tool: Arc<str>,
    began: Instant,
    ok: bool,
}

impl Record {
    fn begin(mux: &Mux, index: usize, tool: Arc<str>) -> Self {
        let began = Instant::now();
        *lock(&mux.shared.slots[index].last_used) = began;
        Self {
            mux: mux.clone(),
            index,
            tool,
            began,
            ok: false,
        }
    }
}

impl Drop for Record {
    fn drop(&mut self) {
        let shared = &self.mux.shared;
        let slot = &shared.slots[self.index];
        let now = Instant::now();
        *lock(&slot.last_used) = now;
        shared
            .metrics
            .call(slot.name.as_str(), &self.tool, self.ok, now - self.began);
    }
}

fn internal(err: &serde_json::Error) -> ErrorData {
    ErrorData::internal_error(format!("cannot encode a result: {err}"), None)
}

#[cfg(test)]
mod tests {
    use super::{Shape, plain_result};

    fn plain(result: &str) -> Option<(String, bool)> {
        shaped(result, Shape::Handshake)
    }

    fn shaped(result: &str, shape: Shape) -> Option<(String, bool)> {
        let mut out = Vec::new();
        let is_error = plain_result(result, shape, &mut out)?;
        Some((String::from_utf8(out).unwrap(), is_error))
    }

    #[test]
    fn a_plain_result_passes_as_it_came_less_its_result_type() {
        assert_eq!(
            plain(r#"{"content":[{"type":"text","text":"hi"}],"isError":false}"#),
            Some((
                r#"{"content":[{"type":"text","text":"hi"}],"isError":false}"#.into(),
                false
            ))
        );
        assert_eq!(
            plain(
                r#"{"resultType":"complete", "content":[],"structuredContent":{"a":1},"isError":true,"_meta":{"x":"y"}}"#
            ),
            Some((
                r#"{"content":[],"structuredContent":{"a":1},"isError":true,"_meta":{"x":"y"}}"#
                    .into(),
                true
            ))
        );
        assert_eq!(
            plain(r#"{"content":[],"resultType":"complete"}"#),
            Some((r#"{"content":[]}"#.into(), false))
        );
    }

    #[test]
    fn a_2026_client_gets_a_plain_result_as_it_came_with_its_result_type() {
        assert_eq!(
            shaped(
                r#"{"content":[],"isError":true,"resultType":"complete"}"#,
                Shape::Stateless
            ),
            Some((
                r#"{"content":[],"isError":true,"resultType":"complete"}"#.into(),
                true
            ))
        );
        assert_eq!(
            shaped(
                r#"{"content":[{"type":"text","text":"hi"}]}"#,
                Shape::Stateless
            ),
            Some((
                r#"{"content":[{"type":"text","text":"hi"}],"resultType":"complete"}"#.into(),
                false
            ))
        );
        assert_eq!(
            shaped(
                r#"{"resultType":"input_required","inputRequests":{}}"#,
                Shape::Stateless
            ),
            None
        );
    }

    #[test]
    fn any_other_result_takes_rmcps_types() {
        for result in [
            r#"{"resultType":"input_required","inputRequests":{}}"#,
            r#"{"resultType":"task","task":{}}"#,
            r#"{"content":[],"structuredContent":[1,2]}"#,
            r#"{"structuredContent":{}}"#,
            r#"{"content":[],"res\u0075ltType":"complete"}"#,
            r#"[]"#,
        ] {
            assert_eq!(plain(result), None, "{result}");
            assert_eq!(shaped(result, Shape::Stateless), None, "{result}");
        }
    }
}
