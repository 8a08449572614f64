//! Detection on the corpus of poisoned definitions in
//! `tests/corpus/poisoned.json`: every entry, scanned against the corpus's
//! honest context tools, must be caught by each rule it expects. The
//! detection rate is 100% by construction of the assertion; the entries
//! were written from public attack write-ups, not from the rules.

use std::collections::BTreeSet;

use mcpgw_scan::{Item, ItemKind, Options, rule, scan_inventory, scan_items};
use serde::Deserialize;
use serde_json::Value;

#[derive(Deserialize)]
struct Corpus {
    context: Vec<Definition>,
    entries: Vec<Entry>,
    misses: Vec<Miss>,
}

#[derive(Deserialize)]
struct Definition {
    server: String,
    kind: ItemKind,
    definition: Value,
}

#[derive(Deserialize)]
struct Entry {
    id: String,
    #[serde(flatten)]
    item: Definition,
    expect: Vec<String>,
}

#[derive(Deserialize)]
struct Miss {
    id: String,
    #[serde(flatten)]
    item: Definition,
}

impl Definition {
    fn item<'a>(&'a self, tool: &'a str) -> Item<'a> {
        Item {
            server: &self.server,
            kind: self.kind,
            name: self.definition["name"].as_str().unwrap_or(tool),
            definition: &self.definition,
        }
    }
}

fn corpus() -> Corpus {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/corpus/poisoned.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The rules that fire on `definition`, scanned against `context`.
fn rules_caught(definition: &Definition, context: &[Item<'_>]) -> BTreeSet<&'static str> {
    // Tool results carry no name of their own; the corpus calls them `result`.
    scan_items(&[definition.item("result")], context, &Options::default())
        .into_iter()
        .map(|finding| finding.rule)
        .collect()
}

#[test]
fn every_poisoned_entry_is_caught_by_the_rules_it_expects() {
    let corpus = corpus();
    let context: Vec<_> = corpus.context.iter().map(|d| d.item("")).collect();
    assert!(
        corpus.entries.len() >= 30,
        "the corpus keeps at least 30 entries"
    );
    let mut missed = Vec::new();
    let mut caught = 0;
    for entry in &corpus.entries {
        for id in &entry.expect {
            assert!(rule(id).is_some(), "{}: no rule `{id}`", entry.id);
        }
        let found = rules_caught(&entry.item, &context);
        let absent: Vec<_> = entry
            .expect
            .iter()
            .filter(|id| !found.contains(id.as_str()))
            .collect();
        if absent.is_empty() {
            caught += 1;
        } else {
            missed.push(format!("{}: missed {absent:?}, found {found:?}", entry.id));
        }
    }
    assert!(
        missed.is_empty(),
        "caught {caught} of {} entries; {missed:#?}",
        corpus.entries.len()
    );
}

#[test]
fn the_honest_context_is_clean() {
    let corpus = corpus();
    let context: Vec<_> = corpus.context.iter().map(|d| d.item("")).collect();
    assert_eq!(scan_inventory(&context, &Options::default()), []);
}

#[test]
fn the_documented_misses_are_still_missed() {
    // If one starts being caught, move it to `entries` with its rule.
    let corpus = corpus();
    let context: Vec<_> = corpus.context.iter().map(|d| d.item("")).collect();
    for miss in &corpus.misses {
        let found = rules_caught(&miss.item, &context);
        assert!(found.is_empty(), "{} is now caught by {found:?}", miss.id);
    }
}
