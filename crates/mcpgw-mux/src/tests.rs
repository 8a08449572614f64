//! The mux end to end in memory: test-server backends and an rmcp client,
//! all over `tokio::io::duplex`, in both protocol eras.

use std::time::Duration;

use mcpgw_backend::{Backend, Relays};
use rmcp::model::{
    CallToolRequestParams, GetPromptRequestParams, ProtocolVersion, ReadResourceRequestParams,
};
use rmcp::service::RunningService;
use rmcp::{ClientLifecycleMode, RoleClient, ServiceExt};
use serde_json::json;

use super::*;

const CATALOG: &str = "
version: 1
servers:
  one:
    image: x
    tools: { deny: [crash] }
  two:
    image: x
    tools: { allow: [echo, add] }
  broken:
    image: x
";

async fn backend(name: &str) -> Backend {
    let client_io = mcpgw_testserver::in_memory(mcpgw_testserver::TestServer::new(0));
    let (read, write) = tokio::io::split(client_io);
    Backend::connect(name, read, write, Duration::from_secs(5), Relays::default())
        .await
        .unwrap()
}

async fn gateway(lifecycle: ClientLifecycleMode) -> RunningService<RoleClient, ()> {
    let catalog = mcpgw_catalog::parse(
        CATALOG,
        std::path::Path::new("t.yaml"),
        &std::env::temp_dir(),
    )
    .unwrap();
    let (mux, slots) = Mux::new(&catalog);
    for (i, name) in ["one", "two"].into_iter().enumerate() {
        let b = backend(name).await;
        let inventory = b.inventory().await.unwrap();
        slots.ready(i, b, inventory);
    }
    slots.failed(2, "its image is missing");
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    tokio::spawn(async move {
        let running = mux.serve(server_io).await.unwrap();
        let _ = running.waiting().await;
    });
    use rmcp::ClientServiceExt;
    ().serve_with_lifecycle(client_io, lifecycle).await.unwrap()
}

fn call(name: &str, args: serde_json::Value) -> CallToolRequestParams {
    let serde_json::Value::Object(args) = args else {
        panic!("args must be an object")
    };
    CallToolRequestParams::new(name.to_string()).with_arguments(args)
}

async fn check_gateway(client: &RunningService<RoleClient, ()>) {
    let tools: Vec<String> = client
        .list_all_tools()
        .await
        .unwrap()
        .iter()
        .map(|t| t.name.to_string())
        .collect();
    assert!(
        tools.contains(&"one__echo".to_string()) && tools.contains(&"two__add".to_string()),
        "{tools:?}"
    );
    assert!(
        !tools.iter().any(|t| t == "one__crash" || t == "two__probe"),
        "hidden tools are not listed: {tools:?}"
    );
    assert_eq!(tools.iter().filter(|t| t.starts_with("two__")).count(), 2);

    let echoed = client
        .call_tool(call("one__echo", json!({"text": "hi"})))
        .await
        .unwrap();
    assert_eq!(echoed.content[0].as_text().unwrap().text, "hi");
    let sum = client
        .call_tool(call("two__add", json!({"a": 2, "b": 3})))
        .await
        .unwrap();
    assert_eq!(sum.structured_content, Some(json!({"sum": 5.0})));

    let refused = client
        .call_tool(call("one__crash", json!({})))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains(
            "tool `one__crash` is not allowed: the catalog's `servers.one.tools` hides it"
        ),
        "{refused}"
    );
    let unknown = client
        .call_tool(call("nope__x", json!({})))
        .await
        .unwrap_err()
        .to_string();
    assert!(unknown.contains("unknown tool `nope__x`"), "{unknown}");

    let prompt = client
        .get_prompt(GetPromptRequestParams::new("two__greet").with_arguments(
            serde_json::Map::from_iter([("name".to_string(), json!("mcpgw"))]),
        ))
        .await
        .unwrap();
    assert!(format!("{:?}", prompt.messages).contains("Hello, mcpgw!"));
    let read = client
        .read_resource(ReadResourceRequestParams::new(
            mcpgw_testserver::RESOURCE_URI,
        ))
        .await
        .unwrap();
    assert!(format!("{:?}", read.contents).contains("served by mcpgw-testserver"));
}

