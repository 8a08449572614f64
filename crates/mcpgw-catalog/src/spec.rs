//! The catalog's shape: what a user may write, and the validated specs the
//! rest of the gateway consumes.
//!
//! Raw structs (`Raw*`) mirror the YAML exactly, with `deny_unknown_fields`;
//! each validated type is built from its raw form inside the visitor of its
//! own mapping (see `crate::de`), so an error names the position it concerns.
//! Validated types are not `Deserialize` themselves in any other way.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use globset::{Glob, GlobSet, GlobSetBuilder};
use serde::Deserialize;
use serde::de::{self, MapAccess, Visitor};

use crate::de::{UniqueMap, collect_unique, deserialize_checked};
use crate::error::invalid;
use crate::limits::{ClientLimits, ServerLimits, ToolKey};
use crate::names::{EnvName, ProfileName, SecretName, Separator, ServerName};
use crate::units::{ByteSize, CatalogDuration, Cpus, FileSize, Scalar};
pub use crate::volume::Volume;

/// A loaded, validated catalog. Building one starts nothing.
#[derive(Debug, Clone)]
pub struct Catalog {
    /// The file it was read from.
    pub path: PathBuf,
    /// The SHA-256 of the file's text, in hex: which version of it is in
    /// force (the audit trail's `config` record names it).
    pub sha256: String,
    /// Gateway-wide settings.
    pub gateway: GatewaySpec,
    /// Servers in the order the file lists them.
    pub servers: Vec<ServerSpec>,
    /// Client views, by name: which exposed tools a client bound to the
    /// profile may see and call.
    pub profiles: BTreeMap<String, Profile>,
    /// The lockfile in force, when one was found beside the catalog.
    pub lock: Option<PathBuf>,
}

/// A client's view of the gateway: the exposed tool names (globs) it may
/// see and call. Clients without a profile see everything.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    /// The profile's name.
    pub name: String,
    tools: Patterns,
    /// Its clients' rate limits, replacing `gateway.limits` for them.
    pub limits: ClientLimits,
    /// How its clients see the tools, replacing `gateway.tool_mode`.
    pub tool_mode: Option<ToolMode>,
    /// The tools listed directly in `search` mode, replacing
    /// `gateway.pinned`.
    pinned: Option<Patterns>,
}

impl Profile {
    /// Whether the exposed tool `name` is in this view.
    pub fn permits(&self, name: &str) -> bool {
        self.tools.set.is_match(name)
    }

    /// Whether the exposed tool `name` is listed directly in `search`
    /// mode: `None` when the profile leaves that to `gateway.pinned`.
    pub fn pinned(&self, name: &str) -> Option<bool> {
        self.pinned.as_ref().map(|p| p.set.is_match(name))
    }

    /// The mode its clients see the tools in, `gateway`'s unless the
    /// profile says.
    pub fn mode(&self, gateway: &ToolView) -> ToolMode {
        self.tool_mode.unwrap_or(gateway.mode)
    }
}

/// How clients see the tools (`gateway.tool_mode`, a profile's
/// `tool_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ToolMode {
    /// The merged list of every tool (the default).
    #[default]
    All,
    /// The gateway's `find_tools` and `call_tool`, and the `pinned` tools.
    Search,
}

impl TryFrom<String> for ToolMode {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        match value.as_str() {
            "all" => Ok(Self::All),
            "search" => Ok(Self::Search),
            other => Err(invalid(
                format_args!("tool mode `{other}` is not known"),
                "use `all` (list every tool, the default) or `search` (list `find_tools` and `call_tool`)",
            )),
        }
    }
}
deserialize_checked!(ToolMode, str);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawProfile {
    tools: Patterns,
    #[serde(default)]
    limits: ClientLimits,
    tool_mode: Option<ToolMode>,
    pinned: Option<Patterns>,
}

impl Document {
    /// The profiles, named.
    pub(crate) fn profiles(&mut self) -> BTreeMap<String, Profile> {
        std::mem::take(&mut self.profiles.0)
            .into_iter()
            .map(|(name, raw)| {
                (
                    name.0.clone(),
                    Profile {
                        name: name.0,
                        tools: raw.tools,
                        limits: raw.limits,
                        tool_mode: raw.tool_mode,
                        pinned: raw.pinned,
                    },
                )
            })
            .collect()
    }
}

/// The top-level document.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Document {
    #[allow(dead_code)] // checked while parsing; only version 1 exists
    version: Version,
    #[serde(default)]
    pub(crate) gateway: GatewaySpec,
    #[serde(deserialize_with = "servers")]
    pub(crate) servers: Vec<ServerSpec>,
    #[serde(default)]
    profiles: UniqueMap<ProfileName, RawProfile>,
}

/// The catalog format version; only `1` exists.
#[derive(Debug)]
struct Version;

impl TryFrom<Scalar> for Version {
    type Error = String;
    fn try_from(value: Scalar) -> Result<Self, String> {
        match value {
            Scalar::Int(1) => Ok(Self),
            other => Err(invalid(
                format_args!("catalog version `{other}` is not supported"),
                "write `version: 1`",
            )),
        }
    }
}
deserialize_checked!(Version, scalar);

fn servers<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<ServerSpec>, D::Error> {
    struct ServersVisitor;
    impl<'de> Visitor<'de> for ServersVisitor {
        type Value = Vec<ServerSpec>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a mapping of server names to servers")
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            let entries = collect_unique::<_, ServerName, ServerBody>(map)?;
            if entries.is_empty() {
                return Err(de::Error::custom(invalid(
                    "`servers` is empty",
                    "add at least one server; see catalog/demo.yaml",
                )));
            }
            Ok(entries
                .into_iter()
                .map(|(name, ServerBody(body))| body.named(name))
                .collect())
        }
    }
    d.deserialize_map(ServersVisitor)
}

/// Gateway-wide settings.
#[derive(Debug, Clone)]
pub struct GatewaySpec {
    /// Joins server and upstream names: `<server><separator><tool>`.
    pub separator: Separator,
    /// How long a `tools/call` may take before the client gets an error.
    pub call_timeout: Duration,
    /// How long a backend may take to start and answer `initialize`.
    pub init_timeout: Duration,
    /// The hard limit on one call, however much progress it reports.
    pub max_call_timeout: Duration,
    /// When and how often a failed backend is restarted.
    pub restart: RestartSpec,
    /// How idle backends are checked.
    pub health: HealthSpec,
    /// What happens to a message to a client that carries a secret's value.
    pub redaction: Redaction,
    /// What the tool-poisoning scan does with what servers list.
    pub scan: ScanPolicy,
    /// What the scan does with tool results.
    pub scan_results: ScanPolicy,
    /// The audit trail.
    pub audit: AuditSpec,
    /// OpenTelemetry traces.
    pub tracing: TracingSpec,
    /// How the HTTP front authenticates clients beyond its token store.
    pub auth: crate::auth::AuthSpec,
    /// Every client's own rate limit (a profile's replaces it).
    pub limits: ClientLimits,
    /// The most bytes of tool results the result cache holds.
    pub cache_bytes: u64,
    /// How clients without a profile (and profiles that do not say) see
    /// the tools: `gateway.tool_mode` and `gateway.pinned`.
    pub tool_view: ToolView,
}

