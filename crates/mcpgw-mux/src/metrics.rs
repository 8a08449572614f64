//! Counters the mux keeps for `/metrics`: calls and their latency per
//! server and tool, and server failures, rendered in the Prometheus text
//! format.

use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

/// Upper bounds of the latency histogram buckets, in seconds.
const BUCKETS: [f64; 11] = [
    0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0,
];

#[derive(Debug, Default, Clone)]
struct Calls {
    ok: u64,
    error: u64,
    /// Calls at or under each bound (not cumulative; summed when rendered).
    buckets: [u64; BUCKETS.len()],
    sum: f64,
}

/// The mux's counters.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    /// By server, then tool: a call looks its entry up without allocating.
    calls: Mutex<BTreeMap<String, BTreeMap<String, Calls>>>,
    failures: Mutex<BTreeMap<String, u64>>,
}

impl Metrics {
    /// One `tools/call` to `tool` of `server` that took `took`.
    pub(crate) fn call(&self, server: &str, tool: &str, ok: bool, took: Duration) {
        let mut calls = self.calls.lock();
        if !calls
            .get(server)
            .is_some_and(|tools| tools.contains_key(tool))
        {
            calls
                .entry(server.to_string())
                .or_default()
                .insert(tool.to_string(), Calls::default());
        }
        let Some(entry) = calls.get_mut(server).and_then(|tools| tools.get_mut(tool)) else {
            return;
        };
        if ok {
            entry.ok += 1;
        } else {
            entry.error += 1;
        }
        let seconds = took.as_secs_f64();
        entry.sum += seconds;
        if let Some(bucket) = BUCKETS.iter().position(|&b| seconds <= b) {
            entry.buckets[bucket] += 1;
        }
    }

    /// Server `server` failed (and will be restarted, or its circuit opens).
    pub(crate) fn failure(&self, server: &str) {
        *self.failures.lock().entry(server.to_string()).or_default() += 1;
    }

    /// The counters in the Prometheus text format.
    pub(crate) fn render(&self, out: &mut String) {
        let calls: Vec<((String, String), Calls)> = self
            .calls
            .lock()
            .iter()
            .flat_map(|(server, tools)| {
                tools
                    .iter()
                    .map(|(tool, c)| ((server.clone(), tool.clone()), c.clone()))
            })
            .collect();
        let _ = writeln!(
            out,
            "# HELP mcpgw_tool_calls_total tools/call requests forwarded, by server, tool and outcome.\n# TYPE mcpgw_tool_calls_total counter"
        );
        for ((server, tool), c) in &calls {
            for (outcome, n) in [("ok", c.ok), ("error", c.error)] {
                let _ = writeln!(
                    out,
                    "mcpgw_tool_calls_total{{server=\"{}\",tool=\"{}\",outcome=\"{outcome}\"}} {n}",
                    escape(server),
                    escape(tool)
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP mcpgw_tool_call_duration_seconds Time from a call's arrival to its answer.\n# TYPE mcpgw_tool_call_duration_seconds histogram"
        );
        for ((server, tool), c) in &calls {
            let labels = format!("server=\"{}\",tool=\"{}\"", escape(server), escape(tool));
            let mut cumulative = 0;
            for (bound, n) in BUCKETS.iter().zip(c.buckets) {
                cumulative += n;
                let _ = writeln!(
                    out,
                    "mcpgw_tool_call_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {cumulative}"
                );
            }
            let total = c.ok + c.error;
            let _ = writeln!(
                out,
                "mcpgw_tool_call_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {total}\nmcpgw_tool_call_duration_seconds_sum{{{labels}}} {}\nmcpgw_tool_call_duration_seconds_count{{{labels}}} {total}",
                c.sum
            );
        }
        let _ = writeln!(
            out,
            "# HELP mcpgw_server_failures_total Times a server failed to start or stopped answering.\n# TYPE mcpgw_server_failures_total counter"
        );
        for (server, n) in self.failures.lock().iter() {
            let _ = writeln!(
                out,
                "mcpgw_server_failures_total{{server=\"{}\"}} {n}",
                escape(server)
            );
        }
    }
}

/// A label value with `\`, `"` and line breaks escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counts_and_cumulative_buckets() {
        let metrics = Metrics::default();
        metrics.call("time", "now", true, Duration::from_micros(500));
        metrics.call("time", "now", false, Duration::from_millis(70));
        metrics.failure("git");
        let mut out = String::new();
        metrics.render(&mut out);
        for line in [
            "mcpgw_tool_calls_total{server=\"time\",tool=\"now\",outcome=\"ok\"} 1",
            "mcpgw_tool_calls_total{server=\"time\",tool=\"now\",outcome=\"error\"} 1",
            "mcpgw_tool_call_duration_seconds_bucket{server=\"time\",tool=\"now\",le=\"0.001\"} 1",
            "mcpgw_tool_call_duration_seconds_bucket{server=\"time\",tool=\"now\",le=\"0.05\"} 1",
            "mcpgw_tool_call_duration_seconds_bucket{server=\"time\",tool=\"now\",le=\"0.1\"} 2",
            "mcpgw_tool_call_duration_seconds_bucket{server=\"time\",tool=\"now\",le=\"+Inf\"} 2",
            "mcpgw_tool_call_duration_seconds_count{server=\"time\",tool=\"now\"} 2",
            "mcpgw_server_failures_total{server=\"git\"} 1",
        ] {
            assert!(out.lines().any(|l| l == line), "missing {line} in\n{out}");
        }
    }
}
