//! The limiter under paused time: bursts, refill, per-client isolation,
//! shared tool and server buckets, the order buckets are spent in, idle
//! buckets dropped; and through the mux, a refused call that never
//! reaches its server, counted as `rate_limited`.

use std::time::Duration;

use rmcp::model::CallToolRequestParams;
use rmcp::{ClientLifecycleMode, ServiceExt};
use serde_json::json;
use tokio::time::advance;

use super::*;

fn catalog(yaml: &str) -> Catalog {
    mcpgw_catalog::parse(yaml, std::path::Path::new("t.yaml"), &std::env::temp_dir()).unwrap()
}

fn limits(yaml: &str) -> Limits {
    Limits::new(&catalog(yaml)).expect("the catalog declares limits")
}

const SERVERS: &str = "servers:\n  s:\n    image: x\n    LIMITS\n  other:\n    image: x\n";

/// A catalog whose server `s` has `limits` (and `other` none), after
/// `head` (gateway and profiles).
fn with_server(head: &str, server: &str) -> Limits {
    let servers = SERVERS.replace("LIMITS", &format!("limits: {server}"));
    limits(&format!("version: 1\n{head}{servers}"))
}

/// How many of `n` requests from `client` to server `index` (for `tool`)
/// pass, and the path of the limit that refused the last one refused.
fn run(
    limits: &Limits,
    n: usize,
    index: usize,
    tool: Option<&str>,
    client: &str,
    profile: Option<&str>,
) -> (usize, Option<String>) {
    let key = client.to_string();
    let mut passed = 0;
    let mut refused = None;
    for _ in 0..n {
        match limits.check(index, tool, Who::new(&key, profile)) {
            Ok(()) => passed += 1,
            Err(limited) => refused = Some(limited.path().to_string()),
        }
    }
    (passed, refused)
}

fn retry_after(limits: &Limits, client: &str) -> Duration {
    let key = client.to_string();
    limits
        .check(0, None, Who::new(&key, None))
        .expect_err("the bucket is empty")
        .retry_after()
}

#[test]
fn a_catalog_without_limits_checks_nothing() {
    assert!(Limits::new(&catalog("version: 1\nservers:\n  s:\n    image: x\n")).is_none());
}

#[tokio::test(start_paused = true)]
async fn a_burst_passes_then_the_bucket_refills_at_its_rate() {
    let limits = with_server(
        "gateway:\n  limits: { per_client: { rate: 10/min, burst: 3 } }\n",
        "{}",
    );
    let gateway = Some("gateway.limits.per_client".to_string());
    assert_eq!(
        run(&limits, 5, 0, None, "alice", None),
        (3, gateway.clone())
    );
    // One token every 6 s.
    assert_eq!(retry_after(&limits, "alice"), Duration::from_secs(6));
    advance(Duration::from_secs(5)).await;
    assert_eq!(retry_after(&limits, "alice"), Duration::from_secs(1));
    advance(Duration::from_secs(1)).await;
    assert_eq!(
        run(&limits, 2, 0, None, "alice", None),
        (1, gateway.clone())
    );
    // A long pause refills the bucket up to its burst, no further.
    advance(Duration::from_secs(600)).await;
    assert_eq!(run(&limits, 5, 0, None, "alice", None), (3, gateway));
}

#[tokio::test(start_paused = true)]
async fn each_client_has_its_own_bucket_and_a_profile_replaces_the_gateways() {
    let limits = with_server(
        "gateway:\n  limits: { per_client: { rate: 3/min } }\n\
         profiles:\n  ci:\n    tools: [\"*\"]\n    limits: { per_client: { rate: 1/min } }\n",
        "{}",
    );
    let gateway = Some("gateway.limits.per_client".to_string());
    let ci = Some("profiles.ci.limits.per_client".to_string());
    assert_eq!(
        run(&limits, 4, 0, None, "alice", None),
        (3, gateway.clone())
    );
    assert_eq!(run(&limits, 4, 0, None, "bob", None), (3, gateway.clone()));
    assert_eq!(run(&limits, 1, 0, None, "alice", None), (0, gateway));
    // Each of a profile's clients has a bucket of its own, the profile's.
    assert_eq!(
        run(&limits, 2, 0, None, "carol", Some("ci")),
        (1, ci.clone())
    );
    assert_eq!(run(&limits, 2, 0, None, "dave", Some("ci")), (1, ci));
    // A limit of the gateway or a profile holds across servers.
    assert_eq!(run(&limits, 1, 1, None, "alice", None).0, 0);
}

