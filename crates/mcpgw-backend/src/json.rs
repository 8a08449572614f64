//! A scanner for the members of a JSON object, for the lines the express
//! paths read on every call: the client's `tools/call`, the backend's
//! answer, the result handed on.
//!
//! serde_json reads such a line into borrowed parts at about 25
//! instructions a byte (every string scanned for escapes, every raw value
//! skipped and then checked again as UTF-8), and each part read on is
//! scanned again. Here [`object`] checks a line once, every byte of it,
//! and [`members`] cuts an object that was already checked into its
//! members without looking at its bytes again.
//!
//! It only cuts: values are handed on as their JSON text, verbatim. It
//! decodes nothing, so a key written with escapes is handed on as `None`
//! and its reader falls back to serde. It accepts exactly what serde_json
//! accepts when it skips a value (RFC 8259, nesting as deep as the line
//! goes: the check keeps its own stack, it does not recurse), which the
//! tests check against serde_json.

/// Reads `text`, which must be one JSON object (whitespace around it
/// aside), checking all of it; hands each member to `member` as its key
/// (`None` if written with escapes) and its value's text. `None` when
/// `text` is not such an object.
pub fn object<'a>(text: &'a str, member: impl FnMut(Option<&'a str>, &'a str)) -> Option<()> {
    let mut scan = Scan {
        text,
        bytes: text.as_bytes(),
        at: 0,
    };
    scan.space();
    if scan.peek() != Some(b'{') {
        return None;
    }
    scan.members(member)?;
    scan.space();
    (scan.at == scan.bytes.len()).then_some(())
}

/// Hands each member of `text`, an object that [`object`] already checked
/// (as a whole or as part of a larger object), to `member` as [`object`]
/// does, without checking its bytes again. `None` if `text` is not an
/// object.
pub fn members<'a>(text: &'a str, mut member: impl FnMut(Option<&'a str>, &'a str)) -> Option<()> {
    let bytes = text.as_bytes();
    let mut at = skip_space(bytes, 0);
    if bytes.get(at) != Some(&b'{') {
        return None;
    }
    at = skip_space(bytes, at + 1);
    if bytes.get(at) == Some(&b'}') {
        return Some(());
    }
    loop {
        let key_start = at;
        let (key_end, escaped) = string_end(bytes, at)?;
        at = skip_space(bytes, key_end);
        if bytes.get(at) != Some(&b':') {
            return None;
        }
        at = skip_space(bytes, at + 1);
        let value_start = at;
        at = value_end(bytes, at)?;
        let key = (!escaped).then(|| &text[key_start + 1..key_end - 1]);
        member(key, &text[value_start..at]);
        at = skip_space(bytes, at);
        match bytes.get(at) {
            Some(b',') => at = skip_space(bytes, at + 1),
            Some(b'}') => return Some(()),
            _ => return None,
        }
    }
}

/// The values of the members of `text` (a checked object, as for
/// [`members`]) named `keys`, in their order; `None` if it has a member of
/// another name (or one written with escapes), names one twice, or is not
/// an object.
pub fn only<'a, const N: usize>(text: &'a str, keys: [&str; N]) -> Option<[Option<&'a str>; N]> {
    let mut values = [None; N];
    let mut fits = true;
    members(text, |key, value| {
        match key.and_then(|key| keys.iter().position(|known| *known == key)) {
            Some(i) => fits &= values[i].replace(value).is_none(),
            None => fits = false,
        }
    })?;
    fits.then_some(values)
}

/// The text of JSON string `value` (with its quotes), if it has no
/// escapes; `None` for any other value.
#[must_use]
pub fn plain_str(value: &str) -> Option<&str> {
    let inner = value.strip_prefix('"')?.strip_suffix('"')?;
    (!inner.contains('\\')).then_some(inner)
}

fn skip_space(bytes: &[u8], mut at: usize) -> usize {
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = bytes.get(at) {
        at += 1;
    }
    at
}

