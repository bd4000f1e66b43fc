//! The per-cluster registry of endpoint outlier state, and the sweep.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use futures_util::task::AtomicWaker;
use mesh_core::classify::Outcome;
use tokio::time::Instant;

use super::config::OutlierDetection;

/// Why an endpoint was found to be an outlier.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EjectionKind {
    /// `consecutive5xxErrors` 5xx responses in a row.
    Consecutive5xx,
    /// `consecutiveGatewayErrors` 502/503/504 responses in a row.
    ConsecutiveGatewayFailure,
    /// `consecutiveLocalOriginFailures` connect failures, resets or timeouts in
    /// a row (split mode only).
    ConsecutiveLocalOriginFailure,
    /// A success rate below the cluster's mean by more than the stdev factor.
    SuccessRate,
    /// A failure percentage at or above the threshold.
    FailurePercentage,
    /// Success-rate ejection on local-origin outcomes (split mode only).
    LocalOriginSuccessRate,
    /// Failure-percentage ejection on local-origin outcomes (split mode only).
    LocalOriginFailurePercentage,
}

impl EjectionKind {
    /// Every kind, in the order of [`OutlierStats::detected`] indices.
    pub const ALL: [EjectionKind; 7] = [
        EjectionKind::Consecutive5xx,
        EjectionKind::ConsecutiveGatewayFailure,
        EjectionKind::ConsecutiveLocalOriginFailure,
        EjectionKind::SuccessRate,
        EjectionKind::FailurePercentage,
        EjectionKind::LocalOriginSuccessRate,
        EjectionKind::LocalOriginFailurePercentage,
    ];

    /// Envoy's stat suffix for the kind (`consecutive_5xx`…).
    pub const fn name(self) -> &'static str {
        match self {
            EjectionKind::Consecutive5xx => "consecutive_5xx",
            EjectionKind::ConsecutiveGatewayFailure => "consecutive_gateway_failure",
            EjectionKind::ConsecutiveLocalOriginFailure => "consecutive_local_origin_failure",
            EjectionKind::SuccessRate => "success_rate",
            EjectionKind::FailurePercentage => "failure_percentage",
            EjectionKind::LocalOriginSuccessRate => "local_origin_success_rate",
            EjectionKind::LocalOriginFailurePercentage => "local_origin_failure_percentage",
        }
    }

    const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for EjectionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// The outlier detector of one cluster (one destination service or subset):
/// the registry of its endpoints' outlier state, the ejection cap and panic
/// threshold, and the periodic sweep.
///
/// Clones share the state. Make one per cluster, then wrap each endpoint's
/// service with [`gate`](Self::gate) (or [`gate_layer`](Self::gate_layer)) and
/// put [`cluster_layer`](Self::cluster_layer) above the balancer.
///
/// # The sweep
///
/// Ejections for consecutive errors happen inline, on the response that
/// reaches the threshold, as in Envoy. Un-ejection, multiplier decay and the
/// statistical detectors run at each `interval` sweep. [`new`](Self::new)
/// spawns the sweep as a tokio task when called inside a runtime (it holds
/// only a weak reference and ends when the detector and all its gates are
/// gone); [`without_timer`](Self::without_timer) leaves it to the caller,
/// who calls [`sweep`](Self::sweep). A timer task rather than sweeping lazily
/// from requests keeps the request path free of clock reads, and un-ejects
/// endpoints even when no request arrives to notice the time.
#[derive(Clone)]
pub struct OutlierDetector {
    pub(crate) shared: Arc<Shared>,
}

pub(crate) struct Shared {
    pub(crate) config: OutlierDetection,
    track_rates: bool,
    origin: Instant,
    hosts: AtomicUsize,
    ejected: AtomicUsize,
    registry: Mutex<Registry>,
    wakers: Mutex<Vec<Weak<AtomicWaker>>>,
    counters: Counters,
}

#[derive(Default)]
struct Registry {
    hosts: HashMap<SocketAddr, Entry>,
}

struct Entry {
    host: Arc<Host>,
    registration: Weak<Registration>,
}

#[derive(Default)]
struct Counters {
    ejections_total: AtomicU64,
    overflow: AtomicU64,
    detected: [AtomicU64; 7],
    enforced: [AtomicU64; 7],
}

