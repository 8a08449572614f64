//! Finds known secret values in text, raw and in common encodings, and
//! replaces each with `[REDACTED:<name>]`.
//!
//! Every value becomes a set of patterns (raw; JSON-escaped once and twice;
//! JSON with `\uXXXX` escapes; hex in both cases; percent-encoded; base64,
//! standard and URL-safe, at each of the three byte alignments a value can
//! have inside a larger encoded blob) and one Aho-Corasick automaton matches
//! them all in a single pass, so the cost of a scan grows with the text, not
//! with the number of secrets.
//!
//! The `_decoded` methods also look through JSON escapes (`unescape.rs`):
//! text that holds a backslash is decoded, a level at a time, and matched
//! again, so `\u0066` for `f` hides no value. Text without a backslash
//! costs nothing more than the plain scan.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::sync::{Arc, OnceLock, RwLock};

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use secrecy::{ExposeSecret, SecretString};

use crate::unescape::unescape;

/// Values shorter than this are not redacted: they would match everywhere.
pub const MIN_SECRET_BYTES: usize = 8;

/// Encoded forms shorter than this are not matched, for the same reason.
const MIN_ENCODED_BYTES: usize = 6;

/// JSON escapes are decoded at most this many times over (JSON in a JSON
/// string in a JSON string in a message).
const DECODE_LEVELS: usize = 4;

/// Up to this many pattern bytes, the matcher is a full DFA.
const DFA_PATTERN_BYTES: usize = 64 * 1024;

/// Finds and replaces known secret values. Cheap to clone; an empty
/// redactor costs nothing.
#[derive(Clone, Default)]
pub struct Redactor(Option<Arc<Inner>>);

struct Inner {
    matcher: AhoCorasick,
    /// For each pattern, the index of its secret in `names`.
    owner: Vec<usize>,
    names: Vec<String>,
    /// `[REDACTED:<name>]` for each secret.
    marks: Vec<String>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redactor")
            .field("secrets", &self.names())
            .finish()
    }
}

