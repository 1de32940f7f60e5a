//! Hands memory the allocator holds free back to the system while the gateway is idle.
//!
//! mimalloc returns freed memory lazily: a free schedules a purge (after `purge_delay`,
//! 1 s) that a later allocation carries out. A process that goes quiet — right after
//! start-up, which frees about 20 MiB (migrations, config, key warm-up, the start-up
//! runtimes), or after a burst of load — allocates nothing more, so nothing carries the
//! purges out and its RSS stays at its peak. A thread of its own asks mimalloc once a
//! second to carry out the purges that are due; under load it finds them done already.

use std::time::Duration;

/// How often due purges are carried out.
const INTERVAL: Duration = Duration::from_secs(1);

/// Starts the purging thread (once per process).
pub fn start_purging() {
    let spawned = std::thread::Builder::new()
        .name("tollgate-purge".into())
        .spawn(|| {
            // mimalloc skips a thread whose heap was never used: give this one a block.
            let _heap_in_use = std::hint::black_box(Box::new(0u64));
            loop {
                std::thread::sleep(INTERVAL);
                collect();
            }
        });
    if let Err(e) = spawned {
        tracing::warn!("could not start the memory purging thread: {e}");
    }
}

#[allow(unsafe_code)]
fn collect() {
    // SAFETY: `mi_collect` takes no pointers and is safe to call from any thread at any
    // time; `false` only carries out purges already due, it forces none.
    unsafe { libmimalloc_sys::mi_collect(false) }
}
