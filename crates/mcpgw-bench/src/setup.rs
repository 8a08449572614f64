//! The setups the workloads measure: catalogs, gateways over stdio and HTTP
//! (mcpgw, and mcp-proxy when it is installed), a backend container reached
//! directly, and what the machine is.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, bail};
use mcpgw_docker::DockerRuntime;
use mcpgw_secrets::Injection;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::process::{Child, Command};

use crate::rpc::LineClient;

/// A server the workloads measure, in a container of its own.
#[derive(Debug, Clone)]
pub(crate) struct Backend {
    /// What the tables call it.
    pub(crate) label: &'static str,
    pub(crate) image: String,
    /// Overrides the image's entrypoint.
    pub(crate) entrypoint: Option<Vec<String>>,
    /// The comparisons' call counts are divided by this: a slow server's
    /// rounds take about as long as a fast one's.
    pub(crate) share: usize,
}

impl Backend {
    /// mcpgw's own test server (`crates/mcpgw-testserver`).
    pub(crate) fn rust(image: &str) -> Self {
        Self {
            label: "the Rust test server",
            image: image.to_string(),
            entrypoint: None,
            share: 1,
        }
    }

    /// A server written with the official Python SDK (`scripts/sdk-server.py`).
    pub(crate) fn python(image: &str) -> Self {
        Self {
            label: "the Python SDK server",
            image: image.to_string(),
            entrypoint: Some(vec![
                "/opt/mcp/bin/python".to_string(),
                "/opt/sdk/server.py".to_string(),
            ]),
            share: 6,
        }
    }

    /// Its catalog entry (indented under `servers:`) as `name`.
    fn entry(&self, name: &str) -> String {
        let mut text = format!(
            "  {name}:\n    image: {}\n    pull: never\n    concurrency: {{ in_flight: 512, queue: 8192 }}\n",
            self.image
        );
        if let Some(entrypoint) = &self.entrypoint {
            let quoted: Vec<String> = entrypoint.iter().map(|a| format!("{a:?}")).collect();
            let _ = writeln!(text, "    entrypoint: [{}]", quoted.join(", "));
        }
        text
    }

    /// Its image and command, as `docker run` would be given them.
    pub(crate) fn describe(&self) -> String {
        match &self.entrypoint {
            Some(entrypoint) => format!("`{}` running `{}`", self.image, entrypoint.join(" ")),
            None => format!("`{}`", self.image),
        }
    }
}

/// The protocol era a client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Era {
    /// `2025-11-25`, opened with `initialize`.
    Handshake,
    /// `2026-07-28`: no handshake, every request carries its `_meta`.
    Stateless,
}

impl Era {
    pub(crate) const BOTH: [Self; 2] = [Self::Handshake, Self::Stateless];

    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Handshake => "handshake-era client",
            Self::Stateless => "2026-07-28 client",
        }
    }
}

/// What every Docker-backed workload shares.
#[derive(Debug)]
pub(crate) struct Bench {
    gateway: PathBuf,
    /// The Rust test server, which the start-up, listing and session
    /// workloads use.
    pub(crate) rust: Backend,
    /// The backends the overhead and throughput workloads compare.
    pub(crate) backends: Vec<Backend>,
    /// The `mcp-proxy` binary, if there is one.
    pub(crate) mcp_proxy: Option<PathBuf>,
    runtime: DockerRuntime,
    dir: tempfile::TempDir,
    direct: tokio::sync::Mutex<Vec<String>>,
}

/// A gateway process.
#[derive(Debug)]
pub(crate) struct Gateway {
    child: Child,
    pub(crate) pid: u32,
}

impl Bench {
    pub(crate) async fn new(
        gateway: PathBuf,
        rust: Backend,
        backends: Vec<Backend>,
        mcp_proxy: Option<PathBuf>,
    ) -> anyhow::Result<Self> {
        if !gateway.exists() {
            bail!(
                "no mcpgw binary at {}: build it with `cargo build --release -p mcpgw` (make bench does), or pass --gateway",
                gateway.display()
            );
        }
        let runtime = DockerRuntime::connect()
            .await
            .context("the benchmarks start containers: no Docker engine is reachable")?;
        Ok(Self {
            gateway,
            rust,
            backends,
            mcp_proxy,
            runtime,
            dir: tempfile::tempdir()?,
            direct: tokio::sync::Mutex::default(),
        })
    }

