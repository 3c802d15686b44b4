//! The embedded CPython and its worker threads.
//!
//! Python runs only on dedicated OS threads (never on tokio's), fed through a bounded job
//! queue; each job takes the GIL, runs, and replies on a oneshot channel. A worker blocked
//! in Python code that released the GIL (`time.sleep`, I/O) lets the other workers run.
//! JSON payloads are converted to Python objects (and back) by walking `serde_json` values
//! here in Rust: measured faster than Python's own `json` module.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString, PyTuple};
use shoal_common::{ErrorCode, ShoalError};
use shoal_proto::executor::v1 as pb;
use tokio::sync::oneshot;

use crate::metrics::Metrics;

/// Work for a Python thread.
pub enum Job {
    Invoke {
        req: Box<pb::InvokeRequest>,
        enqueued: Instant,
        /// Where the job is: queued, running on a thread, or done (see [`JobState`]).
        state: Arc<JobState>,
        reply: oneshot::Sender<pb::InvokeResponse>,
    },
    Deploy {
        module: String,
        source: String,
        origin: String,
        reply: oneshot::Sender<Result<(Vec<String>, String), ShoalError>>,
    },
    Undeploy {
        module: String,
        reply: oneshot::Sender<Vec<String>>,
    },
    List {
        reply: oneshot::Sender<Vec<pb::ServiceInfo>>,
    },
}

/// Progress of one invocation, shared between the caller (who may time out) and the
/// worker thread (who runs it). Transitions happen with the GIL held, so a caller holding
/// the GIL sees a consistent value.
#[derive(Default)]
pub struct JobState {
    /// 0 queued (the default), 1 running, 2 done.
    phase: AtomicU8,
    /// Python thread ident (`threading.get_ident()`) of the worker running it.
    thread: AtomicU64,
}

const RUNNING: u8 = 1;
const DONE: u8 = 2;
/// Still running long past its deadline: its thread was written off and replaced.
const WRITTEN_OFF: u8 = 3;

/// Sizes of the elastic pool.
#[derive(Debug, Clone, Copy)]
pub struct PoolSize {
    /// Threads kept even when idle.
    pub min: usize,
    /// Upper bound while services block.
    pub max: usize,
}

/// Run permits: only permit holders take jobs, so idle workers wait on a condvar rather
/// than on the GIL. There is one base permit; the manager adds single-use extra permits
/// while the runner is blocked. Invariant: in use + available = 1 + extra.
struct Permits {
    available: usize,
    extra: usize,
    /// Workers waiting for a permit.
    waiting: usize,
}

struct Shared {
    rx: crossbeam_channel::Receiver<Job>,
    size: PoolSize,
    alive: AtomicUsize,
    completed: AtomicU64,
    /// Mirrors `Permits::extra`, read without the lock by draining runners.
    extra: AtomicUsize,
    permits: parking_lot::Mutex<Permits>,
    permit_cv: parking_lot::Condvar,
    metrics: Arc<Metrics>,
    /// Written-off threads still stuck in their job.
    written_off: AtomicUsize,
    /// The Linux thread ids of the worker threads, for the manager's look at how much
    /// CPU they use (see [`PythonCpu`]).
    tids: parking_lot::Mutex<Vec<u32>>,
}

impl Shared {
    /// Waits up to `idle` for a run permit.
    fn acquire(&self, idle: Duration) -> bool {
        let mut p = self.permits.lock();
        let deadline = Instant::now() + idle;
        p.waiting += 1;
        while p.available == 0 {
            if self.permit_cv.wait_until(&mut p, deadline).timed_out() && p.available == 0 {
                p.waiting -= 1;
                return false;
            }
        }
        p.waiting -= 1;
        p.available -= 1;
        true
    }

    /// Gives a permit back; an extra one is destroyed instead.
    fn release(&self) {
        let mut p = self.permits.lock();
        if p.extra > 0 {
            p.extra -= 1;
            self.extra.store(p.extra, Ordering::Release);
        } else {
            p.available += 1;
            self.permit_cv.notify_one();
        }
    }

