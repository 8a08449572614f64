//! The HTTP front as an OAuth 2.1 resource server (`--auth oauth`): JWT
//! access tokens from the issuer `gateway.auth.oauth` names, checked
//! against its published keys, mapped to a catalog profile.
//!
//! At start-up the issuer's metadata is discovered (RFC 8414, then OpenID
//! Connect discovery; its `issuer` must be the configured one) and its
//! JWKS fetched. A token is accepted when its header's algorithm is on
//! the allowlist (never `none` or `HS*`), its key is the issuer's (by
//! `kid`), the key's type and declared algorithm agree with the header,
//! its signature verifies, and `iss`, `exp`, `nbf` (with the leeway) and
//! `aud` (which must name this gateway's resource URL, RFC 8707) hold;
//! then its scopes must include every required one (else 403
//! `insufficient_scope`), and its claims select a profile (else the
//! default profile, else 403). All JOSE is `jsonwebtoken`'s.
//!
//! Keys are cached. A token naming a key the cache lacks (the issuer
//! rotated), or a cache older than [`MAX_AGE`], makes one refetch, at most
//! once per `jwks_refresh`: a request arriving sooner waits for the next
//! allowed fetch rather than being refused, and every request waits for
//! at most one fetch that starts after it arrived, so a flood of made-up
//! `kid`s costs the issuer one request per interval and delays no genuine
//! token by more than that. A failed refetch keeps the keys it had.
//!
//! Not here: opaque tokens (RFC 7662 introspection) and token exchange.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use jsonwebtoken::jwk::{Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use mcpgw_catalog::{Claim, OAuthSpec};
use serde_json::{Map, Value};
use tokio::time::Instant;

/// A cached key set older than this is refetched before use.
const MAX_AGE: Duration = Duration::from_secs(15 * 60);

/// How long one fetch from the issuer may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest metadata or key document read.
const MAX_DOCUMENT: usize = 1 << 20;

/// Who a token speaks for, and what it may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Identity {
    /// The token's `sub`.
    pub(crate) sub: String,
    /// The OAuth client it was issued to (`client_id`, else `azp`).
    pub(crate) client_id: Option<String>,
    /// The catalog profile its claims select.
    pub(crate) profile: Option<String>,
}

impl Identity {
    /// The name the audit trail and the logs know the client by.
    pub(crate) fn name(&self) -> String {
        match &self.client_id {
            Some(client) if *client != self.sub => format!("{} (client {client})", self.sub),
            _ => self.sub.clone(),
        }
    }
}

/// Why a token was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// 401 `invalid_token`: not a token of this issuer for this resource.
    Invalid(String),
    /// 403 `insufficient_scope`: a valid token that may not use the gateway.
    Insufficient {
        /// The scopes a token needs.
        scope: String,
        /// What it lacked.
        reason: String,
    },
}

/// The resource server: its configuration, the issuer's keys, and the
/// protected resource metadata it publishes.
#[derive(Debug)]
pub(crate) struct OAuth {
    spec: OAuthSpec,
    algorithms: Vec<Algorithm>,
    keys: Keys,
    metadata: Value,
    metadata_url: String,
}

