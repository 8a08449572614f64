//! The result cache: for the tools the catalog marks `cache: { ttl }`,
//! whose definitions say they are read-only and idempotent
//! (`readOnlyHint` and `idempotentHint`), a successful result is kept for
//! its TTL and answers the same call again without reaching the server.
//!
//! A result is keyed by the exposed tool name, the SHA-256 of the call's
//! canonical arguments (keys sorted, as the audit trail digests them) and
//! the client's view (its profile, or none): never shared across
//! profiles. The cache (moka) is bounded in bytes (each result weighs its
//! JSON), and never holds an error, a result flagged `isError`, or a round
//! that asks for input. A call that carries a `requestState` or input
//! responses is never answered from it. Two identical calls at once both
//! reach the server; the second answer replaces the first.
//!
//! A tool marked in the catalog whose definition lacks either hint is not
//! cached: the gateway logs an error when the server lists it (a cache
//! would change what its calls do), and forwards every call.
//!
//! It does not forward (`handlers.rs` asks it before forwarding, and
//! gives it what forwarding brought back).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use mcpgw_backend::Inventory;
use moka::sync::Cache;
use rmcp::model::{CallToolRequestParams, CallToolResponse, CallToolResult, Tool};
use rmcp::service::{RequestContext, RoleServer};
use serde_json::Value;

use crate::router::{Route, RoutingTable};
use crate::{Mux, profile};

/// One cached result's key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Key {
    tool: Arc<str>,
    view: Option<Arc<str>>,
    arguments: String,
}

#[derive(Debug)]
struct Cached {
    result: CallToolResult,
    ttl: Duration,
    bytes: u32,
}

/// Each entry lives for its tool's TTL.
struct PerTool;

impl moka::Expiry<Key, Arc<Cached>> for PerTool {
    fn expire_after_create(
        &self,
        _key: &Key,
        value: &Arc<Cached>,
        _created: std::time::Instant,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
}

/// The results of the tools the catalog caches.
#[derive(Debug)]
pub(crate) struct Results {
    cache: Cache<Key, Arc<Cached>>,
    /// By slot index: the tools to cache, by upstream name, and for how
    /// long.
    ttls: Vec<HashMap<String, Duration>>,
}

impl Results {
    /// The cache `catalog` asks for, or `None` when no server caches a
    /// tool.
    #[cfg(test)]
    pub(crate) fn new(catalog: &mcpgw_catalog::Catalog) -> Option<Self> {
        let at: Vec<usize> = (0..catalog.servers.len()).collect();
        Self::placed(catalog, &at)
    }

    /// The cache `catalog` asks for, its server `i`'s tools at slot
    /// `at[i]`.
    pub(crate) fn placed(catalog: &mcpgw_catalog::Catalog, at: &[usize]) -> Option<Self> {
        let mut ttls: Vec<HashMap<String, Duration>> = Vec::new();
        for (&slot, spec) in at.iter().zip(&catalog.servers) {
            if ttls.len() <= slot {
                ttls.resize_with(slot + 1, HashMap::new);
            }
            ttls[slot] = spec.cache.iter().cloned().collect();
        }
        if ttls.iter().all(HashMap::is_empty) {
            return None;
        }
        let cache = Cache::builder()
            .max_capacity(catalog.gateway.cache_bytes)
            .weigher(|_key: &Key, value: &Arc<Cached>| value.bytes)
            .expire_after(PerTool)
            .build();
        Some(Self { cache, ttls })
    }

    /// How long results of `upstream` on server `server` are kept, when
    /// the catalog caches it and `tool`'s definition allows it.
    pub(crate) fn ttl<'a>(
        &self,
        server: usize,
        upstream: &str,
        tool: impl FnOnce() -> Option<&'a Tool>,
    ) -> Option<Duration> {
        let ttl = *self.ttls.get(server)?.get(upstream)?;
        tool().is_some_and(cacheable).then_some(ttl)
    }

    /// The key of `request` for a client with `view`, unless the request
    /// continues a round (then it is never answered from the cache).
    pub(crate) fn key(request: &CallToolRequestParams, view: Option<&str>) -> Option<Key> {
        if request.request_state.is_some() || request.input_responses.is_some() {
            return None;
        }
        let arguments = Value::Object(request.arguments.clone().unwrap_or_default());
        Some(Key {
            tool: Arc::from(request.name.as_ref()),
            view: view.map(Arc::from),
            arguments: mcpgw_catalog::lock::digest(&arguments),
        })
    }

    /// The result kept for `key`, if it has not expired.
    pub(crate) fn get(&self, key: &Key) -> Option<CallToolResult> {
        self.cache.get(key).map(|c| c.result.clone())
    }

    /// Keeps `result` for `key` for `ttl`, unless it is an error.
    pub(crate) fn put(&self, key: Key, result: &CallToolResult, ttl: Duration) {
        if result.is_error == Some(true) {
            return;
        }
        let bytes = serde_json::to_vec(result)
            .map_or(u32::MAX, |v| u32::try_from(v.len()).unwrap_or(u32::MAX));
        self.cache.insert(
            key,
            Arc::new(Cached {
                result: result.clone(),
                ttl,
                bytes,
            }),
        );
    }

    /// The bytes the cache holds now (as its weigher counts them).
    pub(crate) fn bytes(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.weighted_size()
    }

