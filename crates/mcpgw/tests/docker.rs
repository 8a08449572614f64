//! `mcpgw run` against the real Docker engine, driven by an rmcp client over
//! the gateway's stdio: hardening seen from inside a container, allowlists,
//! failing backends, and clean-up on stdin EOF, SIGINT and SIGTERM.
//!
//! These tests need a Docker engine and the images `make images` builds.
//! Without an engine they fail, loudly, with a message that says so.

mod harness;

use harness::{Gateway, call, catalog, containers_by_server, containers_of, text_of};
use serde_json::json;

#[tokio::test]
async fn hardening_is_visible_from_inside_the_container() {
    let dir = catalog(
        "
servers:
  t:
    image: mcpgw/testserver:dev
    pull: never
",
    );
    let gw = Gateway::start(&dir).await;
    let probe = gw
        .client
        .call_tool(call("t__probe", json!({})))
        .await
        .unwrap();
    let report = probe
        .structured_content
        .expect("probe reports structured content");
    assert_eq!(
        report["cap_eff"], "0000000000000000",
        "all capabilities dropped: {report}"
    );
    assert_eq!(report["cap_prm"], "0000000000000000", "{report}");
    assert_eq!(report["cap_bnd"], "0000000000000000", "{report}");
    assert_eq!(report["no_new_privs"], "1", "{report}");
    assert_eq!(report["root_writable"], false, "read-only root: {report}");
    assert_eq!(report["tmp_writable"], true, "writable /tmp: {report}");
    assert_eq!(
        report["interfaces"],
        json!(["lo"]),
        "no network but loopback: {report}"
    );
    assert_eq!(report["pids_max"], "256", "{report}");
    assert_eq!(
        report["memory_max"],
        (512 * 1024 * 1024).to_string(),
        "{report}"
    );
    assert_eq!(report["cpu_max"], "100000", "one CPU: {report}");
    assert_eq!(report["docker_socket_visible"], false, "{report}");
    assert_eq!(
        report["uid"], "65534",
        "non-root when the image names no user: {report}"
    );
    assert_ne!(
        report["pid"], 1,
        "init runs as pid 1, not the server: {report}"
    );
    gw.stop_with_eof().await;
}

#[tokio::test]
async fn catalog_limits_and_user_reach_the_container() {
    let dir = catalog(
        "
servers:
  t:
    image: mcpgw/testserver:dev
    pull: never
    user: '1234:4321'
    resources: { memory: 64m, pids: 32, cpus: 0.5 }
    env: { GREETING: hello }
",
    );
    let gw = Gateway::start(&dir).await;
    let probe = gw
        .client
        .call_tool(call("t__probe", json!({})))
        .await
        .unwrap();
    let report = probe.structured_content.unwrap();
    assert_eq!(report["uid"], "1234", "{report}");
    assert_eq!(report["gid"], "4321", "{report}");
    assert_eq!(report["pids_max"], "32", "{report}");
    assert_eq!(
        report["memory_max"],
        (64 * 1024 * 1024).to_string(),
        "{report}"
    );
    assert_eq!(report["cpu_max"], "50000", "{report}");
    let env = gw
        .client
        .call_tool(call("t__env", json!({"name": "GREETING"})))
        .await
        .unwrap();
    assert_eq!(text_of(&env), "hello");
    gw.stop_with_eof().await;
}

#[tokio::test]
async fn allowlists_hide_tools_and_refuse_calls_before_the_backend() {
    let dir = catalog(
        "
servers:
  a:
    image: mcpgw/testserver:dev
    pull: never
    tools: { allow: [echo, stats, 'a*'], deny: [add] }
  b:
    image: mcpgw/testserver:dev
    pull: never
    tools: { deny: [echo] }
",
    );
    let gw = Gateway::start(&dir).await;
    let tools = gw.tool_names().await;
    assert!(tools.contains(&"a__echo".to_string()), "{tools:?}");
    assert!(
        !tools.contains(&"a__add".to_string()),
        "deny applies after allow: {tools:?}"
    );
    assert!(
        !tools.contains(&"a__probe".to_string()),
        "not allowed: {tools:?}"
    );
    assert!(!tools.contains(&"b__echo".to_string()), "{tools:?}");
    assert!(tools.contains(&"b__probe".to_string()), "{tools:?}");

    for refused in ["a__add", "a__probe", "b__echo"] {
        let err = gw
            .client
            .call_tool(call(refused, json!({"text": "x", "a": 1, "b": 2})))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("is not allowed"), "{refused}: {err}");
    }
    // The backends never received the refused calls.
    let stats_a = gw
        .client
        .call_tool(call("a__stats", json!({})))
        .await
        .unwrap();
    assert_eq!(stats_a.structured_content.unwrap(), json!({"stats": 1}));
    let stats_b = gw
        .client
        .call_tool(call("b__stats", json!({})))
        .await
        .unwrap();
    assert_eq!(stats_b.structured_content.unwrap(), json!({"stats": 1}));
    gw.stop_with_eof().await;
}

