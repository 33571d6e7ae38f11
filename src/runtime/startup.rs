//! Starting the per-core executors, and knowing when one ends.
//!
//! glommio builds an executor (its io_uring rings, its eventfd, its blocking pool) inside
//! the thread it spawns, and when that fails the thread just returns the error: the future
//! we handed it is dropped without ever running. With several servers starting at once on a
//! busy host that happened about once in a few hundred starts, and the core's peers then
//! waited in the mesh join until the 30 s startup limit. So:
//!
//! - each core's inputs (its listeners, its clone of the shared state) wait in a slot its
//!   executor takes them from; an executor that ended without taking them failed to build,
//!   and is built again with the same inputs (up to [`BUILD_ATTEMPTS`] times, the error
//!   logged each time);
//! - a core that ends while starting for any other reason fails the start with its own
//!   error, read from its thread;
//! - a start that takes longer than the limit names each core that is not ready and the
//!   last stage it reached ([`Stage`]).
//!
//! After the start, [`Cores::first_exit`] returns the first core to end (every core holds a
//! [`CoreLife`] whose drop reports it, even by a panic).

use std::future::Future;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use glommio::ExecutorJoinHandle;

/// How many times one core's executor is built before the start fails.
const BUILD_ATTEMPTS: u32 = 5;

/// How far a core got while starting, for the error when the start takes too long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Stage {
    /// Its executor thread has not run our code yet.
    Building = 0,
    /// Its executor runs; it is joining the core mesh.
    Joining = 1,
    /// It joined the mesh and is building its state.
    Wiring = 2,
    /// It accepts connections.
    Ready = 3,
}

impl Stage {
    fn from_u8(v: u8) -> Stage {
        match v {
            1 => Stage::Joining,
            2 => Stage::Wiring,
            3 => Stage::Ready,
            _ => Stage::Building,
        }
    }
}

enum Event {
    Ready(usize),
    Exited(usize),
}

/// Held by a core for as long as it runs: records its stage, reports readiness, and
/// reports its end when dropped.
pub struct CoreLife {
    core: usize,
    stage: Arc<AtomicU8>,
    events: Sender<Event>,
}

impl CoreLife {
    /// Records that this core reached `stage` (and, for [`Stage::Ready`], reports it).
    pub fn reached(&self, stage: Stage) {
        self.stage.store(stage as u8, Ordering::Release);
        if stage == Stage::Ready {
            let _ = self.events.send(Event::Ready(self.core));
        }
    }
}

impl Drop for CoreLife {
    fn drop(&mut self) {
        let _ = self.events.send(Event::Exited(self.core));
    }
}

/// Builds core `i`'s executor: gets the slot its inputs wait in and the life it must hold.
type Build<I> =
    dyn Fn(usize, Arc<Mutex<Option<I>>>, CoreLife) -> glommio::Result<ExecutorJoinHandle<()>, ()>;

/// The running cores of a node.
pub struct Cores<I> {
    build: Box<Build<I>>,
    slots: Vec<Arc<Mutex<Option<I>>>>,
    stages: Vec<Arc<AtomicU8>>,
    handles: Vec<Option<ExecutorJoinHandle<()>>>,
    events: Receiver<Event>,
    tx: Sender<Event>,
}

