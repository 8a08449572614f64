//! Paging merged lists for clients with the gateway's own cursors.

use rmcp::ErrorData;
use rmcp::model::PaginatedRequestParams;

/// Merged lists are served in pages of this many items.
pub const PAGE_SIZE: usize = 100;

/// One page of `items` from the gateway's own cursor: `mcpgw1-<offset>`.
/// The cursor is opaque to clients; one the gateway did not issue is -32602.
pub(crate) fn page<T: Clone>(
    items: &[T],
    request: Option<&PaginatedRequestParams>,
) -> Result<(Vec<T>, Option<String>), ErrorData> {
    let start = match request.and_then(|r| r.cursor.as_deref()) {
        None => 0,
        Some(cursor) => cursor
            .strip_prefix("mcpgw1-")
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|&n| n > 0 && n <= items.len())
            .ok_or_else(|| {
                ErrorData::invalid_params(
                    format!("invalid cursor `{cursor}`: start again without one"),
                    None,
                )
            })?,
    };
    let end = (start + PAGE_SIZE).min(items.len());
    let next = (end < items.len()).then(|| format!("mcpgw1-{end}"));
    Ok((items[start..end].to_vec(), next))
}
