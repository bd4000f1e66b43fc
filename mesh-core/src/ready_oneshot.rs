//! [`ReadyOneshot`]: one request to a service of its own, called at once
//! when the service is ready at once.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use pin_project_lite::pin_project;
use tower::Service;
use tower::util::Oneshot;

pin_project! {
    /// One request to a service of its own (a clone), as tower's
    /// [`Oneshot`], but called at once when the service is ready at once.
    ///
    /// [`ReadyOneshot::new`] asks the service's `poll_ready` once — with a
    /// no-op waker, as there is no task at hand — and calls it if it is
    /// ready; otherwise the future drives it to readiness as `Oneshot` does,
    /// asking again with the task's waker before it waits. A readiness error
    /// is the future's output. The service is never called unready.
    ///
    /// Calling at once spares moving the request into the future and out
    /// again. The future is as small as the service's own: the rare case of
    /// a service not ready at once waits, with the request, in a box.
    /// Routers send each request to a clone of an always-ready service this
    /// way, and a caller that asked for readiness itself builds the future
    /// from what it got ([`called`](Self::called),
    /// [`failed`](Self::failed), [`waiting`](Self::waiting)).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use mesh_core::ReadyOneshot;
    /// use tower::service_fn;
    ///
    /// let double = service_fn(|n: u32| async move { Ok::<_, std::convert::Infallible>(n * 2) });
    /// assert_eq!(ReadyOneshot::new(double, 21).await, Ok(42));
    /// # }
    /// ```
    pub struct ReadyOneshot<S, Req>
    where
        S: Service<Req>,
    {
        #[pin]
        state: State<S, Req>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, Req>
    where
        S: Service<Req>,
    {
        Called { #[pin] future: S::Future },
        NotReady { oneshot: Pin<Box<Oneshot<S, Req>>> },
        Failed { error: Option<S::Error> },
    }
}

impl<S: Service<Req>, Req> ReadyOneshot<S, Req> {
    /// Sends `req` to `service`: called now if ready now, else when ready.
    #[inline]
    pub fn new(mut service: S, req: Req) -> Self {
        match service.poll_ready(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(Ok(())) => Self::called(service.call(req)),
            Poll::Ready(Err(e)) => Self::failed(e),
            Poll::Pending => Self::waiting(service, req),
        }
    }

    /// The future of a call already made on a ready service.
    pub fn called(future: S::Future) -> Self {
        ReadyOneshot {
            state: State::Called { future },
        }
    }

    /// A service that failed its readiness: the error is the output.
    pub fn failed(error: S::Error) -> Self {
        ReadyOneshot {
            state: State::Failed { error: Some(error) },
        }
    }

    /// A service not ready yet: driven to readiness (as `Oneshot` does),
    /// then called with `req`. They wait in a box of their own, so that
    /// the future stays as small as the service's.
    pub fn waiting(service: S, req: Req) -> Self {
        ReadyOneshot {
            state: State::NotReady {
                oneshot: Box::pin(Oneshot::new(service, req)),
            },
        }
    }

    /// Whether the service was called at once.
    pub fn is_called(&self) -> bool {
        matches!(self.state, State::Called { .. })
    }
}

impl<S, Req> Future for ReadyOneshot<S, Req>
where
    S: Service<Req>,
{
    type Output = Result<S::Response, S::Error>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Called { future } => future.poll(cx),
            StateProj::NotReady { oneshot } => oneshot.as_mut().poll(cx),
            StateProj::Failed { error } => match error.take() {
                Some(error) => Poll::Ready(Err(error)),
                None => panic!("ReadyOneshot polled after completion"),
            },
        }
    }
}

impl<S: Service<Req>, Req> fmt::Debug for ReadyOneshot<S, Req> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadyOneshot").finish_non_exhaustive()
    }
}
