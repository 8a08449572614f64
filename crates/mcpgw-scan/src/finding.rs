//! What a scan reports: `Finding`, its ordered `Severity`, and the bounded,
//! visible excerpt of the text a rule matched.
//!
//! Findings are plain data for a table, JSON or SARIF printer; they do not
//! format themselves for a terminal and carry no colour or width logic.

use std::fmt;
use std::ops::Range;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::item::{Item, ItemKind};
use crate::rules::Rule;
use crate::unicode;

/// How bad a finding is. Ordered, so `--fail-on high` is `severity >= High`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing; not a sign of an attack by itself.
    Info,
    /// Unusual for an honest server, common enough to be innocent.
    Low,
    /// Suspicious: a human should read the text.
    Medium,
    /// Almost always an attack on the model.
    High,
    /// Text hidden from humans but read by the model.
    Critical,
}

impl Severity {
    /// Every severity, lowest first.
    pub const ALL: [Severity; 5] = [
        Severity::Info,
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ];

    /// The lowercase name, as parsed and serialized.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A severity name that is not one of `info`, `low`, `medium`, `high`,
/// `critical`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown severity `{given}`: use one of info, low, medium, high, critical")]
pub struct ParseSeverityError {
    /// What was given.
    pub given: String,
}

impl FromStr for Severity {
    type Err = ParseSeverityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Severity::ALL
            .into_iter()
            .find(|severity| severity.as_str() == s)
            .ok_or_else(|| ParseSeverityError {
                given: s.to_owned(),
            })
    }
}

/// Whether the matched text is an object key (a property name, say) or a
/// string value. A normalized path names a value, so a key's finding
/// carries the path of the member whose key it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Part {
    /// The string at `path` is the member's key.
    Key,
    /// The string at `path` is the value itself.
    Value,
}

/// One rule matching one string of one item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The rule's stable id, e.g. `instruction-tags` (see [`crate::RULES`]).
    pub rule: &'static str,
    /// The rule's severity.
    pub severity: Severity,
    /// The server that listed the item.
    pub server: String,
    /// What the item is.
    pub kind: ItemKind,
    /// The item's name (for a tool result, the tool's).
    pub item: String,
    /// Where in the item's JSON, as an RFC 9535 normalized path:
    /// `$['inputSchema']['properties']['x']['description']`, `$['tags'][0]`.
    pub path: String,
    /// Whether the match is in the key or the value at `path`.
    pub part: Part,
    /// The matched text with some context, at most [`EXCERPT_CHARS`]
    /// characters of it, invisible characters written as `<U+E0041>`.
    pub excerpt: String,
    /// What is wrong, for a human.
    pub message: String,
}

/// Where a check matched in one string, and what to add to its rule's
/// summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Hit {
    /// Byte range of the match (empty to point at a place).
    pub(crate) span: Range<usize>,
    pub(crate) detail: Option<String>,
}

impl Hit {
    pub(crate) fn at(span: Range<usize>) -> Self {
        Hit { span, detail: None }
    }

    pub(crate) fn saying(span: Range<usize>, detail: String) -> Self {
        Hit {
            span,
            detail: Some(detail),
        }
    }
}

impl Finding {
    /// The finding of `rule` matching `text`, at `path` of `item`.
    pub(crate) fn new(
        rule: &Rule,
        item: &Item<'_>,
        path: String,
        part: Part,
        text: &str,
        hit: Hit,
    ) -> Self {
        Finding {
            rule: rule.id,
            severity: rule.severity,
            server: item.server.to_owned(),
            kind: item.kind,
            item: item.name.to_owned(),
            path,
            part,
            excerpt: excerpt(text, hit.span),
            message: match hit.detail {
                Some(detail) => format!("{}: {detail}", rule.summary),
                None => rule.summary.to_owned(),
            },
        }
    }
}

/// How many characters of the scanned text an excerpt shows at most.
pub const EXCERPT_CHARS: usize = 96;

/// Characters of context shown before the match.
const LEAD_CHARS: usize = 24;

/// The excerpt of `text` around `span` (byte offsets on char boundaries):
/// a little context before, the match, then context up to the bound, with
/// `…` where text was cut and every invisible or control character written
/// out.
pub(crate) fn excerpt(text: &str, span: Range<usize>) -> String {
    let lead_start = text[..span.start]
        .char_indices()
        .rev()
        .nth(LEAD_CHARS - 1)
        .map_or(0, |(i, _)| i);
    let shown: String = text[lead_start..].chars().take(EXCERPT_CHARS).collect();
    let mut out = String::new();
    if lead_start > 0 {
        out.push('…');
    }
    for c in shown.chars() {
        unicode::write_visible(c, &mut out);
    }
    if lead_start + shown.len() < text.len() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severities_parse_from_their_names_and_order() {
        for severity in Severity::ALL {
            assert_eq!(severity.as_str().parse::<Severity>(), Ok(severity));
        }
        assert!(Severity::Info < Severity::Low && Severity::High < Severity::Critical);
        let error = "severe".parse::<Severity>().unwrap_err();
        assert_eq!(
            error.to_string(),
            "unknown severity `severe`: use one of info, low, medium, high, critical"
        );
    }

    #[test]
    fn excerpts_are_bounded_and_show_invisible_characters() {
        let check = |text: &str, span: Range<usize>, expect: &str| {
            assert_eq!(excerpt(text, span), expect);
        };
        check("short <IMPORTANT>", 6..17, "short <IMPORTANT>");
        check("a\u{200B}b\nc", 0..1, "a<U+200B>b\\nc");
        check("x\u{E0041}", 1..5, "x<U+E0041>");
        let long = format!("{}MATCH{}", "a".repeat(100), "b".repeat(100));
        let shown = excerpt(&long, 100..105);
        assert!(
            shown.starts_with("…aaa") && shown.ends_with("b…"),
            "{shown}"
        );
        assert_eq!(shown.chars().count(), EXCERPT_CHARS + 2);
        assert!(shown.contains("MATCH"));
    }
}
