//! Per-endpoint load: requests in flight and a peak-sensitive latency EWMA,
//! kept in atomics so the response path never takes a lock.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// Load figures of one endpoint, shared between the balancer and the response
/// futures of the requests in flight.
#[derive(Debug)]
pub(crate) struct EndpointStats {
    active: AtomicU32,
    /// The latency estimate in nanoseconds, as `f64` bits.
    rtt_ns: AtomicU64,
    /// When the estimate was last updated, in nanoseconds since `epoch`.
    stamp_ns: AtomicU64,
}

impl EndpointStats {
    pub(crate) fn new(default_rtt: Duration) -> Self {
        EndpointStats {
            active: AtomicU32::new(0),
            rtt_ns: AtomicU64::new((default_rtt.as_nanos() as f64).to_bits()),
            stamp_ns: AtomicU64::new(0),
        }
    }

    #[inline]
    pub(crate) fn active(&self) -> u32 {
        self.active.load(Ordering::Relaxed)
    }

    #[inline]
    pub(crate) fn start(&self) {
        self.active.fetch_add(1, Ordering::Relaxed);
    }

    #[inline]
    pub(crate) fn finish(&self) {
        self.active.fetch_sub(1, Ordering::Relaxed);
    }

    /// Records one round trip: a sample above the estimate replaces it (the
    /// "peak"), one below decays it toward the sample with weight
    /// `exp(-elapsed / decay)`, as tower's and Linkerd's peak EWMA do.
    pub(crate) fn observe_rtt(&self, rtt: Duration, now_ns: u64, decay: Duration) {
        let sample = rtt.as_nanos() as f64;
        let current = self.decayed_rtt(now_ns, decay, None);
        let next = if sample > current {
            sample
        } else {
            let elapsed = now_ns.saturating_sub(self.stamp_ns.load(Ordering::Relaxed)) as f64;
            let w = (-elapsed / decay.as_nanos().max(1) as f64).exp();
            current * w + sample * (1.0 - w)
        };
        // Concurrent updates may lose one sample; the estimate stays sane.
        self.rtt_ns.store(next.to_bits(), Ordering::Relaxed);
        self.stamp_ns.store(now_ns, Ordering::Relaxed);
    }

    /// The estimate now, decayed toward `floor` (the default RTT) for an
    /// endpoint that has been idle, so a past spike does not shun it forever.
    pub(crate) fn decayed_rtt(&self, now_ns: u64, decay: Duration, floor: Option<f64>) -> f64 {
        let rtt = f64::from_bits(self.rtt_ns.load(Ordering::Relaxed));
        match floor {
            Some(floor) if rtt > floor => {
                let elapsed = now_ns.saturating_sub(self.stamp_ns.load(Ordering::Relaxed)) as f64;
                let w = (-elapsed / decay.as_nanos().max(1) as f64).exp();
                floor + (rtt - floor) * w
            }
            _ => rtt,
        }
    }
}

/// A clock of nanoseconds since the balancer was made, on tokio's clock (so
/// tests can pause it).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Epoch(Instant);

impl Epoch {
    pub(crate) fn new() -> Self {
        Epoch(Instant::now())
    }

    #[inline]
    pub(crate) fn now_ns(&self) -> u64 {
        u64::try_from(Instant::now().saturating_duration_since(self.0).as_nanos())
            .unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DECAY: Duration = Duration::from_secs(10);

    #[test]
    fn peaks_replace_and_lows_decay() {
        let s = EndpointStats::new(Duration::from_millis(1));
        s.observe_rtt(Duration::from_millis(50), 1_000, DECAY);
        assert_eq!(
            s.decayed_rtt(1_000, DECAY, None),
            50e6,
            "a peak replaces the estimate"
        );
        // A low sample right away barely moves it; much later it dominates.
        s.observe_rtt(Duration::from_millis(1), 2_000, DECAY);
        assert!(s.decayed_rtt(2_000, DECAY, None) > 49e6);
        s.observe_rtt(Duration::from_millis(1), 60_000_000_000, DECAY);
        assert!(s.decayed_rtt(60_000_000_000, DECAY, None) < 2e6);
    }

    #[test]
    fn idle_estimates_relax_to_the_floor() {
        let s = EndpointStats::new(Duration::from_millis(1));
        s.observe_rtt(Duration::from_secs(1), 0, DECAY);
        let later = s.decayed_rtt(200_000_000_000, DECAY, Some(1e6));
        assert!(later < 1.01e6, "{later}");
    }

    #[test]
    fn active_counts_in_flight() {
        let s = EndpointStats::new(Duration::ZERO);
        s.start();
        s.start();
        s.finish();
        assert_eq!(s.active(), 1);
    }
}
