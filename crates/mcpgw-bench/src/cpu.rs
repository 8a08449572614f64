//! Where the machine's CPU goes during a run: every process's CPU time,
//! read from `/proc` before and after, and grouped by role (the client,
//! the endpoint under test, the Docker engine, the server, the rest).
//!
//! At concurrency 16 the two cores are saturated, so latency is CPU: by
//! Little's law p50 ≈ in-flight × CPU per call ÷ cores. These figures say
//! which process pays for each microsecond a call adds.

use std::collections::HashMap;

/// CPU time of every thread on the machine, in nanoseconds, by process.
#[derive(Debug, Default)]
pub(crate) struct Snapshot {
    by_pid: HashMap<u32, (String, u64)>,
}

/// The roles the CPU of a run is split into, in the order reported.
pub(crate) const ROLES: [&str; 5] = ["client", "gateway", "engine", "server", "other"];

impl Snapshot {
    /// Reads `/proc/*/task/*/schedstat` (time on CPU, nanoseconds).
    pub(crate) fn take() -> Self {
        let mut by_pid = HashMap::new();
        let Ok(processes) = std::fs::read_dir("/proc") else {
            return Self { by_pid };
        };
        for process in processes.flatten() {
            let Some(pid) = process.file_name().to_str().and_then(|s| s.parse().ok()) else {
                continue;
            };
            let path = process.path();
            let Ok(comm) = std::fs::read_to_string(path.join("comm")) else {
                continue;
            };
            let Ok(tasks) = std::fs::read_dir(path.join("task")) else {
                continue;
            };
            let ns = tasks
                .flatten()
                .filter_map(|task| std::fs::read_to_string(task.path().join("schedstat")).ok())
                .filter_map(|stat| stat.split_whitespace().next()?.parse::<u64>().ok())
                .sum();
            by_pid.insert(pid, (comm.trim().to_string(), ns));
        }
        Self { by_pid }
    }

    /// CPU used since `before`, in microseconds, by role: `client` is this
    /// process, `gateway` is `gateway` (the endpoint under test, if any),
    /// `engine` dockerd and containerd with their shims, `server` the test
    /// server. Processes that began or ended in between count from zero or
    /// not at all.
    pub(crate) fn since(&self, before: &Self, gateway: Option<u32>) -> [f64; 5] {
        let me = std::process::id();
        let mut roles = [0.0; 5];
        for (pid, (comm, ns)) in &self.by_pid {
            let was = before.by_pid.get(pid).map_or(0, |(_, ns)| *ns);
            let role = if *pid == me {
                0
            } else if Some(*pid) == gateway {
                1
            } else if comm.starts_with("dockerd") || comm.starts_with("containerd") {
                2
            } else if comm.starts_with("mcpgw-testserve") {
                3
            } else {
                4
            };
            #[allow(clippy::cast_precision_loss)]
            let us = ns.saturating_sub(was) as f64 / 1e3;
            roles[role] += us;
        }
        roles
    }
}
