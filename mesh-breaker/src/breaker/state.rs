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

    /// Records a success. A full window without failures is left as it is:
    /// a success would only clear a bit that is already clear, and which slot
    /// is the oldest does not matter when all are alike. So the healthy path
    /// only reads the window, and the cache line stays shared between cores.
    #[inline]
    fn push_success(&self) {
        if self.failures.load(Ordering::Relaxed) == 0
            && self.seq.load(Ordering::Relaxed) >= self.size
        {
            return;
        }
        self.push(false);
    }

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

/// Aligned to 128 bytes so that, inside its `Arc`, the state does not share a
/// cache line (or an adjacent-line prefetch pair) with the reference counts
/// every request bumps: on the healthy path the state itself is only read.
#[repr(align(128))]
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
    /// Closed, in the generation of this state word.
    Pass {
        word: u64,
    },
    /// A half-open probe slot, held by its recorder: given back if dropped
    /// before its outcome is known.
    Probe(BreakerRecorder),
    Reject,
}

/// The generation of `word`, as a recorder keeps it: its low 32 bits.
#[inline]
fn short_gen(word: u64) -> u32 {
    // Truncation intended: only the low 32 bits are compared.
    gen_of(word) as u32
}

/// Whether `word` is of the generation `generation` and in state `k`.
#[inline]
fn same(word: u64, generation: u32, k: u64) -> bool {
    kind(word) == k && short_gen(word) == generation
}

/// Where a request's outcome goes: the breaker, tagged with the generation the
/// request was admitted in (outcomes of another generation are ignored).
///
/// While `probe` is set it holds a half-open probe slot, given back if the
/// recorder is dropped before recording. Two words (the `bool` leaves a niche
/// for [`Recorder`](crate::body::Recorder) and its `Option`), so that response
/// futures and bodies stay small. The generation is kept modulo 2³²: only an
/// outcome arriving 2³² state changes (over 10⁹ open periods) after its
/// admission would be taken for a current one.
pub(crate) struct BreakerRecorder {
    shared: Arc<Shared>,
    generation: u32,
    probe: bool,
}

impl Drop for BreakerRecorder {
    #[inline]
    fn drop(&mut self) {
        if self.probe {
            self.shared.give_back_probe(self.generation);
        }
    }
}

impl fmt::Debug for BreakerRecorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreakerRecorder")
            .field("generation", &self.generation)
            .field("probe", &self.probe)
            .finish()
    }
}

impl BreakerRecorder {
    #[inline]
    pub(crate) fn record(mut self, outcome: Outcome) {
        // Disarm: the outcome settles the probe slot.
        let probe = std::mem::take(&mut self.probe);
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

    /// Decides whether the next call may pass: closed, one load. Reads the
    /// clock only while open.
    #[inline]
    pub(crate) fn admit(self: &Arc<Self>) -> Admission {
        let word = self.word.load(Ordering::Acquire);
        if kind(word) == CLOSED {
            return Admission::Pass { word };
        }
        self.admit_slow()
    }

    #[cold]
    #[inline(never)]
    fn admit_slow(self: &Arc<Self>) -> Admission {
        loop {
            let word = self.word.load(Ordering::Acquire);
            let generation = gen_of(word);
            match kind(word) {
                CLOSED => return Admission::Pass { word },
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
                    return Admission::Probe(BreakerRecorder {
                        shared: self.clone(),
                        generation: short_gen(word),
                        probe: true,
                    });
                }
            }
        }
    }

    /// Gives back the probe slot of a probe dropped before its outcome.
    #[cold]
    fn give_back_probe(&self, generation: u32) {
        if same(self.word.load(Ordering::Acquire), generation, HALF_OPEN) {
            self.probes_left.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// The recorder of a call admitted while closed: the one `Arc` clone of a
    /// request.
    #[inline]
    pub(crate) fn pass(self: &Arc<Self>, word: u64) -> BreakerRecorder {
        BreakerRecorder {
            shared: self.clone(),
            generation: short_gen(word),
            probe: false,
        }
    }

    /// The recorder of an admitted call, `None` if refused (a probe's
    /// recorder was made by `admit`).
    #[inline]
    pub(crate) fn recorder(self: &Arc<Self>, admission: Admission) -> Option<BreakerRecorder> {
        match admission {
            Admission::Pass { word } => Some(self.pass(word)),
            Admission::Probe(recorder) => Some(recorder),
            Admission::Reject => None,
        }
    }

    /// Records an outcome. The common case (a success while closed, the full
    /// window holding no failure) is three loads and no write.
    #[inline]
    fn record(&self, generation: u32, probe: bool, outcome: Outcome) {
        if !probe
            && matches!(outcome, Outcome::Success)
            && same(self.word.load(Ordering::Acquire), generation, CLOSED)
        {
            self.window.push_success();
            return;
        }
        self.record_slow(generation, probe, outcome);
    }

    #[inline(never)]
    fn record_slow(&self, generation: u32, probe: bool, outcome: Outcome) {
        let fail = match outcome {
            Outcome::Success => false,
            // The mesh's own refusals say nothing about the upstream.
            Outcome::Failure(f) if f.is_mesh() => return,
            Outcome::Failure(_) => true,
        };
        let word = self.word.load(Ordering::Acquire);
        if short_gen(word) != generation {
            return;
        }
        match kind(word) {
            CLOSED => {
                if !fail {
                    self.window.push_success();
                    return;
                }
                self.window.push(true);
                let (n, f) = self.window.counts();
                if n >= u64::from(self.config.min_requests)
                    && (f as f64) >= self.config.failure_ratio * n as f64
                {
                    self.trip(word, n, f);
                }
            }
            HALF_OPEN if probe => {
                if fail {
                    self.trip(word, 0, 1);
                } else {
                    let ok = self.probes_ok.fetch_add(1, Ordering::AcqRel) + 1;
                    if ok >= self.config.half_open_probes {
                        let next = pack(gen_of(word) + 1, CLOSED);
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