    /// Logs the tools the catalog caches on server `server` (named `name`)
    /// that `inventory` does not offer, or whose definitions do not allow
    /// it.
    pub(crate) fn check(&self, server: usize, name: &str, inventory: &Inventory) {
        let Some(ttls) = self.ttls.get(server) else {
            return;
        };
        for tool in ttls.keys() {
            if !inventory.tools.iter().any(|t| t.name == tool.as_str()) {
                tracing::error!(
                    server = %name,
                    "servers.{name}.cache.{tool}: the server offers no tool `{tool}`, so nothing is cached for it; fix: name one of its tools as it names them (`mcpgw tools` lists them)"
                );
            }
        }
        for tool in &inventory.tools {
            if ttls.contains_key(tool.name.as_ref()) && !cacheable(tool) {
                tracing::error!(
                    server = %name,
                    "servers.{name}.cache.{}: the tool's definition does not say it is read-only and idempotent (readOnlyHint, idempotentHint), so its results are not cached; fix: remove it from `cache`",
                    tool.name
                );
            }
        }
    }
}

impl Mux {
    /// The cache key of a call of `request` routed by `route`, and how long
    /// its result is kept, when it may be cached.
    pub(crate) fn cache_key(
        &self,
        table: &RoutingTable,
        route: &Route,
        request: &CallToolRequestParams,
        context: &RequestContext<RoleServer>,
    ) -> Option<(Key, Duration)> {
        let settings = self.shared.settings();
        let results = settings.results.as_ref()?;
        let ttl = results.ttl(route.server, &route.upstream, || {
            table.tools().iter().find(|t| t.name == request.name)
        })?;
        Some((Results::key(request, profile(&context.extensions))?, ttl))
    }

    /// The result kept for `key` (counted as a hit or a miss).
    pub(crate) fn cached(&self, route: &Route, key: &Key) -> Option<CallToolResult> {
        let settings = self.shared.settings();
        let results = settings.results.as_ref()?;
        let found = results.get(key);
        let server = self.shared.slots[route.server].name.as_str();
        self.shared
            .metrics
            .cache_lookup(server, &route.upstream, found.is_some());
        found
    }

    /// Keeps what a call answered, when it may be kept.
    pub(crate) fn keep(&self, (key, ttl): (Key, Duration), response: &CallToolResponse) {
        if let (Some(results), CallToolResponse::Complete(result)) =
            (self.shared.settings().results.as_ref(), response)
        {
            results.put(key, result, ttl);
        }
    }
}

/// Whether `tool` says calling it twice is the same as once, and changes
/// nothing.
fn cacheable(tool: &Tool) -> bool {
    tool.annotations
        .as_ref()
        .is_some_and(|a| a.read_only_hint == Some(true) && a.idempotent_hint == Some(true))
}

#[cfg(test)]
mod tests {
    use rmcp::model::{ContentBlock as Content, ToolAnnotations};

    use super::*;

    fn results() -> Results {
        let catalog = mcpgw_catalog::parse(
            "version: 1\nservers:\n  s:\n    image: x\n    cache: { now: { ttl: 30s } }\n  t:\n    image: x\n",
            std::path::Path::new("t.yaml"),
            &std::env::temp_dir(),
        )
        .unwrap();
        Results::new(&catalog).unwrap()
    }

    fn tool(read_only: bool, idempotent: bool) -> Tool {
        let mut tool = Tool::new("now", "", Arc::new(serde_json::Map::new()));
        tool.annotations = Some(
            ToolAnnotations::new()
                .read_only(read_only)
                .idempotent(idempotent),
        );
        tool
    }

    fn call(arguments: Value) -> CallToolRequestParams {
        let Value::Object(arguments) = arguments else {
            panic!("arguments are an object")
        };
        CallToolRequestParams::new("s__now").with_arguments(arguments)
    }

    #[test]
    fn only_marked_read_only_idempotent_tools_are_cached() {
        let r = results();
        let (yes, read_only, idempotent) = (tool(true, true), tool(true, false), tool(false, true));
        assert_eq!(
            r.ttl(0, "now", || Some(&yes)),
            Some(Duration::from_secs(30))
        );
        assert_eq!(r.ttl(0, "now", || Some(&read_only)), None);
        assert_eq!(r.ttl(0, "now", || Some(&idempotent)), None);
        assert_eq!(r.ttl(0, "now", || None), None);
        assert_eq!(r.ttl(0, "other", || Some(&yes)), None);
        assert_eq!(r.ttl(1, "now", || Some(&yes)), None);
        let none = mcpgw_catalog::parse(
            "version: 1\nservers:\n  s:\n    image: x\n",
            std::path::Path::new("t.yaml"),
            &std::env::temp_dir(),
        )
        .unwrap();
        assert!(Results::new(&none).is_none());
    }

    #[test]
    fn results_are_keyed_by_arguments_and_view_and_errors_are_not_kept() {
        let r = results();
        let ttl = Duration::from_secs(30);
        let key = Results::key(&call(serde_json::json!({"a": 1, "b": 2})), None).unwrap();
        r.put(
            key.clone(),
            &CallToolResult::success(vec![Content::text("kept")]),
            ttl,
        );
        // The same arguments in another order are the same call.
        let same = Results::key(&call(serde_json::json!({"b": 2, "a": 1})), None).unwrap();
        assert_eq!(
            r.get(&same).unwrap().content[0].as_text().unwrap().text,
            "kept"
        );
        let other = Results::key(&call(serde_json::json!({"a": 2, "b": 2})), None).unwrap();
        assert!(r.get(&other).is_none());
        let profile = Results::key(&call(serde_json::json!({"a": 1, "b": 2})), Some("ci")).unwrap();
        assert!(r.get(&profile).is_none(), "never across views");
        r.put(
            profile.clone(),
            &CallToolResult::error(vec![Content::text("no")]),
            ttl,
        );
        assert!(r.get(&profile).is_none(), "an error is not kept");
        assert!(r.bytes() > 0);
        let mut round = call(serde_json::json!({}));
        round.request_state = Some("s".to_string());
        assert!(Results::key(&round, None).is_none());
    }
}
