use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use http::header::CONTENT_TYPE;
use http::{HeaderValue, Response};
use mesh_core::classify::GrpcCode;
use mesh_core::{BoxError, MeshError, ResponseFlag};
use pin_project_lite::pin_project;
use tokio::time::Sleep;
use tower::Service;
use tower::util::Oneshot;

use crate::config::AbortStatus;
use crate::util::add_response_flag;

pin_project! {
    /// The response future of [`Fault`](super::Fault): the inner future, an
    /// abort answered at once, or a delay followed by either.
    pub struct ResponseFuture<S, Req>
    where
        S: Service<Req>,
    {
        #[pin]
        kind: Kind<S, Req>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<S, Req>
    where
        S: Service<Req>,
    {
        Inner { #[pin] future: S::Future },
        Abort { status: AbortStatus, delayed: bool },
        // Boxed: a timer, a service and a request are large, and only delayed
        // requests should pay for moving them (the no-fault path stays small).
        Delay {
            sleep: Pin<Box<Sleep>>,
            pending: Option<Box<(S, Req)>>,
            abort: Option<AbortStatus>,
        },
        AfterDelay { future: Pin<Box<Oneshot<S, Req>>> },
    }
}

impl<S: Service<Req>, Req> ResponseFuture<S, Req> {
    pub(crate) fn inner(future: S::Future) -> Self {
        ResponseFuture {
            kind: Kind::Inner { future },
        }
    }

    pub(crate) fn abort(status: AbortStatus) -> Self {
        ResponseFuture {
            kind: Kind::Abort {
                status,
                delayed: false,
            },
        }
    }

    pub(crate) fn delayed(
        delay: Duration,
        service: S,
        req: Req,
        abort: Option<AbortStatus>,
    ) -> Self {
        ResponseFuture {
            kind: Kind::Delay {
                sleep: Box::pin(tokio::time::sleep(delay)),
                pending: Some(Box::new((service, req))),
                abort,
            },
        }
    }
}

fn abort_outcome<B: Default>(status: AbortStatus, delayed: bool) -> Result<Response<B>, BoxError> {
    match status {
        AbortStatus::Http(status) => Err(MeshError::FaultAbort(status).into()),
        AbortStatus::Grpc(code) => {
            let mut res = Response::new(B::default());
            let headers = res.headers_mut();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
            headers.insert(
                mesh_core::classify::GRPC_STATUS,
                HeaderValue::from(grpc_number(code)),
            );
            headers.insert(
                "grpc-message",
                HeaderValue::from_static("fault filter abort"),
            );
            if delayed {
                add_response_flag(&mut res, ResponseFlag::DelayInjected);
            }
            add_response_flag(&mut res, ResponseFlag::FaultInjected);
            Ok(res)
        }
    }
}

fn grpc_number(code: GrpcCode) -> u16 {
    u16::from(code as u8)
}

impl<S, Req, B> Future for ResponseFuture<S, Req>
where
    S: Service<Req, Response = Response<B>>,
    S::Error: Into<BoxError>,
    B: Default,
{
    type Output = Result<Response<B>, BoxError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let next = match self.as_mut().project().kind.project() {
                KindProj::Inner { future } => {
                    return future.poll(cx).map_err(Into::into);
                }
                KindProj::Abort { status, delayed } => {
                    return Poll::Ready(abort_outcome(*status, *delayed));
                }
                KindProj::Delay {
                    sleep,
                    pending,
                    abort,
                } => {
                    ready!(sleep.as_mut().poll(cx));
                    match (abort.take(), pending.take()) {
                        (Some(status), _) => Kind::Abort {
                            status,
                            delayed: true,
                        },
                        (None, Some(pending)) => {
                            let (service, req) = *pending;
                            Kind::AfterDelay {
                                future: Box::pin(Oneshot::new(service, req)),
                            }
                        }
                        // Polled again after completion.
                        (None, None) => return Poll::Pending,
                    }
                }
                KindProj::AfterDelay { future } => {
                    let mut res = ready!(future.as_mut().poll(cx)).map_err(Into::into)?;
                    add_response_flag(&mut res, ResponseFlag::DelayInjected);
                    return Poll::Ready(Ok(res));
                }
            };
            self.as_mut().project().kind.set(next);
        }
    }
}

impl<S: Service<Req>, Req> fmt::Debug for ResponseFuture<S, Req> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