    /// Adds up to `n` single-use permits; returns how many workers should be spawned
    /// because none is waiting to use them.
    fn grant(&self, n: usize) -> usize {
        let mut p = self.permits.lock();
        let in_play = 1 + p.extra;
        let n = n.min(self.size.max.saturating_sub(in_play));
        if n == 0 {
            return 0;
        }
        p.extra += n;
        p.available += n;
        self.extra.store(p.extra, Ordering::Release);
        for _ in 0..n {
            self.permit_cv.notify_one();
        }
        n.saturating_sub(p.waiting)
    }
}

/// A handle on the pool; cheap to clone.
#[derive(Clone)]
pub struct Pool {
    tx: crossbeam_channel::Sender<Job>,
    shared: Arc<Shared>,
}

impl Pool {
    /// Starts CPython (once per process), puts `sdk_dir` on `sys.path`, starts `size.min`
    /// worker threads and the manager that grows the pool while every worker is blocked.
    pub fn start(
        size: PoolSize,
        queue: usize,
        sdk_dir: &std::path::Path,
        metrics: Arc<Metrics>,
    ) -> Result<Pool, String> {
        // Python's logging to stderr; Rust owns signals (Py_InitializeEx(0) left them).
        start_sdk(
            sdk_dir,
            c"import logging, sys\nlogging.basicConfig(level=logging.INFO, stream=sys.stderr, format='%(asctime)s %(levelname)s python %(name)s: %(message)s')",
        )?;
        let size = PoolSize {
            min: size.min.max(1),
            max: size.max.max(size.min.max(1)),
        };
        let (tx, rx) = crossbeam_channel::bounded::<Job>(queue.max(1));
        let shared = Arc::new(Shared {
            rx,
            size,
            alive: AtomicUsize::new(0),
            completed: AtomicU64::new(0),
            extra: AtomicUsize::new(0),
            permits: parking_lot::Mutex::new(Permits {
                available: 1,
                extra: 0,
                waiting: 0,
            }),
            permit_cv: parking_lot::Condvar::new(),
            metrics,
            written_off: AtomicUsize::new(0),
            tids: parking_lot::Mutex::new(Vec::new()),
        });
        for _ in 0..size.min {
            spawn_worker(&shared)?;
        }
        let manager = shared.clone();
        // The manager lives as long as the process (the pool is never torn down).
        std::thread::Builder::new()
            .name("python-pool".into())
            .spawn(move || manage(manager))
            .map_err(|e| format!("cannot start the pool manager: {e}"))?;
        Ok(Pool { tx, shared })
    }

    /// Worker threads alive now.
    pub fn threads(&self) -> usize {
        self.shared.alive.load(Ordering::Acquire)
    }

    /// Queues a job; fails at once when the queue is full or the pool is gone.
    /// Jobs waiting for a Python thread.
    pub fn queued(&self) -> usize {
        self.tx.len()
    }

    /// Jobs completed so far: Python made progress if this moved.
    pub fn completed(&self) -> u64 {
        self.shared.completed.load(Ordering::Acquire)
    }

    /// Writes off the thread running `state`'s job if it is still running it: its run
    /// permit and its place among the workers go to a new thread at once, and the stuck
    /// thread ends by itself if its job ever returns. Whether it was written off.
    pub fn write_off(&self, state: &JobState) -> bool {
        if state
            .phase
            .compare_exchange(RUNNING, WRITTEN_OFF, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return false;
        }
        self.shared.alive.fetch_sub(1, Ordering::AcqRel);
        self.shared.release();
        self.shared.written_off.fetch_add(1, Ordering::AcqRel);
        self.shared.metrics.written_off(1);
        true
    }

    /// Threads written off and still stuck.
    pub fn written_off(&self) -> usize {
        self.shared.written_off.load(Ordering::Acquire)
    }

    pub fn submit(&self, job: Job) -> Result<(), ShoalError> {
        self.tx.try_send(job).map_err(|e| match e {
            crossbeam_channel::TrySendError::Full(_) => ShoalError::new(
                ErrorCode::TooManyRequests,
                "executor queue is full; retry later",
            ),
            crossbeam_channel::TrySendError::Disconnected(_) => {
                ShoalError::new(ErrorCode::Unavailable, "executor is shutting down")
            }
        })
    }
}

