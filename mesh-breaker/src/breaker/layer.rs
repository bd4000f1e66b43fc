//! The breaker layer.

use std::fmt;
use std::sync::Arc;

use mesh_core::classify::HttpClassifier;
use tower::Layer;

use super::config::CircuitBreakerConfig;
use super::service::CircuitBreaker;
use super::state::{BreakerState, BreakerStats, Shared};

/// Makes [`CircuitBreaker`]s that share one breaker: put it where one
/// judgement should cover all requests (a cluster, a route).
#[derive(Clone)]
pub struct CircuitBreakerLayer<C = HttpClassifier> {
    shared: Arc<Shared>,
    classifier: C,
}

impl CircuitBreakerLayer {
    /// A new breaker with these settings, classifying with [`HttpClassifier`].
    pub fn new(config: CircuitBreakerConfig) -> Self {
        CircuitBreakerLayer {
            shared: Shared::new(config),
            classifier: HttpClassifier,
        }
    }
}

impl<C> CircuitBreakerLayer<C> {
    /// Classifies outcomes with `classifier` instead.
    pub fn with_classifier<C2>(self, classifier: C2) -> CircuitBreakerLayer<C2> {
        CircuitBreakerLayer {
            shared: self.shared,
            classifier,
        }
    }

    /// The breaker's state now.
    pub fn state(&self) -> BreakerState {
        self.shared.state()
    }

    /// The breaker's counters now.
    pub fn stats(&self) -> BreakerStats {
        self.shared.stats()
    }
}

impl<C> fmt::Debug for CircuitBreakerLayer<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakerLayer")
            .field("stats", &self.shared.stats())
            .finish()
    }
}

impl<S, C: Clone> Layer<S> for CircuitBreakerLayer<C> {
    type Service = CircuitBreaker<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        CircuitBreaker::new(inner, self.shared.clone(), self.classifier.clone())
    }
}
