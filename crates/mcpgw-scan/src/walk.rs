//! The generic JSON walk: every string in a value, object keys included,
//! with the path to it and the kind of field it sits in.
//!
//! The walk knows JSON and a little JSON Schema (which keys hold samples,
//! which hold locators such as `$ref`); it knows nothing of rules. It uses
//! an explicit stack, so no nesting depth can overflow the call stack, and
//! builds a path string only when asked (for a finding).

use std::fmt::Write as _;

use serde_json::Value;

use crate::finding::Part;
use crate::unicode;

/// One step of a path into a JSON value.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Segment<'a> {
    /// An object member, by key.
    Key(&'a str),
    /// An array element, by index.
    Index(usize),
}

/// What kind of field a string sits in, judged by the nearest object key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Field {
    /// Text for the model to read: descriptions, titles, names, keys, and
    /// any field the walk does not recognise.
    Prose,
    /// A sample value: anything under `default`, `examples`, `example`,
    /// `const` or `enum`. The model may pass it on as an argument.
    Sample,
    /// An address or schema keyword the model does not read as prose:
    /// `$schema`, `$ref`, `uri`, `uriTemplate`, `src`, `mimeType`,
    /// `format`, `pattern`, `type`, ...
    Locator,
}

/// A string found by the walk.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Text<'a> {
    pub(crate) text: &'a str,
    pub(crate) part: Part,
    pub(crate) field: Field,
}

fn field_under(key: &str) -> Field {
    match key {
        "default" | "examples" | "example" | "const" | "enum" => Field::Sample,
        "$schema" | "$id" | "$ref" | "$anchor" | "$dynamicRef" | "$dynamicAnchor" | "uri"
        | "uriTemplate" | "src" | "mimeType" | "format" | "pattern" | "contentEncoding"
        | "contentMediaType" | "type" => Field::Locator,
        _ => Field::Prose,
    }
}

/// Declares the vocabulary once, as a list for tests and as a `match` for
/// the scan (which compiles to a switch on length, then a few compares).
macro_rules! vocabulary {
    ($($word:literal),* $(,)?) => {
        /// JSON Schema keywords, MCP field names and JSON type names: the
        /// strings every definition repeats. None of them can match a rule
        /// (a test checks), so the scan skips them, which halves the
        /// strings it reads.
        #[cfg(test)]
        pub(crate) const VOCABULARY: &[&str] = &[$($word),*];

        /// Whether `text` is one of the words of JSON Schema and MCP
        /// themselves.
        pub(crate) fn is_vocabulary(text: &str) -> bool {
            matches!(text, $($word)|*)
        }
    };
}

vocabulary! {
    "$comment", "$defs", "$id", "$ref", "$schema", "_meta", "additionalProperties", "allOf",
    "annotations", "anyOf", "arguments", "array", "assistant", "audience", "audio", "blob",
    "boolean", "const", "contains", "content", "contentEncoding", "contentMediaType", "data",
    "default", "definitions", "dependentRequired", "deprecated", "description",
    "destructiveHint", "else", "enum", "example", "examples", "exclusiveMaximum",
    "exclusiveMinimum", "format", "icons", "idempotentHint", "if", "image", "inputSchema",
    "integer", "isError", "items", "lastModified", "maxItems", "maxLength", "maxProperties",
    "maximum", "mimeType", "minItems", "minLength", "minProperties", "minimum", "multipleOf",
    "name", "not", "null", "nullable", "number", "object", "oneOf", "openWorldHint",
    "outputSchema", "pattern", "patternProperties", "prefixItems", "priority", "properties",
    "propertyNames", "readOnly", "readOnlyHint", "required", "resource", "resource_link",
    "size", "sizes", "src", "string", "structuredContent", "text", "theme", "then", "title",
    "type", "uniqueItems", "uri", "uriTemplate", "user", "writeOnly",
}

/// The children of an object or array still to visit.
enum Children<'a> {
    Members {
        members: serde_json::map::Iter<'a>,
        /// Whether the object is (inside) a sample, which its members
        /// inherit.
        in_sample: bool,
    },
    Elements {
        elements: std::iter::Enumerate<std::slice::Iter<'a, Value>>,
        /// The field strings directly in the array belong to.
        field: Field,
    },
}

/// A child to visit: how to reach it, the value, the field strings
/// directly in it belong to, and the field of its key (when it has one).
type Child<'a> = (Segment<'a>, &'a Value, Field, Field);

impl<'a> Children<'a> {
    fn of(value: &'a Value, field: Field) -> Option<Self> {
        match value {
            Value::Object(members) => Some(Children::Members {
                members: members.iter(),
                in_sample: field == Field::Sample,
            }),
            Value::Array(elements) => Some(Children::Elements {
                elements: elements.iter().enumerate(),
                field,
            }),
            Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => None,
        }
    }

    fn next(&mut self) -> Option<Child<'a>> {
        match self {
            Children::Members { members, in_sample } => {
                let (key, member) = members.next()?;
                let segment = Segment::Key(key);
                Some(if *in_sample {
                    (segment, member, Field::Sample, Field::Sample)
                } else {
                    (segment, member, field_under(key), Field::Prose)
                })
            }
            Children::Elements { elements, field } => {
                let (index, element) = elements.next()?;
                Some((Segment::Index(index), element, *field, *field))
            }
        }
    }
}

