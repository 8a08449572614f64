//! Secrets end to end, with real containers: each source (a real Secret
//! Service on a private D-Bus, the environment, a directory of files)
//! supplies values; a server receives only what it declares, as an env var
//! or a file; the client and the logs see `[REDACTED:<name>]`, never a
//! value; a missing secret stops the run before any container starts.

#![allow(clippy::print_stderr)]
// Backend logging is deprecated (SEP-2577) but still relayed; it is one of
// the paths a value could take.
#![allow(deprecated)]

mod harness;

use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;

use harness::{Gateway, call, catalog, containers_of, text_of};
use rmcp::model::{LoggingLevel, SetLevelRequestParams};
use serde_json::json;
use tokio::io::AsyncWriteExt as _;

const API: &str = "api-Zx81-Qm4r-Lp20-value";
const FILE_TOKEN: &str = "file-Hh73-Ww12-Kk09-value";

fn secrets_catalog(redaction: &str) -> tempfile::TempDir {
    catalog(&format!(
        "
gateway:
  redaction: {redaction}
servers:
  one:
    image: mcpgw/testserver:dev
    pull: never
    secrets:
      API_TOKEN: api.token
      TOKEN_FILE: {{ secret: file.token, as: file }}
  two:
    image: mcpgw/testserver:dev
    pull: never
"
    ))
}

fn env_source(runtime_dir: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("MCPGW_SECRETS", "env".to_string()),
        ("MCPGW_SECRET_API_TOKEN", API.to_string()),
        ("MCPGW_SECRET_FILE_TOKEN", FILE_TOKEN.to_string()),
        ("XDG_RUNTIME_DIR", runtime_dir.display().to_string()),
    ]
}

/// Every form of a value a careless gateway might let through.
fn forms(value: &str) -> Vec<String> {
    use base64::Engine as _;
    vec![
        value.to_string(),
        value.bytes().map(|b| format!("{b:02x}")).collect(),
        base64::engine::general_purpose::STANDARD.encode(value),
    ]
}

#[track_caller]
fn assert_absent(haystack: &str, what: &str) {
    for value in [API, FILE_TOKEN] {
        for form in forms(value) {
            assert!(
                !haystack.contains(&form),
                "{what} holds a secret value ({form}):\n{haystack}"
            );
        }
    }
}

