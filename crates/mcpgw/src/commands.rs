//! The commands behind the CLI: `run`, `validate`, `tools`, `call`, `ps`
//! and `gc`.
//!
//! `tools` and `call` talk to the mux as an MCP client over an in-memory
//! pipe, so they see exactly what a real client sees, filters included.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context as _, anyhow};
use mcpgw_catalog::Catalog;
use mcpgw_docker::{DockerRuntime, Engine};
use mcpgw_mux::{Mux, Slots};
use mcpgw_secrets::LiveRedactor;
use mcpgw_supervisor::{Plan, Supervisor};
use rmcp::model::CallToolRequestParams;
use rmcp::service::RunningService;
use rmcp::{RoleClient, ServiceExt};

use crate::cli::{Auth, Command, HttpArgs, SecretsArg, Transport};
use crate::front::{Front, front};
use crate::redaction::Filter;
use crate::reload::Reloader;
use crate::secrets::{self, Resolved};
use crate::telemetry::Telemetry;

/// A failed command and the exit code it maps to.
#[derive(Debug)]
pub(crate) struct Failure {
    code: u8,
    error: anyhow::Error,
}

impl Failure {
    /// Usage and catalog errors exit with 2.
    pub(crate) fn usage(error: impl Into<anyhow::Error>) -> Self {
        Self {
            code: 2,
            error: error.into(),
        }
    }

