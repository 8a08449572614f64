//! The comparisons: each backend called directly, through mcpgw over stdio
//! and over HTTP, and through mcp-proxy over HTTP, by a client of each
//! protocol era, in one run. Every setup of a backend is built once and
//! measured in interleaved rounds, so that the machine's drift falls on
//! all of them alike; what is added is a setup's figure minus the direct
//! one of the same era, within the same run.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use serde_json::Value;

use crate::cpu;
use crate::setup::{Backend, Bench, Era, Gateway, Profile};
use crate::stats::{Cell, Figure, Matrix, Samples, Section, number};
use crate::web::HttpClient;
use crate::workloads::{Caller, Scale, drive};

/// Whom a setup's calls go through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    Direct,
    Relay,
    McpgwStdio,
    McpgwHttp,
    McpProxy,
}

impl Via {
    fn label(self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::Relay => "bare relay, stdio",
            Self::McpgwStdio => "mcpgw, stdio",
            Self::McpgwHttp => "mcpgw, HTTP",
            Self::McpProxy => "mcp-proxy, HTTP",
        }
    }

    /// The setups compared with direct calls.
    const COMPARED: [Self; 4] = [
        Self::Relay,
        Self::McpgwStdio,
        Self::McpgwHttp,
        Self::McpProxy,
    ];
}

/// One way of calling a backend.
#[derive(Debug)]
struct Setup {
    via: Via,
    era: Era,
    /// Its client; or why it is not measured.
    caller: Result<Caller, String>,
    tool: &'static str,
    /// The process between client and server, if any.
    pid: Option<u32>,
}

impl Setup {
    fn name(&self) -> String {
        format!("{}, {}", self.via.label(), self.era.label())
    }
}

/// Every setup of one backend, in the order of each round.
#[derive(Debug)]
struct Setups {
    list: Vec<Setup>,
    processes: Vec<Gateway>,
}

/// mcp-proxy's setups' callers, by era, or why there are none.
type ProxyCallers = (Result<Caller, String>, Result<Caller, String>);

impl Setups {
    /// Builds them all, two or three at a time; each HTTP setup gets `pool`
    /// clients, one connection each.
    async fn build(bench: &Bench, backend: &Backend, pool: usize) -> anyhow::Result<Self> {
        let catalog = bench.catalog_of(backend)?;
        let direct = async {
            tokio::try_join!(
                bench.direct(backend, Era::Handshake),
                bench.direct(backend, Era::Stateless)
            )
        };
        let relay = async {
            let (process, client) = bench.relay(backend)?;
            client.initialize().await?;
            anyhow::Ok((process, client))
        };
        let stdio = |era| {
            let catalog = catalog.clone();
            async move {
                let (process, client) = bench.stdio(&catalog)?;
                let client = match era {
                    Era::Handshake => {
                        client.initialize().await?;
                        client
                    }
                    Era::Stateless => client.stateless(),
                };
                client.list_tools().await?;
                anyhow::Ok((process, client))
            }
        };
        let http = async {
            let (process, url) = bench.http(&catalog).await?;
            let handshake = http_pool(&url, Era::Handshake, pool).await?;
            let stateless = http_pool(&url, Era::Stateless, pool).await?;
            anyhow::Ok((process, handshake, stateless))
        };
        let proxy = proxy_setups(bench, backend, pool);
        // A few at a time: a Python server takes seconds of CPU to start,
        // and rmcp gives a server 10 s to answer its first request before
        // it tries the other era (whose answer then collides with the late
        // one: the server fails its handshake and is restarted).
        let ((direct, direct_stateless), (relay_process, relay)) = tokio::try_join!(direct, relay)?;
        let ((stdio_process, stdio_client), (stateless_process, stateless_client)) =
            tokio::try_join!(stdio(Era::Handshake), stdio(Era::Stateless))?;
        let ((http_process, http_handshake, http_stateless), (proxy_process, proxy_callers)) =
            tokio::try_join!(http, proxy)?;
        let (proxy_handshake, proxy_stateless) = proxy_callers;
        let setup = |via, era, caller: Result<Caller, String>, pid: Option<u32>| Setup {
            via,
            era,
            caller,
            tool: if via == Via::Direct || via == Via::Relay {
                "echo"
            } else {
                "s0__echo"
            },
            pid,
        };
        let proxy_pid = proxy_process.as_ref().map(|p| p.pid);
        let list = vec![
            setup(Via::Direct, Era::Handshake, Ok(Caller::Lines(direct)), None),
            setup(
                Via::Direct,
                Era::Stateless,
                Ok(Caller::Lines(direct_stateless)),
                None,
            ),
            setup(
                Via::Relay,
                Era::Handshake,
                Ok(Caller::Lines(relay)),
                Some(relay_process.pid),
            ),
            setup(
                Via::McpgwStdio,
                Era::Handshake,
                Ok(Caller::Lines(stdio_client)),
                Some(stdio_process.pid),
            ),
            setup(
                Via::McpgwStdio,
                Era::Stateless,
                Ok(Caller::Lines(stateless_client)),
                Some(stateless_process.pid),
            ),
            setup(
                Via::McpgwHttp,
                Era::Handshake,
                Ok(http_handshake),
                Some(http_process.pid),
            ),
            setup(
                Via::McpgwHttp,
                Era::Stateless,
                Ok(http_stateless),
                Some(http_process.pid),
            ),
            setup(Via::McpProxy, Era::Handshake, proxy_handshake, proxy_pid),
            setup(Via::McpProxy, Era::Stateless, proxy_stateless, proxy_pid),
        ];
        let mut processes = vec![
            relay_process,
            stdio_process,
            stateless_process,
            http_process,
        ];
        processes.extend(proxy_process);
        Ok(Self { list, processes })
    }

