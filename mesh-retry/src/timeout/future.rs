//! [`ResponseFuture`] of [`Timeout`](super::Timeout).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use mesh_core::{BoxError, MeshError};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep, sleep_until};

pin_project! {
    /// The response future of [`Timeout`](super::Timeout).
    ///
    /// The timer is made when the inner future first returns `Pending`: a
    /// response at hand on the first poll never touches the timer wheel or
    /// the runtime's handle (`tower::timeout` makes its `Sleep` in `call`).
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        #[pin]
        sleep: Option<Sleep>,
        // When the timeout started, and the effective timeout; `None`: no
        // timeout applies (none configured, none from the caller). The
        // deadline is computed when the timer is made, which an answer at
        // hand never needs.
        timing: Option<(Instant, Duration)>,
    }
}

impl<F> ResponseFuture<F> {
    #[inline]
    pub(super) fn new(inner: F, timing: Option<(Instant, Duration)>) -> Self {
        ResponseFuture {
            inner,
            sleep: None,
            timing,
        }
    }
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let Poll::Ready(result) = this.inner.poll(cx) {
            return Poll::Ready(result.map_err(Into::into));
        }
        let Some((start, timeout)) = *this.timing else {
            return Poll::Pending;
        };
        if this.sleep.is_none() {
            // A timeout too long to add to the clock is no timeout.
            match start.checked_add(timeout) {
                Some(at) => this.sleep.set(Some(sleep_until(at))),
                None => return Poll::Pending,
            }
        }
        if let Some(sleep) = this.sleep.as_pin_mut() {
            ready!(sleep.poll(cx));
        }
        Poll::Ready(Err(MeshError::RequestTimeout(timeout).into()))
    }
}