/// Where the string starting at `at` (a checked one) ends, just past its
/// closing quote, and whether it has escapes.
fn string_end(bytes: &[u8], at: usize) -> Option<(usize, bool)> {
    if bytes.get(at) != Some(&b'"') {
        return None;
    }
    let mut escaped = false;
    let mut i = at + 1;
    loop {
        i = to_special(bytes, i);
        match *bytes.get(i)? {
            b'"' => return Some((i + 1, escaped)),
            b'\\' => {
                escaped = true;
                i += 2;
            }
            _ => i += 1,
        }
    }
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// Eight bytes at a time: the offset of the first of the bytes from `at`
/// on that `flag` flags in a word (the high bit of each flagged byte; the
/// lowest flag must be exact), or else that `is` says yes to.
fn find(bytes: &[u8], mut at: usize, flag: impl Fn(u64) -> u64, is: impl Fn(u8) -> bool) -> usize {
    while let Some(chunk) = bytes.get(at..at + 8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let flagged = flag(u64::from_le_bytes(word));
        if flagged != 0 {
            return at + (flagged.trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    while bytes.get(at).is_some_and(|&b| !is(b)) {
        at += 1;
    }
    at
}

/// The bytes of `word` equal to `byte`: a zero byte after the XOR, found
/// by the borrow it makes (exact for the lowest one).
fn equal(word: u64, byte: u8) -> u64 {
    let v = word ^ (ONES * u64::from(byte));
    v.wrapping_sub(ONES) & !v & HIGH
}

/// The first byte from `at` on that a string's scan must look at: a
/// quote, a backslash or a control character (or the end).
fn to_special(bytes: &[u8], at: usize) -> usize {
    find(
        bytes,
        at,
        |w| equal(w, b'"') | equal(w, b'\\') | (w.wrapping_sub(ONES * 0x20) & !w & HIGH),
        |b| matches!(b, b'"' | b'\\' | 0..0x20),
    )
}

/// Where the (checked) value starting at `at` ends.
fn value_end(bytes: &[u8], at: usize) -> Option<usize> {
    match bytes.get(at)? {
        b'"' => string_end(bytes, at).map(|(end, _)| end),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut i = at;
            loop {
                match bytes.get(i)? {
                    b'"' => {
                        i = string_end(bytes, i)?.0;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
        }
        _ => {
            let mut i = at;
            while let Some(b) = bytes.get(i) {
                if matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r') {
                    break;
                }
                i += 1;
            }
            Some(i)
        }
    }
}

/// A checking scan of JSON text.
struct Scan<'a> {
    text: &'a str,
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Scan<'a> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn space(&mut self) {
        self.at = skip_space(self.bytes, self.at);
    }

    fn eat(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.at += 1)
    }

    /// The object at `at`; each member to `member`.
    fn members(&mut self, mut member: impl FnMut(Option<&'a str>, &'a str)) -> Option<()> {
        self.eat(b'{')?;
        self.space();
        if self.eat(b'}').is_some() {
            return Some(());
        }
        loop {
            let key_start = self.at;
            let escaped = self.string()?;
            let key_end = self.at;
            self.space();
            self.eat(b':')?;
            self.space();
            let value_start = self.at;
            self.value()?;
            let key = (!escaped).then(|| &self.text[key_start + 1..key_end - 1]);
            member(key, &self.text[value_start..self.at]);
            self.space();
            match self.peek()? {
                b',' => {
                    self.at += 1;
                    self.space();
                }
                b'}' => {
                    self.at += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// The value at `at`, however deep it nests.
    fn value(&mut self) -> Option<()> {
        let mut open = Nesting::default();
        loop {
            // A value starts here.
            match self.peek()? {
                b'{' => {
                    self.at += 1;
                    self.space();
                    if self.eat(b'}').is_none() {
                        open.push(true);
                        self.key()?;
                        continue;
                    }
                }
                b'[' => {
                    self.at += 1;
                    self.space();
                    if self.eat(b']').is_none() {
                        open.push(false);
                        continue;
                    }
                }
                b'"' => {
                    self.string()?;
                }
                b't' => self.literal(b"true")?,
                b'f' => self.literal(b"false")?,
                b'n' => self.literal(b"null")?,
                b'-' | b'0'..=b'9' => self.number()?,
                _ => return None,
            }
            // A value ended: what follows it in the containers it is in.
            loop {
                let Some(object) = open.top() else {
                    return Some(());
                };
                self.space();
                match self.peek()? {
                    b',' => {
                        self.at += 1;
                        self.space();
                        if object {
                            self.key()?;
                        }
                        break;
                    }
                    b'}' if object => {
                        self.at += 1;
                        open.pop();
                    }
                    b']' if !object => {
                        self.at += 1;
                        open.pop();
                    }
                    _ => return None,
                }
            }
        }
    }

    /// A member's key and its colon, up to its value.
    fn key(&mut self) -> Option<()> {
        self.string()?;
        self.space();
        self.eat(b':')?;
        self.space();
        Some(())
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.at + word.len();
        (self.bytes.get(self.at..end)? == word).then(|| self.at = end)
    }

    /// A string (the text is UTF-8 already); whether it has escapes.
    fn string(&mut self) -> Option<bool> {
        self.eat(b'"')?;
        let mut escaped = false;
        loop {
            self.at = to_special(self.bytes, self.at);
            let b = self.peek()?;
            self.at += 1;
            match b {
                b'"' => return Some(escaped),
                b'\\' => {
                    escaped = true;
                    match self.peek()? {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.at += 1,
                        b'u' => {
                            let hex = self.bytes.get(self.at + 1..self.at + 5)?;
                            if !hex.iter().all(u8::is_ascii_hexdigit) {
                                return None;
                            }
                            self.at += 5;
                        }
                        _ => return None,
                    }
                }
                // A control character.
                _ => return None,
            }
        }
    }

    fn number(&mut self) -> Option<()> {
        let _ = self.eat(b'-');
        match self.peek()? {
            b'0' => self.at += 1,
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.eat(b'.').is_some() {
            if !self.peek()?.is_ascii_digit() {
                return None;
            }
            self.digits();
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.at += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.at += 1;
            }
            if !self.peek()?.is_ascii_digit() {
                return None;
            }
            self.digits();
        }
        Some(())
    }

    fn digits(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.at += 1;
        }
    }
}

/// The containers a value is in, innermost last: objects (`true`) and
/// arrays. The first 64 take no allocation.
#[derive(Default)]
struct Nesting {
    depth: usize,
    shallow: u64,
    deep: Vec<bool>,
}

impl Nesting {
    fn push(&mut self, object: bool) {
        if self.depth < 64 {
            let bit = 1u64 << self.depth;
            if object {
                self.shallow |= bit;
            } else {
                self.shallow &= !bit;
            }
        } else {
            self.deep.push(object);
        }
        self.depth += 1;
    }

    fn pop(&mut self) {
        self.depth -= 1;
        if self.depth >= 64 {
            self.deep.pop();
        }
    }

    fn top(&self) -> Option<bool> {
        let top = self.depth.checked_sub(1)?;
        Some(if top < 64 {
            self.shallow & (1u64 << top) != 0
        } else {
            self.deep[top - 64]
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    type Members = Vec<(Option<String>, String)>;
    type Member<'m> = &'m mut dyn FnMut(Option<&str>, &str);

    /// What `read` hands on of `text`.
    fn cut_with(read: fn(&str, Member<'_>) -> Option<()>, text: &str) -> Option<Members> {
        let mut out = Vec::new();
        read(text, &mut |k, v| {
            out.push((k.map(str::to_string), v.to_string()));
        })?;
        Some(out)
    }

    fn cut(text: &str) -> Option<Members> {
        cut_with(|text, member| object(text, member), text)
    }

    fn cut_checked(text: &str) -> Option<Members> {
        cut_with(|text, member| members(text, member), text)
    }

    /// Whether serde_json takes `text` as an object, reading it as the
    /// express paths did (skipping values, not building them).
    fn serde_accepts_object(text: &str) -> bool {
        text.trim_start().starts_with('{')
            && serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok()
    }

    #[test]
    fn members_come_as_their_text() {
        let line = r#" {"jsonrpc":"2.0", "id" : 7,"params":{"name":"a\"b","arguments":{"x":[1,{"y":null}]}},"k\u0065y":true} "#;
        let expected = vec![
            (Some("jsonrpc".into()), r#""2.0""#.into()),
            (Some("id".into()), "7".into()),
            (
                Some("params".into()),
                r#"{"name":"a\"b","arguments":{"x":[1,{"y":null}]}}"#.into(),
            ),
            (None, "true".into()),
        ];
        assert_eq!(cut(line), Some(expected.clone()));
        assert_eq!(cut_checked(line), Some(expected));
        let params = &cut(line).unwrap()[2].1;
        assert_eq!(
            cut_checked(params),
            Some(vec![
                (Some("name".into()), r#""a\"b""#.into()),
                (Some("arguments".into()), r#"{"x":[1,{"y":null}]}"#.into()),
            ])
        );
        assert_eq!(
            only(params, ["arguments", "name", "other"]),
            Some([Some(r#"{"x":[1,{"y":null}]}"#), Some(r#""a\"b""#), None])
        );
        assert_eq!(only(params, ["name"]), None, "a member of another name");
        assert_eq!(only(r#"{"a":1,"a":2}"#, ["a"]), None, "a member twice");
        assert_eq!(plain_str(r#""tools/call""#), Some("tools/call"));
        assert_eq!(plain_str(r#""a\"b""#), None);
        assert_eq!(plain_str("7"), None);
    }

    #[test]
    fn what_serde_refuses_is_refused() {
        for text in [
            "",
            "[]",
            "{",
            r#"{"a":1,}"#,
            r#"{"a":01}"#,
            r#"{"a":1.}"#,
            r#"{"a":-}"#,
            r#"{"a":1e}"#,
            r#"{"a":tru}"#,
            r#"{"a":"\x"}"#,
            r#"{"a":"\u12g4"}"#,
            "{\"a\":\"\u{1}\"}",
            r#"{"a":[1 2]}"#,
            r#"{"a" 1}"#,
            r#"{a:1}"#,
            r#"{"a":1} x"#,
            r#"{"a":1}{}"#,
        ] {
            assert_eq!(cut(text), None, "{text:?}");
            assert!(!serde_accepts_object(text), "{text:?}");
        }
    }

    #[test]
    fn strings_end_where_they_end_whatever_the_alignment() {
        for before in 0..20 {
            for inner in ["", "\\\"", "\\\\", "é€", "\\u00e9", "\u{1}", "\\q"] {
                for after in [0, 3, 9] {
                    let value = format!("\"{}{inner}{}\"", "a".repeat(before), "b".repeat(after));
                    let text = format!("{{{value}:{value},\"k\":1}}");
                    let ours = cut(&text);
                    assert_eq!(ours.is_some(), serde_accepts_object(&text), "{text}");
                    if let Some(members) = ours {
                        assert_eq!(members[0].1, value, "{text}");
                        assert_eq!(cut_checked(&text), Some(members));
                    }
                }
            }
        }
    }

    #[test]
    fn nesting_takes_no_recursion() {
        for depth in [63, 64, 65, 200, 100_000] {
            let deep = format!(
                "{{\"a\":{}1{}}}",
                "[{\"b\":".repeat(depth),
                "}]".repeat(depth)
            );
            assert!(cut(&deep).is_some(), "{depth}");
            assert!(cut_checked(&deep).is_some(), "{depth}");
            assert!(serde_accepts_object(&deep), "{depth}");
            let unbalanced = &deep[..deep.len() - 2];
            assert_eq!(cut(unbalanced), None, "{depth}");
            assert!(!serde_accepts_object(unbalanced), "{depth}");
        }
    }

    fn value() -> impl Strategy<Value = serde_json::Value> {
        use serde_json::Value;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            (-1e6f64..1e6).prop_map(Value::from),
            "[a-z\"\\\\/\u{0}-\u{1f}é€😀]{0,8}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map("[a-z\"\\\\]{0,4}", inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// An object's JSON text, compact or pretty, and maybe damaged at one
    /// byte (removed, or replaced by one that often matters).
    fn text() -> impl Strategy<Value = String> {
        let object = prop::collection::btree_map("[a-z]{0,4}", value(), 0..5)
            .prop_map(|m| serde_json::Value::Object(m.into_iter().collect()));
        (
            object,
            any::<bool>(),
            any::<Option<(prop::sample::Index, u8)>>(),
        )
            .prop_map(|(object, pretty, damage)| {
                let text = if pretty {
                    serde_json::to_string_pretty(&object).unwrap()
                } else {
                    serde_json::to_string(&object).unwrap()
                };
                let Some((at, byte)) = damage else {
                    return text;
                };
                let mut bytes = text.into_bytes();
                let at = at.index(bytes.len());
                const SWAPS: &[u8] = b"{}[],:\\\"0.e-tn \x01x";
                match SWAPS.get(usize::from(byte) % (SWAPS.len() + 1)) {
                    Some(b) => bytes[at] = *b,
                    None => {
                        bytes.remove(at);
                    }
                }
                String::from_utf8(bytes).unwrap_or_default()
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn accepts_what_serde_accepts(text in text()) {
            let ours = cut(&text);
            prop_assert_eq!(ours.is_some(), serde_accepts_object(&text), "{}", text);
            if let Some(members) = ours {
                // A checked object cuts the same way.
                prop_assert_eq!(cut_checked(&text), Some(members.clone()));
                for (key, raw) in members {
                    prop_assert!(serde_json::from_str::<serde::de::IgnoredAny>(&raw).is_ok(), "{}", raw);
                    if let Some(key) = key {
                        prop_assert!(!key.contains('\\'));
                    }
                }
            }
        }
    }
}
