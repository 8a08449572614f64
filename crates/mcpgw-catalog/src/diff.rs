//! What changed between the catalog in force and a newly loaded one, so a
//! reload can be applied as a diff: which servers to start, stop, replace or
//! update in place, and whether gateway-wide settings changed.
//!
//! Pure: it compares two validated [`Catalog`]s and touches nothing. Acting
//! on the [`Diff`] (stopping containers, swapping limits) is the gateway's.
//!
//! Every field of [`ServerSpec`] and [`GatewaySpec`] belongs to exactly one
//! group below. Both are destructured without `..`, so a field added to
//! either does not compile until it is put in a group here.

use std::collections::{BTreeMap, BTreeSet};

use crate::spec::{Catalog, GatewaySpec, ServerSpec};

/// How a newly loaded catalog differs from the one in force, server by
/// server (matched by name).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diff {
    /// Servers only the new catalog has: indices into the new catalog's
    /// `servers`.
    pub added: Vec<usize>,
    /// Servers only the old catalog has: indices into the old one.
    pub removed: Vec<usize>,
    /// Servers whose container-relevant settings changed, so their
    /// container (or remote session) must be replaced: (old index, new
    /// index).
    pub replaced: Vec<(usize, usize)>,
    /// Servers where only gateway-side settings changed, updated in place:
    /// (old, new).
    pub updated: Vec<(usize, usize)>,
    /// Servers identical in both: (old, new).
    pub unchanged: Vec<(usize, usize)>,
    /// Whether gateway-wide settings applied in place changed: profiles,
    /// `gateway.limits`, `gateway.tool_view` (`tool_mode`, `pinned`),
    /// `gateway.scan`, `gateway.scan_results`, `gateway.call_timeout`,
    /// `gateway.max_call_timeout`, `gateway.cache_bytes`,
    /// `gateway.init_timeout`, `gateway.restart`, `gateway.health`.
    pub gateway: bool,
    /// Gateway settings that changed but take effect only at the next
    /// start, by catalog key: `"gateway.separator"`, `"gateway.audit"`,
    /// `"gateway.tracing"`, `"gateway.auth"`, `"gateway.redaction"`.
    pub needs_restart: Vec<&'static str>,
}

impl Diff {
    /// Whether nothing at all changed (no server added, removed, replaced
    /// or updated, `gateway` false, `needs_restart` empty).
    pub fn is_empty(&self) -> bool {
        self.added.is_empty()
            && self.removed.is_empty()
            && self.replaced.is_empty()
            && self.updated.is_empty()
            && !self.gateway
            && self.needs_restart.is_empty()
    }

    /// One-line summary for the log: `+github ~git ~fetch(replaced) -time`
    /// (added by new name, updated, replaced marked `(replaced)`, removed by
    /// old name; in that order, each group in catalog order), then
    /// `~gateway` when `gateway` is true and `~KEY(restart)` for each key of
    /// `needs_restart`; "no change" when empty.
    pub fn summary(&self, old: &Catalog, new: &Catalog) -> String {
        if self.is_empty() {
            return "no change".to_string();
        }
        let name = |catalog: &Catalog, i: usize| catalog.servers[i].name.as_str().to_string();
        let mut parts: Vec<String> = Vec::new();
        parts.extend(self.added.iter().map(|&i| format!("+{}", name(new, i))));
        parts.extend(
            self.updated
                .iter()
                .map(|&(_, i)| format!("~{}", name(new, i))),
        );
        parts.extend(
            self.replaced
                .iter()
                .map(|&(_, i)| format!("~{}(replaced)", name(new, i))),
        );
        parts.extend(self.removed.iter().map(|&i| format!("-{}", name(old, i))));
        if self.gateway {
            parts.push("~gateway".to_string());
        }
        parts.extend(
            self.needs_restart
                .iter()
                .map(|key| format!("~{key}(restart)")),
        );
        parts.join(" ")
    }
}

