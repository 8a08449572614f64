//! The supervision loop against an in-memory fake runtime, under paused
//! time: crashes and backoff, a death while serving, the circuit and its probe, a handshake that
//! hangs, idle stop and wake, an engine outage, shutdown, and reloads (only
//! what changed is stopped and started; a server removed while it starts).
//!
//! The fake's containers run `mcpgw-testserver` in a task over
//! `tokio::io::duplex` (or fail the way a script says), and it records each
//! thing done to it with tokio's clock, so the tests assert what was created
//! and removed, when, and what the mux was told.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use mcpgw_catalog::{Catalog, ServerSpec};
use mcpgw_mux::Mux;
use mcpgw_secrets::Injection;
use parking_lot::Mutex;
use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::{
    BoxFuture, Created, ErrorKind, ExitState, Plan, Runtime, RuntimeError, StderrTail, Stdio,
    Supervisor,
};

/// What one container does once started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Act {
    /// Serves MCP (the test server) until killed.
    Serve,
    /// Writes `boom` to stderr and exits at once with this code.
    Crash(i64),
    /// Runs, reads its stdin, and never answers.
    Hang,
}

/// What was done to the fake, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Event {
    /// A container was created: (server, id).
    Created(String, String),
    /// A create was refused because the engine is down: server.
    Refused(String),
    /// A create was asked for, and waits for the gate: server.
    Asked(String),
    /// A container was removed: id.
    Removed(String),
}

#[derive(Debug)]
struct Live {
    /// Ends the test server's task, if it serves.
    serving: Option<tokio::task::AbortHandle>,
    /// The far end of a hanging container's stdio, held open.
    _held: Option<tokio::io::DuplexStream>,
    act: Act,
}

#[derive(Debug)]
struct State {
    engine_up: bool,
    next: u64,
    /// Each server's acts, one per container; the last one repeats.
    scripts: HashMap<String, VecDeque<Act>>,
    live: BTreeMap<String, Live>,
    exits: HashMap<String, ExitState>,
    events: Vec<(Instant, Event)>,
}

/// An engine in memory.
#[derive(Debug)]
struct Fake {
    state: Mutex<State>,
    changed: watch::Sender<()>,
    /// When set, each create waits for a permit, so that a test can read
    /// what the loop reported before it goes on.
    gate: Option<tokio::sync::Semaphore>,
}

impl Fake {
    fn new(scripts: &[(&str, &[Act])]) -> Arc<Self> {
        Self::build(scripts, None)
    }

    /// A fake whose creates wait for [`Fake::admit`].
    fn gated(scripts: &[(&str, &[Act])]) -> Arc<Self> {
        Self::build(scripts, Some(tokio::sync::Semaphore::new(0)))
    }

    /// Lets one create through the gate.
    fn admit(&self) {
        self.gate.as_ref().expect("a gated fake").add_permits(1);
    }

