//! [`Retry`], the service.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Extensions, Request, Response};
use http_body::Body;
use mesh_core::BoxError;
use mesh_core::classify::{Classify, GrpcClassifier};
use mesh_core::context::{Attempt, AttemptDeadline, EndpointSlot, RequestContext};
use tower::Service;

use super::future::{ResponseFuture, RetryState, earliest, mark_attempt_header};
use super::head::Head;
use super::shared::{Handle, Local, Shared};
use crate::body::{BodySource, RetryBody};
use crate::deadline;
use crate::policy::RetryPolicy;
use crate::stats::RetryStats;

/// Retries requests to `S` by a [`RetryPolicy`], with per-try and overall
/// timeouts, a budget and hedging. See the [module docs](crate::retry).
///
/// `S` takes requests whose body is a [`RetryBody`] and must be `Clone`: the
/// layer keeps a clone of the service it wrapped, and a request that retries
/// (or hedges) takes a fresh clone of it, waiting for it to be ready before
/// each further attempt. The first attempt is called on the layer's own
/// service, which `poll_ready` drove to readiness, so a request that is not
/// retried clones nothing.
pub struct Retry<S, C = GrpcClassifier> {
    inner: S,
    local: Arc<Local<S, C>>,
}

impl<S: Clone> Retry<S> {
    /// Wraps `inner` with `policy` and the default gRPC-aware classifier.
    pub fn new(inner: S, policy: RetryPolicy) -> Self {
        Retry::from_shared(inner, Arc::new(Shared::new(policy, GrpcClassifier::new())))
    }
}

impl<S, C> Retry<S, C> {
    pub(crate) fn from_shared(inner: S, shared: Arc<Shared<C>>) -> Self
    where
        S: Clone,
    {
        Retry {
            local: Arc::new(Local::new(shared, inner.clone())),
            inner,
        }
    }

    /// The counters of this layer.
    pub fn stats(&self) -> RetryStats {
        self.local.shared.stats.clone()
    }

    /// The policy.
    pub fn policy(&self) -> &RetryPolicy {
        &self.local.shared.policy
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably. First attempts go to it; retries go to
    /// clones of the service the layer wrapped, which a change made here
    /// does not reach.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone, C> Clone for Retry<S, C> {
    fn clone(&self) -> Self {
        Retry {
            inner: self.inner.clone(),
            local: self.local.clone(),
        }
    }
}

impl<S: fmt::Debug, C> fmt::Debug for Retry<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Retry")
            .field("inner", &self.inner)
            .field("shared", &self.local)
            .finish()
    }
}

impl<S, C, B, RB> Service<Request<B>> for Retry<S, C>
where
    S: Service<Request<RetryBody<B>>, Response = Response<RB>> + Clone,
    S::Error: Into<BoxError>,
    B: Body,
    C: Classify,
{
    type Response = Response<RB>;
    type Error = BoxError;
    type Future = ResponseFuture<S, B, RB, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let shared = &*self.local.shared;
        let policy = &shared.policy;
        let timeout = deadline::effective(
            policy.timeout,
            policy.deadline_header.as_ref(),
            req.headers(),
        );
        // The clock is read once, and only when a timeout needs it.
        let now =
            (timeout.is_some() || policy.per_try_timeout.is_some()).then(tokio::time::Instant::now);
        // A timeout too long to add to the clock is no timeout (never a panic).
        let per_try_at = now
            .zip(policy.per_try_timeout)
            .and_then(|(now, d)| now.checked_add(d));
        let overall = now.zip(timeout).and_then(|(now, t)| now.checked_add(t));
        let handle = Handle::new(self.local.clone());
        // Endpoint layers count an attempt dropped at this instant as a
        // timeout of their endpoint (outlier detection).
        let deadline = match policy.attempt_deadline {
            true => earliest(per_try_at, overall).map(AttemptDeadline),
            false => None,
        };

        if !shared.retries {
            // Nothing to keep: the request goes down as it came.
            mark_attempt_header(
                req.headers_mut(),
                Attempt::FIRST,
                policy.attempt_count_header,
            );
            first_context(req.extensions_mut(), None, deadline);
            let first = self.inner.call(req.map(RetryBody::new));
            return ResponseFuture::new(handle, first, per_try_at, overall, timeout, None, None);
        }
        // The head is copied before this attempt's header and context go in,
        // so the copy does not clone them; each retry sets its own.
        let head = Head::of(&req);
        let (parts, body) = req.into_parts();
        let (first_body, source) = BodySource::new(body, policy.replay_cap);
        let mut req = Request::from_parts(parts, first_body);
        // The first attempt goes to this ready service; a retry takes a clone
        // of the layer's when it needs one.
        let state = Box::new(RetryState {
            svc: None,
            head,
            body: source,
            attempt: Attempt::FIRST,
            retries_left: policy.attempts,
            tried: None,
        });
        mark_attempt_header(
            req.headers_mut(),
            Attempt::FIRST,
            policy.attempt_count_header,
        );
        // The slot is read only when a per-try timeout drops an attempt that
        // may be retried.
        let slot =
            (policy.attempt_endpoint && policy.per_try_timeout.is_some()).then(EndpointSlot::new);
        first_context(req.extensions_mut(), slot.as_ref(), deadline);
        let first = self.inner.call(req);
        ResponseFuture::new(
            handle,
            first,
            per_try_at,
            overall,
            timeout,
            slot,
            Some(state),
        )
    }
}

/// Tells the layers below about the first attempt. It needs a context only
/// for what it tells them (a deadline, a slot for the endpoint): a request
/// without one reads as the first attempt, which spares http's extensions map
/// (three allocations) on the plain path.
#[inline]
fn first_context(
    extensions: &mut Extensions,
    slot: Option<&EndpointSlot>,
    deadline: Option<AttemptDeadline>,
) {
    if slot.is_some() || deadline.is_some() {
        let ctx = RequestContext::get_mut(extensions);
        ctx.attempt = Attempt::FIRST;
        ctx.slot = slot.cloned();
        ctx.deadline = deadline;
    } else if let Some(ctx) = extensions.get_mut::<RequestContext>() {
        // An outer layer's context: this is our first attempt.
        ctx.attempt = Attempt::FIRST;
    }
}
