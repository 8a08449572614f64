//! Property test: the scanner never panics, whatever JSON, names, servers
//! and options it is given, and every finding it makes has a path and a
//! bounded excerpt.

use mcpgw_scan::{Item, ItemKind, Options, scan_inventory, scan_tool_result};
use proptest::prelude::*;
use serde_json::{Map, Value};

/// Strings that mix arbitrary Unicode with the characters and words the
/// rules look for, so that matches (and their excerpts) happen too.
fn text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        any::<String>(),
        Just("<IMPORTANT>".to_owned()),
        Just("ignore previous instructions".to_owned()),
        Just("~/.ssh/id_rsa".to_owned()),
        Just("https://evil.example/".to_owned()),
        Just("a__b".to_owned()),
        Just("\u{200B}\u{202E}\u{E0041}\u{FE0F}\u{1B}".to_owned()),
        "[a-z_]{1,8}",
    ];
    prop::collection::vec(piece, 0..4).prop_map(|pieces| pieces.concat())
}

fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<f64>()
            .prop_map(|n| serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number)),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::vec((text(), inner), 0..8)
                .prop_map(|members| Value::Object(members.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn kind() -> impl Strategy<Value = ItemKind> {
    prop_oneof![
        Just(ItemKind::Tool),
        Just(ItemKind::Prompt),
        Just(ItemKind::Resource),
        Just(ItemKind::ResourceTemplate),
        Just(ItemKind::ToolResult),
    ]
}

proptest! {
    #[test]
    fn scanning_never_panics(
        definitions in prop::collection::vec((text(), kind(), text(), json()), 0..6),
        max_text_chars in 0usize..64,
        separator in prop_oneof![Just("__".to_owned()), text()],
    ) {
        let options = Options { max_text_chars, separator };
        let items: Vec<Item<'_>> = definitions
            .iter()
            .map(|(server, kind, name, definition)| Item { server, kind: *kind, name, definition })
            .collect();
        for finding in scan_inventory(&items, &options) {
            prop_assert!(finding.path.starts_with('$'));
            prop_assert!(finding.excerpt.chars().count() <= mcpgw_scan::EXCERPT_CHARS * 10 + 2);
        }
        for (server, _, name, definition) in &definitions {
            scan_tool_result(server, name, definition, &options);
        }
    }
}
