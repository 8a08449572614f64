//! The workloads. Each returns sections of figures; every figure is
//! measured `runs` times, and what is compared (direct against through the
//! gateway) is measured in the same run.

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};
use tokio::task::JoinSet;

use crate::cpu;
use crate::rpc::LineClient;
use crate::setup::Bench;
use crate::stats::{Figure, Samples, Section};
use crate::web::HttpClient;

/// How much work each workload does.
#[derive(Debug, Clone)]
pub(crate) struct Scale {
    pub(crate) runs: usize,
    /// Calls per run at concurrency 1.
    calls: usize,
    /// Calls per worker per run at concurrency 16.
    calls_per_worker: usize,
    /// Pipelined calls per run, and how many are in flight at once.
    pipelined: usize,
    window: usize,
    /// How long each HTTP throughput run lasts.
    http_for: Duration,
    http_clients: Vec<usize>,
    startup_servers: Vec<usize>,
    startup_runs: usize,
    /// Full listings per run.
    listings: usize,
    listed_tools: usize,
    sessions: Vec<usize>,
}

impl Scale {
    pub(crate) fn full(runs: usize) -> Self {
        Self {
            runs: runs.max(1),
            calls: 2000,
            calls_per_worker: 1000,
            pipelined: 40_000,
            window: 256,
            http_for: Duration::from_secs(3),
            http_clients: vec![1, 8, 64],
            startup_servers: vec![1, 10, 50],
            startup_runs: runs.clamp(1, 3),
            listings: 300,
            listed_tools: 1000,
            sessions: vec![0, 100, 1000],
        }
    }

    /// Enough to show that every workload runs, and nothing more.
    pub(crate) fn quick() -> Self {
        Self {
            runs: 1,
            calls: 20,
            calls_per_worker: 8,
            pipelined: 200,
            window: 32,
            http_for: Duration::from_millis(300),
            http_clients: vec![1, 4],
            startup_servers: vec![1, 2],
            startup_runs: 1,
            listings: 5,
            listed_tools: 200,
            sessions: vec![0, 10],
        }
    }
}

const CONCURRENCY: [usize; 2] = [1, 16];

fn echo_args(text: &str) -> Value {
    json!({ "text": text })
}

/// Latencies of `workers` × `each` calls of `tool`, `workers` at a time:
/// with `arguments`, or else an `echo` of a unique payload, checked.
async fn latencies(
    client: &LineClient,
    tool: &str,
    arguments: Option<&Value>,
    workers: usize,
    each: usize,
) -> anyhow::Result<Samples> {
    let mut tasks = JoinSet::new();
    for w in 0..workers {
        let client = client.clone();
        let tool = tool.to_string();
        let arguments = arguments.cloned();
        tasks.spawn(async move {
            let mut samples = Samples::default();
            for i in 0..each {
                let payload = format!("w{w} c{i}");
                let began = Instant::now();
                let result = match &arguments {
                    Some(arguments) => client.call(&tool, arguments).await?,
                    None => client.call(&tool, &echo_args(&payload)).await?,
                };
                samples.push(began.elapsed());
                if arguments.is_none() {
                    check_echo(&result, &payload)?;
                }
            }
            anyhow::Ok(samples)
        });
    }
    let mut all = Samples::default();
    while let Some(done) = tasks.join_next().await {
        all.extend(done??);
    }
    Ok(all)
}

/// The echo came back unchanged: the answer is the call's own.
fn check_echo(result: &Value, payload: &str) -> anyhow::Result<()> {
    let text = result["content"][0]["text"].as_str().unwrap_or_default();
    if text != payload {
        bail!("echo answered {text:?} to {payload:?}");
    }
    Ok(())
}

/// Calls per second of `total` calls with `window` in flight at once.
async fn pipelined(
    client: &LineClient,
    tool: &str,
    arguments: Option<&Value>,
    total: usize,
    window: usize,
) -> anyhow::Result<f64> {
    let began = Instant::now();
    latencies(client, tool, arguments, window, total / window).await?;
    #[allow(clippy::cast_precision_loss)]
    Ok((total / window * window) as f64 / began.elapsed().as_secs_f64())
}

