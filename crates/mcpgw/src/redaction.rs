//! Where redaction meets the outside: every line written to the client and
//! every line logged passes through the run's [`Redactor`].
//!
//! Client messages are redacted one JSON-RPC line at a time, after
//! serialization (`front.rs` feeds every line through [`Filter`]): whatever
//! the message (a result, an error, a progress or log notification, a
//! request to the client), its bytes are scanned once, and a value split
//! across writes is still found because lines are reassembled first. A
//! value is also looked for behind JSON escapes (`\u0066` is `f` to every
//! JSON decoder), only in lines that hold a backslash, so that what the
//! client's parser yields is what is checked; a line that is not UTF-8 is
//! never forwarded as it is.

use prometheus_client::metrics::counter::Counter;
use std::borrow::Cow;

use mcpgw_catalog::Redaction;
use mcpgw_secrets::{LiveRedactor, Redactor};
use serde_json::{Value, json};

/// What happens to client-bound lines.
#[derive(Debug, Clone)]
pub(crate) struct Filter {
    /// The run's redactor, which a reload may replace.
    redactor: LiveRedactor,
    mode: Redaction,
    /// Messages redacted or withheld so far (clones share it).
    hits: Counter,
}

impl Filter {
    pub(crate) fn new(redactor: LiveRedactor, mode: Redaction) -> Self {
        Self {
            redactor,
            mode,
            hits: Counter::default(),
        }
    }

    /// The count of messages redacted or withheld, for `/metrics`.
    pub(crate) fn redactions(&self) -> Counter {
        self.hits.clone()
    }

    /// Whether the filter changes nothing now (the run has no secrets).
    pub(crate) fn is_noop(&self) -> bool {
        self.redactor.current().is_empty()
    }

    /// One JSON-RPC line (with its line break), as the client may see it.
    ///
    /// A value is looked for as the client's JSON parser will read it: in
    /// the bytes, and, where the line holds a backslash, behind its JSON
    /// escapes. A hit is redacted in the bytes where that leaves valid
    /// JSON and no value; else in the message's decoded strings (keys
    /// included), which is then serialized again; else the message is
    /// withheld. A line that is not UTF-8 is never forwarded as it is.
    pub(crate) fn line<'a>(&self, line: &'a [u8]) -> Cow<'a, [u8]> {
        let redactor = self.redactor.current();
        if redactor.is_empty() {
            return Cow::Borrowed(line);
        }
        let Ok(text) = std::str::from_utf8(line) else {
            return not_utf8(line);
        };
        if !redactor.is_match_decoded(text) {
            return Cow::Borrowed(line);
        }
        self.hits.inc();
        let names: Vec<&str> = redactor.found_decoded(text).into_iter().collect();
        let message: Option<Value> = serde_json::from_str(text).ok();
        let kind = message.as_ref().map_or("unparsable message", kind_of);
        if self.mode == Redaction::Redact
            && let Some(redacted) = Self::redacted(&redactor, text, message.as_ref())
        {
            tracing::warn!(secrets = ?names, "redacted secret values from a {kind} to the client");
            return Cow::Owned(redacted.into_bytes());
        }
        tracing::warn!(secrets = ?names, "withheld a {kind} to the client: it carried secret values");
        match message.as_ref().and_then(|m| withheld(m, &names)) {
            Some(error) => Cow::Owned(format!("{error}\n").into_bytes()),
            None => Cow::Borrowed(b""),
        }
    }

    /// `text` with its values replaced, if that leaves valid JSON without
    /// any (a value that spans JSON syntax leaves none; the message is then
    /// withheld, as blocking would).
    fn redacted(redactor: &Redactor, text: &str, message: Option<&Value>) -> Option<String> {
        let direct = redactor.redact(text);
        if serde_json::from_str::<Value>(&direct).is_ok() && !redactor.is_match_decoded(&direct) {
            return Some(direct.into_owned());
        }
        let mut message = message?.clone();
        redact_strings(redactor, &mut message);
        let mut out = serde_json::to_string(&message).ok()?;
        if redactor.is_match_decoded(&out) {
            return None;
        }
        if text.ends_with('\n') {
            out.push('\n');
        }
        Some(out)
    }
}

