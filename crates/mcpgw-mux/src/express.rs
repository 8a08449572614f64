//! The express lane: a stdio client's `tools/call`, relayed as lines.
//!
//! The front hands the lane each `tools/call` line before rmcp sees it.
//! When the call is plain (a handshake-era client, no `_meta`, a tool in
//! the table whose server is up and shared, no secret of another server in
//! it), the lane sends it to the backend as an express call (see
//! `mcpgw_backend`'s `express.rs`) and writes the answer, with the client's
//! id, to the client: no rmcp message types, no task per message. Anything
//! else is left to rmcp and the mux's handlers, which answer every case.
//!
//! The lane keeps the mux's guarantees: the server's admission bounds and
//! deadline, its activity clock, the call metrics, the same errors, the
//! client's `notifications/cancelled` (the call is cancelled at the
//! backend and not answered), and the shape rmcp gives a handshake-era
//! client's result (no `resultType: "complete"`, object-only structured
//! content, no `InputRequiredResult`, no task without the capability). Every
//! line it writes passes the front's redaction filter.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use mcpgw_backend::Answer;
use mcpgw_backend::outbox::LineSender;
use rmcp::ErrorData;
use rmcp::model::{CallToolResponse, ClientCapabilities, ServerResult};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio_util::sync::CancellationToken;

use crate::router::ToolLookup;
use crate::{Activity, Mux, busy, lock, read};

/// The express lane of one stdio client session. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ExpressLane {
    mux: Mux,
    /// To the client, through the front's filter.
    answers: LineSender,
    /// Calls in flight, by the client's id (its JSON text).
    calls: Arc<Mutex<HashMap<Box<str>, CancellationToken>>>,
    /// Whether the client is known to be of the handshake era; set once.
    open: Arc<AtomicBool>,
}

impl Mux {
    /// An express lane for this mux's one stdio client, answering through
    /// `answers`.
    #[must_use]
    pub fn express_lane(&self, answers: LineSender) -> ExpressLane {
        ExpressLane {
            mux: self.clone(),
            answers,
            calls: Arc::default(),
            open: Arc::default(),
        }
    }
}

/// The parameters of a plain call: anything more (`_meta`, a task, a
/// `requestState`) takes rmcp's path.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(borrow)]
    arguments: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Cancelled<'a> {
    #[serde(borrow, rename = "requestId")]
    request_id: &'a RawValue,
}

#[derive(Serialize)]
struct ErrorResponse<'a> {
    jsonrpc: &'static str,
    id: &'a RawValue,
    error: &'a ErrorData,
}

impl ExpressLane {
    /// Takes the `tools/call` request `line` (id `id`, params `params`) if
    /// it is plain; `false` leaves it to rmcp.
    pub fn call(&self, line: &[u8], id: &RawValue, params: Option<&RawValue>) -> bool {
        if !self.is_open() {
            return false;
        }
        let Some(Ok(params)) = params.map(|p| serde_json::from_str::<Params<'_>>(p.get())) else {
            return false;
        };
        if params
            .arguments
            .is_some_and(|a| !a.get().trim_start().starts_with('{'))
        {
            return false;
        }
        let shared = &self.mux.shared;
        let table = read(&shared.table).clone();
        let ToolLookup::Found(route) = table.tool(&params.name) else {
            return false;
        };
        let slot = &shared.slots[route.server];
        if slot.per_session {
            return false;
        }
        let Ok(backend) = self.mux.backend(route.server) else {
            return false;
        };
        // A call carrying another server's secret is refused by rmcp's path.
        if self.mux.carries_secrets() {
            let Ok(text) = std::str::from_utf8(line) else {
                return false;
            };
            if self.mux.foreign_secrets(slot, text).is_some() {
                return false;
            }
        }
        let key: Box<str> = id.get().into();
        let token = CancellationToken::new();
        {
            let mut calls = lock(&self.calls);
            if calls.contains_key(&key) {
                return false;
            }
            calls.insert(key.clone(), token.clone());
        }
        let index = route.server;
        let upstream = serde_json::to_string(&route.upstream).unwrap_or_default();
        let tool = route.upstream.clone();
        let arguments = params.arguments.map(ToOwned::to_owned);
        let what = format!("tools/call `{}`", params.name);
        let id = id.to_owned();
        let lane = self.clone();
        tokio::spawn(async move {
            let mux = &lane.mux;
            let slot = &mux.shared.slots[index];
            let began = Instant::now();
            let call = async {
                let _activity = Activity::begin(slot);
                let Some(_permit) = slot.limit.admit().await else {
                    return Err(busy(slot, &slot.limit));
                };
                match backend
                    .call_express(&upstream, arguments.as_deref(), slot.deadline)
                    .await
                {
                    Ok(answer) => Ok(answer),
                    Err(err) => Err(mux.call_failure(index, &what, &backend, err).await),
                }
            };
            let answer = tokio::select! {
                answer = call => Some(answer),
                // Dropping the call cancels it at the backend; the client
                // gets no answer.
                () = token.cancelled() => None,
            };
            lock(&lane.calls).remove(&key);
            let (line, ok) = match answer {
                Some(answer) => lane.answer(index, &what, &id, answer),
                None => (None, false),
            };
            mux.shared
                .metrics
                .call(slot.name.as_str(), &tool, ok, began.elapsed());
            if let Some(line) = line
                && !lane.answers.send(&line)
            {
                tracing::debug!("an answer was not sent: the client is not reading");
            }
        });
        true
    }

