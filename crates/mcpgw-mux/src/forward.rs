//! Forwarding: a request for one server, rate-limited (`limits.rs`),
//! admitted within its bounds, sent
//! under its deadline with its progress relayed, bridged between the
//! protocol eras when the server asks for input, and, when it fails,
//! explained. Every relayed request (`tools/call`, `prompts/get`,
//! `resources/read`, `completion/complete`) goes through here, on both
//! fronts.
//!
//! It does not route names (the router does) nor know which method it
//! carries beyond what bridging needs.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use mcpgw_backend::{Backend, OnBehalf, Relay};
use mcpgw_catalog::ServerName;
use rmcp::ErrorData;
use rmcp::model::ResultType;
use rmcp::model::{CallToolResponse, CallToolResult, ClientRequest, InputResponses, ServerResult};
use rmcp::service::{RequestContext, RoleServer, ServiceError};
use tracing::Instrument as _;

use crate::audit::{self, Decision, Outcome};
use crate::relay::{ClientRelay, ProgressRelay, next_report};
use crate::session::Instance;
use crate::slots::{Activity, Limit, Slot, SlotState};
use crate::{Mux, profile, relay, rounds, screen, trace};

impl Mux {
    pub(crate) fn backend(&self, index: usize) -> Result<Backend, ErrorData> {
        let slot = &self.shared.slots[index];
        match &*slot.state.borrow() {
            SlotState::Ready { backend, .. } if !backend.is_closed() => Ok(backend.clone()),
            SlotState::Ready { .. } => Err(unavailable(&slot.name, "its session has ended")),
            SlotState::Starting => Err(unavailable(&slot.name, "it is still starting")),
            SlotState::Failed { reason, .. } => Err(unavailable(&slot.name, reason)),
            SlotState::Idle { .. } => Err(unavailable(&slot.name, "it is stopped while unused")),
            SlotState::PerSession { .. } => Err(unavailable(
                &slot.name,
                "it runs one instance per client session",
            )),
            SlotState::Retired { reason } => {
                Err(ErrorData::internal_error(reason.to_string(), None))
            }
        }
    }

    /// Where a request for server `index` goes: the shared backend (woken
    /// if idle), or, for `scope: session`, this session's own instance.
    pub(crate) async fn target(
        &self,
        index: usize,
        context: &RequestContext<RoleServer>,
    ) -> Result<Instance, ErrorData> {
        let slot = &self.shared.slots[index];
        if !slot.per_session {
            return Ok(Instance {
                backend: self.awake_backend(index).await?,
                limit: slot.policy().limit.clone(),
            });
        }
        if !matches!(*slot.state.borrow(), SlotState::PerSession { .. }) {
            self.backend(index)?;
        }
        let stateless = !context
            .peer
            .peer_info()
            .is_some_and(|info| info.protocol_version.has_initialize());
        if stateless && self.shared.many_sessions.load(Ordering::Relaxed) {
            return Err(unavailable(
                &slot.name,
                "it has `scope: session`, a container per client session, and a `2026-07-28` request over HTTP belongs to no session; connect with a session (protocol 2025-11-25 or earlier), or use stdio",
            ));
        }
        self.session
            .instance(index, |ended| {
                // Only when this session has no instance running.
                let instances = self.shared.instances.get().cloned();
                let relay: Arc<dyn Relay> = Arc::new(ClientRelay {
                    shared: Arc::downgrade(&self.shared),
                    server: slot.name.clone(),
                    index,
                    session: Some(Arc::downgrade(&self.session)),
                });
                let session = self.session.id;
                let level = *self.session.log_level.lock();
                let limit = Arc::new(slot.policy().limit.fresh());
                async move {
                    let instances =
                        instances.ok_or("this gateway cannot start per-session instances")?;
                    let backend = instances.start(index, session, relay, ended).await?;
                    if let Some(level) = level {
                        backend.set_level(level).await;
                    }
                    Ok(Instance { backend, limit })
                }
            })
            .await
            .map_err(|reason| {
                unavailable(
                    &slot.name,
                    &format!("its instance for this session did not start: {reason}"),
                )
            })
    }

