//! Tool overrides: the catalog's `rename`, `describe` and `hide_params`
//! applied to a server's own definition, giving the one clients, the scan
//! and the lockfile see. Pure, like the rest of the router.
//!
//! A rename gives the name before the server's prefix (the router adds it,
//! as for any tool); a description replaces the server's; a hidden
//! parameter leaves the schema's `properties` and `required`, and
//! [`strip`] takes it out of a call's arguments before they are forwarded.
//! It does not check that an override names a tool: the routing table
//! notes those that name none ([`super::Notice`]).

use std::borrow::Cow;
use std::sync::Arc;

use mcpgw_catalog::ToolFilter;
use rmcp::model::{JsonObject, Tool};
use serde_json::Value;

/// `tool` as the catalog rewrites it: borrowed when nothing is rewritten.
#[must_use]
pub fn shown<'a>(filter: &ToolFilter, tool: &'a Tool) -> Cow<'a, Tool> {
    if !filter.overrides_any() {
        return Cow::Borrowed(tool);
    }
    let rename = filter.rename(&tool.name);
    let describe = filter.description(&tool.name);
    let hidden = filter.hidden_params(&tool.name);
    if rename.is_none() && describe.is_none() && hidden.is_empty() {
        return Cow::Borrowed(tool);
    }
    let mut out = tool.clone();
    if let Some(name) = rename {
        out.name = name.to_string().into();
    }
    if let Some(text) = describe {
        out.description = Some(text.to_string().into());
    }
    if !hidden.is_empty() {
        out.input_schema = Arc::new(without(&tool.input_schema, hidden));
    }
    Cow::Owned(out)
}

/// `schema` without the properties named in `hidden`, in `properties` and
/// in `required`.
fn without(schema: &JsonObject, hidden: &[String]) -> JsonObject {
    let mut out = schema.clone();
    if let Some(Value::Object(properties)) = out.get_mut("properties") {
        for name in hidden {
            properties.remove(name);
        }
    }
    if let Some(Value::Array(required)) = out.get_mut("required") {
        required.retain(|r| !r.as_str().is_some_and(|r| hidden.iter().any(|h| h == r)));
    }
    out
}

/// Removes the arguments named in `hidden` from a call's `arguments`, so
/// that a client that sends them anyway does not reach the server with
/// them. Returns the names it removed.
pub fn strip(arguments: Option<&mut JsonObject>, hidden: &[String]) -> Vec<String> {
    let Some(arguments) = arguments else {
        return Vec::new();
    };
    hidden
        .iter()
        .filter(|name| arguments.remove(name.as_str()).is_some())
        .cloned()
        .collect()
}