impl OAuth {
    /// Discovers the issuer's metadata and fetches its keys.
    ///
    /// # Errors
    ///
    /// When the issuer's metadata or keys cannot be had, naming the URLs
    /// tried and what each answered.
    pub(crate) async fn discover(spec: &OAuthSpec) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .redirect(reqwest::redirect::Policy::limited(3))
            .build()
            .context("cannot build the HTTP client for the issuer")?;
        let jwks_uri = jwks_uri(&http, &spec.issuer).await?;
        let keys = Keys::fetch(http, jwks_uri, spec.jwks_refresh).await?;
        Self::with_keys(spec, keys)
    }

    fn with_keys(spec: &OAuthSpec, keys: Keys) -> anyhow::Result<Self> {
        let algorithms = spec
            .algorithms
            .iter()
            .map(|a| a.parse::<Algorithm>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| anyhow!("an algorithm of gateway.auth.oauth is not known: {e}"))?;
        let metadata = serde_json::json!({
            "resource": spec.resource,
            "authorization_servers": [spec.issuer],
            "scopes_supported": spec.scopes_supported(),
            "bearer_methods_supported": ["header"],
            "resource_signing_alg_values_supported": spec.algorithms,
            "resource_name": "mcpgw",
        });
        Ok(Self {
            metadata_url: metadata_url(&spec.resource)?,
            spec: spec.clone(),
            algorithms,
            keys,
            metadata,
        })
    }

    /// The RFC 9728 protected resource metadata.
    pub(crate) fn metadata(&self) -> &Value {
        &self.metadata
    }

    /// Where the metadata is published, as the 401's `resource_metadata`.
    pub(crate) fn metadata_url(&self) -> &str {
        &self.metadata_url
    }

    /// The `WWW-Authenticate` value for a refusal (`None`: no token).
    pub(crate) fn challenge(&self, refusal: Option<&Refusal>) -> String {
        let mut value = format!(
            "Bearer realm=\"mcpgw\", resource_metadata=\"{}\"",
            self.metadata_url
        );
        let quoted = |text: &str| text.replace(['"', '\\'], "'");
        match refusal {
            None => {
                let scope = self.spec.scopes.join(" ");
                if !scope.is_empty() {
                    value.push_str(&format!(", scope=\"{}\"", quoted(&scope)));
                }
            }
            Some(Refusal::Invalid(reason)) => value.push_str(&format!(
                ", error=\"invalid_token\", error_description=\"{}\"",
                quoted(reason)
            )),
            Some(Refusal::Insufficient { scope, reason }) => value.push_str(&format!(
                ", error=\"insufficient_scope\", scope=\"{}\", error_description=\"{}\"",
                quoted(scope),
                quoted(reason)
            )),
        }
        value
    }

    /// Checks `token`, as the module's doc says.
    pub(crate) async fn check(&self, token: &str) -> Result<Identity, Refusal> {
        let invalid = |why: &str| Refusal::Invalid(why.to_string());
        let header = jsonwebtoken::decode_header(token).map_err(|_| {
            invalid("the token is not a JWT signed with an algorithm this gateway accepts")
        })?;
        if !self.algorithms.contains(&header.alg) {
            return Err(invalid(&format!(
                "algorithm {:?} is not accepted",
                header.alg
            )));
        }
        let jwk = self
            .keys
            .find(header.kid.as_deref())
            .await
            .ok_or_else(|| invalid("the token's key is not one the issuer publishes"))?;
        let key =
            DecodingKey::from_jwk(&jwk).map_err(|_| invalid("the issuer's key is unusable"))?;
        let declared = jwk
            .common
            .key_algorithm
            .and_then(|a| a.to_string().parse::<Algorithm>().ok());
        if key.family() != header.alg.family() || declared.is_some_and(|a| a != header.alg) {
            return Err(invalid("the token's algorithm does not match its key"));
        }
        let mut validation = Validation::new(header.alg);
        validation.leeway = self.spec.leeway.as_secs();
        validation.validate_nbf = true;
        validation.set_issuer(&[&self.spec.issuer]);
        validation.set_audience(&[&self.spec.resource]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let claims = jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation)
            .map_err(|e| Refusal::Invalid(reason(e.kind(), &self.spec.resource)))?
            .claims;
        self.admit(&claims)
    }

    /// The identity of a token whose signature and registered claims
    /// hold: its scopes and profile.
    fn admit(&self, claims: &Map<String, Value>) -> Result<Identity, Refusal> {
        let scopes = scopes(claims);
        let missing: Vec<&str> = self
            .spec
            .scopes
            .iter()
            .filter(|s| !scopes.contains(&s.as_str()))
            .map(String::as_str)
            .collect();
        let required = self.spec.scopes.join(" ");
        if !missing.is_empty() {
            return Err(Refusal::Insufficient {
                scope: required,
                reason: format!("the token lacks scope {}", missing.join(" ")),
            });
        }
        let profile = self
            .spec
            .profiles
            .iter()
            .find(|rule| holds(claims, &scopes, &rule.when))
            .map(|rule| rule.profile.clone())
            .or_else(|| self.spec.default_profile.clone());
        if profile.is_none() && !self.spec.profiles.is_empty() {
            return Err(Refusal::Insufficient {
                scope: self.spec.scopes_supported().join(" "),
                reason: "the token's claims select no profile of this gateway".to_string(),
            });
        }
        let text = |name: &str| claims.get(name).and_then(Value::as_str).map(str::to_string);
        Ok(Identity {
            sub: text("sub").unwrap_or_default(),
            client_id: text("client_id").or_else(|| text("azp")),
            profile,
        })
    }
}

