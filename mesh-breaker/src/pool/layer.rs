//! The pool limits, their shared counters, and the layer.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use mesh_core::limit::{Permit, SharedLimit};
use mesh_core::{MeshError, Overload};
use tower::Layer;

use super::service::ConnectionPool;

/// The thresholds of one cluster. [`Default`] is Istio's (every limit
/// 2³²−1); [`PoolLimits::envoy`] is Envoy's (1024 connections, pending and
/// requests, 3 retries).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolLimits {
    /// Concurrent requests (`http.http2MaxRequests`, Envoy `max_requests`).
    pub max_requests: usize,
    /// Requests waiting for the balancer to be ready
    /// (`http.http1MaxPendingRequests`, Envoy `max_pending_requests`).
    pub max_pending_requests: usize,
    /// Concurrent retries (`http.maxRetries`, Envoy `max_retries`).
    pub max_retries: usize,
    /// Connections to all endpoints (`tcp.maxConnections`, Envoy
    /// `max_connections`).
    pub max_connections: usize,
}

/// Istio's "unlimited": 2³²−1.
const ISTIO_MAX: usize = u32::MAX as usize;

impl Default for PoolLimits {
    fn default() -> Self {
        PoolLimits {
            max_requests: ISTIO_MAX,
            max_pending_requests: ISTIO_MAX,
            max_retries: ISTIO_MAX,
            max_connections: ISTIO_MAX,
        }
    }
}

impl PoolLimits {
    /// Envoy's defaults: 1024 / 1024 / 3 / 1024.
    pub fn envoy() -> Self {
        PoolLimits {
            max_requests: 1024,
            max_pending_requests: 1024,
            max_retries: 3,
            max_connections: 1024,
        }
    }
}

pub(crate) struct PoolShared {
    pub(crate) requests: SharedLimit,
    pub(crate) pending: SharedLimit,
    retries: SharedLimit,
    connections: SharedLimit,
    pub(crate) requests_overflow: AtomicU64,
    pub(crate) pending_overflow: AtomicU64,
    retries_overflow: AtomicU64,
    connections_overflow: AtomicU64,
}

/// Applies one cluster's [`PoolLimits`]: every [`ConnectionPool`] made by
/// this layer (or its clones) shares the same counters.
#[derive(Clone)]
pub struct ConnectionPoolLayer {
    pub(crate) shared: Arc<PoolShared>,
}

impl ConnectionPoolLayer {
    /// A new set of counters with these limits.
    pub fn new(limits: PoolLimits) -> Self {
        Self::with_retry_limit(limits.clone(), SharedLimit::new(limits.max_retries))
    }

    /// As [`new`](Self::new), counting retries in `retries`, a limit the retry
    /// layer already holds (its maximum is set to `limits.max_retries`).
    pub fn with_retry_limit(limits: PoolLimits, retries: SharedLimit) -> Self {
        retries.set_max(limits.max_retries);
        ConnectionPoolLayer {
            shared: Arc::new(PoolShared {
                requests: SharedLimit::new(limits.max_requests),
                pending: SharedLimit::new(limits.max_pending_requests),
                retries,
                connections: SharedLimit::new(limits.max_connections),
                requests_overflow: AtomicU64::new(0),
                pending_overflow: AtomicU64::new(0),
                retries_overflow: AtomicU64::new(0),
                connections_overflow: AtomicU64::new(0),
            }),
        }
    }

    /// Changes the limits in place (a config reload); requests in flight keep
    /// their slots.
    pub fn set_limits(&self, limits: &PoolLimits) {
        let s = &self.shared;
        s.requests.set_max(limits.max_requests);
        s.pending.set_max(limits.max_pending_requests);
        s.retries.set_max(limits.max_retries);
        s.connections.set_max(limits.max_connections);
    }

    /// The counter of concurrent retries, to share with the retry layer.
    pub fn retry_limit(&self) -> SharedLimit {
        self.shared.retries.clone()
    }

    /// The counter of connections, to share with the endpoints' connector.
    pub fn connection_limit(&self) -> SharedLimit {
        self.shared.connections.clone()
    }

    /// Takes a retry slot, or says why not (and counts the overflow,
    /// `upstream_rq_retry_overflow`).
    pub fn try_acquire_retry(&self) -> Result<Permit, MeshError> {
        self.shared.retries.try_acquire().ok_or_else(|| {
            self.shared.retries_overflow.fetch_add(1, Ordering::Relaxed);
            tracing::debug!("connection pool: retry refused, max retries reached");
            MeshError::Overloaded(Overload::MaxRetries)
        })
    }

    /// Takes a connection slot, or says why not (and counts the overflow,
    /// `upstream_cx_overflow`).
    pub fn try_acquire_connection(&self) -> Result<Permit, MeshError> {
        self.shared.connections.try_acquire().ok_or_else(|| {
            self.shared
                .connections_overflow
                .fetch_add(1, Ordering::Relaxed);
            tracing::debug!("connection pool: connection refused, max connections reached");
            MeshError::Overloaded(Overload::MaxConnections)
        })
    }

    /// The counters now.
    pub fn stats(&self) -> PoolStats {
        let s = &self.shared;
        PoolStats {
            requests_active: s.requests.in_flight(),
            pending_active: s.pending.in_flight(),
            retries_active: s.retries.in_flight(),
            connections_active: s.connections.in_flight(),
            requests_overflow: s.requests_overflow.load(Ordering::Relaxed),
            pending_overflow: s.pending_overflow.load(Ordering::Relaxed),
            retries_overflow: s.retries_overflow.load(Ordering::Relaxed),
            connections_overflow: s.connections_overflow.load(Ordering::Relaxed),
        }
    }
}

impl fmt::Debug for ConnectionPoolLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionPoolLayer")
            .field("stats", &self.stats())
            .finish()
    }
}

impl<S> Layer<S> for ConnectionPoolLayer {
    type Service = ConnectionPool<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ConnectionPool::new(inner, self.shared.clone())
    }
}

/// A snapshot of a cluster's pool counters (Envoy's `upstream_rq_active`,
/// `upstream_rq_pending_overflow`… and `circuit_breakers.*` gauges).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Requests admitted and not yet answered.
    pub requests_active: usize,
    /// Requests waiting for the balancer.
    pub pending_active: usize,
    /// Retries in flight.
    pub retries_active: usize,
    /// Connections open.
    pub connections_active: usize,
    /// Requests refused by `max_requests`.
    pub requests_overflow: u64,
    /// Requests refused by `max_pending_requests`.
    pub pending_overflow: u64,
    /// Retries refused by `max_retries`.
    pub retries_overflow: u64,
    /// Connections refused by `max_connections`.
    pub connections_overflow: u64,
}
