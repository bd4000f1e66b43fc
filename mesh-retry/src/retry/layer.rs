//! [`RetryLayer`].

use std::fmt;
use std::sync::Arc;

use mesh_core::classify::{Classify, GrpcClassifier};
use mesh_core::limit::SharedLimit;
use tower::Layer;

use super::service::Retry;
use super::shared::Shared;
use crate::budget::RetryBudget;
use crate::policy::RetryPolicy;
use crate::stats::RetryStats;

/// Applies [`Retry`] to services: a route's retry policy, with an optional
/// retry budget and limit shared with other layers.
///
/// Cloning the layer (and the services it makes) shares the budget, the limit
/// and the counters.
pub struct RetryLayer<C = GrpcClassifier> {
    shared: Arc<Shared<C>>,
}

impl RetryLayer {
    /// A layer with `policy`, the gRPC-aware classifier (which judges
    /// non-gRPC responses as plain HTTP), no budget and no limit.
    pub fn new(policy: RetryPolicy) -> Self {
        RetryLayer {
            shared: Arc::new(Shared::new(policy, GrpcClassifier::new())),
        }
    }
}

impl<C: Classify> RetryLayer<C> {
    /// Asks `budget` before each retry (Envoy's `retry_budget`, Istio's
    /// `retryBudget`, or tower's `TpsBudget`). Share one budget across the
    /// routes of a destination service.
    #[must_use]
    pub fn budget(mut self, budget: Arc<dyn RetryBudget>) -> Self {
        Arc::make_mut(&mut self.shared).budget = Some(budget);
        self
    }

    /// Caps concurrent retries with `limit` (Envoy's `max_retries`, Istio's
    /// `connectionPool.http.maxRetries`), shared with the connection-pool
    /// limits of the destination. Over it, the retry is not made and the last
    /// response is returned (Envoy's retry overflow).
    #[must_use]
    pub fn limit(mut self, limit: SharedLimit) -> Self {
        Arc::make_mut(&mut self.shared).limit = Some(limit);
        self
    }

    /// Judges responses and errors with `classifier` instead.
    pub fn classifier<C2: Classify>(self, classifier: C2) -> RetryLayer<C2> {
        let s = &*self.shared;
        let mut shared = Shared::new(s.policy.clone(), classifier);
        shared.budget.clone_from(&s.budget);
        shared.limit.clone_from(&s.limit);
        shared.stats = s.stats.clone();
        RetryLayer {
            shared: Arc::new(shared),
        }
    }

    /// The counters shared by the services of this layer.
    pub fn stats(&self) -> RetryStats {
        self.shared.stats.clone()
    }

    /// The policy.
    pub fn policy(&self) -> &RetryPolicy {
        &self.shared.policy
    }
}

impl<C> Clone for RetryLayer<C> {
    fn clone(&self) -> Self {
        RetryLayer {
            shared: self.shared.clone(),
        }
    }
}

impl<C> fmt::Debug for RetryLayer<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryLayer")
            .field("shared", &self.shared)
            .finish()
    }
}

impl<S: Clone, C> Layer<S> for RetryLayer<C> {
    type Service = Retry<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        Retry::from_shared(inner, self.shared.clone())
    }
}