impl<I: Send + 'static> Cores<I> {
    /// Starts one executor per input on the CPU `cpus` names at the same index, each
    /// running `run(input, life)`, and waits until every core is ready (or fails the start).
    pub fn start<R, F>(
        cpus: &[usize],
        inputs: Vec<I>,
        configure: impl Fn(usize, usize) -> glommio::LocalExecutorBuilder + 'static,
        run: R,
        limit: Duration,
    ) -> anyhow::Result<Cores<I>>
    where
        R: Fn(I, CoreLife) -> F + Clone + Send + 'static,
        F: Future<Output = ()> + 'static,
    {
        let cpus = cpus.to_vec();
        let faults = BuildFaults::from_env(cpus.len());
        let build = move |i: usize, slot: Arc<Mutex<Option<I>>>, life: CoreLife| {
            let run = run.clone();
            faults
                .apply(i, configure(i, cpus[i]))
                .spawn(move || async move {
                    let taken = slot.lock().expect("core slot").take();
                    if let Some(input) = taken {
                        life.reached(Stage::Joining);
                        run(input, life).await;
                    }
                })
        };
        let (tx, events) = std::sync::mpsc::channel();
        let n = inputs.len();
        let mut cores = Cores {
            build: Box::new(build),
            slots: inputs
                .into_iter()
                .map(|i| Arc::new(Mutex::new(Some(i))))
                .collect(),
            stages: (0..n).map(|_| Arc::new(AtomicU8::new(0))).collect(),
            handles: (0..n).map(|_| None).collect(),
            events,
            tx,
        };
        for i in 0..n {
            cores.spawn(i)?;
        }
        cores.wait_ready(limit)?;
        Ok(cores)
    }

    fn spawn(&mut self, i: usize) -> anyhow::Result<()> {
        self.stages[i].store(Stage::Building as u8, Ordering::Release);
        let life = CoreLife {
            core: i,
            stage: self.stages[i].clone(),
            events: self.tx.clone(),
        };
        let handle = (self.build)(i, self.slots[i].clone(), life)
            .map_err(|e| anyhow::anyhow!("starting the executor of core {i}: {e}"))?;
        self.handles[i] = Some(handle);
        Ok(())
    }

    fn wait_ready(&mut self, limit: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        let n = self.slots.len();
        let mut ready = vec![false; n];
        let mut attempts = vec![1u32; n];
        while ready.iter().any(|r| !r) {
            let wait = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(wait) {
                Ok(Event::Ready(i)) => ready[i] = true,
                Ok(Event::Exited(i)) => {
                    let error = match self.handles[i].take().map(ExecutorJoinHandle::join) {
                        Some(Err(e)) => e.to_string(),
                        _ => "it returned while starting".to_owned(),
                    };
                    let never_ran = self.slots[i].lock().expect("core slot").is_some();
                    if !never_ran || attempts[i] >= BUILD_ATTEMPTS {
                        anyhow::bail!("core {i} failed to start: {error}");
                    }
                    tracing::warn!(core = i, attempt = attempts[i], %error, "building the core's executor failed; building it again");
                    std::thread::sleep(Duration::from_millis(20 << attempts[i]));
                    attempts[i] += 1;
                    self.spawn(i)?;
                }
                Err(RecvTimeoutError::Timeout) => {
                    let late: Vec<String> = (0..n)
                        .filter(|&i| !ready[i])
                        .map(|i| format!("core {i}: {:?}", self.stage(i)))
                        .collect();
                    anyhow::bail!(
                        "cores not ready within {limit:?} ({}); a core waiting in Joining waits for a peer",
                        late.join(", ")
                    );
                }
                Err(RecvTimeoutError::Disconnected) => {
                    unreachable!("self.tx keeps the channel open")
                }
            }
        }
        Ok(())
    }

    fn stage(&self, i: usize) -> Stage {
        Stage::from_u8(self.stages[i].load(Ordering::Acquire))
    }

    /// Blocks until a core ends and returns its index.
    pub fn first_exit(&self) -> usize {
        loop {
            if let Ok(Event::Exited(i)) = self.events.recv() {
                return i;
            }
        }
    }

    /// Waits for every core's thread; true when one of them panicked or failed.
    pub fn join(self) -> bool {
        let mut failed = false;
        for h in self.handles.into_iter().flatten() {
            failed |= h.join().is_err();
        }
        failed
    }
}

/// Debug builds run with `WS_TEST_FAULTS=1` and `WS_TEST_FAULT_EXECUTOR_BUILDS=N`: the first
/// N builds of the last core's executor fail inside glommio (a ring deeper than io_uring
/// allows), the way a refused io_uring setup fails them. Nothing in release builds.
struct BuildFaults {
    core: usize,
    left: std::sync::atomic::AtomicU32,
}

impl BuildFaults {
    fn from_env(ncores: usize) -> BuildFaults {
        let wanted = cfg!(debug_assertions) && std::env::var_os("WS_TEST_FAULTS").is_some();
        let n = std::env::var("WS_TEST_FAULT_EXECUTOR_BUILDS")
            .ok()
            .filter(|_| wanted)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        BuildFaults {
            core: ncores - 1,
            left: std::sync::atomic::AtomicU32::new(n),
        }
    }

    fn apply(
        &self,
        core: usize,
        b: glommio::LocalExecutorBuilder,
    ) -> glommio::LocalExecutorBuilder {
        let fail = core == self.core
            && self
                .left
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
                .is_ok();
        if fail {
            b.ring_depth(1 << 20)
        } else {
            b
        }
    }
}
