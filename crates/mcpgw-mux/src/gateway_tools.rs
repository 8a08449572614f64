//! The search mode's gateway tools (`tool_mode: search`): what a client
//! lists instead of the merged tools, `find_tools` and `call_tool`, and
//! `find_tools`' answer.
//!
//! `call_tool` has no path of its own: the `tools/call` handler unwraps it
//! ([`unwrap_call`]) into the call of the exposed tool it names and hands
//! that to the one call path, so policy, profiles, limits, the scan, the
//! cache and the audit trail treat it exactly as a direct call. A tool
//! outside the client's profile is never found (`find_tools` filters the
//! ranking by the same view the call path checks) nor callable.

use std::sync::Arc;

use rmcp::ErrorData;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, JsonObject, Tool, ToolAnnotations,
};
use rmcp::service::{RequestContext, RoleServer};
use serde_json::{Value, json};

use crate::Mux;
use crate::router::ToolLookup;

/// The gateway tool that searches the tools.
pub(crate) const FIND_TOOLS: &str = "find_tools";
/// The gateway tool that calls one.
pub(crate) const CALL_TOOL: &str = "call_tool";
/// How many tools `find_tools` returns unless asked.
const DEFAULT_LIMIT: usize = 5;
/// The most it returns.
const MAX_LIMIT: usize = 20;

/// The gateway tools' definitions, as listed in search mode.
pub fn definitions() -> [Tool; 2] {
    let object = |value: Value| match value {
        Value::Object(map) => Arc::new(map),
        _ => Arc::new(JsonObject::new()),
    };
    let mut find = Tool::new(
        FIND_TOOLS,
        "Finds the tools for a task among every tool this gateway offers. Describe the task in words; you get the best-matching tools' names, descriptions and input schemas. Then call one with `call_tool`.",
        object(json!({
            "type": "object",
            "properties": {
                "query": {"type": "string", "description": "What you want to do, in words, such as \"list the open issues of a repository\"."},
                "server": {"type": "string", "description": "Only this server's tools (the part of a tool's name before the separator)."},
                "limit": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "description": "How many tools at most (default 5)."}
            },
            "required": ["query"]
        })),
    );
    find.annotations = Some(ToolAnnotations::new().read_only(true).idempotent(true));
    let call = Tool::new(
        CALL_TOOL,
        "Calls a tool that `find_tools` returned, by its name, with arguments that follow its input schema.",
        object(json!({
            "type": "object",
            "properties": {
                "name": {"type": "string", "description": "The tool's name, as `find_tools` returned it."},
                "arguments": {"type": "object", "description": "The tool's arguments."}
            },
            "required": ["name"]
        })),
    );
    [find, call]
}

/// The call of the exposed tool a `call_tool` call names, with everything
/// else of the request (its `_meta`, a `2026-07-28` round's state) kept.
pub(crate) fn unwrap_call(
    request: &CallToolRequestParams,
) -> Result<CallToolRequestParams, ErrorData> {
    let arguments = request.arguments.as_ref();
    let Some(Value::String(name)) = arguments.and_then(|a| a.get("name")) else {
        return Err(ErrorData::invalid_params(
            "`call_tool` needs `name`, the name of a tool `find_tools` returned",
            None,
        ));
    };
    let inner = match arguments.and_then(|a| a.get("arguments")) {
        None | Some(Value::Null) => None,
        Some(Value::Object(map)) => Some(map.clone()),
        Some(_) => {
            return Err(ErrorData::invalid_params(
                "`call_tool`'s `arguments` must be an object of the tool's arguments",
                None,
            ));
        }
    };
    let mut call = request.clone();
    call.name = name.clone().into();
    call.arguments = inner;
    Ok(call)
}

impl Mux {
    /// `find_tools`: the tools of the client's view that best match the
    /// query, as the client would list them.
    pub(crate) async fn find_tools_decided(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        self.remember_client(&context);
        let arguments = request.arguments.unwrap_or_default();
        let Some(Value::String(query)) = arguments.get("query") else {
            return Err(ErrorData::invalid_params(
                "`find_tools` needs `query`, the task in words",
                None,
            ));
        };
        let limit = match arguments.get("limit") {
            None | Some(Value::Null) => DEFAULT_LIMIT,
            Some(value) => value
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .filter(|n| (1..=MAX_LIMIT).contains(n))
                .ok_or_else(|| {
                    ErrorData::invalid_params(
                        format!("`limit` must be a whole number from 1 to {MAX_LIMIT}"),
                        None,
                    )
                })?,
        };
        let table = self.routing(&context).await?;
        let view = self.view(&context);
        // Only the servers the client's view has a tool of can be named,
        // and only those are named back: a profile's client learns
        // nothing of the servers outside it.
        let visible: std::collections::BTreeSet<usize> = table
            .tools()
            .iter()
            .filter(|tool| view.permits(&tool.name))
            .filter_map(|tool| match table.tool(&tool.name) {
                ToolLookup::Found(route) => Some(route.server),
                _ => None,
            })
            .collect();
        let server = match arguments.get("server") {
            None | Some(Value::Null) => None,
            Some(Value::String(name)) => {
                let index = self
                    .shared
                    .slots
                    .iter()
                    .find(|(index, s)| s.name.as_str() == name && visible.contains(index))
                    .map(|(index, _)| index);
                Some(index.ok_or_else(|| {
                    let names: Vec<&str> = visible
                        .iter()
                        .map(|&i| self.shared.slots[i].name.as_str())
                        .collect();
                    ErrorData::invalid_params(
                        format!(
                            "no server `{name}` among this client's; they are {}",
                            names.join(", ")
                        ),
                        None,
                    )
                })?)
            }
            Some(_) => {
                return Err(ErrorData::invalid_params(
                    "`server` must be a server's name",
                    None,
                ));
            }
        };
        let found = table.find(query, limit, |tool, route| {
            view.permits(&tool.name) && server.is_none_or(|s| s == route.server)
        });
        let tools: Vec<Value> = found
            .into_iter()
            .map(|tool| {
                let mut entry = json!({
                    "name": tool.name,
                    "description": tool.description,
                    "inputSchema": tool.input_schema,
                });
                if let Some(title) = &tool.title {
                    entry["title"] = json!(title);
                }
                entry
            })
            .collect();
        Ok(CallToolResponse::Complete(CallToolResult::structured(
            json!({ "tools": tools }),
        )))
    }
}
