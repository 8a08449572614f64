//! OpenTelemetry traces of the requests the mux decides: a `SERVER` span
//! for each client request, and a `CLIENT` span, its child, for each
//! request forwarded to a backend, named and attributed after the
//! OpenTelemetry semantic conventions for MCP.
//!
//! The trace context a client sends in the request's `params._meta`
//! (`traceparent`, `tracestate`: SEP-414), or else in the HTTP request's
//! headers, is continued; the backend is sent the context of its own span
//! the same way, in the forwarded request's `_meta`. A gateway that does
//! not trace passes the client's context on unchanged.
//!
//! Spans are `tracing` spans at [`TARGET`], which only the binary's
//! OpenTelemetry layer takes, and only when tracing is configured: with
//! tracing off every span here is disabled at its call site, and nothing
//! else in this module runs. Spans carry names, ids and outcomes, never a
//! request's arguments, a result or an error's message, so they hold
//! nothing a secret could be in beyond what the client itself named.

use opentelemetry::propagation::{Extractor, TextMapPropagator as _};
use opentelemetry::trace::TraceContextExt as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use rmcp::model::{ClientRequest, RequestMetaObject};
use rmcp::service::{RequestContext, RoleServer};
use tracing::Span;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::audit::{Decision, Outcome};

/// The `tracing` target of every span exported to OpenTelemetry. The
/// binary's log output leaves it out; its OpenTelemetry layer takes only
/// it.
pub const TARGET: &str = "mcpgw::otel";

/// Whether spans are exported: whether the binary's OpenTelemetry layer
/// takes spans at [`TARGET`].
pub(crate) fn on() -> bool {
    tracing::span_enabled!(target: TARGET, tracing::Level::INFO)
}

/// The propagation format: W3C Trace Context, the one SEP-414 names.
fn propagator() -> TraceContextPropagator {
    TraceContextPropagator::new()
}

/// What the client asked, as the span names it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Request<'a> {
    /// The MCP method (`tools/call`, …).
    pub(crate) method: &'a str,
    /// The tool's or prompt's exposed name, or the resource's URI.
    pub(crate) target: Option<&'a str>,
}

/// The span of a client request; disabled when tracing is off.
pub(crate) fn request(asked: Request<'_>, context: &RequestContext<RoleServer>) -> Span {
    if !on() {
        return Span::none();
    }
    let d = described(asked);
    let parts = context.extensions.get::<http::request::Parts>();
    let session = parts
        .and_then(|p| p.headers.get("mcp-session-id"))
        .and_then(|v| v.to_str().ok());
    // Every attribute given as the span opens: each one recorded later
    // would be another trip through the subscriber.
    let span = tracing::info_span!(
        target: TARGET,
        "mcp.server",
        otel.name = d.name,
        otel.kind = "server",
        otel.status_code = Empty,
        mcp.method.name = asked.method,
        mcp.protocol.version = context.protocol_version().map(|v| v.to_string()),
        mcp.session.id = session,
        mcp.resource.uri = d.uri,
        mcp.server.name = Empty,
        jsonrpc.request.id = %context.id,
        gen_ai.operation.name = d.operation,
        gen_ai.tool.name = d.tool,
        gen_ai.prompt.name = d.prompt,
        network.transport = if parts.is_some() { "tcp" } else { "pipe" },
        error.type = Empty,
    );
    // The client's own context: in `_meta` first, as SEP-414 asks; the
    // HTTP request's headers otherwise.
    let parent = if context.meta.get("traceparent").is_some() {
        propagator().extract(&MetaCarrier(&context.meta))
    } else if let Some(parts) = parts {
        propagator().extract(&HeaderCarrier(&parts.headers))
    } else {
        opentelemetry::Context::new()
    };
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
    span
}

/// The span of a request forwarded to server `server`, a child of the
/// client request's span; disabled when tracing is off.
pub(crate) fn backend(server: &str, request: &ClientRequest) -> Span {
    if !on() {
        return Span::none();
    }
    let (method, target) = match request {
        ClientRequest::CallToolRequest(r) => ("tools/call", Some(r.params.name.as_ref())),
        ClientRequest::GetPromptRequest(r) => ("prompts/get", Some(r.params.name.as_str())),
        ClientRequest::ReadResourceRequest(r) => ("resources/read", Some(r.params.uri.as_str())),
        ClientRequest::CompleteRequest(_) => ("completion/complete", None),
        _ => (request.method(), None),
    };
    let d = described(Request { method, target });
    tracing::info_span!(
        target: TARGET,
        "mcp.client",
        otel.name = d.name,
        otel.kind = "client",
        otel.status_code = Empty,
        mcp.method.name = method,
        mcp.resource.uri = d.uri,
        mcp.server.name = server,
        gen_ai.operation.name = d.operation,
        gen_ai.tool.name = d.tool,
        gen_ai.prompt.name = d.prompt,
        network.transport = "pipe",
        error.type = Empty,
    )
}