/// What a refused token is told, by what `jsonwebtoken` found.
fn reason(kind: &jsonwebtoken::errors::ErrorKind, resource: &str) -> String {
    use jsonwebtoken::errors::ErrorKind;
    match kind {
        ErrorKind::ExpiredSignature => "the token has expired".to_string(),
        ErrorKind::ImmatureSignature => "the token is not valid yet".to_string(),
        ErrorKind::InvalidAudience => {
            format!("the token is not for this resource: its audience does not name {resource}")
        }
        ErrorKind::InvalidIssuer => "the token is from another issuer".to_string(),
        ErrorKind::InvalidSignature => "the token's signature does not verify".to_string(),
        ErrorKind::MissingRequiredClaim(claim) => format!("the token has no `{claim}`"),
        _ => "the token cannot be read".to_string(),
    }
}

/// A token's scopes: `scope` (RFC 9068, space-separated) or `scp` (a list
/// or a string, as some identity providers write it).
fn scopes(claims: &Map<String, Value>) -> Vec<&str> {
    let mut out = Vec::new();
    for name in ["scope", "scp"] {
        match claims.get(name) {
            Some(Value::String(s)) => out.extend(s.split_ascii_whitespace()),
            Some(Value::Array(items)) => out.extend(items.iter().filter_map(Value::as_str)),
            _ => {}
        }
    }
    out
}

/// Whether a token with `claims` and `scopes` satisfies `when`.
fn holds(claims: &Map<String, Value>, scopes: &[&str], when: &Claim) -> bool {
    match when {
        Claim::Scope(scope) => scopes.contains(&scope.as_str()),
        Claim::Value { name, value } => match claims.get(name) {
            Some(Value::String(s)) => s == value,
            Some(Value::Array(items)) => items.iter().any(|i| i.as_str() == Some(value)),
            _ => false,
        },
    }
}

/// Where the metadata of `resource` is published (RFC 9728, section 3.1):
/// the well-known path inserted between its origin and its path.
fn metadata_url(resource: &str) -> anyhow::Result<String> {
    let url = url::Url::parse(resource).with_context(|| format!("`{resource}` is not a URL"))?;
    let path = url.path().trim_end_matches('/');
    Ok(format!(
        "{}/.well-known/oauth-protected-resource{path}",
        url.origin().ascii_serialization()
    ))
}

/// The issuer's `jwks_uri`, from its RFC 8414 metadata or else its OpenID
/// Connect discovery document, whichever answers first with a document
/// whose `issuer` is `issuer`.
async fn jwks_uri(http: &reqwest::Client, issuer: &str) -> anyhow::Result<url::Url> {
    let url = url::Url::parse(issuer).with_context(|| format!("`{issuer}` is not a URL"))?;
    let path = url.path().trim_end_matches('/');
    let origin = url.origin().ascii_serialization();
    let candidates = [
        format!("{origin}/.well-known/oauth-authorization-server{path}"),
        format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        ),
    ];
    let mut failures = Vec::new();
    for candidate in candidates {
        let document = match fetch_json(http, &candidate).await {
            Ok(document) => document,
            Err(err) => {
                failures.push(format!("{candidate}: {err:#}"));
                continue;
            }
        };
        if document.get("issuer").and_then(Value::as_str) != Some(issuer) {
            failures.push(format!(
                "{candidate}: its `issuer` is not `{issuer}` (RFC 8414 requires them equal)"
            ));
            continue;
        }
        let Some(jwks) = document.get("jwks_uri").and_then(Value::as_str) else {
            failures.push(format!("{candidate}: it names no `jwks_uri`"));
            continue;
        };
        let jwks = url::Url::parse(jwks).with_context(|| format!("`{jwks}` is not a URL"))?;
        if jwks.scheme() != "https" && jwks.scheme() != url.scheme() {
            return Err(anyhow!(
                "the issuer's jwks_uri {jwks} is not https; fix: serve the keys over https"
            ));
        }
        return Ok(jwks);
    }
    Err(anyhow!(
        "cannot discover the metadata of issuer {issuer}: {}; fix: check gateway.auth.oauth.issuer and that the issuer is reachable",
        failures.join("; ")
    ))
}