/// Per-call latency, direct and through the gateway, at concurrency 1 and
/// 16, for a client of each protocol era: each run interleaves `ROUNDS`
/// rounds of every setup, so that the machine's drift is shared evenly.
pub(crate) async fn overhead(bench: &Bench, scale: &Scale) -> anyhow::Result<Vec<Section>> {
    let direct = bench.direct(None).await?;
    let direct_stateless = bench.direct(Some(false)).await?;
    let as_mcpgw = bench.direct(Some(true)).await?;
    let (relay_process, relay) = bench.relay()?;
    relay.initialize().await?;
    let (gateway, client) = bench.stdio(&bench.catalog(1, 0)?)?;
    client.initialize().await?;
    client.list_tools().await?;
    let (stateless_gateway, stateless_client) = bench.stdio(&bench.catalog(1, 0)?)?;
    let stateless_client = stateless_client.stateless(false);
    stateless_client.list_tools().await?;
    // In the order of each round: who calls, the tool, and the process
    // between client and server, if any.
    let setups: [(&LineClient, &str, Option<u32>); SETUPS] = [
        (&direct, "echo", None),
        (&direct_stateless, "echo", None),
        (&as_mcpgw, "echo", None),
        (&relay, "echo", Some(relay_process.pid)),
        (&client, "s0__echo", Some(gateway.pid)),
        (&stateless_client, "s0__echo", Some(stateless_gateway.pid)),
    ];
    for (endpoint, tool, _) in setups {
        latencies(endpoint, tool, None, 4, scale.calls / 10 + 1).await?;
    }
    let mut section = Section::new(
        "Per-call overhead: `echo` on one test server, direct over its container's stdio and through `mcpgw run` over stdio",
    );
    for c in CONCURRENCY {
        let each = if c == 1 {
            scale.calls
        } else {
            scale.calls_per_worker
        } / ROUNDS;
        // `[setup]`: p50 and p99 in each run.
        let mut p50: [Vec<f64>; SETUPS] = Default::default();
        let mut p99: [Vec<f64>; SETUPS] = Default::default();
        let mut cpu = CpuFigures::default();
        for _ in 0..scale.runs {
            let mut samples: [Samples; SETUPS] = Default::default();
            let mut used = [[0.0; 5]; SETUPS];
            for _ in 0..ROUNDS {
                for (i, (endpoint, tool, pid)) in setups.into_iter().enumerate() {
                    let (s, per_call) =
                        metered(c * each, pid, latencies(endpoint, tool, None, c, each)).await?;
                    samples[i].extend(s);
                    for (total, role) in used[i].iter_mut().zip(per_call) {
                        #[allow(clippy::cast_precision_loss)]
                        let share = role / ROUNDS as f64;
                        *total += share;
                    }
                }
            }
            cpu.push(&used);
            for (i, s) in samples.iter_mut().enumerate() {
                p50[i].push(s.quantile_us(0.5));
                p99[i].push(s.quantile_us(0.99));
            }
        }
        let figure = |name: &str, unit, values: Vec<f64>| Figure {
            values,
            ..Figure::new(format!("c={c}: {name}"), unit)
        };
        let minus = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(a, b)| a - b).collect::<Vec<_>>();
        let over = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(a, b)| a / b).collect::<Vec<_>>();
        let [direct, stateless, as_mcpgw, relay, via, via_stateless] = &p50;
        section.figures.extend([
            figure("direct p50", "µs", direct.clone()),
            figure("via mcpgw p50", "µs", via.clone()),
            figure("added p50", "µs", minus(via, direct)).at_most(100.0),
            figure("ratio p50", "×", over(via, direct)),
            figure(
                "added p50 by a bare relay process",
                "µs",
                minus(relay, direct),
            ),
            figure(
                "added p50 by mcpgw beyond that relay",
                "µs",
                minus(via, relay),
            ),
            figure("direct p99", "µs", p99[0].clone()),
            figure("via mcpgw p99", "µs", p99[4].clone()),
            figure("added p99", "µs", minus(&p99[4], &p99[0])).at_most(1000.0),
            figure("2026-07-28 client: direct p50", "µs", stateless.clone()),
            figure(
                "2026-07-28 client: via mcpgw p50",
                "µs",
                via_stateless.clone(),
            ),
            figure(
                "2026-07-28 client: added p50",
                "µs",
                minus(via_stateless, stateless),
            )
            .at_most(100.0),
            figure(
                "2026-07-28 client: added p99",
                "µs",
                minus(&p99[5], &p99[1]),
            )
            .at_most(1000.0),
            figure(
                "direct p50, sending what mcpgw sends the server",
                "µs",
                as_mcpgw.clone(),
            ),
            figure(
                "handshake-era client: added p50 over sending what mcpgw sends",
                "µs",
                minus(via, as_mcpgw),
            ),
        ]);
        if c > 1 {
            section.figures.extend(cpu.figures(c));
        }
    }
    section.notes.push(format!(
        "Each run: {} calls at c=1 and {} × 16 at c=16 in each setup, in {ROUNDS} interleaved rounds of: direct with a handshake-era client, with a 2026-07-28 client, sending what mcpgw sends, through the bare relay, through mcpgw with a handshake-era client, with a 2026-07-28 client.",
        scale.calls / ROUNDS * ROUNDS,
        scale.calls_per_worker / ROUNDS * ROUNDS
    ));
    section.notes.push("Unlabelled figures are for a handshake-era client (`2025-11-25`, opened with `initialize`), calling the server directly and through mcpgw. A `2026-07-28` client sends the protocol version, its info and its capabilities in the `_meta` of every request, as the official Python client does. mcpgw speaks the newest protocol the server has, here `2026-07-28`: its requests carry the protocol version and its capabilities (not its info, which that protocol leaves optional) and a progress token; \"sending what mcpgw sends\" is a direct client sending the server those same requests.".to_string());
    section.notes.push("The bare relay (`mcpgw-bench --relay`) only copies bytes between its stdio and the container's, on the same kind of non-blocking pipes: what any gateway in a process of its own adds at the least.".to_string());
    section.notes.push("Machine CPU per call: the CPU time every process on the machine used during the run (`/proc/*/task/*/schedstat`), divided by the calls; client is `mcpgw-bench`, gateway the process in between, engine `dockerd` and `containerd` with its shims, server the test server. At c=16 the two cores are busy, so p50 ≈ 16 × CPU per call ÷ 2 cores: each µs of CPU a call costs anywhere adds about 8 µs.".to_string());
    gateway.stop().await?;
    stateless_gateway.stop().await?;
    relay_process.stop().await?;
    Ok(vec![section])
}

