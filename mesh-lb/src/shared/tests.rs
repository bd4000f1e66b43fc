use std::future::{Ready, ready};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use futures_util::FutureExt;
use tower::{Service, ServiceExt};

use super::Shared;

/// A service with `permits` calls left; like most services it keeps only the
/// last waker it was polled with, and it counts calls made while not ready.
#[derive(Clone, Default)]
struct Gate(Arc<Mutex<GateState>>);

#[derive(Default)]
struct GateState {
    permits: usize,
    waker: Option<Waker>,
    calls: usize,
    unready_calls: usize,
}

impl Gate {
    fn release(&self, n: usize) {
        let mut s = self.0.lock().unwrap();
        s.permits += n;
        if let Some(w) = s.waker.take() {
            w.wake();
        }
    }

    /// Takes every permit away without a call (as a balancer's discovery
    /// can remove its endpoints).
    fn revoke(&self) {
        self.0.lock().unwrap().permits = 0;
    }

    fn calls(&self) -> (usize, usize) {
        let s = self.0.lock().unwrap();
        (s.calls, s.unready_calls)
    }
}

impl Service<u32> for Gate {
    type Response = u32;
    type Error = std::convert::Infallible;
    type Future = Ready<Result<u32, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        let mut s = self.0.lock().unwrap();
        if s.permits > 0 {
            Poll::Ready(Ok(()))
        } else {
            s.waker = Some(cx.waker().clone());
            Poll::Pending
        }
    }

    fn call(&mut self, req: u32) -> Self::Future {
        let mut s = self.0.lock().unwrap();
        s.calls += 1;
        match s.permits.checked_sub(1) {
            Some(left) => s.permits = left,
            None => s.unready_calls += 1,
        }
        ready(Ok(req))
    }
}

/// Counts wake-ups.
struct Count(AtomicUsize);

impl std::task::Wake for Count {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn counting_waker() -> (Arc<Count>, Waker) {
    let count = Arc::new(Count(AtomicUsize::new(0)));
    (count.clone(), Waker::from(count))
}

#[test]
fn every_waiting_handle_is_woken_not_only_the_last() {
    let gate = Gate::default();
    let shared = Shared::new(gate.clone());
    let (mut a, mut b) = (shared.clone(), shared.clone());
    let (woke_a, wa) = counting_waker();
    let (woke_b, wb) = counting_waker();
    assert!(a.poll_ready(&mut Context::from_waker(&wa)).is_pending());
    assert!(b.poll_ready(&mut Context::from_waker(&wb)).is_pending());
    gate.release(2);
    assert_eq!(
        woke_a.0.load(Ordering::SeqCst),
        1,
        "the first waiter was lost"
    );
    assert_eq!(woke_b.0.load(Ordering::SeqCst), 1);
    assert!(a.poll_ready(&mut Context::from_waker(&wa)).is_ready());
    assert_eq!(a.call(1).now_or_never().unwrap().unwrap(), 1);
    assert!(b.poll_ready(&mut Context::from_waker(&wb)).is_ready());
    assert_eq!(b.call(2).now_or_never().unwrap().unwrap(), 2);
    assert_eq!(gate.calls(), (2, 0));
}

#[test]
fn readiness_used_up_by_another_handle_is_waited_for_not_assumed() {
    let gate = Gate::default();
    gate.release(1);
    let shared = Shared::new(gate.clone());
    let (mut a, mut b) = (shared.clone(), shared.clone());
    let (_, w) = counting_waker();
    let mut cx = Context::from_waker(&w);
    // Both see the one permit; b calls first (as another thread could).
    assert!(a.poll_ready(&mut cx).is_ready());
    assert!(b.poll_ready(&mut cx).is_ready());
    assert_eq!(b.call(2).now_or_never().unwrap().unwrap(), 2);
    // a's call finds the service no longer ready: it waits, it does not call.
    let (woke, w) = counting_waker();
    let mut cx = Context::from_waker(&w);
    let mut fut = Box::pin(a.call(1));
    assert!(fut.as_mut().poll(&mut cx).is_pending());
    assert_eq!(gate.calls(), (1, 0));
    gate.release(1);
    assert_eq!(woke.0.load(Ordering::SeqCst), 1);
    assert!(matches!(fut.as_mut().poll(&mut cx), Poll::Ready(Ok(1))));
    assert_eq!(gate.calls(), (2, 0), "never called while not ready");
}

#[test]
fn readiness_lost_without_a_call_is_waited_for_not_assumed() {
    let gate = Gate::default();
    gate.release(1);
    let shared = Shared::new(gate.clone());
    let (mut a, mut b) = (shared.clone(), shared.clone());
    let (_, w) = counting_waker();
    let mut cx = Context::from_waker(&w);
    assert!(a.poll_ready(&mut cx).is_ready());
    // The service loses its readiness with no call; b's poll sees it.
    gate.revoke();
    assert!(b.poll_ready(&mut cx).is_pending());
    let mut fut = Box::pin(a.call(1));
    assert!(fut.as_mut().poll(&mut cx).is_pending());
    assert_eq!(gate.calls(), (0, 0), "called while not ready");
    gate.release(1);
    assert!(matches!(fut.as_mut().poll(&mut cx), Poll::Ready(Ok(1))));
    assert_eq!(gate.calls(), (1, 0));
}

/// Not ready when first asked, ready when asked again, with no wake-up in
/// between: readiness that arrives while a handle registers its waker.
struct ReadyOnSecondAsk(usize);

impl Service<u32> for ReadyOnSecondAsk {
    type Response = u32;
    type Error = std::convert::Infallible;
    type Future = Ready<Result<u32, Self::Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0 += 1;
        if self.0 >= 2 {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    }

    fn call(&mut self, req: u32) -> Self::Future {
        ready(Ok(req))
    }
}

#[test]
fn readiness_arriving_while_registering_is_not_missed() {
    let mut shared = Shared::new(ReadyOnSecondAsk(0));
    let (woke, w) = counting_waker();
    // No wake-up will ever come: the answer must be Ready now.
    assert!(shared.poll_ready(&mut Context::from_waker(&w)).is_ready());
    assert_eq!(woke.0.load(Ordering::SeqCst), 0);
}

#[test]
fn a_handle_ready_and_calling_at_once_calls_directly() {
    let gate = Gate::default();
    gate.release(3);
    let mut shared = Shared::new(gate.clone());
    for i in 0..3 {
        let res = shared.ready().now_or_never().unwrap().unwrap().call(i);
        assert_eq!(res.now_or_never().unwrap().unwrap(), i);
    }
    assert_eq!(gate.calls(), (3, 0));
    assert!(shared.ready().now_or_never().is_none(), "no permit left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_tasks_on_many_threads_all_get_through() {
    let gate = Gate::default();
    let shared = Shared::new(gate.clone());
    let tasks: Vec<_> = (0..64u32)
        .map(|i| {
            let svc = shared.clone();
            tokio::spawn(async move { svc.oneshot(i).await.unwrap() })
        })
        .collect();
    // Permits trickle in, fewer than the waiters each time.
    for _ in 0..64 {
        tokio::task::yield_now().await;
        gate.release(1);
    }
    let mut got: Vec<u32> = Vec::new();
    for t in tasks {
        // A lost wake-up shows as a task that never ends.
        let done = tokio::time::timeout(std::time::Duration::from_secs(10), t).await;
        got.push(done.expect("a task was never woken").unwrap());
    }
    got.sort_unstable();
    assert_eq!(got, (0..64).collect::<Vec<_>>());
    assert_eq!(gate.calls(), (64, 0), "an unready service was called");
}
