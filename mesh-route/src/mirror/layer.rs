use std::sync::Arc;
use std::time::Duration;

use mesh_core::body::DEFAULT_REPLAY_CAP;
use mesh_core::limit::SharedLimit;
use tower::Layer;

use super::{Mirror, MirrorStats};
use crate::util::Fraction;

/// Copies in flight allowed by default.
const DEFAULT_IN_FLIGHT: usize = 1024;
/// A copy's default deadline: Envoy's default route timeout.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);

/// One mirror target: its service and the share of requests copied to it.
#[derive(Clone, Debug)]
pub(crate) struct Target<M> {
    pub(crate) service: M,
    pub(crate) fraction: Fraction,
}

/// What all targets of a layer share.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub(crate) limit: SharedLimit,
    pub(crate) stats: MirrorStats,
    pub(crate) cap: usize,
    pub(crate) timeout: Option<Duration>,
    pub(crate) suffix: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            limit: SharedLimit::new(DEFAULT_IN_FLIGHT),
            stats: MirrorStats::new(),
            cap: DEFAULT_REPLAY_CAP,
            timeout: Some(DEFAULT_TIMEOUT),
            suffix: true,
        }
    }
}

/// Applies [`Mirror`] to a service: copies requests to shadow services `M`.
/// See the [module docs](crate::mirror).
#[derive(Clone, Debug)]
pub struct MirrorLayer<M> {
    pub(crate) targets: Vec<Target<M>>,
    pub(crate) settings: Settings,
}

impl<M> Default for MirrorLayer<M> {
    fn default() -> Self {
        MirrorLayer {
            targets: Vec::new(),
            settings: Settings::default(),
        }
    }
}

impl<M> MirrorLayer<M> {
    /// A layer with no target yet (a pass-through until
    /// [`with_target`](Self::with_target)).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a target: copies `percentage` % of requests (`None`: all, as an
    /// absent `mirrorPercentage`) to `service`. The percentage is clamped to
    /// 0–100 (the [`Router`](crate::Router) rejects values outside instead).
    #[must_use]
    pub fn with_target(mut self, service: M, percentage: Option<f64>) -> Self {
        let fraction = percentage.map_or(Fraction::ALL, Fraction::clamped);
        self.targets.push(Target { service, fraction });
        self
    }

    pub(crate) fn with_checked_target(mut self, service: M, fraction: Fraction) -> Self {
        self.targets.push(Target { service, fraction });
        self
    }

    /// Bounds the copies in flight with `limit` (shared by its clones; 1024
    /// by default). Copies over the bound are dropped and counted.
    #[must_use]
    pub fn in_flight_limit(mut self, limit: SharedLimit) -> Self {
        self.settings.limit = limit;
        self
    }

    /// Counts into `stats` (shared by its clones).
    #[must_use]
    pub fn stats(mut self, stats: MirrorStats) -> Self {
        self.settings.stats = stats;
        self
    }

    /// The counters this layer counts into.
    pub fn get_stats(&self) -> &MirrorStats {
        &self.settings.stats
    }

    /// Bodies up to `cap` bytes are mirrored (64 KiB by default); larger
    /// ones are not.
    #[must_use]
    pub fn body_cap(mut self, cap: usize) -> Self {
        self.settings.cap = cap;
        self
    }

    /// Each copy gets at most `timeout` (15 s by default; `None`: no
    /// deadline, leaving it to the shadow's own stack).
    #[must_use]
    pub fn timeout(mut self, timeout: Option<Duration>) -> Self {
        self.settings.timeout = timeout;
        self
    }

    /// Whether `-shadow` is appended to the copy's authority (default true,
    /// as Envoy and Istio before 1.28).
    #[must_use]
    pub fn shadow_host_suffix(mut self, append: bool) -> Self {
        self.settings.suffix = append;
        self
    }

    pub(crate) fn with_settings(mut self, settings: Settings) -> Self {
        self.settings = settings;
        self
    }
}

impl<S, M: Clone> Layer<S> for MirrorLayer<M> {
    type Service = Mirror<S, M>;

    fn layer(&self, inner: S) -> Self::Service {
        Mirror {
            inner,
            targets: self.targets.iter().cloned().collect(),
            settings: Arc::new(self.settings.clone()),
        }
    }
}
