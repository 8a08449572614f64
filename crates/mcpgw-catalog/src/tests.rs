//! Catalog validation, one case per rule: `check_err(yaml, expected)` pins the
//! position and the exact message a user sees.

use std::path::{Path, PathBuf};

use super::*;

const HEAD: &str = "version: 1\nservers:\n  s:\n    image: img:dev\n";

fn parse_in(dir: &Path, yaml: &str) -> Result<Catalog, CatalogError> {
    parse(yaml, Path::new("cat.yaml"), dir)
}

#[track_caller]
fn check_err(yaml: &str, expect: &str) {
    let dir = tempfile::tempdir().unwrap();
    let err = parse_in(dir.path(), yaml).expect_err("catalog should be rejected");
    assert_eq!(err.to_string(), expect, "for catalog:\n{yaml}");
}

#[track_caller]
fn check_ok(yaml: &str) -> Catalog {
    let dir = tempfile::tempdir().unwrap();
    parse_in(dir.path(), yaml).unwrap_or_else(|e| panic!("{e}\nfor catalog:\n{yaml}"))
}

#[test]
fn minimal_catalog_has_safe_defaults() {
    let cat = check_ok(HEAD);
    assert_eq!(cat.gateway.separator.as_str(), "__");
    assert_eq!(cat.gateway.call_timeout.as_secs(), 60);
    let s = &cat.servers[0];
    assert_eq!(s.name.as_str(), "s");
    assert_eq!(s.network, Network::None);
    assert_eq!(s.resources, Resources::default());
    assert_eq!(s.pull, PullPolicy::Missing);
    assert!(!s.relay.sampling && s.relay.elicitation && s.relay.roots);
    assert!(s.tools.permits("anything"));
    assert!(s.relaxations().is_empty());
}

#[test]
fn full_catalog_parses() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    let yaml = r#"
version: 1
gateway:
  separator: "-x-"
  call_timeout: 90s
  init_timeout: 500ms
servers:
  time:
    image: mcpgw/time:dev
    pull: never
    entrypoint: ["python", "-m", "mcp_server_time"]
    command: ["--local-timezone", "UTC"]
    env: { TZ: UTC, PORT: 8080, DEBUG: true }
    secrets: { GITHUB_TOKEN: github.token }
    tools:
      allow: [get_*, convert_time]
      deny: [convert_time]
    network: bridge
    resources: { memory: 256m, cpus: 0.5, pids: 64 }
    user: "1000:1000"
    volumes: ["./data:/data", "./data:/rw:rw"]
    relay: { sampling: true, elicitation: false }
    privileged: false
  git:
    image: mcpgw/git:dev
"#;
    let cat = parse_in(dir.path(), yaml).unwrap();
    assert_eq!(cat.gateway.separator.as_str(), "-x-");
    assert_eq!(cat.gateway.init_timeout.as_millis(), 500);
    let names: Vec<_> = cat.servers.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["time", "git"]);
    let t = &cat.servers[0];
    assert_eq!(t.env["PORT"], "8080");
    assert_eq!(t.env["DEBUG"], "true");
    assert_eq!(t.secrets["GITHUB_TOKEN"].name.as_str(), "github.token");
    assert_eq!(t.secrets["GITHUB_TOKEN"].delivery, Delivery::Env);
    assert!(t.tools.permits("get_current_time"));
    assert!(!t.tools.permits("convert_time"), "deny applies after allow");
    assert!(!t.tools.permits("other"));
    assert_eq!(t.resources.memory_bytes, 256 << 20);
    assert_eq!(t.resources.nano_cpus, 500_000_000);
    assert_eq!(t.resources.pids, 64);
    let data = dir.path().join("data").canonicalize().unwrap();
    assert_eq!(t.volumes[0].host, data);
    assert!(t.volumes[0].read_only, "volumes are read-only unless :rw");
    assert!(!t.volumes[1].read_only);
    assert!(t.relay.sampling && !t.relay.elicitation && t.relay.roots);
    assert_eq!(
        t.relaxations(),
        [
            "network: bridge (the widest relaxation: the whole internet and the LAN)".to_string(),
            format!("writable volume: {}:/rw:rw", data.display()),
            "relay.sampling: true".to_string(),
        ]
    );
}

#[test]
fn rejects_structure_errors() {
    check_err(
        "version: 1\nservers:\n  s:\n    image: a\n    imagee: b\n",
        "cat.yaml:5:5: servers.s: unknown field `imagee`, expected one of `image`, `url`, `headers`, `oauth`, `allow_private`, `pull`, `entrypoint`, `command`, `env`, `secrets`, `tools`, `network`, `resources`, `user`, `volumes`, `relay`, `call_timeout`, `concurrency`, `lifecycle`, `idle_timeout`, `scope`, `scan`, `scan_results`, `limits`, `cache`, `privileged`, `pid`, `ipc`, `cap_add`, `devices`; fix: remove the key or correct its spelling; the catalog reference is in README.md",
    );
    check_err(
        "version: 1\nextra: 1\nservers: {}\n",
        "cat.yaml:2:1: unknown field `extra`, expected one of `version`, `gateway`, `servers`, `profiles`; fix: remove the key or correct its spelling; the catalog reference is in README.md\n\
         error: cat.yaml:3:10: servers: `servers` is empty; fix: add at least one server; see catalog/demo.yaml\n\
         error: 2 problems in this catalog; nothing was started",
    );
    check_err(
        "version: 1\nservers:\n  s:\n    image: a\n    image: b\n",
        "cat.yaml:4:5: servers.s: duplicate field `image`; fix: keep only one of them",
    );
    check_err(
        "version: 1\nservers:\n  s:\n    image: a\n  s:\n    image: b\n",
        "cat.yaml:3:3: servers: duplicate key `s`; fix: keep only one of them",
    );
    check_err(
        "version: 1\nservers:\n  s:\n    image: a\n    env: { A: 1, A: 2 }\n",
        "cat.yaml:5:10: servers.s.env: duplicate key `A`; fix: keep only one of them",
    );
    check_err(
        "version: 1\nservers:\n  s:\n    pull: never\n",
        "cat.yaml:4:5: servers.s: the server has neither `image` nor `url`; fix: add `image` (a container server) or `url` (a remote server's MCP endpoint)",
    );
    check_err(
        "version: 2\nservers:\n  s:\n    image: a\n",
        "cat.yaml:1:10: version: catalog version `2` is not supported; fix: write `version: 1`",
    );
    check_err(
        "version: 1\nservers: {}\n",
        "cat.yaml:2:10: servers: `servers` is empty; fix: add at least one server; see catalog/demo.yaml",
    );
    check_err(
        "version: 1\nservers:\n  s: {image: a\n",
        "cat.yaml:4:1: did not find expected ',' or '}' at line 4 column 1, while parsing a flow mapping; fix: correct the YAML syntax at this position",
    );
}

#[test]
fn secrets_come_as_names_or_as_files() {
    let cat = check_ok(
        "version: 1\ngateway:\n  redaction: block\nservers:\n  s:\n    image: a\n    secrets:\n      TOKEN: api.token\n      KEY_FILE: { secret: tls.key, as: file }\n      AGAIN: { secret: api.token }\n",
    );
    assert_eq!(cat.gateway.redaction, Redaction::Block);
    let s = &cat.servers[0];
    assert_eq!(s.secrets["TOKEN"].delivery, Delivery::Env);
    assert_eq!(s.secrets["TOKEN"].file_path(), None);
    assert_eq!(s.secrets["KEY_FILE"].name.as_str(), "tls.key");
    assert_eq!(
        s.secrets["KEY_FILE"].file_path().as_deref(),
        Some("/run/secrets/tls.key")
    );
    assert_eq!(s.secrets["AGAIN"].delivery, Delivery::Env);
    assert_eq!(
        check_ok("version: 1\nservers:\n  s:\n    image: a\n")
            .gateway
            .redaction,
        Redaction::Redact
    );
    let base = "version: 1\nservers:\n  s:\n    image: a\n    secrets:\n";
    for (entry, expect) in [
        (
            "      T: { secret: x, as: volume }\n",
            "cat.yaml:6:27: servers.s.secrets.T.as: secret delivery `volume` is not known; fix: use `as: env` (the default) or `as: file`",
        ),
        (
            "      T: { secret: x, mode: file }\n",
            "cat.yaml:6:23: servers.s.secrets.T: unknown field `mode`, expected `secret` or `as`; fix: remove the key or correct its spelling; the catalog reference is in README.md",
        ),
        (
            "      T: { as: file }\n",
            "cat.yaml:6:10: servers.s.secrets.T: missing field `secret`; fix: add the missing key",
        ),
        (
            "      T: { secret: 'a b', as: file }\n",
            "cat.yaml:6:20: servers.s.secrets.T.secret: secret name `a b` is not allowed; fix: use 1 to 128 characters of letters, digits, `.`, `_` and `-`",
        ),
    ] {
        check_err(&format!("{base}{entry}"), expect);
    }
    check_err(
        "version: 1\ngateway:\n  redaction: off\nservers:\n  s:\n    image: a\n",
        "cat.yaml:3:14: gateway.redaction: redaction `off` is not known; fix: use `redact` (the default) or `block`",
    );
}

