//! [`ResponseFuture`] of [`Shared`](super::Shared).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use mesh_core::BoxError;
use pin_project_lite::pin_project;
use tower::Service;

use super::service::State;

pin_project! {
    /// The response future of [`Shared`](super::Shared): the inner service's,
    /// or, when the service was no longer ready at `call`, a wait for its
    /// readiness and then its call.
    pub struct ResponseFuture<S, R>
    where
        S: Service<R>,
    {
        #[pin]
        kind: Kind<S, R>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<S, R>
    where
        S: Service<R>,
    {
        Called { #[pin] future: S::Future },
        Waiting { state: Arc<State<S>>, req: Option<R> },
        Failed { error: Option<BoxError> },
    }
}

impl<S: Service<R>, R> ResponseFuture<S, R> {
    pub(super) fn called(future: S::Future) -> Self {
        ResponseFuture {
            kind: Kind::Called { future },
        }
    }

    pub(super) fn waiting(state: Arc<State<S>>, req: R) -> Self {
        ResponseFuture {
            kind: Kind::Waiting {
                state,
                req: Some(req),
            },
        }
    }

    pub(super) fn failed(error: BoxError) -> Self {
        ResponseFuture {
            kind: Kind::Failed { error: Some(error) },
        }
    }
}

impl<S, R> Future for ResponseFuture<S, R>
where
    S: Service<R>,
    S::Error: Into<BoxError>,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let future = match self.as_mut().project().kind.project() {
                KindProj::Called { future } => return future.poll(cx).map_err(Into::into),
                KindProj::Failed { error } => {
                    return Poll::Ready(Err(error
                        .take()
                        .unwrap_or_else(|| "polled after completion".into())));
                }
                KindProj::Waiting { state, req } => {
                    let mut locked = state.lock();
                    if let Err(e) = ready!(state.poll_ready(&mut locked, cx.waker())) {
                        return Poll::Ready(Err(e));
                    }
                    let Some(req) = req.take() else {
                        return Poll::Ready(Err("polled after completion".into()));
                    };
                    State::call(&mut locked, req)
                }
            };
            self.as_mut().project().kind.set(Kind::Called { future });
        }
    }
}

impl<S: Service<R>, R> fmt::Debug for ResponseFuture<S, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
