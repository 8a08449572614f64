//! The members of a JSON-RPC message that the express paths look at: the
//! backend's stdout guard reads its answers and progress reports by them,
//! and the stdio front its client's calls.
//!
//! Read with the scanner (`json.rs`), which checks the whole line once;
//! the members are handed on as their JSON text, so that readers of
//! `params` or `result` cut them without checking them again
//! ([`json::members`]). A line with a key written in escapes is read by
//! serde instead, which decodes keys.

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::json;

/// See the module documentation. Each member is its JSON text, borrowed
/// from the line; `null` reads as absent, as with serde's `Option`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Envelope<'a> {
    /// The request's or the response's id.
    pub id: Option<&'a str>,
    /// The method of a request or a notification, without its quotes.
    pub method: Option<&'a str>,
    /// Their params.
    pub params: Option<&'a str>,
    /// A response's result.
    pub result: Option<&'a str>,
    /// A response's error.
    pub error: Option<&'a str>,
}

impl<'a> Envelope<'a> {
    /// Reads `line`, all of it checked; `None` if it is not a JSON object,
    /// names a member twice, or has a method with escapes (which then
    /// goes to rmcp).
    #[must_use]
    pub fn read(line: &'a str) -> Option<Self> {
        let mut envelope = Self::default();
        let (mut twice, mut escaped) = (false, false);
        // Which members were seen, `null` ones too.
        let mut seen = [false; 5];
        json::object(line, |key, value| {
            let (slot, i) = match key {
                Some("id") => (&mut envelope.id, 0),
                Some("method") => (&mut envelope.method, 1),
                Some("params") => (&mut envelope.params, 2),
                Some("result") => (&mut envelope.result, 3),
                Some("error") => (&mut envelope.error, 4),
                Some(_) => return,
                None => {
                    escaped = true;
                    return;
                }
            };
            twice |= std::mem::replace(&mut seen[i], true);
            *slot = (value != "null").then_some(value);
        })?;
        if escaped {
            return Self::decoded(line);
        }
        if twice {
            return None;
        }
        if let Some(method) = envelope.method {
            envelope.method = Some(json::plain_str(method)?);
        }
        Some(envelope)
    }

    /// Reads `line` with serde, which decodes escaped keys.
    fn decoded(line: &'a str) -> Option<Self> {
        #[derive(Deserialize)]
        struct Decoded<'a> {
            #[serde(borrow)]
            id: Option<&'a RawValue>,
            #[serde(borrow)]
            method: Option<&'a str>,
            #[serde(borrow)]
            params: Option<&'a RawValue>,
            #[serde(borrow)]
            result: Option<&'a RawValue>,
            #[serde(borrow)]
            error: Option<&'a RawValue>,
        }
        let decoded = serde_json::from_str::<Decoded<'a>>(line).ok()?;
        Some(Self {
            id: decoded.id.map(RawValue::get),
            method: decoded.method,
            params: decoded.params.map(RawValue::get),
            result: decoded.result.map(RawValue::get),
            error: decoded.error.map(RawValue::get),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_are_read_as_serde_reads_them() {
        let line = r#"{"jsonrpc":"2.0","id":"mcpgw-x7","result":{"content":[]},"extra":1}"#;
        let envelope = Envelope::read(line).unwrap();
        assert_eq!(envelope.id, Some(r#""mcpgw-x7""#));
        assert_eq!(envelope.result, Some(r#"{"content":[]}"#));
        assert_eq!(envelope.method, None);
        let call = r#"{"jsonrpc":"2.0","id":null,"method":"tools/call","params":{"name":"t"}}"#;
        let envelope = Envelope::read(call).unwrap();
        assert_eq!(envelope.id, None, "a null id is no id");
        assert_eq!(envelope.method, Some("tools/call"));
        assert_eq!(envelope.params, Some(r#"{"name":"t"}"#));
        // Escaped keys are decoded, by serde.
        let escaped = r#"{"\u0069d":3,"method":"ping"}"#;
        assert_eq!(Envelope::read(escaped).unwrap().id, Some("3"));
        for refused in [
            r#"{"id":1,"id":2}"#,
            r#"{"id":null,"id":2}"#,
            r#"{"method":"tools\/call"}"#,
            r#"{"method":"#,
            r#"[{"method":"ping"}]"#,
        ] {
            assert!(Envelope::read(refused).is_none(), "{refused}");
        }
    }
}