#[tokio::test]
async fn serves_a_legacy_client() {
    let client = gateway(ClientLifecycleMode::Initialize).await;
    assert!(
        client
            .peer_info()
            .unwrap()
            .protocol_version
            .has_initialize()
    );
    check_gateway(&client).await;
}

#[tokio::test]
async fn serves_a_stateless_client() {
    let client = gateway(ClientLifecycleMode::Discover {
        preferred_versions: vec![ProtocolVersion::V_2026_07_28],
    })
    .await;
    assert_eq!(
        client.peer_info().unwrap().protocol_version,
        ProtocolVersion::V_2026_07_28
    );
    check_gateway(&client).await;
}

#[tokio::test]
async fn merged_lists_are_paged_and_keep_every_field() {
    let catalog = mcpgw_catalog::parse(
        "version: 1\nservers:\n  big:\n    image: x\n",
        std::path::Path::new("t.yaml"),
        &std::env::temp_dir(),
    )
    .unwrap();
    let (mux, slots) = Mux::new(&catalog);
    let (client_io, server_io) = tokio::io::duplex(1 << 20);
    let direct = mcpgw_testserver::TestServer::new(250);
    let own = {
        let (read, write) = tokio::io::split(mcpgw_testserver::in_memory(direct.clone()));
        let backend = Backend::connect(
            "big",
            read,
            write,
            Duration::from_secs(5),
            Relays::default(),
        )
        .await
        .unwrap();
        let inventory = backend.inventory().await.unwrap();
        let own = inventory.tools.clone();
        slots.ready(0, backend, inventory);
        own
    };
    tokio::spawn(async move {
        let running = mux.serve(server_io).await.unwrap();
        let _ = running.waiting().await;
    });
    let client = ().serve(client_io).await.unwrap();

    let mut listed = Vec::new();
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let page = client
            .list_tools(Some(
                rmcp::model::PaginatedRequestParams::default().with_cursor(cursor),
            ))
            .await
            .unwrap();
        assert!(page.tools.len() <= PAGE_SIZE);
        listed.extend(page.tools);
        pages += 1;
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(pages, own.len().div_ceil(PAGE_SIZE));
    assert_eq!(listed.len(), own.len());
    for (mine, theirs) in listed.iter().zip(&own) {
        let mut renamed = theirs.clone();
        renamed.name = format!("big__{}", theirs.name).into();
        assert_eq!(mine, &renamed, "every field but the name survives");
    }
    let add = listed.iter().find(|t| t.name == "big__add").unwrap();
    assert!(add.title.is_some() && add.output_schema.is_some() && add.annotations.is_some());
    assert!(add.icons.is_some() && add.meta.is_some());

    let bad = client
        .list_tools(Some(
            rmcp::model::PaginatedRequestParams::default().with_cursor(Some("x".into())),
        ))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        bad.contains("-32602") && bad.contains("invalid cursor"),
        "{bad}"
    );
}

#[tokio::test]
async fn a_client_cancellation_reaches_the_backend() {
    let client = gateway(ClientLifecycleMode::Initialize).await;
    let request = rmcp::model::ClientRequest::CallToolRequest(rmcp::model::CallToolRequest::new(
        call("one__hang", json!({})),
    ));
    let handle = client
        .peer()
        .send_request_with_option(
            request,
            rmcp::service::PeerRequestOptions::with_timeout(Duration::from_millis(300)),
        )
        .await
        .unwrap();
    assert!(
        handle.await_response().await.is_err(),
        "the client gives up"
    );
    for _ in 0..50 {
        let stats = client
            .call_tool(call("one__stats", json!({})))
            .await
            .unwrap();
        if stats.structured_content.unwrap()["hang_cancelled"] == 1 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the backend never saw the client's cancellation");
}
