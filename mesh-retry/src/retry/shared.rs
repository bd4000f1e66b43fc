//! State shared by the clones of one layer, and the per-request guards that
//! give budget and limit slots back.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use mesh_core::classify::Classify;
use mesh_core::limit::{Permit, SharedLimit};

use crate::budget::RetryBudget;
use crate::policy::{RetryPolicy, nonzero};
use crate::stats::RetryStats;

/// Everything a request needs from its layer, behind one `Arc`.
#[derive(Clone)]
pub(crate) struct Shared<C> {
    pub(crate) policy: RetryPolicy,
    pub(crate) classifier: C,
    pub(crate) budget: Option<Arc<dyn RetryBudget>>,
    pub(crate) limit: Option<SharedLimit>,
    pub(crate) stats: RetryStats,
    /// `policy.retries_enabled()`, read on every request.
    pub(crate) retries: bool,
    /// `policy.retry_on.reads_classification()`: whether a response must be
    /// classified to decide on a retry.
    pub(crate) classify: bool,
    /// Whether a response below 500 must be classified too: the classifier
    /// may call it a 5xx failure (it does not promise
    /// [`server_errors_by_status`](Classify::server_errors_by_status)).
    pub(crate) classify_below_500: bool,
    /// Whether a response below 400 can be retried: a gRPC status or
    /// `x-envoy-ratelimited` in its headers, a listed retriable status below
    /// 400, or a classifier that may call it a 5xx failure.
    pub(crate) retries_below_400: bool,
}

impl<C: Classify> Shared<C> {
    pub(crate) fn new(mut policy: RetryPolicy, classifier: C) -> Self {
        policy.per_try_timeout = nonzero(policy.per_try_timeout);
        policy.timeout = nonzero(policy.timeout);
        let retries = policy.retries_enabled();
        let classify = policy.retry_on.reads_classification();
        let classify_below_500 = !classifier.server_errors_by_status();
        let retries_below_400 = policy.retry_on.reads_success() || (classify && classify_below_500);
        Shared {
            policy,
            classify_below_500,
            retries_below_400,
            classifier,
            budget: None,
            limit: None,
            stats: RetryStats::default(),
            retries,
            classify,
        }
    }
}

impl<C> Shared<C> {
    /// Takes a retry slot from the limit and the budget, or `None` (Envoy's
    /// retry overflow).
    pub(crate) fn try_retry(&self) -> Option<RetryPermit> {
        let limit = match &self.limit {
            Some(limit) => Some(limit.try_acquire()?),
            None => None,
        };
        let budget = match &self.budget {
            Some(budget) if budget.try_retry() => Some(budget.clone()),
            Some(_) => return None, // `limit` is dropped, freeing its slot
            None => None,
        };
        Some(RetryPermit {
            budget,
            _limit: limit,
        })
    }
}

impl<C> fmt::Debug for Shared<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("policy", &self.policy)
            .field("budget", &self.budget)
            .field("limit", &self.limit)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// What one [`Retry`](super::Retry) shares with its clones and its
/// requests: its layer's state, and a clone of the service it wrapped, from
/// which a request that retries takes a service of its own.
///
/// Keeping that clone here spares every request a clone of the inner service
/// (an allocation, for a boxed one): the first attempt is called on the
/// layer's own ready service, and only a retry or a hedge makes a clone.
pub(crate) struct Local<S, C> {
    pub(crate) shared: Arc<Shared<C>>,
    /// Locked only so that a `Send` service makes a `Sync` state (requests
    /// hold this across threads); taken once per retrying request, never on
    /// the success path.
    proto: Mutex<S>,
}

impl<S: Clone, C> Local<S, C> {
    pub(crate) fn new(shared: Arc<Shared<C>>, proto: S) -> Self {
        Local {
            shared,
            proto: Mutex::new(proto),
        }
    }

    /// A fresh clone of the wrapped service, for a request's retries.
    pub(crate) fn service(&self) -> S {
        self.proto
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl<S, C> fmt::Debug for Local<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.shared.fmt(f)
    }
}

/// One request's hold on its layer: counts the request as active in the
/// budget while it lives.
pub(crate) struct Handle<S, C> {
    pub(crate) local: Arc<Local<S, C>>,
}

impl<S, C> Handle<S, C> {
    pub(crate) fn new(local: Arc<Local<S, C>>) -> Self {
        if let Some(budget) = &local.shared.budget {
            budget.request_started();
        }
        Handle { local }
    }

    /// The layer's shared state.
    #[inline]
    pub(crate) fn shared(&self) -> &Shared<C> {
        &self.local.shared
    }
}

impl<S, C> Drop for Handle<S, C> {
    fn drop(&mut self) {
        if let Some(budget) = &self.local.shared.budget {
            budget.request_ended();
        }
    }
}

/// A granted retry: a slot of the retry limit and of the budget, held through
/// the backoff and the attempt.
pub(crate) struct RetryPermit {
    budget: Option<Arc<dyn RetryBudget>>,
    _limit: Option<Permit>,
}

impl Drop for RetryPermit {
    fn drop(&mut self) {
        if let Some(budget) = &self.budget {
            budget.retry_ended();
        }
    }
}
