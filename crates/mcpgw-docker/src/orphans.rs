//! Containers whose gateway is gone. Every container carries its gateway's
//! host, pid and start time; a container is an orphan when that gateway runs
//! on this host and the process with that pid is gone, or is a different
//! process that started at another time.
//!
//! Containers of gateways on other hosts (or in other pid namespaces, such
//! as a gateway inside a container) are listed but never judged orphans.

use std::path::Path;

/// The host name this gateway labels its containers with.
pub(crate) fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

/// Whether the gateway that labelled a container is still running.
pub(crate) fn gateway_alive(pid: u32, started: u64) -> bool {
    let Some(start) = process_start_epoch(pid) else {
        return false;
    };
    // Clock ticks make the start time exact to 10 ms; allow for rounding
    // and the gap between process start and the gateway reading its clock.
    start.abs_diff(started) <= 5
}

/// When process `pid` started, in seconds since the epoch.
pub(crate) fn process_start_epoch(pid: u32) -> Option<u64> {
    let stat =
        std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("stat")).ok()?;
    // The command name (field 2) may contain spaces; fields resume after ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let start_ticks: u64 = rest.split_whitespace().nth(19)?.parse().ok()?;
    let boot: u64 = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    // USER_HZ is 100 on every Linux platform Docker runs on.
    Some(boot + start_ticks / 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_made_up_one_is_not() {
        let me = std::process::id();
        let started = process_start_epoch(me).expect("our own start time");
        assert!(gateway_alive(me, started));
        assert!(
            !gateway_alive(me, started - 3600),
            "same pid, another start time"
        );
        assert!(!gateway_alive(u32::MAX - 1, started));
    }
}
