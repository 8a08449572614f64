//! A remote server (`url:` in place of `image:`): the MCP endpoint it is
//! reached at over Streamable HTTP, the credentials the gateway presents
//! to it (headers built from secrets, or an OAuth client-credentials
//! grant), and the SSRF policy: which addresses it may be reached at.
//!
//! Only the shape, its local checks and the address classifier live here
//! (pure: no DNS, no network). Resolving the host, checking each address
//! the connection uses and fetching tokens is `mcpgw-backend`'s
//! (`remote.rs`), which asks [`RemoteSpec::admits`] about every address.

use std::net::IpAddr;

use serde::Deserialize;

use crate::de::{UniqueMap, deserialize_checked};
use crate::error::invalid;
use crate::ip::{AddressClass, classify};
use crate::names::SecretName;

/// How a remote server is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteSpec {
    /// The MCP endpoint (`https://…/mcp`).
    pub url: url::Url,
    /// Headers sent with every request, in the order written.
    pub headers: Vec<(String, HeaderSpec)>,
    /// An OAuth client-credentials grant whose access token is sent as
    /// `Authorization: Bearer …`.
    pub oauth: Option<ClientCredentials>,
    /// Whether loopback, private, CGNAT, link-local and unique-local
    /// addresses may be reached (and plain `http` on loopback).
    pub allow_private: bool,
}

/// One header's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderSpec {
    /// Sent as written.
    Plain(String),
    /// A secret's value, put in place of the `{}` of `format`.
    Secret {
        /// The secret's name in the secret sources.
        name: SecretName,
        /// The value's shape, holding `{}` once (`"Bearer {}"`); `{}` alone
        /// by default.
        format: String,
    },
}

impl HeaderSpec {
    /// The secret this header is built from, if any.
    pub fn secret(&self) -> Option<&SecretName> {
        match self {
            Self::Plain(_) => None,
            Self::Secret { name, .. } => Some(name),
        }
    }
}

/// `oauth.client_credentials`: the gateway's own identity at the remote's
/// authorization server (RFC 6749, section 4.4), never the client's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCredentials {
    /// The authorization server's token endpoint.
    pub token_url: url::Url,
    /// The gateway's client identifier there.
    pub client_id: String,
    /// The secret holding the client secret (sent with HTTP Basic).
    pub client_secret: SecretName,
    /// The scopes asked for; none: the server's default.
    pub scopes: Vec<String>,
    /// The RFC 8707 `resource` asked for: the remote's URL unless written.
    pub resource: Option<String>,
}

impl RemoteSpec {
    /// Every secret this server's credentials are built from.
    pub fn secret_names(&self) -> Vec<&SecretName> {
        let mut names: Vec<&SecretName> = self
            .headers
            .iter()
            .filter_map(|(_, h)| h.secret())
            .collect();
        if let Some(oauth) = &self.oauth {
            names.push(&oauth.client_secret);
        }
        names
    }

    /// Whether the gateway may connect to `ip` for this server (or for its
    /// token endpoint); the refusal says why and what would allow it.
    ///
    /// # Errors
    ///
    /// The address's class, when the policy refuses it.
    pub fn admits(&self, ip: IpAddr, scheme: &str) -> Result<(), String> {
        let class = classify(ip);
        if class == AddressClass::Public {
            return if scheme == "https" {
                Ok(())
            } else {
                Err(format!(
                    "{ip} is reached over plain `{scheme}`; use `https` (plain `http` is accepted only on loopback with `allow_private: true`)"
                ))
            };
        }
        if !relaxable(class) {
            return Err(format!(
                "{ip} is {}, never reachable from the gateway",
                class.describe()
            ));
        }
        if !self.allow_private {
            return Err(format!(
                "{ip} is {}; set `allow_private: true` on the server if it is meant to be reached there",
                class.describe()
            ));
        }
        if scheme != "https" && class != AddressClass::Loopback {
            return Err(format!(
                "{ip} is {} and reached over plain `{scheme}`; use `https` (plain `http` is accepted only on loopback)",
                class.describe()
            ));
        }
        Ok(())
    }
}

/// Whether `allow_private: true` admits an address of `class`; the
/// metadata endpoints, "this host", multicast and reserved ranges are never
/// admitted.
fn relaxable(class: AddressClass) -> bool {
    matches!(
        class,
        AddressClass::Loopback
            | AddressClass::Private
            | AddressClass::SharedCgnat
            | AddressClass::LinkLocal
            | AddressClass::UniqueLocal
    )
}