/// Starts CPython (once per process) with `sdk_dir` first on `sys.path`, runs `prelude`
/// (logging set-up) and imports the SDK's runtime.
fn start_sdk(sdk_dir: &std::path::Path, prelude: &std::ffi::CStr) -> Result<(), String> {
    Python::initialize();
    Python::attach(|py| -> PyResult<()> {
        py.import("sys")?
            .getattr("path")?
            .call_method1("insert", (0, sdk_dir.display().to_string()))?;
        py.run(prelude, None, None)?;
        py.import("shoal._runtime")?;
        Ok(())
    })
    .map_err(|e| Python::attach(|py| format!("cannot start the Python SDK: {}", e.value(py))))
}

/// What the Python side is set up with before the executor serves.
pub struct Setup<'a> {
    /// A virtualenv whose site-packages services import from (checked against this
    /// interpreter's version).
    pub virtualenv: Option<&'a std::path::Path>,
    /// Folders put on the import path (the pickup folder, for its packages).
    pub import_paths: Vec<std::path::PathBuf>,
    /// Zato-style user config files and folders (`self.config`).
    pub user_config: &'a [std::path::PathBuf],
    /// Installed modules or packages whose services are loaded now (and only now).
    pub static_modules: &'a [String],
}

/// Applies `setup`; returns the services of the static modules. The error names the
/// virtualenv or module at fault.
pub fn setup(setup: &Setup<'_>) -> Result<Vec<String>, String> {
    Python::attach(|py| {
        let err = |e: PyErr| e.value(py).to_string();
        let rt = runtime(py).map_err(err)?;
        if let Some(v) = setup.virtualenv {
            rt.call_method1("add_virtualenv", (v.display().to_string(),))
                .map_err(err)?;
        }
        for p in &setup.import_paths {
            rt.call_method1("add_import_path", (p.display().to_string(),))
                .map_err(err)?;
        }
        let paths: Vec<String> = setup
            .user_config
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        rt.setattr("user_config_paths", paths).map_err(err)?;
        let mut names = Vec::new();
        for m in setup.static_modules {
            let loaded: Vec<String> = rt
                .call_method1("load_static", (m.as_str(),))
                .and_then(|r| r.extract())
                .map_err(err)?;
            names.extend(loaded);
        }
        Ok(names)
    })
}

/// Starts CPython for the validating process ([`crate::validator`]): the SDK, the same
/// import setup as the serving executor, Python's stdout sent to stderr (stdout carries
/// the answers), and the address space capped at `memory_mb` beyond what start-up took.
pub fn init_validator(
    sdk_dir: &std::path::Path,
    setup_with: &Setup<'_>,
    memory_mb: u64,
) -> Result<(), String> {
    start_sdk(
        sdk_dir,
        c"import logging, sys\nsys.stdout = sys.stderr\nlogging.basicConfig(level=logging.WARNING, stream=sys.stderr)",
    )?;
    setup(setup_with)?;
    Python::attach(|py| -> PyResult<()> {
        let code = std::ffi::CString::new(format!(
            "import resource\n\
             with open('/proc/self/statm') as f:\n    size = int(f.read().split()[0]) * resource.getpagesize()\n\
             cap = size + {memory_mb} * 1024 * 1024\n\
             resource.setrlimit(resource.RLIMIT_AS, (cap, cap))\n"
        ))
        .map_err(|e| pyo3::exceptions::PyValueError::new_err(e.to_string()))?;
        py.run(&code, None, None)
    })
    .map_err(|e| Python::attach(|py| format!("cannot cap the validator's memory: {}", e.value(py))))
}

/// Imports a module in the validating process; its services, or why it did not import.
pub fn import_for_validation(
    module: &str,
    source: &str,
    origin: &str,
) -> Result<Vec<String>, String> {
    Python::attach(|py| {
        runtime(py)
            .and_then(|rt| rt.call_method1("deploy", (module, source, origin)))
            .and_then(|out| out.extract::<(Vec<String>, String)>())
            .map(|(names, _)| names)
            .map_err(|e| e.value(py).to_string())
    })
}