/// Runs a one-shot `mcpgw` command with `env`, feeding `stdin`.
async fn mcpgw(args: &[&str], env: &[(&str, String)], stdin: &str) -> Output {
    let mut child = harness::mcpgw_command(env)
        .args(args)
        .spawn()
        .expect("the mcpgw binary runs");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).await.unwrap();
    drop(input);
    let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("mcpgw finishes within a minute")
        .unwrap();
    eprintln!(
        "mcpgw {args:?}: {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn stderr_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn stdout_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn env_source_injects_declared_secrets_and_nothing_leaks_at_trace_level() {
    let dir = secrets_catalog("redact");
    let runtime = tempfile::tempdir().unwrap();
    let mut env = env_source(runtime.path());
    env.push(("MCPGW_LOG", "trace".to_string()));
    let gw = Gateway::start_with_env(&dir.path().join("catalog.yaml"), &env).await;
    let text = async |name: &str, args: serde_json::Value| {
        text_of(&gw.client.call_tool(call(name, args)).await.unwrap())
    };

    // The value reached the container: the redactor matched it exactly.
    assert_eq!(
        text("one__env", json!({"name": "API_TOKEN"})).await,
        "[REDACTED:api.token]"
    );
    assert_eq!(
        text("one__env", json!({"name": "TOKEN_FILE"})).await,
        "/run/secrets/file.token"
    );
    assert_eq!(
        text("one__read_file", json!({"path": "/run/secrets/file.token"})).await,
        "[REDACTED:file.token]"
    );
    // The host keeps no copy once the container has started.
    let left: Vec<_> = walk(runtime.path());
    assert!(left.is_empty(), "staged secret files left: {left:?}");
    // A server receives only the secrets it declares; the gateway's own
    // environment does not pass through.
    for (server, name) in [
        ("two", "API_TOKEN"),
        ("two", "TOKEN_FILE"),
        ("one", "MCPGW_SECRET_API_TOKEN"),
    ] {
        let result = gw
            .client
            .call_tool(call(&format!("{server}__env"), json!({ "name": name })))
            .await
            .unwrap();
        assert_eq!(result.is_error, Some(true), "{server} sees {name}");
    }
    let unreadable = gw
        .client
        .call_tool(call(
            "two__read_file",
            json!({"path": "/run/secrets/file.token"}),
        ))
        .await
        .unwrap();
    assert_eq!(unreadable.is_error, Some(true));

    // Every place a value can travel to the client.
    gw.client
        .set_level(SetLevelRequestParams::new(LoggingLevel::Debug))
        .await
        .unwrap();
    let leaked = gw
        .client
        .call_tool(call("one__leak", json!({"name": "API_TOKEN"})))
        .await
        .unwrap();
    let shown = serde_json::to_string(&leaked).unwrap();
    assert!(shown.contains("text says [REDACTED:api.token]"), "{shown}");
    assert!(shown.contains("hex says [REDACTED:api.token]"), "{shown}");
    assert!(
        shown.contains("resource says [REDACTED:api.token]"),
        "{shown}"
    );
    assert_eq!(
        leaked.structured_content.unwrap()["value"],
        "[REDACTED:api.token]"
    );
    let error = gw
        .client
        .call_tool(call(
            "one__leak",
            json!({"name": "API_TOKEN", "as_error": true}),
        ))
        .await
        .expect_err("as_error makes the tool fail");
    assert!(
        error
            .to_string()
            .contains("error says [REDACTED:api.token]"),
        "{error}"
    );

    // A server's own secret may go to it; another server's may not.
    assert_eq!(
        text("one__echo", json!({ "text": API })).await,
        "[REDACTED:api.token]"
    );
    let refused = gw
        .client
        .call_tool(call("two__echo", json!({ "text": format!("take {API}") })))
        .await
        .expect_err("another server's secret is refused");
    assert!(
        refused.to_string().contains("`api.token`")
            && refused.to_string().contains("server `two` is not given"),
        "{refused}"
    );
    let stats = gw
        .client
        .call_tool(call("two__stats", json!({})))
        .await
        .unwrap();
    assert_eq!(
        stats.structured_content.unwrap().get("echo"),
        None,
        "the refused call never reached `two`"
    );

    // Backend stderr is logged, and redacted, too.
    gw.wait_for_log("stderr says [REDACTED:api.token]", Duration::from_secs(5))
        .await;
    let pid = gw.pid();
    let client_bytes = gw.client_bytes_so_far();
    let log = gw.stderr_so_far();
    assert!(log.contains("TRACE"), "the log ran at trace level:\n{log}");
    assert!(gw.stop_with_eof().await.success());
    assert_absent(&client_bytes, "what the client received");
    assert_absent(&log, "the gateway's log");
    assert!(containers_of(pid).await.is_empty());
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(walk(&path));
        } else {
            found.push(path);
        }
    }
    found
}

#[tokio::test]
async fn block_mode_fails_what_redaction_would_change() {
    let dir = secrets_catalog("block");
    let runtime = tempfile::tempdir().unwrap();
    let gw = Gateway::start_with_env(
        &dir.path().join("catalog.yaml"),
        &env_source(runtime.path()),
    )
    .await;
    let error = gw
        .client
        .call_tool(call("one__env", json!({"name": "API_TOKEN"})))
        .await
        .expect_err("a result carrying a value is withheld");
    assert!(
        error
            .to_string()
            .contains("withheld this response: it carried the value of secret `api.token`"),
        "{error}"
    );
    // Calls that carry nothing secret are untouched.
    assert_eq!(
        text_of(
            &gw.client
                .call_tool(call("one__echo", json!({"text": "plain"})))
                .await
                .unwrap()
        ),
        "plain"
    );
    let client_bytes = gw.client_bytes_so_far();
    let log = gw.stderr_so_far();
    assert!(gw.stop_with_eof().await.success());
    assert_absent(&client_bytes, "what the client received");
    assert_absent(&log, "the gateway's log");
}

#[tokio::test]
async fn file_source_reads_one_file_per_secret() {
    let dir = secrets_catalog("redact");
    let values = tempfile::tempdir().unwrap();
    std::fs::write(values.path().join("api.token"), format!("{API}\n")).unwrap();
    std::fs::write(values.path().join("file.token"), FILE_TOKEN).unwrap();
    let gw = Gateway::start_with_env(
        &dir.path().join("catalog.yaml"),
        &[("MCPGW_SECRETS", format!("file:{}", values.path().display()))],
    )
    .await;
    for (name, expect) in [
        ("one__env", "[REDACTED:api.token]"),
        ("one__read_file", "[REDACTED:file.token]"),
    ] {
        let args = if name == "one__env" {
            json!({"name": "API_TOKEN"})
        } else {
            json!({"path": "/run/secrets/file.token"})
        };
        assert_eq!(
            text_of(&gw.client.call_tool(call(name, args)).await.unwrap()),
            expect
        );
    }
    let client_bytes = gw.client_bytes_so_far();
    assert!(gw.stop_with_eof().await.success());
    assert_absent(&client_bytes, "what the client received");
}

