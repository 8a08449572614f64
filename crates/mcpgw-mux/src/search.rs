//! The search mode's index: BM25 over the exposed tools, for `find_tools`.
//! Pure and in memory, like the routing table it belongs to: each table
//! builds its index once, the first time a client searches it, so an
//! inventory change (a new table) is a new index and a gateway whose
//! clients never search builds none.
//!
//! A tool's document is its exposed name and its upstream name split into
//! words (`git__git_log` is "git git log"), its title, its description and
//! its parameters' names, as the catalog's overrides leave them. The
//! `bm25` crate ranks (k1 = 1.2, b = 0.75, English stemming and stop
//! words); no embedding model is needed or fetched.
//!
//! It does not decide who may see what: the caller filters the ranked
//! tools by profile and server, so a tool outside a client's view is
//! never found.

use bm25::{Language, SearchEngine, SearchEngineBuilder};
use rmcp::model::Tool;
use serde_json::Value;

/// The BM25 index of one routing table's tools.
#[derive(Debug)]
pub struct Index {
    engine: SearchEngine<u32>,
}

impl Index {
    /// Indexes `tools` (the table's list, in its order).
    #[must_use]
    pub fn build(tools: &[Tool]) -> Self {
        let documents = tools.iter().enumerate().map(|(i, tool)| {
            let id = u32::try_from(i).unwrap_or(u32::MAX);
            bm25::Document::new(id, document(tool))
        });
        Self {
            engine: SearchEngineBuilder::<u32>::with_documents(Language::English, documents)
                .build(),
        }
    }

    /// The positions in the table's list of the tools that match `query`,
    /// best first, with their scores; only those for which `keep` holds,
    /// at most `limit`.
    pub fn search(
        &self,
        query: &str,
        limit: usize,
        mut keep: impl FnMut(usize) -> bool,
    ) -> Vec<(usize, f32)> {
        let mut hits: Vec<(usize, f32)> = self
            .engine
            .search(&words(query), None)
            .into_iter()
            .map(|hit| (hit.document.id as usize, hit.score))
            .collect();
        // Equal scores in list order, whatever order the crate gives them
        // in: the same table and query rank the same way every time.
        hits.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        hits.into_iter()
            .filter(|&(i, _)| keep(i))
            .take(limit)
            .collect()
    }
}

/// The text a tool is found by.
fn document(tool: &Tool) -> String {
    let mut text = words(&tool.name);
    for part in [tool.title.as_deref(), tool.description.as_deref()]
        .into_iter()
        .flatten()
    {
        text.push(' ');
        text.push_str(&words(part));
    }
    if let Some(Value::Object(properties)) = tool.input_schema.get("properties") {
        for name in properties.keys() {
            text.push(' ');
            text.push_str(&words(name));
        }
    }
    text
}

/// `text` with the joints of identifiers made spaces, so that the words of
/// `search_code`, `git-log`, `listIssues` and `a.b/c` are found one by
/// one: `_`, `-`, `.`, `/` and `:` become spaces, and a capital after a
/// lower-case letter starts a word.
fn words(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    let mut lower_before = false;
    for c in text.chars() {
        if matches!(c, '_' | '-' | '.' | '/' | ':') {
            out.push(' ');
            lower_before = false;
            continue;
        }
        if c.is_uppercase() && lower_before {
            out.push(' ');
        }
        lower_before = c.is_lowercase() || c.is_ascii_digit();
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn tool(name: &str, description: &str, params: &[&str]) -> Tool {
        let properties: serde_json::Map<String, Value> = params
            .iter()
            .map(|p| ((*p).to_string(), serde_json::json!({"type": "string"})))
            .collect();
        let mut schema = serde_json::Map::new();
        schema.insert("properties".into(), Value::Object(properties));
        Tool::new(name.to_string(), description.to_string(), Arc::new(schema))
    }

    fn tools() -> Vec<Tool> {
        vec![
            tool(
                "time__get_current_time",
                "Get current time in a specific timezone",
                &["timezone"],
            ),
            tool(
                "time__convert_time",
                "Convert time between timezones",
                &["source_timezone", "time", "target_timezone"],
            ),
            tool(
                "git__git_log",
                "Shows the commit logs",
                &["repo_path", "max_count"],
            ),
            tool(
                "github__create_issue",
                "Create a new issue in a GitHub repository",
                &["owner", "repo", "title", "body"],
            ),
            tool(
                "fetch__fetch",
                "Fetches a URL from the internet and optionally extracts its contents as markdown.",
                &["url", "max_length"],
            ),
        ]
    }

    #[track_caller]
    fn check(query: &str, expect: &str) {
        let tools = tools();
        let index = Index::build(&tools);
        let hits = index.search(query, 3, |_| true);
        let names: Vec<&str> = hits.iter().map(|&(i, _)| tools[i].name.as_ref()).collect();
        assert_eq!(
            names.first().copied(),
            Some(expect),
            "for {query:?}: {names:?}"
        );
    }

    #[test]
    fn ranks_the_tool_the_words_describe_first() {
        check(
            "what is the current time in Tokyo",
            "time__get_current_time",
        );
        check(
            "convert 3pm New York to London time zones",
            "time__convert_time",
        );
        check("show recent commits", "git__git_log");
        check("open a new issue on github", "github__create_issue");
        check("download a web page as markdown", "fetch__fetch");
        // Words of identifiers, and parameter names, are found too.
        check("max count of repo path", "git__git_log");
    }

    #[test]
    fn keeps_only_what_the_caller_keeps_and_at_most_the_limit() {
        let tools = tools();
        let index = Index::build(&tools);
        let all = index.search("time", 10, |_| true);
        assert_eq!(all.len(), 2, "{all:?}");
        assert!(all[0].1 >= all[1].1, "best first: {all:?}");
        let hidden = index.search("time", 10, |i| tools[i].name != "time__get_current_time");
        assert_eq!(hidden.iter().map(|h| h.0).collect::<Vec<_>>(), [1]);
        assert_eq!(index.search("time", 1, |_| true).len(), 1);
        assert!(index.search("zebra", 10, |_| true).is_empty());
        assert!(Index::build(&[]).search("time", 10, |_| true).is_empty());
    }

    #[test]
    fn identifiers_split_into_words() {
        assert_eq!(words("git__git_log"), "git  git log");
        assert_eq!(words("listIssues"), "list Issues");
        assert_eq!(words("a.b/c-d:e"), "a b c d e");
        assert_eq!(words("HTTPServer v2Beta"), "HTTPServer v2 Beta");
    }
}