#[tokio::test(start_paused = true)]
async fn a_tool_limit_is_shared_by_every_client_and_concerns_only_that_tool() {
    let limits = with_server(
        "",
        "{ tools: { echo: { rate: 2/min }, add: { per_client: { rate: 1/min } } } }",
    );
    let echo = Some("servers.s.limits.tools.echo".to_string());
    assert_eq!(run(&limits, 1, 0, Some("echo"), "alice", None), (1, None));
    assert_eq!(run(&limits, 1, 0, Some("echo"), "bob", None), (1, None));
    assert_eq!(run(&limits, 1, 0, Some("echo"), "carol", None), (0, echo));
    // Other tools, prompts and other servers are not limited by it.
    assert_eq!(
        run(&limits, 10, 0, Some("stats"), "carol", None),
        (10, None)
    );
    assert_eq!(run(&limits, 10, 0, None, "carol", None), (10, None));
    assert_eq!(run(&limits, 10, 1, Some("echo"), "carol", None), (10, None));
    // A tool's per-client limit: one each.
    let add = Some("servers.s.limits.tools.add.per_client".to_string());
    assert_eq!(
        run(&limits, 2, 0, Some("add"), "alice", None),
        (1, add.clone())
    );
    assert_eq!(run(&limits, 2, 0, Some("add"), "bob", None), (1, add));
}

#[tokio::test(start_paused = true)]
async fn a_server_limit_is_shared_by_everyone_and_concerns_only_that_server() {
    let limits = with_server("", "{ server: { rate: 3/min } }");
    let server = Some("servers.s.limits.server".to_string());
    assert_eq!(run(&limits, 2, 0, Some("echo"), "alice", None), (2, None));
    assert_eq!(run(&limits, 1, 0, None, "bob", None), (1, None));
    assert_eq!(run(&limits, 1, 0, Some("add"), "carol", None), (0, server));
    assert_eq!(run(&limits, 10, 1, None, "carol", None), (10, None));
    advance(Duration::from_secs(20)).await;
    assert_eq!(run(&limits, 2, 0, None, "carol", None).0, 1);
}

#[tokio::test(start_paused = true)]
async fn a_client_refused_by_its_own_bucket_spends_nothing_it_shares() {
    let limits = with_server(
        "",
        "{ per_client: { rate: 1/min }, server: { rate: 2/min }, tools: { echo: { rate: 2/min } } }",
    );
    let own = Some("servers.s.limits.per_client".to_string());
    assert_eq!(
        run(&limits, 100, 0, Some("echo"), "runaway", None),
        (1, own)
    );
    // The runaway spent one token of the shared buckets, not a hundred.
    assert_eq!(run(&limits, 1, 0, Some("echo"), "bob", None), (1, None));
    let tool = Some("servers.s.limits.tools.echo".to_string());
    assert_eq!(run(&limits, 1, 0, Some("echo"), "carol", None), (0, tool));
}

#[tokio::test(start_paused = true)]
async fn buckets_that_have_refilled_are_dropped_by_the_next_sweep() {
    let limits = with_server(
        "gateway:\n  limits: { per_client: { rate: 1/min } }\n",
        "{}",
    );
    for n in 0..1000 {
        assert_eq!(run(&limits, 1, 0, None, &format!("client-{n}"), None).0, 1);
    }
    assert_eq!(limits.buckets(), 1000);
    // A sweep is due, but no bucket has refilled yet: all are kept.
    advance(SWEEP_EVERY).await;
    assert_eq!(run(&limits, 1, 0, None, "late", None).0, 1);
    assert_eq!(limits.buckets(), 1001);
    // Refilled at 60 s, the thousand are dropped once they have been full
    // for one more replenish period (governor's `retain_recent` keeps them
    // that long): not at 61 s, by 121 s.
    advance(Duration::from_secs(51)).await;
    assert_eq!(run(&limits, 1, 0, None, "later", None).0, 1);
    assert_eq!(limits.buckets(), 1002);
    advance(Duration::from_secs(60)).await;
    assert_eq!(run(&limits, 1, 0, None, "latest", None).0, 1);
    assert_eq!(limits.buckets(), 3, "`late`, `later` and `latest`");
    // A dropped client starts again with a full bucket, which is what it
    // had.
    assert_eq!(run(&limits, 2, 0, None, "client-7", None).0, 1);
    assert_eq!(run(&limits, 1, 0, None, "latest", None).0, 0);
}