    fn get(&self, via: Via, era: Era) -> &Setup {
        self.list
            .iter()
            .find(|s| s.via == via && s.era == era)
            .unwrap_or(&self.list[0])
    }

    fn index(&self, via: Via, era: Era) -> Option<usize> {
        self.list.iter().position(|s| s.via == via && s.era == era)
    }

    /// Waits until every setup that can be measured answers a call, then
    /// calls each a little, so that none is measured cold.
    async fn warm_up(&self, calls: usize) -> anyhow::Result<()> {
        for setup in &self.list {
            if let Ok(caller) = &setup.caller {
                answering(caller, setup.tool)
                    .await
                    .with_context(|| setup.name())?;
                drive(caller, setup.tool, None, 4, calls, LONG)
                    .await
                    .with_context(|| setup.name())?;
            }
        }
        Ok(())
    }

    async fn stop(self) -> anyhow::Result<()> {
        // Clients first: a gateway waits for its open connections.
        drop(self.list);
        for process in self.processes {
            process.stop().await?;
        }
        Ok(())
    }
}

/// Calls `tool` until it answers, for at most a minute and a half: a
/// gateway lists a server that failed to start and is restarting (a
/// Python server can take seconds to start on a busy machine).
async fn answering(caller: &Caller, tool: &str) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let arguments = echo_args("ready");
        let call = caller.call(0, tool, &arguments);
        match tokio::time::timeout_at(deadline, call).await {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(error)) if tokio::time::Instant::now() > deadline => {
                return Err(error.context("no answer within 90 s"));
            }
            Ok(Err(_)) => tokio::time::sleep(Duration::from_millis(200)).await,
            Err(_) => anyhow::bail!("no answer within 90 s"),
        }
    }
}

/// `pool` HTTP clients of `era` at `url`.
async fn http_pool(url: &str, era: Era, pool: usize) -> anyhow::Result<Caller> {
    let mut clients = Vec::with_capacity(pool);
    for _ in 0..pool {
        clients.push(tokio::sync::Mutex::new(match era {
            Era::Handshake => HttpClient::connect(url).await?,
            Era::Stateless => HttpClient::stateless(url).await?,
        }));
    }
    Ok(Caller::Http(Arc::from(clients)))
}

