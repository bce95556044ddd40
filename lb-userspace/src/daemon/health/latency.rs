//! How long probes take, as a Prometheus histogram per backend
//! (`lb_health_probe_duration_seconds`): a backend getting slow shows here
//! before it fails its checks.

use std::time::Duration;

/// Upper bounds of the buckets, in seconds (`+Inf` beyond).
pub const BOUNDS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Probe durations observed so far: counts per bucket (not cumulative),
/// the `+Inf` bucket last, and their sum.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Latency {
    buckets: [u64; BOUNDS.len() + 1],
    sum_micros: u64,
}

impl Latency {
    pub fn observe(&mut self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = BOUNDS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(BOUNDS.len());
        self.buckets[i] += 1;
        self.sum_micros = self.sum_micros.saturating_add(d.as_micros() as u64);
    }

    /// (upper bound, cumulative count) per bucket, `+Inf` last, as the
    /// exposition wants them.
    pub fn cumulative(&self) -> Vec<(String, u64)> {
        let mut total = 0;
        let mut out = Vec::with_capacity(self.buckets.len());
        for (i, n) in self.buckets.iter().enumerate() {
            total += n;
            let le = BOUNDS
                .get(i)
                .map_or_else(|| "+Inf".to_string(), |b| b.to_string());
            out.push((le, total));
        }
        out
    }

    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    pub fn sum_secs(&self) -> f64 {
        self.sum_micros as f64 / 1e6
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::Latency;

    #[test]
    fn buckets_are_cumulative_and_end_with_every_probe() {
        let mut l = Latency::default();
        for ms in [0, 3, 3, 40, 7000] {
            l.observe(Duration::from_millis(ms));
        }
        let c = l.cumulative();
        assert_eq!(c[0], ("0.001".into(), 1));
        assert_eq!(c[2], ("0.005".into(), 3));
        assert_eq!(c[5], ("0.05".into(), 4));
        assert_eq!(c.last().unwrap(), &("+Inf".into(), 5));
        assert_eq!(l.count(), 5);
        assert!((l.sum_secs() - 7.046).abs() < 1e-9);
    }
}
