//! [`HyperService`]: a connection's tower service, served to hyper without
//! a clone and a `oneshot` per request.
//!
//! hyper calls its service through `&self`, so hyper-util's adapter clones
//! the tower service for every request and drives the clone with `oneshot`
//! (the request moved in and out of it). Here hyper's calls all come from
//! the connection's own task, so the service sits in a `RefCell`: each call
//! asks it for readiness (with a no-op waker: there is no task at hand) and
//! calls it at once when it is ready, as the proxy's stacks always are. A
//! service that is not ready goes with the request into the response future,
//! which drives it to readiness (it may hold a place in a queue, such as a
//! semaphore's, that a fresh clone would wait behind), and a fresh clone
//! takes its place for the next request; it is never called unready.

use std::cell::RefCell;
use std::task::{Context, Poll, Waker};

use mesh_core::ReadyOneshot;
use tower::Service;

/// Serves `S` to hyper (see the [module docs](self)).
#[derive(Debug)]
pub(crate) struct HyperService<S> {
    inner: RefCell<S>,
    /// Cloned for a request that finds `inner` busy (a call made from
    /// within a call, which hyper does not do) or not ready.
    spare: S,
}

impl<S: Clone> HyperService<S> {
    pub(crate) fn new(service: S) -> Self {
        HyperService {
            inner: RefCell::new(service.clone()),
            spare: service,
        }
    }
}

impl<S, R> hyper::service::Service<R> for HyperService<S>
where
    S: Service<R> + Clone,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ReadyOneshot<S, R>;

    fn call(&self, req: R) -> Self::Future {
        let Ok(mut svc) = self.inner.try_borrow_mut() else {
            return ReadyOneshot::new(self.spare.clone(), req);
        };
        match svc.poll_ready(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(Ok(())) => ReadyOneshot::called(svc.call(req)),
            Poll::Ready(Err(error)) => ReadyOneshot::failed(error),
            Poll::Pending => {
                let fresh = self.spare.clone();
                ReadyOneshot::waiting(std::mem::replace(&mut *svc, fresh), req)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Once called, ready again only every other time it is asked.
    #[derive(Clone)]
    struct Flaky {
        asked: Arc<AtomicUsize>,
        ready: bool,
    }

    impl Service<u32> for Flaky {
        type Response = u32;
        type Error = &'static str;
        type Future = std::future::Ready<Result<u32, &'static str>>;

        fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            if self.ready || self.asked.fetch_add(1, Ordering::SeqCst) % 2 == 1 {
                self.ready = true;
                return Poll::Ready(Ok(()));
            }
            cx.waker().wake_by_ref();
            Poll::Pending
        }

        fn call(&mut self, req: u32) -> Self::Future {
            assert!(self.ready, "called unready");
            self.ready = false;
            std::future::ready(Ok(req * 2))
        }
    }

    #[tokio::test]
    async fn a_ready_service_is_called_in_place_and_an_unready_one_on_a_clone() {
        let svc = HyperService::new(Flaky {
            asked: Arc::default(),
            ready: true,
        });
        let first = hyper::service::Service::call(&svc, 1);
        assert!(first.is_called(), "ready: in place");
        assert_eq!(first.await, Ok(2));
        // Now asked once, not ready: it goes with the request, which waits
        // for its readiness, and a fresh clone serves the next.
        let second = hyper::service::Service::call(&svc, 2);
        assert!(!second.is_called());
        assert!(svc.inner.borrow().ready, "a fresh clone took its place");
        assert_eq!(second.await, Ok(4));
    }
}
