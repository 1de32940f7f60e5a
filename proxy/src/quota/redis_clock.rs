//! How far Redis's clock is ahead of the gateway's, learnt from the reservations' replies,
//! so that a reservation can carry a deadline Redis checks on its own clock.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

use super::now_ms;

const NONE: i64 = i64::MAX;
/// Samples are kept for one to two of these, so the estimate follows a clock that moved.
const EPOCH_MS: u64 = 10_000;

pub struct ClockOffset {
    current: AtomicI64,
    previous: AtomicI64,
    epoch_started: AtomicU64,
}

impl Default for ClockOffset {
    fn default() -> Self {
        ClockOffset {
            current: AtomicI64::new(NONE),
            previous: AtomicI64::new(NONE),
            epoch_started: AtomicU64::new(0),
        }
    }
}

impl ClockOffset {
    /// One sample: Redis's clock when it ran a call, minus ours when the call was queued.
    /// The time on the way only adds to it, so every sample is at least the true offset
    /// and the smallest is the closest.
    pub fn observe(&self, sample_ms: f64) {
        if !sample_ms.is_finite() {
            return;
        }
        let now = now_ms();
        let started = self.epoch_started.load(Relaxed);
        if now.saturating_sub(started) >= EPOCH_MS
            && self
                .epoch_started
                .compare_exchange(started, now, Relaxed, Relaxed)
                .is_ok()
        {
            self.previous
                .store(self.current.swap(NONE, Relaxed), Relaxed);
        }
        self.current.fetch_min(sample_ms.ceil() as i64, Relaxed);
    }

    /// The offset in ms (plus a millisecond for both clocks' rounding), once known. Never
    /// less than the true offset, so a deadline moved by it is never early.
    pub fn ahead_ms(&self) -> Option<f64> {
        let best = self.current.load(Relaxed).min(self.previous.load(Relaxed));
        (best != NONE).then_some(best as f64 + 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_smallest_sample_is_the_estimate() {
        let clock = ClockOffset::default();
        assert_eq!(clock.ahead_ms(), None);
        clock.observe(12.2);
        clock.observe(5.0);
        clock.observe(f64::NAN);
        clock.observe(9.0);
        assert_eq!(clock.ahead_ms(), Some(6.0));
        clock.observe(-40.0);
        assert_eq!(clock.ahead_ms(), Some(-39.0));
    }
}