/// How a client sees the tools: the mode, and in `search` mode the tools
/// listed directly all the same.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ToolView {
    /// `all` or `search`.
    pub mode: ToolMode,
    /// The tools listed directly in `search` mode, by exposed name.
    pinned: Option<Patterns>,
}

impl ToolView {
    /// Whether the exposed tool `name` is listed directly in `search` mode.
    pub fn pinned(&self, name: &str) -> bool {
        self.pinned.as_ref().is_some_and(|p| p.set.is_match(name))
    }
}

/// What the gateway does with a message to a client that carries the value
/// of an injected secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Redaction {
    /// Replace each value with `[REDACTED:<secret-name>]` (the default).
    #[default]
    Redact,
    /// Fail the request instead; notifications that carry a value are dropped.
    Block,
}

impl TryFrom<String> for Redaction {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        match value.as_str() {
            "redact" => Ok(Self::Redact),
            "block" => Ok(Self::Block),
            other => Err(invalid(
                format_args!("redaction `{other}` is not known"),
                "use `redact` (the default) or `block`",
            )),
        }
    }
}
deserialize_checked!(Redaction, str);

/// The audit trail (`gateway.audit`): where its records go and what they
/// hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditSpec {
    /// Where the records go.
    pub to: AuditTo,
    /// Whether a call's arguments are recorded (after secret redaction)
    /// beside their digest.
    pub arguments: bool,
    /// The size at which the file is rotated.
    pub max_size: u64,
    /// How many rotated files are kept (`FILE.1` … `FILE.N`).
    pub keep: u32,
}

impl Default for AuditSpec {
    fn default() -> Self {
        Self {
            to: AuditTo::Default,
            arguments: false,
            max_size: 64 << 20,
            keep: 5,
        }
    }
}

/// Where audit records go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditTo {
    /// Nowhere over stdio; over HTTP, `$XDG_STATE_HOME/mcpgw/audit.jsonl`.
    Default,
    /// Nowhere.
    Off,
    /// The gateway's stderr.
    Stderr,
    /// This file (relative paths resolve against the catalog's directory).
    File(PathBuf),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAudit {
    path: Option<String>,
    arguments: Option<AuditArguments>,
    max_size: Option<FileSize>,
    keep: Option<Count>,
}

#[derive(Debug)]
struct AuditArguments(bool);

impl TryFrom<String> for AuditArguments {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        match value.as_str() {
            "none" => Ok(Self(false)),
            "redacted" => Ok(Self(true)),
            other => Err(invalid(
                format_args!("audit arguments `{other}` is not known"),
                "use `none` (the default: only their SHA-256) or `redacted`",
            )),
        }
    }
}
deserialize_checked!(AuditArguments, str);

impl<'de> Deserialize<'de> for AuditSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = RawAudit::deserialize(d)?;
        let defaults = Self::default();
        let to = match raw.path.as_deref() {
            None => AuditTo::Default,
            Some("off") => AuditTo::Off,
            Some("stderr") => AuditTo::Stderr,
            Some("") => {
                return Err(serde::de::Error::custom(invalid(
                    "audit `path` is empty",
                    "name a file, or write `stderr` or `off`",
                )));
            }
            Some(file) => AuditTo::File(PathBuf::from(file)),
        };
        Ok(Self {
            to,
            arguments: raw.arguments.is_some_and(|a| a.0),
            max_size: raw.max_size.map_or(defaults.max_size, |s| s.0),
            keep: raw.keep.map_or(defaults.keep, |k| k.0),
        })
    }
}

/// OpenTelemetry traces (`gateway.tracing`): where spans are exported.
/// Each setting left out falls back on the standard `OTEL_*` environment
/// variables.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TracingSpec {
    /// `Some(false)`: `tracing: off`, whatever the environment says;
    /// `Some(true)`: the catalog has a `tracing` map, so tracing is on;
    /// `None`: the catalog is silent, and tracing is on when the
    /// environment names an OTLP endpoint.
    pub enabled: Option<bool>,
    /// The OTLP collector's base URL (`/v1/traces` is added over HTTP).
    pub endpoint: Option<String>,
    /// `http/protobuf` or `grpc`.
    pub protocol: Option<OtlpProtocol>,
    /// The `service.name` spans are exported under.
    pub service_name: Option<String>,
    /// The share of new traces sampled, 0 to 1; a trace the client
    /// sampled (or not) is followed as it decided.
    pub sample_ratio: Option<f64>,
}

/// How spans travel to the collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpProtocol {
    /// OTLP/HTTP with protobuf bodies (port 4318), the standard default.
    HttpProtobuf,
    /// OTLP/gRPC (port 4317).
    Grpc,
}

impl TryFrom<String> for OtlpProtocol {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        match value.as_str() {
            "http/protobuf" => Ok(Self::HttpProtobuf),
            "grpc" => Ok(Self::Grpc),
            other => Err(invalid(
                format_args!("OTLP protocol `{other}` is not known"),
                "use `http/protobuf` (the default) or `grpc`",
            )),
        }
    }
}
deserialize_checked!(OtlpProtocol, str);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTracing {
    endpoint: Option<String>,
    protocol: Option<OtlpProtocol>,
    service_name: Option<String>,
    sample_ratio: Option<f64>,
}

/// `tracing: off`, or a map of settings: the map's own errors keep their
/// place in the file (an untagged enum would lose them).
struct TracingVisitor;

impl<'de> serde::de::Visitor<'de> for TracingVisitor {
    type Value = Option<RawTracing>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("`off` or a map with `endpoint`, `protocol`, `service_name`, `sample_ratio`")
    }

    fn visit_str<E: serde::de::Error>(self, word: &str) -> Result<Self::Value, E> {
        if word == "off" {
            return Ok(None);
        }
        Err(E::custom(invalid(
            format_args!("tracing `{word}` is not known"),
            "write `off`, or a map with `endpoint`, `protocol`, `service_name`, `sample_ratio`",
        )))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        RawTracing::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(Some)
    }
}

impl<'de> Deserialize<'de> for TracingSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let Some(raw) = d.deserialize_any(TracingVisitor)? else {
            return Ok(Self {
                enabled: Some(false),
                ..Self::default()
            });
        };
        if let Some(endpoint) = &raw.endpoint
            && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        {
            return Err(D::Error::custom(invalid(
                format_args!("tracing endpoint `{endpoint}` is not an http:// or https:// URL"),
                "name the collector's base URL, such as `http://localhost:4318` (or `http://localhost:4317` with `protocol: grpc`)",
            )));
        }
        if let Some(ratio) = raw.sample_ratio
            && !(0.0..=1.0).contains(&ratio)
        {
            return Err(D::Error::custom(invalid(
                format_args!("tracing sample_ratio {ratio} is not between 0 and 1"),
                "write a share such as `1` (every trace, the default) or `0.1`",
            )));
        }
        Ok(Self {
            enabled: Some(true),
            endpoint: raw.endpoint,
            protocol: raw.protocol,
            service_name: raw.service_name,
            sample_ratio: raw.sample_ratio,
        })
    }
}

