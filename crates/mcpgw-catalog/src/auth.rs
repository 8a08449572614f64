//! `gateway.auth`: how the HTTP front authenticates clients beyond its own
//! token store. Today that is `oauth`, the gateway as an OAuth 2.1
//! resource server: which issuer it trusts, the resource URL its tokens
//! must name, the scopes they need, and how their claims map to profiles.
//!
//! Only the shape and its local checks live here (URLs well formed and
//! `https` off loopback, algorithms from the asymmetric allowlist, mapped
//! profiles defined in `profiles:`); fetching the issuer's metadata and
//! keys, and validating tokens, is the binary's (`crates/mcpgw/src/oauth`).

use std::time::Duration;

use serde::Deserialize;

use crate::de::{UniqueMap, deserialize_checked};
use crate::error::invalid;
use crate::names::ProfileName;
use crate::units::CatalogDuration;

/// `gateway.auth`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthSpec {
    /// The OAuth resource server, when configured (`--auth oauth` uses it).
    pub oauth: Option<OAuthSpec>,
}

/// `gateway.auth.oauth`: JWT access tokens from one issuer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthSpec {
    /// The authorization server's issuer identifier, exactly as written
    /// (tokens' `iss` is compared with it as a string); its metadata is
    /// discovered from it (RFC 8414, else OpenID Connect discovery).
    pub issuer: String,
    /// This gateway's resource URL (RFC 8707, RFC 9728), exactly as
    /// written: the audience every accepted token must name, as clients
    /// reach `/mcp`.
    pub resource: String,
    /// Scopes every token must carry (all of them); a token without one
    /// is refused with 403 `insufficient_scope`.
    pub scopes: Vec<String>,
    /// The signature algorithms accepted, by JOSE name (asymmetric only).
    pub algorithms: Vec<String>,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway: Duration,
    /// The shortest time between two fetches of the issuer's keys (a
    /// token naming an unknown key waits for the next allowed one).
    pub jwks_refresh: Duration,
    /// Which profile a token's claims select, in the order written: the
    /// first rule that matches wins.
    pub profiles: Vec<ProfileRule>,
    /// The profile of a token no rule matches; without one, such a token
    /// is refused (403).
    pub default_profile: Option<String>,
}

impl OAuthSpec {
    /// Every scope the catalog names (required or mapped), for the
    /// protected resource metadata's `scopes_supported`.
    pub fn scopes_supported(&self) -> Vec<String> {
        let mut scopes = self.scopes.clone();
        for rule in &self.profiles {
            if let Claim::Scope(scope) = &rule.when
                && !scopes.contains(scope)
            {
                scopes.push(scope.clone());
            }
        }
        scopes
    }
}

/// One entry of `gateway.auth.oauth.profiles`: a profile and the claim
/// that selects it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileRule {
    /// The catalog profile (defined under `profiles:`).
    pub profile: String,
    /// What the token must carry.
    pub when: Claim,
}

/// What a token must carry for a [`ProfileRule`] to match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This scope, in `scope` (space-separated) or `scp` (a list).
    Scope(String),
    /// The claim `name` equal to `value`, or a list holding it.
    Value {
        /// The claim's name, such as `groups` or `roles`.
        name: String,
        /// The value it must have or hold.
        value: String,
    },
}

/// Asymmetric JOSE algorithms: the only ones a resource server checking
/// an issuer's public keys may accept. `none` and `HS*` (a shared secret,
/// which would make anyone holding the public key able to sign) are not.
const ALGORITHMS: &[&str] = &[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];

/// The default allowlist: what identity providers sign access tokens with.
const DEFAULT_ALGORITHMS: &[&str] = &["RS256", "PS256", "ES256", "EdDSA"];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    oauth: Option<OAuthSpec>,
}

impl<'de> Deserialize<'de> for AuthSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = RawAuth::deserialize(d)?;
        Ok(Self { oauth: raw.oauth })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOAuth {
    issuer: HttpsUrl,
    resource: HttpsUrl,
    #[serde(default)]
    scopes: Vec<Scope>,
    algorithms: Option<Vec<Algorithm>>,
    leeway: Option<CatalogDuration>,
    jwks_refresh: Option<CatalogDuration>,
    #[serde(default)]
    profiles: UniqueMap<KnownProfile, RawRule>,
    default_profile: Option<KnownProfile>,
}

impl<'de> Deserialize<'de> for OAuthSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = RawOAuth::deserialize(d)?;
        Ok(Self {
            issuer: raw.issuer.0,
            resource: raw.resource.0,
            scopes: raw.scopes.into_iter().map(|s| s.0).collect(),
            algorithms: raw.algorithms.map_or_else(
                || DEFAULT_ALGORITHMS.iter().map(ToString::to_string).collect(),
                |a| a.into_iter().map(|a| a.0).collect(),
            ),
            leeway: raw.leeway.map_or(Duration::from_secs(30), |d| d.0),
            jwks_refresh: raw.jwks_refresh.map_or(Duration::from_secs(10), |d| d.0),
            profiles: raw
                .profiles
                .0
                .into_iter()
                .map(|(name, rule)| ProfileRule {
                    profile: name.0,
                    when: rule.when,
                })
                .collect(),
            default_profile: raw.default_profile.map(|p| p.0),
        })
    }
}

