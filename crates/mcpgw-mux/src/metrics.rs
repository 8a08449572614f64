//! Counters the mux keeps for `/metrics`: calls and their latency per
//! server and tool, server failures, and whether each server is up, as
//! `prometheus-client` metrics that the binary registers and encodes.
//!
//! It does not serve them (the HTTP front does) nor count what the fronts
//! see (sessions, redactions): the binary registers those beside these.

use std::fmt::Write as _;
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::screen::Screened;

/// Upper bounds of the latency histogram buckets, in seconds.
const BUCKETS: [f64; 11] = [
    0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0,
];

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    #[prometheus(flatten)]
    tool: ToolLabels,
    outcome: Outcome,
}

#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
enum Outcome {
    Ok,
    Error,
}

impl EncodeLabelValue for Outcome {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> std::fmt::Result {
        encoder.write_str(match self {
            Self::Ok => "ok",
            Self::Error => "error",
        })
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ToolLabels {
    server: String,
    tool: String,
}

/// A scan finding's labels: where, which rule, what was done.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FindingLabels {
    server: String,
    rule: String,
    severity: String,
    action: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServerLabels {
    server: String,
}

fn latency_histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

/// The mux's metrics. Clones share their values.
#[derive(Debug, Clone)]
pub(crate) struct Metrics {
    calls: Family<CallLabels, Counter>,
    durations: Family<ToolLabels, Histogram, fn() -> Histogram>,
    failures: Family<ServerLabels, Counter>,
    up: Family<ServerLabels, Gauge>,
    findings: Family<FindingLabels, Gauge>,
    result_findings: Family<FindingLabels, Counter>,
    refused: Family<RefusedLabels, Counter>,
    starts: Family<ServerLabels, Histogram, fn() -> Histogram>,
    in_flight: Family<ServerLabels, Gauge>,
    queued: Family<ServerLabels, Gauge>,
    cache_hits: Family<ToolLabels, Counter>,
    cache_misses: Family<ToolLabels, Counter>,
    cache_bytes: Gauge,
    reloads: Family<ReloadLabels, Counter>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReloadLabels {
    /// `applied` or `refused`.
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusedLabels {
    reason: String,
}

/// Start-up takes seconds: a container, a handshake, the lists.
const START_BUCKETS: [f64; 10] = [0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0];

fn start_histogram() -> Histogram {
    Histogram::new(START_BUCKETS)
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            calls: Family::default(),
            durations: Family::new_with_constructor(latency_histogram),
            failures: Family::default(),
            up: Family::default(),
            findings: Family::default(),
            result_findings: Family::default(),
            refused: Family::default(),
            starts: Family::new_with_constructor(start_histogram),
            in_flight: Family::default(),
            queued: Family::default(),
            cache_hits: Family::default(),
            cache_misses: Family::default(),
            reloads: Family::default(),
            cache_bytes: Gauge::default(),
        }
    }
}

impl Metrics {
    /// Adds these metrics to `registry`.
    pub(crate) fn register(&self, registry: &mut Registry) {
        registry.register(
            "mcpgw_tool_calls",
            "tools/call requests forwarded, by server, tool and outcome",
            self.calls.clone(),
        );
        registry.register(
            "mcpgw_tool_call_duration_seconds",
            "Time from a call's arrival to its answer",
            self.durations.clone(),
        );
        registry.register(
            "mcpgw_server_failures",
            "Times a server failed to start or stopped answering",
            self.failures.clone(),
        );
        registry.register(
            "mcpgw_server_up",
            "Whether a server is up, or idle and ready to start",
            self.up.clone(),
        );
        registry.register(
            "mcpgw_scan_findings",
            "Tool-poisoning findings in what the servers list now, by server, rule, severity and action (blocked or warned)",
            self.findings.clone(),
        );
        registry.register(
            "mcpgw_scan_result_findings",
            "Tool-poisoning findings in tool results, by server, rule, severity and action",
            self.result_findings.clone(),
        );
        registry.register(
            "mcpgw_catalog_reloads",
            "Catalog reloads (file change or SIGHUP), by result: applied, or refused with the old catalog kept",
            self.reloads.clone(),
        );
        registry.register(
            "mcpgw_refused_requests",
            "Client requests refused before or at forwarding, by reason (the audit trail's decision)",
            self.refused.clone(),
        );
        registry.register(
            "mcpgw_server_start_seconds",
            "Time from a server's container create to its MCP session and lists, per start",
            self.starts.clone(),
        );
        registry.register(
            "mcpgw_server_calls_in_flight",
            "Requests a server's shared backend is answering now",
            self.in_flight.clone(),
        );
        registry.register(
            "mcpgw_server_calls_queued",
            "Requests waiting for a place in flight at a server's shared backend",
            self.queued.clone(),
        );
        registry.register(
            "mcpgw_result_cache_hits",
            "tools/call answered from the result cache, by server and tool",
            self.cache_hits.clone(),
        );
        registry.register(
            "mcpgw_result_cache_misses",
            "tools/call of a cached tool that the cache could not answer, by server and tool",
            self.cache_misses.clone(),
        );
        registry.register(
            "mcpgw_result_cache_bytes",
            "Bytes of tool results the result cache holds",
            self.cache_bytes.clone(),
        );
    }