/// A remote's URL as written: absolute `http` or `https`, a host, no
/// credentials in it, no fragment. Whether `http` and its host are allowed
/// depends on `allow_private`, checked with the whole entry.
#[derive(Debug)]
pub(crate) struct RemoteUrl(pub(crate) url::Url);

impl TryFrom<String> for RemoteUrl {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        let url = url::Url::parse(&text).map_err(|e| {
            invalid(
                format_args!("`{text}` is not a URL: {e}"),
                "write the server's MCP endpoint, such as `https://mcp.vendor.example/mcp`",
            )
        })?;
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            return Err(invalid(
                format_args!("`{text}` is not an https URL"),
                "write the server's MCP endpoint, such as `https://mcp.vendor.example/mcp`",
            ));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(invalid(
                format_args!("`{text}` carries credentials in the URL"),
                "remove them and send them with `headers` (their values from secrets) or `oauth`",
            ));
        }
        if url.fragment().is_some() {
            return Err(invalid(
                format_args!("`{text}` has a fragment"),
                "remove everything from `#` on",
            ));
        }
        Ok(Self(url))
    }
}
deserialize_checked!(RemoteUrl, str);

/// A header name: an HTTP token, and not one the transport sets itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HeaderName(pub(crate) String);

impl TryFrom<String> for HeaderName {
    type Error = String;
    fn try_from(name: String) -> Result<Self, String> {
        let token = !name.is_empty()
            && name.len() <= 128
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !token {
            return Err(invalid(
                format_args!("header name `{name}` is not an HTTP header name"),
                "use letters, digits and `-`, such as `X-Api-Key`",
            ));
        }
        const OWN: &[&str] = &[
            "accept",
            "content-type",
            "content-length",
            "host",
            "mcp-session-id",
            "mcp-protocol-version",
            "last-event-id",
            "transfer-encoding",
            "connection",
        ];
        if OWN.iter().any(|own| name.eq_ignore_ascii_case(own)) {
            return Err(invalid(
                format_args!("header `{name}` is set by the gateway's transport"),
                "remove it from `headers`",
            ));
        }
        Ok(Self(name))
    }
}
deserialize_checked!(HeaderName, str);

impl std::fmt::Display for HeaderName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A plain header value: visible ASCII and spaces.
#[derive(Debug)]
struct PlainValue(String);

impl TryFrom<String> for PlainValue {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        if value
            .bytes()
            .any(|b| !(b == b' ' || b == b'\t' || b.is_ascii_graphic()))
        {
            return Err(invalid(
                "a header value holds a control or non-ASCII character",
                "write visible ASCII only",
            ));
        }
        Ok(Self(value))
    }
}
deserialize_checked!(PlainValue, str);

/// A secret header's `format`: exactly one `{}`, otherwise a plain value.
#[derive(Debug)]
struct Format(String);

impl TryFrom<String> for Format {
    type Error = String;
    fn try_from(format: String) -> Result<Self, String> {
        if format.matches("{}").count() != 1 {
            return Err(invalid(
                format_args!("header format `{format}` does not hold `{{}}` exactly once"),
                "write where the secret's value goes, such as `Bearer {}`",
            ));
        }
        PlainValue::try_from(format.replace("{}", ""))?;
        Ok(Self(format))
    }
}
deserialize_checked!(Format, str);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSecretHeader {
    secret: SecretName,
    format: Option<Format>,
}

