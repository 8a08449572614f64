//! The audit trail: one JSON record for every client request that reaches
//! a decision (a call, a prompt, a resource read, a completion, a list),
//! and for each server start and exit.
//!
//! One hook, in the mux's handlers, so both fronts record through this
//! module and nothing else: each handler that decides runs its work
//! through [`Mux::audited`], which begins a record and ends it with the
//! answer.
//! What only the handling learns (which server and upstream name a request
//! was routed to, why it was refused, how forwarding ended) the handlers
//! note on the request's context ([`refuse`], [`route`], [`outcome`]); the
//! record is written once the answer is known. With no sink installed the
//! handlers only check for one.
//!
//! A record never carries a secret value: its line passes the run's
//! redactor before it reaches the sink. Arguments appear only as the
//! SHA-256 of their canonical JSON, unless the catalog asks for them
//! (`arguments: redacted`), and then after redaction.

use std::sync::Arc;

use rmcp::ErrorData;
use rmcp::model::ServerResult;
use rmcp::service::{RequestContext, RoleServer};
use serde::Serialize;
use serde_json::Value;
use tokio::time::Instant;

use tracing::Instrument as _;

use crate::{ClientProfile, Mux, trace};

/// The record format's version, the `v` of every record.
pub const AUDIT_VERSION: u32 = 1;

/// Where records go: the binary's file or stderr. Called in order, once
/// per record, with one line of JSON (no line break).
pub trait AuditSink: Send + Sync + std::fmt::Debug + 'static {
    /// Writes one record.
    fn write(&self, line: &str);
}

/// What the trail holds beyond the digest of each call's arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arguments {
    /// Only `arguments_sha256`.
    None,
    /// The arguments too, after secret redaction.
    Redacted,
}

/// The audit trail a gateway writes.
#[derive(Debug, Clone)]
pub struct Audit {
    /// Where records go.
    pub sink: Arc<dyn AuditSink>,
    /// Whether arguments are recorded.
    pub arguments: Arguments,
}

/// Why a request was answered as it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Forwarded (or answered from the merged lists).
    Allowed,
    /// The catalog's allowlist hides the tool.
    HiddenByAllowlist,
    /// The client's profile does not include it.
    OutsideProfile,
    /// No such tool, prompt or resource.
    Unknown,
    /// The server's in-flight and queue bounds were full.
    Busy,
    /// A rate limit was reached.
    RateLimited,
    /// The tool-poisoning scan withholds it.
    BlockedByScan,
    /// It does not match the lockfile.
    PinMismatch,
    /// It carried a secret of another server.
    ForeignSecret,
    /// Its server is down.
    Unavailable,
    /// The request itself was not valid.
    Invalid,
}

/// How a request that was allowed ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Answered.
    Ok,
    /// Answered with an error (a tool result flagged `isError`, or an
    /// error the server sent).
    Error,
    /// The server did not answer within the call's deadline.
    Timeout,
    /// The client cancelled it.
    Cancelled,
    /// The server died during it.
    ServerFailed,
}

impl Serialize for Outcome {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl Outcome {
    /// The word records and spans use.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Error => "error",
            Self::Timeout => "timeout",
            Self::Cancelled => "cancelled",
            Self::ServerFailed => "server_failed",
        }
    }
}

/// What the handling learnt about one request, noted on its context.
#[derive(Debug, Default)]
struct Facts {
    server: Option<usize>,
    upstream: Option<String>,
    decision: Option<Decision>,
    outcome: Option<Outcome>,
}

#[derive(Debug, Clone, Default)]
struct Noted(Arc<parking_lot::Mutex<Facts>>);

fn noted(context: &RequestContext<RoleServer>, f: impl FnOnce(&mut Facts)) {
    if let Some(noted) = context.extensions.get::<Noted>() {
        f(&mut noted.0.lock());
    }
}

/// The request was routed to `upstream` on server `server`.
pub(crate) fn route(context: &RequestContext<RoleServer>, server: usize, upstream: &str) {
    noted(context, |f| {
        f.server = Some(server);
        f.upstream = Some(upstream.to_string());
    });
}

