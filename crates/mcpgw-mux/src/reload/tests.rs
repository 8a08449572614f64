//! Reloads applied to a mux in memory: test-server backends over
//! `tokio::io::duplex`, the slots a runtime would drive.

use std::time::Duration;

use tokio::sync::broadcast::error::TryRecvError;

use crate::Mux;
use crate::router::ToolLookup;
use crate::slots::SlotState;
use crate::tests::backend;

const OLD: &str = "
version: 1
servers:
  one:
    image: x
    tools: { allow: [echo, add] }
  two:
    image: x
    tools: { allow: [echo] }
  three:
    image: x
    tools: { allow: [echo] }
";

/// `one`'s allowlist changed, `two` removed, `three`'s command changed
/// (replaced), `four` added.
const NEW: &str = "
version: 1
servers:
  one:
    image: x
    tools: { allow: [add] }
  three:
    image: x
    command: [--again]
    tools: { allow: [echo] }
  four:
    image: x
    tools: { allow: [echo] }
";

fn catalog(yaml: &str) -> mcpgw_catalog::Catalog {
    mcpgw_catalog::parse(yaml, std::path::Path::new("t.yaml"), &std::env::temp_dir()).unwrap()
}

async fn up(slots: &crate::Slots, index: usize, name: &str) {
    let b = backend(name).await;
    let inventory = b.inventory().await.unwrap();
    slots.ready(index, b, inventory);
}

fn tools(mux: &Mux) -> Vec<String> {
    let table = mux.shared.table.read().clone();
    let mut names: Vec<String> = table.tools().iter().map(|t| t.name.to_string()).collect();
    names.sort();
    names
}

#[tokio::test]
async fn a_reload_retires_appends_and_updates_slots_and_tells_clients_once() {
    let (old, new) = (catalog(OLD), catalog(NEW));
    let (mux, slots) = Mux::new(&old);
    for (i, name) in ["one", "two", "three"].into_iter().enumerate() {
        up(&slots, i, name).await;
    }
    assert_eq!(
        tools(&mux),
        ["one__add", "one__echo", "three__echo", "two__echo"]
    );
    let mut changes = mux.shared.changes.subscribe();

    let diff = mcpgw_catalog::diff(&old, &new);
    let reload = slots.reload(&old, &new, &diff);
    // `two` and the old `three` are retired; `four` (added) and the new
    // `three` get slots of their own after the three there were.
    assert_eq!(reload.stop, [1, 2]);
    assert_eq!(reload.start, [(3, 2), (4, 1)]);
    assert_eq!(reload.at, [0, 4, 3]);
    // In place: `one` keeps its backend and shows its new allowlist at once.
    assert_eq!(tools(&mux), ["one__add"]);
    assert!(matches!(
        *mux.shared.slots[0].state.borrow(),
        SlotState::Ready { .. }
    ));
    let removed = mux.backend(1).unwrap_err();
    assert!(
        removed
            .message
            .contains("`two` was removed from the catalog by a reload"),
        "{removed:?}"
    );
    let replaced = mux.backend(2).unwrap_err();
    assert!(
        replaced.message.contains("is being replaced"),
        "{replaced:?}"
    );

    // The new servers come up; nothing is sent until the reload is done.
    up(&slots, 3, "four").await;
    up(&slots, 4, "three").await;
    assert_eq!(changes.try_recv().unwrap_err(), TryRecvError::Empty);
    // A retired slot stays retired whatever its stopping loop reports.
    slots.failed(1, "its session ended");
    assert!(mux.shared.slots[1].is_retired());

    slots.reloaded(&reload).await;
    let change = changes.try_recv().unwrap();
    assert!(change.tools && change.prompts, "{change:?}");
    assert_eq!(changes.try_recv().unwrap_err(), TryRecvError::Empty);
    assert_eq!(tools(&mux), ["four__echo", "one__add", "three__echo"]);
    let table = mux.shared.table.read().clone();
    assert!(matches!(table.tool("three__echo"), ToolLookup::Found(r) if r.server == 4));
    assert!(!matches!(table.tool("two__echo"), ToolLookup::Found(_)));
    assert_eq!(
        mux.readiness()
            .into_iter()
            .map(|(name, _)| name)
            .collect::<Vec<_>>(),
        ["one", "four", "three"]
    );
}

#[tokio::test]
async fn a_reload_that_changes_no_list_sends_nothing() {
    let old = catalog(OLD);
    let new = catalog(&OLD.replace(
        "  two:\n    image: x\n",
        "  two:\n    image: x\n    call_timeout: 5s\n",
    ));
    let (mux, slots) = Mux::new(&old);
    for (i, name) in ["one", "two", "three"].into_iter().enumerate() {
        up(&slots, i, name).await;
    }
    let mut changes = mux.shared.changes.subscribe();
    let diff = mcpgw_catalog::diff(&old, &new);
    assert_eq!(diff.updated, [(1, 1)]);
    let reload = slots.reload(&old, &new, &diff);
    assert!(reload.start.is_empty() && reload.stop.is_empty());
    assert_eq!(
        mux.shared.slots[1].policy().deadline.idle,
        Duration::from_secs(5)
    );
    slots.reloaded(&reload).await;
    assert_eq!(changes.try_recv().unwrap_err(), TryRecvError::Empty);
}

#[tokio::test]
async fn a_reload_that_changes_a_profile_tells_only_its_clients() {
    let with = |a: &str| {
        catalog(&format!(
            "{OLD}profiles:\n  a: {{ tools: [{a}] }}\n  b: {{ tools: [one__add] }}\n"
        ))
    };
    let (old, new) = (with("one__echo"), with("one__echo, two__echo"));
    let (mux, slots) = Mux::new(&old);
    for (i, name) in ["one", "two", "three"].into_iter().enumerate() {
        up(&slots, i, name).await;
    }
    let mut changes = mux.shared.changes.subscribe();
    let diff = mcpgw_catalog::diff(&old, &new);
    assert!(diff.gateway && diff.updated.is_empty() && diff.replaced.is_empty());
    let reload = slots.reload(&old, &new, &diff);
    slots.reloaded(&reload).await;
    let change = changes.try_recv().unwrap();
    // The merged lists are as they were; only profile `a`'s view grew.
    let everyone = change.seen_by(None);
    assert!(!everyone.tools && !everyone.prompts && !everyone.resources);
    assert!(change.seen_by(Some("a")).tools);
    assert!(!change.seen_by(Some("b")).tools);
    assert!(!change.seen_by(Some("gone")).tools);
}