    pub(crate) fn exit_code(&self) -> u8 {
        self.code
    }
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(error: E) -> Self {
        Self {
            code: 1,
            error: error.into(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#}", self.error)
    }
}

pub(crate) async fn run(command: Command, engine: Engine) -> Result<(), Failure> {
    match command {
        Command::Run {
            catalog,
            transport,
            listen,
            secrets,
            http,
        } => {
            let catalog = load(&catalog)?;
            let telemetry = crate::telemetry::init(Some(&catalog.gateway.tracing))?;
            let served = match transport {
                Transport::Stdio => serve(catalog, &secrets, engine, &telemetry).await,
                Transport::Http => {
                    serve_http(catalog, &listen, &secrets, &http, engine, &telemetry).await
                }
            };
            telemetry.shutdown().await;
            served
        }
        other => {
            crate::telemetry::init(None)?;
            once(other, engine).await
        }
    }
}

/// Runs a command other than `mcpgw run`.
async fn once(command: Command, engine: Engine) -> Result<(), Failure> {
    match command {
        Command::Run { .. } => unreachable!("`mcpgw run` is served by `run`"),
        Command::Validate { catalog } => validate(&catalog),
        Command::EgressProxy {
            server,
            listen,
            peers,
            allow,
        } => {
            let peers = peers
                .map(|p| {
                    p.parse::<ipnet::IpNet>().map_err(|e| {
                        Failure::usage(anyhow!(
                            "--peers `{p}` is not a network ({e}); write it as ADDRESS/PREFIX, such as 172.30.0.0/16"
                        ))
                    })
                })
                .transpose()?;
            let rules = allow
                .into_iter()
                .map(mcpgw_catalog::EgressRule::try_from)
                .collect::<Result<Vec<_>, String>>()
                .map_err(|e| Failure::usage(anyhow!(e)))?;
            let allow = mcpgw_catalog::Egress::new(rules)
                .ok_or_else(|| Failure::usage(anyhow!("no --allow entry given")))?;
            Ok(crate::egress::serve(listen, peers, server, allow).await?)
        }
        Command::Tools { catalog, secrets } => tools(&catalog, &secrets, engine).await,
        Command::Call {
            catalog,
            name,
            arguments,
            secrets,
        } => call(&catalog, &name, &arguments, &secrets, engine).await,
        Command::Secret { action } => secrets::command(action).await,
        Command::Token { action } => crate::tokens::command(action),
        Command::Client { action } => crate::clients::command(action),
        Command::Scan {
            catalog,
            format,
            fail_on,
            secrets,
        } => scan(&catalog, format, fail_on, &secrets, engine).await,
        Command::Lock {
            catalog,
            check,
            update,
            secrets,
        } => {
            let mode = match (check, update) {
                (true, _) => crate::lock::Mode::Check,
                (false, true) => crate::lock::Mode::Update,
                (false, false) => crate::lock::Mode::Create,
            };
            crate::lock::command(&catalog, mode, &secrets, engine).await
        }
        Command::Ps => ps(engine).await,
        Command::Gc => gc(engine).await,
    }
}

/// Connects to the engine and removes what dead gateways left behind.
pub(crate) async fn connect(engine: Engine) -> Result<DockerRuntime, Failure> {
    let runtime = DockerRuntime::connect_to(engine).await?;
    match runtime.reap_orphans().await {
        Ok(reaped) if !reaped.is_empty() => {
            tracing::info!(
                count = reaped.len(),
                "removed containers left by gateways that are gone"
            );
        }
        Ok(_) => {}
        Err(err) => tracing::warn!("could not look for orphaned containers: {err}"),
    }
    Ok(runtime)
}

/// Hands the catalog's servers (`only` selects some), their secrets and
/// the mux's slots to a supervisor on `runtime`; `audience` is the one
/// client's, over stdio (none: the HTTP front, which keeps an audit trail
/// by default).
fn supervise(
    runtime: DockerRuntime,
    catalog: &Catalog,
    only: Option<&[usize]>,
    resolved: &Resolved,
    live: &LiveRedactor,
    audience: Option<tokio::sync::watch::Receiver<Option<mcpgw_backend::Audience>>>,
) -> Result<(Supervisor, Mux, Slots), Failure> {
    let audit = crate::audit::open(&catalog.gateway.audit, audience.is_none())?;
    let (mux, slots) = Mux::new(catalog);
    slots.set_secrets(live.clone());
    if let Some(audit) = audit {
        let front = if audience.is_some() { "stdio" } else { "http" };
        slots.set_audit(audit, catalog, front);
        runtime.on_egress(Arc::new(EgressAudit(slots.clone())));
    }
    let plan = Plan {
        only: only.map(<[usize]>::to_vec),
        secrets: catalog
            .servers
            .iter()
            .map(|s| resolved.injection(s))
            .collect(),
        audience,
    };
    let supervisor = Supervisor::start(Arc::new(runtime), catalog, slots.clone(), plan);
    Ok((supervisor, mux, slots))
}

/// Egress proxies' decisions, into the audit trail.
#[derive(Debug)]
struct EgressAudit(mcpgw_mux::Slots);

impl mcpgw_docker::ObserveEgress for EgressAudit {
    fn decided(&self, decision: mcpgw_catalog::EgressDecision) {
        self.0.audit_egress(&decision);
    }
}

async fn ps(engine: Engine) -> Result<(), Failure> {
    let runtime = DockerRuntime::connect_to(engine).await?;
    let managed = runtime.managed().await?;
    let mut out = format!(
        "{:<36}  {:<12}  {:<20}  {:<9}  OWNER\n",
        "CONTAINER", "SERVER", "GATEWAY", "STATE"
    );
    for m in &managed {
        let owner = if m.orphan { "orphan" } else { "running" };
        let gateway = format!("{}@{}", m.pid, m.host);
        out.push_str(&format!(
            "{:<36}  {:<12}  {gateway:<20}  {:<9}  {owner}\n",
            m.name, m.server, m.state
        ));
    }
    print_stdout(&out);
    Ok(())
}

async fn gc(engine: Engine) -> Result<(), Failure> {
    let runtime = DockerRuntime::connect_to(engine).await?;
    let reaped = runtime.reap_orphans().await?;
    print_stdout(&format!("removed {} orphaned container(s)\n", reaped.len()));
    Ok(())
}

pub(crate) fn load(path: &Path) -> Result<Catalog, Failure> {
    mcpgw_catalog::load(path).map_err(Failure::usage)
}

fn validate(path: &Path) -> Result<(), Failure> {
    let catalog = load(path)?;
    let mut out = String::new();
    for server in &catalog.servers {
        let relaxed = server.relaxations();
        let mut note = if relaxed.is_empty() {
            "default confinement".to_string()
        } else {
            format!("relaxed: {}", relaxed.join(", "))
        };
        if !server.secrets.is_empty() {
            let secrets: Vec<String> = server
                .secrets
                .iter()
                .map(|(var, secret)| match secret.file_path() {
                    Some(path) => format!("{var}={path}"),
                    None => format!("{var}<-{}", secret.name),
                })
                .collect();
            note.push_str(&format!("; secrets: {}", secrets.join(", ")));
        }
        let mut source = server.image.clone();
        if let Some(remote) = &server.remote {
            source = remote.url.to_string();
            let names: Vec<&str> = remote.secret_names().iter().map(|n| n.as_str()).collect();
            if !names.is_empty() {
                note.push_str(&format!("; credentials from secrets: {}", names.join(", ")));
            }
        }
        out.push_str(&format!("  {:<20} {:<36} {note}\n", server.name, source));
    }
    print_stdout(&format!(
        "{}: valid, {} server(s)\n{out}",
        path.display(),
        catalog.servers.len()
    ));
    Ok(())
}

/// Writes a one-shot command's result to stdout. Never used in stdio mode.
#[allow(clippy::print_stdout)]
pub(crate) fn print_stdout(text: &str) {
    print!("{text}");
}

async fn serve_http(
    catalog: Catalog,
    listen: &str,
    secrets: &SecretsArg,
    http: &HttpArgs,
    engine: Engine,
    telemetry: &Telemetry,
) -> Result<(), Failure> {
    let path = catalog.path.as_path();
    let listen: std::net::SocketAddr = listen.parse().map_err(|e| {
        Failure::usage(anyhow!(
            "--listen `{listen}` is not an address: {e}; fix: give IP:PORT, such as 127.0.0.1:8811"
        ))
    })?;
    let wants = |auth| http.auth.contains(&auth);
    if wants(Auth::None) && http.auth.len() > 1 {
        return Err(Failure::usage(anyhow!(
            "--auth none cannot be combined with another method; fix: give `token`, `oauth` or `token,oauth`"
        )));
    }
    if wants(Auth::None) && !listen.ip().is_loopback() {
        return Err(Failure::usage(anyhow!(
            "refusing to listen on {listen} without authentication: anyone who reaches it could use every server; fix: add `--auth token` (create tokens with `mcpgw token create NAME`) or `--auth oauth` (see gateway.auth.oauth), or listen on 127.0.0.1"
        )));
    }
    let tokens = if wants(Auth::Token) {
        Some(token_store(http, &catalog, path)?)
    } else {
        None
    };
    let oauth = if wants(Auth::Oauth) {
        let Some(spec) = &catalog.gateway.auth.oauth else {
            return Err(Failure::usage(anyhow!(
                "--auth oauth, but {} has no `gateway.auth.oauth`; fix: name the issuer and this gateway's resource URL there (README, \"Behind an identity provider\")",
                path.display()
            )));
        };
        let oauth = crate::oauth::OAuth::discover(spec).await?;
        tracing::info!(
            issuer = %spec.issuer,
            resource = %spec.resource,
            metadata = %oauth.metadata_url(),
            "accepting OAuth access tokens"
        );
        Some(oauth)
    } else {
        None
    };
    let resolved = secrets::resolve(&catalog, None, secrets).await?;
    let runtime = connect(engine).await?;
    tracing::info!(
        catalog = %path.display(),
        servers = catalog.servers.len(),
        instance = runtime.instance(),
        tracing = telemetry.tracing(),
        "mcpgw serving over HTTP"
    );
    let live = resolved.install();
    let filter = Filter::new(live.clone(), catalog.gateway.redaction);
    let (mut gateway, mux, slots) = supervise(runtime, &catalog, None, &resolved, &live, None)?;
    mux.serve_many_sessions();
    let mut reloader = Reloader::new(catalog, resolved, secrets.clone(), live, slots, "http");
    if wants(Auth::Token) {
        reloader.check_tokens(http.tokens.path());
    }
    let options = crate::http::HttpOptions {
        listen,
        tokens,
        oauth,
        allowed_hosts: http.allow_hosts.clone(),
        allowed_origins: http.allow_origins.clone(),
        max_body: http.max_body,
    };
    let outcome = tokio::select! {
        outcome = crate::http::serve(mux, options, filter, shutdown_signal()) => outcome,
        () = reloader.run(&mut gateway) => Ok(()),
    };
    gateway.shutdown().await;
    outcome.map_err(Failure::from)
}

/// The token store `--auth token` checks against, refused when it is empty
/// or binds a token to a profile the catalog lacks.
fn token_store(
    http: &HttpArgs,
    catalog: &Catalog,
    path: &Path,
) -> Result<crate::tokens::LiveTokens, Failure> {
    let store_path = http.tokens.path();
    let tokens = crate::tokens::Tokens::load(&store_path)?;
    if tokens.is_empty() {
        return Err(Failure::usage(anyhow!(
            "--auth token, but {} holds no token; fix: `mcpgw token create NAME`",
            store_path.display()
        )));
    }
    tokens_have_profiles(&tokens, catalog, path).map_err(|e| Failure::usage(anyhow!(e)))?;
    Ok(crate::tokens::LiveTokens::new(store_path, tokens))
}

/// Refuses `catalog` (read from `path`) when a token is bound to a profile
/// it does not define: at start-up, and for a reload.
pub(crate) fn tokens_have_profiles(
    tokens: &crate::tokens::Tokens,
    catalog: &Catalog,
    path: &Path,
) -> Result<(), String> {
    for stored in tokens.entries() {
        if let Some(profile) = &stored.profile
            && !catalog.profiles.contains_key(profile)
        {
            return Err(format!(
                "token `{}` is bound to profile `{profile}`, which {} does not define; fix: add it under `profiles:`, or revoke the token",
                stored.name,
                path.display()
            ));
        }
    }
    Ok(())
}

async fn serve(
    catalog: Catalog,
    secrets: &SecretsArg,
    engine: Engine,
    telemetry: &Telemetry,
) -> Result<(), Failure> {
    let resolved = secrets::resolve(&catalog, None, secrets).await?;
    let runtime = connect(engine).await?;
    tracing::info!(
        catalog = %catalog.path.display(),
        servers = catalog.servers.len(),
        instance = runtime.instance(),
        tracing = telemetry.tracing(),
        "mcpgw serving over stdio"
    );
    let live = resolved.install();
    let filter = Filter::new(live.clone(), catalog.gateway.redaction);
    let (audience, heard) = tokio::sync::watch::channel(None);
    let (mut gateway, mux, slots) =
        supervise(runtime, &catalog, None, &resolved, &live, Some(heard))?;
    let reloader = Reloader::new(catalog, resolved, secrets.clone(), live, slots, "stdio");
    let session = async {
        let (stdin, stdout) = rmcp::transport::stdio_pipes();
        let Front {
            reader,
            writer,
            drain,
        } = front(stdin, stdout, filter, Some(audience));
        let running = mux
            .serve((reader, writer))
            .await
            .context("the client did not open an MCP session")?;
        running.waiting().await.context("the session task failed")?;
        // What rmcp wrote last still goes out.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), drain).await;
        Ok::<_, anyhow::Error>(())
    };
    let outcome = tokio::select! {
        outcome = session => {
            tracing::info!("client disconnected; shutting down");
            outcome
        }
        signal = shutdown_signal() => {
            tracing::info!("received {signal}; shutting down");
            Ok(())
        }
        () = reloader.run(&mut gateway) => Ok(()),
    };
    gateway.shutdown().await;
    if let Err(err) = outcome {
        // A client that goes away before initializing is not our failure.
        tracing::warn!("{err:#}");
    }
    Ok(())
}

async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        tracing::warn!("cannot install signal handlers; stop mcpgw by closing its stdin");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    }
}

