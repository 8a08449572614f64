//! [`DockerRuntime`] as the supervisor's [`Runtime`]: each method hands on
//! to the engine code in `lib.rs`, and each error is classified for the
//! loop (a missing image is permanent, an unreachable engine is not the
//! server's fault, the rest may pass). No decision is made here.

use std::time::Duration;

use mcpgw_catalog::ServerSpec;
use mcpgw_secrets::Injection;
use mcpgw_supervisor::{BoxFuture, Created, ErrorKind, ExitState, Runtime, RuntimeError, Stdio};

use crate::{DockerError, DockerRuntime};

impl From<DockerError> for RuntimeError {
    fn from(error: DockerError) -> Self {
        let kind = if error.is_permanent() {
            ErrorKind::Permanent
        } else if error.is_engine_down() {
            ErrorKind::EngineDown
        } else {
            ErrorKind::Transient
        };
        Self::new(kind, error)
    }
}

impl Runtime for DockerRuntime {
    fn engine(&self) -> &'static str {
        self.engine.name()
    }

    fn create<'a>(
        &'a self,
        spec: &'a ServerSpec,
        secrets: &'a Injection,
        session: Option<u64>,
    ) -> BoxFuture<'a, Result<Created, RuntimeError>> {
        Box::pin(async move { Ok(DockerRuntime::create(self, spec, secrets, session).await?) })
    }

    fn attach<'a>(&'a self, created: &'a Created) -> BoxFuture<'a, Result<Stdio, RuntimeError>> {
        Box::pin(async move { Ok(DockerRuntime::attach(self, created).await?) })
    }

    fn start<'a>(&'a self, created: &'a Created) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move { Ok(DockerRuntime::start(self, created).await?) })
    }

    fn stop<'a>(&'a self, id: &'a str, grace: Duration) -> BoxFuture<'a, ()> {
        Box::pin(DockerRuntime::stop(self, id, grace))
    }

    fn remove<'a>(&'a self, id: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(DockerRuntime::remove(self, id))
    }

    fn exit<'a>(&'a self, id: &'a str, limit: Duration) -> BoxFuture<'a, Option<ExitState>> {
        Box::pin(async move {
            self.wait_exited(id, limit).await;
            self.exit_state(id).await
        })
    }

    fn owned(&self) -> BoxFuture<'_, Result<Vec<String>, RuntimeError>> {
        Box::pin(async move { Ok(self.own_containers().await?) })
    }

    fn engine_up(&self) -> BoxFuture<'_, bool> {
        Box::pin(DockerRuntime::engine_up(self))
    }

    fn limits_reached<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Vec<String>> {
        Box::pin(DockerRuntime::limits_reached(self, id))
    }
}
