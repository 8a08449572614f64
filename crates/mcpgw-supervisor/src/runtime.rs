//! The `Runtime` trait: what the supervision loop needs from a container
//! engine, and nothing more.
//!
//! A runtime turns a validated [`ServerSpec`] into a hardened container,
//! hands back its attached stdio as plain byte streams, and reports how the
//! container ended. It decides *how* a container is confined (the Docker
//! runtime's `hardening.rs`), never *when* one is started or stopped: that is
//! the supervision loop's business. The trait is object-safe, its futures
//! boxed, as the mux's `Instances` and `Diagnose` hooks are, so the loop holds
//! an `Arc<dyn Runtime>` and a fake one can stand in for tests.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use mcpgw_catalog::ServerSpec;
use mcpgw_secrets::Injection;
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::Instrument as _;

use crate::StderrTail;

/// A boxed future, as the trait's methods return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A container engine the supervision loop drives.
pub trait Runtime: Send + Sync + fmt::Debug + 'static {
    /// The engine's name for messages ("Docker", "Podman").
    fn engine(&self) -> &'static str;

    /// Creates, but does not start, the hardened container for `spec`.
    /// `secrets` are the values its catalog entry declares; `session`
    /// numbers the client session a `scope: session` container serves.
    fn create<'a>(
        &'a self,
        spec: &'a ServerSpec,
        secrets: &'a Injection,
        session: Option<u64>,
    ) -> BoxFuture<'a, Result<Created, RuntimeError>>;

    /// Attaches to the created container's stdio. Called before
    /// [`Runtime::start`], so that nothing the server writes is lost.
    fn attach<'a>(&'a self, created: &'a Created) -> BoxFuture<'a, Result<Stdio, RuntimeError>>;

    /// Starts the created, attached container.
    fn start<'a>(&'a self, created: &'a Created) -> BoxFuture<'a, Result<(), RuntimeError>>;

    /// Waits up to `grace` for container `id` to exit by itself (its stdin
    /// closed), then removes it. Best effort: failures are logged.
    fn stop<'a>(&'a self, id: &'a str, grace: Duration) -> BoxFuture<'a, ()>;

    /// Removes container `id`, killing it if it runs, and returns once the
    /// engine no longer has it. Best effort: failures are logged.
    fn remove<'a>(&'a self, id: &'a str) -> BoxFuture<'a, ()>;

    /// Waits up to `limit` for container `id` to exit, then says how it
    /// ended (or that it still runs); `None` when the engine cannot tell.
    fn exit<'a>(&'a self, id: &'a str, limit: Duration) -> BoxFuture<'a, Option<ExitState>>;

    /// The ids of every container carrying this gateway's instance label,
    /// in any state.
    fn owned(&self) -> BoxFuture<'_, Result<Vec<String>, RuntimeError>>;

    /// Whether the engine answers now.
    fn engine_up(&self) -> BoxFuture<'_, bool>;

    /// Which of its limits container `id` presses against now, in words
    /// ("at its pids limit (32 of 32 processes)"), for error reports.
    fn limits_reached<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Vec<String>>;
}

/// A created container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    /// The engine's id for it.
    pub id: String,
    /// Its name (`mcpgw-<server>-<instance>`).
    pub name: String,
    /// The catalog server it runs.
    pub server: String,
}

/// A container's attached stdio.
pub struct Stdio {
    /// Writes to the server's stdin.
    pub stdin: Pin<Box<dyn AsyncWrite + Send>>,
    /// Reads the server's stdout.
    pub stdout: Pin<Box<dyn AsyncRead + Send>>,
    /// The last bytes the server wrote to stderr (also logged).
    pub stderr: StderrTail,
}

impl fmt::Debug for Stdio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stdio").finish_non_exhaustive()
    }
}

/// A started container with its attached stdio.
#[derive(Debug)]
pub struct Container {
    /// The engine's id for it.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its stdio.
    pub stdio: Stdio,
}

/// Creates, attaches and starts the container for `spec` on `runtime`; a
/// container created before a failure is removed.
///
/// # Errors
///
/// What the runtime reported for the step that failed.
pub async fn launch(
    runtime: &dyn Runtime,
    spec: &ServerSpec,
    secrets: &Injection,
    session: Option<u64>,
) -> Result<Container, RuntimeError> {
    let step = |name: &'static str| {
        tracing::info_span!(
            target: crate::TRACE_TARGET,
            "container",
            otel.name = name,
            container.runtime = runtime.engine(),
            container.image.name = %spec.image,
            mcp.server.name = %spec.name,
        )
    };
    let created = runtime
        .create(spec, secrets, session)
        .instrument(step("container.create"))
        .await?;
    let attached = match runtime.attach(&created).await {
        Ok(stdio) => runtime
            .start(&created)
            .instrument(step("container.start"))
            .await
            .map(|()| stdio),
        Err(err) => Err(err),
    };
    match attached {
        Ok(stdio) => Ok(Container {
            id: created.id,
            name: created.name,
            stdio,
        }),
        Err(err) => {
            runtime.remove(&created.id).await;
            Err(err)
        }
    }
}

/// How a container ended, as far as the engine knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitState {
    /// The exit code, when the container has exited.
    pub code: Option<i64>,
    /// Whether the kernel's OOM killer ended it.
    pub oom_killed: bool,
    /// Whether it is still running.
    pub running: bool,
}

impl fmt::Display for ExitState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.running, self.code) {
            (true, _) => f.write_str("still running"),
            (false, Some(code)) if self.oom_killed => {
                write!(
                    f,
                    "exited with code {code}, killed for exceeding its memory limit"
                )
            }
            // Killed: Docker says when the OOM killer did it; Podman on
            // cgroup v1 never does, so the limit is named as the likely cause.
            (false, Some(137)) => f.write_str(
                "exited with code 137 (SIGKILL: a kill, or its memory limit on an engine that does not report OOM kills)",
            ),
            (false, Some(code)) => write!(f, "exited with code {code}"),
            (false, None) => f.write_str("not running"),
        }
    }
}

/// What a failed runtime operation means for the loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The server or the engine's answer failed; retrying may help.
    Transient,
    /// Retrying cannot help until someone acts (an image to build).
    Permanent,
    /// The engine could not be reached: not the server's fault.
    EngineDown,
}

impl ErrorKind {
    /// The word spans use.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Transient => "transient",
            Self::Permanent => "permanent",
            Self::EngineDown => "engine_down",
        }
    }
}

/// A runtime operation that failed: the engine's own error, classified.
#[derive(Debug)]
pub struct RuntimeError {
    kind: ErrorKind,
    error: Box<dyn std::error::Error + Send + Sync>,
}

impl RuntimeError {
    /// Wraps the engine's `error` as a failure of `kind`.
    pub fn new(
        kind: ErrorKind,
        error: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self {
            kind,
            error: error.into(),
        }
    }

    /// What the failure means for the loop.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
}

// The engine's error speaks for itself: its message is this one, and its
// sources are this one's (so `{:#}` prints no line twice).
impl fmt::Display for RuntimeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.error.fmt(f)
    }
}

impl std::error::Error for RuntimeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.error.source()
    }
}