/// mcp-proxy in front of `backend`, if it is installed and starts; its
/// clients of each era, or why there are none.
async fn proxy_setups(
    bench: &Bench,
    backend: &Backend,
    pool: usize,
) -> anyhow::Result<(Option<Gateway>, ProxyCallers)> {
    if bench.mcp_proxy.is_none() {
        let why = "mcp-proxy is not installed".to_string();
        return Ok((None, (Err(why.clone()), Err(why))));
    }
    let (process, url) = match bench.mcp_proxy(backend).await {
        Ok(started) => started,
        Err(error) => {
            let why = format!("mcp-proxy did not start: {error:#}");
            eprintln!("mcpgw-bench: {why}");
            return Ok((None, (Err(why.clone()), Err(why))));
        }
    };
    let handshake = http_pool(&url, Era::Handshake, pool)
        .await
        .map_err(|e| format!("mcp-proxy failed a handshake-era session: {e:#}"));
    // A stateless client needs no session: whether mcp-proxy speaks the
    // protocol shows in its first call.
    let stateless = match http_pool(&url, Era::Stateless, pool).await {
        Ok(caller) => {
            let arguments = echo_args("probe");
            let probe = caller.call(0, "s0__echo", &arguments);
            match tokio::time::timeout(Duration::from_secs(30), probe).await {
                Ok(Ok(_)) => Ok(caller),
                Ok(Err(error)) => Err(format!(
                    "not supported by mcp-proxy: {}",
                    first_line(&error)
                )),
                Err(_) => Err("mcp-proxy did not answer a 2026-07-28 call within 30 s".to_string()),
            }
        }
        Err(error) => Err(format!(
            "not supported by mcp-proxy: {}",
            first_line(&error)
        )),
    };
    Ok((Some(process), (handshake, stateless)))
}

/// An error, shortened for a table cell: the JSON-RPC error in it, if
/// there is one, or else its first line.
fn first_line(error: &anyhow::Error) -> String {
    let text = format!("{error:#}");
    let rpc = text
        .find('{')
        .and_then(|at| serde_json::from_str::<Value>(&text[at..]).ok())
        .and_then(|body| {
            let error = body.get("error")?;
            Some(format!(
                "{} {}",
                error.get("code")?,
                error.get("message")?.as_str()?
            ))
        });
    let line = rpc
        .unwrap_or_else(|| text.lines().next().unwrap_or_default().to_string())
        .replace('|', "/");
    if line.chars().count() > 120 {
        format!("{}…", line.chars().take(120).collect::<String>())
    } else {
        line
    }
}

fn echo_args(text: &str) -> Value {
    serde_json::json!({ "text": text })
}

/// Long enough for any count-bounded measurement; a hung endpoint fails
/// the run when it has passed.
const LONG: Duration = Duration::from_secs(300);
/// How long building a backend's setups may take.
const BUILD: Duration = Duration::from_secs(240);
/// Concurrency levels of the latency measurements.
const CONCURRENCY: [usize; 2] = [1, 16];
/// Interleaved rounds per run.
const ROUNDS: usize = 4;

/// The added-p50 goal for a direct p50 of `direct` µs: 5% of it, or
/// 100 µs, whichever is larger; and its words.
fn added_goal(direct: f64) -> (f64, String) {
    let limit = (direct * 0.05).max(100.0);
    (
        limit,
        format!("≤ max(5% of direct, 100) = {}", number(limit)),
    )
}

