//! Response ids (`chatcmpl-…`, `resp_…`, `req_…`) and timestamps: unique per process run,
//! from one atomic counter scrambled so ids do not look sequential.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::text::mix;

pub struct Ids {
    seed: u64,
    counter: AtomicU64,
}

impl Ids {
    pub fn new() -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Ids {
            seed: mix(nanos ^ u64::from(std::process::id()).rotate_left(32)),
            counter: AtomicU64::new(0),
        }
    }

    pub fn next(&self) -> u64 {
        mix(self.seed ^ self.counter.fetch_add(1, Relaxed))
    }

    /// `prefix` followed by 24 hex digits.
    pub fn make(&self, prefix: &str) -> String {
        let a = self.next();
        let mut s = String::with_capacity(prefix.len() + 24);
        s.push_str(prefix);
        let _ = write!(s, "{:016x}{:08x}", a, (mix(a) >> 32) as u32);
        s
    }
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