    /// The backend of server `index`, starting it first if it is idle.
    pub(crate) async fn awake_backend(&self, index: usize) -> Result<Backend, ErrorData> {
        let slot = &self.shared.slots[index];
        if matches!(*slot.state.borrow(), SlotState::Idle { .. }) {
            tracing::info!(server = %slot.name, "starting an idle on-demand server for a call");
            slot.wake.notify_one();
            let mut state = slot.state.subscribe();
            let woken =
                state.wait_for(|s| matches!(s, SlotState::Ready { .. } | SlotState::Failed { .. }));
            let _ = tokio::time::timeout(slot.wake_timeout, woken).await;
        }
        self.backend(index)
    }

    /// Forwards `request` to server `index`: admitted within the server's
    /// concurrency bounds, bounded by its deadline, and, if the backend dies
    /// meanwhile, answered with why it died.
    pub(crate) async fn forward(
        &self,
        index: usize,
        what: &str,
        request: ClientRequest,
        context: &RequestContext<RoleServer>,
    ) -> Result<ServerResult, ErrorData> {
        let slot = &self.shared.slots[index];
        audit::server(context, index);
        self.shared
            .refuse_foreign_secrets(slot, what, &request)
            .inspect_err(|_| self.refuse(context, Decision::ForeignSecret))?;
        self.rate_limit(index, &request, context)?;
        let Instance { backend, limit } = self
            .target(index, context)
            .await
            .inspect_err(|_| self.refuse(context, Decision::Unavailable))?;
        let _activity = Activity::begin(slot);
        let Some(_permit) = limit.admit(audit::caller(context).name()).await else {
            self.refuse(context, Decision::Busy);
            return Err(busy(slot, &limit));
        };
        // What the server says meanwhile (log messages) goes to the
        // sessions whose requests are in flight there.
        let _busy = self.session.busy_at(index);
        // A request the client cancelled while it waited (for start-up, an
        // idle server or a place in the queue) is never sent.
        if context.ct.is_cancelled() {
            audit::outcome(context, Outcome::Cancelled);
            return Err(ErrorData::internal_error(
                format!("{what} was cancelled by the client"),
                None,
            ));
        }
        // Progress is relayed here, between the request and its answer, so
        // that reports the backend sent before answering reach the client
        // before the answer does.
        let mut progress = context
            .meta
            .get_progress_token()
            .map(|token| ProgressRelay::new(context.peer.clone(), token, self.session.clone()));
        let sender = progress.as_ref().map(ProgressRelay::sender);
        // Only a `2026-07-28` backend is told whom a request is for.
        let on_behalf = (!backend.protocol().has_initialize()).then(|| self.on_behalf(context));
        let span = trace::backend(slot.name.as_str(), &request);
        let carried = trace::carried(&span, context);
        let request = backend
            .request(
                request,
                slot.policy().deadline,
                sender,
                on_behalf.as_ref(),
                carried,
            )
            .instrument(span.clone());
        tokio::pin!(request);
        let outcome = loop {
            tokio::select! {
                outcome = &mut request => break outcome,
                Some(report) = next_report(progress.as_mut()) => {
                    if let Some(relay) = progress.as_mut() {
                        relay.send(report).await;
                    }
                }
                // The client cancelled: dropping the request cancels it at
                // the backend too. rmcp sends the client no response.
                () = context.ct.cancelled() => {
                    audit::outcome(context, Outcome::Cancelled);
                    trace::end_backend(&span, Some(Outcome::Cancelled));
                    return Err(ErrorData::internal_error(format!("{what} was cancelled by the client"), None));
                }
            }
        };
        if let Some(relay) = progress.as_mut() {
            relay.drain().await;
        }
        match outcome {
            Ok(result) => {
                let flagged =
                    matches!(&result, ServerResult::CallToolResult(r) if r.is_error == Some(true));
                trace::end_backend(&span, flagged.then_some(Outcome::Error));
                Ok(result)
            }
            Err(err) => {
                let ended = match err {
                    ServiceError::Timeout { .. } => Outcome::Timeout,
                    ServiceError::TransportClosed | ServiceError::TransportSend(_) => {
                        Outcome::ServerFailed
                    }
                    _ => Outcome::Error,
                };
                audit::outcome(context, ended);
                trace::end_backend(&span, Some(ended));
                Err(self.call_failure(index, what, Some(&backend), err).await)
            }
        }
    }