    /// Takes a `notifications/cancelled` for an express call; `false`
    /// leaves it to rmcp.
    pub fn cancel(&self, params: Option<&RawValue>) -> bool {
        let Some(Ok(cancelled)) = params.map(|p| serde_json::from_str::<Cancelled<'_>>(p.get()))
        else {
            return false;
        };
        let Some(token) = lock(&self.calls).remove(cancelled.request_id.get()) else {
            return false;
        };
        token.cancel();
        true
    }

    /// Whether the stdio client is known and of the handshake era.
    fn is_open(&self) -> bool {
        if self.open.load(Ordering::Relaxed) {
            return true;
        }
        let shared = &self.mux.shared;
        let open = !shared.many_sessions.load(Ordering::Relaxed)
            && read(&shared.clients).first().is_some_and(|peer| {
                peer.peer_info()
                    .is_some_and(|info| info.protocol_version.has_initialize())
            });
        if open {
            self.open.store(true, Ordering::Relaxed);
        }
        open
    }

    fn client_capabilities(&self) -> ClientCapabilities {
        read(&self.mux.shared.clients)
            .first()
            .and_then(rmcp::Peer::peer_info)
            .map(|info| info.capabilities.clone())
            .unwrap_or_default()
    }

    /// The line that answers the client (none if it cannot be written),
    /// and whether the call succeeded.
    fn answer(
        &self,
        index: usize,
        what: &str,
        id: &RawValue,
        answer: Result<Answer, ErrorData>,
    ) -> (Option<Vec<u8>>, bool) {
        let result = match answer {
            Ok(Answer::Result(result)) => self.legacy_result(index, what, &result),
            Ok(Answer::Error(error)) | Err(error) => Err(error),
        };
        let (line, ok) = match &result {
            Ok((result, is_error)) => {
                let mut line = Vec::with_capacity(result.len() + id.get().len() + 40);
                line.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"id\":");
                line.extend_from_slice(id.get().as_bytes());
                line.extend_from_slice(b",\"result\":");
                line.extend_from_slice(result.as_bytes());
                line.push(b'}');
                (Ok(line), !is_error)
            }
            Err(error) => (
                serde_json::to_vec(&ErrorResponse {
                    jsonrpc: "2.0",
                    id,
                    error,
                }),
                false,
            ),
        };
        match line {
            Ok(mut line) => {
                line.push(b'\n');
                (Some(line), ok)
            }
            Err(err) => {
                tracing::warn!("cannot write the answer to {what}: {err}");
                (None, false)
            }
        }
    }

    /// A backend's tool result as rmcp would give it to a handshake-era
    /// client, and whether it reports an error. A plain result (content,
    /// object or no structured content, `resultType` absent or complete)
    /// passes with only `resultType` removed; any other goes through rmcp's
    /// types, as on rmcp's path.
    fn legacy_result(
        &self,
        index: usize,
        what: &str,
        result: &RawValue,
    ) -> Result<(String, bool), ErrorData> {
        if let Ok(fields) = serde_json::from_str::<BTreeMap<Cow<'_, str>, &RawValue>>(result.get())
        {
            let result_type = fields
                .get("resultType")
                .map(|t| serde_json::from_str::<Cow<'_, str>>(t.get()));
            let complete = match &result_type {
                None => true,
                Some(Ok(t)) => t == "complete",
                Some(Err(_)) => false,
            };
            let plain = complete
                && fields
                    .get("content")
                    .is_some_and(|c| c.get().trim_start().starts_with('['))
                && fields
                    .get("structuredContent")
                    .is_none_or(|s| s.get().trim_start().starts_with('{'));
            if plain {
                let is_error = fields.get("isError").is_some_and(|e| e.get() == "true");
                if result_type.is_none() {
                    return Ok((result.get().to_string(), is_error));
                }
                // The fields as they came, but `resultType`.
                let mut text = String::with_capacity(result.get().len());
                text.push('{');
                for (key, value) in fields.iter().filter(|(k, _)| *k != "resultType") {
                    if text.len() > 1 {
                        text.push(',');
                    }
                    text.push_str(&serde_json::to_string(key).map_err(|e| internal(&e))?);
                    text.push(':');
                    text.push_str(value.get());
                }
                text.push('}');
                return Ok((text, is_error));
            }
        }
        let parsed: ServerResult = serde_json::from_str(result.get()).map_err(|e| {
            ErrorData::internal_error(
                format!(
                    "server `{}` answered {what} with a malformed result: {e}",
                    self.mux.shared.slots[index].name
                ),
                None,
            )
        })?;
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

fn internal(err: &serde_json::Error) -> ErrorData {
    ErrorData::internal_error(format!("cannot encode a result: {err}"), None)
}
