//! Supervision against the real Docker engine, driven through `mcpgw run`
//! with the test server's fault modes: crashes, hangs, garbage, endless
//! lines, stderr floods, crash loops, resource bombs, and a gateway killed
//! without warning.

// Measured waits are reported on stderr alongside the gateway's log.
#![allow(clippy::print_stderr)]

mod harness;

use std::time::{Duration, Instant};

use harness::{Gateway, call, catalog, containers_of, text_of};
use serde_json::json;

const FAST_RESTARTS: &str = "
gateway:
  restart: { initial_backoff: 100ms, max_backoff: 2s, circuit_after: 4, circuit_open: 60s }
";

#[tokio::test]
async fn a_crash_mid_call_fails_that_call_at_once_and_the_server_comes_back() {
    let dir = catalog(&format!(
        "{FAST_RESTARTS}servers:\n  t:\n    image: mcpgw/testserver:dev\n    pull: never\n"
    ));
    let gw = Gateway::start(&dir).await;
    let began = Instant::now();
    let err = gw
        .client
        .call_tool(call("t__crash", json!({"code": 3})))
        .await
        .unwrap_err()
        .to_string();
    let waited = began.elapsed();
    eprintln!("crash reported after {waited:?}");
    assert!(
        waited < Duration::from_secs(3),
        "the error came after {waited:?}"
    );
    assert!(
        err.contains("server `t` failed during tools/call `t__crash`"),
        "{err}"
    );
    assert!(err.contains("exited with code 3"), "{err}");
    assert!(
        err.contains("testserver: crashing on request with code 3"),
        "stderr tail: {err}"
    );

    let echoed = gw
        .call_until_ok("t__echo", json!({"text": "back"}), Duration::from_secs(20))
        .await;
    assert_eq!(text_of(&echoed), "back");
    assert_eq!(
        containers_of(gw.pid()).await.len(),
        1,
        "the old container is gone"
    );
    gw.stop_with_eof().await;
}

#[tokio::test]
async fn a_hung_call_times_out_is_cancelled_and_the_server_stays_usable() {
    let dir = catalog(
        "servers:\n  t:\n    image: mcpgw/testserver:dev\n    pull: never\n    call_timeout: 1s\n",
    );
    let gw = Gateway::start(&dir).await;
    let err = gw
        .client
        .call_tool(call("t__hang", json!({})))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("server `t` did not answer tools/call `t__hang` within 1s; the request was cancelled at the server"),
        "{err}"
    );
    // The backend received the cancellation, and serves the next call.
    gw.wait_for_stat("t", "hang_cancelled", 1).await;
    let echoed = gw
        .client
        .call_tool(call("t__echo", json!({"text": "alive"})))
        .await
        .unwrap();
    assert_eq!(text_of(&echoed), "alive");
    gw.stop_with_eof().await;
}

#[tokio::test]
async fn garbage_on_stdout_is_skipped_and_logged() {
    let dir = catalog(
        "servers:\n  t:\n    image: mcpgw/testserver:dev\n    pull: never\n    env: { MCPGW_TEST_GARBAGE_AT_START: '1' }\n",
    );
    let gw = Gateway::start(&dir).await;
    let answer = gw
        .client
        .call_tool(call("t__garbage", json!({"lines": 200})))
        .await
        .unwrap();
    assert_eq!(text_of(&answer), "after garbage");
    let echoed = gw
        .client
        .call_tool(call("t__echo", json!({"text": "fine"})))
        .await
        .unwrap();
    assert_eq!(text_of(&echoed), "fine");
    let log = gw
        .wait_for_log("skipped a non-JSON line on stdout", Duration::from_secs(5))
        .await;
    assert!(log.contains("garbage before the session starts"), "{log}");
    let logged = log.matches("skipped a non-JSON line").count();
    assert!(
        logged <= 5,
        "garbage logging is rate-limited, logged {logged} lines"
    );
    gw.stop_with_eof().await;
}

