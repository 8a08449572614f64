//! The mux end to end in memory: test-server backends and an rmcp client,
//! all over `tokio::io::duplex`, in both protocol eras.

use std::time::Duration;

use mcpgw_backend::{Audience, Backend, Relays};
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

/// A test-server backend session, in the default era.
pub(crate) async fn backend(name: &str) -> Backend {
    open(
        name,
        mcpgw_testserver::in_memory(mcpgw_testserver::TestServer::new(0)),
    )
    .await
}

/// A backend session over `io`, in the default era.
async fn open(name: &str, io: tokio::io::DuplexStream) -> Backend {
    let (read, write) = tokio::io::split(io);
    Backend::connect(
        name,
        read,
        write,
        Duration::from_secs(5),
        Relays::default(),
        Audience::default(),
    )
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

/// SEP-2549: a `2026-07-28` client's lists and reads carry cache hints
/// (without a profile, `public`); a handshake-era client's carry none.
#[tokio::test]
async fn lists_and_reads_carry_cache_hints_for_a_stateless_client() {
    use rmcp::model::CacheScope;
    let stateless = gateway(ClientLifecycleMode::Discover {
        preferred_versions: vec![ProtocolVersion::V_2026_07_28],
    })
    .await;
    let tools = stateless.list_tools(None).await.unwrap();
    assert_eq!(
        (tools.ttl_ms, tools.cache_scope),
        (Some(handlers::LIST_TTL_MS), Some(CacheScope::Public))
    );
    let prompts = stateless.list_prompts(None).await.unwrap();
    assert_eq!(prompts.ttl_ms, Some(handlers::LIST_TTL_MS));
    let resources = stateless.list_resources(None).await.unwrap();
    assert_eq!(resources.cache_scope, Some(CacheScope::Public));
    let templates = stateless.list_resource_templates(None).await.unwrap();
    assert_eq!(templates.ttl_ms, Some(handlers::LIST_TTL_MS));
    let read = stateless
        .read_resource(ReadResourceRequestParams::new(
            mcpgw_testserver::RESOURCE_URI,
        ))
        .await
        .unwrap();
    // What the server said of its resource (rmcp's defaults: stale at
    // once, private) passes through: the gateway keeps no copy of it.
    assert_eq!(
        (read.ttl_ms, read.cache_scope),
        (Some(0), Some(CacheScope::Private))
    );

    let handshake = gateway(ClientLifecycleMode::Initialize).await;
    let tools = handshake.list_tools(None).await.unwrap();
    assert_eq!((tools.ttl_ms, tools.cache_scope), (None, None));
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
        let backend = open("big", mcpgw_testserver::in_memory(direct.clone())).await;
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

/// The relay path seen on the wire: a raw JSON-RPC client over a duplex
/// whose buffer is `buffer` bytes, so a client that does not read pushes
/// back on the gateway.
mod wire {
    use std::time::Duration;

    use rmcp::ServiceExt;
    use serde_json::{Value, json};
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, DuplexStream, ReadHalf, WriteHalf};

    use crate::{Mux, Slots};

    const CATALOG: &str = "
version: 1
servers:
  one:
    image: x
    concurrency: { in_flight: 64, queue: 512 }
";

    struct Raw {
        reader: BufReader<ReadHalf<DuplexStream>>,
        writer: WriteHalf<DuplexStream>,
    }

    impl Raw {
        async fn send(&mut self, message: Value) {
            let mut line = serde_json::to_vec(&message).unwrap();
            line.push(b'\n');
            self.writer.write_all(&line).await.unwrap();
        }

        async fn recv(&mut self) -> Value {
            let mut line = String::new();
            let read =
                tokio::time::timeout(Duration::from_secs(20), self.reader.read_line(&mut line))
                    .await
                    .expect("the gateway answers")
                    .unwrap();
            assert!(read > 0, "the gateway closed the session");
            serde_json::from_str(&line).unwrap()
        }

        /// Messages up to the answer to `id`, which comes last.
        async fn until_answer(&mut self, id: u64) -> Vec<Value> {
            let mut seen = Vec::new();
            loop {
                let message = self.recv().await;
                let done = message["id"] == id && message.get("method").is_none();
                seen.push(message);
                if done {
                    return seen;
                }
            }
        }

        /// Opens a handshake-era session that can answer elicitation.
        async fn initialize(&mut self) {
            self.send(
                json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
                    "protocolVersion": "2025-11-25",
                    "capabilities": {"elicitation": {}},
                    "clientInfo": {"name": "raw", "version": "1"},
                }}),
            )
            .await;
            assert!(self.recv().await["result"].is_object());
            self.send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
                .await;
        }
    }

    fn tool_call(id: u64, name: &str, arguments: Value) -> Value {
        let mut call = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                              "params": {"name": name}});
        call["params"]["arguments"] = arguments;
        call
    }

    fn text(answer: &Value) -> &str {
        answer["result"]["content"][0]["text"]
            .as_str()
            .unwrap_or_default()
    }

    /// The task that carries a server's pipes: killed, as a crash cuts
    /// them; its valve shut, as a server that stops reading its stdin.
    struct Pipes {
        task: tokio::task::JoinHandle<()>,
        open: tokio::sync::watch::Sender<bool>,
    }

    /// A mux whose server `one` is a test server spoken to in the
    /// stateless era, and a raw client on a duplex of `buffer` bytes.
    async fn gateway(buffer: usize) -> (Raw, Slots, Pipes) {
        gateway_with(buffer, CATALOG).await
    }

    async fn gateway_with(buffer: usize, catalog: &str) -> (Raw, Slots, Pipes) {
        use tokio::io::AsyncReadExt as _;
        let catalog = mcpgw_catalog::parse(
            catalog,
            std::path::Path::new("t.yaml"),
            &std::env::temp_dir(),
        )
        .unwrap();
        let (mux, slots) = Mux::new(&catalog);
        let (backend_io, near) = tokio::io::duplex(1 << 20);
        let far = mcpgw_testserver::in_memory(mcpgw_testserver::TestServer::new(0));
        let (open, mut is_open) = tokio::sync::watch::channel(true);
        let task = tokio::spawn(async move {
            let ((mut near_r, mut near_w), (mut far_r, mut far_w)) =
                (tokio::io::split(near), tokio::io::split(far));
            let up = async {
                let mut chunk = vec![0; 64 << 10];
                while is_open.wait_for(|open| *open).await.is_ok() {
                    let n = near_r.read(&mut chunk).await?;
                    if n == 0 {
                        break;
                    }
                    far_w.write_all(&chunk[..n]).await?;
                }
                Ok::<_, std::io::Error>(())
            };
            let down = tokio::io::copy(&mut far_r, &mut near_w);
            let _ = tokio::join!(up, down);
        });
        let pipes = Pipes { task, open };
        let backend = super::open("one", backend_io).await;
        backend.set_relay(slots.relay(0));
        let inventory = backend.inventory().await.unwrap();
        slots.ready(0, backend, inventory);
        let (client_io, gateway_io) = tokio::io::duplex(buffer);
        tokio::spawn(async move {
            let running = mux.serve(gateway_io).await.unwrap();
            let _ = running.waiting().await;
        });
        let (reader, writer) = tokio::io::split(client_io);
        let raw = Raw {
            reader: BufReader::new(reader),
            writer,
        };
        (raw, slots, pipes)
    }

    #[tokio::test]
    async fn every_progress_report_arrives_in_order_before_the_answer() {
        let (mut client, _slots, _server) = gateway(1 << 16).await;
        client.initialize().await;
        let steps = 300;
        let mut request = tool_call(1, "one__slow", json!({"ms": 0, "steps": steps}));
        request["params"]["_meta"] = json!({"progressToken": "mine"});
        client.send(request).await;
        let seen = client.until_answer(1).await;
        let (answer, reports) = seen.split_last().unwrap();
        assert_eq!(text(answer), "slept 0ms", "{answer}");
        let progress: Vec<f64> = reports
            .iter()
            .filter(|m| m["method"] == "notifications/progress")
            .inspect(|m| assert_eq!(m["params"]["progressToken"], "mine"))
            .map(|m| m["params"]["progress"].as_f64().unwrap())
            .collect();
        #[allow(clippy::cast_precision_loss)]
        let expected: Vec<f64> = (1..=steps).map(|s| s as f64).collect();
        assert_eq!(progress, expected);
    }

    #[tokio::test]
    async fn a_handshake_client_is_asked_what_a_stateless_server_needs_between_rounds() {
        let (mut client, _slots, _server) = gateway(1 << 16).await;
        client.initialize().await;
        client.send(tool_call(1, "one__ask", json!({}))).await;
        let asked = client.recv().await;
        assert_eq!(asked["method"], "elicitation/create", "{asked}");
        assert_eq!(asked["params"]["message"], "what is your name?");
        client
            .send(json!({"jsonrpc": "2.0", "id": asked["id"], "result": {
                "action": "accept", "content": {"name": "Ada"}}}))
            .await;
        let answer = client.until_answer(1).await.pop().unwrap();
        assert_eq!(text(&answer), "hello Ada", "{answer}");
        assert!(answer["result"].get("resultType").is_none(), "{answer}");
    }

    #[tokio::test]
    async fn a_stateless_client_gets_the_servers_own_input_request() {
        let (mut client, _slots, _server) = gateway(1 << 16).await;
        let meta = json!({
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {"elicitation": {}},
            "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"},
        });
        let mut first = tool_call(1, "one__ask", json!({}));
        first["params"]["_meta"] = meta.clone();
        client.send(first).await;
        let round = client.until_answer(1).await.pop().unwrap();
        assert_eq!(round["result"]["resultType"], "input_required", "{round}");
        let state = round["result"]["requestState"].clone();
        assert_eq!(
            state, "testserver-ask",
            "the backend's state passes through"
        );
        let mut retry = tool_call(2, "one__ask", json!({}));
        retry["params"]["_meta"] = meta;
        retry["params"]["requestState"] = state;
        retry["params"]["inputResponses"] =
            json!({"name": {"action": "accept", "content": {"name": "Grace"}}});
        client.send(retry).await;
        let answer = client.until_answer(2).await.pop().unwrap();
        assert_eq!(text(&answer), "hello Grace", "{answer}");
    }

    #[tokio::test]
    async fn a_client_that_reads_late_still_gets_every_answer_once_and_whole() {
        // 8 KiB between the gateway and a client that reads nothing until
        // all its calls are sent: the answers wait, none is lost.
        let (mut client, _slots, _server) = gateway(8 << 10).await;
        client.initialize().await;
        let calls: u64 = 200;
        let body = |i: u64| format!("{i:04}-{}", "x".repeat(40 << 10));
        let (mut reader, mut writer) = (client.reader, client.writer);
        let send = tokio::spawn(async move {
            for i in 1..=calls {
                let mut line =
                    serde_json::to_vec(&tool_call(i, "one__echo", json!({"text": body(i)})))
                        .unwrap();
                line.push(b'\n');
                writer.write_all(&line).await.unwrap();
            }
            writer
        });
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut answered = std::collections::BTreeMap::new();
        while answered.len() < usize::try_from(calls).unwrap() {
            let mut line = String::new();
            let read = tokio::time::timeout(Duration::from_secs(30), reader.read_line(&mut line))
                .await
                .expect("every call is answered")
                .unwrap();
            assert!(read > 0, "the gateway closed the session");
            let answer: Value = serde_json::from_str(&line).unwrap();
            let id = answer["id"].as_u64().unwrap();
            assert_eq!(text(&answer), body(id), "answer {id} is whole");
            assert!(answered.insert(id, ()).is_none(), "answer {id} came twice");
        }
        send.await.unwrap();
    }

    #[tokio::test]
    async fn a_server_that_dies_mid_call_is_reported_with_the_runtimes_reason() {
        let (mut client, slots, pipes) = gateway(1 << 16).await;
        client.initialize().await;
        client.send(tool_call(1, "one__hang", json!({}))).await;
        // The call is at the server once its stats count it.
        loop {
            client.send(tool_call(2, "one__stats", json!({}))).await;
            let stats = client.until_answer(2).await.pop().unwrap();
            if stats["result"]["structuredContent"]["hang"] == 1 {
                break;
            }
        }
        pipes.task.abort();
        slots.failed(0, "it exited with code 7");
        let answer = client.until_answer(1).await.pop().unwrap();
        let message = answer["error"]["message"].as_str().unwrap();
        assert_eq!(
            message,
            "server `one` failed during tools/call `one__hang`: it exited with code 7"
        );
        client
            .send(tool_call(3, "one__echo", json!({"text": "x"})))
            .await;
        let refused = client.until_answer(3).await.pop().unwrap();
        assert!(
            refused["error"]["message"]
                .as_str()
                .unwrap()
                .contains("is not available: it exited with code 7"),
            "{refused}"
        );
    }

    #[tokio::test]
    async fn a_server_that_stops_reading_gets_its_callers_clear_errors_never_silence() {
        let catalog = "
version: 1
servers:
  one:
    image: x
    call_timeout: 2s
    concurrency: { in_flight: 64, queue: 512 }
";
        let (mut client, _slots, pipes) = gateway_with(1 << 16, catalog).await;
        client.initialize().await;
        // The server stops reading: 40 calls of 64 KiB fill its pipe and
        // the gateway's outbox to it, and wait there.
        pipes.open.send_replace(false);
        let calls: u64 = 40;
        for id in 1..=calls {
            let text = format!("{id}-{}", "y".repeat(64 << 10));
            client
                .send(tool_call(id, "one__echo", json!({"text": text})))
                .await;
        }
        // Five are given up by the client; the others wait for their
        // deadline.
        for id in 1..=5 {
            client
                .send(
                    json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
                             "params": {"requestId": id, "reason": "the user gave up"}}),
                )
                .await;
        }
        let mut answered = std::collections::BTreeMap::new();
        while answered.len() < 35 {
            let answer = client.recv().await;
            let id = answer["id"].as_u64().unwrap();
            assert!(id > 5, "a cancelled call is not answered: {answer}");
            let message = answer["error"]["message"].as_str().unwrap_or_default();
            assert_eq!(
                message,
                format!(
                    "server `one` did not answer tools/call `one__echo` within 2s; the request was cancelled at the server"
                ),
                "{answer}"
            );
            assert!(answered.insert(id, ()).is_none(), "answer {id} came twice");
        }
        // The server reads again: what it was sent long ago is answered to
        // nobody, and a new call goes through.
        pipes.open.send_replace(true);
        client
            .send(tool_call(99, "one__echo", json!({"text": "after"})))
            .await;
        let after = client.until_answer(99).await;
        assert!(
            after.iter().all(|m| m["id"] == 99),
            "nothing else reaches the client: {after:?}"
        );
        assert_eq!(text(after.last().unwrap()), "after");
    }
}

