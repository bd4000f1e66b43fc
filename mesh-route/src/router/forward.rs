use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use http::{Request, Response};
use mesh_core::BoxError;
use pin_project_lite::pin_project;
use tower::Service;

use super::ReadyOneshot;
use crate::headers;
use crate::rewrite::RedirectService;
use crate::split::Split;

/// What a route does at its end: split over its destinations' services, or
/// answer with a redirect. The proxy may wrap it in the route's own policies
/// (a timeout) with [`RouterBuilder::build_with`](crate::RouterBuilder::build_with).
///
/// Always ready: the destination's service is asked for readiness in
/// `call` and, when it is not ready at once, driven to readiness in the
/// response future, as [`Split`] does. The builder makes a route
/// with one destination and no header operations of its own a
/// [`Forward::single`], which behaves as that `Split` of one without its pick
/// and header future.
pub struct Forward<D> {
    kind: ForwardKind<D>,
}

enum ForwardKind<D> {
    /// One destination with no header operations of its own: no pick, no
    /// per-destination header future. Held as is: the router clones the
    /// route's service for each request, and a ready destination is called
    /// in place, so a request clones it once when it is ready.
    Single(D),
    Split(Split<D>),
    Redirect(RedirectService<()>),
}

impl<D> Forward<D> {
    /// Forwards through `split`.
    pub fn split(split: Split<D>) -> Self {
        Forward {
            kind: ForwardKind::Split(split),
        }
    }

    /// Forwards to `destination` alone: called in place when it is ready at
    /// once; otherwise the instance asked goes, with the request, into the
    /// response future, which drives it to readiness (it may hold a place in
    /// a queue, such as a semaphore's), and a clone takes its place here.
    pub fn single(destination: D) -> Self {
        Forward {
            kind: ForwardKind::Single(destination),
        }
    }

    /// Answers with `redirect`.
    pub fn redirect<B>(redirect: RedirectService<B>) -> Self {
        Forward {
            kind: ForwardKind::Redirect(redirect.cast()),
        }
    }

    /// Whether this route answers with a redirect.
    pub fn is_redirect(&self) -> bool {
        matches!(self.kind, ForwardKind::Redirect(_))
    }
}

impl<D: Clone> Clone for Forward<D> {
    fn clone(&self) -> Self {
        Forward {
            kind: match &self.kind {
                ForwardKind::Single(d) => ForwardKind::Single(d.clone()),
                ForwardKind::Split(s) => ForwardKind::Split(s.clone()),
                ForwardKind::Redirect(r) => ForwardKind::Redirect(r.clone()),
            },
        }
    }
}

impl<D> fmt::Debug for Forward<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ForwardKind::Single(_) => f.debug_tuple("Forward::Single").finish_non_exhaustive(),
            ForwardKind::Split(s) => f.debug_tuple("Forward::Split").field(s).finish(),
            ForwardKind::Redirect(r) => f.debug_tuple("Forward::Redirect").field(r).finish(),
        }
    }
}

impl<D, ReqBody, ResBody> Service<Request<ReqBody>> for Forward<D>
where
    D: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    D::Error: Into<BoxError>,
    ResBody: Default,
{
    type Response = Response<ResBody>;
    type Error = BoxError;
    type Future = ForwardFuture<D, Request<ReqBody>>;

    /// Always ready, as [`Split`].
    #[inline]
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let kind = match &mut self.kind {
            // Asked once with a no-op waker (there is no task at hand) and
            // called in place when ready, as most destinations always are.
            // One that is not goes with the request into the future, which
            // asks again with the task's waker: the instance asked keeps any
            // place it took in a queue (a clone would queue behind it, and
            // the place, given a no-op waker, would never be taken up).
            ForwardKind::Single(d) => FwdKind::Single {
                future: match d.poll_ready(&mut Context::from_waker(Waker::noop())) {
                    Poll::Ready(Ok(())) => ReadyOneshot::called(d.call(req)),
                    Poll::Ready(Err(e)) => ReadyOneshot::failed(e),
                    Poll::Pending => {
                        let fresh = d.clone();
                        ReadyOneshot::waiting(std::mem::replace(d, fresh), req)
                    }
                },
            },
            ForwardKind::Split(split) => FwdKind::Split {
                future: split.call(req),
            },
            ForwardKind::Redirect(r) => FwdKind::Redirect {
                response: Some(r.respond(&req)),
            },
        };
        ForwardFuture { kind }
    }
}

pin_project! {
    /// The response future of [`Forward`].
    pub struct ForwardFuture<D, Req>
    where
        D: Service<Req>,
    {
        #[pin]
        kind: FwdKind<D, Req>,
    }
}

pin_project! {
    #[project = FwdProj]
    enum FwdKind<D, Req>
    where
        D: Service<Req>,
    {
        Single { #[pin] future: ReadyOneshot<D, Req> },
        Split { #[pin] future: headers::ResponseFuture<ReadyOneshot<D, Req>> },
        Redirect { response: Option<D::Response> },
    }
}

impl<D, ReqBody, ResBody> Future for ForwardFuture<D, Request<ReqBody>>
where
    D: Service<Request<ReqBody>, Response = Response<ResBody>>,
    D::Error: Into<BoxError>,
{
    type Output = Result<Response<ResBody>, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            FwdProj::Single { future } => future.poll(cx).map_err(Into::into),
            FwdProj::Split { future } => future.poll(cx).map_err(Into::into),
            FwdProj::Redirect { response } => Poll::Ready(
                response
                    .take()
                    .ok_or_else(|| "response future polled after completion".into()),
            ),
        }
    }
}

impl<D: Service<Req>, Req> fmt::Debug for ForwardFuture<D, Req> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ForwardFuture").finish_non_exhaustive()
    }
}
