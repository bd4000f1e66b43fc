//! The breaker's shared state: one atomic word for state and generation, a
//! lock-free count-based sliding window.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use mesh_core::classify::Outcome;
use tokio::time::Instant;

use super::config::CircuitBreakerConfig;

/// The state of a classic circuit breaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BreakerState {
    /// Requests flow; outcomes fill the window.
    Closed,
    /// Requests are refused with 503 `UO` until the open time is up.
    Open,
    /// A limited number of probes flow; their outcomes decide.
    HalfOpen,
}

const CLOSED: u64 = 0;
const OPEN: u64 = 1;
const HALF_OPEN: u64 = 2;

#[inline]
fn kind(word: u64) -> u64 {
    word & 3
}

#[inline]
fn gen_of(word: u64) -> u64 {
    word >> 2
}

#[inline]
fn pack(generation: u64, kind: u64) -> u64 {
    (generation << 2) | kind
}

/// The last `size` outcomes, as bits; `failures` counts the set ones.
struct Window {
    bits: Box<[AtomicU64]>,
    seq: AtomicU64,
    failures: AtomicI64,
    size: u64,
}

impl Window {
    fn new(size: u32) -> Self {
        let size = u64::from(size.max(1));
        Window {
            bits: (0..size.div_ceil(64)).map(|_| AtomicU64::new(0)).collect(),
            seq: AtomicU64::new(0),
            failures: AtomicI64::new(0),
            size,
        }
    }

    #[inline]
    fn push(&self, fail: bool) {
        let i = self.seq.fetch_add(1, Ordering::Relaxed) % self.size;
        let Some(word) = self.bits.get((i / 64) as usize) else {
            return;
        };
        let bit = 1u64 << (i % 64);
        if fail {
            if word.fetch_or(bit, Ordering::Relaxed) & bit == 0 {
                self.failures.fetch_add(1, Ordering::Relaxed);
            }
        } else if word.load(Ordering::Relaxed) & bit != 0
            && word.fetch_and(!bit, Ordering::Relaxed) & bit != 0
        {
            self.failures.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// (requests, failures) in the window.
    fn counts(&self) -> (u64, u64) {
        let n = self.seq.load(Ordering::Relaxed).min(self.size);
        let f = self.failures.load(Ordering::Relaxed).clamp(0, n as i64) as u64;
        (n, f)
    }

    fn reset(&self) {
        for w in self.bits.iter() {
            w.store(0, Ordering::Relaxed);
        }
        self.failures.store(0, Ordering::Relaxed);
        self.seq.store(0, Ordering::Relaxed);
    }
}

pub(crate) struct Shared {
    config: CircuitBreakerConfig,
    origin: Instant,
    word: AtomicU64,
    opened_at: AtomicU64,
    probes_left: AtomicU32,
    probes_ok: AtomicU32,
    window: Window,
    opened_total: AtomicU64,
    rejected_total: AtomicU64,
}

/// What `poll_ready` decided for the next call.
#[derive(Debug)]
pub(crate) enum Admission {
    Pass { generation: u64 },
    Probe(ProbeToken),
    Reject,
}

/// A half-open probe slot; given back if dropped before its outcome is known.
pub(crate) struct ProbeToken {
    shared: Arc<Shared>,
    generation: u64,
    armed: bool,
}

impl Drop for ProbeToken {
    fn drop(&mut self) {
        if self.armed
            && self.shared.word.load(Ordering::Acquire) == pack(self.generation, HALF_OPEN)
        {
            self.shared.probes_left.fetch_add(1, Ordering::AcqRel);
        }
    }
}

impl fmt::Debug for ProbeToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProbeToken")
            .field("generation", &self.generation)
            .finish()
    }
}

/// Where a request's outcome goes: the breaker, tagged with the generation the
/// request was admitted in (outcomes of another generation are ignored).
pub(crate) struct BreakerRecorder {
    shared: Arc<Shared>,
    generation: u64,
    probe: Option<ProbeToken>,
}

impl fmt::Debug for BreakerRecorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreakerRecorder")
            .field("generation", &self.generation)
            .field("probe", &self.probe.is_some())
            .finish()
    }
}

impl BreakerRecorder {
    pub(crate) fn record(mut self, outcome: Outcome) {
        let probe = self.probe.take().map(|mut t| t.armed = false).is_some();
        self.shared.record(self.generation, probe, outcome);
    }
}

impl Shared {
    pub(crate) fn new(config: CircuitBreakerConfig) -> Arc<Self> {
        let config = config.normalized();
        Arc::new(Shared {
            window: Window::new(config.window),
            config,
            origin: Instant::now(),
            word: AtomicU64::new(pack(0, CLOSED)),
            opened_at: AtomicU64::new(0),
            probes_left: AtomicU32::new(0),
            probes_ok: AtomicU32::new(0),
            opened_total: AtomicU64::new(0),
            rejected_total: AtomicU64::new(0),
        })
    }