impl<'de> Deserialize<'de> for HeaderSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = HeaderSpec;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a header value, or a mapping with `secret` and `format`")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<HeaderSpec, E> {
                PlainValue::try_from(v.to_string())
                    .map(|p| HeaderSpec::Plain(p.0))
                    .map_err(E::custom)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<HeaderSpec, A::Error> {
                let raw = RawSecretHeader::deserialize(
                    serde::de::value::MapAccessDeserializer::new(map),
                )?;
                Ok(HeaderSpec::Secret {
                    name: raw.secret,
                    format: raw.format.map_or_else(|| "{}".to_string(), |f| f.0),
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// `oauth:` of a remote server.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawOAuth {
    pub(crate) client_credentials: RawClientCredentials,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawClientCredentials {
    token_url: RemoteUrl,
    client_id: ClientId,
    client_secret: SecretName,
    #[serde(default)]
    scopes: Vec<Scope>,
    resource: Option<RemoteUrl>,
}

impl From<RawClientCredentials> for ClientCredentials {
    fn from(raw: RawClientCredentials) -> Self {
        Self {
            token_url: raw.token_url.0,
            client_id: raw.client_id.0,
            client_secret: raw.client_secret,
            scopes: raw.scopes.into_iter().map(|s| s.0).collect(),
            resource: raw.resource.map(|r| r.0.to_string()),
        }
    }
}

/// A client identifier: printable ASCII (RFC 6749, appendix A.1).
#[derive(Debug)]
struct ClientId(String);

impl TryFrom<String> for ClientId {
    type Error = String;
    fn try_from(id: String) -> Result<Self, String> {
        if id.is_empty() || id.bytes().any(|b| !(b == b' ' || b.is_ascii_graphic())) {
            return Err(invalid(
                format_args!("client_id `{id}` is not a client identifier"),
                "copy the client ID the authorization server registered for the gateway",
            ));
        }
        Ok(Self(id))
    }
}
deserialize_checked!(ClientId, str);

/// A scope token (RFC 6749, section 3.3).
#[derive(Debug)]
struct Scope(String);

impl TryFrom<String> for Scope {
    type Error = String;
    fn try_from(scope: String) -> Result<Self, String> {
        if scope.is_empty()
            || scope
                .bytes()
                .any(|b| !b.is_ascii_graphic() || b == b'"' || b == b'\\')
        {
            return Err(invalid(
                format_args!("scope `{scope}` is not a scope"),
                "write one scope per list item, such as `mcp`",
            ));
        }
        Ok(Self(scope))
    }
}
deserialize_checked!(Scope, str);

/// What a server entry wrote about being remote, checked together: a
/// server is a container (`image`) or remote (`url`), never both.
#[derive(Debug, Default)]
pub(crate) struct RawRemote {
    pub(crate) url: Option<RemoteUrl>,
    pub(crate) headers: UniqueMap<HeaderName, HeaderSpec>,
    pub(crate) oauth: Option<RawOAuth>,
    pub(crate) allow_private: Option<bool>,
}

impl RawRemote {
    /// The remote spec, when `url` is written; the remote-only keys
    /// without one are an error.
    pub(crate) fn build(self) -> Result<Option<RemoteSpec>, String> {
        let Some(RemoteUrl(url)) = self.url else {
            let stray = [
                (!self.headers.0.is_empty()).then_some("headers"),
                self.oauth.is_some().then_some("oauth"),
                self.allow_private.is_some().then_some("allow_private"),
            ];
            if let Some(key) = stray.into_iter().flatten().next() {
                return Err(invalid(
                    format_args!("`{key}` applies only to a remote server (one with `url`)"),
                    format_args!("add `url`, or remove `{key}`"),
                ));
            }
            return Ok(None);
        };
        let allow_private = self.allow_private.unwrap_or(false);
        let spec = RemoteSpec {
            url,
            headers: self.headers.0.into_iter().map(|(k, v)| (k.0, v)).collect(),
            oauth: self.oauth.map(|o| o.client_credentials.into()),
            allow_private,
        };
        if spec.oauth.is_some()
            && spec
                .headers
                .iter()
                .any(|(name, _)| name.eq_ignore_ascii_case("authorization"))
        {
            return Err(invalid(
                "`headers` sets `Authorization` and `oauth` sends a token in it too",
                "keep one of them",
            ));
        }
        // What the URLs say about their hosts is known now; names are
        // checked as they resolve, at every connection.
        let mut urls = vec![("url", &spec.url)];
        if let Some(oauth) = &spec.oauth {
            urls.push(("oauth.client_credentials.token_url", &oauth.token_url));
        }
        for (key, url) in urls {
            spec.check_url(url).map_err(|why| {
                invalid(
                    format_args!("`{key}` `{url}` is refused: {why}"),
                    "name a public https endpoint, or set `allow_private: true` for one on a private network",
                )
            })?;
        }
        Ok(Some(spec))
    }
}

impl RemoteSpec {
    /// The checks a URL allows before any lookup: an address written in it
    /// is judged at once; plain `http` needs a loopback host and
    /// `allow_private`.
    ///
    /// # Errors
    ///
    /// Why the URL is refused.
    pub fn check_url(&self, url: &url::Url) -> Result<(), String> {
        let literal = match url.host() {
            Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
            _ => None,
        };
        if let Some(ip) = literal {
            return self.admits(ip, url.scheme());
        }
        if url.scheme() != "https" {
            let localhost = url
                .host_str()
                .is_some_and(|h| h.eq_ignore_ascii_case("localhost"));
            if !(localhost && self.allow_private) {
                return Err(format!(
                    "plain `{}` is accepted only on loopback with `allow_private: true`; use `https`",
                    url.scheme()
                ));
            }
        }
        Ok(())
    }
}