    /// A catalog of `servers` test servers, `s0` to `s<n-1>`, each offering
    /// `generated` extra tools, with room for many calls at once.
    pub(crate) fn catalog(&self, servers: usize, generated: usize) -> anyhow::Result<PathBuf> {
        let mut text = "version: 1\ngateway: { init_timeout: 60s }\nservers:\n".to_string();
        for i in 0..servers {
            text.push_str(&self.rust.entry(&format!("s{i}")));
            if generated > 0 {
                let _ = writeln!(text, "    env: {{ MCPGW_TEST_TOOLS: \"{generated}\" }}");
            }
        }
        self.write(&format!("catalog-{servers}-{generated}.yaml"), &text)
    }

    /// A catalog of one server, `s0`, that is `backend`.
    pub(crate) fn catalog_of(&self, backend: &Backend) -> anyhow::Result<PathBuf> {
        let text = format!(
            "version: 1\ngateway: {{ init_timeout: 60s }}\nservers:\n{}",
            backend.entry("s0")
        );
        let name: String = backend
            .image
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        self.write(&format!("catalog-of-{name}.yaml"), &text)
    }

    /// Writes `text` to the file `name`, whole: the catalog of a backend
    /// is written again while processes started before read it.
    fn write(&self, name: &str, text: &str) -> anyhow::Result<PathBuf> {
        let path = self.dir.path().join(name);
        let mut staged = tempfile::NamedTempFile::new_in(self.dir.path())?;
        std::io::Write::write_all(&mut staged, text.as_bytes())?;
        staged.persist(&path)?;
        Ok(path)
    }

    /// `backend` in a container of its own, spoken to over its attached
    /// stdio by a client of `era` (initialized, for a handshake-era one).
    pub(crate) async fn direct(&self, backend: &Backend, era: Era) -> anyhow::Result<LineClient> {
        let path = self.catalog_of(backend)?;
        let catalog = mcpgw_catalog::load(&path)?;
        let mut direct = self.direct.lock().await;
        // Numbered as sessions, so that their names differ.
        let number = direct.len() as u64;
        // Reserve the slot, so that containers started at once differ too.
        direct.push(String::new());
        drop(direct);
        let container = mcpgw_supervisor::launch(
            &self.runtime,
            &catalog.servers[0],
            &Injection::default(),
            Some(number),
        )
        .await?;
        #[allow(clippy::cast_possible_truncation)]
        {
            self.direct.lock().await[number as usize].clone_from(&container.id);
        }
        let client = LineClient::new(container.stdio.stdout, container.stdio.stdin);
        match era {
            Era::Stateless => Ok(client.stateless()),
            Era::Handshake => {
                client.initialize().await?;
                Ok(client)
            }
        }
    }

    /// `mcpgw run --catalog CATALOG` over stdio, not yet initialized.
    pub(crate) fn stdio(&self, catalog: &Path) -> anyhow::Result<(Gateway, LineClient)> {
        let mut command = Command::new(&self.gateway);
        command.args(["run", "--catalog"]).arg(catalog);
        self.spawn(command)
    }

    /// A bare relay process in front of a new container of `backend`.
    pub(crate) fn relay(&self, backend: &Backend) -> anyhow::Result<(Gateway, LineClient)> {
        let mut command = Command::new(std::env::current_exe()?);
        command.arg("--relay").arg(self.catalog_of(backend)?);
        self.spawn(command)
    }

    fn spawn(&self, command: Command) -> anyhow::Result<(Gateway, LineClient)> {
        let mut gateway = Gateway::start(command, true)?;
        let stdin = gateway.child.stdin.take().context("no stdin")?;
        let stdout = gateway.child.stdout.take().context("no stdout")?;
        Ok((gateway, LineClient::new(stdout, stdin)))
    }

