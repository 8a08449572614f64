//! The validator against an issuer served on loopback by the test (its
//! metadata and a JWKS it can rotate), with tokens signed by
//! `jsonwebtoken`: one `check(token, expect)` per rule, key rotation, and
//! the refetch rate limit. The two RSA keys beside this file exist only
//! for these tests.

use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use base64::Engine as _;
use jsonwebtoken::{EncodingKey, Header};
use serde_json::json;

use super::*;

const KEY_1: &str = include_str!("test-key-1.pem");
const KEY_2: &str = include_str!("test-key-2.pem");
const RESOURCE: &str = "http://127.0.0.1:8811/mcp";

/// The issuer's state: which keys its JWKS lists, and how often it was read.
#[derive(Debug, Default)]
struct Issuer {
    url: parking_lot::Mutex<String>,
    keys: parking_lot::Mutex<Vec<Value>>,
    fetches: AtomicUsize,
}

fn public_jwk(pem: &str, kid: &str) -> Value {
    let key = EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap();
    let mut jwk = Jwk::from_encoding_key(&key, Algorithm::RS256).unwrap();
    jwk.common.key_id = Some(kid.to_string());
    serde_json::to_value(jwk).unwrap()
}

/// Serves `issuer` on a loopback port until the test ends; its URL.
async fn serve(issuer: Arc<Issuer>) -> String {
    let app = Router::new()
        .route(
            "/.well-known/oauth-authorization-server",
            get(async |State(i): State<Arc<Issuer>>| {
                let url = i.url.lock().clone();
                json!({"issuer": url, "jwks_uri": format!("{url}/jwks")}).to_string()
            }),
        )
        .route(
            "/jwks",
            get(async |State(i): State<Arc<Issuer>>| {
                i.fetches.fetch_add(1, Ordering::SeqCst);
                json!({"keys": *i.keys.lock()}).to_string()
            }),
        )
        .with_state(issuer.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    *issuer.url.lock() = url.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let service = hyper_util::service::TowerToHyperService::new(app.clone());
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
            );
        }
    });
    url
}

/// The resource server for an issuer listing key 1 as `k1`.
async fn resource_server() -> (OAuth, Arc<Issuer>) {
    let issuer = Arc::new(Issuer::default());
    issuer.keys.lock().push(public_jwk(KEY_1, "k1"));
    let url = serve(issuer.clone()).await;
    let yaml = format!(
        "version: 1\ngateway:\n  auth:\n    oauth:\n      issuer: {url}\n      resource: {RESOURCE}\n      scopes: [mcp]\n      jwks_refresh: 50ms\n      profiles:\n        admin: {{ scope: mcp.admin }}\n        ci: {{ claim: groups, value: ci }}\nservers:\n  s: {{ image: img:dev }}\nprofiles:\n  admin: {{ tools: ['*'] }}\n  ci: {{ tools: [s__echo] }}\n"
    );
    let catalog =
        mcpgw_catalog::parse(&yaml, std::path::Path::new("t.yaml"), &std::env::temp_dir()).unwrap();
    let spec = catalog.gateway.auth.oauth.unwrap();
    crate::install_tls_provider();
    (OAuth::discover(&spec).await.unwrap(), issuer)
}

fn now() -> i64 {
    i64::try_from(jsonwebtoken::get_current_timestamp()).unwrap()
}

/// Claims for a good token from `issuer`, changed by `edit`.
fn claims(issuer: &str, edit: impl FnOnce(&mut Map<String, Value>)) -> Value {
    let mut claims = json!({
        "iss": issuer, "aud": RESOURCE, "sub": "alice", "client_id": "desk",
        "exp": now() + 300, "iat": now(), "scope": "mcp", "groups": ["ci"],
    });
    edit(claims.as_object_mut().unwrap());
    claims
}

fn sign(pem: &str, kid: &str, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.to_string());
    jsonwebtoken::encode(
        &header,
        claims,
        &EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
    )
    .unwrap()
}

/// A token whose header is `header`, unsigned or signed as the caller
/// forges it.
fn forged(header: &Value, claims: &Value, signature: &[u8]) -> String {
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    format!(
        "{}.{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes()),
        b64(signature)
    )
}

#[track_caller]
fn refused(got: Result<Identity, Refusal>, expect: &str) {
    match got {
        Err(Refusal::Invalid(reason)) => assert!(reason.contains(expect), "{reason}"),
        other => panic!("expected a 401 for `{expect}`, got {other:?}"),
    }
}