/// The setups of the overhead workload.
const SETUPS: usize = 6;
/// Their names, for the CPU figures.
const SETUP_NAMES: [&str; SETUPS] = [
    "direct",
    "direct, 2026-07-28 client",
    "direct sending what mcpgw sends",
    "via the bare relay",
    "via mcpgw",
    "via mcpgw, 2026-07-28 client",
];
/// Interleaved rounds per run.
const ROUNDS: usize = 4;

/// Runs `work` (of `calls` calls) and measures the machine's CPU it took,
/// per call, by role (see [`cpu::ROLES`]); `gateway` is the endpoint's pid.
async fn metered<T>(
    calls: usize,
    gateway: Option<u32>,
    work: impl Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<(T, [f64; 5])> {
    let before = cpu::Snapshot::take();
    let out = work.await?;
    #[allow(clippy::cast_precision_loss)]
    let per_call = cpu::Snapshot::take()
        .since(&before, gateway)
        .map(|us| us / calls.max(1) as f64);
    Ok((out, per_call))
}

/// The machine's CPU per call in each run, for each setup.
#[derive(Default)]
struct CpuFigures {
    /// `[setup][role]`, one value per run.
    runs: [[Vec<f64>; 5]; SETUPS],
}

impl CpuFigures {
    fn push(&mut self, setups: &[[f64; 5]; SETUPS]) {
        for (setup, roles) in setups.iter().enumerate() {
            for (role, us) in roles.iter().enumerate() {
                self.runs[setup][role].push(*us);
            }
        }
    }

    /// The total for each setup, and each process's share (the process in
    /// between only where there is one).
    fn figures(self, c: usize) -> Vec<Figure> {
        let mut figures = Vec::new();
        for (setup, roles) in SETUP_NAMES.into_iter().zip(self.runs) {
            let runs = roles[0].len();
            let total = (0..runs)
                .map(|i| roles.iter().map(|r| r[i]).sum())
                .collect();
            figures.push(Figure {
                values: total,
                ..Figure::new(format!("c={c}: machine CPU per call, {setup}"), "µs")
            });
            for (role, values) in cpu::ROLES.into_iter().zip(roles) {
                if role == "other" || values.iter().all(|us| *us == 0.0) {
                    continue;
                }
                figures.push(Figure {
                    values,
                    ..Figure::new(format!("c={c}: … of it {role}, {setup}"), "µs")
                });
            }
        }
        figures
    }
}

/// Calls per second: pipelined over stdio (direct and through the
/// gateway), and through the HTTP front with several clients.
pub(crate) async fn throughput(
    bench: &Bench,
    scale: &Scale,
    profile: bool,
) -> anyhow::Result<Vec<Section>> {
    let mut section = Section::new("Throughput: `echo` calls per second");
    let direct = bench.direct(None).await?;
    let (gateway, client) = bench.stdio(&bench.catalog(1, 0)?)?;
    client.initialize().await?;
    client.list_tools().await?;
    pipelined(
        &client,
        "s0__echo",
        None,
        scale.pipelined / 10,
        scale.window,
    )
    .await?;
    let mut d = Figure::new(
        format!("stdio, direct, {} in flight", scale.window),
        "calls/s",
    );
    let mut g = Figure::new(
        format!("stdio, via mcpgw, {} in flight", scale.window),
        "calls/s",
    );
    let mut report = None;
    for run in 0..scale.runs {
        d.values
            .push(pipelined(&direct, "echo", None, scale.pipelined, scale.window).await?);
        let recording = (profile && run == 0)
            .then(|| crate::setup::Profile::start(gateway.pid))
            .transpose()?;
        g.values
            .push(pipelined(&client, "s0__echo", None, scale.pipelined, scale.window).await?);
        if let Some(recording) = recording {
            report = Some(recording.finish().await?);
        }
    }
    section.figures.push(d);
    section.figures.push(g.at_least(20_000.0));
    gateway.stop().await?;

    let (gateway, url) = bench.http(&bench.catalog(1, 0)?).await?;
    for &clients in &scale.http_clients {
        let mut f = Figure::new(format!("HTTP, via mcpgw, {clients} client(s)"), "calls/s");
        for _ in 0..scale.runs {
            f.values
                .push(http_rate(&url, "s0__echo", &echo_args("x"), clients, scale.http_for).await?);
        }
        if clients == *scale.http_clients.iter().max().unwrap_or(&clients) {
            f = f.at_least(5_000.0);
        }
        section.figures.push(f);
    }
    gateway.stop().await?;
    section.notes.push(format!(
        "stdio: {} calls per run, {} in flight; HTTP: each client a handshake-era session on its own keep-alive connection, calling one at a time for {:?} per run.",
        scale.pipelined, scale.window, scale.http_for
    ));
    if let Some(report) = report {
        section
            .notes
            .push(format!("\nWhere the gateway's time goes during the stdio run (`perf`, self time, top symbols):\n\n```\n{report}\n```"));
    }
    Ok(vec![section])
}

/// Calls per second of `clients` HTTP sessions calling for `duration`.
async fn http_rate(
    url: &str,
    tool: &str,
    arguments: &Value,
    clients: usize,
    duration: Duration,
) -> anyhow::Result<f64> {
    let mut sessions = Vec::new();
    for _ in 0..clients {
        sessions.push(HttpClient::connect(url).await?);
    }
    let began = Instant::now();
    let mut tasks = JoinSet::new();
    for mut session in sessions {
        let tool = tool.to_string();
        let arguments = arguments.clone();
        tasks.spawn(async move {
            let mut calls = 0u64;
            while began.elapsed() < duration {
                session.call(&tool, &arguments).await?;
                calls += 1;
            }
            anyhow::Ok(calls)
        });
    }
    let mut calls = 0;
    while let Some(done) = tasks.join_next().await {
        calls += done??;
    }
    #[allow(clippy::cast_precision_loss)]
    Ok(calls as f64 / began.elapsed().as_secs_f64())
}

/// From `mcpgw run` to `initialize` answered and to the first complete
/// `tools/list`, and the idle gateway's memory, by number of servers.
pub(crate) async fn startup(bench: &Bench, scale: &Scale) -> anyhow::Result<Vec<Section>> {
    let mut section = Section::new("Start-up and idle memory, by number of servers (over stdio)");
    let mut ready_by_servers = Vec::new();
    let mut rss_by_servers = Vec::new();
    for &servers in &scale.startup_servers {
        let catalog = bench.catalog(servers, 0)?;
        let mut init = Figure::new(format!("{servers} server(s): `initialize` answered"), "ms");
        let mut ready = Figure::new(
            format!("{servers} server(s): first complete `tools/list`"),
            "ms",
        );
        let mut rss = Figure::new(format!("{servers} server(s): RSS, idle"), "MiB");
        for _ in 0..scale.startup_runs {
            let began = Instant::now();
            let (gateway, client) = bench.stdio(&catalog)?;
            client.initialize().await?;
            init.values.push(began.elapsed().as_secs_f64() * 1e3);
            let (tools, _) = client.list_tools().await?;
            ready.values.push(began.elapsed().as_secs_f64() * 1e3);
            let servers_listed = tools
                .iter()
                .filter(|t| t["name"].as_str().is_some_and(|n| n.ends_with("__echo")))
                .count();
            if servers_listed != servers {
                bail!("{servers_listed} of {servers} servers came up");
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            rss.values.push(gateway.rss_mib()?);
            gateway.stop().await?;
        }
        ready_by_servers.push((servers, ready.median()));
        rss_by_servers.push((servers, rss.median()));
        section.figures.push(init.at_most(100.0));
        section.figures.push(if servers == 10 {
            ready.at_most(1500.0)
        } else {
            ready
        });
        section.figures.push(if servers == 10 {
            rss.at_most(20.0)
        } else {
            rss
        });
    }
    section.notes.push(format!(
        "Growth from the fewest to the most servers (medians): {} ms and {} MiB per added server.",
        crate::stats::number(slope(&ready_by_servers)),
        crate::stats::number(slope(&rss_by_servers)),
    ));
    Ok(vec![section])
}

/// The slope between the first and last points.
fn slope(points: &[(usize, f64)]) -> f64 {
    match (points.first(), points.last()) {
        (Some(&(x0, y0)), Some(&(x1, y1))) if x1 > x0 => {
            #[allow(clippy::cast_precision_loss)]
            let dx = (x1 - x0) as f64;
            (y1 - y0) / dx
        }
        _ => f64::NAN,
    }
}

/// `tools/list` over many merged tools, warm.
pub(crate) async fn listing(bench: &Bench, scale: &Scale) -> anyhow::Result<Vec<Section>> {
    // How many tools a test server offers before any are generated.
    let (probe, client) = bench.stdio(&bench.catalog(1, 0)?)?;
    client.initialize().await?;
    let builtin = client.list_tools().await?.0.len();
    probe.stop().await?;
    let servers = 10;
    let generated = (scale.listed_tools / servers).saturating_sub(builtin);
    let (gateway, client) = bench.stdio(&bench.catalog(servers, generated)?)?;
    client.initialize().await?;
    let (tools, pages) = client.list_tools().await?;
    let mut full = Figure::new(
        format!("all {} tools ({pages} pages of up to 100)", tools.len()),
        "µs",
    );
    let mut page = Figure::new("one `tools/list` request (a page of 100)", "µs");
    for _ in 0..scale.runs {
        let mut whole = Samples::default();
        for _ in 0..scale.listings {
            let began = Instant::now();
            let (listed, _) = client.list_tools().await?;
            whole.push(began.elapsed());
            if listed.len() != tools.len() {
                bail!("listed {} tools, then {}", tools.len(), listed.len());
            }
        }
        let mut first = Samples::default();
        for _ in 0..scale.listings {
            let began = Instant::now();
            client.request("tools/list", json!({})).await?;
            first.push(began.elapsed());
        }
        full.values.push(whole.quantile_us(0.5));
        page.values.push(first.quantile_us(0.5));
    }
    let mut section = Section::new(format!(
        "Listing: `tools/list` of {servers} servers' merged tools, warm (median per run)"
    ));
    section.figures.push(page.at_most(1000.0));
    section.figures.push(full);
    section.figures.push(Figure {
        values: vec![gateway.rss_mib()?],
        ..Figure::new("RSS with these servers, after listing", "MiB")
    });
    section.notes.push(format!(
        "{} listings per run after a warm-up listing.",
        scale.listings
    ));
    gateway.stop().await?;
    Ok(vec![section])
}

/// The HTTP gateway's memory with many idle sessions.
pub(crate) async fn sessions(bench: &Bench, scale: &Scale) -> anyhow::Result<Vec<Section>> {
    let mut section = Section::new("Memory with idle HTTP sessions (one server)");
    let mut points = Vec::new();
    for _ in 0..scale.runs.min(3) {
        let (gateway, url) = bench.http(&bench.catalog(1, 0)?).await?;
        let mut open = 0;
        let mut run = Vec::new();
        for &target in &scale.sessions {
            open_sessions(&url, target - open).await?;
            open = target;
            tokio::time::sleep(Duration::from_millis(500)).await;
            run.push((target, gateway.rss_mib()?));
        }
        gateway.stop().await?;
        points.push(run);
    }
    for (i, &target) in scale.sessions.iter().enumerate() {
        let f = Figure {
            values: points.iter().map(|run| run[i].1).collect(),
            ..Figure::new(format!("RSS with {target} idle sessions"), "MiB")
        };
        section
            .figures
            .push(if target == 1000 { f.at_most(100.0) } else { f });
    }
    let per_session: Vec<f64> = points.iter().map(|run| slope(run) * 1024.0).collect();
    section.figures.push(Figure {
        values: per_session,
        ..Figure::new("added per session", "KiB")
    });
    section.notes.push(
        "Each session: `initialize` and `notifications/initialized` on a connection of its own, which is then closed; the session stays open at the gateway until it expires (5 minutes idle).".to_string(),
    );
    Ok(vec![section])
}

/// Opens `count` sessions, eight at a time, and leaves them open.
async fn open_sessions(url: &str, count: usize) -> anyhow::Result<()> {
    let mut tasks = JoinSet::new();
    for worker in 0..8 {
        let url = url.to_string();
        let share = count / 8 + usize::from(worker < count % 8);
        tasks.spawn(async move {
            for _ in 0..share {
                HttpClient::connect(&url).await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(())
}

/// The call and throughput workloads against any stdio MCP server.
pub(crate) async fn external_stdio(
    command: &str,
    tool: &str,
    arguments: &Value,
    scale: &Scale,
) -> anyhow::Result<Vec<Section>> {
    let mut child = tokio::process::Command::new("sh")
        .args(["-c", command])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot run {command}"))?;
    let client = LineClient::new(
        child.stdout.take().context("no stdout")?,
        child.stdin.take().context("no stdin")?,
    );
    let began = Instant::now();
    client.initialize().await?;
    let init = began.elapsed();
    let (tools, pages) = client.list_tools().await?;
    let listed = began.elapsed();
    let mut section = Section::new(format!("`{command}`: `{tool}`"));
    section.figures.push(Figure {
        values: vec![init.as_secs_f64() * 1e3],
        ..Figure::new("`initialize` answered", "ms")
    });
    section.figures.push(Figure {
        values: vec![listed.as_secs_f64() * 1e3],
        ..Figure::new(
            format!(
                "first complete `tools/list` ({} tools, {pages} pages)",
                tools.len()
            ),
            "ms",
        )
    });
    for c in CONCURRENCY {
        let mut p50 = Figure::new(format!("c={c}: p50"), "µs");
        let mut p99 = Figure::new(format!("c={c}: p99"), "µs");
        for _ in 0..scale.runs {
            let each = if c == 1 {
                scale.calls
            } else {
                scale.calls_per_worker
            };
            let mut samples = latencies(&client, tool, Some(arguments), c, each).await?;
            p50.values.push(samples.quantile_us(0.5));
            p99.values.push(samples.quantile_us(0.99));
        }
        section.figures.extend([p50, p99]);
    }
    let mut rate = Figure::new(format!("{} in flight", scale.window), "calls/s");
    for _ in 0..scale.runs {
        rate.values.push(
            pipelined(
                &client,
                tool,
                Some(arguments),
                scale.pipelined,
                scale.window,
            )
            .await?,
        );
    }
    section.figures.push(rate);
    let _ = child.kill().await;
    Ok(vec![section])
}

/// The throughput workload against any Streamable HTTP endpoint.
pub(crate) async fn external_http(
    url: &str,
    tool: &str,
    arguments: &Value,
    scale: &Scale,
) -> anyhow::Result<Vec<Section>> {
    let mut section = Section::new(format!("`{url}`: `{tool}` calls per second"));
    for &clients in &scale.http_clients {
        let mut f = Figure::new(format!("{clients} client(s)"), "calls/s");
        for _ in 0..scale.runs {
            f.values
                .push(http_rate(url, tool, arguments, clients, scale.http_for).await?);
        }
        section.figures.push(f);
    }
    Ok(vec![section])
}