    /// A request refused for `reason`.
    /// A catalog reload was `applied` or `refused`.
    pub(crate) fn reloaded(&self, result: &'static str) {
        self.reloads.get_or_create(&ReloadLabels { result }).inc();
    }

    pub(crate) fn refused(&self, reason: &str) {
        self.refused
            .get_or_create(&RefusedLabels {
                reason: reason.to_string(),
            })
            .inc();
    }

    /// Server `server` took `took` to start.
    pub(crate) fn started(&self, server: &str, took: Duration) {
        self.starts
            .get_or_create(&ServerLabels {
                server: server.to_string(),
            })
            .observe(took.as_secs_f64());
    }

    /// One `tools/call` to `tool` of `server` that took `took`.
    pub(crate) fn call(&self, server: &str, tool: &str, ok: bool, took: Duration) {
        let tool = ToolLabels {
            server: server.to_string(),
            tool: tool.to_string(),
        };
        self.durations
            .get_or_create(&tool)
            .observe(took.as_secs_f64());
        let outcome = if ok { Outcome::Ok } else { Outcome::Error };
        self.calls
            .get_or_create(&CallLabels { tool, outcome })
            .inc();
    }

    /// Server `server` failed (and will be restarted, or its circuit opens).
    pub(crate) fn failure(&self, server: &str) {
        self.failures
            .get_or_create(&ServerLabels {
                server: server.to_string(),
            })
            .inc();
    }

    /// The findings in the lists now (replacing the previous ones).
    pub(crate) fn set_findings(&self, findings: &[Screened]) {
        self.findings.clear();
        for screened in findings {
            self.findings.get_or_create(&labels(screened)).inc();
        }
    }

    /// A finding in a tool result.
    pub(crate) fn result_finding(&self, screened: &Screened) {
        self.result_findings.get_or_create(&labels(screened)).inc();
    }

    /// A lookup in the result cache for `tool` of `server`, found or not.
    pub(crate) fn cache_lookup(&self, server: &str, tool: &str, hit: bool) {
        let labels = ToolLabels {
            server: server.to_string(),
            tool: tool.to_string(),
        };
        let family = if hit {
            &self.cache_hits
        } else {
            &self.cache_misses
        };
        family.get_or_create(&labels).inc();
    }

    /// The result cache holds `bytes`.
    pub(crate) fn set_cache_bytes(&self, bytes: u64) {
        self.cache_bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    /// Server `server` has `in_flight` requests in flight and `queued`
    /// waiting.
    pub(crate) fn set_load(&self, server: &str, in_flight: usize, queued: usize) {
        let labels = ServerLabels {
            server: server.to_string(),
        };
        let gauge = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        self.in_flight.get_or_create(&labels).set(gauge(in_flight));
        self.queued.get_or_create(&labels).set(gauge(queued));
    }

    /// Server `server` left the catalog: its state gauges go, rather than
    /// stay at what they last said.
    pub(crate) fn forget_server(&self, server: &str) {
        let labels = ServerLabels {
            server: server.to_string(),
        };
        self.up.remove(&labels);
        self.in_flight.remove(&labels);
        self.queued.remove(&labels);
    }

    /// Server `server` is up (or idle and ready to start), or not.
    pub(crate) fn set_up(&self, server: &str, up: bool) {
        self.up
            .get_or_create(&ServerLabels {
                server: server.to_string(),
            })
            .set(i64::from(up));
    }
}

fn labels(screened: &Screened) -> FindingLabels {
    FindingLabels {
        server: screened.finding.server.clone(),
        rule: screened.finding.rule.to_string(),
        severity: screened.finding.severity.to_string(),
        action: screened.action.as_str().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_counts_and_cumulative_buckets() {
        let metrics = Metrics::default();
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        metrics.call("time", "now", true, Duration::from_micros(500));
        metrics.call("time", "now", false, Duration::from_millis(70));
        metrics.failure("git");
        metrics.set_up("git", false);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
        for line in [
            "mcpgw_tool_calls_total{server=\"time\",tool=\"now\",outcome=\"ok\"} 1",
            "mcpgw_tool_calls_total{server=\"time\",tool=\"now\",outcome=\"error\"} 1",
            "mcpgw_tool_call_duration_seconds_bucket{le=\"0.001\",server=\"time\",tool=\"now\"} 1",
            "mcpgw_tool_call_duration_seconds_bucket{le=\"0.05\",server=\"time\",tool=\"now\"} 1",
            "mcpgw_tool_call_duration_seconds_bucket{le=\"0.1\",server=\"time\",tool=\"now\"} 2",
            "mcpgw_tool_call_duration_seconds_bucket{le=\"+Inf\",server=\"time\",tool=\"now\"} 2",
            "mcpgw_tool_call_duration_seconds_count{server=\"time\",tool=\"now\"} 2",
            "mcpgw_server_failures_total{server=\"git\"} 1",
            "mcpgw_server_up{server=\"git\"} 0",
        ] {
            assert!(out.lines().any(|l| l == line), "missing {line} in\n{out}");
        }
    }
}