/// Pings for idle backends (those whose protocol has `ping`): a backend that
/// misses `misses` in a row is restarted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthSpec {
    /// How long a backend may sit idle before it is pinged, and how often.
    pub interval: Duration,
    /// How long a ping may take.
    pub timeout: Duration,
    /// Missed pings in a row that mean the backend is stuck.
    pub misses: u32,
}

impl Default for HealthSpec {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(30),
            timeout: Duration::from_secs(10),
            misses: 3,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHealth {
    interval: Option<CatalogDuration>,
    timeout: Option<CatalogDuration>,
    misses: Option<Count>,
}

impl<'de> Deserialize<'de> for HealthSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = RawHealth::deserialize(d)?;
        let defaults = Self::default();
        Ok(Self {
            interval: raw.interval.map_or(defaults.interval, |d| d.0),
            timeout: raw.timeout.map_or(defaults.timeout, |d| d.0),
            misses: raw.misses.map_or(defaults.misses, |c| c.0),
        })
    }
}

/// How failed backends are restarted: exponential backoff with full jitter,
/// and a circuit breaker that stops a crash loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartSpec {
    /// The first backoff ceiling; it doubles with each quick failure.
    pub initial_backoff: Duration,
    /// The largest backoff ceiling.
    pub max_backoff: Duration,
    /// A backend up this long counts as healthy: its failure count resets.
    pub healthy_after: Duration,
    /// After this many failures in a row the circuit opens.
    pub circuit_after: u32,
    /// How long an open circuit refuses calls before one probe start.
    pub circuit_open: Duration,
}

impl Default for RestartSpec {
    fn default() -> Self {
        Self {
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            healthy_after: Duration::from_secs(60),
            circuit_after: 5,
            circuit_open: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRestart {
    initial_backoff: Option<CatalogDuration>,
    max_backoff: Option<CatalogDuration>,
    healthy_after: Option<CatalogDuration>,
    circuit_after: Option<Count>,
    circuit_open: Option<CatalogDuration>,
}

impl<'de> Deserialize<'de> for RestartSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = RawRestart::deserialize(d)?;
        let defaults = Self::default();
        Ok(Self {
            initial_backoff: raw
                .initial_backoff
                .map_or(defaults.initial_backoff, |d| d.0),
            max_backoff: raw.max_backoff.map_or(defaults.max_backoff, |d| d.0),
            healthy_after: raw.healthy_after.map_or(defaults.healthy_after, |d| d.0),
            circuit_after: raw.circuit_after.map_or(defaults.circuit_after, |c| c.0),
            circuit_open: raw.circuit_open.map_or(defaults.circuit_open, |d| d.0),
        })
    }
}

/// A whole number from 1 to 100,000.
#[derive(Debug, Clone, Copy)]
struct Count(u32);

impl TryFrom<Scalar> for Count {
    type Error = String;
    fn try_from(value: Scalar) -> Result<Self, String> {
        match value {
            Scalar::Int(n) if (1..=100_000).contains(&n) => Ok(Self(u32::try_from(n).unwrap_or(1))),
            other => Err(invalid(
                format_args!("`{other}` is not a count"),
                "write a whole number from 1 to 100000",
            )),
        }
    }
}
deserialize_checked!(Count, scalar);

impl Default for GatewaySpec {
    fn default() -> Self {
        Self {
            separator: Separator::default(),
            call_timeout: Duration::from_secs(60),
            init_timeout: Duration::from_secs(30),
            max_call_timeout: Duration::from_secs(600),
            restart: RestartSpec::default(),
            health: HealthSpec::default(),
            redaction: Redaction::default(),
            scan: ScanPolicy::Block,
            scan_results: ScanPolicy::Warn,
            audit: AuditSpec::default(),
            tracing: TracingSpec::default(),
            auth: crate::auth::AuthSpec::default(),
            limits: ClientLimits::default(),
            cache_bytes: 64 << 20,
            tool_view: ToolView::default(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGateway {
    separator: Option<Separator>,
    call_timeout: Option<CatalogDuration>,
    init_timeout: Option<CatalogDuration>,
    max_call_timeout: Option<CatalogDuration>,
    restart: Option<RestartSpec>,
    health: Option<HealthSpec>,
    redaction: Option<Redaction>,
    scan: Option<ScanPolicy>,
    scan_results: Option<ScanPolicy>,
    audit: Option<AuditSpec>,
    tracing: Option<TracingSpec>,
    auth: Option<crate::auth::AuthSpec>,
    limits: Option<ClientLimits>,
    cache: Option<RawGatewayCache>,
    tool_mode: Option<ToolMode>,
    pinned: Option<Patterns>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGatewayCache {
    max_size: Option<FileSize>,
}

impl<'de> Deserialize<'de> for GatewaySpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = RawGateway::deserialize(d)?;
        let defaults = Self::default();
        Ok(Self {
            separator: raw.separator.unwrap_or(defaults.separator),
            call_timeout: raw.call_timeout.map_or(defaults.call_timeout, |d| d.0),
            init_timeout: raw.init_timeout.map_or(defaults.init_timeout, |d| d.0),
            max_call_timeout: raw
                .max_call_timeout
                .map_or(defaults.max_call_timeout, |d| d.0),
            restart: raw.restart.unwrap_or_default(),
            health: raw.health.unwrap_or_default(),
            redaction: raw.redaction.unwrap_or_default(),
            scan: raw.scan.unwrap_or(defaults.scan),
            scan_results: raw.scan_results.unwrap_or(defaults.scan_results),
            audit: raw.audit.unwrap_or_default(),
            tracing: raw.tracing.unwrap_or_default(),
            auth: raw.auth.unwrap_or_default(),
            limits: raw.limits.unwrap_or_default(),
            cache_bytes: raw
                .cache
                .and_then(|c| c.max_size)
                .map_or(defaults.cache_bytes, |s| s.0),
            tool_view: ToolView {
                mode: raw.tool_mode.unwrap_or_default(),
                pinned: raw.pinned,
            },
        })
    }
}

/// One MCP server and the container it runs in.
#[derive(Debug, Clone)]
pub struct ServerSpec {
    /// The server's name, the key it has under `servers`.
    pub name: ServerName,
    /// The image to run, as the catalog names it (with its digest, if
    /// it names one); empty for a remote server.
    pub image: String,
    /// How a remote server is reached (`url`); `None` for a container
    /// server. A remote server has no container: the container-only keys
    /// keep their defaults, and no image is ever pulled for it.
    pub remote: Option<crate::remote::RemoteSpec>,
    /// The image's content digest (`sha256:…`) it must have: from
    /// `image: NAME@sha256:…`, else from the lockfile. Checked before the
    /// container is created.
    pub image_digest: Option<String>,
    /// The lockfile's pins for this server's definitions, when a lockfile
    /// is in force (empty when it does not list the server: then nothing
    /// the server lists is pinned, so nothing is served).
    pub pins: Option<std::sync::Arc<crate::lock::ServerLock>>,
    /// When to pull the image from a registry.
    pub pull: PullPolicy,
    /// Overrides the image's entrypoint.
    pub entrypoint: Option<Vec<String>>,
    /// Overrides the image's command (Docker's `Cmd`).
    pub command: Option<Vec<String>>,
    /// Plain environment variables, by name.
    pub env: BTreeMap<String, String>,
    /// Secrets the server receives, by environment variable: the variable
    /// holds the value, or with `as: file` the path of a file holding it.
    pub secrets: BTreeMap<String, SecretRef>,
    /// Which of the server's tools clients may see and call.
    pub tools: ToolFilter,
    /// The container's network.
    pub network: Network,
    /// Resource limits.
    pub resources: Resources,
    /// The user to run as; `None` keeps the image's, or a non-root default
    /// when the image names none.
    pub user: Option<String>,
    /// Bind mounts.
    pub volumes: Vec<Volume>,
    /// Server-to-client requests this server may make.
    pub relay: Relay,
    /// Overrides `gateway.call_timeout` for this server.
    pub call_timeout: Option<Duration>,
    /// How many calls may be in flight and how many may wait.
    pub concurrency: Concurrency,
    /// Whether the server runs all the time or only while used.
    pub lifecycle: Lifecycle,
    /// Whether clients share one container or each session has its own.
    pub scope: Scope,
    /// Overrides `gateway.scan` for this server's lists.
    pub scan: Option<ScanPolicy>,
    /// Overrides `gateway.scan_results` for this server's tool results.
    pub scan_results: Option<ScanPolicy>,
    /// Rate limits on the requests relayed to this server.
    pub limits: ServerLimits,
    /// Tools whose results are cached, by upstream name, with how long.
    pub cache: Vec<(String, Duration)>,
}

/// Who a server's container serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scope {
    /// One container serves every client session (the default).
    #[default]
    Shared,
    /// Each client session gets a container of its own, started by its
    /// first use and removed when the session ends: isolation for stateful
    /// servers, and one owner for the server's requests to the client.
    Session,
}

/// Bounds on the calls one backend is given at once. Above both, a call is
/// refused at once with a "busy" error: nothing queues without bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Concurrency {
    /// Calls sent to the backend and not yet answered.
    pub in_flight: usize,
    /// Calls waiting for one of those places.
    pub queue: usize,
    /// How many calls one client has in flight before the waiting calls
    /// of clients with fewer take precedence; `None`: `in_flight` (then
    /// waiting clients simply take turns).
    pub per_client: Option<usize>,
}

impl Default for Concurrency {
    fn default() -> Self {
        Self {
            in_flight: 16,
            queue: 64,
            per_client: None,
        }
    }
}

/// When a server's container runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lifecycle {
    /// Started with the gateway and kept running (the default).
    #[default]
    Warm,
    /// Started with the gateway to learn its tools, stopped after `idle`
    /// without calls, and started again by the next call.
    OnDemand {
        /// How long the server may sit unused before it is stopped.
        idle: Duration,
    },
}

impl ServerSpec {
    /// Each way this server is less confined than the defaults, in words, so
    /// the gateway can print them where the user will see them.
    pub fn relaxations(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(remote) = &self.remote {
            out.push(format!("remote server at {}", remote.url));
            if remote.allow_private {
                out.push(
                    "allow_private: true (may reach loopback and private addresses)".to_string(),
                );
            }
        }
        match &self.network {
            Network::None => {}
            Network::Bridge => out.push(
                "network: bridge (the widest relaxation: the whole internet and the LAN)"
                    .to_string(),
            ),
            Network::Named(name) => out.push(format!("network: {name}")),
            Network::Egress(egress) => {
                let hosts: Vec<String> = egress
                    .allow
                    .rules()
                    .iter()
                    .map(ToString::to_string)
                    .collect();
                out.push(format!(
                    "network egress through its proxy to: {}",
                    hosts.join(", ")
                ));
            }
        }
        if let Some(user) = &self.user
            && (user == "0"
                || user.starts_with("0:")
                || user == "root"
                || user.starts_with("root:"))
        {
            out.push(format!("user: {user} (root)"));
        }
        for v in self.volumes.iter().filter(|v| !v.read_only) {
            out.push(format!("writable volume: {}", v.to_bind()));
        }
        if self.relay.sampling {
            out.push("relay.sampling: true".to_string());
        }
        out
    }
}

/// `cache.T`: how long a result of tool `T` is kept.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCache {
    ttl: CatalogDuration,
}