/// The overhead sections (per-call latency at concurrency 1 and 16) and
/// the throughput sections (calls per second), as asked, of every backend:
/// each backend's setups are built once for both.
pub(crate) async fn compare(
    bench: &Bench,
    scale: &Scale,
    overhead: bool,
    throughput: bool,
    profile: bool,
) -> anyhow::Result<Vec<Section>> {
    let (mut latency, mut rate) = (Vec::new(), Vec::new());
    let widest = scale.http_clients.iter().copied().max().unwrap_or(1);
    let pool = if throughput { widest } else { 1 }.max(CONCURRENCY[1]);
    for (b, backend) in bench.backends.iter().enumerate() {
        let setups = tokio::time::timeout(BUILD, Setups::build(bench, backend, pool))
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "the setups of {} were not all up within {BUILD:?}",
                    backend.label
                )
            })??;
        let measured = async {
            setups.warm_up(scale.calls / 10 + 1).await?;
            if overhead {
                latency.push(overhead_of(bench, backend, &setups, scale).await?);
            }
            if throughput {
                rate.push(throughput_of(backend, &setups, scale, profile && b == 0).await?);
            }
            anyhow::Ok(())
        }
        .await;
        setups.stop().await?;
        measured?;
    }
    latency.extend(rate);
    Ok(latency)
}

