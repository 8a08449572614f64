//! Fair admission, step by step: calls queued in a known order, places
//! freed one at a time, and the order in which waiting calls are admitted
//! checked against the rule (counts and order, no clock).

use std::collections::HashMap;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::*;

struct Queued {
    admitted: mpsc::UnboundedReceiver<String>,
    sender: mpsc::UnboundedSender<String>,
    /// Each admitted call holds its place until told to let go.
    release: HashMap<String, oneshot::Sender<()>>,
    tasks: Vec<JoinHandle<()>>,
}

fn limit(in_flight: usize, queue: usize, per_client: Option<usize>) -> Arc<Limit> {
    Arc::new(Limit::new(Concurrency {
        in_flight,
        queue,
        per_client,
    }))
}

impl Queued {
    fn new() -> Self {
        let (sender, admitted) = mpsc::unbounded_channel();
        Self {
            admitted,
            sender,
            release: HashMap::new(),
            tasks: Vec::new(),
        }
    }

    /// Queues call `id` of `client` and waits until it is waiting.
    async fn queue(&mut self, limit: &Arc<Limit>, client: &str, id: &str) {
        let waiting = limit.load().1;
        let (release, released) = oneshot::channel();
        self.release.insert(id.to_string(), release);
        let (limit_, client, id, sender) = (
            limit.clone(),
            client.to_string(),
            id.to_string(),
            self.sender.clone(),
        );
        self.tasks.push(tokio::spawn(async move {
            let permit = limit_.admit(&client).await.expect("admitted");
            sender.send(id).unwrap();
            let _ = released.await;
            drop(permit);
        }));
        while limit.load().1 == waiting {
            tokio::task::yield_now().await;
        }
    }

    /// The next call admitted.
    async fn next(&mut self) -> String {
        self.admitted.recv().await.unwrap()
    }

    /// Lets call `id` end, and returns the call admitted to its place.
    async fn end(&mut self, id: &str) -> String {
        let _ = self.release.remove(id).unwrap().send(());
        self.next().await
    }
}

#[tokio::test]
async fn clients_take_turns_instead_of_first_come_first_served() {
    let limit = limit(2, 10, None);
    let a1 = limit.admit("a").await.unwrap();
    let a2 = limit.admit("a").await.unwrap();
    let mut q = Queued::new();
    for id in ["a3", "a4", "a5", "a6"] {
        q.queue(&limit, "a", id).await;
    }
    q.queue(&limit, "b", "b1").await;
    assert_eq!(limit.load(), (2, 5));
    drop(a1);
    assert_eq!(q.next().await, "a3");
    // b's turn comes next, ahead of a's three others.
    drop(a2);
    assert_eq!(q.next().await, "b1");
    let mut order = Vec::new();
    for id in ["a3", "b1", "a4"] {
        order.push(q.end(id).await);
    }
    assert_eq!(order, ["a4", "a5", "a6"]);
}

#[tokio::test]
async fn a_client_under_its_share_goes_first() {
    let limit = limit(2, 10, Some(1));
    let a1 = limit.admit("a").await.unwrap();
    let _a2 = limit.admit("a").await.unwrap();
    let mut q = Queued::new();
    for id in ["a3", "a4"] {
        q.queue(&limit, "a", id).await;
    }
    q.queue(&limit, "b", "b1").await;
    q.queue(&limit, "c", "c1").await;
    q.queue(&limit, "b", "b2").await;
    // a has its share (and more): the first place goes to b, who waited
    // after a; then c, under its share while b now has its one.
    drop(a1);
    assert_eq!(q.next().await, "b1");
    assert_eq!(q.end("b1").await, "c1");
    // b, with nothing in flight again, is under its share.
    assert_eq!(q.end("c1").await, "b2");
    // Over its share but alone in the queue, a client still gets every
    // place that frees: none stays idle while a call waits.
    assert_eq!(q.end("b2").await, "a3");
    assert_eq!(q.end("a3").await, "a4");
    assert_eq!(limit.load(), (2, 0));
}

#[tokio::test]
async fn a_full_queue_refuses_and_a_caller_gone_frees_its_place_in_it() {
    let limit = limit(1, 2, None);
    let a1 = limit.admit("a").await.unwrap();
    let mut q = Queued::new();
    q.queue(&limit, "a", "a2").await;
    q.queue(&limit, "b", "b1").await;
    assert!(limit.admit("c").await.is_none(), "in flight and queue full");
    // a2's caller goes away: its place in the queue is free again.
    q.tasks[0].abort();
    let _ = (&mut q.tasks[0]).await;
    q.queue(&limit, "c", "c1").await;
    assert_eq!(limit.load(), (1, 2));
    // The call admitted next is b1, not the gone a2.
    drop(a1);
    assert_eq!(q.next().await, "b1");
    assert_eq!(q.end("b1").await, "c1");
    drop(q.release.remove("c1"));
    while limit.is_busy() {
        tokio::task::yield_now().await;
    }
    assert_eq!(limit.load(), (0, 0));
    assert!(
        limit.state.lock().clients.is_empty(),
        "every client forgotten"
    );
}