/// The request is being forwarded to server `server`.
pub(crate) fn server(context: &RequestContext<RoleServer>, server: usize) {
    noted(context, |f| {
        f.server.get_or_insert(server);
    });
}

impl Mux {
    /// The request was refused, for `decision`: counted, and noted for its
    /// record (the first reason noted wins).
    pub(crate) fn refuse(&self, context: &RequestContext<RoleServer>, decision: Decision) {
        self.shared.metrics.refused(decision.as_str());
        noted(context, |f| {
            f.decision.get_or_insert(decision);
        });
    }
}

impl Serialize for Decision {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl Decision {
    /// The word records and metrics use.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allowed => "allowed",
            Self::HiddenByAllowlist => "hidden_by_allowlist",
            Self::OutsideProfile => "outside_profile",
            Self::Unknown => "unknown",
            Self::Busy => "busy",
            Self::RateLimited => "rate_limited",
            Self::BlockedByScan => "blocked_by_scan",
            Self::PinMismatch => "pin_mismatch",
            Self::ForeignSecret => "foreign_secret",
            Self::Unavailable => "unavailable",
            Self::Invalid => "invalid",
        }
    }
}

/// The forwarded request ended so.
pub(crate) fn outcome(context: &RequestContext<RoleServer>, outcome: Outcome) {
    noted(context, |f| {
        f.outcome.get_or_insert(outcome);
    });
}

/// What a request asks, for its record and its span.
#[derive(Debug)]
pub(crate) struct Asked {
    event: &'static str,
    method: &'static str,
    exposed: Option<String>,
    /// What only the record needs, when a trail is kept.
    recorded: Option<Recorded>,
}

#[derive(Debug)]
struct Recorded {
    request_bytes: usize,
    arguments: Option<Value>,
}

/// A request being handled, its record still to be written.
#[derive(Debug)]
struct Pending {
    began: Instant,
    time: String,
    client: String,
    profile: Option<String>,
    session: String,
    request_id: Option<Value>,
    protocol_version: Option<String>,
}

/// An answer, as the trail measures it.
pub(crate) trait Answer {
    /// Its JSON, as the client receives it.
    fn body(&self) -> String;

    /// Whether it is a tool result flagged `isError`.
    fn flagged(&self) -> bool {
        false
    }
}

macro_rules! answer {
    (json: $($ty:ty),*) => {$(
        impl Answer for $ty {
            fn body(&self) -> String {
                serde_json::to_string(self).unwrap_or_default()
            }
        }
    )*};
    // A result or the input it requires: the inner one serialized as it
    // is, not cloned into a `ServerResult` first.
    (either: $($ty:ty),*) => {$(
        impl Answer for $ty {
            fn body(&self) -> String {
                match self {
                    Self::Complete(r) => serde_json::to_string(r),
                    Self::InputRequired(r) => serde_json::to_string(r),
                    other => serde_json::to_string(&ServerResult::from(other.clone())),
                }
                .unwrap_or_default()
            }
        }
    )*};
}

answer!(json: rmcp::model::CompleteResult, rmcp::model::ListToolsResult, rmcp::model::ListPromptsResult, rmcp::model::ListResourcesResult, rmcp::model::ListResourceTemplatesResult);
answer!(either: rmcp::model::GetPromptResponse, rmcp::model::ReadResourceResponse);

impl Answer for rmcp::model::CallToolResponse {
    fn body(&self) -> String {
        match self {
            Self::Complete(r) => serde_json::to_string(r),
            Self::InputRequired(r) => serde_json::to_string(r),
            other => serde_json::to_string(&ServerResult::from(other.clone())),
        }
        .unwrap_or_default()
    }

    fn flagged(&self) -> bool {
        matches!(self, Self::Complete(r) if r.is_error == Some(true))
    }
}

