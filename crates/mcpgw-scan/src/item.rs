//! What a scan reads: an `Item` is one definition a server listed (or one
//! tool result), borrowed as JSON together with who listed it.
//!
//! Items borrow; the scanner never copies or parses a definition into MCP
//! types, so it reads fields no SDK knows about as well as those it does.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What an item is, which decides the rules that apply to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemKind {
    /// An entry of `tools/list`.
    Tool,
    /// An entry of `prompts/list`.
    Prompt,
    /// An entry of `resources/list`.
    Resource,
    /// An entry of `resources/templates/list`.
    ResourceTemplate,
    /// The result of `tools/call`: only the injection rules apply.
    ToolResult,
}

impl ItemKind {
    /// The word for it in reports: `tool`, `prompt`, `resource`,
    /// `resource template`, `tool result`.
    pub fn as_str(self) -> &'static str {
        match self {
            ItemKind::Tool => "tool",
            ItemKind::Prompt => "prompt",
            ItemKind::Resource => "resource",
            ItemKind::ResourceTemplate => "resource template",
            ItemKind::ToolResult => "tool result",
        }
    }

    /// Whether this is something a server listed, as opposed to a result.
    pub fn is_definition(self) -> bool {
        self != ItemKind::ToolResult
    }
}

/// One definition (or tool result) to scan.
#[derive(Debug, Clone, Copy)]
pub struct Item<'a> {
    /// The server that listed it, as named in the catalog.
    pub server: &'a str,
    /// What it is.
    pub kind: ItemKind,
    /// Its upstream name (the definition's `name`; for a result, the tool's).
    pub name: &'a str,
    /// The definition as the server sent it.
    pub definition: &'a Value,
}