/// A profile rule as written: `{ scope: S }` or `{ claim: C, value: V }`.
#[derive(Debug)]
struct RawRule {
    when: Claim,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRuleFields {
    scope: Option<Scope>,
    claim: Option<ClaimName>,
    value: Option<String>,
}

impl<'de> Deserialize<'de> for RawRule {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = RawRuleFields::deserialize(d)?;
        let when = match (raw.scope, raw.claim, raw.value) {
            (Some(scope), None, None) => Claim::Scope(scope.0),
            (None, Some(name), Some(value)) => Claim::Value {
                name: name.0,
                value,
            },
            _ => {
                return Err(serde::de::Error::custom(invalid(
                    "a profile rule names either a scope or a claim and its value",
                    "write `{ scope: NAME }` or `{ claim: groups, value: NAME }`",
                )));
            }
        };
        Ok(Self { when })
    }
}

/// A profile the catalog defines under `profiles:`, checked against the
/// names [`crate::volume::profile_defined`] knows from the whole file, so
/// the error is positioned where the name is written.
#[derive(Debug, PartialEq)]
struct KnownProfile(String);

impl std::fmt::Display for KnownProfile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for KnownProfile {
    type Error = String;
    fn try_from(name: String) -> Result<Self, String> {
        let name = ProfileName::try_from(name)?.0;
        known_profile(&name)?;
        Ok(Self(name))
    }
}
deserialize_checked!(KnownProfile, str);

fn known_profile(name: &str) -> Result<(), String> {
    if crate::volume::profile_defined(name) == Some(false) {
        return Err(invalid(
            format_args!("profile `{name}` is not defined"),
            format_args!("add `{name}` under `profiles:`, or name a profile defined there"),
        ));
    }
    Ok(())
}

/// A URL an OAuth party is reached at: absolute, no fragment, `https`
/// unless the host is loopback (a test or a sidecar). Kept as written:
/// parsing would normalise it (a trailing `/`), and identifiers are
/// compared as strings.
#[derive(Debug)]
struct HttpsUrl(String);

impl TryFrom<String> for HttpsUrl {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        let url = url::Url::parse(&text).map_err(|e| {
            invalid(
                format_args!("`{text}` is not a URL: {e}"),
                "write an absolute URL, such as `https://idp.example.com/realms/mcp`",
            )
        })?;
        let loopback = match url.host() {
            Some(url::Host::Domain(d)) => d == "localhost",
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        };
        let https = url.scheme() == "https";
        if !(https || (url.scheme() == "http" && loopback)) || url.host().is_none() {
            return Err(invalid(
                format_args!("`{text}` is not an https URL"),
                "use `https://`; plain `http://` is accepted only on a loopback host",
            ));
        }
        if url.fragment().is_some() || url.query().is_some() {
            return Err(invalid(
                format_args!("`{text}` has a query or a fragment"),
                "remove everything from `?` or `#` on",
            ));
        }
        Ok(Self(text))
    }
}
deserialize_checked!(HttpsUrl, str);

/// A scope: a non-empty token of printable ASCII without spaces or quotes
/// (RFC 6749, section 3.3).
#[derive(Debug)]
struct Scope(String);

impl TryFrom<String> for Scope {
    type Error = String;
    fn try_from(scope: String) -> Result<Self, String> {
        let ok = !scope.is_empty()
            && scope
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\');
        if !ok {
            return Err(invalid(
                format_args!("`{scope}` is not a scope"),
                "write one scope per entry, without spaces or quotes",
            ));
        }
        Ok(Self(scope))
    }
}
deserialize_checked!(Scope, str);

/// A claim name a rule may test; the registered claims that hold no
/// user attributes are refused, since matching them grants nothing useful.
#[derive(Debug)]
struct ClaimName(String);

impl TryFrom<String> for ClaimName {
    type Error = String;
    fn try_from(name: String) -> Result<Self, String> {
        if matches!(
            name.as_str(),
            "" | "exp" | "nbf" | "iat" | "iss" | "aud" | "jti"
        ) {
            return Err(invalid(
                format_args!("claim `{name}` cannot select a profile"),
                "name a claim the issuer sets per user or client, such as `groups`, `roles`, `sub` or `client_id`",
            ));
        }
        Ok(Self(name))
    }
}
deserialize_checked!(ClaimName, str);

/// An algorithm from the asymmetric allowlist.
#[derive(Debug)]
struct Algorithm(String);

impl TryFrom<String> for Algorithm {
    type Error = String;
    fn try_from(name: String) -> Result<Self, String> {
        if ALGORITHMS.contains(&name.as_str()) {
            return Ok(Self(name));
        }
        let why = if name.eq_ignore_ascii_case("none") {
            "`none` means no signature".to_string()
        } else if name.starts_with("HS") {
            format!(
                "`{name}` is a shared-secret algorithm: with it, anyone holding the issuer's public key could sign tokens"
            )
        } else {
            format!("algorithm `{name}` is not known")
        };
        Err(invalid(
            why,
            format_args!("use asymmetric algorithms: {}", ALGORITHMS.join(", ")),
        ))
    }
}
deserialize_checked!(Algorithm, str);
