//! Turning endpoints into the services that talk to them.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use futures_core::{Stream, TryStream};
use pin_project_lite::pin_project;
use tower::Service;
use tower::discover::Change;

use super::EndpointChange;
use crate::endpoint::Endpoint;

/// A service bound to one endpoint, carrying the endpoint's metadata (weight,
/// labels) for the balancer. Calls go straight to the inner service.
#[derive(Clone, Debug)]
pub struct EndpointService<S> {
    endpoint: Endpoint,
    service: S,
}

impl<S> EndpointService<S> {
    /// Pairs `service` with the endpoint it talks to.
    pub fn new(endpoint: Endpoint, service: S) -> Self {
        EndpointService { endpoint, service }
    }

    /// The endpoint.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.service
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.service
    }

    /// The inner service, consuming the wrapper.
    pub fn into_inner(self) -> S {
        self.service
    }
}

impl<S: Service<R>, R> Service<R> for EndpointService<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.service.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, req: R) -> Self::Future {
        self.service.call(req)
    }
}

pin_project! {
    /// A discovery stream whose endpoints are made into services; made by
    /// [`DiscoverExt::with_services`](super::DiscoverExt::with_services).
    #[derive(Debug)]
    pub struct WithServices<D, F> {
        #[pin]
        inner: D,
        make: F,
    }
}

impl<D, F> WithServices<D, F> {
    /// Makes a service for each endpoint of `inner` with `make`.
    pub fn new(inner: D, make: F) -> Self {
        WithServices { inner, make }
    }
}

impl<D, F, S> Stream for WithServices<D, F>
where
    D: TryStream<Ok = EndpointChange>,
    F: FnMut(&Endpoint) -> S,
{
    type Item = Result<Change<std::net::SocketAddr, EndpointService<S>>, D::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.project();
        let change = ready!(this.inner.try_poll_next(cx));
        Poll::Ready(change.map(|change| {
            change.map(|change| match change {
                Change::Insert(addr, ep) => {
                    let service = (this.make)(&ep);
                    Change::Insert(addr, EndpointService::new(ep, service))
                }
                Change::Remove(addr) => Change::Remove(addr),
            })
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discover::{DiscoverExt, StaticEndpoints};
    use std::future::poll_fn;
    use tower::ServiceExt;
    use tower::discover::Discover;

    #[tokio::test]
    async fn endpoints_become_services_that_keep_their_metadata() {
        let ep = Endpoint::new(([127, 0, 0, 1], 9).into()).with_weight(4);
        let mut d = std::pin::pin!(StaticEndpoints::new([ep]).with_services(|ep: &Endpoint| {
            let port = ep.addr().port();
            tower::service_fn(
                move |x: u16| async move { Ok::<_, std::convert::Infallible>(x + port) },
            )
        }));
        let change = poll_fn(|cx| d.as_mut().poll_discover(cx)).await;
        let Some(Ok(Change::Insert(_, svc))) = change else {
            panic!("expected an insert");
        };
        assert_eq!(svc.endpoint().weight().get(), 4);
        assert_eq!(svc.oneshot(1).await.unwrap(), 10);
    }
}
