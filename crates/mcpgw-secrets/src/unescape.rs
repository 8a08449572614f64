//! JSON escape sequences decoded wherever they appear in a text, so that a
//! value is found as a JSON decoder would yield it.
//!
//! A backend can write any character of a JSON string as `\uXXXX` (or a
//! surrogate pair, or `\/`), and every JSON decoder turns it back into the
//! character: `acc-\u0066oo` is `acc-foo` to the client. The patterns in
//! `redact.rs` cover the escapes serializers commonly write; this decodes
//! the rest. The decoder is tolerant: it works on whole lines (keys and
//! values alike, and JSON carried inside JSON strings, one level per pass)
//! and leaves what is not a valid escape as it is. It deliberately does not
//! parse JSON: where a value must be replaced, the caller walks the parsed
//! message.

/// `text` with every valid JSON escape sequence decoded; `None` when it
/// holds none (nothing to decode: the caller's fast path).
pub(crate) fn unescape(text: &str) -> Option<String> {
    let first = text.find('\\')?;
    let mut out = String::with_capacity(text.len());
    out.push_str(&text[..first]);
    let mut rest = &text[first..];
    let mut decoded = false;
    while let Some(at) = rest.find('\\') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        match escape(rest) {
            Some((c, len)) => {
                out.push(c);
                rest = &rest[len..];
                decoded = true;
            }
            None => {
                out.push('\\');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    decoded.then_some(out)
}

/// The character the escape at the start of `text` (which starts with a
/// backslash) stands for, and the escape's length in bytes.
fn escape(text: &str) -> Option<(char, usize)> {
    let c = match text.as_bytes().get(1)? {
        b'"' => '"',
        b'\\' => '\\',
        b'/' => '/',
        b'b' => '\u{8}',
        b'f' => '\u{c}',
        b'n' => '\n',
        b'r' => '\r',
        b't' => '\t',
        b'u' => return unicode(text),
        _ => return None,
    };
    Some((c, 2))
}

/// A `\uXXXX` escape, or a surrogate pair of two; a lone surrogate is no
/// character and is left as it is.
fn unicode(text: &str) -> Option<(char, usize)> {
    let high = hex4(text.get(2..6)?)?;
    if let Some(c) = char::from_u32(high) {
        return Some((c, 6));
    }
    if !(0xD800..0xDC00).contains(&high) || text.get(6..8)? != "\\u" {
        return None;
    }
    let low = hex4(text.get(8..12)?)?;
    if !(0xDC00..0xE000).contains(&low) {
        return None;
    }
    let c = char::from_u32(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00))?;
    Some((c, 12))
}

fn hex4(digits: &str) -> Option<u32> {
    if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(digits, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expect: Option<&str>) {
        assert_eq!(unescape(input).as_deref(), expect, "{input:?}");
    }

    #[test]
    fn decodes_every_escape_and_leaves_the_rest() {
        check("plain", None);
        check(r"a\u0066b", Some("afb"));
        check(r"\u00E9\u00e9", Some("éé"));
        check(r"\ud83d\ude00!", Some("😀!"));
        check(r#"\"\\\/\b\f\n\r\t"#, Some("\"\\/\u{8}\u{c}\n\r\t"));
        // Invalid or incomplete escapes stay as they are.
        check(r"\x \u12 \ud83d alone \udc00", None);
        check(r"\q\u0041", Some(r"\qA"));
        // One level per pass: an escaped backslash yields the escape.
        check(r"\\u0066", Some(r"\u0066"));
        check(r"é\u0066é", Some("éfé"));
        check("trailing\\", None);
    }
}
