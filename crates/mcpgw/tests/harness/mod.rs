//! Test harness: runs the `mcpgw` binary with a catalog, connects an rmcp
//! client to its stdio, and inspects the Docker engine for leftovers.

#![allow(dead_code, unreachable_pub)]
// The gateway's log is echoed so a failing test shows what mcpgw said.
#![allow(clippy::print_stderr)]

use std::collections::HashMap;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::RunningService;
use rmcp::{RoleClient, ServiceExt};
use tokio::io::AsyncBufReadExt;
use tokio::process::{Child, Command};

/// The longest a requested shutdown may take (the contract says 10 s).
pub const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(10);

/// Writes a catalog (with `version: 1` prepended) to a fresh directory.
pub fn catalog(body: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("catalog.yaml"),
        format!("version: 1\n{body}"),
    )
    .unwrap();
    dir
}

pub fn call(name: &str, args: serde_json::Value) -> CallToolRequestParams {
    let serde_json::Value::Object(args) = args else {
        panic!("arguments must be a JSON object")
    };
    CallToolRequestParams::new(name.to_string()).with_arguments(args)
}

pub fn text_of(result: &CallToolResult) -> String {
    result.content[0]
        .as_text()
        .expect("a text result")
        .text
        .clone()
}

/// A running `mcpgw run` with an MCP client on its stdio.
pub struct Gateway {
    pub client: RunningService<RoleClient, ()>,
    child: Child,
    stderr: Arc<Mutex<String>>,
    /// Every byte the gateway wrote to its stdout, as the client read it.
    stdout: Arc<Mutex<Vec<u8>>>,
}

/// Copies what it reads into a shared buffer.
struct Tee<R> {
    inner: R,
    sink: Arc<Mutex<Vec<u8>>>,
}

impl<R: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Tee<R> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        if let std::task::Poll::Ready(Ok(())) = &polled {
            self.sink
                .lock()
                .unwrap()
                .extend_from_slice(&buf.filled()[before..]);
        }
        polled
    }
}

/// What the engine said when first asked: its API version and whether it
/// is Podman. Asked once per test binary: Podman's `/version` takes over
/// half a second (it runs conmon and the OCI runtime), long enough to miss
/// what a test looks for (an on-demand container's 1 s idle window).
struct Engine {
    version: bollard::ClientVersion,
    podman: bool,
}

static ENGINE: tokio::sync::OnceCell<Engine> = tokio::sync::OnceCell::const_new();

/// bollard's local default: `DOCKER_HOST` when it is a Unix socket.
fn local_socket() -> String {
    std::env::var("DOCKER_HOST")
        .ok()
        .filter(|host| host.starts_with("unix://"))
        .unwrap_or_else(|| "unix:///var/run/docker.sock".to_string())
}

async fn engine() -> &'static Engine {
    ENGINE
        .get_or_init(|| async {
            let docker = bollard::Docker::connect_with_local_defaults()
                .expect("these tests need a Docker engine: cannot connect to it");
            let podman = docker
                .version()
                .await
                .expect("these tests need a Docker engine, and none answered")
                .components
                .unwrap_or_default()
                .iter()
                .any(|c| c.name == "Podman Engine");
            let docker = docker
                .negotiate_version()
                .await
                .expect("these tests need a Docker engine, and none answered");
            Engine {
                version: docker.client_version(),
                podman,
            }
        })
        .await
}

pub async fn docker() -> bollard::Docker {
    // A client per call: each test has its own runtime, which a client's
    // pooled connections would not outlive.
    let docker = bollard::Docker::connect_with_unix(&local_socket(), 120, &engine().await.version)
        .expect("these tests need a Docker engine: cannot connect to it");
    docker
        .ping()
        .await
        .expect("these tests need a Docker engine, and none answered the ping");
    docker
}

/// The containers (any state) of the gateway with process id `pid`.
async fn listed(pid: u32) -> Vec<bollard::models::ContainerSummary> {
    use bollard::query_parameters::ListContainersOptionsBuilder;
    let filters = HashMap::from([("label".to_string(), vec![format!("io.mcpgw.pid={pid}")])]);
    let options = ListContainersOptionsBuilder::default()
        .all(true)
        .filters(&filters)
        .build();
    let docker = docker().await;
    // Podman's transient `stopped` state fails bollard's parse (as in
    // mcpgw-docker's own listing): ask again.
    for _ in 0..20 {
        match docker.list_containers(Some(options.clone())).await {
            Err(bollard::errors::Error::JsonDataError { .. }) => {
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            listed => return listed.unwrap(),
        }
    }
    panic!("the engine's container list never parsed")
}

/// Whether the engine these tests run against is Podman (its
/// Docker-compatible API), whose few differences some tests expect.
pub async fn engine_is_podman() -> bool {
    engine().await.podman
}

/// The ids of the containers (any state) started by the gateway with
/// process id `pid`.
pub async fn containers_of(pid: u32) -> Vec<String> {
    listed(pid).await.into_iter().filter_map(|c| c.id).collect()
}

/// How many containers (any state) of the gateway with process id `pid`
/// each server has.
pub async fn containers_by_server(pid: u32) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for container in listed(pid).await {
        let server = container
            .labels
            .and_then(|l| l.get("io.mcpgw.server").cloned())
            .unwrap_or_default();
        *counts.entry(server).or_insert(0) += 1;
    }
    counts
}