fn spawn_worker(shared: &Arc<Shared>) -> Result<(), String> {
    let n = shared.alive.fetch_add(1, Ordering::AcqRel);
    let s = shared.clone();
    std::thread::Builder::new()
        .name(format!("python-{n}"))
        .spawn(move || worker(s))
        .map(|_| ())
        .map_err(|e| {
            shared.alive.fetch_sub(1, Ordering::AcqRel);
            format!("cannot start a Python worker thread: {e}")
        })
}

/// Hands out extra run permits while jobs wait, none completed for 5 ms and the worker
/// threads are not busy on the CPU (the runner is blocked: sleeping, waiting on I/O, or
/// stuck past a deadline, with the GIL released), spawning workers up to the maximum
/// when none is free. Trivial services complete jobs constantly, so they never get a
/// second runner; a long call that computes (a large payload parsed and encoded, a loop
/// in Python) holds the GIL, so a second runner could only take turns with it — it would
/// not finish sooner, and every call in progress would hold its payload at once (four
/// 4 MB JSON documents as Python objects are ~90 MB).
fn manage(shared: Arc<Shared>) {
    let mut last = shared.completed.load(Ordering::Acquire);
    let mut cpu = PythonCpu::default();
    loop {
        std::thread::sleep(Duration::from_millis(5));
        let done = shared.completed.load(Ordering::Acquire);
        let waiting = shared.rx.len();
        let stalled = waiting > 0 && done == last;
        // Two looks 5 ms apart: the first stalled tick only takes the first one.
        let computing = if stalled {
            cpu.busy(&shared.tids.lock())
        } else {
            cpu.forget();
            None
        };
        if stalled && computing == Some(false) {
            let spawn = shared.grant(waiting.min(8));
            let room = shared
                .size
                .max
                .saturating_sub(shared.alive.load(Ordering::Acquire));
            for _ in 0..spawn.min(room) {
                if spawn_worker(&shared).is_err() {
                    break;
                }
            }
        }
        last = done;
    }
}

/// Whether the worker threads are computing, from what the kernel says of them between
/// two looks of the manager: a thread in state `R` (on a CPU, or ready and waiting for
/// one: the machine's cores are shared) at either look, or threads runnable — on a CPU
/// or waiting for one — for at least a fifth of the time between the looks
/// (`/proc/self/task/<tid>/stat` and `schedstat`). A thread waiting for the GIL,
/// sleeping or blocked on I/O is neither. (The state covers what the times miss: they
/// are brought up to date only at scheduler ticks and when a waiting thread runs.)
#[derive(Default)]
struct PythonCpu {
    last: Option<(Instant, u64, bool)>,
}

impl PythonCpu {
    /// Whether the workers were computing since the previous look: `None` on the first
    /// look; `Some(false)` where the kernel does not say (the manager then grants as it
    /// would for blocked workers).
    fn busy(&mut self, tids: &[u32]) -> Option<bool> {
        let now = Instant::now();
        let Some((total, running)) = tids.iter().try_fold((0u64, false), |(sum, running), tid| {
            let text = std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat")).ok()?;
            let mut fields = text.split_whitespace();
            let on_cpu: u64 = fields.next()?.parse().ok()?;
            let waiting_for_cpu: u64 = fields.next()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
            // The state follows the command name, which is in parentheses.
            let state = stat.rsplit_once(')')?.1.trim_start().chars().next()?;
            Some((sum + on_cpu + waiting_for_cpu, running || state == 'R'))
        }) else {
            self.last = None;
            return Some(false);
        };
        let (then, before, was_running) = self.last.replace((now, total, running))?;
        let elapsed = u64::try_from(now.duration_since(then).as_nanos()).unwrap_or(u64::MAX);
        Some(running || was_running || total.saturating_sub(before).saturating_mul(5) >= elapsed)
    }

    fn forget(&mut self) {
        self.last = None;
    }
}

/// This thread's Linux thread id (`/proc/thread-self` names it), if the kernel says.
fn thread_id() -> Option<u32> {
    std::fs::read_link("/proc/thread-self")
        .ok()?
        .file_name()?
        .to_str()?
        .parse()
        .ok()
}

