//! The client-facing MCP handlers: rmcp's `ServerHandler` for the mux.
//! Lists are served from the merged routing table; requests for a server
//! are looked up and handed to `forward.rs`.
//!
//! It holds no forwarding logic of its own.

use std::time::Instant;

use mcpgw_backend::Backend;
use rmcp::model::{
    CacheScope, CallToolRequest, CallToolRequestParams, CallToolResponse, ClientRequest,
    CompleteRequest, CompleteRequestParams, CompleteResult, GetPromptRequest,
    GetPromptRequestParams, GetPromptResponse, Implementation, ListPromptsResult,
    ListResourceTemplatesResult, ListResourcesResult, ListToolsResult, PaginatedRequestParams,
    ReadResourceRequest, ReadResourceRequestParams, ReadResourceResponse, Reference,
    ResourceTemplate, ServerCapabilities, ServerConfig, ServerResult,
};
use rmcp::model::{
    SetLevelRequestParams, SubscribeRequestParams, SubscriptionFilter, UnsubscribeRequestParams,
};
use rmcp::service::{RequestContext, RoleServer, SubscriptionContext};
use rmcp::{ErrorData, ServerHandler};
use tokio::sync::broadcast;

use crate::audit::{self, Decision};
use crate::changes::{ListChange, next_change};
use crate::forward::*;
use crate::paging::page;
use crate::router::{ToolLookup, overrides};
use crate::slots::SlotState;
use crate::{Mux, View, gateway_tools, profile, relay};
use mcpgw_catalog::ToolMode;

