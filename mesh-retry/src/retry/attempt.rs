//! One attempt: the inner service's future, when it times out, and the slots
//! it holds.
//!
//! The primary attempt is timed by the request's one timer (see
//! [`ResponseFuture`](super::ResponseFuture)); a hedged attempt running
//! beside it has its own, in a [`TryFuture`].

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use mesh_core::context::{EndpointError, EndpointSlot};
use mesh_core::{BoxError, MeshError};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep, sleep_until};

use super::shared::RetryPermit;

/// An attempt just started: the inner future and what goes with it.
pub(crate) struct Started<F> {
    pub(crate) fut: F,
    /// When its per-try timeout expires.
    pub(crate) per_try_at: Option<Instant>,
    /// The retry slot it holds (given back when the attempt ends).
    pub(crate) permit: Option<RetryPermit>,
    /// Where the balancer writes its endpoint.
    pub(crate) slot: Option<EndpointSlot>,
}

/// The error of an attempt whose per-try timeout expired, naming the
/// endpoint that did not answer (when known), so a retry avoids it.
pub(crate) fn per_try_error(per_try: Duration, slot: Option<&EndpointSlot>) -> BoxError {
    let timeout = MeshError::PerTryTimeout(per_try);
    match slot.and_then(EndpointSlot::get) {
        Some(addr) => EndpointError::new(addr, timeout).into(),
        None => timeout.into(),
    }
}

pin_project! {
    /// A hedged attempt: the inner future raced with its own per-try timer.
    pub(crate) struct TryFuture<F> {
        #[pin]
        fut: F,
        #[pin]
        timer: Option<Sleep>,
        per_try: Duration,
        permit: Option<RetryPermit>,
        slot: Option<EndpointSlot>,
    }
}

impl<F> TryFuture<F> {
    pub(crate) fn new(started: Started<F>, per_try: Duration) -> Self {
        TryFuture {
            fut: started.fut,
            timer: started.per_try_at.map(sleep_until),
            per_try,
            permit: started.permit,
            slot: started.slot,
        }
    }
}

impl<F, T, E> Future for TryFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(result) = this.fut.poll(cx) {
            return Poll::Ready(result.map_err(Into::into));
        }
        if let Some(timer) = this.timer.as_pin_mut()
            && timer.poll(cx).is_ready()
        {
            return Poll::Ready(Err(per_try_error(*this.per_try, this.slot.as_ref())));
        }
        Poll::Pending
    }
}