    fn build(scripts: &[(&str, &[Act])], gate: Option<tokio::sync::Semaphore>) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                engine_up: true,
                next: 0,
                scripts: scripts
                    .iter()
                    .map(|(server, acts)| ((*server).to_string(), acts.iter().copied().collect()))
                    .collect(),
                live: BTreeMap::new(),
                exits: HashMap::new(),
                events: Vec::new(),
            }),
            changed: watch::channel(()).0,
            gate,
        })
    }

    fn record(&self, state: &mut State, event: Event) {
        state.events.push((Instant::now(), event));
        self.changed.send_replace(());
    }

    /// Waits (on tokio's paused clock) until `done` holds of the events.
    async fn until(&self, what: &str, done: impl Fn(&[(Instant, Event)]) -> bool) {
        let mut changed = self.changed.subscribe();
        let wait = async {
            loop {
                if done(&self.state.lock().events) {
                    return;
                }
                let _ = changed.changed().await;
            }
        };
        if tokio::time::timeout(Duration::from_secs(3600), wait)
            .await
            .is_err()
        {
            panic!("never happened: {what}; events: {:#?}", self.events());
        }
    }

    fn events(&self) -> Vec<(Instant, Event)> {
        self.state.lock().events.clone()
    }

    /// When each container of the fake was created and removed, in order.
    fn lifetimes(&self) -> Vec<(String, Instant, Option<Instant>)> {
        let events = self.events();
        events
            .iter()
            .filter_map(|(at, e)| match e {
                Event::Created(_, id) => {
                    let removed = events.iter().find_map(|(gone, e)| {
                        matches!(e, Event::Removed(r) if r == id).then_some(*gone)
                    });
                    Some((id.clone(), *at, removed))
                }
                _ => None,
            })
            .collect()
    }

    fn created(events: &[(Instant, Event)]) -> usize {
        events
            .iter()
            .filter(|(_, e)| matches!(e, Event::Created(..)))
            .count()
    }

    fn asked(events: &[(Instant, Event)]) -> usize {
        events
            .iter()
            .filter(|(_, e)| matches!(e, Event::Asked(..)))
            .count()
    }

    fn refused(events: &[(Instant, Event)]) -> usize {
        events
            .iter()
            .filter(|(_, e)| matches!(e, Event::Refused(..)))
            .count()
    }

    /// The engine goes away, taking every container with it.
    fn outage(&self) {
        let mut state = self.state.lock();
        state.engine_up = false;
        for live in state.live.values() {
            if let Some(serving) = &live.serving {
                serving.abort();
            }
        }
    }

    /// Container `id`'s server dies (the kernel kills it).
    fn kill(&self, id: &str) {
        if let Some(serving) = self
            .state
            .lock()
            .live
            .get(id)
            .and_then(|l| l.serving.as_ref())
        {
            serving.abort();
        }
    }

    fn engine_back(&self) {
        self.state.lock().engine_up = true;
    }

    /// A container carrying this gateway's label that the loop never
    /// started (one left by a restart the gateway lost track of).
    fn stray(&self, id: &str) {
        self.state.lock().live.insert(
            id.to_string(),
            Live {
                serving: None,
                _held: None,
                act: Act::Hang,
            },
        );
    }
}