/// A server's body before its name is attached.
#[derive(Debug)]
struct ServerBody(ServerSpec);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    image: Option<String>,
    url: Option<crate::remote::RemoteUrl>,
    #[serde(default)]
    headers: UniqueMap<crate::remote::HeaderName, crate::remote::HeaderSpec>,
    oauth: Option<crate::remote::RawOAuth>,
    allow_private: Option<bool>,
    pull: Option<PullPolicy>,
    entrypoint: Option<Vec<String>>,
    command: Option<Vec<String>>,
    #[serde(default)]
    env: UniqueMap<EnvName, EnvValue>,
    #[serde(default)]
    secrets: UniqueMap<EnvName, SecretRef>,
    #[serde(default)]
    tools: ToolFilter,
    network: Option<Network>,
    resources: Option<Resources>,
    user: Option<String>,
    volumes: Option<Vec<Volume>>,
    #[serde(default)]
    relay: Relay,
    call_timeout: Option<CatalogDuration>,
    #[serde(default)]
    concurrency: Concurrency,
    lifecycle: Option<LifecycleKind>,
    idle_timeout: Option<CatalogDuration>,
    #[serde(default)]
    scope: ScopeKind,
    scan: Option<ScanPolicy>,
    scan_results: Option<ScanPolicy>,
    #[serde(default)]
    limits: ServerLimits,
    #[serde(default)]
    cache: UniqueMap<ToolKey, RawCache>,
    // Keys that exist only to be refused with a reason: Docker users write
    // them, and "unknown field" would not say why they are refused.
    #[allow(dead_code)]
    privileged: Option<Forbidden<Privileged>>,
    #[allow(dead_code)]
    pid: Option<Forbidden<HostNamespace>>,
    #[allow(dead_code)]
    ipc: Option<Forbidden<HostNamespace>>,
    #[allow(dead_code)]
    cap_add: Option<Forbidden<CapAdd>>,
    #[allow(dead_code)]
    devices: Option<Forbidden<Devices>>,
}

impl<'de> Deserialize<'de> for ServerBody {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct BodyVisitor;
        impl<'de> Visitor<'de> for BodyVisitor {
            type Value = ServerBody;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a server mapping with `image` or `url`")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<ServerBody, A::Error> {
                let raw = RawServer::deserialize(de::value::MapAccessDeserializer::new(map))?;
                ServerBody::try_from(raw).map_err(de::Error::custom)
            }
        }
        d.deserialize_map(BodyVisitor)
    }
}

