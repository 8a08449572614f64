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
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use mcpgw_backend::Answer;
use mcpgw_backend::outbox::LineSender;
use rmcp::ErrorData;
use rmcp::model::ErrorCode;
use rmcp::model::{
    CallToolResponse, ClientCapabilities, CustomResult, ProtocolVersion, ServerResult,
};
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::task::AbortHandle;

use crate::router::ToolLookup;
use crate::{Activity, Mux, busy, lock, read, tool_call};

/// The express lane of one stdio client session. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ExpressLane {
    mux: Mux,
    /// To the client, through the front's filter.
    answers: LineSender,
    /// Calls in flight, by the client's id (its JSON text).
    calls: Arc<Mutex<HashMap<Arc<str>, AbortHandle>>>,
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

/// The parameters of a plain call: anything more (a task, a
/// `requestState`) takes rmcp's path.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(borrow)]
    arguments: Option<&'a RawValue>,
    #[serde(borrow, rename = "_meta")]
    meta: Option<&'a RawValue>,
}

/// The `_meta` of a `2026-07-28` client's plain call: what that protocol
/// puts in every request, and nothing more (a progress token, a log level
/// or anything else takes rmcp's path).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StatelessMeta<'a> {
    #[serde(borrow, rename = "io.modelcontextprotocol/protocolVersion")]
    version: &'a str,
    #[serde(rename = "io.modelcontextprotocol/clientCapabilities")]
    capabilities: ClientCapabilities,
    #[serde(borrow, rename = "io.modelcontextprotocol/clientInfo")]
    _info: Option<&'a RawValue>,
}

/// The protocol era of the client making a call.
enum Era {
    /// Opened with `initialize`: its capabilities are the session's.
    Handshake,
    /// Stateless `2026-07-28`: these are the capabilities the call declared.
    Stateless(ClientCapabilities),
}

#[derive(Deserialize)]
struct Cancelled<'a> {
    #[serde(borrow, rename = "requestId")]
    request_id: &'a RawValue,
}

impl ExpressLane {
    /// Takes the `tools/call` request `line` (id `id`, params `params`) if
    /// it is plain; `false` leaves it to rmcp.
    pub fn call(&self, line: &[u8], id: &RawValue, params: Option<&RawValue>) -> bool {
        let Some(Ok(params)) = params.map(|p| serde_json::from_str::<Params<'_>>(p.get())) else {
            return false;
        };
        let era = match params.meta {
            None if self.is_open() => Era::Handshake,
            None => return false,
            Some(meta) => match self.stateless(meta) {
                Some(capabilities) => Era::Stateless(capabilities),
                None => return false,
            },
        };
        if params
            .arguments
            .is_some_and(|a| !a.get().trim_start().starts_with('{'))
        {
            return false;
        }
        let shared = &self.mux.shared;
        let (index, name, upstream, backend, request) = {
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
            // A call carrying another server's secret is refused by rmcp's
            // path.
            if self.mux.carries_secrets() {
                let Ok(text) = std::str::from_utf8(line) else {
                    return false;
                };
                if self.mux.foreign_secrets(slot, text).is_some() {
                    return false;
                }
            }
            // Built now, so that nothing of the client's line is kept.
            let request =
                backend.express_request(&route.upstream, params.arguments.map(RawValue::get));
            (
                route.server,
                route.name.clone(),
                route.upstream.clone(),
                backend,
                request,
            )
        };
        let key: Arc<str> = id.get().into();
        // Held while the task is spawned and registered, so that it cannot
        // end (and unregister) before it is registered.
        let mut calls = lock(&self.calls);
        if calls.contains_key(&key) {
            return false;
        }
        let lane = self.clone();
        let id = key.clone();
        // Recorded when the call ends, answered or cancelled.
        let record = Record {
            mux: self.mux.clone(),
            index,
            tool: upstream,
            began: Instant::now(),
            ok: false,
        };
        let task = tokio::spawn(async move {
            let mut record = record;
            let mux = &lane.mux;
            let slot = &mux.shared.slots[index];
            let what = || tool_call(&name);
            let call = {
                let mux = mux.clone();
                let what = what();
                async move {
                    let slot = &mux.shared.slots[index];
                    let _activity = Activity::begin(slot);
                    let Some(_permit) = slot.limit.admit().await else {
                        return Err(busy(slot, &slot.limit));
                    };
                    match backend.call_express(request, slot.deadline).await {
                        Ok(answer) => Ok(answer),
                        Err(err) => Err(mux.call_failure(index, &what, &backend, err).await),
                    }
                }
            };
            let (line, ok) = match era {
                Era::Handshake => {
                    let answer = call.await;
                    lane.unregister(&id);
                    lane.answer(index, &what, &id, answer)
                }
                Era::Stateless(capabilities) => {
                    // Registered with the mux's rounds, as on rmcp's path, so
                    // that a request the backend makes during the call reaches
                    // this client as an `InputRequiredResult`.
                    let rounds = &mux.shared.rounds;
                    let work = async move {
                        match call.await? {
                            Answer::Result(result) => serde_json::from_str(result.get())
                                .map(|v| ServerResult::CustomResult(CustomResult(v)))
                                .map_err(|e| internal(&e)),
                            Answer::Error(error) => Err(error),
                        }
                    };
                    let call = rounds.start(index, capabilities.clone(), work);
                    let binding = crate::rounds::binding(index, &what());
                    let outcome = rounds.run(call, &binding, slot.deadline.max_total).await;
                    lane.unregister(&id);
                    lane.stateless_answer(index, &what, &id, outcome, &capabilities)
                }
            };
            record.ok = ok;
            drop(record);
            if let Some(line) = line
                && !lane.answers.send(&line)
            {
                tracing::debug!("an answer was not sent: the client is not reading");
            }
        });
        calls.insert(key, task.abort_handle());
        true
    }