/// Starts the servers (`only` selects some), connects an in-memory MCP
/// client to the mux, runs `f`, then shuts everything down.
pub(crate) async fn with_client<T>(
    catalog: &Catalog,
    only: Option<&[usize]>,
    secrets: &SecretsArg,
    engine: Engine,
    f: impl AsyncFnOnce(&RunningService<RoleClient, ()>, &Mux, &DockerRuntime) -> Result<T, Failure>,
) -> Result<T, Failure> {
    let resolved: Resolved = secrets::resolve(catalog, only, secrets).await?;
    let runtime = connect(engine).await?;
    let live = resolved.install();
    let filter = Filter::new(live.clone(), catalog.gateway.redaction);
    let (audience, heard) = tokio::sync::watch::channel(None);
    let (gateway, mux, _) = supervise(
        runtime.clone(),
        catalog,
        only,
        &resolved,
        &live,
        Some(heard),
    )?;
    let (client_io, server_io) = tokio::io::duplex(1 << 20);
    let server = mux.clone();
    let serving = tokio::spawn(async move {
        let (read, write) = tokio::io::split(server_io);
        let Front { reader, writer, .. } = front(read, write, filter, Some(audience));
        if let Ok(running) = server.serve((reader, writer)).await {
            let _ = running.waiting().await;
        }
    });
    let outcome = match ().serve(client_io).await {
        Ok(client) => {
            let outcome = f(&client, &mux, &runtime).await;
            let _ = client.cancel().await;
            outcome
        }
        Err(err) => Err(anyhow!("cannot open an MCP session with the gateway: {err}").into()),
    };
    serving.abort();
    gateway.shutdown().await;
    outcome
}