/// How a request was answered: the decision, and how an allowed one ended.
fn verdict<T: Answer>(facts: &Facts, answer: &Result<T, ErrorData>) -> (Decision, Option<Outcome>) {
    match answer {
        Ok(result) => (
            facts.decision.unwrap_or(Decision::Allowed),
            Some(facts.outcome.unwrap_or(if result.flagged() {
                Outcome::Error
            } else {
                Outcome::Ok
            })),
        ),
        Err(_) => {
            let decision = facts.decision.unwrap_or(if facts.server.is_some() {
                Decision::Allowed
            } else {
                Decision::Invalid
            });
            let outcome =
                (decision == Decision::Allowed).then(|| facts.outcome.unwrap_or(Outcome::Error));
            (decision, outcome)
        }
    }
}

impl Mux {
    /// What a request for `event` (`call`, `get_prompt`, …) by `method`,
    /// naming `exposed`, with these `params` (and `arguments`, for a call)
    /// asks; `None` when neither an audit trail nor a trace is kept, so
    /// that nothing is worth writing down.
    pub(crate) fn asked(
        &self,
        event: &'static str,
        method: &'static str,
        exposed: Option<&str>,
        params: &impl Serialize,
        arguments: Option<&rmcp::model::JsonObject>,
    ) -> Option<Asked> {
        let auditing = self.shared.audit.get().is_some();
        if !auditing && !trace::on() {
            return None;
        }
        Some(Asked {
            event,
            method,
            exposed: exposed.map(str::to_string),
            recorded: auditing.then(|| Recorded {
                request_bytes: serde_json::to_vec(params).map_or(0, |v| v.len()),
                arguments: arguments.map(|a| Value::Object(a.clone())),
            }),
        })
    }

    /// Runs `handle` on a request, in its span and recorded, when `asked`
    /// says what it asks ([`Mux::asked`]).
    pub(crate) async fn audited<T: Answer, F>(
        &self,
        asked: Option<Asked>,
        mut context: RequestContext<RoleServer>,
        handle: impl FnOnce(RequestContext<RoleServer>) -> F,
    ) -> Result<T, ErrorData>
    where
        F: std::future::Future<Output = Result<T, ErrorData>>,
    {
        let Some(asked) = asked else {
            return handle(context).await;
        };
        let noted = Noted::default();
        context.extensions.insert(noted.clone());
        let span = trace::request(
            trace::Request {
                method: asked.method,
                target: asked.exposed.as_deref(),
            },
            &context,
        );
        let pending = asked.recorded.is_some().then(|| pending(&context));
        let answer = handle(context).instrument(span.clone()).await;
        let facts = std::mem::take(&mut *noted.0.lock());
        let (decision, outcome) = verdict(&facts, &answer);
        let server = facts.server.map(|i| self.shared.slots[i].name.as_str());
        trace::end(&span, server, decision, outcome);
        if let Some(pending) = pending {
            self.audit_end(asked, pending, facts, (decision, outcome), &answer, &span);
        }
        answer
    }

