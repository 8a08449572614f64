//! Every problem in a catalog, not only the first.
//!
//! Deserialization stops at the first error, and `yaml_serde` cannot resume
//! after one. So when the whole file fails, each of its sections is checked
//! again on its own: every top-level key, and under `servers` every server.
//! A section's document is the catalog with every other line emptied, so
//! lines and columns are those of the file, plus what a document needs to
//! parse (`version: 1`, one placeholder server) appended after its end.
//! Only errors inside the section's own lines count, so the scaffolding
//! never reports anything. Sections are independent: no check in the
//! catalog spans two of them (profiles name tools by pattern, not servers;
//! `gateway.auth` names profiles, known to every section from a lenient
//! read of the whole file first, see `profile_names` in `lib.rs`).
//!
//! The split is made from the YAML event stream (`saphyr-parser`, which
//! gives every event its line), and only where it is safe: block mappings
//! with one key per line, and no aliases (an alias may point into another
//! section). Anything else, any syntax error, and a catalog so large that
//! re-reading it once per section would be slow, is reported as the whole
//! file's first error alone.

use std::ops::Range;

use saphyr_parser::{Event, Parser};

/// How many bytes of YAML all the sections' documents may add up to: each
/// is as long as the file, and a huge catalog of tiny servers must not make
/// `validate` slow. Past this, only the first problem is reported.
const MAX_WORK: usize = 64 * 1024 * 1024;

/// Appended to a section's document so it has what every catalog needs.
const VERSION: &str = "version: 1\n";
const SERVERS: &str = "servers:\n  section-placeholder:\n    image: placeholder\n";

/// A part of the catalog checked on its own: its lines (1-based, end
/// exclusive), and the line of the `servers:` key it sits under, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Section {
    lines: Range<usize>,
    under_servers: Option<usize>,
    /// The top-level key this section is, or holds a server of.
    key: String,
}

impl Section {
    /// Whether an error at `line` belongs to this section.
    pub(crate) fn holds(&self, line: usize) -> bool {
        self.lines.contains(&line)
    }

    /// The catalog as this section alone would have it, lines unmoved.
    pub(crate) fn document(&self, text: &str) -> String {
        let mut document = String::with_capacity(text.len() + SERVERS.len());
        for (index, line) in text.split_inclusive('\n').enumerate() {
            let number = index + 1;
            if self.holds(number) || self.under_servers == Some(number) {
                document.push_str(line);
            } else if line.ends_with('\n') {
                document.push('\n');
            }
        }
        if !document.is_empty() && !document.ends_with('\n') {
            document.push('\n');
        }
        if self.key != "version" {
            document.push_str(VERSION);
        }
        if self.key != "servers" {
            document.push_str(SERVERS);
        }
        document
    }
}

/// The sections of `text`, in file order, or `None` when it cannot be
/// split safely.
pub(crate) fn sections(text: &str) -> Option<Vec<Section>> {
    let mut events = Vec::new();
    for event in Parser::new_from_str(text) {
        let (event, span) = event.ok()?;
        if matches!(event, Event::Alias(_)) {
            return None;
        }
        events.push((event, span.start.line()));
    }
    let end = text.lines().count() + 1;
    let top = events
        .iter()
        .position(|(e, _)| matches!(e, Event::MappingStart(..)))?;
    // Only one document: a second one is the whole file's error.
    let documents = events
        .iter()
        .filter(|(e, _)| matches!(e, Event::DocumentStart(_)))
        .count();
    if documents != 1 {
        return None;
    }
    let keys = entries(&events, top, text)?;
    let mut sections = Vec::new();
    for (at, entry) in keys.iter().enumerate() {
        let next = keys.get(at + 1).map_or(end, |e| e.line);
        let servers = (entry.key == "servers")
            .then(|| entries(&events, entry.value, text))
            .flatten()
            .filter(|servers| servers.first().is_some_and(|s| s.line > entry.line));
        match servers {
            Some(servers) if !servers.is_empty() => {
                for (at, server) in servers.iter().enumerate() {
                    let until = servers.get(at + 1).map_or(next, |s| s.line);
                    sections.push(Section {
                        lines: server.line..until,
                        under_servers: Some(entry.line),
                        key: entry.key.clone(),
                    });
                }
            }
            _ => sections.push(Section {
                lines: entry.line..next,
                under_servers: None,
                key: entry.key.clone(),
            }),
        }
    }
    (sections.len().saturating_mul(text.len()) <= MAX_WORK).then_some(sections)
}

/// One key of a mapping: its text, its line, and the index of the event
/// its value starts at.
struct Entry {
    key: String,
    line: usize,
    value: usize,
}

/// The entries of the block mapping starting at event `start`, each key
/// first on its own line; `None` for anything else.
fn entries(events: &[(Event<'_>, usize)], start: usize, text: &str) -> Option<Vec<Entry>> {
    let (Event::MappingStart(..), _) = events.get(start)? else {
        return None;
    };
    let mut found: Vec<Entry> = Vec::new();
    let mut at = start + 1;
    loop {
        match events.get(at)? {
            (Event::MappingEnd, _) => return Some(found),
            (Event::Scalar(key, ..), line) => {
                if found.last().is_some_and(|last| last.line >= *line)
                    || !starts_line(text, *line, key)
                {
                    return None;
                }
                found.push(Entry {
                    key: key.to_string(),
                    line: *line,
                    value: at + 1,
                });
                at = skip(events, at + 1)?;
            }
            _ => return None,
        }
    }
}

/// Whether line `line` of `text` begins (after indentation) with `key`,
/// as a block mapping's key does; a flow mapping's does not.
fn starts_line(text: &str, line: usize, key: &str) -> bool {
    let line = line
        .checked_sub(1)
        .and_then(|index| text.lines().nth(index));
    line.is_some_and(|l| {
        let l = l.trim_start().trim_start_matches(['"', '\'']);
        !key.is_empty() && l.starts_with(key)
    })
}

/// The index of the event after the node starting at `at`.
fn skip(events: &[(Event<'_>, usize)], at: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut at = at;
    loop {
        match &events.get(at)?.0 {
            Event::MappingStart(..) | Event::SequenceStart(..) => depth += 1,
            Event::MappingEnd | Event::SequenceEnd => depth = depth.checked_sub(1)?,
            Event::Scalar(..) => {}
            _ => return None,
        }
        at += 1;
        if depth == 0 {
            return Some(at);
        }
    }
}
