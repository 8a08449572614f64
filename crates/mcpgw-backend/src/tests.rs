//! In-memory sessions against the test server, over `tokio::io::duplex`.

use std::time::Duration;

use super::*;

/// A backend session named `name` over `io`, in the default era.
async fn open(
    name: &str,
    io: tokio::io::DuplexStream,
    init_timeout: Duration,
) -> Result<Backend, BackendError> {
    let (read, write) = tokio::io::split(io);
    Backend::connect(
        name,
        read,
        write,
        init_timeout,
        Relays::default(),
        Audience::default(),
    )
    .await
}

#[tokio::test]
async fn opens_a_session_and_reads_the_inventory() {
    // Served by hand (not `in_memory`) so the test can check that the
    // server's session ends cleanly once the backend closes.
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    let server = tokio::spawn(async move {
        use rmcp::ServiceExt;
        let running = mcpgw_testserver::TestServer::new(2)
            .serve(server_io)
            .await
            .unwrap();
        running.waiting().await.unwrap();
    });
    let backend = open("t", client_io, Duration::from_secs(5)).await.unwrap();
    let inventory = backend.inventory().await.unwrap();
    let names: Vec<_> = inventory.tools.iter().map(|t| t.name.to_string()).collect();
    assert!(
        names.contains(&"echo".to_string()) && names.contains(&"tool_1".to_string()),
        "{names:?}"
    );
    assert_eq!(inventory.prompts[0].name, "greet");
    assert_eq!(inventory.resources[0].uri, mcpgw_testserver::RESOURCE_URI);
    assert!(!backend.is_closed());
    backend.close();
    tokio::time::timeout(Duration::from_secs(5), backend.closed())
        .await
        .unwrap();
    server.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_silent_backend_times_out() {
    let (client_io, _server_io) = tokio::io::duplex(1024);
    let err = open("mute", client_io, Duration::from_secs(3))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "server `mute` did not answer the MCP handshake within 3s"
    );
}

#[tokio::test]
async fn a_backend_that_exits_fails_the_handshake() {
    let (client_io, server_io) = tokio::io::duplex(1024);
    drop(server_io);
    let err = open("gone", client_io, Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("server `gone` failed the MCP handshake"),
        "{err}"
    );
}

/// A `tools/call` of `name` with no arguments.
fn call(name: &str) -> rmcp::model::ClientRequest {
    rmcp::model::ClientRequest::CallToolRequest(rmcp::model::CallToolRequest::new(
        rmcp::model::CallToolRequestParams::new(name.to_string()),
    ))
}

/// Long enough never to be reached in these tests.
const LONG: Deadline = Deadline {
    idle: Duration::from_secs(30),
    max_total: Duration::from_secs(30),
};

/// How many `hang` calls the test server saw cancelled, once it has seen
/// `want` (or after five seconds of asking).
async fn hang_cancelled(backend: &Backend, want: u64) -> u64 {
    let mut seen = 0;
    for _ in 0..100 {
        let stats = backend
            .request(call("stats"), LONG, None, None, None)
            .await
            .unwrap();
        let rmcp::model::ServerResult::CallToolResult(stats) = stats else {
            panic!("{stats:?}")
        };
        // Absent until the first cancellation.
        seen = stats.structured_content.unwrap()["hang_cancelled"]
            .as_u64()
            .unwrap_or(0);
        if seen == want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    seen
}

#[tokio::test]
async fn dropping_a_request_cancels_it_at_the_backend() {
    let client_io = mcpgw_testserver::in_memory(mcpgw_testserver::TestServer::new(0));
    let backend = open("t", client_io, Duration::from_secs(5)).await.unwrap();
    let hang = backend.request(call("hang"), LONG, None, None, None);
    assert!(
        tokio::time::timeout(Duration::from_millis(300), hang)
            .await
            .is_err()
    );
    assert_eq!(
        hang_cancelled(&backend, 1).await,
        1,
        "the backend saw the cancellation"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_abandoned_at_once_are_all_cancelled_at_the_server() {
    // Each request is dropped right after rmcp has queued it: its
    // cancellation must reach the server after the request, or the server
    // ignores it and the call hangs for ever. (The reordering this guards
    // against, `sent.rs`, is not forced here; its mechanism is tested
    // there.)
    let client_io = mcpgw_testserver::in_memory(mcpgw_testserver::TestServer::new(0));
    let backend = open("t", client_io, Duration::from_secs(5)).await.unwrap();
    const ABANDONED: u64 = 20;
    for _ in 0..ABANDONED {
        let hang = backend.request(call("hang"), LONG, None, None, None);
        // Polled once (the request is queued), then dropped.
        assert!(tokio::time::timeout(Duration::ZERO, hang).await.is_err());
    }
    assert_eq!(
        hang_cancelled(&backend, ABANDONED).await,
        ABANDONED,
        "every abandoned request was cancelled at the server"
    );
}