/// A JSON document, read within [`MAX_DOCUMENT`].
async fn fetch_json(http: &reqwest::Client, url: &str) -> anyhow::Result<Value> {
    let mut response = http
        .get(url)
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await?
        .error_for_status()?;
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_DOCUMENT {
            return Err(anyhow!("the document is over {MAX_DOCUMENT} bytes"));
        }
    }
    serde_json::from_slice(&body).context("the document is not JSON")
}

/// The issuer's signing keys, as last fetched.
#[derive(Debug)]
struct Keys {
    http: reqwest::Client,
    uri: url::Url,
    /// The shortest time between two fetches.
    interval: Duration,
    current: parking_lot::RwLock<Arc<KeySet>>,
    /// Held by the one request fetching; the others wait on it.
    fetching: tokio::sync::Mutex<()>,
}

#[derive(Debug)]
struct KeySet {
    keys: Vec<Jwk>,
    fetched: Instant,
    /// Counts fetches, so a waiter knows whether one happened since it
    /// looked.
    generation: u64,
}

impl KeySet {
    /// The key `kid` names; without a `kid`, the only key there is.
    fn pick(&self, kid: Option<&str>) -> Option<Jwk> {
        match kid {
            Some(kid) => self
                .keys
                .iter()
                .find(|k| k.common.key_id.as_deref() == Some(kid)),
            None if self.keys.len() == 1 => self.keys.first(),
            None => None,
        }
        .cloned()
    }
}

impl Keys {
    async fn fetch(
        http: reqwest::Client,
        uri: url::Url,
        interval: Duration,
    ) -> anyhow::Result<Self> {
        let keys = signing_keys(&http, &uri)
            .await
            .with_context(|| format!("cannot fetch the issuer's keys from {uri}"))?;
        Ok(Self {
            http,
            uri,
            interval,
            current: parking_lot::RwLock::new(Arc::new(KeySet {
                keys,
                fetched: Instant::now(),
                generation: 0,
            })),
            fetching: tokio::sync::Mutex::new(()),
        })
    }

    /// The key a token's `kid` names, refetching the set (as the module's
    /// doc says) when it is unknown or the set is old.
    async fn find(&self, kid: Option<&str>) -> Option<Jwk> {
        let seen = self.current.read().clone();
        if seen.fetched.elapsed() < MAX_AGE
            && let Some(key) = seen.pick(kid)
        {
            return Some(key);
        }
        let _fetching = self.fetching.lock().await;
        let now = self.current.read().clone();
        if now.generation == seen.generation {
            // A rate limit: no fetch sooner than `interval` after the last.
            tokio::time::sleep_until(now.fetched + self.interval).await;
            let keys = match signing_keys(&self.http, &self.uri).await {
                Ok(keys) => {
                    tracing::info!(keys = keys.len(), "refetched the issuer's keys");
                    keys
                }
                Err(err) => {
                    tracing::warn!(
                        "cannot refetch the issuer's keys from {}, keeping those it had: {err:#}",
                        self.uri
                    );
                    now.keys.clone()
                }
            };
            *self.current.write() = Arc::new(KeySet {
                keys,
                fetched: Instant::now(),
                generation: now.generation + 1,
            });
        }
        let current = self.current.read().clone();
        current.pick(kid)
    }
}

/// The keys of the set at `uri` that may verify signatures: those that
/// `jsonwebtoken` reads and that are not for encryption only.
async fn signing_keys(http: &reqwest::Client, uri: &url::Url) -> anyhow::Result<Vec<Jwk>> {
    let document = fetch_json(http, uri.as_str()).await?;
    let items = document
        .get("keys")
        .and_then(Value::as_array)
        .ok_or_else(|| anyhow!("the document has no `keys` list"))?;
    // Each key on its own: one the crate cannot read (a new key type)
    // must not make the whole set unreadable.
    let keys: Vec<Jwk> = items
        .iter()
        .filter_map(|k| serde_json::from_value::<Jwk>(k.clone()).ok())
        .filter(|k| !matches!(k.common.public_key_use, Some(PublicKeyUse::Encryption)))
        .collect();
    Ok(keys)
}

#[cfg(test)]
mod tests;