    /// What the client is told when forwarding `what` to server `index`
    /// failed with `err`. `backend` is the one that failed, needed only for
    /// a `scope: session` server's instance.
    pub(crate) async fn call_failure(
        &self,
        index: usize,
        what: &str,
        backend: Option<&Backend>,
        err: ServiceError,
    ) -> ErrorData {
        let slot = &self.shared.slots[index];
        match err {
            ServiceError::McpError(e) => e,
            ServiceError::Timeout { timeout } => {
                let hint = match self.shared.diagnosis.get() {
                    Some(d) => d.diagnose(index).await,
                    None => None,
                };
                let hint = hint.map_or_else(String::new, |h| format!("; its container is {h}"));
                ErrorData::internal_error(
                    format!(
                        "server `{}` did not answer {what} within {timeout:?}; the request was cancelled at the server{hint}",
                        slot.name
                    ),
                    None,
                )
            }
            ServiceError::TransportClosed | ServiceError::TransportSend(_) if slot.per_session => {
                let reason = backend
                    .and_then(Backend::end_reason)
                    .unwrap_or_else(|| "its session ended".to_string());
                ErrorData::internal_error(
                    format!(
                        "server `{}` (this session's instance) failed during {what}: {reason}; the next request starts a new one",
                        slot.name
                    ),
                    None,
                )
            }
            ServiceError::TransportClosed | ServiceError::TransportSend(_) => {
                self.failure_during_call(index, what).await
            }
            other => ErrorData::internal_error(
                format!("server `{}`: {what} failed: {other}", slot.name),
                None,
            ),
        }
    }

    /// Takes a `requestState` the gateway issued (and its responses) out of
    /// a request; a backend's own state stays, for the backend.
    pub(crate) fn ours(
        &self,
        state: &mut Option<String>,
        responses: &mut Option<InputResponses>,
    ) -> Option<(String, Option<InputResponses>)> {
        if state
            .as_deref()
            .is_some_and(|s| self.shared.rounds.is_ours(s))
        {
            Some((state.take()?, responses.take()))
        } else {
            None
        }
    }

    /// Forwards a request that may need client input (`tools/call`,
    /// `prompts/get`, `resources/read`). A handshake-era client is asked
    /// directly: during the call for a backend's request, and between
    /// rounds when a `2026-07-28` backend answers `InputRequiredResult`
    /// (`bridge`). For a `2026-07-28` client the call runs on, and a
    /// backend's request for input ends this round with an
    /// `InputRequiredResult` that `resume` (the client's `requestState`
    /// and responses) picks up.
    pub(crate) async fn forward_rounds(
        &self,
        index: usize,
        what: &str,
        request: ClientRequest,
        context: &RequestContext<RoleServer>,
        resume: Option<(String, Option<InputResponses>)>,
    ) -> Result<ServerResult, ErrorData> {
        let handshake = relay::is_handshake(&context.peer);
        if handshake && resume.is_none() {
            // Only a `2026-07-28` server answers with `InputRequiredResult`;
            // the request is kept for the retry only when one may.
            let retry = self.may_require_input(index).then(|| request.clone());
            let result = if self.shared.is_many_sessions() {
                // Over HTTP the call is registered with its client, so that
                // a server's request reaches the one call it can belong to.
                self.run_round(index, what, request, context, None).await
            } else {
                self.forward(index, what, request, context).await
            };
            return match retry {
                Some(request) => self.bridge(index, what, request, result, context).await,
                None => result,
            };
        }
        self.run_round(index, what, request, context, resume).await
    }

    /// Whether server `index` may answer with `InputRequiredResult`: its
    /// shared backend speaks `2026-07-28`, or its instances may.
    pub(crate) fn may_require_input(&self, index: usize) -> bool {
        match &*self.shared.slots[index].state.borrow() {
            SlotState::Ready { backend, .. } => !backend.protocol().has_initialize(),
            _ => true,
        }
    }

    /// Runs a call through the rounds: started (registered with the
    /// rounds, so the backend's requests find it) or resumed.
    pub(crate) async fn run_round(
        &self,
        index: usize,
        what: &str,
        request: ClientRequest,
        context: &RequestContext<RoleServer>,
        resume: Option<(String, Option<InputResponses>)>,
    ) -> Result<ServerResult, ErrorData> {
        let rounds = &self.shared.rounds;
        let binding = rounds::binding(index, what);
        let ttl = self.shared.slots[index].policy().deadline.max_total;
        let call = match resume {
            Some((state, responses)) => {
                if let Some(responses) = &responses {
                    let slot = &self.shared.slots[index];
                    self.shared.refuse_foreign_secrets(slot, what, responses)?;
                }
                rounds.resume(&state, &binding, responses.as_ref())?
            }
            None => {
                let mux = self.clone();
                let mut detached = context.clone();
                // The call outlives this request; dropping it cancels it.
                detached.ct = tokio_util::sync::CancellationToken::new();
                let what = what.to_string();
                let (capabilities, client) = if relay::is_handshake(&context.peer) {
                    (
                        Default::default(),
                        Some((context.peer.clone(), context.id.clone())),
                    )
                } else {
                    (context.meta.client_capabilities().unwrap_or_default(), None)
                };
                rounds.start(index, capabilities, client, async move {
                    mux.forward(index, &what, request, &detached).await
                })
            }
        };
        tokio::select! {
            result = rounds.run(call, &binding, ttl) => result,
            () = context.ct.cancelled() => Err(ErrorData::internal_error(
                format!("{what} was cancelled by the client"),
                None,
            )),
        }
    }