/// Calls `visit` with the path and text of every string in `value`, each
/// object key just before its value, in document order.
pub(crate) fn walk<'a>(value: &'a Value, mut visit: impl FnMut(&[Segment<'a>], Text<'a>)) {
    if let Value::String(text) = value {
        let (part, field) = (Part::Value, Field::Prose);
        visit(&[], Text { text, part, field });
    }
    // One entry per open container, innermost last; `path` holds the
    // segment to each open container below the root, then the child's.
    // Room for the depth of a typical schema, so that neither grows.
    let mut open: Vec<Children<'a>> = Vec::with_capacity(16);
    open.extend(Children::of(value, Field::Prose));
    let mut path: Vec<Segment<'a>> = Vec::with_capacity(16);
    while let Some(children) = open.last_mut() {
        let Some((segment, child, field, key_field)) = children.next() else {
            open.pop();
            path.pop();
            continue;
        };
        path.push(segment);
        if let Segment::Key(key) = segment {
            let (part, field) = (Part::Key, key_field);
            visit(
                &path,
                Text {
                    text: key,
                    part,
                    field,
                },
            );
        }
        if let Value::String(text) = child {
            let part = Part::Value;
            visit(&path, Text { text, part, field });
        }
        match Children::of(child, field) {
            Some(grandchildren) => open.push(grandchildren),
            None => {
                path.pop();
            }
        }
    }
}

/// The path as an RFC 9535 normalized path: `$['a'][0]['b']`. It differs
/// from the normalized form in one way: invisible characters in keys are
/// escaped as `\uXXXX` too, so that a path never hides what it names; it
/// remains a valid RFC 9535 query.
pub(crate) fn normalized_path(path: &[Segment<'_>]) -> String {
    let mut out = String::from("$");
    for segment in path {
        match segment {
            Segment::Index(index) => {
                // Writing to a String cannot fail.
                let _ = write!(out, "[{index}]");
            }
            Segment::Key(key) => {
                out.push_str("['");
                for c in key.chars() {
                    escape_into(c, &mut out);
                }
                out.push_str("']");
            }
        }
    }
    out
}

fn escape_into(c: char, out: &mut String) {
    match c {
        '\'' => out.push_str("\\'"),
        '\\' => out.push_str("\\\\"),
        '\u{8}' => out.push_str("\\b"),
        '\u{c}' => out.push_str("\\f"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c if unicode::is_invisible(c) => {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                // Writing to a String cannot fail.
                let _ = write!(out, "\\u{unit:04x}");
            }
        }
        c => out.push(c),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn strings(value: &Value) -> Vec<String> {
        let mut out = Vec::new();
        walk(value, |path, text| {
            let part = match text.part {
                Part::Key => "key",
                Part::Value => "value",
            };
            out.push(format!(
                "{} {part} {:?} {:?}",
                normalized_path(path),
                text.field,
                text.text
            ));
        });
        out
    }

    #[test]
    fn every_string_and_key_is_visited_with_its_path_and_field() {
        let value = json!({
            "description": "d",
            "inputSchema": {
                "$schema": "s",
                "properties": {"x": {"enum": ["a", {"k": "v"}], "default": {"u": "w"}}}
            }
        });
        let expect = [
            "$['description'] key Prose \"description\"",
            "$['inputSchema'] key Prose \"inputSchema\"",
            "$['description'] value Prose \"d\"",
            "$['inputSchema']['$schema'] key Prose \"$schema\"",
            "$['inputSchema']['properties'] key Prose \"properties\"",
            "$['inputSchema']['$schema'] value Locator \"s\"",
            "$['inputSchema']['properties']['x'] key Prose \"x\"",
            "$['inputSchema']['properties']['x']['enum'] key Prose \"enum\"",
            "$['inputSchema']['properties']['x']['default'] key Prose \"default\"",
            "$['inputSchema']['properties']['x']['enum'][0] value Sample \"a\"",
            "$['inputSchema']['properties']['x']['enum'][1]['k'] key Sample \"k\"",
            "$['inputSchema']['properties']['x']['enum'][1]['k'] value Sample \"v\"",
            "$['inputSchema']['properties']['x']['default']['u'] key Sample \"u\"",
            "$['inputSchema']['properties']['x']['default']['u'] value Sample \"w\"",
        ];
        let mut got = strings(&value);
        let mut expect: Vec<String> = expect.iter().map(ToString::to_string).collect();
        // serde_json may or may not keep insertion order; the walk follows
        // whichever order the map has, so compare as sets here.
        got.sort();
        expect.sort();
        assert_eq!(got, expect);
    }

    #[test]
    fn paths_escape_quotes_controls_and_invisible_characters() {
        let path = [
            Segment::Key("it's"),
            Segment::Index(3),
            Segment::Key("a\\b\nc\u{200B}\u{E0041}"),
        ];
        assert_eq!(
            normalized_path(&path),
            "$['it\\'s'][3]['a\\\\b\\nc\\u200b\\udb40\\udc41']"
        );
    }

    #[test]
    fn deep_nesting_does_not_overflow_the_stack() {
        let mut value = json!("bottom");
        for _ in 0..100_000 {
            value = Value::Array(vec![value]);
        }
        let mut seen = 0;
        walk(&value, |path, _| seen += path.len());
        assert_eq!(seen, 100_000);
        // Dropping a deeply nested Value recurses inside serde_json; leak
        // it rather than test serde_json's destructor.
        std::mem::forget(value);
    }
}