#[tokio::test]
async fn a_failing_backend_does_not_take_down_the_others() {
    let dir = catalog(
        "
gateway:
  init_timeout: 3s
servers:
  good:
    image: mcpgw/testserver:dev
    pull: never
  exits:
    image: mcpgw/testserver:dev
    pull: never
    env: { MCPGW_TEST_EXIT_AT_START: '7' }
  mute:
    image: mcpgw/testserver:dev
    pull: never
    env: { MCPGW_TEST_NEVER_INITIALIZE: '1' }
  missing:
    image: mcpgw/does-not-exist:dev
    pull: never
",
    );
    let gw = Gateway::start(&dir).await;
    let tools = gw.tool_names().await;
    assert!(tools.iter().all(|t| t.starts_with("good__")), "{tools:?}");
    assert!(tools.contains(&"good__echo".to_string()));
    let echoed = gw
        .client
        .call_tool(call("good__echo", json!({"text": "still here"})))
        .await
        .unwrap();
    assert_eq!(text_of(&echoed), "still here");
    // The failed ones are reported with their cause.
    let log = gw.stderr_so_far();
    assert!(
        log.contains("container exited with code 7")
            && log.contains("testserver: exiting at start with code 7"),
        "{log}"
    );
    assert!(
        log.contains("server `mute` did not answer the MCP handshake within 3s"),
        "{log}"
    );
    assert!(
        log.contains("image `mcpgw/does-not-exist:dev` is not present locally"),
        "{log}"
    );
    // The good server keeps its container; the failing ones have at most
    // the one of a restart in progress, never an accumulation.
    let containers = containers_by_server(gw.pid()).await;
    assert_eq!(containers.get("good"), Some(&1), "{containers:?}");
    assert!(containers.values().all(|&n| n == 1), "{containers:?}");
    assert!(!containers.contains_key("missing"), "{containers:?}");
    gw.stop_with_eof().await;
}

#[tokio::test]
async fn stdin_eof_removes_every_container() {
    cleanup_after(None).await;
}

#[tokio::test]
async fn sigint_removes_every_container() {
    cleanup_after(Some(nix_signal::SIGINT)).await;
}

#[tokio::test]
async fn sigterm_removes_every_container() {
    cleanup_after(Some(nix_signal::SIGTERM)).await;
}

mod nix_signal {
    pub(crate) const SIGINT: i32 = 2;
    pub(crate) const SIGTERM: i32 = 15;
}

async fn cleanup_after(signal: Option<i32>) {
    let dir = catalog(
        "
servers:
  one:
    image: mcpgw/testserver:dev
    pull: never
  two:
    image: mcpgw/testserver:dev
    pull: never
  three:
    image: mcpgw/testserver:dev
    pull: never
",
    );
    let gw = Gateway::start(&dir).await;
    let tools = gw.tool_names().await;
    for server in ["one", "two", "three"] {
        assert!(tools.contains(&format!("{server}__echo")), "{tools:?}");
    }
    let pid = gw.pid();
    assert_eq!(
        containers_of(pid).await.len(),
        3,
        "one container per server"
    );
    let status = match signal {
        None => gw.stop_with_eof().await,
        Some(sig) => gw.stop_with_signal(sig).await,
    };
    assert!(
        status.success(),
        "mcpgw exits 0 on a requested shutdown: {status:?}"
    );
    assert!(
        containers_of(pid).await.is_empty(),
        "no container left after shutdown"
    );
}

/// Podman names what is built, tagged or loaded into it `localhost/NAME:TAG`;
/// a catalog's `NAME:TAG` (with the default `pull: missing`) runs it, and
/// nothing is pulled. To Docker, `localhost/` is a registry: the short name
/// is another image, missing (so the catalog there says `pull: never`, and
/// nothing is asked of Docker Hub).
#[tokio::test]
async fn a_local_podman_image_is_found_by_its_short_name_without_a_pull() {
    use bollard::query_parameters::{RemoveImageOptionsBuilder, TagImageOptionsBuilder};
    let podman = harness::engine_is_podman().await;
    let docker = harness::docker().await;
    // Named per process, so that concurrent runs on one engine do not meet.
    let repo = format!("mcpgw-try-{}/testserver", std::process::id());
    docker
        .tag_image(
            "mcpgw/testserver:dev",
            Some(
                TagImageOptionsBuilder::default()
                    .repo(&format!("localhost/{repo}"))
                    .tag("dev")
                    .build(),
            ),
        )
        .await
        .expect("the test server image is tagged");
    let pull = if podman { "" } else { "\n    pull: never" };
    let dir = catalog(&format!("servers:\n  try:\n    image: {repo}:dev{pull}\n"));
    let mut command = harness::mcpgw_command(&[]);
    if podman {
        command.args(["--runtime", "podman"]);
    }
    command
        .args(["call", "--catalog"])
        .arg(dir.path().join("catalog.yaml"))
        .args(["try__echo", r#"{"text":"hi"}"#])
        .stdin(std::process::Stdio::null());
    let out = tokio::time::timeout(std::time::Duration::from_secs(60), command.output())
        .await
        .expect("mcpgw call ends")
        .unwrap();
    let removed = docker
        .remove_image(
            &format!("localhost/{repo}:dev"),
            Some(RemoveImageOptionsBuilder::default().noprune(true).build()),
            None,
        )
        .await;
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    if podman {
        assert!(out.status.success(), "{stdout}\n{stderr}");
        assert!(stdout.contains(r#""text": "hi""#), "{stdout}");
        assert!(!stderr.contains("pulling image"), "{stderr}");
    } else {
        assert!(!out.status.success(), "{stdout}\n{stderr}");
        assert!(
            stderr.contains(&format!("image `{repo}:dev`")) && stderr.contains("pull: never"),
            "{stderr}"
        );
    }
    removed.expect("the tag is removed");
}