#[tokio::test]
async fn an_endless_line_kills_only_that_backend() {
    let dir = catalog(&format!(
        "{FAST_RESTARTS}servers:\n  big:\n    image: mcpgw/testserver:dev\n    pull: never\n  other:\n    image: mcpgw/testserver:dev\n    pull: never\n"
    ));
    let gw = Gateway::start(&dir).await;
    let err = gw
        .client
        .call_tool(call("big__huge_line", json!({"bytes": 100 * 1024 * 1024})))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("server `big` failed during tools/call `big__huge_line`: it sent a line longer than 16777216 bytes on stdout"), "{err}");
    let echoed = gw
        .client
        .call_tool(call("other__echo", json!({"text": "unaffected"})))
        .await
        .unwrap();
    assert_eq!(text_of(&echoed), "unaffected");
    gw.call_until_ok("big__echo", json!({"text": "x"}), Duration::from_secs(20))
        .await;
    gw.stop_with_eof().await;
}

#[tokio::test]
async fn a_stderr_flood_is_rate_limited_and_harmless() {
    let dir = catalog("servers:\n  t:\n    image: mcpgw/testserver:dev\n    pull: never\n");
    let gw = Gateway::start(&dir).await;
    let flooded = gw
        .client
        .call_tool(call("t__stderr_flood", json!({"lines": 100_000})))
        .await
        .unwrap();
    assert_eq!(text_of(&flooded), "flooded");
    let echoed = gw
        .client
        .call_tool(call("t__echo", json!({"text": "ok"})))
        .await
        .unwrap();
    assert_eq!(text_of(&echoed), "ok");
    gw.client
        .call_tool(call("t__echo", json!({"text": "again"})))
        .await
        .unwrap();
    let log = gw.stderr_so_far();
    let logged = log.matches("stderr flood line").count();
    assert!(logged < 2_000, "{logged} flood lines reached the log");
    gw.stop_with_eof().await;
}

