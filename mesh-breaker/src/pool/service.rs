//! The pool-limit service.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use mesh_core::limit::Permit;
use mesh_core::{BoxError, Overload};
use tower::Service;

use super::future::ResponseFuture;
use super::layer::PoolShared;

/// A cluster's service under its pool limits: admits a request in
/// `poll_ready` if a request slot is free (and, while the inner service is not
/// ready, a pending slot), and otherwise is ready at once with a call that
/// fails with [`MeshError::Overloaded`](mesh_core::MeshError::Overloaded)
/// (503 `UO`), without calling the inner service.
///
/// Clones share the counters but not an admission: each clone takes its own
/// slot in `poll_ready`.
pub struct ConnectionPool<S> {
    inner: S,
    shared: Arc<PoolShared>,
    request: Option<Permit>,
    pending: Option<Permit>,
    refused: Option<Overload>,
}

impl<S> ConnectionPool<S> {
    pub(crate) fn new(inner: S, shared: Arc<PoolShared>) -> Self {
        ConnectionPool {
            inner,
            shared,
            request: None,
            pending: None,
            refused: None,
        }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, consuming the wrapper.
    pub fn into_inner(self) -> S {
        self.inner
    }

    fn refuse(&mut self, why: Overload) -> Poll<Result<(), BoxError>> {
        let counter = match why {
            Overload::MaxPendingRequests => &self.shared.pending_overflow,
            _ => &self.shared.requests_overflow,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(reason = ?why, "connection pool: request refused (503 UO)");
        self.request = None;
        self.pending = None;
        self.refused = Some(why);
        Poll::Ready(Ok(()))
    }
}

impl<S: Clone> Clone for ConnectionPool<S> {
    fn clone(&self) -> Self {
        ConnectionPool::new(self.inner.clone(), self.shared.clone())
    }
}

impl<S: fmt::Debug> fmt::Debug for ConnectionPool<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionPool")
            .field("inner", &self.inner)
            .field("admitted", &self.request.is_some())
            .field("refused", &self.refused)
            .finish()
    }
}

impl<S, R> Service<R> for ConnectionPool<S>
where
    S: Service<R>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if self.refused.is_some() {
            return Poll::Ready(Ok(()));
        }
        if self.request.is_none() {
            match self.shared.requests.try_acquire() {
                Some(permit) => self.request = Some(permit),
                None => return self.refuse(Overload::MaxRequests),
            }
        }
        match self.inner.poll_ready(cx) {
            Poll::Ready(Ok(())) => {
                self.pending = None;
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => {
                self.pending = None;
                self.request = None;
                Poll::Ready(Err(e.into()))
            }
            Poll::Pending => {
                if self.pending.is_none() {
                    match self.shared.pending.try_acquire() {
                        Some(permit) => self.pending = Some(permit),
                        None => return self.refuse(Overload::MaxPendingRequests),
                    }
                }
                Poll::Pending
            }
        }
    }

    fn call(&mut self, req: R) -> Self::Future {
        if let Some(why) = self.refused.take() {
            return ResponseFuture::overflow(why);
        }
        // Called without a ready poll (a contract breach): take a slot now or
        // refuse, rather than pass the limit.
        match self
            .request
            .take()
            .or_else(|| self.shared.requests.try_acquire())
        {
            Some(permit) => ResponseFuture::admitted(self.inner.call(req), permit),
            None => {
                self.shared
                    .requests_overflow
                    .fetch_add(1, Ordering::Relaxed);
                ResponseFuture::overflow(Overload::MaxRequests)
            }
        }
    }
}