/// One endpoint's outlier state. Everything the request path touches is an
/// atomic; the ejection fields change only under the registry lock.
pub(crate) struct Host {
    addr: SocketAddr,
    c5xx: AtomicU32,
    cgw: AtomicU32,
    clocal: AtomicU32,
    ext_total: AtomicU32,
    ext_fail: AtomicU32,
    local_total: AtomicU32,
    local_fail: AtomicU32,
    ejected: AtomicBool,
    /// Nanoseconds since the detector's origin.
    ejected_at: AtomicU64,
    multiplier: AtomicU32,
    ejections: AtomicU64,
}

impl Host {
    fn new(addr: SocketAddr) -> Self {
        Host {
            addr,
            c5xx: AtomicU32::new(0),
            cgw: AtomicU32::new(0),
            clocal: AtomicU32::new(0),
            ext_total: AtomicU32::new(0),
            ext_fail: AtomicU32::new(0),
            local_total: AtomicU32::new(0),
            local_fail: AtomicU32::new(0),
            ejected: AtomicBool::new(false),
            ejected_at: AtomicU64::new(0),
            multiplier: AtomicU32::new(0),
            ejections: AtomicU64::new(0),
        }
    }

    #[inline]
    pub(crate) fn is_ejected(&self) -> bool {
        self.ejected.load(Ordering::Acquire)
    }
}

/// An endpoint's membership in a cluster: shared by the gates of that
/// endpoint; the last one dropped removes the endpoint and its state.
pub(crate) struct Registration {
    pub(crate) host: Arc<Host>,
    pub(crate) shared: Arc<Shared>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let shared = &self.shared;
        {
            let mut reg = shared.lock();
            let mine = reg
                .hosts
                .get(&self.host.addr)
                .is_some_and(|e| std::ptr::eq(e.registration.as_ptr(), self));
            if mine {
                reg.hosts.remove(&self.host.addr);
            }
            shared.hosts.fetch_sub(1, Ordering::AcqRel);
            if self.host.ejected.swap(false, Ordering::AcqRel) {
                shared.ejected.fetch_sub(1, Ordering::AcqRel);
            }
        }
        tracing::debug!(endpoint = %self.host.addr, "outlier detection: endpoint removed");
        shared.wake_all();
    }
}

#[inline]
fn reset(counter: &AtomicU32) {
    // Read first: a success on a healthy endpoint then writes nothing.
    if counter.load(Ordering::Relaxed) != 0 {
        counter.store(0, Ordering::Relaxed);
    }
}

/// Counts one more error; true exactly when the count reaches `threshold`.
#[inline]
fn bump(counter: &AtomicU32, threshold: u32) -> bool {
    threshold != 0 && counter.fetch_add(1, Ordering::Relaxed).wrapping_add(1) == threshold
}

impl Registration {
    /// Accounts one outcome of a request to this endpoint.
    #[inline]
    pub(crate) fn record(&self, outcome: Outcome) {
        let shared = &*self.shared;
        let cfg = &shared.config;
        let h = &*self.host;
        let failure = match outcome {
            Outcome::Success => {
                if shared.track_rates {
                    h.ext_total.fetch_add(1, Ordering::Relaxed);
                }
                reset(&h.c5xx);
                reset(&h.cgw);
                reset(&h.clocal);
                return;
            }
            Outcome::Failure(f) => f,
        };
        if failure.is_mesh() {
            // The mesh's own decision (overflow, no route…): not the endpoint's.
            return;
        }
        let local = failure.is_local_origin();
        if local && cfg.split_external_local_origin_errors {
            if shared.track_rates {
                h.local_total.fetch_add(1, Ordering::Relaxed);
                h.local_fail.fetch_add(1, Ordering::Relaxed);
            }
            if bump(&h.clocal, cfg.consecutive_local_origin_failures) {
                self.detected(&h.clocal, EjectionKind::ConsecutiveLocalOriginFailure);
            }
            return;
        }
        // Not split: a local-origin failure counts as a 503 (5xx and gateway).
        let (is_5xx, is_gateway) = if local {
            (true, true)
        } else {
            match failure.effective_status() {
                Some(s) if s.is_server_error() => (true, matches!(s.as_u16(), 502..=504)),
                _ => (false, false),
            }
        };
        if !is_5xx {
            // A gRPC code that maps to a non-5xx status: a success to Envoy.
            return self.record(Outcome::Success);
        }
        if shared.track_rates {
            h.ext_total.fetch_add(1, Ordering::Relaxed);
            h.ext_fail.fetch_add(1, Ordering::Relaxed);
        }
        if is_gateway {
            if bump(&h.cgw, cfg.consecutive_gateway_errors) {
                self.detected(&h.cgw, EjectionKind::ConsecutiveGatewayFailure);
            }
        } else {
            reset(&h.cgw);
        }
        if bump(&h.c5xx, cfg.consecutive_5xx) {
            self.detected(&h.c5xx, EjectionKind::Consecutive5xx);
        }
    }

