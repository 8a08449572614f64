//! Where redaction meets the outside: every line written to the client and
//! every line logged passes through the run's [`Redactor`].
//!
//! Client messages are redacted one JSON-RPC line at a time, after
//! serialization (`front.rs` feeds every line through [`Filter`]): whatever
//! the message (a result, an error, a progress or log notification, a
//! request to the client), its bytes are scanned once, and a value split
//! across writes is still found because lines are reassembled first.

use prometheus_client::metrics::counter::Counter;
use std::borrow::Cow;

use mcpgw_catalog::Redaction;
use mcpgw_secrets::Redactor;
use serde_json::{Value, json};

/// What happens to client-bound lines.
#[derive(Debug, Clone)]
pub(crate) struct Filter {
    redactor: Redactor,
    mode: Redaction,
    /// Messages redacted or withheld so far (clones share it).
    hits: Counter,
}

impl Filter {
    pub(crate) fn new(redactor: Redactor, mode: Redaction) -> Self {
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

    /// Whether the filter never changes anything (the run has no secrets).
    pub(crate) fn is_noop(&self) -> bool {
        self.redactor.is_empty()
    }

    /// One JSON-RPC line (with its line break), as the client may see it.
    pub(crate) fn line<'a>(&self, line: &'a [u8]) -> Cow<'a, [u8]> {
        if self.is_noop() {
            return Cow::Borrowed(line);
        }
        let Ok(text) = std::str::from_utf8(line) else {
            return Cow::Borrowed(line);
        };
        if !self.redactor.is_match(text) {
            return Cow::Borrowed(line);
        }
        self.hits.inc();
        let names: Vec<&str> = self.redactor.found(text).into_iter().collect();
        let message: Option<Value> = serde_json::from_str(text).ok();
        let kind = message.as_ref().map_or("unparsable message", kind_of);
        if self.mode == Redaction::Redact {
            let redacted = self.redactor.redact(text);
            // A value that spans JSON syntax leaves no valid JSON behind;
            // withhold the message then, as blocking would.
            if serde_json::from_str::<Value>(&redacted).is_ok() {
                tracing::warn!(secrets = ?names, "redacted secret values from a {kind} to the client");
                return Cow::Owned(redacted.into_owned().into_bytes());
            }
        }
        tracing::warn!(secrets = ?names, "withheld a {kind} to the client: it carried secret values");
        match message.as_ref().and_then(|m| withheld(m, &names)) {
            Some(error) => Cow::Owned(format!("{error}\n").into_bytes()),
            None => Cow::Borrowed(b""),
        }
    }
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
        Filter::new(Redactor::new([("api.token", &value)]), mode)
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
}
