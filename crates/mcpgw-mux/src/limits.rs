//! Rate limits: the catalog's token buckets (governor's GCRA), checked
//! once for every request relayed to a server, in `Mux::forward` (on both
//! fronts), before the request is admitted, queued or sent.
//!
//! A request passes every bucket that applies to it, in this order: its
//! client's own (the profile's `per_client`, else the gateway's), the
//! server's `per_client`, the tool's `per_client`, then the shared ones, the
//! tool's and the server's. The first that is empty refuses it; buckets
//! checked before it have spent a token. Client buckets come first so that
//! a runaway client is stopped by its own bucket and does not drain the
//! ones it shares with everyone else.
//!
//! A client is its bearer token's name over HTTP (`http` without
//! authentication), or the one stdio client. Buckets live in a map per
//! limit; a bucket that has refilled is indistinguishable from a new one,
//! so a sweep drops those (governor's `retain_recent`, which waits one
//! replenish period more), at most once per [`SWEEP_EVERY`], run by the
//! call that finds one due: no task, no timer. Memory stays bounded by the
//! clients active within one refill time.
//!
//! It does not decide what a request is (the handlers do) nor count the
//! refusal (`Mux::refuse` does, for the metrics and the audit trail).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::DashMapStateStore;
use governor::state::{InMemoryState, NotKeyed};
use governor::{NotUntil, Quota, RateLimiter};
use mcpgw_catalog::{Catalog, RateLimit};
use rmcp::ErrorData;
use rmcp::model::{ClientRequest, ErrorCode};
use rmcp::service::{RequestContext, RoleServer};
use serde_json::json;

use crate::Mux;
use crate::audit::{self, Decision};

/// The JSON-RPC error code of a refusal, ToolHive's (`-32029`), so that
/// clients written for it back off here too.
pub const RATE_LIMITED: i32 = -32029;

/// How often, at most, the idle buckets of one limit are dropped.
pub const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// Tokio's clock, so that paused-time tests drive the buckets; as
/// nanoseconds since the limits were built.
#[derive(Debug, Clone, Copy)]
struct TokioClock {
    base: tokio::time::Instant,
}

impl Clock for TokioClock {
    type Instant = Nanos;

    fn now(&self) -> Nanos {
        Nanos::from(self.base.elapsed())
    }
}

type Direct = RateLimiter<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<Nanos>>;
type Keyed = RateLimiter<String, DashMapStateStore<String>, TokioClock, NoOpMiddleware<Nanos>>;

/// Where a limit is declared, for the refusal to name it.
#[derive(Debug)]
struct Site {
    /// Its catalog path, such as `servers.github.limits.per_client`.
    path: String,
    limit: RateLimit,
    /// Whether each client has its own bucket.
    per_client: bool,
}

fn quota(limit: RateLimit) -> Quota {
    Quota::with_period(limit.rate.replenish_every())
        .unwrap_or_else(|| Quota::per_second(limit.rate.count))
        .allow_burst(limit.burst)
}

/// One bucket that every client shares.
#[derive(Debug)]
struct Bucket {
    site: Site,
    limiter: Direct,
    clock: TokioClock,
}

impl Bucket {
    fn new(path: String, limit: RateLimit, clock: TokioClock) -> Self {
        Self {
            limiter: RateLimiter::direct_with_clock(quota(limit), clock),
            site: Site {
                path,
                limit,
                per_client: false,
            },
            clock,
        }
    }

    fn check(&self) -> Result<(), Limited<'_>> {
        self.limiter
            .check()
            .map_err(|n| Limited::new(&self.site, &n, self.clock))
    }
}

/// A bucket for each client.
#[derive(Debug)]
struct Buckets {
    site: Site,
    limiter: Keyed,
    clock: TokioClock,
    /// When the next sweep is due, in the clock's nanoseconds.
    next_sweep: AtomicU64,
}

impl Buckets {
    fn new(path: String, limit: RateLimit, clock: TokioClock) -> Self {
        Self {
            limiter: RateLimiter::dashmap_with_clock(quota(limit), clock),
            site: Site {
                path,
                limit,
                per_client: true,
            },
            clock,
            next_sweep: AtomicU64::new(sweep_nanos()),
        }
    }

    fn check(&self, client: &String) -> Result<(), Limited<'_>> {
        self.sweep();
        self.limiter
            .check_key(client)
            .map_err(|n| Limited::new(&self.site, &n, self.clock))
    }

    /// Drops the buckets that have refilled, when a sweep is due; the
    /// call that finds it due does it.
    fn sweep(&self) {
        let now = self.clock.now().as_u64();
        let due = self.next_sweep.load(Ordering::Relaxed);
        if now < due {
            return;
        }
        let next = now.saturating_add(sweep_nanos());
        if self
            .next_sweep
            .compare_exchange(due, next, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            self.limiter.retain_recent();
            self.limiter.shrink_to_fit();
        }
    }
}