/// Compares `old` (in force) with `new`, server by server.
///
/// Servers present in both are listed in the new catalog's order; a
/// rename is a removal and an addition, since the name is the match key.
pub fn diff(old: &Catalog, new: &Catalog) -> Diff {
    // `path`, `sha256` and `lock` say where the catalog came from, not
    // what it sets: a reload always has a new `sha256`, and the lockfile's
    // pins are compared on each server (`pins`).
    let Catalog {
        path: _,
        sha256: _,
        gateway,
        servers: _,
        profiles,
        lock: _,
    } = new;
    let old_by_name: BTreeMap<&str, usize> = old
        .servers
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.as_str(), i))
        .collect();
    let mut out = Diff::default();
    for (new_index, server) in new.servers.iter().enumerate() {
        let Some(&old_index) = old_by_name.get(server.name.as_str()) else {
            out.added.push(new_index);
            continue;
        };
        let pair = (old_index, new_index);
        match change(&old.servers[old_index], server) {
            Change::Container => out.replaced.push(pair),
            Change::Gateway => out.updated.push(pair),
            Change::None => out.unchanged.push(pair),
        }
    }
    let new_names: BTreeSet<&str> = new.servers.iter().map(|s| s.name.as_str()).collect();
    out.removed = old
        .servers
        .iter()
        .enumerate()
        .filter(|(_, s)| !new_names.contains(s.name.as_str()))
        .map(|(i, _)| i)
        .collect();
    out.gateway = *profiles != old.profiles || in_place_changed(&old.gateway, gateway);
    out.needs_restart = restart_keys(&old.gateway, gateway);
    out
}

/// The most a server's change asks of the gateway.
enum Change {
    /// Its container (or remote session) must be replaced.
    Container,
    /// Only the gateway's handling of it changes.
    Gateway,
    /// Nothing.
    None,
}

/// How server `new` differs from `old`, which has the same name.
fn change(old: &ServerSpec, new: &ServerSpec) -> Change {
    let ServerSpec {
        // The match key: equal by construction.
        name: _,
        // Container-relevant: what the container (or the remote session)
        // is created with.
        image,
        remote,
        image_digest,
        pull,
        entrypoint,
        command,
        env,
        secrets,
        network,
        resources,
        user,
        volumes,
        lifecycle,
        scope,
        // Gateway-side: how the gateway filters, bounds and checks what
        // passes to and from the backend.
        tools,
        relay,
        call_timeout,
        concurrency,
        scan,
        scan_results,
        limits,
        cache,
        pins,
    } = new;
    let container = *image != old.image
        || *remote != old.remote
        || *image_digest != old.image_digest
        || *pull != old.pull
        || *entrypoint != old.entrypoint
        || *command != old.command
        || *env != old.env
        || *secrets != old.secrets
        || *network != old.network
        || *resources != old.resources
        || *user != old.user
        || *volumes != old.volumes
        || *lifecycle != old.lifecycle
        || *scope != old.scope;
    // `Arc`'s equality compares the lockfile pins by value.
    let gateway = *tools != old.tools
        || *relay != old.relay
        || *call_timeout != old.call_timeout
        || *concurrency != old.concurrency
        || *scan != old.scan
        || *scan_results != old.scan_results
        || *limits != old.limits
        || *cache != old.cache
        || *pins != old.pins;
    if container {
        Change::Container
    } else if gateway {
        Change::Gateway
    } else {
        Change::None
    }
}

/// Whether the gateway-wide settings applied in place differ.
fn in_place_changed(old: &GatewaySpec, new: &GatewaySpec) -> bool {
    let GatewaySpec {
        limits,
        tool_view,
        scan,
        scan_results,
        call_timeout,
        max_call_timeout,
        cache_bytes,
        init_timeout,
        restart,
        health,
        // Applied only at the next start: see `restart_keys`.
        separator: _,
        audit: _,
        tracing: _,
        auth: _,
        redaction: _,
    } = new;
    *limits != old.limits
        || *tool_view != old.tool_view
        || *scan != old.scan
        || *scan_results != old.scan_results
        || *call_timeout != old.call_timeout
        || *max_call_timeout != old.max_call_timeout
        || *cache_bytes != old.cache_bytes
        || *init_timeout != old.init_timeout
        || *restart != old.restart
        || *health != old.health
}