impl Redactor {
    /// A redactor for `secrets`, given as `(name, value)`. Values shorter
    /// than [`MIN_SECRET_BYTES`] are left out with a warning.
    pub fn new<'a>(secrets: impl IntoIterator<Item = (&'a str, &'a SecretString)>) -> Self {
        let mut names = Vec::new();
        let mut patterns = Vec::new();
        let mut owner = Vec::new();
        for (name, value) in secrets {
            let value = value.expose_secret();
            if value.len() < MIN_SECRET_BYTES {
                tracing::warn!(
                    secret = %name,
                    "secret is shorter than {MIN_SECRET_BYTES} bytes, too short to find reliably; it is not redacted"
                );
                continue;
            }
            for pattern in variants(value) {
                patterns.push(pattern);
                owner.push(names.len());
            }
            names.push(name.to_string());
        }
        if patterns.is_empty() {
            return Self(None);
        }
        // Leftmost-longest: a secret that contains another is replaced whole.
        // A full DFA is the fastest scan (a few hundred KiB for 50 tokens);
        // for large values (certificates, service-account files) its size
        // grows with the pattern bytes times the alphabet, so a compact NFA
        // is used instead.
        let pattern_bytes: usize = patterns.iter().map(String::len).sum();
        let kind = if pattern_bytes <= DFA_PATTERN_BYTES {
            AhoCorasickKind::DFA
        } else {
            AhoCorasickKind::ContiguousNFA
        };
        let matcher = AhoCorasickBuilder::new()
            .kind(Some(kind))
            .match_kind(MatchKind::LeftmostLongest)
            .build(&patterns)
            .unwrap_or_else(|err| panic!("the secret matcher could not be built: {err}"));
        let marks = names.iter().map(|n| format!("[REDACTED:{n}]")).collect();
        Self(Some(Arc::new(Inner {
            matcher,
            owner,
            names,
            marks,
        })))
    }

    /// Whether there is nothing to find.
    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    /// The names of the secrets this redactor finds.
    pub fn names(&self) -> &[String] {
        self.0.as_ref().map_or(&[], |inner| &inner.names)
    }

    /// Whether `text` holds any known value.
    pub fn is_match(&self, text: &str) -> bool {
        self.0
            .as_ref()
            .is_some_and(|inner| inner.matcher.is_match(text))
    }

    /// The names of the secrets whose values `text` holds.
    pub fn found(&self, text: &str) -> BTreeSet<&str> {
        let Some(inner) = &self.0 else {
            return BTreeSet::new();
        };
        inner
            .matcher
            .find_iter(text)
            .map(|m| inner.names[inner.owner[m.pattern().as_usize()]].as_str())
            .collect()
    }

    /// Whether `text` holds any known value, directly or once its JSON
    /// escapes are decoded.
    pub fn is_match_decoded(&self, text: &str) -> bool {
        if self.is_match(text) {
            return true;
        }
        let mut current = Cow::Borrowed(text);
        for _ in 0..DECODE_LEVELS {
            let Some(decoded) = unescape(&current) else {
                return false;
            };
            if self.is_match(&decoded) {
                return true;
            }
            current = Cow::Owned(decoded);
        }
        false
    }

    /// The names of the secrets whose values `text` holds, directly or once
    /// its JSON escapes are decoded.
    pub fn found_decoded(&self, text: &str) -> BTreeSet<&str> {
        let mut names = self.found(text);
        let mut current = Cow::Borrowed(text);
        for _ in 0..DECODE_LEVELS {
            let Some(decoded) = unescape(&current) else {
                break;
            };
            names.extend(self.found(&decoded));
            current = Cow::Owned(decoded);
        }
        names
    }

    /// `text` (one decoded JSON string) with every known value replaced,
    /// decoding its JSON escapes where a value is found only decoded: the
    /// result is then the decoded text (JSON carried in the string loses
    /// its escapes, as its value is redacted). Borrowed when there was
    /// nothing to replace; the caller checks the result, since a value
    /// found only beyond [`DECODE_LEVELS`] may remain.
    pub fn redact_decoded<'t>(&self, text: &'t str) -> Cow<'t, str> {
        let mut current = self.redact(text);
        for _ in 0..DECODE_LEVELS {
            if !self.is_match_decoded(&current) {
                break;
            }
            let Some(decoded) = unescape(&current) else {
                break;
            };
            current = Cow::Owned(self.redact(&decoded).into_owned());
        }
        current
    }

    /// `text` with every known value replaced by `[REDACTED:<name>]`;
    /// borrowed when there was nothing to replace.
    pub fn redact<'t>(&self, text: &'t str) -> Cow<'t, str> {
        let Some(inner) = &self.0 else {
            return Cow::Borrowed(text);
        };
        let Some(first) = inner.matcher.find(text) else {
            return Cow::Borrowed(text);
        };
        let mut out = String::with_capacity(text.len());
        out.push_str(&text[..first.start()]);
        inner
            .matcher
            .replace_all_with(&text[first.start()..], &mut out, |m, _, dst| {
                dst.push_str(&inner.marks[inner.owner[m.pattern().as_usize()]]);
                true
            });
        Cow::Owned(out)
    }
}

/// The run's redactor, which a catalog reload replaces with one that also
/// knows the values the new catalog brought. Clones share it.
#[derive(Clone, Default)]
pub struct LiveRedactor(Arc<RwLock<Redactor>>);

impl std::fmt::Debug for LiveRedactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.current().fmt(f)
    }
}

impl LiveRedactor {
    /// A live redactor starting as `redactor`.
    #[must_use]
    pub fn new(redactor: Redactor) -> Self {
        Self(Arc::new(RwLock::new(redactor)))
    }

