//! [`SharedService`]: a type-erased service behind an `Arc`, for the
//! services the proxy clones for every request.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use futures_util::future::BoxFuture;
use mesh_core::BoxError;
use tower::Service;
use tower::util::Oneshot;

/// A type-erased service shared behind an `Arc`. A clone costs a reference
/// count, where tower's `BoxCloneSyncService` allocates and clones the
/// erased stack: the router clones a route's destination for every request.
///
/// Always ready, as mesh-route's `Forward`: each call takes its own clone of
/// the erased service, calls it at once when it is ready at once (as
/// mesh-core's `ReadyOneshot` does) and otherwise drives it to readiness in
/// the response future. That future is the one box, where
/// `BoxCloneSyncService` boxes the clone and then the response future.
///
/// Its readiness is thus inside its response future: a layer above that times
/// its calls from `call` (the retry layer's per-try timeout) would count the
/// wait. The proxy erases the services that sit above such layers (a route's
/// destination: the retry layer over its cluster) this way, not the cluster
/// below them.
pub(crate) struct SharedService<Req, Res> {
    inner: Arc<dyn Call<Req, Res>>,
}

/// What the `Arc` erases: a call through a shared reference.
trait Call<Req, Res>: Send + Sync {
    fn call_shared(&self, req: Req) -> BoxFuture<'static, Result<Res, BoxError>>;
}

impl<S, Req, Res> Call<Req, Res> for S
where
    S: Service<Req, Response = Res, Error = BoxError> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
    Req: Send + 'static,
    Res: Send + 'static,
{
    fn call_shared(&self, req: Req) -> BoxFuture<'static, Result<Res, BoxError>> {
        let mut svc = self.clone();
        // Asked once with a no-op waker, as there is no task at hand: a
        // service ready now is called now and only its future is boxed; one
        // that is not is driven to readiness (asked again with the task's
        // waker) by `Oneshot`. This is mesh-core's `ReadyOneshot::new`
        // policy, written out: built on it (or on a helper both share, tried
        // as `call_now`), the future is moved twice more on its way into the
        // box, two `memcpy`s per request (+120 instructions measured).
        match svc.poll_ready(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(Ok(())) => Box::pin(svc.call(req)),
            Poll::Ready(Err(e)) => Box::pin(std::future::ready(Err(e))),
            Poll::Pending => Box::pin(Oneshot::new(svc, req)),
        }
    }
}

impl<Req, Res> SharedService<Req, Res> {
    /// Erases `service`.
    pub(crate) fn new<S>(service: S) -> Self
    where
        S: Service<Req, Response = Res, Error = BoxError> + Clone + Send + Sync + 'static,
        S::Future: Send + 'static,
        Req: Send + 'static,
        Res: Send + 'static,
    {
        SharedService {
            inner: Arc::new(service),
        }
    }
}

impl<Req, Res> Clone for SharedService<Req, Res> {
    fn clone(&self) -> Self {
        SharedService {
            inner: self.inner.clone(),
        }
    }
}

impl<Req, Res> fmt::Debug for SharedService<Req, Res> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedService").finish_non_exhaustive()
    }
}

impl<Req, Res> Service<Req> for SharedService<Req, Res> {
    type Response = Res;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Res, BoxError>>;

    #[inline]
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        self.inner.call_shared(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tower::ServiceExt;

    /// Ready only on every other `poll_ready`; counts its clones and calls.
    struct Flaky {
        clones: Arc<AtomicUsize>,
        calls: Arc<AtomicUsize>,
        ready: bool,
    }

    impl Clone for Flaky {
        fn clone(&self) -> Self {
            self.clones.fetch_add(1, Ordering::SeqCst);
            Flaky {
                clones: self.clones.clone(),
                calls: self.calls.clone(),
                ready: false,
            }
        }
    }

    impl Service<u32> for Flaky {
        type Response = u32;
        type Error = BoxError;
        type Future = std::future::Ready<Result<u32, BoxError>>;

        fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
            if self.ready {
                return Poll::Ready(Ok(()));
            }
            self.ready = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }

        fn call(&mut self, n: u32) -> Self::Future {
            assert!(self.ready, "called unready");
            self.calls.fetch_add(1, Ordering::SeqCst);
            std::future::ready(if n == 0 {
                Err("zero".into())
            } else {
                Ok(n * 2)
            })
        }
    }

    #[tokio::test]
    async fn each_call_drives_a_clone_to_readiness_and_clones_of_the_handle_share_it() {
        let clones = Arc::new(AtomicUsize::new(0));
        let calls = Arc::new(AtomicUsize::new(0));
        let svc = SharedService::new(Flaky {
            clones: clones.clone(),
            calls: calls.clone(),
            ready: false,
        });
        let handles: Vec<_> = (0..3).map(|_| svc.clone()).collect();
        assert_eq!(
            clones.load(Ordering::SeqCst),
            0,
            "a handle's clone is a count"
        );
        for (i, h) in handles.into_iter().enumerate() {
            assert_eq!(h.oneshot(i as u32 + 1).await.unwrap(), (i as u32 + 1) * 2);
        }
        assert_eq!(
            clones.load(Ordering::SeqCst),
            3,
            "one clone of the service per call"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        let err = svc.oneshot(0).await.unwrap_err();
        assert_eq!(err.to_string(), "zero");
    }

    /// Refuses at readiness.
    #[derive(Clone)]
    struct Refusing;

    impl Service<u32> for Refusing {
        type Response = u32;
        type Error = BoxError;
        type Future = std::future::Ready<Result<u32, BoxError>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
            Poll::Ready(Err("overloaded".into()))
        }

        fn call(&mut self, _: u32) -> Self::Future {
            panic!("called after its readiness failed");
        }
    }

    #[tokio::test]
    async fn a_readiness_error_is_the_response_futures_output() {
        let mut svc = SharedService::new(Refusing);
        let fut = svc
            .ready()
            .await
            .expect("the handle is always ready")
            .call(1);
        assert_eq!(fut.await.unwrap_err().to_string(), "overloaded");
    }

    #[tokio::test]
    async fn a_service_ready_at_once_is_called_at_once() {
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let svc = SharedService::new(tower::service_fn(move |n: u32| {
            counted.fetch_add(1, Ordering::SeqCst);
            std::future::ready(Ok::<_, BoxError>(n + 1))
        }));
        let fut = svc.clone().call(1);
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "called before the future is polled"
        );
        assert_eq!(fut.await.unwrap(), 2);
        assert_eq!(svc.oneshot(41).await.unwrap(), 42);
    }
}