    /// Writes the record of `pending`, answered with `answer`.
    fn audit_end<T: Answer>(
        &self,
        asked: Asked,
        pending: Pending,
        facts: Facts,
        (decision, outcome): (Decision, Option<Outcome>),
        answer: &Result<T, ErrorData>,
        span: &tracing::Span,
    ) {
        let (Some(audit), Some(recorded)) = (self.shared.audit.get(), asked.recorded) else {
            return;
        };
        let redactor = self.shared.redactor();
        let redactor = redactor.as_ref();
        let redactions = |text: &str| redactor.map_or(0, |r| r.found(text).len());
        let (result_bytes, mut found, error) = match answer {
            Ok(result) => {
                let body = result.body();
                (Some(body.len()), redactions(&body), None)
            }
            Err(err) => (None, 0, Some(err.message.to_string())),
        };
        let call_arguments = recorded.arguments;
        let arguments_sha256 = call_arguments.as_ref().map(mcpgw_catalog::lock::digest);
        let arguments = match audit.arguments {
            Arguments::Redacted => call_arguments.map(|args| {
                let text = args.to_string();
                found += redactions(&text);
                redactor.map_or(args, |r| {
                    serde_json::from_str(&r.redact(&text)).unwrap_or(Value::Null)
                })
            }),
            Arguments::None => None,
        };
        let record = Record {
            v: AUDIT_VERSION,
            time: pending.time,
            event: asked.event,
            client: pending.client,
            profile: pending.profile.as_deref(),
            session: pending.session,
            request_id: pending.request_id,
            protocol_version: pending.protocol_version,
            method: asked.method,
            exposed: asked.exposed,
            server: facts.server.map(|i| self.shared.slots[i].name.as_str()),
            upstream: facts.upstream,
            decision,
            outcome,
            duration_ms: pending.began.elapsed().as_secs_f64() * 1000.0,
            request_bytes: recorded.request_bytes,
            result_bytes,
            redactions: found,
            arguments_sha256,
            arguments,
            error,
            trace_id: trace::trace_id(span),
        };
        write(audit, redactor, &record);
    }
}

/// Starts the record of a request.
fn pending(context: &RequestContext<RoleServer>) -> Pending {
    let (client, profile, session) = client(context);
    Pending {
        began: Instant::now(),
        time: now(),
        client,
        profile: profile.map(str::to_string),
        session,
        request_id: serde_json::to_value(&context.id).ok(),
        protocol_version: context.protocol_version().map(|v| v.to_string()),
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// One record, as written (`v: 1`; the README documents every field).
#[derive(Debug, Serialize)]
struct Record<'a> {
    v: u32,
    time: String,
    event: &'static str,
    client: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    profile: Option<&'a str>,
    session: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    protocol_version: Option<String>,
    method: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    exposed: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    server: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    upstream: Option<String>,
    decision: Decision,
    #[serde(skip_serializing_if = "Option::is_none")]
    outcome: Option<Outcome>,
    duration_ms: f64,
    request_bytes: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    result_bytes: Option<usize>,
    redactions: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    arguments_sha256: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    arguments: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    trace_id: Option<String>,
}

/// Who sent a request: the one client that the audit trail names, the rate
/// limits count and fair admission takes turns between.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Caller<'a> {
    /// Over HTTP: the token's name, if it presented one.
    pub(crate) http: Option<Option<&'a String>>,
    /// Its token's profile.
    pub(crate) profile: Option<&'a str>,
    /// Its HTTP session, if it has one.
    session: Option<&'a str>,
}

impl<'a> Caller<'a> {
    /// Its name: the token's, `http` without authentication, or `stdio`.
    pub(crate) fn name(&self) -> &'a str {
        match self.http {
            Some(Some(token)) => token,
            Some(None) => "http",
            None => "stdio",
        }
    }
}

/// The caller of `context`: the HTTP front's token (and its profile), else
/// the stdio client.
pub(crate) fn caller(context: &RequestContext<RoleServer>) -> Caller<'_> {
    let Some(parts) = context.extensions.get::<http::request::Parts>() else {
        return Caller {
            http: None,
            profile: None,
            session: None,
        };
    };
    Caller {
        http: Some(parts.extensions.get::<ClientToken>().map(|t| &t.0)),
        profile: parts
            .extensions
            .get::<ClientProfile>()
            .map(|p| p.0.as_str()),
        session: parts
            .headers
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok()),
    }
}

/// Who sent a request, its profile and its session, as a record names
/// them.
fn client(context: &RequestContext<RoleServer>) -> (String, Option<&str>, String) {
    let caller = caller(context);
    let session = match caller.http {
        Some(_) => caller.session.unwrap_or("none"),
        None => "stdio",
    };
    (
        caller.name().to_string(),
        caller.profile,
        session.to_string(),
    )
}

/// The name of the bearer token an HTTP request presented, which the HTTP
/// front puts in the request's extensions for the audit trail.
#[derive(Debug, Clone)]
pub struct ClientToken(pub String);