impl ServerHandler for Mux {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_tool_list_changed()
                .enable_prompts()
                .enable_prompts_list_changed()
                .enable_resources()
                .enable_resources_list_changed()
                .enable_resources_subscribe()
                .enable_completions()
                .enable_logging()
                .build(),
        )
        .with_server_info(Implementation::new("mcpgw", env!("CARGO_PKG_VERSION")))
        .with_instructions(
            "mcpgw gateway: tools and prompts are named <server>__<name>; each server runs in its own container.",
        )
    }

    async fn list_tools(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let asked = self.asked("list", "tools/list", None, &request, None);
        Box::pin(self.audited(asked, context, |c| self.list_tools_decided(request, c))).await
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let mut request = request;
        let mut find = false;
        let mut malformed = None;
        if self.tool_mode(&context) == ToolMode::Search {
            // The search mode's gateway tools: `find_tools` answers here;
            // `call_tool` becomes the call it names, on the one path below.
            match request.name.as_ref() {
                gateway_tools::FIND_TOOLS => find = true,
                gateway_tools::CALL_TOOL => match gateway_tools::unwrap_call(&request) {
                    Ok(call) => request = call,
                    Err(err) => malformed = Some(err),
                },
                _ => {}
            }
        }
        // A malformed `call_tool`'s arguments are not the call's.
        let arguments = malformed
            .is_none()
            .then_some(request.arguments.as_ref())
            .flatten();
        let asked = self.asked(
            "call",
            "tools/call",
            Some(&request.name),
            &request,
            arguments,
        );
        if let Some(err) = malformed {
            return Box::pin(self.audited(asked, context, |_| async { Err(err) })).await;
        }
        if find {
            return Box::pin(self.audited(asked, context, |c| self.find_tools_decided(request, c)))
                .await;
        }
        Box::pin(self.audited(asked, context, |c| self.call_tool_decided(request, c))).await
    }

    async fn list_prompts(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        let asked = self.asked("list", "prompts/list", None, &request, None);
        Box::pin(self.audited(asked, context, |c| self.list_prompts_decided(request, c))).await
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        let asked = self.asked(
            "get_prompt",
            "prompts/get",
            Some(&request.name),
            &request,
            None,
        );
        Box::pin(self.audited(asked, context, |c| self.get_prompt_decided(request, c))).await
    }

    async fn list_resources(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let asked = self.asked("list", "resources/list", None, &request, None);
        Box::pin(self.audited(asked, context, |c| self.list_resources_decided(request, c))).await
    }

    async fn list_resource_templates(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        let asked = self.asked("list", "resources/templates/list", None, &request, None);
        Box::pin(self.audited(asked, context, |c| {
            self.list_resource_templates_decided(request, c)
        }))
        .await
    }

    async fn on_initialized(&self, context: rmcp::service::NotificationContext<RoleServer>) {
        // A handshake-era client is known from here on: server-to-client
        // requests and notifications need it.
        self.session
            .remember(&context.peer, profile(&context.extensions));
    }

    /// `logging/setLevel`: remembered for the session (messages below it
    /// are not relayed to it); backends, shared by the sessions, are set
    /// to the lowest level any session asked for, now and when they come
    /// up later.
    async fn set_level(
        &self,
        request: SetLevelRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.remember_client(&context);
        *self.session.log_level.lock() = Some(request.level);
        let lowest = self
            .shared
            .sessions
            .all()
            .iter()
            .filter_map(|s| *s.log_level.lock())
            .chain([request.level])
            .min_by_key(|level| relay::severity(*level))
            .unwrap_or(request.level);
        *self.shared.log_level.write() = Some(lowest);
        let backends: Vec<Backend> = self
            .shared
            .slots
            .iter()
            .filter_map(|(_, slot)| match &*slot.state.borrow() {
                SlotState::Ready { backend, .. } => Some(backend.clone()),
                _ => None,
            })
            .chain(self.session.running())
            .collect();
        for backend in backends {
            backend.set_level(lowest).await;
        }
        Ok(())
    }

    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        // Resources are accepted when a server routes them; the table may
        // still be settling, in which case the stream starts without them.
        let table = self.shared.table.read().clone();
        let routable = requested
            .resource_subscriptions
            .iter()
            .flatten()
            .filter(|uri| table.resource(uri).is_some())
            .cloned()
            .collect::<Vec<_>>();
        let offered = SubscriptionFilter::builder()
            .tools_list_changed()
            .prompts_list_changed()
            .resources_list_changed()
            .resource_subscriptions(routable)
            .build();
        Some(requested.intersection(&offered))
    }

    /// `resources/subscribe` (handshake era): one backend subscription per
    /// URI however many sessions ask, updates sent to the sessions that
    /// asked. A profile, a view of tools only, has no resources.
    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.remember_client(&context);
        if self.view(&context).tools_only() {
            return Err(ErrorData::resource_not_found(
                format!("no server offers resource `{}`", request.uri),
                None,
            ));
        }
        let newly = self.session.subscribed.lock().insert(request.uri.clone());
        if newly && let Err(err) = self.acquire(&request.uri, &context).await {
            self.session.subscribed.lock().remove(&request.uri);
            return Err(err);
        }
        Ok(())
    }

    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        if self.session.subscribed.lock().remove(&request.uri) {
            self.release(&request.uri).await;
        }
        Ok(())
    }

    /// A `2026-07-28` client's `subscriptions/listen` stream: list changes,
    /// debounced, for the lists it asked about.
    async fn listen(&self, context: SubscriptionContext) -> Result<(), ErrorData> {
        let mut changes = self.shared.changes.subscribe();
        let mut updates = self.shared.updates.subscribe();
        let accepted = context.accepted().clone();
        let resources: Vec<String> = accepted.resource_subscriptions.clone().unwrap_or_default();
        let mut held = Vec::new();
        for uri in &resources {
            if self.acquire(uri, context.request_context()).await.is_ok() {
                held.push(uri.clone());
            }
        }
        let outcome = self
            .stream(&context, &mut changes, &mut updates, &resources)
            .await;
        for uri in held {
            self.release(&uri).await;
        }
        outcome
    }

    async fn complete(
        &self,
        request: CompleteRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, ErrorData> {
        let asked = self.asked(
            "complete",
            "completion/complete",
            completed(&request.r#ref).as_deref(),
            &request,
            None,
        );
        Box::pin(self.audited(asked, context, |c| self.complete_decided(request, c))).await
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let asked = self.asked(
            "read_resource",
            "resources/read",
            Some(&request.uri),
            &request,
            None,
        );
        Box::pin(self.audited(asked, context, |c| self.read_resource_decided(request, c))).await
    }
}

impl Mux {
    /// Delivers list changes and resource updates on one listen stream
    /// until it is cancelled.
    async fn stream(
        &self,
        context: &SubscriptionContext,
        changes: &mut broadcast::Receiver<ListChange>,
        updates: &mut broadcast::Receiver<String>,
        resources: &[String],
    ) -> Result<(), ErrorData> {
        let accepted = context.accepted().clone();
        loop {
            let change = tokio::select! {
                () = context.cancelled() => return Ok(()),
                change = next_change(changes) => change,
                update = updates.recv() => {
                    let updated = match update {
                        Ok(uri) if resources.contains(&uri) => vec![uri],
                        Ok(_) => Vec::new(),
                        // Missed some: every resource of the stream may
                        // have changed, and is said to have.
                        Err(broadcast::error::RecvError::Lagged(_)) => resources.to_vec(),
                        Err(broadcast::error::RecvError::Closed) => return Ok(()),
                    };
                    for uri in updated {
                        let _ = context.sink().notify_resource_updated(uri).await;
                    }
                    continue;
                }
            };
            let Some(change) = change else { return Ok(()) };
            let seen = change.seen_by(profile(&context.request_context().extensions));
            let sink = context.sink();
            if seen.tools && accepted.tools_list_changed == Some(true) {
                let _ = sink.notify_tool_list_changed().await;
            }
            if seen.prompts && accepted.prompts_list_changed == Some(true) {
                let _ = sink.notify_prompt_list_changed().await;
            }
            if seen.resources && accepted.resources_list_changed == Some(true) {
                let _ = sink.notify_resource_list_changed().await;
            }
        }
    }
}

/// The handlers' work, each recorded by its handler above.
impl Mux {
    async fn call_tool_decided(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        self.remember_client(&context);
        let table = self.routing(&context).await?;
        // Outside the client's view, a tool does not exist.
        if !self.view(&context).permits(&request.name) {
            self.refuse(&context, Decision::OutsideProfile);
            return Err(ErrorData::invalid_params(
                format!("unknown tool `{}`", request.name),
                None,
            ));
        }
        let route = match table.tool(&request.name) {
            ToolLookup::Found(route) => {
                audit::route(&context, route.server, &route.upstream);
                route.clone()
            }
            ToolLookup::Hidden { server } => {
                self.refuse(&context, Decision::HiddenByAllowlist);
                audit::server(&context, server);
                let server = &self.shared.slots[server].name;
                return Err(ErrorData::invalid_params(
                    format!(
                        "tool `{}` is not allowed: the catalog's `servers.{server}.tools` hides it",
                        request.name
                    ),
                    None,
                ));
            }
            ToolLookup::Blocked { server, finding } => {
                self.refuse(&context, Decision::BlockedByScan);
                audit::server(&context, server);
                let server = &self.shared.slots[server].name;
                let f = &finding.finding;
                return Err(ErrorData::invalid_params(
                    format!(
                        "tool `{}` is withheld: the tool-poisoning scan found {} ({} severity) at {} of its definition: {}; fix: review server `{server}`, then set `servers.{server}.scan: warn` to serve it anyway",
                        request.name, f.rule, f.severity, f.path, f.message
                    ),
                    None,
                ));
            }
            ToolLookup::Unpinned { server, drift } => {
                self.refuse(&context, Decision::PinMismatch);
                audit::server(&context, server);
                let server = &self.shared.slots[server].name;
                return Err(ErrorData::invalid_params(
                    format!(
                        "tool `{}` is withheld: {}; fix: review the change (`mcpgw lock --check` shows it), then re-pin with `mcpgw lock --update`, or restore server `{server}`'s pinned version",
                        request.name,
                        drift.summary()
                    ),
                    None,
                ));
            }
            ToolLookup::Unknown => {
                // A server that never came up has no tools in the table;
                // a name in its namespace gets its reason, not "unknown".
                let separator = &self.shared.separator;
                if let Some(index) = self
                    .shared
                    .slots
                    .iter()
                    .find(|(_, s)| {
                        !s.is_retired()
                            && request.name.starts_with(&format!("{}{separator}", s.name))
                    })
                    .map(|(index, _)| index)
                    && !matches!(
                        *self.shared.slots[index].state.borrow(),
                        SlotState::Ready { .. }
                    )
                {
                    self.backend(index).inspect_err(|_| {
                        self.refuse(&context, Decision::Unavailable);
                    })?;
                }
                self.refuse(&context, Decision::Unknown);
                return Err(ErrorData::invalid_params(
                    format!("unknown tool `{}`", request.name),
                    None,
                ));
            }
        };
        // Parameters the catalog hides never reach the server (nor the
        // result cache's key), even from a client that sends them anyway.
        let mut request = request;
        let stripped = overrides::strip(request.arguments.as_mut(), &route.hidden_params);
        if !stripped.is_empty() {
            tracing::debug!(tool = %route.name, ?stripped, "removed the arguments the catalog hides");
        }
        // A cached result answers without the server (nor its limits).
        let cache = self.cache_key(&table, &route, &request, &context);
        if let Some(result) = cache.as_ref().and_then(|(key, _)| self.cached(&route, key)) {
            return Ok(CallToolResponse::Complete(result));
        }
        let mut upstream = request;
        let what = tool_call(&upstream.name);
        upstream.meta = None;
        upstream.name = route.upstream.to_string().into();
        let resume = self.ours(&mut upstream.request_state, &mut upstream.input_responses);
        let request = ClientRequest::CallToolRequest(CallToolRequest::new(upstream));
        let began = Instant::now();
        // Boxed, here and in the other handlers: rmcp moves each request's
        // handler future into a task of its own, and an unboxed forward
        // would make every one of them kilobytes to copy.
        let outcome =
            Box::pin(self.forward_rounds(route.server, &what, request, &context, resume)).await;
        let ok = match &outcome {
            Ok(ServerResult::CallToolResult(result)) => result.is_error != Some(true),
            Ok(_) => true,
            Err(_) => false,
        };
        self.shared.metrics.call(
            self.shared.slots[route.server].name.as_str(),
            &route.upstream,
            ok,
            began.elapsed(),
        );
        let response = self.tool_response(route.server, &route.upstream, &what, outcome?)?;
        if let Some(cache) = cache {
            self.keep(cache, &response);
        }
        Ok(response)
    }

    async fn get_prompt_decided(
        &self,
        request: GetPromptRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        self.remember_client(&context);
        let table = self.routing(&context).await?;
        let visible = !self.view(&context).tools_only();
        let route = table
            .prompt(&request.name)
            .filter(|_| visible)
            .cloned()
            .ok_or_else(|| {
                self.refuse(&context, Decision::Unknown);
                ErrorData::invalid_params(format!("unknown prompt `{}`", request.name), None)
            })?;
        audit::route(&context, route.server, &route.upstream);
        let mut upstream = request;
        let what = format!("prompts/get `{}`", upstream.name);
        upstream.meta = None;
        upstream.name = route.upstream.to_string();
        let resume = self.ours(&mut upstream.request_state, &mut upstream.input_responses);
        let request = ClientRequest::GetPromptRequest(GetPromptRequest::new(upstream));
        match Box::pin(self.forward_rounds(route.server, &what, request, &context, resume)).await? {
            ServerResult::GetPromptResult(mut result) => {
                complete(&mut result.result_type);
                Ok(GetPromptResponse::Complete(result))
            }
            ServerResult::InputRequiredResult(result) => {
                Ok(GetPromptResponse::InputRequired(result))
            }
            _ => Err(unexpected(&self.shared.slots[route.server].name, &what)),
        }
    }

    async fn read_resource_decided(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        self.remember_client(&context);
        let table = self.routing(&context).await?;
        let visible = !self.view(&context).tools_only();
        let index = table
            .resource(&request.uri)
            .filter(|_| visible)
            .ok_or_else(|| {
                self.refuse(&context, Decision::Unknown);
                ErrorData::resource_not_found(
                    format!("no server offers resource `{}`", request.uri),
                    None,
                )
            })?;
        let mut upstream = request;
        upstream.meta = None;
        let what = format!("resources/read `{}`", upstream.uri);
        let resume = self.ours(&mut upstream.request_state, &mut upstream.input_responses);
        let request = ClientRequest::ReadResourceRequest(ReadResourceRequest::new(upstream));
        match Box::pin(self.forward_rounds(index, &what, request, &context, resume)).await? {
            ServerResult::ReadResourceResult(mut result) => {
                complete(&mut result.result_type);
                read_hints(&context, &mut result.ttl_ms, &mut result.cache_scope);
                Ok(ReadResourceResponse::Complete(result))
            }
            ServerResult::InputRequiredResult(result) => {
                Ok(ReadResourceResponse::InputRequired(result))
            }
            _ => Err(unexpected(&self.shared.slots[index].name, &what)),
        }
    }

    async fn complete_decided(
        &self,
        request: CompleteRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, ErrorData> {
        self.remember_client(&context);
        let table = self.routing(&context).await?;
        if self.view(&context).tools_only() {
            self.refuse(&context, Decision::OutsideProfile);
            return Err(ErrorData::invalid_params(
                "completion is not available to this client's profile, a view of tools only",
                None,
            ));
        }
        let mut upstream = request;
        upstream.meta = None;
        let (index, what) = match &upstream.r#ref {
            Reference::Prompt(prompt) => {
                let route = table.prompt(&prompt.name).cloned().ok_or_else(|| {
                    self.refuse(&context, Decision::Unknown);
                    ErrorData::invalid_params(format!("unknown prompt `{}`", prompt.name), None)
                })?;
                let what = format!("completion/complete for prompt `{}`", prompt.name);
                upstream.r#ref = Reference::for_prompt(route.upstream.to_string());
                (route.server, what)
            }
            Reference::Resource(template) => {
                let index = table
                    .template(&template.uri)
                    .or_else(|| table.resource(&template.uri))
                    .ok_or_else(|| {
                        self.refuse(&context, Decision::Unknown);
                        ErrorData::invalid_params(
                            format!("no server offers resource template `{}`", template.uri),
                            None,
                        )
                    })?;
                (index, format!("completion/complete for `{}`", template.uri))
            }
            _ => {
                return Err(ErrorData::invalid_params(
                    "completion/complete for an unknown kind of reference",
                    None,
                ));
            }
        };
        let request = ClientRequest::CompleteRequest(CompleteRequest::new(upstream));
        match Box::pin(self.forward(index, &what, request, &context)).await? {
            ServerResult::CompleteResult(mut result) => {
                complete(&mut result.result_type);
                Ok(result)
            }
            _ => Err(unexpected(&self.shared.slots[index].name, &what)),
        }
    }

    async fn list_tools_decided(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        self.remember_client(&context);
        let table = self.table().await;
        let visible: Vec<_>;
        let tools = match self.view(&context) {
            // Search mode: the gateway's tools, then those listed directly.
            view if self.tool_mode(&context) == ToolMode::Search => {
                visible = gateway_tools::definitions()
                    .into_iter()
                    .chain(
                        table
                            .tools()
                            .iter()
                            .filter(|t| {
                                view.permits(&t.name) && self.listed_directly(&context, &t.name)
                            })
                            .cloned(),
                    )
                    .collect();
                &visible
            }
            View::All => table.tools(),
            view => {
                visible = table
                    .tools()
                    .iter()
                    .filter(|t| view.permits(&t.name))
                    .cloned()
                    .collect();
                &visible
            }
        };
        let (page, next) = page(tools, request.as_ref())?;
        let mut result = ListToolsResult::with_all_items(page);
        result.next_cursor = next;
        self.list_hints(&context, &mut result.ttl_ms, &mut result.cache_scope);
        Ok(result)
    }

    async fn list_prompts_decided(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        self.remember_client(&context);
        let table = self.table().await;
        let prompts = if self.view(&context).tools_only() {
            &[]
        } else {
            table.prompts()
        };
        let (page, next) = page(prompts, request.as_ref())?;
        let mut result = ListPromptsResult::with_all_items(page);
        result.next_cursor = next;
        self.list_hints(&context, &mut result.ttl_ms, &mut result.cache_scope);
        Ok(result)
    }

    async fn list_resources_decided(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        self.remember_client(&context);
        let table = self.table().await;
        let resources = if self.view(&context).tools_only() {
            &[]
        } else {
            table.resources()
        };
        let (page, next) = page(resources, request.as_ref())?;
        let mut result = ListResourcesResult::with_all_items(page);
        result.next_cursor = next;
        self.list_hints(&context, &mut result.ttl_ms, &mut result.cache_scope);
        Ok(result)
    }

    async fn list_resource_templates_decided(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        let table = self.table().await;
        let templates: Vec<ResourceTemplate> = if self.view(&context).tools_only() {
            Vec::new()
        } else {
            table.resource_templates().cloned().collect()
        };
        let (page, next) = page(&templates, request.as_ref())?;
        let mut result = ListResourceTemplatesResult::with_all_items(page);
        result.next_cursor = next;
        self.list_hints(&context, &mut result.ttl_ms, &mut result.cache_scope);
        Ok(result)
    }
}

/// How long a `2026-07-28` client may keep a list (SEP-2549), in
/// milliseconds. The gateway's lists change only with a `list_changed`,
/// which `subscriptions/listen` carries to the client; this bounds how long
/// a client that does not listen keeps a stale list. Short: a client that
/// honours it and does not listen (the official SDK over stdio) would
/// otherwise keep a server's withdrawn tool (a rug pull the scan or the
/// lockfile withholds) for as long.
pub(crate) const LIST_TTL_MS: u64 = 5_000;

impl Mux {
    /// Sets a list's cache hints (SEP-2549) for a `2026-07-28` client:
    /// [`LIST_TTL_MS`], and `private` when a profile narrows its view (the
    /// list is then that view's), else `public`. Handshake-era clients get
    /// none: their protocol has no such fields.
    fn list_hints(
        &self,
        context: &RequestContext<RoleServer>,
        ttl_ms: &mut Option<u64>,
        scope: &mut Option<CacheScope>,
    ) {
        if relay::is_handshake(&context.peer) {
            return;
        }
        *ttl_ms = Some(LIST_TTL_MS);
        *scope = Some(match self.view(context) {
            View::All => CacheScope::Public,
            View::Only(..) => CacheScope::Private,
        });
    }
}

/// A read's cache hints for a `2026-07-28` client: the server's own when it
/// gave them (the gateway keeps no copy of a resource, so its freshness is
/// the server's to say), else `0` (stale at once) and `public` (only
/// clients without a profile read resources).
fn read_hints(
    context: &RequestContext<RoleServer>,
    ttl_ms: &mut Option<u64>,
    scope: &mut Option<CacheScope>,
) {
    if relay::is_handshake(&context.peer) {
        return;
    }
    ttl_ms.get_or_insert(0);
    scope.get_or_insert(CacheScope::Public);
}

/// The name a completion asks about: its prompt, or its template's URI.
fn completed(reference: &Reference) -> Option<String> {
    match reference {
        Reference::Prompt(prompt) => Some(prompt.name.clone()),
        Reference::Resource(template) => Some(template.uri.clone()),
        _ => None,
    }
}
