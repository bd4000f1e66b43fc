//! The waker the inner service is polled with: it wakes every handle waiting
//! for readiness.

use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Wake, Waker};

/// The handles waiting for the inner service to be ready.
#[derive(Default)]
pub(super) struct Waiters {
    wakers: Mutex<Vec<Waker>>,
}

impl Waiters {
    /// Adds a waiting handle's waker (once, however often it polls).
    pub(super) fn register(&self, waker: &Waker) {
        let mut wakers = self.wakers.lock().unwrap_or_else(PoisonError::into_inner);
        if !wakers.iter().any(|w| w.will_wake(waker)) {
            wakers.push(waker.clone());
        }
    }
}

impl Wake for Waiters {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // Taken out first: a woken handle may register again at once.
        let woken =
            std::mem::take(&mut *self.wakers.lock().unwrap_or_else(PoisonError::into_inner));
        for waker in woken {
            waker.wake();
        }
    }
}