    #[cold]
    fn detected(&self, counter: &AtomicU32, kind: EjectionKind) {
        // Reset so that the errors that follow can count towards a next
        // ejection (Envoy resets the counter the same way).
        counter.store(0, Ordering::Relaxed);
        let shared = &*self.shared;
        shared.counters.detected[kind.index()].fetch_add(1, Ordering::Relaxed);
        let ejected = {
            let _reg = shared.lock();
            shared.try_eject(&self.host, kind, Instant::now())
        };
        if ejected {
            shared.wake_all();
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Registry> {
        // A panic elsewhere while holding the lock leaves consistent atomics.
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn nanos(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.origin).as_nanos()).unwrap_or(u64::MAX)
    }

    fn ejection_time(&self, multiplier: u32) -> Duration {
        self.config
            .base_ejection_time
            .saturating_mul(multiplier)
            .min(self.config.max_ejection_time)
    }

    /// Whether one more ejection respects the cap. Caller holds the lock.
    fn may_eject(&self) -> bool {
        let hosts = self.hosts.load(Ordering::Acquire) as u128;
        let ejected = self.ejected.load(Ordering::Acquire) as u128;
        if hosts == 0 {
            return false;
        }
        (ejected + 1) * 100 <= u128::from(self.config.max_ejection_percent) * hosts
            || (self.config.always_eject_one_host && ejected == 0)
    }

    /// Ejects `host` if it is not ejected and the cap allows. Caller holds the
    /// lock.
    fn try_eject(&self, host: &Host, kind: EjectionKind, now: Instant) -> bool {
        if host.is_ejected() {
            return false;
        }
        if !self.may_eject() {
            self.counters.overflow.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(
                endpoint = %host.addr,
                %kind,
                hosts = self.hosts.load(Ordering::Relaxed),
                ejected = self.ejected.load(Ordering::Relaxed),
                max_ejection_percent = self.config.max_ejection_percent,
                "outlier detection: ejection refused by max ejection percent",
            );
            return false;
        }
        let mut multiplier = host.multiplier.load(Ordering::Relaxed);
        if self.ejection_time(multiplier) < self.config.max_ejection_time {
            multiplier = multiplier.saturating_add(1);
            host.multiplier.store(multiplier, Ordering::Relaxed);
        }
        host.ejected_at.store(self.nanos(now), Ordering::Relaxed);
        host.ejected.store(true, Ordering::Release);
        self.ejected.fetch_add(1, Ordering::AcqRel);
        let total = host.ejections.fetch_add(1, Ordering::Relaxed) + 1;
        self.counters
            .ejections_total
            .fetch_add(1, Ordering::Relaxed);
        self.counters.enforced[kind.index()].fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            endpoint = %host.addr,
            %kind,
            ejection_time = ?self.ejection_time(multiplier),
            ejections = total,
            "outlier detection: endpoint ejected",
        );
        true
    }

    /// Whether the cluster is in panic mode: fewer healthy endpoints than
    /// `min_health_percent`, so ejections are ignored.
    #[inline]
    pub(crate) fn in_panic(&self) -> bool {
        let min = self.config.min_health_percent;
        if min == 0 {
            return false;
        }
        let hosts = self.hosts.load(Ordering::Acquire) as u128;
        let ejected = self.ejected.load(Ordering::Acquire) as u128;
        hosts > 0 && hosts.saturating_sub(ejected) * 100 < u128::from(min) * hosts
    }

    /// Whether no endpoint is healthy and panic mode does not apply: Envoy's
    /// 503 `UH`. An empty cluster is left to the balancer.
    #[inline]
    pub(crate) fn none_healthy(&self) -> bool {
        let ejected = self.ejected.load(Ordering::Acquire);
        ejected > 0 && ejected >= self.hosts.load(Ordering::Acquire) && !self.in_panic()
    }

    pub(crate) fn register_waker(&self) -> Arc<AtomicWaker> {
        let waker = Arc::new(AtomicWaker::new());
        let mut wakers = self.wakers.lock().unwrap_or_else(|e| e.into_inner());
        if wakers.len() >= 64 && wakers.len().is_power_of_two() {
            wakers.retain(|w| w.strong_count() > 0);
        }
        wakers.push(Arc::downgrade(&waker));
        waker
    }

