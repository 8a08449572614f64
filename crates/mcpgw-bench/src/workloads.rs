//! The workloads other than the comparisons (`compare.rs`): start-up,
//! listing, idle sessions, and any endpoint given on the command line; and
//! what they all share, the scale of the work and the loop that drives
//! calls. Each returns sections of figures; every figure is measured
//! `runs` times.

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use serde_json::{Value, json};
use tokio::task::JoinSet;

use crate::rpc::LineClient;
use crate::setup::Bench;
use crate::stats::{Figure, Samples, Section};
use crate::web::HttpClient;

/// How much work each workload does.
#[derive(Debug, Clone)]
pub(crate) struct Scale {
    pub(crate) runs: usize,
    /// Calls per run at concurrency 1 (each setup's, in the comparisons).
    pub(crate) calls: usize,
    /// Calls per worker per run at concurrency 16.
    pub(crate) calls_per_worker: usize,
    /// Pipelined calls per run, how many are in flight at once, and how
    /// long they may take at most.
    pub(crate) pipelined: usize,
    pub(crate) window: usize,
    pub(crate) pipelined_for: Duration,
    /// How long each HTTP throughput run lasts, and with how many clients.
    pub(crate) http_for: Duration,
    pub(crate) http_clients: Vec<usize>,
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
            pipelined_for: Duration::from_secs(2),
            http_for: Duration::from_secs(1),
            http_clients: vec![8, 64],
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
            pipelined_for: Duration::from_millis(300),
            http_for: Duration::from_millis(100),
            http_clients: vec![4],
            startup_servers: vec![1, 2],
            startup_runs: 1,
            listings: 5,
            listed_tools: 200,
            sessions: vec![0, 10],
        }
    }
}

/// Concurrency levels of the external call workload.
const CONCURRENCY: [usize; 2] = [1, 16];

/// The client of one setup: a stdio session (pipelined, cheap to clone),
/// or HTTP clients, one for each caller at once.
#[derive(Debug, Clone)]
pub(crate) enum Caller {
    Lines(LineClient),
    Http(Arc<[tokio::sync::Mutex<HttpClient>]>),
}

impl Caller {
    /// Calls `tool` as caller `worker`.
    pub(crate) async fn call(
        &self,
        worker: usize,
        tool: &str,
        arguments: &Value,
    ) -> anyhow::Result<Value> {
        match self {
            Self::Lines(client) => client.call(tool, arguments).await,
            Self::Http(clients) => {
                let client = clients
                    .get(worker)
                    .with_context(|| format!("no HTTP client for caller {worker}"))?;
                client.lock().await.call(tool, arguments).await
            }
        }
    }
}

/// `workers` callers at once, each calling `tool` one call at a time, up
/// to `each` calls, for as long as `budget` lasts: with `arguments`, or
/// else an `echo` of a unique payload, checked. The latencies, and the
/// calls per second. Calls still unanswered a minute after the budget has
/// run out fail the run.
pub(crate) async fn drive(
    caller: &Caller,
    tool: &str,
    arguments: Option<&Value>,
    workers: usize,
    each: usize,
    budget: Duration,
) -> anyhow::Result<(Samples, f64)> {
    let began = Instant::now();
    let mut tasks = JoinSet::new();
    for w in 0..workers {
        let caller = caller.clone();
        let tool = tool.to_string();
        let arguments = arguments.cloned();
        tasks.spawn(async move {
            let mut samples = Samples::default();
            for i in 0..each {
                let payload = format!("w{w} c{i}");
                let start = Instant::now();
                if start.duration_since(began) >= budget {
                    break;
                }
                let result = match &arguments {
                    Some(arguments) => caller.call(w, &tool, arguments).await?,
                    None => caller.call(w, &tool, &echo_args(&payload)).await?,
                };
                samples.push(start.elapsed());
                if arguments.is_none() {
                    check_echo(&result, &payload)?;
                }
            }
            anyhow::Ok(samples)
        });
    }
    let collect = async {
        let mut all = Samples::default();
        while let Some(done) = tasks.join_next().await {
            all.extend(done??);
        }
        anyhow::Ok(all)
    };
    let all = tokio::time::timeout(budget + Duration::from_secs(60), collect)
        .await
        .map_err(|_| anyhow!("{tool}: calls unanswered a minute after the run's {budget:?}"))??;
    #[allow(clippy::cast_precision_loss)]
    let rate = all.len() as f64 / began.elapsed().as_secs_f64();
    Ok((all, rate))
}

fn echo_args(text: &str) -> Value {
    json!({ "text": text })
}

/// The echo came back unchanged: the answer is the call's own.
fn check_echo(result: &Value, payload: &str) -> anyhow::Result<()> {
    let text = result["content"][0]["text"].as_str().unwrap_or_default();
    if text != payload {
        bail!("echo answered {text:?} to {payload:?}");
    }
    Ok(())
}

/// Long enough for any count-bounded measurement.
const LONG: Duration = Duration::from_secs(300);

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
    let caller = Caller::Lines(client);
    for c in CONCURRENCY {
        let mut p50 = Figure::new(format!("c={c}: p50"), "µs");
        let mut p99 = Figure::new(format!("c={c}: p99"), "µs");
        for _ in 0..scale.runs {
            let each = if c == 1 {
                scale.calls
            } else {
                scale.calls_per_worker
            };
            let (mut samples, _) = drive(&caller, tool, Some(arguments), c, each, LONG).await?;
            p50.values.push(samples.quantile_us(0.5));
            p99.values.push(samples.quantile_us(0.99));
        }
        section.figures.extend([p50, p99]);
    }
    let mut rate = Figure::new(format!("{} in flight", scale.window), "calls/s");
    for _ in 0..scale.runs {
        let each = scale.pipelined / scale.window;
        let budget = scale.pipelined_for;
        let (_, calls) = drive(&caller, tool, Some(arguments), scale.window, each, budget).await?;
        rate.values.push(calls);
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
            let mut sessions = Vec::with_capacity(clients);
            for _ in 0..clients {
                sessions.push(tokio::sync::Mutex::new(HttpClient::connect(url).await?));
            }
            let caller = Caller::Http(Arc::from(sessions));
            let (_, rate) = drive(
                &caller,
                tool,
                Some(arguments),
                clients,
                usize::MAX / 2,
                scale.http_for,
            )
            .await?;
            f.values.push(rate);
        }
        section.figures.push(f);
    }
    Ok(vec![section])
}
