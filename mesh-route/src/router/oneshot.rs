use std::fmt;
use std::future::{Future, Ready, ready};
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
    /// The [`Router`](super::Router) sends each request to a clone of its
    /// route's service so: the builder's route services are always ready,
    /// and calling them at once spares moving the request into the future
    /// and out again.
    pub(crate) struct ReadyOneshot<S, Req>
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
        NotReady { #[pin] oneshot: Oneshot<S, Req> },
        Failed { #[pin] error: Ready<Result<S::Response, S::Error>> },
    }
}

impl<S: Service<Req>, Req> ReadyOneshot<S, Req> {
    /// Sends `req` to `service`: called now if ready now, else when ready.
    #[inline]
    pub(crate) fn new(mut service: S, req: Req) -> Self {
        let state = match service.poll_ready(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(Ok(())) => State::Called {
                future: service.call(req),
            },
            Poll::Ready(Err(e)) => State::Failed {
                error: ready(Err(e)),
            },
            Poll::Pending => State::NotReady {
                oneshot: Oneshot::new(service, req),
            },
        };
        ReadyOneshot { state }
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
            StateProj::NotReady { oneshot } => oneshot.poll(cx),
            StateProj::Failed { error } => error.poll(cx),
        }
    }
}

impl<S: Service<Req>, Req> fmt::Debug for ReadyOneshot<S, Req> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadyOneshot").finish_non_exhaustive()
    }
}