    fn wake_all(&self) {
        let mut wakers = self.wakers.lock().unwrap_or_else(|e| e.into_inner());
        wakers.retain(|w| match w.upgrade() {
            Some(w) => {
                w.wake();
                true
            }
            None => false,
        });
    }

    fn sweep(&self, now: Instant) {
        let now_n = self.nanos(now);
        let mut changed = false;
        {
            let reg = self.lock();
            let mut rates = Vec::new();
            for entry in reg.hosts.values() {
                let h = &*entry.host;
                if h.is_ejected() {
                    let multiplier = h.multiplier.load(Ordering::Relaxed);
                    let time = self.ejection_time(multiplier);
                    let since = Duration::from_nanos(
                        now_n.saturating_sub(h.ejected_at.load(Ordering::Relaxed)),
                    );
                    if since >= time {
                        h.ejected.store(false, Ordering::Release);
                        self.ejected.fetch_sub(1, Ordering::AcqRel);
                        changed = true;
                        tracing::info!(
                            endpoint = %h.addr,
                            ejected_for = ?since,
                            "outlier detection: endpoint returned to service",
                        );
                    }
                } else {
                    let m = h.multiplier.load(Ordering::Relaxed);
                    if m > 0 {
                        h.multiplier.store(m - 1, Ordering::Relaxed);
                    }
                }
                if self.track_rates {
                    rates.push(Rates {
                        host: entry.host.clone(),
                        ext_total: h.ext_total.swap(0, Ordering::Relaxed),
                        ext_fail: h.ext_fail.swap(0, Ordering::Relaxed),
                        local_total: h.local_total.swap(0, Ordering::Relaxed),
                        local_fail: h.local_fail.swap(0, Ordering::Relaxed),
                    });
                }
            }
            if !rates.is_empty() {
                changed |= self.statistical(&rates, now);
            }
        }
        if changed {
            self.wake_all();
        }
    }

    /// Success-rate and failure-percentage ejection over one interval's counts.
    /// Caller holds the lock.
    fn statistical(&self, rates: &[Rates], now: Instant) -> bool {
        let mut changed = false;
        let split = self.config.split_external_local_origin_errors;
        let sets: &[RateSet] = if split {
            &[
                (
                    |r| (r.ext_total, r.ext_fail),
                    EjectionKind::SuccessRate,
                    EjectionKind::FailurePercentage,
                ),
                (
                    |r| (r.local_total, r.local_fail),
                    EjectionKind::LocalOriginSuccessRate,
                    EjectionKind::LocalOriginFailurePercentage,
                ),
            ]
        } else {
            &[(
                |r| (r.ext_total, r.ext_fail),
                EjectionKind::SuccessRate,
                EjectionKind::FailurePercentage,
            )]
        };
        for (counts, sr_kind, fp_kind) in sets {
            if let Some(sr) = &self.config.success_rate {
                let qualified: Vec<(&Rates, f64)> = rates
                    .iter()
                    .filter_map(|r| {
                        let (total, fail) = counts(r);
                        (total >= sr.request_volume).then(|| {
                            (
                                r,
                                100.0 * f64::from(total - fail.min(total)) / f64::from(total),
                            )
                        })
                    })
                    .collect();
                if qualified.len() >= sr.minimum_hosts as usize {
                    let n = qualified.len() as f64;
                    let mean = qualified.iter().map(|(_, s)| s).sum::<f64>() / n;
                    let var = qualified
                        .iter()
                        .map(|(_, s)| (s - mean).powi(2))
                        .sum::<f64>()
                        / n;
                    let threshold = mean - f64::from(sr.stdev_factor) / 1000.0 * var.sqrt();
                    for (r, rate) in qualified {
                        if rate < threshold {
                            self.counters.detected[sr_kind.index()].fetch_add(1, Ordering::Relaxed);
                            changed |= self.try_eject(&r.host, *sr_kind, now);
                        }
                    }
                }
            }
            if let Some(fp) = &self.config.failure_percentage {
                let qualified: Vec<(&Rates, u64)> = rates
                    .iter()
                    .filter_map(|r| {
                        let (total, fail) = counts(r);
                        (total >= fp.request_volume)
                            .then(|| (r, u64::from(fail.min(total)) * 100 / u64::from(total)))
                    })
                    .collect();
                if qualified.len() >= fp.minimum_hosts as usize {
                    for (r, pct) in qualified {
                        if pct >= u64::from(fp.threshold) {
                            self.counters.detected[fp_kind.index()].fetch_add(1, Ordering::Relaxed);
                            changed |= self.try_eject(&r.host, *fp_kind, now);
                        }
                    }
                }
            }
        }
        changed
    }
}

