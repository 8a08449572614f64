//! What the `probe` tool reports: the confinement a process can observe from
//! inside its container, read from `/proc`, `/sys` and the filesystem.

use serde_json::{Value, json};

fn status_field(name: &str) -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .map(|v| v.trim().to_string())
}

fn writable(dir: &str) -> bool {
    let path = format!(
        "{}/.mcpgw-probe-{}",
        dir.trim_end_matches('/'),
        std::process::id()
    );
    let ok = std::fs::write(&path, b"probe").is_ok();
    let _ = std::fs::remove_file(&path);
    ok
}

fn first_readable(paths: &[&str]) -> Option<String> {
    paths
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_string())
}

fn interfaces() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir("/sys/class/net")
        .map(|dir| {
            dir.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    if names.is_empty() {
        // /sys may be hidden; /proc/net/dev lists interfaces too.
        if let Ok(dev) = std::fs::read_to_string("/proc/net/dev") {
            names = dev
                .lines()
                .skip(2)
                .filter_map(|l| l.split(':').next())
                .map(|n| n.trim().to_string())
                .collect();
        }
    }
    names.sort();
    names
}

/// The probe report as JSON.
pub(crate) fn report() -> Value {
    let uid = status_field("Uid")
        .and_then(|v| v.split_whitespace().next().map(str::to_string))
        .unwrap_or_default();
    let gid = status_field("Gid")
        .and_then(|v| v.split_whitespace().next().map(str::to_string))
        .unwrap_or_default();
    let socket_visible = ["/var/run/docker.sock", "/run/docker.sock"]
        .iter()
        .any(|p| std::path::Path::new(p).exists());
    json!({
        "uid": uid,
        "gid": gid,
        "cap_eff": status_field("CapEff"),
        "cap_prm": status_field("CapPrm"),
        "cap_bnd": status_field("CapBnd"),
        "no_new_privs": status_field("NoNewPrivs"),
        "root_writable": writable("/"),
        "tmp_writable": writable("/tmp"),
        "interfaces": interfaces(),
        "pids_max": first_readable(&["/sys/fs/cgroup/pids.max", "/sys/fs/cgroup/pids/pids.max"]),
        "memory_max": first_readable(&["/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"]),
        "cpu_max": first_readable(&["/sys/fs/cgroup/cpu.max", "/sys/fs/cgroup/cpu/cpu.cfs_quota_us"]),
        "docker_socket_visible": socket_visible,
        "pid": std::process::id(),
    })
}