    /// Takes a `notifications/cancelled` for an express call; `false`
    /// leaves it to rmcp. The call is dropped, which cancels it at the
    /// backend; the client gets no answer.
    pub fn cancel(&self, params: Option<&RawValue>) -> bool {
        let Some(Ok(cancelled)) = params.map(|p| serde_json::from_str::<Cancelled<'_>>(p.get()))
        else {
            return false;
        };
        let Some(task) = lock(&self.calls).remove(cancelled.request_id.get()) else {
            return false;
        };
        task.abort();
        true
    }

    /// Removes the running call's own entry for client id `id`: not one a
    /// later call with the same id made after this one was cancelled.
    fn unregister(&self, id: &str) {
        let mut calls = lock(&self.calls);
        if calls
            .get(id)
            .is_some_and(|task| task.id() == tokio::task::id())
        {
            calls.remove(id);
        }
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

    /// The capabilities a `2026-07-28` client declared in a call's `meta`,
    /// if the call is plain and the stdio client is known and stateless.
    fn stateless(&self, meta: &RawValue) -> Option<ClientCapabilities> {
        let meta = serde_json::from_str::<StatelessMeta<'_>>(meta.get()).ok()?;
        if meta.version != ProtocolVersion::V_2026_07_28.as_str() {
            return None;
        }
        let shared = &self.mux.shared;
        let stateless = !shared.many_sessions.load(Ordering::Relaxed)
            && read(&shared.clients).first().is_some_and(|peer| {
                !peer
                    .peer_info()
                    .is_some_and(|info| info.protocol_version.has_initialize())
            });
        stateless.then_some(meta.capabilities)
    }

    fn client_capabilities(&self) -> ClientCapabilities {
        read(&self.mux.shared.clients)
            .first()
            .and_then(rmcp::Peer::peer_info)
            .map(|info| info.capabilities.clone())
            .unwrap_or_default()
    }

    /// The line that answers a handshake-era client (none if it cannot be
    /// written), and whether the call succeeded. `id` is the client's id,
    /// as JSON.
    fn answer(
        &self,
        index: usize,
        what: &dyn Fn() -> String,
        id: &str,
        answer: Result<Answer, ErrorData>,
    ) -> (Option<Vec<u8>>, bool) {
        let capacity = match &answer {
            Ok(Answer::Result(result)) => result.get().len(),
            _ => 0,
        };
        reply(id, capacity, what, |line| match answer {
            Ok(Answer::Result(result)) => {
                let mark = line.len();
                // Most results pass as they came, less `resultType`.
                if let Some(is_error) = plain_result(result.get(), line) {
                    return Ok(is_error);
                }
                line.truncate(mark);
                let (result, is_error) = self.legacy_result(index, &what(), &result)?;
                line.extend_from_slice(result.as_bytes());
                Ok(is_error)
            }
            Ok(Answer::Error(error)) | Err(error) => Err(error),
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
        // As rmcp's server does for a `2026-07-28` peer.
        let outcome = outcome.map_err(|mut error| {
            if error.code == ErrorCode::RESOURCE_NOT_FOUND {
                error.code = ErrorCode::INVALID_PARAMS;
            }
            error
        });
        reply(id, 256, what, |line| {
            let result = match outcome? {
                ServerResult::CustomResult(CustomResult(mut value)) => {
                    if let Some(is_error) = plain_value(&mut value) {
                        serde_json::to_writer(&mut *line, &value).map_err(|e| internal(&e))?;
                        return Ok(is_error);
                    }
                    serde_json::from_value(value).map_err(|e| malformed(self, index, what, &e))?
                }
                other => other,
            };
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
        })
    }

    /// A backend's tool result that is not plain (see [`plain_result`]) as
    /// rmcp would give it to a handshake-era client, through rmcp's types
    /// as on rmcp's path; and whether it reports an error.
    fn legacy_result(
        &self,
        index: usize,
        what: &str,
        result: &RawValue,
    ) -> Result<(String, bool), ErrorData> {
        let parsed: ServerResult = serde_json::from_str(result.get())
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

/// A `2026-07-28` client's view of a backend's plain tool result (see
/// [`plain_result`]): as it came, with `resultType: "complete"` added if
/// it was absent, as rmcp's path does; and whether it reports an error.
/// `None` when it is not plain.
fn plain_value(value: &mut serde_json::Value) -> Option<bool> {
    use serde_json::Value;
    let fields = value.as_object_mut()?;
    let plain = fields
        .get("resultType")
        .is_none_or(|t| t.as_str() == Some("complete"))
        && fields.get("content").is_some_and(Value::is_array)
        && fields.get("structuredContent").is_none_or(Value::is_object);
    if !plain {
        return None;
    }
    fields
        .entry("resultType")
        .or_insert_with(|| Value::from("complete"));
    Some(fields.get("isError").and_then(Value::as_bool) == Some(true))
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

/// Writes a backend's tool result to `out` as rmcp gives a plain one to a
/// handshake-era client: its members as they came, less `resultType`; and
/// says whether it reports an error. `None`, with `out` to be truncated,
/// when it is not plain: a `resultType` other than `complete`, no content
/// array, structured content other than an object, or a key with escapes.
fn plain_result(result: &str, out: &mut Vec<u8>) -> Option<bool> {
    use serde::de::{Deserializer as _, Error as _, MapAccess, Visitor};

    struct Plain<'o>(&'o mut Vec<u8>);

    impl<'de> Visitor<'de> for Plain<'_> {
        type Value = bool;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a tool result object")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
            let out = self.0;
            let (mut content, mut is_error) = (false, false);
            out.push(b'{');
            let empty = out.len();
            while let Some(key) = map.next_key::<&'de str>()? {
                let value = map.next_value::<&'de RawValue>()?;
                let text = value.get().trim_start();
                match key {
                    "resultType" if text == "\"complete\"" => continue,
                    "resultType" => return Err(A::Error::custom("not complete")),
                    "content" => content = text.starts_with('['),
                    "structuredContent" if !text.starts_with('{') => {
                        return Err(A::Error::custom("structured content not an object"));
                    }
                    "isError" => is_error = text == "true",
                    _ => {}
                }
                if out.len() > empty {
                    out.push(b',');
                }
                out.push(b'"');
                out.extend_from_slice(key.as_bytes());
                out.extend_from_slice(b"\":");
                out.extend_from_slice(value.get().as_bytes());
            }
            out.push(b'}');
            if content {
                Ok(is_error)
            } else {
                Err(A::Error::custom("no content"))
            }
        }
    }

    let mut de = serde_json::Deserializer::from_str(result);
    let is_error = de.deserialize_map(Plain(out)).ok()?;
    de.end().ok()?;
    Some(is_error)
}

/// Records an express call in the metrics when it ends, however it ends:
/// made before its task is spawned, so a call aborted before its task
/// first runs is recorded too.
struct Record {
    mux: Mux,
    index: usize,
    tool: Arc<str>,
    began: Instant,
    ok: bool,
}

impl Drop for Record {
    fn drop(&mut self) {
        let shared = &self.mux.shared;
        shared.metrics.call(
            shared.slots[self.index].name.as_str(),
            &self.tool,
            self.ok,
            self.began.elapsed(),
        );
    }
}

fn internal(err: &serde_json::Error) -> ErrorData {
    ErrorData::internal_error(format!("cannot encode a result: {err}"), None)
}

#[cfg(test)]
mod tests {
    use super::plain_result;

    fn plain(result: &str) -> Option<(String, bool)> {
        let mut out = Vec::new();
        let is_error = plain_result(result, &mut out)?;
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
    fn any_other_result_takes_rmcps_types() {
        for result in [
            r#"{"resultType":"input_required","inputRequests":{}}"#,
            r#"{"resultType":"task","task":{}}"#,
            r#"{"content":[],"structuredContent":[1,2]}"#,
            r#"{"structuredContent":{}}"#,
            r#"{"content":[],"res\u0075ltType":"complete"}"#,
            r#"{"content":[]} trailing"#,
            r#"[]"#,
        ] {
            assert_eq!(plain(result), None, "{result}");
        }
    }
}