fn sweep_nanos() -> u64 {
    u64::try_from(SWEEP_EVERY.as_nanos()).unwrap_or(u64::MAX)
}

/// The buckets of one server.
#[derive(Debug, Default)]
struct ServerBuckets {
    per_client: Option<Buckets>,
    server: Option<Bucket>,
    /// By upstream tool name.
    tools: HashMap<String, ToolBuckets>,
}

#[derive(Debug)]
struct ToolBuckets {
    per_client: Option<Buckets>,
    all: Option<Bucket>,
}

/// Every rate limit of a catalog.
#[derive(Debug)]
pub struct Limits {
    /// `gateway.limits.per_client`.
    per_client: Option<Buckets>,
    /// `profiles.P.limits.per_client`, which replaces the gateway's for
    /// the profile's clients.
    profiles: HashMap<String, Buckets>,
    /// By slot index (catalog order until a reload adds servers).
    servers: Vec<ServerBuckets>,
    /// The stdio client's key, and that of HTTP without authentication.
    stdio: String,
    anonymous: String,
}

/// The client a request is counted against.
#[derive(Debug, Clone, Copy)]
pub struct Who<'a> {
    key: &'a String,
    profile: Option<&'a str>,
}

impl<'a> Who<'a> {
    /// The client named `key` (a token's name), bound to `profile`.
    #[must_use]
    // governor's keyed check takes the key type itself, `&String`.
    #[allow(clippy::ptr_arg)]
    pub fn new(key: &'a String, profile: Option<&'a str>) -> Self {
        Self { key, profile }
    }
}

impl Limits {
    /// The limits `catalog` declares, or `None` when it declares none (then
    /// nothing is checked at all).
    #[must_use]
    pub fn new(catalog: &Catalog) -> Option<Self> {
        let at: Vec<usize> = (0..catalog.servers.len()).collect();
        Self::placed(catalog, &at)
    }

    /// The limits `catalog` declares, its server `i`'s at slot `at[i]`.
    #[must_use]
    pub fn placed(catalog: &Catalog, at: &[usize]) -> Option<Self> {
        let clock = TokioClock {
            base: tokio::time::Instant::now(),
        };
        let per_client = catalog
            .gateway
            .limits
            .per_client
            .map(|l| Buckets::new("gateway.limits.per_client".to_string(), l, clock));
        let profiles: HashMap<String, Buckets> = catalog
            .profiles
            .values()
            .filter_map(|p| {
                let limit = p.limits.per_client?;
                let path = format!("profiles.{}.limits.per_client", p.name);
                Some((p.name.clone(), Buckets::new(path, limit, clock)))
            })
            .collect();
        let built = catalog.servers.iter().map(|s| {
            let path = |key: &str| format!("servers.{}.limits.{key}", s.name);
            ServerBuckets {
                per_client: s
                    .limits
                    .per_client
                    .map(|l| Buckets::new(path("per_client"), l, clock)),
                server: s
                    .limits
                    .server
                    .map(|l| Bucket::new(path("server"), l, clock)),
                tools: s
                    .limits
                    .tools
                    .iter()
                    .map(|(tool, limits)| {
                        let buckets = ToolBuckets {
                            per_client: limits.per_client.map(|l| {
                                Buckets::new(path(&format!("tools.{tool}.per_client")), l, clock)
                            }),
                            all: limits
                                .all
                                .map(|l| Bucket::new(path(&format!("tools.{tool}")), l, clock)),
                        };
                        (tool.clone(), buckets)
                    })
                    .collect(),
            }
        });
        let mut servers: Vec<ServerBuckets> = Vec::new();
        for (&slot, buckets) in at.iter().zip(built) {
            if servers.len() <= slot {
                servers.resize_with(slot + 1, ServerBuckets::default);
            }
            servers[slot] = buckets;
        }
        let none = per_client.is_none()
            && profiles.is_empty()
            && catalog.servers.iter().all(|s| s.limits.is_empty());
        (!none).then(|| Self {
            per_client,
            profiles,
            servers,
            stdio: "stdio".to_string(),
            anonymous: "http".to_string(),
        })
    }