/// Replaces the values in every string of `value`, object keys included,
/// as decoded.
fn redact_strings(redactor: &Redactor, value: &mut Value) {
    match value {
        Value::String(s) => {
            if let Cow::Owned(redacted) = redactor.redact_decoded(s) {
                *s = redacted;
            }
        }
        Value::Array(items) => {
            for item in items {
                redact_strings(redactor, item);
            }
        }
        Value::Object(map) => {
            for (key, mut item) in std::mem::take(map) {
                redact_strings(redactor, &mut item);
                map.insert(redactor.redact_decoded(&key).into_owned(), item);
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// What replaces a line that is not UTF-8: no client parser reads it as it
/// is, and no value can be looked for in it. A response becomes an error
/// to its request (its id read from the line with the bad bytes replaced),
/// so the client is still answered; anything else is dropped, and logged.
fn not_utf8(line: &[u8]) -> Cow<'static, [u8]> {
    let message: Option<Value> = serde_json::from_str(&String::from_utf8_lossy(line)).ok();
    let kind = message.as_ref().map_or("unparsable message", kind_of);
    let id = message
        .as_ref()
        .filter(|m| m.get("method").is_none())
        .and_then(|m| m.get("id"));
    let Some(id) = id else {
        tracing::warn!("dropped a {kind} to the client: it was not valid UTF-8");
        return Cow::Borrowed(b"");
    };
    tracing::warn!("replaced a {kind} to the client with an error: it was not valid UTF-8");
    let error = json!({
        "jsonrpc": "2.0",
        "id": id,
        "error": {
            "code": -32603,
            "message": "the gateway withheld this response: it was not valid UTF-8",
        },
    });
    Cow::Owned(format!("{error}\n").into_bytes())
}

fn kind_of(message: &Value) -> &'static str {
    match (message.get("id"), message.get("method")) {
        (Some(_), Some(_)) => "request",
        (None, Some(_)) => "notification",
        _ if message.get("error").is_some() => "error response",
        _ => "response",
    }
}

/// The error that replaces a withheld response; `None` for a notification
/// or a request, which are dropped.
fn withheld(message: &Value, names: &[&str]) -> Option<Value> {
    if message.get("method").is_some() {
        return None;
    }
    let id = message.get("id")?;
    let names = names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ");
    Some(json!({
        "jsonrpc": "2.0",
        "id": id,
        "error": {
            "code": -32603,
            "message": format!("the gateway withheld this response: it carried the value of secret {names}"),
        },
    }))
}

/// The log writer: each formatted event goes to stderr through the global
/// redactor, once the run's secrets are known.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RedactingStderr;

impl std::io::Write for RedactingStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        let text = match mcpgw_secrets::global() {
            Some(redactor) => redactor.redact(&text),
            None => text,
        };
        std::io::stderr().write_all(text.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use mcpgw_secrets::SecretString;

    use super::*;

    /// The secret value the front's tests redact.
    pub(crate) const VALUE: &str = "tok-3f9a8b7c6d5e";

    /// A filter that knows [`VALUE`] as `api.token`.
    pub(crate) fn filter(mode: Redaction) -> Filter {
        let value = SecretString::from(VALUE);
        Filter::new(
            LiveRedactor::new(Redactor::new([("api.token", &value)])),
            mode,
        )
    }

    #[test]
    fn encoded_values_are_found_in_json_lines() {
        use base64::Engine as _;
        let encoded = base64::engine::general_purpose::STANDARD.encode(format!("user:{VALUE}"));
        let line =
            format!("{{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{{\"blob\":\"{encoded}\"}}}}\n");
        let f = filter(Redaction::Redact);
        let out = f.line(line.as_bytes());
        let out = std::str::from_utf8(&out).unwrap();
        assert!(out.contains("[REDACTED:api.token]"), "{out}");
    }
    fn response(result: &str) -> String {
        format!("{{\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{result}}}\n")
    }

    /// What the client's parser reads from `out`, checked to hold no value.
    fn parsed(out: &[u8]) -> Value {
        let text = std::str::from_utf8(out).unwrap();
        assert!(text.ends_with('\n'), "{text:?}");
        let message: Value = serde_json::from_str(text).unwrap();
        assert!(!message.to_string().contains(VALUE), "{message}");
        message
    }

    #[test]
    fn values_behind_json_escapes_are_redacted_or_withheld() {
        // VALUE is "tok-3f9a8b7c6d5e".
        let cases = [
            (
                "one character",
                r#"{"text":"tok-3\u00669a8b7c6d5e"}"#.to_string(),
            ),
            (
                "every character",
                format!(
                    r#"{{"text":"{}"}}"#,
                    VALUE
                        .chars()
                        .map(|c| format!("\\u{:04X}", u32::from(c)))
                        .collect::<String>()
                ),
            ),
            (
                "a solidus",
                r#"{"text":"a \/ tok-3f9a8b7c6d5\u0065"}"#.to_string(),
            ),
            (
                "an object key",
                r#"{"tok-3f9a8b7c6d5\u0065":"x"}"#.to_string(),
            ),
            (
                "mixed with a direct hit",
                format!(r#"{{"a":"{VALUE}","b":"tok-3\u00669a8b7c6d5e"}}"#),
            ),
            (
                "JSON in a JSON string",
                r#"{"text":"{\"k\":\"tok-3\\u00669a8b7c6d5e\"}"}"#.to_string(),
            ),
        ];
        for (label, result) in cases {
            let line = response(&result);
            let redact = filter(Redaction::Redact);
            let out = redact.line(line.as_bytes());
            let message = parsed(&out);
            assert!(
                message.to_string().contains("[REDACTED:api.token]"),
                "{label}: {message}"
            );
            assert_eq!(message["id"], 7, "{label}");
            assert_eq!(redact.redactions().get(), 1, "{label}");
            let block = filter(Redaction::Block);
            let message = parsed(&block.line(line.as_bytes()));
            assert_eq!(message["error"]["code"], -32603, "{label}: {message}");
            assert!(
                message["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("`api.token`"),
                "{label}: {message}"
            );
        }
        // Redaction keeps what is not a value.
        let line = response(r#"{"a":"x\u0041","b":"tok-3\u00669a8b7c6d5e"}"#);
        let out = filter(Redaction::Redact).line(line.as_bytes());
        assert_eq!(
            parsed(&out)["result"],
            json!({"a": "xA", "b": "[REDACTED:api.token]"})
        );
        // Escapes that hide nothing leave the line untouched.
        let line = response(r#"{"text":"caf\u00e9 \/ \"quoted\""}"#);
        assert!(matches!(
            filter(Redaction::Redact).line(line.as_bytes()),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn lines_that_are_not_utf8_are_never_forwarded() {
        let f = filter(Redaction::Redact);
        let mut line =
            b"{\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{\"text\":\"tok-3f9a\xff8b7c6d5e\"}}\n"
                .to_vec();
        let message = parsed(&f.line(&line));
        assert_eq!(message["id"], 3);
        assert_eq!(message["error"]["code"], -32603, "{message}");
        assert!(
            message["error"]["message"]
                .as_str()
                .unwrap()
                .contains("not valid UTF-8"),
            "{message}"
        );
        // A notification has no one to answer: it is dropped.
        line = b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{\"data\":\"\xc3(\"}}\n".to_vec();
        assert!(f.line(&line).is_empty());
        assert!(f.line(b"\xff\xfe\n").is_empty());
    }
}