#[test]
fn profiles_are_views_over_exposed_tool_names() {
    let cat = check_ok(
        "version: 1\nservers:\n  s:\n    image: a\nprofiles:\n  ci:\n    tools: [s__echo, 'time__*']\n  empty:\n    tools: []\n",
    );
    let ci = &cat.profiles["ci"];
    assert_eq!(ci.name, "ci");
    assert!(ci.permits("s__echo") && ci.permits("time__get_current_time"));
    assert!(!ci.permits("s__add"));
    assert!(!cat.profiles["empty"].permits("s__echo"));
    assert!(
        check_ok("version: 1\nservers:\n  s:\n    image: a\n")
            .profiles
            .is_empty()
    );
    let base = "version: 1\nservers:\n  s:\n    image: a\nprofiles:\n";
    for (entry, expect) in [
        (
            "  CI:\n    tools: [x]\n",
            "cat.yaml:6:3: profiles: profile name `CI` is not allowed; fix: use 1 to 32 characters of lowercase letters, digits and `-`",
        ),
        (
            "  ci:\n    tools: ['[x']\n",
            "cat.yaml:7:13: profiles.ci.tools[0]: tool pattern `[x` is not a valid glob: unclosed character class; missing ']'; fix: write a tool name, or a glob such as `get_*`",
        ),
        (
            "  ci:\n    servers: [s]\n",
            "cat.yaml:7:5: profiles.ci: unknown field `servers`, expected one of `tools`, `limits`, `tool_mode`, `pinned`; fix: remove the key or correct its spelling; the catalog reference is in README.md",
        ),
    ] {
        check_err(&format!("{base}{entry}"), expect);
    }
}

#[test]
fn rejects_bad_names_and_values() {
    let cases = [
        (
            "version: 1\nservers:\n  Bad_Name:\n    image: a\n",
            "cat.yaml:3:3: servers: server name `Bad_Name` is not allowed; fix: use 1 to 32 characters of lowercase letters, digits and `-`",
        ),
        (
            "version: 1\nservers:\n  abcdefghijklmnopqrstuvwxyz0123456:\n    image: a\n",
            "cat.yaml:3:3: servers: server name `abcdefghijklmnopqrstuvwxyz0123456` is not allowed; fix: use 1 to 32 characters of lowercase letters, digits and `-`",
        ),
        (
            "version: 1\ngateway:\n  separator: '.'\nservers:\n  s:\n    image: a\n",
            "cat.yaml:3:14: gateway.separator: separator `.` is not allowed; fix: use 1 to 8 characters of letters, digits, `_` and `-` (the default is `__`)",
        ),
        (
            "version: 1\ngateway:\n  call_timeout: 60\nservers:\n  s:\n    image: a\n",
            "cat.yaml:3:17: gateway.call_timeout: `60` is not a duration; fix: write a number with a unit, such as `500ms`, `30s`, `2m` or `1h`",
        ),
        (
            &format!("{HEAD}    resources: {{ memory: 1m }}\n"),
            "cat.yaml:5:26: servers.s.resources.memory: memory `1m` is below Docker's minimum of 6m; fix: give the container at least `6m`; most servers need `128m` or more",
        ),
        (
            &format!("{HEAD}    resources: {{ cpus: 0 }}\n"),
            "cat.yaml:5:24: servers.s.resources.cpus: `0` is not a CPU count; fix: write a number of CPUs from 0.01 to 1024, such as `1` or `0.5`",
        ),
        (
            &format!("{HEAD}    resources: {{ pids: 1000000 }}\n"),
            "cat.yaml:5:24: servers.s.resources.pids: pids limit `1000000` is out of range; fix: write a whole number from 8 to 65536 (the default is 256)",
        ),
        (
            &format!("{HEAD}    pull: sometimes\n"),
            "cat.yaml:5:11: servers.s.pull: pull policy `sometimes` is not known; fix: use `missing` (the default), `always` or `never`",
        ),
        (
            &format!("{HEAD}    env: {{ 1BAD: x }}\n"),
            "cat.yaml:5:12: servers.s.env: environment variable name `1BAD` is not allowed; fix: use letters, digits and `_`, not starting with a digit",
        ),
        (
            &format!("{HEAD}    secrets: {{ TOKEN: 'a b' }}\n"),
            "cat.yaml:5:23: servers.s.secrets.TOKEN: secret name `a b` is not allowed; fix: use 1 to 128 characters of letters, digits, `.`, `_` and `-`",
        ),
        (
            &format!("{HEAD}    env: {{ TOKEN: x }}\n    secrets: {{ TOKEN: t }}\n"),
            "cat.yaml:4:5: servers.s: `TOKEN` is set both in `env` and in `secrets`; fix: keep it in one of them",
        ),
        (
            &format!("{HEAD}    tools: {{ allow: ['get_[' ] }}\n"),
            "cat.yaml:5:22: servers.s.tools.allow[0]: tool pattern `get_[` is not a valid glob: unclosed character class; missing ']'; fix: write a tool name, or a glob such as `get_*`",
        ),
        (
            &format!("{HEAD}    user: 'me; rm'\n"),
            "cat.yaml:4:5: servers.s: user `me; rm` is not a user; fix: write `uid`, `uid:gid` or a user name, such as `1000:1000`",
        ),
    ];
    for (yaml, expect) in cases {
        check_err(yaml, expect);
    }
}

#[test]
fn rejects_privilege_escalations() {
    let cases = [
        (
            "    privileged: true\n",
            "cat.yaml:5:17: servers.s.privileged: `privileged` is not allowed: a privileged container has full access to the host; fix: remove `privileged`; mcpgw never runs a privileged container",
        ),
        (
            "    network: host\n",
            "cat.yaml:5:14: servers.s.network: network `host` is not allowed: it shares the host's network stack with the container; fix: use `bridge` for outbound access, `{ egress: [HOST, ...] }` for a few hosts, or a named Docker network",
        ),
        (
            "    network: 'container:db'\n",
            "cat.yaml:5:14: servers.s.network: network `container:db` is not allowed: it joins another container's network namespace; fix: use `bridge` or a named Docker network",
        ),
        (
            "    pid: host\n",
            "cat.yaml:5:10: servers.s.pid: sharing the host's pid or ipc namespace is not allowed: it lets the container see and signal host processes; fix: remove the key; every container gets private namespaces",
        ),
        (
            "    ipc: host\n",
            "cat.yaml:5:10: servers.s.ipc: sharing the host's pid or ipc namespace is not allowed: it lets the container see and signal host processes; fix: remove the key; every container gets private namespaces",
        ),
        (
            "    cap_add: [SYS_ADMIN]\n",
            "cat.yaml:5:14: servers.s.cap_add: `cap_add` is not supported: every capability is dropped; fix: remove `cap_add`; an MCP server should not need Linux capabilities",
        ),
        (
            "    devices: ['/dev/kvm']\n",
            "cat.yaml:5:14: servers.s.devices: `devices` is not supported: host devices are never passed through; fix: remove `devices`",
        ),
    ];
    for (extra, expect) in cases {
        check_err(&format!("{HEAD}{extra}"), expect);
    }
}