    /// Takes a token from each bucket that applies to a request from
    /// `who` to server `server` (for `tool`, an upstream name, when it is a
    /// `tools/call`), in the order the module describes; the first empty
    /// one refuses it.
    ///
    /// # Errors
    ///
    /// [`Limited`], naming the limit and when to retry.
    pub fn check(
        &self,
        server: usize,
        tool: Option<&str>,
        who: Who<'_>,
    ) -> Result<(), Limited<'_>> {
        let Some(buckets) = self.servers.get(server) else {
            return Ok(());
        };
        let tool = tool.and_then(|t| buckets.tools.get(t));
        let own = who
            .profile
            .and_then(|p| self.profiles.get(p))
            .or(self.per_client.as_ref());
        for keyed in [
            own,
            buckets.per_client.as_ref(),
            tool.and_then(|t| t.per_client.as_ref()),
        ]
        .into_iter()
        .flatten()
        {
            keyed.check(who.key)?;
        }
        for shared in [tool.and_then(|t| t.all.as_ref()), buckets.server.as_ref()]
            .into_iter()
            .flatten()
        {
            shared.check()?;
        }
        Ok(())
    }

    /// How many clients' buckets are held, over every per-client limit.
    #[must_use]
    pub fn buckets(&self) -> usize {
        let servers = self.servers.iter().flat_map(|s| {
            s.per_client
                .iter()
                .chain(s.tools.values().filter_map(|t| t.per_client.as_ref()))
        });
        self.per_client
            .iter()
            .chain(self.profiles.values())
            .chain(servers)
            .map(|b| b.limiter.len())
            .sum()
    }

    /// Logs each tool that server `server` (named `name`) has a limit for
    /// but does not offer in `inventory`: a misspelt name limits nothing.
    pub(crate) fn report_unknown_tools(
        &self,
        server: usize,
        name: &str,
        inventory: &mcpgw_backend::Inventory,
    ) {
        let Some(buckets) = self.servers.get(server) else {
            return;
        };
        for tool in buckets.tools.keys() {
            if !inventory.tools.iter().any(|t| t.name == tool.as_str()) {
                tracing::error!(
                    server = %name,
                    "servers.{name}.limits.tools.{tool}: the server offers no tool `{tool}`, so this limit applies to nothing; fix: name one of its tools as it names them (`mcpgw tools` lists them)"
                );
            }
        }
    }

    /// The client of `context`, as `audit::caller` names it.
    fn who<'a>(&'a self, context: &'a RequestContext<RoleServer>) -> Who<'a> {
        let caller = audit::caller(context);
        let key = match caller.http {
            Some(Some(token)) => token,
            Some(None) => &self.anonymous,
            None => &self.stdio,
        };
        Who::new(key, caller.profile)
    }
}

/// A request refused by a limit.
#[derive(Debug)]
pub struct Limited<'a> {
    site: &'a Site,
    retry_after: Duration,
}

impl<'a> Limited<'a> {
    fn new(site: &'a Site, not_until: &NotUntil<Nanos>, clock: TokioClock) -> Self {
        Self {
            site,
            retry_after: not_until.wait_time_from(clock.now()),
        }
    }

    /// How long until the bucket has a token again.
    #[must_use]
    pub fn retry_after(&self) -> Duration {
        self.retry_after
    }

    /// The limit's catalog path.
    #[must_use]
    pub fn path(&self) -> &str {
        &self.site.path
    }

    /// The error the client gets: ToolHive's shape (code `-32029`,
    /// `data.retryAfterSeconds`, whole seconds rounded up), and the limit
    /// that was hit in `data.limit`.
    #[must_use]
    pub fn error(&self) -> ErrorData {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let seconds = self.retry_after.as_secs_f64().ceil().max(1.0) as u64;
        let site = self.site;
        let whose = if site.per_client {
            "for each client"
        } else {
            "for every client together"
        };
        ErrorData::new(
            ErrorCode(RATE_LIMITED),
            format!(
                "Rate limit exceeded: `{}` allows {} {whose}; retry after {seconds} s",
                site.path, site.limit
            ),
            Some(json!({
                "retryAfterSeconds": seconds,
                "limit": {
                    "path": site.path,
                    "scope": if site.per_client { "client" } else { "shared" },
                    "rate": site.limit.rate.to_string(),
                    "burst": site.limit.burst.get(),
                },
            })),
        )
    }
}

impl Mux {
    /// Refuses `request` for server `index` when a rate limit is reached
    /// (counted, and noted for the audit trail, as `rate_limited`).
    pub(crate) fn rate_limit(
        &self,
        index: usize,
        request: &ClientRequest,
        context: &RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let settings = self.shared.settings();
        let Some(limits) = &settings.limits else {
            return Ok(());
        };
        let tool = match request {
            ClientRequest::CallToolRequest(r) => Some(r.params.name.as_ref()),
            _ => None,
        };
        limits
            .check(index, tool, limits.who(context))
            .map_err(|limited| {
                tracing::debug!(
                    server = %self.shared.slots[index].name,
                    "refused a request: {} is reached",
                    limited.path()
                );
                self.refuse(context, Decision::RateLimited);
                limited.error()
            })
    }
}

#[cfg(test)]
mod tests;
