//! [`Shared`], the handle, and [`SharedLayer`].

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use mesh_core::BoxError;
use tower::{Layer, Service};

use super::future::ResponseFuture;
use super::wake::Waiters;

/// A handle on one service shared by all its clones, each calling it in its
/// own task. See the [module docs](crate::shared).
pub struct Shared<S> {
    state: Arc<State<S>>,
    /// The call count when this handle's `poll_ready` saw the service ready.
    ready_at: Option<u64>,
}

pub(super) struct State<S> {
    locked: Mutex<Locked<S>>,
    waiters: Arc<Waiters>,
    /// `waiters` as the waker the inner service is polled with.
    waker: Waker,
}

/// What the lock guards.
pub(super) struct Locked<S> {
    service: S,
    /// Moves on at every call and every poll that did not find the service
    /// ready: a handle that saw it ready at the same epoch may call it.
    epoch: u64,
}

impl<S> Shared<S> {
    /// Shares `service`.
    pub fn new(service: S) -> Self {
        let waiters = Arc::new(Waiters::default());
        Shared {
            state: Arc::new(State {
                locked: Mutex::new(Locked { service, epoch: 0 }),
                waker: Waker::from(waiters.clone()),
                waiters,
            }),
            ready_at: None,
        }
    }

    /// Runs `f` on the shared service (e.g. to read a balancer's state).
    pub fn with<T>(&self, f: impl FnOnce(&mut S) -> T) -> T {
        f(&mut self.state.lock().service)
    }
}

impl<S> State<S> {
    pub(super) fn lock(&self) -> MutexGuard<'_, Locked<S>> {
        // A panic inside the service poisons the lock; keep serving (the
        // service may be mid-update, as after any error it returns).
        self.locked.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Polls the locked service for readiness; a `Pending` registers `waker`
    /// to be woken when it may be ready.
    pub(super) fn poll_ready<R>(
        &self,
        locked: &mut Locked<S>,
        waker: &Waker,
    ) -> Poll<Result<(), BoxError>>
    where
        S: Service<R>,
        S::Error: Into<BoxError>,
    {
        let mut cx = Context::from_waker(&self.waker);
        let mut ready = locked.service.poll_ready(&mut cx);
        if ready.is_pending() {
            self.waiters.register(waker);
            // Ready in between? Then no wake-up would come for this handle.
            ready = locked.service.poll_ready(&mut cx);
        }
        if !matches!(ready, Poll::Ready(Ok(()))) {
            // Readiness another handle saw is gone without a call (a
            // balancer's discovery can empty it): that handle must ask again.
            locked.epoch += 1;
        }
        ready.map_err(Into::into)
    }

    /// Calls the locked service, which must be ready.
    pub(super) fn call<R>(locked: &mut Locked<S>, req: R) -> S::Future
    where
        S: Service<R>,
    {
        locked.epoch += 1;
        locked.service.call(req)
    }
}

impl<S> Clone for Shared<S> {
    fn clone(&self) -> Self {
        Shared {
            state: self.state.clone(),
            ready_at: None,
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for Shared<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Shared");
        match self.state.locked.try_lock() {
            Ok(locked) => d.field("service", &locked.service),
            Err(_) => d.field("service", &"<in use>"),
        };
        d.finish_non_exhaustive()
    }
}

impl<S, R> Service<R> for Shared<S>
where
    S: Service<R>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, R>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        let state = &*self.state;
        let mut locked = state.lock();
        let ready = state.poll_ready(&mut locked, cx.waker());
        self.ready_at = matches!(ready, Poll::Ready(Ok(()))).then_some(locked.epoch);
        ready
    }

    fn call(&mut self, req: R) -> Self::Future {
        let ready_at = self.ready_at.take();
        let state = &*self.state;
        let mut locked = state.lock();
        // Nobody called, and no poll found it unready, since this handle saw
        // the service ready: it still is.
        if ready_at == Some(locked.epoch) {
            return ResponseFuture::called(State::call(&mut locked, req));
        }
        // Another handle called or found it unready in between (several
        // threads), or `call` without `poll_ready`: call now only if the
        // service says it is ready, else wait for it in the response future.
        let mut cx = Context::from_waker(&state.waker);
        match locked.service.poll_ready(&mut cx) {
            Poll::Ready(Ok(())) => ResponseFuture::called(State::call(&mut locked, req)),
            Poll::Ready(Err(e)) => ResponseFuture::failed(e.into()),
            Poll::Pending => {
                locked.epoch += 1;
                drop(locked);
                ResponseFuture::waiting(self.state.clone(), req)
            }
        }
    }
}

/// Wraps a service in [`Shared`].
#[derive(Clone, Copy, Debug, Default)]
pub struct SharedLayer;

impl SharedLayer {
    /// The layer.
    pub fn new() -> Self {
        SharedLayer
    }
}

impl<S> Layer<S> for SharedLayer {
    type Service = Shared<S>;

    fn layer(&self, inner: S) -> Shared<S> {
        Shared::new(inner)
    }
}