async fn tools(path: &Path, secrets: &SecretsArg, engine: Engine) -> Result<(), Failure> {
    let catalog = load(path)?;
    with_client(&catalog, None, secrets, engine, async |client, mux, _| {
        let tools = client.list_all_tools().await?;
        let table = mux.table().await;
        let width = tools.iter().map(|t| t.name.len()).max().unwrap_or(4).max(4);
        let mut out = format!("{:<width$}  {:<12}  DESCRIPTION\n", "TOOL", "SERVER");
        for tool in &tools {
            let server = match table.tool(&tool.name) {
                mcpgw_mux::router::ToolLookup::Found(route) => {
                    catalog.servers[route.server].name.as_str()
                }
                _ => "?",
            };
            let description = tool
                .description
                .as_deref()
                .and_then(|d| d.lines().find(|l| !l.trim().is_empty()))
                .unwrap_or("")
                .trim();
            out.push_str(&format!(
                "{:<width$}  {server:<12}  {description}\n",
                tool.name
            ));
        }
        for (server, reason) in mux.failures() {
            tracing::error!(server = %server, "unavailable: {reason}");
        }
        if !table.findings().is_empty() {
            out.push('\n');
            out.push_str(&crate::scan::table(table.findings()));
        }
        print_stdout(&out);
        Ok(())
    })
    .await
}

