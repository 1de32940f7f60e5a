//! Each deployment's health on this replica: failures (connect errors, first-byte
//! timeouts, retried statuses) counted in a sliding window; enough of them, or an upstream
//! `retry-after`, cool the deployment down. When the cooldown ends one probe request is let
//! through (half-open): success closes the circuit, failure opens it again for twice as
//! long (up to `MAX_BACKOFF`).

use std::{
    collections::VecDeque,
    sync::{
        Mutex,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use tollgate_core::config::CooldownSettings;

/// The longest a repeatedly failing deployment stays cooled down between probes.
const MAX_BACKOFF: Duration = Duration::from_secs(600);
/// A probe whose request never reported back (the client left) frees the slot after this.
const PROBE_TIMEOUT: Duration = Duration::from_secs(30);

/// A deployment's state as the admin API and metrics show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthState {
    Healthy,
    CoolingDown,
    Probing,
}

impl HealthState {
    pub fn as_str(self) -> &'static str {
        match self {
            HealthState::Healthy => "healthy",
            HealthState::CoolingDown => "cooling_down",
            HealthState::Probing => "probing",
        }
    }
}

#[derive(Debug)]
enum Circuit {
    Closed,
    /// No traffic until `until`; the next failure after a probe waits `backoff`. `asked`:
    /// the upstream asked for the pause (`retry-after`), which a health check does not end.
    Open {
        until: Instant,
        backoff: Duration,
        asked: bool,
    },
    /// One probe is out (since `since`); `backoff` is what the next opening lasts.
    HalfOpen {
        since: Instant,
        backoff: Duration,
    },
}

#[derive(Debug)]
struct Inner {
    failures: VecDeque<Instant>,
    circuit: Circuit,
    last_error: Option<String>,
}

/// Whether a deployment may take an attempt now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Open,
    /// The attempt is the half-open probe: its result decides.
    Probe,
    /// Cooling down for this much longer.
    Closed(Duration),
}

#[derive(Debug)]
pub struct DeploymentHealth {
    settings: CooldownSettings,
    inner: Mutex<Inner>,
    /// Attempts on this deployment in flight on this replica.
    in_flight: AtomicUsize,
    /// Moving average of the time to first byte, in µs; 0 until measured.
    ttfb_micros: AtomicU64,
    /// Samples in the average so far (up to `EWMA_WARMUP`).
    ttfb_samples: AtomicU64,
}

/// Weight of the newest sample in the moving average of time to first byte, once warmed up.
const EWMA_NEW: f64 = 0.2;
/// Until this many samples, the average is a plain mean: a first request that paid for a
/// new connection must not make a fast deployment look slow for long.
const EWMA_WARMUP: u64 = 8;

impl DeploymentHealth {
    pub fn new(settings: CooldownSettings) -> Self {
        DeploymentHealth {
            settings,
            inner: Mutex::new(Inner {
                failures: VecDeque::new(),
                circuit: Circuit::Closed,
                last_error: None,
            }),
            in_flight: AtomicUsize::new(0),
            ttfb_micros: AtomicU64::new(0),
            ttfb_samples: AtomicU64::new(0),
        }
    }