impl Runtime for Fake {
    fn engine(&self) -> &'static str {
        "Fake"
    }

    fn create<'a>(
        &'a self,
        spec: &'a ServerSpec,
        _secrets: &'a Injection,
        _session: Option<u64>,
    ) -> BoxFuture<'a, Result<Created, RuntimeError>> {
        Box::pin(async move {
            let server = spec.name.to_string();
            if let Some(gate) = &self.gate {
                self.record(&mut self.state.lock(), Event::Asked(server.clone()));
                gate.acquire().await.expect("an open gate").forget();
            }
            let mut state = self.state.lock();
            if !state.engine_up {
                self.record(&mut state, Event::Refused(server));
                let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
                return Err(RuntimeError::new(ErrorKind::EngineDown, refused));
            }
            let script = state.scripts.get_mut(&server).expect("a script");
            let act = if script.len() > 1 {
                script.pop_front().expect("an act")
            } else {
                script[0]
            };
            state.next += 1;
            let id = format!("{server}-{}", state.next);
            state.live.insert(
                id.clone(),
                Live {
                    serving: None,
                    _held: None,
                    act,
                },
            );
            self.record(&mut state, Event::Created(server.clone(), id.clone()));
            Ok(Created {
                name: format!("mcpgw-{id}"),
                id,
                server,
            })
        })
    }

    fn attach<'a>(&'a self, created: &'a Created) -> BoxFuture<'a, Result<Stdio, RuntimeError>> {
        Box::pin(async move {
            let mut state = self.state.lock();
            let stderr = StderrTail::new(created.server.clone());
            let live = state.live.get_mut(&created.id).expect("created");
            let (ours, theirs) = tokio::io::duplex(1 << 16);
            match live.act {
                Act::Serve => {
                    let server = mcpgw_testserver::TestServer::new(0);
                    let task = tokio::spawn(async move {
                        if let Ok(running) = server.serve(theirs).await {
                            let _ = running.waiting().await;
                        }
                    });
                    live.serving = Some(task.abort_handle());
                }
                Act::Hang => live._held = Some(theirs),
                Act::Crash(code) => {
                    stderr.push(b"boom\n");
                    drop(theirs);
                    state.exits.insert(
                        created.id.clone(),
                        ExitState {
                            code: Some(code),
                            oom_killed: false,
                            running: false,
                        },
                    );
                }
            }
            let (stdout, stdin) = tokio::io::split(ours);
            Ok(Stdio {
                stdin: Box::pin(stdin),
                stdout: Box::pin(stdout),
                stderr,
            })
        })
    }

    fn start<'a>(&'a self, _created: &'a Created) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async { Ok(()) })
    }

    fn stop<'a>(&'a self, id: &'a str, _grace: Duration) -> BoxFuture<'a, ()> {
        self.remove(id)
    }

    fn remove<'a>(&'a self, id: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let mut state = self.state.lock();
            if let Some(live) = state.live.remove(id) {
                if let Some(serving) = live.serving {
                    serving.abort();
                }
                self.record(&mut state, Event::Removed(id.to_string()));
            }
        })
    }

    fn exit<'a>(&'a self, id: &'a str, limit: Duration) -> BoxFuture<'a, Option<ExitState>> {
        Box::pin(async move {
            let killed = {
                let state = self.state.lock();
                if let Some(exit) = state.exits.get(id) {
                    return Some(*exit);
                }
                // A serving container whose task ended was killed.
                state
                    .live
                    .get(id)
                    .and_then(|l| l.serving.as_ref())
                    .is_some_and(tokio::task::AbortHandle::is_finished)
            };
            if killed {
                return Some(ExitState {
                    code: Some(137),
                    oom_killed: false,
                    running: false,
                });
            }
            tokio::time::sleep(limit).await;
            Some(ExitState {
                code: None,
                oom_killed: false,
                running: true,
            })
        })
    }

    fn owned(&self) -> BoxFuture<'_, Result<Vec<String>, RuntimeError>> {
        Box::pin(async move { Ok(self.state.lock().live.keys().cloned().collect()) })
    }

    fn engine_up(&self) -> BoxFuture<'_, bool> {
        Box::pin(async move { self.state.lock().engine_up })
    }

    fn limits_reached<'a>(&'a self, _id: &'a str) -> BoxFuture<'a, Vec<String>> {
        Box::pin(async { Vec::new() })
    }
}

fn catalog(text: &str) -> Catalog {
    mcpgw_catalog::parse(text, std::path::Path::new("t.yaml"), &std::env::temp_dir())
        .expect("a valid catalog")
}

fn start(fake: &Arc<Fake>, catalog: &Catalog) -> (Supervisor, Mux) {
    let (supervisor, mux, _) = start_reloadable(fake, catalog);
    (supervisor, mux)
}

/// As [`start`], with the mux's slots, through which a test reloads.
fn start_reloadable(fake: &Arc<Fake>, catalog: &Catalog) -> (Supervisor, Mux, mcpgw_mux::Slots) {
    let (mux, slots) = Mux::new(catalog);
    let plan = Plan {
        only: None,
        secrets: Vec::new(),
        audience: None,
    };
    let runtime: Arc<dyn Runtime> = fake.clone();
    (
        Supervisor::start(runtime, catalog, slots.clone(), plan),
        mux,
        slots,
    )
}