/// The catalog keys of the gateway settings that differ and take effect
/// only at the next start, in the order the struct declares them.
fn restart_keys(old: &GatewaySpec, new: &GatewaySpec) -> Vec<&'static str> {
    let GatewaySpec {
        separator,
        redaction,
        audit,
        tracing,
        auth,
        // Applied in place: see `in_place_changed`.
        limits: _,
        tool_view: _,
        scan: _,
        scan_results: _,
        call_timeout: _,
        max_call_timeout: _,
        cache_bytes: _,
        init_timeout: _,
        restart: _,
        health: _,
    } = new;
    [
        ("gateway.separator", *separator != old.separator),
        ("gateway.redaction", *redaction != old.redaction),
        ("gateway.audit", *audit != old.audit),
        ("gateway.tracing", *tracing != old.tracing),
        ("gateway.auth", *auth != old.auth),
    ]
    .into_iter()
    .filter_map(|(key, changed)| changed.then_some(key))
    .collect()
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use super::*;

    fn catalog(yaml: &str) -> Catalog {
        crate::parse(yaml, Path::new("cat.yaml"), Path::new("/"))
            .unwrap_or_else(|e| panic!("{e}\nfor catalog:\n{yaml}"))
    }

    const BASE: &str = r"
version: 1
servers:
  git:
    image: mcpgw/git:dev
    command: [serve]
    env: { MODE: ro }
    tools:
      allow: [log, show]
  time:
    image: mcpgw/time:dev
  fetch:
    image: mcpgw/fetch:dev