/// A span's name and what it is for, as the conventions ask: named
/// `{mcp.method.name} {target}` for a tool or a prompt, the method alone
/// otherwise (a URI is of high cardinality: an attribute, not the name).
#[derive(Debug)]
struct Described<'a> {
    name: String,
    operation: Option<&'static str>,
    tool: Option<&'a str>,
    prompt: Option<&'a str>,
    uri: Option<&'a str>,
}

fn described(asked: Request<'_>) -> Described<'_> {
    let mut d = Described {
        name: asked.method.to_string(),
        operation: None,
        tool: None,
        prompt: None,
        uri: None,
    };
    match (asked.method, asked.target) {
        ("tools/call", Some(tool)) => {
            d.name = format!("{} {tool}", asked.method);
            d.operation = Some("execute_tool");
            d.tool = Some(tool);
        }
        ("prompts/get", Some(prompt)) => {
            d.name = format!("{} {prompt}", asked.method);
            d.prompt = Some(prompt);
        }
        ("resources/read", Some(uri)) => d.uri = Some(uri),
        _ => {}
    }
    d
}

/// The `_meta` a request forwarded within `span` carries to its backend:
/// the span's trace context; with tracing off, the client's own, as it
/// sent it, so that a gateway that does not trace leaves the client's trace
/// unbroken. Nothing else of the client's `_meta` is forwarded.
pub(crate) fn carried(
    span: &Span,
    context: &RequestContext<RoleServer>,
) -> Option<RequestMetaObject> {
    let mut meta = RequestMetaObject::new();
    if span.is_disabled() {
        for key in ["traceparent", "tracestate"] {
            if let Some(value) = context.meta.get(key).filter(|v| v.is_string()) {
                meta.insert(key.to_string(), value.clone());
            }
        }
    } else {
        let mut injected = std::collections::HashMap::new();
        propagator().inject_context(&span.context(), &mut injected);
        for (key, value) in injected {
            meta.insert(key, value.into());
        }
    }
    (!meta.is_empty()).then_some(meta)
}

/// Ends the client request's `span` with its decision and outcome, and
/// the server it went to.
pub(crate) fn end(span: &Span, server: Option<&str>, decision: Decision, outcome: Option<Outcome>) {
    if span.is_disabled() {
        return;
    }
    if let Some(server) = server {
        span.record("mcp.server.name", server);
    }
    let error = match (decision, outcome) {
        (Decision::Allowed, Some(Outcome::Ok)) => None,
        (Decision::Allowed, Some(Outcome::Error)) => Some("tool_error"),
        (Decision::Allowed, Some(outcome)) => Some(outcome.as_str()),
        (Decision::Allowed, None) => None,
        (refused, _) => Some(refused.as_str()),
    };
    fail(span, error);
}

/// Ends a backend request's `span`: `error` is its outcome when it failed.
pub(crate) fn end_backend(span: &Span, error: Option<Outcome>) {
    if !span.is_disabled() {
        fail(span, error.map(Outcome::as_str));
    }
}

fn fail(span: &Span, error: Option<&str>) {
    if let Some(error) = error {
        span.record("error.type", error);
        span.record("otel.status_code", "ERROR");
    }
}

/// The trace id of `span`, for the audit record; `None` when tracing is
/// off.
pub(crate) fn trace_id(span: &Span) -> Option<String> {
    if span.is_disabled() {
        return None;
    }
    let context = span.context();
    let id = context.span().span_context().trace_id();
    (id != opentelemetry::trace::TraceId::INVALID).then(|| id.to_string())
}

/// A request's `_meta`, read as a propagation carrier.
struct MetaCarrier<'a>(&'a RequestMetaObject);

impl Extractor for MetaCarrier<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(serde_json::Value::as_str)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

/// An HTTP request's headers, read as a propagation carrier.
struct HeaderCarrier<'a>(&'a http::HeaderMap);

impl Extractor for HeaderCarrier<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}