async fn overhead_of(
    bench: &Bench,
    backend: &Backend,
    setups: &Setups,
    scale: &Scale,
) -> anyhow::Result<Section> {
    let n = setups.list.len();
    let mut section = Section::new(format!(
        "Per-call overhead: `echo` on {}, direct over its container's stdio, through mcpgw over stdio and HTTP, and through mcp-proxy over HTTP",
        backend.label
    ));
    let mut details = Vec::new();
    for c in CONCURRENCY {
        let each = (if c == 1 {
            scale.calls
        } else {
            scale.calls_per_worker
        } / backend.share
            / ROUNDS)
            .max(1);
        // `[setup]`: p50 and p99 in each run, and CPU per call by role.
        let mut p50 = vec![Vec::new(); n];
        let mut p99 = vec![Vec::new(); n];
        let mut cpu_runs: Vec<[Vec<f64>; 5]> = (0..n).map(|_| Default::default()).collect();
        for _ in 0..scale.runs {
            let mut samples: Vec<Samples> = (0..n).map(|_| Samples::default()).collect();
            let mut used = vec![[0.0; 5]; n];
            for _ in 0..ROUNDS {
                for (i, setup) in setups.list.iter().enumerate() {
                    let Ok(caller) = &setup.caller else {
                        continue;
                    };
                    let (s, per_call) = metered(
                        c * each,
                        setup.pid,
                        drive(caller, setup.tool, None, c, each, LONG),
                    )
                    .await
                    .with_context(|| setup.name())?;
                    samples[i].extend(s.0);
                    for (total, role) in used[i].iter_mut().zip(per_call) {
                        #[allow(clippy::cast_precision_loss)]
                        let share = role / ROUNDS as f64;
                        *total += share;
                    }
                }
            }
            for i in 0..n {
                if samples[i].len() == 0 {
                    continue;
                }
                p50[i].push(samples[i].quantile_us(0.5));
                p99[i].push(samples[i].quantile_us(0.99));
                for (role, us) in used[i].iter().enumerate() {
                    cpu_runs[i][role].push(*us);
                }
            }
        }
        let minus = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(a, b)| a - b).collect::<Vec<_>>();
        let mut matrix = Matrix::new(&[
            &format!("c={c}"),
            "p50 µs",
            "p99 µs",
            "added p50 µs",
            "added p99 µs",
        ]);
        for era in Era::BOTH {
            let Some(direct) = setups.index(Via::Direct, era) else {
                continue;
            };
            let (limit, goal) = added_goal(
                Figure {
                    values: p50[direct].clone(),
                    ..Figure::new("", "")
                }
                .median(),
            );
            section.figures.push(Figure {
                values: p50[direct].clone(),
                ..Figure::new(format!("c={c}, {}: direct p50", era.label()), "µs")
            });
            matrix.row(
                format!("direct, {}", era.label()),
                vec![
                    Cell::Median(p50[direct].clone()),
                    Cell::Median(p99[direct].clone()),
                    Cell::Empty,
                    Cell::Empty,
                ],
            );
            for via in Via::COMPARED {
                let Some(i) = setups.index(via, era) else {
                    continue;
                };
                let name = format!("{}, {}", via.label(), era.label());
                match &setups.list[i].caller {
                    Err(why) => {
                        matrix.row(
                            name,
                            vec![
                                Cell::Text(why.clone()),
                                Cell::Empty,
                                Cell::Empty,
                                Cell::Empty,
                            ],
                        );
                    }
                    Ok(_) => {
                        let added = minus(&p50[i], &p50[direct]);
                        matrix.row(
                            name,
                            vec![
                                Cell::Median(p50[i].clone()),
                                Cell::Median(p99[i].clone()),
                                Cell::Median(added.clone()),
                                Cell::Median(minus(&p99[i], &p99[direct])),
                            ],
                        );
                    }
                }
                if via == Via::McpgwStdio || via == Via::McpgwHttp {
                    let figure = Figure {
                        values: minus(&p50[i], &p50[direct]),
                        ..Figure::new(
                            format!("c={c}, {}: added p50, {}", era.label(), via.label()),
                            "µs",
                        )
                    };
                    section
                        .figures
                        .push(figure.at_most_said(limit, goal.clone()));
                }
            }
            // Over HTTP, mcpgw against mcp-proxy.
            let name = format!("c={c}, {}: mcpgw's HTTP p50 minus mcp-proxy's", era.label());
            let ours = setups.index(Via::McpgwHttp, era);
            let theirs = setups.index(Via::McpProxy, era);
            if let (Some(ours), Some(theirs)) = (ours, theirs) {
                section.figures.push(match &setups.list[theirs].caller {
                    Ok(_) => Figure {
                        values: minus(&p50[ours], &p50[theirs]),
                        ..Figure::new(name, "µs")
                    }
                    .at_most_said(0.0, "< 0 (ahead)"),
                    Err(why) => Figure::new(name, "µs").unmeasured(why.clone()),
                });
            }
        }
        details.push(matrix);
        if c > 1 {
            let heading = format!("machine CPU per call, c={c}");
            let mut columns = vec![heading.as_str(), "total µs"];
            columns.extend(cpu::ROLES);
            let mut cpu = Matrix::new(&columns);
            for (i, setup) in setups.list.iter().enumerate() {
                if setup.caller.is_err() {
                    continue;
                }
                let runs = cpu_runs[i][0].len();
                let total = (0..runs)
                    .map(|r| cpu_runs[i].iter().map(|role| role[r]).sum())
                    .collect();
                let mut cells = vec![Cell::Median(total)];
                for (role, values) in cpu_runs[i].iter().enumerate() {
                    cells.push(if role == 1 && setup.pid.is_none() {
                        Cell::Empty
                    } else {
                        Cell::Median(values.clone())
                    });
                }
                cpu.row(setup.name(), cells);
            }
            details.push(cpu);
        }
    }
    section.matrices = details;
    section.notes.push(format!(
        "Each run: {} calls at c=1 and {} × 16 at c=16 in each setup, in {ROUNDS} interleaved rounds of every setup above, in that order.",
        (scale.calls / backend.share / ROUNDS).max(1) * ROUNDS,
        (scale.calls_per_worker / backend.share / ROUNDS).max(1) * ROUNDS,
    ));
    section.notes.push(format!(
        "The server: {}. \"direct\" is the server's container called over its attached stdio, through the supervisor, as mcpgw reaches it; \"added\" is a setup's figure minus direct's for a client of the same era, within one run. A handshake-era client (`2025-11-25`) opens with `initialize`; a `2026-07-28` client sends the protocol version, its info and its capabilities in every request's `_meta` (and, over HTTP, the `MCP-Protocol-Version`, `Mcp-Method` and `Mcp-Name` headers), as the official Python client does. Over stdio mcpgw speaks the client's era to the server; over HTTP it speaks `2026-07-28` to a server that has it, as both of these do. Each HTTP client is one keep-alive connection calling one at a time (16 of them at c=16).",
        backend.describe()
    ));
    section.notes.push("The bare relay (`mcpgw-bench --relay`) only copies bytes between its stdio and the container's, on the same kind of non-blocking pipes: what any gateway in a process of its own adds at the least.".to_string());
    section.notes.push(match &bench.mcp_proxy {
        Some(binary) => format!(
            "{}: one stdio backend, `s0`, whose command is the bare relay to a new container of the server (so it reaches the same kind of container the same way, and its figures include the relay's hop), served as Streamable HTTP on a loopback port; its configuration: `[proxy]` with `separator = \"__\"` (the tool is `s0__echo`, as through mcpgw) and `shutdown_timeout_seconds = 1`, `[proxy.listen]` on `127.0.0.1`, `[[backends]]` `name = \"s0\"`, `transport = \"stdio\"`, `command` and `args` the relay, `[observability] log_level = \"error\"`; nothing else (no auth, cache, retries, limits or metrics).",
            crate::setup::about_mcp_proxy(binary)
        ),
        None => "mcp-proxy is not installed, so it was not measured: install it with `cargo install mcp-proxy --version 0.6.0 --locked --no-default-features --features yaml` (or pass `--mcp-proxy PATH`).".to_string(),
    });
    section.notes.push("Machine CPU per call: the CPU time every process on the machine used during the run (`/proc/*/task/*/schedstat`), divided by the calls; client is `mcpgw-bench`, the process in between is the gateway with its children (mcp-proxy's relay), engine `dockerd` and `containerd` with its shims, server every process in a container. At c=16 the two cores are busy, so p50 ≈ 16 × CPU per call ÷ 2 cores: each µs of CPU a call costs anywhere adds about 8 µs.".to_string());
    Ok(section)
}

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