";

    /// `diff(BASE, new)`, with the summary.
    #[track_caller]
    fn check(new: &str, expect: &Diff, summary: &str) {
        let (old, new) = (catalog(BASE), catalog(new));
        let got = diff(&old, &new);
        assert_eq!(&got, expect);
        assert_eq!(got.summary(&old, &new), summary);
    }

    #[test]
    fn identical_catalogs_are_empty() {
        let expect = Diff {
            unchanged: vec![(0, 0), (1, 1), (2, 2)],
            ..Diff::default()
        };
        check(BASE, &expect, "no change");
        assert!(expect.is_empty());
    }

    #[test]
    fn a_new_server_is_added() {
        let new = format!("{BASE}  github:\n    image: mcpgw/github:dev\n");
        let expect = Diff {
            added: vec![3],
            unchanged: vec![(0, 0), (1, 1), (2, 2)],
            ..Diff::default()
        };
        check(&new, &expect, "+github");
    }

    #[test]
    fn a_missing_server_is_removed() {
        let new = BASE.replace("  time:\n    image: mcpgw/time:dev\n", "");
        let expect = Diff {
            removed: vec![1],
            unchanged: vec![(0, 0), (2, 1)],
            ..Diff::default()
        };
        check(&new, &expect, "-time");
    }

    #[test]
    fn a_command_change_replaces() {
        let new = BASE.replace("command: [serve]", "command: [serve, --verbose]");
        let expect = Diff {
            replaced: vec![(0, 0)],
            unchanged: vec![(1, 1), (2, 2)],
            ..Diff::default()
        };
        check(&new, &expect, "~git(replaced)");
    }

    #[test]
    fn an_env_change_replaces() {
        let new = BASE.replace("MODE: ro", "MODE: rw");
        let expect = Diff {
            replaced: vec![(0, 0)],
            unchanged: vec![(1, 1), (2, 2)],
            ..Diff::default()
        };
        check(&new, &expect, "~git(replaced)");
    }

    #[test]
    fn an_allow_list_change_updates() {
        let new = BASE.replace("allow: [log, show]", "allow: [log, show, diff]");
        let expect = Diff {
            updated: vec![(0, 0)],
            unchanged: vec![(1, 1), (2, 2)],
            ..Diff::default()
        };
        check(&new, &expect, "~git");
    }

    #[test]
    fn a_glob_change_updates() {
        let old = catalog(&BASE.replace("allow: [log, show]", "allow: [\"get_*\"]"));
        let new = catalog(&BASE.replace("allow: [log, show]", "allow: [\"list_*\"]"));
        assert_eq!(diff(&old, &new).updated, vec![(0, 0)]);
        assert!(diff(&old, &old).is_empty());
    }

    #[test]
    fn concurrency_and_call_timeout_changes_update() {
        let with = |extra: &str| {
            BASE.replace(
                "    image: mcpgw/time:dev\n",
                &format!("    image: mcpgw/time:dev\n{extra}"),
            )
        };
        let expect = Diff {
            updated: vec![(1, 1)],
            unchanged: vec![(0, 0), (2, 2)],
            ..Diff::default()
        };
        check(
            &with("    concurrency: { in_flight: 4 }\n"),
            &expect,
            "~time",
        );
        check(&with("    call_timeout: 5s\n"), &expect, "~time");
    }

    #[test]
    fn order_alone_changes_nothing() {
        let new = r"
version: 1
servers:
  fetch:
    image: mcpgw/fetch:dev
  time:
    image: mcpgw/time:dev
  git:
    image: mcpgw/git:dev
    command: [serve]
    env: { MODE: ro }
    tools:
      allow: [log, show]
";
        let expect = Diff {
            unchanged: vec![(2, 0), (1, 1), (0, 2)],
            ..Diff::default()
        };
        check(new, &expect, "no change");
    }

    #[test]
    fn a_rename_removes_and_adds() {
        let new = BASE.replace("  time:", "  clock:");
        let expect = Diff {
            added: vec![1],
            removed: vec![1],
            unchanged: vec![(0, 0), (2, 2)],
            ..Diff::default()
        };
        check(&new, &expect, "+clock -time");
    }

    #[test]
    fn a_profiles_change_is_a_gateway_change() {
        let new = format!("{BASE}profiles:\n  ro:\n    tools: [\"git__*\"]\n");
        let expect = Diff {
            gateway: true,
            unchanged: vec![(0, 0), (1, 1), (2, 2)],
            ..Diff::default()
        };
        check(&new, &expect, "~gateway");
    }

    #[test]
    fn an_audit_change_needs_a_restart() {
        let new = format!("{BASE}gateway:\n  audit: {{ path: stderr }}\n");
        let expect = Diff {
            needs_restart: vec!["gateway.audit"],
            unchanged: vec![(0, 0), (1, 1), (2, 2)],
            ..Diff::default()
        };
        check(&new, &expect, "~gateway.audit(restart)");
    }

    #[test]
    fn lockfile_pins_compare_by_value() {
        let (mut old, mut new) = (catalog(BASE), catalog(BASE));
        let pins = crate::lock::ServerLock::default();
        old.servers[1].pins = Some(Arc::new(pins.clone()));
        new.servers[1].pins = Some(Arc::new(pins.clone()));
        assert!(diff(&old, &new).is_empty(), "equal pins in two Arcs");
        new.servers[1].pins = Some(Arc::new(crate::lock::ServerLock {
            image: Some(format!("sha256:{}", "a".repeat(64))),
            ..pins
        }));
        assert_eq!(diff(&old, &new).updated, vec![(1, 1)]);
    }

    #[test]
    fn a_mixed_change_summarises_in_order() {
        let new = r"
version: 1
gateway:
  call_timeout: 30s
servers:
  github:
    image: mcpgw/github:dev
  git:
    image: mcpgw/git:dev
    command: [serve]
    env: { MODE: ro }
    tools:
      allow: [log]
  fetch:
    image: mcpgw/fetch:dev
    network: bridge
";
        let expect = Diff {
            added: vec![0],
            removed: vec![1],
            replaced: vec![(2, 2)],
            updated: vec![(0, 1)],
            gateway: true,
            ..Diff::default()
        };
        check(new, &expect, "+github ~git ~fetch(replaced) -time ~gateway");
    }
}
