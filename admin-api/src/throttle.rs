//! Login attempts, limited per client address and per account: each failed attempt counts
//! for a window that starts with the first one, and beyond the limit logins from that
//! address (to that account) are answered 429 with `retry-after` until the window ends,
//! without checking the password. Counted in Redis when the gateway has one (so every
//! replica sees the same counts), in process otherwise, and in process while Redis fails.
//! An attempt counts before its password is checked (so a burst of them is counted in
//! full) and is taken back if it succeeds.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use async_trait::async_trait;

use crate::error::{ApiError, ApiResult};

/// The window the limit applies to.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Most counters kept in process; beyond, expired ones are dropped, then all.
const MAX_LOCAL: usize = 100_000;

/// Where attempts are counted across replicas.
#[async_trait]
pub trait AttemptStore: Send + Sync {
    /// Counts one attempt under `key`, in a window of `window` that starts with the first;
    /// answers the count so far and the time left in the window.
    async fn count(&self, key: &str, window: Duration) -> Result<(u64, Duration), String>;
    /// Takes one attempt back.
    async fn uncount(&self, key: &str) -> Result<(), String>;
}

#[derive(Default)]
struct LocalAttempts {
    counts: Mutex<HashMap<String, (u64, Instant)>>,
}

impl LocalAttempts {
    fn count(&self, key: &str, window: Duration) -> (u64, Duration) {
        let now = Instant::now();
        let Ok(mut counts) = self.counts.lock() else {
            return (0, window);
        };
        if counts.len() >= MAX_LOCAL {
            counts.retain(|_, (_, ends)| *ends > now);
            if counts.len() >= MAX_LOCAL {
                tracing::warn!("too many login throttle counters; starting afresh");
                counts.clear();
            }
        }
        let entry = counts.entry(key.to_string()).or_insert((0, now + window));
        if entry.1 <= now {
            *entry = (0, now + window);
        }
        entry.0 += 1;
        (entry.0, entry.1 - now)
    }

    fn uncount(&self, key: &str) {
        if let Ok(mut counts) = self.counts.lock()
            && let Some((n, _)) = counts.get_mut(key)
        {
            *n = n.saturating_sub(1);
        }
    }
}

pub struct LoginThrottle {
    limit: u64,
    shared: Option<Arc<dyn AttemptStore>>,
    local: LocalAttempts,
}

/// An attempt as counted, to take back if it succeeds.
pub struct Attempt {
    /// Each key, and whether the shared store counted it.
    keys: Vec<(String, bool)>,
}

impl LoginThrottle {
    pub fn new(limit: u32, shared: Option<Arc<dyn AttemptStore>>) -> Self {
        LoginThrottle {
            limit: u64::from(limit.max(1)),
            shared,
            local: LocalAttempts::default(),
        }
    }

    /// Counts a login attempt from `addr` (unknown in tests) for `email`; refused when
    /// either has used up its attempts.
    pub async fn attempt(&self, addr: Option<IpAddr>, email: &str) -> ApiResult<Attempt> {
        let account: String = email.trim().to_lowercase().chars().take(320).collect();
        let keys = [
            format!("login:addr:{}", addr.map_or("unknown".into(), network)),
            format!("login:account:{account}"),
        ];
        let mut counted = Vec::with_capacity(keys.len());
        let mut wait: Option<Duration> = None;
        for key in keys {
            let (n, left, shared) = self.count(&key).await;
            if n > self.limit {
                wait = Some(wait.map_or(left, |w| w.max(left)));
            }
            counted.push((key, shared));
        }
        match wait {
            Some(retry_after) => Err(ApiError::TooManyRequests {
                message: format!(
                    "too many login attempts; try again in {} s",
                    retry_after.as_secs().max(1)
                ),
                retry_after,
            }),
            None => Ok(Attempt { keys: counted }),
        }
    }

    /// A login that succeeded does not count against later ones.
    pub async fn succeeded(&self, attempt: Attempt) {
        for (key, shared) in attempt.keys {
            match (&self.shared, shared) {
                (Some(store), true) => {
                    if let Err(e) = store.uncount(&key).await {
                        tracing::warn!("login throttle: {e}");
                    }
                }
                _ => self.local.uncount(&key),
            }
        }
    }

    async fn count(&self, key: &str) -> (u64, Duration, bool) {
        if let Some(store) = &self.shared {
            match store.count(key, WINDOW).await {
                Ok((n, left)) => return (n, left, true),
                Err(e) => tracing::warn!("login throttle counting in process: {e}"),
            }
        }
        let (n, left) = self.local.count(key, WINDOW);
        (n, left, false)
    }
}

/// The address an attacker cannot cheaply vary: an IPv4 address, an IPv6 /64.
fn network(addr: IpAddr) -> String {
    match addr {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn failures_beyond_the_limit_are_refused_and_successes_do_not_count() {
        let throttle = LoginThrottle::new(3, None);
        let addr = Some("10.0.0.1".parse().unwrap());
        for _ in 0..3 {
            throttle.attempt(addr, "Ada@example.com").await.unwrap();
        }
        let refused = throttle.attempt(addr, "ada@example.com ").await;
        let Err(ApiError::TooManyRequests { retry_after, .. }) = refused else {
            panic!("not refused");
        };
        assert!(retry_after <= WINDOW && retry_after > WINDOW / 2);
        // Another account from another address is not affected; the same account from
        // another address is.
        let other = Some("10.0.0.2".parse().unwrap());
        throttle.attempt(other, "bob@example.com").await.unwrap();
        assert!(throttle.attempt(other, "ada@example.com").await.is_err());
        // Logins that succeed are taken back.
        let fresh = LoginThrottle::new(2, None);
        for _ in 0..10 {
            let attempt = fresh.attempt(addr, "kim@example.com").await.unwrap();
            fresh.succeeded(attempt).await;
        }
    }

    #[test]
    fn ipv6_addresses_count_per_64() {
        let a = network("2001:db8:1:2:aaaa::1".parse().unwrap());
        let b = network("2001:db8:1:2:bbbb::9".parse().unwrap());
        assert_eq!(a, b);
        assert_eq!(network("::ffff:10.1.2.3".parse().unwrap()), "10.1.2.3");
    }
}