    /// The redactor in force now.
    #[must_use]
    pub fn current(&self) -> Redactor {
        self.0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Puts `redactor` in force for every clone. A reload passes one that
    /// finds the old values too, so nothing logged later can show them.
    pub fn replace(&self, redactor: Redactor) {
        *self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = redactor;
    }
}

static GLOBAL: OnceLock<LiveRedactor> = OnceLock::new();

/// Makes `redactor` the one logs and panic messages go through. The first
/// call wins; returns whether this one did.
pub fn set_global(redactor: LiveRedactor) -> bool {
    GLOBAL.set(redactor).is_ok()
}

/// The redactor logs and panic messages go through now, once set.
pub fn global() -> Option<Redactor> {
    GLOBAL.get().map(LiveRedactor::current)
}

/// Every pattern `value` is found by.
fn variants(value: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let json = json_escaped(value);
    out.insert(json_escaped(&json));
    out.insert(ascii_escaped(&json));
    out.insert(json);
    let bytes = value.as_bytes();
    out.insert(hex::encode(bytes));
    out.insert(hex::encode_upper(bytes));
    for keep in [UNRESERVED, PYTHON_QUOTE, JS_URI_COMPONENT] {
        out.insert(percent(value, keep, false, false));
        out.insert(percent(value, keep, true, false));
    }
    out.insert(percent(value, UNRESERVED, true, true));
    for engine in [&STANDARD, &URL_SAFE] {
        for shift in 0..3 {
            out.insert(base64_core(engine, bytes, shift));
        }
    }
    out.retain(|p| p.len() >= MIN_ENCODED_BYTES);
    out.insert(value.to_string());
    out
}

/// `value` as it appears inside a JSON string.
fn json_escaped(value: &str) -> String {
    let quoted = serde_json::Value::from(value).to_string();
    quoted[1..quoted.len() - 1].to_string()
}

/// A JSON-escaped string with non-ASCII characters as `\uXXXX`, as
/// Python's `json.dumps` writes them by default.
fn ascii_escaped(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                let _ = write!(out, "\\u{unit:04x}");
            }
        }
    }
    out
}

/// Punctuation RFC 3986 leaves unencoded (with letters and digits).
const UNRESERVED: &[u8] = b"-._~";
/// What Python's `urllib.parse.quote` leaves by default.
const PYTHON_QUOTE: &[u8] = b"-._~/";
/// What JavaScript's `encodeURIComponent` leaves.
const JS_URI_COMPONENT: &[u8] = b"-._~!'()*";

/// Percent-encoding of everything but letters, digits and `keep`; `plus`
/// writes a space as `+`, as HTML forms do.
fn percent(value: &str, keep: &[u8], upper: bool, plus: bool) -> String {
    let mut out = String::with_capacity(value.len() * 3);
    for &b in value.as_bytes() {
        if b.is_ascii_alphanumeric() || keep.contains(&b) {
            out.push(char::from(b));
        } else if plus && b == b' ' {
            out.push('+');
        } else if upper {
            let _ = write!(out, "%{b:02X}");
        } else {
            let _ = write!(out, "%{b:02x}");
        }
    }
    out
}