    /// A handshake-era client's call that a `2026-07-28` backend answered
    /// with `InputRequiredResult`: the gateway asks the client for each
    /// input (as the catalog's `relay` allows, and the client declared),
    /// and retries the backend's request with the responses, until the
    /// backend answers for good. The client sees one ordinary call.
    pub(crate) async fn bridge(
        &self,
        index: usize,
        what: &str,
        request: ClientRequest,
        mut result: Result<ServerResult, ErrorData>,
        context: &RequestContext<RoleServer>,
    ) -> Result<ServerResult, ErrorData> {
        let slot = &self.shared.slots[index];
        for _ in 0..MAX_BRIDGED_ROUNDS {
            let Ok(ServerResult::InputRequiredResult(input)) = &result else {
                return result;
            };
            let mut responses = InputResponses::new();
            for (key, asked) in input.input_requests.iter().flatten() {
                let (kind, supports) = relay::needs(asked);
                let relays = slot.policy().relays;
                let allowed = match kind {
                    "sampling" => relays.sampling,
                    "elicitation" => relays.elicitation,
                    _ => relays.roots,
                };
                if !allowed {
                    return Err(ErrorData::invalid_request(
                        format!(
                            "server `{}` asked for {kind} during {what}, which is not enabled for it: the gateway's catalog sets `relay` for it",
                            slot.name
                        ),
                        None,
                    ));
                }
                let asking = format!("{kind} from server `{}`", slot.name);
                let asked =
                    relay::ask_client(&context.peer, None, &asking, supports, asked.clone());
                let answer = tokio::select! {
                    answer = asked => answer?,
                    () = context.ct.cancelled() => return Err(ErrorData::internal_error(
                        format!("{what} was cancelled by the client"),
                        None,
                    )),
                };
                self.shared.refuse_foreign_secrets(
                    slot,
                    &format!("the client's answer to {asking}"),
                    &answer,
                )?;
                responses.insert(key.clone(), answer);
            }
            let retry = with_input(&request, input.request_state.clone(), responses)
                .ok_or_else(|| unexpected(&slot.name, what))?;
            result = self.forward(index, what, retry, context).await;
        }
        Err(ErrorData::internal_error(
            format!(
                "server `{}` asked for input more than {MAX_BRIDGED_ROUNDS} times during {what}; the gateway gave up",
                slot.name
            ),
            None,
        ))
    }

    /// The backend's session ended under a call: wait briefly for the
    /// runtime's report (exit code, OOM, stderr) and pass it on.
    pub(crate) async fn failure_during_call(&self, index: usize, what: &str) -> ErrorData {
        let slot = &self.shared.slots[index];
        let mut state = slot.state.subscribe();
        let reported = tokio::time::timeout(
            FAILURE_REPORT_WAIT,
            state.wait_for(|s| matches!(s, SlotState::Failed { .. } | SlotState::Retired { .. })),
        )
        .await;
        let reason = match reported {
            Ok(Ok(state)) => match &*state {
                SlotState::Failed { reason, .. } => reason.to_string(),
                // A reload took the server out: its reason says it all.
                SlotState::Retired { reason } => {
                    return ErrorData::internal_error(
                        format!("{what} did not finish: {reason}"),
                        None,
                    );
                }
                _ => String::new(),
            },
            _ => "its session ended".to_string(),
        };
        ErrorData::internal_error(
            format!("server `{}` failed during {what}: {reason}", slot.name),
            None,
        )
    }