    /// `mcpgw run --catalog CATALOG --transport http`, ready; and its URL.
    pub(crate) async fn http(&self, catalog: &Path) -> anyhow::Result<(Gateway, String)> {
        let port = free_port()?;
        let mut command = Command::new(&self.gateway);
        command
            .args(["run", "--transport", "http", "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("--catalog")
            .arg(catalog);
        let gateway = Gateway::start(command, false)?;
        let authority = format!("127.0.0.1:{port}");
        wait_ready(&authority, "the HTTP gateway").await?;
        Ok((gateway, format!("http://{authority}/mcp")))
    }

    /// `mcp-proxy` serving Streamable HTTP on a loopback port in front of
    /// `backend`, ready; and its URL. Its one stdio
    /// backend, `s0`, is the bare relay to a new container of `backend`:
    /// the same container, reached the same way as directly and by mcpgw.
    pub(crate) async fn mcp_proxy(&self, backend: &Backend) -> anyhow::Result<(Gateway, String)> {
        let binary = self
            .mcp_proxy
            .as_ref()
            .context("no mcp-proxy binary (cargo install mcp-proxy)")?;
        let port = free_port()?;
        let relay = std::env::current_exe()?;
        let catalog = self.catalog_of(backend)?;
        let config = format!(
            "[proxy]\nname = \"mcp-proxy-bench\"\nseparator = \"__\"\nshutdown_timeout_seconds = 1\n\n[proxy.listen]\nhost = \"127.0.0.1\"\nport = {port}\n\n[[backends]]\nname = \"s0\"\ntransport = \"stdio\"\ncommand = {:?}\nargs = [\"--relay\", {:?}]\n\n[observability]\nlog_level = \"error\"\n",
            relay.display().to_string(),
            catalog.display().to_string(),
        );
        let path = self.write(&format!("mcp-proxy-{port}.toml"), &config)?;
        let mut command = Command::new(binary);
        command.arg("--config").arg(&path);
        let gateway = Gateway::start(command, false)?;
        let authority = format!("127.0.0.1:{port}");
        wait_ready(&authority, "mcp-proxy").await?;
        Ok((gateway, format!("http://{authority}/")))
    }

    /// Removes the containers started for direct calls.
    pub(crate) async fn close(&self) {
        for id in self.direct.lock().await.drain(..) {
            if !id.is_empty() {
                self.runtime.remove(&id).await;
            }
        }
    }
}

/// What is known of the mcp-proxy binary at `path`: its version and
/// features, when `cargo install` put it there.
pub(crate) fn about_mcp_proxy(path: &Path) -> String {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cargo")));
    let installed = home.and_then(|home| {
        if path.parent() != Some(home.join("bin").as_path()) {
            return None;
        }
        let text = std::fs::read_to_string(home.join(".crates2.json")).ok()?;
        let json: serde_json::Value = serde_json::from_str(&text).ok()?;
        json.get("installs")?
            .as_object()?
            .iter()
            .find_map(|(key, install)| {
                let version = key.strip_prefix("mcp-proxy ")?.split(' ').next()?;
                let mut features: Vec<&str> = install
                    .get("features")?
                    .as_array()?
                    .iter()
                    .filter_map(serde_json::Value::as_str)
                    .collect();
                if install.get("no_default_features") != Some(&serde_json::Value::Bool(true)) {
                    features.insert(0, "default");
                }
                Some(format!(
                    "mcp-proxy {version} (`cargo install`ed with the features: {})",
                    features.join(", ")
                ))
            })
    });
    installed.unwrap_or_else(|| format!("mcp-proxy (`{}`)", path.display()))
}

/// A loopback port nothing listens on (yet).
fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Waits until `GET /readyz` at `authority` answers 200, for a minute.
async fn wait_ready(authority: &str, what: &str) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !ready(authority).await {
        if tokio::time::Instant::now() > deadline {
            bail!("{what} did not become ready within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

impl Gateway {
    /// Starts `command`, logging errors only to our stderr; with `piped`,
    /// its stdin and stdout are left in `child` for a client.
    fn start(mut command: Command, piped: bool) -> anyhow::Result<Self> {
        let io = || if piped { Stdio::piped() } else { Stdio::null() };
        let child = command
            .env("MCPGW_LOG", "error")
            .stdin(io())
            .stdout(io())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| {
                format!(
                    "cannot run {}",
                    command.as_std().get_program().to_string_lossy()
                )
            })?;
        let pid = child.id().context("the process exited at once")?;
        Ok(Self { child, pid })
    }

    /// The gateway's resident set size, in MiB.
    pub(crate) fn rss_mib(&self) -> anyhow::Result<f64> {
        rss_mib(self.pid)
    }

    /// Ends the gateway (SIGTERM, as a supervisor would) and waits until it
    /// has removed its containers.
    pub(crate) async fn stop(mut self) -> anyhow::Result<()> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .await;
        match tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await {
            Ok(status) => {
                status?;
                Ok(())
            }
            Err(_) => {
                self.child.kill().await?;
                bail!("the gateway did not stop within 30 s of SIGTERM")
            }
        }
    }
}

/// The relay mode: copies bytes between this process's stdio (non-blocking
/// pipes, as mcpgw's are) and a new container of the first server of
/// `catalog`, until stdin closes or SIGTERM; then removes the container.
pub(crate) async fn relay(catalog: &Path) -> anyhow::Result<()> {
    use std::os::fd::AsFd as _;
    use tokio::net::unix::pipe;

    let catalog = mcpgw_catalog::load(catalog)?;
    let runtime = DockerRuntime::connect().await?;
    let container =
        mcpgw_supervisor::launch(&runtime, &catalog.servers[0], &Injection::default(), None)
            .await?;
    let mut stdin = pipe::Receiver::from_owned_fd(std::io::stdin().as_fd().try_clone_to_owned()?)?;
    let mut stdout = pipe::Sender::from_owned_fd(std::io::stdout().as_fd().try_clone_to_owned()?)?;
    let (mut to, mut from) = (container.stdio.stdin, container.stdio.stdout);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::io::copy(&mut stdin, &mut to) => {}
        _ = tokio::io::copy(&mut from, &mut stdout) => {}
        _ = term.recv() => {}
    }
    runtime.remove(&container.id).await;
    Ok(())
}

/// `GET /readyz` answers 200.
async fn ready(authority: &str) -> bool {
    let Ok(mut stream) = tokio::net::TcpStream::connect(authority).await else {
        return false;
    };
    let request = format!("GET /readyz HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return false;
    }
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    response.starts_with(b"HTTP/1.1 200")
}

/// The resident set size of process `pid`, in MiB.
pub(crate) fn rss_mib(pid: u32) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS in /proc/PID/status")?;
    Ok(kib / 1024.0)
}

/// The machine, in one Markdown paragraph.
pub(crate) fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map_or("unknown CPU", |m| m.trim_start_matches([' ', '\t', ':']));
    let cpus = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or_else(
            || "unknown".to_string(),
            |kib| format!("{:.0} GiB", kib / 1048576.0),
        );
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let command: Vec<String> = std::env::args().collect();
    format!(
        "Machine: {model}, {cpus} CPUs, {memory} RAM, Linux {}. Command: `{}`.\n",
        kernel.trim(),
        command.join(" ")
    )
}

