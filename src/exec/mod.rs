//! Executor helpers every room may use: spawning, timers, deadlines, cooperative
//! yielding, the process clocks, and two single-core wake-up primitives
//! ([`Notify`], [`Ready`]).
//!
//! This is a leaf: it imports nothing of the crate, so `session`, `hub`, `engine`
//! and `mesh` use it without depending on `runtime` (which wires them all
//! together). glommio appears here only as the executor of the calling thread;
//! the rest of the crate never names it (principle 8 of ARCHITECTURE.md).

mod notify;
mod ready;

pub use notify::Notify;
pub use ready::Ready;

use std::future::Future;
use std::time::Duration;

/// Spawns a task on this core, detached.
pub fn spawn(fut: impl Future<Output = ()> + 'static) {
    glommio::spawn_local(fut).detach();
}

pub async fn sleep(d: Duration) {
    glommio::timer::sleep(d).await;
}

/// Spawns one of the loops a core cannot live without (accept, flusher, heartbeat,
/// mesh dispatch and forwarding). glommio drops a task that panics and the core goes
/// on without it, which would leave a broken core behind a `/health` that says 200:
/// a panic here is logged and ends the process with status 1, so supervisors and load
/// balancers see the failure and replace the node.
pub fn spawn_critical(name: &'static str, fut: impl Future<Output = ()> + 'static) {
    use futures_lite::FutureExt as _;
    spawn(async move {
        if std::panic::AssertUnwindSafe(fut)
            .catch_unwind()
            .await
            .is_err()
        {
            tracing::error!(
                task = name,
                "a core task panicked; exiting so the node is replaced"
            );
            std::process::exit(1);
        }
    });
}

/// Runs `fut` for at most `d`; `None` on timeout.
pub async fn timeout<T>(d: Duration, fut: impl Future<Output = T>) -> Option<T> {
    futures_lite::future::or(async { Some(fut.await) }, async {
        sleep(d).await;
        None
    })
    .await
}

/// Polls `fut` at least every `period`, whether or not it woke itself: a guard against a lost
/// cross-executor wake-up. glommio's mesh join (shared channels between executors) sometimes
/// never completed at startup when several servers started at once (about 1 start in 15 in a
/// 6-parallel-starts loop; cf. glommio issues #261, #555).
pub async fn poll_at_least_every<F: Future>(period: Duration, fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    loop {
        let tick = async {
            sleep(period).await;
            None
        };
        if let Some(v) = futures_lite::future::or(async { Some(fut.as_mut().await) }, tick).await {
            return v;
        }
    }
}

/// Lets other tasks and I/O on this core run if this task has used its time slice
/// (the executor's preemption timer); otherwise returns at once.
pub async fn yield_if_needed() {
    glommio::yield_if_needed().await;
}

/// Re-queues the calling task behind the others ready on this core (no reactor turn).
pub async fn yield_now() {
    futures_lite::future::yield_now().await;
}

/// A time slice for a task that may stay busy (reads that always complete at once):
/// [`Slice::check`] yields once the slice is used up. Cheaper than
/// [`yield_if_needed`] under load, where glommio asks to yield on every pending
/// completion and each yield there is a whole reactor turn.
pub struct Slice {
    started_ms: u64,
    len_ms: u64,
}

impl Slice {
    pub fn new(len_ms: u64) -> Self {
        Slice {
            started_ms: now_ms(),
            len_ms,
        }
    }

    pub async fn check(&mut self) {
        let now = now_ms();
        if now.saturating_sub(self.started_ms) >= self.len_ms {
            yield_now().await;
            self.started_ms = now_ms();
        }
    }
}

/// Milliseconds on the process's monotonic clock (the session timers' unit; never 0).
pub fn now_ms() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_millis() as u64
        + 1
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