/// Every sensitive host path is refused, however it is spelled: directly,
/// inside it, above it, through `..` or through a symlink.
#[test]
fn rejects_sensitive_volumes() {
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink("/etc", dir.path().join("link-to-etc")).unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    let run = PathBuf::from("/run").canonicalize().unwrap();
    let cases: Vec<(String, String)> = vec![
        ("/".into(), "host path `/` is or contains `/etc`".into()),
        (
            "/etc".into(),
            "host path `/etc` is or contains `/etc`".into(),
        ),
        (
            "/etc/ssl".into(),
            "host path `/etc/ssl` is or contains `/etc`".into(),
        ),
        (
            "/proc".into(),
            "host path `/proc` is or contains `/proc`".into(),
        ),
        (
            "/sys".into(),
            "host path `/sys` is or contains `/sys`".into(),
        ),
        (
            "/dev".into(),
            "host path `/dev` is or contains `/dev`".into(),
        ),
        (
            "/var".into(),
            "host path `/var` is or contains `/var/run`".into(),
        ),
        (
            "/var/run".into(),
            format!("host path `{}` is or contains `/run`", run.display()),
        ),
        (
            "./link-to-etc".into(),
            "host path `/etc` is or contains `/etc`".into(),
        ),
        (
            "sub/../link-to-etc/..".into(),
            "host path `/` is or contains `/etc`".into(),
        ),
    ];
    for (host, expect) in cases {
        let yaml = format!("{HEAD}    volumes: ['{host}:/data']\n");
        let err = parse_in(dir.path(), &yaml).expect_err(&host).to_string();
        assert!(
            err.starts_with("cat.yaml:5:15: servers.s.volumes[0]: ")
                && err.contains(&expect)
                && err.ends_with(
                    "; fix: mount a dedicated directory that holds only what the server needs"
                ),
            "{host}: {err}"
        );
    }
}

