//! The one scan loop: for each item, the name checks once and the text
//! checks on every string the walk finds, then findings in a fixed order.
//!
//! Every entry point of the crate comes through here; none has a loop of
//! its own. It decides which rules apply to an item (by kind) and to a
//! string (by field), and turns hits into findings; the rules themselves
//! are in `rules.rs`.

use crate::Options;
use crate::finding::{Finding, Hit, Part};
use crate::inventory::Inventory;
use crate::item::Item;
use crate::rules::{self, Check, NameCheck, PATTERNS, RULES, TextCheck};
use crate::unicode;
use crate::walk;

/// The path the name checks report: every MCP definition has a `name`.
const NAME_PATH: &str = "$['name']";

/// Scans `items`, with `items` and `rest` as the inventory the cross-item
/// rules compare against.
pub(crate) fn scan(items: &[Item<'_>], rest: &[Item<'_>], options: &Options) -> Vec<Finding> {
    let inventory = Inventory::new(items, rest, &options.separator);
    // Each finding with its item's order and its rule's index, to sort by.
    let mut found: Vec<(usize, usize, Finding)> = Vec::new();
    for (order, item) in items.iter().enumerate() {
        for (index, rule) in RULES.iter().enumerate() {
            if let Check::Name(check) = &rule.check
                && rule.applies_to(item.kind)
                && let Some(hit) = name_hit(check, order, item, &inventory)
            {
                let finding = Finding::new(
                    rule,
                    item,
                    NAME_PATH.to_owned(),
                    Part::Value,
                    item.name,
                    hit,
                );
                found.push((order, index, finding));
            }
        }
        walk::walk(item.definition, |path, text| {
            if walk::is_vocabulary(text.text) {
                return;
            }
            let mut report = |index: usize, hit: Hit| {
                let rule = &RULES[index];
                let path = walk::normalized_path(path);
                let finding = Finding::new(rule, item, path, text.part, text.text, hit);
                found.push((order, index, finding));
            };
            let rules = rules::text_rules(item.kind, text.field);
            if PATTERNS.set.is_match(text.text) {
                let matched = PATTERNS.set.matches(text.text);
                for &index in &rules.patterns {
                    if let Some(span) = PATTERNS.find(index, &matched, text.text) {
                        report(index, Hit::at(span));
                    }
                }
            }
            let plain = unicode::is_plain(text.text);
            for &(index, check) in &rules.others {
                let hit = match check {
                    // Listed in `rules.patterns` instead.
                    TextCheck::Pattern(_) => None,
                    TextCheck::Chars(_) if plain => None,
                    TextCheck::Chars(check) => check(text.text),
                    TextCheck::Oversized => oversized(text.text, options.max_text_chars),
                    TextCheck::OtherServersTool => {
                        inventory.other_servers_tool(item.server, text.text)
                    }
                };
                if let Some(hit) = hit {
                    report(index, hit);
                }
            }
        });
    }
    // Paths sort the same whatever order serde_json keeps object members
    // in, so the order of findings depends on the input alone.
    found.sort_by(|(a_order, a_rule, a), (b_order, b_rule, b)| {
        (a_order, &a.path, a.part, a_rule).cmp(&(b_order, &b.path, b.part, b_rule))
    });
    found.into_iter().map(|(_, _, finding)| finding).collect()
}

fn oversized(text: &str, max_chars: usize) -> Option<Hit> {
    // A string of at most `max_chars` bytes has at most as many chars.
    if text.len() <= max_chars {
        return None;
    }
    let chars = text.chars().count();
    let detail = || format!("{chars} characters, over the bound of {max_chars}");
    (chars > max_chars).then(|| Hit::saying(0..0, detail()))
}

fn name_hit(
    check: &NameCheck,
    order: usize,
    item: &Item<'_>,
    inventory: &Inventory<'_>,
) -> Option<Hit> {
    let whole = 0..item.name.len();
    match check {
        NameCheck::MixedScript => unicode::is_mixed_script(item.name).then_some(Hit::at(whole)),
        NameCheck::Confusable => {
            let others = inventory.look_alikes(order, item);
            // An ASCII name that only non-ASCII names imitate is the one
            // imitated: the impostors carry the finding.
            let flagged = !item.name.is_ascii() || others.iter().any(|(_, name)| name.is_ascii());
            if others.is_empty() || !flagged {
                return None;
            }
            let list: Vec<_> = others
                .iter()
                .map(|(server, name)| format!("`{name}` of server `{server}`"))
                .collect();
            Some(Hit::saying(
                whole,
                format!("looks like {}", list.join(", ")),
            ))
        }
    }
}
