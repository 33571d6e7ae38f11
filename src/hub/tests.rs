//! In-module tests of the hub with a scripted engine: atomic subscribe
//! (buffer, dedupe, activation), rollback on a failed node subscription,
//! per-channel serialisation of engine subscribe/unsubscribe, and resets.

use super::*;
use crate::engine::*;
use std::cell::Cell;
use std::collections::VecDeque;
use std::time::Duration;

/// A subscriber that records what it was sent.
#[derive(Default)]
struct Rec {
    id: u64,
    got: RefCell<Vec<Bytes>>,
    forgot: RefCell<Vec<String>>,
    cut: Cell<bool>,
}

impl Subscriber for Rec {
    type Out = ();
    fn id(&self) -> u64 {
        self.id
    }
    fn push(self: &Rc<Self>, frame: Bytes, _: &()) -> bool {
        self.got.borrow_mut().push(frame);
        true
    }
    fn forget(&self, channel: &str) {
        self.forgot.borrow_mut().push(channel.into());
    }
    fn cut_off(&self) {
        self.cut.set(true);
    }
}

/// An engine whose node (un)subscriptions take a scripted time and may fail.
#[derive(Default)]
struct Scripted {
    /// Outcomes of the next subscribe_node calls (Ok when empty).
    fail_next: RefCell<VecDeque<bool>>,
    delay_ms: Cell<u64>,
    calls: RefCell<Vec<String>>,
    in_flight: Cell<u32>,
    max_in_flight: Cell<u32>,
}

#[async_trait::async_trait(?Send)]
impl Engine for Scripted {
    fn name(&self) -> &'static str {
        "scripted"
    }
    async fn publish(
        &self,
        _: &str,
        _: Bytes,
        _: PublishOptions,
    ) -> Result<StreamPosition, EngineError> {
        Err(EngineError::NotAvailable)
    }
    async fn publish_join_leave(&self, _: &str, _: ChannelEvent) -> Result<(), EngineError> {
        Ok(())
    }
    async fn subscribe_node(&self, channel: &str) -> Result<(), EngineError> {
        self.enter();
        self.calls.borrow_mut().push(format!("sub {channel}"));
        crate::exec::sleep(Duration::from_millis(self.delay_ms.get())).await;
        self.in_flight.set(self.in_flight.get() - 1);
        match self.fail_next.borrow_mut().pop_front() {
            Some(true) => Err(EngineError::Internal("scripted failure".into())),
            _ => Ok(()),
        }
    }
    async fn unsubscribe_node(&self, channel: &str) -> Result<(), EngineError> {
        self.enter();
        self.calls.borrow_mut().push(format!("unsub {channel}"));
        crate::exec::sleep(Duration::from_millis(self.delay_ms.get())).await;
        self.in_flight.set(self.in_flight.get() - 1);
        Ok(())
    }
    async fn position(&self, _: &str, _: HistoryOptions) -> Result<StreamPosition, EngineError> {
        Err(EngineError::NotAvailable)
    }
    async fn history(
        &self,
        _: &str,
        _: HistoryQuery,
        _: HistoryOptions,
    ) -> Result<HistoryResult, EngineError> {
        Err(EngineError::NotAvailable)
    }
    async fn remove_history(&self, _: &str) -> Result<(), EngineError> {
        Ok(())
    }
    async fn presence_add(&self, _: &str, _: ClientInfo) -> Result<(), EngineError> {
        Ok(())
    }
    async fn presence_remove(&self, _: &str, _: &str) -> Result<(), EngineError> {
        Ok(())
    }
    async fn presence(&self, _: &str) -> Result<Vec<ClientInfo>, EngineError> {
        Ok(vec![])
    }
    async fn presence_stats(&self, _: &str) -> Result<PresenceStats, EngineError> {
        Ok(PresenceStats {
            num_clients: 0,
            num_users: 0,
        })
    }
}

impl Scripted {
    fn enter(&self) {
        self.in_flight.set(self.in_flight.get() + 1);
        self.max_in_flight
            .set(self.max_in_flight.get().max(self.in_flight.get()));
    }
}

fn run<F: std::future::Future<Output = ()>>(f: impl FnOnce() -> F) {
    glommio::LocalExecutorBuilder::default()
        .io_memory(64 << 10)
        .make()
        .expect("executor (needs RLIMIT_MEMLOCK >= 512 KiB)")
        .run(f());
}

fn hub(engine: Rc<Scripted>) -> Rc<Hub<Rec>> {
    let m = Arc::new(CoreMetrics::new(0));
    let h = Hub::new(Mesh::single(m.clone()), Rc::new(()), m, 4);
    h.set_engine(engine);
    h
}

fn rec(id: u64) -> Rc<Rec> {
    Rc::new(Rec {
        id,
        ..Default::default()
    })
}

fn publication(offset: u64) -> ChannelEvent {
    ChannelEvent::Publication(Publication {
        offset,
        data: Bytes::from(format!("{offset}")),
        info: None,
        tags: None,
    })
}