/// Keeps a worker's thread id in the pool's list while the worker lives.
struct Registered<'a>(&'a Shared, Option<u32>);

impl<'a> Registered<'a> {
    fn new(shared: &'a Shared) -> Registered<'a> {
        let tid = thread_id();
        if let Some(t) = tid {
            shared.tids.lock().push(t);
        }
        Registered(shared, tid)
    }
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        if let Some(t) = self.1 {
            self.0.tids.lock().retain(|x| *x != t);
        }
    }
}

/// A worker: waits for a run permit (not for the GIL), takes a job, and runs it. The base
/// permit's holder keeps the GIL and drains the queue back to back; a holder of an extra
/// permit runs one job and gives the permit up. Workers beyond the minimum retire after
/// 30 s without a permit.
///
/// The thread takes a CPython thread state once and keeps it while it lives (it holds the
/// GIL only while it runs jobs). Without one, `Python::attach` makes a thread state each
/// time the thread takes the GIL and tears it down when it lets go, and with it whatever
/// a service kept in a `threading.local` (a connection, a session) — lost after every
/// batch of jobs.
fn worker(shared: Arc<Shared>) {
    let _registered = Registered::new(&shared);
    // The thread state made here outlives every `attach` inside the loop.
    Python::attach(|py| {
        let ident = python_ident(py);
        py.detach(|| take_jobs(&shared, ident));
    });
}

/// `threading.get_ident()` of this thread.
fn python_ident(py: Python<'_>) -> u64 {
    py.import("threading")
        .and_then(|t| t.call_method0("get_ident"))
        .and_then(|i| i.extract::<u64>())
        .unwrap_or(0)
}

/// The worker's loop: permits, jobs, and retiring when idle (see [`worker`]).
fn take_jobs(shared: &Arc<Shared>, ident: u64) {
    loop {
        if !shared.acquire(Duration::from_secs(30)) {
            let alive = shared.alive.load(Ordering::Acquire);
            if alive > shared.size.min
                && shared
                    .alive
                    .compare_exchange(alive, alive - 1, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
            {
                return;
            }
            continue;
        }
        let job = match shared.rx.recv_timeout(Duration::from_secs(1)) {
            Ok(job) => job,
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                shared.release();
                continue;
            }
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                shared.release();
                shared.alive.fetch_sub(1, Ordering::AcqRel);
                return;
            }
        };
        let written_off = Python::attach(|py| {
            if run_job(py, job, ident, shared) {
                return true;
            }
            while shared.extra.load(Ordering::Acquire) == 0 {
                match shared.rx.try_recv() {
                    Ok(job) => {
                        if run_job(py, job, ident, shared) {
                            return true;
                        }
                    }
                    Err(_) => break,
                }
            }
            false
        });
        if written_off {
            // Its permit and its place were handed on when it was written off.
            shared.written_off.fetch_sub(1, Ordering::AcqRel);
            shared.metrics.written_off(-1);
            tracing::warn!("a written-off Python thread finished its call and ends");
            return;
        }
        shared.release();
    }
}

/// Runs one job; true when its thread was written off meanwhile (it must end).
fn run_job(py: Python<'_>, job: Job, ident: u64, shared: &Shared) -> bool {
    match job {
        Job::Invoke {
            req,
            enqueued,
            state,
            reply,
        } => {
            shared.metrics.queue_wait(enqueued.elapsed());
            if reply.is_closed() {
                // The caller gave up while the job waited: do not run it.
                state.phase.store(DONE, Ordering::Release);
                return false;
            }
            state.thread.store(ident, Ordering::Release);
            state.phase.store(RUNNING, Ordering::Release);
            let started = Instant::now();
            let service = req.service.clone();
            let resp = invoke(py, *req);
            let was = state.phase.swap(DONE, Ordering::AcqRel);
            let (outcome, known) = match &resp.error {
                Some(e) => {
                    let code = ErrorCode::parse(&e.code);
                    // A name nobody deployed is not a label (callers choose it).
                    let unknown =
                        code == ErrorCode::NotFound && e.message.starts_with("no such service");
                    (shoal_common::Outcome::of_code(code), !unknown)
                }
                None => (
                    shoal_common::Outcome::of_status(u16::try_from(resp.status).unwrap_or(200)),
                    true,
                ),
            };
            shared.metrics.invoked(
                known.then_some(service.as_str()),
                started.elapsed(),
                outcome,
            );
            let _ = reply.send(resp);
            if was == WRITTEN_OFF {
                shared.completed.fetch_add(1, Ordering::AcqRel);
                return true;
            }
        }
        Job::Deploy {
            module,
            source,
            origin,
            reply,
        } => {
            let _ = reply.send(deploy(py, &module, &source, &origin));
        }
        Job::Undeploy { module, reply } => {
            let r = runtime(py)
                .and_then(|rt| rt.call_method1("undeploy", (module,)))
                .and_then(|v| v.extract())
                .unwrap_or_default();
            let _ = reply.send(r);
        }
        Job::List { reply } => {
            let _ = reply.send(list(py).unwrap_or_default());
        }
    }
    shared.completed.fetch_add(1, Ordering::AcqRel);
    false
}

