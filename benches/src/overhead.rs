//! Tollgate's own account of its overhead during a run: the `tollgate_overhead_seconds`
//! histogram (the same figure as each response's `x-tollgate-overhead-ms`) read from
//! `/metrics` before and after, its p50 interpolated within the bucket — to set beside the
//! latency the harness measures as added from outside.

use std::net::SocketAddr;

use crate::http;

/// Cumulative bucket counts (upper bound in seconds, count) summed over every endpoint.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Buckets(Vec<(f64, f64)>);

impl Buckets {
    pub fn read(metrics: SocketAddr) -> anyhow::Result<Buckets> {
        let resp = http::get(metrics, "/metrics")?;
        Ok(Buckets::parse(&resp.body))
    }

    fn parse(text: &str) -> Buckets {
        let mut sums: Vec<(f64, f64)> = Vec::new();
        for line in text.lines() {
            let Some(rest) = line.strip_prefix("tollgate_overhead_seconds_bucket{") else {
                continue;
            };
            let Some(le) = rest.split("le=\"").nth(1).and_then(|s| s.split('"').next()) else {
                continue;
            };
            let bound = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().unwrap_or(f64::NAN)
            };
            let count: f64 = line
                .rsplit(' ')
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0.0);
            match sums.iter_mut().find(|(b, _)| *b == bound) {
                Some((_, c)) => *c += count,
                None => sums.push((bound, count)),
            }
        }
        sums.sort_by(|a, b| a.0.total_cmp(&b.0));
        Buckets(sums)
    }

    /// The median of what was observed between `before` and `self`, in ms.
    pub fn p50_ms_since(&self, before: &Buckets) -> Option<f64> {
        let delta: Vec<(f64, f64)> = self
            .0
            .iter()
            .map(|(bound, count)| {
                let earlier = before
                    .0
                    .iter()
                    .find(|(b, _)| b == bound)
                    .map_or(0.0, |(_, c)| *c);
                (*bound, count - earlier)
            })
            .collect();
        let total = delta.last()?.1;
        if total <= 0.0 {
            return None;
        }
        let half = total / 2.0;
        let mut lower = (0.0, 0.0);
        for (bound, count) in delta {
            if count >= half {
                if !bound.is_finite() {
                    return Some(lower.0 * 1e3);
                }
                let share = (half - lower.1) / (count - lower.1).max(f64::MIN_POSITIVE);
                return Some((lower.0 + share * (bound - lower.0)) * 1e3);
            }
            lower = (bound, count);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_is_interpolated_within_its_bucket() {
        let before = Buckets::parse(
            "tollgate_overhead_seconds_bucket{endpoint=\"chat_completions\",le=\"0.0001\"} 0\n\
             tollgate_overhead_seconds_bucket{endpoint=\"chat_completions\",le=\"0.0002\"} 0\n\
             tollgate_overhead_seconds_bucket{endpoint=\"chat_completions\",le=\"+Inf\"} 0\n",
        );
        let after = Buckets::parse(
            "tollgate_overhead_seconds_bucket{endpoint=\"chat_completions\",le=\"0.0001\"} 20\n\
             tollgate_overhead_seconds_bucket{endpoint=\"chat_completions\",le=\"0.0002\"} 80\n\
             tollgate_overhead_seconds_bucket{endpoint=\"chat_completions\",le=\"+Inf\"} 100\n\
             tollgate_overhead_seconds_bucket{endpoint=\"other\",le=\"+Inf\"} 0\n",
        );
        // 50 of 100: 30 of the 60 in (0.1, 0.2] ms.
        let p50 = after.p50_ms_since(&before).unwrap();
        assert!((p50 - 0.15).abs() < 1e-9, "{p50}");
        assert_eq!(before.p50_ms_since(&before), None);
    }
}
