//! One attempt: the inner service's future raced with the per-try timeout.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use mesh_core::context::{EndpointError, EndpointSlot};
use mesh_core::{BoxError, MeshError};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep, sleep_until};

use super::shared::RetryPermit;

pin_project! {
    /// The inner future of one attempt, its per-try timer and the retry slot
    /// it holds (given back when the attempt is dropped).
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
    /// `now` must be `Some` when `per_try` is; `slot` is where the balancer
    /// writes the endpoint of this attempt (when retries are on).
    #[inline]
    pub(crate) fn new(
        fut: F,
        per_try: Option<Duration>,
        now: Option<Instant>,
        permit: Option<RetryPermit>,
        slot: Option<EndpointSlot>,
    ) -> Self {
        let timer = match (per_try, now) {
            (Some(d), Some(now)) => Some(sleep_until(now + d)),
            (Some(d), None) => Some(sleep_until(Instant::now() + d)),
            _ => None,
        };
        TryFuture {
            fut,
            timer,
            per_try: per_try.unwrap_or_default(),
            permit,
            slot,
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
            let timeout = MeshError::PerTryTimeout(*this.per_try);
            // Name the endpoint that did not answer, so a retry avoids it.
            return Poll::Ready(Err(match this.slot.as_ref().and_then(EndpointSlot::get) {
                Some(addr) => EndpointError::new(addr, timeout).into(),
                None => timeout.into(),
            }));
        }
        Poll::Pending
    }
}