impl JobState {
    /// Whether a Python thread is running the job now (not queued, not done).
    pub fn running(&self) -> bool {
        self.phase.load(Ordering::Acquire) == RUNNING
    }
}

/// Raises `DeadlineExceeded` inside the invocation if it is still running (called by the
/// caller that timed out). Takes the GIL, so it never races the job's own transitions.
pub fn interrupt(state: &JobState) -> bool {
    Python::attach(|py| {
        if state.phase.load(Ordering::Acquire) != RUNNING {
            return false;
        }
        let ident = state.thread.load(Ordering::Acquire);
        runtime(py)
            .and_then(|rt| rt.call_method1("interrupt", (ident,)))
            .and_then(|v| v.extract::<bool>())
            .unwrap_or(false)
    })
}

static RUNTIME: pyo3::sync::PyOnceLock<Py<PyAny>> = pyo3::sync::PyOnceLock::new();
static INVOKE: pyo3::sync::PyOnceLock<Py<PyAny>> = pyo3::sync::PyOnceLock::new();

/// `shoal._runtime.runtime`, looked up once.
fn runtime(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    RUNTIME
        .get_or_try_init(py, || {
            py.import("shoal._runtime")?
                .getattr("runtime")
                .map(Bound::unbind)
        })
        .map(|r| r.bind(py).clone())
}

/// The bound method `runtime.invoke`, looked up once (it is on the hot path).
fn invoke_method(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    INVOKE
        .get_or_try_init(py, || runtime(py)?.getattr("invoke").map(Bound::unbind))
        .map(|r| r.bind(py).clone())
}

/// Bodies from this size reach Python as a [`RawBody`], not as a `bytes` copy.
const LAZY_RAW_FROM: usize = 64 * 1024;

/// A large request body as the executor received it, handed to Python without a copy
/// (the payload is parsed from the same buffer). `tobytes()` makes the `bytes` once,
/// when a service reads `self.request.raw_request`; a service that reads only the
/// payload never copies the body.
#[pyclass(frozen, name = "RawBody", module = "shoal._native")]
struct RawBody(bytes::Bytes);

#[pymethods]
impl RawBody {
    /// The body as `bytes` (one copy).
    fn tobytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.0)
    }

    fn __len__(&self) -> usize {
        self.0.len()
    }
}

fn error_response(cid: &str, err: ShoalError) -> pb::InvokeResponse {
    err.to_invoke_response(cid)
}