#[tokio::test(start_paused = true)]
async fn the_refusal_names_the_limit_and_when_to_retry() {
    let limits = with_server("", "{ per_client: { rate: 10/min, burst: 1 } }");
    let key = "alice".to_string();
    limits.check(0, None, Who::new(&key, None)).unwrap();
    advance(Duration::from_millis(500)).await;
    let error = limits
        .check(0, None, Who::new(&key, None))
        .unwrap_err()
        .error();
    assert_eq!(error.code, ErrorCode(RATE_LIMITED));
    assert_eq!(
        error.message,
        "Rate limit exceeded: `servers.s.limits.per_client` allows 10/min, burst 1 for each client; retry after 6 s"
    );
    // 5.5 s, rounded up to whole seconds as ToolHive does.
    assert_eq!(
        error.data,
        Some(json!({
            "retryAfterSeconds": 6,
            "limit": {
                "path": "servers.s.limits.per_client",
                "scope": "client",
                "rate": "10/min",
                "burst": 1,
            },
        }))
    );
}

/// Through the mux, as the stdio front serves it: the call over the limit
/// is refused before it is sent (the server counts only the others), with
/// the error's data, and counted in the metrics.
#[tokio::test(start_paused = true)]
async fn a_call_over_the_limit_never_reaches_its_server() {
    let catalog = catalog(
        "version: 1\nservers:\n  t:\n    image: x\n    limits: { tools: { echo: { rate: 2/min } } }\n",
    );
    let (mux, slots) = Mux::new(&catalog);
    let mut registry = prometheus_client::registry::Registry::default();
    mux.register_metrics(&mut registry);
    let (read, write) = tokio::io::split(mcpgw_testserver::in_memory(
        mcpgw_testserver::TestServer::new(0),
    ));
    let backend = mcpgw_backend::Backend::connect(
        "t",
        read,
        write,
        Duration::from_secs(5),
        mcpgw_backend::Relays::default(),
        mcpgw_backend::Audience::default(),
    )
    .await
    .unwrap();
    let inventory = backend.inventory().await.unwrap();
    slots.ready(0, backend, inventory);
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    tokio::spawn(async move {
        let running = mux.serve(server_io).await.unwrap();
        let _ = running.waiting().await;
    });
    use rmcp::ClientServiceExt;
    let client = ().serve_with_lifecycle(client_io, ClientLifecycleMode::Initialize).await.unwrap();
    let echo = || {
        let args = json!({"text": "hi"}).as_object().cloned().unwrap();
        CallToolRequestParams::new("t__echo").with_arguments(args)
    };
    for _ in 0..2 {
        client.call_tool(echo()).await.unwrap();
    }
    let refused = client.call_tool(echo()).await.unwrap_err();
    let rmcp::ServiceError::McpError(error) = refused else {
        panic!("an error from the gateway: {refused}");
    };
    assert_eq!(error.code, ErrorCode(RATE_LIMITED));
    let data = error.data.unwrap();
    assert_eq!(data["retryAfterSeconds"], 30, "{data}");
    assert_eq!(
        data["limit"]["path"], "servers.t.limits.tools.echo",
        "{data}"
    );
    // Other tools are not limited; the server saw two calls of echo.
    let stats = client
        .call_tool(CallToolRequestParams::new("t__stats"))
        .await
        .unwrap();
    assert_eq!(stats.structured_content.unwrap()["echo"], 2);
    let mut metrics = String::new();
    prometheus_client::encoding::text::encode(&mut metrics, &registry).unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l == "mcpgw_refused_requests_total{reason=\"rate_limited\"} 1"),
        "{metrics}"
    );
    // Refilled, the tool answers again.
    advance(Duration::from_secs(30)).await;
    client.call_tool(echo()).await.unwrap();
}