const BEGIN: &str =
    "<!-- mcpgw-bench:begin (generated by `make bench`; edit outside this block) -->";
const END: &str = "<!-- mcpgw-bench:end -->";

/// Replaces the block between the markers in `path` (appending one if
/// there is none) with `report`.
pub(crate) fn replace_generated(path: &Path, report: &str) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let block = format!("{BEGIN}\n{report}{END}");
    let updated = match (text.find(BEGIN), text.find(END)) {
        (Some(begin), Some(end)) if begin < end => {
            format!("{}{block}{}", &text[..begin], &text[end + END.len()..])
        }
        _ => format!("{text}\n{block}\n"),
    };
    std::fs::write(path, updated)?;
    Ok(())
}

/// A `perf record` of one process, while a workload runs.
#[derive(Debug)]
pub(crate) struct Profile {
    perf: Child,
    data: tempfile::TempPath,
}

impl Profile {
    pub(crate) fn start(pid: u32) -> anyhow::Result<Self> {
        let data = tempfile::NamedTempFile::new()?.into_temp_path();
        let perf = Command::new("perf")
            .args(["record", "-F", "999", "-g", "-o"])
            .arg(&data)
            .args(["-p", &pid.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("cannot run `perf` (apt-get install linux-perf)")?;
        Ok(Self { perf, data })
    }

    /// Stops recording; the top symbols by self time.
    pub(crate) async fn finish(mut self) -> anyhow::Result<String> {
        let pid = self.perf.id().context("perf exited early")?;
        Command::new("kill")
            .args(["-INT", &pid.to_string()])
            .status()
            .await?;
        self.perf.wait().await?;
        let report = Command::new("perf")
            .args(["report", "--stdio", "--no-children", "-g", "none"])
            .args(["--sort", "dso,symbol", "--percent-limit", "1.5", "-i"])
            .arg(&self.data)
            .output()
            .await?;
        let text = String::from_utf8_lossy(&report.stdout);
        Ok(text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            // Share, object, kind and symbol; perf pads the rest.
            .map(|l| l.split_whitespace().take(4).collect::<Vec<_>>().join("  "))
            .take(30)
            .collect::<Vec<_>>()
            .join("\n"))
    }
}