fn invoke(py: Python<'_>, req: pb::InvokeRequest) -> pb::InvokeResponse {
    let cid = req.cid.clone();
    let result = (|| -> PyResult<Result<pb::InvokeResponse, ShoalError>> {
        let payload = if req.payload.is_empty() {
            py.None().into_bound(py)
        } else {
            match crate::convert::loads(py, &req.payload) {
                Ok(v) => v,
                Err(e) => {
                    return Ok(Err(ShoalError::new(
                        ErrorCode::BadRequest,
                        format!("payload is not valid JSON: {e}"),
                    )));
                }
            }
        };
        let channel = match &req.channel {
            Some(c) => {
                let d = PyDict::new(py);
                if !req.traceparent.is_empty() {
                    d.set_item("traceparent", &req.traceparent)?;
                }
                d.set_item("name", &c.name)?;
                d.set_item("type", &c.r#type)?;
                d.set_item("data_format", &c.data_format)?;
                d.set_item("security_name", &c.security_name)?;
                d.set_item("username", &c.username)?;
                if !c.auth.is_empty() {
                    d.set_item("auth", &c.auth)?;
                }
                if !c.meta.is_empty() {
                    d.set_item("meta", map_to_dict(py, &c.meta)?)?;
                }
                d.into_any()
            }
            None => py.None().into_bound(py),
        };
        let http = match &req.http {
            Some(h) => {
                let d = PyDict::new(py);
                d.set_item("method", &h.method)?;
                d.set_item("path", &h.path)?;
                d.set_item("params", map_to_dict(py, &h.params)?)?;
                d.set_item("query", map_to_dict(py, &h.query)?)?;
                d.set_item("headers", map_to_dict(py, &h.headers)?)?;
                d.set_item("form", map_to_dict(py, &h.form)?)?;
                d.into_any()
            }
            None => py.None().into_bound(py),
        };
        let raw = if req.raw_request.len() >= LAZY_RAW_FROM {
            Bound::new(py, RawBody(req.raw_request.clone()))?.into_any()
        } else {
            PyBytes::new(py, &req.raw_request).into_any()
        };
        let out =
            invoke_method(py)?.call1((&req.service, payload, raw, &req.cid, channel, http))?;
        let out = out.cast::<PyTuple>()?;
        let status: u32 = out.get_item(0)?.extract()?;
        let payload = out.get_item(1)?;
        let headers_obj = out.get_item(2)?;
        let no_headers = headers_obj.cast::<PyDict>().is_ok_and(|d| d.is_empty());
        let headers: std::collections::HashMap<String, String> = match if no_headers {
            Ok(Default::default())
        } else {
            headers_obj.extract()
        } {
            Ok(h) => h,
            Err(_) => {
                return Ok(Err(ShoalError::new(
                    ErrorCode::ServiceError,
                    "response headers must map str to str",
                )));
            }
        };
        let content_type: Option<String> = out.get_item(3)?.extract().ok().flatten();
        // The log lines the service wrote, when it wrote any (the admin's call details).
        let logs: Vec<String> = out
            .get_item(4)
            .ok()
            .filter(|l| !l.is_none())
            .and_then(|l| l.extract().ok())
            .unwrap_or_default();
        let (kind, bytes) = match encode_payload(&payload, req.payload.len()) {
            Ok(k) => k,
            Err(msg) => return Ok(Err(ShoalError::new(ErrorCode::ServiceError, msg))),
        };
        Ok(Ok(pb::InvokeResponse {
            status,
            payload: bytes.into(),
            kind: kind as i32,
            headers,
            content_type: content_type.unwrap_or_default(),
            error: None,
            cid: req.cid.clone(),
            diagnostics: (!logs.is_empty()).then(|| pb::CallDiagnostics {
                logs,
                ..Default::default()
            }),
        }))
    })();
    match result {
        Ok(Ok(resp)) => resp,
        Ok(Err(e)) => error_response(&cid, e),
        Err(err) => {
            let (e, traceback) = python_error(py, &req.service, &cid, err);
            let mut resp = error_response(&cid, e);
            let logs: Vec<String> = runtime(py)
                .and_then(|rt| rt.call_method0("take_call_log"))
                .and_then(|l| l.extract())
                .unwrap_or_default();
            if traceback.is_some() || !logs.is_empty() {
                resp.diagnostics = Some(pb::CallDiagnostics {
                    traceback: traceback.unwrap_or_default(),
                    logs,
                    ..Default::default()
                });
            }
            resp
        }
    }
}

/// Maps a Python exception to a client-safe error (the traceback goes to the log, and
/// back with it for the admin's call details; never to the caller).
fn python_error(
    py: Python<'_>,
    service: &str,
    cid: &str,
    err: PyErr,
) -> (ShoalError, Option<String>) {
    let value = err.value(py);
    let shoal_error = py
        .import("shoal.service")
        .and_then(|m| m.getattr("ServiceError"))
        .ok();
    if let Some(cls) = shoal_error
        && value.is_instance(&cls).unwrap_or(false)
    {
        let code: String = value
            .getattr("code")
            .and_then(|c| c.extract())
            .unwrap_or_else(|_| "service_error".into());
        let message: String = value
            .getattr("message")
            .and_then(|m| m.extract())
            .unwrap_or_default();
        let element: String = value
            .getattr("element")
            .and_then(|m| m.extract::<Option<String>>())
            .ok()
            .flatten()
            .unwrap_or_default();
        let code = ErrorCode::parse(&code);
        if code == ErrorCode::NotFound && message.starts_with("no such service") {
            return (ShoalError::new(code, message), None);
        }
        tracing::info!(service, cid, code = %code, message = %message, "service refused the request");
        return (ShoalError::new(code, message).with_element(element), None);
    }
    let kind = value
        .get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "Exception".into());
    let traceback = py
        .import("shoal._runtime")
        .and_then(|m| m.call_method1("format_exception", (value,)))
        .and_then(|t| t.extract::<String>())
        .unwrap_or_else(|_| value.to_string());
    tracing::error!(service, cid, exception = %kind, traceback = %traceback, "service raised");
    (
        ShoalError::new(
            ErrorCode::ServiceError,
            format!("service {service} failed ({kind}); see the executor log for cid {cid}"),
        ),
        Some(traceback),
    )
}