#[tokio::test]
async fn requests_carrying_another_servers_secret_are_refused_however_written() {
    const VALUE: &str = "api-Zx81-Qm4r-value";
    let catalog = mcpgw_catalog::parse(
        "version: 1\nservers:\n  vault:\n    image: x\n    secrets: { API_TOKEN: api.token }\n  other:\n    image: x\n",
        std::path::Path::new("t.yaml"),
        &std::env::temp_dir(),
    )
    .unwrap();
    let (mux, slots) = Mux::new(&catalog);
    let [vault, other] = [&mux.shared.slots[0], &mux.shared.slots[1]];
    let check = |slot, text: &str| {
        mux.shared
            .refuse_foreign_secrets(slot, "the call", &call("echo", json!({ "text": text })))
            .map_err(|e| e.message.to_string())
    };
    // Until the values are known, nothing is forwarded unchecked.
    let unknown = check(other, "hello").unwrap_err();
    assert!(unknown.contains("could not check"), "{unknown}");

    let value = mcpgw_secrets::SecretString::from(VALUE);
    slots.set_secrets(mcpgw_secrets::LiveRedactor::new(Redactor::new([(
        "api.token",
        &value,
    )])));
    assert_eq!(check(other, "hello"), Ok(()));
    for text in [
        VALUE.to_string(),
        // One character escaped, as the client's own JSON would decode it.
        r"api-Zx81-\u0051m4r-value".to_string(),
        // JSON carried in a string, every character escaped.
        format!(
            r#"{{"token":"{}"}}"#,
            VALUE
                .chars()
                .map(|c| format!("\\u{:04x}", u32::from(c)))
                .collect::<String>()
        ),
        // A surrogate pair next to it changes nothing.
        r"😀 \ud83d\ude00 api-Zx81-Qm4r-valu\u0065".to_string(),
    ] {
        let refused = check(other, &text).unwrap_err();
        assert!(
            refused.contains("secret `api.token`, which server `other` is not given"),
            "{text}: {refused}"
        );
        assert!(!refused.contains(VALUE), "{refused}");
        assert_eq!(check(vault, &text), Ok(()), "{text}");
    }

    // What cannot be read cannot be checked: it is refused.
    struct Unreadable;
    impl serde::Serialize for Unreadable {
        fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            Err(serde::ser::Error::custom("not JSON"))
        }
    }
    let refused = mux
        .shared
        .refuse_foreign_secrets(other, "the call", &Unreadable)
        .unwrap_err();
    assert!(
        refused.message.contains("could not check it"),
        "{refused:?}"
    );
}

