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
//! - an executor that was built but has not run our first task after [`BUILD_STALL`] is
//!   built again the same way (a lost wake-up in glommio, seen under load: its thread
//!   parked in `io_uring_enter` before ever polling the task);
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

/// A core's executor that has not run our first task this long after it was spawned is
/// built again ([`Cores::restart_stalled`]); a healthy one does within milliseconds.
const BUILD_STALL: Duration = Duration::from_secs(3);

/// How often the start checks for stalled builds.
const STALL_CHECK: Duration = Duration::from_millis(250);

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

/// `(core, generation)`: a core's executor may be built more than once while starting;
/// events of an abandoned generation are ignored.
enum Event {
    Ready(usize, u32),
    Exited(usize, u32),
}

/// Held by a core for as long as it runs: records its stage, reports readiness, and
/// reports its end when dropped.
pub struct CoreLife {
    core: usize,
    generation: u32,
    stage: Arc<AtomicU8>,
    events: Sender<Event>,
}

impl CoreLife {
    /// Records that this core reached `stage` (and, for [`Stage::Ready`], reports it).
    pub fn reached(&self, stage: Stage) {
        self.stage.store(stage as u8, Ordering::Release);
        if stage == Stage::Ready {
            let _ = self.events.send(Event::Ready(self.core, self.generation));
        }
    }
}

impl Drop for CoreLife {
    fn drop(&mut self) {
        let _ = self.events.send(Event::Exited(self.core, self.generation));
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
    /// The current generation of each core's executor, and when it was spawned.
    generations: Vec<(u32, Instant)>,
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
            let stall = faults.stall(i);
            faults
                .apply(i, configure(i, cpus[i]))
                .spawn(move || async move {
                    if stall {
                        // what a lost wake-up looks like from here: the first task waits
                        std::thread::sleep(Duration::from_secs(60));
                    }
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
            generations: (0..n).map(|_| (0, Instant::now())).collect(),
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
        let generation = self.generations[i].0 + 1;
        self.generations[i] = (generation, Instant::now());
        let life = CoreLife {
            core: i,
            generation,
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
            let wait = deadline
                .saturating_duration_since(Instant::now())
                .min(STALL_CHECK);
            match self.events.recv_timeout(wait) {
                Ok(Event::Ready(i, g)) if g == self.generations[i].0 => ready[i] = true,
                Ok(Event::Exited(i, g)) if g == self.generations[i].0 => {
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
                Ok(_) => {} // an abandoned generation
                Err(RecvTimeoutError::Timeout) if Instant::now() < deadline => {
                    self.restart_stalled(&mut attempts)?;
                }
                Err(RecvTimeoutError::Timeout) => {
                    let late: Vec<String> = (0..n)
                        .filter(|&i| !ready[i])
                        .map(|i| format!("core {i}: {:?}", self.stage(i)))
                        .collect();
                    anyhow::bail!(
                        "cores not ready within {limit:?} ({}); a core waiting in Joining waits for a peer\nthreads:\n{}",
                        late.join(", "),
                        thread_states()
                    );
                }
                Err(RecvTimeoutError::Disconnected) => {
                    unreachable!("self.tx keeps the channel open")
                }
            }
        }
        Ok(())
    }

    /// Builds again the executor of a core that has not run its first task [`BUILD_STALL`]
    /// after it was spawned. Seen under load: glommio's executor parked before polling our
    /// task, its preemption timer's wake-up lost, with no I/O yet to wake it (its thread
    /// slept in `io_uring_enter` for the whole startup limit). The abandoned executor stays
    /// parked; if it ever wakes it finds the core's inputs taken and ends, and its events
    /// carry an old generation.
    fn restart_stalled(&mut self, attempts: &mut [u32]) -> anyhow::Result<()> {
        for (i, tries) in attempts.iter_mut().enumerate() {
            let stalled = self.stage(i) == Stage::Building
                && self.generations[i].1.elapsed() >= BUILD_STALL
                && self.slots[i].lock().expect("core slot").is_some();
            if stalled && *tries < BUILD_ATTEMPTS {
                tracing::warn!(core = i, attempt = *tries, "the core's executor did not start its first task in {BUILD_STALL:?}; building it again");
                *tries += 1;
                drop(self.handles[i].take()); // detached: it stays parked
                self.spawn(i)?;
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
            if let Ok(Event::Exited(i, g)) = self.events.recv() {
                if g == self.generations[i].0 {
                    return i;
                }
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
/// allows), the way a refused io_uring setup fails them; `WS_TEST_FAULT_EXECUTOR_STALLS=N`:
/// the first N builds of the last core do not run their first task for a minute (a stall).
/// Nothing in release builds.
struct BuildFaults {
    core: usize,
    left: std::sync::atomic::AtomicU32,
    stalls: std::sync::atomic::AtomicU32,
}

impl BuildFaults {
    fn from_env(ncores: usize) -> BuildFaults {
        let wanted = cfg!(debug_assertions) && std::env::var_os("WS_TEST_FAULTS").is_some();
        let count = |var: &str| {
            std::env::var(var)
                .ok()
                .filter(|_| wanted)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        BuildFaults {
            core: ncores - 1,
            left: std::sync::atomic::AtomicU32::new(count("WS_TEST_FAULT_EXECUTOR_BUILDS")),
            stalls: std::sync::atomic::AtomicU32::new(count("WS_TEST_FAULT_EXECUTOR_STALLS")),
        }
    }

    fn take(&self, core: usize, counter: &std::sync::atomic::AtomicU32) -> bool {
        core == self.core
            && counter
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
                .is_ok()
    }

    fn stall(&self, core: usize) -> bool {
        self.take(core, &self.stalls)
    }

    fn apply(
        &self,
        core: usize,
        b: glommio::LocalExecutorBuilder,
    ) -> glommio::LocalExecutorBuilder {
        if self.take(core, &self.left) {
            b.ring_depth(1 << 20)
        } else {
            b
        }
    }
}

/// Every thread of this process with its name, state, kernel wait channel and current
/// system call (`/proc/self/task`), for the error of a start that hung.
fn thread_states() -> String {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return "(no /proc/self/task)".into();
    };
    let mut out = String::new();
    for t in tasks.flatten() {
        let p = t.path();
        let read = |f: &str| std::fs::read_to_string(p.join(f)).unwrap_or_default();
        let stat = read("stat");
        let state = stat
            .rsplit(')')
            .next()
            .and_then(|r| r.split_whitespace().next())
            .unwrap_or("?")
            .to_owned();
        out.push_str(&format!(
            "  {} {} state={} wchan={} syscall={}\n",
            t.file_name().to_string_lossy(),
            read("comm").trim(),
            state,
            read("wchan").trim(),
            read("syscall")
                .split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" "),
        ));
    }
    out
}