    /// What server `index` answered to tools/call, as a tool call's response.
    pub(crate) fn tool_response(
        &self,
        index: usize,
        tool: &str,
        what: &str,
        result: ServerResult,
    ) -> Result<CallToolResponse, ErrorData> {
        match result {
            ServerResult::CallToolResult(mut result) => {
                complete(&mut result.result_type);
                let slot = &self.shared.slots[index];
                let scan = slot.policy().scan_results;
                let found = screen::result(scan, slot.name.as_str(), tool, &result);
                for screened in &found {
                    self.shared.metrics.result_finding(screened);
                }
                if let Some(withheld) = screen::report_result(&found) {
                    return Ok(CallToolResponse::Complete(withheld));
                }
                Ok(CallToolResponse::Complete(result))
            }
            ServerResult::InputRequiredResult(result) => {
                Ok(CallToolResponse::InputRequired(result))
            }
            ServerResult::CreateTaskResult(result) => Ok(CallToolResponse::Task(result)),
            // A tool result with nothing in it can arrive as an empty result.
            ServerResult::EmptyResult(_) => Ok(CallToolResponse::Complete(
                CallToolResult::success(Vec::new()),
            )),
            _ => Err(unexpected(&self.shared.slots[index].name, what)),
        }
    }

    /// Learns the session's client from a request, and the log level a
    /// `2026-07-28` request asks for (that protocol names one per request).
    pub(crate) fn remember_client(&self, context: &RequestContext<RoleServer>) {
        self.session
            .remember(&context.peer, profile(&context.extensions));
        if let Some(level) = context.meta.log_level() {
            *self.session.log_level.lock() = Some(level);
        }
    }

    /// Whom a request to server `index` is forwarded for, as a
    /// `2026-07-28` backend is told.
    pub(crate) fn on_behalf(&self, context: &RequestContext<RoleServer>) -> OnBehalf {
        let capabilities = match context.peer.peer_info() {
            Some(info) if info.protocol_version.has_initialize() => info.capabilities.clone(),
            _ => context.meta.client_capabilities().unwrap_or_default(),
        };
        OnBehalf {
            capabilities,
            log_level: *self.session.log_level.lock(),
        }
    }
}

/// The answer to a call that finds `limit` full.
pub(crate) fn busy(slot: &Slot, limit: &Limit) -> ErrorData {
    ErrorData::internal_error(
        format!(
            "server `{}` is busy: {} calls in flight and {} waiting, its limits; try again shortly",
            slot.name, limit.in_flight, limit.queue
        ),
        None,
    )
}

pub(crate) fn unavailable(server: &ServerName, reason: &str) -> ErrorData {
    ErrorData::internal_error(
        format!("server `{server}` is not available: {reason}"),
        None,
    )
}

/// A handshake-era backend's results carry no `resultType`; a `2026-07-28`
/// client requires one. rmcp removes it again for handshake-era clients.
pub(crate) fn complete(result_type: &mut Option<ResultType>) {
    result_type.get_or_insert(ResultType::COMPLETE);
}

/// How errors (and round bindings) name a call of tool `name`.
pub(crate) fn tool_call(name: &str) -> String {
    format!("tools/call `{name}`")
}

pub(crate) fn unexpected(server: &ServerName, what: &str) -> ErrorData {
    ErrorData::internal_error(
        format!("server `{server}` answered {what} with a result of the wrong kind"),
        None,
    )
}
/// How many times a handshake-era client's call may be asked for input by
/// a `2026-07-28` backend before the gateway gives up.
pub(crate) const MAX_BRIDGED_ROUNDS: usize = 16;

/// `request` retried with the client's input: the backend's `state` and
/// the `responses`. `None` for a request that takes no input.
pub(crate) fn with_input(
    request: &ClientRequest,
    state: Option<String>,
    responses: InputResponses,
) -> Option<ClientRequest> {
    let mut retry = request.clone();
    let (request_state, input_responses) = match &mut retry {
        ClientRequest::CallToolRequest(r) => {
            (&mut r.params.request_state, &mut r.params.input_responses)
        }
        ClientRequest::GetPromptRequest(r) => {
            (&mut r.params.request_state, &mut r.params.input_responses)
        }
        ClientRequest::ReadResourceRequest(r) => {
            (&mut r.params.request_state, &mut r.params.input_responses)
        }
        _ => return None,
    };
    *request_state = state;
    *input_responses = Some(responses);
    Some(retry)
}

/// How long a call whose backend died waits for the report of why.
pub(crate) const FAILURE_REPORT_WAIT: Duration = Duration::from_millis(1500);