/// How to read one class of counts, and the kinds its detectors report.
type RateSet = (fn(&Rates) -> (u32, u32), EjectionKind, EjectionKind);

struct Rates {
    host: Arc<Host>,
    ext_total: u32,
    ext_fail: u32,
    local_total: u32,
    local_fail: u32,
}

impl OutlierDetector {
    /// A detector with these settings. Inside a tokio runtime the sweep is
    /// spawned on it (see [the sweep](Self#the-sweep)); outside one, call
    /// [`sweep`](Self::sweep) yourself or use [`spawn_sweeps`](Self::spawn_sweeps)
    /// later.
    pub fn new(config: OutlierDetection) -> Self {
        let detector = Self::without_timer(config);
        if tokio::runtime::Handle::try_current().is_ok() {
            detector.spawn_sweeps();
        }
        detector
    }

    /// A detector whose sweeps the caller drives with [`sweep`](Self::sweep).
    pub fn without_timer(config: OutlierDetection) -> Self {
        let config = config.normalized();
        let track_rates = config.success_rate.is_some() || config.failure_percentage.is_some();
        OutlierDetector {
            shared: Arc::new(Shared {
                config,
                track_rates,
                origin: Instant::now(),
                hosts: AtomicUsize::new(0),
                ejected: AtomicUsize::new(0),
                registry: Mutex::new(Registry::default()),
                wakers: Mutex::new(Vec::new()),
                counters: Counters::default(),
            }),
        }
    }

    /// Spawns the sweep task on the current tokio runtime: a sweep every
    /// `interval` from the detector's creation, for as long as the detector
    /// or one of its gates lives. [`new`](Self::new) does this already.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime, as `tokio::spawn` does.
    pub fn spawn_sweeps(&self) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(&self.shared);
        let period = self.shared.config.interval;
        let start = self.shared.origin + period;
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval_at(start, period);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                let now = ticks.tick().await;
                match weak.upgrade() {
                    Some(shared) => shared.sweep(now),
                    None => break,
                }
            }
        })
    }

    /// Runs one sweep now: returns endpoints whose ejection time is up, decays
    /// the multiplier of healthy ones, and runs success-rate and
    /// failure-percentage ejection over the counts since the last sweep.
    pub fn sweep(&self) {
        self.shared.sweep(Instant::now());
    }

    /// The settings in use (bounds applied).
    pub fn config(&self) -> &OutlierDetection {
        &self.shared.config
    }

    /// Registers the endpoint at `addr`, or joins its existing registration.
    pub(crate) fn register(&self, addr: SocketAddr) -> Arc<Registration> {
        let mut reg = self.shared.lock();
        if let Some(existing) = reg.hosts.get(&addr).and_then(|e| e.registration.upgrade()) {
            return existing;
        }
        let host = Arc::new(Host::new(addr));
        let registration = Arc::new(Registration {
            host: host.clone(),
            shared: self.shared.clone(),
        });
        // An entry whose registration is being dropped is replaced; its drop
        // sees that the entry is no longer its own.
        reg.hosts.insert(
            addr,
            Entry {
                host,
                registration: Arc::downgrade(&registration),
            },
        );
        self.shared.hosts.fetch_add(1, Ordering::AcqRel);
        tracing::debug!(endpoint = %addr, "outlier detection: endpoint added");
        registration
    }

    /// Counters of the cluster, Envoy's `outlier_detection.*` stats.
    pub fn stats(&self) -> OutlierStats {
        let c = &self.shared.counters;
        OutlierStats {
            hosts: self.shared.hosts.load(Ordering::Acquire),
            ejections_active: self.shared.ejected.load(Ordering::Acquire),
            ejections_total: c.ejections_total.load(Ordering::Relaxed),
            ejections_overflow: c.overflow.load(Ordering::Relaxed),
            detected: c.detected.each_ref().map(|a| a.load(Ordering::Relaxed)),
            enforced: c.enforced.each_ref().map(|a| a.load(Ordering::Relaxed)),
            panic: self.shared.in_panic(),
        }
    }

    /// The outlier state of every endpoint, sorted by address.
    pub fn endpoints(&self) -> Vec<EndpointOutlierState> {
        let now = self.shared.nanos(Instant::now());
        let reg = self.shared.lock();
        let mut all: Vec<_> = reg
            .hosts
            .values()
            .map(|e| self.state_of(&e.host, now))
            .collect();
        all.sort_by_key(|s| s.addr);
        all
    }

    /// The outlier state of the endpoint at `addr`, if it is registered.
    pub fn endpoint(&self, addr: SocketAddr) -> Option<EndpointOutlierState> {
        let now = self.shared.nanos(Instant::now());
        let reg = self.shared.lock();
        reg.hosts.get(&addr).map(|e| self.state_of(&e.host, now))
    }

    fn state_of(&self, h: &Host, now: u64) -> EndpointOutlierState {
        let ejected = h.is_ejected();
        let multiplier = h.multiplier.load(Ordering::Relaxed);
        EndpointOutlierState {
            addr: h.addr,
            ejected,
            ejected_for: ejected.then(|| {
                Duration::from_nanos(now.saturating_sub(h.ejected_at.load(Ordering::Relaxed)))
            }),
            ejection_time: ejected.then(|| self.shared.ejection_time(multiplier)),
            ejections_total: h.ejections.load(Ordering::Relaxed),
            multiplier,
            consecutive_5xx: h.c5xx.load(Ordering::Relaxed),
            consecutive_gateway_errors: h.cgw.load(Ordering::Relaxed),
            consecutive_local_origin_failures: h.clocal.load(Ordering::Relaxed),
        }
    }

    /// Whether the cluster is in panic mode (fewer healthy endpoints than
    /// `min_health_percent`): gates are open to all endpoints.
    pub fn in_panic(&self) -> bool {
        self.shared.in_panic()
    }

    /// Whether every endpoint is ejected and panic mode does not apply, so the
    /// cluster answers 503 `UH`.
    pub fn none_healthy(&self) -> bool {
        self.shared.none_healthy()
    }
}