    fn nanos(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.origin).as_nanos()).unwrap_or(u64::MAX)
    }

    pub(crate) fn state(&self) -> BreakerState {
        match kind(self.word.load(Ordering::Acquire)) {
            CLOSED => BreakerState::Closed,
            OPEN => BreakerState::Open,
            _ => BreakerState::HalfOpen,
        }
    }

    /// Decides whether the next call may pass. Reads the clock only while open.
    #[inline]
    pub(crate) fn admit(self: &Arc<Self>) -> Admission {
        loop {
            let word = self.word.load(Ordering::Acquire);
            let generation = gen_of(word);
            match kind(word) {
                CLOSED => return Admission::Pass { generation },
                OPEN => {
                    let open_for = Duration::from_nanos(
                        self.nanos(Instant::now())
                            .saturating_sub(self.opened_at.load(Ordering::Acquire)),
                    );
                    if open_for < self.config.open_for {
                        self.rejected_total.fetch_add(1, Ordering::Relaxed);
                        return Admission::Reject;
                    }
                    self.probes_left
                        .store(self.config.half_open_probes, Ordering::Release);
                    self.probes_ok.store(0, Ordering::Release);
                    let next = pack(generation + 1, HALF_OPEN);
                    if self
                        .word
                        .compare_exchange(word, next, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok()
                    {
                        tracing::info!("circuit breaker: half-open, probing");
                    }
                }
                _ => {
                    let took = self
                        .probes_left
                        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
                        .is_ok();
                    if !took {
                        self.rejected_total.fetch_add(1, Ordering::Relaxed);
                        return Admission::Reject;
                    }
                    return Admission::Probe(ProbeToken {
                        shared: self.clone(),
                        generation,
                        armed: true,
                    });
                }
            }
        }
    }

    pub(crate) fn recorder(self: &Arc<Self>, admission: Admission) -> Option<BreakerRecorder> {
        match admission {
            Admission::Pass { generation } => Some(BreakerRecorder {
                shared: self.clone(),
                generation,
                probe: None,
            }),
            Admission::Probe(token) => Some(BreakerRecorder {
                shared: self.clone(),
                generation: token.generation,
                probe: Some(token),
            }),
            Admission::Reject => None,
        }
    }

    fn record(&self, generation: u64, probe: bool, outcome: Outcome) {
        let fail = match outcome {
            Outcome::Success => false,
            // The mesh's own refusals say nothing about the upstream.
            Outcome::Failure(f) if f.is_mesh() => return,
            Outcome::Failure(_) => true,
        };
        let word = self.word.load(Ordering::Acquire);
        if gen_of(word) != generation {
            return;
        }
        match kind(word) {
            CLOSED => {
                self.window.push(fail);
                if fail {
                    let (n, f) = self.window.counts();
                    if n >= u64::from(self.config.min_requests)
                        && (f as f64) >= self.config.failure_ratio * n as f64
                    {
                        self.trip(word, n, f);
                    }
                }
            }
            HALF_OPEN if probe => {
                if fail {
                    self.trip(word, 0, 1);
                } else {
                    let ok = self.probes_ok.fetch_add(1, Ordering::AcqRel) + 1;
                    if ok >= self.config.half_open_probes {
                        let next = pack(generation + 1, CLOSED);
                        self.window.reset();
                        if self
                            .word
                            .compare_exchange(word, next, Ordering::AcqRel, Ordering::Acquire)
                            .is_ok()
                        {
                            tracing::info!("circuit breaker: closed, probes succeeded");
                        }
                    }
                }
            }
            _ => {}
        }
    }

    fn trip(&self, from: u64, requests: u64, failures: u64) {
        self.opened_at
            .store(self.nanos(Instant::now()), Ordering::Release);
        let next = pack(gen_of(from) + 1, OPEN);
        if self
            .word
            .compare_exchange(from, next, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.opened_total.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                requests,
                failures,
                open_for = ?self.config.open_for,
                "circuit breaker: open",
            );
        }
    }

    pub(crate) fn stats(&self) -> BreakerStats {
        let (requests, failures) = self.window.counts();
        BreakerStats {
            state: self.state(),
            window_requests: requests,
            window_failures: failures,
            opened_total: self.opened_total.load(Ordering::Relaxed),
            rejected_total: self.rejected_total.load(Ordering::Relaxed),
        }
    }
}

/// A snapshot of a breaker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BreakerStats {
    /// The state now.
    pub state: BreakerState,
    /// Outcomes in the window (at most its size).
    pub window_requests: u64,
    /// Failures among them.
    pub window_failures: u64,
    /// Times the breaker opened.
    pub opened_total: u64,
    /// Requests refused while open or half-open without a probe slot.
    pub rejected_total: u64,
}