impl TryFrom<RawServer> for ServerBody {
    type Error = String;

    fn try_from(raw: RawServer) -> Result<Self, String> {
        let remote = crate::remote::RawRemote {
            url: raw.url,
            headers: raw.headers,
            oauth: raw.oauth,
            allow_private: raw.allow_private,
        }
        .build()?;
        let image = match (raw.image, &remote) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "the server has both `image` and `url`",
                    "keep `image` for a container server, or `url` for a remote one",
                ));
            }
            (None, None) => {
                return Err(invalid(
                    "the server has neither `image` nor `url`",
                    "add `image` (a container server) or `url` (a remote server's MCP endpoint)",
                ));
            }
            (None, Some(_)) => {
                let written = [
                    ("pull", raw.pull.is_some()),
                    ("entrypoint", raw.entrypoint.is_some()),
                    ("command", raw.command.is_some()),
                    ("env", !raw.env.0.is_empty()),
                    ("secrets", !raw.secrets.0.is_empty()),
                    ("network", raw.network.is_some()),
                    ("resources", raw.resources.is_some()),
                    ("user", raw.user.is_some()),
                    ("volumes", raw.volumes.is_some()),
                ];
                if let Some((key, _)) = written.iter().find(|(_, w)| *w) {
                    return Err(invalid(
                        format_args!(
                            "`{key}` applies only to a container server, and this one has `url`"
                        ),
                        format_args!(
                            "remove `{key}`; a remote server's credentials go in `headers` or `oauth`"
                        ),
                    ));
                }
                String::new()
            }
            (Some(image), None) => {
                if image.trim().is_empty() || image.chars().any(char::is_whitespace) {
                    return Err(invalid(
                        format_args!("image `{image}` is not an image reference"),
                        "name a local or registry image, such as `mcpgw/time:dev`",
                    ));
                }
                image
            }
        };
        let image_digest = image_digest(&image)?;
        let env: BTreeMap<String, String> =
            raw.env.0.into_iter().map(|(k, v)| (k.0, v.0)).collect();
        let secrets: BTreeMap<String, SecretRef> =
            raw.secrets.0.into_iter().map(|(k, v)| (k.0, v)).collect();
        if let Some(clash) = secrets.keys().find(|k| env.contains_key(*k)) {
            return Err(invalid(
                format_args!("`{clash}` is set both in `env` and in `secrets`"),
                "keep it in one of them",
            ));
        }
        if raw.entrypoint.as_ref().is_some_and(Vec::is_empty) {
            return Err(invalid(
                "`entrypoint` is empty",
                "remove it to keep the image's entrypoint, or list the program and its arguments",
            ));
        }
        if let Some(user) = &raw.user {
            let valid = !user.is_empty()
                && user.len() <= 64
                && user
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'_' | b'-' | b'.'));
            if !valid {
                return Err(invalid(
                    format_args!("user `{user}` is not a user"),
                    "write `uid`, `uid:gid` or a user name, such as `1000:1000`",
                ));
            }
        }
        let lifecycle = match (raw.lifecycle, raw.idle_timeout) {
            (None | Some(LifecycleKind::Warm), None) => Lifecycle::Warm,
            (None | Some(LifecycleKind::Warm), Some(_)) => {
                return Err(invalid(
                    "`idle_timeout` only applies to `lifecycle: on-demand`",
                    "add `lifecycle: on-demand`, or remove `idle_timeout`",
                ));
            }
            (Some(LifecycleKind::OnDemand), idle) => Lifecycle::OnDemand {
                idle: idle.map_or(Duration::from_secs(300), |d| d.0),
            },
        };
        let scope = raw.scope.0;
        if scope == Scope::Session && raw.lifecycle.is_some() {
            return Err(invalid(
                "`lifecycle` does not apply to `scope: session`: each session's container starts on its first use and is removed when the session ends",
                "remove `lifecycle` (and `idle_timeout`), or use `scope: shared`",
            ));
        }
        if raw.concurrency.in_flight == 0 {
            return Err(invalid(
                "`concurrency.in_flight` is 0: no call could ever be made",
                "allow at least 1 call in flight (the default is 16)",
            ));
        }
        if let Some(share) = raw.concurrency.per_client
            && !(1..=raw.concurrency.in_flight).contains(&share)
        {
            return Err(invalid(
                format_args!(
                    "`concurrency.per_client` is {share}, outside 1 to `in_flight` ({})",
                    raw.concurrency.in_flight
                ),
                "give each client a share from 1 to `in_flight`, or remove it to let clients take turns",
            ));
        }
        Ok(Self(ServerSpec {
            name: ServerName::placeholder(),
            image,
            remote,
            image_digest,
            pins: None,
            pull: raw.pull.unwrap_or_default(),
            entrypoint: raw.entrypoint,
            command: raw.command,
            env,
            secrets,
            tools: raw.tools,
            network: raw.network.unwrap_or_default(),
            resources: raw.resources.unwrap_or_default(),
            user: raw.user,
            volumes: raw.volumes.unwrap_or_default(),
            relay: raw.relay,
            call_timeout: raw.call_timeout.map(|d| d.0),
            concurrency: raw.concurrency,
            lifecycle,
            scope,
            scan: raw.scan,
            scan_results: raw.scan_results,
            limits: raw.limits,
            cache: raw
                .cache
                .0
                .into_iter()
                .map(|(k, v)| (k.0, v.ttl.0))
                .collect(),
        }))
    }
}

/// The digest an image reference pins (`NAME@sha256:HEX`), if any.
fn image_digest(image: &str) -> Result<Option<String>, String> {
    let Some((_, digest)) = image.rsplit_once('@') else {
        return Ok(None);
    };
    let well_formed = digest.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    });
    if !well_formed {
        return Err(invalid(
            format_args!(
                "image `{image}` pins digest `{digest}`, which is not `sha256:` and 64 lowercase hex digits"
            ),
            "copy the digest from `docker image inspect --format '{{.Id}}' IMAGE` (or a registry's `RepoDigests`)",
        ));
    }
    Ok(Some(digest.to_string()))
}

impl ServerSpec {
    fn named(mut self, name: ServerName) -> Self {
        self.name = name;
        self
    }
}

/// `lifecycle` as written.
#[derive(Debug, Clone, Copy)]
enum LifecycleKind {
    Warm,
    OnDemand,
}

impl TryFrom<String> for LifecycleKind {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        match value.as_str() {
            "warm" => Ok(Self::Warm),
            "on-demand" => Ok(Self::OnDemand),
            other => Err(invalid(
                format_args!("lifecycle `{other}` is not known"),
                "use `warm` (the default) or `on-demand`",
            )),
        }
    }
}
deserialize_checked!(LifecycleKind, str);

/// `scope` as written.
#[derive(Debug, Clone, Copy, Default)]
struct ScopeKind(Scope);

