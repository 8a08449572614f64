//! Where the machine's CPU goes during a run: every process's CPU time,
//! read from `/proc` before and after, and grouped by role (the client,
//! the endpoint under test and its children, the Docker engine, the
//! server, which is whatever runs in a container, and the rest).
//!
//! At concurrency 16 the two cores are saturated, so latency is CPU: by
//! Little's law p50 ≈ in-flight × CPU per call ÷ cores. These figures say
//! which process pays for each microsecond a call adds.

use std::collections::HashMap;

/// CPU time of every thread on the machine, in nanoseconds, by process.
#[derive(Debug, Default)]
pub(crate) struct Snapshot {
    by_pid: HashMap<u32, Process>,
}

/// What a snapshot knows of one process.
#[derive(Debug)]
struct Process {
    comm: String,
    parent: u32,
    contained: bool,
    ns: u64,
}

/// The roles the CPU of a run is split into, in the order reported.
pub(crate) const ROLES: [&str; 5] = ["client", "process in between", "engine", "server", "other"];

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
            // The parent is the second field after the parenthesized name.
            let parent = std::fs::read_to_string(path.join("stat"))
                .ok()
                .and_then(|stat| {
                    let (_, rest) = stat.rsplit_once(')')?;
                    rest.split_whitespace().nth(1)?.parse().ok()
                })
                .unwrap_or(0);
            let contained = std::fs::read_to_string(path.join("cgroup"))
                .is_ok_and(|c| c.contains("/docker/") || c.contains("/docker-"));
            let comm = comm.trim().to_string();
            by_pid.insert(
                pid,
                Process {
                    comm,
                    parent,
                    contained,
                    ns,
                },
            );
        }
        Self { by_pid }
    }

    /// CPU used since `before`, in microseconds, by role: `client` is this
    /// process, `gateway` is `gateway` (the endpoint under test, if any)
    /// and its descendants, `engine` dockerd and containerd with their
    /// shims, `server` every process in a container. Processes that began
    /// or ended in between count from zero or not at all.
    pub(crate) fn since(&self, before: &Self, gateway: Option<u32>) -> [f64; 5] {
        let me = std::process::id();
        let mut roles = [0.0; 5];
        for (pid, process) in &self.by_pid {
            let was = before.by_pid.get(pid).map_or(0, |p| p.ns);
            let role = if *pid == me {
                0
            } else if gateway.is_some_and(|g| self.descends(*pid, g)) {
                1
            } else if process.comm.starts_with("dockerd") || process.comm.starts_with("containerd")
            {
                2
            } else if process.contained {
                3
            } else {
                4
            };
            #[allow(clippy::cast_precision_loss)]
            let us = process.ns.saturating_sub(was) as f64 / 1e3;
            roles[role] += us;
        }
        roles
    }

    /// `pid` is `ancestor` or one of its descendants.
    fn descends(&self, mut pid: u32, ancestor: u32) -> bool {
        // Bounded: a parent chain is short, and a cycle cannot be.
        for _ in 0..64 {
            if pid == ancestor {
                return true;
            }
            match self.by_pid.get(&pid) {
                Some(process) if process.parent > 1 => pid = process.parent,
                _ => return false,
            }
        }
        false
    }
}