/// Waits until `server` is in `state` in the mux's eyes, and says when.
async fn reaches(mux: &Mux, server: &str, state: &str) -> Instant {
    let wait = async {
        loop {
            if mux
                .readiness()
                .iter()
                .any(|(name, s)| name == server && *s == state)
            {
                return Instant::now();
            }
            // The mux's states have no public watcher: look every
            // millisecond of paused time.
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(3600), wait)
        .await
        .unwrap_or_else(|_| panic!("{server} never became {state}: {:?}", mux.failures()))
}

fn failure(mux: &Mux, server: &str) -> String {
    mux.failures()
        .into_iter()
        .find(|(name, _)| name.as_str() == server)
        .map(|(_, reason)| reason)
        .unwrap_or_else(|| panic!("{server} has not failed: {:?}", mux.readiness()))
}

/// The delay a failure report announces ("restarting in 412 ms").
fn announced(report: &str, before: &str) -> Duration {
    let rest = &report[report.find(before).expect("an announced delay") + before.len()..];
    let ms: u64 = rest
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .expect("a number of ms");
    Duration::from_millis(ms)
}

fn near(actual: Duration, expected: Duration) -> bool {
    actual.abs_diff(expected) <= Duration::from_millis(2)
}

#[tokio::test(start_paused = true)]
async fn a_crashing_server_is_restarted_one_container_at_a_time_with_doubling_backoff() {
    let fake = Fake::gated(&[("srv", &[Act::Crash(1)])]);
    let catalog = catalog(
        "version: 1
gateway:
  restart: { initial_backoff: 1s, max_backoff: 8s, circuit_after: 10, circuit_open: 60s }
servers:
  srv: { image: x }
",
    );
    let (supervisor, mux) = start(&fake, &catalog);
    let mut reports = Vec::new();
    for attempt in 1..=5 {
        fake.until("the next start", |e| Fake::asked(e) == attempt)
            .await;
        if attempt > 1 {
            reports.push(failure(&mux, "srv"));
        }
        fake.admit();
    }
    fake.until("the fifth container", |e| Fake::created(e) == 5)
        .await;
    let lifetimes = fake.lifetimes();
    for (k, pair) in lifetimes.windows(2).enumerate() {
        let (failed, next) = (&pair[0], &pair[1]);
        let removed = failed.2.expect("each failed container is removed");
        assert!(removed <= next.1, "at most one container at a time");
        let gap = next.1 - removed;
        let ceiling = Duration::from_secs(1 << k).min(Duration::from_secs(8));
        assert!(gap <= ceiling, "failure {}: {gap:?} > {ceiling:?}", k + 1);
        let report = &reports[k];
        assert!(
            report.contains("(container exited with code 1)"),
            "{report}"
        );
        assert!(report.contains("its stderr ended with:\nboom"), "{report}");
        assert!(
            report.contains(&format!("(failure {} in a row)", k + 1)),
            "{report}"
        );
        assert!(
            near(gap, announced(report, "restarting in ")),
            "slept as announced: {gap:?} in {report}"
        );
    }
    supervisor.shutdown().await;
    assert!(fake.state.lock().live.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_server_that_dies_while_serving_is_reported_removed_and_restarted() {
    let fake = Fake::gated(&[("srv", &[Act::Serve])]);
    let catalog = catalog(
        "version: 1
gateway:
  restart: { initial_backoff: 1s, max_backoff: 1s }
servers:
  srv: { image: x }
",
    );
    let (supervisor, mux) = start(&fake, &catalog);
    fake.admit();
    reaches(&mux, "srv", "ready").await;
    let first = fake.lifetimes()[0].0.clone();
    fake.kill(&first);
    fake.until("a restart", |e| Fake::asked(e) == 2).await;
    let report = failure(&mux, "srv");
    assert!(
        report.contains("(container exited with code 137 (SIGKILL"),
        "{report}"
    );
    assert!(report.contains("(failure 1 in a row)"), "{report}");
    let lifetimes = fake.lifetimes();
    assert!(lifetimes[0].2.is_some(), "the dead container is removed");
    fake.admit();
    reaches(&mux, "srv", "ready").await;
    assert_eq!(Fake::created(&fake.events()), 2);
    supervisor.shutdown().await;
    assert!(fake.state.lock().live.is_empty());
}

#[tokio::test(start_paused = true)]
async fn the_circuit_opens_after_quick_failures_and_a_probe_closes_it() {
    use Act::{Crash, Serve};
    // Three failures open the circuit; the first probe fails and opens it
    // again at once; the second serves.
    let fake = Fake::gated(&[("srv", &[Crash(2), Crash(2), Crash(2), Crash(2), Serve])]);
    let catalog = catalog(
        "version: 1
gateway:
  restart: { initial_backoff: 100ms, max_backoff: 1s, circuit_after: 3, circuit_open: 60s }
servers:
  srv: { image: x }
",
    );
    let (supervisor, mux) = start(&fake, &catalog);
    for attempt in 1..=3 {
        fake.until("a start", |e| Fake::asked(e) == attempt).await;
        fake.admit();
    }
    fake.until("the first probe", |e| Fake::asked(e) == 4).await;
    let opened = failure(&mux, "srv");
    assert!(
        opened.contains(
            "circuit open after 3 failure(s) in a row: calls fail at once for 60s, then one probe start"
        ),
        "{opened}"
    );
    fake.admit();
    fake.until("the second probe", |e| Fake::asked(e) == 5)
        .await;
    let reopened = failure(&mux, "srv");
    fake.admit();
    assert!(
        reopened.contains("circuit open after 4 failure(s) in a row"),
        "a failed probe opens the circuit at once: {reopened}"
    );
    let ready = reaches(&mux, "srv", "ready").await;
    let lifetimes = fake.lifetimes();
    let open_for = |k: usize| lifetimes[k + 1].1 - lifetimes[k].2.expect("removed");
    assert!(
        near(open_for(2), Duration::from_secs(60)),
        "{:?}",
        open_for(2)
    );
    assert!(
        near(open_for(3), Duration::from_secs(60)),
        "{:?}",
        open_for(3)
    );
    assert!(open_for(0) <= Duration::from_millis(100));
    assert!(open_for(1) <= Duration::from_millis(200));
    assert_eq!(lifetimes[4].2, None, "the probe that served still runs");
    assert!(ready - lifetimes[4].1 < Duration::from_secs(1));
    supervisor.shutdown().await;
    assert!(fake.state.lock().live.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_server_that_hangs_in_its_handshake_is_removed_after_the_init_timeout() {
    let fake = Fake::gated(&[("srv", &[Act::Hang, Act::Serve])]);
    let catalog = catalog(
        "version: 1
gateway:
  init_timeout: 5s
  restart: { initial_backoff: 1s, max_backoff: 1s }
servers:
  srv: { image: x }
",
    );
    let (supervisor, mux) = start(&fake, &catalog);
    fake.admit();
    fake.until("a restart", |e| Fake::asked(e) == 2).await;
    let report = failure(&mux, "srv");
    fake.admit();
    assert!(report.contains("(container still running)"), "{report}");
    assert!(report.contains("restarting in"), "{report}");
    let lifetimes = fake.lifetimes();
    let (_, created, removed) = &lifetimes[0];
    let lived = removed.expect("the hung container is removed") - *created;
    // The init timeout, then a second for the engine to record an exit
    // that never comes.
    assert!(near(lived, Duration::from_secs(6)), "{lived:?}");
    reaches(&mux, "srv", "ready").await;
    supervisor.shutdown().await;
    assert!(fake.state.lock().live.is_empty());
}

#[tokio::test(start_paused = true)]
async fn an_unused_on_demand_server_is_stopped_and_a_call_wakes_it() {
    let fake = Fake::new(&[("srv", &[Act::Serve])]);
    let catalog = catalog(
        "version: 1
servers:
  srv: { image: x, lifecycle: on-demand, idle_timeout: 10s }
",
    );
    let (supervisor, mux) = start(&fake, &catalog);
    let ready = reaches(&mux, "srv", "ready").await;
    let idle = reaches(&mux, "srv", "idle").await;
    let unused = idle - ready;
    assert!(
        unused >= Duration::from_secs(10) && unused <= Duration::from_secs(11),
        "stopped after its idle timeout: {unused:?}"
    );
    let first = fake.lifetimes()[0].clone();
    assert!(first.2.is_some(), "the idle container is removed");
    assert_eq!(Fake::created(&fake.events()), 1);

    let (client_io, server_io) = tokio::io::duplex(1 << 16);
    let serving = mux.clone();
    tokio::spawn(async move {
        if let Ok(running) = serving.serve(server_io).await {
            let _ = running.waiting().await;
        }
    });
    let client = ().serve(client_io).await.expect("a client session");
    let mut args = serde_json::Map::new();
    args.insert("text".to_string(), "awake".into());
    let result = client
        .call_tool(CallToolRequestParams::new("srv__echo").with_arguments(args))
        .await
        .expect("the call wakes the server and is answered");
    assert_ne!(result.is_error, Some(true), "{result:?}");
    assert!(format!("{result:?}").contains("awake"), "{result:?}");
    let lifetimes = fake.lifetimes();
    assert_eq!(lifetimes.len(), 2, "one container woken for the call");
    assert!(lifetimes[0].2.expect("removed") <= lifetimes[1].1);
    assert_eq!(lifetimes[1].2, None);
    let _ = client.cancel().await;
    supervisor.shutdown().await;
    assert!(fake.state.lock().live.is_empty());
}

#[tokio::test(start_paused = true)]
async fn an_engine_outage_is_waited_out_without_opening_the_circuit() {
    let fake = Fake::new(&[("srv", &[Act::Serve])]);
    let catalog = catalog(
        "version: 1
gateway:
  restart: { initial_backoff: 100ms, max_backoff: 30s, circuit_after: 2, circuit_open: 60s }
servers:
  srv: { image: x }
",
    );
    let (supervisor, mux) = start(&fake, &catalog);
    reaches(&mux, "srv", "ready").await;
    let down = Instant::now();
    fake.outage();
    fake.until("ten refused starts", |e| Fake::refused(e) >= 10)
        .await;
    let report = failure(&mux, "srv");
    assert!(
        report.starts_with("the Fake engine is unavailable ("),
        "{report}"
    );
    assert!(report.contains("trying again in"), "{report}");
    assert!(!report.contains("circuit"), "{report}");
    let events = fake.events();
    let lost = fake.lifetimes()[0].clone();
    assert!(lost.2.is_some(), "the lost container is let go");
    let refused: Vec<Instant> = events
        .iter()
        .filter(|(_, e)| matches!(e, Event::Refused(_)))
        .map(|(at, _)| *at)
        .collect();
    for pair in refused.windows(2) {
        assert!(
            pair[1] - pair[0] <= Duration::from_secs(2),
            "short retries while the engine is away: {:?}",
            pair[1] - pair[0]
        );
    }
    assert!(refused[0] - down <= Duration::from_secs(3));
    let back = Instant::now();
    fake.engine_back();
    let ready = reaches(&mux, "srv", "ready").await;
    assert!(ready - back <= Duration::from_secs(3), "{:?}", ready - back);
    assert_eq!(Fake::created(&fake.events()), 2);
    supervisor.shutdown().await;
    assert!(fake.state.lock().live.is_empty());
}

#[tokio::test(start_paused = true)]
async fn shutdown_removes_every_container_with_the_gateways_label() {
    let fake = Fake::new(&[("one", &[Act::Serve]), ("two", &[Act::Serve])]);
    let catalog = catalog(
        "version: 1
servers:
  one: { image: x }
  two: { image: x }
",
    );
    let (supervisor, mux) = start(&fake, &catalog);
    reaches(&mux, "one", "ready").await;
    reaches(&mux, "two", "ready").await;
    fake.stray("left-behind");
    let began = Instant::now();
    supervisor.shutdown().await;
    let state = fake.state.lock();
    assert!(state.live.is_empty(), "{:?}", state.live.keys());
    let removed: Vec<&str> = state
        .events
        .iter()
        .filter_map(|(_, e)| match e {
            Event::Removed(id) => Some(id.as_str()),
            _ => None,
        })
        .collect();
    let mut removed = removed;
    removed.sort_unstable();
    let created: Vec<String> = state
        .events
        .iter()
        .filter_map(|(_, e)| match e {
            Event::Created(_, id) => Some(id.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(created.len(), 2, "one container per server");
    let mut expected: Vec<&str> = created.iter().map(String::as_str).collect();
    expected.push("left-behind");
    expected.sort_unstable();
    assert_eq!(removed, expected);
    assert!(Instant::now() - began < Duration::from_secs(10));
}

#[tokio::test(start_paused = true)]
async fn a_reload_stops_only_what_it_removes_or_replaces_and_starts_what_it_adds() {
    let fake = Fake::new(&[
        ("one", &[Act::Serve]),
        ("two", &[Act::Serve]),
        ("three", &[Act::Serve, Act::Serve]),
        ("four", &[Act::Serve]),
    ]);
    let old = catalog(
        "version: 1
servers:
  one: { image: x }
  two: { image: x }
  three: { image: x }
",
    );
    let new = catalog(
        "version: 1
servers:
  one: { image: x, tools: { allow: [echo] } }
  three: { image: x, command: [--again] }
  four: { image: x }
",
    );
    let (mut supervisor, mux, slots) = start_reloadable(&fake, &old);
    for server in ["one", "two", "three"] {
        reaches(&mux, server, "ready").await;
    }
    let created = |server: &str| -> Vec<String> {
        let state = fake.state.lock();
        state
            .events
            .iter()
            .filter_map(|(_, e)| match e {
                Event::Created(s, id) if s == server => Some(id.clone()),
                _ => None,
            })
            .collect()
    };
    let (one, two, three) = (created("one"), created("two"), created("three"));

    let diff = mcpgw_catalog::diff(&old, &new);
    let reload = slots.reload(&old, &new, &diff);
    supervisor.reload(&new, &reload, Vec::new()).await;
    slots.reloaded(&reload).await;
    for server in ["one", "three", "four"] {
        reaches(&mux, server, "ready").await;
    }
    let events: Vec<Event> = fake
        .state
        .lock()
        .events
        .iter()
        .map(|(_, e)| e.clone())
        .collect();
    let at = |wanted: &Event| events.iter().position(|e| e == wanted);
    // `two` and the old `three` are gone, before the new `three` was made
    // (it takes the old one's name); `one` was never touched.
    let removed_two = at(&Event::Removed(two[0].clone())).expect("two's container removed");
    let removed_three = at(&Event::Removed(three[0].clone())).expect("old three removed");
    assert_eq!(created("one"), one, "one was updated in place");
    assert!(at(&Event::Removed(one[0].clone())).is_none());
    let three_now = created("three");
    assert_eq!(three_now.len(), 2, "three was replaced once");
    let made_three = at(&Event::Created("three".into(), three_now[1].clone())).unwrap();
    assert!(removed_three < made_three && removed_two < made_three);
    assert_eq!(created("four").len(), 1);
    assert_eq!(
        mux.readiness()
            .into_iter()
            .map(|(n, _)| n)
            .collect::<Vec<_>>(),
        ["one", "four", "three"]
    );
    supervisor.shutdown().await;
    assert!(fake.state.lock().live.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_server_removed_while_it_starts_leaves_no_container() {
    let fake = Fake::new(&[("stuck", &[Act::Hang]), ("other", &[Act::Serve])]);
    let old = catalog(
        "version: 1
gateway: { init_timeout: 5s }
servers:
  stuck: { image: x }
  other: { image: x }
",
    );
    let new = catalog(
        "version: 1
gateway: { init_timeout: 5s }
servers:
  other: { image: x }
",
    );
    let (mut supervisor, mux, slots) = start_reloadable(&fake, &old);
    reaches(&mux, "other", "ready").await;
    // `stuck`'s container exists; its handshake has not answered.
    let created = |events: &[(Instant, Event)]| {
        events.iter().find_map(|(_, e)| match e {
            Event::Created(s, id) if s == "stuck" => Some(id.clone()),
            _ => None,
        })
    };
    fake.until("stuck's container is created", |events| {
        created(events).is_some()
    })
    .await;
    let stuck = created(&fake.events()).expect("created");
    assert_eq!(mux.readiness()[0], ("stuck".to_string(), "starting"));
    let diff = mcpgw_catalog::diff(&old, &new);
    let reload = slots.reload(&old, &new, &diff);
    supervisor.reload(&new, &reload, Vec::new()).await;
    slots.reloaded(&reload).await;
    {
        let state = fake.state.lock();
        let removed = Event::Removed(stuck.clone());
        assert!(
            state.events.iter().any(|(_, e)| *e == removed),
            "{:?}",
            state.events
        );
        assert!(!state.live.contains_key(&stuck));
    }
    assert_eq!(mux.readiness(), [("other".to_string(), "ready")]);
    supervisor.shutdown().await;
}
