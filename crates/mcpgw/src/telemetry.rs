//! The gateway's logs and traces, one `tracing` subscriber for both: the
//! log to stderr (through the redactor), and, when tracing is configured,
//! `tracing-opentelemetry`'s layer, which exports the spans the mux and
//! the supervisor open at [`mcpgw_mux::trace::TARGET`] over OTLP.
//!
//! Each layer sees only its own: the log never shows those spans, and the
//! OpenTelemetry layer sees no log event, so no log line (and no value it
//! might carry) reaches the collector. With tracing off that layer is not
//! installed and the spans are disabled where they are opened.
//!
//! Configuration is the catalog's `gateway.tracing`, and for what it
//! leaves out the standard `OTEL_*` environment variables
//! (`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_PROTOCOL`,
//! `OTEL_SERVICE_NAME`, `OTEL_TRACES_SAMPLER`, `OTEL_BSP_*`, …).

use anyhow::{Context as _, anyhow, bail};
use mcpgw_catalog::{OtlpProtocol, TracingSpec};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing_subscriber::filter::{EnvFilter, FilterExt as _, filter_fn};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{Layer as _, Registry};

use crate::redaction::RedactingStderr;

/// The installed subscriber's exporter, flushed by [`Telemetry::shutdown`].
#[derive(Debug)]
pub(crate) struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

/// Installs the process's subscriber: the log, and the exporter of traces
/// when `tracing` (the catalog's, for `mcpgw run`) or the environment asks
/// for one.
///
/// # Errors
///
/// An exporter that cannot be built (a bad endpoint or protocol).
pub(crate) fn init(tracing: Option<&TracingSpec>) -> anyhow::Result<Telemetry> {
    let filter =
        EnvFilter::try_from_env("MCPGW_LOG").unwrap_or_else(|_| EnvFilter::new("info,rmcp=warn"));
    let log = tracing_subscriber::fmt::layer()
        .with_writer(|| RedactingStderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .with_filter(filter.and(filter_fn(|m| m.target() != mcpgw_mux::trace::TARGET)));
    let provider = match tracing {
        Some(spec) if wanted(spec) => Some(provider(spec)?),
        _ => None,
    };
    let registry = Registry::default().with(log);
    // Not an `Option` layer: an absent one would enable every span.
    match &provider {
        Some(provider) => registry
            .with(
                tracing_opentelemetry::layer()
                    .with_tracer(provider.tracer("mcpgw"))
                    // What costs time on every poll or span and tells
                    // nothing here: busy/idle clocks, the target (always
                    // ours), source locations, threads, and making each
                    // span the current OpenTelemetry context on entry
                    // (nothing else here reads it; `trace.rs` asks spans
                    // for their context directly).
                    .with_tracked_inactivity(false)
                    .with_target(false)
                    .with_location(false)
                    .with_threads(false)
                    .with_context_activation(false)
                    .with_filter(filter_fn(|m| m.target() == mcpgw_mux::trace::TARGET)),
            )
            .init(),
        None => registry.init(),
    }
    Ok(Telemetry { provider })
}

impl Telemetry {
    /// Whether spans are exported.
    pub(crate) fn tracing(&self) -> bool {
        self.provider.is_some()
    }

    /// Exports what is still buffered and stops the exporter. Run off the
    /// async threads: the gRPC exporter needs the runtime to make progress
    /// while this waits.
    pub(crate) async fn shutdown(self) {
        let Some(provider) = self.provider else {
            return;
        };
        let flushed = tokio::task::spawn_blocking(move || provider.shutdown()).await;
        if let Ok(Err(err)) = flushed {
            tracing::warn!("could not export the last spans: {err}");
        }
    }
}

/// Whether traces are exported: the catalog's `tracing` map says so, or
/// (the catalog being silent) the environment names an endpoint, and
/// neither `tracing: off` nor the standard switches turn it off.
fn wanted(spec: &TracingSpec) -> bool {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let disabled = env("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"))
        || env("OTEL_TRACES_EXPORTER").is_some_and(|v| v.eq_ignore_ascii_case("none"));
    let named = env("OTEL_EXPORTER_OTLP_ENDPOINT").is_some()
        || env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_some();
    !disabled && spec.enabled.unwrap_or(named)
}

fn provider(spec: &TracingSpec) -> anyhow::Result<SdkTracerProvider> {
    let exporter = match protocol(spec)? {
        OtlpProtocol::HttpProtobuf => {
            let mut builder = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary);
            if let Some(base) = &spec.endpoint {
                builder =
                    builder.with_endpoint(format!("{}/v1/traces", base.trim_end_matches('/')));
            }
            builder.build()
        }
        OtlpProtocol::Grpc => {
            let mut builder = opentelemetry_otlp::SpanExporter::builder().with_tonic();
            if let Some(endpoint) = &spec.endpoint {
                builder = builder.with_endpoint(endpoint);
            }
            builder.build()
        }
    }
    .context("cannot set up the OTLP exporter for `gateway.tracing`")?;
    let service = spec
        .service_name
        .clone()
        .or_else(|| std::env::var("OTEL_SERVICE_NAME").ok())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "mcpgw".to_string());
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(service)
        .with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION"),
        ))
        .build();
    let mut builder = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource);
    if let Some(ratio) = spec.sample_ratio {
        builder = builder.with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            ratio,
        ))));
    }
    Ok(builder.build())
}

/// The catalog's protocol, else the environment's, else OTLP/HTTP.
fn protocol(spec: &TracingSpec) -> anyhow::Result<OtlpProtocol> {
    if let Some(protocol) = spec.protocol {
        return Ok(protocol);
    }
    let named = std::env::var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        .or_else(|_| std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL"))
        .unwrap_or_default();
    match named.as_str() {
        "" | "http/protobuf" => Ok(OtlpProtocol::HttpProtobuf),
        "grpc" => Ok(OtlpProtocol::Grpc),
        "http/json" => bail!(
            "OTEL_EXPORTER_OTLP_PROTOCOL=http/json is not supported; fix: use `http/protobuf` or `grpc`"
        ),
        other => Err(anyhow!(
            "OTEL_EXPORTER_OTLP_PROTOCOL=`{other}` is not known; fix: use `http/protobuf` or `grpc`"
        )),
    }
}