impl TryFrom<String> for ScopeKind {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        match value.as_str() {
            "shared" => Ok(Self(Scope::Shared)),
            "session" => Ok(Self(Scope::Session)),
            other => Err(invalid(
                format_args!("scope `{other}` is not known"),
                "use `shared` (the default: one container for every client) or `session` (a container per client session)",
            )),
        }
    }
}
deserialize_checked!(ScopeKind, str);

/// An environment value; YAML numbers and booleans are taken as written.
#[derive(Debug)]
struct EnvValue(String);

impl TryFrom<Scalar> for EnvValue {
    type Error = String;
    fn try_from(value: Scalar) -> Result<Self, String> {
        Ok(Self(value.to_string()))
    }
}
deserialize_checked!(EnvValue, scalar);

/// When to pull a server's image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PullPolicy {
    /// Pull only when the image is not present locally (the default).
    #[default]
    Missing,
    /// Pull before every start.
    Always,
    /// Never pull; a missing image is an error.
    Never,
}

impl TryFrom<String> for PullPolicy {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        match value.as_str() {
            "missing" => Ok(Self::Missing),
            "always" => Ok(Self::Always),
            "never" => Ok(Self::Never),
            other => Err(invalid(
                format_args!("pull policy `{other}` is not known"),
                "use `missing` (the default), `always` or `never`",
            )),
        }
    }
}
deserialize_checked!(PullPolicy, str);

/// What the tool-poisoning scan does with its findings (`gateway.scan`,
/// `gateway.scan_results`, and per server `scan`, `scan_results`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanPolicy {
    /// Withhold what has a finding of high severity or above (absent from
    /// lists, refused on call); log and count the rest.
    Block,
    /// Log and count every finding; withhold nothing.
    Warn,
    /// Do not scan.
    Off,
}

impl TryFrom<String> for ScanPolicy {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        match value.as_str() {
            "block" => Ok(Self::Block),
            "warn" => Ok(Self::Warn),
            "off" => Ok(Self::Off),
            other => Err(invalid(
                format_args!("scan policy `{other}` is not known"),
                "use `block` (withhold high-severity findings, log the rest), `warn` (log only) or `off`",
            )),
        }
    }
}
deserialize_checked!(ScanPolicy, str);

/// The network a container joins.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Network {
    /// No network at all, only loopback (the default).
    #[default]
    None,
    /// Docker's default bridge: outbound access.
    Bridge,
    /// A user-defined Docker network.
    Named(String),
    /// A network of its own with no route out, shared only with an egress
    /// proxy that connects it to the hosts of its allowlist and nowhere
    /// else (`network: { egress: [...] }`).
    Egress(EgressSpec),
}

/// `network: { egress: [...], uplink: NAME }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressSpec {
    /// The hosts the server may reach.
    pub allow: crate::Egress,
    /// The Docker network the proxy reaches those hosts through; `None`:
    /// Docker's default `bridge`.
    pub uplink: Option<String>,
}

impl Network {
    /// Docker's `NetworkMode` value; `None` for an egress network, whose
    /// name the runtime chooses.
    pub fn mode(&self) -> Option<&str> {
        match self {
            Self::None => Some("none"),
            Self::Bridge => Some("bridge"),
            Self::Named(name) => Some(name),
            Self::Egress(_) => None,
        }
    }
}

/// A Docker network name, as `network:` or `uplink:` writes it.
fn network_name(value: &str) -> Result<String, String> {
    match value {
        "host" => Err(invalid(
            "network `host` is not allowed: it shares the host's network stack with the container",
            "use `bridge` for outbound access, `{ egress: [HOST, ...] }` for a few hosts, or a named Docker network",
        )),
        other if other.starts_with("container:") => Err(invalid(
            format_args!(
                "network `{other}` is not allowed: it joins another container's network namespace"
            ),
            "use `bridge` or a named Docker network",
        )),
        other
            if !other.is_empty()
                && other
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')) =>
        {
            Ok(other.to_string())
        }
        other => Err(invalid(
            format_args!("network `{other}` is not a network name"),
            "use `none` (the default), `bridge`, `{ egress: [HOST, ...] }` or the name of a Docker network",
        )),
    }
}

impl TryFrom<String> for Network {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        match value.as_str() {
            "none" => Ok(Self::None),
            "bridge" => Ok(Self::Bridge),
            other => network_name(other).map(Self::Named),
        }
    }
}

/// `uplink:`, checked as a network name where it is written.
#[derive(Debug)]
struct UplinkName(String);

impl TryFrom<String> for UplinkName {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        match value.as_str() {
            "none" => Err(invalid(
                "`uplink: none` leaves the egress proxy no way out",
                "name the network the proxy reaches the allowed hosts through, or leave `uplink` out for Docker's `bridge`",
            )),
            other => network_name(other).map(Self),
        }
    }
}
deserialize_checked!(UplinkName, str);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEgressNetwork {
    egress: Vec<crate::EgressRule>,
    uplink: Option<UplinkName>,
}

impl<'de> Deserialize<'de> for Network {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct NetworkVisitor;
        impl<'de> serde::de::Visitor<'de> for NetworkVisitor {
            type Value = Network;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("`none`, `bridge`, a network name, or `{ egress: [HOST, ...] }`")
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Network, E> {
                Network::try_from(v.to_string()).map_err(E::custom)
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Network, A::Error> {
                let raw = RawEgressNetwork::deserialize(
                    serde::de::value::MapAccessDeserializer::new(map),
                )?;
                let allow = crate::Egress::new(raw.egress).ok_or_else(|| {
                    serde::de::Error::custom(invalid(
                        "`egress` lists no host",
                        "list the hosts the server needs (`api.github.com:443`), or use `network: none`",
                    ))
                })?;
                Ok(Network::Egress(EgressSpec {
                    allow,
                    uplink: raw.uplink.map(|u| u.0),
                }))
            }
        }
        d.deserialize_any(NetworkVisitor)
    }
}

/// Limits on what a container may consume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resources {
    /// Memory limit in bytes (swap is limited to the same).
    pub memory_bytes: u64,
    /// CPU limit in billionths of a CPU.
    pub nano_cpus: u64,
    /// Maximum number of processes and threads.
    pub pids: u64,
}