    pub fn settings(&self) -> CooldownSettings {
        self.settings
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// An attempt starts on this deployment.
    pub fn enter(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    /// An attempt on this deployment ended.
    pub fn leave(&self) {
        // Never below zero, whatever the order of events.
        let _ = self
            .in_flight
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }

    pub fn ttfb_micros(&self) -> u64 {
        self.ttfb_micros.load(Ordering::Relaxed)
    }

    /// Folds one time to first byte into the moving average.
    pub fn observe_ttfb(&self, ttfb: Duration) {
        let sample = u64::try_from(ttfb.as_micros()).unwrap_or(u64::MAX).max(1);
        // A lost race drops one sample of an average: not worth a lock.
        let n = self
            .ttfb_samples
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1)
            .min(EWMA_WARMUP);
        let weight = (1.0 / n as f64).max(EWMA_NEW);
        let old = self.ttfb_micros.load(Ordering::Relaxed);
        let new = (old as f64 * (1.0 - weight) + sample as f64 * weight) as u64;
        self.ttfb_micros.store(new.max(1), Ordering::Relaxed);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the deployment may take traffic now, without claiming the probe.
    pub fn peek(&self, now: Instant) -> Admission {
        match self.lock().circuit {
            Circuit::Closed => Admission::Open,
            Circuit::Open { until, .. } if until > now => Admission::Closed(until - now),
            Circuit::Open { .. } => Admission::Probe,
            Circuit::HalfOpen { since, .. } if now.duration_since(since) < PROBE_TIMEOUT => {
                Admission::Closed(PROBE_TIMEOUT - now.duration_since(since))
            }
            Circuit::HalfOpen { .. } => Admission::Probe,
        }
    }

    /// Claims the deployment for an attempt: `Probe` takes the one half-open slot.
    pub fn admit(&self, now: Instant) -> Admission {
        let mut inner = self.lock();
        let (admission, backoff) = match inner.circuit {
            Circuit::Closed => return Admission::Open,
            Circuit::Open { until, .. } if until > now => return Admission::Closed(until - now),
            Circuit::Open { backoff, .. } => (Admission::Probe, backoff),
            Circuit::HalfOpen { since, .. } if now.duration_since(since) < PROBE_TIMEOUT => {
                return Admission::Closed(PROBE_TIMEOUT - now.duration_since(since));
            }
            Circuit::HalfOpen { backoff, .. } => (Admission::Probe, backoff),
        };
        inner.circuit = Circuit::HalfOpen {
            since: now,
            backoff,
        };
        admission
    }

    /// An attempt got an answer that is not a failure: a probe closes the circuit. A late
    /// answer to a request sent before the circuit opened does not reopen it.
    pub fn succeeded(&self) {
        let mut inner = self.lock();
        inner.failures.clear();
        if !matches!(inner.circuit, Circuit::Open { .. }) {
            inner.circuit = Circuit::Closed;
        }
    }

    /// An attempt failed. `retry_after`: the upstream asked for a pause, which cools the
    /// deployment down for that long at once.
    pub fn failed(&self, now: Instant, error: String, retry_after: Option<Duration>) {
        let settings = self.settings;
        let mut inner = self.lock();
        inner.last_error = Some(error);
        let window = settings.window;
        while inner
            .failures
            .front()
            .is_some_and(|t| now.duration_since(*t) > window)
        {
            inner.failures.pop_front();
        }
        inner.failures.push_back(now);
        // Bounded by the threshold: older entries cannot matter.
        while inner.failures.len() > settings.failures.max(1) as usize {
            inner.failures.pop_front();
        }
        let open_for = match inner.circuit {
            // A failed probe: open again, for longer each time.
            Circuit::HalfOpen { backoff, .. } => Some(backoff),
            _ if retry_after.is_some() => retry_after,
            _ if settings.failures > 0 && inner.failures.len() >= settings.failures as usize => {
                Some(settings.duration)
            }
            _ => None,
        };
        if let Some(open_for) = open_for {
            let open_for = retry_after
                .map_or(open_for, |r| r.max(open_for))
                .min(MAX_BACKOFF);
            let shortest = settings.duration.min(MAX_BACKOFF);
            let mut until = now + open_for;
            let mut backoff = (open_for * 2).clamp(shortest, MAX_BACKOFF);
            // Already open (a late failure of a request that started before): only extend.
            let mut asked = retry_after.is_some();
            if let Circuit::Open {
                until: was,
                backoff: had,
                asked: asked_before,
            } = inner.circuit
            {
                until = until.max(was);
                backoff = backoff.max(had);
                asked |= asked_before;
            }
            inner.circuit = Circuit::Open {
                until,
                backoff,
                asked,
            };
        }
    }

    /// The half-open probe claimed with `admit` will not report (its request was refused
    /// before it was sent, or ended without an answer): the next request may probe.
    pub fn release_probe(&self, now: Instant) {
        let mut inner = self.lock();
        if let Circuit::HalfOpen { backoff, .. } = inner.circuit {
            inner.circuit = Circuit::Open {
                until: now,
                backoff,
                asked: false,
            };
        }
    }

    /// An active health check passed: the deployment is back (closed) without a client's
    /// request as the probe; except a pause the upstream asked for, which runs its course.
    pub fn check_passed(&self) {
        let mut inner = self.lock();
        if !matches!(inner.circuit, Circuit::Open { asked: true, .. }) {
            inner.failures.clear();
            inner.circuit = Circuit::Closed;
        }
    }

    pub fn state(&self, now: Instant) -> HealthState {
        match self.peek(now) {
            Admission::Open => HealthState::Healthy,
            Admission::Probe => HealthState::CoolingDown,
            Admission::Closed(_) => match self.lock().circuit {
                Circuit::HalfOpen { .. } => HealthState::Probing,
                _ => HealthState::CoolingDown,
            },
        }
    }

    pub fn last_error(&self) -> Option<String> {
        self.lock().last_error.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health(failures: u32) -> DeploymentHealth {
        DeploymentHealth::new(CooldownSettings {
            failures,
            window: Duration::from_secs(30),
            duration: Duration::from_secs(10),
        })
    }

    #[test]
    fn enough_failures_in_the_window_open_the_circuit_and_a_probe_closes_it() {
        let h = health(3);
        let t = Instant::now();
        h.failed(t, "500".into(), None);
        h.failed(t + Duration::from_secs(1), "500".into(), None);
        assert_eq!(h.admit(t + Duration::from_secs(2)), Admission::Open);
        h.failed(t + Duration::from_secs(2), "500".into(), None);
        assert_eq!(
            h.admit(t + Duration::from_secs(3)),
            Admission::Closed(Duration::from_secs(9))
        );
        assert_eq!(
            h.state(t + Duration::from_secs(3)),
            HealthState::CoolingDown
        );
        // After the cooldown: one probe, and nobody else while it is out.
        let later = t + Duration::from_secs(13);
        assert_eq!(h.admit(later), Admission::Probe);
        assert!(matches!(h.admit(later), Admission::Closed(_)));
        assert_eq!(h.state(later), HealthState::Probing);
        h.succeeded();
        assert_eq!(h.admit(later), Admission::Open);
        assert_eq!(h.state(later), HealthState::Healthy);
    }

    #[test]
    fn failures_outside_the_window_do_not_count() {
        let h = health(2);
        let t = Instant::now();
        h.failed(t, "timeout".into(), None);
        h.failed(t + Duration::from_secs(31), "timeout".into(), None);
        assert_eq!(h.admit(t + Duration::from_secs(31)), Admission::Open);
        assert_eq!(h.last_error().as_deref(), Some("timeout"));
    }

    #[test]
    fn a_failed_probe_reopens_for_longer() {
        let h = health(1);
        let t = Instant::now();
        h.failed(t, "503".into(), None);
        let probe = t + Duration::from_secs(10);
        assert_eq!(h.admit(probe), Admission::Probe);
        h.failed(probe, "503".into(), None);
        assert_eq!(
            h.admit(probe + Duration::from_secs(1)),
            Admission::Closed(Duration::from_secs(19))
        );
    }

    #[test]
    fn retry_after_cools_down_at_once_for_that_long() {
        let h = health(5);
        let t = Instant::now();
        h.failed(t, "429".into(), Some(Duration::from_secs(2)));
        assert!(matches!(
            h.admit(t + Duration::from_secs(1)),
            Admission::Closed(_)
        ));
        assert_eq!(h.admit(t + Duration::from_secs(2)), Admission::Probe);
    }

    #[test]
    fn in_flight_and_latency_are_tracked() {
        let h = health(5);
        h.enter();
        h.enter();
        h.leave();
        assert_eq!(h.in_flight(), 1);
        h.leave();
        h.leave();
        assert_eq!(h.in_flight(), 0, "never below zero");
        assert_eq!(h.ttfb_micros(), 0);
        h.observe_ttfb(Duration::from_millis(10));
        assert_eq!(h.ttfb_micros(), 10_000);
        // A plain mean while warming up, then the moving average.
        h.observe_ttfb(Duration::from_millis(20));
        assert_eq!(h.ttfb_micros(), 15_000);
        for _ in 0..20 {
            h.observe_ttfb(Duration::from_millis(10));
        }
        h.observe_ttfb(Duration::from_millis(20));
        assert!(
            (11_900..=12_100).contains(&h.ttfb_micros()),
            "{}",
            h.ttfb_micros()
        );
    }

    #[test]
    fn a_released_probe_lets_the_next_request_probe_and_late_answers_change_nothing() {
        let h = health(1);
        let t = Instant::now();
        h.failed(t, "503".into(), None);
        // A success that started before the opening does not close it.
        h.succeeded();
        assert!(matches!(
            h.admit(t + Duration::from_secs(1)),
            Admission::Closed(_)
        ));
        let probe = t + Duration::from_secs(10);
        assert_eq!(h.admit(probe), Admission::Probe);
        h.release_probe(probe);
        assert_eq!(h.admit(probe), Admission::Probe);
        // A passed health check closes it, but not a pause the upstream asked for.
        h.failed(probe, "503".into(), None);
        assert!(matches!(h.admit(probe), Admission::Closed(_)));
        h.check_passed();
        assert_eq!(h.admit(probe), Admission::Open);
        h.failed(probe, "429".into(), Some(Duration::from_secs(5)));
        h.check_passed();
        assert!(matches!(h.admit(probe), Admission::Closed(_)));
    }

    #[test]
    fn a_long_configured_cooldown_does_not_panic_and_late_failures_only_extend() {
        let h = DeploymentHealth::new(CooldownSettings {
            failures: 1,
            window: Duration::from_secs(30),
            duration: Duration::from_secs(3600),
        });
        let t = Instant::now();
        h.failed(t, "500".into(), None);
        assert!(matches!(
            h.admit(t + Duration::from_secs(599)),
            Admission::Closed(_)
        ));
        let retry = DeploymentHealth::new(CooldownSettings {
            failures: 5,
            window: Duration::from_secs(30),
            duration: Duration::from_secs(1),
        });
        retry.failed(t, "429".into(), Some(Duration::from_secs(60)));
        // A later failure that would open it for 1 s does not shorten the 60 s.
        for _ in 0..5 {
            retry.failed(t, "500".into(), None);
        }
        assert!(matches!(
            retry.admit(t + Duration::from_secs(30)),
            Admission::Closed(_)
        ));
    }

    #[test]
    fn a_lost_probe_frees_its_slot() {
        let h = health(1);
        let t = Instant::now();
        h.failed(t, "reset".into(), None);
        let probe = t + Duration::from_secs(10);
        assert_eq!(h.admit(probe), Admission::Probe);
        assert_eq!(h.admit(probe + PROBE_TIMEOUT), Admission::Probe);
    }
}