/// One throughput case: how many callers, over which front.
#[derive(Debug, Clone, Copy)]
struct Case {
    http: bool,
    callers: usize,
}

async fn throughput_of(
    backend: &Backend,
    setups: &Setups,
    scale: &Scale,
    profile: bool,
) -> anyhow::Result<Section> {
    let mut section = Section::new(format!(
        "Throughput: `echo` calls per second on {}",
        backend.label
    ));
    let mut cases = vec![Case {
        http: false,
        callers: scale.window,
    }];
    cases.extend(scale.http_clients.iter().map(|&callers| Case {
        http: true,
        callers,
    }));
    let widest = cases.iter().filter(|c| c.http).map(|c| c.callers).max();
    // Which setups a case compares: direct, mcpgw, and mcp-proxy over HTTP.
    let compared = |case: Case| {
        if case.http {
            vec![Via::Direct, Via::McpgwHttp, Via::McpProxy]
        } else {
            vec![Via::Direct, Via::McpgwStdio]
        }
    };
    // `[case][era][via]`: calls/s in each run.
    let mut rates: Vec<Vec<Vec<Vec<f64>>>> = cases
        .iter()
        .map(|&case| {
            Era::BOTH
                .iter()
                .map(|_| vec![Vec::new(); compared(case).len()])
                .collect()
        })
        .collect();
    let mut report = None;
    for run in 0..scale.runs {
        for (k, &case) in cases.iter().enumerate() {
            let (total, budget) = if case.http {
                (usize::MAX / 2, scale.http_for)
            } else {
                (scale.pipelined / backend.share, scale.pipelined_for)
            };
            let each = (total / case.callers).max(1);
            for (e, era) in Era::BOTH.into_iter().enumerate() {
                for (v, via) in compared(case).into_iter().enumerate() {
                    let setup = setups.get(via, era);
                    let Ok(caller) = &setup.caller else {
                        continue;
                    };
                    let recording =
                        (profile && run == 0 && via == Via::McpgwStdio && era == Era::Handshake)
                            .then(|| setup.pid.map(Profile::start))
                            .flatten()
                            .transpose()?;
                    let (_, rate) = drive(caller, setup.tool, None, case.callers, each, budget)
                        .await
                        .with_context(|| setup.name())?;
                    if let Some(recording) = recording {
                        report = Some(recording.finish().await?);
                    }
                    rates[k][e][v].push(rate);
                }
            }
        }
    }
    let mut matrix = Matrix::new(&[
        "calls/s",
        "direct",
        "mcpgw",
        "mcpgw, % of direct",
        "mcp-proxy",
        "mcp-proxy, % of direct",
    ]);
    let percent = |a: &[f64], b: &[f64]| {
        a.iter()
            .zip(b)
            .map(|(a, b)| 100.0 * a / b)
            .collect::<Vec<_>>()
    };
    for (k, &case) in cases.iter().enumerate() {
        let front = if case.http {
            format!("HTTP, {} client(s)", case.callers)
        } else {
            format!("stdio, {} in flight", case.callers)
        };
        for (e, era) in Era::BOTH.into_iter().enumerate() {
            let name = format!("{front}, {}", era.label());
            let direct = &rates[k][e][0];
            let ours = &rates[k][e][1];
            let mut cells = vec![
                Cell::Median(direct.clone()),
                Cell::Median(ours.clone()),
                Cell::Median(percent(ours, direct)),
            ];
            if case.http {
                match &setups.get(Via::McpProxy, era).caller {
                    Ok(_) => {
                        let theirs = &rates[k][e][2];
                        cells.push(Cell::Median(theirs.clone()));
                        cells.push(Cell::Median(percent(theirs, direct)));
                    }
                    Err(why) => {
                        cells.push(Cell::Text(why.clone()));
                        cells.push(Cell::Empty);
                    }
                }
            } else {
                cells.extend([Cell::Empty, Cell::Empty]);
            }
            matrix.row(name.clone(), cells);
            // The goals: at the stdio window and the widest HTTP case.
            if !case.http || Some(case.callers) == widest {
                section.figures.push(
                    Figure {
                        values: percent(ours, direct),
                        ..Figure::new(format!("{name}: mcpgw, % of direct"), "%")
                    }
                    .at_least(90.0),
                );
            }
            if case.http && Some(case.callers) == widest {
                let figure = Figure::new(format!("{name}: mcpgw ÷ mcp-proxy"), "×");
                section
                    .figures
                    .push(match &setups.get(Via::McpProxy, era).caller {
                        Ok(_) => Figure {
                            values: rates[k][e][1]
                                .iter()
                                .zip(&rates[k][e][2])
                                .map(|(a, b)| a / b)
                                .collect(),
                            ..figure
                        }
                        .at_least_said(1.0, "> 1 (ahead)"),
                        Err(why) => figure.unmeasured(why.clone()),
                    });
            }
            // The absolute goals, for the Rust test server, handshake era.
            if backend.entrypoint.is_none() && era == Era::Handshake {
                if !case.http {
                    section.figures.push(
                        Figure {
                            values: ours.clone(),
                            ..Figure::new(format!("{name}: mcpgw"), "calls/s")
                        }
                        .at_least(20_000.0),
                    );
                } else if Some(case.callers) == widest {
                    section.figures.push(
                        Figure {
                            values: ours.clone(),
                            ..Figure::new(format!("{name}: mcpgw"), "calls/s")
                        }
                        .at_least(5_000.0),
                    );
                }
            }
        }
    }
    section.matrices.push(matrix);
    section.notes.push(format!(
        "stdio: up to {} calls a run, {} in flight, for at most {:?}; HTTP: each client one keep-alive connection calling one at a time for {:?} a run, against as many callers one at a time directly over stdio. mcp-proxy fronts HTTP only. The setups of a case run one after the other in each run.",
        scale.pipelined / backend.share,
        scale.window,
        scale.pipelined_for,
        scale.http_for
    ));
    if let Some(report) = report {
        section
            .notes
            .push(format!("\nWhere mcpgw's time goes during its handshake-era stdio run (`perf`, self time, top symbols):\n\n```\n{report}\n```"));
    }
    Ok(section)
}