impl Default for Resources {
    fn default() -> Self {
        Self {
            memory_bytes: 512 * 1024 * 1024,
            nano_cpus: 1_000_000_000,
            pids: 256,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawResources {
    memory: Option<ByteSize>,
    cpus: Option<Cpus>,
    pids: Option<Pids>,
}

#[derive(Debug)]
struct Pids(u64);

impl TryFrom<Scalar> for Pids {
    type Error = String;
    fn try_from(value: Scalar) -> Result<Self, String> {
        match value {
            Scalar::Int(n) if (8..=65_536).contains(&n) => Ok(Self(n)),
            other => Err(invalid(
                format_args!("pids limit `{other}` is out of range"),
                "write a whole number from 8 to 65536 (the default is 256)",
            )),
        }
    }
}
deserialize_checked!(Pids, scalar);

impl<'de> Deserialize<'de> for Resources {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = RawResources::deserialize(d)?;
        let defaults = Self::default();
        Ok(Self {
            memory_bytes: raw.memory.map_or(defaults.memory_bytes, |m| m.0),
            nano_cpus: raw.cpus.map_or(defaults.nano_cpus, |c| c.0),
            pids: raw.pids.map_or(defaults.pids, |p| p.0),
        })
    }
}

/// Which server-to-client requests a server may make through the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Relay {
    /// `sampling/createMessage`: spends the user's model budget, so off
    /// unless the catalog turns it on.
    pub sampling: bool,
    /// `elicitation/create`: asks the user a question.
    pub elicitation: bool,
    /// `roots/list`: learns the client's workspace roots.
    pub roots: bool,
}

impl Default for Relay {
    fn default() -> Self {
        Self {
            sampling: false,
            elicitation: true,
            roots: true,
        }
    }
}

/// Which upstream tools a server exposes: `allow` (absent = all) then `deny`,
/// and how their definitions are rewritten before anyone sees them
/// (`rename`, `describe`, `hide_params`, each keyed by upstream name).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ToolFilter {
    allow: Option<Patterns>,
    deny: Option<Patterns>,
    rename: BTreeMap<String, String>,
    describe: BTreeMap<String, String>,
    hide_params: BTreeMap<String, Vec<String>>,
}

impl ToolFilter {
    /// Whether the upstream tool `name` may be listed and called.
    pub fn permits(&self, name: &str) -> bool {
        self.allow.as_ref().is_none_or(|a| a.set.is_match(name))
            && !self.deny.as_ref().is_some_and(|d| d.set.is_match(name))
    }

    /// The name upstream tool `name` is exposed under instead of its own
    /// (before the server's prefix), if `rename` gives one.
    pub fn rename(&self, name: &str) -> Option<&str> {
        self.rename.get(name).map(String::as_str)
    }

    /// The description upstream tool `name` is shown with instead of its
    /// own, if `describe` gives one.
    pub fn description(&self, name: &str) -> Option<&str> {
        self.describe.get(name).map(String::as_str)
    }

    /// The parameters of upstream tool `name` that clients neither see
    /// nor send (`hide_params`).
    pub fn hidden_params(&self, name: &str) -> &[String] {
        self.hide_params.get(name).map_or(&[], Vec::as_slice)
    }

    /// Whether any definition is rewritten.
    pub fn overrides_any(&self) -> bool {
        !(self.rename.is_empty() && self.describe.is_empty() && self.hide_params.is_empty())
    }

    /// Every override as (its key, the upstream tool it names), in key
    /// then name order: for the warning about those that name no tool.
    pub fn overridden(&self) -> impl Iterator<Item = (&'static str, &str)> {
        let rename = self.rename.keys().map(|n| ("rename", n.as_str()));
        let describe = self.describe.keys().map(|n| ("describe", n.as_str()));
        let hide = self.hide_params.keys().map(|n| ("hide_params", n.as_str()));
        rename.chain(describe).chain(hide)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawToolFilter {
    allow: Option<Patterns>,
    deny: Option<Patterns>,
    #[serde(default)]
    rename: Renames,
    #[serde(default)]
    describe: UniqueMap<ToolKey, Description>,
    #[serde(default)]
    hide_params: UniqueMap<ToolKey, ParamNames>,
}

impl<'de> Deserialize<'de> for ToolFilter {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct FilterVisitor;
        impl<'de> Visitor<'de> for FilterVisitor {
            type Value = ToolFilter;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping with `allow`, `deny`, `rename`, `describe` or `hide_params`")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<ToolFilter, A::Error> {
                let raw = RawToolFilter::deserialize(de::value::MapAccessDeserializer::new(map))?;
                ToolFilter::try_from(raw).map_err(de::Error::custom)
            }
        }
        d.deserialize_map(FilterVisitor)
    }
}

impl TryFrom<RawToolFilter> for ToolFilter {
    type Error = String;

    /// The checks across keys: a rename onto a name the allowlist names
    /// literally would give two tools one exposed name. (Two renames onto
    /// one name are refused while `rename` is read, at the second.)
    fn try_from(raw: RawToolFilter) -> Result<Self, String> {
        let rename: BTreeMap<String, String> = raw.rename.0.into_iter().collect();
        if let Some(allow) = &raw.allow {
            for (from, to) in &rename {
                // The allowlisted tool keeps its name unless renamed too.
                if allow.literals.contains(to) && !rename.contains_key(to) {
                    return Err(invalid(
                        format_args!(
                            "`rename` gives `{from}` the name `{to}`, which `allow` names as another tool: both would be exposed as `{to}`"
                        ),
                        format_args!("rename `{from}` to another name, or rename `{to}` as well"),
                    ));
                }
            }
        }
        Ok(Self {
            allow: raw.allow,
            deny: raw.deny,
            rename,
            describe: raw
                .describe
                .0
                .into_iter()
                .map(|(k, v)| (k.0, v.0))
                .collect(),
            hide_params: raw
                .hide_params
                .0
                .into_iter()
                .map(|(k, v)| (k.0, v.0))
                .collect(),
        })
    }
}

/// `tools.rename`: upstream name to new name, each new name used once.
#[derive(Debug, Default)]
struct Renames(Vec<(String, String)>);

impl<'de> Deserialize<'de> for Renames {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct RenamesVisitor;
        impl<'de> Visitor<'de> for RenamesVisitor {
            type Value = Renames;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping of upstream tool names to new names")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Renames, A::Error> {
                // Read here rather than through `collect_unique`, so that a
                // new name given twice is refused at the second.
                let mut out: Vec<(String, String)> = Vec::new();
                while let Some(ToolKey(from)) = map.next_key::<ToolKey>()? {
                    if out.iter().any(|(f, _)| *f == from) {
                        return Err(de::Error::custom(invalid(
                            format_args!("duplicate key `{from}`"),
                            "keep only one of them",
                        )));
                    }
                    let NewName(to) = map.next_value::<NewName>()?;
                    if let Some((first, _)) = out.iter().find(|(_, t)| *t == to) {
                        return Err(de::Error::custom(invalid(
                            format_args!(
                                "`{from}` and `{first}` are both renamed to `{to}`: two tools cannot share one name"
                            ),
                            "give each tool a name of its own",
                        )));
                    }
                    out.push((from, to));
                }
                Ok(Renames(out))
            }
        }
        d.deserialize_map(RenamesVisitor)
    }
}

/// A tool's new name: what MCP clients accept in a tool name.
#[derive(Debug)]
struct NewName(String);

impl TryFrom<String> for NewName {
    type Error = String;
    fn try_from(name: String) -> Result<Self, String> {
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'));
        if !valid {
            return Err(invalid(
                format_args!("`{name}` is not a tool name clients accept"),
                "use 1 to 64 letters, digits, `_` or `-`, such as `code_search`",
            ));
        }
        Ok(Self(name))
    }
}
deserialize_checked!(NewName, str);