/// The `mcpgw` binary with `env` (which may override the log level), its
/// stdio piped, killed when dropped.
pub fn mcpgw_command(env: &[(&str, String)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mcpgw"));
    command
        .env("MCPGW_LOG", "info,rmcp=warn")
        .env("NO_COLOR", "1")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

impl Gateway {
    pub async fn start(dir: &tempfile::TempDir) -> Self {
        Self::start_with(&dir.path().join("catalog.yaml")).await
    }

    pub async fn start_with(catalog: &Path) -> Self {
        Self::start_with_env(catalog, &[]).await
    }

    pub async fn start_with_env(catalog: &Path, env: &[(&str, String)]) -> Self {
        docker().await;
        let mut child = mcpgw_command(env)
            .args(["run", "--catalog"])
            .arg(catalog)
            .spawn()
            .expect("the mcpgw binary runs");
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
        let sink = stderr.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("[mcpgw] {line}");
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let raw = Arc::new(Mutex::new(Vec::new()));
        let stdout = Tee {
            inner: child.stdout.take().unwrap(),
            sink: raw.clone(),
        };
        let stdin = child.stdin.take().unwrap();
        let client = tokio::time::timeout(Duration::from_secs(30), ().serve((stdout, stdin)))
            .await
            .expect("mcpgw answers initialize promptly")
            .expect("an MCP session with mcpgw");
        Self {
            client,
            child,
            stderr,
            stdout: raw,
        }
    }

    /// Everything the gateway has sent the client so far, as text.
    pub fn client_bytes_so_far(&self) -> String {
        String::from_utf8_lossy(&self.stdout.lock().unwrap()).into_owned()
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("mcpgw is running")
    }

    pub fn stderr_so_far(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits until the gateway's log contains `needle`, up to `limit`.
    pub async fn wait_for_log(&self, needle: &str, limit: Duration) -> String {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let log = self.stderr_so_far();
            if log.contains(needle) {
                return log;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the gateway did not log {needle:?} within {limit:?}; it logged:\n{log}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the gateway's log contains `needle` `count` times, up to
    /// `limit`.
    pub async fn wait_for_log_count(&self, needle: &str, count: usize, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let log = self.stderr_so_far();
            if log.matches(needle).count() >= count {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the gateway did not log {needle:?} {count} times within {limit:?}; it logged:\n{log}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Polls the test server `server`'s `stats` tool until its count for
    /// `key` reaches `count`, up to 5 seconds.
    pub async fn wait_for_stat(&self, server: &str, key: &str, count: u64) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let stats = self
                .client
                .call_tool(call(&format!("{server}__stats"), serde_json::json!({})))
                .await
                .unwrap();
            if stats.structured_content.as_ref().unwrap()[key] == count {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{server}'s `{key}` never reached {count}: {stats:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Calls `name` until it succeeds, up to `limit`; returns the result.
    pub async fn call_until_ok(
        &self,
        name: &str,
        args: serde_json::Value,
        limit: Duration,
    ) -> CallToolResult {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match self.client.call_tool(call(name, args.clone())).await {
                Ok(result) => return result,
                Err(err) => assert!(
                    tokio::time::Instant::now() < deadline,
                    "{name} still failing after {limit:?}: {err}"
                ),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Kills the gateway without letting it clean up.
    pub async fn kill(mut self) -> u32 {
        let pid = self.pid();
        self.child.kill().await.unwrap();
        pid
    }

    pub async fn tool_names(&self) -> Vec<String> {
        self.client
            .list_all_tools()
            .await
            .unwrap()
            .into_iter()
            .map(|t| t.name.to_string())
            .collect()
    }

    /// Closes the gateway's stdin, as a client does when it quits.
    pub async fn stop_with_eof(self) -> ExitStatus {
        let Self {
            client, mut child, ..
        } = self;
        // Cancelling the client drops its transport: mcpgw's stdin closes.
        let _ = client.cancel().await;
        wait(&mut child).await
    }

    /// Sends `signal` to the gateway.
    pub async fn stop_with_signal(mut self, signal: i32) -> ExitStatus {
        let pid = self.pid();
        let status = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .unwrap();
        assert!(status.success());
        let status = wait(&mut self.child).await;
        let _ = self.client.cancel().await;
        status
    }
}

async fn wait(child: &mut Child) -> ExitStatus {
    tokio::time::timeout(SHUTDOWN_DEADLINE, child.wait())
        .await
        .expect("mcpgw shuts down within 10 seconds")
        .unwrap()
}

/// A stand-in for the Docker engine's socket that forwards to the real one
/// and can be cut off and restored: to the gateway, the engine goes away
/// (every API call and attach stream fails) and comes back.
pub struct EngineProxy {
    pub path: std::path::PathBuf,
    up: Arc<std::sync::atomic::AtomicBool>,
    connections: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl EngineProxy {
    pub async fn start(dir: &Path) -> Self {
        let path = dir.join("engine.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let up = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let connections: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
        let (accept_up, accept_connections) = (up.clone(), connections.clone());
        let accept = tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                if !accept_up.load(std::sync::atomic::Ordering::Acquire) {
                    continue; // refused: dropped at once
                }
                let forward = tokio::spawn(async move {
                    if let Ok(mut engine) =
                        tokio::net::UnixStream::connect("/var/run/docker.sock").await
                    {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut engine).await;
                    }
                });
                accept_connections.lock().unwrap().push(forward);
            }
        });
        Self {
            path,
            up,
            connections,
            accept,
        }
    }

    /// The engine goes away: open connections are cut, new ones refused.
    pub fn cut(&self) {
        self.up.store(false, std::sync::atomic::Ordering::Release);
        for connection in self.connections.lock().unwrap().drain(..) {
            connection.abort();
        }
    }

    /// The engine is back.
    pub fn restore(&self) {
        self.up.store(true, std::sync::atomic::Ordering::Release);
    }
}

impl Drop for EngineProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}