#[test]
fn rejects_credential_dirs_under_home_and_the_docker_socket() {
    let home = tempfile::tempdir().unwrap();
    let home_path = home.path().canonicalize().unwrap();
    for sub in [".ssh", ".aws", ".docker", ".kube", ".gnupg"] {
        std::fs::create_dir(home_path.join(sub)).unwrap();
    }
    let sock_path = home_path.join("docker.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&sock_path).unwrap();
    let context = volume::Context::for_test(home_path.clone(), Some(home_path.clone()));
    let check = |host: &str| -> String {
        volume::with_context(context.clone(), || {
            yaml_serde::from_str::<volume::Volume>(&format!("'{host}:/data'"))
                .unwrap_err()
                .to_string()
        })
    };
    for sub in [".ssh", ".aws", ".docker", ".kube", ".gnupg"] {
        let err = check(&format!("~/{sub}"));
        assert!(
            err.contains(&format!(
                "is or contains `{}`",
                home_path.join(sub).display()
            )),
            "{err}"
        );
    }
    let err = check("~");
    assert!(
        err.contains(&format!(
            "host path `{}` is or contains",
            home_path.display()
        )),
        "{err}"
    );
    let err = check(&sock_path.display().to_string());
    assert!(
        err.contains("is a socket; a socket (such as the Docker socket) is never mounted"),
        "{err}"
    );
    if Path::new("/var/run/docker.sock").exists() {
        let err = check("/var/run/docker.sock");
        assert!(err.contains("socket"), "{err}");
    }
}

#[test]
fn rejects_malformed_volumes() {
    let cases = [
        ("'./x'", "volume `./x` is not `host:container[:ro|rw]`"),
        ("'.:/data:rx'", "volume mode `rx` is not supported"),
        (
            "'.:data'",
            "container path `data` must be an absolute path other than `/`",
        ),
        (
            "'.:/'",
            "container path `/` must be an absolute path other than `/`",
        ),
        ("'./missing:/data'", "cannot be resolved"),
    ];
    for (v, expect) in cases {
        let yaml = format!("{HEAD}    volumes: [{v}]\n");
        let dir = tempfile::tempdir().unwrap();
        let err = parse_in(dir.path(), &yaml).unwrap_err().to_string();
        assert!(
            err.starts_with("cat.yaml:5:15: servers.s.volumes[0]: ") && err.contains(expect),
            "{err}"
        );
    }
}

/// A billion-laughs document fails instead of expanding: anchors are kept
/// as events (parsing is linear in the file), the typed schema refuses a
/// nested alias at its first element, and yaml_serde caps alias jumps.
#[test]
fn rejects_alias_bombs() {
    let mut yaml =
        String::from("version: 1\nservers:\n  s:\n    image: a\n    env: { A: &a0 x }\n");
    yaml.push_str("    entrypoint: &a1 [*a0, *a0, *a0, *a0, *a0, *a0, *a0, *a0, *a0, *a0]\n");
    yaml.push_str("  t:\n    image: a\n    entrypoint: &a2 [*a1, *a1, *a1, *a1, *a1, *a1, *a1, *a1, *a1, *a1]\n");
    for i in 3..12 {
        let refs = vec![format!("*a{}", i - 1); 10].join(", ");
        yaml.push_str(&format!(
            "  t{i}:\n    image: a\n    command: &a{i} [{refs}]\n"
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let err = parse_in(dir.path(), &yaml).unwrap_err().to_string();
    assert_eq!(
        err,
        "cat.yaml:6:17: servers.t.entrypoint[0]: invalid type: sequence, expected a string; fix: write the value in the form the catalog reference in README.md shows"
    );
}

#[test]
fn rejects_oversized_files_without_reading_them_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.yaml");
    let mut text = String::from("version: 1\n");
    while text.len() as u64 <= MAX_CATALOG_BYTES {
        text.push_str("# padding padding padding padding padding padding padding\n");
    }
    std::fs::write(&path, &text).unwrap();
    let err = load(&path).unwrap_err().to_string();
    assert!(err.contains("over the limit of 1048576 bytes"), "{err}");
}

#[test]
fn missing_file_names_the_path() {
    let err = load(Path::new("/nonexistent/cat.yaml"))
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with(
            "/nonexistent/cat.yaml: cannot read the catalog: No such file or directory"
        ),
        "{err}"
    );
}

#[test]
fn demo_catalog_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../catalog/demo.yaml");
    let cat = load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert!(cat.servers.len() >= 3);
}

#[test]
fn supervision_keys_parse_and_default() {
    let cat = check_ok(HEAD);
    assert_eq!(cat.gateway.max_call_timeout.as_secs(), 600);
    assert_eq!(cat.gateway.restart, RestartSpec::default());
    let s = &cat.servers[0];
    assert_eq!(s.call_timeout, None);
    assert_eq!(
        s.concurrency,
        Concurrency {
            in_flight: 16,
            queue: 64,
            per_client: None
        }
    );
    assert_eq!(s.lifecycle, Lifecycle::Warm);
    assert_eq!(s.scope, Scope::Shared);

    let cat = check_ok(
        "version: 1\ngateway:\n  max_call_timeout: 5m\n  restart: { initial_backoff: 100ms, max_backoff: 2s, healthy_after: 10s, circuit_after: 3, circuit_open: 5s }\nservers:\n  s:\n    image: a\n    call_timeout: 2s\n    concurrency: { in_flight: 2, queue: 0, per_client: 1 }\n    lifecycle: on-demand\n    idle_timeout: 90s\n",
    );
    assert_eq!(cat.gateway.max_call_timeout.as_secs(), 300);
    let r = cat.gateway.restart;
    assert_eq!(
        (
            r.initial_backoff.as_millis(),
            r.max_backoff.as_secs(),
            r.healthy_after.as_secs(),
            r.circuit_after,
            r.circuit_open.as_secs()
        ),
        (100, 2, 10, 3, 5)
    );
    let s = &cat.servers[0];
    assert_eq!(s.call_timeout, Some(std::time::Duration::from_secs(2)));
    assert_eq!(
        s.concurrency,
        Concurrency {
            in_flight: 2,
            queue: 0,
            per_client: Some(1)
        }
    );
    assert_eq!(
        s.lifecycle,
        Lifecycle::OnDemand {
            idle: std::time::Duration::from_secs(90)
        }
    );

    check_err(
        &format!("{HEAD}    lifecycle: lazy\n"),
        "cat.yaml:5:16: servers.s.lifecycle: lifecycle `lazy` is not known; fix: use `warm` (the default) or `on-demand`",
    );
    check_err(
        &format!("{HEAD}    idle_timeout: 5m\n"),
        "cat.yaml:4:5: servers.s: `idle_timeout` only applies to `lifecycle: on-demand`; fix: add `lifecycle: on-demand`, or remove `idle_timeout`",
    );
    let cat = check_ok(&format!("{HEAD}    scope: session\n"));
    assert_eq!(cat.servers[0].scope, Scope::Session);
    check_err(
        &format!("{HEAD}    scope: client\n"),
        "cat.yaml:5:12: servers.s.scope: scope `client` is not known; fix: use `shared` (the default: one container for every client) or `session` (a container per client session)",
    );
    check_err(
        &format!("{HEAD}    scope: session\n    lifecycle: on-demand\n"),
        "cat.yaml:4:5: servers.s: `lifecycle` does not apply to `scope: session`: each session's container starts on its first use and is removed when the session ends; fix: remove `lifecycle` (and `idle_timeout`), or use `scope: shared`",
    );
    check_err(
        &format!("{HEAD}    concurrency: {{ in_flight: 0 }}\n"),
        "cat.yaml:4:5: servers.s: `concurrency.in_flight` is 0: no call could ever be made; fix: allow at least 1 call in flight (the default is 16)",
    );
    check_err(
        "version: 1\ngateway:\n  restart: { circuit_after: 0 }\nservers:\n  s:\n    image: a\n",
        "cat.yaml:3:29: gateway.restart.circuit_after: `0` is not a count; fix: write a whole number from 1 to 100000",
    );
}

#[test]
fn every_problem_is_reported_in_one_run_in_file_order() {
    let yaml = "version: 1
gateway:
  call_timeout: soon
servers:
  good:
    image: img:dev
  bad-pull:
    image: img:dev
    pull: sometimes
  no-image:
    pull: never
  typo:
    image: img:dev
    netwrok: none
profiles:
  ci:
    tools: [\"good__*\"]
";
    let dir = tempfile::tempdir().unwrap();
    let err = parse_in(dir.path(), yaml).expect_err("catalog should be rejected");
    let at: Vec<(usize, usize)> = err
        .problems()
        .iter()
        .filter_map(CatalogError::position)
        .collect();
    assert_eq!(at.len(), 4, "{err}");
    let lines: Vec<usize> = at.iter().map(|(line, _)| *line).collect();
    assert_eq!(lines, [3, 9, 11, 14], "{err}");
    let shown = err.to_string();
    assert!(shown.starts_with("cat.yaml:3:"), "{shown}");
    assert_eq!(shown.matches("\nerror: cat.yaml:").count(), 3, "{shown}");
    assert!(
        shown.ends_with("\nerror: 4 problems in this catalog; nothing was started"),
        "{shown}"
    );
    assert!(shown.contains("neither `image` nor `url`"), "{shown}");
    assert!(shown.contains("unknown field `netwrok`"), "{shown}");
}

#[test]
fn a_single_problem_is_reported_alone_and_the_scaffolding_reports_nothing() {
    // The problem in each section shape: first key, last key, only server.
    for yaml in [
        "gateway:\n  call_timeout: soon\nversion: 1\nservers:\n  s:\n    image: img:dev\n",
        "version: 1\nservers:\n  s:\n    image: img:dev\n    pull: sometimes\n",
        "version: 1\nservers:\n  s:\n    image: img:dev\nprofiles:\n  ci:\n    tools: 3\n",
        "version: 2\nservers:\n  s:\n    image: img:dev\n",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let err = parse_in(dir.path(), yaml).expect_err("catalog should be rejected");
        assert_eq!(err.problems().len(), 1, "{err}\nfor catalog:\n{yaml}");
    }
}

#[test]
fn a_catalog_that_cannot_be_split_safely_reports_its_first_problem() {
    // Flow style, aliases and syntax errors: the first problem only.
    for yaml in [
        "version: 1\nservers: {a: {image: x, pull: sometimes}, b: {pull: never}}\n",
        "version: 1\nx: &p {pull: sometimes}\nservers:\n  a:\n    image: x\n    pull: *p\n  b:\n    pull: never\n",
        "version: 1\nservers:\n  a:\n    image: [unclosed\n  b:\n    pull: never\n",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let err = parse_in(dir.path(), yaml).expect_err("catalog should be rejected");
        assert_eq!(err.problems().len(), 1, "{err}\nfor catalog:\n{yaml}");
    }
}

proptest::proptest! {
    /// Any text, and any catalog with lines mangled: parsing never panics,
    /// and each problem reported lies within the file, in file order.
    #[test]
    fn any_text_gets_positioned_problems_in_order(
        lines in proptest::collection::vec(
            proptest::prop_oneof![
                proptest::string::string_regex("[ a-z:_\\-\\[\\]{}'\"&*#0-9]{0,24}").unwrap(),
                proptest::sample::select(vec![
                    "version: 1".to_string(), "servers:".to_string(), "  a:".to_string(),
                    "    image: x".to_string(), "    pull: sometimes".to_string(),
                    "gateway:".to_string(), "  call_timeout: soon".to_string(),
                    "profiles:".to_string(), "  b:".to_string(), "    pull: never".to_string(),
                ]),
            ],
            0..24,
        )
    ) {
        let text = lines.join("\n");
        let dir = tempfile::tempdir().unwrap();
        if let Err(err) = parse_in(dir.path(), &text) {
            let at: Vec<(usize, usize)> =
                err.problems().iter().filter_map(CatalogError::position).collect();
            proptest::prop_assert_eq!(at.len(), err.problems().len());
            proptest::prop_assert!(at.windows(2).all(|w| w[0] < w[1]), "{}", err);
            let last_line = text.lines().count().max(1) + 1;
            proptest::prop_assert!(at.iter().all(|(line, _)| *line <= last_line), "{}", err);
        }
    }
}

#[test]
fn scan_policies_default_to_block_lists_and_warn_results_and_servers_override() {
    let cat = check_ok(HEAD);
    assert_eq!(cat.gateway.scan, ScanPolicy::Block);
    assert_eq!(cat.gateway.scan_results, ScanPolicy::Warn);
    assert_eq!(cat.servers[0].scan, None);
    let cat = check_ok(
        "version: 1\ngateway:\n  scan: warn\n  scan_results: block\nservers:\n  s:\n    image: img:dev\n    scan: off\n    scan_results: off\n",
    );
    assert_eq!(cat.gateway.scan, ScanPolicy::Warn);
    assert_eq!(cat.gateway.scan_results, ScanPolicy::Block);
    assert_eq!(cat.servers[0].scan, Some(ScanPolicy::Off));
    assert_eq!(cat.servers[0].scan_results, Some(ScanPolicy::Off));
    check_err(
        "version: 1\nservers:\n  s:\n    image: img:dev\n    scan: maybe\n",
        "cat.yaml:5:11: servers.s.scan: scan policy `maybe` is not known; fix: use `block` (withhold high-severity findings, log the rest), `warn` (log only) or `off`",
    );
}

#[test]
fn an_image_may_pin_its_digest_and_the_lockfile_must_agree() {
    let digest = format!("sha256:{}", "0f".repeat(32));
    let yaml = format!(
        "version: 1\nservers:\n  a:\n    image: mcpgw/time:dev@{digest}\n  b:\n    image: b\n"
    );
    let mut catalog = check_ok(&yaml);
    assert_eq!(
        catalog.servers[0].image_digest.as_deref(),
        Some(digest.as_str())
    );
    assert_eq!(catalog.servers[1].image_digest, None);

    let other = format!("sha256:{}", "1e".repeat(32));
    let mut lock = crate::lock::Lock {
        version: crate::lock::LOCK_VERSION,
        ..Default::default()
    };
    lock.servers.insert(
        "b".into(),
        crate::lock::ServerLock {
            image: Some(other.clone()),
            ..Default::default()
        },
    );
    let path = std::path::Path::new("c.yaml.lock");
    crate::apply_lock(&mut catalog, &lock, path).unwrap();
    // The lockfile's digest applies where the catalog names none; a server
    // the lockfile lacks gets empty pins (nothing of it is served).
    assert_eq!(
        catalog.servers[1].image_digest.as_deref(),
        Some(other.as_str())
    );
    assert!(catalog.servers[0].pins.as_ref().unwrap().tools.is_empty());
    assert_eq!(catalog.lock.as_deref(), Some(path));

    lock.servers.insert(
        "a".into(),
        crate::lock::ServerLock {
            image: Some(other),
            ..Default::default()
        },
    );
    let mut catalog = check_ok(&yaml);
    let err = crate::apply_lock(&mut catalog, &lock, path)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("the catalog pins image digest") && err.contains("mcpgw lock --update"),
        "{err}"
    );

    for bad in [
        "a@sha256:12",
        "a@md5:00",
        &format!("a@sha256:{}", "AB".repeat(32)),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let yaml = format!("version: 1\nservers:\n  a:\n    image: '{bad}'\n");
        let message = parse_in(dir.path(), &yaml).unwrap_err().to_string();
        assert!(
            message.contains("64 lowercase hex digits"),
            "{bad}: {message}"
        );
    }
}

#[test]
fn the_audit_trail_defaults_to_the_front_and_resolves_its_file_beside_the_catalog() {
    use crate::{AuditSpec, AuditTo};
    let catalog = check_ok("version: 1\nservers:\n  a:\n    image: a\n");
    assert_eq!(catalog.gateway.audit, AuditSpec::default());
    assert_eq!(catalog.gateway.audit.to, AuditTo::Default);
    let dir = tempfile::tempdir().unwrap();
    let yaml = "version: 1\ngateway:\n  audit: { path: logs/audit.jsonl, arguments: redacted, max_size: 2k, keep: 1 }\nservers:\n  a:\n    image: a\n";
    let catalog = parse_in(dir.path(), yaml).unwrap();
    let audit = &catalog.gateway.audit;
    assert_eq!(audit.to, AuditTo::File(dir.path().join("logs/audit.jsonl")));
    assert!(audit.arguments);
    assert_eq!((audit.max_size, audit.keep), (2048, 1));
    for (path, to) in [("stderr", AuditTo::Stderr), ("off", AuditTo::Off)] {
        let yaml = format!(
            "version: 1\ngateway:\n  audit: {{ path: {path} }}\nservers:\n  a:\n    image: a\n"
        );
        assert_eq!(parse_in(dir.path(), &yaml).unwrap().gateway.audit.to, to);
    }
    for (bad, says) in [
        ("{ arguments: all }", "audit arguments `all` is not known"),
        ("{ max_size: 10 }", "file size `10` is below 1k"),
        ("{ path: '' }", "audit `path` is empty"),
        ("{ rotate: 3 }", "unknown field `rotate`"),
    ] {
        let yaml = format!("version: 1\ngateway:\n  audit: {bad}\nservers:\n  a:\n    image: a\n");
        let err = parse_in(dir.path(), &yaml).unwrap_err().to_string();
        assert!(
            err.contains(says) && err.starts_with("cat.yaml:3:"),
            "{bad}: {err}"
        );
    }
}

#[test]
fn rate_limits_parse_with_default_bursts() {
    let cat = check_ok(
        "version: 1\n\
         gateway:\n  limits: { per_client: { rate: 600/min, burst: 60 } }\n\
         servers:\n  s:\n    image: img:dev\n    limits:\n      server: { rate: 5000/h }\n\
         \x20     per_client: { rate: 2/s }\n\
         \x20     tools:\n        create_issue: { rate: 10/min, per_client: { rate: 1/d } }\n        search: { per_client: { rate: 30/m, burst: 3 } }\n\
         profiles:\n  ci:\n    tools: [\"*\"]\n    limits: { per_client: { rate: 120/minute } }\n",
    );
    let gateway = cat.gateway.limits.per_client.unwrap();
    assert_eq!(gateway.to_string(), "600/min, burst 60");
    assert_eq!(
        gateway.rate.replenish_every(),
        std::time::Duration::from_millis(100)
    );
    let limits = &cat.servers[0].limits;
    assert_eq!(limits.server.unwrap().to_string(), "5000/h, burst 5000");
    assert_eq!(limits.per_client.unwrap().to_string(), "2/s, burst 2");
    let [(first, issue), (second, search)] = limits.tools.as_slice() else {
        panic!("two tools: {:?}", limits.tools);
    };
    assert_eq!(
        (first.as_str(), second.as_str()),
        ("create_issue", "search")
    );
    assert_eq!(issue.all.unwrap().to_string(), "10/min, burst 10");
    assert_eq!(issue.per_client.unwrap().to_string(), "1/d, burst 1");
    assert!(search.all.is_none());
    assert_eq!(search.per_client.unwrap().to_string(), "30/min, burst 3");
    let ci = cat.profiles["ci"].limits.per_client.unwrap();
    assert_eq!(ci.to_string(), "120/min, burst 120");
    assert!(check_ok(HEAD).servers[0].limits.is_empty());
}

#[test]
fn rejects_bad_rate_limits() {
    let server = |limits: &str| format!("{HEAD}    limits: {limits}\n");
    check_err(
        &server("{ per_client: { rate: 10/fortnight } }"),
        "cat.yaml:5:35: servers.s.limits.per_client.rate: `10/fortnight` is not a rate; fix: write a count per unit, such as `2/s`, `10/min`, `5000/h` or `1000/d`",
    );
    check_err(
        &server("{ server: { rate: 10 } }"),
        "cat.yaml:5:31: servers.s.limits.server.rate: `10` is not a rate; fix: write a count per unit, such as `2/s`, `10/min`, `5000/h` or `1000/d`",
    );
    check_err(
        &server("{ server: { rate: 0/s } }"),
        "cat.yaml:5:31: servers.s.limits.server.rate: rate `0/s` is out of range; fix: use a count from 1 to 1000000000 per unit",
    );
    check_err(
        &server("{ server: { rate: 1/s, burst: 0 } }"),
        "cat.yaml:5:43: servers.s.limits.server.burst: `0` is not a burst size; fix: write a whole number of requests from 1 to 1000000",
    );
    check_err(
        &server("{ server: { burst: 5 } }"),
        "cat.yaml:5:23: servers.s.limits.server: missing field `rate`; fix: add the missing key",
    );
    check_err(
        &server("{ tools: { t: { burst: 5 } } }"),
        "cat.yaml:5:27: servers.s.limits.tools.t: a tool's `burst` has no `rate`; fix: add `rate`, such as `rate: 10/min`",
    );
    check_err(
        &server("{ tools: { t: {} } }"),
        "cat.yaml:5:27: servers.s.limits.tools.t: a tool's limits are empty; fix: write `rate` (every client together) or `per_client: { rate: … }`, or remove the tool",
    );
    check_err(
        &server("{ per_client: { rate: 1/s, every: 2 } }"),
        "cat.yaml:5:40: servers.s.limits.per_client: unknown field `every`, expected `rate` or `burst`; fix: remove the key or correct its spelling; the catalog reference is in README.md",
    );
    check_err(
        "version: 1\ngateway:\n  limits: { server: { rate: 1/s } }\nservers:\n  s:\n    image: a\n",
        "cat.yaml:3:13: gateway.limits: unknown field `server`, expected `per_client`; fix: remove the key or correct its spelling; the catalog reference is in README.md",
    );
}

#[test]
fn a_clients_share_lies_within_in_flight() {
    check_err(
        &format!("{HEAD}    concurrency: {{ in_flight: 4, per_client: 5 }}\n"),
        "cat.yaml:4:5: servers.s: `concurrency.per_client` is 5, outside 1 to `in_flight` (4); fix: give each client a share from 1 to `in_flight`, or remove it to let clients take turns",
    );
}

#[test]
fn cached_tools_and_the_caches_size() {
    let cat = check_ok(&format!(
        "{HEAD}    cache: {{ get_current_time: {{ ttl: 30s }}, now: {{ ttl: 500ms }} }}\n"
    ));
    assert_eq!(
        cat.servers[0].cache,
        [
            (
                "get_current_time".to_string(),
                std::time::Duration::from_secs(30)
            ),
            ("now".to_string(), std::time::Duration::from_millis(500)),
        ]
    );
    assert_eq!(cat.gateway.cache_bytes, 64 << 20);
    let cat = check_ok(&format!(
        "version: 1\ngateway:\n  cache: {{ max_size: 1m }}\n{}",
        &HEAD[11..]
    ));
    assert_eq!(cat.gateway.cache_bytes, 1 << 20);
    check_err(
        &format!("{HEAD}    cache: {{ t: {{ ttl: forever }} }}\n"),
        "cat.yaml:5:24: servers.s.cache.t.ttl: `forever` is not a duration; fix: write a number with a unit, such as `500ms`, `30s`, `2m` or `1h`",
    );
    check_err(
        &format!("{HEAD}    cache: {{ t: {{ tll: 1s }} }}\n"),
        "cat.yaml:5:19: servers.s.cache.t: unknown field `tll`, expected `ttl`; fix: remove the key or correct its spelling; the catalog reference is in README.md",
    );
}

#[test]
fn tracing_is_off_a_map_or_left_to_the_environment() {
    use crate::{OtlpProtocol, TracingSpec};
    let catalog = check_ok("version: 1\nservers:\n  a:\n    image: a\n");
    assert_eq!(catalog.gateway.tracing, TracingSpec::default());
    assert_eq!(catalog.gateway.tracing.enabled, None);
    let off = check_ok("version: 1\ngateway:\n  tracing: off\nservers:\n  a:\n    image: a\n");
    assert_eq!(off.gateway.tracing.enabled, Some(false));
    let on = check_ok(
        "version: 1\ngateway:\n  tracing: { endpoint: \"http://otel:4317\", protocol: grpc, service_name: edge, sample_ratio: 0.25 }\nservers:\n  a:\n    image: a\n",
    );
    let t = &on.gateway.tracing;
    assert_eq!(t.enabled, Some(true));
    assert_eq!(t.endpoint.as_deref(), Some("http://otel:4317"));
    assert_eq!(t.protocol, Some(OtlpProtocol::Grpc));
    assert_eq!(t.service_name.as_deref(), Some("edge"));
    assert_eq!(t.sample_ratio, Some(0.25));
    let dir = tempfile::tempdir().unwrap();
    for (bad, says) in [
        ("on", "tracing `on` is not known"),
        (
            "{ protocol: http/json }",
            "OTLP protocol `http/json` is not known",
        ),
        (
            "{ endpoint: otel:4318 }",
            "is not an http:// or https:// URL",
        ),
        (
            "{ sample_ratio: 2 }",
            "sample_ratio 2 is not between 0 and 1",
        ),
        ("{ exporter: otlp }", "unknown field `exporter`"),
    ] {
        let yaml =
            format!("version: 1\ngateway:\n  tracing: {bad}\nservers:\n  a:\n    image: a\n");
        let err = parse_in(dir.path(), &yaml).unwrap_err().to_string();
        assert!(
            err.contains(says) && err.starts_with("cat.yaml:3:"),
            "{bad}: {err}"
        );
    }
}

const OAUTH: &str = "version: 1\ngateway:\n  auth:\n    oauth:\n      issuer: https://idp.example/realms/mcp\n      resource: https://mcp.example/mcp\n";

#[test]
fn oauth_is_read_with_safe_defaults_and_its_rules_in_order() {
    let cat = check_ok(&format!(
        "{OAUTH}      scopes: [mcp]\n      profiles:\n        admin: {{ scope: mcp.admin }}\n        ci: {{ claim: groups, value: ci }}\n      default_profile: ci\n{}profiles:\n  admin: {{ tools: ['*'] }}\n  ci: {{ tools: [s__echo] }}\n",
        &HEAD["version: 1\n".len()..]
    ));
    let oauth = cat.gateway.auth.oauth.expect("oauth is configured");
    assert_eq!(oauth.issuer.as_str(), "https://idp.example/realms/mcp");
    assert_eq!(oauth.resource.as_str(), "https://mcp.example/mcp");
    assert_eq!(oauth.algorithms, ["RS256", "PS256", "ES256", "EdDSA"]);
    assert_eq!(oauth.leeway.as_secs(), 30);
    assert_eq!(oauth.scopes_supported(), ["mcp", "mcp.admin"]);
    assert_eq!(
        oauth.profiles,
        [
            ProfileRule {
                profile: "admin".into(),
                when: Claim::Scope("mcp.admin".into())
            },
            ProfileRule {
                profile: "ci".into(),
                when: Claim::Value {
                    name: "groups".into(),
                    value: "ci".into()
                }
            },
        ]
    );
    assert_eq!(oauth.default_profile.as_deref(), Some("ci"));
    assert!(check_ok(HEAD).gateway.auth.oauth.is_none());
}

#[test]
fn oauth_mistakes_are_named_where_they_are_written() {
    let servers = &HEAD["version: 1\n".len()..];
    for (extra, expect) in [
        (
            "      algorithms: [RS256, HS256]\n",
            "cat.yaml:7:27: gateway.auth.oauth.algorithms[1]: `HS256` is a shared-secret algorithm: with it, anyone holding the issuer's public key could sign tokens; fix: use asymmetric algorithms: RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA",
        ),
        (
            "      algorithms: [none]\n",
            "cat.yaml:7:20: gateway.auth.oauth.algorithms[0]: `none` means no signature; fix: use asymmetric algorithms: RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA",
        ),
        (
            "      default_profile: nobody\n",
            "cat.yaml:7:24: gateway.auth.oauth.default_profile: profile `nobody` is not defined; fix: add `nobody` under `profiles:`, or name a profile defined there",
        ),
        (
            "      profiles:\n        ghost: { scope: x }\n",
            "cat.yaml:8:9: gateway.auth.oauth.profiles: profile `ghost` is not defined; fix: add `ghost` under `profiles:`, or name a profile defined there",
        ),
        (
            "      profiles:\n        ci: { scope: x, claim: groups, value: ci }\n",
            "cat.yaml:8:9: gateway.auth.oauth.profiles: a profile rule names either a scope or a claim and its value; fix: write `{ scope: NAME }` or `{ claim: groups, value: NAME }`",
        ),
        (
            "      scopes: [\"a b\"]\n",
            "cat.yaml:7:16: gateway.auth.oauth.scopes[0]: `a b` is not a scope; fix: write one scope per entry, without spaces or quotes",
        ),
        (
            "      introspect: true\n",
            "cat.yaml:7:7: gateway.auth.oauth: unknown field `introspect`, expected one of `issuer`, `resource`, `scopes`, `algorithms`, `leeway`, `jwks_refresh`, `profiles`, `default_profile`; fix: remove the key or correct its spelling; the catalog reference is in README.md",
        ),
    ] {
        let yaml = format!("{OAUTH}{extra}{servers}profiles:\n  ci: {{ tools: ['*'] }}\n");
        check_err(&yaml, expect);
    }
    check_err(
        &format!(
            "{}{servers}",
            OAUTH.replace("https://mcp.example/mcp", "http://mcp.example/mcp")
        ),
        "cat.yaml:6:17: gateway.auth.oauth.resource: `http://mcp.example/mcp` is not an https URL; fix: use `https://`; plain `http://` is accepted only on a loopback host",
    );
    check_ok(&format!(
        "{}{servers}",
        OAUTH.replace("https://mcp.example/mcp", "http://127.0.0.1:8811/mcp")
    ));
}

const REMOTE: &str = "version: 1\nservers:\n  r:\n";

#[test]
fn a_remote_server_has_a_url_headers_from_secrets_or_client_credentials() {
    let cat = check_ok(&format!(
        "{REMOTE}    url: https://mcp.vendor.example/mcp
    headers:
      Authorization: {{ secret: vendor.token, format: \"Bearer {{}}\" }}
      X-Api-Key: {{ secret: vendor.key }}
      X-Team: blue
  o:
    url: https://mcp.other.example/mcp
    oauth:
      client_credentials:
        token_url: https://idp.example/token
        client_id: mcpgw
        client_secret: other.secret
        scopes: [mcp, mcp.read]
"
    ));
    let r = cat.servers[0].remote.as_ref().expect("remote");
    assert_eq!(r.url.as_str(), "https://mcp.vendor.example/mcp");
    assert!(!r.allow_private);
    assert_eq!(
        r.headers,
        [
            (
                "Authorization".to_string(),
                HeaderSpec::Secret {
                    name: SecretName::try_from("vendor.token".to_string()).unwrap(),
                    format: "Bearer {}".to_string()
                }
            ),
            (
                "X-Api-Key".to_string(),
                HeaderSpec::Secret {
                    name: SecretName::try_from("vendor.key".to_string()).unwrap(),
                    format: "{}".to_string()
                }
            ),
            ("X-Team".to_string(), HeaderSpec::Plain("blue".to_string())),
        ]
    );
    assert!(cat.servers[0].image.is_empty());
    assert_eq!(
        cat.servers[0].relaxations(),
        ["remote server at https://mcp.vendor.example/mcp"]
    );
    let o = cat.servers[1].remote.as_ref().expect("remote");
    let cc = o.oauth.as_ref().expect("oauth");
    assert_eq!(cc.token_url.as_str(), "https://idp.example/token");
    assert_eq!(cc.client_id, "mcpgw");
    assert_eq!(cc.client_secret.as_str(), "other.secret");
    assert_eq!(cc.scopes, ["mcp", "mcp.read"]);
    let names: Vec<&str> = o.secret_names().iter().map(|n| n.as_str()).collect();
    assert_eq!(names, ["other.secret"]);

    let local = check_ok(&format!(
        "{REMOTE}    url: http://127.0.0.1:8000/mcp\n    allow_private: true\n"
    ));
    assert_eq!(
        local.servers[0].relaxations(),
        [
            "remote server at http://127.0.0.1:8000/mcp",
            "allow_private: true (may reach loopback and private addresses)"
        ]
    );
}

#[test]
fn rejects_bad_remote_entries() {
    let cases = [
        (
            "    image: img:dev\n    url: https://a.example/mcp\n",
            "cat.yaml:4:5: servers.r: the server has both `image` and `url`; fix: keep `image` for a container server, or `url` for a remote one",
        ),
        (
            "    url: https://a.example/mcp\n    env: { A: b }\n",
            "cat.yaml:4:5: servers.r: `env` applies only to a container server, and this one has `url`; fix: remove `env`; a remote server's credentials go in `headers` or `oauth`",
        ),
        (
            "    image: img:dev\n    allow_private: true\n",
            "cat.yaml:4:5: servers.r: `allow_private` applies only to a remote server (one with `url`); fix: add `url`, or remove `allow_private`",
        ),
        (
            "    url: ftp://a.example/mcp\n",
            "cat.yaml:4:10: servers.r.url: `ftp://a.example/mcp` is not an https URL; fix: write the server's MCP endpoint, such as `https://mcp.vendor.example/mcp`",
        ),
        (
            "    url: https://user:pw@a.example/mcp\n",
            "cat.yaml:4:10: servers.r.url: `https://user:pw@a.example/mcp` carries credentials in the URL; fix: remove them and send them with `headers` (their values from secrets) or `oauth`",
        ),
        (
            "    url: http://a.example/mcp\n",
            "cat.yaml:4:5: servers.r: `url` `http://a.example/mcp` is refused: plain `http` is accepted only on loopback with `allow_private: true`; use `https`; fix: name a public https endpoint, or set `allow_private: true` for one on a private network",
        ),
        (
            "    url: http://127.0.0.1:9/mcp\n",
            "cat.yaml:4:5: servers.r: `url` `http://127.0.0.1:9/mcp` is refused: 127.0.0.1 is a loopback address; set `allow_private: true` on the server if it is meant to be reached there; fix: name a public https endpoint, or set `allow_private: true` for one on a private network",
        ),
        (
            "    url: https://10.1.2.3/mcp\n",
            "cat.yaml:4:5: servers.r: `url` `https://10.1.2.3/mcp` is refused: 10.1.2.3 is a private address (RFC 1918); set `allow_private: true` on the server if it is meant to be reached there; fix: name a public https endpoint, or set `allow_private: true` for one on a private network",
        ),
        (
            "    url: http://10.1.2.3/mcp\n    allow_private: true\n",
            "cat.yaml:4:5: servers.r: `url` `http://10.1.2.3/mcp` is refused: 10.1.2.3 is a private address (RFC 1918) and reached over plain `http`; use `https` (plain `http` is accepted only on loopback); fix: name a public https endpoint, or set `allow_private: true` for one on a private network",
        ),
        (
            "    url: http://169.254.169.254/latest\n    allow_private: true\n",
            "cat.yaml:4:5: servers.r: `url` `http://169.254.169.254/latest` is refused: 169.254.169.254 is a cloud metadata endpoint, never reachable from the gateway; fix: name a public https endpoint, or set `allow_private: true` for one on a private network",
        ),
        (
            "    url: https://[fe80::1]/mcp\n",
            "cat.yaml:4:5: servers.r: `url` `https://[fe80::1]/mcp` is refused: fe80::1 is a link-local address; set `allow_private: true` on the server if it is meant to be reached there; fix: name a public https endpoint, or set `allow_private: true` for one on a private network",
        ),
        (
            "    url: https://a.example/mcp\n    headers:\n      Mcp-Session-Id: x\n",
            "cat.yaml:6:7: servers.r.headers: header `Mcp-Session-Id` is set by the gateway's transport; fix: remove it from `headers`",
        ),
        (
            "    url: https://a.example/mcp\n    headers:\n      Bad Name: x\n",
            "cat.yaml:6:7: servers.r.headers: header name `Bad Name` is not an HTTP header name; fix: use letters, digits and `-`, such as `X-Api-Key`",
        ),
        (
            "    url: https://a.example/mcp\n    headers:\n      X-Key: { secret: k, format: \"Bearer\" }\n",
            "cat.yaml:6:35: servers.r.headers.X-Key.format: header format `Bearer` does not hold `{}` exactly once; fix: write where the secret's value goes, such as `Bearer {}`",
        ),
        (
            "    url: https://a.example/mcp\n    headers:\n      X-Key: { secret: k, as: file }\n",
            "cat.yaml:6:27: servers.r.headers.X-Key: unknown field `as`, expected `secret` or `format`; fix: remove the key or correct its spelling; the catalog reference is in README.md",
        ),
        (
            "    url: https://a.example/mcp\n    headers: { Authorization: x }\n    oauth: { client_credentials: { token_url: https://i.example/t, client_id: c, client_secret: s } }\n",
            "cat.yaml:4:5: servers.r: `headers` sets `Authorization` and `oauth` sends a token in it too; fix: keep one of them",
        ),
        (
            "    url: https://a.example/mcp\n    oauth: { client_credentials: { token_url: https://i.example/t, client_id: c } }\n",
            "cat.yaml:5:34: servers.r.oauth.client_credentials: missing field `client_secret`; fix: add the missing key",
        ),
        (
            "    url: https://a.example/mcp\n    oauth: { client_credentials: { token_url: https://192.168.1.1/t, client_id: c, client_secret: s } }\n",
            "cat.yaml:4:5: servers.r: `oauth.client_credentials.token_url` `https://192.168.1.1/t` is refused: 192.168.1.1 is a private address (RFC 1918); set `allow_private: true` on the server if it is meant to be reached there; fix: name a public https endpoint, or set `allow_private: true` for one on a private network",
        ),
    ];
    for (body, expect) in cases {
        check_err(&format!("{REMOTE}{body}"), expect);
    }
}

#[test]
fn the_guard_admits_private_addresses_only_when_allowed_and_http_only_on_loopback() {
    let spec = |allow_private: bool| RemoteSpec {
        url: url::Url::parse("https://a.example/mcp").unwrap(),
        headers: Vec::new(),
        oauth: None,
        allow_private,
    };
    let ip = |s: &str| s.parse().unwrap();
    assert!(spec(false).admits(ip("93.184.215.14"), "https").is_ok());
    assert!(spec(false).admits(ip("93.184.215.14"), "http").is_err());
    assert!(spec(false).admits(ip("127.0.0.1"), "https").is_err());
    assert!(spec(true).admits(ip("127.0.0.1"), "http").is_ok());
    assert!(spec(true).admits(ip("::ffff:127.0.0.1"), "http").is_ok());
    assert!(spec(true).admits(ip("10.0.0.1"), "https").is_ok());
    assert!(spec(true).admits(ip("10.0.0.1"), "http").is_err());
    assert!(spec(true).admits(ip("169.254.169.254"), "https").is_err());
    assert!(spec(true).admits(ip("fd00:ec2::254"), "https").is_err());
    assert!(spec(true).admits(ip("0.0.0.0"), "http").is_err());
    assert_eq!(
        spec(false).admits(ip("100.64.1.2"), "https").unwrap_err(),
        "100.64.1.2 is a carrier-grade NAT address (100.64.0.0/10); set `allow_private: true` on the server if it is meant to be reached there"
    );
}

#[test]
fn tool_overrides_are_read_by_upstream_name() {
    let cat = check_ok(&format!(
        "{HEAD}    tools:\n      allow: ['issue_*', 'search_*', create_issue]\n      rename: {{ search_code: code_search }}\n      describe:\n        create_issue: \"Open an issue in a repository of the team's organisation.\"\n      hide_params: {{ create_issue: [assignees, labels] }}\n"
    ));
    let tools = &cat.servers[0].tools;
    assert_eq!(tools.rename("search_code"), Some("code_search"));
    assert_eq!(tools.rename("create_issue"), None);
    assert_eq!(
        tools.description("create_issue"),
        Some("Open an issue in a repository of the team's organisation.")
    );
    assert_eq!(tools.hidden_params("create_issue"), ["assignees", "labels"]);
    assert!(tools.hidden_params("search_code").is_empty());
    assert!(tools.overrides_any());
    assert!(!check_ok(HEAD).servers[0].tools.overrides_any());
    let named: Vec<_> = tools.overridden().collect();
    assert_eq!(
        named,
        [
            ("rename", "search_code"),
            ("describe", "create_issue"),
            ("hide_params", "create_issue")
        ]
    );
}

#[test]
fn bad_tool_overrides_are_refused_where_written() {
    let cases: &[(&str, &str)] = &[
        (
            "    tools:\n      rename: { a: x, b: x }\n",
            "cat.yaml:6:15: servers.s.tools.rename: `b` and `a` are both renamed to `x`: two tools cannot share one name; fix: give each tool a name of its own",
        ),
        (
            "    tools:\n      allow: [a, b]\n      rename: { a: b }\n",
            "cat.yaml:6:7: servers.s.tools: `rename` gives `a` the name `b`, which `allow` names as another tool: both would be exposed as `b`; fix: rename `a` to another name, or rename `b` as well",
        ),
        (
            "    tools:\n      rename: { a: 'has space' }\n",
            "cat.yaml:6:20: servers.s.tools.rename.a: `has space` is not a tool name clients accept; fix: use 1 to 64 letters, digits, `_` or `-`, such as `code_search`",
        ),
        (
            "    tools:\n      rename: { a: x, a: y }\n",
            "cat.yaml:6:15: servers.s.tools.rename: duplicate key `a`; fix: keep only one of them",
        ),
        (
            "    tools:\n      describe: { a: '  ' }\n",
            "cat.yaml:6:22: servers.s.tools.describe.a: the description is empty; fix: write what the tool does, for the model that chooses it, or remove the entry",
        ),
        (
            "    tools:\n      hide_params: { a: ['b c'] }\n",
            "cat.yaml:6:26: servers.s.tools.hide_params.a[0]: `b c` is not a parameter name; fix: name a property of the tool's input schema, such as `assignees`",
        ),
        (
            "    tools:\n      renames: { a: b }\n",
            "cat.yaml:6:7: servers.s.tools: unknown field `renames`, expected one of `allow`, `deny`, `rename`, `describe`, `hide_params`; fix: remove the key or correct its spelling; the catalog reference is in README.md",
        ),
    ];
    for (tail, expect) in cases {
        check_err(&format!("{HEAD}{tail}"), expect);
    }
}

#[test]
fn a_rename_onto_an_allowed_name_is_fine_when_that_tool_is_renamed_too() {
    let cat = check_ok(&format!(
        "{HEAD}    tools:\n      allow: [a, b]\n      rename: {{ a: b, b: c }}\n"
    ));
    assert_eq!(cat.servers[0].tools.rename("a"), Some("b"));
}

#[test]
fn tool_mode_and_pinned_tools() {
    assert_eq!(check_ok(HEAD).gateway.tool_view.mode, ToolMode::All);
    let cat = check_ok(
        "version: 1\ngateway:\n  tool_mode: search\n  pinned: ['time__*']\nservers:\n  s:\n    image: img:dev\nprofiles:\n  ci:\n    tools: ['*']\n    tool_mode: all\n  lab:\n    tools: ['*']\n    pinned: [s__echo]\n",
    );
    let view = &cat.gateway.tool_view;
    assert_eq!(view.mode, ToolMode::Search);
    assert!(view.pinned("time__get_current_time"));
    assert!(!view.pinned("s__echo"));
    assert_eq!(cat.profiles["ci"].mode(view), ToolMode::All);
    assert_eq!(cat.profiles["lab"].mode(view), ToolMode::Search);
    assert_eq!(cat.profiles["ci"].tool_mode, Some(ToolMode::All));
    assert_eq!(cat.profiles["ci"].pinned("s__echo"), None);
    assert_eq!(cat.profiles["lab"].tool_mode, None);
    assert_eq!(cat.profiles["lab"].pinned("s__echo"), Some(true));
    check_err(
        "version: 1\ngateway:\n  tool_mode: some\nservers:\n  s:\n    image: img:dev\n",
        "cat.yaml:3:14: gateway.tool_mode: tool mode `some` is not known; fix: use `all` (list every tool, the default) or `search` (list `find_tools` and `call_tool`)",
    );
}

#[test]
fn an_egress_network_lists_its_hosts_among_the_relaxations() {
    let cat = check_ok(&format!(
        "{HEAD}    network:\n      egress: [\"api.github.com\", \"*.example.com:8443\", \"172.30.0.0/16:80\"]\n      uplink: outside\n"
    ));
    let s = &cat.servers[0];
    let Network::Egress(egress) = &s.network else {
        panic!("not an egress network: {:?}", s.network);
    };
    assert_eq!(egress.uplink.as_deref(), Some("outside"));
    assert!(egress.allow.permits_host("api.github.com", 443));
    assert_eq!(s.network.mode(), None);
    assert_eq!(
        s.relaxations(),
        [
            "network egress through its proxy to: api.github.com:443, *.example.com:8443, 172.30.0.0/16:80"
        ]
    );
}

#[test]
fn bad_egress_entries_are_reported_where_they_are_written() {
    check_err(
        &format!("{HEAD}    network:\n      egress:\n        - api.github.com\n        - \"*\"\n"),
        "cat.yaml:8:11: servers.s.network.egress[1]: egress entry `*`: `*` may only open a wildcard (`*.example.com`); fix: list the hosts the server needs, or use `network: bridge` to allow everything",
    );
    check_err(
        &format!("{HEAD}    network: {{ egress: [] }}\n"),
        "cat.yaml:5:14: servers.s.network: `egress` lists no host; fix: list the hosts the server needs (`api.github.com:443`), or use `network: none`",
    );
    check_err(
        &format!("{HEAD}    network: {{ egress: [a.example.com], uplink: none }}\n"),
        "cat.yaml:5:49: servers.s.network.uplink: `uplink: none` leaves the egress proxy no way out; fix: name the network the proxy reaches the allowed hosts through, or leave `uplink` out for Docker's `bridge`",
    );
    check_err(
        &format!("{HEAD}    network: {{ egres: [a.example.com] }}\n"),
        "cat.yaml:5:16: servers.s.network: unknown field `egres`, expected `egress` or `uplink`; fix: remove the key or correct its spelling; the catalog reference is in README.md",
    );
}