#[tokio::test]
async fn missing_secrets_stop_the_run_before_any_container_starts() {
    let dir = secrets_catalog("redact");
    let catalog = dir.path().join("catalog.yaml");
    let catalog = catalog.to_str().unwrap();
    let values = tempfile::tempdir().unwrap();
    let output = mcpgw(
        &["run", "--catalog", catalog],
        &[
            (
                "MCPGW_SECRETS",
                format!("keyring,env,file:{}", values.path().display()),
            ),
            // A bus that is not there: the keyring is skipped, with why.
            (
                "DBUS_SESSION_BUS_ADDRESS",
                "unix:path=/nonexistent/mcpgw-test-bus".to_string(),
            ),
            ("MCPGW_SECRET_FILE_TOKEN", String::new()),
        ],
        "",
    )
    .await;
    assert_eq!(output.status.code(), Some(2), "a missing secret exits 2");
    let log = stderr_of(&output);
    let expected = [
        "2 secret(s) missing from every source",
        "nothing was started",
        "`api.token`, needed by server `one` (as API_TOKEN); fix: run `mcpgw secret set api.token`, or export MCPGW_SECRET_API_TOKEN, or write the value to",
        "`file.token`, needed by server `one` (as TOKEN_FILE)",
        "`MCPGW_SECRET_FILE_TOKEN` is set but empty",
        "the OS keyring (Secret Service) is unavailable",
    ];
    for needle in expected {
        assert!(log.contains(needle), "missing {needle:?} in:\n{log}");
    }
    assert!(!log.contains("container started"), "{log}");
    assert!(
        stdout_of(&output).is_empty(),
        "nothing on the protocol stream"
    );
}

/// A private session bus with an unlocked gnome-keyring on it: a real
/// Secret Service that touches nothing of the user's.
struct SecretService {
    bus: std::process::Child,
    keyring: std::process::Child,
    address: String,
    _home: tempfile::TempDir,
}