#[tokio::test]
async fn without_secrets_nothing_waits_for_their_values() {
    let catalog = mcpgw_catalog::parse(
        "version: 1\nservers:\n  plain:\n    image: x\n",
        std::path::Path::new("t.yaml"),
        &std::env::temp_dir(),
    )
    .unwrap();
    let (mux, _slots) = Mux::new(&catalog);
    let request = call("echo", json!({ "text": "hello" }));
    assert!(
        mux.shared
            .refuse_foreign_secrets(&mux.shared.slots[0], "the call", &request)
            .is_ok()
    );
}

/// The search index belongs to the routing table, so a server whose lists
/// change is searched anew: its new tools are found, its old ones not.
#[tokio::test]
async fn search_finds_what_a_server_lists_after_its_lists_change() {
    let catalog = mcpgw_catalog::parse(
        "version: 1\ngateway:\n  tool_mode: search\nservers:\n  one:\n    image: x\n",
        std::path::Path::new("t.yaml"),
        &std::env::temp_dir(),
    )
    .unwrap();
    let (mux, slots) = Mux::new(&catalog);
    let ready = async |generated: usize| {
        let io = mcpgw_testserver::in_memory(mcpgw_testserver::TestServer::new(generated));
        let b = open("one", io).await;
        let inventory = b.inventory().await.unwrap();
        slots.ready(0, b, inventory);
    };
    ready(0).await;
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    tokio::spawn(async move {
        let running = mux.serve(server_io).await.unwrap();
        let _ = running.waiting().await;
    });
    let client = ().serve(client_io).await.unwrap();
    let found = async |query: &str| -> Vec<String> {
        let result = client
            .call_tool(call("find_tools", json!({ "query": query })))
            .await
            .unwrap();
        let tools = result.structured_content.unwrap()["tools"].clone();
        tools
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(!found("tool_1").await.contains(&"one__tool_1".to_string()));
    ready(2).await;
    assert_eq!(
        found("tool_1").await.first().map(String::as_str),
        Some("one__tool_1")
    );
    ready(0).await;
    assert!(!found("tool_1").await.contains(&"one__tool_1".to_string()));
}