async fn scan(
    path: &Path,
    format: crate::scan::Format,
    fail_on: mcpgw_scan::Severity,
    secrets: &SecretsArg,
    engine: Engine,
) -> Result<(), Failure> {
    let catalog = load(path)?;
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let findings = with_client(&catalog, None, secrets, engine, async |_, mux, _| {
        for (server, reason) in mux.failures() {
            tracing::error!(server = %server, "unavailable, so not scanned: {reason}");
        }
        Ok(mux.table().await.findings().to_vec())
    })
    .await?;
    print_stdout(&crate::scan::render(format, &findings, path, &text));
    match crate::scan::fails(&findings, fail_on) {
        0 => Ok(()),
        n => Err(anyhow!(
            "{n} tool-poisoning finding(s) at or above `{fail_on}`; fix: review the servers named above, or pass a higher --fail-on"
        )
        .into()),
    }
}

async fn call(
    path: &Path,
    name: &str,
    arguments: &str,
    secrets: &SecretsArg,
    engine: Engine,
) -> Result<(), Failure> {
    let catalog = load(path)?;
    let arguments: serde_json::Map<String, serde_json::Value> = serde_json::from_str(arguments)
        .map_err(|e| Failure::usage(anyhow!("arguments must be a JSON object: {e}")))?;
    // Start only the server whose name prefixes the tool name: one call
    // should not wait for every container in the catalog.
    let separator = catalog.gateway.separator.as_str();
    let owner = catalog
        .servers
        .iter()
        .enumerate()
        .filter(|(_, s)| name.starts_with(&format!("{}{separator}", s.name)))
        .max_by_key(|(_, s)| s.name.as_str().len())
        .map(|(i, _)| i)
        .ok_or_else(|| {
            Failure::usage(anyhow!(
                "no server in {} owns `{name}`; exposed names are <server>{separator}<tool>, see `mcpgw tools`",
                path.display()
            ))
        })?;
    let request = CallToolRequestParams::new(name.to_string()).with_arguments(arguments);
    with_client(
        &catalog,
        Some(&[owner]),
        secrets,
        engine,
        async |client, _, _| {
            let result = client.call_tool(request).await?;
            print_stdout(&format!("{}\n", serde_json::to_string_pretty(&result)?));
            if result.is_error == Some(true) {
                return Err(anyhow!("the tool reported an error").into());
            }
            Ok(())
        },
    )
    .await
}