/// The publication offsets in a frame's text, one per line (0 for a line that is none).
fn reply_offsets(text: &[u8]) -> Vec<u64> {
    String::from_utf8_lossy(text)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["push"]["pub"]["offset"].as_u64().unwrap_or(0)
        })
        .collect()
}

fn offsets(r: &Rec) -> Vec<u64> {
    r.got
        .borrow()
        .iter()
        .map(|f| {
            let text = String::from_utf8_lossy(&f[2..]).to_string();
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            v["push"]["pub"]["offset"].as_u64().unwrap_or(0)
        })
        .collect()
}

#[test]
fn pending_subscriber_gets_nothing_before_activation_and_no_duplicates() {
    run(|| async {
        let engine = Rc::new(Scripted::default());
        let h = hub(engine);
        let a = rec(1);
        h.join("ch", &a).await.unwrap();
        let now = Instant::now();
        for o in 1..=3 {
            h.deliver("ch", &publication(o), now);
        }
        assert!(
            a.got.borrow().is_empty(),
            "nothing before the reply is queued"
        );
        let mut reply = b"{\"id\":1}".to_vec();
        h.activate("ch", 1, 2, &mut reply); // the reply covered offsets up to 2
        assert_eq!(
            reply_offsets(&reply),
            vec![0, 3],
            "the rest of the buffer in the reply's frame, after the reply"
        );
        assert!(a.got.borrow().is_empty(), "no frame of its own");
        // a late duplicate from a slower path is filtered once; newer ones flow
        h.deliver("ch", &publication(2), now);
        h.deliver("ch", &publication(4), now);
        h.deliver("ch", &publication(5), now);
        assert_eq!(offsets(&a), vec![4, 5]);
    });
}

#[test]
fn pending_buffer_is_bounded() {
    run(|| async {
        let h = hub(Rc::new(Scripted::default()));
        let a = rec(1);
        h.join("ch", &a).await.unwrap();
        for o in 1..=10 {
            h.deliver("ch", &publication(o), Instant::now());
        }
        assert!(
            a.cut.get(),
            "more than subscribe_buffer_frames: cut off as slow"
        );
    });
}

#[test]
fn failed_node_subscription_rolls_every_waiting_join_back() {
    run(|| async {
        let engine = Rc::new(Scripted::default());
        engine.fail_next.borrow_mut().push_back(true);
        engine.delay_ms.set(20);
        let h = hub(engine.clone());
        let (a, b) = (rec(1), rec(2));
        let (ra, rb) = futures_lite::future::zip(h.join("ch", &a), h.join("ch", &b)).await;
        assert!(ra.is_err() && rb.is_err(), "both waiters see the failure");
        assert_eq!(h.local_subscribers("ch"), 0);
        assert!(h.interested_cores("ch").is_empty());
        // a later subscribe works (the engine recovered)
        h.join("ch", &a).await.unwrap();
        assert_eq!(h.interested_cores("ch"), vec![0]);
    });
}

#[test]
fn on_off_on_ends_subscribed_with_one_engine_call_at_a_time() {
    run(|| async {
        let engine = Rc::new(Scripted::default());
        engine.delay_ms.set(10);
        let h = hub(engine.clone());
        let a = rec(1);
        h.join("ch", &a).await.unwrap();
        h.leave("ch", 1); // unsubscribe starts
        let b = rec(2);
        h.join("ch", &b).await.unwrap(); // must wait for it, then subscribe again
        crate::exec::sleep(Duration::from_millis(50)).await;
        assert_eq!(
            *engine.calls.borrow(),
            vec!["sub ch", "unsub ch", "sub ch"],
            "serialised per channel"
        );
        assert_eq!(engine.max_in_flight.get(), 1);
        h.deliver("ch", &publication(1), Instant::now());
        let mut reply = Vec::new();
        h.activate("ch", 2, 0, &mut reply);
        assert_eq!(reply_offsets(&reply), vec![1], "the node is not deaf");
    });
}

#[test]
fn reset_tells_live_subscribers_to_resubscribe_and_pending_ones_after_their_reply() {
    run(|| async {
        let h = hub(Rc::new(Scripted::default()));
        let (a, b) = (rec(1), rec(2));
        h.join("ch", &a).await.unwrap();
        h.activate("ch", 1, 0, &mut Vec::new());
        h.join("ch", &b).await.unwrap();
        h.reset("ch");
        let unsub = |r: &Rec| {
            r.got
                .borrow()
                .iter()
                .any(|f| String::from_utf8_lossy(f).contains(r#""unsubscribe":{"code":2500"#))
        };
        assert!(unsub(&a) && *a.forgot.borrow() == vec!["ch".to_string()]);
        assert!(!unsub(&b), "pending: not before its reply");
        let mut reply = Vec::new();
        h.activate("ch", 2, 0, &mut reply);
        assert!(
            String::from_utf8_lossy(&reply).contains(r#""unsubscribe":{"code":2500"#),
            "after its reply, in the reply's frame"
        );
        assert_eq!(*b.forgot.borrow(), vec!["ch".to_string()]);
        assert_eq!(h.local_subscribers("ch"), 0);
    });
}