/// A tool's new description: any text but none.
#[derive(Debug)]
struct Description(String);

impl TryFrom<String> for Description {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        if text.trim().is_empty() {
            return Err(invalid(
                "the description is empty",
                "write what the tool does, for the model that chooses it, or remove the entry",
            ));
        }
        Ok(Self(text))
    }
}
deserialize_checked!(Description, str);

/// The parameters `hide_params` removes from one tool.
#[derive(Debug)]
struct ParamNames(Vec<String>);

impl<'de> Deserialize<'de> for ParamNames {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let names = Vec::<ParamName>::deserialize(d)?;
        Ok(Self(names.into_iter().map(|n| n.0).collect()))
    }
}

/// One parameter name.
#[derive(Debug)]
struct ParamName(String);

impl TryFrom<String> for ParamName {
    type Error = String;
    fn try_from(name: String) -> Result<Self, String> {
        if name.is_empty() || name.chars().any(char::is_whitespace) {
            return Err(invalid(
                format_args!("`{name}` is not a parameter name"),
                "name a property of the tool's input schema, such as `assignees`",
            ));
        }
        Ok(Self(name))
    }
}
deserialize_checked!(ParamName, str);

/// A list of tool names or globs (`*`, `?`, `[abc]`), compiled once.
#[derive(Debug, Clone)]
struct Patterns {
    set: GlobSet,
    /// The entries that are plain names, not globs.
    literals: Vec<String>,
    /// Every entry as written, in order: what two lists are compared by,
    /// since a compiled `GlobSet` cannot be.
    written: Vec<String>,
}

impl PartialEq for Patterns {
    fn eq(&self, other: &Self) -> bool {
        self.written == other.written
    }
}

impl<'de> Deserialize<'de> for Patterns {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut builder = GlobSetBuilder::new();
        let mut literals = Vec::new();
        let mut written = Vec::new();
        for ToolPattern(glob) in Vec::<ToolPattern>::deserialize(d)? {
            if !glob.glob().contains(['*', '?', '[', ']', '{', '}', '\\']) {
                literals.push(glob.glob().to_string());
            }
            written.push(glob.glob().to_string());
            builder.add(glob);
        }
        let set = builder.build().map_err(de::Error::custom)?;
        Ok(Self {
            set,
            literals,
            written,
        })
    }
}

/// One tool name or glob, checked as it is read.
#[derive(Debug)]
struct ToolPattern(Glob);

impl TryFrom<String> for ToolPattern {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        let glob = Glob::new(&text).map_err(|err| {
            invalid(
                format_args!("tool pattern `{text}` is not a valid glob: {}", err.kind()),
                "write a tool name, or a glob such as `get_*`",
            )
        })?;
        Ok(Self(glob))
    }
}
deserialize_checked!(ToolPattern, str);

/// A key that is refused whatever its value, with the reason `R` gives.
#[derive(Debug)]
struct Forbidden<R>(std::marker::PhantomData<R>);

trait Reason {
    const WHAT: &'static str;
    const FIX: &'static str;
}

#[derive(Debug)]
struct Privileged;
impl Reason for Privileged {
    const WHAT: &'static str =
        "`privileged` is not allowed: a privileged container has full access to the host";
    const FIX: &'static str = "remove `privileged`; mcpgw never runs a privileged container";
}

#[derive(Debug)]
struct HostNamespace;
impl Reason for HostNamespace {
    const WHAT: &'static str = "sharing the host's pid or ipc namespace is not allowed: it lets the container see and signal host processes";
    const FIX: &'static str = "remove the key; every container gets private namespaces";
}

#[derive(Debug)]
struct CapAdd;
impl Reason for CapAdd {
    const WHAT: &'static str = "`cap_add` is not supported: every capability is dropped";
    const FIX: &'static str = "remove `cap_add`; an MCP server should not need Linux capabilities";
}

#[derive(Debug)]
struct Devices;
impl Reason for Devices {
    const WHAT: &'static str = "`devices` is not supported: host devices are never passed through";
    const FIX: &'static str = "remove `devices`";
}

impl<'de, R: Reason> Deserialize<'de> for Forbidden<R> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<R>(std::marker::PhantomData<R>);
        impl<'v, R: Reason> Visitor<'v> for V<R> {
            type Value = Forbidden<R>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("nothing")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                // `privileged: false` says what we do anyway; accept it.
                if v {
                    Err(E::custom(invalid(R::WHAT, R::FIX)))
                } else {
                    Ok(Forbidden(std::marker::PhantomData))
                }
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
                Err(E::custom(invalid(R::WHAT, R::FIX)))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Err(E::custom(invalid(R::WHAT, R::FIX)))
            }
            fn visit_seq<A: de::SeqAccess<'v>>(self, _: A) -> Result<Self::Value, A::Error> {
                Err(de::Error::custom(invalid(R::WHAT, R::FIX)))
            }
            fn visit_map<A: MapAccess<'v>>(self, _: A) -> Result<Self::Value, A::Error> {
                Err(de::Error::custom(invalid(R::WHAT, R::FIX)))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// Where secret files appear inside a container.
pub const SECRETS_DIR: &str = "/run/secrets";

/// One secret a server receives: `VAR: name`, or
/// `VAR: { secret: name, as: file }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRef {
    /// The secret's name in the secret sources.
    pub name: SecretName,
    /// How the container receives it.
    pub delivery: Delivery,
}

impl SecretRef {
    /// The path of the secret's file inside the container, for `as: file`.
    pub fn file_path(&self) -> Option<String> {
        matches!(self.delivery, Delivery::File).then(|| format!("{SECRETS_DIR}/{}", self.name))
    }
}

/// How a container receives a secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Delivery {
    /// As the value of the environment variable (the default).
    #[default]
    Env,
    /// As a read-only file under `/run/secrets/`, whose path the variable
    /// holds.
    File,
}

impl TryFrom<String> for Delivery {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        match value.as_str() {
            "env" => Ok(Self::Env),
            "file" => Ok(Self::File),
            other => Err(invalid(
                format_args!("secret delivery `{other}` is not known"),
                "use `as: env` (the default) or `as: file`",
            )),
        }
    }
}
deserialize_checked!(Delivery, str);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSecretRef {
    secret: SecretName,
    #[serde(default, rename = "as")]
    delivery: Delivery,
}

impl<'de> Deserialize<'de> for SecretRef {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct RefVisitor;
        impl<'de> serde::de::Visitor<'de> for RefVisitor {
            type Value = SecretRef;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a secret name, or a mapping with `secret` and `as`")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<SecretRef, E> {
                Ok(SecretRef {
                    name: SecretName::try_from(v.to_string()).map_err(E::custom)?,
                    delivery: Delivery::Env,
                })
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<SecretRef, A::Error> {
                let raw =
                    RawSecretRef::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(SecretRef {
                    name: raw.secret,
                    delivery: raw.delivery,
                })
            }
        }
        d.deserialize_any(RefVisitor)
    }
}
