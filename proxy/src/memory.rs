//! Hands memory the allocator holds free back to the system while the gateway is idle.
//!
//! mimalloc returns freed memory lazily: a free schedules a purge (after `purge_delay`,
//! 1 s) that a later allocation carries out. A process that goes quiet — right after
//! start-up, which frees about 20 MiB (migrations, config, key warm-up, the start-up
//! runtimes), or after a burst of load — allocates nothing more, so nothing carries the
//! purges out and its RSS stays at its peak. A thread of its own asks mimalloc once a
//! second to carry out the purges that are due; under load it finds them done already.
//!
//! That reaches memory already handed back to mimalloc's arenas, not pages a thread's own
//! heap still holds: a block freed by another thread (a request's buffers dropped by the
//! metering task, say) only goes back when the page's owner next collects, and a proxy
//! thread left idle after a burst never does. So the purging thread also has the proxy's
//! and the store's runtimes run a collection on their workers once a second. The first quiet second after
//! traffic forces the purges instead of waiting for their delay, so that a burst's memory
//! is back within about two seconds of its end.
//!
//! The same thread lets go of the code only start-up ran ([`crate::start_up_code`]), once,
//! at the first quiet second [`START_UP_SETTLE`] after start-up is over.

use std::{
    cell::Cell,
    sync::{
        Mutex, OnceLock, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use tokio::runtime::Handle;

/// How often due purges are carried out.
const INTERVAL: Duration = Duration::from_secs(1);

/// The runtimes whose workers collect their own heaps each interval: one handle per
/// worker thread seen (a runtime with several workers gets a task per worker).
static WORKERS: Mutex<Vec<Handle>> = Mutex::new(Vec::new());

/// How long after start-up is over its code is let go of (at the first quiet second from
/// then): the services' threads have started and run their first code by then.
const START_UP_SETTLE: Duration = Duration::from_secs(2);

/// When start-up was over (the listeners bound, the services about to run).
static START_UP_OVER: OnceLock<Instant> = OnceLock::new();

/// Marks the end of start-up: the code it alone ran can go at the next quiet second after
/// [`START_UP_SETTLE`].
pub fn start_up_over() {
    let _ = START_UP_OVER.set(Instant::now());
}

/// Requests begun so far: a second in which it does not move is a quiet one.
static REQUESTS: AtomicU64 = AtomicU64::new(0);

/// Counts a request (one relaxed add).
pub fn note_request() {
    REQUESTS.fetch_add(1, Ordering::Relaxed);
}

thread_local! {
    static NOTED: Cell<bool> = const { Cell::new(false) };
}

/// Notes the current runtime worker as one whose heap is collected each interval (once per
/// thread; later calls cost a thread-local read).
pub fn note_worker() {
    if NOTED.get() {
        return;
    }
    NOTED.set(true);
    if let Ok(handle) = Handle::try_current() {
        WORKERS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(handle);
    }
}

/// Notes a runtime of `workers` threads whose heaps are collected each interval.
pub fn note_runtime(handle: &Handle, workers: usize) {
    WORKERS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .extend(std::iter::repeat_n(handle.clone(), workers));
}

/// Starts the purging thread (once per process).
pub fn start_purging() {
    let spawned = std::thread::Builder::new()
        .name("tollgate-purge".into())
        .spawn(|| {
            // mimalloc skips a thread whose heap was never used: give this one a block.
            let _heap_in_use = std::hint::black_box(Box::new(0u64));
            let (mut seen, mut forced, mut code_released) = (0, false, false);
            loop {
                std::thread::sleep(INTERVAL);
                let requests = REQUESTS.load(Ordering::Relaxed);
                let quiet = requests == seen;
                // Forced once per quiet spell: under load, memory freed is soon reused.
                let force = quiet && !forced;
                forced = quiet;
                seen = requests;
                if quiet
                    && !code_released
                    && START_UP_OVER
                        .get()
                        .is_some_and(|over| over.elapsed() >= START_UP_SETTLE)
                {
                    code_released = true;
                    release_start_up_code();
                }
                let workers = WORKERS
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone();
                for handle in workers {
                    // A stopped runtime drops the task; nothing to do then.
                    drop(handle.spawn(async move { collect(force) }));
                }
                collect(force);
            }
        });
    if let Err(e) = spawned {
        tracing::warn!("could not start the memory purging thread: {e}");
    }
}

fn release_start_up_code() {
    match crate::start_up_code::release() {
        Ok(released) => tracing::info!(
            "let go of the code only start-up ran: {:.1} MiB of the binary's {} read-only mappings were resident; what runs maps back in on first use",
            released.resident_kib as f64 / 1024.0,
            released.mappings
        ),
        Err(e) => tracing::debug!("could not read this process's mappings: {e}"),
    }
}

#[allow(unsafe_code)]
fn collect(force: bool) {
    // SAFETY: `mi_collect` takes no pointers and is safe to call from any thread at any
    // time. `false` frees this thread's empty pages and carries out purges already due;
    // `true` also carries out those not yet due.
    unsafe { libmimalloc_sys::mi_collect(force) }
}