/// The base64 characters that depend only on `bytes` when they start
/// `shift` bytes into a 3-byte group: found whatever surrounds them.
fn base64_core(engine: &base64::engine::GeneralPurpose, bytes: &[u8], shift: usize) -> String {
    let mut shifted = vec![0u8; shift];
    shifted.extend_from_slice(bytes);
    let encoded = engine.encode(&shifted);
    let start = (8 * shift).div_ceil(6);
    let end = 8 * (shift + bytes.len()) / 6;
    encoded[start..end].to_string()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn redactor(pairs: &[(&str, &str)]) -> Redactor {
        let values: Vec<(String, SecretString)> = pairs
            .iter()
            .map(|(n, v)| ((*n).to_string(), SecretString::from(*v)))
            .collect();
        Redactor::new(values.iter().map(|(n, v)| (n.as_str(), v)))
    }

    const TOKEN: &str = "ghp_s3cr3t/Tok+en=\"quoted\"\\é";

    fn encodings(text: &str) -> Vec<(&'static str, String)> {
        vec![
            ("raw", text.to_string()),
            ("json", json_escaped(text)),
            ("json twice", json_escaped(&json_escaped(text))),
            ("json ascii", ascii_escaped(&json_escaped(text))),
            ("hex", hex::encode(text)),
            ("HEX", hex::encode_upper(text)),
            ("percent", percent(text, UNRESERVED, true, false)),
            ("percent lower", percent(text, UNRESERVED, false, false)),
            ("python quote", percent(text, PYTHON_QUOTE, true, false)),
            (
                "encodeURIComponent",
                percent(text, JS_URI_COMPONENT, true, false),
            ),
            ("form", percent(text, UNRESERVED, true, true)),
            ("base64", STANDARD.encode(text)),
            ("base64url", URL_SAFE.encode(text)),
            (
                "base64 unpadded",
                base64::engine::general_purpose::STANDARD_NO_PAD.encode(text),
            ),
        ]
    }

    #[test]
    fn finds_every_encoding_at_every_alignment() {
        let r = redactor(&[("gh.token", TOKEN)]);
        for prefix in ["", "a", "ab", "abc", "é"] {
            let text = format!("{prefix}before {TOKEN} after");
            for (label, encoded) in encodings(&text) {
                let out = r.redact(&encoded);
                assert!(
                    out.contains("[REDACTED:gh.token]"),
                    "{label} with prefix {prefix:?}: {out}"
                );
                assert_eq!(r.found(&encoded), BTreeSet::from(["gh.token"]), "{label}");
                for (_, form) in encodings(TOKEN) {
                    if form.len() >= MIN_ENCODED_BYTES {
                        assert!(!out.contains(&form), "{label} left {form} in {out}");
                    }
                }
            }
        }
    }

    #[test]
    fn leaves_text_without_values_borrowed() {
        let r = redactor(&[("a", "correct-horse")]);
        assert!(matches!(r.redact("nothing here"), Cow::Borrowed(_)));
        assert!(!r.is_match("correct horse"));
        assert!(Redactor::default().is_empty());
        assert!(matches!(
            Redactor::default().redact("correct-horse"),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn the_longest_value_wins_and_each_keeps_its_name() {
        let r = redactor(&[
            ("short", "abcdefgh"),
            ("long", "abcdefghijkl"),
            ("other", "zzzzzzzz"),
        ]);
        assert_eq!(
            r.redact("x abcdefghijkl y abcdefgh zzzzzzzz"),
            "x [REDACTED:long] y [REDACTED:short] [REDACTED:other]"
        );
        assert_eq!(
            r.found("abcdefgh zzzzzzzz"),
            BTreeSet::from(["other", "short"])
        );
    }

    #[test]
    fn values_too_short_to_find_are_left_out() {
        let r = redactor(&[("pin", "1234567"), ("ok", "12345678")]);
        assert_eq!(r.names(), ["ok"]);
        assert_eq!(r.redact("1234567 12345678"), "1234567 [REDACTED:ok]");
    }

    #[test]
    fn a_value_split_across_two_json_strings_is_not_a_value() {
        // A value can only be found whole: split across two JSON strings it
        // no longer reads as the value, and each half alone is not found.
        let r = redactor(&[("t", "split-secret-value")]);
        let text = r#"["split-sec","ret-value"]"#;
        assert!(!r.is_match(text));
        // Once a JSON string is decoded, the halves join and are found.
        let joined: Vec<String> = serde_json::from_str(text).unwrap();
        assert!(r.is_match(&joined.concat()));
    }

    #[test]
    fn large_values_are_found_without_a_full_dfa() {
        let key: String = (0..20_000)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        let r = redactor(&[("service.account", &key)]);
        let text = format!("{{\"key\": \"{key}\"}}");
        assert_eq!(r.redact(&text), "{\"key\": \"[REDACTED:service.account]\"}");
    }

    #[test]
    fn debug_shows_names_only() {
        let r = redactor(&[("api.key", "hunter2-hunter2")]);
        let shown = format!("{r:?}");
        assert!(
            shown.contains("api.key") && !shown.contains("hunter2"),
            "{shown}"
        );
    }

    /// `value` inside a JSON string, each character for which `escape`
    /// says so written as `\uXXXX` (a surrogate pair beyond the BMP), in
    /// upper or lower case hex.
    fn escaped(value: &str, escape: &[bool], upper: bool) -> String {
        let mut out = String::new();
        for (i, c) in value.chars().enumerate() {
            if escape.get(i).copied().unwrap_or(false) {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    if upper {
                        let _ = write!(out, "\\u{unit:04X}");
                    } else {
                        let _ = write!(out, "\\u{unit:04x}");
                    }
                }
            } else {
                out.push_str(&json_escaped(&c.to_string()));
            }
        }
        out
    }

    #[test]
    fn values_behind_json_escapes_are_found() {
        const VALUE: &str = "acc-SECRET-7f3e9/😀x";
        let r = redactor(&[("acc", VALUE)]);
        let cases = [
            (
                "one character",
                r#"{"text":"acc-SECRET-7\u00663e9/😀x"}"#.to_string(),
            ),
            (
                "every character",
                format!(r#"{{"text":"{}"}}"#, escaped(VALUE, &[true; 32], true)),
            ),
            (
                "a surrogate pair",
                r#"{"text":"acc-SECRET-7f3e9/\ud83d\ude00\u0078"}"#.to_string(),
            ),
            (
                "an escaped slash",
                r#"{"text":"acc-SECRET-7f3e9\/😀x"}"#.to_string(),
            ),
            (
                "an object key",
                r#"{"acc-SECRET-7f3e9/😀\u0078":1}"#.to_string(),
            ),
            (
                "JSON in a JSON string",
                r#"{"text":"{\"k\":\"acc-SECRET-7\\u00663e9/😀x\"}"}"#.to_string(),
            ),
        ];
        for (label, line) in cases {
            assert!(!r.is_match(&line), "{label}: found without decoding");
            assert!(r.is_match_decoded(&line), "{label}");
            assert_eq!(r.found_decoded(&line), BTreeSet::from(["acc"]), "{label}");
        }
        // Decoded strings are redacted in their decoded form.
        let decoded: serde_json::Value =
            serde_json::from_str(r#"{"t":"{\"k\":\"acc-SECRET-7\\u00663e9/😀x\"}"}"#).unwrap();
        let text = decoded["t"].as_str().unwrap();
        assert_eq!(r.redact_decoded(text), r#"{"k":"[REDACTED:acc]"}"#);
        assert_eq!(r.redact_decoded("acc-SECRET-7f3e9/😀x"), "[REDACTED:acc]");
        // Without a backslash, nothing is decoded and nothing changes.
        assert!(matches!(r.redact_decoded("plain"), Cow::Borrowed(_)));
        assert!(!r.is_match_decoded(r#"{"text":"acc-SECRET-7\u0067"}"#));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// Whatever surrounds a value, and however the whole is encoded, the
        /// value is found and no encoded form of it survives redaction.
        #[test]
        fn found_in_any_surroundings(
            value in "\\PC{8,24}",
            prefix in "\\PC{0,12}",
            suffix in "\\PC{0,12}",
        ) {
            let r = redactor(&[("s", &value)]);
            let text = format!("{prefix}{value}{suffix}");
            for (label, encoded) in encodings(&text) {
                prop_assert!(r.is_match(&encoded), "{} of {:?}", label, text);
                let out = r.redact(&encoded);
                // Marks are cut out first: "[REDACTED:s]" itself may contain
                // a short value.
                let unmarked = out.replace("[REDACTED:s]", "\0");
                prop_assert!(!unmarked.contains(&value), "{} left the value in {:?}", label, out);
            }
        }
        /// However a value's characters are JSON-escaped inside a JSON
        /// string, with whatever around it, it is found, and redacting the
        /// decoded string leaves none of it.
        #[test]
        fn found_behind_any_json_escaping(
            value in "\\PC{8,24}",
            prefix in "\\PC{0,8}",
            suffix in "\\PC{0,8}",
            escape in proptest::collection::vec(any::<bool>(), 24),
            upper in any::<bool>(),
        ) {
            let r = redactor(&[("s", &value)]);
            let line = format!(
                r#"{{"jsonrpc":"2.0","id":1,"result":{{"text":"{}{}{}"}}}}"#,
                json_escaped(&prefix),
                escaped(&value, &escape, upper),
                json_escaped(&suffix),
            );
            prop_assert!(r.is_match_decoded(&line), "{}", line);
            prop_assert!(r.found_decoded(&line).contains("s"), "{}", line);
            let message: serde_json::Value = serde_json::from_str(&line).unwrap();
            let text = message["result"]["text"].as_str().unwrap();
            let out = r.redact_decoded(text);
            let unmarked = out.replace("[REDACTED:s]", "\0");
            prop_assert!(!r.is_match_decoded(&unmarked), "{:?} left in {:?}", value, out);
        }
    }
}