/// Writes `record` to `audit`'s sink, through the redactor.
fn write(audit: &Audit, redactor: Option<&mcpgw_secrets::Redactor>, record: &impl Serialize) {
    let Ok(line) = serde_json::to_string(record) else {
        return;
    };
    match redactor {
        Some(r) => audit.sink.write(&r.redact(&line)),
        None => audit.sink.write(&line),
    }
}

/// A server event's record: `server_start` or `server_exit`.
#[derive(Debug, Serialize)]
struct ServerEvent<'a> {
    v: u32,
    time: String,
    event: &'static str,
    server: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
}

/// An egress proxy's decision: an `egress` record.
#[derive(Debug, Serialize)]
struct EgressEvent<'a> {
    v: u32,
    time: String,
    event: &'static str,
    #[serde(flatten)]
    decision: &'a mcpgw_catalog::EgressDecision,
}

/// The configuration in force: a `config` record.
#[derive(Debug, Serialize)]
struct ConfigEvent<'a> {
    v: u32,
    time: String,
    event: &'static str,
    catalog: std::borrow::Cow<'a, str>,
    catalog_sha256: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    lockfile: Option<std::borrow::Cow<'a, str>>,
    servers: Vec<&'a str>,
    front: &'a str,
    /// What a reload changed (`+a ~b -c`); absent at start-up.
    #[serde(skip_serializing_if = "Option::is_none")]
    change: Option<&'a str>,
}

/// A catalog reload refused, the old configuration kept: a
/// `config_refused` record.
#[derive(Debug, Serialize)]
struct ConfigRefusedEvent<'a> {
    v: u32,
    time: String,
    event: &'static str,
    catalog: std::borrow::Cow<'a, str>,
    error: &'a str,
}

impl crate::Shared {
    /// Records a catalog reload of `path` refused for `error`.
    pub(crate) fn audit_config_refused(&self, path: &std::path::Path, error: &str) {
        let Some(audit) = self.audit.get() else {
            return;
        };
        let record = ConfigRefusedEvent {
            v: AUDIT_VERSION,
            time: now(),
            event: "config_refused",
            catalog: path.to_string_lossy(),
            error,
        };
        write(audit, self.redactor().as_ref(), &record);
    }

    /// Records the configuration in force: `catalog`, over `front`, and
    /// what a reload changed to put it in force.
    pub(crate) fn audit_config(
        &self,
        catalog: &mcpgw_catalog::Catalog,
        front: &str,
        change: Option<&str>,
    ) {
        let Some(audit) = self.audit.get() else {
            return;
        };
        let record = ConfigEvent {
            v: AUDIT_VERSION,
            time: now(),
            event: "config",
            catalog: catalog.path.to_string_lossy(),
            catalog_sha256: &catalog.sha256,
            lockfile: catalog
                .lock
                .as_deref()
                .map(std::path::Path::to_string_lossy),
            servers: catalog.servers.iter().map(|s| s.name.as_str()).collect(),
            front,
            change,
        };
        write(audit, self.redactor().as_ref(), &record);
    }

    /// Records an egress proxy's decision: an `egress` record.
    pub(crate) fn audit_egress(&self, decision: &mcpgw_catalog::EgressDecision) {
        let Some(audit) = self.audit.get() else {
            return;
        };
        let record = EgressEvent {
            v: AUDIT_VERSION,
            time: now(),
            event: "egress",
            decision,
        };
        write(audit, self.redactor().as_ref(), &record);
    }

    /// Records that server `index` started (`reason: None`) or exited.
    pub(crate) fn audit_server(&self, index: usize, reason: Option<&str>) {
        let Some(audit) = self.audit.get() else {
            return;
        };
        let record = ServerEvent {
            v: AUDIT_VERSION,
            time: now(),
            event: if reason.is_some() {
                "server_exit"
            } else {
                "server_start"
            },
            server: self.slots[index].name.as_str(),
            reason,
        };
        write(audit, self.redactor().as_ref(), &record);
    }
}