#[tokio::test]
async fn a_server_that_exits_at_once_backs_off_then_opens_the_circuit() {
    let dir = catalog(&format!(
        "{FAST_RESTARTS}servers:\n  loop:\n    image: mcpgw/testserver:dev\n    pull: never\n    env: {{ MCPGW_TEST_EXIT_AT_START: '1' }}\n  ok:\n    image: mcpgw/testserver:dev\n    pull: never\n"
    ));
    let gw = Gateway::start(&dir).await;
    let pid = gw.pid();
    // Watch the engine while the loop runs: never more than one container
    // for the failing server (plus one for `ok`).
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut most = 0;
    while !gw
        .stderr_so_far()
        .contains("circuit open after 4 failure(s) in a row")
    {
        assert!(
            Instant::now() < deadline,
            "the circuit never opened:\n{}",
            gw.stderr_so_far()
        );
        most = most.max(containers_of(pid).await.len());
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(most <= 2, "saw {most} containers at once");
    let log = gw.stderr_so_far();
    // Each backoff is jittered below a ceiling that doubles: 100, 200, 400 ms.
    for (failure, ceiling_ms) in [(1, 100), (2, 200), (3, 400)] {
        let line = log
            .lines()
            .find(|l| l.contains(&format!("(failure {failure} in a row)")))
            .unwrap_or_else(|| panic!("no line for failure {failure}:\n{log}"));
        let delay: u64 = line
            .split("restarting in ")
            .nth(1)
            .and_then(|rest| rest.split(" ms").next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no delay in {line}"));
        assert!(
            delay <= ceiling_ms,
            "failure {failure}: {delay} ms over {ceiling_ms} ms"
        );
    }
    // With the circuit open, calls fail at once and say why.
    let began = Instant::now();
    let err = gw
        .client
        .call_tool(call("loop__echo", json!({"text": "x"})))
        .await
        .unwrap_err()
        .to_string();
    assert!(began.elapsed() < Duration::from_secs(1));
    assert!(err.contains("circuit open"), "{err}");
    assert!(err.contains("exited with code 1"), "{err}");
    // The healthy server is untouched.
    gw.client
        .call_tool(call("ok__echo", json!({"text": "x"})))
        .await
        .unwrap();
    gw.stop_with_eof().await;
}

#[tokio::test]
async fn a_memory_bomb_is_stopped_by_the_memory_limit_and_the_error_says_so() {
    let dir = catalog(&format!(
        "{FAST_RESTARTS}servers:\n  t:\n    image: mcpgw/testserver:dev\n    pull: never\n    resources: {{ memory: 64m }}\n"
    ));
    let gw = Gateway::start(&dir).await;
    let err = gw
        .client
        .call_tool(call("t__memory_bomb", json!({})))
        .await
        .unwrap_err()
        .to_string();
    // Podman on cgroup v1 does not report OOM kills (README, "Podman").
    let expected = if harness::engine_is_podman().await {
        "exited with code 137 (SIGKILL: a kill, or its memory limit"
    } else {
        "killed for exceeding its memory limit"
    };
    assert!(err.contains(expected), "{err}");
    gw.call_until_ok("t__echo", json!({"text": "x"}), Duration::from_secs(20))
        .await;
    gw.stop_with_eof().await;
}

#[tokio::test]
async fn a_fork_bomb_is_stopped_by_the_pids_limit_and_the_error_says_so() {
    let dir = catalog(
        "servers:\n  t:\n    image: mcpgw/testserver:dev\n    pull: never\n    call_timeout: 3s\n    resources: { pids: 32 }\n",
    );
    let gw = Gateway::start(&dir).await;
    let err = gw
        .client
        .call_tool(call("t__fork_bomb", json!({})))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("did not answer tools/call `t__fork_bomb` within 3s"),
        "{err}"
    );
    assert!(
        err.contains("its container is at its pids limit (32 of 32 processes)"),
        "{err}"
    );
    let log = gw
        .wait_for_log("fork bomb stopped after", Duration::from_secs(5))
        .await;
    assert!(log.contains("Resource temporarily unavailable"), "{log}");
    gw.stop_with_eof().await;
}

#[tokio::test]
async fn a_killed_gateway_leaves_no_container_behind_a_new_run() {
    let dir = catalog(
        "servers:\n  one:\n    image: mcpgw/testserver:dev\n    pull: never\n  two:\n    image: mcpgw/testserver:dev\n    pull: never\n",
    );
    let first = Gateway::start(&dir).await;
    first.tool_names().await;
    assert_eq!(containers_of(first.pid()).await.len(), 2);
    let first_pid = first.kill().await;
    let second = Gateway::start(&dir).await;
    second.tool_names().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !containers_of(first_pid).await.is_empty() {
        assert!(
            Instant::now() < deadline,
            "containers of the killed gateway remain"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(containers_of(second.pid()).await.len(), 2);
    second.stop_with_eof().await;
}

#[tokio::test]
async fn above_its_bounds_a_busy_server_refuses_calls_at_once() {
    let dir = catalog(
        "servers:\n  t:\n    image: mcpgw/testserver:dev\n    pull: never\n    concurrency: { in_flight: 2, queue: 2 }\n",
    );
    let gw = std::sync::Arc::new(
        Gateway::start_with_env(
            &dir.path().join("catalog.yaml"),
            &[("MCPGW_LOG", "info,rmcp=warn,mcpgw_mux=debug".to_string())],
        )
        .await,
    );
    // Four slow calls fill the two places in flight and the two in the queue.
    let mut slow = Vec::new();
    for _ in 0..4 {
        let gw = gw.clone();
        slow.push(tokio::spawn(async move {
            gw.client
                .call_tool(call("t__slow", json!({"ms": 3000})))
                .await
        }));
    }
    gw.wait_for_log_count("call queued", 2, Duration::from_secs(2))
        .await;
    let began = Instant::now();
    let err = gw
        .client
        .call_tool(call("t__echo", json!({"text": "x"})))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        began.elapsed() < Duration::from_millis(500),
        "busy is immediate"
    );
    assert!(
        err.contains("server `t` is busy: 2 calls in flight and 2 waiting"),
        "{err}"
    );
    for call in slow {
        assert!(call.await.unwrap().is_ok(), "admitted calls complete");
    }
    gw.client
        .call_tool(call("t__echo", json!({"text": "x"})))
        .await
        .unwrap();
    let gw = std::sync::Arc::into_inner(gw).unwrap();
    gw.stop_with_eof().await;
}

#[tokio::test]
async fn an_on_demand_server_stops_when_unused_and_a_call_starts_it_again() {
    let dir = catalog(
        "servers:\n  t:\n    image: mcpgw/testserver:dev\n    pull: never\n    lifecycle: on-demand\n    idle_timeout: 1s\n",
    );
    let gw = Gateway::start(&dir).await;
    assert!(gw.tool_names().await.contains(&"t__echo".to_string()));
    gw.wait_for_log(
        "stopping an unused on-demand server",
        Duration::from_secs(10),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while !containers_of(gw.pid()).await.is_empty() {
        assert!(
            Instant::now() < deadline,
            "the idle container was not removed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Its tools stay listed while it is stopped; a call brings it back.
    assert!(gw.tool_names().await.contains(&"t__echo".to_string()));
    let echoed = gw
        .client
        .call_tool(call("t__echo", json!({"text": "woken"})))
        .await
        .unwrap();
    assert_eq!(text_of(&echoed), "woken");
    assert_eq!(
        containers_of(gw.pid()).await.len(),
        1,
        "one container, never one per call"
    );
    gw.client
        .call_tool(call("t__echo", json!({"text": "again"})))
        .await
        .unwrap();
    assert_eq!(containers_of(gw.pid()).await.len(), 1);
    gw.stop_with_eof().await;
}

#[tokio::test]
async fn a_frozen_backend_misses_pings_and_is_restarted() {
    let dir = catalog(
        "
gateway:
  health: { interval: 300ms, timeout: 300ms, misses: 2 }
  restart: { initial_backoff: 100ms }
servers:
  t:
    image: mcpgw/testserver:dev
    pull: never
    call_timeout: 1s
    env: { MCPGW_TEST_LEGACY: '1' }
",
    );
    let gw = Gateway::start(&dir).await;
    // A handshake-era backend serves through the gateway like any other.
    let echoed = gw
        .client
        .call_tool(call("t__echo", json!({"text": "legacy"})))
        .await
        .unwrap();
    assert_eq!(text_of(&echoed), "legacy");
    let log = gw.stderr_so_far();
    assert!(log.contains("protocol=2025-11-25"), "{log}");

    let err = gw
        .client
        .call_tool(call("t__freeze", json!({})))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("did not answer tools/call `t__freeze` within 1s"),
        "{err}"
    );
    gw.wait_for_log(
        "it missed 2 pings in a row, so the gateway restarted it",
        Duration::from_secs(10),
    )
    .await;
    let echoed = gw
        .call_until_ok(
            "t__echo",
            json!({"text": "thawed"}),
            Duration::from_secs(20),
        )
        .await;
    assert_eq!(text_of(&echoed), "thawed");
    gw.stop_with_eof().await;
}

#[tokio::test]
async fn when_the_engine_goes_away_and_comes_back_servers_are_restarted() {
    let dir = catalog(
        "gateway:\n  restart: { initial_backoff: 100ms, circuit_after: 3 }\nservers:\n  t:\n    image: mcpgw/testserver:dev\n    pull: never\n",
    );
    let proxy = harness::EngineProxy::start(dir.path()).await;
    let docker_host = format!("unix://{}", proxy.path.display());
    let gw = Gateway::start_with_env(
        &dir.path().join("catalog.yaml"),
        &[("DOCKER_HOST", docker_host)],
    )
    .await;
    gw.client
        .call_tool(call("t__echo", json!({"text": "before"})))
        .await
        .unwrap();

    proxy.cut();
    gw.wait_for_log("the Docker engine is unavailable", Duration::from_secs(10))
        .await;
    // Down for a while: more failed starts than the circuit allows, which
    // must not open it, since the server is not at fault.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let err = gw
        .client
        .call_tool(call("t__echo", json!({"text": "during"})))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("the Docker engine is unavailable"), "{err}");

    proxy.restore();
    let echoed = gw
        .call_until_ok("t__echo", json!({"text": "after"}), Duration::from_secs(30))
        .await;
    assert_eq!(text_of(&echoed), "after");
    assert!(
        !gw.stderr_so_far().contains("circuit open"),
        "an engine outage opened the circuit"
    );
    gw.stop_with_eof().await;
}

#[tokio::test]
async fn progress_extends_a_call_up_to_the_hard_maximum() {
    let dir = catalog(
        "gateway:\n  max_call_timeout: 2500ms\nservers:\n  t:\n    image: mcpgw/testserver:dev\n    pull: never\n    call_timeout: 1s\n",
    );
    let gw = Gateway::start(&dir).await;
    // 1.8 s of work reporting progress every 300 ms: each report restarts
    // the 1 s timeout.
    let slept = gw
        .client
        .call_tool(call("t__slow", json!({"ms": 1800, "steps": 6})))
        .await
        .unwrap();
    assert_eq!(text_of(&slept), "slept 1800ms");
    // Without progress the 1 s timeout holds.
    let err = gw
        .client
        .call_tool(call("t__slow", json!({"ms": 1800, "steps": 1})))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("within 1s"), "{err}");
    // With progress, the hard maximum still holds.
    let err = gw
        .client
        .call_tool(call("t__slow", json!({"ms": 6000, "steps": 20})))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("did not answer tools/call `t__slow`"), "{err}");
    gw.stop_with_eof().await;
}

#[tokio::test]
async fn a_response_nobody_asked_for_is_dropped_not_delivered() {
    let dir = catalog("servers:\n  t:\n    image: mcpgw/testserver:dev\n    pull: never\n");
    let gw = std::sync::Arc::new(Gateway::start(&dir).await);
    // Calls in flight while the stray response arrives must each get their own.
    let mut calls = Vec::new();
    for n in 0..20 {
        let gw = gw.clone();
        calls.push(tokio::spawn(async move {
            let payload = format!("mine {n}");
            let result = gw
                .client
                .call_tool(call("t__echo", json!({"text": payload, "delay_ms": 300})))
                .await
                .unwrap();
            assert_eq!(text_of(&result), payload);
        }));
    }
    let stray = gw
        .client
        .call_tool(call("t__stray_response", json!({})))
        .await
        .unwrap();
    assert_eq!(text_of(&stray), "after the stray response");
    for call in calls {
        call.await.unwrap();
    }
    let gw = std::sync::Arc::into_inner(gw).unwrap();
    gw.stop_with_eof().await;
}

#[tokio::test]
async fn ps_lists_live_containers_and_gc_removes_orphans() {
    let dir = catalog("servers:\n  psgc:\n    image: mcpgw/testserver:dev\n    pull: never\n");
    let mcpgw = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_mcpgw"))
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mcpgw {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let live = Gateway::start(&dir).await;
    live.tool_names().await;
    let listing = mcpgw(&["ps"]);
    let row = listing
        .lines()
        .find(|l| l.contains(&format!(" {}@", live.pid())))
        .unwrap_or_else(|| panic!("no row for gateway {}:\n{listing}", live.pid()));
    assert!(
        row.contains("psgc") && row.trim_end().ends_with("running"),
        "{row}"
    );
    // A container whose gateway was killed, and whose server ignores the
    // end of its stdin (here: frozen), stays behind until gc.
    let doomed = Gateway::start(&dir).await;
    doomed.tool_names().await;
    let _ = tokio::time::timeout(
        Duration::from_millis(500),
        doomed.client.call_tool(call("psgc__freeze", json!({}))),
    )
    .await;
    let doomed_pid = doomed.kill().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let listing = mcpgw(&["ps"]);
    assert!(
        listing
            .lines()
            .any(|l| l.contains(&format!(" {doomed_pid}@")) && l.trim_end().ends_with("orphan")),
        "{listing}"
    );
    let removed = mcpgw(&["gc"]);
    assert!(
        removed.starts_with("removed ") && !removed.starts_with("removed 0 "),
        "{removed}"
    );
    assert!(containers_of(doomed_pid).await.is_empty());
    assert_eq!(
        containers_of(live.pid()).await.len(),
        1,
        "gc leaves live gateways alone"
    );
    live.stop_with_eof().await;
}

#[tokio::test]
async fn a_client_cancellation_reaches_a_containerized_backend() {
    let dir = catalog("servers:\n  t:\n    image: mcpgw/testserver:dev\n    pull: never\n");
    let gw = Gateway::start(&dir).await;
    // Up first: the client's 500 ms are for the call, not the start-up.
    assert!(gw.tool_names().await.contains(&"t__hang".to_string()));
    let request = rmcp::model::ClientRequest::CallToolRequest(rmcp::model::CallToolRequest::new(
        call("t__hang", json!({})),
    ));
    let handle = gw
        .client
        .peer()
        .send_request_with_option(
            request,
            rmcp::service::PeerRequestOptions::with_timeout(Duration::from_millis(500)),
        )
        .await
        .unwrap();
    assert!(
        handle.await_response().await.is_err(),
        "the client gives up"
    );
    gw.wait_for_stat("t", "hang_cancelled", 1).await;
    gw.stop_with_eof().await;
}