fn deploy(
    py: Python<'_>,
    module: &str,
    source: &str,
    origin: &str,
) -> Result<(Vec<String>, String), ShoalError> {
    let r = runtime(py).and_then(|rt| rt.call_method1("deploy", (module, source, origin)));
    match r {
        Ok(out) => out
            .extract::<(Vec<String>, String)>()
            .map_err(|e| ShoalError::new(ErrorCode::Internal, e.to_string())),
        Err(err) => {
            let msg = err.value(py).to_string();
            Err(ShoalError::new(ErrorCode::BadRequest, msg))
        }
    }
}

fn list(py: Python<'_>) -> PyResult<Vec<pb::ServiceInfo>> {
    type Row = (
        String,
        String,
        String,
        i64,
        u64,
        u64,
        u64,
        String,
        u64,
        String,
        String,
        u64,
    );
    let rows: Vec<Row> = runtime(py)?.call_method0("list_services")?.extract()?;
    Ok(rows
        .into_iter()
        .map(
            |(
                name,
                module,
                hash,
                deployed_at_ms,
                invocations,
                errors,
                mean_us,
                impl_name,
                p99_us,
                simple_io_json,
                doc_json,
                client_errors,
            )| {
                pb::ServiceInfo {
                    client_errors,
                    name,
                    module,
                    hash,
                    deployed_at_ms,
                    invocations,
                    errors,
                    mean_us,
                    impl_name,
                    simple_io_json,
                    p99_us,
                    doc_json,
                }
            },
        )
        .collect())
}

fn map_to_dict<'py>(
    py: Python<'py>,
    m: &std::collections::HashMap<String, String>,
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    for (k, v) in m {
        d.set_item(k, v)?;
    }
    Ok(d)
}

/// The answer's bytes and their kind; a JSON answer is written into a buffer sized for
/// `expected` bytes (the request payload's length: see [`crate::convert::dumps_sized`]).
fn encode_payload(
    payload: &Bound<'_, PyAny>,
    expected: usize,
) -> Result<(pb::PayloadKind, Vec<u8>), String> {
    if payload.is_none() {
        return Ok((pb::PayloadKind::Empty, Vec::new()));
    }
    if let Ok(s) = payload.cast::<PyString>() {
        return s
            .to_str()
            .map(|s| (pb::PayloadKind::Text, s.as_bytes().to_vec()))
            .map_err(|e| e.to_string());
    }
    if let Ok(b) = payload.cast::<PyBytes>() {
        return Ok((pb::PayloadKind::Bytes, b.as_bytes().to_vec()));
    }
    crate::convert::dumps_sized(payload, expected)
        .map(|b| (pb::PayloadKind::Json, b))
        .map_err(|e| format!("response payload: {e}"))
}