impl SecretService {
    fn start() -> Self {
        use std::io::{BufRead as _, Write as _};
        let home = tempfile::tempdir().unwrap();
        let mut bus = std::process::Command::new("dbus-daemon")
            .args(["--session", "--nofork", "--print-address=1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("dbus-daemon runs (Debian's dbus-daemon package; `make test` installs it)");
        let mut address = String::new();
        std::io::BufReader::new(bus.stdout.take().unwrap())
            .read_line(&mut address)
            .unwrap();
        let address = address.trim().to_string();
        assert!(address.starts_with("unix:"), "bus address {address:?}");
        let mut keyring = std::process::Command::new("gnome-keyring-daemon")
            .args(["--foreground", "--unlock", "--components=secrets"])
            .env("DBUS_SESSION_BUS_ADDRESS", &address)
            .env("HOME", home.path())
            .env("XDG_DATA_HOME", home.path().join("data"))
            .env("XDG_RUNTIME_DIR", home.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("gnome-keyring-daemon runs (Debian's gnome-keyring package; `make test` installs it)");
        // The password of the new login keyring, which --unlock creates.
        let mut stdin = keyring.stdin.take().unwrap();
        stdin.write_all(b"mcpgw-test-password").unwrap();
        drop(stdin);
        let service = Self {
            bus,
            keyring,
            address,
            _home: home,
        };
        service.wait_until_served();
        service
    }

    fn wait_until_served(&self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let reply = std::process::Command::new("dbus-send")
                .args([
                    &format!("--bus={}", self.address),
                    "--dest=org.freedesktop.DBus",
                    "--print-reply",
                    "/org/freedesktop/DBus",
                    "org.freedesktop.DBus.NameHasOwner",
                    "string:org.freedesktop.secrets",
                ])
                .output()
                .expect("dbus-send runs");
            if String::from_utf8_lossy(&reply.stdout).contains("boolean true") {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "gnome-keyring did not take org.freedesktop.secrets within 10s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("DBUS_SESSION_BUS_ADDRESS", self.address.clone()),
            ("MCPGW_SECRETS", "keyring".to_string()),
        ]
    }
}

impl Drop for SecretService {
    fn drop(&mut self) {
        let _ = self.keyring.kill();
        let _ = self.bus.kill();
        let _ = self.keyring.wait();
        let _ = self.bus.wait();
    }
}

#[tokio::test]
async fn secret_service_keyring_set_run_redact_rm() {
    let service = SecretService::start();
    let env = service.env();
    let dir = secrets_catalog("redact");
    let catalog = dir.path().join("catalog.yaml");
    let catalog_arg = catalog.to_str().unwrap();

    let set = mcpgw(&["secret", "set", "api.token"], &env, &format!("{API}\n")).await;
    assert!(set.status.success());
    assert!(stdout_of(&set).contains("stored secret `api.token` in the OS keyring"));
    let listed = mcpgw(&["secret", "ls", "--catalog", catalog_arg], &env, "").await;
    assert!(listed.status.success());
    let listing = stdout_of(&listed);
    assert!(
        listing.contains("api.token") && listing.contains("`one` (as API_TOKEN)"),
        "{listing}"
    );
    assert!(
        listing.contains("file.token") && listing.contains("mcpgw secret set file.token"),
        "the catalog's missing secret is listed with its fix: {listing}"
    );
    let set = mcpgw(&["secret", "set", "file.token"], &env, FILE_TOKEN).await;
    assert!(set.status.success());
    for output in [&set, &listed] {
        assert_absent(&stdout_of(output), "`mcpgw secret` output");
        assert_absent(&stderr_of(output), "`mcpgw secret` log");
    }

    let gw = Gateway::start_with_env(&catalog, &env).await;
    assert_eq!(
        text_of(
            &gw.client
                .call_tool(call("one__env", json!({"name": "API_TOKEN"})))
                .await
                .unwrap()
        ),
        "[REDACTED:api.token]"
    );
    assert_eq!(
        text_of(
            &gw.client
                .call_tool(call(
                    "one__read_file",
                    json!({"path": "/run/secrets/file.token"})
                ))
                .await
                .unwrap()
        ),
        "[REDACTED:file.token]"
    );
    let client_bytes = gw.client_bytes_so_far();
    let log = gw.stderr_so_far();
    assert!(gw.stop_with_eof().await.success());
    assert_absent(&client_bytes, "what the client received");
    assert_absent(&log, "the gateway's log");

    let removed = mcpgw(&["secret", "rm", "api.token"], &env, "").await;
    assert!(removed.status.success());
    let again = mcpgw(&["secret", "rm", "api.token"], &env, "").await;
    assert_eq!(again.status.code(), Some(1), "removing twice fails");
    let run = mcpgw(&["run", "--catalog", catalog_arg], &env, "").await;
    assert_eq!(run.status.code(), Some(2));
    assert!(stderr_of(&run).contains("`api.token`, needed by server `one`"));
}

#[tokio::test]
async fn keyutils_works_or_says_why_not() {
    let env = vec![("MCPGW_SECRETS", "keyutils".to_string())];
    let name = format!("mcpgw-test-{}", std::process::id());
    let set = mcpgw(
        &["secret", "set", "--store", "keyutils", &name],
        &env,
        "keyutils-value-0123456789",
    )
    .await;
    if set.status.success() {
        let dir = catalog(&format!(
            "servers:\n  one:\n    image: mcpgw/testserver:dev\n    pull: never\n    secrets: {{ K: {name} }}\n"
        ));
        let gw = Gateway::start_with_env(&dir.path().join("catalog.yaml"), &env).await;
        let result = gw
            .client
            .call_tool(call("one__env", json!({"name": "K"})))
            .await
            .unwrap();
        assert_eq!(text_of(&result), format!("[REDACTED:{name}]"));
        assert!(gw.stop_with_eof().await.success());
        let removed = mcpgw(&["secret", "rm", "--store", "keyutils", &name], &env, "").await;
        assert!(removed.status.success());
    } else {
        // This kernel (or its sandbox) refuses: the error says so and
        // how to do without, promptly.
        assert_eq!(set.status.code(), Some(1));
        let log = stderr_of(&set);
        assert!(
            log.contains("the kernel keyutils store is unavailable")
                && log.contains("use `--secrets env` or `--secrets file:DIR`"),
            "{log}"
        );
    }
}