#[tokio::test]
async fn each_rule_accepts_or_refuses_with_its_reason() {
    let (oauth, issuer) = resource_server().await;
    let url = issuer.url.lock().clone();
    let good = claims(&url, |_| {});
    assert_eq!(
        oauth.check(&sign(KEY_1, "k1", &good)).await,
        Ok(Identity {
            sub: "alice".into(),
            client_id: Some("desk".into()),
            profile: Some("ci".into()),
        })
    );
    for (edit, expect) in [
        (
            Box::new(|c: &mut Map<String, Value>| {
                c.insert("aud".into(), json!("http://127.0.0.1:9999/mcp"));
            }) as Box<dyn Fn(&mut Map<String, Value>)>,
            "audience does not name http://127.0.0.1:8811/mcp",
        ),
        (
            Box::new(|c| {
                c.insert("exp".into(), json!(now() - 120));
            }),
            "expired",
        ),
        (
            Box::new(|c| {
                c.insert("nbf".into(), json!(now() + 120));
            }),
            "not valid yet",
        ),
        (
            Box::new(|c| {
                c.insert("iss".into(), json!("http://127.0.0.1:1/other"));
            }),
            "another issuer",
        ),
        (
            Box::new(|c| {
                c.remove("aud");
            }),
            "no `aud`",
        ),
    ] {
        refused(
            oauth.check(&sign(KEY_1, "k1", &claims(&url, edit))).await,
            expect,
        );
    }
    // Within the leeway (30 s) an expired token still passes.
    let late = claims(&url, |c| {
        c.insert("exp".into(), json!(now() - 5));
    });
    assert!(oauth.check(&sign(KEY_1, "k1", &late)).await.is_ok());
    // Signed by a key the issuer does not publish, under its kid or another.
    refused(
        oauth.check(&sign(KEY_2, "k1", &good)).await,
        "signature does not verify",
    );
    refused(
        oauth.check(&sign(KEY_2, "k9", &good)).await,
        "not one the issuer publishes",
    );
    // `none`, and HS256 keyed with the issuer's public key.
    refused(
        oauth
            .check(&forged(&json!({"alg": "none", "kid": "k1"}), &good, b""))
            .await,
        "not a JWT signed with an algorithm",
    );
    let public = public_jwk(KEY_1, "k1");
    let hs = jsonwebtoken::encode(
        &Header {
            kid: Some("k1".into()),
            ..Header::new(Algorithm::HS256)
        },
        &good,
        &EncodingKey::from_secret(public["n"].as_str().unwrap().as_bytes()).unwrap(),
    )
    .unwrap();
    refused(oauth.check(&hs).await, "algorithm HS256 is not accepted");
    refused(oauth.check("not.a.token").await, "not a JWT");
}

#[tokio::test]
async fn scopes_and_claims_select_profiles_or_are_refused_with_403() {
    let (oauth, issuer) = resource_server().await;
    let url = issuer.url.lock().clone();
    let check = async |edit: &dyn Fn(&mut Map<String, Value>)| {
        oauth
            .check(&sign(KEY_1, "k1", &claims(&url, edit)))
            .await
            .map(|i| i.profile)
    };
    // The first rule that matches wins; `scp` lists count as scopes.
    let admin = |c: &mut Map<String, Value>| {
        c.insert("scope".into(), json!("mcp mcp.admin"));
    };
    assert_eq!(check(&admin).await, Ok(Some("admin".into())));
    let scp = |c: &mut Map<String, Value>| {
        c.remove("scope");
        c.insert("scp".into(), json!(["mcp", "mcp.admin"]));
    };
    assert_eq!(check(&scp).await, Ok(Some("admin".into())));
    let no_scope = |c: &mut Map<String, Value>| {
        c.insert("scope".into(), json!("other"));
    };
    assert!(matches!(
        check(&no_scope).await,
        Err(Refusal::Insufficient { scope, reason }) if scope == "mcp" && reason.contains("lacks scope mcp")
    ));
    let no_profile = |c: &mut Map<String, Value>| {
        c.insert("groups".into(), json!(["staff"]));
    };
    assert!(matches!(
        check(&no_profile).await,
        Err(Refusal::Insufficient { reason, .. }) if reason.contains("no profile")
    ));
}

#[tokio::test]
async fn a_rotated_key_is_fetched_once_however_many_ask() {
    let (oauth, issuer) = resource_server().await;
    let url = issuer.url.lock().clone();
    assert_eq!(issuer.fetches.load(Ordering::SeqCst), 1, "fetched at start");
    *issuer.keys.lock() = vec![public_jwk(KEY_2, "k2")];
    let rotated = sign(KEY_2, "k2", &claims(&url, |_| {}));
    let bogus: Vec<String> = (0..8)
        .map(|n| sign(KEY_2, &format!("made-up-{n}"), &claims(&url, |_| {})))
        .collect();
    let (good, bad) = tokio::join!(
        oauth.check(&rotated),
        futures::future::join_all(bogus.iter().map(|t| oauth.check(t))),
    );
    assert!(good.is_ok(), "{good:?}");
    assert!(bad.iter().all(Result::is_err));
    // Nine requests for keys the cache lacked; each waited for at most
    // one fetch that began after it arrived, and the fetches were spaced.
    assert_eq!(
        issuer.fetches.load(Ordering::SeqCst),
        2,
        "one refetch for all nine"
    );
    // The old key is gone from the issuer, and so from the gateway.
    refused(
        oauth.check(&sign(KEY_1, "k1", &claims(&url, |_| {}))).await,
        "not one the issuer publishes",
    );
    assert_eq!(issuer.fetches.load(Ordering::SeqCst), 3);
}

#[test]
fn the_metadata_is_published_under_the_resource_path() {
    for (resource, expect) in [
        (
            "https://gw.example/mcp",
            "https://gw.example/.well-known/oauth-protected-resource/mcp",
        ),
        (
            "http://127.0.0.1:8811/",
            "http://127.0.0.1:8811/.well-known/oauth-protected-resource",
        ),
        (
            "https://gw.example:8443/team/mcp",
            "https://gw.example:8443/.well-known/oauth-protected-resource/team/mcp",
        ),
    ] {
        assert_eq!(metadata_url(resource).unwrap(), expect);
    }
}