impl fmt::Debug for OutlierDetector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutlierDetector")
            .field("config", &self.shared.config)
            .field("hosts", &self.shared.hosts.load(Ordering::Relaxed))
            .field("ejected", &self.shared.ejected.load(Ordering::Relaxed))
            .finish()
    }
}

impl fmt::Debug for Registration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registration")
            .field("addr", &self.host.addr)
            .field("ejected", &self.host.is_ejected())
            .finish()
    }
}

/// A snapshot of a cluster's outlier-detection counters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutlierStats {
    /// Endpoints registered.
    pub hosts: usize,
    /// Endpoints ejected now (`ejections_active`).
    pub ejections_active: usize,
    /// Ejections since the start (`ejections_enforced_total`).
    pub ejections_total: u64,
    /// Ejections refused by `max_ejection_percent` (`ejections_overflow`).
    pub ejections_overflow: u64,
    /// Outliers detected, by [`EjectionKind`] index (`ejections_detected_*`).
    pub detected: [u64; 7],
    /// Ejections enforced, by [`EjectionKind`] index (`ejections_enforced_*`).
    pub enforced: [u64; 7],
    /// Whether the cluster is in panic mode.
    pub panic: bool,
}

impl OutlierStats {
    /// Outliers of this kind detected.
    pub fn detected(&self, kind: EjectionKind) -> u64 {
        self.detected[kind.index()]
    }

    /// Ejections of this kind enforced.
    pub fn enforced(&self, kind: EjectionKind) -> u64 {
        self.enforced[kind.index()]
    }
}

/// A snapshot of one endpoint's outlier state (Envoy's `/clusters` view).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointOutlierState {
    /// The endpoint.
    pub addr: SocketAddr,
    /// Whether it is ejected (`failed_outlier_check`).
    pub ejected: bool,
    /// How long it has been ejected, when it is.
    pub ejected_for: Option<Duration>,
    /// How long the current ejection lasts (it ends at the first sweep after).
    pub ejection_time: Option<Duration>,
    /// How many times it has been ejected.
    pub ejections_total: u64,
    /// The ejection-time multiplier: grows by one per ejection, decays by one
    /// per sweep while healthy.
    pub multiplier: u32,
    /// Current run of 5xx.
    pub consecutive_5xx: u32,
    /// Current run of gateway errors.
    pub consecutive_gateway_errors: u32,
    /// Current run of local-origin failures (split mode).
    pub consecutive_local_origin_failures: u32,
}
